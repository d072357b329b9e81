//! LocalStack's DNS variables (and signpost-redirect's own): read from the
//! environment by name ([`RedirectSettings::set`]) or from the `[redirect]`
//! table of a TOML file, and what they mean for the rule set.

use core::fmt;
use core::str::FromStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use signpost_rules::{AddressSource, Anchor, ExceptionSpec, Matcher, OtherTypes, Redirect, RuleSetBuilder};
use signpost_server::{ListenerConfig, Transport};
use signpost_wire::NameBuf;

use crate::{
    DEFAULT_DOMAINS, DEFAULT_RESOLV_CONF, DEFAULT_TTL, DEFAULT_VERIFICATION_DOMAIN, HOST_PREFIXES_NO_SUBDOMAIN,
    LOCALSTACK_DOMAIN, RedirectError, SYSTEMD_RESOLV_CONF, UPSTREAM_GROUP,
};

/// `DNS_ADDRESS`: where to listen, or not at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindAddresses {
    /// `DNS_ADDRESS=0` (or `false`): no DNS server.
    Disabled,
    /// These addresses (a comma-separated list), UDP and TCP on each.
    Addresses(Vec<IpAddr>),
}

impl Default for BindAddresses {
    /// 0.0.0.0, as LocalStack (config.py `DNS_ADDRESS`); when it cannot be
    /// bound the server falls back to 127.0.0.1 (see [`BindAddresses::falls_back`]).
    fn default() -> Self {
        Self::Addresses(vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)])
    }
}

impl BindAddresses {
    /// Whether this is the IPv4 wildcard alone, which falls back to
    /// 127.0.0.1 when the port is taken on some address (LocalStack's
    /// documented behaviour; on systemd machines resolved holds
    /// 127.0.0.53:53, which makes 0.0.0.0:53 fail while 127.0.0.1:53 works).
    pub fn falls_back(&self) -> bool {
        matches!(self, Self::Addresses(addresses) if addresses.as_slice() == [IpAddr::V4(Ipv4Addr::UNSPECIFIED)])
    }
}

impl FromStr for BindAddresses {
    type Err = RedirectError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed == "0" || trimmed.eq_ignore_ascii_case("false") {
            return Ok(Self::Disabled);
        }
        let invalid =
            |problem| RedirectError::InvalidSetting { setting: "DNS_ADDRESS", value: text.to_owned(), problem };
        let mut addresses = Vec::new();
        for part in trimmed.split(',').map(str::trim).filter(|part| !part.is_empty()) {
            let address = part.parse::<IpAddr>().map_err(|_| invalid("not an IP address (or 0 to disable DNS)"))?;
            if !addresses.contains(&address) {
                addresses.push(address);
            }
        }
        if addresses.is_empty() {
            return Err(invalid("no address given (0 disables DNS)"));
        }
        Ok(Self::Addresses(addresses))
    }
}

impl fmt::Display for BindAddresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disabled => f.write_str("0"),
            Self::Addresses(addresses) => {
                let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                f.write_str(&list.join(","))
            }
        }
    }
}

impl<'de> Deserialize<'de> for BindAddresses {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = TextOrList::deserialize(deserializer)?.joined(",");
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `LOCALSTACK_HOST`: `host[:port]`, how clients reach the emulator. Its
/// host name and every name below it are redirected (LocalStack's
/// `.*<host>` pattern, dns/server.py `start_server`); the port is the
/// emulator's, not ours, and is only shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalstackHost {
    /// The host as given: a name, or an IP address (then nothing is redirected for it).
    pub host: String,
    /// The port, if given.
    pub port: Option<u16>,
}

impl LocalstackHost {
    /// The host as a DNS name, lowercased; `None` for an IP address.
    pub fn name(&self) -> Option<NameBuf> {
        if self.host.parse::<IpAddr>().is_ok() {
            return None;
        }
        self.host.parse::<NameBuf>().ok().map(|name| name.to_lowercase())
    }
}

impl FromStr for LocalstackHost {
    type Err = RedirectError;

    /// As LocalStack's `HostAndPort.parse` (config.py): `host`, `host:port`,
    /// `:port` (the default host), `[v6]` and `[v6]:port`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid =
            |problem| RedirectError::InvalidSetting { setting: "LOCALSTACK_HOST", value: text.to_owned(), problem };
        let trimmed = text.trim();
        let port = |digits: &str| digits.trim().parse::<u16>().map_err(|_| invalid("the port is not a number 0-65535"));
        let (host, port) = if let Some(rest) = trimmed.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| invalid("an IPv6 address needs its closing ]"))?;
            host.parse::<Ipv6Addr>().map_err(|_| invalid("not an IPv6 address inside [ ]"))?;
            let port = match after {
                "" => None,
                other => Some(port(other.strip_prefix(':').ok_or_else(|| invalid("expected :port after ]"))?)?),
            };
            (host.to_owned(), port)
        } else if let Some((host, digits)) = trimmed.split_once(':') {
            (host.trim().to_owned(), Some(port(digits)?))
        } else {
            (trimmed.to_owned(), None)
        };
        let host = if host.is_empty() { LOCALSTACK_DOMAIN.to_owned() } else { host };
        if host.parse::<IpAddr>().is_err() {
            host.parse::<NameBuf>().map_err(|_| invalid("the host is neither a domain name nor an IP address"))?;
        }
        Ok(Self { host, port })
    }
}

