//! The compiled rule set: views chosen by listener and client CIDR, a name
//! index per view probed from the longest suffix to the root, regexes in one
//! automaton per view, and the decision itself.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind};
use signpost_wire::{
    Class, MAX_NAME_LEN, Message, NameBuf, Question, RData, RDataBuf, Rcode, RecordBuf, RecordType, ToName,
};

use crate::decision::{Answer, Block, BlockAction, Client, Decision, Forward, LocalAnswer, Matched, Reason};
use crate::error::{Error, Location};
use crate::firewall::{FirewallAction, FirewallBlock, FirewallMatch, FirewallRuleSpec, ViewFirewall};
use crate::hosts::{AllocationRanges, Allocations, allocate};
use crate::names::{DepthSet, FastMap, LowerName, NameTable, key_of};
use crate::spec::{
    Action, AddressSource, Anchor, DEFAULT_GROUP, DEFAULT_VIEW, ExceptionSpec, HostTableSpec, Matcher, OtherTypes,
    Redirect, RuleSpec, ViewSpec, ZoneMode, ZoneSpec,
};
use crate::zone::{Lookup, Zone, ZoneChange, synthetic_soa};

/// Most CNAME (and DNAME) links followed for one answer.
pub const MAX_CHAIN: usize = 8;

/// Collects views, rules, exceptions, zones and host tables, and builds a
/// [`RuleSet`] from them. Keep it to make changed rule sets later (each
/// [`RuleSet`] also remembers the builder it came from).
#[derive(Clone, Debug, Default)]
pub struct RuleSetBuilder {
    default_group: Option<String>,
    known_groups: Option<BTreeSet<String>>,
    ranges: AllocationRanges,
    pinned: Allocations,
    views: Vec<(ViewSpec, Location)>,
    rules: Vec<(RuleSpec, Location)>,
    exceptions: Vec<(ExceptionSpec, Location)>,
    zones: Vec<(ZoneSpec, Location)>,
    host_tables: Vec<(HostTableSpec, Location)>,
    firewalls: Vec<(String, Vec<FirewallRuleSpec>)>,
    /// Views whose firewall fails open.
    firewalls_fail_open: Vec<String>,
}

impl RuleSetBuilder {
    /// An empty builder: no default group (unmatched names are REFUSED).
    pub fn new() -> Self {
        Self::default()
    }

    /// The group for names nothing matches.
    pub fn default_group(&mut self, group: impl Into<String>) -> &mut Self {
        self.default_group = Some(group.into());
        self
    }

    /// Check that every group named exists among these (unchecked if never called).
    pub fn known_groups<S: Into<String>>(&mut self, groups: impl IntoIterator<Item = S>) -> &mut Self {
        self.known_groups = Some(groups.into_iter().map(Into::into).collect());
        self
    }

    /// Where automatic host addresses come from.
    pub fn allocation_ranges(&mut self, ranges: AllocationRanges) -> &mut Self {
        self.ranges = ranges;
        self
    }

    /// Addresses allocated before (a loaded state file), kept where possible.
    pub fn allocation_state(&mut self, state: Allocations) -> &mut Self {
        self.pinned = state;
        self
    }

    /// Add a view.
    pub fn view(&mut self, view: ViewSpec) -> &mut Self {
        let at = Location::field(format!("view {}", view.name));
        self.view_at(view, at)
    }

    /// Add a rule.
    pub fn rule(&mut self, rule: RuleSpec) -> &mut Self {
        let at = Location::field(format!("rule {}", rule.id));
        self.rule_at(rule, at)
    }

    /// Add an exception.
    pub fn exception(&mut self, exception: ExceptionSpec) -> &mut Self {
        let at = Location::field(format!("exception {}", exception.id));
        self.exception_at(exception, at)
    }

    /// Add a zone.
    pub fn zone(&mut self, zone: ZoneSpec) -> &mut Self {
        let at = Location::field(format!("zone {}", zone.id));
        self.zone_at(zone, at)
    }

    /// Add a host table.
    pub fn host_table(&mut self, table: HostTableSpec) -> &mut Self {
        let at = Location::field(format!("host table {}", table.name));
        self.host_table_at(table, at)
    }

    pub(crate) fn view_at(&mut self, view: ViewSpec, at: Location) -> &mut Self {
        self.views.push((view, at));
        self
    }

    pub(crate) fn rule_at(&mut self, rule: RuleSpec, at: Location) -> &mut Self {
        self.rules.push((rule, at));
        self
    }

    pub(crate) fn exception_at(&mut self, exception: ExceptionSpec, at: Location) -> &mut Self {
        self.exceptions.push((exception, at));
        self
    }

    pub(crate) fn zone_at(&mut self, zone: ZoneSpec, at: Location) -> &mut Self {
        self.zones.push((zone, at));
        self
    }

    pub(crate) fn host_table_at(&mut self, table: HostTableSpec, at: Location) -> &mut Self {
        self.host_tables.push((table, at));
        self
    }

    /// The DNS Firewall of `view`: its rules in evaluation order (the first
    /// match decides). Evaluated before everything else in the view.
    pub fn firewall(&mut self, view: impl Into<String>, rules: Vec<FirewallRuleSpec>) -> &mut Self {
        self.firewalls.push((view.into(), rules));
        self
    }

    /// The firewall of `view` fails open (Route 53's FirewallFailOpen): a
    /// rule whose domain list is unavailable is skipped. Without this it
    /// fails closed: a query that reaches such a rule gets SERVFAIL.
    pub fn firewall_fails_open(&mut self, view: impl Into<String>) -> &mut Self {
        self.firewalls_fail_open.push(view.into());
        self
    }

    /// Remove the rule with this id; whether there was one.
    pub fn remove_rule(&mut self, id: &str) -> bool {
        let before = self.rules.len();
        self.rules.retain(|(rule, _)| rule.id != id);
        self.rules.len() != before
    }

    /// Remove the exception with this id; whether there was one.
    pub fn remove_exception(&mut self, id: &str) -> bool {
        let before = self.exceptions.len();
        self.exceptions.retain(|(exception, _)| exception.id != id);
        self.exceptions.len() != before
    }

    /// Remove the zone with this id (see [`zone_id_matches`]); whether
    /// there was one.
    pub fn remove_zone(&mut self, id: &str) -> bool {
        let Some(position) = zone_position(|| self.zones.iter().map(|(zone, _)| zone), id) else { return false };
        self.zones.remove(position);
        true
    }

    /// Remove the host table with this name; whether there was one.
    pub fn remove_host_table(&mut self, name: &str) -> bool {
        let before = self.host_tables.len();
        self.host_tables.retain(|(table, _)| table.name != name);
        self.host_tables.len() != before
    }

    /// Add, change or delete records of the zone with this id (see
    /// [`zone_id_matches`]), all or nothing. An unknown id's error lists
    /// the ids there are.
    pub fn change_zone(&mut self, id: &str, changes: impl IntoIterator<Item = ZoneChange>) -> Result<(), Error> {
        let Some(position) = zone_position(|| self.zones.iter().map(|(zone, _)| zone), id) else {
            return Err(Error::NoSuchZone {
                at: Location::default(),
                id: id.to_owned(),
                known: self.zones.iter().map(|(zone, _)| zone.id.clone()).collect(),
            });
        };
        let Some((spec, _)) = self.zones.get_mut(position) else {
            return Err(Error::NoSuchZone { at: Location::default(), id: id.to_owned(), known: Vec::new() });
        };
        spec.zone = Arc::new(spec.zone.apply(changes)?);
        Ok(())
    }

    /// The rules, in order.
    pub fn rules(&self) -> impl Iterator<Item = &RuleSpec> {
        self.rules.iter().map(|(rule, _)| rule)
    }

    /// The exceptions, in order.
    pub fn exceptions(&self) -> impl Iterator<Item = &ExceptionSpec> {
        self.exceptions.iter().map(|(exception, _)| exception)
    }

    /// The zones, in order.
    pub fn zones(&self) -> impl Iterator<Item = &ZoneSpec> {
        self.zones.iter().map(|(zone, _)| zone)
    }

    /// The host tables, in order.
    pub fn host_tables(&self) -> impl Iterator<Item = &HostTableSpec> {
        self.host_tables.iter().map(|(table, _)| table)
    }

    /// The rule with this id, to change it in place.
    pub fn rule_mut(&mut self, id: &str) -> Option<&mut RuleSpec> {
        self.rules.iter_mut().map(|(rule, _)| rule).find(|rule| rule.id == id)
    }

    /// The exception with this id, to change it in place.
    pub fn exception_mut(&mut self, id: &str) -> Option<&mut ExceptionSpec> {
        self.exceptions.iter_mut().map(|(exception, _)| exception).find(|exception| exception.id == id)
    }

    /// The host table with this name, to change its entries in place.
    pub fn host_table_mut(&mut self, name: &str) -> Option<&mut HostTableSpec> {
        self.host_tables.iter_mut().map(|(table, _)| table).find(|table| table.name == name)
    }

    /// The views, in order (the default view is implicit unless added).
    pub fn views(&self) -> impl Iterator<Item = &ViewSpec> {
        self.views.iter().map(|(view, _)| view)
    }

    /// Check everything and compile the rule set.
    pub fn build(&self) -> Result<RuleSet, Error> {
        Compiler::new(self)?.compile()
    }
}

/// An immutable, compiled rule set: `Send + Sync`, built once from
/// configuration and swapped in whole on reload.
#[derive(Debug)]
pub struct RuleSet {
    views: Vec<View>,
    /// Whether any view has DNS Firewall rules, worked out once when built:
    /// asked twice per query ([`RuleSet::has_firewall`]).
    any_firewall: bool,
    by_listener: FastMap<Box<str>, u32>,
    v4_prefixes: Vec<(u8, FastMap<u32, u32>)>,
    v6_prefixes: Vec<(u8, FastMap<u128, u32>)>,
    default_view: u32,
    rules: Vec<CompiledRule>,
    exceptions: Vec<CompiledException>,
    zones: Vec<CompiledZone>,
    hosts: Vec<CompiledHostTable>,
    default_group: Option<Box<str>>,
    allocations: Allocations,
    source: RuleSetBuilder,
}

#[derive(Debug)]
struct View {
    name: Box<str>,
    default_group: Option<Box<str>>,
    names: NameTable<PackedNode>,
    /// Host entries of `names`, as (table, entry).
    hosts: Vec<(u32, u32)>,
    depths: DepthSet,
    regex_rules: Option<RegexList>,
    regex_exceptions: Option<RegexList>,
    /// Whether any regex or filter needs the presentation form.
    needs_text: bool,
    /// Its DNS Firewall rules, evaluated first.
    firewall: ViewFirewall,
}

/// Everything that matches at one name of a view.
#[derive(Debug, Default, Clone, Copy)]
struct NameNode {
    exact: Option<Slot>,
    wildcard: Option<u32>,
    suffix: Option<u32>,
    exception_exact: Option<u32>,
    exception_wildcard: Option<u32>,
    exception_suffix: Option<u32>,
    zone: Option<u32>,
}

/// A [`NameNode`] in 28 bytes, as the view's table stores it.
#[derive(Debug, Clone, Copy)]
struct PackedNode([u32; 7]);

const ABSENT: u32 = u32::MAX;
const HOST_BIT: u32 = 1 << 31;

impl PackedNode {
    fn pack(node: &NameNode, hosts: &mut Vec<(u32, u32)>) -> Self {
        let exact = match node.exact {
            Some(Slot::Rule(rule)) => rule,
            Some(Slot::Host { table, entry }) => {
                hosts.push((table, entry));
                HOST_BIT | (hosts.len() as u32 - 1)
            }
            None => ABSENT,
        };
        let field = |value: Option<u32>| value.unwrap_or(ABSENT);
        Self([
            exact,
            field(node.wildcard),
            field(node.suffix),
            field(node.exception_exact),
            field(node.exception_wildcard),
            field(node.exception_suffix),
            field(node.zone),
        ])
    }

