//! UDP answers fit the client's EDNS payload size (512 without EDNS), with
//! TC set when they do not, for local answers and forwarded ones alike.

use std::net::Ipv4Addr;
use std::time::Duration;

use signpost_wire::{EdnsHeader, Message, RecordType};

use crate::support::*;

/// 40 A records: about 700 bytes with the question, more than 512 and 600,
/// less than 1232.
const RECORDS: u8 = 40;

fn edns(size: u16) -> Option<EdnsHeader> {
    Some(EdnsHeader { udp_payload_size: size, version: 0, dnssec_ok: false })
}

/// Ask `name` over UDP with `client_edns`, check the answer fits `limit` and
/// is a valid message with an OPT exactly when the query had one, and return
/// (TC, number of answers).
async fn ask(server: &signpost_server::ServerHandle, name: &str, client_edns: Option<EdnsHeader>) -> (bool, usize) {
    let limit = client_edns.map_or(512, |edns| usize::from(edns.udp_payload_size));
    let bytes = match client_edns {
        Some(edns) => edns_query(name, RecordType::A, edns),
        None => query(name, RecordType::A),
    };
    let response = udp_exchange(udp(server), &bytes, Duration::from_secs(5)).await.expect("an answer");
    assert!(response.len() <= limit, "{name}: {} bytes for a client taking {limit}", response.len());
    let message = Message::parse(&response).unwrap();
    message.check().unwrap();
    assert_eq!(message.id(), 0x4d2);
    assert_eq!(message.edns().unwrap().is_some(), client_edns.is_some(), "{name}: OPT only for EDNS clients");
    (message.flags().tc(), answers(&response).len())
}

/// An upstream answering every question with `RECORDS` A records.
async fn many_records() -> FakeUpstream {
    let addresses = (1..=RECORDS).map(|last| Ipv4Addr::new(192, 0, 2, last).into());
    FakeUpstream::builder().otherwise(Answer::addresses(addresses, 60)).start().await.unwrap()
}

async fn check_sizes(server: &signpost_server::ServerHandle, name: &str) {
    // 1232: everything, untruncated, well over 512 bytes.
    let (tc, count) = ask(server, name, edns(1232)).await;
    assert!(!tc, "{name}: a 1232-byte client got TC");
    assert_eq!(count, usize::from(RECORDS), "{name}");
    // 600: cut to fit, with TC.
    let (tc, count) = ask(server, name, edns(600)).await;
    assert!(tc, "{name}: TC must be set for a 600-byte client");
    assert!(count < usize::from(RECORDS), "{name}: {count} records in 600 bytes");
    // No EDNS: 512 bytes, with TC.
    let (tc, count) = ask(server, name, None).await;
    assert!(tc, "{name}: TC must be set for a client without EDNS");
    assert!(count < usize::from(RECORDS), "{name}: {count} records in 512 bytes");
    // Over TCP nothing is cut.
    let full = tcp_answer(tcp(server), &query(name, RecordType::A)).await;
    assert!(!Message::parse(&full).unwrap().flags().tc());
    assert_eq!(answers(&full).len(), usize::from(RECORDS), "{name} over TCP");
}

#[tokio::test]
async fn local_answers_are_truncated_to_the_clients_edns_size() {
    let addresses: Vec<String> = (1..=RECORDS).map(|last| format!("\"10.0.0.{last}\"")).collect();
    let table = format!(
        "[[host_tables]]\nname = \"many\"\nhosts = [{{ name = \"many.local.test\", addresses = [{}] }}]\n",
        addresses.join(", ")
    );
    let server = start_server(builder().rules(rules(&table, &[]))).await;
    check_sizes(&server, "many.local.test").await;
    server.shutdown().await;
}

#[tokio::test]
async fn forwarded_answers_are_truncated_to_the_clients_edns_size() {
    let upstream = many_records().await;
    let mut config = config_with_default_listeners();
    // Every question goes to the upstream: the relay path, not the cache's copy.
    config.cache.enabled = false;
    let server = start_with(config, FORWARD_ALL, Some(&upstream)).await;
    check_sizes(&server, "big.example").await;
    assert!(upstream.query_count() >= 4);
    server.shutdown().await;
}

#[tokio::test]
async fn cached_answers_are_truncated_to_the_clients_edns_size() {
    let upstream = many_records().await;
    let server = start(FORWARD_ALL, Some(&upstream)).await;
    check_sizes(&server, "cached.example").await;
    assert_eq!(upstream.query_count(), 1, "the later answers come from the cache");
    server.shutdown().await;
}
