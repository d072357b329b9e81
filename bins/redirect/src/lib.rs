//! The redirect proxy (signpost-redirect) as a library: LocalStack's DNS
//! settings turned into a [`RuleSet`] and an upstream group, the default
//! upstreams taken from resolv.conf, and changes at run time (host records,
//! aliases, skip patterns) from Rust or over the admin listener's JSON API.
//!
//! Redirected names are answered by redirect rules of signpost-rules, so the
//! server writes them on its allocation-free fast path; nothing here runs per
//! query.
//!
//! ```no_run
//! use signpost_redirect::{RedirectServer, RedirectSettings};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut settings = RedirectSettings::default();
//! settings.set("DNS_PORT", "0")?; // a free port, as a test harness wants
//! settings.set("DNS_SERVER", "127.0.0.1:5300")?; // a local upstream
//! let server = RedirectServer::builder(settings).start().await?;
//! for line in server.startup_lines() {
//!     println!("{line}"); // Starting DNS servers (tcp/udp port 40123 on 127.0.0.1)...
//! }
//! // db.test now answers 10.0.0.5; s3.amazonaws.com answers 127.0.0.1.
//! server.add_host("db.test", &["10.0.0.5".parse()?])?;
//! server.shutdown().await;
//! # Ok(()) }
//! ```

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use core::fmt;
use core::str::FromStr;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use signpost_rules::{
    Action, AddressSource, Anchor, BlockAction, ExceptionSpec, HostEntry, HostTableSpec, Matcher, Redirect, RuleSet,
    RuleSetBuilder, RuleSpec,
};
use signpost_upstream::{
    GroupConfig, Policy, ResolvConf, RetryOn, ServerConfig as UpstreamServer, Upstreams, reaches_own_listener, unmapped,
};
use signpost_wire::NameBuf;

use signpost_server::State;
use signpost_server::admin::{AdminExtension, AdminResponse, percent_decode, query_parameter};
use signpost_server::{ListenerConfig, ListenerTransport, LogDestination, QueryLogConfig, ServerConfig};
use signpost_server::{Server, ServerHandle};

/// The domains redirected by default (LocalStack's transparent endpoint injection).
pub const DEFAULT_DOMAINS: [&str; 4] = ["amazonaws.com", "aws.amazon.com", "cloudfront.net", LOCALSTACK_DOMAIN];

/// The emulator's own name: it and its subdomains always resolve.
pub const LOCALSTACK_DOMAIN: &str = "localhost.localstack.cloud";

/// The upstream group names outside the redirected domains go to.
pub const UPSTREAM_GROUP: &str = "upstream";

/// Where the default upstreams come from.
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";

/// systemd-resolved's list of its real upstreams, read when resolv.conf
/// names only its stub (127.0.0.53).
pub const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// The prefix of the admin routes ([`Redirector`]'s [`AdminExtension`]).
pub const ADMIN_PREFIX: &str = "/redirect";

const RUNTIME_TABLE: &str = "runtime";

/// What went wrong configuring or changing the redirect proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedirectError {
    /// A setting has a value that cannot be used.
    #[error("{setting}={value:?}: {problem}")]
    InvalidSetting {
        /// The setting (its environment variable name).
        setting: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A regular expression does not compile.
    #[error("{setting}: invalid regular expression {pattern:?}: {message}")]
    InvalidPattern {
        /// The setting it came from (or the admin route).
        setting: &'static str,
        /// The pattern.
        pattern: String,
        /// The regex compiler's message.
        message: String,
    },
    /// A domain name does not parse.
    #[error("{what} {name:?} is not a valid domain name: {source}")]
    InvalidName {
        /// What the name was for.
        what: &'static str,
        /// The text given.
        name: String,
        /// Why.
        source: signpost_wire::Error,
    },
    /// Nothing of that kind and name exists.
    #[error("no {kind} {name}")]
    NotFound {
        /// "host record", "alias" or "skip pattern".
        kind: &'static str,
        /// The name or pattern.
        name: String,
    },
    /// The name is already used by something else.
    #[error("{name} is already {what}")]
    Conflict {
        /// The name or pattern.
        name: String,
        /// What it already is.
        what: &'static str,
    },
    /// `DNS_ADDRESS=0`: there is nothing to start.
    #[error("DNS is disabled (DNS_ADDRESS=0)")]
    Disabled,
    /// The rule set could not be built.
    #[error(transparent)]
    Rules(Box<signpost_rules::Error>),
    /// The upstream group could not be built.
    #[error(transparent)]
    Upstream(Box<signpost_upstream::Error>),
    /// The server could not start.
    #[error(transparent)]
    Server(Box<signpost_server::Error>),
}

impl From<signpost_rules::Error> for RedirectError {
    fn from(error: signpost_rules::Error) -> Self {
        Self::Rules(Box::new(error))
    }
}

impl From<signpost_upstream::Error> for RedirectError {
    fn from(error: signpost_upstream::Error) -> Self {
        Self::Upstream(Box::new(error))
    }
}

impl From<signpost_server::Error> for RedirectError {
    fn from(error: signpost_server::Error) -> Self {
        Self::Server(Box::new(error))
    }
}

impl RedirectError {
    /// The server's bind error, if that is what this is.
    pub fn as_bind_error(&self) -> Option<&signpost_server::Error> {
        match self {
            Self::Server(error) if matches!(**error, signpost_server::Error::Bind { .. }) => Some(error),
            _ => None,
        }
    }

    fn status(&self) -> u16 {
        match self {
            Self::NotFound { .. } => 404,
            Self::Conflict { .. } => 409,
            _ => 400,
        }
    }
}

/// `DNS_ADDRESS`: where to listen, or not at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindAddresses {
    /// `DNS_ADDRESS=0` (or `false`): no DNS server.
    Disabled,
    /// These addresses (a comma-separated list), UDP and TCP on each.
    Addresses(Vec<IpAddr>),
}

