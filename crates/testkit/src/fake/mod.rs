//! The fake upstream DNS server: one server on loopback that answers over
//! UDP, TCP, DoT and DoH from a script, misbehaves on request, and records
//! every query it receives.

mod answer;
mod behaviour;
mod serve;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use signpost_wire::{Flags, Message, NameBuf, OptionCode, Rcode, RecordType};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use self::answer::{Answer, FORGED_ADDRESS, Handler, OTHER_QUESTION};
pub use self::behaviour::Behaviour;
use crate::{Error, Transport};

/// A scriptable DNS server on loopback, for tests of anything that asks an
/// upstream: answers per name and type, faults on request, and a record of
/// every query. It stops when dropped.
///
/// Without a listener chosen it listens on UDP and TCP on one port of
/// 127.0.0.1 (so that a client's retry over TCP after a truncated answer
/// reaches it). The port is picked by the kernel; when the TCP port of that
/// number is taken, another is tried.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), signpost_testkit::Error> {
/// use std::time::Duration;
/// use signpost_testkit::{Answer, Behaviour, FakeUpstream, query, udp_exchange};
/// use signpost_wire::{Rcode, RecordType};
///
/// let upstream = FakeUpstream::builder()
///     .answer("www.example.", RecordType::A, Answer::records(["www.example. 60 IN A 192.0.2.1"]))
///     .answer("gone.example.", None, Answer::nxdomain())
///     .otherwise(Answer::rcode(Rcode::REFUSED))
///     .behaviour(Behaviour::Delay(Duration::from_millis(10)))
///     .start()
///     .await?;
/// let response = udp_exchange(upstream.address(), &query("www.example", RecordType::A), Duration::from_secs(5)).await;
/// assert!(response.is_some());
/// let seen = upstream.wait_for_queries(1, Duration::from_secs(5)).await?;
/// assert_eq!(seen[0].name, "www.example.");
/// # Ok(()) }
/// ```
pub struct FakeUpstream {
    udp: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    dot: Option<SocketAddr>,
    doh: Option<SocketAddr>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        // Each listener task owns the tasks it started (per query, per
        // connection), so aborting it closes every socket of this fake.
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for FakeUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeUpstream")
            .field("udp", &self.udp)
            .field("tcp", &self.tcp)
            .field("dot", &self.dot)
            .field("doh", &self.doh)
            .finish_non_exhaustive()
    }
}

/// A query the fake upstream received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenQuery {
    /// How it came.
    pub transport: Transport,
    /// Who sent it.
    pub source: SocketAddr,
    /// Its ID.
    pub id: u16,
    /// Its flags (RD, CD, AD...).
    pub flags: Flags,
    /// The first question's name as sent (case kept, with the final dot);
    /// empty when no question could be read.
    pub name: String,
    /// The first question's type (`RecordType(0)` when none could be read).
    pub qtype: RecordType,
    /// Its OPT record, if any.
    pub edns: Option<SeenEdns>,
    /// The query as received.
    pub bytes: Vec<u8>,
}

/// The OPT record of a query the fake upstream received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenEdns {
    /// The UDP payload size as sent.
    pub udp_payload_size: u16,
    /// The DO bit.
    pub dnssec_ok: bool,
    /// The EDNS version.
    pub version: u8,
    /// The codes of its options, in order.
    pub options: Vec<OptionCode>,
}

impl SeenQuery {
    fn read(bytes: &[u8], transport: Transport, source: SocketAddr) -> Self {
        let message = Message::parse(bytes).ok();
        let question = message.and_then(|message| message.first_question().ok().flatten());
        let edns = message.and_then(|message| message.edns().ok().flatten()).map(|edns| SeenEdns {
            udp_payload_size: edns.raw_udp_payload_size(),
            dnssec_ok: edns.dnssec_ok(),
            version: edns.version(),
            options: edns.options().filter_map(Result::ok).map(|option| option.code()).collect(),
        });
        Self {
            transport,
            source,
            id: message.map_or(0, |message| message.id()),
            flags: message.map_or(Flags::default(), |message| message.flags()),
            name: question.map(|question| question.name().to_string()).unwrap_or_default(),
            qtype: question.map_or(RecordType(0), |question| question.qtype()),
            edns,
            bytes: bytes.to_vec(),
        }
    }

