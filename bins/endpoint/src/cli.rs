//! Command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use signpost_endpoint::HostPort;
use signpost_endpoint::service::ServiceOptions;

/// An emulator of Amazon Route 53 Resolver: VPC resolvers, private hosted
/// zones, resolver rules, inbound and outbound endpoints (Do53 and DoH),
/// query logs and the service's rate limits, on one machine, configured by
/// a TOML file and/or the AWS APIs (route53resolver, route53, ec2).
#[derive(Debug, Parser)]
#[command(name = "signpost-endpoint", version, about, long_about = None)]
pub(crate) struct Cli {
    /// A configuration file (docs/endpoint.md): settings, and the resources
    /// an empty state starts with. Alone, it is the whole model (SIGHUP reloads it).
    #[arg(long, short, env = "SIGNPOST_ENDPOINT_CONFIG", value_name = "FILE", global = true)]
    pub(crate) config: Option<PathBuf>,
    /// Serve the AWS APIs on this address (docs/endpoint-api.md), e.g. 127.0.0.1:4566.
    #[arg(long, value_name = "ADDR")]
    pub(crate) api: Option<SocketAddr>,
    /// Keep the model in this directory: every successful API call is written
    /// durably before it is answered, and a restart with the same directory
    /// starts where the last run stopped.
    #[arg(long, value_name = "DIR", global = true)]
    pub(crate) state: Option<PathBuf>,
    /// Port of VPC resolvers and Do53 inbound endpoints (default 53).
    #[arg(long, value_name = "N")]
    pub(crate) dns_port: Option<u16>,
    /// DoH port of inbound endpoints (default 443).
    #[arg(long, value_name = "N")]
    pub(crate) doh_port: Option<u16>,
    /// A server of the recursive default (repeatable; default /etc/resolv.conf's).
    #[arg(long, value_name = "IP[:PORT]")]
    pub(crate) recursive: Vec<HostPort>,
    /// How long new resources report CREATING / PENDING, in milliseconds (default 200).
    #[arg(long, value_name = "MS")]
    pub(crate) status_delay_ms: Option<u64>,
    /// Lift AWS's service quotas (VPCs, endpoints, rules, records...).
    #[arg(long)]
    pub(crate) no_quotas: bool,
    /// CA certificates (PEM) that outbound endpoints trust for DoH targets,
    /// besides the system's roots (AWS trusts public CAs only; a local test
    /// CA needs this).
    #[arg(long, value_name = "FILE")]
    pub(crate) outbound_ca: Option<PathBuf>,
    /// After binding every listener, become this user (name or uid): root is
    /// given up for good, keeping only CAP_NET_BIND_SERVICE so listeners
    /// added later can still bind port 53 (docs/reliability.md).
    #[arg(long, value_name = "USER")]
    pub(crate) user: Option<String>,
    /// Reload when the configuration file changes (a Kubernetes ConfigMap's
    /// `..data` swap included), as SIGHUP does; only where the file is the
    /// whole model (no --api, no --state).
    #[arg(long, env = "SIGNPOST_WATCH_CONFIG")]
    pub(crate) watch_config: bool,
    /// Whether `/ready` waits for the upstreams, overriding `[ready]
    /// require_upstream` of the file (the Helm chart's `readyRequiresUpstream`
    /// sets it; without `[ready]` there is no `/ready` to change).
    #[arg(long, env = "SIGNPOST_READY_REQUIRE_UPSTREAM", value_name = "BOOL")]
    pub(crate) ready_require_upstream: Option<bool>,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Validate a configuration and print, per VPC, which domains go where.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
    /// Print the model as TOML that loads back to the same model: of a
    /// running endpoint (`--from http://ADDR`, its --api address) or of a
    /// state directory no process holds (`--state DIR`).
    Export {
        /// The API address of a running signpost-endpoint.
        #[arg(long, value_name = "URL")]
        from: Option<String>,
    },
}

impl Cli {
    pub(crate) fn options(&self) -> ServiceOptions {
        ServiceOptions {
            config: self.config.clone(),
            api: self.api,
            state: self.state.clone(),
            dns_port: self.dns_port,
            doh_port: self.doh_port,
            recursive: self.recursive.clone(),
            status_delay_ms: self.status_delay_ms,
            no_quotas: self.no_quotas,
            outbound_ca: self.outbound_ca.clone(),
            ready_require_upstream: self.ready_require_upstream,
        }
    }
}
