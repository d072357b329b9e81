//! Zone transfers and NOTIFY through `signpost_server::transfer`, asked by
//! the transfer client of signpost-upstream (checked against Knot DNS in
//! .ci/interop) and by raw packets.

use std::sync::Arc;
use std::time::Duration;

use signpost_rules::Zone;
use signpost_server::transfer::{
    NotifyPolicy, NotifySchedule, TransferPolicy, ZoneTransfers, notify_message, send_notify,
};
use signpost_upstream::{Error as UpstreamError, TransferClient};
use signpost_wire::{
    Message, NameBuf, Rcode, RecordBuf, RecordType, Serial, Transfer, TransferProblem, TransferRequest, TsigAlgorithm,
    TsigKey, TsigProblem,
};
use tokio::sync::Notify;

use crate::support::*;

fn name(text: &str) -> NameBuf {
    text.parse().unwrap()
}

fn soa(serial: u32) -> RecordBuf {
    format!("example. 3600 IN SOA ns.example. host.example. {serial} 3600 600 86400 60").parse().unwrap()
}

/// A zone big enough to need several 64 KiB messages.
fn big_zone(serial: u32) -> Zone {
    let mut records = vec![soa(serial)];
    for index in 0..4000 {
        records.push(format!("host{index}.example. 60 IN TXT \"{}\"", "x".repeat(30)).parse().unwrap());
    }
    Zone::from_records(name("example."), records).unwrap()
}

fn key(secret: &[u8]) -> TsigKey {
    TsigKey::new(name("transfer."), TsigAlgorithm::HmacSha256, secret)
}

fn loopback() -> Vec<ipnet::IpNet> {
    vec!["127.0.0.0/8".parse().unwrap()]
}

async fn serving(transfers: Arc<ZoneTransfers>) -> signpost_server::ServerHandle {
    start_server(builder().query_handler(transfers.clone())).await
}

/// The rules answering from `zone`, as an application keeps them beside the transfers.
fn rules_with(zone: &Zone) -> signpost_rules::RuleSet {
    let mut builder = signpost_rules::RuleSet::builder();
    builder.zone(signpost_rules::ZoneSpec::new(zone.clone()));
    builder.build().unwrap()
}

fn protocol_problem(error: UpstreamError) -> signpost_wire::Error {
    match error {
        UpstreamError::TransferProtocol { source, .. } => source,
        other => panic!("expected a protocol error, got {other}"),
    }
}

#[tokio::test]
async fn axfr_and_ixfr_over_tcp_with_and_without_tsig() {
    let transfers = Arc::new(ZoneTransfers::new());
    let zone = Arc::new(big_zone(7));
    transfers.serve(zone.clone(), TransferPolicy { allow: loopback(), keys: vec![key(b"right")], require_key: false });
    let server = start_server(builder().rules(rules_with(&zone)).query_handler(transfers.clone())).await;
    let client = TransferClient::new(tcp(&server)).with_timeout(Duration::from_secs(5));

    let Transfer::Full { records, soa: got } =
        client.transfer(&name("example."), &TransferRequest::Axfr).await.unwrap()
    else {
        panic!("a full transfer")
    };
    assert_eq!(got, soa(7));
    assert_eq!(Zone::from_records(name("example."), records).unwrap(), *zone);

    // Signed: every message verifies (the client checks them all).
    let signed = client.clone().with_key(Some(key(b"right")));
    let transfer = signed.transfer(&name("example."), &TransferRequest::Axfr).await.unwrap();
    assert_eq!(Zone::from_transfer(name("example."), &transfer).unwrap(), *zone);

    // The wrong secret: NOTAUTH with BADSIG, which the client reports.
    let wrong = client.clone().with_key(Some(key(b"wrong")));
    let error = protocol_problem(wrong.transfer(&name("example."), &TransferRequest::Axfr).await.unwrap_err());
    assert_eq!(error, signpost_wire::Error::Tsig { problem: TsigProblem::PeerError { code: 16 } });

    // IXFR from the current serial: the SOA alone; from an older one: the whole zone.
    let current = client.transfer(&name("example."), &TransferRequest::Ixfr { soa: soa(7) }).await.unwrap();
    assert_eq!(current, Transfer::UpToDate { soa: soa(7) });
    let older = client.transfer(&name("example."), &TransferRequest::Ixfr { soa: soa(6) }).await.unwrap();
    assert!(matches!(older, Transfer::Full { .. }));

    // refresh(): SOA first, nothing when current, a transfer when the zone moved on.
    assert_eq!(client.refresh(&name("example."), Some(&soa(7))).await.unwrap(), None);
    let newer = Arc::new(big_zone(8));
    server.set_rules(rules_with(&newer));
    transfers.update(&name("example."), Some(newer));
    let refreshed = client.refresh(&name("example."), Some(&soa(7))).await.unwrap().unwrap();
    assert_eq!(signpost_wire::soa_serial(refreshed.soa()), Some(Serial(8)));
    server.shutdown().await;
}

