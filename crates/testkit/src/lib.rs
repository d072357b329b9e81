//! Signpost as the DNS test double for Rust test suites.
//!
//! - [`FakeDns`]: a real Signpost server on 127.0.0.1:0 (UDP and TCP, one
//!   port) set up in a few lines — zones as master-file text, single
//!   records, forwarding to another server (a second `FakeDns`, a
//!   [`FakeUpstream`]), NXDOMAIN for the rest — with recording on, the
//!   cache off, faults by name or on the upstream ([`FaultAction`]),
//!   records and zones changed while it runs, reload and explain.
//! - [`QueryExpectation`]: assertions on what it was asked that read as
//!   the test means them (`dns.expect("api.svc.test").qtype(A).once()`),
//!   with `assert_queried`, `assert_not_queried` and bounded waits; a
//!   failure lists every query recorded with its answer.
//! - [`FakeUpstream`]: a scripted wire-level server for testing DNS
//!   *clients* (forwarders, resolvers): answers per name and type
//!   ([`Answer`]), misbehaviour on request ([`Behaviour`]: delay, silence,
//!   wrong ID, truncation, every `n`th query dropped, connections
//!   closed...), over UDP, TCP, DoT and DoH, recording every query
//!   ([`SeenQuery`]).
//! - [`ResolverBuilder`], [`resolver`], [`resolver_config`] and [`lookup`]
//!   (feature `hickory`, on by default): hickory-resolver as an independent
//!   client, built from an explicit configuration.
//! - [`Query`], [`udp_exchange`], [`tcp_exchange`], [`ask`]: a raw client
//!   for tests that look at packets.
//! - [`TestCertificates`] (a private CA and a loopback leaf), [`TempDir`]
//!   ([`ConfigMapVolume`]: one laid out and updated as Kubernetes mounts a
//!   ConfigMap), [`http_get`] (the admin API and the probes),
//!   [`eventually`] and [`file_lines`] (bounded waits), [`Binary`] (a
//!   workspace binary as a child process), [`Knot`] (Knot DNS as an
//!   authoritative peer serving a test's zone files, or the signed DNSSEC
//!   test hierarchy of [`signed_test_zones`]), [`closed_udp_port`],
//!   [`udp_address`] and [`tcp_address`] (a server's first listeners).
//!
//! The guide with an example of each is docs/testing.md in the repository.
//!
//! Network safety: everything listens on and talks to the addresses the
//! test gives, 127.0.0.1 unless told otherwise; nothing reads the system's
//! resolver configuration or hosts file.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), signpost_testkit::Error> {
//! use std::time::Duration;
//! use signpost_testkit::{FakeDns, FaultAction, ResolverAnswer, lookup};
//! use signpost_wire::{Rcode, RecordType};
//!
//! // The service's own names, and a second Signpost standing in for the internet.
//! let internet = FakeDns::builder().record("example.com. 300 IN A 93.184.215.14").start().await?;
//! let dns = FakeDns::builder()
//!     .zone("svc.test", "api IN A 10.0.0.1")
//!     .forward_to(internet.udp_addr())
//!     .fault("flaky.svc.test", FaultAction::ServFail)
//!     .start()
//!     .await?;
//! let resolver = dns.resolver();
//! assert_eq!(lookup(&resolver, "api.svc.test.", RecordType::A).await, ResolverAnswer::data(["10.0.0.1"]));
//! assert_eq!(lookup(&resolver, "example.com.", RecordType::A).await, ResolverAnswer::data(["93.184.215.14"]));
//! assert_eq!(lookup(&resolver, "flaky.svc.test.", RecordType::A).await, ResolverAnswer::Rcode(Rcode::SERVFAIL));
//!
//! dns.expect("example.com").qtype(RecordType::A).decision("forward").once();
//! internet.assert_queried("example.com", RecordType::A);
//! let flaky = dns.wait_for("flaky.svc.test", RecordType::A, Duration::from_secs(5)).await?;
//! assert_eq!(flaky.decision, "fault");
//! # Ok(()) }
//! ```

mod certificates;
mod client;
mod configmap;
mod dns;
mod error;
mod expect;
mod fake;
mod http;
mod knot;
mod notify;
mod ports;
mod process;
#[cfg(feature = "hickory")]
mod resolver;
mod temp;
mod wait;

pub use certificates::{CertificateFiles, LOOPBACK_NAMES, TestCertificates};
pub use client::{
    ASK_TIMEOUT, Query, answers, ask, ask_from, authority_types, exchange, frame, query, read_frame, tcp_address,
    tcp_exchange, udp_address, udp_exchange, udp_exchange_from, write_frame,
};
pub use configmap::ConfigMapVolume;
pub use dns::{DEFAULT_TTL, FakeDns, FakeDnsBuilder, UPSTREAM_GROUP};
pub use error::Error;
pub use expect::{QueryExpectation, describe_query};
pub use fake::{
    Answer, Behaviour, Counters, FORGED_ADDRESS, FakeUpstream, FakeUpstreamBuilder, Handler, HttpRequest,
    OTHER_QUESTION, SeenEdns, SeenQuery,
};
#[cfg(feature = "hickory")]
pub use hickory_resolver::TokioResolver;
pub use http::http_get;
pub use knot::{Knot, signed_test_zones};
pub use notify::NotifiedSecondary;
pub use ports::closed_udp_port;
#[doc(hidden)]
pub use ports::{START_TRIES, is_addr_in_use, port_taken, retry_addr_in_use};
pub use process::{
    Binary, Credentials, DetachedProcess, Finished, HANDLER_WAIT, RunningBinary, Signal, free_port, start_on_free_port,
    successor_in,
};
#[cfg(feature = "hickory")]
pub use resolver::{ResolverAnswer, ResolverBuilder, lookup, lookup_with_ttls, resolver, resolver_config};
/// docs/testing.md, whose examples run as doc tests of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/testing.md")]
pub struct TestingGuide;

/// What the test layer records and the faults it injects, from the server
/// crate: the types [`FakeDns`] hands out.
pub use signpost_server::{FaultAction, FaultTarget, RecordedQuery, TestLayer, Trace};
pub use temp::TempDir;
pub use wait::{POLL_INTERVAL, eventually, file_lines};

/// How a query travels: the fake upstream's listeners and the resolver's
/// connection. The same enum the rules and the server use, so a test names
/// one transport for the listener it starts and the client it asks with.
pub use signpost_rules::Transport;
