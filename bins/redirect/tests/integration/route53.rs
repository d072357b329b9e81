//! Hosted zones of a Route 53 API answered over DNS, as LocalStack answers
//! the records of its Route 53 API: every type, wildcards in Terraform's
//! `\052` spelling, alias records, served to every client. The zones come
//! in through the HostedZoneFeed the control plane's Route 53 service
//! publishes to.

use signpost_redirect::{AliasTarget, HostedZone, ResourceRecordSet};
use signpost_wire::{Message, Rcode, RecordType as T};

use crate::support::*;

fn set(name: &str, rtype: &str, values: &[&str]) -> ResourceRecordSet {
    ResourceRecordSet::new(name, rtype, 120, values)
}

fn alias(name: &str, target: &str) -> ResourceRecordSet {
    ResourceRecordSet {
        alias_target: Some(AliasTarget {
            hosted_zone_id: "Z0EXAMPLE".into(),
            dns_name: target.to_owned(),
            evaluate_target_health: false,
        }),
        ttl: None,
        ..set(name, "A", &[])
    }
}

fn zone(sets: Vec<ResourceRecordSet>) -> HostedZone {
    HostedZone { id: "Z0EXAMPLE".into(), name: "example.com.".into(), resource_record_sets: sets }
}

#[tokio::test]
async fn hosted_zone_records_answer_every_client() {
    let (server, upstream) = with_upstream(&[("DNS_ADDRESS", "127.0.0.1,127.0.0.2")]).await;
    let warnings = server
        .hosted_zone_feed()
        .publish(vec![zone(vec![
            set("example.com.", "SOA", &["ns-1.awsdns-00.com. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400"]),
            set("example.com.", "NS", &["ns-1.awsdns-00.com."]),
            set("example.com.", "MX", &["10 mail.example.com"]),
            set("example.com.", "TXT", &["\"v=spf1 -all\""]),
            set("www.example.com.", "A", &["192.0.2.1"]),
            set("www.example.com.", "AAAA", &["2001:db8::1"]),
            set("\\052.example.com.", "A", &["192.0.2.9"]),
            set("_sip._tcp.example.com.", "SRV", &["10 5 5060 sip.example.com"]),
            set("web.example.com.", "CNAME", &["www.example.com"]),
            alias("apex.example.com.", "www.example.com."),
            alias("lb.example.com.", "my-lb-1234.us-east-1.elb.amazonaws.com."),
            set("broken.example.com.", "A", &["not-an-address"]),
        ])])
        .unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].name, "broken.example.com.");
    // Served to every client: here, clients reaching 127.0.0.1 and 127.0.0.2.
    for address in server.udp_addrs().into_iter().chain(server.tcp_addrs()) {
        let protocol = if server.udp_addrs().contains(&address) { Transport::Udp } else { Transport::Tcp };
        let resolver = resolver(protocol, address);
        assert_eq!(lookup(&resolver, "www.example.com.", T::A).await, answered(&["192.0.2.1"]), "{address}");
        assert_eq!(lookup(&resolver, "www.example.com.", T::AAAA).await, answered(&["2001:db8::1"]));
        assert_eq!(lookup(&resolver, "example.com.", T::MX).await, answered(&["10 mail.example.com."]));
        assert_eq!(lookup(&resolver, "example.com.", T::TXT).await, answered(&["v=spf1 -all"]));
        assert_eq!(
            lookup(&resolver, "_sip._tcp.example.com.", T::SRV).await,
            answered(&["10 5 5060 sip.example.com."])
        );
        assert_eq!(lookup(&resolver, "example.com.", T::NS).await, answered(&["ns-1.awsdns-00.com."]));
        // Terraform's \052: a wildcard.
        assert_eq!(lookup(&resolver, "anything.example.com.", T::A).await, answered(&["192.0.2.9"]));
        assert_eq!(lookup(&resolver, "a.b.example.com.", T::A).await, answered(&["192.0.2.9"]));
        // An alias record: its target's records.
        assert_eq!(lookup(&resolver, "apex.example.com.", T::A).await, answered(&["192.0.2.1"]));
        // An alias to an AWS name: the emulator, as that name would be.
        let emulator = address.ip().to_string();
        assert_eq!(lookup(&resolver, "lb.example.com.", T::A).await, answered(&[&emulator]));
    }
    // CNAMEs are followed inside the zone.
    let response = answer_over(Transport::Udp, server.udp_addrs()[0], &query("web.example.com", T::A)).await;
    assert_eq!(
        answers(&response),
        ["web.example.com. 120 IN CNAME www.example.com.", "www.example.com. 120 IN A 192.0.2.1"]
    );
    // The zone is authoritative, as Route 53 is: a type it lacks is NODATA
    // and a name below a name it has is NXDOMAIN, with its SOA; never forwarded.
    let resolver = resolver(Transport::Udp, server.udp_addrs()[0]);
    assert_eq!(lookup(&resolver, "www.example.com.", T::MX).await, ResolverAnswer::NoData { soa: true });
    assert_eq!(lookup(&resolver, "x.www.example.com.", T::A).await, ResolverAnswer::Rcode(Rcode::NXDOMAIN));
    let response = answer_over(Transport::Udp, server.udp_addrs()[0], &query("x.www.example.com", T::A)).await;
    let message = Message::parse(&response).unwrap();
    assert_eq!(message.rcode(), Ok(Rcode::NXDOMAIN));
    assert!(message.flags().aa());
    assert_eq!(authority_types(&response), [T::SOA]);
    assert!(!upstream.was_asked("x.www.example.com."));
    let snapshot = server.redirector().snapshot();
    assert_eq!(snapshot.hosted_zones.len(), 1);
    assert_eq!(snapshot.hosted_zones[0].record_sets, 12);
    server.shutdown().await;
}