    /// Whether the query carried this EDNS option.
    pub fn has_option(&self, code: OptionCode) -> bool {
        self.edns.as_ref().is_some_and(|edns| edns.options.contains(&code))
    }
}

/// An HTTP request the DoH listener received (including refused ones).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`...
    pub method: String,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub version: String,
    /// The path and query string.
    pub uri: String,
}

/// The fake upstream's counters, read at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Queries received, over every transport.
    pub queries: u64,
    /// Connections accepted (TCP, DoT, DoH).
    pub connections: u64,
    /// Queries that got a response (an HTTP status counts).
    pub answered: u64,
    /// Queries that got nothing (silence, dropped, unreadable).
    pub unanswered: u64,
}

/// A rule of the script: a name (and type) and what to answer.
#[derive(Clone, Debug)]
struct Rule {
    name: NameBuf,
    /// `*.name`: every name below `name` (not `name` itself).
    below: bool,
    qtype: Option<RecordType>,
    answer: Answer,
}

/// The script: rules in order, the answer when none matches, behaviours.
#[derive(Clone, Debug)]
struct Script {
    rules: Vec<Rule>,
    otherwise: Answer,
    behaviours: Vec<Behaviour>,
}

impl Script {
    fn answer_for(&self, query: &[u8]) -> &Answer {
        let question = Message::parse(query).ok().and_then(|message| message.first_question().ok().flatten());
        let Some(question) = question else { return &self.otherwise };
        let name = question.name();
        self.rules
            .iter()
            .find(|rule| {
                let name_matches =
                    if rule.below { name != rule.name && name.is_subdomain_of(&rule.name) } else { name == rule.name };
                name_matches && rule.qtype.is_none_or(|qtype| qtype == question.qtype())
            })
            .map_or(&self.otherwise, |rule| &rule.answer)
    }
}

/// What the listener tasks share: the script and the record of queries.
struct Shared {
    script: Mutex<Script>,
    seen: Mutex<Vec<SeenQuery>>,
    http: Mutex<Vec<HttpRequest>>,
    /// How many queries were seen; waiters watch it.
    seen_count: watch::Sender<u64>,
    connections: AtomicU64,
    answered: AtomicU64,
    unanswered: AtomicU64,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere in a test must not hide what was recorded.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Record a query and plan what to do with it.
    fn receive(&self, query: &[u8], transport: Transport, source: SocketAddr) -> behaviour::Plan {
        let seen = SeenQuery::read(query, transport, source);
        let number = {
            let mut all = lock(&self.seen);
            all.push(seen);
            all.len() as u64
        };
        let plan = {
            let script = lock(&self.script);
            behaviour::plan(query, transport, number, script.answer_for(query), &script.behaviours)
        };
        let counter = if plan.answers() { &self.answered } else { &self.unanswered };
        counter.fetch_add(1, Ordering::SeqCst);
        self.seen_count.send_replace(number);
        plan
    }

    fn connection(&self) {
        self.connections.fetch_add(1, Ordering::SeqCst);
    }

    fn http_request(&self, request: HttpRequest) {
        lock(&self.http).push(request);
    }
}

/// Which listeners to open, and their TLS settings.
#[derive(Clone, Default)]
struct Listeners {
    udp: bool,
    tcp: bool,
    dot: Option<Arc<rustls::ServerConfig>>,
    doh: Option<Arc<rustls::ServerConfig>>,
}

