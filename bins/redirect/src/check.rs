//! `signpost-redirect check`: does the redirection work end to end? Ask
//! Signpost directly, then the system resolver named in resolv.conf, and
//! name the part that fails: `[signpost]` (not running, or not redirecting),
//! `[upstream]` (Signpost cannot forward), `[routing]` (the system resolver
//! does not send the redirected domains to Signpost) or `[rebind]` (a
//! router's DNS-rebind protection drops answers pointing to 127.0.0.1).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use signpost_redirect::{LOCALSTACK_DOMAIN, ProbeOutcome, RedirectSettings, ask_address};
use signpost_upstream::ResolvConf;
use signpost_wire::{NameBuf, Rcode};

/// The name whose public record is 127.0.0.1: routers with DNS-rebind
/// protection drop exactly this kind of answer.
const REBIND_PROBE: &str = "test.localhost.localstack.cloud";

/// How long to wait for each answer.
const TIMEOUT: Duration = Duration::from_secs(2);

async fn ask(server: SocketAddr, name: &str) -> ProbeOutcome {
    ask_address(server, name, TIMEOUT).await
}

/// The AWS-side name to probe: `s3.amazonaws.com` when amazonaws.com is
/// redirected, else the first other redirected domain.
fn aws_probe(settings: &RedirectSettings) -> Option<String> {
    if settings.disable_transparent_endpoint_injection {
        return None;
    }
    let domains = settings.domain_names().ok()?;
    let localstack: NameBuf = LOCALSTACK_DOMAIN.parse().ok()?;
    let others: Vec<String> =
        domains.iter().filter(|name| !name.is_subdomain_of(&localstack)).map(NameBuf::to_relative_string).collect();
    if others.iter().any(|domain| domain == "amazonaws.com") {
        return Some("s3.amazonaws.com".to_owned());
    }
    others.into_iter().next()
}

/// The part of the set-up a finding is about.
#[derive(Clone, Copy)]
enum Part {
    Signpost,
    Upstream,
    Routing,
    Rebind,
    System,
}

impl Part {
    fn label(self) -> &'static str {
        match self {
            Self::Signpost => "[signpost]",
            Self::Upstream => "[upstream]",
            Self::Routing => "[routing]",
            Self::Rebind => "[rebind]",
            Self::System => "[system resolver]",
        }
    }
}

struct Findings {
    lines: Vec<String>,
    failed: Vec<&'static str>,
}

impl Findings {
    fn ok(&mut self, part: Part, text: String) {
        self.lines.push(format!("  ok    {} {text}", part.label()));
    }

    fn fail(&mut self, part: Part, text: String) {
        if !self.failed.contains(&part.label()) {
            self.failed.push(part.label());
        }
        self.lines.push(format!("  FAIL  {} {text}", part.label()));
    }
}

