//! The redirect proxy in-process and as a child process, and an HTTP client
//! for its admin listener; fake upstreams and clients come from
//! signpost-testkit. Everything is on loopback; no test ever asks the
//! machine's own resolver.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use signpost_redirect::{RedirectServer, RedirectServerBuilder, RedirectSettings};
use signpost_server::{AdminConfig, ServerConfig};
pub(crate) use signpost_testkit::{
    ASK_TIMEOUT, Answer, Binary, FakeUpstream, Finished, Query, ResolverAnswer, RunningBinary, Signal, TempDir,
    TokioResolver, Transport, answers, authority_types, eventually, exchange, lookup, query, resolver,
    udp_exchange_from,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What hickory gets when the answer has these data (addresses as text).
pub(crate) fn answered(data: &[&str]) -> ResolverAnswer {
    ResolverAnswer::data(data.iter().copied())
}

/// An upstream answering every question with `count` TXT records of 100
/// octets: over UDP the answer does not fit, so it comes back cut to the
/// header and question with TC set, as real servers do; over TCP it is whole.
pub(crate) async fn big_upstream(count: usize) -> FakeUpstream {
    let records: Vec<String> =
        (0..count).map(|index| format!("@ 300 IN TXT \"record {index:03}: {}\"", "x".repeat(88))).collect();
    FakeUpstream::builder().otherwise(Answer::records(records.iter().map(String::as_str))).start().await.unwrap()
}

/// Settings for a test: 127.0.0.1 on a free port, one UDP worker, short
/// upstream deadlines, and no system resolv.conf (a path that does not exist).
pub(crate) fn settings(upstream: Option<&FakeUpstream>) -> RedirectSettings {
    let mut settings = RedirectSettings::default();
    // Loopback only (the default, 0.0.0.0, is LocalStack's).
    settings.set("DNS_ADDRESS", "127.0.0.1").unwrap();
    settings.set("DNS_PORT", "0").unwrap();
    settings.workers = Some(1);
    settings.upstream_timeout = Duration::from_millis(500);
    settings.upstream_total_timeout = Duration::from_millis(1000);
    settings.resolv_conf = PathBuf::from("/nonexistent/signpost-test/resolv.conf");
    settings.systemd_resolv_conf = PathBuf::from("/nonexistent/signpost-test/systemd-resolv.conf");
    if let Some(upstream) = upstream {
        settings.set("DNS_SERVER", &upstream.address().to_string()).unwrap();
    }
    settings
}

/// What the fake upstream of [`with_upstream`] answers every forwarded A question with.
pub(crate) const FORWARDED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);

/// A server forwarding to a fake upstream answering [`FORWARDED`], with the
/// test's LocalStack `variables` set on top of the [`settings`]; the
/// upstream, to ask what it saw.
pub(crate) async fn with_upstream(variables: &[(&str, &str)]) -> (RedirectServer, FakeUpstream) {
    let upstream = FakeUpstream::answering(FORWARDED).await;
    let mut settings = settings(Some(&upstream));
    for (name, value) in variables {
        settings.set(name, value).unwrap_or_else(|error| panic!("{name}={value}: {error}"));
    }
    (start(settings).await, upstream)
}

/// Start on free ports (port 0: the server finds one free for UDP and TCP).
pub(crate) async fn start(settings: RedirectSettings) -> RedirectServer {
    start_with(RedirectServer::builder(settings)).await
}

pub(crate) async fn start_with(builder: RedirectServerBuilder) -> RedirectServer {
    builder.start().await.unwrap_or_else(|error| panic!("{error}"))
}

/// Both transports of a server, for loops over UDP and TCP.
pub(crate) fn transports(server: &RedirectServer) -> [(Transport, SocketAddr); 2] {
    [(Transport::Udp, server.udp_addrs()[0]), (Transport::Tcp, server.tcp_addrs()[0])]
}

