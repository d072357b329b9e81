//! Validation of the model and its compilation into a rule set, upstream
//! groups and a server configuration; the reload transition checks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use signpost_rules::{Action, Matcher, RuleSet, RuleSpec, ViewSpec, Zone, ZoneMode, ZoneSpec, parse_records};
use signpost_upstream::{GroupConfig, Protocol, ResolvConf, ServerConfig as UpstreamServer, TlsOptions, Upstreams};
use signpost_wire::{NameBuf, RecordBuf};

use crate::destinations;
use crate::error::EndpointError;
use crate::model::{
    DnssecValidation, EndpointAddress, EndpointConfig, EndpointType, HostedZoneConfig, InboundEndpointConfig, RuleType,
    TlsFiles, TsigKeyConfig, VpcConfig,
};
use crate::protocols::{Direction, EndpointProtocol, Protocols};
use crate::querylog::LogAccount;
use signpost_dnssec::{LocatedError, TrustAnchors, Validator, ValidatorConfig};
use signpost_server::{
    LimitsConfig, ListenerConfig, LogDestination, QueryLogConfig, ServerConfig, Transport, default_allow_list,
};
use signpost_server::{State, ValidationScope};

/// The upstream group of the built-in recursive default (and of SYSTEM rules).
pub const RECURSIVE_GROUP: &str = "recursive";

/// The TTL of inline zone records that give none.
const DEFAULT_RECORD_TTL: u32 = 300;

/// What a listener stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenerRole {
    /// The VPC resolver (the `.2` address) of a VPC.
    VpcResolver {
        /// The VPC.
        vpc: String,
    },
    /// One address of an inbound endpoint.
    InboundEndpoint {
        /// The endpoint.
        endpoint: String,
        /// Its VPC.
        vpc: String,
    },
}

/// One listener a deployment asks the server for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedListener {
    /// The listener id (also in query-log `srcids` and in the view's `listeners`).
    pub id: String,
    /// What it stands for.
    pub role: ListenerRole,
    /// The endpoint protocol it serves.
    pub protocol: EndpointProtocol,
    /// The server transport.
    pub transport: Transport,
}

/// Listeners limited together: those of one inbound endpoint address (Do53
/// over UDP and TCP, DoH), which take `qps` queries per second between them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressLimit {
    /// The address.
    pub address: IpAddr,
    /// Its listeners' ids.
    pub listeners: Vec<String>,
    /// Queries per second they take together.
    pub qps: u32,
}

impl AddressLimit {
    /// The name of the server's rate-limit group the listeners join.
    pub fn group(&self) -> String {
        format!("inbound {}", self.address)
    }
}

/// Where one domain goes for one VPC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteTarget {
    /// A private hosted zone answers.
    Zone {
        /// Its id.
        id: String,
        /// How many records it holds.
        records: usize,
    },
    /// A FORWARD rule sends the names through an outbound endpoint.
    Forward {
        /// The rule.
        rule: String,
        /// The outbound endpoint.
        endpoint: String,
        /// The targets, as `address (protocol)`.
        targets: Vec<String>,
    },
    /// A SYSTEM rule: the VPC resolver (zones, then the recursive default).
    System {
        /// The rule.
        rule: String,
    },
    /// The built-in recursive default.
    Recursive {
        /// Its servers.
        servers: Vec<String>,
    },
}

/// The routing of one VPC, for `check-config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VpcRoutes {
    /// The VPC.
    pub vpc: String,
    /// Its CIDR blocks.
    pub cidrs: Vec<IpNet>,
    /// Its VPC resolver's address.
    pub resolver: SocketAddr,
    /// Domains in canonical order (parents before children), each with where it goes.
    pub domains: Vec<(NameBuf, RouteTarget)>,
    /// Its inbound endpoints: id, addresses, protocols.
    pub inbound: Vec<(String, Vec<IpAddr>, Protocols)>,
    /// Its outbound endpoints: id, protocols.
    pub outbound: Vec<(String, Protocols)>,
    /// Query logging configurations logging it: id, destination.
    pub query_logs: Vec<(String, String)>,
}

/// A compiled configuration: what the server runs.
pub struct Deployment {
    /// The rule set: one view per VPC.
    pub rules: Arc<RuleSet>,
    /// The upstream groups: the recursive default and one per FORWARD rule.
    pub upstreams: Arc<Upstreams>,
    /// The configurations they were built from.
    pub groups: Arc<Vec<GroupConfig>>,
    /// Listeners, limits, query logs, cache.
    pub server: ServerConfig,
    /// Every listener and what it stands for.
    pub listeners: Vec<PlannedListener>,
    /// One query log per destination, limited to the VPCs logged there.
    pub query_logs: Vec<QueryLogConfig>,
    /// The account and region every query-log line names.
    pub log_account: LogAccount,
    /// With `aws_limits` on, one limit per inbound endpoint address, shared
    /// by its listeners.
    pub address_limits: Vec<AddressLimit>,
    /// Per VPC, where each domain goes.
    pub routes: Vec<VpcRoutes>,
    /// Resolver rules associated with no VPC (they have no effect).
    pub unassociated_rules: Vec<String>,
    /// The limits in force, when `aws_limits` is on: per-client packets per
    /// second to VPC resolvers, queries per second per inbound address.
    pub limits: Option<(u32, u32)>,
    /// The DNSSEC validator, when a VPC validates.
    pub validator: Option<Arc<Validator>>,
    /// What it validates: the recursive default's answers to the queries of
    /// the VPCs that enabled validation, as Route 53 Resolver does.
    pub validation_scope: ValidationScope,
    /// Private hosted zones that follow an on-premises primary.
    pub secondaries: Vec<PlannedSecondary>,
}

/// A private hosted zone that copies its records from primaries by zone
/// transfer, as compiled: addresses resolved, key found and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedSecondary {
    /// The zone's id.
    pub zone_id: String,
    /// Its apex.
    pub apex: NameBuf,
    /// The primaries, asked in order.
    pub primaries: Vec<SocketAddr>,
    /// The key transfers and NOTIFY are signed with.
    pub key: Option<TsigKeyConfig>,
    /// Who besides the primaries may send NOTIFY.
    pub allow_notify: Vec<IpNet>,
}

impl PlannedSecondary {
    /// The TSIG key (checked when compiled, so `None` only when none is named).
    pub fn tsig_key(&self) -> Option<signpost_wire::TsigKey> {
        self.key.as_ref().and_then(|key| key.key().ok())
    }
}

impl Deployment {
    /// The upstream groups queries go to: every group but those of rules
    /// associated with no VPC (`/ready` waits for these).
    pub fn groups_in_use(&self) -> BTreeSet<String> {
        let idle: BTreeSet<String> = self.unassociated_rules.iter().map(|rule| forward_group(rule)).collect();
        self.groups.iter().map(|group| group.name.clone()).filter(|name| !idle.contains(name)).collect()
    }

    /// The rules and upstreams, for [`ServerHandle::reload`](crate::ServerHandle::reload).
    pub fn state(&self) -> State {
        let mut state = State::new(self.rules.clone(), self.upstreams.clone());
        state.validator = self.validator.clone();
        state.validation_scope = self.validation_scope.clone();
        state
    }

    /// The role and protocol of the listener with this id.
    pub fn listener(&self, id: &str) -> Option<&PlannedListener> {
        self.listeners.iter().find(|listener| listener.id == id)
    }
}

/// The group a FORWARD rule's queries go to.
pub fn forward_group(rule: &str) -> String {
    format!("forward:{rule}")
}

