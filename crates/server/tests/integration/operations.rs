//! Operations: metrics, query log, reload, faults, recording, explain, admin HTTP.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use signpost_server::Transport;
use signpost_server::{AdminConfig, FaultAction, FaultTarget, LogDestination, State, TestLayer};
use signpost_wire::{EdnsHeader, Message, Rcode, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn query_log_lines_carry_the_core_fields_and_the_decision() {
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
    assert_eq!(local["query_type"], "A");
    assert_eq!(local["rcode"], "NOERROR");
    assert_eq!(local["transport"], "udp");
    assert_eq!(local["client"], "127.0.0.1");
    assert!(local["client_port"].as_u64().is_some_and(|port| port > 0), "{local}");
    assert_eq!(local["listener"], server.listeners()[0].id.as_str());
    assert_eq!(local["view"], "default");
    assert_eq!(local["answers"][0]["rdata"], "127.0.0.1");
    assert_eq!(local["answers"][0]["type"], "A");
    assert_eq!(local["trace"]["decision"], "local");
    assert!(local.get("version").is_none() && local.get("srcids").is_none(), "no Route 53 fields: {local}");
    let forwarded: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(forwarded["transport"], "tcp");
    assert_eq!(forwarded["trace"]["decision"], "forward");
    assert_eq!(forwarded["trace"]["group"], "upstream");
    assert_eq!(forwarded["trace"]["attempts"][0]["outcome"], "answered NOERROR");
    server.shutdown().await;
}

#[tokio::test]
async fn reload_swaps_rules_atomically_and_a_failed_reload_keeps_the_old_ones() {
    let threads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = threads.clone();
    let reloader: signpost_server::Reloader = Arc::new(move || {
        seen.lock().unwrap().push(std::thread::current().id());
        // The application's own error, as reading a broken file gives it.
        let broken = "[[rules]]\nsuffix = \n";
        let error = signpost_rules::config::RulesConfig::from_toml(broken, "rules.toml").err().unwrap();
        Err(Box::new(error))
    });
    let server = start_server(builder().rules(rules(AWS_REDIRECT, &["upstream"])).reloader(reloader.clone())).await;
    let bytes = query("sqs.amazonaws.com", RecordType::A);
    assert_eq!(answers(&udp_exchange(udp(&server), &bytes, Duration::from_secs(2)).await.unwrap()).len(), 1);
    let error = server.reload_from_source().await.unwrap_err();
    assert!(error.to_string().contains("rules.toml:"), "{error}");
    let signpost_server::Error::Reload { source } = &error else { panic!("{error:?}") };
    assert!(source.downcast_ref::<signpost_rules::Error>().is_some(), "the application's error, typed: {source:?}");
    // The reloader ran once, on a blocking thread, not on the runtime's.
    let threads = threads.lock().unwrap().clone();
    assert_eq!(threads.len(), 1);
    assert_ne!(threads[0], std::thread::current().id());
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
    server.reload(State::new(Arc::new(replacement), server.upstreams()));
    let response = udp_exchange(udp(&server), &bytes, Duration::from_secs(2)).await.unwrap();
    assert_eq!(answers(&response), ["sqs.amazonaws.com. 60 IN A 127.0.0.9"]);
    server.shutdown().await;
}

#[tokio::test]
async fn injected_faults_and_recorded_queries() {
    let layer = TestLayer::new().recording(true);
    let server = start_layered(AWS_REDIRECT, None, &layer).await;
    layer.inject_fault(FaultTarget::Name("broken.amazonaws.com".parse().unwrap()), FaultAction::ServFail);
    layer.inject_fault(FaultTarget::Name("gone.amazonaws.com".parse().unwrap()), FaultAction::Drop);
    layer.inject_fault(FaultTarget::Name("big.amazonaws.com".parse().unwrap()), FaultAction::Truncate);
    layer.inject_fault(
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
    let recorded = layer.take_recorded_queries();
    let names: Vec<String> = recorded.iter().map(|q| q.name.to_string()).collect();
    assert_eq!(names, ["x.broken.amazonaws.com.", "gone.amazonaws.com.", "big.amazonaws.com.", "slow.amazonaws.com."]);
    layer.clear_faults();
    assert_eq!(answers(&exchange("x.broken.amazonaws.com", Duration::from_secs(2)).await.unwrap()).len(), 1);
    server.shutdown().await;
}

/// Drop aimed at an upstream group: the client gets no answer at all, over
/// UDP and TCP, and the group is not asked; ServFail on it answers SERVFAIL.
#[tokio::test]
async fn faults_on_an_upstream_group_are_what_the_client_gets() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 23)).await;
    let layer = TestLayer::new().recording(true).with_fault(FaultTarget::upstream_group("upstream"), FaultAction::Drop);
    let server = start_layered(FORWARD_ALL, Some(&upstream), &layer).await;
    let example = query("example.org", RecordType::A);
    assert!(udp_exchange(udp(&server), &example, Duration::from_millis(500)).await.is_none());
    assert!(tcp_exchange(tcp(&server), &example, Duration::from_millis(500)).await.is_none());
    let dropped = layer.wait_for_queries(2, Duration::from_secs(5)).await.expect("both finished");
    assert!(dropped.iter().all(|query| query.rcode.is_none() && query.decision == "drop"), "{dropped:?}");
    assert_eq!(upstream.query_count(), 0, "the group was not asked");

    layer.inject_fault(FaultTarget::upstream_group("upstream"), FaultAction::ServFail);
    let response = udp_exchange(udp(&server), &example, Duration::from_secs(2)).await.unwrap();
    assert_eq!(Message::parse(&response).unwrap().rcode(), Ok(Rcode::SERVFAIL));
    let failed = layer.wait_for(Duration::from_secs(5), |query| query.sequence == 2 && query.finished).await.unwrap();
    assert_eq!(
        (failed.rcode, failed.decision.as_str(), failed.group.as_deref()),
        (Some(Rcode::SERVFAIL), "servfail", Some("upstream"))
    );
    assert!(layer.remove_fault(&FaultTarget::upstream_group("upstream")));
    let response = udp_exchange(udp(&server), &example, Duration::from_secs(2)).await.unwrap();
    assert_eq!(answers(&response), ["example.org. 300 IN A 192.0.2.23"]);
    server.shutdown().await;
}

