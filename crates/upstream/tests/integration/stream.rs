//! Do53 over TCP: reuse, pipelining, caps, resets, idle close.

use std::time::Duration;

use signpost_upstream::{AttemptOutcome, Protocol, ServerConfig};
use signpost_wire::Rcode;

use crate::fake::{self, Behaviour, GENUINE, first_address, query};

#[tokio::test]
async fn concurrent_queries_are_pipelined_on_one_connection() {
    let server = fake::tcp([Behaviour::Delay(Duration::from_millis(50))]).await;
    let upstreams = fake::upstreams_of(vec![ServerConfig::tcp(server.address())]);
    let group = upstreams.group("test").unwrap();
    let names: Vec<String> = (0..50).map(|i| format!("host{i}.example")).collect();
    let results = futures_util::future::join_all(names.iter().map(|name| async move {
        let resolved = group.resolve(&query(name)).await.unwrap();
        let message = signpost_wire::Message::parse(&resolved.response).unwrap();
        let asked = message.first_question().unwrap().unwrap().name().to_string();
        (asked, resolved.protocol)
    }))
    .await;
    for (name, (asked, protocol)) in names.iter().zip(results) {
        assert_eq!(asked, format!("{name}."));
        assert_eq!(protocol, Protocol::Tcp);
    }
    assert_eq!(server.connection_count(), 1);
    assert_eq!(server.query_count(), 50);
}

#[tokio::test]
async fn the_in_flight_cap_spreads_queries_over_a_few_connections() {
    let server = fake::tcp([Behaviour::Delay(Duration::from_millis(100))]).await;
    let mut config = ServerConfig::tcp(server.address());
    config.max_in_flight = 2;
    config.max_connections = 3;
    let mut group = fake::group(vec![config]);
    group.per_try_timeout = Duration::from_secs(2);
    group.total_timeout = Duration::from_secs(3);
    let upstreams = fake::upstreams(group);
    let group = upstreams.group("test").unwrap();
    let results = futures_util::future::join_all(
        (0..12).map(|i| async move { group.resolve(&query(&format!("n{i}.example"))).await }),
    )
    .await;
    for result in &results {
        assert!(result.is_ok(), "{result:?}");
    }
    let connections = server.connection_count();
    assert!((2..=3).contains(&connections), "{connections} connections");
}

#[tokio::test]
async fn a_reset_mid_stream_moves_on_to_the_next_server() {
    let (_, resolved) = fake::resolve_past_tcp(Behaviour::CloseMidAnswer).await;
    let cut_off = matches!(&resolved.attempts[0].outcome,
        AttemptOutcome::Unreachable(reason) if reason.contains("closed") || reason.contains("reset"));
    assert!(cut_off, "{:?}", resolved.attempts);
}

#[tokio::test]
async fn a_server_closing_after_each_answer_is_reconnected_to() {
    let server = fake::tcp([Behaviour::CloseAfterAnswer]).await;
    let upstreams = fake::upstreams_of(vec![ServerConfig::tcp(server.address())]);
    for _ in 0..3 {
        let resolved = fake::resolve(&upstreams).await.unwrap();
        assert_eq!(first_address(&resolved.response), Some(GENUINE));
        assert_eq!(resolved.attempts.len(), 1);
    }
    assert_eq!(server.connection_count(), 3);
}

#[tokio::test]
async fn idle_connections_are_closed_and_opened_again_on_demand() {
    let server = fake::tcp([]).await;
    let mut config = ServerConfig::tcp(server.address());
    config.idle_timeout = Duration::from_millis(100);
    let upstreams = fake::upstreams_of(vec![config]);
    fake::resolve(&upstreams).await.unwrap();
    fake::resolve(&upstreams).await.unwrap();
    assert_eq!(server.connection_count(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    fake::resolve(&upstreams).await.unwrap();
    assert_eq!(server.connection_count(), 2);
}

#[tokio::test]
async fn a_silent_tcp_server_times_out() {
    let server = fake::tcp([Behaviour::Silence]).await;
    let upstreams = fake::upstreams_of(vec![ServerConfig::tcp(server.address())]);
    let error = fake::resolve(&upstreams).await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
}

#[tokio::test]
async fn a_refused_tcp_connection_is_unreachable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let upstreams = fake::upstreams_of(vec![ServerConfig::tcp(address)]);
    let error = fake::resolve(&upstreams).await.unwrap_err();
    assert!(error.is_unreachable(), "{error}");
    assert!(error.to_string().contains("refused"), "{error}");
}

#[tokio::test]
async fn answers_to_another_question_over_tcp_are_failures() {
    let server = fake::tcp([Behaviour::OtherQuestion { then_genuine: false }]).await;
    let upstreams = fake::upstreams_of(vec![ServerConfig::tcp(server.address())]);
    let error = fake::resolve(&upstreams).await.unwrap_err();
    assert!(error.to_string().contains("another question"), "{error}");
    assert_eq!(upstreams.stats()[0].spoofs_dropped, 1);
}

#[tokio::test]
async fn servfail_over_tcp_is_an_answer() {
    let server = fake::start(fake::failing(Rcode::SERVFAIL).tcp(), []).await;
    let upstreams = fake::upstreams_of(vec![ServerConfig::tcp(server.address())]);
    let resolved = fake::resolve(&upstreams).await.unwrap();
    assert_eq!(resolved.attempts[0].outcome, AttemptOutcome::Answered(Rcode::SERVFAIL));
}
