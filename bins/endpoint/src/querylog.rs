//! Route 53 Resolver's query-log format: the server's neutral
//! [`QueryRecord`] written with Route 53's field names, plus its
//! `version`, `account_id`, `region`, `vpc_id` and `srcids`.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use signpost_rules::{DEFAULT_VIEW, FirewallAction, RuleSet};
use signpost_server::querylog::{QueryLogFormat, QueryRecord, rfc3339};
use signpost_server::{Trace, Transport};

use crate::compile::{ListenerRole, PlannedListener};

/// The AWS account and region a query log's lines name: Route 53 Resolver
/// writes `account_id` and `region` in every record, ahead of the rest.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct LogAccount {
    /// The account id (twelve digits in AWS).
    pub account_id: String,
    /// The region, e.g. `us-east-1`.
    pub region: String,
}

/// Writes query-log lines as Route 53 Resolver does. Installed on the
/// server with
/// [`ServerBuilder::query_log_format`](signpost_server::ServerBuilder::query_log_format).
#[derive(Debug)]
pub struct Route53Format {
    account: LogAccount,
    /// What each listener stands for, by id: its `srcids`.
    roles: RwLock<HashMap<String, ListenerRole>>,
    /// The rules in force: which DNS Firewall rule a logged query met.
    rules: RwLock<Option<Arc<RuleSet>>>,
}

impl Route53Format {
    /// Lines naming `account`, for a server running `listeners`.
    pub fn new(account: LogAccount, listeners: &[PlannedListener]) -> Self {
        let format = Self { account, roles: RwLock::new(HashMap::new()), rules: RwLock::new(None) };
        format.set_listeners(listeners);
        format
    }

    /// The listeners whose `srcids` lines carry (a listener not among them
    /// is named as `{"listener": id}`).
    pub fn set_listeners(&self, listeners: &[PlannedListener]) {
        if let Ok(mut roles) = self.roles.write() {
            *roles = listeners.iter().map(|listener| (listener.id.clone(), listener.role.clone())).collect();
        }
    }

    /// The rules in force, whose DNS Firewall the `firewall_*` fields
    /// name. A query logged just after a change is matched against the new
    /// rules: the log is written after the answer.
    pub fn set_rules(&self, rules: Arc<RuleSet>) {
        if let Ok(mut slot) = self.rules.write() {
            *slot = Some(rules);
        }
    }

    /// The DNS Firewall rule an ALERT or BLOCK matched: group, action, list.
    /// A block found on the answer's CNAME chain (INSPECT_REDIRECTION_DOMAIN)
    /// is named as a rule the name asked matched.
    fn firewall(&self, record: &QueryRecord) -> Option<(String, &'static str, String)> {
        if let Some(chain) = &record.trace.firewall_chain {
            return Some((chain.group.clone(), "BLOCK", chain.list.clone()));
        }
        let rules = self.rules.read().ok()?.clone()?;
        let name: signpost_wire::NameBuf = record.query_name.parse().ok()?;
        let hit = rules.firewall_match(&record.view, &name, record.query_type)?;
        if *hit.action == FirewallAction::Allow {
            return None;
        }
        Some((hit.group.to_string(), hit.action.as_str(), hit.list.to_string()))
    }

    /// `srcids`: the VPC client's own address for a VPC resolver, the
    /// endpoint id for an inbound endpoint.
    fn srcids(&self, record: &QueryRecord) -> BTreeMap<&'static str, String> {
        let role = self.roles.read().ok().and_then(|roles| roles.get(&*record.listener).cloned());
        match role {
            Some(ListenerRole::VpcResolver { .. }) => BTreeMap::from([("instance", record.client.ip().to_string())]),
            Some(ListenerRole::InboundEndpoint { endpoint, .. }) => BTreeMap::from([("resolver_endpoint", endpoint)]),
            None => BTreeMap::from([("listener", record.listener.to_string())]),
        }
    }
}

/// One answer as Route 53 writes it.
#[derive(Serialize)]
struct Answer {
    #[serde(rename = "Rdata")]
    rdata: String,
    #[serde(rename = "Type")]
    rtype: String,
    #[serde(rename = "Class")]
    class: String,
}

/// One line, fields in Route 53's order.
#[derive(Serialize)]
struct Line<'a> {
    account_id: &'a str,
    region: &'a str,
    version: &'static str,
    /// The view, which is a VPC (none for the default view).
    #[serde(skip_serializing_if = "Option::is_none")]
    vpc_id: Option<&'a str>,
    query_timestamp: String,
    query_name: &'a str,
    query_type: String,
    query_class: String,
    rcode: String,
    answers: Vec<Answer>,
    srcaddr: String,
    srcport: String,
    transport: &'static str,
    srcids: BTreeMap<&'static str, String>,
    /// DNS Firewall: the rule group, action and domain list of the ALERT
    /// or BLOCK rule the query met.
    #[serde(skip_serializing_if = "Option::is_none")]
    firewall_rule_group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    firewall_rule_action: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    firewall_domain_list_id: Option<String>,
    signpost: &'a Trace,
}

