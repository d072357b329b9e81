use std::net::IpAddr;
use std::path::Path;

use signpost_rules::{Answer, BlockAction, Client, Decision, RuleSet};
use signpost_wire::{Class, Rcode, RecordType};

use super::*;
use signpost_testkit::TempDir;

use crate::build::BuildOptions;

fn read(text: &str) -> (ForwarderConfig, Vec<Warning>) {
    let dir = TempDir::new();
    let path = dir.write("unbound.conf", text);
    read_unbound_conf(&path, false).unwrap_or_else(|error| panic!("{error}"))
}

fn rules_of(text: &str) -> RuleSet {
    let (config, _) = read(text);
    config.build(&BuildOptions::default()).unwrap_or_else(|error| panic!("{error}")).rules
}

/// What the rule set does with a question, in a few words.
fn outcome(rules: &RuleSet, name: &str, qtype: RecordType) -> String {
    outcome_for(rules, [127, 0, 0, 1], name, qtype)
}

/// [`outcome`] for a client at `source`.
fn outcome_for(rules: &RuleSet, source: [u8; 4], name: &str, qtype: RecordType) -> String {
    let client = Client::udp(IpAddr::from(source));
    let name: NameBuf = name.parse().unwrap();
    match rules.decide_name(&name, qtype, Class::IN, &client) {
        Decision::Forward(forward) => format!("forward {}", forward.group),
        Decision::Block(block) => match block.action {
            BlockAction::Refused => "REFUSED".into(),
            BlockAction::NxDomain => "NXDOMAIN".into(),
            BlockAction::Drop => "drop".into(),
            other => format!("{other:?}"),
        },
        Decision::Local(local) => {
            let answer = match &local.answer {
                Answer::Records(records) => records
                    .iter()
                    .map(|record| format!("{} {}", record.rtype(), record.data))
                    .collect::<Vec<_>>()
                    .join(", "),
                Answer::AddressOfQuestion { address, .. } => address.to_string(),
            };
            match (local.rcode, answer.is_empty()) {
                (Rcode::NOERROR, true) => "NODATA".into(),
                (Rcode::NOERROR, false) => answer,
                (rcode, _) => rcode.to_string(),
            }
        }
    }
}

/// The configuration of the comparison run against unbound 1.17.1 (each
/// expectation below is what that unbound answered).
const COMPARED: &str = r#"
server:
  do-not-query-localhost: no
  interface: 127.0.0.1@25353
  do-daemonize: no
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "stat.example." static
  local-data: "a.b.stat.example. 300 IN A 192.0.2.1"
  local-data: "stat.example. 300 IN TXT hi"
  local-zone: "ref.example." refuse
  local-data: "www.ref.example. 300 IN A 192.0.2.2"
  local-zone: "tr.example." transparent
  local-data: "a.b.tr.example. 300 IN A 192.0.2.3"
  local-zone: "in.stat.example." transparent
  local-data: "x.in.stat.example. A 192.0.2.4"
  local-data: "loose.example. A 192.0.2.5"
  local-zone: "rd.example." redirect
  local-data: "rd.example. A 192.0.2.6"
  local-zone: "nx.example." always_nxdomain
  local-zone: "null.example." always_null
  local-zone: "nod.example." always_nodata
  local-data: "cn.stat.example. CNAME a.b.stat.example."
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@25399
forward-zone:
  name: "10.in-addr.arpa"
  forward-addr: 127.0.0.1@25399
forward-zone:
  name: "fw.stat.example"
  forward-addr: 127.0.0.1@25399
forward-zone:
  name: "corp.tr.example"
  forward-addr: 127.0.0.1@25398
  forward-first: yes
remote-control:
  control-enable: no
"#;