    #[inline]
    fn unpack(self, hosts: &[(u32, u32)]) -> NameNode {
        let [exact, wildcard, suffix, exception_exact, exception_wildcard, exception_suffix, zone] = self.0;
        let field = |value: u32| (value != ABSENT).then_some(value);
        let exact = match exact {
            ABSENT => None,
            host if host & HOST_BIT != 0 => {
                hosts.get((host & !HOST_BIT) as usize).map(|&(table, entry)| Slot::Host { table, entry })
            }
            rule => Some(Slot::Rule(rule)),
        };
        NameNode {
            exact,
            wildcard: field(wildcard),
            suffix: field(suffix),
            exception_exact: field(exception_exact),
            exception_wildcard: field(exception_wildcard),
            exception_suffix: field(exception_suffix),
            zone: field(zone),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Rule(u32),
    Host { table: u32, entry: u32 },
}

#[derive(Debug)]
struct RegexList {
    regex: Regex,
    targets: Vec<u32>,
}

impl RegexList {
    fn first_match(&self, text: &str) -> Option<u32> {
        let found = self.regex.search(&Input::new(text).anchored(Anchored::Yes))?;
        self.targets.get(found.pattern().as_usize()).copied()
    }
}

#[derive(Debug)]
struct CompiledRule {
    id: Box<str>,
    pattern: Box<str>,
    action: CompiledAction,
    filter: Option<Regex>,
    /// For redirect rules on a name: the SOA of NODATA answers.
    nodata: Option<[RecordBuf; 1]>,
}

#[derive(Debug)]
enum CompiledAction {
    Forward { group: Box<str>, forward_first: bool },
    Redirect(Redirect),
    Block(BlockAction),
    System,
}

#[derive(Debug)]
struct CompiledException {
    id: Box<str>,
    pattern: Box<str>,
    group: Option<Box<str>>,
}

#[derive(Debug)]
struct CompiledZone {
    zone: Arc<Zone>,
    mode: ZoneMode,
}

#[derive(Debug)]
struct CompiledHostTable {
    name: Box<str>,
    ttl: u32,
    entries: Vec<CompiledHost>,
}

#[derive(Debug)]
struct CompiledHost {
    name: NameBuf,
    v4: Box<[Ipv4Addr]>,
    v6: Box<[Ipv6Addr]>,
    /// The A records when there are several (one address answers without records).
    a: Box<[RecordBuf]>,
    aaaa: Box<[RecordBuf]>,
}

/// What applying a rule gave.
enum Step<'r> {
    Done(Decision<'r>),
    /// The rule declined (its filter did not match, or the class is not IN).
    Skip,
    /// A SYSTEM rule: only zones and host tables from here on.
    System,
}

/// The question as the decision needs it.
struct Asked<'q> {
    /// The wire name as asked (case kept), for synthesised owners.
    flat: &'q [u8],
    lower: LowerName,
    qtype: RecordType,
    qclass: Class,
    client: &'q Client,
    hops: usize,
    /// The question whose CNAME led here, if any.
    previous: Option<&'q Self>,
}

impl Asked<'_> {
    /// Whether `name` was asked on the way here (a CNAME loop).
    fn asked_before(&self, name: &NameBuf) -> bool {
        let target = LowerName::new(name);
        let mut current = Some(self);
        while let Some(asked) = current {
            if asked.lower.as_wire() == target.as_wire() {
                return true;
            }
            current = asked.previous;
        }
        false
    }

    fn local_class(&self) -> bool {
        self.qclass == Class::IN || self.qclass == Class::ANY
    }

    fn owner(&self) -> NameBuf {
        signpost_wire::Name::from_wire(self.flat).map(|name| name.to_name_buf()).unwrap_or_else(|_| NameBuf::root())
    }
}

impl Default for RuleSet {
    /// No rules: everything is forwarded to the group named `"default"`.
    fn default() -> Self {
        let mut builder = RuleSetBuilder::new();
        builder.default_group(DEFAULT_GROUP);
        builder.build().unwrap_or_else(|_| unreachable_empty())
    }
}

/// An empty rule set always builds; this only satisfies the type checker.
fn unreachable_empty() -> RuleSet {
    RuleSet {
        views: vec![View {
            name: DEFAULT_VIEW.into(),
            default_group: Some(DEFAULT_GROUP.into()),
            names: NameTable::default(),
            hosts: Vec::new(),
            depths: DepthSet::default(),
            regex_rules: None,
            regex_exceptions: None,
            needs_text: false,
            firewall: ViewFirewall::default(),
        }],
        any_firewall: false,
        by_listener: FastMap::default(),
        v4_prefixes: Vec::new(),
        v6_prefixes: Vec::new(),
        default_view: 0,
        rules: Vec::new(),
        exceptions: Vec::new(),
        zones: Vec::new(),
        hosts: Vec::new(),
        default_group: Some(DEFAULT_GROUP.into()),
        allocations: Allocations::default(),
        source: RuleSetBuilder::default(),
    }
}

impl RuleSet {
    /// A builder.
    pub fn builder() -> RuleSetBuilder {
        RuleSetBuilder::new()
    }

    /// Decide what to do with a question.
    pub fn decide(&self, question: &Question<'_>, client: &Client) -> Decision<'_> {
        self.decide_name(&question.name(), question.qtype(), question.qclass(), client)
    }

    /// Decide what to do with a name, type and class.
    pub fn decide_name(&self, name: &impl ToName, qtype: RecordType, qclass: Class, client: &Client) -> Decision<'_> {
        let mut scratch = None;
        let flat = name.flat_or_copy(&mut scratch);
        let asked = Asked { flat, lower: LowerName::from_flat(flat), qtype, qclass, client, hops: 0, previous: None };
        let view = self.view_for(client);
        if !view.firewall.is_empty()
            && let Some(hit) = view.firewall.evaluate(&asked.lower, qtype, true)
            && let Some(decision) = self.firewall_decision(view, hit, &asked)
        {
            return decision;
        }
        self.decide_in(view, &asked)
    }

