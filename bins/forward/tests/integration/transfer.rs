//! `[[auth_zones]]` secondaries against an in-process Signpost primary:
//! transfers signed with a `[[tsig_keys]]` key, SERVFAIL while the zone
//! has no data without `fallback_enabled`, forwarding with it. Knot DNS as
//! the primary is in .ci/interop (transfer).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use signpost_rules::{RuleSet, Zone, ZoneSpec};
use signpost_server::transfer::{TransferPolicy, ZoneTransfers};
use signpost_server::{Server, ServerHandle, Transport as ServerTransport};
use signpost_wire::{Rcode, RecordBuf, RecordType, TsigAlgorithm, TsigKey};

use crate::support::*;

const SECRET: &str = "c2lnbnBvc3QtdGVzdC1zZWNyZXQtMzItYnl0ZXMhIQ==";

fn zone() -> Zone {
    let records: Vec<RecordBuf> =
        ["xfr.example. 3600 IN SOA ns.xfr.example. host.xfr.example. 5 1 1 3 60", "www.xfr.example. 60 IN A 10.5.0.1"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect();
    Zone::from_records("xfr.example.".parse().unwrap(), records).unwrap()
}

/// A primary that gives the zone out only to requests signed with `transfer.`.
async fn signed_primary() -> (ServerHandle, SocketAddr) {
    let key = TsigKey::from_base64("transfer.".parse().unwrap(), TsigAlgorithm::HmacSha256, SECRET).unwrap();
    let transfers = Arc::new(ZoneTransfers::new());
    let policy = TransferPolicy { allow: vec!["127.0.0.0/8".parse().unwrap()], keys: vec![key], require_key: true };
    transfers.serve(Arc::new(zone()), policy);
    let mut rules = RuleSet::builder();
    rules.zone(ZoneSpec::new(zone()));
    let server = Server::builder()
        .udp_and_tcp("127.0.0.1:0".parse().unwrap())
        .rules(rules.build().unwrap())
        .query_handler(transfers)
        .start()
        .await
        .unwrap();
    let tcp = server.listeners().into_iter().find(|l| l.transport == ServerTransport::Tcp).unwrap().address;
    (server, tcp)
}

fn config(dir: &TempDir, primary: SocketAddr, upstream: SocketAddr, fallback: bool) -> String {
    let text = format!(
        "[[listeners]]\naddress = \"127.0.0.1\"\nport = 0\ntransport = \"udp\"\nworkers = 1\n\n\
         [[forward_zones]]\nname = \".\"\nservers = [\"{upstream}\"]\n\n\
         [[tsig_keys]]\nname = \"transfer.\"\nalgorithm = \"hmac-sha256\"\nsecret = \"{SECRET}\"\n\n\
         [[auth_zones]]\nname = \"xfr.example\"\nprimaries = [\"{primary}\"]\nzonefile = \"xfr.example.zone\"\n\
         tsig_key = \"transfer.\"\nfallback_enabled = {fallback}\n"
    );
    dir.write("forward.toml", &text).to_string_lossy().into_owned()
}

async fn answers(server: SocketAddr, expected: (Rcode, Vec<String>), child: &RunningBinary) {
    let seen = eventually(Duration::from_secs(10), || {
        let expected = expected.clone();
        async move { ask(server, "www.xfr.example", RecordType::A).await == Some(expected) }
    })
    .await;
    assert!(seen, "never answered {expected:?}; log:\n{}", child.stderr());
}

#[tokio::test]
async fn a_signed_secondary_answers_servfail_once_expired_without_fallback() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
    let (primary, primary_address) = signed_primary().await;
    let dir = TempDir::new();
    let config = config(&dir, primary_address, upstream.address(), false);
    let (child, udp) = start_binary(&["--config", &config]).await;
    answers(udp, (Rcode::NOERROR, vec!["www.xfr.example. 60 IN A 10.5.0.1".into()]), &child).await;
    assert!(std::fs::read_to_string(dir.join("xfr.example.zone")).unwrap().contains("10.5.0.1"));

    // The primary goes away: after the SOA's three-second expire, SERVFAIL, never the upstream.
    primary.shutdown().await;
    answers(udp, (Rcode::SERVFAIL, vec![]), &child).await;
    assert_eq!(upstream.query_count(), 0);
    assert!(stop(child).await);
}

