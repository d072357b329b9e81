//! Runnable examples live beside this file: `cargo run -p signpost-examples --example embed_server`.
