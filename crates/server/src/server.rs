//! Building, starting, reloading and stopping a server; the embedding API.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use signpost_rules::{RuleSet, Transport};
use signpost_upstream::Upstreams;
use signpost_wire::{NameBuf, RecordType};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::admin::{self, AdminExtension};
use crate::cache::CacheStats;
use crate::config::{AdminConfig, ListenerConfig, QueryLogConfig, ServerConfig, default_allow_list};
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::pipeline::{ListenerContext, Pipeline, State};
use crate::querylog::{JsonLines, QueryLog, QueryLogFormat, Trace};
use crate::tcp::StreamLimits;
use crate::test_layer::TestLayer;
use crate::{Error, doh, tcp, tls, udp};

/// Rebuilds rules and upstreams from their source (config files), for
/// SIGHUP and the admin `/reload` route. An error keeps the old ones serving.
pub type Reloader = Arc<dyn Fn() -> Result<State, String> + Send + Sync>;

/// Like [`Reloader`], and also returns the server settings the source now
/// holds, so a reload can say which of them changed: those need a restart.
pub(crate) type ConfigReloader = Arc<dyn Fn() -> Result<(State, ServerConfig), String> + Send + Sync>;

/// The sections of a server configuration a reload cannot change in place.
const RESTART_SECTIONS: [&str; 6] = ["listeners", "cache", "query_log", "limits", "edns", "admin"];

