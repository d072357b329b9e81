//! Liveness and readiness probes as CoreDNS serves them, for Kubernetes.
//!
//! `/health` (CoreDNS's `health` plugin, :8080 there) answers `200 OK`
//! while the process runs, including during the lame-duck period that
//! follows SIGTERM. `/ready` (CoreDNS's `ready` plugin, :8181 there)
//! answers `200 OK` once every readiness check has passed, and `503` with
//! the names of the checks still failing, one per line, otherwise; from the
//! start of the lame-duck period on it fails with `lame-duck`, so
//! Kubernetes takes the pod out of its Service while it still answers DNS.
//!
//! The probes run on listeners of their own, apart from the DNS server and
//! the admin API: they outlive a server an application restarts (the Route
//! 53 emulator does, when its listeners change), and they answer before the
//! DNS listeners are bound.
//!
//! ```no_run
//! use signpost_server::probes::{HealthConfig, Probes, Readiness, ReadyConfig};
//!
//! # async fn run() -> Result<(), signpost_server::Error> {
//! let readiness = Readiness::new();
//! readiness.require("listeners");
//! let health = HealthConfig { address: "127.0.0.1:8080".parse().unwrap(), lame_duck_ms: 5_000 };
//! let ready = ReadyConfig::new("127.0.0.1:8181".parse().unwrap());
//! let probes = Probes::start(Some(&health), Some(&ready), readiness.clone()).await?;
//! // ... bind and start the DNS server, then:
//! readiness.mark_ready("listeners");
//! // On SIGTERM: /ready fails, /health and DNS go on for the lame-duck period.
//! probes.lame_duck().await;
//! // ... shut the DNS server down, then:
//! probes.stop().await;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use signpost_upstream::{Group, Upstreams};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Error, handover, tcp};

/// The name `/ready` reports while the process is in its lame-duck period.
pub const LAME_DUCK: &str = "lame-duck";

/// `[health]`: where `/health` is served, and how long the lame-duck
/// period after SIGTERM lasts.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Where to listen (CoreDNS uses `:8080`; give `0.0.0.0:8080` in a pod).
    pub address: SocketAddr,
    /// How long, after SIGTERM, DNS and `/health` go on answering while
    /// `/ready` fails, before the server stops (CoreDNS's `lameduck`;
    /// default 5000 ms, long enough for Kubernetes to drop the pod from
    /// its Service endpoints).
    #[serde(default = "default_lame_duck_ms")]
    pub lame_duck_ms: u64,
}

fn default_lame_duck_ms() -> u64 {
    5_000
}

/// The check `/ready` names until the first round of upstream health
/// checks is over; then each group has its own (`upstreams:NAME`).
pub const UPSTREAMS: &str = "upstreams";

/// `[ready]`: where `/ready` is served, and whether it waits for upstreams.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReadyConfig {
    /// Where to listen (CoreDNS uses `:8181`).
    pub address: SocketAddr,
    /// Ready only while at least one server of every upstream group answers
    /// a health check (`. NS`), as CoreDNS's `ready` plugin waits for each
    /// plugin; default true. Groups without servers are not checked.
    #[serde(default = "default_require_upstream")]
    pub require_upstream: bool,
    /// How often every upstream server is checked, in milliseconds (default 2000).
    #[serde(default = "default_upstream_interval_ms")]
    pub upstream_interval_ms: u64,
}

impl ReadyConfig {
    /// `/ready` on `address`, waiting for upstreams (the defaults).
    pub fn new(address: SocketAddr) -> Self {
        Self { address, require_upstream: true, upstream_interval_ms: default_upstream_interval_ms() }
    }
}

fn default_require_upstream() -> bool {
    true
}

fn default_upstream_interval_ms() -> u64 {
    2_000
}

/// The upstream groups `/ready` waits for, as one round of checks finds them.
#[derive(Clone, Debug)]
pub struct UpstreamsInUse {
    /// The groups in force.
    pub upstreams: Arc<Upstreams>,
    /// The names of the groups queries are sent to; `None` counts every group.
    pub only: Option<BTreeSet<String>>,
}

