use std::net::IpAddr;

use signpost_rules::{Client, Decision};
use signpost_testkit::TempDir;
use signpost_wire::{Class, NameBuf, RecordType};

use super::*;

fn config(text: &str) -> ForwarderConfig {
    ForwarderConfig::from_toml(text, "forward.toml").unwrap_or_else(|error| panic!("{error}"))
}

/// The forwarder `text` builds with the default options; it must build.
fn built(text: &str) -> Forwarder {
    config(text).build(&BuildOptions::default()).unwrap_or_else(|error| panic!("{error}"))
}

fn build_error(text: &str) -> ConfigError {
    config(text).build(&BuildOptions::default()).expect_err("invalid")
}

fn group_of(forwarder: &Forwarder, name: &str) -> String {
    let client = Client::udp(IpAddr::from([127, 0, 0, 1]));
    let name: NameBuf = name.parse().unwrap();
    match forwarder.rules.decide_name(&name, RecordType::A, Class::IN, &client) {
        Decision::Forward(forward) => forward.group.to_owned(),
        other => format!("{other:?}"),
    }
}

const ZONES: &str = r#"
[[upstreams]]
name = "corp"
retry_on = ["timeout", "unreachable", "servfail"]
[[upstreams.servers]]
address = "192.0.2.10:53"

[[forward_zones]]
name = "corp.example.com"
group = "corp"
forward_first = true

[[forward_zones]]
name = "example.com"
servers = ["192.0.2.20", "tcp://192.0.2.21:5353"]
policy = "round_robin"

[[forward_zones]]
name = "."
servers = ["https://192.0.2.30/dns-query#dns.example"]
"#;

#[test]
fn the_most_specific_forward_zone_wins() {
    let forwarder = built(ZONES);
    assert_eq!(group_of(&forwarder, "git.corp.example.com"), "corp");
    assert_eq!(group_of(&forwarder, "corp.example.com"), "corp");
    assert_eq!(group_of(&forwarder, "www.example.com"), "example.com");
    assert_eq!(group_of(&forwarder, "www.example.org"), ".");
    let routes: Vec<String> = forwarder.routes.iter().map(ToString::to_string).collect();
    assert_eq!(
        routes,
        [
            "corp.example.com -> corp [udp://192.0.2.10:53] (forward-first)",
            "example.com -> example.com [udp://192.0.2.20:53, tcp://192.0.2.21:5353]",
        ]
    );
    assert_eq!(
        forwarder.default_route.as_ref().map(ToString::to_string).as_deref(),
        Some(". -> . [https://192.0.2.30:443/dns-query#dns.example]")
    );
    let example = forwarder.upstreams.group("example.com").unwrap();
    assert_eq!(example.name(), "example.com");
    let description = forwarder.describe();
    assert!(description.contains("corp.example.com -> forward corp (forward-first)"), "{description}");
    // Default listeners: UDP and TCP on 127.0.0.1:53.
    assert_eq!(forwarder.server.listeners.len(), 2);
}

#[test]
fn validation_errors_name_line_and_field() {
    let cases: [(&str, usize, &str); 8] = [
        ("[[forward_zones]]\nname = \"a..b\"\nservers = [\"192.0.2.1\"]\n", 2, "invalid domain name"),
        ("[[forward_zones]]\nname = \"a\"\ngroup = \"nope\"\n", 3, "unknown upstream group \"nope\""),
        ("[[forward_zones]]\nname = \"a\"\nservers = [\"192.0.2.1\", \"dns.example\"]\n", 3, "invalid server"),
        ("[[forward_zones]]\nname = \"a\"\n", 2, "has no servers"),
        (
            "[[forward_zones]]\nname = \"a\"\nservers = [\"192.0.2.1\"]\n[[forward_zones]]\nname = \"A.\"\nservers = [\"192.0.2.2\"]\n",
            5,
            "duplicate forward zone",
        ),
        (
            "default_group = \"x\"\n[[upstreams]]\nname = \"x\"\nservers = [{ address = \"192.0.2.1:53\" }]\n[[forward_zones]]\nname = \".\"\nservers = [\"192.0.2.1\"]\n",
            6,
            "not both",
        ),
        ("[[access_control]]\nnetwork = \"10.0.0.0/33\"\naction = \"allow\"\n", 2, "invalid network"),
        (
            "[[rules]]\nsuffix = \"a\"\naction = \"block\"\n\n[[forward_zones]]\nname = \"a\"\nservers = [\"192.0.2.1\"]\n",
            6,
            "duplicate",
        ),
    ];
    for (text, line, needle) in cases {
        let error = build_error(text);
        let message = error.to_string();
        assert!(message.to_lowercase().contains(needle), "{text}: {message}");
        assert_eq!(error.location().and_then(|at| at.line), Some(line), "{text}: {message}");
        assert!(message.starts_with("forward.toml:"), "{message}");
    }
}

