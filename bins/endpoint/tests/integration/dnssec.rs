//! Route 53 Resolver's per-VPC DNSSEC validation through the API: the
//! recursive default is Knot DNS serving the signed test hierarchy of
//! crates/dnssec/tests/zones on loopback, `[dnssec]` names that hierarchy's
//! root key. A VPC that enabled validation gets SERVFAIL for bogus answers
//! at once, the other VPC does not; the setting survives a restart with
//! `--state`; FORWARD rules' answers are not validated (the target resolver
//! validates, as the service documents).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::json;
use signpost_endpoint::service::{Service, ServiceOptions};
use signpost_testkit::{Knot, signed_test_zones, udp_exchange_from};
use signpost_wire::{EdnsHeader, Message, Rcode, RecordType};

use crate::aws::Aws;
use crate::support::*;

/// RCODE, AD and the answer's types, for a query with DO and CD set (which
/// Route 53 Resolver ignores).
async fn query(source: IpAddr, server: SocketAddr, name: &str) -> (Rcode, bool, Vec<RecordType>) {
    let mut bytes = Query::new(name, RecordType::A)
        .edns(EdnsHeader { udp_payload_size: 1232, version: 0, dnssec_ok: true })
        .to_bytes();
    bytes[3] |= 0x10;
    let response = udp_exchange_from(source, server, &bytes, Duration::from_secs(5)).await.expect("an answer");
    let message = Message::parse(&response).expect("parses");
    let types = message.answers().expect("answers").map(|record| record.expect("record").rtype()).collect();
    (message.rcode().expect("rcode"), message.flags().ad(), types)
}

/// The VPC resolver's address (its `signpost:resolver` tag).
async fn resolver_of(aws: &Aws, vpc: &str) -> SocketAddr {
    let (_, described) = aws.ec2("DescribeVpcs", &[("VpcId.1", vpc)]).await;
    let tag = described.split("<key>signpost:resolver</key><value>").nth(1).unwrap();
    tag[..tag.find('<').unwrap()].parse().unwrap()
}

