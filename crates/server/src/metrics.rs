//! Counters and their Prometheus text rendering.
//!
//! Hot-path counters are relaxed atomics; per-upstream figures sit behind a
//! mutex that only the forwarding (slow) path touches.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::cache::CacheStats;

/// Which transport a query came over.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum TransportIndex {
    Udp = 0,
    Tcp = 1,
    Dot = 2,
    Doh = 3,
}

const TRANSPORTS: [&str; 4] = ["udp", "tcp", "dot", "doh"];

/// What the pipeline did with a query.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum DecisionIndex {
    Local = 0,
    Cache = 1,
    Forwarded = 2,
    Blocked = 3,
    Stale = 4,
    Failed = 5,
    Refused = 6,
    Error = 7,
}

const DECISIONS: [&str; 8] = ["local", "cache", "forwarded", "blocked", "stale", "upstream_failed", "refused", "error"];

/// Why a packet got no answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum DropIndex {
    Malformed = 0,
    RateLimited = 1,
    ListenerLimit = 2,
    NotAQuery = 3,
    Fault = 4,
    TcpLimit = 5,
}

const DROPS: [&str; 6] = ["malformed", "rate_limited", "listener_limit", "not_a_query", "fault", "tcp_limit"];

/// Latency buckets in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Default, Clone)]
struct UpstreamFigures {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
    failures: BTreeMap<&'static str, u64>,
}

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    queries: [AtomicU64; 4],
    rcodes: [AtomicU64; 24],
    decisions: [AtomicU64; 8],
    drops: [AtomicU64; 6],
    log_dropped: AtomicU64,
    upstreams: Mutex<BTreeMap<(&'static str, SocketAddr), UpstreamFigures>>,
}

