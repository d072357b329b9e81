//! The forwarder's TOML document: the server's listeners, cache, query log,
//! limits and admin API, upstream groups, forward zones, and the rule
//! engine's zones, host tables, views, rules and exceptions.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use signpost_rules::Location;
use signpost_rules::config::{
    AllocationConfig, ExceptionConfig, HostTableConfig, RuleConfig, RulesConfig, ViewConfig, ZoneConfig,
};
use signpost_upstream::{GroupConfig, Policy, Protocol, RetryOn, ServerConfig as UpstreamServer, TlsOptions};

use crate::acl::AccessControl;
use crate::control::RemoteControlConfig;
use crate::error::ConfigError;
use signpost_server::{
    AdminConfig, CacheConfig, DnstapConfig, EdnsConfig, HealthConfig, LimitsConfig, ListenerConfig, QueryLogConfig,
    ReadyConfig,
};

/// The whole forwarder configuration (`forward.toml`; see docs/configuration.md).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwarderConfig {
    /// Listening sockets; none means UDP and TCP on 127.0.0.1:53.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerConfig>,
    /// Who may query, for listeners without their own `allow`: the most
    /// specific network decides and clients no entry covers are refused.
    /// Without entries: loopback and private networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_control: Vec<AccessControl>,
    /// Answer cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Query log.
    #[serde(default)]
    pub query_log: QueryLogConfig,
    /// Rate limits and TCP caps.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// EDNS.
    #[serde(default)]
    pub edns: EdnsConfig,
    /// The admin HTTP API: `/metrics` (Prometheus), `/health`, `/explain`, `/reload`. Off unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminConfig>,
    /// `/health` (liveness) and the lame-duck period after SIGTERM, as
    /// CoreDNS's `health` plugin; off unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthConfig>,
    /// `/ready` (readiness), as CoreDNS's `ready` plugin; off unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<ReadyConfig>,
    /// dnstap output to a collector (unbound's `dnstap:` clause); off unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnstap: Option<DnstapConfig>,
    /// Where names no forward zone or rule matches go (a group of `upstreams`).
    /// Without it: the group of the forward zone for `.`, else the system's
    /// resolv.conf (`resolv_conf`) as the group `system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_group: Option<String>,
    /// The resolv.conf the `system` group is read from (default /etc/resolv.conf).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolv_conf: Option<PathBuf>,
    /// Upstream groups, named for forward zones, rules and `default_group`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<GroupConfig>,
    /// Forward zones: names at and below each go to its group; the most specific zone wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forward_zones: Vec<ForwardZoneConfig>,
    /// Automatic addresses for host entries without one, and their state file.
    #[serde(default)]
    pub allocation: AllocationConfig,
    /// Unbound's remote control (`unbound-control`): unix sockets and TCP addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_control: Option<RemoteControlConfig>,
    /// Views: clients by network or listener with their own rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<ViewConfig>,
    /// Local zones: master files or inline records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<ZoneConfig>,
    /// Authoritative zones as Unbound's `auth-zone:`: from a zone file, or
    /// secondaries copied from primaries by zone transfer (docs/zone-transfers.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_zones: Vec<AuthZoneConfig>,
    /// TSIG keys (RFC 8945) that `auth_zones` name (a Signpost extension:
    /// unbound.conf has no TSIG for `auth-zone:`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tsig_keys: Vec<signpost_server::transfer::TsigKeyConfig>,
    /// Host tables (Istio-style service names, automatic addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_tables: Vec<HostTableConfig>,
    /// Rules of the rule engine (forward, redirect, block, system).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleConfig>,
    /// Exceptions of the rule engine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<ExceptionConfig>,
    /// DNSSEC validation of forwarded answers (see docs/dnssec.md).
    #[serde(default, skip_serializing_if = "DnssecConfig::is_default")]
    pub dnssec: DnssecConfig,
    #[serde(skip)]
    pub(crate) origin: Origin,
}

