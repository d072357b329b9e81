//! Local zones, host tables and the cache answer without upstream packets.

use std::net::Ipv4Addr;
use std::time::Duration;

use signpost_wire::{Rcode, RecordType};

use crate::support::*;

#[tokio::test]
async fn local_zones_and_host_tables_answer_without_any_upstream() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 99)).await;
    let dir = TempDir::new();
    dir.write(
        "lab.zone",
        "$ORIGIN lab.example.\n$TTL 120\n@ SOA ns hostmaster 1 3600 600 86400 60\nwww A 10.9.0.1\nmail MX 10 www\n",
    );
    let server = start_in(
        &format!(
            r#"
            zones = [{{ name = "lab.example", file = "lab.zone" }}, {{ name = "dev.example", records = ["api 60 A 10.9.1.1"] }}]
            {default}
            [[host_tables]]
            name = "mesh"
            ttl = 30
            hosts = [
              {{ name = "reviews.mesh.local", addresses = ["10.7.0.1"] }},
              {{ name = "ratings.mesh.local" }},
            ]
            "#,
            default = default_zone(&upstream)
        ),
        dir.path(),
    )
    .await;
    let address = udp(&server);
    assert_eq!(records(address, "www.lab.example.", RecordType::A).await, [(120, "10.9.0.1".to_owned())]);
    assert_eq!(records(address, "mail.lab.example.", RecordType::MX).await, [(120, "10 www.lab.example.".to_owned())]);
    assert_eq!(records(address, "api.dev.example.", RecordType::A).await, [(60, "10.9.1.1".to_owned())]);
    assert_eq!(records(address, "reviews.mesh.local.", RecordType::A).await, [(30, "10.7.0.1".to_owned())]);
    let allocated = addresses(address, "ratings.mesh.local.").await;
    assert!(allocated[0].starts_with("240.240."), "{allocated:?}");
    // A private zone shadows the public namespace.
    let (rcode, _) = ask(address, "nosuch.lab.example", RecordType::A).await.unwrap();
    assert_eq!(rcode, Rcode::NXDOMAIN);
    assert_eq!(upstream.query_count(), 0, "no upstream packet for local data");
    assert_eq!(addresses(address, "www.example.net.").await, ["192.0.2.99"]);
    assert_eq!(upstream.query_count(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_repeated_query_is_answered_from_the_cache_with_the_ttl_counted_down() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 10)).await;
    let server = start(&format!("{}[cache]\nmax_ttl = 3600\n", default_zone(&upstream))).await;
    let address = udp(&server);
    assert_eq!(records(address, "cached.example.", RecordType::A).await, [(300, "192.0.2.10".to_owned())]);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let again = records(address, "cached.example.", RecordType::A).await;
    assert_eq!(again.len(), 1);
    assert!((290..=298).contains(&again[0].0), "TTL {} was not counted down", again[0].0);
    assert_eq!(upstream.query_count(), 1, "the repeat must not reach the upstream");
    server.shutdown().await;
}

#[tokio::test]
async fn the_query_log_and_metrics_record_forwarded_and_local_answers() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 11)).await;
    let dir = TempDir::new();
    let log = dir.join("queries.jsonl");
    let server = start(&format!(
        r#"
        {default}
        [[zones]]
        name = "lab.example"
        records = ["www A 10.9.0.1"]

        [query_log]
        enabled = true
        destination = {{ file = "{log}" }}
        "#,
        default = default_zone(&upstream),
        log = log.display(),
    ))
    .await;
    let address = udp(&server);
    assert_eq!(addresses(address, "www.lab.example.").await, ["10.9.0.1"]);
    assert_eq!(addresses(address, "www.example.net.").await, ["192.0.2.11"]);
    let logged = eventually(Duration::from_secs(5), || {
        let log = log.clone();
        async move { std::fs::read_to_string(&log).is_ok_and(|text| text.lines().count() >= 2) }
    })
    .await;
    assert!(logged, "query log: {:?}", std::fs::read_to_string(&log));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("www.lab.example") && text.contains("www.example.net"), "{text}");
    let metrics = server.metrics_text();
    assert!(metrics.contains("signpost_decisions_total{decision=\"local\"} 1"), "{metrics}");
    assert!(metrics.contains("signpost_decisions_total{decision=\"forwarded\"} 1"), "{metrics}");
    server.shutdown().await;
}
