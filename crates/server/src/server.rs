//! Building, starting, reloading and stopping a server; the embedding API.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use signpost_rules::{RuleSet, Transport};
use signpost_upstream::Upstreams;
use signpost_wire::{NameBuf, RecordType};
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminExtension};
use crate::cache::CacheStats;
use crate::config::{AdminConfig, ListenerConfig, QueryLogConfig, ServerConfig};
use crate::error::BoxError;
use crate::hook::QueryHandler;
use crate::kernel::UdpSockets;
use crate::limits::RateLimiter;
use crate::listener::{self, BoundListener, Running, Runtime};
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, State};
use crate::querylog::{JsonLines, QueryLog, QueryLogFormat, Trace};
use crate::tcp::StreamLimits;
use crate::test_layer::TestLayer;
use crate::{Error, handover, tcp};

/// Rebuilds rules and upstreams from their source (config files), for
/// SIGHUP and the admin `/reload` route. An error keeps the old ones
/// serving. It runs on a blocking thread (`spawn_blocking`), so it may read
/// files, load TLS roots and resolve names.
pub type Reloader = Arc<dyn Fn() -> Result<State, BoxError> + Send + Sync>;

/// Like [`Reloader`], and also returns the server settings the source now
/// holds, so a reload can say which of them changed: those need a restart.
pub type ConfigReloader = Arc<dyn Fn() -> Result<(State, ServerConfig), BoxError> + Send + Sync>;

/// The sections of a server configuration a reload cannot change in place.
const RESTART_SECTIONS: [&str; 7] = ["listeners", "cache", "query_log", "limits", "edns", "admin", "dnstap"];

fn section(config: &ServerConfig, name: &str) -> serde_json::Value {
    let value = match name {
        "listeners" => serde_json::to_value(&config.listeners),
        "cache" => serde_json::to_value(&config.cache),
        "query_log" => serde_json::to_value(&config.query_log),
        "limits" => serde_json::to_value(&config.limits),
        "edns" => serde_json::to_value(&config.edns),
        "dnstap" => serde_json::to_value(&config.dnstap),
        _ => serde_json::to_value(&config.admin),
    };
    value.unwrap_or(serde_json::Value::Null)
}

/// The sections of `next` that differ from `running`.
fn changed_sections(running: &ServerConfig, next: &ServerConfig) -> Vec<&'static str> {
    RESTART_SECTIONS.into_iter().filter(|name| section(running, name) != section(next, name)).collect()
}

/// Entry point of the embedding API.
///
/// ```no_run
/// # async fn run() -> Result<(), signpost_server::Error> {
/// use signpost_server::{ListenerConfig, Transport, Server};
///
/// let server = Server::builder()
///     .listener(ListenerConfig::new(Transport::Udp, "127.0.0.1:0".parse().unwrap()))
///     .start()
///     .await?;
/// let address = server.udp_addrs()[0];
/// // ... point a client at `address` ...
/// server.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Server;

impl Server {
    /// A builder with no listeners, no rules (everything forwarded to the
    /// default group) and no upstreams (everything forwarded fails).
    ///
    /// Defaults a test author should know: the answer cache is **on**
    /// (`ServerConfig::cache.enabled`), so a test asserting that an
    /// upstream saw every query turns it off; each UDP listener runs one
    /// worker per CPU core; the allow-list admits loopback and private
    /// networks; nothing is recorded without a [`TestLayer`]. Dropping the
    /// last [`ServerHandle`] stops the server, so a test that panics does
    /// not leak one. For tests, `signpost-testkit`'s `FakeDns` starts one
    /// with the test defaults in a few lines (docs/testing.md).
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

/// Collects listeners, rules, upstreams and options.
#[derive(Default)]
pub struct ServerBuilder {
    config: ServerConfig,
    rules: Option<Arc<RuleSet>>,
    upstreams: Option<Arc<Upstreams>>,
    validator: Option<Arc<signpost_dnssec::Validator>>,
    validation_scope: crate::ValidationScope,
    extension: Option<Arc<dyn AdminExtension>>,
    reloader: Option<Reloader>,
    config_reloader: Option<ConfigReloader>,
    query_logs: Vec<QueryLogConfig>,
    log_format: Option<Arc<dyn QueryLogFormat>>,
    test_layer: Option<TestLayer>,
    handler: Option<Arc<dyn QueryHandler>>,
}

impl ServerBuilder {
    /// Replace the whole configuration (listeners, cache, limits, logs...).
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Add a listener.
    pub fn listener(mut self, listener: ListenerConfig) -> Self {
        self.config.listeners.push(listener);
        self
    }