#[tokio::test]
async fn ixfr_from_an_older_serial_gets_the_differences_kept_in_history() {
    let transfers = Arc::new(ZoneTransfers::new().with_history(2));
    let policy = TransferPolicy { allow: loopback(), ..TransferPolicy::default() };
    transfers.serve(Arc::new(small_zone(1, "192.0.2.1")), policy.clone());
    transfers.update(&name("example."), Some(Arc::new(small_zone(2, "192.0.2.2"))));
    transfers.update(&name("example."), Some(Arc::new(small_zone(3, "192.0.2.3"))));
    let server = serving(transfers.clone()).await;
    let client = TransferClient::new(tcp(&server)).with_timeout(Duration::from_secs(5));
    let ixfr = |serial: u32| TransferRequest::Ixfr { soa: small_zone(serial, "192.0.2.1").soa().clone() };

    // From 1: two difference sequences, each replacing www's address (RFC 1995 §4).
    let Transfer::Incremental { diffs, .. } = client.transfer(&name("example."), &ixfr(1)).await.unwrap() else {
        panic!("an incremental transfer")
    };
    assert_eq!(diffs.len(), 2);
    let address = |records: &[RecordBuf]| records.iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(address(&diffs[0].deleted), ["www.example. 60 IN A 192.0.2.1"]);
    assert_eq!(address(&diffs[0].added), ["www.example. 60 IN A 192.0.2.2"]);
    assert_eq!(address(&diffs[1].added), ["www.example. 60 IN A 192.0.2.3"]);
    let applied =
        small_zone(1, "192.0.2.1").apply_transfer(&client.transfer(&name("example."), &ixfr(1)).await.unwrap());
    assert_eq!(applied.unwrap(), small_zone(3, "192.0.2.3"));

    // A fourth version pushes the oldest difference out: from 1, the whole zone; from 2, one difference.
    transfers.update(&name("example."), Some(Arc::new(small_zone(4, "192.0.2.4"))));
    assert!(matches!(client.transfer(&name("example."), &ixfr(1)).await.unwrap(), Transfer::Full { .. }));
    let Transfer::Incremental { diffs, .. } = client.transfer(&name("example."), &ixfr(2)).await.unwrap() else {
        panic!("an incremental transfer")
    };
    assert_eq!(diffs.len(), 2);
    // An older version served again breaks the chain: whole zones from then on.
    transfers.update(&name("example."), Some(Arc::new(small_zone(2, "192.0.2.9"))));
    assert!(matches!(client.transfer(&name("example."), &ixfr(1)).await.unwrap(), Transfer::Full { .. }));
    server.shutdown().await;
}

