//! Asking upstream: the forward job a cache miss becomes, coalescing of
//! identical questions in flight, forward-first fallback, serve-stale,
//! SERVFAIL with extended errors, and the relay of the upstream's packet.

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use signpost_rules::Transport;
use signpost_upstream::{Attempt, Resolved, UpstreamError};
use signpost_wire::{
    Buffer, Class, EdnsHeader, EdnsOption, ExtendedError, ExtendedErrorCode, Flags, Header, MAX_NAME_LEN, Message,
    MessageBuilder, Name, OptionCode, Rcode, RecordType, SliceBuffer, ToName, relay,
};
use tokio::sync::oneshot;

use super::{ClientBits, LOOP_MARKER, MAX_HOPS, Pipeline, Purpose, QueryFacts, State, Step};
use crate::cache::{ServeAs, adapt_for_client};
use crate::config::OverloadAction;
use crate::dnstap::ClientSide;
use crate::metrics::{DecisionIndex, DropIndex};
use crate::querylog::{Trace, TraceAttempt, rfc3339};
use crate::test_layer::FaultAction;

/// Everything a forward needs, owned: it outlives the query's bytes.
pub(crate) struct ForwardJob {
    pub(super) state: Arc<State>,
    /// The cache key, group, view and question name, in one allocation.
    pub(super) text: JobText,
    pub(super) client_bits: ClientBits,
    pub(super) forward_first: bool,
    /// Shared with the upstream group's sockets (no copy per query).
    pub(super) upstream_query: Arc<[u8]>,
    pub(super) id: u16,
    pub(super) flags: Flags,
    pub(super) qtype: RecordType,
    pub(super) qclass: Class,
    pub(super) client_edns: bool,
    pub(super) dnssec_ok: bool,
    pub(super) limit: usize,
    /// Boxed: 312 bytes that only traced queries (explain, a query log
    /// with traces) fill, copied with every job otherwise.
    pub(super) trace: Option<Box<Trace>>,
    pub(super) log: Option<LogContext>,
    /// A test layer's delay on the question's name.
    pub(super) delay: Option<Duration>,
    pub(super) transport: Transport,
    pub(super) purpose: Purpose,
    /// When the client stops being worth answering: its arrival plus the
    /// server's `query_timeout_ms`. Every wait of this query ends by then,
    /// its own upstream resolution or an identical one it joined.
    pub(super) deadline: tokio::time::Instant,
    /// The test layer's record of this query, finished when answered.
    pub(super) record: Option<u64>,
    /// The client's side, when dnstap sends client responses.
    pub(super) client: Option<ClientSide>,
    /// The forward zone of the rule that sent the query (wire format), when
    /// dnstap sends forwarder messages.
    pub(super) forward_zone: Option<Box<[u8]>>,
    /// The view's DNS Firewall inspects redirection chains: the answer is
    /// checked when it arrives.
    pub(super) chain_check: Option<Box<super::ChainCheck>>,
}

/// A forward job's strings, one after the other in one allocation (they
/// were four): the cache key, the group's name, the view's name and the
/// question's name in its wire form.
pub(crate) struct JobText {
    bytes: Box<[u8]>,
    key_end: usize,
    group_end: usize,
    view_end: usize,
}

impl JobText {
    pub(super) fn new(key: &[u8], group: &str, view: &str, question_name: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(key.len() + group.len() + view.len() + question_name.len());
        bytes.extend_from_slice(key);
        let key_end = bytes.len();
        bytes.extend_from_slice(group.as_bytes());
        let group_end = bytes.len();
        bytes.extend_from_slice(view.as_bytes());
        let view_end = bytes.len();
        bytes.extend_from_slice(question_name);
        Self { bytes: bytes.into_boxed_slice(), key_end, group_end, view_end }
    }

    /// The cache key of the question.
    pub(super) fn key(&self) -> &[u8] {
        self.bytes.get(..self.key_end).unwrap_or_default()
    }

    /// The upstream group the rules chose.
    pub(super) fn group(&self) -> &str {
        self.str(self.key_end, self.group_end)
    }

    /// The view the client was placed in (validation may be on for some views only).
    pub(super) fn view(&self) -> &str {
        self.str(self.group_end, self.view_end)
    }

    /// The question's name, flat, in the client's case.
    pub(super) fn question_name(&self) -> &[u8] {
        self.bytes.get(self.view_end..).unwrap_or_default()
    }

