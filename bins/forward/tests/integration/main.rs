//! signpost-forward end to end: in-process forwarders built from TOML and
//! the binary as a child process, against fake upstreams on loopback that
//! count packets, with hickory-resolver as the client.

mod dnssec;
mod explain;
mod failover;
mod istio;
mod kubernetes;
mod local;
mod process;
mod restarts;
mod routing;
mod support;
mod transfer;
mod unbound;
mod unbound_compat;
