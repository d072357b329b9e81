//! signpost-redirect: answer cloud API names (`*.amazonaws.com`, ...) with a
//! local emulator's address and forward everything else, configured with
//! LocalStack's DNS variables. A thin binary over
//! `signpost_redirect`; see docs/redirect.md.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "printing is this binary's job")]

mod check;
mod cli;
mod systemd;

use std::io;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use signpost_redirect::{RedirectError, RedirectServer, dns_variables, unknown_dns_variables};
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, DEFAULT_CONFIG, Loaded};

/// mimalloc (crates/allocator) instead of glibc's malloc: a forwarder keeps hundreds of queries
/// in flight, each with a few small allocations, and glibc's per-thread
/// cache (7 chunks per size) overflows into its slow path; see
/// docs/performance.md.
#[global_allocator]
static ALLOCATOR: signpost_allocator::Allocator = signpost_allocator::Allocator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::DefaultConfig) = cli.command {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_writer(io::stderr).with_env_filter(log_filter).init();
    warn_about_unknown_variables();
    let loaded = match cli.load() {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    match &cli.command {
        Some(Command::SystemdResolved { interface, revert, dry_run }) => {
            systemd::run(&loaded.settings, interface.as_deref(), *revert, *dry_run)
        }
        Some(Command::Check) => match runtime() {
            Ok(runtime) => runtime.block_on(check::run(&loaded.settings)),
            Err(error) => fail(&format!("cannot start the async runtime: {error}")),
        },
        Some(Command::DefaultConfig) | None => serve(Arc::new(cli), loaded),
    }
}

/// A `DNS_*` variable signpost-redirect does not read is most likely a typo: say so.
fn warn_about_unknown_variables() {
    let names: Vec<String> = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()).collect();
    let unknown = unknown_dns_variables(names.iter().map(String::as_str));
    if !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(ToString::to_string).collect();
        tracing::warn!(
            "unknown DNS variables, ignored: {} (known: {})",
            list.join(", "),
            dns_variables().collect::<Vec<_>>().join(", ")
        );
    }
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

fn serve(cli: Arc<Cli>, loaded: Loaded) -> ExitCode {
    let Loaded { settings, server, rules, groups } = loaded;
    if settings.bind_addresses().is_none() {
        println!("DNS is disabled (DNS_ADDRESS=0): not starting the DNS server.");
        return ExitCode::SUCCESS;
    }
    // Before anything binds: sockets from systemd or from a predecessor
    // handing over (SIGUSR2).
    match signpost_server::handover::inherit_from_environment() {
        Ok(inherited) if inherited.sockets > 0 => println!("{inherited}"),
        Ok(_) => {}
        Err(error) => return fail(&error.to_string()),
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the async runtime: {error}")),
    };
    let reload_cli = cli.clone();
    let builder =
        RedirectServer::builder(settings).server_config(server).rules(rules).upstream_groups(groups).reloader(
            Arc::new(move || {
                let loaded = reload_cli.load()?;
                Ok((loaded.settings, loaded.rules, loaded.groups))
            }),
        );
    match runtime.block_on(builder.run(cli.user.as_deref(), &mut io::stdout())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&explain(&error)),
    }
}

/// The error, with what to do about a port that cannot be bound.
fn explain(error: &RedirectError) -> String {
    let mut message = error.to_string();
    if let Some(signpost_server::Error::Bind { source, address, .. }) = error.as_bind_error()
        && matches!(source.kind(), io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied)
    {
        message.push_str(&format!(
            "\n  With signpost-redirect: set DNS_PORT=5353 (then `dig -p 5353 @{} s3.amazonaws.com`), or \
             DNS_ADDRESS to another local address.",
            address.ip()
        ));
    }
    message
}
