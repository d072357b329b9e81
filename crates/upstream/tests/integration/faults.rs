//! Faults under way: lost packets, slow servers, a server falling silent,
//! overload. Each bound on the answer time follows from the retransmission
//! timeout (SRTT + 4·RTTVAR, 50 ms floor, doubled per loss), never from the
//! 2 s per-try ceiling.

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use signpost_upstream::{GroupConfig, Policy, ServerConfig, Upstreams};

use crate::fake::{self, Behaviour, GENUINE, first_address, query};

/// A group with the default 2 s per-try ceiling and 4 s total, so that a
/// fixed timeout would show up as seconds.
fn group(servers: Vec<ServerConfig>) -> GroupConfig {
    fake::group_timed(servers, Duration::from_secs(2), Duration::from_secs(4))
}

/// A UDP fake answering after `delay`, in a group that lets
/// `max_outstanding` queries be in flight and the rest wait `queue_timeout`.
async fn slow_with_slots(
    delay: Duration,
    max_outstanding: usize,
    queue_timeout: Duration,
) -> (fake::FakeUpstream, Upstreams) {
    let slow = fake::udp([Behaviour::Delay(delay)]).await;
    let mut config = group(vec![ServerConfig::udp(slow.address())]);
    config.max_outstanding = max_outstanding;
    config.queue_timeout = queue_timeout;
    (slow, fake::upstreams(config))
}

#[tokio::test]
async fn a_server_dropping_every_tenth_packet_costs_a_retransmission_not_a_timeout() {
    let server = fake::udp([Behaviour::DropEvery(NonZeroU64::new(10).unwrap())]).await;
    let upstreams = Upstreams::new(vec![group(vec![ServerConfig::udp(server.address())])]).unwrap();
    let group = upstreams.group("test").unwrap().clone();
    let mut slowest = Duration::ZERO;
    for i in 0..100 {
        let started = Instant::now();
        let resolved = group.resolve(&query(&format!("n{i}.example"))).await.unwrap();
        slowest = slowest.max(started.elapsed());
        assert_eq!(first_address(&resolved.response), Some(GENUINE));
    }
    // The same with 10 queries at a time.
    let tasks: Vec<_> = (0..10)
        .map(|task| {
            let group = group.clone();
            tokio::spawn(async move {
                let mut slowest = Duration::ZERO;
                for i in 0..10 {
                    let started = Instant::now();
                    let resolved = group.resolve(&query(&format!("t{task}-{i}.example"))).await.unwrap();
                    assert_eq!(first_address(&resolved.response), Some(GENUINE));
                    slowest = slowest.max(started.elapsed());
                }
                slowest
            })
        })
        .collect();
    for task in tasks {
        slowest = slowest.max(task.await.unwrap());
    }
    let stats = &upstreams.stats()[0];
    let dropped = server.counters().unanswered;
    assert!(dropped >= 20, "{dropped} dropped");
    // Every lost packet was noticed and the query sent again; none failed.
    assert!(stats.timeouts >= dropped, "{stats:?}");
    assert_eq!(stats.retransmits, stats.timeouts, "{stats:?}");
    assert_eq!((stats.errors, stats.spoofs_dropped), (0, 0));
    // On loopback the estimate sits at the 50 ms floor: a loss costs about
    // that (twice after a loss just before). Far below the 2 s ceiling.
    assert!(stats.smoothed_rtt.unwrap() < Duration::from_millis(50), "{stats:?}");
    assert!(slowest < Duration::from_millis(600), "slowest answer took {slowest:?}");
}

#[tokio::test]
async fn a_server_answering_after_300_ms_is_waited_for_not_given_up_on() {
    let server = fake::udp([Behaviour::Delay(Duration::from_millis(300))]).await;
    let upstreams = Upstreams::new(vec![group(vec![ServerConfig::udp(server.address())])]).unwrap();
    let group = upstreams.group("test").unwrap();
    for i in 0..6 {
        let started = Instant::now();
        let resolved = group.resolve(&query(&format!("n{i}.example"))).await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(first_address(&resolved.response), Some(GENUINE));
        // The first message's answer is taken whenever it comes, so even a
        // retransmission cannot delay it: 300 ms plus scheduling.
        assert!(elapsed >= Duration::from_millis(295) && elapsed < Duration::from_millis(900), "{elapsed:?}");
    }
    let stats = &upstreams.stats()[0];
    // Unmeasured, the server got Unbound's 376 ms; measured, SRTT ≈ 300 ms
    // and the timeout stays above it.
    let smoothed = stats.smoothed_rtt.unwrap();
    assert!(smoothed >= Duration::from_millis(295) && smoothed < Duration::from_millis(500), "{stats:?}");
    assert!(stats.retransmit_timeout > smoothed, "{stats:?}");
    // Nothing was lost: any message presumed lost was answered after all.
    assert_eq!(stats.timeouts, stats.late_answers, "{stats:?}");
    assert_eq!((stats.answers, stats.errors), (6, 0), "{stats:?}");
    // Answers to messages sent again needlessly come after their query is
    // done: stale, not forged.
    assert_eq!(stats.spoofs_dropped, 0, "{stats:?}");
    assert!(stats.stale_answers <= stats.retransmits, "{stats:?}");
}

