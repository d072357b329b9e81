//! One test per row of the precedence table in docs/rules.md, and the
//! Route 53 behaviours it is built on.

use std::net::IpAddr;

use signpost_rules::{Client, Decision};
use signpost_wire::{Class, RecordType};

use crate::support::{decide, name, rules, summary};

fn a(rules: &signpost_rules::RuleSet, text: &str) -> String {
    summary(&decide(rules, text, RecordType::A))
}

/// With the rules of `toml`, each name's A question is decided as expected.
fn decides(toml: &str, expected: &[(&str, &str)]) {
    let rules = rules(toml);
    for (name, decision) in expected {
        assert_eq!(a(&rules, name), *decision, "{name}");
    }
}

/// The rules of `full` minus the entries with these ids (one entry a line).
fn without(full: &str, ids: &[&str]) -> signpost_rules::RuleSet {
    let kept: Vec<&str> =
        full.lines().filter(|line| !ids.iter().any(|id| line.contains(&format!("id = \"{id}\"")))).collect();
    rules(&kept.join("\n"))
}

/// A ladder of five entries that all match names below `suffix`: an
/// exception `x-{id}` and a rule `{id}` matching `{kind} = pattern`, an
/// exception `x-suffix` and a rule `suffix` for the suffix, and a zone.
fn ladder(id: &str, kind: &str, pattern: &str, suffix: &str) -> String {
    format!(
        r#"
        default_group = "up"
        exceptions = [
            {{ id = "x-{id}", {kind} = "{pattern}", group = "g3" }},
            {{ id = "x-suffix", suffix = "{suffix}", group = "g3" }},
        ]
        rules = [
            {{ id = "{id}", {kind} = "{pattern}", action = "forward", group = "g1" }},
            {{ id = "suffix", suffix = "{suffix}", action = "forward", group = "g2" }},
        ]
        zones = [{{ name = "{suffix}" }}]
        "#
    )
}

/// Ask `name` with the whole ladder, then with its entries removed one more
/// at a time in order of precedence: each answer comes from the next entry,
/// the zone's (`zone_answer`) last.
fn climb_down(id: &str, kind: &str, pattern: &str, suffix: &str, name: &str, zone_answer: &str) {
    let full = ladder(id, kind, pattern, suffix);
    let order = [format!("x-{id}"), id.to_owned(), "x-suffix".to_owned(), "suffix".to_owned()];
    let expected = [
        format!("forward g3 (exception x-{id})"),
        format!("forward g1 (rule {id})"),
        "forward g3 (exception x-suffix)".to_owned(),
        "forward g2 (rule suffix)".to_owned(),
        zone_answer.to_owned(),
    ];
    for (removed, expected) in expected.iter().enumerate() {
        let ids: Vec<&str> = order.iter().take(removed).map(String::as_str).collect();
        assert_eq!(&a(&without(&full, &ids), name), expected, "without {ids:?}");
    }
}

#[test]
fn row_1_regex_exceptions_beat_everything_in_the_view() {
    decides(
        r#"
        default_group = "up"
        rules = [{ id = "exact", exact = "api.s3.example", action = "block" }]
        zones = [{ name = "zone.example" }]
        host_tables = [{ name = "t", hosts = [{ name = "host.s3.example", addresses = ["10.0.0.1"] }] }]
        exceptions = [
            { id = "skip", regex = '.*\.s3\.example', group = "g1" },
            { id = "skip-zone", regex = 'carved\.zone\.example' },
        ]
        "#,
        &[
            ("api.s3.example.", "forward g1 (exception skip)"),
            ("host.s3.example.", "forward g1 (exception skip)"),
            ("carved.zone.example.", "forward up (exception skip-zone)"),
            ("other.zone.example.", "local NXDOMAIN (zone zone.example.)"),
        ],
    );
}

#[test]
fn row_2_the_deepest_suffix_with_a_match_decides() {
    decides(
        r#"
        default_group = "up"
        rules = [
            { id = "shallow-exact-looking", suffix = "example", action = "forward", group = "g1" },
            { id = "deep", suffix = "b.example", action = "forward", group = "g2" },
        ]
        "#,
        &[
            ("a.b.example.", "forward g2 (rule deep)"),
            ("b.example.", "forward g2 (rule deep)"),
            ("c.example.", "forward g1 (rule shallow-exact-looking)"),
            ("example.org.", "forward up (default)"),
        ],
    );
}

#[test]
fn row_2a_order_at_the_whole_name() {
    climb_down("exact", "exact", "www.example", "www.example", "www.example.", "local NOERROR (zone www.example.)");
    // A host entry stands where an exact rule does.
    let host = rules(
        r#"
        default_group = "up"
        rules = [{ id = "suffix", suffix = "db.example", action = "forward", group = "g2" }]
        host_tables = [{ name = "t", hosts = [{ name = "db.example", addresses = ["10.0.0.9"] }] }]
        "#,
    );
    assert_eq!(a(&host, "db.example."), "local NOERROR (hosts t)");
    assert_eq!(a(&host, "x.db.example."), "forward g2 (rule suffix)");
}

