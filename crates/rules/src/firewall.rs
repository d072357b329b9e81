//! DNS Firewall: per view, an ordered list of rules, each a domain list,
//! an optional query type and an action (Route 53 Resolver DNS Firewall's
//! model). [`RuleSet::decide`](crate::RuleSet::decide) evaluates a view's
//! firewall before anything else in the view, so a block covers private
//! zones, host tables and forwarding rules alike; the first rule that
//! matches decides, ALLOW included.
//!
//! Domain lists follow AWS's syntax: `example.com` matches that name only,
//! `*.example.com` every name below it (not `example.com` itself), and `*`
//! every name.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use signpost_wire::{NameBuf, RecordType, ToName};

use crate::error::{Error, Location};
use crate::names::{FxHasher, LowerName, key_of};

type FastSet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;

/// A compiled domain list: exact names, names whose subdomains match, and
/// whether `*` (everything) is in it. Lookups hash suffixes of the asked
/// name and never allocate.
#[derive(Clone, Debug, Default)]
pub struct DomainList {
    exact: FastSet<Box<[u8]>>,
    below: FastSet<Box<[u8]>>,
    everything: bool,
    len: usize,
    /// Its entries could not be read: rules on it cannot be evaluated.
    unavailable: bool,
}

impl DomainList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// A list whose entries could not be read (its file is missing, say):
    /// a rule on it cannot be evaluated, and the view's fail-open setting
    /// decides what the queries that reach the rule get.
    pub fn unavailable() -> Self {
        Self { unavailable: true, ..Self::default() }
    }

    /// Whether its entries were read ([`DomainList::unavailable`] is not).
    pub fn is_available(&self) -> bool {
        !self.unavailable
    }

    /// A list of these entries.
    pub fn from_entries<S: AsRef<str>>(entries: impl IntoIterator<Item = S>) -> Result<Self, Error> {
        let mut list = Self::new();
        for entry in entries {
            list.insert(entry.as_ref())?;
        }
        Ok(list)
    }

    /// Add an entry (`name`, `*.name` or `*`); adding one twice changes
    /// nothing. Errors carry no location: callers relocate them.
    pub fn insert(&mut self, entry: &str) -> Result<(), Error> {
        let entry = entry.trim();
        if entry == "*" || entry == "*." {
            if !self.everything {
                self.everything = true;
                self.len += 1;
            }
            return Ok(());
        }
        let (wildcard, rest) = match entry.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, entry),
        };
        if rest.contains('*') {
            return Err(Error::InvalidEntry {
                at: Location::default(),
                problem: "an asterisk may only be the whole leftmost label of a domain list entry (\"*.example.com\" or \"*\")",
            });
        }
        let name: NameBuf = rest.parse().map_err(|source| Error::InvalidName {
            at: Location::default(),
            text: entry.to_string(),
            source,
        })?;
        let key = key_of(&name);
        let added = if wildcard { self.below.insert(key) } else { self.exact.insert(key) };
        if added {
            self.len += 1;
        }
        Ok(())
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `name` matches an entry.
    pub fn matches(&self, name: &impl ToName) -> bool {
        self.matches_lower(&LowerName::new(name))
    }

    pub(crate) fn matches_lower(&self, name: &LowerName) -> bool {
        if self.everything || self.exact.contains(name.as_wire()) {
            return true;
        }
        if self.below.is_empty() {
            return false;
        }
        // Strict parents only: `*.example.com` does not match `example.com`.
        (0..name.label_count()).any(|labels| self.below.contains(name.suffix(labels)))
    }
}

/// How a BLOCK rule answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirewallBlock {
    /// NOERROR with no answer.
    NoData,
    /// NXDOMAIN.
    NxDomain,
    /// A CNAME to `domain` with this TTL (Route 53's OVERRIDE with
    /// BlockOverrideDnsType CNAME), followed through the view's own data.
    Override {
        /// The name the CNAME points at.
        domain: NameBuf,
        /// Its TTL.
        ttl: u32,
    },
}

/// What a firewall rule does with the queries it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirewallAction {
    /// Let the query through and stop evaluating the firewall.
    Allow,
    /// Let the query through, marked for the query log.
    Alert,
    /// Answer instead of resolving.
    Block(FirewallBlock),
}