    /// Made from two `&str`, so always UTF-8; an empty name otherwise.
    fn str(&self, start: usize, end: usize) -> &str {
        self.bytes.get(start..end).and_then(|bytes| std::str::from_utf8(bytes).ok()).unwrap_or_default()
    }
}

impl ForwardJob {
    fn serve(&self) -> ServeAs<'_> {
        ServeAs {
            id: self.id,
            question_name: self.text.question_name(),
            limit: self.limit,
            client_edns: self.client_edns,
            recursion_desired: self.flags.rd(),
            authentic_data: self.shows_ad(self.text.group()),
        }
    }

    /// Whether this client is shown AD on a secure answer from `group`.
    fn shows_ad(&self, group: &str) -> bool {
        self.state
            .validation_for(self.text.view(), group, self.client_bits)
            .is_some_and(|validation| validation.understands_ad)
    }

    fn counted(&self) -> bool {
        self.purpose == Purpose::Serve
    }
}

/// What a query log line needs beyond the response and the trace.
#[derive(Clone)]
pub(crate) struct LogContext {
    pub(super) timestamp: SystemTime,
    pub(super) peer: SocketAddr,
    pub(super) transport: Transport,
    pub(super) listener: Arc<str>,
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
    /// DNSSEC validation found the answer bogus.
    Bogus(signpost_dnssec::Bogus),
}

impl ForwardFailure {
    /// Whether the upstream group had no capacity for the query (nothing
    /// was sent, or no server had a free message ID).
    fn is_overloaded(&self) -> bool {
        matches!(self, Self::Upstream(error) if error.is_overloaded())
    }

    fn is_timeout(&self) -> bool {
        match self {
            Self::Upstream(error) => error.is_timeout(),
            Self::Deadline(_) => true,
            Self::NoGroup(_) | Self::Internal(_) | Self::Bogus(_) => false,
        }
    }

    fn attempts(&self) -> &[Attempt] {
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
            Self::Deadline(deadline) => {
                write!(f, "no answer within {} ms of the query's arrival (query_timeout_ms)", deadline.as_millis())
            }
            Self::Internal(what) => write!(f, "internal error: {what}"),
            Self::Bogus(bogus) => write!(f, "DNSSEC validation failed: {bogus}"),
        }
    }
}

/// What a test layer's fault on an upstream group comes to.
enum FaultOutcome {
    /// Ask the group as usual (after a delay, say).
    Ask,
    /// Answer the client with this, without asking.
    Answer(Option<Vec<u8>>),
    /// Answer nothing.
    Silent,
}

/// An empty answer with TC set, for a Truncate fault on an upstream group.
fn truncated(job: &ForwardJob) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let header = Header { id: job.id, flags: job.flags, ..Header::default() };
    let mut builder = MessageBuilder::response_header_to(&mut out, header).ok()?;
    builder.push_question(&FlatName(job.text.question_name()), job.qtype, job.qclass).ok()?;
    builder.header_mut().flags = builder.header_mut().flags.with_tc(true).with_ra(true);
    builder.finish().ok()?;
    Some(out)
}

/// Room on the stack for the query sent upstream: a 255-octet name, OPT,
/// the loop marker's 16 hops and a client subnet option fit (about 450
/// octets); anything longer is built on the heap.
const UPSTREAM_QUERY_ON_STACK: usize = 512;

/// The timer wheel's resolution: deadlines closer than this are one.
const TIMER_TICK: Duration = Duration::from_millis(2);

/// An upstream answer, and what validation made of it.
pub(crate) struct Answered {
    pub(crate) resolved: Resolved,
    /// `Some(secure)` when validated; the response then carries no AD
    /// (each client is shown AD if it understands it).
    pub(crate) secure: Option<bool>,
    /// Made from validated NSEC records without asking upstream (RFC 8198).
    pub(crate) synthesized: bool,
}

/// The upstream outcome sent to coalesced waiters.
type SharedOutcome = Arc<Result<Answered, ForwardFailure>>;

/// The upstream outcome of one forward: its own, or shared with the
/// questions coalesced with it (an `Arc` only then).
pub(crate) enum Outcome {
    Own(Result<Answered, ForwardFailure>),
    Shared(SharedOutcome),
}

impl Deref for Outcome {
    type Target = Result<Answered, ForwardFailure>;

    fn deref(&self) -> &Self::Target {
        match self {
            Self::Own(result) => result,
            Self::Shared(result) => result,
        }
    }
}