async fn status(aws: &Aws, vpc: &str) -> String {
    let got = aws.resolver_ok("GetResolverDnssecConfig", json!({ "ResourceId": vpc })).await;
    got["ResolverDNSSECConfig"]["ValidationStatus"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn validation_is_per_vpc_live_and_survives_a_restart() {
    let knot = Knot::start_signed_test_hierarchy().await;
    let dir = TempDir::new();
    let config = dir.join("endpoint.toml");
    let anchor = signed_test_zones().join("anchor.key");
    std::fs::write(&config, format!("[dnssec]\ntrust_anchor_files = [{:?}]\n", anchor.display().to_string())).unwrap();
    let options = ServiceOptions {
        config: Some(config),
        api: Some("127.0.0.1:0".parse().unwrap()),
        state: Some(dir.join("state")),
        dns_port: Some(0),
        doh_port: Some(0),
        recursive: vec![signpost_endpoint::HostPort { ip: knot.address().ip(), port: Some(knot.address().port()) }],
        status_delay_ms: Some(100),
        ..ServiceOptions::default()
    };
    let service = Service::start(options.clone(), |_| {}).await.unwrap_or_else(|error| panic!("{error}"));
    let aws = Aws::new(service.api_address().unwrap());
    let a = crate::api::vpc(&aws, "127.0.8.0/24").await;
    let b = crate::api::vpc(&aws, "127.0.9.0/24").await;
    let in_a: IpAddr = "127.0.8.1".parse().unwrap();
    let in_b: IpAddr = "127.0.9.1".parse().unwrap();

    // Off by default: the tampered answer goes through.
    assert_eq!(status(&aws, &a.id).await, "DISABLED");
    assert_eq!(query(in_a, a.resolver, "www.tampered.test.").await.0, Rcode::NOERROR);

    let updated =
        aws.resolver_ok("UpdateResolverDnssecConfig", json!({ "ResourceId": a.id, "Validation": "ENABLE" })).await;
    let config = &updated["ResolverDNSSECConfig"];
    assert_eq!(config["ValidationStatus"], "ENABLING", "{updated}");
    assert_eq!(config["ResourceId"], a.id.as_str());
    assert!(config["Id"].as_str().unwrap().starts_with("rdsc-"), "{updated}");
    assert_eq!(config["OwnerId"].as_str().unwrap().len(), 12, "{updated}");
    assert_eq!(status(&aws, &a.id).await, "ENABLED");
    let listed = aws
        .resolver_ok(
            "ListResolverDnssecConfigs",
            json!({ "Filters": [{ "Name": "ValidationStatus", "Values": ["ENABLED"] }] }),
        )
        .await;
    let items = listed["ResolverDnssecConfigs"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["ResourceId"], a.id.as_str());

    // In force as soon as the call returned, for vpc-a only (the cache held the tampered answer).
    for (name, rcode) in [
        ("www.tampered.test.", Rcode::SERVFAIL),
        ("www.expired.test.", Rcode::SERVFAIL),
        ("www.nokey.test.", Rcode::SERVFAIL),
        ("www.insecure.test.", Rcode::NOERROR),
    ] {
        assert_eq!(query(in_a, a.resolver, name).await.0, rcode, "{name} from vpc-a");
    }
    assert_eq!(query(in_b, b.resolver, "www.tampered.test.").await.0, Rcode::NOERROR);
    // Secure: answered as any other answer, DO and CD ignored (no AD, no RRSIG), as the service does.
    assert_eq!(query(in_a, a.resolver, "www.nsec.test.").await, (Rcode::NOERROR, false, vec![RecordType::A]));
    assert_eq!(
        query(in_b, b.resolver, "www.nsec.test.").await,
        (Rcode::NOERROR, false, vec![RecordType::A, RecordType::RRSIG]),
        "vpc-b relays what the upstream sent"
    );

    // Bad requests.
    let (code, _) =
        aws.resolver_error("UpdateResolverDnssecConfig", json!({ "ResourceId": a.id, "Validation": "ENABLED" })).await;
    assert_eq!(code, "ValidationException");
    let (code, _) = aws
        .resolver_error("UpdateResolverDnssecConfig", json!({ "ResourceId": "vpc-0000", "Validation": "ENABLE" }))
        .await;
    assert_eq!(code, "ResourceNotFoundException");

    // A restart on the same state keeps the setting.
    service.shutdown().await;
    let service = Service::start(options.clone(), |_| {}).await.unwrap_or_else(|error| panic!("{error}"));
    let aws = Aws::new(service.api_address().unwrap());
    assert_eq!(status(&aws, &a.id).await, "ENABLED");
    let resolver = resolver_of(&aws, &a.id).await;
    assert_eq!(query(in_a, resolver, "www.tampered.test.").await.0, Rcode::SERVFAIL);

    // USE_LOCAL_RESOURCE_SETTING: no profile here, so the VPC does not validate.
    let updated = aws
        .resolver_ok(
            "UpdateResolverDnssecConfig",
            json!({ "ResourceId": a.id, "Validation": "USE_LOCAL_RESOURCE_SETTING" }),
        )
        .await;
    assert_eq!(updated["ResolverDNSSECConfig"]["ValidationStatus"], "UPDATING_TO_USE_LOCAL_RESOURCE_SETTING");
    assert_eq!(status(&aws, &a.id).await, "USE_LOCAL_RESOURCE_SETTING");
    assert_eq!(query(in_a, resolver, "www.tampered.test.").await.0, Rcode::NOERROR);
    let updated =
        aws.resolver_ok("UpdateResolverDnssecConfig", json!({ "ResourceId": a.id, "Validation": "DISABLE" })).await;
    assert_eq!(updated["ResolverDNSSECConfig"]["ValidationStatus"], "DISABLING");
    assert_eq!(status(&aws, &a.id).await, "DISABLED");
    service.shutdown().await;
}

#[tokio::test]
async fn forward_rules_are_not_validated_and_the_toml_model_has_the_setting() {
    let knot = Knot::start_signed_test_hierarchy().await;
    let dir = TempDir::new();
    let anchor = signed_test_zones().join("anchor.key");
    // vpc-a validates; a FORWARD rule sends tampered.test to the same Knot.
    let text = format!(
        "resolver_port = 0\nudp_workers = 1\nrecursive = {{ servers = [\"{knot}\"] }}\n\
         [dnssec]\ntrust_anchor_files = [{anchor:?}]\n\n\
         [[vpcs]]\nid = \"vpc-a\"\ncidrs = [\"127.0.1.0/24\"]\ndnssec_validation = \"enable\"\n\n\
         [[vpcs]]\nid = \"vpc-b\"\ncidrs = [\"127.0.2.0/24\"]\n\n\
         [[outbound_endpoints]]\nid = \"rslvr-out-a\"\nvpc = \"vpc-a\"\n\n{}",
        forward_rule(
            "rslvr-rr-tampered",
            "tampered.test",
            &format!("[{{ ip = \"127.0.0.1\", port = {} }}]", knot.address().port()),
            "[\"vpc-a\"]",
        ),
        knot = knot.address(),
        anchor = anchor.display().to_string(),
    );
    let endpoint = start(dir.path(), &text).await;
    let in_a = vpc_resolver(&endpoint, "vpc-a");
    assert_eq!(query(VPC_A_CLIENT, in_a, "www.expired.test.").await.0, Rcode::SERVFAIL);
    assert_eq!(query(VPC_A_CLIENT, in_a, "www.nsec.test.").await.0, Rcode::NOERROR);
    assert_eq!(query(VPC_A_CLIENT, in_a, "www.tampered.test.").await.0, Rcode::NOERROR, "a FORWARD rule's answer");
    let in_b = vpc_resolver(&endpoint, "vpc-b");
    assert_eq!(query(VPC_B_CLIENT, in_b, "www.expired.test.").await.0, Rcode::NOERROR);
    endpoint.shutdown().await;

    // A bad anchor names the field.
    let bad = "vpcs = [{ id = \"vpc-a\", cidrs = [\"127.0.1.0/24\"], dnssec_validation = \"enable\" }]\n\
               [dnssec]\ntrust_anchors = [\"not a record\"]\n";
    let error = config(dir.path(), bad).compile().err().expect("a bad anchor is refused");
    assert!(error.to_string().contains("dnssec.trust_anchors[0]"), "{error}");
}
