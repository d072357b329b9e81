//! Unbound's local zones, `view:` clauses and access-control actions as the
//! rule engine's zones, rules and views.
//!
//! Unbound answers from the closest enclosing local zone of the client's
//! view (see [`view_zones`]) and only then forwards; [`rules_for`] turns
//! one such set of zones into rules and zones (see the module above for
//! the bridging). Clients are sorted into rule-engine views by the pair
//! (access-control action, view): each netblock either list names gets
//! the pair of the longest entries containing it, so the rule engine's
//! longest-prefix view choice finds, for any client, the pair of its own
//! longest matches ([`client_classes`]).

use std::collections::BTreeMap;
use std::path::Path;

use ipnet::IpNet;
use signpost_rules::config::{ActionKind, BlockKind, RuleConfig, ViewConfig, ZoneConfig};
use signpost_rules::{DEFAULT_VIEW, Location, OtherTypes, ZoneMode};
use signpost_wire::{NameBuf, RecordBuf};

use super::{Behaviour, LocalZone, closest, zone_config};
use crate::build::empty_rule;
use crate::error::Warning;
use signpost_rules::locally_served as defaults;

/// What an access-control entry does, with all of Unbound's actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Access {
    /// `allow`, `allow_setrd`, `allow_snoop`.
    Allow,
    /// `refuse`: REFUSED for everything (the listener's allow-list does it).
    Refuse,
    /// `deny`: every query dropped.
    Deny,
    /// `refuse_non_local`: local data answered, everything else REFUSED.
    RefuseNonLocal,
    /// `deny_non_local`: local data answered, everything else dropped.
    DenyNonLocal,
}

/// A `view:` clause.
pub(super) struct UnboundView {
    pub(super) name: String,
    pub(super) at: Location,
    /// `view-first: yes`: names no zone of the view covers use the global local zones.
    pub(super) first: bool,
    pub(super) zones: Vec<LocalZone>,
    pub(super) nodefault: Vec<NameBuf>,
    pub(super) data: Vec<(RecordBuf, Location)>,
}

impl UnboundView {
    /// Whether the view has local zones of its own (Unbound gives a view
    /// without any the global ones, whatever `view-first` says).
    fn has_zones(&self) -> bool {
        !self.zones.is_empty() || !self.data.is_empty()
    }
}

/// Where generated rules apply, and what forwarding becomes there.
pub(super) struct Scope {
    /// The rule-engine view (`None`: the default view).
    pub(super) view: Option<String>,
    /// For `refuse_non_local` / `deny_non_local` clients: how names that
    /// would be forwarded are answered.
    pub(super) non_local: Option<BlockKind>,
}

impl Scope {
    fn id(&self, id: &str) -> String {
        match &self.view {
            Some(view) => format!("{view}: {id}"),
            None => id.to_owned(),
        }
    }

    fn views(&self) -> Vec<String> {
        self.view.iter().cloned().collect()
    }
}

/// Rules and zones made from one set of local zones.
#[derive(Default)]
pub(super) struct Generated {
    pub(super) rules: Vec<(RuleConfig, Location)>,
    pub(super) zones: Vec<(ZoneConfig, Location, Vec<Location>)>,
    pub(super) warnings: Vec<Warning>,
}

impl Generated {
    pub(super) fn append(&mut self, mut other: Self) {
        self.rules.append(&mut other.rules);
        self.zones.append(&mut other.zones);
        self.warnings.append(&mut other.warnings);
    }
}

/// Forward zones: (zone, group, forward-first), and the default group.
/// The group name of a forward zone whose every server was skipped
/// (`do-not-query-localhost`): its names are answered SERVFAIL, as Unbound does.
pub(super) const NO_USABLE_SERVER: &str = "";

pub(super) struct Forwards<'a> {
    pub(super) zones: &'a [(NameBuf, String, bool)],
    pub(super) default_group: &'a str,
}

