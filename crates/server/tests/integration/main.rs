//! Integration tests for signpost-server: an embedded server on loopback,
//! queried with hickory-resolver (an independent client) and raw packets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod support;

mod defences;
mod docs;
mod doh;
mod faults;
mod forwarding;
mod ipv6;
mod limits;
mod listeners;
mod local;
mod operations;
mod probes;
mod protocol;
mod tcp;
mod transfer;
mod truncation;
