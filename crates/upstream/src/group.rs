//! Groups: which server to ask, when to move on, hedging, health and deadlines.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rand::seq::SliceRandom;
use signpost_wire::{NameBuf, Rcode, RecordType};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::{GroupConfig, HedgeAfter, Policy, Protocol, ServerConfig};
use crate::doh::DohTransport;
use crate::error::{Attempt, AttemptOutcome, Failure, UpstreamError};
use crate::query::{Prepared, inspect};
use crate::stats::{ServerStats, Stats};
use crate::stream::StreamTransport;
use crate::tls::{self, TlsConfigs};
use crate::udp::UdpTransport;
use crate::{Error, Resolved};

/// Hedge delay for a server whose p95 is not known yet.
const DEFAULT_HEDGE_DELAY: Duration = Duration::from_millis(100);
/// Shortest hedge delay, whatever the p95 says.
const MIN_HEDGE_DELAY: Duration = Duration::from_millis(5);

/// One server of a group, with its transports and figures.
pub(crate) struct Server {
    pub(crate) config: ServerConfig,
    transport: Transport,
    pub(crate) stats: Stats,
}

enum Transport {
    /// UDP, with TCP for truncated answers.
    Udp { udp: UdpTransport, tcp: StreamTransport },
    /// TCP or TLS.
    Stream(StreamTransport),
    /// HTTPS.
    Https(DohTransport),
}

impl Server {
    fn new(config: &ServerConfig, group: &GroupConfig, sockets: &Arc<Semaphore>, tls: Option<&TlsConfigs>) -> Self {
        let stream = |tls| {
            StreamTransport::new(config.address, tls, config.max_in_flight, config.max_connections, config.idle_timeout)
        };
        let name = tls::server_name(config);
        let transport = match (config.protocol, tls, name) {
            (Protocol::Tls, Some(tls), Some(name)) => Transport::Stream(stream(Some((tls.dot.clone(), name)))),
            (Protocol::Https, Some(tls), Some(name)) => {
                Transport::Https(DohTransport::new(config, tls.doh.clone(), name))
            }
            (Protocol::Tcp, _, _) => Transport::Stream(stream(None)),
            // Validation guarantees TLS settings and a name for TLS servers; plain UDP otherwise.
            _ => Transport::Udp {
                udp: UdpTransport::new(config.address, sockets.clone(), group.edns_payload),
                tcp: stream(None),
            },
        };
        Self { config: config.clone(), transport, stats: Stats::default() }
    }

    /// One exchange over `protocol` (the server's own, or TCP after a truncated UDP answer).
    async fn exchange(&self, protocol: Protocol, query: &Prepared) -> Result<Bytes, Failure> {
        // The stream and HTTPS futures are large (TLS and HTTP/2 state);
        // boxing them keeps every caller's future, and so every spawned
        // query task, small, which matters most for the UDP path.
        match (&self.transport, protocol) {
            (Transport::Udp { udp, .. }, Protocol::Udp) => udp.exchange(query, &self.stats).await,
            (Transport::Udp { tcp, .. }, _) => Box::pin(tcp.exchange(query, &self.stats)).await,
            (Transport::Stream(stream), _) => Box::pin(stream.exchange(query, &self.stats)).await,
            (Transport::Https(doh), _) => Box::pin(doh.exchange(query, &self.stats)).await,
        }
    }
}

/// An upstream group, ready to resolve. Cheap to clone.
#[derive(Clone)]
pub struct Group {
    inner: Arc<GroupInner>,
}

struct GroupInner {
    config: GroupConfig,
    servers: Vec<Arc<Server>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.inner.config.name)
            .field("servers", &self.inner.servers.len())
            .finish()
    }
}

/// An answer and where it came from.
struct Answer {
    response: Bytes,
    server: SocketAddr,
    protocol: Protocol,
}

/// What a try of one server means for the query.
enum Decision {
    /// Return this answer.
    Accept(Answer),
    /// Try the next server; keep this rejected answer in case none does better.
    MoveOn(Option<Answer>),
    /// A failure `retry_on` does not move on from: ask no further servers.
    Stop,
}