/// Builds a [`FakeUpstream`]: its listeners, script and behaviours.
#[must_use]
pub struct FakeUpstreamBuilder {
    address: SocketAddr,
    listeners: Listeners,
    script: Script,
}

/// How many kernel-chosen ports are tried for UDP and TCP together.
const SHARED_PORT_TRIES: usize = 64;

impl FakeUpstream {
    /// A builder: 127.0.0.1, a free port, no rules, REFUSED for everything.
    pub fn builder() -> FakeUpstreamBuilder {
        FakeUpstreamBuilder {
            address: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            listeners: Listeners::default(),
            script: Script { rules: Vec::new(), otherwise: Answer::rcode(Rcode::REFUSED), behaviours: Vec::new() },
        }
    }

    /// UDP and TCP on 127.0.0.1, every A question answered with `address`
    /// (TTL 300), other types NODATA.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound (see [`FakeUpstreamBuilder::start`]).
    pub async fn answering(address: Ipv4Addr) -> Self {
        Self::builder().otherwise(Answer::address(IpAddr::V4(address))).start_or_panic().await
    }

    /// UDP and TCP on 127.0.0.1, never answering.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn silent() -> Self {
        Self::builder().behaviour(Behaviour::Silence).start_or_panic().await
    }

    /// UDP and TCP on 127.0.0.1, answering SERVFAIL to everything.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn servfail() -> Self {
        Self::builder().otherwise(Answer::rcode(Rcode::SERVFAIL)).start_or_panic().await
    }

    /// The UDP address, or else the TCP one (they share the port when both
    /// listen): the address to configure a Do53 upstream with.
    ///
    /// # Panics
    ///
    /// When the fake has neither UDP nor TCP.
    pub fn address(&self) -> SocketAddr {
        self.udp.or(self.tcp).unwrap_or_else(|| panic!("this fake upstream has no UDP or TCP listener"))
    }

    /// The UDP listener's address, if it has one.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp
    }

    /// The TCP listener's address, if it has one.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp
    }

    /// The DoT listener's address.
    ///
    /// # Panics
    ///
    /// When the builder was not given [`FakeUpstreamBuilder::dot`].
    pub fn dot_addr(&self) -> SocketAddr {
        self.dot.unwrap_or_else(|| panic!("this fake upstream has no DoT listener: call .dot() on the builder"))
    }

    /// The DoH listener's address (requests go to `/dns-query`).
    ///
    /// # Panics
    ///
    /// When the builder was not given [`FakeUpstreamBuilder::doh`].
    pub fn doh_addr(&self) -> SocketAddr {
        self.doh.unwrap_or_else(|| panic!("this fake upstream has no DoH listener: call .doh() on the builder"))
    }

    /// Every query received so far, in order.
    pub fn queries(&self) -> Vec<SeenQuery> {
        lock(&self.shared.seen).clone()
    }

    /// How many queries were received so far (over every transport).
    pub fn query_count(&self) -> usize {
        lock(&self.shared.seen).len()
    }

    /// How many different questions (name, case aside, and type) were
    /// received: a client that retransmits a question after its adaptive
    /// timeout (as signpost-upstream does on a slow machine) asks it once.
    pub fn question_count(&self) -> usize {
        let seen = lock(&self.shared.seen);
        let questions: std::collections::HashSet<(String, RecordType)> =
            seen.iter().map(|query| (query.name.to_ascii_lowercase(), query.qtype)).collect();
        questions.len()
    }

    /// The question names received so far, in order (as sent, with the final dot).
    pub fn names(&self) -> Vec<String> {
        lock(&self.shared.seen).iter().map(|query| query.name.clone()).collect()
    }

    /// Whether a query for `name` was received (case and final dot do not matter).
    pub fn was_asked(&self, name: &str) -> bool {
        let wanted = name.trim_end_matches('.');
        lock(&self.shared.seen).iter().any(|query| query.name.trim_end_matches('.').eq_ignore_ascii_case(wanted))
    }

    /// Connections accepted so far (TCP, DoT and DoH).
    pub fn connection_count(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The HTTP requests the DoH listener received, in order.
    pub fn http_requests(&self) -> Vec<HttpRequest> {
        lock(&self.shared.http).clone()
    }

    /// All counters at once.
    pub fn counters(&self) -> Counters {
        Counters {
            queries: *self.shared.seen_count.borrow(),
            connections: self.shared.connections.load(Ordering::SeqCst),
            answered: self.shared.answered.load(Ordering::SeqCst),
            unanswered: self.shared.unanswered.load(Ordering::SeqCst),
        }
    }

    /// Replace the behaviours from now on (queries already in hand keep theirs).
    pub fn set_behaviours(&self, behaviours: impl IntoIterator<Item = Behaviour>) {
        lock(&self.shared.script).behaviours = behaviours.into_iter().collect();
    }

    /// Wait until at least `count` queries have been received, at most
    /// `timeout`; then every query received so far.
    pub async fn wait_for_queries(&self, count: usize, timeout: Duration) -> Result<Vec<SeenQuery>, Error> {
        let mut receiver = self.shared.seen_count.subscribe();
        let wanted = count as u64;
        if tokio::time::timeout(timeout, receiver.wait_for(|seen| *seen >= wanted)).await.is_err() {
            return Err(Error::Timeout {
                what: format!("{count} queries at the fake upstream"),
                waited: timeout,
                seen: format!("it received {:?}", self.names()),
            });
        }
        Ok(self.queries())
    }

    /// Wait until a query matching `predicate` has been received, at most
    /// `timeout`; then the first such query.
    pub async fn wait_for_query(
        &self,
        timeout: Duration,
        predicate: impl Fn(&SeenQuery) -> bool,
    ) -> Result<SeenQuery, Error> {
        let mut receiver = self.shared.seen_count.subscribe();
        let found = tokio::time::timeout(timeout, async {
            loop {
                if let Some(query) = lock(&self.shared.seen).iter().find(|query| predicate(query)) {
                    return query.clone();
                }
                // Only fails when the fake is gone, which `self` rules out.
                let _ = receiver.changed().await;
            }
        })
        .await;
        found.map_err(|_| Error::Timeout {
            what: "a matching query at the fake upstream".to_owned(),
            waited: timeout,
            seen: format!("it received {:?}", self.names()),
        })
    }
}

