//! One test per row of the precedence table in docs/rules.md, and the
//! Route 53 behaviours it is built on.

use std::net::IpAddr;

use signpost_rules::{Client, Decision};
use signpost_wire::{Class, RecordType};

use crate::support::{decide, name, rules, summary};

fn a(rules: &signpost_rules::RuleSet, text: &str) -> String {
    summary(&decide(rules, text, RecordType::A))
}

/// The rules of `full` minus the entries with these ids (each entry is a
/// TOML table starting with `[[`).
fn without(full: &str, ids: &[&str]) -> signpost_rules::RuleSet {
    let mut kept = String::new();
    for table in full.split("[[").skip(1) {
        if !ids.iter().any(|id| table.contains(&format!("id = \"{id}\""))) {
            kept.push_str("[[");
            kept.push_str(table);
        }
    }
    rules(&format!("default_group = \"up\"\n{kept}"))
}

#[test]
fn row_1_regex_exceptions_beat_everything_in_the_view() {
    let rules = rules(
        r#"
        default_group = "up"
        [[rules]]
        id = "exact"
        exact = "api.s3.example"
        action = "block"
        [[zones]]
        name = "zone.example"
        [[host_tables]]
        name = "t"
        hosts = [{ name = "host.s3.example", addresses = ["10.0.0.1"] }]
        [[exceptions]]
        id = "skip"
        regex = '.*\.s3\.example'
        group = "g1"
        [[exceptions]]
        id = "skip-zone"
        regex = 'carved\.zone\.example'
        "#,
    );
    assert_eq!(a(&rules, "api.s3.example."), "forward g1 (exception skip)");
    assert_eq!(a(&rules, "host.s3.example."), "forward g1 (exception skip)");
    assert_eq!(a(&rules, "carved.zone.example."), "forward up (exception skip-zone)");
    assert_eq!(a(&rules, "other.zone.example."), "local NXDOMAIN (zone zone.example.)");
}

#[test]
fn row_2_the_deepest_suffix_with_a_match_decides() {
    let rules = rules(
        r#"
        default_group = "up"
        [[rules]]
        id = "shallow-exact-looking"
        suffix = "example"
        action = "forward"
        group = "g1"
        [[rules]]
        id = "deep"
        suffix = "b.example"
        action = "forward"
        group = "g2"
        "#,
    );
    assert_eq!(a(&rules, "a.b.example."), "forward g2 (rule deep)");
    assert_eq!(a(&rules, "b.example."), "forward g2 (rule deep)");
    assert_eq!(a(&rules, "c.example."), "forward g1 (rule shallow-exact-looking)");
    assert_eq!(a(&rules, "example.org."), "forward up (default)");
}

#[test]
fn row_2a_order_at_the_whole_name() {
    let full = r#"
        default_group = "up"
        [[exceptions]]
        id = "x-exact"
        exact = "www.example"
        group = "g3"
        [[rules]]
        id = "exact"
        exact = "www.example"
        action = "forward"
        group = "g1"
        [[exceptions]]
        id = "x-suffix"
        suffix = "www.example"
        group = "g3"
        [[rules]]
        id = "suffix"
        suffix = "www.example"
        action = "forward"
        group = "g2"
        [[zones]]
        name = "www.example"
        "#;
    assert_eq!(a(&rules(full), "www.example."), "forward g3 (exception x-exact)");
    let without = |ids: &[&str]| without(full, ids);
    assert_eq!(a(&without(&["x-exact"]), "www.example."), "forward g1 (rule exact)");
    assert_eq!(a(&without(&["x-exact", "exact"]), "www.example."), "forward g3 (exception x-suffix)");
    assert_eq!(a(&without(&["x-exact", "exact", "x-suffix"]), "www.example."), "forward g2 (rule suffix)");
    let zone_only = without(&["x-exact", "exact", "x-suffix", "suffix"]);
    assert_eq!(a(&zone_only, "www.example."), "local NOERROR (zone www.example.)");
    // A host entry stands where an exact rule does.
    let host = rules(
        r#"
        default_group = "up"
        [[rules]]
        id = "suffix"
        suffix = "db.example"
        action = "forward"
        group = "g2"
        [[host_tables]]
        name = "t"
        hosts = [{ name = "db.example", addresses = ["10.0.0.9"] }]
        "#,
    );
    assert_eq!(a(&host, "db.example."), "local NOERROR (hosts t)");
    assert_eq!(a(&host, "x.db.example."), "forward g2 (rule suffix)");
}

