//! Groups: policies, retry_on, hedging, health, deadlines, concurrency.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use signpost_upstream::{AttemptOutcome, Hedge, HedgeAfter, Policy, RetryOn, ServerConfig, Upstreams};
use signpost_wire::{Message, Rcode};

use crate::fake::{self, Behaviour, FakeUpstream, GENUINE, first_address, query};

fn rcode(response: &[u8]) -> Rcode {
    Message::parse(response).unwrap().rcode().unwrap()
}

#[tokio::test]
async fn sequential_returns_servfail_as_it_is_by_default() {
    let failing = fake::start(fake::failing(Rcode::SERVFAIL).udp(), []).await;
    let good = fake::udp([]).await;
    let upstreams = fake::upstreams_of(vec![ServerConfig::udp(failing.address()), ServerConfig::udp(good.address())]);
    let resolved = fake::resolve(&upstreams).await.unwrap();
    assert_eq!(rcode(&resolved.response), Rcode::SERVFAIL);
    assert_eq!(resolved.attempts.len(), 1);
    assert_eq!(good.query_count(), 0);
}

#[tokio::test]
async fn retry_on_moves_past_the_rcodes_it_lists() {
    for (answer, knob) in [(Rcode::SERVFAIL, "servfail"), (Rcode::REFUSED, "refused"), (Rcode::NXDOMAIN, "nxdomain")] {
        let failing = fake::start(fake::failing(answer).udp(), []).await;
        let good = fake::udp([]).await;
        let mut config = fake::group(vec![ServerConfig::udp(failing.address()), ServerConfig::udp(good.address())]);
        assert!(config.retry_on.set(knob));
        let upstreams = fake::upstreams(config);
        let resolved = fake::resolve(&upstreams).await.unwrap();
        assert_eq!(first_address(&resolved.response), Some(GENUINE), "{knob}");
        let outcomes: Vec<_> = resolved.attempts.iter().map(|a| a.outcome.clone()).collect();
        assert_eq!(outcomes, [AttemptOutcome::Rejected(answer), AttemptOutcome::Answered(Rcode::NOERROR)], "{knob}");
    }
}

#[tokio::test]
async fn when_every_server_is_rejected_the_last_answer_is_returned() {
    let first = fake::start(fake::failing(Rcode::SERVFAIL).udp(), []).await;
    let second = fake::start(fake::failing(Rcode::SERVFAIL).udp(), []).await;
    let mut config = fake::group(vec![ServerConfig::udp(first.address()), ServerConfig::udp(second.address())]);
    config.retry_on.servfail = true;
    let upstreams = fake::upstreams(config);
    let resolved = fake::resolve(&upstreams).await.unwrap();
    assert_eq!(rcode(&resolved.response), Rcode::SERVFAIL);
    assert_eq!(resolved.server, second.address());
    assert_eq!(resolved.attempts.len(), 2);
}

#[tokio::test]
async fn without_timeout_in_retry_on_a_timeout_is_final() {
    let silent = fake::udp([Behaviour::Silence]).await;
    let good = fake::udp([]).await;
    let mut config = fake::group(vec![ServerConfig::udp(silent.address()), ServerConfig::udp(good.address())]);
    config.retry_on = RetryOn { timeout: false, ..RetryOn::NETWORK };
    let upstreams = fake::upstreams(config);
    let error = fake::resolve(&upstreams).await.unwrap_err();
    assert!(error.is_timeout());
    assert_eq!(error.attempts().len(), 1);
    assert_eq!(good.query_count(), 0);
}

#[tokio::test]
async fn round_robin_spreads_queries_evenly() {
    let servers = [fake::udp([]).await, fake::udp([]).await, fake::udp([]).await];
    let mut config = fake::group(servers.iter().map(|s| ServerConfig::udp(s.address())).collect());
    config.policy = Policy::RoundRobin;
    let upstreams = fake::upstreams(config);
    for _ in 0..9 {
        fake::resolve(&upstreams).await.unwrap();
    }
    let counts: Vec<usize> = servers.iter().map(|s| s.query_count()).collect();
    assert_eq!(counts, [3, 3, 3]);
}