/// Questions being resolved, by cache key, `accepted_only` and group, with
/// everyone waiting for each. The key is hashed once per query (keyed:
/// clients choose the names, crate::keyed_hash) and the hash kept, so
/// looking up, inserting and removing cost no further hashing; followers
/// compare the key in place, without building one.
pub(super) struct Coalescing {
    hasher: foldhash::quality::SeedableRandomState,
    table: Mutex<hashbrown::HashTable<InFlight>>,
}

impl Default for Coalescing {
    fn default() -> Self {
        Self { hasher: crate::keyed_hash::keyed(), table: Mutex::default() }
    }
}

/// One question being resolved.
struct InFlight {
    hash: u64,
    /// The cache key, then `accepted_only` (one byte), then the group's name.
    key: Box<[u8]>,
    waiters: Vec<oneshot::Sender<SharedOutcome>>,
}

/// What identifies a resolution others may join.
#[derive(Clone, Copy)]
struct CoalescingKey<'k> {
    cache_key: &'k [u8],
    accepted_only: bool,
    group: &'k str,
}

impl CoalescingKey<'_> {
    fn is(&self, stored: &[u8]) -> bool {
        let Some((cache_key, rest)) = stored.split_at_checked(self.cache_key.len()) else { return false };
        cache_key == self.cache_key
            && rest.split_first() == Some((&u8::from(self.accepted_only), self.group.as_bytes()))
    }

    fn to_bytes(self) -> Box<[u8]> {
        let mut key = Vec::with_capacity(self.cache_key.len() + 1 + self.group.len());
        key.extend_from_slice(self.cache_key);
        key.push(u8::from(self.accepted_only));
        key.extend_from_slice(self.group.as_bytes());
        key.into_boxed_slice()
    }
}

impl Coalescing {
    fn hash(&self, key: CoalescingKey<'_>) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(key.cache_key);
        hasher.write_u8(u8::from(key.accepted_only));
        hasher.write(key.group.as_bytes());
        hasher.finish()
    }

    /// Join the resolution of `key` under way (its outcome comes on the
    /// receiver), or lead one (`Ok(None)`).
    fn join_or_lead(
        &self,
        key: CoalescingKey<'_>,
        hash: u64,
    ) -> Result<Option<oneshot::Receiver<SharedOutcome>>, ForwardFailure> {
        let Ok(mut table) = self.table.lock() else {
            return Err(ForwardFailure::Internal("in-flight table poisoned"));
        };
        if let Some(in_flight) = table.find_mut(hash, |in_flight| key.is(&in_flight.key)) {
            let (sender, receiver) = oneshot::channel();
            in_flight.waiters.push(sender);
            return Ok(Some(receiver));
        }
        table.insert_unique(hash, InFlight { hash, key: key.to_bytes(), waiters: Vec::new() }, |in_flight| {
            in_flight.hash
        });
        Ok(None)
    }

    /// End the resolution of `key`: its waiters, and the entry removed.
    fn finish(&self, key: CoalescingKey<'_>, hash: u64) -> Vec<oneshot::Sender<SharedOutcome>> {
        let Ok(mut table) = self.table.lock() else { return Vec::new() };
        match table.find_entry(hash, |in_flight| key.is(&in_flight.key)) {
            Ok(entry) => entry.remove().0.waiters,
            Err(_) => Vec::new(),
        }
    }

    /// Questions being resolved now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table.lock().map_or(0, |table| table.len())
    }
}

impl Pipeline {
    /// The query we send upstream: the client's question in its own case,
    /// RD set, CD copied, our EDNS with the client's DO bit, and the client's
    /// subnet option only when configured. When `validating`, DO and CD are
    /// set whatever the client sent: the validator needs the signatures, and
    /// judges bogus data itself (with the reason) rather than trusting a
    /// validating upstream's SERVFAIL.
    pub(super) fn upstream_query(
        &self,
        facts: &QueryFacts<'_>,
        name: &Name<'_>,
        qtype: RecordType,
        qclass: Class,
        validating: bool,
    ) -> Option<Arc<[u8]>> {
        // Written on the stack and copied once into the `Arc` the upstream
        // group shares; a query too large for that (none the pipeline makes:
        // a name, OPT, the loop marker and a client subnet) on the heap.
        let mut stack = [0u8; UPSTREAM_QUERY_ON_STACK];
        let mut buffer = SliceBuffer::new(&mut stack);
        if self.write_upstream_query(&mut buffer, facts, name, qtype, qclass, validating).is_some() {
            return Some(Arc::from(buffer.as_slice()));
        }
        let mut buffer = Vec::with_capacity(64 + name.wire_len());
        self.write_upstream_query(&mut buffer, facts, name, qtype, qclass, validating)?;
        Some(Arc::from(buffer))
    }

