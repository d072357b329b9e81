//! The endpoint as a [`Runtime`] of the control plane: every change of the
//! model is compiled and swapped into the running server.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use signpost_server::UpstreamsInUse;

use crate::certificates::LocalCa;
use crate::control::Runtime;
use crate::error::EndpointError;
use crate::model::EndpointConfig;
use crate::protocols::{Direction, Protocols};
use crate::running::{Endpoint, EndpointListener, Reloaded};

/// Something worth telling the operator, as it happens.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Report {
    /// A listener started (at start-up, or later when the API created it).
    Listening(EndpointListener),
    /// A listener stopped (its VPC or endpoint was deleted).
    Stopped {
        /// Its id.
        id: String,
        /// The address it had.
        address: SocketAddr,
    },
    /// The CA that signs generated DoH certificates, for clients to trust.
    CertificateAuthority(PathBuf),
}

/// The upstream groups of the endpoint in force, for the readiness checks:
/// they run beside the control plane and must not wait for its lock (a
/// change may hold it while a restarted server binds). Cheap to clone;
/// clones share.
#[derive(Clone, Debug, Default)]
pub struct UpstreamsInForce(Arc<Mutex<Option<UpstreamsInUse>>>);

impl UpstreamsInForce {
    /// The groups in force and those queries go to (none before the
    /// endpoint starts).
    pub fn get(&self) -> UpstreamsInUse {
        let in_force = self.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
        in_force.unwrap_or_else(|| UpstreamsInUse { upstreams: Arc::default(), only: Some(BTreeSet::new()) })
    }

    fn set(&self, endpoint: Option<&Endpoint>) {
        let in_force = endpoint.map(|endpoint| {
            let deployment = endpoint.deployment();
            UpstreamsInUse { upstreams: deployment.upstreams.clone(), only: Some(deployment.groups_in_use()) }
        });
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = in_force;
    }
}

/// The running endpoint, fed by the control plane.
pub struct EndpointRuntime {
    endpoint: Option<Endpoint>,
    files_dir: PathBuf,
    ca: Option<LocalCa>,
    running: BTreeSet<(String, SocketAddr)>,
    report: Box<dyn FnMut(Report) + Send>,
    last: Option<Reloaded>,
    zones: crate::model::ZoneCache,
    transfers: Arc<signpost_server::transfer::ZoneTransfers>,
    expired: crate::secondary::ExpiredZones,
    given_out: crate::transfer_out::GivenOut,
    upstreams_in_force: UpstreamsInForce,
}

impl std::fmt::Debug for EndpointRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointRuntime").field("files_dir", &self.files_dir).finish_non_exhaustive()
    }
}

impl EndpointRuntime {
    /// A runtime keeping its files (ARN query logs, generated certificates)
    /// in `files_dir`, telling `report` what starts and stops.
    pub fn new(files_dir: impl Into<PathBuf>, report: impl FnMut(Report) + Send + 'static) -> Self {
        Self {
            endpoint: None,
            files_dir: files_dir.into(),
            ca: None,
            running: BTreeSet::new(),
            report: Box::new(report),
            last: None,
            zones: crate::model::ZoneCache::default(),
            transfers: Arc::default(),
            expired: crate::secondary::ExpiredZones::default(),
            given_out: crate::transfer_out::GivenOut::default(),
            upstreams_in_force: UpstreamsInForce::default(),
        }
    }

    /// The zone transfers and NOTIFY the servers answer (secondary zones register here).
    pub fn transfers(&self) -> Arc<signpost_server::transfer::ZoneTransfers> {
        self.transfers.clone()
    }

    /// The secondary zones past their expire time, which the next change answers SERVFAIL for.
    pub fn expired_zones(&self) -> crate::secondary::ExpiredZones {
        self.expired.clone()
    }

    /// The upstream groups in force, followed through every change.
    pub fn upstreams_in_force(&self) -> UpstreamsInForce {
        self.upstreams_in_force.clone()
    }

    /// Where runtime files (query logs, certificates, secondary copies) go.
    pub fn files_dir(&self) -> &std::path::Path {
        &self.files_dir
    }

    /// What the last change did to the server: swapped in place, or
    /// restarted because listeners, limits or query logs changed.
    pub fn last_change(&self) -> Option<Reloaded> {
        self.last
    }

    /// The running endpoint (none before the first change is applied).
    pub fn endpoint(&self) -> Option<&Endpoint> {
        self.endpoint.as_ref()
    }

    /// Take the running endpoint out (to shut it down); later changes start a new one.
    pub fn take_endpoint(&mut self) -> Option<Endpoint> {
        self.running.clear();
        self.upstreams_in_force.set(None);
        self.endpoint.take()
    }

