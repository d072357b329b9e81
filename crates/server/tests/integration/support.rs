//! Fake upstreams, clients and server set-up shared by the tests.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use signpost_rules::RuleSet;
use signpost_rules::config::RulesConfig;
use signpost_server::{ListenerConfig, Server, ServerBuilder, ServerConfig, ServerHandle, Transport};
use signpost_upstream::{GroupConfig, ServerConfig as UpstreamServer, Upstreams};
use signpost_wire::{Class, EdnsHeader, Flags, Message, MessageBuilder, NameBuf, RecordBuf, RecordType, Section};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// What a fake upstream does with one query; the flag says it came over TCP.
pub(crate) type Handler = Arc<dyn Fn(&Message<'_>, bool) -> Option<Vec<u8>> + Send + Sync>;

/// A DNS server on 127.0.0.1 (UDP and TCP, same port) answering with `handler`.
pub(crate) struct FakeUpstream {
    pub(crate) address: SocketAddr,
    pub(crate) queries: Arc<AtomicUsize>,
    /// The question names received over UDP, in order.
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
    pub(crate) async fn start(handler: Handler) -> Self {
        Self::start_delayed(handler, Duration::ZERO).await
    }

    /// Like [`FakeUpstream::start`], but each answer waits `delay` first
    /// without holding up other queries (a slow server, not a blocked one).
    pub(crate) async fn start_delayed(handler: Handler, delay: Duration) -> Self {
        let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let address = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(address).await.unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let names = Arc::new(Mutex::new(Vec::new()));
        let udp_task = {
            let handler = handler.clone();
            let queries = queries.clone();
            let names = names.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 65535];
                loop {
                    let Ok((len, peer)) = udp.recv_from(&mut buffer).await else { return };
                    let Ok(message) = Message::parse(&buffer[..len]) else { continue };
                    queries.fetch_add(1, Ordering::SeqCst);
                    if let Ok(Some(question)) = message.first_question() {
                        names.lock().unwrap().push(question.name().to_string());
                    }
                    let Some(response) = handler(&message, false) else { continue };
                    if delay.is_zero() {
                        let _ = udp.send_to(&response, peer).await;
                    } else {
                        let udp = udp.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = udp.send_to(&response, peer).await;
                        });
                    }
                }
            })
        };
        let tcp_task = {
            let queries = queries.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut stream, _)) = tcp.accept().await else { return };
                    let handler = handler.clone();
                    let queries = queries.clone();
                    tokio::spawn(async move {
                        loop {
                            let Ok(len) = stream.read_u16().await else { return };
                            let mut query = vec![0u8; usize::from(len)];
                            if stream.read_exact(&mut query).await.is_err() {
                                return;
                            }
                            queries.fetch_add(1, Ordering::SeqCst);
                            let Ok(message) = Message::parse(&query) else { return };
                            let Some(response) = handler(&message, true) else { continue };
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let _ = stream.write_u16(response.len() as u16).await;
                            let _ = stream.write_all(&response).await;
                        }
                    });
                }
            })
        };
        Self { address, queries, names, tasks: vec![udp_task, tcp_task] }
    }

    /// An upstream answering every A query with `address` (TTL 300), other types NODATA.
    pub(crate) async fn answering(address: Ipv4Addr) -> Self {
        Self::start(Arc::new(move |query, _| Some(answer_a(query, address, 300)))).await
    }

    /// An upstream that never answers.
    pub(crate) async fn silent() -> Self {
        Self::start(Arc::new(|_, _| None)).await
    }

    pub(crate) fn count(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    pub(crate) fn group(&self, name: &str) -> GroupConfig {
        group(name, &[self.address])
    }
}

pub(crate) fn group(name: &str, servers: &[SocketAddr]) -> GroupConfig {
    let mut group: GroupConfig = toml::from_str(&format!("name = \"{name}\"\nservers = []")).unwrap();
    group.servers = servers.iter().map(|address| UpstreamServer::udp(*address)).collect();
    group.per_try_timeout = Duration::from_millis(500);
    group.total_timeout = Duration::from_millis(1000);
    group
}

/// A response to `query` with one A record per address (or NODATA for other types).
pub(crate) fn answer_a(query: &Message<'_>, address: Ipv4Addr, ttl: u32) -> Vec<u8> {
    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::response_to(&mut buffer, query).unwrap();
    let flags = builder.header_mut().flags.with_ra(true);
    builder.set_flags(flags);
    let question = query.first_question().unwrap().unwrap();
    if question.qtype() == RecordType::A {
        builder.push(Section::Answer, &question.name(), Class::IN, ttl, &signpost_wire::RData::A(address)).unwrap();
    }
    if query.edns().unwrap().is_some() {
        builder.set_edns(EdnsHeader::default());
    }
    builder.finish().unwrap();
    buffer
}

/// Rules answering every name under `local.test` with 127.0.0.1 (TTL 60).
pub(crate) const LOCAL_REDIRECT: &str = r#"
[[rules]]
suffix = "local.test"
action = "redirect"
ipv4 = "127.0.0.1"
ipv6 = "none"
"#;

