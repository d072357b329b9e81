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

/// The names in [`RESPONSE`](crate::RESPONSE), in one library's own name
/// type.
pub(crate) struct ResponseNames<N> {
    pub(crate) qname: N,
    pub(crate) target: N,
    pub(crate) zone: N,
    pub(crate) ns1: N,
    pub(crate) ns2: N,
}

impl<N> ResponseNames<N> {
    /// Parses each name, given without the root's final dot.
    pub(crate) fn parse_with(parse: impl Fn(&'static str) -> N) -> Self {
        Self {
            qname: parse("www.example.com"),
            target: parse("www.example.com.cdn.example.net"),
            zone: parse("cdn.example.net"),
            ns1: parse("ns1.cdn.example.net"),
            ns2: parse("ns2.cdn.example.net"),
        }
    }
}

/// Declares a codec's `ResponseData`: the response's names parsed once with
/// `$parse` into `$name` (a server holds them already), plus any further
/// fields the codec's `build` needs. The codec adds `build` itself.
macro_rules! response_data {
    ($name:ty, $parse:expr $(, $field:ident: $field_type:ty = $value:expr)* $(,)?) => {
        /// The response's names, parsed once (a server holds them already).
        pub struct ResponseData {
            names: super::ResponseNames<$name>,
            $($field: $field_type,)*
        }

        impl Default for ResponseData {
            fn default() -> Self {
                Self::new()
            }
        }

        impl ResponseData {
            /// Parses the response's names.
            #[must_use]
            pub fn new() -> Self {
                Self { names: super::ResponseNames::parse_with($parse), $($field: $value,)* }
            }
        }
    };
}
pub(crate) use response_data;

pub mod dom;
pub mod hickory;
pub mod signpost;
pub mod simple;

/// What every walker, builder and writer returns; errors only on malformed
/// input, never on the benchmarked paths.
pub type Outcome = Result<(), Box<dyn Error>>;
