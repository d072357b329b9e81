//! signpost-forward: a conditional forwarder over `signpost_server`. Names
//! under forward zones go to their upstream groups, local zones and host
//! tables answer locally, the rest goes to the default group. Reads its own
//! TOML (docs/configuration.md) or an existing unbound.conf.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "printing is this binary's job")]

mod cli;

use std::io;
use std::process::ExitCode;

use clap::Parser;
use std::path::Path;
use std::sync::Arc;

use signpost_forward::control::ControlContext;
use signpost_forward::{AuthZone, ConfigSource, Forwarder, Warning};
use signpost_rules::{Zone, ZoneSpec};
use signpost_server::transfer::{Publish, SecondaryTask, SecondaryZone, TransferPolicy, ZoneTransfers};
use signpost_server::watch::{self, FileWatcher};
use signpost_server::{Probes, Readiness, Server, ServerHandle};
use signpost_upstream::TransferClient;
use signpost_wire::NameBuf;
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
        None => serve(&source, cli.watch_config, cli.user.as_deref()),
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

fn serve(source: &ConfigSource, watch_config: bool, user: Option<&str>) -> ExitCode {
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
    runtime.block_on(run(source, forwarder, watch_config, user))
}

/// The readiness check passed once the DNS listeners are bound.
const LISTENERS_CHECK: &str = "listeners";

async fn run(source: &ConfigSource, forwarder: Forwarder, watch_config: bool, user: Option<&str>) -> ExitCode {
    let reloader = source.reloader(&forwarder);
    let Forwarder {
        rules,
        upstreams,
        server: config,
        routes,
        default_route,
        remote_control,
        auth_zones,
        validator,
        health,
        ready,
        ..
    } = forwarder;
    // The probes answer from the start: /ready says what is still missing.
    let readiness = Readiness::new();
    readiness.require(LISTENERS_CHECK);
    let probes = match Probes::start(health.as_ref(), ready.as_ref(), readiness.clone()).await {
        Ok(probes) => probes,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let transfers = Arc::new(ZoneTransfers::new());
    let mut builder = Server::builder().config(config).rules(rules).upstreams(upstreams).reloader(reloader);
    if !auth_zones.is_empty() {
        builder = builder.query_handler(transfers.clone());
    }
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
    if let Some(user) = user {
        match signpost_server::drop_privileges(user) {
            Ok(account) => println!("running as {user} (uid {}, gid {})", account.uid, account.gid),
            Err(error) => {
                eprintln!("error: {error}");
                server.shutdown().await;
                return ExitCode::FAILURE;
            }
        }
    }
    readiness.mark_ready(LISTENERS_CHECK);
    // Signal handlers before "ready": a SIGHUP right after start-up must reload, not kill.
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("error: signal handling: {error}");
            return ExitCode::FAILURE;
        }
    };
    let watcher = if watch_config {
        match FileWatcher::new(&source.path) {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    for listener in server.listeners() {
        println!("listening on {} {}", listener.transport.as_str(), listener.address);
    }
    if let Some(admin) = server.admin_addr() {
        println!("admin API on http://{admin}/ (metrics at /metrics)");
    }
    let mut control_task = None;
    if let Some(control) = remote_control {
        let context = ControlContext { server: server.clone(), started: std::time::Instant::now() };
        for path in &control.sockets {
            println!("remote control on {}", path.display());
        }
        for address in &control.addresses {
            println!("remote control on {address}");
        }
        let task = tokio::spawn(async move { signpost_forward::control::serve(&control, context).await });
        // A socket that cannot be bound fails start-up, as in Unbound.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if task.is_finished() {
            match task.await {
                Ok(Err(error)) => eprintln!("error: remote control: {error}"),
                _ => eprintln!("error: remote control stopped"),
            }
            server.shutdown().await;
            return ExitCode::FAILURE;
        }
        control_task = Some(task);
    }
    if let Some(address) = probes.health_addr() {
        println!("health on http://{address}/health");
    }
    if let Some(address) = probes.ready_addr() {
        println!("ready on http://{address}/ready");
    }
    for route in &routes {
        println!("forward zone {route}");
    }
    match &default_route {
        Some(route) => println!("default {route}"),
        None => println!("default: none (names no zone matches are REFUSED)"),
    }
    let secondaries = start_auth_zones(&server, &transfers, &auth_zones);
    loaded(&server, source, watch::file_version(&source.path).ok());
    println!("ready");
    let _ = io::Write::flush(&mut io::stdout());
    let stop = signals.serve(&server, source, watcher).await;
    if stop == Stop::Terminate && !probes.lame_duck_period().is_zero() {
        probes.readiness().enter_lame_duck();
        tracing::info!(
            "lame duck for {:?}: answering DNS and /health, /ready fails; a second signal stops at once",
            probes.lame_duck_period()
        );
        signals.lame_duck(&probes).await;
    }
    if let Some(task) = control_task {
        task.abort();
    }
    for secondary in secondaries {
        secondary.stop().await;
    }
    server.shutdown().await;
    probes.stop().await;
    ExitCode::SUCCESS
}