/// A Truncate fault truncates UDP answers only: a client's retry over TCP
/// gets the answer (hickory would otherwise give up with `Truncated`).
#[tokio::test]
async fn truncate_faults_send_udp_clients_to_tcp_where_they_are_answered() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 22)).await;
    let layer = TestLayer::new().recording(true);
    let server = start_layered(AWS_REDIRECT, Some(&upstream), &layer).await;
    layer.inject_fault(FaultTarget::Name("big.amazonaws.com".parse().unwrap()), FaultAction::Truncate);
    layer.inject_fault(FaultTarget::UpstreamGroup("upstream".into()), FaultAction::Truncate);
    assert_eq!(udp(&server).port(), tcp(&server).port());
    // An explicit configuration: UDP first, then TCP, on the server's port.
    let resolver = ResolverBuilder::udp_and_tcp(udp(&server)).build().unwrap();

    // A local answer and a forwarded one (the fault on the upstream group).
    for (name, address) in
        [("big.amazonaws.com.", Ipv4Addr::LOCALHOST), ("www.example.org.", Ipv4Addr::new(192, 0, 2, 22))]
    {
        let lookup = resolver.lookup_ip(name).await.unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(lookup.iter().collect::<Vec<_>>(), [std::net::IpAddr::V4(address)], "{name}");
    }
    // hickory asks for A and AAAA; each goes over UDP, then over TCP.
    let transports: Vec<_> = layer
        .take_recorded_queries()
        .iter()
        .filter(|query| query.qtype == RecordType::A)
        .map(|query| (query.name.to_string(), query.transport))
        .collect();
    assert_eq!(
        transports,
        [
            ("big.amazonaws.com.".to_string(), Transport::Udp),
            ("big.amazonaws.com.".to_string(), Transport::Tcp),
            ("www.example.org.".to_string(), Transport::Udp),
            ("www.example.org.".to_string(), Transport::Tcp),
        ]
    );
    assert_eq!(upstream.query_count(), 2, "only the TCP retries (A and AAAA) went upstream");
    server.shutdown().await;
}

