//! Running the program until a signal stops it: the [`Service`], its
//! start-up lines, reloads of the configuration file on SIGHUP or a change
//! of the file, the lame-duck period on SIGTERM and the hand-over on
//! SIGUSR2 ([`signpost_server::signals`]). The binary's `main` adopts
//! inherited sockets, starts a tokio runtime and calls [`run`]; what there
//! is to say (bound addresses, `ready`, listeners started later through
//! the API) goes to the [`Say`] it passes.

use std::path::Path;
use std::sync::Arc;

use signpost_server::handover;
use signpost_server::signals::{ReloadCause, Signals, Stop};
use signpost_server::watch::{self, FileWatcher};

use crate::live::Report;
use crate::running::Reloaded;
use crate::service::{Service, ServiceError, ServiceOptions, listener_line};

/// Where the start-up and status lines go (the binary prints them on
/// standard output, one a line, flushed).
pub type Say = Arc<dyn Fn(&str) + Send + Sync>;

/// What [`run`] serves.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The model and where it comes from.
    pub service: ServiceOptions,
    /// After binding every listener, become this user (`--user`).
    pub user: Option<String>,
    /// Reload when the configuration file changes (`--watch-config`):
    /// only where the file is the whole model (no API, no state directory).
    pub watch_config: bool,
}

/// The line for a listener started or stopped, or the CA made for DoH.
fn report_line(report: Report) -> String {
    match report {
        Report::Listening(listener) => listener_line(&listener),
        Report::Stopped { id, address } => format!("stopped {id} {address}"),
        Report::CertificateAuthority(file) => {
            format!("tls ca {} (DoH certificates of endpoints given none)", file.display())
        }
    }
}

/// Serve until SIGTERM (after the lame-duck period), SIGINT, or SIGUSR2
/// once a successor serves; errors before `ready` are returned.
pub async fn run(options: RunOptions, say: Say) -> Result<(), ServiceError> {
    // Before "ready": a SIGHUP sent as soon as it appears must reload, not
    // end the process (the default action until a handler is installed).
    let mut signals = Signals::install().map_err(ServiceError::Signals)?;
    let reporter = say.clone();
    let service = Service::start(options.service.clone(), move |report| reporter(&report_line(report))).await?;
    if let Some(user) = &options.user {
        match signpost_server::drop_privileges(user) {
            Ok(account) => say(&format!("running as {user} (uid {}, gid {})", account.uid, account.gid)),
            Err(error) => {
                service.shutdown().await;
                return Err(error.into());
            }
        }
    }
    let cli = &options.service;
    let mut watcher = match (&cli.config, options.watch_config) {
        (Some(file), true) if cli.api.is_none() && cli.state.is_none() => Some(FileWatcher::new(file)?),
        (_, true) => return Err(ServiceError::WatchWithoutFile),
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
    handover::close_unclaimed();
    say("ready");
    if let Err(error) = handover::announce_ready() {
        // The predecessor times out and goes on serving; so does this one.
        tracing::error!("{error}");
    }
    let stop = signals.serve(watcher.as_mut(), |cause| reload(&service, &say, cause)).await;
    if let Stop::HandedOver(successor) = &stop {
        // The successor reads the sockets now: answer what was read and stop.
        say(&successor.to_string());
    }
    signals.drain(stop, service.probes()).await;
    service.shutdown().await;
    Ok(())
}

/// Report the configuration version in force, in the metric and the log.
async fn loaded(service: &Service, file: &Path, version: Option<String>) {
    let Some(version) = version else { return };
    service.set_config_version(&version).await;
    tracing::info!(%version, file = %file.display(), "configuration version {version} in force");
}

async fn reload(service: &Service, say: &Say, cause: ReloadCause) {
    match service.reload_file().await {
        Ok((file, outcome)) => {
            match outcome {
                Some(Reloaded::Restarted) => {
                    say(&format!("reloaded {}: listeners changed, server restarted", file.display()));
                    say("ready");
                }
                _ => say(&format!("reloaded {}: zones, rules and targets swapped in place", file.display())),
            }
            tracing::info!("configuration reloaded from {} ({cause})", file.display());
            loaded(service, &file, watch::file_version(&file).ok()).await;
        }
        Err(error) => {
            tracing::error!("reload rejected ({cause}), the previous configuration keeps serving: {error}")
        }
    }
}
