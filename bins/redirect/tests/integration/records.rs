//! LocalStack's in-process DNS API (add_host, delete_host, add_alias,
//! delete_alias, add_skip, delete_skip, clear) as signpost-redirect offers
//! it at run time: records of every type the Route 53 part serves, wildcard
//! names, aliases with health checks, `clear`, from Rust and over the admin
//! listener's JSON API.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use signpost_redirect::{AliasSpec, HealthCheck, HealthCheckSpec, RecordFilter, RecordSpec, RedirectError};
use signpost_wire::{Rcode, RecordType as T};

use crate::support::*;

fn record(name: &str, rtype: T, value: &str) -> RecordSpec {
    RecordSpec::new(name, rtype, value)
}

/// Ask until the answer is `expected` (health checks run in the background), for at most 5 s.
async fn answer_becomes(resolver: &TokioResolver, name: &str, qtype: T, expected: &ResolverAnswer) -> ResolverAnswer {
    let mut got = lookup(resolver, name, qtype).await;
    for _ in 0..50 {
        if got == *expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        got = lookup(resolver, name, qtype).await;
    }
    got
}

#[tokio::test]
async fn records_of_every_type_answer_and_what_they_lack_goes_upstream() {
    let (server, upstream) = with_upstream(&[]).await;
    for spec in [
        record("svc.test", T::A, "10.0.0.5"),
        record("svc.test", T::AAAA, "fd00::5"),
        record("svc.test", T::MX, "10 mail.svc.test"),
        record("svc.test", T::TXT, "\"hello world\""),
        record("_http._tcp.svc.test", T::SRV, "10 5 8080 svc.test."),
        record("sub.svc.test", T::NS, "ns1.elsewhere.test."),
        record("www.svc.test", T::CNAME, "svc.test."),
        RecordSpec { ttl: Some(42), ..record("ttl.svc.test", T::A, "10.0.0.42") },
    ] {
        server.add_record(&spec).unwrap();
    }
    for (protocol, resolver) in resolvers(&server) {
        assert_eq!(lookup(&resolver, "svc.test.", T::A).await, answered(&["10.0.0.5"]), "{protocol}");
        assert_eq!(lookup(&resolver, "svc.test.", T::AAAA).await, answered(&["fd00::5"]), "{protocol}");
        assert_eq!(lookup(&resolver, "svc.test.", T::MX).await, answered(&["10 mail.svc.test."]), "{protocol}");
        assert_eq!(lookup(&resolver, "svc.test.", T::TXT).await, answered(&["hello world"]), "{protocol}");
        assert_eq!(
            lookup(&resolver, "_http._tcp.svc.test.", T::SRV).await,
            answered(&["10 5 8080 svc.test."]),
            "{protocol}"
        );
        assert_eq!(lookup(&resolver, "sub.svc.test.", T::NS).await, answered(&["ns1.elsewhere.test."]), "{protocol}");
    }
    // On the wire: the CNAME and its target's address; the TTL given, or 300.
    let response = answer_over(Transport::Udp, server.udp_addrs()[0], &query("www.svc.test", T::A)).await;
    assert_eq!(answers(&response), ["www.svc.test. 300 IN CNAME svc.test.", "svc.test. 300 IN A 10.0.0.5"]);
    let response = answer_over(Transport::Tcp, server.tcp_addrs()[0], &query("ttl.svc.test", T::A)).await;
    assert_eq!(answers(&response), ["ttl.svc.test. 42 IN A 10.0.0.42"]);
    // A type the name does not hold, and a name below it, are LocalStack's "not found": forwarded.
    let resolver = resolver(Transport::Udp, server.udp_addrs()[0]);
    assert_eq!(lookup(&resolver, "svc.test.", T::CAA).await, ResolverAnswer::NoData { soa: false });
    assert_eq!(lookup(&resolver, "deeper.svc.test.", T::A).await, answered(&["192.0.2.77"]));
    assert!(upstream.was_asked("svc.test.") && upstream.was_asked("deeper.svc.test."));
    // Mistakes are refused and change nothing.
    for bad in [
        record("svc.test", T::A, "not-an-address"),
        record("svc.test", T::MX, "mail.svc.test"),
        record("a.*.svc.test", T::A, "10.0.0.1"),
        record("svc.test", T::CNAME, "elsewhere.test."),
    ] {
        assert!(server.add_record(&bad).is_err(), "{bad:?}");
    }
    assert_eq!(lookup(&resolver, "svc.test.", T::A).await, answered(&["10.0.0.5"]));
    server.shutdown().await;
}

