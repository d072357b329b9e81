//! Forwarding: relay, cache, coalescing, failures, truncation.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use signpost_wire::{EdnsHeader, EdnsOption, ExtendedErrorCode, Message, OptionCode, Rcode, RecordType};

use crate::support::*;

async fn forwarding_server(upstream: &FakeUpstream) -> signpost_server::ServerHandle {
    start(FORWARD_ALL, Some(upstream)).await
}

/// Ask `name` A (with EDNS) at `address`, where a SERVFAIL with an
/// Extended DNS Error must come back within `wait`: how long it took, the
/// EDE's code and its extra text.
async fn servfail_with_ede(address: SocketAddr, name: &str, wait: Duration) -> (Duration, ExtendedErrorCode, String) {
    let started = Instant::now();
    let bytes = edns_query(name, RecordType::A, EdnsHeader::default());
    let response = udp_exchange(address, &bytes, wait).await.expect("SERVFAIL, not silence");
    let took = started.elapsed();
    let message = Message::parse(&response).unwrap();
    assert_eq!(message.rcode(), Ok(Rcode::SERVFAIL));
    let edns = message.edns().unwrap().expect("OPT");
    let Some(EdnsOption::ExtendedError(error)) = edns.option(OptionCode::EXTENDED_ERROR) else { panic!("no EDE") };
    (took, error.info_code, String::from_utf8_lossy(error.extra_text).into_owned())
}

#[tokio::test]
async fn hickory_resolves_through_the_upstream_over_udp_and_tcp() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 7)).await;
    let server = forwarding_server(&upstream).await;
    for (protocol, address, name) in
        [(Transport::Udp, udp(&server), "one.example."), (Transport::Tcp, tcp(&server), "two.example.")]
    {
        let lookup = resolver(protocol, address).lookup_ip(name).await.unwrap();
        assert_eq!(lookup.iter().collect::<Vec<_>>(), [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))], "{protocol:?}");
    }
    // hickory asks for A and AAAA of each name (each maybe more than once:
    // a loaded machine can outlast the adaptive retransmission timeout).
    assert_eq!(upstream.question_count(), 4);
    server.shutdown().await;
}

#[tokio::test]
async fn repeated_questions_come_from_the_cache_with_ttls_counted_down() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 8)).await;
    let server = forwarding_server(&upstream).await;
    let bytes = edns_query("cached.example", RecordType::A, EdnsHeader::default());
    let first = udp_exchange(udp(&server), &bytes, Duration::from_secs(2)).await.unwrap();
    assert_eq!(answers(&first), ["cached.example. 300 IN A 192.0.2.8"]);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let second = udp_exchange(udp(&server), &bytes, Duration::from_secs(2)).await.unwrap();
    let ttl = Message::parse(&second).unwrap().answers().unwrap().next().unwrap().unwrap().ttl();
    assert!((295..300).contains(&ttl), "TTL {ttl} was not counted down");
    assert_eq!(upstream.query_count(), 1, "the second answer must come from the cache");
    // Over TCP too, and with a different spelling of the name.
    let shouted = query("CACHED.example", RecordType::A);
    let third = tcp_answer(tcp(&server), &shouted).await;
    assert_eq!(
        Message::parse(&third).unwrap().first_question().unwrap().unwrap().name().to_string(),
        "CACHED.example."
    );
    assert_eq!(upstream.query_count(), 1);
    assert!(server.metrics_text().contains("signpost_cache_operations_total{op=\"hit\"} 2"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_group_that_is_not_cached_asks_its_servers_every_time() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 9)).await;
    let cached = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 10)).await;
    let toml = "default_group = \"upstream\"\n[[rules]]\nsuffix = \"cached.example\"\naction = \"forward\"\ngroup = \"cached\"\n";
    let server = start_server({
        let mut uncached = group_of("upstream", &upstream);
        uncached.cache = false;
        builder()
            .rules(rules(toml, &["upstream", "cached"]))
            .upstreams(upstreams(vec![uncached, group_of("cached", &cached)]))
    })
    .await;
    for name in ["live.example", "www.cached.example"] {
        let bytes = edns_query(name, RecordType::A, EdnsHeader::default());
        for _ in 0..3 {
            udp_exchange(udp(&server), &bytes, Duration::from_secs(2)).await.unwrap();
        }
    }
    assert_eq!(upstream.query_count(), 3, "every question for the uncached group goes upstream");
    assert_eq!(cached.query_count(), 1, "other groups are still cached");
    server.shutdown().await;
}

