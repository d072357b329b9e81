//! The query pipeline: header → ACL → limits → NOTIMP/FORMERR → BADVERS →
//! rules → local answer, cache or upstream → response.
//!
//! Every transport goes through one seam, [`Pipeline::handle`]: the query's
//! bytes and where they came from in; out comes a [`Reply`] — an answer
//! written into the caller's buffer now, a [`Pending`] answer to await, no
//! answer, or "close the connection". The synchronous part is allocation
//! free for local answers and cache hits, so the UDP workers run it inline
//! on their batches. A query that needs an upstream becomes a
//! [`Pending`] holding a forward job ([`forward`]), which coalesces identical
//! questions in flight, caches, and relays the upstream's packet faithfully.
//!
//! The modules follow the jobs: [`respond`] writes the answers the pipeline
//! makes itself, [`forward`] asks upstream, [`explain`] runs a question
//! without answering anyone, [`log`] hands answers to the query log.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ipnet::IpNet;
use signpost_rules::{Client, Decision, RuleSet, Transport};
use signpost_upstream::Upstreams;
use signpost_wire::{
    Buffer, Edns, EdnsOption, ExtendedErrorCode, Message, Opcode, OptionCode, Question, Rcode, RecordType, Section,
    ToName,
};
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::cache::{Cache, CacheKey, Lookup, ServeAs};
use crate::config::ServerConfig;
use crate::dnstap::{ClientSide, Tap};
use crate::hook::{Handled, HandlerQuery, QueryHandler};
use crate::limits::RateLimiter;
use crate::metrics::{DecisionIndex, DropIndex, Metrics, TransportIndex};
use crate::querylog::{QueryLog, Trace};
use crate::test_layer::{Intercept, RecordedQuery, TestLayer};

mod explain;
mod firewall;
mod forward;
mod log;
mod respond;
#[cfg(test)]
mod tests;

use firewall::ChainCheck;
pub(crate) use forward::ForwardFailure;
use forward::{Coalescing, ForwardJob, JobText, LogContext};

/// The rules and upstreams in force; replaced as a whole on reload.
pub struct State {
    /// The rule set.
    pub rules: Arc<RuleSet>,
    /// The upstream groups.
    pub upstreams: Arc<Upstreams>,
    /// DNSSEC validation of forwarded answers, when on: answers get AD only
    /// when proven, bogus ones SERVFAIL with an extended error.
    pub validator: Option<Arc<signpost_dnssec::Validator>>,
    /// Which forwarded answers the validator judges (all of them unless narrowed).
    pub validation_scope: ValidationScope,
}

impl State {
    /// Rules and upstreams without DNSSEC validation.
    pub fn new(rules: Arc<RuleSet>, upstreams: Arc<Upstreams>) -> Self {
        Self { rules, upstreams, validator: None, validation_scope: ValidationScope::default() }
    }

    /// How an answer from `group` to a query in `view` is validated, if at
    /// all: the validator and what the client is shown.
    pub(crate) fn validation_for(&self, view: &str, group: &str, client: ClientBits) -> Option<Validating<'_>> {
        let validator = self.validator.as_ref()?;
        let scope = &self.validation_scope;
        if scope.views.as_ref().is_some_and(|views| !views.contains(view))
            || scope.groups.as_ref().is_some_and(|groups| !groups.contains(group))
        {
            return None;
        }
        if scope.ignore_client_bits {
            return Some(Validating { validator, dnssec_ok: false, understands_ad: false });
        }
        // CD from the client: it validates itself, and gets what upstream sent.
        if client.checking_disabled {
            return None;
        }
        // RFC 6840 §5.8: AD only for clients that show they understand it, with DO or AD.
        Some(Validating {
            validator,
            dnssec_ok: client.dnssec_ok,
            understands_ad: client.dnssec_ok || client.authentic_data,
        })
    }
}

