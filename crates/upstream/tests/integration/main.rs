//! Integration tests: signpost-upstream against in-process fake upstreams on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

mod fake;
mod faults;
mod groups;
mod stream;
mod tls;
mod udp;
