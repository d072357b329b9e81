//! Fake upstreams, an "on-premises" Signpost server, clients and helpers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use signpost_endpoint::{Endpoint, EndpointConfig, ListenerRole};
use signpost_rules::RuleSet;
use signpost_rules::config::RulesConfig;
use signpost_server::{ListenerConfig, LogDestination, Server, ServerConfig, ServerHandle, Transport};
use signpost_wire::{Class, EdnsHeader, Flags, Message, MessageBuilder, NameBuf, RData, Rcode, RecordBuf, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// A temporary directory, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn temp_dir(tag: &str) -> TempDir {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "signpost-endpoint-test-{}-{tag}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A self-signed certificate for "localhost" and 127.0.0.1 (it is its own CA).
pub(crate) struct TestCertificate {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) der: Vec<u8>,
}

pub(crate) fn certificate(dir: &Path) -> TestCertificate {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    TestCertificate { cert, key, der: generated.cert.der().to_vec() }
}

pub(crate) fn client_tls(certificate: &TestCertificate) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from(certificate.der.clone())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// A hickory resolver pointed only at `server` over `protocol` ("udp",
/// "tcp", "https"), from `source` when given (a "VPC" address), built from
/// an explicit configuration (never the system's), without a cache.
pub(crate) fn resolver(
    protocol: &str,
    server: SocketAddr,
    source: Option<IpAddr>,
    tls: Option<rustls::ClientConfig>,
) -> Resolver<TokioRuntimeProvider> {
    let mut connection = match protocol {
        "udp" => ConnectionConfig::udp(),
        "tcp" => ConnectionConfig::tcp(),
        "https" => ConnectionConfig::https(Arc::from("localhost"), None),
        other => panic!("no such protocol {other}"),
    };
    connection.port = server.port();
    connection.bind_addr = source.map(|ip| SocketAddr::new(ip, 0));
    let name_server = NameServerConfig::new(server.ip(), true, vec![connection]);
    let mut builder = Resolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![name_server]),
        TokioRuntimeProvider::default(),
    );
    let options = builder.options_mut();
    options.cache_size = 0;
    options.attempts = 1;
    options.timeout = Duration::from_secs(3);
    options.try_tcp_on_error = false;
    if let Some(tls) = tls {
        builder = builder.with_tls_config(tls);
    }
    builder.build().unwrap()
}

/// The IPv4 addresses hickory finds for `name` (empty on NXDOMAIN or NODATA).
pub(crate) async fn lookup_v4(resolver: &Resolver<TokioRuntimeProvider>, name: &str) -> Vec<Ipv4Addr> {
    match resolver.ipv4_lookup(name).await {
        Ok(lookup) => lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                hickory_resolver::proto::rr::RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A DNS server on 127.0.0.1 (UDP and TCP, one port) answering every A
/// query with `address` and recording the names asked.
pub(crate) struct FakeUpstream {
    pub(crate) address: SocketAddr,
    pub(crate) names: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl FakeUpstream {
    pub(crate) async fn answering(answer: Ipv4Addr) -> Self {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(address).await.unwrap();
        let names = Arc::new(Mutex::new(Vec::new()));
        let udp_task = {
            let names = names.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 65535];
                loop {
                    let Ok((len, peer)) = udp.recv_from(&mut buffer).await else { return };
                    let Some(response) = respond(&buffer[..len], answer, &names) else { continue };
                    let _ = udp.send_to(&response, peer).await;
                }
            })
        };
        let tcp_task = {
            let names = names.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut stream, _)) = tcp.accept().await else { return };
                    let names = names.clone();
                    tokio::spawn(async move {
                        loop {
                            let Ok(len) = stream.read_u16().await else { return };
                            let mut query = vec![0u8; usize::from(len)];
                            if stream.read_exact(&mut query).await.is_err() {
                                return;
                            }
                            let Some(response) = respond(&query, answer, &names) else { return };
                            let _ = stream.write_u16(response.len() as u16).await;
                            let _ = stream.write_all(&response).await;
                        }
                    });
                }
            })
        };
        Self { address, names, tasks: vec![udp_task, tcp_task] }
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.names.lock().unwrap().clone()
    }
}

fn respond(query: &[u8], answer: Ipv4Addr, names: &Mutex<Vec<String>>) -> Option<Vec<u8>> {
    let message = Message::parse(query).ok()?;
    let question = message.first_question().ok()??;
    names.lock().unwrap().push(question.name().to_string());
    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::response_to(&mut buffer, &message).ok()?;
    let flags = builder.header_mut().flags.with_ra(true);
    builder.set_flags(flags);
    if question.qtype() == RecordType::A {
        builder.push(signpost_wire::Section::Answer, &question.name(), Class::IN, 60, &RData::A(answer)).ok()?;
    }
    if message.edns().ok()?.is_some() {
        builder.set_edns(EdnsHeader::default());
    }
    builder.finish().ok()?;
    Some(buffer)
}

/// An "on-premises" DNS server: a second Signpost holding `onprem.example`
/// (and `corp.example`, to show precedence), on UDP, TCP and DoH, logging
/// every query to a file.
pub(crate) struct OnPremises {
    pub(crate) server: ServerHandle,
    pub(crate) log: PathBuf,
}

pub(crate) const ONPREM_ZONES: &str = r#"
[[zones]]
name = "onprem.example"
records = ["db 60 A 10.99.0.10", "public 60 A 10.99.0.20", "app.sub 60 A 10.99.0.30"]

