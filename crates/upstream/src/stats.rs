//! Per-server counters, latency histogram, round-trip estimate and health.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Protocol;
use crate::rtt::Rtt;

/// Upper bounds of the latency histogram's buckets; a last bucket holds the rest.
pub const LATENCY_BUCKETS: [Duration; 12] = [
    Duration::from_millis(1),
    Duration::from_millis(2),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2500),
    Duration::from_secs(5),
];

/// Answers a server must have given before its p95 is trusted for hedging.
const P95_MIN_SAMPLES: u64 = 20;

/// A snapshot of one server's figures.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct ServerStats {
    /// The group the server belongs to.
    pub group: String,
    /// The server.
    pub server: SocketAddr,
    /// Its transport.
    pub protocol: Protocol,
    /// Messages sent (a UDP query retried over TCP counts twice, a retransmission once more).
    pub queries: u64,
    /// Of `queries`, the retransmissions: sent because an earlier send of
    /// the same query (to this server or another) had no answer within its
    /// retransmission timeout.
    pub retransmits: u64,
    /// Valid answers received.
    pub answers: u64,
    /// Of `answers`, those that came after their send's retransmission
    /// timeout (a retransmission that was not needed; the answer still counted).
    pub late_answers: u64,
    /// Sends with no answer within their retransmission timeout (presumed lost).
    pub timeouts: u64,
    /// Tries that failed otherwise (unreachable, reset, TLS or HTTP errors, malformed answers).
    pub errors: u64,
    /// Messages dropped because their ID, source or question did not match a
    /// query in flight: possible spoofs.
    pub spoofs_dropped: u64,
    /// Answers dropped because their query had stopped waiting for them
    /// (another message of it was answered, or it ended): the ID was one of
    /// the last 256 given up on that socket.
    pub stale_answers: u64,
    /// Sends refused because every message ID this server's UDP sockets
    /// may use was taken by a query in flight.
    pub overloaded: u64,
    /// Batched UDP messages the kernel did not take because the socket's
    /// send buffer was full: each is left to its retransmission, and a
    /// steady count says the host drops the forwarder's own queries.
    pub send_buffer_full: u64,
    /// UDP queries waiting for an answer from this server now.
    pub in_flight: usize,
    /// The receive buffer the kernel granted this server's newest UDP
    /// socket (4 MiB is asked; without `CAP_NET_ADMIN` Linux grants at most
    /// `net.core.rmem_max`); `None` before the first UDP socket.
    pub receive_buffer: Option<usize>,
    /// Answer latencies: `latency_buckets[i]` counts answers within
    /// [`LATENCY_BUCKETS`]`[i]` (and above the bound before); the last entry counts the rest.
    pub latency_buckets: Vec<u64>,
    /// Sum of answer latencies.
    pub latency_sum: Duration,
    /// Smoothed round-trip time, once measured.
    pub smoothed_rtt: Option<Duration>,
    /// Mean deviation of the round-trip time (RTTVAR; zero until measured).
    pub rtt_variance: Duration,
    /// The current retransmission timeout: SRTT + 4·RTTVAR, backed off
    /// after losses, within the group's `min_try_timeout` and `per_try_timeout`.
    pub retransmit_timeout: Duration,
    /// Consecutive failures.
    pub consecutive_failures: u32,
    /// Whether the server is in use (false once marked down, until a probe succeeds).
    pub up: bool,
}

/// A snapshot of one group's load.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct GroupStats {
    /// The group.
    pub group: String,
    /// Queries in flight now (each holds one of `max_outstanding` slots).
    pub in_flight: usize,
    /// The group's `max_outstanding`.
    pub max_outstanding: usize,
    /// Queries that found every slot taken and waited for one.
    pub queued: u64,
    /// Queries that found no slot within `queue_timeout` and failed as overloaded.
    pub overloaded: u64,
}

/// Live figures of one server.
#[derive(Debug)]
pub(crate) struct Stats {
    queries: AtomicU64,
    retransmits: AtomicU64,
    answers: AtomicU64,
    late_answers: AtomicU64,
    timeouts: AtomicU64,
    errors: AtomicU64,
    spoofs: AtomicU64,
    stale: AtomicU64,
    overloaded: AtomicU64,
    send_buffer_full: AtomicU64,
    /// Receive buffer granted to the newest UDP socket; 0 before the first.
    receive_buffer: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_micros: AtomicU64,
    pub(crate) health: Mutex<Health>,
    /// Whether `health.down_until` is set, kept beside it (written under
    /// the lock): every query asks whether each server is up, and whether a
    /// probe is due, several times, and an up server needs no lock for that.
    down: AtomicBool,
}

