//! signpost-rules (work in progress).
