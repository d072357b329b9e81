//! A conditional forwarder (what `signpost-forward` runs), from a TOML
//! document or from the subset of unbound.conf that forwarders use.
//!
//! Names under a forward zone go to that zone's upstream group, the most
//! specific zone winning; local zones and host tables answer without an
//! upstream; everything else goes to the default group (the forward zone
//! for `.`, or the system's resolv.conf, leaving out the forwarder's own
//! listening addresses). docs/configuration.md describes both formats.
//!
//! ```
//! use signpost_forward::{BuildOptions, ForwarderConfig};
//!
//! let config = ForwarderConfig::from_toml(r#"
//!     [[listeners]]
//!     address = "127.0.0.1"
//!     port = 0
//!     transport = "udp"
//!
//!     [[forward_zones]]
//!     name = "corp.example.com"
//!     servers = ["192.0.2.10", "192.0.2.11:5353"]
//!     retry_on = ["timeout", "unreachable", "servfail"]
//!
//!     [[forward_zones]]
//!     name = "."
//!     servers = ["tls://192.0.2.53#dns.example"]
//!
//!     [[host_tables]]
//!     name = "mesh"
//!     hosts = [{ name = "reviews.mesh.local" }]   # gets an automatic address
//! "#, "forward.toml")?;
//! let forwarder = config.build(&BuildOptions::default())?;
//! assert_eq!(forwarder.routes[0].to_string(), "corp.example.com -> corp.example.com [udp://192.0.2.10:53, udp://192.0.2.11:5353]");
//! assert_eq!(forwarder.default_route.as_ref().map(|route| route.group.as_str()), Some("."));
//! // Then: Server::builder().config(forwarder.server).rules(forwarder.rules).upstreams(forwarder.upstreams).start()
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![allow(
    clippy::result_large_err,
    reason = "errors carry file, line and field; they come from loading configuration, a cold path"
)]

mod acl;
mod build;
mod config;
pub mod control;
mod error;
pub mod istio;
pub mod runtime;
mod transfer_out;
mod unbound;

#[doc(hidden)]
pub mod fuzzing;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use signpost_rules::Allocations;

pub use acl::{AccessControl, AclAction, allowed_networks};
pub use build::{AuthZone, BuildOptions, Forwarder, Route, SYSTEM_GROUP, SYSTEM_RESOLV_CONF, base_dir_of};
pub use config::{AuthZoneConfig, ForwardZoneConfig, ForwarderConfig, ServerSpec, parse_server};
pub use error::{ConfigError, Unsupported, Warning};
pub use unbound::{MAX_INCLUDE_DEPTH, SystemEnvironment, UnboundEnvironment, read_unbound_conf, read_unbound_conf_in};

use signpost_server::Reloader;

/// Which language a configuration file is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigFormat {
    /// The forwarder's TOML document.
    Toml,
    /// unbound.conf.
    Unbound,
}

impl ConfigFormat {
    /// `.toml` files are TOML; anything else is taken for unbound.conf.
    pub fn of_path(path: &Path) -> Self {
        if path.extension().is_some_and(|extension| extension.eq_ignore_ascii_case("toml")) {
            Self::Toml
        } else {
            Self::Unbound
        }
    }
}

/// A configuration file and how to read it: what start-up and every reload build from.
#[derive(Clone, Debug)]
pub struct ConfigSource {
    /// The file.
    pub path: PathBuf,
    /// Its language.
    pub format: ConfigFormat,
    /// Run without unbound.conf options the forwarder does not implement (they become warnings).
    pub ignore_unsupported: bool,
    /// Read the `system` group from this resolv.conf instead of the configured one.
    pub resolv_conf: Option<PathBuf>,
}

impl ConfigSource {
    /// A TOML configuration.
    pub fn toml(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), format: ConfigFormat::Toml, ignore_unsupported: false, resolv_conf: None }
    }

    /// An unbound.conf.
    pub fn unbound(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), format: ConfigFormat::Unbound, ignore_unsupported: false, resolv_conf: None }
    }

    /// Read the file (and, for unbound.conf, its includes).
    pub fn load(&self) -> Result<(ForwarderConfig, Vec<Warning>), ConfigError> {
        match self.format {
            ConfigFormat::Toml => Ok((ForwarderConfig::load(&self.path)?, Vec::new())),
            ConfigFormat::Unbound => read_unbound_conf(&self.path, self.ignore_unsupported),
        }
    }

    /// Read and build. `previous_allocations` keeps automatic host
    /// addresses when there is no state file; `save_allocations` writes the
    /// state file when there is one.
    pub fn build(
        &self,
        previous_allocations: Option<Allocations>,
        save_allocations: bool,
    ) -> Result<Forwarder, ConfigError> {
        let (config, mut warnings) = self.load()?;
        let options = BuildOptions {
            base_dir: base_dir_of(&self.path),
            resolv_conf: self.resolv_conf.clone(),
            previous_allocations,
            save_allocations,
        };
        let mut forwarder = config.build(&options)?;
        warnings.append(&mut forwarder.warnings);
        forwarder.warnings = warnings;
        Ok(forwarder)
    }

    /// What [`runtime::run`] serves for this file: its reloader, and the
    /// file itself watched when `watch` is set.
    pub fn service(&self, forwarder: Forwarder, watch: bool) -> runtime::Service {
        runtime::Service {
            reloader: self.reloader(&forwarder),
            forwarder,
            source: self.path.clone(),
            watch: watch.then(|| self.path.clone()),
            query_handler: None,
            user: None,
        }
    }

    /// A [`Reloader`] for [`ServerBuilder::reloader`](crate::ServerBuilder::reloader):
    /// each reload reads the file again and builds, keeping the automatic
    /// host addresses of the forwarder running (`initial` at first). Warnings
    /// go to `tracing`; listeners and server settings only change on restart.
    pub fn reloader(&self, initial: &Forwarder) -> Reloader {
        let source = self.clone();
        let allocations = Arc::new(Mutex::new(initial.rules.allocations().clone()));
        let listeners: Vec<String> =
            initial.server.listeners.iter().map(|listener| format!("{:?}", listener.socket_address())).collect();
        Arc::new(move || {
            let previous = allocations.lock().map(|previous| previous.clone()).ok();
            let forwarder = source.build(previous, true)?;
            for warning in forwarder.warnings.iter().filter(|warning| !matches!(warning, Warning::Ignored { .. })) {
                tracing::warn!("{warning}");
            }
            let now: Vec<String> =
                forwarder.server.listeners.iter().map(|listener| format!("{:?}", listener.socket_address())).collect();
            if now != listeners {
                tracing::warn!("listener changes take effect on restart, not on reload");
            }
            if let Ok(mut slot) = allocations.lock() {
                *slot = forwarder.rules.allocations().clone();
            }
            Ok(forwarder.into_state())
        })
    }
}

#[cfg(test)]
mod tests;
