//! Zone transfers and NOTIFY for zones an application serves: a
//! [`QueryHandler`] that answers AXFR and IXFR (RFC 5936, RFC 1995) from
//! the zones it is given, to allowed clients and keys, and takes NOTIFY
//! (RFC 1996) for secondary zones from their primaries.
//!
//! ```no_run
//! use std::sync::Arc;
//! use signpost_rules::Zone;
//! use signpost_server::{Server, transfer::{TransferPolicy, ZoneTransfers}};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let zone = Arc::new(Zone::new("example.".parse()?));
//! let transfers = Arc::new(ZoneTransfers::new());
//! transfers.serve(zone, TransferPolicy { allow: vec!["127.0.0.0/8".parse()?], ..TransferPolicy::default() });
//! let server = Server::builder().udp_and_tcp("127.0.0.1:0".parse()?).query_handler(transfers.clone()).start().await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use ipnet::IpNet;
use signpost_rules::{Transport, Zone};
use signpost_wire::{
    Class, Flags, IxfrDiff, MAX_MESSAGE_LEN, Message, MessageBuilder, NameBuf, Opcode, Rcode, RecordBuf, RecordType,
    Section, TSIG_FAILURE_RCODE, TransferWriter, TsigKey, TsigSession, soa_serial,
};
use tokio::sync::Notify;

use crate::hook::{Handled, HandlerQuery, QueryHandler};

/// A TSIG key as configuration files give it (`[[tsig_keys]]` in the
/// binaries' TOML, BIND's and Knot's `key` clauses): a name, an algorithm
/// and a base64 secret. The secret never appears in `Debug` output.
#[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TsigKeyConfig {
    /// The key's name (`transfer.`), which both peers must spell the same.
    pub name: String,
    /// `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    #[serde(default = "default_tsig_algorithm")]
    pub algorithm: String,
    /// The secret, in base64.
    pub secret: String,
}

fn default_tsig_algorithm() -> String {
    "hmac-sha256".into()
}

impl std::fmt::Debug for TsigKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKeyConfig")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl TsigKeyConfig {
    /// The key, or what is wrong with the entry.
    pub fn key(&self) -> Result<TsigKey, &'static str> {
        let name: NameBuf = self.name.parse().map_err(|_| "the key name is not a domain name")?;
        let algorithm = signpost_wire::TsigAlgorithm::from_name(&self.algorithm)
            .ok_or("unknown algorithm (hmac-sha256, hmac-sha384 or hmac-sha512)")?;
        TsigKey::from_base64(name, algorithm, &self.secret).map_err(|_| "the secret is not base64")
    }

    /// Whether this entry is the key called `name` (case and final dot aside).
    pub fn is_named(&self, name: &str) -> bool {
        self.name.trim_end_matches('.').eq_ignore_ascii_case(name.trim_end_matches('.'))
    }
}

/// Room left in each transfer message for the TSIG record.
const TSIG_ROOM: usize = 512;

/// Who may transfer a zone.
#[derive(Clone, Debug, Default)]
pub struct TransferPolicy {
    /// Client networks allowed to transfer; empty refuses everyone.
    pub allow: Vec<IpNet>,
    /// Keys a request may be signed with; a request signed with another key,
    /// or whose MAC fails, is answered NOTAUTH with the TSIG error.
    pub keys: Vec<TsigKey>,
    /// Refuse unsigned requests even from allowed networks.
    pub require_key: bool,
}

impl TransferPolicy {
    fn allows(&self, peer: IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(&peer))
    }
}

/// Who may send NOTIFY for a secondary zone, and what it wakes.
#[derive(Clone, Debug)]
pub struct NotifyPolicy {
    /// Primaries allowed to notify (Unbound's `allow-notify`, plus the primaries themselves).
    pub allow: Vec<IpNet>,
    /// Keys a NOTIFY may be signed with.
    pub keys: Vec<TsigKey>,
    /// Woken by each accepted NOTIFY: the zone's refresh task waits on it.
    pub wake: Arc<Notify>,
}

#[derive(Clone, Debug, Default)]
struct ServedZone {
    zone: Option<Arc<Zone>>,
    transfer: Option<TransferPolicy>,
    notify: Option<NotifyPolicy>,
    /// The differences between the last versions, oldest first, each
    /// starting where the one before ended (RFC 1995 §4's history).
    history: Arc<Vec<IxfrDiff>>,
}

