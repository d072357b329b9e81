//! Integration tests for signpost-rules: one binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, unreachable_pub)]

mod allocations;
mod config_files;
mod edits;
mod istio;
mod no_allocation;
mod precedence;
mod redirect;
mod support;
mod zones;