    /// Listen for UDP and TCP on `address` (with port 0, both get the same free port).
    pub fn udp_and_tcp(self, address: SocketAddr) -> Self {
        self.listener(ListenerConfig::new(Transport::Udp, address))
            .listener(ListenerConfig::new(Transport::Tcp, address))
    }

    /// The rule set.
    pub fn rules(mut self, rules: RuleSet) -> Self {
        self.rules = Some(Arc::new(rules));
        self
    }

    /// The upstream groups.
    pub fn upstreams(mut self, upstreams: Upstreams) -> Self {
        self.upstreams = Some(Arc::new(upstreams));
        self
    }

    /// Rules, upstreams and validator already shared (as a reload would swap them in).
    pub fn state(mut self, state: State) -> Self {
        self.rules = Some(state.rules);
        self.upstreams = Some(state.upstreams);
        self.validator = state.validator;
        self.validation_scope = state.validation_scope;
        self
    }

    /// Validate forwarded answers with DNSSEC (off unless given).
    pub fn validator(mut self, validator: Arc<signpost_dnssec::Validator>) -> Self {
        self.validator = Some(validator);
        self
    }

    /// More query logs besides `config.query_log`, each with its own
    /// destination and possibly limited to some views.
    pub fn query_logs(mut self, logs: Vec<QueryLogConfig>) -> Self {
        self.query_logs = logs;
        self
    }

    /// How query-log lines are written: [`JsonLines`] (the neutral
    /// format) unless an application gives its own, to add or rename fields.
    pub fn query_log_format(mut self, format: Arc<dyn QueryLogFormat>) -> Self {
        self.log_format = Some(format);
        self
    }

    /// An application's handler, asked before the rules for every query that
    /// passes the ACL and the rate limits (zone transfers, NOTIFY): see
    /// [`QueryHandler`].
    pub fn query_handler(mut self, handler: Arc<dyn QueryHandler>) -> Self {
        self.handler = Some(handler);
        self
    }

    /// Add fault injection and query recording (for tests): the server
    /// runs `layer` on every query, and the test keeps a clone to inject
    /// faults and read what was recorded. Without it, neither costs more
    /// than a branch.
    pub fn test_layer(mut self, layer: TestLayer) -> Self {
        self.test_layer = Some(layer);
        self
    }

    /// Serve the admin/metrics HTTP API.
    pub fn admin(mut self, admin: AdminConfig) -> Self {
        self.config.admin = Some(admin);
        self
    }

    /// Extra admin routes.
    pub fn admin_extension(mut self, extension: Arc<dyn AdminExtension>) -> Self {
        self.extension = Some(extension);
        self
    }

    /// How to rebuild rules and upstreams on reload.
    pub fn reloader(mut self, reloader: Reloader) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// How to rebuild rules and upstreams on reload, with the server settings
    /// now in the source: settings that differ from the running ones are
    /// reported (and logged as warnings) as needing a restart. Takes the
    /// place of [`ServerBuilder::reloader`].
    pub fn config_reloader(mut self, reloader: ConfigReloader) -> Self {
        self.config_reloader = Some(reloader);
        self
    }

