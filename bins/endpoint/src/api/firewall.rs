//! Route 53 Resolver DNS Firewall (`Route53Resolver.*Firewall*`): domain
//! lists and their domains, rule groups and their rules, associations of
//! rule groups with VPCs, firewall configs and rule group policies.
//!
//! As in [`super::resolver`], every change goes through
//! [`ControlPlane::mutate`]; the model's checks (the ones a TOML file goes
//! through: priorities, references, block responses) run when the change is
//! made live. ImportFirewallDomains reads a local file where AWS reads S3.

use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::paging::paged;
use super::resolver::{TagRequest, arn, check_name, insert_optional, quota, request, string_field, tags_from};
use crate::control::{ControlPlane, Kind, Runtime, new_id};
use crate::firewall::{ASSOCIATION_PRIORITIES, domain_file_entries, rule_action, rule_qtype};
use crate::model::{
    BlockResponse, EndpointConfig, FirewallAssociationConfig, FirewallDomainListConfig, FirewallRuleAction,
    FirewallRuleConfig, FirewallRuleGroupConfig, Quotas,
};

/// The operations this module answers.
pub const OPERATIONS: &[&str] = &[
    "AssociateFirewallRuleGroup",
    "BatchCreateFirewallRule",
    "BatchDeleteFirewallRule",
    "BatchUpdateFirewallRule",
    "CreateFirewallDomainList",
    "CreateFirewallRule",
    "CreateFirewallRuleGroup",
    "DeleteFirewallDomainList",
    "DeleteFirewallRule",
    "DeleteFirewallRuleGroup",
    "DisassociateFirewallRuleGroup",
    "GetFirewallConfig",
    "GetFirewallDomainList",
    "GetFirewallRuleGroup",
    "GetFirewallRuleGroupAssociation",
    "GetFirewallRuleGroupPolicy",
    "ImportFirewallDomains",
    "ListFirewallConfigs",
    "ListFirewallDomainLists",
    "ListFirewallDomains",
    "ListFirewallRuleGroupAssociations",
    "ListFirewallRuleGroups",
    "ListFirewallRuleTypes",
    "ListFirewallRules",
    "PutFirewallRuleGroupPolicy",
    "UpdateFirewallConfig",
    "UpdateFirewallDomains",
    "UpdateFirewallRule",
    "UpdateFirewallRuleGroupAssociation",
];

/// Answer one DNS Firewall call.
pub async fn handle<R: Runtime>(control: &ControlPlane<R>, operation: &str, body: Value) -> Result<Value, ApiError> {
    let call = Call { control, body };
    match operation {
        "CreateFirewallDomainList" => call.create_domain_list().await,
        "GetFirewallDomainList" => call.get_domain_list(),
        "ListFirewallDomainLists" => call.list_domain_lists(),
        "DeleteFirewallDomainList" => call.delete_domain_list().await,
        "UpdateFirewallDomains" => call.update_domains(false).await,
        "ImportFirewallDomains" => call.update_domains(true).await,
        "ListFirewallDomains" => call.list_domains(),
        "CreateFirewallRuleGroup" => call.create_rule_group().await,
        "GetFirewallRuleGroup" => call.get_rule_group(),
        "ListFirewallRuleGroups" => call.list_rule_groups(),
        "DeleteFirewallRuleGroup" => call.delete_rule_group().await,
        "CreateFirewallRule" => call.create_rule().await,
        "UpdateFirewallRule" => call.update_rule().await,
        "DeleteFirewallRule" => call.delete_rule().await,
        "ListFirewallRules" => call.list_rules(),
        // The rule types of DNS Firewall Advanced and partner feeds, which
        // are not emulated: none is available, so the list is empty.
        "ListFirewallRuleTypes" => paged(Vec::new(), &call.body, 100, "FirewallRuleTypes"),
        "BatchCreateFirewallRule" | "BatchUpdateFirewallRule" | "BatchDeleteFirewallRule" => {
            call.batch_rules(operation).await
        }
        "AssociateFirewallRuleGroup" => call.associate().await,
        "DisassociateFirewallRuleGroup" => call.disassociate().await,
        "GetFirewallRuleGroupAssociation" => call.get_association(),
        "ListFirewallRuleGroupAssociations" => call.list_associations(),
        "UpdateFirewallRuleGroupAssociation" => call.update_association().await,
        "GetFirewallConfig" => call.get_config(),
        "ListFirewallConfigs" => call.list_configs(),
        "UpdateFirewallConfig" => call.update_config().await,
        other => Err(ApiError::unsupported(other)),
    }
}

/// What [`Call::create_named`] makes: domain lists and rule groups.
trait Named: Sized {
    const KIND: Kind;
    /// Its ids start with this.
    const PREFIX: &'static str;
    /// The quota's name.
    const QUOTA: &'static str;
    fn limit(quotas: &Quotas) -> u32;
    /// The resource type in its ARN.
    const ARN_RESOURCE: &'static str;
    /// Where the model keeps them.
    fn items(config: &mut EndpointConfig) -> &mut Vec<Self>;
    /// The same, to read.
    fn items_of(config: &EndpointConfig) -> &[Self];
    /// Its name.
    fn name(&self) -> Option<&str>;
    /// The one with id `id`, or the service's NotFound error.
    fn find<'c>(config: &'c EndpointConfig, id: &str) -> Result<&'c Self, ApiError>;
    /// Its CreatorRequestId and id.
    fn ids(&self) -> (Option<&str>, &str);
    /// A new one, empty.
    fn make(made: Made) -> Self;
}

