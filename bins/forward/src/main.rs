//! signpost-forward: a conditional forwarder over `signpost_server`. Names
//! under forward zones go to their upstream groups, local zones and host
//! tables answer locally, the rest goes to the default group. Reads its own
//! TOML (docs/configuration.md) or an existing unbound.conf; `istio` runs
//! as Istio's DNS proxy (docs/istio.md).
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "printing is this binary's job")]

mod cli;

use std::io;
use std::process::ExitCode;

use clap::Parser;
use signpost_forward::runtime::{self, Service};
use signpost_forward::{ConfigSource, Warning};
use signpost_server::handover;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

/// mimalloc (crates/allocator) instead of glibc's malloc: a forwarder keeps hundreds of queries
/// in flight, each with a few small allocations, and glibc's per-thread
/// cache (7 chunks per size) overflows into its slow path; see
/// docs/performance.md.
#[global_allocator]
static ALLOCATOR: signpost_allocator::Allocator = signpost_allocator::Allocator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_writer(io::stderr).with_env_filter(log_filter).init();
    let source = cli.source();
    let (service, warnings) = match &cli.command {
        Some(Command::CheckConfig { print_toml, .. }) => return check_config(&source, *print_toml),
        Some(Command::Istio(_)) => {
            let Some(settings) = cli.istio() else { return ExitCode::FAILURE };
            match settings.build() {
                Ok(proxy) => {
                    for (host, addresses) in proxy.table.entries() {
                        let addresses: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                        println!("istio host {host} {}", addresses.join(" "));
                    }
                    let warnings = proxy.forwarder.warnings.clone();
                    (proxy.into_service(settings, cli.watch_config), warnings)
                }
                Err(error) => return failed("Istio mode", &error),
            }
        }
        None => match source.build(None, true) {
            Ok(forwarder) => {
                let warnings = forwarder.warnings.clone();
                (source.service(forwarder, cli.watch_config), warnings)
            }
            Err(error) => return failed(&source.path.display().to_string(), &error),
        },
    };
    let service = Service { user: cli.user.clone(), ..service };
    for warning in &warnings {
        match warning {
            Warning::Ignored { .. } => tracing::info!("{warning}"),
            _ => tracing::warn!("{warning}"),
        }
    }
    serve(service)
}

fn failed(what: &str, error: &dyn std::error::Error) -> ExitCode {
    eprintln!("error: {what}: {error}");
    ExitCode::from(2)
}

fn serve(service: Service) -> ExitCode {
    // Before any thread starts and anything binds: sockets from systemd or
    // from a predecessor handing over (SIGUSR2).
    match handover::inherit_from_environment() {
        Ok(inherited) if inherited.sockets > 0 => println!("{inherited}"),
        Ok(_) => {}
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(async { runtime::run(service, &mut io::stdout()).await }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Validate and print the effective rules.
fn check_config(source: &ConfigSource, print_toml: bool) -> ExitCode {
    let forwarder = match source.build(None, false) {
        Ok(forwarder) => forwarder,
        Err(error) => {
            eprintln!("{}: invalid configuration\n{error}", source.path.display());
            return ExitCode::FAILURE;
        }
    };
    println!("{}: OK ({:?})", source.path.display(), source.format);
    for warning in &forwarder.warnings {
        let kind = if matches!(warning, Warning::Ignored { .. }) { "note" } else { "warning" };
        println!("{kind}: {warning}");
    }
    print!("{}", forwarder.describe());
    if print_toml {
        match source.load() {
            Ok((config, _)) => print!("\n# equivalent TOML\n{}", config.to_toml()),
            Err(error) => eprintln!("{error}"),
        }
    }
    ExitCode::SUCCESS
}
