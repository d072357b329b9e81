//! Errors: [`Error`] for configuration, [`UpstreamError`] for queries that got no answer.

use core::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use signpost_wire::Rcode;

use crate::config::Protocol;

/// A configuration that cannot be used, or a file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A group lists no servers.
    #[error("upstream group {group:?} has no servers")]
    NoServers {
        /// The group.
        group: String,
    },
    /// Two groups have the same name.
    #[error("upstream group {group:?} is defined twice")]
    DuplicateGroup {
        /// The group.
        group: String,
    },
    /// A setting that must be positive is zero.
    #[error("upstream group {group:?}: {field} must be more than zero")]
    ZeroSetting {
        /// The group.
        group: String,
        /// The setting.
        field: &'static str,
    },
    /// The EDNS payload size is below the 512 octets every resolver accepts.
    #[error("upstream group {group:?}: edns_payload {size} is below 512")]
    EdnsPayloadTooSmall {
        /// The group.
        group: String,
        /// The size given.
        size: u16,
    },
    /// A server's port is 0.
    #[error("upstream group {group:?}: server {server} has port 0")]
    ZeroPort {
        /// The group.
        group: String,
        /// The server.
        server: SocketAddr,
    },
    /// `tls_name` is not a DNS name or IP address.
    #[error("upstream group {group:?}: server {server}: {name:?} is not a valid TLS server name")]
    InvalidTlsName {
        /// The group.
        group: String,
        /// The server.
        server: SocketAddr,
        /// The name given.
        name: String,
    },
    /// A DoH path that does not start with `/` or has characters a URI cannot hold.
    #[error("upstream group {group:?}: server {server}: DoH path {path:?} must start with '/' and be a valid URI path")]
    InvalidDohPath {
        /// The group.
        group: String,
        /// The server.
        server: SocketAddr,
        /// The path given.
        path: String,
    },
    /// The extra CA file could not be read.
    #[error("reading CA file {}: {source}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The extra CA file holds no certificate, or one rustls rejects.
    #[error("CA file {}: {reason}", path.display())]
    BadCaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A TLS group would trust no certificate authority at all.
    #[error("upstream group {group:?} has TLS servers but no trusted roots (no system roots and no ca_file)")]
    NoTrustedRoots {
        /// The group.
        group: String,
    },
    /// rustls refused the TLS settings.
    #[error("upstream group {group:?}: TLS settings: {source}")]
    Tls {
        /// The group.
        group: String,
        /// What rustls said.
        source: rustls::Error,
    },
    /// A resolv.conf file could not be read.
    #[error("reading {}: {source}", path.display())]
    ResolvConf {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A zone transfer or its SOA query failed on the network.
    #[error("zone transfer of {zone} from {server}: {source}")]
    TransferIo {
        /// The primary.
        server: SocketAddr,
        /// The zone.
        zone: String,
        /// Why.
        source: io::Error,
    },
    /// The primary did not connect or send the next message in time.
    #[error("zone transfer of {zone} from {server}: nothing within {timeout:?}")]
    TransferTimeout {
        /// The primary.
        server: SocketAddr,
        /// The zone.
        zone: String,
        /// The limit.
        timeout: Duration,
    },
    /// The primary's answer broke the protocol, was refused, or failed TSIG.
    #[error("zone transfer of {zone} from {server}: {source}")]
    TransferProtocol {
        /// The primary.
        server: SocketAddr,
        /// The zone.
        zone: String,
        /// What was wrong.
        source: signpost_wire::Error,
    },
}

/// What became of one try of one server.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// A valid answer with this rcode, accepted.
    Answered(Rcode),
    /// A valid answer whose rcode the group's `retry_on` lists, so the next server was tried.
    Rejected(Rcode),
    /// A valid answer with TC set; over UDP it is asked again over TCP.
    Truncated,
    /// No answer within the per-try timeout (or the query's total deadline).
    Timeout,
    /// The server could not be reached: ICMP unreachable, connection refused,
    /// reset or closed, TLS handshake failure.
    Unreachable(String),
    /// The server answered with something unusable: a malformed message, an HTTP error status.
    Failed(String),
    /// Given up because another send of the same query was answered first
    /// (hedging, or a retransmission answered before this one).
    Cancelled,
    /// Not sent: every message ID this server's UDP sockets may use was
    /// taken by queries in flight.
    Overloaded,
}

impl AttemptOutcome {
    /// Whether the try failed: timed out, unreachable, unusable, or not sent
    /// for overload (only the first three count towards marking a server down).
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Timeout | Self::Unreachable(_) | Self::Failed(_) | Self::Overloaded)
    }

    /// A short word for logs and metrics: answered, rejected, truncated,
    /// timeout, unreachable, failed, cancelled, overloaded.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Answered(_) => "answered",
            Self::Rejected(_) => "rejected",
            Self::Truncated => "truncated",
            Self::Timeout => "timeout",
            Self::Unreachable(_) => "unreachable",
            Self::Failed(_) => "failed",
            Self::Cancelled => "cancelled",
            Self::Overloaded => "overloaded",
        }
    }
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Answered(rcode) => write!(f, "answered {rcode}"),
            Self::Rejected(rcode) => write!(f, "answered {rcode}, which retry_on rejects"),
            Self::Truncated => f.write_str("answered truncated"),
            Self::Timeout => f.write_str("timed out"),
            Self::Unreachable(reason) => write!(f, "unreachable: {reason}"),
            Self::Failed(reason) => write!(f, "failed: {reason}"),
            Self::Cancelled => f.write_str("abandoned: another send was answered first"),
            Self::Overloaded => f.write_str("not sent: every message ID in use"),
        }
    }
}

