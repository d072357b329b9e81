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
        let over = |field: String, quota: &'static str, limit: u32, count: usize| {
            (count > limit as usize).then(|| EndpointError::QuotaExceeded {
                at: self.locate(&field),
                quota,
                limit,
                count,
            })
        };
        let endpoints = self.inbound_endpoints.len() + self.outbound_endpoints.len();
        let mut problems = vec![
            over(
                "outbound_endpoints".into(),
                "resolver_endpoints_per_region",
                quotas.resolver_endpoints_per_region,
                endpoints,
            ),
            over(
                "resolver_rules".into(),
                "resolver_rules_per_region",
                quotas.resolver_rules_per_region,
                self.resolver_rules.len(),
            ),
            over(
                "resolver_rules".into(),
                "rule_associations_per_region",
                quotas.rule_associations_per_region,
                self.resolver_rules.iter().map(|rule| rule.vpcs.len()).sum(),
            ),
            over(
                "query_logging".into(),
                "query_log_configs_per_region",
                quotas.query_log_configs_per_region,
                self.query_logging.len(),
            ),
            over(
                "firewall_domain_lists".into(),
                "firewall_domain_lists_per_region",
                quotas.firewall_domain_lists_per_region,
                self.firewall_domain_lists.len(),
            ),
            over(
                "firewall_rule_groups".into(),
                "firewall_rule_groups_per_region",
                quotas.firewall_rule_groups_per_region,
                self.firewall_rule_groups.len(),
            ),
        ];
        // Per item: (its list, its field, the quota, the quota's value, the count of each item).
        let per_item: [(&str, &str, &'static str, u32, Vec<usize>); 6] = [
            (
                "inbound_endpoints",
                "addresses",
                "ip_addresses_per_endpoint",
                quotas.ip_addresses_per_endpoint,
                self.inbound_endpoints.iter().map(|endpoint| endpoint.addresses.len()).collect(),
            ),
            (
                "outbound_endpoints",
                "addresses",
                "ip_addresses_per_endpoint",
                quotas.ip_addresses_per_endpoint,
                self.outbound_endpoints.iter().map(|endpoint| endpoint.addresses.len()).collect(),
            ),
            (
                "resolver_rules",
                "targets",
                "target_ips_per_rule",
                quotas.target_ips_per_rule,
                self.resolver_rules.iter().map(|rule| rule.targets.len()).collect(),
            ),
            (
                "query_logging",
                "vpcs",
                "vpcs_per_query_log_config",
                quotas.vpcs_per_query_log_config,
                self.query_logging.iter().map(|log| log.vpcs.len()).collect(),
            ),
            (
                "firewall_domain_lists",
                "domains",
                "domains_per_firewall_domain_list",
                quotas.domains_per_firewall_domain_list,
                self.firewall_domain_lists.iter().map(|list| list.domains.len()).collect(),
            ),
            (
                "firewall_rule_groups",
                "rules",
                "rules_per_firewall_rule_group",
                quotas.rules_per_firewall_rule_group,
                self.firewall_rule_groups.iter().map(|group| group.rules.len()).collect(),
            ),
        ];
        for (list, field, quota, limit, counts) in per_item {
            for (index, count) in counts.into_iter().enumerate() {
                problems.push(over(format!("{list}[{index}].{field}"), quota, limit, count));
            }
        }
        for vpc in &self.vpcs {
            let associated = self.firewall_associations.iter().filter(|association| association.vpc == vpc.id).count();
            problems.push(over(
                "firewall_associations".into(),
                "firewall_rule_group_associations_per_vpc",
                quotas.firewall_rule_group_associations_per_vpc,
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