/// A [`Named`] type: its kind, id prefix, ARN resource type, quota (name and field of
/// [`Quotas`]), list in the model, how to find one, and the fields of a new one besides the
/// name, ids, times and tags.
macro_rules! named {
    ($type:ty, $kind:expr, $prefix:literal, $arn:literal, $quota:literal, $limit:ident, $list:ident, $find:ident, { $($field:ident: $value:expr),* }) => {
        impl Named for $type {
            const KIND: Kind = $kind;
            const PREFIX: &'static str = $prefix;
            const QUOTA: &'static str = $quota;
            const ARN_RESOURCE: &'static str = $arn;
            fn limit(quotas: &Quotas) -> u32 {
                quotas.$limit
            }
            fn items(config: &mut EndpointConfig) -> &mut Vec<Self> {
                &mut config.$list
            }
            fn items_of(config: &EndpointConfig) -> &[Self] {
                &config.$list
            }
            fn name(&self) -> Option<&str> {
                self.name.as_deref()
            }
            fn find<'c>(config: &'c EndpointConfig, id: &str) -> Result<&'c Self, ApiError> {
                $find(config, id)
            }
            fn ids(&self) -> (Option<&str>, &str) {
                (self.creator_request_id.as_deref(), &self.id)
            }
            fn make(made: Made) -> Self {
                Self {
                    id: made.id,
                    name: Some(made.name),
                    $($field: $value,)*
                    creator_request_id: Some(made.creator_request_id),
                    created: Some(made.now.clone()),
                    modified: Some(made.now),
                    tags: made.tags,
                }
            }
        }
    };
}

named!(
    FirewallDomainListConfig,
    Kind::FirewallDomainList,
    "rslvr-fdl-",
    "firewall-domain-list",
    "firewall domain lists per region",
    firewall_domain_lists_per_region,
    firewall_domain_lists,
    find_list,
    { domains: Default::default(), file: None }
);
named!(
    FirewallRuleGroupConfig,
    Kind::FirewallRuleGroup,
    "rslvr-frg-",
    "firewall-rule-group",
    "firewall rule groups per region",
    firewall_rule_groups_per_region,
    firewall_rule_groups,
    find_group,
    { rules: Vec::new(), policy: None }
);

/// `before` as a Delete call answers it: DELETING, with `message`.
fn deleting(mut before: Value, message: &str) -> Value {
    if let Some(object) = before.as_object_mut() {
        object.insert("Status".into(), json!("DELETING"));
        object.insert("StatusMessage".into(), json!(message));
    }
    before
}

/// The fields of a new resource [`Call::create_named`] gives its maker.
struct Made {
    id: String,
    name: String,
    creator_request_id: String,
    now: String,
    tags: crate::model::Tags,
}

struct Call<'a, R: Runtime> {
    control: &'a ControlPlane<R>,
    body: Value,
}

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("ConflictException", message)
}

fn validation(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("ValidationException", message)
}

fn find_list<'c>(config: &'c EndpointConfig, id: &str) -> Result<&'c FirewallDomainListConfig, ApiError> {
    config.firewall_domain_lists.iter().find(|list| list.id == id).ok_or_else(|| {
        ApiError::not_found(format!("[RSLVR-02101] The firewall domain list with ID \"{id}\" does not exist."))
    })
}

fn find_group<'c>(config: &'c EndpointConfig, id: &str) -> Result<&'c FirewallRuleGroupConfig, ApiError> {
    config.firewall_rule_groups.iter().find(|group| group.id == id).ok_or_else(|| {
        ApiError::not_found(format!("[RSLVR-02201] The firewall rule group with ID \"{id}\" does not exist."))
    })
}

/// The rule group `id` of a model being changed, found there before.
fn group_mut<'c>(config: &'c mut EndpointConfig, id: &str) -> Result<&'c mut FirewallRuleGroupConfig, ApiError> {
    config
        .firewall_rule_groups
        .iter_mut()
        .find(|group| group.id == id)
        .ok_or_else(|| ApiError::internal("the rule group vanished"))
}

fn find_association<'c>(config: &'c EndpointConfig, id: &str) -> Result<&'c FirewallAssociationConfig, ApiError> {
    config.firewall_associations.iter().find(|association| association.association_id() == id).ok_or_else(|| {
        ApiError::not_found(format!(
            "[RSLVR-02301] The firewall rule group association with ID \"{id}\" does not exist."
        ))
    })
}

fn vpc_known(config: &EndpointConfig, vpc: &str) -> Result<(), ApiError> {
    if config.vpcs.iter().any(|known| known.id == vpc) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("[RSLVR-02025] Can't find the resource with ID \"{vpc}\".")))
    }
}

/// The domain list's entries as the API reports them (lowercase; final dots as given).
fn domains_of(config: &EndpointConfig, list: &FirewallDomainListConfig) -> Result<Vec<String>, ApiError> {
    crate::firewall::domain_entries(list, &config.base_dir())
        .map_err(|error| ApiError::internal(format!("the domain list's file cannot be read: {error}")))
}

/// Check entries before they are stored, as the service does (the model checks them again).
fn check_domains(domains: &[String]) -> Result<(), ApiError> {
    let mut probe = signpost_rules::DomainList::new();
    for domain in domains {
        if domain.len() > 255 {
            return Err(validation(format!("The domain {domain:?} is longer than 255 characters.")));
        }
        probe.insert(domain).map_err(|error| validation(format!("The domain {domain:?} is not valid: {error}")))?;
    }
    Ok(())
}

