//! The model as read from TOML: VPCs, private hosted zones, resolver rules,
//! inbound and outbound endpoints, query logging configurations and limits.
//! docs/endpoint.md describes every field.

use core::fmt;
use core::str::FromStr;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use signpost_rules::Location;
use signpost_rules::config::RulesConfig;

use crate::error::EndpointError;
use crate::protocols::EndpointProtocol;
use signpost_server::{AdminConfig, CacheConfig, DnstapConfig, HealthConfig, ReadyConfig};

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
    /// The port VPC resolvers listen on unless a VPC's `resolver` gives one,
    /// and the Do53 port of inbound endpoints that give none (default 53).
    #[serde(default = "default_do53_port")]
    pub resolver_port: u16,
    /// The DoH port of inbound endpoints that give none (default 443).
    #[serde(default = "default_doh_port")]
    pub doh_port: u16,
    /// UDP worker tasks per UDP listener (default: one per core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_workers: Option<usize>,
    /// The built-in recursive default: where names no rule or zone takes go.
    #[serde(default)]
    pub recursive: RecursiveConfig,
    /// `[dnssec]`: trust anchors for VPCs that validate.
    #[serde(default, skip_serializing_if = "DnssecSettings::is_default")]
    pub dnssec: DnssecSettings,
    /// Default certificate and key for DoH on inbound endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// CA certificates (PEM) outbound endpoints without their own `ca_file`
    /// trust for DoH targets, besides the system's roots: the relaxation
    /// that lets API-created endpoints reach a test CA's server (AWS
    /// requires a publicly trusted certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_ca_file: Option<PathBuf>,
    /// Route 53's packet and query rate limits.
    #[serde(default)]
    pub aws_limits: AwsLimits,
    /// The answer cache of the VPC resolvers.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Admin and metrics HTTP listener (off unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminConfig>,
    /// `/health` (liveness) and the lame-duck period after SIGTERM, as
    /// CoreDNS's `health` plugin (off unless given; read at start-up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthConfig>,
    /// `/ready` (readiness), as CoreDNS's `ready` plugin (off unless given; read at start-up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<ReadyConfig>,
    /// dnstap output of every endpoint's queries and answers to a collector
    /// (off unless given; read at start-up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnstap: Option<DnstapConfig>,
    /// The AWS API's service quotas (on by default, with AWS's values).
    #[serde(default)]
    pub quotas: Quotas,
    /// How the AWS API reports changes in progress.
    #[serde(default)]
    pub api: ApiSettings,
    /// VPCs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vpcs: Vec<VpcConfig>,
    /// Subnets of the VPCs (where endpoint addresses are taken from).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<SubnetConfig>,
    /// Security groups of the VPCs (endpoints name them; not enforced).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<SecurityGroupConfig>,
    /// TSIG keys (RFC 8945) that secondary private hosted zones name (a
    /// Signpost extension; settings, never stored in the state directory).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tsig_keys: Vec<TsigKeyConfig>,
    /// Private hosted zones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub private_hosted_zones: Vec<HostedZoneConfig>,
    /// Public hosted zones: kept and listed, never served to VPCs (the
    /// recursive default stands for the internet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_hosted_zones: Vec<HostedZoneConfig>,
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
    /// DNS Firewall domain lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub firewall_domain_lists: Vec<FirewallDomainListConfig>,
    /// DNS Firewall rule groups and their rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub firewall_rule_groups: Vec<FirewallRuleGroupConfig>,
    /// Associations of DNS Firewall rule groups with VPCs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub firewall_associations: Vec<FirewallAssociationConfig>,
    #[serde(skip)]
    pub(crate) source: Option<Arc<Source>>,
    /// Where the running process keeps files (not part of the model).
    #[serde(skip)]
    pub(crate) runtime: RuntimeContext,
}