/// Why a transport exchange failed (timeouts are the caller's business).
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum Failure {
    /// Could not reach the server, or the connection broke.
    Unreachable(String),
    /// The server answered with something unusable.
    Failed(String),
    /// Nothing was sent: no free message ID on the server's sockets.
    Overloaded,
}

impl Failure {
    pub(crate) fn unreachable(error: &io::Error) -> Self {
        let reason = match error.kind() {
            io::ErrorKind::ConnectionRefused => "connection refused (ICMP port unreachable or TCP RST)".to_string(),
            io::ErrorKind::ConnectionReset => "connection reset by the server".to_string(),
            io::ErrorKind::UnexpectedEof => "connection closed by the server".to_string(),
            _ => error.to_string(),
        };
        Self::Unreachable(reason)
    }

    pub(crate) fn into_outcome(self) -> AttemptOutcome {
        match self {
            Self::Unreachable(reason) => AttemptOutcome::Unreachable(reason),
            Self::Failed(reason) => AttemptOutcome::Failed(reason),
            Self::Overloaded => AttemptOutcome::Overloaded,
        }
    }
}

/// One try of one server.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Attempt {
    /// The server asked.
    pub server: SocketAddr,
    /// The transport used.
    pub protocol: Protocol,
    /// When the try started.
    pub started: SystemTime,
    /// The message ID the try was sent with, when known: always over UDP,
    /// over TCP and TLS once answered, 0 over HTTPS (RFC 8484 §4.1).
    pub id: Option<u16>,
    /// How long it took.
    pub duration: Duration,
    /// What became of it.
    pub outcome: AttemptOutcome,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{} {} after {:.3}s", self.protocol, self.server, self.outcome, self.duration.as_secs_f64())
    }
}

/// Why a query got no answer: a queried group failed, with every try.
///
/// Opaque, like hyper's error: ask it with the predicates and read the tries
/// with [`UpstreamError::attempts`]. Its `Display` lists each try and why it failed.
pub struct UpstreamError {
    inner: Box<Inner>,
}

struct Inner {
    kind: Kind,
    group: String,
    attempts: Vec<Attempt>,
}

enum Kind {
    InvalidQuery(signpost_wire::Error),
    Exhausted,
    Deadline(Duration),
    Overloaded { in_flight: usize, waited: Duration },
}

impl UpstreamError {
    pub(crate) fn invalid_query(group: &str, error: signpost_wire::Error) -> Self {
        Self {
            inner: Box::new(Inner { kind: Kind::InvalidQuery(error), group: group.to_string(), attempts: Vec::new() }),
        }
    }

    pub(crate) fn exhausted(group: &str, attempts: Vec<Attempt>) -> Self {
        Self { inner: Box::new(Inner { kind: Kind::Exhausted, group: group.to_string(), attempts }) }
    }

    pub(crate) fn deadline(group: &str, total: Duration, attempts: Vec<Attempt>) -> Self {
        Self { inner: Box::new(Inner { kind: Kind::Deadline(total), group: group.to_string(), attempts }) }
    }

    pub(crate) fn overloaded(group: &str, in_flight: usize, waited: Duration) -> Self {
        Self {
            inner: Box::new(Inner {
                kind: Kind::Overloaded { in_flight, waited },
                group: group.to_string(),
                attempts: Vec::new(),
            }),
        }
    }

    /// Whether the query ran out of time: the total deadline passed, or every try timed out.
    pub fn is_timeout(&self) -> bool {
        match self.inner.kind {
            Kind::Deadline(_) => true,
            Kind::InvalidQuery(_) | Kind::Overloaded { .. } => false,
            Kind::Exhausted => self.every_failure(|outcome| *outcome == AttemptOutcome::Timeout),
        }
    }

    /// Whether the query failed for lack of capacity rather than because
    /// a server failed: the group already had `max_outstanding` queries in
    /// flight and no slot freed within `queue_timeout` (nothing was sent),
    /// or every server it tried had no free message ID. A server answers
    /// these deliberately (SERVFAIL with an extended error, or a drop)
    /// instead of letting them time out.
    pub fn is_overloaded(&self) -> bool {
        match self.inner.kind {
            Kind::Overloaded { .. } => true,
            Kind::Exhausted => self.every_failure(|outcome| *outcome == AttemptOutcome::Overloaded),
            Kind::InvalidQuery(_) | Kind::Deadline(_) => false,
        }
    }

