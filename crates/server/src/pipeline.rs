//! The query pipeline: parse → ACL → limits → rules → local answer, cache or
//! upstream → response.
//!
//! The fast path ([`Pipeline::handle_fast`]) is synchronous and allocation
//! free for local answers and cache hits: the UDP workers run it inline on
//! their batches. Anything that needs an upstream becomes a [`ForwardJob`]
//! for the async slow path ([`Pipeline::forward`]), which coalesces identical
//! questions in flight, caches, and relays the upstream's packet faithfully.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use ipnet::IpNet;
use signpost_rules::{Answer, BlockAction, Client, Decision, RuleSet, Transport};
use signpost_upstream::{Resolved, UpstreamError, Upstreams};
use signpost_wire::{
    Buffer, Class, EdnsHeader, EdnsOption, ExtendedError, ExtendedErrorCode, Flags, Header, MAX_NAME_LEN, Message,
    MessageBuilder, Name, Opcode, OptionCode, RData, Rcode, RecordType, Section, ToName, relay,
};
use tokio::sync::oneshot;

use crate::cache::{Cache, CacheKey, Lookup, ServeAs, adapt_for_client};
use crate::config::{LimitAction, ListenerTransport, ServerConfig};
use crate::faults::{FaultAction, Faults};
use crate::limits::RateLimiter;
use crate::metrics::{DecisionIndex, DropIndex, Metrics, TransportIndex};
use crate::querylog::{LogAnswer, LogRecord, QueryLog, Trace, TraceAttempt, rfc3339};
use crate::record::{RecordedQuery, Recorder};

thread_local! {
    /// Set while an explain run goes through the synchronous pipeline.
    static SUPPRESS_METRICS: Cell<bool> = const { Cell::new(false) };
}

/// Where explain runs count: nowhere anyone reads.
static DISCARDED: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// The rules and upstreams in force; replaced as a whole on reload.
pub struct State {
    /// The rule set.
    pub rules: Arc<RuleSet>,
    /// The upstream groups.
    pub upstreams: Arc<Upstreams>,
}

/// Per-listener facts the pipeline needs.
pub(crate) struct ListenerContext {
    pub(crate) id: Arc<str>,
    pub(crate) transport: Transport,
    pub(crate) allow: Vec<IpNet>,
    pub(crate) max_qps: Option<RateLimiter>,
    /// The address the socket is bound to, when it is not a wildcard.
    pub(crate) bound: Option<IpAddr>,
    /// Whether the server's per-client rate limit applies here.
    pub(crate) client_rate_limit: bool,
    /// The query log's `srcids` (empty: `{"listener": id}`).
    pub(crate) srcids: Arc<[(String, String)]>,
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

    fn transport_name(&self) -> &'static str {
        match self.transport {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Dot => "DoT",
            Transport::Doh => "DoH",
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
}

/// What the fast path did.
pub(crate) enum Fast {
    /// A response of this length was written.
    Answered { len: usize },
    /// The query needs an upstream.
    Forward(Box<ForwardJob>),
    /// The response must wait (an injected delay); it has been written.
    Delayed { len: usize, delay: Duration },
    /// No response.
    Drop,
    /// Close the connection abruptly (injected TCP reset).
    Reset,
}

/// Everything the slow path needs, owned.
pub(crate) struct ForwardJob {
    state: Arc<State>,
    key: Box<[u8]>,
    group: String,
    forward_first: bool,
    upstream_query: Vec<u8>,
    id: u16,
    flags: Flags,
    question_name: Box<[u8]>,
    qtype: RecordType,
    qclass: Class,
    client_edns: bool,
    dnssec_ok: bool,
    limit: usize,
    trace: Option<Trace>,
    log: Option<LogContext>,
    fault: Option<FaultAction>,
    received: Instant,
    /// Whether this query counts in the metrics (explain's do not).
    counted: bool,
}

impl ForwardJob {
    fn question_name(&self) -> &[u8] {
        &self.question_name
    }

    fn serve(&self) -> ServeAs<'_> {
        ServeAs { id: self.id, question_name: self.question_name(), limit: self.limit, client_edns: self.client_edns }
    }
}

/// What a query log line needs beyond the response.
#[derive(Clone)]
struct LogContext {
    timestamp: SystemTime,
    peer: SocketAddr,
    transport: &'static str,
    listener: Arc<str>,
    srcids: Arc<[(String, String)]>,
    view: String,
}

/// Why forwarding produced no answer.
#[derive(Debug)]
pub(crate) enum ForwardFailure {
    /// Every server of the group failed.
    Upstream(UpstreamError),
    /// The rules named a group that does not exist (or none is configured).
    NoGroup(String),
    /// The server's own deadline passed first.
    Deadline(Duration),
    /// Something inside the server went wrong.
    Internal(&'static str),
}

impl ForwardFailure {
    fn is_timeout(&self) -> bool {
        match self {
            Self::Upstream(error) => error.is_timeout(),
            Self::Deadline(_) => true,
            Self::NoGroup(_) | Self::Internal(_) => false,
        }
    }

    fn attempts(&self) -> &[signpost_upstream::Attempt] {
        match self {
            Self::Upstream(error) => error.attempts(),
            _ => &[],
        }
    }
}

impl std::fmt::Display for ForwardFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Upstream(error) => write!(f, "{error}"),
            Self::NoGroup(group) if group.is_empty() => f.write_str("no upstream is configured"),
            Self::NoGroup(group) => write!(f, "no upstream group named {group:?} is configured"),
            Self::Deadline(deadline) => write!(f, "no answer within {} ms", deadline.as_millis()),
            Self::Internal(what) => write!(f, "internal error: {what}"),
        }
    }
}

/// The upstream outcome shared by coalesced waiters.
type Outcome = Arc<Result<Resolved, ForwardFailure>>;

