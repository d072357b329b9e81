//! In-process fake upstreams on 127.0.0.1:0: UDP, TCP, DoT and DoH servers
//! that answer, stay silent, lie or break in the ways a real upstream can.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use signpost_upstream::{GroupConfig, ServerConfig, TlsOptions};
use signpost_wire::{Class, EdnsHeader, Flags, Message, MessageBuilder, NameBuf, RData, Rcode, RecordType, Section};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// The address genuine answers carry.
pub(crate) const GENUINE: [u8; 4] = [192, 0, 2, 1];
/// The address forged answers carry.
pub(crate) const FORGED: [u8; 4] = [203, 0, 113, 66];

/// What a fake server does with each query.
#[derive(Clone, Debug)]
pub(crate) enum Behaviour {
    /// Answer at once with A 192.0.2.1.
    Answer,
    /// Never answer.
    Silent,
    /// Answer after a delay.
    Delay(Duration),
    /// Answer at once, but drop every n-th query (the n-th, 2n-th, ... received).
    DropEvery(usize),
    /// Answer the first n queries at once, then never again.
    SilentAfter(usize),
    /// Answer with this rcode and no records.
    Rcode(Rcode),
    /// Answer with TC set and no records.
    Truncate,
    /// Send a forged answer with another ID, then (unless `only`) the genuine one.
    WrongId { only: bool },
    /// Send a forged answer to another question, then the genuine one.
    WrongQuestion,
    /// Send a forged answer from another socket (another port), then the genuine one.
    FromOtherSocket,
    /// Send a forged answer from another address (127.0.0.2), then the genuine one.
    FromOtherAddress,
    /// Send `n` forged answers to the same question with IDs near the
    /// query's (never its own), then the genuine one.
    ForgedFlood(u16),
    /// Answer with trailing garbage after the last record.
    Malformed,
    /// TCP: send part of the answer, then reset the connection.
    ResetMidStream,
    /// TCP: answer, then close the connection.
    CloseAfterAnswer,
    /// DoH: answer with this HTTP status.
    HttpStatus(u16),
}

/// A query for `name` A with RD, ID 0x4242 and EDNS (payload 4096).
pub(crate) fn query(name: &str) -> Vec<u8> {
    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::new(&mut buffer).unwrap();
    builder.set_id(0x4242);
    builder.set_flags(Flags::default().with_rd(true));
    builder.push_question(&name.parse::<NameBuf>().unwrap(), RecordType::A, Class::IN).unwrap();
    builder.set_edns(EdnsHeader { udp_payload_size: 4096, ..Default::default() });
    builder.finish().unwrap();
    buffer
}

/// An answer to `query` with `rcode`, TC if `truncated`, and A `address` when NOERROR and not truncated.
pub(crate) fn respond(query: &[u8], rcode: Rcode, truncated: bool, address: [u8; 4]) -> Vec<u8> {
    let parsed = Message::parse(query).unwrap();
    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::response_to(&mut buffer, &parsed).unwrap();
    builder.set_rcode(rcode);
    if truncated {
        let flags = builder.header_mut().flags.with_tc(true);
        builder.set_flags(flags);
    } else if rcode == Rcode::NOERROR {
        let name = parsed.first_question().unwrap().unwrap().name();
        builder.push(Section::Answer, &name, Class::IN, 60, &RData::A(address.into())).unwrap();
    }
    builder.finish().unwrap();
    buffer
}

/// An answer to another question (other.example).
fn respond_to_other_question(query: &[u8]) -> Vec<u8> {
    let parsed = Message::parse(query).unwrap();
    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::response_header_to(&mut buffer, parsed.header()).unwrap();
    let other: NameBuf = "other.example".parse().unwrap();
    builder.push_question(&other, RecordType::A, Class::IN).unwrap();
    builder.push(Section::Answer, &other, Class::IN, 60, &RData::A(FORGED.into())).unwrap();
    builder.finish().unwrap();
    buffer
}

fn set_id(message: &mut [u8], id: u16) {
    message[..2].copy_from_slice(&id.to_be_bytes());
}

/// The first A record of an answer.
pub(crate) fn first_address(response: &[u8]) -> Option<[u8; 4]> {
    let message = Message::parse(response).ok()?;
    for record in message.answers().ok()? {
        if let Ok(RData::A(address)) = record.ok()?.data() {
            return Some(address.octets());
        }
    }
    None
}