/// `[dnssec]`: validation of forwarded answers, with unbound's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnssecConfig {
    /// Validate: AD on proven answers, SERVFAIL with an extended error on
    /// bogus ones. Off unless given (unbound.conf turns it on with the
    /// validator module and a trust anchor).
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub validate: bool,
    /// Files of DS or DNSKEY records in zone-file form (unbound's `trust-anchor-file`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_anchor_files: Vec<PathBuf>,
    /// RFC 5011 state files as unbound keeps them (`auto-trust-anchor-file`):
    /// keys in state VALID or MISSING are trusted; key rollovers are tracked
    /// and the file is rewritten in unbound's format.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_trust_anchor_files: Vec<PathBuf>,
    /// DS or DNSKEY records (unbound's `trust-anchor`), e.g.
    /// `". IN DS 20326 8 2 E06D44B8..."`. With no anchor at all the built-in
    /// root anchors (KSK-2017, KSK-2024) are used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_anchors: Vec<String>,
    /// Names answered without validation, with everything below them
    /// (unbound's `domain-insecure`; negative trust anchors, RFC 7646).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domain_insecure: Vec<String>,
    /// Seconds a bogus chain result is kept (`val-bogus-ttl`, default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bogus_ttl: Option<u32>,
    /// Least clock skew allowed around signature windows (`val-sig-skew-min`, default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig_skew_min: Option<u32>,
    /// Most clock skew allowed (`val-sig-skew-max`, default 86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig_skew_max: Option<u32>,
    /// NSEC3 iterations above this make a denial insecure (RFC 9276; default 150).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nsec3_max_iterations: Option<u16>,
    /// RFC 5011: seconds a new key waits before it is trusted (`add-holddown`, default 30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_holddown: Option<u64>,
    /// RFC 5011: seconds a revoked key is kept in the state file (`del-holddown`, default 30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub del_holddown: Option<u64>,
    /// RFC 5011: seconds a missing key is kept while another is valid, 0 for ever (`keep-missing`, default 366 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_missing: Option<u64>,
    /// RFC 8198: answer NXDOMAIN and NODATA from validated NSEC records in
    /// the cache without asking upstream (`aggressive-nsec`, default on as in unbound ≥ 1.15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggressive_nsec: Option<bool>,
}

impl DnssecConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Where a configuration came from, to put file, line and field into errors.
#[derive(Clone, Debug, Default)]
pub(crate) struct Origin {
    /// The TOML text and its file, when read from TOML.
    pub(crate) toml: Option<Arc<(PathBuf, String)>>,
    /// The file, when converted from another format.
    pub(crate) file: Option<PathBuf>,
    /// For configurations converted from another format: the location of
    /// each generated field (`zones[3]`, `rules[2]`), longest prefix first wins.
    pub(crate) fields: Vec<(String, Location)>,
}

/// `[[auth_zones]]`: Unbound's `auth-zone:` clause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthZoneConfig {
    /// The zone's apex.
    pub name: String,
    /// Primaries to transfer the zone from (`192.0.2.1`, `192.0.2.1:5300`,
    /// or Unbound's `192.0.2.1@5300`). Without any, the zone is read from `zonefile`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primaries: Vec<String>,
    /// The zone's master file: read at start-up, and, for a secondary, where
    /// each transferred copy is saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zonefile: Option<PathBuf>,
    /// Networks or addresses allowed to send NOTIFY besides the primaries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_notify: Vec<String>,
    /// Answer clients from the zone (default yes).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub for_downstream: bool,
    /// Use the zone for names the forwarder resolves (default yes; a
    /// forwarder answers from it like `for_downstream`).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub for_upstream: bool,
    /// While a secondary has no usable copy, forward its names as if the zone were not there.
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub fallback_enabled: bool,
    /// Signpost extension: networks allowed to transfer the zone from this
    /// forwarder (AXFR/IXFR over TCP). Empty: no one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_transfer: Vec<String>,
    /// Signpost extension: the `tsig_keys` entry that signs transfers from
    /// the primaries, that NOTIFY must be signed with, and that transfers
    /// out (to `allow_transfer`) must be signed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsig_key: Option<String>,
    /// Signpost extension: secondaries told by NOTIFY (RFC 1996) when the
    /// zone changes — a reload that reads a new serial, a secondary's new
    /// copy — and at start-up (`192.0.2.1`, `192.0.2.1:5300`, `192.0.2.1@5300`).
    /// Signed with `tsig_key`. Needs `allow_transfer` (they must be able to transfer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
}