/// The listener id of a VPC resolver's transport.
pub fn resolver_listener_id(vpc: &str, transport: Transport) -> String {
    format!("{vpc}/resolver/{}", transport.as_str())
}

/// The listener id of one address and transport of an inbound endpoint.
pub fn inbound_listener_id(endpoint: &str, address: IpAddr, transport: Transport) -> String {
    format!("{endpoint}/{address}/{}", transport.as_str())
}

fn duplicate_check<'a>(
    config: &EndpointConfig,
    what: &'static str,
    ids: impl Iterator<Item = (String, &'a str)>,
) -> Result<(), EndpointError> {
    let mut seen = BTreeSet::new();
    for (field, id) in ids {
        if id.is_empty() {
            return Err(EndpointError::Invalid { at: config.locate(&field), problem: "an id cannot be empty" });
        }
        if !seen.insert(id) {
            return Err(EndpointError::Duplicate { at: config.locate(&field), what, id: id.to_string() });
        }
    }
    Ok(())
}

/// What is wrong with a secondary zone's primary that does not parse.
const PRIMARY_NOT_AN_ADDRESS: &str = "a primary is not an address (IP, or IP:port)";

impl EndpointConfig {
    /// The directory files named in the configuration are relative to.
    pub fn base_dir(&self) -> PathBuf {
        if let Some(dir) = &self.runtime.base_dir {
            return dir.clone();
        }
        match self.file().and_then(Path::parent) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    fn vpc_known(&self, field: &str, vpc: &str) -> Result<(), EndpointError> {
        // Small models: a scan; large ones (the API's hundreds of VPCs): ids sorted once per compile.
        let known = match self.runtime.vpc_ids.0.get().filter(|ids| ids.len() == self.vpcs.len()) {
            Some(ids) => ids.binary_search_by(|id| id.as_str().cmp(vpc)).is_ok(),
            None if self.vpcs.len() < 16 => self.vpcs.iter().any(|known| known.id == vpc),
            None => {
                let mut ids: Vec<String> = self.vpcs.iter().map(|known| known.id.clone()).collect();
                ids.sort();
                let found = ids.binary_search_by(|id| id.as_str().cmp(vpc)).is_ok();
                let _ = self.runtime.vpc_ids.0.set(ids);
                found
            }
        };
        if known {
            Ok(())
        } else {
            Err(EndpointError::UnknownReference { at: self.locate(field), what: "VPC", id: vpc.to_string() })
        }
    }

    /// The protocols of inbound endpoint `index`.
    pub(crate) fn inbound_protocols(&self, index: usize) -> Result<Protocols, EndpointError> {
        let endpoint = self.inbound_endpoints.get(index).map(|e| (e.id.as_str(), e.protocols.as_slice()));
        self.protocols(Direction::Inbound, index, endpoint)
    }

    /// The protocols of outbound endpoint `index`.
    pub(crate) fn outbound_protocols(&self, index: usize) -> Result<Protocols, EndpointError> {
        let endpoint = self.outbound_endpoints.get(index).map(|e| (e.id.as_str(), e.protocols.as_slice()));
        self.protocols(Direction::Outbound, index, endpoint)
    }

    fn protocols(
        &self,
        direction: Direction,
        index: usize,
        endpoint: Option<(&str, &[EndpointProtocol])>,
    ) -> Result<Protocols, EndpointError> {
        let (id, list) = endpoint.unwrap_or_default();
        Protocols::from_list(list, direction).map_err(|problem| EndpointError::Protocols {
            at: self.locate(&format!("{direction}_endpoints[{index}].protocols")),
            direction,
            endpoint: id.to_string(),
            problem,
        })
    }

    /// Check whether the running configuration `self` may become `next` on
    /// reload: an endpoint in both keeps its VPC, and its protocols do not
    /// jump between Do53 alone and DoH (or DoH-FIPS) alone.
    pub fn check_transition(&self, next: &Self) -> Result<(), EndpointError> {
        for direction in [Direction::Inbound, Direction::Outbound] {
            let running = self.endpoint_placements(direction);
            for (index, (id, vpc)) in next.endpoint_placements(direction).into_iter().enumerate() {
                let Some(old_index) = running.iter().position(|(old_id, _)| *old_id == id) else {
                    continue;
                };
                let old_vpc = running.get(old_index).map_or("", |(_, old_vpc)| old_vpc);
                transition(
                    direction,
                    id,
                    (old_vpc, vpc),
                    self.direction_protocols(direction, old_index)?,
                    next.direction_protocols(direction, index)?,
                )?;
            }
        }
        Ok(())
    }

    /// The id and VPC of each endpoint in `direction`, in order.
    fn endpoint_placements(&self, direction: Direction) -> Vec<(&str, &str)> {
        match direction {
            Direction::Inbound => self.inbound_endpoints.iter().map(|e| (e.id.as_str(), e.vpc.as_str())).collect(),
            Direction::Outbound => self.outbound_endpoints.iter().map(|e| (e.id.as_str(), e.vpc.as_str())).collect(),
        }
    }

    /// The protocols of endpoint `index` in `direction`.
    fn direction_protocols(&self, direction: Direction, index: usize) -> Result<Protocols, EndpointError> {
        match direction {
            Direction::Inbound => self.inbound_protocols(index),
            Direction::Outbound => self.outbound_protocols(index),
        }
    }

    /// Check everything and compile: zone files are read, TLS files and CA
    /// files loaded, nothing bound and no query sent.
    pub fn compile(&self) -> Result<Deployment, EndpointError> {
        let base_dir = self.base_dir();
        self.check_ids()?;
        self.check_quotas()?;
        let log_account = self.log_account()?;
        let resolvers = self.check_vpcs()?;
        let zones = self.compile_zones(&base_dir)?;
        let inbound: Vec<Protocols> =
            (0..self.inbound_endpoints.len()).map(|index| self.inbound_protocols(index)).collect::<Result<_, _>>()?;
        let outbound: Vec<Protocols> =
            (0..self.outbound_endpoints.len()).map(|index| self.outbound_protocols(index)).collect::<Result<_, _>>()?;
        self.check_endpoint_addresses()?;
        let (rule_specs, mut groups, rule_routes) = self.compile_rules(&outbound, &base_dir)?;
        let (listeners, planned) = self.compile_listeners(&resolvers, &inbound, &base_dir)?;

        // The recursive default.
        let own: Vec<SocketAddr> = listeners.iter().map(ListenerConfig::socket_address).collect();
        let recursive = self.recursive_group(&base_dir, &own)?;
        let recursive_servers: Vec<String> =
            recursive.servers.iter().map(|server| server.address.to_string()).collect();
        groups.push(recursive);
        let upstreams = match &self.runtime.upstreams_in_force {
            Some((in_force, upstreams)) if **in_force == groups => upstreams.clone(),
            _ => Arc::new(
                Upstreams::new(groups.clone())
                    .map_err(|source| EndpointError::Upstream { context: "upstream groups".into(), source })?,
            ),
        };

        // The rule set: one view per VPC.
        let mut builder = RuleSet::builder();
        let mut known: Vec<String> = vec![RECURSIVE_GROUP.to_string()];
        known.extend(self.resolver_rules.iter().map(|rule| forward_group(&rule.id)));
        builder.known_groups(known);
        for (vpc, resolver) in self.vpcs.iter().zip(&resolvers) {
            // A resolver outside the VPC's blocks (on loopback, for a VPC
            // whose .2 is not an address of this host) stands for the VPC:
            // queries to it use the VPC's view, as inbound endpoints' do.
            let detached = !resolver_inside(vpc, resolver.ip());
            let listeners = planned
                .iter()
                .filter(|listener| match &listener.role {
                    ListenerRole::InboundEndpoint { vpc: v, .. } => *v == vpc.id,
                    ListenerRole::VpcResolver { vpc: v } => detached && *v == vpc.id,
                })
                .map(|listener| listener.id.clone())
                .collect();
            builder.view(ViewSpec {
                name: vpc.id.clone(),
                cidrs: vpc.cidrs.clone(),
                listeners,
                default_group: Some(RECURSIVE_GROUP.to_string()),
            });
        }
        let secondaries = self.secondaries()?;
        for (config, (apex, zone)) in self.private_hosted_zones.iter().zip(&zones) {
            if self.runtime.expired_zones.contains(config.zone_id()) {
                // A secondary past its expire time has no data it may
                // answer from: SERVFAIL, as RFC 1034 §4.3.5 asks.
                builder.rule(
                    RuleSpec::new(
                        format!("expired:{}", config.zone_id()),
                        Matcher::Suffix(apex.clone()),
                        Action::Block(signpost_rules::BlockAction::ServFail),
                    )
                    .in_views(config.vpc_ids()),
                );
                continue;
            }
            builder.zone(ZoneSpec {
                id: config.zone_id().to_string(),
                zone: zone.clone(),
                views: config.vpc_ids(),
                mode: ZoneMode::Authoritative,
            });
        }
        for spec in self.autodefined_zones() {
            builder.zone(spec);
        }
        for spec in rule_specs {
            builder.rule(spec);
        }
        for (vpc, firewall) in self.compile_firewall(&base_dir)? {
            if self.vpcs.iter().any(|known| known.id == vpc && known.firewall_fail_open == Some(true)) {
                builder.firewall_fails_open(vpc.clone());
            }
            builder.firewall(vpc, firewall);
        }
        let rules = builder.build()?;

        let address_limits = if self.aws_limits.enabled {
            address_limits(&listeners, &planned, self.aws_limits.inbound_qps_per_address)
        } else {
            Vec::new()
        };
        // Each inbound endpoint address's listeners join one rate-limit group.
        let mut listeners = listeners;
        for limit in &address_limits {
            for listener in listeners
                .iter_mut()
                .filter(|listener| listener.id.as_ref().is_some_and(|id| limit.listeners.contains(id)))
            {
                listener.limit_group = Some(limit.group());
            }
        }
        let server = ServerConfig {
            listeners,
            cache: self.cache.clone(),
            limits: LimitsConfig {
                per_client_qps: self.aws_limits.enabled.then_some(self.aws_limits.vpc_resolver_pps_per_client),
                per_client_burst: self.aws_limits.enabled.then_some(self.aws_limits.vpc_resolver_pps_per_client),
                groups: address_limits.iter().map(|limit| (limit.group(), limit.qps)).collect(),
                ..LimitsConfig::default()
            },
            admin: self.admin.clone(),
            dnstap: self.dnstap.clone(),
            ..ServerConfig::default()
        };

        let routes = if self.runtime.skip_routes {
            Vec::new()
        } else {
            self.routes(&resolvers, &zones, &inbound, &outbound, &rule_routes, &recursive_servers)
        };
        let query_logs = self.query_logs(&base_dir)?;
        let validating: BTreeSet<String> = self
            .vpcs
            .iter()
            .filter(|vpc| vpc.dnssec_validation.is_some_and(DnssecValidation::validates))
            .map(|vpc| vpc.id.clone())
            .collect();
        let validator = if validating.is_empty() { None } else { Some(Arc::new(self.validator(&base_dir)?)) };
        let validation_scope =
            ValidationScope::new(Some(validating), Some(BTreeSet::from([RECURSIVE_GROUP.to_string()])), true);
        let unassociated_rules =
            self.resolver_rules.iter().filter(|rule| rule.vpcs.is_empty()).map(|rule| rule.id.clone()).collect();
        Ok(Deployment {
            rules: Arc::new(rules),
            upstreams,
            groups: Arc::new(groups),
            server,
            listeners: planned,
            query_logs,
            log_account,
            address_limits,
            routes,
            unassociated_rules,
            limits: self
                .aws_limits
                .enabled
                .then_some((self.aws_limits.vpc_resolver_pps_per_client, self.aws_limits.inbound_qps_per_address)),
            secondaries,
            validator,
            validation_scope,
        })
    }

    /// The validator `[dnssec]` describes (the built-in root anchors when it
    /// names none). Anchor files are relative to `base_dir`.
    fn validator(&self, base_dir: &Path) -> Result<Validator, EndpointError> {
        let dnssec = &self.dnssec;
        let mut anchors = TrustAnchors::empty();
        for (index, file) in dnssec.trust_anchor_files.iter().enumerate() {
            let at = self.locate(&format!("dnssec.trust_anchor_files[{index}]"));
            anchors.add_file(&base_dir.join(file)).map_err(|source| LocatedError { at, source })?;
        }
        for (index, record) in dnssec.trust_anchors.iter().enumerate() {
            let at = self.locate(&format!("dnssec.trust_anchors[{index}]"));
            anchors.add_record(record, "trust-anchor", 1).map_err(|source| LocatedError { at, source })?;
        }
        if anchors.is_empty() {
            anchors = TrustAnchors::root();
        }
        let mut config = ValidatorConfig::default();
        if let Some(ttl) = dnssec.bogus_ttl {
            config.bogus_ttl = ttl;
        }
        // Route 53 Resolver documents no RFC 8198 answers from its cache: every name is asked.
        config.aggressive_nsec = false;
        Ok(Validator::new(anchors, Vec::new(), config))
    }

    /// Each private hosted zone whose name parses and in which `read`
    /// finds a `part` (`secondary`, `transfer`), in order, with the part's
    /// field: a part that does not read is `problem` there. Lazy, so the
    /// caller's own checks of one zone come before the next zone's.
    pub(crate) fn zones_with<'a, T>(
        &'a self,
        part: &'a str,
        read: impl Fn(&HostedZoneConfig) -> Result<Option<T>, String> + 'a,
        problem: &'static str,
    ) -> impl Iterator<Item = Result<(String, &'a HostedZoneConfig, NameBuf, T), EndpointError>> + 'a {
        self.private_hosted_zones.iter().enumerate().filter_map(move |(index, config)| {
            let field = format!("private_hosted_zones[{index}].{part}");
            let apex = config.name.parse::<NameBuf>().ok()?;
            match read(config) {
                Ok(found) => found.map(|value| Ok((field, config, apex, value))),
                Err(_) => Some(Err(EndpointError::Invalid { at: self.locate(&field), problem })),
            }
        })
    }

    /// The private hosted zones that follow a primary, checked: primaries
    /// given, the key known and usable.
    pub fn secondaries(&self) -> Result<Vec<PlannedSecondary>, EndpointError> {
        for (index, key) in self.tsig_keys.iter().enumerate() {
            key.key().map_err(|problem| EndpointError::Invalid {
                at: self.locate(&format!("tsig_keys[{index}]")),
                problem,
            })?;
        }
        let mut planned = Vec::new();
        for zone in self.zones_with("secondary", HostedZoneConfig::secondary_of, PRIMARY_NOT_AN_ADDRESS) {
            let (field, config, apex, secondary) = zone?;
            if secondary.primaries.is_empty() {
                return Err(EndpointError::Invalid {
                    at: self.locate(&format!("{field}.primaries")),
                    problem: "a secondary zone needs at least one primary",
                });
            }
            let key = self.tsig_key_named(secondary.tsig_key.as_deref(), &field)?;
            planned.push(PlannedSecondary {
                zone_id: config.zone_id().to_string(),
                apex,
                primaries: secondary.primaries.iter().map(|primary| primary.with_default_port(53)).collect(),
                key,
                allow_notify: secondary.allow_notify.clone(),
            });
        }
        Ok(planned)
    }

    /// `account_id` (twelve digits, as AWS account ids are) and `region`.
    fn log_account(&self) -> Result<LogAccount, EndpointError> {
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(EndpointError::Invalid {
                at: self.locate("account_id"),
                problem: "an AWS account id is twelve digits (default \"000000000000\")",
            });
        }
        if self.region.is_empty() || !self.region.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-') {
            return Err(EndpointError::Invalid {
                at: self.locate("region"),
                problem: "a region is letters, digits and dashes, such as \"us-east-1\"",
            });
        }
        Ok(LogAccount { account_id: self.account_id.clone(), region: self.region.clone() })
    }

    fn check_ids(&self) -> Result<(), EndpointError> {
        duplicate_check(
            self,
            "VPC",
            self.vpcs.iter().enumerate().map(|(i, vpc)| (format!("vpcs[{i}].id"), vpc.id.as_str())),
        )?;
        duplicate_check(
            self,
            "private hosted zone id",
            self.private_hosted_zones.iter().enumerate().map(|(i, zone)| {
                let field = if zone.id.is_some() { "id" } else { "name" };
                (format!("private_hosted_zones[{i}].{field}"), zone.id.as_deref().unwrap_or(&zone.name))
            }),
        )?;
        duplicate_check(
            self,
            "resolver rule",
            self.resolver_rules
                .iter()
                .enumerate()
                .map(|(i, rule)| (format!("resolver_rules[{i}].id"), rule.id.as_str())),
        )?;
        duplicate_check(
            self,
            "endpoint",
            self.inbound_endpoints
                .iter()
                .enumerate()
                .map(|(i, endpoint)| (format!("inbound_endpoints[{i}].id"), endpoint.id.as_str()))
                .chain(
                    self.outbound_endpoints
                        .iter()
                        .enumerate()
                        .map(|(i, endpoint)| (format!("outbound_endpoints[{i}].id"), endpoint.id.as_str())),
                ),
        )?;
        duplicate_check(
            self,
            "query logging configuration",
            self.query_logging.iter().enumerate().map(|(i, log)| (format!("query_logging[{i}].id"), log.id.as_str())),
        )
    }

    /// Check VPCs and give each its resolver address.
    fn check_vpcs(&self) -> Result<Vec<SocketAddr>, EndpointError> {
        let mut resolvers = Vec::with_capacity(self.vpcs.len());
        for (index, vpc) in self.vpcs.iter().enumerate() {
            if vpc.id == signpost_rules::DEFAULT_VIEW {
                return Err(EndpointError::Invalid {
                    at: self.locate(&format!("vpcs[{index}].id")),
                    problem: "\"default\" is reserved (the view of clients in no VPC); choose another VPC id",
                });
            }
            if vpc.cidrs.is_empty() {
                return Err(EndpointError::Invalid {
                    at: self.locate(&format!("vpcs[{index}].cidrs")),
                    problem: "a VPC needs at least one CIDR block",
                });
            }
            for other in self.vpcs.iter().take(index) {
                for cidr in &vpc.cidrs {
                    let overlap = |o: &&IpNet| o.contains(&cidr.network()) || cidr.contains(&o.network());
                    if let Some(other_cidr) = other.cidrs.iter().find(overlap) {
                        return Err(EndpointError::OverlappingCidrs {
                            at: self.locate(&format!("vpcs[{index}].cidrs")),
                            vpc: vpc.id.clone(),
                            cidr: *cidr,
                            other_vpc: other.id.clone(),
                            other_cidr: *other_cidr,
                        });
                    }
                }
            }
            let resolver = match vpc.resolver {
                Some(given) => given.with_default_port(self.resolver_port),
                None => {
                    let dot_two = vpc.cidrs.iter().find_map(|cidr| match cidr {
                        IpNet::V4(v4) => {
                            let address = Ipv4Addr::from(u32::from(v4.network()).checked_add(2)?);
                            v4.contains(&address).then_some(address)
                        }
                        IpNet::V6(_) => None,
                    });
                    let Some(address) = dot_two else {
                        return Err(EndpointError::Invalid {
                            at: self.locate(&format!("vpcs[{index}].cidrs")),
                            problem: "no IPv4 CIDR with a .2 address to put the VPC resolver on; give resolver = \"ip:port\"",
                        });
                    };
                    SocketAddr::new(IpAddr::V4(address), self.resolver_port)
                }
            };
            resolvers.push(resolver);
        }
        Ok(resolvers)
    }

    fn compile_zones(&self, base_dir: &Path) -> Result<Vec<(NameBuf, Arc<Zone>)>, EndpointError> {
        let mut zones: Vec<(NameBuf, Arc<Zone>)> = Vec::with_capacity(self.private_hosted_zones.len());
        // Which zone holds each (apex, VPC) so far: two of one name cannot share a VPC.
        let mut taken: HashMap<(NameBuf, &str), &HostedZoneConfig> = HashMap::new();
        for (index, config) in self.private_hosted_zones.iter().enumerate() {
            let field = format!("private_hosted_zones[{index}]");
            if config.vpcs.is_empty() {
                return Err(EndpointError::Invalid {
                    at: self.locate(&format!("{field}.vpcs")),
                    problem: "a private hosted zone must be associated with at least one VPC",
                });
            }
            let (apex, zone) = self.zone_at(&field, config, base_dir)?;
            for (vpc_index, vpc) in config.vpcs.iter().map(|association| association.vpc.as_str()).enumerate() {
                self.vpc_known(&format!("{field}.vpcs[{vpc_index}]"), vpc)?;
                if let Some(other) = taken.insert((apex.clone(), vpc), config) {
                    return Err(EndpointError::Conflict {
                        at: self.locate(&format!("{field}.vpcs[{vpc_index}]")),
                        what: "private hosted zone",
                        id: config.zone_id().to_string(),
                        other: other.zone_id().to_string(),
                        domain: apex.to_string(),
                        vpc: vpc.to_string(),
                    });
                }
            }
            zones.push((apex, zone));
        }
        Ok(zones)
    }

    /// A hosted zone (private or public) as the rule engine holds it: its
    /// master file's and inline records, with an SOA. Built zones are kept
    /// in the runtime's cache while their records stay the same, so a
    /// change to one zone does not rebuild the others.
    pub fn hosted_zone(&self, config: &HostedZoneConfig) -> Result<Arc<Zone>, EndpointError> {
        self.zone_at(&format!("zone {}", config.zone_id()), config, &self.base_dir()).map(|(_, zone)| zone)
    }

    /// The name `text` of setting `field`, or the error that locates it.
    fn parse_name(&self, field: &str, text: &str) -> Result<NameBuf, EndpointError> {
        text.parse::<NameBuf>().map_err(|source| {
            EndpointError::from(signpost_rules::Error::InvalidName {
                at: self.locate(field),
                text: text.to_string(),
                source,
            })
        })
    }

    fn zone_at(
        &self,
        field: &str,
        config: &HostedZoneConfig,
        base_dir: &Path,
    ) -> Result<(NameBuf, Arc<Zone>), EndpointError> {
        let apex = self.parse_name(&format!("{field}.name"), &config.name)?;
        // Zones read from a file are not cached: the file may change under us.
        let cache = self.runtime.zone_cache.as_ref().filter(|_| config.file.is_none());
        if let Some(cache) = cache
            && let Some(cached) = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(config.zone_id())
            && Arc::ptr_eq(&cached.records, &config.records)
            && cached.name == config.name
            && cached.ttl == config.ttl
        {
            return Ok((apex, cached.zone.clone()));
        }
        let mut records: Vec<RecordBuf> = Vec::new();
        if let Some(file) = &config.file {
            let path = base_dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|source| signpost_rules::Error::io(self.locate(&format!("{field}.file")), &path, source))?;
            records
                .extend(parse_records(&text, &apex, signpost_rules::Source::file(&path))?.into_iter().map(|(r, _)| r));
        }
        for (record_index, text) in config.records.iter().enumerate() {
            let record =
                RecordBuf::from_presentation(text, Some(&apex), Some(config.ttl.unwrap_or(DEFAULT_RECORD_TTL)))
                    .map_err(|source| {
                        EndpointError::from(signpost_rules::Error::InvalidRecord {
                            at: self.locate(&format!("{field}.records[{record_index}]")),
                            text: text.clone(),
                            source,
                        })
                    })?;
            records.push(record);
        }
        let zone = Zone::from_records(apex.clone(), records).map_err(|error| {
            // Name the zone's entry when the zone's own check has no place to point at.
            if error.location().file.is_none() && error.location().line.is_none() {
                EndpointError::Config(error.relocated(self.locate(&format!("{field}.name"))))
            } else {
                EndpointError::Config(error)
            }
        })?;
        let zone = Arc::new(zone);
        if let Some(cache) = cache {
            cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(
                config.zone_id().to_string(),
                crate::model::CachedZone {
                    records: config.records.clone(),
                    name: config.name.clone(),
                    ttl: config.ttl,
                    zone: zone.clone(),
                },
            );
        }
        Ok((apex, zone))
    }

    #[allow(clippy::type_complexity, reason = "one private step of compile")]
    fn compile_rules(
        &self,
        outbound: &[Protocols],
        base_dir: &Path,
    ) -> Result<(Vec<RuleSpec>, Vec<GroupConfig>, Vec<(NameBuf, RouteTarget)>), EndpointError> {
        let mut specs = Vec::new();
        let mut groups = Vec::new();
        let mut routes = Vec::new();
        // Which rule holds each (domain, VPC) so far: one rule per domain and VPC.
        let mut taken: HashMap<(NameBuf, &str), &String> = HashMap::new();
        for (index, endpoint) in self.outbound_endpoints.iter().enumerate() {
            self.vpc_known(&format!("outbound_endpoints[{index}].vpc"), &endpoint.vpc)?;
        }
        for (index, rule) in self.resolver_rules.iter().enumerate() {
            let field = format!("resolver_rules[{index}]");
            let domain = self.parse_name(&format!("{field}.domain"), &rule.domain)?;
            for (vpc_index, vpc) in rule.vpcs.iter().map(|association| association.vpc.as_str()).enumerate() {
                let vpc_field = format!("{field}.vpcs[{vpc_index}]");
                self.vpc_known(&vpc_field, vpc)?;
                if let Some(other) = taken.insert((domain.clone(), vpc), &rule.id) {
                    return Err(EndpointError::Conflict {
                        at: self.locate(&vpc_field),
                        what: "resolver rule",
                        id: rule.id.clone(),
                        other: other.clone(),
                        domain: domain.to_string(),
                        vpc: vpc.to_string(),
                    });
                }
            }
            let invalid = |key: &str, problem: &'static str| EndpointError::Invalid {
                at: self.locate(&format!("{field}.{key}")),
                problem,
            };
            let (action, route) = match rule.rule_type {
                RuleType::Recursive => {
                    return Err(invalid(
                        "type",
                        "RECURSIVE rules are built in (the recursive default, [recursive]); create FORWARD or SYSTEM rules",
                    ));
                }
                RuleType::System => {
                    if rule.outbound_endpoint.is_some() {
                        return Err(invalid("outbound_endpoint", "a SYSTEM rule takes no outbound endpoint"));
                    }
                    if !rule.targets.is_empty() {
                        return Err(invalid("targets", "a SYSTEM rule takes no targets"));
                    }
                    (Action::System, RouteTarget::System { rule: rule.id.clone() })
                }
                RuleType::Forward => {
                    let Some(endpoint_id) = &rule.outbound_endpoint else {
                        return Err(invalid("type", "a FORWARD rule needs outbound_endpoint"));
                    };
                    let Some(endpoint_index) = self.outbound_endpoints.iter().position(|e| &e.id == endpoint_id) else {
                        return Err(EndpointError::UnknownReference {
                            at: self.locate(&format!("{field}.outbound_endpoint")),
                            what: "outbound endpoint",
                            id: endpoint_id.clone(),
                        });
                    };
                    let offered = outbound.get(endpoint_index).copied().unwrap_or(Protocols::DO53);
                    if rule.targets.is_empty() {
                        return Err(invalid("type", "a FORWARD rule needs targets"));
                    }
                    let v4 = rule.targets.iter().filter(|target| target.ip.is_ipv4()).count();
                    if v4 != 0 && v4 != rule.targets.len() {
                        return Err(EndpointError::MixedTargetFamilies {
                            at: self.locate(&format!("{field}.targets")),
                            rule: rule.id.clone(),
                        });
                    }
                    let ipv6_targets = v4 == 0;
                    let endpoint = self.outbound_endpoints.get(endpoint_index);
                    if let Some(endpoint) = endpoint {
                        let endpoint_type = EndpointType::of(endpoint.endpoint_type, &endpoint.addresses);
                        if !endpoint_type.carries(ipv6_targets) {
                            return Err(EndpointError::TargetFamily {
                                at: self.locate(&format!("{field}.targets")),
                                rule: rule.id.clone(),
                                family: if ipv6_targets { 6 } else { 4 },
                                endpoint: endpoint_id.clone(),
                                endpoint_type: endpoint_type.as_str(),
                                needed: if ipv6_targets { "IPV6" } else { "IPV4" },
                            });
                        }
                    }
                    // Forwarded queries leave from the outbound endpoint's addresses ("the query
                    // source IP address is replaced with the IP address of the endpoint"): target
                    // N from address N modulo their number, of the targets' family (a DUALSTACK
                    // address's IPv6 one for IPv6 targets), when this host has that address.
                    let sources: Vec<IpAddr> = endpoint
                        .map(|endpoint| {
                            endpoint
                                .addresses
                                .iter()
                                .flat_map(EndpointAddress::ips)
                                .filter(|ip| ip.is_ipv6() == ipv6_targets && crate::control::is_local_address(*ip))
                                .collect()
                        })
                        .unwrap_or_default();
                    let mut servers = Vec::with_capacity(rule.targets.len());
                    let mut shown = Vec::with_capacity(rule.targets.len());
                    for (target_index, target) in rule.targets.iter().enumerate() {
                        let target_field = format!("{field}.targets[{target_index}]");
                        let protocol = target.protocol();
                        if !offered.contains(protocol) || protocol == EndpointProtocol::DohFips {
                            return Err(EndpointError::TargetProtocol {
                                at: self.locate(&target_field),
                                rule: rule.id.clone(),
                                target: target.address().to_string(),
                                protocol,
                                endpoint: endpoint_id.clone(),
                                offered,
                            });
                        }
                        let address = target.address();
                        let server = if protocol == EndpointProtocol::DoH {
                            let mut server = UpstreamServer::new(address, Protocol::Https);
                            server.tls_name = target.server_name.clone();
                            if let Some(path) = &target.doh_path {
                                server.doh_path = path.clone();
                            }
                            server
                        } else {
                            if target.server_name.is_some() || target.doh_path.is_some() {
                                return Err(EndpointError::Invalid {
                                    at: self.locate(&target_field),
                                    problem: "server_name and doh_path are for DoH targets",
                                });
                            }
                            UpstreamServer::udp(address)
                        };
                        let mut server = server;
                        server.source = sources.get(target_index % sources.len().max(1)).copied();
                        shown.push(format!("{address} ({protocol})"));
                        servers.push(server);
                    }
                    let mut group = GroupConfig::new(forward_group(&rule.id), servers);
                    if let Some(endpoint) = self.outbound_endpoints.get(endpoint_index) {
                        group.tls = TlsOptions {
                            ca_file: endpoint
                                .ca_file
                                .as_ref()
                                .or(self.outbound_ca_file.as_ref())
                                .map(|file| base_dir.join(file)),
                            ignore_system_roots: endpoint.ignore_system_roots,
                            fips: false,
                        };
                    }
                    groups.push(group);
                    (
                        Action::Forward { group: forward_group(&rule.id), forward_first: false },
                        RouteTarget::Forward { rule: rule.id.clone(), endpoint: endpoint_id.clone(), targets: shown },
                    )
                }
            };
            routes.push((domain.clone(), route));
            // A rule associated with no VPC exists but has no effect; with no
            // views it would land in the default view, so it is left out.
            if !rule.vpcs.is_empty() {
                specs.push(RuleSpec::new(rule.id.clone(), Matcher::Suffix(domain), action).in_views(rule.vpc_ids()));
            }
        }
        Ok((specs, groups, routes))
    }

    /// Every endpoint's addresses fit its `endpoint_type`, and an inbound
    /// endpoint has no address twice.
    fn check_endpoint_addresses(&self) -> Result<(), EndpointError> {
        let inbound =
            self.inbound_endpoints.iter().map(|e| ("inbound_endpoints", &e.id, e.endpoint_type, &e.addresses));
        let outbound =
            self.outbound_endpoints.iter().map(|e| ("outbound_endpoints", &e.id, e.endpoint_type, &e.addresses));
        let mut index_of = HashMap::new();
        for (list, id, given, addresses) in inbound.chain(outbound) {
            let index = index_of.entry(list).or_insert(0usize);
            let field = format!("{list}[{index}]");
            *index += 1;
            let endpoint_type = EndpointType::of(given, addresses);
            for (address_index, address) in addresses.iter().enumerate() {
                let at = || self.locate(&format!("{field}.addresses[{address_index}]"));
                if let Some(problem) = endpoint_type.address_problem(address) {
                    return Err(EndpointError::AddressFamily {
                        at: at(),
                        endpoint: id.clone(),
                        endpoint_type: endpoint_type.as_str(),
                        problem,
                    });
                }
                let mut earlier = addresses.iter().take(address_index).flat_map(EndpointAddress::ips);
                if list == "inbound_endpoints"
                    && let Some(twice) = earlier.find(|ip| address.ips().any(|own| own == *ip))
                {
                    return Err(EndpointError::Duplicate { at: at(), what: "endpoint address", id: twice.to_string() });
                }
            }
        }
        Ok(())
    }

    fn compile_listeners(
        &self,
        resolvers: &[SocketAddr],
        inbound: &[Protocols],
        base_dir: &Path,
    ) -> Result<(Vec<ListenerConfig>, Vec<PlannedListener>), EndpointError> {
        let mut listeners = Vec::new();
        let mut planned = Vec::new();
        let mut taken: HashMap<(SocketAddr, bool), String> = HashMap::new();
        let mut claim = |address: SocketAddr, udp: bool, field: String| -> Result<(), EndpointError> {
            if address.port() == 0 {
                return Ok(());
            }
            if taken.insert((address, udp), field.clone()).is_some() {
                return Err(EndpointError::Duplicate {
                    at: self.locate(&field),
                    what: if udp { "UDP listening address" } else { "TCP listening address" },
                    id: address.to_string(),
                });
            }
            Ok(())
        };
        for (index, (vpc, resolver)) in self.vpcs.iter().zip(resolvers).enumerate() {
            // enableDnsSupport off: the VPC has no resolver (queries to it go unanswered, as in AWS).
            if vpc.dns_support == Some(false) {
                continue;
            }
            let field =
                if vpc.resolver.is_some() { format!("vpcs[{index}].resolver") } else { format!("vpcs[{index}]") };
            for transport in [Transport::Udp, Transport::Tcp] {
                claim(*resolver, transport == Transport::Udp, field.clone())?;
                let mut listener = ListenerConfig::new(transport, *resolver);
                listener.id = Some(resolver_listener_id(&vpc.id, transport));
                // The VPC resolver answers its own VPC only (and, when it
                // sits outside the VPC's blocks, this host's loopback clients).
                let mut allow = vpc.cidrs.clone();
                if !resolver_inside(vpc, resolver.ip()) {
                    allow.extend(loopback_networks());
                }
                listener.allow = Some(allow);
                listener.workers = self.udp_workers;
                planned.push(PlannedListener {
                    id: resolver_listener_id(&vpc.id, transport),
                    role: ListenerRole::VpcResolver { vpc: vpc.id.clone() },
                    protocol: EndpointProtocol::Do53,
                    transport,
                });
                listeners.push(listener);
            }
        }
        for (index, endpoint) in self.inbound_endpoints.iter().enumerate() {
            let field = format!("inbound_endpoints[{index}]");
            self.vpc_known(&format!("{field}.vpc"), &endpoint.vpc)?;
            if endpoint.addresses.len() < 2 {
                return Err(EndpointError::TooFewAddresses {
                    at: self.locate(&format!("{field}.addresses")),
                    endpoint: endpoint.id.clone(),
                    count: endpoint.addresses.len(),
                });
            }
            let protocols = inbound.get(index).copied().unwrap_or(Protocols::DO53);
            let tls = if protocols.has_https() { self.inbound_tls(index, endpoint, base_dir)? } else { None };
            // A DUALSTACK address listens on both of its addresses. IPv6
            // addresses this host does not have (anything but ::1 on a test
            // machine) are kept for the API but not listened on: the
            // endpoint answers on the others.
            let listening: Vec<(usize, IpAddr)> = endpoint
                .addresses
                .iter()
                .enumerate()
                .flat_map(|(address_index, address)| address.ips().map(move |ip| (address_index, ip)))
                .filter(|(_, ip)| ip.is_ipv4() || crate::control::is_local_address(*ip))
                .collect();
            for (address_index, ip) in listening {
                let address = &ip;
                let address_field = format!("{field}.addresses[{address_index}]");
                let mut add = |transport: Transport, port: u16, protocol: EndpointProtocol| {
                    let socket = SocketAddr::new(*address, port);
                    claim(socket, transport == Transport::Udp, address_field.clone())?;
                    let id = inbound_listener_id(&endpoint.id, *address, transport);
                    let mut listener = ListenerConfig::new(transport, socket);
                    listener.id = Some(id.clone());
                    listener.allow = endpoint.allow.clone().or_else(|| Some(default_allow_list()));
                    listener.workers = self.udp_workers;
                    listener.client_rate_limit = false;
                    if transport == Transport::Doh {
                        listener.doh_path = endpoint.doh_path.clone();
                        listener.tls_fips = protocol == EndpointProtocol::DohFips;
                        if let Some(files) = &tls {
                            listener.tls_cert = Some(files.cert.clone());
                            listener.tls_key = Some(files.key.clone());
                        }
                    }
                    planned.push(PlannedListener {
                        id,
                        role: ListenerRole::InboundEndpoint {
                            endpoint: endpoint.id.clone(),
                            vpc: endpoint.vpc.clone(),
                        },
                        protocol,
                        transport,
                    });
                    listeners.push(listener);
                    Ok::<(), EndpointError>(())
                };
                if protocols.do53 {
                    let port = endpoint.port.unwrap_or(self.resolver_port);
                    add(Transport::Udp, port, EndpointProtocol::Do53)?;
                    add(Transport::Tcp, port, EndpointProtocol::Do53)?;
                }
                if protocols.doh {
                    add(Transport::Doh, endpoint.doh_port.unwrap_or(self.doh_port), EndpointProtocol::DoH)?;
                }
                if protocols.doh_fips {
                    add(Transport::Doh, endpoint.doh_port.unwrap_or(self.doh_port), EndpointProtocol::DohFips)?;
                }
            }
        }
        Ok((listeners, planned))
    }

    /// The certificate and key of an inbound endpoint that serves DoH, checked by loading them.
    fn inbound_tls(
        &self,
        index: usize,
        endpoint: &InboundEndpointConfig,
        base_dir: &Path,
    ) -> Result<Option<TlsFiles>, EndpointError> {
        let field = format!("inbound_endpoints[{index}]");
        let generated = self.runtime.generated_tls.get(&endpoint.id);
        let files = match (&endpoint.tls_cert, &endpoint.tls_key, &self.tls, generated) {
            (Some(cert), Some(key), _, _) => TlsFiles { cert: cert.clone(), key: key.clone() },
            (None, None, Some(files), _) | (None, None, None, Some(files)) => files.clone(),
            (Some(_), None, _, _) | (None, Some(_), _, _) => {
                return Err(EndpointError::Invalid {
                    at: self.locate(&format!("{field}.tls_cert")),
                    problem: "tls_cert and tls_key go together",
                });
            }
            // Served with a state directory, its CA will sign one.
            (None, None, None, None) if self.runtime.certificates_later => return Ok(None),
            (None, None, None, None) => {
                return Err(EndpointError::Invalid {
                    at: self.locate(&format!("{field}.protocols")),
                    problem: "an endpoint serving DoH needs a certificate: give tls_cert and tls_key, or a [tls] section",
                });
            }
        };
        let files = TlsFiles { cert: base_dir.join(files.cert), key: base_dir.join(files.key) };
        let fips = self.inbound_protocols(index)?.doh_fips;
        signpost_server::tls::server_config(&endpoint.id, &files.cert, &files.key, &[b"h2", b"http/1.1"], fips)?;
        Ok(Some(files))
    }

    fn recursive_group(&self, base_dir: &Path, own: &[SocketAddr]) -> Result<GroupConfig, EndpointError> {
        let recursive = &self.recursive;
        if !recursive.servers.is_empty() {
            if recursive.resolv_conf.is_some() {
                return Err(EndpointError::Invalid {
                    at: self.locate("recursive.resolv_conf"),
                    problem: "give servers or resolv_conf, not both",
                });
            }
            let servers =
                recursive.servers.iter().map(|server| UpstreamServer::udp(server.with_default_port(53))).collect();
            return Ok(GroupConfig::new(RECURSIVE_GROUP, servers));
        }
        let path = match &recursive.resolv_conf {
            Some(path) => base_dir.join(path),
            None => PathBuf::from("/etc/resolv.conf"),
        };
        let conf = ResolvConf::load(&path).map_err(|source| EndpointError::Upstream {
            context: format!("the recursive default ({})", path.display()),
            source,
        })?;
        Ok(conf.to_group(RECURSIVE_GROUP, own))
    }

    fn query_logs(&self, base_dir: &Path) -> Result<Vec<QueryLogConfig>, EndpointError> {
        let files_dir = self.runtime.files_dir.clone().unwrap_or_else(|| base_dir.to_path_buf());
        let mut by_destination: BTreeMap<String, (LogDestination, BTreeSet<String>)> = BTreeMap::new();
        for (index, log) in self.query_logging.iter().enumerate() {
            let destination = destinations::resolve(&log.destination, base_dir, &files_dir).map_err(|problem| {
                EndpointError::Destination { at: self.locate(&format!("query_logging[{index}].destination")), problem }
            })?;
            // A configuration associated with no VPC logs nothing.
            if log.vpcs.is_empty() {
                continue;
            }
            let key = match &destination {
                LogDestination::File(path) => path.display().to_string(),
                _ => "stdout".to_string(),
            };
            by_destination.entry(key).or_insert_with(|| (destination, BTreeSet::new())).1.extend(log.vpc_ids());
        }
        Ok(by_destination
            .into_values()
            .map(|(destination, vpcs)| QueryLogConfig {
                enabled: true,
                destination,
                forwarded: true,
                views: vpcs.into_iter().collect(),
                ..QueryLogConfig::default()
            })
            .collect())
    }

    fn routes(
        &self,
        resolvers: &[SocketAddr],
        zones: &[(NameBuf, Arc<Zone>)],
        inbound: &[Protocols],
        outbound: &[Protocols],
        rule_routes: &[(NameBuf, RouteTarget)],
        recursive: &[String],
    ) -> Vec<VpcRoutes> {
        self.vpcs
            .iter()
            .zip(resolvers)
            .map(|(vpc, resolver)| {
                let mut domains: Vec<(NameBuf, RouteTarget)> = Vec::new();
                for (config, (apex, zone)) in self.private_hosted_zones.iter().zip(zones) {
                    if config.has_vpc(&vpc.id) {
                        domains.push((
                            apex.clone(),
                            RouteTarget::Zone { id: config.zone_id().to_string(), records: zone.len() },
                        ));
                    }
                }
                for (rule, route) in self.resolver_rules.iter().zip(rule_routes) {
                    if rule.has_vpc(&vpc.id) {
                        domains.push(route.clone());
                    }
                }
                domains.push((NameBuf::root(), RouteTarget::Recursive { servers: recursive.to_vec() }));
                // Parents first; at one name the rule (it wins) before the zone.
                domains.sort_by(|a, b| {
                    a.0.cmp(&b.0).then_with(|| {
                        matches!(a.1, RouteTarget::Zone { .. }).cmp(&matches!(b.1, RouteTarget::Zone { .. }))
                    })
                });
                VpcRoutes {
                    vpc: vpc.id.clone(),
                    cidrs: vpc.cidrs.clone(),
                    resolver: *resolver,
                    domains,
                    inbound: self
                        .inbound_endpoints
                        .iter()
                        .zip(inbound)
                        .filter(|(endpoint, _)| endpoint.vpc == vpc.id)
                        .map(|(endpoint, protocols)| {
                            (
                                endpoint.id.clone(),
                                endpoint.addresses.iter().map(|address| address.ip).collect(),
                                *protocols,
                            )
                        })
                        .collect(),
                    outbound: self
                        .outbound_endpoints
                        .iter()
                        .zip(outbound)
                        .filter(|(endpoint, _)| endpoint.vpc == vpc.id)
                        .map(|(endpoint, protocols)| (endpoint.id.clone(), *protocols))
                        .collect(),
                    query_logs: self
                        .query_logging
                        .iter()
                        .filter(|log| log.vpcs.iter().any(|association| association.vpc == vpc.id))
                        .map(|log| (log.id.clone(), log.destination.clone()))
                        .collect(),
                }
            })
            .collect()
    }
}

