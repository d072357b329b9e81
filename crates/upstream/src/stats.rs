//! Per-server counters, latency histogram and health.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Protocol;

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
    /// Tries sent (a UDP query retried over TCP counts twice).
    pub queries: u64,
    /// Valid answers received.
    pub answers: u64,
    /// Tries that timed out.
    pub timeouts: u64,
    /// Tries that failed otherwise (unreachable, reset, TLS or HTTP errors, malformed answers).
    pub errors: u64,
    /// Messages dropped because their ID or question did not match a query in flight: possible spoofs.
    pub spoofs_dropped: u64,
    /// Answer latencies: `latency_buckets[i]` counts answers within
    /// [`LATENCY_BUCKETS`]`[i]` (and above the bound before); the last entry counts the rest.
    pub latency_buckets: Vec<u64>,
    /// Sum of answer latencies.
    pub latency_sum: Duration,
    /// Smoothed round-trip time, once measured.
    pub smoothed_rtt: Option<Duration>,
    /// Consecutive failures.
    pub consecutive_failures: u32,
    /// Whether the server is in use (false once marked down, until a probe succeeds).
    pub up: bool,
}

/// Live figures of one server.
#[derive(Debug)]
pub(crate) struct Stats {
    queries: AtomicU64,
    answers: AtomicU64,
    timeouts: AtomicU64,
    errors: AtomicU64,
    spoofs: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_micros: AtomicU64,
    pub(crate) health: Mutex<Health>,
}

/// Health and smoothed latency of one server.
#[derive(Clone, Debug, Default)]
pub(crate) struct Health {
    pub(crate) consecutive_failures: u32,
    /// When down: when the next probe is due.
    pub(crate) down_until: Option<Instant>,
    /// The wait before the next probe after this one fails.
    pub(crate) backoff: Duration,
    /// Whether a probe is running.
    pub(crate) probing: bool,
    srtt_micros: Option<u64>,
}

impl Health {
    pub(crate) fn is_up(&self) -> bool {
        self.down_until.is_none()
    }

    pub(crate) fn smoothed_rtt(&self) -> Option<Duration> {
        self.srtt_micros.map(Duration::from_micros)
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            queries: AtomicU64::new(0),
            answers: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            spoofs: AtomicU64::new(0),
            buckets: Default::default(),
            latency_sum_micros: AtomicU64::new(0),
            health: Mutex::new(Health::default()),
        }
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl Stats {
    pub(crate) fn sent(&self) {
        self.queries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn spoof_dropped(&self) {
        self.spoofs.fetch_add(1, Ordering::Relaxed);
    }

    /// A valid answer arrived after `latency`: record it and clear failures.
    pub(crate) fn answered(&self, latency: Duration) {
        self.answers.fetch_add(1, Ordering::Relaxed);
        let bucket = LATENCY_BUCKETS.iter().position(|bound| latency <= *bound).unwrap_or(LATENCY_BUCKETS.len());
        if let Some(counter) = self.buckets.get(bucket) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_sum_micros.fetch_add(micros(latency), Ordering::Relaxed);
        if let Ok(mut health) = self.health.lock() {
            let sample = micros(latency);
            health.srtt_micros = Some(match health.srtt_micros {
                // RFC 6298 smoothing, alpha 1/8.
                Some(srtt) => srtt - srtt / 8 + sample / 8,
                None => sample,
            });
            if health.down_until.is_some() {
                tracing::info!("upstream is answering again; marked up");
            }
            health.consecutive_failures = 0;
            health.down_until = None;
            health.backoff = Duration::ZERO;
        }
    }

    /// A try failed. Returns true when this marked the server down.
    pub(crate) fn failed(&self, timeout: bool, max_fails: u32, backoff: Duration, now: Instant) -> bool {
        if timeout {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let Ok(mut health) = self.health.lock() else { return false };
        health.consecutive_failures = health.consecutive_failures.saturating_add(1);
        if max_fails == 0 || health.consecutive_failures < max_fails || health.down_until.is_some() {
            return false;
        }
        health.backoff = backoff;
        health.down_until = Some(now + backoff);
        true
    }

    /// If the server is down and a probe is due, claim the probe (one at a time).
    pub(crate) fn claim_probe(&self, now: Instant) -> bool {
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
        self.health.lock().map(|health| health.is_up()).unwrap_or(true)
    }

    pub(crate) fn down_until(&self) -> Option<Instant> {
        self.health.lock().ok().and_then(|health| health.down_until)
    }

    pub(crate) fn smoothed_rtt(&self) -> Option<Duration> {
        self.health.lock().ok().and_then(|health| health.smoothed_rtt())
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

    pub(crate) fn snapshot(&self, group: &str, server: SocketAddr, protocol: Protocol) -> ServerStats {
        let health = self.health.lock().map(|health| health.clone()).unwrap_or_default();
        ServerStats {
            group: group.to_string(),
            server,
            protocol,
            queries: self.queries.load(Ordering::Relaxed),
            answers: self.answers.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            spoofs_dropped: self.spoofs.load(Ordering::Relaxed),
            latency_buckets: self.buckets.iter().map(|counter| counter.load(Ordering::Relaxed)).collect(),
            latency_sum: Duration::from_micros(self.latency_sum_micros.load(Ordering::Relaxed)),
            smoothed_rtt: health.smoothed_rtt(),
            consecutive_failures: health.consecutive_failures,
            up: health.is_up(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_buckets_and_give_a_p95() {
        let stats = Stats::default();
        for _ in 0..19 {
            stats.answered(Duration::from_micros(800));
        }
        assert_eq!(stats.p95(), None, "too few samples");
        stats.answered(Duration::from_millis(300));
        let snapshot = stats.snapshot("g", SocketAddr::from(([127, 0, 0, 1], 53)), Protocol::Udp);
        assert_eq!(snapshot.latency_buckets[0], 19);
        assert_eq!(snapshot.latency_buckets[8], 1);
        assert_eq!(snapshot.answers, 20);
        // 95% of 20 is 19: all within the first bucket.
        assert_eq!(stats.p95(), Some(Duration::from_millis(1)));
        stats.answered(Duration::from_secs(30));
        assert_eq!(stats.snapshot("g", snapshot.server, Protocol::Udp).latency_buckets[12], 1);
    }

    #[test]
    fn max_fails_marks_down_and_probes_back_off() {
        let stats = Stats::default();
        let start = Instant::now();
        let backoff = Duration::from_secs(1);
        assert!(!stats.failed(true, 3, backoff, start));
        assert!(!stats.failed(false, 3, backoff, start));
        assert!(stats.is_up());
        assert!(stats.failed(true, 3, backoff, start));
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
        stats.answered(Duration::from_millis(3));
        assert!(stats.is_up());
        let snapshot = stats.snapshot("g", SocketAddr::from(([127, 0, 0, 1], 53)), Protocol::Udp);
        assert_eq!((snapshot.timeouts, snapshot.errors, snapshot.consecutive_failures), (2, 1, 0));
        assert!(snapshot.up);
    }

    #[test]
    fn zero_max_fails_never_marks_down() {
        let stats = Stats::default();
        for _ in 0..100 {
            assert!(!stats.failed(true, 0, Duration::from_secs(1), Instant::now()));
        }
        assert!(stats.is_up());
    }

    #[test]
    fn smoothed_rtt_moves_an_eighth_of_the_way() {
        let stats = Stats::default();
        stats.answered(Duration::from_millis(80));
        stats.answered(Duration::from_millis(160));
        assert_eq!(stats.smoothed_rtt(), Some(Duration::from_millis(90)));
    }
}
