//! DNS over HTTPS and over TLS: hickory over TLS (HTTP/2 for DoH), HTTP/1.1
//! over TLS, and status codes over plain HTTP.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use base64::Engine;
use signpost_server::{ListenerConfig, Transport};
use signpost_wire::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const LOCAL: &str =
    r#"rules = [{ suffix = "doh.test", action = "redirect", ipv4 = "127.0.0.1", ipv6 = "none", ttl = 42 }]"#;

/// A server with a DoT or DoH listener presenting fresh test certificates, recording queries.
async fn tls_server(
    transport: Transport,
) -> (signpost_server::ServerHandle, signpost_server::TestLayer, TestCertificates, TempDir) {
    let (certificates, dir) = (TestCertificates::new().unwrap(), TempDir::new());
    let listener = tls_listener(transport, &certificates, &dir);
    let layer = signpost_server::TestLayer::new().recording(true);
    let server =
        start_server(builder().listener(listener.clone()).rules(rules(LOCAL, &[])).test_layer(layer.clone())).await;
    (server, layer, certificates, dir)
}

#[tokio::test]
async fn hickory_resolves_over_doh_with_tls_and_http2_and_over_dot() {
    let cases = [(Transport::Doh, &b"h2"[..]), (Transport::Dot, &b"dot"[..])];
    for (client, alpn) in cases {
        let (server, layer, certificates, _dir) = tls_server(client).await;
        let address = if client == Transport::Doh { server.doh_addrs()[0] } else { server.dot_addrs()[0] };
        let resolver =
            ResolverBuilder::new(client, address).tls(certificates.client_config(&[alpn]).unwrap()).build().unwrap();
        let lookup = resolver.lookup_ip("api.doh.test.").await.unwrap();
        assert_eq!(lookup.iter().collect::<Vec<_>>(), [IpAddr::V4(Ipv4Addr::LOCALHOST)], "{client}");
        let seen = layer.recorded_queries();
        assert!(!seen.is_empty() && seen.iter().all(|q| q.transport == client), "{client}: {seen:?}");
        server.shutdown().await;
    }
}

/// One HTTP/1.1 request over plain TCP; returns status line and the rest.
async fn http(address: std::net::SocketAddr, request: &[u8]) -> (String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let end = response.iter().position(|&b| b == b'\r').unwrap();
    (String::from_utf8_lossy(&response[..end]).into_owned(), response)
}

