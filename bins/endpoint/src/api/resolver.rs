//! Route 53 Resolver (`route53resolver`, JSON 1.1, `X-Amz-Target:
//! Route53Resolver.<Operation>`): endpoints and their addresses, rules and
//! their VPC associations, query logging configurations and their
//! associations, tags, and the per-VPC Resolver and DNSSEC configs.
//!
//! Every change goes through [`ControlPlane::mutate`]: the checks here are
//! the API's own (ids, creator request ids, subnets, quotas); the model's
//! checks (the ones a TOML file goes through) run when the change is made
//! live, and their errors come back as the service's.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{Value, json};
use signpost_wire::NameBuf;

use super::error::ApiError;
use super::paging::{Filter, page, paged, paged_with_max};
use crate::control::{ControlPlane, Kind, Runtime, new_id};
use crate::destinations::{DestinationKind, arn_file};
use crate::model::{
    DnssecValidation, EndpointAddress, EndpointConfig, EndpointType, InboundEndpointConfig, OutboundEndpointConfig,
    QueryLoggingConfig, ResolverRuleConfig, RuleType, Tags, TargetConfig, VpcAssociation,
};
use crate::protocols::{Direction, EndpointProtocol, Protocols};

/// The operations this module answers (the others of the service get
/// `UnsupportedOperation`).
pub const OPERATIONS: &[&str] = &[
    "AssociateResolverEndpointIpAddress",
    "AssociateResolverQueryLogConfig",
    "AssociateResolverRule",
    "CreateResolverEndpoint",
    "CreateResolverQueryLogConfig",
    "CreateResolverRule",
    "DeleteResolverEndpoint",
    "DeleteResolverQueryLogConfig",
    "DeleteResolverRule",
    "DisassociateResolverEndpointIpAddress",
    "DisassociateResolverQueryLogConfig",
    "DisassociateResolverRule",
    "GetResolverConfig",
    "GetResolverDnssecConfig",
    "GetResolverEndpoint",
    "GetResolverQueryLogConfig",
    "GetResolverQueryLogConfigAssociation",
    "GetResolverQueryLogConfigPolicy",
    "GetResolverRule",
    "GetResolverRuleAssociation",
    "GetResolverRulePolicy",
    "ListResolverConfigs",
    "ListResolverDnssecConfigs",
    "ListResolverEndpointIpAddresses",
    "ListResolverEndpoints",
    "ListResolverQueryLogConfigAssociations",
    "ListResolverQueryLogConfigs",
    "ListResolverRuleAssociations",
    "ListResolverRules",
    "ListTagsForResource",
    "PutResolverQueryLogConfigPolicy",
    "PutResolverRulePolicy",
    "TagResource",
    "UntagResource",
    "UpdateResolverConfig",
    "UpdateResolverDnssecConfig",
    "UpdateResolverEndpoint",
    "UpdateResolverRule",
];

/// Answer one Route 53 Resolver call.
pub async fn handle<R: Runtime>(control: &ControlPlane<R>, operation: &str, body: Value) -> Result<Value, ApiError> {
    let call = Call { control, body };
    match operation {
        "CreateResolverEndpoint" => call.create_endpoint().await,
        "GetResolverEndpoint" => call.get_endpoint(),
        "ListResolverEndpoints" => call.list_endpoints(),
        "UpdateResolverEndpoint" => call.update_endpoint().await,
        "DeleteResolverEndpoint" => call.delete_endpoint().await,
        "AssociateResolverEndpointIpAddress" => call.change_endpoint_address(true).await,
        "DisassociateResolverEndpointIpAddress" => call.change_endpoint_address(false).await,
        "ListResolverEndpointIpAddresses" => call.list_endpoint_addresses(),
        "CreateResolverRule" => call.create_rule().await,
        "GetResolverRule" => call.get_rule(),
        "ListResolverRules" => call.list_rules(),
        "UpdateResolverRule" => call.update_rule().await,
        "DeleteResolverRule" => call.delete_rule().await,
        "AssociateResolverRule" => call.associate_rule().await,
        "DisassociateResolverRule" => call.disassociate_rule().await,
        "GetResolverRuleAssociation" => call.get_association::<ResolverRuleConfig>("ResolverRuleAssociationId"),
        "ListResolverRuleAssociations" => call.list_rule_associations(),
        "CreateResolverQueryLogConfig" => call.create_query_log_config().await,
        "GetResolverQueryLogConfig" => call.get_query_log_config(),
        "ListResolverQueryLogConfigs" => call.list_query_log_configs(),
        "DeleteResolverQueryLogConfig" => call.delete_query_log_config().await,
        "AssociateResolverQueryLogConfig" => call.associate_query_log_config().await,
        "DisassociateResolverQueryLogConfig" => call.disassociate_query_log_config().await,
        "GetResolverQueryLogConfigAssociation" => {
            call.get_association::<QueryLoggingConfig>("ResolverQueryLogConfigAssociationId")
        }
        "ListResolverQueryLogConfigAssociations" => call.list_query_log_associations(),
        "TagResource" => call.tag_resource().await,
        "UntagResource" => call.untag_resource().await,
        "ListTagsForResource" => call.list_tags(),
        "GetResolverConfig" => call.get_resolver_config(),
        "ListResolverConfigs" => call.list_resolver_configs(),
        "UpdateResolverConfig" => call.update_resolver_config().await,
        "GetResolverDnssecConfig" => call.get_dnssec_config(),
        "ListResolverDnssecConfigs" => call.list_dnssec_configs(),
        "UpdateResolverDnssecConfig" => call.update_dnssec_config().await,
        "GetResolverRulePolicy" => call.get_policy(&RULE_POLICY),
        "PutResolverRulePolicy" => call.put_policy(&RULE_POLICY).await,
        "GetResolverQueryLogConfigPolicy" => call.get_policy(&QUERY_LOG_POLICY),
        "PutResolverQueryLogConfigPolicy" => call.put_policy(&QUERY_LOG_POLICY).await,
        "GetFirewallRuleGroupPolicy" => call.get_policy(&FIREWALL_RULE_GROUP_POLICY),
        "PutFirewallRuleGroupPolicy" => call.put_policy(&FIREWALL_RULE_GROUP_POLICY).await,
        other => super::firewall::handle(control, other, call.body).await,
    }
}

struct Call<'a, R: Runtime> {
    control: &'a ControlPlane<R>,
    body: Value,
}

pub(super) fn request<T: for<'de> Deserialize<'de>>(body: &Value) -> Result<T, ApiError> {
    T::deserialize(body)
        .map_err(|error| ApiError::bad_request("ValidationException", format!("1 validation error detected: {error}")))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TagRequest {
    key: String,
    value: String,
}

pub(super) fn tags_from(list: Option<Vec<TagRequest>>) -> Result<Tags, ApiError> {
    let mut tags = Tags::new();
    for tag in list.unwrap_or_default() {
        if tag.key.is_empty() || tag.key.len() > 128 || tag.value.len() > 256 {
            return Err(ApiError::bad_request(
                "InvalidTagException",
                format!("The tag {:?} is not valid: keys are 1 to 128 characters, values up to 256.", tag.key),
            ));
        }
        tags.insert(tag.key, tag.value);
    }
    if tags.len() > 200 {
        return Err(ApiError::limit_exceeded("A resource can have at most 200 tags."));
    }
    Ok(tags)
}

pub(super) fn check_name(name: Option<&str>) -> Result<(), ApiError> {
    let Some(name) = name else { return Ok(()) };
    let valid = name.len() <= 64
        && !name.is_empty()
        && !name.bytes().all(|b| b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_ ".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "ValidationException",
            format!(
                "1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9\\-_' ']+)"
            ),
        ))
    }
}

pub(super) fn arn(config: &EndpointConfig, resource: &str, id: &str) -> String {
    format!("arn:aws:route53resolver:{}:{}:{resource}/{id}", config.region, config.account_id)
}

pub(super) fn quota(config: &EndpointConfig, used: usize, limit: u32, what: &str) -> Result<(), ApiError> {
    if config.quotas.enabled && used >= limit as usize {
        return Err(ApiError::limit_exceeded(format!(
            "Account '{}' has reached the quota of {limit} {what} (quotas.{}).",
            config.account_id,
            what.replace(' ', "_")
        )));
    }
    Ok(())
}

/// An endpoint of either direction, as the API sees it.
struct EndpointView<'c> {
    id: &'c str,
    direction: Direction,
    vpc: &'c str,
    addresses: &'c [EndpointAddress],
    protocols: &'c [EndpointProtocol],
    security_groups: &'c [String],
    endpoint_type: EndpointType,
    name: Option<&'c str>,
    creator_request_id: Option<&'c str>,
    created: Option<&'c str>,
    modified: Option<&'c str>,
}

impl<'c> From<&'c InboundEndpointConfig> for EndpointView<'c> {
    fn from(e: &'c InboundEndpointConfig) -> Self {
        Self {
            id: &e.id,
            direction: Direction::Inbound,
            vpc: &e.vpc,
            addresses: &e.addresses,
            protocols: &e.protocols,
            security_groups: &e.security_groups,
            endpoint_type: EndpointType::of(e.endpoint_type, &e.addresses),
            name: e.name.as_deref(),
            creator_request_id: e.creator_request_id.as_deref(),
            created: e.created.as_deref(),
            modified: e.modified.as_deref(),
        }
    }
}

impl<'c> From<&'c OutboundEndpointConfig> for EndpointView<'c> {
    fn from(e: &'c OutboundEndpointConfig) -> Self {
        Self {
            id: &e.id,
            direction: Direction::Outbound,
            vpc: &e.vpc,
            addresses: &e.addresses,
            protocols: &e.protocols,
            security_groups: &e.security_groups,
            endpoint_type: EndpointType::of(e.endpoint_type, &e.addresses),
            name: e.name.as_deref(),
            creator_request_id: e.creator_request_id.as_deref(),
            created: e.created.as_deref(),
            modified: e.modified.as_deref(),
        }
    }
}

/// The fields the API changes on an endpoint of either direction.
struct EndpointFieldsMut<'c> {
    kind: Kind,
    name: &'c mut Option<String>,
    protocols: &'c mut Vec<EndpointProtocol>,
    endpoint_type: &'c mut Option<EndpointType>,
    modified: &'c mut Option<String>,
    addresses: &'c mut Vec<EndpointAddress>,
}

fn endpoint_mut<'c>(config: &'c mut EndpointConfig, id: &str) -> Option<EndpointFieldsMut<'c>> {
    if let Some(e) = config.inbound_endpoints.iter_mut().find(|e| e.id == id) {
        return Some(EndpointFieldsMut {
            kind: Kind::InboundEndpoint,
            name: &mut e.name,
            protocols: &mut e.protocols,
            endpoint_type: &mut e.endpoint_type,
            modified: &mut e.modified,
            addresses: &mut e.addresses,
        });
    }
    config.outbound_endpoints.iter_mut().find(|e| e.id == id).map(|e| EndpointFieldsMut {
        kind: Kind::OutboundEndpoint,
        name: &mut e.name,
        protocols: &mut e.protocols,
        endpoint_type: &mut e.endpoint_type,
        modified: &mut e.modified,
        addresses: &mut e.addresses,
    })
}

