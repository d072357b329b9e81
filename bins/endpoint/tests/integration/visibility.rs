//! Private hosted zones are visible only to their VPCs; inbound endpoints
//! resolve with their VPC's view over Do53 and DoH; a DoH-only endpoint has
//! no Do53 at all.

use std::net::Ipv4Addr;
use std::time::Duration;

use signpost_endpoint::EndpointProtocol;
use signpost_server::Transport;
use signpost_wire::{Rcode, RecordType};

use crate::support::*;

const ZONES: &str = r#"
private_hosted_zones = [
    { name = "corp.example", vpcs = ["vpc-a"], records = ["www A 10.1.0.10"] },
    { name = "billing.internal", vpcs = ["vpc-b"], records = ["api A 10.2.0.10"] },
    { name = "shared.example", vpcs = ["vpc-a", "vpc-b"], records = ["db A 10.3.0.10"] },
]
"#;

#[tokio::test]
async fn a_vpc_sees_its_own_private_zones_and_not_another_vpcs() {
    let Basics { dir, recursive, .. } = basics().await;
    let endpoint = start(dir.path(), &two_vpcs(recursive.address(), ZONES)).await;
    let in_a = resolver_from(Transport::Udp, vpc_resolver(&endpoint, "vpc-a"), VPC_A_CLIENT);
    let in_b = resolver_from(Transport::Udp, vpc_resolver(&endpoint, "vpc-b"), VPC_B_CLIENT);

    assert_eq!(lookup_v4(&in_a, "www.corp.example.").await, [Ipv4Addr::new(10, 1, 0, 10)]);
    assert_eq!(lookup_v4(&in_a, "db.shared.example.").await, [Ipv4Addr::new(10, 3, 0, 10)]);
    // billing.internal is associated only with vpc-b: from vpc-a it is a
    // public name, answered by the recursive default.
    assert_eq!(lookup_v4(&in_a, "api.billing.internal.").await, [RECURSIVE_ANSWER]);

    assert_eq!(lookup_v4(&in_b, "api.billing.internal.").await, [Ipv4Addr::new(10, 2, 0, 10)]);
    assert_eq!(lookup_v4(&in_b, "db.shared.example.").await, [Ipv4Addr::new(10, 3, 0, 10)]);
    assert_eq!(lookup_v4(&in_b, "www.corp.example.").await, [RECURSIVE_ANSWER]);
    assert_eq!(recursive.names(), ["api.billing.internal.", "www.corp.example."]);

    // A name the zone lacks is NXDOMAIN, never forwarded.
    let (rcode, _) = ask(vpc_resolver(&endpoint, "vpc-a"), VPC_A_CLIENT, "nope.corp.example").await.unwrap();
    assert_eq!(rcode, Rcode::NXDOMAIN);
    assert_eq!(recursive.names().len(), 2);

    // The VPC resolver answers its own VPC only.
    let (rcode, _) = ask(vpc_resolver(&endpoint, "vpc-a"), VPC_B_CLIENT, "www.corp.example").await.unwrap();
    assert_eq!(rcode, Rcode::REFUSED);
    endpoint.shutdown().await;
}

fn inbound_config(protocols: &str, certificate: &TestTls) -> String {
    format!("{ZONES}{}", inbound_endpoint(protocols, Some(certificate)))
}

