//! The programmatic API: add, change and delete records, zones, rules and
//! host entries, each producing a new RuleSet while the old one keeps serving.

use std::net::IpAddr;

use signpost_rules::{
    Action, BlockAction, Error, ExceptionSpec, HostEntry, HostTableSpec, Matcher, RuleSet, RuleSpec, Zone, ZoneChange,
    ZoneSpec, zone_id_matches,
};
use signpost_wire::{RecordBuf, RecordType};

use crate::support::{answer_lines, decide, name, summary};

fn record(text: &str) -> RecordBuf {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn records_and_zones_change_in_new_rule_sets() {
    let mut builder = RuleSet::builder();
    builder.default_group("up").zone(ZoneSpec { id: "Z1".into(), ..ZoneSpec::new(Zone::new(name("corp.example."))) });
    let first = builder.build().expect("valid");
    assert_eq!(summary(&decide(&first, "db.corp.example.", RecordType::A)), "local NXDOMAIN (zone corp.example.)");

    let mut next = first.to_builder();
    next.change_zone("Z1", [ZoneChange::Add(record("db.corp.example. 60 A 10.0.0.1"))]).expect("valid change");
    let second = next.build().expect("valid");
    assert_eq!(
        answer_lines(&decide(&second, "db.corp.example.", RecordType::A)),
        ["db.corp.example. 60 IN A 10.0.0.1"]
    );
    // The first rule set is untouched.
    assert_eq!(summary(&decide(&first, "db.corp.example.", RecordType::A)), "local NXDOMAIN (zone corp.example.)");

    next.change_zone(
        "Z1",
        [
            ZoneChange::Upsert(vec![
                record("db.corp.example. 30 A 10.0.0.2"),
                record("db.corp.example. 30 A 10.0.0.3"),
            ]),
            ZoneChange::Add(record("www.corp.example. 30 CNAME db.corp.example.")),
        ],
    )
    .expect("valid change");
    let third = next.build().expect("valid");
    assert_eq!(answer_lines(&decide(&third, "www.corp.example.", RecordType::A)).len(), 3);

    // All or nothing: a bad change leaves the zone as it was.
    let bad = next.change_zone(
        "Z1",
        [ZoneChange::DeleteName(name("www.corp.example.")), ZoneChange::Add(record("x.other.example. 1 A 10.0.0.9"))],
    );
    assert!(matches!(bad, Err(Error::OutOfZone { .. })));
    assert_eq!(next.build().expect("valid").zone("Z1").expect("zone").len(), third.zone("Z1").expect("zone").len());
    let unknown = next.change_zone("nope", []).expect_err("no such zone");
    assert!(matches!(&unknown, Error::NoSuchZone { known, .. } if known == &["Z1"]), "{unknown}");
    assert!(unknown.to_string().contains("\"Z1\""), "the error lists the ids there are: {unknown}");

    // Whole zones come and go.
    next.zone(ZoneSpec::new(
        Zone::from_records(name("lab.example."), [record("a.lab.example. 5 A 10.1.0.1")]).expect("zone"),
    ));
    let fourth = next.build().expect("valid");
    assert_eq!(answer_lines(&decide(&fourth, "a.lab.example.", RecordType::A)), ["a.lab.example. 5 IN A 10.1.0.1"]);
    // A zone's id is its apex with the final dot; it is found as written either way.
    for id in ["lab.example", "lab.example.", "Lab.Example"] {
        assert!(fourth.zone(id).is_some(), "{id}");
    }
    next.change_zone("lab.example", [ZoneChange::Add(record("b.lab.example. 5 A 10.1.0.2"))]).expect("found");
    assert!(zone_id_matches("lab.example.", "LAB.example") && !zone_id_matches("lab.example.", "example"));
    assert!(next.remove_zone("LAB.example"), "found as written");
    assert!(!next.remove_zone("lab.example."), "and gone");
    assert!(next.remove_zone("Z1"));
    let fifth = next.build().expect("valid");
    assert_eq!(summary(&decide(&fifth, "db.corp.example.", RecordType::A)), "forward up (default)");
}

#[test]
fn rules_exceptions_and_host_entries_change_too() {
    let mut builder = RuleSet::builder();
    builder
        .default_group("up")
        .rule(RuleSpec::new("block", Matcher::parse("ads.example").unwrap(), Action::Block(BlockAction::Refused)))
        .host_table(HostTableSpec::new("admin", vec![]));
    let rules = builder.build().expect("valid");
    assert_eq!(summary(&decide(&rules, "x.ads.example.", RecordType::A)), "block Refused (rule block)");

    let mut next = rules.to_builder();
    next.exception(ExceptionSpec::new("allow", Matcher::parse("=ok.ads.example").unwrap()));
    next.host_table_mut("admin")
        .expect("table")
        .entries
        .push(HostEntry::new(name("svc.local."), [IpAddr::from([10, 0, 0, 7])]));
    next.rule_mut("block").expect("rule").action = Action::Block(BlockAction::NxDomain);
    let changed = next.build().expect("valid");
    assert_eq!(summary(&decide(&changed, "x.ads.example.", RecordType::A)), "block NxDomain (rule block)");
    assert_eq!(summary(&decide(&changed, "ok.ads.example.", RecordType::A)), "forward up (exception allow)");
    assert_eq!(answer_lines(&decide(&changed, "svc.local.", RecordType::A)), ["<question> 60 10.0.0.7"]);

    assert!(next.remove_exception("allow") && next.remove_rule("block") && next.remove_host_table("admin"));
    assert!(!next.remove_rule("block"));
    let empty = next.build().expect("valid");
    assert_eq!(summary(&decide(&empty, "x.ads.example.", RecordType::A)), "forward up (default)");
}

#[test]
fn describe_lists_what_goes_where() {
    let mut builder = RuleSet::builder();
    builder
        .default_group("up")
        .rule(RuleSpec::new(
            "corp",
            Matcher::parse("corp.example").unwrap(),
            Action::Forward { group: "corp".into(), forward_first: true },
        ))
        .exception(ExceptionSpec::new("skip", Matcher::parse("/skip.*/").unwrap()))
        .zone(ZoneSpec::new(Zone::new(name("lab.example."))));
    let text = builder.build().expect("valid").describe();
    assert!(text.contains("view default (default group up)"), "{text}");
    assert!(text.contains("corp.example -> forward corp (forward-first) [rule corp]"), "{text}");
    assert!(text.contains("lab.example. -> zone (authoritative, 1 records)"), "{text}");
    assert!(text.contains("/skip.*/ -> exception: forward the default group [exception skip]"), "{text}");
}
