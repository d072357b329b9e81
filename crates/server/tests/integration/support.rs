//! Server set-up shared by the tests; fake upstreams, clients and
//! certificates come from signpost-testkit.

use std::net::SocketAddr;
use std::time::Duration;

use signpost_rules::RuleSet;
use signpost_rules::config::RulesConfig;
use signpost_server::{ListenerConfig, Server, ServerBuilder, ServerConfig, ServerHandle, TestLayer};
use signpost_testkit::Behaviour;
pub(crate) use signpost_testkit::{
    ASK_TIMEOUT, Answer, FakeUpstream, Query, ResolverBuilder, TempDir, TestCertificates, Transport, answers,
    file_lines, query, read_frame, resolver, tcp_exchange, udp_exchange, write_frame,
};
pub(crate) use signpost_testkit::{tcp_address as tcp, udp_address as udp};
use signpost_upstream::{GroupConfig, ServerConfig as UpstreamServer, Upstreams};

/// A group `name` asking `servers` over UDP, with deadlines short enough for tests.
pub(crate) fn group(name: &str, servers: &[SocketAddr]) -> GroupConfig {
    let mut group: GroupConfig = toml::from_str(&format!("name = \"{name}\"\nservers = []")).unwrap();
    group.servers = servers.iter().map(|address| UpstreamServer::udp(*address)).collect();
    group.per_try_timeout = Duration::from_millis(500);
    group.total_timeout = Duration::from_millis(1000);
    group
}

/// A group `name` asking the fake `upstream`.
pub(crate) fn group_of(name: &str, upstream: &FakeUpstream) -> GroupConfig {
    group(name, &[upstream.address()])
}

/// An upstream answering every A question with `address` (TTL 60) after `delay`.
pub(crate) async fn slow_upstream(address: std::net::Ipv4Addr, delay: Duration) -> FakeUpstream {
    FakeUpstream::builder()
        .otherwise(Answer::addresses([address.into()], 60))
        .behaviour(Behaviour::Delay(delay))
        .start()
        .await
        .unwrap()
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

/// UDP and TCP listeners on 127.0.0.1:0 (same port) and one UDP worker.
pub(crate) fn config_with_default_listeners() -> ServerConfig {
    let mut config = ServerConfig::default();
    let mut udp = ListenerConfig::new(Transport::Udp, "127.0.0.1:0".parse().unwrap());
    udp.workers = Some(1);
    config.listeners.push(udp);
    config.listeners.push(ListenerConfig::new(Transport::Tcp, "127.0.0.1:0".parse().unwrap()));
    config
}

/// A server with the default listeners and the [`LOCAL_TEST`] rules, no
/// upstream, and its config changed by `change` first.
pub(crate) async fn local_test_server(change: impl FnOnce(&mut ServerConfig)) -> ServerHandle {
    let mut config = config_with_default_listeners();
    change(&mut config);
    start_with(config, LOCAL_TEST, None).await
}

/// Names under local.test answered with 127.0.0.1 (AAAA: NODATA); the rest go to group "upstream".
pub(crate) const LOCAL_TEST: &str = r#"default_group = "upstream"
rules = [{ suffix = "local.test", action = "redirect", ipv4 = "127.0.0.1", ipv6 = "none" }]"#;

/// Names under amazonaws.com answered with 127.0.0.1 (AAAA: NODATA); the rest go to group "upstream".
pub(crate) const AWS_REDIRECT: &str = r#"default_group = "upstream"
rules = [{ suffix = "amazonaws.com", action = "redirect", ipv4 = "127.0.0.1", ipv6 = "none" }]"#;

/// Everything goes to group "upstream".
pub(crate) const FORWARD_ALL: &str = r#"default_group = "upstream""#;

/// A server with `config` and the rules `toml`, whose group "upstream"
/// asks `upstream` (or nobody).
pub(crate) async fn start_with(config: ServerConfig, toml: &str, upstream: Option<&FakeUpstream>) -> ServerHandle {
    start_server({
        let builder = Server::builder().config(config.clone()).rules(rules(toml, &["upstream"]));
        match upstream {
            Some(upstream) => builder.upstreams(upstreams(vec![group_of("upstream", upstream)])),
            None => builder,
        }
    })
    .await
}

/// Start `builder`'s server. Port-0 listeners need no retry here: the
/// server binds a UDP and TCP pair on a port free for both.
pub(crate) async fn start_server(builder: ServerBuilder) -> ServerHandle {
    builder.start().await.unwrap()
}

/// A server with `config` forwarding every name to `group` (named "upstream").
pub(crate) async fn start_forwarding(config: ServerConfig, group: GroupConfig) -> ServerHandle {
    start_server({
        Server::builder()
            .config(config.clone())
            .rules(rules(FORWARD_ALL, &["upstream"]))
            .upstreams(upstreams(vec![group.clone()]))
    })
    .await
}

/// [`start`], with `layer` (faults, recording) between the listeners and the pipeline.
pub(crate) async fn start_layered(toml: &str, upstream: Option<&FakeUpstream>, layer: &TestLayer) -> ServerHandle {
    start_server({
        let builder = builder().rules(rules(toml, &["upstream"])).test_layer(layer.clone());
        match upstream {
            Some(upstream) => builder.upstreams(upstreams(vec![group_of("upstream", upstream)])),
            None => builder,
        }
    })
    .await
}

/// [`start_with`] the default listeners.
pub(crate) async fn start(toml: &str, upstream: Option<&FakeUpstream>) -> ServerHandle {
    start_with(config_with_default_listeners(), toml, upstream).await
}

/// A builder with [`config_with_default_listeners`].
pub(crate) fn builder() -> ServerBuilder {
    Server::builder().config(config_with_default_listeners())
}

/// A DoT or DoH listener on 127.0.0.1:0 presenting the test certificates.
pub(crate) fn tls_listener(transport: Transport, certificates: &TestCertificates, dir: &TempDir) -> ListenerConfig {
    let files = certificates.write_to(dir.path()).unwrap();
    let mut listener = ListenerConfig::new(transport, "127.0.0.1:0".parse().unwrap());
    listener.tls_cert = Some(files.cert);
    listener.tls_key = Some(files.key);
    listener
}

/// A query with an OPT record of these settings.
pub(crate) fn edns_query(name: &str, qtype: signpost_wire::RecordType, edns: signpost_wire::EdnsHeader) -> Vec<u8> {
    Query::new(name, qtype).edns(edns).to_bytes()
}

/// One framed query over a new TCP connection and its framed answer.
pub(crate) async fn tcp_answer(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    tcp_exchange(server, bytes, ASK_TIMEOUT).await.expect("an answer over TCP")
}

/// Whether the server closes (or resets) `stream` within `wait`: a read
/// that ends with end-of-file or an error.
pub(crate) async fn closed_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 64];
    matches!(tokio::time::timeout(wait, stream.read(&mut buffer)).await, Ok(Ok(0) | Err(_)))
}
