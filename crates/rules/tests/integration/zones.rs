//! Zones from real master files: the ones unbound served for the wire
//! vectors, and tests/data/zones with $INCLUDE.

use std::borrow::Cow;

use signpost_rules::{Decision, Error, RuleSet, Source, Zone, ZoneSpec};
use signpost_wire::RecordType;

use crate::support::{answer_lines, decide, name, rules, summary, temp_dir, wire_vectors, write};

/// example.zone minus the three records in types signpost-wire reads only
/// in RFC 3597 form (DS, DNSKEY, TLSA): their lines would be errors.
fn example_zone_text() -> String {
    let text = std::fs::read_to_string(wire_vectors().join("example.zone")).expect("vector");
    text.lines()
        .filter(|line| !line.contains(" IN DS ") && !line.contains(" IN DNSKEY ") && !line.contains(" IN TLSA "))
        .map(|line| format!("{line}\n"))
        .collect()
}

fn example_rules() -> RuleSet {
    let zone = Zone::parse_master_file(&example_zone_text(), &name("example."), Source::memory()).expect("loads");
    let com = Zone::load(&wire_vectors().join("example.com.zone"), &name("example.com.")).expect("loads");
    let mut builder = RuleSet::builder();
    builder.default_group("up").zone(ZoneSpec::new(zone)).zone(ZoneSpec::new(com));
    builder.build().expect("valid")
}

#[test]
fn types_without_presentation_support_are_errors_naming_their_line() {
    let path = wire_vectors().join("example.zone");
    let error = Zone::load(&path, &name("example.")).expect_err("DS is only readable as \\#");
    let text = std::fs::read_to_string(&path).expect("vector");
    let (index, line) =
        text.lines().enumerate().find(|(_, line)| line.starts_with("sec") && line.contains(" DS ")).expect("DS");
    assert!(matches!(error, Error::ZoneSyntax { .. }), "{error}");
    assert_eq!(error.location().file.as_deref(), Some(path.as_path()));
    assert_eq!(error.location().line, Some(index + 1));
    // The column of the first RDATA field.
    assert_eq!(error.location().column, line.find("12345").map(|column| column + 1));
}

#[test]
fn answers_from_the_unbound_vector_zones() {
    let rules = example_rules();
    let www = decide(&rules, "www.example.", RecordType::A);
    let Decision::Local(local) = &www else { panic!("{www:?}") };
    assert!(local.authoritative);
    let signpost_rules::Answer::Records(records) = &local.answer else { panic!() };
    assert!(matches!(records, Cow::Borrowed(_)), "an RRset as stored is not copied");
    assert_eq!(answer_lines(&www), ["www.example. 3600 IN A 192.0.2.80", "www.example. 3600 IN A 192.0.2.81"]);

    // The CNAME chain of the vectors, followed inside the zone.
    assert_eq!(
        answer_lines(&decide(&rules, "chain.example.", RecordType::A)),
        [
            "chain.example. 3600 IN CNAME chain2.example.",
            "chain2.example. 3600 IN CNAME chain3.sub.example.",
            "chain3.sub.example. 3600 IN CNAME www.example.",
            "www.example. 3600 IN A 192.0.2.80",
            "www.example. 3600 IN A 192.0.2.81",
        ]
    );
    // Asked for the CNAME itself: no chase.
    assert_eq!(
        answer_lines(&decide(&rules, "chain.example.", RecordType::CNAME)),
        ["chain.example. 3600 IN CNAME chain2.example."]
    );
    // DNAME: the DNAME, a synthesised CNAME, then the target.
    assert_eq!(
        answer_lines(&decide(&rules, "host.dn.example.", RecordType::A)),
        [
            "dn.example. 3600 IN DNAME target.example.",
            "host.dn.example. 3600 IN CNAME host.target.example.",
            "host.target.example. 3600 IN A 192.0.2.99",
        ]
    );
    // The "typical" response of example.com.zone: CNAME and three A.
    let lines = answer_lines(&decide(&rules, "www.example.com.", RecordType::A));
    assert_eq!(lines.len(), 4);
    assert!(lines[0].contains("CNAME www-example-com.edge-frontend"));
    // Escaped and unknown-type owners.
    assert_eq!(answer_lines(&decide(&rules, "a\\.b.example.", RecordType::A)), ["a\\.b.example. 3600 IN A 192.0.2.10"]);
    assert_eq!(
        answer_lines(&decide(&rules, "priv.example.", RecordType(65280))),
        ["priv.example. 3600 IN TYPE65280 \\# 6 010203ff00fe"]
    );
    // Negative answers: the SOA with TTL min(3600, 300).
    let nx = decide(&rules, "nothere.example.", RecordType::A);
    let Decision::Local(local) = &nx else { panic!() };
    assert_eq!(local.rcode, signpost_wire::Rcode::NXDOMAIN);
    assert_eq!(local.authority[0].ttl, 300);
    assert_eq!(local.authority[0].rtype(), RecordType::SOA);
    let nodata = decide(&rules, "www.example.", RecordType::TXT);
    let Decision::Local(local) = &nodata else { panic!() };
    assert!(local.is_nodata());
    assert_eq!(local.authority[0].ttl, 300);
    // chain3.sub exists, so sub.example. is an empty non-terminal: NODATA.
    let Decision::Local(local) = decide(&rules, "sub.example.", RecordType::A) else { panic!() };
    assert!(local.is_nodata());
}

