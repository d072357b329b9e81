//! Unbound's remote control: the protocol `unbound-control` speaks, so
//! Debian's own `unbound-control` drives signpost-forward.
//!
//! A connection carries one command: the client writes `UBCT1 ` (the
//! magic and protocol version), the command line and a newline; the
//! `local_datas`-style commands follow with lines of data ending in a
//! line holding only 0x04. The server writes the answer as text and
//! closes; an answer whose first line starts with `error` makes
//! `unbound-control` exit 1.
//!
//! Served on a unix socket (`control-interface: /run/unbound.ctl`, as
//! Debian configures it), on TCP without TLS (`control-use-cert: no`), or on
//! TCP with TLS as Unbound serves it by default (`control-use-cert: yes`):
//! the server presents `server-cert-file` and accepts only clients whose
//! certificate it signed, which is what `unbound-control-setup` makes.
//! [`Command::parse`] and [`execute`] hold the logic; [`serve`] the I/O.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use signpost_rules::{Action, BlockAction, Matcher, Redirect, RuleSpec, Zone, ZoneChange, ZoneMode, ZoneSpec};
use signpost_rules::{AddressSource, RuleSetBuilder};
use signpost_server::{ServerHandle, State};
use signpost_upstream::{GroupConfig, Upstreams};
use signpost_wire::{NameBuf, RecordBuf};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::config::parse_server;

/// The `remote-control:` clause: where `unbound-control` connects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteControlConfig {
    /// Unix socket paths (`/run/unbound.ctl`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sockets: Vec<PathBuf>,
    /// TCP addresses: with TLS when `tls` is given (`control-use-cert: yes`), else plain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<SocketAddr>,
    /// TLS on the TCP addresses (`control-use-cert: yes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ControlTls>,
}

/// The certificates of TLS remote control, as `unbound-control-setup` makes
/// them: a self-signed server certificate that also signs the client's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlTls {
    /// `server-key-file` (default `/etc/unbound/unbound_server.key`).
    pub server_key_file: PathBuf,
    /// `server-cert-file` (default `/etc/unbound/unbound_server.pem`): presented
    /// to clients, and the authority their certificates must chain to.
    pub server_cert_file: PathBuf,
}

impl ControlTls {
    /// The acceptor: the server's certificate, clients verified against it.
    /// Errors name the file.
    pub fn acceptor(&self) -> std::io::Result<tokio_rustls::TlsAcceptor> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let failed = |path: &std::path::Path, error: &dyn std::fmt::Display| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {error}", path.display()))
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.server_cert_file)
            .and_then(Iterator::collect)
            .map_err(|error| failed(&self.server_cert_file, &error))?;
        let key = PrivateKeyDer::from_pem_file(&self.server_key_file)
            .map_err(|error| failed(&self.server_key_file, &error))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in &certs {
            roots.add(cert.clone()).map_err(|error| failed(&self.server_cert_file, &error))?;
        }
        let provider = Arc::new(signpost_upstream::crypto_provider(false));
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|error| failed(&self.server_cert_file, &error))?;
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| failed(&self.server_cert_file, &error))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|error| failed(&self.server_key_file, &error))?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

/// How long a TLS client gets for its handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The longest command line read (Unbound's buffer is 1024 bytes).
const MAX_LINE: usize = 1024;
/// The most data lines a `local_datas`-style command may send.
const MAX_DATA_LINES: usize = 100_000;

/// A command `unbound-control` sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `status`.
    Status,
    /// `reload`: read the configuration again.
    Reload,
    /// `flush NAME`, `flush_zone NAME`, `flush_bogus`, `flush_negative`,
    /// `flush_type NAME TYPE`, `flush_requestlist`, `flush_infra`: the
    /// whole cache is emptied (a superset of what Unbound removes).
    Flush,
    /// `stats_noreset` (and `stats`, which does not reset here either).
    Stats,
    /// `local_data RR` (one, or `local_datas` with many).
    LocalData(Vec<String>),
    /// `local_data_remove NAME` (or `local_datas_remove`).
    LocalDataRemove(Vec<String>),
    /// `local_zone NAME TYPE` (or `local_zones`).
    LocalZone(Vec<(String, String)>),
    /// `local_zone_remove NAME` (or `local_zones_remove`).
    LocalZoneRemove(Vec<String>),
    /// `forward_add [+i] NAME ADDR...` (and `stub_add`, asked without RD).
    ForwardAdd {
        /// The zone.
        name: String,
        /// Its servers (`IP[@port][#tls-name]`).
        servers: Vec<String>,
        /// `stub_add`.
        stub: bool,
    },
    /// `forward_remove [+i] NAME` (and `stub_remove`).
    ForwardRemove(String),
}