fn endpoints(config: &EndpointConfig) -> Vec<EndpointView<'_>> {
    config
        .inbound_endpoints
        .iter()
        .map(EndpointView::from)
        .chain(config.outbound_endpoints.iter().map(EndpointView::from))
        .collect()
}

fn find_endpoint<'c>(config: &'c EndpointConfig, id: &str) -> Result<EndpointView<'c>, ApiError> {
    config
        .inbound_endpoints
        .iter()
        .find(|e| e.id == id)
        .map(EndpointView::from)
        .or_else(|| config.outbound_endpoints.iter().find(|e| e.id == id).map(EndpointView::from))
        .ok_or_else(|| ApiError::not_found(format!("[RSLVR-00101] Resolver endpoint with ID \"{id}\" does not exist.")))
}

fn protocols_text(protocols: &[EndpointProtocol]) -> Vec<&'static str> {
    if protocols.is_empty() { vec!["Do53"] } else { protocols.iter().map(|p| p.as_str()).collect() }
}

impl<R: Runtime> Call<'_, R> {
    fn config(&self) -> std::sync::Arc<EndpointConfig> {
        self.control.snapshot()
    }

    fn endpoint_json(&self, config: &EndpointConfig, endpoint: &EndpointView<'_>, status: Option<&str>) -> Value {
        let settled = self.control.settled(endpoint.id);
        let status = status.unwrap_or(if settled { "OPERATIONAL" } else { "CREATING" });
        let message = match status {
            "OPERATIONAL" => "This Resolver Endpoint is operational.",
            "CREATING" => "Creating the Resolver Endpoint.",
            "DELETING" => "Deleting the Resolver Endpoint.",
            _ => "",
        };
        let mut value = json!({
            "Id": endpoint.id,
            "Arn": arn(config, "resolver-endpoint", endpoint.id),
            "SecurityGroupIds": endpoint.security_groups,
            "Direction": if endpoint.direction == Direction::Inbound { "INBOUND" } else { "OUTBOUND" },
            "IpAddressCount": endpoint.addresses.len(),
            "HostVPCId": endpoint.vpc,
            "Status": status,
            "StatusMessage": message,
            "ResolverEndpointType": endpoint.endpoint_type.as_str(),
            "Protocols": protocols_text(endpoint.protocols),
        });
        insert_optional(&mut value, "Name", endpoint.name);
        insert_optional(&mut value, "CreatorRequestId", endpoint.creator_request_id);
        insert_optional(&mut value, "CreationTime", endpoint.created);
        insert_optional(&mut value, "ModificationTime", endpoint.modified.or(endpoint.created));
        value
    }

    fn rule_json(&self, config: &EndpointConfig, rule: &ResolverRuleConfig, status: Option<&str>) -> Value {
        let status = status.unwrap_or("COMPLETE");
        let message = match status {
            "COMPLETE" => "[Trace id: 1-00000000-000000000000000000000000] Successfully created Resolver Rule.",
            "DELETING" => "[Trace id: 1-00000000-000000000000000000000000] Deleting Resolver Rule.",
            _ => "",
        };
        let mut value = json!({
            "Id": rule.id,
            "Arn": arn(config, "resolver-rule", &rule.id),
            "DomainName": fqdn(&rule.domain),
            "Status": status,
            "StatusMessage": message,
            "RuleType": rule.rule_type.as_str(),
            "OwnerId": config.account_id,
            "ShareStatus": "NOT_SHARED",
        });
        insert_optional(&mut value, "Name", rule.name.as_deref());
        insert_optional(&mut value, "CreatorRequestId", rule.creator_request_id.as_deref());
        insert_optional(&mut value, "CreationTime", rule.created.as_deref());
        insert_optional(&mut value, "ModificationTime", rule.modified.as_deref().or(rule.created.as_deref()));
        insert_optional(&mut value, "ResolverEndpointId", rule.outbound_endpoint.as_deref());
        if rule.rule_type == RuleType::Forward {
            let targets: Vec<Value> = rule.targets.iter().map(target_json).collect();
            if let Some(object) = value.as_object_mut() {
                object.insert("TargetIps".into(), Value::Array(targets));
            }
        }
        value
    }

    /// The API's view of `owner`'s `association` (its status as given,
    /// else by the association's clock).
    fn association_json<T: Associated>(&self, owner: &T, association: &VpcAssociation, status: Option<&str>) -> Value {
        let id = association_id(association, T::PREFIX, owner.id());
        let settled = self.control.settled(&id);
        let status = status.unwrap_or(if settled { T::SETTLED } else { "CREATING" });
        owner.association_json(association, id, status)
    }

    /// Every association of every `T`, as the API shows them.
    fn associations_json<T: Associated>(&self, config: &EndpointConfig) -> Vec<Value> {
        T::all(config)
            .iter()
            .flat_map(|owner| owner.vpcs().iter().map(move |association| (owner, association)))
            .map(|(owner, association)| self.association_json(owner, association, None))
            .collect()
    }

    /// Associate `vpc` with `owner_id` (named `name`) once `check` accepts it.
    async fn associate<T: Associated>(
        &self,
        owner_id: &str,
        vpc: &str,
        name: Option<String>,
        check: impl FnOnce(&EndpointConfig, &T) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        let association_id = self
            .control
            .mutate(|m| {
                let config = &*m.config;
                let owner = T::find(config, owner_id)?;
                vpc_exists(config, vpc)?;
                check(config, owner)?;
                let id = new_id(T::PREFIX);
                let now = m.now.clone();
                if let Some(owner) = T::all_mut(m.config).iter_mut().find(|owner| owner.id() == owner_id) {
                    owner.vpcs_mut().push(VpcAssociation {
                        vpc: vpc.to_string(),
                        id: Some(id.clone()),
                        name,
                        created: Some(now),
                    });
                }
                m.touch(T::KIND, owner_id);
                m.start_clock(&id);
                Ok(id)
            })
            .await?;
        let config = self.config();
        let (owner, association) = find_association::<T>(&config, &association_id)?;
        Ok(json!({ (T::KEY): self.association_json(owner, association, Some("CREATING")) }))
    }

    /// Remove the association of `vpc` with `owner_id`; the API's view of it before.
    async fn disassociate<T: Associated>(&self, owner_id: &str, vpc: &str) -> Result<Value, ApiError> {
        let config = self.config();
        let owner = T::find(&config, owner_id)?;
        let Some(association) = owner.vpcs().iter().find(|association| association.vpc == vpc) else {
            return Err(owner.not_associated(vpc));
        };
        let before = self.association_json(owner, association, Some("DELETING"));
        self.control
            .mutate(|m| {
                T::find(m.config, owner_id)?;
                if let Some(owner) = T::all_mut(m.config).iter_mut().find(|owner| owner.id() == owner_id) {
                    owner.vpcs_mut().retain(|association| association.vpc != vpc);
                }
                m.touch(T::KIND, owner_id);
                Ok(())
            })
            .await?;
        Ok(json!({ (T::KEY): before }))
    }

    /// The association whose id the request's `field` gives.
    fn get_association<T: Associated>(&self, field: &str) -> Result<Value, ApiError> {
        let id = string_field(&self.body, field)?;
        let config = self.config();
        let (owner, association) = find_association::<T>(&config, &id)?;
        Ok(json!({ (T::KEY): self.association_json(owner, association, None) }))
    }

    fn query_log_json(&self, config: &EndpointConfig, log: &QueryLoggingConfig, status: Option<&str>) -> Value {
        let settled = self.control.settled(&log.id);
        let mut value = json!({
            "Id": log.id,
            "OwnerId": config.account_id,
            "Status": status.unwrap_or(if settled { "CREATED" } else { "CREATING" }),
            "ShareStatus": "NOT_SHARED",
            "AssociationCount": log.vpcs.len(),
            "Arn": arn(config, "resolver-query-log-config", &log.id),
            "Name": log.name.clone().unwrap_or_else(|| log.id.clone()),
            "DestinationArn": log.destination,
        });
        insert_optional(&mut value, "CreatorRequestId", log.creator_request_id.as_deref());
        insert_optional(&mut value, "CreationTime", log.created.as_deref());
        value
    }

    // --- endpoints ----------------------------------------------------------

    async fn create_endpoint(&self) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct AddressRequest {
            subnet_id: String,
            ip: Option<IpAddr>,
            ipv6: Option<IpAddr>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            creator_request_id: String,
            name: Option<String>,
            security_group_ids: Vec<String>,
            direction: String,
            ip_addresses: Vec<AddressRequest>,
            tags: Option<Vec<TagRequest>>,
            resolver_endpoint_type: Option<String>,
            protocols: Option<Vec<String>>,
            outpost_arn: Option<String>,
        }
        let request: Request = request(&self.body)?;
        check_name(request.name.as_deref())?;
        let tags = tags_from(request.tags)?;
        let direction = match request.direction.as_str() {
            "INBOUND" => Direction::Inbound,
            "OUTBOUND" => Direction::Outbound,
            other => {
                return Err(ApiError::invalid_parameter(format!(
                    "Direction {other} is not supported by signpost-endpoint (INBOUND or OUTBOUND)."
                )));
            }
        };
        if request.outpost_arn.is_some() {
            return Err(ApiError::invalid_parameter("Outposts are not emulated by signpost-endpoint."));
        }
        let endpoint_type = endpoint_type(request.resolver_endpoint_type.as_deref())?.unwrap_or(EndpointType::Ipv4);
        let protocols = parse_protocols(request.protocols.as_deref())?;
        let value = self
            .control
            .mutate(|m| {
                let config = &*m.config;
                if endpoints(config).iter().any(|e| e.creator_request_id == Some(request.creator_request_id.as_str())) {
                    return Err(ApiError::exists(format!(
                        "Resolver Endpoint with creator request id {} already exists",
                        request.creator_request_id
                    )));
                }
                quota(
                    config,
                    endpoints(config).len(),
                    config.quotas.resolver_endpoints_per_region,
                    "resolver endpoints per region",
                )?;
                check_security_groups(config, &request.security_group_ids)?;
                if request.ip_addresses.len() < 2 {
                    return Err(ApiError::invalid_request(
                        "[RSLVR-00400] Resolver endpoint need to have at least 2 IP addresses.",
                    ));
                }
                quota(
                    config,
                    request.ip_addresses.len() - 1,
                    config.quotas.ip_addresses_per_endpoint,
                    "ip addresses per endpoint",
                )?;
                let id = new_id(if direction == Direction::Inbound { "rslvr-in-" } else { "rslvr-out-" });
                let mut addresses: Vec<EndpointAddress> = Vec::new();
                let mut vpc: Option<String> = None;
                for address in &request.ip_addresses {
                    let wanted = Wanted { ip: address.ip, ipv6: address.ipv6 };
                    let chosen =
                        endpoint_address(config, endpoint_type, &address.subnet_id, wanted, &addresses, &mut vpc)?;
                    addresses.push(chosen);
                }
                let vpc = vpc.unwrap_or_default();
                if let Some(group) = request
                    .security_group_ids
                    .iter()
                    .find(|group| config.security_groups.iter().any(|known| known.id == **group && known.vpc != vpc))
                {
                    return Err(ApiError::invalid_parameter(format!(
                        "The security group {group} is not in the VPC of the subnets ({vpc})."
                    )));
                }
                let now = m.now.clone();
                match direction {
                    Direction::Inbound => m.config.inbound_endpoints.push(InboundEndpointConfig {
                        id: id.clone(),
                        vpc,
                        addresses,
                        protocols: protocols.clone(),
                        port: None,
                        doh_port: None,
                        doh_path: "/dns-query".to_string(),
                        tls_cert: None,
                        tls_key: None,
                        allow: None,
                        security_groups: request.security_group_ids.clone(),
                        endpoint_type: Some(endpoint_type),
                        name: request.name.clone(),
                        creator_request_id: Some(request.creator_request_id.clone()),
                        created: Some(now.clone()),
                        modified: Some(now),
                        tags: tags.clone(),
                    }),
                    Direction::Outbound => m.config.outbound_endpoints.push(OutboundEndpointConfig {
                        id: id.clone(),
                        vpc,
                        addresses,
                        protocols: protocols.clone(),
                        ca_file: None,
                        ignore_system_roots: false,
                        security_groups: request.security_group_ids.clone(),
                        endpoint_type: Some(endpoint_type),
                        name: request.name.clone(),
                        creator_request_id: Some(request.creator_request_id.clone()),
                        created: Some(now.clone()),
                        modified: Some(now),
                        tags: tags.clone(),
                    }),
                }
                m.touch(
                    if direction == Direction::Inbound { Kind::InboundEndpoint } else { Kind::OutboundEndpoint },
                    &id,
                );
                m.start_clock(&id);
                Ok(id)
            })
            .await?;
        let config = self.config();
        let endpoint = find_endpoint(&config, &value)?;
        Ok(json!({ "ResolverEndpoint": self.endpoint_json(&config, &endpoint, Some("CREATING")) }))
    }

    fn get_endpoint(&self) -> Result<Value, ApiError> {
        let id = string_field(&self.body, "ResolverEndpointId")?;
        let config = self.config();
        let endpoint = find_endpoint(&config, &id)?;
        Ok(json!({ "ResolverEndpoint": self.endpoint_json(&config, &endpoint, None) }))
    }

    fn list_endpoints(&self) -> Result<Value, ApiError> {
        let config = self.config();
        let filter = Filter::parse(
            &self.body,
            &[
                ("creatorrequestid", "CreatorRequestId"),
                ("direction", "Direction"),
                ("hostvpcid", "HostVPCId"),
                ("ipaddresscount", "IpAddressCount"),
                ("name", "Name"),
                ("securitygroupids", "SecurityGroupIds"),
                ("status", "Status"),
                ("resolverendpointtype", "ResolverEndpointType"),
                ("protocols", "Protocols"),
            ],
        )?;
        let items: Vec<Value> = endpoints(&config)
            .iter()
            .map(|endpoint| self.endpoint_json(&config, endpoint, None))
            .filter(|item| filter.matches(item))
            .collect();
        paged_with_max(items, &self.body, 10, "ResolverEndpoints")
    }

    async fn update_endpoint(&self) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            resolver_endpoint_id: String,
            name: Option<String>,
            resolver_endpoint_type: Option<String>,
            protocols: Option<Vec<String>>,
            update_ip_addresses: Option<Vec<IpUpdate>>,
        }
        let request: Request = request(&self.body)?;
        check_name(request.name.as_deref())?;
        let wanted_type = endpoint_type(request.resolver_endpoint_type.as_deref())?;
        let updates = request.update_ip_addresses.unwrap_or_default();
        let protocols = request.protocols.as_deref().map(|list| parse_protocols(Some(list))).transpose()?;
        let id = request.resolver_endpoint_id.clone();
        self.control
            .mutate(|m| {
                let endpoint = find_endpoint(m.config, &id)?;
                let addresses = match wanted_type {
                    Some(wanted) => retyped_addresses(m.config, &endpoint, wanted, &updates)?,
                    None if updates.is_empty() => endpoint.addresses.to_vec(),
                    None => retyped_addresses(m.config, &endpoint, endpoint.endpoint_type, &updates)?,
                };
                let now = m.now.clone();
                if let Some(endpoint) = endpoint_mut(m.config, &id) {
                    if let Some(name) = &request.name {
                        *endpoint.name = Some(name.clone());
                    }
                    if let Some(protocols) = &protocols {
                        *endpoint.protocols = protocols.clone();
                    }
                    if let Some(wanted) = wanted_type {
                        *endpoint.endpoint_type = Some(wanted);
                    }
                    *endpoint.addresses = addresses;
                    *endpoint.modified = Some(now);
                    let kind = endpoint.kind;
                    m.touch(kind, &id);
                }
                Ok(())
            })
            .await?;
        let config = self.config();
        let endpoint = find_endpoint(&config, &id)?;
        Ok(json!({ "ResolverEndpoint": self.endpoint_json(&config, &endpoint, None) }))
    }

    async fn delete_endpoint(&self) -> Result<Value, ApiError> {
        let id = string_field(&self.body, "ResolverEndpointId")?;
        let config = self.config();
        let before = self.endpoint_json(&config, &find_endpoint(&config, &id)?, Some("DELETING"));
        self.control
            .mutate(|m| {
                find_endpoint(m.config, &id)?;
                let rules: Vec<String> = m
                    .config
                    .resolver_rules
                    .iter()
                    .filter(|rule| rule.outbound_endpoint.as_deref() == Some(id.as_str()))
                    .map(|rule| format!("\"{}\"", rule.id))
                    .collect();
                if !rules.is_empty() {
                    return Err(ApiError::invalid_request(format!(
                        "[RSLVR-00600] Cannot delete resolver endpoint unless its related resolver rules are deleted. The following rules still exist for this resolver endpoint: {}",
                        rules.join(", ")
                    )));
                }
                if m.config.inbound_endpoints.iter().any(|e| e.id == id) {
                    m.config.inbound_endpoints.retain(|e| e.id != id);
                    m.touch(Kind::InboundEndpoint, &id);
                } else {
                    m.config.outbound_endpoints.retain(|e| e.id != id);
                    m.touch(Kind::OutboundEndpoint, &id);
                }
                Ok(())
            })
            .await?;
        Ok(json!({ "ResolverEndpoint": before }))
    }

    async fn change_endpoint_address(&self, add: bool) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct AddressUpdate {
            ip_id: Option<String>,
            subnet_id: Option<String>,
            ip: Option<IpAddr>,
            ipv6: Option<IpAddr>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            resolver_endpoint_id: String,
            ip_address: AddressUpdate,
        }
        let request: Request = request(&self.body)?;
        let id = request.resolver_endpoint_id.clone();
        self.control
            .mutate(|m| {
                let endpoint = find_endpoint(m.config, &id)?;
                let mut addresses = endpoint.addresses.to_vec();
                let update = &request.ip_address;
                if add {
                    quota(m.config, addresses.len(), m.config.quotas.ip_addresses_per_endpoint, "ip addresses per endpoint")?;
                    let Some(subnet) = &update.subnet_id else {
                        return Err(ApiError::invalid_request("[RSLVR-00503] A SubnetId is needed to add an IP address."));
                    };
                    let mut vpc = Some(endpoint.vpc.to_string());
                    let wanted = Wanted { ip: update.ip, ipv6: update.ipv6 };
                    let chosen = endpoint_address(m.config, endpoint.endpoint_type, subnet, wanted, &addresses, &mut vpc)?;
                    if vpc.as_deref() != Some(endpoint.vpc) {
                        return Err(ApiError::invalid_request(format!(
                            "The subnet {subnet} is not in the VPC of resolver endpoint {id}."
                        )));
                    }
                    addresses.push(chosen);
                } else {
                    let position = addresses.iter().position(|address| {
                        update.ip_id.as_ref().is_some_and(|ip_id| address.id.as_ref() == Some(ip_id))
                            || update.ip.into_iter().chain(update.ipv6).any(|ip| address.ips().any(|own| own == ip))
                    });
                    let Some(position) = position else {
                        if update.ip_id.is_none() && update.ip.is_none() && update.ipv6.is_none() {
                            return Err(ApiError::invalid_request(
                                "[RSLVR-00503] Need to specify either the IP ID or both subnet and IP address in order to remove IP address.",
                            ));
                        }
                        return Err(ApiError::not_found(format!("The IP address is not an address of resolver endpoint {id}.")));
                    };
                    if addresses.len() <= 2 {
                        return Err(ApiError::invalid_request(
                            "[RSLVR-00400] Resolver endpoint need to have at least 2 IP addresses.",
                        ));
                    }
                    addresses.remove(position);
                }
                let now = m.now.clone();
                if let Some(endpoint) = endpoint_mut(m.config, &id) {
                    *endpoint.addresses = addresses;
                    *endpoint.modified = Some(now);
                    let kind = endpoint.kind;
                    m.touch(kind, &id);
                }
                Ok(())
            })
            .await?;
        let config = self.config();
        let endpoint = find_endpoint(&config, &id)?;
        Ok(json!({ "ResolverEndpoint": self.endpoint_json(&config, &endpoint, Some("UPDATING")) }))
    }

    fn list_endpoint_addresses(&self) -> Result<Value, ApiError> {
        let id = string_field(&self.body, "ResolverEndpointId")?;
        let config = self.config();
        let endpoint = find_endpoint(&config, &id)?;
        let settled = self.control.settled(&id);
        let items: Vec<Value> = endpoint
            .addresses
            .iter()
            .map(|address| {
                let mut value = json!({
                    "IpId": address.id.clone().unwrap_or_default(),
                    "Status": if settled { "ATTACHED" } else { "CREATING" },
                    "StatusMessage": if settled { "This IP address is operational." } else { "Creating the IP address." },
                });
                if let Some(object) = value.as_object_mut() {
                    if let Some(subnet) = &address.subnet {
                        object.insert("SubnetId".into(), json!(subnet));
                    }
                    for ip in address.ips() {
                        object.insert(if ip.is_ipv4() { "Ip".into() } else { "Ipv6".into() }, json!(ip.to_string()));
                    }
                }
                insert_optional(&mut value, "CreationTime", endpoint.created);
                insert_optional(&mut value, "ModificationTime", endpoint.modified.or(endpoint.created));
                value
            })
            .collect();
        paged_with_max(items, &self.body, 10, "IpAddresses")
    }

    // --- rules --------------------------------------------------------------

    async fn create_rule(&self) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            creator_request_id: String,
            name: Option<String>,
            rule_type: String,
            domain_name: Option<String>,
            target_ips: Option<Vec<TargetRequest>>,
            resolver_endpoint_id: Option<String>,
            tags: Option<Vec<TagRequest>>,
            delegation_record: Option<String>,
        }
        let request: Request = request(&self.body)?;
        check_name(request.name.as_deref())?;
        let tags = tags_from(request.tags)?;
        let rule_type = match request.rule_type.as_str() {
            "FORWARD" => RuleType::Forward,
            "SYSTEM" => RuleType::System,
            "RECURSIVE" => {
                return Err(ApiError::invalid_request("[RSLVR-00718] Cannot create a rule with type RECURSIVE"));
            }
            other => {
                return Err(ApiError::invalid_parameter(format!(
                    "RuleType {other} is not supported by signpost-endpoint (FORWARD or SYSTEM)."
                )));
            }
        };
        if request.delegation_record.is_some() {
            return Err(ApiError::invalid_parameter(
                "DelegationRecord (DELEGATE rules) is not supported by signpost-endpoint.",
            ));
        }
        let Some(domain) = request.domain_name.as_deref() else {
            return Err(ApiError::invalid_request("A resolver rule needs a DomainName."));
        };
        let domain = canonical_domain(domain)?;
        let id = self
            .control
            .mutate(|m| {
                let config = &*m.config;
                if config
                    .resolver_rules
                    .iter()
                    .any(|rule| rule.creator_request_id.as_deref() == Some(request.creator_request_id.as_str()))
                {
                    return Err(ApiError::exists(format!(
                        "Resolver rule with creator request id {} already exists",
                        request.creator_request_id
                    )));
                }
                quota(
                    config,
                    config.resolver_rules.len(),
                    config.quotas.resolver_rules_per_region,
                    "resolver rules per region",
                )?;
                let targets = rule_targets(
                    config,
                    rule_type,
                    request.resolver_endpoint_id.as_deref(),
                    request.target_ips.as_deref().unwrap_or_default(),
                )?;
                let id = new_id("rslvr-rr-");
                let now = m.now.clone();
                m.config.resolver_rules.push(ResolverRuleConfig {
                    id: id.clone(),
                    rule_type,
                    domain: domain.clone(),
                    outbound_endpoint: request.resolver_endpoint_id.clone(),
                    targets,
                    vpcs: Vec::new(),
                    name: request.name.clone(),
                    creator_request_id: Some(request.creator_request_id.clone()),
                    created: Some(now.clone()),
                    modified: Some(now),
                    tags: tags.clone(),
                    policy: None,
                });
                m.touch(Kind::ResolverRule, &id);
                Ok(id)
            })
            .await?;
        let config = self.config();
        let rule = find_rule(&config, &id)?;
        Ok(json!({ "ResolverRule": self.rule_json(&config, rule, None) }))
    }

    fn get_rule(&self) -> Result<Value, ApiError> {
        let id = string_field(&self.body, "ResolverRuleId")?;
        let config = self.config();
        let rule = find_rule(&config, &id)?;
        Ok(json!({ "ResolverRule": self.rule_json(&config, rule, None) }))
    }

    fn list_rules(&self) -> Result<Value, ApiError> {
        let config = self.config();
        let filter = Filter::parse(
            &self.body,
            &[
                ("creatorrequestid", "CreatorRequestId"),
                ("domainname", "DomainName"),
                ("name", "Name"),
                ("resolverendpointid", "ResolverEndpointId"),
                ("status", "Status"),
                ("type", "RuleType"),
            ],
        )?;
        let items: Vec<Value> = config
            .resolver_rules
            .iter()
            .map(|rule| self.rule_json(&config, rule, None))
            .filter(|item| filter.matches(item))
            .collect();
        paged_with_max(items, &self.body, 10, "ResolverRules")
    }

    async fn update_rule(&self) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Changes {
            name: Option<String>,
            target_ips: Option<Vec<TargetRequest>>,
            resolver_endpoint_id: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            resolver_rule_id: String,
            config: Changes,
        }
        let request: Request = request(&self.body)?;
        check_name(request.config.name.as_deref())?;
        let id = request.resolver_rule_id.clone();
        self.control
            .mutate(|m| {
                let rule = find_rule(m.config, &id)?;
                let endpoint = request.config.resolver_endpoint_id.clone().or_else(|| rule.outbound_endpoint.clone());
                let targets = match &request.config.target_ips {
                    Some(targets) => Some(rule_targets(m.config, rule.rule_type, endpoint.as_deref(), targets)?),
                    None if request.config.resolver_endpoint_id.is_some() => {
                        // Same targets, new endpoint: check them against it.
                        let requests: Vec<TargetRequest> = rule.targets.iter().map(TargetRequest::from).collect();
                        Some(rule_targets(m.config, rule.rule_type, endpoint.as_deref(), &requests)?)
                    }
                    None => None,
                };
                let now = m.now.clone();
                if let Some(rule) = m.config.resolver_rules.iter_mut().find(|rule| rule.id == id) {
                    if let Some(name) = &request.config.name {
                        rule.name = Some(name.clone());
                    }
                    if let Some(targets) = targets {
                        rule.targets = targets;
                    }
                    rule.outbound_endpoint = endpoint;
                    rule.modified = Some(now);
                }
                m.touch(Kind::ResolverRule, &id);
                Ok(())
            })
            .await?;
        let config = self.config();
        let rule = find_rule(&config, &id)?;
        Ok(json!({ "ResolverRule": self.rule_json(&config, rule, None) }))
    }

    async fn delete_rule(&self) -> Result<Value, ApiError> {
        let id = string_field(&self.body, "ResolverRuleId")?;
        let config = self.config();
        let before = self.rule_json(&config, find_rule(&config, &id)?, Some("DELETING"));
        self.control
            .mutate(|m| {
                let rule = find_rule(m.config, &id)?;
                if !rule.vpcs.is_empty() {
                    return Err(ApiError::bad_request(
                        "ResourceInUseException",
                        format!(
                            "Resolver rule {id} is associated with {}; disassociate it from every VPC before deleting it.",
                            rule.vpc_ids().join(", ")
                        ),
                    ));
                }
                m.config.resolver_rules.retain(|rule| rule.id != id);
                m.touch(Kind::ResolverRule, &id);
                Ok(())
            })
            .await?;
        Ok(json!({ "ResolverRule": before }))
    }

    async fn associate_rule(&self) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            resolver_rule_id: String,
            name: Option<String>,
            #[serde(rename = "VPCId")]
            vpc_id: String,
        }
        let request: Request = request(&self.body)?;
        check_name(request.name.as_deref())?;
        let rule_id = &request.resolver_rule_id;
        let vpc = &request.vpc_id;
        self.associate(rule_id, vpc, request.name.clone(), |config, rule: &ResolverRuleConfig| {
            let associations: usize = config.resolver_rules.iter().map(|rule| rule.vpcs.len()).sum();
            quota(config, associations, config.quotas.rule_associations_per_region, "rule associations per region")?;
            if rule.has_vpc(vpc) {
                return Err(ApiError::invalid_request(format!(
                    "[RSLVR-00802] Cannot associate rules with same domain name with same VPC. Conflict with resolver rule \"{rule_id}\""
                )));
            }
            // A rule forwarding to an inbound endpoint of the same VPC would loop.
            let loops = rule.targets.iter().any(|target| {
                config.inbound_endpoints.iter().any(|endpoint| {
                    endpoint.vpc == *vpc && endpoint.addresses.iter().any(|address| address.ips().any(|ip| ip == target.ip))
                })
            });
            if loops {
                return Err(ApiError::invalid_request(format!(
                    "[RSLVR-00804] Cannot associate rule {rule_id} to VPC {vpc} because the VPC include an INBOUND resolver endpoints with rule's target IP. Please try a different rule or update rule's target IP."
                )));
            }
            Ok(())
        })
        .await
    }

    async fn disassociate_rule(&self) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            resolver_rule_id: String,
            #[serde(rename = "VPCId")]
            vpc_id: String,
        }
        let request: Request = request(&self.body)?;
        self.disassociate::<ResolverRuleConfig>(&request.resolver_rule_id, &request.vpc_id).await
    }

    fn list_rule_associations(&self) -> Result<Value, ApiError> {
        let config = self.config();
        let filter = Filter::parse(
            &self.body,
            &[("name", "Name"), ("resolverruleid", "ResolverRuleId"), ("status", "Status"), ("vpcid", "VPCId")],
        )?;
        let items: Vec<Value> = self
            .associations_json::<ResolverRuleConfig>(&config)
            .into_iter()
            .filter(|item| filter.matches(item))
            .collect();
        paged_with_max(items, &self.body, 10, "ResolverRuleAssociations")
    }

    // --- query logging ------------------------------------------------------

    async fn create_query_log_config(&self) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            name: String,
            destination_arn: String,
            creator_request_id: String,
            tags: Option<Vec<TagRequest>>,
        }
        let request: Request = request(&self.body)?;
        check_name(Some(&request.name))?;
        let tags = tags_from(request.tags)?;
        arn_file(&request.destination_arn).map_err(|problem| ApiError::invalid_parameter(problem.to_string()))?;
        let id = self
            .control
            .mutate(|m| {
                let config = &*m.config;
                if config
                    .query_logging
                    .iter()
                    .any(|log| log.creator_request_id.as_deref() == Some(request.creator_request_id.as_str()))
                {
                    return Err(ApiError::exists(format!(
                        "Resolver query log config with creator request id {} already exists",
                        request.creator_request_id
                    )));
                }
                quota(
                    config,
                    config.query_logging.len(),
                    config.quotas.query_log_configs_per_region,
                    "query log configs per region",
                )?;
                let id = new_id("rslvr-qlc-");
                let now = m.now.clone();
                m.config.query_logging.push(QueryLoggingConfig {
                    id: id.clone(),
                    destination: request.destination_arn.clone(),
                    vpcs: Vec::new(),
                    name: Some(request.name.clone()),
                    creator_request_id: Some(request.creator_request_id.clone()),
                    created: Some(now.clone()),
                    modified: Some(now),
                    tags: tags.clone(),
                    policy: None,
                });
                m.touch(Kind::QueryLogging, &id);
                m.start_clock(&id);
                Ok(id)
            })
            .await?;
        let config = self.config();
        let log = find_query_log(&config, &id)?;
        Ok(json!({ "ResolverQueryLogConfig": self.query_log_json(&config, log, Some("CREATING")) }))
    }

    fn get_query_log_config(&self) -> Result<Value, ApiError> {
        let id = string_field(&self.body, "ResolverQueryLogConfigId")?;
        let config = self.config();
        let log = find_query_log(&config, &id)?;
        Ok(json!({ "ResolverQueryLogConfig": self.query_log_json(&config, log, None) }))
    }

    fn list_query_log_configs(&self) -> Result<Value, ApiError> {
        let config = self.config();
        let filter = Filter::parse(
            &self.body,
            &[
                ("arn", "Arn"),
                ("associationcount", "AssociationCount"),
                ("creationtime", "CreationTime"),
                ("creatorrequestid", "CreatorRequestId"),
                ("destination", "Destination"),
                ("destinationarn", "DestinationArn"),
                ("id", "Id"),
                ("name", "Name"),
                ("ownerid", "OwnerId"),
                ("sharestatus", "ShareStatus"),
                ("status", "Status"),
            ],
        )?;
        let all: Vec<Value> = config.query_logging.iter().map(|log| self.query_log_json(&config, log, None)).collect();
        let total = all.len();
        let items: Vec<Value> = all
            .into_iter()
            .filter(|item| {
                let mut with_kind = item.clone();
                let kind = item.get("DestinationArn").and_then(Value::as_str).and_then(|arn| arn_file(arn).ok()).map(
                    |(kind, _)| match kind {
                        DestinationKind::S3 => "S3",
                        DestinationKind::CloudWatchLogs => "CloudWatchLogs",
                        DestinationKind::Firehose => "KinesisFirehose",
                    },
                );
                if let (Some(object), Some(kind)) = (with_kind.as_object_mut(), kind) {
                    object.insert("Destination".into(), json!(kind));
                }
                filter.matches(&with_kind)
            })
            .collect();
        let filtered = items.len();
        let (items, next, _) = page(items, &self.body, 10)?;
        Ok(with_token(
            json!({ "ResolverQueryLogConfigs": items, "TotalCount": total, "TotalFilteredCount": filtered }),
            next,
        ))
    }

    async fn delete_query_log_config(&self) -> Result<Value, ApiError> {
        let id = string_field(&self.body, "ResolverQueryLogConfigId")?;
        let config = self.config();
        let before = self.query_log_json(&config, find_query_log(&config, &id)?, Some("DELETING"));
        self.control
            .mutate(|m| {
                let log = find_query_log(m.config, &id)?;
                if !log.vpcs.is_empty() {
                    return Err(ApiError::invalid_request(format!(
                        "The query logging configuration {id} is associated with {}; disassociate it from every VPC first.",
                        log.vpc_ids().join(", ")
                    )));
                }
                m.config.query_logging.retain(|log| log.id != id);
                m.touch(Kind::QueryLogging, &id);
                Ok(())
            })
            .await?;
        Ok(json!({ "ResolverQueryLogConfig": before }))
    }

    async fn associate_query_log_config(&self) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            resolver_query_log_config_id: String,
            resource_id: String,
        }
        let request: Request = request(&self.body)?;
        let (log_id, vpc) = (&request.resolver_query_log_config_id, &request.resource_id);
        self.associate(log_id, vpc, None, |config, log: &QueryLoggingConfig| {
            if log.vpcs.iter().any(|association| association.vpc == *vpc) {
                return Err(ApiError::invalid_request(format!(
                    "[RSLVR-01608] The VPC {vpc} is already associated with the query logging configuration {log_id}."
                )));
            }
            quota(config, log.vpcs.len(), config.quotas.vpcs_per_query_log_config, "vpcs per query log config")
        })
        .await
    }

    async fn disassociate_query_log_config(&self) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            resolver_query_log_config_id: String,
            resource_id: String,
        }
        let request: Request = request(&self.body)?;
        self.disassociate::<QueryLoggingConfig>(&request.resolver_query_log_config_id, &request.resource_id).await
    }

    fn list_query_log_associations(&self) -> Result<Value, ApiError> {
        let config = self.config();
        let filter = Filter::parse(
            &self.body,
            &[
                ("creationtime", "CreationTime"),
                ("error", "Error"),
                ("id", "Id"),
                ("resolverquerylogconfigid", "ResolverQueryLogConfigId"),
                ("resourceid", "ResourceId"),
                ("status", "Status"),
            ],
        )?;
        let all = self.associations_json::<QueryLoggingConfig>(&config);
        let total = all.len();
        let items: Vec<Value> = all.into_iter().filter(|item| filter.matches(item)).collect();
        let filtered = items.len();
        let (items, next, _) = page(items, &self.body, 10)?;
        Ok(with_token(
            json!({ "ResolverQueryLogConfigAssociations": items, "TotalCount": total, "TotalFilteredCount": filtered }),
            next,
        ))
    }

    // --- tags ---------------------------------------------------------------

    async fn tag_resource(&self) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            resource_arn: String,
            tags: Vec<TagRequest>,
        }
        let request: Request = request(&self.body)?;
        let new = tags_from(Some(request.tags))?;
        self.control
            .mutate(|m| {
                let (kind, id) = resource_by_arn(m.config, &request.resource_arn)?;
                let tags = tags_mut(m.config, kind, &id).ok_or_else(|| arn_not_found(&request.resource_arn))?;
                tags.extend(new.clone());
                if tags.len() > 200 {
                    return Err(ApiError::limit_exceeded("A resource can have at most 200 tags."));
                }
                m.touch(kind, &id);
                Ok(())
            })
            .await?;
        Ok(json!({}))
    }

    async fn untag_resource(&self) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Request {
            resource_arn: String,
            tag_keys: Vec<String>,
        }
        let request: Request = request(&self.body)?;
        self.control
            .mutate(|m| {
                let (kind, id) = resource_by_arn(m.config, &request.resource_arn)?;
                let tags = tags_mut(m.config, kind, &id).ok_or_else(|| arn_not_found(&request.resource_arn))?;
                for key in &request.tag_keys {
                    tags.remove(key);
                }
                m.touch(kind, &id);
                Ok(())
            })
            .await?;
        Ok(json!({}))
    }

    fn list_tags(&self) -> Result<Value, ApiError> {
        let arn = string_field(&self.body, "ResourceArn")?;
        let config = self.config();
        let (kind, id) = resource_by_arn(&config, &arn)?;
        let tags = tags_of(&config, kind, &id).ok_or_else(|| arn_not_found(&arn))?;
        let items: Vec<Value> = tags.iter().map(|(key, value)| json!({ "Key": key, "Value": value })).collect();
        paged(items, &self.body, 100, "Tags")
    }

    // --- resource policies ---------------------------------------------------

    fn get_policy(&self, kind: &PolicyKind) -> Result<Value, ApiError> {
        let resource = string_field(&self.body, "Arn")?;
        let config = self.config();
        let id = kind.resource(&config, &resource)?;
        let policy = policy_of(&config, kind.kind, &id).cloned().unwrap_or_default();
        Ok(json!({ kind.field: policy }))
    }

    async fn put_policy(&self, kind: &PolicyKind) -> Result<Value, ApiError> {
        let resource = string_field(&self.body, "Arn")?;
        let policy = string_field(&self.body, kind.field)?;
        if policy.len() > 30_000 {
            return Err(ApiError::bad_request(
                "ValidationException",
                format!(
                    "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have length less than or equal to 30000",
                    lower_first(kind.field)
                ),
            ));
        }
        if let Err(error) = serde_json::from_str::<serde_json::Map<String, Value>>(&policy) {
            return Err(ApiError::bad_request(kind.invalid, format!("The policy is not a JSON object: {error}")));
        }
        self.control
            .mutate(|m| {
                let id = kind.resource(m.config, &resource)?;
                if let Some(slot) = policy_mut(m.config, kind.kind, &id) {
                    *slot = Some(policy.clone());
                }
                m.touch(kind.kind, &id);
                Ok(())
            })
            .await?;
        Ok(json!({ "ReturnValue": true }))
    }

    // --- Resolver and DNSSEC configs ------------------------------------------

    fn get_resolver_config(&self) -> Result<Value, ApiError> {
        let vpc = string_field(&self.body, "ResourceId")?;
        let config = self.config();
        vpc_exists(&config, &vpc)
            .map_err(|_| ApiError::not_found(format!("[RSLVR-02025] Can't find the resource with ID \"{vpc}\".")))?;
        Ok(json!({ "ResolverConfig": resolver_config_json(&config, &vpc) }))
    }

    async fn update_resolver_config(&self) -> Result<Value, ApiError> {
        let vpc = string_field(&self.body, "ResourceId")?;
        let enabled = match self.vpc_flag("AutodefinedReverseFlag", "autodefinedReverseFlag")? {
            DnssecValidation::Enable | DnssecValidation::UseLocalResourceSetting => true,
            DnssecValidation::Disable => false,
        };
        self.change_vpc(&vpc, |known| known.autodefined_reverse = Some(enabled)).await?;
        let config = self.config();
        Ok(json!({ "ResolverConfig": resolver_config_json(&config, &vpc) }))
    }

    /// The ENABLE, DISABLE or USE_LOCAL_RESOURCE_SETTING of `field`
    /// (`member` as the service's validation error spells it).
    fn vpc_flag(&self, field: &str, member: &str) -> Result<DnssecValidation, ApiError> {
        match string_field(&self.body, field)?.as_str() {
            "ENABLE" => Ok(DnssecValidation::Enable),
            "DISABLE" => Ok(DnssecValidation::Disable),
            "USE_LOCAL_RESOURCE_SETTING" => Ok(DnssecValidation::UseLocalResourceSetting),
            other => Err(ApiError::bad_request(
                "ValidationException",
                format!(
                    "1 validation error detected: Value '{other}' at '{member}' failed to satisfy constraint: Member must satisfy enum value set: [ENABLE, DISABLE, USE_LOCAL_RESOURCE_SETTING]"
                ),
            )),
        }
    }

    /// Change one of the VPC's settings.
    async fn change_vpc(&self, vpc: &str, change: impl FnOnce(&mut crate::model::VpcConfig)) -> Result<(), ApiError> {
        self.control
            .mutate(|m| {
                vpc_exists(m.config, vpc).map_err(|_| {
                    ApiError::not_found(format!("[RSLVR-02025] Can't find the resource with ID \"{vpc}\"."))
                })?;
                if let Some(known) = m.config.vpcs.iter_mut().find(|known| known.id == vpc) {
                    change(known);
                }
                m.touch(Kind::Vpc, vpc);
                Ok(())
            })
            .await
    }

    fn list_resolver_configs(&self) -> Result<Value, ApiError> {
        let config = self.config();
        let items: Vec<Value> = config.vpcs.iter().map(|vpc| resolver_config_json(&config, &vpc.id)).collect();
        paged(items, &self.body, 10, "ResolverConfigs")
    }

    fn get_dnssec_config(&self) -> Result<Value, ApiError> {
        let vpc = string_field(&self.body, "ResourceId")?;
        let config = self.config();
        vpc_exists(&config, &vpc)
            .map_err(|_| ApiError::not_found(format!("[RSLVR-02025] Can't find the resource with ID \"{vpc}\".")))?;
        Ok(json!({ "ResolverDNSSECConfig": dnssec_config_json(&config, &vpc, false) }))
    }

    /// The change is in force when the call returns (the server's state is
    /// swapped and its cache emptied); the response still says ENABLING,
    /// DISABLING or UPDATING_TO_USE_LOCAL_RESOURCE_SETTING as the service's
    /// does, and Get and List say where it settled.
    /// The change is in force when the call returns (the server's state is
    /// swapped and its cache emptied); the response still says ENABLING,
    /// DISABLING or UPDATING_TO_USE_LOCAL_RESOURCE_SETTING as the service's
    /// does, and Get and List say where it settled.
    async fn update_dnssec_config(&self) -> Result<Value, ApiError> {
        let vpc = string_field(&self.body, "ResourceId")?;
        let validation = self.vpc_flag("Validation", "validation")?;
        self.change_vpc(&vpc, |known| known.dnssec_validation = Some(validation)).await?;
        let config = self.config();
        Ok(json!({ "ResolverDNSSECConfig": dnssec_config_json(&config, &vpc, true) }))
    }

    fn list_dnssec_configs(&self) -> Result<Value, ApiError> {
        let config = self.config();
        let filter =
            Filter::parse(&self.body, &[("resourceid", "ResourceId"), ("validationstatus", "ValidationStatus")])?;
        let items: Vec<Value> = config
            .vpcs
            .iter()
            .map(|vpc| dnssec_config_json(&config, &vpc.id, false))
            .filter(|item| filter.matches(item))
            .collect();
        paged(items, &self.body, 10, "ResolverDnssecConfigs")
    }
}

