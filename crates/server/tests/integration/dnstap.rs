//! dnstap: a fake collector on a unix socket speaks bidirectional Frame
//! Streams with the server; what hickory-resolver's queries produce is
//! decoded with prost and checked; the collector goes away and comes back;
//! a full queue drops and counts.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use signpost_server::DnstapConfig;
use signpost_server::dnstap::frame::{self, ControlType, Frame};
use signpost_server::dnstap::{Dnstap, Message, MessageType, SocketFamily, SocketProtocol};
use signpost_wire::RecordType;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;

use crate::support::*;
use signpost_testkit::CertificateFiles;

/// What a collector received.
#[derive(Default)]
struct Received {
    messages: Vec<Dnstap>,
    /// Connections that ended with STOP (answered with FINISH).
    stopped: usize,
}

/// A Frame Streams reader on a unix socket, as `fstrm_capture` is: it
/// ACCEPTs the dnstap content type, decodes every data frame with prost
/// and answers STOP with FINISH.
struct Collector {
    received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    /// Listen on `path` (removing what a killed collector left there).
    fn start(path: &Path, received: Arc<Mutex<Received>>) -> Self {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        let shared = received.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                connections.spawn(serve(stream, shared.clone()));
            }
        });
        Self { received, task }
    }

    /// A collector on TLS over TCP at 127.0.0.1 with `tls` (which may
    /// require a client certificate). Returns it and its address.
    async fn start_tls(tls: Arc<rustls::ServerConfig>, received: Arc<Mutex<Received>>) -> (Self, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let shared = received.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (acceptor, shared) = (acceptor.clone(), shared.clone());
                connections.spawn(async move {
                    // A client without an acceptable certificate fails here.
                    let Ok(stream) = acceptor.accept(stream).await else { return };
                    let (reader, writer) = tokio::io::split(stream);
                    serve_halves(reader, writer, shared).await;
                });
            }
        });
        (Self { received, task }, address)
    }

    /// As if the collector process died: the listener and every
    /// connection close (aborting the accept task drops its JoinSet,
    /// which aborts the connections).
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    fn messages(&self) -> Vec<Message> {
        self.received.lock().unwrap().messages.iter().filter_map(|frame| frame.message.clone()).collect()
    }

    /// Wait (bounded) until `done` holds of the messages received.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Message]) -> bool) -> Vec<Message> {
        for _ in 0..100 {
            let messages = self.messages();
            if done(&messages) {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the collector never received {what}; it has {:?}", summary(&self.messages()));
    }
}

async fn serve(stream: tokio::net::UnixStream, received: Arc<Mutex<Received>>) {
    let (reader, writer) = stream.into_split();
    serve_halves(reader, writer, received).await;
}

/// The collector's side of one Frame Streams connection.
async fn serve_halves(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    mut writer: impl tokio::io::AsyncWrite + Unpin,
    received: Arc<Mutex<Received>>,
) {
    let Ok(Some(Frame::Control { kind: ControlType::READY, content_types })) = frame::read_frame(&mut reader).await
    else {
        return;
    };
    assert!(content_types.iter().any(|content_type| content_type == frame::CONTENT_TYPE), "{content_types:?}");
    let mut accept = Vec::new();
    frame::write_control(&mut accept, ControlType::ACCEPT, &[frame::CONTENT_TYPE]);
    writer.write_all(&accept).await.unwrap();
    let Ok(Some(Frame::Control { kind: ControlType::START, .. })) = frame::read_frame(&mut reader).await else {
        return;
    };
    loop {
        match frame::read_frame(&mut reader).await {
            Ok(Some(Frame::Data(payload))) => {
                let decoded = Dnstap::decode(payload.as_slice()).expect("a dnstap protobuf");
                received.lock().unwrap().messages.push(decoded);
            }
            Ok(Some(Frame::Control { kind: ControlType::STOP, .. })) => {
                let mut finish = Vec::new();
                frame::write_control(&mut finish, ControlType::FINISH, &[]);
                let _ = writer.write_all(&finish).await;
                received.lock().unwrap().stopped += 1;
                return;
            }
            other => panic!("unexpected in a dnstap stream: {other:?}"),
        }
    }
}

