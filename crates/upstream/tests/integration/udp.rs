//! Do53 over UDP: IDs, ports, spoofs, ICMP, truncation, EDNS.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use signpost_upstream::{AttemptOutcome, Protocol, ServerConfig};
use signpost_wire::{Message, Rcode};

use signpost_testkit::Transport;

use crate::fake::{self, Behaviour, FORGED, GENUINE, first_address, query};

#[tokio::test]
async fn every_query_has_a_fresh_random_id() {
    let server = fake::udp([]).await;
    let upstreams = fake::over_udp(&server);
    for _ in 0..20 {
        let resolved = fake::resolve(&upstreams).await.unwrap();
        assert_eq!(first_address(&resolved.response), Some(GENUINE));
        assert_eq!(resolved.protocol, Protocol::Udp);
        assert_eq!(resolved.server, server.address());
        // The response carries the ID the try used, which the server saw.
        let id = Message::parse(&resolved.response).unwrap().id();
        assert_eq!(server.queries().last().map(|query| query.id), Some(id));
    }
    let ids: HashSet<u16> = server.queries().iter().map(|query| query.id).collect();
    assert!(ids.len() >= 15, "IDs should be random: {ids:?}");
}

#[tokio::test]
async fn queries_share_a_few_long_lived_sockets_with_distinct_ids_in_flight() {
    let server = fake::udp([Behaviour::Delay(Duration::from_millis(50))]).await;
    let upstreams = fake::over_udp(&server);
    for resolved in fake::resolve_at_once(upstreams.group("test").unwrap(), 200).await {
        assert_eq!(first_address(&resolved.response), Some(GENUINE));
    }
    let queries = server.queries();
    let ports: HashSet<u16> = queries.iter().map(|query| query.source.port()).collect();
    // 200 queries in flight at once over at most four sockets (no socket
    // carries more than 2048 queries before it is replaced)...
    assert!(ports.len() <= 4, "{} ports for 200 queries", ports.len());
    // ...and no two of them with the same ID on the same socket.
    let pairs: HashSet<(u16, u16)> = queries.iter().map(|query| (query.source.port(), query.id)).collect();
    assert_eq!(pairs.len(), queries.len(), "an ID was reused on a socket while in flight");
    let stats = &upstreams.stats()[0];
    assert_eq!((stats.answers, stats.in_flight), (200, 0));
}

#[tokio::test]
async fn the_edns_payload_size_is_the_groups() {
    let server = fake::udp([]).await;
    let mut config = fake::group(vec![ServerConfig::udp(server.address())]);
    config.edns_payload = 1400;
    let upstreams = fake::upstreams(config);
    fake::resolve(&upstreams).await.unwrap();
    let payloads: Vec<_> =
        server.queries().iter().map(|query| query.edns.as_ref().map(|edns| edns.udp_payload_size)).collect();
    assert_eq!(payloads, [Some(1400)]);
}

#[tokio::test]
async fn silence_times_out_and_the_next_server_answers() {
    let (upstreams, resolved) = fake::resolve_past_udp(Behaviour::Silence).await;
    let outcomes: Vec<_> = resolved.attempts.iter().map(|a| a.outcome.clone()).collect();
    assert_eq!(outcomes, [AttemptOutcome::Timeout, AttemptOutcome::Answered(Rcode::NOERROR)]);
    assert!(resolved.attempts[0].duration >= Duration::from_millis(350));
    let stats = upstreams.stats();
    assert_eq!((stats[0].timeouts, stats[1].answers), (1, 1));
}

#[tokio::test]
async fn slow_answers_past_the_per_try_timeout_count_as_timeouts() {
    let slow = fake::udp([Behaviour::Delay(Duration::from_millis(900))]).await;
    let upstreams = fake::over_udp(&slow);
    let error = fake::resolve(&upstreams).await.unwrap_err();
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
    let dead = signpost_testkit::closed_udp_port();
    let good = fake::udp([]).await;
    let mut config = fake::group(vec![ServerConfig::udp(dead), ServerConfig::udp(good.address())]);
    config.per_try_timeout = Duration::from_secs(2);
    config.total_timeout = Duration::from_secs(4);
    let upstreams = fake::upstreams(config);
    let started = Instant::now();
    let resolved = fake::resolve(&upstreams).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "waited {:?} for a closed port", started.elapsed());
    assert!(matches!(resolved.attempts[0].outcome, AttemptOutcome::Unreachable(_)), "{:?}", resolved.attempts);
    assert_eq!(resolved.server, good.address());
}

#[tokio::test]
async fn answers_with_the_wrong_id_or_to_another_question_are_dropped_and_counted() {
    for spoof in [Behaviour::WrongId { then_genuine: true }, Behaviour::OtherQuestion { then_genuine: true }] {
        let server = fake::udp([spoof.clone()]).await;
        let upstreams = fake::over_udp(&server);
        let resolved = fake::resolve(&upstreams).await.unwrap();
        assert_eq!(first_address(&resolved.response), Some(GENUINE), "{spoof:?}");
        assert_eq!(upstreams.stats()[0].spoofs_dropped, 1, "{spoof:?}");
    }
}

