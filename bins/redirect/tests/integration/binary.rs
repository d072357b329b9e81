//! End-to-end tests of the binary: started as a child process on loopback
//! with a free port, its bound address read from its start-up output.

use std::time::Duration;

use signpost_wire::RecordType as T;

use crate::support::*;

#[tokio::test]
async fn the_binary_starts_prints_the_real_port_redirects_and_forwards() {
    let upstream = FakeUpstream::answering(FORWARDED).await;
    let server = upstream.address().to_string();
    let (running, address) = start_binary(&[("DNS_PORT", "0"), ("DNS_SERVER", &server)], &[]).await;
    assert_eq!(address.ip().to_string(), "127.0.0.1");
    assert_ne!(address.port(), 0);
    let stdout = running.stdout_lines();
    assert!(stdout.contains(&format!("Upstream DNS servers: {server} (DNS_SERVER)")), "{stdout:?}");
    assert!(stdout.contains(
        &"Redirected domains: amazonaws.com, aws.amazon.com, cloudfront.net, localhost.localstack.cloud".to_owned()
    ));
    for protocol in [Transport::Udp, Transport::Tcp] {
        let resolver = resolver(protocol, address);
        assert_eq!(lookup(&resolver, "test.localhost.localstack.cloud.", T::A).await, answered(&["127.0.0.1"]));
        assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::A).await, answered(&["127.0.0.1"]));
        assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::AAAA).await, answered(&["::1"]));
        let name = format!("{protocol}.secret-project.example.");
        assert_eq!(lookup(&resolver, &name, T::A).await, answered(&["192.0.2.77"]));
    }
    let Finished { status, stdout, stderr } = terminate(running).await;
    assert!(status.success(), "SIGTERM is a clean exit; stderr: {stderr}");
    // Forwarded queries are neither logged nor printed by default.
    let all = format!("{stdout}\n{stderr}");
    assert!(!all.contains("secret-project"), "{all}");
}

#[tokio::test]
async fn the_query_log_can_be_turned_on() {
    let upstream = FakeUpstream::answering(FORWARDED).await;
    let server = upstream.address().to_string();
    let (running, address) =
        start_binary(&[("DNS_PORT", "0"), ("DNS_SERVER", &server), ("SIGNPOST_QUERY_LOG", "stdout")], &[]).await;
    assert!(!running.stdout_lines().iter().any(|line| line.starts_with("Query log: off")));
    let resolver = resolver(Transport::Udp, address);
    assert_eq!(lookup(&resolver, "logged.example.", T::A).await, answered(&["192.0.2.77"]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stdout = terminate(running).await.stdout;
    assert!(stdout.lines().any(|line| line.contains("logged.example") && line.contains("query_name")), "{stdout}");
}

#[tokio::test]
async fn dns_address_0_disables_dns_and_exits_cleanly() {
    let output = run(&[("DNS_ADDRESS", "0")], &[]).await;
    assert!(output.status.success());
    assert_eq!(output.stdout.trim(), "DNS is disabled (DNS_ADDRESS=0): not starting the DNS server.");
    // The flag form too.
    assert!(run(&[], &["--dns-address", "0"]).await.status.success());
}

#[tokio::test]
async fn a_port_in_use_is_explained_with_what_to_do() {
    let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let Finished { status, stderr, .. } = run(&[("DNS_PORT", &port)], &[]).await;
    assert!(!status.success());
    assert!(stderr.contains(&format!("port {port} is already in use")), "{stderr}");
    assert!(stderr.contains("(pid "), "names the holder: {stderr}");
    assert!(stderr.contains("DNS_PORT=5353"), "{stderr}");
    drop(holder);
}

#[tokio::test]
async fn bad_settings_name_the_variable() {
    let Finished { status, stderr, .. } = run(&[("DNS_SERVER", "dns.google")], &[]).await;
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("DNS_SERVER=\"dns.google\""), "{stderr}");
}

#[tokio::test]
async fn the_config_file_is_read_and_the_environment_overrides_it() {
    let upstream = FakeUpstream::answering(FORWARDED).await;
    let dir = TempDir::new();
    let config = dir.write(
        "redirect.toml",
        format!(
            r#"
[redirect]
port = 0
server = "{}"
resolve_ip = "10.9.9.9"
ttl = 30

[[rules.host_tables]]
name = "services"
hosts = [{{ name = "db.internal.test", addresses = ["10.0.0.5"] }}]
"#,
            upstream.address()
        ),
    );
    let path = config.to_str().unwrap();
    let (running, address) = start_binary(&[("DNS_RESOLVE_IP", "10.1.1.1")], &["--config", path]).await;
    let resolver = resolver(Transport::Tcp, address);
    assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::A).await, answered(&["10.1.1.1"]), "the variable wins");
    assert_eq!(lookup(&resolver, "db.internal.test.", T::A).await, answered(&["10.0.0.5"]), "extra local records");
    assert!(running.stdout_lines().iter().any(|line| line.contains("TTL 30;")), "{:?}", running.stdout_lines());
    let finished = terminate(running).await;
    assert!(finished.status.success(), "{finished:?}");
}

