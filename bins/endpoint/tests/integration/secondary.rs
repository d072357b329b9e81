//! Secondary DNS in a VPC: a private hosted zone that follows an
//! "on-premises" primary (a Signpost server giving the zone out by
//! transfer) — first transfer, NOTIFY, ListResourceRecordSets, SERVFAIL
//! after expiry, the copy kept across `kill -9` in the state directory.
//! The same against Knot DNS as primary is in .ci/interop (transfer).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use signpost_rules::Zone;
use signpost_server::transfer::{NotifySchedule, TransferPolicy, ZoneTransfers, send_notify};
use signpost_server::{Server, ServerHandle, Transport as ServerTransport};
use signpost_wire::{NameBuf, Rcode, RecordBuf};

use crate::aws::fields;
use crate::support::*;

const PATIENCE: Duration = Duration::from_secs(10);

fn zone(serial: u32, refresh: u32, address: &str) -> Zone {
    let apex: NameBuf = "sec.example.".parse().unwrap();
    let records: Vec<RecordBuf> = [
        format!("sec.example. 3600 IN SOA ns1.sec.example. admin.sec.example. {serial} {refresh} 1 3 60"),
        "sec.example. 3600 IN NS ns1.sec.example.".to_string(),
        "ns1.sec.example. 3600 IN A 192.0.2.53".to_string(),
        format!("www.sec.example. 60 IN A {address}"),
    ]
    .iter()
    .map(|text| text.parse().unwrap())
    .collect();
    Zone::from_records(apex, records).unwrap()
}

/// The "on-premises" primary: answers the SOA query from its rules and
/// gives the zone out to loopback.
async fn primary(transfers: Arc<ZoneTransfers>) -> (ServerHandle, SocketAddr) {
    let server =
        Server::builder().udp_and_tcp("127.0.0.1:0".parse().unwrap()).query_handler(transfers).start().await.unwrap();
    let tcp = server.listeners().into_iter().find(|l| l.transport == ServerTransport::Tcp).unwrap().address;
    (server, tcp)
}

/// Put a new version of the zone on the primary.
fn serve(transfers: &ZoneTransfers, server: &ServerHandle, zone: Zone) {
    let mut rules = signpost_rules::RuleSet::builder();
    rules.zone(signpost_rules::ZoneSpec::new(zone.clone()));
    server.set_rules(rules.build().unwrap());
    transfers
        .serve(Arc::new(zone), TransferPolicy { allow: vec!["127.0.0.0/8".parse().unwrap()], ..Default::default() });
}

/// Ask until the answer is `expected` (the refresh runs in the background).
async fn eventually(running: &RunningBinary, resolver: SocketAddr, client: IpAddr, expected: (Rcode, Vec<String>)) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let answer = ask(resolver, client, "www.sec.example").await;
        if answer.as_ref() == Some(&expected) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {expected:?}, last answer {answer:?}\n{}",
            running.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn a(address: &str) -> (Rcode, Vec<String>) {
    (Rcode::NOERROR, vec![format!("www.sec.example. 60 IN A {address}")])
}

#[tokio::test]
async fn a_private_hosted_zone_follows_its_primary_by_transfer_and_notify() {
    let dir = TempDir::new();
    let recursive = FakeUpstream::answering(RECURSIVE_ANSWER).await;
    let transfers = Arc::new(ZoneTransfers::new());
    let (primary_server, primary_address) = primary(transfers.clone()).await;
    serve(&transfers, &primary_server, zone(1, 3600, "10.31.0.1"));

    let state = dir.join("state");
    // The inbound endpoint is where the on-premises primary sends NOTIFY.
    let resources = format!(
        r#"
        [[private_hosted_zones]]
        name = "sec.example"
        vpcs = ["vpc-sec"]
        records = [{ROUTE53_APEX_RECORDS},
                   "stale A 10.31.9.9"]
        [private_hosted_zones.secondary]
        primaries = ["{primary_address}"]
        "#
    );
    let WithInbound { running, args, aws, port, inbound_port } =
        start_with_inbound(&dir, ("sec", 31), &resources, Some(&state), recursive.address()).await;
    let resolver = SocketAddr::new("127.0.31.2".parse().unwrap(), port);
    let client: IpAddr = "127.0.31.1".parse().unwrap();

    // The first transfer reaches the VPC resolver and the API.
    eventually(&running, resolver, client, a("10.31.0.1")).await;
    let (status, listed) = aws.route53("GET", "hostedzone/sec.example/rrset", "").await;
    assert_eq!(status, 200, "{listed}");
    let values = fields(&listed, "Value");
    assert!(values.contains(&"10.31.0.1".to_string()), "{listed}");
    assert!(values.contains(&"192.0.2.53".to_string()), "{listed}");
    // Route 53's SOA and NS stay, with the primary's serial; records the primary lacks go.
    assert!(
        values.contains(&"ns-1536.awsdns-00.co.uk. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400".to_string()),
        "{listed}"
    );
    assert!(!values.contains(&"10.31.9.9".to_string()), "{listed}");
    assert!(!values.contains(&"ns1.sec.example.".to_string()), "{listed}");

    // A change on the primary arrives with NOTIFY (the refresh timer is an hour).
    serve(&transfers, &primary_server, zone(2, 1, "10.31.0.2"));
    let inbound = SocketAddr::new("127.0.31.10".parse().unwrap(), inbound_port);
    let outcomes =
        send_notify(&[inbound], &"sec.example.".parse().unwrap(), None, None, NotifySchedule::default()).await;
    assert_eq!(outcomes[0].rcode, Some(Rcode::NOERROR), "{outcomes:?}");
    eventually(&running, resolver, client, a("10.31.0.2")).await;
    let (_, listed) = aws.route53("GET", "hostedzone/sec.example/rrset", "").await;
    assert!(
        fields(&listed, "Value").iter().any(|value| value.contains("awsdns-hostmaster.amazon.com. 2 7200")),
        "{listed}"
    );

    // The copy survives kill -9 in the state directory.
    drop(running);
    tokio::time::sleep(Duration::from_millis(300)).await;
    primary_server.shutdown().await;
    let running = start_binary(&args, "info").await;
    assert_eq!(ask(resolver, client, "www.sec.example").await, Some(a("10.31.0.2")));

    // With the primary gone, the zone expires (SOA expire 3 s) and answers SERVFAIL.
    eventually(&running, resolver, client, (Rcode::SERVFAIL, vec![])).await;
    drop(running);
}