#[tokio::test]
async fn random_uses_every_server_sooner_or_later() {
    let servers = [fake::udp([]).await, fake::udp([]).await];
    let mut config = fake::group(servers.iter().map(|s| ServerConfig::udp(s.address())).collect());
    config.policy = Policy::Random;
    let upstreams = fake::upstreams(config);
    for _ in 0..40 {
        fake::resolve(&upstreams).await.unwrap();
    }
    assert!(servers.iter().all(|s| s.query_count() > 0));
    // At least one query per resolve; on a starved machine an answer can
    // arrive after the adaptive retransmission timeout, which sends one more.
    let total = servers.iter().map(|s| s.query_count()).sum::<usize>();
    assert!((40..=48).contains(&total), "{total} queries for 40 resolves");
}

#[tokio::test]
async fn fastest_settles_on_the_quicker_server() {
    let slow = fake::udp([Behaviour::Delay(Duration::from_millis(60))]).await;
    let quick = fake::udp([]).await;
    let mut config = fake::group(vec![ServerConfig::udp(slow.address()), ServerConfig::udp(quick.address())]);
    config.policy = Policy::Fastest;
    let upstreams = fake::upstreams(config);
    for _ in 0..12 {
        fake::resolve(&upstreams).await.unwrap();
    }
    // Each is tried while unmeasured; then the quick one wins every time.
    assert_eq!(slow.query_count(), 1);
    assert_eq!(quick.query_count(), 11);
    let stats = upstreams.stats();
    assert!(stats[0].smoothed_rtt.unwrap() > stats[1].smoothed_rtt.unwrap());
}

/// A slow server (1.5 s) then a quick one, hedged `after`: the answer, how
/// long it took, and the quick server's address.
async fn hedged(after: HedgeAfter) -> (signpost_upstream::Resolved, Duration, SocketAddr) {
    let slow = fake::udp([Behaviour::Delay(Duration::from_millis(1500))]).await;
    let quick = fake::udp([]).await;
    let mut config = fake::group(vec![ServerConfig::udp(slow.address()), ServerConfig::udp(quick.address())]);
    config.per_try_timeout = Duration::from_secs(2);
    config.total_timeout = Duration::from_secs(3);
    config.hedge = Some(Hedge { after, max_parallel: 2 });
    let started = Instant::now();
    let resolved = fake::resolve(&fake::upstreams(config)).await.unwrap();
    (resolved, started.elapsed(), quick.address())
}

#[tokio::test]
async fn hedging_asks_the_next_server_when_the_first_is_slow() {
    let (resolved, took, quick) = hedged(HedgeAfter::Fixed(Duration::from_millis(50))).await;
    assert!(took < Duration::from_millis(1200), "took {took:?}");
    assert_eq!(resolved.server, quick);
    let outcomes: Vec<_> = resolved.attempts.iter().map(|a| a.outcome.clone()).collect();
    assert_eq!(outcomes, [AttemptOutcome::Cancelled, AttemptOutcome::Answered(Rcode::NOERROR)]);
}

// Multi-threaded: the fakes answer while the query's task still runs, as
// they do for a binary (on one thread nothing answers before the timer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_hedge_delay_asks_every_server_at_once_even_when_the_first_answers_at_once() {
    // Istio's DNS_FORWARD_PARALLEL: both servers answer without delay, so a
    // second message sent only after a timer tick would lose the race to the
    // first answer and never be sent.
    let first = fake::udp([]).await;
    let second = fake::udp([]).await;
    let mut config = fake::group(vec![ServerConfig::udp(first.address()), ServerConfig::udp(second.address())]);
    config.hedge = Some(Hedge { after: HedgeAfter::Fixed(Duration::ZERO), max_parallel: 2 });
    let upstreams = fake::upstreams(config);
    for _ in 0..200 {
        let resolved = fake::resolve(&upstreams).await.unwrap();
        assert_eq!(resolved.attempts.len(), 2, "{:?}", resolved.attempts);
    }
    // The slower of each pair is dropped unread, but every query reached both.
    let both = async {
        while first.query_count() < 200 || second.query_count() < 200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let reached = tokio::time::timeout(Duration::from_secs(5), both).await;
    assert!(reached.is_ok(), "asked: {} and {}", first.query_count(), second.query_count());
}

