//! Endpoint protocol rules at load and on reload, and the other checks a
//! configuration goes through.

use std::net::Ipv4Addr;

use signpost_endpoint::{
    Direction, Endpoint, EndpointConfig, EndpointError, EndpointProtocol, ProtocolProblem, Reloaded,
};
use signpost_server::Transport;

use crate::support::*;

fn inbound(protocols: &str, certificate: &TestTls) -> String {
    let zone =
        "[[private_hosted_zones]]\nname = \"corp.example\"\nvpcs = [\"vpc-a\"]\nrecords = [\"www A 10.1.0.10\"]\n";
    format!("{zone}{}", inbound_endpoint(protocols, Some(certificate)))
}

fn compile_error(text: &str) -> EndpointError {
    let dir = TempDir::new();
    match config(dir.path(), text).compile() {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(error) => error,
    }
}

#[test]
fn doh_with_doh_fips_is_rejected_at_load_with_its_line() {
    let dir = TempDir::new();
    let certificate = certificate(dir.path());
    let text = two_vpcs("127.0.0.1:1".parse().unwrap(), &inbound(r#"["DoH", "DoH-FIPS"]"#, &certificate));
    let error = compile_error(&text);
    assert!(matches!(error, EndpointError::Protocols { problem: ProtocolProblem::DohWithDohFips, .. }), "{error}");
    let message = error.to_string();
    let line = text.lines().position(|line| line.starts_with("protocols")).unwrap() + 1;
    assert!(message.contains(&format!("endpoint.toml:{line}:")), "{message}");
    assert!(message.contains("DoH and DoH-FIPS cannot be used together"), "{message}");
}

#[test]
fn the_service_s_other_rules_are_enforced_at_load() {
    let recursive = "127.0.0.1:1".parse().unwrap();
    let outbound = |protocols: &str, rule: &str| {
        two_vpcs(
            recursive,
            &format!(
                "[[outbound_endpoints]]\nid = \"rslvr-out-a\"\nvpc = \"vpc-a\"\nprotocols = {protocols}\n\n[[resolver_rules]]\nid = \"r\"\ntype = \"FORWARD\"\ndomain = \"onprem.example\"\noutbound_endpoint = \"rslvr-out-a\"\nvpcs = [\"vpc-a\"]\n{rule}\n"
            ),
        )
    };
    let error = compile_error(&outbound(r#"["DoH-FIPS"]"#, "targets = [{ ip = \"127.0.0.1\" }]"));
    assert!(matches!(error, EndpointError::Protocols { problem: ProtocolProblem::FipsOutbound, .. }), "{error}");

    let error = compile_error(&outbound(r#"["Do53"]"#, "targets = [{ ip = \"127.0.0.1\" }, { ip = \"::1\" }]"));
    assert!(matches!(error, EndpointError::MixedTargetFamilies { .. }), "{error}");

    let error =
        compile_error(&outbound(r#"["Do53"]"#, "targets = [{ ip = \"127.0.0.1\", port = 8443, protocol = \"DoH\" }]"));
    assert!(error.to_string().contains("uses DoH, but outbound endpoint \"rslvr-out-a\" offers Do53"), "{error}");

    let error = compile_error(&outbound(r#"["Do53"]"#, ""));
    assert!(error.to_string().contains("a FORWARD rule needs targets"), "{error}");

    let error = compile_error(&two_vpcs(
        recursive,
        "[[inbound_endpoints]]\nid = \"in\"\nvpc = \"vpc-a\"\naddresses = [\"127.0.1.10\"]\nport = 0\n",
    ));
    assert!(matches!(error, EndpointError::TooFewAddresses { count: 1, .. }), "{error}");

    let error = compile_error(&two_vpcs(
        recursive,
        "[[inbound_endpoints]]\nid = \"in\"\nvpc = \"vpc-a\"\naddresses = [\"127.0.1.10\", \"127.0.1.11\"]\nprotocols = [\"DoH\"]\ndoh_port = 0\n",
    ));
    assert!(error.to_string().contains("needs a certificate"), "{error}");

    let overlapping = format!("{VPCS}, {{ id = \"vpc-c\", cidrs = [\"127.0.1.128/25\"] }}");
    let error = compile_error(&with_vpcs(recursive, &overlapping, ""));
    assert!(matches!(error, EndpointError::OverlappingCidrs { .. }), "{error}");

    let error = compile_error(&two_vpcs(
        recursive,
        "[[private_hosted_zones]]\nname = \"corp.example\"\nvpcs = [\"vpc-z\"]\nrecords = []\n",
    ));
    assert!(matches!(error, EndpointError::UnknownReference { what: "VPC", .. }), "{error}");

    let error = compile_error(&two_vpcs(
        recursive,
        "[[resolver_rules]]\nid = \"a\"\ntype = \"SYSTEM\"\ndomain = \"x.example\"\nvpcs = [\"vpc-a\"]\n[[resolver_rules]]\nid = \"b\"\ntype = \"SYSTEM\"\ndomain = \"X.example.\"\nvpcs = [\"vpc-b\", \"vpc-a\"]\n",
    ));
    assert!(matches!(error, EndpointError::Conflict { .. }), "{error}");

    let error = compile_error(&two_vpcs(
        recursive,
        "[[resolver_rules]]\nid = \"a\"\ntype = \"RECURSIVE\"\ndomain = \".\"\nvpcs = [\"vpc-a\"]\n",
    ));
    assert!(error.to_string().contains("RECURSIVE rules are built in"), "{error}");

    let dir = TempDir::new();
    let error = EndpointConfig::from_toml(
        "[[vpcs]]\nid = \"vpc-a\"\ncidrs = [\"127.0.1.0/24\"]\ncolour = 1\n",
        dir.join("e.toml"),
    )
    .err()
    .unwrap();
    assert!(error.to_string().contains("e.toml:4:1"), "{error}");
}

#[tokio::test]
async fn do53_only_to_doh_only_on_reload_is_rejected_and_do53_keeps_serving() {
    let Basics { dir, certificate, recursive } = basics().await;
    let file = |protocols: &str| config(dir.path(), &two_vpcs(recursive.address(), &inbound(protocols, &certificate)));
    let mut endpoint = Endpoint::start(file(r#"["Do53"]"#)).await.unwrap();
    let do53 = inbound_addresses(&endpoint, Transport::Udp);
    assert_eq!(do53.len(), 2);

    let error = endpoint.reload(file(r#"["DoH"]"#)).await.unwrap_err();
    assert!(matches!(error, EndpointError::Transition { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("cannot change from Do53 straight to DoH"), "{message}");
    assert!(message.contains("must pass through Do53+DoH"), "{message}");
    assert_eq!(inbound_addresses(&endpoint, Transport::Udp), do53, "still serving the old listeners");
    let (_, answers) = ask(do53[0], ONPREM_CLIENT, "www.corp.example").await.unwrap();
    assert_eq!(answers, ["www.corp.example. 300 IN A 10.1.0.10"]);

    // Through Do53+DoH it works, in two steps.
    assert_eq!(endpoint.reload(file(r#"["Do53", "DoH"]"#)).await.unwrap(), Reloaded::Restarted);
    let doh = inbound_addresses(&endpoint, Transport::Doh);
    assert_eq!(doh.len(), 2);
    let client = certificate.doh_client(doh[0]);
    assert_eq!(lookup_v4(&client, "www.corp.example.").await, [Ipv4Addr::new(10, 1, 0, 10)]);
    assert_eq!(endpoint.reload(file(r#"["DoH"]"#)).await.unwrap(), Reloaded::Restarted);
    assert!(inbound_addresses(&endpoint, Transport::Udp).is_empty());

    // And DoH alone straight back to Do53 alone is refused too.
    let error = endpoint.reload(file(r#"["Do53"]"#)).await.unwrap_err();
    assert!(error.to_string().contains("cannot change from DoH straight to Do53"), "{error}");
    assert_eq!(inbound_addresses(&endpoint, Transport::Doh).len(), 2);

    // An endpoint cannot move to another VPC.
    let moved = file(r#"["DoH"]"#);
    let mut moved_text = toml::to_string(&moved).unwrap();
    moved_text = moved_text.replace("vpc = \"vpc-a\"", "vpc = \"vpc-b\"");
    let error = endpoint.reload(config(dir.path(), &moved_text)).await.unwrap_err();
    assert!(matches!(error, EndpointError::EndpointMoved { .. }), "{error}");
    endpoint.shutdown().await;
}

#[tokio::test]
async fn an_outbound_endpoint_cannot_jump_between_do53_only_and_doh_only_on_reload() {
    let Basics { dir, certificate, recursive } = basics().await;
    // The FORWARD rule's targets use what the endpoint offers; they are
    // never queried here (port 1 on loopback).
    let file = |protocols: &str, target: &str| {
        config(
            dir.path(),
            &two_vpcs(
                recursive.address(),
                &format!(
                    r#"
[[outbound_endpoints]]
id = "rslvr-out-a"
vpc = "vpc-a"
protocols = {protocols}
ca_file = "{ca}"
ignore_system_roots = true

[[resolver_rules]]
id = "rslvr-rr-onprem"
type = "FORWARD"
domain = "onprem.example"
outbound_endpoint = "rslvr-out-a"
vpcs = ["vpc-a"]
targets = [{target}]
"#,
                    ca = certificate.ca.display(),
                ),
            ),
        )
    };
    let do53_target = r#"{ ip = "127.0.0.1", port = 1 }"#;
    let doh_target = r#"{ ip = "127.0.0.1", port = 1, protocol = "DoH", server_name = "localhost" }"#;
    let outbound_protocols =
        |endpoint: &Endpoint| endpoint.config().outbound_endpoints.first().map(|e| e.protocols.clone()).unwrap();
    let mut endpoint = Endpoint::start(file(r#"["Do53"]"#, do53_target)).await.unwrap();

    // Do53 alone straight to DoH alone: refused, naming the way through.
    let error = endpoint.reload(file(r#"["DoH"]"#, doh_target)).await.unwrap_err();
    assert!(matches!(error, EndpointError::Transition { direction: Direction::Outbound, .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("outbound endpoint \"rslvr-out-a\""), "{message}");
    assert!(message.contains("cannot change from Do53 straight to DoH"), "{message}");
    assert!(message.contains("must pass through Do53+DoH"), "{message}");
    assert_eq!(outbound_protocols(&endpoint), [EndpointProtocol::Do53], "the running configuration stays");
    assert!(ask(vpc_resolver(&endpoint, "vpc-a"), VPC_A_CLIENT, "www.example.org").await.is_some(), "still serving");

    // Through Do53+DoH it goes, one reload at a time.
    endpoint.reload(file(r#"["Do53", "DoH"]"#, doh_target)).await.unwrap();
    endpoint.reload(file(r#"["DoH"]"#, doh_target)).await.unwrap();
    assert_eq!(outbound_protocols(&endpoint), [EndpointProtocol::DoH]);

    // And DoH alone straight back to Do53 alone is refused the same way.
    let error = endpoint.reload(file(r#"["Do53"]"#, do53_target)).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains("cannot change from DoH straight to Do53"), "{message}");
    assert!(message.contains("must pass through Do53+DoH"), "{message}");
    assert_eq!(outbound_protocols(&endpoint), [EndpointProtocol::DoH]);
    endpoint.shutdown().await;
}

#[tokio::test]
async fn zone_and_rule_changes_reload_in_place() {
    let Basics { dir, recursive, .. } = basics().await;
    let zone = |address: &str| {
        two_vpcs(
            recursive.address(),
            &format!(
                "[[private_hosted_zones]]\nname = \"corp.example\"\nvpcs = [\"vpc-a\"]\nrecords = [\"www A {address}\"]\n"
            ),
        )
    };
    let mut endpoint = start(dir.path(), &zone("10.1.0.10")).await;
    let server = vpc_resolver(&endpoint, "vpc-a");
    assert_eq!(
        ask(server, VPC_A_CLIENT, "www.corp.example").await.unwrap().1,
        ["www.corp.example. 300 IN A 10.1.0.10"]
    );
    assert_eq!(endpoint.reload(config(dir.path(), &zone("10.1.0.11"))).await.unwrap(), Reloaded::InPlace);
    assert_eq!(vpc_resolver(&endpoint, "vpc-a"), server, "same listener");
    assert_eq!(
        ask(server, VPC_A_CLIENT, "www.corp.example").await.unwrap().1,
        ["www.corp.example. 300 IN A 10.1.0.11"]
    );
    endpoint.shutdown().await;
}

fn inbound_addresses(endpoint: &Endpoint, transport: Transport) -> Vec<std::net::SocketAddr> {
    crate::support::inbound(endpoint, "rslvr-in-a", "vpc-a", transport)
}
