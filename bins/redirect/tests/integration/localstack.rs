//! LocalStack's variables, one test each (issue 15): DNS_ADDRESS's default
//! and its fallback, DNS_VERIFICATION_DOMAIN, LOCALSTACK_HOST,
//! DISABLE_TRANSPARENT_ENDPOINT_INJECTION, unknown DNS_* variables, and
//! LocalStack's host-prefix names. Every "resolv.conf" here names fake
//! servers on loopback; this machine's resolver is never asked.

use std::net::SocketAddr;
use std::path::PathBuf;

use signpost_redirect::{RedirectServer, UpstreamSource, Verification};
use signpost_testkit::free_port;
use signpost_wire::RecordType as T;

use crate::support::*;

#[tokio::test]
async fn dns_address_defaults_to_every_address_and_says_who_is_answered() {
    let upstream = FakeUpstream::answering(FORWARDED).await;
    let server = upstream.address().to_string();
    let output_env = [
        ("DNS_PORT", "0"),
        ("DNS_SERVER", server.as_str()),
        ("SIGNPOST_RESOLV_CONF", "/nonexistent/signpost-test/resolv.conf"),
    ];
    // No DNS_ADDRESS at all: LocalStack's default, 0.0.0.0.
    let running = redirect_with_exactly(&output_env, &[]).start().await.unwrap();
    let stdout = running.stdout_lines();
    terminate(running).await;
    assert!(
        stdout[0].starts_with("Starting DNS servers (tcp/udp port ") && stdout[0].ends_with(" on 0.0.0.0)..."),
        "{stdout:?}"
    );
    assert!(
        stdout.iter().any(|line| line.starts_with(
            "Listening on every address: only clients on loopback and private networks (127.0.0.0/8, 10.0.0.0/8, \
             172.16.0.0/12"
        ) && line.ends_with("others get REFUSED, so this is not an open resolver")),
        "{stdout:?}"
    );
}

/// A UDP port held on 127.0.0.53 (as systemd-resolved holds 53) and free
/// on 127.0.0.1: 0.0.0.0 cannot be bound on it, 127.0.0.1 can.
fn held_on_127_0_0_53() -> (std::net::UdpSocket, u16) {
    loop {
        let port = free_port();
        if let Ok(holder) = std::net::UdpSocket::bind(("127.0.0.53", port)) {
            return (holder, port);
        }
    }
}

#[tokio::test]
async fn dns_address_falls_back_to_127_0_0_1_when_the_port_is_taken_on_another_address() {
    let upstream = FakeUpstream::answering(FORWARDED).await;
    let (holder, port) = held_on_127_0_0_53();
    let mut settings = settings(Some(&upstream));
    settings.set("DNS_ADDRESS", "0.0.0.0").unwrap();
    settings.set("DNS_PORT", &port.to_string()).unwrap();
    let server = RedirectServer::builder(settings).start().await.unwrap();
    assert_eq!(server.udp_addrs(), [SocketAddr::from(([127, 0, 0, 1], port))]);
    let fallback = server.fallback().expect("fell back");
    assert_eq!(fallback.wanted, SocketAddr::from(([0, 0, 0, 0], port)));
    let lines = server.startup_lines();
    assert_eq!(lines[0], format!("Starting DNS servers (tcp/udp port {port} on 127.0.0.1)..."));
    assert!(lines[1].starts_with(&format!("DNS_ADDRESS 0.0.0.0: cannot listen on 0.0.0.0:{port} (")), "{lines:?}");
    assert!(lines[1].contains("listening on 127.0.0.1 instead"), "{lines:?}");
    let resolver = resolver(Transport::Udp, server.udp_addrs()[0]);
    assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::A).await, answered(&["127.0.0.1"]));
    server.shutdown().await;

    // An address given explicitly does not fall back.
    let mut settings = crate::support::settings(Some(&upstream));
    settings.set("DNS_ADDRESS", "127.0.0.53").unwrap();
    settings.set("DNS_PORT", &port.to_string()).unwrap();
    let error = RedirectServer::builder(settings).start().await.expect_err("taken");
    assert!(error.as_bind_error().is_some(), "{error}");
    drop(holder);
}