#[test]
fn row_2b_order_at_an_ancestor() {
    let full = r#"
        default_group = "up"
        [[exceptions]]
        id = "x-wild"
        wildcard = "*.example"
        group = "g3"
        [[rules]]
        id = "wild"
        wildcard = "*.example"
        action = "forward"
        group = "g1"
        [[exceptions]]
        id = "x-suffix"
        suffix = "example"
        group = "g3"
        [[rules]]
        id = "suffix"
        suffix = "example"
        action = "forward"
        group = "g2"
        [[zones]]
        name = "example"
        "#;
    let without = |ids: &[&str]| without(full, ids);
    assert_eq!(a(&without(&[]), "www.example."), "forward g3 (exception x-wild)");
    assert_eq!(a(&without(&["x-wild"]), "www.example."), "forward g1 (rule wild)");
    assert_eq!(a(&without(&["x-wild", "wild"]), "www.example."), "forward g3 (exception x-suffix)");
    assert_eq!(a(&without(&["x-wild", "wild", "x-suffix"]), "www.example."), "forward g2 (rule suffix)");
    let zone_only = without(&["x-wild", "wild", "x-suffix", "suffix"]);
    assert_eq!(a(&zone_only, "www.example."), "local NXDOMAIN (zone example.)");
    // The wildcard does not match its own name; the suffix does.
    assert_eq!(a(&without(&["x-wild", "x-suffix"]), "example."), "forward g2 (rule suffix)");
    // Exact beats wildcard beats suffix, at their own depths.
    let mixed = rules(
        r#"
        default_group = "up"
        [[rules]]
        exact = "www.example.com"
        action = "forward"
        group = "g1"
        [[rules]]
        wildcard = "*.example.com"
        action = "forward"
        group = "g2"
        [[rules]]
        suffix = "example.com"
        action = "forward"
        group = "g3"
        "#,
    );
    assert_eq!(a(&mixed, "www.example.com."), "forward g1 (rule rules[0])");
    assert_eq!(a(&mixed, "x.www.example.com."), "forward g2 (rule rules[1])");
    assert_eq!(a(&mixed, "example.com."), "forward g3 (rule rules[2])");
}

#[test]
fn exceptions_carve_out_of_broader_rules_but_lose_to_more_specific_ones() {
    let rules = rules(
        r#"
        default_group = "up"
        [[rules]]
        id = "aws"
        suffix = "amazonaws.com"
        action = "redirect"
        ipv4 = "127.0.0.1"
        [[exceptions]]
        id = "s3"
        suffix = "s3.amazonaws.com"
        [[rules]]
        id = "special"
        exact = "special.s3.amazonaws.com"
        action = "redirect"
        ipv4 = "127.0.0.2"
        "#,
    );
    assert_eq!(a(&rules, "sqs.amazonaws.com."), "local NOERROR (rule aws)");
    assert_eq!(a(&rules, "bucket.s3.amazonaws.com."), "forward up (exception s3)");
    assert_eq!(a(&rules, "s3.amazonaws.com."), "forward up (exception s3)");
    assert_eq!(a(&rules, "special.s3.amazonaws.com."), "local NOERROR (rule special)");
}