    /// Bind every listener and start serving. Must run inside a tokio runtime.
    pub async fn start(self) -> Result<ServerHandle, Error> {
        let metrics = Arc::new(Metrics::default());
        let logs: Vec<_> = std::iter::once(&self.config.query_log)
            .chain(&self.query_logs)
            .filter(|log| log.enabled)
            .cloned()
            .collect();
        let log = if logs.is_empty() {
            None
        } else {
            let format = self.log_format.unwrap_or_else(|| Arc::new(JsonLines));
            Some(QueryLog::start_all(&logs, format, metrics.clone()).map_err(Error::QueryLog)?)
        };
        let rules = self.rules.unwrap_or_default();
        let upstreams = self.upstreams.unwrap_or_default();
        let config = self.config;
        let mut state = State::new(rules, upstreams);
        state.validator = self.validator;
        // The dnstap writer stops after the listeners and the queries in
        // flight, so their last answers are still sent.
        let dnstap_stop = CancellationToken::new();
        let dnstap = match &config.dnstap {
            Some(dnstap) => crate::dnstap::Tap::start(dnstap, metrics.clone(), dnstap_stop.clone())?,
            None => None,
        };
        state.validation_scope = self.validation_scope;
        let mut pipeline = Pipeline::new(config.clone(), state, metrics, log, self.test_layer);
        pipeline.handler = self.handler;
        let mut dnstap_writer = None;
        if let Some((tap, writer)) = dnstap {
            pipeline.dnstap = Some(tap);
            dnstap_writer = Some(writer);
        }
        let pipeline = Arc::new(pipeline);
        let runtime = Runtime {
            pipeline,
            limits: StreamLimits {
                max_connections: config.limits.tcp_max_connections,
                max_connections_per_client: config.limits.tcp_max_connections_per_client,
                max_in_flight: config.limits.tcp_max_in_flight,
                idle_timeout: Duration::from_secs(config.limits.tcp_idle_timeout_secs.max(1)),
                doh_max_streams: config.limits.doh_max_streams,
                doh_max_header_bytes: config.limits.doh_max_header_bytes,
            },
            groups: config.limits.groups.iter().map(|(name, qps)| (name.clone(), RateLimiter::single(*qps))).collect(),
            stop: CancellationToken::new(),
        };
        // Everything that can be checked is checked before anything is bound.
        let mut tls = Vec::with_capacity(config.listeners.len());
        for listener in &config.listeners {
            tls.push(listener::prepare(listener, &runtime.groups).await?);
        }
        let sockets = listener::bind_all(&config.listeners)?;
        let mut running = Vec::with_capacity(sockets.len());
        for ((listener, sockets), tls) in config.listeners.iter().zip(sockets).zip(tls) {
            match listener::serve(&runtime, listener, sockets, tls) {
                Ok(started) => running.push(started),
                Err(error) => {
                    runtime.stop.cancel();
                    dnstap_stop.cancel();
                    return Err(error);
                }
            }
        }
        let stop = runtime.stop.clone();
        let inner = Arc::new(Inner {
            runtime,
            listeners: Mutex::new(running),
            admin: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            dnstap_writer: Mutex::new(dnstap_writer),
            dnstap_stop,
            sources: Mutex::new(ReloadSources { reloader: self.reloader, config_reloader: self.config_reloader }),
            config: Mutex::new(config.clone()),
        });
        let handle = ServerHandle { inner };
        if let Some(admin) = &config.admin {
            let socket = tcp::bind(admin.address, "admin")?;
            let local = socket.local_addr().map_err(|source| Error::Io { what: "reading a bound address", source })?;
            let offer = handover::offer(std::os::fd::AsFd::as_fd(&socket));
            let socket = tcp::into_tokio(socket)?;
            if let Ok(mut slot) = handle.inner.admin.lock() {
                *slot = Some(local);
            }
            // The admin task holds a weak handle: dropping the last handle
            // still stops the server.
            let serving = admin::serve(socket, handle.downgrade(), self.extension, stop.child_token());
            // Offered to a successor as long as it is served.
            let task = tokio::spawn(async move {
                let _offer = offer;
                serving.await;
            });
            if let Ok(mut tasks) = handle.inner.tasks.lock() {
                tasks.push(task);
            }
        }
        Ok(handle)
    }
}

/// Run an application's reloader on a blocking thread: it reads files,
/// loads TLS roots and resolves names.
async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BoxError> + Send + 'static,
) -> Result<T, Error> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|source| Error::Reload { source }),
        Err(failed) => Err(Error::Reload { source: Box::new(failed) }),
    }
}

/// A server's reload source: at most one of the two is used, the
/// [`ConfigReloader`] first.
#[derive(Clone, Default)]
struct ReloadSources {
    reloader: Option<Reloader>,
    config_reloader: Option<ConfigReloader>,
}

