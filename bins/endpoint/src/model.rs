//! The model as read from TOML: VPCs, private hosted zones, resolver rules,
//! inbound and outbound endpoints, query logging configurations and limits.
//! docs/endpoint.md describes every field.

use core::fmt;
use core::str::FromStr;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use signpost_rules::Location;
use signpost_rules::config::RulesConfig;

use crate::error::EndpointError;
use crate::protocols::EndpointProtocol;
use signpost_server::{AdminConfig, CacheConfig};

/// An address with an optional port: `127.0.1.2`, `127.0.1.2:5353`, `[::1]:53`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct HostPort {
    /// The address.
    pub ip: IpAddr,
    /// The port, when given.
    pub port: Option<u16>,
}

impl HostPort {
    /// The socket address, with `default_port` when none was given.
    pub fn with_default_port(self, default_port: u16) -> SocketAddr {
        SocketAddr::new(self.ip, self.port.unwrap_or(default_port))
    }
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(address) = text.parse::<SocketAddr>() {
            return Ok(Self { ip: address.ip(), port: Some(address.port()) });
        }
        text.parse::<IpAddr>()
            .map(|ip| Self { ip, port: None })
            .map_err(|_| format!("invalid address {text:?}: expected an IP address, optionally with :port"))
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}", SocketAddr::new(self.ip, port)),
            None => write!(f, "{}", self.ip),
        }
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The whole configuration of signpost-endpoint.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// The AWS account id query-log lines name (`account_id`; default `000000000000`).
    #[serde(default = "default_account_id")]
    pub account_id: String,
    /// The AWS region query-log lines name (`region`; default `us-east-1`).
    #[serde(default = "default_region")]
    pub region: String,
    /// The port VPC resolvers listen on unless a VPC's `resolver` gives one (default 53).
    #[serde(default = "default_do53_port")]
    pub resolver_port: u16,
    /// UDP worker tasks per UDP listener (default: one per core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_workers: Option<usize>,
    /// The built-in recursive default: where names no rule or zone takes go.
    #[serde(default)]
    pub recursive: RecursiveConfig,
    /// Default certificate and key for DoH on inbound endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// Route 53's packet and query rate limits.
    #[serde(default)]
    pub aws_limits: AwsLimits,
    /// The answer cache of the VPC resolvers.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Admin and metrics HTTP listener (off unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminConfig>,
    /// VPCs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vpcs: Vec<VpcConfig>,
    /// Private hosted zones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub private_hosted_zones: Vec<HostedZoneConfig>,
    /// Resolver rules (FORWARD and SYSTEM).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolver_rules: Vec<ResolverRuleConfig>,
    /// Inbound endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound_endpoints: Vec<InboundEndpointConfig>,
    /// Outbound endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound_endpoints: Vec<OutboundEndpointConfig>,
    /// Query logging configurations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_logging: Vec<QueryLoggingConfig>,
    #[serde(skip)]
    pub(crate) source: Option<Arc<Source>>,
}

impl Default for EndpointConfig {
    /// What an empty file reads as.
    fn default() -> Self {
        Self {
            account_id: default_account_id(),
            region: default_region(),
            resolver_port: default_do53_port(),
            udp_workers: None,
            recursive: RecursiveConfig::default(),
            tls: None,
            aws_limits: AwsLimits::default(),
            cache: CacheConfig::default(),
            admin: None,
            vpcs: Vec::new(),
            private_hosted_zones: Vec::new(),
            resolver_rules: Vec::new(),
            inbound_endpoints: Vec::new(),
            outbound_endpoints: Vec::new(),
            query_logging: Vec::new(),
            source: None,
        }
    }
}

/// The file a configuration was read from, and a locator of its fields
/// (the rules crate's, which reads TOML paths such as `vpcs[1].cidrs`).
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) file: PathBuf,
    locator: RulesConfig,
}