/// What compiling needs from the running process rather than the model:
/// where ARN query-log destinations write, and certificates generated for
/// DoH endpoints that were given none.
#[derive(Clone, Debug, Default)]
pub(crate) struct RuntimeContext {
    /// The directory relative paths are relative to, kept when the model
    /// is changed through the API (which drops the file's locator).
    pub(crate) base_dir: Option<PathBuf>,
    /// The state directory (or a temporary one): ARN destinations write under it.
    pub(crate) files_dir: Option<PathBuf>,
    /// Certificate and key per inbound endpoint id, signed by the state directory's CA.
    pub(crate) generated_tls: BTreeMap<String, TlsFiles>,
    /// Check only: DoH endpoints without a certificate will get one when served.
    pub(crate) certificates_later: bool,
    /// A running endpoint's model: a domain list whose file cannot be read
    /// is unavailable to the firewall instead of an error.
    pub(crate) lists_may_be_unavailable: bool,
    /// Built zones by id, with the records they were built from.
    pub(crate) zone_cache: Option<ZoneCache>,
    /// The upstream groups in force and their built upstreams: a change
    /// that leaves the groups as they are keeps them (and their connections).
    pub(crate) upstreams_in_force:
        Option<(Arc<Vec<signpost_upstream::GroupConfig>>, Arc<signpost_upstream::Upstreams>)>,
    /// Skip the per-VPC route listing (`check-config`'s), which a running
    /// endpoint does not need.
    pub(crate) skip_routes: bool,
    /// The VPC ids, sorted, once a compile of a large model has needed them.
    pub(crate) vpc_ids: VpcIds,
    /// Secondary zones past their expire time: answered SERVFAIL.
    pub(crate) expired_zones: BTreeSet<String>,
    /// Zone transfers and NOTIFY, asked before the rules (secondary zones take NOTIFY here).
    pub(crate) transfers: Option<Arc<signpost_server::transfer::ZoneTransfers>>,
}

/// A compile's sorted VPC ids. A copy of the model starts without them
/// (the copy is about to be changed).
#[derive(Debug, Default)]
pub(crate) struct VpcIds(pub(crate) std::sync::OnceLock<Vec<String>>);

impl Clone for VpcIds {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// A built zone and what it was built from (the same shared records, name
/// and default TTL give the same zone).
#[derive(Clone, Debug)]
pub(crate) struct CachedZone {
    pub(crate) records: Arc<Vec<String>>,
    pub(crate) name: String,
    pub(crate) ttl: Option<u32>,
    pub(crate) zone: Arc<signpost_rules::Zone>,
}

/// Built zones by id.
pub(crate) type ZoneCache = Arc<std::sync::Mutex<std::collections::HashMap<String, CachedZone>>>;

impl Default for EndpointConfig {
    /// What an empty file reads as.
    fn default() -> Self {
        Self {
            account_id: default_account_id(),
            region: default_region(),
            resolver_port: default_do53_port(),
            doh_port: default_doh_port(),
            udp_workers: None,
            recursive: RecursiveConfig::default(),
            dnssec: DnssecSettings::default(),
            tls: None,
            outbound_ca_file: None,
            aws_limits: AwsLimits::default(),
            cache: CacheConfig::default(),
            admin: None,
            health: None,
            ready: None,
            dnstap: None,
            quotas: Quotas::default(),
            api: ApiSettings::default(),
            vpcs: Vec::new(),
            subnets: Vec::new(),
            security_groups: Vec::new(),
            tsig_keys: Vec::new(),
            private_hosted_zones: Vec::new(),
            public_hosted_zones: Vec::new(),
            resolver_rules: Vec::new(),
            inbound_endpoints: Vec::new(),
            outbound_endpoints: Vec::new(),
            query_logging: Vec::new(),
            firewall_domain_lists: Vec::new(),
            firewall_rule_groups: Vec::new(),
            firewall_associations: Vec::new(),
            source: None,
            runtime: RuntimeContext::default(),
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

pub(crate) fn default_doh_port() -> u16 {
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

/// `[api]`: how the AWS API reports changes in progress.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// How long a new endpoint stays `CREATING` (then `OPERATIONAL`), an
    /// association `CREATING` (then `COMPLETE` or `ACTIVE`) and a Route 53
    /// change `PENDING` (then `INSYNC`), in milliseconds. The DNS change
    /// itself is live when the call returns.
    pub status_delay_ms: u64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self { status_delay_ms: 200 }
    }
}

/// `[quotas]`: the service quotas the AWS API enforces, with AWS's default
/// values; `enabled = false` lifts them all.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// Whether the quotas apply.
    pub enabled: bool,
    /// EC2: VPCs per Region (5).
    pub vpcs_per_region: u32,
    /// EC2: subnets per VPC (200).
    pub subnets_per_vpc: u32,
    /// EC2: IPv4 CIDR blocks per VPC (5).
    pub cidr_blocks_per_vpc: u32,
    /// EC2: security groups per Region (2,500).
    pub security_groups_per_region: u32,
    /// Route 53 Resolver: endpoints per Region (4).
    pub resolver_endpoints_per_region: u32,
    /// Route 53 Resolver: IP addresses per endpoint (6).
    pub ip_addresses_per_endpoint: u32,
    /// Route 53 Resolver: rules per Region (1,000).
    pub resolver_rules_per_region: u32,
    /// Route 53 Resolver: associations between rules and VPCs per Region (2,000).
    pub rule_associations_per_region: u32,
    /// Route 53 Resolver: target IP addresses per rule (6).
    pub target_ips_per_rule: u32,
    /// Route 53 Resolver: query logging configurations per Region (20).
    pub query_log_configs_per_region: u32,
    /// Route 53 Resolver: VPCs associated with one query logging configuration (100).
    pub vpcs_per_query_log_config: u32,
    /// Route 53: hosted zones (500).
    pub hosted_zones: u32,
    /// Route 53: records per hosted zone (10,000).
    pub records_per_hosted_zone: u32,
    /// Route 53: VPCs associated with one private hosted zone (300).
    pub vpcs_per_hosted_zone: u32,
    /// DNS Firewall: domain lists per Region (1,000).
    pub firewall_domain_lists_per_region: u32,
    /// DNS Firewall: domains in one domain list (100,000).
    pub domains_per_firewall_domain_list: u32,
    /// DNS Firewall: rule groups per Region (1,000).
    pub firewall_rule_groups_per_region: u32,
    /// DNS Firewall: rules in one rule group (100).
    pub rules_per_firewall_rule_group: u32,
    /// DNS Firewall: rule groups associated with one VPC (5).
    pub firewall_rule_group_associations_per_vpc: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            enabled: true,
            vpcs_per_region: 5,
            subnets_per_vpc: 200,
            cidr_blocks_per_vpc: 5,
            security_groups_per_region: 2500,
            resolver_endpoints_per_region: 4,
            ip_addresses_per_endpoint: 6,
            resolver_rules_per_region: 1000,
            rule_associations_per_region: 2000,
            target_ips_per_rule: 6,
            query_log_configs_per_region: 20,
            vpcs_per_query_log_config: 100,
            hosted_zones: 500,
            records_per_hosted_zone: 10_000,
            vpcs_per_hosted_zone: 300,
            firewall_domain_lists_per_region: 1000,
            domains_per_firewall_domain_list: 100_000,
            firewall_rule_groups_per_region: 1000,
            rules_per_firewall_rule_group: 100,
            firewall_rule_group_associations_per_vpc: 5,
        }
    }
}