    /// What a firewall match comes to: a block (SERVFAIL when the rule
    /// could not be evaluated), or `None` to let the query through.
    fn firewall_decision<'r>(
        &'r self,
        view: &'r View,
        hit: FirewallMatch<'r>,
        asked: &Asked<'_>,
    ) -> Option<Decision<'r>> {
        if hit.failed {
            let reason = Reason {
                view: &view.name,
                matched: Matched::Firewall { group: hit.group, rule: hit.rule, list: hit.list },
            };
            return Some(Decision::Block(Block { action: BlockAction::ServFail, reason }));
        }
        match hit.action {
            FirewallAction::Block(block) => Some(self.firewall_block(view, block, hit, asked)),
            FirewallAction::Allow | FirewallAction::Alert => None,
        }
    }

    /// The DNS Firewall rule a client's question meets in its view, if any
    /// (ALLOW and ALERT rules included): for per-rule counters.
    pub fn firewall_hit(&self, client: &Client, name: &impl ToName, qtype: RecordType) -> Option<FirewallMatch<'_>> {
        let view = self.view_for(client);
        if view.firewall.is_empty() {
            return None;
        }
        view.firewall.evaluate(&LowerName::new(name), qtype, true)
    }

    /// Whether any view has DNS Firewall rules: without any, the per-query
    /// firewall steps (the rule counter, the redirection chain of each
    /// answer) have nothing to do and are skipped.
    pub fn has_firewall(&self) -> bool {
        self.any_firewall
    }

    /// Whether the firewall of the view named `view` inspects the names of
    /// answers' redirection chains (any rule with INSPECT_REDIRECTION_DOMAIN).
    pub fn firewall_inspects_chains(&self, view: &str) -> bool {
        // Asked per forwarded query: without a firewall there is no view to look for.
        self.any_firewall
            && self.views.iter().any(|candidate| &*candidate.name == view && candidate.firewall.inspects_chains())
    }

    /// DNS Firewall on an answer's redirection chain, as Route 53 applies
    /// FirewallDomainRedirectionAction: every CNAME and DNAME target in
    /// `response`'s answer section is checked as if it had been asked (by
    /// the rules that inspect redirection), unless the name asked met an
    /// ALLOW rule that trusts redirection. The first target a BLOCK rule
    /// matches blocks the whole answer, with that rule's response to the
    /// name asked; `None` lets the answer through. `client` is who asked
    /// (an OVERRIDE is followed through its view's data).
    pub fn firewall_redirection(
        &self,
        client: &Client,
        response: &Message<'_>,
    ) -> Option<(Decision<'_>, FirewallMatch<'_>)> {
        let view = self.view_for(client);
        if !view.firewall.inspects_chains() {
            return None;
        }
        let question = response.questions().next()?.ok()?;
        let mut scratch = [0u8; MAX_NAME_LEN];
        let name = question.name();
        let flat = name.flat(&mut scratch);
        let qtype = question.qtype();
        let asked = Asked {
            flat,
            lower: LowerName::from_flat(flat),
            qtype,
            qclass: question.qclass(),
            client,
            hops: 0,
            previous: None,
        };
        if let Some(hit) = view.firewall.evaluate(&asked.lower, qtype, true)
            && *hit.action == FirewallAction::Allow
            && view.firewall.trusts(hit)
        {
            return None;
        }
        for record in response.answers().ok()?.flatten() {
            let Ok(RData::Cname(target) | RData::Dname(target)) = record.data() else { continue };
            let Some(hit) = view.firewall.evaluate(&LowerName::new(&target), qtype, false) else { continue };
            if let Some(decision) = self.firewall_decision(view, hit, &asked) {
                return Some((decision, hit));
            }
        }
        None
    }

    /// The DNS Firewall rule of `view` that matches a name and type, if
    /// any (ALLOW and ALERT rules included): for query logs, which name
    /// the rule a query met.
    pub fn firewall_match(&self, view: &str, name: &impl ToName, qtype: RecordType) -> Option<FirewallMatch<'_>> {
        let view = self.views.iter().find(|candidate| &*candidate.name == view)?;
        if view.firewall.is_empty() {
            return None;
        }
        view.firewall.evaluate(&LowerName::new(name), qtype, true)
    }

    fn firewall_block<'r>(
        &'r self,
        view: &'r View,
        block: &'r FirewallBlock,
        hit: FirewallMatch<'r>,
        asked: &Asked<'_>,
    ) -> Decision<'r> {
        let reason = Reason {
            view: &view.name,
            matched: Matched::Firewall { group: hit.group, rule: hit.rule, list: hit.list },
        };
        match block {
            FirewallBlock::NxDomain => Decision::Block(Block { action: BlockAction::NxDomain, reason }),
            FirewallBlock::NoData => {
                Decision::Block(Block { action: BlockAction::Sinkhole { v4: None, v6: None }, reason })
            }
            FirewallBlock::Override { domain, ttl } => {
                // The one path of decide() that allocates: the CNAME's owner is the name asked.
                let cname = RecordBuf {
                    name: asked.owner(),
                    class: Class::IN,
                    ttl: *ttl,
                    data: RDataBuf::Cname(domain.clone()),
                };
                self.chase(view, vec![cname.clone()], &cname, asked, reason)
            }
        }
    }

    /// The group for names nothing matches, if any (views may have their own).
    pub fn default_group(&self) -> Option<&str> {
        self.default_group.as_deref()
    }

    /// The name of the view a client is placed in.
    pub fn view_of(&self, client: &Client) -> &str {
        &self.view_for(client).name
    }

    /// The names of the views.
    pub fn view_names(&self) -> impl Iterator<Item = &str> {
        self.views.iter().map(|view| &*view.name)
    }

    /// The zone with this id (see [`zone_id_matches`]).
    pub fn zone(&self, id: &str) -> Option<&Zone> {
        let position = zone_position(|| self.source.zones(), id)?;
        self.source.zones().nth(position).map(|spec| &*spec.zone)
    }

    /// The automatic host addresses in use (save them to keep them across restarts).
    pub fn allocations(&self) -> &Allocations {
        &self.allocations
    }

    /// A builder holding everything this rule set was built from (with the
    /// current automatic addresses pinned), to make a changed rule set.
    pub fn to_builder(&self) -> RuleSetBuilder {
        let mut builder = self.source.clone();
        builder.pinned = self.allocations.clone();
        builder
    }

    /// What the rule set holds, view by view, one line per matcher: for
    /// `check-config` style output.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for view in &self.views {
            out.push_str(&format!("view {}", view.name));
            if let Some(group) = &view.default_group {
                out.push_str(&format!(" (default group {group})"));
            }
            out.push('\n');
            let mut names: Vec<(NameBuf, NameNode)> = view
                .names
                .iter()
                .filter_map(|(key, node)| {
                    Some((signpost_wire::Name::from_wire(key).ok()?.to_name_buf(), node.unpack(&view.hosts)))
                })
                .collect();
            names.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, node) in names {
                self.describe_node(&mut out, &name, &node);
            }
            for &exception in view.regex_exceptions.iter().flat_map(|list| &list.targets) {
                self.describe_exception(&mut out, exception);
            }
            for &rule in view.regex_rules.iter().flat_map(|list| &list.targets) {
                self.describe_rule(&mut out, rule);
            }
        }
        out
    }

    fn describe_node(&self, out: &mut String, name: &NameBuf, node: &NameNode) {
        for exception in [node.exception_exact, node.exception_wildcard, node.exception_suffix].into_iter().flatten() {
            self.describe_exception(out, exception);
        }
        match node.exact {
            Some(Slot::Rule(rule)) => self.describe_rule(out, rule),
            Some(Slot::Host { table, .. }) => {
                let table = self.hosts.get(table as usize).map_or("?", |t| &t.name);
                out.push_str(&format!("  ={} -> host table {table}\n", name.to_relative_string()));
            }
            None => {}
        }
        for rule in [node.wildcard, node.suffix].into_iter().flatten() {
            self.describe_rule(out, rule);
        }
        if let Some(zone) = node.zone.and_then(|zone| self.zones.get(zone as usize)) {
            let mode = match zone.mode {
                ZoneMode::Authoritative => "authoritative",
                ZoneMode::Transparent => "transparent",
                ZoneMode::Redirect => "redirect",
                ZoneMode::Overlay => "overlay",
            };
            out.push_str(&format!("  {} -> zone ({mode}, {} records)\n", zone.zone.apex(), zone.zone.len()));
        }
    }

    fn describe_rule(&self, out: &mut String, rule: u32) {
        let Some(rule) = self.rules.get(rule as usize) else { return };
        let action = match &rule.action {
            CompiledAction::Forward { group, forward_first: true } => format!("forward {group} (forward-first)"),
            CompiledAction::Forward { group, .. } => format!("forward {group}"),
            CompiledAction::Redirect(redirect) => {
                format!("redirect {:?} {:?} ttl {}", redirect.v4, redirect.v6, redirect.ttl)
            }
            CompiledAction::Block(action) => format!("block {action:?}"),
            CompiledAction::System => "system".to_owned(),
        };
        let filter = if rule.filter.is_some() { " (only names matching its filter)" } else { "" };
        out.push_str(&format!("  {} -> {action}{filter} [rule {}]\n", rule.pattern, rule.id));
    }

    fn describe_exception(&self, out: &mut String, exception: u32) {
        let Some(exception) = self.exceptions.get(exception as usize) else { return };
        let group = exception.group.as_deref().unwrap_or("the default group");
        out.push_str(&format!("  {} -> exception: forward {group} [exception {}]\n", exception.pattern, exception.id));
    }

    fn view_for(&self, client: &Client) -> &View {
        if let Some(listener) = &client.listener
            && let Some(&index) = self.by_listener.get(&**listener)
            && let Some(view) = self.views.get(index as usize)
        {
            return view;
        }
        let index = match unmapped(client.source) {
            IpAddr::V4(address) => {
                let bits = u32::from(address);
                self.v4_prefixes.iter().find_map(|(prefix, map)| map.get(&mask_v4(bits, *prefix)).copied())
            }
            IpAddr::V6(address) => {
                let bits = u128::from(address);
                self.v6_prefixes.iter().find_map(|(prefix, map)| map.get(&mask_v6(bits, *prefix)).copied())
            }
        };
        let index = index.unwrap_or(self.default_view);
        self.views.get(index as usize).or_else(|| self.views.first()).unwrap_or_else(|| unreachable_view())
    }

    fn decide_in<'r>(&'r self, view: &'r View, asked: &Asked<'_>) -> Decision<'r> {
        // Only views with regexes or filters pay for the presentation form.
        let mut text_buffer;
        let text = if view.needs_text {
            text_buffer = [0u8; 4 * MAX_NAME_LEN];
            asked.lower.presentation(&mut text_buffer)
        } else {
            ""
        };
        if let Some(list) = &view.regex_exceptions
            && let Some(exception) = list.first_match(text)
        {
            return self.exception_decision(view, exception);
        }
        let labels = asked.lower.label_count();
        let mut system: Option<u32> = None;
        for depth in (0..=labels).rev() {
            if !view.depths.contains(depth) {
                continue;
            }
            let Some(packed) = view.names.get(asked.lower.suffix(depth)) else { continue };
            let node = packed.unpack(&view.hosts);
            let full = depth == labels;
            if system.is_none() {
                let (exception, rule) = if full {
                    (node.exception_exact, node.exact)
                } else {
                    (node.exception_wildcard, node.wildcard.map(Slot::Rule))
                };
                let candidates = [(exception, rule), (node.exception_suffix, node.suffix.map(Slot::Rule))];
                for (exception, rule) in candidates {
                    if let Some(exception) = exception {
                        return self.exception_decision(view, exception);
                    }
                    match rule {
                        Some(Slot::Rule(rule)) => match self.apply_rule(view, rule, asked, text) {
                            Step::Done(decision) => return decision,
                            Step::System => system = Some(rule),
                            Step::Skip => {}
                        },
                        Some(Slot::Host { table, entry }) if asked.local_class() => {
                            return self.host_decision(view, table, entry, asked);
                        }
                        Some(Slot::Host { .. }) | None => {}
                    }
                    if system.is_some() {
                        break;
                    }
                }
            } else if full
                && let Some(Slot::Host { table, entry }) = node.exact
                && asked.local_class()
            {
                return self.host_decision(view, table, entry, asked);
            }
            if let Some(zone) = node.zone
                && asked.local_class()
                && let Some(decision) = self.zone_decision(view, zone, asked)
            {
                return decision;
            }
        }
        if system.is_none()
            && let Some(list) = &view.regex_rules
            && let Some(rule) = list.first_match(text)
        {
            match self.apply_rule(view, rule, asked, text) {
                Step::Done(decision) => return decision,
                Step::System => system = Some(rule),
                Step::Skip => {}
            }
        }
        let matched = match system.and_then(|rule| self.rules.get(rule as usize)) {
            Some(rule) => Matched::Rule { id: &rule.id, pattern: &rule.pattern },
            None => Matched::Default,
        };
        let reason = Reason { view: &view.name, matched };
        match view.default_group.as_deref() {
            Some(group) => Decision::Forward(Forward { group, forward_first: false, reason }),
            None => Decision::Block(Block { action: BlockAction::Refused, reason }),
        }
    }

    fn exception_decision<'r>(&'r self, view: &'r View, exception: u32) -> Decision<'r> {
        let Some(exception) = self.exceptions.get(exception as usize) else {
            return Decision::Block(Block { action: BlockAction::Refused, reason: default_reason(view) });
        };
        let reason =
            Reason { view: &view.name, matched: Matched::Exception { id: &exception.id, pattern: &exception.pattern } };
        match exception.group.as_deref().or(view.default_group.as_deref()) {
            Some(group) => Decision::Forward(Forward { group, forward_first: false, reason }),
            None => Decision::Block(Block { action: BlockAction::Refused, reason }),
        }
    }

    fn apply_rule<'r>(&'r self, view: &'r View, rule_index: u32, asked: &Asked<'_>, text: &str) -> Step<'r> {
        let Some(rule) = self.rules.get(rule_index as usize) else { return Step::Skip };
        if let Some(filter) = &rule.filter
            && !filter.is_match(Input::new(text).anchored(Anchored::Yes))
        {
            return Step::Skip;
        }
        let reason = Reason { view: &view.name, matched: Matched::Rule { id: &rule.id, pattern: &rule.pattern } };
        match &rule.action {
            CompiledAction::Forward { group, forward_first } => {
                Step::Done(Decision::Forward(Forward { group, forward_first: *forward_first, reason }))
            }
            CompiledAction::Block(action) => Step::Done(Decision::Block(Block { action: *action, reason })),
            CompiledAction::System => Step::System,
            CompiledAction::Redirect(_) if !asked.local_class() => Step::Skip,
            CompiledAction::Redirect(redirect) => {
                let declines = match asked.qtype {
                    RecordType::A => redirect.v4 == AddressSource::Decline,
                    RecordType::AAAA => redirect.v6 == AddressSource::Decline,
                    RecordType::ANY => redirect.v4 == AddressSource::Decline && redirect.v6 == AddressSource::Decline,
                    _ => redirect.other_types == OtherTypes::Decline,
                };
                if declines {
                    return Step::Skip;
                }
                let address = match asked.qtype {
                    RecordType::A => redirect_v4(redirect, asked.client).map(IpAddr::V4),
                    RecordType::AAAA => redirect_v6(redirect, asked.client).map(IpAddr::V6),
                    RecordType::ANY => redirect_v4(redirect, asked.client)
                        .map(IpAddr::V4)
                        .or_else(|| redirect_v6(redirect, asked.client).map(IpAddr::V6)),
                    _ => None,
                };
                let (answer, authority) = match (address, &rule.nodata) {
                    (Some(address), _) => {
                        (Answer::AddressOfQuestion { address, ttl: redirect.ttl }, Cow::Borrowed(&[][..]))
                    }
                    (None, Some(soa)) => (empty_answer(), Cow::Borrowed(&soa[..])),
                    (None, None) => {
                        (empty_answer(), Cow::Owned(vec![synthetic_soa(&asked.owner(), redirect.ttl, redirect.ttl)]))
                    }
                };
                Step::Done(Decision::Local(LocalAnswer {
                    rcode: Rcode::NOERROR,
                    authoritative: true,
                    answer,
                    authority,
                    additional: Cow::Borrowed(&[]),
                    reason,
                }))
            }
        }
    }

    fn host_decision<'r>(&'r self, view: &'r View, table: u32, entry: u32, asked: &Asked<'_>) -> Decision<'r> {
        let Some(table) = self.hosts.get(table as usize) else { return self.decide_default(view) };
        let Some(host) = table.entries.get(entry as usize) else { return self.decide_default(view) };
        let reason = Reason { view: &view.name, matched: Matched::HostTable { table: &table.name, name: &host.name } };
        let ttl = table.ttl;
        let single_v4 = || match *host.v4 {
            [address] => Some(Answer::AddressOfQuestion { address: IpAddr::V4(address), ttl }),
            _ => None,
        };
        let single_v6 = || match *host.v6 {
            [address] => Some(Answer::AddressOfQuestion { address: IpAddr::V6(address), ttl }),
            _ => None,
        };
        let answer = match asked.qtype {
            RecordType::A if !host.v4.is_empty() => single_v4().unwrap_or(Answer::Records(Cow::Borrowed(&host.a))),
            RecordType::AAAA if !host.v6.is_empty() => {
                single_v6().unwrap_or(Answer::Records(Cow::Borrowed(&host.aaaa)))
            }
            RecordType::ANY if !host.v4.is_empty() || !host.v6.is_empty() => {
                let owner = asked.owner();
                let records = host
                    .v4
                    .iter()
                    .map(|address| RecordBuf::new(owner.clone(), ttl, RDataBuf::A(*address)))
                    .chain(host.v6.iter().map(|address| RecordBuf::new(owner.clone(), ttl, RDataBuf::Aaaa(*address))))
                    .collect();
                Answer::Records(Cow::Owned(records))
            }
            _ => {
                return Decision::Local(LocalAnswer {
                    rcode: Rcode::NOERROR,
                    authoritative: true,
                    answer: empty_answer(),
                    authority: Cow::Owned(vec![synthetic_soa(&host.name, ttl, ttl)]),
                    additional: Cow::Borrowed(&[]),
                    reason,
                });
            }
        };
        Decision::Local(LocalAnswer {
            rcode: Rcode::NOERROR,
            authoritative: true,
            answer,
            authority: Cow::Borrowed(&[]),
            additional: Cow::Borrowed(&[]),
            reason,
        })
    }

    fn decide_default<'r>(&'r self, view: &'r View) -> Decision<'r> {
        let reason = default_reason(view);
        match view.default_group.as_deref() {
            Some(group) => Decision::Forward(Forward { group, forward_first: false, reason }),
            None => Decision::Block(Block { action: BlockAction::Refused, reason }),
        }
    }

    /// The zone's answer, or `None` when a transparent zone does not hold the name.
    fn zone_decision<'r>(&'r self, view: &'r View, zone_index: u32, asked: &Asked<'_>) -> Option<Decision<'r>> {
        let entry = self.zones.get(zone_index as usize)?;
        let zone = &*entry.zone;
        let reason = Reason { view: &view.name, matched: Matched::Zone { zone: zone.apex() } };
        let local = |rcode, answer, authority| {
            Decision::Local(LocalAnswer {
                rcode,
                authoritative: true,
                answer,
                authority,
                additional: Cow::Borrowed(&[]),
                reason: reason.clone(),
            })
        };
        let negative = || Cow::Borrowed(zone.negative_soa());
        let synthesise = |records: &[RecordBuf]| {
            let owner = asked.owner();
            records.iter().map(|record| RecordBuf { name: owner.clone(), ..record.clone() }).collect::<Vec<_>>()
        };
        if entry.mode == ZoneMode::Redirect {
            let apex = LowerName::new(zone.apex());
            return Some(match zone.lookup(&apex, asked.qtype) {
                Lookup::Records(records) if asked.lower.as_wire() == apex.as_wire() => {
                    local(Rcode::NOERROR, Answer::Records(Cow::Borrowed(records)), Cow::Borrowed(&[]))
                }
                Lookup::Records(records) => {
                    local(Rcode::NOERROR, Answer::Records(Cow::Owned(synthesise(records))), Cow::Borrowed(&[]))
                }
                _ => local(Rcode::NOERROR, empty_answer(), negative()),
            });
        }
        Some(match zone.lookup(&asked.lower, asked.qtype) {
            Lookup::Records(records) => {
                local(Rcode::NOERROR, Answer::Records(Cow::Borrowed(records)), Cow::Borrowed(&[]))
            }
            Lookup::Wildcard(records) => {
                local(Rcode::NOERROR, Answer::Records(Cow::Owned(synthesise(records))), Cow::Borrowed(&[]))
            }
            Lookup::NoData if entry.mode == ZoneMode::Overlay => return None,
            Lookup::NoData => local(Rcode::NOERROR, empty_answer(), negative()),
            Lookup::NxDomain if matches!(entry.mode, ZoneMode::Transparent | ZoneMode::Overlay) => return None,
            Lookup::NxDomain => local(Rcode::NXDOMAIN, empty_answer(), negative()),
            Lookup::Referral { ns, glue } => Decision::Local(LocalAnswer {
                rcode: Rcode::NOERROR,
                authoritative: false,
                answer: empty_answer(),
                authority: Cow::Borrowed(ns),
                additional: Cow::Borrowed(glue),
                reason,
            }),
            Lookup::Cname(cname) => self.chase(view, vec![cname.clone()], cname, asked, reason),
            Lookup::WildcardCname(cname) => {
                let synthesised = RecordBuf { name: asked.owner(), ..cname.clone() };
                self.chase(view, vec![synthesised.clone()], &synthesised, asked, reason)
            }
            Lookup::Dname(dname) => {
                let RDataBuf::Dname(target) = &dname.data else { return None };
                let keep = asked.flat.len().saturating_sub(dname.name.wire_len());
                let mut wire = asked.flat.get(..keep).unwrap_or(&[]).to_vec();
                wire.extend_from_slice(target.as_wire());
                let Ok(new_name) = signpost_wire::Name::from_wire(&wire).map(|name| name.to_name_buf()) else {
                    // The substituted name is too long (RFC 6672 §2.2).
                    return Some(local(
                        Rcode::YXDOMAIN,
                        Answer::Records(Cow::Owned(vec![dname.clone()])),
                        Cow::Borrowed(&[]),
                    ));
                };
                let cname = RecordBuf {
                    name: asked.owner(),
                    class: dname.class,
                    ttl: dname.ttl,
                    data: RDataBuf::Cname(new_name),
                };
                self.chase(view, vec![dname.clone(), cname.clone()], &cname, asked, reason)
            }
        })
    }

    /// Follow a CNAME (the last record of `chain`) through the view's own data.
    fn chase<'r>(
        &'r self,
        view: &'r View,
        mut chain: Vec<RecordBuf>,
        cname: &RecordBuf,
        asked: &Asked<'_>,
        reason: Reason<'r>,
    ) -> Decision<'r> {
        let mut rcode = Rcode::NOERROR;
        let mut authority = Vec::new();
        let mut additional = Vec::new();
        if let RDataBuf::Cname(target) = &cname.data
            && asked.qtype != RecordType::CNAME
            && asked.hops < MAX_CHAIN
            && !chain.iter().any(|record| record.name == *target)
            && !asked.asked_before(target)
        {
            let next = Asked {
                flat: target.as_wire(),
                lower: LowerName::new(target),
                qtype: asked.qtype,
                qclass: asked.qclass,
                client: asked.client,
                hops: asked.hops + 1,
                previous: Some(asked),
            };
            if let Decision::Local(answer) = self.decide_in(view, &next) {
                match answer.answer {
                    Answer::Records(records) => chain.extend(records.iter().cloned()),
                    Answer::AddressOfQuestion { address, ttl } => {
                        let data = match address {
                            IpAddr::V4(v4) => RDataBuf::A(v4),
                            IpAddr::V6(v6) => RDataBuf::Aaaa(v6),
                        };
                        chain.push(RecordBuf::new(target.clone(), ttl, data));
                    }
                }
                rcode = answer.rcode;
                authority = answer.authority.into_owned();
                additional = answer.additional.into_owned();
            }
        }
        Decision::Local(LocalAnswer {
            rcode,
            authoritative: true,
            answer: Answer::Records(Cow::Owned(chain)),
            authority: Cow::Owned(authority),
            additional: Cow::Owned(additional),
            reason,
        })
    }
}

