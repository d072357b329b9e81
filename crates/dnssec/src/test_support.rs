//! Helpers the unit tests of several modules share.

use signpost_wire::NameBuf;

/// A name from its presentation form; the tests only pass valid ones.
pub(crate) fn name(text: &str) -> NameBuf {
    NameBuf::from_presentation(text).expect("name")
}
