//! Groups: which server to ask, when to ask again, when to move on,
//! hedging, health, deadlines and overload.
//!
//! One query is a loop over the messages it sends. Each UDP message waits
//! its server's retransmission timeout (SRTT + 4·RTTVAR from [`crate::rtt`],
//! between `min_try_timeout` and `per_try_timeout`); when that passes
//! without an answer the message is presumed lost, the server's timeout
//! backs off, and the query is sent again: to the next server in the
//! policy's order, or to the same one when it is the only one left. The
//! lost message keeps listening until `per_try_timeout`, so a slow answer
//! still counts if it comes first. TCP, TLS and HTTPS messages are not
//! retransmitted (their transport does that); they wait `per_try_timeout`.
//! Everything ends at `total_timeout`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rand::seq::SliceRandom;
use signpost_wire::{NameBuf, Rcode, RecordType};
use smallvec::SmallVec;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::{GroupConfig, HedgeAfter, Policy, Protocol, ServerConfig};
use crate::doh::DohTransport;
use crate::error::{Attempt, AttemptOutcome, Failure, UpstreamError};
use crate::query::{Prepared, inspect};
use crate::stats::{GroupStats, ServerStats, Stats};
use crate::stream::StreamTransport;
use crate::tls::{self, TlsConfigs};
use crate::udp::UdpTransport;
use crate::{Error, Resolved};

/// Hedge delay for a server whose p95 is not known yet.
const DEFAULT_HEDGE_DELAY: Duration = Duration::from_millis(100);
/// Shortest hedge delay, whatever the p95 says.
const MIN_HEDGE_DELAY: Duration = Duration::from_millis(5);
/// Most messages one query sends to one UDP server (Unbound's
/// `outbound-msg-retry` default). TCP, TLS and HTTPS servers, and servers
/// marked down, get one.
pub(crate) const MAX_SENDS_PER_SERVER: u8 = 5;

