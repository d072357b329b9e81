//! Configuration of upstream groups and servers, readable from TOML.

use core::fmt;
use core::str::FromStr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How a server is reached.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Do53 over UDP; a truncated answer is asked again over TCP.
    #[default]
    #[serde(alias = "do53")]
    Udp,
    /// Do53 over TCP (RFC 7766).
    Tcp,
    /// DNS over TLS (RFC 7858).
    #[serde(alias = "dot")]
    Tls,
    /// DNS over HTTPS (RFC 8484).
    #[serde(alias = "doh")]
    Https,
}

impl Protocol {
    /// The port a server of this protocol usually listens on.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Udp | Self::Tcp => 53,
            Self::Tls => 853,
            Self::Https => 443,
        }
    }

    /// The lowercase name used in configuration and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Https => "https",
        }
    }

    /// Whether the protocol runs over TLS.
    pub fn is_encrypted(self) -> bool {
        matches!(self, Self::Tls | Self::Https)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "udp" | "do53" => Ok(Self::Udp),
            "tcp" => Ok(Self::Tcp),
            "tls" | "dot" => Ok(Self::Tls),
            "https" | "doh" => Ok(Self::Https),
            _ => Err(UnknownProtocol(text.to_string())),
        }
    }
}

/// A protocol name that is none of udp, tcp, tls (dot), https (doh).
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("unknown protocol {0:?} (expected udp, tcp, tls or https)")]
pub struct UnknownProtocol(pub String);

/// The HTTP method of DNS-over-HTTPS queries.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DohMethod {
    /// `POST` with an `application/dns-message` body.
    #[default]
    #[serde(alias = "POST")]
    Post,
    /// `GET` with the message in `?dns=`, base64url without padding (cacheable by HTTP caches).
    #[serde(alias = "GET")]
    Get,
}

/// One upstream server.
#[derive(Clone, PartialEq, Eq, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port of the server.
    pub address: SocketAddr,
    /// Transport.
    #[serde(default)]
    pub protocol: Protocol,
    /// Name to send as SNI and to check the certificate against (TLS and HTTPS);
    /// without it the certificate must name the IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_name: Option<String>,
    /// DoH path, optionally with a query string; an RFC 6570 `{?dns}` suffix is accepted and ignored.
    #[serde(default = "default_doh_path")]
    pub doh_path: String,
    /// DoH method.
    #[serde(default)]
    pub doh_method: DohMethod,
    /// Most queries in flight on one TCP or TLS connection (RFC 7766 pipelining).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Most TCP or TLS connections kept to this server at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A TCP, TLS or HTTPS connection with nothing in flight is closed after this long.
    #[serde(default = "default_idle_timeout", with = "duration_text")]
    pub idle_timeout: Duration,
    /// The local address queries leave from (any of the host's when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<std::net::IpAddr>,
}

fn default_doh_path() -> String {
    "/dns-query".to_string()
}

fn default_max_in_flight() -> usize {
    128
}

fn default_max_connections() -> usize {
    4
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(10)
}

impl ServerConfig {
    /// A server with default settings for `protocol`.
    pub fn new(address: SocketAddr, protocol: Protocol) -> Self {
        Self {
            address,
            protocol,
            tls_name: None,
            doh_path: default_doh_path(),
            doh_method: DohMethod::default(),
            max_in_flight: default_max_in_flight(),
            max_connections: default_max_connections(),
            idle_timeout: default_idle_timeout(),
            source: None,
        }
    }

    /// Do53 over UDP (with TCP for truncated answers).
    pub fn udp(address: SocketAddr) -> Self {
        Self::new(address, Protocol::Udp)
    }

    /// Do53 over TCP only.
    pub fn tcp(address: SocketAddr) -> Self {
        Self::new(address, Protocol::Tcp)
    }

    /// DNS over TLS, checking the certificate against `tls_name`.
    pub fn tls(address: SocketAddr, tls_name: impl Into<String>) -> Self {
        Self { tls_name: Some(tls_name.into()), ..Self::new(address, Protocol::Tls) }
    }

    /// DNS over HTTPS at the default path, checking the certificate against `tls_name`.
    pub fn https(address: SocketAddr, tls_name: impl Into<String>) -> Self {
        Self { tls_name: Some(tls_name.into()), ..Self::new(address, Protocol::Https) }
    }
}

impl fmt::Display for ServerConfig {
    /// `udp://192.0.2.1:53`, `tls://192.0.2.1:853#dns.example`, `https://192.0.2.1:443/dns-query#dns.example`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.protocol, self.address)?;
        if self.protocol == Protocol::Https {
            f.write_str(&self.doh_path)?;
        }
        if let Some(name) = &self.tls_name
            && self.protocol.is_encrypted()
        {
            write!(f, "#{name}")?;
        }
        Ok(())
    }
}

