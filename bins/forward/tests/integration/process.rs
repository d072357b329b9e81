//! The binary as an operator runs it: start-up output, SIGHUP reload,
//! automatic addresses across restarts, check-config, resolv.conf default.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use signpost_wire::RecordType;

use crate::support::*;

/// A TOML configuration on a free port with `body` after the listeners.
fn write_config(dir: &TempDir, port: u16, body: &str) -> String {
    let text = format!(
        "[[listeners]]\naddress = \"127.0.0.1\"\nport = {port}\ntransport = \"udp\"\nworkers = 1\n\n[[listeners]]\naddress = \"127.0.0.1\"\nport = {port}\ntransport = \"tcp\"\n\n{body}"
    );
    dir.write("forward.toml", &text).to_string_lossy().into_owned()
}

fn zone_body(upstream: SocketAddr, address: &str) -> String {
    format!(
        "[[forward_zones]]\nname = \".\"\nservers = [\"{upstream}\"]\n\n[[zones]]\nname = \"lab.example\"\nrecords = [\"www 60 A {address}\"]\n"
    )
}

#[tokio::test]
async fn start_up_prints_listeners_and_forward_zones() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
    let dir = TempDir::new("banner");
    let body = format!(
        "{}\n[[forward_zones]]\nname = \"corp.example.com\"\nservers = [\"{}\"]\nforward_first = true\n",
        zone_body(upstream.address, "10.0.0.1"),
        upstream.address
    );
    let config = write_config(&dir, 0, &body);
    let child = Child::start(&["--config", &config], &dir).unwrap();
    let stdout = child.stdout();
    assert!(stdout.iter().any(|line| line.starts_with("listening on udp 127.0.0.1:")), "{stdout:?}");
    assert!(stdout.iter().any(|line| line.starts_with("listening on tcp 127.0.0.1:")), "{stdout:?}");
    let zone_line =
        format!("forward zone corp.example.com -> corp.example.com [udp://{}] (forward-first)", upstream.address);
    assert!(stdout.contains(&zone_line), "{stdout:?}");
    assert!(stdout.contains(&format!("default . -> . [udp://{}]", upstream.address)), "{stdout:?}");
    assert_eq!(addresses(child.udp, "www.lab.example.").await, ["10.0.0.1"]);
    assert!(child.stop().success());
}

#[tokio::test]
async fn sighup_picks_up_a_changed_zone_and_a_broken_config_keeps_the_old_one() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
    let dir = TempDir::new("reload");
    let port = free_port();
    write_config(&dir, port, &zone_body(upstream.address, "10.0.0.1"));
    let config = dir.0.join("forward.toml").to_string_lossy().into_owned();
    let child = Child::start(&["--config", &config], &dir).unwrap();
    assert_eq!(addresses(child.udp, "www.lab.example.").await, ["10.0.0.1"]);

    write_config(&dir, port, &zone_body(upstream.address, "10.0.0.2"));
    child.hangup();
    let address = child.udp;
    let changed = eventually(Duration::from_secs(5), || async move {
        ask(address, "www.lab.example", RecordType::A, Duration::from_secs(1))
            .await
            .is_some_and(|(_, answers)| answers == ["60 10.0.0.2"])
    })
    .await;
    assert!(changed, "the reload did not take effect; log:\n{}", child.log());
    assert!(child.wait_for_log("configuration reloaded", Duration::from_secs(2)), "{}", child.log());

    dir.write("forward.toml", "[[forward_zones]]\nname = \"lab.example\"\nservers = [\"not an address\"]\n");
    child.hangup();
    assert!(child.wait_for_log("reload failed", Duration::from_secs(5)), "{}", child.log());
    assert!(child.log().contains("forward.toml:3"), "the error names the line: {}", child.log());
    assert_eq!(addresses(child.udp, "www.lab.example.").await, ["10.0.0.2"], "the old configuration serves");
    assert_eq!(upstream.count(), 0);
    assert!(child.stop().success());
}

#[tokio::test]
async fn sighup_moves_a_forward_zone_to_its_new_server() {
    let old = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 10)).await;
    let new = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 11)).await;
    let root = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 12)).await;
    let dir = TempDir::new("reload-forward");
    let resolv = dir.write("resolv.conf", "nameserver 127.0.0.254\n");
    let body = |server: SocketAddr| {
        format!(
            "[[forward_zones]]\nname = \"corp.example\"\nservers = [\"{server}\"]\n\n[[forward_zones]]\nname = \".\"\nservers = [\"{}\"]\n",
            root.address
        )
    };
    let port = free_port();
    let config = write_config(&dir, port, &body(old.address));
    let child = Child::start(&["--config", &config, "--resolv-conf", &resolv.to_string_lossy()], &dir).unwrap();
    assert_eq!(addresses(child.udp, "www.corp.example.").await, ["192.0.2.10"]);
    assert_eq!((old.count(), new.count()), (1, 0));

    write_config(&dir, port, &body(new.address));
    child.hangup();
    assert!(child.wait_for_log("configuration reloaded", Duration::from_secs(5)), "{}", child.log());
    assert_eq!(addresses(child.udp, "db.corp.example.").await, ["192.0.2.11"]);
    assert_eq!(new.names(), ["db.corp.example."]);
    assert_eq!(old.names(), ["www.corp.example."], "the old server is asked nothing after the reload");
    assert_eq!(root.count(), 0);
    assert!(child.stop().success());
}

