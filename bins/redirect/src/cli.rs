//! Command line, environment and TOML configuration.
//!
//! Precedence: CLI flag, then environment variable (LocalStack's names),
//! then the `--config` file, then the embedded default configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde::Deserialize;
use signpost_redirect::{RedirectSettings, UPSTREAM_GROUP, loop_free_nameservers};
use signpost_rules::RuleSetBuilder;
use signpost_rules::config::{RulesConfig, SYSTEM_GROUP};
use signpost_server::{AdminConfig, LogDestination, ServerConfig};
use signpost_upstream::{GroupConfig, ResolvConf, ServerConfig as UpstreamServer};

/// The configuration used when `--config` is not given.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("../default.toml");

/// Redirect cloud API names (*.amazonaws.com, ...) to a local emulator and
/// forward every other name upstream, the way LocalStack's DNS server does.
#[derive(Debug, Parser)]
#[command(name = "signpost-redirect", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// After binding every listener, become this user (name or uid): root is
    /// given up for good, keeping only CAP_NET_BIND_SERVICE so listeners
    /// added later can still bind port 53 (docs/reliability.md).
    #[arg(long, global = true, env = "SIGNPOST_USER", value_name = "USER")]
    pub(crate) user: Option<String>,
    /// TOML configuration ([redirect], [server], [rules]); environment and flags override it.
    #[arg(long, global = true, env = "SIGNPOST_REDIRECT_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Address(es) to listen on, comma-separated; 0 disables DNS [default: 0.0.0.0, or 127.0.0.1
    /// when 0.0.0.0 cannot be bound].
    #[arg(long, global = true, env = "DNS_ADDRESS", value_name = "ADDRESS")]
    pub(crate) dns_address: Option<String>,
    /// UDP and TCP port [default: 53; 0 picks a free port].
    #[arg(long, global = true, env = "DNS_PORT", value_name = "PORT")]
    pub(crate) dns_port: Option<String>,
    /// Upstream server(s), `IP` or `IP:port` (no host names), comma-separated, tried in order
    /// [default: the nameservers of /etc/resolv.conf].
    #[arg(long, global = true, env = "DNS_SERVER", value_name = "SERVERS")]
    pub(crate) dns_server: Option<String>,
    /// Address redirected names answer A with [default: the address the query arrived on].
    #[arg(long, global = true, env = "DNS_RESOLVE_IP", value_name = "IPV4")]
    pub(crate) dns_resolve_ip: Option<String>,
    /// Address redirected names answer AAAA with, or `none` [default: like DNS_RESOLVE_IP].
    #[arg(long = "dns-resolve-ipv6", global = true, env = "DNS_RESOLVE_IPV6", value_name = "IPV6")]
    pub(crate) dns_resolve_ipv6: Option<String>,
    /// Only names matching this regex (anchored at the start) are redirected; the rest is forwarded.
    #[arg(long, global = true, env = "DNS_LOCAL_NAME_PATTERNS", value_name = "REGEX")]
    pub(crate) dns_local_name_patterns: Option<String>,
    /// Comma-separated regexes of names that are never redirected.
    #[arg(long, global = true, env = "DNS_NAME_PATTERNS_TO_RESOLVE_UPSTREAM", value_name = "REGEXES")]
    pub(crate) dns_name_patterns_to_resolve_upstream: Option<String>,
    /// The name DNS_SERVER-less start-up asks each resolv.conf nameserver for; the first that answers
    /// is used first [default: localstack.cloud].
    #[arg(long, global = true, env = "DNS_VERIFICATION_DOMAIN", value_name = "NAME")]
    pub(crate) dns_verification_domain: Option<String>,
    /// host[:port] of the emulator: the host name and every name below it are redirected.
    #[arg(long, global = true, env = "LOCALSTACK_HOST", value_name = "HOST[:PORT]")]
    pub(crate) localstack_host: Option<String>,
    /// 1: forward AWS names instead of redirecting them (localhost.localstack.cloud and
    /// LOCALSTACK_HOST still are).
    #[arg(
        long,
        global = true,
        env = "DISABLE_TRANSPARENT_ENDPOINT_INJECTION",
        value_name = "1|0",
        num_args = 0..=1,
        default_missing_value = "1"
    )]
    pub(crate) disable_transparent_endpoint_injection: Option<String>,
    /// Comma-separated redirected domains
    /// [default: amazonaws.com,aws.amazon.com,cloudfront.net,localhost.localstack.cloud].
    #[arg(long, global = true, env = "SIGNPOST_REDIRECT_DOMAINS", value_name = "DOMAINS")]
    pub(crate) redirect_domains: Option<String>,
    /// TTL of redirected answers and run-time records, seconds [default: 300].
    #[arg(long, global = true, env = "SIGNPOST_REDIRECT_TTL", value_name = "SECONDS")]
    pub(crate) ttl: Option<String>,
    /// The system's resolv.conf: default upstreams, and the resolver `check` tests [default: /etc/resolv.conf].
    #[arg(long, global = true, env = "SIGNPOST_RESOLV_CONF", value_name = "FILE")]
    pub(crate) resolv_conf: Option<PathBuf>,
    /// Serve the admin API (JSON under /redirect, /metrics) on this address, e.g. 127.0.0.1:9153.
    #[arg(long, global = true, env = "SIGNPOST_ADMIN", value_name = "ADDRESS")]
    pub(crate) admin: Option<SocketAddr>,
    /// Serve the Route 53 API on this address; its hosted zones are answered over DNS [default: off].
    #[arg(long, global = true, env = "SIGNPOST_REDIRECT_API", value_name = "ADDRESS")]
    pub(crate) api: Option<String>,
    /// Keep the Route 53 API's state in this directory, so hosted zones survive a restart.
    #[arg(long, global = true, env = "SIGNPOST_REDIRECT_STATE", value_name = "DIR")]
    pub(crate) state: Option<PathBuf>,
    /// Log every query as a JSON line to `stdout` or a file [default: off].
    #[arg(long, global = true, env = "SIGNPOST_QUERY_LOG", value_name = "DESTINATION")]
    pub(crate) query_log: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Route only the redirected domains to Signpost in systemd-resolved (resolvectl).
    SystemdResolved {
        /// The link to configure [default: the interface of the default route].
        #[arg(long, value_name = "IFACE")]
        interface: Option<String>,
        /// Undo it (`resolvectl revert IFACE`).
        #[arg(long)]
        revert: bool,
        /// Print the resolvectl commands instead of running them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check the redirection end to end: Signpost directly, then the system resolver.
    Check,
    /// Print the embedded default configuration (a starting point for --config).
    DefaultConfig,
}

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// LocalStack's settings.
    #[serde(default)]
    redirect: RedirectSettings,
    /// Extra listeners (DoH, DoT), cache, query log, limits, EDNS, admin.
    #[serde(default)]
    server: ServerConfig,
    /// Extra local data and rules: host tables, zones, forward rules.
    #[serde(default)]
    rules: Option<RulesConfig>,
}