impl FirewallAction {
    /// `ALLOW`, `ALERT` or `BLOCK`, as Route 53 spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Allow => "ALLOW",
            Self::Alert => "ALERT",
            Self::Block(_) => "BLOCK",
        }
    }
}

/// Which names of an answer's redirection chain (CNAME and DNAME) a rule
/// inspects: Route 53's FirewallDomainRedirectionAction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Redirection {
    /// INSPECT_REDIRECTION_DOMAIN (AWS's default): every name of the chain
    /// is checked against the rule, as if it had been asked.
    #[default]
    Inspect,
    /// TRUST_REDIRECTION_DOMAIN: only the name asked is checked; when the
    /// rule ALLOWs it, the rest of the chain is trusted.
    Trust,
}

impl Redirection {
    /// `INSPECT_REDIRECTION_DOMAIN` or `TRUST_REDIRECTION_DOMAIN`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inspect => "INSPECT_REDIRECTION_DOMAIN",
            Self::Trust => "TRUST_REDIRECTION_DOMAIN",
        }
    }
}

/// One firewall rule as the builder takes it.
#[derive(Clone, Debug)]
pub struct FirewallRuleSpec {
    /// The rule group it belongs to (its id).
    pub group: String,
    /// The rule's name (unique in its group).
    pub rule: String,
    /// The id of its domain list.
    pub list: String,
    /// The domain list (shared between the rules and views that use it).
    pub domains: Arc<DomainList>,
    /// Only queries of this type match; `None`: every type.
    pub qtype: Option<RecordType>,
    /// What happens to queries that match.
    pub action: FirewallAction,
    /// Which names of an answer's CNAME/DNAME chain it inspects.
    pub redirection: Redirection,
}

/// The firewall rule that matched a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirewallMatch<'r> {
    /// The rule group's id.
    pub group: &'r str,
    /// The rule's name.
    pub rule: &'r str,
    /// The domain list's id.
    pub list: &'r str,
    /// Its action.
    pub action: &'r FirewallAction,
    /// The rule's domain list could not be read and the view fails
    /// closed: the query is answered SERVFAIL, whatever `action` says.
    pub failed: bool,
}

/// The rules of one view, in evaluation order.
#[derive(Clone, Debug, Default)]
pub(crate) struct ViewFirewall {
    rules: Vec<FirewallRuleSpec>,
    /// Route 53's FirewallFailOpen: a rule that cannot be evaluated is
    /// skipped (true) or fails the query (false, AWS's default).
    fail_open: bool,
    /// Whether any rule inspects redirection chains.
    inspects_chains: bool,
}