    /// [`Self::upstream_query`] into `buffer`.
    fn write_upstream_query(
        &self,
        buffer: &mut impl Buffer,
        facts: &QueryFacts<'_>,
        name: &Name<'_>,
        qtype: RecordType,
        qclass: Class,
        validating: bool,
    ) -> Option<()> {
        let flags = Flags::default().with_rd(true).with_cd(validating || facts.message.flags().cd());
        let edns = EdnsHeader {
            udp_payload_size: self.config.edns.udp_payload_size,
            version: 0,
            dnssec_ok: validating || facts.client_edns.is_some_and(|edns| edns.dnssec_ok()),
        };
        let subnet = facts
            .client_edns
            .filter(|_| self.config.edns.forward_client_subnet)
            .and_then(|edns| edns.option(OptionCode::CLIENT_SUBNET));
        // The servers the query has passed through, and this one; on the
        // stack (a vector here was an allocation per forward).
        let mut hops = [0u8; 8 * MAX_HOPS];
        let marker = self.config.limits.loop_detection.then(|| {
            let mut len = 0;
            let earlier: &[u8] = match facts.client_edns.and_then(|edns| edns.option(LOOP_MARKER)) {
                Some(EdnsOption::Unknown { data, .. }) => data,
                _ => &[],
            };
            for hop in earlier.chunks_exact(8).take(MAX_HOPS - 1).chain([&self.instance[..]]) {
                if let Some(slot) = hops.get_mut(len..len + hop.len()) {
                    slot.copy_from_slice(hop);
                    len += hop.len();
                }
            }
            len
        });
        let marker =
            marker.map(|len| EdnsOption::Unknown { code: LOOP_MARKER, data: hops.get(..len).unwrap_or_default() });
        // The upstream transport sets the ID. Not the response builder: one
        // question and OPT take `write_query` a fraction of its work.
        let mut write = |options: &[EdnsOption<'_>]| {
            signpost_wire::write_query(buffer, 0, flags, (name, qtype, qclass), Some((edns, options))).ok()
        };
        match (subnet, marker) {
            (Some(subnet), Some(marker)) => write(&[subnet, marker]),
            (Some(option), None) | (None, Some(option)) => write(&[option]),
            (None, None) => write(&[]),
        }?;
        Some(())
    }