impl Default for BindAddresses {
    /// 127.0.0.1, so the server does not collide with systemd-resolved's 127.0.0.53.
    fn default() -> Self {
        Self::Addresses(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
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
    /// `DNS_ADDRESS`: listen addresses (default 127.0.0.1), or disabled.
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
    /// `SIGNPOST_REDIRECT_DOMAINS`: the redirected domains and their subdomains.
    #[serde(deserialize_with = "deserialize_domains")]
    pub domains: Vec<String>,
    /// `SIGNPOST_REDIRECT_TTL`: TTL of redirected answers (default 60).
    pub ttl: u32,
    /// The resolv.conf the default upstreams come from.
    pub resolv_conf: PathBuf,
    /// systemd-resolved's upstream list, read when resolv.conf names only its stub.
    pub systemd_resolv_conf: PathBuf,
    /// Longest wait for one upstream server.
    #[serde(with = "signpost_upstream::duration_text")]
    pub upstream_timeout: Duration,
    /// Longest time for a forwarded query, all upstream servers included.
    #[serde(with = "signpost_upstream::duration_text")]
    pub upstream_total_timeout: Duration,
    /// UDP worker threads per listening address (default: one per core).
    pub workers: Option<usize>,
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
            domains: DEFAULT_DOMAINS.iter().map(|domain| (*domain).to_owned()).collect(),
            ttl: 60,
            resolv_conf: PathBuf::from(DEFAULT_RESOLV_CONF),
            systemd_resolv_conf: PathBuf::from(SYSTEMD_RESOLV_CONF),
            upstream_timeout: Duration::from_secs(2),
            upstream_total_timeout: Duration::from_secs(4),
            workers: None,
        }
    }
}

/// The variables [`RedirectSettings::set`] knows, in the order they are documented.
pub const VARIABLES: [&str; 10] = [
    "DNS_ADDRESS",
    "DNS_PORT",
    "DNS_SERVER",
    "DNS_RESOLVE_IP",
    "DNS_RESOLVE_IPV6",
    "DNS_LOCAL_NAME_PATTERNS",
    "DNS_NAME_PATTERNS_TO_RESOLVE_UPSTREAM",
    "SIGNPOST_REDIRECT_DOMAINS",
    "SIGNPOST_REDIRECT_TTL",
    "SIGNPOST_RESOLV_CONF",
];

impl RedirectSettings {
    /// Set one setting from the text of its environment variable (one of
    /// [`VARIABLES`]), as LocalStack reads it.
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
            "SIGNPOST_REDIRECT_DOMAINS" => {
                let domains = split_list(value, &[',', ';']);
                if domains.is_empty() {
                    return Err(invalid("no domain given"));
                }
                self.domains = domains;
            }
            "SIGNPOST_REDIRECT_TTL" => self.ttl = value.trim().parse().map_err(|_| invalid("not a TTL in seconds"))?,
            "SIGNPOST_RESOLV_CONF" => self.resolv_conf = PathBuf::from(value),
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
            let mut udp = ListenerConfig::new(ListenerTransport::Udp, socket);
            udp.workers = self.workers;
            listeners.push(udp);
            listeners.push(ListenerConfig::new(ListenerTransport::Tcp, socket));
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

    /// The redirect answered for redirected names.
    pub fn redirect(&self) -> Redirect {
        Redirect { v4: self.resolve_ip, v6: self.effective_resolve_ipv6(), ttl: self.ttl }
    }

    /// The redirected domains, lowercased, without duplicates, with
    /// `localhost.localstack.cloud` always among them.
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

    /// The upstream servers: `DNS_SERVER`, or the system's from resolv.conf,
    /// leaving out `own` listening addresses and loopback stubs.
    pub fn upstreams(&self, own: &[SocketAddr]) -> UpstreamChoice {
        match &self.server {
            Some(servers) => {
                UpstreamChoice { servers: servers.clone(), source: UpstreamSource::Configured, skipped: Vec::new() }
            }
            None => system_upstreams(&self.resolv_conf, &self.systemd_resolv_conf, own),
        }
    }

