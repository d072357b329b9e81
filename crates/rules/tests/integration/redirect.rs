//! The redirect proxy's configuration: LocalStack-style redirection with
//! name patterns and upstream exceptions.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

use signpost_rules::{
    Action, AddressSource, Anchor, Answer, Client, Decision, ExceptionSpec, Matcher, Redirect, RuleSet, RuleSpec,
};
use signpost_wire::{Class, RData, RecordType};

use crate::support::{name, summary};

/// What signpost-redirect builds from LocalStack's variables.
fn localstack(local_patterns: Option<&str>, upstream_patterns: &[&str]) -> RuleSet {
    let mut builder = RuleSet::builder();
    builder.default_group("upstream");
    for domain in ["amazonaws.com", "aws.amazon.com", "cloudfront.net", "localhost.localstack.cloud"] {
        let mut rule = RuleSpec::new(domain, Matcher::Suffix(name(domain)), Action::Redirect(Redirect::default()));
        if domain != "localhost.localstack.cloud" {
            rule.only_names_matching = local_patterns.map(ToOwned::to_owned);
        }
        builder.rule(rule);
    }
    for (index, pattern) in upstream_patterns.iter().enumerate() {
        let matcher = Matcher::Regex { pattern: (*pattern).to_owned(), anchor: Anchor::Start };
        builder.exception(ExceptionSpec::new(format!("skip{index}"), matcher));
    }
    builder.build().expect("valid")
}

fn ask(rules: &RuleSet, text: &str, qtype: RecordType, client: &Client) -> String {
    let decision = rules.decide_name(&name(text), qtype, Class::IN, client);
    match &decision {
        Decision::Local(local) => match &local.answer {
            Answer::AddressOfQuestion { address, ttl } => format!("{address} ttl {ttl}"),
            Answer::Records(records) if records.is_empty() && local.is_nodata() => {
                format!("NODATA soa {}", local.authority[0].name)
            }
            other => format!("{other:?}"),
        },
        other => summary(other),
    }
}

#[test]
fn redirected_names_answer_the_arrival_address_and_nodata_otherwise() {
    let rules = localstack(None, &[]);
    let loopback = Client::udp(IpAddr::from([127, 0, 0, 1]));
    assert_eq!(ask(&rules, "sqs.us-east-1.amazonaws.com.", RecordType::A, &loopback), "127.0.0.1 ttl 60");
    assert_eq!(ask(&rules, "test.localhost.localstack.cloud.", RecordType::A, &loopback), "127.0.0.1 ttl 60");
    assert_eq!(ask(&rules, "sqs.us-east-1.amazonaws.com.", RecordType::AAAA, &loopback), "::1 ttl 60");
    assert_eq!(ask(&rules, "amazonaws.com.", RecordType::MX, &loopback), "NODATA soa amazonaws.com.");
    assert_eq!(ask(&rules, "x.cloudfront.net.", RecordType::TXT, &loopback), "NODATA soa cloudfront.net.");
    assert_eq!(ask(&rules, "example.org.", RecordType::A, &loopback), "forward upstream (default)");

    // Two "networks" on loopback: each client gets the address it reached us on.
    let second = Client { local: Some(IpAddr::from([127, 0, 0, 2])), ..Client::udp(IpAddr::from([127, 0, 0, 2])) };
    assert_eq!(ask(&rules, "s3.amazonaws.com.", RecordType::A, &second), "127.0.0.2 ttl 60");
    let container = Client { local: Some(IpAddr::from([172, 18, 0, 2])), ..Client::udp(IpAddr::from([172, 18, 0, 9])) };
    assert_eq!(ask(&rules, "s3.amazonaws.com.", RecordType::A, &container), "172.18.0.2 ttl 60");
    // No IPv6 address to give: NODATA, never NXDOMAIN.
    assert_eq!(ask(&rules, "s3.amazonaws.com.", RecordType::AAAA, &container), "NODATA soa amazonaws.com.");
}

#[test]
fn local_name_patterns_and_upstream_patterns_together() {
    let rules = localstack(Some(".*(ecr|lambda).*.amazonaws.com"), &[r".*\.dkr\.ecr\.", "^api.ecr"]);
    let client = Client::udp(IpAddr::from([127, 0, 0, 1]));
    assert_eq!(ask(&rules, "lambda.us-east-1.amazonaws.com.", RecordType::A, &client), "127.0.0.1 ttl 60");
    assert_eq!(ask(&rules, "ecr.eu-west-1.amazonaws.com.", RecordType::A, &client), "127.0.0.1 ttl 60");
    assert_eq!(ask(&rules, "sqs.us-east-1.amazonaws.com.", RecordType::A, &client), "forward upstream (default)");
    assert_eq!(
        ask(&rules, "123.dkr.ecr.us-east-1.amazonaws.com.", RecordType::A, &client),
        "forward upstream (exception skip0)"
    );
    assert_eq!(
        ask(&rules, "api.ecr.us-east-1.amazonaws.com.", RecordType::A, &client),
        "forward upstream (exception skip1)"
    );
    // The filter does not apply to localhost.localstack.cloud.
    assert_eq!(ask(&rules, "localhost.localstack.cloud.", RecordType::A, &client), "127.0.0.1 ttl 60");
}

#[test]
fn fixed_addresses_and_the_nodata_soa_are_borrowed_from_the_rule_set() {
    let mut builder = RuleSet::builder();
    let redirect = Redirect {
        v4: AddressSource::Fixed(Ipv4Addr::new(10, 0, 0, 1)),
        v6: AddressSource::None,
        ttl: 5,
        ..Redirect::default()
    };
    builder.default_group("up").rule(RuleSpec::new(
        "r",
        Matcher::parse("*.emulator.test").unwrap(),
        Action::Redirect(redirect),
    ));
    let rules = builder.build().unwrap();
    let decision = rules.decide_name(
        &name("a.b.emulator.test."),
        RecordType::AAAA,
        Class::IN,
        &Client::udp(IpAddr::from([10, 9, 9, 9])),
    );
    let Decision::Local(local) = decision else { panic!() };
    assert!(matches!(local.authority, Cow::Borrowed(_)));
    let soa = &local.authority[0];
    assert_eq!(soa.ttl, 5);
    let RData::Soa(_) = RData::parse(RecordType::SOA, &soa.data.to_wire(), 0, soa.data.to_wire().len()).unwrap() else {
        panic!()
    };
    // The wildcard does not cover its own name.
    let own =
        rules.decide_name(&name("emulator.test."), RecordType::A, Class::IN, &Client::udp(IpAddr::from([10, 9, 9, 9])));
    assert_eq!(summary(&own), "forward up (default)");
}
