//! The typed description of a rule set, as the builder takes it: views,
//! rules, exceptions, zones and host tables.

use core::fmt;
use core::str::FromStr;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;
use signpost_wire::NameBuf;

use crate::decision::BlockAction;
use crate::hosts::HostEntry;
use crate::zone::Zone;

/// The view every rule set has: clients no other view claims land here.
pub const DEFAULT_VIEW: &str = "default";

/// The group [`RuleSet::default`](crate::RuleSet) forwards everything to.
pub const DEFAULT_GROUP: &str = "default";

/// Which names a rule or exception matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// This name only.
    Exact(NameBuf),
    /// This name and every name below it (systemd-resolved's `~domain`).
    Suffix(NameBuf),
    /// Every name strictly below this one: `*.example.com` is
    /// `Wildcard(example.com)` and matches `a.example.com` and
    /// `a.b.example.com`, not `example.com`.
    Wildcard(NameBuf),
    /// A regular expression over the name in presentation form, lowercased,
    /// without the trailing dot (`www.example.com`; the root is `.`),
    /// case-insensitive.
    Regex {
        /// The pattern (regex-automata syntax, like Rust's regex crate).
        pattern: String,
        /// How it is anchored.
        anchor: Anchor,
    },
}

/// How a regular expression is anchored to the name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Anchor {
    /// The pattern must match the whole name (as if written `^(?:pattern)$`).
    #[default]
    Full,
    /// The pattern must match at the start of the name; the rest may follow
    /// (Python's `re.match`, as LocalStack's DNS patterns use).
    Start,
}

impl Matcher {
    /// The matcher of `text`: `=name` is exact, `*.name` is a wildcard,
    /// `/regex/` is a fully anchored regex, and anything else is a suffix.
    pub fn parse(text: &str) -> Result<Self, signpost_wire::Error> {
        if let Some(pattern) = text.strip_prefix('/').and_then(|rest| rest.strip_suffix('/')) {
            return Ok(Self::Regex { pattern: pattern.to_owned(), anchor: Anchor::Full });
        }
        if text == "*" || text == "*." {
            return Ok(Self::Wildcard(NameBuf::root()));
        }
        if let Some(name) = text.strip_prefix('=') {
            return Ok(Self::Exact(name.parse()?));
        }
        if let Some(parent) = text.strip_prefix("*.") {
            return Ok(Self::Wildcard(parent.parse()?));
        }
        Ok(Self::Suffix(text.parse()?))
    }

    /// What kind of matcher this is: `"exact"`, `"suffix"`, `"wildcard"` or `"regex"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Exact(_) => "exact",
            Self::Suffix(_) => "suffix",
            Self::Wildcard(_) => "wildcard",
            Self::Regex { .. } => "regex",
        }
    }
}

impl fmt::Display for Matcher {
    /// The form [`Matcher::parse`] reads (a start-anchored regex shows as `/pattern/^`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => write!(f, "={}", name.to_relative_string()),
            Self::Suffix(name) => f.write_str(&name.to_relative_string()),
            Self::Wildcard(name) if name.is_root() => f.write_str("*"),
            Self::Wildcard(name) => write!(f, "*.{}", name.to_relative_string()),
            Self::Regex { pattern, anchor: Anchor::Full } => write!(f, "/{pattern}/"),
            Self::Regex { pattern, anchor: Anchor::Start } => write!(f, "/{pattern}/^"),
        }
    }
}

impl FromStr for Matcher {
    type Err = signpost_wire::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// Where a redirect rule's address comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressSource<A> {
    /// Always this address.
    Fixed(A),
    /// The address the query arrived on ([`Client::local`](crate::Client));
    /// when that is unknown and the client is on loopback, 127.0.0.1 or ::1.
    ArrivalAddress,
    /// No address of this family: NODATA.
    None,
    /// The rule declines questions for this family: less specific matches,
    /// and then the view's default group, answer instead (with
    /// [`AddressSource::None`] for the other family this is Unbound's
    /// `block_a` / `block_aaaa`).
    Decline,
}