impl fmt::Display for LocalstackHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match self.port {
            Some(port) => write!(f, "{host}:{port}"),
            None => f.write_str(&host),
        }
    }
}

impl<'de> Deserialize<'de> for LocalstackHost {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// A TOML value that is one string or a list of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum TextOrList {
    Text(String),
    List(Vec<String>),
}

impl TextOrList {
    fn joined(self, separator: &str) -> String {
        match self {
            Self::Text(text) => text,
            Self::List(list) => list.join(separator),
        }
    }
}

/// The settings of the redirect proxy: LocalStack's DNS variables, readable
/// from TOML (the `[redirect]` table of signpost-redirect's configuration)
/// and settable by variable name with [`RedirectSettings::set`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedirectSettings {
    /// `DNS_ADDRESS`: listen addresses (default 0.0.0.0, falling back to
    /// 127.0.0.1 when it cannot be bound), or disabled.
    pub address: BindAddresses,
    /// `DNS_PORT`: UDP and TCP port (default 53; 0 picks a free one).
    pub port: u16,
    /// `DNS_SERVER`: upstream servers in failover order; `None` takes them from resolv.conf.
    #[serde(deserialize_with = "deserialize_servers")]
    pub server: Option<Vec<SocketAddr>>,
    /// `DNS_RESOLVE_IP`: the address A queries of redirected names get
    /// (default: the address the query arrived on).
    #[serde(deserialize_with = "deserialize_ipv4_source")]
    pub resolve_ip: AddressSource<Ipv4Addr>,
    /// `DNS_RESOLVE_IPV6`: the address AAAA queries get; `None` follows
    /// `resolve_ip` (the arrival address, or no IPv6 answer when
    /// `resolve_ip` is a fixed address other than loopback).
    #[serde(deserialize_with = "deserialize_ipv6_source")]
    pub resolve_ipv6: Option<AddressSource<Ipv6Addr>>,
    /// `DNS_LOCAL_NAME_PATTERNS`: only names matching one of these regexes
    /// (Python `re.match`: anchored at the start) are redirected; the rest of
    /// the redirected domains is forwarded. Empty: every name is redirected.
    #[serde(deserialize_with = "deserialize_patterns")]
    pub local_name_patterns: Vec<String>,
    /// `DNS_NAME_PATTERNS_TO_RESOLVE_UPSTREAM`: names matching one of these
    /// regexes (start-anchored) are never redirected.
    #[serde(deserialize_with = "deserialize_patterns")]
    pub name_patterns_to_resolve_upstream: Vec<String>,
    /// `DNS_VERIFICATION_DOMAIN`: the name each default upstream candidate is
    /// asked for at start-up; the first that answers is used first.
    pub verification_domain: String,
    /// `LOCALSTACK_HOST`: its host name and every name below it are redirected.
    pub localstack_host: Option<LocalstackHost>,
    /// `DISABLE_TRANSPARENT_ENDPOINT_INJECTION`: AWS names (the redirected
    /// domains other than `localhost.localstack.cloud`) are forwarded, not
    /// redirected; `localhost.localstack.cloud` and `LOCALSTACK_HOST` still are.
    pub disable_transparent_endpoint_injection: bool,
    /// `SIGNPOST_REDIRECT_DOMAINS`: the redirected domains and their subdomains.
    #[serde(deserialize_with = "deserialize_domains")]
    pub domains: Vec<String>,
    /// `SIGNPOST_REDIRECT_TTL`: TTL of redirected answers and of run-time
    /// records given without one (default 300, as LocalStack's records).
    pub ttl: u32,
    /// The resolv.conf the default upstreams come from.
    pub resolv_conf: PathBuf,
    /// systemd-resolved's upstream list, read when resolv.conf names only its stub.
    pub systemd_resolv_conf: PathBuf,
    /// Longest wait for one upstream server (also for each verification question).
    #[serde(with = "signpost_upstream::duration_text")]
    pub upstream_timeout: Duration,
    /// Longest time for a forwarded query, all upstream servers included.
    #[serde(with = "signpost_upstream::duration_text")]
    pub upstream_total_timeout: Duration,
    /// UDP worker threads per listening address (default: one per core).
    pub workers: Option<usize>,
    /// `SIGNPOST_REDIRECT_API`: where to serve the Route 53 API whose hosted
    /// zones are answered over DNS (off by default).
    pub api: Option<SocketAddr>,
    /// `SIGNPOST_REDIRECT_STATE`: the directory the Route 53 API keeps its
    /// state in, so hosted zones survive a restart (in memory without it).
    pub state: Option<PathBuf>,
}

