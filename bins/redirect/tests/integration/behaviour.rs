//! The Behaviour and Configuration bullets of issue 6, over UDP and TCP,
//! with the redirect proxy embedded in the test process.

use std::net::{IpAddr, Ipv4Addr};

use signpost_wire::{EdnsHeader, Message, Rcode, RecordType as T};

use crate::support::*;

#[tokio::test]
async fn redirected_names_answer_with_the_arrival_address_and_the_rest_is_forwarded() {
    let (server, upstream) = with_upstream(&[]).await;
    for (protocol, resolver) in resolvers(&server) {
        for name in [
            "s3.amazonaws.com.",
            "sqs.us-east-1.amazonaws.com.",
            "aws.amazon.com.",
            "console.aws.amazon.com.",
            "d111111abcdef8.cloudfront.net.",
            "localhost.localstack.cloud.",
            "test.localhost.localstack.cloud.",
            // A name that exists nowhere is still redirected: never NXDOMAIN.
            "no-such-service.nowhere.amazonaws.com.",
        ] {
            assert_eq!(lookup(&resolver, name, T::A).await, answered(&["127.0.0.1"]), "{protocol:?} {name} A");
            assert_eq!(lookup(&resolver, name, T::AAAA).await, answered(&["::1"]), "{protocol:?} {name} AAAA");
        }
        assert_eq!(lookup(&resolver, "www.example.com.", T::A).await, answered(&["192.0.2.77"]), "{protocol:?}");
    }
    assert!(upstream.was_asked("www.example.com."));
    assert!(!upstream.was_asked("s3.amazonaws.com."), "redirected names never go upstream");
    server.shutdown().await;
}

/// An upstream with MX and TXT records for every name (A as `answering`).
async fn upstream_with_other_types() -> FakeUpstream {
    let mut builder = FakeUpstream::builder();
    for domain in ["*.amazonaws.com.", "*.localstack.cloud."] {
        builder = builder.answer(domain, T::MX, Answer::records(["@ 120 IN MX 10 mail.example.test."])).answer(
            domain,
            T::TXT,
            Answer::records(["@ 120 IN TXT \"from upstream\""]),
        );
    }
    builder.otherwise(Answer::address(FORWARDED.into())).start().await.unwrap()
}

#[tokio::test]
async fn other_types_of_redirected_names_are_forwarded_upstream_as_localstack_does() {
    let upstream = upstream_with_other_types().await;
    let server = start(settings(Some(&upstream))).await;
    for (protocol, resolver) in resolvers(&server) {
        for name in ["sqs.eu-west-1.amazonaws.com.", "test.localhost.localstack.cloud."] {
            assert_eq!(
                lookup(&resolver, name, T::MX).await,
                answered(&["10 mail.example.test."]),
                "{protocol:?} {name} MX"
            );
            assert_eq!(lookup(&resolver, name, T::TXT).await, answered(&["from upstream"]), "{protocol:?} {name} TXT");
            // A and AAAA are still the redirect's.
            assert_eq!(lookup(&resolver, name, T::A).await, answered(&["127.0.0.1"]), "{protocol:?} {name} A");
        }
    }
    assert!(upstream.was_asked("sqs.eu-west-1.amazonaws.com."));
    assert!(upstream.was_asked("test.localhost.localstack.cloud."));
    // On the wire: the upstream's answer, relayed.
    let bytes = Query::new("s3.amazonaws.com", T::MX).edns(EdnsHeader::default()).to_bytes();
    let response = answer_over(Transport::Udp, server.udp_addrs()[0], &bytes).await;
    assert_eq!(answers(&response), ["s3.amazonaws.com. 120 IN MX 10 mail.example.test."]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_family_without_an_address_stays_nodata() {
    // DNS_RESOLVE_IPV6=none: the redirect holds AAAA, with nothing in it; never
    // the real (public) AAAA, which would send IPv6 clients past the emulator.
    let (server, upstream) = with_upstream(&[("DNS_RESOLVE_IPV6", "none")]).await;
    for (transport, address) in transports(&server) {
        let bytes = Query::new("s3.amazonaws.com", T::AAAA).edns(EdnsHeader::default()).to_bytes();
        let response = answer_over(transport, address, &bytes).await;
        let message = Message::parse(&response).unwrap();
        assert_eq!(message.rcode(), Ok(Rcode::NOERROR), "{transport:?}");
        assert!(message.flags().aa(), "{transport:?}");
        assert!(answers(&response).is_empty(), "{transport:?}");
        assert_eq!(authority_types(&response), [T::SOA], "{transport:?}");
    }
    assert_eq!(upstream.query_count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn the_ttl_is_three_hundred_by_default_as_localstack_and_configurable() {
    let (server, _upstream) = with_upstream(&[]).await;
    let response = answer_over(Transport::Udp, server.udp_addrs()[0], &query("s3.amazonaws.com", T::A)).await;
    assert_eq!(answers(&response), ["s3.amazonaws.com. 300 IN A 127.0.0.1"]);
    server.shutdown().await;

    let (server, _upstream) = with_upstream(&[("SIGNPOST_REDIRECT_TTL", "5")]).await;
    let response = answer_over(Transport::Tcp, server.tcp_addrs()[0], &query("S3.AmazonAWS.com", T::A)).await;
    assert_eq!(answers(&response), ["S3.AmazonAWS.com. 5 IN A 127.0.0.1"], "owner spelt as asked");
    server.shutdown().await;
}

#[tokio::test]
async fn dns_resolve_ip_fixes_the_address_and_aaaa_becomes_nodata() {
    let (server, _upstream) = with_upstream(&[("DNS_RESOLVE_IP", "172.17.0.2")]).await;
    for (_, resolver) in resolvers(&server) {
        assert_eq!(lookup(&resolver, "lambda.us-east-1.amazonaws.com.", T::A).await, answered(&["172.17.0.2"]));
        // No IPv6 address to give: NODATA, never NXDOMAIN.
        assert_eq!(
            lookup(&resolver, "lambda.us-east-1.amazonaws.com.", T::AAAA).await,
            ResolverAnswer::NoData { soa: true }
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn dns_resolve_ipv6_sets_the_aaaa_answer() {
    let (server, _upstream) = with_upstream(&[("DNS_RESOLVE_IP", "10.0.0.9"), ("DNS_RESOLVE_IPV6", "fd00::9")]).await;
    for (_, resolver) in resolvers(&server) {
        assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::A).await, answered(&["10.0.0.9"]));
        assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::AAAA).await, answered(&["fd00::9"]));
    }
    server.shutdown().await;
    let (server, _upstream) = with_upstream(&[("DNS_RESOLVE_IPV6", "none")]).await;
    let resolver = resolver(Transport::Udp, server.udp_addrs()[0]);
    assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::AAAA).await, ResolverAnswer::NoData { soa: true });
    assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::A).await, answered(&["127.0.0.1"]));
    server.shutdown().await;
}