/// Questions being resolved, by cache key and group, with everyone waiting for each.
type InFlight = HashMap<Box<[u8]>, Vec<oneshot::Sender<Outcome>>>;

/// The pipeline shared by every listener.
pub(crate) struct Pipeline {
    pub(crate) state: ArcSwap<State>,
    pub(crate) cache: Cache,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) log: Option<QueryLog>,
    pub(crate) faults: Faults,
    pub(crate) recorder: Recorder,
    pub(crate) config: ServerConfig,
    per_client: Option<RateLimiter>,
    in_flight: Mutex<InFlight>,
}

/// Bits of a parsed query the response builders need.
struct QueryFacts<'a> {
    message: Message<'a>,
    client_edns: Option<signpost_wire::Edns<'a>>,
}

impl Pipeline {
    pub(crate) fn new(config: ServerConfig, state: State, metrics: Arc<Metrics>, log: Option<QueryLog>) -> Self {
        let per_client = config
            .limits
            .per_client_qps
            .map(|rate| RateLimiter::per_client(rate, config.limits.per_client_burst.unwrap_or(rate)));
        Self {
            state: ArcSwap::from_pointee(state),
            cache: Cache::new(config.cache.clone()),
            metrics,
            log,
            faults: Faults::default(),
            recorder: Recorder::default(),
            config,
            per_client,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// The counters, or a sink when an explain run must not count.
    fn counters(&self) -> &Metrics {
        self.counters_for(!SUPPRESS_METRICS.with(Cell::get))
    }

    fn counters_for(&self, counted: bool) -> &Metrics {
        if counted { &self.metrics } else { &DISCARDED }
    }

    /// Answer what can be answered without an upstream; write it into `out`.
    pub(crate) fn handle_fast(&self, incoming: &Incoming<'_>, out: &mut impl Buffer) -> Fast {
        let mut trace = self.log.is_some().then(Trace::default);
        let start = out.len();
        let fast = self.handle_fast_inner(incoming, out, &mut trace);
        // A trace still here was not handed to a forward job: log it now.
        if let (Some(trace), Fast::Answered { .. } | Fast::Delayed { .. }) = (trace, &fast) {
            let forwarded = trace.cache.is_some();
            self.log_written(out, start, trace, incoming, forwarded);
        }
        fast
    }

    fn handle_fast_inner(&self, incoming: &Incoming<'_>, out: &mut impl Buffer, trace: &mut Option<Trace>) -> Fast {
        let listener = incoming.listener;
        self.counters().query(listener.transport_index());
        let Ok(message) = Message::parse(incoming.bytes) else {
            // Not even a header: nothing to answer to.
            self.counters().dropped(DropIndex::Malformed);
            return Fast::Drop;
        };
        if message.flags().qr() {
            // A response sent to a server port is never answered (no reflection loops).
            self.counters().dropped(DropIndex::NotAQuery);
            return Fast::Drop;
        }
        if let Some(limiter) = &listener.max_qps
            && !limiter.allow_one(incoming.now)
        {
            return self.over_limit(&message, DropIndex::ListenerLimit, out);
        }
        if let Some(limiter) = &self.per_client
            && listener.client_rate_limit
            && !limiter.allow(incoming.peer.ip(), incoming.now)
        {
            return self.over_limit(&message, DropIndex::RateLimited, out);
        }
        if message.opcode() != Opcode::QUERY {
            return self.error_response(&message, Rcode::NOTIMP, out);
        }
        let Some((question, client_edns)) = inspect(&message) else {
            return self.error_response(&message, Rcode::FORMERR, out);
        };
        let facts = QueryFacts { message, client_edns };
        if facts.client_edns.is_some_and(|edns| edns.version() > 0) {
            return self.respond_badvers(&facts, out);
        }
        let peer_ip = incoming.peer.ip();
        if !listener.allow.iter().any(|net| net.contains(&peer_ip)) {
            self.counters().decision(DecisionIndex::Refused);
            if let Some(trace) = trace.as_mut() {
                trace.decision = "refused".into();
                trace.notes.push(format!("refused by ACL: {peer_ip} is not allowed on listener {}", listener.id));
            }
            return self.simple_response(
                &facts,
                Rcode::REFUSED,
                Some((ExtendedErrorCode::PROHIBITED, "client not allowed")),
                out,
            );
        }
        let client = Client {
            source: peer_ip,
            local: incoming.local.or(listener.bound),
            listener: Some(listener.id.clone()),
            transport: listener.transport,
        };
        if self.recorder.is_enabled() {
            self.recorder.record(RecordedQuery {
                name: question.name().to_name_buf(),
                qtype: question.qtype(),
                transport: listener.transport,
                client: incoming.peer,
                listener: listener.id.to_string(),
            });
        }
        let fault = if self.faults.is_active() { self.faults.for_name(&question.name()) } else { None };
        match fault {
            Some(FaultAction::Drop) => {
                self.counters().dropped(DropIndex::Fault);
                return Fast::Drop;
            }
            Some(FaultAction::TcpReset) => {
                self.counters().dropped(DropIndex::Fault);
                return if matches!(listener.transport, Transport::Tcp | Transport::Dot) {
                    Fast::Reset
                } else {
                    Fast::Drop
                };
            }
            Some(FaultAction::ServFail) => {
                return self.simple_response(
                    &facts,
                    Rcode::SERVFAIL,
                    Some((ExtendedErrorCode::OTHER, "injected fault")),
                    out,
                );
            }
            Some(FaultAction::Truncate) => return self.truncated_response(&facts, out),
            Some(FaultAction::Delay(_)) | None => {}
        }
        let limit = self.response_limit(incoming, &facts);
        let state = self.state.load_full();
        let decision = state.rules.decide(&question, &client);
        let result = match decision {
            Decision::Local(answer) => {
                if let Some(trace) = trace.as_mut() {
                    trace.view = answer.reason.view.to_string();
                    trace.matched = describe(&answer.reason);
                    trace.decision = "local".into();
                }
                self.counters().decision(DecisionIndex::Local);
                self.local_response(&facts, &question.name(), &answer, limit, out)
            }
            Decision::Block(block) => {
                if let Some(trace) = trace.as_mut() {
                    trace.view = block.reason.view.to_string();
                    trace.matched = describe(&block.reason);
                    trace.decision = "block".into();
                }
                self.counters().decision(DecisionIndex::Blocked);
                self.block_response(&facts, &question.name(), question.qtype(), &block.action, limit, out)
            }
            Decision::Forward(forward) => {
                if let Some(trace) = trace.as_mut() {
                    trace.view = forward.reason.view.to_string();
                    trace.matched = describe(&forward.reason);
                    trace.decision = "forward".into();
                    trace.group = Some(forward.group.to_string());
                }
                let view = forward.reason.view;
                let dnssec_ok = facts.client_edns.is_some_and(|edns| edns.dnssec_ok());
                let mut scratch = [0u8; MAX_NAME_LEN];
                let name = question.name();
                let flat = name.flat(&mut scratch);
                let key = CacheKey::new(
                    view,
                    dnssec_ok,
                    facts.message.flags().cd(),
                    question.qtype().0,
                    question.qclass().0,
                    flat,
                );
                let serve = ServeAs {
                    id: facts.message.id(),
                    question_name: flat,
                    limit,
                    client_edns: facts.client_edns.is_some(),
                };
                let start = out.len();
                let lookup = self.cache.lookup(key.as_bytes(), incoming.now, serve, out);
                if SUPPRESS_METRICS.with(Cell::get) {
                    self.uncount_lookup(lookup);
                }
                match lookup {
                    Lookup::Hit { len, .. } => {
                        self.counters().decision(DecisionIndex::Cache);
                        if let Some(trace) = trace.as_mut() {
                            trace.cache = Some("hit".into());
                        }
                        return self.finish_fast(len, fault);
                    }
                    Lookup::Miss => {
                        out.truncate(start);
                        if let Some(trace) = trace.as_mut() {
                            trace.cache = Some(if self.cache.is_enabled() { "miss" } else { "bypass" }.into());
                        }
                    }
                }
                let Some(upstream_query) =
                    self.upstream_query(&facts, &question.name(), question.qtype(), question.qclass())
                else {
                    return self.error_response(&facts.message, Rcode::FORMERR, out);
                };
                let question_name: Box<[u8]> = flat.into();
                let log = self.log.as_ref().is_some_and(QueryLog::logs_forwarded).then(|| LogContext {
                    timestamp: SystemTime::now(),
                    peer: incoming.peer,
                    transport: listener.transport_name(),
                    listener: listener.id.clone(),
                    srcids: listener.srcids.clone(),
                    view: view.to_string(),
                });
                let job = ForwardJob {
                    key: key.as_bytes().into(),
                    group: forward.group.to_string(),
                    forward_first: forward.forward_first,
                    upstream_query,
                    id: facts.message.id(),
                    flags: facts.message.flags(),
                    question_name,
                    qtype: question.qtype(),
                    qclass: question.qclass(),
                    client_edns: facts.client_edns.is_some(),
                    dnssec_ok,
                    limit,
                    trace: trace.take(),
                    log,
                    fault,
                    received: incoming.now,
                    counted: !SUPPRESS_METRICS.with(Cell::get),
                    state: state.clone(),
                };
                return Fast::Forward(Box::new(job));
            }
        };
        match result {
            Fast::Answered { len } => self.finish_fast(len, fault),
            other => other,
        }
    }

    /// Take back what a cache lookup added to the cache's counters: an
    /// explain run reads the cache but must not show in its figures.
    fn uncount_lookup(&self, lookup: Lookup) {
        let stats = self.cache.stats();
        let counter = match lookup {
            Lookup::Hit { .. } => &stats.hits,
            Lookup::Miss if self.cache.is_enabled() => &stats.misses,
            // A disabled cache counts nothing.
            Lookup::Miss => return,
        };
        uncount(counter);
    }

    fn finish_fast(&self, len: usize, fault: Option<FaultAction>) -> Fast {
        match fault {
            Some(FaultAction::Delay(delay)) => Fast::Delayed { len, delay },
            _ => Fast::Answered { len },
        }
    }

    /// The largest response this client takes: its EDNS payload size (at
    /// least 512, at most ours) over UDP, 512 without EDNS, 65535 otherwise.
    fn response_limit(&self, incoming: &Incoming<'_>, facts: &QueryFacts<'_>) -> usize {
        match incoming.max_response {
            Some(limit) => limit,
            None => match incoming.listener.transport {
                Transport::Udp => facts.client_edns.map_or(512, |edns| {
                    usize::from(edns.udp_payload_size().min(self.config.edns.udp_payload_size.max(512)))
                }),
                _ => usize::from(u16::MAX),
            },
        }
    }

    fn over_limit(&self, message: &Message<'_>, reason: DropIndex, out: &mut impl Buffer) -> Fast {
        self.counters().dropped(reason);
        match self.config.limits.action {
            LimitAction::Drop => Fast::Drop,
            LimitAction::Refuse => self.error_response(message, Rcode::REFUSED, out),
        }
    }

    /// FORMERR, NOTIMP and the like: echo what could be read of the query.
    fn error_response(&self, message: &Message<'_>, rcode: Rcode, out: &mut impl Buffer) -> Fast {
        let start = out.len();
        let result = (|| {
            let mut builder = match MessageBuilder::response_to(out, message) {
                Ok(builder) => builder,
                Err(_) => {
                    out.truncate(start);
                    MessageBuilder::response_header_to(out, message.header())?
                }
            };
            builder.set_rcode(rcode);
            builder.header_mut().flags = builder.header_mut().flags.with_ra(true);
            builder.finish()
        })();
        match result {
            Ok(len) => {
                self.counters().rcode(rcode.0);
                if rcode == Rcode::FORMERR {
                    self.counters().decision(DecisionIndex::Error);
                }
                Fast::Answered { len }
            }
            Err(_) => {
                out.truncate(start);
                Fast::Drop
            }
        }
    }

    fn respond_badvers(&self, facts: &QueryFacts<'_>, out: &mut impl Buffer) -> Fast {
        let start = out.len();
        let result = (|| {
            let mut builder = MessageBuilder::response_to(out, &facts.message)?;
            builder.set_rcode(Rcode::BADVERS);
            builder.set_edns(EdnsHeader {
                udp_payload_size: self.config.edns.udp_payload_size,
                version: 0,
                dnssec_ok: false,
            });
            builder.finish()
        })();
        match result {
            Ok(len) => {
                self.counters().rcode(Rcode::BADVERS.0);
                Fast::Answered { len }
            }
            Err(_) => {
                out.truncate(start);
                Fast::Drop
            }
        }
    }

    fn our_edns(&self, facts: &QueryFacts<'_>) -> Option<EdnsHeader> {
        facts.client_edns.map(|edns| EdnsHeader {
            udp_payload_size: self.config.edns.udp_payload_size,
            version: 0,
            dnssec_ok: edns.dnssec_ok(),
        })
    }

    /// A response with no records and an optional extended error.
    fn simple_response(
        &self,
        facts: &QueryFacts<'_>,
        rcode: Rcode,
        extended: Option<(ExtendedErrorCode, &str)>,
        out: &mut impl Buffer,
    ) -> Fast {
        let start = out.len();
        let result = (|| {
            let mut builder = MessageBuilder::response_to(out, &facts.message)?;
            builder.set_rcode(rcode);
            builder.header_mut().flags = builder.header_mut().flags.with_ra(true);
            if let Some(edns) = self.our_edns(facts) {
                builder.set_edns(edns);
                if let Some((code, text)) = extended {
                    let _ = builder.push_edns_option(&EdnsOption::ExtendedError(ExtendedError {
                        info_code: code,
                        extra_text: text.as_bytes(),
                    }));
                }
            }
            builder.finish()
        })();
        match result {
            Ok(len) => {
                self.counters().rcode(rcode.0);
                Fast::Answered { len }
            }
            Err(_) => {
                out.truncate(start);
                Fast::Drop
            }
        }
    }

    fn truncated_response(&self, facts: &QueryFacts<'_>, out: &mut impl Buffer) -> Fast {
        let start = out.len();
        let result = (|| {
            let mut builder = MessageBuilder::response_to(out, &facts.message)?;
            builder.header_mut().flags = builder.header_mut().flags.with_tc(true).with_ra(true);
            if let Some(edns) = self.our_edns(facts) {
                builder.set_edns(edns);
            }
            builder.finish()
        })();
        match result {
            Ok(len) => Fast::Answered { len },
            Err(_) => {
                out.truncate(start);
                Fast::Drop
            }
        }
    }

    fn local_response(
        &self,
        facts: &QueryFacts<'_>,
        name: &Name<'_>,
        answer: &signpost_rules::LocalAnswer<'_>,
        limit: usize,
        out: &mut impl Buffer,
    ) -> Fast {
        let start = out.len();
        let result = (|| {
            let mut builder = MessageBuilder::response_to(out, &facts.message)?;
            builder.set_limit(limit);
            builder.set_rcode(answer.rcode);
            builder.header_mut().flags = builder.header_mut().flags.with_aa(answer.authoritative).with_ra(true);
            if let Some(edns) = self.our_edns(facts) {
                builder.set_edns(edns);
            }
            // Records that do not fit are dropped whole and TC is set by the builder.
            match &answer.answer {
                Answer::Records(records) => {
                    for record in records.iter() {
                        if builder.push_record_buf(Section::Answer, record).is_err() {
                            break;
                        }
                    }
                }
                Answer::AddressOfQuestion { address, ttl } => {
                    let data = match address {
                        IpAddr::V4(v4) => RData::A(*v4),
                        IpAddr::V6(v6) => RData::Aaaa(*v6),
                    };
                    let _ = builder.push(Section::Answer, name, Class::IN, *ttl, &data);
                }
            }
            for record in answer.authority.iter() {
                if builder.push_record_buf(Section::Authority, record).is_err() {
                    break;
                }
            }
            for record in answer.additional.iter() {
                if builder.push_record_buf(Section::Additional, record).is_err() {
                    break;
                }
            }
            builder.finish()
        })();
        match result {
            Ok(len) => {
                self.counters().rcode(answer.rcode.0);
                Fast::Answered { len }
            }
            Err(_) => {
                out.truncate(start);
                self.simple_response(
                    facts,
                    Rcode::SERVFAIL,
                    Some((ExtendedErrorCode::OTHER, "local answer could not be written")),
                    out,
                )
            }
        }
    }

    fn block_response(
        &self,
        facts: &QueryFacts<'_>,
        name: &Name<'_>,
        qtype: RecordType,
        action: &BlockAction,
        limit: usize,
        out: &mut impl Buffer,
    ) -> Fast {
        let (rcode, sink) = match action {
            BlockAction::Refused => (Rcode::REFUSED, None),
            BlockAction::NxDomain => (Rcode::NXDOMAIN, None),
            BlockAction::Drop => return Fast::Drop,
            BlockAction::Sinkhole { v4, v6 } => {
                let address = match qtype {
                    RecordType::A => v4.map(IpAddr::V4),
                    RecordType::AAAA => v6.map(IpAddr::V6),
                    _ => None,
                };
                (Rcode::NOERROR, address)
            }
        };
        let start = out.len();
        let result = (|| {
            let mut builder = MessageBuilder::response_to(out, &facts.message)?;
            builder.set_limit(limit);
            builder.set_rcode(rcode);
            builder.header_mut().flags = builder.header_mut().flags.with_ra(true);
            if let Some(edns) = self.our_edns(facts) {
                builder.set_edns(edns);
                let _ = builder.push_edns_option(&EdnsOption::ExtendedError(ExtendedError {
                    info_code: ExtendedErrorCode::BLOCKED,
                    extra_text: b"blocked by policy",
                }));
            }
            if let Some(address) = sink {
                let data = match address {
                    IpAddr::V4(v4) => RData::A(v4),
                    IpAddr::V6(v6) => RData::Aaaa(v6),
                };
                let _ = builder.push(Section::Answer, name, Class::IN, 60, &data);
            }
            builder.finish()
        })();
        match result {
            Ok(len) => {
                self.counters().rcode(rcode.0);
                Fast::Answered { len }
            }
            Err(_) => {
                out.truncate(start);
                Fast::Drop
            }
        }
    }

    /// The query we send upstream: the client's question in its own case,
    /// RD set, CD copied, our EDNS with the client's DO bit, and the client's
    /// subnet option only when configured.
    fn upstream_query(
        &self,
        facts: &QueryFacts<'_>,
        name: &Name<'_>,
        qtype: RecordType,
        qclass: Class,
    ) -> Option<Vec<u8>> {
        let mut buffer = Vec::with_capacity(64 + name.wire_len());
        let mut builder = MessageBuilder::new(&mut buffer).ok()?;
        builder.set_flags(Flags::default().with_rd(true).with_cd(facts.message.flags().cd()));
        builder.push_question(name, qtype, qclass).ok()?;
        builder.set_edns(EdnsHeader {
            udp_payload_size: self.config.edns.udp_payload_size,
            version: 0,
            dnssec_ok: facts.client_edns.is_some_and(|edns| edns.dnssec_ok()),
        });
        if self.config.edns.forward_client_subnet
            && let Some(edns) = facts.client_edns
            && let Some(subnet) = edns.option(OptionCode::CLIENT_SUBNET)
        {
            builder.push_edns_option(&subnet).ok()?;
        }
        builder.finish().ok()?;
        Some(buffer)
    }

    /// The slow path: resolve upstream (coalescing identical questions),
    /// cache, and produce the client's response.
    pub(crate) async fn forward(self: &Arc<Self>, mut job: Box<ForwardJob>) -> Option<Vec<u8>> {
        self.forward_ref(&mut job).await
    }

    async fn forward_ref(self: &Arc<Self>, job: &mut ForwardJob) -> Option<Vec<u8>> {
        if let Some(fault) = job.fault
            && let FaultAction::Delay(delay) = fault
        {
            tokio::time::sleep(delay).await
        }
        if let Some(fault) = self.faults.for_group(&job.group)
            && let Some(response) = self.upstream_fault(job, fault).await
        {
            return Some(response);
        }
        // forward-first with a default group to fall back on: an answer the
        // zone's group rejected under `retry_on` (SERVFAIL, say) is a failure
        // like no answer at all, as Unbound falls back on SERVFAIL.
        let fallback = job
            .forward_first
            .then(|| job.state.rules.default_group())
            .flatten()
            .filter(|default| *default != job.group)
            .map(str::to_string);
        let outcome = self.resolve_coalesced(job, job.group.clone(), fallback.is_some()).await;
        let outcome = match (&*outcome, fallback) {
            (Err(_), Some(default)) => {
                if let Some(trace) = job.trace.as_mut() {
                    trace.notes.push(format!(
                        "forward-first: every server of {} failed or gave an answer retry_on rejects, trying {default}",
                        job.group
                    ));
                    add_attempts(trace, &outcome);
                }
                self.resolve_coalesced(job, default, false).await
            }
            _ => outcome,
        };
        if let Some(trace) = job.trace.as_mut() {
            add_attempts(trace, &outcome);
        }
        for attempt in outcome_attempts(&outcome) {
            let failure = attempt.outcome.is_failure().then(|| attempt.outcome.as_str());
            self.counters_for(job.counted).upstream_attempt(
                attempt.protocol.as_str(),
                attempt.server,
                attempt.duration,
                failure,
            );
        }
        let mut out = Vec::with_capacity(512);
        match &*outcome {
            Ok(resolved) => {
                if adapt_for_client(&resolved.response, job.limit, job.client_edns, &mut out).is_err() {
                    return self.servfail(job, ExtendedErrorCode::INVALID_DATA, "upstream answer could not be relayed");
                }
                relay::set_id(&mut out, job.id);
                relay::restore_question_case(&mut out, &FlatName(job.question_name()));
                self.counters_for(job.counted).decision(DecisionIndex::Forwarded);
                // The header's four bits: enough for the metrics, and no walk to the OPT record.
                let rcode = Message::parse(&out).map_or(Rcode::SERVFAIL, |m| m.flags().rcode());
                self.counters_for(job.counted).rcode(rcode.0);
                if let Some(trace) = job.trace.as_mut() {
                    trace.rcode = rcode.to_string();
                    trace.notes.push(format!("answered by {}://{}", resolved.protocol, resolved.server));
                }
                self.log_forwarded(job, &out);
                Some(out)
            }
            Err(error) => {
                let now = Instant::now();
                if let Some(len) = self.cache.lookup_stale(&job.key, now, job.serve(), &mut out) {
                    if !job.counted {
                        uncount(&self.cache.stats().stale_hits);
                    }
                    out.truncate(len);
                    append_extended_error(
                        &mut out,
                        ExtendedErrorCode::STALE_ANSWER,
                        "every upstream failed; serving stale data",
                    );
                    self.counters_for(job.counted).decision(DecisionIndex::Stale);
                    if let Some(trace) = job.trace.as_mut() {
                        trace.cache = Some("stale".into());
                        trace.decision = "stale".into();
                    }
                    self.log_forwarded(job, &out);
                    return Some(out);
                }
                let code = if error.is_timeout() {
                    ExtendedErrorCode::NO_REACHABLE_AUTHORITY
                } else {
                    ExtendedErrorCode::NETWORK_ERROR
                };
                let text = short_error_text(&job.group, error);
                self.servfail(job, code, &text)
            }
        }
    }

    async fn upstream_fault(&self, job: &ForwardJob, fault: FaultAction) -> Option<Vec<u8>> {
        match fault {
            FaultAction::Delay(delay) => {
                tokio::time::sleep(delay).await;
                None
            }
            FaultAction::Drop => {
                tokio::time::sleep(Duration::from_millis(self.config.limits.query_timeout_ms.min(4_000))).await;
                let mut job = clone_for_error(job);
                self.servfail(&mut job, ExtendedErrorCode::NO_REACHABLE_AUTHORITY, "injected fault: upstream silent")
            }
            FaultAction::ServFail | FaultAction::TcpReset => {
                let mut job = clone_for_error(job);
                self.servfail(&mut job, ExtendedErrorCode::NETWORK_ERROR, "injected fault: upstream failed")
            }
            FaultAction::Truncate => {
                let mut out = Vec::new();
                let header = Header { id: job.id, flags: job.flags, ..Header::default() };
                let mut builder = MessageBuilder::response_header_to(&mut out, header).ok()?;
                builder.push_question(&FlatName(job.question_name()), job.qtype, job.qclass).ok()?;
                builder.header_mut().flags = builder.header_mut().flags.with_tc(true).with_ra(true);
                builder.finish().ok()?;
                Some(out)
            }
        }
    }

    fn servfail(&self, job: &mut ForwardJob, code: ExtendedErrorCode, text: &str) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(128);
        let header = Header { id: job.id, flags: job.flags, ..Header::default() };
        let mut builder = MessageBuilder::response_header_to(&mut out, header).ok()?;
        builder.push_question(&FlatName(job.question_name()), job.qtype, job.qclass).ok()?;
        builder.set_rcode(Rcode::SERVFAIL);
        builder.header_mut().flags = builder.header_mut().flags.with_ra(true);
        if job.client_edns {
            builder.set_edns(EdnsHeader {
                udp_payload_size: self.config.edns.udp_payload_size,
                version: 0,
                dnssec_ok: job.dnssec_ok,
            });
            let text = text.get(..text.len().min(400)).unwrap_or(text);
            let _ = builder.push_edns_option(&EdnsOption::ExtendedError(ExtendedError {
                info_code: code,
                extra_text: text.as_bytes(),
            }));
        }
        builder.finish().ok()?;
        self.counters_for(job.counted).decision(DecisionIndex::Failed);
        self.counters_for(job.counted).rcode(Rcode::SERVFAIL.0);
        if let Some(trace) = job.trace.as_mut() {
            trace.decision = "servfail".into();
            trace.rcode = "SERVFAIL".into();
            trace.notes.push(text.to_string());
        }
        self.log_forwarded(job, &out);
        Some(out)
    }

    /// Resolve through `group`, sharing one upstream query among identical
    /// questions in flight. The first caller's task does the work, so a
    /// cancelled client cannot strand the others. With `accepted_only`, an
    /// answer every server was rejected for (`retry_on`) is a failure.
    async fn resolve_coalesced(self: &Arc<Self>, job: &ForwardJob, group: String, accepted_only: bool) -> Outcome {
        let mut key = job.key.to_vec();
        key.push(u8::from(accepted_only));
        key.extend_from_slice(group.as_bytes());
        let key: Box<[u8]> = key.into();
        // Join a resolution already under way, or lead one.
        let waiting = {
            let Ok(mut in_flight) = self.in_flight.lock() else {
                return Arc::new(Err(ForwardFailure::Internal("in-flight table poisoned")));
            };
            match in_flight.get_mut(&key) {
                Some(waiters) => {
                    let (sender, receiver) = oneshot::channel();
                    waiters.push(sender);
                    Some(receiver)
                }
                None => {
                    in_flight.insert(key.clone(), Vec::new());
                    None
                }
            }
        };
        if let Some(receiver) = waiting {
            return match receiver.await {
                Ok(outcome) => outcome,
                // The leader was cancelled (its client went away): resolve on our own.
                Err(_) => Arc::new(self.resolve_once(job, &group, accepted_only).await),
            };
        }
        // The leader resolves in its own task, with no hand-off; if it is
        // cancelled, the guard lets the waiters know so they resolve themselves.
        let mut guard = Leader { in_flight: &self.in_flight, key: Some(key) };
        let result = self.resolve_once(job, &group, accepted_only).await;
        let insert = |result: &Result<Resolved, ForwardFailure>| {
            if let Ok(resolved) = result {
                self.cache.insert(&job.key, &resolved.response, Instant::now());
            }
        };
        if job.counted {
            insert(&result);
        }
        let waiters = guard.take_waiters();
        // An explain run leaves the cache alone, unless clients joined it
        // and are being answered from what it got.
        if !job.counted && !waiters.is_empty() {
            insert(&result);
        }
        let outcome: Outcome = Arc::new(result);
        for waiter in waiters {
            let _ = waiter.send(outcome.clone());
        }
        outcome
    }

    async fn resolve_once(
        &self,
        job: &ForwardJob,
        group: &str,
        accepted_only: bool,
    ) -> Result<Resolved, ForwardFailure> {
        let deadline = Duration::from_millis(self.config.limits.query_timeout_ms);
        let Some(upstream) = job.state.upstreams.group(group) else {
            return Err(ForwardFailure::NoGroup(group.to_string()));
        };
        let resolution = async {
            if accepted_only {
                upstream.resolve_accepted(&job.upstream_query).await
            } else {
                upstream.resolve(&job.upstream_query).await
            }
        };
        match tokio::time::timeout(deadline, resolution).await {
            Ok(result) => result.map_err(ForwardFailure::Upstream),
            Err(_) => Err(ForwardFailure::Deadline(deadline)),
        }
    }

    fn log_written(&self, out: &impl Buffer, start: usize, trace: Trace, incoming: &Incoming<'_>, forwarded: bool) {
        let Some(log) = &self.log else { return };
        if forwarded && !log.logs_forwarded() {
            return;
        }
        let bytes = out.as_slice().get(start..).unwrap_or(&[]);
        let context = LogContext {
            timestamp: SystemTime::now(),
            peer: incoming.peer,
            transport: incoming.listener.transport_name(),
            listener: incoming.listener.id.clone(),
            srcids: incoming.listener.srcids.clone(),
            view: trace.view.clone(),
        };
        if let Some(record) = log_record(bytes, &context, trace) {
            log.log_query(record, forwarded);
        }
    }

    fn log_forwarded(&self, job: &ForwardJob, response: &[u8]) {
        let (Some(log), Some(context), Some(trace)) = (&self.log, &job.log, &job.trace) else { return };
        if !log.logs_forwarded() {
            return;
        }
        if let Some(record) = log_record(response, context, trace.clone()) {
            log.log_query(record, true);
        }
    }

    /// The listener an explain run stands in for: the first configured for
    /// `transport`, else the first of all, with its id (views can select by
    /// listener), bound address and allow-list; no rate limits. Without
    /// listeners (sockets handed in), every client is allowed.
    fn explain_listener(&self, transport: Transport) -> ListenerContext {
        let listeners = &self.config.listeners;
        let wanted = |listener: &&crate::config::ListenerConfig| {
            matches!(
                (listener.transport, transport),
                (ListenerTransport::Udp, Transport::Udp)
                    | (ListenerTransport::Tcp, Transport::Tcp)
                    | (ListenerTransport::Dot, Transport::Dot)
                    | (ListenerTransport::Doh, Transport::Doh)
            )
        };
        let chosen = listeners.iter().find(wanted).or_else(|| listeners.first());
        let (id, allow, bound) = match chosen {
            Some(listener) => (
                Arc::from(listener.id_or_default().as_str()),
                listener.allow.clone().unwrap_or_else(crate::config::default_allow_list),
                (!listener.address.is_unspecified()).then_some(listener.address),
            ),
            None => {
                (Arc::from("explain"), ["0.0.0.0/0", "::/0"].iter().filter_map(|net| net.parse().ok()).collect(), None)
            }
        };
        ListenerContext { id, transport, allow, max_qps: None, bound, client_rate_limit: false, srcids: Arc::from([]) }
    }

    /// Run the pipeline for a question and return the decision trace; the
    /// answer goes to no one, the cache is read but neither filled nor
    /// counted in, and no metric moves.
    pub(crate) async fn explain(
        self: &Arc<Self>,
        name: &signpost_wire::NameBuf,
        qtype: RecordType,
        client: SocketAddr,
        transport: Transport,
    ) -> Trace {
        let mut query = Vec::new();
        if let Ok(mut builder) = MessageBuilder::new(&mut query) {
            builder.set_flags(Flags::default().with_rd(true));
            let _ = builder.push_question(name, qtype, Class::IN);
            builder.set_edns(EdnsHeader::default());
            let _ = builder.finish();
        }
        let listener = self.explain_listener(transport);
        let incoming = Incoming {
            bytes: &query,
            peer: client,
            local: None,
            listener: &listener,
            max_response: Some(65535),
            now: Instant::now(),
        };
        let mut out = Vec::new();
        let mut trace = Some(Trace::default());
        SUPPRESS_METRICS.with(|flag| flag.set(true));
        let fast = self.handle_fast_inner(&incoming, &mut out, &mut trace);
        SUPPRESS_METRICS.with(|flag| flag.set(false));
        match fast {
            Fast::Forward(mut job) => {
                job.log = None;
                let response = self.forward_ref(&mut job).await;
                let mut trace = job.trace.take().unwrap_or_default();
                if let Some(response) = response {
                    fill_answers(&mut trace, &response);
                }
                trace
            }
            Fast::Answered { .. } | Fast::Delayed { .. } => {
                let mut trace = trace.unwrap_or_default();
                fill_answers(&mut trace, &out);
                trace
            }
            Fast::Drop | Fast::Reset => Trace { decision: "drop".into(), ..trace.unwrap_or_default() },
        }
    }
}

/// Check a query in one pass: exactly one question, every record valid, at
/// most one OPT (in the additional section, root owner), nothing trailing.
/// Returns the question and the client's EDNS data.
fn inspect<'a>(message: &Message<'a>) -> Option<(signpost_wire::Question<'a>, Option<signpost_wire::Edns<'a>>)> {
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
            edns = Some(signpost_wire::Edns::from_record(&record).ok()?);
        } else {
            record.data().ok()?;
        }
    }
    (records.position() == message.as_bytes().len()).then_some((question, edns))
}

