//! Integration tests for signpost-endpoint: the emulator embedded
//! in-process on loopback (VPC clients bind 127.0.1.1 / 127.0.2.1), queried
//! with hickory-resolver and raw packets, and the binary run as a child
//! process. The recursive default is always a loopback fake upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]
#![allow(clippy::result_large_err)]

mod support;

mod api;
mod aws;

mod autodefined;
mod binary;
mod dnssec;
mod endpoint_types;
mod firewall;
mod forwarding;
mod limits;
mod precedence;
mod protocols;
mod querylog;
mod secondary;
mod state;
mod transfer_out;
mod visibility;