/// Type and question of each message, for failure messages.
fn summary(messages: &[Message]) -> Vec<(MessageType, String)> {
    messages.iter().map(|message| (message.r#type(), question_of(message).unwrap_or_default())).collect()
}

/// The question of the message's wire bytes (query, else response), as `name type`.
fn question_of(message: &Message) -> Option<String> {
    let bytes = message.query_message.as_ref().or(message.response_message.as_ref())?;
    let parsed = signpost_wire::Message::parse(bytes).ok()?;
    let question = parsed.first_question().ok()??;
    Some(format!("{} {}", question.name(), question.qtype()))
}

fn of_type(messages: &[Message], kind: MessageType, question: &str) -> Option<Message> {
    messages
        .iter()
        .find(|message| message.r#type() == kind && question_of(message).as_deref() == Some(question))
        .cloned()
}

fn dnstap_config(path: &Path) -> DnstapConfig {
    DnstapConfig {
        socket_path: Some(path.to_path_buf()),
        identity: Some("test-node".into()),
        version: Some("test-version".into()),
        ..DnstapConfig::default()
    }
}

fn socket_in(dir: &TempDir) -> PathBuf {
    dir.path().join("dnstap.sock")
}

/// A collector on a unix socket in a new directory (kept while the test
/// runs), and a config with the default listeners tapping to it.
fn tapped_config() -> (TempDir, Collector, signpost_server::ServerConfig) {
    let dir = TempDir::new();
    let path = socket_in(&dir);
    let collector = Collector::start(&path, Arc::default());
    let mut config = config_with_default_listeners();
    config.dnstap = Some(dnstap_config(&path));
    (dir, collector, config)
}

#[tokio::test]
async fn client_and_forwarder_messages_reach_the_collector_with_addresses_and_wire_bytes() {
    let (_dir, collector, config) = tapped_config();
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 7)).await;
    let server = start_with(config, FORWARD_ALL, Some(&upstream)).await;
    let server_address = udp(&server);
    // The writer connects in the background: wait for it before asking.
    wait_until_connected(&server, &collector).await;

    let lookup = resolver(Transport::Udp, server_address).lookup_ip("tapped.example.").await.unwrap();
    assert_eq!(lookup.iter().collect::<Vec<_>>(), [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))]);
    let question = "tapped.example. A";
    let messages = collector
        .wait_for("the four messages of one forwarded query", |messages| {
            [
                MessageType::ClientQuery,
                MessageType::ForwarderQuery,
                MessageType::ForwarderResponse,
                MessageType::ClientResponse,
            ]
            .iter()
            .all(|kind| of_type(messages, *kind, question).is_some())
        })
        .await;

    let client_query = of_type(&messages, MessageType::ClientQuery, question).unwrap();
    assert_eq!(client_query.socket_family(), SocketFamily::Inet);
    assert_eq!(client_query.socket_protocol(), SocketProtocol::Udp);
    assert_eq!(client_query.query_address(), [127, 0, 0, 1]);
    assert_ne!(client_query.query_port(), 0);
    assert_eq!(client_query.response_address(), [127, 0, 0, 1]);
    assert_eq!(client_query.response_port(), u32::from(server_address.port()));
    assert!(client_query.query_time_sec() > 1_600_000_000);
    assert!(client_query.response_message.is_none());

    let client_response = of_type(&messages, MessageType::ClientResponse, question).unwrap();
    assert_eq!(client_response.query_port(), client_query.query_port());
    let response = client_response.response_message.as_deref().unwrap();
    assert_eq!(answers(response), ["tapped.example. 300 IN A 192.0.2.7"]);
    // The answer's ID is the client's query's.
    assert_eq!(response[..2], client_query.query_message.as_deref().unwrap()[..2]);
    assert!(client_response.response_time_sec() >= client_query.query_time_sec());

    let upstream_address = upstream.address();
    for kind in [MessageType::ForwarderQuery, MessageType::ForwarderResponse] {
        let message = of_type(&messages, kind, question).unwrap();
        assert_eq!(message.socket_protocol(), SocketProtocol::Udp, "{kind:?}");
        assert_eq!(message.response_address(), [127, 0, 0, 1], "{kind:?}");
        assert_eq!(message.response_port(), u32::from(upstream_address.port()), "{kind:?}");
    }
    // The forwarder messages carry the ID the upstream saw, not 0. The
    // resolver asks AAAA too, and either may reach the upstream first: the
    // A query is the one the messages above are of.
    let seen = upstream
        .queries()
        .into_iter()
        .find(|seen| seen.name.eq_ignore_ascii_case("tapped.example.") && seen.qtype == RecordType::A)
        .unwrap();
    let message_id = |bytes: Option<&[u8]>| u16::from_be_bytes(bytes.unwrap()[..2].try_into().unwrap());
    let forwarder_query = of_type(&messages, MessageType::ForwarderQuery, question).unwrap();
    assert_eq!(message_id(forwarder_query.query_message.as_deref()), seen.id);
    let forwarder_response = of_type(&messages, MessageType::ForwarderResponse, question).unwrap();
    assert_eq!(message_id(forwarder_response.query_message.as_deref()), seen.id);
    assert_eq!(message_id(forwarder_response.response_message.as_deref()), seen.id);
    assert_eq!(
        answers(forwarder_response.response_message.as_deref().unwrap()),
        ["tapped.example. 300 IN A 192.0.2.7"]
    );

    let frames = collector.received.lock().unwrap().messages.clone();
    assert!(frames.iter().all(|frame| frame.identity.as_deref() == Some(&b"test-node"[..])));
    assert!(frames.iter().all(|frame| frame.version.as_deref() == Some(&b"test-version"[..])));

    // Shutdown ends the stream properly: STOP, answered with FINISH.
    let metrics = server.clone();
    server.shutdown().await;
    assert_eq!(collector.received.lock().unwrap().stopped, 1);
    let sent = metrics.metrics().dnstap_frames(true);
    assert_eq!(sent as usize, collector.received.lock().unwrap().messages.len());
    assert!(metrics.metrics_text().contains(&format!("signpost_dnstap_frames_total{{outcome=\"sent\"}} {sent}")));
}

