//! DNS Firewall from the TOML model: domain lists with AWS's wildcards,
//! each block response, ALLOW beating a later BLOCK, association order,
//! qtype filters, VPCs without the group untouched, and the firewall in
//! front of private zones and inbound endpoints.

use std::net::Ipv4Addr;

use signpost_server::ListenerTransport;
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
    let inbound = inbound(&endpoint, "rslvr-in-a", "vpc-a", ListenerTransport::Udp)[0];
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