impl ViewFirewall {
    pub(crate) fn new(rules: Vec<FirewallRuleSpec>, fail_open: bool) -> Self {
        let inspects_chains = rules.iter().any(|rule| rule.redirection == Redirection::Inspect);
        Self { rules, fail_open, inspects_chains }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub(crate) fn inspects_chains(&self) -> bool {
        self.inspects_chains
    }

    /// Whether the rule that made `hit` trusts redirection chains.
    pub(crate) fn trusts(&self, hit: FirewallMatch<'_>) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.group == hit.group && rule.rule == hit.rule && rule.redirection == Redirection::Trust)
    }

    /// The first rule matching `name` and `qtype`. `asked` is false for
    /// the later names of a redirection chain, which TRUST rules do not
    /// inspect. A rule whose list is unavailable is skipped when the view
    /// fails open and matches (as `failed`) when it fails closed.
    pub(crate) fn evaluate(&self, name: &LowerName, qtype: RecordType, asked: bool) -> Option<FirewallMatch<'_>> {
        self.rules
            .iter()
            .filter(|rule| rule.qtype.is_none_or(|wanted| wanted == qtype))
            .filter(|rule| asked || rule.redirection == Redirection::Inspect)
            .find_map(|rule| {
                let failed = !rule.domains.is_available();
                if failed && self.fail_open {
                    return None;
                }
                (failed || rule.domains.matches_lower(name)).then_some(FirewallMatch {
                    group: &rule.group,
                    rule: &rule.rule,
                    list: &rule.list,
                    action: &rule.action,
                    failed,
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::name;

    #[test]
    fn entries_match_as_aws_documents() {
        let list = DomainList::from_entries(["evil.example", "*.bad.example", "Mixed.Case.Example."]).expect("list");
        assert_eq!(list.len(), 3);
        assert!(list.matches(&name("evil.example")));
        assert!(list.matches(&name("EVIL.example")));
        assert!(!list.matches(&name("www.evil.example")), "a plain entry is that name only");
        assert!(list.matches(&name("www.bad.example")));
        assert!(list.matches(&name("a.b.bad.example")));
        assert!(!list.matches(&name("bad.example")), "*. matches below the name, not the name");
        assert!(list.matches(&name("mixed.case.example")));
        assert!(!list.matches(&name("example")));
        let everything = DomainList::from_entries(["*"]).expect("list");
        assert!(everything.matches(&name("anything.at.all")));
        assert!(everything.matches(&NameBuf::root()));
    }

    #[test]
    fn bad_entries_are_rejected_and_duplicates_counted_once() {
        assert!(matches!(DomainList::from_entries(["a.*.example"]), Err(Error::InvalidEntry { .. })));
        assert!(matches!(DomainList::from_entries(["a..example"]), Err(Error::InvalidName { .. })));
        let list = DomainList::from_entries(["a.example", "A.example.", "*", "*"]).expect("list");
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn the_first_matching_rule_decides_and_qtypes_filter() {
        let list = |entries: &[&str]| Arc::new(DomainList::from_entries(entries).expect("list"));
        let rule = |id: &str, domains: Arc<DomainList>, qtype, action| FirewallRuleSpec {
            group: "g".into(),
            rule: id.into(),
            list: format!("list-{id}"),
            domains,
            qtype,
            action,
            redirection: Redirection::Inspect,
        };
        let firewall = ViewFirewall::new(
            vec![
                rule("aaaa-only", list(&["*.example"]), Some(RecordType::AAAA), FirewallAction::Alert),
                rule("allow", list(&["ok.example"]), None, FirewallAction::Allow),
                rule("block", list(&["*.example", "ok.example"]), None, FirewallAction::Block(FirewallBlock::NxDomain)),
            ],
            false,
        );
        let decide =
            |text: &str, qtype| firewall.evaluate(&LowerName::new(&name(text)), qtype, true).map(|hit| hit.rule);
        assert_eq!(decide("www.example", RecordType::AAAA), Some("aaaa-only"));
        assert_eq!(decide("www.example", RecordType::A), Some("block"));
        assert_eq!(decide("ok.example", RecordType::A), Some("allow"), "ALLOW before a later BLOCK wins");
        assert_eq!(decide("other.test", RecordType::A), None);
    }

    #[test]
    fn trust_rules_skip_chain_names_and_unavailable_lists_follow_fail_open() {
        let rule = |id: &str, domains: DomainList, redirection| FirewallRuleSpec {
            group: "g".into(),
            rule: id.into(),
            list: format!("list-{id}"),
            domains: Arc::new(domains),
            qtype: None,
            action: FirewallAction::Block(FirewallBlock::NxDomain),
            redirection,
        };
        let entries = |entries: &[&str]| DomainList::from_entries(entries).expect("list");
        let rules = vec![
            rule("trusting", entries(&["*.cdn.example"]), Redirection::Trust),
            rule("gone", DomainList::unavailable(), Redirection::Inspect),
        ];
        let closed = ViewFirewall::new(rules.clone(), false);
        let lower = |text: &str| LowerName::new(&name(text));
        let hit = closed.evaluate(&lower("a.cdn.example"), RecordType::A, true).expect("asked name");
        assert_eq!((hit.rule, hit.failed), ("trusting", false));
        // A chain name is not inspected by the TRUST rule: the unavailable list fails it.
        let hit = closed.evaluate(&lower("a.cdn.example"), RecordType::A, false).expect("fails closed");
        assert_eq!((hit.rule, hit.failed), ("gone", true));
        let open = ViewFirewall::new(rules, true);
        assert!(open.evaluate(&lower("a.cdn.example"), RecordType::A, false).is_none());
        assert!(open.inspects_chains());
        assert!(!DomainList::unavailable().is_available());
    }
}
