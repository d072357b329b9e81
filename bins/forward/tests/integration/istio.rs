//! `signpost-forward istio`: the binary as Istio's DNS proxy, with the
//! ServiceEntries of Istio's "DNS Proxying" document and a Kubernetes
//! Service, asked by hickory-resolver configured as a pod's stub resolver
//! (search list, ndots 5) and by raw queries.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::Name;
use signpost_testkit::{ResolverAnswer, lookup, query, udp_exchange};
use signpost_wire::{Message, Rcode, RecordType};

use crate::support::*;

/// The two ServiceEntries of Istio's DNS Proxying document, as printed there.
const DOCUMENT_ENTRIES: &str = "apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata:
  name: external-address
spec:
  addresses:
  - 198.51.100.0
  hosts:
  - address.internal
  ports:
  - name: http
    number: 80
    protocol: HTTP
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata:
  name: external-auto
spec:
  hosts:
  - auto.internal
  ports:
  - name: http
    number: 80
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: 198.51.100.2
";

/// A Kubernetes Service as `kubectl get svc -o json` prints it (trimmed).
const REVIEWS_SERVICE: &str = r#"{"apiVersion": "v1", "kind": "Service",
  "metadata": {"name": "reviews", "namespace": "bookinfo"},
  "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ports": [{"port": 9080}], "type": "ClusterIP"}}"#;

const SEARCH: [&str; 3] = ["bookinfo.svc.cluster.local", "svc.cluster.local", "cluster.local"];

/// A pod's stub resolver: the proxy as its nameserver, the search list and ndots 5 of a pod's resolv.conf.
fn pod_resolver(proxy: SocketAddr) -> TokioResolver {
    let mut connection = ConnectionConfig::udp();
    connection.port = proxy.port();
    let server = NameServerConfig::new(proxy.ip(), true, vec![connection]);
    let search = SEARCH.iter().map(|domain| Name::from_ascii(domain).unwrap()).collect();
    let config = ResolverConfig::from_parts(None, search, vec![server]);
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    let options = builder.options_mut();
    options.ndots = 5;
    options.attempts = 1;
    options.timeout = Duration::from_secs(3);
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    builder.build().unwrap()
}

/// Start `signpost-forward istio` on 127.0.0.1:0 with `upstream` as the
/// resolv.conf nameserver and the manifests in `dir/mesh`.
async fn start_istio(dir: &TempDir, upstream: &FakeUpstream, extra: &[&str]) -> (RunningBinary, SocketAddr) {
    let resolv = dir.write(
        "resolv.conf",
        format!("nameserver {}\nsearch {}\noptions ndots:5\n", upstream.address(), SEARCH.join(" ")),
    );
    let mesh = dir.path().join("mesh");
    let resolv = resolv.to_string_lossy().into_owned();
    let mesh = mesh.to_string_lossy().into_owned();
    let mut args = vec!["--resolv-conf", &resolv, "--watch-config", "istio", "--service-entries", &mesh];
    args.extend(["--proxy-address", "127.0.0.1:0", "--namespace", "bookinfo"]);
    args.extend(extra);
    start_binary(&args).await
}

#[tokio::test]
async fn the_documents_service_entries_answer_and_everything_else_is_forwarded() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 53)).await;
    let dir = TempDir::new();
    dir.write("mesh/document.yaml", DOCUMENT_ENTRIES);
    dir.write("mesh/reviews.json", REVIEWS_SERVICE);
    let (child, proxy) = start_istio(&dir, &upstream, &[]).await;
    let printed = child.stdout_lines();
    assert!(printed.iter().any(|line| line == "istio host auto.internal 240.240.0.1"), "{printed:?}");

    // The document's answers, with istio-agent's TTL.
    assert_eq!(records(proxy, "address.internal.", RecordType::A).await, [(30, "198.51.100.0".to_owned())]);
    assert_eq!(records(proxy, "auto.internal.", RecordType::A).await, [(30, "240.240.0.1".to_owned())]);
    // AA on local answers; a known host without IPv6 is NOERROR and empty, not forwarded.
    let response = udp_exchange(proxy, &query("auto.internal.", RecordType::A), Duration::from_secs(3)).await.unwrap();
    assert!(Message::parse(&response).unwrap().header().flags.aa());
    let resolver = signpost_testkit::resolver(Transport::Udp, proxy);
    assert_eq!(lookup(&resolver, "auto.internal.", RecordType::AAAA).await, ResolverAnswer::NoData { soa: false });
    // Other types of a known host and unknown names go upstream.
    assert_eq!(ask(proxy, "auto.internal.", RecordType::TXT).await.map(|(rcode, _)| rcode), Some(Rcode::NOERROR));
    assert!(upstream.was_asked("auto.internal."), "TXT is forwarded: {:?}", upstream.names());
    assert_eq!(addresses(proxy, "www.example.org.").await, ["192.0.2.53"]);
    let asked_before = upstream.names().len();

    // A pod resolving short names: the search-domain shortcut answers the
    // first expansion with a CNAME, so nothing more is asked upstream.
    let pod = pod_resolver(proxy);
    // hickory asks auto.internal.bookinfo.svc.cluster.local first and gets the CNAME with the address.
    assert_eq!(
        lookup(&pod, "auto.internal", RecordType::A).await,
        ResolverAnswer::data(["auto.internal.", "240.240.0.1"])
    );
    assert_eq!(lookup(&pod, "reviews", RecordType::A).await, ResolverAnswer::data(["10.96.0.10"]));
    for short in ["reviews.bookinfo.", "reviews.bookinfo.svc.", "reviews.bookinfo.svc.cluster.local."] {
        assert_eq!(addresses(proxy, short).await, ["10.96.0.10"], "{short}");
    }
    assert_eq!(upstream.names().len(), asked_before, "asked upstream: {:?}", upstream.names());
    let response =
        udp_exchange(proxy, &query("auto.internal.bookinfo.svc.cluster.local.", RecordType::A), Duration::from_secs(3))
            .await
            .unwrap();
    assert_eq!(
        signpost_testkit::answers(&response),
        ["auto.internal.bookinfo.svc.cluster.local. 30 IN CNAME auto.internal.", "auto.internal. 30 IN A 240.240.0.1"]
    );
    assert!(stop(child).await);
}

