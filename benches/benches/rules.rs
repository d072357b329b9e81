//! Rule engine benchmarks: `RuleSet::decide` as the server calls it, on a
//! parsed question, with rule sets of growing size.
//!
//! Groups:
//!
//! * `rules_suffix`: 10, 10k and 100k suffix rules (`d{i}.zone{i % 97}.example`,
//!   forwarding), each asked for a rotation of 1024 names four labels deep
//!   under random rules (hits) and a rotation of names no rule matches
//!   (misses, which probe every suffix down to the root).
//! * `rules_regex`: 1k regex rules (`svc{i}-[a-z]+\.example\.com`), asked for
//!   names matching the first, middle and last pattern, and a miss.
//! * `rules_redirect`: the redirect proxy's rule set (four redirect suffixes,
//!   a start-anchored `only_names_matching` and two upstream exceptions), asked
//!   for a redirected A, a NODATA AAAA and a forwarded name; `plain_redirect_a`
//!   is the same A question with neither filter nor exceptions (no regex runs).
//!
//! Every measured decision is checked once before timing.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use signpost_rules::{
    Action, AddressSource, Anchor, Client, Decision, ExceptionSpec, Matcher, Redirect, RuleSet, RuleSpec,
};
use signpost_wire::{Class, Message, MessageBuilder, NameBuf, RecordType};

/// Queries in wire form, parsed once; decide() reads their first question.
struct Queries {
    wire: Vec<Vec<u8>>,
}

impl Queries {
    fn new(names: impl IntoIterator<Item = String>, qtype: RecordType) -> Self {
        let wire = names
            .into_iter()
            .map(|text| {
                let name: NameBuf = text.parse().expect("valid name");
                let mut query = Vec::new();
                let mut builder = MessageBuilder::new(&mut query).expect("builder");
                builder.push_question(&name, qtype, Class::IN).expect("question");
                builder.finish().expect("finish");
                query
            })
            .collect();
        Self { wire }
    }

    /// Decide every query once, round robin, per iteration of `b`.
    fn bench(&self, rules: &RuleSet, client: &Client, b: &mut criterion::Bencher<'_>) {
        let messages: Vec<Message<'_>> = self.wire.iter().map(|w| Message::parse(w).expect("parses")).collect();
        let questions: Vec<_> = messages.iter().map(|m| m.first_question().expect("valid").expect("one")).collect();
        let mut index = 0;
        b.iter(|| {
            let question = &questions[index];
            index = (index + 1) % questions.len();
            let decision = rules.decide(black_box(question), client);
            black_box(matches!(decision, Decision::Forward(_)))
        });
    }