/// A VPC's DNSSEC validation setting, as `UpdateResolverDnssecConfig` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DnssecValidation {
    /// Validate.
    Enable,
    /// Do not validate (the service's default).
    Disable,
    /// Take the setting of the resource that configures the VPC (a Route 53
    /// Profile); Signpost has no profiles, so the VPC does not validate.
    UseLocalResourceSetting,
}

impl DnssecValidation {
    /// Whether answers are validated.
    pub fn validates(self) -> bool {
        self == Self::Enable
    }
}

/// `[dnssec]`: how VPCs with DNSSEC validation enabled validate.
///
/// Route 53 Resolver validates what it resolves recursively for public
/// names; answers of FORWARD rules come from resolvers that "must apply
/// DNSSEC validation" themselves, so they are not validated. The resolver
/// ignores the client's DO and CD bits: a bogus answer is SERVFAIL, a
/// secure one goes out without AD and without DNSSEC records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnssecSettings {
    /// DS or DNSKEY records the chain starts from, e.g.
    /// `". IN DS 20326 8 2 E06D44B8..."` (default: the root's KSK-2017 and KSK-2024).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_anchors: Vec<String>,
    /// Files of DS or DNSKEY records in zone-file form, or unbound's
    /// `auto-trust-anchor-file` state files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_anchor_files: Vec<PathBuf>,
    /// Seconds a bogus answer is kept as SERVFAIL (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bogus_ttl: Option<u32>,
}

impl DnssecSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Tags: key to value.
pub type Tags = BTreeMap<String, String>;

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
    /// EC2's `enableDnsSupport` (default true); when false the VPC
    /// resolver does not listen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_support: Option<bool>,
    /// EC2's `enableDnsHostnames` (default false); when true the VPC's
    /// addresses have EC2 names (`ip-10-0-0-5.ec2.internal`) and PTR records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_hostnames: Option<bool>,
    /// DNS Firewall's `FirewallFailOpen` for the VPC (default false: fail
    /// closed): whether a rule that cannot be evaluated (its domain list's
    /// file is gone) is skipped, or answers the queries that reach it SERVFAIL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall_fail_open: Option<bool>,
    /// Route 53 Resolver's AutodefinedReverse (default true): the reverse
    /// zones of private space and of the VPC's blocks are answered locally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autodefined_reverse: Option<bool>,
    /// Route 53 Resolver's DNSSEC validation setting (`UpdateResolverDnssecConfig`;
    /// default disabled): `"enable"`, `"disable"` or
    /// `"use_local_resource_setting"`. When enabled, answers of the
    /// recursive default to the VPC's queries are validated (see [`DnssecSettings`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnssec_validation: Option<DnssecValidation>,
    /// Its tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: Tags,
}