#[test]
fn access_control_applies_to_listeners_without_their_own() {
    let forwarder = built(
        "[[listeners]]\naddress = \"127.0.0.1\"\nport = 0\ntransport = \"udp\"\n\n[[listeners]]\naddress = \"127.0.0.1\"\nport = 0\ntransport = \"tcp\"\nallow = [\"127.0.0.1/32\"]\n\n[[access_control]]\nnetwork = \"10.0.0.0/8\"\naction = \"allow\"\n[[access_control]]\nnetwork = \"10.9.0.0/16\"\naction = \"refuse\"\n\n[[forward_zones]]\nname = \".\"\nservers = [\"192.0.2.1\"]\n",
    );
    let udp = forwarder.server.listeners[0].allow.clone().unwrap();
    let allowed = |address: &str| udp.iter().any(|net| net.contains(&address.parse::<IpAddr>().unwrap()));
    assert!(allowed("10.1.1.1") && !allowed("10.9.1.1") && !allowed("127.0.0.1"));
    assert_eq!(forwarder.server.listeners[1].allow.as_ref().map(Vec::len), Some(1));
}

#[test]
fn the_system_group_leaves_out_our_own_listeners() {
    let temp = TempDir::new();
    let dir = temp.path().to_path_buf();
    temp.write("resolv.conf", "nameserver 127.0.0.1\nnameserver 127.0.0.9\nbogus line\n");
    let text = "resolv_conf = \"resolv.conf\"\n[[listeners]]\naddress = \"0.0.0.0\"\nport = 53\ntransport = \"udp\"\n";
    let forwarder = config(text).build(&BuildOptions { base_dir: dir.clone(), ..BuildOptions::default() }).unwrap();
    // 0.0.0.0:53 covers every loopback address: none is left, so there is no default.
    assert!(forwarder.default_route.is_none());
    assert!(forwarder.warnings.iter().any(|warning| matches!(warning, Warning::NoDefaultGroup { .. })));
    assert!(forwarder.warnings.iter().any(|warning| matches!(warning, Warning::ResolvConf { .. })));

    temp.write("resolv.conf", "nameserver 127.0.0.1\nnameserver 192.0.2.9\n");
    let forwarder = config(text).build(&BuildOptions { base_dir: dir.clone(), ..BuildOptions::default() }).unwrap();
    assert_eq!(
        forwarder.default_route.as_ref().map(|route| route.servers.clone()),
        Some(vec!["udp://192.0.2.9:53".to_owned()])
    );
    assert_eq!(group_of(&forwarder, "www.example.net"), SYSTEM_GROUP);

    let missing = config("resolv_conf = \"nope.conf\"\n")
        .build(&BuildOptions { base_dir: dir.clone(), ..BuildOptions::default() });
    assert!(matches!(missing, Err(ConfigError::Config(signpost_rules::Error::Io { .. }))));
}

#[test]
fn zones_and_host_tables_come_from_the_rules_engine() {
    let forwarder = built(
        "[[forward_zones]]\nname = \".\"\nservers = [\"192.0.2.1\"]\n\n[[zones]]\nname = \"lab.example\"\nrecords = [\"www A 10.0.0.1\"]\n\n[[host_tables]]\nname = \"mesh\"\nhosts = [{ name = \"reviews.mesh.local\" }, { name = \"ratings.mesh.local\", addresses = [\"10.7.0.2\"] }]\n",
    );
    let client = Client::udp(IpAddr::from([127, 0, 0, 1]));
    for name in ["www.lab.example", "reviews.mesh.local", "ratings.mesh.local"] {
        let name: NameBuf = name.parse().unwrap();
        assert!(matches!(forwarder.rules.decide_name(&name, RecordType::A, Class::IN, &client), Decision::Local(_)));
    }
    assert_eq!(forwarder.rules.allocations().len(), 1);
}

#[test]
fn formats_follow_the_file_name() {
    assert_eq!(ConfigFormat::of_path("a/forward.toml".as_ref()), ConfigFormat::Toml);
    assert_eq!(ConfigFormat::of_path("/etc/unbound/unbound.conf".as_ref()), ConfigFormat::Unbound);
}

#[test]
fn the_ipv6_wildcard_is_bound_before_the_ipv4_one() {
    // unbound.conf's usual `interface: 0.0.0.0` and `interface: ::0` on one port.
    let forwarder = built(
        "[[listeners]]\naddress = \"0.0.0.0\"\nport = 53\ntransport = \"udp\"\n[[listeners]]\naddress = \"::\"\nport = 53\ntransport = \"udp\"\n[[forward_zones]]\nname = \".\"\nservers = [\"192.0.2.1\"]\n",
    );
    let order: Vec<String> =
        forwarder.server.listeners.iter().map(|listener| listener.socket_address().to_string()).collect();
    assert_eq!(order, ["[::]:53", "0.0.0.0:53"]);
}