struct Inner {
    runtime: Runtime,
    /// The listeners being served, in the order they were configured or added.
    listeners: Mutex<Vec<Running>>,
    admin: Mutex<Option<SocketAddr>>,
    /// Tasks besides the listeners' (the admin listener).
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The dnstap writer, when configured, and what stops it.
    dnstap_writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    dnstap_stop: CancellationToken,
    /// Where reloads come from; settable on a running server.
    sources: Mutex<ReloadSources>,
    /// The settings running: those the server started with (reloads leave
    /// them in force), with listeners added or removed since.
    config: Mutex<ServerConfig>,
}

impl Drop for Inner {
    /// The last handle gone: every listener stops (queries in flight are
    /// not waited for; [`ServerHandle::shutdown`] waits).
    fn drop(&mut self) {
        self.runtime.stop.cancel();
        self.dnstap_stop.cancel();
    }
}

/// A running server. Cheap to clone; `shutdown` stops it, and so does
/// dropping the last clone (a test that panics does not leak its server).
#[derive(Clone)]
pub struct ServerHandle {
    inner: Arc<Inner>,
}

/// A handle that does not keep the server running (the admin listener's).
#[derive(Clone)]
pub(crate) struct WeakHandle(Weak<Inner>);

impl WeakHandle {
    pub(crate) fn upgrade(&self) -> Option<ServerHandle> {
        self.0.upgrade().map(|inner| ServerHandle { inner })
    }
}

impl ServerHandle {
    fn downgrade(&self) -> WeakHandle {
        WeakHandle(Arc::downgrade(&self.inner))
    }

    fn pipeline(&self) -> &Arc<Pipeline> {
        &self.inner.runtime.pipeline
    }

    /// Every listener as bound, in the order configured or added.
    pub fn listeners(&self) -> Vec<BoundListener> {
        let listeners = self.inner.listeners.lock();
        listeners.map(|listeners| listeners.iter().map(|running| running.bound.clone()).collect()).unwrap_or_default()
    }

    fn addresses(&self, transport: Transport) -> Vec<SocketAddr> {
        self.listeners().into_iter().filter(|l| l.transport == transport).map(|l| l.address).collect()
    }

