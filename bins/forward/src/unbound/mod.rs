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

mod lexer;
mod local;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use signpost_rules::Location;
use signpost_rules::ZoneMode;
use signpost_rules::config::ZoneConfig;
use signpost_upstream::{GroupConfig, Policy, Protocol, RetryOn, ServerConfig as UpstreamServer};
use signpost_wire::{NameBuf, RDataBuf, RecordBuf};

pub use lexer::MAX_INCLUDE_DEPTH;
use lexer::{Statement, Token, read_statements};

use crate::acl::{AccessControl, AclAction, parse_network};
use crate::build::{SYSTEM_GROUP, base_dir_of};
use crate::config::{ForwarderConfig, parse_server, set_if_given};
use crate::control::{ControlTls, RemoteControlConfig};

/// Unbound's default `server-key-file` and `server-cert-file` (where
/// Debian's `unbound-control-setup` writes them).
const DEFAULT_SERVER_KEY: &str = "/etc/unbound/unbound_server.key";
const DEFAULT_SERVER_CERT: &str = "/etc/unbound/unbound_server.pem";
use crate::error::{ConfigError, Unsupported, Warning};
use local::{Access, Forwards, UnboundView};
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
    "add-holddown",
    "del-holddown",
    "keep-missing",
    "aggressive-nsec",
];

/// Clauses other than server, forward-zone, stub-zone, view, auth-zone and remote-control.
const OTHER_CLAUSES: &[&str] = &["python", "dynlib", "rpz", "cachedb", "dnscrypt", "ipset"];

/// Where unbound sends dnstap when `dnstap-socket-path` is not given
/// (Debian's build: `--with-dnstap-socket-path=/run/dnstap.sock`).
const DEFAULT_DNSTAP_SOCKET: &str = "/run/dnstap.sock";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Clause {
    /// Before the first clause, or after `include-toplevel:`.
    Outside,
    Server,
    /// `forward-zone:` and `stub-zone:` (the last of `forward_zones`).
    ForwardZone,
    View,
    AuthZone,
    RemoteControl,
    Dnstap,
    /// A clause we do not read; its attributes are skipped (the clause itself is reported).
    Skipped,
}

/// How a local zone answers, after mapping Unbound's types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// `static`: local data, else NXDOMAIN/NODATA.
    Static,
    /// `transparent` (and `inform`): local data, else resolve; a name with
    /// data but not of the type asked gets NODATA.
    Transparent,
    /// `typetransparent`: local data, else resolve, also for a name with
    /// data of other types.
    TypeTransparent,
    /// `always_transparent`: resolve, ignoring local data.
    AlwaysTransparent,
    /// `redirect` (and `inform_redirect`): the apex's data for every name.
    Redirect,
    /// `refuse`: local data, else REFUSED.
    Refuse,
    /// `deny` (and `inform_deny`): local data, else no answer.
    Deny,
    /// `always_refuse`: REFUSED.
    AlwaysRefuse,
    /// `always_deny`: no answer.
    AlwaysDeny,
    /// `always_nxdomain`.
    AlwaysNxdomain,
    /// `always_nodata`.
    AlwaysNodata,
    /// `always_null`: 0.0.0.0 and ::, NODATA for other types.
    AlwaysNull,
    /// `block_a`: NODATA for A, everything else resolved.
    BlockA,
    /// `block_aaaa`: NODATA for AAAA, everything else resolved.
    BlockAaaa,
    /// `noview` (in a view): the global zones answer instead.
    NoView,
}

impl Behaviour {
    /// Whether names the zone covers are resolved (forwarded) rather than answered.
    fn resolves(self) -> bool {
        matches!(
            self,
            Self::Transparent
                | Self::TypeTransparent
                | Self::AlwaysTransparent
                | Self::BlockA
                | Self::BlockAaaa
                | Self::NoView
        )
    }

    /// Whether local data is used.
    fn uses_data(self) -> bool {
        matches!(
            self,
            Self::Static | Self::Transparent | Self::TypeTransparent | Self::Redirect | Self::Refuse | Self::Deny
        )
    }

    /// Whether the zone's data becomes one zone per owner name (so names
    /// without data fall through to the zone's rule or to forwarding).
    fn owner_zones(self) -> bool {
        matches!(self, Self::Transparent | Self::TypeTransparent | Self::Refuse | Self::Deny)
    }
}

#[derive(Clone)]
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
    /// A `stub-zone:`: queries go without RD to authoritative servers.
    stub: bool,
    /// `forward-no-cache` / `stub-no-cache`: answers are not cached.
    no_cache: bool,
}

