//! The system integration commands: `systemd-resolved` (with fake
//! resolvectl programs on PATH) and `check` (with a fake "system" resolver
//! on loopback named by --resolv-conf).

use std::net::Ipv4Addr;

use signpost_wire::Rcode;

use crate::support::*;

/// A directory of fake programs, as a PATH value.
fn path_of(dir: &TempDir) -> &str {
    dir.path().to_str().unwrap()
}

#[tokio::test]
async fn systemd_resolved_dry_run_prints_the_exact_commands() {
    let output = run(&[], &["systemd-resolved", "--dry-run", "--interface", "eth7"]).await;
    assert!(output.status.success(), "{}", output.stderr);
    assert_eq!(
        output.stdout,
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
        output.stdout,
        "resolvectl dns br-0ae393d3345e 127.0.0.1:5353\n\
         resolvectl domain br-0ae393d3345e ~amazonaws.com ~localhost.localstack.cloud\n"
    );
    let output = run(&[], &["systemd-resolved", "--revert", "--dry-run", "--interface", "eth7"]).await;
    assert_eq!(output.stdout, "resolvectl revert eth7\n");
}

#[tokio::test]
async fn systemd_resolved_runs_resolvectl_and_explains_failures() {
    // Missing: an empty PATH.
    let empty = TempDir::new();
    let output = run(&[("PATH", path_of(&empty))], &["systemd-resolved", "--interface", "eth7"]).await;
    assert!(!output.status.success());
    assert!(output.stderr.contains("resolvectl not found"), "{}", output.stderr);

    // Denied: what resolvectl says without privileges.
    let denied = TempDir::new();
    denied
        .write_program("resolvectl", "#!/bin/sh\necho 'Failed to set DNS configuration: Access denied' >&2\nexit 1\n");
    let output = run(&[("PATH", path_of(&denied))], &["systemd-resolved", "--interface", "eth7"]).await;
    assert!(!output.status.success());
    let stderr = &output.stderr;
    assert!(stderr.contains("permission denied") && stderr.contains("sudo"), "{stderr}");

    // A link that does not exist: resolvectl's words, and which names to use (a Docker bridge's).
    let missing = TempDir::new();
    missing.write_program(
        "resolvectl",
        "#!/bin/sh\necho 'Failed to resolve interface \"br-nope\": No such device' >&2\nexit 1\n",
    );
    let output = run(&[("PATH", path_of(&missing))], &["systemd-resolved", "--interface", "br-nope"]).await;
    assert!(!output.status.success());
    let stderr = &output.stderr;
    assert!(stderr.contains("there is no link \"br-nope\""), "{stderr}");
    assert!(stderr.contains("docker network inspect"), "{stderr}");

    // Working: the commands run in order with the right arguments.
    let working = TempDir::new();
    let log = working.join("calls.log");
    working.write_program("resolvectl", &format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()));
    let output = run(&[("PATH", path_of(&working))], &["systemd-resolved", "--interface", "eth7"]).await;
    assert!(output.status.success(), "{}", output.stderr);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "dns eth7 127.0.0.1\ndomain eth7 ~amazonaws.com ~aws.amazon.com ~cloudfront.net ~localhost.localstack.cloud\n"
    );
    assert!(output.stdout.contains("--revert"), "says how to undo it");
}

/// A "system resolver" behind a router with DNS-rebind protection: public
/// addresses for AWS names, and answers pointing to 127.0.0.1 dropped
/// (NOERROR with an empty answer).
async fn rebind_protecting_resolver() -> FakeUpstream {
    let dropped = Answer::rcode(Rcode::NOERROR);
    FakeUpstream::builder()
        .answer("localhost.localstack.cloud.", None, dropped.clone())
        .answer("*.localhost.localstack.cloud.", None, dropped)
        .otherwise(Answer::addresses([Ipv4Addr::new(198, 51, 100, 7).into()], 60))
        .start()
        .await
        .unwrap()
}

/// `signpost-redirect check` against the DNS port `port`, with a "system"
/// resolv.conf of `resolv_conf`: the run's status and output.
async fn check(port: &str, resolv_conf: &str) -> Finished {
    let dir = TempDir::new();
    let resolv = dir.write("resolv.conf", resolv_conf);
    run(&[("DNS_PORT", port)], &["check", "--resolv-conf", resolv.to_str().unwrap()]).await
}

#[tokio::test]
async fn check_reports_a_system_resolver_that_bypasses_signpost_and_drops_rebinding_answers() {
    let (server, _upstream) = with_upstream(&[]).await;
    let port = server.udp_addrs()[0].port().to_string();
    let router = rebind_protecting_resolver().await;
    let output = check(&port, &format!("nameserver {}\n", router.address())).await;
    let stdout = &output.stdout;
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("ok    [signpost] Signpost on 127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("ok    [upstream] Signpost forwards localstack.cloud upstream"), "{stdout}");
    assert!(stdout.contains("s3.amazonaws.com A: 198.51.100.7"), "{stdout}");
    assert!(stdout.contains("FAIL  [routing] Signpost is not the system resolver"), "{stdout}");
    assert!(stdout.contains("FAIL  [rebind] DNS-rebind protection"), "{stdout}");
    assert!(stdout.contains("Failing: [routing], [rebind]."), "{stdout}");
    server.shutdown().await;
}

#[tokio::test]
async fn check_passes_when_the_system_resolver_is_signpost() {
    let (server, _upstream) = with_upstream(&[]).await;
    let address = server.udp_addrs()[0];
    let port = address.port().to_string();
    // The "system" resolv.conf names Signpost itself (with its test port).
    let output = check(&port, &format!("# test\nnameserver {address}\n")).await;
    let stdout = &output.stdout;
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("sends s3.amazonaws.com to Signpost"), "{stdout}");
    assert!(stdout.contains("Redirection works end to end."), "{stdout}");
    server.shutdown().await;
}

#[tokio::test]
async fn check_says_when_signpost_is_not_running() {
    // A port nobody serves: bind and drop.
    let port = signpost_testkit::closed_udp_port().port().to_string();
    let router = rebind_protecting_resolver().await;
    let output = check(&port, &format!("nameserver {}\n", router.address())).await;
    let stdout = &output.stdout;
    assert!(!output.status.success());
    assert!(stdout.contains(&format!("FAIL  [signpost] Signpost is not running on 127.0.0.1:{port}")), "{stdout}");
}

#[tokio::test]
async fn check_names_the_upstream_when_signpost_cannot_forward() {
    // Signpost without an upstream: redirected names answer, forwarded ones get SERVFAIL.
    let server = start(settings(None)).await;
    let address = server.udp_addrs()[0];
    let port = address.port().to_string();
    let output = check(&port, &format!("nameserver {address}\n")).await;
    let stdout = &output.stdout;
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("FAIL  [upstream] Signpost cannot forward: localstack.cloud gets no address (SERVFAIL)"));
    assert!(stdout.contains("ok    [routing]"), "{stdout}");
    assert!(stdout.contains("Failing: [upstream]."), "{stdout}");
    server.shutdown().await;
}