/// Answer A and AAAA for matching names with a local address (LocalStack's
/// DNS redirection); other types get NODATA, or are declined
/// ([`OtherTypes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Redirect {
    /// The address for A.
    pub v4: AddressSource<Ipv4Addr>,
    /// The address for AAAA.
    pub v6: AddressSource<Ipv6Addr>,
    /// The TTL of the answers (and of the SOA in NODATA answers).
    pub ttl: u32,
    /// What question types other than A, AAAA and ANY get.
    pub other_types: OtherTypes,
}

impl Default for Redirect {
    /// The arrival address for both families, TTL 60, NODATA for other types.
    fn default() -> Self {
        Self {
            v4: AddressSource::ArrivalAddress,
            v6: AddressSource::ArrivalAddress,
            ttl: 60,
            other_types: OtherTypes::NoData,
        }
    }
}

/// What a redirect rule does with question types it holds no data for
/// (MX, TXT, SRV, ...: everything but A, AAAA and ANY).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtherTypes {
    /// NOERROR with an empty answer and an SOA: the name exists, without
    /// data of that type.
    #[default]
    NoData,
    /// The rule declines: less specific matches, and then the view's
    /// default group, answer instead (LocalStack's DNS server forwards such
    /// questions upstream).
    Decline,
}

/// What a rule does with the names it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send to an upstream group.
    Forward {
        /// The group.
        group: String,
        /// On total failure of the group, fall back to the default group.
        forward_first: bool,
    },
    /// Answer with a local address.
    Redirect(Redirect),
    /// Refuse, NXDOMAIN or sinkhole.
    Block(BlockAction),
    /// Resolve as if no rule matched (Route 53 Resolver's SYSTEM rule):
    /// zones and host tables still answer, broader rules do not apply, and
    /// everything else goes to the default group.
    System,
}

/// A rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    /// Its id, unique in the rule set (shown in [`Matched::Rule`](crate::Matched)).
    pub id: String,
    /// Which names.
    pub matcher: Matcher,
    /// What to do.
    pub action: Action,
    /// The views it belongs to; empty means the default view, `"*"` every view.
    pub views: Vec<String>,
    /// Only names that this regex matches at their start (Python's `re.match`,
    /// on the same text as regex rules) are handled by the rule; others
    /// continue to less specific matches (LocalStack's `DNS_LOCAL_NAME_PATTERNS`).
    /// Not allowed on regex rules: put the condition in the regex.
    pub only_names_matching: Option<String>,
}

impl RuleSpec {
    /// A rule in the default view with no filter.
    pub fn new(id: impl Into<String>, matcher: Matcher, action: Action) -> Self {
        Self { id: id.into(), matcher, action, views: Vec::new(), only_names_matching: None }
    }

    /// The same rule in these views.
    pub fn in_views<S: Into<String>>(mut self, views: impl IntoIterator<Item = S>) -> Self {
        self.views = views.into_iter().map(Into::into).collect();
        self
    }
}

/// Names that go upstream even though a broader rule would handle them:
/// an exception beats every rule exactly as specific as it or less (a regex
/// exception beats everything in its view).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExceptionSpec {
    /// Its id, unique among exceptions.
    pub id: String,
    /// Which names.
    pub matcher: Matcher,
    /// The views it belongs to; empty means the default view, `"*"` every view.
    pub views: Vec<String>,
    /// Where the names go; `None` is the view's default group.
    pub group: Option<String>,
}

impl ExceptionSpec {
    /// An exception in the default view, to the default group.
    pub fn new(id: impl Into<String>, matcher: Matcher) -> Self {
        Self { id: id.into(), matcher, views: Vec::new(), group: None }
    }

    /// The same exception in these views.
    pub fn in_views<S: Into<String>>(mut self, views: impl IntoIterator<Item = S>) -> Self {
        self.views = views.into_iter().map(Into::into).collect();
        self
    }
}

