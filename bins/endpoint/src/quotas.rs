//! AWS's service quotas checked on the model, so a TOML file is held to
//! what the AWS API would let one build (`[quotas] enabled = false` lifts
//! them). The API checks the same quotas before a change, with
//! LimitExceededException.

use crate::error::EndpointError;
use crate::model::EndpointConfig;

impl EndpointConfig {
    /// The first quota the model exceeds, naming the field.
    pub(crate) fn check_quotas(&self) -> Result<(), EndpointError> {
        let quotas = &self.quotas;
        if !quotas.enabled {
            return Ok(());
        }
        let over = |field: String, (quota, limit): (&'static str, u32), count: usize| {
            (count > limit as usize).then(|| EndpointError::QuotaExceeded {
                at: self.locate(&field),
                quota,
                limit,
                count,
            })
        };
        // A quota's name in errors is its field's name in `[quotas]`.
        macro_rules! quota {
            ($name:ident) => {
                (stringify!($name), quotas.$name)
            };
        }
        // The length of a list.
        macro_rules! per_list {
            ($list:ident, $quota:ident) => {
                over(stringify!($list).into(), quota!($quota), self.$list.len())
            };
        }
        // Per item of a list: the count in one of its fields (`list[index].field`).
        macro_rules! per_item {
            ($list:ident . $field:ident, $quota:ident) => {
                (
                    stringify!($list),
                    stringify!($field),
                    quota!($quota),
                    self.$list.iter().map(|item| item.$field.len()).collect::<Vec<_>>(),
                )
            };
        }
        let endpoints = self.inbound_endpoints.len() + self.outbound_endpoints.len();
        let mut problems = vec![
            over("outbound_endpoints".into(), quota!(resolver_endpoints_per_region), endpoints),
            per_list!(resolver_rules, resolver_rules_per_region),
            over(
                "resolver_rules".into(),
                quota!(rule_associations_per_region),
                self.resolver_rules.iter().map(|rule| rule.vpcs.len()).sum(),
            ),
            per_list!(query_logging, query_log_configs_per_region),
            per_list!(firewall_domain_lists, firewall_domain_lists_per_region),
            per_list!(firewall_rule_groups, firewall_rule_groups_per_region),
        ];
        let per_item = [
            per_item!(inbound_endpoints.addresses, ip_addresses_per_endpoint),
            per_item!(outbound_endpoints.addresses, ip_addresses_per_endpoint),
            per_item!(resolver_rules.targets, target_ips_per_rule),
            per_item!(query_logging.vpcs, vpcs_per_query_log_config),
            per_item!(firewall_domain_lists.domains, domains_per_firewall_domain_list),
            per_item!(firewall_rule_groups.rules, rules_per_firewall_rule_group),
        ];
        for (list, field, quota, counts) in per_item {
            for (index, count) in counts.into_iter().enumerate() {
                problems.push(over(format!("{list}[{index}].{field}"), quota, count));
            }
        }
        for vpc in &self.vpcs {
            let associated = self.firewall_associations.iter().filter(|association| association.vpc == vpc.id).count();
            problems.push(over(
                "firewall_associations".into(),
                quota!(firewall_rule_group_associations_per_vpc),
                associated,
            ));
        }
        match problems.into_iter().flatten().next() {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{EndpointConfig, FirewallRuleGroupConfig};

    #[test]
    fn a_model_over_a_quota_names_the_field_and_the_quota() {
        let mut config = EndpointConfig::default();
        config.quotas.firewall_rule_groups_per_region = 1;
        let group = |id: &str| FirewallRuleGroupConfig {
            id: id.into(),
            name: None,
            rules: Vec::new(),
            policy: None,
            creator_request_id: None,
            created: None,
            modified: None,
            tags: Default::default(),
        };
        config.firewall_rule_groups = vec![group("a")];
        assert!(config.check_quotas().is_ok());
        config.firewall_rule_groups.push(group("b"));
        let message = config.check_quotas().expect_err("over the quota").to_string();
        assert!(message.contains("firewall_rule_groups_per_region") && message.contains("2"), "{message}");
        config.quotas.enabled = false;
        assert!(config.check_quotas().is_ok());
    }
}