impl ServedZone {
    /// Take `next` as the zone's data, remembering how it differs from the
    /// version before when it is newer (at most `limit` differences).
    fn replace(&mut self, next: Option<Arc<Zone>>, limit: usize) {
        if let (Some(previous), Some(next)) = (&self.zone, &next) {
            let (old, new) = (previous.serial(), next.serial());
            if new.is_newer_than(old) && limit > 0 {
                let mut history = Vec::clone(&self.history);
                history.push(difference(previous, next));
                let excess = history.len().saturating_sub(limit);
                history.drain(..excess);
                self.history = Arc::new(history);
            } else if new != old || previous != next {
                // An older or unrelated version, or other data under the
                // same serial: the differences no longer chain.
                self.history = Arc::default();
            }
        }
        if next.is_none() {
            // Withdrawn (a secondary with no usable copy): nothing to chain from.
            self.history = Arc::default();
        }
        self.zone = next;
    }

    /// The differences from `client` to the current version, when the history reaches back that far.
    fn changes_since(&self, client: signpost_wire::Serial) -> Option<&[IxfrDiff]> {
        let current = self.zone.as_ref()?.serial();
        let start = self.history.iter().position(|diff| soa_serial(&diff.from) == Some(client))?;
        let since = self.history.get(start..)?;
        let chained = since.windows(2).all(|pair| match pair {
            [earlier, later] => soa_serial(&earlier.to) == soa_serial(&later.from),
            _ => true,
        });
        let ends_current = since.last().is_some_and(|last| soa_serial(&last.to) == Some(current));
        (chained && ends_current).then_some(since)
    }
}

/// What changed between two versions of a zone, as one IXFR difference sequence.
fn difference(old: &Zone, new: &Zone) -> IxfrDiff {
    let without_soa = |zone: &Zone| -> std::collections::HashSet<RecordBuf> {
        zone.records().filter(|record| record.rtype() != RecordType::SOA).cloned().collect()
    };
    let (before, after) = (without_soa(old), without_soa(new));
    let in_order = |zone: &Zone, other: &std::collections::HashSet<RecordBuf>| -> Vec<RecordBuf> {
        zone.records().filter(|record| record.rtype() != RecordType::SOA && !other.contains(*record)).cloned().collect()
    };
    IxfrDiff {
        from: old.soa().clone(),
        deleted: in_order(old, &after),
        to: new.soa().clone(),
        added: in_order(new, &before),
    }
}

/// How many differences each zone keeps for IXFR unless told otherwise.
pub const DEFAULT_IXFR_HISTORY: usize = 16;

/// The zones this server gives out by transfer and takes NOTIFY for.
/// Changed at run time with [`ZoneTransfers::serve`], [`ZoneTransfers::update`]
/// and [`ZoneTransfers::remove`]; readers never wait.
#[derive(Debug)]
pub struct ZoneTransfers {
    zones: ArcSwap<BTreeMap<NameBuf, ServedZone>>,
    history_limit: usize,
}

impl Default for ZoneTransfers {
    fn default() -> Self {
        Self { zones: ArcSwap::default(), history_limit: DEFAULT_IXFR_HISTORY }
    }
}

impl ZoneTransfers {
    /// No zones.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep the last `limit` differences of each zone for IXFR (default
    /// [`DEFAULT_IXFR_HISTORY`]; 0 answers every IXFR from an older serial
    /// with the whole zone).
    pub fn with_history(mut self, limit: usize) -> Self {
        self.history_limit = limit;
        self
    }

    fn change(&self, apex: &NameBuf, edit: impl Fn(&mut ServedZone)) {
        let key = apex.to_lowercase();
        self.zones.rcu(|zones| {
            let mut zones = BTreeMap::clone(zones);
            edit(zones.entry(key.clone()).or_default());
            zones
        });
    }

    /// Give out `zone` by transfer under `policy` (replacing what was served for its apex).
    pub fn serve(&self, zone: Arc<Zone>, policy: TransferPolicy) {
        let apex = zone.apex().clone();
        let limit = self.history_limit;
        self.change(&apex, |served| {
            served.replace(Some(zone.clone()), limit);
            served.transfer = Some(policy.clone());
        });
    }

    /// Replace the data of a zone (a new version from reload, the API or a
    /// transfer); `None` while a secondary has no usable copy.
    pub fn update(&self, apex: &NameBuf, zone: Option<Arc<Zone>>) {
        let limit = self.history_limit;
        self.change(apex, |served| served.replace(zone.clone(), limit));
    }

