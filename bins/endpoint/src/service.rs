//! The whole program behind the binary: a model from a TOML file and/or a
//! state directory, the control plane over it, the running endpoint, and
//! the AWS API listener. [`runtime::run`](crate::runtime::run) runs it
//! until a signal stops it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::api;
use crate::compile::ListenerRole;
use crate::control::{ControlError, ControlPlane};
use crate::error::EndpointError;
use crate::live::{EndpointRuntime, Report};
use crate::model::{EndpointConfig, HostPort};
use crate::running::{EndpointListener, Reloaded};
use crate::state::{StateDir, StateError};
use signpost_server::{Probes, Readiness};

/// How the program was asked to run.
#[derive(Clone, Debug, Default)]
pub struct ServiceOptions {
    /// The TOML file: settings, and resources for an empty state.
    pub config: Option<PathBuf>,
    /// Where the AWS API listens.
    pub api: Option<SocketAddr>,
    /// The state directory.
    pub state: Option<PathBuf>,
    /// Port of VPC resolvers and Do53 inbound endpoints (overrides `resolver_port`).
    pub dns_port: Option<u16>,
    /// DoH port of inbound endpoints (overrides `doh_port`).
    pub doh_port: Option<u16>,
    /// Servers of the recursive default (override `[recursive]`).
    pub recursive: Vec<HostPort>,
    /// How long new resources report CREATING (overrides `[api] status_delay_ms`).
    pub status_delay_ms: Option<u64>,
    /// Lift every AWS quota (`[quotas] enabled = false`).
    pub no_quotas: bool,
    /// CA file outbound endpoints trust for DoH targets (`outbound_ca_file`).
    pub outbound_ca: Option<PathBuf>,
    /// Whether `/ready` waits for upstreams (overrides `[ready] require_upstream`).
    pub ready_require_upstream: Option<bool>,
}

