//! The control plane: one model (an [`EndpointConfig`]) changed by AWS API
//! calls, kept in a state directory, and made live by a [`Runtime`].
//!
//! A change runs as: copy the model, apply the operation to the copy (the
//! API's own checks), make the copy live (compiling it runs every check a
//! TOML file goes through; a rejected change leaves everything as it
//! was), store the resources it touched in one fsynced transaction, then
//! publish the copy for readers. Calls are answered after that, so a call
//! that returned success is both durable and live.

pub mod resources;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;
use crate::error::EndpointError;
use crate::model::{EndpointConfig, HostPort, VpcConfig};
use crate::state::{StateDir, StateError, StoreChange};
pub use resources::Kind;

/// What makes a model live: the running endpoint, or (for tests and other
/// front ends) anything that can take a configuration.
pub trait Runtime: Send + 'static {
    /// Fill in the model's runtime-only context (files, certificates,
    /// caches) before it is made live.
    fn prepare(&mut self, config: &mut EndpointConfig) -> Result<(), EndpointError> {
        let _ = config;
        Ok(())
    }

    /// Make `config` live. On error nothing changed.
    fn apply(&mut self, config: Arc<EndpointConfig>) -> impl Future<Output = Result<(), EndpointError>> + Send;

    /// Whether a change to a resource of `kind` changes what the runtime
    /// serves (when no touched kind does, the change is stored without
    /// being applied).
    fn affected_by(&self, kind: Kind) -> bool {
        let _ = kind;
        true
    }

    /// Where the resolver of `vpc` listens, when the runtime has bound it.
    fn resolver_address(&self, vpc: &str) -> Option<SocketAddr> {
        let _ = vpc;
        None
    }
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The state directory cannot be used.
    #[error(transparent)]
    State(#[from] StateError),
    /// The model (from the file or the state directory) is rejected.
    #[error(transparent)]
    Model(#[from] EndpointError),
}

/// A Route 53 change, for `GetChange`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// When it was submitted (RFC 3339).
    pub submitted: String,
    /// The batch's comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// One change being made to the model by an API operation.
pub struct Mutation<'a> {
    /// The model being changed.
    pub config: &'a mut EndpointConfig,
    /// When the operation runs, as the API reports times.
    pub now: String,
    touched: Vec<(Kind, String)>,
    clocks: Vec<String>,
    changes: Vec<(String, ChangeRecord)>,
}

impl Mutation<'_> {
    /// Record that the resource `kind`/`id` changed (created, replaced or removed).
    pub fn touch(&mut self, kind: Kind, id: impl Into<String>) {
        let id = id.into();
        if !self.touched.iter().any(|(k, i)| *k == kind && *i == id) {
            self.touched.push((kind, id));
        }
    }

    /// Start the status clock of `id` (a resource reports its transitional
    /// status, such as CREATING, for the configured delay).
    pub fn start_clock(&mut self, id: impl Into<String>) {
        self.clocks.push(id.into());
    }

    /// Record a Route 53 change under `id`.
    pub fn record_change(&mut self, id: impl Into<String>, record: ChangeRecord) {
        self.changes.push((id.into(), record));
    }
}

struct Inner<R> {
    store: Option<StateDir>,
    runtime: R,
}

/// The model, its store and its runtime, shared by every API call.
pub struct ControlPlane<R: Runtime> {
    inner: tokio::sync::Mutex<Inner<R>>,
    snapshot: ArcSwap<EndpointConfig>,
    /// Tells watchers (the secondary zones' supervisor) of each new model.
    published: tokio::sync::watch::Sender<Arc<EndpointConfig>>,
    clocks: Mutex<HashMap<String, Instant>>,
    changes: Mutex<BTreeMap<String, ChangeRecord>>,
}

/// The current time as the AWS APIs print it (RFC 3339, UTC).
pub fn timestamp(time: SystemTime) -> String {
    signpost_server::querylog::rfc3339(time)
}

/// A new random id: `prefix` and 17 hexadecimal digits, as AWS's are.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{:016x}{:x}", rand::random::<u64>(), rand::random::<u8>() & 0xf)
}

