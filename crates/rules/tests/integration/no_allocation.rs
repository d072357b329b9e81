//! decide() must not allocate on the redirect and forwarding hot paths:
//! exact, suffix and wildcard hits that answer AddressOfQuestion, NODATA,
//! Forward or Block. A counting global allocator checks it.

use std::net::IpAddr;
use std::sync::Arc;

use signpost_alloc_count::{CountingAllocator, allocations_during};
use signpost_rules::config::RulesConfig;
use signpost_rules::{Client, Decision, RuleSet, Transport};
use signpost_wire::{Class, Message, MessageBuilder, NameBuf, RecordType};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn hot_paths_do_not_allocate() {
    let config = RulesConfig::from_toml(
        r#"
        default_group = "up"
        [[rules]]
        suffix = "amazonaws.com"
        action = "redirect"
        [[rules]]
        wildcard = "*.cloudfront.net"
        action = "redirect"
        ipv4 = "10.0.0.1"
        ipv6 = "none"
        [[rules]]
        exact = "exact.example"
        action = "forward"
        group = "corp"
        [[rules]]
        suffix = "corp.example"
        action = "forward"
        group = "corp"
        [[rules]]
        suffix = "ads.example"
        action = "block"
        block = "nxdomain"
        [[rules]]
        suffix = "filtered.example"
        action = "redirect"
        only_names_matching = 'yes\.'
        [[exceptions]]
        regex = '.*\.s3\..*'
        anchor = "start"
        [[zones]]
        name = "zone.example"
        records = ["alias CNAME www", "www A 10.2.2.2"]
        [[host_tables]]
        name = "t"
        hosts = [{ name = "one.host", addresses = ["10.1.1.1"] }]
        "#,
        "hot.toml",
    )
    .expect("valid");
    let rules = RuleSet::from_config(&config, std::path::Path::new("."), &["up", "corp"]).expect("valid");
    let client = Client {
        source: IpAddr::from([127, 0, 0, 1]),
        local: Some(IpAddr::from([127, 0, 0, 1])),
        listener: Some(Arc::from("udp-1")),
        transport: Transport::Udp,
    };
    let cases: Vec<(NameBuf, RecordType)> = [
        ("sqs.us-east-1.amazonaws.com.", RecordType::A),
        ("sqs.us-east-1.amazonaws.com.", RecordType::AAAA),
        ("sqs.us-east-1.amazonaws.com.", RecordType::MX),
        ("d1.cloudfront.net.", RecordType::AAAA),
        ("exact.example.", RecordType::A),
        ("git.corp.example.", RecordType::A),
        ("x.ads.example.", RecordType::A),
        ("yes.filtered.example.", RecordType::A),
        ("no.filtered.example.", RecordType::A),
        ("bucket.s3.amazonaws.com.", RecordType::A),
        ("one.host.", RecordType::A),
        ("www.example.org.", RecordType::A),
    ]
    .into_iter()
    .map(|(text, qtype)| (text.parse().expect("name"), qtype))
    .collect();
    // Warm up: the regex engine fills its per-thread cache on first use.
    for (name, qtype) in &cases {
        let _ = rules.decide_name(name, *qtype, Class::IN, &client);
    }
    for (name, qtype) in &cases {
        let count = allocations_during(|| {
            let decision = rules.decide_name(name, *qtype, Class::IN, &client);
            assert!(!matches!(&decision, Decision::Local(local) if local.reason.view.is_empty()));
            drop(decision);
        });
        assert_eq!(count, 0, "{name} {qtype} allocated");
    }

    // The counter does count: a CNAME chase builds its answer.
    let alias: NameBuf = "alias.zone.example.".parse().expect("name");
    assert!(allocations_during(|| drop(rules.decide_name(&alias, RecordType::A, Class::IN, &client))) > 0);

    // The same through a parsed question, as the server calls it.
    let mut query = Vec::new();
    let mut builder = MessageBuilder::new(&mut query).expect("builder");
    builder.push_question(&cases[0].0, RecordType::A, Class::IN).expect("question");
    builder.finish().expect("finish");
    let message = Message::parse(&query).expect("parses");
    let question = message.first_question().expect("valid").expect("one");
    let _ = rules.decide(&question, &client);
    assert_eq!(allocations_during(|| drop(rules.decide(&question, &client))), 0);
}

#[test]
fn declined_types_and_overlay_zones_passing_on_do_not_allocate() {
    use signpost_rules::{Action, AddressSource, Matcher, OtherTypes, Redirect, RuleSpec, Zone, ZoneMode, ZoneSpec};
    let redirect = Redirect { other_types: OtherTypes::Decline, v6: AddressSource::None, ..Redirect::default() };
    let overlay =
        Zone::loose("db.test.".parse().expect("name"), ["db.test. 300 IN A 10.0.0.5".parse().expect("record")])
            .expect("zone");
    let mut builder = RuleSet::builder();
    builder
        .default_group("up")
        .rule(RuleSpec::new("aws", Matcher::parse("amazonaws.com").expect("matcher"), Action::Redirect(redirect)))
        .zone(ZoneSpec { mode: ZoneMode::Overlay, ..ZoneSpec::new(overlay) });
    let rules = builder.build().expect("valid");
    let client = Client::udp(IpAddr::from([127, 0, 0, 1]));
    for (text, qtype) in [
        ("sqs.amazonaws.com.", RecordType::MX),
        ("sqs.amazonaws.com.", RecordType::TXT),
        ("db.test.", RecordType::MX),
        ("x.db.test.", RecordType::A),
    ] {
        let name: NameBuf = text.parse().expect("name");
        let count = allocations_during(|| {
            let decision = rules.decide_name(&name, qtype, Class::IN, &client);
            assert!(matches!(decision, Decision::Forward(_)), "{text} {qtype}: {decision:?}");
        });
        assert_eq!(count, 0, "{text} {qtype} allocated");
    }
}
