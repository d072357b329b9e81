//! Where forwarded queries go: `DNS_SERVER`, or the system's resolvers from
//! resolv.conf without ourselves and loopback stubs, the first of them that
//! answers `DNS_VERIFICATION_DOMAIN` first (LocalStack's
//! `get_available_dns_server`, dns/server.py).

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use signpost_upstream::{
    GroupConfig, Policy, ResolvConf, RetryOn, ServerConfig as UpstreamServer, Upstreams, reaches_own_listener, unmapped,
};
use signpost_wire::{Class, EdnsHeader, Flags, Message, MessageBuilder, NameBuf, RData, Rcode, RecordType};

use crate::{RedirectSettings, UPSTREAM_GROUP};

/// Where the upstream servers came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamSource {
    /// `DNS_SERVER`.
    Configured,
    /// The nameservers of this resolv.conf.
    ResolvConf(PathBuf),
    /// systemd-resolved's upstreams (resolv.conf named only its stub).
    SystemdResolved(PathBuf),
    /// Nothing usable: redirected names still answer, the rest gets SERVFAIL.
    None,
}

/// A resolv.conf nameserver that was left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedNameserver {
    /// The nameserver.
    pub address: SocketAddr,
    /// The file it was in.
    pub file: PathBuf,
    /// Why it was left out.
    pub reason: &'static str,
}

/// What asking the candidates for `DNS_VERIFICATION_DOMAIN` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    /// `server` answered `domain`; those before it did not.
    Answered {
        /// The name asked.
        domain: String,
        /// The first candidate that answered it: it comes first.
        server: SocketAddr,
        /// Candidates asked before it that gave no answer.
        unanswered: Vec<SocketAddr>,
    },
    /// No candidate answered: all are kept, in resolv.conf's order.
    NoneAnswered {
        /// The name asked.
        domain: String,
    },
}

/// The upstream servers and where they came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamChoice {
    /// The servers, in failover order.
    pub servers: Vec<SocketAddr>,
    /// Where they came from.
    pub source: UpstreamSource,
    /// Nameservers left out.
    pub skipped: Vec<SkippedNameserver>,
    /// For servers from resolv.conf, what the verification question found
    /// (`None` before it is asked, and for `DNS_SERVER`).
    pub verification: Option<Verification>,
}

impl fmt::Display for UpstreamChoice {
    /// `10.0.0.2:53, 10.0.0.3:53 (from /etc/resolv.conf)`, or why there are
    /// none, then what the verification found.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.servers.iter().map(ToString::to_string).collect();
        match &self.source {
            UpstreamSource::Configured => write!(f, "{} (DNS_SERVER)", list.join(", "))?,
            UpstreamSource::ResolvConf(path) => write!(f, "{} (from {})", list.join(", "), path.display())?,
            UpstreamSource::SystemdResolved(path) => {
                write!(f, "{} (systemd-resolved's upstreams, from {})", list.join(", "), path.display())?;
            }
            UpstreamSource::None => {
                f.write_str("none: redirected names still answer, every other name gets SERVFAIL (set DNS_SERVER)")?;
                for skipped in &self.skipped {
                    write!(f, "; {} in {} left out: {}", skipped.address, skipped.file.display(), skipped.reason)?;
                }
            }
        }
        match &self.verification {
            None => Ok(()),
            Some(Verification::Answered { domain, server, unanswered }) if unanswered.is_empty() => {
                write!(f, "; {server} answered {domain} (DNS_VERIFICATION_DOMAIN) and is used first")
            }
            Some(Verification::Answered { domain, server, unanswered }) => {
                let silent: Vec<String> = unanswered.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "; {server} answered {domain} (DNS_VERIFICATION_DOMAIN) and is used first; {} did not and \
                     stay as fallbacks",
                    silent.join(", ")
                )
            }
            Some(Verification::NoneAnswered { domain }) => write!(
                f,
                "; none answered {domain} (DNS_VERIFICATION_DOMAIN): all are kept in order and tried for every \
                 forwarded query (LocalStack would not start its DNS server)"
            ),
        }
    }
}

impl RedirectSettings {
    /// The upstream servers: `DNS_SERVER`, or the system's from resolv.conf,
    /// leaving out `own` listening addresses and loopback stubs (not yet
    /// verified: see [`verify_upstreams`]).
    pub fn upstreams(&self, own: &[SocketAddr]) -> UpstreamChoice {
        match &self.server {
            Some(servers) => UpstreamChoice {
                servers: servers.clone(),
                source: UpstreamSource::Configured,
                skipped: Vec::new(),
                verification: None,
            },
            None => system_upstreams(&self.resolv_conf, &self.systemd_resolv_conf, own),
        }
    }

