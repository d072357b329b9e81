//! The binary as an operator runs it: start-up output, SIGHUP reload,
//! automatic addresses across restarts, check-config, resolv.conf default.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use signpost_wire::RecordType;

use crate::support::*;

/// A TOML configuration with UDP and TCP on `port` (0: a free one) and `body` after the listeners.
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
    let dir = TempDir::new();
    let body = format!(
        "{}\n[[forward_zones]]\nname = \"corp.example.com\"\nservers = [\"{}\"]\nforward_first = true\n",
        zone_body(upstream.address(), "10.0.0.1"),
        upstream.address()
    );
    let config = write_config(&dir, 0, &body);
    let (child, child_udp) = start_binary(&["--config", &config]).await;
    let stdout = child.stdout_lines();
    assert!(stdout.iter().any(|line| line.starts_with("listening on udp 127.0.0.1:")), "{stdout:?}");
    assert!(stdout.iter().any(|line| line.starts_with("listening on tcp 127.0.0.1:")), "{stdout:?}");
    let zone_line =
        format!("forward zone corp.example.com -> corp.example.com [udp://{}] (forward-first)", upstream.address());
    assert!(stdout.contains(&zone_line), "{stdout:?}");
    assert!(stdout.contains(&format!("default . -> . [udp://{}]", upstream.address())), "{stdout:?}");
    assert_eq!(addresses(child_udp, "www.lab.example.").await, ["10.0.0.1"]);
    assert!(stop(child).await);
}

#[tokio::test]
async fn sighup_picks_up_a_changed_zone_and_a_broken_config_keeps_the_old_one() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
    let dir = TempDir::new();
    write_config(&dir, 0, &zone_body(upstream.address(), "10.0.0.1"));
    let config = dir.join("forward.toml").to_string_lossy().into_owned();
    let (child, child_udp) = start_binary(&["--config", &config]).await;
    assert_eq!(addresses(child_udp, "www.lab.example.").await, ["10.0.0.1"]);

    write_config(&dir, 0, &zone_body(upstream.address(), "10.0.0.2"));
    child.signal(Signal::Hangup).await.unwrap();
    let address = child_udp;
    let changed = eventually(Duration::from_secs(5), || async move {
        ask(address, "www.lab.example", RecordType::A)
            .await
            .is_some_and(|(_, answers)| answers == ["www.lab.example. 60 IN A 10.0.0.2"])
    })
    .await;
    assert!(changed, "the reload did not take effect; log:\n{}", child.stderr());
    child.wait_for_stderr("configuration reloaded", PATIENCE).await.unwrap();

    dir.write("forward.toml", "[[forward_zones]]\nname = \"lab.example\"\nservers = [\"not an address\"]\n");
    child.signal(Signal::Hangup).await.unwrap();
    child.wait_for_stderr("reload failed", PATIENCE).await.unwrap();
    assert!(child.stderr().contains("forward.toml:3"), "the error names the line: {}", child.stderr());
    assert_eq!(addresses(child_udp, "www.lab.example.").await, ["10.0.0.2"], "the old configuration serves");
    assert_eq!(upstream.query_count(), 0);
    assert!(stop(child).await);
}

#[tokio::test]
async fn sighup_moves_a_forward_zone_to_its_new_server() {
    let old = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 10)).await;
    let new = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 11)).await;
    let root = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 12)).await;
    let dir = TempDir::new();
    let resolv = dir.write("resolv.conf", "nameserver 127.0.0.254\n");
    let body = |server: SocketAddr| {
        format!(
            "[[forward_zones]]\nname = \"corp.example\"\nservers = [\"{server}\"]\n\n[[forward_zones]]\nname = \".\"\nservers = [\"{}\"]\n",
            root.address()
        )
    };
    let config = write_config(&dir, 0, &body(old.address()));
    let (child, child_udp) = start_binary(&["--config", &config, "--resolv-conf", &resolv.to_string_lossy()]).await;
    assert_eq!(addresses(child_udp, "www.corp.example.").await, ["192.0.2.10"]);
    assert_eq!((old.query_count(), new.query_count()), (1, 0));

    write_config(&dir, 0, &body(new.address()));
    child.signal(Signal::Hangup).await.unwrap();
    child.wait_for_stderr("configuration reloaded", PATIENCE).await.unwrap();
    assert_eq!(addresses(child_udp, "db.corp.example.").await, ["192.0.2.11"]);
    assert_eq!(new.names(), ["db.corp.example."]);
    assert_eq!(old.names(), ["www.corp.example."], "the old server is asked nothing after the reload");
    assert_eq!(root.query_count(), 0);
    assert!(stop(child).await);
}