#[tokio::test]
async fn the_binary_prints_the_fallback_and_answers_on_127_0_0_1() {
    let upstream = FakeUpstream::answering(FORWARDED).await;
    let (_holder, port) = held_on_127_0_0_53();
    let (port, server) = (port.to_string(), upstream.address().to_string());
    let env = [
        ("DNS_PORT", port.as_str()),
        ("DNS_SERVER", server.as_str()),
        ("SIGNPOST_RESOLV_CONF", "/nonexistent/signpost-test/resolv.conf"),
    ];
    let running = redirect_with_exactly(&env, &[]).start().await.unwrap();
    let stdout = running.stdout_lines();
    assert_eq!(
        stdout.first().map(String::as_str),
        Some(&*format!("Starting DNS servers (tcp/udp port {port} on 127.0.0.1)..."))
    );
    assert!(stdout.iter().any(|line| line.contains("listening on 127.0.0.1 instead")), "{stdout:?}");
    let resolver = resolver(Transport::Tcp, format!("127.0.0.1:{port}").parse().unwrap());
    assert_eq!(lookup(&resolver, "sqs.us-east-1.amazonaws.com.", T::A).await, answered(&["127.0.0.1"]));
    terminate(running).await;
}

/// A resolv.conf naming these loopback servers (with their ports, an extension glibc does not read).
fn resolv_conf(dir: &TempDir, servers: &[SocketAddr]) -> PathBuf {
    let text: String = servers.iter().map(|server| format!("nameserver {server}\n")).collect();
    dir.write("resolv.conf", text)
}

#[tokio::test]
async fn dns_verification_domain_puts_the_first_server_that_answers_first() {
    let silent = FakeUpstream::silent().await;
    let good = FakeUpstream::answering(FORWARDED).await;
    let dir = TempDir::new();
    let resolv = resolv_conf(&dir, &[silent.address(), good.address()]);
    let mut settings = settings(None);
    settings.resolv_conf = resolv.clone();
    settings.set("DNS_VERIFICATION_DOMAIN", "verify.test").unwrap();
    let server = start(settings).await;
    let choice = server.upstream();
    assert_eq!(choice.source, UpstreamSource::ResolvConf(resolv.clone()));
    assert_eq!(choice.servers, [good.address(), silent.address()], "the verified one first, the other as fallback");
    assert_eq!(
        choice.verification,
        Some(Verification::Answered {
            domain: "verify.test".into(),
            server: good.address(),
            unanswered: vec![silent.address()]
        })
    );
    // Each candidate was asked once, the one after the answer not at all.
    assert_eq!(silent.names(), ["verify.test."]);
    assert_eq!(good.names(), ["verify.test."]);
    let line = server.startup_lines().into_iter().find(|line| line.starts_with("Upstream DNS servers:")).unwrap();
    assert!(
        line.contains(&format!("{} answered verify.test (DNS_VERIFICATION_DOMAIN) and is used first", good.address())),
        "{line}"
    );
    // Forwarded queries go to it straight away.
    let resolver = resolver(Transport::Udp, server.udp_addrs()[0]);
    assert_eq!(lookup(&resolver, "www.example.com.", T::A).await, answered(&["192.0.2.77"]));
    assert_eq!(silent.query_count(), 1, "the silent one was not asked again");
    server.shutdown().await;
}

#[tokio::test]
async fn when_no_candidate_answers_the_verification_domain_all_are_kept_and_it_is_said() {
    let first = FakeUpstream::silent().await;
    let second = FakeUpstream::silent().await;
    let dir = TempDir::new();
    let resolv = resolv_conf(&dir, &[first.address(), second.address()]);
    let mut settings = settings(None);
    settings.resolv_conf = resolv.clone();
    let server = start(settings).await;
    assert_eq!(server.upstream().servers, [first.address(), second.address()]);
    assert_eq!(server.upstream().verification, Some(Verification::NoneAnswered { domain: "localstack.cloud".into() }));
    assert_eq!(first.names(), ["localstack.cloud."], "the default domain, asked once");
    let line = server.startup_lines().into_iter().find(|line| line.starts_with("Upstream DNS servers:")).unwrap();
    assert!(line.contains("none answered localstack.cloud (DNS_VERIFICATION_DOMAIN): all are kept in order"), "{line}");
    // Redirected names answer regardless.
    let resolver = resolver(Transport::Udp, server.udp_addrs()[0]);
    assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::A).await, answered(&["127.0.0.1"]));
    server.shutdown().await;
}

#[tokio::test]
async fn dns_server_is_used_as_given_without_verification() {
    let (server, upstream) = with_upstream(&[]).await;
    assert_eq!(server.upstream().verification, None);
    assert_eq!(upstream.query_count(), 0, "DNS_SERVER is not asked for the verification domain");
    server.shutdown().await;
}