impl Default for RedirectSettings {
    fn default() -> Self {
        Self {
            address: BindAddresses::default(),
            port: 53,
            server: None,
            resolve_ip: AddressSource::ArrivalAddress,
            resolve_ipv6: None,
            local_name_patterns: Vec::new(),
            name_patterns_to_resolve_upstream: Vec::new(),
            verification_domain: DEFAULT_VERIFICATION_DOMAIN.to_owned(),
            localstack_host: None,
            disable_transparent_endpoint_injection: false,
            domains: DEFAULT_DOMAINS.iter().map(|domain| (*domain).to_owned()).collect(),
            ttl: DEFAULT_TTL,
            resolv_conf: PathBuf::from(DEFAULT_RESOLV_CONF),
            systemd_resolv_conf: PathBuf::from(SYSTEMD_RESOLV_CONF),
            upstream_timeout: Duration::from_secs(2),
            upstream_total_timeout: Duration::from_secs(4),
            workers: None,
            api: None,
            state: None,
        }
    }
}

/// The variables [`RedirectSettings::set`] knows, in the order they are documented.
pub const VARIABLES: [&str; 16] = [
    "DNS_ADDRESS",
    "DNS_PORT",
    "DNS_SERVER",
    "DNS_RESOLVE_IP",
    "DNS_RESOLVE_IPV6",
    "DNS_LOCAL_NAME_PATTERNS",
    "DNS_NAME_PATTERNS_TO_RESOLVE_UPSTREAM",
    "DNS_VERIFICATION_DOMAIN",
    "LOCALSTACK_HOST",
    "DISABLE_TRANSPARENT_ENDPOINT_INJECTION",
    "SIGNPOST_REDIRECT_DOMAINS",
    "SIGNPOST_REDIRECT_TTL",
    "SIGNPOST_RESOLV_CONF",
    "SIGNPOST_REDIRECT_API",
    "SIGNPOST_REDIRECT_STATE",
    "SIGNPOST_ADMIN",
];

/// The `DNS_*` variables signpost-redirect reads: LocalStack's (config.py)
/// and `DNS_RESOLVE_IPV6`. Any other `DNS_*` variable is a typo or a
/// setting that does nothing here, and gets a warning naming it.
pub fn dns_variables() -> impl Iterator<Item = &'static str> {
    VARIABLES.into_iter().filter(|name| name.starts_with("DNS_"))
}

/// A `DNS_*` variable that is not one of [`dns_variables`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownVariable {
    /// Its name.
    pub name: String,
    /// The known variable it is closest to, if it looks like a typo of one.
    pub suggestion: Option<&'static str>,
}

impl fmt::Display for UnknownVariable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.suggestion {
            Some(known) => write!(f, "{} (did you mean {known}?)", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The `DNS_*` names among `names` (environment variable names) that
/// signpost-redirect does not read, each with the known name it is
/// probably a typo of.
pub fn unknown_dns_variables<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<UnknownVariable> {
    let mut unknown: Vec<UnknownVariable> = names
        .into_iter()
        .filter(|name| name.starts_with("DNS_") && !dns_variables().any(|known| known == *name))
        .map(|name| UnknownVariable {
            name: name.to_owned(),
            suggestion: dns_variables()
                .map(|known| (edit_distance(name, known), known))
                .filter(|(distance, _)| *distance <= 3)
                .min()
                .map(|(_, known)| known),
        })
        .collect();
    unknown.sort_by(|a, b| a.name.cmp(&b.name));
    unknown.dedup();
    unknown
}

/// Levenshtein distance over bytes (variable names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.as_bytes().iter().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous.get(j).copied().unwrap_or(usize::MAX).saturating_add(usize::from(ca != cb));
            let deletion = previous.get(j + 1).copied().unwrap_or(usize::MAX).saturating_add(1);
            let insertion = current.get(j).copied().unwrap_or(usize::MAX).saturating_add(1);
            current.push(substitution.min(deletion).min(insertion));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}

/// LocalStack's `is_env_true` (config.py): `1` and `true` in any case are
/// true, `0`, `false` and nothing are false; anything else is refused
/// rather than read as false, so a typo is not silent.
fn parse_flag(setting: &'static str, value: &str) -> Result<bool, RedirectError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "" | "0" | "false" => Ok(false),
        _ => Err(RedirectError::InvalidSetting { setting, value: value.to_owned(), problem: "not 1/true or 0/false" }),
    }
}