/// How a group picks the server to ask first.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Always the first server that is up, then the next (AWS Client VPN style).
    #[default]
    Sequential,
    /// Each query starts at the next server in turn.
    RoundRobin,
    /// Each query tries the servers in a random order.
    Random,
    /// The server with the lowest smoothed round-trip time first; unmeasured servers count as fastest.
    Fastest,
}

/// What makes a group try the next server. Network failures are `timeout`
/// and `unreachable`; the rest are answers the group treats as failures.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct RetryOn {
    /// No answer within the per-try timeout.
    pub timeout: bool,
    /// The server could not be reached or spoke nonsense: ICMP unreachable,
    /// connection refused or reset, TLS failure, HTTP error status, malformed answer.
    pub unreachable: bool,
    /// An answer with rcode SERVFAIL.
    pub servfail: bool,
    /// An answer with rcode REFUSED.
    pub refused: bool,
    /// An answer with rcode NXDOMAIN.
    pub nxdomain: bool,
    /// A truncated answer that could not be completed over TCP.
    pub truncated: bool,
}

impl RetryOn {
    /// Only network failures (timeout, unreachable): the default, and what Istio and hickory do.
    pub const NETWORK: Self =
        Self { timeout: true, unreachable: true, servfail: false, refused: false, nxdomain: false, truncated: false };

    /// Nothing: the first server's outcome is final.
    pub const NOTHING: Self =
        Self { timeout: false, unreachable: false, servfail: false, refused: false, nxdomain: false, truncated: false };

    /// The names of the conditions set, in configuration order.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.timeout, "timeout"),
            (self.unreachable, "unreachable"),
            (self.servfail, "servfail"),
            (self.refused, "refused"),
            (self.nxdomain, "nxdomain"),
            (self.truncated, "truncated"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect()
    }

    /// Set the condition called `name`; false if there is none of that name.
    pub fn set(&mut self, name: &str) -> bool {
        let slot = match name.to_ascii_lowercase().as_str() {
            "timeout" => &mut self.timeout,
            "unreachable" => &mut self.unreachable,
            "servfail" => &mut self.servfail,
            "refused" => &mut self.refused,
            "nxdomain" => &mut self.nxdomain,
            "truncated" => &mut self.truncated,
            _ => return false,
        };
        *slot = true;
        true
    }
}

impl Default for RetryOn {
    fn default() -> Self {
        Self::NETWORK
    }
}

impl Serialize for RetryOn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RetryOn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(deserializer)?;
        let mut retry_on = Self::NOTHING;
        for name in &names {
            if !retry_on.set(name) {
                return Err(serde::de::Error::unknown_variant(
                    name,
                    &["timeout", "unreachable", "servfail", "refused", "nxdomain", "truncated"],
                ));
            }
        }
        Ok(retry_on)
    }
}

/// When a hedged query also asks the next server.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum HedgeAfter {
    /// After a fixed delay.
    Fixed(Duration),
    /// After the current server's observed 95th-percentile latency (a fixed
    /// 100 ms until it has answered 20 queries).
    P95,
}

impl Serialize for HedgeAfter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Fixed(delay) => serializer.serialize_str(&duration_text::format(*delay)),
            Self::P95 => serializer.serialize_str("p95"),
        }
    }
}

impl<'de> Deserialize<'de> for HedgeAfter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match duration_text::Text::deserialize(deserializer)? {
            duration_text::Text::Millis(millis) => Ok(Self::Fixed(Duration::from_millis(millis))),
            duration_text::Text::String(text) if text.eq_ignore_ascii_case("p95") => Ok(Self::P95),
            duration_text::Text::String(text) => {
                duration_text::parse(&text).map(Self::Fixed).map_err(serde::de::Error::custom)
            }
        }
    }
}

/// Hedging: ask the next server too when the current one is slow, and take the first acceptable answer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hedge {
    /// When to ask the next server: a duration (`"150ms"`) or `"p95"`.
    pub after: HedgeAfter,
    /// Most servers asked at once for one query (at least 2 to hedge at all).
    #[serde(default = "default_hedge_max")]
    pub max_parallel: usize,
}

fn default_hedge_max() -> usize {
    2
}

/// TLS settings for the group's DoT and DoH servers.
#[derive(Clone, PartialEq, Eq, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsOptions {
    /// A PEM file of extra CA certificates trusted besides the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Trust only `ca_file`, not the system's roots.
    pub ignore_system_roots: bool,
    /// Restrict TLS to FIPS-approved choices: TLS 1.2 and 1.3, AES-GCM suites,
    /// P-256 and P-384 key exchange. This emulates the policy of a DohFips
    /// endpoint; the crypto provider is not a FIPS-validated module.
    pub fips: bool,
}

