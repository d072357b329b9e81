//! Server configuration: listeners, cache, limits, logging, metrics.
//!
//! Every type deserializes from TOML with defaults for what is left out, so
//! the binaries embed them in their own config files.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use signpost_rules::Transport;

/// One listening socket.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Name in logs, metrics and the query log (defaults to `transport@address:port`).
    #[serde(default)]
    pub id: Option<String>,
    /// Address to bind (IPv4 or IPv6; `0.0.0.0` / `::` for all).
    pub address: IpAddr,
    /// Port (0 picks a free one, for tests).
    pub port: u16,
    /// Transport: `udp`, `tcp`, `dot` or `doh`.
    pub transport: Transport,
    /// PEM certificate chain (DoT, DoH).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (DoT, DoH).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Serve DoH over plain HTTP (behind a TLS-terminating proxy).
    #[serde(default)]
    pub plain_http: bool,
    /// Restrict TLS to FIPS-approved suites and groups (emulated policy, not a validated module).
    #[serde(default)]
    pub tls_fips: bool,
    /// DoH path.
    #[serde(default = "default_doh_path")]
    pub doh_path: String,
    /// Client networks allowed; others get REFUSED (before any other check).
    /// Default: loopback and private ranges.
    #[serde(default)]
    pub allow: Option<Vec<IpNet>>,
    /// UDP worker tasks, each with its own `SO_REUSEPORT` socket. Default:
    /// one per CPU core (`std::thread::available_parallelism`); tokio's
    /// worker threads run them.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Queries per second this listener accepts; over it queries are dropped or refused.
    #[serde(default)]
    pub max_qps: Option<u32>,
    /// A rate-limit group of `limits.groups` this listener joins: its
    /// queries count against the group's rate together with those of every
    /// other listener in the group (and against `max_qps`, when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_group: Option<String>,
    /// Whether `limits.per_client_qps` applies to queries arriving here (default true).
    #[serde(default = "default_true")]
    pub client_rate_limit: bool,
    /// UDP: kernel receive buffer asked for each socket, in bytes (default
    /// 4 MiB). Without `CAP_NET_ADMIN` Linux grants at most
    /// `net.core.rmem_max`; the size granted is in the metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_buffer: Option<usize>,
}

/// The receive buffer a UDP listener's sockets ask for unless configured:
/// room for bursts while a worker is busy.
pub const DEFAULT_RECEIVE_BUFFER: usize = 4 << 20;

fn default_true() -> bool {
    true
}

fn default_doh_path() -> String {
    "/dns-query".to_string()
}

impl ListenerConfig {
    /// A listener on `address` with defaults for everything else.
    pub fn new(transport: Transport, address: SocketAddr) -> Self {
        Self {
            id: None,
            address: address.ip(),
            port: address.port(),
            transport,
            tls_cert: None,
            tls_key: None,
            plain_http: false,
            tls_fips: false,
            doh_path: default_doh_path(),
            allow: None,
            workers: None,
            max_qps: None,
            limit_group: None,
            client_rate_limit: true,
            receive_buffer: None,
        }
    }

    /// The socket address.
    pub fn socket_address(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    /// The id, or a default built from transport and address.
    pub fn id_or_default(&self) -> String {
        self.id.clone().unwrap_or_else(|| format!("{}@{}", self.transport.as_str(), self.socket_address()))
    }
}

/// The default client allow-list: loopback, RFC 1918, CGNAT, link-local and
/// IPv6 unique-local, so a server bound to 0.0.0.0 is not an open resolver.
pub fn default_allow_list() -> Vec<IpNet> {
    [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    ]
    .iter()
    .filter_map(|net| net.parse().ok())
    .collect()
}

/// Answer cache.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Whether forwarded answers are cached. On by default: a test that
    /// asserts an upstream saw every query turns it off.
    pub enabled: bool,
    /// Most entries.
    pub max_entries: usize,
    /// Most bytes (responses plus bookkeeping).
    pub max_bytes: usize,
    /// Smallest TTL an entry is kept for.
    pub min_ttl: u32,
    /// Largest TTL an entry is kept for.
    pub max_ttl: u32,
    /// Largest TTL for NXDOMAIN and NODATA answers.
    pub negative_max_ttl: u32,
    /// How long after expiry an answer may still be served when every
    /// upstream fails (RFC 8767); 0 turns serve-stale off.
    pub serve_stale_secs: u64,
    /// TTL given to stale answers (RFC 8767 recommends 30).
    pub stale_ttl_secs: u32,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_entries: 100_000,
            max_bytes: 64 << 20,
            min_ttl: 0,
            max_ttl: 86_400,
            negative_max_ttl: 3_600,
            serve_stale_secs: 0,
            stale_ttl_secs: 30,
        }
    }
}

