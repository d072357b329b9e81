//! What `RuleSet::decide` returns, and the client context it takes.

use core::fmt;
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use serde::ser::{Serialize, SerializeStruct, Serializer};
use signpost_wire::{NameBuf, Rcode, RecordBuf};

/// How a query reached the server (and how a listener talks to clients):
/// written `udp`, `tcp`, `dot` and `doh` in configuration, logs and
/// metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Plain DNS over UDP.
    Udp,
    /// Plain DNS over TCP.
    Tcp,
    /// DNS over TLS (RFC 7858).
    Dot,
    /// DNS over HTTPS (RFC 8484).
    Doh,
}

impl Transport {
    /// The name used in configuration, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Dot => "dot",
            Self::Doh => "doh",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asked, and how: the context `RuleSet::decide` chooses a view with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// The client's address.
    pub source: IpAddr,
    /// The address the query arrived on, if known (used by redirect rules
    /// that answer with the arrival address).
    pub local: Option<IpAddr>,
    /// The listener or endpoint id the query arrived on, if any.
    pub listener: Option<Arc<str>>,
    /// The transport.
    pub transport: Transport,
}

impl Client {
    /// A UDP client at `source`, with no arrival address or listener known.
    pub fn udp(source: IpAddr) -> Self {
        Self { source, local: None, listener: None, transport: Transport::Udp }
    }
}

/// What to do with a question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<'r> {
    /// Answer from local data (zones, host tables, redirect rules).
    Local(LocalAnswer<'r>),
    /// Send the query to an upstream group.
    Forward(Forward<'r>),
    /// Refuse, deny or sinkhole the name.
    Block(Block<'r>),
}

impl<'r> Decision<'r> {
    /// Why this decision was made.
    pub fn reason(&self) -> &Reason<'r> {
        match self {
            Self::Local(local) => &local.reason,
            Self::Forward(forward) => &forward.reason,
            Self::Block(block) => &block.reason,
        }
    }
}

/// An answer made from local data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalAnswer<'r> {
    /// NOERROR (an answer, NODATA or a referral) or NXDOMAIN.
    pub rcode: Rcode,
    /// Whether to set the AA bit (false for referrals).
    pub authoritative: bool,
    /// The answer section.
    pub answer: Answer<'r>,
    /// The authority section: the SOA for NXDOMAIN and NODATA (RFC 2308,
    /// with the negative TTL as its TTL), the NS set for referrals.
    pub authority: Cow<'r, [RecordBuf]>,
    /// The additional section: glue for referrals.
    pub additional: Cow<'r, [RecordBuf]>,
    /// Why.
    pub reason: Reason<'r>,
}

impl LocalAnswer<'_> {
    /// Whether this is NODATA: NOERROR with an empty answer section and no referral.
    pub fn is_nodata(&self) -> bool {
        self.rcode == Rcode::NOERROR && self.answer.is_empty() && self.authoritative
    }
}

/// The answer section of a local answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer<'r> {
    /// These records, in order.
    Records(Cow<'r, [RecordBuf]>),
    /// One A or AAAA record whose owner is the question name exactly as asked
    /// (so the server can write it without allocating: this is the hot path
    /// of the redirect proxy).
    AddressOfQuestion {
        /// The address: A for IPv4, AAAA for IPv6.
        address: IpAddr,
        /// Its TTL.
        ttl: u32,
    },
}

impl Answer<'_> {
    /// Whether the section is empty.
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Records(records) => records.is_empty(),
            Self::AddressOfQuestion { .. } => false,
        }
    }

    /// How many records the section holds.
    pub fn len(&self) -> usize {
        match self {
            Self::Records(records) => records.len(),
            Self::AddressOfQuestion { .. } => 1,
        }
    }
}

/// Forward the query to an upstream group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward<'r> {
    /// The group's name.
    pub group: &'r str,
    /// On total failure of the group, try the default group (Unbound's `forward-first`).
    pub forward_first: bool,
    /// Why.
    pub reason: Reason<'r>,
}

/// Block the query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block<'r> {
    /// How.
    pub action: BlockAction,
    /// Why.
    pub reason: Reason<'r>,
}

/// How a blocked name is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockAction {
    /// REFUSED.
    Refused,
    /// SERVFAIL: the policy could not be evaluated (a DNS Firewall that
    /// fails closed), there is no server to ask (every forward target left
    /// out by `do-not-query-localhost`), or the server is responsible for
    /// the name but has no usable data (a secondary zone past its expire
    /// time, RFC 1034 §4.3.5).
    ServFail,
    /// NXDOMAIN.
    NxDomain,
    /// No answer at all: the query is dropped (Unbound's `deny` local
    /// zones and access-control), so the client times out.
    Drop,
    /// NOERROR with these addresses for A and AAAA (NODATA for other types
    /// and for a family with no address).
    Sinkhole {
        /// The address for A queries.
        v4: Option<Ipv4Addr>,
        /// The address for AAAA queries.
        v6: Option<Ipv6Addr>,
    },
}

