//! Protocol edge cases: malformed queries, opcodes, EDNS versions, ACLs,
//! rate limits, TCP pipelining.

use std::time::Duration;

use signpost_server::{ListenerConfig, ServerConfig, Transport};
use signpost_wire::{EdnsHeader, EdnsOption, ExtendedErrorCode, Message, Opcode, OptionCode, Rcode, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

async fn server() -> signpost_server::ServerHandle {
    start(LOCAL_TEST, None).await
}

#[tokio::test]
async fn malformed_queries_get_formerr_echoing_the_id() {
    let server = server().await;
    let mut bytes = query("www.local.test", RecordType::A);
    bytes.truncate(bytes.len() - 3); // cut inside the question
    let response = udp_exchange(udp(&server), &bytes, Duration::from_secs(2)).await.expect("FORMERR");
    let message = Message::parse(&response).unwrap();
    assert_eq!(message.id(), 0x4d2);
    assert!(message.flags().qr());
    assert_eq!(message.rcode(), Ok(Rcode::FORMERR));
    // Two questions: FORMERR too.
    let mut two = query("a.local.test", RecordType::A);
    two[5] = 2;
    two.extend_from_slice(&two.clone()[12..]);
    let response = udp_exchange(udp(&server), &two, Duration::from_secs(2)).await.expect("FORMERR");
    assert_eq!(Message::parse(&response).unwrap().rcode(), Ok(Rcode::FORMERR));
    server.shutdown().await;
}

#[tokio::test]
async fn packets_without_a_header_are_dropped_and_counted() {
    let server = server().await;
    assert!(udp_exchange(udp(&server), &[1, 2, 3, 4, 5], Duration::from_millis(300)).await.is_none());
    // A response sent to the server is not answered either (no reflection).
    let mut response = query("www.local.test", RecordType::A);
    response[2] |= 0x80;
    assert!(udp_exchange(udp(&server), &response, Duration::from_millis(300)).await.is_none());
    assert_eq!(server.metrics().drops("malformed"), 1);
    assert_eq!(server.metrics().drops("not_a_query"), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn other_opcodes_get_notimp_and_new_edns_versions_badvers() {
    let server = server().await;
    let mut notify = query("www.local.test", RecordType::SOA);
    notify[2] = (notify[2] & 0x87) | (Opcode::NOTIFY.0 << 3);
    let response = udp_exchange(udp(&server), &notify, Duration::from_secs(2)).await.unwrap();
    let message = Message::parse(&response).unwrap();
    assert_eq!(message.rcode(), Ok(Rcode::NOTIMP));
    assert_eq!(message.opcode(), Opcode::NOTIFY);

    let versioned = edns_query(
        "www.local.test",
        RecordType::A,
        EdnsHeader { udp_payload_size: 1232, version: 1, dnssec_ok: false },
    );
    let response = udp_exchange(udp(&server), &versioned, Duration::from_secs(2)).await.unwrap();
    let message = Message::parse(&response).unwrap();
    assert_eq!(message.rcode(), Ok(Rcode::BADVERS));
    assert_eq!(message.edns().unwrap().unwrap().version(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn clients_outside_the_allow_list_are_refused() {
    let mut config = ServerConfig::default();
    let mut listener = ListenerConfig::new(Transport::Udp, "127.0.0.1:0".parse().unwrap());
    listener.allow = Some(vec!["10.0.0.0/8".parse().unwrap()]);
    listener.workers = Some(1);
    config.listeners.push(listener);
    let server = start_with(config, LOCAL_TEST, None).await;
    let bytes = edns_query("www.local.test", RecordType::A, EdnsHeader::default());
    let response = udp_exchange(udp(&server), &bytes, Duration::from_secs(2)).await.unwrap();
    let message = Message::parse(&response).unwrap();
    assert_eq!(message.rcode(), Ok(Rcode::REFUSED));
    let edns = message.edns().unwrap().unwrap();
    let Some(EdnsOption::ExtendedError(error)) = edns.option(OptionCode::EXTENDED_ERROR) else { panic!("no EDE") };
    assert_eq!(error.info_code, ExtendedErrorCode::PROHIBITED);
    server.shutdown().await;
}

#[tokio::test]
async fn the_default_allow_list_is_loopback_and_private_ranges() {
    let allow = signpost_server::default_allow_list();
    for allowed in ["127.0.0.1", "10.1.2.3", "192.168.1.1", "172.16.0.1", "::1", "fd00::1"] {
        let ip: std::net::IpAddr = allowed.parse().unwrap();
        assert!(allow.iter().any(|net| net.contains(&ip)), "{allowed}");
    }
    for denied in ["8.8.8.8", "2001:db8::1"] {
        let ip: std::net::IpAddr = denied.parse().unwrap();
        assert!(!allow.iter().any(|net| net.contains(&ip)), "{denied}");
    }
}

#[tokio::test]
async fn per_client_rate_limits_drop_the_excess_and_count_it() {
    let server = local_test_server(|config| config.limits.per_client_qps = Some(20)).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let bytes = query("www.local.test", RecordType::A);
    for _ in 0..100 {
        socket.send_to(&bytes, udp(&server)).await.unwrap();
    }
    let mut answered = 0;
    let mut buffer = [0u8; 512];
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buffer)).await {
        answered += 1;
    }
    let dropped = server.metrics().drops("rate_limited");
    assert!((20..=30).contains(&answered), "{answered} answered");
    assert_eq!(answered + dropped as usize, 100);
    server.shutdown().await;
}

#[tokio::test]
async fn pipelined_tcp_queries_are_all_answered_on_one_connection() {
    let server = server().await;
    let mut stream = tokio::net::TcpStream::connect(tcp(&server)).await.unwrap();
    let mut batch = Vec::new();
    for (index, name) in ["a.local.test", "b.local.test", "c.local.test"].iter().enumerate() {
        let mut bytes = query(name, RecordType::A);
        bytes[1] = index as u8;
        batch.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        batch.extend_from_slice(&bytes);
    }
    stream.write_all(&batch).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let len = stream.read_u16().await.unwrap();
        let mut response = vec![0u8; usize::from(len)];
        stream.read_exact(&mut response).await.unwrap();
        ids.push(response[1]);
        assert_eq!(answers(&response).len(), 1);
    }
    ids.sort();
    assert_eq!(ids, [0, 1, 2]);
    server.shutdown().await;
}

#[tokio::test]
async fn binding_a_port_in_use_names_the_problem() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut config = ServerConfig::default();
    config.listeners.push(ListenerConfig::new(Transport::Udp, taken.local_addr().unwrap()));
    let error = signpost_server::Server::builder().config(config).start().await.err().expect("bind fails");
    let text = error.to_string();
    assert!(text.contains("already in use"), "{text}");
}
