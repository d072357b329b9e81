//! `signpost-redirect check`: does the redirection work end to end? Ask
//! Signpost directly, then the system resolver named in resolv.conf, and say
//! which part fails.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use signpost_redirect::{LOCALSTACK_DOMAIN, RedirectSettings};
use signpost_upstream::{GroupConfig, RetryOn, ServerConfig as UpstreamServer, Upstreams};
use signpost_wire::{Class, EdnsHeader, Flags, Message, MessageBuilder, NameBuf, RData, Rcode, RecordType};

/// The name whose public record is 127.0.0.1: routers with DNS-rebind
/// protection drop exactly this kind of answer.
const REBIND_PROBE: &str = "test.localhost.localstack.cloud";

/// What one query gave.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// NOERROR with these A records (anywhere in the answer, after CNAMEs).
    Addresses(Vec<Ipv4Addr>),
    /// An answer without an address: NODATA, NXDOMAIN, REFUSED, SERVFAIL...
    NoAddress(Rcode),
    /// No answer at all.
    Silent(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Addresses(addresses) => {
                let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                f.write_str(&list.join(", "))
            }
            Self::NoAddress(Rcode::NOERROR) => f.write_str("no address (NOERROR, empty answer)"),
            Self::NoAddress(rcode) => write!(f, "no address ({rcode})"),
            Self::Silent(error) => write!(f, "no answer ({error})"),
        }
    }
}

impl Outcome {
    fn addresses(&self) -> &[Ipv4Addr] {
        match self {
            Self::Addresses(addresses) => addresses,
            _ => &[],
        }
    }
}

/// Ask `server` for the A records of `name`, once, within about 2 s.
async fn ask(server: SocketAddr, name: &str) -> Outcome {
    let Ok(name_buf) = name.parse::<NameBuf>() else { return Outcome::Silent(format!("{name} is not a name")) };
    let mut query = Vec::new();
    let built = (|| {
        let mut builder = MessageBuilder::new(&mut query)?;
        builder.set_flags(Flags::default().with_rd(true));
        builder.push_question(&name_buf, RecordType::A, Class::IN)?;
        builder.set_edns(EdnsHeader::default());
        builder.finish()
    })();
    if built.is_err() {
        return Outcome::Silent("the query could not be built".into());
    }
    let mut group = GroupConfig::new("check", vec![UpstreamServer::udp(server)]);
    group.retry_on = RetryOn::NOTHING;
    group.per_try_timeout = Duration::from_secs(2);
    group.total_timeout = Duration::from_millis(2_500);
    group.max_fails = 0;
    let upstreams = match Upstreams::new(vec![group]) {
        Ok(upstreams) => upstreams,
        Err(error) => return Outcome::Silent(error.to_string()),
    };
    let Some(group) = upstreams.group("check") else { return Outcome::Silent("no group".into()) };
    let resolved = match group.resolve(&query).await {
        Ok(resolved) => resolved,
        Err(error) if error.is_timeout() => return Outcome::Silent(format!("timed out asking {server}")),
        Err(error) if error.is_unreachable() => return Outcome::Silent(format!("{server} is unreachable")),
        Err(error) => return Outcome::Silent(error.to_string()),
    };
    let Ok(message) = Message::parse(&resolved.response) else { return Outcome::Silent("malformed answer".into()) };
    let rcode = message.rcode().unwrap_or(Rcode::SERVFAIL);
    let mut addresses = Vec::new();
    if let Ok(answers) = message.answers() {
        for record in answers.flatten() {
            if let Ok(RData::A(address)) = record.data() {
                addresses.push(address);
            }
        }
    }
    if rcode == Rcode::NOERROR && !addresses.is_empty() {
        Outcome::Addresses(addresses)
    } else {
        Outcome::NoAddress(rcode)
    }
}

/// The nameservers of a resolv.conf; besides glibc's `nameserver IP`, an
/// `IP:PORT` (`[IPv6]:PORT`) form is read so tests can point at a resolver
/// on a high port.
fn nameservers(text: &str) -> Vec<SocketAddr> {
    let mut servers = Vec::new();
    for line in text.lines() {
        let content = line.split(['#', ';']).next().unwrap_or("");
        let mut words = content.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(word) = words.next() else { continue };
        let server = match word.parse::<IpAddr>() {
            Ok(ip) => Some(SocketAddr::new(ip, 53)),
            Err(_) => word.parse::<SocketAddr>().ok(),
        };
        servers.extend(server);
    }
    servers
}