/// Which forwarded answers are validated, when a validator is set. The
/// default is every answer, with the client's DO, CD and AD bits honoured
/// as Unbound honours them.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ValidationScope {
    /// Only queries in these views (every view when `None`).
    pub views: Option<Arc<std::collections::BTreeSet<String>>>,
    /// Only answers from these upstream groups (every group when `None`).
    pub groups: Option<Arc<std::collections::BTreeSet<String>>>,
    /// Validate whatever the client's CD bit says, never set AD and never
    /// return DNSSEC records, as Route 53 Resolver does ("ignores the DO
    /// and CD bits": a bogus answer is SERVFAIL, a secure one looks like
    /// any other).
    pub ignore_client_bits: bool,
}

impl ValidationScope {
    /// Validate only queries in `views`, only answers from `groups`; with
    /// `ignore_client_bits`, as Route 53 Resolver does.
    pub fn new(
        views: Option<std::collections::BTreeSet<String>>,
        groups: Option<std::collections::BTreeSet<String>>,
        ignore_client_bits: bool,
    ) -> Self {
        Self { views: views.map(Arc::new), groups: groups.map(Arc::new), ignore_client_bits }
    }
}

/// The client's DNSSEC-related bits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientBits {
    pub(crate) dnssec_ok: bool,
    pub(crate) checking_disabled: bool,
    pub(crate) authentic_data: bool,
}

/// A forwarded answer to validate, and how to show the result.
pub(crate) struct Validating<'s> {
    pub(crate) validator: &'s Arc<signpost_dnssec::Validator>,
    /// Keep RRSIG, NSEC and NSEC3 records in the answer.
    pub(crate) dnssec_ok: bool,
    /// Set AD on secure answers.
    pub(crate) understands_ad: bool,
}

/// Per-listener facts the pipeline needs.
pub(crate) struct ListenerContext {
    pub(crate) id: Arc<str>,
    pub(crate) transport: Transport,
    pub(crate) allow: Vec<IpNet>,
    pub(crate) max_qps: Option<RateLimiter>,
    /// The rate-limit group it joined, shared with the group's other listeners.
    pub(crate) group_limit: Option<RateLimiter>,
    /// The address the socket is bound to, when it is not a wildcard.
    pub(crate) bound: Option<IpAddr>,
    /// The port the socket is bound to (for dnstap).
    pub(crate) port: u16,
    /// Whether the server's per-client rate limit applies here.
    pub(crate) client_rate_limit: bool,
}

impl ListenerContext {
    fn transport_index(&self) -> TransportIndex {
        match self.transport {
            Transport::Udp => TransportIndex::Udp,
            Transport::Tcp => TransportIndex::Tcp,
            Transport::Dot => TransportIndex::Dot,
            Transport::Doh => TransportIndex::Doh,
        }
    }
}

/// One query as it arrived.
pub(crate) struct Incoming<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) peer: SocketAddr,
    /// The address the query arrived on, when known.
    pub(crate) local: Option<IpAddr>,
    pub(crate) listener: &'a ListenerContext,
    /// Largest response the transport can carry (UDP: the client's EDNS size).
    pub(crate) max_response: Option<usize>,
    pub(crate) now: Instant,
    /// The rules and upstreams, when the transport loaded them for a whole
    /// batch of queries (a load per query cost about 140 instructions);
    /// `None`: the pipeline loads them.
    pub(crate) state: Option<&'a Arc<State>>,
}

/// What the pipeline does with one query: the seam between every
/// transport and the pipeline.
pub(crate) enum Reply {
    /// The answer is in the caller's buffer: `len` bytes from where the
    /// buffer ended when [`Pipeline::handle`] was called.
    Now { len: usize },
    /// The answer comes later: await [`Pending::answer`].
    Later(Pending),
    /// No answer.
    Silent,
    /// No answer, and the connection is to be closed (only for stream
    /// transports; the others are told [`Reply::Silent`]).
    Close,
    /// The first message of a stream of answers is in the caller's buffer
    /// (`len` bytes, as for [`Reply::Now`]); stream transports send `rest`
    /// after it, the others only the first (a [`QueryHandler`]'s zone transfer).
    Stream { len: usize, rest: Box<dyn Iterator<Item = Vec<u8>> + Send> },
}