    /// Take NOTIFY for `apex` from the peers and keys of `policy`.
    pub fn accept_notify(&self, apex: &NameBuf, policy: NotifyPolicy) {
        self.change(apex, |served| served.notify = Some(policy.clone()));
    }

    /// Stop giving `apex` out by transfer (NOTIFY for it is still taken if it was).
    pub fn withdraw(&self, apex: &NameBuf) {
        self.change(apex, |served| {
            served.transfer = None;
            if served.notify.is_none() {
                served.zone = None;
                served.history = Arc::default();
            }
        });
        self.forget_if_idle(apex);
    }

    /// Stop taking NOTIFY for `apex` (it is still given out if it was).
    pub fn refuse_notify(&self, apex: &NameBuf) {
        self.change(apex, |served| served.notify = None);
        self.forget_if_idle(apex);
    }

    /// Whether `apex` is given out by transfer.
    pub fn serves(&self, apex: &NameBuf) -> bool {
        self.zones.load().get(&apex.to_lowercase()).is_some_and(|served| served.transfer.is_some())
    }

    fn forget_if_idle(&self, apex: &NameBuf) {
        let key = apex.to_lowercase();
        self.zones.rcu(|zones| {
            let mut zones = BTreeMap::clone(zones);
            if zones.get(&key).is_some_and(|served| served.transfer.is_none() && served.notify.is_none()) {
                zones.remove(&key);
            }
            zones
        });
    }

    /// Stop serving and taking NOTIFY for `apex`.
    pub fn remove(&self, apex: &NameBuf) {
        let key = apex.to_lowercase();
        self.zones.rcu(|zones| {
            let mut zones = BTreeMap::clone(zones);
            zones.remove(&key);
            zones
        });
    }

    /// The current copy of a zone, if any.
    pub fn zone(&self, apex: &NameBuf) -> Option<Arc<Zone>> {
        self.zones.load().get(&apex.to_lowercase()).and_then(|served| served.zone.clone())
    }

    fn answer_transfer(&self, query: &HandlerQuery<'_>, apex: NameBuf, qtype: RecordType) -> Handled {
        let zones = self.zones.load();
        let served = zones.get(&apex.to_lowercase());
        let (Some(zone), Some(policy)) =
            (served.and_then(|served| served.zone.clone()), served.and_then(|served| served.transfer.as_ref()))
        else {
            // Not a zone given out here: never forwarded, never looked up.
            return respond(&query.message, Rcode::REFUSED, None);
        };
        if !policy.allows(query.peer.ip()) {
            return respond(&query.message, Rcode::REFUSED, None);
        }
        let bytes = query.message.as_bytes();
        let mut session = match TsigSession::verify_request(&policy.keys, bytes, unix_now()) {
            Ok(session) => session,
            Err(signpost_wire::Error::Tsig { problem }) => return tsig_failure(&query.message, &policy.keys, problem),
            Err(_) => return respond(&query.message, Rcode::FORMERR, None),
        };
        if policy.require_key && session.is_none() {
            return respond(&query.message, Rcode::REFUSED, None);
        }
        let stream_transport = matches!(query.transport, Transport::Tcp | Transport::Dot);
        if qtype == RecordType::AXFR && !stream_transport {
            // AXFR is a TCP-only exchange (RFC 5936 §4.2).
            return respond(&query.message, Rcode::REFUSED, session.as_mut());
        }
        let soa = zone.soa().clone();
        if qtype == RecordType::IXFR {
            let client = client_serial(&query.message);
            let current = client.zip(soa_serial(&soa)).is_some_and(|(client, ours)| !ours.is_newer_than(client));
            // Up to date, or over UDP: the SOA alone (RFC 1995 §2: a client
            // that is behind then asks again over TCP).
            if current || !stream_transport {
                return soa_only(&query.message, &soa, session.as_mut());
            }
        }
        // IXFR: the differences since the client's serial when the history
        // reaches back that far; otherwise the whole zone in AXFR form (RFC 1995 §4).
        let incremental = (qtype == RecordType::IXFR)
            .then(|| client_serial(&query.message))
            .flatten()
            .and_then(|client| served.and_then(|served| served.changes_since(client)));
        let records: Vec<RecordBuf> = match incremental {
            Some(diffs) => {
                let mut records = vec![soa.clone()];
                for diff in diffs {
                    records.push(diff.from.clone());
                    records.extend(diff.deleted.iter().cloned());
                    records.push(diff.to.clone());
                    records.extend(diff.added.iter().cloned());
                }
                records.push(soa.clone());
                records
            }
            None => zone.axfr().cloned().collect(),
        };
        tracing::info!(
            zone = %apex, peer = %query.peer, %qtype, serial = %zone.serial(), records = records.len(),
            incremental = incremental.is_some(), signed = session.is_some(), "zone transfer out"
        );
        let Ok(writer) = TransferWriter::new(&query.message, records.len()) else {
            return respond(&query.message, Rcode::FORMERR, None);
        };
        let limit = if session.is_some() { MAX_MESSAGE_LEN - TSIG_ROOM } else { MAX_MESSAGE_LEN };
        Handled::Stream(Box::new(TransferMessages { writer: writer.with_limit(limit), records, session, done: false }))
    }

