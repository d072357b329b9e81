//! DNS over TLS and DNS over HTTPS against fake servers with a private CA.

use std::time::Duration;

use signpost_upstream::{AttemptOutcome, DohMethod, GroupConfig, Protocol, ServerConfig};
use signpost_wire::{Message, Rcode};

use crate::fake::{self, Behaviour, GENUINE, Pki, first_address, query};

fn tls_group(pki: &Pki, servers: Vec<ServerConfig>) -> GroupConfig {
    let mut group = fake::group(servers);
    group.tls = pki.client();
    group
}

/// Upstreams asking the DoT server at `address` by the name `dns.test`.
fn dot_upstreams(pki: &Pki, address: std::net::SocketAddr) -> signpost_upstream::Upstreams {
    fake::upstreams(tls_group(pki, vec![ServerConfig::tls(address, "dns.test")]))
}

/// A DoH fake offering `alpn` and behaving as `behaviours`, with a
/// certificate of a new PKI, and upstreams trusting that PKI asking it.
async fn doh_fake(
    alpn: &[&[u8]],
    behaviours: impl IntoIterator<Item = Behaviour>,
) -> (Pki, fake::FakeUpstream, signpost_upstream::Upstreams) {
    let pki = Pki::new();
    let server = fake::doh(pki.server(alpn), behaviours).await;
    let upstreams = doh_upstreams(&pki, server.doh_addr());
    (pki, server, upstreams)
}

/// Upstreams asking the DoH server at `address` by the name `dns.test`.
fn doh_upstreams(pki: &Pki, address: std::net::SocketAddr) -> signpost_upstream::Upstreams {
    fake::upstreams(tls_group(pki, vec![ServerConfig::https(address, "dns.test")]))
}

fn chacha_only() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(|suite| format!("{:?}", suite.suite()).contains("CHACHA20"));
    provider
}

#[tokio::test]
async fn dot_answers_when_the_certificate_names_the_server() {
    let pki = Pki::new();
    let server = fake::dot(pki.server(&[b"dot"]), []).await;
    let upstreams = dot_upstreams(&pki, server.dot_addr());
    for _ in 0..3 {
        let resolved = fake::resolve(&upstreams).await.unwrap();
        assert_eq!(resolved.protocol, Protocol::Tls);
        assert_eq!(first_address(&resolved.response), Some(GENUINE));
    }
    assert_eq!(server.connection_count(), 1, "one TLS connection, reused");
}

#[tokio::test]
async fn dot_without_a_name_checks_the_ip_address() {
    let pki = Pki::new();
    let server = fake::dot(pki.server(&[b"dot"]), []).await;
    let config = ServerConfig::new(server.dot_addr(), Protocol::Tls);
    let upstreams = fake::upstreams(tls_group(&pki, vec![config]));
    fake::resolve(&upstreams).await.unwrap();
}

#[tokio::test]
async fn dot_refuses_a_certificate_for_another_name() {
    let pki = Pki::new();
    let server = fake::dot(pki.server(&[b"dot"]), []).await;
    let upstreams = fake::upstreams(tls_group(&pki, vec![ServerConfig::tls(server.dot_addr(), "other.test")]));
    let error = fake::resolve(&upstreams).await.unwrap_err();
    assert!(error.is_unreachable(), "{error}");
    assert!(error.to_string().contains("certificate"), "{error}");
    assert_eq!(server.query_count(), 0);
}

#[tokio::test]
async fn dot_refuses_a_certificate_from_an_unknown_ca() {
    let pki = Pki::new();
    let stranger = Pki::new();
    let server = fake::dot(stranger.server(&[b"dot"]), []).await;
    let error = fake::resolve(&dot_upstreams(&pki, server.dot_addr())).await.unwrap_err();
    assert!(error.to_string().contains("TLS handshake failed"), "{error}");
}

#[tokio::test]
async fn fips_mode_refuses_servers_without_approved_suites() {
    let pki = Pki::new();
    let chacha = fake::dot(pki.server_with(chacha_only(), &[b"dot"]), []).await;
    let normal = fake::dot(pki.server(&[b"dot"]), []).await;

    let plain = dot_upstreams(&pki, chacha.dot_addr());
    fake::resolve(&plain).await.unwrap();

    let mut fips = tls_group(&pki, vec![ServerConfig::tls(chacha.dot_addr(), "dns.test")]);
    fips.tls.fips = true;
    let upstreams = fake::upstreams(fips.clone());
    let error = fake::resolve(&upstreams).await.unwrap_err();
    assert!(error.is_unreachable(), "{error}");

    fips.servers = vec![ServerConfig::tls(normal.dot_addr(), "dns.test")];
    let upstreams = fake::upstreams(fips);
    fake::resolve(&upstreams).await.unwrap();
}