impl VpcConfig {
    /// A VPC with these blocks and nothing else set.
    pub fn new(id: impl Into<String>, cidrs: Vec<IpNet>) -> Self {
        Self {
            id: id.into(),
            cidrs,
            resolver: None,
            dns_support: None,
            dns_hostnames: None,
            firewall_fail_open: None,
            autodefined_reverse: None,
            dnssec_validation: None,
            tags: Tags::new(),
        }
    }
}

/// `[[subnets]]`: a subnet of a VPC.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetConfig {
    /// Its id (`subnet-...`).
    pub id: String,
    /// Its VPC.
    pub vpc: String,
    /// Its block, inside one of the VPC's.
    pub cidr: IpNet,
    /// Its IPv6 block beside `cidr` (EC2's `Ipv6CidrBlock`), inside one of
    /// the VPC's: where IPV6 and DUALSTACK endpoints take IPv6 addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_cidr: Option<IpNet>,
    /// Its availability zone (default the region's `a` zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Its tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: Tags,
}

/// `[[security_groups]]`: a security group of a VPC. Endpoints name them;
/// the address allow-list (`allow`) is what filters clients.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupConfig {
    /// Its id (`sg-...`).
    pub id: String,
    /// Its VPC.
    pub vpc: String,
    /// Its name, unique in the VPC.
    pub name: String,
    /// Its description.
    #[serde(default)]
    pub description: String,
    /// Its tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: Tags,
}

/// An association of a resource with a VPC: in TOML a VPC id
/// (`"vpc-a"`), or a table that also keeps the AWS API's association id,
/// name and creation time (`{ vpc = "vpc-a", id = "rslvr-rrassoc-...", name = "..." }`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VpcAssociation {
    /// The VPC.
    pub vpc: String,
    /// The association's id (the API's `rslvr-rrassoc-...`, `rslvr-qlcassoc-...`).
    pub id: Option<String>,
    /// The association's name.
    pub name: Option<String>,
    /// When it was made (RFC 3339).
    pub created: Option<String>,
}

impl VpcAssociation {
    /// An association with `vpc` and nothing else recorded.
    pub fn new(vpc: impl Into<String>) -> Self {
        Self { vpc: vpc.into(), id: None, name: None, created: None }
    }
}

impl From<&str> for VpcAssociation {
    fn from(vpc: &str) -> Self {
        Self::new(vpc)
    }
}

impl PartialEq<str> for VpcAssociation {
    fn eq(&self, vpc: &str) -> bool {
        self.vpc == vpc
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct VpcAssociationTable {
    vpc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum VpcAssociationForm {
    Id(String),
    Table(VpcAssociationTable),
}

impl Serialize for VpcAssociation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.id.is_none() && self.name.is_none() && self.created.is_none() {
            return serializer.serialize_str(&self.vpc);
        }
        VpcAssociationTable {
            vpc: self.vpc.clone(),
            id: self.id.clone(),
            name: self.name.clone(),
            created: self.created.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for VpcAssociation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match VpcAssociationForm::deserialize(deserializer)? {
            VpcAssociationForm::Id(vpc) => Self::new(vpc),
            VpcAssociationForm::Table(table) => {
                Self { vpc: table.vpc, id: table.id, name: table.name, created: table.created }
            }
        })
    }
}

/// One address of an endpoint (one network interface): in TOML an IP
/// (`"127.0.1.10"`), or a table that also names its IPv6 address (a
/// DUALSTACK endpoint's), its subnet and the API's address id
/// (`{ ip = "127.0.1.10", ipv6 = "::1", subnet = "subnet-...", id = "rni-..." }`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointAddress {
    /// The address: IPv4 for IPV4 and DUALSTACK endpoints, IPv6 for IPV6 ones.
    pub ip: IpAddr,
    /// A DUALSTACK endpoint's IPv6 address beside `ip`.
    pub ipv6: Option<Ipv6Addr>,
    /// The subnet it is taken from (the API requires one).
    pub subnet: Option<String>,
    /// The API's id of the address (`rni-...`).
    pub id: Option<String>,
}

impl EndpointAddress {
    /// Its addresses: `ip`, then `ipv6` when it has one.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        std::iter::once(self.ip).chain(self.ipv6.map(IpAddr::V6))
    }

    /// Its address of the family of `target` (IPv6 or not), if it has one.
    pub fn ip_towards(&self, target: IpAddr) -> Option<IpAddr> {
        self.ips().find(|ip| ip.is_ipv6() == target.is_ipv6())
    }
}