/// One server of a group, with its transports and figures.
pub(crate) struct Server {
    pub(crate) config: ServerConfig,
    transport: Transport,
    pub(crate) stats: Arc<Stats>,
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
    fn new(config: &ServerConfig, group: &GroupConfig, tls: Option<&TlsConfigs>) -> Self {
        let stats = Arc::new(Stats::new(group.min_try_timeout, group.per_try_timeout));
        let stream = |tls| {
            StreamTransport::new(
                (config.address, config.source),
                tls,
                config.max_in_flight,
                config.max_connections,
                config.idle_timeout,
            )
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
                udp: UdpTransport::new(config.address, config.source, stats.clone()),
                tcp: stream(None),
            },
        };
        Self { config: config.clone(), transport, stats }
    }

    /// One exchange over `protocol` (the server's own, or TCP after a truncated UDP answer).
    async fn exchange(&self, protocol: Protocol, query: &Prepared) -> Result<Bytes, Failure> {
        self.exchange_logged(protocol, query, None).await
    }

    /// [`Server::exchange`] for a try logged in `log`'s slot with the
    /// random ID `id` (as given to [`AttemptLog::begin`]): a UDP message goes out
    /// with that ID when no other query on its socket has it, and the log
    /// is corrected in the rare case that it needed another (so a try that
    /// times out has its ID too: dnstap's FORWARDER_QUERY shows it).
    async fn exchange_logged(
        &self,
        protocol: Protocol,
        query: &Prepared,
        log: Option<(&AttemptLog, usize, Option<u16>)>,
    ) -> Result<Bytes, Failure> {
        // The stream and HTTPS futures are large (TLS and HTTP/2 state);
        // boxing them keeps every caller's future small, which matters most
        // for the UDP path.
        match (&self.transport, protocol) {
            (Transport::Udp { udp, .. }, Protocol::Udp) => match log {
                Some((log, slot, id)) => {
                    let pending = match id {
                        Some(id) => udp.send_with_id(query, id).await?,
                        None => udp.send(query).await?,
                    };
                    if id != Some(pending.id()) {
                        log.set_id(slot, pending.id());
                    }
                    pending.await
                }
                None => udp.exchange(query).await,
            },
            (Transport::Udp { tcp, .. }, _) => Box::pin(tcp.exchange(query, &self.stats)).await,
            (Transport::Stream(stream), _) => Box::pin(stream.exchange(query, &self.stats)).await,
            (Transport::Https(doh), _) => Box::pin(doh.exchange(query, &self.stats)).await,
        }
    }

    /// Ask for `. NS` over the server's own transport within `timeout`;
    /// whether a valid answer came (it feeds the server's figures and marks
    /// it up).
    async fn probe(&self, timeout: Duration) -> bool {
        let query = crate::query::build_query(&NameBuf::root(), RecordType::NS, None);
        let Ok(prepared) = Prepared::new(&query, 1232) else { return false };
        let started = Instant::now();
        self.stats.sent();
        match tokio::time::timeout(timeout, self.exchange(self.config.protocol, &prepared)).await {
            Ok(Ok(response)) if inspect(&response).is_ok() => {
                self.stats.answered(started.elapsed(), false);
                true
            }
            _ => false,
        }
    }

    /// UDP queries waiting for an answer from this server.
    fn in_flight(&self) -> usize {
        match &self.transport {
            Transport::Udp { udp, .. } => udp.in_flight(),
            _ => 0,
        }
    }

    fn is_udp(&self) -> bool {
        self.config.protocol == Protocol::Udp
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
    /// One permit per query in flight (`max_outstanding`).
    slots: Arc<Semaphore>,
    queued: AtomicU64,
    overloaded: AtomicU64,
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

/// What one message sent for a query came to.
enum Decision {
    /// Return this answer.
    Accept(Answer),
    /// This server is done for the query (a failure `retry_on` moves on
    /// from, or a rejected answer, kept in case no server does better).
    MoveOn(Option<Answer>),
    /// A failure `retry_on` does not move on from: send nothing more.
    Stop,
    /// No answer within `per_try_timeout`.
    Expired,
}

/// The tries of one query, shared by the messages in flight at once. Two
/// tries (the usual most) are kept without a heap allocation.
#[derive(Default)]
struct AttemptLog {
    entries: Mutex<SmallVec<[LogEntry; 2]>>,
    /// Set when the query loop takes over from the first message's wait;
    /// from then on every message keeps its own expiry timer (see
    /// [`until_expiry`]).
    looping: AtomicBool,
}

struct LogEntry {
    attempt: Attempt,
    server: usize,
    opened: Instant,
    open: bool,
    /// Its retransmission timeout passed without an answer.
    lost: bool,
}

impl AttemptLog {
    /// A try sent at `opened` (the caller's clock reading, not another),
    /// with message ID `id` when it is known before the message goes out
    /// (UDP: the random ID it is sent with, corrected by [`Self::set_id`]
    /// in the rare case its socket had a query with that ID in flight).
    fn begin(&self, server: usize, address: SocketAddr, protocol: Protocol, opened: Instant, id: Option<u16>) -> usize {
        let Ok(mut entries) = self.entries.lock() else { return usize::MAX };
        entries.push(LogEntry {
            attempt: Attempt {
                server: address,
                protocol,
                started: SystemTime::now(),
                id,
                duration: Duration::ZERO,
                outcome: AttemptOutcome::Timeout,
            },
            server,
            opened,
            open: true,
            lost: false,
        });
        entries.len() - 1
    }

    /// The message in `slot` went out with ID `id` (known only after it went out).
    fn set_id(&self, slot: usize, id: u16) {
        let Ok(mut entries) = self.entries.lock() else { return };
        if let Some(entry) = entries.get_mut(slot) {
            entry.attempt.id = Some(id);
        }
    }

    fn finish(&self, slot: usize, outcome: AttemptOutcome) {
        self.finish_at(slot, outcome, Instant::now());
    }

    /// [`Self::finish`] with the caller's clock reading `now`.
    fn finish_at(&self, slot: usize, outcome: AttemptOutcome, now: Instant) {
        let Ok(mut entries) = self.entries.lock() else { return };
        if let Some(entry) = entries.get_mut(slot) {
            entry.attempt.duration = now.saturating_duration_since(entry.opened);
            entry.attempt.outcome = outcome;
            entry.open = false;
        }
    }

    /// The message in `slot` had no answer within `timeout`: it is recorded
    /// as timed out after `timeout`, though a later answer may still replace that.
    fn lose(&self, slot: usize, timeout: Duration) {
        let Ok(mut entries) = self.entries.lock() else { return };
        if let Some(entry) = entries.get_mut(slot)
            && entry.open
        {
            entry.attempt.duration = timeout;
            entry.attempt.outcome = AttemptOutcome::Timeout;
            entry.open = false;
            entry.lost = true;
        }
    }

    fn is_open(&self, slot: usize) -> bool {
        self.entries.lock().ok().and_then(|entries| entries.get(slot).map(|entry| entry.open)).unwrap_or(false)
    }

    fn is_lost(&self, slot: usize) -> bool {
        self.entries.lock().ok().and_then(|entries| entries.get(slot).map(|entry| entry.lost)).unwrap_or(false)
    }

    /// Close the tries still running with `outcome`; returns their servers and start times.
    fn close_open(&self, outcome: &AttemptOutcome) -> SmallVec<[(usize, Instant); 2]> {
        let Ok(mut entries) = self.entries.lock() else { return SmallVec::new() };
        let mut servers = SmallVec::new();
        for entry in entries.iter_mut().filter(|entry| entry.open) {
            entry.attempt.duration = entry.opened.elapsed();
            entry.attempt.outcome = outcome.clone();
            entry.open = false;
            servers.push((entry.server, entry.opened));
        }
        servers
    }

    /// The tries, taken out of the log in place (moving the inline entries
    /// out of the mutex first cost more than the lock).
    fn take_attempts(&self) -> Vec<Attempt> {
        let Ok(mut entries) = self.entries.lock() else { return Vec::new() };
        entries.drain(..).map(|entry| entry.attempt).collect()
    }
}

/// One message the query loop sent.
struct Sent {
    server: usize,
    slot: usize,
    started: Instant,
    /// How long it waits before the query is sent again.
    timeout: Duration,
}

/// Why a message is sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// The first, or the next server after a definite failure.
    Next,
    /// The message before it was presumed lost.
    Retransmit,
    /// The server being asked is slow: ask another too.
    Hedge,
}

/// Servers of a group kept inline (without a heap allocation) per query.
const INLINE_SERVERS: usize = 4;

/// The order servers are tried in for one query.
type Order = SmallVec<[usize; INLINE_SERVERS]>;

/// Where one query stands: which servers are left and what was sent. Inline
/// for groups of up to [`INLINE_SERVERS`] and queries of up to two messages.
struct Flight {
    order: Order,
    cursor: usize,
    /// By server index.
    servers: SmallVec<[ServerFlight; INLINE_SERVERS]>,
    sent: SmallVec<[Sent; 2]>,
}

/// What one query did with one server.
#[derive(Clone, Copy, Default)]
struct ServerFlight {
    /// Messages sent to it.
    sends: u8,
    /// Asked no more: it failed for good or gave an answer `retry_on` rejects.
    finished: bool,
    /// The last message's wait, doubled for the next.
    wait: Duration,
}