impl Command {
    /// Whether the command is followed by lines of data.
    pub fn takes_data(line: &str) -> bool {
        matches!(
            line.split_whitespace().next(),
            Some("local_datas" | "local_datas_remove" | "local_zones" | "local_zones_remove")
        )
    }

    /// The command on `line`, with `data` lines for the plural commands.
    pub fn parse(line: &str, data: &[String]) -> Result<Self, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((&command, arguments)) = words.split_first() else { return Err("no command given".into()) };
        let rest = || line.trim_start().get(command.len()..).unwrap_or_default().trim().to_owned();
        let need = |count: usize| {
            if arguments.len() < count { Err(format!("missing argument for {command}")) } else { Ok(()) }
        };
        // `+i` (insecure) and the other flags of forward_add and friends change nothing here.
        let unflagged: Vec<&str> = arguments.iter().copied().filter(|word| !word.starts_with('+')).collect();
        Ok(match command {
            "status" => Self::Status,
            "reload" | "reload_keep_cache" => Self::Reload,
            "flush" | "flush_zone" | "flush_type" | "flush_bogus" | "flush_negative" | "flush_requestlist"
            | "flush_infra" => Self::Flush,
            "stats" | "stats_noreset" => Self::Stats,
            "local_data" => {
                need(1)?;
                Self::LocalData(vec![rest()])
            }
            "local_datas" => Self::LocalData(data.to_vec()),
            "local_data_remove" => {
                need(1)?;
                Self::LocalDataRemove(arguments.iter().map(|name| (*name).to_owned()).collect())
            }
            "local_datas_remove" => Self::LocalDataRemove(data.to_vec()),
            "local_zone" => match arguments {
                [name, kind, ..] => Self::LocalZone(vec![((*name).to_owned(), (*kind).to_owned())]),
                _ => return Err(format!("missing argument for {command}")),
            },
            "local_zones" => Self::LocalZone(
                data.iter()
                    .filter_map(|line| {
                        let mut words = line.split_whitespace();
                        Some((words.next()?.to_owned(), words.next()?.to_owned()))
                    })
                    .collect(),
            ),
            "local_zone_remove" => {
                need(1)?;
                Self::LocalZoneRemove(arguments.iter().map(|name| (*name).to_owned()).collect())
            }
            "local_zones_remove" => Self::LocalZoneRemove(data.to_vec()),
            "forward_add" | "stub_add" => match unflagged.split_first() {
                Some((name, servers)) if !servers.is_empty() => Self::ForwardAdd {
                    name: (*name).to_owned(),
                    servers: servers.iter().map(|server| (*server).to_owned()).collect(),
                    stub: command == "stub_add",
                },
                _ => return Err(format!("missing argument for {command}: a zone and its servers")),
            },
            "forward_remove" | "stub_remove" => match unflagged.first() {
                Some(name) => Self::ForwardRemove((*name).to_owned()),
                None => return Err(format!("missing argument for {command}")),
            },
            _ => return Err(format!("unknown command '{command}'")),
        })
    }
}

/// What the running forwarder gives the commands.
#[derive(Clone)]
pub struct ControlContext {
    /// The server.
    pub server: ServerHandle,
    /// When it started (for `status`).
    pub started: Instant,
}

/// Run a command; the text to send back (starting with `error` on failure).
pub async fn execute(context: &ControlContext, command: Command) -> String {
    match run(context, command).await {
        Ok(text) => text,
        Err(error) => format!("error {error}\n"),
    }
}

