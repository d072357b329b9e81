//! signpost-endpoint: an emulator of Amazon Route 53 Resolver, a thin
//! binary over `signpost_endpoint` (the program is `service::Service`).
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![allow(clippy::result_large_err, reason = "configuration errors carry file, line and field; a cold path")]

mod cli;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use signpost_endpoint::EndpointConfig;
use signpost_endpoint::runtime::{self, RunOptions};
use signpost_endpoint::service::{export_state, fetch_export};
use signpost_server::handover;

use crate::cli::{Cli, Command};

/// mimalloc (crates/allocator) instead of glibc's malloc: a forwarder keeps hundreds of queries
/// in flight, each with a few small allocations, and glibc's per-thread
/// cache (7 chunks per size) overflows into its slow path; see
/// docs/performance.md.
#[global_allocator]
static ALLOCATOR: signpost_allocator::Allocator = signpost_allocator::Allocator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let result = match &cli.command {
        Some(Command::CheckConfig { file }) => check_config(file),
        Some(Command::Export { from: Some(url) }) => {
            fetch_export(url).map(|text| print!("{text}")).map_err(|e| e.to_string())
        }
        Some(Command::Export { from: None }) => match &cli.state {
            Some(state) => export_state(state, &cli.options()).map(|text| print!("{text}")).map_err(|e| e.to_string()),
            None => {
                Err("export needs --state DIR (a stopped endpoint's) or --from http://ADDR (a running one's)".into())
            }
        },
        None if cli.config.is_none() && cli.api.is_none() && cli.state.is_none() => {
            eprintln!(
                "signpost-endpoint: give --config FILE, or --api ADDR [--state DIR], or `check-config FILE` (see --help)"
            );
            return ExitCode::from(2);
        }
        None => run(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("signpost-endpoint: {error}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &Path) -> Result<(), String> {
    let config = EndpointConfig::load(file).map_err(|e| e.to_string())?;
    let warnings = config.warnings();
    let deployment = config.certificates_from_state_directory().compile().map_err(|e| e.to_string())?;
    print!("{}", deployment.describe());
    for warning in warnings {
        println!("warning: {warning}");
    }
    println!("{}: OK", file.display());
    Ok(())
}

fn say(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

fn run(cli: &Cli) -> Result<(), String> {
    // Before anything binds: sockets from systemd or from a predecessor
    // handing over (SIGUSR2).
    let inherited = handover::inherit_from_environment().map_err(|error| error.to_string())?;
    if inherited.sockets > 0 {
        say(&inherited.to_string());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    let options = RunOptions { service: cli.options(), user: cli.user.clone(), watch_config: cli.watch_config };
    runtime.block_on(runtime::run(options, Arc::new(say))).map_err(|error| error.to_string())
}
