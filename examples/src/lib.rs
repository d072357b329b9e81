//! Runnable examples live beside this file: `cargo run -p signpost-examples --example embed_server`,
//! and `service_dns`, a service's test suite with Signpost as its DNS (`cargo test -p signpost-examples
//! --example service_dns`).