impl From<IpAddr> for EndpointAddress {
    fn from(ip: IpAddr) -> Self {
        Self { ip, ipv6: None, subnet: None, id: None }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct EndpointAddressTable {
    ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ipv6: Option<Ipv6Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EndpointAddressForm {
    Ip(IpAddr),
    Table(EndpointAddressTable),
}

impl Serialize for EndpointAddress {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.ipv6.is_none() && self.subnet.is_none() && self.id.is_none() {
            return serializer.collect_str(&self.ip);
        }
        EndpointAddressTable { ip: self.ip, ipv6: self.ipv6, subnet: self.subnet.clone(), id: self.id.clone() }
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for EndpointAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match EndpointAddressForm::deserialize(deserializer)? {
            EndpointAddressForm::Ip(ip) => Self::from(ip),
            EndpointAddressForm::Table(table) => {
                Self { ip: table.ip, ipv6: table.ipv6, subnet: table.subnet, id: table.id }
            }
        })
    }
}

/// Route 53 Resolver's `ResolverEndpointType`: the address families an
/// endpoint's network interfaces have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum EndpointType {
    /// IPv4 addresses only (AWS's default).
    #[serde(rename = "IPV4")]
    Ipv4,
    /// IPv6 addresses only.
    #[serde(rename = "IPV6")]
    Ipv6,
    /// An IPv4 and an IPv6 address on each interface.
    #[serde(rename = "DUALSTACK")]
    Dualstack,
}

impl EndpointType {
    /// `IPV4`, `IPV6` or `DUALSTACK`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ipv4 => "IPV4",
            Self::Ipv6 => "IPV6",
            Self::Dualstack => "DUALSTACK",
        }
    }

    /// The type an endpoint has: `given`, or else what its first address
    /// says (an IPv6 `ip`: IPV6; an `ipv6` beside it: DUALSTACK; IPV4 otherwise).
    pub fn of(given: Option<Self>, addresses: &[EndpointAddress]) -> Self {
        given.unwrap_or_else(|| match addresses.first() {
            Some(address) if address.ip.is_ipv6() => Self::Ipv6,
            Some(address) if address.ipv6.is_some() => Self::Dualstack,
            _ => Self::Ipv4,
        })
    }

    /// Whether an endpoint of this type sends to (or is reached over) IPv6
    /// when `ipv6`, IPv4 otherwise.
    pub fn carries(self, ipv6: bool) -> bool {
        match self {
            Self::Ipv4 => !ipv6,
            Self::Ipv6 => ipv6,
            Self::Dualstack => true,
        }
    }

    /// What is wrong with `address` on an endpoint of this type, if anything.
    pub fn address_problem(self, address: &EndpointAddress) -> Option<&'static str> {
        match (self, address.ip, address.ipv6) {
            (Self::Ipv4, IpAddr::V4(_), None) | (Self::Ipv6, IpAddr::V6(_), None) => None,
            (Self::Dualstack, IpAddr::V4(_), Some(_)) => None,
            (Self::Ipv4, _, _) => Some("an IPV4 endpoint's addresses are IPv4 addresses, without ipv6"),
            (Self::Ipv6, _, _) => Some("an IPV6 endpoint's addresses are IPv6 addresses (in ip), without ipv6"),
            (Self::Dualstack, IpAddr::V6(_), _) => {
                Some("a DUALSTACK endpoint's address has its IPv4 address in ip and its IPv6 address in ipv6")
            }
            (Self::Dualstack, _, None) => Some("a DUALSTACK endpoint's addresses each need an ipv6 address"),
        }
    }
}

impl FromStr for EndpointType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "IPV4" => Ok(Self::Ipv4),
            "IPV6" => Ok(Self::Ipv6),
            "DUALSTACK" => Ok(Self::Dualstack),
            other => Err(format!("{other} is not a ResolverEndpointType (IPV4, IPV6 or DUALSTACK)")),
        }
    }
}

