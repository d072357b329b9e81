//! Running a built forwarder until a signal stops it: listeners, probes,
//! remote control, auth-zone transfers, reloads on SIGHUP or a change of
//! the watched file or directory, and the lame-duck period on SIGTERM.
//! The binary's `main` builds a [`Service`] and calls [`run`]; what start-up
//! has to say (bound addresses, then `ready`) goes to the writer it passes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signpost_rules::{Action, BlockAction, Matcher, RuleSpec, Zone, ZoneSpec};
use signpost_server::signals::{ReloadCause, Signals, Stop};
use signpost_server::transfer::{Notifier, Publish, SecondaryTask, SecondaryZone, TransferPolicy, ZoneTransfers};
use signpost_server::watch::{self, FileWatcher};
use signpost_server::{Probes, QueryHandler, Readiness, Reloader, Server, ServerHandle, handover};
use signpost_upstream::TransferClient;
use signpost_wire::NameBuf;

use crate::control::ControlContext;
use crate::error::ConfigError;
use crate::{AuthZone, Forwarder};

/// The readiness check passed once the DNS listeners are bound.
const LISTENERS_CHECK: &str = "listeners";

/// What [`run`] serves.
pub struct Service {
    /// The built forwarder.
    pub forwarder: Forwarder,
    /// Builds the rules and upstreams again on a reload.
    pub reloader: Reloader,
    /// The configuration file or directory: named in reload log lines, and
    /// its content version is the `config_version` metric.
    pub source: PathBuf,
    /// Reload when this file or directory changes (`--watch-config`).
    pub watch: Option<PathBuf>,
    /// Answers queries before the rules (the Istio mode's name table); the
    /// auth zones' transfer handler otherwise.
    pub query_handler: Option<Arc<dyn QueryHandler>>,
    /// After binding every listener, become this user (`--user`; docs/reliability.md).
    pub user: Option<String>,
}