impl AuthZoneConfig {
    /// A zone called `name` with the defaults.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            primaries: Vec::new(),
            zonefile: None,
            allow_notify: Vec::new(),
            for_downstream: true,
            for_upstream: true,
            fallback_enabled: false,
            allow_transfer: Vec::new(),
            tsig_key: None,
            notify: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

#[allow(clippy::trivially_copy_pass_by_ref, reason = "serde's skip_serializing_if passes a reference")]
fn is_yes(value: &bool) -> bool {
    *value
}

/// `[[forward_zones]]`: a domain and the servers its names go to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardZoneConfig {
    /// The domain (`corp.example.com`; `.` for everything else).
    pub name: String,
    /// A group of `upstreams`; or give `servers` to define the zone's own group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The zone's own servers: `10.0.0.2`, `10.0.0.2:5353`, `tcp://10.0.0.2`,
    /// `tls://10.0.0.2:853#dns.corp.example`, `https://10.0.0.2/dns-query#dns.corp.example`,
    /// or tables as in `[[upstreams.servers]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerSpec>,
    /// If every server of the zone fails, resolve through the default group
    /// instead of answering SERVFAIL (Unbound's `forward-first`).
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub forward_first: bool,
    /// With `servers`: which server is asked first (default `sequential`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// With `servers`: what makes the group ask the next server (default timeout, unreachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<RetryOn>,
    /// With `servers`: the longest wait for one server (default 2 s); over
    /// UDP, the ceiling of the adaptive retransmission timeout.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "optional_duration")]
    pub per_try_timeout: Option<Duration>,
    /// With `servers`: the floor of the adaptive retransmission timeout
    /// (default 50 ms; Unbound's `infra-cache-min-rtt`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "optional_duration")]
    pub min_try_timeout: Option<Duration>,
    /// With `servers`: the longest wait for the whole query (default 4 s).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "optional_duration")]
    pub total_timeout: Option<Duration>,
    /// With `servers`: most queries in flight through the zone's group (default 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_outstanding: Option<usize>,
    /// With `servers`: how long a query waits for a slot past
    /// `max_outstanding` before it is answered as overloaded (default 100 ms).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "optional_duration")]
    pub queue_timeout: Option<Duration>,
    /// With `servers`: TLS settings for DoT and DoH servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
    /// Views the zone applies in (default: the default view; `"*"`: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<String>,
}

/// A server of a forward zone: short text or a full table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ServerSpec {
    /// `[scheme://]address[:port|@port][/path][#tls-name]`.
    Text(String),
    /// As in `[[upstreams.servers]]`.
    Table(UpstreamServer),
}

/// Read a server from text: an optional scheme (`udp`, `tcp`, `tls`/`dot`,
/// `https`/`doh`; default `default_protocol`), an IP address (IPv6 in
/// brackets when a port follows with `:`), an optional port (`:853` or
/// Unbound's `@853`; default per protocol), for HTTPS an optional path, and
/// an optional `#name` for the TLS certificate.
pub fn parse_server(text: &str, default_protocol: Protocol) -> Option<UpstreamServer> {
    let (protocol, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (scheme.parse::<Protocol>().ok()?, rest),
        None => (default_protocol, text),
    };
    let (rest, tls_name) = match rest.split_once('#') {
        Some((rest, name)) if !name.is_empty() => (rest, Some(name.to_owned())),
        Some(_) => return None,
        None => (rest, None),
    };
    let (rest, path) = match (protocol, rest.find('/')) {
        (Protocol::Https, Some(slash)) => (rest.get(..slash)?, Some(rest.get(slash..)?.to_owned())),
        _ => (rest, None),
    };
    let address = parse_address(rest, protocol.default_port())?;
    let mut server = UpstreamServer::new(address, protocol);
    server.tls_name = tls_name;
    set_if_given(&mut server.doh_path, path);
    Some(server)
}

