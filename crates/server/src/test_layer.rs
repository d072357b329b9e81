//! Injected faults and query recording, for tests of code that depends on
//! DNS: a layer a test server adds with
//! [`ServerBuilder::test_layer`](crate::ServerBuilder::test_layer).
//!
//! A server built without it pays one branch on an `Option` per query;
//! the transports know nothing of it: a fault comes to them as an answer,
//! a later answer, no answer or a closed connection, like any other.
//!
//! What is recorded: every query that reaches the layer — past the ACL,
//! the rate limits and the format checks, so with one question — when it
//! arrives (so a test can wait for it), completed with what the server did
//! (response code, decision, what matched, cache hit, answers) once the
//! answer is made. Explain runs are not recorded.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use signpost_rules::Transport;
use signpost_wire::{Message, NameBuf, Rcode, RecordBuf, RecordType, ToName};
use tokio::sync::watch;

use crate::querylog::Trace;

/// Most queries kept; older ones are dropped first.
const MAX_RECORDED: usize = 100_000;

/// What to do to a matching query.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultAction {
    /// Never answer. Aimed at a name, the query gets no answer at all (over
    /// TCP the connection stays open). Aimed at an upstream group, the
    /// forwarded query gets no answer either: the group is not asked, and
    /// the client times out as it would if the upstream were silent.
    Drop,
    /// Answer after a delay. Aimed at an upstream group: the group is
    /// asked after the delay (the server's own upstream deadline still
    /// applies to the asking).
    Delay(Duration),
    /// Answer SERVFAIL (with an extended error "injected fault").
    ServFail,
    /// Answer UDP queries with TC set and no records; clients retry over
    /// TCP, where the query is answered as usual.
    Truncate,
    /// Close a TCP/DoT connection abruptly (over UDP and DoH: no answer).
    /// Aimed at an upstream group: SERVFAIL, as when an upstream resets.
    TcpReset,
}

/// Where a fault applies.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FaultTarget {
    /// Questions for this name and every name below it.
    Name(NameBuf),
    /// Queries forwarded to this upstream group.
    UpstreamGroup(String),
}

impl FaultTarget {
    /// Questions for the name `text` (`"down.test"` or `"down.test."`,
    /// any case) and every name below it.
    pub fn name(text: &str) -> Result<Self, signpost_wire::Error> {
        Ok(Self::Name(text.parse()?))
    }

    /// Queries forwarded to the upstream group `group`.
    pub fn upstream_group(group: impl Into<String>) -> Self {
        Self::UpstreamGroup(group.into())
    }
}

impl From<NameBuf> for FaultTarget {
    fn from(name: NameBuf) -> Self {
        Self::Name(name)
    }
}

/// One query as the server received it and, once answered, what the
/// server did with it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedQuery {
    /// Its place in the record: 0 for the first query the layer saw.
    pub sequence: u64,
    /// The question name, case as sent.
    pub name: NameBuf,
    /// The question type.
    pub qtype: RecordType,
    /// How it arrived.
    pub transport: Transport,
    /// The client's address and port.
    pub client: SocketAddr,
    /// The listener it arrived on.
    pub listener: String,
    /// Whether the server is done with it: it answered, dropped it or
    /// closed the connection. `false` while it is being answered (a
    /// forward, a delay), and for good when the client went away first.
    pub finished: bool,
    /// The response code sent; `None` until finished and when no answer
    /// was sent (a `Drop` or `TcpReset` fault).
    pub rcode: Option<Rcode>,
    /// What the pipeline did, as the query log's trace says it: `local`,
    /// `block`, `forward`, `stale`, `servfail`, `fault` (an injected
    /// ServFail or Truncate), `drop`, `close`. Empty until finished.
    pub decision: String,
    /// The rule, zone or host table that matched, in the readable form
    /// (`zone svc.test.`, `rule aws (amazonaws.com)`, `default`).
    pub matched: String,
    /// The upstream group, for forwarded queries.
    pub group: Option<String>,
    /// Whether the answer came from the cache.
    pub cache_hit: bool,
    /// The answer section sent, one record per entry in presentation
    /// format (`www.svc.test. 60 IN A 10.0.0.1`).
    pub answers: Vec<String>,
}