#[tokio::test]
async fn without_data_the_zone_fails_or_falls_back_as_fallback_enabled_says() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
    let nobody = closed_udp_port();
    let dir = TempDir::new();
    let (child, udp) = start_binary(&["--config", &config(&dir, nobody, upstream.address(), false)]).await;
    assert_eq!(ask(udp, "www.xfr.example", RecordType::A).await, Some((Rcode::SERVFAIL, vec![])));
    assert!(stop(child).await);

    let (child, udp) = start_binary(&["--config", &config(&dir, nobody, upstream.address(), true)]).await;
    let (rcode, lines) = ask(udp, "www.xfr.example", RecordType::A).await.unwrap();
    assert_eq!((rcode, lines.len()), (Rcode::NOERROR, 1), "forwarded: {lines:?}");
    assert!(upstream.query_count() > 0);
    assert!(stop(child).await);
}

fn zone_file(serial: u32, address: &str) -> String {
    format!(
        "$ORIGIN out.example.\n@ 3600 IN SOA ns host {serial} 3600 600 86400 60\n@ 3600 IN NS ns\nns 60 IN A 10.6.0.53\n\
         www 60 IN A {address}\n"
    )
}

#[tokio::test]
async fn a_zone_given_out_notifies_its_secondaries_at_start_up_and_after_a_reload_with_a_new_serial() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
    let mut secondary = signpost_testkit::NotifiedSecondary::start().await;
    let secondary_address = secondary.address();
    let dir = TempDir::new();
    dir.write("out.example.zone", zone_file(5, "10.6.0.1"));
    let text = format!(
        "[[listeners]]\naddress = \"127.0.0.1\"\nport = 0\ntransport = \"udp\"\nworkers = 1\n\n\
         [[listeners]]\naddress = \"127.0.0.1\"\nport = 0\ntransport = \"tcp\"\n\n\
         [[forward_zones]]\nname = \".\"\nservers = [\"{upstream}\"]\n\n\
         [[tsig_keys]]\nname = \"transfer.\"\nsecret = \"{SECRET}\"\n\n\
         [[auth_zones]]\nname = \"out.example\"\nzonefile = \"out.example.zone\"\n\
         allow_transfer = [\"127.0.0.0/8\"]\ntsig_key = \"transfer.\"\nnotify = [\"{secondary_address}\"]\n",
        upstream = upstream.address()
    );
    let config = dir.write("forward.toml", &text).to_string_lossy().into_owned();
    let (child, _) = start_binary(&["--config", &config]).await;
    assert_eq!(secondary.next(|| child.stderr()).await.1, 5, "told at start-up");

    // A reload with the same serial tells no one; a new serial does.
    child.signal(Signal::Hangup).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(secondary.try_next().is_none(), "NOTIFY without a change");
    dir.write("out.example.zone", zone_file(6, "10.6.0.2"));
    child.signal(Signal::Hangup).await.unwrap();
    assert_eq!(secondary.next(|| child.stderr()).await.1, 6, "told after the reload");

    // What the secondary then transfers is the new version, signed.
    let tcp = child.addresses(|line| line.strip_prefix("listening on tcp ")?.parse().ok())[0];
    let key = TsigKey::from_base64("transfer.".parse().unwrap(), TsigAlgorithm::HmacSha256, SECRET).unwrap();
    let client = signpost_upstream::TransferClient::new(tcp).with_key(Some(key));
    let transfer =
        client.transfer(&"out.example.".parse().unwrap(), &signpost_wire::TransferRequest::Axfr).await.unwrap();
    let copy = Zone::from_transfer("out.example.".parse().unwrap(), &transfer).unwrap();
    assert_eq!(copy.serial().0, 6);
    assert!(copy.records().any(|record| record.to_string().contains("10.6.0.2")));
    assert!(stop(child).await);
}