fn empty_answer<'r>() -> Answer<'r> {
    Answer::Records(Cow::Borrowed(&[]))
}

fn default_reason(view: &View) -> Reason<'_> {
    Reason { view: &view.name, matched: Matched::Default }
}

fn unreachable_view() -> &'static View {
    static EMPTY: std::sync::OnceLock<View> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| View {
        name: DEFAULT_VIEW.into(),
        default_group: None,
        names: NameTable::default(),
        hosts: Vec::new(),
        depths: DepthSet::default(),
        regex_rules: None,
        regex_exceptions: None,
        needs_text: false,
        firewall: ViewFirewall::default(),
    })
}

fn unmapped(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

fn mask_v4(bits: u32, prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { bits & (u32::MAX << (32 - u32::from(prefix.min(32)))) }
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    if prefix == 0 { 0 } else { bits & (u128::MAX << (128 - u32::from(prefix.min(128)))) }
}

fn redirect_v4(redirect: &Redirect, client: &Client) -> Option<Ipv4Addr> {
    match redirect.v4 {
        AddressSource::Fixed(address) => Some(address),
        AddressSource::None | AddressSource::Decline => None,
        AddressSource::ArrivalAddress => match client.local.map(unmapped).filter(|local| !local.is_unspecified()) {
            Some(IpAddr::V4(local)) => Some(local),
            Some(IpAddr::V6(local)) => local.is_loopback().then_some(Ipv4Addr::LOCALHOST),
            None => unmapped(client.source).is_loopback().then_some(Ipv4Addr::LOCALHOST),
        },
    }
}

fn redirect_v6(redirect: &Redirect, client: &Client) -> Option<Ipv6Addr> {
    match redirect.v6 {
        AddressSource::Fixed(address) => Some(address),
        AddressSource::None | AddressSource::Decline => None,
        AddressSource::ArrivalAddress => match client.local.map(unmapped).filter(|local| !local.is_unspecified()) {
            Some(IpAddr::V6(local)) => Some(local),
            Some(IpAddr::V4(local)) => local.is_loopback().then_some(Ipv6Addr::LOCALHOST),
            None => unmapped(client.source).is_loopback().then_some(Ipv6Addr::LOCALHOST),
        },
    }
}

/// Compile a regex for names: case-insensitive, ASCII classes, anchored as asked.
pub(crate) fn compile_regexes(patterns: &[(&str, Anchor)]) -> Result<Regex, (usize, String)> {
    let wrapped: Vec<String> = patterns
        .iter()
        .map(|(pattern, anchor)| match anchor {
            Anchor::Full => format!("(?:{pattern})$"),
            Anchor::Start => format!("(?:{pattern})"),
        })
        .collect();
    let build = |patterns: &[String]| {
        Regex::builder()
            .syntax(syntax::Config::new().case_insensitive(true).unicode(false).utf8(false))
            .configure(Regex::config().match_kind(MatchKind::LeftmostFirst).utf8_empty(false))
            .build_many(patterns)
    };
    build(&wrapped).map_err(|error| {
        // Find the pattern at fault by compiling each alone.
        let index = wrapped.iter().position(|pattern| build(core::slice::from_ref(pattern)).is_err()).unwrap_or(0);
        (index, error.to_string())
    })
}

/// Turns a builder into a rule set, checking as it goes.
struct Compiler<'b> {
    builder: &'b RuleSetBuilder,
    /// View names to index, and where each was declared.
    view_index: BTreeMap<String, (u32, Location)>,
}

impl<'b> Compiler<'b> {
    fn new(builder: &'b RuleSetBuilder) -> Result<Self, Error> {
        let mut view_index = BTreeMap::new();
        view_index.insert(DEFAULT_VIEW.to_owned(), (0, Location::default()));
        let mut next = 1;
        for (view, at) in &builder.views {
            if view.name == DEFAULT_VIEW {
                if let Some(entry) = view_index.get_mut(DEFAULT_VIEW) {
                    if entry.1 != Location::default() {
                        return Err(duplicate(at, &entry.1, "view", &view.name));
                    }
                    entry.1 = at.clone();
                }
                continue;
            }
            if let Some((_, first)) = view_index.get(&view.name) {
                return Err(duplicate(at, first, "view", &view.name));
            }
            view_index.insert(view.name.clone(), (next, at.clone()));
            next += 1;
        }
        Ok(Self { builder, view_index })
    }

    fn view_spec(&self, name: &str) -> Option<&ViewSpec> {
        self.builder.views.iter().map(|(view, _)| view).find(|view| view.name == name)
    }

    /// Indexes of the views named (empty: the default view; `*`: all).
    fn resolve_views(&self, names: &[String], at: &Location) -> Result<Vec<u32>, Error> {
        if names.is_empty() {
            return Ok(vec![0]);
        }
        if names.iter().any(|name| name == "*") {
            return Ok(self.view_index.values().map(|(index, _)| *index).collect());
        }
        let mut indexes = Vec::new();
        for name in names {
            let (index, _) =
                self.view_index.get(name).ok_or_else(|| Error::UnknownView { at: at.clone(), view: name.clone() })?;
            if !indexes.contains(index) {
                indexes.push(*index);
            }
        }
        Ok(indexes)
    }

    fn check_group(&self, group: &str, at: &Location) -> Result<(), Error> {
        match &self.builder.known_groups {
            Some(known) if !known.contains(group) => {
                Err(Error::UnknownGroup { at: at.clone(), group: group.to_owned() })
            }
            _ => Ok(()),
        }
    }