/// The resolution a task leads for identical questions in flight. Dropped
/// unfinished (the task was cancelled), it removes the entry, which tells
/// the waiters to resolve on their own.
struct Leader<'a> {
    in_flight: &'a Mutex<InFlight>,
    key: Option<Box<[u8]>>,
}

impl Leader<'_> {
    /// The waiters, and the entry removed: later questions start afresh.
    fn take_waiters(&mut self) -> Vec<oneshot::Sender<Outcome>> {
        let Some(key) = self.key.take() else { return Vec::new() };
        self.in_flight.lock().ok().and_then(|mut map| map.remove(&key)).unwrap_or_default()
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        // Senders dropped unsent: each waiter sees the leader gone.
        drop(self.take_waiters());
    }
}

/// Subtract one from a counter, never below zero.
fn uncount(counter: &std::sync::atomic::AtomicU64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |value| value.checked_sub(1));
}

/// A flat wire name as a `ToName`.
struct FlatName<'a>(&'a [u8]);

impl ToName for FlatName<'_> {
    fn flat<'s>(&'s self, _scratch: &'s mut [u8; MAX_NAME_LEN]) -> &'s [u8] {
        self.0
    }
}

fn clone_for_error(job: &ForwardJob) -> ForwardJob {
    ForwardJob {
        state: job.state.clone(),
        key: job.key.clone(),
        group: job.group.clone(),
        forward_first: job.forward_first,
        upstream_query: Vec::new(),
        id: job.id,
        flags: job.flags,
        question_name: job.question_name.clone(),
        qtype: job.qtype,
        qclass: job.qclass,
        client_edns: job.client_edns,
        dnssec_ok: job.dnssec_ok,
        limit: job.limit,
        trace: job.trace.clone(),
        log: job.log.clone(),
        fault: job.fault,
        received: job.received,
        counted: job.counted,
    }
}