    fn check(&self, rules: &RuleSet, client: &Client, expect: impl Fn(&Decision<'_>) -> bool) {
        for wire in &self.wire {
            let message = Message::parse(wire).expect("parses");
            let question = message.first_question().expect("valid").expect("one");
            let decision = rules.decide(&question, client);
            assert!(expect(&decision), "{} -> {decision:?}", question.name());
        }
    }
}

fn forward(group: &str) -> Action {
    Action::Forward { group: group.to_owned(), forward_first: false }
}

fn is_group(decision: &Decision<'_>, wanted: &str) -> bool {
    matches!(decision, Decision::Forward(forward) if forward.group == wanted)
}

fn suffix_rules(count: usize) -> RuleSet {
    let mut builder = RuleSet::builder();
    builder.default_group("default");
    for index in 0..count {
        let name: NameBuf = format!("d{index}.zone{}.example", index % 97).parse().expect("valid name");
        builder.rule(RuleSpec::new(format!("r{index}"), Matcher::Suffix(name), forward("hit")));
    }
    builder.build().expect("valid rule set")
}

fn rules_suffix(c: &mut Criterion) {
    let client = Client::udp(IpAddr::from([192, 0, 2, 1]));
    let mut group = c.benchmark_group("rules_suffix");
    for count in [10usize, 10_000, 100_000] {
        let rules = suffix_rules(count);
        // A cheap deterministic spread of rule indexes.
        let pick = |i: usize| (i * 7919 + 13) % count;
        let hits = Queries::new(
            (0..1024).map(|i| {
                let index = pick(i);
                format!("www.api.d{index}.zone{}.example", index % 97)
            }),
            RecordType::A,
        );
        hits.check(&rules, &client, |d| is_group(d, "hit"));
        let misses = Queries::new((0..1024).map(|i| format!("www.api.host{i}.elsewhere.test")), RecordType::A);
        misses.check(&rules, &client, |d| is_group(d, "default"));
        group.bench_function(BenchmarkId::new("hit", count), |b| hits.bench(&rules, &client, b));
        group.bench_function(BenchmarkId::new("miss", count), |b| misses.bench(&rules, &client, b));
    }
    group.finish();
}

fn rules_regex(c: &mut Criterion) {
    let client = Client::udp(IpAddr::from([192, 0, 2, 1]));
    let mut builder = RuleSet::builder();
    builder.default_group("default");
    for index in 0..1000 {
        let matcher = Matcher::Regex { pattern: format!(r"svc{index}-[a-z]+\.example\.com"), anchor: Anchor::Full };
        builder.rule(RuleSpec::new(format!("x{index}"), matcher, forward(&format!("g{index}"))));
    }
    let rules = builder.build().expect("valid rule set");
    let mut group = c.benchmark_group("rules_regex");
    for (label, index) in [("first", Some(0)), ("middle", Some(500)), ("last", Some(999)), ("miss", None)] {
        let names = (0..64).map(|i| match index {
            Some(index) => format!("svc{index}-api{}.example.com", char::from(b'a' + (i % 26) as u8)),
            None => format!("www{i}.unrelated.test"),
        });
        let queries = Queries::new(names, RecordType::A);
        let wanted = index.map_or("default".to_owned(), |index| format!("g{index}"));
        queries.check(&rules, &client, |d| is_group(d, &wanted));
        group.bench_function(BenchmarkId::new("1k", label), |b| queries.bench(&rules, &client, b));
    }
    group.finish();
}

/// The redirect proxy's rules; with `patterns`, a filter and two exceptions.
fn redirect_rules(patterns: bool) -> RuleSet {
    let mut builder = RuleSet::builder();
    builder.default_group("upstream");
    for domain in ["amazonaws.com", "aws.amazon.com", "cloudfront.net", "localhost.localstack.cloud"] {
        let redirect = Redirect { v4: AddressSource::ArrivalAddress, v6: AddressSource::None, ..Redirect::default() };
        let mut rule =
            RuleSpec::new(domain, Matcher::Suffix(domain.parse().expect("name")), Action::Redirect(redirect));
        if patterns {
            rule.only_names_matching = Some(".*".to_owned());
        }
        builder.rule(rule);
    }
    if patterns {
        for (index, pattern) in [r".*\.dkr\.ecr\.", r"^registry\."].into_iter().enumerate() {
            let matcher = Matcher::Regex { pattern: pattern.to_owned(), anchor: Anchor::Start };
            builder.exception(ExceptionSpec::new(format!("skip{index}"), matcher));
        }
    }
    builder.build().expect("valid rule set")
}

fn rules_redirect(c: &mut Criterion) {
    let client = Client {
        source: IpAddr::from([127, 0, 0, 1]),
        local: Some(IpAddr::from([127, 0, 0, 1])),
        listener: Some("udp".into()),
        transport: signpost_rules::Transport::Udp,
    };
    let rules = redirect_rules(true);
    let plain = redirect_rules(false);
    let mut group = c.benchmark_group("rules_redirect");
    let redirected = Queries::new(["sqs.us-east-1.amazonaws.com".to_owned()], RecordType::A);
    redirected.check(&rules, &client, |d| matches!(d, Decision::Local(_)));
    let nodata = Queries::new(["sqs.us-east-1.amazonaws.com".to_owned()], RecordType::AAAA);
    nodata.check(&rules, &client, |d| matches!(d, Decision::Local(local) if local.is_nodata()));
    let forwarded = Queries::new(["www.example.org".to_owned()], RecordType::A);
    forwarded.check(&rules, &client, |d| is_group(d, "upstream"));
    group.bench_function("redirect_a", |b| redirected.bench(&rules, &client, b));
    group.bench_function("nodata_aaaa", |b| nodata.bench(&rules, &client, b));
    group.bench_function("forward", |b| forwarded.bench(&rules, &client, b));
    redirected.check(&plain, &client, |d| matches!(d, Decision::Local(_)));
    group.bench_function("plain_redirect_a", |b| redirected.bench(&plain, &client, b));
    group.finish();
}

criterion_group!(benches, rules_suffix, rules_regex, rules_redirect);
criterion_main!(benches);