impl RedirectSettings {
    /// Set one setting from the text of its environment variable (one of
    /// [`VARIABLES`] but `SIGNPOST_ADMIN`, which is a server setting), as
    /// LocalStack reads it.
    pub fn set(&mut self, variable: &str, value: &str) -> Result<(), RedirectError> {
        let setting = VARIABLES.iter().copied().find(|known| *known == variable).unwrap_or("unknown setting");
        let invalid = |problem| RedirectError::InvalidSetting { setting, value: value.to_owned(), problem };
        match variable {
            "DNS_ADDRESS" => self.address = value.parse()?,
            "DNS_PORT" => self.port = value.trim().parse().map_err(|_| invalid("not a port number (0-65535)"))?,
            "DNS_SERVER" => {
                let servers = parse_servers(value)?;
                self.server = (!servers.is_empty()).then_some(servers);
            }
            "DNS_RESOLVE_IP" => self.resolve_ip = parse_ipv4_source(value)?,
            "DNS_RESOLVE_IPV6" => self.resolve_ipv6 = Some(parse_ipv6_source(value)?),
            "DNS_LOCAL_NAME_PATTERNS" => self.local_name_patterns = split_patterns(value),
            "DNS_NAME_PATTERNS_TO_RESOLVE_UPSTREAM" => self.name_patterns_to_resolve_upstream = split_patterns(value),
            "DNS_VERIFICATION_DOMAIN" => {
                // LocalStack: `os.environ.get(...) or "localstack.cloud"`: empty means the default.
                let domain = value.trim();
                self.verification_domain = if domain.is_empty() {
                    DEFAULT_VERIFICATION_DOMAIN.to_owned()
                } else {
                    domain.parse::<NameBuf>().map_err(|_| invalid("not a domain name"))?;
                    domain.to_owned()
                };
            }
            "LOCALSTACK_HOST" => {
                self.localstack_host = if value.trim().is_empty() { None } else { Some(value.parse()?) };
            }
            "DISABLE_TRANSPARENT_ENDPOINT_INJECTION" => {
                self.disable_transparent_endpoint_injection = parse_flag(setting, value)?;
            }
            "SIGNPOST_REDIRECT_DOMAINS" => {
                let domains = split_list(value, &[',', ';']);
                if domains.is_empty() {
                    return Err(invalid("no domain given"));
                }
                self.domains = domains;
            }
            "SIGNPOST_REDIRECT_TTL" => self.ttl = value.trim().parse().map_err(|_| invalid("not a TTL in seconds"))?,
            "SIGNPOST_RESOLV_CONF" => self.resolv_conf = PathBuf::from(value),
            "SIGNPOST_REDIRECT_API" => {
                self.api = match value.trim() {
                    "" => None,
                    text => Some(text.parse().map_err(|_| invalid("not an IP:port address"))?),
                };
            }
            "SIGNPOST_REDIRECT_STATE" => {
                self.state = (!value.trim().is_empty()).then(|| PathBuf::from(value));
            }
            _ => return Err(invalid("no such setting")),
        }
        Ok(())
    }

    /// The listen addresses, or `None` when DNS is disabled.
    pub fn bind_addresses(&self) -> Option<&[IpAddr]> {
        match &self.address {
            BindAddresses::Disabled => None,
            BindAddresses::Addresses(addresses) => Some(addresses),
        }
    }

    /// The DNS_ADDRESS/DNS_PORT addresses we listen on, as configured (none
    /// when disabled): resolv.conf nameservers equal to one of them are
    /// left out of upstream groups, so we never forward to ourselves.
    pub fn own_addresses(&self) -> Vec<SocketAddr> {
        self.bind_addresses().unwrap_or_default().iter().map(|address| SocketAddr::new(*address, self.port)).collect()
    }

    /// UDP and TCP listeners on every listen address (none when disabled).
    pub fn listeners(&self) -> Vec<ListenerConfig> {
        let mut listeners = Vec::new();
        for address in self.bind_addresses().unwrap_or_default() {
            let socket = SocketAddr::new(*address, self.port);
            let mut udp = ListenerConfig::new(Transport::Udp, socket);
            udp.workers = self.workers;
            listeners.push(udp);
            listeners.push(ListenerConfig::new(Transport::Tcp, socket));
        }
        listeners
    }

    /// The IPv6 answer source in force (`resolve_ipv6`, or what follows from `resolve_ip`).
    pub fn effective_resolve_ipv6(&self) -> AddressSource<Ipv6Addr> {
        match (self.resolve_ipv6, self.resolve_ip) {
            (Some(source), _) => source,
            (None, AddressSource::ArrivalAddress) => AddressSource::ArrivalAddress,
            (None, AddressSource::Fixed(address)) if address.is_loopback() => AddressSource::ArrivalAddress,
            (None, _) => AddressSource::None,
        }
    }

    /// The redirect answered for redirected names: A and AAAA from the
    /// resolve addresses; other types are declined, so they are forwarded
    /// upstream as LocalStack forwards them.
    pub fn redirect(&self) -> Redirect {
        Redirect {
            v4: self.resolve_ip,
            v6: self.effective_resolve_ipv6(),
            ttl: self.ttl,
            other_types: OtherTypes::Decline,
        }
    }