#[tokio::test]
async fn automatic_addresses_survive_a_reload_and_a_restart() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
    let dir = TempDir::new("allocations");
    let hosts = |names: &[&str]| {
        let entries: Vec<String> = names.iter().map(|name| format!("{{ name = \"{name}.mesh.local\" }}")).collect();
        format!(
            "[[forward_zones]]\nname = \".\"\nservers = [\"{}\"]\n\n[allocation]\nipv4 = \"240.240.0.0/24\"\nstate_file = \"allocations.txt\"\n\n[[host_tables]]\nname = \"mesh\"\nhosts = [{}]\n",
            upstream.address,
            entries.join(", ")
        )
    };
    let port = free_port();
    write_config(&dir, port, &hosts(&["reviews", "ratings"]));
    let config = dir.0.join("forward.toml").to_string_lossy().into_owned();
    let child = Child::start(&["--config", &config], &dir).unwrap();
    let reviews = addresses(child.udp, "reviews.mesh.local.").await;
    let ratings = addresses(child.udp, "ratings.mesh.local.").await;
    assert_ne!(reviews, ratings);
    let state = std::fs::read_to_string(dir.0.join("allocations.txt")).unwrap();
    assert!(state.contains(&format!("reviews.mesh.local. {}", reviews[0])), "{state}");

    // Reload with more names: the first two keep their addresses.
    write_config(&dir, port, &hosts(&["details", "productpage", "reviews", "ratings"]));
    child.hangup();
    assert!(child.wait_for_log("configuration reloaded", Duration::from_secs(5)), "{}", child.log());
    assert_eq!(addresses(child.udp, "reviews.mesh.local.").await, reviews);
    assert_eq!(addresses(child.udp, "ratings.mesh.local.").await, ratings);
    let details = addresses(child.udp, "details.mesh.local.").await;
    assert!(child.stop().success());

    // Restart: the same addresses again, from the state file.
    let child = Child::start(&["--config", &config], &dir).unwrap();
    assert_eq!(addresses(child.udp, "reviews.mesh.local.").await, reviews);
    assert_eq!(addresses(child.udp, "ratings.mesh.local.").await, ratings);
    assert_eq!(addresses(child.udp, "details.mesh.local.").await, details);
    assert_eq!(upstream.count(), 0);
    assert!(child.stop().success());
}

#[test]
fn check_config_prints_where_each_zone_goes() {
    let dir = TempDir::new("check");
    let config = write_config(
        &dir,
        5353,
        "[[forward_zones]]\nname = \"corp.example.com\"\nservers = [\"127.0.0.1:5301\", \"127.0.0.1:5302\"]\n\n[[forward_zones]]\nname = \"example.com\"\nservers = [\"tls://127.0.0.1:853#dns.example\"]\n\n[[forward_zones]]\nname = \".\"\nservers = [\"127.0.0.1:5399\"]\n",
    );
    let (ok, stdout, stderr) = run_to_end(&["check-config", &config]);
    assert!(ok, "{stdout}{stderr}");
    let corp =
        stdout.find("corp.example.com -> corp.example.com [udp://127.0.0.1:5301, udp://127.0.0.1:5302]").unwrap();
    let example = stdout.find("example.com -> example.com [tls://127.0.0.1:853#dns.example]").unwrap();
    let default = stdout.find(". -> . [udp://127.0.0.1:5399] (default)").unwrap();
    assert!(corp < example && example < default, "most specific first:\n{stdout}");
    assert!(stdout.contains("udp 127.0.0.1:5353"), "{stdout}");

    dir.write("broken.toml", "[[forward_zones]]\nname = \"corp\"\ngroup = \"missing\"\n");
    let broken = dir.0.join("broken.toml").to_string_lossy().into_owned();
    let (ok, _, stderr) = run_to_end(&["check-config", &broken]);
    assert!(!ok);
    assert!(stderr.contains("broken.toml:3:9") && stderr.contains("missing"), "{stderr}");
}

#[test]
fn the_example_configuration_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/forward.toml");
    let (ok, stdout, stderr) = run_to_end(&["check-config", example]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("forward zones"), "{stdout}");
}

/// The default group is the system resolv.conf (here one of our own) without our own listener.
#[tokio::test]
#[allow(clippy::print_stderr, reason = "say why the test is skipped where port 53 cannot be bound")]
async fn the_default_group_is_resolv_conf_without_our_own_address() {
    let handler: Handler = Arc::new(|query| Some(answer_a(query, Ipv4Addr::new(192, 0, 2, 53), 300)));
    // resolv.conf servers are on port 53: a free loopback address of our own.
    let Some(system) = FakeUpstream::start_on("127.83.0.53:53".parse().unwrap(), handler).await else {
        eprintln!("skipped: binding port 53 needs privileges");
        return;
    };
    let dir = TempDir::new("resolv");
    let resolv = dir.write("resolv.conf", "nameserver 127.83.0.54\nnameserver 127.83.0.53\noptions timeout:1\n");
    let config = dir.write(
        "forward.toml",
        "[[listeners]]\naddress = \"127.83.0.54\"\nport = 53\ntransport = \"udp\"\nworkers = 1\n",
    );
    let child = match Child::start(
        &["--config", &config.to_string_lossy(), "--resolv-conf", &resolv.to_string_lossy()],
        &dir,
    ) {
        Ok(child) => child,
        Err(error) => {
            eprintln!("skipped: {error}");
            return;
        }
    };
    assert!(child.stdout().contains(&"default . -> system [udp://127.83.0.53:53]".to_owned()), "{:?}", child.stdout());
    assert_eq!(addresses(child.udp, "www.example.net.").await, ["192.0.2.53"]);
    assert_eq!(system.count(), 1);
    assert!(child.stop().success());
}
