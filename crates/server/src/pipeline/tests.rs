//! The pipeline run synchronously, without sockets: each check a query
//! meets, and what it comes to at the seam.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use signpost_alloc_count::{CountingAllocator, allocations_during};
use signpost_rules::config::RulesConfig;
use signpost_rules::{RuleSet, Transport};
use signpost_upstream::Upstreams;
use signpost_wire::{
    Class, EdnsHeader, ExtendedErrorCode, Flags, Message, MessageBuilder, NameBuf, Opcode, OptionCode, Rcode,
    RecordBuf, RecordType, SliceBuffer,
};

use super::{Incoming, ListenerContext, Pipeline, Reply, State};
use crate::cache::CacheKey;
use crate::config::{LimitAction, ServerConfig, default_allow_list};
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::test_layer::{FaultAction, FaultTarget, TestLayer};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const RULES: &str = r#"
default_group = "upstream"
rules = [{ suffix = "local.test", action = "redirect", ipv4 = "192.0.2.1", ipv6 = "none" }]
"#;

const ALLOWED: &str = "127.0.0.1:5353";
const NOT_ALLOWED: &str = "192.0.2.99:5353";

fn pipeline_with(config: ServerConfig, layer: Option<TestLayer>) -> Arc<Pipeline> {
    let rules = RulesConfig::from_toml(RULES, "test.toml").unwrap();
    let rules = RuleSet::from_config(&rules, ".".as_ref(), &["upstream"]).unwrap();
    let state = State::new(Arc::new(rules), Arc::new(Upstreams::default()));
    Arc::new(Pipeline::new(config, state, Arc::new(Metrics::default()), None, layer))
}

fn pipeline() -> Arc<Pipeline> {
    pipeline_with(ServerConfig::default(), None)
}

fn listener(transport: Transport) -> ListenerContext {
    ListenerContext {
        id: Arc::from("test"),
        transport,
        allow: default_allow_list(),
        max_qps: None,
        group_limit: None,
        bound: None,
        port: 0,
        client_rate_limit: true,
    }
}

fn query_with(name: &str, qtype: RecordType, edns: Option<EdnsHeader>) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut builder = MessageBuilder::new(&mut bytes).unwrap();
    builder.set_id(0x1234);
    builder.set_flags(Flags::default().with_rd(true));
    builder.push_question(&name.parse::<NameBuf>().unwrap(), qtype, Class::IN).unwrap();
    if let Some(edns) = edns {
        builder.set_edns(edns);
    }
    builder.finish().unwrap();
    bytes
}

fn query(name: &str) -> Vec<u8> {
    query_with(name, RecordType::A, None)
}

/// Run `bytes` from `client` over `transport`; the reply and what was written.
fn run(pipeline: &Arc<Pipeline>, bytes: &[u8], client: &str, transport: Transport) -> (Reply, Vec<u8>) {
    run_on(pipeline, bytes, client, &listener(transport))
}

/// Run `bytes` from `client` on `listener`.
fn run_on(pipeline: &Arc<Pipeline>, bytes: &[u8], client: &str, listener: &ListenerContext) -> (Reply, Vec<u8>) {
    let incoming = Incoming {
        bytes,
        peer: client.parse::<SocketAddr>().unwrap(),
        local: None,
        listener,
        max_response: None,
        now: Instant::now(),
        state: None,
    };
    let mut out = Vec::new();
    let reply = pipeline.handle(&incoming, &mut out);
    (reply, out)
}

/// The answer written now, parsed; panics on any other reply.
fn answered(pipeline: &Arc<Pipeline>, bytes: &[u8], client: &str) -> Vec<u8> {
    match run(pipeline, bytes, client, Transport::Udp) {
        (Reply::Now { len }, out) => {
            assert_eq!(len, out.len());
            out
        }
        (Reply::Later(_), _) => panic!("a later answer"),
        (Reply::Silent, _) => panic!("no answer"),
        (Reply::Close, _) => panic!("closed"),
        (Reply::Stream { .. }, _) => panic!("a stream"),
    }
}

fn rcode(response: &[u8]) -> Rcode {
    Message::parse(response).unwrap().rcode().unwrap()
}

