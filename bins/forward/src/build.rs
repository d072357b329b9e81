//! From a [`ForwarderConfig`] to the rule set, upstream groups and server
//! configuration a running forwarder needs.

use core::fmt;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use signpost_dnssec::{LocatedError, TrustAnchors, TrustPoint, Validator, ValidatorConfig};
use signpost_rules::config::{ActionKind, RuleConfig, RulesConfig};
use signpost_rules::{Allocations, DEFAULT_VIEW, Location, RuleSet};
use signpost_upstream::{GroupConfig, Protocol, ResolvConf, Upstreams};
use signpost_wire::NameBuf;

use crate::acl::{allowed_networks, parse_network};
use crate::config::{ForwarderConfig, ServerSpec, inline_group, parse_server, set_if_given};
use crate::error::{ConfigError, Warning};
use signpost_server::State;
use signpost_server::{HealthConfig, ListenerConfig, ReadyConfig, ServerConfig, Transport};

/// The group the system's resolv.conf makes when nothing else is the default.
pub const SYSTEM_GROUP: &str = "system";

/// The resolv.conf read for the `system` group unless another is given.
pub const SYSTEM_RESOLV_CONF: &str = "/etc/resolv.conf";

/// How to build: where relative paths start, and what to carry over from a
/// running forwarder.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Zone, hosts, state and resolv.conf files are relative to this
    /// directory (usually the configuration file's).
    pub base_dir: PathBuf,
    /// Read the `system` group from this resolv.conf, whatever the configuration says.
    pub resolv_conf: Option<PathBuf>,
    /// Automatic host addresses of the rule set being replaced, kept when
    /// there is no state file (reload).
    pub previous_allocations: Option<Allocations>,
    /// Write the allocation state file after building (not for `check-config`).
    pub save_allocations: bool,
}

/// Where names matching a pattern go: one line of the start-up banner and of `check-config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The matcher (`corp.example.com`, `*.corp.example.com`, `=host.example`); `.` for the default.
    pub pattern: String,
    /// The upstream group.
    pub group: String,
    /// Whether failures fall back to the default group.
    pub forward_first: bool,
    /// The views it applies in (empty: the default view).
    pub views: Vec<String>,
    /// The group's servers (`udp://10.0.0.2:53`).
    pub servers: Vec<String>,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} [{}]", self.pattern, self.group, self.servers.join(", "))?;
        if self.forward_first {
            f.write_str(" (forward-first)")?;
        }
        if !self.views.is_empty() && self.views.iter().any(|view| view != DEFAULT_VIEW) {
            write!(f, " (views {})", self.views.join(", "))?;
        }
        Ok(())
    }
}

/// A built forwarder: everything [`Server::builder`](crate::Server::builder) takes.
pub struct Forwarder {
    /// The rule set.
    pub rules: RuleSet,
    /// The upstream groups.
    pub upstreams: Upstreams,
    /// Listeners (with their allow-lists), cache, query log, limits, EDNS, admin.
    pub server: ServerConfig,
    /// The forward rules, most specific name first.
    pub routes: Vec<Route>,
    /// Where names nothing matches go, if anywhere.
    pub default_route: Option<Route>,
    /// What start-up should mention.
    pub warnings: Vec<Warning>,
    /// Where `unbound-control` connects, if anywhere (read at start-up only).
    pub remote_control: Option<crate::control::RemoteControlConfig>,
    /// The `auth_zones`, for the transfer tasks start-up runs.
    pub auth_zones: Vec<AuthZone>,
    /// DNSSEC validation, when on.
    pub validator: Option<Arc<Validator>>,
    /// `/health` and the lame-duck period, when configured.
    pub health: Option<HealthConfig>,
    /// `/ready`, when configured.
    pub ready: Option<ReadyConfig>,
}