#[tokio::test]
async fn hedging_on_p95_waits_for_the_default_until_measured() {
    let (resolved, took, quick) = hedged(HedgeAfter::P95).await;
    assert_eq!(resolved.server, quick);
    // Hedged after the 100 ms default, long before the slow server's 1.5 s.
    assert!(took < Duration::from_millis(1200), "took {took:?}");
    assert!(resolved.attempts[0].duration >= Duration::from_millis(90), "{:?}", resolved.attempts);
}

/// A group of a closed port then a genuine server, marked down after one
/// failure and probed again after `probe_backoff`.
async fn dead_then_good(probe_backoff: Duration) -> (SocketAddr, FakeUpstream, Upstreams) {
    let dead = signpost_testkit::closed_udp_port();
    let good = fake::udp([]).await;
    let mut config = fake::group(vec![ServerConfig::udp(dead), ServerConfig::udp(good.address())]);
    config.max_fails = 1;
    config.probe_backoff = probe_backoff;
    (dead, good, fake::upstreams(config))
}

#[tokio::test]
async fn a_failing_server_is_marked_down_skipped_and_probed_back() {
    let (dead, good, upstreams) = dead_then_good(Duration::from_millis(100)).await;

    let first = fake::resolve(&upstreams).await.unwrap();
    assert_eq!(first.attempts.len(), 2);
    assert!(!upstreams.stats()[0].up, "marked down after max_fails");
    let second = fake::resolve(&upstreams).await.unwrap();
    assert_eq!(second.attempts.len(), 1, "down server skipped: {:?}", second.attempts);
    assert_eq!(second.server, good.address());

    // The server comes back on the same port; a probe finds it.
    let revived = fake::start(fake::genuine().udp().bind(dead), []).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !upstreams.stats()[0].up {
        assert!(Instant::now() < deadline, "never probed back up: {:?}", upstreams.stats()[0]);
        // Queries are what start due probes.
        fake::resolve(&upstreams).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back = fake::resolve(&upstreams).await.unwrap();
    assert_eq!(back.server, revived.address());
}

#[tokio::test]
async fn the_total_deadline_cuts_the_last_try_short() {
    let first = fake::udp([Behaviour::Silence]).await;
    let second = fake::udp([Behaviour::Silence]).await;
    let mut config = fake::group(vec![ServerConfig::udp(first.address()), ServerConfig::udp(second.address())]);
    config.per_try_timeout = Duration::from_millis(300);
    config.total_timeout = Duration::from_millis(450);
    let upstreams = fake::upstreams(config);
    let started = Instant::now();
    let error = fake::resolve(&upstreams).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(400) && elapsed < Duration::from_millis(1500), "{elapsed:?}");
    assert!(error.is_timeout());
    assert_eq!(error.attempts().len(), 2);
    assert!(error.attempts()[1].duration < Duration::from_millis(280), "{:?}", error.attempts()[1]);
    let text = error.to_string();
    assert!(text.contains("within 0.450s") && text.contains("1) udp://") && text.contains("2) udp://"), "{text}");
}

#[tokio::test]
async fn when_every_server_fails_the_error_lists_each_try() {
    let silent = fake::udp([Behaviour::Silence]).await;
    let dead = signpost_testkit::closed_udp_port();
    let upstreams = fake::upstreams_of(vec![ServerConfig::udp(silent.address()), ServerConfig::udp(dead)]);
    let error = fake::resolve(&upstreams).await.unwrap_err();
    assert!(!error.is_unreachable() && !error.is_overloaded());
    // The silent server is asked again after each timeout (a lost packet,
    // for all the group knows); the closed port once.
    let attempts = error.attempts();
    let refused = attempts.iter().filter(|a| matches!(a.outcome, AttemptOutcome::Unreachable(_))).count();
    let to_silent = attempts.iter().filter(|a| a.server == silent.address()).count();
    assert_eq!(refused, 1, "{attempts:?}");
    assert!(to_silent >= 2, "{attempts:?}");
    let text = error.to_string();
    assert!(text.starts_with("upstream group \"test\" "), "{text}");
    assert!(text.contains("1) udp://127.0.0.1:") && text.contains("2) udp://127.0.0.1:"), "{text}");
    assert!(text.contains("timed out") && text.contains("unreachable"), "{text}");
}

