//! Starting and running the redirect proxy: upstreams chosen and verified,
//! listeners bound (0.0.0.0 falling back to 127.0.0.1 as LocalStack does),
//! the start-up lines, and the handles to change it while it runs.

use core::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use signpost_rules::RuleSetBuilder;
use signpost_server::config::default_allow_list;
use signpost_server::handover;
use signpost_server::signals::{Signals, Stop};
use signpost_server::{AdminExtension, LogDestination, QueryLogConfig, ServerConfig, Transport};
use signpost_server::{Server, ServerHandle, State};
use signpost_upstream::{GroupConfig, Upstreams};

use crate::route53::{HostedZone, HostedZoneWarning};
use crate::route53_api::Route53Api;
use crate::runtime::{AliasSpec, RecordFilter, RecordSpec, Redirector};
use crate::settings::BindAddresses;
use crate::upstreams::{UpstreamChoice, keep_verified_first, verify_upstreams};
use crate::{ADMIN_PREFIX, RedirectError, RedirectSettings};

/// How to re-read the settings, base rules and extra upstream groups on
/// reload (SIGHUP, `POST /reload`).
/// It runs on a blocking thread; its error is the server's
/// [`Error::Reload`](signpost_server::Error::Reload) source.
pub type RedirectReloader = Arc<
    dyn Fn() -> Result<(RedirectSettings, RuleSetBuilder, Vec<GroupConfig>), signpost_server::BoxError> + Send + Sync,
>;

/// Starts a [`RedirectServer`].
pub struct RedirectServerBuilder {
    settings: RedirectSettings,
    config: ServerConfig,
    base: RuleSetBuilder,
    groups: Vec<GroupConfig>,
    reloader: Option<RedirectReloader>,
}

/// Why the server listens where it does, when that is not DNS_ADDRESS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindFallback {
    /// What could not be bound.
    pub wanted: SocketAddr,
    /// The operating system's reason.
    pub reason: String,
}

impl RedirectServerBuilder {
    /// Server options (extra listeners such as DoH, cache, query log,
    /// limits, admin); the DNS_ADDRESS/DNS_PORT listeners come first.
    pub fn server_config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// More to answer besides the redirect: zones, host tables, other rules.
    pub fn rules(mut self, base: RuleSetBuilder) -> Self {
        self.base = base;
        self
    }

    /// More upstream groups, for rules in the base that forward elsewhere.
    pub fn upstream_groups(mut self, groups: Vec<GroupConfig>) -> Self {
        self.groups = groups;
        self
    }

    /// How to reload.
    pub fn reloader(mut self, reloader: RedirectReloader) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// Choose and verify the upstreams, bind and serve. Must run inside a
    /// tokio runtime. When DNS_ADDRESS is 0.0.0.0 and its port is taken on
    /// some address, 127.0.0.1 is bound instead ([`RedirectServer::fallback`] says why).
    pub async fn start(self) -> Result<RedirectServer, RedirectError> {
        let mut server = self.start_dns().await?;
        if let Some(address) = self.settings.api {
            match Route53Api::start(server.hosted_zone_feed(), address, self.settings.state.clone()).await {
                Ok(api) => server.route53_api = Some(api),
                Err(error) => {
                    server.shutdown().await;
                    return Err(error);
                }
            }
        }
        Ok(server)
    }