#[tokio::test]
async fn on_premises_clients_resolve_a_private_zone_through_the_inbound_endpoint_over_do53_and_doh() {
    let Basics { dir, certificate, recursive } = basics().await;
    let text = two_vpcs(recursive.address(), &inbound_config(r#"["Do53", "DoH"]"#, &certificate));
    let endpoint = start(dir.path(), &text).await;

    let do53 = inbound(&endpoint, "rslvr-in-a", "vpc-a", Transport::Udp);
    let tcp = inbound(&endpoint, "rslvr-in-a", "vpc-a", Transport::Tcp);
    let doh = inbound(&endpoint, "rslvr-in-a", "vpc-a", Transport::Doh);
    assert_eq!((do53.len(), tcp.len(), doh.len()), (2, 2, 2), "one listener per address and transport");
    let addresses: Vec<String> = do53.iter().map(|a| a.ip().to_string()).collect();
    assert_eq!(addresses, ["127.0.1.10", "127.0.1.11"]);

    for address in do53 {
        let client = resolver_from(Transport::Udp, address, ONPREM_CLIENT);
        assert_eq!(lookup_v4(&client, "www.corp.example.").await, [Ipv4Addr::new(10, 1, 0, 10)], "{address}");
        // The endpoint's VPC view: vpc-b's zone is not visible.
        assert_eq!(lookup_v4(&client, "api.billing.internal.").await, [RECURSIVE_ANSWER]);
    }
    for address in tcp {
        let client = resolver_from(Transport::Tcp, address, ONPREM_CLIENT);
        assert_eq!(lookup_v4(&client, "www.corp.example.").await, [Ipv4Addr::new(10, 1, 0, 10)], "{address}");
    }
    for address in doh {
        let client = certificate.doh_client(address);
        assert_eq!(lookup_v4(&client, "www.corp.example.").await, [Ipv4Addr::new(10, 1, 0, 10)], "{address}");
    }
    endpoint.shutdown().await;
}

#[tokio::test]
async fn an_endpoint_with_only_doh_has_no_do53_listener_at_all() {
    let Basics { dir, certificate, recursive } = basics().await;
    let text = two_vpcs(recursive.address(), &inbound_config(r#"["DoH"]"#, &certificate));
    let endpoint = start(dir.path(), &text).await;
    let listeners: Vec<_> = endpoint.listeners().into_iter().filter(|l| l.id.starts_with("rslvr-in-a/")).collect();
    assert_eq!(listeners.len(), 2, "{listeners:?}");
    assert!(listeners.iter().all(|l| l.transport == Transport::Doh && l.protocol == EndpointProtocol::DoH));
    assert!(inbound(&endpoint, "rslvr-in-a", "vpc-a", Transport::Udp).is_empty());
    assert!(inbound(&endpoint, "rslvr-in-a", "vpc-a", Transport::Tcp).is_empty());

    let doh = inbound(&endpoint, "rslvr-in-a", "vpc-a", Transport::Doh);
    for address in &doh {
        // Plain DNS over UDP to the endpoint's address gets nothing...
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&Query::new("www.corp.example", RecordType::A).id(1).to_bytes(), address).await.unwrap();
        let mut buffer = [0u8; 512];
        let reply = tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buffer)).await;
        assert!(!matches!(reply, Ok(Ok(_))), "a UDP answer from a DoH-only endpoint");
        // ...and Do53 over TCP is not DNS there (the port speaks TLS).
        let client = resolver(Transport::Tcp, *address);
        assert!(lookup_v4(&client, "www.corp.example.").await.is_empty());
        // DoH answers.
        let client = certificate.doh_client(*address);
        assert_eq!(lookup_v4(&client, "www.corp.example.").await, [Ipv4Addr::new(10, 1, 0, 10)]);
    }
    endpoint.shutdown().await;
}

#[tokio::test]
async fn doh_fips_endpoints_serve_doh_with_the_fips_policy() {
    let Basics { dir, certificate, recursive } = basics().await;
    let text = two_vpcs(recursive.address(), &inbound_config(r#"["Do53", "DoH-FIPS"]"#, &certificate));
    let endpoint = start(dir.path(), &text).await;
    let fips: Vec<_> = endpoint.listeners().into_iter().filter(|l| l.protocol == EndpointProtocol::DohFips).collect();
    assert_eq!(fips.len(), 2);
    let planned = endpoint.deployment().server.listeners.iter().filter(|l| l.tls_fips).count();
    assert_eq!(planned, 2);
    // rcgen's default key is ECDSA P-256: within the FIPS policy, so hickory connects.
    let client = certificate.doh_client(fips[0].address);
    assert_eq!(lookup_v4(&client, "www.corp.example.").await, [Ipv4Addr::new(10, 1, 0, 10)]);
    endpoint.shutdown().await;
}

#[tokio::test]
async fn a_private_zone_from_a_master_file_answers_through_the_inbound_endpoint() {
    let Basics { dir, recursive, .. } = basics().await;
    // The file is named relative to the configuration file's directory.
    std::fs::create_dir_all(dir.join("zones")).unwrap();
    std::fs::write(
        dir.join("zones/corp.example.zone"),
        "$TTL 120\n\
         @      IN SOA ns.corp.example. hostmaster.corp.example. 7 3600 600 86400 60\n\
         www    IN A 10.1.0.20\n\
         alias  IN CNAME www\n",
    )
    .unwrap();
    let text = two_vpcs(
        recursive.address(),
        r#"
private_hosted_zones = [
    { name = "corp.example", vpcs = ["vpc-a"], file = "zones/corp.example.zone", records = ["api A 10.1.0.22"] },
]

[[inbound_endpoints]]
id = "rslvr-in-a"
vpc = "vpc-a"
addresses = ["127.0.1.10", "127.0.1.11"]
port = 0
"#,
    );
    let endpoint = start(dir.path(), &text).await;
    assert!(endpoint.deployment().describe().contains("private hosted zone corp.example (4 records)"));
    let udp = inbound(&endpoint, "rslvr-in-a", "vpc-a", Transport::Udp);
    for address in &udp {
        let (rcode, answers) = ask(*address, ONPREM_CLIENT, "www.corp.example").await.unwrap();
        assert_eq!((rcode, answers), (Rcode::NOERROR, vec!["www.corp.example. 120 IN A 10.1.0.20".to_string()]));
        // The file's CNAME is followed inside the zone.
        let (_, answers) = ask(*address, ONPREM_CLIENT, "alias.corp.example").await.unwrap();
        assert_eq!(
            answers,
            ["alias.corp.example. 120 IN CNAME www.corp.example.", "www.corp.example. 120 IN A 10.1.0.20"]
        );
        // Inline records sit beside the file's.
        let (_, answers) = ask(*address, ONPREM_CLIENT, "api.corp.example").await.unwrap();
        assert_eq!(answers, ["api.corp.example. 300 IN A 10.1.0.22"]);
        // A name the file lacks is NXDOMAIN from the zone, not forwarded.
        let (rcode, _) = ask(*address, ONPREM_CLIENT, "nope.corp.example").await.unwrap();
        assert_eq!(rcode, Rcode::NXDOMAIN);
    }
    let tcp = inbound(&endpoint, "rslvr-in-a", "vpc-a", Transport::Tcp);
    let client = resolver_from(Transport::Tcp, tcp[0], ONPREM_CLIENT);
    assert_eq!(lookup_v4(&client, "www.corp.example.").await, [Ipv4Addr::new(10, 1, 0, 20)]);
    assert!(recursive.names().is_empty(), "{:?}", recursive.names());
    endpoint.shutdown().await;
}
