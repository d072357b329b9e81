//! resolv.conf: the system's resolvers, as the default upstream group.

use core::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::Path;
use std::time::Duration;

use crate::Error;
use crate::config::{GroupConfig, Policy, RetryOn, ServerConfig};

/// Nameservers glibc uses (MAXNS); the rest are ignored with a warning.
pub const MAX_NAMESERVERS: usize = 3;

/// What a resolv.conf says, as glibc reads it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ResolvConf {
    /// The first three `nameserver` addresses, port 53 unless one is given
    /// as `IP:PORT` (an extension glibc does not read).
    pub nameservers: Vec<SocketAddr>,
    /// The search list (`search`, or `domain` when it comes last).
    pub search: Vec<String>,
    /// The `domain` line, if any.
    pub domain: Option<String>,
    /// `options timeout:` (glibc's default 5 s, at most 30 s).
    pub timeout: Duration,
    /// `options attempts:` (default 2, at most 5).
    pub attempts: u32,
    /// `options ndots:` (default 1, at most 15).
    pub ndots: u8,
    /// `options rotate`.
    pub rotate: bool,
    /// Lines that were ignored, and why. Nothing is printed: the caller decides.
    pub warnings: Vec<ResolvWarning>,
}

impl Default for ResolvConf {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            search: Vec::new(),
            domain: None,
            timeout: Duration::from_secs(5),
            attempts: 2,
            ndots: 1,
            rotate: false,
            warnings: Vec::new(),
        }
    }
}

/// A resolv.conf line that was ignored.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ResolvWarning {
    /// A fourth or later nameserver: glibc uses only three.
    ExtraNameserver {
        /// Line number, from 1.
        line: usize,
        /// The address.
        address: SocketAddr,
    },
    /// A nameserver that is not an IP address.
    InvalidNameserver {
        /// Line number, from 1.
        line: usize,
        /// The text given.
        text: String,
    },
    /// An option with a value that is not a number.
    InvalidOption {
        /// Line number, from 1.
        line: usize,
        /// The option as written.
        option: String,
    },
    /// A keyword resolv.conf does not have.
    UnknownKeyword {
        /// Line number, from 1.
        line: usize,
        /// The keyword.
        keyword: String,
    },
}

impl fmt::Display for ResolvWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ExtraNameserver { line, address } => {
                write!(f, "line {line}: nameserver {} ignored: only the first {MAX_NAMESERVERS} are used", address.ip())
            }
            Self::InvalidNameserver { line, text } => {
                write!(f, "line {line}: nameserver {text:?} ignored: not an IP address")
            }
            Self::InvalidOption { line, option } => write!(f, "line {line}: option {option:?} ignored: bad value"),
            Self::UnknownKeyword { line, keyword } => write!(f, "line {line}: unknown keyword {keyword:?} ignored"),
        }
    }
}

/// Read resolv.conf text. Never fails: what cannot be used becomes a warning.
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.split(['#', ';']).next().unwrap_or("");
        let mut words = content.split_whitespace();
        let Some(keyword) = words.next() else { continue };
        match keyword {
            "nameserver" => {
                let Some(text) = words.next() else {
                    conf.warnings.push(ResolvWarning::InvalidNameserver { line, text: String::new() });
                    continue;
                };
                match parse_nameserver(text) {
                    Some(address) if conf.nameservers.len() < MAX_NAMESERVERS => conf.nameservers.push(address),
                    Some(address) => conf.warnings.push(ResolvWarning::ExtraNameserver { line, address }),
                    None => conf.warnings.push(ResolvWarning::InvalidNameserver { line, text: text.to_string() }),
                }
            }
            "domain" => {
                if let Some(domain) = words.next() {
                    conf.domain = Some(domain.to_string());
                    conf.search = vec![domain.to_string()];
                }
            }
            "search" => conf.search = words.map(str::to_string).collect(),
            "options" => {
                for option in words {
                    apply_option(&mut conf, option, line);
                }
            }
            "sortlist" | "lookup" | "family" => {}
            _ => conf.warnings.push(ResolvWarning::UnknownKeyword { line, keyword: keyword.to_string() }),
        }
    }
    conf
}

fn parse_nameserver(text: &str) -> Option<SocketAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    // `IP:PORT` / `[IPv6]:PORT`: an extension glibc does not read, for a
    // local resolver on another port (tests, dnsmasq on 5353).
    if let Ok(address) = text.parse::<SocketAddr>()
        && address.port() != 0
    {
        return Some(address);
    }
    // A link-local IPv6 address with a numeric zone: fe80::1%2.
    let (address, zone) = text.split_once('%')?;
    let address: Ipv6Addr = address.parse().ok()?;
    let zone: u32 = zone.parse().ok()?;
    Some(SocketAddr::V6(SocketAddrV6::new(address, 53, 0, zone)))
}