/// What a fake saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) queries: AtomicUsize,
    /// Queries dropped on purpose (`DropEvery`, `SilentAfter`).
    pub(crate) dropped: AtomicUsize,
    pub(crate) connections: AtomicUsize,
    /// Source addresses of UDP queries.
    pub(crate) sources: Mutex<Vec<SocketAddr>>,
    /// Message IDs of queries.
    pub(crate) ids: Mutex<Vec<u16>>,
    /// EDNS payload sizes of queries.
    pub(crate) payloads: Mutex<Vec<u16>>,
    /// DoH requests: method and HTTP version.
    pub(crate) requests: Mutex<Vec<(String, String)>>,
}

impl Seen {
    fn record(&self, query: &[u8]) {
        self.queries.fetch_add(1, Ordering::SeqCst);
        if let Ok(message) = Message::parse(query) {
            self.ids.lock().unwrap().push(message.id());
            if let Ok(Some(edns)) = message.edns() {
                self.payloads.lock().unwrap().push(edns.raw_udp_payload_size());
            }
        }
    }

    pub(crate) fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub(crate) fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// A running fake; stops when dropped.
pub(crate) struct Fake {
    pub(crate) address: SocketAddr,
    pub(crate) seen: Arc<Seen>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A UDP port nothing listens on (bound, then closed).
pub(crate) async fn closed_udp_port() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.local_addr().unwrap()
}

/// A fake UDP server.
pub(crate) async fn udp(behaviour: Behaviour) -> Fake {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp_on(socket, behaviour).await
}

/// A fake UDP server on `socket`.
pub(crate) async fn udp_on(socket: UdpSocket, behaviour: Behaviour) -> Fake {
    let address = socket.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let socket = Arc::new(socket);
    let other = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let other_address = Arc::new(UdpSocket::bind("127.0.0.2:0").await.unwrap());
    let task_seen = seen.clone();
    let task = tokio::spawn(async move {
        let mut buffer = vec![0; 65535];
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buffer).await else { return };
            let query = buffer[..len].to_vec();
            task_seen.record(&query);
            task_seen.sources.lock().unwrap().push(peer);
            let count = task_seen.queries();
            let drop_it = match behaviour {
                Behaviour::DropEvery(n) => count % n == 0,
                Behaviour::SilentAfter(n) => count > n,
                _ => false,
            };
            if drop_it {
                task_seen.dropped.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            let socket = socket.clone();
            let other = other.clone();
            let other_address = other_address.clone();
            let behaviour = behaviour.clone();
            tokio::spawn(async move {
                let genuine = respond(&query, Rcode::NOERROR, false, GENUINE);
                let id = u16::from_be_bytes([query[0], query[1]]);
                let send = |message: Vec<u8>| {
                    let socket = socket.clone();
                    async move {
                        let _ = socket.send_to(&message, peer).await;
                    }
                };
                match behaviour {
                    Behaviour::Answer
                    | Behaviour::CloseAfterAnswer
                    | Behaviour::ResetMidStream
                    | Behaviour::DropEvery(_)
                    | Behaviour::SilentAfter(_) => send(genuine).await,
                    Behaviour::Silent | Behaviour::HttpStatus(_) => {}
                    Behaviour::Delay(delay) => {
                        tokio::time::sleep(delay).await;
                        send(genuine).await;
                    }
                    Behaviour::Rcode(rcode) => send(respond(&query, rcode, false, GENUINE)).await,
                    Behaviour::Truncate => send(respond(&query, Rcode::NOERROR, true, GENUINE)).await,
                    Behaviour::WrongId { only } => {
                        let mut forged = respond(&query, Rcode::NOERROR, false, FORGED);
                        set_id(&mut forged, id.wrapping_add(1));
                        send(forged).await;
                        if !only {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            send(genuine).await;
                        }
                    }
                    Behaviour::WrongQuestion => {
                        send(respond_to_other_question(&query)).await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        send(genuine).await;
                    }
                    Behaviour::FromOtherSocket => {
                        let _ = other.send_to(&respond(&query, Rcode::NOERROR, false, FORGED), peer).await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        send(genuine).await;
                    }
                    Behaviour::FromOtherAddress => {
                        let _ = other_address.send_to(&respond(&query, Rcode::NOERROR, false, FORGED), peer).await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        send(genuine).await;
                    }
                    Behaviour::ForgedFlood(count) => {
                        for offset in 1..=count {
                            let mut forged = respond(&query, Rcode::NOERROR, false, FORGED);
                            set_id(&mut forged, id.wrapping_add(offset));
                            send(forged).await;
                        }
                        send(genuine).await;
                    }
                    Behaviour::Malformed => {
                        let mut bad = genuine;
                        bad.extend_from_slice(&[0xde, 0xad]);
                        send(bad).await;
                    }
                }
            });
        }
    });
    Fake { address, seen, tasks: vec![task] }
}

