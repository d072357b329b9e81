//! The redirect proxy (signpost-redirect) as a library: LocalStack's DNS
//! settings turned into a [`RuleSet`](signpost_rules::RuleSet) and an
//! upstream group, the default upstreams taken from resolv.conf (the first
//! that answers `DNS_VERIFICATION_DOMAIN` first), changes at run time
//! (records of every type, wildcards, aliases with health checks, skip
//! patterns) from Rust or over the admin listener's JSON API, and hosted
//! zones of a Route 53 API served to every client.
//!
//! Redirected names are answered by redirect rules of signpost-rules, so the
//! server writes them on its allocation-free fast path; nothing here runs per
//! query.
//!
//! ```no_run
//! use signpost_redirect::{RedirectServer, RedirectSettings, RecordSpec};
//! use signpost_wire::RecordType;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut settings = RedirectSettings::default();
//! settings.set("DNS_ADDRESS", "127.0.0.1")?;
//! settings.set("DNS_PORT", "0")?; // a free port, as a test harness wants
//! settings.set("DNS_SERVER", "127.0.0.1:5300")?; // a local upstream
//! let server = RedirectServer::builder(settings).start().await?;
//! for line in server.startup_lines() {
//!     println!("{line}"); // Starting DNS servers (tcp/udp port 40123 on 127.0.0.1)...
//! }
//! // db.test now answers 10.0.0.5; s3.amazonaws.com answers 127.0.0.1.
//! server.add_host("db.test", &["10.0.0.5".parse()?])?;
//! server.add_record(&RecordSpec::new("*.apps.test", RecordType::TXT, "\"hello\""))?;
//! server.shutdown().await;
//! # Ok(()) }
//! ```

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod admin;
mod health;
mod route53;
mod route53_api;
mod runtime;
mod server;
mod settings;
mod upstreams;

pub use health::{DEFAULT_INTERVAL as DEFAULT_HEALTH_CHECK_INTERVAL, HealthCheck, HealthCheckSpec};
pub use route53::{AliasTarget, HostedZone, HostedZoneWarning, ResourceRecordSet, route53_name, route53_spelling};
pub use route53_api::{HostedZonesRuntime, Route53Api, hosted_zones};
pub use runtime::{
    AliasRecord, AliasSpec, HostRecord, HostedZoneSummary, RecordEntry, RecordFilter, RecordSpec, RedirectSnapshot,
    Redirector,
};
pub use server::{BindFallback, HostedZoneFeed, RedirectReloader, RedirectServer, RedirectServerBuilder};
pub use settings::{
    BindAddresses, LocalstackHost, RedirectSettings, UnknownVariable, VARIABLES, dns_variables, parse_ipv4_source,
    parse_ipv6_source, parse_servers, split_patterns, unknown_dns_variables,
};
/// The signals [`RedirectServer::run_until`] answers (one implementation for every binary).
pub use signpost_server::signals::Signals;
pub use upstreams::{
    ProbeOutcome, SkippedNameserver, UpstreamChoice, UpstreamSource, Verification, ask_address, keep_verified_first,
    loop_free_nameservers, system_upstreams, verify_upstreams,
};

/// The domains redirected by default (LocalStack's transparent endpoint injection).
pub const DEFAULT_DOMAINS: [&str; 4] = ["amazonaws.com", "aws.amazon.com", "cloudfront.net", LOCALSTACK_DOMAIN];

/// The emulator's own name: it and its subdomains always resolve.
pub const LOCALSTACK_DOMAIN: &str = "localhost.localstack.cloud";

/// LocalStack's host prefixes that are not subdomains (dns/server.py
/// `HOST_PREFIXES_NO_SUBDOMAIN`): `data-localhost.localstack.cloud` and the
/// like are redirected with `localhost.localstack.cloud`.
pub const HOST_PREFIXES_NO_SUBDOMAIN: [&str; 10] = [
    "analytics-",
    "control-storage-",
    "data-",
    "query-",
    "runtime-",
    "storage-",
    "streaming-",
    "sync-",
    "tags-",
    "workflows-",
];

