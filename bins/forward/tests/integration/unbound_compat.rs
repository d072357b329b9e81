//! Unbound features beyond plain forwarding, through the binary: the
//! whitepaper's unbound.conf, stub zones, views and access-control actions
//! by client address, and the remote-control protocol.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use signpost_wire::{Rcode, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

fn at(upstream: &FakeUpstream) -> String {
    upstream.address().to_string().replace(':', "@")
}

/// The binary on `text` as `unbound.conf` in `dir` (beside the files it
/// includes): the child and its UDP address.
async fn start_unbound(dir: &TempDir, text: impl AsRef<[u8]>) -> (RunningBinary, SocketAddr) {
    let config = dir.write("unbound.conf", text);
    start_binary(&["--unbound-conf", &config.to_string_lossy()]).await
}

/// An unbound.conf listening on a free loopback port and forwarding every
/// name to `root`, with `more` in between: indented lines go on in the
/// `server:` clause, unindented ones start clauses of their own.
fn unbound_conf(root: &FakeUpstream, more: &str) -> String {
    format!(
        "server:\n  interface: 127.0.0.1@0\n  do-not-query-localhost: no\n  do-ip6: no\n{more}forward-zone:\n  name: \".\"\n  forward-addr: {}\n",
        at(root)
    )
}

/// A root upstream answering 192.0.2.80, and the binary on
/// [`unbound_conf`] with `more` in `dir`: the root, the child and its UDP
/// address.
async fn start_with_root(dir: &TempDir, more: &str) -> (FakeUpstream, RunningBinary, SocketAddr) {
    let root = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 80)).await;
    let (child, address) = start_unbound(dir, unbound_conf(&root, more)).await;
    (root, child, address)
}

/// The sample unbound.conf of AWS's "Hybrid Cloud DNS Options for Amazon
/// VPC" ("Conditional Forwarder – Unbound"), as printed there, with the
/// forwarders' addresses (blank in the reference copy) filled in, and the
/// "Unbound – Additional Options" advice on top: two forwarders per zone
/// for resiliency and `forward-first: yes`.
fn whitepaper(amazon: [&FakeUpstream; 2], on_premises: [SocketAddr; 2]) -> String {
    format!(
        "forward-zone:\nname: \".\"\nforward-addr: {} # Amazon Provided DNS\nforward-addr: {} # Amazon Provided DNS\n\
         forward-zone:\nname: \"example.corp\"\nforward-addr: {} # On-premises DNS\nforward-addr: {} # On-premises DNS\n\
         forward-first: yes\n",
        at(amazon[0]),
        at(amazon[1]),
        on_premises[0].to_string().replace(':', "@"),
        on_premises[1].to_string().replace(':', "@"),
    )
}

#[tokio::test]
async fn the_whitepapers_unbound_conf_runs_unchanged() {
    let amazon = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 2)).await;
    let amazon_second = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 3)).await;
    let on_premises = FakeUpstream::answering(Ipv4Addr::new(10, 0, 0, 10)).await;
    let dir = TempDir::new();
    // The whitepaper's text in its own file, included from a server: clause
    // that only moves the listener off port 53.
    dir.write("whitepaper.conf", whitepaper([&amazon, &amazon_second], [on_premises.address(), closed_udp_port()]));
    let (child, address) = start_unbound(
        &dir,
        "server:\n  interface: 127.0.0.1@0\n  do-ip6: no\n  do-not-query-localhost: no\ninclude: whitepaper.conf\n",
    )
    .await;
    assert_eq!(addresses(address, "db.example.corp.").await, ["10.0.0.10"]);
    let public = addresses(address, "www.example.org.").await;
    assert!(public == ["192.0.2.2"] || public == ["192.0.2.3"], "{public:?}");
    assert_eq!(on_premises.names(), ["db.example.corp."]);
    assert!(!amazon.was_asked("db.example.corp.") && !amazon_second.was_asked("db.example.corp."));
    assert!(stop(child).await);
}

#[tokio::test]
async fn forward_first_in_the_whitepapers_setup_falls_back_when_on_premises_is_down() {
    let amazon = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 2)).await;
    let dir = TempDir::new();
    dir.write("whitepaper.conf", whitepaper([&amazon, &amazon], [closed_udp_port(), closed_udp_port()]));
    let (child, address) = start_unbound(
        &dir,
        "server:\n  interface: 127.0.0.1@0\n  do-not-query-localhost: no\n  do-ip6: no\ninclude: whitepaper.conf\n",
    )
    .await;
    assert_eq!(addresses(address, "db.example.corp.").await, ["192.0.2.2"]);
    assert!(stop(child).await);
}