/// Why a decision was made: the view and what matched in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason<'r> {
    /// The view the client was placed in.
    pub view: &'r str,
    /// What matched.
    pub matched: Matched<'r>,
}

/// What matched the question name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matched<'r> {
    /// A zone, by its apex.
    Zone {
        /// The apex.
        zone: &'r NameBuf,
    },
    /// An entry of a host table.
    HostTable {
        /// The host table's name.
        table: &'r str,
        /// The entry's name.
        name: &'r NameBuf,
    },
    /// A rule.
    Rule {
        /// The rule's id.
        id: &'r str,
        /// The rule's pattern as written: `example.com` (suffix),
        /// `=www.example.com` (exact), `*.example.com` (wildcard) or
        /// `/regex/`.
        pattern: &'r str,
    },
    /// An exception: a name carved out of broader rules, sent upstream.
    Exception {
        /// The exception's id.
        id: &'r str,
        /// Its pattern, written as for rules.
        pattern: &'r str,
    },
    /// A DNS Firewall rule that blocked the name.
    Firewall {
        /// The rule group's id.
        group: &'r str,
        /// The rule's name.
        rule: &'r str,
        /// The domain list's id.
        list: &'r str,
    },
    /// Nothing matched: the view's default.
    Default,
}

impl fmt::Display for Matched<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zone { zone } => write!(f, "zone {zone}"),
            Self::HostTable { table, name } => write!(f, "host table {table} entry {name}"),
            Self::Rule { id, pattern } => write!(f, "rule {id} ({pattern})"),
            Self::Exception { id, pattern } => write!(f, "exception {id} ({pattern})"),
            Self::Firewall { group, rule, list } => write!(f, "firewall rule {rule} of group {group} (list {list})"),
            Self::Default => f.write_str("default"),
        }
    }
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "view {}: {}", self.view, self.matched)
    }
}

impl Serialize for Matched<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Zone { zone } => {
                let mut state = serializer.serialize_struct("Matched", 2)?;
                state.serialize_field("kind", "zone")?;
                state.serialize_field("zone", &zone.to_string())?;
                state.end()
            }
            Self::HostTable { table, name } => {
                let mut state = serializer.serialize_struct("Matched", 3)?;
                state.serialize_field("kind", "host_table")?;
                state.serialize_field("table", table)?;
                state.serialize_field("name", &name.to_string())?;
                state.end()
            }
            Self::Rule { id, pattern } | Self::Exception { id, pattern } => {
                let kind = if matches!(self, Self::Rule { .. }) { "rule" } else { "exception" };
                let mut state = serializer.serialize_struct("Matched", 3)?;
                state.serialize_field("kind", kind)?;
                state.serialize_field("id", id)?;
                state.serialize_field("pattern", pattern)?;
                state.end()
            }
            Self::Firewall { group, rule, list } => {
                let mut state = serializer.serialize_struct("Matched", 4)?;
                state.serialize_field("kind", "firewall")?;
                state.serialize_field("group", group)?;
                state.serialize_field("rule", rule)?;
                state.serialize_field("list", list)?;
                state.end()
            }
            Self::Default => {
                let mut state = serializer.serialize_struct("Matched", 1)?;
                state.serialize_field("kind", "default")?;
                state.end()
            }
        }
    }
}

impl Serialize for Reason<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut state = serializer.serialize_struct("Reason", 2)?;
        state.serialize_field("view", self.view)?;
        state.serialize_field("matched", &self.matched)?;
        state.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_serialize_to_flat_json() {
        let zone: NameBuf = "corp.example.".parse().expect("name");
        let reason = Reason { view: "vpc-a", matched: Matched::Zone { zone: &zone } };
        assert_eq!(
            serde_json::to_string(&reason).expect("json"),
            r#"{"view":"vpc-a","matched":{"kind":"zone","zone":"corp.example."}}"#
        );
        let rule = Reason { view: "default", matched: Matched::Rule { id: "aws", pattern: "amazonaws.com" } };
        assert_eq!(
            serde_json::to_string(&rule).expect("json"),
            r#"{"view":"default","matched":{"kind":"rule","id":"aws","pattern":"amazonaws.com"}}"#
        );
        assert_eq!(rule.to_string(), "view default: rule aws (amazonaws.com)");
        let default = Reason { view: "default", matched: Matched::Default };
        assert_eq!(
            serde_json::to_string(&default).expect("json"),
            r#"{"view":"default","matched":{"kind":"default"}}"#
        );
    }

    #[test]
    fn transport_names_are_lowercase_in_serde() {
        for transport in [Transport::Udp, Transport::Tcp, Transport::Dot, Transport::Doh] {
            let json = serde_json::to_string(&transport).expect("json");
            assert_eq!(json, format!("\"{}\"", transport.as_str()));
            assert_eq!(serde_json::from_str::<Transport>(&json).expect("back"), transport);
        }
        assert_eq!(serde_json::to_string(&Transport::Doh).expect("json"), r#""doh""#);
    }
}