/// `[[private_hosted_zones]]` and `[[public_hosted_zones]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostedZoneConfig {
    /// The zone's name (its apex).
    pub name: String,
    /// Its id (default: the name); needed when two zones share a name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The VPCs it is associated with (private zones: at least one; public zones: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vpcs: Vec<VpcAssociation>,
    /// A master file (relative to the configuration file's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Records in presentation format, names relative to the zone (shared
    /// between copies of the model, so copying it does not copy them).
    #[serde(default, skip_serializing_if = "records_are_empty")]
    pub records: Arc<Vec<String>>,
    /// TTL of inline records that give none (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// Route 53's `CallerReference` (unique per zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_reference: Option<String>,
    /// Route 53's `Comment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Its tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: Tags,
    /// Follow an on-premises primary by zone transfer (a Signpost
    /// extension: the whitepaper's "Secondary DNS in an Amazon VPC").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<SecondaryConfig>,
    /// Give the zone out by AXFR/IXFR to on-premises secondaries and tell
    /// them of each change by NOTIFY (a Signpost extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<TransferOutConfig>,
}

/// The tag that makes a hosted zone created through the API a secondary:
/// its primaries, separated by spaces or commas (`192.0.2.53 192.0.2.54:5300`).
pub const SECONDARY_PRIMARIES_TAG: &str = "signpost:secondary-primaries";
/// The tag naming the `[[tsig_keys]]` entry a secondary signs its transfers with.
pub const SECONDARY_TSIG_KEY_TAG: &str = "signpost:secondary-tsig-key";

/// `[private_hosted_zones.secondary]`: where a private hosted zone copies
/// its records from.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecondaryConfig {
    /// The primaries (port 53 unless given), asked in order.
    pub primaries: Vec<HostPort>,
    /// The name of a `[[tsig_keys]]` entry: transfers and NOTIFY are signed with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsig_key: Option<String>,
    /// Who else may send NOTIFY for the zone (the primaries always may).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_notify: Vec<IpNet>,
}

pub use signpost_server::transfer::TsigKeyConfig;

/// The tag that gives a hosted zone created through the API out by
/// transfer: the networks or addresses allowed, separated by spaces or
/// commas (`10.0.0.0/8 192.0.2.53`).
pub const TRANSFER_ALLOW_TAG: &str = "signpost:transfer-allow";
/// The tag naming the `[[tsig_keys]]` entry transfers out must be signed with (NOTIFY is signed with it too).
pub const TRANSFER_TSIG_KEY_TAG: &str = "signpost:transfer-tsig-key";
/// The tag listing the secondaries told by NOTIFY of each change (`192.0.2.53 192.0.2.54:5300`).
pub const TRANSFER_NOTIFY_TAG: &str = "signpost:transfer-notify";

/// `[private_hosted_zones.transfer]`: who may copy a private hosted zone
/// by zone transfer, and who is told when it changes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransferOutConfig {
    /// Networks or addresses that may transfer the zone (over TCP, through
    /// any of the endpoint's listeners). Empty: no one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<IpNet>,
    /// The name of a `[[tsig_keys]]` entry: transfers must be signed with
    /// it, and NOTIFY is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsig_key: Option<String>,
    /// Secondaries told by NOTIFY (RFC 1996) when the zone changes (port 53 unless given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<HostPort>,
}

/// Networks in a tag: addresses or networks separated by spaces or commas.
fn networks_in(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{part} is not an address or network"))
        })
        .collect()
}

impl HostedZoneConfig {
    /// Where the zone copies its records from: its `secondary` table, or
    /// else the [`SECONDARY_PRIMARIES_TAG`] and [`SECONDARY_TSIG_KEY_TAG`]
    /// tags (the API's way to say it). `Err` names a primary that does not parse.
    pub fn secondary_of(&self) -> Result<Option<SecondaryConfig>, String> {
        if let Some(secondary) = &self.secondary {
            return Ok(Some(secondary.clone()));
        }
        let Some(list) = self.tags.get(SECONDARY_PRIMARIES_TAG) else { return Ok(None) };
        let primaries = list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|part| !part.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<HostPort>, String>>()?;
        Ok(Some(SecondaryConfig {
            primaries,
            tsig_key: self.tags.get(SECONDARY_TSIG_KEY_TAG).cloned(),
            allow_notify: Vec::new(),
        }))
    }