impl FakeUpstreamBuilder {
    /// Listen on this address instead of 127.0.0.1 with a free port. With a
    /// port other than 0, UDP and TCP both take that port (no retry).
    pub fn bind(mut self, address: SocketAddr) -> Self {
        self.address = address;
        self
    }

    /// Listen on UDP.
    pub fn udp(mut self) -> Self {
        self.listeners.udp = true;
        self
    }

    /// Listen on TCP (on the UDP port when both listen).
    pub fn tcp(mut self) -> Self {
        self.listeners.tcp = true;
        self
    }

    /// Listen for DNS over TLS (RFC 7858) with these settings, on a port of
    /// its own. See [`TestCertificates::server_config`](crate::TestCertificates::server_config).
    pub fn dot(mut self, tls: Arc<rustls::ServerConfig>) -> Self {
        self.listeners.dot = Some(tls);
        self
    }

    /// Listen for DNS over HTTPS (RFC 8484: GET and POST on `/dns-query`,
    /// HTTP/2 or HTTP/1.1 as the TLS settings' ALPN offers) on a port of its
    /// own.
    pub fn doh(mut self, tls: Arc<rustls::ServerConfig>) -> Self {
        self.listeners.doh = Some(tls);
        self
    }

    /// Answer questions for `name` with `answer`; `qtype` `None` means any
    /// type. `*.example.` stands for every name below example. (not
    /// example. itself). Names compare without regard to case; the first
    /// matching rule wins.
    ///
    /// # Panics
    ///
    /// When `name` is not a valid domain name; [`FakeUpstreamBuilder::try_answer`]
    /// returns the error.
    pub fn answer(self, name: &str, qtype: impl Into<Option<RecordType>>, answer: Answer) -> Self {
        match self.try_answer(name, qtype, answer) {
            Ok(builder) => builder,
            Err(error) => panic!("FakeUpstreamBuilder::answer: {error}"),
        }
    }