#[tokio::test]
async fn forwarder_messages_name_the_forward_zone_that_sent_the_query() {
    let (_dir, collector, config) = tapped_config();
    let corp = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 21)).await;
    let default = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 22)).await;
    let text = r#"
        default_group = "upstream"
        rules = [
            { suffix = "corp.example", action = "forward", group = "corp" },
            { suffix = "branch.example", action = "forward", group = "closed", forward_first = true },
        ]
        "#;
    let server = start_server({
        signpost_server::Server::builder().config(config).rules(rules(text, &["upstream", "corp", "closed"])).upstreams(
            upstreams(vec![
                group_of("corp", &corp),
                group_of("upstream", &default),
                group("closed", &[signpost_testkit::closed_udp_port()]),
            ]),
        )
    })
    .await;
    wait_until_connected(&server, &collector).await;

    let client = resolver(Transport::Udp, udp(&server));
    for (name, address) in [
        ("www.corp.example.", [192, 0, 2, 21]),
        ("elsewhere.example.", [192, 0, 2, 22]),
        ("x.branch.example.", [192, 0, 2, 22]),
    ] {
        let lookup = client.lookup_ip(name).await.unwrap();
        assert_eq!(lookup.iter().collect::<Vec<_>>(), [IpAddr::V4(address.into())], "{name}");
    }
    let wanted = [
        (MessageType::ForwarderQuery, "www.corp.example. A"),
        (MessageType::ForwarderResponse, "www.corp.example. A"),
        (MessageType::ForwarderResponse, "elsewhere.example. A"),
        (MessageType::ForwarderResponse, "x.branch.example. A"),
    ];
    let messages = collector
        .wait_for("the forwarder messages of three queries", |messages| {
            wanted.iter().all(|(kind, question)| of_type(messages, *kind, question).is_some())
        })
        .await;
    let zone_of = |kind: MessageType, question: &str, server: SocketAddr| -> Vec<Option<Vec<u8>>> {
        messages
            .iter()
            .filter(|message| {
                message.r#type() == kind
                    && question_of(message).as_deref() == Some(question)
                    && message.response_port() == u32::from(server.port())
            })
            .map(|message| message.query_zone.clone())
            .collect()
    };
    let corp_zone = Some(b"\x04corp\x07example\x00".to_vec());
    let root = Some(vec![0u8]);
    // The rule's zone, in wire format, on the query and on the response.
    for kind in [MessageType::ForwarderQuery, MessageType::ForwarderResponse] {
        assert_eq!(zone_of(kind, "www.corp.example. A", corp.address()), std::slice::from_ref(&corp_zone), "{kind:?}");
        // Nothing matched: the default group forwards for the root, as Unbound's `forward-zone: name: "."`.
        assert_eq!(zone_of(kind, "elsewhere.example. A", default.address()), std::slice::from_ref(&root), "{kind:?}");
    }
    // forward-first: the rule's closed server was tried for branch.example,
    // then the default group answered for the root.
    let branch = messages
        .iter()
        .filter(|message| {
            message.r#type() == MessageType::ForwarderQuery
                && question_of(message).as_deref() == Some("x.branch.example. A")
        })
        .map(|message| (message.response_port() == u32::from(default.address().port()), message.query_zone.clone()))
        .collect::<Vec<_>>();
    let branch_zone = Some(b"\x06branch\x07example\x00".to_vec());
    assert!(branch.contains(&(false, branch_zone)), "{branch:?}");
    assert!(branch.contains(&(true, root.clone())), "{branch:?}");
    assert_eq!(zone_of(MessageType::ForwarderResponse, "x.branch.example. A", default.address()), [root]);
    // Client messages carry no zone.
    let client_query = of_type(&messages, MessageType::ClientQuery, "www.corp.example. A").unwrap();
    assert_eq!(client_query.query_zone, None);
    server.shutdown().await;
}