/// The VPC's AutodefinedReverse setting (crate::autodefined).
fn resolver_config_json(config: &EndpointConfig, vpc: &str) -> Value {
    let enabled = config.vpcs.iter().find(|known| known.id == vpc).is_none_or(crate::autodefined::autodefined_reverse);
    json!({
        "Id": crate::control::derived_id("rslvr-autodefined-rev-", &[vpc]),
        "ResourceId": vpc,
        "OwnerId": config.account_id,
        "AutodefinedReverse": if enabled { "ENABLED" } else { "DISABLED" },
    })
}

/// The VPC's DNSSEC validation setting (default DISABLED); `changing` for
/// the answer to an update, which names the transition as the service does.
fn dnssec_config_json(config: &EndpointConfig, vpc: &str, changing: bool) -> Value {
    let setting = config.vpcs.iter().find(|known| known.id == vpc).and_then(|known| known.dnssec_validation);
    let status = match (setting, changing) {
        (Some(DnssecValidation::Enable), false) => "ENABLED",
        (Some(DnssecValidation::Enable), true) => "ENABLING",
        (Some(DnssecValidation::Disable) | None, false) => "DISABLED",
        (Some(DnssecValidation::Disable) | None, true) => "DISABLING",
        (Some(DnssecValidation::UseLocalResourceSetting), false) => "USE_LOCAL_RESOURCE_SETTING",
        (Some(DnssecValidation::UseLocalResourceSetting), true) => "UPDATING_TO_USE_LOCAL_RESOURCE_SETTING",
    };
    json!({
        "Id": crate::control::derived_id("rdsc-", &[vpc]),
        "OwnerId": config.account_id,
        "ResourceId": vpc,
        "ValidationStatus": status,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TargetRequest {
    ip: Option<IpAddr>,
    ipv6: Option<IpAddr>,
    port: Option<u16>,
    protocol: Option<String>,
    server_name_indication: Option<String>,
}

impl From<&TargetConfig> for TargetRequest {
    fn from(target: &TargetConfig) -> Self {
        Self {
            ip: target.ip.is_ipv4().then_some(target.ip),
            ipv6: target.ip.is_ipv6().then_some(target.ip),
            port: target.port,
            protocol: target.protocol.map(|protocol| protocol.as_str().to_string()),
            server_name_indication: target.server_name.clone(),
        }
    }
}

fn target_json(target: &TargetConfig) -> Value {
    let mut value = json!({ "Port": target.address().port(), "Protocol": target.protocol().as_str() });
    if let Some(object) = value.as_object_mut() {
        object.insert(if target.ip.is_ipv4() { "Ip".into() } else { "Ipv6".into() }, json!(target.ip.to_string()));
        if let Some(name) = &target.server_name {
            object.insert("ServerNameIndication".into(), json!(name));
        }
    }
    value
}

/// The targets of a FORWARD rule through `endpoint`, checked as the service does.
fn rule_targets(
    config: &EndpointConfig,
    rule_type: RuleType,
    endpoint: Option<&str>,
    requests: &[TargetRequest],
) -> Result<Vec<TargetConfig>, ApiError> {
    if rule_type == RuleType::System {
        if endpoint.is_some() || !requests.is_empty() {
            return Err(ApiError::invalid_request(
                "Cannot specify resolver endpoint ID and target IP for SYSTEM type resolver rule",
            ));
        }
        return Ok(Vec::new());
    }
    let Some(endpoint) = endpoint else {
        return Err(ApiError::invalid_request(
            "A FORWARD rule needs an outbound resolver endpoint (ResolverEndpointId).",
        ));
    };
    let view = find_endpoint(config, endpoint)?;
    if view.direction != Direction::Outbound {
        return Err(ApiError::invalid_request(
            "[RSLVR-00700] Resolver rules can only be associated to OUTBOUND resolver endpoints.",
        ));
    }
    if requests.is_empty() {
        return Err(ApiError::invalid_request("A FORWARD rule needs at least one target IP address (TargetIps)."));
    }
    quota(config, requests.len() - 1, config.quotas.target_ips_per_rule, "target ips per rule")?;
    let offered = Protocols::from_list(view.protocols, Direction::Outbound).unwrap_or(Protocols::DO53);
    let only = offered.iter().collect::<Vec<_>>();
    let mut targets = Vec::with_capacity(requests.len());
    for request in requests {
        let ip = match (request.ip, request.ipv6) {
            (Some(ip), None) if ip.is_ipv4() => ip,
            (None, Some(ip)) if ip.is_ipv6() => ip,
            _ => return Err(ApiError::invalid_parameter("Each target gives either Ip (IPv4) or Ipv6 (IPv6).")),
        };
        let protocol = match (&request.protocol, only.as_slice()) {
            (Some(text), _) => {
                Some(text.parse::<EndpointProtocol>().map_err(|error| ApiError::invalid_parameter(error.to_string()))?)
            }
            (None, [single]) => Some(*single),
            (None, _) => {
                return Err(ApiError::invalid_request(
                    "[RSLVR-00726] Endpoint has more than 1 protocol. Add one of the endpoint protocol for rule creation",
                ));
            }
        };
        targets.push(TargetConfig {
            ip,
            port: request.port,
            protocol,
            server_name: request.server_name_indication.clone(),
            doh_path: None,
        });
    }
    Ok(targets)
}

fn parse_protocols(list: Option<&[String]>) -> Result<Vec<EndpointProtocol>, ApiError> {
    list.unwrap_or_default()
        .iter()
        .map(|text| text.parse::<EndpointProtocol>().map_err(|error| ApiError::invalid_parameter(error.to_string())))
        .collect()
}

fn check_security_groups(config: &EndpointConfig, groups: &[String]) -> Result<(), ApiError> {
    if groups.is_empty() {
        return Err(ApiError::invalid_parameter(
            "A resolver endpoint needs at least one security group (SecurityGroupIds).",
        ));
    }
    if groups.len() > 10 {
        return Err(ApiError::invalid_parameter("Maximum of 10 security groups are allowed"));
    }
    for group in groups {
        if !group.starts_with("sg-") {
            return Err(ApiError::invalid_parameter(format!(
                "[RSLVR-00408] Malformed security group ID: \"Invalid id: \"{group}\" (expecting \"sg-...\")\"."
            )));
        }
        if !config.security_groups.iter().any(|known| known.id == *group) {
            return Err(ApiError::not_found(format!("The security group \"{group}\" does not exist.")));
        }
    }
    Ok(())
}

/// The addresses of a subnet an endpoint may not take: the network, AWS's
/// three reserved ones after it, and the last.
fn reserved(subnet: &IpNet, address: IpAddr) -> bool {
    match (subnet, address) {
        (IpNet::V4(net), IpAddr::V4(ip)) => {
            let offset = u32::from(ip).wrapping_sub(u32::from(net.network()));
            offset < 4 || ip == net.broadcast()
        }
        // ::1, the only IPv6 loopback address, is allowed in a subnet
        // (`::/64`) so that IPv6 endpoints can run on loopback.
        (IpNet::V6(_), IpAddr::V6(ip)) if ip == Ipv6Addr::LOCALHOST => false,
        (IpNet::V6(net), IpAddr::V6(ip)) => {
            let offset = u128::from(ip).wrapping_sub(u128::from(net.network()));
            offset < 4 || ip == net.broadcast()
        }
        _ => true,
    }
}

fn address_in_use(config: &EndpointConfig, address: IpAddr) -> bool {
    endpoints(config)
        .iter()
        .any(|endpoint| endpoint.addresses.iter().flat_map(EndpointAddress::ips).any(|taken| taken == address))
}

/// The `ResolverEndpointType` of a request, if it gives one.
fn endpoint_type(text: Option<&str>) -> Result<Option<EndpointType>, ApiError> {
    text.map(|text| {
        text.parse::<EndpointType>().map_err(|_| {
            ApiError::bad_request(
                "ValidationException",
                format!(
                    "1 validation error detected: Value '{text}' at 'resolverEndpointType' failed to satisfy constraint: Member must satisfy enum value set: [IPV6, IPV4, DUALSTACK]"
                ),
            )
        })
    })
    .transpose()
}

/// The `Ip` and `Ipv6` a request gives for one address.
#[derive(Clone, Copy)]
struct Wanted {
    ip: Option<IpAddr>,
    ipv6: Option<IpAddr>,
}

/// The address an endpoint of `endpoint_type` takes in `subnet_id`: an
/// IPv4 address (IPV4 and DUALSTACK) from the subnet's block and an IPv6
/// address (IPV6 and DUALSTACK) from its IPv6 block, each the one asked
/// for or the first free one.
fn endpoint_address(
    config: &EndpointConfig,
    endpoint_type: EndpointType,
    subnet_id: &str,
    wanted: Wanted,
    taken: &[EndpointAddress],
    vpc: &mut Option<String>,
) -> Result<EndpointAddress, ApiError> {
    if wanted.ip.is_some_and(|ip| ip.is_ipv6()) || wanted.ipv6.is_some_and(|ip| ip.is_ipv4()) {
        return Err(ApiError::invalid_parameter("Ip is an IPv4 address and Ipv6 an IPv6 address."));
    }
    if !endpoint_type.carries(false) && wanted.ip.is_some() {
        return Err(ApiError::invalid_request(format!(
            "An {} resolver endpoint takes no IPv4 address (Ip); give Ipv6 or nothing.",
            endpoint_type.as_str()
        )));
    }
    if !endpoint_type.carries(true) && wanted.ipv6.is_some() {
        return Err(ApiError::invalid_request(
            "An IPV4 resolver endpoint takes no IPv6 address (Ipv6); create it as DUALSTACK or IPV6.",
        ));
    }
    let v4 = endpoint_type
        .carries(false)
        .then(|| take_address(config, subnet_id, wanted.ip, false, taken, vpc))
        .transpose()?;
    let v6 = endpoint_type
        .carries(true)
        .then(|| take_address(config, subnet_id, wanted.ipv6, true, taken, vpc))
        .transpose()?;
    let (ip, ipv6) = match (v4, v6) {
        (Some(ip), Some(IpAddr::V6(v6))) => (ip, Some(v6)),
        (Some(ip), _) | (None, Some(ip)) => (ip, None),
        (None, None) => return Err(ApiError::internal("an endpoint type without an address family")),
    };
    Ok(EndpointAddress { ip, ipv6, subnet: Some(subnet_id.to_string()), id: Some(new_id("rni-")) })
}

/// One entry of UpdateResolverEndpoint's `UpdateIpAddresses`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IpUpdate {
    ip_id: String,
    ipv6: IpAddr,
}

/// An endpoint's addresses once it becomes `wanted` (UpdateResolverEndpoint):
/// IPV4 to DUALSTACK gives each address an IPv6 one — from `updates` (by
/// IpId) or the first free one of its subnet's IPv6 block — and DUALSTACK
/// to IPV4 drops them. An IPV6 endpoint stays IPV6, and no endpoint
/// becomes IPV6, as AWS documents ("You can only update between IPV4 and
/// DUALSTACK, IPV6 endpoint type can't be updated to other type").
fn retyped_addresses(
    config: &EndpointConfig,
    endpoint: &EndpointView<'_>,
    wanted: EndpointType,
    updates: &[IpUpdate],
) -> Result<Vec<EndpointAddress>, ApiError> {
    let current = endpoint.endpoint_type;
    if current == EndpointType::Ipv6 && wanted != EndpointType::Ipv6 {
        return Err(ApiError::invalid_request(format!(
            "Resolver endpoint {} is IPV6; an IPV6 endpoint's type cannot be changed.",
            endpoint.id
        )));
    }
    if wanted == EndpointType::Ipv6 && current != EndpointType::Ipv6 {
        return Err(ApiError::invalid_request(
            "Updating a resolver endpoint to IPV6 is not supported; IPV4 and DUALSTACK change into each other.",
        ));
    }
    if !updates.is_empty() && wanted != EndpointType::Dualstack {
        return Err(ApiError::invalid_request(
            "UpdateIpAddresses gives the IPv6 addresses of an endpoint that is or becomes DUALSTACK.",
        ));
    }
    for update in updates {
        if update.ipv6.is_ipv4() {
            return Err(ApiError::invalid_parameter(format!("{} is not an IPv6 address.", update.ipv6)));
        }
        if !endpoint.addresses.iter().any(|address| address.id.as_deref() == Some(update.ip_id.as_str())) {
            return Err(ApiError::not_found(format!(
                "The IP address {} is not an address of resolver endpoint {}.",
                update.ip_id, endpoint.id
            )));
        }
    }
    let mut addresses = endpoint.addresses.to_vec();
    if wanted == EndpointType::Ipv4 {
        for address in &mut addresses {
            address.ipv6 = None;
        }
        return Ok(addresses);
    }
    if wanted != EndpointType::Dualstack {
        return Ok(addresses);
    }
    // Addresses taken so far, so that two interfaces in one subnet get two addresses.
    let mut taken = addresses.clone();
    for address in &mut addresses {
        let update = updates.iter().find(|update| address.id.as_deref() == Some(update.ip_id.as_str()));
        let wanted = update.map(|update| update.ipv6);
        let unchanged = match wanted {
            Some(ip) => address.ipv6.map(IpAddr::V6) == Some(ip),
            None => address.ipv6.is_some(),
        };
        if unchanged {
            continue;
        }
        let Some(subnet) = address.subnet.clone() else {
            return Err(ApiError::invalid_request(format!(
                "The address {} of resolver endpoint {} names no subnet to take an IPv6 address from.",
                address.ip, endpoint.id
            )));
        };
        let mut vpc = Some(endpoint.vpc.to_string());
        if let IpAddr::V6(chosen) = take_address(config, &subnet, wanted, true, &taken, &mut vpc)? {
            address.ipv6 = Some(chosen);
            taken.push(EndpointAddress::from(IpAddr::V6(chosen)));
        }
    }
    Ok(addresses)
}

/// The address an endpoint takes in `subnet` from its block of the family
/// `ipv6` says: `wanted` when given and free, or the first free one. Sets
/// `vpc` to the subnet's VPC and checks that every subnet of the endpoint
/// is in the same one.
fn take_address(
    config: &EndpointConfig,
    subnet_id: &str,
    wanted: Option<IpAddr>,
    ipv6: bool,
    taken: &[EndpointAddress],
    vpc: &mut Option<String>,
) -> Result<IpAddr, ApiError> {
    let Some(subnet) = config.subnets.iter().find(|subnet| subnet.id == subnet_id) else {
        return Err(ApiError::invalid_parameter(format!("The subnet ID '{subnet_id}' does not exist")));
    };
    match vpc {
        Some(vpc) if *vpc != subnet.vpc => {
            return Err(ApiError::invalid_request(format!(
                "The subnets of a resolver endpoint must all be in one VPC: {subnet_id} is in {}, not {vpc}.",
                subnet.vpc
            )));
        }
        _ => *vpc = Some(subnet.vpc.clone()),
    }
    let block = if ipv6 {
        subnet.ipv6_cidr.or(Some(subnet.cidr).filter(|cidr| matches!(cidr, IpNet::V6(_))))
    } else {
        Some(subnet.cidr).filter(|cidr| matches!(cidr, IpNet::V4(_)))
    };
    let Some(block) = block else {
        return Err(ApiError::invalid_request(format!(
            "The subnet {subnet_id} has no IPv{} CIDR block for the endpoint's addresses.",
            if ipv6 { 6 } else { 4 }
        )));
    };
    let busy = |address: IpAddr| {
        address_in_use(config, address) || taken.iter().flat_map(EndpointAddress::ips).any(|other| other == address)
    };
    match wanted {
        Some(address) => {
            if !block.contains(&address) || reserved(&block, address) {
                return Err(ApiError::invalid_request(format!(
                    "IP address '{address}' is either not in subnet '{subnet_id}' CIDR range or is reserved"
                )));
            }
            if busy(address) {
                return Err(ApiError::exists(format!(
                    "The IP address '{address}' in subnet '{subnet_id}' is already in use"
                )));
            }
            Ok(address)
        }
        None => {
            block.hosts().take(65_536).find(|address| !reserved(&block, *address) && !busy(*address)).ok_or_else(|| {
                ApiError::invalid_request(format!("The subnet {subnet_id} has no free IP address left."))
            })
        }
    }
}

fn vpc_exists(config: &EndpointConfig, vpc: &str) -> Result<(), ApiError> {
    if config.vpcs.iter().any(|known| known.id == vpc) {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter(format!("[RSLVR-00405] The vpc ID '{vpc}' does not exist")))
    }
}

fn find_rule<'c>(config: &'c EndpointConfig, id: &str) -> Result<&'c ResolverRuleConfig, ApiError> {
    config
        .resolver_rules
        .iter()
        .find(|rule| rule.id == id)
        .ok_or_else(|| ApiError::not_found(format!("[RSLVR-00703] Resolver rule with ID \"{id}\" does not exist.")))
}