#[test]
fn local_zone_types_answer_as_unbound_does() {
    let rules = rules_of(COMPARED);
    let cases = [
        // static: data, NODATA for an empty non-terminal, else NXDOMAIN.
        ("a.b.stat.example", RecordType::A, "A 192.0.2.1"),
        ("b.stat.example", RecordType::A, "NODATA"),
        ("a.b.stat.example", RecordType::AAAA, "NODATA"),
        ("zz.stat.example", RecordType::A, "NXDOMAIN"),
        // refuse: data answers, other names are refused.
        ("www.ref.example", RecordType::A, "A 192.0.2.2"),
        ("x.ref.example", RecordType::A, "REFUSED"),
        ("ref.example", RecordType::A, "REFUSED"),
        // transparent: data, NODATA for a name with data of other types, else resolved.
        ("a.b.tr.example", RecordType::A, "A 192.0.2.3"),
        ("a.b.tr.example", RecordType::AAAA, "NODATA"),
        ("b.tr.example", RecordType::A, "forward ."),
        ("tr.example", RecordType::A, "forward ."),
        ("www.corp.tr.example", RecordType::A, "forward corp.tr.example"),
        // transparent inside static: resolved, not answered by the static zone.
        ("q.in.stat.example", RecordType::A, "forward ."),
        ("in.stat.example", RecordType::A, "forward ."),
        ("x.in.stat.example", RecordType::A, "A 192.0.2.4"),
        // data outside every zone makes a transparent zone of its name.
        ("loose.example", RecordType::A, "A 192.0.2.5"),
        ("loose.example", RecordType::AAAA, "NODATA"),
        ("sub.loose.example", RecordType::A, "forward ."),
        // redirect: the apex's data for every name below.
        ("foo.rd.example", RecordType::A, "A 192.0.2.6"),
        ("foo.rd.example", RecordType::AAAA, "NODATA"),
        // always_*.
        ("a.nx.example", RecordType::A, "NXDOMAIN"),
        ("a.null.example", RecordType::AAAA, "::"),
        ("a.null.example", RecordType::A, "0.0.0.0"),
        ("a.null.example", RecordType::MX, "NODATA"),
        ("a.nod.example", RecordType::A, "NODATA"),
        // default zones answer before forward zones; so does a static zone above one.
        ("1.0.0.10.in-addr.arpa", RecordType::PTR, "NXDOMAIN"),
        ("x.fw.stat.example", RecordType::A, "NXDOMAIN"),
        ("localhost", RecordType::A, "A 127.0.0.1"),
        ("www.localhost", RecordType::AAAA, "AAAA ::1"),
        ("1.0.0.127.in-addr.arpa", RecordType::PTR, "PTR localhost."),
        ("anything.test", RecordType::A, "NXDOMAIN"),
        // the rest goes to the forward zone for ".".
        ("www.example.org", RecordType::A, "forward ."),
    ];
    let mut wrong = Vec::new();
    for (name, qtype, expected) in cases {
        let got = outcome(&rules, name, qtype);
        if got != expected {
            wrong.push(format!("{name} {qtype}: expected {expected}, got {got}"));
        }
    }
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), rules.describe());
}

#[test]
fn forward_zones_become_groups_like_unbounds_forwarders() {
    let (config, _) = read(COMPARED);
    let group = config.upstreams.iter().find(|group| group.name == "corp.tr.example").unwrap();
    assert_eq!(group.servers[0].to_string(), "udp://127.0.0.1:25398");
    assert_eq!(group.policy, Policy::Fastest);
    assert!(group.retry_on.servfail && group.retry_on.refused && group.retry_on.timeout);
    assert_eq!(config.default_group.as_deref(), Some("."));
    let rule = config.rules.iter().find(|rule| rule.group.as_deref() == Some("corp.tr.example")).unwrap();
    assert!(rule.forward_first);
    // The forward zone under the static zone has no rule: the zone answers for it.
    assert!(!config.rules.iter().any(|rule| rule.suffix.as_deref() == Some("fw.stat.example")));
}

#[test]
fn listeners_acl_and_cache_come_from_the_server_clause() {
    let (config, warnings) = read(
        "server:\n  interface: 127.0.0.1\n  interface: ::1@5300\n  port: 5301\n  num-threads: 2\n  access-control: 10.0.0.0/8 allow\n  access-control: 10.1.0.0/16 refuse\n  cache-max-ttl: 600\n  cache-min-ttl: 5\n  verbosity: 2\n  module-config: \"iterator\"\nforward-zone:\n  name: \".\"\n  forward-addr: 192.0.2.1\n",
    );
    let listeners: Vec<String> = config
        .listeners
        .iter()
        .map(|listener| format!("{} {}", listener.transport.as_str(), listener.socket_address()))
        .collect();
    assert_eq!(listeners, ["udp 127.0.0.1:5301", "tcp 127.0.0.1:5301", "udp [::1]:5300", "tcp [::1]:5300"]);
    assert_eq!(config.listeners[0].workers, Some(2));
    assert_eq!((config.cache.max_ttl, config.cache.min_ttl), (600, 5));
    let forwarder = config.build(&BuildOptions::default()).unwrap();
    let allow = forwarder.server.listeners[0].allow.clone().unwrap();
    let allowed = |address: &str| allow.iter().any(|net| net.contains(&address.parse::<IpAddr>().unwrap()));
    assert!(allowed("127.0.0.1") && allowed("10.2.0.1") && allowed("::1"));
    assert!(!allowed("10.1.0.1") && !allowed("192.0.2.1"));
    assert!(
        warnings.iter().any(|warning| matches!(warning, Warning::Ignored { keyword, .. } if keyword == "verbosity:"))
    );
}

#[test]
fn unsupported_options_are_named_with_their_line() {
    let dir = TempDir::new();
    let text = "server:\n  interface: 127.0.0.1\n  private-address: 10.0.0.0/8\n  local-zone: \"a.example\" typetransparent\n  trusted-keys-file: \"/etc/bind/keys\"\nstub-zone:\n  name: \"corp\"\n  stub-addr: 10.0.0.1\nforward-zone:\n  name: \".\"\n  forward-addr: 192.0.2.1\n  forward-no-cache: yes\n";
    let path = dir.write("unbound.conf", text);
    let error = read_unbound_conf(&path, false).unwrap_err();
    let ConfigError::Unsupported { items } = &error else { panic!("{error}") };
    let named: Vec<(String, usize)> =
        items.iter().map(|item| (item.keyword.clone(), item.at.line.unwrap_or(0))).collect();
    assert_eq!(named, [("private-address:".to_owned(), 3), ("trusted-keys-file:".to_owned(), 5)]);
    let message = error.to_string();
    assert!(message.contains("unbound.conf:3:3: private-address: is not supported"), "{message}");
    let (config, warnings) = read_unbound_conf(&path, true).unwrap();
    assert_eq!(warnings.iter().filter(|warning| matches!(warning, Warning::SkippedUnsupported(_))).count(), 2);
    config.build(&BuildOptions::default()).unwrap();
}