#[tokio::test]
async fn identical_questions_in_flight_are_sent_upstream_once() {
    let upstream = slow_upstream(Ipv4Addr::new(192, 0, 2, 9), Duration::from_millis(300)).await;
    let server = forwarding_server(&upstream).await;
    let address = udp(&server);
    let mut clients = Vec::new();
    for _ in 0..20 {
        let bytes = query("popular.example", RecordType::A);
        clients.push(tokio::spawn(async move { udp_exchange(address, &bytes, Duration::from_secs(3)).await }));
    }
    for client in clients {
        let response = client.await.unwrap().expect("every client gets an answer");
        assert_eq!(answers(&response), ["popular.example. 60 IN A 192.0.2.9"]);
    }
    assert_eq!(upstream.query_count(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_silent_upstream_gives_servfail_with_an_extended_error_before_the_client_gives_up() {
    let upstream = FakeUpstream::silent().await;
    let server = forwarding_server(&upstream).await;
    let (took, code, text) = servfail_with_ede(udp(&server), "void.example", Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(code, ExtendedErrorCode::NO_REACHABLE_AUTHORITY);
    assert!(text.contains("timed out"), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn without_any_upstream_forwarded_names_get_servfail() {
    let server = start(FORWARD_ALL, None).await;
    let bytes = edns_query("nowhere.example", RecordType::A, EdnsHeader::default());
    let response = udp_exchange(udp(&server), &bytes, Duration::from_secs(3)).await.expect("an answer");
    let message = Message::parse(&response).unwrap();
    assert_eq!(message.rcode(), Ok(Rcode::SERVFAIL));
    let edns = message.edns().unwrap().unwrap();
    assert!(matches!(edns.option(OptionCode::EXTENDED_ERROR), Some(EdnsOption::ExtendedError(_))));
    server.shutdown().await;
}

#[tokio::test]
async fn forwarded_answers_are_relayed_faithfully() {
    // The upstream sets AD, adds an authority record and an NSID option.
    let relayed = Answer::records(["@ 120 IN A 192.0.2.10"])
        .authority(["example. 60 IN SOA ns.example. host.example. 1 2 3 4 5"])
        .authentic_data()
        .edns(EdnsHeader { udp_payload_size: 1400, version: 0, dnssec_ok: false })
        .edns_option(OptionCode::NSID, *b"upstream-1");
    let upstream = FakeUpstream::builder().otherwise(relayed).start().await.unwrap();
    let server = forwarding_server(&upstream).await;
    let bytes = edns_query("faithful.example", RecordType::A, EdnsHeader::default());
    let response = udp_exchange(udp(&server), &bytes, Duration::from_secs(2)).await.unwrap();
    let message = Message::parse(&response).unwrap();
    assert_eq!(message.id(), 0x4d2);
    assert!(message.flags().ad() && message.flags().ra());
    assert_eq!(message.header().nscount, 1);
    let edns = message.edns().unwrap().unwrap();
    assert_eq!(edns.option(OptionCode::NSID), Some(EdnsOption::Nsid(b"upstream-1")));
    // A client without EDNS gets no OPT record back.
    let plain = query("faithful.example", RecordType::A);
    let response = udp_exchange(udp(&server), &plain, Duration::from_secs(2)).await.unwrap();
    assert!(Message::parse(&response).unwrap().edns().unwrap().is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn large_answers_are_truncated_for_small_udp_clients_and_complete_over_tcp() {
    let sixty = (0..60u8).map(|last| Ipv4Addr::new(192, 0, 2, last).into());
    let upstream = FakeUpstream::builder().otherwise(Answer::addresses(sixty, 60)).start().await.unwrap();
    let server = forwarding_server(&upstream).await;
    let bytes = query("big.example", RecordType::A);
    let response = udp_exchange(udp(&server), &bytes, Duration::from_secs(2)).await.unwrap();
    assert!(response.len() <= 512, "{} bytes", response.len());
    let message = Message::parse(&response).unwrap();
    assert!(message.flags().tc());
    message.check().unwrap();
    let full = tcp_answer(tcp(&server), &bytes).await;
    assert_eq!(answers(&full).len(), 60);
    // hickory retries over TCP by itself and sees every record.
    let lookup = resolver(Transport::Udp, udp(&server)).lookup_ip("big.example.").await.unwrap();
    assert_eq!(lookup.iter().count(), 60);
    server.shutdown().await;
}

#[tokio::test]
async fn forward_first_falls_back_to_the_default_group() {
    let dead = FakeUpstream::silent().await;
    let fallback = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 11)).await;
    let text = r#"
        default_group = "upstream"
        rules = [{ suffix = "corp.example", action = "forward", group = "corp", forward_first = true }]
        "#;
    let server = start_server({
        builder()
            .rules(rules(text, &["upstream", "corp"]))
            .upstreams(upstreams(vec![group_of("corp", &dead), group_of("upstream", &fallback)]))
    })
    .await;
    let bytes = query("git.corp.example", RecordType::A);
    let response = udp_exchange(udp(&server), &bytes, Duration::from_secs(4)).await.expect("an answer");
    assert_eq!(answers(&response), ["git.corp.example. 300 IN A 192.0.2.11"]);
    assert!(dead.query_count() >= 1);
    server.shutdown().await;
}

#[tokio::test]
async fn stale_answers_are_served_when_upstreams_fail() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 12)).await;
    let mut config = config_with_default_listeners();
    config.cache.max_ttl = 1;
    config.cache.serve_stale_secs = 3600;
    let server = start_with(config, FORWARD_ALL, Some(&upstream)).await;
    let bytes = edns_query("stale.example", RecordType::A, EdnsHeader::default());
    udp_exchange(udp(&server), &bytes, Duration::from_secs(2)).await.unwrap();
    drop(upstream);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let response = udp_exchange(udp(&server), &bytes, Duration::from_secs(4)).await.expect("stale answer");
    assert_eq!(answers(&response), ["stale.example. 30 IN A 192.0.2.12"]);
    let edns = Message::parse(&response).unwrap().edns().unwrap().unwrap();
    let Some(EdnsOption::ExtendedError(error)) = edns.option(OptionCode::EXTENDED_ERROR) else { panic!("no EDE") };
    assert_eq!(error.info_code, ExtendedErrorCode::STALE_ANSWER);
    server.shutdown().await;
}

#[tokio::test]
async fn the_clients_spelling_goes_upstream_and_comes_back() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 13)).await;
    let server = forwarding_server(&upstream).await;
    let bytes = query("MiXeD.ExAmPlE", RecordType::A);
    let response = udp_exchange(udp(&server), &bytes, Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        Message::parse(&response).unwrap().first_question().unwrap().unwrap().name().to_string(),
        "MiXeD.ExAmPlE."
    );
    assert_eq!(upstream.names(), ["MiXeD.ExAmPlE."]);
    server.shutdown().await;
}