/// An id derived from `parts` (the same parts give the same id), for
/// resources a TOML file names without an id.
pub fn derived_id(prefix: &str, parts: &[&str]) -> String {
    // FNV-1a, twice with different offsets: stable across runs and versions.
    let hash = |offset: u64| {
        parts.iter().fold(offset, |hash, part| {
            part.bytes().chain([0]).fold(hash, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
        })
    };
    format!("{prefix}{:016x}{:x}", hash(0xcbf2_9ce4_8422_2325), hash(0x8422_2325_cbf2_9ce4) & 0xf)
}

impl<R: Runtime> ControlPlane<R> {
    /// Start from `config` (settings, and resources to seed an empty state
    /// with) and `store`: resources already in the store replace the
    /// file's; an empty store is seeded from the file. The runtime makes
    /// the result live.
    pub async fn start(
        mut config: EndpointConfig,
        mut store: Option<StateDir>,
        mut runtime: R,
    ) -> Result<Self, ControlError> {
        let mut changes = BTreeMap::new();
        let mut seed = Vec::new();
        if let Some(state) = &mut store {
            let stored = state.load()?;
            if stored.is_empty() {
                fill_api_fields(&mut config, &timestamp(SystemTime::now()));
                seed = resources::all_resources(&config);
            } else {
                let database = state.path().join(crate::state::DATABASE_FILE);
                let loaded = resources::restore(&mut config, &stored).map_err(|bad| StateError::Document {
                    path: database.clone(),
                    key: bad.key,
                    message: bad.message,
                })?;
                for (id, value) in loaded {
                    let record: ChangeRecord = serde_json::from_value(value).map_err(|error| StateError::Document {
                        path: database.clone(),
                        key: format!("{}/{id}", Kind::Change.as_str()),
                        message: error.to_string(),
                    })?;
                    changes.insert(id, record);
                }
            }
        } else {
            fill_api_fields(&mut config, &timestamp(SystemTime::now()));
        }
        assign_loopback_resolvers(&mut config);
        runtime.prepare(&mut config)?;
        let config = Arc::new(config);
        runtime.apply(config.clone()).await?;
        if let Some(state) = &mut store
            && !seed.is_empty()
        {
            // The file's resources and the resolvers assigned above.
            seed = resources::all_resources(&config);
            state.commit(&seed)?;
        }
        Ok(Self {
            inner: tokio::sync::Mutex::new(Inner { store, runtime }),
            snapshot: ArcSwap::new(config.clone()),
            published: tokio::sync::watch::Sender::new(config),
            clocks: Mutex::new(HashMap::new()),
            changes: Mutex::new(changes),
        })
    }

    /// The model as the last successful change left it.
    pub fn snapshot(&self) -> Arc<EndpointConfig> {
        self.snapshot.load_full()
    }

    /// Each model as it is put in force, starting with the current one.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<EndpointConfig>> {
        self.published.subscribe()
    }

    fn publish(&self, config: Arc<EndpointConfig>) {
        self.snapshot.store(config.clone());
        self.published.send_replace(config);
    }

    /// Run `f` on the runtime (to read its listeners, say) without changing anything.
    pub async fn with_runtime<T>(&self, f: impl FnOnce(&R) -> T) -> T {
        let inner = self.inner.lock().await;
        f(&inner.runtime)
    }

    /// Run `f` on the runtime, mutably (to take the endpoint out at shutdown).
    pub async fn with_runtime_mut<T>(&self, f: impl FnOnce(&mut R) -> T) -> T {
        let mut inner = self.inner.lock().await;
        f(&mut inner.runtime)
    }

    /// Whether the status clock of `id` has run for the configured delay
    /// (ids made before this process started have).
    pub fn settled(&self, id: &str) -> bool {
        let delay = Duration::from_millis(self.snapshot.load().api.status_delay_ms);
        let clocks = self.clocks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        clocks.get(id).is_none_or(|started| started.elapsed() >= delay)
    }

    /// A Route 53 change, when known.
    pub fn change(&self, id: &str) -> Option<ChangeRecord> {
        self.changes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned()
    }

    /// Replace the whole model with `next` (a TOML file read again on
    /// SIGHUP): its resources replace the current ones, checked and made
    /// live as one change; the store, if any, is rewritten to match.
    pub async fn replace(&self, mut next: EndpointConfig) -> Result<(), EndpointError> {
        let mut inner = self.inner.lock().await;
        fill_api_fields(&mut next, &timestamp(SystemTime::now()));
        assign_loopback_resolvers(&mut next);
        inner.runtime.prepare(&mut next)?;
        let next = Arc::new(next);
        inner.runtime.apply(next.clone()).await?;
        if let Some(store) = &mut inner.store {
            let current = self.snapshot.load_full();
            let mut changes: Vec<StoreChange> = resources::all_resources(&current)
                .into_iter()
                .filter_map(|change| match change {
                    StoreChange::Put { kind, id, .. } => Some(StoreChange::Delete { kind, id }),
                    StoreChange::Delete { .. } => None,
                })
                .collect();
            changes.extend(resources::all_resources(&next));
            if let Err(error) = store.commit(&changes) {
                let _ = inner.runtime.apply(current).await;
                return Err(EndpointError::Store { message: error.to_string() });
            }
        }
        self.publish(next);
        Ok(())
    }

    /// Change the model with `op`; when it succeeds, make the result live
    /// and durable before returning. Nothing changes when anything fails.
    pub async fn mutate<T>(&self, op: impl FnOnce(&mut Mutation<'_>) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let mut inner = self.inner.lock().await;
        let current = self.snapshot.load_full();
        let mut candidate = (*current).clone();
        // Errors name API fields now, not places in the original file.
        candidate.source = None;
        let mut mutation = Mutation {
            config: &mut candidate,
            now: timestamp(SystemTime::now()),
            touched: Vec::new(),
            clocks: Vec::new(),
            changes: Vec::new(),
        };
        let value = op(&mut mutation)?;
        let Mutation { touched, clocks, changes, .. } = mutation;
        if touched.is_empty() && changes.is_empty() {
            return Ok(value);
        }
        let started = Instant::now();
        let live = touched.iter().any(|(kind, _)| inner.runtime.affected_by(*kind));
        if live {
            inner.runtime.prepare(&mut candidate).map_err(|error| ApiError::from_model(&error))?;
        }
        let candidate = Arc::new(candidate);
        if live {
            inner.runtime.apply(candidate.clone()).await.map_err(|error| ApiError::from_model(&error))?;
        }
        let applied = started.elapsed();
        let Inner { store, runtime } = &mut *inner;
        if let Some(store) = store {
            let mut stored: Vec<StoreChange> =
                touched.iter().filter_map(|(kind, id)| resources::store_change(&candidate, *kind, id)).collect();
            for (id, record) in &changes {
                if let Ok(value) = serde_json::to_value(record) {
                    stored.push(StoreChange::Put { kind: Kind::Change.as_str(), id: id.clone(), value });
                }
            }
            if let Err(error) = store.commit(&stored) {
                // Put the previous model back in force; the call fails.
                let _ = runtime.apply(current).await;
                return Err(ApiError::internal(format!("the change could not be stored: {error}")));
            }
        }
        tracing::debug!(
            applied_us = applied.as_micros() as u64,
            stored_us = (started.elapsed() - applied).as_micros() as u64,
            resources = touched.len(),
            "change made live and stored"
        );
        {
            let now = Instant::now();
            let mut running = self.clocks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for id in clocks {
                running.insert(id, now);
            }
        }
        self.changes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(changes);
        self.publish(candidate);
        Ok(value)
    }
}

/// Give resources a TOML file left without API fields their creation
/// times, association ids and address ids (derived, so the same file gives
/// the same ids).
pub(crate) fn fill_api_fields(config: &mut EndpointConfig, now: &str) {
    let fill_time = |slot: &mut Option<String>| {
        slot.get_or_insert_with(|| now.to_string());
    };
    for rule in &mut config.resolver_rules {
        fill_time(&mut rule.created);
        fill_time(&mut rule.modified);
        for association in &mut rule.vpcs {
            association.id.get_or_insert_with(|| derived_id("rslvr-rrassoc-", &[&rule.id, &association.vpc]));
            fill_time(&mut association.created);
        }
    }
    for log in &mut config.query_logging {
        fill_time(&mut log.created);
        for association in &mut log.vpcs {
            association.id.get_or_insert_with(|| derived_id("rslvr-qlcassoc-", &[&log.id, &association.vpc]));
            fill_time(&mut association.created);
        }
    }
    let inbound =
        config.inbound_endpoints.iter_mut().map(|e| (&e.id, &mut e.created, &mut e.modified, &mut e.addresses));
    let outbound =
        config.outbound_endpoints.iter_mut().map(|e| (&e.id, &mut e.created, &mut e.modified, &mut e.addresses));
    for (id, created, modified, addresses) in inbound.chain(outbound) {
        fill_time(created);
        fill_time(modified);
        for address in addresses {
            address.id.get_or_insert_with(|| derived_id("rni-", &[id, &address.ip.to_string()]));
        }
    }
    for list in &mut config.firewall_domain_lists {
        fill_time(&mut list.created);
        fill_time(&mut list.modified);
    }
    for group in &mut config.firewall_rule_groups {
        fill_time(&mut group.created);
        fill_time(&mut group.modified);
        for rule in &mut group.rules {
            fill_time(&mut rule.created);
            fill_time(&mut rule.modified);
        }
    }
    for association in &mut config.firewall_associations {
        if association.id.is_none() {
            association.id = Some(association.association_id());
        }
        fill_time(&mut association.created);
        fill_time(&mut association.modified);
    }
    for zone in config.private_hosted_zones.iter_mut().chain(config.public_hosted_zones.iter_mut()) {
        if zone.caller_reference.is_none() {
            zone.caller_reference = Some(derived_id("signpost-", &[zone.zone_id()]));
        }
    }
}

/// Whether this host has `address`: loopback, or the source address the
/// kernel picks for a UDP socket connected to it (connecting a UDP socket
/// sends nothing; binding would succeed for any address where
/// `ip_nonlocal_bind` is set).
pub fn is_local_address(address: IpAddr) -> bool {
    if address.is_loopback() {
        return true;
    }
    let unspecified: IpAddr =
        if address.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { std::net::Ipv6Addr::UNSPECIFIED.into() };
    UdpSocket::bind(SocketAddr::new(unspecified, 0))
        .and_then(|socket| {
            socket.connect(SocketAddr::new(address, 9))?;
            socket.local_addr()
        })
        .is_ok_and(|local| local.ip() == address)
}

/// The `.2` address of the VPC's first IPv4 block, where Route 53 puts
/// the VPC resolver.
pub fn dot_two(vpc: &VpcConfig) -> Option<IpAddr> {
    vpc.cidrs.iter().find_map(|cidr| match cidr {
        ipnet::IpNet::V4(v4) => {
            let address = Ipv4Addr::from(u32::from(v4.network()).checked_add(2)?);
            v4.contains(&address).then_some(IpAddr::V4(address))
        }
        ipnet::IpNet::V6(_) => None,
    })
}

/// Give every VPC without a `resolver` whose `.2` address is not on this
/// host a loopback stand-in (127.254.N.2, then 127.253.N.2, ...) that no
/// VPC block holds and no other resolver uses.
pub fn assign_loopback_resolvers(config: &mut EndpointConfig) {
    for index in 0..config.vpcs.len() {
        let Some(vpc) = config.vpcs.get(index) else { continue };
        if vpc.resolver.is_some() {
            continue;
        }
        match dot_two(vpc) {
            Some(address) if is_local_address(address) => continue,
            None => continue,
            Some(_) => {}
        }
        if let Some(address) = free_loopback(config)
            && let Some(vpc) = config.vpcs.get_mut(index)
        {
            vpc.resolver = Some(HostPort { ip: address, port: None });
        }
    }
}

/// A loopback address for a VPC resolver stand-in.
pub fn free_loopback(config: &EndpointConfig) -> Option<IpAddr> {
    let used = |address: IpAddr| {
        config.vpcs.iter().any(|vpc| {
            vpc.cidrs.iter().any(|cidr| cidr.contains(&address))
                || vpc.resolver.is_some_and(|resolver| resolver.ip == address)
        })
    };
    (1..=254u8)
        .rev()
        .flat_map(|second| (0..=255u8).map(move |third| IpAddr::V4(Ipv4Addr::new(127, second, third, 2))))
        .find(|address| !used(*address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_shaped_like_aws_ids() {
        let id = derived_id("rslvr-rrassoc-", &["rule", "vpc-a"]);
        assert_eq!(id, derived_id("rslvr-rrassoc-", &["rule", "vpc-a"]));
        assert_ne!(id, derived_id("rslvr-rrassoc-", &["rule", "vpc-b"]));
        assert_ne!(derived_id("x-", &["ab", "c"]), derived_id("x-", &["a", "bc"]));
        let hex = id.strip_prefix("rslvr-rrassoc-").unwrap();
        assert_eq!(hex.len(), 17);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(new_id("vpc-").len(), "vpc-".len() + 17);
    }

    #[test]
    fn vpcs_whose_dot_two_is_elsewhere_get_a_loopback_resolver() {
        let mut config = EndpointConfig::default();
        config.vpcs.push(VpcConfig::new("vpc-local", vec!["127.0.1.0/24".parse().unwrap()]));
        // Documentation blocks whose .2 is not this machine's (one of them may be).
        let far: Vec<&str> = ["198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24"]
            .into_iter()
            .filter(|cidr| !is_local_address(cidr.replace(".0/24", ".2").parse().unwrap()))
            .collect();
        assert!(far.len() >= 2, "this machine has the .2 of two documentation blocks");
        config.vpcs.push(VpcConfig::new("vpc-far", vec![far[0].parse().unwrap()]));
        config.vpcs.push(VpcConfig::new("vpc-far2", vec![far[1].parse().unwrap()]));
        assign_loopback_resolvers(&mut config);
        assert_eq!(config.vpcs[0].resolver, None);
        let far = config.vpcs[1].resolver.unwrap();
        let far2 = config.vpcs[2].resolver.unwrap();
        assert!(far.ip.is_loopback() && far2.ip.is_loopback());
        assert_ne!(far.ip, far2.ip);
        assert_eq!(far.ip, "127.254.0.2".parse::<IpAddr>().unwrap());
    }
}
