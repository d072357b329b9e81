//! The rule set of the redirect proxy and its changes at run time:
//! LocalStack's in-process DNS API (dns/server.py `Resolver`: `add_host`,
//! `delete_host`, `add_host_pointing_to_localstack`, `add_alias`,
//! `delete_alias`, `add_skip`, `delete_skip`, `clear`) and the hosted zones
//! of the Route 53 API.
//!
//! Every change builds a whole new rule set from the settings plus all
//! changes so far and swaps it in; nothing here runs per query. Records
//! added at run time are overlay zones (they answer what they hold and pass
//! every other question on, as LocalStack forwards what its records do not
//! hold); hosted zones are authoritative zones, as Route 53 answers them.

use core::fmt;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use serde::{Deserialize, Deserializer, Serialize};
use signpost_rules::{
    Action, BlockAction, ExceptionSpec, Matcher, RuleSet, RuleSetBuilder, RuleSpec, Zone, ZoneMode, ZoneSpec,
};
use signpost_server::ServerHandle;
use signpost_wire::{NameBuf, RDataBuf, RecordBuf, RecordType};

use crate::health::{HealthCheck, HealthCheckSpec};
use crate::route53::{self, CompiledHostedZones, HostedZone, HostedZoneWarning};
use crate::settings::check_pattern;
use crate::{RedirectError, RedirectSettings, UPSTREAM_GROUP};

/// A record to add at run time (LocalStack's `add_host` with a
/// `TargetRecord`): appended beside the name's other records.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSpec {
    /// The owner: a name, or a wildcard `*.example.org` (every name below
    /// `example.org` that holds no record of its own, at any depth).
    pub name: String,
    /// The type: A, AAAA, CNAME, MX, TXT, SRV, NS (any type with a
    /// presentation format works).
    #[serde(rename = "type", deserialize_with = "deserialize_type")]
    pub rtype: RecordType,
    /// The value in presentation format, names absolute (`10 mail.example.org`, `"some text"`).
    pub value: String,
    /// The TTL (default `SIGNPOST_REDIRECT_TTL`, 300).
    #[serde(default)]
    pub ttl: Option<u32>,
    /// An id to delete it by (LocalStack's `record_id`).
    #[serde(default)]
    pub id: Option<String>,
}

impl RecordSpec {
    /// A record of `name`, `rtype` and `value`, default TTL, no id.
    pub fn new(name: impl Into<String>, rtype: RecordType, value: impl Into<String>) -> Self {
        Self { name: name.into(), rtype, value: value.into(), ttl: None, id: None }
    }
}

/// Which run-time records to delete: those of `name`, and of `rtype`,
/// `value` and `id` when given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordFilter {
    /// The owner as added.
    pub name: String,
    /// Only this type.
    #[serde(default, rename = "type", deserialize_with = "deserialize_optional_type")]
    pub rtype: Option<RecordType>,
    /// Only this value (compared as data, so `10 mail.example.org` and `10 Mail.Example.Org.` are one).
    #[serde(default)]
    pub value: Option<String>,
    /// Only records added with this id.
    #[serde(default)]
    pub id: Option<String>,
}

/// An alias to add (LocalStack's `add_alias`): `name` answers its types
/// with the records `target` has of them. Several targets may be added for
/// one name: the first whose health check passes (or that has none) answers.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasSpec {
    /// The alias: a name or a wildcard `*.example.org`.
    pub name: String,
    /// The name whose records it answers with.
    pub target: String,
    /// The types it covers: A, AAAA and CNAME are LocalStack's (default A and AAAA).
    #[serde(default = "address_types", deserialize_with = "deserialize_types")]
    pub types: Vec<RecordType>,
    /// An id to delete it by (LocalStack's `alias_id`).
    #[serde(default)]
    pub id: Option<String>,
    /// While this check fails the target is skipped.
    #[serde(default)]
    pub health_check: Option<HealthCheckSpec>,
}

impl AliasSpec {
    /// An alias for A and AAAA, without id or health check.
    pub fn new(name: impl Into<String>, target: impl Into<String>) -> Self {
        Self { name: name.into(), target: target.into(), types: address_types(), id: None, health_check: None }
    }
}

fn address_types() -> Vec<RecordType> {
    vec![RecordType::A, RecordType::AAAA]
}

fn parse_type(text: &str) -> Result<RecordType, String> {
    RecordType::from_mnemonic(text.trim()).ok_or_else(|| format!("unknown record type {text:?}"))
}

fn deserialize_type<'de, D: Deserializer<'de>>(deserializer: D) -> Result<RecordType, D::Error> {
    parse_type(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
}

fn deserialize_optional_type<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<RecordType>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|text| parse_type(&text))
        .transpose()
        .map_err(serde::de::Error::custom)
}