/// An `auth_zones` entry, checked: what the running forwarder needs to
/// keep a secondary fresh or give a zone out by transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthZone {
    /// The zone's id in the rule set (`auth-zone NAME`).
    pub id: String,
    /// The apex.
    pub apex: NameBuf,
    /// Primaries to transfer from; empty for a zone read from its file.
    pub primaries: Vec<SocketAddr>,
    /// The master file (absolute): read at start-up, written after each transfer.
    pub zonefile: Option<PathBuf>,
    /// Who may send NOTIFY besides the primaries.
    pub allow_notify: Vec<IpNet>,
    /// Who may transfer the zone from the forwarder.
    pub allow_transfer: Vec<IpNet>,
    /// Whether clients are answered from the zone.
    pub answers: bool,
    /// Whether names are forwarded while a secondary has no copy.
    pub fallback_enabled: bool,
    /// The TSIG key of transfers and NOTIFY (checked: [`TsigKeyConfig::key`] succeeds).
    pub tsig_key: Option<signpost_server::transfer::TsigKeyConfig>,
    /// Secondaries to send NOTIFY to when the zone changes.
    pub notify: Vec<SocketAddr>,
}

impl AuthZone {
    /// The TSIG key, ready to sign and verify.
    pub fn key(&self) -> Option<signpost_wire::TsigKey> {
        self.tsig_key.as_ref().and_then(|key| key.key().ok())
    }
}

impl fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forwarder")
            .field("routes", &self.routes)
            .field("default_route", &self.default_route)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// Rules and upstreams as the server swaps them in.
    pub fn into_state(self) -> State {
        let mut state = State::new(Arc::new(self.rules), Arc::new(self.upstreams));
        state.validator = self.validator;
        state
    }

    /// What `check-config` prints: listeners, forward zones, then every
    /// matcher of the rule set view by view.
    pub fn describe(&self) -> String {
        let mut out = String::from("listeners:\n");
        for listener in &self.server.listeners {
            out.push_str(&format!("  {} {}", listener.transport.as_str(), listener.socket_address()));
            if let Some(allow) = &listener.allow {
                let networks: Vec<String> = allow.iter().map(ToString::to_string).collect();
                out.push_str(&format!(
                    " (allow {})",
                    if networks.is_empty() { "nobody".into() } else { networks.join(" ") }
                ));
            }
            out.push('\n');
        }
        out.push_str("forward zones (the most specific name wins):\n");
        for route in &self.routes {
            out.push_str(&format!("  {route}\n"));
        }
        match &self.default_route {
            Some(route) => out.push_str(&format!("  {route} (default)\n")),
            None => out.push_str("  . -> REFUSED (no default group)\n"),
        }
        out.push_str("rules:\n");
        for line in self.rules.describe().lines() {
            out.push_str(&format!("  {line}\n"));
        }
        out
    }
}