fn answers(response: &[u8]) -> Vec<String> {
    let message = Message::parse(response).unwrap();
    message.answers().unwrap().map(|record| RecordBuf::from_record(&record.unwrap()).unwrap().to_string()).collect()
}

fn extended_error(response: &[u8]) -> Option<u16> {
    let message = Message::parse(response).unwrap();
    let edns = message.edns().unwrap()?;
    let option = edns.option(OptionCode::EXTENDED_ERROR)?;
    match option {
        signpost_wire::EdnsOption::ExtendedError(error) => Some(error.info_code.0),
        _ => None,
    }
}

#[test]
fn a_local_answer_is_written_now() {
    let pipeline = pipeline();
    let response = answered(&pipeline, &query("www.local.test"), ALLOWED);
    let message = Message::parse(&response).unwrap();
    assert_eq!(message.id(), 0x1234);
    assert!(message.flags().qr() && message.flags().ra());
    assert_eq!(rcode(&response), Rcode::NOERROR);
    assert_eq!(answers(&response), ["www.local.test. 60 IN A 192.0.2.1"]);
    assert_eq!(pipeline.metrics.decisions("local"), 1);
    assert_eq!(pipeline.metrics.queries("udp"), 1);
}

/// An UPDATE for www.local.test.
fn update_query() -> Vec<u8> {
    let mut update = query("www.local.test");
    update[2] |= Opcode::UPDATE.0 << 3;
    update
}

/// A query whose header announces two questions; one follows.
fn two_questions() -> Vec<u8> {
    let mut two = query("www.local.test");
    two[5] = 2;
    two
}

/// A query with an OPT record of EDNS version 1.
fn edns_version_one_query() -> Vec<u8> {
    query_with("www.local.test", RecordType::A, Some(EdnsHeader { version: 1, ..EdnsHeader::default() }))
}

#[test]
fn a_query_that_breaks_the_rules_of_the_format_gets_formerr() {
    let pipeline = pipeline();
    let response = answered(&pipeline, &two_questions(), ALLOWED);
    assert_eq!(rcode(&response), Rcode::FORMERR);
    assert_eq!(Message::parse(&response).unwrap().id(), 0x1234);
    // Bytes after the message.
    let mut trailing = query("www.local.test");
    trailing.push(0);
    assert_eq!(rcode(&answered(&pipeline, &trailing, ALLOWED)), Rcode::FORMERR);
    assert_eq!(pipeline.metrics.decisions("error"), 2);
}

#[test]
fn other_opcodes_get_notimp() {
    let pipeline = pipeline();
    let response = answered(&pipeline, &update_query(), ALLOWED);
    assert_eq!(rcode(&response), Rcode::NOTIMP);
    assert_eq!(Message::parse(&response).unwrap().opcode(), Opcode::UPDATE);
}

#[test]
fn edns_versions_above_zero_get_badvers() {
    let pipeline = pipeline();
    let response = answered(&pipeline, &edns_version_one_query(), ALLOWED);
    assert_eq!(rcode(&response), Rcode::BADVERS);
    let edns = Message::parse(&response).unwrap().edns().unwrap().unwrap();
    assert_eq!(edns.version(), 0);
    assert!(answers(&response).is_empty());
}

#[test]
fn clients_outside_the_allow_list_are_refused() {
    let pipeline = pipeline();
    let bytes = query_with("www.local.test", RecordType::A, Some(EdnsHeader::default()));
    let response = answered(&pipeline, &bytes, NOT_ALLOWED);
    assert_eq!(rcode(&response), Rcode::REFUSED);
    assert!(answers(&response).is_empty());
    assert_eq!(extended_error(&response), Some(ExtendedErrorCode::PROHIBITED.0));
    assert_eq!(pipeline.metrics.decisions("refused"), 1);
    assert_eq!(pipeline.metrics.decisions("local"), 0);
}