fn deserialize_types<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<RecordType>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let texts = match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(text) => vec![text],
        OneOrMany::Many(texts) => texts,
    };
    let types =
        texts.iter().map(|text| parse_type(text)).collect::<Result<Vec<_>, _>>().map_err(serde::de::Error::custom)?;
    if types.is_empty() {
        return Err(serde::de::Error::custom("an alias needs at least one type"));
    }
    Ok(types)
}

/// A host record as `GET /redirect/hosts` shows it: the A and AAAA records
/// of a name, or no addresses for a name pointing to the emulator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostRecord {
    /// The name.
    pub name: String,
    /// Its addresses; empty means the redirect address (the emulator's).
    pub addresses: Vec<IpAddr>,
}

/// A record added at run time, as shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordEntry {
    /// The owner.
    pub name: String,
    /// The type.
    #[serde(rename = "type")]
    pub rtype: String,
    /// The value.
    pub value: String,
    /// The TTL.
    pub ttl: u32,
    /// The id, if one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// An alias target added at run time, as shown.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AliasRecord {
    /// The alias.
    pub name: String,
    /// The name whose records it gets.
    pub target: String,
    /// The types it covers.
    pub types: Vec<String>,
    /// The id, if one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its health check, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSpec>,
    /// Whether it counts as healthy (no check, no result yet, or the last check passed).
    pub healthy: bool,
    /// Whether the target is known (records added at run time, a hosted
    /// zone, a configured host entry or a redirected name); an alias whose
    /// target is unknown answers REFUSED, as LocalStack's do.
    pub resolved: bool,
}

/// A hosted zone as shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostedZoneSummary {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Record sets in it.
    pub record_sets: usize,
}

/// What the redirect proxy holds: settings and run-time changes (the body of `GET /redirect`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RedirectSnapshot {
    /// The redirected domains.
    pub domains: Vec<String>,
    /// `DNS_LOCAL_NAME_PATTERNS`.
    pub local_name_patterns: Vec<String>,
    /// Skip patterns from the settings.
    pub configured_skip_patterns: Vec<String>,
    /// Skip patterns added at run time.
    pub skip_patterns: Vec<String>,
    /// Names with A/AAAA records added at run time, and names pointing to the emulator.
    pub hosts: Vec<HostRecord>,
    /// Every record added at run time.
    pub records: Vec<RecordEntry>,
    /// Aliases added at run time, one entry per target.
    pub aliases: Vec<AliasRecord>,
    /// Hosted zones of the Route 53 API.
    pub hosted_zones: Vec<HostedZoneSummary>,
    /// TTL of redirected answers.
    pub ttl: u32,
}

#[derive(Clone, Debug)]
struct StoredRecord {
    record: RecordBuf,
    id: Option<String>,
}

#[derive(Clone, Debug)]
struct StoredAlias {
    name: NameBuf,
    target: NameBuf,
    types: Vec<RecordType>,
    id: Option<String>,
    health: Option<HealthCheckSpec>,
    /// Identifies its health results and checker.
    key: u64,
}

/// What an alias target resolves to.
enum Resolution {
    Records(Vec<RecordBuf>),
    Redirect,
    Unknown,
}

#[derive(Clone, Debug)]
struct RuntimeState {
    settings: RedirectSettings,
    base: RuleSetBuilder,
    hosted: Vec<HostedZone>,
    records: Vec<StoredRecord>,
    /// Names (or `*.` wildcards) pointing to the emulator: LocalStack's `add_host_pointing_to_localstack`.
    emulator_hosts: Vec<NameBuf>,
    aliases: Vec<StoredAlias>,
    skips: Vec<String>,
}

impl RuntimeState {
    /// Remove the A and AAAA records of `name` and its pointer to the
    /// emulator; how many of them there were.
    fn remove_host(&mut self, name: &NameBuf) -> usize {
        let before = self.records.len() + self.emulator_hosts.len();
        self.records.retain(|stored| {
            !(stored.record.name == *name && matches!(stored.record.rtype(), RecordType::A | RecordType::AAAA))
        });
        self.emulator_hosts.retain(|host| host != name);
        before - self.records.len() - self.emulator_hosts.len()
    }
}

/// A rule set and what the hosted zones could not use.
struct Built {
    rules: RuleSet,
    warnings: Vec<HostedZoneWarning>,
}