#[tokio::test]
async fn wildcard_names_match_every_depth_and_a_specific_name_wins() {
    let (server, _upstream) = with_upstream(&[]).await;
    server.add_record(&record("*.apps.test", T::A, "10.0.1.1")).unwrap();
    server.add_record(&record("special.apps.test", T::A, "10.0.1.2")).unwrap();
    // Pointing to the emulator, for a whole subtree (LocalStack's add_host_pointing_to_localstack("*.x")).
    server.add_host("*.emulated.test", &[]).unwrap();
    for (protocol, resolver) in resolvers(&server) {
        assert_eq!(lookup(&resolver, "one.apps.test.", T::A).await, answered(&["10.0.1.1"]), "{protocol}");
        assert_eq!(lookup(&resolver, "a.b.apps.test.", T::A).await, answered(&["10.0.1.1"]), "{protocol}");
        assert_eq!(lookup(&resolver, "x.special.apps.test.", T::A).await, answered(&["10.0.1.1"]), "{protocol}");
        assert_eq!(lookup(&resolver, "special.apps.test.", T::A).await, answered(&["10.0.1.2"]), "{protocol}");
        assert_eq!(lookup(&resolver, "apps.test.", T::A).await, answered(&["192.0.2.77"]), "{protocol}");
        assert_eq!(lookup(&resolver, "api.emulated.test.", T::A).await, answered(&["127.0.0.1"]), "{protocol}");
        assert_eq!(lookup(&resolver, "emulated.test.", T::A).await, answered(&["192.0.2.77"]), "{protocol}");
    }
    // The owner is the name asked.
    let response = answer_over(Transport::Udp, server.udp_addrs()[0], &query("Web.Apps.Test", T::A)).await;
    assert_eq!(answers(&response), ["Web.Apps.Test. 300 IN A 10.0.1.1"]);
    server.shutdown().await;
}