pub(crate) fn default_account_id() -> String {
    "000000000000".to_string()
}

pub(crate) fn default_region() -> String {
    "us-east-1".to_string()
}

pub(crate) fn default_do53_port() -> u16 {
    53
}

fn default_doh_port() -> u16 {
    443
}

fn default_doh_path() -> String {
    "/dns-query".to_string()
}

/// `[recursive]`: the resolver behind the built-in recursive default (Route
/// 53's "Internet Resolver" rule), also used by SYSTEM rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecursiveConfig {
    /// Servers (`ip` or `ip:port`, Do53).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<HostPort>,
    /// Or the nameservers of this resolv.conf (default /etc/resolv.conf when no servers are given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolv_conf: Option<PathBuf>,
}

/// `[tls]`: certificate and key in PEM files.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// `[aws_limits]`: the service's rate limits, on by default.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsLimits {
    /// Whether the limits apply.
    pub enabled: bool,
    /// Packets per second each client address may send to VPC resolvers
    /// (Route 53: 1024 per network interface).
    pub vpc_resolver_pps_per_client: u32,
    /// Queries per second each inbound endpoint address accepts, over UDP,
    /// TCP and DoH together (Route 53: about 10,000 per IP address).
    pub inbound_qps_per_address: u32,
}

impl Default for AwsLimits {
    fn default() -> Self {
        Self { enabled: true, vpc_resolver_pps_per_client: 1024, inbound_qps_per_address: 10_000 }
    }
}

/// `[[vpcs]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VpcConfig {
    /// Its id (`vpc-...`); also the query log's `vpc_id`.
    pub id: String,
    /// Its CIDR blocks: clients whose source address is in one belong to it.
    pub cidrs: Vec<IpNet>,
    /// Where its VPC resolver listens: `ip` or `ip:port` (default: the
    /// `.2` address of the first IPv4 CIDR, port `resolver_port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<HostPort>,
}

/// `[[private_hosted_zones]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostedZoneConfig {
    /// The zone's name (its apex).
    pub name: String,
    /// Its id (default: the name); needed when two zones share a name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The VPCs it is associated with (at least one).
    pub vpcs: Vec<String>,
    /// A master file (relative to the configuration file's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Records in presentation format, names relative to the zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<String>,
    /// TTL of inline records that give none (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
}

/// The type of a resolver rule.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RuleType {
    /// Forward the domain's queries to the rule's targets through its outbound endpoint.
    #[serde(alias = "forward")]
    Forward,
    /// Resolve the domain with the VPC resolver even under a forwarded domain.
    #[serde(alias = "system")]
    System,
    /// Route 53's built-in rule type; it cannot be created (rejected with a reason).
    #[serde(alias = "recursive")]
    Recursive,
}

impl RuleType {
    /// `FORWARD`, `SYSTEM` or `RECURSIVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forward => "FORWARD",
            Self::System => "SYSTEM",
            Self::Recursive => "RECURSIVE",
        }
    }
}

/// `[[resolver_rules]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverRuleConfig {
    /// Its id (`rslvr-rr-...`).
    pub id: String,
    /// `FORWARD` or `SYSTEM`.
    #[serde(rename = "type")]
    pub rule_type: RuleType,
    /// The domain: it matches the name and every name below it.
    pub domain: String,
    /// FORWARD: the outbound endpoint queries leave through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_endpoint: Option<String>,
    /// FORWARD: where queries go (all IPv4 or all IPv6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetConfig>,
    /// The VPCs it is associated with; a rule associated with none has no effect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vpcs: Vec<String>,
}

/// One target of a FORWARD rule.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The address.
    pub ip: IpAddr,
    /// The port (default 53 for Do53, 443 for DoH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Do53 (default) or DoH; the outbound endpoint must offer it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<EndpointProtocol>,
    /// DoH: the name to send as SNI and check the certificate against
    /// (Route 53's ServerNameIndication); without it the certificate must name the IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// DoH: the path (default /dns-query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doh_path: Option<String>,
}