/// A hickory resolver for each transport of a server, for loops over UDP and TCP.
pub(crate) fn resolvers(server: &RedirectServer) -> [(Transport, TokioResolver); 2] {
    transports(server).map(|(protocol, address)| (protocol, resolver(protocol, address)))
}

/// One query over `transport` and its answer.
pub(crate) async fn answer_over(transport: Transport, server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    exchange(transport, server, bytes, ASK_TIMEOUT).await.unwrap_or_else(|| panic!("no answer over {transport:?}"))
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

/// [`http`] that must come back with `status`: the body.
pub(crate) async fn http_expecting(address: SocketAddr, method: &str, path: &str, body: &str, status: u16) -> String {
    let (got, reply) = http(address, method, path, body).await;
    assert_eq!(got, status, "{method} {path} {body}: {reply}");
    reply
}

/// What every test's binary gets unless the test says otherwise: loopback
/// only (the default, 0.0.0.0, is LocalStack's), and a resolv.conf that does
/// not exist, so nothing ever asks this machine's resolver.
pub(crate) const SAFE_DEFAULTS: [(&str, &str); 2] =
    [("DNS_ADDRESS", "127.0.0.1"), ("SIGNPOST_RESOLV_CONF", "/nonexistent/signpost-test/resolv.conf")];

/// The binary with a clean environment: [`SAFE_DEFAULTS`], then what the test gives.
pub(crate) fn redirect(env: &[(&str, &str)], args: &[&str]) -> Binary {
    let mut all = SAFE_DEFAULTS.to_vec();
    all.extend_from_slice(env);
    redirect_with_exactly(&all, args)
}

/// The binary with only `env` (and RUST_LOG): for the defaults themselves.
pub(crate) fn redirect_with_exactly(env: &[(&str, &str)], args: &[&str]) -> Binary {
    Binary::new(env!("CARGO_BIN_EXE_signpost-redirect"))
        .env_clear()
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .args(args)
        // The start-up block ends with the query-log line.
        .ready_when(|line| line.starts_with("Query log"))
}

/// Run the binary to the end (at most 30 s).
pub(crate) async fn run(env: &[(&str, &str)], args: &[&str]) -> Finished {
    redirect(env, args).output(Duration::from_secs(30)).await.unwrap_or_else(|error| panic!("{error}"))
}

/// Start the binary and read its DNS address from the start-up lines.
pub(crate) async fn start_binary(env: &[(&str, &str)], args: &[&str]) -> (RunningBinary, SocketAddr) {
    let running = redirect(env, args).start().await.unwrap_or_else(|error| panic!("{error}"));
    let address = *running.addresses(parse_startup).first().expect("a start-up line with the address");
    (running, address)
}

/// SIGTERM, then wait: its exit status and output.
pub(crate) async fn terminate(running: RunningBinary) -> Finished {
    running.terminate(Duration::from_secs(10)).await.unwrap_or_else(|error| panic!("{error}"))
}

/// `Starting DNS servers (tcp/udp port 40123 on 127.0.0.1)...` → 127.0.0.1:40123.
pub(crate) fn parse_startup(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix("Starting DNS servers (tcp/udp port ")?.strip_suffix(")...")?;
    let (port, address) = rest.split_once(" on ")?;
    Some(SocketAddr::new(address.parse().ok()?, port.parse().ok()?))
}

/// A redirect proxy on a free port, forwarding to a fake upstream answering
/// [`FORWARDED`], with the admin listener on another: the server, the admin
/// listener's address and the upstream.
pub(crate) async fn admin_server() -> (RedirectServer, SocketAddr, FakeUpstream) {
    let upstream = FakeUpstream::answering(FORWARDED).await;
    let config = ServerConfig {
        admin: Some(AdminConfig { address: "127.0.0.1:0".parse().unwrap() }),
        ..ServerConfig::default()
    };
    let server = start_with(RedirectServer::builder(settings(Some(&upstream))).server_config(config)).await;
    let admin = server.handle().admin_addr().unwrap();
    (server, admin, upstream)
}
