//! signpost-endpoint: an emulator of Amazon Route 53 Resolver, a thin
//! binary over `signpost_endpoint`.
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![allow(clippy::result_large_err, reason = "configuration errors carry file, line and field; a cold path")]

mod cli;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use signpost_endpoint::{Endpoint, EndpointConfig, ListenerRole, Reloaded};
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match (cli.command, cli.config) {
        (Some(Command::CheckConfig { file }), _) => check_config(&file),
        (None, Some(file)) => run(&file),
        (None, None) => {
            eprintln!("signpost-endpoint: give --config FILE to serve, or `check-config FILE` (see --help)");
            ExitCode::from(2)
        }
    }
}

fn check_config(file: &Path) -> ExitCode {
    match EndpointConfig::load(file).and_then(|config| config.compile()) {
        Ok(deployment) => {
            print!("{}", deployment.describe());
            println!("{}: OK", file.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("signpost-endpoint: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(file: &Path) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("signpost-endpoint: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let started = match EndpointConfig::load(file) {
            Ok(config) => Endpoint::start(config).await,
            Err(error) => Err(error),
        };
        let mut endpoint = match started {
            Ok(endpoint) => endpoint,
            Err(error) => {
                eprintln!("signpost-endpoint: {error}");
                return ExitCode::FAILURE;
            }
        };
        print_listeners(&endpoint);
        match serve(&mut endpoint, file).await {
            Ok(()) => {
                endpoint.shutdown().await;
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("signpost-endpoint: {error}");
                endpoint.shutdown().await;
                ExitCode::FAILURE
            }
        }
    })
}

/// Reload on SIGHUP until SIGTERM or SIGINT.
async fn serve(endpoint: &mut Endpoint, file: &Path) -> std::io::Result<()> {
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                let outcome = match EndpointConfig::load(file) {
                    Ok(next) => endpoint.reload(next).await,
                    Err(error) => Err(error),
                };
                match outcome {
                    Ok(Reloaded::InPlace) => println!("reloaded {}: zones, rules and targets swapped in place", file.display()),
                    Ok(Reloaded::Restarted) => {
                        println!("reloaded {}: listeners changed, server restarted", file.display());
                        print_listeners(endpoint);
                    }
                    Err(error) => eprintln!("signpost-endpoint: reload rejected, the previous configuration keeps serving: {error}"),
                }
                let _ = std::io::stdout().flush();
            }
            _ = terminate.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
        }
    }
}

/// One line per listener: `listening ID TRANSPORT ADDRESS PROTOCOL what`.
fn print_listeners(endpoint: &Endpoint) {
    for listener in endpoint.listeners() {
        let role = match &listener.role {
            ListenerRole::VpcResolver { vpc } => format!("VPC resolver of {vpc}"),
            ListenerRole::InboundEndpoint { endpoint, vpc } => format!("inbound endpoint {endpoint} of {vpc}"),
        };
        let url = listener.url.map(|url| format!(" {url}")).unwrap_or_default();
        println!(
            "listening {} {} {} {} {role}{url}",
            listener.id,
            listener.transport.as_str(),
            listener.address,
            listener.protocol
        );
    }
    if let Some(admin) = endpoint.server().admin_addr() {
        println!("admin http://{admin}/metrics");
    }
    println!("ready");
    let _ = std::io::stdout().flush();
}