fn section(config: &ServerConfig, name: &str) -> serde_json::Value {
    let value = match name {
        "listeners" => serde_json::to_value(&config.listeners),
        "cache" => serde_json::to_value(&config.cache),
        "query_log" => serde_json::to_value(&config.query_log),
        "limits" => serde_json::to_value(&config.limits),
        "edns" => serde_json::to_value(&config.edns),
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
    extension: Option<Arc<dyn AdminExtension>>,
    reloader: Option<Reloader>,
    config_reloader: Option<ConfigReloader>,
    query_logs: Vec<QueryLogConfig>,
    log_format: Option<Arc<dyn QueryLogFormat>>,
    test_layer: Option<TestLayer>,
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

    /// Rules and upstreams already shared (as a reload would swap them in).
    pub fn state(mut self, state: State) -> Self {
        self.rules = Some(state.rules);
        self.upstreams = Some(state.upstreams);
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
    /// now in the source (`Arc<dyn Fn() -> Result<(State, ServerConfig),
    /// String> + Send + Sync>`): settings that differ from the running ones are
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
            {
                let format = self.log_format.unwrap_or_else(|| Arc::new(JsonLines));
                Some(QueryLog::start_all(&logs, format, metrics.clone()).map_err(Error::QueryLog)?)
            }
        };
        let rules = match self.rules {
            Some(rules) => rules,
            None => Arc::new(RuleSet::default()),
        };
        let upstreams = match self.upstreams {
            Some(upstreams) => upstreams,
            None => Arc::new(Upstreams::default()),
        };
        let config = self.config.clone();
        let pipeline =
            Arc::new(Pipeline::new(config.clone(), State { rules, upstreams }, metrics, log, self.test_layer));
        let (stop, stop_receiver) = watch::channel(false);
        let limits = StreamLimits {
            max_connections: config.limits.tcp_max_connections,
            max_in_flight: config.limits.tcp_max_in_flight,
            idle_timeout: Duration::from_secs(config.limits.tcp_idle_timeout_secs.max(1)),
        };
        // Every group a listener joins must exist before anything is bound.
        for listener in &config.listeners {
            if let Some(group) = &listener.limit_group
                && !config.limits.groups.contains_key(group)
            {
                return Err(Error::UnknownLimitGroup { listener: listener.id_or_default(), group: group.clone() });
            }
        }
        let groups: HashMap<&str, RateLimiter> =
            config.limits.groups.iter().map(|(name, qps)| (name.as_str(), RateLimiter::single(*qps))).collect();
        let mut bound = Vec::new();
        let mut tasks = Vec::new();
        let mut sockets = bind_all(&config.listeners)?;
        for (listener, sockets) in config.listeners.iter().zip(sockets.drain(..)) {
            let id = listener.id_or_default();
            let context = Arc::new(ListenerContext {
                id: Arc::from(id.as_str()),
                transport: listener.transport,
                allow: listener.allow.clone().unwrap_or_else(default_allow_list),
                max_qps: listener.max_qps.map(RateLimiter::single),
                group_limit: match &listener.limit_group {
                    Some(group) => Some(
                        groups
                            .get(group.as_str())
                            .cloned()
                            .ok_or_else(|| Error::UnknownLimitGroup { listener: id.clone(), group: group.clone() })?,
                    ),
                    None => None,
                },
                bound: (!listener.address.is_unspecified()).then_some(listener.address),
                client_rate_limit: listener.client_rate_limit,
            });
            let local = sockets.local_addr()?;
            match (listener.transport, sockets) {
                (Transport::Udp, Sockets::Udp(sockets)) => {
                    tasks.extend(udp::spawn_workers(sockets, context, pipeline.clone(), stop_receiver.clone())?);
                }
                (Transport::Tcp | Transport::Dot, Sockets::Stream(socket)) => {
                    let tls = match listener.transport {
                        Transport::Dot => Some(tls_acceptor(listener, &id, &[b"dot"])?.ok_or_else(|| {
                            Error::Listener { listener: id.clone(), reason: "DoT needs tls_cert and tls_key".into() }
                        })?),
                        _ => None,
                    };
                    let socket = tcp::into_tokio(socket)?;
                    tasks.push(tokio::spawn(tcp::serve(
                        socket,
                        tls,
                        context,
                        pipeline.clone(),
                        limits,
                        stop_receiver.clone(),
                    )));
                }
                (Transport::Doh, Sockets::Stream(socket)) => {
                    let tls = tls_acceptor(listener, &id, &[b"h2", b"http/1.1"])?;
                    if tls.is_none() && !listener.plain_http {
                        return Err(Error::Listener {
                            listener: id,
                            reason:
                                "DoH needs tls_cert and tls_key, or plain_http = true behind a TLS-terminating proxy"
                                    .into(),
                        });
                    }
                    let socket = tcp::into_tokio(socket)?;
                    tasks.push(tokio::spawn(doh::serve(
                        socket,
                        tls,
                        context,
                        pipeline.clone(),
                        listener.doh_path.clone(),
                        stop_receiver.clone(),
                        limits.idle_timeout,
                    )));
                }
                _ => {
                    return Err(Error::Listener { listener: id, reason: "bound with the wrong kind of socket".into() });
                }
            }
            bound.push(BoundListener { id, transport: listener.transport, address: local });
        }
        let inner = Arc::new(Inner {
            pipeline,
            listeners: bound,
            admin: Mutex::new(None),
            stop,
            tasks: Mutex::new(tasks),
            reloader: self.reloader,
            config_reloader: self.config_reloader,
            config: config.clone(),
        });
        let handle = ServerHandle { inner };
        if let Some(admin) = &config.admin {
            let socket = tcp::bind(admin.address, "admin")?;
            let local = socket.local_addr().map_err(|source| Error::Io { what: "reading a bound address", source })?;
            let socket = tcp::into_tokio(socket)?;
            if let Ok(mut slot) = handle.inner.admin.lock() {
                *slot = Some(local);
            }
            let task = tokio::spawn(admin::serve(socket, handle.clone(), self.extension, stop_receiver.clone()));
            if let Ok(mut tasks) = handle.inner.tasks.lock() {
                tasks.push(task);
            }
        }
        Ok(handle)
    }
}

fn tls_acceptor(listener: &ListenerConfig, id: &str, alpn: &[&[u8]]) -> Result<Option<TlsAcceptor>, Error> {
    match (&listener.tls_cert, &listener.tls_key) {
        (Some(cert), Some(key)) => {
            Ok(Some(TlsAcceptor::from(tls::server_config(id, cert, key, alpn, listener.tls_fips)?)))
        }
        (None, None) => Ok(None),
        _ => Err(Error::Listener { listener: id.to_string(), reason: "tls_cert and tls_key go together".into() }),
    }
}