fn association_id(association: &VpcAssociation, prefix: &str, owner: &str) -> String {
    association.id.clone().unwrap_or_else(|| crate::control::derived_id(prefix, &[owner, &association.vpc]))
}

fn find_query_log<'c>(config: &'c EndpointConfig, id: &str) -> Result<&'c QueryLoggingConfig, ApiError> {
    config
        .query_logging
        .iter()
        .find(|log| log.id == id)
        .ok_or_else(|| ApiError::not_found("[RSLVR-01601] The specified query logging configuration doesn't exist."))
}

/// The association with id `id` of any `T`, with its owner.
fn find_association<'c, T: Associated>(
    config: &'c EndpointConfig,
    id: &str,
) -> Result<(&'c T, &'c VpcAssociation), ApiError> {
    T::all(config)
        .iter()
        .flat_map(|owner| owner.vpcs().iter().map(move |association| (owner, association)))
        .find(|(owner, association)| association_id(association, T::PREFIX, owner.id()) == id)
        .ok_or_else(|| T::association_not_found(id))
}

/// Resolver rules and query logging configurations: resources associated
/// with VPCs, whose association calls differ in names and messages only.
trait Associated: Owner {
    const KIND: Kind;
    /// Its associations' ids start with this (`rslvr-rrassoc-`).
    const PREFIX: &'static str;
    /// The key of an association in answers (`ResolverRuleAssociation`).
    const KEY: &'static str;
    /// The status of an association that has settled.
    const SETTLED: &'static str;
    /// The one with id `id`, or the service's error.
    fn find<'c>(config: &'c EndpointConfig, id: &str) -> Result<&'c Self, ApiError>;
    /// The error for an association id that names none.
    fn association_not_found(id: &str) -> ApiError;
    /// The error for disassociating a VPC it is not associated with.
    fn not_associated(&self, vpc: &str) -> ApiError;
    /// The API's view of `association`, whose id is `id`.
    fn association_json(&self, association: &VpcAssociation, id: String, status: &str) -> Value;
}