impl Flight {
    fn new(order: Order, servers: usize) -> Self {
        Self { order, cursor: 0, servers: smallvec::smallvec![ServerFlight::default(); servers], sent: SmallVec::new() }
    }
}

/// A query as the caller hands it to the group.
#[derive(Clone, Copy)]
enum Query<'q> {
    Borrowed(&'q [u8]),
    /// Bytes the group may share rather than copy.
    Shared(&'q Arc<[u8]>),
}

impl Query<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Borrowed(bytes) => bytes,
            Self::Shared(bytes) => bytes,
        }
    }
}

/// A message in flight: its number in [`Flight::sent`] and what it came to.
type Running<'a> = Pin<Box<dyn Future<Output = (usize, Decision)> + Send + 'a>>;

/// A new message, polled once so that it is sent now. Its future sends on
/// its first poll, and `FuturesUnordered` polls in the order of wake-ups: a
/// message answered ahead of it would end the query before it was ever sent
/// (a hedge or an Istio parallel query that never left).
async fn started(mut message: Running<'_>) -> Running<'_> {
    match std::future::poll_fn(|cx| Poll::Ready(message.as_mut().poll(cx))).await {
        Poll::Ready(output) => Box::pin(std::future::ready(output)),
        Poll::Pending => message,
    }
}

impl Group {
    pub(crate) fn new(config: GroupConfig) -> Result<Self, Error> {
        validate(&config)?;
        let tls = tls::configs_for(&config)?;
        let servers =
            config.servers.iter().map(|server| Arc::new(Server::new(server, &config, tls.as_ref()))).collect();
        let slots = Arc::new(Semaphore::new(config.max_outstanding.min(Semaphore::MAX_PERMITS)));
        Ok(Self {
            inner: Arc::new(GroupInner {
                config,
                servers,
                next: AtomicUsize::new(0),
                slots,
                queued: AtomicU64::new(0),
                overloaded: AtomicU64::new(0),
            }),
        })
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
            .map(|server| {
                server.stats.snapshot(name, server.config.address, server.config.protocol, server.in_flight())
            })
            .collect()
    }

    /// Ask every server of the group for `. NS` once, all at the same time,
    /// each within the group's `per_try_timeout`: a health check (`/ready`
    /// runs one per group at intervals). An answer marks a server that was
    /// down up again, as the background probe's does; no answer changes
    /// nothing, so health checks alone never take a server out of use.
    /// Returns each server and whether it answered, in configuration order.
    pub async fn check_servers(&self) -> Vec<(SocketAddr, bool)> {
        let timeout = self.inner.config.per_try_timeout;
        let checks =
            self.inner.servers.iter().map(|server| async move { (server.config.address, server.probe(timeout).await) });
        futures_util::future::join_all(checks).await
    }

    /// Figures for the group as a whole: queries in flight and turned away.
    pub fn group_stats(&self) -> GroupStats {
        let inner = &self.inner;
        let max_outstanding = inner.config.max_outstanding.min(Semaphore::MAX_PERMITS);
        GroupStats {
            group: inner.config.name.clone(),
            in_flight: max_outstanding.saturating_sub(inner.slots.available_permits()),
            max_outstanding,
            queued: inner.queued.load(Ordering::Relaxed),
            overloaded: inner.overloaded.load(Ordering::Relaxed),
        }
    }

    /// Send a query message (any ID; each message sets a fresh random ID,
    /// or 0 over DoH) and return the validated response bytes as the
    /// upstream sent them, with the ID of the message that got them.
    ///
    /// The group's policy picks the order of servers; a UDP message with no
    /// answer within its server's retransmission timeout is sent again (to
    /// the next server, or the same); `retry_on` says which outcomes move
    /// on to the next server; hedging may ask servers side by side. When
    /// every server tried gave an answer that `retry_on` rejects, the last
    /// such answer is returned (see [`resolve_accepted`](Self::resolve_accepted)
    /// to fail instead). Fails when no server gave an answer, the total
    /// deadline passed, or the group is overloaded
    /// ([`UpstreamError::is_overloaded`]).
    pub async fn resolve(&self, query: &[u8]) -> Result<Resolved, UpstreamError> {
        self.resolve_with(Query::Borrowed(query), Rejected::Return).await
    }

    /// [`resolve`](Self::resolve) a query the caller keeps in an `Arc`:
    /// when its EDNS payload size is the group's already (or it has no
    /// OPT record) and RD needs no change, the group shares those bytes
    /// instead of copying them (one allocation fewer per query).
    pub async fn resolve_shared(&self, query: &Arc<[u8]>) -> Result<Resolved, UpstreamError> {
        self.resolve_with(Query::Shared(query), Rejected::Return).await
    }

    /// Like [`resolve`](Self::resolve), but an answer that `retry_on`
    /// rejected is never the result: when every server tried gave such an
    /// answer (a SERVFAIL with `retry_on` listing `servfail`, say), the
    /// query fails as if none had answered, with every try in the error.
    /// For callers with somewhere else to go, such as forward-first
    /// falling back to another group.
    pub async fn resolve_accepted(&self, query: &[u8]) -> Result<Resolved, UpstreamError> {
        self.resolve_with(Query::Borrowed(query), Rejected::Fail).await
    }

    /// [`resolve_accepted`](Self::resolve_accepted) sharing the caller's
    /// bytes, as [`resolve_shared`](Self::resolve_shared) does.
    pub async fn resolve_accepted_shared(&self, query: &Arc<[u8]>) -> Result<Resolved, UpstreamError> {
        self.resolve_with(Query::Shared(query), Rejected::Fail).await
    }

    /// A slot for one more query in flight: at once, or within
    /// `queue_timeout` (and the deadline), or an overload error.
    async fn admit(&self, deadline: Instant) -> Result<OwnedSemaphorePermit, UpstreamError> {
        let inner = &self.inner;
        if let Ok(permit) = inner.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        inner.queued.fetch_add(1, Ordering::Relaxed);
        let wait = inner.config.queue_timeout.min(deadline.saturating_duration_since(Instant::now()));
        // Boxed: queueing is the overloaded case, and its timer would
        // otherwise be carried in every query's future.
        if let Ok(Ok(permit)) = Box::pin(tokio::time::timeout(wait, inner.slots.clone().acquire_owned())).await {
            return Ok(permit);
        }
        inner.overloaded.fetch_add(1, Ordering::Relaxed);
        let in_flight = self.group_stats().in_flight;
        tracing::debug!(group = %inner.config.name, in_flight, "upstream group overloaded; query refused");
        Err(UpstreamError::overloaded(&inner.config.name, in_flight, wait))
    }

    async fn resolve_with(&self, query: Query<'_>, rejected: Rejected) -> Result<Resolved, UpstreamError> {
        let config = &self.inner.config;
        let prepared = match query {
            Query::Shared(query) if config.recursion_desired => Prepared::shared(query, config.edns_payload),
            Query::Borrowed(query) if config.recursion_desired => Prepared::new(query, config.edns_payload),
            _ => {
                let mut without_rd = query.bytes().to_vec();
                signpost_wire::relay::set_rd(&mut without_rd, false);
                Prepared::new(&without_rd, config.edns_payload)
            }
        }
        .map_err(|error| UpstreamError::invalid_query(&config.name, error))?;
        let start = Instant::now();
        let deadline = start + config.total_timeout;
        let _slot = self.admit(deadline).await?;
        let mut flight = Flight::new(self.order(start), self.inner.servers.len());
        let log = AttemptLog::default();
        let mut fallback: Option<Answer> = None;
        // Made only when the loop takes over: a `FuturesUnordered` is two
        // allocations, and the common case never needs one.
        let mut running: Option<FuturesUnordered<Running<'_>>> = None;

        // The common case costs one timer: the first message, answered
        // within its retransmission timeout. Otherwise the loop takes over.
        let first = match self.send(&mut flight, (Reason::Next, start), &prepared, deadline, &log) {
            None => Err(End::Exhausted),
            // Asking in parallel (a zero hedge delay): the next servers are
            // asked now, not after a timer tick that the first answer can beat.
            Some(first) if self.hedge_delay_of(&flight, 0) == Some(Duration::ZERO) => {
                let first = started(first).await;
                running.get_or_insert_with(FuturesUnordered::new).push(first);
                Ok((Some(0), Reason::Hedge))
            }
            Some(mut first) => {
                let retransmit_at = self.retransmit_at(&flight, 0);
                let hedge_at = self.hedge_delay_of(&flight, 0).map(|delay| start + delay);
                let wake_at = [retransmit_at, hedge_at].into_iter().flatten().fold(deadline, Instant::min);
                match tokio::time::timeout_at(wake_at, &mut first).await {
                    Ok((number, decision)) => {
                        let expired = matches!(decision, Decision::Expired);
                        match self.settle(number, decision, &mut flight, &mut fallback, &log, deadline) {
                            Settled::Answer(answer) => Err(End::Answer(answer)),
                            Settled::Stop => Err(End::Exhausted),
                            Settled::Continue => Ok((None, if expired { Reason::Retransmit } else { Reason::Next })),
                        }
                    }
                    Err(_) => {
                        running.get_or_insert_with(FuturesUnordered::new).push(first);
                        let now = Instant::now();
                        if now >= deadline {
                            Err(End::Deadline)
                        } else if retransmit_at.is_some_and(|at| at <= now) {
                            self.mark_lost(&flight, 0, &log);
                            Ok((Some(0), Reason::Retransmit))
                        } else {
                            Ok((Some(0), Reason::Hedge))
                        }
                    }
                }
            }
        };
        let end = match first {
            Ok((latest, reason)) => {
                let running = running.get_or_insert_with(FuturesUnordered::new);
                // Boxed: the loop's future is large and rarely needed, and
                // every query's future would carry its size otherwise.
                Box::pin(self.run(&mut flight, running, latest, reason, &prepared, deadline, &log, &mut fallback)).await
            }
            Err(end) => end,
        };
        // Messages still in flight are dropped here (their IDs are given back).
        drop(running);
        match end {
            End::Answer(answer) => {
                log.close_open(&AttemptOutcome::Cancelled);
                Ok(self.resolved(answer, &log))
            }
            End::Deadline | End::Exhausted => {
                for (index, sent_at) in log.close_open(&AttemptOutcome::Timeout) {
                    self.record_timeout(index, None, sent_at);
                }
                if let Some(answer) = fallback.filter(|_| rejected == Rejected::Return) {
                    return Ok(self.resolved(answer, &log));
                }
                let attempts = log.take_attempts();
                // A last message whose wait was cut to the deadline ends as Exhausted at the deadline.
                if matches!(end, End::Deadline) || Instant::now() >= deadline {
                    Err(UpstreamError::deadline(&config.name, config.total_timeout, attempts))
                } else {
                    Err(UpstreamError::exhausted(&config.name, attempts))
                }
            }
        }
    }

    /// The query loop after the first message: retransmissions, hedges and
    /// moving on, until an answer, the deadline, or nothing left to try.
    /// `latest` is the message whose retransmission timeout runs; the next
    /// message is sent at once, for `reason`.
    #[allow(clippy::too_many_arguments)]
    async fn run<'a>(
        &'a self,
        flight: &mut Flight,
        running: &mut FuturesUnordered<Running<'a>>,
        mut latest: Option<usize>,
        reason: Reason,
        query: &'a Prepared,
        deadline: Instant,
        log: &'a AttemptLog,
        fallback: &mut Option<Answer>,
    ) -> End {
        let config = &self.inner.config;
        // Messages in `running` (the first one too) now keep their own expiry.
        log.looping.store(true, Ordering::Relaxed);
        let max_parallel = config.hedge.map_or(1, |hedge| hedge.max_parallel.max(1));
        // Without `timeout` in retry_on, a lost message is not sent again:
        // the query waits for its answer until it expires.
        let mut stop = reason == Reason::Retransmit && !config.retry_on.timeout;
        let mut send_now = Some(reason);
        let mut hedge_at: Option<Instant> = None;
        let far = deadline + Duration::from_secs(3600);
        loop {
            if !stop && (send_now.is_some() || running.is_empty()) && self.active(flight, log) < max_parallel {
                let reason = send_now.take().unwrap_or(Reason::Next);
                if let Some(message) = self.send(flight, (reason, Instant::now()), query, deadline, log) {
                    let message = started(message).await;
                    running.push(message);
                    let number = flight.sent.len() - 1;
                    latest = Some(number);
                    let delay = self.hedge_delay_of(flight, number);
                    // In parallel: the next server at once (see `resolve`), up
                    // to max_parallel messages in all. Counting open messages
                    // alone is not enough: an answer already recorded closes
                    // its message before `running` yields it, and the burst
                    // would go on to ask a server a second time.
                    if delay == Some(Duration::ZERO)
                        && flight.sent.len() < max_parallel
                        && self.active(flight, log) < max_parallel
                    {
                        send_now = Some(Reason::Hedge);
                        continue;
                    }
                    hedge_at = delay.map(|delay| Instant::now() + delay);
                }
            }
            send_now = None;
            if running.is_empty() {
                return End::Exhausted;
            }
            let retransmit_at = latest
                .filter(|&number| !stop && self.is_open(flight, number, log))
                .and_then(|number| self.retransmit_at(flight, number));
            let hedge_due = hedge_at.filter(|_| !stop && self.active(flight, log) < max_parallel);
            let wake_at = [retransmit_at, hedge_due].into_iter().flatten().min();
            tokio::select! {
                // An answer first, then the deadline, then timers: when the
                // task was not polled for a while and several are ready,
                // a timer must not outlive the deadline.
                biased;
                Some((number, decision)) = running.next() => {
                    let expired = matches!(decision, Decision::Expired);
                    match self.settle(number, decision, flight, fallback, log, deadline) {
                        Settled::Answer(answer) => return End::Answer(answer),
                        Settled::Stop => stop = true,
                        Settled::Continue if latest == Some(number) => {
                            // The message being waited on is done: move on at once.
                            latest = None;
                            hedge_at = None;
                            send_now = Some(if expired { Reason::Retransmit } else { Reason::Next });
                        }
                        Settled::Continue => {}
                    }
                }
                () = tokio::time::sleep_until(deadline) => return End::Deadline,
                () = tokio::time::sleep_until(wake_at.unwrap_or(far)), if wake_at.is_some() => {
                    if let Some(number) = latest
                        && retransmit_at.is_some_and(|at| at <= Instant::now())
                    {
                        self.mark_lost(flight, number, log);
                        send_now = Some(Reason::Retransmit);
                    } else {
                        tracing::debug!(group = %config.name, "hedging: asking another server too");
                        send_now = Some(Reason::Hedge);
                    }
                    hedge_at = None;
                }
            }
        }
    }

    /// Messages running that are not presumed lost.
    fn active(&self, flight: &Flight, log: &AttemptLog) -> usize {
        (0..flight.sent.len()).filter(|&number| self.is_open(flight, number, log)).count()
    }

    fn is_open(&self, flight: &Flight, number: usize, log: &AttemptLog) -> bool {
        flight.sent.get(number).is_some_and(|sent| log.is_open(sent.slot))
    }

    /// When message `number` is presumed lost, if it is retransmitted at all.
    fn retransmit_at(&self, flight: &Flight, number: usize) -> Option<Instant> {
        let sent = flight.sent.get(number)?;
        let server = self.server(sent.server)?;
        (server.is_udp() && self.inner.config.retry_on.timeout).then(|| sent.started + sent.timeout)
    }

    /// Message `number` had no answer within its timeout: back its server off
    /// and record the loss (a later answer still counts).
    fn mark_lost(&self, flight: &Flight, number: usize, log: &AttemptLog) {
        let Some(sent) = flight.sent.get(number) else { return };
        if !log.is_open(sent.slot) {
            return;
        }
        log.lose(sent.slot, sent.timeout);
        self.record_timeout(sent.server, Some(sent.timeout), sent.started);
    }

    /// Pick the next server and send it the query: a message future, or
    /// `None` when no server is left to ask.
    fn send<'a>(
        &'a self,
        flight: &mut Flight,
        (reason, started): (Reason, Instant),
        query: &'a Prepared,
        deadline: Instant,
        log: &'a AttemptLog,
    ) -> Option<Running<'a>> {
        let index = self.next_server(flight)?;
        let server = self.server(index)?;
        let config = &self.inner.config;
        let state = flight.servers.get_mut(index)?;
        state.sends = state.sends.saturating_add(1);
        state.wait = if server.is_udp() {
            // Each message of a query to the same server waits twice as long
            // as the one before (RFC 6298 §5.5), whatever the estimate says.
            server.stats.retransmit_timeout().max(state.wait.saturating_mul(2)).min(config.per_try_timeout)
        } else {
            config.per_try_timeout
        };
        let timeout = state.wait;
        // A UDP message's random ID is drawn here, so that the try is
        // logged with it in one go (one lock of the log, not two).
        let id = server.is_udp().then(rand::random::<u16>);
        let slot = log.begin(index, server.config.address, server.config.protocol, started, id);
        server.stats.sent();
        if reason == Reason::Retransmit {
            server.stats.retransmitted();
        }
        flight.sent.push(Sent { server: index, slot, started, timeout });
        let number = flight.sent.len() - 1;
        let expires = (started + config.per_try_timeout).min(deadline);
        Some(Box::pin(async move {
            (number, self.try_server(index, query, (slot, id), started, expires, deadline, log).await)
        }))
    }

    /// The next server in the policy's order that may be asked again.
    fn next_server(&self, flight: &mut Flight) -> Option<usize> {
        let len = flight.order.len();
        for step in 0..len {
            let position = (flight.cursor + step) % len;
            let Some(&index) = flight.order.get(position) else { continue };
            let Some(server) = self.server(index) else { continue };
            // A server marked down is only asked because every server is:
            // once per query, as its probe finds out whether it is back.
            let limit = if server.is_udp() && server.stats.is_up() { MAX_SENDS_PER_SERVER } else { 1 };
            let Some(state) = flight.servers.get(index) else { continue };
            if state.finished || state.sends >= limit {
                continue;
            }
            flight.cursor = position + 1;
            return Some(index);
        }
        None
    }

    /// Apply what message `number` came to.
    fn settle(
        &self,
        number: usize,
        decision: Decision,
        flight: &mut Flight,
        fallback: &mut Option<Answer>,
        log: &AttemptLog,
        deadline: Instant,
    ) -> Settled {
        let Some(server) = flight.sent.get(number).map(|sent| sent.server) else { return Settled::Continue };
        match decision {
            Decision::Accept(answer) => Settled::Answer(answer),
            Decision::MoveOn(answer) => {
                if answer.is_some() {
                    *fallback = answer;
                }
                if let Some(state) = flight.servers.get_mut(server) {
                    state.finished = true;
                }
                Settled::Continue
            }
            Decision::Stop => Settled::Stop,
            // Cut short by the deadline: recorded with the other open tries as the query ends.
            Decision::Expired if Instant::now() >= deadline => Settled::Stop,
            Decision::Expired => {
                self.mark_lost(flight, number, log);
                if self.inner.config.retry_on.timeout { Settled::Continue } else { Settled::Stop }
            }
        }
    }

    fn resolved(&self, answer: Answer, log: &AttemptLog) -> Resolved {
        Resolved {
            response: answer.response,
            server: answer.server,
            protocol: answer.protocol,
            attempts: log.take_attempts(),
        }
    }

    fn server(&self, index: usize) -> Option<&Arc<Server>> {
        self.inner.servers.get(index)
    }

    fn hedge_delay_of(&self, flight: &Flight, number: usize) -> Option<Duration> {
        self.hedge_delay(flight.sent.get(number)?.server)
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
    fn order(&self, now: Instant) -> Order {
        let servers = &self.inner.servers;
        let count = servers.len();
        let mut order: Order = (0..count).collect();
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
        let up = |index: &usize| self.server(*index).is_some_and(|server| server.stats.is_up());
        if order.iter().any(up) {
            order.retain(|index| up(index));
            return order;
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
            let answered = server.probe(timeout).await;
            server.stats.probe_finished(answered, backoff, Instant::now());
        });
    }

    /// A message to server `index` sent at `sent_at` had no answer: within
    /// its retransmission timeout `used`, or (`None`) before the query ended.
    fn record_timeout(&self, index: usize, used: Option<Duration>, sent_at: Instant) {
        let config = &self.inner.config;
        let Some(server) = self.server(index) else { return };
        let now = Instant::now();
        let marked_down = match used {
            Some(used) => server.stats.timed_out(used, sent_at, config.max_fails, config.probe_backoff, now),
            None => server.stats.cut_short(sent_at, config.max_fails, config.probe_backoff, now),
        };
        if marked_down {
            tracing::warn!(group = %config.name, server = %server.config, max_fails = config.max_fails, "upstream marked down");
        }
    }

    fn record_failure(&self, index: usize, sent_at: Instant) {
        let config = &self.inner.config;
        let Some(server) = self.server(index) else { return };
        if server.stats.failed(sent_at, config.max_fails, config.probe_backoff, Instant::now()) {
            tracing::warn!(group = %config.name, server = %server.config, max_fails = config.max_fails, "upstream marked down");
        }
    }

    /// One message to server `index` (logged in `slot`, with the UDP ID `id`): its own transport
    /// until `expires`, then TCP if UDP came back truncated.
    #[allow(clippy::too_many_arguments)]
    async fn try_server(
        &self,
        index: usize,
        query: &Prepared,
        (slot, id): (usize, Option<u16>),
        started: Instant,
        expires: Instant,
        deadline: Instant,
        log: &AttemptLog,
    ) -> Decision {
        let Some(server) = self.server(index) else { return Decision::MoveOn(None) };
        let retry_on = self.inner.config.retry_on;
        let protocol = server.config.protocol;
        // A retransmitted server's first message is bounded by the query's
        // retransmission timer until the loop takes over.
        let lazy = server.is_udp() && retry_on.timeout;
        // Pinned here, in this future's own state: passed by value to an
        // async function it would be kept twice (the argument and the local).
        let exchange = std::pin::pin!(self.exchange(index, protocol, query, (slot, id), started, log));
        let expiry = std::pin::pin!(None);
        let Some(exchange) = until_expiry(exchange, expiry, expires, lazy, log).await else { return Decision::Expired };
        match exchange {
            Exchange::Answer { response, truncated: true, .. } if protocol == Protocol::Udp => {
                log.finish(slot, AttemptOutcome::Truncated);
                let truncated_answer = Answer { response, server: server.config.address, protocol };
                // Over TCP with a fresh per-try timeout, inside the deadline.
                let started = Instant::now();
                let slot = log.begin(index, server.config.address, Protocol::Tcp, started, None);
                server.stats.sent();
                let budget = self.inner.config.per_try_timeout.min(deadline.saturating_duration_since(started));
                // Boxed: the fall-back to TCP is the rare case, and every
                // message's future would carry its size otherwise.
                let tcp = Box::pin(tokio::time::timeout(
                    budget,
                    self.exchange(index, Protocol::Tcp, query, (slot, None), started, log),
                ));
                match tcp.await {
                    Ok(Exchange::Answer { response, rcode, truncated, at }) => self.judge(
                        Answer { response, server: server.config.address, protocol: Protocol::Tcp },
                        (rcode, truncated, at),
                        slot,
                        log,
                    ),
                    failed => {
                        if failed.is_err() {
                            log.finish(slot, AttemptOutcome::Timeout);
                            self.record_timeout(index, None, started);
                        }
                        // The truncated answer stands, unless retry_on says truncated answers are failures.
                        if retry_on.truncated { Decision::MoveOn(None) } else { Decision::Accept(truncated_answer) }
                    }
                }
            }
            Exchange::Answer { response, rcode, truncated, at } => {
                let answer = Answer { response, server: server.config.address, protocol };
                self.judge(answer, (rcode, truncated, at), slot, log)
            }
            Exchange::Failed { outcome: AttemptOutcome::Overloaded } => Decision::MoveOn(None),
            Exchange::Failed { outcome } => {
                let moves_on = if outcome == AttemptOutcome::Timeout { retry_on.timeout } else { retry_on.unreachable };
                if moves_on { Decision::MoveOn(None) } else { Decision::Stop }
            }
        }
    }

    /// Accept an answer, or reject it as `retry_on` says.
    fn judge(
        &self,
        answer: Answer,
        (rcode, truncated, at): (Rcode, bool, Instant),
        slot: usize,
        log: &AttemptLog,
    ) -> Decision {
        let retry_on = self.inner.config.retry_on;
        if truncated {
            log.finish_at(slot, AttemptOutcome::Truncated, at);
            return if retry_on.truncated { Decision::MoveOn(Some(answer)) } else { Decision::Accept(answer) };
        }
        let rejected = match rcode {
            Rcode::SERVFAIL => retry_on.servfail,
            Rcode::REFUSED => retry_on.refused,
            Rcode::NXDOMAIN => retry_on.nxdomain,
            _ => false,
        };
        if rejected {
            log.finish_at(slot, AttemptOutcome::Rejected(rcode), at);
            Decision::MoveOn(Some(answer))
        } else {
            log.finish_at(slot, AttemptOutcome::Answered(rcode), at);
            Decision::Accept(answer)
        }
    }

    /// One exchange with one server, counted: answers feed its round-trip
    /// estimate, failures its health. Timeouts are the caller's.
    async fn exchange(
        &self,
        index: usize,
        protocol: Protocol,
        query: &Prepared,
        (slot, id): (usize, Option<u16>),
        started: Instant,
        log: &AttemptLog,
    ) -> Exchange {
        let Some(server) = self.server(index) else {
            return Exchange::Failed { outcome: AttemptOutcome::Failed("no such server".into()) };
        };
        let failure = match server.exchange_logged(protocol, query, Some((log, slot, id))).await {
            Ok(response) => match inspect(&response) {
                Ok(verdict) => {
                    if protocol != Protocol::Udp
                        && let Ok(header) = signpost_wire::Header::parse(&response)
                    {
                        log.set_id(slot, header.id);
                    }
                    let at = Instant::now();
                    server.stats.answered_at(at.saturating_duration_since(started), log.is_lost(slot), at);
                    return Exchange::Answer { response, rcode: verdict.rcode, truncated: verdict.truncated, at };
                }
                Err(reason) => Failure::Failed(reason),
            },
            Err(failure) => failure,
        };
        if failure != Failure::Overloaded {
            self.record_failure(index, started);
        }
        let outcome = failure.into_outcome();
        tracing::debug!(group = %self.inner.config.name, server = %server.config, %outcome, "upstream try failed");
        log.finish(slot, outcome.clone());
        Exchange::Failed { outcome }
    }
}