#[tokio::test]
async fn transfers_are_refused_where_they_must_be() {
    let transfers = Arc::new(ZoneTransfers::new());
    transfers.serve(Arc::new(big_zone(1)), TransferPolicy { allow: loopback(), ..TransferPolicy::default() });
    let elsewhere = Zone::from_records(name("elsewhere."), []).unwrap();
    transfers.serve(
        Arc::new(elsewhere),
        TransferPolicy { allow: vec!["10.0.0.0/8".parse().unwrap()], ..TransferPolicy::default() },
    );
    let signed_only = Zone::from_records(name("signed."), []).unwrap();
    transfers
        .serve(Arc::new(signed_only), TransferPolicy { allow: loopback(), keys: vec![key(b"k")], require_key: true });
    let server = serving(transfers).await;
    let client = TransferClient::new(tcp(&server));
    let refused = |error: UpstreamError| {
        protocol_problem(error)
            == signpost_wire::Error::Transfer { message: 0, problem: TransferProblem::Rcode { rcode: Rcode::REFUSED } }
    };
    // Not from an allowed network, unsigned where a key is required, a zone not given out here.
    assert!(refused(client.transfer(&name("elsewhere."), &TransferRequest::Axfr).await.unwrap_err()));
    assert!(refused(client.transfer(&name("signed."), &TransferRequest::Axfr).await.unwrap_err()));
    assert!(refused(client.transfer(&name("other."), &TransferRequest::Axfr).await.unwrap_err()));
    assert!(client.clone().with_key(Some(key(b"k"))).transfer(&name("signed."), &TransferRequest::Axfr).await.is_ok());

    // AXFR over UDP: REFUSED (RFC 5936 §4.2); an ordinary question still goes to the rules.
    let answer = udp_exchange(udp(&server), &query("example.", RecordType::AXFR), ASK_TIMEOUT).await.unwrap();
    assert_eq!(Message::parse(&answer).unwrap().rcode().unwrap(), Rcode::REFUSED);
    let answer = udp_exchange(udp(&server), &query("example.", RecordType::A), ASK_TIMEOUT).await.unwrap();
    assert_ne!(Message::parse(&answer).unwrap().rcode().unwrap(), Rcode::REFUSED);
    server.shutdown().await;
}

#[tokio::test]
async fn notify_from_allowed_primaries_wakes_the_zone() {
    let transfers = Arc::new(ZoneTransfers::new());
    let wake = Arc::new(Notify::new());
    transfers.accept_notify(&name("example."), NotifyPolicy { allow: loopback(), keys: vec![], wake: wake.clone() });
    let strict = Arc::new(Notify::new());
    transfers.accept_notify(
        &name("strict."),
        NotifyPolicy { allow: vec!["192.0.2.0/24".parse().unwrap()], keys: vec![], wake: strict.clone() },
    );
    let server = serving(transfers).await;
    let woken = wake.notified();
    let outcomes =
        send_notify(&[udp(&server)], &name("example."), Some(&soa(3)), None, NotifySchedule::default()).await;
    assert_eq!(outcomes[0].rcode, Some(Rcode::NOERROR));
    tokio::time::timeout(Duration::from_secs(1), woken).await.expect("the zone was woken");

    let outcomes = send_notify(&[udp(&server)], &name("strict."), None, None, NotifySchedule::default()).await;
    assert_eq!(outcomes[0].rcode, Some(Rcode::REFUSED));
    let outcomes = send_notify(&[udp(&server)], &name("unknown."), None, None, NotifySchedule::default()).await;
    assert_eq!(outcomes[0].rcode, Some(Rcode::NOTAUTH));
    // Over TCP too.
    let answer = tcp_answer(tcp(&server), &notify_message(9, &name("example."), None).unwrap()).await;
    assert_eq!(Message::parse(&answer).unwrap().rcode().unwrap(), Rcode::NOERROR);
    server.shutdown().await;
}

/// A small zone with a long refresh (so only NOTIFY triggers a check), a
/// one-second retry and a three-second expire.
fn small_zone(serial: u32, address: &str) -> Zone {
    let records: Vec<RecordBuf> = vec![
        format!("example. 3600 IN SOA ns.example. host.example. {serial} 3600 1 3 60").parse().unwrap(),
        format!("www.example. 60 IN A {address}").parse().unwrap(),
    ];
    Zone::from_records(name("example."), records).unwrap()
}

