//! What can be wrong with an endpoint configuration, and where.

use signpost_rules::Location;

use crate::protocols::{Direction, EndpointProtocol, ProtocolProblem, Protocols};

/// A configuration that cannot be used, a reload that is not allowed, or a
/// server that could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// An entry is inconsistent in itself.
    #[error("{at}: {problem}")]
    Invalid {
        /// Where.
        at: Location,
        /// What is wrong.
        problem: &'static str,
    },
    /// The model is over one of AWS's service quotas.
    #[error("{at}: {count} is over AWS's quota of {limit} (quotas.{quota}; [quotas] enabled = false lifts the quotas)")]
    QuotaExceeded {
        /// Where.
        at: Location,
        /// The quota's field in `[quotas]`.
        quota: &'static str,
        /// Its value.
        limit: u32,
        /// How many the model has.
        count: usize,
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
    /// An endpoint's address does not fit its `endpoint_type`.
    #[error("{at}: endpoint {endpoint:?} is {endpoint_type}: {problem}")]
    AddressFamily {
        /// Where (the address).
        at: Location,
        /// The endpoint.
        endpoint: String,
        /// Its type (`IPV4`, `IPV6`, `DUALSTACK`).
        endpoint_type: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// A FORWARD rule's targets are of a family its outbound endpoint has
    /// no addresses in.
    #[error(
        "{at}: resolver rule {rule:?} has IPv{family} targets, but its outbound endpoint {endpoint:?} is {endpoint_type}; IPv{family} targets need an endpoint of type {needed} or DUALSTACK"
    )]
    TargetFamily {
        /// Where (the targets).
        at: Location,
        /// The rule.
        rule: String,
        /// The targets' family (4 or 6).
        family: u8,
        /// The outbound endpoint.
        endpoint: String,
        /// Its type.
        endpoint_type: &'static str,
        /// The type that has addresses of the targets' family.
        needed: &'static str,
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
    /// A query-log destination that cannot be written.
    #[error("{at}: {problem}")]
    Destination {
        /// Where.
        at: Location,
        /// What is wrong.
        problem: crate::destinations::DestinationProblem,
    },
    /// A certificate for an endpoint could not be made or stored.
    #[error("{}: {message}", path.display())]
    Certificate {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The state directory could not store a change.
    #[error("the state directory could not store the change: {message}")]
    Store {
        /// What went wrong.
        message: String,
    },
    /// What the shared configuration error says, with its location: an
    /// unreadable file, TOML syntax, a bad name or record, or a zone file,
    /// a zone's records or the rule set the rule engine rejects.
    #[error(transparent)]
    Config(#[from] signpost_rules::Error),
    /// The upstream groups (targets, the recursive default, CA files) are wrong.
    #[error("{context}: {source}")]
    Upstream {
        /// Which group: a rule or the recursive default.
        context: String,
        /// Why.
        source: signpost_upstream::Error,
    },
    /// A `[dnssec]` trust anchor (a record, or a line of an anchor file) is wrong.
    #[error(transparent)]
    TrustAnchor(#[from] signpost_dnssec::LocatedError<Location>),
    /// The server could not be built or started (TLS files, binding).
    #[error("{0}")]
    Server(#[from] signpost_server::Error),
    /// Another application that the control plane drives (signpost-redirect
    /// serving the Route 53 API's hosted zones) could not put the model in force.
    #[error("{application}: {source}")]
    Application {
        /// Which application.
        application: &'static str,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
