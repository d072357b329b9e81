//! Counters, and their exposition through `prometheus-client`.
//!
//! Each server has a registry of its own, so several servers in one
//! process (a test suite) never mix their figures. The counters the query
//! path moves are created up front and kept as handles: counting is one
//! relaxed atomic add, with no label lookup. Per-upstream figures (the slow
//! path) are looked up by label. The upstream groups keep their own
//! figures (`signpost_upstream::ServerStats`, `GroupStats`); a scrape reads
//! a snapshot of them and encodes it next to the registry's
//! ([`UpstreamFigures`]), so the query path pays nothing for them.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::RwLock;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use signpost_upstream::{GroupStats, ServerStats, Upstreams};

use crate::cache::CacheStats;
use crate::kernel::{self, UdpSockets};

/// An index enum and the label of each variant, side by side: counters
/// are kept in an array in this order, indexed by `variant as usize`.
macro_rules! labelled_index {
    (
        $(#[$meta:meta])* $name:ident, $labels:ident;
        $( $(#[$variant_meta:meta])* $variant:ident = $label:literal, )*
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        pub(crate) enum $name {
            $( $(#[$variant_meta])* $variant, )*
        }

        const $labels: [&str; [$($label),*].len()] = [$($label),*];
    };
}

labelled_index! {
    /// Which transport a query came over.
    TransportIndex, TRANSPORTS;
    Udp = "udp",
    Tcp = "tcp",
    Dot = "dot",
    Doh = "doh",
}

labelled_index! {
    /// What the pipeline did with a query.
    DecisionIndex, DECISIONS;
    Local = "local",
    Cache = "cache",
    Forwarded = "forwarded",
    Blocked = "blocked",
    Stale = "stale",
    Failed = "upstream_failed",
    Refused = "refused",
    Error = "error",
    /// The upstream group had no capacity left: SERVFAIL or a drop, on purpose.
    Overloaded = "upstream_overloaded",
    /// SERVFAIL to a query that came back round a forwarding loop.
    Loop = "loop",
    /// A truncated answer in place of one response rate limiting dropped.
    Slipped = "slipped",
    /// `ANY` answered with one HINFO record (RFC 8482).
    MinimalAny = "minimal_any",
}

labelled_index! {
    /// Why a packet got no answer.
    DropIndex, DROPS;
    Malformed = "malformed",
    RateLimited = "rate_limited",
    ListenerLimit = "listener_limit",
    NotAQuery = "not_a_query",
    Fault = "fault",
    TcpLimit = "tcp_limit",
    /// The upstream group had no capacity left and `overload_action` is `drop`.
    UpstreamOverloaded = "upstream_overloaded",
    /// Response rate limiting.
    ResponseRateLimit = "response_rate_limit",
    /// Too many queries waiting for an upstream.
    InFlightLimit = "in_flight_limit",
}

/// One more on the handle at `index` (a `labelled_index!` variant).
fn increment(counters: &[Counter], index: usize) {
    if let Some(counter) = counters.get(index) {
        counter.inc();
    }
}

/// The count of the handle whose label is `label`, 0 for an unknown label.
fn count_labelled(labels: &[&str], counters: &[Counter], label: &str) -> u64 {
    labels.iter().position(|name| *name == label).and_then(|index| counters.get(index)).map_or(0, Counter::get)
}

/// Response codes counted through handles made up front (NOERROR to
/// REFUSED); rarer ones are looked up by label when they happen.
const COMMON_RCODES: u16 = 6;

/// Latency buckets in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Servers whose latency histogram handle is kept (the rest are looked up each time).
const MAX_LATENCY_HANDLES: usize = 256;

/// One label, `name="value"`.
type Label<V> = [(&'static str, V); 1];

/// The server's counters.
pub struct Metrics {
    registry: Registry,
    queries: [Counter; 4],
    responses: Family<Label<String>, Counter>,
    common_responses: [Counter; COMMON_RCODES as usize],
    decisions: [Counter; DECISIONS.len()],
    drops: [Counter; DROPS.len()],
    log_dropped: Counter,
    cache: CacheStats,
    cache_entries: Gauge,
    upstream_latency: Family<Label<String>, Histogram>,
    /// Handles into `upstream_latency` by server, so that an attempt costs
    /// no label formatting and no family lookup once its server was seen.
    latency_handles: RwLock<Vec<(&'static str, SocketAddr, Histogram)>>,
    upstream_failures: Family<[(&'static str, String); 2], Counter>,
    config_version: Family<Label<String>, Gauge>,
    config_reloads: [Counter; 2],
    dnstap_frames: [Counter; 2],
    firewall: Family<[(&'static str, String); 3], Counter>,
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
        let dnstap_frames: Family<Label<&'static str>, Counter> = Family::default();
        registry.register(
            "signpost_dnstap_frames",
            "dnstap frames sent to the collector, or dropped (queue full, collector away)",
            dnstap_frames.clone(),
        );
        let firewall: Family<[(&'static str, String); 3], Counter> = Family::default();
        registry.register(
            "signpost_firewall_matches",
            "Queries a DNS Firewall rule matched, by rule group, rule and action (FAIL_CLOSED: the rule could not be evaluated)",
            firewall.clone(),
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
            latency_handles: RwLock::default(),
            upstream_failures,
            config_version,
            config_reloads: ["success", "failure"].map(|name| handle(&config_reloads, "outcome", name)),
            dnstap_frames: ["sent", "dropped"].map(|name| handle(&dnstap_frames, "outcome", name)),
            firewall,
            registry,
        }
    }
}

impl Metrics {
    pub(crate) fn query(&self, transport: TransportIndex) {
        increment(&self.queries, transport as usize);
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
        increment(&self.decisions, decision as usize);
    }

    pub(crate) fn dropped(&self, reason: DropIndex) {
        increment(&self.drops, reason as usize);
    }

    pub(crate) fn firewall_match(&self, group: &str, rule: &str, action: &'static str) {
        self.firewall
            .get_or_create(&[("group", group.to_string()), ("rule", rule.to_string()), ("action", action.to_string())])
            .inc();
    }

    /// Queries the DNS Firewall rule `rule` of `group` matched with `action`
    /// (`ALLOW`, `ALERT`, `BLOCK` or `FAIL_CLOSED`).
    pub fn firewall_matches(&self, group: &str, rule: &str, action: &str) -> u64 {
        self.firewall
            .get(&[("group", group.to_string()), ("rule", rule.to_string()), ("action", action.to_string())])
            .map_or(0, |counter| counter.get())
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
        self.observe_latency(protocol, server, duration.as_secs_f64());
        if let Some(failure) = failure {
            let server = format!("{protocol}://{server}");
            self.upstream_failures.get_or_create(&[("server", server), ("outcome", failure.to_string())]).inc();
        }
    }

    /// Add `seconds` to one server's latency histogram: through its handle
    /// (sharing the family's) where one is kept, observed under the read
    /// lock rather than cloned out of it (two atomic operations fewer per
    /// forward); through the family, keeping a handle, the first time.
    fn observe_latency(&self, protocol: &'static str, server: SocketAddr, seconds: f64) {
        fn known<'h>(
            handles: &'h [(&'static str, SocketAddr, Histogram)],
            protocol: &str,
            server: SocketAddr,
        ) -> Option<&'h Histogram> {
            handles.iter().find(|(p, s, _)| *p == protocol && *s == server).map(|(_, _, handle)| handle)
        }
        if let Ok(handles) = self.latency_handles.read()
            && let Some(handle) = known(&handles, protocol, server)
        {
            handle.observe(seconds);
            return;
        }
        let label = format!("{protocol}://{server}");
        let handle = self.upstream_latency.get_or_create(&[("server", label)]).clone();
        handle.observe(seconds);
        // Bounded: a reload that changes servers adds a few, never one per query.
        if let Ok(mut handles) = self.latency_handles.write()
            && handles.len() < MAX_LATENCY_HANDLES
            && known(&handles, protocol, server).is_none()
        {
            handles.push((protocol, server, handle));
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
        increment(&self.config_reloads, usize::from(!success));
    }

    /// Reloads so far that succeeded (`true`) or failed (`false`).
    pub fn config_reloads(&self, success: bool) -> u64 {
        self.config_reloads.get(usize::from(!success)).map_or(0, Counter::get)
    }

    /// Queries received over `transport` ("udp", "tcp", "dot", "doh").
    pub fn queries(&self, transport: &str) -> u64 {
        count_labelled(&TRANSPORTS, &self.queries, transport)
    }

    /// Packets dropped for `reason` ("malformed", "rate_limited",
    /// "listener_limit", "not_a_query", "fault", "tcp_limit", "upstream_overloaded").
    pub fn drops(&self, reason: &str) -> u64 {
        count_labelled(&DROPS, &self.drops, reason)
    }

    /// Queries by what was done with them ("local", "cache", "forwarded",
    /// "blocked", "stale", "upstream_failed", "refused", "error", "upstream_overloaded").
    pub fn decisions(&self, decision: &str) -> u64 {
        count_labelled(&DECISIONS, &self.decisions, decision)
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

    /// Count dnstap frames: written to the collector (`sent`) or not.
    pub(crate) fn dnstap_frames_add(&self, sent: bool, count: u64) {
        if let Some(counter) = self.dnstap_frames.get(usize::from(!sent)) {
            counter.inc_by(count);
        }
    }

    /// dnstap frames written to the collector (`sent`), or dropped: the
    /// queue was full or the collector was away.
    pub fn dnstap_frames(&self, sent: bool) -> u64 {
        self.dnstap_frames.get(usize::from(!sent)).map_or(0, Counter::get)
    }

    /// The OpenMetrics text exposition (which Prometheus reads), with the
    /// cache holding `cache_entries` entries, the figures `upstreams` keep
    /// of their servers and groups, and what the kernel knows of the UDP
    /// listeners' sockets (by listener id).
    pub(crate) fn render(
        &self,
        cache_entries: usize,
        upstreams: &Upstreams,
        listeners: &[(String, UdpSockets)],
    ) -> String {
        self.cache_entries.set(i64::try_from(cache_entries).unwrap_or(i64::MAX));
        let mut snapshot = Registry::default();
        snapshot.register_collector(Box::new(UpstreamFigures::of(upstreams)));
        snapshot.register_collector(Box::new(SocketFigures::of(listeners)));
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &snapshot);
        let _ = encode_eof(&mut out);
        out
    }
}

/// What the kernel says of the process's UDP sockets, read at a scrape.
#[derive(Debug)]
struct SocketFigures {
    /// Each UDP listener: its id, the receive buffer granted, datagrams dropped.
    listeners: Vec<(String, Option<usize>, u64)>,
    /// Datagrams dropped on the process's other open UDP sockets (the
    /// upstream pools'), when /proc could be read.
    others: Option<u64>,
    /// The network namespace's UDP receive-buffer errors, as nstat shows them.
    system: Option<u64>,
}

impl SocketFigures {
    fn of(listeners: &[(String, UdpSockets)]) -> Self {
        let drops = kernel::udp_drops();
        let sum = |inodes: &mut dyn Iterator<Item = &u64>| inodes.filter_map(|inode| drops.get(inode)).sum::<u64>();
        let mine: HashSet<u64> = listeners.iter().flat_map(|(_, sockets)| sockets.inodes.iter().copied()).collect();
        let others = (!drops.is_empty())
            .then(|| sum(&mut kernel::own_socket_inodes().iter().filter(|inode| !mine.contains(inode))));
        Self {
            listeners: listeners
                .iter()
                .map(|(id, sockets)| (id.clone(), sockets.receive_buffer, sum(&mut sockets.inodes.iter())))
                .collect(),
            others,
            system: kernel::system_receive_buffer_errors(),
        }
    }
}

impl Collector for SocketFigures {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let e = &mut encoder;
        let buffers = self.listeners.iter().filter_map(|(id, granted, _)| {
            Some(([("listener", id.clone())], ConstGauge::new(i64::try_from((*granted)?).unwrap_or(i64::MAX))))
        });
        family(
            e,
            "signpost_udp_receive_buffer_bytes",
            "Kernel receive buffer granted to each of the UDP listener's sockets",
            buffers,
        )?;
        let drops = self.listeners.iter().map(|(id, _, drops)| ([("listener", id.clone())], ConstCounter::new(*drops)));
        family(
            e,
            "signpost_udp_receive_drops",
            "Queries the kernel dropped because the UDP listener's receive buffers were full",
            drops,
        )?;
        if let Some(others) = self.others {
            let others = ConstGauge::new(i64::try_from(others).unwrap_or(i64::MAX));
            let metric = e.encode_descriptor(
                "signpost_udp_other_receive_drops",
                "Datagrams the kernel dropped for full receive buffers on the process's other open UDP sockets \
                 (the upstream pools'); retired sockets leave the sum",
                None,
                others.metric_type(),
            )?;
            others.encode(metric)?;
        }
        if let Some(system) = self.system {
            let system = ConstCounter::new(system);
            let metric = e.encode_descriptor(
                "signpost_system_udp_receive_buffer_errors",
                "UdpRcvbufErrors plus Udp6RcvbufErrors of the network namespace, every process's sockets (as nstat)",
                None,
                system.metric_type(),
            )?;
            system.encode(metric)?;
        }
        Ok(())
    }
}

/// A snapshot of the upstreams' own figures, taken at a scrape.
#[derive(Debug)]
struct UpstreamFigures {
    servers: Vec<ServerStats>,
    groups: Vec<GroupStats>,
}

/// The labels of a server's figures: its group and `protocol://address`,
/// the spelling of `signpost_upstream_latency_seconds`'s `server` label.
type ServerLabels = [(&'static str, String); 2];

impl UpstreamFigures {
    fn of(upstreams: &Upstreams) -> Self {
        Self { servers: upstreams.stats(), groups: upstreams.group_stats() }
    }

    fn server_labels(server: &ServerStats) -> ServerLabels {
        [("group", server.group.clone()), ("server", format!("{}://{}", server.protocol.as_str(), server.server))]
    }

    /// One counter family, a sample per server.
    fn server_counter(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        value: impl Fn(&ServerStats) -> u64,
    ) -> std::fmt::Result {
        let rows = self.servers.iter().map(|server| (Self::server_labels(server), ConstCounter::new(value(server))));
        family(encoder, name, help, rows)
    }

    /// One gauge family, a sample per server that has a value.
    fn server_gauge<V: EncodeGaugeValue>(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        value: impl Fn(&ServerStats) -> Option<V>,
    ) -> std::fmt::Result {
        let rows = self
            .servers
            .iter()
            .filter_map(|server| Some((Self::server_labels(server), ConstGauge::new(value(server)?))));
        family(encoder, name, help, rows)
    }

    fn group_metric<M: EncodeMetric>(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        value: impl Fn(&GroupStats) -> M,
    ) -> std::fmt::Result {
        let rows = self.groups.iter().map(|group| ([("group", group.group.clone())], value(group)));
        family(encoder, name, help, rows)
    }
}

/// Encode one family from its samples; a family with none is left out.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = (L, M)>,
) -> std::fmt::Result {
    let mut rows = rows.peekable();
    let Some((_, first)) = rows.peek() else { return Ok(()) };
    let mut metric = encoder.encode_descriptor(name, help, None, first.metric_type())?;
    for (labels, value) in rows {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

impl Collector for UpstreamFigures {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let e = &mut encoder;
        self.server_counter(
            e,
            "signpost_upstream_messages",
            "Messages sent to the server, retransmissions included",
            |s| s.queries,
        )?;
        self.server_counter(
            e,
            "signpost_upstream_retransmits",
            "Messages sent again because an earlier one had no answer within its retransmission timeout",
            |s| s.retransmits,
        )?;
        self.server_counter(e, "signpost_upstream_answers", "Valid answers received", |s| s.answers)?;
        self.server_counter(
            e,
            "signpost_upstream_late_answers",
            "Answers that came after their message's retransmission timeout",
            |s| s.late_answers,
        )?;
        self.server_counter(
            e,
            "signpost_upstream_timeouts",
            "Messages with no answer within their retransmission timeout (presumed lost)",
            |s| s.timeouts,
        )?;
        self.server_counter(e, "signpost_upstream_errors", "Tries that failed otherwise than by timing out", |s| {
            s.errors
        })?;
        self.server_counter(
            e,
            "signpost_upstream_spoofs_dropped",
            "Datagrams dropped because their ID or question matched no query in flight",
            |s| s.spoofs_dropped,
        )?;
        self.server_counter(
            e,
            "signpost_upstream_send_buffer_full",
            "Batched UDP messages the kernel did not take (send buffer full), left to their retransmission",
            |s| s.send_buffer_full,
        )?;
        self.server_counter(
            e,
            "signpost_upstream_stale_answers",
            "Answers dropped because their query had stopped waiting for them",
            |s| s.stale_answers,
        )?;
        self.server_counter(
            e,
            "signpost_upstream_overloaded",
            "Sends refused because every message ID of the server's sockets was in use",
            |s| s.overloaded,
        )?;
        self.server_gauge(
            e,
            "signpost_upstream_in_flight",
            "UDP queries waiting for an answer from the server",
            |s| Some(i64::try_from(s.in_flight).unwrap_or(i64::MAX)),
        )?;
        self.server_gauge(
            e,
            "signpost_upstream_smoothed_rtt_seconds",
            "Smoothed round-trip time (RFC 6298 SRTT), once measured",
            |s| s.smoothed_rtt.map(seconds),
        )?;
        self.server_gauge(e, "signpost_upstream_rtt_variance_seconds", "Round-trip time deviation (RTTVAR)", |s| {
            Some(seconds(s.rtt_variance))
        })?;
        self.server_gauge(
            e,
            "signpost_upstream_retransmit_timeout_seconds",
            "The wait the next UDP message to the server gets before it is sent again",
            |s| Some(seconds(s.retransmit_timeout)),
        )?;
        self.server_gauge(
            e,
            "signpost_upstream_receive_buffer_bytes",
            "Kernel receive buffer granted to the server's newest UDP socket",
            |s| s.receive_buffer.map(|granted| i64::try_from(granted).unwrap_or(i64::MAX)),
        )?;
        self.server_gauge(e, "signpost_upstream_up", "1 while the server is in use, 0 once marked down", |s| {
            Some(i64::from(s.up))
        })?;
        self.server_gauge(e, "signpost_upstream_consecutive_failures", "Failures since the last answer", |s| {
            Some(i64::from(s.consecutive_failures))
        })?;
        self.group_metric(e, "signpost_upstream_group_in_flight", "Queries in flight through the group", |g| {
            ConstGauge::new(i64::try_from(g.in_flight).unwrap_or(i64::MAX))
        })?;
        self.group_metric(
            e,
            "signpost_upstream_group_max_outstanding",
            "The group's max_outstanding: queries it may have in flight at once",
            |g| ConstGauge::new(i64::try_from(g.max_outstanding).unwrap_or(i64::MAX)),
        )?;
        self.group_metric(
            e,
            "signpost_upstream_group_queued",
            "Queries that found max_outstanding in flight and waited for a slot",
            |g| ConstCounter::new(g.queued),
        )?;
        self.group_metric(
            e,
            "signpost_upstream_group_overloaded",
            "Queries refused because no slot freed within queue_timeout",
            |g| ConstCounter::new(g.overloaded),
        )?;
        Ok(())
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
        let text = metrics.render(7, &Upstreams::default(), &[]);
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
    fn renders_the_upstreams_figures() {
        let server: SocketAddr = "127.0.0.1:5300".parse().expect("address");
        let mut group = signpost_upstream::GroupConfig::new("corp", vec![signpost_upstream::ServerConfig::udp(server)]);
        group.max_outstanding = 64;
        let upstreams = Upstreams::new(vec![group]).expect("a valid group");
        let text = Metrics::default().render(0, &upstreams, &[]);
        let labels = "{group=\"corp\",server=\"udp://127.0.0.1:5300\"}";
        for line in [
            "# TYPE signpost_upstream_retransmits counter".to_string(),
            format!("signpost_upstream_messages_total{labels} 0"),
            format!("signpost_upstream_retransmits_total{labels} 0"),
            format!("signpost_upstream_timeouts_total{labels} 0"),
            format!("signpost_upstream_spoofs_dropped_total{labels} 0"),
            format!("signpost_upstream_overloaded_total{labels} 0"),
            format!("signpost_upstream_send_buffer_full_total{labels} 0"),
            format!("signpost_upstream_in_flight{labels} 0"),
            format!("signpost_upstream_up{labels} 1"),
            // Unmeasured: Unbound's 376 ms for an unknown server.
            format!("signpost_upstream_retransmit_timeout_seconds{labels} 0.376"),
            "signpost_upstream_group_max_outstanding{group=\"corp\"} 64".to_string(),
            "signpost_upstream_group_overloaded_total{group=\"corp\"} 0".to_string(),
            "signpost_upstream_group_queued_total{group=\"corp\"} 0".to_string(),
        ] {
            assert!(text.lines().any(|written| written == line), "no {line:?} in\n{text}");
        }
        // No estimate yet: no sample, and the family is left out.
        assert!(!text.contains("signpost_upstream_smoothed_rtt_seconds"), "{text}");
        // One end, after both parts.
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn each_server_counts_on_its_own() {
        let (one, two) = (Metrics::default(), Metrics::default());
        one.query(TransportIndex::Tcp);
        assert_eq!(one.queries("tcp"), 1);
        assert_eq!(two.queries("tcp"), 0);
        assert!(two.render(0, &Upstreams::default(), &[]).contains("signpost_queries_total{transport=\"tcp\"} 0"));
    }
}