/// `address`, `address:port`, `[v6]:port` or `address@port`.
pub(crate) fn parse_address(text: &str, default_port: u16) -> Option<SocketAddr> {
    if let Some((address, port)) = text.split_once('@') {
        let address = address.trim_start_matches('[').trim_end_matches(']');
        return Some(SocketAddr::new(address.parse().ok()?, port.parse().ok()?));
    }
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Some(address);
    }
    let address = text.trim_start_matches('[').trim_end_matches(']');
    address.parse::<IpAddr>().ok().map(|address| SocketAddr::new(address, default_port))
}

impl ForwardZoneConfig {
    /// The name of the group the zone's own `servers` make: the zone's name
    /// without a trailing dot (`.` for the root).
    pub fn inline_group_name(&self) -> String {
        match self.name.trim_end_matches('.') {
            "" => ".".to_owned(),
            name => name.to_owned(),
        }
    }
}

impl ForwarderConfig {
    /// Parse TOML text read from `file` (named in errors).
    pub fn from_toml(text: &str, file: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        let file = file.into();
        let mut config: Self = toml::from_str(text).map_err(|error| {
            let at = match error.span() {
                Some(span) => at_offset(&file, text, span.start),
                None => Location { file: Some(file.clone()), ..Location::default() },
            };
            ConfigError::from(signpost_rules::Error::Toml { at, message: error.message().trim_end().to_owned() })
        })?;
        config.origin.toml = Some(Arc::new((file, text.to_owned())));
        Ok(config)
    }

    /// Read a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| signpost_rules::Error::io(Location::default(), path, source))?;
        Self::from_toml(&text, path)
    }

    /// The configuration as TOML (what `check-config --print-toml` shows).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Where `field` (`forward_zones[2].name`) is, as well as known.
    pub fn locate(&self, field: &str) -> Location {
        if let Some(source) = &self.origin.toml {
            let mut locator = RulesConfig::default();
            locator.set_source(source.0.clone(), &source.1, "");
            return locator.locate(field);
        }
        self.origin
            .fields
            .iter()
            .filter(|(prefix, _)| field == prefix || field.starts_with(&format!("{prefix}.")))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or_else(|| Location::field(field), |(_, at)| at.clone())
    }

    /// The file the configuration was read from, when known.
    pub fn file(&self) -> Option<&Path> {
        match &self.origin.toml {
            Some(source) => Some(&source.0),
            None => self.origin.file.as_deref(),
        }
    }

    /// Record where a generated field came from (for converted configurations).
    pub(crate) fn record_origin(&mut self, field: String, at: Location) {
        self.origin.fields.push((field, at));
    }
}

/// A group made from a forward zone's own `servers` and settings.
pub(crate) fn inline_group(zone: &ForwardZoneConfig, servers: Vec<UpstreamServer>) -> GroupConfig {
    let mut group = GroupConfig::new(zone.inline_group_name(), servers);
    set_if_given(&mut group.policy, zone.policy);
    set_if_given(&mut group.retry_on, zone.retry_on);
    set_if_given(&mut group.per_try_timeout, zone.per_try_timeout);
    set_if_given(&mut group.total_timeout, zone.total_timeout);
    set_if_given(&mut group.min_try_timeout, zone.min_try_timeout);
    set_if_given(&mut group.max_outstanding, zone.max_outstanding);
    set_if_given(&mut group.queue_timeout, zone.queue_timeout);
    if let Some(tls) = &zone.tls {
        group.tls = tls.clone();
    }
    group
}

/// Overwrite a default with the value the configuration gives, if it gives one.
pub(crate) fn set_if_given<T>(setting: &mut T, given: Option<T>) {
    if let Some(value) = given {
        *setting = value;
    }
}

pub(crate) fn at_offset(file: &Path, text: &str, offset: usize) -> Location {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or_default();
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    let column = before.get(line_start..).map_or(0, |rest| rest.chars().count()) + 1;
    Location::in_file(file, line, column)
}