/// What the statements say, typed.
struct Parsed {
    file: PathBuf,
    interfaces: Vec<Token>,
    port: u16,
    access: Vec<(IpNet, Access)>,
    /// `remote-control:`: enabled, where.
    control: Option<Location>,
    control_interfaces: Vec<Token>,
    control_port: u16,
    /// `control-use-cert` (default yes: TLS) and where it was set.
    control_use_cert: (bool, Option<Location>),
    /// `dnstap:` as read, with unbound's defaults (everything off).
    dnstap: signpost_server::DnstapConfig,
    /// Where `dnstap-enable: yes` was set.
    dnstap_enabled: Option<Location>,
    /// `dnstap-ip`, when set and not empty.
    dnstap_ip: Option<Token>,
    /// `dnstap-tls` (unbound's default: yes) and where it was set.
    dnstap_tls: (bool, Option<Location>),
    /// `server-key-file` and `server-cert-file`, when given.
    server_key_file: Option<PathBuf>,
    server_cert_file: Option<PathBuf>,
    /// `access-control-view:` entries.
    access_views: Vec<(IpNet, String, Location)>,
    views: Vec<UnboundView>,
    zones: Vec<LocalZone>,
    /// Names of `nodefault` zones (they only turn off a default zone).
    nodefault: Vec<NameBuf>,
    data: Vec<(RecordBuf, Location)>,
    forward_zones: Vec<ForwardZone>,
    auth_zones: Vec<crate::config::AuthZoneConfig>,
    cache_max_ttl: Option<u32>,
    cache_min_ttl: Option<u32>,
    cache_max_negative_ttl: Option<u32>,
    msg_cache_size: Option<usize>,
    /// `so-rcvbuf`: the UDP listeners' receive buffer (0: ours, 4 MiB).
    so_rcvbuf: Option<usize>,
    /// `infra-cache-min-rtt`: the floor of the retransmission timeout.
    infra_cache_min_rtt: Option<Duration>,
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
    /// Unbound's `do-not-query-localhost` (default yes): forward and stub
    /// targets on loopback are not asked.
    do_not_query_localhost: bool,
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
        _ => Err(invalid(value, "switch", "yes or no")),
    }
}

/// `token` is not a valid `what`: `expected` would be.
fn invalid(token: &Token, what: &'static str, expected: &'static str) -> ConfigError {
    ConfigError::InvalidValue { at: token.at.clone(), what, text: token.text.clone(), expected }
}

/// A network setting's value (`10.0.0.0/8`, or an address).
fn network_value(network: &Token) -> Result<IpNet, ConfigError> {
    parse_network(&network.text)
        .ok_or_else(|| invalid(network, "network", "an IP network such as 10.0.0.0/8 or an address"))
}

