//! signpost-upstream (work in progress).