    /// A signed SOA query for a zone given out here: the SOA, signed
    /// (a secondary's refresh check, RFC 8945 §5.3). Unsigned ones go to
    /// the rules like any question.
    fn answer_signed_soa(&self, query: &HandlerQuery<'_>, apex: &NameBuf) -> Option<Handled> {
        let zones = self.zones.load();
        let served = zones.get(&apex.to_lowercase())?;
        let (zone, policy) = (served.zone.as_ref()?, served.transfer.as_ref()?);
        if policy.keys.is_empty() || !policy.allows(query.peer.ip()) {
            return None;
        }
        match TsigSession::verify_request(&policy.keys, query.message.as_bytes(), unix_now()) {
            Ok(Some(mut session)) => Some(soa_only(&query.message, zone.soa(), Some(&mut session))),
            Ok(None) => None,
            Err(signpost_wire::Error::Tsig { problem }) => Some(tsig_failure(&query.message, &policy.keys, problem)),
            Err(_) => Some(respond(&query.message, Rcode::FORMERR, None)),
        }
    }

    fn answer_notify(&self, query: &HandlerQuery<'_>, apex: NameBuf) -> Handled {
        let zones = self.zones.load();
        let Some(policy) = zones.get(&apex.to_lowercase()).and_then(|served| served.notify.as_ref()) else {
            return respond(&query.message, Rcode::NOTAUTH, None);
        };
        if !policy.allow.iter().any(|net| net.contains(&query.peer.ip())) {
            return respond(&query.message, Rcode::REFUSED, None);
        }
        let mut session = match TsigSession::verify_request(&policy.keys, query.message.as_bytes(), unix_now()) {
            Ok(session) => session,
            Err(signpost_wire::Error::Tsig { problem }) => return tsig_failure(&query.message, &policy.keys, problem),
            Err(_) => return respond(&query.message, Rcode::FORMERR, None),
        };
        if !policy.keys.is_empty() && session.is_none() {
            return respond(&query.message, Rcode::REFUSED, None);
        }
        tracing::info!(zone = %apex, peer = %query.peer, "NOTIFY accepted; checking the primary");
        policy.wake.notify_one();
        respond(&query.message, Rcode::NOERROR, session.as_mut())
    }
}

impl QueryHandler for ZoneTransfers {
    fn handle(&self, query: &HandlerQuery<'_>) -> Option<Handled> {
        let opcode = query.message.opcode();
        if opcode != Opcode::QUERY && opcode != Opcode::NOTIFY {
            return None;
        }
        let question = query.message.first_question().ok().flatten()?;
        // Every query passes through here: the name is copied out (an
        // allocation) only for the few this handler answers.
        if opcode == Opcode::NOTIFY {
            return Some(self.answer_notify(query, question.name().to_name_buf()));
        }
        match question.qtype() {
            qtype @ (RecordType::AXFR | RecordType::IXFR) => {
                Some(self.answer_transfer(query, question.name().to_name_buf(), qtype))
            }
            RecordType::SOA => self.answer_signed_soa(query, &question.name().to_name_buf()),
            _ => None,
        }
    }
}

/// The serial of the SOA an IXFR query carries in its authority section.
fn client_serial(message: &Message<'_>) -> Option<signpost_wire::Serial> {
    let record = message.authority().ok()?.flatten().find(|record| record.rtype() == RecordType::SOA)?;
    soa_serial(&RecordBuf::from_record(&record).ok()?)
}

/// The messages of one transfer, made as the connection takes them.
struct TransferMessages {
    writer: TransferWriter,
    records: Vec<RecordBuf>,
    session: Option<TsigSession>,
    done: bool,
}