    /// The configured redirected domains (`SIGNPOST_REDIRECT_DOMAINS`),
    /// lowercased, without duplicates, with `localhost.localstack.cloud`
    /// always among them: what systemd-resolved routes to us.
    pub fn domain_names(&self) -> Result<Vec<NameBuf>, RedirectError> {
        let mut names: Vec<NameBuf> = Vec::new();
        for text in self.domains.iter().map(String::as_str).chain([LOCALSTACK_DOMAIN]) {
            let name = parse_name("redirected domain", text)?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// The domains redirected in fact: [`RedirectSettings::domain_names`]
    /// (only `localhost.localstack.cloud` of them with
    /// `DISABLE_TRANSPARENT_ENDPOINT_INJECTION`) and the `LOCALSTACK_HOST`
    /// name. The emulator's own names — `localhost.localstack.cloud`, the
    /// `LOCALSTACK_HOST` name and LocalStack's host-prefix names — are the
    /// second list: `DNS_LOCAL_NAME_PATTERNS` does not limit them.
    pub fn redirected_domains(&self) -> Result<(Vec<NameBuf>, Vec<NameBuf>), RedirectError> {
        let localstack = parse_name("redirected domain", LOCALSTACK_DOMAIN)?;
        let mut aws = Vec::new();
        if !self.disable_transparent_endpoint_injection {
            for name in self.domain_names()? {
                if !name.is_subdomain_of(&localstack) {
                    aws.push(name);
                }
            }
        }
        let mut emulator = vec![localstack];
        for prefix in HOST_PREFIXES_NO_SUBDOMAIN {
            emulator.push(parse_name("redirected domain", &format!("{prefix}{LOCALSTACK_DOMAIN}"))?);
        }
        if let Some(name) = self.localstack_host.as_ref().and_then(LocalstackHost::name)
            && !emulator.iter().any(|known| name.is_subdomain_of(known))
        {
            aws.retain(|domain| !domain.is_subdomain_of(&name));
            emulator.push(name);
        }
        Ok((aws, emulator))
    }

    /// Check that every pattern compiles, naming the setting when one does not.
    pub fn check_patterns(&self) -> Result<(), RedirectError> {
        for pattern in &self.local_name_patterns {
            check_pattern("DNS_LOCAL_NAME_PATTERNS", pattern)?;
        }
        for pattern in &self.name_patterns_to_resolve_upstream {
            check_pattern("DNS_NAME_PATTERNS_TO_RESOLVE_UPSTREAM", pattern)?;
        }
        Ok(())
    }

    /// `DNS_LOCAL_NAME_PATTERNS` as one start-anchored regex, if set.
    pub(crate) fn local_name_filter(&self) -> Option<String> {
        match self.local_name_patterns.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            many => Some(many.iter().map(|pattern| format!("(?:{pattern})")).collect::<Vec<_>>().join("|")),
        }
    }

    /// Lines describing what is redirected, for start-up output.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let domains = match self.domain_names() {
            Ok(names) => names.iter().map(NameBuf::to_relative_string).collect::<Vec<_>>().join(", "),
            Err(_) => self.domains.join(", "),
        };
        if self.disable_transparent_endpoint_injection {
            let forwarded = match self.redirected_domains() {
                Ok((_, emulator)) => self
                    .domain_names()
                    .unwrap_or_default()
                    .iter()
                    .filter(|name| !emulator.iter().any(|own| name.is_subdomain_of(own)))
                    .map(NameBuf::to_relative_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                Err(_) => domains,
            };
            lines.push(format!(
                "Redirected domains: {LOCALSTACK_DOMAIN} (DISABLE_TRANSPARENT_ENDPOINT_INJECTION: {forwarded} are \
                 forwarded)"
            ));
        } else {
            lines.push(format!("Redirected domains: {domains}"));
        }
        if let Some(host) = &self.localstack_host {
            match host.name() {
                Some(name) => lines.push(format!(
                    "LOCALSTACK_HOST={host}: {} and every name below it are redirected",
                    name.to_relative_string()
                )),
                None => lines.push(format!(
                    "LOCALSTACK_HOST={host}: an IP address, not a name: nothing more is redirected for it"
                )),
            }
        }
        let v4 = match self.resolve_ip {
            AddressSource::Fixed(address) => address.to_string(),
            AddressSource::ArrivalAddress => "the address the query arrived on (127.0.0.1 for loopback)".to_owned(),
            AddressSource::None => "none (NODATA)".to_owned(),
            AddressSource::Decline => "none (forwarded upstream)".to_owned(),
        };
        let v6 = match self.effective_resolve_ipv6() {
            AddressSource::Fixed(address) => address.to_string(),
            AddressSource::ArrivalAddress => "the address the query arrived on (::1 for loopback)".to_owned(),
            AddressSource::None => "none (NODATA)".to_owned(),
            AddressSource::Decline => "none (forwarded upstream)".to_owned(),
        };
        lines.push(format!(
            "Redirected names answer A with {v4}, AAAA with {v6}, TTL {}; other types are forwarded upstream",
            self.ttl
        ));
        if !self.local_name_patterns.is_empty() {
            lines.push(format!(
                "Only names matching DNS_LOCAL_NAME_PATTERNS are redirected ({LOCALSTACK_DOMAIN} always is): {}",
                self.local_name_patterns.join(", ")
            ));
        }
        if !self.name_patterns_to_resolve_upstream.is_empty() {
            lines.push(format!(
                "Never redirected (DNS_NAME_PATTERNS_TO_RESOLVE_UPSTREAM): {}",
                self.name_patterns_to_resolve_upstream.join(", ")
            ));
        }
        lines
    }
}