#[tokio::test]
async fn a_stub_zone_asks_its_server_without_recursion_desired() {
    let authoritative = FakeUpstream::builder()
        .otherwise(Answer::address(IpAddr::V4(Ipv4Addr::new(10, 5, 0, 1))).authoritative())
        .start()
        .await
        .unwrap();
    let dir = TempDir::new();
    let stub =
        format!("stub-zone:\n  name: \"corp.example\"\n  stub-addr: {}\n  stub-no-cache: yes\n", at(&authoritative));
    let (root, child, address) = start_with_root(&dir, &stub).await;
    for _ in 0..2 {
        assert_eq!(addresses(address, "db.corp.example.").await, ["10.5.0.1"]);
    }
    let seen = authoritative.queries();
    assert_eq!(seen.len(), 2, "stub-no-cache: every question goes to the server");
    assert!(seen.iter().all(|query| !query.flags.rd()), "a stub zone's queries must not ask for recursion");
    assert_eq!(addresses(address, "www.example.org.").await, ["192.0.2.80"]);
    assert!(root.queries().iter().all(|query| query.flags.rd()));
    assert!(stop(child).await);
}

#[tokio::test]
async fn views_and_access_control_actions_follow_the_client_address() {
    let dir = TempDir::new();
    let (_root, child, address) = start_with_root(
        &dir,
        "  access-control: 127.0.0.0/8 allow\n  access-control: 127.0.0.5 deny\n  access-control: 127.0.0.6 refuse_non_local\n  access-control-view: 127.0.0.2 lab\n  local-zone: \"test.\" nodefault\n  local-zone: \"g.test.\" static\n  local-data: \"www.g.test. A 10.1.0.1\"\n  local-zone: \"d.test.\" always_deny\nview:\n  name: lab\n  view-first: yes\n  local-zone: \"v.test.\" static\n  local-data: \"www.v.test. A 10.2.0.1\"\n",
    )
    .await;
    let from = |last: u8| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
    let answer = |source: u8, name: &'static str| async move {
        ask_from(from(source), address, name, RecordType::A)
            .await
            .map(|(rcode, records)| if rcode == Rcode::NOERROR { records.join(" ") } else { rcode.to_string() })
    };
    assert_eq!(answer(1, "www.g.test.").await.as_deref(), Some("www.g.test. 3600 IN A 10.1.0.1"));
    assert_eq!(answer(1, "www.v.test.").await.as_deref(), Some("www.v.test. 300 IN A 192.0.2.80"));
    assert_eq!(answer(2, "www.v.test.").await.as_deref(), Some("www.v.test. 3600 IN A 10.2.0.1"));
    assert_eq!(answer(2, "www.g.test.").await.as_deref(), Some("www.g.test. 3600 IN A 10.1.0.1"));
    assert_eq!(answer(1, "x.d.test.").await, None, "always_deny drops");
    assert_eq!(answer(5, "www.g.test.").await, None, "access-control deny drops");
    assert_eq!(answer(6, "www.g.test.").await.as_deref(), Some("www.g.test. 3600 IN A 10.1.0.1"));
    assert_eq!(answer(6, "www.example.org.").await.as_deref(), Some("REFUSED"));
    assert!(stop(child).await);
}