impl ForwarderConfig {
    /// Check everything and build rules, upstreams and server configuration.
    pub fn build(&self, options: &BuildOptions) -> Result<Forwarder, ConfigError> {
        let mut warnings = Vec::new();
        let server = self.server_config()?;

        // Upstream groups: [[upstreams]], then each forward zone's own.
        let mut groups: Vec<(GroupConfig, Location)> = Vec::new();
        for (index, group) in self.upstreams.iter().enumerate() {
            let at = self.locate(&format!("upstreams[{index}].name"));
            if let Some((_, first)) = groups.iter().find(|(existing, _)| existing.name == group.name) {
                return Err(ConfigError::from(signpost_rules::Error::Duplicate {
                    at,
                    what: "upstream group",
                    name: group.name.clone(),
                    first: first.clone(),
                }));
            }
            groups.push((group.clone(), at));
        }
        let views = self.view_names();
        let mut forward_rules: Vec<(RuleConfig, usize)> = Vec::new();
        let mut zone_names: BTreeMap<(NameBuf, Vec<String>), Location> = BTreeMap::new();
        let mut root_group: Option<(String, Location)> = None;
        for (index, zone) in self.forward_zones.iter().enumerate() {
            let field = format!("forward_zones[{index}]");
            let at = self.locate(&format!("{field}.name"));
            let name = zone.name.parse::<NameBuf>().map_err(|source| {
                ConfigError::from(signpost_rules::Error::InvalidName {
                    at: at.clone(),
                    text: zone.name.clone(),
                    source,
                })
            })?;
            let mut zone_views = zone.views.clone();
            zone_views.sort();
            if let Some(first) = zone_names.insert((name.to_lowercase(), zone_views), at.clone()) {
                return Err(ConfigError::from(signpost_rules::Error::Duplicate {
                    at,
                    what: "forward zone",
                    name: zone.name.clone(),
                    first,
                }));
            }
            for (view_index, view) in zone.views.iter().enumerate() {
                if view != "*" && !views.contains(view) {
                    return Err(ConfigError::Malformed {
                        at: self.locate(&format!("{field}.views[{view_index}]")),
                        keyword: format!("view {view:?}"),
                        problem: "is not defined in [[views]]",
                    });
                }
            }
            let group = match (&zone.group, zone.servers.is_empty()) {
                (Some(_), false) => {
                    return Err(ConfigError::Malformed {
                        at: self.locate(&format!("{field}.servers")),
                        keyword: format!("forward zone {:?}", zone.name),
                        problem: "has both group and servers: give one",
                    });
                }
                (Some(group), true) => {
                    if !groups.iter().any(|(existing, _)| existing.name == *group) {
                        return Err(ConfigError::from(signpost_rules::Error::UnknownGroup {
                            at: self.locate(&format!("{field}.group")),
                            group: group.clone(),
                        }));
                    }
                    group.clone()
                }
                (None, true) => return Err(ConfigError::NoServers { at, zone: zone.name.clone() }),
                (None, false) => {
                    let mut servers = Vec::with_capacity(zone.servers.len());
                    for (server_index, spec) in zone.servers.iter().enumerate() {
                        servers.push(match spec {
                            ServerSpec::Table(server) => server.clone(),
                            ServerSpec::Text(text) => {
                                parse_server(text, Protocol::Udp).ok_or_else(|| ConfigError::InvalidValue {
                                    at: self.locate(&format!("{field}.servers[{server_index}]")),
                                    what: "server",
                                    text: text.clone(),
                                    expected: "[udp|tcp|tls|https://]IP[:port|@port][/path][#tls-name]",
                                })?
                            }
                        });
                    }
                    let group = inline_group(zone, servers);
                    if let Some((_, first)) = groups.iter().find(|(existing, _)| existing.name == group.name) {
                        return Err(ConfigError::from(signpost_rules::Error::Duplicate {
                            at,
                            what: "upstream group",
                            name: group.name,
                            first: first.clone(),
                        }));
                    }
                    let name = group.name.clone();
                    groups.push((group, at.clone()));
                    name
                }
            };
            if name.is_root() && zone.views.is_empty() {
                if self.default_group.is_some() {
                    return Err(ConfigError::ConflictingDefault { at });
                }
                root_group = Some((group, at));
                continue;
            }
            forward_rules.push((forward_rule(&format!("forward-zone {}", zone.name), &zone.name, group, zone), index));
        }

        // The default group.
        let mut known: Vec<String> = groups.iter().map(|(group, _)| group.name.clone()).collect();
        let default_group = match (&self.default_group, root_group) {
            (Some(group), _) => {
                if !known.contains(group) {
                    return Err(ConfigError::from(signpost_rules::Error::UnknownGroup {
                        at: self.locate("default_group"),
                        group: group.clone(),
                    }));
                }
                Some(group.clone())
            }
            (None, Some((group, _))) => Some(group),
            (None, None) => {
                known.push(SYSTEM_GROUP.to_owned());
                match self.system_group(options, &server, &mut warnings)? {
                    Some(group) => {
                        groups.push((group, self.locate("resolv_conf")));
                        Some(SYSTEM_GROUP.to_owned())
                    }
                    None => None,
                }
            }
        };

        // The rule set.
        let mut rules_config = RulesConfig::default();
        rules_config.default_group = default_group.clone();
        rules_config.allocation = self.allocation.clone();
        rules_config.views = self.views.clone();
        rules_config.zones = self.zones.clone();
        let auth_zones = self.auth_zones(&options.base_dir)?;
        for zone in &auth_zones {
            // A zone from its file, or a secondary's last good copy: served from the start.
            let readable = zone.zonefile.as_ref().is_some_and(|file| zone.primaries.is_empty() || file.exists());
            if zone.answers && readable {
                rules_config.zones.push(signpost_rules::config::ZoneConfig {
                    name: zone.apex.to_string(),
                    id: Some(zone.id.clone()),
                    file: zone.zonefile.clone(),
                    ..Default::default()
                });
            }
        }
        rules_config.host_tables = self.host_tables.clone();
        rules_config.exceptions = self.exceptions.clone();
        rules_config.rules = self.rules.clone();
        let user_rules = self.rules.len();
        rules_config.rules.extend(forward_rules.iter().map(|(rule, _)| rule.clone()));
        if let Some(source) = &self.origin.toml {
            rules_config.set_source(source.0.clone(), &source.1, "");
        }
        let relocate = |error: signpost_rules::Error| self.relocate(error, user_rules, &forward_rules);
        let known_refs: Vec<&str> = known.iter().map(String::as_str).collect();
        let mut builder = rules_config.to_builder(&options.base_dir, &known_refs).map_err(relocate)?;
        if self.allocation.state_file.is_none()
            && let Some(previous) = &options.previous_allocations
        {
            builder.allocation_state(previous.clone());
        }
        let rules = builder.build().map_err(relocate)?;
        if options.save_allocations
            && let Some(state_file) = &self.allocation.state_file
        {
            rules.allocations().save(&options.base_dir.join(state_file))?;
        }

        // Upstreams.
        let configs: Vec<GroupConfig> = groups.iter().map(|(group, _)| group.clone()).collect();
        let upstreams = match Upstreams::new(configs) {
            Ok(upstreams) => upstreams,
            Err(source) => {
                let at = groups
                    .iter()
                    .find(|(group, _)| Upstreams::new(vec![group.clone()]).is_err())
                    .map_or_else(Location::default, |(_, at)| at.clone());
                return Err(ConfigError::Upstream { at, source });
            }
        };

        let describe_group = |name: &str| -> Vec<String> {
            groups
                .iter()
                .find(|(group, _)| group.name == name)
                .map(|(group, _)| group.servers.iter().map(ToString::to_string).collect())
                .unwrap_or_default()
        };
        let mut routes: Vec<Route> = rules_config
            .rules
            .iter()
            .filter(|rule| rule.action == ActionKind::Forward)
            .filter_map(|rule| {
                let group = rule.group.clone()?;
                let pattern = match (&rule.suffix, &rule.exact, &rule.wildcard, &rule.regex) {
                    (Some(suffix), ..) => suffix.clone(),
                    (_, Some(exact), ..) => format!("={exact}"),
                    (_, _, Some(wildcard), _) => {
                        if wildcard.starts_with("*.") {
                            wildcard.clone()
                        } else {
                            format!("*.{wildcard}")
                        }
                    }
                    (_, _, _, Some(regex)) => format!("/{regex}/"),
                    _ => return None,
                };
                Some(Route {
                    pattern,
                    servers: describe_group(&group),
                    group,
                    forward_first: rule.forward_first,
                    views: rule.views.clone(),
                })
            })
            .collect();
        routes.sort_by_key(|route| std::cmp::Reverse(specificity(&route.pattern)));
        let default_route = default_group.map(|group| Route {
            pattern: ".".into(),
            servers: describe_group(&group),
            group,
            forward_first: false,
            views: Vec::new(),
        });
        let validator = self.validator(&options.base_dir)?.map(Arc::new);
        Ok(Forwarder {
            rules,
            upstreams,
            server,
            routes,
            default_route,
            warnings,
            remote_control: self.remote_control.clone(),
            auth_zones,
            validator,
            health: self.health.clone(),
            ready: self.ready.clone(),
        })
    }