impl Iterator for TransferMessages {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        let mut message = Vec::with_capacity(16 * 1024);
        match self.writer.write_next(&mut message, &self.records) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(error) => {
                // The stream stops short; the client sees no closing SOA and keeps its copy.
                tracing::warn!(%error, "zone transfer stopped");
                self.done = true;
                return None;
            }
        }
        if let Some(session) = self.session.as_mut()
            && let Err(error) = session.sign_response(&mut message, unix_now())
        {
            tracing::warn!(%error, "zone transfer stopped: cannot sign");
            self.done = true;
            return None;
        }
        Some(message)
    }
}

/// A response with only a header and the question, signed when the request was.
fn respond(query: &Message<'_>, rcode: Rcode, session: Option<&mut TsigSession>) -> Handled {
    let mut out = Vec::with_capacity(128);
    let Ok(mut builder) = MessageBuilder::response_header_to(&mut out, query.header()) else { return Handled::Drop };
    if let Ok(Some(question)) = query.first_question() {
        let _ = builder.push_question(&question.name(), question.qtype(), question.qclass());
    }
    builder.set_flags(Flags::default().with_qr(true).with_aa(rcode == Rcode::NOERROR).with_opcode(query.opcode()));
    builder.set_rcode(rcode);
    if builder.finish().is_err() {
        return Handled::Drop;
    }
    if let Some(session) = session
        && session.sign_response(&mut out, unix_now()).is_err()
    {
        return Handled::Drop;
    }
    Handled::Message(out)
}

/// The SOA alone: the answer to an IXFR from a client that is current.
fn soa_only(query: &Message<'_>, soa: &RecordBuf, session: Option<&mut TsigSession>) -> Handled {
    let mut out = Vec::with_capacity(256);
    let Ok(mut builder) = MessageBuilder::response_to(&mut out, query) else { return Handled::Drop };
    builder.set_flags(Flags::default().with_qr(true).with_aa(true).with_opcode(query.opcode()));
    if builder.push_record_buf(Section::Answer, soa).is_err() || builder.finish().is_err() {
        return Handled::Drop;
    }
    if let Some(session) = session
        && session.sign_response(&mut out, unix_now()).is_err()
    {
        return Handled::Drop;
    }
    Handled::Message(out)
}

/// NOTAUTH with a TSIG record naming the error (RFC 8945 §5.2): unsigned
/// for BADKEY and BADSIG, signed with the request's key (one of `keys`) for BADTIME.
fn tsig_failure(query: &Message<'_>, keys: &[TsigKey], problem: signpost_wire::TsigProblem) -> Handled {
    tracing::info!(%problem, "TSIG verification failed");
    let Handled::Message(mut out) = respond(query, TSIG_FAILURE_RCODE, None) else { return Handled::Drop };
    match TsigSession::error_response(keys, query.as_bytes(), problem, &mut out, unix_now()) {
        Ok(()) => Handled::Message(out),
        Err(_) => Handled::Message(out),
    }
}

/// Seconds since the Unix epoch, for TSIG.
fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

/// The NOTIFY message for `apex` (RFC 1996 §3.7: the SOA in the answer
/// section as a hint), for [`signpost_upstream::TransferClient`]-style
/// senders and tests.
pub fn notify_message(id: u16, apex: &NameBuf, soa: Option<&RecordBuf>) -> Result<Vec<u8>, signpost_wire::Error> {
    let mut out = Vec::with_capacity(128);
    let mut builder = MessageBuilder::new(&mut out)?;
    builder.set_id(id);
    builder.set_flags(Flags::default().with_aa(true).with_opcode(Opcode::NOTIFY));
    builder.push_question(apex, RecordType::SOA, Class::IN)?;
    if let Some(soa) = soa {
        builder.push_record_buf(Section::Answer, soa)?;
    }
    builder.finish()?;
    Ok(out)
}

/// The address a NOTIFY went to and what came back, for logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyOutcome {
    /// The secondary.
    pub server: SocketAddr,
    /// Its rcode, or `None` when it did not answer.
    pub rcode: Option<Rcode>,
}

/// How NOTIFY is sent again while a secondary does not answer. RFC 1996
/// §3.6 leaves the interval and the number of retransmissions to the
/// operator, suggests at most 5 retransmissions over UDP and allows
/// exponential backoff; the default does that: 5 retransmissions, waiting
/// 2, 4, 8, 16, 32 and then 60 seconds for an answer (about two minutes in
/// all, then the secondary's own refresh timer takes over).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifySchedule {
    /// Sends after the first.
    pub retransmissions: u32,
    /// How long to wait for an answer to the first send; doubled after each.
    pub first_wait: std::time::Duration,
    /// The longest wait.
    pub longest_wait: std::time::Duration,
}

