//! The binary as Kubernetes runs it: `/health` and `/ready` with the
//! lame-duck period on SIGTERM, and configuration from a ConfigMap volume
//! reloaded when the kubelet swaps it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use signpost_testkit::{ConfigMapVolume, http_get};

use crate::support::*;

/// UDP and TCP on one free port, a local zone answering `www.lab.example`
/// with `address`, the default zone to `upstream`, and `extra` sections.
fn config(upstream: &FakeUpstream, address: &str, extra: &str) -> String {
    format!(
        "{LISTENERS}\n{}\n[[zones]]\nname = \"lab.example\"\nrecords = [\"www 60 A {address}\"]\n\n{extra}",
        default_zone(upstream)
    )
}

/// The binary on `text`, written to a temporary forward.toml: the
/// directory (to keep while it runs), the child and its UDP address.
async fn start_on(text: &str) -> (TempDir, RunningBinary, SocketAddr) {
    let dir = TempDir::new();
    let path = dir.write("forward.toml", text);
    let (child, udp) = start_binary(&["--config", &path.to_string_lossy()]).await;
    (dir, child, udp)
}

/// Whether `/ready` says 200 OK.
async fn is_ready(ready: SocketAddr) -> bool {
    http_get(ready, "/ready").await == Some((200, "OK".into()))
}

fn printed_address(child: &RunningBinary, prefix: &str) -> SocketAddr {
    let found = child.addresses(|line| {
        let rest = line.strip_prefix(prefix)?.strip_prefix("http://")?;
        rest.split('/').next()?.parse().ok()
    });
    *found.first().unwrap_or_else(|| panic!("no {prefix:?} line: {:?}", child.stdout_lines()))
}

#[tokio::test]
async fn sigterm_fails_readiness_for_the_lame_duck_while_health_and_dns_answer() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
    let probes = "[health]\naddress = \"127.0.0.1:0\"\nlame_duck_ms = 3000\n\n[ready]\naddress = \"127.0.0.1:0\"\n";
    let (_dir, child, udp) = start_on(&config(&upstream, "10.0.0.1", probes)).await;
    let health = printed_address(&child, "health on ");
    let ready = printed_address(&child, "ready on ");
    assert_eq!(http_get(health, "/health").await, Some((200, "OK".into())));
    // Listeners bound, and the upstream answered its health check (at once, on loopback).
    assert!(eventually(PATIENCE, || is_ready(ready)).await, "{:?}", http_get(ready, "/ready").await);

    child.signal(Signal::Terminate).await.unwrap();
    let asked = Instant::now();
    child.wait_for_stderr("lame duck", PATIENCE).await.unwrap();
    assert_eq!(http_get(ready, "/ready").await, Some((503, "lame-duck".into())));
    assert_eq!(http_get(health, "/health").await, Some((200, "OK".into())));
    assert_eq!(addresses(udp, "www.lab.example.").await, ["10.0.0.1"], "DNS answers in the lame duck");

    let finished = child.wait(PATIENCE).await.unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(asked.elapsed() >= Duration::from_millis(3000), "stopped after {:?}", asked.elapsed());
    assert_eq!(http_get(health, "/health").await, None, "the probes stop with the process");
}

#[tokio::test]
async fn a_second_signal_cuts_the_lame_duck_short() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
    let probes = "[health]\naddress = \"127.0.0.1:0\"\nlame_duck_ms = 60000\n";
    let (_dir, child, _) = start_on(&config(&upstream, "10.0.0.1", probes)).await;
    child.signal(Signal::Terminate).await.unwrap();
    child.wait_for_stderr("lame duck", PATIENCE).await.unwrap();
    child.signal(Signal::Terminate).await.unwrap();
    let finished = child.wait(PATIENCE).await.unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
}