#[tokio::test]
async fn queries_run_side_by_side() {
    let server = fake::udp([Behaviour::Delay(Duration::from_millis(200))]).await;
    let upstreams = fake::over_udp(&server);
    let started = Instant::now();
    fake::resolve_at_once(upstreams.group("test").unwrap(), 30).await;
    // Serialised, 30 queries would take 6 s.
    assert!(started.elapsed() < Duration::from_millis(1500), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn an_unreadable_query_is_refused_before_sending() {
    let server = fake::udp([]).await;
    let upstreams = fake::over_udp(&server);
    let error = upstreams.group("test").unwrap().resolve(&[0; 5]).await.unwrap_err();
    assert!(error.is_invalid_query());
    assert!(error.attempts().is_empty());
    assert_eq!(server.query_count(), 0);
}

#[test]
fn resolving_is_send() {
    fn assert_send<T: Send>(_: T) {}
    let upstreams = fake::upstreams_of(vec![ServerConfig::udp("127.0.0.1:9".parse().unwrap())]);
    let query = query("example.com");
    assert_send(upstreams.group("test").unwrap().resolve(&query));
}

#[tokio::test]
async fn a_group_without_recursion_desired_clears_rd_in_what_it_sends() {
    let server = fake::udp([]).await;
    let mut config = fake::group(vec![ServerConfig::udp(server.address())]);
    config.recursion_desired = false;
    let upstreams = fake::upstreams(config);
    let resolved = fake::resolve(&upstreams).await.unwrap();
    assert_eq!(first_address(&resolved.response), Some(GENUINE));
    let seen = server.queries();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].flags.rd(), "the query reached the server with RD set");

    let recursive = fake::udp([]).await;
    fake::resolve(&fake::over_udp(&recursive)).await.unwrap();
    assert!(recursive.queries()[0].flags.rd(), "the default keeps the client's RD");
}

#[tokio::test]
async fn a_health_check_asks_every_server_and_revives_a_down_one() {
    let (dead, good, upstreams) = dead_then_good(Duration::from_secs(60)).await;
    let group = upstreams.group("test").unwrap();
    assert_eq!(group.check_servers().await, [(dead, false), (good.address(), true)]);
    assert!(good.was_asked("."), "the check asks for . NS: {:?}", good.names());

    fake::resolve(&upstreams).await.unwrap();
    assert!(!upstreams.stats()[0].up, "marked down by a query");
    // Back on the same port: the next check finds it, long before the probe backoff.
    let revived = fake::start(fake::genuine().udp().bind(dead), []).await;
    assert_eq!(group.check_servers().await, [(revived.address(), true), (good.address(), true)]);
    assert!(upstreams.stats()[0].up, "an answered check marks the server up");
    let good_address = good.address();
    drop(revived);
    drop(good);
    assert_eq!(group.check_servers().await, [(dead, false), (good_address, false)], "both stopped");
}

#[tokio::test]
async fn each_try_records_the_id_it_went_out_with() {
    let silent = fake::udp([Behaviour::Silence]).await;
    let good = fake::udp([]).await;
    let mut config = fake::group(vec![ServerConfig::udp(silent.address()), ServerConfig::udp(good.address())]);
    config.min_try_timeout = Duration::from_millis(100);
    let upstreams = fake::upstreams(config);
    let resolved = fake::resolve(&upstreams).await.unwrap();
    assert_eq!(resolved.attempts.len(), 2, "{:?}", resolved.attempts);
    let lost = &resolved.attempts[0];
    assert_eq!((lost.server, lost.outcome.clone()), (silent.address(), AttemptOutcome::Timeout));
    assert_eq!(lost.id, Some(silent.queries()[0].id), "the unanswered try keeps its ID");
    let answered = &resolved.attempts[1];
    assert_eq!(answered.id, Some(good.queries()[0].id));
    assert_eq!(answered.id, Some(u16::from_be_bytes([resolved.response[0], resolved.response[1]])));
}
