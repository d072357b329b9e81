//! The Signpost server runtime: UDP, TCP, DoT and DoH listeners around one
//! query pipeline (header → ACL → limits → format checks → rules → local
//! answer, cache or upstream → response), with a cache, rate limits and
//! rate-limit groups, a query log, metrics, atomic reload, listeners added
//! and removed at run time, a test layer (faults, recording) and an
//! embedding API. It knows no application: the redirect proxy, the
//! forwarder and the Route 53 emulator (bins/) configure it.
//!
//! ```
//! use signpost_server::{Server, TestLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A server on free loopback ports, as a test harness would start it.
//! let layer = TestLayer::new().recording(true);
//! let server = Server::builder()
//!     .udp_and_tcp("127.0.0.1:0".parse()?)
//!     .test_layer(layer.clone())
//!     .start()
//!     .await?;
//! let address = server.udp_addr().ok_or("no UDP listener")?;
//! assert_eq!(server.tcp_addr().map(|tcp| tcp.port()), Some(address.port()));
//! // ... point a client at `address`; then `layer.recorded_queries()` ...
//! assert!(layer.recorded_queries().is_empty());
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! For tests, `signpost-testkit`'s `FakeDns` starts a server with test
//! defaults (cache off, recording on) from zone text in a few lines, with
//! assertions on what it was asked: see docs/testing.md ("Signpost in your
//! tests"). [`TestLayer`] is the part of this crate it builds on.
//!
//! Every transport goes through one seam, `Pipeline::handle`: bytes in, an
//! answer now, a pending answer, or none out. UDP is served by worker tasks
//! (one per CPU core by default, each with its own `SO_REUSEPORT` socket) that read and write batches of packets with
//! `recvmmsg`/`sendmmsg` and answer local names and cache hits inline,
//! without allocating; only queries that need an upstream become tasks of
//! their own. See docs/architecture.md for the whole flow.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod admin;
pub mod cache;
pub mod config;
mod dnssec;
pub mod dnstap;
mod doh;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod handover;
mod hook;
mod kernel;
mod keyed_hash;
mod limits;
mod listener;
pub mod metrics;
mod pipeline;
pub mod privileges;
pub mod probes;
pub mod querylog;
mod server;
pub mod signals;
mod sys;
mod tcp;
mod test_layer;
pub mod tls;
pub mod transfer;
mod udp;
pub mod watch;

pub use admin::{AdminExtension, AdminRequest, AdminResponse};
pub use config::{
    AdminConfig, CacheConfig, DnstapConfig, EdnsConfig, LimitAction, LimitsConfig, ListenerConfig, LogDestination,
    OverloadAction, QueryLogConfig, ResponseRateLimitConfig, ServerConfig, default_allow_list,
};
pub use error::{BoxError, Error};
pub use hook::{Handled, HandlerQuery, QueryHandler};
pub use listener::BoundListener;
pub use pipeline::{State, ValidationScope};
pub use privileges::drop_privileges;
pub use probes::{HealthConfig, Probes, Readiness, ReadyConfig, UpstreamsInUse};
pub use querylog::{Trace, TraceAttempt, TraceFirewall};
pub use server::{ConfigReloader, Reloader, Server, ServerBuilder, ServerHandle};
/// How a listener talks to clients and how a query arrived: one enum for
/// the rule engine, the listeners and the logs.
pub use signpost_rules::Transport;
pub use test_layer::{FaultAction, FaultTarget, RecordedQuery, TestLayer};
pub use watch::{FileWatcher, content_version};
