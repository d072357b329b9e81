//! Changes at run time: host records, aliases and skip patterns, through the
//! Rust API and the admin listener's JSON API; /metrics beside them.

use signpost_redirect::RedirectError;
use signpost_wire::{Rcode, RecordType as T};

use crate::support::*;

#[tokio::test]
async fn host_records_aliases_and_skip_patterns_change_answers_from_rust() {
    let (server, upstream) = with_upstream(&[]).await;
    let tcp = resolver(Transport::Tcp, server.tcp_addrs()[0]);
    let resolver = resolver(Transport::Udp, server.udp_addrs()[0]);

    server.add_host("db.internal.test", &["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()]).unwrap();
    server.add_host("queue.internal.test", &[]).unwrap();
    for resolver in [&resolver, &tcp] {
        assert_eq!(lookup(resolver, "db.internal.test.", T::A).await, answered(&["10.0.0.5"]));
        assert_eq!(lookup(resolver, "db.internal.test.", T::AAAA).await, answered(&["fd00::5"]));
        // Types the name does not hold are passed on upstream, as LocalStack does.
        assert_eq!(lookup(resolver, "db.internal.test.", T::MX).await, ResolverAnswer::NoData { soa: false });
        // A record without addresses points to the emulator (the redirect address).
        assert_eq!(lookup(resolver, "queue.internal.test.", T::A).await, answered(&["127.0.0.1"]));
    }
    assert!(upstream.was_asked("db.internal.test."), "MX went upstream");

    server.add_alias("api.internal.test", "db.internal.test").unwrap();
    server.add_alias("bucket.internal.test", "s3.amazonaws.com").unwrap();
    server.add_alias("dangling.internal.test", "nowhere.test").unwrap();
    assert_eq!(lookup(&resolver, "api.internal.test.", T::A).await, answered(&["10.0.0.5"]));
    assert_eq!(lookup(&resolver, "bucket.internal.test.", T::A).await, answered(&["127.0.0.1"]));
    assert_eq!(lookup(&resolver, "dangling.internal.test.", T::A).await, ResolverAnswer::Rcode(Rcode::REFUSED));
    let snapshot = server.redirector().snapshot();
    assert_eq!(snapshot.hosts.len(), 2);
    assert_eq!(snapshot.aliases.iter().filter(|alias| alias.resolved).count(), 2);

    server.add_skip_pattern(r"sqs\..*").unwrap();
    assert_eq!(lookup(&tcp, "sqs.us-east-1.amazonaws.com.", T::A).await, answered(&["192.0.2.77"]));
    assert!(upstream.was_asked("sqs.us-east-1.amazonaws.com."));

    // Undo everything.
    server.delete_skip_pattern(r"sqs\..*").unwrap();
    server.delete_alias("api.internal.test").unwrap();
    server.delete_host("db.internal.test").unwrap();
    assert_eq!(lookup(&tcp, "sqs.us-east-2.amazonaws.com.", T::A).await, answered(&["127.0.0.1"]));
    assert_eq!(lookup(&resolver, "api.internal.test.", T::A).await, answered(&["192.0.2.77"]), "forwarded again");
    assert_eq!(lookup(&resolver, "db.internal.test.", T::A).await, answered(&["192.0.2.77"]));

    // Mistakes are refused and change nothing.
    assert!(matches!(server.delete_host("db.internal.test"), Err(RedirectError::NotFound { .. })));
    assert!(matches!(server.add_skip_pattern("(unclosed"), Err(RedirectError::InvalidPattern { .. })));
    assert!(matches!(server.add_alias("self.test", "Self.Test."), Err(RedirectError::Conflict { .. })));
    assert!(server.add_alias("a.*.test", "x.test").is_err(), "a * only as the first label");
    assert!(server.add_host("bad..name", &[]).is_err());
    assert_eq!(lookup(&resolver, "queue.internal.test.", T::A).await, answered(&["127.0.0.1"]));
    server.shutdown().await;
}

#[tokio::test]
async fn the_admin_json_api_changes_answers_and_serves_metrics() {
    let (server, admin, _upstream) = admin_server().await;
    assert!(server.startup_lines().iter().any(|line| line.starts_with(&format!("Admin API on http://{admin}"))));
    let resolver = resolver(Transport::Udp, server.udp_addrs()[0]);

    let (status, body) = http(admin, "POST", "/redirect/hosts", r#"{"name":"db.test","addresses":["10.0.0.5"]}"#).await;
    assert_eq!((status, body.as_str()), (200, r#"{"added":"db.test"}"#));
    assert_eq!(lookup(&resolver, "db.test.", T::A).await, answered(&["10.0.0.5"]));

    http_expecting(admin, "POST", "/redirect/aliases", r#"{"name":"web.test","target":"db.test"}"#, 200).await;
    assert_eq!(lookup(&resolver, "web.test.", T::A).await, answered(&["10.0.0.5"]));

    http_expecting(admin, "POST", "/redirect/skip", r#"{"pattern":"kinesis\\..*"}"#, 200).await;
    assert_eq!(lookup(&resolver, "kinesis.us-east-1.amazonaws.com.", T::A).await, answered(&["192.0.2.77"]));

    let body = http_expecting(admin, "GET", "/redirect", "", 200).await;
    let snapshot: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(snapshot["hosts"][0]["name"], "db.test");
    assert_eq!(snapshot["hosts"][0]["addresses"][0], "10.0.0.5");
    assert_eq!(snapshot["aliases"][0]["target"], "db.test");
    assert_eq!(snapshot["aliases"][0]["resolved"], true);
    assert_eq!(snapshot["skip_patterns"][0], r"kinesis\..*");
    assert_eq!(snapshot["domains"][0], "amazonaws.com");

    http_expecting(admin, "DELETE", "/redirect/skip?pattern=kinesis%5C..%2A", "", 200).await;
    assert_eq!(lookup(&resolver, "kinesis.us-east-2.amazonaws.com.", T::A).await, answered(&["127.0.0.1"]));
    http_expecting(admin, "DELETE", "/redirect/aliases/web.test", "", 200).await;
    http_expecting(admin, "DELETE", "/redirect/hosts/db.test", "", 200).await;
    assert_eq!(lookup(&resolver, "db.test.", T::A).await, answered(&["192.0.2.77"]));

    // Errors come back as JSON with a status.
    let body = http_expecting(admin, "DELETE", "/redirect/hosts/db.test", "", 404).await;
    assert!(body.contains("no host record db.test"), "{body}");
    let body = http_expecting(admin, "POST", "/redirect/hosts", r#"{"name":"x.test","adresses":[]}"#, 400).await;
    assert!(body.contains("invalid JSON body"), "{body}");
    let body = http_expecting(admin, "POST", "/redirect/skip", r#"{"pattern":"("}"#, 400).await;
    assert!(body.contains("invalid regular expression"), "{body}");
    http_expecting(admin, "PUT", "/redirect/hosts", "{}", 404).await;

    // The built-in routes are still there.
    let metrics = http_expecting(admin, "GET", "/metrics", "", 200).await;
    assert!(metrics.contains("signpost_"), "{metrics}");
    server.shutdown().await;
}
