//! The Signpost rule engine: what to do with each question.
//!
//! A [`RuleSet`] is compiled once from configuration ([`config::RulesConfig`],
//! TOML) or a [`RuleSetBuilder`], is immutable and `Send + Sync`, and answers
//! [`RuleSet::decide`] without I/O: answer from local data (zones, host
//! tables, redirect rules), forward to an upstream group, or block. See
//! `docs/rules.md` for the precedence table and the configuration format.
//!
//! ```
//! use std::net::IpAddr;
//! use signpost_rules::{Answer, Client, Decision, RuleSet, config::RulesConfig};
//! use signpost_wire::{Class, NameBuf, RecordType};
//!
//! let config = RulesConfig::from_toml(r#"
//!     default_group = "upstream"
//!
//!     [[rules]]
//!     suffix = "amazonaws.com"
//!     action = "redirect"
//!     ipv4 = "127.0.0.1"
//!
//!     [[rules]]
//!     suffix = "corp.example"
//!     action = "forward"
//!     group = "corp"
//! "#, "rules.toml")?;
//! let rules = RuleSet::from_config(&config, ".".as_ref(), &["upstream", "corp"])?;
//!
//! let client = Client::udp(IpAddr::from([192, 0, 2, 10]));
//! let name: NameBuf = "sqs.us-east-1.amazonaws.com".parse()?;
//! match rules.decide_name(&name, RecordType::A, Class::IN, &client) {
//!     Decision::Local(local) => {
//!         assert_eq!(local.answer, Answer::AddressOfQuestion { address: [127, 0, 0, 1].into(), ttl: 60 });
//!     }
//!     other => panic!("expected a local answer, got {other:?}"),
//! }
//! let name: NameBuf = "git.corp.example".parse()?;
//! let Decision::Forward(forward) = rules.decide_name(&name, RecordType::A, Class::IN, &client) else { panic!() };
//! assert_eq!(forward.group, "corp");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![allow(
    clippy::result_large_err,
    reason = "errors carry file, line and field; they come from loading configuration, a cold path, and decide() returns none"
)]

pub mod config;
mod decision;
mod error;
mod firewall;
mod hosts;
mod istio;
pub mod locally_served;
mod master;
mod names;
mod ruleset;
mod spec;
#[cfg(test)]
mod test_support;
mod zone;

#[doc(hidden)]
pub mod fuzzing;

pub use decision::{Answer, Block, BlockAction, Client, Decision, Forward, LocalAnswer, Matched, Reason, Transport};
pub use error::{Error, Location};
pub use firewall::{DomainList, FirewallAction, FirewallBlock, FirewallMatch, FirewallRuleSpec, Redirection};
pub use hosts::{Allocated, AllocationRanges, Allocations, DEFAULT_IPV4_RANGE, HostEntry, load_hosts, parse_hosts};
pub use istio::{IstioAddresses, IstioAllocator, IstioService};
pub use master::{MAX_INCLUDE_DEPTH, Source, parse_records, parse_records_with_ttl};
pub use ruleset::{MAX_CHAIN, RuleSet, RuleSetBuilder, zone_id_matches};
pub use spec::{
    Action, AddressSource, Anchor, DEFAULT_GROUP, DEFAULT_VIEW, ExceptionSpec, HostTableSpec, Matcher, OtherTypes,
    Redirect, RuleSpec, ViewSpec, ZoneMode, ZoneSpec,
};
pub use zone::{Zone, ZoneChange};