fn apply_option(conf: &mut ResolvConf, option: &str, line: usize) {
    let (name, value) = option.split_once(':').unwrap_or((option, ""));
    let number = || value.parse::<u32>().ok();
    let mut invalid = false;
    match name {
        "timeout" => match number() {
            Some(seconds) => conf.timeout = Duration::from_secs(u64::from(seconds.clamp(1, 30))),
            None => invalid = true,
        },
        "attempts" => match number() {
            Some(attempts) => conf.attempts = attempts.clamp(1, 5),
            None => invalid = true,
        },
        "ndots" => match number() {
            Some(ndots) => conf.ndots = u8::try_from(ndots.min(15)).unwrap_or(15),
            None => invalid = true,
        },
        "rotate" => conf.rotate = true,
        // Other glibc options (edns0, trust-ad, single-request, ...) do not concern a forwarder.
        _ => {}
    }
    if invalid {
        conf.warnings.push(ResolvWarning::InvalidOption { line, option: option.to_string() });
    }
}

impl ResolvConf {
    /// Read and parse a file (usually /etc/resolv.conf).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| Error::ResolvConf { path: path.to_path_buf(), source })?;
        Ok(parse_resolv_conf(&text))
    }

    /// The nameservers as an upstream group, leaving out those that reach
    /// `exclude` (the server's own listening addresses, so pointing the
    /// system at Signpost cannot make a forwarding loop; see
    /// [`reaches_own_listener`]).
    ///
    /// Like glibc, the group moves on after a timeout, an unreachable server,
    /// SERVFAIL or REFUSED; `rotate` becomes round robin; `timeout:` can
    /// shorten the per-try timeout below 2 s but not lengthen it, so the
    /// group still answers within its 4 s total. The group may have no
    /// servers left, which [`Upstreams::new`](crate::Upstreams::new) rejects.
    pub fn to_group(&self, name: &str, exclude: &[SocketAddr]) -> GroupConfig {
        let servers = self
            .nameservers
            .iter()
            .filter(|address| !reaches_own_listener(**address, exclude))
            .map(|address| ServerConfig::udp(*address))
            .collect();
        let mut group = GroupConfig::new(name, servers);
        group.policy = if self.rotate { Policy::RoundRobin } else { Policy::Sequential };
        group.retry_on = RetryOn { servfail: true, refused: true, ..RetryOn::NETWORK };
        group.per_try_timeout = group.per_try_timeout.min(self.timeout);
        group
    }
}

/// Whether a query sent to `nameserver` would reach one of our own
/// listeners `own`, so that forwarding to it would loop back to us: the same
/// address and port (IPv4-mapped IPv6 counts as IPv4), or a listener on a
/// wildcard address (`0.0.0.0:53`) and a `nameserver` of the same port and
/// family that lands on it — a loopback or unspecified address, or any
/// address of this machine (one a socket can be bound to), such as the
/// host's LAN address that a container's resolv.conf may name.
///
/// This is the one "never forward to ourselves" check: resolv.conf groups
/// ([`ResolvConf::to_group`]) and the applications' own upstream choices use it.
pub fn reaches_own_listener(nameserver: SocketAddr, own: &[SocketAddr]) -> bool {
    own.iter().any(|own| is_same_listener(nameserver, *own) || is_wildcard_reaching(*own, nameserver))
}

fn is_same_listener(nameserver: SocketAddr, own: SocketAddr) -> bool {
    if nameserver.port() != own.port() {
        return false;
    }
    let (ours, theirs) = (unmapped(own.ip()), unmapped(nameserver.ip()));
    ours == theirs
        || (ours.is_unspecified()
            && ours.is_ipv4() == theirs.is_ipv4()
            && (theirs.is_loopback() || theirs.is_unspecified()))
}

fn is_wildcard_reaching(own: SocketAddr, nameserver: SocketAddr) -> bool {
    let (ours, theirs) = (unmapped(own.ip()), unmapped(nameserver.ip()));
    own.port() == nameserver.port()
        && ours.is_unspecified()
        && ours.is_ipv4() == theirs.is_ipv4()
        && std::net::UdpSocket::bind(SocketAddr::new(theirs, 0)).is_ok()
}