#[tokio::test]
async fn secondary_follows_notify_keeps_its_copy_and_expires() {
    use signpost_server::transfer::SecondaryZone;
    use tokio::sync::mpsc;

    // The primary: a Signpost server giving the zone out.
    let primary_transfers = Arc::new(ZoneTransfers::new());
    let first = Arc::new(small_zone(1, "192.0.2.1"));
    primary_transfers.serve(first.clone(), TransferPolicy { allow: loopback(), ..TransferPolicy::default() });
    let primary = start_server(builder().rules(rules_with(&first)).query_handler(primary_transfers.clone())).await;

    // The secondary: its own server takes NOTIFY; its task reports each copy.
    let dir = TempDir::new();
    let copy = dir.path().join("example.zone");
    let secondary_transfers = Arc::new(ZoneTransfers::new());
    let secondary_server = serving(secondary_transfers.clone()).await;
    let secondary = SecondaryZone {
        apex: name("example."),
        primaries: vec![TransferClient::new(tcp(&primary)).with_timeout(Duration::from_secs(1))],
        copy: Some(copy.clone()),
        allow_notify: vec![],
        notify_keys: vec![],
        serve: None,
    };
    let (sender, mut published) = mpsc::unbounded_channel();
    let publish: signpost_server::transfer::Publish = Arc::new(move |_: &NameBuf, zone: Option<Arc<Zone>>| {
        let _ = sender.send(zone.map(|zone| zone.serial()));
    });
    let task = secondary.clone().spawn(secondary_transfers.clone(), publish.clone());
    assert_eq!(next(&mut published).await, Some(Serial(1)), "the initial transfer");
    assert!(std::fs::read_to_string(&copy).unwrap().contains("192.0.2.1"), "the copy is saved");

    // The primary changes and notifies: the secondary transfers at once (refresh is an hour).
    let second = Arc::new(small_zone(2, "192.0.2.2"));
    primary.set_rules(rules_with(&second));
    primary_transfers.update(&name("example."), Some(second.clone()));
    let outcomes =
        send_notify(&[udp(&secondary_server)], &name("example."), Some(second.soa()), None, NotifySchedule::default())
            .await;
    assert_eq!(outcomes[0].rcode, Some(Rcode::NOERROR));
    assert_eq!(next(&mut published).await, Some(Serial(2)), "NOTIFY brought the change");
    assert_eq!(secondary_transfers.zone(&name("example.")).map(|zone| zone.serial()), Some(Serial(2)));

    // The primary goes away: after the expire time the copy is withdrawn.
    primary.shutdown().await;
    task.check_now();
    assert_eq!(next(&mut published).await, None, "expired");
    task.stop().await;

    // A restart with no primary reachable serves the saved copy at once.
    let task = secondary.spawn(secondary_transfers, publish);
    assert_eq!(next(&mut published).await, Some(Serial(2)), "loaded from the saved copy");
    task.stop().await;
    secondary_server.shutdown().await;
}

/// The next copy a secondary's task reported (its serial, `None` for expired).
async fn next(published: &mut tokio::sync::mpsc::UnboundedReceiver<Option<Serial>>) -> Option<Serial> {
    tokio::time::timeout(Duration::from_secs(10), published.recv())
        .await
        .expect("a change in time")
        .expect("the task runs")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn a_request_signed_an_hour_ago_gets_a_signed_badtime_with_the_servers_clock() {
    let transfers = Arc::new(ZoneTransfers::new());
    transfers.serve(
        Arc::new(small_zone(1, "192.0.2.1")),
        TransferPolicy { allow: loopback(), keys: vec![key(b"right")], require_key: true },
    );
    let server = serving(transfers).await;
    let mut request = query("example.", RecordType::AXFR);
    let signed_at = unix_now() - 3600;
    let mut session = signpost_wire::TsigSession::sign_request(&key(b"right"), &mut request, signed_at).unwrap();
    let answer = tcp_answer(tcp(&server), &request).await;
    assert_eq!(Message::parse(&answer).unwrap().rcode().unwrap(), Rcode::NOTAUTH);
    // The answer's MAC verifies with the key: the server's clock in it can be trusted.
    let problem = match session.verify_response(&answer, signed_at) {
        Err(signpost_wire::Error::Tsig { problem }) => problem,
        other => panic!("expected a TSIG error, got {other:?}"),
    };
    let TsigProblem::PeerBadTime { server_time } = problem else { panic!("expected a signed BADTIME, got {problem}") };
    assert!(server_time.abs_diff(unix_now()) < 60, "the server's clock, not ours: {server_time}");
    server.shutdown().await;
}

/// A secondary that drops the first `ignore` NOTIFY messages and answers
/// the rest NOERROR; returns its address and a count of what arrived.
async fn slow_secondary(ignore: usize) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        while let Ok((len, peer)) = socket.recv_from(&mut buffer).await {
            if seen.fetch_add(1, Ordering::SeqCst) < ignore {
                continue;
            }
            let mut answer = buffer[..len].to_vec();
            answer[2] |= 0x80; // QR, opcode NOTIFY kept
            answer[3] &= 0xf0; // NOERROR
            let _ = socket.send_to(&answer, peer).await;
        }
    });
    (address, count)
}