/// The AWS-side name to probe: `s3.amazonaws.com` when amazonaws.com is
/// redirected, else the first other redirected domain.
fn aws_probe(settings: &RedirectSettings) -> Option<String> {
    let domains = settings.domain_names().ok()?;
    let localstack: NameBuf = LOCALSTACK_DOMAIN.parse().ok()?;
    let others: Vec<String> =
        domains.iter().filter(|name| !name.is_subdomain_of(&localstack)).map(NameBuf::to_relative_string).collect();
    if others.iter().any(|domain| domain == "amazonaws.com") {
        return Some("s3.amazonaws.com".to_owned());
    }
    others.into_iter().next()
}

struct Findings {
    lines: Vec<String>,
    failed: bool,
}

impl Findings {
    fn ok(&mut self, text: String) {
        self.lines.push(format!("  ok    {text}"));
    }

    fn fail(&mut self, text: String) {
        self.failed = true;
        self.lines.push(format!("  FAIL  {text}"));
    }
}

pub(crate) async fn run(settings: &RedirectSettings) -> ExitCode {
    let mut findings = Findings { lines: Vec::new(), failed: false };
    let aws = aws_probe(settings);
    let probes: Vec<&str> = [REBIND_PROBE].into_iter().chain(aws.as_deref()).collect();

    // Signpost, directly.
    let signpost = settings.bind_addresses().and_then(<[IpAddr]>::first).map(|address| {
        let address = match *address {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            other => other,
        };
        SocketAddr::new(address, settings.port)
    });
    let mut direct = Vec::new();
    match signpost {
        None => {
            println!("Signpost: DNS is disabled (DNS_ADDRESS=0)");
            findings.fail("Signpost is disabled (DNS_ADDRESS=0): nothing answers the redirected names".into());
        }
        Some(address) => {
            println!("Signpost at {address}:");
            for probe in &probes {
                let outcome = ask(address, probe).await;
                println!("  {probe} A: {outcome}");
                direct.push(outcome);
            }
            judge_signpost(&mut findings, address, &probes, &direct);
        }
    }
    let signpost_aws = direct.get(1).cloned();

    // The system resolver.
    let file = &settings.resolv_conf;
    let servers = match std::fs::read_to_string(file) {
        Ok(text) => nameservers(&text),
        Err(error) => {
            findings.fail(format!("cannot read {}: {error}", file.display()));
            Vec::new()
        }
    };
    if servers.is_empty() {
        findings.fail(format!("{} names no nameserver: there is no system resolver to check", file.display()));
    }
    let mut system = None;
    for server in &servers {
        let mut outcomes = Vec::new();
        for probe in &probes {
            outcomes.push(ask(*server, probe).await);
        }
        if outcomes.iter().all(|outcome| matches!(outcome, Outcome::Silent(_))) && Some(server) != servers.last() {
            println!("System resolver {server} (from {}) does not answer; trying the next", file.display());
            continue;
        }
        println!("System resolver {server} (from {}):", file.display());
        for (probe, outcome) in probes.iter().zip(&outcomes) {
            println!("  {probe} A: {outcome}");
        }
        system = Some((*server, outcomes));
        break;
    }
    if let Some((server, outcomes)) = system {
        judge_system(&mut findings, settings, signpost, server, file, &probes, &outcomes, signpost_aws.as_ref());
    }

    println!("Findings:");
    for line in &findings.lines {
        println!("{line}");
    }
    if findings.failed {
        println!("See docs/redirect.md for set-ups (systemd-resolved, resolv.conf, macOS, Docker).");
        ExitCode::FAILURE
    } else {
        println!("Redirection works end to end.");
        ExitCode::SUCCESS
    }
}

fn judge_signpost(findings: &mut Findings, address: SocketAddr, probes: &[&str], outcomes: &[Outcome]) {
    if outcomes.iter().all(|outcome| matches!(outcome, Outcome::Silent(_))) {
        findings.fail(format!(
            "Signpost is not running on {address} (no answer). Start it with `signpost-redirect` (as a normal user \
             with DNS_PORT=5353), or give the DNS_ADDRESS/DNS_PORT it runs with"
        ));
        return;
    }
    for (probe, outcome) in probes.iter().zip(outcomes) {
        match outcome {
            Outcome::Addresses(_) => findings.ok(format!("Signpost on {address} answers {probe} with {outcome}")),
            other => findings.fail(format!(
                "Signpost on {address} answers {probe} with {other}: it is not redirected (check \
                 SIGNPOST_REDIRECT_DOMAINS, DNS_LOCAL_NAME_PATTERNS, DNS_NAME_PATTERNS_TO_RESOLVE_UPSTREAM)"
            )),
        }
    }
}

