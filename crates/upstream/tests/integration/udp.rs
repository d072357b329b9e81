//! Do53 over UDP: IDs, ports, spoofs, ICMP, truncation, EDNS.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use signpost_upstream::{AttemptOutcome, Protocol, ServerConfig, Upstreams};
use signpost_wire::{Message, Rcode};

use crate::fake::{self, Behaviour, GENUINE, first_address, query};

fn upstreams(group: signpost_upstream::GroupConfig) -> Upstreams {
    Upstreams::new(vec![group]).unwrap()
}

#[tokio::test]
async fn every_query_has_a_fresh_random_id() {
    let server = fake::udp(Behaviour::Answer).await;
    let upstreams = upstreams(fake::group(vec![ServerConfig::udp(server.address)]));
    let group = upstreams.group("test").unwrap();
    for _ in 0..20 {
        let resolved = group.resolve(&query("example.com")).await.unwrap();
        assert_eq!(first_address(&resolved.response), Some(GENUINE));
        assert_eq!(resolved.protocol, Protocol::Udp);
        assert_eq!(resolved.server, server.address);
        // The response carries the ID the try used, which the server saw.
        let id = Message::parse(&resolved.response).unwrap().id();
        assert_eq!(server.seen.ids.lock().unwrap().last(), Some(&id));
    }
    let ids: HashSet<u16> = server.seen.ids.lock().unwrap().iter().copied().collect();
    assert!(ids.len() >= 15, "IDs should be random: {ids:?}");
}

#[tokio::test]
async fn queries_share_a_few_long_lived_sockets_with_distinct_ids_in_flight() {
    let server = fake::udp(Behaviour::Delay(Duration::from_millis(50))).await;
    let upstreams = upstreams(fake::group(vec![ServerConfig::udp(server.address)]));
    for resolved in fake::resolve_at_once(upstreams.group("test").unwrap(), 200).await {
        assert_eq!(first_address(&resolved.response), Some(GENUINE));
    }
    let sources = server.seen.sources.lock().unwrap().clone();
    let ids = server.seen.ids.lock().unwrap().clone();
    let ports: HashSet<u16> = sources.iter().map(|a| a.port()).collect();
    // 200 queries in flight at once over at most four sockets (no socket
    // carries more than 2048 queries before it is replaced)...
    assert!(ports.len() <= 4, "{} ports for 200 queries", ports.len());
    // ...and no two of them with the same ID on the same socket.
    let pairs: HashSet<(u16, u16)> = sources.iter().zip(&ids).map(|(source, id)| (source.port(), *id)).collect();
    assert_eq!(pairs.len(), sources.len(), "an ID was reused on a socket while in flight");
    let stats = &upstreams.stats()[0];
    assert_eq!((stats.answers, stats.in_flight), (200, 0));
}

#[tokio::test]
async fn the_edns_payload_size_is_the_groups() {
    let server = fake::udp(Behaviour::Answer).await;
    let mut config = fake::group(vec![ServerConfig::udp(server.address)]);
    config.edns_payload = 1400;
    let upstreams = upstreams(config);
    upstreams.group("test").unwrap().resolve(&query("example.com")).await.unwrap();
    assert_eq!(*server.seen.payloads.lock().unwrap(), [1400]);
}

#[tokio::test]
async fn silence_times_out_and_the_next_server_answers() {
    let silent = fake::udp(Behaviour::Silent).await;
    let good = fake::udp(Behaviour::Answer).await;
    let upstreams = upstreams(fake::group(vec![ServerConfig::udp(silent.address), ServerConfig::udp(good.address)]));
    let resolved = upstreams.group("test").unwrap().resolve(&query("example.com")).await.unwrap();
    assert_eq!(resolved.server, good.address);
    let outcomes: Vec<_> = resolved.attempts.iter().map(|a| a.outcome.clone()).collect();
    assert_eq!(outcomes, [AttemptOutcome::Timeout, AttemptOutcome::Answered(Rcode::NOERROR)]);
    assert!(resolved.attempts[0].duration >= Duration::from_millis(350));
    let stats = upstreams.stats();
    assert_eq!((stats[0].timeouts, stats[1].answers), (1, 1));
}