#[test]
fn includes_are_relative_nested_and_bounded() {
    let dir = TempDir::new();
    dir.write("conf.d/a.conf", "  local-data: \"a.corp.example. A 10.0.0.1\"\n");
    dir.write("conf.d/fwd-b.conf", "forward-zone:\n  name: \"corp.example\"\n  forward-addr: 10.0.0.53\n");
    dir.write("conf.d/skip.txt", "garbage: here\n");
    let path = dir.write("unbound.conf",
        "server:\n  local-zone: \"corp.example\" transparent\n  include: \"conf.d/a.conf\"\ninclude-toplevel: \"conf.d/fwd-*.conf\"\nforward-zone:\n  name: \".\"\n  forward-addr: 192.0.2.1\n",
    );
    let (config, _) = read_unbound_conf(&path, false).unwrap();
    assert!(config.upstreams.iter().any(|group| group.name == "corp.example"));
    let rules = config.build(&BuildOptions::default()).unwrap().rules;
    assert_eq!(outcome(&rules, "a.corp.example", RecordType::A), "A 10.0.0.1");
    assert_eq!(outcome(&rules, "b.corp.example", RecordType::A), "forward corp.example");

    let looping = dir.write("loop.conf", "server:\n  include: \"loop.conf\"\n");
    let error = read_unbound_conf(&looping, false).unwrap_err();
    assert!(matches!(error, ConfigError::IncludeTooDeep { limit: MAX_INCLUDE_DEPTH, .. }), "{error}");
    let missing = dir.write("missing.conf", "server:\n  include: \"nope.conf\"\n");
    let error = read_unbound_conf(&missing, false).unwrap_err();
    assert_eq!(error.location().and_then(|at| at.line), Some(2), "{error}");
}

#[test]
fn forward_addresses_hosts_and_tls() {
    let (config, _) = read(
        "server:\n  do-not-query-localhost: no\n  tls-cert-bundle: \"/etc/ssl/private-ca.pem\"\n  local-data: \"resolver.corp. A 10.0.0.7\"\nforward-zone:\n  name: \"corp\"\n  forward-addr: 10.0.0.1@5353\n  forward-addr: 2001:db8::1\n  forward-host: resolver.corp\n  forward-host: localhost@5354\n  forward-tcp-upstream: yes\nforward-zone:\n  name: \"secure\"\n  forward-tls-upstream: yes\n  forward-addr: 10.0.0.2#dns.corp\n  forward-addr: 10.0.0.3@8853#dns.corp\n  forward-host: resolver.corp\n",
    );
    let servers = |name: &str| -> Vec<String> {
        let group = config.upstreams.iter().find(|group| group.name == name).unwrap();
        group.servers.iter().map(ToString::to_string).collect()
    };
    assert_eq!(
        servers("corp"),
        ["tcp://10.0.0.1:5353", "tcp://[2001:db8::1]:53", "tcp://10.0.0.7:53", "tcp://127.0.0.1:5354"]
    );
    assert_eq!(
        servers("secure"),
        ["tls://10.0.0.2:853#dns.corp", "tls://10.0.0.3:8853#dns.corp", "tls://10.0.0.7:853#resolver.corp"]
    );
    let secure = config.upstreams.iter().find(|group| group.name == "secure").unwrap();
    assert_eq!(secure.tls.ca_file.as_deref(), Some(Path::new("/etc/ssl/private-ca.pem")));
    assert!(secure.tls.ignore_system_roots);
}

#[test]
fn errors_name_file_line_and_keyword() {
    let dir = TempDir::new();
    let cases = [
        ("server:\n  local-data: \"www.example. A 300.1.1.1\"\n", 2, "invalid record"),
        ("server:\n  local-zone: \"example.\" bogus\n", 2, "local-zone type"),
        ("server:\n  access-control: 10.0.0.0/8 maybe\n", 2, "access-control action"),
        ("server:\n  port: many\n", 2, "invalid port"),
        ("verbosity: 1\n", 1, "outside any clause"),
        ("server:\n  do-udp: perhaps\n", 2, "yes or no"),
        ("forward-zone:\n  forward-addr: 10.0.0.1\n", 1, "has no name"),
        ("forward-zone:\n  name: \"a\"\n  forward-addr: ten\n", 3, "forward-addr"),
        (
            "forward-zone:\n  name: \"a\"\n  forward-addr: 10.0.0.1\nforward-zone:\n  name: \"a.\"\n  forward-addr: 10.0.0.1\n",
            5,
            "duplicate forward zone",
        ),
        ("forward-zone:\n  name: \"a\"\n", 1, "has no servers"),
        (
            "server:\n  local-data: \"x.example. CNAME a.example.\"\n  local-data: \"x.example. A 10.0.0.1\"\n",
            3,
            "CNAME",
        ),
    ];
    for (text, line, needle) in cases {
        let path = dir.write("bad.conf", text);
        let error = read_unbound_conf(&path, false)
            .and_then(|(config, _)| config.build(&BuildOptions::default()).map(|_| ()))
            .expect_err(text);
        let message = error.to_string();
        assert!(message.contains(needle), "{text}: {message}");
        assert_eq!(error.location().and_then(|at| at.line), Some(line), "{text}: {message}");
        assert!(message.contains("bad.conf"), "{message}");
    }
}