    /// The upstream group for `choice` (none when it has no servers):
    /// sequential failover, moving on after a timeout, an unreachable
    /// server, SERVFAIL or REFUSED.
    pub fn upstream_group(&self, choice: &UpstreamChoice) -> Option<GroupConfig> {
        if choice.servers.is_empty() {
            return None;
        }
        let mut group =
            GroupConfig::new(UPSTREAM_GROUP, choice.servers.iter().map(|s| UpstreamServer::udp(*s)).collect());
        group.policy = Policy::Sequential;
        group.retry_on = RetryOn { servfail: true, refused: true, ..RetryOn::NETWORK };
        group.per_try_timeout = self.upstream_timeout;
        group.total_timeout = self.upstream_total_timeout.max(self.upstream_timeout);
        Some(group)
    }
}

/// Ask the candidates of `choice` (servers from resolv.conf; `DNS_SERVER`
/// is used as given) for the A record of `domain`, in order, once each,
/// waiting `timeout` for each, until one answers with an address; that one
/// goes first and the others stay behind it as fallbacks. When none
/// answers, the order stays and [`Verification::NoneAnswered`] says so.
pub async fn verify_upstreams(mut choice: UpstreamChoice, domain: &str, timeout: Duration) -> UpstreamChoice {
    if !matches!(choice.source, UpstreamSource::ResolvConf(_) | UpstreamSource::SystemdResolved(_))
        || choice.servers.is_empty()
    {
        return choice;
    }
    let mut unanswered = Vec::new();
    for server in choice.servers.clone() {
        if let ProbeOutcome::Addresses(_) = ask_address(server, domain, timeout).await {
            choice.servers.retain(|other| *other != server);
            choice.servers.insert(0, server);
            choice.verification = Some(Verification::Answered { domain: domain.to_owned(), server, unanswered });
            return choice;
        }
        unanswered.push(server);
    }
    choice.verification = Some(Verification::NoneAnswered { domain: domain.to_owned() });
    choice
}

/// The same choice after a reload: the server verified at start keeps its
/// place in front if it is still a candidate (the question is not asked again).
pub fn keep_verified_first(mut choice: UpstreamChoice, previous: &UpstreamChoice) -> UpstreamChoice {
    if let Some(Verification::Answered { server, domain, .. }) = &previous.verification
        && choice.source == previous.source
        && choice.servers.contains(server)
    {
        choice.servers.retain(|other| other != server);
        choice.servers.insert(0, *server);
        choice.verification =
            Some(Verification::Answered { domain: domain.clone(), server: *server, unanswered: Vec::new() });
    }
    choice
}

/// What one A question to one server gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// NOERROR with these A records (anywhere in the answer, after CNAMEs).
    Addresses(Vec<Ipv4Addr>),
    /// An answer without an address: NODATA, NXDOMAIN, REFUSED, SERVFAIL...
    NoAddress(Rcode),
    /// No answer at all.
    Silent(String),
}

impl fmt::Display for ProbeOutcome {
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

impl ProbeOutcome {
    /// The addresses, if any.
    pub fn addresses(&self) -> &[Ipv4Addr] {
        match self {
            Self::Addresses(addresses) => addresses,
            _ => &[],
        }
    }
}

/// Ask `server` for the A records of `name`, once (no retry), within `timeout`.
pub async fn ask_address(server: SocketAddr, name: &str, timeout: Duration) -> ProbeOutcome {
    let Ok(name_buf) = name.parse::<NameBuf>() else { return ProbeOutcome::Silent(format!("{name} is not a name")) };
    let mut query = Vec::new();
    let built = (|| {
        let mut builder = MessageBuilder::new(&mut query)?;
        builder.set_flags(Flags::default().with_rd(true));
        builder.push_question(&name_buf, RecordType::A, Class::IN)?;
        builder.set_edns(EdnsHeader::default());
        builder.finish()
    })();
    if built.is_err() {
        return ProbeOutcome::Silent("the query could not be built".into());
    }
    let mut group = GroupConfig::new("probe", vec![UpstreamServer::udp(server)]);
    group.retry_on = RetryOn::NOTHING;
    group.per_try_timeout = timeout;
    group.total_timeout = timeout + Duration::from_millis(500);
    group.max_fails = 0;
    let upstreams = match Upstreams::new(vec![group]) {
        Ok(upstreams) => upstreams,
        Err(error) => return ProbeOutcome::Silent(error.to_string()),
    };
    let Some(group) = upstreams.group("probe") else { return ProbeOutcome::Silent("no group".into()) };
    let resolved = match group.resolve(&query).await {
        Ok(resolved) => resolved,
        Err(error) if error.is_timeout() => return ProbeOutcome::Silent(format!("timed out asking {server}")),
        Err(error) if error.is_unreachable() => return ProbeOutcome::Silent(format!("{server} is unreachable")),
        Err(error) => return ProbeOutcome::Silent(error.to_string()),
    };
    let Ok(message) = Message::parse(&resolved.response) else {
        return ProbeOutcome::Silent("malformed answer".into());
    };
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
        ProbeOutcome::Addresses(addresses)
    } else {
        ProbeOutcome::NoAddress(rcode)
    }
}