#[tokio::test]
async fn plain_http_doh_answers_get_and_post_and_rejects_bad_requests() {
    let mut listener = ListenerConfig::new(Transport::Doh, "127.0.0.1:0".parse().unwrap());
    listener.plain_http = true;
    let server = start_server(builder().listener(listener.clone()).rules(rules(LOCAL, &[]))).await;
    let address = server.doh_addrs()[0];
    let dns = query("www.doh.test", RecordType::A);
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&dns);

    let get = format!("GET /dns-query?dns={encoded} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (status, response) = http(address, get.as_bytes()).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let text = String::from_utf8_lossy(&response).to_lowercase();
    assert!(text.contains("content-type: application/dns-message"), "{text}");
    assert!(text.contains("cache-control: max-age=42"), "{text}");

    let mut post = format!(
        "POST /dns-query HTTP/1.1\r\nHost: x\r\nContent-Type: application/dns-message\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        dns.len()
    )
    .into_bytes();
    post.extend_from_slice(&dns);
    let (status, response) = http(address, &post).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let body = &response[response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    assert_eq!(answers(body), ["www.doh.test. 42 IN A 127.0.0.1"]);

    let wrong_type = format!(
        "POST /dns-query HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        dns.len()
    );
    let mut wrong = wrong_type.into_bytes();
    wrong.extend_from_slice(&dns);
    assert_eq!(http(address, &wrong).await.0, "HTTP/1.1 415 Unsupported Media Type");
    let put = b"PUT /dns-query HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(http(address, put).await.0, "HTTP/1.1 405 Method Not Allowed");
    let bad = b"GET /dns-query?dns=!!! HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(http(address, bad).await.0, "HTTP/1.1 400 Bad Request");
    let missing = b"GET /dns-query HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(http(address, missing).await.0, "HTTP/1.1 400 Bad Request");
    let elsewhere = b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(http(address, elsewhere).await.0, "HTTP/1.1 404 Not Found");
    server.shutdown().await;
}

#[tokio::test]
async fn doh_without_a_certificate_needs_plain_http_said_out_loud() {
    let listener = ListenerConfig::new(Transport::Doh, "127.0.0.1:0".parse().unwrap());
    let error = builder().listener(listener).start().await.err().expect("refused");
    assert!(error.to_string().contains("plain_http"), "{error}");
}

/// One HTTP/1.1 request over TLS offering `alpn`; returns the protocol the
/// server chose, the status line and the whole response.
async fn https1(
    address: std::net::SocketAddr,
    certificates: &TestCertificates,
    alpn: &[&[u8]],
    request: &[u8],
) -> (Option<Vec<u8>>, String, Vec<u8>) {
    let tls = certificates.client_config(alpn).unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let server_name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = connector.connect(server_name, tcp).await.expect("TLS handshake");
    let chosen = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    // The server may close without close_notify; what arrived is what counts.
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let end = response.iter().position(|&b| b == b'\r').expect("a status line");
    (chosen, String::from_utf8_lossy(&response[..end]).into_owned(), response)
}

#[tokio::test]
async fn doh_over_tls_answers_http1_get_and_post() {
    let (server, layer, certificates, _dir) = tls_server(Transport::Doh).await;
    let address = server.doh_addrs()[0];
    let dns = query("www.doh.test", RecordType::A);
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&dns);
    let get = format!("GET /dns-query?dns={encoded} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut post = format!(
        "POST /dns-query HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/dns-message\r\nContent-Length: \
         {}\r\nConnection: close\r\n\r\n",
        dns.len()
    )
    .into_bytes();
    post.extend_from_slice(&dns);

    // ALPN http/1.1, and a client offering no ALPN at all (HTTP/1.1 is then the default).
    let offers: [&[&[u8]]; 2] = [&[b"http/1.1"], &[]];
    for alpn in offers {
        for request in [get.as_bytes(), &post] {
            let (chosen, status, response) = https1(address, &certificates, alpn, request).await;
            if alpn.is_empty() {
                assert_eq!(chosen, None);
            } else {
                assert_eq!(chosen.as_deref(), Some(&b"http/1.1"[..]));
            }
            assert_eq!(status, "HTTP/1.1 200 OK");
            let text = String::from_utf8_lossy(&response).to_lowercase();
            assert!(text.contains("content-type: application/dns-message"), "{text}");
            assert!(text.contains("cache-control: max-age=42"), "{text}");
            let body = &response[response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
            assert_eq!(answers(body), ["www.doh.test. 42 IN A 127.0.0.1"]);
        }
    }
    let (_, status, _) = https1(
        address,
        &certificates,
        &[b"http/1.1"],
        b"PUT /dns-query HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    let seen = layer.recorded_queries();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(seen.iter().all(|q| q.transport == Transport::Doh), "{seen:?}");
    server.shutdown().await;
}

/// DoH clients that give up while their query is being forwarded must not
/// hold up shutdown: the forward is cancelled with the request and no
/// longer counts as in flight.
#[tokio::test]
async fn abandoned_doh_requests_do_not_hold_up_shutdown() {
    let upstream = FakeUpstream::silent().await;
    let mut group = group_of("upstream", &upstream);
    group.per_try_timeout = Duration::from_secs(30);
    group.total_timeout = Duration::from_secs(30);
    let mut config = config_with_default_listeners();
    config.limits.query_timeout_ms = 30_000;
    let mut listener = ListenerConfig::new(Transport::Doh, "127.0.0.1:0".parse().unwrap());
    listener.plain_http = true;
    config.listeners.push(listener);
    let server = signpost_server::Server::builder()
        .config(config)
        .rules(rules("default_group = \"upstream\"", &["upstream"]))
        .upstreams(upstreams(vec![group]))
        .start()
        .await
        .unwrap();
    let address = server.doh_addrs()[0];
    // Five different names, so that no two share one upstream query.
    for index in 0..5 {
        let dns = query(&format!("q{index}.silent.test"), RecordType::A);
        let mut request = format!(
            "POST /dns-query HTTP/1.1\r\nHost: x\r\nContent-Type: application/dns-message\r\nContent-Length: {}\r\n\r\n",
            dns.len()
        )
        .into_bytes();
        request.extend_from_slice(&dns);
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(&request).await.unwrap();
        // The client's timeout: no answer comes, so it hangs up.
        let mut buffer = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buffer)).await;
        assert!(read.is_err(), "the silent upstream cannot have answered: {read:?}");
    }
    for _ in 0..100 {
        if upstream.query_count() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(upstream.query_count(), 5, "every query was being forwarded when its client left");
    let started = std::time::Instant::now();
    server.shutdown().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "shutdown waited {took:?} for queries nobody is waiting for");
}
