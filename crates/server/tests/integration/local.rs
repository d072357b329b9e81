//! Local answers from the rules, seen through hickory-resolver.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use signpost_wire::{EdnsHeader, Message, Rcode, RecordType};

use crate::support::*;

const RULES: &str = r#"
default_group = "upstream"
rules = [{ suffix = "amazonaws.com", action = "redirect", ipv4 = "127.0.0.1", ipv6 = "none" }]
zones = [{ name = "corp.example", records = [
    "@ 3600 IN SOA ns.corp.example. hostmaster.corp.example. 1 7200 900 1209600 300",
    "@ 3600 IN NS ns.corp.example.",
    "ns 3600 IN A 10.0.0.53",
    "www 300 IN A 10.0.0.80",
    "alias 300 IN CNAME www",
] }]
"#;

async fn server() -> signpost_server::ServerHandle {
    start(RULES, None).await
}

#[tokio::test]
async fn redirected_names_answer_over_udp_and_tcp() {
    let server = server().await;
    for (protocol, address) in [(Transport::Udp, udp(&server)), (Transport::Tcp, tcp(&server))] {
        let resolver = resolver(protocol, address);
        let lookup = resolver.lookup_ip("sqs.us-east-1.amazonaws.com.").await.unwrap();
        let addresses: Vec<IpAddr> = lookup.iter().collect();
        assert_eq!(addresses, [IpAddr::V4(Ipv4Addr::LOCALHOST)], "{protocol:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn zone_answers_follow_cnames_and_give_negative_answers_with_soa() {
    let server = server().await;
    let resolver = resolver(Transport::Udp, udp(&server));
    let lookup = resolver.lookup("alias.corp.example.", hickory_resolver::proto::rr::RecordType::A).await.unwrap();
    let text: Vec<String> = lookup.answers().iter().map(|r| r.to_string()).collect();
    assert!(text.iter().any(|r| r.contains("CNAME")), "{text:?}");
    assert!(text.iter().any(|r| r.contains("10.0.0.80")), "{text:?}");

    let response = udp_exchange(
        udp(&server),
        &edns_query("missing.corp.example", RecordType::A, EdnsHeader::default()),
        Duration::from_secs(2),
    )
    .await
    .expect("an answer");
    let message = Message::parse(&response).unwrap();
    assert_eq!(message.rcode(), Ok(Rcode::NXDOMAIN));
    assert!(message.flags().aa());
    let soa = message.authority().unwrap().next().unwrap().unwrap();
    assert_eq!(soa.rtype(), RecordType::SOA);
    server.shutdown().await;
}

#[tokio::test]
async fn the_question_case_is_echoed() {
    let server = server().await;
    let bytes = query("SqS.Us-EaSt-1.AmAzOnAwS.CoM", RecordType::A);
    let response = udp_exchange(udp(&server), &bytes, Duration::from_secs(2)).await.expect("an answer");
    let message = Message::parse(&response).unwrap();
    assert_eq!(message.first_question().unwrap().unwrap().name().to_string(), "SqS.Us-EaSt-1.AmAzOnAwS.CoM.");
    assert_eq!(answers(&response), ["SqS.Us-EaSt-1.AmAzOnAwS.CoM. 60 IN A 127.0.0.1"]);
    server.shutdown().await;
}
