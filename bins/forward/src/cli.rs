//! The command line: which configuration to read and what to do with it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use signpost_forward::istio::{DEFAULT_PROXY_ADDRESS, IstioSettings};
use signpost_forward::{ConfigFormat, ConfigSource};
use signpost_rules::IstioAllocator;

/// The TOML configuration read when no file is named.
pub(crate) const DEFAULT_CONFIG: &str = "/etc/signpost/forward.toml";

/// A conditional forwarder: forward zones to upstream groups (Do53, DoT,
/// DoH), local zones and host tables answered locally, everything else to
/// the default group. Runs its own TOML configuration or an existing
/// unbound.conf. SIGHUP (or, with --watch-config, a change of the file)
/// reloads the configuration; SIGTERM stops after the lame-duck period;
/// SIGUSR2 starts the executable again with the listening sockets, and
/// stops once it serves (zero-loss upgrade). Sockets passed by systemd
/// socket activation (LISTEN_FDS) are served instead of bound.
#[derive(Debug, Parser)]
#[command(name = "signpost-forward", version)]
pub(crate) struct Cli {
    /// The TOML configuration (docs/configuration.md).
    #[arg(long, short = 'c', env = "SIGNPOST_FORWARD_CONFIG", conflicts_with = "unbound_conf", global = true)]
    pub(crate) config: Option<PathBuf>,
    /// Read an unbound.conf instead (server:, forward-zone:, include:).
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) unbound_conf: Option<PathBuf>,
    /// Run without the unbound.conf options signpost-forward does not implement (they are logged).
    #[arg(long, global = true)]
    pub(crate) ignore_unsupported: bool,
    /// Read the default group from this resolv.conf instead of the configured one (/etc/resolv.conf).
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) resolv_conf: Option<PathBuf>,
    /// After binding every listener, become this user (name or uid): root is
    /// given up for good, keeping only CAP_NET_BIND_SERVICE so listeners
    /// added later can still bind port 53 (docs/reliability.md).
    #[arg(long, value_name = "USER", global = true)]
    pub(crate) user: Option<String>,
    /// Reload when the configuration file changes (a Kubernetes ConfigMap's
    /// `..data` swap included), as SIGHUP does: a failed reload keeps the
    /// running configuration.
    #[arg(long, env = "SIGNPOST_WATCH_CONFIG", global = true)]
    pub(crate) watch_config: bool,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Validate a configuration and print the effective rules: listeners,
    /// which zone goes where, local zones and host tables.
    CheckConfig {
        /// The file: `.toml` is read as TOML, anything else as unbound.conf
        /// (default: --config / --unbound-conf, else /etc/signpost/forward.toml).
        file: Option<PathBuf>,
        /// Also print the configuration as the equivalent TOML (to convert an unbound.conf).
        #[arg(long)]
        print_toml: bool,
    },
    /// Run as Istio's DNS proxy (istio-agent on 127.0.0.1:15053): A and AAAA
    /// for the hosts of Kubernetes Services and ServiceEntries, everything
    /// else to the nameservers of resolv.conf. --watch-config reloads when
    /// the manifests change. See docs/istio.md.
    Istio(IstioArgs),
}

/// The Istio mode's settings: istio-agent's environment variables, or flags.
#[derive(Debug, Args)]
pub(crate) struct IstioArgs {
    /// ServiceEntry and Service manifests (YAML or JSON): a file, or a directory of them.
    #[arg(long, value_name = "PATH")]
    pub(crate) service_entries: Option<PathBuf>,
    /// Where to listen: `localhost:PORT` (127.0.0.1, and ::1 when resolv.conf has an IPv6 nameserver) or IP:PORT.
    #[arg(long, env = "DNS_PROXY_ADDR", default_value = DEFAULT_PROXY_ADDRESS)]
    pub(crate) proxy_address: String,
    /// Ask every nameserver at once and take the first answer.
    #[arg(long, env = "DNS_FORWARD_PARALLEL", value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set)]
    pub(crate) forward_parallel: bool,
    /// The proxy's namespace: its Services answer to their short names.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub(crate) namespace: String,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub(crate) cluster_domain: String,
    /// Give ServiceEntries without addresses one from 240.240.0.0/16.
    #[arg(long, env = "ISTIO_META_DNS_AUTO_ALLOCATE", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) auto_allocate: bool,
    /// Which istiod allocator: `sequential` (istiod 1.8–1.19, the DNS Proxying
    /// document's 240.240.0.1) or `hashed` (istiod 1.20 on).
    #[arg(long, value_enum, default_value_t = Allocator::Sequential)]
    pub(crate) allocator: Allocator,
    /// The proxy is dual stack: AAAA answers get the hashed allocator's IPv6 addresses.
    #[arg(long, env = "ISTIO_DUAL_STACK", value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set)]
    pub(crate) dual_stack: bool,
}