/// The sockets of one listener, bound but not yet served.
enum Sockets {
    /// A UDP listener's sockets, one per worker.
    Udp(Vec<std::net::UdpSocket>),
    /// A TCP, DoT or DoH listening socket.
    Stream(std::net::TcpListener),
}

impl Sockets {
    fn local_addr(&self) -> Result<SocketAddr, Error> {
        match self {
            Self::Udp(sockets) => udp::local_addr(sockets),
            Self::Stream(socket) => {
                socket.local_addr().map_err(|source| Error::Io { what: "reading a bound address", source })
            }
        }
    }
}

/// How many ports a port-0 UDP and TCP pair tries before giving up.
const PAIR_ATTEMPTS: usize = 64;

fn is_udp(listener: &ListenerConfig) -> bool {
    listener.transport == Transport::Udp
}

/// For each listener, the later port-0 listener of the other kind (UDP or
/// stream) on the same address that it shares a port with: a test asking
/// for UDP and TCP on port 0 gets both on one port.
fn port_zero_pairs(listeners: &[ListenerConfig]) -> Vec<Option<usize>> {
    let mut pairs = vec![None; listeners.len()];
    let mut taken = vec![false; listeners.len()];
    for (index, listener) in listeners.iter().enumerate() {
        if listener.port != 0 || taken[index] {
            continue;
        }
        let partner = listeners.iter().enumerate().skip(index + 1).find(|(other_index, other)| {
            !taken[*other_index]
                && other.port == 0
                && other.address == listener.address
                && is_udp(other) != is_udp(listener)
        });
        if let Some((other_index, _)) = partner {
            taken[index] = true;
            taken[other_index] = true;
            pairs[index] = Some(other_index);
        }
    }
    pairs
}

/// Bind every listener's sockets, in order.
fn bind_all(listeners: &[ListenerConfig]) -> Result<Vec<Sockets>, Error> {
    let pairs = port_zero_pairs(listeners);
    let mut bound: Vec<Option<Sockets>> = listeners.iter().map(|_| None).collect();
    for (index, listener) in listeners.iter().enumerate() {
        if bound[index].is_some() {
            continue;
        }
        match pairs[index].and_then(|partner| Some((partner, listeners.get(partner)?))) {
            Some((partner, other)) => {
                let (udp, stream) = if is_udp(listener) { (listener, other) } else { (other, listener) };
                let (udp_sockets, stream_socket) =
                    bind_pair(udp, |address| tcp::bind(address, stream.transport.as_str()))?;
                let (mine, theirs) = if is_udp(listener) {
                    (Sockets::Udp(udp_sockets), Sockets::Stream(stream_socket))
                } else {
                    (Sockets::Stream(stream_socket), Sockets::Udp(udp_sockets))
                };
                bound[index] = Some(mine);
                bound[partner] = Some(theirs);
            }
            None => bound[index] = Some(bind_one(listener)?),
        }
    }
    Ok(bound.into_iter().flatten().collect())
}

fn udp_workers(listener: &ListenerConfig) -> usize {
    listener.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
}

fn bind_one(listener: &ListenerConfig) -> Result<Sockets, Error> {
    let address = listener.socket_address();
    Ok(match listener.transport {
        Transport::Udp => Sockets::Udp(udp::bind_sockets(address, udp_workers(listener))?),
        transport => Sockets::Stream(tcp::bind(address, transport.as_str())?),
    })
}