/// One remote-control exchange as unbound-control makes it.
async fn control(socket: &Path, command: &str, data: &[&str]) -> String {
    let mut stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let mut request = format!("UBCT1  {command}\n");
    if !data.is_empty() {
        for line in data {
            request.push_str(line);
            request.push('\n');
        }
        request.push_str("\u{4}\n");
    }
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn the_remote_control_socket_changes_local_data_and_forward_zones() {
    let root = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 80)).await;
    let corp = FakeUpstream::answering(Ipv4Addr::new(10, 9, 0, 1)).await;
    let dir = TempDir::new();
    let socket = dir.join("control.sock");
    let (child, address) = start_unbound(
        &dir,
        format!(
            "server:\n  interface: 127.0.0.1@0\n  do-not-query-localhost: no\n  do-ip6: no\nremote-control:\n  control-enable: yes\n  control-interface: \"{}\"\nforward-zone:\n  name: \".\"\n  forward-addr: {}\n",
            socket.display(),
            at(&root)
        ),
    )
    .await;
    assert!(control(&socket, "status", &[]).await.contains("is running"));
    assert_eq!(control(&socket, "local_data new.example. 60 IN A 10.7.0.1", &[]).await, "ok\n");
    assert_eq!(addresses(address, "new.example.").await, ["10.7.0.1"]);
    assert_eq!(control(&socket, "local_datas", &["a.example. A 10.7.0.2", "b.example. A 10.7.0.3"]).await, "ok\n");
    assert_eq!(addresses(address, "b.example.").await, ["10.7.0.3"]);
    assert_eq!(control(&socket, "local_data_remove new.example.", &[]).await, "ok\n");
    assert_eq!(addresses(address, "new.example.").await, ["192.0.2.80"]);
    assert_eq!(control(&socket, "local_zone blocked.example. always_nxdomain", &[]).await, "ok\n");
    assert_eq!(ask(address, "x.blocked.example", RecordType::A).await.map(|(rcode, _)| rcode), Some(Rcode::NXDOMAIN));
    assert_eq!(control(&socket, &format!("forward_add +i corp.example. {}", at(&corp)), &[]).await, "ok\n");
    assert_eq!(addresses(address, "db.corp.example.").await, ["10.9.0.1"]);
    assert_eq!(control(&socket, "forward_remove corp.example.", &[]).await, "ok\n");
    assert_eq!(control(&socket, "flush_zone corp.example.", &[]).await, "ok\n");
    assert_eq!(addresses(address, "db.corp.example.").await, ["192.0.2.80"]);
    assert!(control(&socket, "stats_noreset", &[]).await.contains("total.num.queries="));
    assert!(control(&socket, "frobnicate", &[]).await.starts_with("error unknown command"));
    assert_eq!(control(&socket, "reload", &[]).await, "ok\n");
    assert_eq!(ask(address, "x.blocked.example", RecordType::A).await.map(|(rcode, _)| rcode), Some(Rcode::NOERROR));
    assert!(stop(child).await);
}

/// Run Debian's `unbound-control` with `config`: its exit status and stdout.
async fn unbound_control(config: &Path, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new("unbound-control")
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|error| panic!("unbound-control (Debian's unbound package) cannot run: {error}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
async fn tls_remote_control_serves_unbound_control_with_unbound_control_setups_certificates() {
    let root = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 80)).await;
    let dir = TempDir::new();
    // Debian's own tool makes the certificates, as on an installed system.
    for keys in ["keys", "strangers"] {
        std::fs::create_dir_all(dir.join(keys)).unwrap();
        let made = std::process::Command::new("unbound-control-setup")
            .arg("-d")
            .arg(dir.join(keys))
            .output()
            .unwrap_or_else(|error| panic!("unbound-control-setup (Debian's unbound package) cannot run: {error}"));
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let conf = |client_keys: &str| {
        let clauses = format!(
            "remote-control:\n  control-enable: yes\n  control-interface: 127.0.0.1\n  control-port: {port}\n  control-use-cert: yes\n  server-key-file: \"{keys}/unbound_server.key\"\n  server-cert-file: \"{keys}/unbound_server.pem\"\n  control-key-file: \"{client}/unbound_control.key\"\n  control-cert-file: \"{client}/unbound_control.pem\"\n",
            keys = dir.join("keys").display(),
            client = dir.join(client_keys).display(),
        );
        unbound_conf(&root, &clauses)
    };
    let config = dir.write("unbound.conf", conf("keys"));
    let (child, address) = start_binary(&["--unbound-conf", &config.to_string_lossy()]).await;
    let (ok, status) = unbound_control(&config, &["status"]).await;
    assert!(ok && status.contains("is running"), "{status}");
    let (ok, added) = unbound_control(&config, &["local_data", "tls.example. 60 IN A 10.7.0.9"]).await;
    assert!(ok && added.trim() == "ok", "{added}");
    assert_eq!(addresses(address, "tls.example.").await, ["10.7.0.9"]);
    // A client certificate the server did not sign is turned away.
    let stranger = dir.write("stranger.conf", conf("strangers"));
    let (ok, refused) = unbound_control(&stranger, &["status"]).await;
    assert!(!ok, "a stranger's certificate was accepted: {refused}");
    // A client without TLS gets no answer (the handshake fails and the connection closes).
    let plain = dir.write("plain.conf", conf("keys").replace("control-use-cert: yes", "control-use-cert: no"));
    let (_, refused) = unbound_control(&plain, &["status"]).await;
    assert!(!refused.contains("is running"), "a plain-text client was served: {refused}");
    assert!(stop(child).await);
}