impl RecordedQuery {
    /// A query just arrived: nothing known yet of its answer.
    pub(crate) fn arrived(
        name: NameBuf,
        qtype: RecordType,
        transport: Transport,
        client: SocketAddr,
        listener: String,
    ) -> Self {
        Self {
            sequence: 0,
            name,
            qtype,
            transport,
            client,
            listener,
            finished: false,
            rcode: None,
            decision: String::new(),
            matched: String::new(),
            group: None,
            cache_hit: false,
            answers: Vec::new(),
        }
    }

    /// Whether the question was for `name` (any case, final dot or not).
    pub fn is_for(&self, name: &str) -> bool {
        name.parse::<NameBuf>().is_ok_and(|wanted| wanted == self.name)
    }
}

/// Faults and recording for one server; cheap to clone (clones share
/// everything), so a test keeps one and hands another to the builder:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use signpost_server::{FaultAction, FaultTarget, Server, TestLayer};
///
/// // Recording from the first query, and a fault from the start.
/// let layer = TestLayer::new()
///     .recording(true)
///     .with_fault(FaultTarget::name("down.test")?, FaultAction::ServFail);
/// let server = Server::builder().udp_and_tcp("127.0.0.1:0".parse()?).test_layer(layer.clone()).start().await?;
/// // ... a client asks `server.udp_addr()` ...
/// # let _ = server.udp_addr();
/// assert_eq!(layer.faults().len(), 1);
/// assert!(layer.remove_fault(&FaultTarget::name("down.test")?));
/// // Nothing asked here, so waiting gives up after the timeout.
/// assert!(layer.wait_for(Duration::from_millis(10), |query| query.is_for("api.test")).await.is_none());
/// server.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TestLayer {
    inner: Arc<Inner>,
}

impl Default for TestLayer {
    fn default() -> Self {
        Self::new()
    }
}

struct Inner {
    /// Whether any fault is set: the common case reads one atomic.
    faulty: AtomicBool,
    faults: RwLock<Vec<(FaultTarget, FaultAction)>>,
    recording: AtomicBool,
    recorded: Mutex<Record>,
    /// Bumped on every arrival and every finish; waiters watch it.
    changes: watch::Sender<u64>,
}

/// The queries kept, and the sequence number of the next one.
#[derive(Default)]
struct Record {
    queries: VecDeque<RecordedQuery>,
    next: u64,
}

fn lock(mutex: &Mutex<Record>) -> MutexGuard<'_, Record> {
    // A panic elsewhere in a test must not hide what was recorded.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl std::fmt::Debug for TestLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestLayer").field("faults", &self.faults()).field("recording", &self.is_recording()).finish()
    }
}

/// What the layer does to a query before the rules see it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Intercept {
    /// No answer.
    Drop,
    /// Close the connection.
    Close,
    /// Answer SERVFAIL.
    ServFail,
    /// Answer with TC set and no records.
    Truncate,
    /// Answer as usual, this much later.
    Delay(Duration),
}