#[tokio::test]
async fn automatic_addresses_survive_a_reload_and_a_restart() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
    let dir = TempDir::new();
    let hosts = |names: &[&str]| {
        let entries: Vec<String> = names.iter().map(|name| format!("{{ name = \"{name}.mesh.local\" }}")).collect();
        format!(
            "[[forward_zones]]\nname = \".\"\nservers = [\"{}\"]\n\n[allocation]\nipv4 = \"240.240.0.0/24\"\nstate_file = \"allocations.txt\"\n\n[[host_tables]]\nname = \"mesh\"\nhosts = [{}]\n",
            upstream.address(),
            entries.join(", ")
        )
    };
    write_config(&dir, 0, &hosts(&["reviews", "ratings"]));
    let config = dir.join("forward.toml").to_string_lossy().into_owned();
    let (child, child_udp) = start_binary(&["--config", &config]).await;
    let reviews = addresses(child_udp, "reviews.mesh.local.").await;
    let ratings = addresses(child_udp, "ratings.mesh.local.").await;
    assert_ne!(reviews, ratings);
    let state = std::fs::read_to_string(dir.join("allocations.txt")).unwrap();
    assert!(state.contains(&format!("reviews.mesh.local. {}", reviews[0])), "{state}");

    // Reload with more names: the first two keep their addresses.
    write_config(&dir, 0, &hosts(&["details", "productpage", "reviews", "ratings"]));
    child.signal(Signal::Hangup).await.unwrap();
    child.wait_for_stderr("configuration reloaded", PATIENCE).await.unwrap();
    assert_eq!(addresses(child_udp, "reviews.mesh.local.").await, reviews);
    assert_eq!(addresses(child_udp, "ratings.mesh.local.").await, ratings);
    let details = addresses(child_udp, "details.mesh.local.").await;
    assert!(stop(child).await);

    // Restart: the same addresses again, from the state file.
    let (child, child_udp) = start_binary(&["--config", &config]).await;
    assert_eq!(addresses(child_udp, "reviews.mesh.local.").await, reviews);
    assert_eq!(addresses(child_udp, "ratings.mesh.local.").await, ratings);
    assert_eq!(addresses(child_udp, "details.mesh.local.").await, details);
    assert_eq!(upstream.query_count(), 0);
    assert!(stop(child).await);
}

#[tokio::test]
async fn check_config_prints_where_each_zone_goes() {
    let dir = TempDir::new();
    let config = write_config(
        &dir,
        5353,
        "[[forward_zones]]\nname = \"corp.example.com\"\nservers = [\"127.0.0.1:5301\", \"127.0.0.1:5302\"]\n\n[[forward_zones]]\nname = \"example.com\"\nservers = [\"tls://127.0.0.1:853#dns.example\"]\n\n[[forward_zones]]\nname = \".\"\nservers = [\"127.0.0.1:5399\"]\n",
    );
    let Finished { status, stdout, stderr } = run_to_end(&["check-config", &config]).await;
    assert!(status.success(), "{stdout}{stderr}");
    let corp =
        stdout.find("corp.example.com -> corp.example.com [udp://127.0.0.1:5301, udp://127.0.0.1:5302]").unwrap();
    let example = stdout.find("example.com -> example.com [tls://127.0.0.1:853#dns.example]").unwrap();
    let default = stdout.find(". -> . [udp://127.0.0.1:5399] (default)").unwrap();
    assert!(corp < example && example < default, "most specific first:\n{stdout}");
    assert!(stdout.contains("udp 127.0.0.1:5353"), "{stdout}");

    dir.write("broken.toml", "[[forward_zones]]\nname = \"corp\"\ngroup = \"missing\"\n");
    let broken = dir.join("broken.toml").to_string_lossy().into_owned();
    let Finished { status, stderr, .. } = run_to_end(&["check-config", &broken]).await;
    assert!(!status.success());
    assert!(stderr.contains("broken.toml:3:9") && stderr.contains("missing"), "{stderr}");
}

