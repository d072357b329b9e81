//! The forwarder in-process on 127.0.0.1:0 and as a child process, and
//! short ways to ask it; fake upstreams, clients and the process harness
//! come from signpost-testkit.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use signpost_forward::{BuildOptions, ForwarderConfig};
use signpost_server::{Server, ServerHandle};
pub(crate) use signpost_testkit::udp_address as udp;
pub(crate) use signpost_testkit::{
    Answer, Binary, FakeUpstream, Finished, RunningBinary, Signal, TempDir, Transport, ask, ask_from, closed_udp_port,
    eventually,
};
use signpost_testkit::{lookup_with_ttls, resolver};
use signpost_wire::RecordType;

/// How long the binary gets for a clean exit, and a reload for its log line.
pub(crate) const PATIENCE: Duration = Duration::from_secs(5);

/// A forwarder built from TOML and started in-process. The text gets a UDP
/// and a TCP listener on 127.0.0.1:0 (one worker) in front of it.
pub(crate) async fn start(toml: &str) -> ServerHandle {
    start_in(toml, Path::new(".")).await
}

pub(crate) async fn start_in(toml: &str, base_dir: &Path) -> ServerHandle {
    let text = format!("{toml}\n{LISTENERS}");
    let config = ForwarderConfig::from_toml(&text, "test.toml").unwrap_or_else(|error| panic!("{error}"));
    // Never the system's resolv.conf: a configuration without a default gets one that leads nowhere.
    let dir = TempDir::new();
    let options = BuildOptions {
        base_dir: base_dir.to_path_buf(),
        resolv_conf: Some(dir.write("resolv.conf", "nameserver 127.0.0.254\n")),
        save_allocations: true,
        ..BuildOptions::default()
    };
    let forwarder = config.build(&options).unwrap_or_else(|error| panic!("{error}"));
    let server_config = forwarder.server.clone();
    Server::builder()
        .config(server_config)
        .state(forwarder.into_state())
        .start()
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

/// UDP and TCP listeners on one free loopback port, one UDP worker.
pub(crate) const LISTENERS: &str = r#"
[[listeners]]
address = "127.0.0.1"
port = 0
transport = "udp"
workers = 1

[[listeners]]
address = "127.0.0.1"
port = 0
transport = "tcp"
"#;

/// The forward zone `.` (the default), asking `upstream`.
pub(crate) fn default_zone(upstream: &FakeUpstream) -> String {
    format!("[[forward_zones]]\nname = \".\"\nservers = [\"{}\"]\n", upstream.address())
}

/// The answer records of `name` `qtype` as (TTL, data), asked with hickory over UDP.
pub(crate) async fn records(server: SocketAddr, name: &str, qtype: RecordType) -> Vec<(u32, String)> {
    lookup_with_ttls(&resolver(Transport::Udp, server), name, qtype).await
}

/// The answer data of `name` A, asked with hickory over UDP.
pub(crate) async fn addresses(server: SocketAddr, name: &str) -> Vec<String> {
    records(server, name, RecordType::A).await.into_iter().map(|(_, data)| data).collect()
}

/// signpost-forward with `args`, ready once it prints "ready".
pub(crate) fn forward(args: &[&str]) -> Binary {
    Binary::new(env!("CARGO_BIN_EXE_signpost-forward"))
        .args(args)
        .env("RUST_LOG", "info")
        .ready_when(|line| line == "ready")
}

/// Start the binary with `args` and read its first UDP address.
pub(crate) async fn start_binary(args: &[&str]) -> (RunningBinary, SocketAddr) {
    let running = forward(args).start().await.unwrap_or_else(|error| panic!("{error}"));
    let udp = running.addresses(|line| line.strip_prefix("listening on udp ")?.parse().ok());
    let first = *udp.first().unwrap_or_else(|| panic!("no UDP listener printed: {:?}", running.stdout_lines()));
    (running, first)
}

/// Run the binary to the end (check-config, start-up failures).
pub(crate) async fn run_to_end(args: &[&str]) -> Finished {
    forward(args).output(Duration::from_secs(30)).await.unwrap_or_else(|error| panic!("{error}"))
}

/// SIGTERM; whether it exited cleanly.
pub(crate) async fn stop(running: RunningBinary) -> bool {
    running.terminate(PATIENCE).await.unwrap_or_else(|error| panic!("{error}")).status.success()
}