#[tokio::test]
async fn records_are_deleted_by_name_type_value_and_id_and_clear_removes_every_change() {
    let (server, _upstream) = with_upstream(&[]).await;
    let resolver = resolver(Transport::Udp, server.udp_addrs()[0]);
    for (value, id) in [("1.1.1.1", Some("1")), ("2.2.2.2", Some("2")), ("3.3.3.3", None), ("4.4.4.4", None)] {
        server.add_record(&RecordSpec { id: id.map(str::to_owned), ..record("ids.test", T::A, value) }).unwrap();
    }
    server.add_record(&record("ids.test", T::TXT, "\"kept\"")).unwrap();
    let mut all = lookup(&resolver, "ids.test.", T::A).await;
    if let ResolverAnswer::Records(records) = &mut all {
        records.sort();
    }
    assert_eq!(all, answered(&["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]));
    let by_id = RecordFilter { name: "ids.test".into(), id: Some("1".into()), ..RecordFilter::default() };
    assert_eq!(server.delete_records(&by_id).unwrap(), 1);
    let by_value = RecordFilter {
        name: "ids.test".into(),
        rtype: Some(T::A),
        value: Some("3.3.3.3".into()),
        ..RecordFilter::default()
    };
    assert_eq!(server.delete_records(&by_value).unwrap(), 1);
    let mut left = lookup(&resolver, "ids.test.", T::A).await;
    if let ResolverAnswer::Records(records) = &mut left {
        records.sort();
    }
    assert_eq!(left, answered(&["2.2.2.2", "4.4.4.4"]));
    let by_type = RecordFilter { name: "ids.test".into(), rtype: Some(T::A), ..RecordFilter::default() };
    assert_eq!(server.delete_records(&by_type).unwrap(), 2);
    assert_eq!(lookup(&resolver, "ids.test.", T::TXT).await, answered(&["kept"]), "other types stay");
    assert!(matches!(server.delete_records(&by_type), Err(RedirectError::NotFound { .. })));

    // clear: records, hosts, aliases and skip patterns; the settings stay.
    server.add_host("host.test", &["10.0.0.1".parse().unwrap()]).unwrap();
    server.add_alias("alias.test", "host.test").unwrap();
    server.add_skip_pattern(r"s3\..*").unwrap();
    assert_eq!(lookup(&resolver, "alias.test.", T::A).await, answered(&["10.0.0.1"]));
    server.clear().unwrap();
    let snapshot = server.redirector().snapshot();
    assert!(snapshot.records.is_empty() && snapshot.aliases.is_empty() && snapshot.skip_patterns.is_empty());
    for name in ["ids.test.", "host.test.", "alias.test."] {
        assert_eq!(lookup(&resolver, name, T::A).await, answered(&["192.0.2.77"]), "{name}");
    }
    assert_eq!(lookup(&resolver, "s3.amazonaws.com.", T::A).await, answered(&["127.0.0.1"]), "the skip is gone");
    assert_eq!(lookup(&resolver, "test.localhost.localstack.cloud.", T::A).await, answered(&["127.0.0.1"]));
    server.shutdown().await;
}

#[tokio::test]
async fn an_alias_skips_a_target_that_fails_its_health_check() {
    let (server, _upstream) = with_upstream(&[]).await;
    let resolver = resolver(Transport::Udp, server.udp_addrs()[0]);
    server.add_host("target1.test", &["1.1.1.1".parse().unwrap()]).unwrap();
    server.add_host("target2.test", &["2.2.2.2".parse().unwrap()]).unwrap();
    // As LocalStack's test_dns_server_alias_health_checks: a function says whether target1 is up.
    let up = Arc::new(AtomicBool::new(true));
    let seen = up.clone();
    let check = HealthCheck::Custom(Arc::new(move || seen.load(Ordering::SeqCst)));
    server
        .add_alias_with(AliasSpec {
            health_check: Some(HealthCheckSpec { check, interval: Duration::from_millis(100) }),
            ..AliasSpec::new("alias1.test", "target1.test")
        })
        .unwrap();
    server.add_alias("alias1.test", "target2.test").unwrap();
    assert_eq!(lookup(&resolver, "alias1.test.", T::A).await, answered(&["1.1.1.1"]));
    up.store(false, Ordering::SeqCst);
    assert_eq!(answer_becomes(&resolver, "alias1.test.", T::A, &answered(&["2.2.2.2"])).await, answered(&["2.2.2.2"]));
    assert!(!server.redirector().snapshot().aliases[0].healthy);
    up.store(true, Ordering::SeqCst);
    assert_eq!(answer_becomes(&resolver, "alias1.test.", T::A, &answered(&["1.1.1.1"])).await, answered(&["1.1.1.1"]));

    // A TCP check: the target is healthy while something listens.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let check = HealthCheck::Tcp(listener.local_addr().unwrap());
    server
        .add_alias_with(AliasSpec {
            health_check: Some(HealthCheckSpec { check, interval: Duration::from_millis(100) }),
            ..AliasSpec::new("alias2.test", "target1.test")
        })
        .unwrap();
    server
        .add_alias_with(AliasSpec { id: Some("fallback".into()), ..AliasSpec::new("alias2.test", "target2.test") })
        .unwrap();
    assert_eq!(answer_becomes(&resolver, "alias2.test.", T::A, &answered(&["1.1.1.1"])).await, answered(&["1.1.1.1"]));
    drop(listener);
    assert_eq!(answer_becomes(&resolver, "alias2.test.", T::A, &answered(&["2.2.2.2"])).await, answered(&["2.2.2.2"]));

    // With every target failing, the alias is as if absent: the name is forwarded.
    assert_eq!(server.delete_alias_matching("alias2.test", None, Some("fallback")).unwrap(), 1);
    assert_eq!(
        answer_becomes(&resolver, "alias2.test.", T::A, &answered(&["192.0.2.77"])).await,
        answered(&["192.0.2.77"])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn aliases_cover_their_types_and_wildcards() {
    let (server, _upstream) = with_upstream(&[]).await;
    let resolver = resolver(Transport::Udp, server.udp_addrs()[0]);
    server.add_host("example.test", &["1.1.1.1".parse().unwrap(), "fd00::1".parse().unwrap()]).unwrap();
    // LocalStack PR #13158: an alias with a wildcard name.
    server.add_alias("*.example.test", "example.test").unwrap();
    assert_eq!(lookup(&resolver, "subdomain1.example.test.", T::A).await, answered(&["1.1.1.1"]));
    assert_eq!(lookup(&resolver, "a.b.example.test.", T::AAAA).await, answered(&["fd00::1"]));
    // An alias of A only: AAAA is the name's own business (here: forwarded).
    server.add_alias_with(AliasSpec { types: vec![T::A], ..AliasSpec::new("v4only.test", "example.test") }).unwrap();
    assert_eq!(lookup(&resolver, "v4only.test.", T::A).await, answered(&["1.1.1.1"]));
    assert_eq!(lookup(&resolver, "v4only.test.", T::AAAA).await, ResolverAnswer::NoData { soa: false });
    // A target that holds nothing of the alias's types: REFUSED, as LocalStack's.
    server.add_alias("dangling.test", "nowhere.test").unwrap();
    assert_eq!(lookup(&resolver, "dangling.test.", T::A).await, ResolverAnswer::Rcode(Rcode::REFUSED));
    server.shutdown().await;
}

#[tokio::test]
async fn the_admin_json_api_adds_records_aliases_with_health_checks_and_clears() {
    let (server, admin, _upstream) = admin_server().await;
    let resolver = resolver(Transport::Udp, server.udp_addrs()[0]);

    for body in [
        r#"{"name": "api.test", "type": "A", "value": "10.0.0.5", "id": "a1"}"#,
        r#"{"name": "api.test", "type": "MX", "value": "10 mail.api.test."}"#,
        r#"{"name": "api.test", "type": "TXT", "value": "\"v=spf1 -all\"", "ttl": 60}"#,
        r#"{"name": "_sip._udp.api.test", "type": "SRV", "value": "0 0 5060 api.test."}"#,
        r#"{"name": "*.preview.test", "type": "A", "value": "10.0.0.7"}"#,
        r#"{"name": "backup.test", "type": "A", "value": "10.0.0.9"}"#,
    ] {
        http_expecting(admin, "POST", "/redirect/records", body, 200).await;
    }
    assert_eq!(lookup(&resolver, "api.test.", T::MX).await, answered(&["10 mail.api.test."]));
    assert_eq!(lookup(&resolver, "api.test.", T::TXT).await, answered(&["v=spf1 -all"]));
    assert_eq!(lookup(&resolver, "_sip._udp.api.test.", T::SRV).await, answered(&["0 0 5060 api.test."]));
    assert_eq!(lookup(&resolver, "pr-17.preview.test.", T::A).await, answered(&["10.0.0.7"]));
    let body = http_expecting(admin, "GET", "/redirect/records", "", 200).await;
    let records: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(records[0]["name"], "api.test");
    assert_eq!(records[0]["id"], "a1");
    assert_eq!(records[2]["ttl"], 60);

    // An alias with a TCP health check that fails (nothing listens there), and a fallback target.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let body = format!(
        r#"{{"name": "svc.test", "target": "api.test", "types": "A", "health_check": {{"tcp": "{closed}", "interval": "100ms"}}}}"#
    );
    http_expecting(admin, "POST", "/redirect/aliases", &body, 200).await;
    http_expecting(admin, "POST", "/redirect/aliases", r#"{"name": "svc.test", "target": "backup.test"}"#, 200).await;
    assert_eq!(answer_becomes(&resolver, "svc.test.", T::A, &answered(&["10.0.0.9"])).await, answered(&["10.0.0.9"]));
    let (_, body) = http(admin, "GET", "/redirect/aliases", "").await;
    let aliases: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(aliases[0]["healthy"], false, "{body}");
    assert_eq!(aliases[0]["health_check"]["tcp"], closed.to_string());
    assert_eq!(aliases[1]["healthy"], true);

    // Deletes by query parameters.
    let (status, body) = http(admin, "DELETE", "/redirect/records?name=api.test&type=TXT", "").await;
    assert_eq!((status, body.as_str()), (200, r#"{"deleted":"1"}"#));
    assert_eq!(lookup(&resolver, "api.test.", T::TXT).await, ResolverAnswer::NoData { soa: false }, "forwarded now");
    http_expecting(admin, "DELETE", "/redirect/aliases?name=svc.test&type=A", "", 200).await;

    // Mistakes: 400 with the reason, 404 for what is not there.
    let body =
        http_expecting(admin, "POST", "/redirect/records", r#"{"name": "x.test", "type": "A", "value": "nope"}"#, 400)
            .await;
    assert!(body.contains("record \\\"x.test\\\" value \\\"nope\\\""), "{body}");
    let body =
        http_expecting(admin, "POST", "/redirect/records", r#"{"name": "x.test", "type": "BOGUS", "value": "1"}"#, 400)
            .await;
    assert!(body.contains("unknown record type"), "{body}");
    let body = http_expecting(
        admin,
        "POST",
        "/redirect/aliases",
        r#"{"name": "a.test", "target": "b.test", "health_check": {"http": "http://emulator.test/"}}"#,
        400,
    )
    .await;
    assert!(body.contains("must be an IP address"), "{body}");
    http_expecting(admin, "DELETE", "/redirect/records?name=nothing.test", "", 404).await;

    // clear.
    http_expecting(admin, "POST", "/redirect/clear", "", 200).await;
    let (_, body) = http(admin, "GET", "/redirect", "").await;
    let snapshot: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(snapshot["records"], serde_json::json!([]));
    assert_eq!(snapshot["aliases"], serde_json::json!([]));
    assert_eq!(lookup(&resolver, "pr-18.preview.test.", T::A).await, answered(&["192.0.2.77"]));
    server.shutdown().await;
}
