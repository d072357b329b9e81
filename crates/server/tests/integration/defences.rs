//! Defences against abuse, end to end on loopback: forwarding loops between
//! servers, one client's flood of TCP or DoH connections, a client that
//! stalls mid-query, HTTP/2 rapid reset (CVE-2023-44487) — each while
//! another client keeps being served.
#![allow(clippy::print_stdout, reason = "the figures docs/reliability.md quotes, seen with --nocapture")]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use signpost_server::{ListenerConfig, ServerHandle, State};
use signpost_wire::{EdnsHeader, Message, Rcode, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::*;

const PATIENCE: Duration = Duration::from_secs(10);

/// Point `server`'s group "upstream" at `target` (a reload, as SIGHUP does).
fn forward_to(server: &ServerHandle, target: SocketAddr) {
    server.reload(State::new(
        std::sync::Arc::new(rules(FORWARD_ALL, &["upstream"])),
        std::sync::Arc::new(upstreams(vec![group("upstream", &[target])])),
    ));
}

async fn ask(server: &ServerHandle, name: &str) -> (Vec<u8>, Duration) {
    let bytes = edns_query(name, RecordType::A, EdnsHeader::default());
    let started = Instant::now();
    let response = udp_exchange(udp(server), &bytes, PATIENCE).await.expect("an answer");
    (response, started.elapsed())
}

fn extended_error_text(response: &[u8]) -> String {
    let message = Message::parse(response).unwrap();
    let edns = message.edns().unwrap().expect("EDNS in the answer");
    match edns.option(signpost_wire::OptionCode::EXTENDED_ERROR) {
        Some(signpost_wire::EdnsOption::ExtendedError(error)) => String::from_utf8_lossy(error.extra_text).into_owned(),
        other => panic!("no extended error: {other:?}"),
    }
}

/// Two forwarders pointed at each other, and one pointed at itself through
/// its own address: SERVFAIL with an extended error at once (not after the
/// query deadline), and only a handful of packets, not a storm.
#[tokio::test]
async fn forwarding_loops_are_answered_servfail_at_once_without_a_storm() {
    let first = start(FORWARD_ALL, None).await;
    let second = start(FORWARD_ALL, None).await;
    forward_to(&first, udp(&second));
    forward_to(&second, udp(&first));
    let (response, took) = ask(&first, "loop.example").await;
    assert_eq!(Message::parse(&response).unwrap().rcode().unwrap(), Rcode::SERVFAIL);
    assert!(took < Duration::from_millis(900), "answered in {took:?}, not after a timeout");
    println!("loop between two servers: SERVFAIL in {took:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = first.metrics().queries("udp") + second.metrics().queries("udp");
    assert!(first.metrics().decisions("loop") >= 1, "the first server never saw its own query come back");
    assert!(seen <= 6, "{seen} queries in all: a storm");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(first.metrics().queries("udp") + second.metrics().queries("udp"), seen, "still circling");
    println!("loop between two servers: {seen} queries in all");

    // One server forwarding to itself.
    let alone = start(FORWARD_ALL, None).await;
    forward_to(&alone, udp(&alone));
    let (response, took) = ask(&alone, "self.example").await;
    assert_eq!(Message::parse(&response).unwrap().rcode().unwrap(), Rcode::SERVFAIL);
    assert!(extended_error_text(&response).contains("loop"), "{}", extended_error_text(&response));
    assert!(took < Duration::from_millis(900), "answered in {took:?}");
    assert_eq!(alone.metrics().decisions("loop"), 1);
    assert!(alone.metrics().queries("udp") <= 4, "{} queries", alone.metrics().queries("udp"));
    for server in [first, second, alone] {
        server.shutdown().await;
    }
}

/// A TCP connection from `source` (a loopback address) to `server`.
async fn connect_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source.parse::<IpAddr>().unwrap(), 0)).unwrap();
    socket.connect(server).await.unwrap()
}

