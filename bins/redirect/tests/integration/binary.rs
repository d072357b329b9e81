//! End-to-end tests of the binary: started as a child process on loopback
//! with a free port, its bound address read from its start-up output.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::proto::rr::RecordType as T;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::support::*;

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_signpost-redirect");

/// The binary with a clean environment: only what the test gives.
pub(crate) fn command(env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut command = Command::new(BINARY);
    command.env_clear().env("RUST_LOG", "info").envs(env.iter().copied()).args(args);
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    command
}

/// A running signpost-redirect.
struct Running {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// The start-up output up to and including the last line read.
    stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
    address: SocketAddr,
}

impl Running {
    /// Start the binary; with a free port (0) the UDP port's number may be
    /// taken for TCP, so a bind failure is tried again.
    async fn start(env: &[(&str, &str)], args: &[&str]) -> Self {
        for _ in 0..5 {
            if let Some(running) = Self::try_start(env, args).await {
                return running;
            }
        }
        panic!("the binary could not bind a free port in 5 tries")
    }

    async fn try_start(env: &[(&str, &str)], args: &[&str]) -> Option<Self> {
        let mut child = command(env, args).spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let collected = stderr.clone();
        tokio::spawn(async move {
            let mut buffer = [0u8; 4096];
            while let Ok(read) = pipe.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
                collected.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..read]));
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stdout = Vec::new();
        let address = loop {
            let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                .await
                .expect("start-up output within 20 s")
                .unwrap();
            let Some(line) = line else {
                let _ = child.wait().await;
                let stderr = stderr.lock().unwrap().clone();
                assert!(stderr.contains("cannot listen"), "the binary exited; stderr: {stderr}");
                return None;
            };
            stdout.push(line.clone());
            if let Some(address) = parse_startup(&line) {
                break address;
            }
        };
        let mut running = Self { child, lines, stdout, stderr, address };
        // The start-up block ends with the query-log line.
        running.read_until(|line| line.starts_with("Query log")).await;
        Some(running)
    }

    async fn read_until(&mut self, done: impl Fn(&str) -> bool) {
        while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(5), self.lines.next_line()).await {
            self.stdout.push(line.clone());
            if done(&line) {
                return;
            }
        }
    }

    /// SIGTERM, then wait: the exit status and the rest of stdout.
    async fn terminate(mut self) -> (bool, Vec<String>, String) {
        let pid = self.child.id().unwrap();
        let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
        assert!(status.success());
        while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line()).await {
            self.stdout.push(line);
        }
        let exit = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.unwrap().unwrap();
        let stderr = self.stderr.lock().unwrap().clone();
        (exit.success(), self.stdout, stderr)
    }
}

/// `Starting DNS servers (tcp/udp port 40123 on 127.0.0.1)...` → 127.0.0.1:40123.
pub(crate) fn parse_startup(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix("Starting DNS servers (tcp/udp port ")?.strip_suffix(")...")?;
    let (port, address) = rest.split_once(" on ")?;
    Some(SocketAddr::new(address.parse().ok()?, port.parse().ok()?))
}

#[tokio::test]
async fn the_binary_starts_prints_the_real_port_redirects_and_forwards() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 77)).await;
    let server = upstream.address.to_string();
    let running = Running::start(&[("DNS_PORT", "0"), ("DNS_SERVER", &server)], &[]).await;
    assert_eq!(running.address.ip().to_string(), "127.0.0.1", "DNS_ADDRESS defaults to 127.0.0.1");
    assert_ne!(running.address.port(), 0);
    assert!(running.stdout.contains(&format!("Upstream DNS servers: {server} (DNS_SERVER)")), "{:?}", running.stdout);
    assert!(running.stdout.contains(
        &"Redirected domains: amazonaws.com, aws.amazon.com, cloudfront.net, localhost.localstack.cloud".to_owned()
    ));
    for protocol in ["udp", "tcp"] {
        let resolver = resolver(protocol, running.address);
        assert_eq!(ask(&resolver, "test.localhost.localstack.cloud.", T::A).await, addresses(&["127.0.0.1"]));
        assert_eq!(ask(&resolver, "s3.amazonaws.com.", T::A).await, addresses(&["127.0.0.1"]));
        assert_eq!(ask(&resolver, "s3.amazonaws.com.", T::AAAA).await, addresses(&["::1"]));
        let name = format!("{protocol}.secret-project.example.");
        assert_eq!(ask(&resolver, &name, T::A).await, addresses(&["192.0.2.77"]));
    }
    let (clean, stdout, stderr) = running.terminate().await;
    assert!(clean, "SIGTERM is a clean exit; stderr: {stderr}");
    // Forwarded queries are neither logged nor printed by default.
    let all = format!("{}\n{stderr}", stdout.join("\n"));
    assert!(!all.contains("secret-project"), "{all}");
}