/// A fake UDP server and a fake TCP server on the same port.
pub(crate) async fn udp_and_tcp(udp_behaviour: Behaviour, tcp_behaviour: Behaviour) -> (Fake, Fake) {
    for _ in 0..50 {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        if let Ok(listener) = TcpListener::bind(address).await {
            let udp = udp_on(socket, udp_behaviour).await;
            let tcp = serve_tcp(listener, tcp_behaviour, None);
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// A fake TCP server.
pub(crate) async fn tcp(behaviour: Behaviour) -> Fake {
    serve_tcp(TcpListener::bind("127.0.0.1:0").await.unwrap(), behaviour, None)
}

/// A fake DoT server with `tls` settings.
pub(crate) async fn tls(behaviour: Behaviour, tls: Arc<rustls::ServerConfig>) -> Fake {
    serve_tcp(TcpListener::bind("127.0.0.1:0").await.unwrap(), behaviour, Some(TlsAcceptor::from(tls)))
}

fn serve_tcp(listener: TcpListener, behaviour: Behaviour, tls: Option<TlsAcceptor>) -> Fake {
    accept_loop(listener, move |stream, seen| {
        let behaviour = behaviour.clone();
        let tls = tls.clone();
        async move {
            match tls {
                None => serve_stream(stream, behaviour, seen).await,
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve_stream(stream, behaviour, seen).await;
                    }
                }
            }
        }
    })
}

/// Accept connections on `listener`, counting them, and serve each with `serve` in a task of its own.
fn accept_loop<F, Fut>(listener: TcpListener, serve: F) -> Fake
where
    F: Fn(TcpStream, Arc<Seen>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let task_seen = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            task_seen.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream, task_seen.clone()));
        }
    });
    Fake { address, seen, tasks: vec![task] }
}

/// Serve length-prefixed queries on one connection; answers may overtake each other.
async fn serve_stream<S: AsyncRead + AsyncWrite + Send + 'static>(stream: S, behaviour: Behaviour, seen: Arc<Seen>) {
    let (mut reader, writer) = tokio::io::split(stream);
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    loop {
        let Ok(len) = reader.read_u16().await else { return };
        let mut query = vec![0; usize::from(len)];
        if reader.read_exact(&mut query).await.is_err() {
            return;
        }
        seen.record(&query);
        let genuine = respond(&query, Rcode::NOERROR, false, GENUINE);
        let frame = |message: &[u8]| {
            let mut framed = (message.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(message);
            framed
        };
        match &behaviour {
            Behaviour::Silent => {}
            Behaviour::Delay(delay) => {
                let writer = writer.clone();
                let delay = *delay;
                let framed = frame(&genuine);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = writer.lock().await.write_all(&framed).await;
                });
            }
            Behaviour::ResetMidStream => {
                let framed = frame(&genuine);
                let mut writer = writer.lock().await;
                let _ = writer.write_all(&framed[..framed.len() / 2]).await;
                let _ = writer.flush().await;
                return;
            }
            Behaviour::CloseAfterAnswer => {
                let mut writer = writer.lock().await;
                let _ = writer.write_all(&frame(&genuine)).await;
                let _ = writer.shutdown().await;
                return;
            }
            Behaviour::Rcode(rcode) => {
                let _ = writer.lock().await.write_all(&frame(&respond(&query, *rcode, false, GENUINE))).await;
            }
            Behaviour::Truncate => {
                let _ = writer.lock().await.write_all(&frame(&respond(&query, Rcode::NOERROR, true, GENUINE))).await;
            }
            Behaviour::WrongQuestion => {
                let _ = writer.lock().await.write_all(&frame(&respond_to_other_question(&query))).await;
            }
            _ => {
                let _ = writer.lock().await.write_all(&frame(&genuine)).await;
            }
        }
    }
}

