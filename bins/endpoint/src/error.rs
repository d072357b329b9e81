//! What can be wrong with an endpoint configuration, and where.

use std::io;
use std::path::PathBuf;

use signpost_rules::Location;

use crate::protocols::{Direction, EndpointProtocol, ProtocolProblem, Protocols};

/// A configuration that cannot be used, a reload that is not allowed, or a
/// server that could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// TOML syntax, an unknown field or a value of the wrong type.
    #[error("{at}: {message}")]
    Syntax {
        /// Where.
        at: Location,
        /// What the TOML reader said.
        message: String,
    },
    /// An entry is inconsistent in itself.
    #[error("{at}: {problem}")]
    Invalid {
        /// Where.
        at: Location,
        /// What is wrong.
        problem: &'static str,
    },
    /// A domain or zone name is not a valid DNS name.
    #[error("{at}: invalid domain name {text:?}: {source}")]
    InvalidName {
        /// Where.
        at: Location,
        /// The text given.
        text: String,
        /// Why.
        source: signpost_wire::Error,
    },
    /// An inline zone record does not parse.
    #[error("{at}: invalid record {text:?}: {source}")]
    InvalidRecord {
        /// Where.
        at: Location,
        /// The text given.
        text: String,
        /// Why.
        source: signpost_wire::Error,
    },
    /// A zone's records break a zone rule (a CNAME beside other data, a
    /// record outside the zone, two SOAs...).
    #[error("{at}: {}", without_location(.source))]
    InvalidZone {
        /// The zone's entry.
        at: Location,
        /// What is wrong.
        source: signpost_rules::Error,
    },
    /// An id is used twice.
    #[error("{at}: duplicate {what} {id:?}")]
    Duplicate {
        /// Where (the second use).
        at: Location,
        /// What kind of thing (`VPC`, `resolver rule`...).
        what: &'static str,
        /// The id.
        id: String,
    },
    /// A reference to something that does not exist.
    #[error("{at}: no {what} with id {id:?}")]
    UnknownReference {
        /// Where.
        at: Location,
        /// What kind of thing was referred to.
        what: &'static str,
        /// The id given.
        id: String,
    },
    /// Two VPCs' CIDR blocks overlap, so a client address cannot say which VPC it is in.
    #[error("{at}: CIDR {cidr} of VPC {vpc:?} overlaps {other_cidr} of VPC {other_vpc:?}")]
    OverlappingCidrs {
        /// Where.
        at: Location,
        /// The VPC.
        vpc: String,
        /// Its block.
        cidr: ipnet::IpNet,
        /// The other VPC.
        other_vpc: String,
        /// Its block.
        other_cidr: ipnet::IpNet,
    },
    /// Two rules, or two zones, for one domain associated with one VPC.
    #[error("{at}: {what} {id:?} and {other:?} both have domain {domain} and are associated with VPC {vpc:?}")]
    Conflict {
        /// Where (the second).
        at: Location,
        /// `resolver rule` or `private hosted zone`.
        what: &'static str,
        /// The second.
        id: String,
        /// The first.
        other: String,
        /// The domain.
        domain: String,
        /// The VPC.
        vpc: String,
    },
    /// A set of endpoint protocols the service does not allow.
    #[error("{at}: {direction} endpoint {endpoint:?}: {problem}")]
    Protocols {
        /// Where.
        at: Location,
        /// Inbound or outbound.
        direction: Direction,
        /// The endpoint.
        endpoint: String,
        /// What is wrong.
        problem: ProtocolProblem,
    },
    /// A rule's target uses a protocol its outbound endpoint does not offer.
    #[error(
        "{at}: resolver rule {rule:?}: target {target} uses {protocol}, but outbound endpoint {endpoint:?} offers {offered}"
    )]
    TargetProtocol {
        /// Where.
        at: Location,
        /// The rule.
        rule: String,
        /// The target.
        target: String,
        /// Its protocol.
        protocol: EndpointProtocol,
        /// The outbound endpoint.
        endpoint: String,
        /// What the endpoint offers.
        offered: Protocols,
    },
    /// A rule's targets mix IPv4 and IPv6, which the service rejects.
    #[error("{at}: resolver rule {rule:?}: the targets of one rule must be all IPv4 or all IPv6")]
    MixedTargetFamilies {
        /// Where.
        at: Location,
        /// The rule.
        rule: String,
    },
    /// An inbound endpoint with fewer than two addresses.
    #[error(
        "{at}: inbound endpoint {endpoint:?} has {count} address(es); give two or more (one per availability zone)"
    )]
    TooFewAddresses {
        /// Where.
        at: Location,
        /// The endpoint.
        endpoint: String,
        /// How many were given.
        count: usize,
    },
    /// An endpoint's protocols change on reload in a way the service forbids.
    #[error(
        "{direction} endpoint {endpoint:?}: its protocols cannot change from {from} straight to {to}; the transition must pass through {through} (change to {through}, reload, then to {to})"
    )]
    Transition {
        /// Inbound or outbound.
        direction: Direction,
        /// The endpoint.
        endpoint: String,
        /// The protocols in force.
        from: Protocols,
        /// The protocols asked for.
        to: Protocols,
        /// The set to go through.
        through: Protocols,
    },
    /// An endpoint moved to another VPC on reload.
    #[error(
        "{direction} endpoint {endpoint:?}: its VPC cannot change ({from:?} to {to:?}); create an endpoint with a new id instead"
    )]
    EndpointMoved {
        /// Inbound or outbound.
        direction: Direction,
        /// The endpoint.
        endpoint: String,
        /// The VPC in force.
        from: String,
        /// The VPC asked for.
        to: String,
    },
    /// A zone file, a zone's records or the rule set are wrong.
    #[error("{0}")]
    Rules(#[from] signpost_rules::Error),
    /// The upstream groups (targets, the recursive default, CA files) are wrong.
    #[error("{context}: {source}")]
    Upstream {
        /// Which group: a rule or the recursive default.
        context: String,
        /// Why.
        source: signpost_upstream::Error,
    },
    /// The server could not be built or started (TLS files, binding).
    #[error("{0}")]
    Server(#[from] signpost_server::Error),
}

/// A rules error's message without its empty location prefix.
fn without_location(error: &signpost_rules::Error) -> String {
    let text = error.to_string();
    match text.strip_prefix(&format!("{}: ", error.location())) {
        Some(rest) => rest.to_string(),
        None => text,
    }
}
