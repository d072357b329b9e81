//! Operations: metrics, query log, reload, faults, recording, explain, admin HTTP.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use signpost_server::{AdminConfig, FaultAction, FaultTarget, LogDestination, State};
use signpost_wire::{EdnsHeader, Message, Rcode, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn query_log_lines_carry_route53_fields_and_the_decision() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 20)).await;
    let dir = TempDir::new();
    let path = dir.join("queries.jsonl");
    let mut config = config_with_default_listeners();
    config.query_log.enabled = true;
    config.query_log.destination = LogDestination::File(path.clone());
    let server = start_with(config, AWS_REDIRECT, Some(&upstream)).await;
    udp_exchange(udp(&server), &query("s3.amazonaws.com", RecordType::A), Duration::from_secs(2)).await.unwrap();
    tcp_answer(tcp(&server), &query("example.org", RecordType::A)).await;
    let lines = file_lines(&path, 2, Duration::from_secs(5)).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let local: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(local["query_name"], "s3.amazonaws.com.");
    assert_eq!(local["transport"], "UDP");
    assert_eq!(local["answers"][0]["Rdata"], "127.0.0.1");
    assert_eq!(local["signpost"]["decision"], "local");
    let forwarded: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(forwarded["transport"], "TCP");
    assert_eq!(forwarded["signpost"]["decision"], "forward");
    assert_eq!(forwarded["signpost"]["group"], "upstream");
    assert_eq!(forwarded["signpost"]["attempts"][0]["outcome"], "answered NOERROR");
    server.shutdown().await;
}

#[tokio::test]
async fn reload_swaps_rules_atomically_and_a_failed_reload_keeps_the_old_ones() {
    let reloads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = reloads.clone();
    let reloader: signpost_server::Reloader = Arc::new(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err("rules.toml:3:1, field rules[0].regex: invalid regular expression".into())
    });
    let server = start_server(|| builder().rules(rules(AWS_REDIRECT, &["upstream"])).reloader(reloader.clone())).await;
    let bytes = query("sqs.amazonaws.com", RecordType::A);
    assert_eq!(answers(&udp_exchange(udp(&server), &bytes, Duration::from_secs(2)).await.unwrap()).len(), 1);
    let error = server.reload_from_source().unwrap_err();
    assert!(error.contains("rules.toml:3:1"), "{error}");
    assert_eq!(reloads.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(answers(&udp_exchange(udp(&server), &bytes, Duration::from_secs(2)).await.unwrap()).len(), 1);

    let replacement = rules(
        r#"
        [[rules]]
        suffix = "amazonaws.com"
        action = "redirect"
        ipv4 = "127.0.0.9"
        "#,
        &[],
    );
    server.reload(State { rules: Arc::new(replacement), upstreams: server.upstreams() });
    let response = udp_exchange(udp(&server), &bytes, Duration::from_secs(2)).await.unwrap();
    assert_eq!(answers(&response), ["sqs.amazonaws.com. 60 IN A 127.0.0.9"]);
    server.shutdown().await;
}

