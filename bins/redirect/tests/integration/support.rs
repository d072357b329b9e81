//! Fake upstreams, clients and servers for the tests. Everything is on
//! loopback; no test ever asks the machine's own resolver.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData as HickoryRData, RecordType as HickoryType};
use signpost_redirect::{RedirectServer, RedirectServerBuilder, RedirectSettings};
use signpost_wire::{
    Class, EdnsHeader, Flags, Message, MessageBuilder, NameBuf, RData, RecordBuf, RecordType, Section,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// What a fake upstream does with one query; the flag says it came over TCP.
pub(crate) type Handler = Arc<dyn Fn(&Message<'_>, bool) -> Option<Vec<u8>> + Send + Sync>;

/// A DNS server on 127.0.0.1 (UDP and TCP, same port).
pub(crate) struct FakeUpstream {
    pub(crate) address: SocketAddr,
    /// Question names received, in order (both transports).
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
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(address).await.unwrap();
        let names = Arc::new(Mutex::new(Vec::new()));
        let record = |names: &Arc<Mutex<Vec<String>>>, message: &Message<'_>| {
            if let Ok(Some(question)) = message.first_question() {
                names.lock().unwrap().push(question.name().to_string());
            }
        };
        let udp_task = {
            let handler = handler.clone();
            let names = names.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 65535];
                loop {
                    let Ok((len, peer)) = udp.recv_from(&mut buffer).await else { return };
                    let Ok(message) = Message::parse(&buffer[..len]) else { continue };
                    record(&names, &message);
                    if let Some(response) = handler(&message, false) {
                        let _ = udp.send_to(&response, peer).await;
                    }
                }
            })
        };
        let tcp_task = {
            let names = names.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut stream, _)) = tcp.accept().await else { return };
                    let handler = handler.clone();
                    let names = names.clone();
                    tokio::spawn(async move {
                        loop {
                            let Ok(len) = stream.read_u16().await else { return };
                            let mut query = vec![0u8; usize::from(len)];
                            if stream.read_exact(&mut query).await.is_err() {
                                return;
                            }
                            let Ok(message) = Message::parse(&query) else { return };
                            record(&names, &message);
                            let Some(response) = handler(&message, true) else { continue };
                            let _ = stream.write_u16(response.len() as u16).await;
                            let _ = stream.write_all(&response).await;
                        }
                    });
                }
            })
        };
        Self { address, names, tasks: vec![udp_task, tcp_task] }
    }

    /// Every A query answered with `address` (TTL 300), other types NODATA.
    pub(crate) async fn answering(address: Ipv4Addr) -> Self {
        Self::start(Arc::new(move |query, _| Some(answer_a(query, address, 300)))).await
    }

    /// Never answers.
    pub(crate) async fn silent() -> Self {
        Self::start(Arc::new(|_, _| None)).await
    }

    /// Answers every question with `count` TXT records of 100 octets: over
    /// UDP a response larger than the query allows is cut to the header and
    /// question with TC set, as real servers do; over TCP it is whole.
    pub(crate) async fn big(count: usize) -> Self {
        Self::start(Arc::new(move |query, tcp| {
            let full = answer_txt(query, count);
            let limit = query.edns().ok().flatten().map_or(512, |edns| usize::from(edns.udp_payload_size()));
            if tcp || full.len() <= limit {
                Some(full)
            } else {
                let mut buffer = Vec::new();
                let mut builder = MessageBuilder::response_to(&mut buffer, query).unwrap();
                let flags = builder.header_mut().flags.with_ra(true).with_tc(true);
                builder.set_flags(flags);
                builder.finish().unwrap();
                Some(buffer)
            }
        }))
        .await
    }

    pub(crate) fn asked(&self, name: &str) -> bool {
        self.names.lock().unwrap().iter().any(|asked| asked.eq_ignore_ascii_case(name))
    }

    pub(crate) fn count(&self) -> usize {
        self.names.lock().unwrap().len()
    }
}

/// A response to `query` with one A record (NODATA for other types).
pub(crate) fn answer_a(query: &Message<'_>, address: Ipv4Addr, ttl: u32) -> Vec<u8> {
    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::response_to(&mut buffer, query).unwrap();
    let flags = builder.header_mut().flags.with_ra(true);
    builder.set_flags(flags);
    let question = query.first_question().unwrap().unwrap();
    if question.qtype() == RecordType::A {
        builder.push(Section::Answer, &question.name(), Class::IN, ttl, &RData::A(address)).unwrap();
    }
    if query.edns().unwrap().is_some() {
        builder.set_edns(EdnsHeader::default());
    }
    builder.finish().unwrap();
    buffer
}

fn answer_txt(query: &Message<'_>, count: usize) -> Vec<u8> {
    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::response_to(&mut buffer, query).unwrap();
    let flags = builder.header_mut().flags.with_ra(true);
    builder.set_flags(flags);
    let question = query.first_question().unwrap().unwrap();
    let owner = question.name().to_name_buf().to_string();
    for index in 0..count {
        let text = format!("{owner} 300 IN TXT \"record {index:03}: {}\"", "x".repeat(88));
        builder.push_record_buf(Section::Answer, &text.parse::<RecordBuf>().unwrap()).unwrap();
    }
    if query.edns().unwrap().is_some() {
        builder.set_edns(EdnsHeader::default());
    }
    builder.finish().unwrap();
    buffer
}

