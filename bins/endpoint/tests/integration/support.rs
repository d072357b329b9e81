//! An "on-premises" Signpost server, the emulator started from TOML, and
//! short ways to reach its listeners; fake upstreams, clients,
//! certificates and temp dirs come from signpost-testkit.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use signpost_endpoint::{Endpoint, EndpointConfig, ListenerRole};
use signpost_rules::RuleSet;
use signpost_rules::config::RulesConfig;
use signpost_server::{ListenerConfig, LogDestination, Server, ServerConfig, ServerHandle};
pub(crate) use signpost_testkit::{
    Binary, FakeUpstream, Query, ResolverBuilder, RunningBinary, Signal, TempDir, TokioResolver, Transport, ask_from,
    free_port, resolver,
};
use signpost_testkit::{TestCertificates, file_lines, lookup};
use signpost_wire::RecordType;

use crate::aws::Aws;

/// How long the binary's start-up may take.
const STARTUP: Duration = Duration::from_secs(10);

/// The signpost-endpoint binary.
pub(crate) fn endpoint_binary() -> Binary {
    Binary::new(env!("CARGO_BIN_EXE_signpost-endpoint"))
}

/// Start the binary with `args` and `RUST_LOG=rust_log`; ready once it prints `ready`.
pub(crate) async fn start_binary(args: &[OsString], rust_log: &str) -> RunningBinary {
    try_start_binary(args, rust_log).await.unwrap_or_else(|error| panic!("{error}"))
}

/// [`start_binary`], the failure returned.
async fn try_start_binary(args: &[OsString], rust_log: &str) -> Result<RunningBinary, signpost_testkit::Error> {
    endpoint_binary()
        .args(args.iter().cloned())
        .env("RUST_LOG", rust_log)
        .ready_when(|line| line == "ready")
        .startup_timeout(STARTUP)
        .start()
        .await
}

/// The binary's arguments for an API on a free port, the VPC resolvers on
/// `dns_port`, DoH on a free port and `recursive` as the recursive default.
pub(crate) fn api_args(state: Option<&Path>, recursive: SocketAddr, dns_port: u16) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--api".into(), "127.0.0.1:0".into()];
    if let Some(state) = state {
        args.extend(["--state".into(), state.as_os_str().to_owned()]);
    }
    args.extend([
        "--dns-port".into(),
        dns_port.to_string().into(),
        "--doh-port".into(),
        "0".into(),
        "--recursive".into(),
        recursive.to_string().into(),
    ]);
    args
}

/// TOML for VPC `vpc-NAME` over 127.0.OCTET.0/24 with a Do53 inbound
/// endpoint `rslvr-in-NAME` on 127.0.OCTET.10 and .11, `port`.
fn vpc_with_inbound(name: &str, octet: u8, port: u16) -> String {
    format!(
        r#"
        [[vpcs]]
        id = "vpc-{name}"
        cidrs = ["127.0.{octet}.0/24"]

        [[inbound_endpoints]]
        id = "rslvr-in-{name}"
        vpc = "vpc-{name}"
        addresses = ["127.0.{octet}.10", "127.0.{octet}.11"]
        protocols = ["Do53"]
        port = {port}
        "#
    )
}

/// The binary started by [`start_with_inbound`], and the ports it serves.
pub(crate) struct WithInbound {
    /// The child.
    pub(crate) running: RunningBinary,
    /// Its arguments, to start it again.
    pub(crate) args: Vec<OsString>,
    /// A client of its AWS API.
    pub(crate) aws: Aws,
    /// The VPC resolvers' port.
    pub(crate) port: u16,
    /// The inbound endpoint's port.
    pub(crate) inbound_port: u16,
}

/// The binary on VPC `vpc-NAME` with its Do53 inbound endpoint (see
/// [`vpc_with_inbound`]), both on free ports, and `resources` (TOML) after
/// them; `recursive` is the recursive default, logging at `info`.
pub(crate) async fn start_with_inbound(
    dir: &TempDir,
    (name, octet): (&str, u8),
    resources: &str,
    state: Option<&Path>,
    recursive: SocketAddr,
) -> WithInbound {
    // The two ports are free when picked, not when the binary binds them:
    // another test can take one in between. Then start again on new ones.
    let started = signpost_testkit::retry_addr_in_use(|| {
        let port = free_port();
        let inbound_port = std::iter::repeat_with(free_port).find(|&other| other != port).unwrap_or(port);
        let toml = format!("{}{resources}", vpc_with_inbound(name, octet, inbound_port));
        let args = config_args(dir, &toml, state, recursive, port);
        async move {
            let running = try_start_binary(&args, "info").await?;
            let aws = Aws::new(api_address(&running));
            Ok::<_, signpost_testkit::Error>(WithInbound { running, args, aws, port, inbound_port })
        }
    })
    .await;
    started.unwrap_or_else(|error| panic!("{error}"))
}