    /// [`FakeUpstreamBuilder::answer`] that returns an error for a bad name.
    pub fn try_answer(
        mut self,
        name: &str,
        qtype: impl Into<Option<RecordType>>,
        answer: Answer,
    ) -> Result<Self, Error> {
        let (below, bare) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, name),
        };
        let parsed = bare.parse::<NameBuf>().map_err(|source| Error::Name { text: name.to_owned(), source })?;
        self.script.rules.push(Rule { name: parsed, below, qtype: qtype.into(), answer });
        Ok(self)
    }

    /// What to answer when no rule matches (REFUSED unless set).
    pub fn otherwise(mut self, answer: Answer) -> Self {
        self.script.otherwise = answer;
        self
    }

    /// Add a behaviour (see [`Behaviour`] for how they combine).
    pub fn behaviour(mut self, behaviour: Behaviour) -> Self {
        self.script.behaviours.push(behaviour);
        self
    }

    /// Bind the listeners and start serving on the current tokio runtime.
    pub async fn start(self) -> Result<FakeUpstream, Error> {
        let mut listeners = self.listeners;
        let any_chosen = listeners.udp || listeners.tcp || listeners.dot.is_some() || listeners.doh.is_some();
        if !any_chosen {
            listeners.udp = true;
            listeners.tcp = true;
        }
        let (udp_socket, tcp_listener) = serve::bind_udp_and_tcp(self.address, listeners.udp, listeners.tcp).await?;
        let tls_address = SocketAddr::new(self.address.ip(), 0);
        let dot_listener = match &listeners.dot {
            Some(_) => Some(serve::bind_tcp(tls_address).await?),
            None => None,
        };
        let doh_listener = match &listeners.doh {
            Some(_) => Some(serve::bind_tcp(tls_address).await?),
            None => None,
        };
        let local = |result: std::io::Result<SocketAddr>, transport| {
            result.map_err(|source| Error::Bind { transport, address: self.address, source })
        };
        let udp = udp_socket.as_ref().map(|socket| local(socket.local_addr(), "UDP")).transpose()?;
        let tcp = tcp_listener.as_ref().map(|listener| local(listener.local_addr(), "TCP")).transpose()?;
        let dot = dot_listener.as_ref().map(|listener| local(listener.local_addr(), "DoT")).transpose()?;
        let doh = doh_listener.as_ref().map(|listener| local(listener.local_addr(), "DoH")).transpose()?;
        let shared = Arc::new(Shared {
            script: Mutex::new(self.script),
            seen: Mutex::new(Vec::new()),
            http: Mutex::new(Vec::new()),
            seen_count: watch::Sender::new(0),
            connections: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            unanswered: AtomicU64::new(0),
        });
        let mut tasks = Vec::new();
        if let Some(socket) = udp_socket {
            let spoofer = serve::bind_udp(SocketAddr::new(self.address.ip(), 0)).await?;
            tasks.push(tokio::spawn(serve::udp(socket, spoofer, shared.clone())));
        }
        if let Some(listener) = tcp_listener {
            tasks.push(tokio::spawn(serve::streams(listener, None, Transport::Tcp, shared.clone())));
        }
        if let (Some(listener), Some(tls)) = (dot_listener, listeners.dot) {
            tasks.push(tokio::spawn(serve::streams(listener, Some(tls), Transport::Dot, shared.clone())));
        }
        if let (Some(listener), Some(tls)) = (doh_listener, listeners.doh) {
            tasks.push(tokio::spawn(serve::https(listener, tls, shared.clone())));
        }
        Ok(FakeUpstream { udp, tcp, dot, doh, shared, tasks })
    }

    async fn start_or_panic(self) -> FakeUpstream {
        match self.start().await {
            Ok(fake) => fake,
            Err(error) => panic!("the fake upstream cannot start: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(rules: &[(&str, Option<RecordType>, Rcode)]) -> Script {
        let mut builder = FakeUpstream::builder();
        for (name, qtype, rcode) in rules {
            builder = builder.answer(name, *qtype, Answer::rcode(*rcode));
        }
        builder.script
    }

    fn rcode_for(script: &Script, name: &str, qtype: RecordType) -> Rcode {
        let bytes = crate::query(name, qtype);
        let response = script.answer_for(&bytes).respond(&Message::parse(&bytes).unwrap(), Transport::Udp).unwrap();
        Message::parse(&response).unwrap().rcode().unwrap()
    }

    #[test]
    fn the_first_matching_rule_wins_and_names_ignore_case() {
        let script = script(&[
            ("www.example.", Some(RecordType::A), Rcode::NOERROR),
            ("www.example", None, Rcode::NXDOMAIN),
            ("*.below.example", None, Rcode::SERVFAIL),
        ]);
        let cases = [
            ("WWW.Example", RecordType::A, Rcode::NOERROR),
            ("www.example", RecordType::AAAA, Rcode::NXDOMAIN),
            ("a.b.below.example", RecordType::A, Rcode::SERVFAIL),
            ("below.example", RecordType::A, Rcode::REFUSED),
            ("elsewhere.example", RecordType::A, Rcode::REFUSED),
        ];
        for (name, qtype, expected) in cases {
            assert_eq!(rcode_for(&script, name, qtype), expected, "{name} {qtype}");
        }
    }

    #[tokio::test]
    async fn dropped_queries_are_counted_and_waited_for() {
        let fake = FakeUpstream::builder()
            .otherwise(Answer::address(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))))
            .behaviour(Behaviour::DropEvery(std::num::NonZeroU64::new(2).unwrap()))
            .start()
            .await
            .unwrap();
        let wait = Duration::from_millis(300);
        let first = crate::udp_exchange(fake.address(), &crate::query("a.example", RecordType::A), wait).await;
        let second = crate::udp_exchange(fake.address(), &crate::query("b.example", RecordType::A), wait).await;
        assert!(first.is_some() && second.is_none(), "the second query is dropped");
        let seen = fake.wait_for_queries(2, Duration::from_secs(5)).await.unwrap();
        assert_eq!(seen.iter().map(|query| query.name.as_str()).collect::<Vec<_>>(), ["a.example.", "b.example."]);
        assert_eq!(fake.counters(), Counters { queries: 2, connections: 0, answered: 1, unanswered: 1 });
        assert!(fake.was_asked("B.Example"));
        let error = fake.wait_for_queries(3, Duration::from_millis(50)).await.err().unwrap();
        assert!(error.to_string().contains("a.example."), "the timeout says what came: {error}");
        let found = fake.wait_for_query(Duration::from_secs(1), |query| query.name == "b.example.").await.unwrap();
        assert_eq!(found.transport, Transport::Udp);
        // Behaviours change on the running fake.
        fake.set_behaviours([Behaviour::Silence]);
        assert!(crate::udp_exchange(fake.address(), &crate::query("c.example", RecordType::A), wait).await.is_none());
    }

    #[tokio::test]
    async fn tcp_connections_are_closed_after_the_answer_when_asked() {
        let fake = FakeUpstream::builder()
            .tcp()
            .otherwise(Answer::nxdomain())
            .behaviour(Behaviour::CloseAfterAnswer)
            .start()
            .await
            .unwrap();
        assert!(fake.udp_addr().is_none());
        let address = fake.tcp_addr().unwrap();
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        crate::write_frame(&mut stream, &crate::query("x.example", RecordType::A)).await.unwrap();
        let answer = crate::read_frame(&mut stream).await.unwrap();
        assert_eq!(Message::parse(&answer).unwrap().rcode(), Ok(Rcode::NXDOMAIN));
        assert!(crate::read_frame(&mut stream).await.is_none(), "closed after the answer");
        assert_eq!(fake.connection_count(), 1);
    }

    /// One HTTP/1.1 request over TLS to the fake's DoH listener: the status line and the body.
    async fn https1(fake: &FakeUpstream, certificates: &crate::TestCertificates, request: &[u8]) -> (String, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tls = certificates.client_config(&[b"http/1.1"]).unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
        let tcp = tokio::net::TcpStream::connect(fake.doh_addr()).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut stream = connector.connect(name, tcp).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        let head_end = response.windows(4).position(|window| window == b"\r\n\r\n").unwrap();
        let status = String::from_utf8_lossy(&response[..response.iter().position(|&b| b == b'\r').unwrap()]);
        (status.into_owned(), response[head_end + 4..].to_vec())
    }

    #[tokio::test]
    async fn doh_over_http1_answers_posts_and_refuses_other_paths_and_statuses() {
        let certificates = crate::TestCertificates::new().unwrap();
        let fake = FakeUpstream::builder()
            .doh(certificates.server_config(&[b"http/1.1"]).unwrap())
            .answer("broken.example.", None, Answer::rcode(Rcode::SERVFAIL))
            .otherwise(Answer::address(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 8))))
            .start()
            .await
            .unwrap();
        let query = crate::query("www.example", RecordType::A);
        let mut post = format!(
            "POST /dns-query HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/dns-message\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            query.len()
        )
        .into_bytes();
        post.extend_from_slice(&query);
        let (status, body) = https1(&fake, &certificates, &post).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(crate::answers(&body), ["www.example. 300 IN A 192.0.2.8"]);
        let elsewhere = b"GET /other HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        assert_eq!(https1(&fake, &certificates, elsewhere).await.0, "HTTP/1.1 404 Not Found");
        let requests = fake.http_requests();
        assert_eq!(requests.len(), 2);
        assert_eq!((requests[0].method.as_str(), requests[0].version.as_str()), ("POST", "HTTP/1.1"));
        assert_eq!(fake.query_count(), 1, "the request to another path carried no query");
        fake.set_behaviours([Behaviour::HttpStatus(503)]);
        assert_eq!(https1(&fake, &certificates, &post).await.0, "HTTP/1.1 503 Service Unavailable");
    }

    #[test]
    fn bad_names_are_refused_with_the_text() {
        let error = FakeUpstream::builder().try_answer("a..b", None, Answer::nxdomain()).err().unwrap();
        assert!(error.to_string().contains("a..b"), "{error}");
    }

    #[test]
    fn seen_queries_keep_the_spelling_and_edns() {
        let bytes = crate::Query::new("MiXeD.Example", RecordType::AAAA)
            .edns(signpost_wire::EdnsHeader { udp_payload_size: 1400, version: 0, dnssec_ok: true })
            .to_bytes();
        let seen = SeenQuery::read(&bytes, Transport::Tcp, "127.0.0.1:5".parse().unwrap());
        assert_eq!((seen.name.as_str(), seen.qtype, seen.id), ("MiXeD.Example.", RecordType::AAAA, 0x4d2));
        assert!(seen.flags.rd());
        let edns = seen.edns.unwrap();
        assert_eq!((edns.udp_payload_size, edns.dnssec_ok, edns.version), (1400, true, 0));
        let unreadable = SeenQuery::read(&[1, 2, 3], Transport::Udp, "127.0.0.1:5".parse().unwrap());
        assert_eq!((unreadable.name.as_str(), unreadable.qtype), ("", RecordType(0)));
    }
}