#[test]
fn row_2b_order_at_an_ancestor() {
    climb_down("wild", "wildcard", "*.example", "example", "www.example.", "local NXDOMAIN (zone example.)");
    // The wildcard does not match its own name; the suffix does.
    let full = ladder("wild", "wildcard", "*.example", "example");
    assert_eq!(a(&without(&full, &["x-wild", "x-suffix"]), "example."), "forward g2 (rule suffix)");
    // Exact beats wildcard beats suffix, at their own depths.
    let mixed = rules(
        r#"
        default_group = "up"
        rules = [
            { exact = "www.example.com", action = "forward", group = "g1" },
            { wildcard = "*.example.com", action = "forward", group = "g2" },
            { suffix = "example.com", action = "forward", group = "g3" },
        ]
        "#,
    );
    assert_eq!(a(&mixed, "www.example.com."), "forward g1 (rule rules[0])");
    assert_eq!(a(&mixed, "x.www.example.com."), "forward g2 (rule rules[1])");
    assert_eq!(a(&mixed, "example.com."), "forward g3 (rule rules[2])");
}

#[test]
fn exceptions_carve_out_of_broader_rules_but_lose_to_more_specific_ones() {
    decides(
        r#"
        default_group = "up"
        rules = [
            { id = "aws", suffix = "amazonaws.com", action = "redirect", ipv4 = "127.0.0.1" },
            { id = "special", exact = "special.s3.amazonaws.com", action = "redirect", ipv4 = "127.0.0.2" },
        ]
        exceptions = [{ id = "s3", suffix = "s3.amazonaws.com" }]
        "#,
        &[
            ("sqs.amazonaws.com.", "local NOERROR (rule aws)"),
            ("bucket.s3.amazonaws.com.", "forward up (exception s3)"),
            ("s3.amazonaws.com.", "forward up (exception s3)"),
            ("special.s3.amazonaws.com.", "local NOERROR (rule special)"),
        ],
    );
}

#[test]
fn row_3_a_declining_rule_is_skipped() {
    let rules = rules(
        r#"
        default_group = "up"
        rules = [
            { id = "broad", suffix = "amazonaws.com", action = "forward", group = "g1" },
            { id = "only-lambda", suffix = "us-east-1.amazonaws.com", action = "redirect", ipv4 = "127.0.0.1", only_names_matching = 'lambda\.' },
        ]
        "#,
    );
    assert_eq!(a(&rules, "lambda.us-east-1.amazonaws.com."), "local NOERROR (rule only-lambda)");
    assert_eq!(a(&rules, "sqs.us-east-1.amazonaws.com."), "forward g1 (rule broad)");
    // A redirect asked another class declines too.
    let chaos = rules.decide_name(
        &name("lambda.us-east-1.amazonaws.com."),
        RecordType::TXT,
        Class::CH,
        &crate::support::client(),
    );
    assert_eq!(summary(&chaos), "forward g1 (rule broad)");
}

#[test]
fn row_4_a_transparent_zone_lets_missing_names_through() {
    let rules = rules(
        r#"
        default_group = "up"
        rules = [{ suffix = "example", action = "forward", group = "g1" }]
        zones = [{ name = "local.example", mode = "transparent", records = ["www A 10.0.0.1"] }]
        "#,
    );
    assert_eq!(a(&rules, "www.local.example."), "local NOERROR (zone local.example.)");
    let nodata = decide(&rules, "www.local.example.", RecordType::MX);
    let Decision::Local(local) = &nodata else { panic!("{nodata:?}") };
    assert!(local.is_nodata());
    assert_eq!(a(&rules, "other.local.example."), "forward g1 (rule rules[0])");
}

#[test]
fn row_5_a_system_rule_carves_out_of_a_forward_rule_but_zones_still_answer() {
    decides(
        r#"
        default_group = "up"
        rules = [
            { id = "fwd", suffix = "example.com", action = "forward", group = "corp" },
            { id = "sys", suffix = "sub.example.com", action = "system" },
            { id = "sys2", suffix = "zoned.example.com", action = "system" },
        ]
        zones = [
            { name = "zoned.example.com", records = ["www A 10.0.0.1"] },
            { name = "example" },
        ]
        "#,
        &[
            ("www.example.com.", "forward corp (rule fwd)"),
            ("www.sub.example.com.", "forward up (rule sys)"),
            ("www.zoned.example.com.", "local NOERROR (zone zoned.example.com.)"),
            ("nope.zoned.example.com.", "local NXDOMAIN (zone zoned.example.com.)"),
        ],
    );
}

#[test]
fn row_6_regex_rules_only_when_no_name_matcher_matches_first_declared_wins() {
    decides(
        r#"
        default_group = "up"
        rules = [
            { id = "corp", suffix = "corp.example", action = "forward", group = "corp" },
            { id = "ads", regex = 'ads\d*\..*', action = "block", block = "nxdomain" },
            { id = "any-example", regex = '.*\.example', action = "forward", group = "g1" },
        ]
        "#,
        &[
            ("ads1.corp.example.", "forward corp (rule corp)"),
            ("ads1.shop.example.", "block NxDomain (rule ads)"),
            ("www.shop.example.", "forward g1 (rule any-example)"),
            ("www.shop.example.org.", "forward up (default)"),
        ],
    );
}

