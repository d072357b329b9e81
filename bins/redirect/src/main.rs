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
use signpost_redirect::{RedirectError, RedirectServer, Signals, dns_variables, unknown_dns_variables};

use crate::cli::{Cli, Command, DEFAULT_CONFIG, Loaded};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::DefaultConfig) = cli.command {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
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
    if !settings.local_name_patterns.is_empty() {
        tracing::info!(
            "DNS_LOCAL_NAME_PATTERNS is set: only names matching it are redirected, as LocalStack's documentation \
             describes (LocalStack's current code treats it as a deprecated alias of \
             DNS_NAME_PATTERNS_TO_RESOLVE_UPSTREAM; see docs/redirect.md)"
        );
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the async runtime: {error}")),
    };
    runtime.block_on(async move {
        // Before the start-up lines: a SIGHUP sent as soon as they appear must reload.
        let signals = match Signals::install() {
            Ok(signals) => signals,
            Err(error) => return fail(&format!("cannot catch signals: {error}")),
        };
        let reload_cli = cli.clone();
        let started = RedirectServer::builder(settings)
            .server_config(server)
            .rules(rules)
            .upstream_groups(groups)
            .reloader(Arc::new(move || {
                let loaded = reload_cli.load()?;
                Ok((loaded.settings, loaded.rules, loaded.groups))
            }))
            .start()
            .await;
        let server = match started {
            Ok(server) => server,
            Err(error) => return fail(&explain(&error)),
        };
        if let Some(user) = &cli.user {
            match signpost_server::drop_privileges(user) {
                Ok(account) => println!("running as {user} (uid {}, gid {})", account.uid, account.gid),
                Err(error) => return fail(&error.to_string()),
            }
        }
        for line in server.startup_lines() {
            println!("{line}");
        }
        let outcome = server
            .run_until(signals, |result| match result {
                Ok(()) => tracing::info!("configuration reloaded"),
                Err(error) => tracing::error!("reload failed, the old configuration keeps serving: {error}"),
            })
            .await;
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&format!("cannot wait for signals: {error}")),
        }
    })
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
