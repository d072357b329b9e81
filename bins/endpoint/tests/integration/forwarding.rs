//! VPC → FORWARD rule → outbound endpoint → an on-premises server (a second
//! Signpost) over Do53 and over DoH; SYSTEM rules carve names out.

use std::net::Ipv4Addr;

use signpost_wire::Rcode;

use crate::support::*;

fn forwarding_config(onprem: &OnPremises, certificate: &TestTls, log: &std::path::Path) -> String {
    let endpoints = format!(
        r#"
outbound_endpoints = [{{ id = "rslvr-out-a", vpc = "vpc-a", protocols = ["Do53", "DoH"], ca_file = "{ca}" }}]
query_logging = [{{ id = "rqlc-a", destination = "{log}", vpcs = ["vpc-a"] }}]
"#,
        ca = certificate.ca.display(),
        log = log.display(),
    );
    let do53 = format!(r#"[{{ ip = "127.0.0.1", port = {} }}]"#, onprem.udp().port());
    let doh = format!(
        r#"[{{ ip = "127.0.0.1", port = {}, protocol = "DoH", server_name = "localhost" }}]"#,
        onprem.doh().port()
    );
    let a = r#"["vpc-a"]"#;
    let rules = [
        forward_rule("rslvr-rr-onprem", "onprem.example", &do53, a),
        forward_rule("rslvr-rr-sub-doh", "sub.onprem.example", &doh, a),
        system_rule("rslvr-rr-public", "public.onprem.example", a),
    ];
    format!("{endpoints}{}", rules.concat())
}

/// An on-premises server, the recursive default and the emulator with the rules above.
struct Setup {
    dir: TempDir,
    onprem: OnPremises,
    recursive: FakeUpstream,
    log: std::path::PathBuf,
    endpoint: signpost_endpoint::Endpoint,
}

impl Setup {
    async fn start() -> Self {
        let dir = TempDir::new();
        let certificate = certificate(dir.path());
        let onprem = OnPremises::start(dir.path(), &certificate).await;
        let recursive = FakeUpstream::answering(RECURSIVE_ANSWER).await;
        let log = dir.join("vpc-a.log");
        let text = two_vpcs(recursive.address(), &forwarding_config(&onprem, &certificate, &log));
        let endpoint = start(dir.path(), &text).await;
        Self { dir, onprem, recursive, log, endpoint }
    }
}

#[tokio::test]
async fn forward_rules_reach_on_premises_over_do53_and_doh_and_the_logs_show_the_transport() {
    let Setup { dir: _dir, onprem, recursive, log, endpoint } = Setup::start().await;
    let in_a = resolver_from(Transport::Udp, vpc_resolver(&endpoint, "vpc-a"), VPC_A_CLIENT);

    // Do53 through the outbound endpoint.
    assert_eq!(lookup_v4(&in_a, "db.onprem.example.").await, [Ipv4Addr::new(10, 99, 0, 10)]);
    // DoH through the outbound endpoint (the more specific rule).
    assert_eq!(lookup_v4(&in_a, "app.sub.onprem.example.").await, [Ipv4Addr::new(10, 99, 0, 30)]);

    // On-premises (a plain server, logging in the neutral format) saw one
    // query over UDP and one over DoH.
    let lines = json_lines(&onprem.log, 2).await;
    let transport_of = |name: &str| {
        lines.iter().find(|line| line["query_name"] == name).map(|line| line["transport"].clone()).unwrap()
    };
    assert_eq!(transport_of("db.onprem.example."), "udp");
    assert_eq!(transport_of("app.sub.onprem.example."), "doh");

    // The VPC's own query log names the rule and the protocol that left the outbound endpoint.
    let lines = json_lines(&log, 2).await;
    let line_for = |name: &str| lines.iter().find(|line| line["query_name"] == name).unwrap().clone();
    let do53 = line_for("db.onprem.example.");
    assert_eq!(do53["vpc_id"], "vpc-a");
    assert_eq!(do53["transport"], "UDP");
    assert_eq!(do53["srcids"]["instance"], "127.0.1.1");
    assert_eq!(do53["signpost"]["group"], "forward:rslvr-rr-onprem");
    assert_eq!(do53["signpost"]["attempts"][0]["protocol"], "udp");
    let doh = line_for("app.sub.onprem.example.");
    assert_eq!(doh["signpost"]["group"], "forward:rslvr-rr-sub-doh");
    assert_eq!(doh["signpost"]["attempts"][0]["protocol"], "https");
    assert!(recursive.names().is_empty(), "{:?}", recursive.names());

    // Rules associated with vpc-a only: vpc-b asks the recursive default.
    let (rcode, answers) = ask(vpc_resolver(&endpoint, "vpc-b"), VPC_B_CLIENT, "db.onprem.example").await.unwrap();
    assert_eq!((rcode, answers.len()), (Rcode::NOERROR, 1));
    assert!(answers[0].ends_with("192.0.2.53"), "{answers:?}");
    endpoint.shutdown().await;
    onprem.server.shutdown().await;
}

#[tokio::test]
async fn a_system_rule_carves_a_subdomain_out_of_a_forward_rule() {
    let Setup { dir: _dir, onprem, recursive, log: _, endpoint } = Setup::start().await;
    let in_a = resolver_from(Transport::Udp, vpc_resolver(&endpoint, "vpc-a"), VPC_A_CLIENT);

    // On-premises holds public.onprem.example (10.99.0.20), but the SYSTEM
    // rule sends it to the VPC resolver's own resolution: the recursive default.
    assert_eq!(lookup_v4(&in_a, "public.onprem.example.").await, [RECURSIVE_ANSWER]);
    assert_eq!(lookup_v4(&in_a, "www.public.onprem.example.").await, [RECURSIVE_ANSWER]);
    assert_eq!(recursive.names(), ["public.onprem.example.", "www.public.onprem.example."]);
    // The rest of the forwarded domain still goes on-premises.
    assert_eq!(lookup_v4(&in_a, "db.onprem.example.").await, [Ipv4Addr::new(10, 99, 0, 10)]);
    endpoint.shutdown().await;
    onprem.server.shutdown().await;
}

#[tokio::test]
async fn forwarded_queries_leave_from_the_outbound_endpoint_s_addresses() {
    let Basics { dir, certificate, recursive } = basics().await;
    let onprem = OnPremises::start(dir.path(), &certificate).await;
    let targets = format!(
        "[{{ ip = \"127.0.0.1\", port = {port} }}, {{ ip = \"127.0.0.1\", port = {port} }}]",
        port = onprem.udp().port()
    );
    let text = two_vpcs(
        recursive.address(),
        &format!(
            "outbound_endpoints = [{{ id = \"rslvr-out-a\", vpc = \"vpc-a\", addresses = [\"127.0.1.20\", \"127.0.1.21\"] }}]\n{}",
            forward_rule("rslvr-rr-onprem", "onprem.example", &targets, "[\"vpc-a\"]")
        ),
    );
    let endpoint = start(dir.path(), &text).await;
    let client = resolver_from(Transport::Udp, vpc_resolver(&endpoint, "vpc-a"), VPC_A_CLIENT);
    assert_eq!(lookup_v4(&client, "db.onprem.example.").await, [Ipv4Addr::new(10, 99, 0, 10)]);
    // The on-premises server saw the endpoint's address, not the client's or 127.0.0.1.
    let lines = json_lines(&onprem.log, 1).await;
    let source = lines[0]["client"].as_str().unwrap().to_string();
    assert!(["127.0.1.20", "127.0.1.21"].contains(&source.as_str()), "{source}");
    endpoint.shutdown().await;
}
