//! The `check-config` report: per VPC, which domains go where; and its warnings.

use std::fmt::Write as _;

use signpost_wire::NameBuf;

use crate::compile::{Deployment, RouteTarget, VpcRoutes};
use crate::model::{EndpointConfig, RuleType};

impl Deployment {
    /// What the configuration does, VPC by VPC: the VPC resolver, its
    /// endpoints and query logs, then every domain with where its names go
    /// (a private hosted zone, a FORWARD rule through an outbound endpoint
    /// to its targets, a SYSTEM rule, or the recursive default). The most
    /// specific domain that covers a name decides.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for vpc in &self.routes {
            describe_vpc(&mut out, vpc);
            out.push('\n');
        }
        match self.limits {
            Some((per_client, per_address)) => {
                let _ = writeln!(
                    out,
                    "limits (aws_limits): {per_client} packets/s per client address to VPC resolvers; \
                     {per_address} queries/s per inbound endpoint address (UDP, TCP and DoH together); excess is dropped"
                );
            }
            None => out.push_str("limits: off (aws_limits.enabled = false)\n"),
        }
        if !self.unassociated_rules.is_empty() {
            let _ = writeln!(out, "rules associated with no VPC (no effect): {}", self.unassociated_rules.join(", "));
        }
        out
    }
}

impl EndpointConfig {
    /// What `check-config` warns about, each naming the file, line and
    /// rule: a FORWARD rule for `.` or `com` in a VPC without a SYSTEM rule
    /// for `amazonaws.com`, which sends the VPC's queries for AWS service
    /// endpoints to the rule's targets (AWS's advice is to add that SYSTEM
    /// rule beside such a FORWARD rule).
    pub fn warnings(&self) -> Vec<String> {
        let domain = |text: &str| text.trim_end_matches('.').to_ascii_lowercase();
        let mut warnings = Vec::new();
        for (index, rule) in self.resolver_rules.iter().enumerate() {
            let forwarded = domain(&rule.domain);
            if rule.rule_type != RuleType::Forward || !(forwarded.is_empty() || forwarded == "com") {
                continue;
            }
            for association in &rule.vpcs {
                let shielded = self.resolver_rules.iter().any(|system| {
                    system.rule_type == RuleType::System
                        && domain(&system.domain) == "amazonaws.com"
                        && system.has_vpc(&association.vpc)
                });
                if !shielded {
                    let shown = if forwarded.is_empty() { "." } else { "com" };
                    warnings.push(format!(
                        "{}: FORWARD rule {} for {shown:?} sends VPC {}'s amazonaws.com queries (AWS service endpoints) \
                         to its targets; AWS advises a SYSTEM rule for amazonaws.com associated with the VPC",
                        self.locate(&format!("resolver_rules[{index}].domain")),
                        rule.id,
                        association.vpc
                    ));
                }
            }
        }
        warnings
    }
}

fn describe_vpc(out: &mut String, vpc: &VpcRoutes) {
    let cidrs: Vec<String> = vpc.cidrs.iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "VPC {} ({})", vpc.vpc, cidrs.join(", "));
    let _ = writeln!(out, "  VPC resolver        {} (Do53 over UDP and TCP)", vpc.resolver);
    for (id, addresses, protocols) in &vpc.inbound {
        let addresses: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "  inbound endpoint    {id} {protocols} on {}", addresses.join(", "));
    }
    for (id, protocols) in &vpc.outbound {
        let _ = writeln!(out, "  outbound endpoint   {id} {protocols}");
    }
    for (id, destination) in &vpc.query_logs {
        let _ = writeln!(out, "  query logging       {id} -> {destination}");
    }
    let _ = writeln!(out, "  domains (the most specific one covering a name decides):");
    let width = vpc.domains.iter().map(|(name, _)| name.to_string().len()).max().unwrap_or(1).max(6);
    for (index, (domain, target)) in vpc.domains.iter().enumerate() {
        let text = match target {
            RouteTarget::Zone { id, records } => {
                let shadowed = vpc.domains.iter().take(index).any(|(other, other_target)| {
                    other == domain && matches!(other_target, RouteTarget::Forward { .. })
                });
                if shadowed {
                    format!(
                        "private hosted zone {id} ({records} records), not used: the FORWARD rule for the same domain wins"
                    )
                } else {
                    format!("private hosted zone {id} ({records} records)")
                }
            }
            RouteTarget::Forward { rule, endpoint, targets } => {
                format!("FORWARD rule {rule} -> outbound endpoint {endpoint} -> {}", targets.join(", "))
            }
            RouteTarget::System { rule } => match enclosing_zone(vpc, domain) {
                Some(zone) => format!("SYSTEM rule {rule} -> VPC resolver -> private hosted zone {zone}"),
                None => format!("SYSTEM rule {rule} -> VPC resolver -> recursive default"),
            },
            RouteTarget::Recursive { servers } => format!("recursive default -> {}", servers.join(", ")),
        };
        let _ = writeln!(out, "    {:<width$}  {text}", domain.to_string());
    }
}

/// The deepest zone of the VPC at or above `domain`.
fn enclosing_zone<'a>(vpc: &'a VpcRoutes, domain: &NameBuf) -> Option<&'a str> {
    vpc.domains
        .iter()
        .filter(|(apex, _)| domain.is_subdomain_of(apex))
        .filter_map(|(apex, target)| match target {
            RouteTarget::Zone { id, .. } => Some((apex.label_count(), id.as_str())),
            _ => None,
        })
        .max_by_key(|(depth, _)| *depth)
        .map(|(_, id)| id)
}
