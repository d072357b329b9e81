//! Failover between a zone's servers, SERVFAIL handling, and forward-first.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use signpost_server::ServerHandle;
use signpost_wire::{Rcode, RecordType};

use crate::support::*;

/// The forward zone corp.example over `servers`, with `settings` (TOML
/// lines) after them.
fn corp(servers: &[std::net::SocketAddr], settings: &str) -> String {
    let servers: Vec<String> = servers.iter().map(|server| format!("\"{server}\"")).collect();
    format!("[[forward_zones]]\nname = \"corp.example\"\nservers = [{}]\n{settings}\n", servers.join(", "))
}

/// corp.example over `servers` with a 300 ms per-try timeout and `retry_on`.
fn zone(servers: &[&FakeUpstream], retry_on: &str) -> String {
    let addresses: Vec<_> = servers.iter().map(|server| server.address()).collect();
    corp(&addresses, &format!("per_try_timeout = \"300ms\"\ntotal_timeout = \"3s\"\nretry_on = [{retry_on}]"))
}

/// corp.example over `primary` and a secondary answering `secondary_answer`,
/// as [`zone`] with `retry_on`: the server and both upstreams, to count.
async fn with_secondary(
    primary: FakeUpstream,
    secondary_answer: Ipv4Addr,
    retry_on: &str,
) -> (ServerHandle, FakeUpstream, FakeUpstream) {
    let secondary = FakeUpstream::answering(secondary_answer).await;
    let server = start(&zone(&[&primary, &secondary], retry_on)).await;
    (server, primary, secondary)
}

#[tokio::test]
async fn a_silent_primary_fails_over_to_the_secondary_within_the_per_try_timeout() {
    let (server, primary, secondary) =
        with_secondary(FakeUpstream::silent().await, Ipv4Addr::new(192, 0, 2, 2), r#""timeout", "unreachable""#).await;
    let started = Instant::now();
    assert_eq!(addresses(udp(&server), "db.corp.example.").await, ["192.0.2.2"]);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(280), "answered after {elapsed:?}: the primary was not waited for");
    assert!(elapsed < Duration::from_millis(1_000), "answered after {elapsed:?}: more than one per-try timeout");
    assert_eq!((primary.query_count(), secondary.query_count()), (1, 1));
    server.shutdown().await;
}

#[tokio::test]
async fn a_servfail_from_the_primary_is_returned_and_the_secondary_not_asked() {
    let (server, primary, secondary) =
        with_secondary(FakeUpstream::servfail().await, Ipv4Addr::new(192, 0, 2, 3), r#""timeout", "unreachable""#)
            .await;
    let (rcode, answers) = ask(udp(&server), "db.corp.example", RecordType::A).await.unwrap();
    assert_eq!(rcode, Rcode::SERVFAIL);
    assert!(answers.is_empty());
    assert_eq!((primary.query_count(), secondary.query_count()), (1, 0));
    server.shutdown().await;
}

#[tokio::test]
async fn with_retry_on_servfail_the_secondary_is_asked_as_unbound_does() {
    let (server, primary, secondary) = with_secondary(
        FakeUpstream::servfail().await,
        Ipv4Addr::new(192, 0, 2, 4),
        r#""timeout", "unreachable", "servfail""#,
    )
    .await;
    assert_eq!(addresses(udp(&server), "db.corp.example.").await, ["192.0.2.4"]);
    assert_eq!((primary.query_count(), secondary.query_count()), (1, 1));
    server.shutdown().await;
}

#[tokio::test]
async fn forward_first_falls_back_to_the_default_group_when_every_forwarder_is_down() {
    let silent = FakeUpstream::silent().await;
    let closed = closed_udp_port();
    let default = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 5)).await;
    let config = |forward_first: bool| {
        let settings = format!("per_try_timeout = \"200ms\"\ntotal_timeout = \"1s\"\nforward_first = {forward_first}");
        corp(&[silent.address(), closed], &settings) + &default_zone(&default)
    };
    let server = start(&config(true)).await;
    assert_eq!(addresses(udp(&server), "db.corp.example.").await, ["192.0.2.5"]);
    assert_eq!(default.names(), ["db.corp.example."]);
    // Asked, and asked again after each retransmission timeout (a lost
    // datagram, for all it knows) until the zone's total timeout.
    assert!((1..=5).contains(&silent.query_count()), "{}", silent.query_count());
    server.shutdown().await;

    // Without forward-first the zone's failure is the answer.
    let server = start(&config(false)).await;
    let (rcode, _) = ask(udp(&server), "db2.corp.example", RecordType::A).await.unwrap();
    assert_eq!(rcode, Rcode::SERVFAIL);
    assert_eq!(default.query_count(), 1, "the default group must not be asked");
    server.shutdown().await;
}

#[tokio::test]
async fn forward_first_falls_back_when_every_forwarder_answers_servfail() {
    let first = FakeUpstream::servfail().await;
    let second = FakeUpstream::servfail().await;
    let default = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 6)).await;
    let config = |forward_first: bool, retry_on: &str| {
        let settings = format!("forward_first = {forward_first}");
        zone(&[&first, &second], retry_on) + &settings + "\n" + &default_zone(&default)
    };
    let unbound_like = r#""timeout", "unreachable", "servfail", "refused""#;

    // Both forwarders' SERVFAILs are rejected under retry_on: forward-first asks the default group.
    let server = start(&config(true, unbound_like)).await;
    assert_eq!(addresses(udp(&server), "db.corp.example.").await, ["192.0.2.6"]);
    assert_eq!((first.query_count(), second.query_count()), (1, 1));
    assert_eq!(default.names(), ["db.corp.example."]);
    let trace = server
        .explain(&"db3.corp.example".parse().unwrap(), RecordType::A, "127.0.0.1:0".parse().unwrap(), Transport::Udp)
        .await;
    assert!(trace.notes.iter().any(|note| note.starts_with("forward-first:")), "{:?}", trace.notes);
    assert_eq!(trace.attempts.len(), 3, "two rejected SERVFAILs and the default's answer: {:?}", trace.attempts);
    assert_eq!(trace.rcode, "NOERROR");
    server.shutdown().await;

    // Without forward-first the SERVFAIL is passed through and the default group not asked.
    let asked = default.query_count();
    let server = start(&config(false, unbound_like)).await;
    let (rcode, answers) = ask(udp(&server), "db2.corp.example", RecordType::A).await.unwrap();
    assert_eq!((rcode, answers.len()), (Rcode::SERVFAIL, 0));
    assert_eq!(default.query_count(), asked, "the default group must not be asked");
    server.shutdown().await;

    // A SERVFAIL retry_on does not reject is an answer, forward-first or not.
    let server = start(&config(true, r#""timeout", "unreachable""#)).await;
    let (rcode, _) = ask(udp(&server), "db4.corp.example", RecordType::A).await.unwrap();
    assert_eq!(rcode, Rcode::SERVFAIL);
    assert_eq!(default.query_count(), asked, "the default group must not be asked");
    server.shutdown().await;
}
