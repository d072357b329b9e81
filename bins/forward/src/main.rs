//! signpost-forward (work in progress).

fn main() {}