/// The ACL comes before every other answer: a client the listener does not
/// serve learns nothing but REFUSED, and spends none of the rate limits.
#[test]
fn a_client_not_allowed_gets_refused_whatever_it_sends() {
    let pipeline = pipeline();
    for bytes in [update_query(), two_questions(), edns_version_one_query()] {
        let response = answered(&pipeline, &bytes, NOT_ALLOWED);
        assert_eq!(rcode(&response), Rcode::REFUSED);
        assert!(answers(&response).is_empty());
        assert!(response.len() <= bytes.len() + 32, "{} bytes for {}", response.len(), bytes.len());
    }
    assert_eq!(pipeline.metrics.decisions("refused"), 3);
    assert_eq!(pipeline.metrics.responses(Rcode::NOTIMP.0) + pipeline.metrics.responses(Rcode::FORMERR.0), 0);

    let mut limited = listener(Transport::Udp);
    limited.max_qps = Some(RateLimiter::single(1));
    let bytes = query("www.local.test");
    for _ in 0..5 {
        let (reply, out) = run_on(&pipeline, &bytes, NOT_ALLOWED, &limited);
        assert!(matches!(reply, Reply::Now { .. }) && rcode(&out) == Rcode::REFUSED);
    }
    let (reply, out) = run_on(&pipeline, &bytes, ALLOWED, &limited);
    assert!(matches!(reply, Reply::Now { .. }));
    assert_eq!(rcode(&out), Rcode::NOERROR, "the listener's one query a second is still there");
}

#[test]
fn over_the_rate_limit_queries_are_refused_or_dropped() {
    let mut config = ServerConfig::default();
    config.limits.per_client_qps = Some(1);
    config.limits.action = LimitAction::Refuse;
    let refusing = pipeline_with(config.clone(), None);
    let bytes = query("www.local.test");
    assert_eq!(rcode(&answered(&refusing, &bytes, ALLOWED)), Rcode::NOERROR);
    assert_eq!(rcode(&answered(&refusing, &bytes, ALLOWED)), Rcode::REFUSED);
    assert_eq!(refusing.metrics.drops("rate_limited"), 1);

    config.limits.action = LimitAction::Drop;
    let dropping = pipeline_with(config, None);
    assert_eq!(rcode(&answered(&dropping, &bytes, ALLOWED)), Rcode::NOERROR);
    assert!(matches!(run(&dropping, &bytes, ALLOWED, Transport::Udp), (Reply::Silent, out) if out.is_empty()));
    assert_eq!(dropping.metrics.drops("rate_limited"), 1);

    // A listener's own limit, which every client shares.
    let pipeline = pipeline();
    let mut limited = listener(Transport::Udp);
    limited.max_qps = Some(RateLimiter::single(1));
    assert!(matches!(run_on(&pipeline, &bytes, ALLOWED, &limited), (Reply::Now { .. }, _)));
    assert!(matches!(run_on(&pipeline, &bytes, "127.0.0.2:53", &limited), (Reply::Silent, _)));
    assert_eq!(pipeline.metrics.drops("listener_limit"), 1);
}

#[test]
fn what_is_not_a_query_gets_no_answer() {
    let pipeline = pipeline();
    assert!(matches!(run(&pipeline, &[0u8; 11], ALLOWED, Transport::Udp), (Reply::Silent, out) if out.is_empty()));
    let mut response = query("www.local.test");
    response[2] |= 0x80;
    assert!(matches!(run(&pipeline, &response, ALLOWED, Transport::Udp), (Reply::Silent, _)));
    assert_eq!(pipeline.metrics.drops("malformed"), 1);
    assert_eq!(pipeline.metrics.drops("not_a_query"), 1);
}

/// An upstream's answer to `name` A, as the cache stores it.
fn upstream_answer(name: &str) -> Vec<u8> {
    let question = query(name);
    let question = Message::parse(&question).unwrap();
    let mut response = Vec::new();
    let mut builder = MessageBuilder::response_to(&mut response, &question).unwrap();
    let owner: NameBuf = name.parse().unwrap();
    builder
        .push(signpost_wire::Section::Answer, &owner, Class::IN, 300, &signpost_wire::RData::A([192, 0, 2, 7].into()))
        .unwrap();
    builder.finish().unwrap();
    response
}

