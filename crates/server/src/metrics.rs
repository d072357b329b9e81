//! Counters, and their exposition through `prometheus-client`.
//!
//! Each server has a registry of its own, so several servers in one
//! process (a test suite) never mix their figures. The counters the query
//! path moves are created up front and kept as handles: counting is one
//! relaxed atomic add, with no label lookup. Per-upstream figures (the slow
//! path) are looked up by label.

use std::net::SocketAddr;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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

/// Response codes counted through handles made up front (NOERROR to
/// REFUSED); rarer ones are looked up by label when they happen.
const COMMON_RCODES: u16 = 6;

/// Latency buckets in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// One label, `name="value"`.
type Label<V> = [(&'static str, V); 1];

/// The server's counters.
pub struct Metrics {
    registry: Registry,
    queries: [Counter; 4],
    responses: Family<Label<String>, Counter>,
    common_responses: [Counter; COMMON_RCODES as usize],
    decisions: [Counter; 8],
    drops: [Counter; 6],
    log_dropped: Counter,
    cache: CacheStats,
    cache_entries: Gauge,
    upstream_latency: Family<Label<String>, Histogram>,
    upstream_failures: Family<[(&'static str, String); 2], Counter>,
    config_version: Family<Label<String>, Gauge>,
    config_reloads: [Counter; 2],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let queries: Family<Label<&'static str>, Counter> = Family::default();
        registry.register("signpost_queries", "Queries received, by transport", queries.clone());
        let responses: Family<Label<String>, Counter> = Family::default();
        registry.register("signpost_responses", "Responses sent, by rcode", responses.clone());
        let decisions: Family<Label<&'static str>, Counter> = Family::default();
        registry.register("signpost_decisions", "Queries by what answered them", decisions.clone());
        let drops: Family<Label<&'static str>, Counter> = Family::default();
        registry.register("signpost_dropped", "Packets that got no answer, by reason", drops.clone());
        let log_dropped = Counter::default();
        registry.register(
            "signpost_query_log_dropped",
            "Query-log lines dropped because the writer fell behind",
            log_dropped.clone(),
        );
        let cache_operations: Family<Label<&'static str>, Counter> = Family::default();
        registry.register(
            "signpost_cache_operations",
            "Cache hits, misses, stale hits, inserts and evictions",
            cache_operations.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register("signpost_cache_entries", "Entries in the answer cache", cache_entries.clone());
        let upstream_latency: Family<Label<String>, Histogram> =
            Family::new_with_constructor(|| Histogram::new(BUCKETS));
        registry.register("signpost_upstream_latency_seconds", "Time per upstream attempt", upstream_latency.clone());
        let upstream_failures: Family<[(&'static str, String); 2], Counter> = Family::default();
        registry.register(
            "signpost_upstream_failures",
            "Failed upstream attempts, by server and outcome",
            upstream_failures.clone(),
        );
        let config_version: Family<Label<String>, Gauge> = Family::default();
        registry.register(
            "signpost_config_version",
            "The configuration in force: 1 for its version (the start of the SHA-256 of its file)",
            config_version.clone(),
        );
        let config_reloads: Family<Label<&'static str>, Counter> = Family::default();
        registry.register(
            "signpost_config_reloads",
            "Reloads of the configuration, by outcome (a failed one keeps the old configuration)",
            config_reloads.clone(),
        );
        let handle = |family: &Family<Label<&'static str>, Counter>, name: &'static str, value: &'static str| {
            family.get_or_create(&[(name, value)]).clone()
        };
        let cache = CacheStats {
            hits: handle(&cache_operations, "op", "hit"),
            misses: handle(&cache_operations, "op", "miss"),
            stale_hits: handle(&cache_operations, "op", "stale_hit"),
            inserts: handle(&cache_operations, "op", "insert"),
            evictions: handle(&cache_operations, "op", "eviction"),
        };
        Self {
            queries: TRANSPORTS.map(|name| handle(&queries, "transport", name)),
            common_responses: std::array::from_fn(|rcode| {
                let name = signpost_wire::Rcode(rcode as u16).to_string();
                responses.get_or_create(&[("rcode", name)]).clone()
            }),
            responses,
            decisions: DECISIONS.map(|name| handle(&decisions, "decision", name)),
            drops: DROPS.map(|name| handle(&drops, "reason", name)),
            log_dropped,
            cache,
            cache_entries,
            upstream_latency,
            upstream_failures,
            config_version,
            config_reloads: ["success", "failure"].map(|name| handle(&config_reloads, "outcome", name)),
            registry,
        }
    }
}

impl Metrics {
    pub(crate) fn query(&self, transport: TransportIndex) {
        if let Some(counter) = self.queries.get(transport as usize) {
            counter.inc();
        }
    }

    pub(crate) fn rcode(&self, rcode: u16) {
        match self.common_responses.get(usize::from(rcode)) {
            Some(counter) => {
                counter.inc();
            }
            None => {
                self.responses.get_or_create(&[("rcode", signpost_wire::Rcode(rcode).to_string())]).inc();
            }
        }
    }

    pub(crate) fn decision(&self, decision: DecisionIndex) {
        if let Some(counter) = self.decisions.get(decision as usize) {
            counter.inc();
        }
    }

    pub(crate) fn dropped(&self, reason: DropIndex) {
        if let Some(counter) = self.drops.get(reason as usize) {
            counter.inc();
        }
    }

    pub(crate) fn log_dropped(&self) {
        self.log_dropped.inc();
    }

    /// The cache's counters, registered here.
    pub(crate) fn cache_stats(&self) -> CacheStats {
        self.cache.clone()
    }

    pub(crate) fn upstream_attempt(
        &self,
        protocol: &'static str,
        server: SocketAddr,
        duration: Duration,
        failure: Option<&'static str>,
    ) {
        let server = format!("{protocol}://{server}");
        self.upstream_latency.get_or_create(&[("server", server.clone())]).observe(duration.as_secs_f64());
        if let Some(failure) = failure {
            self.upstream_failures.get_or_create(&[("server", server), ("outcome", failure.to_string())]).inc();
        }
    }

    /// The configuration version in force becomes `version` (the gauge of
    /// the previous one is removed).
    pub fn set_config_version(&self, version: &str) {
        self.config_version.clear();
        self.config_version.get_or_create(&[("version", version.to_string())]).set(1);
    }

    /// Count a reload, successful or not.
    pub fn config_reload(&self, success: bool) {
        if let Some(counter) = self.config_reloads.get(usize::from(!success)) {
            counter.inc();
        }
    }

    /// Reloads so far that succeeded (`true`) or failed (`false`).
    pub fn config_reloads(&self, success: bool) -> u64 {
        self.config_reloads.get(usize::from(!success)).map_or(0, Counter::get)
    }

    /// Queries received over `transport` ("udp", "tcp", "dot", "doh").
    pub fn queries(&self, transport: &str) -> u64 {
        TRANSPORTS
            .iter()
            .position(|name| *name == transport)
            .and_then(|index| self.queries.get(index))
            .map_or(0, Counter::get)
    }

    /// Packets dropped for `reason` ("malformed", "rate_limited", "listener_limit", "not_a_query", "fault", "tcp_limit").
    pub fn drops(&self, reason: &str) -> u64 {
        DROPS.iter().position(|name| *name == reason).and_then(|index| self.drops.get(index)).map_or(0, Counter::get)
    }

    /// Queries by what was done with them ("local", "cache", "forwarded", ...).
    pub fn decisions(&self, decision: &str) -> u64 {
        DECISIONS
            .iter()
            .position(|name| *name == decision)
            .and_then(|index| self.decisions.get(index))
            .map_or(0, Counter::get)
    }

    /// Responses sent with `rcode`.
    pub fn responses(&self, rcode: u16) -> u64 {
        match self.common_responses.get(usize::from(rcode)) {
            Some(counter) => counter.get(),
            None => self.responses.get_or_create(&[("rcode", signpost_wire::Rcode(rcode).to_string())]).get(),
        }
    }

    /// Query-log lines dropped because the writer fell behind.
    pub fn log_lines_dropped(&self) -> u64 {
        self.log_dropped.get()
    }

    /// The OpenMetrics text exposition (which Prometheus reads), with the
    /// cache holding `cache_entries` entries.
    pub fn render(&self, cache_entries: usize) -> String {
        self.cache_entries.set(i64::try_from(cache_entries).unwrap_or(i64::MAX));
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_exposition_format() {
        let metrics = Metrics::default();
        metrics.query(TransportIndex::Udp);
        metrics.query(TransportIndex::Doh);
        metrics.rcode(3);
        metrics.rcode(16);
        metrics.decision(DecisionIndex::Cache);
        metrics.dropped(DropIndex::RateLimited);
        let server: SocketAddr = "127.0.0.1:53".parse().expect("address");
        metrics.upstream_attempt("udp", server, Duration::from_millis(3), None);
        metrics.upstream_attempt("udp", server, Duration::from_secs(2), Some("timeout"));
        metrics.cache_stats().hits.inc();
        metrics.set_config_version("0123456789abcdef");
        metrics.set_config_version("e3b0c44298fc1c14");
        metrics.config_reload(false);
        let text = metrics.render(7);
        for line in [
            "# TYPE signpost_queries counter",
            "signpost_queries_total{transport=\"udp\"} 1",
            "signpost_queries_total{transport=\"tcp\"} 0",
            "signpost_responses_total{rcode=\"NXDOMAIN\"} 1",
            "signpost_responses_total{rcode=\"BADVERS\"} 1",
            "signpost_decisions_total{decision=\"cache\"} 1",
            "signpost_dropped_total{reason=\"rate_limited\"} 1",
            "signpost_query_log_dropped_total 0",
            "signpost_cache_operations_total{op=\"hit\"} 1",
            "signpost_upstream_latency_seconds_bucket{le=\"0.005\",server=\"udp://127.0.0.1:53\"} 1",
            "signpost_upstream_latency_seconds_bucket{le=\"+Inf\",server=\"udp://127.0.0.1:53\"} 2",
            "signpost_upstream_latency_seconds_count{server=\"udp://127.0.0.1:53\"} 2",
            "signpost_upstream_failures_total{server=\"udp://127.0.0.1:53\",outcome=\"timeout\"} 1",
            "signpost_cache_entries 7",
            "signpost_config_version{version=\"e3b0c44298fc1c14\"} 1",
            "signpost_config_reloads_total{outcome=\"success\"} 0",
            "signpost_config_reloads_total{outcome=\"failure\"} 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|written| written == line), "no {line:?} in\n{text}");
        }
        assert_eq!(metrics.queries("doh"), 1);
        assert_eq!(metrics.drops("rate_limited"), 1);
        assert_eq!(metrics.responses(3), 1);
        assert_eq!(metrics.responses(16), 1);
        assert_eq!(metrics.decisions("cache"), 1);
        assert!(!text.contains("0123456789abcdef"), "the old version is gone:\n{text}");
    }

    #[test]
    fn each_server_counts_on_its_own() {
        let (one, two) = (Metrics::default(), Metrics::default());
        one.query(TransportIndex::Tcp);
        assert_eq!(one.queries("tcp"), 1);
        assert_eq!(two.queries("tcp"), 0);
        assert!(two.render(0).contains("signpost_queries_total{transport=\"tcp\"} 0"));
    }
}