/// An upstream group: servers, a policy and the rules for moving on.
#[derive(Clone, PartialEq, Eq, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Name that rules and zones refer to.
    pub name: String,
    /// Servers, in order of preference for the sequential policy.
    pub servers: Vec<ServerConfig>,
    /// Which server is asked first.
    #[serde(default)]
    pub policy: Policy,
    /// What makes the group try the next server.
    #[serde(default)]
    pub retry_on: RetryOn,
    /// Longest wait for an answer to one message: the ceiling of the
    /// retransmission timeout, and the whole wait over TCP, TLS and HTTPS.
    #[serde(default = "default_per_try_timeout", with = "duration_text")]
    pub per_try_timeout: Duration,
    /// Shortest wait before a UDP query is sent again: the floor of the
    /// retransmission timeout (SRTT + 4·RTTVAR, measured per server). Set
    /// it to `per_try_timeout` for fixed timeouts.
    #[serde(default = "default_min_try_timeout", with = "duration_text")]
    pub min_try_timeout: Duration,
    /// Longest time for the whole query, all servers included.
    #[serde(default = "default_total_timeout", with = "duration_text")]
    pub total_timeout: Duration,
    /// Consecutive failures (timeouts, unreachable) after which a server is
    /// marked down and skipped until a probe gets an answer; 0 never marks one down.
    #[serde(default = "default_max_fails")]
    pub max_fails: u32,
    /// First wait before a down server is probed; it doubles after each failed probe, up to 64 times.
    #[serde(default = "default_probe_backoff", with = "duration_text")]
    pub probe_backoff: Duration,
    /// Ask the next server too when the current one is slow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<Hedge>,
    /// UDP payload size advertised upstream: written into the OPT record of
    /// queries that have one (queries without EDNS are sent as they are).
    #[serde(default = "default_edns_payload")]
    pub edns_payload: u16,
    /// Most queries in flight at once for this group, all servers and
    /// transports together. A query past it waits up to `queue_timeout` for
    /// a slot, then fails as overloaded ([`UpstreamError::is_overloaded`](crate::UpstreamError::is_overloaded)).
    #[serde(default = "default_max_outstanding", alias = "max_udp_sockets")]
    pub max_outstanding: usize,
    /// How long a query waits for a slot when `max_outstanding` are in
    /// flight (0: it fails at once).
    #[serde(default = "default_queue_timeout", with = "duration_text")]
    pub queue_timeout: Duration,
    /// TLS settings for DoT and DoH servers.
    #[serde(default)]
    pub tls: TlsOptions,
    /// Whether queries ask for recursion (the RD bit). `false` for
    /// authoritative servers (Unbound's `stub-zone:`): each query is sent
    /// with RD clear, whatever the client asked.
    #[serde(default = "default_recursion_desired", skip_serializing_if = "is_true")]
    pub recursion_desired: bool,
    /// Whether a server using this group may cache its answers (and answer
    /// its names from the cache). `false` is Unbound's `forward-no-cache:
    /// yes`: every question goes to the servers.
    #[serde(default = "default_recursion_desired", skip_serializing_if = "is_true")]
    pub cache: bool,
}

fn default_recursion_desired() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

fn default_per_try_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_total_timeout() -> Duration {
    Duration::from_secs(4)
}

fn default_max_fails() -> u32 {
    3
}

fn default_probe_backoff() -> Duration {
    Duration::from_secs(1)
}

fn default_edns_payload() -> u16 {
    1232
}

fn default_min_try_timeout() -> Duration {
    // Unbound's RTT_MIN_TIMEOUT: below it, scheduling noise on a busy
    // forwarder would be taken for loss.
    Duration::from_millis(50)
}

fn default_max_outstanding() -> usize {
    4096
}

fn default_queue_timeout() -> Duration {
    Duration::from_millis(100)
}

impl GroupConfig {
    /// A group with default settings.
    pub fn new(name: impl Into<String>, servers: Vec<ServerConfig>) -> Self {
        Self {
            name: name.into(),
            servers,
            policy: Policy::default(),
            retry_on: RetryOn::default(),
            per_try_timeout: default_per_try_timeout(),
            min_try_timeout: default_min_try_timeout(),
            total_timeout: default_total_timeout(),
            max_fails: default_max_fails(),
            probe_backoff: default_probe_backoff(),
            hedge: None,
            edns_payload: default_edns_payload(),
            max_outstanding: default_max_outstanding(),
            queue_timeout: default_queue_timeout(),
            tls: TlsOptions::default(),
            recursion_desired: true,
            cache: true,
        }
    }
}

