//! The binary as a user runs it: `check-config`, start-up output, SIGHUP.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use signpost_endpoint::EndpointConfig;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::*;

const BINARY: &str = env!("CARGO_BIN_EXE_signpost-endpoint");

fn config_text(recursive: SocketAddr, inbound_protocols: &str, www: &str, certificate: &TestCertificate) -> String {
    format!(
        r#"
resolver_port = 0
udp_workers = 1

[recursive]
servers = ["{recursive}"]

[tls]
cert = "{cert}"
key = "{key}"

[[vpcs]]
id = "vpc-a"
cidrs = ["127.0.1.0/24"]

[[vpcs]]
id = "vpc-b"
cidrs = ["127.0.2.0/24"]

[[private_hosted_zones]]
name = "corp.example"
vpcs = ["vpc-a"]
records = ["www A {www}"]

[[outbound_endpoints]]
id = "rslvr-out-a"
vpc = "vpc-a"

[[resolver_rules]]
id = "rslvr-rr-onprem"
type = "FORWARD"
domain = "onprem.example"
outbound_endpoint = "rslvr-out-a"
targets = [{{ ip = "127.0.0.1", port = 5301 }}]
vpcs = ["vpc-a"]

[[resolver_rules]]
id = "rslvr-rr-public"
type = "SYSTEM"
domain = "www.onprem.example"
vpcs = ["vpc-a"]

[[resolver_rules]]
id = "rslvr-rr-idle"
type = "SYSTEM"
domain = "idle.example"

[[inbound_endpoints]]
id = "rslvr-in-a"
vpc = "vpc-a"
addresses = ["127.0.1.10", "127.0.1.11"]
protocols = {inbound_protocols}
port = 0
doh_port = 0
"#,
        cert = certificate.cert.display(),
        key = certificate.key.display(),
    )
}

