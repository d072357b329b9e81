//! signpost-server (work in progress).
