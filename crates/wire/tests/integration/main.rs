//! Integration tests for signpost-wire: golden vectors, properties, allocation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod allocation;
mod partial;
mod properties;
mod transfer;
mod vectors;
