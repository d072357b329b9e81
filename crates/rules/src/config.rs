//! TOML configuration for rule sets, shared by the binaries, and its
//! validation: errors name the file, line, column and field.
//!
//! A binary that embeds these types in its own document (say under
//! `[rules]`) calls [`RulesConfig::set_source`] with the document's text and
//! the key path, so errors still point into the file.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use signpost_wire::{Class, NameBuf, RecordBuf};
use toml::de::{DeTable, DeValue};

use crate::decision::BlockAction;
use crate::error::{Error, Location};
use crate::hosts::{AllocationRanges, Allocations, DEFAULT_IPV4_RANGE, HostEntry, parse_hosts};
use crate::master::{Source, parse_records};
use crate::ruleset::{RuleSet, RuleSetBuilder};
use crate::spec::{
    Action, AddressSource, Anchor, ExceptionSpec, HostTableSpec, Matcher, OtherTypes, Redirect, RuleSpec, ViewSpec,
    ZoneMode, ZoneSpec,
};
use crate::zone::Zone;

/// Nameservers a resolv.conf consumer reads (glibc's MAXNS): `[system]` lists at most this many.
const MAX_NAMESERVERS: usize = 3;

/// The name of the group a `[system]` section defines.
pub const SYSTEM_GROUP: &str = "system";

/// A rule set's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// The upstream group for names nothing matches; without one they are REFUSED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_group: Option<String>,
    /// Automatic addresses for host entries without one.
    #[serde(default)]
    pub allocation: AllocationConfig,
    /// The `system` group: the resolvers of resolv.conf, or given here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemConfig>,
    /// Views (the `default` view always exists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<ViewConfig>,
    /// Rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleConfig>,
    /// Exceptions: names sent upstream even though a broader rule matches them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<ExceptionConfig>,
    /// Zones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<ZoneConfig>,
    /// Host tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_tables: Vec<HostTableConfig>,
    #[serde(skip)]
    source: Option<Arc<ConfigSource>>,
}

/// The text a configuration was read from, for error locations.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ConfigSource {
    file: PathBuf,
    text: String,
    /// Where the rules configuration sits in the document (`""` for the top).
    prefix: String,
}

/// `[allocation]`: where automatic host addresses come from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationConfig {
    /// IPv4 range (default `240.240.0.0/16`, as Istio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    /// IPv6 range; without one, no automatic IPv6 addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    /// A file recording allocations, so addresses survive restarts even as
    /// names are added (relative to the configuration's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_file: Option<PathBuf>,
}

/// `[system]`: the `system` upstream group's servers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemConfig {
    /// Read the nameservers of this resolv.conf (the first three, as glibc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolv_conf: Option<PathBuf>,
    /// Or give them here: at most three, the resolv.conf limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
}

/// `[[views]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewConfig {
    /// Its name (`default` configures the default view).
    pub name: String,
    /// Client networks (longest prefix over all views wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidrs: Vec<String>,
    /// Listener or endpoint ids whose queries use this view.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<String>,
    /// The view's own default group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_group: Option<String>,
}

/// What a rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Send to `group` (or to the rule's `targets`).
    Forward,
    /// Answer A/AAAA with `ipv4`/`ipv6`, NODATA for other types.
    Redirect,
    /// Refuse, NXDOMAIN or sinkhole (`block`).
    Block,
    /// Resolve as if no rule matched (Route 53's SYSTEM rule).
    System,
}

/// How a block rule answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockKind {
    /// REFUSED.
    #[default]
    Refused,
    /// NXDOMAIN.
    Nxdomain,
    /// No answer: the query is dropped.
    Drop,
    /// SERVFAIL (Unbound's answer for a forward zone without a usable server).
    Servfail,
    /// `sinkhole_ipv4` / `sinkhole_ipv6`.
    Sinkhole,
}