/// Group the inbound endpoint listeners by address (`listeners` and
/// `planned` are parallel), in the order the addresses first appear.
fn address_limits(listeners: &[ListenerConfig], planned: &[PlannedListener], qps: u32) -> Vec<AddressLimit> {
    let mut limits: Vec<AddressLimit> = Vec::new();
    for (listener, plan) in listeners.iter().zip(planned) {
        if !matches!(plan.role, ListenerRole::InboundEndpoint { .. }) {
            continue;
        }
        match limits.iter_mut().find(|limit| limit.address == listener.address) {
            Some(limit) => limit.listeners.push(plan.id.clone()),
            None => limits.push(AddressLimit { address: listener.address, listeners: vec![plan.id.clone()], qps }),
        }
    }
    limits
}

/// Whether `address` is in one of the VPC's blocks.
pub(crate) fn resolver_inside(vpc: &VpcConfig, address: IpAddr) -> bool {
    vpc.cidrs.iter().any(|cidr| cidr.contains(&address))
}

fn loopback_networks() -> [IpNet; 2] {
    [
        IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::new(127, 0, 0, 0), 8).unwrap_or_default()),
        IpNet::V6(ipnet::Ipv6Net::new(std::net::Ipv6Addr::LOCALHOST, 128).unwrap_or_default()),
    ]
}