pub(crate) async fn run(settings: &RedirectSettings) -> ExitCode {
    let mut findings = Findings { lines: Vec::new(), failed: Vec::new() };
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
            findings.fail(
                Part::Signpost,
                "Signpost is disabled (DNS_ADDRESS=0): nothing answers the redirected names".into(),
            );
        }
        Some(address) => {
            println!("Signpost at {address}:");
            for probe in &probes {
                let outcome = ask(address, probe).await;
                println!("  {probe} A: {outcome}");
                direct.push(outcome);
            }
            let running = judge_signpost(&mut findings, address, &probes, &direct);
            if running {
                // A forwarded name: Signpost answers it only through its upstream.
                let forwarded = &settings.verification_domain;
                let outcome = ask(address, forwarded).await;
                println!("  {forwarded} A (forwarded): {outcome}");
                judge_upstream(&mut findings, forwarded, &outcome);
            }
        }
    }
    let signpost_aws = direct.get(1).cloned();

    // The system resolver.
    let file = &settings.resolv_conf;
    let servers = match ResolvConf::load(file) {
        Ok(conf) => conf.nameservers,
        Err(error) => {
            findings.fail(Part::System, error.to_string());
            Vec::new()
        }
    };
    if servers.is_empty() {
        findings.fail(
            Part::System,
            format!("{} names no nameserver: there is no system resolver to check", file.display()),
        );
    }
    let mut system = None;
    for server in &servers {
        let mut outcomes = Vec::new();
        for probe in &probes {
            outcomes.push(ask(*server, probe).await);
        }
        if outcomes.iter().all(|outcome| matches!(outcome, ProbeOutcome::Silent(_))) && Some(server) != servers.last() {
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
    if findings.failed.is_empty() {
        println!("Redirection works end to end.");
        ExitCode::SUCCESS
    } else {
        println!(
            "Failing: {}. See docs/redirect.md for set-ups (systemd-resolved, resolv.conf, macOS, Docker).",
            findings.failed.join(", ")
        );
        ExitCode::FAILURE
    }
}

/// Whether Signpost answered at all.
fn judge_signpost(findings: &mut Findings, address: SocketAddr, probes: &[&str], outcomes: &[ProbeOutcome]) -> bool {
    if outcomes.iter().all(|outcome| matches!(outcome, ProbeOutcome::Silent(_))) {
        findings.fail(
            Part::Signpost,
            format!(
                "Signpost is not running on {address} (no answer). Start it with `signpost-redirect` (as a normal \
                 user with DNS_PORT=5353), or give the DNS_ADDRESS/DNS_PORT it runs with"
            ),
        );
        return false;
    }
    for (probe, outcome) in probes.iter().zip(outcomes) {
        match outcome {
            ProbeOutcome::Addresses(_) => {
                findings.ok(Part::Signpost, format!("Signpost on {address} answers {probe} with {outcome}"));
            }
            other => findings.fail(
                Part::Signpost,
                format!(
                    "Signpost on {address} answers {probe} with {other}: it is not redirected (check \
                     SIGNPOST_REDIRECT_DOMAINS, DNS_LOCAL_NAME_PATTERNS, DNS_NAME_PATTERNS_TO_RESOLVE_UPSTREAM)"
                ),
            ),
        }
    }
    true
}

fn judge_upstream(findings: &mut Findings, name: &str, outcome: &ProbeOutcome) {
    match outcome {
        ProbeOutcome::NoAddress(Rcode::SERVFAIL) | ProbeOutcome::Silent(_) => findings.fail(
            Part::Upstream,
            format!(
                "Signpost cannot forward: {name} gets {outcome}. Its upstream does not answer; the start-up line \
                 `Upstream DNS servers:` names it (set DNS_SERVER)"
            ),
        ),
        _ => findings.ok(Part::Upstream, format!("Signpost forwards {name} upstream ({outcome})")),
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
    outcomes: &[ProbeOutcome],
    signpost_aws: Option<&ProbeOutcome>,
) {
    if outcomes.iter().all(|outcome| matches!(outcome, ProbeOutcome::Silent(_))) {
        findings.fail(Part::System, format!("the system resolver {server} (from {}) does not answer", file.display()));
        return;
    }
    // Does the system resolver send the AWS name to Signpost?
    let via_signpost = match (outcomes.get(1), signpost_aws) {
        (Some(system), Some(ProbeOutcome::Addresses(redirected))) => {
            system.addresses().iter().any(|address| redirected.contains(address))
        }
        (Some(system), _) => !system.addresses().is_empty() && system.addresses().iter().all(|a| a.is_loopback()),
        (None, _) => false,
    };
    if let (Some(probe), Some(outcome)) = (probes.get(1), outcomes.get(1)) {
        if via_signpost {
            findings.ok(Part::Routing, format!("the system resolver {server} sends {probe} to Signpost ({outcome})"));
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
            findings.fail(Part::Routing, text);
        }
    }
    let Some(rebind) = outcomes.first() else { return };
    match rebind {
        ProbeOutcome::Addresses(addresses) if addresses.iter().any(Ipv4Addr::is_loopback) => {
            findings.ok(Part::Rebind, format!("{REBIND_PROBE} resolves to {rebind} through the system resolver"));
        }
        ProbeOutcome::Addresses(_) => findings.ok(
            Part::Rebind,
            format!("{REBIND_PROBE} resolves to {rebind} through the system resolver (not loopback)"),
        ),
        ProbeOutcome::NoAddress(_) if !via_signpost => findings.fail(
            Part::Rebind,
            format!(
                "DNS-rebind protection: the system resolver {server} answered {REBIND_PROBE} with {rebind}, although \
                 its public record is 127.0.0.1. A router or resolver with DNS-rebind protection (pfSense, OPNsense, \
                 OpenWRT, FRITZ!Box, dnsmasq --stop-dns-rebind) drops answers that point to 127.0.0.1. Route \
                 {LOCALSTACK_DOMAIN} to Signpost (it answers it itself), or allow localstack.cloud in the router's \
                 rebind exceptions"
            ),
        ),
        ProbeOutcome::NoAddress(_) | ProbeOutcome::Silent(_) => findings.fail(
            Part::Routing,
            format!(
                "the system resolver {server} answers {REBIND_PROBE} with {rebind}; Signpost answers it with an address"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aws_probe_follows_the_domains() {
        let mut settings = RedirectSettings::default();
        assert_eq!(aws_probe(&settings).as_deref(), Some("s3.amazonaws.com"));
        settings.set("SIGNPOST_REDIRECT_DOMAINS", "example.test").expect("domains");
        assert_eq!(aws_probe(&settings).as_deref(), Some("example.test"));
        settings.set("SIGNPOST_REDIRECT_DOMAINS", LOCALSTACK_DOMAIN).expect("domains");
        assert_eq!(aws_probe(&settings), None);
        settings.set("SIGNPOST_REDIRECT_DOMAINS", "amazonaws.com").expect("domains");
        settings.set("DISABLE_TRANSPARENT_ENDPOINT_INJECTION", "1").expect("flag");
        assert_eq!(aws_probe(&settings), None, "AWS names are not redirected then");
    }

    #[test]
    fn findings_name_their_part() {
        let mut findings = Findings { lines: Vec::new(), failed: Vec::new() };
        judge_upstream(&mut findings, "localstack.cloud", &ProbeOutcome::NoAddress(Rcode::SERVFAIL));
        judge_upstream(&mut findings, "localstack.cloud", &ProbeOutcome::NoAddress(Rcode::NXDOMAIN));
        assert!(findings.lines[0].starts_with("  FAIL  [upstream] Signpost cannot forward"), "{:?}", findings.lines);
        assert!(findings.lines[1].starts_with("  ok    [upstream]"), "{:?}", findings.lines);
        assert_eq!(findings.failed, ["[upstream]"]);
    }
}
