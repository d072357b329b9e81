//! hickory-resolver as an independent client, built from an explicit
//! configuration: one server, one transport, no system configuration, no
//! hosts file, no search domains, no cache unless asked for.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::RData;
use signpost_wire::{Rcode, RecordType};

use crate::{Error, Transport};

/// Builds a hickory resolver that asks exactly one server over one transport.
///
/// Defaults: one attempt, a 3 s timeout, no cache, no retry over TCP after
/// an error (a truncated UDP answer is still asked again over TCP, as any
/// client does), TLS server name `localhost`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), signpost_testkit::Error> {
/// use std::net::Ipv4Addr;
/// use signpost_testkit::{FakeUpstream, ResolverAnswer, Transport, lookup, resolver};
/// use signpost_wire::RecordType;
///
/// let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
/// let client = resolver(Transport::Udp, upstream.address());
/// assert_eq!(lookup(&client, "www.example.", RecordType::A).await, ResolverAnswer::data(["192.0.2.1"]));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct ResolverBuilder {
    transport: Transport,
    server: SocketAddr,
    source: Option<IpAddr>,
    tls: Option<rustls::ClientConfig>,
    server_name: String,
    timeout: Duration,
    cache_size: u64,
    /// UDP first, TCP after a truncated answer (both to `server`).
    udp_then_tcp: bool,
}

impl ResolverBuilder {
    /// A resolver for `server` over `transport`.
    pub fn new(transport: Transport, server: SocketAddr) -> Self {
        Self {
            transport,
            server,
            source: None,
            tls: None,
            server_name: "localhost".to_owned(),
            timeout: Duration::from_secs(3),
            cache_size: 0,
            udp_then_tcp: false,
        }
    }

    /// A resolver for `server` over UDP that asks again over TCP, on the
    /// same address, when an answer comes back truncated: how a stub
    /// resolver talks to a server listening on both (a [`crate::FakeDns`]).
    pub fn udp_and_tcp(server: SocketAddr) -> Self {
        Self { udp_then_tcp: true, ..Self::new(Transport::Udp, server) }
    }

    /// Send from this address (a loopback "client network").
    pub fn source(mut self, source: IpAddr) -> Self {
        self.source = Some(source);
        self
    }