/// Where resources of one kind are kept, and their VPC associations.
trait Owner: Sized {
    fn all(config: &EndpointConfig) -> &[Self];
    fn all_mut(config: &mut EndpointConfig) -> &mut [Self];
    fn id(&self) -> &str;
    fn vpcs(&self) -> &[VpcAssociation];
    fn vpcs_mut(&mut self) -> &mut Vec<VpcAssociation>;
}

macro_rules! owner {
    ($type:ty, $list:ident) => {
        impl Owner for $type {
            fn all(config: &EndpointConfig) -> &[Self] {
                &config.$list
            }
            fn all_mut(config: &mut EndpointConfig) -> &mut [Self] {
                &mut config.$list
            }
            fn id(&self) -> &str {
                &self.id
            }
            fn vpcs(&self) -> &[VpcAssociation] {
                &self.vpcs
            }
            fn vpcs_mut(&mut self) -> &mut Vec<VpcAssociation> {
                &mut self.vpcs
            }
        }
    };
}

owner!(ResolverRuleConfig, resolver_rules);
owner!(QueryLoggingConfig, query_logging);

impl Associated for ResolverRuleConfig {
    const KIND: Kind = Kind::ResolverRule;
    const PREFIX: &'static str = "rslvr-rrassoc-";
    const KEY: &'static str = "ResolverRuleAssociation";
    const SETTLED: &'static str = "COMPLETE";
    fn find<'c>(config: &'c EndpointConfig, id: &str) -> Result<&'c Self, ApiError> {
        find_rule(config, id)
    }
    fn association_not_found(id: &str) -> ApiError {
        ApiError::not_found(format!("[RSLVR-00803] Resolver rule association with ID \"{id}\" does not exist."))
    }
    fn not_associated(&self, vpc: &str) -> ApiError {
        ApiError::not_found(format!(
            "[RSLVR-00703] Resolver rule with ID \"{}\" is not associated with VPC \"{vpc}\".",
            self.id
        ))
    }
    fn association_json(&self, association: &VpcAssociation, id: String, status: &str) -> Value {
        json!({
            "Id": id,
            "ResolverRuleId": self.id,
            "Name": association.name.clone().unwrap_or_default(),
            "VPCId": association.vpc,
            "Status": status,
            "StatusMessage": "",
        })
    }
}