fn cache_forwarded(pipeline: &Pipeline, name: &str) {
    let owner: NameBuf = name.parse().unwrap();
    let key = CacheKey::a_question("default", owner.as_wire());
    pipeline.cache.insert(key.as_bytes(), &upstream_answer(name), Instant::now()).unwrap();
}

#[test]
fn a_cache_hit_is_written_now() {
    let pipeline = pipeline();
    cache_forwarded(&pipeline, "www.example.org");
    let response = answered(&pipeline, &query("WWW.example.org"), ALLOWED);
    let message = Message::parse(&response).unwrap();
    assert_eq!(message.id(), 0x1234);
    assert_eq!(message.first_question().unwrap().unwrap().name().to_string(), "WWW.example.org.", "the client's case");
    assert_eq!(answers(&response).len(), 1);
    assert_eq!(pipeline.metrics.decisions("cache"), 1);
    assert_eq!(pipeline.cache.stats().hits(), 1);
}

#[test]
fn a_forwarded_name_becomes_a_pending_answer_that_counts_as_in_flight() {
    let pipeline = pipeline();
    let (reply, out) = run(&pipeline, &query("www.example.org"), ALLOWED, Transport::Udp);
    assert!(out.is_empty(), "nothing written now");
    let Reply::Later(pending) = reply else { panic!("not a forward") };
    assert_eq!(pipeline.in_flight.len(), 1);
    assert_eq!(pipeline.cache.stats().misses(), 1);
    // Dropped (its client gone), it is no longer in flight.
    drop(pending);
    assert_eq!(pipeline.in_flight.len(), 0);
    assert_eq!(pipeline.metrics.decisions("forwarded"), 0, "counted when answered, not when made");
}

#[test]
fn a_test_layer_turns_faults_into_replies() {
    let layer = TestLayer::new().recording(true);
    let pipeline = pipeline_with(ServerConfig::default(), Some(layer.clone()));
    let name = |text: &str| FaultTarget::Name(text.parse().unwrap());
    layer.inject_fault(name("truncated.local.test"), FaultAction::Truncate);
    layer.inject_fault(name("reset.local.test"), FaultAction::TcpReset);
    layer.inject_fault(name("slow.local.test"), FaultAction::Delay(Duration::from_millis(1)));
    let truncated = answered(&pipeline, &query("truncated.local.test"), ALLOWED);
    assert!(Message::parse(&truncated).unwrap().flags().tc());
    assert!(answers(&truncated).is_empty());
    let over_tcp = run(&pipeline, &query("truncated.local.test"), ALLOWED, Transport::Tcp);
    assert!(matches!(over_tcp, (Reply::Now { .. }, out) if answers(&out).len() == 1), "TCP is answered");
    assert!(matches!(run(&pipeline, &query("reset.local.test"), ALLOWED, Transport::Tcp), (Reply::Close, _)));
    assert!(matches!(run(&pipeline, &query("reset.local.test"), ALLOWED, Transport::Udp), (Reply::Silent, _)));
    let (delayed, out) = run(&pipeline, &query("slow.local.test"), ALLOWED, Transport::Udp);
    assert!(matches!(delayed, Reply::Later(_)) && out.is_empty(), "the answer waits, nothing is written now");
    let recorded = layer.recorded_queries();
    let outcomes: Vec<_> =
        recorded.iter().map(|query| (query.decision.as_str(), query.rcode, query.finished)).collect();
    assert_eq!(
        outcomes,
        [
            ("fault", Some(Rcode::NOERROR), true),
            ("local", Some(Rcode::NOERROR), true),
            ("close", None, true),
            ("drop", None, true),
            ("local", Some(Rcode::NOERROR), true),
        ]
    );
    assert_eq!(recorded[1].answers, ["truncated.local.test. 60 IN A 192.0.2.1"]);
    assert!(recorded[1].matched.starts_with("rule "), "readable, not Debug: {}", recorded[1].matched);
}