#[tokio::test]
async fn the_resolve_address_is_the_one_each_client_reached_us_on() {
    // Two "networks": 127.0.0.1 and 127.0.0.2, one listener each.
    let (server, _upstream) = with_upstream(&[("DNS_ADDRESS", "127.0.0.1,127.0.0.2")]).await;
    let udp = server.udp_addrs();
    let tcp = server.tcp_addrs();
    assert_eq!(udp.len(), 2);
    for (index, expected) in ["127.0.0.1", "127.0.0.2"].into_iter().enumerate() {
        assert_eq!(udp[index].ip().to_string(), expected);
        for (protocol, address) in [(Transport::Udp, udp[index]), (Transport::Tcp, tcp[index])] {
            let resolver = resolver(protocol, address);
            assert_eq!(lookup(&resolver, "sns.us-east-1.amazonaws.com.", T::A).await, answered(&[expected]));
            assert_eq!(lookup(&resolver, "test.localhost.localstack.cloud.", T::A).await, answered(&[expected]));
        }
    }
    let lines = server.startup_lines();
    assert!(lines[0].starts_with("Starting DNS servers (tcp/udp port ") && lines[0].ends_with(" on 127.0.0.1)..."));
    assert!(lines[1].ends_with(" on 127.0.0.2)..."), "{lines:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_wildcard_listener_answers_with_the_destination_address_of_each_packet() {
    let (server, _upstream) = with_upstream(&[("DNS_ADDRESS", "0.0.0.0")]).await;
    let port = server.udp_addrs()[0].port();
    assert_eq!(server.tcp_addrs()[0].port(), port, "UDP and TCP share the port");
    for local in [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)] {
        let address = (IpAddr::V4(local), port).into();
        for protocol in [Transport::Udp, Transport::Tcp] {
            let resolver = resolver(protocol, address);
            assert_eq!(
                lookup(&resolver, "sts.amazonaws.com.", T::A).await,
                answered(&[local.to_string().as_str()]),
                "{protocol:?} to {local}"
            );
        }
        // The client's own address does not matter, only where it sent the query.
        let response = udp_exchange_from(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
            address,
            &query("sts.amazonaws.com", T::A),
            ASK_TIMEOUT,
        )
        .await
        .unwrap();
        assert_eq!(answers(&response), [format!("sts.amazonaws.com. 300 IN A {local}")]);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn local_name_patterns_and_skip_patterns_work_together() {
    let (server, upstream) = with_upstream(&[
        ("DNS_LOCAL_NAME_PATTERNS", ".*(ecr|lambda).*.amazonaws.com"),
        ("DNS_NAME_PATTERNS_TO_RESOLVE_UPSTREAM", r".*lambda\.eu-west-1\..*, checkip\..*"),
    ])
    .await;
    for (protocol, resolver) in resolvers(&server) {
        let local = answered(&["127.0.0.1"]);
        let forwarded = answered(&["192.0.2.77"]);
        for (name, expected) in [
            ("api.ecr.us-east-1.amazonaws.com.", &local),
            ("lambda.us-east-1.amazonaws.com.", &local),
            // The skip list beats DNS_LOCAL_NAME_PATTERNS.
            ("lambda.eu-west-1.amazonaws.com.", &forwarded),
            // Not matching DNS_LOCAL_NAME_PATTERNS: forwarded, although in a redirected domain.
            ("sqs.us-east-1.amazonaws.com.", &forwarded),
            ("d1.cloudfront.net.", &forwarded),
            ("checkip.amazonaws.com.", &forwarded),
            // The emulator's own name is redirected whatever the patterns say.
            ("test.localhost.localstack.cloud.", &local),
        ] {
            assert_eq!(&lookup(&resolver, name, T::A).await, expected, "{protocol:?} {name}");
        }
    }
    assert!(upstream.was_asked("sqs.us-east-1.amazonaws.com."));
    assert!(!upstream.was_asked("lambda.us-east-1.amazonaws.com."));
    server.shutdown().await;
}

#[tokio::test]
async fn the_skip_list_alone_sends_matching_names_upstream() {
    let (server, upstream) =
        with_upstream(&[("DNS_NAME_PATTERNS_TO_RESOLVE_UPSTREAM", r".*\.s3\..*\.amazonaws\.com")]).await;
    for (protocol, resolver) in resolvers(&server) {
        assert_eq!(lookup(&resolver, "bucket.s3.us-east-1.amazonaws.com.", T::A).await, answered(&["192.0.2.77"]));
        assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::A).await, answered(&["127.0.0.1"]), "{protocol:?}");
    }
    assert!(upstream.was_asked("bucket.s3.us-east-1.amazonaws.com."));
    server.shutdown().await;
}

