//! Configuration files: the example in docs/rules.md, and errors that name
//! file, line and field.

use std::net::IpAddr;
use std::path::Path;

use signpost_rules::config::RulesConfig;
use signpost_rules::{Client, Decision, Error, RuleSet};
use signpost_wire::{Class, RecordType};

use crate::support::{answer_lines, data_dir, name, summary, temp_dir, write};

/// The first ```toml block of docs/rules.md.
fn docs_example() -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/rules.md")).expect("docs");
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("closed");
    doc[start..end].to_owned()
}

#[test]
fn the_documented_example_loads_and_behaves_as_documented() {
    let config = RulesConfig::from_toml(&docs_example(), "docs/rules.md").unwrap_or_else(|e| panic!("{e}"));
    let rules = RuleSet::from_config(&config, &data_dir(), &["upstream", "corp"]).unwrap_or_else(|e| panic!("{e}"));
    let groups = config.implied_groups().expect("valid");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].name, "onprem");
    assert_eq!(config.system_nameservers().expect("valid"), ["10.0.0.2:53".parse().unwrap()]);

    let loopback = Client::udp(IpAddr::from([127, 0, 0, 1]));
    let ask = |text: &str, qtype, client: &Client| summary(&rules.decide_name(&name(text), qtype, Class::IN, client));
    assert_eq!(ask("api.ecr.us-east-1.amazonaws.com.", RecordType::A, &loopback), "local NOERROR (rule aws)");
    assert_eq!(ask("sqs.us-east-1.amazonaws.com.", RecordType::A, &loopback), "forward upstream (default)");
    assert_eq!(ask("lambda.s3.amazonaws.com.", RecordType::A, &loopback), "forward upstream (exception exceptions[0])");
    assert_eq!(ask("d111.cloudfront.net.", RecordType::A, &loopback), "forward upstream (exception exceptions[1])");
    assert_eq!(ask("host.onprem.example.", RecordType::A, &loopback), "forward onprem (rule onprem)");
    assert_eq!(ask("git.corp.example.", RecordType::A, &loopback), "local NOERROR (zone corp.example.)");
    assert_eq!(ask("www.partner.example.", RecordType::A, &loopback), "forward corp (rule rules[2])");
    assert_eq!(ask("missing.corp.example.", RecordType::A, &loopback), "local NXDOMAIN (zone corp.example.)");
    assert_eq!(
        ask("x.ads.example.", RecordType::A, &loopback),
        "block Sinkhole { v4: Some(0.0.0.0), v6: None } (rule rules[4])"
    );
    assert_eq!(ask("tracker7.example.org.", RecordType::A, &loopback), "block NxDomain (rule rules[5])");
    assert_eq!(ask("build.internal.", RecordType::A, &loopback), "local NOERROR (hosts mesh)");
    assert_eq!(ask("ratings.mesh.local.", RecordType::A, &loopback), "local NOERROR (hosts mesh)");
    // In the default view, dev.corp.example is part of the corp.example zone.
    assert_eq!(ask("api.dev.corp.example.", RecordType::A, &loopback), "local NXDOMAIN (zone corp.example.)");

    // vpc-a: its own zone for dev.corp.example, behind a SYSTEM rule.
    let vpc = Client::udp(IpAddr::from([10, 1, 2, 3]));
    assert_eq!(ask("api.dev.corp.example.", RecordType::A, &vpc), "local NOERROR (zone dev.corp.example.)");
    let preview = rules.decide_name(&name("x.preview.dev.corp.example."), RecordType::A, Class::IN, &vpc);
    assert_eq!(
        answer_lines(&preview),
        ["x.preview.dev.corp.example. 60 IN CNAME api.dev.corp.example.", "api.dev.corp.example. 60 IN A 10.9.0.1"]
    );
    assert_eq!(ask("www.example.org.", RecordType::A, &vpc), "forward upstream (default)");
    let inbound = Client { listener: Some("inbound-a".into()), ..Client::udp(IpAddr::from([192, 0, 2, 50])) };
    assert_eq!(rules.view_of(&inbound), "vpc-a");
    let described = rules.describe();
    assert!(described.contains("view vpc-a"), "{described}");
}

