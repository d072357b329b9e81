//! The codec workloads, implemented once per library on the same bytes.
//!
//! Each module has the same four entry points: `route` (header and first
//! question of [`QUERY`](crate::QUERY)), `walk` (every field of
//! [`RESPONSE`](crate::RESPONSE)), `ResponseData::build` (build
//! [`RESPONSE`](crate::RESPONSE) with compression into a reused buffer) and
//! `redirect` (parse [`QUERY`](crate::QUERY), write
//! [`REDIRECT_ANSWER`](crate::REDIRECT_ANSWER)). The criterion benches
//! (`benches/wire.rs`) time them; the `prof` binary runs them under
//! callgrind for instruction counts.

use std::error::Error;

pub mod dom;
pub mod hickory;
pub mod signpost;
pub mod simple;

/// What every walker, builder and writer returns; errors only on malformed
/// input, never on the benchmarked paths.
pub type Outcome = Result<(), Box<dyn Error>>;