/// Durations in configuration: an integer is milliseconds; a string is a
/// number with a unit, `ms`, `s` or `m` (`"150ms"`, `"2s"`, `"1.5s"`).
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Either form as read.
    #[derive(Deserialize)]
    #[serde(untagged)]
    pub(crate) enum Text {
        Millis(u64),
        String(String),
    }

    /// Read a duration from text.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number.parse().map_err(|_| format!("invalid duration {text:?}"))?;
        let seconds = match unit.trim() {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            _ => return Err(format!("invalid duration {text:?}: give a unit, ms, s or m")),
        };
        Duration::try_from_secs_f64(seconds).map_err(|_| format!("invalid duration {text:?}"))
    }

    /// Write a duration the way `parse` reads it.
    pub fn format(duration: Duration) -> String {
        if duration.subsec_nanos() == 0 {
            format!("{}s", duration.as_secs())
        } else {
            format!("{}ms", duration.as_millis())
        }
    }

    /// For `#[serde(with)]`.
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*duration))
    }

    /// For `#[serde(with)]`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        match Text::deserialize(deserializer)? {
            Text::Millis(millis) => Ok(Duration::from_millis(millis)),
            Text::String(text) => parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_write() {
        assert_eq!(duration_text::parse("150ms"), Ok(Duration::from_millis(150)));
        assert_eq!(duration_text::parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(duration_text::parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration_text::parse("1m"), Ok(Duration::from_secs(60)));
        assert!(duration_text::parse("2").is_err());
        assert!(duration_text::parse("fast").is_err());
        assert_eq!(duration_text::format(Duration::from_secs(2)), "2s");
        assert_eq!(duration_text::format(Duration::from_millis(150)), "150ms");
    }

    #[test]
    fn a_group_reads_from_toml_with_defaults() {
        let group: GroupConfig = toml::from_str(
            r#"
            name = "corp"
            retry_on = ["timeout", "unreachable", "servfail"]
            per_try_timeout = "500ms"
            hedge = { after = "p95" }
            tls = { fips = true }
            [[servers]]
            address = "192.0.2.1:53"
            [[servers]]
            address = "192.0.2.2:443"
            protocol = "doh"
            tls_name = "dns.example"
            doh_method = "get"
            "#,
        )
        .expect("valid");
        assert_eq!(group.policy, Policy::Sequential);
        assert!(group.retry_on.servfail && group.retry_on.timeout && !group.retry_on.refused);
        assert_eq!(group.per_try_timeout, Duration::from_millis(500));
        assert_eq!(group.total_timeout, Duration::from_secs(4));
        assert_eq!(group.min_try_timeout, Duration::from_millis(50));
        assert_eq!((group.max_outstanding, group.queue_timeout), (4096, Duration::from_millis(100)));
        assert_eq!(group.edns_payload, 1232);
        assert_eq!(group.hedge, Some(Hedge { after: HedgeAfter::P95, max_parallel: 2 }));
        assert!(group.tls.fips);
        assert_eq!(group.servers[0].protocol, Protocol::Udp);
        assert_eq!(group.servers[1].protocol, Protocol::Https);
        assert_eq!(group.servers[1].doh_path, "/dns-query");
        assert_eq!(group.servers[1].doh_method, DohMethod::Get);
        assert_eq!(group.servers[1].to_string(), "https://192.0.2.2:443/dns-query#dns.example");

        let text = toml::to_string(&group).expect("serializes");
        let again: GroupConfig = toml::from_str(&text).expect("reads back");
        assert_eq!(again, group);
    }

    #[test]
    fn unknown_retry_conditions_and_fields_are_rejected() {
        let error = toml::from_str::<GroupConfig>("name = \"x\"\nservers = []\nretry_on = [\"sometimes\"]\n")
            .expect_err("unknown condition");
        assert!(error.to_string().contains("sometimes"), "{error}");
        assert!(toml::from_str::<GroupConfig>("name = \"x\"\nservers = []\ncolour = 1\n").is_err());
        let fixed: Hedge = toml::from_str("after = 150").expect("millis");
        assert_eq!(fixed.after, HedgeAfter::Fixed(Duration::from_millis(150)));
    }

    #[test]
    fn the_old_socket_limit_reads_as_the_outstanding_limit() {
        let group: GroupConfig =
            toml::from_str("name = \"x\"\nservers = []\nmax_udp_sockets = 64\nmin_try_timeout = \"20ms\"\n")
                .expect("valid");
        assert_eq!(group.max_outstanding, 64);
        assert_eq!(group.min_try_timeout, Duration::from_millis(20));
    }

    #[test]
    fn protocols_parse_with_aliases() {
        assert_eq!("DoH".parse::<Protocol>(), Ok(Protocol::Https));
        assert_eq!("dot".parse::<Protocol>(), Ok(Protocol::Tls));
        assert!("quic".parse::<Protocol>().is_err());
    }
}