#[tokio::test]
async fn a_changed_directory_is_read_again_and_a_broken_one_keeps_the_table() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 53)).await;
    let dir = TempDir::new();
    dir.write("mesh/document.yaml", DOCUMENT_ENTRIES);
    let (child, proxy) = start_istio(&dir, &upstream, &["--allocator", "hashed"]).await;
    let hashed = signpost_rules::IstioAllocator::Hashed.allocate(&[signpost_rules::IstioService {
        namespace: "bookinfo".into(),
        hostname: "auto.internal".into(),
        allocatable: true,
    }]);
    let expected = hashed[0].unwrap().v4.to_string();
    assert_eq!(addresses(proxy, "auto.internal.").await, std::slice::from_ref(&expected));

    dir.write(
        "mesh/db.yaml",
        "kind: ServiceEntry\nmetadata: {name: db, namespace: data}\nspec:\n  hosts: [db.corp.example]\n  addresses: [10.20.0.5]\n  resolution: STATIC\n",
    );
    let answered = eventually(Duration::from_secs(10), || async {
        ask(proxy, "db.corp.example.", RecordType::A)
            .await
            .is_some_and(|(_, answers)| answers == ["db.corp.example. 30 IN A 10.20.0.5"])
    })
    .await;
    assert!(answered, "the new ServiceEntry was not picked up");

    dir.write("mesh/broken.yaml", "kind: ServiceEntry\nspec:\n  hosts: 7\n");
    child.wait_for_stderr("reload failed", PATIENCE * 2).await.unwrap();
    assert_eq!(ask(proxy, "db.corp.example.", RecordType::A).await.unwrap().1, ["db.corp.example. 30 IN A 10.20.0.5"]);
    assert_eq!(addresses(proxy, "auto.internal.").await, [expected]);
    assert!(stop(child).await);
}

#[tokio::test]
async fn a_bad_manifest_stops_start_up_with_its_file() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 53)).await;
    let dir = TempDir::new();
    dir.write("mesh/bad.yaml", "kind: ServiceEntry\nspec:\n  hosts: [a.example]\n  addresses: {not: a list}\n");
    let resolv = dir.write("resolv.conf", format!("nameserver {}\n", upstream.address()));
    let mesh = dir.path().join("mesh");
    let finished = run_to_end(&[
        "--resolv-conf",
        &resolv.to_string_lossy(),
        "istio",
        "--service-entries",
        &mesh.to_string_lossy(),
        "--proxy-address",
        "127.0.0.1:0",
    ])
    .await;
    assert!(!finished.status.success());
    assert!(
        finished.stderr.contains("bad.yaml") && finished.stderr.contains("documents[0].spec"),
        "{}",
        finished.stderr
    );
}