/// An answer that takes time: a forward, or an answer held back by a test
/// layer's delay. Until it is answered or dropped (its client gone, say)
/// it counts among the queries in flight that shutdown waits for.
pub(crate) struct Pending {
    pipeline: Arc<Pipeline>,
    work: Work,
    _in_flight: TaskTrackerToken,
}

enum Work {
    Forward(Box<ForwardJob>),
    Delayed { response: Vec<u8>, delay: Duration },
}

impl Pending {
    /// The answer, or `None` when there is none to send.
    pub(crate) async fn answer(self) -> Option<Vec<u8>> {
        match self.work {
            Work::Forward(mut job) => {
                // Boxed: a forward's future is large (the upstream group's
                // query loop and its timers), and a transport that spawns
                // this future (UDP) has it copied whole several times on
                // its way into the task's cell, and again as the task ends.
                let response = Box::pin(self.pipeline.forward(&mut job)).await;
                if let (Some(tap), Some(client), Some(response)) = (&self.pipeline.dnstap, &job.client, &response) {
                    tap.client_response(client, response);
                }
                if let (Some(layer), Some(sequence)) = (&self.pipeline.layer, job.record) {
                    layer.record_finish(sequence, response.as_deref(), job.trace.as_deref(), "drop");
                }
                response
            }
            Work::Delayed { response, delay } => {
                tokio::time::sleep(delay).await;
                Some(response)
            }
        }
    }
}

/// Whether a run of the pipeline serves a client, or explains: an explain
/// run answers no one, moves no metric, fills no cache and is not recorded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Purpose {
    Serve,
    Explain,
}

/// What the synchronous steps came to; [`Pipeline::handle`] turns it into a
/// [`Reply`], [`Pipeline::explain`] into a trace.
enum Step {
    /// An answer of this length was written.
    Answered { len: usize },
    /// An answer was written, to be sent this much later (a test layer's delay).
    Delayed { len: usize, delay: Duration },
    /// The query needs an upstream.
    Forward(Box<ForwardJob>),
    /// No answer.
    Drop,
    /// Close the connection.
    Close,
    /// A handler's stream: the first message of this length was written.
    Stream { len: usize, rest: Box<dyn Iterator<Item = Vec<u8>> + Send> },
}

/// The pipeline shared by every listener.
pub(crate) struct Pipeline {
    pub(crate) state: ArcSwap<State>,
    pub(crate) cache: Cache,
    pub(crate) metrics: Arc<Metrics>,
    /// Where explain runs count: nowhere anyone reads.
    uncounted: Metrics,
    pub(crate) log: Option<QueryLog>,
    pub(crate) layer: Option<TestLayer>,
    /// dnstap output, when configured: messages queued for its writer.
    pub(crate) dnstap: Option<Tap>,
    /// The application's handler, asked before the rules.
    pub(crate) handler: Option<Arc<dyn QueryHandler>>,
    pub(crate) config: ServerConfig,
    per_client: Option<RateLimiter>,
    /// Response rate limiting on UDP, when configured.
    response_rate: Option<ResponseRateLimit>,
    /// This server's mark on the queries it forwards ([`LOOP_MARKER`]).
    instance: [u8; 8],
    coalescing: Coalescing,
    /// Queries answered after the synchronous steps: each [`Pending`] holds
    /// a token until it is answered or dropped, and shutdown waits for them.
    pub(crate) in_flight: TaskTracker,
}

/// The EDNS option (from the range for local use, RFC 6891 §9) in which
/// forwarded queries carry the 8-byte identities of the Signpost servers
/// they have passed through. A query that arrives carrying our own has gone
/// round a forwarding loop.
pub(crate) const LOOP_MARKER: OptionCode = OptionCode(65_333);

/// Most servers a query may pass through before it is taken for a loop
/// (one made of servers that each see it only once, say, after a restart).
pub(crate) const MAX_HOPS: usize = 16;

/// Response rate limiting: the per-network buckets and the slip count.
struct ResponseRateLimit {
    limiter: RateLimiter,
    slip: u32,
    limited: AtomicU32,
}