    /// Certificates for inbound endpoints that serve DoH and were given no
    /// certificate (and there is no `[tls]`): signed by the local CA.
    fn generate_certificates(&mut self, config: &mut EndpointConfig) -> Result<(), EndpointError> {
        config.runtime.generated_tls.clear();
        if config.tls.is_some() {
            return Ok(());
        }
        for endpoint in &config.inbound_endpoints {
            let needs_doh = Protocols::from_list(&endpoint.protocols, Direction::Inbound)
                .is_ok_and(|protocols| protocols.has_https());
            if !needs_doh || endpoint.tls_cert.is_some() || endpoint.tls_key.is_some() {
                continue;
            }
            let ca = match &mut self.ca {
                Some(ca) => ca,
                None => {
                    let ca = LocalCa::open_or_create(&self.files_dir.join("tls"))?;
                    (self.report)(Report::CertificateAuthority(ca.ca_file()));
                    self.ca.insert(ca)
                }
            };
            let addresses: Vec<_> = endpoint.addresses.iter().flat_map(crate::model::EndpointAddress::ips).collect();
            let files = ca.endpoint_certificate(&endpoint.id, &addresses, &config.region)?;
            config.runtime.generated_tls.insert(endpoint.id.clone(), files);
        }
        Ok(())
    }

    /// The directories ARN query-log destinations write into.
    fn make_log_directories(&self, config: &EndpointConfig) -> Result<(), EndpointError> {
        for log in config.query_logging.iter().filter(|log| log.destination.starts_with("arn:")) {
            let Ok((_, relative)) = crate::destinations::arn_file(&log.destination) else { continue };
            if let Some(parent) = self.files_dir.join(relative).parent() {
                std::fs::create_dir_all(parent).map_err(|error| EndpointError::Store {
                    message: format!("cannot create {}: {error}", parent.display()),
                })?;
            }
        }
        Ok(())
    }

    /// Put `next` in force. This is the one place listeners change: today
    /// through [`Endpoint::reload`], which restarts the server when the
    /// listeners differ (keeping the ports of port-0 listeners).
    async fn switch(&mut self, next: Arc<EndpointConfig>) -> Result<(), EndpointError> {
        let switched = match &mut self.endpoint {
            Some(endpoint) => endpoint.reload_shared(next).await.map(|change| self.last = Some(change)),
            None => Endpoint::start_shared(next).await.map(|endpoint| self.endpoint = Some(endpoint)),
        };
        // A failed restart starts the previous configuration again: its groups are in force.
        self.upstreams_in_force.set(self.endpoint.as_ref());
        switched
    }

    fn report_listeners(&mut self) {
        let Some(endpoint) = &self.endpoint else { return };
        let listeners = endpoint.listeners();
        let now: BTreeSet<(String, SocketAddr)> =
            listeners.iter().map(|listener| (listener.id.clone(), listener.address)).collect();
        for listener in &listeners {
            if !self.running.contains(&(listener.id.clone(), listener.address)) {
                (self.report)(Report::Listening(listener.clone()));
            }
        }
        for (id, address) in self.running.difference(&now) {
            (self.report)(Report::Stopped { id: id.clone(), address: *address });
        }
        self.running = now;
    }
}

impl Runtime for EndpointRuntime {
    fn prepare(&mut self, config: &mut EndpointConfig) -> Result<(), EndpointError> {
        config.runtime.files_dir = Some(self.files_dir.clone());
        config.runtime.zone_cache = Some(self.zones.clone());
        config.runtime.transfers = Some(self.transfers.clone());
        config.runtime.expired_zones = self.expired.lock().unwrap_or_else(PoisonError::into_inner).clone();
        config.runtime.skip_routes = true;
        config.runtime.lists_may_be_unavailable = self.endpoint.is_some();
        config.runtime.upstreams_in_force = self.endpoint.as_ref().map(|endpoint| {
            let deployment = endpoint.deployment();
            (deployment.groups.clone(), deployment.upstreams.clone())
        });
        if let Some(endpoint) = &self.endpoint {
            crate::transfer_out::bump_serials(endpoint.config(), config);
        }
        config.transfers_out()?;
        self.generate_certificates(config)?;
        self.make_log_directories(config)
    }

    async fn apply(&mut self, config: Arc<EndpointConfig>) -> Result<(), EndpointError> {
        self.switch(config.clone()).await?;
        self.report_listeners();
        self.given_out.sync(&config, &self.transfers, &config.runtime.expired_zones);
        // Forget zones that are gone.
        let live: std::collections::HashSet<&str> =
            config.private_hosted_zones.iter().chain(&config.public_hosted_zones).map(|zone| zone.zone_id()).collect();
        self.zones.lock().unwrap_or_else(PoisonError::into_inner).retain(|id, _| live.contains(id.as_str()));
        Ok(())
    }

    fn affected_by(&self, kind: crate::control::Kind) -> bool {
        // Subnets, security groups and public zones change nothing the endpoint serves.
        !matches!(
            kind,
            crate::control::Kind::Subnet
                | crate::control::Kind::SecurityGroup
                | crate::control::Kind::PublicHostedZone
                | crate::control::Kind::Change
        )
    }

    fn resolver_address(&self, vpc: &str) -> Option<SocketAddr> {
        let role = crate::compile::ListenerRole::VpcResolver { vpc: vpc.to_string() };
        self.endpoint.as_ref()?.addresses(&role, signpost_server::Transport::Udp).first().copied()
    }
}