/// `--allocator`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Allocator {
    Sequential,
    Hashed,
}

impl IstioArgs {
    /// The settings; resolv.conf is the global --resolv-conf, else /etc/resolv.conf.
    pub(crate) fn settings_with(&self, resolv_conf: Option<PathBuf>) -> IstioSettings {
        let defaults = IstioSettings::default();
        IstioSettings {
            proxy_address: self.proxy_address.clone(),
            resolv_conf: resolv_conf.unwrap_or(defaults.resolv_conf),
            manifests: self.service_entries.clone(),
            forward_parallel: self.forward_parallel,
            namespace: self.namespace.clone(),
            cluster_domain: self.cluster_domain.clone(),
            auto_allocate: self.auto_allocate,
            allocator: match self.allocator {
                Allocator::Sequential => IstioAllocator::Sequential,
                Allocator::Hashed => IstioAllocator::Hashed,
            },
            dual_stack: self.dual_stack,
        }
    }
}

impl Cli {
    /// The Istio mode's settings, when that is the command.
    pub(crate) fn istio(&self) -> Option<IstioSettings> {
        match &self.command {
            Some(Command::Istio(istio)) => Some(istio.settings_with(self.resolv_conf.clone())),
            _ => None,
        }
    }

    /// The configuration to serve or check.
    pub(crate) fn source(&self) -> ConfigSource {
        let from_file = match &self.command {
            Some(Command::CheckConfig { file: Some(file), .. }) => Some(file.clone()),
            _ => None,
        };
        let mut source = match (from_file, &self.unbound_conf, &self.config) {
            (Some(file), _, _) => {
                let format =
                    if self.unbound_conf.is_some() { ConfigFormat::Unbound } else { ConfigFormat::of_path(&file) };
                ConfigSource { format, ..ConfigSource::toml(file) }
            }
            (None, Some(file), _) => ConfigSource::unbound(file),
            (None, None, Some(file)) => ConfigSource::toml(file),
            (None, None, None) => ConfigSource::toml(DEFAULT_CONFIG),
        };
        source.ignore_unsupported = self.ignore_unsupported;
        source.resolv_conf.clone_from(&self.resolv_conf);
        source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("signpost-forward").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn sources_follow_the_flags_and_file_names() {
        let source = parse(&["--unbound-conf", "/etc/unbound/unbound.conf", "--ignore-unsupported"]).source();
        assert_eq!((source.format, source.ignore_unsupported), (ConfigFormat::Unbound, true));
        assert_eq!(parse(&["-c", "f.toml"]).source().format, ConfigFormat::Toml);
        assert_eq!(parse(&["check-config", "u.conf"]).source().format, ConfigFormat::Unbound);
        assert_eq!(parse(&["check-config", "f.toml"]).source().format, ConfigFormat::Toml);
        assert_eq!(parse(&["--unbound-conf", "x", "check-config", "f.toml"]).source().format, ConfigFormat::Unbound);
        assert_eq!(parse(&[]).source().path, PathBuf::from(DEFAULT_CONFIG));
        assert!(Cli::try_parse_from(["signpost-forward", "-c", "a.toml", "--unbound-conf", "b.conf"]).is_err());
        let istio =
            parse(&["--resolv-conf", "/tmp/r.conf", "istio", "--service-entries", "se", "--allocator", "hashed"])
                .istio()
                .unwrap();
        assert_eq!(istio.resolv_conf, PathBuf::from("/tmp/r.conf"));
        assert_eq!(istio.allocator, IstioAllocator::Hashed);
        assert_eq!(istio.manifests, Some(PathBuf::from("se")));
    }
}