    /// Who may transfer the zone and who is told of changes: its
    /// `transfer` table, or else the [`TRANSFER_ALLOW_TAG`],
    /// [`TRANSFER_TSIG_KEY_TAG`] and [`TRANSFER_NOTIFY_TAG`] tags (the
    /// API's way to say it). `Err` says which value does not parse.
    pub fn transfer_of(&self) -> Result<Option<TransferOutConfig>, String> {
        if let Some(transfer) = &self.transfer {
            return Ok(Some(transfer.clone()));
        }
        let Some(allow) = self.tags.get(TRANSFER_ALLOW_TAG) else { return Ok(None) };
        let notify = match self.tags.get(TRANSFER_NOTIFY_TAG) {
            Some(list) => list
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|part| !part.is_empty())
                .map(str::parse)
                .collect::<Result<Vec<HostPort>, String>>()?,
            None => Vec::new(),
        };
        Ok(Some(TransferOutConfig {
            allow: networks_in(allow)?,
            tsig_key: self.tags.get(TRANSFER_TSIG_KEY_TAG).cloned(),
            notify,
        }))
    }

    /// Its id: `id`, or the name when none is given.
    pub fn zone_id(&self) -> &str {
        self.id.as_deref().unwrap_or(&self.name)
    }

    /// Whether it is associated with `vpc`.
    pub fn has_vpc(&self, vpc: &str) -> bool {
        self.vpcs.iter().any(|association| association.vpc == vpc)
    }

    /// The ids of its VPCs.
    pub fn vpc_ids(&self) -> Vec<String> {
        self.vpcs.iter().map(|association| association.vpc.clone()).collect()
    }
}

fn records_are_empty(records: &Arc<Vec<String>>) -> bool {
    records.is_empty()
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
    pub vpcs: Vec<VpcAssociation>,
    /// Its `Name` in the AWS API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The `CreatorRequestId` it was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_request_id: Option<String>,
    /// When it was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When it was last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// The resource policy PutResolverRulePolicy stored (kept, not enforced:
    /// one process is one account, nothing is shared through AWS RAM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Its tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: Tags,
}

impl ResolverRuleConfig {
    /// Whether it is associated with `vpc`.
    pub fn has_vpc(&self, vpc: &str) -> bool {
        self.vpcs.iter().any(|association| association.vpc == vpc)
    }

    /// The ids of its VPCs.
    pub fn vpc_ids(&self) -> Vec<String> {
        self.vpcs.iter().map(|association| association.vpc.clone()).collect()
    }
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
    pub addresses: Vec<EndpointAddress>,
    /// Do53, DoH, DoH-FIPS, Do53+DoH or Do53+DoH-FIPS (default Do53).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<EndpointProtocol>,
    /// Do53 port (default `resolver_port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// DoH port (default `doh_port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doh_port: Option<u16>,
    /// DoH path (default /dns-query).
    #[serde(default = "default_doh_path")]
    pub doh_path: String,
    /// DoH certificate chain (default: `[tls]`, else one the state directory's CA signs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// DoH private key (default: `[tls]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Client networks allowed (its security group); default loopback and private ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<IpNet>>,
    /// The security groups the API was given (kept, not enforced).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// `IPV4`, `IPV6` or `DUALSTACK` (default: what the first address
    /// says, [`EndpointType::of`]); every address must fit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_type: Option<EndpointType>,
    /// Its `Name` in the AWS API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The `CreatorRequestId` it was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_request_id: Option<String>,
    /// When it was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When it was last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// Its tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: Tags,
}

/// `[[outbound_endpoints]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundEndpointConfig {
    /// Its id (`rslvr-out-...`).
    pub id: String,
    /// The VPC it sits in.
    pub vpc: String,
    /// Its addresses (the API requires two or more; forwarded queries
    /// still leave from the host).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<EndpointAddress>,
    /// Do53, DoH or Do53+DoH (default Do53).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<EndpointProtocol>,
    /// DoH: a PEM file of CA certificates trusted besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// DoH: trust only `ca_file`.
    #[serde(default)]
    pub ignore_system_roots: bool,
    /// The security groups the API was given (kept, not enforced).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// `IPV4`, `IPV6` or `DUALSTACK` (default: what the first address
    /// says, [`EndpointType::of`]); every address must fit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_type: Option<EndpointType>,
    /// Its `Name` in the AWS API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The `CreatorRequestId` it was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_request_id: Option<String>,
    /// When it was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When it was last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// Its tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: Tags,
}

/// `[[query_logging]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueryLoggingConfig {
    /// Its id (`rqlc-...`).
    pub id: String,
    /// `stdout`, a file path (relative to the configuration file's
    /// directory), or an ARN (`arn:aws:logs:...`, `arn:aws:s3:::...`,
    /// `arn:aws:firehose:...`), written as JSON lines under the state
    /// directory (docs/endpoint-api.md has the mapping).
    pub destination: String,
    /// The VPCs whose queries it logs (inbound endpoint queries count for the endpoint's VPC).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vpcs: Vec<VpcAssociation>,
    /// Its `Name` in the AWS API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The `CreatorRequestId` it was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_request_id: Option<String>,
    /// When it was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When it was last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// The resource policy PutResolverQueryLogConfigPolicy stored (kept,
    /// not enforced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Its tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: Tags,
}