/// The apex of the overlay zone a run-time owner goes into: the name, or
/// for a wildcard the name below the `*`.
fn overlay_apex(owner: &NameBuf) -> NameBuf {
    if owner.labels().next() == Some(b"*") { owner.parent().unwrap_or_else(NameBuf::root) } else { owner.clone() }
}

fn is_wildcard(name: &NameBuf) -> bool {
    name.labels().next() == Some(b"*")
}

/// The matcher of an exact name or a `*.` wildcard.
fn name_matcher(name: &NameBuf) -> Matcher {
    if is_wildcard(name) {
        Matcher::Wildcard(name.parent().unwrap_or_else(NameBuf::root))
    } else {
        Matcher::Exact(name.clone())
    }
}

/// A name given at run time: lowercased, absolute, checked; a leading `*.` is a wildcard.
/// Remove the `items` `selected` picks: how many, or `NotFound` (a `kind`
/// named `name`) when none was.
fn remove_matching<T>(
    items: &mut Vec<T>,
    kind: &'static str,
    name: &NameBuf,
    mut selected: impl FnMut(&T) -> bool,
) -> Result<usize, RedirectError> {
    let before = items.len();
    items.retain(|item| !selected(item));
    match before - items.len() {
        0 => Err(RedirectError::NotFound { kind, name: name.to_relative_string() }),
        deleted => Ok(deleted),
    }
}

fn runtime_name(what: &'static str, text: &str) -> Result<NameBuf, RedirectError> {
    let name = text.trim().parse::<NameBuf>().map_err(|source| RedirectError::InvalidName {
        what,
        name: text.to_owned(),
        source,
    })?;
    if name.is_root() {
        return Err(RedirectError::InvalidSetting { setting: "name", value: text.to_owned(), problem: "the root" });
    }
    if name.labels().skip(1).any(|label| label == b"*") {
        return Err(RedirectError::InvalidSetting {
            setting: "name",
            value: text.to_owned(),
            problem: "a * can only be the first label (*.example.org)",
        });
    }
    Ok(name.to_lowercase())
}