/// The tries of one query, shared by the tries running at once.
#[derive(Default)]
struct AttemptLog {
    entries: Mutex<Vec<LogEntry>>,
}

struct LogEntry {
    attempt: Attempt,
    server: usize,
    opened: Instant,
    open: bool,
}

impl AttemptLog {
    fn begin(&self, server: usize, address: SocketAddr, protocol: Protocol) -> usize {
        let Ok(mut entries) = self.entries.lock() else { return usize::MAX };
        entries.push(LogEntry {
            attempt: Attempt {
                server: address,
                protocol,
                started: SystemTime::now(),
                duration: Duration::ZERO,
                outcome: AttemptOutcome::Timeout,
            },
            server,
            opened: Instant::now(),
            open: true,
        });
        entries.len() - 1
    }

    fn finish(&self, slot: usize, outcome: AttemptOutcome) {
        let Ok(mut entries) = self.entries.lock() else { return };
        if let Some(entry) = entries.get_mut(slot) {
            entry.attempt.duration = entry.opened.elapsed();
            entry.attempt.outcome = outcome;
            entry.open = false;
        }
    }

    /// Close the tries still running with `outcome`; returns their servers.
    fn close_open(&self, outcome: &AttemptOutcome) -> Vec<usize> {
        let Ok(mut entries) = self.entries.lock() else { return Vec::new() };
        let mut servers = Vec::new();
        for entry in entries.iter_mut().filter(|entry| entry.open) {
            entry.attempt.duration = entry.opened.elapsed();
            entry.attempt.outcome = outcome.clone();
            entry.open = false;
            servers.push(entry.server);
        }
        servers
    }

    fn into_attempts(self) -> Vec<Attempt> {
        self.entries.into_inner().unwrap_or_default().into_iter().map(|entry| entry.attempt).collect()
    }
}