/// The SOA and NS records Route 53 gives a new hosted zone, as TOML strings.
pub(crate) const ROUTE53_APEX_RECORDS: &str = r#""@ 900 IN SOA ns-1536.awsdns-00.co.uk. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400",
                       "@ 172800 IN NS ns-1536.awsdns-00.co.uk.""#;

/// Write `toml` to `dir`/endpoint.toml: the binary's arguments for it with [`api_args`].
pub(crate) fn config_args(
    dir: &TempDir,
    toml: &str,
    state: Option<&Path>,
    recursive: SocketAddr,
    dns_port: u16,
) -> Vec<OsString> {
    let config = dir.write("endpoint.toml", toml.as_bytes());
    let mut args: Vec<OsString> = vec!["--config".into(), config.into_os_string()];
    args.extend(api_args(state, recursive, dns_port));
    args
}

/// The API address a running binary printed (`api http://ADDR`).
pub(crate) fn api_address(running: &RunningBinary) -> SocketAddr {
    running
        .stdout_lines()
        .iter()
        .find_map(|line| line.strip_prefix("api http://").and_then(|address| address.parse().ok()))
        .unwrap_or_else(|| panic!("no api line in {:?}", running.stdout_lines()))
}

/// The test certificates in a test's directory: the leaf (`cert`, `key`)
/// that listeners present and the CA (`ca`) that clients trust.
pub(crate) struct TestTls {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) ca: PathBuf,
    certificates: TestCertificates,
}

pub(crate) fn certificate(dir: &Path) -> TestTls {
    let certificates = TestCertificates::new().unwrap();
    let files = certificates.write_to(dir).unwrap();
    TestTls { cert: files.cert, key: files.key, ca: files.ca, certificates }
}

impl TestTls {
    /// A hickory DoH client for `server` trusting the test CA.
    pub(crate) fn doh_client(&self, server: SocketAddr) -> TokioResolver {
        let tls = self.certificates.client_config(&[b"h2"]).unwrap();
        ResolverBuilder::new(Transport::Doh, server).tls(tls).build().unwrap()
    }
}

/// What most tests start from: a directory, the test certificates in it,
/// and the recursive default (a fake answering every A question with
/// [`RECURSIVE_ANSWER`]).
pub(crate) struct Basics {
    pub(crate) dir: TempDir,
    pub(crate) certificate: TestTls,
    pub(crate) recursive: FakeUpstream,
}

pub(crate) async fn basics() -> Basics {
    let dir = TempDir::new();
    let certificate = certificate(dir.path());
    Basics { dir, certificate, recursive: FakeUpstream::answering(RECURSIVE_ANSWER).await }
}

/// A hickory client for `server` over `transport`, sending from `source`
/// (a "VPC" address).
pub(crate) fn resolver_from(transport: Transport, server: SocketAddr, source: IpAddr) -> TokioResolver {
    ResolverBuilder::new(transport, server).source(source).build().unwrap()
}

/// The IPv4 addresses hickory finds for `name` (empty on NXDOMAIN, NODATA or no answer).
pub(crate) async fn lookup_v4(resolver: &TokioResolver, name: &str) -> Vec<Ipv4Addr> {
    lookup(resolver, name, RecordType::A).await.ipv4()
}

/// The rcode and answer lines of `name` A asked over UDP from `source`.
pub(crate) async fn ask(server: SocketAddr, source: IpAddr, name: &str) -> Option<(signpost_wire::Rcode, Vec<String>)> {
    ask_from(source, server, name, RecordType::A).await
}

/// An "on-premises" DNS server: a second Signpost holding `onprem.example`
/// (and `corp.example`, to show precedence), on UDP, TCP and DoH, logging
/// every query to a file.
pub(crate) struct OnPremises {
    pub(crate) server: ServerHandle,
    pub(crate) log: PathBuf,
}

pub(crate) const ONPREM_ZONES: &str = r#"
[[zones]]
name = "onprem.example"
records = ["db 60 A 10.99.0.10", "public 60 A 10.99.0.20", "app.sub 60 A 10.99.0.30"]

[[zones]]
name = "corp.example"
records = ["www 60 A 10.99.1.1", "api 60 A 10.99.1.2", "x.dev 60 A 10.99.1.3"]
"#;

impl OnPremises {
    pub(crate) async fn start(dir: &Path, certificate: &TestTls) -> Self {
        let log = dir.join("onprem-queries.log");
        let mut config = ServerConfig::default();
        let mut udp = ListenerConfig::new(Transport::Udp, "127.0.0.1:0".parse().unwrap());
        udp.workers = Some(1);
        config.listeners.push(udp);
        config.listeners.push(ListenerConfig::new(Transport::Tcp, "127.0.0.1:0".parse().unwrap()));
        let mut doh = ListenerConfig::new(Transport::Doh, "127.0.0.1:0".parse().unwrap());
        doh.tls_cert = Some(certificate.cert.clone());
        doh.tls_key = Some(certificate.key.clone());
        config.listeners.push(doh);
        config.query_log.enabled = true;
        config.query_log.destination = LogDestination::File(log.clone());
        let rules = RulesConfig::from_toml(ONPREM_ZONES, "onprem.toml").unwrap();
        let make_rules = || RuleSet::from_config(&rules, ".".as_ref(), &[]).unwrap();
        let server = Server::builder().config(config).rules(make_rules()).start().await.unwrap();
        Self { server, log }
    }