    /// The upstream group for `choice` (none when it has no servers):
    /// sequential failover, moving on after a timeout, an unreachable
    /// server, SERVFAIL or REFUSED.
    pub fn upstream_group(&self, choice: &UpstreamChoice) -> Option<GroupConfig> {
        if choice.servers.is_empty() {
            return None;
        }
        let mut group =
            GroupConfig::new(UPSTREAM_GROUP, choice.servers.iter().map(|s| UpstreamServer::udp(*s)).collect());
        group.policy = Policy::Sequential;
        group.retry_on = RetryOn { servfail: true, refused: true, ..RetryOn::NETWORK };
        group.per_try_timeout = self.upstream_timeout;
        group.total_timeout = self.upstream_total_timeout.max(self.upstream_timeout);
        Some(group)
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
    fn local_name_filter(&self) -> Option<String> {
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
        lines.push(format!("Redirected domains: {domains}"));
        let v4 = match self.resolve_ip {
            AddressSource::Fixed(address) => address.to_string(),
            AddressSource::ArrivalAddress => "the address the query arrived on (127.0.0.1 for loopback)".to_owned(),
            AddressSource::None => "none (NODATA)".to_owned(),
        };
        let v6 = match self.effective_resolve_ipv6() {
            AddressSource::Fixed(address) => address.to_string(),
            AddressSource::ArrivalAddress => "the address the query arrived on (::1 for loopback)".to_owned(),
            AddressSource::None => "none (NODATA)".to_owned(),
        };
        lines.push(format!("Redirected names answer A with {v4}, AAAA with {v6}, TTL {}", self.ttl));
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
    match text.trim() {
        "" | "arrival" => Ok(AddressSource::ArrivalAddress),
        "none" => Ok(AddressSource::None),
        other => other.parse().map(AddressSource::Fixed).map_err(|_| RedirectError::InvalidSetting {
            setting: "DNS_RESOLVE_IP",
            value: text.to_owned(),
            problem: "not an IPv4 address, \"arrival\" or \"none\"",
        }),
    }
}

/// `DNS_RESOLVE_IPV6`: an IPv6 address, `arrival` (or empty), or `none`.
pub fn parse_ipv6_source(text: &str) -> Result<AddressSource<Ipv6Addr>, RedirectError> {
    match text.trim() {
        "" | "arrival" => Ok(AddressSource::ArrivalAddress),
        "none" => Ok(AddressSource::None),
        other => other.parse().map(AddressSource::Fixed).map_err(|_| RedirectError::InvalidSetting {
            setting: "DNS_RESOLVE_IPV6",
            value: text.to_owned(),
            problem: "not an IPv6 address, \"arrival\" or \"none\"",
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

fn parse_name(what: &'static str, text: &str) -> Result<NameBuf, RedirectError> {
    let trimmed = text.trim().trim_start_matches("*.");
    trimmed.parse::<NameBuf>().map(|name| name.to_lowercase()).map_err(|source| RedirectError::InvalidName {
        what,
        name: text.to_owned(),
        source,
    })
}

/// Check that a regex compiles as the rule engine compiles it.
fn check_pattern(setting: &'static str, pattern: &str) -> Result<(), RedirectError> {
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

/// Where the upstream servers came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamSource {
    /// `DNS_SERVER`.
    Configured,
    /// The nameservers of this resolv.conf.
    ResolvConf(PathBuf),
    /// systemd-resolved's upstreams (resolv.conf named only its stub).
    SystemdResolved(PathBuf),
    /// Nothing usable: redirected names still answer, the rest gets SERVFAIL.
    None,
}

/// A resolv.conf nameserver that was left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedNameserver {
    /// The nameserver.
    pub address: SocketAddr,
    /// The file it was in.
    pub file: PathBuf,
    /// Why it was left out.
    pub reason: &'static str,
}

/// The upstream servers and where they came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamChoice {
    /// The servers, in failover order.
    pub servers: Vec<SocketAddr>,
    /// Where they came from.
    pub source: UpstreamSource,
    /// Nameservers left out.
    pub skipped: Vec<SkippedNameserver>,
}

impl fmt::Display for UpstreamChoice {
    /// `10.0.0.2:53, 10.0.0.3:53 (from /etc/resolv.conf)`, or why there are none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.servers.iter().map(ToString::to_string).collect();
        match &self.source {
            UpstreamSource::Configured => write!(f, "{} (DNS_SERVER)", list.join(", ")),
            UpstreamSource::ResolvConf(path) => write!(f, "{} (from {})", list.join(", "), path.display()),
            UpstreamSource::SystemdResolved(path) => {
                write!(f, "{} (systemd-resolved's upstreams, from {})", list.join(", "), path.display())
            }
            UpstreamSource::None => {
                f.write_str("none: redirected names still answer, every other name gets SERVFAIL (set DNS_SERVER)")?;
                for skipped in &self.skipped {
                    write!(f, "; {} in {} left out: {}", skipped.address, skipped.file.display(), skipped.reason)?;
                }
                Ok(())
            }
        }
    }
}

/// The default upstreams: the nameservers of `resolv_conf` without our own
/// listening addresses (`own`) and without loopback stubs, which would send
/// queries back to the system resolver and so, when it uses Signpost, to us.
/// When resolv.conf names only systemd-resolved's stub (127.0.0.53 or
/// 127.0.0.54), the real upstreams come from `systemd_resolv_conf`.
/// With nothing left there are none.
pub fn system_upstreams(resolv_conf: &Path, systemd_resolv_conf: &Path, own: &[SocketAddr]) -> UpstreamChoice {
    let mut skipped = Vec::new();
    let servers = usable_nameservers(resolv_conf, own, &mut skipped);
    if !servers.is_empty() {
        return UpstreamChoice { servers, source: UpstreamSource::ResolvConf(resolv_conf.to_path_buf()), skipped };
    }
    let stub_only = skipped.iter().any(|skip| is_systemd_stub(skip.address.ip()));
    if stub_only {
        let servers = usable_nameservers(systemd_resolv_conf, own, &mut skipped);
        if !servers.is_empty() {
            return UpstreamChoice {
                servers,
                source: UpstreamSource::SystemdResolved(systemd_resolv_conf.to_path_buf()),
                skipped,
            };
        }
    }
    UpstreamChoice { servers: Vec::new(), source: UpstreamSource::None, skipped }
}

fn is_systemd_stub(ip: IpAddr) -> bool {
    ip == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53)) || ip == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 54))
}

fn usable_nameservers(path: &Path, own: &[SocketAddr], skipped: &mut Vec<SkippedNameserver>) -> Vec<SocketAddr> {
    let Ok(conf) = ResolvConf::load(path) else { return Vec::new() };
    let (servers, left_out) = loop_free_nameservers(&conf.nameservers, path, own);
    skipped.extend(left_out);
    servers
}

/// `nameservers`, read from the resolv.conf `file`, without our own
/// listening addresses (`own`) and loopback stubs, as [`system_upstreams`]
/// leaves them out; for other groups taken from a resolv.conf, such as the
/// rules' `[system]` group. Returns the servers kept and those left out.
pub fn loop_free_nameservers(
    nameservers: &[SocketAddr],
    file: &Path,
    own: &[SocketAddr],
) -> (Vec<SocketAddr>, Vec<SkippedNameserver>) {
    let mut servers = Vec::new();
    let mut skipped = Vec::new();
    for &address in nameservers {
        let ip = unmapped(address.ip());
        let reason = if reaches_own_listener(address, own) {
            Some("it is our own listening address")
        } else if ip.is_loopback() || ip.is_unspecified() {
            Some("a loopback stub would send queries back to the system resolver")
        } else {
            None
        };
        match reason {
            Some(reason) => skipped.push(SkippedNameserver { address, file: file.to_path_buf(), reason }),
            None => servers.push(address),
        }
    }
    (servers, skipped)
}

/// A host record added at run time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostRecord {
    /// The name.
    pub name: String,
    /// Its addresses; empty means the redirect address (the emulator's).
    pub addresses: Vec<IpAddr>,
}

/// An alias added at run time: `name` answers with `target`'s addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AliasRecord {
    /// The alias.
    pub name: String,
    /// The name whose addresses it gets.
    pub target: String,
    /// Whether the target is known locally (a host record, a host table
    /// entry or a redirected name); if not, the alias answers REFUSED, as
    /// LocalStack's do.
    pub resolved: bool,
}

/// What the redirect proxy holds: settings and run-time changes (the body of `GET /redirect`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RedirectSnapshot {
    /// The redirected domains.
    pub domains: Vec<String>,
    /// `DNS_LOCAL_NAME_PATTERNS`.
    pub local_name_patterns: Vec<String>,
    /// Skip patterns from the settings.
    pub configured_skip_patterns: Vec<String>,
    /// Skip patterns added at run time.
    pub skip_patterns: Vec<String>,
    /// Host records added at run time.
    pub hosts: Vec<HostRecord>,
    /// Aliases added at run time.
    pub aliases: Vec<AliasRecord>,
    /// TTL of redirected answers.
    pub ttl: u32,
}

#[derive(Clone, Debug)]
struct RuntimeState {
    settings: RedirectSettings,
    base: RuleSetBuilder,
    /// By lowercased relative name.
    hosts: BTreeMap<String, HostRecord>,
    /// Alias name → target, both lowercased relative names.
    aliases: BTreeMap<String, String>,
    skips: Vec<String>,
}