#[tokio::test]
async fn tcp_reset_faults_close_the_connection() {
    let layer = TestLayer::new();
    let server = start_layered(AWS_REDIRECT, None, &layer).await;
    layer.inject_fault(FaultTarget::Name("reset.amazonaws.com".parse().unwrap()), FaultAction::TcpReset);
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
    let server = start_server({
        builder()
            .admin(AdminConfig { address: "127.0.0.1:0".parse().unwrap() })
            .rules(rules(AWS_REDIRECT, &["upstream"]))
            .upstreams(upstreams(vec![group_of("upstream", &upstream)]))
    })
    .await;
    let explain = |name: &str| {
        let name = name.parse().unwrap();
        let server = &server;
        async move { server.explain(&name, RecordType::A, "127.0.0.1:0".parse().unwrap(), Transport::Udp).await }
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

/// A UDP listener's worker drives its forwarded queries itself (no task per
/// query): one still waiting for its upstream when shutdown starts is
/// answered all the same, as shutdown promises.
#[tokio::test]
async fn a_forwarded_udp_query_in_flight_at_shutdown_is_still_answered() {
    let upstream = FakeUpstream::builder()
        .otherwise(Answer::address(Ipv4Addr::new(192, 0, 2, 31).into()))
        .behaviour(signpost_testkit::Behaviour::Delay(Duration::from_millis(300)))
        .start()
        .await
        .unwrap();
    let server = start(FORWARD_ALL, Some(&upstream)).await;
    let address = udp(&server);
    let asking = tokio::spawn(async move {
        udp_exchange(address, &query("late.example", RecordType::A), Duration::from_secs(3)).await
    });
    // The query has reached the upstream, which holds its answer back.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let shutdown = tokio::spawn(server.shutdown());
    let response = asking.await.unwrap().expect("an answer despite the shutdown");
    let message = Message::parse(&response).unwrap();
    assert_eq!(message.rcode().unwrap(), Rcode::NOERROR);
    assert_eq!(message.header().ancount, 1);
    shutdown.await.unwrap();
}

#[tokio::test]
async fn metrics_show_the_upstreams_estimates_and_the_kernels_socket_figures() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 30)).await;
    let mut config = config_with_default_listeners();
    config.listeners[0].receive_buffer = Some(256 << 10);
    config.listeners[0].id = Some("main-udp".into());
    let server = start_with(config, FORWARD_ALL, Some(&upstream)).await;
    for index in 0..5 {
        let bytes = query(&format!("m{index}.example"), RecordType::A);
        udp_exchange(udp(&server), &bytes, Duration::from_secs(2)).await.expect("an answer");
    }
    let text = server.metrics_text();
    let labels = format!("{{group=\"upstream\",server=\"udp://{}\"}}", upstream.address());
    for line in [
        format!("signpost_upstream_messages_total{labels} 5"),
        format!("signpost_upstream_answers_total{labels} 5"),
        format!("signpost_upstream_retransmits_total{labels} 0"),
        format!("signpost_upstream_spoofs_dropped_total{labels} 0"),
        format!("signpost_upstream_send_buffer_full_total{labels} 0"),
        format!("signpost_upstream_in_flight{labels} 0"),
        "signpost_udp_receive_drops_total{listener=\"main-udp\"} 0".to_string(),
        "# TYPE signpost_system_udp_receive_buffer_errors counter".to_string(),
    ] {
        assert!(text.lines().any(|written| written == line), "no {line:?} in\n{text}");
    }
    // Measured now: a loopback round trip is well under the 50 ms floor.
    let sample = |name: &str| -> f64 {
        let prefix = format!("{name}{labels} ");
        let line = text.lines().find(|line| line.starts_with(&prefix)).unwrap_or_else(|| panic!("no {name}\n{text}"));
        line[prefix.len()..].parse().unwrap()
    };
    assert!(sample("signpost_upstream_smoothed_rtt_seconds") < 0.05);
    assert!((0.05..=0.5).contains(&sample("signpost_upstream_retransmit_timeout_seconds")));
    assert!(sample("signpost_upstream_receive_buffer_bytes") > 0.0);
    // 256 KiB asked; the kernel grants at most net.core.rmem_max without CAP_NET_ADMIN.
    let granted = text
        .lines()
        .find_map(|line| line.strip_prefix("signpost_udp_receive_buffer_bytes{listener=\"main-udp\"} "))
        .unwrap_or_else(|| panic!("no listener buffer in\n{text}"));
    let granted: usize = granted.parse().unwrap();
    assert!((4 << 10..=256 << 10).contains(&granted), "{granted}");
    server.shutdown().await;
}