fn runtime_error(what: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> ConfigError {
    ConfigError::Runtime { what, source: Box::new(source) }
}

/// Serve until SIGTERM or SIGINT. Start-up lines (`listening on ...`,
/// `ready`) are written to `out`; errors before `ready` are returned.
pub async fn run(service: Service, out: &mut (dyn Write + Send)) -> Result<(), ConfigError> {
    let Service { forwarder, reloader, source, watch, query_handler, user } = service;
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
    let mut probes = Probes::start(health.as_ref(), ready.as_ref(), readiness.clone())
        .await
        .map_err(|error| runtime_error("probes", error))?;
    let transfers = Arc::new(ZoneTransfers::new());
    let mut builder = Server::builder().config(config).rules(rules).upstreams(upstreams).reloader(reloader);
    if let Some(handler) = query_handler {
        builder = builder.query_handler(handler);
    } else if !auth_zones.is_empty() {
        builder = builder.query_handler(transfers.clone());
    }
    if let Some(validator) = validator {
        builder = builder.validator(validator);
    }
    let server = builder.start().await.map_err(|error| runtime_error("server", error))?;
    let mut lines = Vec::new();
    if let Some(user) = &user {
        match signpost_server::drop_privileges(user) {
            Ok(account) => lines.push(format!("running as {user} (uid {}, gid {})", account.uid, account.gid)),
            Err(error) => {
                server.shutdown().await;
                return Err(runtime_error("dropping privileges", error));
            }
        }
    }
    // With [ready] require_upstream (the default), /ready also waits for
    // an answering server in every group, and fails while none answers.
    let running = server.clone();
    probes.check_upstreams(move || running.upstreams());
    readiness.mark_ready(LISTENERS_CHECK);
    // Signal handlers before "ready": a SIGHUP right after start-up must reload, not kill.
    let mut signals = Signals::install().map_err(|error| runtime_error("signal handling", error))?;
    let mut watcher = match &watch {
        Some(path) => Some(FileWatcher::new(path).map_err(|error| runtime_error("watching", error))?),
        None => None,
    };
    for listener in server.listeners() {
        lines.push(format!("listening on {} {}", listener.transport.as_str(), listener.address));
    }
    if let Some(admin) = server.admin_addr() {
        lines.push(format!("admin API on http://{admin}/ (metrics at /metrics)"));
    }
    let mut control_task = None;
    if let Some(control) = remote_control {
        let context = ControlContext { server: server.clone(), started: Instant::now() };
        lines.extend(control.sockets.iter().map(|path| format!("remote control on {}", path.display())));
        lines.extend(control.addresses.iter().map(|address| format!("remote control on {address}")));
        let task = tokio::spawn(async move { crate::control::serve(&control, context).await });
        // A socket that cannot be bound fails start-up, as in Unbound.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if task.is_finished() {
            server.shutdown().await;
            return Err(match task.await {
                Ok(Err(error)) => runtime_error("remote control", error),
                Ok(Ok(())) => runtime_error("remote control", std::io::Error::other("stopped")),
                Err(error) => runtime_error("remote control", error),
            });
        }
        control_task = Some(task);
    }
    if let Some(address) = probes.health_addr() {
        lines.push(format!("health on http://{address}/health"));
    }
    if let Some(address) = probes.ready_addr() {
        lines.push(format!("ready on http://{address}/ready"));
    }
    lines.extend(routes.iter().map(|route| format!("forward zone {route}")));
    lines.push(match &default_route {
        Some(route) => format!("default {route}"),
        None => "default: none (names no zone matches are REFUSED)".into(),
    });
    let given_out = crate::transfer_out::GivenOut::new(&auth_zones, transfers.clone());
    let (secondaries, auth_lines) = start_auth_zones(&server, &transfers, &auth_zones, &given_out.notifier());
    lines.extend(auth_lines);
    loaded(&server, &source, version_of(&source));
    handover::close_unclaimed();
    lines.push("ready".into());
    for line in lines {
        // The caller's stdout going away is no reason to stop serving.
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
    if let Err(error) = handover::announce_ready() {
        // The predecessor times out and goes on serving; so does this one.
        tracing::error!("{error}");
    }
    let stop = signals.serve(watcher.as_mut(), |cause| reload(&server, &source, cause, &given_out)).await;
    if let Stop::HandedOver(successor) = &stop {
        // The successor reads the sockets now; this one answers what it
        // has read and stops.
        let _ = writeln!(out, "{successor}");
        let _ = out.flush();
    }
    signals.drain(stop, &probes).await;
    if let Some(task) = control_task {
        task.abort();
    }
    for secondary in secondaries {
        secondary.stop().await;
    }
    server.shutdown().await;
    probes.stop().await;
    Ok(())
}

/// Give zones out by transfer (telling their secondaries by NOTIFY) and
/// start a refresh task for each secondary: each new copy replaces the zone
/// in the running rule set (and is saved to its zonefile, which a reload
/// reads). Returns the tasks and what to report.
fn start_auth_zones(
    server: &ServerHandle,
    transfers: &Arc<ZoneTransfers>,
    zones: &[AuthZone],
    notifier: &Arc<Notifier>,
) -> (Vec<SecondaryTask>, Vec<String>) {
    let mut tasks = Vec::new();
    let mut lines = Vec::new();
    for auth in zones {
        let key = auth.key();
        let policy = (!auth.allow_transfer.is_empty()).then(|| TransferPolicy {
            allow: auth.allow_transfer.clone(),
            keys: key.clone().into_iter().collect(),
            require_key: key.is_some(),
        });
        if auth.primaries.is_empty() {
            if let (Some(policy), Some(zone)) = (policy, server.rules().zone(&auth.id)) {
                transfers.serve(Arc::new(zone.clone()), policy);
                crate::transfer_out::notify(notifier, auth, zone);
            }
            lines.push(format!(
                "auth zone {} from {}",
                auth.apex,
                auth.zonefile.as_deref().unwrap_or(Path::new("-")).display()
            ));
            continue;
        }
        let primaries: Vec<String> = auth.primaries.iter().map(ToString::to_string).collect();
        lines.push(format!("auth zone {} secondary of {}", auth.apex, primaries.join(", ")));
        let secondary = SecondaryZone {
            apex: auth.apex.clone(),
            primaries: auth
                .primaries
                .iter()
                .map(|primary| TransferClient::new(*primary).with_key(key.clone()))
                .collect(),
            copy: auth.zonefile.clone(),
            allow_notify: auth.allow_notify.clone(),
            notify_keys: key.into_iter().collect(),
            serve: policy,
        };
        let (handle, id, answers, fallback) = (server.clone(), auth.id.clone(), auth.answers, auth.fallback_enabled);
        if answers && !fallback && server.rules().zone(&id).is_none() {
            // No copy yet: without fallback-enabled the zone's names fail
            // rather than go to the internet (unbound.conf(5), auth-zone).
            install_copy(&handle, &id, &auth.apex, None, fallback);
        }
        let (notifier, given_out) = (notifier.clone(), auth.clone());
        let publish: Publish = Arc::new(move |apex: &NameBuf, zone: Option<Arc<Zone>>| {
            if let Some(zone) = &zone
                && !given_out.allow_transfer.is_empty()
            {
                crate::transfer_out::notify(&notifier, &given_out, zone);
            }
            if answers {
                install_copy(&handle, &id, apex, zone, fallback);
            }
        });
        tasks.push(secondary.spawn(transfers.clone(), publish));
    }
    (tasks, lines)
}

/// The rule id that makes an auth zone without data answer SERVFAIL.
fn servfail_rule_id(zone_id: &str) -> String {
    format!("{zone_id}:no-data")
}

/// Put a secondary's new copy in the running rule set, or, with `None`
/// (no copy, or past its expire time), answer its names SERVFAIL as a
/// secondary must (RFC 1034 §4.3.5) — unless `fallback-enabled`, which
/// forwards them as if the zone were not there.
fn install_copy(handle: &ServerHandle, id: &str, apex: &NameBuf, zone: Option<Arc<Zone>>, fallback: bool) {
    let mut builder = handle.rules().to_builder();
    builder.remove_zone(id);
    builder.remove_rule(&servfail_rule_id(id));
    match zone {
        Some(zone) => {
            builder.zone(ZoneSpec { id: id.to_string(), ..ZoneSpec::new(Zone::clone(&zone)) });
        }
        None if fallback => {
            tracing::warn!(zone = %apex, "auth zone has no data: fallback-enabled, forwarding its names")
        }
        None => {
            tracing::warn!(zone = %apex, "auth zone has no data: answering SERVFAIL (fallback-enabled: no)");
            builder.rule(RuleSpec::new(
                servfail_rule_id(id),
                Matcher::Suffix(apex.clone()),
                Action::Block(BlockAction::ServFail),
            ));
        }
    }
    match builder.build() {
        Ok(rules) => handle.set_rules(rules),
        Err(error) => tracing::error!(zone = %apex, %error, "cannot install the auth zone's data"),
    }
}

/// The content version of a configuration file or directory.
fn version_of(path: &Path) -> Option<String> {
    watch::file_version(path).ok()
}

/// Report the configuration version in force, in the metric and the log.
fn loaded(server: &ServerHandle, source: &Path, version: Option<String>) {
    let Some(version) = version else { return };
    server.metrics().set_config_version(&version);
    tracing::info!(%version, file = %source.display(), "configuration version {version} in force");
}

async fn reload(server: &ServerHandle, source: &Path, cause: ReloadCause, given_out: &crate::transfer_out::GivenOut) {
    // The version is read before the reload reads the file, so a change
    // landing in between is seen (and reloaded) again.
    let version = version_of(source);
    match server.reload_from_source().await {
        Ok(_) => {
            tracing::info!("configuration reloaded from {} ({cause})", source.display());
            loaded(server, source, version);
            given_out.reloaded(server);
        }
        Err(error) => tracing::error!("reload failed ({cause}), the running configuration stays: {error}"),
    }
}
