//! Upstream DNS transports for Signpost: send a query to a group of servers
//! over Do53 (UDP, TCP), DNS over TLS or DNS over HTTPS and bring back a
//! validated answer, or an error that lists every try.
//!
//! ```no_run
//! use signpost_upstream::{GroupConfig, Policy, ServerConfig, Upstreams};
//! use signpost_wire::{Class, MessageBuilder, NameBuf, RecordType};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Two servers: UDP first, DoH when it is unreachable or slow.
//! let mut group = GroupConfig::new(
//!     "default",
//!     vec![
//!         ServerConfig::udp("192.0.2.53:53".parse()?),
//!         ServerConfig::https("192.0.2.1:443".parse()?, "dns.example"),
//!     ],
//! );
//! group.policy = Policy::Sequential;
//! group.retry_on.servfail = true; // like Unbound: SERVFAIL moves on too
//! let upstreams = Upstreams::new(vec![group])?;
//!
//! let mut query = Vec::new();
//! let mut builder = MessageBuilder::new(&mut query)?;
//! builder.push_question(&"example.com".parse::<NameBuf>()?, RecordType::A, Class::IN)?;
//! builder.finish()?;
//!
//! let group = upstreams.group("default").ok_or("no such group")?;
//! match group.resolve(&query).await {
//!     Ok(resolved) => {
//!         let answer = signpost_wire::Message::parse(&resolved.response)?;
//!         println!("{} answers from {} over {}", answer.header().ancount, resolved.server, resolved.protocol);
//!     }
//!     // Every try and why it failed.
//!     Err(error) => eprintln!("{error}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Configuration reads from TOML (all structs are serde types with defaults):
//!
//! ```
//! let group: signpost_upstream::GroupConfig = toml::from_str(r#"
//!     name = "corp"
//!     retry_on = ["timeout", "unreachable", "servfail"]
//!     [[servers]]
//!     address = "10.0.0.2:53"
//! "#)?;
//! assert_eq!(group.per_try_timeout, std::time::Duration::from_secs(2));
//! let upstreams = signpost_upstream::Upstreams::new(vec![group])?;
//! assert!(upstreams.group("corp").is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Nothing here prints: problems go to `tracing`, figures to [`Upstreams::stats`].
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

mod buffer;
mod config;
mod doh;
mod error;
mod group;
mod query;
mod resolv;
mod rtt;
mod stats;
mod stream;
mod tls;
mod transfer;
mod udp;

#[doc(hidden)]
pub mod fuzzing;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

pub use buffer::request_receive_buffer;
pub use config::{
    DohMethod, GroupConfig, Hedge, HedgeAfter, Policy, Protocol, RetryOn, ServerConfig, TlsOptions, UnknownProtocol,
    duration_text,
};
pub use error::{Attempt, AttemptOutcome, Error, UpstreamError};
pub use group::Group;
pub use resolv::{MAX_NAMESERVERS, ResolvConf, ResolvWarning, parse_resolv_conf, reaches_own_listener, unmapped};
pub use stats::{GroupStats, LATENCY_BUCKETS, ServerStats};
pub use tls::{crypto_provider, system_roots};
pub use transfer::{DEFAULT_TRANSFER_TIMEOUT, TransferClient};
pub use udp::batch_sends;

/// An answer from upstream.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The response as the server sent it (its ID is the one the try used:
    /// random, or 0 over DoH; restore the client's with `signpost_wire::relay::set_id`).
    pub response: Bytes,
    /// The server that answered.
    pub server: SocketAddr,
    /// The transport it answered over (TCP after a truncated UDP answer).
    pub protocol: Protocol,
    /// Every try, in the order they started, including the one that answered.
    pub attempts: Vec<Attempt>,
}

/// All upstream groups, by name. Cheap to clone and share between tasks.
#[derive(Clone, Debug, Default)]
pub struct Upstreams {
    inner: Arc<BTreeMap<String, Group>>,
    /// Every group caches its answers (the usual case): [`Upstreams::caches`]
    /// is then true without looking the group up, on every cache lookup.
    all_cache: bool,
}