/// A private CA, a server certificate it signed for `dns.test` and 127.0.0.1, and the CA's PEM in a temp file.
pub(crate) struct Pki {
    pub(crate) ca_file: PathBuf,
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

impl Pki {
    pub(crate) fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["dns.test".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let ca_file = std::env::temp_dir().join(format!(
            "signpost-upstream-test-ca-{}-{}.pem",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Self {
            ca_file,
            chain: vec![leaf.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        }
    }

    /// Server settings offering `alpn`, with ring's default choices.
    pub(crate) fn server(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        self.server_with(rustls::crypto::ring::default_provider(), alpn)
    }

    /// Server settings with a given provider.
    pub(crate) fn server_with(
        &self,
        provider: rustls::crypto::CryptoProvider,
        alpn: &[&[u8]],
    ) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Arc::new(config)
    }

    /// Client TLS options trusting only this CA.
    pub(crate) fn client(&self) -> TlsOptions {
        TlsOptions { ca_file: Some(self.ca_file.clone()), ignore_system_roots: true, fips: false }
    }
}

/// A fake DoH server at /dns-query.
pub(crate) async fn doh(behaviour: Behaviour, tls: Arc<rustls::ServerConfig>) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let acceptor = TlsAcceptor::from(tls);
    accept_loop(listener, move |stream, seen| {
        let behaviour = behaviour.clone();
        let acceptor = acceptor.clone();
        async move {
            let Ok(stream) = acceptor.accept(stream).await else { return };
            let service = hyper::service::service_fn(move |request| {
                let seen = seen.clone();
                let behaviour = behaviour.clone();
                async move { Ok::<_, Infallible>(serve_doh(request, behaviour, seen).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
}

async fn serve_doh(
    request: Request<hyper::body::Incoming>,
    behaviour: Behaviour,
    seen: Arc<Seen>,
) -> Response<Full<Bytes>> {
    let method = request.method().to_string();
    seen.requests.lock().unwrap().push((method.clone(), format!("{:?}", request.version())));
    let error = |status: StatusCode| Response::builder().status(status).body(Full::new(Bytes::new())).unwrap();
    if request.uri().path() != "/dns-query" {
        return error(StatusCode::NOT_FOUND);
    }
    let query = if method == "GET" {
        let Some(encoded) = request.uri().query().and_then(|q| q.split('&').find_map(|p| p.strip_prefix("dns=")))
        else {
            return error(StatusCode::BAD_REQUEST);
        };
        match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded) {
            Ok(query) => query,
            Err(_) => return error(StatusCode::BAD_REQUEST),
        }
    } else {
        let content_type = request.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        if content_type != "application/dns-message" {
            return error(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
        request.into_body().collect().await.unwrap().to_bytes().to_vec()
    };
    seen.record(&query);
    match behaviour {
        Behaviour::HttpStatus(status) => return error(StatusCode::from_u16(status).unwrap()),
        Behaviour::Delay(delay) => tokio::time::sleep(delay).await,
        Behaviour::Silent => tokio::time::sleep(Duration::from_secs(3600)).await,
        _ => {}
    }
    let answer = match behaviour {
        Behaviour::Rcode(rcode) => respond(&query, rcode, false, GENUINE),
        Behaviour::WrongQuestion => respond_to_other_question(&query),
        _ => respond(&query, Rcode::NOERROR, false, GENUINE),
    };
    Response::builder().header("content-type", "application/dns-message").body(Full::new(Bytes::from(answer))).unwrap()
}

/// Resolve `n0.example` .. `n{count-1}.example` all at once, each in a task
/// of its own; every query must get an answer, which is returned in order.
pub(crate) async fn resolve_at_once(
    group: &signpost_upstream::Group,
    count: usize,
) -> Vec<signpost_upstream::Resolved> {
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
    let mut group = GroupConfig::new("test", servers);
    group.per_try_timeout = Duration::from_millis(400);
    group.total_timeout = Duration::from_secs(2);
    group
}