/// Health and round-trip estimate of one server.
#[derive(Clone, Debug)]
pub(crate) struct Health {
    pub(crate) consecutive_failures: u32,
    /// When down: when the next probe is due.
    pub(crate) down_until: Option<Instant>,
    /// The wait before the next probe after this one fails.
    pub(crate) backoff: Duration,
    /// Whether a probe is running.
    pub(crate) probing: bool,
    /// When the last valid answer arrived.
    last_answer: Option<Instant>,
    rtt: Rtt,
}

impl Health {
    fn new(rtt: Rtt) -> Self {
        Self {
            consecutive_failures: 0,
            down_until: None,
            backoff: Duration::ZERO,
            probing: false,
            last_answer: None,
            rtt,
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.down_until.is_none()
    }

    /// Count a failure of a message sent at `sent_at`. One sent before the
    /// server's last answer does not count: the server was alive after it
    /// was sent, so its loss says nothing about the server being down (at
    /// high rates a few lost datagrams in a row are routine and would
    /// otherwise mark a healthy server down). Returns true when this marks
    /// the server down.
    fn count_failure(&mut self, sent_at: Instant, max_fails: u32, backoff: Duration, now: Instant) -> bool {
        if self.last_answer.is_some_and(|answered| answered >= sent_at) {
            return false;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if max_fails == 0 || self.consecutive_failures < max_fails || self.down_until.is_some() {
            return false;
        }
        self.backoff = backoff;
        self.down_until = Some(now + backoff);
        true
    }
}

impl Default for Stats {
    /// Figures with the default timeout bounds (50 ms to 2 s).
    fn default() -> Self {
        Self::new(Duration::from_millis(50), Duration::from_secs(2))
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl Stats {
    /// Figures for a server whose retransmission timeout stays within `floor..=ceiling`.
    pub(crate) fn new(floor: Duration, ceiling: Duration) -> Self {
        Self {
            queries: AtomicU64::new(0),
            retransmits: AtomicU64::new(0),
            answers: AtomicU64::new(0),
            late_answers: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            spoofs: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            send_buffer_full: AtomicU64::new(0),
            receive_buffer: AtomicU64::new(0),
            buckets: Default::default(),
            latency_sum_micros: AtomicU64::new(0),
            health: Mutex::new(Health::new(Rtt::new(floor, ceiling))),
            down: AtomicBool::new(false),
        }
    }

    pub(crate) fn sent(&self) {
        self.queries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retransmitted(&self) {
        self.retransmits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn spoof_dropped(&self) {
        self.spoofs.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stale_answer(&self) {
        self.stale.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn overloaded(&self) {
        self.overloaded.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn send_buffer_full(&self) {
        self.send_buffer_full.fetch_add(1, Ordering::Relaxed);
    }

    /// A new UDP socket was granted `granted` bytes of receive buffer.
    /// Returns whether it is the server's first.
    pub(crate) fn socket_opened(&self, granted: usize) -> bool {
        self.receive_buffer.swap(u64::try_from(granted).unwrap_or(u64::MAX).max(1), Ordering::Relaxed) == 0
    }

    /// A valid answer arrived `latency` after its message was sent (`late`
    /// when after that send's retransmission timeout): record it, feed the
    /// round-trip estimate and clear failures.
    pub(crate) fn answered(&self, latency: Duration, late: bool) {
        self.answered_at(latency, late, Instant::now());
    }

    /// [`Self::answered`], the answer having come at `now` (the caller's clock reading).
    pub(crate) fn answered_at(&self, latency: Duration, late: bool, now: Instant) {
        self.answers.fetch_add(1, Ordering::Relaxed);
        if late {
            self.late_answers.fetch_add(1, Ordering::Relaxed);
        }
        let bucket = LATENCY_BUCKETS.iter().position(|bound| latency <= *bound).unwrap_or(LATENCY_BUCKETS.len());
        if let Some(counter) = self.buckets.get(bucket) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_sum_micros.fetch_add(micros(latency), Ordering::Relaxed);
        if let Ok(mut health) = self.health.lock() {
            health.rtt.answered(latency);
            health.last_answer = Some(now);
            if health.down_until.is_some() {
                tracing::info!("upstream is answering again; marked up");
            }
            health.consecutive_failures = 0;
            health.down_until = None;
            self.down.store(false, Ordering::Release);
            health.backoff = Duration::ZERO;
        }
    }

    /// How long to wait for an answer before retransmitting.
    pub(crate) fn retransmit_timeout(&self) -> Duration {
        self.health.lock().map(|health| health.rtt.timeout()).unwrap_or(crate::rtt::INITIAL_TIMEOUT)
    }

    /// A message sent at `sent_at` with retransmission timeout `used` got
    /// no answer in time: back the timeout off and count a failure. Returns
    /// true when this marked the server down.
    pub(crate) fn timed_out(
        &self,
        used: Duration,
        sent_at: Instant,
        max_fails: u32,
        backoff: Duration,
        now: Instant,
    ) -> bool {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
        let Ok(mut health) = self.health.lock() else { return false };
        health.rtt.lost(used);
        self.count_failure(&mut health, sent_at, max_fails, backoff, now)
    }

    /// A message sent at `sent_at` was still unanswered when its query
    /// ended (the deadline cut it short): a timeout and a failure, without
    /// backing the retransmission timeout off (it never ran out).
    pub(crate) fn cut_short(&self, sent_at: Instant, max_fails: u32, backoff: Duration, now: Instant) -> bool {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
        let Ok(mut health) = self.health.lock() else { return false };
        self.count_failure(&mut health, sent_at, max_fails, backoff, now)
    }

    /// A try sent at `sent_at` failed (unreachable, reset, malformed
    /// answer). Returns true when this marked the server down.
    pub(crate) fn failed(&self, sent_at: Instant, max_fails: u32, backoff: Duration, now: Instant) -> bool {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let Ok(mut health) = self.health.lock() else { return false };
        self.count_failure(&mut health, sent_at, max_fails, backoff, now)
    }

    /// [`Health::count_failure`] under the caller's lock, the `down` flag
    /// set with `down_until`.
    fn count_failure(
        &self,
        health: &mut Health,
        sent_at: Instant,
        max_fails: u32,
        backoff: Duration,
        now: Instant,
    ) -> bool {
        let marked_down = health.count_failure(sent_at, max_fails, backoff, now);
        if marked_down {
            self.down.store(true, Ordering::Release);
        }
        marked_down
    }

    /// If the server is down and a probe is due, claim the probe (one at a time).
    pub(crate) fn claim_probe(&self, now: Instant) -> bool {
        if !self.down.load(Ordering::Acquire) {
            return false;
        }
        let Ok(mut health) = self.health.lock() else { return false };
        match health.down_until {
            Some(due) if due <= now && !health.probing => {
                health.probing = true;
                true
            }
            _ => false,
        }
    }

    /// A probe ended: on failure wait twice as long (up to 64 times the first wait).
    pub(crate) fn probe_finished(&self, succeeded: bool, first_backoff: Duration, now: Instant) {
        let Ok(mut health) = self.health.lock() else { return };
        health.probing = false;
        if succeeded || health.down_until.is_none() {
            return;
        }
        let next = health.backoff.saturating_mul(2).clamp(first_backoff, first_backoff.saturating_mul(64));
        health.backoff = next;
        health.down_until = Some(now + next);
    }

    pub(crate) fn is_up(&self) -> bool {
        !self.down.load(Ordering::Acquire)
    }

    pub(crate) fn down_until(&self) -> Option<Instant> {
        self.health.lock().ok().and_then(|health| health.down_until)
    }

    pub(crate) fn smoothed_rtt(&self) -> Option<Duration> {
        self.health.lock().ok().and_then(|health| health.rtt.smoothed())
    }

    /// The 95th-percentile answer latency (the upper bound of its bucket), once there are enough answers.
    pub(crate) fn p95(&self) -> Option<Duration> {
        let counts: Vec<u64> = self.buckets.iter().map(|counter| counter.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total < P95_MIN_SAMPLES {
            return None;
        }
        let wanted = total - total / 20;
        let mut seen = 0;
        for (index, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return Some(LATENCY_BUCKETS.get(index).copied().unwrap_or(Duration::from_secs(10)));
            }
        }
        None
    }

    pub(crate) fn snapshot(
        &self,
        group: &str,
        server: SocketAddr,
        protocol: Protocol,
        in_flight: usize,
    ) -> ServerStats {
        let health = self.health.lock().map(|health| health.clone()).ok();
        let rtt = health.as_ref().map(|health| health.rtt);
        ServerStats {
            group: group.to_string(),
            server,
            protocol,
            queries: self.queries.load(Ordering::Relaxed),
            retransmits: self.retransmits.load(Ordering::Relaxed),
            answers: self.answers.load(Ordering::Relaxed),
            late_answers: self.late_answers.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            spoofs_dropped: self.spoofs.load(Ordering::Relaxed),
            stale_answers: self.stale.load(Ordering::Relaxed),
            overloaded: self.overloaded.load(Ordering::Relaxed),
            send_buffer_full: self.send_buffer_full.load(Ordering::Relaxed),
            in_flight,
            receive_buffer: match self.receive_buffer.load(Ordering::Relaxed) {
                0 => None,
                granted => Some(usize::try_from(granted).unwrap_or(usize::MAX)),
            },
            latency_buckets: self.buckets.iter().map(|counter| counter.load(Ordering::Relaxed)).collect(),
            latency_sum: Duration::from_micros(self.latency_sum_micros.load(Ordering::Relaxed)),
            smoothed_rtt: rtt.and_then(|rtt| rtt.smoothed()),
            rtt_variance: rtt.map(|rtt| rtt.variance()).unwrap_or_default(),
            retransmit_timeout: rtt.map_or(crate::rtt::INITIAL_TIMEOUT, |rtt| rtt.timeout()),
            consecutive_failures: health.as_ref().map_or(0, |health| health.consecutive_failures),
            up: health.as_ref().is_none_or(Health::is_up),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 53))
    }

    #[test]
    fn latencies_land_in_buckets_and_give_a_p95() {
        let stats = Stats::default();
        for _ in 0..19 {
            stats.answered(Duration::from_micros(800), false);
        }
        assert_eq!(stats.p95(), None, "too few samples");
        stats.answered(Duration::from_millis(300), true);
        let snapshot = stats.snapshot("g", address(), Protocol::Udp, 0);
        assert_eq!(snapshot.latency_buckets[0], 19);
        assert_eq!(snapshot.latency_buckets[8], 1);
        assert_eq!((snapshot.answers, snapshot.late_answers), (20, 1));
        // 95% of 20 is 19: all within the first bucket.
        assert_eq!(stats.p95(), Some(Duration::from_millis(1)));
        stats.answered(Duration::from_secs(30), false);
        assert_eq!(stats.snapshot("g", snapshot.server, Protocol::Udp, 0).latency_buckets[12], 1);
    }

    #[test]
    fn an_answer_is_dated_by_the_callers_clock_reading() {
        let stats = Stats::default();
        let at = Instant::now() + Duration::from_secs(3);
        stats.answered_at(Duration::from_millis(4), false, at);
        assert_eq!(stats.health.lock().unwrap().last_answer, Some(at));
        assert_eq!(stats.snapshot("g", "127.0.0.1:53".parse().unwrap(), Protocol::Udp, 0).answers, 1);
    }

    #[test]
    fn max_fails_marks_down_and_probes_back_off() {
        let stats = Stats::default();
        let start = Instant::now();
        let backoff = Duration::from_secs(1);
        let timeout = Duration::from_millis(376);
        assert!(!stats.timed_out(timeout, start, 3, backoff, start));
        assert!(!stats.failed(start, 3, backoff, start));
        assert!(stats.is_up());
        assert!(stats.timed_out(timeout, start, 3, backoff, start));
        assert!(!stats.is_up());
        assert!(!stats.claim_probe(start), "not due yet");
        let due = start + backoff;
        assert!(stats.claim_probe(due));
        assert!(!stats.claim_probe(due), "one probe at a time");
        stats.probe_finished(false, backoff, due);
        assert_eq!(stats.down_until(), Some(due + Duration::from_secs(2)));
        let later = due + Duration::from_secs(2);
        assert!(stats.claim_probe(later));
        stats.probe_finished(false, backoff, later);
        assert_eq!(stats.down_until(), Some(later + Duration::from_secs(4)));
        stats.answered(Duration::from_millis(3), false);
        assert!(stats.is_up());
        let snapshot = stats.snapshot("g", address(), Protocol::Udp, 0);
        assert_eq!((snapshot.timeouts, snapshot.errors, snapshot.consecutive_failures), (2, 1, 0));
        assert!(snapshot.up);
    }

    /// Whether a server is up is read without its lock: every way of
    /// marking it down or up shows there, and agrees with the snapshot.
    #[test]
    fn every_way_of_marking_down_or_up_shows_without_the_lock() {
        let backoff = Duration::from_secs(1);
        let now = Instant::now();
        let ways: [&dyn Fn(&Stats) -> bool; 3] = [
            &|stats| stats.timed_out(Duration::from_millis(50), now, 1, backoff, now),
            &|stats| stats.cut_short(now, 1, backoff, now),
            &|stats| stats.failed(now, 1, backoff, now),
        ];
        for mark_down in ways {
            let stats = Stats::default();
            assert!(mark_down(&stats));
            assert!(!stats.is_up());
            assert!(!stats.snapshot("g", address(), Protocol::Udp, 0).up);
            assert!(stats.claim_probe(now + backoff), "a probe is due once down");
            stats.probe_finished(false, backoff, now + backoff);
            assert!(!stats.is_up(), "a failed probe leaves it down");
            stats.answered(Duration::from_millis(1), false);
            assert!(stats.is_up());
            assert!(stats.snapshot("g", address(), Protocol::Udp, 0).up);
            assert!(!stats.claim_probe(now + backoff * 10), "no probe for a server that is up");
        }
    }

    #[test]
    fn losses_of_messages_sent_before_the_last_answer_do_not_count_towards_down() {
        let stats = Stats::default();
        let backoff = Duration::from_secs(1);
        let timeout = Duration::from_millis(50);
        let sent = Instant::now();
        stats.answered(Duration::from_millis(1), false);
        // Lost datagrams sent before that answer: the server was alive after them.
        for _ in 0..10 {
            assert!(!stats.timed_out(timeout, sent, 3, backoff, Instant::now()));
        }
        assert!(stats.is_up());
        let snapshot = stats.snapshot("g", address(), Protocol::Udp, 0);
        assert_eq!((snapshot.timeouts, snapshot.consecutive_failures), (10, 0));
        // Sent after it, they count.
        let after = Instant::now() + Duration::from_millis(1);
        for _ in 0..2 {
            assert!(!stats.timed_out(timeout, after, 3, backoff, after));
        }
        assert!(stats.timed_out(timeout, after, 3, backoff, after));
    }

    #[test]
    fn zero_max_fails_never_marks_down() {
        let stats = Stats::default();
        for _ in 0..100 {
            assert!(!stats.timed_out(
                Duration::from_secs(1),
                Instant::now(),
                0,
                Duration::from_secs(1),
                Instant::now()
            ));
        }
        assert!(stats.is_up());
    }

    #[test]
    fn the_round_trip_estimate_is_in_the_snapshot() {
        let stats = Stats::new(Duration::from_millis(50), Duration::from_secs(2));
        assert_eq!(stats.snapshot("g", address(), Protocol::Udp, 0).retransmit_timeout, crate::rtt::INITIAL_TIMEOUT);
        stats.answered(Duration::from_millis(80), false);
        stats.answered(Duration::from_millis(160), false);
        assert_eq!(stats.smoothed_rtt(), Some(Duration::from_millis(90)));
        let snapshot = stats.snapshot("g", address(), Protocol::Udp, 3);
        assert_eq!(snapshot.smoothed_rtt, Some(Duration::from_millis(90)));
        // RTTVAR = 3/4·40 + 1/4·80 = 50; RTO = 90 + 4·50.
        assert_eq!(snapshot.rtt_variance, Duration::from_millis(50));
        assert_eq!(snapshot.retransmit_timeout, Duration::from_millis(290));
        assert_eq!(snapshot.in_flight, 3);
        assert_eq!(stats.retransmit_timeout(), Duration::from_millis(290));
        stats.timed_out(Duration::from_millis(290), Instant::now(), 3, Duration::from_secs(1), Instant::now());
        assert_eq!(stats.retransmit_timeout(), Duration::from_millis(580));
    }
}