impl Group {
    pub(crate) fn new(config: GroupConfig) -> Result<Self, Error> {
        validate(&config)?;
        let tls = tls::configs_for(&config)?;
        let sockets = Arc::new(Semaphore::new(config.max_udp_sockets));
        let servers = config
            .servers
            .iter()
            .map(|server| Arc::new(Server::new(server, &config, &sockets, tls.as_ref())))
            .collect();
        Ok(Self { inner: Arc::new(GroupInner { config, servers, next: AtomicUsize::new(0) }) })
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The group's settings.
    pub fn config(&self) -> &GroupConfig {
        &self.inner.config
    }

    /// Figures for each server of the group.
    pub fn stats(&self) -> Vec<ServerStats> {
        let name = self.name();
        self.inner
            .servers
            .iter()
            .map(|server| server.stats.snapshot(name, server.config.address, server.config.protocol))
            .collect()
    }

    /// Send a query message (any ID; each try sets a fresh random ID, or 0
    /// over DoH) and return the validated response bytes as the upstream
    /// sent them, with the ID of the try that got them.
    ///
    /// The group's policy picks the order of servers; `retry_on` says which
    /// outcomes move on to the next; hedging may run tries side by side. When
    /// every server tried gave an answer that `retry_on` rejects, the last
    /// such answer is returned (see [`resolve_accepted`](Self::resolve_accepted)
    /// to fail instead). Fails when no server gave an answer, or the total
    /// deadline passed.
    pub async fn resolve(&self, query: &[u8]) -> Result<Resolved, UpstreamError> {
        self.resolve_with(query, Rejected::Return).await
    }

    /// Like [`resolve`](Self::resolve), but an answer that `retry_on`
    /// rejected is never the result: when every server tried gave such an
    /// answer (a SERVFAIL with `retry_on` listing `servfail`, say), the
    /// query fails as if none had answered, with every try in the error.
    /// For callers with somewhere else to go, such as forward-first
    /// falling back to another group.
    pub async fn resolve_accepted(&self, query: &[u8]) -> Result<Resolved, UpstreamError> {
        self.resolve_with(query, Rejected::Fail).await
    }

    async fn resolve_with(&self, query: &[u8], rejected: Rejected) -> Result<Resolved, UpstreamError> {
        let config = &self.inner.config;
        let prepared = Prepared::new(query, config.edns_payload)
            .map_err(|error| UpstreamError::invalid_query(&config.name, error))?;
        let start = Instant::now();
        let deadline = start + config.total_timeout;
        let order = self.order(start);
        let log = AttemptLog::default();
        let max_parallel = config.hedge.map_or(1, |hedge| hedge.max_parallel.max(1));
        let mut running = FuturesUnordered::new();
        let mut next = 0;
        let mut stop = false;
        let mut hedge_at: Option<Instant> = None;
        let mut fallback: Option<Answer> = None;
        let far = start + config.total_timeout + Duration::from_secs(3600);

        // Without hedging, tries run one after another: no task set, no
        // select, no extra timers (each try's timeout is cut to the deadline).
        let end = if max_parallel == 1 {
            let mut end = End::Exhausted;
            for &index in &order {
                if deadline <= Instant::now() {
                    end = End::Deadline;
                    break;
                }
                match self.try_server(index, &prepared, deadline, &log).await {
                    Decision::Accept(answer) => {
                        end = End::Answer(answer);
                        break;
                    }
                    Decision::MoveOn(answer) => {
                        if answer.is_some() {
                            fallback = answer;
                        }
                    }
                    Decision::Stop => break,
                }
            }
            end
        } else {
            loop {
                if running.is_empty() {
                    let Some(&index) = order.get(next).filter(|_| !stop) else { break End::Exhausted };
                    if deadline <= Instant::now() {
                        break End::Deadline;
                    }
                    running.push(self.try_server(index, &prepared, deadline, &log));
                    next += 1;
                    hedge_at = self.hedge_delay(index).map(|delay| Instant::now() + delay);
                }
                let hedge_ready = hedge_at.is_some() && next < order.len() && running.len() < max_parallel && !stop;
                tokio::select! {
                    Some(decision) = running.next() => match decision {
                        Decision::Accept(answer) => break End::Answer(answer),
                        Decision::MoveOn(answer) => {
                            if answer.is_some() {
                                fallback = answer;
                            }
                            if running.len() < max_parallel && !stop
                                && let Some(&index) = order.get(next)
                                && deadline > Instant::now()
                            {
                                running.push(self.try_server(index, &prepared, deadline, &log));
                                next += 1;
                                hedge_at = self.hedge_delay(index).map(|delay| Instant::now() + delay);
                            }
                        }
                        Decision::Stop => stop = true,
                    },
                    () = tokio::time::sleep_until(hedge_at.unwrap_or(far)), if hedge_ready => {
                        if let Some(&index) = order.get(next) {
                            tracing::debug!(group = %config.name, server = index, "hedging: asking the next server too");
                            running.push(self.try_server(index, &prepared, deadline, &log));
                            next += 1;
                            hedge_at = self.hedge_delay(index).map(|delay| Instant::now() + delay);
                        }
                    }
                    () = tokio::time::sleep_until(deadline) => break End::Deadline,
                }
            }
        };
        // Tries still running are dropped here.
        drop(running);
        match end {
            End::Answer(answer) => {
                log.close_open(&AttemptOutcome::Cancelled);
                Ok(self.resolved(answer, log))
            }
            End::Deadline | End::Exhausted => {
                for index in log.close_open(&AttemptOutcome::Timeout) {
                    self.record_failure(index, true);
                }
                if let Some(answer) = fallback.filter(|_| rejected == Rejected::Return) {
                    return Ok(self.resolved(answer, log));
                }
                let attempts = log.into_attempts();
                // A last try whose timeout was cut to the deadline ends as Exhausted at the deadline.
                if matches!(end, End::Deadline) || Instant::now() >= deadline {
                    Err(UpstreamError::deadline(&config.name, config.total_timeout, attempts))
                } else {
                    Err(UpstreamError::exhausted(&config.name, attempts))
                }
            }
        }
    }

    fn resolved(&self, answer: Answer, log: AttemptLog) -> Resolved {
        Resolved {
            response: answer.response,
            server: answer.server,
            protocol: answer.protocol,
            attempts: log.into_attempts(),
        }
    }

    fn server(&self, index: usize) -> Option<&Arc<Server>> {
        self.inner.servers.get(index)
    }

    fn hedge_delay(&self, index: usize) -> Option<Duration> {
        let hedge = self.inner.config.hedge?;
        if hedge.max_parallel < 2 {
            return None;
        }
        Some(match hedge.after {
            HedgeAfter::Fixed(delay) => delay,
            HedgeAfter::P95 => self.server(index)?.stats.p95().unwrap_or(DEFAULT_HEDGE_DELAY).max(MIN_HEDGE_DELAY),
        })
    }

    /// The order to try servers in for one query: the policy's order, down
    /// servers left out (unless all are down). Starts probes that are due.
    fn order(&self, now: Instant) -> Vec<usize> {
        let servers = &self.inner.servers;
        let count = servers.len();
        let mut order: Vec<usize> = (0..count).collect();
        match self.inner.config.policy {
            Policy::Sequential => {}
            Policy::RoundRobin => {
                let first = self.inner.next.fetch_add(1, Ordering::Relaxed) % count.max(1);
                order.rotate_left(first);
            }
            Policy::Random => order.shuffle(&mut rand::rng()),
            Policy::Fastest => {
                let rtts: Vec<Duration> =
                    servers.iter().map(|server| server.stats.smoothed_rtt().unwrap_or(Duration::ZERO)).collect();
                order.sort_by_key(|&index| rtts.get(index).copied().unwrap_or(Duration::ZERO));
            }
        }
        for server in servers {
            if server.stats.claim_probe(now) {
                self.spawn_probe(server.clone());
            }
        }
        let up: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&index| self.server(index).is_some_and(|server| server.stats.is_up()))
            .collect();
        if !up.is_empty() {
            return up;
        }
        // Everything is down: better to try than to fail outright; soonest due first.
        order.sort_by_key(|&index| self.server(index).and_then(|server| server.stats.down_until()));
        order
    }