fn describe(reason: &signpost_rules::Reason<'_>) -> String {
    format!("{:?}", reason.matched)
}

fn outcome_attempts(outcome: &Outcome) -> &[signpost_upstream::Attempt] {
    match &**outcome {
        Ok(resolved) => &resolved.attempts,
        Err(error) => error.attempts(),
    }
}

fn add_attempts(trace: &mut Trace, outcome: &Outcome) {
    for attempt in outcome_attempts(outcome) {
        trace.attempts.push(TraceAttempt {
            server: attempt.server.to_string(),
            protocol: attempt.protocol.to_string(),
            started: rfc3339(attempt.started),
            duration_us: attempt.duration.as_micros() as u64,
            outcome: attempt.outcome.to_string(),
        });
    }
}

fn short_error_text(group: &str, error: &ForwardFailure) -> String {
    let mut text = format!("upstream group {group}: {error}");
    if text.len() > 400 {
        let mut cut = 400;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// Add an extended error option to a response's trailing OPT record.
fn append_extended_error(response: &mut Vec<u8>, code: ExtendedErrorCode, text: &str) {
    let Ok(message) = Message::parse(response) else { return };
    let Ok(additional) = message.additional() else { return };
    let mut opt = None;
    for record in additional.flatten() {
        if record.rtype() == RecordType::OPT && record.end() == response.len() {
            opt = Some(record.data_offset());
        }
    }
    let Some(data_offset) = opt else { return };
    let mut option = Vec::new();
    if EdnsOption::ExtendedError(ExtendedError { info_code: code, extra_text: text.as_bytes() })
        .write_to(&mut option)
        .is_err()
    {
        return;
    }
    let Some(length_field) = data_offset.checked_sub(2) else { return };
    let Some(old) = response.get(length_field..data_offset).map(|b| u16::from_be_bytes([b[0], b[1]])) else { return };
    let Ok(new) = u16::try_from(usize::from(old) + option.len()) else { return };
    if let Some(slot) = response.get_mut(length_field..data_offset) {
        slot.copy_from_slice(&new.to_be_bytes());
        response.extend_from_slice(&option);
    }
}

fn fill_answers(trace: &mut Trace, response: &[u8]) {
    if let Ok(message) = Message::parse(response) {
        trace.rcode = message.rcode().unwrap_or(Rcode::SERVFAIL).to_string();
        if trace.decision.is_empty() {
            trace.decision = trace.rcode.to_lowercase();
        }
        if let Ok(answers) = message.answers() {
            for record in answers.flatten() {
                if let Ok(data) = record.data() {
                    trace.notes.push(format!("answer: {} {} {} {}", record.name(), record.ttl(), record.rtype(), data));
                }
            }
        }
    }
}

fn log_record(response: &[u8], context: &LogContext, trace: Trace) -> Option<LogRecord> {
    let message = Message::parse(response).ok()?;
    let question = message.first_question().ok()??;
    let rcode = message.rcode().unwrap_or(Rcode::SERVFAIL);
    let mut answers = Vec::new();
    for record in message.answers().ok()?.flatten() {
        if let Ok(data) = record.data() {
            answers.push(LogAnswer {
                rdata: data.to_string(),
                rtype: record.rtype().to_string(),
                class: record.class().to_string(),
            });
        }
    }
    let mut srcids = BTreeMap::new();
    if context.srcids.is_empty() {
        srcids.insert("listener".to_string(), context.listener.to_string());
    }
    for (key, value) in context.srcids.iter() {
        let value = if value == "{srcaddr}" { context.peer.ip().to_string() } else { value.clone() };
        srcids.insert(key.clone(), value);
    }
    let mut trace = trace;
    if trace.rcode.is_empty() {
        trace.rcode = rcode.to_string();
    }
    if trace.decision.is_empty() {
        trace.decision = trace.rcode.to_lowercase();
    }
    Some(LogRecord {
        version: "1.100000",
        vpc_id: (context.view != "default" && !context.view.is_empty()).then(|| context.view.clone()),
        query_timestamp: rfc3339(context.timestamp),
        query_name: question.name().to_string(),
        query_type: question.qtype().to_string(),
        query_class: question.qclass().to_string(),
        rcode: rcode.to_string(),
        answers,
        srcaddr: context.peer.ip().to_string(),
        srcport: context.peer.port().to_string(),
        transport: context.transport,
        srcids,
        signpost: trace,
    })
}