/// Settings for a test: 127.0.0.1 on a free port, one UDP worker, short
/// upstream deadlines, and no system resolv.conf (a path that does not exist).
pub(crate) fn settings(upstream: Option<&FakeUpstream>) -> RedirectSettings {
    let mut settings = RedirectSettings::default();
    settings.set("DNS_PORT", "0").unwrap();
    settings.workers = Some(1);
    settings.upstream_timeout = Duration::from_millis(500);
    settings.upstream_total_timeout = Duration::from_millis(1000);
    settings.resolv_conf = PathBuf::from("/nonexistent/signpost-test/resolv.conf");
    settings.systemd_resolv_conf = PathBuf::from("/nonexistent/signpost-test/systemd-resolv.conf");
    if let Some(upstream) = upstream {
        settings.set("DNS_SERVER", &upstream.address.to_string()).unwrap();
    }
    settings
}

/// Start on free ports. With port 0, UDP picks the number and TCP takes the
/// same one, which another TCP socket may hold: try again then.
pub(crate) async fn start(settings: RedirectSettings) -> RedirectServer {
    start_with(|| RedirectServer::builder(settings.clone())).await
}

pub(crate) async fn start_with(builder: impl Fn() -> RedirectServerBuilder) -> RedirectServer {
    for _ in 0..10 {
        match builder().start().await {
            Ok(server) => return server,
            Err(error) if error.as_bind_error().is_some() => continue,
            Err(error) => panic!("{error}"),
        }
    }
    panic!("no free port pair after 10 tries")
}

/// A hickory resolver pointed only at `address` over `protocol`, from an
/// explicit configuration (never the system's), without a cache.
pub(crate) fn resolver(protocol: &str, address: SocketAddr) -> Resolver<TokioRuntimeProvider> {
    let mut connection = match protocol {
        "udp" => ConnectionConfig::udp(),
        "tcp" => ConnectionConfig::tcp(),
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
    options.recursion_desired = true;
    builder.build().unwrap()
}

/// What hickory got for a question, in a comparable form.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Got {
    /// Addresses (A/AAAA) and other record data as text.
    Records(Vec<String>),
    /// NOERROR without records; whether an SOA came in authority.
    NoData { soa: bool },
    /// An error rcode (NXDOMAIN, SERVFAIL...).
    Rcode(ResponseCode),
    /// Anything else (a timeout...).
    Failed(String),
}

pub(crate) async fn ask(resolver: &Resolver<TokioRuntimeProvider>, name: &str, qtype: HickoryType) -> Got {
    match resolver.lookup(name, qtype).await {
        Ok(lookup) => Got::Records(
            lookup
                .answers()
                .iter()
                .map(|record| match &record.data {
                    HickoryRData::A(a) => a.0.to_string(),
                    HickoryRData::AAAA(aaaa) => aaaa.0.to_string(),
                    other => other.to_string(),
                })
                .collect(),
        ),
        Err(NetError::Dns(DnsError::NoRecordsFound(no_records))) => match no_records.response_code {
            ResponseCode::NoError => Got::NoData { soa: no_records.soa.is_some() },
            code => Got::Rcode(code),
        },
        Err(NetError::Dns(DnsError::ResponseCode(code))) => Got::Rcode(code),
        Err(other) => Got::Failed(other.to_string()),
    }
}

pub(crate) fn addresses(items: &[&str]) -> Got {
    Got::Records(items.iter().map(|item| (*item).to_owned()).collect())
}

/// Both transports of a server, for loops over UDP and TCP.
pub(crate) fn transports(server: &RedirectServer) -> [(&'static str, SocketAddr); 2] {
    [("udp", server.udp_addrs()[0]), ("tcp", server.tcp_addrs()[0])]
}

/// A query message.
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

/// Send raw bytes over UDP from `from` and wait for one reply.
pub(crate) async fn udp_exchange_from(from: IpAddr, server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind(SocketAddr::new(from, 0)).await.unwrap();
    socket.send_to(bytes, server).await.unwrap();
    let mut buffer = vec![0u8; 65535];
    match tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer)).await {
        Ok(Ok((len, _))) => Some(buffer[..len].to_vec()),
        _ => None,
    }
}

pub(crate) async fn udp_exchange(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    udp_exchange_from(IpAddr::V4(Ipv4Addr::LOCALHOST), server, bytes).await
}

/// One framed message over TCP, one framed reply.
pub(crate) async fn tcp_exchange(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(server).await.unwrap();
    stream.write_u16(bytes.len() as u16).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut response = vec![0u8; usize::from(len)];
    stream.read_exact(&mut response).await.unwrap();
    response
}

/// The answer section as presentation lines.
pub(crate) fn answers(response: &[u8]) -> Vec<String> {
    let message = Message::parse(response).unwrap();
    message.answers().unwrap().map(|record| RecordBuf::from_record(&record.unwrap()).unwrap().to_string()).collect()
}

/// The authority section's record types.
pub(crate) fn authority_types(response: &[u8]) -> Vec<RecordType> {
    let message = Message::parse(response).unwrap();
    message.authority().unwrap().map(|record| record.unwrap().rtype()).collect()
}

/// One HTTP/1.1 request to the admin listener: (status, body).
pub(crate) async fn http(address: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8(response).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

/// A file in the temp dir, removed on drop.
pub(crate) struct TempFile(pub(crate) PathBuf);

impl TempFile {
    pub(crate) fn new(tag: &str, text: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "signpost-redirect-test-{}-{tag}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