/// The UDP workers' inline path: a local answer and a cache hit written into
/// the batch slot allocate nothing.
#[test]
fn local_answers_and_cache_hits_allocate_nothing() {
    let pipeline = pipeline();
    cache_forwarded(&pipeline, "www.example.org");
    let listener = listener(Transport::Udp);
    let peer: SocketAddr = ALLOWED.parse().unwrap();
    let queries = [query("www.local.test"), query_with("www.example.org", RecordType::A, Some(EdnsHeader::default()))];
    let mut slot = [0u8; 4096];
    let mut answer = |bytes: &[u8]| {
        let incoming = Incoming {
            bytes,
            peer,
            local: None,
            listener: &listener,
            max_response: None,
            now: Instant::now(),
            state: None,
        };
        let mut out = SliceBuffer::new(&mut slot);
        matches!(pipeline.handle(&incoming, &mut out), Reply::Now { .. })
    };
    // The first run may set up lazily initialised state.
    for bytes in &queries {
        assert!(answer(bytes));
    }
    for bytes in &queries {
        let mut answered = false;
        let allocations = allocations_during(|| answered = answer(bytes));
        assert!(answered);
        assert_eq!(allocations, 0, "{:?}", Message::parse(bytes).unwrap().first_question());
    }
}

/// The loop marker of a query: the identities it has passed through.
fn loop_marker(bytes: &[u8]) -> Option<Vec<u8>> {
    let message = Message::parse(bytes).unwrap();
    match message.edns().unwrap()?.option(super::LOOP_MARKER)? {
        signpost_wire::EdnsOption::Unknown { data, .. } => Some(data.to_vec()),
        _ => None,
    }
}

/// A query for `name` carrying the loop marker `hops`.
fn marked_query(name: &str, hops: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut builder = MessageBuilder::new(&mut bytes).unwrap();
    builder.set_id(0x1234);
    builder.set_flags(Flags::default().with_rd(true));
    builder.push_question(&name.parse::<NameBuf>().unwrap(), RecordType::A, Class::IN).unwrap();
    builder.set_edns(EdnsHeader::default());
    builder.push_edns_option(&signpost_wire::EdnsOption::Unknown { code: super::LOOP_MARKER, data: hops }).unwrap();
    builder.finish().unwrap();
    bytes
}

/// The query a forwarded question is sent upstream as.
fn upstream_query_of(reply: Reply) -> Vec<u8> {
    let Reply::Later(pending) = reply else { panic!("not a forward") };
    match pending.work {
        super::Work::Forward(job) => job.upstream_query.to_vec(),
        super::Work::Delayed { .. } => panic!("not a forward"),
    }
}

#[test]
fn forwarded_queries_carry_the_servers_they_passed_and_a_query_back_here_is_a_loop() {
    let pipeline = pipeline();
    // A client's query goes upstream marked with this server alone.
    let (reply, _) = run(&pipeline, &query("www.example.org"), ALLOWED, Transport::Udp);
    let sent = upstream_query_of(reply);
    assert_eq!(loop_marker(&sent).unwrap(), pipeline.instance);
    // One that passed another server keeps that server's mark and adds ours.
    let other = [7u8; 8];
    let (reply, _) = run(&pipeline, &marked_query("www.example.org", &other), ALLOWED, Transport::Udp);
    let sent = upstream_query_of(reply);
    assert_eq!(loop_marker(&sent).unwrap(), [other, pipeline.instance].concat());
    // Our own mark coming back: SERVFAIL with an extended error, at once, whatever the name.
    for name in ["www.example.org", "www.local.test"] {
        let looped = marked_query(name, &[other, pipeline.instance].concat());
        let response = answered(&pipeline, &looped, ALLOWED);
        assert_eq!(rcode(&response), Rcode::SERVFAIL);
        assert_eq!(extended_error(&response), Some(ExtendedErrorCode::OTHER.0));
    }
    // So is a chain longer than any real one.
    let long = marked_query("www.example.org", &[3u8; 8 * super::MAX_HOPS]);
    assert_eq!(rcode(&answered(&pipeline, &long, ALLOWED)), Rcode::SERVFAIL);
    assert_eq!(pipeline.metrics.decisions("loop"), 3);
    // Turned off, nothing is marked and nothing is taken for a loop.
    let mut config = ServerConfig::default();
    config.limits.loop_detection = false;
    let unmarked = pipeline_with(config, None);
    let (reply, _) = run(&unmarked, &query("www.example.org"), ALLOWED, Transport::Udp);
    assert_eq!(loop_marker(&upstream_query_of(reply)), None);
    // Two pipelines (two servers) have different identities.
    assert_ne!(pipeline.instance, unmarked.instance);
}