impl QueryLogFormat for Route53Format {
    fn write_line(&self, record: &QueryRecord, out: &mut dyn io::Write) -> io::Result<()> {
        let (group, action, list) = match self.firewall(record) {
            Some((group, action, list)) => (Some(group), Some(action), Some(list)),
            None => (None, None, None),
        };
        let line = Line {
            account_id: &self.account.account_id,
            region: &self.account.region,
            version: "1.100000",
            vpc_id: Some(record.view.as_str()).filter(|view| !view.is_empty() && *view != DEFAULT_VIEW),
            query_timestamp: rfc3339(record.timestamp),
            query_name: &record.query_name,
            query_type: record.query_type.to_string(),
            query_class: record.query_class.to_string(),
            rcode: record.rcode.to_string(),
            answers: record
                .answers
                .iter()
                .map(|answer| Answer {
                    rdata: answer.rdata.clone(),
                    rtype: answer.rtype.to_string(),
                    class: answer.class.to_string(),
                })
                .collect(),
            srcaddr: record.client.ip().to_string(),
            srcport: record.client.port().to_string(),
            transport: match record.transport {
                Transport::Udp => "UDP",
                Transport::Tcp => "TCP",
                Transport::Dot => "DoT",
                Transport::Doh => "DoH",
            },
            srcids: self.srcids(record),
            firewall_rule_group_id: group,
            firewall_rule_action: action,
            firewall_domain_list_id: list,
            signpost: &record.trace,
        };
        serde_json::to_writer(out, &line).map_err(io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use signpost_server::querylog::LoggedAnswer;
    use signpost_wire::{Class, Rcode, RecordType};

    use super::*;
    use crate::protocols::EndpointProtocol;

    fn planned(id: &str, role: ListenerRole) -> PlannedListener {
        PlannedListener { id: id.into(), role, protocol: EndpointProtocol::Do53, transport: Transport::Udp }
    }

    fn record(listener: &str, view: &str, transport: Transport) -> QueryRecord {
        QueryRecord {
            timestamp: UNIX_EPOCH + Duration::from_secs(1_735_732_800),
            client: "127.0.1.1:41871".parse().unwrap(),
            transport,
            listener: Arc::from(listener),
            view: view.into(),
            query_name: "www.corp.example.".into(),
            query_type: RecordType::A,
            query_class: Class::IN,
            rcode: Rcode::NOERROR,
            answers: vec![LoggedAnswer {
                name: "www.corp.example.".into(),
                ttl: 300,
                rtype: RecordType::A,
                class: Class::IN,
                rdata: "10.1.0.10".into(),
            }],
            trace: Trace {
                view: view.into(),
                matched: "zone corp.example".into(),
                decision: "local".into(),
                rcode: "NOERROR".into(),
                ..Trace::default()
            },
        }
    }

    fn line(format: &Route53Format, record: &QueryRecord) -> String {
        let mut out = Vec::new();
        format.write_line(record, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Byte for byte what the endpoint wrote before the format moved here
    /// from the server.
    #[test]
    fn lines_have_route53_fields_in_route53_order() {
        let account = LogAccount { account_id: "123456789012".into(), region: "eu-west-1".into() };
        let format = Route53Format::new(
            account,
            &[
                planned("vpc-a/resolver/udp", ListenerRole::VpcResolver { vpc: "vpc-a".into() }),
                planned(
                    "rslvr-in-a/127.0.1.10/doh",
                    ListenerRole::InboundEndpoint { endpoint: "rslvr-in-a".into(), vpc: "vpc-a".into() },
                ),
            ],
        );
        assert_eq!(
            line(&format, &record("vpc-a/resolver/udp", "vpc-a", Transport::Udp)),
            r#"{"account_id":"123456789012","region":"eu-west-1","version":"1.100000","vpc_id":"vpc-a","query_timestamp":"2025-01-01T12:00:00Z","query_name":"www.corp.example.","query_type":"A","query_class":"IN","rcode":"NOERROR","answers":[{"Rdata":"10.1.0.10","Type":"A","Class":"IN"}],"srcaddr":"127.0.1.1","srcport":"41871","transport":"UDP","srcids":{"instance":"127.0.1.1"},"signpost":{"view":"vpc-a","matched":"zone corp.example","decision":"local","rcode":"NOERROR"}}"#
        );
        let inbound = line(&format, &record("rslvr-in-a/127.0.1.10/doh", "vpc-a", Transport::Doh));
        assert!(inbound.contains(r#""transport":"DoH","srcids":{"resolver_endpoint":"rslvr-in-a"}"#), "{inbound}");
        // The default view has no VPC; a listener the format does not know
        // is named by its id.
        let other = line(&format, &record("extra", DEFAULT_VIEW, Transport::Tcp));
        assert!(!other.contains("vpc_id"), "{other}");
        assert!(other.contains(r#""transport":"TCP","srcids":{"listener":"extra"}"#), "{other}");
    }

    #[test]
    fn a_block_on_the_cname_chain_names_its_rule_as_a_direct_match_does() {
        let account = LogAccount { account_id: "123456789012".into(), region: "eu-west-1".into() };
        let format = Route53Format::new(account, &[]);
        let mut blocked = record("vpc-a/resolver/udp", "vpc-a", Transport::Udp);
        blocked.rcode = Rcode::NXDOMAIN;
        blocked.answers.clear();
        blocked.trace.firewall_chain = Some(signpost_server::TraceFirewall {
            group: "rslvr-frg-1".into(),
            rule: "block-chain".into(),
            list: "rslvr-fdl-1".into(),
            action: "BLOCK".into(),
        });
        let text = line(&format, &blocked);
        assert!(
            text.contains(
                r#""firewall_rule_group_id":"rslvr-frg-1","firewall_rule_action":"BLOCK","firewall_domain_list_id":"rslvr-fdl-1""#
            ),
            "{text}"
        );
    }
}