    /// TLS settings for DoT and DoH (see
    /// [`TestCertificates::client_config`](crate::TestCertificates::client_config)).
    pub fn tls(mut self, tls: rustls::ClientConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The name to expect in the server's certificate (`localhost` by default).
    pub fn server_name(mut self, name: &str) -> Self {
        self.server_name = name.to_owned();
        self
    }

    /// How long one query may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Keep up to `entries` answers in hickory's cache (off by default).
    pub fn cache(mut self, entries: u64) -> Self {
        self.cache_size = entries;
        self
    }

    /// The resolver.
    pub fn build(self) -> Result<TokioResolver, Error> {
        let server_name: Arc<str> = Arc::from(self.server_name.as_str());
        let connection = match self.transport {
            Transport::Udp => ConnectionConfig::udp(),
            Transport::Tcp => ConnectionConfig::tcp(),
            Transport::Dot => ConnectionConfig::tls(server_name),
            Transport::Doh => ConnectionConfig::https(server_name, None),
        };
        let mut connections = vec![connection];
        if self.udp_then_tcp {
            connections.push(ConnectionConfig::tcp());
        }
        for connection in &mut connections {
            connection.port = self.server.port();
            connection.bind_addr = self.source.map(|ip| SocketAddr::new(ip, 0));
        }
        let name_server = NameServerConfig::new(self.server.ip(), true, connections);
        let config = ResolverConfig::from_name_servers(vec![name_server]);
        let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        let options = builder.options_mut();
        options.cache_size = self.cache_size;
        options.attempts = 1;
        options.timeout = self.timeout;
        options.try_tcp_on_error = false;
        options.use_hosts_file = ResolveHosts::Never;
        if let Some(tls) = self.tls {
            builder = builder.with_tls_config(tls);
        }
        builder.build().map_err(|error| Error::Resolver { server: self.server, reason: error.to_string() })
    }
}

pub(crate) fn udp_and_tcp_resolver(server: SocketAddr) -> TokioResolver {
    match ResolverBuilder::udp_and_tcp(server).build() {
        Ok(resolver) => resolver,
        Err(error) => panic!("{error}"),
    }
}

/// A hickory configuration naming only `server`, asked over UDP and then
/// over TCP on the same port after a truncated answer: what to give
/// `Resolver::builder_with_config` to point code under test at a
/// [`crate::FakeDns`] (set `options_mut().use_hosts_file` to `Never` too,
/// so the system's hosts file does not answer first).
pub fn resolver_config(server: SocketAddr) -> ResolverConfig {
    let mut connections = vec![ConnectionConfig::udp(), ConnectionConfig::tcp()];
    for connection in &mut connections {
        connection.port = server.port();
    }
    ResolverConfig::from_name_servers(vec![NameServerConfig::new(server.ip(), true, connections)])
}

/// A resolver for `server` over `transport` with [`ResolverBuilder`]'s defaults.
///
/// # Panics
///
/// When hickory refuses the configuration (it does not for UDP and TCP).
pub fn resolver(transport: Transport, server: SocketAddr) -> TokioResolver {
    match ResolverBuilder::new(transport, server).build() {
        Ok(resolver) => resolver,
        Err(error) => panic!("{error}"),
    }
}

/// What hickory made of a lookup, in a form tests compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolverAnswer {
    /// The answer records' data (`192.0.2.1`, `10 mail.example.`...).
    Records(Vec<String>),
    /// NOERROR without records; whether an SOA came in the authority section.
    NoData {
        /// Whether the answer carried an SOA.
        soa: bool,
    },
    /// An error rcode (NXDOMAIN, SERVFAIL, REFUSED...).
    Rcode(Rcode),
    /// No answer at all (a timeout, a refused connection...), as hickory says it.
    Failed(String),
}

impl ResolverAnswer {
    /// `Records` with these data.
    pub fn data<'d>(data: impl IntoIterator<Item = &'d str>) -> Self {
        Self::Records(data.into_iter().map(str::to_owned).collect())
    }

    /// The IPv4 addresses among the records (none for any other outcome).
    pub fn ipv4(&self) -> Vec<Ipv4Addr> {
        match self {
            Self::Records(records) => records.iter().filter_map(|data| data.parse().ok()).collect(),
            _ => Vec::new(),
        }
    }
}

/// Look up `name` `qtype` with `resolver`.
pub async fn lookup(resolver: &TokioResolver, name: &str, qtype: RecordType) -> ResolverAnswer {
    match resolver.lookup(name, hickory_resolver::proto::rr::RecordType::from(qtype.0)).await {
        Ok(lookup) => ResolverAnswer::Records(lookup.answers().iter().map(|record| data(&record.data)).collect()),
        Err(NetError::Dns(DnsError::NoRecordsFound(no_records))) => match Rcode(u16::from(no_records.response_code)) {
            Rcode::NOERROR => ResolverAnswer::NoData { soa: no_records.soa.is_some() },
            rcode => ResolverAnswer::Rcode(rcode),
        },
        Err(NetError::Dns(DnsError::ResponseCode(code))) => ResolverAnswer::Rcode(Rcode(u16::from(code))),
        Err(other) => ResolverAnswer::Failed(other.to_string()),
    }
}

/// Look up `name` `qtype` and return each record's TTL and data.
///
/// # Panics
///
/// When the lookup does not give records (the message says what it gave).
pub async fn lookup_with_ttls(resolver: &TokioResolver, name: &str, qtype: RecordType) -> Vec<(u32, String)> {
    match resolver.lookup(name, hickory_resolver::proto::rr::RecordType::from(qtype.0)).await {
        Ok(lookup) => lookup.answers().iter().map(|record| (record.ttl, data(&record.data))).collect(),
        Err(error) => panic!("lookup of {name} {qtype} failed: {error}"),
    }
}