    /// Ask a down server for `. NS` in the background; an answer marks it up.
    fn spawn_probe(&self, server: Arc<Server>) {
        let timeout = self.inner.config.per_try_timeout;
        let backoff = self.inner.config.probe_backoff;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            server.stats.probe_finished(false, backoff, Instant::now());
            return;
        };
        tracing::debug!(server = %server.config, "probing a server marked down");
        runtime.spawn(async move {
            let query = crate::query::build_query(&NameBuf::root(), RecordType::NS, None);
            let answered = match Prepared::new(&query, 1232) {
                Ok(prepared) => {
                    let started = Instant::now();
                    server.stats.sent();
                    let result =
                        tokio::time::timeout(timeout, server.exchange(server.config.protocol, &prepared)).await;
                    match result {
                        Ok(Ok(response)) if inspect(&response).is_ok() => {
                            server.stats.answered(started.elapsed());
                            true
                        }
                        _ => false,
                    }
                }
                Err(_) => false,
            };
            server.stats.probe_finished(answered, backoff, Instant::now());
        });
    }

    fn record_failure(&self, index: usize, timeout: bool) {
        let config = &self.inner.config;
        let Some(server) = self.server(index) else { return };
        if server.stats.failed(timeout, config.max_fails, config.probe_backoff, Instant::now()) {
            tracing::warn!(group = %config.name, server = %server.config, max_fails = config.max_fails, "upstream marked down");
        }
    }

    /// Try one server: its own transport, then TCP if UDP came back truncated.
    async fn try_server(&self, index: usize, query: &Prepared, deadline: Instant, log: &AttemptLog) -> Decision {
        let Some(server) = self.server(index) else { return Decision::MoveOn(None) };
        let retry_on = self.inner.config.retry_on;
        let protocol = server.config.protocol;
        match self.exchange(index, protocol, query, deadline, log).await {
            Exchange::Answer { response, truncated: true, slot, .. } if protocol == Protocol::Udp => {
                log.finish(slot, AttemptOutcome::Truncated);
                let truncated_answer = Answer { response, server: server.config.address, protocol };
                match self.exchange(index, Protocol::Tcp, query, deadline, log).await {
                    Exchange::Answer { response, rcode, truncated, slot } => self.judge(
                        Answer { response, server: server.config.address, protocol: Protocol::Tcp },
                        rcode,
                        truncated,
                        slot,
                        log,
                    ),
                    // TCP failed: the truncated answer stands, unless retry_on says truncated answers are failures.
                    Exchange::Failed { .. } if retry_on.truncated => Decision::MoveOn(None),
                    Exchange::Failed { .. } => Decision::Accept(truncated_answer),
                }
            }
            Exchange::Answer { response, rcode, truncated, slot } => {
                let answer = Answer { response, server: server.config.address, protocol };
                self.judge(answer, rcode, truncated, slot, log)
            }
            Exchange::Failed { outcome } => {
                let moves_on = if outcome == AttemptOutcome::Timeout { retry_on.timeout } else { retry_on.unreachable };
                if moves_on { Decision::MoveOn(None) } else { Decision::Stop }
            }
        }
    }

    /// Accept an answer, or reject it as `retry_on` says.
    fn judge(&self, answer: Answer, rcode: Rcode, truncated: bool, slot: usize, log: &AttemptLog) -> Decision {
        let retry_on = self.inner.config.retry_on;
        if truncated {
            log.finish(slot, AttemptOutcome::Truncated);
            return if retry_on.truncated { Decision::MoveOn(Some(answer)) } else { Decision::Accept(answer) };
        }
        let rejected = match rcode {
            Rcode::SERVFAIL => retry_on.servfail,
            Rcode::REFUSED => retry_on.refused,
            Rcode::NXDOMAIN => retry_on.nxdomain,
            _ => false,
        };
        if rejected {
            log.finish(slot, AttemptOutcome::Rejected(rcode));
            Decision::MoveOn(Some(answer))
        } else {
            log.finish(slot, AttemptOutcome::Answered(rcode));
            Decision::Accept(answer)
        }
    }

    /// One exchange with one server, timed, logged and counted.
    async fn exchange(
        &self,
        index: usize,
        protocol: Protocol,
        query: &Prepared,
        deadline: Instant,
        log: &AttemptLog,
    ) -> Exchange {
        let Some(server) = self.server(index) else {
            return Exchange::Failed { outcome: AttemptOutcome::Failed("no such server".into()) };
        };
        let slot = log.begin(index, server.config.address, protocol);
        let started = Instant::now();
        let budget = self.inner.config.per_try_timeout.min(deadline.saturating_duration_since(started));
        server.stats.sent();
        let result = tokio::time::timeout(budget, server.exchange(protocol, query)).await;
        let failure = match result {
            Ok(Ok(response)) => match inspect(&response) {
                Ok(verdict) => {
                    server.stats.answered(started.elapsed());
                    return Exchange::Answer { response, rcode: verdict.rcode, truncated: verdict.truncated, slot };
                }
                Err(reason) => Failure::Failed(reason),
            },
            Ok(Err(failure)) => failure,
            Err(_) => {
                self.record_failure(index, true);
                log.finish(slot, AttemptOutcome::Timeout);
                return Exchange::Failed { outcome: AttemptOutcome::Timeout };
            }
        };
        self.record_failure(index, false);
        let outcome = failure.into_outcome();
        tracing::debug!(group = %self.inner.config.name, server = %server.config, %outcome, "upstream try failed");
        log.finish(slot, outcome.clone());
        Exchange::Failed { outcome }
    }
}