#[tokio::test]
async fn the_example_configuration_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/forward.toml");
    let Finished { status, stdout, stderr } = run_to_end(&["check-config", example]).await;
    assert!(status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("forward zones"), "{stdout}");
}

/// The default group is the system resolv.conf (here one of our own) without our own listener.
/// resolv.conf names servers without a port, so both ends are on port 53 of
/// loopback addresses of their own: the test needs the privilege to bind
/// port 53 and fails, saying so, without it.
#[tokio::test]
async fn the_default_group_is_resolv_conf_without_our_own_address() {
    let system = FakeUpstream::builder()
        .bind("127.83.0.53:53".parse().unwrap())
        .otherwise(Answer::addresses([Ipv4Addr::new(192, 0, 2, 53).into()], 300))
        .start()
        .await
        .unwrap_or_else(|error| panic!("binding port 53 needs root or CAP_NET_BIND_SERVICE: {error}"));
    let dir = TempDir::new();
    let resolv = dir.write("resolv.conf", "nameserver 127.83.0.54\nnameserver 127.83.0.53\noptions timeout:1\n");
    let config = dir.write(
        "forward.toml",
        "[[listeners]]\naddress = \"127.83.0.54\"\nport = 53\ntransport = \"udp\"\nworkers = 1\n",
    );
    let (child, child_udp) =
        start_binary(&["--config", &config.to_string_lossy(), "--resolv-conf", &resolv.to_string_lossy()]).await;
    let stdout = child.stdout_lines();
    assert!(stdout.contains(&"default . -> system [udp://127.83.0.53:53]".to_owned()), "{stdout:?}");
    assert_eq!(addresses(child_udp, "www.example.net.").await, ["192.0.2.53"]);
    assert_eq!(system.query_count(), 1);
    assert!(stop(child).await);
}

/// `--user nobody`: the binary binds port 53, then runs as nobody with
/// CAP_NET_BIND_SERVICE alone (read from /proc in the child), and answers.
/// Needs root, as binding port 53 and changing user do.
#[tokio::test]
async fn user_gives_up_root_after_binding_port_53() {
    assert!(signpost_testkit::Credentials::running_as_root(), "this test needs root: it binds port 53 and setuid()s");
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
    let dir = TempDir::new();
    // A loopback address of its own, so port 53 is free whatever else runs.
    let address = format!("127.53.{}.{}", std::process::id() % 250 + 1, std::process::id() / 250 % 250 + 1);
    let text = format!(
        "[[listeners]]\naddress = \"{address}\"\nport = 53\ntransport = \"udp\"\nworkers = 1\n\n{}",
        zone_body(upstream.address(), "10.0.0.9")
    );
    let config = dir.write("forward.toml", &text).to_string_lossy().into_owned();
    let (child, child_udp) = start_binary(&["--config", &config, "--user", "nobody"]).await;
    assert_eq!(child_udp.port(), 53);
    let credentials = signpost_testkit::Credentials::of(child.pid().unwrap()).unwrap();
    assert_eq!(credentials.uids, [65_534; 4], "{credentials:?}");
    assert_eq!(credentials.gids, [65_534; 4], "{credentials:?}");
    assert_eq!(credentials.effective_capabilities, 1 << 10, "CAP_NET_BIND_SERVICE alone");
    assert!(child.stdout_lines().iter().any(|line| line.starts_with("running as nobody (uid 65534")));
    assert_eq!(addresses(child_udp, "www.lab.example.").await, ["10.0.0.9"]);
    assert!(stop(child).await);
    let failed = run_to_end(&["--config", &config, "--user", "no-such-user-signpost"]).await;
    assert!(!failed.status.success());
    assert!(failed.stderr.contains("no user named \"no-such-user-signpost\""), "{}", failed.stderr);
}
