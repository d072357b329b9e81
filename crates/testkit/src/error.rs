//! The one error type of the test kit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// What went wrong in the test kit, with what and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket could not be bound.
    #[error("cannot bind {transport} on {address}: {source}")]
    Bind {
        /// The transport ("UDP", "TCP", ...).
        transport: &'static str,
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No port was free for UDP and TCP together after this many tries.
    #[error("no port on {ip} was free for both UDP and TCP after {tries} tries")]
    NoSharedPort {
        /// The address the fake was to listen on.
        ip: std::net::IpAddr,
        /// How many ports were tried.
        tries: usize,
    },
    /// A file or directory could not be written or read.
    #[error("{path}: {source}")]
    File {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A record given to an answer is not valid presentation format.
    #[error("record {text:?} is not valid: {source}")]
    Record {
        /// The text as given.
        text: String,
        /// Why it does not parse.
        source: signpost_wire::Error,
    },
    /// A name given to the fake upstream is not a valid domain name.
    #[error("name {text:?} is not valid: {source}")]
    Name {
        /// The text as given.
        text: String,
        /// Why it does not parse.
        source: signpost_wire::Error,
    },
    /// rcgen could not make a certificate or key.
    #[error("cannot make the test certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused a configuration built from the test certificates.
    #[error("cannot build a TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// hickory-resolver could not be built.
    #[error("cannot build the hickory resolver for {server}: {reason}")]
    Resolver {
        /// The server the resolver was to ask.
        server: SocketAddr,
        /// hickory's error, as text (its type differs between hickory crates).
        reason: String,
    },
    /// Waiting for something the test expected timed out.
    #[error("waited {waited:?} for {what}; {seen}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
        /// What was there instead, for the failure message.
        seen: String,
    },
    /// A program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A program exited while it was expected to start up or keep running.
    #[error("{program} exited with {status} during start-up\nstdout:\n{stdout}\nstderr:\n{stderr}")]
    Exited {
        /// The program.
        program: PathBuf,
        /// How it exited.
        status: ExitStatus,
        /// What it printed on standard output.
        stdout: String,
        /// What it printed on standard error.
        stderr: String,
    },
    /// A program did not finish its start-up in time.
    #[error("{program} did not start up within {waited:?}\nstdout:\n{stdout}\nstderr:\n{stderr}")]
    StartTimeout {
        /// The program.
        program: PathBuf,
        /// How long it was given.
        waited: Duration,
        /// What it printed on standard output.
        stdout: String,
        /// What it printed on standard error.
        stderr: String,
    },
    /// A Signpost server (a [`crate::FakeDns`]) could not start or reload.
    #[error("the fake DNS server: {source}")]
    Server {
        /// The server's error.
        source: Box<signpost_server::Error>,
    },
    /// Zone data, a record or rules given to a [`crate::FakeDns`] are not valid.
    #[error("{what}: {source}")]
    Rules {
        /// What was given (`zone svc.test`, `record "..."`, `the rules`).
        what: String,
        /// Why the rule engine refused it.
        source: Box<signpost_rules::Error>,
    },
    /// The upstream groups of a [`crate::FakeDns`] are not valid.
    #[error("the fake DNS server's upstreams: {source}")]
    Upstreams {
        /// The upstream crate's error.
        source: Box<signpost_upstream::Error>,
    },
    /// A signal could not be sent to a child process.
    #[error("cannot send signal {signal} to process {pid}: {source}")]
    Signal {
        /// The signal number.
        signal: i32,
        /// The process.
        pid: u32,
        /// Why.
        source: std::io::Error,
    },
    /// Waiting for a child process failed.
    #[error("cannot wait for {program}: {source}")]
    Wait {
        /// The program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}