/// `ip`, with an IPv4-mapped IPv6 address as the IPv4 address it stands for.
pub fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# Generated by NetworkManager
search corp.example lab.example
nameserver 10.0.0.2
nameserver 2001:db8::53 ; secondary
nameserver fe80::1%2
nameserver 10.0.0.4
nameserver resolver.example
options timeout:1 attempts:3 ndots:2 rotate edns0 trust-ad
options ndots:many
frobnicate yes
";

    #[test]
    fn the_first_three_nameservers_are_used_and_the_rest_warned_about() {
        let conf = parse_resolv_conf(SAMPLE);
        assert_eq!(
            conf.nameservers,
            [
                "10.0.0.2:53".parse().unwrap(),
                "[2001:db8::53]:53".parse().unwrap(),
                SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0, 2)),
            ]
        );
        assert_eq!(conf.search, ["corp.example", "lab.example"]);
        assert_eq!(conf.timeout, Duration::from_secs(1));
        assert_eq!((conf.attempts, conf.ndots, conf.rotate), (3, 2, true));
        let warnings: Vec<String> = conf.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "line 6: nameserver 10.0.0.4 ignored: only the first 3 are used",
                "line 7: nameserver \"resolver.example\" ignored: not an IP address",
                "line 9: option \"ndots:many\" ignored: bad value",
                "line 10: unknown keyword \"frobnicate\" ignored",
            ]
        );
    }

    #[test]
    fn the_last_of_domain_and_search_wins_and_values_are_capped() {
        let conf = parse_resolv_conf("search a.example\ndomain b.example\noptions timeout:99 attempts:9 ndots:40\n");
        assert_eq!(conf.search, ["b.example"]);
        assert_eq!(conf.domain.as_deref(), Some("b.example"));
        assert_eq!((conf.timeout, conf.attempts, conf.ndots), (Duration::from_secs(30), 5, 15));
        let ported = parse_resolv_conf("nameserver 127.0.0.1:5300\nnameserver [::1]:54\nnameserver 10.0.0.1:0\n");
        assert_eq!(ported.nameservers, ["127.0.0.1:5300".parse().unwrap(), "[::1]:54".parse().unwrap()]);
        assert_eq!(ported.warnings.len(), 1, "port 0 is no server");
        let empty = parse_resolv_conf("");
        assert_eq!(empty, ResolvConf::default());
    }

    #[test]
    fn our_own_addresses_are_left_out_of_the_group() {
        let conf =
            parse_resolv_conf("nameserver 127.0.0.1\nnameserver 127.0.0.53\nnameserver 192.0.2.1\noptions rotate\n");
        let group = conf.to_group("system", &["127.0.0.1:53".parse().unwrap()]);
        let addresses: Vec<String> = group.servers.iter().map(|server| server.address.to_string()).collect();
        assert_eq!(addresses, ["127.0.0.53:53", "192.0.2.1:53"]);
        assert_eq!(group.policy, Policy::RoundRobin);
        assert!(group.retry_on.servfail && group.retry_on.refused && !group.retry_on.nxdomain);
        assert_eq!(group.per_try_timeout, Duration::from_secs(2));

        let wildcard = conf.to_group("system", &["0.0.0.0:53".parse().unwrap()]);
        assert_eq!(wildcard.servers.len(), 1, "0.0.0.0 covers every loopback address");
        let other_port = conf.to_group("system", &["127.0.0.1:5353".parse().unwrap()]);
        assert_eq!(other_port.servers.len(), 3);
        let mapped = conf.to_group("system", &["[::ffff:192.0.2.1]:53".parse().unwrap()]);
        assert_eq!(mapped.servers.len(), 2);
        assert!(!reaches_own_listener("192.0.2.1:53".parse().unwrap(), &[]));
        assert!(reaches_own_listener("[::ffff:127.0.0.1]:53".parse().unwrap(), &["127.0.0.1:53".parse().unwrap()]));
        assert_eq!(unmapped("::ffff:10.0.0.1".parse().unwrap()), IpAddr::from([10, 0, 0, 1]));
    }

    #[test]
    fn files_are_loaded_and_missing_ones_reported() {
        let path = std::env::temp_dir().join(format!("signpost-resolv-{}.conf", std::process::id()));
        std::fs::write(&path, "nameserver 127.0.0.9\noptions timeout:1\n").unwrap();
        let conf = ResolvConf::load(&path).unwrap();
        assert_eq!(conf.nameservers, ["127.0.0.9:53".parse::<SocketAddr>().unwrap()]);
        assert_eq!(conf.to_group("g", &[]).per_try_timeout, Duration::from_secs(1));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(ResolvConf::load(&path), Err(Error::ResolvConf { .. })));
    }
}
