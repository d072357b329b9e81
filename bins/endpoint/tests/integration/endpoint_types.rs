//! ResolverEndpointType IPV4 / IPV6 / DUALSTACK: inbound endpoints answer
//! on their IPv6 addresses, outbound endpoints send to IPv6 targets from
//! theirs — through the TOML model and through the API. The only IPv6
//! address a test may use is ::1; an endpoint's other IPv6 addresses
//! (fd00:ec2::/32) are kept, not listened on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde_json::json;
use signpost_wire::{Rcode, RecordType};

use crate::api::start as start_api;
use crate::support::*;

const LOOPBACK_V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// An on-premises server on [::1] holding onprem.example.
async fn onprem_v6() -> signpost_testkit::FakeDns {
    signpost_testkit::FakeDns::builder()
        .address(LOOPBACK_V6)
        .zone("onprem.example", "db 60 A 10.99.0.10\n")
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dualstack_model_listens_on_and_sends_from_its_ipv6_addresses() {
    let Basics { dir, recursive, .. } = basics().await;
    let onprem = onprem_v6().await;
    let extra = format!(
        r#"
private_hosted_zones = [{{ name = "corp.example", vpcs = ["vpc-a"], records = ["www A 10.1.0.10"] }}]

[[inbound_endpoints]]
id = "rslvr-in-a"
vpc = "vpc-a"
endpoint_type = "DUALSTACK"
addresses = [{{ ip = "127.0.1.10", ipv6 = "::1" }}, {{ ip = "127.0.1.11", ipv6 = "fd00:ec2::11" }}]

[[outbound_endpoints]]
id = "rslvr-out-a"
vpc = "vpc-a"
endpoint_type = "DUALSTACK"
addresses = [{{ ip = "127.0.1.20", ipv6 = "::1" }}, {{ ip = "127.0.1.21", ipv6 = "fd00:ec2::21" }}]

{}"#,
        forward_rule(
            "rslvr-rr-onprem",
            "onprem.example",
            &format!("[{{ ip = \"::1\", port = {} }}]", onprem.udp_addr().port()),
            "[\"vpc-a\"]"
        )
    );
    let endpoint = start(dir.path(), &two_vpcs(recursive.address(), &extra)).await;

    // The inbound endpoint answers on ::1 as vpc-a, and on its IPv4 addresses.
    let addresses = inbound(&endpoint, "rslvr-in-a", "vpc-a", Transport::Udp);
    let on_v6 = addresses.iter().find(|address| address.ip() == LOOPBACK_V6).copied().unwrap();
    assert_eq!(addresses.len(), 3, "127.0.1.10, 127.0.1.11 and ::1 (fd00:ec2::11 is not this host's): {addresses:?}");
    let (rcode, answers) = ask_from(LOOPBACK_V6, on_v6, "www.corp.example", RecordType::A).await.unwrap();
    assert_eq!((rcode, answers.len()), (Rcode::NOERROR, 1));
    assert!(answers[0].ends_with("10.1.0.10"), "{answers:?}");

    // A FORWARD rule to an IPv6 target leaves from the endpoint's IPv6 address.
    let client = resolver_from(Transport::Udp, vpc_resolver(&endpoint, "vpc-a"), VPC_A_CLIENT);
    assert_eq!(lookup_v4(&client, "db.onprem.example.").await, [Ipv4Addr::new(10, 99, 0, 10)]);
    let seen = onprem.queries();
    assert_eq!(seen.first().map(|query| query.client.ip()), Some(LOOPBACK_V6), "{seen:?}");
    endpoint.shutdown().await;
}

/// The mistakes name the file's field (the unit tests in compile.rs go
/// through every combination).
#[tokio::test]
async fn a_type_mismatch_in_the_file_names_the_field() {
    let dir = TempDir::new();
    let recursive: SocketAddr = "127.0.0.1:5300".parse().unwrap();
    let check = |extra: &str| config(dir.path(), &two_vpcs(recursive, extra)).compile().err().unwrap().to_string();
    let error = check(
        "[[inbound_endpoints]]\nid = \"in\"\nvpc = \"vpc-a\"\nendpoint_type = \"DUALSTACK\"\naddresses = [\"127.0.1.10\", \"127.0.1.11\"]\n",
    );
    assert!(error.contains("endpoint.toml:") && error.contains("inbound_endpoints[0].addresses[0]"), "{error}");
    let text = format!(
        "[[outbound_endpoints]]\nid = \"rslvr-out-a\"\nvpc = \"vpc-a\"\naddresses = [\"127.0.1.20\", \"127.0.1.21\"]\n\n{}",
        forward_rule("rslvr-rr-v6", "onprem.example", "[{ ip = \"::1\" }]", "[\"vpc-a\"]")
    );
    let error = check(&text);
    assert!(error.contains("resolver_rules[0].targets") && error.contains("IPv6 targets"), "{error}");
}

#[tokio::test]
async fn the_api_creates_and_converts_dualstack_endpoints() {
    let harness = start_api(|_| {}).await;
    let aws = &harness.aws;
    let onprem = onprem_v6().await;
    // A VPC with an IPv6 block holding ::1, and subnets with IPv6 blocks.
    let vpc_id =
        aws.ec2_field("CreateVpc", &[("CidrBlock", "127.0.7.0/24"), ("Ipv6CidrBlock", "::/56")], "vpcId").await;
    let (_, described) = aws.ec2("DescribeVpcs", &[("VpcId.1", &vpc_id)]).await;
    assert!(described.contains("<ipv6CidrBlock>::/56</ipv6CidrBlock>"), "{described}");
    let mut subnets = Vec::new();
    for (cidr, ipv6) in [("127.0.7.0/26", "::/64"), ("127.0.7.64/26", "0:0:0:1::/64")] {
        let (status, text) =
            aws.ec2("CreateSubnet", &[("VpcId", &vpc_id), ("CidrBlock", cidr), ("Ipv6CidrBlock", ipv6)]).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains(&format!("<ipv6CidrBlock>{ipv6}</ipv6CidrBlock>")), "{text}");
        subnets.push(crate::aws::field(&text, "subnetId").unwrap());
    }
    let group = aws.dns_security_group(&vpc_id).await;
    let create = |endpoint_type: &str, request: &str, ipv6: Option<&str>| {
        let mut first = json!({ "SubnetId": subnets[0] });
        if let Some(ipv6) = ipv6 {
            first["Ipv6"] = json!(ipv6);
        }
        json!({
            "CreatorRequestId": request,
            "SecurityGroupIds": [group],
            "Direction": "OUTBOUND",
            "ResolverEndpointType": endpoint_type,
            "IpAddresses": [first, { "SubnetId": subnets[1] }],
        })
    };

    // IPV4 with an Ipv6 is refused; an unknown type is a validation error.
    let (status, error) = aws.resolver("CreateResolverEndpoint", create("IPV4", "bad", Some("::1"))).await;
    assert_eq!((status, error["__type"].as_str()), (400, Some("InvalidRequestException")), "{error}");
    let (_, error) = aws.resolver("CreateResolverEndpoint", create("IPV5", "bad2", None)).await;
    assert_eq!(error["__type"], "ValidationException", "{error}");

    // An IPV4 outbound endpoint cannot take IPv6 targets.
    let created = aws.resolver_ok("CreateResolverEndpoint", create("IPV4", "out", None)).await;
    let endpoint_id = created["ResolverEndpoint"]["Id"].as_str().unwrap().to_string();
    assert_eq!(created["ResolverEndpoint"]["ResolverEndpointType"], "IPV4");
    let rule = json!({
        "CreatorRequestId": "rule",
        "RuleType": "FORWARD",
        "DomainName": "onprem.example",
        "ResolverEndpointId": endpoint_id,
        "TargetIps": [{ "Ipv6": "::1", "Port": onprem.udp_addr().port() }],
    });
    let (status, error) = aws.resolver("CreateResolverRule", rule.clone()).await;
    assert_eq!((status, error["__type"].as_str()), (400, Some("InvalidRequestException")), "{error}");
    assert!(error["message"].as_str().unwrap().contains("IPv6 targets"), "{error}");

    // To DUALSTACK, the first address's IPv6 given by IpId, the second chosen from its subnet.
    let listed = aws.resolver_ok("ListResolverEndpointIpAddresses", json!({ "ResolverEndpointId": endpoint_id })).await;
    let first_id = listed["IpAddresses"][0]["IpId"].as_str().unwrap().to_string();
    let updated = aws
        .resolver_ok(
            "UpdateResolverEndpoint",
            json!({
                "ResolverEndpointId": endpoint_id,
                "ResolverEndpointType": "DUALSTACK",
                "UpdateIpAddresses": [{ "IpId": first_id, "Ipv6": "::1" }],
            }),
        )
        .await;
    assert_eq!(updated["ResolverEndpoint"]["ResolverEndpointType"], "DUALSTACK");
    let listed = aws.resolver_ok("ListResolverEndpointIpAddresses", json!({ "ResolverEndpointId": endpoint_id })).await;
    let addresses = listed["IpAddresses"].as_array().unwrap();
    assert_eq!(addresses[0]["Ipv6"], "::1", "{listed}");
    assert_eq!(addresses[1]["Ipv6"], "::1:0:0:0:4", "the first free address of 0:0:0:1::/64: {listed}");
    assert!(addresses.iter().all(|address| address["Ip"].as_str().unwrap().starts_with("127.0.7.")), "{listed}");

    // Now the IPv6 rule is accepted, and its queries leave from ::1.
    let rule_id = aws.resolver_ok("CreateResolverRule", rule).await["ResolverRule"]["Id"].as_str().unwrap().to_string();
    aws.resolver_ok("AssociateResolverRule", json!({ "ResolverRuleId": rule_id, "VPCId": vpc_id })).await;
    let (_, described) = aws.ec2("DescribeVpcs", &[("VpcId.1", &vpc_id)]).await;
    let tag = described.split("<key>signpost:resolver</key><value>").nth(1).unwrap();
    let resolver: SocketAddr = tag[..tag.find('<').unwrap()].parse().unwrap();
    let client: IpAddr = "127.0.7.5".parse().unwrap();
    let (rcode, answers) = ask_from(client, resolver, "db.onprem.example", RecordType::A).await.unwrap();
    assert_eq!((rcode, answers.len()), (Rcode::NOERROR, 1), "{answers:?}");
    assert_eq!(onprem.queries().first().map(|query| query.client.ip()), Some(LOOPBACK_V6));

    // Back to IPV4 is refused while an IPv6 rule uses it; IPV6 is never a
    // destination of an update.
    for (endpoint_type, expected) in [("IPV4", "IPv6 targets"), ("IPV6", "IPV6")] {
        let (status, error) = aws
            .resolver(
                "UpdateResolverEndpoint",
                json!({ "ResolverEndpointId": endpoint_id, "ResolverEndpointType": endpoint_type }),
            )
            .await;
        assert_eq!(status, 400, "{error}");
        assert!(error["message"].as_str().unwrap().contains(expected), "{endpoint_type}: {error}");
    }
    // The model on disk has the IPv6 addresses and the type.
    let exported = harness.service.control().snapshot();
    let out = exported.outbound_endpoints.iter().find(|e| e.id == endpoint_id).unwrap();
    assert_eq!(out.endpoint_type, Some(signpost_endpoint::EndpointType::Dualstack));
    assert_eq!(out.addresses[0].ipv6, Some(Ipv6Addr::LOCALHOST));
}