    /// Check `auth_zones`: names, primaries, networks.
    fn auth_zones(&self, base_dir: &Path) -> Result<Vec<AuthZone>, ConfigError> {
        let mut out = Vec::with_capacity(self.auth_zones.len());
        for (index, auth) in self.auth_zones.iter().enumerate() {
            let at = |field: &str| self.locate(&format!("auth_zones[{index}].{field}"));
            let invalid = |field: &str, what, text: &str, expected| ConfigError::InvalidValue {
                at: at(field),
                what,
                text: text.to_owned(),
                expected,
            };
            let apex: NameBuf =
                auth.name.parse().map_err(|_| invalid("name", "zone name", &auth.name, "a domain name"))?;
            let mut primaries = Vec::with_capacity(auth.primaries.len());
            for text in &auth.primaries {
                primaries.push(parse_primary(text).ok_or_else(|| {
                    invalid("primaries", "primary", text, "an IP address, ADDRESS:PORT or ADDRESS@PORT")
                })?);
            }
            let networks = |field: &str, texts: &[String]| -> Result<Vec<IpNet>, ConfigError> {
                texts
                    .iter()
                    .map(|text| {
                        parse_network(text).ok_or_else(|| invalid(field, "network", text, "an address or network"))
                    })
                    .collect()
            };
            let tsig_key = match &auth.tsig_key {
                Some(name) => {
                    let (index, key) =
                        self.tsig_keys.iter().enumerate().find(|(_, key)| key.is_named(name)).ok_or_else(|| {
                            invalid("tsig_key", "TSIG key", name, "the name of a [[tsig_keys]] entry")
                        })?;
                    key.key().map_err(|problem| ConfigError::Malformed {
                        at: self.locate(&format!("tsig_keys[{index}]")),
                        keyword: format!("TSIG key {name}"),
                        problem,
                    })?;
                    Some(key.clone())
                }
                None => None,
            };
            let mut notify = Vec::with_capacity(auth.notify.len());
            for text in &auth.notify {
                notify.push(parse_primary(text).ok_or_else(|| {
                    invalid("notify", "secondary", text, "an IP address, ADDRESS:PORT or ADDRESS@PORT")
                })?);
            }
            if !notify.is_empty() && auth.allow_transfer.is_empty() {
                return Err(ConfigError::Malformed {
                    at: at("notify"),
                    keyword: format!("auth zone {apex}"),
                    problem: "NOTIFY tells secondaries to transfer the zone: allow_transfer must let them",
                });
            }
            if primaries.is_empty() && auth.zonefile.is_none() {
                return Err(ConfigError::Malformed {
                    at: at("name"),
                    keyword: format!("auth zone {apex}"),
                    problem: "needs primaries to transfer from or a zonefile to read",
                });
            }
            out.push(AuthZone {
                id: format!("auth-zone {apex}"),
                zonefile: auth.zonefile.as_ref().map(|file| base_dir.join(file)),
                primaries,
                allow_notify: networks("allow_notify", &auth.allow_notify)?,
                allow_transfer: networks("allow_transfer", &auth.allow_transfer)?,
                answers: auth.for_downstream || auth.for_upstream,
                fallback_enabled: auth.fallback_enabled,
                tsig_key,
                notify,
                apex,
            });
        }
        Ok(out)
    }