impl Metrics {
    pub(crate) fn query(&self, transport: TransportIndex) {
        if let Some(counter) = self.queries.get(transport as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn rcode(&self, rcode: u16) {
        let index = usize::from(rcode).min(self.rcodes.len() - 1);
        if let Some(counter) = self.rcodes.get(index) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn decision(&self, decision: DecisionIndex) {
        if let Some(counter) = self.decisions.get(decision as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn dropped(&self, reason: DropIndex) {
        if let Some(counter) = self.drops.get(reason as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn log_dropped(&self) {
        self.log_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn upstream_attempt(
        &self,
        protocol: &'static str,
        server: SocketAddr,
        duration: Duration,
        failure: Option<&'static str>,
    ) {
        let Ok(mut upstreams) = self.upstreams.lock() else { return };
        let figures = upstreams.entry((protocol, server)).or_default();
        let seconds = duration.as_secs_f64();
        figures.count += 1;
        figures.sum_seconds += seconds;
        for (bucket, bound) in figures.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        if let Some(failure) = failure {
            *figures.failures.entry(failure).or_default() += 1;
        }
    }

    /// Queries received over `transport` ("udp", "tcp", "dot", "doh").
    pub fn queries(&self, transport: &str) -> u64 {
        TRANSPORTS
            .iter()
            .position(|name| *name == transport)
            .and_then(|index| self.queries.get(index))
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }

    /// Packets dropped for `reason` ("malformed", "rate_limited", "listener_limit", "not_a_query", "fault", "tcp_limit").
    pub fn drops(&self, reason: &str) -> u64 {
        DROPS
            .iter()
            .position(|name| *name == reason)
            .and_then(|index| self.drops.get(index))
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }

    /// Queries by what was done with them ("local", "cache", "forwarded", ...).
    pub fn decisions(&self, decision: &str) -> u64 {
        DECISIONS
            .iter()
            .position(|name| *name == decision)
            .and_then(|index| self.decisions.get(index))
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }

    /// Responses sent with `rcode` (values 23 and up share the last counter).
    pub fn responses(&self, rcode: u16) -> u64 {
        self.rcodes.get(usize::from(rcode).min(23)).map_or(0, |counter| counter.load(Ordering::Relaxed))
    }

    /// Query-log lines dropped because the writer fell behind.
    pub fn log_lines_dropped(&self) -> u64 {
        self.log_dropped.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition format.
    pub fn render(&self, cache: &CacheStats, cache_entries: usize) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(out, "# HELP signpost_queries_total Queries received, by transport.");
        let _ = writeln!(out, "# TYPE signpost_queries_total counter");
        for (name, counter) in TRANSPORTS.iter().zip(&self.queries) {
            let _ = writeln!(out, "signpost_queries_total{{transport=\"{name}\"}} {}", counter.load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "# HELP signpost_responses_total Responses sent, by rcode.");
        let _ = writeln!(out, "# TYPE signpost_responses_total counter");
        for (rcode, counter) in self.rcodes.iter().enumerate() {
            let value = counter.load(Ordering::Relaxed);
            if value > 0 {
                let name = signpost_wire::Rcode(rcode as u16);
                let _ = writeln!(out, "signpost_responses_total{{rcode=\"{name}\"}} {value}");
            }
        }
        let _ = writeln!(out, "# HELP signpost_decisions_total Queries by what answered them.");
        let _ = writeln!(out, "# TYPE signpost_decisions_total counter");
        for (name, counter) in DECISIONS.iter().zip(&self.decisions) {
            let _ =
                writeln!(out, "signpost_decisions_total{{decision=\"{name}\"}} {}", counter.load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "# HELP signpost_dropped_total Packets that got no answer, by reason.");
        let _ = writeln!(out, "# TYPE signpost_dropped_total counter");
        for (name, counter) in DROPS.iter().zip(&self.drops) {
            let _ = writeln!(out, "signpost_dropped_total{{reason=\"{name}\"}} {}", counter.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP signpost_query_log_dropped_total Query-log lines dropped because the writer fell behind."
        );
        let _ = writeln!(out, "# TYPE signpost_query_log_dropped_total counter");
        let _ = writeln!(out, "signpost_query_log_dropped_total {}", self.log_dropped.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP signpost_cache_operations_total Cache hits, misses, stale hits, inserts and evictions."
        );
        let _ = writeln!(out, "# TYPE signpost_cache_operations_total counter");
        for (name, counter) in [
            ("hit", &cache.hits),
            ("miss", &cache.misses),
            ("stale_hit", &cache.stale_hits),
            ("insert", &cache.inserts),
            ("eviction", &cache.evictions),
        ] {
            let _ =
                writeln!(out, "signpost_cache_operations_total{{op=\"{name}\"}} {}", counter.load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "# HELP signpost_cache_entries Entries in the answer cache.");
        let _ = writeln!(out, "# TYPE signpost_cache_entries gauge");
        let _ = writeln!(out, "signpost_cache_entries {cache_entries}");
        let upstreams = self.upstreams.lock().map(|u| u.clone()).unwrap_or_default();
        let _ = writeln!(out, "# HELP signpost_upstream_latency_seconds Time per upstream attempt.");
        let _ = writeln!(out, "# TYPE signpost_upstream_latency_seconds histogram");
        for ((protocol, address), figures) in &upstreams {
            let server = format!("{protocol}://{address}");
            for (bucket, bound) in figures.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "signpost_upstream_latency_seconds_bucket{{server=\"{server}\",le=\"{bound}\"}} {bucket}"
                );
            }
            let _ = writeln!(
                out,
                "signpost_upstream_latency_seconds_bucket{{server=\"{server}\",le=\"+Inf\"}} {}",
                figures.count
            );
            let _ =
                writeln!(out, "signpost_upstream_latency_seconds_sum{{server=\"{server}\"}} {}", figures.sum_seconds);
            let _ = writeln!(out, "signpost_upstream_latency_seconds_count{{server=\"{server}\"}} {}", figures.count);
        }
        let _ =
            writeln!(out, "# HELP signpost_upstream_failures_total Failed upstream attempts, by server and outcome.");
        let _ = writeln!(out, "# TYPE signpost_upstream_failures_total counter");
        for ((protocol, address), figures) in &upstreams {
            let server = format!("{protocol}://{address}");
            for (outcome, count) in &figures.failures {
                let _ = writeln!(
                    out,
                    "signpost_upstream_failures_total{{server=\"{server}\",outcome=\"{outcome}\"}} {count}"
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::default();
        metrics.query(TransportIndex::Udp);
        metrics.query(TransportIndex::Doh);
        metrics.rcode(3);
        metrics.decision(DecisionIndex::Cache);
        metrics.dropped(DropIndex::RateLimited);
        let server: SocketAddr = "127.0.0.1:53".parse().expect("address");
        metrics.upstream_attempt("udp", server, Duration::from_millis(3), None);
        metrics.upstream_attempt("udp", server, Duration::from_secs(2), Some("timeout"));
        let text = metrics.render(&CacheStats::default(), 7);
        assert!(text.contains("signpost_queries_total{transport=\"udp\"} 1"));
        assert!(text.contains("signpost_responses_total{rcode=\"NXDOMAIN\"} 1"));
        assert!(text.contains("signpost_dropped_total{reason=\"rate_limited\"} 1"));
        assert!(
            text.contains("signpost_upstream_latency_seconds_bucket{server=\"udp://127.0.0.1:53\",le=\"0.005\"} 1")
        );
        assert!(text.contains("signpost_upstream_failures_total{server=\"udp://127.0.0.1:53\",outcome=\"timeout\"} 1"));
        assert!(text.contains("signpost_cache_entries 7"));
        assert_eq!(metrics.queries("doh"), 1);
        assert_eq!(metrics.drops("rate_limited"), 1);
    }
}
