//! The AWS API of signpost-endpoint's control plane, mounted on the redirect
//! proxy (`SIGNPOST_REDIRECT_API`): hosted zones created and changed through
//! Route 53's REST API (`aws route53 ...`, boto3, Terraform) are answered
//! over DNS as soon as the call returns, to every client — LocalStack's DNS
//! server has no notion of VPCs, and neither has this one. The same control
//! plane keeps its state in `SIGNPOST_REDIRECT_STATE` (so an API call that
//! returned success survives a crash) and answers the EC2 VPC calls a
//! private zone needs; Route 53 Resolver resources are stored but change
//! nothing here (that is signpost-endpoint's job).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use signpost_endpoint::control::{ControlPlane, Kind, Runtime};
use signpost_endpoint::state::StateDir;
use signpost_endpoint::{EndpointConfig, EndpointError, api};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::route53::HostedZone;
use crate::server::HostedZoneFeed;
use crate::{HostedZoneWarning, RedirectError};

/// TTL of records a hosted zone holds without one (Route 53 always gives one;
/// this is for zones seeded from files).
const DEFAULT_TTL: u32 = 300;

/// Publishes the model's hosted zones (public and private alike) to the proxy.
pub struct HostedZonesRuntime {
    feed: HostedZoneFeed,
    warnings: Vec<HostedZoneWarning>,
}

impl HostedZonesRuntime {
    /// A runtime publishing to `feed`.
    pub fn new(feed: HostedZoneFeed) -> Self {
        Self { feed, warnings: Vec::new() }
    }

    /// What the last change could not use (alias targets the proxy cannot
    /// follow, records outside their zone), without failing it.
    pub fn warnings(&self) -> &[HostedZoneWarning] {
        &self.warnings
    }
}

/// The hosted zones of `config` as the proxy serves them.
pub fn hosted_zones(config: &EndpointConfig) -> Result<Vec<HostedZone>, RedirectError> {
    config
        .public_hosted_zones
        .iter()
        .chain(&config.private_hosted_zones)
        .map(|zone| {
            HostedZone::from_presentation(zone.zone_id(), &zone.name, &zone.records, zone.ttl.unwrap_or(DEFAULT_TTL))
        })
        .collect()
}

fn application_error(error: RedirectError) -> EndpointError {
    EndpointError::Application { application: "signpost-redirect", source: Box::new(error) }
}

impl Runtime for HostedZonesRuntime {
    async fn apply(&mut self, config: Arc<EndpointConfig>) -> Result<(), EndpointError> {
        let zones = hosted_zones(&config).map_err(application_error)?;
        self.warnings = self.feed.publish(zones).map_err(application_error)?;
        Ok(())
    }

    fn affected_by(&self, kind: Kind) -> bool {
        matches!(kind, Kind::PublicHostedZone | Kind::PrivateHostedZone)
    }
}

/// The API listener and its control plane, running beside the proxy.
pub struct Route53Api {
    control: Arc<ControlPlane<HostedZonesRuntime>>,
    address: SocketAddr,
    state: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for Route53Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route53Api").field("address", &self.address).field("state", &self.state).finish()
    }
}

impl Route53Api {
    /// Open the state directory (when given: its zones are served at once),
    /// then bind `address` and serve the API there.
    pub async fn start(
        feed: HostedZoneFeed,
        address: SocketAddr,
        state: Option<PathBuf>,
    ) -> Result<Self, RedirectError> {
        let store = match &state {
            Some(dir) => Some(StateDir::open(dir).map_err(|source| RedirectError::Route53Api {
                what: "open the state directory",
                source: Box::new(source),
            })?),
            None => None,
        };
        let runtime = HostedZonesRuntime::new(feed);
        let control = ControlPlane::start(EndpointConfig::default(), store, runtime).await.map_err(|source| {
            RedirectError::Route53Api { what: "start the control plane", source: Box::new(source) }
        })?;
        let control = Arc::new(control);
        let listener = api::bind(address).await.map_err(|source| RedirectError::ApiBind { address, source })?;
        let address = listener.local_addr().map_err(|source| RedirectError::ApiBind { address, source })?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(api::serve(listener, api::router(control.clone()), async move {
            let _ = stopped.await;
        }));
        Ok(Self { control, address, state, stop: Some(stop), task: Some(task) })
    }

    /// Where the API listens (the real port when 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The state directory, when the API keeps its state on disk.
    pub fn state(&self) -> Option<&PathBuf> {
        self.state.as_ref()
    }

    /// The control plane (the model, for tests and embedding).
    pub fn control(&self) -> &Arc<ControlPlane<HostedZonesRuntime>> {
        &self.control
    }

    /// Stop serving the API (in-flight calls finish first).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}
