//! Names outside the redirect: relay, failover, failures, truncation, and
//! where the default upstreams come from.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use signpost_redirect::UpstreamSource;
use signpost_wire::{EdnsHeader, EdnsOption, ExtendedErrorCode, Message, OptionCode, Rcode, RecordType as T};

use crate::support::*;

#[tokio::test]
async fn upstream_answers_are_relayed_with_flags_and_sections_intact() {
    let relayed = Answer::records(["@ 300 IN A 192.0.2.5"])
        .authority(["example.org. 3600 IN NS ns1.example.org."])
        .additional(["ns1.example.org. 3600 IN A 192.0.2.53"])
        .authentic_data()
        .edns(EdnsHeader::default())
        .edns_option(OptionCode::NSID, *b"upstream-1");
    let upstream = FakeUpstream::builder().otherwise(relayed).start().await.unwrap();
    let server = start(settings(Some(&upstream))).await;
    let bytes = Query::new("www.example.org", T::A).edns(EdnsHeader::default()).to_bytes();
    for (transport, address) in transports(&server) {
        let response = answer_over(transport, address, &bytes).await;
        let message = Message::parse(&response).unwrap();
        assert_eq!(message.id(), 0x4d2, "{transport}: the client's ID");
        assert!(message.flags().ad() && message.flags().ra(), "{transport}");
        assert_eq!(answers(&response), ["www.example.org. 300 IN A 192.0.2.5"]);
        assert_eq!(authority_types(&response), [T::NS]);
        let edns = message.edns().unwrap().unwrap();
        assert!(matches!(edns.option(OptionCode::NSID), Some(EdnsOption::Nsid(b"upstream-1"))), "{transport}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn upstreams_fail_over_in_the_order_given() {
    let silent = FakeUpstream::silent().await;
    let working = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 8)).await;
    let mut settings = settings(None);
    settings.set("DNS_SERVER", &format!("{}, {}", silent.address(), working.address())).unwrap();
    settings.upstream_total_timeout = Duration::from_secs(2);
    let server = start(settings).await;
    assert!(
        server
            .startup_lines()
            .iter()
            .any(|line| line
                == &format!("Upstream DNS servers: {}, {} (DNS_SERVER)", silent.address(), working.address()))
    );
    for (protocol, resolver) in resolvers(&server) {
        let name = format!("{protocol}.failover.example.");
        assert_eq!(lookup(&resolver, &name, T::A).await, answered(&["192.0.2.8"]), "{protocol:?}");
    }
    assert!(silent.query_count() >= 1, "the first server was asked first");
    server.shutdown().await;
}

#[tokio::test]
async fn a_silent_upstream_gives_servfail_within_the_deadline() {
    let upstream = FakeUpstream::silent().await;
    let server = start(settings(Some(&upstream))).await;
    for (protocol, address) in transports(&server) {
        let bytes = Query::new(&format!("{protocol}.void.example"), T::A).edns(EdnsHeader::default()).to_bytes();
        let started = Instant::now();
        let response = answer_over(protocol, address, &bytes).await;
        // The deadline is 1 s here (upstream_total_timeout); clients give up after 2-5 s.
        assert!(started.elapsed() < Duration::from_millis(1_900), "{protocol}: took {:?}", started.elapsed());
        let message = Message::parse(&response).unwrap();
        assert_eq!(message.rcode(), Ok(Rcode::SERVFAIL), "{protocol:?}");
        let edns = message.edns().unwrap().unwrap();
        let Some(EdnsOption::ExtendedError(error)) = edns.option(OptionCode::EXTENDED_ERROR) else { panic!("no EDE") };
        assert_eq!(error.info_code, ExtendedErrorCode::NO_REACHABLE_AUTHORITY, "{protocol:?}");
        // hickory sees the SERVFAIL too.
        let resolver = resolver(protocol, address);
        let name = format!("{protocol}.void2.example.");
        assert_eq!(lookup(&resolver, &name, T::A).await, ResolverAnswer::Rcode(Rcode::SERVFAIL));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_large_answer_is_truncated_for_plain_udp_clients_and_whole_over_tcp() {
    let upstream = big_upstream(30).await;
    let server = start(settings(Some(&upstream))).await;
    // A client without EDNS over UDP: 512 octets at most, so TC and no partial RRset.
    let plain = query("big.example", T::TXT);
    let truncated = answer_over(Transport::Udp, server.udp_addrs()[0], &plain).await;
    assert!(truncated.len() <= 512, "{} octets", truncated.len());
    let message = Message::parse(&truncated).unwrap();
    assert!(message.flags().tc(), "TC set for the UDP client");
    assert_eq!(message.rcode(), Ok(Rcode::NOERROR));
    // The same over TCP: all 30 records (the server itself fetched them over TCP after the upstream's TC).
    let whole = answer_over(Transport::Tcp, server.tcp_addrs()[0], &plain).await;
    let message = Message::parse(&whole).unwrap();
    assert!(!message.flags().tc());
    assert_eq!(answers(&whole).len(), 30);
    // hickory over TCP sees every record.
    let resolver = resolver(Transport::Tcp, server.tcp_addrs()[0]);
    let ResolverAnswer::Records(records) = lookup(&resolver, "big2.example.", T::TXT).await else {
        panic!("no records")
    };
    assert_eq!(records.len(), 30);
    server.shutdown().await;
}

#[tokio::test]
async fn default_upstreams_come_from_resolv_conf_without_loops() {
    // Only systemd-resolved's stub: the real upstreams come from its own file.
    // (192.0.2.0/24 is documentation space; this test sends it nothing.)
    let dir = TempDir::new();
    let stub = dir.write("resolv.conf", "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n");
    let real = dir.write("systemd-resolv.conf", "nameserver 192.0.2.1\nnameserver 192.0.2.2\n");
    let mut settings = settings(None);
    settings.resolv_conf = stub;
    settings.systemd_resolv_conf = real.clone();
    let server = start(settings.clone()).await;
    assert_eq!(server.upstream().source, UpstreamSource::SystemdResolved(real));
    let servers: Vec<String> = server.upstream().servers.iter().map(ToString::to_string).collect();
    assert_eq!(servers, ["192.0.2.1:53", "192.0.2.2:53"]);
    server.shutdown().await;

    // Our own address and loopback stubs are left out; nothing left means none.
    settings.resolv_conf = dir.write("own-resolv.conf", "nameserver 127.0.0.1\nnameserver ::1\n");
    let server = start(settings).await;
    assert_eq!(server.upstream().source, UpstreamSource::None);
    let line = server.startup_lines().into_iter().find(|line| line.starts_with("Upstream")).unwrap();
    assert!(line.contains("none") && line.contains("left out"), "{line}");
    let resolver = resolver(Transport::Udp, server.udp_addrs()[0]);
    assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::A).await, answered(&["127.0.0.1"]));
    server.shutdown().await;
}
