//! Listeners on IPv6: UDP and TCP on [::1] answer (the test fails on a
//! machine without IPv6 on its loopback interface).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use signpost_server::{ListenerConfig, ServerConfig, Transport};
use signpost_wire::{Message, RecordType};
use tokio::net::UdpSocket;

use crate::support::*;

const LOCAL: &str =
    r#"rules = [{ suffix = "six.test", action = "redirect", ipv4 = "127.0.0.1", ipv6 = "::1", ttl = 30 }]"#;

/// Whether this machine can bind UDP and TCP on ::1.
fn has_ipv6_loopback() -> bool {
    let loopback = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0);
    std::net::UdpSocket::bind(loopback).is_ok() && std::net::TcpListener::bind(loopback).is_ok()
}

#[tokio::test]
async fn udp_and_tcp_listeners_on_ipv6_loopback_answer() {
    // A machine without ::1 cannot run this test: it fails, saying why, rather than pass unrun.
    assert!(
        has_ipv6_loopback(),
        "this test needs IPv6 on the loopback interface: cannot bind UDP and TCP on [::1] \
         (enable it with sysctl net.ipv6.conf.lo.disable_ipv6=0)"
    );
    let mut config = ServerConfig::default();
    let mut udp = ListenerConfig::new(Transport::Udp, "[::1]:0".parse().unwrap());
    udp.workers = Some(1);
    config.listeners.push(udp);
    config.listeners.push(ListenerConfig::new(Transport::Tcp, "[::1]:0".parse().unwrap()));
    let layer = signpost_server::TestLayer::new().recording(true);
    let server = start_server({
        signpost_server::Server::builder().config(config.clone()).rules(rules(LOCAL, &[])).test_layer(layer.clone())
    })
    .await;
    let udp_address = server.udp_addrs()[0];
    let tcp_address = server.tcp_addrs()[0];
    assert!(udp_address.is_ipv6() && tcp_address.is_ipv6(), "{udp_address} {tcp_address}");

    for (protocol, address) in [(Transport::Udp, udp_address), (Transport::Tcp, tcp_address)] {
        let lookup = resolver(protocol, address).lookup_ip("www.six.test.").await.unwrap();
        let mut found: Vec<IpAddr> = lookup.iter().collect();
        found.sort();
        assert_eq!(found, [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)], "{protocol:?}");
    }
    // Raw bytes too: the reply comes from the address the query went to.
    let socket = UdpSocket::bind("[::1]:0").await.unwrap();
    socket.send_to(&query("raw.six.test", RecordType::AAAA), udp_address).await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let (len, from) =
        tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer)).await.expect("an answer").unwrap();
    assert_eq!(from, udp_address);
    assert_eq!(Message::parse(&buffer[..len]).unwrap().id(), 0x4d2);
    assert_eq!(answers(&buffer[..len]), ["raw.six.test. 30 IN AAAA ::1"]);
    let tcp_answer = tcp_answer(tcp_address, &query("raw.six.test", RecordType::A)).await;
    assert_eq!(answers(&tcp_answer), ["raw.six.test. 30 IN A 127.0.0.1"]);

    let seen = layer.recorded_queries();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|q| q.client.ip() == IpAddr::V6(Ipv6Addr::LOCALHOST)), "{seen:?}");
    server.shutdown().await;
}