async fn run(context: &ControlContext, command: Command) -> Result<String, String> {
    let server = &context.server;
    match command {
        Command::Status => Ok(format!(
            "version: {} (signpost-forward, unbound-control compatible)\nverbosity: 1\nthreads: {}\nmodules: 1 [ iterator ]\nuptime: {} seconds\noptions: control\nunbound (pid {}) is running...\n",
            env!("CARGO_PKG_VERSION"),
            std::thread::available_parallelism().map_or(1, usize::from),
            context.started.elapsed().as_secs(),
            std::process::id()
        )),
        Command::Reload => {
            server.reload_from_source().await.map_err(|error| error.to_string())?;
            Ok("ok\n".into())
        }
        Command::Flush => {
            server.clear_cache();
            Ok("ok\n".into())
        }
        Command::Stats => Ok(stats(server)),
        Command::LocalData(records) => edit_rules(server, |builder| {
            for text in &records {
                add_local_data(builder, text)?;
            }
            Ok(())
        }),
        Command::LocalDataRemove(names) => edit_rules(server, |builder| {
            for text in &names {
                remove_local_data(builder, &parse_name(text)?)?;
            }
            Ok(())
        }),
        Command::LocalZone(zones) => edit_rules(server, |builder| {
            for (name, kind) in &zones {
                add_local_zone(builder, &parse_name(name)?, kind)?;
            }
            Ok(())
        }),
        Command::LocalZoneRemove(names) => edit_rules(server, |builder| {
            for text in &names {
                let id = format!("local-zone {}", parse_name(text)?.to_relative_string());
                builder.remove_zone(&id);
                builder.remove_rule(&id);
            }
            Ok(())
        }),
        Command::ForwardAdd { name, servers, stub } => forward_add(server, &parse_name(&name)?, &servers, stub),
        Command::ForwardRemove(name) => {
            let name = parse_name(&name)?;
            edit_rules(server, |builder| {
                builder.remove_rule(&format!("forward-zone {}", name.to_relative_string()));
                Ok(())
            })
        }
    }
}

fn parse_name(text: &str) -> Result<NameBuf, String> {
    text.parse::<NameBuf>()
        .map(|name| name.to_lowercase())
        .map_err(|error| format!("cannot parse name {text}: {error}"))
}

/// Change the running rules (views other than the default are left alone).
fn edit_rules(
    server: &ServerHandle,
    edit: impl FnOnce(&mut RuleSetBuilder) -> Result<(), String>,
) -> Result<String, String> {
    let mut builder = server.rules().to_builder();
    edit(&mut builder)?;
    let rules = builder.build().map_err(|error| error.to_string())?;
    server.set_rules(rules);
    Ok("ok\n".into())
}

/// The default-view zone closest above `owner`.
fn closest_zone(builder: &RuleSetBuilder, owner: &NameBuf) -> Option<String> {
    builder
        .zones()
        .filter(|spec| spec.views.is_empty() && owner.is_subdomain_of(spec.zone.apex()))
        .max_by_key(|spec| spec.zone.apex().label_count())
        .map(|spec| spec.id.clone())
}

fn add_local_data(builder: &mut RuleSetBuilder, text: &str) -> Result<(), String> {
    let record = RecordBuf::from_presentation(text, Some(&NameBuf::root()), Some(3600))
        .map_err(|error| format!("cannot parse local-data {text}: {error}"))?;
    let owner = record.name.to_lowercase();
    match closest_zone(builder, &owner) {
        Some(id) => builder.change_zone(&id, [ZoneChange::Add(record)]).map_err(|error| error.to_string()),
        None => {
            // As Unbound: data outside every zone gets a transparent zone of its own.
            let zone = Zone::from_records(owner.clone(), [record]).map_err(|error| error.to_string())?;
            let mut spec = ZoneSpec::new(zone);
            spec.id = format!("local-data {}", owner.to_relative_string());
            spec.mode = ZoneMode::Transparent;
            builder.zone(spec);
            Ok(())
        }
    }
}

fn remove_local_data(builder: &mut RuleSetBuilder, name: &NameBuf) -> Result<(), String> {
    let own_zone = format!("local-data {}", name.to_relative_string());
    let mut changes: Vec<(String, Vec<ZoneChange>)> = Vec::new();
    for spec in builder.zones().filter(|spec| spec.views.is_empty() && name.is_subdomain_of(spec.zone.apex())) {
        if spec.id == own_zone {
            continue;
        }
        // The apex keeps its SOA (the zone's own or the synthesised one).
        let soa = spec.zone.soa();
        let deleted: Vec<ZoneChange> = spec
            .zone
            .records()
            .filter(|record| record.name.to_lowercase() == *name && *record != soa)
            .map(|record| ZoneChange::Delete(record.clone()))
            .collect();
        if !deleted.is_empty() {
            changes.push((spec.id.clone(), deleted));
        }
    }
    // A zone made only for this name's data goes with it.
    builder.remove_zone(&own_zone);
    for (id, deleted) in changes {
        builder.change_zone(&id, deleted).map_err(|error| error.to_string())?;
    }
    Ok(())
}