    /// The first UDP listener's address: the one to ask in the common
    /// case of a server with one UDP listener.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addrs().first().copied()
    }

    /// The first TCP listener's address (with `udp_and_tcp` on port 0,
    /// the same port as [`ServerHandle::udp_addr`]).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addrs().first().copied()
    }

    /// Bound UDP addresses.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.addresses(Transport::Udp)
    }

    /// Bound TCP addresses.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.addresses(Transport::Tcp)
    }

    /// Bound DoT addresses.
    pub fn dot_addrs(&self) -> Vec<SocketAddr> {
        self.addresses(Transport::Dot)
    }

    /// Bound DoH addresses.
    pub fn doh_addrs(&self) -> Vec<SocketAddr> {
        self.addresses(Transport::Doh)
    }

    /// Start serving one more listener while the others keep answering.
    /// Its id (as configured, else `transport@address:port`) must not be
    /// one a running listener has; its rate-limit group must exist. TLS
    /// files are read on a blocking thread.
    pub async fn add_listener(&self, listener: ListenerConfig) -> Result<BoundListener, Error> {
        let tls = listener::prepare(&listener, &self.inner.runtime.groups).await?;
        let sockets = listener::bind_one(&listener)?;
        let started = listener::serve(&self.inner.runtime, &listener, sockets, tls)?;
        let bound = started.bound.clone();
        // The id is checked once bound, as a default id names the real port.
        let refused = match self.inner.listeners.lock() {
            Ok(mut listeners) if !listeners.iter().any(|running| running.bound.id == bound.id) => {
                listeners.push(started);
                None
            }
            Ok(_) => Some((started, Error::DuplicateListener { id: bound.id.clone() })),
            Err(_) => Some((
                started,
                Error::Listener { listener: bound.id.clone(), reason: "the listener table is poisoned".into() },
            )),
        };
        if let Some((started, error)) = refused {
            started.stop().await;
            return Err(error);
        }
        if let Ok(mut config) = self.inner.config.lock() {
            config.listeners.push(listener);
        }
        Ok(bound)
    }

    /// Stop serving the listener with this id while the others keep
    /// answering; its sockets are closed when its tasks end (at once for
    /// new queries; answers in flight on it are dropped).
    pub async fn remove_listener(&self, id: &str) -> Result<BoundListener, Error> {
        let removed = {
            let Ok(mut listeners) = self.inner.listeners.lock() else {
                return Err(Error::UnknownListener { id: id.to_string() });
            };
            let Some(position) = listeners.iter().position(|running| running.bound.id == id) else {
                return Err(Error::UnknownListener { id: id.to_string() });
            };
            listeners.remove(position)
        };
        if let Ok(mut config) = self.inner.config.lock()
            && let Some(position) = config.listeners.iter().position(|listener| *listener == removed.config)
        {
            config.listeners.remove(position);
        }
        let bound = removed.bound.clone();
        removed.stop().await;
        Ok(bound)
    }

    /// The admin/metrics address, if serving.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.inner.admin.lock().ok().and_then(|slot| *slot)
    }

    /// The rule set in force.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.pipeline().state.load().rules.clone()
    }

    /// The upstreams in force.
    pub fn upstreams(&self) -> Arc<Upstreams> {
        self.pipeline().state.load().upstreams.clone()
    }

    /// The DNSSEC validator in force, if answers are validated (a
    /// [`reload`](Self::reload) that changes only rules or upstreams keeps it).
    pub fn validator(&self) -> Option<Arc<signpost_dnssec::Validator>> {
        self.pipeline().state.load().validator.clone()
    }

    /// Swap in new rules and upstreams atomically; queries already running
    /// finish with the old ones. The cache is emptied.
    pub fn reload(&self, state: State) {
        self.pipeline().state.store(Arc::new(state));
        self.pipeline().cache.clear();
    }

    /// Empty the answer cache (Unbound's `flush`).
    pub fn clear_cache(&self) {
        self.pipeline().cache.clear();
    }

    /// Swap in new rules, keeping the upstreams and the validator.
    pub fn set_rules(&self, rules: RuleSet) {
        let running = self.pipeline().state.load();
        let mut state = State::new(Arc::new(rules), running.upstreams.clone());
        state.validator = running.validator.clone();
        state.validation_scope = running.validation_scope.clone();
        self.reload(state);
    }

    /// Swap in new rules and upstreams, as [`ServerHandle::reload`], and
    /// compare `config` with the settings running: the sections that differ
    /// (`listeners`, `cache`, `query_log`, `limits`, `edns`, `admin`) keep
    /// their running values until a restart. They are returned and logged
    /// as a warning; the reload itself goes ahead.
    pub fn reload_with_config(&self, state: State, config: &ServerConfig) -> Vec<&'static str> {
        self.reload(state);
        let changed = match self.inner.config.lock() {
            Ok(running) => changed_sections(&running, config),
            Err(_) => Vec::new(),
        };
        if !changed.is_empty() {
            tracing::warn!(
                sections = ?changed,
                "rules and upstreams reloaded; changes to {} take effect on restart, not on reload",
                changed.join(", ")
            );
        }
        changed
    }

    /// Rebuild from the configured source (the [`Reloader`] or
    /// [`ConfigReloader`], run on a blocking thread) and swap it in. Returns
    /// the sections of the server settings that changed and need a restart
    /// (always none with a plain [`Reloader`], which gives no settings). On
    /// error the running configuration stays and the error is returned.
    pub async fn reload_from_source(&self) -> Result<Vec<&'static str>, Error> {
        let outcome = self.reload_from_source_uncounted().await;
        self.metrics().config_reload(outcome.is_ok());
        outcome
    }

    async fn reload_from_source_uncounted(&self) -> Result<Vec<&'static str>, Error> {
        let sources = self.inner.sources.lock().map(|sources| sources.clone()).unwrap_or_default();
        if let Some(reloader) = sources.config_reloader {
            let (state, config) = run_blocking(move || reloader()).await?;
            return Ok(self.reload_with_config(state, &config));
        }
        let Some(reloader) = sources.reloader else { return Err(Error::NoReloadSource) };
        let state = run_blocking(move || reloader()).await?;
        self.reload(state);
        Ok(Vec::new())
    }

    /// Set (or replace) the reload source of a running server, as
    /// [`ServerBuilder::reloader`] does before it starts: the next
    /// [`ServerHandle::reload_from_source`], SIGHUP or admin `/reload` uses
    /// it. It takes the place of any [`ConfigReloader`].
    pub fn set_reloader(&self, reloader: Reloader) {
        if let Ok(mut sources) = self.inner.sources.lock() {
            *sources = ReloadSources { reloader: Some(reloader), config_reloader: None };
        }
    }

    /// Set (or replace) the reload source of a running server with one that
    /// also gives server settings, as [`ServerBuilder::config_reloader`].
    pub fn set_config_reloader(&self, reloader: ConfigReloader) {
        if let Ok(mut sources) = self.inner.sources.lock() {
            *sources = ReloadSources { reloader: None, config_reloader: Some(reloader) };
        }
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.pipeline().metrics
    }

    /// Cache counters.
    pub fn cache_stats(&self) -> &CacheStats {
        self.pipeline().cache.stats()
    }

    /// Metrics in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let pipeline = self.pipeline();
        let listeners: Vec<(String, UdpSockets)> = self
            .inner
            .listeners
            .lock()
            .map(|listeners| {
                listeners
                    .iter()
                    .filter_map(|running| Some((running.bound.id.clone(), running.udp_sockets.clone()?)))
                    .collect()
            })
            .unwrap_or_default();
        pipeline.metrics.render(pipeline.cache.len(), &pipeline.state.load().upstreams, &listeners)
    }

    /// The test layer, when the server was built with one.
    pub fn test_layer(&self) -> Option<&TestLayer> {
        self.pipeline().layer.as_ref()
    }

    /// Run a question through the pipeline as if `client` had asked over
    /// `transport` on the first listener of that transport (else the first
    /// listener; every client is allowed when there is none), and return
    /// why the answer is what it is.
    pub async fn explain(&self, name: &NameBuf, qtype: RecordType, client: SocketAddr, transport: Transport) -> Trace {
        let listener = self.inner.listeners.lock().ok().and_then(|listeners| {
            let chosen = listeners.iter().find(|running| running.bound.transport == transport).or(listeners.first());
            chosen.map(|running| running.context.clone())
        });
        self.pipeline().explain(name, qtype, client, transport, listener.as_deref()).await
    }

    /// Stop accepting, let queries in flight finish (up to 5 s), and stop.
    pub async fn shutdown(self) {
        self.inner.runtime.stop.cancel();
        let in_flight = &self.pipeline().in_flight;
        in_flight.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), in_flight.wait()).await;
        let listeners = self.inner.listeners.lock().map(|mut listeners| std::mem::take(&mut *listeners));
        for listener in listeners.unwrap_or_default() {
            listener.stop().await;
        }
        let tasks = self.inner.tasks.lock().map(|mut tasks| std::mem::take(&mut *tasks)).unwrap_or_default();
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
        // Last: the answers above are queued; the writer sends them, STOP, and waits for FINISH.
        self.inner.dnstap_stop.cancel();
        let writer = self.inner.dnstap_writer.lock().ok().and_then(|mut writer| writer.take());
        if let Some(writer) = writer {
            let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
        }
    }

    /// For binaries: reload on SIGHUP, shut down gracefully on SIGTERM or
    /// Ctrl-C, hand the sockets over to a new process on SIGUSR2
    /// ([`signals`](crate::signals)). Each reload's outcome is reported
    /// through `on_reload`.
    pub async fn run_until_signalled(self, on_reload: impl Fn(Result<(), Error>)) -> std::io::Result<()> {
        let mut signals = crate::signals::Signals::install()?;
        let (server, on_reload) = (&self, &on_reload);
        let stop =
            signals.serve(None, |_| async move { on_reload(server.reload_from_source().await.map(|_| ())) }).await;
        if let crate::signals::Stop::HandedOver(successor) = stop {
            tracing::info!("{successor}");
        }
        self.shutdown().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::tests::udp_listener;

    fn state() -> State {
        State::new(Arc::new(RuleSet::default()), Arc::new(Upstreams::default()))
    }

    #[test]
    fn only_changed_sections_are_named() {
        let running = ServerConfig { listeners: vec![udp_listener()], ..ServerConfig::default() };
        assert!(changed_sections(&running, &running.clone()).is_empty());
        let mut next = running.clone();
        next.listeners.push(ListenerConfig::new(Transport::Tcp, SocketAddr::from(([127, 0, 0, 1], 0))));
        next.cache.max_entries += 1;
        next.limits.per_client_qps = Some(10);
        next.admin = Some(AdminConfig { address: SocketAddr::from(([127, 0, 0, 1], 0)) });
        assert_eq!(changed_sections(&running, &next), ["listeners", "cache", "limits", "admin"]);
        let mut next = running.clone();
        next.query_log.enabled = !next.query_log.enabled;
        assert_eq!(changed_sections(&running, &next), ["query_log"]);
    }

    #[tokio::test]
    async fn a_reload_reports_settings_that_need_a_restart_and_still_swaps_rules() {
        let config = ServerConfig { listeners: vec![udp_listener()], ..ServerConfig::default() };
        let next = Arc::new(Mutex::new(config.clone()));
        let source = next.clone();
        let server = Server::builder()
            .config(config)
            .config_reloader(Arc::new(move || {
                let config = source.lock().map_err(|_| "poisoned")?.clone();
                Ok((state(), config))
            }))
            .start()
            .await
            .unwrap();
        assert_eq!(server.reload_from_source().await.unwrap(), Vec::<&str>::new(), "nothing changed");

        let rules_before = server.rules();
        if let Ok(mut config) = next.lock() {
            config.cache.max_entries += 1;
            config.limits.tcp_max_connections += 1;
        }
        assert_eq!(server.reload_from_source().await.unwrap(), ["cache", "limits"]);
        assert!(!Arc::ptr_eq(&rules_before, &server.rules()), "the rules were swapped all the same");
        // The running settings stay: a second reload reports the same.
        assert_eq!(server.reload_from_source().await.unwrap(), ["cache", "limits"]);
        assert_eq!(server.listeners().len(), 1, "listeners are not touched");
        server.shutdown().await;
    }

    /// Thousands of servers in one process, each asking for UDP and TCP on
    /// port 0: every one gets a port of its own, the same for both.
    #[tokio::test]
    async fn port_zero_servers_never_share_a_port() {
        let mut servers = Vec::new();
        let mut ports = std::collections::HashSet::new();
        for start in 0..2_000 {
            let mut udp = udp_listener();
            udp.workers = Some(2);
            let server = Server::builder()
                .listener(udp)
                .listener(ListenerConfig::new(Transport::Tcp, SocketAddr::from(([127, 0, 0, 1], 0))))
                .start()
                .await
                .unwrap();
            let port = server.udp_addrs()[0].port();
            assert_eq!(server.tcp_addrs()[0].port(), port, "start {start}");
            assert!(ports.insert(port), "start {start} was given port {port}, which an earlier server holds");
            servers.push(server);
        }
        for server in servers {
            server.shutdown().await;
        }
    }

    #[tokio::test]
    async fn a_running_server_takes_a_reload_source_and_a_new_one_replaces_it() {
        let server = Server::builder().listener(udp_listener()).start().await.unwrap();
        assert!(matches!(server.reload_from_source().await, Err(Error::NoReloadSource)));
        let mut changed = ServerConfig { listeners: vec![udp_listener()], ..ServerConfig::default() };
        changed.cache.max_entries += 1;
        server.set_config_reloader(Arc::new(move || Ok((state(), changed.clone()))));
        assert_eq!(server.reload_from_source().await.unwrap(), ["cache"]);
        server.set_reloader(Arc::new(|| Err("the source is broken".into())));
        let rules = server.rules();
        assert!(matches!(server.reload_from_source().await, Err(Error::Reload { .. })));
        assert!(Arc::ptr_eq(&rules, &server.rules()), "a failed reload keeps the rules");
        server.set_reloader(Arc::new(|| Ok(state())));
        assert_eq!(server.reload_from_source().await.unwrap(), Vec::<&str>::new(), "the plain reloader replaced both");
        assert_eq!(server.udp_addr(), server.udp_addrs().first().copied());
        assert_eq!(server.tcp_addr(), None);
        server.shutdown().await;
    }

    #[tokio::test]
    async fn without_a_source_reload_fails_and_a_plain_reloader_reports_nothing() {
        let server = Server::builder().listener(udp_listener()).start().await.unwrap();
        assert!(matches!(server.reload_from_source().await, Err(Error::NoReloadSource)));
        server.shutdown().await;
        let server =
            Server::builder().listener(udp_listener()).reloader(Arc::new(|| Ok(state()))).start().await.unwrap();
        assert_eq!(server.reload_from_source().await.unwrap(), Vec::<&str>::new());
        server.shutdown().await;
    }
}