    fn view_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.views.iter().map(|view| view.name.clone()).collect();
        names.push(DEFAULT_VIEW.to_owned());
        names
    }

    /// Listeners (with the access-control allow-list), cache, log, limits, EDNS, admin.
    fn server_config(&self) -> Result<ServerConfig, ConfigError> {
        let mut listeners = self.listeners.clone();
        if listeners.is_empty() {
            let address = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53);
            listeners.push(ListenerConfig::new(Transport::Udp, address));
            listeners.push(ListenerConfig::new(Transport::Tcp, address));
        }
        // `::` before `0.0.0.0`: binding the IPv4 wildcard first makes the
        // server's free-port probe for `::` (a dual-stack bind) fail.
        listeners.sort_by_key(|listener| !(listener.address.is_ipv6() && listener.address.is_unspecified()));
        if !self.access_control.is_empty() {
            let mut entries = Vec::with_capacity(self.access_control.len());
            for (index, entry) in self.access_control.iter().enumerate() {
                let network: IpNet = parse_network(&entry.network).ok_or_else(|| ConfigError::InvalidValue {
                    at: self.locate(&format!("access_control[{index}].network")),
                    what: "network",
                    text: entry.network.clone(),
                    expected: "an IP network such as 10.0.0.0/8 or an address",
                })?;
                entries.push((network, entry.action));
            }
            let allowed = allowed_networks(&entries);
            for listener in listeners.iter_mut().filter(|listener| listener.allow.is_none()) {
                listener.allow = Some(allowed.clone());
            }
        }
        if let Some(dnstap) = self.dnstap.as_ref().filter(|dnstap| dnstap.enable) {
            // The TLS files are read when the server starts (the error names the file).
            let problem = if dnstap.tls && dnstap.address.is_none() {
                Some(("dnstap.tls", "TLS goes to the collector's TCP address: give address, not only socket_path"))
            } else if dnstap.tls_client_cert_file.is_some() != dnstap.tls_client_key_file.is_some() {
                Some(("dnstap.tls_client_cert_file", "tls_client_cert_file and tls_client_key_file go together"))
            } else if dnstap.socket_path.is_none() && dnstap.address.is_none() {
                Some(("dnstap", "needs socket_path (a unix socket) or address (TCP) of the collector"))
            } else {
                None
            };
            if let Some((field, problem)) = problem {
                return Err(ConfigError::Malformed { at: self.locate(field), keyword: field.into(), problem });
            }
        }
        Ok(ServerConfig {
            listeners,
            cache: self.cache.clone(),
            query_log: self.query_log.clone(),
            limits: self.limits.clone(),
            edns: self.edns.clone(),
            admin: self.admin.clone(),
            dnstap: self.dnstap.clone(),
        })
    }

    /// The `system` group from resolv.conf, without our own listening addresses.
    fn system_group(
        &self,
        options: &BuildOptions,
        server: &ServerConfig,
        warnings: &mut Vec<Warning>,
    ) -> Result<Option<GroupConfig>, ConfigError> {
        let (path, explicit) = match (&options.resolv_conf, &self.resolv_conf) {
            (Some(path), _) => (path.clone(), true),
            (None, Some(path)) => (options.base_dir.join(path), true),
            (None, None) => (PathBuf::from(SYSTEM_RESOLV_CONF), false),
        };
        let conf = match ResolvConf::load(&path) {
            Ok(conf) => conf,
            Err(error) if !explicit => {
                warnings.push(Warning::NoDefaultGroup { reason: error.to_string() });
                return Ok(None);
            }
            Err(_) => {
                let source = std::fs::read(&path).err().unwrap_or_else(|| std::io::Error::other("unreadable"));
                return Err(signpost_rules::Error::io(self.locate("resolv_conf"), path, source).into());
            }
        };
        for warning in &conf.warnings {
            warnings.push(Warning::ResolvConf { path: path.clone(), message: warning.to_string() });
        }
        let own: Vec<SocketAddr> = server.listeners.iter().map(ListenerConfig::socket_address).collect();
        let group = conf.to_group(SYSTEM_GROUP, &own);
        if group.servers.is_empty() {
            warnings.push(Warning::NoDefaultGroup {
                reason: format!("{} has no nameserver other than this server", path.display()),
            });
            return Ok(None);
        }
        Ok(Some(group))
    }

    /// Put a rule-engine error where the configuration wrote the thing it is about.
    fn relocate(
        &self,
        error: signpost_rules::Error,
        user_rules: usize,
        forward: &[(RuleConfig, usize)],
    ) -> ConfigError {
        let Some(field) = error.location().field.clone() else { return ConfigError::Config(error) };
        if let Some(rest) = field.strip_prefix("rules[")
            && let Some((number, tail)) = rest.split_once(']')
            && let Ok(index) = number.parse::<usize>()
            && index >= user_rules
            && let Some((_, zone)) = forward.get(index - user_rules)
        {
            let tail = if tail.starts_with(".suffix") { ".name" } else { "" };
            return error.relocated(self.locate(&format!("forward_zones[{zone}]{tail}"))).into();
        }
        if self.origin.toml.is_none() && !self.origin.fields.is_empty() {
            return error.relocated(self.locate(&field)).into();
        }
        ConfigError::Config(error)
    }
}