/// Where query-log lines go.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogDestination {
    /// Standard output.
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// Query log: one line per query, in the neutral JSON format unless the
/// application installs its own ([`crate::querylog`]).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryLogConfig {
    /// Whether queries are logged at all.
    pub enabled: bool,
    /// Where lines go.
    pub destination: LogDestination,
    /// Whether forwarded (and cached) queries are logged, not only local answers.
    pub forwarded: bool,
    /// Lines queued for the writer before new ones are dropped (and counted).
    pub queue: usize,
    /// Only queries of these views are logged here; empty means every view.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<String>,
}

impl Default for QueryLogConfig {
    fn default() -> Self {
        Self { enabled: false, destination: LogDestination::Stdout, forwarded: true, queue: 10_000, views: Vec::new() }
    }
}

/// What happens to a query over a rate limit.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitAction {
    /// Drop it silently (counted).
    #[default]
    Drop,
    /// Answer REFUSED.
    Refuse,
}

/// What to do with a query the upstream group has no capacity for (its
/// `max_outstanding` queries in flight, none finished within `queue_timeout`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OverloadAction {
    /// SERVFAIL with extended error 0 (Other) saying the group is overloaded.
    #[default]
    ServFail,
    /// No answer (counted): the client retries, as it would after a loss.
    Drop,
}

/// Rate limits and TCP resource caps.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Packets per second per client address (token bucket); none by default.
    pub per_client_qps: Option<u32>,
    /// Bucket size for `per_client_qps` (defaults to the rate).
    pub per_client_burst: Option<u32>,
    /// What to do over a limit.
    pub action: LimitAction,
    /// Most open TCP, DoT and DoH connections per listener.
    pub tcp_max_connections: usize,
    /// Most open TCP, DoT and DoH connections per client address on one
    /// listener (IPv6 clients counted per /64), so one client cannot take
    /// the listener's whole share.
    pub tcp_max_connections_per_client: usize,
    /// Most queries in flight on one TCP/DoT connection.
    pub tcp_max_in_flight: usize,
    /// Idle TCP, DoT and DoH connections are closed after this many
    /// seconds; so is a connection that sends part of a query (a length
    /// prefix, say, or half a TLS handshake) and then stalls.
    pub tcp_idle_timeout_secs: u64,
    /// Most concurrent HTTP/2 streams on one DoH connection.
    pub doh_max_streams: u32,
    /// Largest HTTP header block a DoH client may send, in bytes.
    pub doh_max_header_bytes: u32,
    /// Most queries waiting for an upstream at once, server-wide; over it
    /// new cache misses are dropped (counted as `in_flight_limit`). This
    /// also bounds the table of identical questions being coalesced.
    pub max_in_flight: usize,
    /// Response rate limiting on UDP (as BIND, Knot and Unbound do it):
    /// off unless given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_rate_limit: Option<ResponseRateLimitConfig>,
    /// Answer `ANY` over UDP with one synthesized HINFO record (RFC 8482
    /// §4.2) instead of everything there is: no amplification through
    /// `ANY`. Over TCP `ANY` is answered as before.
    pub minimal_any: bool,
    /// Mark forwarded queries with this server's identity (an EDNS option)
    /// and answer SERVFAIL to a query that comes back with it: forwarding
    /// loops end at once instead of storming.
    pub loop_detection: bool,
    /// Longest time a query may take in all, from its arrival, before
    /// SERVFAIL (beyond the upstream deadlines). A query waiting for an
    /// identical one in flight (coalesced) keeps its own deadline.
    pub query_timeout_ms: u64,
    /// What a query gets when its upstream group is overloaded: `servfail`
    /// (default) or `drop`.
    pub overload_action: OverloadAction,
    /// Named rate limits, in queries per second, shared by the listeners
    /// that join them (`limit_group`): one token bucket per group, so that,
    /// say, the UDP, TCP and DoH listeners of one address take one budget.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, u32>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            per_client_qps: None,
            per_client_burst: None,
            action: LimitAction::Drop,
            tcp_max_connections: 1_024,
            tcp_max_connections_per_client: 128,
            tcp_max_in_flight: 64,
            tcp_idle_timeout_secs: 10,
            doh_max_streams: 100,
            doh_max_header_bytes: 16 * 1024,
            max_in_flight: 10_000,
            response_rate_limit: None,
            minimal_any: true,
            loop_detection: true,
            query_timeout_ms: 4_500,
            overload_action: OverloadAction::ServFail,
            groups: BTreeMap::new(),
        }
    }
}

/// Response rate limiting (RRL) on UDP: answers to one client network
/// above a rate are dropped, except every `slip`-th, which goes out
/// truncated (TC set, no records) so a real client behind a spoofed
/// flood can still get its answer over TCP.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseRateLimitConfig {
    /// Responses per second to one client network.
    pub responses_per_second: u32,
    /// Bucket size (defaults to the rate).
    pub burst: Option<u32>,
    /// Every this many limited responses, one goes out truncated; 0 never
    /// (drop them all), 1 always. BIND's default is 2.
    pub slip: u32,
    /// IPv4 clients are counted per network of this length (BIND and Knot: 24).
    pub ipv4_prefix: u8,
    /// IPv6 clients are counted per network of this length (BIND and Knot: 56).
    pub ipv6_prefix: u8,
}