/// `[[rules]]`: one matcher (`exact`, `suffix`, `wildcard` or `regex`) and an action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Its id (default `rules[N]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Views (default: the default view; `"*"`: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<String>,
    /// Match this name only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Match this name and all below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Match names strictly below this one (`*.example.com` or `example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wildcard: Option<String>,
    /// Match names with this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// How `regex` is anchored: `full` (default) or `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<Anchor>,
    /// What to do.
    pub action: ActionKind,
    /// forward: the upstream group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// forward: on total failure, fall back to the default group.
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub forward_first: bool,
    /// forward: target servers (`ip` or `ip:port`, all of one family); the
    /// group is then named after the rule unless `group` is given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// redirect: `"arrival"` (default), `"none"` (NODATA), `"decline"` (less
    /// specific matches answer A questions) or an IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    /// redirect: `"arrival"` (default), `"none"` (NODATA), `"decline"` or an IPv6 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    /// redirect: TTL of the answers (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// redirect: what other question types get: `nodata` (default) or
    /// `decline` (less specific matches and the default group answer them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_types: Option<OtherTypes>,
    /// redirect: only names this regex matches at their start are redirected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_names_matching: Option<String>,
    /// block: how (default `refused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<BlockKind>,
    /// block = "sinkhole": the A answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sinkhole_ipv4: Option<String>,
    /// block = "sinkhole": the AAAA answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sinkhole_ipv6: Option<String>,
}

/// `[[exceptions]]`: one matcher, and where the names go.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionConfig {
    /// Its id (default `exceptions[N]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Views (default: the default view; `"*"`: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<String>,
    /// This name only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// This name and all below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Names strictly below this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wildcard: Option<String>,
    /// Names this regular expression matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// How `regex` is anchored: `full` (default) or `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<Anchor>,
    /// The group (default: the view's default group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// `[[zones]]`: a master file, inline records, or both.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// The apex.
    pub name: String,
    /// Its id (default: the apex with a trailing dot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A master file (relative to the configuration's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Records in presentation format, names relative to the apex.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<String>,
    /// TTL for inline records that give none (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// Views (default: the default view; `"*"`: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<String>,
    /// `authoritative` (default), `transparent` or `redirect`.
    #[serde(default)]
    pub mode: ZoneMode,
}

/// `[[host_tables]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostTableConfig {
    /// Its name.
    pub name: String,
    /// Views (default: the default view; `"*"`: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<String>,
    /// TTL of answers (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// An /etc/hosts format file (relative to the configuration's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostConfig>,
}

/// One host entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The name.
    pub name: String,
    /// Its addresses; none means "allocate automatically".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

/// A group a forwarding rule defines with its `targets`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImpliedGroup {
    /// The group's name (the rule's `group`, or its id).
    pub name: String,
    /// The servers, port 53 unless given.
    pub targets: Vec<SocketAddr>,
}

impl RulesConfig {
    /// Parse TOML text read from `file` (named in errors).
    pub fn from_toml(text: &str, file: impl Into<PathBuf>) -> Result<Self, Error> {
        let file = file.into();
        let mut config: Self = toml::from_str(text).map_err(|error| {
            let at = match error.span() {
                Some(span) => Location::at_offset(Some(file.clone()), text, span.start),
                None => Location { file: Some(file.clone()), ..Location::default() },
            };
            Error::Toml { at, message: error.message().trim_end().to_owned() }
        })?;
        config.set_source(file, text, "");
        Ok(config)
    }