impl RuntimeState {
    /// Build the rule set: the base (extra configuration), redirect rules
    /// for the domains, exceptions for the skip patterns, the hosted zones
    /// and the run-time records, hosts and aliases.
    fn build(&self, health: &HashMap<u64, bool>) -> Result<Built, RedirectError> {
        let settings = &self.settings;
        let mut builder = self.base.clone();
        builder.default_group(UPSTREAM_GROUP);
        let redirect = settings.redirect();
        let (aws, emulator) = settings.redirected_domains()?;
        let filter = settings.local_name_filter();
        for domain in &aws {
            let mut rule = RuleSpec::new(
                format!("redirect:{}", domain.to_relative_string()),
                Matcher::Suffix(domain.clone()),
                Action::Redirect(redirect),
            )
            .in_views(["*"]);
            rule.only_names_matching = filter.clone();
            builder.rule(rule);
        }
        // The emulator's own names always resolve, whatever DNS_LOCAL_NAME_PATTERNS says.
        for domain in &emulator {
            builder.rule(
                RuleSpec::new(
                    format!("redirect:{}", domain.to_relative_string()),
                    Matcher::Suffix(domain.clone()),
                    Action::Redirect(redirect),
                )
                .in_views(["*"]),
            );
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
                    Matcher::Regex { pattern: pattern.clone(), anchor: signpost_rules::Anchor::Start },
                )
                .in_views(["*"]),
            );
        }

        // Names with a rule of their own (exact or wildcard), so each gets one.
        let mut ruled: Vec<NameBuf> = Vec::new();
        let mut add_rule = |builder: &mut RuleSetBuilder, name: &NameBuf, action: Action, kind: &str| {
            if ruled.contains(name) {
                return;
            }
            ruled.push(name.clone());
            builder.rule(RuleSpec::new(format!("{kind}:{name}"), name_matcher(name), action).in_views(["*"]));
        };
        for host in &self.emulator_hosts {
            add_rule(&mut builder, host, Action::Redirect(redirect), "host");
        }

        let compiled = route53::compile(&self.hosted, settings.ttl)?;
        let mut overlays: BTreeMap<NameBuf, Vec<RecordBuf>> = BTreeMap::new();
        for stored in &self.records {
            overlays.entry(overlay_apex(&stored.record.name)).or_default().push(stored.record.clone());
        }
        // Aliases: for each name and type, the first target that is healthy.
        let mut chosen: Vec<(NameBuf, RecordType, &StoredAlias)> = Vec::new();
        for alias in &self.aliases {
            let healthy = health.get(&alias.key).copied().unwrap_or(true);
            for &rtype in &alias.types {
                if healthy && !chosen.iter().any(|(name, taken, _)| *name == alias.name && *taken == rtype) {
                    chosen.push((alias.name.clone(), rtype, alias));
                }
            }
        }
        // An alias whose target holds none of its types answers REFUSED (as
        // LocalStack's); one that holds some answers those and passes the rest on.
        let mut unresolved: Vec<NameBuf> = Vec::new();
        let mut resolved: Vec<NameBuf> = Vec::new();
        for (name, rtype, alias) in chosen {
            match self.resolve(&alias.target, rtype, &compiled)? {
                Resolution::Records(records) => {
                    let zone = overlays.entry(overlay_apex(&name)).or_default();
                    zone.retain(|record| !(record.name == name && record.rtype() == rtype));
                    zone.extend(records.into_iter().map(|record| RecordBuf { name: name.clone(), ..record }));
                    resolved.push(name);
                }
                Resolution::Redirect => {
                    add_rule(&mut builder, &name, Action::Redirect(redirect), "alias");
                    resolved.push(name);
                }
                Resolution::Unknown => unresolved.push(name),
            }
        }
        for name in unresolved.iter().filter(|name| !resolved.contains(name)) {
            add_rule(&mut builder, name, Action::Block(BlockAction::Refused), "alias");
        }
        // Alias records of hosted zones whose target is an AWS name (a load
        // balancer, CloudFront, an S3 website): the emulator, as the target would be.
        let mut warnings = compiled.warnings.clone();
        for external in &compiled.external_aliases {
            if self.is_redirected(&external.target)? {
                add_rule(&mut builder, &external.name, Action::Redirect(redirect), "route53-alias");
            } else {
                warnings.push(HostedZoneWarning {
                    zone: String::new(),
                    name: external.name.to_string(),
                    problem: format!("alias target {} is in no hosted zone and not redirected", external.target),
                });
            }
        }

        for mut spec in route53::zone_specs(&compiled) {
            let apex = spec.zone.apex().clone();
            if let Some(records) = overlays.remove(&apex) {
                // Records added at run time at a hosted zone's apex become part of it.
                spec.zone = Arc::new(spec.zone.apply(records.into_iter().map(signpost_rules::ZoneChange::Add))?);
            }
            builder.zone(spec);
        }
        for (apex, records) in overlays {
            let zone = Zone::loose(apex.clone(), records)?;
            builder.zone(ZoneSpec {
                id: format!("runtime:{apex}"),
                mode: ZoneMode::Overlay,
                ..ZoneSpec::new(zone).in_views(["*"])
            });
        }
        Ok(Built { rules: builder.build()?, warnings })
    }

    /// Whether `name` is answered with the redirect address: a name pointing
    /// to the emulator, or a name in a redirected domain not skipped.
    fn is_redirected(&self, name: &NameBuf) -> Result<bool, RedirectError> {
        let host = self.emulator_hosts.iter().any(|host| {
            if is_wildcard(host) {
                host.parent().is_some_and(|parent| name.is_subdomain_of(&parent) && *name != parent)
            } else {
                host == name
            }
        });
        if host {
            return Ok(true);
        }
        let (aws, emulator) = self.settings.redirected_domains()?;
        Ok(aws.iter().chain(&emulator).any(|domain| name.is_subdomain_of(domain)))
    }

    /// What `target` holds of `rtype`: records added at run time (exact,
    /// then through a wildcard), a hosted zone's records, a configured host
    /// entry's addresses, or the redirect address of a redirected name.
    /// Aliases are not followed (LocalStack's do not chain either).
    fn resolve(
        &self,
        target: &NameBuf,
        rtype: RecordType,
        compiled: &CompiledHostedZones,
    ) -> Result<Resolution, RedirectError> {
        let of = |name: &NameBuf| -> Vec<RecordBuf> {
            self.records
                .iter()
                .filter(|stored| stored.record.name == *name && stored.record.rtype() == rtype)
                .map(|stored| stored.record.clone())
                .collect()
        };
        let exact = of(target);
        if !exact.is_empty() {
            return Ok(Resolution::Records(exact));
        }
        if !self.records.iter().any(|stored| stored.record.name == *target) {
            let mut ancestor = target.parent();
            while let Some(parent) = ancestor {
                if let Ok(wildcard) = parent.prepend(b"*") {
                    let found = of(&wildcard);
                    if !found.is_empty() {
                        return Ok(Resolution::Records(found));
                    }
                }
                ancestor = parent.parent();
            }
        }
        let address_type = matches!(rtype, RecordType::A | RecordType::AAAA);
        if let Some((_, zone)) = compiled
            .zones
            .iter()
            .filter(|(_, zone)| target.is_subdomain_of(zone.apex()))
            .max_by_key(|(_, zone)| zone.apex().label_count())
        {
            let found = zone_records(zone, target, rtype);
            if !found.is_empty() {
                return Ok(Resolution::Records(found));
            }
        }
        if address_type {
            for table in self.base.host_tables() {
                if let Some(entry) = table.entries.iter().find(|entry| entry.name.to_lowercase() == *target) {
                    let records: Vec<RecordBuf> = entry
                        .addresses
                        .iter()
                        .filter_map(|address| match (address, rtype) {
                            (IpAddr::V4(v4), RecordType::A) => Some(RDataBuf::A(*v4)),
                            (IpAddr::V6(v6), RecordType::AAAA) => Some(RDataBuf::Aaaa(*v6)),
                            _ => None,
                        })
                        .map(|data| RecordBuf::new(target.clone(), table.ttl, data))
                        .collect();
                    if !records.is_empty() {
                        return Ok(Resolution::Records(records));
                    }
                }
            }
            if self.is_redirected(target)? {
                return Ok(Resolution::Redirect);
            }
        }
        Ok(Resolution::Unknown)
    }

    fn snapshot(&self, health: &HashMap<u64, bool>) -> RedirectSnapshot {
        let settings = &self.settings;
        let mut hosts: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for stored in &self.records {
            let address = match stored.record.data {
                RDataBuf::A(v4) => IpAddr::V4(v4),
                RDataBuf::Aaaa(v6) => IpAddr::V6(v6),
                _ => continue,
            };
            hosts.entry(stored.record.name.to_relative_string()).or_default().push(address);
        }
        for host in &self.emulator_hosts {
            hosts.entry(host.to_relative_string()).or_default();
        }
        let compiled = route53::compile(&self.hosted, settings.ttl).unwrap_or_default();
        RedirectSnapshot {
            domains: settings
                .domain_names()
                .map(|names| names.iter().map(NameBuf::to_relative_string).collect())
                .unwrap_or_else(|_| settings.domains.clone()),
            local_name_patterns: settings.local_name_patterns.clone(),
            configured_skip_patterns: settings.name_patterns_to_resolve_upstream.clone(),
            skip_patterns: self.skips.clone(),
            hosts: hosts.into_iter().map(|(name, addresses)| HostRecord { name, addresses }).collect(),
            records: self
                .records
                .iter()
                .map(|stored| RecordEntry {
                    name: stored.record.name.to_relative_string(),
                    rtype: stored.record.rtype().to_string(),
                    value: stored.record.data.to_string(),
                    ttl: stored.record.ttl,
                    id: stored.id.clone(),
                })
                .collect(),
            aliases: self
                .aliases
                .iter()
                .map(|alias| AliasRecord {
                    name: alias.name.to_relative_string(),
                    target: alias.target.to_relative_string(),
                    types: alias.types.iter().map(ToString::to_string).collect(),
                    id: alias.id.clone(),
                    health_check: alias.health.clone(),
                    healthy: health.get(&alias.key).copied().unwrap_or(true),
                    resolved: alias.types.iter().any(|rtype| {
                        matches!(
                            self.resolve(&alias.target, *rtype, &compiled),
                            Ok(Resolution::Records(_) | Resolution::Redirect)
                        )
                    }),
                })
                .collect(),
            hosted_zones: self
                .hosted
                .iter()
                .map(|zone| HostedZoneSummary {
                    id: zone.id.clone(),
                    name: zone.name.clone(),
                    record_sets: zone.resource_record_sets.len(),
                })
                .collect(),
            ttl: settings.ttl,
        }
    }
}