#[test]
fn local_data_ptr_and_default_zone_overrides() {
    let rules = rules_of(
        "server:\n  local-data-ptr: \"192.0.2.4 www.example.com\"\n  local-data-ptr: \"2001:db8::4 7200 v6.example.com\"\n  local-zone: \"10.in-addr.arpa.\" nodefault\n  local-zone: \"test.\" transparent\n  unblock-lan-zones: no\nforward-zone:\n  name: \".\"\n  forward-addr: 192.0.2.1\n",
    );
    assert_eq!(outcome(&rules, "4.2.0.192.in-addr.arpa", RecordType::PTR), "PTR www.example.com.");
    assert_eq!(
        outcome(&rules, "4.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", RecordType::PTR),
        "PTR v6.example.com."
    );
    // 2.0.192.in-addr.arpa is a default zone: other names in it are NXDOMAIN.
    assert_eq!(outcome(&rules, "5.2.0.192.in-addr.arpa", RecordType::PTR), "NXDOMAIN");
    assert_eq!(outcome(&rules, "1.0.0.10.in-addr.arpa", RecordType::PTR), "forward .");
    assert_eq!(outcome(&rules, "x.test", RecordType::A), "forward .");
    let unblocked =
        rules_of("server:\n  unblock-lan-zones: yes\nforward-zone:\n  name: \".\"\n  forward-addr: 192.0.2.1\n");
    assert_eq!(outcome(&unblocked, "1.1.168.192.in-addr.arpa", RecordType::PTR), "forward .");
    assert_eq!(outcome(&unblocked, "x.invalid", RecordType::A), "NXDOMAIN");
}

#[test]
fn the_default_group_is_the_system_one_without_a_root_forward_zone() {
    let dir = TempDir::new();
    let resolv = dir.write("resolv.conf", "nameserver 127.0.0.1\nnameserver 127.0.0.2\n");
    let path = dir.write("unbound.conf",
        "server:\n  interface: 127.0.0.1@53\n  local-zone: \"corp.\" static\n  local-zone: \"dev.corp.\" transparent\nforward-zone:\n  name: \"corp.example\"\n  forward-addr: 10.0.0.1\n",
    );
    let (config, _) = read_unbound_conf(&path, false).unwrap();
    let options = BuildOptions { resolv_conf: Some(resolv), ..BuildOptions::default() };
    let forwarder = config.build(&options).unwrap();
    let default = forwarder.default_route.unwrap();
    assert_eq!(default.group, SYSTEM_GROUP);
    // 127.0.0.1:53 is this forwarder's own listener: left out, no loop.
    assert_eq!(default.servers, ["udp://127.0.0.2:53"]);
    assert_eq!(outcome(&forwarder.rules, "x.dev.corp", RecordType::A), "forward system");
    assert_eq!(outcome(&forwarder.rules, "www.example.net", RecordType::A), "forward system");
}

/// Each expectation is what unbound 1.17.1 answered for the same
/// configuration (block_a and block_aaaa, newer than 1.17, follow Unbound's
/// documentation), with the `.` forward zone answering from its own data.
const TYPES_VIEWS_AND_ACCESS: &str = r#"
server:
  do-not-query-localhost: no
  interface: 127.0.0.1@25355
  access-control: 127.0.0.0/8 allow
  access-control: 127.0.0.5/32 deny
  access-control: 127.0.0.6/32 refuse_non_local
  access-control: 127.0.0.7/32 deny_non_local
  access-control-view: 127.0.0.2/32 first
  access-control-view: 127.0.0.3/32 only
  access-control-view: 127.0.0.4/32 empty
  local-zone: "test." nodefault
  local-zone: "g.test." static
  local-data: "www.g.test. 300 IN A 10.1.0.1"
  local-zone: "sub.v.test." static
  local-data: "www.sub.v.test. 300 IN A 10.1.0.9"
  local-zone: "d.test." deny
  local-data: "www.d.test. 300 IN A 10.1.0.2"
  local-zone: "ad.test." always_deny
  local-zone: "tt.test." typetransparent
  local-data: "www.tt.test. 300 IN A 10.0.0.1"
  local-zone: "ba.test." block_a
  local-zone: "baaaa.test." block_aaaa
remote-control:
  control-enable: no
view:
  name: "first"
  view-first: yes
  local-zone: "v.test." static
  local-data: "www.v.test. 300 IN A 10.2.0.1"
  local-zone: "nv.test." noview