fn transition(
    direction: Direction,
    endpoint: &str,
    (old_vpc, new_vpc): (&str, &str),
    from: Protocols,
    to: Protocols,
) -> Result<(), EndpointError> {
    if old_vpc != new_vpc {
        return Err(EndpointError::EndpointMoved {
            direction,
            endpoint: endpoint.to_string(),
            from: old_vpc.to_string(),
            to: new_vpc.to_string(),
        });
    }
    if from.can_change_to(to) {
        return Ok(());
    }
    // The set to pass through: Do53 plus the encrypted side of whichever end lacks Do53.
    let encrypted = if from.do53 { to } else { from };
    let through = Protocols { do53: true, ..encrypted };
    Err(EndpointError::Transition { direction, endpoint: endpoint.to_string(), from, to, through })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(endpoints: &str) -> Result<Deployment, EndpointError> {
        let text = format!(
            "resolver_port = 0\nrecursive = {{ servers = [\"127.0.0.1:5300\"] }}\nvpcs = [{{ id = \"vpc-a\", cidrs = [\"127.0.1.0/24\"] }}]\n{endpoints}\n\
             [[resolver_rules]]\nid = \"v6\"\ntype = \"FORWARD\"\ndomain = \"six.example\"\noutbound_endpoint = \"out\"\ntargets = [{{ ip = \"::1\", port = 5301 }}]\nvpcs = [\"vpc-a\"]\n\n\
             [[resolver_rules]]\nid = \"v4\"\ntype = \"FORWARD\"\ndomain = \"four.example\"\noutbound_endpoint = \"out\"\ntargets = [{{ ip = \"127.0.0.1\", port = 5301 }}]\nvpcs = [\"vpc-a\"]\n"
        );
        EndpointConfig::from_toml(&text, "endpoint.toml")?.compile()
    }

    fn source_of(deployment: &Deployment, rule: &str) -> Option<IpAddr> {
        let group = deployment.groups.iter().find(|group| group.name == forward_group(rule))?;
        group.servers.first()?.source
    }

    #[tokio::test]
    async fn a_dualstack_outbound_endpoint_sends_from_the_address_of_the_target_s_family() {
        let deployment = compiled(
            "[[outbound_endpoints]]\nid = \"out\"\nvpc = \"vpc-a\"\nendpoint_type = \"DUALSTACK\"\n\
             addresses = [{ ip = \"127.0.1.20\", ipv6 = \"::1\" }, { ip = \"127.0.1.21\", ipv6 = \"fd00:ec2::21\" }]\n",
        )
        .unwrap();
        assert_eq!(source_of(&deployment, "v6"), Some("::1".parse().unwrap()));
        assert_eq!(source_of(&deployment, "v4"), Some("127.0.1.20".parse().unwrap()));
    }

    #[tokio::test]
    async fn a_single_family_endpoint_refuses_targets_of_the_other() {
        let error = compiled(
            "[[outbound_endpoints]]\nid = \"out\"\nvpc = \"vpc-a\"\naddresses = [\"127.0.1.20\", \"127.0.1.21\"]\n",
        )
        .err()
        .unwrap();
        assert!(matches!(error, EndpointError::TargetFamily { family: 6, endpoint_type: "IPV4", .. }), "{error}");
        let error =
            compiled("[[outbound_endpoints]]\nid = \"out\"\nvpc = \"vpc-a\"\naddresses = [\"::1\", \"fd00:ec2::2\"]\n")
                .err()
                .unwrap();
        assert!(matches!(error, EndpointError::TargetFamily { family: 4, endpoint_type: "IPV6", .. }), "{error}");
    }

    #[test]
    fn addresses_are_held_to_the_endpoint_type() {
        let inbound = |endpoint_type: &str, addresses: &str| {
            let text = format!(
                "resolver_port = 0\nrecursive = {{ servers = [\"127.0.0.1:5300\"] }}\nvpcs = [{{ id = \"vpc-a\", cidrs = [\"127.0.1.0/24\"] }}]\n\
                 [[inbound_endpoints]]\nid = \"in\"\nvpc = \"vpc-a\"\nendpoint_type = \"{endpoint_type}\"\naddresses = {addresses}\n"
            );
            EndpointConfig::from_toml(&text, "endpoint.toml").unwrap().check_endpoint_addresses()
        };
        assert!(
            inbound("DUALSTACK", r#"[{ ip = "127.0.1.10", ipv6 = "::1" }, { ip = "127.0.1.11", ipv6 = "fd00::11" }]"#)
                .is_ok()
        );
        assert!(inbound("IPV6", r#"["::1", "fd00::11"]"#).is_ok());
        for (endpoint_type, addresses) in [
            ("DUALSTACK", r#"["127.0.1.10", "127.0.1.11"]"#),
            ("IPV4", r#"["127.0.1.10", "::1"]"#),
            ("IPV6", r#"[{ ip = "::1", ipv6 = "fd00::1" }, "fd00::11"]"#),
            ("DUALSTACK", r#"[{ ip = "::1", ipv6 = "fd00::1" }, { ip = "127.0.1.11", ipv6 = "fd00::11" }]"#),
        ] {
            let error = inbound(endpoint_type, addresses).err().unwrap();
            assert!(matches!(error, EndpointError::AddressFamily { .. }), "{endpoint_type} {addresses}: {error}");
        }
        // One address twice, across the two families of a DUALSTACK endpoint too.
        let error =
            inbound("DUALSTACK", r#"[{ ip = "127.0.1.10", ipv6 = "::1" }, { ip = "127.0.1.11", ipv6 = "::1" }]"#)
                .err()
                .unwrap();
        assert!(matches!(error, EndpointError::Duplicate { .. }), "{error}");
    }
}