/// The records of `name` and `rtype` in `zone`, exact or through the
/// wildcard of an ancestor, with their owner as stored.
fn zone_records(zone: &Zone, name: &NameBuf, rtype: RecordType) -> Vec<RecordBuf> {
    let exact = zone.rrset(name, rtype);
    if !exact.is_empty() {
        return exact.to_vec();
    }
    let mut ancestor = name.parent();
    while let Some(parent) = ancestor {
        if !parent.is_subdomain_of(zone.apex()) {
            break;
        }
        if let Ok(wildcard) = parent.prepend(b"*") {
            let found = zone.rrset(&wildcard, rtype);
            if !found.is_empty() {
                return found.to_vec();
            }
        }
        ancestor = parent.parent();
    }
    Vec::new()
}

/// The redirect proxy's rules and their changes at run time.
///
/// Every change builds a new rule set from the settings plus all changes so
/// far and installs it on the server; a change that does not build (a bad
/// regex, a record that breaks a zone's rules) is refused and leaves
/// everything as it was. Shared with the admin listener, where it serves the
/// JSON API under `/redirect` (see docs/redirect.md).
pub struct Redirector {
    state: Mutex<RuntimeState>,
    /// Alias key → whether its last health check passed.
    health: Mutex<HashMap<u64, bool>>,
    /// Alias key → its health-check task.
    checkers: Mutex<HashMap<u64, tokio::task::JoinHandle<()>>>,
    next_key: AtomicU64,
    /// Itself, for the health-check tasks.
    me: Weak<Self>,
}