impl Associated for QueryLoggingConfig {
    const KIND: Kind = Kind::QueryLogging;
    const PREFIX: &'static str = "rslvr-qlcassoc-";
    const KEY: &'static str = "ResolverQueryLogConfigAssociation";
    const SETTLED: &'static str = "ACTIVE";
    fn find<'c>(config: &'c EndpointConfig, id: &str) -> Result<&'c Self, ApiError> {
        find_query_log(config, id)
    }
    fn association_not_found(_: &str) -> ApiError {
        ApiError::not_found("[RSLVR-01602] The specified query logging configuration association doesn't exist.")
    }
    fn not_associated(&self, vpc: &str) -> ApiError {
        ApiError::not_found(format!(
            "[RSLVR-01602] The specified query logging configuration association doesn't exist: {} is not associated with {vpc}.",
            self.id
        ))
    }
    fn association_json(&self, association: &VpcAssociation, id: String, status: &str) -> Value {
        let mut value = json!({
            "Id": id,
            "ResolverQueryLogConfigId": self.id,
            "ResourceId": association.vpc,
            "Status": status,
            "Error": "NONE",
            "ErrorMessage": "",
        });
        insert_optional(&mut value, "CreationTime", association.created.as_deref());
        value
    }
}

fn arn_not_found(arn: &str) -> ApiError {
    ApiError::not_found(format!("[RSLVR-02025] Can't find the resource with ID \"{arn}\"."))
}

