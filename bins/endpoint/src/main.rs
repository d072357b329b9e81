//! signpost-endpoint (work in progress).

fn main() {}