fn on_off(value: bool) -> &'static str {
    if value { "ENABLED" } else { "DISABLED" }
}

fn parse_on_off(field: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "ENABLED" => Ok(true),
        "DISABLED" => Ok(false),
        other => Err(validation(format!(
            "1 validation error detected: Value '{other}' at '{field}' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED]"
        ))),
    }
}

fn rule_json(group: &FirewallRuleGroupConfig, rule: &FirewallRuleConfig) -> Value {
    let mut value = json!({
        "FirewallRuleGroupId": group.id,
        "FirewallDomainListId": rule.domain_list,
        "Name": rule.name,
        "Priority": rule.priority,
        "Action": match rule.action {
            FirewallRuleAction::Allow => "ALLOW",
            FirewallRuleAction::Alert => "ALERT",
            FirewallRuleAction::Block => "BLOCK",
        },
        "FirewallDomainRedirectionAction": rule.redirection_action.as_deref().unwrap_or("INSPECT_REDIRECTION_DOMAIN"),
    });
    if let Some(response) = rule.block_response {
        insert_optional(
            &mut value,
            "BlockResponse",
            Some(match response {
                BlockResponse::Nodata => "NODATA",
                BlockResponse::Nxdomain => "NXDOMAIN",
                BlockResponse::Override => "OVERRIDE",
            }),
        );
    }
    insert_optional(&mut value, "BlockOverrideDomain", rule.block_override_domain.as_deref());
    insert_optional(&mut value, "BlockOverrideDnsType", rule.block_override_dns_type.as_deref());
    if let (Some(ttl), Some(object)) = (rule.block_override_ttl, value.as_object_mut()) {
        object.insert("BlockOverrideTtl".into(), json!(ttl));
    }
    insert_optional(&mut value, "Qtype", rule.qtype.as_deref());
    insert_optional(&mut value, "CreatorRequestId", rule.creator_request_id.as_deref());
    insert_optional(&mut value, "CreationTime", rule.created.as_deref());
    insert_optional(&mut value, "ModificationTime", rule.modified.as_deref().or(rule.created.as_deref()));
    value
}

/// The fields of a rule a create or update call may give.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RuleFields {
    name: Option<String>,
    priority: Option<u32>,
    action: Option<FirewallRuleAction>,
    block_response: Option<BlockResponse>,
    block_override_domain: Option<String>,
    block_override_dns_type: Option<String>,
    block_override_ttl: Option<u32>,
    firewall_domain_redirection_action: Option<String>,
    qtype: Option<String>,
}

impl RuleFields {
    fn apply(&self, rule: &mut FirewallRuleConfig) {
        if let Some(name) = &self.name {
            rule.name = name.clone();
        }
        if let Some(priority) = self.priority {
            rule.priority = priority;
        }
        if let Some(action) = self.action {
            rule.action = action;
            if action != FirewallRuleAction::Block {
                rule.block_response = None;
                rule.block_override_domain = None;
                rule.block_override_dns_type = None;
                rule.block_override_ttl = None;
            }
        }
        // A field the call gives replaces the rule's; one it leaves out keeps it.
        rule.block_response = self.block_response.or(rule.block_response);
        rule.block_override_domain = self.block_override_domain.clone().or(rule.block_override_domain.take());
        rule.block_override_dns_type = self.block_override_dns_type.clone().or(rule.block_override_dns_type.take());
        rule.block_override_ttl = self.block_override_ttl.or(rule.block_override_ttl);
        rule.redirection_action = self.firewall_domain_redirection_action.clone().or(rule.redirection_action.take());
        rule.qtype = self.qtype.clone().or(rule.qtype.take());
    }
}

/// A rule's checks as the service makes them, with its error codes.
fn check_rule(rule: &FirewallRuleConfig) -> Result<(), ApiError> {
    check_name(Some(&rule.name))?;
    rule_action(rule).map_err(validation)?;
    rule_qtype(rule).map_err(validation)?;
    Ok(())
}