#[tokio::test]
async fn client_subnet_goes_upstream_only_when_configured() {
    let upstream = FakeUpstream::builder()
        .otherwise(Answer::addresses([Ipv4Addr::new(192, 0, 2, 14).into()], 0))
        .start()
        .await
        .unwrap();
    // Without RD, as the query always was here.
    let query_bytes = Query::new("subnet.example", RecordType::A)
        .id(7)
        .recursion_desired(false)
        .edns_option(OptionCode::CLIENT_SUBNET, [0, 1, 24, 0, 198, 51, 100])
        .to_bytes();
    for forward in [false, true] {
        let mut config = config_with_default_listeners();
        config.edns.forward_client_subnet = forward;
        config.cache.enabled = false;
        let server = start_with(config, FORWARD_ALL, Some(&upstream)).await;
        udp_exchange(udp(&server), &query_bytes, Duration::from_secs(2)).await.expect("an answer");
        server.shutdown().await;
    }
    let has_subnet: Vec<bool> =
        upstream.queries().iter().map(|query| query.has_option(OptionCode::CLIENT_SUBNET)).collect();
    assert_eq!(has_subnet, [false, true]);
}

#[tokio::test]
async fn answers_echo_the_clients_rd_bit_forwarded_cached_and_failed() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 15)).await;
    let server = forwarding_server(&upstream).await;
    let rd = |response: &[u8]| Message::parse(response).unwrap().flags().rd();
    // `dig +norecurse`: RD clear. Asked upstream with RD set all the same,
    // and the upstream's RD=1 does not come back.
    let norecurse = Query::new("rd.example", RecordType::A).recursion_desired(false).to_bytes();
    let forwarded = udp_exchange(udp(&server), &norecurse, Duration::from_secs(2)).await.unwrap();
    assert_eq!(answers(&forwarded), ["rd.example. 300 IN A 192.0.2.15"]);
    assert!(!rd(&forwarded), "forwarded answer: RD copied from the upstream's packet");
    assert!(upstream.queries().iter().all(|query| query.flags.rd()), "upstream queries ask for recursion");
    // From the cache, both ways.
    let cached = udp_exchange(udp(&server), &norecurse, Duration::from_secs(2)).await.unwrap();
    assert!(!rd(&cached), "cached answer: RD copied from the stored packet");
    let recurse = Query::new("rd.example", RecordType::A).to_bytes();
    let cached = udp_exchange(udp(&server), &recurse, Duration::from_secs(2)).await.unwrap();
    assert!(rd(&cached));
    assert_eq!(upstream.query_count(), 1, "the last two came from the cache");
    server.shutdown().await;
    // A SERVFAIL made here echoes it too.
    let silent = FakeUpstream::silent().await;
    let server = forwarding_server(&silent).await;
    let failed = udp_exchange(udp(&server), &norecurse, Duration::from_secs(4)).await.expect("SERVFAIL");
    assert_eq!(Message::parse(&failed).unwrap().rcode(), Ok(Rcode::SERVFAIL));
    assert!(!rd(&failed));
    server.shutdown().await;
}

