//! Autodefined rules and VPC DNS attributes: reverse lookups of private
//! space and of the VPC answered locally (never sent to the recursive
//! default), AutodefinedReverse, a FORWARD rule overriding them, EC2 names
//! with enableDnsHostnames, no resolver with enableDnsSupport off; from the
//! TOML model and through the API.

use std::net::IpAddr;

use serde_json::json;
use signpost_wire::{Rcode, RecordType};

use crate::support::*;

const HOSTNAMES: &str = r#"
vpcs = [
    { id = "vpc-a", cidrs = ["127.0.1.0/24"], dns_hostnames = true },
    { id = "vpc-b", cidrs = ["127.0.2.0/24"], autodefined_reverse = false },
]
"#;

#[tokio::test]
async fn reverse_lookups_stay_in_the_vpc_and_ec2_names_resolve() {
    let Basics { dir, recursive, .. } = basics().await;
    let text = format!(
        "resolver_port = 0\nudp_workers = 1\nrecursive = {{ servers = [\"{}\"] }}\n{HOSTNAMES}",
        recursive.address()
    );
    let endpoint = start(dir.path(), &text).await;
    let in_a = vpc_resolver(&endpoint, "vpc-a");
    let in_b = vpc_resolver(&endpoint, "vpc-b");

    // A PTR for a VPC address: its EC2 name, answered locally.
    let (rcode, answers) = ask_from(VPC_A_CLIENT, in_a, "5.1.0.127.in-addr.arpa", RecordType::PTR).await.unwrap();
    assert_eq!(rcode, Rcode::NOERROR);
    assert_eq!(answers, ["5.1.0.127.in-addr.arpa. 60 IN PTR ip-127-0-1-5.ec2.internal."]);
    // The EC2 name resolves to the address (hickory, as an instance would).
    let client = resolver_from(Transport::Udp, in_a, VPC_A_CLIENT);
    assert_eq!(
        lookup_v4(&client, "ip-127-0-1-5.ec2.internal.").await,
        ["127.0.1.5".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    // Private space nobody holds: NXDOMAIN from the VPC resolver, not the internet.
    let (rcode, _) = ask_from(VPC_A_CLIENT, in_a, "9.9.9.10.in-addr.arpa", RecordType::PTR).await.unwrap();
    assert_eq!(rcode, Rcode::NXDOMAIN);
    let (rcode, _) = ask_from(VPC_A_CLIENT, in_a, "1.2.168.192.in-addr.arpa", RecordType::PTR).await.unwrap();
    assert_eq!(rcode, Rcode::NXDOMAIN);
    // localhost.
    assert_eq!(
        ask_from(VPC_A_CLIENT, in_a, "localhost", RecordType::A).await.unwrap().1,
        ["localhost. 10800 IN A 127.0.0.1"]
    );
    assert!(recursive.names().is_empty(), "{:?}", recursive.names());

    // vpc-b: AutodefinedReverse off, no hostnames: reverse queries go to the recursive default.
    ask_from(VPC_B_CLIENT, in_b, "9.9.9.10.in-addr.arpa", RecordType::PTR).await.unwrap();
    assert_eq!(recursive.names(), ["9.9.9.10.in-addr.arpa."]);
    let (rcode, _) = ask_from(VPC_B_CLIENT, in_b, "ip-127-0-2-5.ec2.internal", RecordType::A).await.unwrap();
    assert_ne!(rcode, Rcode::NXDOMAIN, "without enableDnsHostnames the name is not the VPC's");
    endpoint.shutdown().await;
}

#[tokio::test]
async fn a_forward_rule_for_reverse_space_overrides_the_autodefined_zone() {
    let Basics { dir, certificate, recursive } = basics().await;
    let onprem = OnPremises::start(dir.path(), &certificate).await;
    let text = format!(
        "resolver_port = 0\nudp_workers = 1\nrecursive = {{ servers = [\"{}\"] }}\n{HOSTNAMES}\n\
         outbound_endpoints = [{{ id = \"rslvr-out-a\", vpc = \"vpc-a\" }}]\n{}",
        recursive.address(),
        forward_rule(
            "rslvr-rr-rev",
            "10.in-addr.arpa",
            &format!("[{{ ip = \"127.0.0.1\", port = {} }}]", onprem.udp().port()),
            "[\"vpc-a\"]"
        ),
    );
    let endpoint = start(dir.path(), &text).await;
    ask_from(VPC_A_CLIENT, vpc_resolver(&endpoint, "vpc-a"), "9.9.9.10.in-addr.arpa", RecordType::PTR).await.unwrap();
    let lines = json_lines(&onprem.log, 1).await;
    assert_eq!(lines[0]["query_name"], "9.9.9.10.in-addr.arpa.");
    assert!(recursive.names().is_empty());
    endpoint.shutdown().await;
}

#[tokio::test]
async fn resolver_config_and_vpc_attributes_through_the_api() {
    let harness = crate::api::start(|_| {}).await;
    let aws = &harness.aws;
    let a = crate::api::vpc(aws, "127.0.8.0/24").await;
    let client: IpAddr = "127.0.8.1".parse().unwrap();
    let ptr = || ask_from(client, a.resolver, "7.8.0.127.in-addr.arpa", RecordType::PTR);
    // Autodefined reverse on, no hostnames yet: NXDOMAIN from the VPC's reverse zone.
    assert_eq!(ptr().await.unwrap().0, Rcode::NXDOMAIN);
    let (status, text) = aws.ec2("ModifyVpcAttribute", &[("VpcId", &a.id), ("EnableDnsHostnames.Value", "true")]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(ptr().await.unwrap().1, ["7.8.0.127.in-addr.arpa. 60 IN PTR ip-127-0-8-7.ec2.internal."]);
    let config = aws
        .resolver_ok("UpdateResolverConfig", json!({ "ResourceId": a.id, "AutodefinedReverseFlag": "DISABLE" }))
        .await;
    assert_eq!(config["ResolverConfig"]["AutodefinedReverse"], "DISABLED");
    let got = aws.resolver_ok("GetResolverConfig", json!({ "ResourceId": a.id })).await;
    assert_eq!(got["ResolverConfig"]["AutodefinedReverse"], "DISABLED");
    // The reverse zone is gone: the recursive default (a fake answering every A) gets the PTR.
    let (rcode, answers) = ptr().await.unwrap();
    assert_eq!((rcode, answers.len()), (Rcode::NOERROR, 0));
    let (code, _) = aws
        .resolver_error("UpdateResolverConfig", json!({ "ResourceId": a.id, "AutodefinedReverseFlag": "MAYBE" }))
        .await;
    assert_eq!(code, "ValidationException");
    // enableDnsSupport off: the VPC resolver no longer answers.
    let (status, text) =
        aws.ec2("ModifyVpcAttribute", &[("VpcId", &a.id), ("EnableDnsHostnames.Value", "false")]).await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = aws.ec2("ModifyVpcAttribute", &[("VpcId", &a.id), ("EnableDnsSupport.Value", "false")]).await;
    assert_eq!(status, 200, "{text}");
    assert!(ask_from(client, a.resolver, "www.example.org", RecordType::A).await.is_none());
}
