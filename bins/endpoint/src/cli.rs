//! Command line and configuration loading.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// An emulator of Amazon Route 53 Resolver: VPC resolvers, private hosted
/// zones, resolver rules, inbound and outbound endpoints (Do53 and DoH),
/// query logs and the service's rate limits, on one machine.
#[derive(Debug, Parser)]
#[command(name = "signpost-endpoint", version, about, long_about = None)]
pub(crate) struct Cli {
    /// The configuration file to serve (see docs/endpoint.md).
    #[arg(long, short, env = "SIGNPOST_ENDPOINT_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
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
}
