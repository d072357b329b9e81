//! The fakes these tests ask: signpost-testkit's fake upstream answering
//! every question with A 192.0.2.1, on the listener and with the
//! behaviours each test chooses.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use signpost_testkit::{Answer, CertificateFiles, FakeUpstreamBuilder, Query, TempDir, TestCertificates};
pub(crate) use signpost_testkit::{Behaviour, FakeUpstream};
use signpost_upstream::{GroupConfig, Resolved, ServerConfig, TlsOptions, UpstreamError, Upstreams};
use signpost_wire::{EdnsHeader, Message, RData, Rcode, RecordType};

/// The address genuine answers carry.
pub(crate) const GENUINE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The address spoofed answers carry.
pub(crate) const FORGED: Ipv4Addr = signpost_testkit::FORGED_ADDRESS;

/// A query for `name` A with RD and EDNS (payload 4096), as a client would send it.
pub(crate) fn query(name: &str) -> Vec<u8> {
    Query::new(name, RecordType::A)
        .id(0x4242)
        .edns(EdnsHeader { udp_payload_size: 4096, ..EdnsHeader::default() })
        .to_bytes()
}

/// The first A record of an answer.
pub(crate) fn first_address(response: &[u8]) -> Option<Ipv4Addr> {
    let message = Message::parse(response).ok()?;
    message.answers().ok()?.find_map(|record| match record.ok()?.data() {
        Ok(RData::A(address)) => Some(address),
        _ => None,
    })
}

/// A fake answering every question with [`GENUINE`].
pub(crate) fn genuine() -> FakeUpstreamBuilder {
    FakeUpstream::builder().otherwise(Answer::address(GENUINE.into()))
}

/// A fake answering every question with `rcode` and no records.
pub(crate) fn failing(rcode: Rcode) -> FakeUpstreamBuilder {
    FakeUpstream::builder().otherwise(Answer::rcode(rcode))
}

/// Start `builder` with `behaviours`.
pub(crate) async fn start(
    builder: FakeUpstreamBuilder,
    behaviours: impl IntoIterator<Item = Behaviour>,
) -> FakeUpstream {
    behaviours.into_iter().fold(builder, FakeUpstreamBuilder::behaviour).start().await.unwrap()
}

/// A genuine fake on UDP only.
pub(crate) async fn udp(behaviours: impl IntoIterator<Item = Behaviour>) -> FakeUpstream {
    start(genuine().udp(), behaviours).await
}

/// A genuine fake on TCP only.
pub(crate) async fn tcp(behaviours: impl IntoIterator<Item = Behaviour>) -> FakeUpstream {
    start(genuine().tcp(), behaviours).await
}

/// Upstreams holding `group`.
pub(crate) fn upstreams(group: GroupConfig) -> Upstreams {
    Upstreams::new(vec![group]).unwrap()
}

/// Upstreams holding group "test" of `servers`, with short timeouts.
pub(crate) fn upstreams_of(servers: Vec<ServerConfig>) -> Upstreams {
    upstreams(group(servers))
}

/// Upstreams holding group "test" of `server` over UDP.
pub(crate) fn over_udp(server: &FakeUpstream) -> Upstreams {
    upstreams_of(vec![ServerConfig::udp(server.address())])
}

/// Ask example.com A through group "test".
pub(crate) async fn resolve(upstreams: &Upstreams) -> Result<Resolved, UpstreamError> {
    upstreams.group("test").unwrap().resolve(&query("example.com")).await
}

/// Ask through group "test" of `first` and then `second`, where the
/// answer must come from `second`.
async fn resolve_past(first: ServerConfig, second: ServerConfig) -> (Upstreams, Resolved) {
    let upstreams = upstreams_of(vec![first, second.clone()]);
    let resolved = resolve(&upstreams).await.unwrap();
    assert_eq!(resolved.server, second.address, "{:?}", resolved.attempts);
    (upstreams, resolved)
}

/// [`resolve_past`] a UDP fake behaving as `failing` to a genuine one.
pub(crate) async fn resolve_past_udp(failing: Behaviour) -> (Upstreams, Resolved) {
    let (bad, good) = (udp([failing]).await, udp([]).await);
    resolve_past(ServerConfig::udp(bad.address()), ServerConfig::udp(good.address())).await
}

/// [`resolve_past`] a TCP fake behaving as `failing` to a genuine one.
pub(crate) async fn resolve_past_tcp(failing: Behaviour) -> (Upstreams, Resolved) {
    let (bad, good) = (tcp([failing]).await, tcp([]).await);
    resolve_past(ServerConfig::tcp(bad.address()), ServerConfig::tcp(good.address())).await
}

/// Resolve `n0.example` .. `n{count-1}.example` all at once, each in a task
/// of its own; every query must get an answer, which is returned in order.
pub(crate) async fn resolve_at_once(group: &signpost_upstream::Group, count: usize) -> Vec<Resolved> {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let group = group.clone();
            tokio::spawn(async move { group.resolve(&query(&format!("n{i}.example"))).await })
        })
        .collect();
    let mut answers = Vec::with_capacity(count);
    for task in tasks {
        answers.push(task.await.unwrap().unwrap());
    }
    answers
}

/// A group of `servers` with short timeouts for tests.
pub(crate) fn group(servers: Vec<ServerConfig>) -> GroupConfig {
    group_timed(servers, Duration::from_millis(400), Duration::from_secs(2))
}

/// The group `test` of `servers` with these timeouts.
pub(crate) fn group_timed(servers: Vec<ServerConfig>, per_try: Duration, total: Duration) -> GroupConfig {
    let mut group = GroupConfig::new("test", servers);
    group.per_try_timeout = per_try;
    group.total_timeout = total;
    group
}

/// Test certificates naming `dns.test` too, with the CA in a file for the client.
pub(crate) struct Pki {
    certificates: TestCertificates,
    files: CertificateFiles,
    _dir: TempDir,
}

impl Pki {
    pub(crate) fn new() -> Self {
        let certificates = TestCertificates::with_names(&["dns.test"]).unwrap();
        let dir = TempDir::new();
        let files = certificates.write_to(dir.path()).unwrap();
        Self { certificates, files, _dir: dir }
    }

    /// Server settings offering `alpn`, with ring's default choices.
    pub(crate) fn server(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        self.certificates.server_config(alpn).unwrap()
    }

    /// Server settings with a given provider.
    pub(crate) fn server_with(
        &self,
        provider: rustls::crypto::CryptoProvider,
        alpn: &[&[u8]],
    ) -> Arc<rustls::ServerConfig> {
        self.certificates.server_config_with(provider, alpn).unwrap()
    }

    /// Client TLS options trusting only this CA.
    pub(crate) fn client(&self) -> TlsOptions {
        TlsOptions { ca_file: Some(self.files.ca.clone()), ignore_system_roots: true, fips: false }
    }
}

/// A genuine DoT fake.
pub(crate) async fn dot(
    tls: Arc<rustls::ServerConfig>,
    behaviours: impl IntoIterator<Item = Behaviour>,
) -> FakeUpstream {
    start(genuine().dot(tls), behaviours).await
}

/// A genuine DoH fake.
pub(crate) async fn doh(
    tls: Arc<rustls::ServerConfig>,
    behaviours: impl IntoIterator<Item = Behaviour>,
) -> FakeUpstream {
    start(genuine().doh(tls), behaviours).await
}