fn deserialize_servers<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<SocketAddr>>, D::Error> {
    let text = TextOrList::deserialize(deserializer)?.joined(",");
    let servers = parse_servers(&text).map_err(serde::de::Error::custom)?;
    Ok((!servers.is_empty()).then_some(servers))
}

fn deserialize_ipv4_source<'de, D: Deserializer<'de>>(deserializer: D) -> Result<AddressSource<Ipv4Addr>, D::Error> {
    parse_ipv4_source(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
}

fn deserialize_ipv6_source<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<AddressSource<Ipv6Addr>>, D::Error> {
    parse_ipv6_source(&String::deserialize(deserializer)?).map(Some).map_err(serde::de::Error::custom)
}

fn deserialize_patterns<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(match TextOrList::deserialize(deserializer)? {
        TextOrList::Text(text) => split_patterns(&text),
        TextOrList::List(list) => list.into_iter().filter(|pattern| !pattern.is_empty()).collect(),
    })
}

fn deserialize_domains<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(match TextOrList::deserialize(deserializer)? {
        TextOrList::Text(text) => split_list(&text, &[',', ';']),
        TextOrList::List(list) => list,
    })
}

/// `DNS_SERVER`: comma-separated `IP` or `IP:port` entries (IPv6 as
/// `2001:db8::1` or `[2001:db8::1]:5353`), port 53 unless given; host
/// names are refused (looking them up would need DNS itself).
pub fn parse_servers(text: &str) -> Result<Vec<SocketAddr>, RedirectError> {
    let mut servers = Vec::new();
    for part in split_list(text, &[',', ';']) {
        let server = if let Ok(ip) = part.parse::<IpAddr>() {
            SocketAddr::new(ip, 53)
        } else if let Ok(address) = part.parse::<SocketAddr>() {
            address
        } else {
            return Err(RedirectError::InvalidSetting {
                setting: "DNS_SERVER",
                value: part,
                problem: "not an IP address or IP:port (host names cannot be used: they would need DNS themselves)",
            });
        };
        if server.port() == 0 {
            return Err(RedirectError::InvalidSetting {
                setting: "DNS_SERVER",
                value: part,
                problem: "port 0 is not a server port",
            });
        }
        if !servers.contains(&server) {
            servers.push(server);
        }
    }
    Ok(servers)
}

/// `DNS_RESOLVE_IP`: an IPv4 address, `arrival` (or empty) for the address
/// each query arrived on, or `none` for NODATA.
pub fn parse_ipv4_source(text: &str) -> Result<AddressSource<Ipv4Addr>, RedirectError> {
    parse_address_source(text, "DNS_RESOLVE_IP", "not an IPv4 address, \"arrival\" or \"none\"")
}

/// `DNS_RESOLVE_IPV6`: an IPv6 address, `arrival` (or empty), or `none`.
pub fn parse_ipv6_source(text: &str) -> Result<AddressSource<Ipv6Addr>, RedirectError> {
    parse_address_source(text, "DNS_RESOLVE_IPV6", "not an IPv6 address, \"arrival\" or \"none\"")
}

fn parse_address_source<A: FromStr>(
    text: &str,
    setting: &'static str,
    problem: &'static str,
) -> Result<AddressSource<A>, RedirectError> {
    match text.trim() {
        "" | "arrival" => Ok(AddressSource::ArrivalAddress),
        "none" => Ok(AddressSource::None),
        other => other.parse().map(AddressSource::Fixed).map_err(|_| RedirectError::InvalidSetting {
            setting,
            value: text.to_owned(),
            problem,
        }),
    }
}

/// A list of regexes as LocalStack splits it: on commas, semicolons and
/// white space, except inside `{}`, `[]` and `()` (so `a{1,3}` stays whole).
pub fn split_patterns(text: &str) -> Vec<String> {
    let mut patterns = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            current.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                current.push(c);
            }
            '{' | '[' | '(' => {
                depth += 1;
                current.push(c);
            }
            '}' | ']' | ')' => {
                depth = depth.saturating_sub(1);
                current.push(c);
            }
            ',' | ';' if depth == 0 => patterns.push(std::mem::take(&mut current)),
            c if c.is_whitespace() && depth == 0 => patterns.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    patterns.push(current);
    patterns.retain(|pattern| !pattern.is_empty());
    patterns
}