#[test]
fn row_7_the_default_group_or_refused() {
    let with_default = rules("default_group = \"up\"\n");
    assert_eq!(a(&with_default, "anything."), "forward up (default)");
    let without = rules("");
    assert_eq!(a(&without, "anything."), "block Refused (default)");
    let view_default = rules("default_group = \"up\"\n[[views]]\nname = \"default\"\ndefault_group = \"g2\"\n");
    assert_eq!(a(&view_default, "anything."), "forward g2 (default)");
    assert_eq!(view_default.default_group(), Some("up"));
}

#[test]
fn route53_a_rule_beats_a_zone_for_the_same_domain() {
    decides(
        r#"
        default_group = "up"
        rules = [{ id = "onprem", suffix = "example.com", action = "forward", targets = ["192.0.2.1"] }]
        zones = [{ name = "example.com", records = ["www A 10.0.0.1"] }]
        "#,
        &[("www.example.com.", "forward onprem (rule onprem)"), ("example.com.", "forward onprem (rule onprem)")],
    );
}

#[test]
fn route53_most_specific_wins_between_rules_and_zones() {
    let rules = rules(
        r#"
        default_group = "up"
        rules = [
            { id = "corp", suffix = "corp.example", action = "forward", group = "corp" },
            { id = "onprem", suffix = "onprem.lab.example", action = "forward", group = "g1" },
        ]
        zones = [
            { name = "dev.corp.example", records = ["api A 10.9.0.1"] },
            { name = "lab.example" },
        ]
        "#,
    );
    assert_eq!(a(&rules, "api.dev.corp.example."), "local NOERROR (zone dev.corp.example.)");
    assert_eq!(a(&rules, "missing.dev.corp.example."), "local NXDOMAIN (zone dev.corp.example.)");
    assert_eq!(a(&rules, "git.corp.example."), "forward corp (rule corp)");
    assert_eq!(a(&rules, "host.onprem.lab.example."), "forward g1 (rule onprem)");
    // The private zone shadows the public namespace: not forwarded.
    assert_eq!(a(&rules, "missing.lab.example."), "local NXDOMAIN (zone lab.example.)");
}

#[test]
fn route53_overlapping_private_zones_most_specific_wins() {
    let rules = rules(
        r#"
        default_group = "up"
        zones = [
            { name = "example.com", records = ["seattle.accounting A 10.0.0.1"] },
            { name = "accounting.example.com", records = ["www A 10.0.0.2"] },
        ]
        "#,
    );
    // seattle.accounting.example.com exists only in the broader zone, but the
    // more specific zone is the one searched: NXDOMAIN.
    assert_eq!(a(&rules, "seattle.accounting.example.com."), "local NXDOMAIN (zone accounting.example.com.)");
    assert_eq!(a(&rules, "www.accounting.example.com."), "local NOERROR (zone accounting.example.com.)");
}

#[test]
fn zones_are_visible_only_in_their_views() {
    let rules = rules(
        r#"
        default_group = "up"
        views = [
            { name = "vpc-a", cidrs = ["10.1.0.0/16"] },
            { name = "vpc-b", cidrs = ["10.2.0.0/16"], listeners = ["inbound-b"] },
        ]
        zones = [
            { name = "private.example", records = ["db A 10.1.0.5"], views = ["vpc-a"] },
            { id = "split-b", name = "private.example", records = ["db A 10.2.0.5"], views = ["vpc-b"] },
        ]
        "#,
    );
    let ask = |source: [u8; 4], listener: Option<&str>| {
        let client = Client { listener: listener.map(Into::into), ..Client::udp(IpAddr::from(source)) };
        summary(&rules.decide_name(&name("db.private.example."), RecordType::A, Class::IN, &client))
            + &crate::support::answer_lines(&rules.decide_name(
                &name("db.private.example."),
                RecordType::A,
                Class::IN,
                &client,
            ))
            .join(",")
    };
    assert_eq!(ask([10, 1, 3, 4], None), "local NOERROR (zone private.example.)db.private.example. 3600 IN A 10.1.0.5");
    assert_eq!(ask([10, 2, 3, 4], None), "local NOERROR (zone private.example.)db.private.example. 3600 IN A 10.2.0.5");
    // An on-premises client through vpc-b's inbound endpoint sees vpc-b's zone.
    assert_eq!(
        ask([192, 0, 2, 1], Some("inbound-b")),
        "local NOERROR (zone private.example.)db.private.example. 3600 IN A 10.2.0.5"
    );
    let outside = Client::udp(IpAddr::from([192, 0, 2, 1]));
    let decision = rules.decide_name(&name("db.private.example."), RecordType::A, Class::IN, &outside);
    assert_eq!(summary(&decision), "forward up (default)");
}