    /// Read a TOML file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|error| Error::io(Location::default(), path, error))?;
        Self::from_toml(&text, path)
    }

    /// Record the document this configuration was read from: `prefix` is
    /// the dotted key path of the rules configuration in it (`""` when it is
    /// the whole document), so errors can give lines and columns.
    pub fn set_source(&mut self, file: impl Into<PathBuf>, text: &str, prefix: &str) {
        self.source =
            Some(Arc::new(ConfigSource { file: file.into(), text: text.to_owned(), prefix: prefix.to_owned() }));
    }

    /// Where a field (`rules[2].suffix`) is in the source, as far as known.
    pub fn locate(&self, field: &str) -> Location {
        let Some(source) = &self.source else { return Location::field(field) };
        let full = match (source.prefix.is_empty(), field.is_empty()) {
            (true, _) => field.to_owned(),
            (false, true) => source.prefix.clone(),
            (false, false) => format!("{}.{field}", source.prefix),
        };
        let offset = locate_in(&source.text, &full).unwrap_or(0);
        Location::at_offset(Some(source.file.clone()), &source.text, offset).with_field(field)
    }

    /// The groups that forwarding rules define with `targets`, for the
    /// binary to create. Fails on bad or mixed-family targets.
    pub fn implied_groups(&self) -> Result<Vec<ImpliedGroup>, Error> {
        let mut groups = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.targets.is_empty() {
                continue;
            }
            let targets = self.targets(index, rule)?;
            groups.push(ImpliedGroup { name: rule_group(index, rule), targets });
        }
        Ok(groups)
    }

    /// Where the binary should save [`RuleSet::allocations`] after a
    /// (re)load, if a state file is configured.
    pub fn allocation_state_file(&self, base_dir: &Path) -> Option<PathBuf> {
        self.allocation.state_file.as_ref().map(|path| base_dir.join(path))
    }

    /// The `system` group's servers when `[system]` lists them (at most
    /// three, the resolv.conf limit). When it names a resolv.conf instead,
    /// [`RulesConfig::system_resolv_conf`] gives the file: the binary reads
    /// it with `signpost_upstream::ResolvConf` (the one resolv.conf parser)
    /// and leaves out its own listening addresses, which the system resolver
    /// may name when it points at the server.
    pub fn system_nameservers(&self) -> Result<Vec<SocketAddr>, Error> {
        match &self.system {
            Some(system) if !system.nameservers.is_empty() => self.nameserver_list(system),
            _ => Ok(Vec::new()),
        }
    }

    /// The resolv.conf the `system` group's servers come from (relative to
    /// `base_dir`), or `None` when there is no `[system]` or it lists its
    /// nameservers itself.
    pub fn system_resolv_conf(&self, base_dir: &Path) -> Option<PathBuf> {
        let system = self.system.as_ref()?;
        if !system.nameservers.is_empty() {
            return None;
        }
        system.resolv_conf.as_ref().map(|path| base_dir.join(path))
    }

    fn nameserver_list(&self, system: &SystemConfig) -> Result<Vec<SocketAddr>, Error> {
        if system.nameservers.len() > MAX_NAMESERVERS {
            return Err(Error::TooManyNameservers {
                at: self.locate(&format!("system.nameservers[{MAX_NAMESERVERS}]")),
                count: system.nameservers.len(),
                limit: MAX_NAMESERVERS,
            });
        }
        system
            .nameservers
            .iter()
            .enumerate()
            .map(|(index, text)| {
                parse_target(text).ok_or_else(|| Error::InvalidAddress {
                    at: self.locate(&format!("system.nameservers[{index}]")),
                    text: text.clone(),
                    what: "nameserver address",
                })
            })
            .collect()
    }

    fn targets(&self, index: usize, rule: &RuleConfig) -> Result<Vec<SocketAddr>, Error> {
        let mut targets = Vec::with_capacity(rule.targets.len());
        for (target_index, text) in rule.targets.iter().enumerate() {
            let target = parse_target(text).ok_or_else(|| Error::InvalidAddress {
                at: self.locate(&format!("rules[{index}].targets[{target_index}]")),
                text: text.clone(),
                what: "target address (ip or ip:port)",
            })?;
            targets.push(target);
        }
        let v4 = targets.iter().filter(|target| target.is_ipv4()).count();
        if v4 != 0 && v4 != targets.len() {
            return Err(Error::MixedTargetFamilies { at: self.locate(&format!("rules[{index}].targets")) });
        }
        Ok(targets)
    }

    /// Check everything and make a builder (zone, hosts and state files are
    /// read relative to `base_dir`).
    pub fn to_builder(&self, base_dir: &Path, known_groups: &[&str]) -> Result<RuleSetBuilder, Error> {
        let mut builder = RuleSetBuilder::new();
        let mut known: Vec<String> = known_groups.iter().map(|group| (*group).to_owned()).collect();
        if let Some(system) = &self.system {
            self.nameserver_list(system)?;
            known.push(SYSTEM_GROUP.to_owned());
        }
        for group in self.implied_groups()? {
            known.push(group.name);
        }
        builder.known_groups(known);
        if let Some(group) = &self.default_group {
            builder.default_group(group);
        }
        self.allocation(&mut builder, base_dir)?;
        for (index, view) in self.views.iter().enumerate() {
            let field = format!("views[{index}]");
            let mut cidrs = Vec::with_capacity(view.cidrs.len());
            for (cidr_index, text) in view.cidrs.iter().enumerate() {
                let cidr = text.parse::<IpNet>().map_err(|_| Error::InvalidAddress {
                    at: self.locate(&format!("{field}.cidrs[{cidr_index}]")),
                    text: text.clone(),
                    what: "CIDR network",
                })?;
                cidrs.push(cidr);
            }
            let spec = ViewSpec {
                name: view.name.clone(),
                cidrs,
                listeners: view.listeners.clone(),
                default_group: view.default_group.clone(),
            };
            builder.view_at(spec, self.locate(&format!("{field}.name")));
        }
        for (index, rule) in self.rules.iter().enumerate() {
            let (spec, at) = self.rule(index, rule)?;
            builder.rule_at(spec, at);
        }
        for (index, exception) in self.exceptions.iter().enumerate() {
            let field = format!("exceptions[{index}]");
            let (matcher, matcher_field) = self.matcher(
                &field,
                [&exception.exact, &exception.suffix, &exception.wildcard, &exception.regex],
                exception.anchor,
            )?;
            let spec = ExceptionSpec {
                id: exception.id.clone().unwrap_or_else(|| field.clone()),
                matcher,
                views: exception.views.clone(),
                group: exception.group.clone(),
            };
            builder.exception_at(spec, self.locate(&matcher_field));
        }
        for (index, zone) in self.zones.iter().enumerate() {
            let spec = self.zone(index, zone, base_dir)?;
            builder.zone_at(spec, self.locate(&format!("zones[{index}].name")));
        }
        for (index, table) in self.host_tables.iter().enumerate() {
            let spec = self.host_table(index, table, base_dir)?;
            builder.host_table_at(spec, self.locate(&format!("host_tables[{index}].name")));
        }
        Ok(builder)
    }

    fn allocation(&self, builder: &mut RuleSetBuilder, base_dir: &Path) -> Result<(), Error> {
        let allocation = &self.allocation;
        let ipv4 = match &allocation.ipv4 {
            Some(text) => text.parse::<Ipv4Net>().map_err(|_| Error::InvalidAddress {
                at: self.locate("allocation.ipv4"),
                text: text.clone(),
                what: "IPv4 CIDR network",
            })?,
            None => DEFAULT_IPV4_RANGE,
        };
        let ipv6 = match &allocation.ipv6 {
            Some(text) => Some(text.parse::<Ipv6Net>().map_err(|_| Error::InvalidAddress {
                at: self.locate("allocation.ipv6"),
                text: text.clone(),
                what: "IPv6 CIDR network",
            })?),
            None => None,
        };
        builder.allocation_ranges(AllocationRanges { ipv4, ipv6 });
        if let Some(path) = &allocation.state_file {
            let state = Allocations::load(&base_dir.join(path)).map_err(|mut error| {
                if error.location().field.is_none() && error.location().line.is_none() {
                    *error.location_mut() = self.locate("allocation.state_file");
                }
                error
            })?;
            builder.allocation_state(state);
        }
        Ok(())
    }

    /// The one matcher of an entry, and the field it came from.
    fn matcher(
        &self,
        field: &str,
        [exact, suffix, wildcard, regex]: [&Option<String>; 4],
        anchor: Option<Anchor>,
    ) -> Result<(Matcher, String), Error> {
        let given: Vec<(&str, &String)> =
            [("exact", exact), ("suffix", suffix), ("wildcard", wildcard), ("regex", regex)]
                .into_iter()
                .filter_map(|(key, value)| Some((key, value.as_ref()?)))
                .collect();
        let [(key, text)] = given.as_slice() else {
            return Err(Error::InvalidEntry {
                at: self.locate(field),
                problem: "give exactly one of exact, suffix, wildcard or regex",
            });
        };
        let matcher_field = format!("{field}.{key}");
        if anchor.is_some() && *key != "regex" {
            return Err(Error::InvalidEntry {
                at: self.locate(&format!("{field}.anchor")),
                problem: "anchor is only for regex",
            });
        }
        let name = |text: &str| {
            text.parse::<NameBuf>().map_err(|source| Error::InvalidName {
                at: self.locate(&matcher_field),
                text: text.to_owned(),
                source,
            })
        };
        let matcher =
            match *key {
                "exact" => Matcher::Exact(name(text)?),
                "suffix" => Matcher::Suffix(name(text)?),
                "wildcard" => match text.as_str() {
                    "*" | "*." => Matcher::Wildcard(NameBuf::root()),
                    _ => Matcher::Wildcard(name(text.strip_prefix("*.").unwrap_or(text))?),
                },
                _ => {
                    let pattern = (*text).clone();
                    let anchor = anchor.unwrap_or_default();
                    crate::ruleset::compile_regexes(&[(&pattern, anchor)]).map_err(|(_, message)| {
                        Error::InvalidRegex { at: self.locate(&matcher_field), pattern: pattern.clone(), message }
                    })?;
                    Matcher::Regex { pattern, anchor }
                }
            };
        Ok((matcher, matcher_field))
    }

    fn rule(&self, index: usize, rule: &RuleConfig) -> Result<(RuleSpec, Location), Error> {
        let field = format!("rules[{index}]");
        let (matcher, matcher_field) =
            self.matcher(&field, [&rule.exact, &rule.suffix, &rule.wildcard, &rule.regex], rule.anchor)?;
        let not_for = |present: bool, key: &str, problem: &'static str| {
            if present {
                Err(Error::InvalidEntry { at: self.locate(&format!("{field}.{key}")), problem })
            } else {
                Ok(())
            }
        };
        let action = rule.action;
        if action != ActionKind::Forward {
            not_for(rule.group.is_some(), "group", "group is only for forward rules")?;
            not_for(rule.forward_first, "forward_first", "forward_first is only for forward rules")?;
            not_for(!rule.targets.is_empty(), "targets", "targets are only for forward rules")?;
        }
        if action != ActionKind::Redirect {
            not_for(rule.ipv4.is_some(), "ipv4", "ipv4 is only for redirect rules")?;
            not_for(rule.ipv6.is_some(), "ipv6", "ipv6 is only for redirect rules")?;
            not_for(rule.ttl.is_some(), "ttl", "ttl is only for redirect rules")?;
            not_for(
                rule.only_names_matching.is_some(),
                "only_names_matching",
                "only_names_matching is only for redirect rules",
            )?;
        }
        if action != ActionKind::Block {
            not_for(rule.block.is_some(), "block", "block is only for block rules")?;
        }
        if rule.block != Some(BlockKind::Sinkhole) {
            not_for(rule.sinkhole_ipv4.is_some(), "sinkhole_ipv4", "sinkhole_ipv4 needs block = \"sinkhole\"")?;
            not_for(rule.sinkhole_ipv6.is_some(), "sinkhole_ipv6", "sinkhole_ipv6 needs block = \"sinkhole\"")?;
        }
        let action = match action {
            ActionKind::Forward => {
                if rule.group.is_none() && rule.targets.is_empty() {
                    return Err(Error::InvalidEntry {
                        at: self.locate(&field),
                        problem: "a forward rule needs a group or targets",
                    });
                }
                if !rule.targets.is_empty() {
                    self.targets(index, rule)?;
                }
                Action::Forward { group: rule_group(index, rule), forward_first: rule.forward_first }
            }
            ActionKind::Redirect => Action::Redirect(Redirect {
                v4: self.address_source(&field, "ipv4", rule.ipv4.as_deref())?,
                v6: self.address_source(&field, "ipv6", rule.ipv6.as_deref())?,
                ttl: rule.ttl.unwrap_or(60),
                other_types: rule.other_types.unwrap_or_default(),
            }),
            ActionKind::Block => Action::Block(match rule.block.unwrap_or_default() {
                BlockKind::Refused => BlockAction::Refused,
                BlockKind::Nxdomain => BlockAction::NxDomain,
                BlockKind::Drop => BlockAction::Drop,
                BlockKind::Servfail => BlockAction::ServFail,
                BlockKind::Sinkhole => {
                    let v4 = self.address::<Ipv4Addr>(&field, "sinkhole_ipv4", rule.sinkhole_ipv4.as_deref())?;
                    let v6 = self.address::<Ipv6Addr>(&field, "sinkhole_ipv6", rule.sinkhole_ipv6.as_deref())?;
                    if v4.is_none() && v6.is_none() {
                        return Err(Error::InvalidEntry {
                            at: self.locate(&format!("{field}.block")),
                            problem: "a sinkhole needs sinkhole_ipv4, sinkhole_ipv6 or both",
                        });
                    }
                    BlockAction::Sinkhole { v4, v6 }
                }
            }),
            ActionKind::System => Action::System,
        };
        let spec = RuleSpec {
            id: rule.id.clone().unwrap_or(field),
            matcher,
            action,
            views: rule.views.clone(),
            only_names_matching: rule.only_names_matching.clone(),
        };
        Ok((spec, self.locate(&matcher_field)))
    }

    fn address<A: core::str::FromStr>(&self, field: &str, key: &str, text: Option<&str>) -> Result<Option<A>, Error> {
        let Some(text) = text else { return Ok(None) };
        let what = if key.ends_with("ipv4") { "IPv4 address" } else { "IPv6 address" };
        text.parse::<A>().map(Some).map_err(|_| Error::InvalidAddress {
            at: self.locate(&format!("{field}.{key}")),
            text: text.to_owned(),
            what,
        })
    }

    fn address_source<A: core::str::FromStr>(
        &self,
        field: &str,
        key: &str,
        text: Option<&str>,
    ) -> Result<AddressSource<A>, Error> {
        match text {
            None | Some("arrival") => Ok(AddressSource::ArrivalAddress),
            Some("none") => Ok(AddressSource::None),
            Some("decline") => Ok(AddressSource::Decline),
            Some(_) => Ok(self.address(field, key, text)?.map_or(AddressSource::None, AddressSource::Fixed)),
        }
    }

    fn zone(&self, index: usize, zone: &ZoneConfig, base_dir: &Path) -> Result<ZoneSpec, Error> {
        let field = format!("zones[{index}]");
        let apex = zone.name.parse::<NameBuf>().map_err(|source| Error::InvalidName {
            at: self.locate(&format!("{field}.name")),
            text: zone.name.clone(),
            source,
        })?;
        let mut records: Vec<(RecordBuf, Option<Location>)> = Vec::new();
        let mut class = Class::IN;
        if let Some(file) = &zone.file {
            let path = base_dir.join(file);
            let text = master_text(&path, self.locate(&format!("{field}.file")))?;
            for (record, at) in parse_records(&text, &apex, Source::file(&path))? {
                records.push((record, Some(at)));
            }
            class = records.first().map_or(Class::IN, |(record, _)| record.class);
        }
        for (record_index, text) in zone.records.iter().enumerate() {
            let at = self.locate(&format!("{field}.records[{record_index}]"));
            let record = RecordBuf::from_presentation(text, Some(&apex), Some(zone.ttl.unwrap_or(3600)))
                .map_err(|source| Error::ZoneSyntax { at: at.clone(), source })?;
            records.push((record, Some(at)));
        }
        if zone.file.is_none() && !records.iter().any(|(record, _)| record.rtype() == signpost_wire::RecordType::SOA) {
            records.insert(0, (crate::zone::synthetic_soa(&apex, 3600, 60), None));
        }
        let built = Zone::build(apex.clone(), class, records, &self.locate(&format!("{field}.name")))?;
        Ok(ZoneSpec {
            id: zone.id.clone().unwrap_or_else(|| apex.to_string()),
            zone: Arc::new(built),
            views: zone.views.clone(),
            mode: zone.mode,
        })
    }

    fn host_table(&self, index: usize, table: &HostTableConfig, base_dir: &Path) -> Result<HostTableSpec, Error> {
        let field = format!("host_tables[{index}]");
        let mut entries = Vec::new();
        if let Some(file) = &table.file {
            let path = base_dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|error| Error::io(self.locate(&format!("{field}.file")), &path, error))?;
            entries.extend(parse_hosts(&text, Some(&path))?);
        }
        for (host_index, host) in table.hosts.iter().enumerate() {
            let host_field = format!("{field}.hosts[{host_index}]");
            let name = host.name.parse::<NameBuf>().map_err(|source| Error::InvalidName {
                at: self.locate(&format!("{host_field}.name")),
                text: host.name.clone(),
                source,
            })?;
            let mut addresses = Vec::with_capacity(host.addresses.len());
            for (address_index, text) in host.addresses.iter().enumerate() {
                addresses.push(text.parse::<IpAddr>().map_err(|_| Error::InvalidAddress {
                    at: self.locate(&format!("{host_field}.addresses[{address_index}]")),
                    text: text.clone(),
                    what: "IP address",
                })?);
            }
            entries.push(HostEntry { name, addresses });
        }
        Ok(HostTableSpec {
            name: table.name.clone(),
            ttl: table.ttl.unwrap_or(60),
            entries,
            views: table.views.clone(),
        })
    }
}