#[derive(Debug, Default)]
struct ReadinessState {
    /// Each check by name, and whether it passes.
    checks: Mutex<BTreeMap<String, bool>>,
    lame_duck: AtomicBool,
}

/// Named readiness checks (`listeners`, `config`, ...) an application
/// registers and passes; `/ready` succeeds when all of them pass and the
/// process is not in its lame-duck period. Cheap to clone; clones share.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<ReadinessState>);

impl Readiness {
    /// No checks: ready until the lame-duck period starts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a check that has not passed yet (it keeps its state if it exists).
    pub fn require(&self, check: &str) {
        if let Ok(mut checks) = self.0.checks.lock() {
            checks.entry(check.to_string()).or_insert(false);
        }
    }

    /// The check passes (it is added if it was not required before).
    pub fn mark_ready(&self, check: &str) {
        self.set(check, true);
    }

    /// The check fails again.
    pub fn mark_not_ready(&self, check: &str) {
        self.set(check, false);
    }

    /// The check no longer applies (passed or not).
    pub fn forget(&self, check: &str) {
        if let Ok(mut checks) = self.0.checks.lock() {
            checks.remove(check);
        }
    }

    fn set(&self, check: &str, passes: bool) {
        if let Ok(mut checks) = self.0.checks.lock() {
            checks.insert(check.to_string(), passes);
        }
    }

    /// Whether `check` passes; `None` when it is not required.
    pub fn passes(&self, check: &str) -> Option<bool> {
        self.0.checks.lock().ok().and_then(|checks| checks.get(check).copied())
    }

    /// Start the lame-duck period: readiness fails from now on.
    pub fn enter_lame_duck(&self) {
        self.0.lame_duck.store(true, Ordering::Relaxed);
    }

    /// Whether the lame-duck period has started.
    pub fn is_lame_duck(&self) -> bool {
        self.0.lame_duck.load(Ordering::Relaxed)
    }

    /// The checks failing, in name order, then `lame-duck` if it applies.
    pub fn failing(&self) -> Vec<String> {
        let mut failing: Vec<String> = match self.0.checks.lock() {
            Ok(checks) => checks.iter().filter(|(_, passes)| !**passes).map(|(name, _)| name.clone()).collect(),
            Err(_) => vec!["checks".to_string()],
        };
        if self.is_lame_duck() {
            failing.push(LAME_DUCK.to_string());
        }
        failing
    }

    /// Whether `/ready` answers 200.
    pub fn is_ready(&self) -> bool {
        self.failing().is_empty()
    }
}

/// Which routes a probe listener serves.
#[derive(Clone, Copy, Debug, Default)]
struct Routes {
    health: bool,
    ready: bool,
}

/// The `/health` and `/ready` listeners (one, when both share an address).
#[derive(Debug)]
pub struct Probes {
    health: Option<SocketAddr>,
    ready: Option<SocketAddr>,
    readiness: Readiness,
    lame_duck: Duration,
    /// How often upstreams are checked, when `/ready` waits for them.
    upstream_interval: Option<Duration>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Probes {
    /// Bind and serve the probes that are configured (none is fine: then
    /// [`Probes::lame_duck`] returns at once). Must run inside a tokio runtime.
    pub async fn start(
        health: Option<&HealthConfig>,
        ready: Option<&ReadyConfig>,
        readiness: Readiness,
    ) -> Result<Self, Error> {
        let mut wanted: Vec<(SocketAddr, Routes)> = Vec::new();
        // One listener for both when they name one address (port 0 means
        // a free port each).
        let mut add = |address: SocketAddr, health: bool| match wanted
            .iter_mut()
            .find(|(at, _)| *at == address && address.port() != 0)
        {
            Some((_, routes)) => {
                routes.health |= health;
                routes.ready |= !health;
            }
            None => wanted.push((address, Routes { health, ready: !health })),
        };
        if let Some(config) = health {
            add(config.address, true);
        }
        if let Some(config) = ready {
            add(config.address, false);
        }
        let stop = CancellationToken::new();
        let mut probes = Self {
            health: None,
            ready: None,
            readiness,
            lame_duck: Duration::from_millis(health.map_or(0, |config| config.lame_duck_ms)),
            upstream_interval: ready
                .filter(|config| config.require_upstream)
                .map(|config| Duration::from_millis(config.upstream_interval_ms.max(100))),
            stop: stop.clone(),
            tasks: Vec::new(),
        };
        for (address, routes) in wanted {
            let kind = if routes.health { "health" } else { "ready" };
            let socket = tcp::bind(address, kind)?;
            let local = socket.local_addr().map_err(|source| Error::Io { what: "reading a bound address", source })?;
            let offer = handover::offer(std::os::fd::AsFd::as_fd(&socket));
            let socket = tcp::into_tokio(socket)?;
            if routes.health {
                probes.health = Some(local);
            }
            if routes.ready {
                probes.ready = Some(local);
            }
            let serving = serve(socket, routes, probes.readiness.clone(), stop.child_token());
            // Offered to a successor as long as it is served.
            probes.tasks.push(tokio::spawn(async move {
                let _offer = offer;
                serving.await;
            }));
        }
        Ok(probes)
    }

    /// Where `/health` is served (the real port when 0 was asked for).
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health
    }

