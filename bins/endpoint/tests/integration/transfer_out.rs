//! Private hosted zones given out by zone transfer (the other direction of
//! secondary.rs): AXFR and IXFR through an inbound endpoint, signed with a
//! `[[tsig_keys]]` key, NOTIFY to the secondaries at start-up and after
//! each `ChangeResourceRecordSets` (the serial raised, which Route 53 does
//! not do), and the `signpost:transfer-*` tags through the API. Knot DNS as
//! the secondary is in .ci/interop (transfer).

use std::net::SocketAddr;
use std::time::Duration;

use signpost_rules::Zone;
use signpost_upstream::{Error as UpstreamError, TransferClient};
use signpost_wire::{NameBuf, Rcode, Transfer, TransferProblem, TransferRequest, TsigAlgorithm, TsigKey};

use crate::aws::fields;
use crate::support::*;

const SECRET: &str = "c2lnbnBvc3QtdGVzdC1zZWNyZXQtMzItYnl0ZXMhIQ==";

fn key() -> TsigKey {
    TsigKey::from_base64("xfr.".parse().unwrap(), TsigAlgorithm::HmacSha256, SECRET).unwrap()
}

#[tokio::test]
async fn private_zones_are_given_out_by_transfer_and_notify_their_secondaries_of_api_changes() {
    let dir = TempDir::new();
    let recursive = FakeUpstream::answering(RECURSIVE_ANSWER).await;
    let mut secondary = signpost_testkit::NotifiedSecondary::start().await;
    let secondary_address = secondary.address();
    // The on-premises secondaries transfer through the inbound endpoint.
    let resources = format!(
        r#"
        [[tsig_keys]]
        name = "xfr."
        secret = "{SECRET}"

        [[private_hosted_zones]]
        name = "out.example"
        vpcs = ["vpc-out"]
        records = [{ROUTE53_APEX_RECORDS},
                   "www 60 A 10.33.0.1"]
        [private_hosted_zones.transfer]
        allow = ["127.0.0.0/8"]
        tsig_key = "xfr."
        notify = ["{secondary_address}"]

        [[private_hosted_zones]]
        name = "tagged.example"
        vpcs = ["vpc-out"]
        records = ["www 60 A 10.33.1.1"]
        "#
    );
    let WithInbound { running, aws, inbound_port, .. } =
        start_with_inbound(&dir, ("out", 33), &resources, None, recursive.address()).await;
    let inbound = SocketAddr::new("127.0.33.10".parse().unwrap(), inbound_port);
    let apex: NameBuf = "out.example.".parse().unwrap();

    // Told at start-up; a signed AXFR through the inbound endpoint gives the zone.
    assert_eq!(secondary.next(|| running.stderr()).await, ("out.example.".to_string(), 1));
    let client = TransferClient::new(inbound).with_key(Some(key())).with_timeout(Duration::from_secs(5));
    let first = client.transfer(&apex, &TransferRequest::Axfr).await.unwrap();
    let first = Zone::from_transfer(apex.clone(), &first).unwrap();
    assert_eq!(first.serial().0, 1);
    assert!(first.records().any(|record| record.to_string() == "www.out.example. 60 IN A 10.33.0.1"));
    // Unsigned: refused (the zone names a key).
    let unsigned = TransferClient::new(inbound).with_timeout(Duration::from_secs(5));
    let UpstreamError::TransferProtocol { source, .. } =
        unsigned.transfer(&apex, &TransferRequest::Axfr).await.unwrap_err()
    else {
        panic!("a protocol error")
    };
    assert_eq!(
        source,
        signpost_wire::Error::Transfer { message: 0, problem: TransferProblem::Rcode { rcode: Rcode::REFUSED } }
    );

    // A change through the API raises the serial (Route 53 would not) and tells the secondary.
    let (status, body) = aws.change_record("out.example", "CREATE", "new.out.example", "A", 60, &["10.33.0.2"]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(secondary.next(|| running.stderr()).await, ("out.example.".to_string(), 2));
    let (_, listed) = aws.route53("GET", "hostedzone/out.example/rrset", "").await;
    assert!(
        fields(&listed, "Value").iter().any(|value| value.contains("awsdns-hostmaster.amazon.com. 2 7200")),
        "{listed}"
    );
    // IXFR from serial 1: the one difference.
    let Transfer::Incremental { diffs, .. } =
        client.transfer(&apex, &TransferRequest::Ixfr { soa: first.soa().clone() }).await.unwrap()
    else {
        panic!("an incremental transfer")
    };
    assert_eq!(diffs.len(), 1);
    let added: Vec<String> = diffs[0].added.iter().map(ToString::to_string).collect();
    assert_eq!(added, ["new.out.example. 60 IN A 10.33.0.2"]);
    assert!(diffs[0].deleted.is_empty());

    // The tags give the second zone out, without a key.
    let tagged: NameBuf = "tagged.example.".parse().unwrap();
    let refused = unsigned.transfer(&tagged, &TransferRequest::Axfr).await.unwrap_err();
    assert!(matches!(refused, UpstreamError::TransferProtocol { .. }), "{refused}");
    let body = r#"<ChangeTagsForResourceRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><AddTags><Tag><Key>signpost:transfer-allow</Key><Value>127.0.0.1</Value></Tag></AddTags></ChangeTagsForResourceRequest>"#;
    let (status, answer) = aws.route53("POST", "tags/hostedzone/tagged.example", body).await;
    assert_eq!(status, 200, "{answer}");
    let transfer = unsigned.transfer(&tagged, &TransferRequest::Axfr).await.unwrap();
    let copy = Zone::from_transfer(tagged, &transfer).unwrap();
    assert!(copy.records().any(|record| record.to_string() == "www.tagged.example. 60 IN A 10.33.1.1"));
    drop(running);
}