/// `[[firewall_domain_lists]]`: a DNS Firewall domain list.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallDomainListConfig {
    /// Its id (`rslvr-fdl-...`).
    pub id: String,
    /// Its `Name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its entries: `example.com` (that name), `*.example.com` (every name
    /// below it) or `*` (every name). Shared between copies of the model.
    #[serde(default, skip_serializing_if = "records_are_empty")]
    pub domains: Arc<Vec<String>>,
    /// A file of more entries, one a line (`#` starts a comment): the
    /// local stand-in for ImportFirewallDomains' S3 object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The `CreatorRequestId` it was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_request_id: Option<String>,
    /// When it was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When it was last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// Its tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: Tags,
}

/// A DNS Firewall rule's action.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum FirewallRuleAction {
    /// Let the query through; later rules are not evaluated.
    Allow,
    /// Let the query through and log the match.
    Alert,
    /// Answer with the rule's `block_response`.
    Block,
}

/// How a BLOCK rule answers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum BlockResponse {
    /// NOERROR, no answer.
    Nodata,
    /// NXDOMAIN.
    Nxdomain,
    /// A CNAME to `block_override_domain`.
    Override,
}

/// One rule of a `[[firewall_rule_groups]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallRuleConfig {
    /// Its name (unique in the group).
    pub name: String,
    /// Its priority: lower values are evaluated first; unique in the group.
    pub priority: u32,
    /// The id of its domain list.
    pub domain_list: String,
    /// `ALLOW`, `ALERT` or `BLOCK`.
    pub action: FirewallRuleAction,
    /// BLOCK: `NODATA`, `NXDOMAIN` or `OVERRIDE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_response: Option<BlockResponse>,
    /// OVERRIDE: the name the CNAME points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_override_domain: Option<String>,
    /// OVERRIDE: the record type (`CNAME`, the only one AWS offers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_override_dns_type: Option<String>,
    /// OVERRIDE: the CNAME's TTL (0 to 604800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_override_ttl: Option<u32>,
    /// Only queries of this type match (`A`, `MX`, `TYPE65`...); every type when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qtype: Option<String>,
    /// `INSPECT_REDIRECTION_DOMAIN` (AWS's default) or `TRUST_REDIRECTION_DOMAIN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirection_action: Option<String>,
    /// The `CreatorRequestId` it was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_request_id: Option<String>,
    /// When it was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When it was last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
}

/// `[[firewall_rule_groups]]`: a DNS Firewall rule group.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallRuleGroupConfig {
    /// Its id (`rslvr-frg-...`).
    pub id: String,
    /// Its `Name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<FirewallRuleConfig>,
    /// The AWS RAM policy PutFirewallRuleGroupPolicy stored (kept, not enforced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The `CreatorRequestId` it was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_request_id: Option<String>,
    /// When it was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When it was last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// Its tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: Tags,
}

/// `[[firewall_associations]]`: a rule group associated with a VPC.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallAssociationConfig {
    /// Its id (`rslvr-frgassoc-...`; derived from group and VPC when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The rule group.
    pub rule_group: String,
    /// The VPC.
    pub vpc: String,
    /// Its priority in the VPC (100 to 9900, unique per VPC): lower first.
    pub priority: u32,
    /// Its `Name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// MutationProtection: when on, the association cannot be removed.
    #[serde(default)]
    pub mutation_protection: bool,
    /// The `CreatorRequestId` it was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_request_id: Option<String>,
    /// When it was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When it was last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// Its tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: Tags,
}

impl FirewallAssociationConfig {
    /// Its id: given, or derived from the group and the VPC.
    pub fn association_id(&self) -> String {
        self.id.clone().unwrap_or_else(|| crate::control::derived_id("rslvr-frgassoc-", &[&self.rule_group, &self.vpc]))
    }
}

impl QueryLoggingConfig {
    /// The ids of its VPCs.
    pub fn vpc_ids(&self) -> Vec<String> {
        self.vpcs.iter().map(|association| association.vpc.clone()).collect()
    }
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
        config.runtime.base_dir = Some(match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        });
        config.source = Some(Arc::new(Source { file, locator }));
        Ok(config)
    }

    /// Read a TOML file.
    pub fn load(path: &Path) -> Result<Self, EndpointError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| signpost_rules::Error::io(Location::default(), path, source))?;
        Self::from_toml(&text, path)
    }

    /// For `check-config`: DoH inbound endpoints given no certificate (an
    /// exported model's, made through the API) pass, as the state
    /// directory's CA signs one for them when they are served.
    pub fn certificates_from_state_directory(mut self) -> Self {
        self.runtime.certificates_later = true;
        self
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
