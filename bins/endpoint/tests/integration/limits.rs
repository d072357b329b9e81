//! aws_limits: 1024 packets per second per client address towards a VPC
//! resolver, about 10,000 queries per second per inbound endpoint address;
//! the excess is dropped and counted.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use signpost_server::Transport;
use signpost_wire::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::support::*;

/// Send `count` queries from `source` to `server` as fast as the loop goes
/// (in bursts of 50), while counting answers; returns (answered, seconds spent sending).
async fn burst(server: SocketAddr, source: IpAddr, count: usize) -> (usize, f64) {
    let socket = Arc::new(UdpSocket::bind(SocketAddr::new(source, 0)).await.unwrap());
    let answered = Arc::new(AtomicUsize::new(0));
    let receiver = {
        let socket = socket.clone();
        let answered = answered.clone();
        tokio::spawn(async move {
            let mut buffer = [0u8; 1500];
            while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(1500), socket.recv_from(&mut buffer)).await
            {
                answered.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let started = Instant::now();
    for chunk in 0..count.div_ceil(50) {
        for index in 0..50.min(count - chunk * 50) {
            let id = (chunk * 50 + index) as u16;
            socket.send_to(&Query::new("www.corp.example", RecordType::A).id(id).to_bytes(), server).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    receiver.await.unwrap();
    (answered.load(Ordering::SeqCst), elapsed)
}

/// Answers counted and when the last one came, in seconds after `started`.
#[derive(Default)]
struct Tally {
    answered: usize,
    last: f64,
}

/// Send `count` UDP queries from `source` (in bursts of 50) and count the
/// answers until none comes for 1.5 s.
async fn udp_burst_tally(server: SocketAddr, source: IpAddr, count: usize, started: Instant) -> Tally {
    let socket = Arc::new(UdpSocket::bind(SocketAddr::new(source, 0)).await.unwrap());
    let receiver = {
        let socket = socket.clone();
        tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut buffer = [0u8; 1500];
            while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(1500), socket.recv_from(&mut buffer)).await
            {
                tally.answered += 1;
                tally.last = started.elapsed().as_secs_f64();
            }
            tally
        })
    };
    for chunk in 0..count.div_ceil(50) {
        for index in 0..50.min(count - chunk * 50) {
            let id = (chunk * 50 + index) as u16;
            socket.send_to(&Query::new("www.corp.example", RecordType::A).id(id).to_bytes(), server).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    receiver.await.unwrap()
}

/// Send `count` queries down one TCP connection (in bursts of 50) and count
/// the answers until none comes for 1.5 s.
async fn tcp_burst_tally(server: SocketAddr, count: usize, started: Instant) -> Tally {
    let (mut reader, mut writer) = TcpStream::connect(server).await.unwrap().into_split();
    let receiver = tokio::spawn(async move {
        let mut tally = Tally::default();
        let mut buffer = vec![0u8; 65535];
        while let Ok(Ok(len)) = tokio::time::timeout(Duration::from_millis(1500), reader.read_u16()).await {
            let Some(message) = buffer.get_mut(..usize::from(len)) else { break };
            if reader.read_exact(message).await.is_err() {
                break;
            }
            tally.answered += 1;
            tally.last = started.elapsed().as_secs_f64();
        }
        tally
    });
    for chunk in 0..count.div_ceil(50) {
        let mut frames = Vec::new();
        for index in 0..50.min(count - chunk * 50) {
            let message = Query::new("www.corp.example", RecordType::A).id((chunk * 50 + index) as u16).to_bytes();
            frames.extend_from_slice(&(message.len() as u16).to_be_bytes());
            frames.extend_from_slice(&message);
        }
        writer.write_all(&frames).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let tally = receiver.await.unwrap();
    drop(writer);
    tally
}

const ZONE: &str =
    r#"private_hosted_zones = [{ name = "corp.example", vpcs = ["vpc-a", "vpc-b"], records = ["www A 10.1.0.10"] }]"#;

#[tokio::test]
async fn a_burst_over_1024_packets_per_second_from_one_client_is_partly_dropped_and_counted() {
    let Basics { dir, recursive, .. } = basics().await;
    let endpoint = start(dir.path(), &two_vpcs(recursive.address(), ZONE)).await;
    assert_eq!(endpoint.deployment().server.limits.per_client_qps, Some(1024), "aws_limits is on by default");
    let server = vpc_resolver(&endpoint, "vpc-a");
    let sent = 3000;
    let (answered, seconds) = burst(server, VPC_A_CLIENT, sent).await;
    let metrics = endpoint.server().metrics_text();
    let dropped = metric(&metrics, "signpost_dropped_total{reason=\"rate_limited\"}") as usize;
    // The bucket holds 1024 and refills at 1024 per second.
    let allowed = 1024.0 + 1024.0 * seconds;
    assert!(answered as f64 <= allowed + 20.0, "answered {answered} of {sent} in {seconds:.3}s");
    assert!(answered >= 500, "answered {answered}");
    assert!(dropped >= 800, "dropped {dropped}, answered {answered}, in {seconds:.3}s");
    assert!(answered + dropped <= sent, "answered {answered} + dropped {dropped}");
    // The metric says how many: every query not answered was counted as dropped,
    // bar what the kernel lost on the way (socket buffers on a busy machine).
    assert!(answered + dropped >= sent * 3 / 4, "answered {answered} + dropped {dropped} of {sent}");

    // Another client address has its own bucket.
    let other = ask(vpc_resolver(&endpoint, "vpc-b"), VPC_B_CLIENT, "www.corp.example").await;
    assert!(other.is_some());
    endpoint.shutdown().await;
}

#[tokio::test]
async fn inbound_endpoints_are_limited_per_address_not_per_client() {
    let Basics { dir, recursive, .. } = basics().await;
    let extra = format!(
        "{ZONE}\n[aws_limits]\ninbound_qps_per_address = 500\n\n[[inbound_endpoints]]\nid = \"rslvr-in-a\"\nvpc = \"vpc-a\"\naddresses = [\"127.0.1.10\", \"127.0.1.11\"]\nport = 0\n"
    );
    let endpoint = start(dir.path(), &two_vpcs(recursive.address(), &extra)).await;
    let addresses = inbound(&endpoint, "rslvr-in-a", "vpc-a", Transport::Udp);
    // 1,500 queries from one on-premises resolver: far over 1024 per second,
    // but the per-client limit is the VPC resolver's, not the endpoint's.
    // The endpoint address takes 500 per second.
    let (answered, seconds) = burst(addresses[0], ONPREM_CLIENT, 1500).await;
    let metrics = endpoint.server().metrics_text();
    assert_eq!(metric(&metrics, "signpost_dropped_total{reason=\"rate_limited\"}"), 0);
    let dropped = metric(&metrics, "signpost_dropped_total{reason=\"listener_limit\"}") as usize;
    assert!(dropped >= 500, "dropped {dropped}, answered {answered} in {seconds:.3}s");
    assert!(answered as f64 <= 500.0 + 500.0 * seconds + 20.0, "answered {answered} in {seconds:.3}s");
    // The other address has its own limit.
    assert!(ask(addresses[1], ONPREM_CLIENT, "www.corp.example").await.is_some());
    endpoint.shutdown().await;
}

#[tokio::test]
async fn udp_and_tcp_of_one_inbound_endpoint_address_share_its_limit() {
    let Basics { dir, recursive, .. } = basics().await;
    let rate = 200.0;
    let extra = format!(
        "{ZONE}\n[aws_limits]\ninbound_qps_per_address = {rate}\n\n[[inbound_endpoints]]\nid = \"rslvr-in-a\"\nvpc = \"vpc-a\"\naddresses = [\"127.0.1.10\", \"127.0.1.11\"]\nport = 0\n"
    );
    let endpoint = start(dir.path(), &two_vpcs(recursive.address(), &extra)).await;
    let limits = &endpoint.deployment().address_limits;
    assert_eq!(limits.len(), 2, "one limit per address: {limits:?}");
    assert!(limits.iter().all(|limit| limit.listeners.len() == 2 && limit.qps == 200), "{limits:?}");
    let udp = inbound(&endpoint, "rslvr-in-a", "vpc-a", Transport::Udp)[0];
    let tcp = inbound(&endpoint, "rslvr-in-a", "vpc-a", Transport::Tcp)[0];
    assert_eq!(udp.ip(), tcp.ip());

    // 600 queries over UDP and 600 over TCP at once, to one address. Each
    // transport alone sends far more than the limit lets through, so with a
    // bucket per transport about twice the limit would be answered; with one
    // bucket for the address, at most its burst (one second's worth) plus
    // what refills until the last answer.
    let started = Instant::now();
    let (over_udp, over_tcp) =
        tokio::join!(udp_burst_tally(udp, ONPREM_CLIENT, 600, started), tcp_burst_tally(tcp, 600, started));
    let answered = over_udp.answered + over_tcp.answered;
    let seconds = over_udp.last.max(over_tcp.last);
    let allowed = rate + rate * seconds + 20.0;
    let metrics = endpoint.server().metrics_text();
    let dropped = metric(&metrics, "signpost_dropped_total{reason=\"listener_limit\"}") as usize;
    let shown = format!(
        "answered {} over UDP and {} over TCP (last at {seconds:.3}s), dropped {dropped}",
        over_udp.answered, over_tcp.answered
    );
    assert!(answered as f64 <= allowed, "{shown}: more than one bucket of {rate}/s allows ({allowed:.0})");
    assert!(answered >= 100, "{shown}");
    // TCP loses nothing on the way: every TCP query not answered was dropped
    // by the limit (and counted).
    assert!(dropped >= 600 - over_tcp.answered, "{shown}");
    assert!(answered + dropped <= 1200, "{shown}");
    endpoint.shutdown().await;
}

#[tokio::test]
async fn with_aws_limits_off_nothing_is_dropped() {
    let Basics { dir, recursive, .. } = basics().await;
    let extra = format!("{ZONE}\n[aws_limits]\nenabled = false\n");
    let endpoint = start(dir.path(), &two_vpcs(recursive.address(), &extra)).await;
    assert_eq!(endpoint.deployment().server.limits.per_client_qps, None);
    let (answered, _) = burst(vpc_resolver(&endpoint, "vpc-a"), VPC_A_CLIENT, 1500).await;
    let metrics = endpoint.server().metrics_text();
    assert_eq!(metric(&metrics, "signpost_dropped_total{reason=\"rate_limited\"}"), 0);
    assert!(answered >= 1000, "answered {answered} of 1500 (none rate-limited; the rest lost by the kernel)");
    endpoint.shutdown().await;
}