/// The default local zones Unbound adds: all of them unless turned off,
/// less those named `nodefault` and those the user defines.
fn add_defaults(zones: &mut Vec<LocalZone>, unblock_lan_zones: bool, nodefault: &[NameBuf], file: &Path) {
    for default in defaults::default_zones(unblock_lan_zones) {
        let Ok(zone_name) = default.name.parse::<NameBuf>() else { continue };
        if zones.iter().any(|zone| zone.name == zone_name) || nodefault.contains(&zone_name) {
            continue;
        }
        let at = Location {
            file: Some(file.to_path_buf()),
            ..Location::field(format!("default local-zone {}", default.name))
        };
        let data = default
            .records
            .iter()
            .filter_map(|text| text.parse::<RecordBuf>().ok())
            .map(|record| (record, at.clone()))
            .collect();
        let behaviour = if default.redirect { Behaviour::Redirect } else { Behaviour::Static };
        zones.push(LocalZone { name: zone_name, behaviour, at, data });
    }
}

/// Attach local data to its closest zone; data outside every zone makes a
/// transparent zone of its owner name (as Unbound does).
fn attach_data(zones: &mut Vec<LocalZone>, data: Vec<(RecordBuf, Location)>) {
    for (record, at) in data {
        let owner = record.name.to_lowercase();
        match closest(zones, &owner, true) {
            Some(index) => {
                if let Some(zone) = zones.get_mut(index) {
                    zone.data.push((record, at));
                }
            }
            None => zones.push(LocalZone {
                name: owner,
                behaviour: Behaviour::Transparent,
                at: at.clone(),
                data: vec![(record, at)],
            }),
        }
    }
}

/// The global local zones: the user's, the defaults, and the data.
pub(super) fn global_zones(
    mut zones: Vec<LocalZone>,
    data: Vec<(RecordBuf, Location)>,
    defaults: Option<bool>,
    nodefault: &[NameBuf],
    file: &Path,
) -> Vec<LocalZone> {
    if let Some(unblock_lan_zones) = defaults {
        add_defaults(&mut zones, unblock_lan_zones, nodefault, file);
    }
    attach_data(&mut zones, data);
    zones
}

/// The zones that answer a client of `view`, as Unbound looks them up.
///
/// - A view without zones of its own uses the global zones.
/// - `view-first: no`: the view's zones and Unbound's default zones (less
///   the view's `nodefault`s); a `noview` zone resolves its names.
/// - `view-first: yes`: the view's zones, and the global zones no zone of
///   the view covers (Unbound asks the view first and only goes to the
///   global zones when none of the view's encloses the name, or the one
///   that does is `noview`).
pub(super) fn view_zones(view: &UnboundView, global: &[LocalZone], file: &Path) -> Vec<LocalZone> {
    if !view.has_zones() {
        return global.to_vec();
    }
    let mut zones: Vec<LocalZone> = view.zones.clone();
    if view.first {
        zones.retain(|zone| zone.behaviour != Behaviour::NoView);
        attach_data(&mut zones, view.data.clone());
        let covered = |name: &NameBuf| {
            closest(&view.zones, name, true)
                .and_then(|index| view.zones.get(index))
                .is_some_and(|zone| zone.behaviour != Behaviour::NoView)
        };
        zones.extend(global.iter().filter(|zone| !covered(&zone.name)).cloned());
    } else {
        for zone in &mut zones {
            if zone.behaviour == Behaviour::NoView {
                zone.behaviour = Behaviour::AlwaysTransparent;
            }
        }
        add_defaults(&mut zones, false, &view.nodefault, file);
        attach_data(&mut zones, view.data.clone());
    }
    zones
}

