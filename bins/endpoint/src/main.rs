//! signpost-endpoint: an emulator of Amazon Route 53 Resolver, a thin
//! binary over `signpost_endpoint` (the program is `service::Service`).
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![allow(clippy::result_large_err, reason = "configuration errors carry file, line and field; a cold path")]

mod cli;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use signpost_endpoint::EndpointConfig;
use signpost_endpoint::live::Report;
use signpost_endpoint::service::{Service, export_state, fetch_export, listener_line};
use signpost_server::watch::{self, FileWatcher};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cli::{Cli, Command};

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
    let deployment = EndpointConfig::load(file)
        .and_then(|config| config.certificates_from_state_directory().compile())
        .map_err(|e| e.to_string())?;
    print!("{}", deployment.describe());
    println!("{}: OK", file.display());
    Ok(())
}

fn say(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

fn report(report: Report) {
    match report {
        Report::Listening(listener) => say(&listener_line(&listener)),
        Report::Stopped { id, address } => say(&format!("stopped {id} {address}")),
        Report::CertificateAuthority(file) => {
            say(&format!("tls ca {} (DoH certificates of endpoints given none)", file.display()))
        }
        _ => {}
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    runtime.block_on(async {
        // Before "ready": a SIGHUP sent as soon as it appears must reload, not
        // end the process (the default action until a handler is installed).
        let signals = Signals::install().map_err(|error| format!("cannot catch signals: {error}"))?;
        let service = Service::start(cli.options(), report).await.map_err(|error| error.to_string())?;
        if let Some(user) = &cli.user {
            match signpost_server::drop_privileges(user) {
                Ok(account) => say(&format!("running as {user} (uid {}, gid {})", account.uid, account.gid)),
                Err(error) => {
                    service.shutdown().await;
                    return Err(error.to_string());
                }
            }
        }
        let mut watcher = match (&cli.config, cli.watch_config) {
            (Some(file), true) if cli.api.is_none() && cli.state.is_none() => {
                Some(FileWatcher::new(file).map_err(|error| error.to_string())?)
            }
            (_, true) => return Err("--watch-config needs --config FILE without --api and --state".into()),
            _ => None,
        };
        if let Some(admin) = service.admin_address().await {
            say(&format!("admin http://{admin}/metrics"));
        }
        if let Some(api) = service.api_address() {
            say(&format!("api http://{api}"));
        }
        if let Some(address) = service.probes().health_addr() {
            say(&format!("health http://{address}/health"));
        }
        if let Some(address) = service.probes().ready_addr() {
            say(&format!("ready http://{address}/ready"));
        }
        if let Some(state) = &cli.state {
            say(&format!("state {}", state.display()));
        }
        if let Some(file) = &cli.config {
            loaded(&service, file, watch::file_version(file).ok()).await;
        }
        say("ready");
        let outcome = serve(&service, signals, watcher.as_mut()).await.map_err(|error| error.to_string());
        service.shutdown().await;
        outcome
    })
}

/// Report the configuration version in force, in the metric and the log.
async fn loaded(service: &Service, file: &Path, version: Option<String>) {
    let Some(version) = version else { return };
    service.set_config_version(&version).await;
    tracing::info!(%version, file = %file.display(), "configuration version {version} in force");
}

/// SIGHUP, SIGTERM and SIGINT, caught from the moment this is made.
struct Signals {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }
}

/// Reload on SIGHUP (and, when watching, on a change of the file) until
/// SIGTERM, which starts the lame-duck period, or SIGINT.
async fn serve(service: &Service, signals: Signals, mut watcher: Option<&mut FileWatcher>) -> std::io::Result<()> {
    let Signals { mut hangup, mut terminate, mut interrupt } = signals;
    loop {
        let changed = async {
            match watcher.as_deref_mut() {
                Some(watcher) => watcher.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = hangup.recv() => reload(service, "SIGHUP").await,
            Some(_) = changed => reload(service, "file change").await,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => return Ok(()),
        }
    }
    let probes = service.probes();
    if !probes.lame_duck_period().is_zero() {
        probes.readiness().enter_lame_duck();
        tracing::info!(
            "lame duck for {:?}: answering DNS and /health, /ready fails; a second signal stops at once",
            probes.lame_duck_period()
        );
        tokio::select! {
            _ = probes.lame_duck() => {}
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    }
    Ok(())
}

async fn reload(service: &Service, cause: &str) {
    match service.reload_file().await {
        Ok((file, outcome)) => {
            match outcome {
                Some(signpost_endpoint::Reloaded::Restarted) => {
                    say(&format!("reloaded {}: listeners changed, server restarted", file.display()));
                    say("ready");
                }
                _ => say(&format!("reloaded {}: zones, rules and targets swapped in place", file.display())),
            }
            tracing::info!("configuration reloaded from {} ({cause})", file.display());
            loaded(service, &file, watch::file_version(&file).ok()).await;
        }
        Err(error) => {
            eprintln!("signpost-endpoint: reload rejected ({cause}), the previous configuration keeps serving: {error}")
        }
    }
}