    /// Resolve upstream (coalescing identical questions), cache, and make
    /// the client's response.
    pub(super) async fn forward(self: &Arc<Self>, job: &mut ForwardJob) -> Option<Vec<u8>> {
        if let Some(delay) = job.delay {
            tokio::time::sleep(delay).await;
        }
        if let Some(layer) = &self.layer
            && let Some(fault) = layer.fault_for_group(job.text.group())
        {
            match self.upstream_fault(job, fault).await {
                FaultOutcome::Ask => {}
                FaultOutcome::Answer(response) => return response,
                FaultOutcome::Silent => {
                    if let Some(trace) = job.trace.as_mut() {
                        trace.decision = "drop".into();
                        trace.notes.push("injected fault: upstream group dropped".into());
                    }
                    return None;
                }
            }
        }
        // forward-first with a default group to fall back on: an answer the
        // zone's group rejected under `retry_on` (SERVFAIL, say) is a failure
        // like no answer at all.
        let fallback = job
            .forward_first
            .then(|| job.state.rules.default_group())
            .flatten()
            .filter(|default| *default != job.text.group())
            .map(str::to_string);
        let outcome = self.resolve_coalesced(job, job.text.group(), fallback.is_some()).await;
        // The group that answered, when forward-first fell back from the job's own.
        let mut fell_back_to = None;
        let mut outcome = match (&*outcome, fallback) {
            (Err(_), Some(default)) => {
                if let Some(trace) = job.trace.as_mut() {
                    trace.notes.push(format!(
                        "forward-first: every server of {} failed or gave an answer retry_on rejects, trying {default}",
                        job.text.group()
                    ));
                    add_attempts(trace, &outcome);
                }
                let outcome = self.resolve_coalesced(job, &default, false).await;
                fell_back_to = Some(default);
                outcome
            }
            _ => outcome,
        };
        if let Some(trace) = job.trace.as_mut() {
            add_attempts(trace, &outcome);
        }
        let counters = self.counters(job.purpose);
        for attempt in outcome_attempts(&outcome) {
            let failure = attempt.outcome.is_failure().then(|| attempt.outcome.as_str());
            counters.upstream_attempt(attempt.protocol.as_str(), attempt.server, attempt.duration, failure);
        }
        // An answer no one else shares (cached already, if at all) that the
        // client takes as it is: relayed in the buffer it arrived in, not copied.
        let verbatim = match &mut outcome {
            Outcome::Own(Ok(answered)) if job.client_edns && answered.resolved.response.len() <= job.limit => {
                Some(Vec::from(std::mem::take(&mut answered.resolved.response)))
            }
            _ => None,
        };
        let relayed = verbatim.is_some();
        let mut out = verbatim.unwrap_or_else(|| Vec::with_capacity(512));
        match &*outcome {
            Ok(Answered { resolved, secure, synthesized }) => {
                if !relayed && adapt_for_client(&resolved.response, job.limit, job.client_edns, &mut out).is_err() {
                    return self.servfail(job, ExtendedErrorCode::INVALID_DATA, "upstream answer could not be relayed");
                }
                if *secure == Some(true) {
                    relay::set_ad(&mut out, job.shows_ad(fell_back_to.as_deref().unwrap_or(job.text.group())));
                }
                relay::set_id(&mut out, job.id);
                // RD echoes the client's query, not the upstream's answer to ours.
                relay::set_rd(&mut out, job.flags.rd());
                relay::restore_question_case(&mut out, &FlatName(job.text.question_name()));
                if let Some((step, rule)) = self.check_chain(job, &mut out) {
                    let Step::Answered { len } = step else { return None };
                    out.truncate(len);
                    super::firewall::chain_blocked(job.trace.as_deref_mut(), rule);
                    self.log_forwarded(job, &out);
                    return Some(out);
                }
                counters.decision(DecisionIndex::Forwarded);
                // The header's four bits: enough for the metrics, and no walk to the OPT record.
                let rcode = Message::parse(&out).map_or(Rcode::SERVFAIL, |m| m.flags().rcode());
                counters.rcode(rcode.0);
                if let Some(trace) = job.trace.as_mut() {
                    trace.rcode = rcode.to_string();
                    if *synthesized {
                        trace.notes.push("answered from validated NSEC records in the cache (RFC 8198)".into());
                    } else {
                        trace.notes.push(format!("answered by {}://{}", resolved.protocol, resolved.server));
                    }
                    trace.dnssec = secure.map(|secure| if secure { "secure" } else { "insecure" }.into());
                }
                self.log_forwarded(job, &out);
                Some(out)
            }
            Err(ForwardFailure::Bogus(bogus)) => {
                if let Some(trace) = job.trace.as_mut() {
                    trace.dnssec = Some("bogus".into());
                }
                self.servfail(job, bogus.reason.extended_error(), &bogus_text(bogus))
            }
            Err(error) => {
                let now = Instant::now();
                if let Some(len) = self.cache.lookup_stale(job.text.key(), now, job.serve(), &mut out, job.counted()) {
                    out.truncate(len);
                    append_extended_error(
                        &mut out,
                        ExtendedErrorCode::STALE_ANSWER,
                        "every upstream failed; serving stale data",
                    );
                    counters.decision(DecisionIndex::Stale);
                    if let Some(trace) = job.trace.as_mut() {
                        trace.cache = Some("stale".into());
                        trace.decision = "stale".into();
                    }
                    self.log_forwarded(job, &out);
                    return Some(out);
                }
                if error.is_overloaded() {
                    return self.overloaded(job, error);
                }
                let code = if error.is_timeout() {
                    ExtendedErrorCode::NO_REACHABLE_AUTHORITY
                } else {
                    ExtendedErrorCode::NETWORK_ERROR
                };
                let text = short_error_text(job.text.group(), error);
                self.servfail(job, code, &text)
            }
        }
    }

    /// The DNS Firewall's check of a fresh answer's redirection chain: the
    /// block that replaced it in `out`, if any.
    fn check_chain(&self, job: &ForwardJob, out: &mut Vec<u8>) -> Option<(Step, crate::querylog::TraceFirewall)> {
        let check = job.chain_check.as_deref()?;
        let message = Message::parse(&check.query).ok()?;
        let (question, client_edns) = super::inspect(&message)?;
        let facts = QueryFacts { message, question, client_edns };
        self.firewall_chain(&job.state.rules, &check.client, &facts, 0, job.limit, out, job.purpose)
    }