#[tokio::test]
async fn slow_answers_past_the_per_try_timeout_count_as_timeouts() {
    let slow = fake::udp(Behaviour::Delay(Duration::from_millis(900))).await;
    let upstreams = upstreams(fake::group(vec![ServerConfig::udp(slow.address)]));
    let error = upstreams.group("test").unwrap().resolve(&query("example.com")).await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    // Sent again after each timeout (376 ms, then backed off to the 400 ms
    // ceiling), but no message is listened to past the per-try timeout, so
    // none of the 900 ms answers is taken.
    let attempts = error.attempts();
    assert!(attempts.len() >= 2 && attempts.len() <= 5, "{attempts:?}");
    assert!(attempts.iter().all(|attempt| attempt.outcome == AttemptOutcome::Timeout), "{attempts:?}");
    assert!(attempts.iter().all(|attempt| attempt.duration <= Duration::from_millis(450)), "{attempts:?}");
}

#[tokio::test]
async fn icmp_port_unreachable_is_noticed_at_once() {
    let dead = fake::closed_udp_port().await;
    let good = fake::udp(Behaviour::Answer).await;
    let mut config = fake::group(vec![ServerConfig::udp(dead), ServerConfig::udp(good.address)]);
    config.per_try_timeout = Duration::from_secs(2);
    config.total_timeout = Duration::from_secs(4);
    let upstreams = upstreams(config);
    let started = Instant::now();
    let resolved = upstreams.group("test").unwrap().resolve(&query("example.com")).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "waited {:?} for a closed port", started.elapsed());
    assert!(matches!(resolved.attempts[0].outcome, AttemptOutcome::Unreachable(_)), "{:?}", resolved.attempts);
    assert_eq!(resolved.server, good.address);
}

#[tokio::test]
async fn answers_with_the_wrong_id_are_dropped_and_counted() {
    let server = fake::udp(Behaviour::WrongId { only: false }).await;
    let upstreams = upstreams(fake::group(vec![ServerConfig::udp(server.address)]));
    let resolved = upstreams.group("test").unwrap().resolve(&query("example.com")).await.unwrap();
    assert_eq!(first_address(&resolved.response), Some(GENUINE));
    assert_eq!(upstreams.stats()[0].spoofs_dropped, 1);
}

#[tokio::test]
async fn answers_to_another_question_are_dropped_and_counted() {
    let server = fake::udp(Behaviour::WrongQuestion).await;
    let upstreams = upstreams(fake::group(vec![ServerConfig::udp(server.address)]));
    let resolved = upstreams.group("test").unwrap().resolve(&query("example.com")).await.unwrap();
    assert_eq!(first_address(&resolved.response), Some(GENUINE));
    assert_eq!(upstreams.stats()[0].spoofs_dropped, 1);
}

#[tokio::test]
async fn answers_from_another_port_or_address_never_reach_the_client() {
    for behaviour in [Behaviour::FromOtherSocket, Behaviour::FromOtherAddress] {
        let server = fake::udp(behaviour.clone()).await;
        let upstreams = upstreams(fake::group(vec![ServerConfig::udp(server.address)]));
        let resolved = upstreams.group("test").unwrap().resolve(&query("example.com")).await.unwrap();
        // The forged answer came first, with the right ID and question; the
        // real one, 20 ms later, is the one taken.
        assert_eq!(first_address(&resolved.response), Some(GENUINE), "{behaviour:?}");
        assert_eq!(resolved.attempts.len(), 1, "{behaviour:?}");
    }
}

#[tokio::test]
async fn a_server_that_only_forges_times_out() {
    let server = fake::udp(Behaviour::WrongId { only: true }).await;
    let upstreams = upstreams(fake::group(vec![ServerConfig::udp(server.address)]));
    let error = upstreams.group("test").unwrap().resolve(&query("example.com")).await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    // One forgery per message sent, each dropped and counted.
    let stats = &upstreams.stats()[0];
    assert_eq!(stats.spoofs_dropped, stats.queries);
    assert_eq!(stats.queries as usize, error.attempts().len());
}