#[tokio::test]
async fn a_configmap_update_is_reloaded_and_a_broken_one_keeps_the_old() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
    let admin = "[admin]\naddress = \"127.0.0.1:0\"\n";
    let first = config(&upstream, "10.0.0.1", admin);
    let volume = ConfigMapVolume::new(&[("forward.toml", &first)]).unwrap();
    let path = volume.path("forward.toml");
    let (child, udp) = start_binary(&["--config", &path.to_string_lossy(), "--watch-config"]).await;
    let admin = printed_address(&child, "admin API on ");
    let metric = |version: &str| format!("signpost_config_version{{version=\"{version}\"}} 1");
    let first_version = signpost_server::content_version(first.as_bytes());
    child.wait_for_stderr(&format!("configuration version {first_version} in force"), PATIENCE).await.unwrap();
    let metrics = http_get(admin, "/metrics").await.unwrap().1;
    assert!(metrics.contains(&metric(&first_version)), "{metrics}");
    assert_eq!(addresses(udp, "www.lab.example.").await, ["10.0.0.1"]);

    // The listeners' port is fixed now: a reload keeps the bound ones anyway.
    let second = config(&upstream, "10.0.0.2", &format!("[admin]\naddress = \"{admin}\"\n"));
    volume.update(&[("forward.toml", &second)]).unwrap();
    let second_version = signpost_server::content_version(second.as_bytes());
    child.wait_for_stderr(&format!("configuration version {second_version} in force"), PATIENCE).await.unwrap();
    assert!(child.stderr().contains("(file change)"), "{}", child.stderr());
    assert_eq!(addresses(udp, "www.lab.example.").await, ["10.0.0.2"]);
    let metrics = http_get(admin, "/metrics").await.unwrap().1;
    assert!(metrics.contains(&metric(&second_version)), "{metrics}");
    assert!(!metrics.contains(&first_version), "one version at a time: {metrics}");
    assert!(metrics.contains("signpost_config_reloads_total{outcome=\"success\"} 1"), "{metrics}");

    volume
        .update(&[("forward.toml", "[[forward_zones]]\nname = \"lab.example\"\nservers = [\"not an address\"]\n")])
        .unwrap();
    child.wait_for_stderr("reload failed (file change)", PATIENCE).await.unwrap();
    assert_eq!(addresses(udp, "www.lab.example.").await, ["10.0.0.2"], "the old configuration serves");
    let metrics = http_get(admin, "/metrics").await.unwrap().1;
    assert!(metrics.contains(&metric(&second_version)), "the version in force stays: {metrics}");
    assert!(metrics.contains("signpost_config_reloads_total{outcome=\"failure\"} 1"), "{metrics}");
    assert_eq!(upstream.query_count(), 0);
    assert!(stop(child).await);
}

#[tokio::test]
async fn ready_waits_for_the_upstream_and_fails_while_it_is_down() {
    let upstream_address = closed_udp_port();
    let text = format!(
        "{LISTENERS}\n[[forward_zones]]\nname = \".\"\nservers = [\"{upstream_address}\"]\n\n\
         [ready]\naddress = \"127.0.0.1:0\"\nupstream_interval_ms = 200\n"
    );
    let (_dir, child, _) = start_on(&text).await;
    let ready = printed_address(&child, "ready on ");
    let failing_upstreams = || async {
        http_get(ready, "/ready").await.is_some_and(|(status, body)| status == 503 && body.starts_with("upstreams:"))
    };
    assert!(
        eventually(PATIENCE, failing_upstreams).await,
        "no upstream answers yet: {:?}",
        http_get(ready, "/ready").await
    );

    let start_upstream = || async {
        FakeUpstream::builder()
            .otherwise(Answer::address(Ipv4Addr::new(192, 0, 2, 1).into()))
            .udp()
            .bind(upstream_address)
            .start()
            .await
            .unwrap()
    };
    let upstream = start_upstream().await;
    assert!(
        eventually(PATIENCE, || is_ready(ready)).await,
        "the upstream answers: {:?}",
        http_get(ready, "/ready").await
    );
    drop(upstream);
    assert!(
        eventually(PATIENCE, failing_upstreams).await,
        "the upstream stopped: {:?}",
        http_get(ready, "/ready").await
    );
    let _upstream = start_upstream().await;
    assert!(eventually(PATIENCE, || is_ready(ready)).await, "back: {:?}", http_get(ready, "/ready").await);
    assert!(child.stderr().contains("no upstream of the group answers"), "{}", child.stderr());
}

#[tokio::test]
async fn ready_can_leave_upstreams_out() {
    let text = format!(
        "{LISTENERS}\n[[forward_zones]]\nname = \".\"\nservers = [\"{}\"]\n\n\
         [ready]\naddress = \"127.0.0.1:0\"\nrequire_upstream = false\n",
        closed_udp_port()
    );
    let (_dir, child, _) = start_on(&text).await;
    let ready = printed_address(&child, "ready on ");
    assert_eq!(http_get(ready, "/ready").await, Some((200, "OK".into())));
}