impl fmt::Debug for Redirector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redirector").finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Redirector {
    /// Check the settings and build the first rule set. `base` holds
    /// anything else to answer (zones, host tables from configuration).
    pub fn new(settings: RedirectSettings, base: RuleSetBuilder) -> Result<Arc<Self>, RedirectError> {
        settings.check_patterns()?;
        let state = RuntimeState {
            settings,
            base,
            hosted: Vec::new(),
            records: Vec::new(),
            emulator_hosts: Vec::new(),
            aliases: Vec::new(),
            skips: Vec::new(),
        };
        state.build(&HashMap::new())?;
        Ok(Arc::new_cyclic(|me| Self {
            state: Mutex::new(state),
            health: Mutex::new(HashMap::new()),
            checkers: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(1),
            me: me.clone(),
        }))
    }

    fn health_snapshot(&self) -> HashMap<u64, bool> {
        lock(&self.health).clone()
    }

    /// The rule set for the settings and every change so far.
    pub fn rule_set(&self) -> Result<RuleSet, RedirectError> {
        let state = lock(&self.state);
        Ok(state.build(&self.health_snapshot())?.rules)
    }

    /// The settings in force.
    pub fn settings(&self) -> RedirectSettings {
        lock(&self.state).settings.clone()
    }

    /// Settings and run-time changes.
    pub fn snapshot(&self) -> RedirectSnapshot {
        let state = lock(&self.state);
        state.snapshot(&self.health_snapshot())
    }

    /// New settings and base rules (a reload); run-time changes and hosted zones are kept.
    pub fn reconfigure(&self, settings: RedirectSettings, base: RuleSetBuilder) -> Result<RuleSet, RedirectError> {
        settings.check_patterns()?;
        let mut state = lock(&self.state);
        let mut next = state.clone();
        next.settings = settings;
        next.base = base;
        let built = next.build(&self.health_snapshot())?;
        *state = next;
        Ok(built.rules)
    }

    /// Apply `change` to a copy of the state, build, install on `server`,
    /// keep; then start and stop health checks to match.
    fn change<T>(
        &self,
        server: &ServerHandle,
        change: impl FnOnce(&mut RuntimeState) -> Result<T, RedirectError>,
    ) -> Result<(T, Vec<HostedZoneWarning>), RedirectError> {
        let mut state = lock(&self.state);
        let mut next = state.clone();
        let outcome = change(&mut next)?;
        let built = next.build(&self.health_snapshot())?;
        server.set_rules(built.rules);
        *state = next;
        let aliases = state.aliases.clone();
        drop(state);
        self.sync_checkers(server, &aliases);
        Ok((outcome, built.warnings))
    }

    /// Start a checker for every alias with a check that has none, and stop
    /// those whose alias is gone.
    fn sync_checkers(&self, server: &ServerHandle, aliases: &[StoredAlias]) {
        let mut checkers = lock(&self.checkers);
        checkers.retain(|key, task| {
            let keep = aliases.iter().any(|alias| alias.key == *key);
            if !keep {
                task.abort();
            }
            keep
        });
        lock(&self.health).retain(|key, _| aliases.iter().any(|alias| alias.key == *key));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        for alias in aliases {
            let Some(spec) = &alias.health else { continue };
            if checkers.contains_key(&alias.key) {
                continue;
            }
            let (me, server, spec, key) = (self.me.clone(), server.clone(), spec.clone(), alias.key);
            let task = runtime.spawn(async move {
                loop {
                    let healthy = spec.check.run().await;
                    let Some(redirector) = me.upgrade() else { return };
                    redirector.report_health(&server, key, healthy);
                    drop(redirector);
                    tokio::time::sleep(spec.interval).await;
                }
            });
            checkers.insert(alias.key, task);
        }
    }

    /// Record a health result; when it changed, rebuild and install.
    fn report_health(&self, server: &ServerHandle, key: u64, healthy: bool) {
        let changed = lock(&self.health).insert(key, healthy) != Some(healthy);
        if !changed {
            return;
        }
        let state = lock(&self.state);
        if !state.aliases.iter().any(|alias| alias.key == key) {
            return;
        }
        // The same state built before; should it fail now, the rules stay as they are.
        if let Ok(built) = state.build(&self.health_snapshot()) {
            server.set_rules(built.rules);
        }
    }

    /// Stop every health check (on shutdown).
    pub fn stop_health_checks(&self) {
        for (_, task) in lock(&self.checkers).drain() {
            task.abort();
        }
    }

    /// Answer `name` with `addresses` (A and AAAA; other types are passed
    /// on upstream), or with the redirect address when `addresses` is empty
    /// (LocalStack's `add_host_pointing_to_localstack`). Replaces the
    /// name's earlier A and AAAA records; `*.example.org` covers every name
    /// below `example.org`.
    pub fn add_host(&self, server: &ServerHandle, name: &str, addresses: &[IpAddr]) -> Result<(), RedirectError> {
        let name = runtime_name("host record", name)?;
        let ttl = lock(&self.state).settings.ttl;
        self.change(server, |state| {
            state.remove_host(&name);
            if addresses.is_empty() {
                state.emulator_hosts.push(name.clone());
            }
            let mut unique = Vec::new();
            for address in addresses {
                if !unique.contains(address) {
                    unique.push(*address);
                }
            }
            for address in unique {
                let data = match address {
                    IpAddr::V4(v4) => RDataBuf::A(v4),
                    IpAddr::V6(v6) => RDataBuf::Aaaa(v6),
                };
                state.records.push(StoredRecord { record: RecordBuf::new(name.clone(), ttl, data), id: None });
            }
            Ok(())
        })
        .map(|_| ())
    }

    /// Remove the A and AAAA records of `name` and its pointer to the emulator.
    pub fn delete_host(&self, server: &ServerHandle, name: &str) -> Result<(), RedirectError> {
        let name = runtime_name("host record", name)?;
        self.change(server, |state| match state.remove_host(&name) {
            0 => Err(RedirectError::NotFound { kind: "host record", name: name.to_relative_string() }),
            _ => Ok(()),
        })
        .map(|_| ())
    }

    /// Add a record of any type (LocalStack's `add_host` with a `TargetRecord`).
    pub fn add_record(&self, server: &ServerHandle, spec: &RecordSpec) -> Result<(), RedirectError> {
        let name = runtime_name("record", &spec.name)?;
        let ttl = spec.ttl.unwrap_or_else(|| lock(&self.state).settings.ttl);
        let record = route53::record_from_value(&name, spec.rtype, ttl, &spec.value).map_err(|source| {
            RedirectError::InvalidRecord { name: spec.name.clone(), value: spec.value.clone(), source }
        })?;
        if record.rtype() != spec.rtype {
            return Err(RedirectError::InvalidSetting {
                setting: "record",
                value: spec.value.clone(),
                problem: "the value is of another type",
            });
        }
        self.change(server, |state| {
            state.records.push(StoredRecord { record, id: spec.id.clone() });
            Ok(())
        })
        .map(|_| ())
    }

    /// Delete the run-time records `filter` selects; how many.
    pub fn delete_records(&self, server: &ServerHandle, filter: &RecordFilter) -> Result<usize, RedirectError> {
        let name = runtime_name("record", &filter.name)?;
        let value = match (&filter.value, filter.rtype) {
            (Some(value), Some(rtype)) => Some(
                route53::record_from_value(&name, rtype, 0, value)
                    .map_err(|source| RedirectError::InvalidRecord {
                        name: filter.name.clone(),
                        value: value.clone(),
                        source,
                    })?
                    .data,
            ),
            (Some(value), None) => {
                return Err(RedirectError::InvalidSetting {
                    setting: "record",
                    value: value.clone(),
                    problem: "a value to delete needs its type",
                });
            }
            _ => None,
        };
        self.change(server, |state| {
            remove_matching(&mut state.records, "record", &name, |stored| {
                let record = &stored.record;
                record.name == name
                    && filter.rtype.is_none_or(|rtype| record.rtype() == rtype)
                    && value.as_ref().is_none_or(|data| record.data == *data)
                    && filter.id.as_ref().is_none_or(|id| stored.id.as_ref() == Some(id))
            })
        })
        .map(|(deleted, _)| deleted)
    }

    /// Answer `name` with the addresses of `target` (records added at run
    /// time, a hosted zone's, a host table entry's, or the redirect address
    /// of a redirected name); while `target` is unknown the alias answers
    /// REFUSED. Added after the name's earlier targets.
    pub fn add_alias(&self, server: &ServerHandle, name: &str, target: &str) -> Result<(), RedirectError> {
        self.add_alias_with(server, AliasSpec::new(name, target))
    }

    /// Add an alias target with its types, id and health check (LocalStack's
    /// `add_alias` with an `AliasTarget`).
    pub fn add_alias_with(&self, server: &ServerHandle, spec: AliasSpec) -> Result<(), RedirectError> {
        let name = runtime_name("alias", &spec.name)?;
        let target = runtime_name("alias target", &spec.target)?;
        if name == target {
            return Err(RedirectError::Conflict { name: name.to_relative_string(), what: "its own target" });
        }
        if is_wildcard(&target) {
            return Err(RedirectError::InvalidSetting {
                setting: "alias target",
                value: spec.target.clone(),
                problem: "a target is one name, not a wildcard",
            });
        }
        if let Some(health) = &spec.health_check {
            health.check.validate()?;
        }
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        // A function check is asked now, so the first answer already follows it.
        if let Some(HealthCheckSpec { check: HealthCheck::Custom(check), .. }) = &spec.health_check {
            lock(&self.health).insert(key, check());
        }
        let result = self.change(server, |state| {
            state.aliases.push(StoredAlias {
                name: name.clone(),
                target: target.clone(),
                types: spec.types.clone(),
                id: spec.id.clone(),
                health: spec.health_check.clone(),
                key,
            });
            Ok(())
        });
        if result.is_err() {
            lock(&self.health).remove(&key);
        }
        result.map(|_| ())
    }

    /// Remove every target of the alias `name`.
    pub fn delete_alias(&self, server: &ServerHandle, name: &str) -> Result<(), RedirectError> {
        self.delete_alias_matching(server, name, None, None).map(|_| ())
    }

    /// Remove the targets of the alias `name` that cover `rtype` (all when
    /// `None`) and carry `id` (any when `None`); how many.
    pub fn delete_alias_matching(
        &self,
        server: &ServerHandle,
        name: &str,
        rtype: Option<RecordType>,
        id: Option<&str>,
    ) -> Result<usize, RedirectError> {
        let name = runtime_name("alias", name)?;
        self.change(server, |state| {
            remove_matching(&mut state.aliases, "alias", &name, |alias| {
                alias.name == name
                    && rtype.is_none_or(|rtype| alias.types.contains(&rtype))
                    && id.is_none_or(|id| alias.id.as_deref() == Some(id))
            })
        })
        .map(|(deleted, _)| deleted)
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
        .map(|_| ())
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
        .map(|_| ())
    }

    /// Remove every run-time change: records, hosts, aliases and skip
    /// patterns (LocalStack's `clear`). The settings stay, and so do the
    /// hosted zones, which belong to the Route 53 API.
    pub fn clear(&self, server: &ServerHandle) -> Result<(), RedirectError> {
        self.change(server, |state| {
            state.records.clear();
            state.emulator_hosts.clear();
            state.aliases.clear();
            state.skips.clear();
            Ok(())
        })
        .map(|_| ())
    }

    /// Serve these hosted zones (all of them, replacing the earlier set), as
    /// the Route 53 API publishes them; what could not be used is returned.
    pub fn set_hosted_zones(
        &self,
        server: &ServerHandle,
        zones: Vec<HostedZone>,
    ) -> Result<Vec<HostedZoneWarning>, RedirectError> {
        self.change(server, |state| {
            state.hosted = zones;
            Ok(())
        })
        .map(|((), warnings)| warnings)
    }
}

#[cfg(test)]
mod tests {
    use signpost_rules::{Answer, Client, Decision};
    use signpost_wire::Class;

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
        assert!(is_local(&rules, "data-localhost.localstack.cloud"), "LocalStack's host-prefix names too");
        assert!(!is_local(&rules, "www.example.com"));
        match decide(&rules, "Lambda.us-east-1.amazonaws.com", RecordType::A) {
            Decision::Local(local) => {
                assert_eq!(local.answer, Answer::AddressOfQuestion { address: [127, 0, 0, 1].into(), ttl: 300 });
            }
            other => panic!("{other:?}"),
        }
        // Types the redirect does not hold are forwarded, as LocalStack forwards them.
        assert!(matches!(decide(&rules, "test.localhost.localstack.cloud", RecordType::MX), Decision::Forward(_)));
    }

    #[test]
    fn names_at_run_time_are_checked() {
        assert_eq!(runtime_name("record", "*.Example.Org").expect("wildcard").to_string(), "*.example.org.");
        assert!(runtime_name("record", "a.*.example.org").is_err());
        assert!(runtime_name("record", ".").is_err());
        assert_eq!(overlay_apex(&"*.example.org.".parse().expect("name")).to_string(), "example.org.");
    }
}