#[allow(clippy::too_many_arguments, reason = "one call site; the pieces are all different")]
fn judge_system(
    findings: &mut Findings,
    settings: &RedirectSettings,
    signpost: Option<SocketAddr>,
    server: SocketAddr,
    file: &Path,
    probes: &[&str],
    outcomes: &[Outcome],
    signpost_aws: Option<&Outcome>,
) {
    if outcomes.iter().all(|outcome| matches!(outcome, Outcome::Silent(_))) {
        findings.fail(format!("the system resolver {server} (from {}) does not answer", file.display()));
        return;
    }
    // Does the system resolver send the AWS name to Signpost?
    let via_signpost = match (outcomes.get(1), signpost_aws) {
        (Some(system), Some(Outcome::Addresses(redirected))) => {
            system.addresses().iter().any(|address| redirected.contains(address))
        }
        (Some(system), _) => !system.addresses().is_empty() && system.addresses().iter().all(|a| a.is_loopback()),
        (None, _) => false,
    };
    if let (Some(probe), Some(outcome)) = (probes.get(1), outcomes.get(1)) {
        if via_signpost {
            findings.ok(format!("the system resolver {server} sends {probe} to Signpost ({outcome})"));
        } else {
            let target = signpost.map_or_else(|| "Signpost".to_owned(), |address| address.to_string());
            let mut text = format!(
                "Signpost is not the system resolver for the redirected domains: {server} (from {}) answers {probe} \
                 with {outcome}. Route them to {target}: `sudo signpost-redirect systemd-resolved` with \
                 systemd-resolved, or `nameserver {}` first in resolv.conf",
                file.display(),
                target.rsplit_once(':').map_or(target.as_str(), |(ip, _)| ip)
            );
            if settings.port != 53 {
                text.push_str(" (resolv.conf cannot name a port: Signpost must listen on port 53 for that)");
            }
            findings.fail(text);
        }
    }
    let Some(rebind) = outcomes.first() else { return };
    match rebind {
        Outcome::Addresses(addresses) if addresses.iter().any(Ipv4Addr::is_loopback) => {
            findings.ok(format!("{REBIND_PROBE} resolves to {rebind} through the system resolver"));
        }
        Outcome::Addresses(_) => {
            findings.ok(format!("{REBIND_PROBE} resolves to {rebind} through the system resolver (not loopback)"));
        }
        Outcome::NoAddress(_) if !via_signpost => findings.fail(format!(
            "DNS-rebind protection: the system resolver {server} answered {REBIND_PROBE} with {rebind}, although its \
             public record is 127.0.0.1. A router or resolver with DNS-rebind protection (pfSense, OPNsense, \
             OpenWRT, FRITZ!Box, dnsmasq --stop-dns-rebind) drops answers that point to 127.0.0.1. Route \
             {LOCALSTACK_DOMAIN} to Signpost (it answers it itself), or allow localstack.cloud in the router's \
             rebind exceptions"
        )),
        Outcome::NoAddress(_) | Outcome::Silent(_) => findings.fail(format!(
            "the system resolver {server} answers {REBIND_PROBE} with {rebind}; Signpost answers it with an address"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_read_with_optional_ports() {
        let text =
            "# comment\nnameserver 127.0.0.53\nnameserver 127.0.0.1:5300 ; test\nnameserver [::1]:54\nsearch x\n";
        let servers: Vec<String> = nameservers(text).iter().map(ToString::to_string).collect();
        assert_eq!(servers, ["127.0.0.53:53", "127.0.0.1:5300", "[::1]:54"]);
    }

    #[test]
    fn the_aws_probe_follows_the_domains() {
        let mut settings = RedirectSettings::default();
        assert_eq!(aws_probe(&settings).as_deref(), Some("s3.amazonaws.com"));
        settings.set("SIGNPOST_REDIRECT_DOMAINS", "example.test").expect("domains");
        assert_eq!(aws_probe(&settings).as_deref(), Some("example.test"));
        settings.set("SIGNPOST_REDIRECT_DOMAINS", LOCALSTACK_DOMAIN).expect("domains");
        assert_eq!(aws_probe(&settings), None);
    }
}