#[test]
fn include_origin_wildcard_cname_and_referral_from_tests_data() {
    let rules =
        rules("default_group = \"up\"\n[[zones]]\nname = \"corp.example\"\nfile = \"zones/corp.example.zone\"\n");
    assert_eq!(
        answer_lines(&decide(&rules, "db.svc.corp.example.", RecordType::A)),
        ["db.svc.corp.example. 300 IN A 10.0.3.10"]
    );
    assert_eq!(
        answer_lines(&decide(&rules, "svc.corp.example.", RecordType::TXT)),
        ["svc.corp.example. 300 IN TXT \"services live here\""]
    );
    assert_eq!(
        answer_lines(&decide(&rules, "git.corp.example.", RecordType::AAAA)),
        ["git.corp.example. 300 IN CNAME www.corp.example.", "www.corp.example. 300 IN AAAA fd00::80"]
    );
    assert_eq!(
        answer_lines(&decide(&rules, "Shop.Apps.corp.example.", RecordType::A)),
        ["Shop.Apps.corp.example. 300 IN A 10.0.1.1"]
    );
    let referral = decide(&rules, "host.lab.corp.example.", RecordType::A);
    let Decision::Local(local) = &referral else { panic!() };
    assert!(!local.authoritative && local.answer.is_empty());
    assert_eq!(local.authority[0].to_string(), "lab.corp.example. 300 IN NS ns.lab.corp.example.");
    assert_eq!(local.additional[0].to_string(), "ns.lab.corp.example. 300 IN A 10.0.2.53");
}

#[test]
fn cname_chains_cross_zones_and_stop_where_the_target_is_forwarded() {
    let rules = rules(
        r#"
        default_group = "up"
        [[zones]]
        name = "a.example"
        records = ["to-b CNAME www.b.example.", "out CNAME www.elsewhere.", "loop CNAME loop2", "loop2 CNAME loop", "gone CNAME nope.b.example."]
        [[zones]]
        name = "b.example"
        records = ["www A 10.0.0.2"]
        [[host_tables]]
        name = "t"
        hosts = [{ name = "host.example", addresses = ["10.0.0.3"] }]
        [[zones]]
        name = "c.example"
        records = ["to-host CNAME host.example."]
        "#,
    );
    assert_eq!(
        answer_lines(&decide(&rules, "to-b.a.example.", RecordType::A)),
        ["to-b.a.example. 3600 IN CNAME www.b.example.", "www.b.example. 3600 IN A 10.0.0.2"]
    );
    assert_eq!(
        answer_lines(&decide(&rules, "to-host.c.example.", RecordType::A)),
        ["to-host.c.example. 3600 IN CNAME host.example.", "host.example. 60 IN A 10.0.0.3"]
    );
    let out = decide(&rules, "out.a.example.", RecordType::A);
    assert_eq!(summary(&out), "local NOERROR (zone a.example.)");
    assert_eq!(answer_lines(&out), ["out.a.example. 3600 IN CNAME www.elsewhere."]);
    assert_eq!(answer_lines(&decide(&rules, "loop.a.example.", RecordType::A)).len(), 2);
    // The chain ends at a name that does not exist: NXDOMAIN with the last zone's SOA (RFC 6604).
    let gone = decide(&rules, "gone.a.example.", RecordType::A);
    let Decision::Local(local) = &gone else { panic!() };
    assert_eq!(local.rcode, signpost_wire::Rcode::NXDOMAIN);
    assert_eq!(local.authority[0].name, name("b.example."));
}

#[test]
fn include_depth_is_limited_and_errors_point_into_the_included_file() {
    let temp = temp_dir("include");
    let dir = temp.path();
    write(dir, "loop.zone", "$TTL 60\n@ SOA ns host 1 2 3 4 5\n$INCLUDE loop.zone\n");
    let error = Zone::load(&dir.join("loop.zone"), &name("example.")).expect_err("loops");
    assert!(matches!(error, Error::IncludeDepth { limit: 8, .. }), "{error}");
    assert_eq!(error.location().line, Some(3));

    write(dir, "main.zone", "$TTL 60\n@ SOA ns host 1 2 3 4 5\n$INCLUDE sub/part.zone part\n");
    write(dir, "sub/part.zone", "; included\nwww A 192.0.2.1\nbad A 192.0.2.999\n");
    let error = Zone::load(&dir.join("main.zone"), &name("example.")).expect_err("bad address");
    assert_eq!(error.location().file.as_deref(), Some(dir.join("sub/part.zone").as_path()));
    assert_eq!((error.location().line, error.location().column), (Some(3), Some(7)));

    write(dir, "sub/part.zone", "www A 192.0.2.1\n");
    let zone = Zone::load(&dir.join("main.zone"), &name("example.")).expect("valid");
    assert_eq!(zone.rrset(&name("www.part.example."), RecordType::A).len(), 1);
    let missing = Zone::load(&dir.join("absent.zone"), &name("example.")).expect_err("missing");
    assert!(matches!(missing, Error::Io { .. }));
}

#[test]
fn zones_write_out_as_master_files_and_axfr_streams() {
    let zone = Zone::parse_master_file(&example_zone_text(), &name("example."), Source::memory()).expect("loads");
    let text = zone.to_master_file();
    let again = Zone::parse_master_file(&text, &name("example."), Source::memory()).expect("reads back");
    assert_eq!(again, zone);
    let axfr: Vec<_> = zone.axfr().collect();
    assert_eq!(axfr.len(), zone.len() + 1);
    assert_eq!(axfr[0].rtype(), RecordType::SOA);
    assert_eq!(axfr.last().map(|r| r.rtype()), Some(RecordType::SOA));
    assert!(axfr[1..axfr.len() - 1].iter().all(|record| record.rtype() != RecordType::SOA));
    let com = Zone::load(&wire_vectors().join("example.com.zone"), &name("example.com.")).expect("loads");
    let temp = temp_dir("write");
    let dir = temp.path();
    let path = write(dir, "out.zone", &com.to_master_file());
    assert_eq!(Zone::load(&path, com.apex()).expect("reads back"), com);
}