#[test]
fn row_3_a_declining_rule_is_skipped() {
    let rules = rules(
        r#"
        default_group = "up"
        [[rules]]
        id = "broad"
        suffix = "amazonaws.com"
        action = "forward"
        group = "g1"
        [[rules]]
        id = "only-lambda"
        suffix = "us-east-1.amazonaws.com"
        action = "redirect"
        ipv4 = "127.0.0.1"
        only_names_matching = 'lambda\.'
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
        [[rules]]
        suffix = "example"
        action = "forward"
        group = "g1"
        [[zones]]
        name = "local.example"
        mode = "transparent"
        records = ["www A 10.0.0.1"]
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
    let rules = rules(
        r#"
        default_group = "up"
        [[rules]]
        id = "fwd"
        suffix = "example.com"
        action = "forward"
        group = "corp"
        [[rules]]
        id = "sys"
        suffix = "sub.example.com"
        action = "system"
        [[rules]]
        id = "sys2"
        suffix = "zoned.example.com"
        action = "system"
        [[zones]]
        name = "zoned.example.com"
        records = ["www A 10.0.0.1"]
        [[zones]]
        name = "example"
        "#,
    );
    assert_eq!(a(&rules, "www.example.com."), "forward corp (rule fwd)");
    assert_eq!(a(&rules, "www.sub.example.com."), "forward up (rule sys)");
    assert_eq!(a(&rules, "www.zoned.example.com."), "local NOERROR (zone zoned.example.com.)");
    assert_eq!(a(&rules, "nope.zoned.example.com."), "local NXDOMAIN (zone zoned.example.com.)");
}

#[test]
fn row_6_regex_rules_only_when_no_name_matcher_matches_first_declared_wins() {
    let rules = rules(
        r#"
        default_group = "up"
        [[rules]]
        id = "corp"
        suffix = "corp.example"
        action = "forward"
        group = "corp"
        [[rules]]
        id = "ads"
        regex = 'ads\d*\..*'
        action = "block"
        block = "nxdomain"
        [[rules]]
        id = "any-example"
        regex = '.*\.example'
        action = "forward"
        group = "g1"
        "#,
    );
    assert_eq!(a(&rules, "ads1.corp.example."), "forward corp (rule corp)");
    assert_eq!(a(&rules, "ads1.shop.example."), "block NxDomain (rule ads)");
    assert_eq!(a(&rules, "www.shop.example."), "forward g1 (rule any-example)");
    assert_eq!(a(&rules, "www.shop.example.org."), "forward up (default)");
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
    let rules = rules(
        r#"
        default_group = "up"
        [[rules]]
        id = "onprem"
        suffix = "example.com"
        action = "forward"
        targets = ["192.0.2.1"]
        [[zones]]
        name = "example.com"
        records = ["www A 10.0.0.1"]
        "#,
    );
    assert_eq!(a(&rules, "www.example.com."), "forward onprem (rule onprem)");
    assert_eq!(a(&rules, "example.com."), "forward onprem (rule onprem)");
}

#[test]
fn route53_most_specific_wins_between_rules_and_zones() {
    let rules = rules(
        r#"
        default_group = "up"
        [[rules]]
        id = "corp"
        suffix = "corp.example"
        action = "forward"
        group = "corp"
        [[zones]]
        name = "dev.corp.example"
        records = ["api A 10.9.0.1"]
        [[zones]]
        name = "lab.example"
        [[rules]]
        id = "onprem"
        suffix = "onprem.lab.example"
        action = "forward"
        group = "g1"
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
        [[zones]]
        name = "example.com"
        records = ["seattle.accounting A 10.0.0.1"]
        [[zones]]
        name = "accounting.example.com"
        records = ["www A 10.0.0.2"]
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
        [[views]]
        name = "vpc-a"
        cidrs = ["10.1.0.0/16"]
        [[views]]
        name = "vpc-b"
        cidrs = ["10.2.0.0/16"]
        listeners = ["inbound-b"]
        [[zones]]
        name = "private.example"
        records = ["db A 10.1.0.5"]
        views = ["vpc-a"]
        [[zones]]
        id = "split-b"
        name = "private.example"
        records = ["db A 10.2.0.5"]
        views = ["vpc-b"]
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