/// The default upstreams: the nameservers of `resolv_conf` without our own
/// listening addresses (`own`) and without loopback stubs, which would send
/// queries back to the system resolver and so, when it uses Signpost, to us.
/// When resolv.conf names only systemd-resolved's stub (127.0.0.53 or
/// 127.0.0.54), the real upstreams come from `systemd_resolv_conf`.
/// With nothing left there are none.
pub fn system_upstreams(resolv_conf: &Path, systemd_resolv_conf: &Path, own: &[SocketAddr]) -> UpstreamChoice {
    let mut skipped = Vec::new();
    let mut servers = usable_nameservers(resolv_conf, own, &mut skipped);
    let mut source = UpstreamSource::ResolvConf(resolv_conf.to_path_buf());
    if servers.is_empty() && skipped.iter().any(|skip| is_systemd_stub(skip.address.ip())) {
        servers = usable_nameservers(systemd_resolv_conf, own, &mut skipped);
        source = UpstreamSource::SystemdResolved(systemd_resolv_conf.to_path_buf());
    }
    if servers.is_empty() {
        source = UpstreamSource::None;
    }
    UpstreamChoice { servers, source, skipped, verification: None }
}

fn is_systemd_stub(ip: IpAddr) -> bool {
    ip == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53)) || ip == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 54))
}

fn usable_nameservers(path: &Path, own: &[SocketAddr], skipped: &mut Vec<SkippedNameserver>) -> Vec<SocketAddr> {
    let Ok(conf) = ResolvConf::load(path) else { return Vec::new() };
    let (servers, left_out) = loop_free_nameservers(&conf.nameservers, path, own);
    skipped.extend(left_out);
    servers
}