fn add_local_zone(builder: &mut RuleSetBuilder, name: &NameBuf, kind: &str) -> Result<(), String> {
    let id = format!("local-zone {}", name.to_relative_string());
    builder.remove_zone(&id);
    builder.remove_rule(&id);
    let zone = |mode: ZoneMode| {
        let mut spec = ZoneSpec::new(Zone::new(name.clone()));
        spec.id = id.clone();
        spec.mode = mode;
        spec
    };
    let rule = |action: Action| RuleSpec::new(id.clone(), Matcher::Suffix(name.clone()), action);
    let nodata = |v4, v6| Redirect { v4, v6, ttl: 3600, ..Redirect::default() };
    match kind {
        "static" => {
            builder.zone(zone(ZoneMode::Authoritative));
        }
        "redirect" | "inform_redirect" => {
            builder.zone(zone(ZoneMode::Redirect));
        }
        "transparent" | "inform" | "always_transparent" | "noview" => {
            builder.zone(zone(ZoneMode::Transparent));
        }
        "typetransparent" => {
            builder.zone(zone(ZoneMode::Overlay));
        }
        "refuse" | "always_refuse" => {
            builder.rule(rule(Action::Block(BlockAction::Refused)));
        }
        "deny" | "always_deny" | "inform_deny" => {
            builder.rule(rule(Action::Block(BlockAction::Drop)));
        }
        "always_nxdomain" => {
            builder.rule(rule(Action::Block(BlockAction::NxDomain)));
        }
        "always_nodata" => {
            builder.rule(rule(Action::Redirect(nodata(AddressSource::None, AddressSource::None))));
        }
        "always_null" => {
            let null = nodata(
                AddressSource::Fixed(std::net::Ipv4Addr::UNSPECIFIED),
                AddressSource::Fixed(std::net::Ipv6Addr::UNSPECIFIED),
            );
            builder.rule(rule(Action::Redirect(null)));
        }
        _ => return Err(format!("bad local-zone type {kind}")),
    }
    Ok(())
}

fn forward_add(server: &ServerHandle, name: &NameBuf, servers: &[String], stub: bool) -> Result<String, String> {
    let mut parsed = Vec::new();
    for text in servers {
        let server = parse_server(text, signpost_upstream::Protocol::Udp)
            .filter(|_| !text.contains("://"))
            .ok_or_else(|| format!("cannot parse server {text}: expected IP[@port][#tls-name]"))?;
        parsed.push(server);
    }
    let group_name = name.to_relative_string();
    let group: GroupConfig = crate::unbound::unbound_group(&group_name, parsed, stub);
    let upstreams = server.upstreams();
    let mut groups: Vec<GroupConfig> =
        upstreams.groups().map(|group| group.config().clone()).filter(|config| config.name != group_name).collect();
    groups.push(group);
    let names: Vec<String> = groups.iter().map(|group| group.name.clone()).collect();
    let upstreams = Upstreams::new(groups).map_err(|error| error.to_string())?;
    let mut builder = server.rules().to_builder();
    let id = format!("forward-zone {group_name}");
    builder.remove_rule(&id);
    builder.known_groups(names);
    builder.rule(RuleSpec::new(
        id,
        Matcher::Suffix(name.clone()),
        Action::Forward { group: group_name, forward_first: false },
    ));
    let rules = builder.build().map_err(|error| error.to_string())?;
    let mut state = State::new(Arc::new(rules), Arc::new(upstreams));
    state.validator = server.validator();
    server.reload(state);
    Ok("ok\n".into())
}

/// Counters in Unbound's `name=value` lines.
fn stats(server: &ServerHandle) -> String {
    let metrics = server.metrics();
    let queries: u64 = ["udp", "tcp", "dot", "doh"].iter().map(|transport| metrics.queries(transport)).sum();
    let cache_hits = metrics.decisions("cache") + metrics.decisions("local");
    let mut out = String::new();
    let _ = writeln!(out, "total.num.queries={queries}");
    let _ = writeln!(out, "total.num.cachehits={cache_hits}");
    let _ = writeln!(out, "total.num.cachemiss={}", queries.saturating_sub(cache_hits));
    let _ = writeln!(out, "total.num.prefetch=0");
    let _ = writeln!(out, "total.num.expired={}", metrics.decisions("stale"));
    let _ = writeln!(out, "total.num.recursivereplies={}", metrics.decisions("forwarded"));
    for transport in ["udp", "tcp", "dot", "doh"] {
        let name = match transport {
            "dot" => "tls",
            "doh" => "https",
            other => other,
        };
        let _ = writeln!(out, "num.query.{name}={}", metrics.queries(transport));
    }
    for (rcode, name) in [(0, "NOERROR"), (2, "SERVFAIL"), (3, "NXDOMAIN"), (5, "REFUSED")] {
        let _ = writeln!(out, "num.answer.rcode.{name}={}", metrics.responses(rcode));
    }
    let _ = writeln!(out, "time.up={}", 0);
    out
}