#[tokio::test]
async fn injected_faults_and_recorded_queries() {
    let server = start(AWS_REDIRECT, None).await;
    server.record_queries(true);
    server.inject_fault(FaultTarget::Name("broken.amazonaws.com".parse().unwrap()), FaultAction::ServFail);
    server.inject_fault(FaultTarget::Name("gone.amazonaws.com".parse().unwrap()), FaultAction::Drop);
    server.inject_fault(FaultTarget::Name("big.amazonaws.com".parse().unwrap()), FaultAction::Truncate);
    server.inject_fault(
        FaultTarget::Name("slow.amazonaws.com".parse().unwrap()),
        FaultAction::Delay(Duration::from_millis(300)),
    );
    let exchange = |name: &'static str, wait| {
        let address = udp(&server);
        async move { udp_exchange(address, &query(name, RecordType::A), wait).await }
    };
    let broken = exchange("x.broken.amazonaws.com", Duration::from_secs(2)).await.unwrap();
    assert_eq!(Message::parse(&broken).unwrap().rcode(), Ok(Rcode::SERVFAIL));
    assert!(exchange("gone.amazonaws.com", Duration::from_millis(300)).await.is_none());
    let big = exchange("big.amazonaws.com", Duration::from_secs(2)).await.unwrap();
    assert!(Message::parse(&big).unwrap().flags().tc());
    let started = std::time::Instant::now();
    let slow = exchange("slow.amazonaws.com", Duration::from_secs(2)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(290));
    assert_eq!(answers(&slow).len(), 1);
    let recorded = server.take_recorded_queries();
    let names: Vec<String> = recorded.iter().map(|q| q.name.to_string()).collect();
    assert_eq!(names, ["x.broken.amazonaws.com.", "gone.amazonaws.com.", "big.amazonaws.com.", "slow.amazonaws.com."]);
    server.clear_faults();
    assert_eq!(answers(&exchange("x.broken.amazonaws.com", Duration::from_secs(2)).await.unwrap()).len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn tcp_reset_faults_close_the_connection() {
    let server = start(AWS_REDIRECT, None).await;
    server.inject_fault(FaultTarget::Name("reset.amazonaws.com".parse().unwrap()), FaultAction::TcpReset);
    let mut stream = tokio::net::TcpStream::connect(tcp(&server)).await.unwrap();
    let bytes = query("reset.amazonaws.com", RecordType::A);
    stream.write_u16(bytes.len() as u16).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let mut buffer = [0u8; 16];
    let result = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer)).await.unwrap();
    assert!(matches!(result, Ok(0) | Err(_)), "{result:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn explain_and_metrics_over_the_admin_listener() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 21)).await;
    let server = start_server(|| {
        builder()
            .admin(AdminConfig { address: "127.0.0.1:0".parse().unwrap() })
            .rules(rules(AWS_REDIRECT, &["upstream"]))
            .upstreams(upstreams(vec![group_of("upstream", &upstream)]))
    })
    .await;
    let explain = |name: &str| {
        let name = name.parse().unwrap();
        let server = &server;
        async move {
            server.explain(&name, RecordType::A, "127.0.0.1:0".parse().unwrap(), signpost_rules::Transport::Udp).await
        }
    };
    let trace = explain("www.example.org").await;
    assert_eq!(trace.decision, "forward");
    assert_eq!(trace.group.as_deref(), Some("upstream"));
    assert_eq!(trace.attempts.len(), 1);
    assert_eq!(trace.rcode, "NOERROR");
    let local = explain("s3.amazonaws.com").await;
    assert_eq!(local.decision, "local");
    assert!(local.matched.contains("amazonaws.com"), "{}", local.matched);

    udp_exchange(
        udp(&server),
        &edns_query("s3.amazonaws.com", RecordType::A, EdnsHeader::default()),
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let admin = server.admin_addr().unwrap();
    let get = |path: &str| {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        async move {
            let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response
        }
    };
    let metrics = get("/metrics").await;
    assert!(metrics.contains("signpost_queries_total{transport=\"udp\"} 1"), "{metrics}");
    assert!(metrics.contains("signpost_decisions_total{decision=\"local\"} 1"), "{metrics}");
    let explained = get("/explain?name=s3.amazonaws.com&type=AAAA").await;
    assert!(explained.contains("\"decision\": \"local\""), "{explained}");
    let missing = get("/explain").await;
    assert!(missing.starts_with("HTTP/1.1 400"), "{missing}");
    server.shutdown().await;
}

#[tokio::test]
async fn after_shutdown_nothing_answers() {
    let server = start(AWS_REDIRECT, None).await;
    let address = udp(&server);
    server.shutdown().await;
    assert!(
        udp_exchange(address, &query("s3.amazonaws.com", RecordType::A), Duration::from_millis(300)).await.is_none()
    );
}
