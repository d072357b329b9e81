//! DNS Firewall in the model: domain lists, rule groups and their rules,
//! associations with VPCs; checked as the service checks them and compiled
//! into each VPC view's ordered firewall (signpost-rules evaluates it).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use signpost_rules::{DomainList, FirewallAction, FirewallBlock, FirewallRuleSpec, Redirection};
use signpost_wire::{NameBuf, RecordType};

use crate::error::EndpointError;
use crate::model::{BlockResponse, EndpointConfig, FirewallDomainListConfig, FirewallRuleAction, FirewallRuleConfig};

/// The lowest and highest priority of a rule group association (AWS's range).
pub const ASSOCIATION_PRIORITIES: std::ops::RangeInclusive<u32> = 100..=9900;

/// The longest TTL of an OVERRIDE answer (AWS: 604800 seconds).
pub const MAX_OVERRIDE_TTL: u32 = 604_800;

/// The redirection actions AWS offers; the first is its default.
pub const REDIRECTION_ACTIONS: [&str; 2] = ["INSPECT_REDIRECTION_DOMAIN", "TRUST_REDIRECTION_DOMAIN"];

/// The entries of a domain list file: one a line, blank lines and `#` comments skipped.
pub fn domain_file_entries(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

/// Every entry of a domain list: inline ones, then its file's.
pub fn domain_entries(list: &FirewallDomainListConfig, base_dir: &Path) -> Result<Vec<String>, std::io::Error> {
    let mut entries: Vec<String> = list.domains.to_vec();
    if let Some(file) = &list.file {
        entries.extend(domain_file_entries(&std::fs::read_to_string(base_dir.join(file))?));
    }
    Ok(entries)
}

/// Check one rule as the service does; the firewall action it compiles to.
pub fn rule_action(rule: &FirewallRuleConfig) -> Result<FirewallAction, &'static str> {
    let override_fields = rule.block_override_domain.is_some()
        || rule.block_override_dns_type.is_some()
        || rule.block_override_ttl.is_some();
    if let Some(action) = &rule.redirection_action
        && !REDIRECTION_ACTIONS.contains(&action.as_str())
    {
        return Err("redirection_action is INSPECT_REDIRECTION_DOMAIN or TRUST_REDIRECTION_DOMAIN");
    }
    match rule.action {
        FirewallRuleAction::Allow | FirewallRuleAction::Alert => {
            if rule.block_response.is_some() || override_fields {
                return Err("block_response and the block_override fields go with action BLOCK only");
            }
            Ok(if rule.action == FirewallRuleAction::Allow { FirewallAction::Allow } else { FirewallAction::Alert })
        }
        FirewallRuleAction::Block => match rule.block_response {
            None => Err("a BLOCK rule needs a block_response (NODATA, NXDOMAIN or OVERRIDE)"),
            Some(BlockResponse::Nodata | BlockResponse::Nxdomain) if override_fields => {
                Err("the block_override fields go with block_response OVERRIDE only")
            }
            Some(BlockResponse::Nodata) => Ok(FirewallAction::Block(FirewallBlock::NoData)),
            Some(BlockResponse::Nxdomain) => Ok(FirewallAction::Block(FirewallBlock::NxDomain)),
            Some(BlockResponse::Override) => {
                let (Some(domain), Some(kind), Some(ttl)) =
                    (&rule.block_override_domain, &rule.block_override_dns_type, rule.block_override_ttl)
                else {
                    return Err(
                        "OVERRIDE needs block_override_domain, block_override_dns_type (CNAME) and block_override_ttl",
                    );
                };
                if !kind.eq_ignore_ascii_case("CNAME") {
                    return Err("block_override_dns_type must be CNAME (the only type AWS offers)");
                }
                if ttl > MAX_OVERRIDE_TTL {
                    return Err("block_override_ttl must be between 0 and 604800");
                }
                let domain: NameBuf = domain.parse().map_err(|_| "block_override_domain is not a domain name")?;
                Ok(FirewallAction::Block(FirewallBlock::Override { domain, ttl }))
            }
        },
    }
}

/// A rule's query type filter.
pub fn rule_qtype(rule: &FirewallRuleConfig) -> Result<Option<RecordType>, &'static str> {
    rule.qtype
        .as_deref()
        .map(|text| text.parse::<RecordType>().map_err(|_| "qtype is not a record type (A, AAAA, MX, TYPE65...)"))
        .transpose()
}