impl TargetConfig {
    /// The protocol, Do53 unless given.
    pub fn protocol(&self) -> EndpointProtocol {
        self.protocol.unwrap_or(EndpointProtocol::Do53)
    }

    /// The socket address, with the protocol's default port.
    pub fn address(&self) -> SocketAddr {
        let default = if self.protocol() == EndpointProtocol::Do53 { default_do53_port() } else { default_doh_port() };
        SocketAddr::new(self.ip, self.port.unwrap_or(default))
    }
}

/// `[[inbound_endpoints]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InboundEndpointConfig {
    /// Its id (`rslvr-in-...`).
    pub id: String,
    /// The VPC whose view its queries use.
    pub vpc: String,
    /// Its addresses, two or more ("one per availability zone").
    pub addresses: Vec<IpAddr>,
    /// Do53, DoH, DoH-FIPS, Do53+DoH or Do53+DoH-FIPS (default Do53).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<EndpointProtocol>,
    /// Do53 port (default 53).
    #[serde(default = "default_do53_port")]
    pub port: u16,
    /// DoH port (default 443).
    #[serde(default = "default_doh_port")]
    pub doh_port: u16,
    /// DoH path (default /dns-query).
    #[serde(default = "default_doh_path")]
    pub doh_path: String,
    /// DoH certificate chain (default: `[tls]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// DoH private key (default: `[tls]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Client networks allowed (its security group); default loopback and private ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<IpNet>>,
}

/// `[[outbound_endpoints]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundEndpointConfig {
    /// Its id (`rslvr-out-...`).
    pub id: String,
    /// The VPC it sits in.
    pub vpc: String,
    /// Do53, DoH or Do53+DoH (default Do53).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<EndpointProtocol>,
    /// DoH: a PEM file of CA certificates trusted besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// DoH: trust only `ca_file`.
    #[serde(default)]
    pub ignore_system_roots: bool,
}

/// `[[query_logging]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueryLoggingConfig {
    /// Its id (`rqlc-...`).
    pub id: String,
    /// `stdout` or a file path (relative to the configuration file's directory).
    pub destination: String,
    /// The VPCs whose queries it logs (inbound endpoint queries count for the endpoint's VPC).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vpcs: Vec<String>,
}

impl EndpointConfig {
    /// Parse TOML text read from `file` (named in errors).
    pub fn from_toml(text: &str, file: impl Into<PathBuf>) -> Result<Self, EndpointError> {
        let file = file.into();
        let mut config: Self = toml::from_str(text).map_err(|error| {
            let offset = error.span().map_or(0, |span| span.start);
            EndpointError::from(signpost_rules::Error::Toml {
                at: location_at(&file, text, offset),
                message: error.message().trim_end().to_string(),
            })
        })?;
        let mut locator = RulesConfig::default();
        locator.set_source(&file, text, "");
        config.source = Some(Arc::new(Source { file, locator }));
        Ok(config)
    }

    /// Read a TOML file.
    pub fn load(path: &Path) -> Result<Self, EndpointError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| signpost_rules::Error::io(Location::default(), path, source))?;
        Self::from_toml(&text, path)
    }

    /// The file this configuration was read from, if any.
    pub fn file(&self) -> Option<&Path> {
        self.source.as_deref().map(|source| source.file.as_path())
    }

    /// Where a field (`resolver_rules[2].targets`) is in the source, as far as known.
    pub fn locate(&self, field: &str) -> Location {
        match &self.source {
            Some(source) => source.locator.locate(field),
            None => Location::field(field),
        }
    }
}

fn location_at(file: &Path, text: &str, offset: usize) -> Location {
    let before = text.get(..offset.min(text.len())).unwrap_or_default();
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    let column = before.get(line_start..).map_or(0, |rest| rest.chars().count()) + 1;
    Location::in_file(file, line, column)
}