/// Why the program could not start or reload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The configuration or the model.
    #[error(transparent)]
    Model(#[from] EndpointError),
    /// The state directory or the control plane.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The state directory.
    #[error(transparent)]
    State(#[from] StateError),
    /// The `/health` or `/ready` listener cannot be bound.
    #[error(transparent)]
    Probes(#[from] signpost_server::Error),
    /// The API address cannot be bound.
    #[error("cannot listen on {address} for the AWS API: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A directory for runtime files cannot be made.
    #[error("cannot create {}: {source}", path.display())]
    Files {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `export --from` could not read a running endpoint's model.
    #[error("cannot read the model from {url}: {source}")]
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        source: std::io::Error,
    },
    /// SIGHUP in API mode: the model changes through the API.
    #[error("there is no configuration file to reload (the model changes through the AWS API)")]
    NothingToReload,
    /// The signal handlers cannot be installed.
    #[error("cannot catch signals: {0}")]
    Signals(#[source] std::io::Error),
    /// `--watch-config` where the file is not the whole model.
    #[error("--watch-config needs --config FILE without --api and --state")]
    WatchWithoutFile,
}

/// The running program.
pub struct Service {
    control: Arc<ControlPlane<EndpointRuntime>>,
    config_file: Option<PathBuf>,
    options: ServiceOptions,
    api_address: Option<SocketAddr>,
    api_stop: Option<tokio::sync::oneshot::Sender<()>>,
    api_task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    temporary_files: Option<PathBuf>,
    probes: Probes,
    secondaries: Option<crate::secondary::Secondaries>,
}

/// The readiness check passed once the model is live (its listeners bound).
pub const LISTENERS_CHECK: &str = "listeners";

/// The settings and resources to start from: the file's, or the defaults,
/// with the command line's overrides.
pub fn initial_config(options: &ServiceOptions) -> Result<EndpointConfig, EndpointError> {
    let mut config = match &options.config {
        Some(file) => EndpointConfig::load(file)?,
        None => EndpointConfig::default(),
    };
    apply_overrides(&mut config, options);
    Ok(config)
}

fn apply_overrides(config: &mut EndpointConfig, options: &ServiceOptions) {
    if let Some(port) = options.dns_port {
        config.resolver_port = port;
    }
    if let Some(port) = options.doh_port {
        config.doh_port = port;
    }
    if !options.recursive.is_empty() {
        config.recursive.servers = options.recursive.clone();
        config.recursive.resolv_conf = None;
    }
    if let Some(delay) = options.status_delay_ms {
        config.api.status_delay_ms = delay;
    }
    if options.no_quotas {
        config.quotas.enabled = false;
    }
    if let Some(file) = &options.outbound_ca {
        config.outbound_ca_file = Some(file.clone());
    }
    if let (Some(require), Some(ready)) = (options.ready_require_upstream, config.ready.as_mut()) {
        ready.require_upstream = require;
    }
}

impl Service {
    /// Start: open the state directory (if any), build the model, make it
    /// live, then open the API listener (if any). `report` hears of every
    /// listener as it starts and stops, now and later.
    pub async fn start(
        options: ServiceOptions,
        report: impl FnMut(Report) + Send + 'static,
    ) -> Result<Self, ServiceError> {
        let config = initial_config(&options)?;
        // The probes answer from the start: /ready says what is still missing.
        let readiness = Readiness::new();
        readiness.require(LISTENERS_CHECK);
        let mut probes = Probes::start(config.health.as_ref(), config.ready.as_ref(), readiness.clone()).await?;
        let store = options.state.as_ref().map(StateDir::open).transpose()?;
        let (files_dir, temporary_files) = match &options.state {
            Some(dir) => (dir.clone(), None),
            None => {
                let dir = std::env::temp_dir().join(format!("signpost-endpoint-{}", std::process::id()));
                std::fs::create_dir_all(&dir).map_err(|source| ServiceError::Files { path: dir.clone(), source })?;
                (dir.clone(), Some(dir))
            }
        };
        let runtime = EndpointRuntime::new(files_dir, report);
        let upstreams_in_force = runtime.upstreams_in_force();
        let control = Arc::new(ControlPlane::start(config, store, runtime).await?);
        // With [ready] require_upstream (the default), /ready also waits for
        // an answering server in every group queries go to (the recursive
        // default, each associated FORWARD rule's targets), followed through
        // reloads and API changes, and fails while one has none.
        probes.check_upstreams_in_use(move || upstreams_in_force.get());
        let mut service = Self {
            control,
            config_file: options.config.clone(),
            options: options.clone(),
            api_address: None,
            api_stop: None,
            api_task: None,
            temporary_files,
            probes,
            secondaries: None,
        };
        service.secondaries = Some(crate::secondary::Secondaries::start(service.control.clone()).await);
        readiness.mark_ready(LISTENERS_CHECK);
        if let Some(address) = options.api {
            let listener = api::bind(address).await.map_err(|source| ServiceError::Bind { address, source })?;
            service.api_address = listener.local_addr().ok();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let router = api::router(service.control.clone());
            service.api_task = Some(tokio::spawn(api::serve(listener, router, async move {
                let _ = stopped.await;
            })));
            service.api_stop = Some(stop);
        }
        Ok(service)
    }

    /// Where the AWS API listens (the real port when 0 was asked for).
    pub fn api_address(&self) -> Option<SocketAddr> {
        self.api_address
    }

    /// `/health` and `/ready`, when configured.
    pub fn probes(&self) -> &Probes {
        &self.probes
    }

    /// Report `version` (of the configuration file) as the one in force:
    /// in the server's `signpost_config_version` metric.
    pub async fn set_config_version(&self, version: &str) {
        let version = version.to_string();
        self.control
            .with_runtime(move |runtime| {
                if let Some(endpoint) = runtime.endpoint() {
                    endpoint.server().metrics().set_config_version(&version);
                }
            })
            .await;
    }

    /// Count a reload of the file, successful or not, in the server's metrics.
    async fn count_reload(&self, success: bool) {
        self.control
            .with_runtime(move |runtime| {
                if let Some(endpoint) = runtime.endpoint() {
                    endpoint.server().metrics().config_reload(success);
                }
            })
            .await;
    }

    /// The control plane (the model, for tests and embedding).
    pub fn control(&self) -> &Arc<ControlPlane<EndpointRuntime>> {
        &self.control
    }

    /// The listeners running now.
    pub async fn listeners(&self) -> Vec<EndpointListener> {
        self.control
            .with_runtime(|runtime| runtime.endpoint().map(|endpoint| endpoint.listeners()).unwrap_or_default())
            .await
    }

    /// The admin (metrics) address, when configured.
    pub async fn admin_address(&self) -> Option<SocketAddr> {
        self.control
            .with_runtime(|runtime| runtime.endpoint().and_then(|endpoint| endpoint.server().admin_addr()))
            .await
    }

    /// Read the configuration file again and put it in force (SIGHUP),
    /// with the reload checks; only without a state directory or API,
    /// where the file is the whole model.
    pub async fn reload_file(&self) -> Result<(PathBuf, Option<Reloaded>), ServiceError> {
        let Some(file) =
            self.config_file.clone().filter(|_| self.options.api.is_none() && self.options.state.is_none())
        else {
            return Err(ServiceError::NothingToReload);
        };
        let replaced = async {
            let mut next = EndpointConfig::load(&file)?;
            apply_overrides(&mut next, &self.options);
            self.control.replace(next).await?;
            Ok::<_, ServiceError>(())
        };
        let outcome = replaced.await;
        self.count_reload(outcome.is_ok()).await;
        outcome?;
        let outcome = self.control.with_runtime(EndpointRuntime::last_change).await;
        Ok((file, outcome))
    }

    /// Stop the API, then the endpoint.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.api_stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.api_task.take() {
            let _ = task.await;
        }
        if let Some(secondaries) = self.secondaries.take() {
            secondaries.stop().await;
        }
        if let Some(endpoint) = self.control.with_runtime_mut(EndpointRuntime::take_endpoint).await {
            endpoint.shutdown().await;
        }
        if let Some(dir) = self.temporary_files.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        self.probes.stop().await;
    }
}

/// The model of a state directory (with the file's settings) as TOML, for
/// `export`: it loads back to the same model.
pub fn export_state(state: &Path, options: &ServiceOptions) -> Result<String, ServiceError> {
    let mut config = initial_config(options)?;
    let mut store = StateDir::open(state)?;
    let stored = store.load()?;
    // An empty state starts from the file's resources; a stored one replaces them.
    if !stored.is_empty() {
        crate::control::resources::restore(&mut config, &stored).map_err(|bad| StateError::Document {
            path: state.join(crate::state::DATABASE_FILE),
            key: bad.key,
            message: bad.message,
        })?;
    }
    Ok(export(&config))
}

/// The export of a running endpoint, from its API (`http://ADDR`).
pub fn fetch_export(url: &str) -> Result<String, ServiceError> {
    use std::io::{Read as _, Write as _};
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let failure = |source: std::io::Error| ServiceError::Fetch { url: url.to_string(), source };
    let mut stream = std::net::TcpStream::connect(address).map_err(failure)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).map_err(failure)?;
    write!(stream, "GET {} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n", api::EXPORT_PATH)
        .map_err(failure)?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(failure)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response.as_str(), ""));
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or_default();
        return Err(failure(std::io::Error::other(format!("{status}: {body}"))));
    }
    Ok(body.to_string())
}

/// A model as TOML.
pub fn export(config: &EndpointConfig) -> String {
    let mut text = String::from("# signpost-endpoint export: the model as TOML (loads back to the same model)\n");
    text.push_str(
        &toml::to_string_pretty(config).unwrap_or_else(|error| format!("# cannot write the model: {error}\n")),
    );
    text
}

/// `listening ID TRANSPORT ADDRESS PROTOCOL ROLE [URL]`.
pub fn listener_line(listener: &EndpointListener) -> String {
    let role = match &listener.role {
        ListenerRole::VpcResolver { vpc } => format!("VPC resolver of {vpc}"),
        ListenerRole::InboundEndpoint { endpoint, vpc } => format!("inbound endpoint {endpoint} of {vpc}"),
    };
    let url = listener.url.as_ref().map(|url| format!(" {url}")).unwrap_or_default();
    format!(
        "listening {} {} {} {} {role}{url}",
        listener.id,
        listener.transport.as_str(),
        listener.address,
        listener.protocol
    )
}