impl RuntimeState {
    /// Build the rule set: the base (extra configuration), redirect rules
    /// for the domains, exceptions for the skip patterns, and the run-time
    /// host records and aliases.
    fn build(&self) -> Result<RuleSet, RedirectError> {
        let settings = &self.settings;
        let mut builder = self.base.clone();
        builder.default_group(UPSTREAM_GROUP);
        let redirect = settings.redirect();
        let localstack = parse_name("redirected domain", LOCALSTACK_DOMAIN)?;
        let filter = settings.local_name_filter();
        for domain in settings.domain_names()? {
            let covered = domain.is_subdomain_of(&localstack);
            if covered && domain != localstack {
                continue;
            }
            let mut rule = RuleSpec::new(
                format!("redirect:{}", domain.to_relative_string()),
                Matcher::Suffix(domain),
                Action::Redirect(redirect),
            )
            .in_views(["*"]);
            // The emulator's own name always resolves.
            if !covered {
                rule.only_names_matching = filter.clone();
            }
            builder.rule(rule);
        }
        let mut seen = Vec::new();
        for pattern in settings.name_patterns_to_resolve_upstream.iter().chain(&self.skips) {
            if seen.contains(&pattern) {
                continue;
            }
            seen.push(pattern);
            builder.exception(
                ExceptionSpec::new(
                    format!("skip:{pattern}"),
                    Matcher::Regex { pattern: pattern.clone(), anchor: Anchor::Start },
                )
                .in_views(["*"]),
            );
        }
        let mut entries = Vec::new();
        for record in self.hosts.values() {
            let name = parse_name("host record", &record.name)?;
            if record.addresses.is_empty() {
                builder.rule(
                    RuleSpec::new(format!("host:{}", record.name), Matcher::Exact(name), Action::Redirect(redirect))
                        .in_views(["*"]),
                );
            } else {
                entries.push(HostEntry::new(name, record.addresses.iter().copied()));
            }
        }
        for (alias, target) in &self.aliases {
            let name = parse_name("alias", alias)?;
            match self.alias_target(target, &localstack)? {
                AliasTarget::Addresses(addresses) => entries.push(HostEntry::new(name, addresses)),
                AliasTarget::Redirect => {
                    builder.rule(
                        RuleSpec::new(format!("alias:{alias}"), Matcher::Exact(name), Action::Redirect(redirect))
                            .in_views(["*"]),
                    );
                }
                AliasTarget::Unknown => {
                    builder.rule(
                        RuleSpec::new(
                            format!("alias:{alias}"),
                            Matcher::Exact(name),
                            Action::Block(BlockAction::Refused),
                        )
                        .in_views(["*"]),
                    );
                }
            }
        }
        if !entries.is_empty() {
            let mut table = HostTableSpec::new(RUNTIME_TABLE, entries);
            table.ttl = settings.ttl;
            table.views = vec!["*".to_owned()];
            builder.host_table(table);
        }
        Ok(builder.build()?)
    }

    /// What an alias target resolves to locally.
    fn alias_target(&self, target: &str, localstack: &NameBuf) -> Result<AliasTarget, RedirectError> {
        if let Some(record) = self.hosts.get(target) {
            return Ok(if record.addresses.is_empty() {
                AliasTarget::Redirect
            } else {
                AliasTarget::Addresses(record.addresses.clone())
            });
        }
        let name = parse_name("alias target", target)?;
        for table in self.base.host_tables() {
            if let Some(entry) = table.entries.iter().find(|entry| entry.name == name)
                && !entry.addresses.is_empty()
            {
                return Ok(AliasTarget::Addresses(entry.addresses.clone()));
            }
        }
        let redirected = self.settings.domain_names()?.iter().any(|domain| name.is_subdomain_of(domain))
            || name.is_subdomain_of(localstack);
        Ok(if redirected { AliasTarget::Redirect } else { AliasTarget::Unknown })
    }

    fn snapshot(&self) -> RedirectSnapshot {
        let localstack = parse_name("redirected domain", LOCALSTACK_DOMAIN).ok();
        RedirectSnapshot {
            domains: self
                .settings
                .domain_names()
                .map(|names| names.iter().map(NameBuf::to_relative_string).collect())
                .unwrap_or_else(|_| self.settings.domains.clone()),
            local_name_patterns: self.settings.local_name_patterns.clone(),
            configured_skip_patterns: self.settings.name_patterns_to_resolve_upstream.clone(),
            skip_patterns: self.skips.clone(),
            hosts: self.hosts.values().cloned().collect(),
            aliases: self
                .aliases
                .iter()
                .map(|(name, target)| AliasRecord {
                    name: name.clone(),
                    target: target.clone(),
                    resolved: localstack.as_ref().is_some_and(|localstack| {
                        !matches!(self.alias_target(target, localstack), Ok(AliasTarget::Unknown) | Err(_))
                    }),
                })
                .collect(),
            ttl: self.settings.ttl,
        }
    }
}

enum AliasTarget {
    Addresses(Vec<IpAddr>),
    Redirect,
    Unknown,
}

/// Remove `name` from `records`, or say there was no such `kind`.
fn remove<V>(records: &mut BTreeMap<String, V>, name: &str, kind: &'static str) -> Result<(), RedirectError> {
    match records.remove(name) {
        Some(_) => Ok(()),
        None => Err(RedirectError::NotFound { kind, name: name.to_owned() }),
    }
}

/// A name as stored for run-time records: lowercased, relative, checked.
fn record_name(what: &'static str, text: &str) -> Result<String, RedirectError> {
    let name = text.trim().parse::<NameBuf>().map_err(|source| RedirectError::InvalidName {
        what,
        name: text.to_owned(),
        source,
    })?;
    if name.is_root() {
        return Err(RedirectError::InvalidSetting { setting: "name", value: text.to_owned(), problem: "the root" });
    }
    Ok(name.to_lowercase().to_relative_string())
}

/// The redirect proxy's rules and their changes at run time.
///
/// Every change builds a new rule set from the settings plus all changes so
/// far and installs it on the server; a change that does not build (a bad
/// regex, a name that a configured host entry already has) is refused and
/// leaves everything as it was. Shared with the admin listener, where it
/// serves the JSON API under `/redirect` (see docs/redirect.md).
pub struct Redirector {
    state: Mutex<RuntimeState>,
}

impl fmt::Debug for Redirector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redirector").finish_non_exhaustive()
    }
}