/// What to do with an answer `retry_on` rejected when no server did better.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rejected {
    /// Return the last one.
    Return,
    /// Fail the query.
    Fail,
}

/// How a query's loop ended.
enum End {
    Answer(Answer),
    Deadline,
    Exhausted,
}

/// The result of one exchange.
enum Exchange {
    Answer { response: Bytes, rcode: Rcode, truncated: bool, slot: usize },
    Failed { outcome: AttemptOutcome },
}

fn validate(config: &GroupConfig) -> Result<(), Error> {
    let group = || config.name.clone();
    if config.servers.is_empty() {
        return Err(Error::NoServers { group: group() });
    }
    for (field, zero) in [
        ("per_try_timeout", config.per_try_timeout.is_zero()),
        ("total_timeout", config.total_timeout.is_zero()),
        ("max_udp_sockets", config.max_udp_sockets == 0),
    ] {
        if zero {
            return Err(Error::ZeroSetting { group: group(), field });
        }
    }
    if config.edns_payload < 512 {
        return Err(Error::EdnsPayloadTooSmall { group: group(), size: config.edns_payload });
    }
    for server in &config.servers {
        if server.address.port() == 0 {
            return Err(Error::ZeroPort { group: group(), server: server.address });
        }
        if server.max_in_flight == 0 {
            return Err(Error::ZeroSetting { group: group(), field: "max_in_flight" });
        }
        if server.max_connections == 0 {
            return Err(Error::ZeroSetting { group: group(), field: "max_connections" });
        }
        if server.idle_timeout.is_zero() {
            return Err(Error::ZeroSetting { group: group(), field: "idle_timeout" });
        }
        if server.protocol.is_encrypted() && tls::server_name(server).is_none() {
            return Err(Error::InvalidTlsName {
                group: group(),
                server: server.address,
                name: server.tls_name.clone().unwrap_or_default(),
            });
        }
        if server.protocol == Protocol::Https && !crate::doh::valid_path(&server.doh_path) {
            return Err(Error::InvalidDohPath {
                group: group(),
                server: server.address,
                path: server.doh_path.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(servers: usize, policy: Policy) -> Group {
        let servers =
            (0..servers).map(|i| ServerConfig::udp(SocketAddr::from(([127, 0, 0, 1], 5300 + i as u16)))).collect();
        let mut config = GroupConfig::new("test", servers);
        config.policy = policy;
        Group::new(config).unwrap()
    }

    #[test]
    fn round_robin_rotates_the_start() {
        let group = group(3, Policy::RoundRobin);
        let now = Instant::now();
        assert_eq!(group.order(now), [0, 1, 2]);
        assert_eq!(group.order(now), [1, 2, 0]);
        assert_eq!(group.order(now), [2, 0, 1]);
        assert_eq!(group.order(now), [0, 1, 2]);
    }

    #[test]
    fn random_orders_hold_every_server_once() {
        let group = group(5, Policy::Random);
        for _ in 0..20 {
            let mut order = group.order(Instant::now());
            order.sort_unstable();
            assert_eq!(order, [0, 1, 2, 3, 4]);
        }
    }

    #[test]
    fn fastest_puts_the_lowest_smoothed_rtt_first_and_unmeasured_before_all() {
        let group = group(3, Policy::Fastest);
        group.server(0).unwrap().stats.answered(Duration::from_millis(50));
        group.server(1).unwrap().stats.answered(Duration::from_millis(5));
        assert_eq!(group.order(Instant::now()), [2, 1, 0]);
    }

    #[test]
    fn down_servers_are_skipped_unless_all_are_down() {
        let group = group(3, Policy::Sequential);
        let now = Instant::now();
        for _ in 0..3 {
            group.record_failure(1, true);
        }
        assert_eq!(group.order(now), [0, 2]);
        for _ in 0..3 {
            group.record_failure(0, false);
            group.record_failure(2, true);
        }
        assert_eq!(group.order(now).len(), 3, "all down: try them all");
    }

    #[test]
    fn validation_names_the_problem() {
        let address = SocketAddr::from(([127, 0, 0, 1], 53));
        let check = |mutate: &dyn Fn(&mut GroupConfig)| {
            let mut config = GroupConfig::new("g", vec![ServerConfig::udp(address)]);
            mutate(&mut config);
            Group::new(config).err().map(|error| error.to_string()).unwrap_or_default()
        };
        assert_eq!(check(&|_| {}), "");
        assert!(check(&|c| c.servers.clear()).contains("no servers"));
        assert!(check(&|c| c.per_try_timeout = Duration::ZERO).contains("per_try_timeout"));
        assert!(check(&|c| c.edns_payload = 100).contains("below 512"));
        assert!(check(&|c| c.servers[0].address.set_port(0)).contains("port 0"));
        assert!(
            check(&|c| {
                c.servers[0] = ServerConfig::tls(address, "bad name!");
            })
            .contains("not a valid TLS server name")
        );
        assert!(
            check(&|c| {
                c.servers[0] = ServerConfig::https(address, "dns.test");
                c.servers[0].doh_path = "dns-query".into();
            })
            .contains("DoH path")
        );
    }

    /// A server on loopback that answers every query with `rcode`.
    async fn answering(rcode: Rcode) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            while let Ok((len, peer)) = socket.recv_from(&mut buffer).await {
                let Ok(query) = signpost_wire::Message::parse(&buffer[..len]) else { continue };
                let mut response = Vec::new();
                let Ok(mut builder) = signpost_wire::MessageBuilder::response_to(&mut response, &query) else {
                    continue;
                };
                builder.set_rcode(rcode);
                if builder.finish().is_ok() {
                    let _ = socket.send_to(&response, peer).await;
                }
            }
        });
        (address, task)
    }

    #[tokio::test]
    async fn resolve_accepted_fails_when_every_answer_was_rejected() {
        let (first, first_task) = answering(Rcode::SERVFAIL).await;
        let (second, second_task) = answering(Rcode::SERVFAIL).await;
        let query = crate::query::build_query(&"example.com".parse().unwrap(), RecordType::A, Some(1232));
        let mut config = GroupConfig::new("test", vec![ServerConfig::udp(first), ServerConfig::udp(second)]);
        config.retry_on.servfail = true;
        let group = Group::new(config.clone()).unwrap();

        // resolve: the last rejected answer stands in for none.
        let resolved = group.resolve(&query).await.unwrap();
        assert_eq!(signpost_wire::Message::parse(&resolved.response).unwrap().rcode().unwrap(), Rcode::SERVFAIL);
        assert_eq!(resolved.server, second);
        // resolve_accepted: no accepted answer is a failure, with every try in it.
        let error = group.resolve_accepted(&query).await.unwrap_err();
        let outcomes: Vec<_> = error.attempts().iter().map(|attempt| attempt.outcome.clone()).collect();
        assert_eq!(outcomes, [AttemptOutcome::Rejected(Rcode::SERVFAIL), AttemptOutcome::Rejected(Rcode::SERVFAIL)]);
        assert!(!error.is_timeout());

        // A SERVFAIL retry_on does not list is an accepted answer for both.
        config.retry_on.servfail = false;
        let group = Group::new(config).unwrap();
        let resolved = group.resolve_accepted(&query).await.unwrap();
        assert_eq!(signpost_wire::Message::parse(&resolved.response).unwrap().rcode().unwrap(), Rcode::SERVFAIL);
        assert_eq!(resolved.attempts.len(), 1);
        first_task.abort();
        second_task.abort();
    }

    #[test]
    fn the_log_closes_running_tries() {
        let log = AttemptLog::default();
        let address = SocketAddr::from(([127, 0, 0, 1], 53));
        let first = log.begin(0, address, Protocol::Udp);
        log.begin(1, address, Protocol::Tcp);
        log.finish(first, AttemptOutcome::Answered(Rcode::NOERROR));
        assert_eq!(log.close_open(&AttemptOutcome::Cancelled), [1]);
        let attempts = log.into_attempts();
        assert_eq!(attempts[0].outcome, AttemptOutcome::Answered(Rcode::NOERROR));
        assert_eq!(attempts[1].outcome, AttemptOutcome::Cancelled);
    }
}