/// A fresh random identity for a pipeline: std's hasher keys are random
/// per process and differ between calls within it.
fn instance_identity() -> [u8; 8] {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.finish().to_be_bytes()
}

/// Bits of a parsed query the response builders need.
struct QueryFacts<'a> {
    message: Message<'a>,
    /// Its one question, as `inspect` read it (responses start from it
    /// rather than reading the question section again).
    question: Question<'a>,
    client_edns: Option<Edns<'a>>,
}

impl Pipeline {
    pub(crate) fn new(
        config: ServerConfig,
        state: State,
        metrics: Arc<Metrics>,
        log: Option<QueryLog>,
        layer: Option<TestLayer>,
    ) -> Self {
        let per_client = config
            .limits
            .per_client_qps
            .map(|rate| RateLimiter::per_client(rate, config.limits.per_client_burst.unwrap_or(rate)));
        let response_rate = config.limits.response_rate_limit.as_ref().map(|rrl| ResponseRateLimit {
            limiter: RateLimiter::per_network(
                rrl.responses_per_second,
                rrl.burst.unwrap_or(rrl.responses_per_second),
                rrl.ipv4_prefix,
                rrl.ipv6_prefix,
            ),
            slip: rrl.slip,
            limited: AtomicU32::new(0),
        });
        Self {
            state: ArcSwap::from_pointee(state),
            cache: Cache::with_stats(config.cache.clone(), metrics.cache_stats()),
            metrics,
            uncounted: Metrics::default(),
            log,
            layer,
            dnstap: None,
            handler: None,
            config,
            per_client,
            response_rate,
            instance: instance_identity(),
            coalescing: Coalescing::default(),
            in_flight: TaskTracker::new(),
        }
    }

    /// The counters a run of `purpose` moves.
    fn counters(&self, purpose: Purpose) -> &Metrics {
        match purpose {
            Purpose::Serve => &self.metrics,
            Purpose::Explain => &self.uncounted,
        }
    }

    /// The seam: answer one query. An answer made now is written into `out`
    /// (for UDP, straight into the outgoing batch); anything slower comes
    /// back as a [`Pending`] that the transport awaits or spawns.
    pub(crate) fn handle(self: &Arc<Self>, incoming: &Incoming<'_>, out: &mut impl Buffer) -> Reply {
        let recording = self.layer.as_ref().is_some_and(TestLayer::is_recording);
        let mut trace = (self.log.is_some() || recording).then(Trace::default);
        let start = out.len();
        let mut record = None;
        // dnstap off: this branch is all it costs.
        let tapped = self.dnstap.as_ref().map(|tap| {
            let client = ClientSide {
                peer: incoming.peer,
                local: incoming.local.or(incoming.listener.bound).map(|ip| SocketAddr::new(ip, incoming.listener.port)),
                transport: incoming.listener.transport,
                arrived: std::time::SystemTime::now(),
            };
            tap.client_query(&client, incoming.bytes);
            (tap, client)
        });
        let mut step = self.run(incoming, out, &mut trace, &mut record, Purpose::Serve);
        if let Some((tap, client)) = tapped {
            match &mut step {
                Step::Answered { .. } | Step::Delayed { .. } | Step::Stream { .. } => {
                    tap.client_response(&client, out.as_slice().get(start..).unwrap_or_default());
                }
                Step::Forward(job) if tap.logs_client_responses() => job.client = Some(client),
                Step::Forward(_) | Step::Drop | Step::Close => {}
            }
        }
        // A recorded query answered now, or never, is finished now; a
        // forward job finishes its own when answered.
        if let (Some(layer), Some(sequence)) = (&self.layer, record) {
            match &step {
                Step::Answered { .. } | Step::Delayed { .. } | Step::Stream { .. } => {
                    let response = out.as_slice().get(start..).unwrap_or_default();
                    layer.record_finish(sequence, Some(response), trace.as_ref(), "drop");
                }
                Step::Drop => layer.record_finish(sequence, None, trace.as_ref(), "drop"),
                Step::Close => layer.record_finish(sequence, None, trace.as_ref(), "close"),
                Step::Forward(_) => {}
            }
        }
        // A trace still here was not handed to a forward job: log it now.
        // A stream (a zone transfer out) is logged once, by its first message.
        // Matched on the step first: a tuple with the trace moved the whole
        // (empty) `Option<Trace>`, 312 bytes, on every query.
        if matches!(step, Step::Answered { .. } | Step::Delayed { .. } | Step::Stream { .. })
            && let Some(trace) = trace
        {
            let forwarded = trace.cache.is_some();
            self.log_written(out, start, trace, incoming, forwarded);
        }
        match step {
            Step::Answered { len } => Reply::Now { len },
            Step::Delayed { len, delay } => {
                let response = out.as_slice().get(start..start + len).unwrap_or_default().to_vec();
                out.truncate(start);
                Reply::Later(self.pending(Work::Delayed { response, delay }))
            }
            Step::Forward(job) => Reply::Later(self.pending(Work::Forward(job))),
            Step::Drop => Reply::Silent,
            Step::Close if matches!(incoming.listener.transport, Transport::Tcp | Transport::Dot) => Reply::Close,
            Step::Close => Reply::Silent,
            Step::Stream { len, rest } => Reply::Stream { len, rest },
        }
    }