    /// Whether no server could be reached: every failed try was refused,
    /// reset or unreachable rather than slow.
    pub fn is_unreachable(&self) -> bool {
        matches!(self.inner.kind, Kind::Exhausted)
            && self.every_failure(|outcome| matches!(outcome, AttemptOutcome::Unreachable(_)))
    }

    /// Whether the query itself could not be read (no header or question); nothing was sent.
    pub fn is_invalid_query(&self) -> bool {
        matches!(self.inner.kind, Kind::InvalidQuery(_))
    }

    /// Every try, in the order they started.
    pub fn attempts(&self) -> &[Attempt] {
        &self.inner.attempts
    }

    /// The group asked.
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// Whether there was at least one failed try and every one satisfies `test`.
    fn every_failure(&self, test: impl Fn(&AttemptOutcome) -> bool) -> bool {
        let mut failures = self.inner.attempts.iter().map(|attempt| &attempt.outcome).filter(|o| o.is_failure());
        let mut any = false;
        let all = failures.all(|outcome| {
            any = true;
            test(outcome)
        });
        any && all
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = &self.inner.group;
        match &self.inner.kind {
            Kind::InvalidQuery(error) => return write!(f, "query for upstream group {group:?} is invalid: {error}"),
            Kind::Exhausted => write!(f, "upstream group {group:?} has no answer")?,
            Kind::Overloaded { in_flight, waited } => {
                return write!(
                    f,
                    "upstream group {group:?} is overloaded: {in_flight} queries in flight, no slot freed within {:.3}s",
                    waited.as_secs_f64()
                );
            }
            Kind::Deadline(total) => {
                write!(f, "upstream group {group:?} gave no answer within {:.3}s", total.as_secs_f64())?;
            }
        }
        if self.inner.attempts.is_empty() {
            return f.write_str(": no server was tried");
        }
        f.write_str(": ")?;
        for (index, attempt) in self.inner.attempts.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}) {attempt}", index + 1)?;
        }
        Ok(())
    }
}

impl fmt::Debug for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamError")
            .field("group", &self.inner.group)
            .field("message", &self.to_string())
            .field("attempts", &self.inner.attempts)
            .finish()
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.inner.kind {
            Kind::InvalidQuery(error) => Some(error),
            Kind::Exhausted | Kind::Deadline(_) | Kind::Overloaded { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(port: u16, outcome: AttemptOutcome) -> Attempt {
        Attempt {
            server: SocketAddr::from(([127, 0, 0, 1], port)),
            protocol: Protocol::Udp,
            started: SystemTime::UNIX_EPOCH,
            id: None,
            duration: Duration::from_millis(1500),
            outcome,
        }
    }

    #[test]
    fn display_lists_every_try() {
        let error = UpstreamError::exhausted(
            "corp",
            vec![
                attempt(5301, AttemptOutcome::Timeout),
                attempt(5302, AttemptOutcome::Unreachable("connection refused".into())),
            ],
        );
        assert_eq!(
            error.to_string(),
            "upstream group \"corp\" has no answer: 1) udp://127.0.0.1:5301 timed out after 1.500s; \
             2) udp://127.0.0.1:5302 unreachable: connection refused after 1.500s"
        );
        assert!(!error.is_timeout());
        assert!(!error.is_unreachable());
        assert_eq!(error.attempts().len(), 2);
    }

    #[test]
    fn predicates_follow_the_failures() {
        let timeouts = UpstreamError::exhausted("g", vec![attempt(1, AttemptOutcome::Timeout)]);
        assert!(timeouts.is_timeout() && !timeouts.is_unreachable());
        let refused = UpstreamError::exhausted("g", vec![attempt(1, AttemptOutcome::Unreachable("reset".into()))]);
        assert!(refused.is_unreachable() && !refused.is_timeout());
        let deadline = UpstreamError::deadline("g", Duration::from_secs(4), Vec::new());
        assert!(deadline.is_timeout());
        assert!(deadline.to_string().ends_with("no server was tried"));
        let invalid = UpstreamError::invalid_query("g", signpost_wire::Error::ShortHeader { len: 3 });
        assert!(invalid.is_invalid_query() && !invalid.is_timeout() && !invalid.is_unreachable());
        let none = UpstreamError::exhausted("g", Vec::new());
        assert!(!none.is_timeout() && !none.is_unreachable() && !none.is_overloaded());
    }

    #[test]
    fn overload_is_its_own_failure() {
        let queued = UpstreamError::overloaded("g", 4096, Duration::from_millis(100));
        assert!(queued.is_overloaded() && !queued.is_timeout() && !queued.is_unreachable());
        assert_eq!(
            queued.to_string(),
            "upstream group \"g\" is overloaded: 4096 queries in flight, no slot freed within 0.100s"
        );
        let full = UpstreamError::exhausted("g", vec![attempt(1, AttemptOutcome::Overloaded)]);
        assert!(full.is_overloaded() && !full.is_timeout());
        assert!(full.to_string().contains("not sent: every message ID in use"), "{full}");
        let mixed = UpstreamError::exhausted(
            "g",
            vec![attempt(1, AttemptOutcome::Overloaded), attempt(2, AttemptOutcome::Timeout)],
        );
        assert!(!mixed.is_overloaded());
    }
}