    fn compile(self) -> Result<RuleSet, Error> {
        let builder = self.builder;
        let view_count = self.view_index.len();
        let mut view_names: Vec<String> = vec![String::new(); view_count];
        for (name, (index, _)) in &self.view_index {
            if let Some(slot) = view_names.get_mut(*index as usize) {
                slot.clone_from(name);
            }
        }
        if let Some(group) = &builder.default_group {
            self.check_group(group, &Location::field("default_group"))?;
        }
        let mut tables: Vec<TableBuilder> = Vec::with_capacity(view_count);
        for name in &view_names {
            let spec = self.view_spec(name);
            let default_group =
                spec.and_then(|view| view.default_group.clone()).or_else(|| builder.default_group.clone());
            if let (Some(group), Some(spec)) = (spec.and_then(|view| view.default_group.as_ref()), spec) {
                let at = self.view_index.get(&spec.name).map(|(_, at)| at.clone()).unwrap_or_default();
                self.check_group(group, &at)?;
            }
            tables.push(TableBuilder { default_group, ..TableBuilder::default() });
        }

        // Rules.
        let mut rules = Vec::with_capacity(builder.rules.len());
        let mut rule_ids: HashMap<&str, &Location> = HashMap::new();
        for (index, (rule, at)) in builder.rules.iter().enumerate() {
            if let Some(first) = rule_ids.insert(&rule.id, at) {
                return Err(duplicate(at, first, "rule id", &rule.id));
            }
            let views = self.resolve_views(&rule.views, at)?;
            let action = match &rule.action {
                Action::Forward { group, forward_first } => {
                    self.check_group(group, at)?;
                    CompiledAction::Forward { group: group.as_str().into(), forward_first: *forward_first }
                }
                Action::Redirect(redirect) => CompiledAction::Redirect(*redirect),
                Action::Block(action) => CompiledAction::Block(*action),
                Action::System => CompiledAction::System,
            };
            let filter = match &rule.only_names_matching {
                None => None,
                Some(_) if matches!(rule.matcher, Matcher::Regex { .. }) => {
                    return Err(Error::InvalidEntry {
                        at: at.clone(),
                        problem: "only_names_matching is for name rules: put the condition in the regex",
                    });
                }
                Some(pattern) => Some(compile_regexes(&[(pattern, Anchor::Start)]).map_err(|(_, message)| {
                    Error::InvalidRegex { at: at.clone(), pattern: pattern.clone(), message }
                })?),
            };
            let nodata = match (&rule.action, &rule.matcher) {
                (
                    Action::Redirect(redirect),
                    Matcher::Exact(name) | Matcher::Suffix(name) | Matcher::Wildcard(name),
                ) => Some([synthetic_soa(name, redirect.ttl, redirect.ttl)]),
                _ => None,
            };
            rules.push(CompiledRule {
                id: rule.id.as_str().into(),
                pattern: rule.matcher.to_string().into(),
                action,
                filter,
                nodata,
            });
            for &view in &views {
                if let Some(table) = tables.get_mut(view as usize) {
                    table.add_matcher(&rule.matcher, Entry::Rule(index as u32), at, &view_names, view)?;
                }
            }
        }

        // Exceptions.
        let mut exceptions = Vec::with_capacity(builder.exceptions.len());
        let mut exception_ids: HashMap<&str, &Location> = HashMap::new();
        for (index, (exception, at)) in builder.exceptions.iter().enumerate() {
            if let Some(first) = exception_ids.insert(&exception.id, at) {
                return Err(duplicate(at, first, "exception id", &exception.id));
            }
            let views = self.resolve_views(&exception.views, at)?;
            if let Some(group) = &exception.group {
                self.check_group(group, at)?;
            } else if views.iter().any(|&view| tables.get(view as usize).is_some_and(|t| t.default_group.is_none())) {
                return Err(Error::InvalidEntry {
                    at: at.clone(),
                    problem: "an exception needs a group when its view has no default group",
                });
            }
            exceptions.push(CompiledException {
                id: exception.id.as_str().into(),
                pattern: exception.matcher.to_string().into(),
                group: exception.group.as_deref().map(Into::into),
            });
            for &view in &views {
                if let Some(table) = tables.get_mut(view as usize) {
                    table.add_matcher(&exception.matcher, Entry::Exception(index as u32), at, &view_names, view)?;
                }
            }
        }

        // Zones.
        let mut zones = Vec::with_capacity(builder.zones.len());
        let mut zone_ids: HashMap<&str, &Location> = HashMap::new();
        for (index, (spec, at)) in builder.zones.iter().enumerate() {
            if let Some(first) = zone_ids.insert(&spec.id, at) {
                return Err(duplicate(at, first, "zone id", &spec.id));
            }
            let views = self.resolve_views(&spec.views, at)?;
            zones.push(CompiledZone { zone: spec.zone.clone(), mode: spec.mode });
            for &view in &views {
                if let Some(table) = tables.get_mut(view as usize) {
                    table.add_zone(spec.zone.apex(), index as u32, at, &view_names, view)?;
                }
            }
        }

        // Host tables, with automatic addresses.
        let mut wanted = Vec::new();
        let mut reserved = Vec::new();
        let mut table_names: HashMap<&str, &Location> = HashMap::new();
        for (spec, at) in &builder.host_tables {
            if let Some(first) = table_names.insert(&spec.name, at) {
                return Err(duplicate(at, first, "host table", &spec.name));
            }
            for entry in &spec.entries {
                if entry.addresses.is_empty() {
                    wanted.push((entry.name.to_lowercase(), at.clone().with_field(format!("host {}", entry.name))));
                }
                reserved.extend(entry.addresses.iter().copied());
            }
        }
        let allocations = allocate(&wanted, &reserved, &builder.pinned, builder.ranges)?;
        let mut hosts = Vec::with_capacity(builder.host_tables.len());
        for (table_index, (spec, at)) in builder.host_tables.iter().enumerate() {
            let views = self.resolve_views(&spec.views, at)?;
            let mut entries = Vec::with_capacity(spec.entries.len());
            let mut seen: HashMap<Box<[u8]>, usize> = HashMap::new();
            for entry in &spec.entries {
                let (v4, v6) = if entry.addresses.is_empty() {
                    let allocated = allocations.get(&entry.name).unwrap_or_default();
                    (allocated.v4.into_iter().collect(), allocated.v6.into_iter().collect())
                } else {
                    split_families(&entry.addresses)
                };
                // A name listed twice in one table gets every address given for it.
                if let Some(&position) = seen.get(&key_of(&entry.name)) {
                    if let Some(existing) = entries.get_mut(position) {
                        merge_host(existing, v4, v6, spec.ttl);
                    }
                    continue;
                }
                seen.insert(key_of(&entry.name), entries.len());
                entries.push(compile_host(entry.name.clone(), v4, v6, spec.ttl));
            }
            for (entry_index, host) in entries.iter().enumerate() {
                let slot = Slot::Host { table: table_index as u32, entry: entry_index as u32 };
                for &view in &views {
                    if let Some(table) = tables.get_mut(view as usize) {
                        let here = at.clone().with_field(format!("host {}", host.name));
                        table.add_host(&host.name, slot, &here, &view_names, view)?;
                    }
                }
            }
            hosts.push(CompiledHostTable { name: spec.name.as_str().into(), ttl: spec.ttl, entries });
        }

        // Views: their tables, regexes and client selection.
        let mut views = Vec::with_capacity(view_count);
        for (index, table) in tables.into_iter().enumerate() {
            let name = view_names.get(index).cloned().unwrap_or_default();
            views.push(table.finish(name, builder, &rules)?);
        }
        for (name, firewall) in &builder.firewalls {
            let Some((index, _)) = self.view_index.get(name) else {
                return Err(Error::UnknownView { at: Location::field("firewall"), view: name.clone() });
            };
            if let Some(view) = views.get_mut(*index as usize) {
                if !view.firewall.is_empty() {
                    return Err(Error::Duplicate {
                        at: Location::field("firewall"),
                        first: Location::field("firewall"),
                        what: "firewall of view",
                        name: name.clone(),
                    });
                }
                let fail_open = builder.firewalls_fail_open.iter().any(|open| open == name);
                view.firewall = ViewFirewall::new(firewall.clone(), fail_open);
            }
        }
        let (by_listener, v4_prefixes, v6_prefixes) = self.client_selection()?;
        let any_firewall = views.iter().any(|view| !view.firewall.is_empty());
        Ok(RuleSet {
            views,
            any_firewall,
            by_listener,
            v4_prefixes,
            v6_prefixes,
            default_view: 0,
            rules,
            exceptions,
            zones,
            hosts,
            default_group: builder.default_group.as_deref().map(Into::into),
            allocations,
            source: builder.clone(),
        })
    }

    #[allow(clippy::type_complexity)]
    fn client_selection(
        &self,
    ) -> Result<(FastMap<Box<str>, u32>, Vec<(u8, FastMap<u32, u32>)>, Vec<(u8, FastMap<u128, u32>)>), Error> {
        let mut by_listener: FastMap<Box<str>, u32> = FastMap::default();
        let mut listener_at: HashMap<&str, &Location> = HashMap::new();
        let mut v4: BTreeMap<u8, FastMap<u32, u32>> = BTreeMap::new();
        let mut v6: BTreeMap<u8, FastMap<u128, u32>> = BTreeMap::new();
        let mut cidr_at: HashMap<ipnet::IpNet, &Location> = HashMap::new();
        for (view, at) in &self.builder.views {
            let Some((index, _)) = self.view_index.get(&view.name) else { continue };
            for listener in &view.listeners {
                if let Some(first) = listener_at.insert(listener, at) {
                    return Err(duplicate(at, first, "listener", listener));
                }
                by_listener.insert(listener.as_str().into(), *index);
            }
            for cidr in &view.cidrs {
                let cidr = cidr.trunc();
                if let Some(first) = cidr_at.insert(cidr, at) {
                    return Err(duplicate(at, first, "CIDR", &cidr.to_string()));
                }
                match cidr {
                    ipnet::IpNet::V4(net) => {
                        v4.entry(net.prefix_len()).or_default().insert(u32::from(net.network()), *index);
                    }
                    ipnet::IpNet::V6(net) => {
                        v6.entry(net.prefix_len()).or_default().insert(u128::from(net.network()), *index);
                    }
                }
            }
        }
        // Longest prefix first.
        Ok((by_listener, v4.into_iter().rev().collect(), v6.into_iter().rev().collect()))
    }
}

/// Whether the zone id `id` is the one asked for as `wanted`: the same
/// text, or the same name written with or without the final dot and in
/// any case (`"svc.test"` finds the zone [`ZoneSpec::new`] gave the id
/// `"svc.test."`).
pub fn zone_id_matches(id: &str, wanted: &str) -> bool {
    id == wanted || id.strip_suffix('.').unwrap_or(id).eq_ignore_ascii_case(wanted.strip_suffix('.').unwrap_or(wanted))
}

/// The position of the zone `wanted` names: an exact id first, else one
/// [`zone_id_matches`].
fn zone_position<'z, I: Iterator<Item = &'z ZoneSpec>>(zones: impl Fn() -> I, wanted: &str) -> Option<usize> {
    zones().position(|zone| zone.id == wanted).or_else(|| zones().position(|zone| zone_id_matches(&zone.id, wanted)))
}

fn duplicate(at: &Location, first: &Location, what: &'static str, name: &str) -> Error {
    Error::Duplicate { at: at.clone(), first: first.clone(), what, name: name.to_owned() }
}

fn split_families(addresses: &[IpAddr]) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for address in addresses {
        match unmapped(*address) {
            IpAddr::V4(address) if !v4.contains(&address) => v4.push(address),
            IpAddr::V6(address) if !v6.contains(&address) => v6.push(address),
            _ => {}
        }
    }
    (v4, v6)
}

fn compile_host(name: NameBuf, v4: Vec<Ipv4Addr>, v6: Vec<Ipv6Addr>, ttl: u32) -> CompiledHost {
    let records = |data: Vec<RDataBuf>| -> Box<[RecordBuf]> {
        if data.len() < 2 {
            return Box::new([]);
        }
        data.into_iter().map(|data| RecordBuf::new(name.clone(), ttl, data)).collect()
    };
    let a = records(v4.iter().map(|address| RDataBuf::A(*address)).collect());
    let aaaa = records(v6.iter().map(|address| RDataBuf::Aaaa(*address)).collect());
    CompiledHost { name: name.clone(), v4: v4.into(), v6: v6.into(), a, aaaa }
}