async fn tcp_served(source: &str, server: SocketAddr) -> bool {
    let mut stream = connect_from(source, server).await;
    if write_frame(&mut stream, &query("other.local.test", RecordType::A)).await.is_err() {
        return false;
    }
    matches!(tokio::time::timeout(PATIENCE, read_frame(&mut stream)).await, Ok(Some(_)))
}

#[tokio::test]
async fn one_client_cannot_take_every_tcp_connection_and_stalled_queries_are_cut_off() {
    let server = local_test_server(|config| {
        config.limits.tcp_max_connections_per_client = 4;
        config.limits.tcp_idle_timeout_secs = 1;
    })
    .await;
    // One client opens 20 idle connections; past its fourth they are closed at once.
    let mut flood = Vec::new();
    for _ in 0..20 {
        flood.push(connect_from("127.0.0.1", tcp(&server)).await);
    }
    let mut closed_at_once = 0;
    for stream in &mut flood[4..] {
        if closed_within(stream, Duration::from_millis(500)).await {
            closed_at_once += 1;
        }
    }
    assert_eq!(closed_at_once, 16);
    assert!(server.metrics().drops("tcp_limit") >= 16);
    // Another client is served all the while.
    assert!(tcp_served("127.0.0.2", tcp(&server)).await, "another client was not served");
    // A client that sends a length prefix, or half a query, and stalls is cut off after the idle timeout.
    let mut prefix_only = connect_from("127.0.0.3", tcp(&server)).await;
    prefix_only.write_all(&[0, 40]).await.unwrap();
    let mut half = connect_from("127.0.0.3", tcp(&server)).await;
    half.write_all(&[0, 40, 0x12, 0x34, 1]).await.unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut prefix_only, Duration::from_secs(5)).await);
    assert!(closed_within(&mut half, Duration::from_secs(5)).await);
    assert!(started.elapsed() < Duration::from_secs(3), "cut off after {:?}", started.elapsed());
    // The idle flood is gone too, and its client is served again.
    for stream in &mut flood[..4] {
        assert!(closed_within(stream, Duration::from_secs(5)).await);
    }
    assert!(tcp_served("127.0.0.1", tcp(&server)).await);
    server.shutdown().await;
}

async fn doh_server(max_per_client: usize, idle_secs: u64) -> ServerHandle {
    let mut listener = ListenerConfig::new(Transport::Doh, "127.0.0.1:0".parse().unwrap());
    listener.plain_http = true;
    let mut config = config_with_default_listeners();
    config.listeners.push(listener);
    config.limits.tcp_max_connections_per_client = max_per_client;
    config.limits.tcp_idle_timeout_secs = idle_secs;
    start_with(config, LOCAL_TEST, None).await
}