/// Add a compiled list under its id; a second list with the id is an error.
fn insert_list<'c>(
    lists: &mut HashMap<&'c str, Arc<DomainList>>,
    list: &'c FirewallDomainListConfig,
    compiled: Arc<DomainList>,
    at: impl FnOnce() -> signpost_rules::Location,
) -> Result<(), EndpointError> {
    if lists.insert(&list.id, compiled).is_some() {
        return Err(EndpointError::Duplicate { at: at(), what: "firewall domain list", id: list.id.clone() });
    }
    Ok(())
}

impl EndpointConfig {
    /// Check the firewall resources and compile, per VPC, its rules in
    /// evaluation order: associations by priority, then each group's
    /// rules by priority.
    pub(crate) fn compile_firewall(
        &self,
        base_dir: &Path,
    ) -> Result<Vec<(String, Vec<FirewallRuleSpec>)>, EndpointError> {
        let mut lists: HashMap<&str, Arc<DomainList>> = HashMap::new();
        for (index, list) in self.firewall_domain_lists.iter().enumerate() {
            let field = format!("firewall_domain_lists[{index}]");
            if list.id.is_empty() {
                return Err(EndpointError::Invalid { at: self.locate(&field), problem: "an id cannot be empty" });
            }
            let entries = match domain_entries(list, base_dir) {
                Ok(entries) => entries,
                // A running endpoint keeps its firewall when a list's file
                // goes away: the list cannot be evaluated, and each VPC's
                // FirewallFailOpen decides what the queries that reach a
                // rule on it get (docs/endpoint.md).
                Err(_) if self.runtime.lists_may_be_unavailable => {
                    insert_list(&mut lists, list, Arc::new(DomainList::unavailable()), || self.locate(&field))?;
                    continue;
                }
                Err(source) => {
                    let path = base_dir.join(list.file.as_deref().unwrap_or(Path::new("")));
                    return Err(signpost_rules::Error::io(self.locate(&format!("{field}.file")), path, source).into());
                }
            };
            let mut compiled = DomainList::new();
            for (entry_index, entry) in entries.iter().enumerate() {
                compiled.insert(entry).map_err(|error| {
                    let at = if entry_index < list.domains.len() {
                        self.locate(&format!("{field}.domains[{entry_index}]"))
                    } else {
                        self.locate(&format!("{field}.file"))
                    };
                    error.relocated(at)
                })?;
            }
            insert_list(&mut lists, list, Arc::new(compiled), || self.locate(&format!("{field}.id")))?;
        }
        let mut groups: HashMap<&str, Vec<(u32, FirewallRuleSpec)>> = HashMap::new();
        for (index, group) in self.firewall_rule_groups.iter().enumerate() {
            let field = format!("firewall_rule_groups[{index}]");
            if group.id.is_empty() {
                return Err(EndpointError::Invalid { at: self.locate(&field), problem: "an id cannot be empty" });
            }
            let mut names = BTreeSet::new();
            let mut priorities = BTreeSet::new();
            let mut rules = Vec::with_capacity(group.rules.len());
            for (rule_index, rule) in group.rules.iter().enumerate() {
                let rule_field = format!("{field}.rules[{rule_index}]");
                let invalid = |problem| EndpointError::Invalid { at: self.locate(&rule_field), problem };
                if !names.insert(rule.name.as_str()) {
                    return Err(EndpointError::Duplicate {
                        at: self.locate(&format!("{rule_field}.name")),
                        what: "firewall rule name",
                        id: rule.name.clone(),
                    });
                }
                if !priorities.insert(rule.priority) {
                    return Err(EndpointError::Duplicate {
                        at: self.locate(&format!("{rule_field}.priority")),
                        what: "firewall rule priority",
                        id: rule.priority.to_string(),
                    });
                }
                let Some(domains) = lists.get(rule.domain_list.as_str()) else {
                    return Err(EndpointError::UnknownReference {
                        at: self.locate(&format!("{rule_field}.domain_list")),
                        what: "firewall domain list",
                        id: rule.domain_list.clone(),
                    });
                };
                let action = rule_action(rule).map_err(invalid)?;
                let qtype = rule_qtype(rule).map_err(invalid)?;
                let redirection = match rule.redirection_action.as_deref() {
                    Some("TRUST_REDIRECTION_DOMAIN") => Redirection::Trust,
                    _ => Redirection::Inspect,
                };
                rules.push((
                    rule.priority,
                    FirewallRuleSpec {
                        group: group.id.clone(),
                        rule: rule.name.clone(),
                        list: rule.domain_list.clone(),
                        domains: domains.clone(),
                        qtype,
                        action,
                        redirection,
                    },
                ));
            }
            rules.sort_by_key(|(priority, _)| *priority);
            if groups.insert(&group.id, rules).is_some() {
                return Err(EndpointError::Duplicate {
                    at: self.locate(&format!("{field}.id")),
                    what: "firewall rule group",
                    id: group.id.clone(),
                });
            }
        }
        let mut by_vpc: BTreeMap<&str, Vec<(u32, &str)>> = BTreeMap::new();
        let mut ids = BTreeSet::new();
        for (index, association) in self.firewall_associations.iter().enumerate() {
            let field = format!("firewall_associations[{index}]");
            if !self.vpcs.iter().any(|vpc| vpc.id == association.vpc) {
                return Err(EndpointError::UnknownReference {
                    at: self.locate(&format!("{field}.vpc")),
                    what: "VPC",
                    id: association.vpc.clone(),
                });
            }
            if !groups.contains_key(association.rule_group.as_str()) {
                return Err(EndpointError::UnknownReference {
                    at: self.locate(&format!("{field}.rule_group")),
                    what: "firewall rule group",
                    id: association.rule_group.clone(),
                });
            }
            if !ASSOCIATION_PRIORITIES.contains(&association.priority) {
                return Err(EndpointError::Invalid {
                    at: self.locate(&format!("{field}.priority")),
                    problem: "the priority of a rule group association is between 100 and 9900",
                });
            }
            let associated = by_vpc.entry(&association.vpc).or_default();
            if associated.iter().any(|(priority, _)| *priority == association.priority) {
                return Err(EndpointError::Duplicate {
                    at: self.locate(&format!("{field}.priority")),
                    what: "firewall association priority in the VPC",
                    id: association.priority.to_string(),
                });
            }
            if associated.iter().any(|(_, group)| *group == association.rule_group) {
                return Err(EndpointError::Duplicate {
                    at: self.locate(&format!("{field}.rule_group")),
                    what: "firewall rule group associated with the VPC",
                    id: association.rule_group.clone(),
                });
            }
            if !ids.insert(association.association_id()) {
                return Err(EndpointError::Duplicate {
                    at: self.locate(&format!("{field}.id")),
                    what: "firewall rule group association",
                    id: association.association_id(),
                });
            }
            associated.push((association.priority, &association.rule_group));
        }
        Ok(by_vpc
            .into_iter()
            .map(|(vpc, mut associated)| {
                associated.sort_by_key(|(priority, _)| *priority);
                let rules = associated
                    .iter()
                    .flat_map(|(_, group)| groups.get(group).into_iter().flatten().map(|(_, rule)| rule.clone()))
                    .collect();
                (vpc.to_string(), rules)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: FirewallRuleAction, response: Option<BlockResponse>) -> FirewallRuleConfig {
        FirewallRuleConfig {
            name: "r".into(),
            priority: 1,
            domain_list: "l".into(),
            action,
            block_response: response,
            block_override_domain: None,
            block_override_dns_type: None,
            block_override_ttl: None,
            qtype: None,
            redirection_action: None,
            creator_request_id: None,
            created: None,
            modified: None,
        }
    }

    #[test]
    fn rules_are_checked_as_the_service_checks_them() {
        assert_eq!(rule_action(&rule(FirewallRuleAction::Allow, None)), Ok(FirewallAction::Allow));
        assert!(rule_action(&rule(FirewallRuleAction::Alert, Some(BlockResponse::Nodata))).is_err());
        assert!(rule_action(&rule(FirewallRuleAction::Block, None)).is_err());
        let mut override_rule = rule(FirewallRuleAction::Block, Some(BlockResponse::Override));
        assert!(rule_action(&override_rule).is_err());
        override_rule.block_override_domain = Some("walled.example.".into());
        override_rule.block_override_dns_type = Some("CNAME".into());
        override_rule.block_override_ttl = Some(604_801);
        assert!(rule_action(&override_rule).is_err());
        override_rule.block_override_ttl = Some(60);
        assert!(matches!(rule_action(&override_rule), Ok(FirewallAction::Block(FirewallBlock::Override { .. }))));
        let mut typed = rule(FirewallRuleAction::Allow, None);
        typed.qtype = Some("MX".into());
        assert_eq!(rule_qtype(&typed), Ok(Some(RecordType::MX)));
        typed.qtype = Some("NOPE".into());
        assert!(rule_qtype(&typed).is_err());
    }

    #[test]
    fn domain_files_skip_comments_and_blank_lines() {
        assert_eq!(
            domain_file_entries("# list\nevil.example\n\n *.bad.example # wildcard\n"),
            ["evil.example", "*.bad.example"]
        );
    }
}
