//! Entry points for the fuzz targets in `fuzz/` (not a stable API).
//!
//! Nothing here touches the disk or the network: unbound.conf and its
//! includes come from the fuzz input (includes find nothing), `forward-host:`
//! names do not resolve, and building reads no resolv.conf.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::{BuildOptions, ForwarderConfig, UnboundEnvironment, read_unbound_conf_in};

const FILE: &str = "/nonexistent/signpost-fuzz/unbound.conf";

/// The fuzz input as the only file there is.
struct FuzzEnvironment<'a>(&'a str);

impl UnboundEnvironment for FuzzEnvironment<'_> {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        if path == Path::new(FILE) { Ok(self.0.to_owned()) } else { Err(io::ErrorKind::NotFound.into()) }
    }

    fn resolve_host(&self, _host: &str, _port: u16) -> io::Result<Vec<SocketAddr>> {
        Err(io::ErrorKind::NotFound.into())
    }
}

fn options() -> BuildOptions {
    BuildOptions {
        base_dir: PathBuf::from("/nonexistent/signpost-fuzz"),
        resolv_conf: Some(PathBuf::from("/nonexistent/signpost-fuzz/resolv.conf")),
        previous_allocations: None,
        save_allocations: false,
    }
}

/// Read fuzz bytes as unbound.conf (both with and without
/// `--ignore-unsupported`); what converts must build or fail with an error,
/// and its TOML form (`check-config --print-toml`) must read back.
pub fn unbound_conf(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else { return };
    let environment = FuzzEnvironment(text);
    for ignore_unsupported in [false, true] {
        let Ok((config, _warnings)) = read_unbound_conf_in(&environment, Path::new(FILE), ignore_unsupported) else {
            continue;
        };
        let _ = config.build(&options());
        let toml = config.to_toml();
        if let Err(error) = ForwarderConfig::from_toml(&toml, "printed.toml") {
            panic!("the TOML printed for a converted unbound.conf does not read back: {error}\n{toml}");
        }
    }
}

/// Read fuzz bytes as the forwarder's TOML and build what parses.
pub fn forwarder_toml(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else { return };
    if let Ok(config) = ForwarderConfig::from_toml(text, "fuzz.toml") {
        let _ = config.build(&options());
    }
}

/// Read fuzz bytes as Kubernetes manifests for the Istio mode and build the
/// name table from what reads; every name of it must look up without panicking.
pub fn istio_manifests(data: &[u8]) {
    use crate::istio::{Defaults, NameTable, TableOptions, parse_manifests};
    let Ok(text) = core::str::from_utf8(data) else { return };
    let mut services = Vec::new();
    let defaults = Defaults { namespace: "default", cluster_domain: "cluster.local" };
    if parse_manifests(text, Path::new("fuzz.yaml"), defaults, &mut services).is_err() {
        return;
    }
    for allocator in [signpost_rules::IstioAllocator::Sequential, signpost_rules::IstioAllocator::Hashed] {
        let options = TableOptions {
            namespace: "default".into(),
            cluster_domain: "cluster.local".into(),
            search: vec!["default.svc.cluster.local".into()],
            auto_allocate: true,
            allocator,
            dual_stack: true,
        };
        let table = NameTable::build(&services, &options);
        for (host, _) in table.entries() {
            let _ = table.lookup(&format!("{host}."), false);
            let _ = table.lookup(&format!("x.{host}.default.svc.cluster.local."), true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_do_not_panic() {
        unbound_conf(b"server:\n  local-zone: \"test.\" static\n  local-data: \"a.test. A 10.0.0.1\"\nforward-zone:\n  name: \".\"\n  forward-host: dns.example\n  forward-addr: 192.0.2.1\n");
        unbound_conf(b"include: \"other.conf\"\nserver:\n  interface: 127.0.0.1@5353\n");
        unbound_conf(b"server: \"unterminated");
        unbound_conf(&[0xff, 0xfe]);
        forwarder_toml(b"[[forward_zones]]\nname = \".\"\nservers = [\"192.0.2.1\"]\n");
        forwarder_toml(b"[[[");
        istio_manifests(b"kind: ServiceEntry\nspec:\n  hosts: [a.example, '*.w.example', '']\n---\nkind: List\nitems: [{kind: Service, metadata: {name: s}, spec: {clusterIP: 10.0.0.1}}]\n");
        istio_manifests(b"kind: [\n");
        istio_manifests(b"&a [*a, *a]");
    }
}
