//! Test doubles for Signpost's tests, each written once.
//!
//! - [`FakeUpstream`]: a DNS server on loopback over UDP, TCP, DoT and DoH
//!   that answers from a script ([`Answer`] per name and type), misbehaves
//!   on request ([`Behaviour`]: delay, silence, wrong ID, truncation, every
//!   `n`th query dropped, connections closed...) and records every query
//!   ([`SeenQuery`]) with a way to wait for them.
//! - [`TestCertificates`]: a private CA and a leaf for the loopback names, as
//!   PEM files and rustls configurations.
//! - [`TempDir`]: a directory that removes itself; [`ConfigMapVolume`]: one
//!   laid out and updated as Kubernetes mounts a ConfigMap.
//! - [`ResolverBuilder`] and [`lookup`]: hickory-resolver as an independent
//!   client, built from an explicit configuration.
//! - [`Query`], [`udp_exchange`], [`tcp_exchange`], [`ask`]: a raw client
//!   for tests that look at packets.
//! - [`http_get`]: a plain HTTP GET for the admin API and the probes.
//! - [`Binary`]: a workspace binary as a child process, with its start-up
//!   lines, output and signals.
//! - [`retry_addr_in_use`] and [`closed_udp_port`]: starting servers on port
//!   0 without flaking, and a port where nothing answers.
//!
//! Network safety: everything listens on and talks to the addresses the
//! test gives, 127.0.0.1 unless told otherwise; nothing reads the system's
//! resolver configuration or hosts file.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), signpost_testkit::Error> {
//! use std::time::Duration;
//! use signpost_testkit::{Answer, Behaviour, FakeUpstream, ResolverAnswer, Transport, lookup, resolver};
//! use signpost_wire::RecordType;
//!
//! // An upstream whose first answer is lost.
//! let upstream = FakeUpstream::builder()
//!     .answer("db.corp.example.", RecordType::A, Answer::records(["@ 60 IN A 10.0.0.5"]))
//!     .behaviour(Behaviour::DropEvery(std::num::NonZeroU64::new(2).unwrap()))
//!     .start()
//!     .await?;
//! let client = resolver(Transport::Tcp, upstream.address());
//! assert_eq!(lookup(&client, "db.corp.example.", RecordType::A).await, ResolverAnswer::data(["10.0.0.5"]));
//! let seen = upstream.wait_for_queries(1, Duration::from_secs(5)).await?;
//! assert_eq!((seen[0].name.as_str(), seen[0].transport), ("db.corp.example.", Transport::Tcp));
//! # Ok(()) }
//! ```

mod certificates;
mod client;
mod configmap;
mod error;
mod fake;
mod http;
mod ports;
mod process;
mod resolver;
mod temp;
mod wait;

pub use certificates::{CertificateFiles, LOOPBACK_NAMES, TestCertificates};
pub use client::{
    ASK_TIMEOUT, Query, answers, ask, ask_from, authority_types, exchange, frame, query, read_frame, tcp_exchange,
    udp_exchange, udp_exchange_from, write_frame,
};
pub use configmap::ConfigMapVolume;
pub use error::Error;
pub use fake::{
    Answer, Behaviour, Counters, FORGED_ADDRESS, FakeUpstream, FakeUpstreamBuilder, Handler, HttpRequest,
    OTHER_QUESTION, SeenEdns, SeenQuery,
};
pub use hickory_resolver::TokioResolver;
pub use http::http_get;
pub use ports::{START_TRIES, closed_udp_port, is_addr_in_use, port_taken, retry_addr_in_use};
pub use process::{Binary, Finished, HANDLER_WAIT, RunningBinary, Signal};
pub use resolver::{ResolverAnswer, ResolverBuilder, lookup, lookup_with_ttls, resolver};
pub use temp::TempDir;
pub use wait::{POLL_INTERVAL, eventually, file_lines};

/// How a query travels: the fake upstream's listeners and the resolver's
/// connection. The same enum the rules and the server use, so a test names
/// one transport for the listener it starts and the client it asks with.
pub use signpost_rules::Transport;