/// A forward rule for a forward zone (or, from unbound.conf, its wildcard or exact form).
pub(crate) fn forward_rule(
    id: &str,
    suffix: &str,
    group: String,
    zone: &crate::config::ForwardZoneConfig,
) -> RuleConfig {
    let mut rule = empty_rule(id, ActionKind::Forward);
    rule.suffix = Some(suffix.to_owned());
    rule.group = Some(group);
    rule.forward_first = zone.forward_first;
    rule.views = zone.views.clone();
    rule
}

/// A rule with an id, an action and nothing else.
pub(crate) fn empty_rule(id: &str, action: ActionKind) -> RuleConfig {
    RuleConfig {
        id: Some(id.to_owned()),
        views: Vec::new(),
        exact: None,
        suffix: None,
        wildcard: None,
        regex: None,
        anchor: None,
        action,
        group: None,
        forward_first: false,
        targets: Vec::new(),
        ipv4: None,
        ipv6: None,
        ttl: None,
        other_types: None,
        only_names_matching: None,
        block: None,
        sinkhole_ipv4: None,
        sinkhole_ipv6: None,
    }
}

/// Sort key: more labels first; at equal depth exact before wildcard before suffix.
fn specificity(pattern: &str) -> (usize, u8) {
    let (name, kind) = if let Some(name) = pattern.strip_prefix('=') {
        (name, 2)
    } else if let Some(name) = pattern.strip_prefix("*.") {
        (name, 1)
    } else {
        (pattern, 0)
    };
    let labels = name.trim_end_matches('.').split('.').filter(|label| !label.is_empty()).count();
    (labels, kind)
}

