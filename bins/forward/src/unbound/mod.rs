//! Reading the subset of unbound.conf that conditional forwarders use, and
//! turning it into a [`ForwarderConfig`] with the same behaviour.
//!
//! Unbound answers from its local zones first (the closest enclosing
//! local-zone alone decides, by its type) and only then forwards, to the
//! closest enclosing forward-zone. The rule engine instead lets the most
//! specific matcher win. The conversion bridges the two:
//!
//! - a forward zone inside a local zone that answers (static, redirect,
//!   refuse, always_*) gets no rule: the local zone answers its names;
//! - a transparent zone inside such a zone gets forward rules (`*.zone`, and
//!   `=zone` when it has no data of its own) to the group of the closest
//!   enclosing forward zone, so its names are resolved, not answered;
//! - the data of transparent and refuse zones becomes one transparent zone
//!   per owner name, so names without data fall through as in Unbound;
//! - a suffix rule at a name that also has such data becomes a wildcard
//!   rule, so the data still answers for the name itself.
//!
//! See docs/configuration.md for the supported keywords and every mapping.

mod defaults;
mod lexer;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use signpost_rules::Location;
use signpost_rules::ZoneMode;
use signpost_rules::config::{ActionKind, BlockKind, RuleConfig, ZoneConfig};
use signpost_upstream::{GroupConfig, Policy, Protocol, RetryOn, ServerConfig as UpstreamServer};
use signpost_wire::{NameBuf, RDataBuf, RecordBuf};

pub use lexer::MAX_INCLUDE_DEPTH;
use lexer::{Statement, Token, read_statements};

use crate::acl::{AccessControl, AclAction, parse_network};
use crate::build::{SYSTEM_GROUP, base_dir_of, empty_rule};
use crate::config::{ForwarderConfig, parse_server};
use crate::error::{ConfigError, Unsupported, Warning};
use signpost_server::{ListenerConfig, Transport};

/// Read an unbound.conf (and its includes) into a forwarder configuration.
///
/// Options the forwarder does not implement fail with
/// [`ConfigError::Unsupported`], naming each with its file and line, unless
/// `ignore_unsupported` is set; then they become warnings. Options with no
/// effect on a forwarder's answers (logging, daemon and tuning knobs) are
/// accepted with a warning.
pub fn read_unbound_conf(
    path: &Path,
    ignore_unsupported: bool,
) -> Result<(ForwarderConfig, Vec<Warning>), ConfigError> {
    read_unbound_conf_in(&SystemEnvironment, path, ignore_unsupported)
}