/// Bind a port-0 UDP listener, then a stream listener on the port the UDP
/// one was given; when that port is taken for TCP, both start again on a
/// new one (at most [`PAIR_ATTEMPTS`] times).
fn bind_pair(
    udp: &ListenerConfig,
    mut bind_stream: impl FnMut(SocketAddr) -> Result<std::net::TcpListener, Error>,
) -> Result<(Vec<std::net::UdpSocket>, std::net::TcpListener), Error> {
    // Ports found taken stay held until the end, so the kernel cannot
    // offer one of them again.
    let mut taken = Vec::new();
    loop {
        let sockets = udp::bind_sockets(udp.socket_address(), udp_workers(udp))?;
        match bind_stream(udp::local_addr(&sockets)?) {
            Ok(stream) => return Ok((sockets, stream)),
            Err(Error::Bind { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse && taken.len() + 1 < PAIR_ATTEMPTS =>
            {
                taken.push(sockets);
            }
            Err(error) => return Err(error),
        }
    }
}

/// A listener as bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundListener {
    /// Its id.
    pub id: String,
    /// Its transport.
    pub transport: Transport,
    /// The address actually bound (the real port when 0 was asked for).
    pub address: SocketAddr,
}

struct Inner {
    pipeline: Arc<Pipeline>,
    listeners: Vec<BoundListener>,
    admin: Mutex<Option<SocketAddr>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    reloader: Option<Reloader>,
    config_reloader: Option<ConfigReloader>,
    /// The settings the server started with; reloads leave them in force.
    config: ServerConfig,
}

/// A running server. Cheap to clone; `shutdown` stops it.
#[derive(Clone)]
pub struct ServerHandle {
    inner: Arc<Inner>,
}

impl ServerHandle {
    /// Every listener as bound.
    pub fn listeners(&self) -> &[BoundListener] {
        &self.inner.listeners
    }

    fn addresses(&self, transport: Transport) -> Vec<SocketAddr> {
        self.inner.listeners.iter().filter(|l| l.transport == transport).map(|l| l.address).collect()
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

    /// The admin/metrics address, if serving.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.inner.admin.lock().ok().and_then(|slot| *slot)
    }

    /// The rule set in force.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.inner.pipeline.state.load().rules.clone()
    }

    /// The upstreams in force.
    pub fn upstreams(&self) -> Arc<Upstreams> {
        self.inner.pipeline.state.load().upstreams.clone()
    }

    /// Swap in new rules and upstreams atomically; queries already running
    /// finish with the old ones. The cache is emptied.
    pub fn reload(&self, state: State) {
        self.inner.pipeline.state.store(Arc::new(state));
        self.inner.pipeline.cache.clear();
    }

    /// Swap in new rules, keeping the upstreams.
    pub fn set_rules(&self, rules: RuleSet) {
        let upstreams = self.upstreams();
        self.reload(State { rules: Arc::new(rules), upstreams });
    }

    /// Swap in new rules and upstreams, as [`ServerHandle::reload`], and
    /// compare `config` with the settings running: the sections that differ
    /// (`listeners`, `cache`, `query_log`, `limits`, `edns`, `admin`) keep
    /// their running values until a restart. They are returned and logged
    /// as a warning; the reload itself goes ahead.
    pub fn reload_with_config(&self, state: State, config: &ServerConfig) -> Vec<&'static str> {
        self.reload(state);
        let changed = changed_sections(&self.inner.config, config);
        if !changed.is_empty() {
            tracing::warn!(
                sections = ?changed,
                "rules and upstreams reloaded; changes to {} take effect on restart, not on reload",
                changed.join(", ")
            );
        }
        changed
    }

    /// Rebuild from the configured source (the `Reloader`); on error the
    /// old configuration keeps serving and the error is returned.
    pub fn reload_from_source(&self) -> Result<(), String> {
        self.reload_from_source_reporting().map(|_| ())
    }

    /// Like [`ServerHandle::reload_from_source`], returning the sections of
    /// the server settings that changed and need a restart (always none
    /// with a plain [`Reloader`], which gives no settings).
    pub fn reload_from_source_reporting(&self) -> Result<Vec<&'static str>, String> {
        if let Some(reloader) = &self.inner.config_reloader {
            let (state, config) = reloader()?;
            return Ok(self.reload_with_config(state, &config));
        }
        let Some(reloader) = &self.inner.reloader else {
            return Err("this server has no configuration source to reload from".into());
        };
        let state = reloader()?;
        self.reload(state);
        Ok(Vec::new())
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.pipeline.metrics
    }

    /// Cache counters.
    pub fn cache_stats(&self) -> &CacheStats {
        self.inner.pipeline.cache.stats()
    }

    /// Metrics in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let pipeline = &self.inner.pipeline;
        pipeline.metrics.render(pipeline.cache.stats(), pipeline.cache.len())
    }

    /// The test layer, when the server was built with one.
    pub fn test_layer(&self) -> Option<&TestLayer> {
        self.inner.pipeline.layer.as_ref()
    }

    /// Run a question through the pipeline as if `client` had asked over
    /// `transport`, and return why the answer is what it is.
    pub async fn explain(&self, name: &NameBuf, qtype: RecordType, client: SocketAddr, transport: Transport) -> Trace {
        self.inner.pipeline.explain(name, qtype, client, transport).await
    }

    /// Stop accepting, let queries in flight finish (up to 5 s), and stop.
    pub async fn shutdown(self) {
        let _ = self.inner.stop.send(true);
        let in_flight = &self.inner.pipeline.in_flight;
        in_flight.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), in_flight.wait()).await;
        let tasks = self.inner.tasks.lock().map(|mut tasks| std::mem::take(&mut *tasks)).unwrap_or_default();
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
    }

    /// For binaries: reload on SIGHUP, shut down gracefully on SIGTERM or
    /// Ctrl-C. Reload failures are reported through `on_reload`.
    pub async fn run_until_signalled(self, on_reload: impl Fn(Result<(), String>)) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = signal(SignalKind::hangup())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                _ = hangup.recv() => on_reload(self.reload_from_source()),
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
            }
        }
        self.shutdown().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_listener() -> ListenerConfig {
        let mut listener = ListenerConfig::new(Transport::Udp, SocketAddr::from(([127, 0, 0, 1], 0)));
        listener.workers = Some(1);
        listener
    }

    fn state() -> State {
        State { rules: Arc::new(RuleSet::default()), upstreams: Arc::new(Upstreams::default()) }
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
                let config = source.lock().map_err(|_| "poisoned".to_string())?.clone();
                Ok((state(), config))
            }))
            .start()
            .await
            .unwrap();
        assert_eq!(server.reload_from_source_reporting(), Ok(Vec::new()), "nothing changed");

        let rules_before = server.rules();
        if let Ok(mut config) = next.lock() {
            config.cache.max_entries += 1;
            config.limits.tcp_max_connections += 1;
        }
        assert_eq!(server.reload_from_source_reporting(), Ok(vec!["cache", "limits"]));
        assert!(!Arc::ptr_eq(&rules_before, &server.rules()), "the rules were swapped all the same");
        // The running settings stay: a second reload reports the same.
        assert_eq!(server.reload_from_source_reporting(), Ok(vec!["cache", "limits"]));
        assert_eq!(server.reload_from_source(), Ok(()));
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

    #[test]
    fn a_pair_whose_tcp_port_is_taken_moves_to_another_port() {
        let udp = udp_listener();
        let mut refused = Vec::new();
        let (sockets, stream) = bind_pair(&udp, |address| {
            if refused.len() < 3 {
                refused.push(address);
                return Err(Error::bind("tcp", address, std::io::ErrorKind::AddrInUse.into()));
            }
            tcp::bind(address, "tcp")
        })
        .unwrap();
        let port = udp::local_addr(&sockets).unwrap().port();
        assert_eq!(stream.local_addr().unwrap().port(), port);
        assert_eq!(refused.len(), 3);
        assert!(refused.iter().all(|address| address.port() != port), "{refused:?} then {port}");
        // Other errors are not retried.
        let error =
            bind_pair(&udp, |address| Err(Error::bind("tcp", address, std::io::ErrorKind::PermissionDenied.into())));
        assert!(matches!(error, Err(Error::Bind { .. })));
    }

    #[tokio::test]
    async fn without_a_source_reload_fails_and_a_plain_reloader_reports_nothing() {
        let server = Server::builder().listener(udp_listener()).start().await.unwrap();
        assert!(server.reload_from_source_reporting().is_err());
        server.shutdown().await;
        let server =
            Server::builder().listener(udp_listener()).reloader(Arc::new(|| Ok(state()))).start().await.unwrap();
        assert_eq!(server.reload_from_source_reporting(), Ok(Vec::new()));
        server.shutdown().await;
    }
}