fn data(data: &RData) -> String {
    data.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Answer, FakeUpstream, TestCertificates};

    #[tokio::test]
    async fn each_transport_reaches_the_fake_and_nothing_else() {
        let certificates = TestCertificates::new().unwrap();
        let fake = FakeUpstream::builder()
            .udp()
            .tcp()
            .dot(certificates.server_config(&[b"dot"]).unwrap())
            .doh(certificates.server_config(&[b"h2"]).unwrap())
            .otherwise(Answer::address(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 4))))
            .start()
            .await
            .unwrap();
        let clients = [
            (Transport::Udp, resolver(Transport::Udp, fake.address())),
            (Transport::Tcp, resolver(Transport::Tcp, fake.address())),
            (
                Transport::Dot,
                ResolverBuilder::new(Transport::Dot, fake.dot_addr())
                    .tls(certificates.client_config(&[b"dot"]).unwrap())
                    .build()
                    .unwrap(),
            ),
            (
                Transport::Doh,
                ResolverBuilder::new(Transport::Doh, fake.doh_addr())
                    .tls(certificates.client_config(&[b"h2"]).unwrap())
                    .build()
                    .unwrap(),
            ),
        ];
        for (transport, client) in &clients {
            let answer = lookup(client, "www.example.", RecordType::A).await;
            assert_eq!(answer, ResolverAnswer::data(["192.0.2.4"]), "{transport:?}");
        }
        let transports: Vec<Transport> = fake.queries().iter().map(|query| query.transport).collect();
        assert_eq!(transports, [Transport::Udp, Transport::Tcp, Transport::Dot, Transport::Doh]);
        // A relative name is asked as it is: no search domain from the system is tried.
        assert_eq!(lookup(&clients[0].1, "intranet", RecordType::A).await.ipv4(), [Ipv4Addr::new(192, 0, 2, 4)]);
        assert_eq!(fake.names().last().map(String::as_str), Some("intranet."));
        assert_eq!(fake.query_count(), 5);
    }

    #[tokio::test]
    async fn outcomes_other_than_records() {
        let fake = FakeUpstream::builder()
            .answer("gone.example.", None, Answer::nxdomain())
            .answer(
                "empty.example.",
                None,
                Answer::rcode(Rcode::NOERROR).authority(["example. 60 IN SOA ns.example. h.example. 1 2 3 4 5"]),
            )
            .otherwise(Answer::rcode(Rcode::SERVFAIL))
            .start()
            .await
            .unwrap();
        let client = resolver(Transport::Udp, fake.address());
        assert_eq!(lookup(&client, "gone.example.", RecordType::A).await, ResolverAnswer::Rcode(Rcode::NXDOMAIN));
        assert_eq!(lookup(&client, "empty.example.", RecordType::A).await, ResolverAnswer::NoData { soa: true });
        assert_eq!(lookup(&client, "x.example.", RecordType::A).await, ResolverAnswer::Rcode(Rcode::SERVFAIL));
        let silent = FakeUpstream::silent().await;
        let client =
            ResolverBuilder::new(Transport::Udp, silent.address()).timeout(Duration::from_millis(200)).build().unwrap();
        assert!(matches!(lookup(&client, "x.example.", RecordType::A).await, ResolverAnswer::Failed(_)));
    }

    #[tokio::test]
    async fn ttls_come_with_the_data() {
        let fake =
            FakeUpstream::builder().otherwise(Answer::records(["@ 42 IN TXT \"hi there\""])).start().await.unwrap();
        let client = resolver(Transport::Tcp, fake.address());
        assert_eq!(lookup_with_ttls(&client, "t.example.", RecordType::TXT).await, [(42, "hi there".to_owned())]);
    }
}