#[test]
fn any_over_udp_gets_one_hinfo_record_and_over_tcp_the_usual_answer() {
    let pipeline = pipeline();
    for name in ["www.local.test", "www.example.org"] {
        let bytes = query_with(name, RecordType::ANY, Some(EdnsHeader::default()));
        let response = answered(&pipeline, &bytes, ALLOWED);
        assert_eq!(rcode(&response), Rcode::NOERROR);
        let message = Message::parse(&response).unwrap();
        let records: Vec<_> = message.answers().unwrap().map(Result::unwrap).collect();
        assert_eq!(records.len(), 1);
        assert_eq!((records[0].rtype(), records[0].ttl()), (RecordType::HINFO, 3_600));
        assert_eq!(records[0].name().to_string(), format!("{name}."));
        assert_eq!(records[0].raw_data(), b"\x07RFC8482\x00", "CPU \"RFC8482\", OS empty");
        assert!(response.len() <= bytes.len() + 40, "{} bytes for a {}-byte query", response.len(), bytes.len());
    }
    assert_eq!(pipeline.metrics.decisions("minimal_any"), 2);
    assert!(matches!(
        run(&pipeline, &query_with("www.example.org", RecordType::ANY, None), ALLOWED, Transport::Tcp),
        (Reply::Later(_), _)
    ));
    let mut config = ServerConfig::default();
    config.limits.minimal_any = false;
    let full = pipeline_with(config, None);
    let (reply, _) = run(&full, &query_with("www.example.org", RecordType::ANY, None), ALLOWED, Transport::Udp);
    assert!(matches!(reply, Reply::Later(_)), "forwarded as asked");
}

#[test]
fn response_rate_limiting_drops_a_networks_excess_and_slips_every_second_one_truncated() {
    let mut config = ServerConfig::default();
    config.limits.response_rate_limit =
        Some(crate::config::ResponseRateLimitConfig { responses_per_second: 5, slip: 2, ..Default::default() });
    let pipeline = pipeline_with(config, None);
    let bytes = query_with("www.local.test", RecordType::A, Some(EdnsHeader::default()));
    let (mut full, mut slipped, mut dropped) = (0, 0, 0);
    // A spoofed flood "from" every address of 10.1.2.0/24.
    for host in 0..40 {
        match run(&pipeline, &bytes, &format!("10.1.2.{host}:5353"), Transport::Udp) {
            (Reply::Now { .. }, out) => {
                let message = Message::parse(&out).unwrap();
                if message.flags().tc() {
                    assert!(answers(&out).is_empty() && message.edns().unwrap().is_none());
                    assert!(out.len() <= bytes.len(), "a slip is no larger than the query");
                    slipped += 1;
                } else {
                    full += 1;
                }
            }
            (Reply::Silent, _) => dropped += 1,
            (_, _) => panic!("unexpected reply"),
        }
    }
    assert_eq!((full, slipped, dropped), (5, 17, 18));
    assert_eq!(pipeline.metrics.decisions("slipped"), 17);
    assert_eq!(pipeline.metrics.drops("response_rate_limit"), 18);
    // Another network is answered; so is the limited one over TCP.
    assert!(
        matches!(run(&pipeline, &bytes, "10.1.3.1:5353", Transport::Udp), (Reply::Now { .. }, out) if answers(&out).len() == 1)
    );
    assert!(
        matches!(run(&pipeline, &bytes, "10.1.2.1:5353", Transport::Tcp), (Reply::Now { .. }, out) if answers(&out).len() == 1)
    );
}