/// Where reading unbound.conf gets its files and the addresses of
/// `forward-host:` names: the system ([`SystemEnvironment`]), or for tests
/// and fuzzing, something that touches neither the disk nor the network.
pub trait UnboundEnvironment {
    /// The text of a file (unbound.conf and its includes).
    fn read_to_string(&self, path: &Path) -> std::io::Result<String>;
    /// The addresses of a host name, with `port`.
    fn resolve_host(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// Files from the file system, host names through the system resolver
/// (getaddrinfo), as Unbound resolves `forward-host:` at start-up.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemEnvironment;

impl UnboundEnvironment for SystemEnvironment {
    fn read_to_string(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn resolve_host(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok((host, port).to_socket_addrs()?.collect())
    }
}

/// [`read_unbound_conf`] with files and host names from `environment`.
pub fn read_unbound_conf_in(
    environment: &dyn UnboundEnvironment,
    path: &Path,
    ignore_unsupported: bool,
) -> Result<(ForwarderConfig, Vec<Warning>), ConfigError> {
    let statements = read_statements(environment, path)?;
    let parsed = Parsed::from_statements(path, &statements)?;
    parsed.convert(environment, ignore_unsupported)
}

/// Options that change nothing a client sees from a forwarder.
const NO_EFFECT: &[&str] = &[
    "verbosity",
    "statistics-interval",
    "statistics-cumulative",
    "extended-statistics",
    "statistics-inhibit-zero",
    "shm-enable",
    "shm-key",
    "num-queries-per-thread",
    "outgoing-range",
    "outgoing-port-permit",
    "outgoing-port-avoid",
    "outgoing-num-tcp",
    "incoming-num-tcp",
    "so-rcvbuf",
    "so-sndbuf",
    "so-reuseport",
    "ip-transparent",
    "ip-freebind",
    "ip-dscp",
    "do-daemonize",
    "username",
    "chroot",
    "pidfile",
    "use-syslog",
    "log-identity",
    "log-time-ascii",
    "log-queries",
    "log-replies",
    "log-tag-queryreply",
    "log-local-actions",
    "log-servfail",
    "logfile",
    "use-systemd",
    "msg-cache-slabs",
    "rrset-cache-size",
    "rrset-cache-slabs",
    "infra-host-ttl",
    "infra-cache-slabs",
    "infra-cache-numhosts",
    "infra-cache-min-rtt",
    "infra-keep-probing",
    "key-cache-size",
    "key-cache-slabs",
    "neg-cache-size",
    "jostle-timeout",
    "delay-close",
    "udp-connect",
    "unknown-server-time-limit",
    "prefetch",
    "prefetch-key",
    "root-hints",
    "harden-glue",
    "harden-dnssec-stripped",
    "harden-below-nxdomain",
    "harden-referral-path",
    "harden-algo-downgrade",
    "harden-large-queries",
    "harden-short-bufsize",
    "harden-unknown-additional",
    "use-caps-for-id",
    "qname-minimisation",
    "qname-minimisation-strict",
    "aggressive-nsec",
    "do-not-query-localhost",
    "hide-identity",
    "hide-version",
    "hide-trustanchor",
    "hide-http-user-agent",
    "identity",
    "version",
    "rrset-roundrobin",
    "minimal-responses",
    "max-udp-size",
    "edns-tcp-keepalive",
    "edns-tcp-keepalive-timeout",
    "tcp-idle-timeout",
    "tcp-mss",
    "outgoing-tcp-mss",
    "tcp-reuse-timeout",
    "max-reuse-tcp-queries",
    "tcp-auth-query-timeout",
    "udp-upstream-without-downstream",
    "target-fetch-policy",
    "val-log-level",
    "val-clean-additional",
    "val-permissive-mode",
    "serve-expired-client-timeout",
    "tls-ciphers",
    "tls-ciphersuites",
    "pad-responses",
    "pad-responses-block-size",
    "pad-queries",
    "pad-queries-block-size",
    "prefer-ip4",
    "prefer-ip6",
    "ede",
    "ede-serve-expired",
    "sock-queue-timeout",
    "http-max-streams",
    "http-query-buffer-size",
    "http-response-buffer-size",
    "http-nodelay",
    "http-notls-downstream",
];

/// DNSSEC validation options: read when the validator module is on (the default).
const VALIDATION: &[&str] = &[
    "trust-anchor-file",
    "auto-trust-anchor-file",
    "trust-anchor",
    "trusted-keys-file",
    "root-key-sentinel",
    "domain-insecure",
    "val-bogus-ttl",
    "val-sig-skew-min",
    "val-sig-skew-max",
    "val-nsec3-keysize-iterations",
];

/// Clauses other than server, forward-zone and remote-control.
const OTHER_CLAUSES: &[&str] =
    &["stub-zone", "auth-zone", "view", "python", "dynlib", "rpz", "cachedb", "dnstap", "dnscrypt", "ipset"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Clause {
    /// Before the first clause, or after `include-toplevel:`.
    Outside,
    Server,
    ForwardZone,
    RemoteControl,
    /// A clause we do not read; its attributes are skipped (the clause itself is reported).
    Skipped,
}

/// How a local zone answers, after mapping Unbound's types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// `static`: local data, else NXDOMAIN/NODATA.
    Static,
    /// `transparent` (and `inform`, `typetransparent`): local data, else resolve.
    Transparent,
    /// `always_transparent`: resolve, ignoring local data.
    AlwaysTransparent,
    /// `redirect` (and `inform_redirect`): the apex's data for every name.
    Redirect,
    /// `refuse` (and `deny`, `inform_deny`): local data, else REFUSED.
    Refuse,
    /// `always_refuse`, `always_deny`: REFUSED.
    AlwaysRefuse,
    /// `always_nxdomain`.
    AlwaysNxdomain,
    /// `always_nodata`.
    AlwaysNodata,
    /// `always_null`: 0.0.0.0 and ::, NODATA for other types.
    AlwaysNull,
}

impl Behaviour {
    /// Whether names the zone covers are resolved (forwarded) rather than answered.
    fn resolves(self) -> bool {
        matches!(self, Self::Transparent | Self::AlwaysTransparent)
    }

    /// Whether local data is used.
    fn uses_data(self) -> bool {
        matches!(self, Self::Static | Self::Transparent | Self::Redirect | Self::Refuse)
    }
}

struct LocalZone {
    name: NameBuf,
    behaviour: Behaviour,
    at: Location,
    data: Vec<(RecordBuf, Location)>,
}

struct ForwardZone {
    name: Option<(NameBuf, Location)>,
    at: Location,
    addresses: Vec<Token>,
    hosts: Vec<Token>,
    first: bool,
    tls: bool,
    tcp: bool,
}

/// What the statements say, typed.
struct Parsed {
    file: PathBuf,
    interfaces: Vec<Token>,
    port: u16,
    access: Vec<(IpNet, AclAction)>,
    zones: Vec<LocalZone>,
    /// Names of `nodefault` zones (they only turn off a default zone).
    nodefault: Vec<NameBuf>,
    data: Vec<(RecordBuf, Location)>,
    forward_zones: Vec<ForwardZone>,
    cache_max_ttl: Option<u32>,
    cache_min_ttl: Option<u32>,
    cache_max_negative_ttl: Option<u32>,
    msg_cache_size: Option<usize>,
    do_ip4: bool,
    do_ip6: bool,
    do_udp: bool,
    do_tcp: bool,
    tls_port: u16,
    https_port: u16,
    tls_service_key: Option<PathBuf>,
    tls_service_pem: Option<PathBuf>,
    http_endpoint: String,
    tls_cert_bundle: Option<PathBuf>,
    tls_system_cert: bool,
    tls_upstream: bool,
    tcp_upstream: bool,
    edns_buffer_size: Option<u16>,
    unblock_lan_zones: bool,
    disable_default_zones: bool,
    num_threads: Option<usize>,
    serve_expired: bool,
    serve_expired_ttl: Option<u32>,
    serve_expired_reply_ttl: Option<u32>,
    ip_ratelimit: Option<u32>,
    validator: bool,
    trust_anchors: Vec<Statement>,
    directory: Option<PathBuf>,
    unsupported: Vec<Unsupported>,
    warnings: Vec<Warning>,
}

fn one(statement: &Statement) -> Result<&Token, ConfigError> {
    match statement.values.as_slice() {
        [value] => Ok(value),
        _ => Err(ConfigError::Malformed {
            at: statement.at.clone(),
            keyword: statement.written(),
            problem: "takes one value",
        }),
    }
}

fn two(statement: &Statement) -> Result<(&Token, &Token), ConfigError> {
    match statement.values.as_slice() {
        [first, second] => Ok((first, second)),
        _ => Err(ConfigError::Malformed {
            at: statement.at.clone(),
            keyword: statement.written(),
            problem: "takes two values",
        }),
    }
}

fn yes_no(statement: &Statement) -> Result<bool, ConfigError> {
    let value = one(statement)?;
    match value.text.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(ConfigError::InvalidValue {
            at: value.at.clone(),
            what: "switch",
            text: value.text.clone(),
            expected: "yes or no",
        }),
    }
}

fn number<T: core::str::FromStr>(statement: &Statement, what: &'static str) -> Result<T, ConfigError> {
    let value = one(statement)?;
    value.text.parse().map_err(|_| ConfigError::InvalidValue {
        at: value.at.clone(),
        what,
        text: value.text.clone(),
        expected: "a number in range",
    })
}

/// A size with an optional `k`, `m` or `g` suffix (powers of 1024).
fn size(statement: &Statement) -> Result<usize, ConfigError> {
    let value = one(statement)?;
    let text = value.text.to_ascii_lowercase();
    let (number, unit) = match text.strip_suffix(['k', 'm', 'g']) {
        Some(number) => (number, text.chars().last()),
        None => (text.as_str(), None),
    };
    let shift = match unit {
        Some('k') => 10,
        Some('m') => 20,
        Some('g') => 30,
        _ => 0,
    };
    number.parse::<usize>().ok().and_then(|n| n.checked_mul(1 << shift)).ok_or_else(|| ConfigError::InvalidValue {
        at: value.at.clone(),
        what: "size",
        text: value.text.clone(),
        expected: "a number of bytes, optionally with k, m or g",
    })
}

fn name(token: &Token) -> Result<NameBuf, ConfigError> {
    token.text.parse::<NameBuf>().map(|name| name.to_lowercase()).map_err(|source| {
        ConfigError::from(signpost_rules::Error::InvalidName { at: token.at.clone(), text: token.text.clone(), source })
    })
}

fn record(token: &Token) -> Result<RecordBuf, ConfigError> {
    RecordBuf::from_presentation(&token.text, Some(&NameBuf::root()), Some(3600)).map_err(|source| {
        ConfigError::from(signpost_rules::Error::InvalidRecord {
            at: token.at.clone(),
            text: token.text.clone(),
            source,
        })
    })
}

/// `local-data-ptr: "192.0.2.1 [ttl] name"`: a PTR at the reversed address.
fn ptr_record(token: &Token) -> Result<RecordBuf, ConfigError> {
    let invalid = || ConfigError::InvalidValue {
        at: token.at.clone(),
        what: "local-data-ptr",
        text: token.text.clone(),
        expected: "\"address [ttl] name\"",
    };
    let words: Vec<&str> = token.text.split_whitespace().collect();
    let (address, ttl, target) = match words.as_slice() {
        [address, target] => (*address, "3600", *target),
        [address, ttl, target] => (*address, *ttl, *target),
        _ => return Err(invalid()),
    };
    let address: IpAddr = address.parse().map_err(|_| invalid())?;
    let reverse = match address {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
        }
        IpAddr::V6(v6) => {
            let mut name = String::new();
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name + "ip6.arpa."
        }
    };
    let text = format!("{reverse} {ttl} IN PTR {target}");
    RecordBuf::from_presentation(&text, Some(&NameBuf::root()), Some(3600)).map_err(|source| {
        ConfigError::from(signpost_rules::Error::InvalidRecord {
            at: token.at.clone(),
            text: token.text.clone(),
            source,
        })
    })
}

impl Parsed {
    fn new(file: &Path) -> Self {
        Self {
            file: file.to_path_buf(),
            interfaces: Vec::new(),
            port: 53,
            access: Vec::new(),
            zones: Vec::new(),
            nodefault: Vec::new(),
            data: Vec::new(),
            forward_zones: Vec::new(),
            cache_max_ttl: None,
            cache_min_ttl: None,
            cache_max_negative_ttl: None,
            msg_cache_size: None,
            do_ip4: true,
            do_ip6: true,
            do_udp: true,
            do_tcp: true,
            tls_port: 853,
            https_port: 443,
            tls_service_key: None,
            tls_service_pem: None,
            http_endpoint: "/dns-query".into(),
            tls_cert_bundle: None,
            tls_system_cert: false,
            tls_upstream: false,
            tcp_upstream: false,
            edns_buffer_size: None,
            unblock_lan_zones: false,
            disable_default_zones: false,
            num_threads: None,
            serve_expired: false,
            serve_expired_ttl: None,
            serve_expired_reply_ttl: None,
            ip_ratelimit: None,
            validator: true,
            trust_anchors: Vec::new(),
            directory: None,
            unsupported: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn unsupported(&mut self, statement: &Statement, keyword: String, when_ignored: &'static str) {
        self.unsupported.push(Unsupported { at: statement.at.clone(), keyword, when_ignored });
    }

    fn from_statements(file: &Path, statements: &[Statement]) -> Result<Self, ConfigError> {
        let mut parsed = Self::new(file);
        let mut clause = Clause::Outside;
        for statement in statements {
            let keyword = statement.keyword.as_str();
            if statement.values.is_empty() {
                let next = match keyword {
                    "server" => Some(Clause::Server),
                    "forward-zone" => Some(Clause::ForwardZone),
                    "remote-control" => Some(Clause::RemoteControl),
                    "include-toplevel" => Some(Clause::Outside),
                    _ if OTHER_CLAUSES.contains(&keyword) => {
                        parsed.unsupported(statement, statement.written(), "skipped with everything in it");
                        Some(Clause::Skipped)
                    }
                    _ => None,
                };
                if let Some(next) = next {
                    if next == Clause::ForwardZone {
                        parsed.forward_zones.push(ForwardZone {
                            name: None,
                            at: statement.at.clone(),
                            addresses: Vec::new(),
                            hosts: Vec::new(),
                            first: false,
                            tls: false,
                            tcp: false,
                        });
                    }
                    clause = next;
                    continue;
                }
            }
            match clause {
                Clause::Outside => {
                    return Err(ConfigError::Malformed {
                        at: statement.at.clone(),
                        keyword: statement.written(),
                        problem: "is outside any clause (server:, forward-zone:, ...)",
                    });
                }
                Clause::Server => parsed.server_option(statement)?,
                Clause::ForwardZone => parsed.forward_option(statement)?,
                Clause::RemoteControl => {
                    if keyword == "control-enable" && yes_no(statement)? {
                        parsed.unsupported(
                            statement,
                            "remote-control: control-enable: yes".into(),
                            "no unbound-control socket (signpost has the admin HTTP API instead)",
                        );
                    }
                }
                Clause::Skipped => {}
            }
        }
        Ok(parsed)
    }

    fn server_option(&mut self, statement: &Statement) -> Result<(), ConfigError> {
        let keyword = statement.keyword.as_str();
        match keyword {
            "interface" | "ip-address" => self.interfaces.push(one(statement)?.clone()),
            "port" => self.port = number(statement, "port")?,
            "access-control" => {
                let (network, action) = two(statement)?;
                let parsed = parse_network(&network.text).ok_or_else(|| ConfigError::InvalidValue {
                    at: network.at.clone(),
                    what: "network",
                    text: network.text.clone(),
                    expected: "an IP network such as 10.0.0.0/8 or an address",
                })?;
                let action = match action.text.as_str() {
                    "allow" | "allow_setrd" | "allow_snoop" => AclAction::Allow,
                    "refuse" => AclAction::Refuse,
                    "deny" => {
                        self.warnings.push(Warning::Approximated {
                            at: statement.at.clone(),
                            keyword: format!("access-control: {} deny", network.text),
                            how: "queries are answered REFUSED instead of dropped",
                        });
                        AclAction::Refuse
                    }
                    "deny_non_local" | "refuse_non_local" => {
                        self.unsupported(
                            statement,
                            format!("access-control: ... {}", action.text),
                            "the network is refused everything",
                        );
                        AclAction::Refuse
                    }
                    _ => {
                        return Err(ConfigError::InvalidValue {
                            at: action.at.clone(),
                            what: "access-control action",
                            text: action.text.clone(),
                            expected: "allow, allow_setrd, allow_snoop, refuse, deny, deny_non_local or refuse_non_local",
                        });
                    }
                };
                self.access.push((parsed, action));
            }
            "local-zone" => self.local_zone(statement)?,
            "local-data" => {
                let token = one(statement)?;
                self.data.push((record(token)?, statement.at.clone()));
            }
            "local-data-ptr" => {
                let token = one(statement)?;
                self.data.push((ptr_record(token)?, statement.at.clone()));
            }
            "cache-max-ttl" => self.cache_max_ttl = Some(number(statement, "TTL")?),
            "cache-min-ttl" => self.cache_min_ttl = Some(number(statement, "TTL")?),
            "cache-max-negative-ttl" => self.cache_max_negative_ttl = Some(number(statement, "TTL")?),
            "msg-cache-size" => self.msg_cache_size = Some(size(statement)?),
            "do-ip4" => self.do_ip4 = yes_no(statement)?,
            "do-ip6" => self.do_ip6 = yes_no(statement)?,
            "do-udp" => self.do_udp = yes_no(statement)?,
            "do-tcp" => self.do_tcp = yes_no(statement)?,
            "tls-port" | "ssl-port" => self.tls_port = number(statement, "port")?,
            "https-port" => self.https_port = number(statement, "port")?,
            "tls-service-key" | "ssl-service-key" => self.tls_service_key = self.path(statement)?,
            "tls-service-pem" | "ssl-service-pem" => self.tls_service_pem = self.path(statement)?,
            "http-endpoint" => self.http_endpoint = one(statement)?.text.clone(),
            "tls-cert-bundle" | "ssl-cert-bundle" => self.tls_cert_bundle = self.path(statement)?,
            "tls-system-cert" | "tls-win-cert" => self.tls_system_cert = yes_no(statement)?,
            "tls-upstream" | "ssl-upstream" => self.tls_upstream = yes_no(statement)?,
            "tcp-upstream" => self.tcp_upstream = yes_no(statement)?,
            "edns-buffer-size" => self.edns_buffer_size = Some(number(statement, "size")?),
            "unblock-lan-zones" => self.unblock_lan_zones = yes_no(statement)?,
            "insecure-lan-zones" => {}
            "local-zones-disable-default" => self.disable_default_zones = yes_no(statement)?,
            "num-threads" => self.num_threads = Some(number::<usize>(statement, "thread count")?.max(1)),
            "serve-expired" => self.serve_expired = yes_no(statement)?,
            "serve-expired-ttl" => self.serve_expired_ttl = Some(number(statement, "TTL")?),
            "serve-expired-reply-ttl" => self.serve_expired_reply_ttl = Some(number(statement, "TTL")?),
            "ip-ratelimit" => self.ip_ratelimit = Some(number(statement, "rate")?),
            "module-config" => {
                self.validator = one(statement)?.text.split_whitespace().any(|module| module == "validator")
            }
            "directory" => self.directory = self.path(statement)?,
            _ if VALIDATION.contains(&keyword) => self.trust_anchors.push(statement.clone()),
            _ if NO_EFFECT.contains(&keyword) => {
                self.warnings.push(Warning::Ignored { at: statement.at.clone(), keyword: statement.written() })
            }
            _ => self.unsupported(statement, statement.written(), "skipped"),
        }
        Ok(())
    }

    /// A file name value, relative to `directory:` or the configuration's directory.
    fn path(&self, statement: &Statement) -> Result<Option<PathBuf>, ConfigError> {
        let value = one(statement)?;
        if value.text.is_empty() {
            return Ok(None);
        }
        let path = PathBuf::from(&value.text);
        if path.is_absolute() {
            return Ok(Some(path));
        }
        let base = self.directory.clone().unwrap_or_else(|| base_dir_of(&self.file));
        Ok(Some(base.join(path)))
    }

    fn local_zone(&mut self, statement: &Statement) -> Result<(), ConfigError> {
        let (zone, kind) = two(statement)?;
        let zone_name = name(zone)?;
        let written = || format!("local-zone: {} {}", zone.text, kind.text);
        let behaviour = match kind.text.as_str() {
            "static" => Behaviour::Static,
            "transparent" => Behaviour::Transparent,
            "redirect" => Behaviour::Redirect,
            "refuse" => Behaviour::Refuse,
            "always_transparent" => Behaviour::AlwaysTransparent,
            "always_refuse" => Behaviour::AlwaysRefuse,
            "always_nxdomain" => Behaviour::AlwaysNxdomain,
            "always_nodata" => Behaviour::AlwaysNodata,
            "always_null" => Behaviour::AlwaysNull,
            "inform" | "inform_redirect" => {
                self.warnings.push(Warning::Approximated {
                    at: statement.at.clone(),
                    keyword: written(),
                    how: "answered as without inform_; turn on the query log to see who asks",
                });
                if kind.text == "inform" { Behaviour::Transparent } else { Behaviour::Redirect }
            }
            "deny" | "inform_deny" => {
                self.unsupported(statement, written(), "answers REFUSED instead of dropping (as refuse)");
                Behaviour::Refuse
            }
            "always_deny" => {
                self.unsupported(statement, written(), "answers REFUSED instead of dropping (as always_refuse)");
                Behaviour::AlwaysRefuse
            }
            "typetransparent" => {
                self.unsupported(
                    statement,
                    written(),
                    "a name with data but not of the type asked gets NODATA (as transparent)",
                );
                Behaviour::Transparent
            }
            "nodefault" => {
                self.nodefault.push(zone_name);
                return Ok(());
            }
            "noview" => {
                self.unsupported(statement, written(), "skipped (views are not read)");
                return Ok(());
            }
            _ => {
                return Err(ConfigError::InvalidValue {
                    at: kind.at.clone(),
                    what: "local-zone type",
                    text: kind.text.clone(),
                    expected: "static, transparent, redirect, refuse, always_transparent, always_refuse, always_nxdomain, always_nodata, always_null, inform, inform_redirect, nodefault, ...",
                });
            }
        };
        if self.zones.iter().any(|existing| existing.name == zone_name) {
            self.warnings.push(Warning::DuplicateIgnored { at: statement.at.clone(), what: written() });
            return Ok(());
        }
        self.zones.push(LocalZone { name: zone_name, behaviour, at: statement.at.clone(), data: Vec::new() });
        Ok(())
    }

    /// The validator's settings: with the validator module (the default),
    /// any trust anchor turns validation on, as it does in Unbound.
    fn dnssec(&mut self, config: &mut ForwarderConfig) -> Result<(), ConfigError> {
        for statement in std::mem::take(&mut self.trust_anchors) {
            let keyword = statement.keyword.as_str();
            if !self.validator {
                self.warnings.push(Warning::Ignored { at: statement.at.clone(), keyword: statement.written() });
                continue;
            }
            let dnssec = &mut config.dnssec;
            let (field, index) = match keyword {
                "trust-anchor-file" | "auto-trust-anchor-file" => {
                    let Some(path) = self.path(&statement)? else { continue };
                    let files = if keyword == "trust-anchor-file" {
                        &mut dnssec.trust_anchor_files
                    } else {
                        &mut dnssec.auto_trust_anchor_files
                    };
                    files.push(path);
                    let field =
                        if keyword == "trust-anchor-file" { "trust_anchor_files" } else { "auto_trust_anchor_files" };
                    dnssec.validate = true;
                    (field, files.len() - 1)
                }
                "trust-anchor" => {
                    dnssec.trust_anchors.push(one(&statement)?.text.clone());
                    dnssec.validate = true;
                    ("trust_anchors", dnssec.trust_anchors.len() - 1)
                }
                "domain-insecure" => {
                    dnssec.domain_insecure.push(name(one(&statement)?)?.to_string());
                    ("domain_insecure", dnssec.domain_insecure.len() - 1)
                }
                "val-bogus-ttl" => {
                    dnssec.bogus_ttl = Some(number(&statement, "TTL")?);
                    continue;
                }
                "val-sig-skew-min" => {
                    dnssec.sig_skew_min = Some(number(&statement, "seconds")?);
                    continue;
                }
                "val-sig-skew-max" => {
                    dnssec.sig_skew_max = Some(number(&statement, "seconds")?);
                    continue;
                }
                "val-nsec3-keysize-iterations" => {
                    // "keysize iterations ..." pairs (or one number): the largest iteration count applies.
                    let value = one(&statement)?;
                    let words: Vec<&str> = value.text.split_whitespace().collect();
                    let counts: Vec<&str> =
                        if words.len() == 1 { words } else { words.iter().skip(1).step_by(2).copied().collect() };
                    let max = counts
                        .iter()
                        .map(|count| count.parse::<u16>())
                        .try_fold(0u16, |max, count| count.map(|count| max.max(count)));
                    let Ok(max) = max else {
                        return Err(ConfigError::InvalidValue {
                            at: value.at.clone(),
                            what: "val-nsec3-keysize-iterations",
                            text: value.text.clone(),
                            expected: "\"keysize iterations ...\" pairs of numbers",
                        });
                    };
                    self.warnings.push(Warning::Approximated {
                        at: statement.at.clone(),
                        keyword: statement.written(),
                        how: "the largest iteration count applies to every key size",
                    });
                    dnssec.nsec3_max_iterations = Some(max);
                    continue;
                }
                "root-key-sentinel" => {
                    self.warnings.push(Warning::Ignored { at: statement.at.clone(), keyword: statement.written() });
                    continue;
                }
                _ => {
                    self.unsupported(
                        &statement,
                        statement.written(),
                        "skipped (give the keys as trust-anchor-file in zone-file form)",
                    );
                    continue;
                }
            };
            config.record_origin(format!("dnssec.{field}[{index}]"), statement.at.clone());
        }
        Ok(())
    }

    fn forward_option(&mut self, statement: &Statement) -> Result<(), ConfigError> {
        let keyword = statement.keyword.as_str();
        match keyword {
            "name" => {
                let token = one(statement)?;
                let zone_name = name(token)?;
                if let Some(zone) = self.forward_zones.last_mut() {
                    zone.name = Some((zone_name, statement.at.clone()));
                }
            }
            "forward-addr" => {
                let token = one(statement)?.clone();
                if let Some(zone) = self.forward_zones.last_mut() {
                    zone.addresses.push(token);
                }
            }
            "forward-host" => {
                let token = one(statement)?.clone();
                if let Some(zone) = self.forward_zones.last_mut() {
                    zone.hosts.push(token);
                }
            }
            "forward-first" | "forward-tls-upstream" | "forward-ssl-upstream" | "forward-tcp-upstream" => {
                let value = yes_no(statement)?;
                if let Some(zone) = self.forward_zones.last_mut() {
                    match keyword {
                        "forward-first" => zone.first = value,
                        "forward-tcp-upstream" => zone.tcp = value,
                        _ => zone.tls = value,
                    }
                }
            }
            "forward-no-cache" => {
                if yes_no(statement)? {
                    self.unsupported(statement, statement.written(), "answers are cached like all others");
                }
            }
            _ => self.unsupported(statement, format!("forward-zone: {}", statement.written()), "skipped"),
        }
        Ok(())
    }

    fn convert(
        mut self,
        environment: &dyn UnboundEnvironment,
        ignore_unsupported: bool,
    ) -> Result<(ForwarderConfig, Vec<Warning>), ConfigError> {
        let mut config = ForwarderConfig::default();
        self.dnssec(&mut config)?;
        config.origin.file = Some(self.file.clone());
        self.listeners(&mut config);
        if !self.unsupported.is_empty() && !ignore_unsupported {
            return Err(ConfigError::Unsupported { items: self.unsupported });
        }
        let mut warnings: Vec<Warning> =
            std::mem::take(&mut self.unsupported).into_iter().map(Warning::SkippedUnsupported).collect();
        warnings.append(&mut self.warnings);

        // Cache, EDNS, limits.
        if let Some(ttl) = self.cache_max_ttl {
            config.cache.max_ttl = ttl;
        }
        if let Some(ttl) = self.cache_min_ttl {
            config.cache.min_ttl = ttl;
        }
        if let Some(ttl) = self.cache_max_negative_ttl {
            config.cache.negative_max_ttl = ttl;
        }
        if let Some(bytes) = self.msg_cache_size {
            config.cache.max_bytes = bytes;
        }
        if self.serve_expired {
            config.cache.serve_stale_secs = u64::from(self.serve_expired_ttl.filter(|&ttl| ttl > 0).unwrap_or(86_400));
            if let Some(ttl) = self.serve_expired_reply_ttl {
                config.cache.stale_ttl_secs = ttl;
            }
        }
        if let Some(size) = self.edns_buffer_size {
            config.edns.udp_payload_size = size;
        }
        if let Some(rate) = self.ip_ratelimit.filter(|&rate| rate > 0) {
            config.limits.per_client_qps = Some(rate);
        }

        // Forward zones become upstream groups.
        let mut forwards: Vec<(NameBuf, String, bool)> = Vec::new();
        for (index, zone) in self.forward_zones.iter().enumerate() {
            let Some((zone_name, name_at)) = &zone.name else {
                return Err(ConfigError::Malformed {
                    at: zone.at.clone(),
                    keyword: "forward-zone:".into(),
                    problem: "has no name:",
                });
            };
            let earlier = self.forward_zones.get(..index).unwrap_or_default();
            if let Some((_, first)) =
                earlier.iter().filter_map(|other| other.name.as_ref()).find(|(other, _)| other == zone_name)
            {
                return Err(ConfigError::from(signpost_rules::Error::Duplicate {
                    at: name_at.clone(),
                    what: "forward zone",
                    name: zone_name.to_string(),
                    first: first.clone(),
                }));
            }
            let servers = self.servers(environment, zone)?;
            if servers.is_empty() {
                return Err(ConfigError::NoServers { at: zone.at.clone(), zone: zone_name.to_string() });
            }
            let group_name = zone_name.to_relative_string();
            let mut group = GroupConfig::new(group_name.clone(), servers);
            // Unbound picks among fast servers and moves on after SERVFAIL or REFUSED.
            group.policy = Policy::Fastest;
            group.retry_on = RetryOn { servfail: true, refused: true, ..RetryOn::NETWORK };
            if let Some(bundle) = &self.tls_cert_bundle {
                group.tls.ca_file = Some(bundle.clone());
                group.tls.ignore_system_roots = !self.tls_system_cert;
            }
            config.record_origin(format!("upstreams[{}]", config.upstreams.len()), zone.at.clone());
            config.upstreams.push(group);
            forwards.push((zone_name.clone(), group_name, zone.first));
        }
        let default_group = forwards
            .iter()
            .find(|(zone, _, _)| zone.is_root())
            .map_or_else(|| SYSTEM_GROUP.to_owned(), |(_, group, _)| group.clone());
        if forwards.iter().any(|(zone, _, _)| zone.is_root()) {
            config.default_group = Some(default_group.clone());
        }

        // Local zones: the user's, the defaults they do not replace, and
        // transparent zones for data outside every zone.
        let mut zones = std::mem::take(&mut self.zones);
        if !self.disable_default_zones {
            for default in defaults::default_zones(self.unblock_lan_zones) {
                let Ok(zone_name) = default.name.parse::<NameBuf>() else { continue };
                if zones.iter().any(|zone| zone.name == zone_name) || self.nodefault.contains(&zone_name) {
                    continue;
                }
                let at = Location {
                    file: Some(self.file.clone()),
                    ..Location::field(format!("default local-zone {}", default.name))
                };
                let data = default
                    .records
                    .iter()
                    .filter_map(|text| text.parse::<RecordBuf>().ok())
                    .map(|record| (record, at.clone()))
                    .collect();
                let behaviour = if default.redirect { Behaviour::Redirect } else { Behaviour::Static };
                zones.push(LocalZone { name: zone_name, behaviour, at, data });
            }
        }
        for (record, at) in std::mem::take(&mut self.data) {
            let owner = record.name.to_lowercase();
            match closest(&zones, &owner, true) {
                Some(index) => {
                    if let Some(zone) = zones.get_mut(index) {
                        zone.data.push((record, at));
                    }
                }
                None => zones.push(LocalZone {
                    name: owner,
                    behaviour: Behaviour::Transparent,
                    at: at.clone(),
                    data: vec![(record, at)],
                }),
            }
        }

        // Owner names that get a transparent zone of their own.
        let mut owner_zones: BTreeMap<NameBuf, Vec<(RecordBuf, Location)>> = BTreeMap::new();
        for zone in zones.iter().filter(|zone| matches!(zone.behaviour, Behaviour::Transparent | Behaviour::Refuse)) {
            for (record, at) in &zone.data {
                owner_zones.entry(record.name.to_lowercase()).or_default().push((record.clone(), at.clone()));
            }
        }
        let suffix_or_wildcard = |rule: &mut RuleConfig, name: &NameBuf| {
            if owner_zones.contains_key(name) {
                rule.wildcard = Some(format!("*.{}", name.to_relative_string()));
            } else {
                rule.suffix = Some(name.to_relative_string());
            }
        };

        let mut rules: Vec<(RuleConfig, Location)> = Vec::new();
        let mut zone_configs: Vec<(ZoneConfig, Location, Vec<Location>)> = Vec::new();
        for zone in &zones {
            let apex = zone.name.to_relative_string();
            let data = if zone.behaviour.uses_data() { zone.data.as_slice() } else { &[] };
            match zone.behaviour {
                Behaviour::Static | Behaviour::Redirect => {
                    let mode =
                        if zone.behaviour == Behaviour::Static { ZoneMode::Authoritative } else { ZoneMode::Redirect };
                    zone_configs.push(zone_config(&format!("local-zone {apex}"), &zone.name, data, mode, &zone.at));
                }
                Behaviour::Transparent | Behaviour::AlwaysTransparent => {}
                Behaviour::Refuse | Behaviour::AlwaysRefuse | Behaviour::AlwaysNxdomain => {
                    let mut rule = empty_rule(&format!("local-zone {apex}"), ActionKind::Block);
                    rule.block = Some(if zone.behaviour == Behaviour::AlwaysNxdomain {
                        BlockKind::Nxdomain
                    } else {
                        BlockKind::Refused
                    });
                    if zone.behaviour == Behaviour::Refuse {
                        suffix_or_wildcard(&mut rule, &zone.name);
                    } else {
                        rule.suffix = Some(apex.clone());
                    }
                    rules.push((rule, zone.at.clone()));
                }
                Behaviour::AlwaysNodata | Behaviour::AlwaysNull => {
                    let mut rule = empty_rule(&format!("local-zone {apex}"), ActionKind::Redirect);
                    rule.suffix = Some(apex.clone());
                    let null = zone.behaviour == Behaviour::AlwaysNull;
                    rule.ipv4 = Some(if null { "0.0.0.0" } else { "none" }.into());
                    rule.ipv6 = Some(if null { "::" } else { "none" }.into());
                    rule.ttl = Some(3600);
                    rules.push((rule, zone.at.clone()));
                }
            }
        }
        for (owner, data) in &owner_zones {
            let at = data.first().map_or_else(Location::default, |(_, at)| at.clone());
            let id = format!("local-data {}", owner.to_relative_string());
            zone_configs.push(zone_config(&id, owner, data, ZoneMode::Transparent, &at));
        }

        // Forward zones whose names a local zone does not answer.
        let live = |zone_name: &NameBuf| {
            closest(&zones, zone_name, true)
                .and_then(|index| zones.get(index))
                .is_none_or(|zone| zone.behaviour.resolves())
        };
        for (zone_name, group, first) in &forwards {
            let at = self
                .forward_zones
                .iter()
                .find(|zone| zone.name.as_ref().is_some_and(|(n, _)| n == zone_name))
                .map_or_else(Location::default, |zone| zone.at.clone());
            if !live(zone_name) {
                if let Some(by) = closest(&zones, zone_name, true).and_then(|index| zones.get(index)) {
                    warnings.push(Warning::Shadowed {
                        at: at.clone(),
                        zone: zone_name.to_string(),
                        by: by.name.to_string(),
                    });
                }
                continue;
            }
            if zone_name.is_root() {
                continue;
            }
            let mut rule = empty_rule(&format!("forward-zone {}", zone_name.to_relative_string()), ActionKind::Forward);
            suffix_or_wildcard(&mut rule, zone_name);
            rule.group = Some(group.clone());
            rule.forward_first = *first;
            rules.push((rule, at));
        }
        // Transparent zones inside zones that answer: their names are resolved.
        for zone in zones.iter().filter(|zone| zone.behaviour.resolves()) {
            let Some(parent) = zone.name.parent() else { continue };
            let Some(enclosing) = closest(&zones, &parent, true).and_then(|index| zones.get(index)) else { continue };
            if enclosing.behaviour.resolves() || forwards.iter().any(|(name, _, _)| *name == zone.name && live(name)) {
                continue;
            }
            let (group, first) = forwards
                .iter()
                .filter(|(name, _, _)| zone.name.is_subdomain_of(name))
                .max_by_key(|(name, _, _)| name.label_count())
                .map_or((default_group.clone(), false), |(_, group, first)| (group.clone(), *first));
            let apex = zone.name.to_relative_string();
            let mut rule = empty_rule(&format!("local-zone {apex} (below)"), ActionKind::Forward);
            rule.wildcard = Some(format!("*.{apex}"));
            rule.group = Some(group.clone());
            rule.forward_first = first;
            rules.push((rule, zone.at.clone()));
            if !owner_zones.contains_key(&zone.name) {
                let mut rule = empty_rule(&format!("local-zone {apex}"), ActionKind::Forward);
                rule.exact = Some(apex.clone());
                rule.group = Some(group);
                rule.forward_first = first;
                rules.push((rule, zone.at.clone()));
            }
        }

        for (index, (rule, at)) in rules.into_iter().enumerate() {
            config.record_origin(format!("rules[{index}]"), at);
            config.rules.push(rule);
        }
        for (index, (zone, at, record_locations)) in zone_configs.into_iter().enumerate() {
            config.record_origin(format!("zones[{index}]"), at);
            for (record_index, at) in record_locations.into_iter().enumerate() {
                config.record_origin(format!("zones[{index}].records[{record_index}]"), at);
            }
            config.zones.push(zone);
        }
        Ok((config, warnings))
    }

    /// Listeners for every interface, with the access-control allow-list.
    fn listeners(&mut self, config: &mut ForwarderConfig) {
        let mut interfaces = self.interfaces.clone();
        if interfaces.is_empty() {
            let at = Location { file: Some(self.file.clone()), ..Location::field("default interfaces") };
            if self.do_ip4 {
                interfaces.push(Token { text: "127.0.0.1".into(), at: at.clone(), quoted: false });
            }
            if self.do_ip6 {
                interfaces.push(Token { text: "::1".into(), at, quoted: false });
            }
        }
        // Unbound's defaults: localhost allowed, everything else refused.
        let mut access: Vec<(IpNet, AclAction)> = ["0.0.0.0/0", "::/0"]
            .iter()
            .filter_map(|net| net.parse().ok())
            .map(|net| (net, AclAction::Refuse))
            .chain(
                ["127.0.0.0/8", "::1/128", "::ffff:127.0.0.1/128"]
                    .iter()
                    .filter_map(|net| net.parse().ok())
                    .map(|net| (net, AclAction::Allow)),
            )
            .collect();
        access.extend(self.access.iter().copied());
        config.access_control = access
            .iter()
            .map(|(network, action)| AccessControl { network: network.to_string(), action: *action })
            .collect();
        let tls = match (&self.tls_service_key, &self.tls_service_pem) {
            (Some(key), Some(pem)) => Some((key.clone(), pem.clone())),
            _ => None,
        };
        for interface in interfaces {
            let (address, port) = match interface.text.rsplit_once('@') {
                Some((address, port)) => (address, port.parse::<u16>().ok()),
                None => (interface.text.as_str(), Some(self.port)),
            };
            let (Ok(address), Some(port)) = (address.parse::<IpAddr>(), port) else {
                self.unsupported.push(Unsupported {
                    at: interface.at.clone(),
                    keyword: format!("interface: {}", interface.text),
                    when_ignored: "skipped (give IP addresses, not interface names)",
                });
                continue;
            };
            if (address.is_ipv4() && !self.do_ip4) || (address.is_ipv6() && !self.do_ip6) {
                continue;
            }
            let socket = SocketAddr::new(address, port);
            let mut add = |mut listener: ListenerConfig| {
                listener.workers = self.num_threads;
                config.record_origin(format!("listeners[{}]", config.listeners.len()), interface.at.clone());
                config.listeners.push(listener);
            };
            match &tls {
                Some((key, pem)) if port == self.tls_port => {
                    let mut listener = ListenerConfig::new(Transport::Dot, socket);
                    listener.tls_cert = Some(pem.clone());
                    listener.tls_key = Some(key.clone());
                    add(listener);
                }
                Some((key, pem)) if port == self.https_port => {
                    let mut listener = ListenerConfig::new(Transport::Doh, socket);
                    listener.tls_cert = Some(pem.clone());
                    listener.tls_key = Some(key.clone());
                    listener.doh_path = self.http_endpoint.clone();
                    add(listener);
                }
                _ => {
                    if self.do_udp {
                        add(ListenerConfig::new(Transport::Udp, socket));
                    }
                    if self.do_tcp {
                        add(ListenerConfig::new(Transport::Tcp, socket));
                    }
                }
            }
        }
    }

    /// A forward zone's servers: its addresses and its resolved hosts.
    fn servers(
        &self,
        environment: &dyn UnboundEnvironment,
        zone: &ForwardZone,
    ) -> Result<Vec<UpstreamServer>, ConfigError> {
        let protocol = if zone.tls || self.tls_upstream {
            Protocol::Tls
        } else if zone.tcp || self.tcp_upstream {
            Protocol::Tcp
        } else {
            Protocol::Udp
        };
        let mut servers = Vec::new();
        for token in &zone.addresses {
            let mut server =
                parse_server(&token.text, protocol).filter(|_| !token.text.contains("://")).ok_or_else(|| {
                    ConfigError::InvalidValue {
                        at: token.at.clone(),
                        what: "forward-addr",
                        text: token.text.clone(),
                        expected: "IP[@port][#tls-name]",
                    }
                })?;
            if protocol == Protocol::Tls && !token.text.contains('@') {
                server.address.set_port(self.tls_port);
            }
            if protocol != Protocol::Tls {
                server.tls_name = None;
            }
            servers.push(server);
        }
        for token in &zone.hosts {
            let (rest, tls_name) = match token.text.split_once('#') {
                Some((rest, name)) => (rest, Some(name.to_owned())),
                None => (token.text.as_str(), None),
            };
            let (host, port) = match rest.split_once('@') {
                Some((host, port)) => (host, port.parse::<u16>().ok()),
                None => (rest, Some(if protocol == Protocol::Tls { self.tls_port } else { 53 })),
            };
            let Some(port) = port else {
                return Err(ConfigError::InvalidValue {
                    at: token.at.clone(),
                    what: "forward-host",
                    text: token.text.clone(),
                    expected: "name[@port][#tls-name]",
                });
            };
            for address in self.resolve(environment, host, port, &token.at)? {
                let mut server = UpstreamServer::new(address, protocol);
                if protocol == Protocol::Tls {
                    server.tls_name = Some(tls_name.clone().unwrap_or_else(|| host.trim_end_matches('.').to_owned()));
                }
                servers.push(server);
            }
        }
        Ok(servers)
    }

    /// A forward-host's addresses: from this file's local-data, else the system resolver.
    fn resolve(
        &self,
        environment: &dyn UnboundEnvironment,
        host: &str,
        port: u16,
        at: &Location,
    ) -> Result<Vec<SocketAddr>, ConfigError> {
        if let Ok(wanted) = host.parse::<NameBuf>() {
            let local: Vec<SocketAddr> = self
                .data
                .iter()
                .filter(|(record, _)| record.name == wanted)
                .filter_map(|(record, _)| match &record.data {
                    RDataBuf::A(v4) => Some(SocketAddr::new(IpAddr::V4(*v4), port)),
                    RDataBuf::Aaaa(v6) => Some(SocketAddr::new(IpAddr::V6(*v6), port)),
                    _ => None,
                })
                .collect();
            if !local.is_empty() {
                return Ok(local);
            }
        }
        let host = host.trim_end_matches('.');
        environment.resolve_host(host, port).map_err(|error| ConfigError::UnresolvedHost {
            at: at.clone(),
            host: host.to_owned(),
            reason: Arc::new(error),
        })
    }
}

/// The deepest zone at or above `name` (`inclusive`: the zone may be `name` itself).
fn closest(zones: &[LocalZone], name: &NameBuf, inclusive: bool) -> Option<usize> {
    zones
        .iter()
        .enumerate()
        .filter(|(_, zone)| name.is_subdomain_of(&zone.name) && (inclusive || zone.name != *name))
        .max_by_key(|(_, zone)| zone.name.label_count())
        .map(|(index, _)| index)
}

fn zone_config(
    id: &str,
    apex: &NameBuf,
    data: &[(RecordBuf, Location)],
    mode: ZoneMode,
    at: &Location,
) -> (ZoneConfig, Location, Vec<Location>) {
    let zone = ZoneConfig {
        name: apex.to_string(),
        id: Some(id.to_owned()),
        file: None,
        records: data.iter().map(|(record, _)| record.to_string()).collect(),
        ttl: None,
        views: Vec::new(),
        mode,
    };
    (zone, at.clone(), data.iter().map(|(_, at)| at.clone()).collect())
}

#[cfg(test)]
mod tests;
