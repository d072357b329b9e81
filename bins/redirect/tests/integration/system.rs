//! The system integration commands: `systemd-resolved` (with fake
//! resolvectl programs on PATH) and `check` (with a fake "system" resolver
//! on loopback named by --resolv-conf).

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use signpost_wire::{MessageBuilder, NameBuf};

use crate::binary::command;
use crate::support::*;

async fn run(env: &[(&str, &str)], args: &[&str]) -> Output {
    tokio::time::timeout(Duration::from_secs(30), command(env, args).output()).await.unwrap().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory for fake programs, removed on drop.
struct FakeBin(PathBuf);

impl FakeBin {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("signpost-redirect-bin-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn program(&self, name: &str, script: &str) {
        let path = self.0.join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for FakeBin {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn systemd_resolved_dry_run_prints_the_exact_commands() {
    let output = run(&[], &["systemd-resolved", "--dry-run", "--interface", "eth7"]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "resolvectl dns eth7 127.0.0.1\n\
         resolvectl domain eth7 ~amazonaws.com ~aws.amazon.com ~cloudfront.net ~localhost.localstack.cloud\n"
    );
    // Another port and domain list; the port goes into the server address.
    let output = run(
        &[("DNS_PORT", "5353"), ("SIGNPOST_REDIRECT_DOMAINS", "amazonaws.com")],
        &["systemd-resolved", "--dry-run", "--interface", "br-0ae393d3345e"],
    )
    .await;
    assert_eq!(
        text(&output.stdout),
        "resolvectl dns br-0ae393d3345e 127.0.0.1:5353\n\
         resolvectl domain br-0ae393d3345e ~amazonaws.com ~localhost.localstack.cloud\n"
    );
    let output = run(&[], &["systemd-resolved", "--revert", "--dry-run", "--interface", "eth7"]).await;
    assert_eq!(text(&output.stdout), "resolvectl revert eth7\n");
}

#[tokio::test]
async fn systemd_resolved_runs_resolvectl_and_explains_failures() {
    // Missing: an empty PATH.
    let empty = FakeBin::new("empty");
    let output = run(&[("PATH", empty.path())], &["systemd-resolved", "--interface", "eth7"]).await;
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("resolvectl not found"), "{}", text(&output.stderr));

    // Denied: what resolvectl says without privileges.
    let denied = FakeBin::new("denied");
    denied.program("resolvectl", "#!/bin/sh\necho 'Failed to set DNS configuration: Access denied' >&2\nexit 1\n");
    let output = run(&[("PATH", denied.path())], &["systemd-resolved", "--interface", "eth7"]).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("permission denied") && stderr.contains("sudo"), "{stderr}");

    // Working: the commands run in order with the right arguments.
    let working = FakeBin::new("working");
    let log = working.0.join("calls.log");
    working.program("resolvectl", &format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()));
    let output = run(&[("PATH", working.path())], &["systemd-resolved", "--interface", "eth7"]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "dns eth7 127.0.0.1\ndomain eth7 ~amazonaws.com ~aws.amazon.com ~cloudfront.net ~localhost.localstack.cloud\n"
    );
    assert!(text(&output.stdout).contains("--revert"), "says how to undo it");
}

/// A "system resolver" behind a router with DNS-rebind protection: public
/// addresses for AWS names, and answers pointing to 127.0.0.1 dropped
/// (NOERROR with an empty answer).
async fn rebind_protecting_resolver() -> FakeUpstream {
    let localstack: NameBuf = "localhost.localstack.cloud".parse().unwrap();
    FakeUpstream::start(Arc::new(move |query, _| {
        let question = query.first_question().unwrap().unwrap();
        if question.name().is_subdomain_of(&localstack) {
            let mut buffer = Vec::new();
            let mut builder = MessageBuilder::response_to(&mut buffer, query).unwrap();
            let flags = builder.header_mut().flags.with_ra(true);
            builder.set_flags(flags);
            builder.finish().unwrap();
            Some(buffer)
        } else {
            Some(answer_a(query, Ipv4Addr::new(198, 51, 100, 7), 60))
        }
    }))
    .await
}

#[tokio::test]
async fn check_reports_a_system_resolver_that_bypasses_signpost_and_drops_rebinding_answers() {
    let server = start(settings(None)).await;
    let port = server.udp_addrs()[0].port().to_string();
    let router = rebind_protecting_resolver().await;
    let resolv = TempFile::new("check-resolv", &format!("nameserver {}\n", router.address));
    let output = run(&[("DNS_PORT", &port)], &["check", "--resolv-conf", resolv.0.to_str().unwrap()]).await;
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("ok    Signpost on 127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("s3.amazonaws.com A: 198.51.100.7"), "{stdout}");
    assert!(stdout.contains("FAIL  Signpost is not the system resolver"), "{stdout}");
    assert!(stdout.contains("FAIL  DNS-rebind protection"), "{stdout}");
    server.shutdown().await;
}

#[tokio::test]
async fn check_passes_when_the_system_resolver_is_signpost() {
    let server = start(settings(None)).await;
    let address = server.udp_addrs()[0];
    let port = address.port().to_string();
    // The "system" resolv.conf names Signpost itself (with its test port).
    let resolv = TempFile::new("check-resolv", &format!("# test\nnameserver {address}\n"));
    let output = run(&[("DNS_PORT", &port)], &["check", "--resolv-conf", resolv.0.to_str().unwrap()]).await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("sends s3.amazonaws.com to Signpost"), "{stdout}");
    assert!(stdout.contains("Redirection works end to end."), "{stdout}");
    server.shutdown().await;
}

#[tokio::test]
async fn check_says_when_signpost_is_not_running() {
    // A port nobody serves: bind and drop.
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let router = rebind_protecting_resolver().await;
    let resolv = TempFile::new("check-resolv", &format!("nameserver {}\n", router.address));
    let output = run(&[("DNS_PORT", &port)], &["check", "--resolv-conf", resolv.0.to_str().unwrap()]).await;
    let stdout = text(&output.stdout);
    assert!(!output.status.success());
    assert!(stdout.contains(&format!("FAIL  Signpost is not running on 127.0.0.1:{port}")), "{stdout}");
}