    /// For binaries: start, become `user` if given, write the start-up
    /// lines to `out`, tell a predecessor handing over (SIGUSR2) that this
    /// process serves, then serve until SIGTERM or SIGINT, reloading on
    /// SIGHUP ([`RedirectServer::run_until`]).
    pub async fn run(self, user: Option<&str>, out: &mut (dyn Write + Send)) -> Result<(), RedirectError> {
        if !self.settings.local_name_patterns.is_empty() {
            tracing::info!(
                "DNS_LOCAL_NAME_PATTERNS is set: only names matching it are redirected, as LocalStack's \
                 documentation describes (LocalStack's current code treats it as a deprecated alias of \
                 DNS_NAME_PATTERNS_TO_RESOLVE_UPSTREAM; see docs/redirect.md)"
            );
        }
        // Before the start-up lines: a SIGHUP sent as soon as they appear must reload.
        let signals = Signals::install().map_err(RedirectError::Signals)?;
        let server = self.start().await?;
        let mut lines = Vec::new();
        if let Some(user) = user {
            match signpost_server::drop_privileges(user) {
                Ok(account) => lines.push(format!("running as {user} (uid {}, gid {})", account.uid, account.gid)),
                Err(error) => {
                    server.shutdown().await;
                    return Err(error.into());
                }
            }
        }
        handover::close_unclaimed();
        lines.extend(server.startup_lines());
        for line in lines {
            // The caller's stdout going away is no reason to stop serving.
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        if let Err(error) = handover::announce_ready() {
            // The predecessor times out and goes on serving; so does this one.
            tracing::error!("{error}");
        }
        let reloaded = |result: Result<(), signpost_server::Error>| match result {
            Ok(()) => tracing::info!("configuration reloaded"),
            Err(error) => tracing::error!("reload failed, the old configuration keeps serving: {error}"),
        };
        server.run_until(signals, reloaded).await.map_err(RedirectError::Signals)
    }

    async fn start_dns(&self) -> Result<RedirectServer, RedirectError> {
        if self.settings.bind_addresses().is_none() {
            return Err(RedirectError::Disabled);
        }
        let choice = self.settings.upstreams(&self.settings.own_addresses());
        let verified =
            verify_upstreams(choice, &self.settings.verification_domain, self.settings.upstream_timeout).await;
        let redirector = Redirector::new(self.settings.clone(), self.base.clone())?;
        match self.bind(&self.settings, verified.clone(), &redirector).await {
            Err(RedirectError::Server(error)) if self.settings.address.falls_back() => {
                let signpost_server::Error::Bind { source, address, .. } = &*error else {
                    return Err(RedirectError::Server(error));
                };
                if source.kind() != io::ErrorKind::AddrInUse {
                    return Err(RedirectError::Server(error));
                }
                let fallback = BindFallback { wanted: *address, reason: source.to_string() };
                let mut settings = self.settings.clone();
                settings.address = BindAddresses::Addresses(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
                let choice = keep_verified_first(settings.upstreams(&settings.own_addresses()), &verified);
                let mut server = self.bind(&settings, choice, &redirector).await?;
                server.fallback = Some(fallback);
                Ok(server)
            }
            other => other,
        }
    }

    async fn bind(
        &self,
        settings: &RedirectSettings,
        upstream: UpstreamChoice,
        redirector: &Arc<Redirector>,
    ) -> Result<RedirectServer, RedirectError> {
        let mut groups: Vec<GroupConfig> = settings.upstream_group(&upstream).into_iter().collect();
        groups.extend(self.groups.iter().cloned());
        let upstreams = Upstreams::new(groups)?;
        let rules = redirector.rule_set()?;

        let mut config = self.config.clone();
        let mut listeners = settings.listeners();
        let main = listeners.len();
        listeners.append(&mut config.listeners);
        config.listeners = listeners;
        // Let the upstream group's own deadline speak first.
        let deadline = u64::try_from(settings.upstream_total_timeout.as_millis()).unwrap_or(u64::MAX);
        config.limits.query_timeout_ms = config.limits.query_timeout_ms.max(deadline.saturating_add(500));
        let query_log = config.query_log.enabled.then(|| config.query_log.clone());
        let cache = config.cache.enabled;

        let bound: Arc<OnceLock<Vec<SocketAddr>>> = Arc::new(OnceLock::new());
        let current = Arc::new(Mutex::new(upstream.clone()));
        let mut builder = Server::builder()
            .config(config)
            .rules(rules)
            .upstreams(upstreams)
            .admin_extension(redirector.clone() as Arc<dyn AdminExtension>);
        if let Some(reloader) = self.reloader.clone() {
            let redirector = redirector.clone();
            let bound = bound.clone();
            let current = current.clone();
            let listen = settings.address.clone();
            builder = builder.reloader(Arc::new(move || {
                let (mut settings, base, extra_groups) = reloader()?;
                // The sockets stay as they are, so our own addresses do too.
                settings.address = listen.clone();
                let own = bound.get().cloned().unwrap_or_default();
                let mut current = current.lock().unwrap_or_else(PoisonError::into_inner);
                let upstream = keep_verified_first(settings.upstreams(&own), &current);
                let mut groups: Vec<GroupConfig> = settings.upstream_group(&upstream).into_iter().collect();
                groups.extend(extra_groups);
                let upstreams = Upstreams::new(groups)?;
                let rules = redirector.reconfigure(settings, base)?;
                *current = upstream;
                Ok(State::new(Arc::new(rules), Arc::new(upstreams)))
            }));
        }
        let handle = builder.start().await?;
        let _ = bound.set(handle.listeners().iter().map(|listener| listener.address).collect());
        Ok(RedirectServer {
            handle,
            redirector: redirector.clone(),
            upstream,
            main_listeners: main,
            query_log,
            cache,
            fallback: None,
            route53_api: None,
        })
    }
}

/// A running redirect proxy: the server, its [`Redirector`] and where its upstreams came from.
pub struct RedirectServer {
    handle: ServerHandle,
    redirector: Arc<Redirector>,
    upstream: UpstreamChoice,
    main_listeners: usize,
    query_log: Option<QueryLogConfig>,
    /// Whether forwarded answers are cached (in memory).
    cache: bool,
    fallback: Option<BindFallback>,
    route53_api: Option<Route53Api>,
}

impl fmt::Debug for RedirectServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedirectServer").field("upstream", &self.upstream).finish_non_exhaustive()
    }
}