/// Rules and zones for one set of local zones, in one scope.
pub(super) fn rules_for(
    zones: &[LocalZone],
    forwards: &Forwards<'_>,
    forward_locations: &BTreeMap<NameBuf, Location>,
    scope: &Scope,
) -> Generated {
    let mut out = Generated::default();
    // Owner names that get a zone of their own: transparent (typetransparent:
    // overlay, so other types are resolved).
    let mut owner_zones: BTreeMap<NameBuf, (ZoneMode, Vec<(RecordBuf, Location)>)> = BTreeMap::new();
    for zone in zones.iter().filter(|zone| zone.behaviour.owner_zones()) {
        let mode = if zone.behaviour == Behaviour::TypeTransparent { ZoneMode::Overlay } else { ZoneMode::Transparent };
        for (record, at) in &zone.data {
            let entry = owner_zones.entry(record.name.to_lowercase()).or_insert_with(|| (mode, Vec::new()));
            entry.1.push((record.clone(), at.clone()));
        }
    }
    let suffix_or_wildcard = |rule: &mut RuleConfig, name: &NameBuf| {
        if owner_zones.contains_key(name) {
            rule.wildcard = Some(format!("*.{}", name.to_relative_string()));
        } else {
            rule.suffix = Some(name.to_relative_string());
        }
    };
    let rule = |id: &str, action: ActionKind| {
        let mut rule = empty_rule(&scope.id(id), action);
        rule.views = scope.views();
        rule
    };
    // A forward rule, or in a non-local scope the block that replaces it.
    let forward = |id: &str, group: &str, first: bool| match scope.non_local {
        Some(kind) => {
            let mut blocked = rule(id, ActionKind::Block);
            blocked.block = Some(kind);
            blocked
        }
        None if group == NO_USABLE_SERVER => {
            let mut failed = rule(id, ActionKind::Block);
            failed.block = Some(BlockKind::Servfail);
            failed
        }
        None => {
            let mut forwarded = rule(id, ActionKind::Forward);
            forwarded.group = Some(group.to_owned());
            forwarded.forward_first = first;
            forwarded
        }
    };
    let zone_entry = |id: &str, apex: &NameBuf, data: &[(RecordBuf, Location)], mode: ZoneMode, at: &Location| {
        let (mut zone, at, locations) = zone_config(&scope.id(id), apex, data, mode, at);
        zone.views = scope.views();
        (zone, at, locations)
    };

    for zone in zones {
        let apex = zone.name.to_relative_string();
        let id = format!("local-zone {apex}");
        let data = if zone.behaviour.uses_data() { zone.data.as_slice() } else { &[] };
        match zone.behaviour {
            Behaviour::Static | Behaviour::Redirect => {
                let mode =
                    if zone.behaviour == Behaviour::Static { ZoneMode::Authoritative } else { ZoneMode::Redirect };
                out.zones.push(zone_entry(&id, &zone.name, data, mode, &zone.at));
            }
            Behaviour::Transparent | Behaviour::TypeTransparent | Behaviour::AlwaysTransparent | Behaviour::NoView => {}
            Behaviour::Refuse
            | Behaviour::Deny
            | Behaviour::AlwaysRefuse
            | Behaviour::AlwaysDeny
            | Behaviour::AlwaysNxdomain => {
                let mut blocked = rule(&id, ActionKind::Block);
                blocked.block = Some(match zone.behaviour {
                    Behaviour::AlwaysNxdomain => BlockKind::Nxdomain,
                    Behaviour::Deny | Behaviour::AlwaysDeny => BlockKind::Drop,
                    _ => BlockKind::Refused,
                });
                if matches!(zone.behaviour, Behaviour::Refuse | Behaviour::Deny) {
                    suffix_or_wildcard(&mut blocked, &zone.name);
                } else {
                    blocked.suffix = Some(apex.clone());
                }
                out.rules.push((blocked, zone.at.clone()));
            }
            Behaviour::AlwaysNodata | Behaviour::AlwaysNull | Behaviour::BlockA | Behaviour::BlockAaaa => {
                let mut redirect = rule(&id, ActionKind::Redirect);
                redirect.suffix = Some(apex.clone());
                let (v4, v6) = match zone.behaviour {
                    Behaviour::AlwaysNull => ("0.0.0.0", "::"),
                    Behaviour::BlockA => ("none", "decline"),
                    Behaviour::BlockAaaa => ("decline", "none"),
                    _ => ("none", "none"),
                };
                redirect.ipv4 = Some(v4.into());
                redirect.ipv6 = Some(v6.into());
                redirect.ttl = Some(3600);
                if matches!(zone.behaviour, Behaviour::BlockA | Behaviour::BlockAaaa) {
                    // Other types are resolved.
                    redirect.other_types = Some(OtherTypes::Decline);
                }
                out.rules.push((redirect, zone.at.clone()));
            }
        }
    }
    for (owner, (mode, data)) in &owner_zones {
        let at = data.first().map_or_else(Location::default, |(_, at)| at.clone());
        let id = format!("local-data {}", owner.to_relative_string());
        out.zones.push(zone_entry(&id, owner, data, *mode, &at));
    }

    // Forward zones whose names a local zone does not answer.
    let live = |zone_name: &NameBuf| {
        closest(zones, zone_name, true).and_then(|index| zones.get(index)).is_none_or(|zone| zone.behaviour.resolves())
    };
    for (zone_name, group, first) in forwards.zones {
        let at = forward_locations.get(zone_name).cloned().unwrap_or_default();
        if !live(zone_name) {
            if scope.view.is_none()
                && let Some(by) = closest(zones, zone_name, true).and_then(|index| zones.get(index))
            {
                out.warnings.push(Warning::Shadowed {
                    at: at.clone(),
                    zone: zone_name.to_string(),
                    by: by.name.to_string(),
                });
            }
            continue;
        }
        if zone_name.is_root() {
            continue;
        }
        let mut forwarded = forward(&format!("forward-zone {}", zone_name.to_relative_string()), group, *first);
        suffix_or_wildcard(&mut forwarded, zone_name);
        out.rules.push((forwarded, at));
    }
    // Transparent zones inside zones that answer: their names are resolved.
    for zone in zones.iter().filter(|zone| zone.behaviour.resolves()) {
        let Some(parent) = zone.name.parent() else { continue };
        let Some(enclosing) = closest(zones, &parent, true).and_then(|index| zones.get(index)) else { continue };
        if enclosing.behaviour.resolves() || forwards.zones.iter().any(|(name, _, _)| *name == zone.name && live(name))
        {
            continue;
        }
        let (group, first) = forwards
            .zones
            .iter()
            .filter(|(name, _, _)| zone.name.is_subdomain_of(name))
            .max_by_key(|(name, _, _)| name.label_count())
            .map_or((forwards.default_group, false), |(_, group, first)| (group.as_str(), *first));
        let apex = zone.name.to_relative_string();
        let mut below = forward(&format!("local-zone {apex} (below)"), group, first);
        below.wildcard = Some(format!("*.{apex}"));
        out.rules.push((below, zone.at.clone()));
        if !owner_zones.contains_key(&zone.name) {
            let mut exact = forward(&format!("local-zone {apex}"), group, first);
            exact.exact = Some(apex.clone());
            out.rules.push((exact, zone.at.clone()));
        }
    }
    // Non-local clients: whatever no local zone answers.
    if let Some(kind) = scope.non_local {
        let mut rest = rule("access-control (not local data)", ActionKind::Block);
        rest.suffix = Some(".".into());
        rest.block = Some(kind);
        out.rules.push((rest, Location::default()));
    }
    out
}