/// A million distinct names from one client: the queries waiting for an
/// upstream stop at the cap and the cache at its size, whatever comes.
#[test]
fn a_million_distinct_names_leave_memory_bounded() {
    let mut config = ServerConfig::default();
    config.limits.max_in_flight = 1_000;
    config.cache.max_entries = 5_000;
    let pipeline = pipeline_with(config, None);
    let listener = listener(Transport::Udp);
    let mut waiting = Vec::new();
    let mut bytes = query("n0000000.example.org");
    let now = Instant::now();
    for index in 0..1_000_000u32 {
        // Overwrite the first label in place: a new name each time, no allocation per query.
        let label = format!("n{index:07}");
        bytes[13..21].copy_from_slice(label.as_bytes());
        let incoming = Incoming {
            bytes: &bytes,
            peer: ALLOWED.parse().unwrap(),
            local: None,
            listener: &listener,
            max_response: None,
            now,
            state: None,
        };
        let mut out = Vec::new();
        match pipeline.handle(&incoming, &mut out) {
            Reply::Later(pending) => waiting.push(pending),
            Reply::Silent => {}
            _ => panic!("a forwarded name is waited for or dropped"),
        }
        // What the upstream answers goes into the cache.
        if index % 10 == 0 {
            let owner: NameBuf = format!("{label}.example.org").parse().unwrap();
            let key = CacheKey::a_question("default", owner.as_wire());
            pipeline.cache.insert(key.as_bytes(), &upstream_answer(&format!("{label}.example.org")), now);
        }
    }
    assert_eq!(waiting.len(), 1_000);
    assert_eq!(pipeline.in_flight.len(), 1_000);
    assert_eq!(pipeline.metrics.drops("in_flight_limit"), 999_000);
    assert!(pipeline.cache.len() <= 5_000, "{} cache entries", pipeline.cache.len());
    assert!(pipeline.coalescing.len() <= 1_000);
    drop(waiting);
    assert_eq!(pipeline.in_flight.len(), 0);
    let (reply, _) = run(&pipeline, &query("again.example.org"), ALLOWED, Transport::Udp);
    assert!(matches!(reply, Reply::Later(_)), "room again once answered");
}

/// A listener bound to a wildcard address with the default configuration
/// serves loopback and private networks and refuses everyone else: not an
/// open resolver.
#[test]
fn a_wildcard_listener_with_default_settings_is_not_an_open_resolver() {
    let pipeline = pipeline();
    let config = crate::config::ListenerConfig::new(Transport::Udp, "0.0.0.0:53".parse().unwrap());
    assert_eq!(config.allow, None, "no allow-list given");
    let listener =
        ListenerContext { allow: config.allow.clone().unwrap_or_else(default_allow_list), ..listener(Transport::Udp) };
    let bytes = query("www.example.org");
    for public in ["192.0.2.1:5353", "198.51.100.7:5353", "203.0.113.9:5353", "8.8.8.8:53", "[2001:db8::1]:5353"] {
        let (reply, out) = run_on(&pipeline, &bytes, public, &listener);
        assert!(matches!(reply, Reply::Now { .. }) && rcode(&out) == Rcode::REFUSED, "{public} is refused");
    }
    for private in ["127.0.0.1:5353", "10.0.0.1:5353", "192.168.1.1:5353", "[::1]:5353", "[fd00::1]:5353"] {
        let (reply, _) = run_on(&pipeline, &bytes, private, &listener);
        assert!(matches!(reply, Reply::Later(_)), "{private} is served");
    }
}

/// A pipeline forwarding everything to `upstream` over UDP, with fixed
/// per-try timeouts (no retransmission muddles the upstream's count).
fn forwarding_to(upstream: &signpost_testkit::FakeUpstream, config: ServerConfig) -> Arc<Pipeline> {
    let rules = RulesConfig::from_toml(RULES, "test.toml").unwrap();
    let rules = RuleSet::from_config(&rules, ".".as_ref(), &["upstream"]).unwrap();
    let mut group =
        signpost_upstream::GroupConfig::new("upstream", vec![signpost_upstream::ServerConfig::udp(upstream.address())]);
    group.per_try_timeout = Duration::from_secs(3);
    group.min_try_timeout = group.per_try_timeout;
    group.total_timeout = Duration::from_secs(4);
    let upstreams = Upstreams::new(vec![group]).unwrap();
    let state = State::new(Arc::new(rules), Arc::new(upstreams));
    Arc::new(Pipeline::new(config, state, Arc::new(Metrics::default()), None, None))
}

