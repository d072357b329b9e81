//! Integration tests for signpost-redirect: the redirect proxy embedded in
//! the test process (signpost_redirect) and the binary as a child
//! process, queried with hickory-resolver built from an explicit
//! configuration and with raw packets. Loopback only: every upstream and
//! "system resolver" here is a fake on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

mod support;

mod behaviour;
mod binary;
mod forwarding;
mod localstack;
mod records;
mod route53;
mod route53_api;
mod runtime;
mod system;