    /// Where `/ready` is served.
    pub fn ready_addr(&self) -> Option<SocketAddr> {
        self.ready
    }

    /// The checks `/ready` reports on.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The configured lame-duck period (zero without `[health]`).
    pub fn lame_duck_period(&self) -> Duration {
        self.lame_duck
    }

    /// When `[ready]` requires upstreams, make `/ready` wait for them: a
    /// task checks every server of every group of `upstreams()` (called
    /// each round, so reloaded groups are seen) at the configured interval,
    /// and a group with no server answering fails as `upstreams:NAME`.
    /// Until the first round is over `/ready` fails with `upstreams`.
    /// Without `[ready]`, or with `require_upstream = false`, nothing happens.
    pub fn check_upstreams(&mut self, upstreams: impl Fn() -> Arc<Upstreams> + Send + 'static) {
        self.check_upstreams_in_use(move || UpstreamsInUse { upstreams: upstreams(), only: None });
    }

    /// [`check_upstreams`](Self::check_upstreams) for an application whose
    /// upstreams hold groups nothing sends to (the endpoint's rules
    /// associated with no VPC): only the groups `in_use()` names count.
    pub fn check_upstreams_in_use(&mut self, in_use: impl Fn() -> UpstreamsInUse + Send + 'static) {
        let Some(interval) = self.upstream_interval else { return };
        self.readiness.require(UPSTREAMS);
        let readiness = self.readiness.clone();
        let stop = self.stop.child_token();
        self.tasks.push(tokio::spawn(async move {
            let mut checks: BTreeSet<String> = BTreeSet::new();
            loop {
                let in_force = in_use();
                let round = check_round(&in_force, &readiness);
                let current = tokio::select! {
                    current = round => current,
                    () = stop.cancelled() => return,
                };
                for gone in checks.difference(&current) {
                    readiness.forget(gone);
                }
                checks = current;
                readiness.forget(UPSTREAMS);
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = stop.cancelled() => return,
                }
            }
        }));
    }

    /// Enter the lame-duck period and wait it out: `/ready` fails at once,
    /// `/health` (and whatever else the application serves) goes on.
    pub async fn lame_duck(&self) {
        self.readiness.enter_lame_duck();
        tokio::time::sleep(self.lame_duck).await;
    }

    /// Stop serving the probes.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for task in std::mem::take(&mut self.tasks) {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Check every group in use once; set each group's readiness and return
/// the names of the checks set.
async fn check_round(in_use: &UpstreamsInUse, readiness: &Readiness) -> BTreeSet<String> {
    let groups: Vec<&Group> = in_use
        .upstreams
        .groups()
        .filter(|group| in_use.only.as_ref().is_none_or(|only| only.contains(group.name())))
        .collect();
    let results = futures_util::future::join_all(groups.iter().map(|group| group.check_servers())).await;
    let mut checks = BTreeSet::new();
    for (group, servers) in groups.iter().zip(results) {
        if servers.is_empty() {
            continue;
        }
        let check = format!("{UPSTREAMS}:{}", group.name());
        let answering = servers.iter().any(|(_, answered)| *answered);
        let was = readiness.passes(&check);
        if answering {
            if was == Some(false) {
                tracing::info!(group = group.name(), "an upstream of the group answers again: ready");
            }
            readiness.mark_ready(&check);
        } else {
            if was != Some(false) {
                let servers: Vec<String> = servers.iter().map(|(server, _)| server.to_string()).collect();
                tracing::warn!(
                    group = group.name(),
                    servers = servers.join(", "),
                    "no upstream of the group answers its health check: /ready fails"
                );
            }
            readiness.mark_not_ready(&check);
        }
        checks.insert(check);
    }
    checks
}

