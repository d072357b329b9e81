//! Host tables and automatic addresses: /etc/hosts files, and addresses
//! that stay put across reloads and restarts.

use std::collections::BTreeMap;
use std::net::IpAddr;

use signpost_rules::config::RulesConfig;
use signpost_rules::{Allocations, Decision, RuleSet};
use signpost_wire::RecordType;

use crate::support::{answer_lines, decide, name, rules, temp_dir, write};

fn addresses(rules: &RuleSet) -> BTreeMap<String, IpAddr> {
    rules
        .allocations()
        .iter()
        .filter_map(|(name, allocated)| Some((name.to_string(), IpAddr::V4(allocated.v4?))))
        .collect()
}

fn config_with(names: &[&str], state_file: bool) -> String {
    let hosts: Vec<String> = names.iter().map(|name| format!("{{ name = \"{name}\" }}")).collect();
    let state = if state_file { "[allocation]\nstate_file = \"state.txt\"\n" } else { "" };
    format!("default_group = \"up\"\n{state}[[host_tables]]\nname = \"mesh\"\nhosts = [{}]\n", hosts.join(", "))
}

fn load(dir: &std::path::Path, text: &str) -> RuleSet {
    let path = write(dir, "rules.toml", text);
    let config = RulesConfig::load(&path).expect("valid");
    RuleSet::from_config(&config, dir, &["up"]).expect("valid")
}

#[test]
fn etc_hosts_files_answer_a_and_aaaa_and_nodata_for_the_rest() {
    let rules = rules("[[host_tables]]\nname = \"lan\"\nfile = \"hosts\"\nttl = 10\n");
    assert_eq!(answer_lines(&decide(&rules, "build.internal.", RecordType::A)), ["<question> 10 10.0.5.1"]);
    assert_eq!(answer_lines(&decide(&rules, "BUILD.", RecordType::A)), ["<question> 10 10.0.5.1"]);
    assert_eq!(answer_lines(&decide(&rules, "ci.internal.", RecordType::AAAA)), ["<question> 10 fd00::5:2"]);
    let Decision::Local(local) = decide(&rules, "build.internal.", RecordType::AAAA) else { panic!() };
    assert!(local.is_nodata());
    assert_eq!(local.authority[0].rtype(), RecordType::SOA);
    let Decision::Local(local) = decide(&rules, "ci.internal.", RecordType::MX) else { panic!() };
    assert!(local.is_nodata());
    assert_eq!(answer_lines(&decide(&rules, "ci.internal.", RecordType::ANY)).len(), 2);
}

#[test]
fn several_addresses_answer_as_records() {
    let rules = rules(
        "[[host_tables]]\nname = \"t\"\nhosts = [{ name = \"multi.test\", addresses = [\"10.0.0.1\", \"10.0.0.2\"] }]\n",
    );
    assert_eq!(
        answer_lines(&decide(&rules, "multi.test.", RecordType::A)),
        ["multi.test. 60 IN A 10.0.0.1", "multi.test. 60 IN A 10.0.0.2"]
    );
}

#[test]
fn automatic_addresses_are_deterministic_and_order_independent() {
    let temp = temp_dir("alloc-order");
    let dir = temp.path();
    let names = ["reviews.mesh", "ratings.mesh", "details.mesh", "productpage.mesh"];
    let first = addresses(&load(dir, &config_with(&names, false)));
    let mut reversed = names;
    reversed.reverse();
    let second = addresses(&load(dir, &config_with(&reversed, false)));
    assert_eq!(first, second);
    assert_eq!(first.len(), 4);
    for address in first.values() {
        assert!(matches!(address, IpAddr::V4(v4) if v4.octets()[..2] == [240, 240]), "{address}");
    }
    let rules = load(dir, &config_with(&names, false));
    let expected = first["reviews.mesh."];
    assert_eq!(answer_lines(&decide(&rules, "reviews.mesh.", RecordType::A)), [format!("<question> 60 {expected}")]);
}

#[test]
fn with_a_state_file_addresses_survive_restarts_as_names_are_added() {
    let temp = temp_dir("alloc-state");
    let dir = temp.path();
    let before = load(dir, &config_with(&["a.mesh", "b.mesh"], true));
    let config = RulesConfig::from_toml(&config_with(&[], true), "rules.toml").expect("valid");
    let state_file = config.allocation_state_file(dir).expect("configured");
    assert_eq!(state_file, dir.join("state.txt"));
    before.allocations().save(&state_file).expect("save");
    let saved = Allocations::load(&dir.join("state.txt")).expect("load");
    assert_eq!(&saved, before.allocations());

    // "Restart" with many more names: the first two keep their addresses.
    let many: Vec<String> = (0..500).map(|index| format!("svc{index}.mesh")).collect();
    let mut all: Vec<&str> = many.iter().map(String::as_str).collect();
    all.extend(["a.mesh", "b.mesh"]);
    let after = load(dir, &config_with(&all, true));
    let (old, new) = (addresses(&before), addresses(&after));
    assert_eq!(old["a.mesh."], new["a.mesh."]);
    assert_eq!(old["b.mesh."], new["b.mesh."]);
    let distinct: std::collections::HashSet<_> = new.values().collect();
    assert_eq!(distinct.len(), 502);

    // Reload through the API: to_builder pins the running addresses.
    let rebuilt = after.to_builder().build().expect("valid");
    assert_eq!(addresses(&rebuilt), new);
    assert_eq!(after.allocations().get(&name("A.MESH.")).and_then(|a| a.v4).map(IpAddr::V4), Some(new["a.mesh."]));
}