#[tokio::test]
async fn dns_local_name_patterns_logs_a_notice_and_limits_the_redirect() {
    let upstream = FakeUpstream::answering(FORWARDED).await;
    let server = upstream.address().to_string();
    let (running, address) = start_binary(
        &[
            ("DNS_PORT", "0"),
            ("DNS_SERVER", &server),
            ("DNS_LOCAL_NAME_PATTERNS", ".*(ecr|lambda).*.amazonaws.com"),
            ("DNS_NAME_PATTERNS_TO_RESOLVE_UPSTREAM", r".*\.eu-west-1\..*"),
        ],
        &[],
    )
    .await;
    let resolver = resolver(Transport::Udp, address);
    assert_eq!(lookup(&resolver, "api.ecr.us-east-1.amazonaws.com.", T::A).await, answered(&["127.0.0.1"]));
    assert_eq!(lookup(&resolver, "api.ecr.eu-west-1.amazonaws.com.", T::A).await, answered(&["192.0.2.77"]));
    assert_eq!(lookup(&resolver, "sqs.us-east-1.amazonaws.com.", T::A).await, answered(&["192.0.2.77"]));
    let Finished { stdout, stderr, .. } = terminate(running).await;
    let notices: Vec<&str> = stderr.lines().filter(|line| line.contains("DNS_LOCAL_NAME_PATTERNS is set")).collect();
    assert_eq!(notices.len(), 1, "one line: {stderr}");
    assert!(notices[0].contains("deprecated alias"), "{stderr}");
    assert!(stdout.lines().any(|line| line.starts_with("Only names matching DNS_LOCAL_NAME_PATTERNS")));
}

#[tokio::test]
async fn sighup_reloads_the_config_file_and_keeps_serving() {
    let upstream = FakeUpstream::answering(FORWARDED).await;
    let text = |ip: &str| format!("[redirect]\nport = 0\nserver = \"{}\"\nresolve_ip = \"{ip}\"\n", upstream.address());
    let dir = TempDir::new();
    let config = dir.write("redirect.toml", text("10.0.0.1"));
    let (running, address) = start_binary(&[], &["--config", config.to_str().unwrap()]).await;
    let resolver = resolver(Transport::Udp, address);
    assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::A).await, answered(&["10.0.0.1"]));
    dir.write("redirect.toml", text("10.0.0.2"));
    running.signal(Signal::Hangup).await.unwrap();
    let resolver = &resolver;
    let reloaded = eventually(Duration::from_secs(5), move || async move {
        lookup(resolver, "s3.amazonaws.com.", T::A).await == answered(&["10.0.0.2"])
    })
    .await;
    assert!(reloaded, "SIGHUP reloads the configuration");
    let Finished { status, stderr, .. } = terminate(running).await;
    assert!(status.success());
    assert!(stderr.contains("configuration reloaded"), "{stderr}");
}

/// `--user nobody` (or SIGNPOST_USER): after binding, the process runs as
/// nobody with CAP_NET_BIND_SERVICE alone, and still answers. Needs root.
#[tokio::test]
async fn user_gives_up_root_after_binding() {
    assert!(signpost_testkit::Credentials::running_as_root(), "this test needs root: it setuid()s");
    let upstream = FakeUpstream::answering(FORWARDED).await;
    let server = upstream.address().to_string();
    let (running, address) =
        start_binary(&[("DNS_PORT", "0"), ("DNS_SERVER", &server), ("SIGNPOST_USER", "nobody")], &[]).await;
    let credentials = signpost_testkit::Credentials::of(running.pid().unwrap()).unwrap();
    assert_eq!(credentials.uids, [65_534; 4], "{credentials:?}");
    assert_eq!(credentials.effective_capabilities, 1 << 10, "CAP_NET_BIND_SERVICE alone");
    let resolver = resolver(Transport::Udp, address);
    assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::A).await, answered(&["127.0.0.1"]));
    assert_eq!(lookup(&resolver, "www.example.", T::A).await, answered(&["192.0.2.77"]));
    assert!(terminate(running).await.status.success());
}

#[tokio::test]
async fn sigusr2_hands_the_sockets_over_to_a_new_process() {
    let upstream = FakeUpstream::answering(FORWARDED).await;
    let server = upstream.address().to_string();
    // Port 0 always means a new socket: a hand-over needs a fixed port.
    let (old, _) = signpost_testkit::start_on_free_port(|port| {
        redirect(&[("DNS_PORT", &port.to_string()), ("DNS_SERVER", &server)], &[])
    })
    .await
    .unwrap();
    let address = *old.addresses(parse_startup).first().expect("a start-up line with the address");
    let resolver = resolver(Transport::Udp, address);
    assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::A).await, answered(&["127.0.0.1"]));

    old.signal(Signal::User2).await.unwrap();
    // Every UDP worker's socket (one per core) and the TCP one.
    old.wait_for_stderr("handed over ", Duration::from_secs(30)).await.unwrap();
    let lines = old.stdout_lines();
    let successor = signpost_testkit::successor_in(&lines).unwrap_or_else(|| panic!("no successor pid in {lines:?}"));
    let finished = old.wait(Duration::from_secs(10)).await.unwrap();
    assert!(finished.status.success(), "{}", finished.stderr);
    let resolver = crate::support::resolver(Transport::Tcp, address);
    assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::A).await, answered(&["127.0.0.1"]), "the successor answers");
    successor.terminate(Duration::from_secs(10)).await.unwrap();
}
