//! The Signpost server runtime: UDP, TCP, DoT and DoH listeners around one
//! query pipeline (parse → ACL → limits → rules → local answer, cache or
//! upstream → response), with a cache, query logs, metrics, rate limits,
//! atomic reload and an embedding API for tests.
//!
//! ```no_run
//! use signpost_server::{ListenerConfig, Server, Transport};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // A server on free loopback ports, as a test harness would start it.
//! let server = Server::builder()
//!     .udp_and_tcp("127.0.0.1:0".parse()?)
//!     .start()
//!     .await?;
//! println!("listening on {:?}", server.udp_addrs());
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! UDP is served by worker threads that read and write batches of packets
//! with `recvmmsg`/`sendmmsg` and answer local names and cache hits inline,
//! without allocating; only queries that need an upstream go to the tokio
//! runtime. See docs/architecture.md for the whole flow.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod admin;
pub mod cache;
pub mod config;
mod doh;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod limits;
mod listener;
pub mod metrics;
mod pipeline;
pub mod querylog;
mod server;
mod sys;
mod tcp;
mod test_layer;
pub mod tls;
mod udp;

pub use admin::{AdminExtension, AdminResponse};
pub use config::{
    AdminConfig, CacheConfig, EdnsConfig, LimitAction, LimitsConfig, ListenerConfig, LogDestination, QueryLogConfig,
    ServerConfig, default_allow_list,
};
pub use error::{BoxError, Error};
pub use listener::BoundListener;
pub use pipeline::State;
pub use querylog::{Trace, TraceAttempt};
pub use server::{ConfigReloader, Reloader, Server, ServerBuilder, ServerHandle};
/// How a listener talks to clients and how a query arrived: one enum for
/// the rule engine, the listeners and the logs.
pub use signpost_rules::Transport;
pub use test_layer::{FaultAction, FaultTarget, RecordedQuery, TestLayer};
