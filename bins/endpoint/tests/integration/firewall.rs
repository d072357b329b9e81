//! DNS Firewall from the TOML model: domain lists with AWS's wildcards,
//! each block response, ALLOW beating a later BLOCK, association order,
//! qtype filters, VPCs without the group untouched, and the firewall in
//! front of private zones and inbound endpoints.

use std::net::Ipv4Addr;

use signpost_server::Transport;
use signpost_wire::{Rcode, RecordType};

use crate::support::*;

/// Two rule groups for vpc-a: `rslvr-frg-early` (priority 100) allows
/// `ok.bad.example`, `rslvr-frg-late` (priority 200) blocks the rest of
/// the lists with each response; vpc-b has no firewall.
pub(crate) const FIREWALL: &str = r#"
private_hosted_zones = [
    { name = "corp.example", vpcs = ["vpc-a", "vpc-b"], records = ["www A 10.1.0.10", "secret A 10.1.0.66", "walled A 10.1.0.99"] },
]
firewall_domain_lists = [
    { id = "rslvr-fdl-allowed", domains = ["ok.bad.example"] },
    { id = "rslvr-fdl-nx", domains = ["*.bad.example", "secret.corp.example"] },
    { id = "rslvr-fdl-nodata", domains = ["nodata.example", "*.nodata.example"] },
    { id = "rslvr-fdl-override", domains = ["*.redirected.example"] },
    { id = "rslvr-fdl-mx", domains = ["*"] },
    { id = "rslvr-fdl-watched", file = "watched.txt" },
]

[[firewall_rule_groups]]
id = "rslvr-frg-late"
rules = [
    { name = "nx", priority = 10, domain_list = "rslvr-fdl-nx", action = "BLOCK", block_response = "NXDOMAIN" },
    { name = "nodata", priority = 20, domain_list = "rslvr-fdl-nodata", action = "BLOCK", block_response = "NODATA" },
    { name = "override", priority = 30, domain_list = "rslvr-fdl-override", action = "BLOCK", block_response = "OVERRIDE", block_override_domain = "walled.corp.example.", block_override_dns_type = "CNAME", block_override_ttl = 30 },
    { name = "no-mx", priority = 40, domain_list = "rslvr-fdl-mx", action = "BLOCK", block_response = "NXDOMAIN", qtype = "MX" },
]

[[firewall_rule_groups]]
id = "rslvr-frg-early"
rules = [
    { name = "allow", priority = 5, domain_list = "rslvr-fdl-allowed", action = "ALLOW" },
    { name = "watch", priority = 6, domain_list = "rslvr-fdl-watched", action = "ALERT" },
]

[[firewall_associations]]
rule_group = "rslvr-frg-late"
vpc = "vpc-a"
priority = 200

[[firewall_associations]]
rule_group = "rslvr-frg-early"
vpc = "vpc-a"
priority = 100
"#;