/// The resource an ARN names (endpoints, rules, query logging configurations).
fn resource_by_arn(config: &EndpointConfig, resource_arn: &str) -> Result<(Kind, String), ApiError> {
    let prefix = format!("arn:aws:route53resolver:{}:{}:", config.region, config.account_id);
    let Some((resource, id)) = resource_arn.strip_prefix(&prefix).and_then(|rest| rest.split_once('/')) else {
        return Err(arn_not_found(resource_arn));
    };
    let kind = match resource {
        "resolver-endpoint" if config.inbound_endpoints.iter().any(|e| e.id == id) => Kind::InboundEndpoint,
        "resolver-endpoint" if config.outbound_endpoints.iter().any(|e| e.id == id) => Kind::OutboundEndpoint,
        "resolver-rule" if config.resolver_rules.iter().any(|rule| rule.id == id) => Kind::ResolverRule,
        "resolver-query-log-config" if config.query_logging.iter().any(|log| log.id == id) => Kind::QueryLogging,
        "firewall-domain-list" if config.firewall_domain_lists.iter().any(|list| list.id == id) => {
            Kind::FirewallDomainList
        }
        "firewall-rule-group" if config.firewall_rule_groups.iter().any(|group| group.id == id) => {
            Kind::FirewallRuleGroup
        }
        "firewall-rule-group-association"
            if config.firewall_associations.iter().any(|association| association.association_id() == id) =>
        {
            Kind::FirewallAssociation
        }
        _ => return Err(arn_not_found(resource_arn)),
    };
    Ok((kind, id.to_string()))
}