/// `DNS_VERIFICATION_DOMAIN`'s default, as LocalStack's (config.py).
pub const DEFAULT_VERIFICATION_DOMAIN: &str = "localstack.cloud";

/// The TTL of redirected answers and run-time records unless set: 300, as
/// LocalStack's records (dns/server.py `Record.sensible_ttl`).
pub const DEFAULT_TTL: u32 = 300;

/// The upstream group names outside the redirected domains go to.
pub const UPSTREAM_GROUP: &str = "upstream";

/// Where the default upstreams come from.
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";

/// systemd-resolved's list of its real upstreams, read when resolv.conf
/// names only its stub (127.0.0.53).
pub const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// The prefix of the admin routes ([`Redirector`]'s admin extension).
pub const ADMIN_PREFIX: &str = "/redirect";

/// What went wrong configuring or changing the redirect proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedirectError {
    /// A setting has a value that cannot be used.
    #[error("{setting}={value:?}: {problem}")]
    InvalidSetting {
        /// The setting (its environment variable name).
        setting: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A regular expression does not compile.
    #[error("{setting}: invalid regular expression {pattern:?}: {message}")]
    InvalidPattern {
        /// The setting it came from (or the admin route).
        setting: &'static str,
        /// The pattern.
        pattern: String,
        /// The regex compiler's message.
        message: String,
    },
    /// A domain name does not parse.
    #[error("{what} {name:?} is not a valid domain name: {source}")]
    InvalidName {
        /// What the name was for.
        what: &'static str,
        /// The text given.
        name: String,
        /// Why.
        source: signpost_wire::Error,
    },
    /// Nothing of that kind and name exists.
    #[error("no {kind} {name}")]
    NotFound {
        /// "host record", "alias" or "skip pattern".
        kind: &'static str,
        /// The name or pattern.
        name: String,
    },
    /// The name is already used by something else.
    #[error("{name} is already {what}")]
    Conflict {
        /// The name or pattern.
        name: String,
        /// What it already is.
        what: &'static str,
    },
    /// A record given at run time does not read.
    #[error("record {name:?} value {value:?}: {source}")]
    InvalidRecord {
        /// The owner name given.
        name: String,
        /// The value given.
        value: String,
        /// Why.
        source: signpost_wire::Error,
    },
    /// `DNS_ADDRESS=0`: there is nothing to start.
    #[error("DNS is disabled (DNS_ADDRESS=0)")]
    Disabled,
    /// The Route 53 API (`SIGNPOST_REDIRECT_API`) could not start.
    #[error("SIGNPOST_REDIRECT_API: cannot {what}: {source}")]
    Route53Api {
        /// What could not be done.
        what: &'static str,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The Route 53 API's address cannot be bound.
    #[error("SIGNPOST_REDIRECT_API={address}: cannot listen there: {source}")]
    ApiBind {
        /// The address asked for.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The signal handlers cannot be installed.
    #[error("cannot catch signals: {0}")]
    Signals(#[source] std::io::Error),
    /// The rule set could not be built.
    #[error(transparent)]
    Rules(Box<signpost_rules::Error>),
    /// The upstream group could not be built.
    #[error(transparent)]
    Upstream(Box<signpost_upstream::Error>),
    /// The server could not start.
    #[error(transparent)]
    Server(Box<signpost_server::Error>),
}

impl From<signpost_rules::Error> for RedirectError {
    fn from(error: signpost_rules::Error) -> Self {
        Self::Rules(Box::new(error))
    }
}

impl From<signpost_upstream::Error> for RedirectError {
    fn from(error: signpost_upstream::Error) -> Self {
        Self::Upstream(Box::new(error))
    }
}

impl From<signpost_server::Error> for RedirectError {
    fn from(error: signpost_server::Error) -> Self {
        Self::Server(Box::new(error))
    }
}

impl RedirectError {
    /// The server's bind error, if that is what this is.
    pub fn as_bind_error(&self) -> Option<&signpost_server::Error> {
        match self {
            Self::Server(error) if matches!(**error, signpost_server::Error::Bind { .. }) => Some(error),
            _ => None,
        }
    }

    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::NotFound { .. } => 404,
            Self::Conflict { .. } => 409,
            _ => 400,
        }
    }
}