/// Give zones out by transfer and start a refresh task for each secondary:
/// each new copy replaces the zone in the running rule set (and is saved
/// to its zonefile, which a reload reads).
fn start_auth_zones(server: &ServerHandle, transfers: &Arc<ZoneTransfers>, zones: &[AuthZone]) -> Vec<SecondaryTask> {
    let mut tasks = Vec::new();
    for auth in zones {
        let policy = (!auth.allow_transfer.is_empty())
            .then(|| TransferPolicy { allow: auth.allow_transfer.clone(), ..TransferPolicy::default() });
        if auth.primaries.is_empty() {
            if let (Some(policy), Some(zone)) = (policy, server.rules().zone(&auth.id)) {
                transfers.serve(Arc::new(zone.clone()), policy);
            }
            println!("auth zone {} from {}", auth.apex, auth.zonefile.as_deref().unwrap_or(Path::new("-")).display());
            continue;
        }
        let primaries: Vec<String> = auth.primaries.iter().map(ToString::to_string).collect();
        println!("auth zone {} secondary of {}", auth.apex, primaries.join(", "));
        let secondary = SecondaryZone {
            apex: auth.apex.clone(),
            primaries: auth.primaries.iter().map(|primary| TransferClient::new(*primary)).collect(),
            copy: auth.zonefile.clone(),
            allow_notify: auth.allow_notify.clone(),
            notify_keys: Vec::new(),
            serve: policy,
        };
        let (handle, id, answers, fallback) = (server.clone(), auth.id.clone(), auth.answers, auth.fallback_enabled);
        let publish: Publish = Arc::new(move |apex: &NameBuf, zone: Option<Arc<Zone>>| {
            if !answers {
                return;
            }
            let mut builder = handle.rules().to_builder();
            builder.remove_zone(&id);
            match zone {
                Some(zone) => {
                    builder.zone(ZoneSpec { id: id.clone(), ..ZoneSpec::new(Zone::clone(&zone)) });
                }
                None if !fallback => {
                    tracing::warn!(zone = %apex, "expired without fallback-enabled: its names are forwarded anyway");
                }
                None => {}
            }
            match builder.build() {
                Ok(rules) => handle.set_rules(rules),
                Err(error) => tracing::error!(zone = %apex, %error, "cannot install the new copy"),
            }
        });
        tasks.push(secondary.spawn(transfers.clone(), publish));
    }
    tasks
}

/// Report the configuration version in force, in the metric and the log.
fn loaded(server: &ServerHandle, source: &ConfigSource, version: Option<String>) {
    let Some(version) = version else { return };
    server.metrics().set_config_version(&version);
    tracing::info!(%version, file = %source.path.display(), "configuration version {version} in force");
}

/// Why serving ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// SIGTERM: the lame-duck period, then a graceful stop.
    Terminate,
    /// SIGINT: a graceful stop at once.
    Interrupt,
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

    async fn serve(&mut self, server: &ServerHandle, source: &ConfigSource, mut watcher: Option<FileWatcher>) -> Stop {
        loop {
            let changed = async {
                match watcher.as_mut() {
                    Some(watcher) => watcher.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.hangup.recv() => reload(server, source, "SIGHUP").await,
                Some(_) = changed => reload(server, source, "file change").await,
                _ = self.terminate.recv() => return Stop::Terminate,
                _ = self.interrupt.recv() => return Stop::Interrupt,
            }
        }
    }

    /// Wait out the lame-duck period, or until another SIGTERM or SIGINT.
    async fn lame_duck(&mut self, probes: &Probes) {
        tokio::select! {
            _ = probes.lame_duck() => {}
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

async fn reload(server: &ServerHandle, source: &ConfigSource, cause: &str) {
    // The version is read before the reload reads the file, so a change
    // landing in between is seen (and reloaded) again.
    let version = watch::file_version(&source.path).ok();
    match server.reload_from_source().await {
        Ok(_) => {
            tracing::info!("configuration reloaded from {} ({cause})", source.path.display());
            loaded(server, source, version);
        }
        Err(error) => tracing::error!("reload failed ({cause}), the running configuration stays: {error}"),
    }
}