impl Default for NotifySchedule {
    fn default() -> Self {
        Self {
            retransmissions: 5,
            first_wait: std::time::Duration::from_secs(2),
            longest_wait: std::time::Duration::from_secs(60),
        }
    }
}

impl NotifySchedule {
    /// How long to wait after each send, in order.
    fn waits(self) -> impl Iterator<Item = std::time::Duration> {
        let mut wait = self.first_wait;
        (0..=self.retransmissions).map(move |_| {
            let this = wait.min(self.longest_wait);
            wait = wait.saturating_mul(2);
            this
        })
    }
}

/// Tell each secondary in `targets` that `apex` changed (RFC 1996): one
/// NOTIFY over UDP each, all at once, signed with `key` if given, sent
/// again on `schedule` until answered. Returns what each answered.
pub async fn send_notify(
    targets: &[SocketAddr],
    apex: &NameBuf,
    soa: Option<&RecordBuf>,
    key: Option<&TsigKey>,
    schedule: NotifySchedule,
) -> Vec<NotifyOutcome> {
    let sends = targets.iter().map(|&server| async move {
        let rcode = notify_one(server, apex, soa, key, schedule).await;
        match rcode {
            Some(rcode) => tracing::info!(zone = %apex, %server, %rcode, "NOTIFY answered"),
            None => tracing::warn!(zone = %apex, %server, "NOTIFY not answered"),
        }
        NotifyOutcome { server, rcode }
    });
    futures_util::future::join_all(sends).await
}

async fn notify_one(
    server: SocketAddr,
    apex: &NameBuf,
    soa: Option<&RecordBuf>,
    key: Option<&TsigKey>,
    schedule: NotifySchedule,
) -> Option<Rcode> {
    let bind: SocketAddr =
        if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = tokio::net::UdpSocket::bind(bind).await.ok()?;
    socket.connect(server).await.ok()?;
    let id = rand::random::<u16>();
    let mut message = notify_message(id, apex, soa).ok()?;
    let mut session = match key {
        Some(key) => Some(TsigSession::sign_request(key, &mut message, unix_now()).ok()?),
        None => None,
    };
    let mut buffer = vec![0u8; 4096];
    for wait in schedule.waits() {
        socket.send(&message).await.ok()?;
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Ok(len)) = tokio::time::timeout_at(deadline, socket.recv(&mut buffer)).await {
            let answer = buffer.get(..len)?;
            let Ok(parsed) = Message::parse(answer) else { continue };
            if parsed.id() != id || !parsed.flags().qr() || parsed.opcode() != Opcode::NOTIFY {
                continue;
            }
            if let Some(session) = session.as_mut()
                && let Err(error) = session.verify_response(answer, unix_now())
            {
                tracing::info!(zone = %apex, %server, %error, "NOTIFY answer ignored: its TSIG does not verify");
                continue;
            }
            return parsed.rcode().ok();
        }
    }
    None
}

/// Sends NOTIFY for the zones an application gives out, one task per
/// zone: a newer version of a zone replaces a NOTIFY still being retried
/// for the one before (the secondaries need hear only of the latest).
/// Dropping the notifier stops what is still being sent.
#[derive(Debug, Default)]
pub struct Notifier {
    schedule: NotifySchedule,
    pending: std::sync::Mutex<BTreeMap<NameBuf, tokio::task::JoinHandle<Vec<NotifyOutcome>>>>,
}

impl Notifier {
    /// A notifier retrying on `schedule`.
    pub fn new(schedule: NotifySchedule) -> Self {
        Self { schedule, pending: std::sync::Mutex::default() }
    }