#[tokio::test]
async fn localstack_host_redirects_its_name_and_every_name_below() {
    // DNS_LOCAL_NAME_PATTERNS limits AWS names only, not the emulator's own.
    let (server, _upstream) = with_upstream(&[
        ("LOCALSTACK_HOST", "emulator.internal.test:4566"),
        ("DNS_LOCAL_NAME_PATTERNS", r".*\.ecr\..*"),
    ])
    .await;
    for (protocol, resolver) in resolvers(&server) {
        for name in ["emulator.internal.test.", "s3.emulator.internal.test.", "bucket.s3.emulator.internal.test."] {
            assert_eq!(lookup(&resolver, name, T::A).await, answered(&["127.0.0.1"]), "{protocol} {name}");
        }
        assert_eq!(lookup(&resolver, "internal.test.", T::A).await, answered(&["192.0.2.77"]), "only below the host");
        assert_eq!(lookup(&resolver, "sqs.us-east-1.amazonaws.com.", T::A).await, answered(&["192.0.2.77"]));
    }
    let lines = server.startup_lines();
    assert!(
        lines.contains(
            &"LOCALSTACK_HOST=emulator.internal.test:4566: emulator.internal.test and every name below it \
                         are redirected"
                .to_owned()
        ),
        "{lines:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn disable_transparent_endpoint_injection_forwards_aws_names_and_keeps_the_emulators() {
    let (server, upstream) = with_upstream(&[
        ("DISABLE_TRANSPARENT_ENDPOINT_INJECTION", "1"),
        ("LOCALSTACK_HOST", "emulator.internal.test"),
    ])
    .await;
    for (protocol, resolver) in resolvers(&server) {
        for name in ["s3.amazonaws.com.", "console.aws.amazon.com.", "d1.cloudfront.net."] {
            assert_eq!(lookup(&resolver, name, T::A).await, answered(&["192.0.2.77"]), "{protocol} {name}");
        }
        for name in ["test.localhost.localstack.cloud.", "s3.emulator.internal.test."] {
            assert_eq!(lookup(&resolver, name, T::A).await, answered(&["127.0.0.1"]), "{protocol} {name}");
        }
    }
    assert!(upstream.was_asked("s3.amazonaws.com."));
    assert!(server.startup_lines().iter().any(|line| line.starts_with(
        "Redirected domains: localhost.localstack.cloud (DISABLE_TRANSPARENT_ENDPOINT_INJECTION: amazonaws.com"
    )));
    server.shutdown().await;
}

#[tokio::test]
async fn localstack_host_prefix_names_are_redirected() {
    let (server, _upstream) = with_upstream(&[]).await;
    let resolver = resolver(Transport::Udp, server.udp_addrs()[0]);
    for name in
        ["data-localhost.localstack.cloud.", "sync-localhost.localstack.cloud.", "x.query-localhost.localstack.cloud."]
    {
        assert_eq!(lookup(&resolver, name, T::A).await, answered(&["127.0.0.1"]), "{name}");
    }
    assert_eq!(lookup(&resolver, "other-localhost.localstack.cloud.", T::A).await, answered(&["192.0.2.77"]));
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_dns_variables_get_a_warning_naming_them() {
    let upstream = FakeUpstream::answering(FORWARDED).await;
    let server = upstream.address().to_string();
    let running = redirect(
        &[("DNS_PORT", "0"), ("DNS_SERVER", &server), ("DNS_ADRESS", "127.0.0.1"), ("DNS_SERVERS", "1.1.1.1")],
        &[],
    )
    .start()
    .await
    .unwrap();
    let stdout = running.stdout_lines();
    assert!(stdout.iter().any(|line| line.starts_with("Starting DNS servers")), "starts anyway: {stdout:?}");
    let stderr = terminate(running).await.stderr;
    let warnings: Vec<&str> = stderr.lines().filter(|line| line.contains("unknown DNS variables")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains(
            "unknown DNS variables, ignored: DNS_ADRESS (did you mean DNS_ADDRESS?), DNS_SERVERS (did you mean \
             DNS_SERVER?)"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_bad_localstack_host_names_the_variable() {
    let output = run(&[("LOCALSTACK_HOST", "emulator:port")], &[]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = &output.stderr;
    assert!(stderr.contains("LOCALSTACK_HOST=\"emulator:port\""), "{stderr}");
}
