//! An existing unbound.conf runs unchanged; unsupported options stop start-up
//! (naming each with its line) unless --ignore-unsupported is given.

use std::net::Ipv4Addr;

use signpost_wire::{Rcode, RecordType};

use crate::support::*;

/// A hybrid-network forwarder as people write it for Unbound.
fn realistic(port: u16, corp: [&FakeUpstream; 2], partner: std::net::SocketAddr, root: &FakeUpstream) -> String {
    format!(
        r#"# unbound.conf: on-premises zones to the data centre, the rest to the cloud resolver.
server:
    verbosity: 1
    interface: 127.0.0.1@{port}
    do-ip6: no
    access-control: 0.0.0.0/0 refuse
    access-control: 127.0.0.0/8 allow
    username: ""
    chroot: ""
    directory: "."
    do-daemonize: no
    use-syslog: no
    pidfile: ""
    hide-identity: yes
    hide-version: yes
    num-threads: 1
    prefetch: yes
    qname-minimisation: yes
    so-reuseport: yes
    rrset-roundrobin: yes
    msg-cache-size: 16m
    rrset-cache-size: 32m
    cache-min-ttl: 5
    cache-max-ttl: 60
    module-config: "iterator"
    do-not-query-localhost: no

    # The lab network is served from here.
    local-zone: "lab.internal." static
    local-data: "gitlab.lab.internal. 300 IN A 10.20.0.5"
    local-data: 'lab.internal. 300 IN TXT "lab network"'
    local-data-ptr: "10.20.0.5 gitlab.lab.internal"
    local-zone: "ads.example." always_nxdomain
    local-zone: "blocked.example." refuse
    include: "local.d/printers.conf"

remote-control:
    control-enable: no

forward-zone:
    name: "corp.example.com."
    forward-addr: {corp0}
    forward-addr: {corp1}

forward-zone:
    name: "example.com"
    forward-addr: {partner}
    forward-first: yes

forward-zone:
    name: "."
    forward-addr: {root}
"#,
        corp0 = corp[0].address().to_string().replace(':', "@"),
        corp1 = corp[1].address().to_string().replace(':', "@"),
        partner = partner.to_string().replace(':', "@"),
        root = root.address().to_string().replace(':', "@"),
    )
}

#[tokio::test]
async fn a_realistic_unbound_conf_runs_unchanged() {
    let corp_primary = FakeUpstream::servfail().await;
    let corp_secondary = FakeUpstream::answering(Ipv4Addr::new(10, 1, 0, 1)).await;
    let root = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 80)).await;
    let partner = closed_udp_port();
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.join("local.d")).unwrap();
    dir.write("local.d/printers.conf", "    local-data: \"printer.lab.internal. A 10.20.0.9\"\n");
    // interface: 127.0.0.1@0, a port the kernel picks.
    let config = dir.write("unbound.conf", realistic(0, [&corp_primary, &corp_secondary], partner, &root));
    let (child, address) = start_binary(&["--unbound-conf", &config.to_string_lossy()]).await;
    assert_eq!(address.ip(), Ipv4Addr::LOCALHOST, "the interface: line is where it listens");
    assert_ne!(address.port(), 0);

    // Local data, from the file and its include, with no upstream packet.
    assert_eq!(records(address, "gitlab.lab.internal.", RecordType::A).await, [(300, "10.20.0.5".to_owned())]);
    assert_eq!(addresses(address, "printer.lab.internal.").await, ["10.20.0.9"]);
    assert_eq!(
        records(address, "5.0.20.10.in-addr.arpa.", RecordType::PTR).await,
        [(3600, "gitlab.lab.internal.".to_owned())]
    );
    assert_eq!(records(address, "lab.internal.", RecordType::TXT).await, [(300, "lab network".to_owned())]);
    assert_eq!(ask(address, "nosuch.lab.internal", RecordType::A).await.unwrap().0, Rcode::NXDOMAIN);
    assert_eq!(ask(address, "x.ads.example", RecordType::A).await.unwrap().0, Rcode::NXDOMAIN);
    assert_eq!(ask(address, "x.blocked.example", RecordType::A).await.unwrap().0, Rcode::REFUSED);
    assert_eq!(ask(address, "localhost", RecordType::A).await.unwrap().1, ["localhost. 10800 IN A 127.0.0.1"]);
    assert_eq!(root.query_count() + corp_primary.query_count() + corp_secondary.query_count(), 0);

    // corp.example.com: the first forwarder's SERVFAIL is thrown away and the next asked, as Unbound does.
    assert_eq!(addresses(address, "db.corp.example.com.").await, ["10.1.0.1"]);
    assert_eq!((corp_primary.query_count(), corp_secondary.query_count()), (1, 1));
    // example.com: its forwarder is down; forward-first falls back to the default (".").
    assert_eq!(addresses(address, "www.example.com.").await, ["192.0.2.80"]);
    // Everything else goes to ".", and cache-max-ttl caps the TTL of cached answers.
    assert_eq!(addresses(address, "www.example.org.").await, ["192.0.2.80"]);
    let cached = records(address, "www.example.org.", RecordType::A).await;
    assert!(cached[0].0 <= 60, "cache-max-ttl: 60 not applied: {cached:?}");
    assert_eq!(root.names(), ["www.example.com.", "www.example.org."]);
    assert!(stop(child).await);
}

#[tokio::test]
async fn unsupported_clauses_are_named_and_stop_start_up_unless_ignored() {
    let dir = TempDir::new();
    let config = dir.write(
        "unbound.conf",
        format!(
            "server:\n  interface: 127.0.0.1@0\n  private-address: 10.0.0.0/8\n  local-zone: \"home.lan.\" static\n\nrpz:\n  name: \"rpz.example\"\n  zonefile: \"rpz.zone\"\n\nforward-zone:\n  name: \".\"\n  forward-addr: 127.0.0.1@{}\nserver:\n  do-not-query-localhost: no\n",
            closed_udp_port().port()
        ),
    );
    let config = config.to_string_lossy().into_owned();
    let Finished { status, stderr, .. } = run_to_end(&["--unbound-conf", &config]).await;
    assert!(!status.success());
    assert!(stderr.contains("unbound.conf:3:3: private-address: is not supported"), "{stderr}");
    assert!(stderr.contains("unbound.conf:6:1: rpz: is not supported"), "{stderr}");
    assert!(stderr.contains("--ignore-unsupported"), "{stderr}");

    let Finished { status, stdout, .. } = run_to_end(&["check-config", &config, "--ignore-unsupported"]).await;
    assert!(status.success(), "{stdout}");
    let (child, address) = start_binary(&["--unbound-conf", &config, "--ignore-unsupported"]).await;
    child.wait_for_stderr("rpz: is not supported", PATIENCE).await.unwrap();
    let answer = ask(address, "x.home.lan", RecordType::A).await;
    assert_eq!(answer.map(|(rcode, _)| rcode), Some(Rcode::NXDOMAIN));
    assert!(stop(child).await);
}
