//! "Why this answer?": explain runs a question through the pipeline as a
//! listener would, reading the cache without filling it or counting in it.

use std::net::{Ipv4Addr, SocketAddr};

use signpost_rules::Transport;
use signpost_server::{ServerHandle, Trace};
use signpost_wire::RecordType;

use crate::support::*;

async fn explain(server: &ServerHandle, name: &str, client: &str) -> Trace {
    let client: SocketAddr = client.parse().unwrap();
    server.explain(&name.parse().unwrap(), RecordType::A, client, Transport::Udp).await
}

/// The cache's hits, misses, stale hits and inserts.
fn figures(server: &ServerHandle) -> [u64; 4] {
    let stats = server.cache_stats();
    [stats.hits(), stats.misses(), stats.stale_hits(), stats.inserts()]
}

#[tokio::test]
async fn explain_reads_the_cache_but_neither_fills_nor_counts_in_it() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 30)).await;
    let server = start(&default_zone(&upstream)).await;

    // A miss: forwarded, with nothing stored and nothing counted.
    let trace = explain(&server, "www.example.net", "127.0.0.1:0").await;
    assert_eq!(
        (trace.decision.as_str(), trace.cache.as_deref(), trace.rcode.as_str()),
        ("forward", Some("miss"), "NOERROR")
    );
    assert_eq!(upstream.query_count(), 1);
    assert_eq!(figures(&server), [0, 0, 0, 0]);

    // A client's query still misses (explain stored nothing), and is counted and stored.
    assert_eq!(addresses(udp(&server), "www.example.net.").await, ["192.0.2.30"]);
    assert_eq!(upstream.query_count(), 2);
    let after_client = figures(&server);
    assert_eq!(after_client, [0, 1, 0, 1]);

    // Explain sees the client's cached answer: no upstream packet, no counter moved.
    let trace = explain(&server, "www.example.net", "127.0.0.1:0").await;
    assert_eq!(trace.cache.as_deref(), Some("hit"));
    assert!(trace.notes.iter().any(|note| note.contains("192.0.2.30")), "{:?}", trace.notes);
    assert_eq!(upstream.query_count(), 2);
    assert_eq!(figures(&server), after_client);
    server.shutdown().await;
}

#[tokio::test]
async fn explain_applies_the_listeners_allow_list() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 31)).await;
    let server = start(&default_zone(&upstream)).await;

    // The listeners have the default allow-list (loopback and private ranges): a public client is refused.
    // (Only the trace pretends the query came from there; nothing is sent off loopback.)
    let trace = explain(&server, "www.example.net", "203.0.113.7:0").await;
    assert_eq!((trace.decision.as_str(), trace.rcode.as_str()), ("refused", "REFUSED"));
    assert!(trace.notes.iter().any(|note| note.starts_with("refused by ACL: 203.0.113.7")), "{:?}", trace.notes);
    assert_eq!(upstream.query_count(), 0);

    let trace = explain(&server, "www.example.net", "10.1.2.3:0").await;
    assert_eq!((trace.decision.as_str(), trace.rcode.as_str()), ("forward", "NOERROR"));
    assert_eq!(upstream.query_count(), 1);
    server.shutdown().await;
}