impl<R: Runtime> Call<'_, R> {
    fn config(&self) -> std::sync::Arc<EndpointConfig> {
        self.control.snapshot()
    }

    fn list_json(&self, config: &EndpointConfig, list: &FirewallDomainListConfig) -> Result<Value, ApiError> {
        let settled = self.control.settled(&list.id);
        let mut value = json!({
            "Id": list.id,
            "Arn": arn(config, "firewall-domain-list", &list.id),
            "Name": list.name.clone().unwrap_or_default(),
            "DomainCount": domains_of(config, list)?.len(),
            "Status": if settled { "COMPLETE" } else { "UPDATING" },
            "StatusMessage": if settled { "Created Firewall Domain List" } else { "Updating the Firewall Domain List" },
        });
        insert_optional(&mut value, "CreatorRequestId", list.creator_request_id.as_deref());
        insert_optional(&mut value, "CreationTime", list.created.as_deref());
        insert_optional(&mut value, "ModificationTime", list.modified.as_deref().or(list.created.as_deref()));
        Ok(value)
    }

    fn group_json(&self, config: &EndpointConfig, group: &FirewallRuleGroupConfig) -> Value {
        let mut value = json!({
            "Id": group.id,
            "Arn": arn(config, "firewall-rule-group", &group.id),
            "Name": group.name.clone().unwrap_or_default(),
            "RuleCount": group.rules.len(),
            "Status": "COMPLETE",
            "StatusMessage": "Created Firewall Rule Group",
            "OwnerId": config.account_id,
            "ShareStatus": "NOT_SHARED",
        });
        insert_optional(&mut value, "CreatorRequestId", group.creator_request_id.as_deref());
        insert_optional(&mut value, "CreationTime", group.created.as_deref());
        insert_optional(&mut value, "ModificationTime", group.modified.as_deref().or(group.created.as_deref()));
        value
    }

    fn association_json(
        &self,
        config: &EndpointConfig,
        association: &FirewallAssociationConfig,
        status: Option<&str>,
    ) -> Value {
        let id = association.association_id();
        let settled = self.control.settled(&id);
        let mut value = json!({
            "Id": id,
            "Arn": arn(config, "firewall-rule-group-association", &id),
            "FirewallRuleGroupId": association.rule_group,
            "VpcId": association.vpc,
            "Name": association.name.clone().unwrap_or_default(),
            "Priority": association.priority,
            "MutationProtection": on_off(association.mutation_protection),
            "Status": status.unwrap_or(if settled { "COMPLETE" } else { "UPDATING" }),
            "StatusMessage": if settled { "Finished rule group association update" } else { "Creating Firewall Rule Group Association" },
        });
        insert_optional(&mut value, "CreatorRequestId", association.creator_request_id.as_deref());
        insert_optional(&mut value, "CreationTime", association.created.as_deref());
        insert_optional(
            &mut value,
            "ModificationTime",
            association.modified.as_deref().or(association.created.as_deref()),
        );
        value
    }

    fn firewall_config_json(&self, config: &EndpointConfig, vpc: &str) -> Value {
        let fail_open = config.vpcs.iter().find(|known| known.id == vpc).and_then(|known| known.firewall_fail_open);
        json!({
            "Id": crate::control::derived_id("rslvr-fc-", &[vpc]),
            "ResourceId": vpc,
            "OwnerId": config.account_id,
            "FirewallFailOpen": on_off(fail_open.unwrap_or(false)),
        })
    }

    // --- domain lists -------------------------------------------------------

    async fn create_domain_list(&self) -> Result<Value, ApiError> {
        let id = self.create_named::<FirewallDomainListConfig>().await?;
        let config = self.config();
        Ok(json!({ "FirewallDomainList": self.list_json(&config, find_list(&config, &id)?)? }))
    }

    /// CreateFirewallDomainList and CreateFirewallRuleGroup: a repeated
    /// CreatorRequestId answers with what the first call made (a retried
    /// request); otherwise, within the quota, `make` adds the resource
    /// under a new id. Its id.
    async fn create_named<T: Named>(&self) -> Result<String, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            creator_request_id: String,
            name: String,
            tags: Option<Vec<TagRequest>>,
        }
        let request: Request = request(&self.body)?;
        check_name(Some(&request.name))?;
        let tags = tags_from(request.tags)?;
        self.control
            .mutate(|m| {
                let items = T::items(m.config);
                if let Some(existing) = items.iter().find(|item| item.ids().0 == Some(&request.creator_request_id)) {
                    return Ok(existing.ids().1.to_string());
                }
                let count = items.len();
                quota(m.config, count, T::limit(&m.config.quotas), T::QUOTA)?;
                let id = new_id(T::PREFIX);
                let item = T::make(Made {
                    id: id.clone(),
                    name: request.name.clone(),
                    creator_request_id: request.creator_request_id.clone(),
                    now: m.now.clone(),
                    tags: tags.clone(),
                });
                T::items(m.config).push(item);
                m.touch(T::KIND, &id);
                Ok(id)
            })
            .await
    }

    fn get_domain_list(&self) -> Result<Value, ApiError> {
        let id = string_field(&self.body, "FirewallDomainListId")?;
        let config = self.config();
        Ok(json!({ "FirewallDomainList": self.list_json(&config, find_list(&config, &id)?)? }))
    }

    fn list_domain_lists(&self) -> Result<Value, ApiError> {
        self.summaries::<FirewallDomainListConfig>(&self.config(), json!({}), "FirewallDomainLists")
    }

    /// ListFirewallDomainLists and ListFirewallRuleGroups: each one's id,
    /// ARN and name, the `shared` fields, and its CreatorRequestId.
    fn summaries<T: Named>(&self, config: &EndpointConfig, shared: Value, key: &str) -> Result<Value, ApiError> {
        let items: Vec<Value> = T::items_of(config)
            .iter()
            .map(|item| {
                let (creator_request_id, id) = item.ids();
                let mut value = json!({
                    "Id": id,
                    "Arn": arn(config, T::ARN_RESOURCE, id),
                    "Name": item.name().unwrap_or_default(),
                });
                if let (Some(object), Value::Object(shared)) = (value.as_object_mut(), &shared) {
                    object.extend(shared.clone());
                }
                insert_optional(&mut value, "CreatorRequestId", creator_request_id);
                value
            })
            .collect();
        paged(items, &self.body, 100, key)
    }

    async fn delete_domain_list(&self) -> Result<Value, ApiError> {
        let id = string_field(&self.body, "FirewallDomainListId")?;
        let config = self.config();
        let before = deleting(self.list_json(&config, find_list(&config, &id)?)?, "Deleting the Firewall Domain List");
        let used_by = |config: &EndpointConfig| {
            let group = config
                .firewall_rule_groups
                .iter()
                .find(|group| group.rules.iter().any(|rule| rule.domain_list == id))?;
            Some(format!("The domain list {id} is used by a rule of rule group {}; delete the rule first.", group.id))
        };
        self.delete_named::<FirewallDomainListConfig>(&id, used_by, "FirewallDomainList", before).await
    }

    /// DeleteFirewallDomainList and DeleteFirewallRuleGroup: `id` goes
    /// unless `used_by` says what still uses it; the answer gives `before`
    /// under `key`.
    async fn delete_named<T: Named>(
        &self,
        id: &str,
        used_by: impl FnOnce(&EndpointConfig) -> Option<String>,
        key: &str,
        before: Value,
    ) -> Result<Value, ApiError> {
        self.control
            .mutate(|m| {
                T::find(m.config, id)?;
                if let Some(user) = used_by(m.config) {
                    return Err(conflict(user));
                }
                T::items(m.config).retain(|item| item.ids().1 != id);
                m.touch(T::KIND, id);
                Ok(())
            })
            .await?;
        Ok(json!({ key: before }))
    }

    async fn update_domains(&self, import: bool) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            firewall_domain_list_id: String,
            operation: String,
            domains: Option<Vec<String>>,
            domain_file_url: Option<String>,
        }
        let request: Request = request(&self.body)?;
        let incoming: Vec<String> = if import {
            if request.operation != "REPLACE" {
                return Err(validation("ImportFirewallDomains supports the REPLACE operation only."));
            }
            let url = request.domain_file_url.clone().unwrap_or_default();
            if url.starts_with("s3://") || url.starts_with("https://") {
                return Err(validation(format!(
                    "signpost-endpoint reads the domain file from a local path (or file:// URL) in place of S3; {url:?} is not one."
                )));
            }
            let path = url.strip_prefix("file://").unwrap_or(&url);
            let text = std::fs::read_to_string(path)
                .map_err(|error| validation(format!("The domain file {path:?} cannot be read: {error}")))?;
            domain_file_entries(&text)
        } else {
            request.domains.clone().unwrap_or_default()
        };
        check_domains(&incoming)?;
        let id = request.firewall_domain_list_id.clone();
        self.control
            .mutate(|m| {
                let current = domains_of(m.config, find_list(m.config, &id)?)?;
                let normal = |domain: &str| domain.trim_end_matches('.').to_ascii_lowercase();
                let next: Vec<String> = match request.operation.as_str() {
                    "ADD" => {
                        let mut next = current.clone();
                        for domain in &incoming {
                            if !next.iter().any(|known| normal(known) == normal(domain)) {
                                next.push(domain.clone());
                            }
                        }
                        next
                    }
                    "REMOVE" => current
                        .iter()
                        .filter(|known| !incoming.iter().any(|domain| normal(domain) == normal(known)))
                        .cloned()
                        .collect(),
                    "REPLACE" => incoming.clone(),
                    other => {
                        return Err(validation(format!(
                            "1 validation error detected: Value '{other}' at 'operation' failed to satisfy constraint: Member must satisfy enum value set: [ADD, REMOVE, REPLACE]"
                        )));
                    }
                };
                let limit = m.config.quotas.domains_per_firewall_domain_list;
                quota(m.config, next.len().saturating_sub(1), limit, "domains per firewall domain list")?;
                let now = m.now.clone();
                if let Some(list) = m.config.firewall_domain_lists.iter_mut().find(|list| list.id == id) {
                    // The file's entries are folded in: the list is now what the API says it is.
                    list.file = None;
                    list.domains = std::sync::Arc::new(next);
                    list.modified = Some(now);
                }
                m.touch(Kind::FirewallDomainList, &id);
                m.start_clock(&id);
                Ok(())
            })
            .await?;
        let config = self.config();
        let list = find_list(&config, &id)?;
        Ok(json!({
            "Id": list.id,
            "Name": list.name.clone().unwrap_or_default(),
            "Status": "UPDATING",
            "StatusMessage": "Updating the Firewall Domain List",
        }))
    }

    fn list_domains(&self) -> Result<Value, ApiError> {
        let id = string_field(&self.body, "FirewallDomainListId")?;
        let config = self.config();
        let items: Vec<Value> = domains_of(&config, find_list(&config, &id)?)?.into_iter().map(Value::String).collect();
        paged(items, &self.body, 1000, "Domains")
    }

    // --- rule groups --------------------------------------------------------

    async fn create_rule_group(&self) -> Result<Value, ApiError> {
        let id = self.create_named::<FirewallRuleGroupConfig>().await?;
        let config = self.config();
        Ok(json!({ "FirewallRuleGroup": self.group_json(&config, find_group(&config, &id)?) }))
    }

    fn get_rule_group(&self) -> Result<Value, ApiError> {
        let id = string_field(&self.body, "FirewallRuleGroupId")?;
        let config = self.config();
        Ok(json!({ "FirewallRuleGroup": self.group_json(&config, find_group(&config, &id)?) }))
    }

    fn list_rule_groups(&self) -> Result<Value, ApiError> {
        let config = self.config();
        let shared = json!({ "OwnerId": config.account_id, "ShareStatus": "NOT_SHARED" });
        self.summaries::<FirewallRuleGroupConfig>(&config, shared, "FirewallRuleGroups")
    }

    async fn delete_rule_group(&self) -> Result<Value, ApiError> {
        let id = string_field(&self.body, "FirewallRuleGroupId")?;
        let config = self.config();
        let before = deleting(self.group_json(&config, find_group(&config, &id)?), "Deleting the Firewall Rule Group");
        let used_by = |config: &EndpointConfig| {
            let association = config.firewall_associations.iter().find(|a| a.rule_group == id)?;
            Some(format!("The rule group {id} is associated with VPC {}; disassociate it first.", association.vpc))
        };
        self.delete_named::<FirewallRuleGroupConfig>(&id, used_by, "FirewallRuleGroup", before).await
    }

    // --- rules --------------------------------------------------------------

    async fn create_rule(&self) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            creator_request_id: String,
            firewall_rule_group_id: String,
            firewall_domain_list_id: Option<String>,
            firewall_threat_protection_id: Option<String>,
            dns_threat_protection: Option<String>,
            #[serde(flatten)]
            fields: RuleFields,
        }
        let request: Request = request(&self.body)?;
        if request.dns_threat_protection.is_some() || request.firewall_threat_protection_id.is_some() {
            return Err(validation(
                "DNS Firewall Advanced (DnsThreatProtection) is not emulated by signpost-endpoint; give a FirewallDomainListId.",
            ));
        }
        let Some(list) = request.firewall_domain_list_id.clone() else {
            return Err(validation("A FirewallDomainListId is required."));
        };
        let (Some(name), Some(priority), Some(action)) =
            (request.fields.name.clone(), request.fields.priority, request.fields.action)
        else {
            return Err(validation("Name, Priority and Action are required."));
        };
        let mut rule = FirewallRuleConfig {
            name,
            priority,
            domain_list: list.clone(),
            action,
            block_response: None,
            block_override_domain: None,
            block_override_dns_type: None,
            block_override_ttl: None,
            qtype: None,
            redirection_action: None,
            creator_request_id: Some(request.creator_request_id.clone()),
            created: None,
            modified: None,
        };
        request.fields.apply(&mut rule);
        check_rule(&rule)?;
        let group_id = request.firewall_rule_group_id.clone();
        let created = self
            .control
            .mutate(|m| {
                find_list(m.config, &list)?;
                let group = find_group(m.config, &group_id)?;
                let limit = m.config.quotas.rules_per_firewall_rule_group;
                quota(m.config, group.rules.len(), limit, "rules per firewall rule group")?;
                if let Some(existing) =
                    group.rules.iter().find(|existing| existing.creator_request_id == rule.creator_request_id)
                {
                    return Ok(existing.clone());
                }
                if group.rules.iter().any(|existing| existing.domain_list == list && existing.qtype == rule.qtype) {
                    return Err(ApiError::exists(format!(
                        "The rule group {group_id} already has a rule for domain list {list}."
                    )));
                }
                if group.rules.iter().any(|existing| existing.priority == rule.priority) {
                    return Err(conflict(format!(
                        "The rule group {group_id} already has a rule with priority {}.",
                        rule.priority
                    )));
                }
                let mut rule = rule.clone();
                rule.created = Some(m.now.clone());
                rule.modified = Some(m.now.clone());
                let now = m.now.clone();
                if let Some(group) = m.config.firewall_rule_groups.iter_mut().find(|group| group.id == group_id) {
                    group.rules.push(rule.clone());
                    group.modified = Some(now);
                }
                m.touch(Kind::FirewallRuleGroup, &group_id);
                Ok(rule)
            })
            .await?;
        self.rule_answer(&group_id, &created)
    }

    /// The List calls' filters and pages: the `items` that have the value
    /// the call gives for each of the text `fields` and for `Priority`
    /// (where it gives one), paged under `key`.
    fn filtered(&self, items: impl Iterator<Item = Value>, fields: &[&str], key: &str) -> Result<Value, ApiError> {
        let priority = self.body.get("Priority").and_then(Value::as_u64);
        let wanted = |item: &Value| {
            fields.iter().all(|field| {
                let wanted = self.body.get(*field).and_then(Value::as_str);
                wanted.is_none_or(|value| item.get(*field).and_then(Value::as_str) == Some(value))
            }) && priority.is_none_or(|value| item.get("Priority").and_then(Value::as_u64) == Some(value))
        };
        paged(items.filter(|item| wanted(item)).collect(), &self.body, 100, key)
    }

    /// A call's answer about `rule` of group `group_id`, as the model now has it.
    fn rule_answer(&self, group_id: &str, rule: &FirewallRuleConfig) -> Result<Value, ApiError> {
        let config = self.config();
        Ok(json!({ "FirewallRule": rule_json(find_group(&config, group_id)?, rule) }))
    }

    /// The rule a call names: its group, its domain list and (when the group
    /// has several rules for the list) its query type.
    fn rule_index(config: &EndpointConfig, group: &str, list: &str, qtype: Option<&str>) -> Result<usize, ApiError> {
        let group = find_group(config, group)?;
        group
            .rules
            .iter()
            .position(|rule| rule.domain_list == list && (qtype.is_none() || rule.qtype.as_deref() == qtype))
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "[RSLVR-02401] The rule group {} has no rule for domain list {list}.",
                    group.id
                ))
            })
    }

    async fn update_rule(&self) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            firewall_rule_group_id: String,
            firewall_domain_list_id: Option<String>,
            #[serde(flatten)]
            fields: RuleFields,
        }
        let request: Request = request(&self.body)?;
        let Some(list) = request.firewall_domain_list_id.clone() else {
            return Err(validation("A FirewallDomainListId is required."));
        };
        let group_id = request.firewall_rule_group_id.clone();
        let updated = self
            .control
            .mutate(|m| {
                let index = Self::rule_index(m.config, &group_id, &list, None)?;
                let now = m.now.clone();
                let group = group_mut(m.config, &group_id)?;
                let mut rule =
                    group.rules.get(index).cloned().ok_or_else(|| ApiError::internal("the rule vanished"))?;
                request.fields.apply(&mut rule);
                check_rule(&rule)?;
                if group
                    .rules
                    .iter()
                    .enumerate()
                    .any(|(other, existing)| other != index && existing.priority == rule.priority)
                {
                    return Err(conflict(format!(
                        "The rule group {group_id} already has a rule with priority {}.",
                        rule.priority
                    )));
                }
                rule.modified = Some(now.clone());
                if let Some(slot) = group.rules.get_mut(index) {
                    *slot = rule.clone();
                }
                group.modified = Some(now);
                m.touch(Kind::FirewallRuleGroup, &group_id);
                Ok(rule)
            })
            .await?;
        self.rule_answer(&group_id, &updated)
    }

    async fn delete_rule(&self) -> Result<Value, ApiError> {
        let group_id = string_field(&self.body, "FirewallRuleGroupId")?;
        let list = string_field(&self.body, "FirewallDomainListId")?;
        let qtype = self.body.get("Qtype").and_then(Value::as_str).map(str::to_string);
        let removed = self
            .control
            .mutate(|m| {
                let index = Self::rule_index(m.config, &group_id, &list, qtype.as_deref())?;
                let now = m.now.clone();
                let group = group_mut(m.config, &group_id)?;
                let rule = group.rules.remove(index);
                group.modified = Some(now);
                let json = rule_json(group, &rule);
                m.touch(Kind::FirewallRuleGroup, &group_id);
                Ok(json)
            })
            .await?;
        Ok(json!({ "FirewallRule": removed }))
    }

    /// BatchCreateFirewallRule, BatchUpdateFirewallRule, BatchDeleteFirewallRule:
    /// each entry is the single call's request, made in order; the ones
    /// that fail are reported with their entry, code and message, and do
    /// not stop the others.
    async fn batch_rules(&self, operation: &str) -> Result<Value, ApiError> {
        let (entries, done, failed) = match operation {
            "BatchCreateFirewallRule" => ("CreateFirewallRuleEntries", "CreatedFirewallRules", "CreateErrors"),
            "BatchUpdateFirewallRule" => ("UpdateFirewallRuleEntries", "UpdatedFirewallRules", "UpdateErrors"),
            _ => ("DeleteFirewallRuleEntries", "DeletedFirewallRules", "DeleteErrors"),
        };
        let Some(entries) = self.body.get(entries).and_then(Value::as_array) else {
            return Err(validation(format!("1 validation error detected: {entries} is required.")));
        };
        let (mut rules, mut errors) = (Vec::new(), Vec::new());
        for entry in entries {
            let one = Call { control: self.control, body: entry.clone() };
            let result = match operation {
                "BatchCreateFirewallRule" => one.create_rule().await,
                "BatchUpdateFirewallRule" => one.update_rule().await,
                _ => one.delete_rule().await,
            };
            match result {
                Ok(answer) => rules.push(answer["FirewallRule"].clone()),
                Err(error) => {
                    errors.push(json!({ "FirewallRule": entry, "Code": error.code, "Message": error.message }))
                }
            }
        }
        Ok(json!({ done: rules, failed: errors }))
    }

    fn list_rules(&self) -> Result<Value, ApiError> {
        let group_id = string_field(&self.body, "FirewallRuleGroupId")?;
        let config = self.config();
        let group = find_group(&config, &group_id)?;
        let mut rules: Vec<&FirewallRuleConfig> = group.rules.iter().collect();
        rules.sort_by_key(|rule| rule.priority);
        self.filtered(rules.into_iter().map(|rule| rule_json(group, rule)), &["Action"], "FirewallRules")
    }

    // --- associations -------------------------------------------------------

    async fn associate(&self) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            creator_request_id: String,
            firewall_rule_group_id: String,
            vpc_id: String,
            priority: u32,
            name: String,
            mutation_protection: Option<String>,
            tags: Option<Vec<TagRequest>>,
        }
        let request: Request = request(&self.body)?;
        check_name(Some(&request.name))?;
        let tags = tags_from(request.tags)?;
        let protection = request
            .mutation_protection
            .as_deref()
            .map(|value| parse_on_off("mutationProtection", value))
            .transpose()?;
        if !ASSOCIATION_PRIORITIES.contains(&request.priority) {
            return Err(validation(format!(
                "1 validation error detected: Value '{}' at 'priority' failed to satisfy constraint: Member must be between 100 and 9900",
                request.priority
            )));
        }
        let id = self
            .control
            .mutate(|m| {
                if let Some(existing) = m
                    .config
                    .firewall_associations
                    .iter()
                    .find(|a| a.creator_request_id.as_deref() == Some(request.creator_request_id.as_str()))
                {
                    return Ok(existing.association_id());
                }
                find_group(m.config, &request.firewall_rule_group_id)?;
                vpc_known(m.config, &request.vpc_id)?;
                let in_vpc = || m.config.firewall_associations.iter().filter(|a| a.vpc == request.vpc_id);
                if in_vpc().any(|a| a.rule_group == request.firewall_rule_group_id) {
                    return Err(conflict(format!(
                        "The rule group {} is already associated with VPC {}.",
                        request.firewall_rule_group_id, request.vpc_id
                    )));
                }
                if in_vpc().any(|a| a.priority == request.priority) {
                    return Err(conflict(format!(
                        "VPC {} already has a rule group association with priority {}.",
                        request.vpc_id, request.priority
                    )));
                }
                let limit = m.config.quotas.firewall_rule_group_associations_per_vpc;
                quota(m.config, in_vpc().count(), limit, "firewall rule group associations per vpc")?;
                let id = new_id("rslvr-frgassoc-");
                m.config.firewall_associations.push(FirewallAssociationConfig {
                    id: Some(id.clone()),
                    rule_group: request.firewall_rule_group_id.clone(),
                    vpc: request.vpc_id.clone(),
                    priority: request.priority,
                    name: Some(request.name.clone()),
                    mutation_protection: protection.unwrap_or(false),
                    creator_request_id: Some(request.creator_request_id.clone()),
                    created: Some(m.now.clone()),
                    modified: Some(m.now.clone()),
                    tags: tags.clone(),
                });
                m.touch(Kind::FirewallAssociation, &id);
                m.start_clock(&id);
                Ok(id)
            })
            .await?;
        let config = self.config();
        Ok(
            json!({ "FirewallRuleGroupAssociation": self.association_json(&config, find_association(&config, &id)?, None) }),
        )
    }

    async fn disassociate(&self) -> Result<Value, ApiError> {
        let id = string_field(&self.body, "FirewallRuleGroupAssociationId")?;
        let config = self.config();
        let before = self.association_json(&config, find_association(&config, &id)?, Some("DELETING"));
        self.control
            .mutate(|m| {
                if find_association(m.config, &id)?.mutation_protection {
                    return Err(validation(format!(
                        "The association {id} has MutationProtection ENABLED; disable it with UpdateFirewallRuleGroupAssociation first."
                    )));
                }
                m.config.firewall_associations.retain(|association| association.association_id() != id);
                m.touch(Kind::FirewallAssociation, &id);
                Ok(())
            })
            .await?;
        Ok(json!({ "FirewallRuleGroupAssociation": before }))
    }

    fn get_association(&self) -> Result<Value, ApiError> {
        let id = string_field(&self.body, "FirewallRuleGroupAssociationId")?;
        let config = self.config();
        Ok(
            json!({ "FirewallRuleGroupAssociation": self.association_json(&config, find_association(&config, &id)?, None) }),
        )
    }

    fn list_associations(&self) -> Result<Value, ApiError> {
        let config = self.config();
        let associations =
            config.firewall_associations.iter().map(|association| self.association_json(&config, association, None));
        self.filtered(associations, &["FirewallRuleGroupId", "VpcId", "Status"], "FirewallRuleGroupAssociations")
    }

    async fn update_association(&self) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            firewall_rule_group_association_id: String,
            priority: Option<u32>,
            mutation_protection: Option<String>,
            name: Option<String>,
        }
        let request: Request = request(&self.body)?;
        check_name(request.name.as_deref())?;
        let protection = request
            .mutation_protection
            .as_deref()
            .map(|value| parse_on_off("mutationProtection", value))
            .transpose()?;
        if let Some(priority) = request.priority
            && !ASSOCIATION_PRIORITIES.contains(&priority)
        {
            return Err(validation(format!(
                "1 validation error detected: Value '{priority}' at 'priority' failed to satisfy constraint: Member must be between 100 and 9900"
            )));
        }
        let id = request.firewall_rule_group_association_id.clone();
        self.control
            .mutate(|m| {
                let current = find_association(m.config, &id)?.clone();
                if let Some(priority) = request.priority
                    && m.config.firewall_associations.iter().any(|other| {
                        other.vpc == current.vpc && other.priority == priority && other.association_id() != id
                    })
                {
                    return Err(conflict(format!(
                        "VPC {} already has a rule group association with priority {priority}.",
                        current.vpc
                    )));
                }
                let now = m.now.clone();
                if let Some(association) =
                    m.config.firewall_associations.iter_mut().find(|association| association.association_id() == id)
                {
                    if let Some(priority) = request.priority {
                        association.priority = priority;
                    }
                    if let Some(protection) = protection {
                        association.mutation_protection = protection;
                    }
                    if let Some(name) = &request.name {
                        association.name = Some(name.clone());
                    }
                    association.modified = Some(now);
                }
                m.touch(Kind::FirewallAssociation, &id);
                Ok(())
            })
            .await?;
        let config = self.config();
        Ok(
            json!({ "FirewallRuleGroupAssociation": self.association_json(&config, find_association(&config, &id)?, None) }),
        )
    }

    // --- firewall configs ---------------------------------------------------

    fn get_config(&self) -> Result<Value, ApiError> {
        let vpc = string_field(&self.body, "ResourceId")?;
        let config = self.config();
        vpc_known(&config, &vpc)?;
        Ok(json!({ "FirewallConfig": self.firewall_config_json(&config, &vpc) }))
    }

    fn list_configs(&self) -> Result<Value, ApiError> {
        let config = self.config();
        let items: Vec<Value> = config.vpcs.iter().map(|vpc| self.firewall_config_json(&config, &vpc.id)).collect();
        paged(items, &self.body, 10, "FirewallConfigs")
    }

    async fn update_config(&self) -> Result<Value, ApiError> {
        let vpc = string_field(&self.body, "ResourceId")?;
        let value = string_field(&self.body, "FirewallFailOpen")?;
        let fail_open = match value.as_str() {
            "USE_LOCAL_RESOURCE_SETTING" => false,
            other => parse_on_off("firewallFailOpen", other)?,
        };
        self.control
            .mutate(|m| {
                vpc_known(m.config, &vpc)?;
                if let Some(known) = m.config.vpcs.iter_mut().find(|known| known.id == vpc) {
                    known.firewall_fail_open = Some(fail_open);
                }
                m.touch(Kind::Vpc, &vpc);
                Ok(())
            })
            .await?;
        let config = self.config();
        Ok(json!({ "FirewallConfig": self.firewall_config_json(&config, &vpc) }))
    }
}
