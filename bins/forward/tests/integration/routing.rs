//! Forward zones: the most specific zone wins, and only its servers are asked.

use std::net::Ipv4Addr;

use crate::support::*;

#[tokio::test]
async fn each_name_reaches_its_zones_servers_and_no_other() {
    let corp = FakeUpstream::answering(Ipv4Addr::new(10, 0, 0, 1)).await;
    let example = FakeUpstream::answering(Ipv4Addr::new(10, 0, 0, 2)).await;
    let root = FakeUpstream::answering(Ipv4Addr::new(10, 0, 0, 3)).await;
    let server = start(&format!(
        r#"
        forward_zones = [
            {{ name = "corp.example.com", servers = ["{corp}"] }},
            {{ name = "example.com", servers = ["tcp://{example}"] }},
            {{ name = ".", servers = ["{root}"] }},
        ]
        "#,
        corp = corp.address(),
        example = example.address(),
        root = root.address(),
    ))
    .await;
    let address = udp(&server);

    assert_eq!(addresses(address, "git.corp.example.com.").await, ["10.0.0.1"]);
    assert_eq!((corp.query_count(), example.query_count(), root.query_count()), (1, 0, 0));
    assert_eq!(addresses(address, "corp.example.com.").await, ["10.0.0.1"]);
    assert_eq!((corp.query_count(), example.query_count(), root.query_count()), (2, 0, 0));

    // example.com is asked over TCP, as its server spec says.
    assert_eq!(addresses(address, "www.example.com.").await, ["10.0.0.2"]);
    assert_eq!(addresses(address, "notcorp.example.com.").await, ["10.0.0.2"]);
    assert_eq!((corp.query_count(), example.query_count(), root.query_count()), (2, 2, 0));

    assert_eq!(addresses(address, "www.example.org.").await, ["10.0.0.3"]);
    assert_eq!(addresses(address, "com.").await, ["10.0.0.3"]);
    assert_eq!((corp.query_count(), example.query_count(), root.query_count()), (2, 2, 2));

    assert_eq!(corp.names(), ["git.corp.example.com.", "corp.example.com."]);
    assert_eq!(example.names(), ["www.example.com.", "notcorp.example.com."]);
    assert_eq!(root.names(), ["www.example.org.", "com."]);
    server.shutdown().await;
}

#[tokio::test]
async fn named_groups_and_views_route_by_client_network() {
    let inside = FakeUpstream::answering(Ipv4Addr::new(10, 1, 0, 1)).await;
    let outside = FakeUpstream::answering(Ipv4Addr::new(10, 1, 0, 2)).await;
    let server = start(&format!(
        r#"
        default_group = "public"
        upstreams = [
            {{ name = "onprem", servers = [{{ address = "{inside}" }}] }},
            {{ name = "public", servers = [{{ address = "{outside}" }}] }},
        ]
        views = [{{ name = "loopback", cidrs = ["127.0.0.0/8"] }}]
        forward_zones = [{{ name = "corp.example", group = "onprem", views = ["loopback"] }}]
        "#,
        inside = inside.address(),
        outside = outside.address(),
    ))
    .await;
    // The client is on 127.0.0.1: the "loopback" view applies.
    assert_eq!(addresses(udp(&server), "db.corp.example.").await, ["10.1.0.1"]);
    assert_eq!(addresses(udp(&server), "www.example.net.").await, ["10.1.0.2"]);
    assert_eq!((inside.query_count(), outside.query_count()), (1, 1));
    server.shutdown().await;
}