#[tokio::test]
async fn a_server_falling_silent_costs_a_few_round_trip_timeouts_then_is_skipped() {
    let failing = fake::udp([]).await;
    let good = fake::udp([]).await;
    let mut config = group(vec![ServerConfig::udp(failing.address()), ServerConfig::udp(good.address())]);
    config.policy = Policy::Sequential;
    config.max_fails = 3;
    // No probe during the test: the silent server stays down once marked.
    config.probe_backoff = Duration::from_secs(60);
    let upstreams = Upstreams::new(vec![config]).unwrap();
    let group = upstreams.group("test").unwrap();
    for i in 0..20 {
        let resolved = group.resolve(&query(&format!("before{i}.example"))).await.unwrap();
        assert_eq!(resolved.server, failing.address());
    }
    failing.set_behaviours([Behaviour::Silence]);
    let timeout_before = upstreams.stats()[0].retransmit_timeout;
    assert!(timeout_before < Duration::from_millis(400), "{timeout_before:?}");
    let mut slowest = Duration::ZERO;
    for i in 0..40 {
        let started = Instant::now();
        let resolved = group.resolve(&query(&format!("after{i}.example"))).await.unwrap();
        slowest = slowest.max(started.elapsed());
        assert_eq!(resolved.server, good.address());
        assert_eq!(first_address(&resolved.response), Some(GENUINE));
    }
    let stats = upstreams.stats();
    // Three losses in a row (each waited the server's timeout, doubled
    // after every loss) marked it down; after that it is not asked.
    assert_eq!(stats[0].timeouts, 3, "{:?}", stats[0]);
    assert!(!stats[0].up);
    assert_eq!(failing.counters().unanswered, 3);
    assert_eq!((stats[1].retransmits, stats[1].answers), (3, 40), "{:?}", stats[1]);
    // The slowest query waited at most the third loss's timeout, 4 × the
    // estimate before the silence (plus the second server's answer).
    let bound = timeout_before * 4 + Duration::from_millis(250);
    assert!(slowest < bound, "slowest {slowest:?}, bound {bound:?}");
}

#[tokio::test]
async fn a_lone_silent_server_fails_at_the_deadline_after_backed_off_retransmissions() {
    let silent = fake::udp([Behaviour::Silence]).await;
    let mut config = group(vec![ServerConfig::udp(silent.address())]);
    config.per_try_timeout = Duration::from_millis(800);
    config.total_timeout = Duration::from_millis(2000);
    let upstreams = Upstreams::new(vec![config]).unwrap();
    let started = Instant::now();
    let error = upstreams.group("test").unwrap().resolve(&query("example.com")).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(error.is_timeout() && !error.is_overloaded(), "{error}");
    assert!(elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_millis(2600), "{elapsed:?}");
    // 376 ms unmeasured, then 752, then the 800 ms ceiling.
    let waits: Vec<Duration> = error.attempts().iter().map(|attempt| attempt.duration).collect();
    assert!(waits.len() >= 3 && waits.len() <= 4, "{waits:?}");
    assert_eq!(waits[0], Duration::from_millis(376));
    assert_eq!(waits[1], Duration::from_millis(752));
    assert_eq!(waits[2], Duration::from_millis(800));
    assert_eq!(silent.query_count(), waits.len());
}

#[tokio::test]
async fn past_max_outstanding_queries_queue_briefly_then_fail_as_overloaded() {
    let (_slow, upstreams) = slow_with_slots(Duration::from_millis(400), 2, Duration::from_millis(50)).await;
    let group = upstreams.group("test").unwrap().clone();
    let tasks: Vec<_> = (0..5)
        .map(|i| {
            let group = group.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = group.resolve(&query(&format!("n{i}.example"))).await;
                (result, started.elapsed())
            })
        })
        .collect();
    let mut answered = 0;
    let mut overloaded = 0;
    for task in tasks {
        match task.await.unwrap() {
            (Ok(_), _) => answered += 1,
            (Err(error), elapsed) => {
                assert!(error.is_overloaded() && !error.is_timeout(), "{error}");
                assert!(error.attempts().is_empty(), "nothing was sent");
                assert!(error.to_string().contains("is overloaded: 2 queries in flight"), "{error}");
                // Failed after the 50 ms queue, not after the 400 ms answer or a timeout.
                assert!(elapsed < Duration::from_millis(300), "{elapsed:?}");
                overloaded += 1;
            }
        }
    }
    assert_eq!((answered, overloaded), (2, 3));
    // Only the two admitted queries reached the server (each perhaps sent
    // twice: unmeasured, the server's timeout is 376 ms).
    let stats = &upstreams.stats()[0];
    assert_eq!(stats.queries - stats.retransmits, 2, "{stats:?}");
    let load = &upstreams.group_stats()[0];
    assert_eq!((load.in_flight, load.max_outstanding, load.queued, load.overloaded), (0, 2, 3, 3));
}

#[tokio::test]
async fn a_query_queued_for_a_slot_that_frees_in_time_goes_through() {
    let (_slow, upstreams) = slow_with_slots(Duration::from_millis(100), 1, Duration::from_secs(1)).await;
    let group = upstreams.group("test").unwrap();
    let (a, b) = (query("a.example"), query("b.example"));
    let (first, second) = tokio::join!(group.resolve(&a), group.resolve(&b));
    assert!(first.is_ok() && second.is_ok());
    let load = &upstreams.group_stats()[0];
    assert_eq!((load.queued, load.overloaded), (1, 0));
}