/// The capture script (deploy/istio/dns-capture.sh) in a network namespace
/// this test creates: a "pod" whose resolv.conf names kube-dns at
/// 10.96.0.10 (an unbound on that address inside the namespace), the proxy
/// running as Istio's uid 1337 on 127.0.0.1:15053, and dig asking kube-dns
/// directly, as a client with an unchanged resolv.conf does. Mesh names are
/// answered by the proxy; other names reach unbound through the proxy, whose
/// own queries the rules leave alone; after `remove` dig reaches unbound directly.
#[test]
fn dns_capture_in_a_network_namespace_sends_port_53_to_the_proxy() {
    let missing: Vec<&str> =
        ["unshare", "iptables", "ip", "setpriv", "dig", "unbound"].into_iter().filter(|tool| !on_path(tool)).collect();
    assert!(missing.is_empty(), "the capture test needs {missing:?} (installed by .ci/run's peers)");
    // SAFETY of the network: everything below runs in a fresh network namespace with only loopback.
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the capture test needs root: network namespaces and iptables"
    );
    let dir = TempDir::new();
    dir.write("mesh/document.yaml", DOCUMENT_ENTRIES);
    dir.write("pod-resolv.conf", "nameserver 10.96.0.10\nsearch bookinfo.svc.cluster.local svc.cluster.local\n");
    dir.write(
        "kube-dns.conf",
        "server:\n  interface: 10.96.0.10\n  port: 53\n  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n  pidfile: \"\"\n  use-syslog: no\n  access-control: 0.0.0.0/0 allow\n  local-zone: \"example.org.\" static\n  local-data: \"www.example.org. 60 IN A 192.0.2.99\"\nremote-control:\n  control-enable: no\n",
    );
    let script = format!(
        r#"set -u
dir={dir}
chmod -R a+rX "$dir"
ip link set lo up
ip addr add 10.96.0.10/32 dev lo
unbound -c "$dir/kube-dns.conf" >"$dir/unbound.log" 2>&1 &
kube_dns=$!
{capture} install --resolv-conf "$dir/pod-resolv.conf"
setpriv --reuid 1337 --regid 1337 --clear-groups {forward} --resolv-conf "$dir/pod-resolv.conf" istio \
  --service-entries "$dir/mesh" --proxy-address 127.0.0.1:15053 >"$dir/proxy.log" 2>&1 &
proxy=$!
for _ in $(seq 1 50); do
  grep -q '^ready$' "$dir/proxy.log" && dig +short +time=1 +tries=1 @10.96.0.10 -p 53 www.example.org A >/dev/null 2>&1 && break
  sleep 0.2
done
echo "udp $(dig +short +time=2 +tries=1 @10.96.0.10 auto.internal A)"
echo "tcp $(dig +tcp +short +time=2 +tries=1 @10.96.0.10 auto.internal A)"
echo "forwarded $(dig +short +time=2 +tries=1 @10.96.0.10 www.example.org A)"
echo "aa $(dig +time=2 +tries=1 @10.96.0.10 address.internal A | grep -c 'flags: qr aa')"
{capture} remove
echo "removed $(dig +short +time=2 +tries=1 @10.96.0.10 auto.internal A | head -n 1)"
echo "rules $(iptables-save | grep -c SIGNPOST)"
kill $proxy $kube_dns
wait
"#,
        dir = dir.path().display(),
        capture = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/istio/dns-capture.sh"),
        forward = env!("CARGO_BIN_EXE_signpost-forward"),
    );
    let output =
        std::process::Command::new("timeout").args(["60", "unshare", "--net", "sh", "-c", &script]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let logs = std::fs::read_to_string(dir.path().join("proxy.log")).unwrap_or_default();
    let context = format!("{stdout}\nstderr: {}\nproxy: {logs}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = stdout.lines().map(str::trim_end).collect();
    assert!(lines.contains(&"udp 240.240.0.1"), "{context}");
    assert!(lines.contains(&"tcp 240.240.0.1"), "{context}");
    assert!(lines.contains(&"forwarded 192.0.2.99"), "{context}");
    assert!(lines.contains(&"aa 1"), "{context}");
    // Without capture kube-dns itself answers: auto.internal is no name of its.
    assert!(lines.contains(&"removed"), "{context}");
    assert!(lines.contains(&"rules 0"), "{context}");
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

#[tokio::test]
async fn dns_forward_parallel_asks_every_nameserver_at_once() {
    for parallel in [false, true] {
        let first = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
        let second = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 2)).await;
        let dir = TempDir::new();
        dir.write("mesh/document.yaml", DOCUMENT_ENTRIES);
        let resolv =
            dir.write("resolv.conf", format!("nameserver {}\nnameserver {}\n", first.address(), second.address()));
        let (child, proxy) = start_binary(&[
            "--resolv-conf",
            &resolv.to_string_lossy(),
            "istio",
            "--service-entries",
            &dir.path().join("mesh").to_string_lossy(),
            "--proxy-address",
            "127.0.0.1:0",
            "--forward-parallel",
            &parallel.to_string(),
        ])
        .await;
        let answer = addresses(proxy, "www.example.org.").await;
        assert!(answer == ["192.0.2.1"] || (parallel && answer == ["192.0.2.2"]), "{answer:?}");
        // In parallel mode the second's answer can arrive before the first
        // fake has recorded the query it was sent at the same moment.
        let first_asked = eventually(Duration::from_secs(5), || async { first.was_asked("www.example.org.") }).await;
        assert!(first_asked, "the first nameserver was not asked");
        if parallel {
            let both = eventually(Duration::from_secs(5), || async { second.was_asked("www.example.org.") }).await;
            assert!(both, "DNS_FORWARD_PARALLEL: the second nameserver was not asked");
        } else {
            assert!(!second.was_asked("www.example.org."), "one after the other: the second is asked only on failure");
        }
        assert!(stop(child).await);
    }
}