#[tokio::test]
async fn doh_posts_over_one_http2_connection_with_id_zero() {
    let (_pki, server, upstreams) = doh_fake(&[b"h2", b"http/1.1"], []).await;
    let group = upstreams.group("test").unwrap();
    let results = futures_util::future::join_all(
        (0..20).map(|i| async move { group.resolve(&query(&format!("n{i}.example"))).await }),
    )
    .await;
    for result in results {
        let resolved = result.unwrap();
        assert_eq!(resolved.protocol, Protocol::Https);
        assert_eq!(Message::parse(&resolved.response).unwrap().id(), 0);
        assert_eq!(first_address(&resolved.response), Some(GENUINE));
    }
    assert_eq!(server.connection_count(), 1, "HTTP/2 multiplexes every query on one connection");
    let requests = server.http_requests();
    assert_eq!(requests.len(), 20);
    assert!(requests.iter().all(|request| request.method == "POST" && request.version == "HTTP/2.0"), "{requests:?}");
    assert!(server.queries().iter().all(|query| query.id == 0));
}

#[tokio::test]
async fn doh_get_sends_the_query_in_the_uri() {
    let pki = Pki::new();
    let server = fake::doh(pki.server(&[b"h2"]), []).await;
    let mut config = ServerConfig::https(server.doh_addr(), "dns.test");
    config.doh_method = DohMethod::Get;
    config.doh_path = "/dns-query{?dns}".into();
    let upstreams = fake::upstreams(tls_group(&pki, vec![config]));
    let resolved = fake::resolve(&upstreams).await.unwrap();
    assert_eq!(first_address(&resolved.response), Some(GENUINE));
    assert_eq!(server.http_requests()[0].method, "GET");
}

#[tokio::test]
async fn doh_falls_back_to_http1_and_reuses_the_connection() {
    let (_pki, server, upstreams) = doh_fake(&[b"http/1.1"], []).await;
    for _ in 0..3 {
        fake::resolve(&upstreams).await.unwrap();
    }
    let requests = server.http_requests();
    assert!(requests.iter().all(|request| request.version == "HTTP/1.1"), "{requests:?}");
    assert_eq!(server.connection_count(), 1);
    // Concurrent queries open more HTTP/1.1 connections rather than waiting in line.
    let results = futures_util::future::join_all((0..4).map(|_| async { fake::resolve(&upstreams).await })).await;
    assert!(results.iter().all(Result::is_ok));
}

#[tokio::test]
async fn an_http_500_is_a_clear_error_and_the_next_server_is_tried() {
    let pki = Pki::new();
    let broken = fake::doh(pki.server(&[b"h2"]), [Behaviour::HttpStatus(500)]).await;
    let good = fake::doh(pki.server(&[b"h2"]), []).await;
    let servers =
        vec![ServerConfig::https(broken.doh_addr(), "dns.test"), ServerConfig::https(good.doh_addr(), "dns.test")];
    let upstreams = fake::upstreams(tls_group(&pki, servers));
    let resolved = fake::resolve(&upstreams).await.unwrap();
    assert_eq!(resolved.server, good.doh_addr());
    assert_eq!(resolved.attempts[0].outcome, AttemptOutcome::Failed("HTTP status 500 Internal Server Error".into()));

    let error = fake::resolve(&doh_upstreams(&pki, broken.doh_addr())).await.unwrap_err();
    assert!(error.to_string().contains("HTTP status 500"), "{error}");
}

#[tokio::test]
async fn a_slow_doh_server_times_out() {
    let (_pki, _server, upstreams) = doh_fake(&[b"h2"], [Behaviour::Delay(Duration::from_secs(5))]).await;
    let error = fake::resolve(&upstreams).await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
}

#[tokio::test]
async fn doh_servfail_moves_on_only_when_asked() {
    let pki = Pki::new();
    let failing = fake::start(fake::failing(Rcode::SERVFAIL).doh(pki.server(&[b"h2"])), []).await;
    let good = fake::doh(pki.server(&[b"h2"]), []).await;
    let servers =
        vec![ServerConfig::https(failing.doh_addr(), "dns.test"), ServerConfig::https(good.doh_addr(), "dns.test")];
    let mut config = tls_group(&pki, servers);
    config.retry_on.servfail = true;
    let upstreams = fake::upstreams(config);
    let resolved = fake::resolve(&upstreams).await.unwrap();
    assert_eq!(resolved.server, good.doh_addr());
    assert_eq!(resolved.attempts[0].outcome, AttemptOutcome::Rejected(Rcode::SERVFAIL));
}

#[tokio::test]
async fn a_wrong_question_over_doh_is_refused() {
    let (_pki, _server, upstreams) = doh_fake(&[b"h2"], [Behaviour::OtherQuestion { then_genuine: false }]).await;
    let error = fake::resolve(&upstreams).await.unwrap_err();
    assert!(error.to_string().contains("another question"), "{error}");
}