/// Everything the subcommands need, with precedence applied.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) settings: RedirectSettings,
    pub(crate) server: ServerConfig,
    pub(crate) rules: RuleSetBuilder,
    pub(crate) groups: Vec<GroupConfig>,
}

impl Cli {
    /// The environment/flag values by LocalStack variable name.
    fn overrides(&self) -> Vec<(&'static str, String)> {
        let mut values = Vec::new();
        let mut add = |name: &'static str, value: &Option<String>| {
            if let Some(value) = value {
                values.push((name, value.clone()));
            }
        };
        add("DNS_ADDRESS", &self.dns_address);
        add("DNS_PORT", &self.dns_port);
        add("DNS_SERVER", &self.dns_server);
        add("DNS_RESOLVE_IP", &self.dns_resolve_ip);
        add("DNS_RESOLVE_IPV6", &self.dns_resolve_ipv6);
        add("DNS_LOCAL_NAME_PATTERNS", &self.dns_local_name_patterns);
        add("DNS_NAME_PATTERNS_TO_RESOLVE_UPSTREAM", &self.dns_name_patterns_to_resolve_upstream);
        add("DNS_VERIFICATION_DOMAIN", &self.dns_verification_domain);
        add("LOCALSTACK_HOST", &self.localstack_host);
        add("DISABLE_TRANSPARENT_ENDPOINT_INJECTION", &self.disable_transparent_endpoint_injection);
        add("SIGNPOST_REDIRECT_DOMAINS", &self.redirect_domains);
        add("SIGNPOST_REDIRECT_TTL", &self.ttl);
        if let Some(path) = &self.resolv_conf {
            values.push(("SIGNPOST_RESOLV_CONF", path.display().to_string()));
        }
        if let Some(api) = &self.api {
            values.push(("SIGNPOST_REDIRECT_API", api.clone()));
        }
        if let Some(path) = &self.state {
            values.push(("SIGNPOST_REDIRECT_STATE", path.display().to_string()));
        }
        values
    }

    /// Read the configuration file (or the embedded default) and apply the
    /// environment and flags over it.
    pub(crate) fn load(&self) -> Result<Loaded, String> {
        let (text, file) = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
                (text, path.clone())
            }
            None => (DEFAULT_CONFIG.to_owned(), PathBuf::from("(embedded default configuration)")),
        };
        let base_dir = match &self.config {
            Some(path) => path.parent().map(Path::to_path_buf).unwrap_or_default(),
            None => PathBuf::from("."),
        };
        let parsed: FileConfig = toml::from_str(&text).map_err(|error| format!("{}: {error}", file.display()))?;
        let FileConfig { redirect: mut settings, mut server, rules } = parsed;
        for (variable, value) in self.overrides() {
            settings.set(variable, &value).map_err(|error| error.to_string())?;
        }
        if let Some(admin) = self.admin {
            server.admin = Some(AdminConfig { address: admin });
        }
        if let Some(destination) = &self.query_log {
            server.query_log.enabled = true;
            server.query_log.destination = match destination.as_str() {
                "stdout" | "-" => LogDestination::Stdout,
                path => LogDestination::File(PathBuf::from(path)),
            };
        }
        let (rules, groups) = match rules {
            None => (RuleSetBuilder::new(), Vec::new()),
            Some(mut rules) => {
                rules.set_source(&file, &text, "rules");
                if rules.default_group.is_some() {
                    return Err(format!(
                        "{}: rules.default_group is not used by signpost-redirect: names outside the redirected \
                         domains go to DNS_SERVER (the group {UPSTREAM_GROUP:?})",
                        file.display()
                    ));
                }
                let builder = rules.to_builder(&base_dir, &[UPSTREAM_GROUP]).map_err(|error| error.to_string())?;
                let mut groups = Vec::new();
                for implied in rules.implied_groups().map_err(|error| error.to_string())? {
                    let servers = implied.targets.iter().map(|target| UpstreamServer::udp(*target)).collect();
                    groups.push(GroupConfig::new(implied.name, servers));
                }
                let mut system = rules.system_nameservers().map_err(|error| error.to_string())?;
                if let Some(file) = rules.system_resolv_conf(&base_dir) {
                    let conf = ResolvConf::load(&file).map_err(|error| format!("rules.system.resolv_conf: {error}"))?;
                    system = conf.nameservers;
                    // When the system resolver points at us, resolv.conf names
                    // us (or a loopback stub that forwards to us): leave those
                    // out, as for the default upstreams, or queries would loop.
                    let (kept, skipped) = loop_free_nameservers(&system, &file, &settings.own_addresses());
                    for skip in skipped {
                        tracing::info!(
                            "rules.system: nameserver {} in {} left out: {}",
                            skip.address,
                            skip.file.display(),
                            skip.reason
                        );
                    }
                    system = kept;
                }
                if !system.is_empty() {
                    let servers = system.iter().map(|server| UpstreamServer::udp(*server)).collect();
                    groups.push(GroupConfig::new(SYSTEM_GROUP, servers));
                }
                (builder, groups)
            }
        };
        Ok(Loaded { settings, server, rules, groups })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec!["signpost-redirect"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("valid arguments")
    }

    #[test]
    fn the_embedded_default_configuration_loads() {
        let loaded = Cli { config: None, ..cli(&[]) }.load().expect("loads");
        assert_eq!(loaded.settings, RedirectSettings::default());
        assert!(loaded.server.admin.is_none());
        assert!(!loaded.server.query_log.enabled, "forwarded queries are not logged by default");
    }

    #[test]
    fn flags_override_the_file() {
        let path = std::env::temp_dir().join(format!("signpost-redirect-config-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "[redirect]\nport = 5300\nresolve_ip = \"10.9.9.9\"\nttl = 30\n\n[rules]\n[[rules.host_tables]]\nname = \
             \"extra\"\nhosts = [{ name = \"db.test\", addresses = [\"10.0.0.5\"] }]\n",
        )
        .expect("write");
        let loaded = cli(&["--config", path.to_str().expect("utf-8"), "--dns-resolve-ip", "10.1.1.1", "--ttl", "5"])
            .load()
            .expect("loads");
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(loaded.settings.port, 5300);
        assert_eq!(loaded.settings.ttl, 5);
        assert_eq!(loaded.settings.resolve_ip, signpost_rules::AddressSource::Fixed([10, 1, 1, 1].into()));
        assert_eq!(loaded.rules.host_tables().count(), 1);
    }

    /// A directory of the test's own with `redirect.toml` (rules forwarding
    /// corp.example to the `system` group) and `resolv.conf`.
    struct SystemFiles(PathBuf);

    impl SystemFiles {
        fn new(tag: &str, system: &str, resolv_conf: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("signpost-redirect-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("dir");
            std::fs::write(dir.join("resolv.conf"), resolv_conf).expect("write resolv.conf");
            let config = format!(
                "[rules]\n[rules.system]\n{system}\n\n[[rules.rules]]\nsuffix = \"corp.example\"\naction = \
                 \"forward\"\ngroup = \"system\"\n"
            );
            std::fs::write(dir.join("redirect.toml"), config).expect("write redirect.toml");
            Self(dir)
        }

        fn system_group(&self, address: &str, port: &str) -> Option<Vec<SocketAddr>> {
            let config = self.0.join("redirect.toml");
            let loaded =
                cli(&["--config", config.to_str().expect("utf-8"), "--dns-address", address, "--dns-port", port])
                    .load()
                    .expect("loads");
            let group = loaded.groups.iter().find(|group| group.name == SYSTEM_GROUP)?;
            Some(group.servers.iter().map(|server| server.address).collect())
        }
    }

    impl Drop for SystemFiles {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn addresses(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|text| text.parse().expect("address")).collect()
    }

    #[test]
    fn the_system_group_from_resolv_conf_leaves_out_ourselves_and_loopback_stubs() {
        let files = SystemFiles::new(
            "system-loop",
            "resolv_conf = \"resolv.conf\"",
            "nameserver 198.51.100.53\nnameserver 127.0.0.53\nnameserver 198.51.100.1\n",
        );
        // Listening on 198.51.100.53:53, resolv.conf names us: left out, as is systemd's stub.
        assert_eq!(files.system_group("198.51.100.53", "53"), Some(addresses(&["198.51.100.1:53"])));
        // On another port 198.51.100.53:53 is some other server; the stub still loops.
        assert_eq!(
            files.system_group("198.51.100.53", "5353"),
            Some(addresses(&["198.51.100.53:53", "198.51.100.1:53"]))
        );
        // A wildcard listener on port 53 is reached through loopback and this machine's own
        // addresses, not through other machines'.
        assert_eq!(files.system_group("0.0.0.0", "53"), Some(addresses(&["198.51.100.53:53", "198.51.100.1:53"])));

        // Nothing but us and stubs: no system group at all (its rules get SERVFAIL), never a loop.
        let only_us = SystemFiles::new(
            "system-only-us",
            "resolv_conf = \"resolv.conf\"",
            "nameserver 127.0.0.1\nnameserver 127.0.0.53\nnameserver ::1\n",
        );
        assert_eq!(only_us.system_group("127.0.0.1", "53"), None);
    }

    #[test]
    fn listed_system_nameservers_are_kept_as_given() {
        // A local resolver on a loopback port is a deliberate choice, like DNS_SERVER.
        let files = SystemFiles::new("system-listed", "nameservers = [\"127.0.0.1:5300\"]", "nameserver 127.0.0.1\n");
        assert_eq!(files.system_group("127.0.0.1", "53"), Some(addresses(&["127.0.0.1:5300"])));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let error = cli(&["--dns-port", "fifty"]).load().expect_err("bad port");
        assert!(error.contains("DNS_PORT"), "{error}");
        let error = cli(&["--dns-server", "dns.google"]).load().expect_err("host name");
        assert!(error.contains("DNS_SERVER"), "{error}");
    }
}