fn split_list(text: &str, separators: &[char]) -> Vec<String> {
    text.split(|c: char| separators.contains(&c) || c.is_whitespace())
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A domain name from settings or the API, lowercased; a leading `*.` is dropped.
pub(crate) fn parse_name(what: &'static str, text: &str) -> Result<NameBuf, RedirectError> {
    let trimmed = text.trim().trim_start_matches("*.");
    trimmed.parse::<NameBuf>().map(|name| name.to_lowercase()).map_err(|source| RedirectError::InvalidName {
        what,
        name: text.to_owned(),
        source,
    })
}

/// Check that a regex compiles as the rule engine compiles it.
pub(crate) fn check_pattern(setting: &'static str, pattern: &str) -> Result<(), RedirectError> {
    let mut builder = RuleSetBuilder::new();
    builder.default_group(UPSTREAM_GROUP);
    builder
        .exception(ExceptionSpec::new("check", Matcher::Regex { pattern: pattern.to_owned(), anchor: Anchor::Start }));
    match builder.build() {
        Ok(_) => Ok(()),
        Err(signpost_rules::Error::InvalidRegex { message, .. }) => {
            Err(RedirectError::InvalidPattern { setting, pattern: pattern.to_owned(), message })
        }
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_as_localstack_writes_them() {
        let mut settings = RedirectSettings::default();
        assert_eq!(settings.bind_addresses(), Some(&[IpAddr::from([0, 0, 0, 0])][..]), "LocalStack's default");
        assert!(settings.address.falls_back());
        settings.set("DNS_ADDRESS", "127.0.0.1, 127.0.0.2").expect("addresses");
        assert_eq!(settings.bind_addresses(), Some(&[IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 2])][..]));
        assert!(!settings.address.falls_back());
        settings.set("DNS_ADDRESS", "0").expect("disabled");
        assert_eq!(settings.address, BindAddresses::Disabled);
        assert!(settings.listeners().is_empty());
        assert!(settings.set("DNS_ADDRESS", "localhost").is_err());
        settings.set("DNS_SERVER", "10.0.0.2, 10.0.0.3:5353;[2001:db8::1]:54,2001:db8::2").expect("servers");
        let servers: Vec<String> = settings.server.iter().flatten().map(ToString::to_string).collect();
        assert_eq!(servers, ["10.0.0.2:53", "10.0.0.3:5353", "[2001:db8::1]:54", "[2001:db8::2]:53"]);
        let error = settings.set("DNS_SERVER", "dns.google").expect_err("host name");
        assert!(error.to_string().contains("DNS_SERVER=\"dns.google\""), "{error}");
        settings.set("DNS_PORT", "5353").expect("port");
        assert_eq!(settings.port, 5353);
        assert!(settings.set("DNS_PORT", "99999").is_err());
        settings.set("DNS_RESOLVE_IP", "172.17.0.1").expect("ip");
        assert_eq!(settings.resolve_ip, AddressSource::Fixed(Ipv4Addr::new(172, 17, 0, 1)));
        assert_eq!(settings.effective_resolve_ipv6(), AddressSource::None, "no IPv6 for a fixed non-loopback IPv4");
        settings.set("DNS_RESOLVE_IP", "127.0.0.1").expect("ip");
        assert_eq!(settings.effective_resolve_ipv6(), AddressSource::ArrivalAddress);
        settings.set("DNS_RESOLVE_IPV6", "fd00::53").expect("ipv6");
        assert_eq!(settings.effective_resolve_ipv6(), AddressSource::Fixed("fd00::53".parse().expect("v6")));
        settings.set("DNS_RESOLVE_IPV6", "none").expect("none");
        assert_eq!(settings.effective_resolve_ipv6(), AddressSource::None);
        settings.set("SIGNPOST_REDIRECT_DOMAINS", "example.test, other.test").expect("domains");
        let names: Vec<String> =
            settings.domain_names().expect("names").iter().map(NameBuf::to_relative_string).collect();
        assert_eq!(names, ["example.test", "other.test", LOCALSTACK_DOMAIN]);
        assert!(settings.set("NO_SUCH_VARIABLE", "1").is_err());
        assert_eq!(RedirectSettings::default().ttl, 300, "LocalStack's record TTL");
    }

    #[test]
    fn the_verification_domain_defaults_when_empty() {
        let mut settings = RedirectSettings::default();
        assert_eq!(settings.verification_domain, "localstack.cloud");
        settings.set("DNS_VERIFICATION_DOMAIN", "verify.test").expect("domain");
        assert_eq!(settings.verification_domain, "verify.test");
        settings.set("DNS_VERIFICATION_DOMAIN", "").expect("empty");
        assert_eq!(settings.verification_domain, "localstack.cloud");
        assert!(settings.set("DNS_VERIFICATION_DOMAIN", "a..b").is_err());
    }

    #[test]
    fn localstack_host_is_read_as_localstack_reads_it() {
        let parse = |text: &str| text.parse::<LocalstackHost>();
        let host = parse("emulator.test:4566").expect("host:port");
        assert_eq!((host.host.as_str(), host.port), ("emulator.test", Some(4566)));
        assert_eq!(host.name().map(|name| name.to_relative_string()).as_deref(), Some("emulator.test"));
        assert_eq!(parse("Emulator.Test").expect("host").name().expect("name").to_relative_string(), "emulator.test");
        assert_eq!(parse(":4566").expect("port only").host, LOCALSTACK_DOMAIN);
        let v6 = parse("[::1]:4566").expect("v6");
        assert_eq!((v6.host.as_str(), v6.port, v6.name()), ("::1", Some(4566), None));
        assert_eq!(v6.to_string(), "[::1]:4566");
        assert_eq!(parse("127.0.0.1:4566").expect("v4").name(), None);
        for bad in ["host:port", "[::1", "[nope]:1", "a..b"] {
            let error = parse(bad).expect_err(bad);
            assert!(error.to_string().starts_with("LOCALSTACK_HOST="), "{error}");
        }
    }

    #[test]
    fn localstack_host_and_disabled_injection_shape_the_redirected_domains() {
        let names = |list: &[NameBuf]| list.iter().map(NameBuf::to_relative_string).collect::<Vec<_>>();
        let mut settings = RedirectSettings::default();
        let (aws, emulator) = settings.redirected_domains().expect("domains");
        assert_eq!(names(&aws), ["amazonaws.com", "aws.amazon.com", "cloudfront.net"]);
        assert_eq!(emulator.len(), 1 + HOST_PREFIXES_NO_SUBDOMAIN.len());
        assert!(names(&emulator).contains(&"data-localhost.localstack.cloud".to_owned()));
        settings.set("LOCALSTACK_HOST", "emulator.test:4566").expect("host");
        settings.set("DISABLE_TRANSPARENT_ENDPOINT_INJECTION", "1").expect("flag");
        let (aws, emulator) = settings.redirected_domains().expect("domains");
        assert!(aws.is_empty());
        assert_eq!(names(&emulator).last().map(String::as_str), Some("emulator.test"));
        assert_eq!(
            settings.describe()[0],
            "Redirected domains: localhost.localstack.cloud (DISABLE_TRANSPARENT_ENDPOINT_INJECTION: amazonaws.com, \
             aws.amazon.com, cloudfront.net are forwarded)"
        );
        for (text, value) in [("true", true), ("TRUE", true), ("0", false), ("false", false), ("", false)] {
            settings.set("DISABLE_TRANSPARENT_ENDPOINT_INJECTION", text).expect("flag");
            assert_eq!(settings.disable_transparent_endpoint_injection, value, "{text:?}");
        }
        assert!(settings.set("DISABLE_TRANSPARENT_ENDPOINT_INJECTION", "yes").is_err(), "not silently false");
    }

    #[test]
    fn unknown_dns_variables_are_named_with_a_suggestion() {
        let unknown = unknown_dns_variables(["DNS_ADRESS", "DNS_PORT", "DNS_FOO_BAR_BAZ_QUUX", "PATH", "DNS_SERVERS"]);
        let text: Vec<String> = unknown.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "DNS_ADRESS (did you mean DNS_ADDRESS?)",
                "DNS_FOO_BAR_BAZ_QUUX",
                "DNS_SERVERS (did you mean DNS_SERVER?)"
            ]
        );
        assert!(unknown_dns_variables(dns_variables()).is_empty());
        assert_eq!(dns_variables().count(), 8);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn pattern_lists_split_outside_brackets() {
        assert_eq!(split_patterns(".*(ecr|lambda).*.amazonaws.com"), [".*(ecr|lambda).*.amazonaws.com"]);
        assert_eq!(split_patterns("a{1,3}b, c;d  e[,]"), ["a{1,3}b", "c", "d", "e[,]"]);
        assert_eq!(split_patterns(r"x\,y,z"), [r"x\,y", "z"]);
        assert!(split_patterns(" , ").is_empty());
    }

    #[test]
    fn settings_read_from_toml() {
        let settings: RedirectSettings = toml::from_str(
            r#"
            address = "0.0.0.0"
            port = 5353
            server = ["10.0.0.2", "10.0.0.3:5300"]
            resolve_ip = "arrival"
            resolve_ipv6 = "none"
            local_name_patterns = '.*(ecr|lambda).*'
            name_patterns_to_resolve_upstream = ['.*\.s3\..*', 'checkip.*']
            verification_domain = "verify.test"
            localstack_host = "emulator.test:4566"
            disable_transparent_endpoint_injection = true
            domains = "example.test"
            ttl = 30
            upstream_timeout = "500ms"
            api = "127.0.0.1:4566"
            state = "/var/lib/signpost"
            "#,
        )
        .expect("valid");
        assert_eq!(settings.port, 5353);
        assert_eq!(settings.server.as_ref().map(Vec::len), Some(2));
        assert_eq!(settings.effective_resolve_ipv6(), AddressSource::None);
        assert_eq!(settings.name_patterns_to_resolve_upstream.len(), 2);
        assert_eq!(settings.upstream_timeout, Duration::from_millis(500));
        assert_eq!(settings.localstack_host.as_ref().and_then(|host| host.port), Some(4566));
        assert!(settings.disable_transparent_endpoint_injection);
        assert_eq!(settings.api, Some("127.0.0.1:4566".parse().expect("address")));
        assert!(toml::from_str::<RedirectSettings>("colour = 1").is_err());
        assert!(toml::from_str::<RedirectSettings>("resolve_ip = \"::1\"").is_err());
    }

    #[test]
    fn bad_patterns_name_their_variable() {
        let mut settings = RedirectSettings::default();
        settings.set("DNS_LOCAL_NAME_PATTERNS", "(unclosed").expect("split");
        let error = settings.check_patterns().expect_err("bad regex");
        assert!(error.to_string().starts_with("DNS_LOCAL_NAME_PATTERNS: invalid regular expression"), "{error}");
    }
}