    /// What a test layer's fault on the upstream group does to a forward.
    async fn upstream_fault(&self, job: &mut ForwardJob, fault: FaultAction) -> FaultOutcome {
        match fault {
            FaultAction::Delay(delay) => {
                tokio::time::sleep(delay).await;
                FaultOutcome::Ask
            }
            // As a silent upstream would, from the client's side: no answer.
            FaultAction::Drop => FaultOutcome::Silent,
            FaultAction::ServFail | FaultAction::TcpReset => FaultOutcome::Answer(self.servfail(
                job,
                ExtendedErrorCode::NETWORK_ERROR,
                "injected fault: upstream failed",
            )),
            // Over TCP the query goes upstream as usual.
            FaultAction::Truncate if job.transport != Transport::Udp => FaultOutcome::Ask,
            FaultAction::Truncate => FaultOutcome::Answer(truncated(job)),
        }
    }

    /// The group had no capacity: answer at once, on purpose and counted
    /// apart from upstream failures — SERVFAIL with extended error 0
    /// (Other; RFC 8914 has no code for overload) saying so, or, to a UDP
    /// client with `overload_action = "drop"`, no answer at all.
    fn overloaded(&self, job: &mut ForwardJob, error: &ForwardFailure) -> Option<Vec<u8>> {
        let counters = self.counters(job.purpose);
        counters.decision(DecisionIndex::Overloaded);
        let text = short_error_text(job.text.group(), error);
        match self.config.limits.overload_action {
            // Over a stream a dropped answer only keeps the client waiting:
            // only UDP clients, which retransmit, are dropped.
            OverloadAction::Drop if job.transport == Transport::Udp => {
                counters.dropped(DropIndex::UpstreamOverloaded);
                if let Some(trace) = job.trace.as_mut() {
                    trace.decision = "overloaded".into();
                    trace.notes.push(format!("{text}; dropped (overload_action = \"drop\")"));
                }
                None
            }
            OverloadAction::Drop | OverloadAction::ServFail => {
                let response = self.servfail_response(job, ExtendedErrorCode::OTHER, &text)?;
                counters.rcode(Rcode::SERVFAIL.0);
                if let Some(trace) = job.trace.as_mut() {
                    trace.decision = "overloaded".into();
                    trace.rcode = "SERVFAIL".into();
                    trace.notes.push(text);
                }
                self.log_forwarded(job, &response);
                Some(response)
            }
        }
    }

    /// SERVFAIL for an upstream failure, counted and logged.
    fn servfail(&self, job: &mut ForwardJob, code: ExtendedErrorCode, text: &str) -> Option<Vec<u8>> {
        let out = self.servfail_response(job, code, text)?;
        let counters = self.counters(job.purpose);
        counters.decision(DecisionIndex::Failed);
        counters.rcode(Rcode::SERVFAIL.0);
        if let Some(trace) = job.trace.as_mut() {
            trace.decision = "servfail".into();
            trace.rcode = "SERVFAIL".into();
            trace.notes.push(text.to_string());
        }
        self.log_forwarded(job, &out);
        Some(out)
    }

    /// The bytes of a SERVFAIL to the job's client: its question, and to a
    /// client that sent EDNS, our OPT with the extended error.
    fn servfail_response(&self, job: &ForwardJob, code: ExtendedErrorCode, text: &str) -> Option<Vec<u8>> {
        self.servfail_bytes(job, code, text, job.client_edns)
    }

    /// [`Self::servfail_response`], with our OPT and the extended error when `edns`.
    fn servfail_bytes(&self, job: &ForwardJob, code: ExtendedErrorCode, text: &str, edns: bool) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(128);
        let header = Header { id: job.id, flags: job.flags, ..Header::default() };
        let mut builder = MessageBuilder::response_header_to(&mut out, header).ok()?;
        builder.push_question(&FlatName(job.text.question_name()), job.qtype, job.qclass).ok()?;
        builder.set_rcode(Rcode::SERVFAIL);
        builder.header_mut().flags = builder.header_mut().flags.with_ra(true);
        if edns {
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
        Some(out)
    }