fn merge_host(existing: &mut CompiledHost, v4: Vec<Ipv4Addr>, v6: Vec<Ipv6Addr>, ttl: u32) {
    let mut all_v4 = existing.v4.to_vec();
    all_v4.extend(v4.into_iter().filter(|address| !existing.v4.contains(address)));
    let mut all_v6 = existing.v6.to_vec();
    all_v6.extend(v6.into_iter().filter(|address| !existing.v6.contains(address)));
    *existing = compile_host(existing.name.clone(), all_v4, all_v6, ttl);
}

enum Entry {
    Rule(u32),
    Exception(u32),
}

/// One view's index while it is being built, with where each entry came from.
#[derive(Default)]
struct TableBuilder {
    default_group: Option<String>,
    names: FastMap<Box<[u8]>, NameNode>,
    first_at: HashMap<(Box<[u8]>, &'static str), Location>,
    regex_rules: Vec<u32>,
    regex_exceptions: Vec<u32>,
    regex_at: HashMap<(String, bool), Location>,
}

impl TableBuilder {
    fn claim(
        &mut self,
        key: &[u8],
        kind: &'static str,
        name: &NameBuf,
        at: &Location,
        view: &str,
    ) -> Result<(), Error> {
        let slot = (Box::<[u8]>::from(key), kind);
        if let Some(first) = self.first_at.get(&slot) {
            return Err(Error::DuplicateRule {
                at: at.clone(),
                first: first.clone(),
                name: name.to_relative_string(),
                kind,
                view: view.to_owned(),
            });
        }
        self.first_at.insert(slot, at.clone());
        Ok(())
    }

    fn add_matcher(
        &mut self,
        matcher: &Matcher,
        entry: Entry,
        at: &Location,
        view_names: &[String],
        view: u32,
    ) -> Result<(), Error> {
        let view_name = view_names.get(view as usize).map_or("", String::as_str);
        let (name, kind) = match matcher {
            Matcher::Regex { pattern, anchor } => {
                let is_exception = matches!(entry, Entry::Exception(_));
                let key = (format!("{pattern}\u{0}{anchor:?}"), is_exception);
                if let Some(first) = self.regex_at.get(&key) {
                    return Err(Error::DuplicateRule {
                        at: at.clone(),
                        first: first.clone(),
                        name: matcher.to_string(),
                        kind: if is_exception { "regex exception" } else { "regex" },
                        view: view_name.to_owned(),
                    });
                }
                self.regex_at.insert(key, at.clone());
                match entry {
                    Entry::Rule(index) => self.regex_rules.push(index),
                    Entry::Exception(index) => self.regex_exceptions.push(index),
                }
                return Ok(());
            }
            Matcher::Exact(name) => (name, "exact"),
            Matcher::Suffix(name) => (name, "suffix"),
            Matcher::Wildcard(name) => (name, "wildcard"),
        };
        let key = key_of(name);
        let (claim_kind, index) = match entry {
            Entry::Rule(index) => (kind, index),
            Entry::Exception(index) => (
                match kind {
                    "exact" => "exact exception",
                    "suffix" => "suffix exception",
                    _ => "wildcard exception",
                },
                index,
            ),
        };
        self.claim(&key, claim_kind, name, at, view_name)?;
        let node = self.names.entry(key).or_default();
        match (entry, matcher) {
            (Entry::Rule(_), Matcher::Exact(_)) => node.exact = Some(Slot::Rule(index)),
            (Entry::Rule(_), Matcher::Suffix(_)) => node.suffix = Some(index),
            (Entry::Rule(_), _) => node.wildcard = Some(index),
            (Entry::Exception(_), Matcher::Exact(_)) => node.exception_exact = Some(index),
            (Entry::Exception(_), Matcher::Suffix(_)) => node.exception_suffix = Some(index),
            (Entry::Exception(_), _) => node.exception_wildcard = Some(index),
        }
        Ok(())
    }

    fn add_host(
        &mut self,
        name: &NameBuf,
        slot: Slot,
        at: &Location,
        view_names: &[String],
        view: u32,
    ) -> Result<(), Error> {
        let key = key_of(name);
        let view_name = view_names.get(view as usize).map_or("", String::as_str);
        // A host entry is an exact match: it conflicts with an exact rule.
        self.claim(&key, "exact", name, at, view_name)?;
        self.names.entry(key).or_default().exact = Some(slot);
        Ok(())
    }

    fn add_zone(
        &mut self,
        apex: &NameBuf,
        index: u32,
        at: &Location,
        view_names: &[String],
        view: u32,
    ) -> Result<(), Error> {
        let key = key_of(apex);
        if let Some(first) = self.first_at.get(&(key.clone(), "zone")) {
            let view_name = view_names.get(view as usize).map_or("", String::as_str);
            return Err(Error::Duplicate {
                at: at.clone(),
                first: first.clone(),
                what: "zone",
                name: format!("{apex} in view {view_name}"),
            });
        }
        self.first_at.insert((key.clone(), "zone"), at.clone());
        self.names.entry(key).or_default().zone = Some(index);
        Ok(())
    }

    fn finish(self, name: String, builder: &RuleSetBuilder, rules: &[CompiledRule]) -> Result<View, Error> {
        let mut depths = DepthSet::default();
        for key in self.names.keys() {
            depths.insert(LowerName::from_flat(key).label_count());
        }
        let compile = |targets: Vec<u32>, exception: bool| -> Result<Option<RegexList>, Error> {
            if targets.is_empty() {
                return Ok(None);
            }
            let matchers: Vec<(&Matcher, &Location)> = targets
                .iter()
                .filter_map(|&index| {
                    if exception {
                        builder.exceptions.get(index as usize).map(|(spec, at)| (&spec.matcher, at))
                    } else {
                        builder.rules.get(index as usize).map(|(spec, at)| (&spec.matcher, at))
                    }
                })
                .collect();
            let patterns: Vec<(&str, Anchor)> = matchers
                .iter()
                .filter_map(|(matcher, _)| match matcher {
                    Matcher::Regex { pattern, anchor } => Some((pattern.as_str(), *anchor)),
                    _ => None,
                })
                .collect();
            let regex = compile_regexes(&patterns).map_err(|(index, message)| {
                let (pattern, at) = match matchers.get(index) {
                    Some((Matcher::Regex { pattern, .. }, at)) => (pattern.clone(), (*at).clone()),
                    _ => (String::new(), Location::default()),
                };
                Error::InvalidRegex { at, pattern, message }
            })?;
            Ok(Some(RegexList { regex, targets }))
        };
        let regex_rules = compile(self.regex_rules, false)?;
        let regex_exceptions = compile(self.regex_exceptions, true)?;
        let has_filters = self.names.values().any(|node| {
            [
                node.wildcard,
                node.suffix,
                node.exact.and_then(|slot| match slot {
                    Slot::Rule(rule) => Some(rule),
                    Slot::Host { .. } => None,
                }),
            ]
            .into_iter()
            .flatten()
            .any(|rule| rules.get(rule as usize).is_some_and(|rule| rule.filter.is_some()))
        });
        let mut hosts = Vec::new();
        let packed: Vec<(Box<[u8]>, PackedNode)> =
            self.names.into_iter().map(|(key, node)| (key, PackedNode::pack(&node, &mut hosts))).collect();
        Ok(View {
            name: name.into(),
            default_group: self.default_group.map(Into::into),
            needs_text: has_filters || regex_rules.is_some() || regex_exceptions.is_some(),
            names: NameTable::new(packed),
            hosts,
            depths,
            regex_rules,
            regex_exceptions,
            firewall: ViewFirewall::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::HostEntry;
    use crate::test_support::name;

    fn client() -> Client {
        Client::udp(IpAddr::from([192, 0, 2, 1]))
    }

    fn forward(id: &str, matcher: &str, group: &str) -> RuleSpec {
        RuleSpec::new(
            id,
            Matcher::parse(matcher).expect("matcher"),
            Action::Forward { group: group.into(), forward_first: false },
        )
    }

    fn decide<'r>(rules: &'r RuleSet, text: &str, qtype: RecordType) -> Decision<'r> {
        rules.decide_name(&name(text), qtype, Class::IN, &client())
    }

    fn group_of(decision: &Decision<'_>) -> Option<String> {
        match decision {
            Decision::Forward(forward) => Some(forward.group.to_owned()),
            _ => None,
        }
    }

    #[test]
    fn most_specific_name_wins() {
        let mut builder = RuleSet::builder();
        builder
            .default_group("default")
            .rule(forward("com", "com", "g-com"))
            .rule(forward("example", "example.com", "g-suffix"))
            .rule(forward("wild", "*.example.com", "g-wild"))
            .rule(forward("exact", "=www.example.com", "g-exact"))
            .rule(forward("deep", "a.b.example.com", "g-deep"));
        let rules = builder.build().expect("valid");
        let cases = [
            ("www.example.com.", "g-exact"),
            ("WWW.EXAMPLE.COM.", "g-exact"),
            ("x.www.example.com.", "g-wild"),
            ("other.example.com.", "g-wild"),
            ("example.com.", "g-suffix"),
            ("c.a.b.example.com.", "g-deep"),
            ("a.b.example.com.", "g-deep"),
            ("b.example.com.", "g-wild"),
            ("example.org.", "default"),
            ("com.", "g-com"),
            ("badexample.com.", "g-com"),
        ];
        for (text, group) in cases {
            assert_eq!(group_of(&decide(&rules, text, RecordType::A)).as_deref(), Some(group), "{text}");
        }
    }

    #[test]
    fn redirect_answers_addresses_and_nodata_never_nxdomain() {
        let mut builder = RuleSet::builder();
        let redirect = Redirect {
            v4: AddressSource::Fixed(Ipv4Addr::new(10, 1, 2, 3)),
            v6: AddressSource::None,
            ttl: 30,
            ..Redirect::default()
        };
        builder.default_group("up").rule(RuleSpec::new(
            "aws",
            Matcher::parse("amazonaws.com").expect("matcher"),
            Action::Redirect(redirect),
        ));
        let rules = builder.build().expect("valid");
        let Decision::Local(answer) = decide(&rules, "s3.us-east-1.amazonaws.com.", RecordType::A) else {
            panic!("local")
        };
        assert_eq!(answer.answer, Answer::AddressOfQuestion { address: IpAddr::from([10, 1, 2, 3]), ttl: 30 });
        assert!(matches!(answer.authority, Cow::Borrowed(_)));
        for qtype in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
            let Decision::Local(answer) = decide(&rules, "sqs.amazonaws.com.", qtype) else { panic!("local") };
            assert!(answer.is_nodata(), "{qtype}");
            assert_eq!(answer.authority.len(), 1);
            assert_eq!(answer.authority[0].name, name("amazonaws.com."));
            assert_eq!(answer.authority[0].rtype(), RecordType::SOA);
            assert!(matches!(answer.authority, Cow::Borrowed(_)));
        }
        // Other classes are not redirected.
        let chaos = rules.decide_name(&name("x.amazonaws.com."), RecordType::TXT, Class::CH, &client());
        assert_eq!(group_of(&chaos).as_deref(), Some("up"));
    }

