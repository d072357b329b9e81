//! signpost-forward: a conditional forwarder over `signpost_server`. Names
//! under forward zones go to their upstream groups, local zones and host
//! tables answer locally, the rest goes to the default group. Reads its own
//! TOML (docs/configuration.md) or an existing unbound.conf.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "printing is this binary's job")]

mod cli;

use std::io;
use std::process::ExitCode;

use clap::Parser;
use signpost_forward::{ConfigSource, Forwarder, Warning};
use signpost_server::{Server, ServerHandle};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let source = cli.source();
    match cli.command {
        Some(Command::CheckConfig { print_toml, .. }) => check_config(&source, print_toml),
        None => serve(&source),
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

fn serve(source: &ConfigSource) -> ExitCode {
    let forwarder = match source.build(None, true) {
        Ok(forwarder) => forwarder,
        Err(error) => {
            eprintln!("error: {}: {error}", source.path.display());
            return ExitCode::from(2);
        }
    };
    for warning in &forwarder.warnings {
        match warning {
            Warning::Ignored { .. } => tracing::info!("{warning}"),
            _ => tracing::warn!("{warning}"),
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(source, forwarder))
}

async fn run(source: &ConfigSource, forwarder: Forwarder) -> ExitCode {
    let reloader = source.reloader(&forwarder);
    let Forwarder { rules, upstreams, server: config, routes, default_route, validator, .. } = forwarder;
    let mut builder = Server::builder().config(config).rules(rules).upstreams(upstreams).reloader(reloader);
    if let Some(validator) = validator {
        builder = builder.validator(validator);
    }
    let started = builder.start().await;
    let server = match started {
        Ok(server) => server,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Signal handlers before "ready": a SIGHUP right after start-up must reload, not kill.
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("error: signal handling: {error}");
            return ExitCode::FAILURE;
        }
    };
    for listener in server.listeners() {
        println!("listening on {} {}", listener.transport.as_str(), listener.address);
    }
    if let Some(admin) = server.admin_addr() {
        println!("admin API on http://{admin}/ (metrics at /metrics)");
    }
    for route in &routes {
        println!("forward zone {route}");
    }
    match &default_route {
        Some(route) => println!("default {route}"),
        None => println!("default: none (names no zone matches are REFUSED)"),
    }
    println!("ready");
    signals.serve(&server, source).await;
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// SIGHUP reloads; SIGTERM and SIGINT stop.
struct Signals {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    fn install() -> io::Result<Self> {
        Ok(Self {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    async fn serve(mut self, server: &ServerHandle, source: &ConfigSource) {
        loop {
            tokio::select! {
                _ = self.hangup.recv() => match server.reload_from_source().await {
                    Ok(_) => tracing::info!("configuration reloaded from {}", source.path.display()),
                    Err(error) => tracing::error!("reload failed, the running configuration stays: {error}"),
                },
                _ = self.terminate.recv() => return,
                _ = self.interrupt.recv() => return,
            }
        }
    }
}