fn number<T: core::str::FromStr>(statement: &Statement, what: &'static str) -> Result<T, ConfigError> {
    let value = one(statement)?;
    value.text.parse().map_err(|_| invalid(value, what, "a number in range"))
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
/// A `local-data:` or `local-data-ptr:` record and where it was given (the
/// server clause and `view:` clauses read them alike).
fn local_record(statement: &Statement) -> Result<(RecordBuf, Location), ConfigError> {
    let token = one(statement)?;
    let record = if statement.keyword == "local-data-ptr" { ptr_record(token)? } else { record(token)? };
    Ok((record, statement.at.clone()))
}

fn ptr_record(token: &Token) -> Result<RecordBuf, ConfigError> {
    let malformed = || invalid(token, "local-data-ptr", "\"address [ttl] name\"");
    let words: Vec<&str> = token.text.split_whitespace().collect();
    let (address, ttl, target) = match words.as_slice() {
        [address, target] => (*address, "3600", *target),
        [address, ttl, target] => (*address, *ttl, *target),
        _ => return Err(malformed()),
    };
    let address: IpAddr = address.parse().map_err(|_| malformed())?;
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
            access_views: Vec::new(),
            views: Vec::new(),
            control: None,
            control_interfaces: Vec::new(),
            control_port: 8953,
            control_use_cert: (true, None),
            dnstap: signpost_server::DnstapConfig {
                enable: false,
                send_identity: false,
                send_version: false,
                log_client_query_messages: false,
                log_client_response_messages: false,
                log_forwarder_query_messages: false,
                log_forwarder_response_messages: false,
                ..signpost_server::DnstapConfig::default()
            },
            dnstap_enabled: None,
            dnstap_ip: None,
            dnstap_tls: (true, None),
            server_key_file: None,
            server_cert_file: None,
            zones: Vec::new(),
            nodefault: Vec::new(),
            data: Vec::new(),
            forward_zones: Vec::new(),
            auth_zones: Vec::new(),
            cache_max_ttl: None,
            cache_min_ttl: None,
            cache_max_negative_ttl: None,
            msg_cache_size: None,
            so_rcvbuf: None,
            infra_cache_min_rtt: None,
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
            do_not_query_localhost: true,
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
                    "forward-zone" | "stub-zone" => Some(Clause::ForwardZone),
                    "view" => Some(Clause::View),
                    "auth-zone" => Some(Clause::AuthZone),
                    "remote-control" => Some(Clause::RemoteControl),
                    "dnstap" => Some(Clause::Dnstap),
                    "include-toplevel" => Some(Clause::Outside),
                    _ if OTHER_CLAUSES.contains(&keyword) => {
                        parsed.unsupported(statement, statement.written(), "skipped with everything in it");
                        Some(Clause::Skipped)
                    }
                    _ => None,
                };
                if let Some(next) = next {
                    if next == Clause::AuthZone {
                        parsed.auth_zones.push(crate::config::AuthZoneConfig::new(""));
                    }
                    if next == Clause::ForwardZone {
                        parsed.forward_zones.push(ForwardZone {
                            name: None,
                            at: statement.at.clone(),
                            addresses: Vec::new(),
                            hosts: Vec::new(),
                            first: false,
                            tls: false,
                            tcp: false,
                            stub: keyword == "stub-zone",
                            no_cache: false,
                        });
                    }
                    if next == Clause::View {
                        parsed.views.push(UnboundView {
                            name: String::new(),
                            at: statement.at.clone(),
                            first: false,
                            zones: Vec::new(),
                            nodefault: Vec::new(),
                            data: Vec::new(),
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
                Clause::View => parsed.view_option(statement)?,
                Clause::AuthZone => parsed.auth_option(statement)?,
                Clause::RemoteControl => parsed.control_option(statement)?,
                Clause::Dnstap => parsed.dnstap_option(statement)?,
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
                let parsed = network_value(network)?;
                let action = match action.text.as_str() {
                    "allow" | "allow_setrd" | "allow_snoop" => Access::Allow,
                    "refuse" => Access::Refuse,
                    "deny" => Access::Deny,
                    "refuse_non_local" => Access::RefuseNonLocal,
                    "deny_non_local" => Access::DenyNonLocal,
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
            "access-control-view" => {
                let (network, view) = two(statement)?;
                let parsed = network_value(network)?;
                self.access_views.push((parsed, view.text.clone(), statement.at.clone()));
            }
            "local-zone" => {
                if let Some(zone) = self.local_zone(statement)? {
                    add_zone(&mut self.zones, &mut self.nodefault, &mut self.warnings, zone);
                }
            }
            "local-data" | "local-data-ptr" => self.data.push(local_record(statement)?),
            "cache-max-ttl" => self.cache_max_ttl = Some(number(statement, "TTL")?),
            "cache-min-ttl" => self.cache_min_ttl = Some(number(statement, "TTL")?),
            "cache-max-negative-ttl" => self.cache_max_negative_ttl = Some(number(statement, "TTL")?),
            "msg-cache-size" => self.msg_cache_size = Some(size(statement)?),
            "so-rcvbuf" => self.so_rcvbuf = Some(size(statement)?).filter(|bytes| *bytes > 0),
            "infra-cache-min-rtt" => {
                self.infra_cache_min_rtt = Some(Duration::from_millis(number(statement, "milliseconds")?));
            }
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
            "do-not-query-localhost" => self.do_not_query_localhost = yes_no(statement)?,
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

    /// A `local-zone:` line: a zone, or `None` when it only makes a note.
    fn local_zone(&mut self, statement: &Statement) -> Result<Option<ParsedZone>, ConfigError> {
        let (zone, kind) = two(statement)?;
        let zone_name = name(zone)?;
        let written = || format!("local-zone: {} {}", zone.text, kind.text);
        let behaviour = match kind.text.as_str() {
            "static" => Behaviour::Static,
            "transparent" => Behaviour::Transparent,
            "typetransparent" => Behaviour::TypeTransparent,
            "redirect" => Behaviour::Redirect,
            "refuse" => Behaviour::Refuse,
            "deny" => Behaviour::Deny,
            "always_transparent" => Behaviour::AlwaysTransparent,
            "always_refuse" => Behaviour::AlwaysRefuse,
            "always_deny" => Behaviour::AlwaysDeny,
            "always_nxdomain" => Behaviour::AlwaysNxdomain,
            "always_nodata" => Behaviour::AlwaysNodata,
            "always_null" => Behaviour::AlwaysNull,
            "block_a" => Behaviour::BlockA,
            "block_aaaa" => Behaviour::BlockAaaa,
            "noview" => Behaviour::NoView,
            "inform" | "inform_redirect" | "inform_deny" => {
                self.warnings.push(Warning::Approximated {
                    at: statement.at.clone(),
                    keyword: written(),
                    how: "answered as without inform_ (the client is not logged); turn on the query log to see who asks",
                });
                match kind.text.as_str() {
                    "inform" => Behaviour::Transparent,
                    "inform_redirect" => Behaviour::Redirect,
                    _ => Behaviour::Deny,
                }
            }
            "nodefault" => return Ok(Some(ParsedZone::NoDefault(zone_name))),
            _ => {
                return Err(ConfigError::InvalidValue {
                    at: kind.at.clone(),
                    what: "local-zone type",
                    text: kind.text.clone(),
                    expected: "static, transparent, typetransparent, redirect, refuse, deny, always_transparent, always_refuse, always_deny, always_nxdomain, always_nodata, always_null, block_a, block_aaaa, inform, inform_deny, inform_redirect, noview or nodefault",
                });
            }
        };
        Ok(Some(ParsedZone::Zone(
            LocalZone { name: zone_name, behaviour, at: statement.at.clone(), data: Vec::new() },
            written(),
        )))
    }

    /// An option of the `remote-control:` clause.
    fn control_option(&mut self, statement: &Statement) -> Result<(), ConfigError> {
        match statement.keyword.as_str() {
            "control-enable" => self.control = yes_no(statement)?.then(|| statement.at.clone()),
            "control-interface" => self.control_interfaces.push(one(statement)?.clone()),
            "control-port" => self.control_port = number(statement, "port")?,
            "control-use-cert" => self.control_use_cert = (yes_no(statement)?, Some(statement.at.clone())),
            "server-key-file" => self.server_key_file = self.path(statement)?,
            "server-cert-file" => self.server_cert_file = self.path(statement)?,
            // The client's own certificate: unbound-control reads it, not the server.
            "control-key-file" | "control-cert-file" => {}
            _ => self.unsupported(statement, format!("remote-control: {}", statement.written()), "skipped"),
        }
        Ok(())
    }

    /// An option of the `dnstap:` clause.
    fn dnstap_option(&mut self, statement: &Statement) -> Result<(), ConfigError> {
        let text =
            |statement: &Statement| one(statement).map(|value| Some(value.text.clone()).filter(|t| !t.is_empty()));
        match statement.keyword.as_str() {
            "dnstap-enable" => self.dnstap_enabled = yes_no(statement)?.then(|| statement.at.clone()),
            "dnstap-bidirectional" => {
                if !yes_no(statement)? {
                    self.unsupported(
                        statement,
                        format!("dnstap: {}", statement.written()),
                        "ignored: frames go bidirectionally (READY/ACCEPT) anyway",
                    );
                }
            }
            "dnstap-socket-path" => self.dnstap.socket_path = self.path(statement)?,
            "dnstap-ip" => self.dnstap_ip = Some(one(statement)?.clone()).filter(|value| !value.text.is_empty()),
            "dnstap-tls" => self.dnstap_tls = (yes_no(statement)?, Some(statement.at.clone())),
            // Used with dnstap-ip and dnstap-tls: yes; "" means unset, as in unbound.
            "dnstap-tls-server-name" => self.dnstap.tls_server_name = text(statement)?,
            "dnstap-tls-cert-bundle" => self.dnstap.tls_cert_bundle = self.path(statement)?,
            "dnstap-tls-client-key-file" => self.dnstap.tls_client_key_file = self.path(statement)?,
            "dnstap-tls-client-cert-file" => self.dnstap.tls_client_cert_file = self.path(statement)?,
            "dnstap-send-identity" => self.dnstap.send_identity = yes_no(statement)?,
            "dnstap-send-version" => self.dnstap.send_version = yes_no(statement)?,
            "dnstap-identity" => self.dnstap.identity = text(statement)?,
            "dnstap-version" => self.dnstap.version = text(statement)?,
            "dnstap-log-client-query-messages" => self.dnstap.log_client_query_messages = yes_no(statement)?,
            "dnstap-log-client-response-messages" => self.dnstap.log_client_response_messages = yes_no(statement)?,
            "dnstap-log-forwarder-query-messages" => self.dnstap.log_forwarder_query_messages = yes_no(statement)?,
            "dnstap-log-forwarder-response-messages" => {
                self.dnstap.log_forwarder_response_messages = yes_no(statement)?
            }
            "dnstap-log-resolver-query-messages" | "dnstap-log-resolver-response-messages" => {
                if yes_no(statement)? {
                    self.warnings.push(Warning::Approximated {
                        at: statement.at.clone(),
                        keyword: statement.written(),
                        how: "nothing to log: Signpost forwards and never resolves iteratively; its upstream \
                              messages are FORWARDER_QUERY/RESPONSE (dnstap-log-forwarder-*-messages)",
                    });
                }
            }
            _ => self.unsupported(statement, format!("dnstap: {}", statement.written()), "skipped"),
        }
        Ok(())
    }

    /// The dnstap settings, when `dnstap-enable: yes`: over TCP to
    /// `dnstap-ip` (port 53 unless given, as unbound) when set, else to
    /// the unix socket. With `dnstap-ip`, TLS unless `dnstap-tls: no`
    /// (unbound's default is yes).
    fn dnstap(&self) -> Result<Option<signpost_server::DnstapConfig>, ConfigError> {
        if self.dnstap_enabled.is_none() {
            return Ok(None);
        }
        let mut dnstap = self.dnstap.clone();
        dnstap.enable = true;
        if let Some(ip) = &self.dnstap_ip {
            let address = crate::config::parse_address(&ip.text, 53).ok_or_else(|| ConfigError::InvalidValue {
                at: ip.at.clone(),
                what: "dnstap-ip",
                text: ip.text.clone(),
                expected: "an IP address, optionally with @port",
            })?;
            dnstap.address = Some(address);
            dnstap.tls = self.dnstap_tls.0;
        } else if dnstap.socket_path.is_none() {
            dnstap.socket_path = Some(PathBuf::from(DEFAULT_DNSTAP_SOCKET));
        }
        Ok(Some(dnstap))
    }

    /// Where `unbound-control` connects: unix sockets, and TCP addresses
    /// (with TLS unless `control-use-cert: no`).
    fn remote_control(&mut self) -> Option<RemoteControlConfig> {
        let enabled_at = self.control.clone()?;
        let mut interfaces = self.control_interfaces.clone();
        if interfaces.is_empty() {
            for address in ["127.0.0.1", "::1"] {
                interfaces.push(Token { text: address.into(), at: enabled_at.clone(), quoted: false });
            }
        }
        let mut config = RemoteControlConfig::default();
        for interface in interfaces {
            if interface.text.starts_with('/') {
                config.sockets.push(PathBuf::from(&interface.text));
                continue;
            }
            let address = interface.text.parse().ok();
            let skipped = "skipped (give an IP address or a socket path)";
            let Some(address) = self.usable(&interface, "control-interface", address, skipped) else { continue };
            config.addresses.push(SocketAddr::new(address, self.control_port));
        }
        if self.control_use_cert.0 && !config.addresses.is_empty() {
            let file = |path: &Option<PathBuf>, default: &str| path.clone().unwrap_or_else(|| PathBuf::from(default));
            config.tls = Some(ControlTls {
                server_key_file: file(&self.server_key_file, DEFAULT_SERVER_KEY),
                server_cert_file: file(&self.server_cert_file, DEFAULT_SERVER_CERT),
            });
        }
        Some(config)
    }

    /// An option of a `view:` clause.
    fn view_option(&mut self, statement: &Statement) -> Result<(), ConfigError> {
        let keyword = statement.keyword.as_str();
        let parsed_zone = if keyword == "local-zone" { self.local_zone(statement)? } else { None };
        let Some(view) = self.views.last_mut() else { return Ok(()) };
        match keyword {
            "name" => view.name = one(statement)?.text.clone(),
            "view-first" => view.first = yes_no(statement)?,
            "local-zone" => {
                if let Some(zone) = parsed_zone {
                    add_zone(&mut view.zones, &mut view.nodefault, &mut self.warnings, zone);
                }
            }
            "local-data" | "local-data-ptr" => view.data.push(local_record(statement)?),
            _ => self.unsupported(statement, format!("view: {}", statement.written()), "skipped"),
        }
        Ok(())
    }

    /// The address of an `interface:` or `control-interface:` (`keyword`)
    /// when it is one and its family is on; an address that is not one is
    /// reported as skipped (`skipped` says how).
    fn usable(
        &mut self,
        interface: &Token,
        keyword: &str,
        address: Option<IpAddr>,
        skipped: &'static str,
    ) -> Option<IpAddr> {
        let Some(address) = address else {
            self.unsupported.push(Unsupported {
                at: interface.at.clone(),
                keyword: format!("{keyword}: {}", interface.text),
                when_ignored: skipped,
            });
            return None;
        };
        ((address.is_ipv4() && self.do_ip4) || (address.is_ipv6() && self.do_ip6)).then_some(address)
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
                "val-bogus-ttl" | "val-sig-skew-min" | "val-sig-skew-max" => {
                    let (setting, what) = match keyword {
                        "val-bogus-ttl" => (&mut dnssec.bogus_ttl, "TTL"),
                        "val-sig-skew-min" => (&mut dnssec.sig_skew_min, "seconds"),
                        _ => (&mut dnssec.sig_skew_max, "seconds"),
                    };
                    *setting = Some(number(&statement, what)?);
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
                        return Err(invalid(
                            value,
                            "val-nsec3-keysize-iterations",
                            "\"keysize iterations ...\" pairs of numbers",
                        ));
                    };
                    self.warnings.push(Warning::Approximated {
                        at: statement.at.clone(),
                        keyword: statement.written(),
                        how: "the largest iteration count applies to every key size",
                    });
                    dnssec.nsec3_max_iterations = Some(max);
                    continue;
                }
                "add-holddown" | "del-holddown" | "keep-missing" => {
                    let setting = match keyword {
                        "add-holddown" => &mut dnssec.add_holddown,
                        "del-holddown" => &mut dnssec.del_holddown,
                        _ => &mut dnssec.keep_missing,
                    };
                    *setting = Some(number(&statement, "seconds")?);
                    continue;
                }
                "aggressive-nsec" => {
                    dnssec.aggressive_nsec = Some(yes_no(&statement)?);
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
            "forward-addr" | "stub-addr" => {
                let token = one(statement)?.clone();
                if let Some(zone) = self.forward_zones.last_mut() {
                    zone.addresses.push(token);
                }
            }
            "forward-host" | "stub-host" => {
                let token = one(statement)?.clone();
                if let Some(zone) = self.forward_zones.last_mut() {
                    zone.hosts.push(token);
                }
            }
            "forward-first"
            | "forward-tls-upstream"
            | "forward-ssl-upstream"
            | "forward-tcp-upstream"
            | "stub-first"
            | "stub-tls-upstream"
            | "stub-ssl-upstream"
            | "stub-tcp-upstream" => {
                let value = yes_no(statement)?;
                if let Some(zone) = self.forward_zones.last_mut() {
                    match keyword.split_once('-').map_or(keyword, |(_, option)| option) {
                        "first" => zone.first = value,
                        "tcp-upstream" => zone.tcp = value,
                        _ => zone.tls = value,
                    }
                }
            }
            "stub-prime" => {
                if yes_no(statement)? {
                    self.warnings.push(Warning::Approximated {
                        at: statement.at.clone(),
                        keyword: statement.written(),
                        how: "the NS set is not primed: the listed stub-addr and stub-host servers are asked directly",
                    });
                }
            }
            "forward-no-cache" | "stub-no-cache" => {
                let value = yes_no(statement)?;
                if let Some(zone) = self.forward_zones.last_mut() {
                    zone.no_cache = value;
                }
            }
            _ => self.unsupported(statement, format!("forward-zone: {}", statement.written()), "skipped"),
        }
        Ok(())
    }

    /// One option of an `auth-zone:` clause.
    fn auth_option(&mut self, statement: &Statement) -> Result<(), ConfigError> {
        let keyword = statement.keyword.as_str();
        let path = match keyword {
            "zonefile" => self.path(statement)?,
            _ => None,
        };
        let Some(zone) = self.auth_zones.last_mut() else { return Ok(()) };
        match keyword {
            "name" => zone.name = name(one(statement)?)?.to_string(),
            "primary" | "master" => zone.primaries.push(one(statement)?.text.clone()),
            "zonefile" => zone.zonefile = path,
            "allow-notify" => zone.allow_notify.push(one(statement)?.text.clone()),
            "for-downstream" => zone.for_downstream = yes_no(statement)?,
            "for-upstream" => zone.for_upstream = yes_no(statement)?,
            "fallback-enabled" => zone.fallback_enabled = yes_no(statement)?,
            _ => self.unsupported(statement, format!("auth-zone: {}", statement.written()), "skipped"),
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
        config.auth_zones = std::mem::take(&mut self.auth_zones);
        self.listeners(&mut config);
        config.remote_control = self.remote_control();
        config.dnstap = self.dnstap()?;
        if !self.unsupported.is_empty() && !ignore_unsupported {
            return Err(ConfigError::Unsupported { items: self.unsupported });
        }
        let mut warnings: Vec<Warning> =
            std::mem::take(&mut self.unsupported).into_iter().map(Warning::SkippedUnsupported).collect();
        warnings.append(&mut self.warnings);

        // Cache, EDNS, limits.
        set_if_given(&mut config.cache.max_ttl, self.cache_max_ttl);
        set_if_given(&mut config.cache.min_ttl, self.cache_min_ttl);
        set_if_given(&mut config.cache.negative_max_ttl, self.cache_max_negative_ttl);
        set_if_given(&mut config.cache.max_bytes, self.msg_cache_size);
        if self.serve_expired {
            config.cache.serve_stale_secs = u64::from(self.serve_expired_ttl.filter(|&ttl| ttl > 0).unwrap_or(86_400));
            set_if_given(&mut config.cache.stale_ttl_secs, self.serve_expired_reply_ttl);
        }
        set_if_given(&mut config.edns.udp_payload_size, self.edns_buffer_size);
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
            let mut servers = self.servers(environment, zone)?;
            if self.do_not_query_localhost {
                let before = servers.len();
                servers.retain(|(server, at)| {
                    let loopback = server.address.ip().is_loopback();
                    if loopback {
                        warnings.push(Warning::LoopbackSkipped { at: at.clone(), server: server.address });
                    }
                    !loopback
                });
                if servers.is_empty() && before > 0 {
                    // Unbound starts and answers SERVFAIL for the zone's names.
                    forwards.push((zone_name.clone(), local::NO_USABLE_SERVER.to_owned(), false));
                    continue;
                }
            }
            if servers.is_empty() {
                return Err(ConfigError::NoServers { at: zone.at.clone(), zone: zone_name.to_string() });
            }
            let servers = servers.into_iter().map(|(server, _)| server).collect();
            let group_name = zone_name.to_relative_string();
            let mut group = unbound_group(&group_name, servers, zone.stub);
            group.cache = !zone.no_cache;
            set_if_given(&mut group.min_try_timeout, self.infra_cache_min_rtt);
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
            .find(|(zone, group, _)| zone.is_root() && group != local::NO_USABLE_SERVER)
            .map_or_else(|| SYSTEM_GROUP.to_owned(), |(_, group, _)| group.clone());
        if forwards.iter().any(|(zone, group, _)| zone.is_root() && group != local::NO_USABLE_SERVER) {
            config.default_group = Some(default_group.clone());
        }

        // Local zones: the user's, the defaults they do not replace, and
        // transparent zones for data outside every zone; then views.
        let defaults = (!self.disable_default_zones).then_some(self.unblock_lan_zones);
        let global = local::global_zones(
            std::mem::take(&mut self.zones),
            std::mem::take(&mut self.data),
            defaults,
            &self.nodefault,
            &self.file,
        );
        let forward_locations: BTreeMap<NameBuf, Location> = self
            .forward_zones
            .iter()
            .filter_map(|zone| zone.name.as_ref().map(|(name, _)| (name.clone(), zone.at.clone())))
            .rev()
            .collect();
        let forwards = Forwards { zones: &forwards, default_group: &default_group };
        let mut generated =
            local::rules_for(&global, &forwards, &forward_locations, &local::Scope { view: None, non_local: None });
        for view in &self.views {
            if view.name.is_empty() {
                return Err(ConfigError::Malformed {
                    at: view.at.clone(),
                    keyword: "view:".into(),
                    problem: "has no name:",
                });
            }
        }
        let mut view_entries = Vec::new();
        for (network, view, at) in &self.access_views {
            if !self.views.iter().any(|known| known.name == *view) {
                return Err(ConfigError::InvalidValue {
                    at: at.clone(),
                    what: "access-control-view",
                    text: view.clone(),
                    expected: "the name of a view: clause",
                });
            }
            view_entries.push((*network, view.clone()));
        }
        let mut access = default_access();
        access.extend(self.access.iter().copied());
        let classes = local::client_classes(&access, &view_entries);
        let (views, by_class) =
            local::classes_config(&classes, &self.views, &global, &forwards, &forward_locations, &self.file);
        generated.append(by_class);
        for (index, (view, at)) in views.into_iter().enumerate() {
            config.record_origin(format!("views[{index}]"), at);
            config.views.push(view);
        }
        warnings.append(&mut generated.warnings);
        let local::Generated { rules, zones: zone_configs, .. } = generated;

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
        // deny and the non_local actions are answered (or dropped) by the rules.
        let access: Vec<(IpNet, AclAction)> = default_access()
            .iter()
            .chain(&self.access)
            .map(|(network, action)| {
                (*network, if *action == Access::Refuse { AclAction::Refuse } else { AclAction::Allow })
            })
            .collect();
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
            let address = address.parse().ok().filter(|_| port.is_some());
            let skipped = "skipped (give IP addresses, not interface names)";
            let (Some(address), Some(port)) = (self.usable(&interface, "interface", address, skipped), port) else {
                continue;
            };
            let socket = SocketAddr::new(address, port);
            let receive_buffer = self.so_rcvbuf;
            let mut add = |mut listener: ListenerConfig| {
                listener.workers = self.num_threads;
                if listener.transport == Transport::Udp {
                    listener.receive_buffer = receive_buffer;
                }
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

    /// A forward zone's servers, each with the line that named it: its
    /// addresses and its resolved hosts.
    fn servers(
        &self,
        environment: &dyn UnboundEnvironment,
        zone: &ForwardZone,
    ) -> Result<Vec<(UpstreamServer, Location)>, ConfigError> {
        let protocol = if zone.tls || self.tls_upstream {
            Protocol::Tls
        } else if zone.tcp || self.tcp_upstream {
            Protocol::Tcp
        } else {
            Protocol::Udp
        };
        let mut servers = Vec::new();
        for token in &zone.addresses {
            let mut server = parse_server(&token.text, protocol)
                .filter(|_| !token.text.contains("://"))
                .ok_or_else(|| invalid(token, "forward-addr", "IP[@port][#tls-name]"))?;
            if protocol == Protocol::Tls && !token.text.contains('@') {
                server.address.set_port(self.tls_port);
            }
            if protocol != Protocol::Tls {
                server.tls_name = None;
            }
            servers.push((server, token.at.clone()));
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
                return Err(invalid(token, "forward-host", "name[@port][#tls-name]"));
            };
            for address in self.resolve(environment, host, port, &token.at)? {
                let mut server = UpstreamServer::new(address, protocol);
                if protocol == Protocol::Tls {
                    server.tls_name = Some(tls_name.clone().unwrap_or_else(|| host.trim_end_matches('.').to_owned()));
                }
                servers.push((server, token.at.clone()));
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

/// An upstream group as Unbound treats a forward zone's servers (a stub
/// zone's are asked without RD).
pub(crate) fn unbound_group(name: &str, servers: Vec<UpstreamServer>, stub: bool) -> GroupConfig {
    let mut group = GroupConfig::new(name, servers);
    // Unbound picks among fast servers and moves on after SERVFAIL or REFUSED.
    group.policy = Policy::Fastest;
    group.retry_on = RetryOn { servfail: true, refused: true, ..RetryOn::NETWORK };
    group.recursion_desired = !stub;
    group
}

/// Unbound's default access control: localhost allowed, everything else refused.
fn default_access() -> Vec<(IpNet, Access)> {
    ["0.0.0.0/0", "::/0"]
        .iter()
        .filter_map(|net| net.parse().ok())
        .map(|net| (net, Access::Refuse))
        .chain(
            ["127.0.0.0/8", "::1/128", "::ffff:127.0.0.1/128"]
                .iter()
                .filter_map(|net| net.parse().ok())
                .map(|net| (net, Access::Allow)),
        )
        .collect()
}

/// What a `local-zone:` line declares.
enum ParsedZone {
    /// A zone, and the line as written (for warnings).
    Zone(LocalZone, String),
    /// `nodefault`: only turns off a default zone.
    NoDefault(NameBuf),
}

/// Add a zone to a list (the first definition of a name counts, as in Unbound).
fn add_zone(zones: &mut Vec<LocalZone>, nodefault: &mut Vec<NameBuf>, warnings: &mut Vec<Warning>, zone: ParsedZone) {
    match zone {
        ParsedZone::NoDefault(name) => nodefault.push(name),
        ParsedZone::Zone(zone, written) => {
            if zones.iter().any(|existing| existing.name == zone.name) {
                warnings.push(Warning::DuplicateIgnored { at: zone.at, what: written });
            } else {
                zones.push(zone);
            }
        }
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