/// Where the Route 53 API publishes its hosted zones: every committed
/// change hands over the whole set and the answers follow at once.
#[derive(Clone)]
pub struct HostedZoneFeed {
    redirector: Arc<Redirector>,
    server: ServerHandle,
}

impl fmt::Debug for HostedZoneFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostedZoneFeed").finish_non_exhaustive()
    }
}

impl HostedZoneFeed {
    /// Serve exactly these hosted zones from now on.
    pub fn publish(&self, zones: Vec<HostedZone>) -> Result<Vec<HostedZoneWarning>, RedirectError> {
        self.redirector.set_hosted_zones(&self.server, zones)
    }
}

impl RedirectServer {
    /// A builder for a proxy with these settings.
    pub fn builder(settings: RedirectSettings) -> RedirectServerBuilder {
        RedirectServerBuilder {
            settings,
            config: ServerConfig::default(),
            base: RuleSetBuilder::new(),
            groups: Vec::new(),
            reloader: None,
        }
    }

    /// The server (addresses, metrics, reload, faults...).
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// The redirect rules and their run-time changes.
    pub fn redirector(&self) -> &Arc<Redirector> {
        &self.redirector
    }

    /// The upstream servers and where they came from.
    pub fn upstream(&self) -> &UpstreamChoice {
        &self.upstream
    }

    /// Why DNS_ADDRESS 0.0.0.0 was not bound and 127.0.0.1 was, if so.
    pub fn fallback(&self) -> Option<&BindFallback> {
        self.fallback.as_ref()
    }

    /// The Route 53 API, when `SIGNPOST_REDIRECT_API` asked for it.
    pub fn route53_api(&self) -> Option<&Route53Api> {
        self.route53_api.as_ref()
    }

    /// Where hosted zones are published to be answered over DNS (the
    /// Route 53 API uses it; embedders may too, when no API runs).
    pub fn hosted_zone_feed(&self) -> HostedZoneFeed {
        HostedZoneFeed { redirector: self.redirector.clone(), server: self.handle.clone() }
    }