    #[test]
    fn a_redirect_that_declines_other_types_lets_less_specific_data_and_the_default_group_answer() {
        let redirect = Redirect {
            v4: AddressSource::Fixed(Ipv4Addr::new(10, 1, 2, 3)),
            v6: AddressSource::None,
            ttl: 300,
            other_types: OtherTypes::Decline,
        };
        let zone = Zone::from_records(
            name("example.org."),
            ["api.example.org. 300 IN MX 10 mail.example.org.".parse::<RecordBuf>().expect("record")],
        )
        .expect("zone");
        let mut builder = RuleSet::builder();
        builder
            .default_group("up")
            .rule(RuleSpec::new("aws", Matcher::parse("amazonaws.com").expect("matcher"), Action::Redirect(redirect)))
            .rule(RuleSpec::new(
                "api",
                Matcher::parse("=api.example.org").expect("matcher"),
                Action::Redirect(redirect),
            ))
            .zone(ZoneSpec::new(zone));
        let rules = builder.build().expect("valid");
        let Decision::Local(answer) = decide(&rules, "sqs.amazonaws.com.", RecordType::A) else { panic!("local") };
        assert_eq!(answer.answer, Answer::AddressOfQuestion { address: IpAddr::from([10, 1, 2, 3]), ttl: 300 });
        // A family without an address is still NODATA: the redirect holds AAAA, with nothing in it.
        let Decision::Local(answer) = decide(&rules, "sqs.amazonaws.com.", RecordType::AAAA) else { panic!("local") };
        assert!(answer.is_nodata());
        for qtype in [RecordType::MX, RecordType::TXT, RecordType::SRV, RecordType::CNAME] {
            let decision = decide(&rules, "sqs.amazonaws.com.", qtype);
            assert_eq!(group_of(&decision).as_deref(), Some("up"), "{qtype}");
            assert!(matches!(decision.reason().matched, Matched::Default), "{qtype}");
        }
        // Declined at an exact rule, the zone above answers.
        let Decision::Local(answer) = decide(&rules, "api.example.org.", RecordType::MX) else { panic!("zone") };
        assert!(matches!(answer.reason.matched, Matched::Zone { .. }));
        assert_eq!(answer.answer.len(), 1);
        assert_eq!(decide(&rules, "api.example.org.", RecordType::A).answer_address(), Some([10, 1, 2, 3].into()));
    }

    impl Decision<'_> {
        fn answer_address(&self) -> Option<IpAddr> {
            match self {
                Self::Local(LocalAnswer { answer: Answer::AddressOfQuestion { address, .. }, .. }) => Some(*address),
                _ => None,
            }
        }
    }