    fn pending(self: &Arc<Self>, work: Work) -> Pending {
        Pending { pipeline: self.clone(), work, _in_flight: self.in_flight.token() }
    }

    /// The synchronous steps, in order: parse the header (no answer to what
    /// is not a query), ACL, rate limits, NOTIMP/FORMERR, BADVERS, test
    /// layer, rules, then a local answer, a cache hit or a forward job.
    fn run(
        &self,
        incoming: &Incoming<'_>,
        out: &mut impl Buffer,
        trace: &mut Option<Trace>,
        record: &mut Option<u64>,
        purpose: Purpose,
    ) -> Step {
        let listener = incoming.listener;
        let counters = self.counters(purpose);
        counters.query(listener.transport_index());
        let Ok(message) = Message::parse(incoming.bytes) else {
            // Not even a header: nothing to answer to.
            counters.dropped(DropIndex::Malformed);
            return Step::Drop;
        };
        if message.flags().qr() {
            // A response sent to a server port is never answered (no reflection loops).
            counters.dropped(DropIndex::NotAQuery);
            return Step::Drop;
        }
        // A client the listener does not serve gets REFUSED and nothing
        // else, whatever it sent (as Unbound's `refuse`): no NOTIMP, FORMERR
        // or BADVERS telling it about the server, and no share of the rate
        // limits that allowed clients live on.
        let peer_ip = incoming.peer.ip();
        if !listener.allow.iter().any(|net| net.contains(&peer_ip)) {
            counters.decision(DecisionIndex::Refused);
            if let Some(trace) = trace.as_mut() {
                trace.decision = "refused".into();
                trace.notes.push(format!("refused by ACL: {peer_ip} is not allowed on listener {}", listener.id));
            }
            return self.refuse(&message, out, purpose);
        }
        if let Some(limiter) = &listener.max_qps
            && !limiter.allow_one(incoming.now)
        {
            return self.over_limit(&message, DropIndex::ListenerLimit, out, purpose);
        }
        if let Some(limiter) = &listener.group_limit
            && !limiter.allow_one(incoming.now)
        {
            return self.over_limit(&message, DropIndex::ListenerLimit, out, purpose);
        }
        if let Some(limiter) = &self.per_client
            && listener.client_rate_limit
            && !limiter.allow(incoming.peer.ip(), incoming.now)
        {
            return self.over_limit(&message, DropIndex::RateLimited, out, purpose);
        }
        // Response rate limiting: UDP only, where sources can be spoofed.
        if let Some(rrl) = &self.response_rate
            && listener.transport == Transport::Udp
            && !rrl.limiter.allow(peer_ip, incoming.now)
        {
            let slipped = rrl.slip > 0 && rrl.limited.fetch_add(1, Ordering::Relaxed).wrapping_add(1) % rrl.slip == 0;
            return if slipped {
                self.slip_response(&message, out, purpose)
            } else {
                counters.dropped(DropIndex::ResponseRateLimit);
                Step::Drop
            };
        }
        if let Some(handler) = &self.handler
            && purpose == Purpose::Serve
        {
            let query =
                HandlerQuery { message, peer: incoming.peer, transport: listener.transport, listener: &listener.id };
            let handled = handler.handle(&query);
            if let (Some(trace), Some(_)) = (trace.as_mut(), &handled) {
                // Answered by the application's handler (a transfer, a NOTIFY), not the rules.
                trace.decision = "handler".into();
            }
            match handled {
                None => {}
                Some(Handled::Drop) => return Step::Drop,
                Some(Handled::Message(response)) => return write_handled(&response, out),
                Some(Handled::Stream(mut messages)) => {
                    let Some(first) = messages.next() else { return Step::Drop };
                    return match write_handled(&first, out) {
                        Step::Answered { len } => Step::Stream { len, rest: messages },
                        other => other,
                    };
                }
            }
        }
        if message.opcode() != Opcode::QUERY {
            return self.error_response(&message, Rcode::NOTIMP, out, purpose);
        }
        let Some((question, client_edns)) = inspect(&message) else {
            return self.error_response(&message, Rcode::FORMERR, out, purpose);
        };
        let facts = QueryFacts { message, question, client_edns };
        if facts.client_edns.is_some_and(|edns| edns.version() > 0) {
            return self.respond_badvers(&facts, out, purpose);
        }
        if self.config.limits.loop_detection
            && let Some(edns) = facts.client_edns
            && let Some(EdnsOption::Unknown { data: hops, .. }) = edns.option(LOOP_MARKER)
            && self.is_loop(hops)
        {
            counters.decision(DecisionIndex::Loop);
            if let Some(trace) = trace.as_mut() {
                trace.decision = "loop".into();
                trace.notes.push("forwarding loop: the query has already passed through this server".into());
            }
            return self.simple_response(
                &facts,
                Rcode::SERVFAIL,
                Some((ExtendedErrorCode::OTHER, "forwarding loop detected")),
                out,
                purpose,
            );
        }
        let mut delay = None;
        if let Some(layer) = &self.layer {
            // An explain run is not recorded; the faults still apply.
            if purpose == Purpose::Serve {
                *record = layer.record_arrival(|| {
                    RecordedQuery::arrived(
                        question.name().to_name_buf(),
                        question.qtype(),
                        listener.transport,
                        incoming.peer,
                        listener.id.to_string(),
                    )
                });
            }
            let intercept = layer.fault(&question.name(), listener.transport);
            if let (Some(trace), Some(intercept)) = (trace.as_mut(), intercept)
                && !matches!(intercept, Intercept::Delay(_))
            {
                trace.decision = "fault".into();
                trace.notes.push(format!("injected fault: {intercept:?}"));
            }
            match intercept {
                None => {}
                Some(Intercept::Drop) => {
                    counters.dropped(DropIndex::Fault);
                    return Step::Drop;
                }
                Some(Intercept::Close) => {
                    counters.dropped(DropIndex::Fault);
                    return Step::Close;
                }
                Some(Intercept::ServFail) => {
                    return self.simple_response(
                        &facts,
                        Rcode::SERVFAIL,
                        Some((ExtendedErrorCode::OTHER, "injected fault")),
                        out,
                        purpose,
                    );
                }
                Some(Intercept::Truncate) => return self.truncated_response(&facts, out, purpose),
                Some(Intercept::Delay(wait)) => delay = Some(wait),
            }
        }
        let client = Client {
            source: peer_ip,
            local: incoming.local.or(listener.bound),
            listener: Some(listener.id.clone()),
            transport: listener.transport,
        };
        let limit = self.response_limit(incoming, &facts);
        // A guard, not a counted reference: only a forward job keeps the state.
        let loaded;
        let state: &Arc<State> = match incoming.state {
            Some(state) => state,
            None => {
                loaded = self.state.load();
                &loaded
            }
        };
        self.count_firewall(&state.rules, &client, &question.name(), question.qtype(), purpose);
        let decision = state.rules.decide(&question, &client);
        if question.qtype() == RecordType::ANY
            && listener.transport == Transport::Udp
            && self.config.limits.minimal_any
            && match &decision {
                Decision::Local(answer) => answer.rcode == Rcode::NOERROR,
                Decision::Forward(_) => true,
                Decision::Block(_) => false,
            }
        {
            counters.decision(DecisionIndex::MinimalAny);
            if let Some(trace) = trace.as_mut() {
                trace.decision = "minimal_any".into();
            }
            return self.minimal_any_response(&facts, &question.name(), limit, out, purpose);
        }
        let step = match decision {
            Decision::Local(answer) => {
                traced(trace, &answer.reason, "local");
                counters.decision(DecisionIndex::Local);
                let start = out.len();
                let step = self.local_response(&facts, &question.name(), &answer, limit, out, purpose);
                match self.firewall_chain(&state.rules, &client, &facts, start, limit, out, purpose) {
                    Some((blocked, rule)) => {
                        firewall::chain_blocked(trace.as_mut(), rule);
                        blocked
                    }
                    None => step,
                }
            }
            Decision::Block(block) => {
                traced(trace, &block.reason, "block");
                counters.decision(DecisionIndex::Blocked);
                self.block_response(&facts, &question.name(), question.qtype(), &block, limit, out, purpose)
            }
            Decision::Forward(forward) => {
                if let Some(trace) = traced(trace, &forward.reason, "forward") {
                    trace.group = Some(forward.group.to_string());
                }
                let dnssec_ok = facts.client_edns.is_some_and(|edns| edns.dnssec_ok());
                let mut scratch = None;
                let name = question.name();
                let flat = name.flat_or_copy(&mut scratch);
                let mut key = CacheKey::empty();
                key.set(
                    forward.reason.view,
                    dnssec_ok,
                    facts.message.flags().cd(),
                    question.qtype().0,
                    question.qclass().0,
                    flat,
                );
                let client_bits = ClientBits {
                    dnssec_ok,
                    checking_disabled: facts.message.flags().cd(),
                    authentic_data: facts.message.flags().ad(),
                };
                let validation = state.validation_for(forward.reason.view, forward.group, client_bits);
                let serve = ServeAs {
                    id: facts.message.id(),
                    question_name: flat,
                    limit,
                    client_edns: facts.client_edns.is_some(),
                    recursion_desired: facts.message.flags().rd(),
                    authentic_data: validation.as_ref().is_some_and(|validation| validation.understands_ad),
                };
                let validating = validation.is_some();
                let start = out.len();
                // A group whose answers are not cached is not answered from the cache either.
                let cacheable = state.upstreams.caches(forward.group);
                let lookup = if cacheable {
                    self.cache.lookup(key.as_bytes(), incoming.now, serve, out, purpose == Purpose::Serve)
                } else {
                    Lookup::Miss
                };
                match lookup {
                    Lookup::Hit { len, verdict, .. } => {
                        counters.decision(DecisionIndex::Cache);
                        if let Some(trace) = trace.as_mut() {
                            trace.cache = Some("hit".into());
                            trace.dnssec = verdict.map(|verdict| verdict.as_str().into());
                        }
                        match self.firewall_chain(&state.rules, &client, &facts, start, limit, out, purpose) {
                            Some((blocked, rule)) => {
                                firewall::chain_blocked(trace.as_mut(), rule);
                                blocked
                            }
                            None => Step::Answered { len },
                        }
                    }
                    Lookup::Miss => {
                        out.truncate(start);
                        if let Some(trace) = trace.as_mut() {
                            trace.cache =
                                Some(if self.cache.is_enabled() && cacheable { "miss" } else { "bypass" }.into());
                        }
                        if purpose == Purpose::Serve && self.in_flight.len() >= self.config.limits.max_in_flight {
                            counters.dropped(DropIndex::InFlightLimit);
                            return Step::Drop;
                        }
                        let Some(upstream_query) = self.upstream_query(
                            &facts,
                            &question.name(),
                            question.qtype(),
                            question.qclass(),
                            validating,
                        ) else {
                            return self.error_response(&facts.message, Rcode::FORMERR, out, purpose);
                        };
                        let log = self.log.as_ref().is_some_and(QueryLog::logs_forwarded).then(|| LogContext {
                            timestamp: std::time::SystemTime::now(),
                            peer: incoming.peer,
                            transport: listener.transport,
                            listener: listener.id.clone(),
                        });
                        let chain_check = state.rules.firewall_inspects_chains(forward.reason.view).then(|| {
                            Box::new(ChainCheck { client: client.clone(), query: facts.message.as_bytes().into() })
                        });
                        let forward_zone = self
                            .dnstap
                            .as_ref()
                            .filter(|tap| tap.logs_forwarder_messages())
                            .and_then(|_| crate::dnstap::forward_zone(&forward.reason.matched));
                        return Step::Forward(Box::new(ForwardJob {
                            chain_check,
                            forward_zone,
                            text: JobText::new(key.as_bytes(), forward.group, forward.reason.view, flat),
                            client_bits,
                            forward_first: forward.forward_first,
                            upstream_query,
                            id: facts.message.id(),
                            flags: facts.message.flags(),
                            qtype: question.qtype(),
                            qclass: question.qclass(),
                            client_edns: facts.client_edns.is_some(),
                            dnssec_ok,
                            limit,
                            trace: trace.take().map(Box::new),
                            log,
                            delay,
                            transport: listener.transport,
                            purpose,
                            state: Arc::clone(state),
                            deadline: tokio::time::Instant::from_std(incoming.now + self.query_timeout()),
                            record: *record,
                            client: None,
                        }));
                    }
                }
            }
        };
        match (step, delay) {
            (Step::Answered { len }, Some(delay)) => Step::Delayed { len, delay },
            (step, _) => step,
        }
    }
}