/// The example in docs/configuration.md's "Upstream timeouts, overload and
/// metrics" is a valid forward.toml and means what the text says.
#[test]
fn the_documented_timeout_and_overload_example_is_valid() {
    let document = include_str!("../../../docs/configuration.md");
    let section = document.split("### Upstream timeouts, overload and metrics").nth(1).expect("the section");
    let example = section.split("```toml\n").nth(1).and_then(|rest| rest.split("```").next()).expect("a TOML block");
    let config = config(example);
    let group = &config.upstreams[0];
    assert_eq!(group.min_try_timeout, std::time::Duration::from_millis(50));
    assert_eq!((group.max_outstanding, group.queue_timeout), (4096, std::time::Duration::from_millis(100)));
    assert_eq!(config.limits.overload_action, signpost_server::OverloadAction::ServFail);
    assert_eq!(config.listeners[0].receive_buffer, Some(8 << 20));
}

#[test]
fn auth_zones_in_toml_are_checked() {
    let forwarder = built(
        r#"
        forward_zones = [{ name = ".", servers = ["127.0.0.1:9"] }]
        [[auth_zones]]
        name = "corp.example"
        primaries = ["192.0.2.53", "[2001:db8::53]:5300"]
        allow_transfer = ["127.0.0.0/8"]
        notify = ["192.0.2.54", "192.0.2.55@5300"]
        "#,
    );
    let zone = &forwarder.auth_zones[0];
    assert_eq!(zone.notify, ["192.0.2.54:53".parse().unwrap(), "192.0.2.55:5300".parse().unwrap()]);
    assert_eq!(zone.id, "auth-zone corp.example.");
    assert_eq!(zone.primaries[1], "[2001:db8::53]:5300".parse().unwrap());
    assert_eq!(zone.allow_transfer, ["127.0.0.0/8".parse::<ipnet::IpNet>().unwrap()]);
    assert!(zone.answers && !zone.fallback_enabled);

    let error = build_error("[[auth_zones]]\nname = \"corp.example\"\nprimaries = [\"not an address\"]\n");
    assert!(error.to_string().contains("auth_zones[0].primaries"), "{error}");
    let error = build_error("[[auth_zones]]\nname = \"corp.example\"\n");
    assert!(error.to_string().contains("needs primaries"), "{error}");
    let error = build_error("[[auth_zones]]\nname = \"corp.example\"\nzonefile = \"z\"\nnotify = [\"192.0.2.54\"]\n");
    let message = error.to_string();
    assert!(message.contains("auth_zones[0].notify") && message.contains("allow_transfer"), "{message}");
}

#[test]
fn the_dnstap_table_turns_every_message_type_on_and_takes_tls_to_a_tcp_collector() {
    let forwarder = built("[dnstap]\nsocket_path = \"/run/dnstap.sock\"\nidentity = \"node-1\"\n");
    let dnstap = forwarder.server.dnstap.expect("dnstap on");
    assert!(dnstap.enable && dnstap.send_identity && dnstap.send_version);
    assert!(dnstap.log_client_query_messages && dnstap.log_client_response_messages);
    assert!(dnstap.log_forwarder_query_messages && dnstap.log_forwarder_response_messages);
    assert_eq!(dnstap.identity.as_deref(), Some("node-1"));
    let forwarder = built(
        "[dnstap]\naddress = \"127.0.0.1:6000\"\ntls = true\ntls_server_name = \"collector.example\"\n\
         tls_cert_bundle = \"/etc/ca.pem\"\n",
    );
    let dnstap = forwarder.server.dnstap.expect("dnstap on");
    assert!(dnstap.tls);
    assert_eq!(dnstap.tls_server_name.as_deref(), Some("collector.example"));
    let message = build_error("[dnstap]\nsocket_path = \"/run/x.sock\"\ntls = true\n").to_string();
    assert!(message.contains("forward.toml:3") && message.contains("TCP address"), "{message}");
    let message = build_error("[dnstap]\naddress = \"127.0.0.1:6000\"\ntls = true\ntls_client_key_file = \"k.pem\"\n")
        .to_string();
    assert!(message.contains("go together"), "{message}");
    let message = build_error("[dnstap]\nidentity = \"x\"\n").to_string();
    assert!(message.contains("socket_path"), "{message}");
    assert!(ForwarderConfig::from_toml("[dnstap]\nsocket = \"/x\"\n", "forward.toml").is_err());
}