#[tokio::test]
async fn notify_is_sent_again_until_answered_and_gives_up_after_the_schedule() {
    use std::sync::atomic::Ordering;
    let schedule = NotifySchedule {
        retransmissions: 3,
        first_wait: Duration::from_millis(100),
        longest_wait: Duration::from_millis(200),
    };
    let (patient, patient_count) = slow_secondary(2).await;
    let (silent, silent_count) = slow_secondary(usize::MAX).await;
    let started = std::time::Instant::now();
    let outcomes = send_notify(&[patient, silent], &name("example."), Some(&soa(4)), None, schedule).await;
    // The third send is answered; the silent one gets 1 + 3 and is given up
    // after 100 + 200 + 200 + 200 ms (both at once, not one after the other).
    assert_eq!(outcomes[0].rcode, Some(Rcode::NOERROR));
    assert_eq!(patient_count.load(Ordering::SeqCst), 3);
    assert_eq!(outcomes[1].rcode, None);
    assert_eq!(silent_count.load(Ordering::SeqCst), 4);
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_transfer_out_is_a_query_log_line() {
    let dir = TempDir::new();
    let path = dir.join("queries.jsonl");
    let mut config = config_with_default_listeners();
    config.query_log.enabled = true;
    config.query_log.destination = signpost_server::LogDestination::File(path.clone());
    let transfers = Arc::new(ZoneTransfers::new());
    let zone = Arc::new(big_zone(9));
    transfers.serve(zone.clone(), TransferPolicy { allow: loopback(), ..TransferPolicy::default() });
    let server = start_server(
        signpost_server::Server::builder().config(config).rules(rules_with(&zone)).query_handler(transfers),
    )
    .await;
    let client = TransferClient::new(tcp(&server)).with_timeout(Duration::from_secs(5));
    client.transfer(&name("example."), &TransferRequest::Axfr).await.unwrap();
    client.transfer(&name("elsewhere."), &TransferRequest::Axfr).await.unwrap_err();
    let lines = file_lines(&path, 2, Duration::from_secs(5)).await;
    let lines: Vec<serde_json::Value> = lines.iter().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["query_name"], "example.");
    assert_eq!(lines[0]["query_type"], "AXFR");
    assert_eq!(lines[0]["rcode"], "NOERROR");
    assert_eq!(lines[0]["transport"], "tcp");
    assert_eq!(lines[0]["client"], "127.0.0.1");
    assert_eq!(lines[0]["trace"]["decision"], "handler");
    // The opening SOA only, not the 4001 records of the zone.
    assert_eq!(lines[0]["answers"].as_array().unwrap().len(), 1, "{}", lines[0]);
    assert_eq!(lines[0]["answers"][0]["type"], "SOA");
    assert_eq!(lines[1]["query_name"], "elsewhere.");
    assert_eq!(lines[1]["rcode"], "REFUSED");
    server.shutdown().await;
}