#[tokio::test]
async fn forged_answers_racing_many_queries_are_all_dropped() {
    // Each query is answered by 20 forgeries with the right question and
    // nearby IDs (some of which belong to other queries in flight on the
    // same socket) before the genuine answer.
    let server = fake::udp(Behaviour::ForgedFlood(20)).await;
    let upstreams = upstreams(fake::group(vec![ServerConfig::udp(server.address)]));
    for resolved in fake::resolve_at_once(upstreams.group("test").unwrap(), 50).await {
        assert_eq!(first_address(&resolved.response), Some(GENUINE));
    }
    let stats = &upstreams.stats()[0];
    assert!(stats.spoofs_dropped > 0, "{stats:?}");
}

#[tokio::test]
async fn question_names_match_without_regard_to_case() {
    let server = fake::udp(Behaviour::Answer).await;
    let upstreams = upstreams(fake::group(vec![ServerConfig::udp(server.address)]));
    let resolved = upstreams.group("test").unwrap().resolve(&query("ExAmPlE.CoM")).await.unwrap();
    assert_eq!(first_address(&resolved.response), Some(GENUINE));
}

#[tokio::test]
async fn truncated_answers_are_asked_again_over_tcp() {
    let (udp, tcp) = fake::udp_and_tcp(Behaviour::Truncate, Behaviour::Answer).await;
    let upstreams = upstreams(fake::group(vec![ServerConfig::udp(udp.address)]));
    let resolved = upstreams.group("test").unwrap().resolve(&query("example.com")).await.unwrap();
    assert_eq!(resolved.protocol, Protocol::Tcp);
    assert_eq!(first_address(&resolved.response), Some(GENUINE));
    let outcomes: Vec<_> = resolved.attempts.iter().map(|a| (a.protocol, a.outcome.clone())).collect();
    assert_eq!(
        outcomes,
        [(Protocol::Udp, AttemptOutcome::Truncated), (Protocol::Tcp, AttemptOutcome::Answered(Rcode::NOERROR))]
    );
    assert_eq!((udp.seen.queries(), tcp.seen.queries()), (1, 1));
}

#[tokio::test]
async fn a_truncated_answer_stands_when_tcp_fails_unless_retry_on_truncated() {
    // No TCP listener on the UDP server's port: the TCP try is refused.
    let truncating = fake::udp(Behaviour::Truncate).await;
    let good = fake::udp(Behaviour::Answer).await;
    let servers = vec![ServerConfig::udp(truncating.address), ServerConfig::udp(good.address)];

    let upstreams = upstreams(fake::group(servers.clone()));
    let resolved = upstreams.group("test").unwrap().resolve(&query("example.com")).await.unwrap();
    assert_eq!(resolved.server, truncating.address);
    assert!(Message::parse(&resolved.response).unwrap().flags().tc());
    assert_eq!(resolved.protocol, Protocol::Udp);
    assert_eq!(good.seen.queries(), 0);

    let mut config = fake::group(servers);
    config.retry_on.truncated = true;
    let upstreams = self::upstreams(config);
    let resolved = upstreams.group("test").unwrap().resolve(&query("example.com")).await.unwrap();
    assert_eq!(resolved.server, good.address);
    assert_eq!(first_address(&resolved.response), Some(GENUINE));
}

#[tokio::test]
async fn malformed_answers_are_failures() {
    let bad = fake::udp(Behaviour::Malformed).await;
    let good = fake::udp(Behaviour::Answer).await;
    let upstreams = upstreams(fake::group(vec![ServerConfig::udp(bad.address), ServerConfig::udp(good.address)]));
    let resolved = upstreams.group("test").unwrap().resolve(&query("example.com")).await.unwrap();
    assert_eq!(resolved.server, good.address);
    match &resolved.attempts[0].outcome {
        AttemptOutcome::Failed(reason) => assert!(reason.contains("malformed"), "{reason}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(upstreams.stats()[0].errors, 1);
}