    /// Resolve through `group`, sharing one upstream query among identical
    /// questions in flight. The first caller's task does the work; the
    /// others (followers) wait for its outcome, each until its own
    /// deadline, never the leader's: a follower whose deadline passes first
    /// gets its own SERVFAIL, and when the leader is cancelled (its client
    /// went away) or ran out of its own time while a follower has time
    /// left, the followers start again: one leads, the rest join it. With
    /// `accepted_only`, an answer every server was rejected for
    /// (`retry_on`) is a failure.
    async fn resolve_coalesced(self: &Arc<Self>, job: &ForwardJob, group: &str, accepted_only: bool) -> Outcome {
        let key = CoalescingKey { cache_key: job.text.key(), accepted_only, group };
        let hash = self.coalescing.hash(key);
        loop {
            // Join a resolution already under way, or lead one.
            let receiver = match self.coalescing.join_or_lead(key, hash) {
                Ok(Some(receiver)) => receiver,
                Ok(None) => break,
                Err(failure) => return Outcome::Own(Err(failure)),
            };
            match tokio::time::timeout_at(job.deadline, receiver).await {
                // The leader ran out of its own time, which ended before ours: try again.
                Ok(Ok(outcome))
                    if matches!(*outcome, Err(ForwardFailure::Deadline(_)))
                        && tokio::time::Instant::now() < job.deadline => {}
                Ok(Ok(outcome)) => return Outcome::Shared(outcome),
                // The leader was cancelled: lead or join afresh.
                Ok(Err(_)) => {}
                // Our own deadline passed first; dropping the receiver leaves the leader be.
                Err(_) => return Outcome::Own(Err(ForwardFailure::Deadline(self.query_timeout()))),
            }
        }
        // The leader resolves in its own task, with no hand-off; if it is
        // cancelled, the guard lets the waiters know so they start again.
        let mut guard = Leader { coalescing: &self.coalescing, key, hash, done: false };
        let result = self.resolve_once(job, group, accepted_only).await;
        // Asked first, so that no clock is read for a cache that stores nothing.
        let cacheable = self.cache.is_enabled() && job.state.upstreams.caches(group);
        let insert = |result: &Result<Answered, ForwardFailure>| {
            if !cacheable {
                return;
            }
            match result {
                Ok(Answered { resolved, secure: None, .. }) => {
                    self.cache.insert(job.text.key(), &resolved.response, Instant::now());
                }
                Ok(Answered { resolved, secure: Some(secure), .. }) => {
                    self.cache.insert_validated(job.text.key(), &resolved.response, Instant::now(), *secure);
                }
                // Kept with its reason, with EDNS (stripped for clients that sent none).
                Err(ForwardFailure::Bogus(bogus)) => {
                    let ttl = job.state.validator.as_ref().map_or(0, |validator| validator.config().bogus_ttl);
                    if let Some(servfail) =
                        self.servfail_bytes(job, bogus.reason.extended_error(), &bogus_text(bogus), true)
                    {
                        self.cache.insert_bogus(job.text.key(), &servfail, ttl, Instant::now());
                    }
                }
                Err(_) => {}
            }
        };
        if job.counted() {
            insert(&result);
        }
        let waiters = guard.take_waiters();
        // An explain run leaves the cache alone, unless clients joined it
        // and are being answered from what it got.
        if !job.counted() && !waiters.is_empty() {
            insert(&result);
        }
        if waiters.is_empty() {
            return Outcome::Own(result);
        }
        let outcome: SharedOutcome = Arc::new(result);
        for waiter in waiters {
            let _ = waiter.send(outcome.clone());
        }
        Outcome::Shared(outcome)
    }