impl Redirector {
    /// Check the settings and build the first rule set. `base` holds
    /// anything else to answer (zones, host tables from configuration).
    pub fn new(settings: RedirectSettings, base: RuleSetBuilder) -> Result<Self, RedirectError> {
        settings.check_patterns()?;
        let state =
            RuntimeState { settings, base, hosts: BTreeMap::new(), aliases: BTreeMap::new(), skips: Vec::new() };
        state.build()?;
        Ok(Self { state: Mutex::new(state) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RuntimeState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The rule set for the settings and every change so far.
    pub fn rule_set(&self) -> Result<RuleSet, RedirectError> {
        self.lock().build()
    }

    /// The settings in force.
    pub fn settings(&self) -> RedirectSettings {
        self.lock().settings.clone()
    }

    /// Settings and run-time changes.
    pub fn snapshot(&self) -> RedirectSnapshot {
        self.lock().snapshot()
    }

    /// New settings and base rules (a reload); run-time changes are kept.
    pub fn reconfigure(&self, settings: RedirectSettings, base: RuleSetBuilder) -> Result<RuleSet, RedirectError> {
        settings.check_patterns()?;
        let mut state = self.lock();
        let mut next = state.clone();
        next.settings = settings;
        next.base = base;
        let rules = next.build()?;
        *state = next;
        Ok(rules)
    }

    /// Apply `change` to a copy of the state, build, install on `server`, keep.
    fn change(
        &self,
        server: &ServerHandle,
        change: impl FnOnce(&mut RuntimeState) -> Result<(), RedirectError>,
    ) -> Result<(), RedirectError> {
        let mut state = self.lock();
        let mut next = state.clone();
        change(&mut next)?;
        let rules = next.build()?;
        server.set_rules(rules);
        *state = next;
        Ok(())
    }

    /// Answer `name` with `addresses` (A and AAAA; NODATA for other types),
    /// or with the redirect address when `addresses` is empty. Replaces an
    /// earlier record of the same name.
    pub fn add_host(&self, server: &ServerHandle, name: &str, addresses: &[IpAddr]) -> Result<(), RedirectError> {
        let name = record_name("host record", name)?;
        self.change(server, |state| {
            if state.aliases.contains_key(&name) {
                return Err(RedirectError::Conflict { name: name.clone(), what: "an alias" });
            }
            let mut unique = Vec::new();
            for address in addresses {
                if !unique.contains(address) {
                    unique.push(*address);
                }
            }
            state.hosts.insert(name.clone(), HostRecord { name: name.clone(), addresses: unique });
            Ok(())
        })
    }

    /// Remove the host record for `name`.
    pub fn delete_host(&self, server: &ServerHandle, name: &str) -> Result<(), RedirectError> {
        let name = record_name("host record", name)?;
        self.change(server, |state| remove(&mut state.hosts, &name, "host record"))
    }

    /// Answer `name` with the addresses of `target` (a host record, a host
    /// table entry, or a redirected name); while `target` is unknown the
    /// alias answers REFUSED. Replaces an earlier alias of the same name.
    pub fn add_alias(&self, server: &ServerHandle, name: &str, target: &str) -> Result<(), RedirectError> {
        let name = record_name("alias", name)?;
        let target = record_name("alias target", target)?;
        if name == target {
            return Err(RedirectError::Conflict { name, what: "its own target" });
        }
        self.change(server, |state| {
            if state.hosts.contains_key(&name) {
                return Err(RedirectError::Conflict { name: name.clone(), what: "a host record" });
            }
            if state.aliases.contains_key(&target) {
                return Err(RedirectError::Conflict { name: target.clone(), what: "an alias (aliases do not chain)" });
            }
            state.aliases.insert(name.clone(), target.clone());
            Ok(())
        })
    }

    /// Remove the alias `name`.
    pub fn delete_alias(&self, server: &ServerHandle, name: &str) -> Result<(), RedirectError> {
        let name = record_name("alias", name)?;
        self.change(server, |state| remove(&mut state.aliases, &name, "alias"))
    }

    /// Never redirect names matching `pattern` (a start-anchored regex, as
    /// `DNS_NAME_PATTERNS_TO_RESOLVE_UPSTREAM`).
    pub fn add_skip_pattern(&self, server: &ServerHandle, pattern: &str) -> Result<(), RedirectError> {
        if pattern.is_empty() {
            return Err(RedirectError::InvalidSetting {
                setting: "skip pattern",
                value: String::new(),
                problem: "empty pattern",
            });
        }
        check_pattern("skip pattern", pattern)?;
        self.change(server, |state| {
            if state.skips.iter().chain(&state.settings.name_patterns_to_resolve_upstream).any(|p| p == pattern) {
                return Err(RedirectError::Conflict { name: pattern.to_owned(), what: "a skip pattern" });
            }
            state.skips.push(pattern.to_owned());
            Ok(())
        })
    }

    /// Remove a skip pattern added at run time.
    pub fn delete_skip_pattern(&self, server: &ServerHandle, pattern: &str) -> Result<(), RedirectError> {
        self.change(server, |state| {
            let before = state.skips.len();
            state.skips.retain(|p| p != pattern);
            if state.skips.len() == before {
                return Err(RedirectError::NotFound {
                    kind: "skip pattern added at run time",
                    name: pattern.to_owned(),
                });
            }
            Ok(())
        })
    }

    fn handle_admin(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        body: &[u8],
        server: &ServerHandle,
    ) -> AdminResponse {
        let rest = path.strip_prefix(ADMIN_PREFIX).unwrap_or(path);
        let outcome = match (method, rest) {
            ("GET", "" | "/") => return json_response(&self.snapshot()),
            ("GET", "/hosts") => return json_response(&self.snapshot().hosts),
            ("GET", "/aliases") => return json_response(&self.snapshot().aliases),
            ("GET", "/skip") => return json_response(&self.snapshot().skip_patterns),
            ("POST", "/hosts") => match parse_body::<HostBody>(body) {
                Ok(host) => self.add_host(server, &host.name, &host.addresses).map(|()| ("added", host.name)),
                Err(response) => return response,
            },
            ("POST", "/aliases") => match parse_body::<AliasBody>(body) {
                Ok(alias) => self.add_alias(server, &alias.name, &alias.target).map(|()| ("added", alias.name)),
                Err(response) => return response,
            },
            ("POST", "/skip") => match parse_body::<SkipBody>(body) {
                Ok(skip) => self.add_skip_pattern(server, &skip.pattern).map(|()| ("added", skip.pattern)),
                Err(response) => return response,
            },
            ("DELETE", "/skip") => {
                let pattern = match query_parameter(query, "pattern") {
                    Some(pattern) => pattern,
                    None => match parse_body::<SkipBody>(body) {
                        Ok(skip) => skip.pattern,
                        Err(response) => return response,
                    },
                };
                self.delete_skip_pattern(server, &pattern).map(|()| ("deleted", pattern))
            }
            ("DELETE", rest) => {
                if let Some(name) = rest.strip_prefix("/hosts/") {
                    let name = percent_decode(name);
                    self.delete_host(server, &name).map(|()| ("deleted", name))
                } else if let Some(name) = rest.strip_prefix("/aliases/") {
                    let name = percent_decode(name);
                    self.delete_alias(server, &name).map(|()| ("deleted", name))
                } else {
                    return AdminResponse::error(404, "no such route");
                }
            }
            _ => return AdminResponse::error(404, "no such route"),
        };
        match outcome {
            Ok((verb, what)) => AdminResponse::ok(serde_json::json!({ verb: what }).to_string()),
            Err(error) => AdminResponse::error(error.status(), &error.to_string()),
        }
    }
}

impl AdminExtension for Redirector {
    /// The JSON API under `/redirect`: `GET /redirect` (everything),
    /// `POST /redirect/hosts` `{"name", "addresses"}`, `DELETE
    /// /redirect/hosts/NAME`, `POST /redirect/aliases` `{"name", "target"}`,
    /// `DELETE /redirect/aliases/NAME`, `POST /redirect/skip` `{"pattern"}`,
    /// `DELETE /redirect/skip?pattern=...`.
    fn handle(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        body: &[u8],
        server: &ServerHandle,
    ) -> Option<AdminResponse> {
        if path != ADMIN_PREFIX && !path.starts_with("/redirect/") {
            return None;
        }
        Some(self.handle_admin(method, path, query, body, server))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostBody {
    name: String,
    #[serde(default)]
    addresses: Vec<IpAddr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasBody {
    name: String,
    target: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SkipBody {
    pattern: String,
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, AdminResponse> {
    serde_json::from_slice(body).map_err(|error| AdminResponse::error(400, &format!("invalid JSON body: {error}")))
}

fn json_response(value: &impl Serialize) -> AdminResponse {
    match serde_json::to_string_pretty(value) {
        Ok(body) => AdminResponse::ok(body),
        Err(_) => AdminResponse::error(500, "could not serialise the answer"),
    }
}

/// How to re-read the settings, base rules and extra upstream groups on
/// reload (SIGHUP, `POST /reload`).
pub type RedirectReloader =
    Arc<dyn Fn() -> Result<(RedirectSettings, RuleSetBuilder, Vec<GroupConfig>), String> + Send + Sync>;

/// Starts a [`RedirectServer`].
pub struct RedirectServerBuilder {
    settings: RedirectSettings,
    config: ServerConfig,
    base: RuleSetBuilder,
    groups: Vec<GroupConfig>,
    reloader: Option<RedirectReloader>,
}

impl RedirectServerBuilder {
    /// Server options (extra listeners such as DoH, cache, query log,
    /// limits, admin); the DNS_ADDRESS/DNS_PORT listeners come first.
    pub fn server_config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// More to answer besides the redirect: zones, host tables, other rules.
    pub fn rules(mut self, base: RuleSetBuilder) -> Self {
        self.base = base;
        self
    }

    /// More upstream groups, for rules in the base that forward elsewhere.
    pub fn upstream_groups(mut self, groups: Vec<GroupConfig>) -> Self {
        self.groups = groups;
        self
    }

    /// How to reload.
    pub fn reloader(mut self, reloader: RedirectReloader) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// Bind and serve. Must run inside a tokio runtime.
    pub async fn start(self) -> Result<RedirectServer, RedirectError> {
        if self.settings.bind_addresses().is_none() {
            return Err(RedirectError::Disabled);
        }
        let own = self.settings.own_addresses();
        let upstream = self.settings.upstreams(&own);
        let mut groups: Vec<GroupConfig> = self.settings.upstream_group(&upstream).into_iter().collect();
        groups.extend(self.groups);
        let upstreams = Upstreams::new(groups)?;
        let redirector = Arc::new(Redirector::new(self.settings.clone(), self.base)?);
        let rules = redirector.rule_set()?;

        let mut config = self.config;
        let extra = config.listeners.len();
        let mut listeners = self.settings.listeners();
        let main = listeners.len();
        listeners.append(&mut config.listeners);
        config.listeners = listeners;
        // Let the upstream group's own deadline speak first.
        let deadline = u64::try_from(self.settings.upstream_total_timeout.as_millis()).unwrap_or(u64::MAX);
        config.limits.query_timeout_ms = config.limits.query_timeout_ms.max(deadline.saturating_add(500));
        let query_log = config.query_log.enabled.then(|| config.query_log.clone());
        let cache = config.cache.enabled;

        let bound: Arc<OnceLock<Vec<SocketAddr>>> = Arc::new(OnceLock::new());
        let mut builder = Server::builder()
            .config(config)
            .rules(rules)
            .upstreams(upstreams)
            .admin_extension(redirector.clone() as Arc<dyn AdminExtension>);
        if let Some(reloader) = self.reloader {
            let redirector = redirector.clone();
            let bound = bound.clone();
            builder = builder.reloader(Arc::new(move || {
                let (settings, base, extra_groups) = reloader()?;
                let own = bound.get().cloned().unwrap_or_default();
                let upstream = settings.upstreams(&own);
                let mut groups: Vec<GroupConfig> = settings.upstream_group(&upstream).into_iter().collect();
                groups.extend(extra_groups);
                let upstreams = Upstreams::new(groups).map_err(|error| error.to_string())?;
                let rules = redirector.reconfigure(settings, base).map_err(|error| error.to_string())?;
                Ok(State { rules: Arc::new(rules), upstreams: Arc::new(upstreams) })
            }));
        }
        let handle = builder.start().await?;
        let _ = bound.set(handle.listeners().iter().map(|listener| listener.address).collect());
        debug_assert_eq!(handle.listeners().len(), main + extra);
        Ok(RedirectServer { handle, redirector, upstream, main_listeners: main, query_log, cache })
    }
}

/// A running redirect proxy: the server, its [`Redirector`] and where its upstreams came from.
pub struct RedirectServer {
    handle: ServerHandle,
    redirector: Arc<Redirector>,
    upstream: UpstreamChoice,
    main_listeners: usize,
    query_log: Option<QueryLogConfig>,
    /// Whether forwarded answers are cached (in memory).
    cache: bool,
}

impl fmt::Debug for RedirectServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedirectServer").field("upstream", &self.upstream).finish_non_exhaustive()
    }
}

impl RedirectServer {
    /// A builder for a proxy with these settings.
    pub fn builder(settings: RedirectSettings) -> RedirectServerBuilder {
        RedirectServerBuilder {
            settings,
            config: ServerConfig::default(),
            base: RuleSetBuilder::new(),
            groups: Vec::new(),
            reloader: None,
        }
    }

    /// The server (addresses, metrics, reload, faults...).
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// The redirect rules and their run-time changes.
    pub fn redirector(&self) -> &Arc<Redirector> {
        &self.redirector
    }

    /// The upstream servers and where they came from.
    pub fn upstream(&self) -> &UpstreamChoice {
        &self.upstream
    }

    /// The bound DNS_ADDRESS/DNS_PORT UDP addresses.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.main_addresses(ListenerTransport::Udp)
    }

    /// The bound DNS_ADDRESS/DNS_PORT TCP addresses.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.main_addresses(ListenerTransport::Tcp)
    }

    fn main_addresses(&self, transport: ListenerTransport) -> Vec<SocketAddr> {
        self.handle
            .listeners()
            .iter()
            .take(self.main_listeners)
            .filter(|listener| listener.transport == transport)
            .map(|listener| listener.address)
            .collect()
    }

    /// What the binary prints on start: `Starting DNS servers (tcp/udp port
    /// 53 on 127.0.0.1)...` for each address (with the real port), other
    /// listeners, the upstreams, the redirected domains; the last line is
    /// always the query log's state.
    pub fn startup_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let main = self.handle.listeners().iter().take(self.main_listeners);
        for udp in main.filter(|listener| listener.transport == ListenerTransport::Udp) {
            lines.push(format!(
                "Starting DNS servers (tcp/udp port {} on {})...",
                udp.address.port(),
                udp.address.ip()
            ));
        }
        for other in self.handle.listeners().iter().skip(self.main_listeners) {
            lines.push(format!("Also listening: {} on {}", other.transport.as_str(), other.address));
        }
        lines.push(format!("Upstream DNS servers: {}", self.upstream));
        lines.extend(self.redirector.settings().describe());
        if let Some(admin) = self.handle.admin_addr() {
            lines.push(format!("Admin API on http://{admin} (GET {ADMIN_PREFIX}, /metrics)"));
        }
        lines.push(match &self.query_log {
            None if self.cache => {
                "Query log: off (forwarded queries are not logged; their answers are cached in memory only)".to_owned()
            }
            None => "Query log: off (forwarded queries are neither logged nor stored)".to_owned(),
            Some(QueryLogConfig { destination, forwarded, .. }) => {
                let what = if *forwarded { "every query" } else { "local answers" };
                match destination {
                    LogDestination::Stdout => format!("Query log: on ({what}, JSON lines on standard output)"),
                    LogDestination::File(path) => format!("Query log: on ({what}, JSON lines in {})", path.display()),
                }
            }
        });
        lines
    }

    /// See [`Redirector::add_host`].
    pub fn add_host(&self, name: &str, addresses: &[IpAddr]) -> Result<(), RedirectError> {
        self.redirector.add_host(&self.handle, name, addresses)
    }

    /// See [`Redirector::delete_host`].
    pub fn delete_host(&self, name: &str) -> Result<(), RedirectError> {
        self.redirector.delete_host(&self.handle, name)
    }

    /// See [`Redirector::add_alias`].
    pub fn add_alias(&self, name: &str, target: &str) -> Result<(), RedirectError> {
        self.redirector.add_alias(&self.handle, name, target)
    }

    /// See [`Redirector::delete_alias`].
    pub fn delete_alias(&self, name: &str) -> Result<(), RedirectError> {
        self.redirector.delete_alias(&self.handle, name)
    }

    /// See [`Redirector::add_skip_pattern`].
    pub fn add_skip_pattern(&self, pattern: &str) -> Result<(), RedirectError> {
        self.redirector.add_skip_pattern(&self.handle, pattern)
    }

    /// See [`Redirector::delete_skip_pattern`].
    pub fn delete_skip_pattern(&self, pattern: &str) -> Result<(), RedirectError> {
        self.redirector.delete_skip_pattern(&self.handle, pattern)
    }

    /// Stop serving.
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }

    /// For binaries: serve until SIGTERM or Ctrl-C, reloading on SIGHUP.
    pub async fn run_until_signalled(self, on_reload: impl Fn(Result<(), String>)) -> std::io::Result<()> {
        self.handle.run_until_signalled(on_reload).await
    }
}

#[cfg(test)]
mod tests {
    use signpost_rules::{Answer, Client, Decision};
    use signpost_testkit::TempDir;
    use signpost_wire::{Class, RecordType};

    use super::*;

    fn decide<'r>(rules: &'r RuleSet, name: &str, qtype: RecordType) -> Decision<'r> {
        let client = Client::udp(IpAddr::from([127, 0, 0, 1]));
        let name: NameBuf = name.parse().expect("name");
        rules.decide_name(&name, qtype, Class::IN, &client)
    }