/// Ask `name` A, which must be answered, and wait for its CLIENT_RESPONSE
/// to reach the collector (`when` says when, for the failure message).
async fn ask_and_see_the_client_response(
    server: &signpost_server::ServerHandle,
    collector: &Collector,
    name: &str,
    when: &str,
) {
    let answer = udp_exchange(udp(server), &query(name, RecordType::A), ASK_TIMEOUT).await;
    assert!(answer.is_some(), "no answer to {name}");
    let question = format!("{name}. A");
    collector
        .wait_for(&format!("the CLIENT_RESPONSE {when}"), |messages| {
            of_type(messages, MessageType::ClientResponse, &question).is_some()
        })
        .await;
}

/// Ask a local name until its CLIENT_QUERY arrives: the writer is connected.
async fn wait_until_connected(server: &signpost_server::ServerHandle, collector: &Collector) {
    for attempt in 0..100 {
        let name = format!("probe{attempt}.local.test");
        let _ = udp_exchange(udp(server), &query(&name, RecordType::A), Duration::from_millis(500)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let wanted = format!("{name}. A");
        if collector.messages().iter().any(|message| question_of(message).as_deref() == Some(wanted.as_str())) {
            return;
        }
    }
    panic!("the dnstap writer never connected");
}

#[tokio::test]
async fn frames_resume_when_the_collector_comes_back() {
    let dir = TempDir::new();
    let path = socket_in(&dir);
    let received = Arc::new(Mutex::new(Received::default()));
    let collector = Collector::start(&path, received.clone());
    let mut config = config_with_default_listeners();
    config.dnstap = Some(dnstap_config(&path));
    let server = start_with(config, LOCAL_TEST, None).await;
    wait_until_connected(&server, &collector).await;

    collector.kill().await;
    // Answers go on while the collector is away; their messages are dropped.
    for index in 0..5 {
        let name = format!("away{index}.local.test");
        let answer = udp_exchange(udp(&server), &query(&name, RecordType::A), ASK_TIMEOUT).await;
        assert!(answer.is_some(), "no answer while the collector was away");
    }

    let collector = Collector::start(&path, Arc::new(Mutex::new(Received::default())));
    // The writer reconnects within its backoff (at most 5 s).
    wait_until_connected(&server, &collector).await;
    ask_and_see_the_client_response(&server, &collector, "back.local.test", "after reconnecting").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_delaying_answers() {
    let dir = TempDir::new();
    let path = socket_in(&dir);
    // A "collector" that accepts the connection and never answers READY:
    // the writer waits in the handshake while the queue fills.
    let _ = std::fs::remove_file(&path);
    let silent = UnixListener::bind(&path).unwrap();
    let held = tokio::spawn(async move {
        let mut streams = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            streams.push(stream);
        }
    });
    let mut config = config_with_default_listeners();
    config.dnstap = Some(DnstapConfig { queue: 1, ..dnstap_config(&path) });
    let server = start_with(config, LOCAL_TEST, None).await;
    for index in 0..20 {
        let name = format!("full{index}.local.test");
        let answer = udp_exchange(udp(&server), &query(&name, RecordType::A), ASK_TIMEOUT).await;
        assert!(answer.is_some(), "query {index} got no answer");
    }
    // 20 queries make 40 messages; the queue holds one.
    let dropped = server.metrics().dnstap_frames(false);
    assert!(dropped >= 38, "only {dropped} dropped");
    assert!(server.metrics_text().contains(&format!("signpost_dnstap_frames_total{{outcome=\"dropped\"}} {dropped}")));
    assert_eq!(server.metrics().dnstap_frames(true), 0);
    held.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn tls_needs_a_tcp_collector_and_readable_files() {
    let mut config = config_with_default_listeners();
    config.dnstap = Some(DnstapConfig { tls: true, ..dnstap_config(Path::new("/nonexistent/dnstap.sock")) });
    let error = signpost_server::Server::builder().config(config).start().await.err().expect("refused");
    assert!(error.to_string().contains("TCP address"), "{error}");
    let mut config = config_with_default_listeners();
    config.dnstap = Some(DnstapConfig {
        tls: true,
        address: Some("127.0.0.1:6000".parse().unwrap()),
        tls_cert_bundle: Some("/nonexistent/ca.pem".into()),
        ..DnstapConfig::default()
    });
    let error = signpost_server::Server::builder().config(config).start().await.err().expect("refused");
    assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
}

/// A server whose dnstap goes over TLS to `collector`, trusting the test CA
/// in `files` and expecting the collector's certificate to name `server_name`.
async fn start_tapped_over_tls(
    collector: SocketAddr,
    files: &CertificateFiles,
    server_name: &str,
    client_auth: bool,
) -> signpost_server::ServerHandle {
    let mut config = config_with_default_listeners();
    config.dnstap = Some(DnstapConfig {
        address: Some(collector),
        tls: true,
        tls_server_name: Some(server_name.into()),
        tls_cert_bundle: Some(files.ca.clone()),
        tls_client_cert_file: client_auth.then(|| files.cert.clone()),
        tls_client_key_file: client_auth.then(|| files.key.clone()),
        identity: Some("tls-node".into()),
        ..DnstapConfig::default()
    });
    start_with(config, LOCAL_TEST, None).await
}

/// A collector's TLS settings that want a client certificate signed by the test CA.
fn requiring_client_certificates(
    certificates: &TestCertificates,
    files: &CertificateFiles,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificates.ca_der().clone()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
    let chain = vec![CertificateDer::from_pem_file(&files.cert).unwrap()];
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    Arc::new(tls)
}

/// Five questions (`{prefix}0.local.test` ...) are all answered while the
/// collector turns the writer away, and 300 ms on it has received nothing.
async fn answered_but_not_tapped(server: &signpost_server::ServerHandle, collector: &Collector, prefix: &str) {
    for index in 0..5 {
        let name = format!("{prefix}{index}.local.test");
        assert!(udp_exchange(udp(server), &query(&name, RecordType::A), ASK_TIMEOUT).await.is_some());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(collector.messages().is_empty(), "{:?}", summary(&collector.messages()));
}

#[tokio::test]
async fn frames_go_over_tls_with_the_servers_name_checked_and_a_client_certificate() {
    let certificates = TestCertificates::new().unwrap();
    let dir = TempDir::new();
    let files = certificates.write_to(dir.path()).unwrap();
    let tls = requiring_client_certificates(&certificates, &files);
    let (collector, address) = Collector::start_tls(tls.clone(), Arc::default()).await;

    let server = start_tapped_over_tls(address, &files, "localhost", true).await;
    wait_until_connected(&server, &collector).await;
    ask_and_see_the_client_response(&server, &collector, "secure.local.test", "over TLS").await;
    let frames = collector.received.lock().unwrap().messages.clone();
    assert!(frames.iter().all(|frame| frame.identity.as_deref() == Some(&b"tls-node"[..])));
    server.shutdown().await;
    assert_eq!(collector.received.lock().unwrap().stopped, 1, "STOP and FINISH over TLS");

    // Without the client certificate the collector turns the writer away:
    // nothing arrives, and answers go on.
    let (collector, address) = Collector::start_tls(tls, Arc::default()).await;
    let server = start_tapped_over_tls(address, &files, "localhost", false).await;
    answered_but_not_tapped(&server, &collector, "refused").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_collector_certificate_for_another_name_is_refused() {
    // The collector's certificate is for the loopback names; the writer expects another.
    let certificates = TestCertificates::new().unwrap();
    let dir = TempDir::new();
    let files = certificates.write_to(dir.path()).unwrap();
    let (collector, address) = Collector::start_tls(certificates.server_config(&[]).unwrap(), Arc::default()).await;
    let server = start_tapped_over_tls(address, &files, "collector.example", false).await;
    answered_but_not_tapped(&server, &collector, "wrongname").await;
    assert!(server.metrics().dnstap_frames(false) >= 10, "dropped and counted");
    server.shutdown().await;
}