    pub(crate) fn udp(&self) -> SocketAddr {
        self.server.udp_addrs()[0]
    }

    pub(crate) fn doh(&self) -> SocketAddr {
        self.server.doh_addrs()[0]
    }
}

/// Lines of a JSON-lines file, once at least `count` are there (5 s at most).
pub(crate) async fn json_lines(path: &Path, count: usize) -> Vec<serde_json::Value> {
    let lines = file_lines(path, count, Duration::from_secs(5)).await;
    lines.iter().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

/// Parse an endpoint configuration as if read from `dir`/endpoint.toml.
pub(crate) fn config(dir: &Path, text: &str) -> EndpointConfig {
    EndpointConfig::from_toml(text, dir.join("endpoint.toml")).unwrap_or_else(|error| panic!("{error}"))
}

pub(crate) async fn start(dir: &Path, text: &str) -> Endpoint {
    Endpoint::start(config(dir, text)).await.unwrap_or_else(|error| panic!("{error}"))
}

/// The UDP address of a VPC's resolver.
pub(crate) fn vpc_resolver(endpoint: &Endpoint, vpc: &str) -> SocketAddr {
    endpoint.addresses(&ListenerRole::VpcResolver { vpc: vpc.into() }, Transport::Udp)[0]
}

/// The addresses of an inbound endpoint over `transport`.
pub(crate) fn inbound(endpoint: &Endpoint, id: &str, vpc: &str, transport: Transport) -> Vec<SocketAddr> {
    endpoint.addresses(&ListenerRole::InboundEndpoint { endpoint: id.into(), vpc: vpc.into() }, transport)
}

/// A counter from Prometheus text, by its full name with labels.
pub(crate) fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

pub(crate) const VPC_A_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1));
pub(crate) const VPC_B_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1));
pub(crate) const ONPREM_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The two VPCs of the tests: vpc-a on 127.0.1.0/24 and vpc-b on 127.0.2.0/24.
pub(crate) const VPCS: &str =
    r#"{ id = "vpc-a", cidrs = ["127.0.1.0/24"] }, { id = "vpc-b", cidrs = ["127.0.2.0/24"] }"#;

/// Two VPCs ([`VPCS`]) with their resolvers on free ports, the recursive
/// default at `recursive`, and `extra` TOML after.
pub(crate) fn two_vpcs(recursive: SocketAddr, extra: &str) -> String {
    with_vpcs(recursive, VPCS, extra)
}

/// [`two_vpcs`] with other VPCs (TOML inline tables).
pub(crate) fn with_vpcs(recursive: SocketAddr, vpcs: &str, extra: &str) -> String {
    format!(
        "resolver_port = 0\nudp_workers = 1\nrecursive = {{ servers = [\"{recursive}\"] }}\nvpcs = [{vpcs}]\n{extra}\n"
    )
}

/// The answer the fake recursive default gives every A query.
pub(crate) const RECURSIVE_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

/// A FORWARD resolver rule for `domain` through outbound endpoint
/// rslvr-out-a to `targets` (a TOML list), associated with `vpcs` (a TOML list).
pub(crate) fn forward_rule(id: &str, domain: &str, targets: &str, vpcs: &str) -> String {
    format!(
        "\n[[resolver_rules]]\nid = \"{id}\"\ntype = \"FORWARD\"\ndomain = \"{domain}\"\noutbound_endpoint = \"rslvr-out-a\"\n\
         targets = {targets}\nvpcs = {vpcs}\n"
    )
}

/// A SYSTEM resolver rule for `domain`, associated with `vpcs` (a TOML list).
pub(crate) fn system_rule(id: &str, domain: &str, vpcs: &str) -> String {
    format!("\n[[resolver_rules]]\nid = \"{id}\"\ntype = \"SYSTEM\"\ndomain = \"{domain}\"\nvpcs = {vpcs}\n")
}

/// Inbound endpoint `rslvr-in-a` of vpc-a on 127.0.1.10 and 127.0.1.11
/// (free ports) with these protocols (a TOML list), presenting the test
/// certificate when given (else the file's `[tls]` one).
pub(crate) fn inbound_endpoint(protocols: &str, certificate: Option<&TestTls>) -> String {
    let tls = certificate.map_or(String::new(), |certificate| {
        format!("tls_cert = \"{}\"\ntls_key = \"{}\"\n", certificate.cert.display(), certificate.key.display())
    });
    format!(
        "\n[[inbound_endpoints]]\nid = \"rslvr-in-a\"\nvpc = \"vpc-a\"\naddresses = [\"127.0.1.10\", \"127.0.1.11\"]\n\
         protocols = {protocols}\nport = 0\ndoh_port = 0\n{tls}"
    )
}