[[zones]]
name = "corp.example"
records = ["www 60 A 10.99.1.1", "api 60 A 10.99.1.2", "x.dev 60 A 10.99.1.3"]
"#;

impl OnPremises {
    pub(crate) async fn start(dir: &Path, certificate: &TestCertificate) -> Self {
        let log = dir.join("onprem-queries.log");
        let mut config = ServerConfig::default();
        let mut udp = ListenerConfig::new(Transport::Udp, "127.0.0.1:0".parse().unwrap());
        udp.workers = Some(1);
        config.listeners.push(udp);
        config.listeners.push(ListenerConfig::new(Transport::Tcp, "127.0.0.1:0".parse().unwrap()));
        let mut doh = ListenerConfig::new(Transport::Doh, "127.0.0.1:0".parse().unwrap());
        doh.tls_cert = Some(certificate.cert.clone());
        doh.tls_key = Some(certificate.key.clone());
        config.listeners.push(doh);
        config.query_log.enabled = true;
        config.query_log.destination = LogDestination::File(log.clone());
        let rules = RulesConfig::from_toml(ONPREM_ZONES, "onprem.toml").unwrap();
        let rules = RuleSet::from_config(&rules, ".".as_ref(), &[]).unwrap();
        let server = Server::builder().config(config).rules(rules).start().await.unwrap();
        Self { server, log }
    }

    pub(crate) fn udp(&self) -> SocketAddr {
        self.server.udp_addrs()[0]
    }

    pub(crate) fn doh(&self) -> SocketAddr {
        self.server.doh_addrs()[0]
    }
}

/// Lines of a JSON-lines file, once at least `count` are there (5 s at most).
pub(crate) async fn json_lines(path: &Path, count: usize) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    for _ in 0..250 {
        lines = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        if lines.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lines
}

/// Parse an endpoint configuration as if read from `dir`/endpoint.toml.
pub(crate) fn config(dir: &Path, text: &str) -> EndpointConfig {
    EndpointConfig::from_toml(text, dir.join("endpoint.toml")).unwrap_or_else(|error| panic!("{error}"))
}

pub(crate) async fn start(dir: &Path, text: &str) -> Endpoint {
    Endpoint::start(config(dir, text)).await.unwrap_or_else(|error| panic!("{error}"))
}

/// The UDP address of a VPC's resolver.
pub(crate) fn vpc_resolver(endpoint: &Endpoint, vpc: &str) -> SocketAddr {
    endpoint.addresses(&ListenerRole::VpcResolver { vpc: vpc.into() }, Transport::Udp)[0]
}

/// The addresses of an inbound endpoint over `transport`.
pub(crate) fn inbound(endpoint: &Endpoint, id: &str, vpc: &str, transport: Transport) -> Vec<SocketAddr> {
    endpoint.addresses(&ListenerRole::InboundEndpoint { endpoint: id.into(), vpc: vpc.into() }, transport)
}

/// Build a query message.
pub(crate) fn query(name: &str, qtype: RecordType, id: u16) -> Vec<u8> {
    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::new(&mut buffer).unwrap();
    builder.set_id(id);
    builder.set_flags(Flags::default().with_rd(true));
    builder.push_question(&name.parse::<NameBuf>().unwrap(), qtype, Class::IN).unwrap();
    builder.finish().unwrap();
    buffer
}

/// Send one query over UDP from `source` and wait for the answer: rcode and answers.
pub(crate) async fn ask(server: SocketAddr, source: IpAddr, name: &str) -> Option<(Rcode, Vec<String>)> {
    let socket = UdpSocket::bind(SocketAddr::new(source, 0)).await.unwrap();
    socket.send_to(&query(name, RecordType::A, 7), server).await.unwrap();
    let mut buffer = vec![0u8; 65535];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer)).await.ok()?.ok()?;
    let message = Message::parse(&buffer[..len]).ok()?;
    let answers = message
        .answers()
        .ok()?
        .filter_map(|record| RecordBuf::from_record(&record.ok()?).ok())
        .map(|record| record.to_string())
        .collect();
    Some((message.rcode().ok()?, answers))
}

/// A counter from Prometheus text, by its full name with labels.
pub(crate) fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

pub(crate) const VPC_A_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1));
pub(crate) const VPC_B_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1));
pub(crate) const ONPREM_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Two VPCs (127.0.1.0/24 and 127.0.2.0/24) with their resolvers on free
/// ports, the recursive default at `recursive`, and `extra` TOML after.
pub(crate) fn two_vpcs(recursive: SocketAddr, extra: &str) -> String {
    format!(
        r#"
resolver_port = 0
udp_workers = 1

[recursive]
servers = ["{recursive}"]

[[vpcs]]
id = "vpc-a"
cidrs = ["127.0.1.0/24"]

[[vpcs]]
id = "vpc-b"
cidrs = ["127.0.2.0/24"]
{extra}
"#
    )
}

/// The answer the fake recursive default gives every A query.
pub(crate) const RECURSIVE_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

/// Inbound endpoint `rslvr-in-a` of vpc-a on 127.0.1.10 and 127.0.1.11
/// (free ports) with these protocols (a TOML list) and the test certificate.
pub(crate) fn inbound_endpoint(protocols: &str, certificate: &TestCertificate) -> String {
    format!(
        r#"
[[inbound_endpoints]]
id = "rslvr-in-a"
vpc = "vpc-a"
addresses = ["127.0.1.10", "127.0.1.11"]
protocols = {protocols}
port = 0
doh_port = 0
tls_cert = "{}"
tls_key = "{}"
"#,
        certificate.cert.display(),
        certificate.key.display()
    )
}