/// A server whose group "upstream" asks `upstream` with room for one query
/// in flight and 20 ms of queueing, and no retransmission within the 500 ms
/// per-try timeout (so the upstream's count is the queries sent).
async fn one_slot_server(
    upstream: &FakeUpstream,
    action: signpost_server::OverloadAction,
) -> signpost_server::ServerHandle {
    let mut group = group_of("upstream", upstream);
    group.max_outstanding = 1;
    group.queue_timeout = Duration::from_millis(20);
    group.min_try_timeout = group.per_try_timeout;
    let mut config = config_with_default_listeners();
    config.limits.overload_action = action;
    start_forwarding(config, group).await
}

/// Ask `first.example` over UDP, which takes the group's only slot until
/// the upstream answers; returns once the upstream has it.
async fn take_the_only_slot(
    server: &signpost_server::ServerHandle,
    upstream: &FakeUpstream,
) -> tokio::task::JoinHandle<Option<Vec<u8>>> {
    let (address, first) = (udp(server), query("first.example", RecordType::A));
    let holder = tokio::spawn(async move { udp_exchange(address, &first, Duration::from_secs(3)).await });
    upstream.wait_for_queries(1, Duration::from_secs(2)).await.unwrap();
    holder
}

/// A [`one_slot_server`] asking an upstream that answers `answer` after
/// `delay`, its only slot taken ([`take_the_only_slot`]): the upstream, the
/// server and the task waiting for the first question's answer.
async fn one_slot_taken(
    answer: Ipv4Addr,
    delay: Duration,
    action: signpost_server::OverloadAction,
) -> (FakeUpstream, signpost_server::ServerHandle, tokio::task::JoinHandle<Option<Vec<u8>>>) {
    let upstream = slow_upstream(answer, delay).await;
    let server = one_slot_server(&upstream, action).await;
    let holder = take_the_only_slot(&server, &upstream).await;
    (upstream, server, holder)
}