impl TestLayer {
    /// A layer with no faults, not recording.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                faulty: AtomicBool::new(false),
                faults: RwLock::default(),
                recording: AtomicBool::new(false),
                recorded: Mutex::default(),
                changes: watch::Sender::new(0),
            }),
        }
    }

    /// Start with recording on (or off), so that the first query is recorded.
    pub fn recording(self, enabled: bool) -> Self {
        self.record_queries(enabled);
        self
    }

    /// Start with this fault set (as [`TestLayer::inject_fault`]).
    pub fn with_fault(self, target: FaultTarget, action: FaultAction) -> Self {
        self.inject_fault(target, action);
        self
    }

    /// Make queries for `target` fail as `action` says, in place of any
    /// fault set for the same target.
    pub fn inject_fault(&self, target: FaultTarget, action: FaultAction) {
        if let Ok(mut faults) = self.inner.faults.write() {
            faults.retain(|(existing, _)| *existing != target);
            faults.push((target, action));
            self.inner.faulty.store(true, Ordering::Relaxed);
        }
    }

    /// Remove the fault set for `target`; whether there was one.
    pub fn remove_fault(&self, target: &FaultTarget) -> bool {
        let Ok(mut faults) = self.inner.faults.write() else { return false };
        let before = faults.len();
        faults.retain(|(existing, _)| existing != target);
        self.inner.faulty.store(!faults.is_empty(), Ordering::Relaxed);
        faults.len() != before
    }

    /// Remove every fault.
    pub fn clear_faults(&self) {
        if let Ok(mut faults) = self.inner.faults.write() {
            faults.clear();
            self.inner.faulty.store(false, Ordering::Relaxed);
        }
    }

    /// The faults in force, oldest first.
    pub fn faults(&self) -> Vec<(FaultTarget, FaultAction)> {
        self.inner.faults.read().map(|faults| faults.clone()).unwrap_or_default()
    }

    /// Start or stop recording the queries received.
    pub fn record_queries(&self, enabled: bool) {
        self.inner.recording.store(enabled, Ordering::Relaxed);
    }

    /// Whether queries are being recorded.
    pub fn is_recording(&self) -> bool {
        self.inner.recording.load(Ordering::Relaxed)
    }

    /// The queries recorded so far, in the order they arrived.
    pub fn recorded_queries(&self) -> Vec<RecordedQuery> {
        lock(&self.inner.recorded).queries.iter().cloned().collect()
    }

    /// The queries recorded so far, clearing the record (queries still
    /// being answered are not completed in it afterwards).
    pub fn take_recorded_queries(&self) -> Vec<RecordedQuery> {
        let taken: Vec<_> = std::mem::take(&mut lock(&self.inner.recorded).queries).into();
        self.inner.changes.send_modify(|changes| *changes += 1);
        taken
    }

    /// Wait until a recorded query satisfies `predicate`, at most
    /// `timeout`; the first that does, or `None` when none did in time.
    /// Queries are offered as they arrive and again once finished, so
    /// `|query| query.is_for("api.test") && query.finished` waits for the
    /// answer.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut predicate: impl FnMut(&RecordedQuery) -> bool,
    ) -> Option<RecordedQuery> {
        let mut changes = self.inner.changes.subscribe();
        let found = tokio::time::timeout(timeout, async {
            loop {
                changes.borrow_and_update();
                if let Some(query) = lock(&self.inner.recorded).queries.iter().find(|query| predicate(query)) {
                    return query.clone();
                }
                // `self` holds the sender, so this only waits.
                let _ = changes.changed().await;
            }
        })
        .await;
        found.ok()
    }

    /// Wait until at least `count` queries have been recorded and all of
    /// them are finished, at most `timeout`; then every query recorded, or
    /// `None` when that did not happen in time.
    pub async fn wait_for_queries(&self, count: usize, timeout: Duration) -> Option<Vec<RecordedQuery>> {
        let mut changes = self.inner.changes.subscribe();
        let done = tokio::time::timeout(timeout, async {
            loop {
                changes.borrow_and_update();
                {
                    let record = lock(&self.inner.recorded);
                    if record.queries.len() >= count && record.queries.iter().all(|query| query.finished) {
                        return record.queries.iter().cloned().collect();
                    }
                }
                let _ = changes.changed().await;
            }
        })
        .await;
        done.ok()
    }

    /// Record a query that arrived (when recording); its sequence number,
    /// to finish it with once answered.
    pub(crate) fn record_arrival(&self, query: impl FnOnce() -> RecordedQuery) -> Option<u64> {
        if !self.is_recording() {
            return None;
        }
        let sequence = {
            let mut record = lock(&self.inner.recorded);
            if record.queries.len() >= MAX_RECORDED {
                record.queries.pop_front();
            }
            let sequence = record.next;
            record.next += 1;
            record.queries.push_back(RecordedQuery { sequence, ..query() });
            sequence
        };
        self.inner.changes.send_modify(|changes| *changes += 1);
        Some(sequence)
    }

    /// Complete the recorded query `sequence` with what the server did:
    /// the `response` sent (none: dropped or closed) and the trace.
    pub(crate) fn record_finish(&self, sequence: u64, response: Option<&[u8]>, trace: Option<&Trace>, silent: &str) {
        {
            let mut record = lock(&self.inner.recorded);
            let Some(query) = record.queries.iter_mut().rev().find(|query| query.sequence == sequence) else {
                return;
            };
            query.finished = true;
            if let Some(trace) = trace {
                query.decision.clone_from(&trace.decision);
                query.matched.clone_from(&trace.matched);
                query.group.clone_from(&trace.group);
                query.cache_hit = trace.cache.as_deref() == Some("hit");
            }
            match response.and_then(|bytes| Message::parse(bytes).ok()) {
                Some(message) => {
                    query.rcode = Some(message.rcode().unwrap_or(message.flags().rcode()));
                    if let Ok(answers) = message.answers() {
                        query.answers = answers
                            .flatten()
                            .filter_map(|record| Some(RecordBuf::from_record(&record).ok()?.to_string()))
                            .collect();
                    }
                }
                None => {
                    query.rcode = None;
                    if query.decision.is_empty() || response.is_none() {
                        query.decision = silent.to_owned();
                    }
                }
            }
        }
        self.inner.changes.send_modify(|changes| *changes += 1);
    }

    /// What the fault on `name` does to a query that came over `transport`.
    pub(crate) fn fault(&self, name: &impl ToName, transport: Transport) -> Option<Intercept> {
        match self.fault_for_name(name)? {
            FaultAction::Drop => Some(Intercept::Drop),
            FaultAction::TcpReset if matches!(transport, Transport::Tcp | Transport::Dot) => Some(Intercept::Close),
            FaultAction::TcpReset => Some(Intercept::Drop),
            FaultAction::ServFail => Some(Intercept::ServFail),
            // Only UDP answers are truncated: the client's retry over TCP is answered.
            FaultAction::Truncate if transport == Transport::Udp => Some(Intercept::Truncate),
            FaultAction::Truncate => None,
            FaultAction::Delay(delay) => Some(Intercept::Delay(delay)),
        }
    }

    /// The fault for a question name (the most specific matching name wins).
    fn fault_for_name(&self, name: &impl ToName) -> Option<FaultAction> {
        if !self.inner.faulty.load(Ordering::Relaxed) {
            return None;
        }
        let faults = self.inner.faults.read().ok()?;
        let mut scratch = [0u8; signpost_wire::MAX_NAME_LEN];
        let flat = name.flat(&mut scratch);
        faults
            .iter()
            .filter_map(|(target, action)| match target {
                FaultTarget::Name(fault_name) => signpost_wire::flat_is_subdomain(flat, fault_name.as_wire())
                    .then_some((fault_name.wire_len(), *action)),
                FaultTarget::UpstreamGroup(_) => None,
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, action)| action)
    }

    /// The fault for queries forwarded to `group`.
    pub(crate) fn fault_for_group(&self, group: &str) -> Option<FaultAction> {
        if !self.inner.faulty.load(Ordering::Relaxed) {
            return None;
        }
        let faults = self.inner.faults.read().ok()?;
        faults.iter().find_map(|(target, action)| match target {
            FaultTarget::UpstreamGroup(name) if name == group => Some(*action),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_name_fault_applies() {
        let layer = TestLayer::new();
        let name = |text: &str| text.parse::<NameBuf>().expect("name");
        assert_eq!(layer.fault_for_name(&name("example.com")), None);
        layer.inject_fault(FaultTarget::Name(name("example.com")), FaultAction::ServFail);
        layer.inject_fault(FaultTarget::Name(name("slow.example.com")), FaultAction::Delay(Duration::from_millis(5)));
        layer.inject_fault(FaultTarget::UpstreamGroup("corp".into()), FaultAction::Drop);
        assert_eq!(
            layer.fault_for_name(&name("a.slow.example.com")),
            Some(FaultAction::Delay(Duration::from_millis(5)))
        );
        assert_eq!(layer.fault_for_name(&name("www.example.com")), Some(FaultAction::ServFail));
        assert_eq!(layer.fault_for_name(&name("example.org")), None);
        assert_eq!(layer.fault_for_group("corp"), Some(FaultAction::Drop));
        assert_eq!(layer.faults().len(), 3);
        assert!(layer.remove_fault(&FaultTarget::Name(name("example.com"))));
        assert!(!layer.remove_fault(&FaultTarget::Name(name("example.com"))));
        assert_eq!(layer.fault_for_name(&name("www.example.com")), None);
        layer.clear_faults();
        assert!(layer.faults().is_empty());
        assert_eq!(layer.fault_for_group("corp"), None);
    }

    /// An A query for `name` over UDP.
    fn query(name: &NameBuf) -> RecordedQuery {
        RecordedQuery::arrived(
            name.clone(),
            RecordType::A,
            Transport::Udp,
            "127.0.0.1:5353".parse().expect("address"),
            "udp".into(),
        )
    }

    #[test]
    fn recording_keeps_queries_until_taken() {
        let layer = TestLayer::new().recording(true);
        let name: NameBuf = "www.example.com".parse().expect("name");
        assert_eq!(layer.record_arrival(|| query(&name)), Some(0));
        assert_eq!(layer.clone().recorded_queries(), [query(&name)], "clones share the record");
        assert!(layer.recorded_queries()[0].is_for("WWW.example.com"));
        assert!(!layer.recorded_queries()[0].is_for("example.com"));
        assert_eq!(layer.take_recorded_queries(), [query(&name)]);
        assert!(layer.recorded_queries().is_empty());
        layer.record_queries(false);
        assert!(!layer.is_recording());
        assert_eq!(layer.record_arrival(|| query(&name)), None);
        assert!(layer.recorded_queries().is_empty());
    }

    #[test]
    fn a_finished_query_carries_the_answer_and_the_trace() {
        let layer = TestLayer::new().recording(true);
        let name: NameBuf = "www.example.com".parse().expect("name");
        let first = layer.record_arrival(|| query(&name)).expect("recording");
        let second = layer.record_arrival(|| query(&name)).expect("recording");
        let mut response = Vec::new();
        let mut builder = signpost_wire::MessageBuilder::new(&mut response).expect("builder");
        builder.push_question(&name, RecordType::A, signpost_wire::Class::IN).expect("question");
        let record = RecordBuf::from_presentation("www.example.com. 60 IN A 192.0.2.1", None, None).expect("record");
        builder.push_record_buf(signpost_wire::Section::Answer, &record).expect("answer");
        builder.finish().expect("finish");
        let trace = Trace {
            decision: "forward".into(),
            matched: "default".into(),
            group: Some("up".into()),
            cache: Some("hit".into()),
            ..Trace::default()
        };
        layer.record_finish(first, Some(&response), Some(&trace), "drop");
        layer.record_finish(second, None, None, "drop");
        let recorded = layer.recorded_queries();
        assert!(recorded[0].finished && recorded[0].cache_hit);
        assert_eq!(recorded[0].rcode, Some(Rcode::NOERROR));
        assert_eq!(recorded[0].answers, ["www.example.com. 60 IN A 192.0.2.1"]);
        assert_eq!((recorded[0].decision.as_str(), recorded[0].group.as_deref()), ("forward", Some("up")));
        assert_eq!((recorded[1].finished, recorded[1].rcode, recorded[1].decision.as_str()), (true, None, "drop"));
    }

    #[tokio::test]
    async fn waiting_sees_queries_recorded_later_and_gives_up_in_time() {
        let layer = TestLayer::new().recording(true);
        let name: NameBuf = "later.example.com".parse().expect("name");
        let recorder = {
            let (layer, name) = (layer.clone(), name.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let sequence = layer.record_arrival(|| query(&name)).expect("recording");
                tokio::time::sleep(Duration::from_millis(20)).await;
                layer.record_finish(sequence, None, None, "drop");
            })
        };
        let seen = layer.wait_for(Duration::from_secs(5), |query| query.is_for("later.example.com")).await;
        assert!(seen.is_some());
        let all = layer.wait_for_queries(1, Duration::from_secs(5)).await.expect("finished in time");
        assert!(all[0].finished);
        recorder.await.expect("recorder");
        let started = std::time::Instant::now();
        assert!(layer.wait_for(Duration::from_millis(50), |query| query.is_for("never.example.com")).await.is_none());
        assert!(layer.wait_for_queries(2, Duration::from_millis(50)).await.is_none());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn faults_depend_on_the_transport() {
        let layer = TestLayer::new();
        let name: NameBuf = "www.example.com".parse().expect("name");
        let target = FaultTarget::name("example.com.").expect("name");
        assert_eq!(target, FaultTarget::Name("EXAMPLE.com".parse().expect("name")));
        layer.inject_fault(target.clone(), FaultAction::Truncate);
        assert_eq!(layer.fault(&name, Transport::Udp), Some(Intercept::Truncate));
        assert_eq!(layer.fault(&name, Transport::Tcp), None, "TCP is answered");
        layer.inject_fault(target, FaultAction::TcpReset);
        assert_eq!(layer.fault(&name, Transport::Dot), Some(Intercept::Close));
        assert_eq!(layer.fault(&name, Transport::Udp), Some(Intercept::Drop));
        assert_eq!(layer.fault(&name, Transport::Doh), Some(Intercept::Drop));
        let layer = TestLayer::new().with_fault(FaultTarget::upstream_group("up"), FaultAction::Drop);
        assert_eq!(layer.fault_for_group("up"), Some(FaultAction::Drop));
    }
}