#[tokio::test]
async fn the_query_log_can_be_turned_on() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 77)).await;
    let server = upstream.address.to_string();
    let running =
        Running::start(&[("DNS_PORT", "0"), ("DNS_SERVER", &server), ("SIGNPOST_QUERY_LOG", "stdout")], &[]).await;
    assert!(!running.stdout.iter().any(|line| line.starts_with("Query log: off")));
    let resolver = resolver("udp", running.address);
    assert_eq!(ask(&resolver, "logged.example.", T::A).await, addresses(&["192.0.2.77"]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, stdout, _) = running.terminate().await;
    assert!(stdout.iter().any(|line| line.contains("logged.example") && line.contains("query_name")), "{stdout:?}");
}

#[tokio::test]
async fn dns_address_0_disables_dns_and_exits_cleanly() {
    let output = tokio::time::timeout(Duration::from_secs(10), command(&[("DNS_ADDRESS", "0")], &[]).output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.trim(), "DNS is disabled (DNS_ADDRESS=0): not starting the DNS server.");
    // The flag form too.
    let output = command(&[], &["--dns-address", "0"]).output().await.unwrap();
    assert!(output.status.success());
}

#[tokio::test]
async fn a_port_in_use_is_explained_with_what_to_do() {
    let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let output = tokio::time::timeout(Duration::from_secs(10), command(&[("DNS_PORT", &port)], &[]).output())
        .await
        .unwrap()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("port {port} is already in use")), "{stderr}");
    assert!(stderr.contains("(pid "), "names the holder: {stderr}");
    assert!(stderr.contains("DNS_PORT=5353"), "{stderr}");
    drop(holder);
}

#[tokio::test]
async fn bad_settings_name_the_variable() {
    let output = command(&[("DNS_SERVER", "dns.google")], &[]).output().await.unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DNS_SERVER=\"dns.google\""), "{stderr}");
}

#[tokio::test]
async fn the_config_file_is_read_and_the_environment_overrides_it() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 77)).await;
    let config = TempFile::new(
        "config",
        &format!(
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
            upstream.address
        ),
    );
    let path = config.0.to_str().unwrap();
    let running = Running::start(&[("DNS_RESOLVE_IP", "10.1.1.1")], &["--config", path]).await;
    let resolver = resolver("tcp", running.address);
    assert_eq!(ask(&resolver, "s3.amazonaws.com.", T::A).await, addresses(&["10.1.1.1"]), "the variable wins");
    assert_eq!(ask(&resolver, "db.internal.test.", T::A).await, addresses(&["10.0.0.5"]), "extra local records");
    assert!(running.stdout.iter().any(|line| line.ends_with("TTL 30")), "{:?}", running.stdout);
    let (clean, _, _) = running.terminate().await;
    assert!(clean);
}

#[tokio::test]
async fn dns_local_name_patterns_logs_a_notice_and_limits_the_redirect() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 77)).await;
    let server = upstream.address.to_string();
    let running = Running::start(
        &[
            ("DNS_PORT", "0"),
            ("DNS_SERVER", &server),
            ("DNS_LOCAL_NAME_PATTERNS", ".*(ecr|lambda).*.amazonaws.com"),
            ("DNS_NAME_PATTERNS_TO_RESOLVE_UPSTREAM", r".*\.eu-west-1\..*"),
        ],
        &[],
    )
    .await;
    let resolver = resolver("udp", running.address);
    assert_eq!(ask(&resolver, "api.ecr.us-east-1.amazonaws.com.", T::A).await, addresses(&["127.0.0.1"]));
    assert_eq!(ask(&resolver, "api.ecr.eu-west-1.amazonaws.com.", T::A).await, addresses(&["192.0.2.77"]));
    assert_eq!(ask(&resolver, "sqs.us-east-1.amazonaws.com.", T::A).await, addresses(&["192.0.2.77"]));
    let (_, stdout, stderr) = running.terminate().await;
    let notices: Vec<&str> = stderr.lines().filter(|line| line.contains("DNS_LOCAL_NAME_PATTERNS is set")).collect();
    assert_eq!(notices.len(), 1, "one line: {stderr}");
    assert!(notices[0].contains("deprecated alias"), "{stderr}");
    assert!(stdout.iter().any(|line| line.starts_with("Only names matching DNS_LOCAL_NAME_PATTERNS")));
}

#[tokio::test]
async fn sighup_reloads_the_config_file_and_keeps_serving() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 77)).await;
    let text = |ip: &str| format!("[redirect]\nport = 0\nserver = \"{}\"\nresolve_ip = \"{ip}\"\n", upstream.address);
    let config = TempFile::new("reload", &text("10.0.0.1"));
    let running = Running::start(&[], &["--config", config.0.to_str().unwrap()]).await;
    let resolver = resolver("udp", running.address);
    assert_eq!(ask(&resolver, "s3.amazonaws.com.", T::A).await, addresses(&["10.0.0.1"]));
    std::fs::write(&config.0, text("10.0.0.2")).unwrap();
    let pid = running.child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let mut reloaded = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if ask(&resolver, "s3.amazonaws.com.", T::A).await == addresses(&["10.0.0.2"]) {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "SIGHUP reloads the configuration");
    let (clean, _, stderr) = running.terminate().await;
    assert!(clean);
    assert!(stderr.contains("configuration reloaded"), "{stderr}");
}