fn tags_of<'c>(config: &'c EndpointConfig, kind: Kind, id: &str) -> Option<&'c Tags> {
    match kind {
        Kind::InboundEndpoint => config.inbound_endpoints.iter().find(|e| e.id == id).map(|e| &e.tags),
        Kind::OutboundEndpoint => config.outbound_endpoints.iter().find(|e| e.id == id).map(|e| &e.tags),
        Kind::ResolverRule => config.resolver_rules.iter().find(|rule| rule.id == id).map(|rule| &rule.tags),
        Kind::QueryLogging => config.query_logging.iter().find(|log| log.id == id).map(|log| &log.tags),
        Kind::FirewallDomainList => config.firewall_domain_lists.iter().find(|l| l.id == id).map(|l| &l.tags),
        Kind::FirewallRuleGroup => config.firewall_rule_groups.iter().find(|g| g.id == id).map(|g| &g.tags),
        Kind::FirewallAssociation => {
            config.firewall_associations.iter().find(|a| a.association_id() == id).map(|a| &a.tags)
        }
        _ => None,
    }
}

fn tags_mut<'c>(config: &'c mut EndpointConfig, kind: Kind, id: &str) -> Option<&'c mut Tags> {
    match kind {
        Kind::InboundEndpoint => config.inbound_endpoints.iter_mut().find(|e| e.id == id).map(|e| &mut e.tags),
        Kind::OutboundEndpoint => config.outbound_endpoints.iter_mut().find(|e| e.id == id).map(|e| &mut e.tags),
        Kind::ResolverRule => config.resolver_rules.iter_mut().find(|rule| rule.id == id).map(|rule| &mut rule.tags),
        Kind::QueryLogging => config.query_logging.iter_mut().find(|log| log.id == id).map(|log| &mut log.tags),
        Kind::FirewallDomainList => config.firewall_domain_lists.iter_mut().find(|l| l.id == id).map(|l| &mut l.tags),
        Kind::FirewallRuleGroup => config.firewall_rule_groups.iter_mut().find(|g| g.id == id).map(|g| &mut g.tags),
        Kind::FirewallAssociation => {
            config.firewall_associations.iter_mut().find(|a| a.association_id() == id).map(|a| &mut a.tags)
        }
        _ => None,
    }
}

/// A resource that keeps the policy Put*Policy gives it (AWS RAM sharing:
/// stored and returned, not enforced, since one process is one account).
struct PolicyKind {
    /// The model's kind of resource.
    kind: Kind,
    /// The field of the request and of Get*Policy's answer.
    field: &'static str,
    /// The code of a policy that is not a JSON document.
    invalid: &'static str,
    /// The code of an ARN that names no such resource.
    unknown: &'static str,
}

const RULE_POLICY: PolicyKind = PolicyKind {
    kind: Kind::ResolverRule,
    field: "ResolverRulePolicy",
    invalid: "InvalidPolicyDocument",
    unknown: "UnknownResourceException",
};

const QUERY_LOG_POLICY: PolicyKind = PolicyKind {
    kind: Kind::QueryLogging,
    field: "ResolverQueryLogConfigPolicy",
    invalid: "InvalidPolicyDocument",
    unknown: "UnknownResourceException",
};

const FIREWALL_RULE_GROUP_POLICY: PolicyKind = PolicyKind {
    kind: Kind::FirewallRuleGroup,
    field: "FirewallRuleGroupPolicy",
    invalid: "ValidationException",
    unknown: "ResourceNotFoundException",
};

impl PolicyKind {
    /// The id of the resource of this kind `resource_arn` names.
    fn resource(&self, config: &EndpointConfig, resource_arn: &str) -> Result<String, ApiError> {
        match resource_by_arn(config, resource_arn) {
            Ok((kind, id)) if kind == self.kind => Ok(id),
            _ => Err(ApiError::bad_request(
                self.unknown,
                format!("[RSLVR-02025] Can't find the resource with ID \"{resource_arn}\"."),
            )),
        }
    }
}

fn policy_of<'c>(config: &'c EndpointConfig, kind: Kind, id: &str) -> Option<&'c String> {
    match kind {
        Kind::ResolverRule => config.resolver_rules.iter().find(|rule| rule.id == id)?.policy.as_ref(),
        Kind::QueryLogging => config.query_logging.iter().find(|log| log.id == id)?.policy.as_ref(),
        Kind::FirewallRuleGroup => config.firewall_rule_groups.iter().find(|g| g.id == id)?.policy.as_ref(),
        _ => None,
    }
}

fn policy_mut<'c>(config: &'c mut EndpointConfig, kind: Kind, id: &str) -> Option<&'c mut Option<String>> {
    match kind {
        Kind::ResolverRule => config.resolver_rules.iter_mut().find(|rule| rule.id == id).map(|rule| &mut rule.policy),
        Kind::QueryLogging => config.query_logging.iter_mut().find(|log| log.id == id).map(|log| &mut log.policy),
        Kind::FirewallRuleGroup => config.firewall_rule_groups.iter_mut().find(|g| g.id == id).map(|g| &mut g.policy),
        _ => None,
    }
}

/// `resolverRulePolicy` from `ResolverRulePolicy`: a member as the
/// service's validation errors spell it.
fn lower_first(field: &str) -> String {
    let mut chars = field.chars();
    chars.next().map(|first| first.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// A domain as Route 53 Resolver reports it: lowercase, with the final dot.
fn canonical_domain(text: &str) -> Result<String, ApiError> {
    let name: NameBuf = text
        .parse()
        .map_err(|error| ApiError::invalid_parameter(format!("The domain name {text:?} is not valid: {error}")))?;
    Ok(name.to_string().to_ascii_lowercase())
}

fn fqdn(domain: &str) -> String {
    if domain.ends_with('.') { domain.to_ascii_lowercase() } else { format!("{}.", domain.to_ascii_lowercase()) }
}

pub(super) fn string_field(body: &Value, field: &str) -> Result<String, ApiError> {
    body.get(field).and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
        ApiError::bad_request(
            "ValidationException",
            format!("1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"),
        )
    })
}

pub(super) fn insert_optional(value: &mut Value, key: &str, field: Option<&str>) {
    if let (Some(object), Some(field)) = (value.as_object_mut(), field) {
        object.insert(key.to_string(), json!(field));
    }
}

pub(super) fn with_token(mut value: Value, next: Option<String>) -> Value {
    if let (Some(object), Some(next)) = (value.as_object_mut(), next) {
        object.insert("NextToken".into(), json!(next));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_four_and_the_last_address_of_a_subnet_are_reserved() {
        let subnet: IpNet = "10.0.1.0/24".parse().unwrap();
        for (address, expected) in [("10.0.1.0", true), ("10.0.1.3", true), ("10.0.1.4", false), ("10.0.1.255", true)] {
            assert_eq!(reserved(&subnet, address.parse().unwrap()), expected, "{address}");
        }
    }

    #[test]
    fn domains_are_reported_lowercase_with_the_final_dot() {
        assert_eq!(canonical_domain("Corp.Example").unwrap(), "corp.example.");
        assert_eq!(fqdn("corp.example"), "corp.example.");
        assert!(canonical_domain("bad..name").is_err());
    }

    #[test]
    fn names_follow_the_service_pattern() {
        assert!(check_name(Some("my-endpoint_1 x")).is_ok());
        assert!(check_name(Some("12345")).is_err());
        assert!(check_name(Some("bad/name")).is_err());
        assert!(check_name(None).is_ok());
    }
}