impl RuleSet {
    /// Build a rule set from configuration. Zone, hosts and state files are
    /// read relative to `base_dir`; every group a rule or view names must be
    /// in `known_groups` (or be `system` with a `[system]` section, or be
    /// defined by a rule's `targets`).
    pub fn from_config(config: &RulesConfig, base_dir: &Path, known_groups: &[&str]) -> Result<Self, Error> {
        config.to_builder(base_dir, known_groups)?.build()
    }
}

/// The group a forwarding rule uses: its `group`, or its id when it has `targets`.
fn rule_group(index: usize, rule: &RuleConfig) -> String {
    rule.group.clone().or_else(|| rule.id.clone()).unwrap_or_else(|| format!("rules[{index}]"))
}

fn parse_target(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().or_else(|| text.parse::<IpAddr>().ok().map(|address| SocketAddr::new(address, 53)))
}

fn master_text(path: &Path, at: Location) -> Result<String, Error> {
    let bytes = std::fs::read(path).map_err(|error| Error::io(at, path, error))?;
    String::from_utf8(bytes)
        .map_err(|_| Error::NotUtf8 { at: Location { file: Some(path.to_path_buf()), ..Location::default() } })
}

/// The byte offset of a dotted field path (`rules[2].suffix`) in TOML text:
/// the deepest part of the path that exists.
fn locate_in(text: &str, path: &str) -> Option<usize> {
    let document = DeTable::parse(text).ok()?;
    let root = DeValue::Table(document.into_inner());
    let mut current: &DeValue<'_> = &root;
    let mut offset = None;
    for segment in path.split('.').filter(|segment| !segment.is_empty()) {
        let (key, indexes) = match segment.find('[') {
            Some(open) => (segment.get(..open)?, segment.get(open..)?),
            None => (segment, ""),
        };
        let Some(value) = current.get(key) else { break };
        offset = Some(value.span().start);
        current = value.get_ref();
        for index in indexes.split(['[', ']']).filter(|part| !part.is_empty()) {
            let Some(value) = index.parse::<usize>().ok().and_then(|index| current.get(index)) else {
                return offset;
            };
            offset = Some(value.span().start);
            current = value.get_ref();
        }
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> RulesConfig {
        RulesConfig::from_toml(text, "rules.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn build_error(text: &str) -> Error {
        let config = config(text);
        RuleSet::from_config(&config, Path::new("."), &["up", "corp"]).expect_err("invalid")
    }

    fn line_and_field(error: &Error) -> (Option<usize>, Option<String>) {
        (error.location().line, error.location().field.clone())
    }

    #[test]
    fn toml_errors_name_the_line() {
        let error =
            RulesConfig::from_toml("default_group = \"up\"\n[[rules]]\nsufix = \"x\"\n", "r.toml").expect_err("typo");
        assert!(matches!(error, Error::Toml { .. }));
        assert_eq!(error.location().line, Some(3));
        assert_eq!(error.location().file.as_deref(), Some(Path::new("r.toml")));
    }

    #[test]
    fn validation_errors_name_line_and_field() {
        let error = build_error(
            "[[rules]]\nsuffix = \"a.com\"\naction = \"forward\"\ngroup = \"up\"\n\n[[rules]]\nregex = \"(unclosed\"\naction = \"forward\"\ngroup = \"up\"\n",
        );
        assert!(matches!(error, Error::InvalidRegex { .. }));
        assert_eq!(line_and_field(&error), (Some(7), Some("rules[1].regex".into())));

        let error = build_error("[[views]]\nname = \"vpc\"\ncidrs = [\"10.0.0.0/8\", \"10.1.0.0/33\"]\n");
        assert!(matches!(error, Error::InvalidAddress { what: "CIDR network", .. }));
        assert_eq!(line_and_field(&error), (Some(3), Some("views[0].cidrs[1]".into())));
        assert_eq!(error.location().column, Some(24));

        let error = build_error(
            "[[rules]]\nsuffix = \"a.com\"\naction = \"forward\"\ngroup = \"up\"\n[[rules]]\nsuffix = \"A.com.\"\naction = \"block\"\n",
        );
        let Error::DuplicateRule { first, .. } = &error else { panic!("{error}") };
        assert_eq!(line_and_field(&error), (Some(6), Some("rules[1].suffix".into())));
        assert_eq!(first.line, Some(2));

        let error = build_error("[[rules]]\nsuffix = \"a.com\"\naction = \"forward\"\ngroup = \"nope\"\n");
        assert!(matches!(error, Error::UnknownGroup { .. }));
        assert_eq!(error.location().line, Some(2));

        let error = build_error(
            "[[rules]]\nsuffix = \"a.com\"\naction = \"forward\"\ntargets = [\"10.0.0.1\", \"[2001:db8::1]:53\"]\n",
        );
        assert!(matches!(error, Error::MixedTargetFamilies { .. }));
        assert_eq!(line_and_field(&error), (Some(4), Some("rules[0].targets".into())));

        let error =
            build_error("[system]\nnameservers = [\"10.0.0.1\", \"10.0.0.2\", \"10.0.0.3\",\n  \"10.0.0.4\"]\n");
        assert!(matches!(error, Error::TooManyNameservers { count: 4, limit: 3, .. }));
        assert_eq!(line_and_field(&error), (Some(3), Some("system.nameservers[3]".into())));

        let error = build_error("[[rules]]\nsuffix = \"a..com\"\naction = \"block\"\n");
        assert!(matches!(error, Error::InvalidName { .. }));
        let error = build_error("[[rules]]\nsuffix = \"a.com\"\nexact = \"b.com\"\naction = \"block\"\n");
        assert!(matches!(error, Error::InvalidEntry { .. }));
        let error = build_error("[[rules]]\nsuffix = \"a.com\"\naction = \"block\"\nipv4 = \"127.0.0.1\"\n");
        assert_eq!(line_and_field(&error), (Some(4), Some("rules[0].ipv4".into())));
        let error = build_error("[[rules]]\nsuffix = \"a.com\"\naction = \"redirect\"\nipv4 = \"::1\"\n");
        assert!(matches!(error, Error::InvalidAddress { what: "IPv4 address", .. }));
        let error = build_error("[[zones]]\nname = \"corp\"\nrecords = [\"www A 10.0.0.1\", \"www CNAME x\"]\n");
        assert!(matches!(error, Error::InvalidZoneData { .. }));
        let error = build_error(
            "[[host_tables]]\nname = \"t\"\nhosts = [{ name = \"a.svc\", addresses = [\"10.0.0.300\"] }]\n",
        );
        assert_eq!(line_and_field(&error), (Some(3), Some("host_tables[0].hosts[0].addresses[0]".into())));
    }

    #[test]
    fn embedded_configs_locate_fields_under_their_prefix() {
        let text = "[server]\nport = 53\n\n[rules]\ndefault_group = \"up\"\n[[rules.views]]\nname = \"v\"\ncidrs = [\"bad\"]\n";
        #[derive(Deserialize)]
        struct Whole {
            #[allow(dead_code)]
            server: toml::Table,
            rules: RulesConfig,
        }
        let whole: Whole = toml::from_str(text).expect("parses");
        let mut rules = whole.rules;
        rules.set_source("server.toml", text, "rules");
        let error = RuleSet::from_config(&rules, Path::new("."), &["up"]).expect_err("bad cidr");
        assert_eq!(line_and_field(&error), (Some(8), Some("views[0].cidrs[0]".into())));
    }

    #[test]
    fn implied_groups_and_system_nameservers() {
        let config = config(
            "[system]\nnameservers = [\"10.0.0.2\", \"10.0.0.3:5353\"]\n[[rules]]\nid = \"onprem\"\nsuffix = \"corp.example\"\naction = \"forward\"\ntargets = [\"192.0.2.1\", \"192.0.2.2:5300\"]\n[[rules]]\nsuffix = \"ext.example\"\naction = \"forward\"\ngroup = \"system\"\n",
        );
        let groups = config.implied_groups().expect("valid");
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].name, "onprem");
        assert_eq!(groups[0].targets[1], "192.0.2.2:5300".parse().unwrap());
        assert_eq!(config.system_nameservers().expect("valid").len(), 2);
        assert_eq!(config.system_resolv_conf(Path::new(".")), None, "listed, not read from resolv.conf");
        RuleSet::from_config(&config, Path::new("."), &[]).expect("groups are implied");
        let from_file = self::config("[system]\nresolv_conf = \"resolv.conf\"\n");
        assert_eq!(from_file.system_resolv_conf(Path::new("/srv")), Some(PathBuf::from("/srv/resolv.conf")));
        assert_eq!(self::config("").system_resolv_conf(Path::new("/srv")), None);
    }

    #[test]
    fn configs_serialize_back_to_toml() {
        let text = "default_group = \"up\"\n\n[[rules]]\nsuffix = \"amazonaws.com\"\naction = \"redirect\"\nipv4 = \"arrival\"\nttl = 30\n";
        let parsed = config(text);
        let written = toml::to_string(&parsed).expect("serializes");
        let mut again = RulesConfig::from_toml(&written, "again.toml").expect("parses");
        again.source = parsed.source.clone();
        assert_eq!(again, parsed);
    }
}