/// `nameservers`, read from the resolv.conf `file`, without our own
/// listening addresses (`own`) and loopback stubs on port 53, as
/// [`system_upstreams`] leaves them out; for other groups taken from a
/// resolv.conf, such as the rules' `[system]` group. A loopback nameserver
/// on another port (`nameserver 127.0.0.1:5300`, an extension glibc does
/// not read) is a local resolver put there on purpose, and kept. Returns
/// the servers kept and those left out.
pub fn loop_free_nameservers(
    nameservers: &[SocketAddr],
    file: &Path,
    own: &[SocketAddr],
) -> (Vec<SocketAddr>, Vec<SkippedNameserver>) {
    let mut servers = Vec::new();
    let mut skipped = Vec::new();
    for &address in nameservers {
        let ip = unmapped(address.ip());
        let reason = if reaches_own_listener(address, own) {
            Some("it is our own listening address")
        } else if (ip.is_loopback() && address.port() == 53) || ip.is_unspecified() {
            Some("a loopback stub would send queries back to the system resolver")
        } else {
            None
        };
        match reason {
            Some(reason) => skipped.push(SkippedNameserver { address, file: file.to_path_buf(), reason }),
            None => servers.push(address),
        }
    }
    (servers, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use signpost_testkit::TempDir;

    #[test]
    fn default_upstreams_skip_loops_and_follow_the_systemd_stub() {
        let dir = TempDir::new();
        let own: SocketAddr = "127.0.0.1:53".parse().expect("addr");
        let plain = dir.write("resolv-1.conf", "nameserver 127.0.0.1\nnameserver 192.0.2.1\nnameserver 127.0.0.9\n");
        let missing = PathBuf::from("/nonexistent/signpost/resolv.conf");
        let choice = system_upstreams(&plain, &missing, &[own]);
        assert_eq!(choice.servers, ["192.0.2.1:53".parse::<SocketAddr>().expect("addr")]);
        assert_eq!(choice.source, UpstreamSource::ResolvConf(plain.clone()));
        assert_eq!(choice.skipped.len(), 2);
        assert_eq!(choice.skipped[0].reason, "it is our own listening address");

        let stub = dir.write("resolv-2.conf", "nameserver 127.0.0.53\noptions edns0 trust-ad\n");
        let real = dir.write("resolv-3.conf", "nameserver 192.0.2.7\nnameserver 127.0.0.1\n");
        let choice = system_upstreams(&stub, &real, &[own]);
        assert_eq!(choice.servers, ["192.0.2.7:53".parse::<SocketAddr>().expect("addr")]);
        assert_eq!(choice.source, UpstreamSource::SystemdResolved(real.clone()));
        assert!(choice.to_string().contains("systemd-resolved"), "{choice}");

        let only_loopback = dir.write("resolv-4.conf", "nameserver 127.0.0.1\n");
        let choice = system_upstreams(&only_loopback, &real, &[own]);
        assert_eq!(choice.source, UpstreamSource::None, "127.0.0.1 is not systemd's stub");
        assert!(choice.to_string().starts_with("none"), "{choice}");

        let choice = system_upstreams(&missing, &missing, &[own]);
        assert_eq!(choice.source, UpstreamSource::None);

        let wildcard: SocketAddr = "0.0.0.0:53".parse().expect("addr");
        let lan = dir.write("resolv-5.conf", "nameserver 198.51.100.1\n");
        assert!(reaches_own_listener("127.0.0.1:53".parse().expect("a"), &[wildcard]));
        assert_eq!(system_upstreams(&lan, &missing, &[wildcard]).servers.len(), 1);

        // A loopback resolver on another port is kept; ourselves on that port are not.
        let ported = dir.write("resolv-6.conf", "nameserver 127.0.0.1:5300\nnameserver 127.0.0.1:5353\n");
        let choice = system_upstreams(&ported, &missing, &["127.0.0.1:5353".parse().expect("addr")]);
        assert_eq!(choice.servers, ["127.0.0.1:5300".parse::<SocketAddr>().expect("addr")]);
    }

    #[test]
    fn a_wildcard_listener_skips_this_machines_own_addresses() {
        // An address of this machine other than loopback: the one a UDP
        // socket would send from towards a documentation address (connect
        // sends nothing).
        let probe = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
        let local = probe.connect("192.0.2.1:53").and_then(|()| probe.local_addr()).map(|address| address.ip());
        // Without such an address the behaviour cannot be shown: fail, never pass silently.
        let local = match local {
            Ok(local @ IpAddr::V4(_)) if !local.is_loopback() && !local.is_unspecified() => local,
            other => panic!("this test needs a non-loopback IPv4 address with a route (got {other:?})"),
        };
        let wildcard: SocketAddr = "0.0.0.0:53".parse().expect("addr");
        let nameserver = SocketAddr::new(local, 53);
        let dir = TempDir::new();
        let lan = dir.write("resolv-7.conf", format!("nameserver {local}\nnameserver 198.51.100.1\n"));
        let missing = PathBuf::from("/nonexistent/signpost/resolv.conf");
        let choice = system_upstreams(&lan, &missing, &[wildcard]);
        assert_eq!(choice.servers, ["198.51.100.1:53".parse::<SocketAddr>().expect("addr")]);
        assert_eq!(choice.skipped.len(), 1);
        assert_eq!(choice.skipped[0].address, nameserver);
        assert_eq!(choice.skipped[0].reason, "it is our own listening address");
        // Another port, or a specific listen address, is not reached that way.
        let other_port: SocketAddr = "0.0.0.0:5353".parse().expect("addr");
        assert_eq!(loop_free_nameservers(&[nameserver], &lan, &[other_port]).0, [nameserver]);
        let loopback_only: SocketAddr = "127.0.0.1:53".parse().expect("addr");
        assert_eq!(loop_free_nameservers(&[nameserver], &lan, &[loopback_only]).0, [nameserver]);
    }

    #[test]
    fn the_upstream_group_fails_over_in_order() {
        let mut settings = RedirectSettings::default();
        settings.set("DNS_SERVER", "192.0.2.1,192.0.2.2").expect("servers");
        let choice = settings.upstreams(&[]);
        let group = settings.upstream_group(&choice).expect("group");
        assert_eq!(group.policy, Policy::Sequential);
        assert!(group.retry_on.servfail && group.retry_on.timeout && group.retry_on.unreachable);
        assert_eq!(group.servers.len(), 2);
        let none = UpstreamChoice {
            servers: Vec::new(),
            source: UpstreamSource::None,
            skipped: Vec::new(),
            verification: None,
        };
        assert!(settings.upstream_group(&none).is_none());
    }

    #[test]
    fn the_verified_server_stays_first_after_a_reload() {
        let a: SocketAddr = "192.0.2.1:53".parse().expect("addr");
        let b: SocketAddr = "192.0.2.2:53".parse().expect("addr");
        let source = UpstreamSource::ResolvConf(PathBuf::from("/etc/resolv.conf"));
        let verified = UpstreamChoice {
            servers: vec![b, a],
            source: source.clone(),
            skipped: Vec::new(),
            verification: Some(Verification::Answered {
                domain: "localstack.cloud".into(),
                server: b,
                unanswered: vec![a],
            }),
        };
        assert!(verified.to_string().contains("192.0.2.2:53 answered localstack.cloud"), "{verified}");
        let reread = UpstreamChoice { servers: vec![a, b], source, skipped: Vec::new(), verification: None };
        assert_eq!(keep_verified_first(reread, &verified).servers, [b, a]);
    }
}