view:
  name: "only"
  local-zone: "v.test." static
  local-data: "www.v.test. 300 IN A 10.3.0.1"
view:
  name: "empty"
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@25353
stub-zone:
  name: "stub.test"
  stub-addr: 127.0.0.1@25356
"#;

#[test]
fn local_zone_types_views_and_access_control_answer_as_unbound_does() {
    let rules = rules_of(TYPES_VIEWS_AND_ACCESS);
    let cases: &[([u8; 4], &str, RecordType, &str)] = &[
        // typetransparent: data answers; other types and other names are resolved.
        ([127, 0, 0, 1], "www.tt.test", RecordType::A, "A 10.0.0.1"),
        ([127, 0, 0, 1], "www.tt.test", RecordType::MX, "forward ."),
        ([127, 0, 0, 1], "other.tt.test", RecordType::A, "forward ."),
        // deny: data answers, other names are dropped; always_deny drops all.
        ([127, 0, 0, 1], "www.d.test", RecordType::A, "A 10.1.0.2"),
        ([127, 0, 0, 1], "x.d.test", RecordType::A, "drop"),
        ([127, 0, 0, 1], "x.ad.test", RecordType::A, "drop"),
        // block_a / block_aaaa: NODATA for that family, the rest resolved.
        ([127, 0, 0, 1], "www.ba.test", RecordType::A, "NODATA"),
        ([127, 0, 0, 1], "www.ba.test", RecordType::AAAA, "forward ."),
        ([127, 0, 0, 1], "www.ba.test", RecordType::TXT, "forward ."),
        ([127, 0, 0, 1], "www.baaaa.test", RecordType::AAAA, "NODATA"),
        ([127, 0, 0, 1], "www.baaaa.test", RecordType::A, "forward ."),
        // stub zones are groups of their own.
        ([127, 0, 0, 1], "www.stub.test", RecordType::A, "forward stub.test"),
        // No view: the global zones.
        ([127, 0, 0, 1], "www.g.test", RecordType::A, "A 10.1.0.1"),
        ([127, 0, 0, 1], "www.v.test", RecordType::A, "forward ."),
        ([127, 0, 0, 1], "www.sub.v.test", RecordType::A, "A 10.1.0.9"),
        ([127, 0, 0, 1], "localhost", RecordType::A, "A 127.0.0.1"),
        // view-first: the view's zones, then the global ones it does not cover.
        ([127, 0, 0, 2], "www.g.test", RecordType::A, "A 10.1.0.1"),
        ([127, 0, 0, 2], "www.v.test", RecordType::A, "A 10.2.0.1"),
        ([127, 0, 0, 2], "x.v.test", RecordType::A, "NXDOMAIN"),
        ([127, 0, 0, 2], "www.sub.v.test", RecordType::A, "NXDOMAIN"),
        ([127, 0, 0, 2], "www.nv.test", RecordType::A, "forward ."),
        ([127, 0, 0, 2], "x.d.test", RecordType::A, "drop"),
        ([127, 0, 0, 2], "localhost", RecordType::A, "A 127.0.0.1"),
        // Without view-first: the view's zones and Unbound's defaults (test. is one).
        ([127, 0, 0, 3], "www.g.test", RecordType::A, "NXDOMAIN"),
        ([127, 0, 0, 3], "www.v.test", RecordType::A, "A 10.3.0.1"),
        ([127, 0, 0, 3], "x.d.test", RecordType::A, "NXDOMAIN"),
        ([127, 0, 0, 3], "localhost", RecordType::A, "A 127.0.0.1"),
        // A view without local zones: the global ones.
        ([127, 0, 0, 4], "www.g.test", RecordType::A, "A 10.1.0.1"),
        ([127, 0, 0, 4], "www.sub.v.test", RecordType::A, "A 10.1.0.9"),
        // access-control deny: everything dropped.
        ([127, 0, 0, 5], "www.g.test", RecordType::A, "drop"),
        ([127, 0, 0, 5], "localhost", RecordType::A, "drop"),
        // refuse_non_local / deny_non_local: local data only.
        ([127, 0, 0, 6], "www.g.test", RecordType::A, "A 10.1.0.1"),
        ([127, 0, 0, 6], "www.v.test", RecordType::A, "REFUSED"),
        ([127, 0, 0, 6], "www.tt.test", RecordType::A, "A 10.0.0.1"),
        ([127, 0, 0, 6], "other.tt.test", RecordType::A, "REFUSED"),
        ([127, 0, 0, 6], "x.d.test", RecordType::A, "drop"),
        ([127, 0, 0, 6], "localhost", RecordType::A, "A 127.0.0.1"),
        ([127, 0, 0, 7], "www.g.test", RecordType::A, "A 10.1.0.1"),
        ([127, 0, 0, 7], "www.v.test", RecordType::A, "drop"),
    ];
    let mut wrong = Vec::new();
    for (source, name, qtype, expected) in cases {
        let got = outcome_for(&rules, *source, name, *qtype);
        if got != *expected {
            wrong.push(format!("{source:?} {name} {qtype}: expected {expected}, got {got}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn stub_zones_ask_without_recursion_and_take_their_options() {
    let (config, warnings) = read(
        "server:\n  interface: 127.0.0.1\nstub-zone:\n  name: corp.example\n  stub-addr: 192.0.2.1@5353\n  stub-first: yes\n  stub-prime: yes\nstub-zone:\n  name: tls.example\n  stub-tls-upstream: yes\n  stub-no-cache: yes\n  stub-addr: 192.0.2.2#ns.tls.example\n",
    );
    let corp = config.upstreams.iter().find(|group| group.name == "corp.example").unwrap();
    assert!(!corp.recursion_desired);
    assert_eq!(corp.servers[0].address.to_string(), "192.0.2.1:5353");
    let rule = config.rules.iter().find(|rule| rule.group.as_deref() == Some("corp.example")).unwrap();
    assert!(rule.forward_first);
    let tls = config.upstreams.iter().find(|group| group.name == "tls.example").unwrap();
    assert_eq!(tls.servers[0].protocol, Protocol::Tls);
    assert_eq!(tls.servers[0].tls_name.as_deref(), Some("ns.tls.example"));
    assert!(warnings.iter().any(|warning| warning.to_string().contains("stub-prime")), "{warnings:?}");
    assert!(corp.cache && !tls.cache);
}

#[test]
fn unknown_views_and_nameless_views_are_errors_with_their_line() {
    let dir = TempDir::new();
    let path = dir.write("unbound.conf", "server:\n  access-control-view: 10.0.0.0/8 nosuch\nview:\n  name: real\n");
    let error = read_unbound_conf(&path, false).unwrap_err().to_string();
    assert!(error.contains("unbound.conf:2") && error.contains("nosuch"), "{error}");
    let path = dir.write("unbound.conf", "server:\n  interface: 127.0.0.1\nview:\n  view-first: yes\n");
    let error = read_unbound_conf(&path, false).unwrap_err().to_string();
    assert!(error.contains("unbound.conf:3") && error.contains("no name"), "{error}");
}

#[test]
fn receive_buffers_and_the_rtt_floor_come_from_the_server_clause() {
    let (config, _) = read(
        "server:\n  interface: 127.0.0.1\n  so-rcvbuf: 8m\n  infra-cache-min-rtt: 120\nforward-zone:\n  name: \".\"\n  forward-addr: 192.0.2.1\n",
    );
    let buffers: Vec<(&str, Option<usize>)> =
        config.listeners.iter().map(|listener| (listener.transport.as_str(), listener.receive_buffer)).collect();
    assert_eq!(buffers, [("udp", Some(8 << 20)), ("tcp", None)]);
    assert!(config.upstreams.iter().all(|group| group.min_try_timeout == Duration::from_millis(120)));
    // 0 is Unbound's "leave the system's default".
    let (config, _) = read(
        "server:\n  interface: 127.0.0.1\n  so-rcvbuf: 0\nforward-zone:\n  name: \".\"\n  forward-addr: 192.0.2.1\n",
    );
    assert_eq!(config.listeners[0].receive_buffer, None);
}

#[test]
fn auth_zones_are_read_with_their_options() {
    let dir = TempDir::new();
    dir.write("example.zone", "$ORIGIN example.\n@ 60 IN SOA ns host 7 3600 600 86400 60\nwww 60 IN A 192.0.2.1\n");
    let path = dir.write(
        "unbound.conf",
        r#"
server:
  do-not-query-localhost: no
  interface: 127.0.0.1@25353
auth-zone:
  name: "example."
  zonefile: "example.zone"
auth-zone:
  name: "corp.example.org."
  primary: 192.0.2.53
  master: 192.0.2.54@5300
  zonefile: "corp.zone"
  allow-notify: 192.0.2.0/24
  for-downstream: no
  fallback-enabled: yes
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@9
"#,
    );
    let (config, warnings) = read_unbound_conf(&path, false).unwrap_or_else(|error| panic!("{error}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.auth_zones.len(), 2);
    let secondary = &config.auth_zones[1];
    assert_eq!(secondary.primaries, ["192.0.2.53", "192.0.2.54@5300"]);
    assert_eq!(secondary.allow_notify, ["192.0.2.0/24"]);
    assert!(!secondary.for_downstream && secondary.for_upstream && secondary.fallback_enabled);

    let options = BuildOptions { base_dir: dir.path().to_path_buf(), ..BuildOptions::default() };
    let forwarder = config.build(&options).unwrap_or_else(|error| panic!("{error}"));
    // The zone from its file answers at once; the secondary has no copy yet, so it is forwarded.
    assert_eq!(outcome(&forwarder.rules, "www.example.", RecordType::A), "A 192.0.2.1");
    assert_eq!(outcome(&forwarder.rules, "www.corp.example.org.", RecordType::A), "forward .");
    let corp = &forwarder.auth_zones[1];
    assert_eq!(corp.primaries, ["192.0.2.53:53".parse().unwrap(), "192.0.2.54:5300".parse().unwrap()]);
    assert_eq!(corp.zonefile.as_deref(), Some(dir.path().join("corp.zone").as_path()));

    // Options the forwarder does not implement are reported, not dropped in silence.
    let error = read_unbound_conf(
        &dir.write("bad.conf", "auth-zone:\n  name: \"x.\"\n  url: \"http://192.0.2.1/x.zone\"\n"),
        false,
    )
    .unwrap_err();
    assert!(error.to_string().contains("url"), "{error}");
}

#[test]
fn trust_anchors_turn_validation_on() {
    let dir = TempDir::new();
    dir.write("keys/root.key", ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n");
    let text = "server:\n  interface: 127.0.0.1\n  auto-trust-anchor-file: \"keys/root.key\"\n  domain-insecure: \"corp.example\"\n  val-bogus-ttl: 30\n  val-nsec3-keysize-iterations: \"1024 150 2048 100\"\n  do-not-query-localhost: no\nforward-zone:\n  name: \".\"\n  forward-addr: 127.0.0.1@5300\n";
    let path = dir.write("unbound.conf", text);
    let (config, _) = read_unbound_conf(&path, false).unwrap();
    assert!(config.dnssec.validate);
    assert_eq!(config.dnssec.auto_trust_anchor_files, [dir.join("keys/root.key")]);
    assert_eq!(config.dnssec.domain_insecure, ["corp.example."]);
    assert_eq!(config.dnssec.bogus_ttl, Some(30));
    assert_eq!(config.dnssec.nsec3_max_iterations, Some(150));
    let forwarder = config.build(&BuildOptions::default()).unwrap();
    let validator = forwarder.validator.as_ref().expect("validating");
    assert_eq!(validator.anchors().iter().count(), 1);
    assert_eq!(validator.config().bogus_ttl, 30);

    // Without the validator module the anchors do nothing.
    let off = text.replace("server:\n", "server:\n  module-config: \"iterator\"\n");
    let path = dir.write("off.conf", off);
    let (config, warnings) = read_unbound_conf(&path, false).unwrap();
    assert!(!config.dnssec.validate);
    assert!(
        warnings.iter().any(|w| matches!(w, Warning::Ignored { keyword, .. } if keyword == "auto-trust-anchor-file:"))
    );

    // A missing anchor file is named with the line that gives it.
    let missing = text.replace("keys/root.key", "keys/absent.key");
    let path = dir.write("missing.conf", missing);
    let (config, _) = read_unbound_conf(&path, false).unwrap();
    let error = config.build(&BuildOptions::default()).unwrap_err().to_string();
    assert!(error.contains("missing.conf:3") && error.contains("absent.key"), "{error}");
}

#[test]
fn the_dnstap_clause_becomes_the_dnstap_settings_with_unbounds_defaults() {
    let (config, _) = read(
        "server:\n  interface: 127.0.0.1\ndnstap:\n  dnstap-enable: yes\n  dnstap-socket-path: \"/run/collector.sock\"\n  \
         dnstap-send-identity: yes\n  dnstap-identity: \"node-1\"\n  dnstap-log-client-query-messages: yes\n  \
         dnstap-log-forwarder-response-messages: yes\n",
    );
    let dnstap = config.dnstap.clone().expect("dnstap on");
    assert!(dnstap.enable);
    assert_eq!(dnstap.socket_path.as_deref(), Some(Path::new("/run/collector.sock")));
    assert_eq!(dnstap.address, None);
    assert!(dnstap.send_identity && !dnstap.send_version);
    assert_eq!(dnstap.identity.as_deref(), Some("node-1"));
    assert!(dnstap.log_client_query_messages && dnstap.log_forwarder_response_messages);
    assert!(!dnstap.log_client_response_messages && !dnstap.log_forwarder_query_messages);
    let server = config.build(&BuildOptions::default()).unwrap().server;
    assert_eq!(server.dnstap, Some(dnstap));

    // Off unless enabled; unbound's default socket when none is named;
    // TCP with dnstap-tls: no, port 53 unless given.
    let (config, _) = read("dnstap:\n  dnstap-socket-path: \"/run/x.sock\"\n");
    assert_eq!(config.dnstap, None);
    let (config, _) = read("dnstap:\n  dnstap-enable: yes\n");
    assert_eq!(config.dnstap.unwrap().socket_path.as_deref(), Some(Path::new("/run/dnstap.sock")));
    let (config, _) = read("dnstap:\n  dnstap-enable: yes\n  dnstap-ip: 127.0.0.1@6000\n  dnstap-tls: no\n");
    assert_eq!(config.dnstap.unwrap().address, Some("127.0.0.1:6000".parse().unwrap()));
    let (config, _) = read("dnstap:\n  dnstap-enable: yes\n  dnstap-ip: ::1\n  dnstap-tls: no\n");
    assert_eq!(config.dnstap.unwrap().address, Some("[::1]:53".parse().unwrap()));
}

#[test]
fn dnstap_over_tls_is_unbounds_default_with_dnstap_ip_and_takes_its_files() {
    // dnstap-tls defaults to yes in unbound: dnstap-ip alone asks for TLS.
    let (config, _) = read("dnstap:\n  dnstap-enable: yes\n  dnstap-ip: 127.0.0.1@6000\n");
    let dnstap = config.dnstap.unwrap();
    assert!(dnstap.tls);
    assert_eq!(dnstap.address, Some("127.0.0.1:6000".parse().unwrap()));
    assert_eq!((dnstap.tls_server_name, dnstap.tls_cert_bundle), (None, None));
    let (config, _) = read(
        "server:\n  directory: \"/etc/unbound\"\ndnstap:\n  dnstap-enable: yes\n  dnstap-ip: 192.0.2.50@6000\n  \
         dnstap-tls: yes\n  dnstap-tls-server-name: \"collector.example\"\n  dnstap-tls-cert-bundle: \"ca.pem\"\n  \
         dnstap-tls-client-cert-file: \"/etc/unbound/client.pem\"\n  dnstap-tls-client-key-file: \"client.key\"\n",
    );
    let dnstap = config.dnstap.unwrap();
    assert!(dnstap.tls);
    assert_eq!(dnstap.tls_server_name.as_deref(), Some("collector.example"));
    assert_eq!(dnstap.tls_cert_bundle.as_deref(), Some(Path::new("/etc/unbound/ca.pem")));
    assert_eq!(dnstap.tls_client_cert_file.as_deref(), Some(Path::new("/etc/unbound/client.pem")));
    assert_eq!(dnstap.tls_client_key_file.as_deref(), Some(Path::new("/etc/unbound/client.key")));
    // Empty values are unset, as in unbound.
    let (config, _) = read("dnstap:\n  dnstap-enable: yes\n  dnstap-ip: 127.0.0.1\n  dnstap-tls-server-name: \"\"\n");
    assert_eq!(config.dnstap.unwrap().tls_server_name, None);
    // TLS applies to dnstap-ip only: a unix socket stays a unix socket.
    let (config, _) = read("dnstap:\n  dnstap-enable: yes\n  dnstap-tls: yes\n");
    assert!(!config.dnstap.unwrap().tls);
}

#[test]
fn unknown_dnstap_options_are_refused_with_their_line() {
    let dir = TempDir::new();
    let path = dir.write("odd.conf", "dnstap:\n  dnstap-enable: yes\n  dnstap-sample-rate: 10\n");
    let error = read_unbound_conf(&path, false).unwrap_err();
    let ConfigError::Unsupported { items } = &error else { panic!("{error}") };
    assert_eq!(items[0].keyword, "dnstap: dnstap-sample-rate:");
    assert_eq!(items[0].at.line, Some(3));
}

/// What unbound 1.17.1 does with `do-not-query-localhost` (checked with the
/// real binary: a forward zone naming a loopback server and 192.0.2.1 asks
/// only 192.0.2.1; one naming only loopback servers answers SERVFAIL at once;
/// with `do-not-query-localhost: no` the loopback server answers).
#[test]
fn loopback_targets_are_skipped_unless_do_not_query_localhost_is_no() {
    let text = "server:\n  interface: 127.0.0.1\nforward-zone:\n  name: \"corp\"\n  forward-addr: 127.0.0.1@5353\n  forward-addr: 192.0.2.1\nstub-zone:\n  name: \"lab\"\n  stub-addr: ::1@5300\nforward-zone:\n  name: \".\"\n  forward-addr: 192.0.2.53\n";
    let (config, warnings) = read(text);
    let corp = config.upstreams.iter().find(|group| group.name == "corp").unwrap();
    assert_eq!(corp.servers.iter().map(ToString::to_string).collect::<Vec<_>>(), ["udp://192.0.2.1:53"]);
    let skipped: Vec<String> = warnings
        .iter()
        .filter(|warning| matches!(warning, Warning::LoopbackSkipped { .. }))
        .map(ToString::to_string)
        .collect();
    assert_eq!(skipped.len(), 2, "{warnings:?}");
    assert!(skipped[0].contains("unbound.conf:5") && skipped[0].contains("127.0.0.1:5353"), "{}", skipped[0]);
    assert!(skipped[0].contains("do-not-query-localhost: no"), "{}", skipped[0]);
    assert!(skipped[1].contains("unbound.conf:9") && skipped[1].contains("[::1]:5300"), "{}", skipped[1]);
    let rules = config.build(&BuildOptions::default()).unwrap().rules;
    assert_eq!(outcome(&rules, "www.corp.", RecordType::A), "forward corp");
    assert_eq!(outcome(&rules, "www.lab.", RecordType::A), "ServFail");
    assert_eq!(outcome(&rules, "www.example.", RecordType::A), "forward .");

    let (config, warnings) = read(&text.replace("server:\n", "server:\n  do-not-query-localhost: no\n"));
    assert!(!warnings.iter().any(|warning| matches!(warning, Warning::LoopbackSkipped { .. })), "{warnings:?}");
    let rules = config.build(&BuildOptions::default()).unwrap().rules;
    assert_eq!(outcome(&rules, "www.lab.", RecordType::A), "forward lab");
    let corp = config.upstreams.iter().find(|group| group.name == "corp").unwrap();
    assert_eq!(corp.servers.len(), 2);
}