    /// Tell `targets` that `apex` is now at `soa` (signed with `key`), on
    /// the current tokio runtime; what each answers goes to the log.
    pub fn notify(&self, apex: &NameBuf, soa: RecordBuf, targets: Vec<SocketAddr>, key: Option<TsigKey>) {
        if targets.is_empty() {
            return;
        }
        let schedule = self.schedule;
        tracing::info!(zone = %apex, serial = %soa_serial(&soa).unwrap_or_default(), secondaries = targets.len(), "sending NOTIFY");
        let name = apex.clone();
        let task = tokio::spawn(async move { send_notify(&targets, &name, Some(&soa), key.as_ref(), schedule).await });
        let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        pending.retain(|_, task| !task.is_finished());
        if let Some(older) = pending.insert(apex.to_lowercase(), task) {
            older.abort();
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        let pending = self.pending.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        for task in pending.values() {
            task.abort();
        }
    }
}

/// A secondary zone: copied from its primaries by transfer, refreshed on
/// the SOA's refresh and retry timers and on NOTIFY, and given up after
/// the SOA's expire time without a successful check (RFC 1035 §4.3.5).
#[derive(Clone, Debug)]
pub struct SecondaryZone {
    /// The zone's apex.
    pub apex: NameBuf,
    /// The primaries, asked in order until one answers.
    pub primaries: Vec<signpost_upstream::TransferClient>,
    /// Where the last good copy is kept (a master file), read at start-up.
    pub copy: Option<std::path::PathBuf>,
    /// Who may send NOTIFY for the zone (the primaries' addresses are added).
    pub allow_notify: Vec<IpNet>,
    /// Keys a NOTIFY may be signed with (empty: unsigned NOTIFY is accepted).
    pub notify_keys: Vec<TsigKey>,
    /// Give the zone out by transfer too, under this policy.
    pub serve: Option<TransferPolicy>,
}

/// What a secondary's task reports each time its copy changes: the new
/// copy, or `None` when it expired (a secondary then answers SERVFAIL).
pub type Publish = Arc<dyn Fn(&NameBuf, Option<Arc<Zone>>) + Send + Sync>;

/// A running secondary: stop it with [`SecondaryTask::stop`], or wake it
/// (as a NOTIFY does) with [`SecondaryTask::check_now`].
#[derive(Debug)]
pub struct SecondaryTask {
    wake: Arc<Notify>,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl SecondaryTask {
    /// Check the primary now.
    pub fn check_now(&self) {
        self.wake.notify_one();
    }

    /// Stop the task and wait for it.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// How long to wait before trying again when there is no SOA to take timers from.
const RETRY_WITHOUT_COPY: std::time::Duration = std::time::Duration::from_secs(30);

impl SecondaryZone {
    /// Start the refresh task on the current runtime: load the last good
    /// copy, register for NOTIFY (and transfers out) with `transfers`, then
    /// check the primaries at once and on every timer or NOTIFY. Each new
    /// copy is saved, given to `transfers` and to `publish`.
    pub fn spawn(self, transfers: Arc<ZoneTransfers>, publish: Publish) -> SecondaryTask {
        let wake = Arc::new(Notify::new());
        let stop = tokio_util::sync::CancellationToken::new();
        let mut allow = self.allow_notify.clone();
        allow.extend(self.primaries.iter().map(|primary| IpNet::from(primary.server().ip())));
        transfers.accept_notify(&self.apex, NotifyPolicy { allow, keys: self.notify_keys.clone(), wake: wake.clone() });
        let task = tokio::spawn(self.run(transfers, publish, wake.clone(), stop.clone()));
        SecondaryTask { wake, stop, task }
    }

    async fn run(
        self,
        transfers: Arc<ZoneTransfers>,
        publish: Publish,
        wake: Arc<Notify>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut zone = self.load_copy();
        if let Some(policy) = &self.serve {
            match &zone {
                Some(zone) => transfers.serve(zone.clone(), policy.clone()),
                None => transfers.serve(Arc::new(Zone::new(self.apex.clone())), policy.clone()),
            }
            if zone.is_none() {
                transfers.update(&self.apex, None);
            }
        }
        if let Some(zone) = &zone {
            tracing::info!(zone = %self.apex, serial = %zone.serial(), "secondary: loaded the last good copy");
            publish(&self.apex, Some(zone.clone()));
        }
        // A copy read from disk counts as checked now: it gets a full expire period.
        let mut checked = std::time::Instant::now();
        let mut expired = false;
        loop {
            let wait = match self.check(zone.as_deref()).await {
                Ok(Some(newer)) => {
                    tracing::info!(zone = %self.apex, serial = %newer.serial(), "secondary: new copy");
                    self.save_copy(&newer);
                    transfers.update(&self.apex, Some(newer.clone()));
                    publish(&self.apex, Some(newer.clone()));
                    zone = Some(newer);
                    checked = std::time::Instant::now();
                    expired = false;
                    timer(zone.as_deref(), |soa| soa.refresh)
                }
                Ok(None) => {
                    checked = std::time::Instant::now();
                    if expired && let Some(zone) = &zone {
                        transfers.update(&self.apex, Some(zone.clone()));
                        publish(&self.apex, Some(zone.clone()));
                        expired = false;
                    }
                    timer(zone.as_deref(), |soa| soa.refresh)
                }
                Err(error) => {
                    tracing::warn!(zone = %self.apex, %error, "secondary: refresh failed");
                    let expire = timer(zone.as_deref(), |soa| soa.expire);
                    if !expired && zone.is_some() && checked.elapsed() >= expire {
                        tracing::warn!(zone = %self.apex, "secondary: expired; answering SERVFAIL until a primary answers");
                        transfers.update(&self.apex, None);
                        publish(&self.apex, None);
                        expired = true;
                    }
                    timer(zone.as_deref(), |soa| soa.retry)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake.notified() => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Ask each primary in turn; `Ok(None)` when the copy is current.
    async fn check(&self, zone: Option<&Zone>) -> Result<Option<Arc<Zone>>, signpost_upstream::Error> {
        let mut last_error = None;
        for primary in &self.primaries {
            match self.check_one(primary, zone).await {
                Ok(result) => return Ok(result),
                Err(error) => last_error = Some(error),
            }
        }
        match last_error {
            Some(error) => Err(error),
            None => Ok(None),
        }
    }

    async fn check_one(
        &self,
        primary: &signpost_upstream::TransferClient,
        zone: Option<&Zone>,
    ) -> Result<Option<Arc<Zone>>, signpost_upstream::Error> {
        let invalid = |error: signpost_rules::Error| {
            tracing::warn!(zone = %self.apex, %error, "secondary: transferred data makes no valid zone");
            signpost_upstream::Error::TransferProtocol {
                server: primary.server(),
                zone: self.apex.to_string(),
                source: signpost_wire::Error::Transfer {
                    message: 0,
                    problem: signpost_wire::TransferProblem::Incomplete,
                },
            }
        };
        let Some(transfer) = primary.refresh(&self.apex, zone.map(Zone::soa)).await? else { return Ok(None) };
        let applied = match zone {
            Some(zone) => zone.apply_transfer(&transfer),
            None => Zone::from_transfer(self.apex.clone(), &transfer),
        };
        match applied {
            Ok(newer) => Ok(Some(Arc::new(newer))),
            Err(error) if matches!(transfer, signpost_wire::Transfer::Incremental { .. }) => {
                tracing::info!(zone = %self.apex, %error, "secondary: IXFR does not apply; falling back to AXFR");
                let full = primary.transfer(&self.apex, &signpost_wire::TransferRequest::Axfr).await?;
                Zone::from_transfer(self.apex.clone(), &full).map(|zone| Some(Arc::new(zone))).map_err(invalid)
            }
            Err(error) => Err(invalid(error)),
        }
    }

    fn load_copy(&self) -> Option<Arc<Zone>> {
        let path = self.copy.as_ref()?;
        let text = std::fs::read_to_string(path).ok()?;
        let loaded = match signpost_rules::parse_records(&text, &self.apex, signpost_rules::Source::file(path)) {
            Ok(records) => Zone::from_records(self.apex.clone(), records.into_iter().map(|(record, _)| record)),
            Err(error) => Err(error),
        };
        match loaded {
            Ok(zone) => Some(Arc::new(zone)),
            Err(error) => {
                tracing::warn!(zone = %self.apex, %error, "secondary: the saved copy cannot be read; transferring anew");
                None
            }
        }
    }

    /// Write the copy next to its final name, then rename, so a crash never leaves half a file.
    fn save_copy(&self, zone: &Zone) {
        let Some(path) = &self.copy else { return };
        let mut text =
            format!("; secondary copy of {} at serial {}, written by signpost\n", zone.apex(), zone.serial());
        for record in zone.records() {
            text.push_str(&record.to_string());
            text.push('\n');
        }
        let temporary = path.with_extension("signpost-tmp");
        let written = std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, path));
        if let Err(error) = written {
            tracing::warn!(zone = %self.apex, path = %path.display(), %error, "secondary: cannot save the copy");
        }
    }
}

/// One of the SOA's timers (at least a second), or a fixed retry without a copy.
fn timer(zone: Option<&Zone>, field: impl Fn(&signpost_wire::Soa<NameBuf>) -> u32) -> std::time::Duration {
    match zone.map(|zone| &zone.soa().data) {
        Some(signpost_wire::RDataBuf::Soa(soa)) => std::time::Duration::from_secs(u64::from(field(soa).max(1))),
        _ => RETRY_WITHOUT_COPY,
    }
}
