//! The command line: which configuration to read and what to do with it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use signpost_forward::{ConfigFormat, ConfigSource};

/// The TOML configuration read when no file is named.
pub(crate) const DEFAULT_CONFIG: &str = "/etc/signpost/forward.toml";

/// A conditional forwarder: forward zones to upstream groups (Do53, DoT,
/// DoH), local zones and host tables answered locally, everything else to
/// the default group. Runs its own TOML configuration or an existing
/// unbound.conf. SIGHUP (or, with --watch-config, a change of the file)
/// reloads the configuration; SIGTERM stops after the lame-duck period.
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
    #[arg(long, value_name = "USER")]
    pub(crate) user: Option<String>,
    /// Reload when the configuration file changes (a Kubernetes ConfigMap's
    /// `..data` swap included), as SIGHUP does: a failed reload keeps the
    /// running configuration.
    #[arg(long, env = "SIGNPOST_WATCH_CONFIG")]
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
}

impl Cli {
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
    }
}