/// A DoH GET over HTTP/1.1 from `source`; whether it was answered 200.
async fn doh_served(source: &str, server: SocketAddr) -> bool {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(query("doh.local.test", RecordType::A));
    let mut stream = connect_from(source, server).await;
    let request = format!("GET /dns-query?dns={encoded} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut response = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response)).await;
    response.starts_with(b"HTTP/1.1 200")
}

#[tokio::test]
async fn doh_connections_are_capped_per_client_and_idle_ones_closed() {
    let server = doh_server(3, 1).await;
    let address = server.doh_addrs()[0];
    let mut flood = Vec::new();
    for _ in 0..10 {
        flood.push(connect_from("127.0.0.1", address).await);
    }
    let mut closed_at_once = 0;
    for stream in &mut flood[3..] {
        if closed_within(stream, Duration::from_millis(500)).await {
            closed_at_once += 1;
        }
    }
    assert_eq!(closed_at_once, 7);
    assert!(doh_served("127.0.0.2", address).await, "another client was not served");
    // The three within the cap sent nothing: closed after the idle timeout.
    let started = Instant::now();
    for stream in &mut flood[..3] {
        assert!(closed_within(stream, Duration::from_secs(5)).await, "an idle DoH connection stayed open");
    }
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
    assert!(doh_served("127.0.0.1", address).await, "the client is served again");
    server.shutdown().await;
}

/// HTTP/2 rapid reset: a client opens streams and resets each at once. The
/// server closes the connection (GOAWAY) long before the client is done,
/// and answers another client meanwhile.
#[tokio::test]
async fn http2_rapid_reset_gets_the_connection_closed_and_others_are_served() {
    let server = doh_server(16, 10).await;
    let address = server.doh_addrs()[0];
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut client, connection) = h2::client::handshake(stream).await.unwrap();
    let driver = tokio::spawn(connection);
    let uri = format!("http://{address}/dns-query");
    const ATTEMPTS: usize = 20_000;
    let mut sent = 0;
    let mut refused = None;
    for _ in 0..ATTEMPTS {
        client = match client.ready().await {
            Ok(client) => client,
            Err(error) => {
                refused = Some(error);
                break;
            }
        };
        let request = http::Request::post(&uri).header("content-type", "application/dns-message").body(()).unwrap();
        match client.send_request(request, false) {
            Ok((_response, mut body)) => {
                let _ = body.send_data(Bytes::from(query("reset.local.test", RecordType::A)), false);
                body.send_reset(h2::Reason::CANCEL);
                sent += 1;
            }
            Err(error) => {
                refused = Some(error);
                break;
            }
        }
        if sent % 64 == 0 {
            // Let the frames go out in batches, as an attacker's would.
            tokio::task::yield_now().await;
        }
    }
    let error = refused.unwrap_or_else(|| panic!("all {sent} reset streams were accepted"));
    assert!(sent < ATTEMPTS / 2, "{sent} streams before the server closed the connection");
    assert!(
        error.is_go_away() || error.is_io() || error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM),
        "closed with {error:?}"
    );
    println!("rapid reset: the server closed the connection after {sent} reset streams ({error})");
    driver.abort();
    assert!(doh_served("127.0.0.2", address).await, "another client was not served");
    assert!(
        server.metrics().queries("doh") < sent as u64,
        "{} of {sent} reset streams served",
        server.metrics().queries("doh")
    );
    server.shutdown().await;
}

/// Send raw HTTP/1.1 bytes to `server`; the status line of the reply, or
/// "closed" when the server closed without one.
async fn http1_status(server: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    text.lines().next().filter(|line| !line.is_empty()).unwrap_or("closed").to_string()
}

#[tokio::test]
async fn oversized_doh_headers_and_bodies_are_rejected_and_others_served() {
    let server = doh_server(16, 10).await;
    let address = server.doh_addrs()[0];
    let padding = "x".repeat(20 * 1024);
    let big_header = format!("GET /dns-query?dns=AAAA HTTP/1.1\r\nhost: x\r\nx-pad: {padding}\r\n\r\n");
    let header_status = http1_status(address, big_header.as_bytes()).await;
    assert!(header_status.contains(" 431") || header_status == "closed", "20 KiB of headers: {header_status}");
    let mut big_body =
        b"POST /dns-query HTTP/1.1\r\nhost: x\r\ncontent-type: application/dns-message\r\ncontent-length: 70000\r\nconnection: close\r\n\r\n"
            .to_vec();
    big_body.extend(std::iter::repeat_n(0u8, 70_000));
    let body_status = http1_status(address, &big_body).await;
    assert!(body_status.contains(" 413"), "a 70,000-byte body: {body_status}");
    let encoded = "A".repeat(90_000);
    let long_query = format!("GET /dns-query?dns={encoded} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let status = http1_status(address, long_query.as_bytes()).await;
    assert!(status.contains(" 414") || status.contains(" 431") || status == "closed", "a 90 KB URI: {status}");
    println!("oversized DoH requests: headers {header_status:?}, body {body_status:?}, URI {status:?}");
    assert!(doh_served("127.0.0.2", address).await, "another client was not served");
    server.shutdown().await;
}