#[tokio::test]
async fn the_redirected_domains_are_configurable_and_the_emulator_name_stays() {
    let (server, _upstream) = with_upstream(&[("SIGNPOST_REDIRECT_DOMAINS", "emulator.test,storage.example")]).await;
    for (protocol, resolver) in resolvers(&server) {
        assert_eq!(lookup(&resolver, "api.emulator.test.", T::A).await, answered(&["127.0.0.1"]), "{protocol:?}");
        assert_eq!(lookup(&resolver, "storage.example.", T::A).await, answered(&["127.0.0.1"]), "{protocol:?}");
        assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::A).await, answered(&["192.0.2.77"]), "{protocol:?}");
        assert_eq!(lookup(&resolver, "x.localhost.localstack.cloud.", T::A).await, answered(&["127.0.0.1"]));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn without_an_upstream_redirected_names_answer_and_the_rest_is_servfail_with_an_extended_error() {
    let server = start(settings(None)).await;
    let lines = server.startup_lines();
    assert!(lines.iter().any(|line| line.starts_with("Upstream DNS servers: none")));
    // The last line says truthfully what happens to forwarded queries: not
    // logged, but their answers are cached in memory.
    assert_eq!(
        lines.last().map(String::as_str),
        Some("Query log: off (forwarded queries are not logged; their answers are cached in memory only)")
    );
    for (protocol, resolver) in resolvers(&server) {
        assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::A).await, answered(&["127.0.0.1"]), "{protocol:?}");
        assert_eq!(lookup(&resolver, "www.example.com.", T::A).await, ResolverAnswer::Rcode(Rcode::SERVFAIL));
    }
    let bytes = Query::new("www.example.com", T::A).edns(EdnsHeader::default()).to_bytes();
    let response = answer_over(Transport::Udp, server.udp_addrs()[0], &bytes).await;
    let message = Message::parse(&response).unwrap();
    assert_eq!(message.rcode(), Ok(Rcode::SERVFAIL));
    let edns = message.edns().unwrap().unwrap();
    assert!(edns.option(signpost_wire::OptionCode::EXTENDED_ERROR).is_some(), "an extended error says why");
    server.shutdown().await;
}