impl Upstreams {
    /// Check the groups and build their TLS settings (reading CA files and
    /// the system's roots). No query is sent and no socket opened until a
    /// group resolves something.
    pub fn new(groups: Vec<GroupConfig>) -> Result<Self, Error> {
        let mut built = BTreeMap::new();
        for config in groups {
            if built.contains_key(&config.name) {
                return Err(Error::DuplicateGroup { group: config.name });
            }
            let name = config.name.clone();
            built.insert(name, Group::new(config)?);
        }
        let all_cache = built.values().all(|group| group.config().cache);
        Ok(Self { inner: Arc::new(built), all_cache })
    }

    /// Whether answers through the group called `name` are cached (and
    /// looked up in the cache): its `cache` setting; true for a group that
    /// does not exist (a forward to it fails, so nothing is ever stored).
    pub fn caches(&self, name: &str) -> bool {
        self.all_cache || self.group(name).is_none_or(|group| group.config().cache)
    }

    /// The group called `name`.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.inner.get(name)
    }

    /// Every group, by name.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.inner.values()
    }

    /// Figures for every server of every group.
    pub fn stats(&self) -> Vec<ServerStats> {
        self.inner.values().flat_map(Group::stats).collect()
    }

    /// Load figures of every group: queries in flight, queued, refused as overloaded.
    pub fn group_stats(&self) -> Vec<GroupStats> {
        self.inner.values().map(Group::group_stats).collect()
    }
}

#[doc(hidden)]
pub mod testing {
    //! Helpers for tests and examples.

    use bytes::Bytes;
    use signpost_wire::{NameBuf, RecordType};

    /// A query for `name` `qtype` with RD set, ID 0 and, if given, an OPT record with that payload size.
    pub fn query(name: &NameBuf, qtype: RecordType, edns_payload: Option<u16>) -> Bytes {
        crate::query::build_query(name, qtype, edns_payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_found_by_name_and_duplicates_refused() {
        let server = ServerConfig::udp(SocketAddr::from(([127, 0, 0, 1], 53)));
        let upstreams = Upstreams::new(vec![
            GroupConfig::new("a", vec![server.clone()]),
            GroupConfig::new("b", vec![server.clone()]),
        ])
        .unwrap();
        assert_eq!(upstreams.group("b").map(Group::name), Some("b"));
        assert!(upstreams.group("c").is_none());
        assert_eq!(upstreams.stats().len(), 2);
        assert_eq!(upstreams.groups().count(), 2);
        let error =
            Upstreams::new(vec![GroupConfig::new("a", vec![server.clone()]), GroupConfig::new("a", vec![server])])
                .unwrap_err();
        assert!(matches!(error, Error::DuplicateGroup { .. }));
    }

    #[test]
    fn a_group_is_cached_unless_its_own_setting_says_not() {
        let server = ServerConfig::udp(SocketAddr::from(([127, 0, 0, 1], 53)));
        let all = Upstreams::new(vec![GroupConfig::new("a", vec![server.clone()])]).unwrap();
        assert!(all.caches("a"));
        assert!(all.caches("missing"), "nothing is stored for a group that does not exist");
        let mut uncached = GroupConfig::new("b", vec![server.clone()]);
        uncached.cache = false;
        let mixed = Upstreams::new(vec![GroupConfig::new("a", vec![server]), uncached]).unwrap();
        assert!(mixed.caches("a"));
        assert!(!mixed.caches("b"));
        assert!(mixed.caches("missing"));
        assert!(Upstreams::default().caches("default"));
    }

    #[test]
    fn upstreams_are_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        fn assert_clone<T: Clone>() {}
        assert_send_sync::<Upstreams>();
        assert_send_sync::<Group>();
        assert_send_sync::<UpstreamError>();
        assert_clone::<Upstreams>();
        assert_clone::<Group>();
    }
}