    /// The bound DNS_ADDRESS/DNS_PORT UDP addresses.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.main_addresses(Transport::Udp)
    }

    /// The bound DNS_ADDRESS/DNS_PORT TCP addresses.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.main_addresses(Transport::Tcp)
    }

    fn main_addresses(&self, transport: Transport) -> Vec<SocketAddr> {
        self.handle
            .listeners()
            .iter()
            .take(self.main_listeners)
            .filter(|listener| listener.transport == transport)
            .map(|listener| listener.address)
            .collect()
    }

    /// What the binary prints on start: `Starting DNS servers (tcp/udp port
    /// 53 on 0.0.0.0)...` for each address (LocalStack's line, with the real
    /// port), the fallback and the access rule when they apply, other
    /// listeners, the upstreams, the redirected domains; the last line is
    /// always the query log's state.
    pub fn startup_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let listeners = self.handle.listeners();
        let main: Vec<_> = listeners.iter().take(self.main_listeners).collect();
        for udp in main.iter().filter(|listener| listener.transport == Transport::Udp) {
            lines.push(format!(
                "Starting DNS servers (tcp/udp port {} on {})...",
                udp.address.port(),
                udp.address.ip()
            ));
        }
        if let Some(fallback) = &self.fallback {
            lines.push(format!(
                "DNS_ADDRESS 0.0.0.0: cannot listen on {} ({}): listening on 127.0.0.1 instead, as LocalStack does; \
                 set DNS_ADDRESS (or DNS_PORT) to choose",
                fallback.wanted, fallback.reason
            ));
        }
        if main.iter().any(|listener| listener.address.ip().is_unspecified()) {
            let networks: Vec<String> = default_allow_list().iter().map(ToString::to_string).collect();
            lines.push(format!(
                "Listening on every address: only clients on loopback and private networks ({}) are answered, \
                 others get REFUSED, so this is not an open resolver",
                networks.join(", ")
            ));
        }
        for other in self.handle.listeners().iter().skip(self.main_listeners) {
            lines.push(format!("Also listening: {} on {}", other.transport.as_str(), other.address));
        }
        lines.push(format!("Upstream DNS servers: {}", self.upstream));
        lines.extend(self.redirector.settings().describe());
        if let Some(admin) = self.handle.admin_addr() {
            lines.push(format!("Admin API on http://{admin} (GET {ADMIN_PREFIX}, /metrics)"));
        }
        if let Some(api) = &self.route53_api {
            let state = match api.state() {
                Some(dir) => format!("state in {}", dir.display()),
                None => "state in memory: set SIGNPOST_REDIRECT_STATE to keep it".to_string(),
            };
            lines.push(format!(
                "Route 53 API on http://{} (aws --endpoint-url http://{}; hosted zones answered over DNS; {state})",
                api.address(),
                api.address()
            ));
        }
        lines.push(match &self.query_log {
            None if self.cache => {
                "Query log: off (forwarded queries are not logged; their answers are cached in memory only)".to_owned()
            }
            None => "Query log: off (forwarded queries are neither logged nor stored)".to_owned(),
            Some(QueryLogConfig { destination, forwarded, .. }) => {
                let what = if *forwarded { "every query" } else { "local answers" };
                match destination {
                    LogDestination::Stdout => format!("Query log: on ({what}, JSON lines on standard output)"),
                    LogDestination::File(path) => format!("Query log: on ({what}, JSON lines in {})", path.display()),
                }
            }
        });
        lines
    }

    /// See [`Redirector::add_host`].
    pub fn add_host(&self, name: &str, addresses: &[IpAddr]) -> Result<(), RedirectError> {
        self.redirector.add_host(&self.handle, name, addresses)
    }

    /// See [`Redirector::delete_host`].
    pub fn delete_host(&self, name: &str) -> Result<(), RedirectError> {
        self.redirector.delete_host(&self.handle, name)
    }

    /// See [`Redirector::add_record`].
    pub fn add_record(&self, record: &RecordSpec) -> Result<(), RedirectError> {
        self.redirector.add_record(&self.handle, record)
    }

    /// See [`Redirector::delete_records`].
    pub fn delete_records(&self, filter: &RecordFilter) -> Result<usize, RedirectError> {
        self.redirector.delete_records(&self.handle, filter)
    }

    /// See [`Redirector::add_alias`].
    pub fn add_alias(&self, name: &str, target: &str) -> Result<(), RedirectError> {
        self.redirector.add_alias(&self.handle, name, target)
    }

    /// See [`Redirector::add_alias_with`].
    pub fn add_alias_with(&self, alias: AliasSpec) -> Result<(), RedirectError> {
        self.redirector.add_alias_with(&self.handle, alias)
    }

    /// See [`Redirector::delete_alias`].
    pub fn delete_alias(&self, name: &str) -> Result<(), RedirectError> {
        self.redirector.delete_alias(&self.handle, name)
    }

    /// See [`Redirector::delete_alias_matching`].
    pub fn delete_alias_matching(
        &self,
        name: &str,
        rtype: Option<signpost_wire::RecordType>,
        id: Option<&str>,
    ) -> Result<usize, RedirectError> {
        self.redirector.delete_alias_matching(&self.handle, name, rtype, id)
    }

    /// See [`Redirector::add_skip_pattern`].
    pub fn add_skip_pattern(&self, pattern: &str) -> Result<(), RedirectError> {
        self.redirector.add_skip_pattern(&self.handle, pattern)
    }

    /// See [`Redirector::delete_skip_pattern`].
    pub fn delete_skip_pattern(&self, pattern: &str) -> Result<(), RedirectError> {
        self.redirector.delete_skip_pattern(&self.handle, pattern)
    }

    /// See [`Redirector::clear`].
    pub fn clear(&self) -> Result<(), RedirectError> {
        self.redirector.clear(&self.handle)
    }

    /// Stop serving (and checking the health of alias targets).
    pub async fn shutdown(self) {
        if let Some(api) = self.route53_api {
            api.shutdown().await;
        }
        self.redirector.stop_health_checks();
        self.handle.shutdown().await;
    }

    /// For binaries: serve until SIGTERM or Ctrl-C, reloading on SIGHUP.
    pub async fn run_until_signalled(self, on_reload: impl Fn(Result<(), signpost_server::Error>)) -> io::Result<()> {
        let signals = Signals::install()?;
        self.run_until(signals, on_reload).await
    }

    /// Serve until `signals` brings SIGTERM or Ctrl-C, or SIGUSR2 and a
    /// successor takes the sockets over; reload on SIGHUP.
    pub async fn run_until(
        self,
        mut signals: Signals,
        on_reload: impl Fn(Result<(), signpost_server::Error>),
    ) -> io::Result<()> {
        let (handle, on_reload) = (&self.handle, &on_reload);
        let stop =
            signals.serve(None, |_| async move { on_reload(handle.reload_from_source().await.map(|_| ())) }).await;
        if let Stop::HandedOver(successor) = stop {
            // A successor serves the sockets now: answer what was read and stop.
            tracing::info!("{successor}");
        }
        self.shutdown().await;
        Ok(())
    }
}
