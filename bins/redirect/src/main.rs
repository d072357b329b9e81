//! signpost-redirect (work in progress).

fn main() {}