impl Pipeline {
    /// Whether a query carrying the loop marker `hops` has been here
    /// before, or through more servers than any sane chain has.
    fn is_loop(&self, hops: &[u8]) -> bool {
        hops.len() / 8 >= MAX_HOPS || hops.chunks_exact(8).any(|hop| hop == self.instance)
    }
}

/// Check a query in one pass: exactly one question, every record valid, at
/// most one OPT (in the additional section, root owner), nothing trailing.
/// Returns the question and the client's EDNS data.
fn inspect<'a>(message: &Message<'a>) -> Option<(Question<'a>, Option<Edns<'a>>)> {
    if message.header().qdcount != 1 {
        return None;
    }
    let mut questions = message.questions();
    let question = questions.next()?.ok()?;
    let mut records = questions.into_records().ok()?;
    let mut edns = None;
    for record in &mut records {
        let record = record.ok()?;
        if record.rtype() == RecordType::OPT {
            if edns.is_some() || record.section() != Section::Additional {
                return None;
            }
            edns = Some(Edns::from_record(&record).ok()?);
        } else {
            record.data().ok()?;
        }
    }
    (records.position() == message.as_bytes().len()).then_some((question, edns))
}

/// What matched, in the readable form docs/rules.md gives (`zone
/// svc.test.`, `rule aws (amazonaws.com)`, `default`).
/// Note in the trace, when there is one, the view, what matched and what
/// the rules decided; the trace, for more.
fn traced<'t>(
    trace: &'t mut Option<Trace>,
    reason: &signpost_rules::Reason<'_>,
    decision: &str,
) -> Option<&'t mut Trace> {
    let trace = trace.as_mut()?;
    trace.view = reason.view.to_string();
    trace.matched = reason.matched.to_string();
    trace.decision = decision.into();
    Some(trace)
}

/// Copy a handler's answer into the transport's buffer.
fn write_handled(response: &[u8], out: &mut impl Buffer) -> Step {
    match out.put(response) {
        Ok(()) => Step::Answered { len: response.len() },
        Err(_) => Step::Drop,
    }
}