#[test]
fn errors_in_files_name_the_file_line_and_field() {
    let temp = temp_dir("config-errors");
    let dir = temp.path();
    write(dir, "zones/bad.zone", "$TTL 60\n@ SOA ns host 1 2 3 4 5\nwww A 10.0.0.1\nwww CNAME other\n");
    let path = write(
        dir,
        "rules.toml",
        "default_group = \"up\"\n\n[[zones]]\nname = \"bad.example\"\nfile = \"zones/bad.zone\"\n",
    );
    let config = RulesConfig::load(&path).expect("valid TOML");
    let error = RuleSet::from_config(&config, dir, &["up"]).expect_err("CNAME and other data");
    assert!(matches!(error, Error::InvalidZoneData { .. }), "{error}");
    assert_eq!(error.location().file.as_deref(), Some(dir.join("zones/bad.zone").as_path()));
    assert_eq!(error.location().line, Some(3));

    let path = write(
        dir,
        "rules.toml",
        "default_group = \"up\"\n\n[[zones]]\nname = \"bad.example\"\nfile = \"zones/missing.zone\"\n",
    );
    let error =
        RuleSet::from_config(&RulesConfig::load(&path).expect("valid"), dir, &["up"]).expect_err("missing file");
    assert!(matches!(error, Error::Io { .. }));
    assert_eq!((error.location().line, error.location().field.as_deref()), (Some(5), Some("zones[0].file")));
    assert!(
        error.to_string().starts_with(&format!("{}:5:8, field zones[0].file: cannot read", path.display())),
        "{error}"
    );

    let path = write(
        dir,
        "rules.toml",
        "default_group = \"up\"\n[[views]]\nname = \"a\"\ncidrs = [\"10.0.0.0/8\"]\n[[views]]\nname = \"b\"\ncidrs = [\"10.0.0.0/8\"]\n",
    );
    let error = RuleSet::from_config(&RulesConfig::load(&path).expect("valid"), dir, &["up"]).expect_err("same CIDR");
    assert!(matches!(error, Error::Duplicate { what: "CIDR", .. }), "{error}");
    assert_eq!(error.location().line, Some(6));

    let error =
        RulesConfig::from_toml("[[rules]]\nsuffix = \"x\"\naction = \"teleport\"\n", "r.toml").expect_err("bad action");
    assert_eq!(error.location().line, Some(3));
}

#[test]
fn zone_syntax_errors_in_inline_records_name_the_record() {
    let text = "[[zones]]\nname = \"z.example\"\nrecords = [\n  \"www A 10.0.0.1\",\n  \"bad A 10.0.0\",\n]\n";
    let config = RulesConfig::from_toml(text, "r.toml").expect("valid");
    let error = RuleSet::from_config(&config, Path::new("."), &[]).expect_err("bad record");
    assert!(matches!(error, Error::ZoneSyntax { .. }));
    assert_eq!((error.location().line, error.location().field.as_deref()), (Some(5), Some("zones[0].records[1]")));
}

#[test]
fn a_blocked_name_carries_its_action() {
    let config = RulesConfig::from_toml(
        "default_group = \"up\"\n[[rules]]\nexact = \"bad.example\"\naction = \"block\"\nblock = \"sinkhole\"\nsinkhole_ipv6 = \"::\"\n",
        "r.toml",
    )
    .expect("valid");
    let rules = RuleSet::from_config(&config, Path::new("."), &["up"]).expect("valid");
    let Decision::Block(block) =
        rules.decide_name(&name("bad.example."), RecordType::AAAA, Class::IN, &crate::support::client())
    else {
        panic!()
    };
    assert_eq!(
        block.action,
        signpost_rules::BlockAction::Sinkhole { v4: None, v6: Some(std::net::Ipv6Addr::UNSPECIFIED) }
    );
}
