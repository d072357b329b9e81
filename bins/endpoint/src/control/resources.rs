//! The model's resources as the state store keeps them: one document per
//! resource, by kind and id.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::EndpointConfig;
use crate::state::{StoreChange, StoredResource};

/// The kinds of resource kept in the state store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `[[vpcs]]`.
    Vpc,
    /// `[[subnets]]`.
    Subnet,
    /// `[[security_groups]]`.
    SecurityGroup,
    /// `[[private_hosted_zones]]`.
    PrivateHostedZone,
    /// `[[public_hosted_zones]]`.
    PublicHostedZone,
    /// `[[resolver_rules]]`.
    ResolverRule,
    /// `[[inbound_endpoints]]`.
    InboundEndpoint,
    /// `[[outbound_endpoints]]`.
    OutboundEndpoint,
    /// `[[query_logging]]`.
    QueryLogging,
    /// `[[firewall_domain_lists]]`.
    FirewallDomainList,
    /// `[[firewall_rule_groups]]` (with their rules).
    FirewallRuleGroup,
    /// `[[firewall_associations]]`.
    FirewallAssociation,
    /// A Route 53 change (`GetChange`), kept outside the TOML model.
    Change,
}

impl Kind {
    /// The store's name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vpc => "vpc",
            Self::Subnet => "subnet",
            Self::SecurityGroup => "security_group",
            Self::PrivateHostedZone => "private_hosted_zone",
            Self::PublicHostedZone => "public_hosted_zone",
            Self::ResolverRule => "resolver_rule",
            Self::InboundEndpoint => "inbound_endpoint",
            Self::OutboundEndpoint => "outbound_endpoint",
            Self::QueryLogging => "query_logging",
            Self::FirewallDomainList => "firewall_domain_list",
            Self::FirewallRuleGroup => "firewall_rule_group",
            Self::FirewallAssociation => "firewall_association",
            Self::Change => "route53_change",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Self::Vpc,
            Self::Subnet,
            Self::SecurityGroup,
            Self::PrivateHostedZone,
            Self::PublicHostedZone,
            Self::ResolverRule,
            Self::InboundEndpoint,
            Self::OutboundEndpoint,
            Self::QueryLogging,
            Self::FirewallDomainList,
            Self::FirewallRuleGroup,
            Self::FirewallAssociation,
            Self::Change,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

fn document<T: Serialize>(item: Option<&T>) -> Option<serde_json::Value> {
    item.and_then(|item| serde_json::to_value(item).ok())
}

/// The store change that brings the stored `kind`/`id` in line with `config`.
pub(crate) fn store_change(config: &EndpointConfig, kind: Kind, id: &str) -> Option<StoreChange> {
    let value = match kind {
        Kind::Vpc => document(config.vpcs.iter().find(|item| item.id == id)),
        Kind::Subnet => document(config.subnets.iter().find(|item| item.id == id)),
        Kind::SecurityGroup => document(config.security_groups.iter().find(|item| item.id == id)),
        Kind::PrivateHostedZone => document(config.private_hosted_zones.iter().find(|item| item.zone_id() == id)),
        Kind::PublicHostedZone => document(config.public_hosted_zones.iter().find(|item| item.zone_id() == id)),
        Kind::ResolverRule => document(config.resolver_rules.iter().find(|item| item.id == id)),
        Kind::InboundEndpoint => document(config.inbound_endpoints.iter().find(|item| item.id == id)),
        Kind::OutboundEndpoint => document(config.outbound_endpoints.iter().find(|item| item.id == id)),
        Kind::QueryLogging => document(config.query_logging.iter().find(|item| item.id == id)),
        Kind::FirewallDomainList => document(config.firewall_domain_lists.iter().find(|item| item.id == id)),
        Kind::FirewallRuleGroup => document(config.firewall_rule_groups.iter().find(|item| item.id == id)),
        Kind::FirewallAssociation => {
            document(config.firewall_associations.iter().find(|item| item.association_id() == id))
        }
        Kind::Change => return None,
    };
    Some(match value {
        Some(value) => StoreChange::Put { kind: kind.as_str(), id: id.to_string(), value },
        None => StoreChange::Delete { kind: kind.as_str(), id: id.to_string() },
    })
}

/// Every resource of `config`, as store changes (to seed an empty store).
pub(crate) fn all_resources(config: &EndpointConfig) -> Vec<StoreChange> {
    let mut keys: Vec<(Kind, String)> = Vec::new();
    keys.extend(config.vpcs.iter().map(|item| (Kind::Vpc, item.id.clone())));
    keys.extend(config.subnets.iter().map(|item| (Kind::Subnet, item.id.clone())));
    keys.extend(config.security_groups.iter().map(|item| (Kind::SecurityGroup, item.id.clone())));
    keys.extend(config.private_hosted_zones.iter().map(|item| (Kind::PrivateHostedZone, item.zone_id().to_string())));
    keys.extend(config.public_hosted_zones.iter().map(|item| (Kind::PublicHostedZone, item.zone_id().to_string())));
    keys.extend(config.outbound_endpoints.iter().map(|item| (Kind::OutboundEndpoint, item.id.clone())));
    keys.extend(config.resolver_rules.iter().map(|item| (Kind::ResolverRule, item.id.clone())));
    keys.extend(config.inbound_endpoints.iter().map(|item| (Kind::InboundEndpoint, item.id.clone())));
    keys.extend(config.query_logging.iter().map(|item| (Kind::QueryLogging, item.id.clone())));
    keys.extend(config.firewall_domain_lists.iter().map(|item| (Kind::FirewallDomainList, item.id.clone())));
    keys.extend(config.firewall_rule_groups.iter().map(|item| (Kind::FirewallRuleGroup, item.id.clone())));
    keys.extend(config.firewall_associations.iter().map(|item| (Kind::FirewallAssociation, item.association_id())));
    keys.into_iter().filter_map(|(kind, id)| store_change(config, kind, &id)).collect()
}

/// Why a stored resource could not be put back into the model.
#[derive(Debug)]
pub struct BadDocument {
    /// The resource's key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

fn parse<T: DeserializeOwned>(resource: &StoredResource) -> Result<T, BadDocument> {
    serde_json::from_value(resource.value.clone())
        .map_err(|error| BadDocument { key: format!("{}/{}", resource.kind, resource.id), message: error.to_string() })
}

/// Put stored resources into `config` (whose resource lists are replaced);
/// Route 53 changes are returned apart.
pub fn restore(
    config: &mut EndpointConfig,
    resources: &[StoredResource],
) -> Result<Vec<(String, serde_json::Value)>, BadDocument> {
    config.vpcs.clear();
    config.subnets.clear();
    config.security_groups.clear();
    config.private_hosted_zones.clear();
    config.public_hosted_zones.clear();
    config.resolver_rules.clear();
    config.inbound_endpoints.clear();
    config.outbound_endpoints.clear();
    config.query_logging.clear();
    config.firewall_domain_lists.clear();
    config.firewall_rule_groups.clear();
    config.firewall_associations.clear();
    let mut changes = Vec::new();
    for resource in resources {
        let Some(kind) = Kind::parse(&resource.kind) else {
            return Err(BadDocument {
                key: format!("{}/{}", resource.kind, resource.id),
                message: "unknown kind of resource".to_string(),
            });
        };
        match kind {
            Kind::Vpc => config.vpcs.push(parse(resource)?),
            Kind::Subnet => config.subnets.push(parse(resource)?),
            Kind::SecurityGroup => config.security_groups.push(parse(resource)?),
            Kind::PrivateHostedZone => config.private_hosted_zones.push(parse(resource)?),
            Kind::PublicHostedZone => config.public_hosted_zones.push(parse(resource)?),
            Kind::ResolverRule => config.resolver_rules.push(parse(resource)?),
            Kind::InboundEndpoint => config.inbound_endpoints.push(parse(resource)?),
            Kind::OutboundEndpoint => config.outbound_endpoints.push(parse(resource)?),
            Kind::QueryLogging => config.query_logging.push(parse(resource)?),
            Kind::FirewallDomainList => config.firewall_domain_lists.push(parse(resource)?),
            Kind::FirewallRuleGroup => config.firewall_rule_groups.push(parse(resource)?),
            Kind::FirewallAssociation => config.firewall_associations.push(parse(resource)?),
            Kind::Change => changes.push((resource.id.clone(), resource.value.clone())),
        }
    }
    Ok(changes)
}
