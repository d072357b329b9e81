//! The model's resources as the state store keeps them: one document per
//! resource, by kind and id.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::EndpointConfig;
use crate::state::{StoreChange, StoredResource};

/// Declares [`Kind`] and what the store needs of each kind of resource
/// once: its list in [`EndpointConfig`], its store name and how its id is
/// read. `Change` (Route 53 changes) is kept outside the model.
macro_rules! resource_kinds {
    ($($(#[$doc:meta])* $kind:ident => $list:ident, $name:literal, |$item:ident| $id:expr;)*) => {
        /// The kinds of resource kept in the state store.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind {
            $($(#[$doc])* $kind,)*
            /// A Route 53 change (`GetChange`), kept outside the TOML model.
            Change,
        }

        impl Kind {
            /// The store's name of the kind.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$kind => $name,)*
                    Self::Change => "route53_change",
                }
            }

            fn parse(text: &str) -> Option<Self> {
                [$(Self::$kind,)* Self::Change].into_iter().find(|kind| kind.as_str() == text)
            }
        }

        /// The document of the `kind` resource `id` in `config` (`None` inside
        /// when there is none); `None` for kinds outside the model.
        fn find_document(config: &EndpointConfig, kind: Kind, id: &str) -> Option<Option<serde_json::Value>> {
            match kind {
                $(Kind::$kind => Some(document(config.$list.iter().find(|$item| $id == id))),)*
                Kind::Change => None,
            }
        }

        /// The kind and id of every resource of `config`, kind by kind.
        fn resource_keys(config: &EndpointConfig) -> Vec<(Kind, String)> {
            let mut keys: Vec<(Kind, String)> = Vec::new();
            $(keys.extend(config.$list.iter().map(|$item| (Kind::$kind, $id.to_string())));)*
            keys
        }

        /// Empty every resource list of `config`.
        fn clear_resources(config: &mut EndpointConfig) {
            $(config.$list.clear();)*
        }

        /// Add a stored resource to its list; `Ok(false)` for kinds outside the model.
        fn push_resource(config: &mut EndpointConfig, kind: Kind, resource: &StoredResource) -> Result<bool, BadDocument> {
            match kind {
                $(Kind::$kind => config.$list.push(parse(resource)?),)*
                Kind::Change => return Ok(false),
            }
            Ok(true)
        }
    };
}

resource_kinds! {
    /// `[[vpcs]]`.
    Vpc => vpcs, "vpc", |item| item.id;
    /// `[[subnets]]`.
    Subnet => subnets, "subnet", |item| item.id;
    /// `[[security_groups]]`.
    SecurityGroup => security_groups, "security_group", |item| item.id;
    /// `[[private_hosted_zones]]`.
    PrivateHostedZone => private_hosted_zones, "private_hosted_zone", |item| item.zone_id();
    /// `[[public_hosted_zones]]`.
    PublicHostedZone => public_hosted_zones, "public_hosted_zone", |item| item.zone_id();
    /// `[[resolver_rules]]`.
    ResolverRule => resolver_rules, "resolver_rule", |item| item.id;
    /// `[[inbound_endpoints]]`.
    InboundEndpoint => inbound_endpoints, "inbound_endpoint", |item| item.id;
    /// `[[outbound_endpoints]]`.
    OutboundEndpoint => outbound_endpoints, "outbound_endpoint", |item| item.id;
    /// `[[query_logging]]`.
    QueryLogging => query_logging, "query_logging", |item| item.id;
    /// `[[firewall_domain_lists]]`.
    FirewallDomainList => firewall_domain_lists, "firewall_domain_list", |item| item.id;
    /// `[[firewall_rule_groups]]` (with their rules).
    FirewallRuleGroup => firewall_rule_groups, "firewall_rule_group", |item| item.id;
    /// `[[firewall_associations]]`.
    FirewallAssociation => firewall_associations, "firewall_association", |item| item.association_id();
}

fn document<T: Serialize>(item: Option<&T>) -> Option<serde_json::Value> {
    item.and_then(|item| serde_json::to_value(item).ok())
}

/// The store change that brings the stored `kind`/`id` in line with `config`.
pub(crate) fn store_change(config: &EndpointConfig, kind: Kind, id: &str) -> Option<StoreChange> {
    Some(match find_document(config, kind, id)? {
        Some(value) => StoreChange::Put { kind: kind.as_str(), id: id.to_string(), value },
        None => StoreChange::Delete { kind: kind.as_str(), id: id.to_string() },
    })
}

/// Every resource of `config`, as store changes (to seed an empty store).
pub(crate) fn all_resources(config: &EndpointConfig) -> Vec<StoreChange> {
    resource_keys(config).into_iter().filter_map(|(kind, id)| store_change(config, kind, &id)).collect()
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
    clear_resources(config);
    let mut changes = Vec::new();
    for resource in resources {
        let Some(kind) = Kind::parse(&resource.kind) else {
            return Err(BadDocument {
                key: format!("{}/{}", resource.kind, resource.id),
                message: "unknown kind of resource".to_string(),
            });
        };
        if !push_resource(config, kind, resource)? {
            changes.push((resource.id.clone(), resource.value.clone()));
        }
    }
    Ok(changes)
}