/// `exchange`, or `None` when `expires` passes first (the timer is set in
/// `expiry`, which the caller pins next to `exchange`). With `lazy`, the
/// expiry timer is set only once the query loop runs (`log.looping`):
/// before that the query waits on its first message alone, under its
/// retransmission timer, which ends no later than `expires` (the
/// retransmission timeout is capped at `per_try_timeout`). A query answered
/// within its retransmission timeout, the common case, so costs one timer
/// instead of two. The loop polls the message again when it takes it over
/// (`FuturesUnordered` polls what is pushed), which sets the timer for the
/// same instant it always had.
fn until_expiry<'a, F: Future>(
    mut exchange: Pin<&'a mut F>,
    mut expiry: Pin<&'a mut Option<tokio::time::Sleep>>,
    expires: Instant,
    lazy: bool,
    log: &'a AttemptLog,
) -> impl Future<Output = Option<F::Output>> + 'a {
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(output) = exchange.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if expiry.is_none() && (!lazy || log.looping.load(Ordering::Relaxed)) {
            expiry.set(Some(tokio::time::sleep_until(expires)));
        }
        match expiry.as_mut().as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    })
}

/// What to do with an answer `retry_on` rejected when no server did better.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rejected {
    /// Return the last one.
    Return,
    /// Fail the query.
    Fail,
}

