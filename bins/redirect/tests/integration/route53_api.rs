//! The Route 53 API on the redirect proxy (`SIGNPOST_REDIRECT_API`): hosted
//! zones and record sets made over Route 53's REST-XML protocol are answered
//! over DNS as soon as the call returns, and with `SIGNPOST_REDIRECT_STATE`
//! they survive a restart and a kill -9. The aws CLI drives the same API in
//! .ci/interop; here a plain HTTP client speaks the protocol.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use signpost_redirect::RedirectServer;
use signpost_wire::RecordType as T;

use crate::support::*;

const ROUTE53: &str = "https://route53.amazonaws.com/doc/2013-04-01/";

/// One Route 53 call: status and body.
async fn route53(api: SocketAddr, method: &str, path: &str, body: String) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{api}/2013-04-01/{path}"))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/route53/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request)).await.unwrap().unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The text of the first `<tag>`.
fn field(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml.find(&open).unwrap_or_else(|| panic!("no <{tag}> in {xml}")) + open.len();
    let end = xml[start..].find(&format!("</{tag}>")).unwrap() + start;
    xml[start..end].to_string()
}

/// CreateHostedZone (public): the zone id without `/hostedzone/`.
async fn create_zone(api: SocketAddr, name: &str) -> String {
    let body = format!(
        r#"<CreateHostedZoneRequest xmlns="{ROUTE53}"><Name>{name}</Name><CallerReference>ref-{name}</CallerReference></CreateHostedZoneRequest>"#
    );
    let (status, reply) = route53(api, "POST", "hostedzone", body).await;
    assert_eq!(status, 201, "{reply}");
    field(&reply, "Id").trim_start_matches("/hostedzone/").to_string()
}

/// ChangeResourceRecordSets with one change of a simple record set.
async fn change(api: SocketAddr, zone: &str, action: &str, name: &str, rtype: &str, values: &[&str]) {
    let records: String =
        values.iter().map(|v| format!("<ResourceRecord><Value>{v}</Value></ResourceRecord>")).collect();
    let body = format!(
        r#"<ChangeResourceRecordSetsRequest xmlns="{ROUTE53}"><ChangeBatch><Changes><Change><Action>{action}</Action><ResourceRecordSet><Name>{name}</Name><Type>{rtype}</Type><TTL>60</TTL><ResourceRecords>{records}</ResourceRecords></ResourceRecordSet></Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"#
    );
    let (status, reply) = route53(api, "POST", &format!("hostedzone/{zone}/rrset/"), body).await;
    assert_eq!(status, 200, "{action} {name} {rtype}: {reply}");
}

async fn ipv4(server: SocketAddr, name: &str) -> Vec<Ipv4Addr> {
    lookup(&resolver(Transport::Udp, server), name, T::A).await.ipv4()
}

#[tokio::test]
async fn hosted_zones_made_through_the_api_are_answered_at_once_and_kept_in_the_state_directory() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 80)).await;
    let dir = TempDir::new();
    let state = dir.join("route53-state");
    let start = || {
        let mut settings = settings(Some(&upstream));
        settings.set("SIGNPOST_REDIRECT_API", "127.0.0.1:0").unwrap();
        settings.set("SIGNPOST_REDIRECT_STATE", state.to_str().unwrap()).unwrap();
        RedirectServer::builder(settings).start()
    };
    let server = start().await.unwrap();
    let dns = server.udp_addrs()[0];
    let api = server.route53_api().expect("the API runs").address();
    assert!(server.startup_lines().iter().any(|line| line.starts_with(&format!("Route 53 API on http://{api}"))));

    // Not ours yet: forwarded.
    assert_eq!(ipv4(dns, "www.corp.example.").await, [Ipv4Addr::new(192, 0, 2, 80)]);
    let zone = create_zone(api, "corp.example").await;
    change(api, &zone, "CREATE", "www.corp.example", "A", &["10.1.2.3", "10.1.2.4"]).await;
    let mut answer = ipv4(dns, "www.corp.example.").await;
    answer.sort();
    assert_eq!(answer, [Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(10, 1, 2, 4)]);
    // The zone is authoritative: a name it does not hold is NXDOMAIN, not forwarded.
    let missing = lookup(&resolver(Transport::Udp, dns), "nope.corp.example.", T::A).await;
    assert!(missing.ipv4().is_empty(), "{missing:?}");
    assert!(!upstream.was_asked("nope.corp.example."), "{:?}", upstream.names());
    // UPSERT replaces, DELETE removes.
    change(api, &zone, "UPSERT", "www.corp.example", "A", &["10.9.9.9"]).await;
    assert_eq!(ipv4(dns, "www.corp.example.").await, [Ipv4Addr::new(10, 9, 9, 9)]);
    change(api, &zone, "CREATE", "api.corp.example", "CNAME", &["www.corp.example"]).await;
    assert_eq!(ipv4(dns, "api.corp.example.").await, [Ipv4Addr::new(10, 9, 9, 9)]);
    server.shutdown().await;

    // A new process on the same state directory serves the same zone.
    let server = start().await.unwrap();
    let dns = server.udp_addrs()[0];
    assert_eq!(ipv4(dns, "www.corp.example.").await, [Ipv4Addr::new(10, 9, 9, 9)]);
    let api = server.route53_api().unwrap().address();
    let (status, listed) = route53(api, "GET", "hostedzone", String::new()).await;
    assert_eq!(status, 200, "{listed}");
    assert!(listed.contains("<Name>corp.example.</Name>"), "{listed}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_api_address_that_cannot_be_bound_is_named() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    let mut settings = settings(None);
    settings.set("SIGNPOST_REDIRECT_API", &taken.to_string()).unwrap();
    let error = RedirectServer::builder(settings).start().await.expect_err("the port is taken");
    assert!(error.to_string().starts_with(&format!("SIGNPOST_REDIRECT_API={taken}: cannot listen there")), "{error}");
}

#[tokio::test]
async fn the_binary_keeps_what_the_api_returned_across_a_kill_9() {
    let dir = TempDir::new();
    let state = dir.join("state");
    let state = state.to_str().unwrap();
    let env = [
        ("DNS_ADDRESS", "127.0.0.1"),
        ("DNS_PORT", "0"),
        ("DNS_SERVER", "127.0.0.1:9"),
        ("SIGNPOST_RESOLV_CONF", "/nonexistent/signpost-test/resolv.conf"),
        ("SIGNPOST_REDIRECT_API", "127.0.0.1:0"),
        ("SIGNPOST_REDIRECT_STATE", state),
    ];
    let api_of = |running: &RunningBinary| {
        running.addresses(|line| {
            line.strip_prefix("Route 53 API on http://")?.split_once(' ')?.0.parse::<SocketAddr>().ok()
        })[0]
    };
    let running = redirect_with_exactly(&env, &[]).start().await.unwrap();
    let api = api_of(&running);
    let zone = create_zone(api, "durable.example").await;
    change(api, &zone, "CREATE", "db.durable.example", "A", &["10.4.4.4"]).await;
    let pid = running.pid().unwrap();
    let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
    drop(running);

    let running = redirect_with_exactly(&env, &[]).start().await.unwrap();
    let dns = running.addresses(parse_startup)[0];
    assert_eq!(dns.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(ipv4(dns, "db.durable.example.").await, [Ipv4Addr::new(10, 4, 4, 4)]);
    terminate(running).await;
}