#[tokio::test]
async fn a_vpcs_firewall_blocks_with_each_response_and_allow_wins_when_evaluated_first() {
    let Basics { dir, certificate, recursive } = basics().await;
    std::fs::write(dir.path().join("watched.txt"), "# imported list\n*.watched.example\n").unwrap();
    let text =
        two_vpcs(recursive.address(), &format!("{FIREWALL}{}", inbound_endpoint(r#"["Do53"]"#, Some(&certificate))));
    let endpoint = start(dir.path(), &text).await;
    let in_a = vpc_resolver(&endpoint, "vpc-a");
    let in_b = vpc_resolver(&endpoint, "vpc-b");
    let ask_a = |name: &'static str, qtype| ask_from(VPC_A_CLIENT, in_a, name, qtype);

    // NXDOMAIN for a wildcard entry, and for a name of a private zone.
    let (rcode, answers) = ask_a("www.bad.example", RecordType::A).await.unwrap();
    assert_eq!((rcode, answers.len()), (Rcode::NXDOMAIN, 0));
    assert_eq!(ask_a("secret.corp.example", RecordType::A).await.unwrap().0, Rcode::NXDOMAIN);
    // `*.bad.example` does not cover bad.example itself.
    assert_eq!(
        ask_a("bad.example", RecordType::A).await.unwrap().1,
        [format!("bad.example. 300 IN A {RECURSIVE_ANSWER}")]
    );
    // NODATA.
    let (rcode, answers) = ask_a("a.nodata.example", RecordType::A).await.unwrap();
    assert_eq!((rcode, answers.len()), (Rcode::NOERROR, 0));
    // OVERRIDE: a CNAME to the override domain, followed through the VPC's zone.
    let (rcode, answers) = ask_a("x.redirected.example", RecordType::A).await.unwrap();
    assert_eq!(rcode, Rcode::NOERROR);
    assert_eq!(
        answers,
        [
            "x.redirected.example. 30 IN CNAME walled.corp.example.".to_string(),
            "walled.corp.example. 300 IN A 10.1.0.99".to_string(),
        ]
    );
    // ALLOW in the group of priority 100 beats the BLOCK of the group of priority 200.
    let allowed = resolver_from(Transport::Udp, in_a, VPC_A_CLIENT);
    assert_eq!(lookup_v4(&allowed, "ok.bad.example.").await, [RECURSIVE_ANSWER]);
    // ALERT (from the imported file) lets the query through.
    assert_eq!(lookup_v4(&allowed, "a.watched.example.").await, [RECURSIVE_ANSWER]);
    // The qtype filter: MX is blocked everywhere, A is not.
    assert_eq!(ask_a("www.corp.example", RecordType::MX).await.unwrap().0, Rcode::NXDOMAIN);
    assert_eq!(lookup_v4(&allowed, "www.corp.example.").await, [Ipv4Addr::new(10, 1, 0, 10)]);
    // Blocked names never reached the recursive default.
    assert_eq!(recursive.names(), ["bad.example.", "ok.bad.example.", "a.watched.example."]);

    // vpc-b has no rule group: the same names resolve.
    let (rcode, _) = ask_from(VPC_B_CLIENT, in_b, "secret.corp.example", RecordType::A).await.unwrap();
    assert_eq!(rcode, Rcode::NOERROR);
    // An inbound endpoint of vpc-a resolves as vpc-a: the firewall applies.
    let inbound = inbound(&endpoint, "rslvr-in-a", "vpc-a", Transport::Udp)[0];
    assert_eq!(ask_from(ONPREM_CLIENT, inbound, "www.bad.example", RecordType::A).await.unwrap().0, Rcode::NXDOMAIN);
    endpoint.shutdown().await;
}

#[test]
fn firewall_mistakes_name_their_field() {
    let dir = TempDir::new();
    let bad = |extra: &str| {
        let text = two_vpcs(
            "127.0.0.1:53".parse().unwrap(),
            &format!("{}{extra}", FIREWALL.replace("file = \"watched.txt\"", "domains = [\"w.example\"]")),
        );
        config(dir.path(), &text).compile().err().map(|error| error.to_string()).unwrap_or_default()
    };
    let message = bad("[[firewall_associations]]\nrule_group = \"rslvr-frg-late\"\nvpc = \"vpc-b\"\npriority = 99\n");
    assert!(message.contains("between 100 and 9900"), "{message}");
    assert!(message.contains("firewall_associations[2].priority"), "{message}");
    let message = bad("[[firewall_associations]]\nrule_group = \"rslvr-frg-late\"\nvpc = \"vpc-a\"\npriority = 300\n");
    assert!(message.contains("rule group associated with the VPC"), "{message}");
    let message = bad(
        "[[firewall_rule_groups]]\nid = \"g\"\nrules = [{ name = \"r\", priority = 1, domain_list = \"nope\", action = \"ALLOW\" }]\n",
    );
    assert!(message.contains("no firewall domain list with id \"nope\""), "{message}");
    let text = two_vpcs("127.0.0.1:53".parse().unwrap(), &FIREWALL.replace("*.nodata.example", "a.*.example"));
    let message = config(dir.path(), &text).compile().err().map(|error| error.to_string()).unwrap_or_default();
    assert!(message.contains("firewall_domain_lists[2].domains[1]") && message.contains("asterisk"), "{message}");
    let message = bad(
        "[[firewall_rule_groups]]\nid = \"g\"\nrules = [{ name = \"r\", priority = 1, domain_list = \"rslvr-fdl-nx\", action = \"BLOCK\" }]\n",
    );
    assert!(message.contains("needs a block_response"), "{message}");
}

/// The rcode and answers of `name` (of type `qtype`) asked from `client` of the VPC whose resolver is `resolver`.
async fn asked(
    resolver: std::net::SocketAddr,
    client: std::net::IpAddr,
    name: &str,
    qtype: RecordType,
) -> (Rcode, Vec<String>) {
    ask_from(client, resolver, name, qtype).await.unwrap()
}

#[tokio::test]
async fn the_firewall_api_changes_what_a_vpc_resolves_at_once() {
    use serde_json::json;

    let harness = crate::api::start(|_| {}).await;
    let aws = &harness.aws;
    let a = crate::api::vpc(aws, "127.0.7.0/24").await;
    let client: std::net::IpAddr = "127.0.7.1".parse().unwrap();
    let list = aws
        .resolver_ok("CreateFirewallDomainList", json!({ "CreatorRequestId": "l1", "Name": "bad" }))
        .await["FirewallDomainList"]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let update = |operation: &'static str, domains: serde_json::Value| json!({ "FirewallDomainListId": list, "Operation": operation, "Domains": domains });
    let updated =
        aws.resolver_ok("UpdateFirewallDomains", update("ADD", json!(["*.bad.example", "evil.example"]))).await;
    assert_eq!(updated["Status"], "UPDATING");
    let group = aws
        .resolver_ok("CreateFirewallRuleGroup", json!({ "CreatorRequestId": "g1", "Name": "block-bad" }))
        .await["FirewallRuleGroup"]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let rule = aws
        .resolver_ok(
            "CreateFirewallRule",
            json!({ "CreatorRequestId": "r1", "FirewallRuleGroupId": group, "FirewallDomainListId": list, "Priority": 10, "Action": "BLOCK", "BlockResponse": "NXDOMAIN", "Name": "nx" }),
        )
        .await;
    assert_eq!(rule["FirewallRule"]["FirewallDomainRedirectionAction"], "INSPECT_REDIRECTION_DOMAIN");
    // Not associated yet: the names resolve.
    assert_eq!(asked(a.resolver, client, "www.bad.example", RecordType::A).await.0, Rcode::NOERROR);
    let association = aws
        .resolver_ok(
            "AssociateFirewallRuleGroup",
            json!({ "CreatorRequestId": "a1", "FirewallRuleGroupId": group, "VpcId": a.id, "Priority": 101, "Name": "assoc", "MutationProtection": "ENABLED" }),
        )
        .await;
    let association_id = association["FirewallRuleGroupAssociation"]["Id"].as_str().unwrap().to_string();
    assert_eq!(asked(a.resolver, client, "www.bad.example", RecordType::A).await.0, Rcode::NXDOMAIN);
    assert_eq!(asked(a.resolver, client, "evil.example", RecordType::A).await.0, Rcode::NXDOMAIN);
    // A list change takes effect at once (the cache is not in the way).
    aws.resolver_ok("UpdateFirewallDomains", update("REMOVE", json!(["evil.example."]))).await;
    assert_eq!(asked(a.resolver, client, "evil.example", RecordType::A).await.0, Rcode::NOERROR);
    let domains = aws.resolver_ok("ListFirewallDomains", json!({ "FirewallDomainListId": list })).await;
    assert_eq!(domains["Domains"], json!(["*.bad.example"]));
    // The rule becomes OVERRIDE.
    aws.resolver_ok(
        "UpdateFirewallRule",
        json!({ "FirewallRuleGroupId": group, "FirewallDomainListId": list, "BlockResponse": "OVERRIDE", "BlockOverrideDomain": "walled.example.", "BlockOverrideDnsType": "CNAME", "BlockOverrideTtl": 42 }),
    )
    .await;
    let (rcode, answers) = asked(a.resolver, client, "www.bad.example", RecordType::A).await;
    assert_eq!(rcode, Rcode::NOERROR);
    assert_eq!(answers[0], "www.bad.example. 42 IN CNAME walled.example.");
    // An ALLOW group of a lower priority number wins.
    let allow_list = aws
        .resolver_ok("CreateFirewallDomainList", json!({ "CreatorRequestId": "l2", "Name": "ok" }))
        .await["FirewallDomainList"]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let file = harness.dir.join("ok.txt");
    std::fs::write(&file, "ok.bad.example\n").unwrap();
    aws.resolver_ok(
        "ImportFirewallDomains",
        json!({ "FirewallDomainListId": allow_list, "Operation": "REPLACE", "DomainFileUrl": format!("file://{}", file.display()) }),
    )
    .await;
    let allow_group = aws
        .resolver_ok("CreateFirewallRuleGroup", json!({ "CreatorRequestId": "g2", "Name": "allow-ok" }))
        .await["FirewallRuleGroup"]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    aws.resolver_ok(
        "CreateFirewallRule",
        json!({ "CreatorRequestId": "r2", "FirewallRuleGroupId": allow_group, "FirewallDomainListId": allow_list, "Priority": 1, "Action": "ALLOW", "Name": "ok" }),
    )
    .await;
    aws.resolver_ok(
        "AssociateFirewallRuleGroup",
        json!({ "CreatorRequestId": "a2", "FirewallRuleGroupId": allow_group, "VpcId": a.id, "Priority": 100, "Name": "first" }),
    )
    .await;
    assert_eq!(
        asked(a.resolver, client, "ok.bad.example", RecordType::A).await.1,
        [format!("ok.bad.example. 300 IN A {RECURSIVE_ANSWER}")]
    );

    // The service's errors.
    let (code, message) = aws
        .resolver_error(
            "AssociateFirewallRuleGroup",
            json!({ "CreatorRequestId": "a3", "FirewallRuleGroupId": allow_group, "VpcId": a.id, "Priority": 99, "Name": "low" }),
        )
        .await;
    assert_eq!(code, "ValidationException", "{message}");
    let (code, _) = aws
        .resolver_error(
            "AssociateFirewallRuleGroup",
            json!({ "CreatorRequestId": "a4", "FirewallRuleGroupId": allow_group, "VpcId": a.id, "Priority": 101, "Name": "same" }),
        )
        .await;
    assert_eq!(code, "ConflictException");
    let (code, message) = aws
        .resolver_error("DisassociateFirewallRuleGroup", json!({ "FirewallRuleGroupAssociationId": association_id }))
        .await;
    assert_eq!(code, "ValidationException");
    assert!(message.contains("MutationProtection"), "{message}");
    let (code, _) = aws.resolver_error("DeleteFirewallDomainList", json!({ "FirewallDomainListId": list })).await;
    assert_eq!(code, "ConflictException");
    let (code, _) = aws.resolver_error("DeleteFirewallRuleGroup", json!({ "FirewallRuleGroupId": group })).await;
    assert_eq!(code, "ConflictException");
    let (code, _) = aws
        .resolver_error(
            "CreateFirewallRule",
            json!({ "CreatorRequestId": "r3", "FirewallRuleGroupId": group, "FirewallDomainListId": allow_list, "Priority": 20, "Action": "BLOCK", "Name": "noresponse" }),
        )
        .await;
    assert_eq!(code, "ValidationException");
    let (code, _) =
        aws.resolver_error("GetFirewallRuleGroup", json!({ "FirewallRuleGroupId": "rslvr-frg-nope" })).await;
    assert_eq!(code, "ResourceNotFoundException");

    // Unprotect, disassociate: the block is gone.
    aws.resolver_ok(
        "UpdateFirewallRuleGroupAssociation",
        json!({ "FirewallRuleGroupAssociationId": association_id, "MutationProtection": "DISABLED" }),
    )
    .await;
    let gone = aws
        .resolver_ok("DisassociateFirewallRuleGroup", json!({ "FirewallRuleGroupAssociationId": association_id }))
        .await;
    assert_eq!(gone["FirewallRuleGroupAssociation"]["Status"], "DELETING");
    assert_eq!(asked(a.resolver, client, "www.bad.example", RecordType::A).await.0, Rcode::NOERROR);

    // Firewall configs, lists and the model as TOML.
    let config =
        aws.resolver_ok("UpdateFirewallConfig", json!({ "ResourceId": a.id, "FirewallFailOpen": "ENABLED" })).await;
    assert_eq!(config["FirewallConfig"]["FirewallFailOpen"], "ENABLED");
    let configs = aws.resolver_ok("ListFirewallConfigs", json!({})).await;
    assert_eq!(configs["FirewallConfigs"][0]["ResourceId"], a.id.as_str());
    let rules = aws.resolver_ok("ListFirewallRules", json!({ "FirewallRuleGroupId": group })).await;
    assert_eq!(rules["FirewallRules"][0]["BlockOverrideTtl"], 42);
    let groups = aws.resolver_ok("ListFirewallRuleGroups", json!({})).await;
    assert_eq!(groups["FirewallRuleGroups"].as_array().unwrap().len(), 2);
    let exported = harness.service.control().snapshot();
    assert_eq!(exported.firewall_domain_lists.len(), 2);
    assert_eq!(exported.firewall_associations.len(), 1);

    // The List calls' summaries and filters; once nothing uses them, the
    // first rule group and then its domain list can go.
    let lists = aws.resolver_ok("ListFirewallDomainLists", json!({})).await;
    let lists = lists["FirewallDomainLists"].as_array().unwrap();
    assert_eq!(lists.len(), 2);
    assert!(
        lists
            .iter()
            .all(|item| item["Arn"].as_str().is_some_and(|arn| arn.contains(":firewall-domain-list/rslvr-fdl-"))),
        "{lists:?}"
    );
    assert_eq!(groups["FirewallRuleGroups"][0]["ShareStatus"], "NOT_SHARED");
    let none = aws.resolver_ok("ListFirewallRuleGroupAssociations", json!({ "VpcId": "vpc-nope" })).await;
    assert_eq!(none["FirewallRuleGroupAssociations"], json!([]));
    let first = aws.resolver_ok("ListFirewallRuleGroupAssociations", json!({ "VpcId": a.id, "Priority": 100 })).await;
    assert_eq!(first["FirewallRuleGroupAssociations"].as_array().unwrap().len(), 1);
    let deleted = aws.resolver_ok("DeleteFirewallRuleGroup", json!({ "FirewallRuleGroupId": group })).await;
    assert_eq!(deleted["FirewallRuleGroup"]["Status"], "DELETING");
    let deleted = aws.resolver_ok("DeleteFirewallDomainList", json!({ "FirewallDomainListId": list })).await;
    assert_eq!(deleted["FirewallDomainList"]["Status"], "DELETING");
    let exported = harness.service.control().snapshot();
    assert_eq!((exported.firewall_rule_groups.len(), exported.firewall_domain_lists.len()), (1, 1));
}

#[tokio::test]
async fn alert_and_block_carry_route_53_s_firewall_fields_in_the_query_log() {
    let Basics { dir, recursive, .. } = basics().await;
    std::fs::write(dir.path().join("watched.txt"), "*.watched.example\n").unwrap();
    let log = dir.join("queries.jsonl");
    let extra = format!(
        "{FIREWALL}\n[[query_logging]]\nid = \"rqlc-a\"\ndestination = \"{}\"\nvpcs = [\"vpc-a\"]\n",
        log.display()
    );
    let endpoint = start(dir.path(), &two_vpcs(recursive.address(), &extra)).await;
    let in_a = vpc_resolver(&endpoint, "vpc-a");
    for name in ["a.watched.example", "www.bad.example", "ok.bad.example"] {
        ask_from(VPC_A_CLIENT, in_a, name, RecordType::A).await.unwrap();
    }
    let lines = json_lines(&log, 3).await;
    let line = |name: &str| lines.iter().find(|line| line["query_name"] == name).cloned().unwrap();
    let alert = line("a.watched.example.");
    assert_eq!(alert["firewall_rule_action"], "ALERT");
    assert_eq!(alert["firewall_rule_group_id"], "rslvr-frg-early");
    assert_eq!(alert["firewall_domain_list_id"], "rslvr-fdl-watched");
    assert_eq!(alert["rcode"], "NOERROR");
    let block = line("www.bad.example.");
    assert_eq!(block["firewall_rule_action"], "BLOCK");
    assert_eq!(block["firewall_rule_group_id"], "rslvr-frg-late");
    assert_eq!(block["firewall_domain_list_id"], "rslvr-fdl-nx");
    assert_eq!(block["rcode"], "NXDOMAIN");
    // ALLOW is not written (Route 53 writes the fields for ALERT and BLOCK).
    assert!(line("ok.bad.example.").get("firewall_rule_action").is_none());
    endpoint.shutdown().await;
}

/// The recursive default's data for the redirection tests: CNAME chains
/// `start → middle → end` and `trusted → middle → end`.
const CHAIN_ZONE: &str = "start 60 CNAME middle\nmiddle 60 CNAME end\nend 60 A 10.9.9.9\ntrusted 60 CNAME middle\n";

/// vpc-a's firewall for the redirection tests: `end` blocked for every
/// name of a chain (INSPECT), `middle` blocked for the name asked only
/// (TRUST), `trusted` allowed with its chain trusted; a private zone whose
/// alias points into the chain.
const CHAIN_FIREWALL: &str = r#"
private_hosted_zones = [
    { name = "corp.example", vpcs = ["vpc-a"], records = ["alias CNAME end.chain.example."] },
]
firewall_domain_lists = [
    { id = "rslvr-fdl-trusted", domains = ["trusted.chain.example"] },
    { id = "rslvr-fdl-middle", domains = ["middle.chain.example"] },
    { id = "rslvr-fdl-end", domains = ["end.chain.example"] },
]

[[firewall_rule_groups]]
id = "rslvr-frg-chain"
rules = [
    { name = "trust", priority = 1, domain_list = "rslvr-fdl-trusted", action = "ALLOW", redirection_action = "TRUST_REDIRECTION_DOMAIN" },
    { name = "middle", priority = 2, domain_list = "rslvr-fdl-middle", action = "BLOCK", block_response = "NODATA", redirection_action = "TRUST_REDIRECTION_DOMAIN" },
    { name = "end", priority = 3, domain_list = "rslvr-fdl-end", action = "BLOCK", block_response = "NXDOMAIN" },
]

[[firewall_associations]]
rule_group = "rslvr-frg-chain"
vpc = "vpc-a"
priority = 100
"#;

#[tokio::test]
async fn every_name_of_a_redirection_chain_is_inspected_unless_the_rule_trusts_it() {
    let recursive = signpost_testkit::FakeDns::builder().zone("chain.example", CHAIN_ZONE).start().await.unwrap();
    let dir = TempDir::new();
    let log = dir.join("queries.jsonl");
    let logging = format!(
        "{CHAIN_FIREWALL}\n[[query_logging]]\nid = \"rqlc-a\"\ndestination = \"{}\"\nvpcs = [\"vpc-a\"]\n",
        log.display()
    );
    let text = two_vpcs(recursive.udp_addr(), &logging);
    let endpoint = start(dir.path(), &text).await;
    let in_a = vpc_resolver(&endpoint, "vpc-a");
    let in_b = vpc_resolver(&endpoint, "vpc-b");

    // start → middle → end: `end` is in an INSPECT rule's list, so the
    // whole answer is blocked; the TRUST rule on `middle` does not look
    // past the name asked. Twice: the second answer comes from the cache.
    for _ in 0..2 {
        let (rcode, answers) = asked(in_a, VPC_A_CLIENT, "start.chain.example", RecordType::A).await;
        assert_eq!((rcode, answers.len()), (Rcode::NXDOMAIN, 0), "{answers:?}");
    }
    // A hickory client sees the same.
    let hickory = resolver_from(Transport::Udp, in_a, VPC_A_CLIENT);
    assert!(hickory.lookup_ip("start.chain.example.").await.is_err());
    // The TRUST rule blocks the name asked.
    let (rcode, answers) = asked(in_a, VPC_A_CLIENT, "middle.chain.example", RecordType::A).await;
    assert_eq!((rcode, answers.len()), (Rcode::NOERROR, 0));
    // An ALLOW rule that trusts redirection lets the whole chain through.
    let (rcode, answers) = asked(in_a, VPC_A_CLIENT, "trusted.chain.example", RecordType::A).await;
    assert_eq!(rcode, Rcode::NOERROR);
    assert_eq!(answers.last().map(String::as_str), Some("end.chain.example. 60 IN A 10.9.9.9"), "{answers:?}");
    // A private zone's CNAME into the chain is inspected too.
    assert_eq!(asked(in_a, VPC_A_CLIENT, "alias.corp.example", RecordType::A).await.0, Rcode::NXDOMAIN);
    // vpc-b has no firewall: the chain resolves.
    let (rcode, answers) = asked(in_b, VPC_B_CLIENT, "start.chain.example", RecordType::A).await;
    assert_eq!((rcode, answers.len()), (Rcode::NOERROR, 3), "{answers:?}");

    // Per-rule counters: the chain blocks (start twice, the hickory
    // lookups, the alias), the TRUST rule's block and its ALLOW.
    let metrics = endpoint.server().metrics();
    assert!(metrics.firewall_matches("rslvr-frg-chain", "end", "BLOCK") >= 4);
    assert_eq!(metrics.firewall_matches("rslvr-frg-chain", "middle", "BLOCK"), 1);
    assert_eq!(metrics.firewall_matches("rslvr-frg-chain", "trust", "ALLOW"), 1);
    assert_eq!(metrics.firewall_matches("rslvr-frg-chain", "end", "ALERT"), 0);

    // Query-log lines of chain blocks — fresh, from the cache and from a
    // private zone — name the rule as a direct match does.
    let lines = json_lines(&log, 6).await;
    let chain_blocks: Vec<_> = lines
        .iter()
        .filter(|line| {
            line["query_type"] == "A"
                && (line["query_name"] == "start.chain.example." || line["query_name"] == "alias.corp.example.")
        })
        .collect();
    assert!(chain_blocks.len() >= 3, "{lines:?}");
    for line in chain_blocks {
        assert_eq!(line["firewall_rule_action"], "BLOCK", "{line}");
        assert_eq!(line["firewall_rule_group_id"], "rslvr-frg-chain", "{line}");
        assert_eq!(line["firewall_domain_list_id"], "rslvr-fdl-end", "{line}");
        assert_eq!(line["rcode"], "NXDOMAIN", "{line}");
    }
}

#[tokio::test]
async fn a_rule_whose_list_cannot_be_read_fails_closed_unless_the_vpc_fails_open() {
    use serde_json::json;

    let files = TempDir::new();
    let list = files.path().join("blocked.txt");
    std::fs::write(&list, "*.bad.example\n").unwrap();
    let config = files.path().join("endpoint.toml");
    std::fs::write(
        &config,
        r#"
vpcs = [{ id = "vpc-fw", cidrs = ["127.0.8.0/24"] }]
firewall_domain_lists = [{ id = "rslvr-fdl-file", file = "blocked.txt" }]

[[firewall_rule_groups]]
id = "rslvr-frg-file"
rules = [{ name = "nx", priority = 1, domain_list = "rslvr-fdl-file", action = "BLOCK", block_response = "NXDOMAIN" }]

[[firewall_associations]]
rule_group = "rslvr-frg-file"
vpc = "vpc-fw"
priority = 100
"#,
    )
    .unwrap();
    let harness = crate::api::start(|options| options.config = Some(config.clone())).await;
    let aws = &harness.aws;
    let (_, described) = aws.ec2("DescribeVpcs", &[("VpcId.1", "vpc-fw")]).await;
    let tag = described.split("<key>signpost:resolver</key><value>").nth(1).unwrap();
    let resolver: std::net::SocketAddr = tag[..tag.find('<').unwrap()].parse().unwrap();
    let client: std::net::IpAddr = "127.0.8.1".parse().unwrap();
    assert_eq!(asked(resolver, client, "www.bad.example", RecordType::A).await.0, Rcode::NXDOMAIN);
    assert_eq!(asked(resolver, client, "fine.example", RecordType::A).await.0, Rcode::NOERROR);

    // The list's file goes away; the next change rebuilds the model and
    // the rule cannot be evaluated. Fail closed (the default): SERVFAIL.
    std::fs::remove_file(&list).unwrap();
    let closed = json!({ "ResourceId": "vpc-fw", "FirewallFailOpen": "DISABLED" });
    let answer = aws.resolver_ok("UpdateFirewallConfig", closed).await;
    assert_eq!(answer["FirewallConfig"]["FirewallFailOpen"], "DISABLED");
    assert_eq!(asked(resolver, client, "fine.example", RecordType::A).await.0, Rcode::SERVFAIL);
    assert_eq!(asked(resolver, client, "www.bad.example", RecordType::A).await.0, Rcode::SERVFAIL);
    // Fail open: the rule is skipped, every name resolves.
    let open = json!({ "ResourceId": "vpc-fw", "FirewallFailOpen": "ENABLED" });
    aws.resolver_ok("UpdateFirewallConfig", open).await;
    assert_eq!(asked(resolver, client, "fine.example", RecordType::A).await.0, Rcode::NOERROR);
    assert_eq!(asked(resolver, client, "www.bad.example", RecordType::A).await.0, Rcode::NOERROR);
    // The file is back: the rule blocks again after the next change.
    std::fs::write(&list, "*.bad.example\n").unwrap();
    aws.resolver_ok("UpdateFirewallConfig", json!({ "ResourceId": "vpc-fw", "FirewallFailOpen": "DISABLED" })).await;
    assert_eq!(asked(resolver, client, "www.bad.example", RecordType::A).await.0, Rcode::NXDOMAIN);
}

#[tokio::test]
async fn firewall_quotas_answer_limit_exceeded_through_the_api_and_name_the_field_in_toml() {
    use serde_json::json;

    let files = TempDir::new();
    let config = files.path().join("endpoint.toml");
    let quotas = "[quotas]\nfirewall_rule_groups_per_region = 1\nrules_per_firewall_rule_group = 1\n";
    std::fs::write(&config, quotas).unwrap();
    let harness = crate::api::start(|options| options.config = Some(config.clone())).await;
    let aws = &harness.aws;
    let group = aws.resolver_ok("CreateFirewallRuleGroup", json!({ "CreatorRequestId": "g1", "Name": "one" })).await;
    let group = group["FirewallRuleGroup"]["Id"].as_str().unwrap().to_string();
    let (code, message) =
        aws.resolver_error("CreateFirewallRuleGroup", json!({ "CreatorRequestId": "g2", "Name": "two" })).await;
    assert_eq!(code, "LimitExceededException");
    assert!(message.contains("quotas.firewall_rule_groups_per_region"), "{message}");
    let list = aws.resolver_ok("CreateFirewallDomainList", json!({ "CreatorRequestId": "l1", "Name": "l" })).await;
    let list = list["FirewallDomainList"]["Id"].as_str().unwrap().to_string();
    let rule = |name: &str, priority: u32| json!({ "CreatorRequestId": name, "FirewallRuleGroupId": group, "FirewallDomainListId": list, "Priority": priority, "Action": "ALERT", "Name": name, "Qtype": if priority == 1 { "A" } else { "MX" } });
    aws.resolver_ok("CreateFirewallRule", rule("first", 1)).await;
    let (code, _) = aws.resolver_error("CreateFirewallRule", rule("second", 2)).await;
    assert_eq!(code, "LimitExceededException");

    // The TOML model is held to the same quotas.
    let text = format!("firewall_rule_groups = [{{ id = \"rslvr-frg-a\" }}, {{ id = \"rslvr-frg-b\" }}]\n{quotas}");
    let message =
        signpost_endpoint::EndpointConfig::from_toml(&text, "quota.toml").unwrap().compile().err().unwrap().to_string();
    assert!(message.contains("quota.toml") && message.contains("quotas.firewall_rule_groups_per_region"), "{message}");
}

#[tokio::test]
async fn batch_firewall_rule_calls_apply_each_entry_and_report_the_failures() {
    use serde_json::json;

    let harness = crate::api::start(|_| {}).await;
    let aws = &harness.aws;
    let a = crate::api::vpc(aws, "127.0.9.0/24").await;
    let client: std::net::IpAddr = "127.0.9.1".parse().unwrap();
    let id = |value: serde_json::Value, kind: &str| value[kind]["Id"].as_str().unwrap().to_string();
    let list = aws.resolver_ok("CreateFirewallDomainList", json!({ "CreatorRequestId": "l", "Name": "l" })).await;
    let list = id(list, "FirewallDomainList");
    let domains = json!({ "FirewallDomainListId": list, "Operation": "ADD", "Domains": ["*.batch.example"] });
    aws.resolver_ok("UpdateFirewallDomains", domains).await;
    let group = aws.resolver_ok("CreateFirewallRuleGroup", json!({ "CreatorRequestId": "g", "Name": "g" })).await;
    let group = id(group, "FirewallRuleGroup");
    let entry = |name: &str, priority: u32, qtype: &str| json!({ "CreatorRequestId": name, "FirewallRuleGroupId": group, "FirewallDomainListId": list, "Priority": priority, "Action": "BLOCK", "BlockResponse": "NXDOMAIN", "Name": name, "Qtype": qtype });
    // The second entry reuses the first one's priority: it fails, the third is made.
    let entries =
        json!({ "CreateFirewallRuleEntries": [entry("a", 10, "A"), entry("b", 10, "MX"), entry("c", 20, "TXT")] });
    let created = aws.resolver_ok("BatchCreateFirewallRule", entries).await;
    let names: Vec<&str> =
        created["CreatedFirewallRules"].as_array().unwrap().iter().map(|rule| rule["Name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "c"]);
    assert_eq!(created["CreateErrors"].as_array().unwrap().len(), 1);
    assert_eq!(created["CreateErrors"][0]["FirewallRule"]["Name"], "b");
    assert_eq!(created["CreateErrors"][0]["Code"], "ConflictException");
    aws.resolver_ok(
        "AssociateFirewallRuleGroup",
        json!({ "CreatorRequestId": "as", "FirewallRuleGroupId": group, "VpcId": a.id, "Priority": 100, "Name": "as" }),
    )
    .await;
    assert_eq!(asked(a.resolver, client, "x.batch.example", RecordType::A).await.0, Rcode::NXDOMAIN);
    // Update the A rule to NODATA; delete the TXT rule and one that does not exist.
    let update = json!({ "UpdateFirewallRuleEntries": [{ "FirewallRuleGroupId": group, "FirewallDomainListId": list, "Qtype": "A", "BlockResponse": "NODATA" }] });
    let updated = aws.resolver_ok("BatchUpdateFirewallRule", update).await;
    assert_eq!(updated["UpdatedFirewallRules"][0]["BlockResponse"], "NODATA");
    assert_eq!(asked(a.resolver, client, "x.batch.example", RecordType::A).await, (Rcode::NOERROR, Vec::new()));
    let delete = json!({ "DeleteFirewallRuleEntries": [
        { "FirewallRuleGroupId": group, "FirewallDomainListId": list, "Qtype": "TXT" },
        { "FirewallRuleGroupId": "rslvr-frg-nope", "FirewallDomainListId": list },
    ] });
    let deleted = aws.resolver_ok("BatchDeleteFirewallRule", delete).await;
    assert_eq!(deleted["DeletedFirewallRules"].as_array().unwrap().len(), 1);
    assert_eq!(deleted["DeleteErrors"][0]["Code"], "ResourceNotFoundException");
    let rules = aws.resolver_ok("ListFirewallRules", json!({ "FirewallRuleGroupId": group })).await;
    assert_eq!(rules["FirewallRules"].as_array().unwrap().len(), 1);
}