/// Read one command from `stream`, run it and write the answer.
pub async fn handle<S: AsyncRead + AsyncWrite + Unpin>(context: &ControlContext, stream: S) -> std::io::Result<()> {
    let (reader, mut writer) = tokio::io::split(stream);
    let mut reader = BufReader::new(reader).take(64 * 1024 * 1024);
    let mut magic = [0u8; 6];
    reader.read_exact(&mut magic).await?;
    if !magic.starts_with(b"UBCT") {
        // Some other tool: ignore it, as Unbound does.
        return Ok(());
    }
    let mut line = String::new();
    (&mut reader).take(MAX_LINE as u64).read_line(&mut line).await?;
    if &magic != b"UBCT1 " {
        writer.write_all(b"error version mismatch\n").await?;
        return writer.shutdown().await;
    }
    let mut data = Vec::new();
    if Command::takes_data(&line) {
        loop {
            let mut data_line = String::new();
            if (&mut reader).take(MAX_LINE as u64).read_line(&mut data_line).await? == 0 {
                break;
            }
            let trimmed = data_line.trim_end_matches(['\n', '\r']);
            if trimmed == "\u{4}" || data.len() >= MAX_DATA_LINES {
                break;
            }
            if !trimmed.trim().is_empty() {
                data.push(trimmed.to_owned());
            }
        }
    }
    let answer = match Command::parse(&line, &data) {
        Ok(command) => execute(context, command).await,
        Err(error) => format!("error {error}\n"),
    };
    writer.write_all(answer.as_bytes()).await?;
    writer.shutdown().await
}

/// Serve the remote control on every socket and address of `config` until
/// the task is dropped. Fails when one cannot be bound (a stale unix socket
/// file is replaced first).
pub async fn serve(config: &RemoteControlConfig, context: ControlContext) -> std::io::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for path in &config.sockets {
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let listener = tokio::net::UnixListener::bind(path)?;
        let context = context.clone();
        tasks.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let context = context.clone();
                tokio::spawn(async move {
                    if let Err(error) = handle(&context, stream).await {
                        tracing::debug!("remote control connection: {error}");
                    }
                });
            }
        });
    }
    let acceptor = config.tls.as_ref().map(ControlTls::acceptor).transpose()?;
    for address in &config.addresses {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let context = context.clone();
        let acceptor = acceptor.clone();
        tasks.spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else { continue };
                let context = context.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let result = match acceptor {
                        None => handle(&context, stream).await,
                        // A client that does not finish the handshake in time is dropped.
                        Some(acceptor) => {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => handle(&context, stream).await,
                                Ok(Err(error)) => Err(error),
                                Err(elapsed) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, elapsed)),
                            }
                        }
                    };
                    if let Err(error) = result {
                        tracing::debug!(%peer, "remote control connection: {error}");
                    }
                });
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_as_unbound_control_sends_them() {
        assert_eq!(Command::parse(" status", &[]), Ok(Command::Status));
        assert_eq!(
            Command::parse(" local_data www.example. 300 IN A 192.0.2.1", &[]),
            Ok(Command::LocalData(vec!["www.example. 300 IN A 192.0.2.1".into()]))
        );
        assert_eq!(
            Command::parse(" forward_add +i corp.example 192.0.2.1 192.0.2.2@5353", &[]),
            Ok(Command::ForwardAdd {
                name: "corp.example".into(),
                servers: vec!["192.0.2.1".into(), "192.0.2.2@5353".into()],
                stub: false
            })
        );
        assert_eq!(
            Command::parse(" local_zones", &["a.example static".into(), "b.example refuse".into()]),
            Ok(Command::LocalZone(vec![("a.example".into(), "static".into()), ("b.example".into(), "refuse".into())]))
        );
        assert!(Command::takes_data(" local_datas"));
        assert!(Command::parse(" local_zone a.example", &[]).unwrap_err().contains("missing argument"));
        assert!(Command::parse(" frobnicate", &[]).unwrap_err().contains("unknown command"));
        assert!(Command::parse("", &[]).is_err());
    }
}