/// A rule-engine view for each (access-control action, view) pair clients
/// can have, with the netblocks that have it; the pair (allow, no view)
/// is the default view, listed only when other pairs exist.
pub(super) fn client_classes(
    access: &[(IpNet, Access)],
    views: &[(IpNet, String)],
) -> BTreeMap<(Access, Option<String>), Vec<IpNet>> {
    let mut netblocks: Vec<IpNet> =
        access.iter().map(|(net, _)| net.trunc()).chain(views.iter().map(|(net, _)| net.trunc())).collect();
    netblocks.sort();
    netblocks.dedup();
    let mut classes: BTreeMap<(Access, Option<String>), Vec<IpNet>> = BTreeMap::new();
    for netblock in netblocks {
        // The longest entry containing the netblock; later entries for the same network win.
        let action = access
            .iter()
            .filter(|(net, _)| net.trunc().contains(&netblock))
            .fold(None::<(u8, Access)>, |best, (net, action)| match best {
                Some((prefix, _)) if prefix > net.prefix_len() => best,
                _ => Some((net.prefix_len(), *action)),
            })
            .map_or(Access::Refuse, |(_, action)| action);
        if action == Access::Refuse {
            continue;
        }
        let view = views
            .iter()
            .filter(|(net, _)| net.trunc().contains(&netblock))
            .fold(None::<(u8, &String)>, |best, (net, name)| match best {
                Some((prefix, _)) if prefix > net.prefix_len() => best,
                _ => Some((net.prefix_len(), name)),
            })
            .map(|(_, name)| name.clone());
        let view = if action == Access::Deny { None } else { view };
        classes.entry((action, view)).or_default().push(netblock);
    }
    if classes.keys().all(|(action, view)| *action == Access::Allow && view.is_none()) {
        classes.clear();
    }
    classes
}