    async fn resolve_once(
        &self,
        job: &ForwardJob,
        group: &str,
        accepted_only: bool,
    ) -> Result<Answered, ForwardFailure> {
        let Some(upstream) = job.state.upstreams.group(group) else {
            return Err(ForwardFailure::NoGroup(group.to_string()));
        };
        // RFC 8198: a name or type validated NSEC records already deny needs no upstream.
        // Without a validator there is nothing to look up (nor a view name to read).
        let validating = job.state.validator.is_some();
        if validating
            && let Some(validation) = job.state.validation_for(job.text.view(), group, job.client_bits)
            && let Some(resolved) = crate::dnssec::synthesize(&validation, &job.upstream_query)
        {
            return Ok(Answered { resolved, secure: Some(true), synthesized: true });
        }
        let resolution = async {
            let resolved = if accepted_only {
                upstream.resolve_accepted_shared(&job.upstream_query).await
            } else {
                upstream.resolve_shared(&job.upstream_query).await
            };
            if let Some(tap) = &self.dnstap
                && job.counted()
            {
                // forward-first's fall-back to the default group forwards for the root.
                let zone = if group == job.text.group() {
                    job.forward_zone.as_deref()
                } else {
                    Some(crate::dnstap::ROOT_ZONE)
                };
                tap.forwarded(&job.upstream_query, zone, &resolved);
            }
            let resolved = resolved.map_err(ForwardFailure::Upstream)?;
            let validation =
                if validating { job.state.validation_for(job.text.view(), group, job.client_bits) } else { None };
            match validation {
                Some(validation) => {
                    // Boxed: validation's future is large, and every forward's
                    // future would carry its size otherwise.
                    let (resolved, secure) = Box::pin(crate::dnssec::validate(&validation, upstream, resolved)).await?;
                    Ok(Answered { resolved, secure: Some(secure), synthesized: false })
                }
                None => Ok(Answered { resolved, secure: None, synthesized: false }),
            }
        };
        // Without validation the group's own total timeout bounds the
        // resolution; when that ends before the query's deadline (with a
        // timer tick to spare), a timer for the deadline could never fire,
        // and is not set.
        if job.state.validator.is_none()
            && tokio::time::Instant::now() + upstream.config().total_timeout + TIMER_TICK <= job.deadline
        {
            return resolution.await;
        }
        // Boxed: the rare case, whose timer would otherwise be carried in
        // every forward's future.
        match Box::pin(tokio::time::timeout_at(job.deadline, resolution)).await {
            Ok(result) => result,
            Err(_) => Err(ForwardFailure::Deadline(self.query_timeout())),
        }
    }

    /// The server's `query_timeout_ms`: how long a query may take from its arrival.
    pub(super) fn query_timeout(&self) -> Duration {
        Duration::from_millis(self.config.limits.query_timeout_ms)
    }
}

/// The resolution a task leads for identical questions in flight. Dropped
/// unfinished (the task was cancelled), it removes the entry, which tells
/// the waiters to start again (one of them leading).
struct Leader<'a> {
    coalescing: &'a Coalescing,
    key: CoalescingKey<'a>,
    hash: u64,
    done: bool,
}

impl Leader<'_> {
    /// The waiters, and the entry removed: later questions start afresh.
    fn take_waiters(&mut self) -> Vec<oneshot::Sender<SharedOutcome>> {
        if std::mem::replace(&mut self.done, true) {
            return Vec::new();
        }
        self.coalescing.finish(self.key, self.hash)
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        // Senders dropped unsent: each waiter sees the leader gone.
        drop(self.take_waiters());
    }
}

/// A flat wire name as a `ToName`.
struct FlatName<'a>(&'a [u8]);

impl ToName for FlatName<'_> {
    fn flat<'s>(&'s self, _scratch: &'s mut [u8; MAX_NAME_LEN]) -> &'s [u8] {
        self.0
    }
}

fn outcome_attempts(outcome: &Outcome) -> &[Attempt] {
    match &**outcome {
        Ok(answered) => &answered.resolved.attempts,
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

/// The extended error text of a bogus answer.
fn bogus_text(bogus: &signpost_dnssec::Bogus) -> String {
    format!("DNSSEC validation failed: {bogus}")
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

#[cfg(test)]
mod tests {
    use super::{Coalescing, CoalescingKey};

    /// Keys short and long are found, told apart by every part, and gone
    /// once finished.
    #[test]
    fn coalescing_keys_of_any_length_are_joined_and_finished() {
        let coalescing = Coalescing::default();
        let long = vec![b'a'; 300];
        for cache_key in [&b"short"[..], &long[..]] {
            let key = CoalescingKey { cache_key, accepted_only: false, group: "default" };
            let hash = coalescing.hash(key);
            assert!(matches!(coalescing.join_or_lead(key, hash), Ok(None)), "the first caller leads");
            let follower = coalescing.join_or_lead(key, hash);
            assert!(matches!(follower, Ok(Some(_))), "the same question joins");
            for other in [
                CoalescingKey { accepted_only: true, ..key },
                CoalescingKey { group: "other", ..key },
                CoalescingKey { cache_key: &cache_key[1..], ..key },
            ] {
                assert!(matches!(coalescing.join_or_lead(other, coalescing.hash(other)), Ok(None)), "another leads");
                assert!(coalescing.finish(other, coalescing.hash(other)).is_empty());
            }
            assert_eq!(coalescing.finish(key, hash).len(), 1, "the follower is handed back");
            assert_eq!(coalescing.len(), 0);
        }
    }
}