/// How a zone answers names it does not hold (Unbound's local-zone types).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZoneMode {
    /// NXDOMAIN or NODATA with the SOA: a private zone shadows the public
    /// namespace (Route 53 private hosted zones, Unbound's `static`).
    #[default]
    Authoritative,
    /// Names the zone does not hold go on to less specific matches and the
    /// default group; names it holds without the type asked get NODATA
    /// (Unbound's `transparent`).
    Transparent,
    /// Every name in the zone gets the apex's data (Unbound's `redirect`).
    Redirect,
    /// Only the records the zone holds answer: a name it lacks, or a type
    /// it lacks at a name it holds, goes on to less specific matches and the
    /// default group, as if the zone were not there (LocalStack's DNS
    /// records, which forward everything they do not hold upstream).
    Overlay,
}

/// A zone and where it is visible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneSpec {
    /// Its id, unique in the rule set (edits name zones by id).
    pub id: String,
    /// The data.
    pub zone: Arc<Zone>,
    /// The views it belongs to; empty means the default view, `"*"` every view.
    pub views: Vec<String>,
    /// How it answers names it does not hold.
    pub mode: ZoneMode,
}

impl ZoneSpec {
    /// An authoritative zone in the default view, with its apex as id.
    pub fn new(zone: Zone) -> Self {
        Self { id: zone.apex().to_string(), zone: Arc::new(zone), views: Vec::new(), mode: ZoneMode::Authoritative }
    }

    /// The same zone in these views.
    pub fn in_views<S: Into<String>>(mut self, views: impl IntoIterator<Item = S>) -> Self {
        self.views = views.into_iter().map(Into::into).collect();
        self
    }
}

/// A host table and where it is visible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostTableSpec {
    /// Its name, unique in the rule set (shown in [`Matched::HostTable`](crate::Matched)).
    pub name: String,
    /// TTL of its answers.
    pub ttl: u32,
    /// The entries; an entry without addresses gets automatic ones.
    pub entries: Vec<HostEntry>,
    /// The views it belongs to; empty means the default view, `"*"` every view.
    pub views: Vec<String>,
}

impl HostTableSpec {
    /// A host table in the default view, TTL 60.
    pub fn new(name: impl Into<String>, entries: Vec<HostEntry>) -> Self {
        Self { name: name.into(), ttl: 60, entries, views: Vec::new() }
    }
}

/// A view: a set of clients that see their own zones, host tables and rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewSpec {
    /// Its name.
    pub name: String,
    /// Clients whose source address is in one of these networks use the
    /// view (the longest prefix over all views wins).
    pub cidrs: Vec<IpNet>,
    /// Queries arriving on these listeners or endpoints use the view,
    /// whatever their source (checked before the CIDRs).
    pub listeners: Vec<String>,
    /// The group for names nothing matches; `None` uses the rule set's.
    pub default_group: Option<String>,
}

impl ViewSpec {
    /// A view with these networks.
    pub fn new(name: impl Into<String>, cidrs: impl IntoIterator<Item = IpNet>) -> Self {
        Self { name: name.into(), cidrs: cidrs.into_iter().collect(), ..Self::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_text_round_trips() {
        for text in ["example.com", "=www.example.com", "*.example.com", "/.*\\.s3\\..*/", ".", "*"] {
            let matcher = Matcher::parse(text).expect("valid");
            assert_eq!(matcher.to_string(), text);
        }
        assert_eq!(
            Matcher::parse("*.Example.COM.").expect("valid"),
            Matcher::Wildcard("example.com".parse().expect("name"))
        );
        assert_eq!(Matcher::parse("=a.b").expect("valid").kind(), "exact");
        assert!(Matcher::parse("a..b").is_err());
        let start = Matcher::Regex { pattern: "abc".into(), anchor: Anchor::Start };
        assert_eq!(start.to_string(), "/abc/^");
    }
}