/// An upstream answering every A question with 192.0.2.7 after `delay`.
async fn slow_upstream(delay: Duration) -> signpost_testkit::FakeUpstream {
    signpost_testkit::FakeUpstream::builder()
        .otherwise(signpost_testkit::Answer::address([192, 0, 2, 7].into()))
        .behaviour(signpost_testkit::Behaviour::Delay(delay))
        .start()
        .await
        .unwrap()
}

/// The forward `bytes` become, as if they had arrived at `arrived`, answered in a task of its own.
fn forward_from(
    pipeline: &Arc<Pipeline>,
    bytes: &[u8],
    arrived: Instant,
) -> tokio::task::JoinHandle<(Option<Vec<u8>>, Duration)> {
    let listener = listener(Transport::Udp);
    let incoming = Incoming {
        bytes,
        peer: ALLOWED.parse().unwrap(),
        local: None,
        listener: &listener,
        max_response: None,
        now: arrived,
        state: None,
    };
    let Reply::Later(pending) = pipeline.handle(&incoming, &mut Vec::new()) else { panic!("not a forward") };
    tokio::spawn(async move {
        let started = Instant::now();
        let answer = pending.answer().await;
        (answer, started.elapsed())
    })
}

#[tokio::test]
async fn a_slow_leader_does_not_hold_a_follower_past_its_own_deadline() {
    let upstream = slow_upstream(Duration::from_millis(900)).await;
    let pipeline = forwarding_to(&upstream, ServerConfig::default());
    let bytes = query_with("popular.example", RecordType::A, Some(EdnsHeader::default()));
    let leader = forward_from(&pipeline, &bytes, Instant::now());
    upstream.wait_for_queries(1, Duration::from_secs(2)).await.unwrap();
    // The follower came in long ago (it sat in a queue, say): 300 ms of its 4.5 s are left.
    let timeout = pipeline.query_timeout();
    let follower = forward_from(&pipeline, &bytes, Instant::now() - timeout + Duration::from_millis(300));
    let (answer, waited) = follower.await.unwrap();
    let answer = answer.expect("a SERVFAIL, not silence");
    assert_eq!(rcode(&answer), Rcode::SERVFAIL);
    assert_eq!(extended_error(&answer), Some(ExtendedErrorCode::NO_REACHABLE_AUTHORITY.0));
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_millis(700), "waited {waited:?}");
    // The leader carries on to the upstream's answer.
    let (answer, waited) = leader.await.unwrap();
    let answer = answer.expect("the upstream's answer");
    assert_eq!(answers(&answer), ["popular.example. 300 IN A 192.0.2.7"]);
    assert!(waited >= Duration::from_millis(850), "waited {waited:?}");
    assert_eq!(upstream.query_count(), 1, "the follower sent nothing of its own");
    assert_eq!(pipeline.metrics.decisions("upstream_failed"), 1);
    assert_eq!(pipeline.metrics.decisions("forwarded"), 1);
}

#[tokio::test]
async fn followers_of_a_cancelled_leader_share_one_new_resolution() {
    let upstream = slow_upstream(Duration::from_millis(300)).await;
    let pipeline = forwarding_to(&upstream, ServerConfig::default());
    let bytes = query("cancelled.example");
    let leader = forward_from(&pipeline, &bytes, Instant::now());
    upstream.wait_for_queries(1, Duration::from_secs(2)).await.unwrap();
    let followers: Vec<_> = (0..3).map(|_| forward_from(&pipeline, &bytes, Instant::now())).collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The leader's client goes away.
    leader.abort();
    for follower in followers {
        let (answer, waited) = follower.await.unwrap();
        assert_eq!(answers(&answer.expect("an answer")), ["cancelled.example. 300 IN A 192.0.2.7"]);
        assert!(waited < Duration::from_secs(1), "waited {waited:?}");
    }
    assert_eq!(upstream.query_count(), 2, "the leader's query and one shared by the three followers");
}
