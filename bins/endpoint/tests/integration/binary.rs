//! The binary as a user runs it: `check-config`, start-up output, SIGHUP.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use signpost_endpoint::EndpointConfig;

use crate::support::*;

/// How long start-up, a reload's log line or a clean exit may take.
const PATIENCE: Duration = Duration::from_secs(10);

/// `signpost-endpoint check-config FILE`: (success, stdout squeezed, stderr).
async fn check_config(file: &Path) -> (bool, String, String) {
    let output = endpoint_binary().arg("check-config").arg(file).output(PATIENCE).await.unwrap();
    (output.status.success(), squeeze(&output.stdout), output.stderr)
}

/// The binary serving `file` with `RUST_LOG=rust_log`, ready once it prints `ready`.
fn with_config(file: &Path, rust_log: &str) -> Binary {
    endpoint_binary().arg("--config").arg(file).env("RUST_LOG", rust_log).ready_when(|line| line == "ready")
}

fn config_text(recursive: SocketAddr, inbound_protocols: &str, www: &str, certificate: &TestTls) -> String {
    let extra = format!(
        r#"
tls = {{ cert = "{cert}", key = "{key}" }}
private_hosted_zones = [{{ name = "corp.example", vpcs = ["vpc-a"], records = ["www A {www}"] }}]
outbound_endpoints = [{{ id = "rslvr-out-a", vpc = "vpc-a" }}]
"#,
        cert = certificate.cert.display(),
        key = certificate.key.display(),
    );
    let rules = [
        forward_rule("rslvr-rr-onprem", "onprem.example", r#"[{ ip = "127.0.0.1", port = 5301 }]"#, r#"["vpc-a"]"#),
        system_rule("rslvr-rr-public", "www.onprem.example", r#"["vpc-a"]"#),
        system_rule("rslvr-rr-idle", "idle.example", "[]"),
        inbound_endpoint(inbound_protocols, None),
    ];
    two_vpcs(recursive, &format!("{extra}{}", rules.concat()))
}

#[tokio::test]
async fn check_config_prints_where_each_vpc_s_domains_go() {
    let dir = TempDir::new();
    let certificate = certificate(dir.path());
    let file = dir.join("endpoint.toml");
    std::fs::write(
        &file,
        config_text("127.0.0.1:5300".parse().unwrap(), r#"["Do53", "DoH"]"#, "10.1.0.10", &certificate),
    )
    .unwrap();
    let (success, stdout, stderr) = check_config(&file).await;
    assert!(success, "{stdout}{stderr}");
    for expected in [
        "VPC vpc-a (127.0.1.0/24)",
        "VPC resolver 127.0.1.2:0 (Do53 over UDP and TCP)",
        "inbound endpoint rslvr-in-a Do53+DoH on 127.0.1.10, 127.0.1.11",
        "outbound endpoint rslvr-out-a Do53",
        "recursive default -> 127.0.0.1:5300",
        "corp.example. private hosted zone corp.example (2 records)",
        "onprem.example. FORWARD rule rslvr-rr-onprem -> outbound endpoint rslvr-out-a -> 127.0.0.1:5301 (Do53)",
        "www.onprem.example. SYSTEM rule rslvr-rr-public -> VPC resolver -> recursive default",
        "VPC vpc-b (127.0.2.0/24)",
        "limits (aws_limits): 1024 packets/s per client address to VPC resolvers; 10000 queries/s",
        "rules associated with no VPC (no effect): rslvr-rr-idle",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in\n{stdout}");
    }
    // vpc-b has only the recursive default.
    let vpc_b = stdout.split("VPC vpc-b").nth(1).unwrap();
    assert!(!vpc_b.contains("corp.example"), "{vpc_b}");
}

#[tokio::test]
async fn check_config_warns_of_forwarding_dot_or_com_without_a_system_rule_for_amazonaws_com() {
    let dir = TempDir::new();
    let certificate = certificate(dir.path());
    let file = dir.join("endpoint.toml");
    let base = config_text("127.0.0.1:5300".parse().unwrap(), r#"["Do53"]"#, "10.1.0.10", &certificate);
    let target = r#"[{ ip = "127.0.0.1", port = 5301 }]"#;
    let everything = forward_rule("rslvr-rr-all", ".", target, r#"["vpc-a", "vpc-b"]"#);
    let shield = system_rule("rslvr-rr-aws", "amazonaws.com", r#"["vpc-b"]"#);
    let text = format!("{base}{everything}{shield}");
    std::fs::write(&file, &text).unwrap();
    let (success, stdout, stderr) = check_config(&file).await;
    assert!(success, "{stdout}{stderr}");
    let line = text.lines().position(|line| line == "domain = \".\"").unwrap() + 1;
    // (stdout is squeezed to one line.) vpc-a has no SYSTEM rule for amazonaws.com; vpc-b has.
    assert_eq!(stdout.matches("warning: ").count(), 1, "{stdout}");
    let warning = stdout.split("warning: ").nth(1).unwrap();
    let at = format!("endpoint.toml:{line}:");
    for expected in [at.as_str(), "FORWARD rule rslvr-rr-all for \".\"", "VPC vpc-a's amazonaws.com"] {
        assert!(warning.contains(expected), "missing {expected:?} in {stdout}");
    }
    // `com` warns as `.` does; a narrower domain does not.
    let com = forward_rule("rslvr-rr-com", "com.", target, r#"["vpc-b"]"#);
    std::fs::write(&file, format!("{base}{com}")).unwrap();
    let (_, stdout, _) = check_config(&file).await;
    assert!(stdout.contains("FORWARD rule rslvr-rr-com for \"com\" sends VPC vpc-b's"), "{stdout}");
    std::fs::write(&file, &base).unwrap();
    assert!(!check_config(&file).await.1.contains("warning:"));
}

#[tokio::test]
async fn check_config_rejects_doh_with_doh_fips_naming_the_line() {
    let dir = TempDir::new();
    let certificate = certificate(dir.path());
    let file = dir.join("endpoint.toml");
    let text = config_text("127.0.0.1:5300".parse().unwrap(), r#"["DoH", "DoH-FIPS"]"#, "10.1.0.10", &certificate);
    std::fs::write(&file, &text).unwrap();
    let (success, _, stderr) = check_config(&file).await;
    assert!(!success);
    let line = text.lines().position(|line| line.starts_with("protocols = [\"DoH\"")).unwrap() + 1;
    assert!(stderr.contains(&format!("endpoint.toml:{line}:")), "{stderr}");
    assert!(stderr.contains("inbound endpoint \"rslvr-in-a\": DoH and DoH-FIPS cannot be used together"), "{stderr}");
}

#[tokio::test]
async fn the_example_configuration_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/endpoint.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let parsed = EndpointConfig::from_toml(&text, &example).unwrap();
    assert_eq!(parsed.vpcs.len(), 2);
    assert_eq!(parsed.inbound_endpoints[0].addresses.len(), 2);
    // Check it as a user would, beside the TLS files it names.
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.join("tls")).unwrap();
    let certificate = certificate(dir.path());
    std::fs::copy(&certificate.cert, dir.join("tls/endpoint.pem")).unwrap();
    std::fs::copy(&certificate.key, dir.join("tls/endpoint.key")).unwrap();
    std::fs::copy(&certificate.ca, dir.join("tls/onprem-ca.pem")).unwrap();
    let file = dir.join("endpoint.toml");
    std::fs::write(&file, &text).unwrap();
    let (success, stdout, stderr) = check_config(&file).await;
    assert!(success, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "svc.dev.corp.example. SYSTEM rule rslvr-rr-dev-svc -> VPC resolver -> private hosted zone corp.example"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "FORWARD rule rslvr-rr-secure -> outbound endpoint rslvr-out-0a1b2c3d4e5f6001 -> 127.0.0.1:8443 (DoH)"
        ),
        "{stdout}"
    );
}

/// Text with every run of whitespace made one space (lines become ` `-separated too).
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `listening ID TRANSPORT ADDRESS ...` lines: the address of listener `id` (the latest).
fn address(running: &RunningBinary, id: &str) -> SocketAddr {
    let listener = |line: &str| {
        let fields: Vec<&str> = line.strip_prefix("listening ")?.split_whitespace().collect();
        (fields.first() == Some(&id)).then(|| fields.get(2)?.parse().ok())?
    };
    *running.addresses(listener).last().unwrap_or_else(|| panic!("no listener {id} in {:?}", running.stdout_lines()))
}

#[tokio::test]
async fn the_binary_prints_its_addresses_and_reloads_on_sighup_with_the_transition_checks() {
    let Basics { dir, certificate, recursive } = basics().await;
    let file = dir.join("endpoint.toml");
    std::fs::write(&file, config_text(recursive.address(), r#"["Do53"]"#, "10.1.0.10", &certificate)).unwrap();
    let running = with_config(&file, "warn").start().await.unwrap();
    {
        let lines = running.stdout_lines();
        let listening: Vec<&String> = lines.iter().filter(|line| line.starts_with("listening ")).collect();
        // Two VPC resolvers (UDP, TCP) and two endpoint addresses (UDP, TCP).
        assert_eq!(listening.len(), 8, "{lines:?}");
        assert!(
            lines.iter().any(|l| l.starts_with("listening vpc-a/resolver/udp udp 127.0.1.2:")
                && l.ends_with("Do53 VPC resolver of vpc-a")),
            "{lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("listening rslvr-in-a/127.0.1.11/tcp tcp 127.0.1.11:")
                && l.ends_with("Do53 inbound endpoint rslvr-in-a of vpc-a")),
            "{lines:?}"
        );
    }
    let resolver_address = address(&running, "vpc-a/resolver/udp");
    let endpoint_address = address(&running, "rslvr-in-a/127.0.1.10/udp");
    let (_, answers) = ask(resolver_address, VPC_A_CLIENT, "www.corp.example").await.unwrap();
    assert_eq!(answers, ["www.corp.example. 300 IN A 10.1.0.10"]);

    // Do53 straight to DoH: rejected, and Do53 keeps answering.
    std::fs::write(&file, config_text(recursive.address(), r#"["DoH"]"#, "10.1.0.10", &certificate)).unwrap();
    running.signal(Signal::Hangup).await.unwrap();
    let stderr = running.wait_for_stderr("reload rejected", PATIENCE).await.unwrap();
    assert!(stderr.contains("must pass through Do53+DoH"), "{stderr}");
    let (_, answers) = ask(endpoint_address, ONPREM_CLIENT, "www.corp.example").await.unwrap();
    assert_eq!(answers, ["www.corp.example. 300 IN A 10.1.0.10"]);

    // A record change reloads in place: same addresses, new answer.
    let seen = running.stdout_lines().len();
    std::fs::write(&file, config_text(recursive.address(), r#"["Do53"]"#, "10.1.0.99", &certificate)).unwrap();
    running.signal(Signal::Hangup).await.unwrap();
    running.wait_for_stdout_after(seen, "swapped in place", PATIENCE).await.unwrap();
    let (_, answers) = ask(resolver_address, VPC_A_CLIENT, "www.corp.example").await.unwrap();
    assert_eq!(answers, ["www.corp.example. 300 IN A 10.1.0.99"]);

    // Do53 to Do53+DoH restarts the listeners and lists them again, DoH included.
    let seen = running.stdout_lines().len();
    std::fs::write(&file, config_text(recursive.address(), r#"["Do53", "DoH"]"#, "10.1.0.99", &certificate)).unwrap();
    running.signal(Signal::Hangup).await.unwrap();
    running.wait_for_stdout_after(seen, "server restarted", PATIENCE).await.unwrap();
    let ready = running.wait_for_stdout_after(seen, "ready", PATIENCE).await.unwrap();
    let doh_line =
        running.wait_for_stdout_after(seen, "listening rslvr-in-a/127.0.1.10/doh doh ", PATIENCE).await.unwrap();
    assert!(doh_line < ready);
    let doh = address(&running, "rslvr-in-a/127.0.1.10/doh");
    let client = certificate.doh_client(doh);
    assert_eq!(lookup_v4(&client, "www.corp.example.").await, [std::net::Ipv4Addr::new(10, 1, 0, 99)]);

    let finished = running.terminate(PATIENCE).await.unwrap();
    assert!(finished.status.success(), "{finished:?}");
}

/// `--user nobody`: after binding, the endpoint runs as nobody with
/// CAP_NET_BIND_SERVICE alone, and its VPC resolver still answers. Needs root.
#[tokio::test]
async fn user_gives_up_root_after_binding() {
    assert!(signpost_testkit::Credentials::running_as_root(), "this test needs root: it setuid()s");
    let Basics { dir, certificate, recursive } = basics().await;
    let file = dir.join("endpoint.toml");
    std::fs::write(&file, config_text(recursive.address(), r#"["Do53"]"#, "10.1.0.10", &certificate)).unwrap();
    let running = with_config(&file, "warn")
        .args(["--user", "nobody"])
        .start_retrying(signpost_testkit::START_TRIES, signpost_testkit::port_taken)
        .await
        .unwrap();
    let credentials = signpost_testkit::Credentials::of(running.pid().unwrap()).unwrap();
    assert_eq!(credentials.uids, [65_534; 4], "{credentials:?}");
    assert_eq!(credentials.effective_capabilities, 1 << 10, "CAP_NET_BIND_SERVICE alone");
    assert!(running.stdout_lines().iter().any(|line| line.starts_with("running as nobody")));
    let (_, answers) = ask(address(&running, "vpc-a/resolver/udp"), VPC_A_CLIENT, "www.corp.example").await.unwrap();
    assert_eq!(answers, ["www.corp.example. 300 IN A 10.1.0.10"]);
    assert!(running.terminate(PATIENCE).await.unwrap().status.success());
}

/// `PREFIX http://ADDRESS/...` lines: the address.
fn probe_address(running: &RunningBinary, prefix: &str) -> SocketAddr {
    let found = running.addresses(|line| line.strip_prefix(prefix)?.split('/').next()?.parse().ok());
    *found.first().unwrap_or_else(|| panic!("no {prefix:?} line in {:?}", running.stdout_lines()))
}

#[tokio::test]
async fn from_a_configmap_with_probes_a_swap_reloads_and_sigterm_is_a_lame_duck() {
    use signpost_testkit::{ConfigMapVolume, http_get};
    let Basics { recursive, .. } = basics().await;
    let text = |www: &str| {
        let extra = format!(
            "health = {{ address = \"127.0.0.1:0\", lame_duck_ms = 3000 }}\nready = {{ address = \"127.0.0.1:0\" }}\n\
             private_hosted_zones = [{{ name = \"corp.example\", vpcs = [\"vpc-a\"], records = [\"www A {www}\"] }}]\n"
        );
        two_vpcs(recursive.address(), &extra)
    };
    let volume = ConfigMapVolume::new(&[("endpoint.toml", &text("10.1.0.10"))]).unwrap();
    let running = with_config(&volume.path("endpoint.toml"), "info")
        .arg("--watch-config")
        .start_retrying(signpost_testkit::START_TRIES, signpost_testkit::port_taken)
        .await
        .unwrap();
    let (health, ready) = (probe_address(&running, "health http://"), probe_address(&running, "ready http://"));
    assert_eq!(http_get(health, "/health").await, Some((200, "OK".into())));
    // Ready once the first round of upstream checks found the recursive default answering.
    assert!(
        signpost_testkit::eventually(PATIENCE, || async {
            http_get(ready, "/ready").await == Some((200, "OK".into()))
        })
        .await,
        "{:?}",
        http_get(ready, "/ready").await
    );
    let resolver_address = address(&running, "vpc-a/resolver/udp");
    let (_, answers) = ask(resolver_address, VPC_A_CLIENT, "www.corp.example").await.unwrap();
    assert_eq!(answers, ["www.corp.example. 300 IN A 10.1.0.10"]);

    let seen = running.stdout_lines().len();
    let changed = text("10.1.0.99");
    volume.update(&[("endpoint.toml", &changed)]).unwrap();
    running.wait_for_stdout_after(seen, "swapped in place", PATIENCE).await.unwrap();
    let version = signpost_server::content_version(changed.as_bytes());
    running.wait_for_stderr(&format!("configuration version {version} in force"), PATIENCE).await.unwrap();
    let (_, answers) = ask(resolver_address, VPC_A_CLIENT, "www.corp.example").await.unwrap();
    assert_eq!(answers, ["www.corp.example. 300 IN A 10.1.0.99"]);

    running.signal(Signal::Terminate).await.unwrap();
    let asked = std::time::Instant::now();
    running.wait_for_stderr("lame duck", PATIENCE).await.unwrap();
    assert_eq!(http_get(ready, "/ready").await, Some((503, "lame-duck".into())));
    assert_eq!(http_get(health, "/health").await, Some((200, "OK".into())));
    let (_, answers) = ask(resolver_address, VPC_A_CLIENT, "www.corp.example").await.unwrap();
    assert_eq!(answers, ["www.corp.example. 300 IN A 10.1.0.99"], "DNS answers in the lame duck");
    let finished = running.wait(PATIENCE).await.unwrap();
    assert!(finished.status.success(), "{finished:?}");
    assert!(asked.elapsed() >= Duration::from_millis(3000), "stopped after {:?}", asked.elapsed());
}

/// A fake upstream answering every A question over UDP at `address` (a
/// port that was closed until now).
async fn answering_at(address: SocketAddr) -> FakeUpstream {
    FakeUpstream::builder()
        .otherwise(signpost_testkit::Answer::address(RECURSIVE_ANSWER.into()))
        .udp()
        .bind(address)
        .start()
        .await
        .unwrap_or_else(|error| panic!("cannot bind {address} again: {error}"))
}

/// `/ready` answers exactly `expected` within [`PATIENCE`].
async fn ready_becomes(ready: SocketAddr, expected: (u16, &str)) {
    let expected = Some((expected.0, expected.1.to_string()));
    let answers = || async { signpost_testkit::http_get(ready, "/ready").await == expected };
    assert!(
        signpost_testkit::eventually(PATIENCE, answers).await,
        "wanted {expected:?}, /ready answers {:?}",
        signpost_testkit::http_get(ready, "/ready").await
    );
}

/// `[ready]` (upstreams checked every 200 ms unless `ready` says
/// otherwise), outbound endpoint rslvr-out-a, then `rules`.
fn with_ready(recursive: SocketAddr, ready: &str, rules: &str) -> String {
    let head = format!(
        "ready = {{ address = \"127.0.0.1:0\", upstream_interval_ms = 200{ready} }}\n\
         outbound_endpoints = [{{ id = \"rslvr-out-a\", vpc = \"vpc-a\" }}]\n"
    );
    two_vpcs(recursive, &format!("{head}{rules}"))
}

/// A FORWARD rule's `targets`: the one server at `address`.
fn target(address: SocketAddr) -> String {
    format!("[{{ ip = \"{}\", port = {} }}]", address.ip(), address.port())
}

#[tokio::test]
async fn ready_waits_for_every_upstream_group_queries_go_to_and_follows_a_reload() {
    let (recursive_address, onprem_address, idle_address) =
        (signpost_testkit::closed_udp_port(), signpost_testkit::closed_udp_port(), signpost_testkit::closed_udp_port());
    let dir = TempDir::new();
    let file = dir.join("endpoint.toml");
    // A rule associated with no VPC sends nothing: its closed target does not count.
    let idle = forward_rule("rslvr-rr-idle", "idle.example", &target(idle_address), "[]");
    std::fs::write(&file, with_ready(recursive_address, "", &idle)).unwrap();
    let running = endpoint_binary()
        .arg("--config")
        .arg(&file)
        .env("RUST_LOG", "info")
        .ready_when(|line| line == "ready")
        .start_retrying(signpost_testkit::START_TRIES, signpost_testkit::port_taken)
        .await
        .unwrap();
    let ready = probe_address(&running, "ready http://");
    let (status, body) = signpost_testkit::http_get(ready, "/ready").await.unwrap();
    assert_eq!(status, 503, "the recursive default is closed: {body}");
    assert!(body == "upstreams" || body == "upstreams:recursive", "{body}");
    ready_becomes(ready, (503, "upstreams:recursive")).await;
    running.wait_for_stderr("no upstream of the group answers", PATIENCE).await.unwrap();

    let recursive = answering_at(recursive_address).await;
    ready_becomes(ready, (200, "OK")).await;

    // A reload adds a FORWARD rule for vpc-a: its targets count from now on.
    let onprem = forward_rule("rslvr-rr-onprem", "onprem.example", &target(onprem_address), "[\"vpc-a\"]");
    std::fs::write(&file, with_ready(recursive_address, "", &format!("{idle}{onprem}"))).unwrap();
    let seen = running.stdout_lines().len();
    running.signal(Signal::Hangup).await.unwrap();
    running.wait_for_stdout_after(seen, "reloaded ", PATIENCE).await.unwrap();
    ready_becomes(ready, (503, "upstreams:forward:rslvr-rr-onprem")).await;
    let target_server = answering_at(onprem_address).await;
    ready_becomes(ready, (200, "OK")).await;
    drop(target_server);
    ready_becomes(ready, (503, "upstreams:forward:rslvr-rr-onprem")).await;

    // A reload that removes the rule forgets its group.
    std::fs::write(&file, with_ready(recursive_address, "", &idle)).unwrap();
    let seen = running.stdout_lines().len();
    running.signal(Signal::Hangup).await.unwrap();
    running.wait_for_stdout_after(seen, "reloaded ", PATIENCE).await.unwrap();
    ready_becomes(ready, (200, "OK")).await;
    assert!(recursive.query_count() > 0, "the recursive default was checked");
    assert!(running.terminate(PATIENCE).await.unwrap().status.success());
}

#[tokio::test]
async fn ready_without_require_upstream_does_not_wait_for_upstreams() {
    let recursive_address = signpost_testkit::closed_udp_port();
    let dir = TempDir::new();
    let file = dir.join("endpoint.toml");
    // From the file, and from the command line over the file's default (the Helm chart's way).
    for (ready, args) in [(", require_upstream = false", &[][..]), ("", &["--ready-require-upstream=false"][..])] {
        std::fs::write(&file, with_ready(recursive_address, ready, "")).unwrap();
        let running = endpoint_binary()
            .arg("--config")
            .arg(&file)
            .args(args.iter().copied())
            .ready_when(|line| line == "ready")
            .start_retrying(signpost_testkit::START_TRIES, signpost_testkit::port_taken)
            .await
            .unwrap();
        let ready = probe_address(&running, "ready http://");
        assert_eq!(signpost_testkit::http_get(ready, "/ready").await, Some((200, "OK".into())), "{args:?}");
        // Several check intervals later: still ready.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(signpost_testkit::http_get(ready, "/ready").await, Some((200, "OK".into())), "{args:?}");
        assert!(running.terminate(PATIENCE).await.unwrap().status.success());
    }
}

#[tokio::test]
async fn sigusr2_hands_the_vpc_resolvers_over_to_a_new_process() {
    let Basics { recursive, .. } = basics().await;
    let dir = TempDir::new();
    let file = dir.join("endpoint.toml");
    let zones =
        "private_hosted_zones = [{ name = \"corp.example\", vpcs = [\"vpc-a\"], records = [\"www A 10.1.0.10\"] }]\n";
    // Port 0 always means a new socket: a hand-over needs fixed ports.
    let (old, _) = signpost_testkit::start_on_free_port(|port| {
        let text =
            two_vpcs(recursive.address(), zones).replace("resolver_port = 0", &format!("resolver_port = {port}"));
        std::fs::write(&file, text).unwrap();
        endpoint_binary().arg("--config").arg(&file).ready_when(|line| line == "ready")
    })
    .await
    .unwrap();
    let resolver_address = address(&old, "vpc-a/resolver/udp");
    let (_, answers) = ask(resolver_address, VPC_A_CLIENT, "www.corp.example").await.unwrap();
    assert_eq!(answers, ["www.corp.example. 300 IN A 10.1.0.10"]);

    old.signal(Signal::User2).await.unwrap();
    old.wait_for_stdout("handed over 4 sockets to pid", Duration::from_secs(30)).await.unwrap();
    let lines = old.stdout_lines();
    let successor = signpost_testkit::successor_in(&lines).unwrap_or_else(|| panic!("no successor pid in {lines:?}"));
    let finished = old.wait(PATIENCE).await.unwrap();
    assert!(finished.status.success(), "{finished:?}");
    let (_, answers) = ask(resolver_address, VPC_A_CLIENT, "www.corp.example").await.unwrap();
    assert_eq!(answers, ["www.corp.example. 300 IN A 10.1.0.10"], "the successor answers on the same socket");
    successor.terminate(PATIENCE).await.unwrap();
}