    fn is_local(rules: &RuleSet, name: &str) -> bool {
        matches!(decide(rules, name, RecordType::A), Decision::Local(_))
    }

    #[test]
    fn settings_parse_as_localstack_writes_them() {
        let mut settings = RedirectSettings::default();
        settings.set("DNS_ADDRESS", "127.0.0.1, 127.0.0.2").expect("addresses");
        assert_eq!(settings.bind_addresses(), Some(&[IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 2])][..]));
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
            domains = "example.test"
            ttl = 30
            upstream_timeout = "500ms"
            "#,
        )
        .expect("valid");
        assert_eq!(settings.port, 5353);
        assert_eq!(settings.server.as_ref().map(Vec::len), Some(2));
        assert_eq!(settings.effective_resolve_ipv6(), AddressSource::None);
        assert_eq!(settings.name_patterns_to_resolve_upstream.len(), 2);
        assert_eq!(settings.upstream_timeout, Duration::from_millis(500));
        assert!(toml::from_str::<RedirectSettings>("colour = 1").is_err());
        assert!(toml::from_str::<RedirectSettings>("resolve_ip = \"::1\"").is_err());
    }

    #[test]
    fn the_rule_set_redirects_filters_and_skips() {
        let mut settings = RedirectSettings::default();
        settings.set("DNS_LOCAL_NAME_PATTERNS", ".*(ecr|lambda).*.amazonaws.com").expect("patterns");
        settings.set("DNS_NAME_PATTERNS_TO_RESOLVE_UPSTREAM", r".*lambda\.eu-west-1.*").expect("skip");
        let redirector = Redirector::new(settings, RuleSetBuilder::new()).expect("builds");
        let rules = redirector.rule_set().expect("rules");
        assert!(is_local(&rules, "api.ecr.us-east-1.amazonaws.com"));
        assert!(is_local(&rules, "lambda.us-east-1.amazonaws.com"));
        assert!(!is_local(&rules, "lambda.eu-west-1.amazonaws.com"), "skip pattern");
        assert!(!is_local(&rules, "sqs.us-east-1.amazonaws.com"), "not matching DNS_LOCAL_NAME_PATTERNS");
        assert!(!is_local(&rules, "d111.cloudfront.net"), "not matching DNS_LOCAL_NAME_PATTERNS");
        assert!(is_local(&rules, "test.localhost.localstack.cloud"), "the emulator's name always resolves");
        assert!(!is_local(&rules, "www.example.com"));
        match decide(&rules, "Lambda.us-east-1.amazonaws.com", RecordType::A) {
            Decision::Local(local) => {
                assert_eq!(local.answer, Answer::AddressOfQuestion { address: [127, 0, 0, 1].into(), ttl: 60 });
            }
            other => panic!("{other:?}"),
        }
        match decide(&rules, "test.localhost.localstack.cloud", RecordType::MX) {
            Decision::Local(local) => assert!(local.is_nodata() && local.authority.len() == 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_patterns_name_their_variable() {
        let mut settings = RedirectSettings::default();
        settings.set("DNS_LOCAL_NAME_PATTERNS", "(unclosed").expect("split");
        let error = Redirector::new(settings, RuleSetBuilder::new()).expect_err("bad regex");
        assert!(error.to_string().starts_with("DNS_LOCAL_NAME_PATTERNS: invalid regular expression"), "{error}");
    }

    #[test]
    fn default_upstreams_skip_loops_and_follow_the_systemd_stub() {
        let own: SocketAddr = "127.0.0.1:53".parse().expect("addr");
        let dir = TempDir::new();
        let plain = dir.write("plain", "nameserver 127.0.0.1\nnameserver 192.0.2.1\nnameserver 127.0.0.9\n");
        let missing = PathBuf::from("/nonexistent/signpost/resolv.conf");
        let choice = system_upstreams(&plain, &missing, &[own]);
        assert_eq!(choice.servers, ["192.0.2.1:53".parse::<SocketAddr>().expect("addr")]);
        assert_eq!(choice.source, UpstreamSource::ResolvConf(plain.clone()));
        assert_eq!(choice.skipped.len(), 2);
        assert_eq!(choice.skipped[0].reason, "it is our own listening address");

        let stub = dir.write("stub", "nameserver 127.0.0.53\noptions edns0 trust-ad\n");
        let real = dir.write("real", "nameserver 192.0.2.7\nnameserver 127.0.0.1\n");
        let choice = system_upstreams(&stub, &real, &[own]);
        assert_eq!(choice.servers, ["192.0.2.7:53".parse::<SocketAddr>().expect("addr")]);
        assert_eq!(choice.source, UpstreamSource::SystemdResolved(real.clone()));
        assert!(choice.to_string().contains("systemd-resolved"), "{choice}");

        let only_loopback = dir.write("only_loopback", "nameserver 127.0.0.1\n");
        let choice = system_upstreams(&only_loopback, &real, &[own]);
        assert_eq!(choice.source, UpstreamSource::None, "127.0.0.1 is not systemd's stub");
        assert!(choice.to_string().starts_with("none"), "{choice}");

        let choice = system_upstreams(&missing, &missing, &[own]);
        assert_eq!(choice.source, UpstreamSource::None);

        let wildcard: SocketAddr = "0.0.0.0:53".parse().expect("addr");
        let lan = dir.write("lan", "nameserver 198.51.100.1\n");
        assert!(reaches_own_listener("127.0.0.1:53".parse().expect("a"), &[wildcard]));
        assert_eq!(system_upstreams(&lan, &missing, &[wildcard]).servers.len(), 1);
    }

    #[test]
    fn a_wildcard_listener_skips_this_machines_own_addresses() {
        // An address of this machine other than loopback: the one a UDP
        // socket would send from towards a documentation address (connect
        // sends nothing).
        let probe = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
        let local = probe.connect("192.0.2.1:53").and_then(|()| probe.local_addr()).map(|address| address.ip());
        // Without such an address the behaviour cannot be shown: fail, never pass silently.
        let local = match local {
            Ok(local @ IpAddr::V4(_)) if !local.is_loopback() && !local.is_unspecified() => local,
            other => panic!("this test needs a non-loopback IPv4 address with a route (got {other:?})"),
        };
        let wildcard: SocketAddr = "0.0.0.0:53".parse().expect("addr");
        let nameserver = SocketAddr::new(local, 53);
        let dir = TempDir::new();
        let lan = dir.write("lan", format!("nameserver {local}\nnameserver 198.51.100.1\n"));
        let missing = PathBuf::from("/nonexistent/signpost/resolv.conf");
        let choice = system_upstreams(&lan, &missing, &[wildcard]);
        assert_eq!(choice.servers, ["198.51.100.1:53".parse::<SocketAddr>().expect("addr")]);
        assert_eq!(choice.skipped.len(), 1);
        assert_eq!(choice.skipped[0].address, nameserver);
        assert_eq!(choice.skipped[0].reason, "it is our own listening address");
        // Another port, or a specific listen address, is not reached that way.
        let other_port: SocketAddr = "0.0.0.0:5353".parse().expect("addr");
        assert_eq!(loop_free_nameservers(&[nameserver], &lan, &[other_port]).0, [nameserver]);
        let loopback_only: SocketAddr = "127.0.0.1:53".parse().expect("addr");
        assert_eq!(loop_free_nameservers(&[nameserver], &lan, &[loopback_only]).0, [nameserver]);
    }

    #[test]
    fn the_upstream_group_fails_over_in_order() {
        let mut settings = RedirectSettings::default();
        settings.set("DNS_SERVER", "192.0.2.1,192.0.2.2").expect("servers");
        let choice = settings.upstreams(&[]);
        let group = settings.upstream_group(&choice).expect("group");
        assert_eq!(group.policy, Policy::Sequential);
        assert!(group.retry_on.servfail && group.retry_on.timeout && group.retry_on.unreachable);
        assert_eq!(group.servers.len(), 2);
        let none = UpstreamChoice { servers: Vec::new(), source: UpstreamSource::None, skipped: Vec::new() };
        assert!(settings.upstream_group(&none).is_none());
    }

    #[test]
    fn admin_paths_decode() {
        assert_eq!(percent_decode("a%2Eb+c"), "a.b c");
        assert_eq!(query_parameter(Some("x=1&pattern=.%2A%5C.s3"), "pattern").as_deref(), Some(r".*\.s3"));
    }
}