#[tokio::test]
async fn changes_published_later_change_the_answers_and_deleting_the_zone_forwards_again() {
    let (server, _upstream) = with_upstream(&[]).await;
    let feed = server.hosted_zone_feed();
    let resolver = resolver(Transport::Udp, server.udp_addrs()[0]);
    assert_eq!(lookup(&resolver, "www.example.com.", T::A).await, answered(&["192.0.2.77"]), "forwarded before");
    feed.publish(vec![zone(vec![set("www.example.com.", "A", &["192.0.2.1"])])]).unwrap();
    assert_eq!(lookup(&resolver, "www.example.com.", T::A).await, answered(&["192.0.2.1"]));
    // UPSERT.
    feed.publish(vec![zone(vec![set("www.example.com.", "A", &["192.0.2.2", "192.0.2.3"])])]).unwrap();
    let mut got = lookup(&resolver, "www.example.com.", T::A).await;
    if let ResolverAnswer::Records(records) = &mut got {
        records.sort();
    }
    assert_eq!(got, answered(&["192.0.2.2", "192.0.2.3"]));
    // DELETE of the record set: NXDOMAIN from the zone.
    feed.publish(vec![zone(Vec::new())]).unwrap();
    assert_eq!(lookup(&resolver, "www.example.com.", T::A).await, ResolverAnswer::Rcode(Rcode::NXDOMAIN));
    // DeleteHostedZone: forwarded again (the cache was emptied by the change).
    feed.publish(Vec::new()).unwrap();
    assert_eq!(lookup(&resolver, "www.example.com.", T::A).await, answered(&["192.0.2.77"]));
    // Hosted zones survive clear, which is for run-time changes.
    feed.publish(vec![zone(vec![set("www.example.com.", "A", &["192.0.2.1"])])]).unwrap();
    server.clear().unwrap();
    assert_eq!(lookup(&resolver, "www.example.com.", T::A).await, answered(&["192.0.2.1"]));
    // A hosted zone for an AWS name is served, not redirected.
    feed.publish(vec![HostedZone {
        id: "Z2".into(),
        name: "internal.amazonaws.com".into(),
        resource_record_sets: vec![set("db.internal.amazonaws.com", "A", &["10.1.1.1"])],
    }])
    .unwrap();
    assert_eq!(lookup(&resolver, "db.internal.amazonaws.com.", T::A).await, answered(&["10.1.1.1"]));
    assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::A).await, answered(&["127.0.0.1"]));
    server.shutdown().await;
}