async fn serve(listener: TcpListener, routes: Routes, readiness: Readiness, stop: CancellationToken) {
    spawn_per_connection(&listener, &stop, |stream| {
        let readiness = readiness.clone();
        let stop = stop.clone();
        async move {
            let handler = service_fn(move |request| {
                let response = answer(&request, routes, &readiness);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), handler);
            tokio::select! {
                _ = connection => {}
                _ = stop.cancelled() => {}
            }
        }
    })
    .await;
}

/// How long an accept loop waits after a failed accept.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Accept connections on `listener` until `stop`, serving each in a task of
/// its own (the probe and admin listeners); a failed accept is skipped
/// after a short pause.
pub(crate) async fn spawn_per_connection<F>(
    listener: &TcpListener,
    stop: &CancellationToken,
    mut serve: impl FnMut(TcpStream) -> F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.cancelled() => break,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream));
            }
            // Out of descriptors (EMFILE/ENFILE) the pending connection stays
            // queued and accept fails again at once: pause as the DNS TCP
            // listeners do instead of spinning a core until one is freed.
            Err(error) => {
                tracing::warn!(%error, "admin/probe accept failed");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                    _ = stop.cancelled() => break,
                }
            }
        }
    }
}

/// The answer to one probe request.
fn answer(request: &Request<Incoming>, routes: Routes, readiness: &Readiness) -> Response<Full<Bytes>> {
    let served = match request.uri().path() {
        "/health" => routes.health,
        "/ready" => routes.ready,
        _ => false,
    };
    if !served {
        return text(StatusCode::NOT_FOUND, "404 page not found".to_string());
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD".to_string());
    }
    if request.uri().path() == "/health" {
        return text(StatusCode::OK, "OK".to_string());
    }
    let failing = readiness.failing();
    if failing.is_empty() {
        text(StatusCode::OK, "OK".to_string())
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, failing.join("\n"))
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_failing_checks_then_the_lame_duck() {
        let readiness = Readiness::new();
        assert!(readiness.is_ready(), "no checks: ready");
        readiness.require("listeners");
        readiness.require("config");
        assert_eq!(readiness.failing(), ["config", "listeners"]);
        readiness.mark_ready("config");
        readiness.require("config");
        assert_eq!(readiness.failing(), ["listeners"], "requiring again keeps a passed check");
        readiness.mark_ready("listeners");
        assert!(readiness.is_ready());
        readiness.clone().enter_lame_duck();
        assert_eq!(readiness.failing(), [LAME_DUCK], "clones share");
        readiness.mark_not_ready("config");
        assert_eq!(readiness.failing(), ["config", LAME_DUCK]);
    }

    #[test]
    fn configs_read_from_toml_with_the_lame_duck_default() {
        let health: HealthConfig = toml::from_str("address = \"0.0.0.0:8080\"").unwrap();
        assert_eq!(health.lame_duck_ms, 5_000);
        let health: HealthConfig = toml::from_str("address = \"[::]:8080\"\nlame_duck_ms = 0").unwrap();
        assert_eq!(health.lame_duck_ms, 0);
        assert!(toml::from_str::<ReadyConfig>("address = \"0.0.0.0:8181\"\nlame_duck_ms = 1").is_err());
        let ready: ReadyConfig = toml::from_str("address = \"0.0.0.0:8181\"").unwrap();
        assert_eq!(ready, ReadyConfig::new("0.0.0.0:8181".parse().unwrap()));
        assert!(ready.require_upstream);
        let ready: ReadyConfig = toml::from_str("address = \"0.0.0.0:8181\"\nrequire_upstream = false").unwrap();
        assert!(!ready.require_upstream);
    }
}