pub(crate) fn rules(toml: &str, groups: &[&str]) -> RuleSet {
    let config = RulesConfig::from_toml(toml, "test.toml").unwrap();
    RuleSet::from_config(&config, ".".as_ref(), groups).unwrap()
}

pub(crate) fn upstreams(groups: Vec<GroupConfig>) -> Upstreams {
    Upstreams::new(groups).unwrap()
}

/// A builder with UDP and TCP on 127.0.0.1:0 (same port) and one UDP worker.
pub(crate) fn builder() -> ServerBuilder {
    let mut config = ServerConfig::default();
    let mut udp = ListenerConfig::new(Transport::Udp, "127.0.0.1:0".parse().unwrap());
    udp.workers = Some(1);
    config.listeners.push(udp);
    config.listeners.push(ListenerConfig::new(Transport::Tcp, "127.0.0.1:0".parse().unwrap()));
    Server::builder().config(config)
}

pub(crate) fn config_with_default_listeners() -> ServerConfig {
    let mut config = ServerConfig::default();
    let mut udp = ListenerConfig::new(Transport::Udp, "127.0.0.1:0".parse().unwrap());
    udp.workers = Some(1);
    config.listeners.push(udp);
    config.listeners.push(ListenerConfig::new(Transport::Tcp, "127.0.0.1:0".parse().unwrap()));
    config
}

/// A hickory resolver pointed only at `address` over `protocol`, built
/// from an explicit configuration (never the system's), without a cache.
pub(crate) fn resolver(
    protocol: &str,
    address: SocketAddr,
    tls: Option<rustls::ClientConfig>,
) -> Resolver<TokioRuntimeProvider> {
    let mut connection = match protocol {
        "udp" => ConnectionConfig::udp(),
        "tcp" => ConnectionConfig::tcp(),
        "https" => ConnectionConfig::https(Arc::from("localhost"), None),
        "tls" => ConnectionConfig::tls(Arc::from("localhost")),
        other => panic!("no such protocol {other}"),
    };
    connection.port = address.port();
    let server = NameServerConfig::new(address.ip(), true, vec![connection]);
    let mut builder =
        Resolver::builder_with_config(ResolverConfig::from_name_servers(vec![server]), TokioRuntimeProvider::default());
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

/// A self-signed certificate for "localhost" and 127.0.0.1, written to a temp dir.
pub(crate) struct TestCertificate {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) der: Vec<u8>,
    _dir: TempDir,
}

pub(crate) struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn temp_dir(tag: &str) -> TempDir {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "signpost-server-test-{}-{tag}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

pub(crate) fn certificate() -> TestCertificate {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let dir = temp_dir("tls");
    let cert = dir.0.join("cert.pem");
    let key = dir.0.join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    TestCertificate { cert, key, der: generated.cert.der().to_vec(), _dir: dir }
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

/// Build a query message.
pub(crate) fn query(name: &str, qtype: RecordType, edns: Option<EdnsHeader>) -> Vec<u8> {
    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::new(&mut buffer).unwrap();
    builder.set_id(0x4d2);
    builder.set_flags(Flags::default().with_rd(true));
    builder.push_question(&name.parse::<NameBuf>().unwrap(), qtype, Class::IN).unwrap();
    if let Some(edns) = edns {
        builder.set_edns(edns);
    }
    builder.finish().unwrap();
    buffer
}

/// Send raw bytes over UDP and wait for one reply (None after `wait`).
pub(crate) async fn udp_exchange(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(bytes, server).await.unwrap();
    let mut buffer = vec![0u8; 65535];
    match tokio::time::timeout(wait, socket.recv_from(&mut buffer)).await {
        Ok(Ok((len, _))) => Some(buffer[..len].to_vec()),
        _ => None,
    }
}

/// Send one framed message over TCP and read one framed reply.
pub(crate) async fn tcp_exchange(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(server).await.unwrap();
    stream.write_u16(bytes.len() as u16).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut response = vec![0u8; usize::from(len)];
    stream.read_exact(&mut response).await.unwrap();
    response
}

/// Read one framed message from a TCP stream; None when the stream ends or fails.
pub(crate) async fn read_frame<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
    let len = stream.read_u16().await.ok()?;
    let mut response = vec![0u8; usize::from(len)];
    stream.read_exact(&mut response).await.ok()?;
    Some(response)
}

/// Write one framed message to a TCP stream.
pub(crate) async fn write_frame<S: tokio::io::AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) {
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.unwrap();
}

pub(crate) fn answers(response: &[u8]) -> Vec<String> {
    let message = Message::parse(response).unwrap();
    message.answers().unwrap().map(|record| RecordBuf::from_record(&record.unwrap()).unwrap().to_string()).collect()
}

pub(crate) fn udp(server: &ServerHandle) -> SocketAddr {
    server.udp_addrs()[0]
}

pub(crate) fn tcp(server: &ServerHandle) -> SocketAddr {
    server.tcp_addrs()[0]
}