/// `Option<Duration>` as `signpost_upstream::duration_text` writes durations.
mod optional_duration {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Millis(u64),
        String(String),
    }

    pub(super) fn serialize<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.serialize_str(&signpost_upstream::duration_text::format(*duration)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        match Text::deserialize(deserializer)? {
            Text::Millis(millis) => Ok(Some(Duration::from_millis(millis))),
            Text::String(text) => {
                signpost_upstream::duration_text::parse(&text).map(Some).map_err(serde::de::Error::custom)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_read_from_text() {
        let server = parse_server("10.0.0.2", Protocol::Udp).unwrap();
        assert_eq!(server.to_string(), "udp://10.0.0.2:53");
        assert_eq!(parse_server("10.0.0.2@5353", Protocol::Udp).unwrap().to_string(), "udp://10.0.0.2:5353");
        assert_eq!(parse_server("[2001:db8::1]:5353", Protocol::Udp).unwrap().to_string(), "udp://[2001:db8::1]:5353");
        assert_eq!(parse_server("2001:db8::1", Protocol::Udp).unwrap().to_string(), "udp://[2001:db8::1]:53");
        assert_eq!(parse_server("2001:db8::1@53", Protocol::Tcp).unwrap().to_string(), "tcp://[2001:db8::1]:53");
        assert_eq!(
            parse_server("tls://10.0.0.2#dns.example", Protocol::Udp).unwrap().to_string(),
            "tls://10.0.0.2:853#dns.example"
        );
        assert_eq!(
            parse_server("doh://10.0.0.2:8443/q#dns.example", Protocol::Udp).unwrap().to_string(),
            "https://10.0.0.2:8443/q#dns.example"
        );
        assert_eq!(
            parse_server("https://10.0.0.2", Protocol::Udp).unwrap().to_string(),
            "https://10.0.0.2:443/dns-query"
        );
        assert!(parse_server("quic://10.0.0.2", Protocol::Udp).is_none());
        assert!(parse_server("dns.example", Protocol::Udp).is_none());
        assert!(parse_server("10.0.0.2#", Protocol::Tls).is_none());
    }

    #[test]
    fn toml_errors_name_file_line_and_column() {
        let error =
            ForwarderConfig::from_toml("[[forward_zones]]\nname = \"a\"\nsevrers = []\n", "f.toml").unwrap_err();
        let at = error.location().unwrap();
        assert_eq!((at.file.as_deref(), at.line), (Some(Path::new("f.toml")), Some(3)));
        assert!(error.to_string().contains("sevrers"), "{error}");
    }

    #[test]
    fn fields_are_located_in_the_text() {
        let config = ForwarderConfig::from_toml(
            "[[forward_zones]]\nname = \"a\"\ngroup = \"x\"\n\n[[forward_zones]]\nname = \"b\"\nservers = [\"10.0.0.1\"]\nper_try_timeout = \"300ms\"\n",
            "f.toml",
        )
        .unwrap();
        assert_eq!(config.locate("forward_zones[1].servers[0]").line, Some(7));
        assert_eq!(config.forward_zones[1].per_try_timeout, Some(Duration::from_millis(300)));
        let again = ForwarderConfig::from_toml(&config.to_toml(), "again.toml").unwrap();
        assert_eq!(again.forward_zones, config.forward_zones);
    }

    #[test]
    fn a_zones_own_group_takes_its_timeout_floor_and_overload_limits() {
        let config = ForwarderConfig::from_toml(
            "[[forward_zones]]\nname = \"b\"\nservers = [\"10.0.0.1\"]\nmin_try_timeout = \"20ms\"\nmax_outstanding = 64\nqueue_timeout = \"5ms\"\n",
            "f.toml",
        )
        .unwrap();
        let zone = &config.forward_zones[0];
        let group = inline_group(zone, Vec::new());
        assert_eq!(group.min_try_timeout, Duration::from_millis(20));
        assert_eq!((group.max_outstanding, group.queue_timeout), (64, Duration::from_millis(5)));
        let again = ForwarderConfig::from_toml(&config.to_toml(), "again.toml").unwrap();
        assert_eq!(again.forward_zones, config.forward_zones);
    }
}