impl Default for ResponseRateLimitConfig {
    fn default() -> Self {
        Self { responses_per_second: 20, burst: None, slip: 2, ipv4_prefix: 24, ipv6_prefix: 56 }
    }
}

/// EDNS behaviour.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdnsConfig {
    /// Our UDP payload size (DNS Flag Day 2020: 1232).
    pub udp_payload_size: u16,
    /// Forward the client's EDNS Client Subnet option upstream.
    pub forward_client_subnet: bool,
}

impl Default for EdnsConfig {
    fn default() -> Self {
        Self { udp_payload_size: 1232, forward_client_subnet: false }
    }
}

/// The admin/metrics HTTP listener.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where to listen (loopback by default).
    #[serde(default = "default_admin_address")]
    pub address: SocketAddr,
}

fn default_admin_address() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9153)
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { address: default_admin_address() }
    }
}

/// dnstap output: the server's queries and answers as `dnstap.proto`
/// messages over Frame Streams to a collector (`fstrm_capture`, dnstap
/// readers, a fleet's log pipeline), as Unbound's `dnstap:` clause.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnstapConfig {
    /// Whether frames are sent at all (default true: the table turns it on).
    pub enable: bool,
    /// The collector's unix socket (Unbound's `dnstap-socket-path`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<PathBuf>,
    /// The collector's TCP address, used instead of `socket_path` when
    /// given (Unbound's `dnstap-ip`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<SocketAddr>,
    /// TLS to the collector at `address` (Unbound's `dnstap-tls`); the
    /// certificate is checked against `tls_server_name`, or the address.
    pub tls: bool,
    /// The name the collector's certificate must carry (Unbound's
    /// `dnstap-tls-server-name`); default: the collector's IP address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// A PEM file of the CA certificates that may sign the collector's
    /// certificate (Unbound's `dnstap-tls-cert-bundle`); default: the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_bundle: Option<PathBuf>,
    /// The certificate chain to present to the collector, PEM (Unbound's
    /// `dnstap-tls-client-cert-file`); with `tls_client_key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_cert_file: Option<PathBuf>,
    /// Its private key, PEM (Unbound's `dnstap-tls-client-key-file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_key_file: Option<PathBuf>,
    /// Put `identity` in every message.
    pub send_identity: bool,
    /// Put `version` in every message.
    pub send_version: bool,
    /// The identity sent (default: the host name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The version sent (default: `signpost <version>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// CLIENT_QUERY: each query as a client sent it.
    pub log_client_query_messages: bool,
    /// CLIENT_RESPONSE: each answer as the client got it.
    pub log_client_response_messages: bool,
    /// FORWARDER_QUERY: each query sent upstream, one per try.
    pub log_forwarder_query_messages: bool,
    /// FORWARDER_RESPONSE: each upstream answer.
    pub log_forwarder_response_messages: bool,
    /// Messages queued for the writer before new ones are dropped (and
    /// counted in `signpost_dnstap_frames_total{outcome="dropped"}`).
    pub queue: usize,
}

impl Default for DnstapConfig {
    /// On, every message type, identity and version sent; the
    /// destination still to be given.
    fn default() -> Self {
        Self {
            enable: true,
            socket_path: None,
            address: None,
            tls: false,
            tls_server_name: None,
            tls_cert_bundle: None,
            tls_client_cert_file: None,
            tls_client_key_file: None,
            send_identity: true,
            send_version: true,
            identity: None,
            version: None,
            log_client_query_messages: true,
            log_client_response_messages: true,
            log_forwarder_query_messages: true,
            log_forwarder_response_messages: true,
            queue: 10_000,
        }
    }
}

/// Everything the server runtime takes besides rules and upstreams.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listening sockets.
    pub listeners: Vec<ListenerConfig>,
    /// Answer cache.
    pub cache: CacheConfig,
    /// Query log.
    pub query_log: QueryLogConfig,
    /// Limits.
    pub limits: LimitsConfig,
    /// EDNS.
    pub edns: EdnsConfig,
    /// Admin and metrics HTTP listener; off unless given.
    pub admin: Option<AdminConfig>,
    /// dnstap output; off unless given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dnstap: Option<DnstapConfig>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_transports_keep_their_config_spellings() {
        for (text, transport) in
            [("udp", Transport::Udp), ("tcp", Transport::Tcp), ("dot", Transport::Dot), ("doh", Transport::Doh)]
        {
            let listener: ListenerConfig =
                toml::from_str(&format!("address = \"127.0.0.1\"\nport = 0\ntransport = \"{text}\"")).unwrap();
            assert_eq!(listener.transport, transport);
            assert_eq!(listener.id_or_default(), format!("{text}@127.0.0.1:0"));
        }
        let error = toml::from_str::<ListenerConfig>("address = \"127.0.0.1\"\nport = 0\ntransport = \"quic\"");
        assert!(error.is_err());
    }
}