#[tokio::test]
async fn an_overloaded_group_answers_servfail_at_once_counted_apart_from_failures() {
    // The first question takes the group's only slot for 400 ms.
    let (upstream, server, holder) = one_slot_taken(
        Ipv4Addr::new(192, 0, 2, 16),
        Duration::from_millis(400),
        signpost_server::OverloadAction::ServFail,
    )
    .await;
    let address = udp(&server);
    let (took, code, text) = servfail_with_ede(address, "second.example", Duration::from_secs(3)).await;
    assert!(took < Duration::from_millis(400), "took {took:?}: queue_timeout is 20 ms");
    assert_eq!(code, ExtendedErrorCode::OTHER);
    assert!(text.contains("overloaded"), "{text}");
    // The explain trace says so too, while the slot is still held.
    let trace = server
        .explain(&"third.example".parse().unwrap(), RecordType::A, "127.0.0.1:0".parse().unwrap(), Transport::Udp)
        .await;
    assert_eq!((trace.decision.as_str(), trace.rcode.as_str()), ("overloaded", "SERVFAIL"), "{trace:?}");
    let answer = holder.await.unwrap().expect("the first question's answer");
    assert_eq!(answers(&answer), ["first.example. 60 IN A 192.0.2.16"]);
    assert_eq!(upstream.query_count(), 1, "nothing was sent for the refused question");
    let metrics = server.metrics();
    assert_eq!(metrics.decisions("upstream_overloaded"), 1);
    assert_eq!(metrics.decisions("upstream_failed"), 0, "overload is not an upstream failure");
    let text = server.metrics_text();
    for line in [
        "signpost_decisions_total{decision=\"upstream_overloaded\"} 1",
        // The explain run counts in the group's own figures.
        "signpost_upstream_group_overloaded_total{group=\"upstream\"} 2",
        "signpost_upstream_group_max_outstanding{group=\"upstream\"} 1",
    ] {
        assert!(text.lines().any(|written| written == line), "no {line:?} in\n{text}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn with_overload_action_drop_udp_clients_get_nothing_and_tcp_clients_servfail() {
    let (_upstream, server, holder) =
        one_slot_taken(Ipv4Addr::new(192, 0, 2, 17), Duration::from_millis(450), signpost_server::OverloadAction::Drop)
            .await;
    let address = udp(&server);
    let dropped = udp_exchange(address, &query("second.example", RecordType::A), Duration::from_millis(200)).await;
    assert!(dropped.is_none(), "an overloaded UDP query is dropped");
    let over_tcp = tcp_answer(tcp(&server), &query("third.example", RecordType::A)).await;
    assert_eq!(Message::parse(&over_tcp).unwrap().rcode(), Ok(Rcode::SERVFAIL), "a stream client is not left waiting");
    assert!(holder.await.unwrap().is_some());
    let metrics = server.metrics();
    assert_eq!(metrics.drops("upstream_overloaded"), 1);
    assert_eq!(metrics.decisions("upstream_overloaded"), 2);
    server.shutdown().await;
}
