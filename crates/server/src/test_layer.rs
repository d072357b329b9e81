//! Injected faults and query recording, for tests of code that depends on
//! DNS: a layer a test server adds with
//! [`ServerBuilder::test_layer`](crate::ServerBuilder::test_layer).
//!
//! A server built without it pays one branch on an `Option` per query;
//! the transports know nothing of it: a fault comes to them as an answer,
//! a later answer, no answer or a closed connection, like any other.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use signpost_rules::Transport;
use signpost_wire::{NameBuf, RecordType, ToName};

/// Most queries kept; older ones are dropped first.
const MAX_RECORDED: usize = 100_000;

/// What to do to a matching query.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultAction {
    /// Never answer.
    Drop,
    /// Answer after a delay.
    Delay(Duration),
    /// Answer SERVFAIL.
    ServFail,
    /// Answer UDP queries with TC set and no records; clients retry over
    /// TCP, where the query is answered as usual.
    Truncate,
    /// Close a TCP/DoT connection abruptly (over UDP: drop).
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

/// One query as the server received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedQuery {
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
}

/// Faults and recording for one server; cheap to clone (clones share
/// everything), so a test keeps one and hands another to the builder:
///
/// ```no_run
/// # async fn run() -> Result<(), signpost_server::Error> {
/// use signpost_server::{FaultAction, FaultTarget, Server, TestLayer};
///
/// let layer = TestLayer::new().recording(true);
/// let server =
///     Server::builder().udp_and_tcp("127.0.0.1:0".parse().unwrap()).test_layer(layer.clone()).start().await?;
/// layer.inject_fault(FaultTarget::Name("down.test".parse().unwrap()), FaultAction::ServFail);
/// // ... queries ...
/// assert!(layer.recorded_queries().iter().all(|query| query.transport == signpost_server::Transport::Udp));
/// server.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct TestLayer {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Whether any fault is set: the common case reads one atomic.
    faulty: AtomicBool,
    faults: RwLock<Vec<(FaultTarget, FaultAction)>>,
    recording: AtomicBool,
    recorded: Mutex<VecDeque<RecordedQuery>>,
}

impl std::fmt::Debug for TestLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestLayer")
            .field("faults", &self.faults())
            .field("recording", &self.inner.recording.load(Ordering::Relaxed))
            .finish()
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
        Self::default()
    }

    /// Start with recording on (or off), so that the first query is recorded.
    pub fn recording(self, enabled: bool) -> Self {
        self.record_queries(enabled);
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

    /// The queries recorded so far.
    pub fn recorded_queries(&self) -> Vec<RecordedQuery> {
        self.inner.recorded.lock().map(|queries| queries.iter().cloned().collect()).unwrap_or_default()
    }

    /// The queries recorded so far, clearing the record.
    pub fn take_recorded_queries(&self) -> Vec<RecordedQuery> {
        self.inner.recorded.lock().map(|mut queries| std::mem::take(&mut *queries).into()).unwrap_or_default()
    }

    /// Record a query (when recording) and say what the fault on its name
    /// does to it when it came over `transport`.
    pub(crate) fn intercept(
        &self,
        query: impl FnOnce() -> RecordedQuery,
        name: &impl ToName,
        transport: Transport,
    ) -> Option<Intercept> {
        if self.inner.recording.load(Ordering::Relaxed)
            && let Ok(mut queries) = self.inner.recorded.lock()
        {
            if queries.len() >= MAX_RECORDED {
                queries.pop_front();
            }
            queries.push_back(query());
        }
        self.fault(name, transport)
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
        RecordedQuery {
            name: name.clone(),
            qtype: RecordType::A,
            transport: Transport::Udp,
            client: "127.0.0.1:5353".parse().expect("address"),
            listener: "udp".into(),
        }
    }

    #[test]
    fn recording_keeps_queries_until_taken() {
        let layer = TestLayer::new().recording(true);
        let name: NameBuf = "www.example.com".parse().expect("name");
        let query = || query(&name);
        assert_eq!(layer.intercept(query, &name, Transport::Udp), None);
        assert_eq!(layer.clone().recorded_queries(), [query()], "clones share the record");
        assert_eq!(layer.take_recorded_queries(), [query()]);
        assert!(layer.recorded_queries().is_empty());
        layer.record_queries(false);
        assert_eq!(layer.intercept(query, &name, Transport::Udp), None);
        assert!(layer.recorded_queries().is_empty());
    }

    #[test]
    fn faults_depend_on_the_transport() {
        let layer = TestLayer::new();
        let name: NameBuf = "www.example.com".parse().expect("name");
        let query = || query(&name);
        let target = FaultTarget::Name("example.com".parse().expect("name"));
        layer.inject_fault(target.clone(), FaultAction::Truncate);
        assert_eq!(layer.intercept(query, &name, Transport::Udp), Some(Intercept::Truncate));
        assert_eq!(layer.intercept(query, &name, Transport::Tcp), None, "TCP is answered");
        layer.inject_fault(target, FaultAction::TcpReset);
        assert_eq!(layer.intercept(query, &name, Transport::Dot), Some(Intercept::Close));
        assert_eq!(layer.intercept(query, &name, Transport::Udp), Some(Intercept::Drop));
        assert_eq!(layer.intercept(query, &name, Transport::Doh), Some(Intercept::Drop));
    }
}