#[test]
fn check_config_prints_where_each_vpc_s_domains_go() {
    let dir = temp_dir("check-config");
    let certificate = certificate(&dir.0);
    let file = dir.0.join("endpoint.toml");
    std::fs::write(
        &file,
        config_text("127.0.0.1:5300".parse().unwrap(), r#"["Do53", "DoH"]"#, "10.1.0.10", &certificate),
    )
    .unwrap();
    let output = std::process::Command::new(BINARY).arg("check-config").arg(&file).output().unwrap();
    let stdout = squeeze(&String::from_utf8_lossy(&output.stdout));
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
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

#[test]
fn check_config_rejects_doh_with_doh_fips_naming_the_line() {
    let dir = temp_dir("check-config-bad");
    let certificate = certificate(&dir.0);
    let file = dir.0.join("endpoint.toml");
    let text = config_text("127.0.0.1:5300".parse().unwrap(), r#"["DoH", "DoH-FIPS"]"#, "10.1.0.10", &certificate);
    std::fs::write(&file, &text).unwrap();
    let output = std::process::Command::new(BINARY).arg("check-config").arg(&file).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = text.lines().position(|line| line.starts_with("protocols = [\"DoH\"")).unwrap() + 1;
    assert!(stderr.contains(&format!("endpoint.toml:{line}:")), "{stderr}");
    assert!(stderr.contains("inbound endpoint \"rslvr-in-a\": DoH and DoH-FIPS cannot be used together"), "{stderr}");
}

#[test]
fn the_example_configuration_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/endpoint.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let parsed = EndpointConfig::from_toml(&text, &example).unwrap();
    assert_eq!(parsed.vpcs.len(), 2);
    assert_eq!(parsed.inbound_endpoints[0].addresses.len(), 2);
    // Check it as a user would, beside the TLS files it names.
    let dir = temp_dir("example");
    std::fs::create_dir_all(dir.0.join("tls")).unwrap();
    let certificate = certificate(&dir.0);
    std::fs::copy(&certificate.cert, dir.0.join("tls/endpoint.pem")).unwrap();
    std::fs::copy(&certificate.key, dir.0.join("tls/endpoint.key")).unwrap();
    std::fs::copy(&certificate.cert, dir.0.join("tls/onprem-ca.pem")).unwrap();
    let file = dir.0.join("endpoint.toml");
    std::fs::write(&file, &text).unwrap();
    let output = std::process::Command::new(BINARY).arg("check-config").arg(&file).output().unwrap();
    let stdout = squeeze(&String::from_utf8_lossy(&output.stdout));
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
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

/// The binary running in the background; killed on drop.
struct Running {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Running {
    fn start(file: &Path) -> Self {
        let mut child = Command::new(BINARY)
            .arg("--config")
            .arg(file)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let sink = stdout.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = errors.next_line().await {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Self { child, stdout, stderr }
    }

    /// Wait (10 s at most) until stdout has a line containing `text`, counting from line `from`.
    async fn wait_for_line(&self, from: usize, text: &str) -> usize {
        for _ in 0..500 {
            if let Some(index) = self.stdout.lock().unwrap().iter().skip(from).position(|line| line.contains(text)) {
                return from + index;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no {text:?} in {:?}; stderr: {}", self.stdout.lock().unwrap(), self.stderr.lock().unwrap());
    }

    async fn wait_for_error(&self, text: &str) -> String {
        for _ in 0..500 {
            let stderr = self.stderr.lock().unwrap().clone();
            if stderr.contains(text) {
                return stderr;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no {text:?} in stderr: {}", self.stderr.lock().unwrap());
    }

    /// `listening ID TRANSPORT ADDRESS ...` lines: the address of listener `id`.
    fn address(&self, id: &str) -> SocketAddr {
        let lines = self.stdout.lock().unwrap();
        lines
            .iter()
            .rev()
            .filter_map(|line| line.strip_prefix("listening "))
            .find_map(|rest| {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                (fields.first() == Some(&id)).then(|| fields[2].parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no listener {id} in {lines:?}"))
    }

    fn signal(&self, signal: i32) {
        let pid = self.child.id().unwrap() as i32;
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }
}

#[tokio::test]
async fn the_binary_prints_its_addresses_and_reloads_on_sighup_with_the_transition_checks() {
    let dir = temp_dir("binary");
    let certificate = certificate(&dir.0);
    let recursive = FakeUpstream::answering(RECURSIVE_ANSWER).await;
    let file = dir.0.join("endpoint.toml");
    std::fs::write(&file, config_text(recursive.address, r#"["Do53"]"#, "10.1.0.10", &certificate)).unwrap();
    let mut running = Running::start(&file);
    running.wait_for_line(0, "ready").await;
    {
        let lines = running.stdout.lock().unwrap().clone();
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
    let resolver_address = running.address("vpc-a/resolver/udp");
    let endpoint_address = running.address("rslvr-in-a/127.0.1.10/udp");
    let (_, answers) = ask(resolver_address, VPC_A_CLIENT, "www.corp.example").await.unwrap();
    assert_eq!(answers, ["www.corp.example. 300 IN A 10.1.0.10"]);

    // Do53 straight to DoH: rejected, and Do53 keeps answering.
    std::fs::write(&file, config_text(recursive.address, r#"["DoH"]"#, "10.1.0.10", &certificate)).unwrap();
    running.signal(libc::SIGHUP);
    let stderr = running.wait_for_error("reload rejected").await;
    assert!(stderr.contains("must pass through Do53+DoH"), "{stderr}");
    let (_, answers) = ask(endpoint_address, ONPREM_CLIENT, "www.corp.example").await.unwrap();
    assert_eq!(answers, ["www.corp.example. 300 IN A 10.1.0.10"]);

    // A record change reloads in place: same addresses, new answer.
    let seen = running.stdout.lock().unwrap().len();
    std::fs::write(&file, config_text(recursive.address, r#"["Do53"]"#, "10.1.0.99", &certificate)).unwrap();
    running.signal(libc::SIGHUP);
    running.wait_for_line(seen, "swapped in place").await;
    let (_, answers) = ask(resolver_address, VPC_A_CLIENT, "www.corp.example").await.unwrap();
    assert_eq!(answers, ["www.corp.example. 300 IN A 10.1.0.99"]);

    // Do53 to Do53+DoH restarts the listeners and lists them again, DoH included.
    let seen = running.stdout.lock().unwrap().len();
    std::fs::write(&file, config_text(recursive.address, r#"["Do53", "DoH"]"#, "10.1.0.99", &certificate)).unwrap();
    running.signal(libc::SIGHUP);
    running.wait_for_line(seen, "server restarted").await;
    let ready = running.wait_for_line(seen, "ready").await;
    let doh_line = running.wait_for_line(seen, "listening rslvr-in-a/127.0.1.10/doh doh ").await;
    assert!(doh_line < ready);
    let doh = running.address("rslvr-in-a/127.0.1.10/doh");
    let client = resolver("https", doh, None, Some(client_tls(&certificate)));
    assert_eq!(lookup_v4(&client, "www.corp.example.").await, [std::net::Ipv4Addr::new(10, 1, 0, 99)]);

    running.signal(libc::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(10), running.child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
}
