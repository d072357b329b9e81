//! What can be wrong with a forwarder configuration, and where.

use core::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use signpost_rules::Location;

/// An error in a forwarder configuration (TOML or unbound.conf): each
/// variant says what and where (file, line and field or keyword).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value that does not parse.
    #[error("{at}: invalid {what} {text:?}: expected {expected}")]
    InvalidValue {
        /// Where it is.
        at: Location,
        /// What kind of value it is (`IP address`, `port`, ...).
        what: &'static str,
        /// The text given.
        text: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// A keyword given the wrong number of values, or a clause missing a required one.
    #[error("{at}: {keyword} {problem}")]
    Malformed {
        /// Where it is.
        at: Location,
        /// The keyword or clause.
        keyword: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Quoted text that is not closed before the end of the file.
    #[error("{at}: unterminated quoted string")]
    UnterminatedQuote {
        /// Where the quote opened.
        at: Location,
    },
    /// `include:` nested deeper than the limit (which also stops include loops).
    #[error("{at}: include nested more than {limit} deep")]
    IncludeTooDeep {
        /// The include that went too deep.
        at: Location,
        /// The limit.
        limit: usize,
    },
    /// Options the forwarder does not implement; start-up fails unless they are ignored.
    #[error("{}", UnsupportedList(.items))]
    Unsupported {
        /// Each one, with where it is.
        items: Vec<Unsupported>,
    },
    /// Both `default_group` and a forward zone for `.` say where unmatched names go.
    #[error("{at}: give default_group or a forward zone for \".\", not both")]
    ConflictingDefault {
        /// Where the second of them is.
        at: Location,
    },
    /// A forward zone with no server.
    #[error("{at}: forward zone {zone:?} has no servers")]
    NoServers {
        /// The zone's definition.
        at: Location,
        /// The zone.
        zone: String,
    },
    /// A `forward-host:` name that could not be resolved.
    #[error("{at}: cannot resolve forward-host {host:?}: {reason}")]
    UnresolvedHost {
        /// Where it is.
        at: Location,
        /// The host name.
        host: String,
        /// The resolver's error.
        reason: Arc<std::io::Error>,
    },
    /// What the shared configuration error says, with its location: an
    /// unreadable file, TOML syntax, a bad name or record, something defined
    /// twice, an unknown group, or rules, zones and host tables the rule
    /// engine rejects (an error in something the configuration generated is
    /// [relocated](signpost_rules::Error::relocated) to where it says it).
    #[error(transparent)]
    Config(#[from] signpost_rules::Error),
    /// A trust anchor (file or record) could not be read.
    #[error(transparent)]
    TrustAnchor(#[from] signpost_dnssec::LocatedError<Location>),
    /// A Kubernetes manifest (Istio mode) that does not read.
    #[error("{at}: {source}")]
    Manifest {
        /// The file, and the line or the document and field.
        at: Location,
        /// What the YAML or JSON reader said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Starting or running the server failed.
    #[error("{what}: {source}")]
    Runtime {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The upstream crate rejected a group.
    #[error("{at}: {source}")]
    Upstream {
        /// Where the group is defined.
        at: Location,
        /// Why.
        #[source]
        source: signpost_upstream::Error,
    },
}

impl ConfigError {
    /// Where the error is, when one place is known.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Self::InvalidValue { at, .. }
            | Self::Malformed { at, .. }
            | Self::UnterminatedQuote { at }
            | Self::IncludeTooDeep { at, .. }
            | Self::ConflictingDefault { at }
            | Self::NoServers { at, .. }
            | Self::UnresolvedHost { at, .. }
            | Self::Manifest { at, .. }
            | Self::Upstream { at, .. } => Some(at),
            Self::TrustAnchor(error) => Some(&error.at),
            Self::Runtime { .. } => None,
            Self::Config(error) => Some(error.location()),
            Self::Unsupported { items } => items.first().map(|item| &item.at),
        }
    }
}

/// One unbound.conf option or clause the forwarder does not implement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// Where it is.
    pub at: Location,
    /// The keyword or clause as written (`stub-zone:`, `local-zone: ... typetransparent`).
    pub keyword: String,
    /// What happens to it with `--ignore-unsupported`.
    pub when_ignored: &'static str,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} is not supported (with --ignore-unsupported: {})", self.at, self.keyword, self.when_ignored)
    }
}

struct UnsupportedList<'a>(&'a [Unsupported]);

impl fmt::Display for UnsupportedList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} unsupported option(s); start with --ignore-unsupported to run without them:", self.0.len())?;
        for item in self.0 {
            write!(f, "\n  {item}")?;
        }
        Ok(())
    }
}

/// Something start-up should mention but that does not stop it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// An unbound.conf option that has no effect here (daemon, logging and tuning knobs).
    Ignored {
        /// Where it is.
        at: Location,
        /// The keyword.
        keyword: String,
    },
    /// An unbound.conf option that is honoured only approximately.
    Approximated {
        /// Where it is.
        at: Location,
        /// The keyword and value.
        keyword: String,
        /// What the forwarder does instead.
        how: &'static str,
    },
    /// An unsupported option skipped because of `--ignore-unsupported`.
    SkippedUnsupported(Unsupported),
    /// A resolv.conf line that was ignored.
    ResolvConf {
        /// The file.
        path: PathBuf,
        /// What resolv.conf reading said.
        message: String,
    },
    /// There is no default group: names no rule matches are REFUSED.
    NoDefaultGroup {
        /// Why.
        reason: String,
    },
    /// A forward zone inside a local zone that answers its names itself (as
    /// Unbound does: local zones come before forwarding).
    Shadowed {
        /// The forward zone's definition.
        at: Location,
        /// The forward zone.
        zone: String,
        /// The local zone that answers instead.
        by: String,
    },
    /// A forward or stub target on loopback left out because of
    /// `do-not-query-localhost: yes`, Unbound's default.
    LoopbackSkipped {
        /// The line naming it.
        at: Location,
        /// The server.
        server: std::net::SocketAddr,
    },
    /// Something defined twice where the first definition wins (as Unbound does).
    DuplicateIgnored {
        /// The second definition.
        at: Location,
        /// What it is.
        what: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ignored { at, keyword } => write!(f, "{at}: {keyword} has no effect in signpost-forward"),
            Self::Approximated { at, keyword, how } => write!(f, "{at}: {keyword}: {how}"),
            Self::SkippedUnsupported(item) => write!(f, "{item}"),
            Self::ResolvConf { path, message } => write!(f, "{}: {message}", path.display()),
            Self::NoDefaultGroup { reason } => {
                write!(f, "no default upstream group ({reason}); names no rule matches are REFUSED")
            }
            Self::Shadowed { at, zone, by } => write!(
                f,
                "{at}: forward-zone {zone} lies inside local-zone {by}, which answers its names (local zones come first, \
                 as in Unbound)"
            ),
            Self::DuplicateIgnored { at, what } => write!(f, "{at}: duplicate {what} ignored (the first one counts)"),
            Self::LoopbackSkipped { at, server } => write!(
                f,
                "{at}: {server} is on loopback and do-not-query-localhost is yes (Unbound's default), so it is not \
                 asked; add `do-not-query-localhost: no` to the server: clause to use it"
            ),
        }
    }
}