#[tokio::test]
async fn answers_from_another_address_never_reach_the_client() {
    let server = fake::udp([Behaviour::FromOtherPort]).await;
    let upstreams = fake::over_udp(&server);
    let resolved = fake::resolve(&upstreams).await.unwrap();
    // The forged answer came first, with the right ID and question, from
    // another port; the real one, 20 ms later, is the one taken.
    assert_eq!(first_address(&resolved.response), Some(GENUINE));
    assert_ne!(first_address(&resolved.response), Some(FORGED));
    assert_eq!(resolved.attempts.len(), 1);
}

#[tokio::test]
async fn a_server_that_only_forges_times_out() {
    let server = fake::udp([Behaviour::WrongId { then_genuine: false }]).await;
    let upstreams = fake::over_udp(&server);
    let error = fake::resolve(&upstreams).await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    // One forgery per message sent, each dropped and counted.
    let stats = &upstreams.stats()[0];
    assert_eq!(stats.spoofs_dropped, stats.queries);
    assert_eq!(stats.queries as usize, error.attempts().len());
}

#[tokio::test]
async fn forged_answers_racing_many_queries_are_all_dropped() {
    // Each query is answered by a forgery with a nearby ID (which may be
    // another query's in flight on the same socket), one to another
    // question with its own ID, and one from another port, before the
    // genuine answer.
    let spoofs = [
        Behaviour::WrongId { then_genuine: true },
        Behaviour::OtherQuestion { then_genuine: true },
        Behaviour::FromOtherPort,
    ];
    let server = fake::udp(spoofs).await;
    let upstreams = fake::over_udp(&server);
    for resolved in fake::resolve_at_once(upstreams.group("test").unwrap(), 50).await {
        assert_eq!(first_address(&resolved.response), Some(GENUINE));
    }
    let stats = &upstreams.stats()[0];
    // The other port's forgeries never reach the socket; the rest are counted.
    assert_eq!(stats.spoofs_dropped, 2 * stats.queries, "{stats:?}");
}

#[tokio::test]
async fn question_names_match_without_regard_to_case() {
    let server = fake::udp([]).await;
    let upstreams = fake::over_udp(&server);
    let resolved = upstreams.group("test").unwrap().resolve(&query("ExAmPlE.CoM")).await.unwrap();
    assert_eq!(first_address(&resolved.response), Some(GENUINE));
}

#[tokio::test]
async fn truncated_answers_are_asked_again_over_tcp() {
    // One fake on UDP and TCP (one port): truncated over UDP, whole over TCP.
    let server = fake::start(fake::genuine(), [Behaviour::Truncate]).await;
    let upstreams = fake::over_udp(&server);
    let resolved = fake::resolve(&upstreams).await.unwrap();
    assert_eq!(resolved.protocol, Protocol::Tcp);
    assert_eq!(first_address(&resolved.response), Some(GENUINE));
    let outcomes: Vec<_> = resolved.attempts.iter().map(|a| (a.protocol, a.outcome.clone())).collect();
    assert_eq!(
        outcomes,
        [(Protocol::Udp, AttemptOutcome::Truncated), (Protocol::Tcp, AttemptOutcome::Answered(Rcode::NOERROR))]
    );
    let transports: Vec<Transport> = server.queries().iter().map(|query| query.transport).collect();
    assert_eq!(transports, [Transport::Udp, Transport::Tcp]);
}

#[tokio::test]
async fn a_truncated_answer_stands_when_tcp_fails_unless_retry_on_truncated() {
    // No TCP listener on the UDP server's port: the TCP try is refused.
    let truncating = fake::udp([Behaviour::Truncate]).await;
    let good = fake::udp([]).await;
    let servers = vec![ServerConfig::udp(truncating.address()), ServerConfig::udp(good.address())];

    let upstreams = fake::upstreams(fake::group(servers.clone()));
    let resolved = fake::resolve(&upstreams).await.unwrap();
    assert_eq!(resolved.server, truncating.address());
    assert!(Message::parse(&resolved.response).unwrap().flags().tc());
    assert_eq!(resolved.protocol, Protocol::Udp);
    assert_eq!(good.query_count(), 0);

    let mut config = fake::group(servers);
    config.retry_on.truncated = true;
    let upstreams = fake::upstreams(config);
    let resolved = fake::resolve(&upstreams).await.unwrap();
    assert_eq!(resolved.server, good.address());
    assert_eq!(first_address(&resolved.response), Some(GENUINE));
}

#[tokio::test]
async fn malformed_answers_are_failures() {
    let (upstreams, resolved) = fake::resolve_past_udp(Behaviour::TrailingGarbage).await;
    let failed =
        matches!(&resolved.attempts[0].outcome, AttemptOutcome::Failed(reason) if reason.contains("malformed"));
    assert!(failed, "{:?}", resolved.attempts);
    assert_eq!(upstreams.stats()[0].errors, 1);
}