/// The rule-engine view name of a class.
pub(super) fn class_view_name(action: Access, view: Option<&str>) -> String {
    let suffix = match action {
        Access::Allow | Access::Refuse => "",
        Access::Deny => return "access-control deny".into(),
        Access::RefuseNonLocal => "refuse_non_local",
        Access::DenyNonLocal => "deny_non_local",
    };
    match (view, suffix) {
        (None, "") => DEFAULT_VIEW.into(),
        (Some(view), "") => view.to_owned(),
        (None, suffix) => format!("access-control {suffix}"),
        (Some(view), suffix) => format!("{view} ({suffix})"),
    }
}

/// Everything for the clients of one class.
pub(super) fn class_rules(
    action: Access,
    view: Option<&UnboundView>,
    global: &[LocalZone],
    forwards: &Forwards<'_>,
    forward_locations: &BTreeMap<NameBuf, Location>,
    file: &Path,
) -> Generated {
    let name = class_view_name(action, view.map(|view| view.name.as_str()));
    let scope_view = (name != DEFAULT_VIEW).then(|| name.clone());
    if action == Access::Deny {
        let mut out = Generated::default();
        let mut drop = empty_rule(&format!("{name}: everything"), ActionKind::Block);
        drop.views = scope_view.into_iter().collect();
        drop.suffix = Some(".".into());
        drop.block = Some(BlockKind::Drop);
        out.rules.push((drop, Location::default()));
        return out;
    }
    let non_local = match action {
        Access::RefuseNonLocal => Some(BlockKind::Refused),
        Access::DenyNonLocal => Some(BlockKind::Drop),
        _ => None,
    };
    let zones = match view {
        Some(view) => view_zones(view, global, file),
        None => global.to_vec(),
    };
    rules_for(&zones, forwards, forward_locations, &Scope { view: scope_view, non_local })
}

/// The rule-engine views of the classes, and their rules.
pub(super) fn classes_config(
    classes: &BTreeMap<(Access, Option<String>), Vec<IpNet>>,
    unbound_views: &[UnboundView],
    global: &[LocalZone],
    forwards: &Forwards<'_>,
    forward_locations: &BTreeMap<NameBuf, Location>,
    file: &Path,
) -> (Vec<(ViewConfig, Location)>, Generated) {
    let mut views = Vec::new();
    let mut out = Generated::default();
    for ((action, view_name), netblocks) in classes {
        let view = view_name.as_ref().and_then(|name| unbound_views.iter().find(|view| view.name == *name));
        let name = class_view_name(*action, view.map(|view| view.name.as_str()));
        let at = view.map_or_else(Location::default, |view| view.at.clone());
        views.push((
            ViewConfig {
                name: name.clone(),
                cidrs: netblocks.iter().map(ToString::to_string).collect(),
                listeners: Vec::new(),
                default_group: None,
            },
            at,
        ));
        if name != DEFAULT_VIEW {
            out.append(class_rules(*action, view, global, forwards, forward_locations, file));
        }
    }
    (views, out)
}