/// What a settled message means for the query loop.
enum Settled {
    Answer(Answer),
    Continue,
    Stop,
}

/// How a query's loop ended.
enum End {
    Answer(Answer),
    Deadline,
    Exhausted,
}

/// The result of one exchange.
enum Exchange {
    /// `at`: when it came (one clock reading for the server's figures and the try's log).
    Answer {
        response: Bytes,
        rcode: Rcode,
        truncated: bool,
        at: Instant,
    },
    Failed {
        outcome: AttemptOutcome,
    },
}

fn validate(config: &GroupConfig) -> Result<(), Error> {
    let group = || config.name.clone();
    if config.servers.is_empty() {
        return Err(Error::NoServers { group: group() });
    }
    for (field, zero) in [
        ("per_try_timeout", config.per_try_timeout.is_zero()),
        ("total_timeout", config.total_timeout.is_zero()),
        ("min_try_timeout", config.min_try_timeout.is_zero()),
        ("max_outstanding", config.max_outstanding == 0),
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
        assert_eq!(group.order(now)[..], [0, 1, 2]);
        assert_eq!(group.order(now)[..], [1, 2, 0]);
        assert_eq!(group.order(now)[..], [2, 0, 1]);
        assert_eq!(group.order(now)[..], [0, 1, 2]);
    }

    #[test]
    fn random_orders_hold_every_server_once() {
        let group = group(5, Policy::Random);
        for _ in 0..20 {
            let mut order = group.order(Instant::now());
            order.sort_unstable();
            assert_eq!(order[..], [0, 1, 2, 3, 4]);
        }
    }

    #[test]
    fn fastest_puts_the_lowest_smoothed_rtt_first_and_unmeasured_before_all() {
        let group = group(3, Policy::Fastest);
        group.server(0).unwrap().stats.answered(Duration::from_millis(50), false);
        group.server(1).unwrap().stats.answered(Duration::from_millis(5), false);
        assert_eq!(group.order(Instant::now())[..], [2, 1, 0]);
    }

    #[test]
    fn messages_cycle_through_the_order_skipping_finished_servers_up_to_the_cap() {
        let group = group(3, Policy::Sequential);
        let mut flight = Flight::new(smallvec::smallvec![0, 1, 2], 3);
        let mut next = || {
            let index = group.next_server(&mut flight)?;
            flight.servers[index].sends += 1;
            Some(index)
        };
        assert_eq!([next(), next(), next(), next()], [Some(0), Some(1), Some(2), Some(0)]);
        flight.servers[1].finished = true;
        let mut rest = Vec::new();
        while let Some(index) = group.next_server(&mut flight) {
            flight.servers[index].sends += 1;
            rest.push(index);
        }
        // Server 1 is done; 0 and 2 get up to five messages each.
        assert_eq!(rest, [2, 0, 2, 0, 2, 0, 2]);
        assert_eq!((flight.servers[0].sends, flight.servers[2].sends), (MAX_SENDS_PER_SERVER, MAX_SENDS_PER_SERVER));
    }

    #[test]
    fn down_servers_are_skipped_unless_all_are_down() {
        let group = group(3, Policy::Sequential);
        let now = Instant::now();
        for _ in 0..3 {
            group.record_timeout(1, None, now);
        }
        assert_eq!(group.order(now)[..], [0, 2]);
        for _ in 0..3 {
            group.record_failure(0, now);
            group.record_timeout(2, None, now);
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
    fn a_try_lasts_from_its_send_to_the_clock_reading_it_is_finished_with() {
        let log = AttemptLog::default();
        let address = SocketAddr::from(([127, 0, 0, 1], 53));
        let opened = Instant::now();
        let slot = log.begin(0, address, Protocol::Udp, opened, Some(7));
        log.finish_at(slot, AttemptOutcome::Answered(Rcode::NOERROR), opened + Duration::from_millis(5));
        let attempts = log.take_attempts();
        assert_eq!(attempts[0].duration, Duration::from_millis(5));
        // A reading from before the send (another thread's, say) is no negative time.
        let slot = log.begin(0, address, Protocol::Udp, opened, Some(8));
        log.finish_at(slot, AttemptOutcome::Answered(Rcode::NOERROR), opened - Duration::from_millis(1));
        assert_eq!(log.take_attempts()[0].duration, Duration::ZERO);
    }

    #[test]
    fn the_log_closes_running_tries() {
        let log = AttemptLog::default();
        let address = SocketAddr::from(([127, 0, 0, 1], 53));
        let first = log.begin(0, address, Protocol::Udp, Instant::now(), Some(7));
        log.begin(1, address, Protocol::Tcp, Instant::now(), None);
        log.finish(first, AttemptOutcome::Answered(Rcode::NOERROR));
        let closed: Vec<usize> =
            log.close_open(&AttemptOutcome::Cancelled).into_iter().map(|(server, _)| server).collect();
        assert_eq!(closed, [1]);
        let attempts = log.take_attempts();
        assert_eq!(attempts[0].outcome, AttemptOutcome::Answered(Rcode::NOERROR));
        // The UDP try's ID is in its record from the start; the TCP one's comes with its answer.
        assert_eq!((attempts[0].id, attempts[1].id), (Some(7), None));
        assert_eq!(attempts[1].outcome, AttemptOutcome::Cancelled);
    }
}
