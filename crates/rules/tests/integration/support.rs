//! Helpers shared by the test modules.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use signpost_rules::config::RulesConfig;
use signpost_rules::{Answer, Client, Decision, Matched, RuleSet};
use signpost_wire::{Class, NameBuf, RecordType};
use tempfile::TempDir;

pub fn name(text: &str) -> NameBuf {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

pub fn client() -> Client {
    Client::udp(IpAddr::from([192, 0, 2, 7]))
}

pub fn decide<'r>(rules: &'r RuleSet, text: &str, qtype: RecordType) -> Decision<'r> {
    rules.decide_name(&name(text), qtype, Class::IN, &client())
}

/// A rule set from TOML (files relative to tests/data); groups up, corp, g1..g3 exist.
pub fn rules(toml: &str) -> RuleSet {
    let config = RulesConfig::from_toml(toml, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    RuleSet::from_config(&config, &data_dir(), &["up", "corp", "g1", "g2", "g3"]).unwrap_or_else(|e| panic!("{e}"))
}

/// A short description of a decision, for assertions: `forward G`,
/// `block Refused`, `local NOERROR zone corp.example.`, `exception ID`...
pub fn summary(decision: &Decision<'_>) -> String {
    let matched = |matched: &Matched<'_>| match matched {
        Matched::Zone { zone } => format!("zone {zone}"),
        Matched::HostTable { table, .. } => format!("hosts {table}"),
        Matched::Rule { id, .. } => format!("rule {id}"),
        Matched::Exception { id, .. } => format!("exception {id}"),
        Matched::Firewall { rule, .. } => format!("firewall {rule}"),
        Matched::Default => "default".to_owned(),
    };
    match decision {
        Decision::Forward(forward) => format!("forward {} ({})", forward.group, matched(&forward.reason.matched)),
        Decision::Block(block) => format!("block {:?} ({})", block.action, matched(&block.reason.matched)),
        Decision::Local(local) => format!("local {} ({})", local.rcode, matched(&local.reason.matched)),
    }
}

/// The answer section as text lines.
pub fn answer_lines(decision: &Decision<'_>) -> Vec<String> {
    let Decision::Local(local) = decision else { panic!("not local: {decision:?}") };
    match &local.answer {
        Answer::Records(records) => records.iter().map(ToString::to_string).collect(),
        Answer::AddressOfQuestion { address, ttl } => vec![format!("<question> {ttl} {address}")],
    }
}

/// A fresh empty directory under the system's temporary directory, removed
/// when the returned guard is dropped.
pub fn temp_dir(label: &str) -> TempDir {
    tempfile::Builder::new().prefix(&format!("signpost-rules-{label}-")).tempdir().expect("temp dir")
}

pub fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("parent dir");
    }
    std::fs::write(&path, text).expect("write");
    path
}

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn wire_vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wire/tests/vectors")
}