/// The directory relative paths in `file` start from.
pub fn base_dir_of(file: &Path) -> PathBuf {
    file.parent().filter(|parent| !parent.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// A primary as `192.0.2.1`, `192.0.2.1:5300`, `[2001:db8::1]:5300` or Unbound's `192.0.2.1@5300` (port 53 by default).
fn parse_primary(text: &str) -> Option<SocketAddr> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Some(address);
    }
    let (host, port) = match text.split_once('@') {
        Some((host, port)) => (host, port.parse().ok()?),
        None => (text, 53),
    };
    host.parse::<IpAddr>().ok().map(|address| SocketAddr::new(address, port))
}

impl ForwarderConfig {
    /// The validator `[dnssec]` describes, or `None` when validation is off.
    /// Anchor files are relative to `base_dir`.
    pub fn validator(&self, base_dir: &Path) -> Result<Option<Validator>, ConfigError> {
        let dnssec = &self.dnssec;
        if !dnssec.validate {
            return Ok(None);
        }
        let mut anchors = TrustAnchors::empty();
        for (index, file) in dnssec.trust_anchor_files.iter().enumerate() {
            anchors.add_file(&base_dir.join(file)).map_err(|source| LocatedError {
                at: self.locate(&format!("dnssec.trust_anchor_files[{index}]")),
                source,
            })?;
        }
        for (index, record) in dnssec.trust_anchors.iter().enumerate() {
            let at = self.locate(&format!("dnssec.trust_anchors[{index}]"));
            anchors.add_record(record, "trust-anchor", 1).map_err(|source| LocatedError { at, source })?;
        }
        // RFC 5011 state files: read now, tracked (and written back) by the validator.
        let mut tracked = Vec::with_capacity(dnssec.auto_trust_anchor_files.len());
        for (index, file) in dnssec.auto_trust_anchor_files.iter().enumerate() {
            let path = base_dir.join(file);
            let at = || self.locate(&format!("dnssec.auto_trust_anchor_files[{index}]"));
            let text = std::fs::read_to_string(&path).map_err(|source| LocatedError {
                at: at(),
                source: signpost_dnssec::Error::Read { path: path.clone(), source: Arc::new(source) },
            })?;
            let point = TrustPoint::parse(&text, &path.display().to_string())
                .map_err(|source| LocatedError { at: at(), source })?;
            tracked.push((point, path));
        }
        if anchors.is_empty() && tracked.is_empty() {
            anchors = TrustAnchors::root();
        }
        let mut insecure = Vec::with_capacity(dnssec.domain_insecure.len());
        for (index, text) in dnssec.domain_insecure.iter().enumerate() {
            let name = text.parse::<NameBuf>().map_err(|source| {
                ConfigError::from(signpost_rules::Error::InvalidName {
                    at: self.locate(&format!("dnssec.domain_insecure[{index}]")),
                    text: text.clone(),
                    source,
                })
            })?;
            insecure.push(name.to_lowercase());
        }
        let mut config = ValidatorConfig::default();
        set_if_given(&mut config.bogus_ttl, dnssec.bogus_ttl);
        set_if_given(&mut config.skew.min, dnssec.sig_skew_min);
        set_if_given(&mut config.skew.max, dnssec.sig_skew_max);
        set_if_given(&mut config.nsec3_max_iterations, dnssec.nsec3_max_iterations);
        set_if_given(&mut config.hold_down.add, dnssec.add_holddown);
        set_if_given(&mut config.hold_down.remove, dnssec.del_holddown);
        set_if_given(&mut config.hold_down.keep_missing, dnssec.keep_missing);
        config.aggressive_nsec = dnssec.aggressive_nsec.unwrap_or(true);
        let validator = Validator::new(anchors, insecure, config);
        for (point, path) in tracked {
            validator.track(point, path);
        }
        Ok(Some(validator))
    }
}
