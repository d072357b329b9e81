//! Rate limits with `action = "refuse"`: over the limit clients get REFUSED,
//! not silence, and each refusal is counted.

use std::time::Duration;

use signpost_server::{LimitAction, ListenerConfig, Transport};
use signpost_wire::{Message, Rcode, RecordType};
use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;

use crate::support::*;

const SENT: usize = 60;

#[tokio::test]
async fn over_the_per_client_limit_clients_get_refused_instead_of_silence() {
    let mut config = config_with_default_listeners();
    config.limits.per_client_qps = Some(5);
    config.limits.action = LimitAction::Refuse;
    let server = start_with(config, LOCAL_TEST, None).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for index in 0..SENT {
        let mut bytes = query("www.local.test", RecordType::A);
        bytes[0] = index as u8;
        socket.send_to(&bytes, udp(&server)).await.unwrap();
    }
    let (mut answered, mut refused) = (0, 0);
    let mut ids = Vec::new();
    let mut buffer = [0u8; 512];
    for _ in 0..SENT {
        let Ok(Ok((len, _))) = tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buffer)).await else {
            break;
        };
        let message = Message::parse(&buffer[..len]).unwrap();
        ids.push(buffer[0]);
        // Each reply, refused or not, echoes the question.
        assert_eq!(message.first_question().unwrap().unwrap().name().to_string(), "www.local.test.");
        match message.rcode() {
            Ok(Rcode::NOERROR) => answered += 1,
            Ok(Rcode::REFUSED) => {
                assert_eq!(message.header().ancount, 0);
                refused += 1;
            }
            other => panic!("unexpected rcode {other:?}"),
        }
    }
    assert_eq!(answered + refused, SENT, "every query gets a reply: {answered} answered, {refused} refused");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), SENT, "one reply per query");
    // The bucket holds 5 and refills at 5 a second; sending takes far less than a few seconds.
    assert!(answered >= 5, "{answered} answered");
    assert!(refused >= SENT / 2, "{refused} refused");
    assert_eq!(server.metrics().drops("rate_limited"), refused as u64);
    // Over TCP too: pipelined queries on one connection, each answered or refused.
    let mut stream = tokio::net::TcpStream::connect(tcp(&server)).await.unwrap();
    let mut batch = Vec::new();
    for _ in 0..30 {
        let bytes = query("tcp.local.test", RecordType::A);
        batch.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        batch.extend_from_slice(&bytes);
    }
    stream.write_all(&batch).await.unwrap();
    let mut tcp_refused = 0;
    for _ in 0..30 {
        let response = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut stream))
            .await
            .expect("in time")
            .expect("a reply");
        match Message::parse(&response).unwrap().rcode() {
            Ok(Rcode::REFUSED) => tcp_refused += 1,
            Ok(Rcode::NOERROR) => {}
            other => panic!("unexpected rcode {other:?}"),
        }
    }
    assert!(tcp_refused >= 10, "{tcp_refused} of 30 refused over TCP");
    server.shutdown().await;
}

/// Listeners that join one rate-limit group take its rate together; a
/// listener outside the group keeps its own budget; a group nobody defined
/// is an error at start.
#[tokio::test]
async fn listeners_in_one_limit_group_share_its_rate() {
    let mut config = signpost_server::ServerConfig::default();
    config.limits.action = LimitAction::Refuse;
    config.limits.groups.insert("shared".into(), 2);
    for (transport, group) in
        [(Transport::Udp, Some("shared")), (Transport::Tcp, Some("shared")), (Transport::Udp, None)]
    {
        let mut listener = ListenerConfig::new(transport, "127.0.0.1:0".parse().unwrap());
        listener.workers = Some(1);
        listener.limit_group = group.map(str::to_string);
        config.listeners.push(listener);
    }
    let server = signpost_server::Server::builder()
        .config(config.clone())
        .rules(rules(LOCAL_REDIRECT, &[]))
        .start()
        .await
        .unwrap();
    let (grouped_udp, grouped_tcp, alone) = (server.udp_addrs()[0], server.tcp_addrs()[0], server.udp_addrs()[1]);
    let rcode = |response: Vec<u8>| Message::parse(&response).unwrap().rcode().unwrap();
    let bytes = query("www.local.test", RecordType::A);
    // The bucket holds two (and refills one every 500 ms): one query over
    // UDP and one over TCP use it up, so the next over either is refused...
    assert_eq!(rcode(udp_exchange(grouped_udp, &bytes, Duration::from_secs(2)).await.unwrap()), Rcode::NOERROR);
    assert_eq!(rcode(tcp_answer(grouped_tcp, &bytes).await), Rcode::NOERROR);
    assert_eq!(rcode(tcp_answer(grouped_tcp, &bytes).await), Rcode::REFUSED);
    assert_eq!(rcode(udp_exchange(grouped_udp, &bytes, Duration::from_secs(2)).await.unwrap()), Rcode::REFUSED);
    // ...while the listener outside the group answers.
    assert_eq!(rcode(udp_exchange(alone, &bytes, Duration::from_secs(2)).await.unwrap()), Rcode::NOERROR);
    assert_eq!(server.metrics().drops("listener_limit"), 2);
    server.shutdown().await;

    config.listeners[2].limit_group = Some("nobody".into());
    let error = signpost_server::Server::builder().config(config).start().await.err().unwrap();
    assert!(
        matches!(error, signpost_server::Error::UnknownLimitGroup { ref group, .. } if group == "nobody"),
        "{error}"
    );
}
