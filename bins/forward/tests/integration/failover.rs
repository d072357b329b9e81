//! Failover between a zone's servers, SERVFAIL handling, and forward-first.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use signpost_wire::{Rcode, RecordType};

use crate::support::*;

/// A forward zone for corp.example over `servers`, with a short per-try timeout.
fn zone(servers: &[&FakeUpstream], retry_on: &str) -> String {
    let servers: Vec<String> = servers.iter().map(|server| format!("\"{}\"", server.address)).collect();
    format!(
        r#"
        [[forward_zones]]
        name = "corp.example"
        servers = [{}]
        per_try_timeout = "300ms"
        total_timeout = "3s"
        retry_on = [{retry_on}]
        "#,
        servers.join(", ")
    )
}

#[tokio::test]
async fn a_silent_primary_fails_over_to_the_secondary_within_the_per_try_timeout() {
    let primary = FakeUpstream::silent().await;
    let secondary = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 2)).await;
    let server = start(&zone(&[&primary, &secondary], r#""timeout", "unreachable""#)).await;
    let started = Instant::now();
    assert_eq!(addresses(udp(&server), "db.corp.example.").await, ["192.0.2.2"]);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(280), "answered after {elapsed:?}: the primary was not waited for");
    assert!(elapsed < Duration::from_millis(1_000), "answered after {elapsed:?}: more than one per-try timeout");
    assert_eq!((primary.count(), secondary.count()), (1, 1));
    server.shutdown().await;
}

#[tokio::test]
async fn a_servfail_from_the_primary_is_returned_and_the_secondary_not_asked() {
    let primary = FakeUpstream::servfail().await;
    let secondary = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 3)).await;
    let server = start(&zone(&[&primary, &secondary], r#""timeout", "unreachable""#)).await;
    let (rcode, answers) = ask(udp(&server), "db.corp.example", RecordType::A, Duration::from_secs(3)).await.unwrap();
    assert_eq!(rcode, Rcode::SERVFAIL);
    assert!(answers.is_empty());
    assert_eq!((primary.count(), secondary.count()), (1, 0));
    server.shutdown().await;
}

#[tokio::test]
async fn with_retry_on_servfail_the_secondary_is_asked_as_unbound_does() {
    let primary = FakeUpstream::servfail().await;
    let secondary = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 4)).await;
    let server = start(&zone(&[&primary, &secondary], r#""timeout", "unreachable", "servfail""#)).await;
    assert_eq!(addresses(udp(&server), "db.corp.example.").await, ["192.0.2.4"]);
    assert_eq!((primary.count(), secondary.count()), (1, 1));
    server.shutdown().await;
}

#[tokio::test]
async fn forward_first_falls_back_to_the_default_group_when_every_forwarder_is_down() {
    let silent = FakeUpstream::silent().await;
    let closed = closed_port();
    let default = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 5)).await;
    let config = |forward_first: bool| {
        format!(
            r#"
            [[forward_zones]]
            name = "corp.example"
            servers = ["{silent}", "{closed}"]
            per_try_timeout = "200ms"
            total_timeout = "1s"
            forward_first = {forward_first}

            [[forward_zones]]
            name = "."
            servers = ["{default}"]
            "#,
            silent = silent.address,
            default = default.address,
        )
    };
    let server = start(&config(true)).await;
    assert_eq!(addresses(udp(&server), "db.corp.example.").await, ["192.0.2.5"]);
    assert_eq!(default.names(), ["db.corp.example."]);
    // Asked, and asked again after each retransmission timeout (a lost
    // datagram, for all it knows) until the zone's total timeout.
    assert!((1..=5).contains(&silent.count()), "{}", silent.count());
    server.shutdown().await;

    // Without forward-first the zone's failure is the answer.
    let server = start(&config(false)).await;
    let (rcode, _) = ask(udp(&server), "db2.corp.example", RecordType::A, Duration::from_secs(3)).await.unwrap();
    assert_eq!(rcode, Rcode::SERVFAIL);
    assert_eq!(default.count(), 1, "the default group must not be asked");
    server.shutdown().await;
}

#[tokio::test]
async fn forward_first_falls_back_when_every_forwarder_answers_servfail() {
    let first = FakeUpstream::servfail().await;
    let second = FakeUpstream::servfail().await;
    let default = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 6)).await;
    let config = |forward_first: bool, retry_on: &str| {
        format!(
            r#"
            [[forward_zones]]
            name = "corp.example"
            servers = ["{first}", "{second}"]
            per_try_timeout = "300ms"
            total_timeout = "3s"
            retry_on = [{retry_on}]
            forward_first = {forward_first}

            [[forward_zones]]
            name = "."
            servers = ["{default}"]
            "#,
            first = first.address,
            second = second.address,
            default = default.address,
        )
    };
    let unbound_like = r#""timeout", "unreachable", "servfail", "refused""#;

    // Both forwarders' SERVFAILs are rejected under retry_on: forward-first asks the default group.
    let server = start(&config(true, unbound_like)).await;
    assert_eq!(addresses(udp(&server), "db.corp.example.").await, ["192.0.2.6"]);
    assert_eq!((first.count(), second.count()), (1, 1));
    assert_eq!(default.names(), ["db.corp.example."]);
    let trace = server
        .explain(
            &"db3.corp.example".parse().unwrap(),
            RecordType::A,
            "127.0.0.1:0".parse().unwrap(),
            signpost_rules::Transport::Udp,
        )
        .await;
    assert!(trace.notes.iter().any(|note| note.starts_with("forward-first:")), "{:?}", trace.notes);
    assert_eq!(trace.attempts.len(), 3, "two rejected SERVFAILs and the default's answer: {:?}", trace.attempts);
    assert_eq!(trace.rcode, "NOERROR");
    server.shutdown().await;

    // Without forward-first the SERVFAIL is passed through and the default group not asked.
    let asked = default.count();
    let server = start(&config(false, unbound_like)).await;
    let (rcode, answers) = ask(udp(&server), "db2.corp.example", RecordType::A, Duration::from_secs(3)).await.unwrap();
    assert_eq!((rcode, answers.len()), (Rcode::SERVFAIL, 0));
    assert_eq!(default.count(), asked, "the default group must not be asked");
    server.shutdown().await;

    // A SERVFAIL retry_on does not reject is an answer, forward-first or not.
    let server = start(&config(true, r#""timeout", "unreachable""#)).await;
    let (rcode, _) = ask(udp(&server), "db4.corp.example", RecordType::A, Duration::from_secs(3)).await.unwrap();
    assert_eq!(rcode, Rcode::SERVFAIL);
    assert_eq!(default.count(), asked, "the default group must not be asked");
    server.shutdown().await;
}
