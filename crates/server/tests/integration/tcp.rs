//! TCP listeners (RFC 7766): answers go out as they finish, idle
//! connections are closed, and connections past the cap are refused.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use signpost_wire::RecordType;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::*;

/// Generous bound for anything that should happen "at once" on a busy machine.
const PATIENCE: Duration = Duration::from_secs(10);

/// A query for `name` whose ID ends in `tag`.
fn tagged_query(name: &str, tag: u8) -> Vec<u8> {
    let mut bytes = query(name, RecordType::A);
    bytes[1] = tag;
    bytes
}

/// One query and its answer on an open connection.
async fn exchange_on(stream: &mut TcpStream, name: &str) -> Vec<u8> {
    write_frame(stream, &query(name, RecordType::A)).await.unwrap();
    tokio::time::timeout(PATIENCE, read_frame(stream)).await.expect("an answer in time").expect("an answer")
}

#[tokio::test]
async fn pipelined_answers_go_out_as_they_finish_not_in_order() {
    let slow = slow_upstream(Ipv4Addr::new(192, 0, 2, 30), Duration::from_millis(300)).await;
    let mut group = group_of("upstream", &slow);
    group.per_try_timeout = Duration::from_secs(3);
    group.total_timeout = Duration::from_secs(4);
    let server =
        start_server(builder().rules(rules(LOCAL_TEST, &["upstream"])).upstreams(upstreams(vec![group.clone()]))).await;
    let mut stream = TcpStream::connect(tcp(&server)).await.unwrap();
    // The forwarded query first, the local one right behind it in the same segment.
    let mut batch = Vec::new();
    for bytes in [tagged_query("slow.example", 1), tagged_query("fast.local.test", 2)] {
        batch.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        batch.extend_from_slice(&bytes);
    }
    stream.write_all(&batch).await.unwrap();
    let first = tokio::time::timeout(PATIENCE, read_frame(&mut stream)).await.expect("in time").expect("an answer");
    assert_eq!(first[1], 2, "the local answer must not wait for the slow upstream");
    assert_eq!(answers(&first), ["fast.local.test. 60 IN A 127.0.0.1"]);
    let second = tokio::time::timeout(PATIENCE, read_frame(&mut stream)).await.expect("in time").expect("an answer");
    assert_eq!(second[1], 1);
    assert_eq!(answers(&second), ["slow.example. 60 IN A 192.0.2.30"]);
    assert_eq!(slow.query_count(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_closed_and_busy_ones_kept() {
    let server = local_test_server(|config| config.limits.tcp_idle_timeout_secs = 2).await;
    let mut stream = TcpStream::connect(tcp(&server)).await.unwrap();
    // A query every half second for longer than the idle timeout: the
    // connection stays open, because it is never idle for 2 s.
    for round in 0..6 {
        let response = exchange_on(&mut stream, &format!("r{round}.local.test")).await;
        assert_eq!(answers(&response).len(), 1);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(answers(&exchange_on(&mut stream, "last.local.test").await).len(), 1);
    // Then silence: the server closes it, and not before the timeout.
    let quiet = Instant::now();
    assert!(closed_within(&mut stream, Duration::from_secs(20)).await, "the idle connection was not closed");
    assert!(quiet.elapsed() >= Duration::from_millis(1_900), "closed after only {:?}", quiet.elapsed());
    // A connection that never sends anything is closed too.
    let mut silent = TcpStream::connect(tcp(&server)).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(20)).await, "the silent connection was not closed");
    server.shutdown().await;
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_and_a_freed_slot_is_reused() {
    let server = local_test_server(|config| config.limits.tcp_max_connections = 2).await;
    let mut first = TcpStream::connect(tcp(&server)).await.unwrap();
    let mut second = TcpStream::connect(tcp(&server)).await.unwrap();
    assert_eq!(answers(&exchange_on(&mut first, "one.local.test").await).len(), 1);
    assert_eq!(answers(&exchange_on(&mut second, "two.local.test").await).len(), 1);

    // The third is accepted by the kernel, then closed by the server unanswered.
    let mut third = TcpStream::connect(tcp(&server)).await.unwrap();
    let bytes = query("three.local.test", RecordType::A);
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    let _ = third.write_all(&framed).await; // may already fail: the server closed it
    assert!(closed_within(&mut third, PATIENCE).await, "a connection past the cap was served");
    assert!(server.metrics().drops("tcp_limit") >= 1);

    // The two within the cap still work.
    assert_eq!(answers(&exchange_on(&mut first, "again.local.test").await).len(), 1);
    drop(first);
    // Once the server has seen the close, the slot is free again.
    let mut served = false;
    for _ in 0..50 {
        let mut stream = TcpStream::connect(tcp(&server)).await.unwrap();
        let _ = stream.write_all(&framed).await;
        if let Ok(Some(response)) = tokio::time::timeout(Duration::from_secs(2), read_frame(&mut stream)).await {
            assert_eq!(answers(&response), ["three.local.test. 60 IN A 127.0.0.1"]);
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the freed slot was never reused");
    assert_eq!(answers(&exchange_on(&mut second, "still.local.test").await).len(), 1);
    server.shutdown().await;
}