    #[test]
    fn an_overlay_zone_answers_only_what_it_holds() {
        let records = ["db.test. 300 IN A 10.0.0.5", "db.test. 300 IN TXT \"hello\"", "*.db.test. 300 IN A 10.0.0.6"]
            .map(|text| text.parse::<RecordBuf>().expect("record"));
        let overlay = Zone::loose(name("db.test."), records).expect("zone");
        assert!(overlay.rrset(&name("db.test."), RecordType::SOA).is_empty(), "no SOA is added");
        let alias = Zone::loose(name("www.db.test."), ["www.db.test. 60 IN CNAME db.test.".parse().expect("record")])
            .expect("a CNAME at the apex of a loose zone");
        let mut builder = RuleSet::builder();
        let spec = |zone: Zone| ZoneSpec { mode: ZoneMode::Overlay, ..ZoneSpec::new(zone) };
        builder.default_group("up").zone(spec(overlay)).zone(spec(alias));
        let rules = builder.build().expect("valid");
        let records = |decision: Decision<'_>| match decision {
            Decision::Local(LocalAnswer { answer: Answer::Records(records), .. }) => {
                records.iter().map(ToString::to_string).collect::<Vec<_>>()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(records(decide(&rules, "db.test.", RecordType::A)), ["db.test. 300 IN A 10.0.0.5"]);
        assert_eq!(records(decide(&rules, "a.b.db.test.", RecordType::A)), ["a.b.db.test. 300 IN A 10.0.0.6"]);
        assert_eq!(
            records(decide(&rules, "www.db.test.", RecordType::A)),
            ["www.db.test. 60 IN CNAME db.test.", "db.test. 300 IN A 10.0.0.5"]
        );
        // What the overlay lacks is passed on: a type at a name it holds, an SOA, a name outside.
        for (text, qtype) in [
            ("db.test.", RecordType::MX),
            ("db.test.", RecordType::SOA),
            ("db.test.", RecordType::AAAA),
            ("x.db.test.", RecordType::MX),
            ("test.", RecordType::A),
        ] {
            assert_eq!(group_of(&decide(&rules, text, qtype)).as_deref(), Some("up"), "{text} {qtype}");
        }
        // Edits keep the zone loose.
        let edited = rules.zone("db.test.").expect("zone").apply([ZoneChange::DeleteName(name("*.db.test."))]);
        assert!(edited.expect("edited").rrset(&name("db.test."), RecordType::SOA).is_empty());
    }

    #[test]
    fn arrival_address_follows_the_listener_address() {
        let redirect = Redirect::default();
        let mut local = Client::udp(IpAddr::from([127, 0, 0, 1]));
        assert_eq!(redirect_v4(&redirect, &local), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(redirect_v6(&redirect, &local), Some(Ipv6Addr::LOCALHOST));
        local.local = Some(IpAddr::from([127, 0, 0, 2]));
        assert_eq!(redirect_v4(&redirect, &local), Some(Ipv4Addr::new(127, 0, 0, 2)));
        let remote =
            Client { local: Some(IpAddr::from([172, 17, 0, 2])), ..Client::udp(IpAddr::from([172, 17, 0, 5])) };
        assert_eq!(redirect_v4(&redirect, &remote), Some(Ipv4Addr::new(172, 17, 0, 2)));
        assert_eq!(redirect_v6(&redirect, &remote), None);
        let unknown = Client::udp(IpAddr::from([172, 17, 0, 5]));
        assert_eq!(redirect_v4(&redirect, &unknown), None);
        let unspecified =
            Client { local: Some(IpAddr::from([0, 0, 0, 0])), ..Client::udp(IpAddr::from([127, 0, 0, 1])) };
        assert_eq!(redirect_v4(&redirect, &unspecified), Some(Ipv4Addr::LOCALHOST));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("address");
        let v6_listener = Client { local: Some(mapped), ..Client::udp(mapped) };
        assert_eq!(redirect_v4(&redirect, &v6_listener), Some(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn views_by_listener_then_longest_prefix_then_default() {
        let mut builder = RuleSet::builder();
        builder
            .default_group("up")
            .view(ViewSpec::new("wide", ["10.0.0.0/8".parse().expect("cidr")]))
            .view(ViewSpec::new(
                "narrow",
                ["10.1.0.0/16".parse().expect("cidr"), "2001:db8::/32".parse().expect("cidr")],
            ))
            .view(ViewSpec { listeners: vec!["inbound".into()], ..ViewSpec::new("endpoint", []) });
        let rules = builder.build().expect("valid");
        let view = |source: [u8; 4], listener: Option<&str>| {
            let client = Client { listener: listener.map(Into::into), ..Client::udp(IpAddr::from(source)) };
            rules.view_of(&client).to_owned()
        };
        assert_eq!(view([10, 2, 0, 1], None), "wide");
        assert_eq!(view([10, 1, 9, 9], None), "narrow");
        assert_eq!(view([192, 168, 0, 1], None), "default");
        assert_eq!(view([10, 1, 9, 9], Some("inbound")), "endpoint");
        assert_eq!(view([10, 1, 9, 9], Some("other")), "narrow");
        let v6 = Client::udp("2001:db8::5".parse().expect("address"));
        assert_eq!(rules.view_of(&v6), "narrow");
        let mapped = Client::udp("::ffff:10.2.3.4".parse().expect("address"));
        assert_eq!(rules.view_of(&mapped), "wide");
    }

    #[test]
    fn duplicates_and_unknowns_are_rejected() {
        let mut builder = RuleSet::builder();
        builder.rule(forward("a", "example.com", "g")).rule(forward("b", "EXAMPLE.com.", "g"));
        assert!(matches!(builder.build(), Err(Error::DuplicateRule { kind: "suffix", .. })));
        let mut builder = RuleSet::builder();
        builder.rule(forward("a", "example.com", "g")).rule(forward("a", "example.org", "g"));
        assert!(matches!(builder.build(), Err(Error::Duplicate { what: "rule id", .. })));
        let mut builder = RuleSet::builder();
        builder.known_groups(["g"]).rule(forward("a", "example.com", "nope"));
        assert!(matches!(builder.build(), Err(Error::UnknownGroup { .. })));
        let mut builder = RuleSet::builder();
        builder.rule(forward("a", "example.com", "g").in_views(["nope"]));
        assert!(matches!(builder.build(), Err(Error::UnknownView { .. })));
        let mut builder = RuleSet::builder();
        builder
            .rule(forward("a", "=db.corp", "g"))
            .host_table(HostTableSpec::new("t", vec![HostEntry::new(name("db.corp."), [IpAddr::from([10, 0, 0, 1])])]));
        assert!(matches!(builder.build(), Err(Error::DuplicateRule { kind: "exact", .. })));
        let mut builder = RuleSet::builder();
        builder.rule(forward("a", "/(/", "g"));
        assert!(matches!(builder.build(), Err(Error::InvalidRegex { .. })));
        let mut builder = RuleSet::builder();
        builder.exception(ExceptionSpec::new("e", Matcher::parse("x.com").expect("matcher")));
        assert!(matches!(builder.build(), Err(Error::InvalidEntry { .. })));
    }

    #[test]
    fn rule_sets_can_be_shared_across_threads_and_default_forwards_everything() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<RuleSet>();
        let rules = RuleSet::default();
        assert_eq!(rules.default_group(), Some(DEFAULT_GROUP));
        assert_eq!(group_of(&decide(&rules, "anything.example.", RecordType::A)).as_deref(), Some(DEFAULT_GROUP));
    }

    #[test]
    fn the_firewall_comes_before_zones_and_rules_in_its_view_only() {
        let zone = Zone::from_records(
            name("corp.example."),
            [
                "corp.example. 60 A 10.0.0.1".parse::<RecordBuf>().expect("record"),
                "walled.corp.example. 60 A 10.0.0.9".parse::<RecordBuf>().expect("record"),
            ],
        )
        .expect("zone");
        let list = |entries: &[&str]| Arc::new(crate::DomainList::from_entries(entries).expect("list"));
        let rule = |id: &str, domains, action| FirewallRuleSpec {
            group: "rslvr-frg-1".into(),
            rule: id.into(),
            list: format!("rslvr-fdl-{id}"),
            domains,
            qtype: None,
            action,
            redirection: crate::Redirection::Inspect,
        };
        let mut builder = RuleSet::builder();
        builder
            .default_group("up")
            .view(ViewSpec::new("vpc", ["192.0.2.0/24".parse().expect("cidr")]))
            .zone(ZoneSpec::new(zone).in_views(["vpc", DEFAULT_VIEW]))
            .firewall(
                "vpc",
                vec![
                    rule("allow", list(&["ok.corp.example"]), FirewallAction::Allow),
                    rule("alert", list(&["*.watched.example"]), FirewallAction::Alert),
                    rule("nx", list(&["*.corp.example"]), FirewallAction::Block(FirewallBlock::NxDomain)),
                    rule("nodata", list(&["corp.example"]), FirewallAction::Block(FirewallBlock::NoData)),
                    rule(
                        "override",
                        list(&["*.bad.example"]),
                        FirewallAction::Block(FirewallBlock::Override { domain: name("walled.corp.example."), ttl: 5 }),
                    ),
                ],
            );
        let rules = builder.build().expect("valid");
        assert!(rules.has_firewall());
        assert!(!RuleSet::default().has_firewall());
        assert!(rules.firewall_inspects_chains("vpc"));
        assert!(!rules.firewall_inspects_chains(DEFAULT_VIEW));
        assert!(!RuleSet::default().firewall_inspects_chains(DEFAULT_VIEW));
        let Decision::Block(block) = decide(&rules, "www.corp.example.", RecordType::A) else { panic!() };
        assert_eq!(block.action, BlockAction::NxDomain);
        assert_eq!(block.reason.matched, Matched::Firewall { group: "rslvr-frg-1", rule: "nx", list: "rslvr-fdl-nx" });
        let Decision::Block(block) = decide(&rules, "corp.example.", RecordType::A) else { panic!() };
        assert_eq!(block.action, BlockAction::Sinkhole { v4: None, v6: None });
        // ALLOW stops the firewall: the zone answers (NXDOMAIN, as it lacks the name).
        let Decision::Local(local) = decide(&rules, "ok.corp.example.", RecordType::A) else { panic!() };
        assert!(matches!(local.reason.matched, Matched::Zone { .. }));
        // OVERRIDE: a CNAME, followed through the view's zone.
        let Decision::Local(local) = decide(&rules, "x.Bad.example.", RecordType::A) else { panic!() };
        let Answer::Records(records) = &local.answer else { panic!() };
        assert_eq!(records[0].to_string(), "x.Bad.example. 5 IN CNAME walled.corp.example.");
        assert_eq!(records[1].to_string(), "walled.corp.example. 60 IN A 10.0.0.9");
        // ALERT lets the query through; the match is there for the log.
        assert_eq!(group_of(&decide(&rules, "a.watched.example.", RecordType::A)).as_deref(), Some("up"));
        let hit = rules.firewall_match("vpc", &name("a.watched.example."), RecordType::A).expect("a match");
        assert_eq!((hit.rule, hit.action), ("alert", &FirewallAction::Alert));
        // Another view has no firewall.
        let outside = Client::udp(IpAddr::from([198, 51, 100, 1]));
        let decision = rules.decide_name(&name("www.corp.example."), RecordType::A, Class::IN, &outside);
        assert!(matches!(decision, Decision::Local(_)));
        assert!(rules.firewall_match(DEFAULT_VIEW, &name("www.corp.example."), RecordType::A).is_none());
        let mut builder = RuleSet::builder();
        builder.firewall("nope", Vec::new());
        assert!(matches!(builder.build(), Err(Error::UnknownView { .. })));
    }

    #[test]
    fn redirect_zones_answer_every_name_with_the_apex_data() {
        let zone = Zone::from_records(
            name("blocked.example."),
            ["blocked.example. 60 A 0.0.0.0".parse::<RecordBuf>().expect("record")],
        )
        .expect("zone");
        let mut builder = RuleSet::builder();
        builder.default_group("up").zone(ZoneSpec { mode: ZoneMode::Redirect, ..ZoneSpec::new(zone) });
        let rules = builder.build().expect("valid");
        let Decision::Local(local) = decide(&rules, "deep.sub.Blocked.example.", RecordType::A) else { panic!() };
        let Answer::Records(records) = &local.answer else { panic!() };
        assert_eq!(records[0].to_string(), "deep.sub.Blocked.example. 60 IN A 0.0.0.0");
        let Decision::Local(local) = decide(&rules, "blocked.example.", RecordType::A) else { panic!() };
        assert!(matches!(local.answer, Answer::Records(Cow::Borrowed(_))));
        let Decision::Local(local) = decide(&rules, "x.blocked.example.", RecordType::MX) else { panic!() };
        assert!(local.is_nodata());
    }

    #[test]
    fn regexes_match_in_declaration_order() {
        let mut builder = RuleSet::builder();
        let regex = |pattern: &str| Matcher::Regex { pattern: pattern.into(), anchor: Anchor::Full };
        builder
            .default_group("up")
            .rule(RuleSpec::new("first", regex(r".*\.ads\..*"), Action::Block(BlockAction::NxDomain)))
            .rule(RuleSpec::new("second", regex(r"ads\..*"), Action::Block(BlockAction::Refused)))
            .rule(RuleSpec::new("third", regex(r".*\.example"), Action::Block(BlockAction::Refused)));
        let rules = builder.build().expect("valid");
        let id = |text: &str| match decide(&rules, text, RecordType::A).reason().matched {
            Matched::Rule { id, .. } => id.to_owned(),
            _ => "none".to_owned(),
        };
        assert_eq!(id("x.ads.example."), "first");
        assert_eq!(id("ads.example."), "second");
        assert_eq!(id("ADS.Example."), "second");
        assert_eq!(id("www.example."), "third");
        // Fully anchored: a match in the middle is not enough.
        assert_eq!(id("www.example.org."), "none");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const LABELS: [&str; 5] = ["a", "b", "c", "ab", "x"];
        const PATTERNS: [&str; 6] = ["a.*", ".*b", "(a|b)\\..*", "x", ".*\\.c", "[abc]+"];

        fn labels(max: usize) -> impl Strategy<Value = Vec<&'static str>> {
            proptest::collection::vec(proptest::sample::select(&LABELS[..]), 0..=max)
        }

        fn to_name(labels: &[&str]) -> NameBuf {
            if labels.is_empty() { NameBuf::root() } else { name(&labels.join(".")) }
        }

        /// Whether `child` equals `parent` or lies below it, label by label.
        fn is_under(child: &[&str], parent: &[&str]) -> bool {
            child.len() >= parent.len() && child[child.len() - parent.len()..] == *parent
        }

        proptest! {
            #[test]
            fn a_suffix_rule_matches_exactly_its_domain_and_below(domain in labels(3), query in labels(5)) {
                let mut builder = RuleSet::builder();
                let matcher = Matcher::Suffix(to_name(&domain));
                builder.default_group("miss").rule(RuleSpec::new(
                    "r",
                    matcher,
                    Action::Forward { group: "hit".into(), forward_first: false },
                ));
                let rules = builder.build().expect("valid");
                let decision = rules.decide_name(&to_name(&query), RecordType::A, Class::IN, &client());
                let expected = if is_under(&query, &domain) { "hit" } else { "miss" };
                let group = group_of(&decision);
                prop_assert_eq!(group.as_deref(), Some(expected));
            }

            #[test]
            fn decide_agrees_with_a_naive_reference(
                rules in proptest::collection::vec((0u8..3, labels(3), 0u8..4), 0..12),
                exceptions in proptest::collection::vec((0u8..3, labels(3)), 0..4),
                zones in proptest::collection::vec(labels(2), 0..3),
                regex_rules in proptest::collection::vec((0usize..PATTERNS.len(), any::<bool>()), 0..3),
                regex_exceptions in proptest::collection::vec((0usize..PATTERNS.len(), any::<bool>()), 0..2),
                queries in proptest::collection::vec(labels(4), 1..8),
            ) {
                let model = Model::new(rules, exceptions, zones, regex_rules, regex_exceptions);
                let built = model.build();
                for query in &queries {
                    let decision = built.decide_name(&to_name(query), RecordType::A, Class::IN, &client());
                    prop_assert_eq!(outcome(&decision), model.reference(query), "query {:?}", query);
                }
            }
        }

        /// Random rule sets, deduplicated so they build, and the reference decision.
        struct Model {
            /// (kind 0 exact / 1 suffix / 2 wildcard, labels, action 0-2 forward gN / 3 block)
            rules: Vec<(u8, Vec<&'static str>, u8)>,
            exceptions: Vec<(u8, Vec<&'static str>)>,
            zones: Vec<Vec<&'static str>>,
            regex_rules: Vec<(usize, bool)>,
            regex_exceptions: Vec<(usize, bool)>,
        }

        impl Model {
            fn new(
                mut rules: Vec<(u8, Vec<&'static str>, u8)>,
                mut exceptions: Vec<(u8, Vec<&'static str>)>,
                mut zones: Vec<Vec<&'static str>>,
                mut regex_rules: Vec<(usize, bool)>,
                mut regex_exceptions: Vec<(usize, bool)>,
            ) -> Self {
                let mut seen = std::collections::HashSet::new();
                rules.retain(|(kind, labels, _)| seen.insert((*kind, labels.clone())));
                let mut seen = std::collections::HashSet::new();
                exceptions.retain(|(kind, labels)| seen.insert((*kind, labels.clone())));
                let mut seen = std::collections::HashSet::new();
                zones.retain(|labels| seen.insert(labels.clone()));
                let mut seen = std::collections::HashSet::new();
                regex_rules.retain(|pattern| seen.insert(*pattern));
                let mut seen = std::collections::HashSet::new();
                regex_exceptions.retain(|pattern| seen.insert(*pattern));
                Self { rules, exceptions, zones, regex_rules, regex_exceptions }
            }

            fn matcher(kind: u8, labels: &[&str]) -> Matcher {
                match kind {
                    0 => Matcher::Exact(to_name(labels)),
                    1 => Matcher::Suffix(to_name(labels)),
                    _ => Matcher::Wildcard(to_name(labels)),
                }
            }

            fn regex((pattern, start): (usize, bool)) -> Matcher {
                Matcher::Regex {
                    pattern: PATTERNS[pattern].to_owned(),
                    anchor: if start { Anchor::Start } else { Anchor::Full },
                }
            }

            fn build(&self) -> RuleSet {
                let mut builder = RuleSet::builder();
                builder.default_group("default");
                for (index, (kind, labels, action)) in self.rules.iter().enumerate() {
                    let action = match action {
                        3 => Action::Block(BlockAction::NxDomain),
                        group => Action::Forward { group: format!("g{group}"), forward_first: false },
                    };
                    builder.rule(RuleSpec::new(format!("r{index}"), Self::matcher(*kind, labels), action));
                }
                for (index, (kind, labels)) in self.exceptions.iter().enumerate() {
                    builder.exception(ExceptionSpec::new(format!("e{index}"), Self::matcher(*kind, labels)));
                }
                for labels in &self.zones {
                    builder.zone(ZoneSpec::new(Zone::new(to_name(labels))));
                }
                for (index, pattern) in self.regex_rules.iter().enumerate() {
                    let action = Action::Forward { group: format!("x{index}"), forward_first: false };
                    builder.rule(RuleSpec::new(format!("x{index}"), Self::regex(*pattern), action));
                }
                for (index, pattern) in self.regex_exceptions.iter().enumerate() {
                    builder.exception(ExceptionSpec::new(format!("y{index}"), Self::regex(*pattern)));
                }
                builder.build().expect("deduplicated rule sets build")
            }

            /// The precedence table of docs/rules.md, applied by brute force.
            fn reference(&self, query: &[&str]) -> String {
                let text = if query.is_empty() { ".".to_owned() } else { query.join(".") };
                let regex_matches = |pattern: (usize, bool)| {
                    let full = format!("^(?:{})$", PATTERNS[pattern.0]);
                    let start = format!("^(?:{})", PATTERNS[pattern.0]);
                    Regex::new(if pattern.1 { &start } else { &full }).expect("valid").is_match(&text)
                };
                if let Some(index) = self.regex_exceptions.iter().position(|p| regex_matches(*p)) {
                    return format!("exception y{index}");
                }
                let matches = |kind: u8, labels: &[&str]| match kind {
                    0 => query == labels,
                    1 => is_under(query, labels),
                    _ => query.len() > labels.len() && is_under(query, labels),
                };
                // (depth, tier): at one depth, exception > rule of the same kind > suffix exception > suffix rule > zone.
                let tier = |kind: u8, exception: bool| match kind {
                    1 => 2 + u8::from(exception),
                    _ => 4 + u8::from(exception),
                };
                let mut best: Option<((usize, u8), String)> = None;
                let mut consider = |key: (usize, u8), outcome: String| {
                    if best.as_ref().is_none_or(|(best_key, _)| key > *best_key) {
                        best = Some((key, outcome));
                    }
                };
                for (index, (kind, labels, action)) in self.rules.iter().enumerate() {
                    if matches(*kind, labels) {
                        let outcome =
                            if *action == 3 { format!("block r{index}") } else { format!("forward g{action}") };
                        consider((labels.len(), tier(*kind, false)), outcome);
                    }
                }
                for (index, (kind, labels)) in self.exceptions.iter().enumerate() {
                    if matches(*kind, labels) {
                        consider((labels.len(), tier(*kind, true)), format!("exception e{index}"));
                    }
                }
                for labels in &self.zones {
                    if is_under(query, labels) {
                        let rcode = if query == labels.as_slice() { "NOERROR" } else { "NXDOMAIN" };
                        consider((labels.len(), 1), format!("zone {} {rcode}", to_name(labels)));
                    }
                }
                if let Some((_, outcome)) = best {
                    return outcome;
                }
                if let Some(index) = self.regex_rules.iter().position(|p| regex_matches(*p)) {
                    return format!("forward x{index}");
                }
                "forward default".to_owned()
            }
        }

        fn outcome(decision: &Decision<'_>) -> String {
            match decision {
                Decision::Forward(forward) => match forward.reason.matched {
                    Matched::Exception { id, .. } => format!("exception {id}"),
                    _ => format!("forward {}", forward.group),
                },
                Decision::Block(block) => match block.reason.matched {
                    Matched::Rule { id, .. } => format!("block {id}"),
                    _ => "block ?".to_owned(),
                },
                Decision::Local(local) => match local.reason.matched {
                    Matched::Zone { zone } => format!("zone {zone} {}", local.rcode),
                    _ => "local ?".to_owned(),
                },
            }
        }
    }
}
