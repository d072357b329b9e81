//! The query log: one line per answered query, written by a thread of its
//! own.
//!
//! Every line starts from a neutral [`QueryRecord`] — the fields every
//! resolver logs (time, client, transport, listener, view, question, rcode,
//! answers) plus Signpost's decision [`Trace`]. How a record becomes a line
//! is a [`QueryLogFormat`]: [`JsonLines`] unless an application installs its
//! own with [`ServerBuilder::query_log_format`](crate::ServerBuilder::query_log_format)
//! to add or rename fields.
//!
//! Answering never waits for the log: the response bytes go through a
//! bounded queue, and are dropped (and counted) when the writer falls
//! behind. Records are parsed out of them and formatted on the writer thread.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::SystemTime;

use serde::{Serialize, Serializer};
use signpost_rules::Transport;
use signpost_wire::{Class, Message, Rcode, RecordType};

use crate::config::{LogDestination, QueryLogConfig};
use crate::metrics::Metrics;

/// One upstream attempt, as traced.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TraceAttempt {
    /// Server address.
    pub server: String,
    /// Protocol (udp, tcp, tls, https).
    pub protocol: String,
    /// When the attempt started (RFC 3339).
    pub started: String,
    /// How long it took, in microseconds.
    pub duration_us: u64,
    /// What happened.
    pub outcome: String,
}

/// The DNS Firewall rule that blocked a name of the answer's CNAME or
/// DNAME chain (the name asked itself met none): a query log can name it
/// as it names a rule the question matched.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TraceFirewall {
    /// The rule group's id.
    pub group: String,
    /// The rule's name.
    pub rule: String,
    /// The domain list's id.
    pub list: String,
    /// Its action (`BLOCK`).
    pub action: String,
}

/// Why an answer is what it is: the "why this answer?" trace.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Trace {
    /// The view the client was placed in.
    pub view: String,
    /// The rule, zone or host table that matched (or "default").
    pub matched: String,
    /// What the pipeline did: local, block, cache, forward, stale, servfail,
    /// overloaded (the upstream group had no capacity), refused, formerr, notimp, badvers, drop,
    /// handler (answered by the application's query handler: a zone transfer, a NOTIFY).
    pub decision: String,
    /// The upstream group, for forwarded queries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Cache state: hit, miss, stale, bypass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// What DNSSEC validation decided for a forwarded answer: secure,
    /// insecure or bogus (absent when the answer was not validated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dnssec: Option<String>,
    /// Upstream attempts in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<TraceAttempt>,
    /// The response code sent.
    pub rcode: String,
    /// Extra notes (e.g. why a query was refused or failed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The DNS Firewall rule that blocked a name of the answer's redirection chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firewall_chain: Option<TraceFirewall>,
}

/// Write a value by its `Display` form.
fn as_text<T: std::fmt::Display, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn timestamp_text<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&rfc3339(*time))
}

fn client_address<S: Serializer>(client: &SocketAddr, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&client.ip())
}

fn client_port<S: Serializer>(client: &SocketAddr, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u16(client.port())
}

/// One answer record sent, in presentation form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoggedAnswer {
    /// The owner name.
    pub name: String,
    /// The TTL sent.
    pub ttl: u32,
    /// The record type.
    #[serde(rename = "type", serialize_with = "as_text")]
    pub rtype: RecordType,
    /// The class.
    #[serde(serialize_with = "as_text")]
    pub class: Class,
    /// RDATA in presentation format.
    pub rdata: String,
}

/// One answered query: the neutral core of a query-log line.
///
/// Serialized, it is the [`JsonLines`] format (the client's port as
/// `client_port`):
///
/// ```json
/// {"timestamp":"2025-01-01T12:00:00Z","client":"127.0.0.1","client_port":41871,
///  "transport":"udp","listener":"udp@127.0.0.1:53","view":"default",
///  "query_name":"www.example.com.","query_type":"A","query_class":"IN","rcode":"NOERROR",
///  "answers":[{"name":"www.example.com.","ttl":60,"type":"A","class":"IN","rdata":"192.0.2.1"}],
///  "trace":{"view":"default","matched":"...","decision":"local","rcode":"NOERROR"}}
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryRecord {
    /// When the query arrived (written as RFC 3339, UTC, whole seconds).
    pub timestamp: SystemTime,
    /// The client's address and port.
    pub client: SocketAddr,
    /// How the query arrived.
    pub transport: Transport,
    /// The id of the listener it arrived on.
    pub listener: Arc<str>,
    /// The view the client was placed in (empty when the query was turned
    /// away before one was chosen).
    pub view: String,
    /// The question name as asked.
    pub query_name: String,
    /// The question type.
    pub query_type: RecordType,
    /// The question class.
    pub query_class: Class,
    /// The response code sent.
    pub rcode: Rcode,
    /// The answer records sent.
    pub answers: Vec<LoggedAnswer>,
    /// Signpost's decision trace.
    pub trace: Trace,
}

impl Serialize for QueryRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        NeutralLine {
            timestamp: &self.timestamp,
            client: &self.client,
            client_port: &self.client,
            transport: self.transport,
            listener: &self.listener,
            view: &self.view,
            query_name: &self.query_name,
            query_type: self.query_type,
            query_class: self.query_class,
            rcode: self.rcode,
            answers: &self.answers,
            trace: &self.trace,
        }
        .serialize(serializer)
    }
}

/// The neutral line's fields, in order.
#[derive(Serialize)]
struct NeutralLine<'a> {
    #[serde(serialize_with = "timestamp_text")]
    timestamp: &'a SystemTime,
    #[serde(serialize_with = "client_address")]
    client: &'a SocketAddr,
    #[serde(serialize_with = "client_port")]
    client_port: &'a SocketAddr,
    transport: Transport,
    listener: &'a str,
    view: &'a str,
    query_name: &'a str,
    #[serde(serialize_with = "as_text")]
    query_type: RecordType,
    #[serde(serialize_with = "as_text")]
    query_class: Class,
    #[serde(serialize_with = "as_text")]
    rcode: Rcode,
    answers: &'a [LoggedAnswer],
    trace: &'a Trace,
}

impl QueryRecord {
    /// The record of `response`, sent to `client` for a query received at
    /// `timestamp`; `None` when the response has no question to log.
    fn from_response(entry: Entry) -> Option<Self> {
        let message = Message::parse(&entry.response).ok()?;
        let question = message.first_question().ok()??;
        let rcode = message.rcode().unwrap_or(Rcode::SERVFAIL);
        // A zone transfer is logged by its first message: the opening SOA
        // says which version went out; the rest of the zone stays out of the log.
        let transfer = matches!(question.qtype(), RecordType::AXFR | RecordType::IXFR);
        let mut answers = Vec::new();
        for record in message.answers().ok()?.flatten().take(if transfer { 1 } else { usize::MAX }) {
            if let Ok(data) = record.data() {
                answers.push(LoggedAnswer {
                    name: record.name().to_string(),
                    ttl: record.ttl(),
                    rtype: record.rtype(),
                    class: record.class(),
                    rdata: data.to_string(),
                });
            }
        }
        let mut trace = entry.trace;
        if trace.rcode.is_empty() {
            trace.rcode = rcode.to_string();
        }
        if trace.decision.is_empty() {
            trace.decision = trace.rcode.to_lowercase();
        }
        Some(Self {
            timestamp: entry.timestamp,
            client: entry.client,
            transport: entry.transport,
            listener: entry.listener,
            view: trace.view.clone(),
            query_name: question.name().to_string(),
            query_type: question.qtype(),
            query_class: question.qclass(),
            rcode,
            answers,
            trace,
        })
    }
}

/// How a [`QueryRecord`] becomes a line. An application adds fields to
/// the neutral ones by flattening the record into its own line, or renames
/// them by writing the line it wants from the record's fields:
///
/// ```
/// use std::io;
/// use signpost_server::querylog::{QueryLogFormat, QueryRecord};
///
/// /// The neutral line with the tenant in front.
/// struct WithTenant(String);
///
/// impl QueryLogFormat for WithTenant {
///     fn write_line(&self, record: &QueryRecord, out: &mut dyn io::Write) -> io::Result<()> {
///         #[derive(serde::Serialize)]
///         struct Line<'a> {
///             tenant: &'a str,
///             #[serde(flatten)]
///             record: &'a QueryRecord,
///         }
///         serde_json::to_writer(out, &Line { tenant: &self.0, record }).map_err(io::Error::from)
///     }
/// }
/// ```
pub trait QueryLogFormat: Send + Sync {
    /// Write `record` as one line, without the line break.
    fn write_line(&self, record: &QueryRecord, out: &mut dyn Write) -> io::Result<()>;
}

/// The neutral format: one JSON object per line, the [`QueryRecord`] as
/// it serializes.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLines;

impl QueryLogFormat for JsonLines {
    fn write_line(&self, record: &QueryRecord, out: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer(out, record).map_err(io::Error::from)
    }
}

/// A query to log, as the pipeline hands it over: the response bytes, not
/// yet parsed.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) timestamp: SystemTime,
    pub(crate) client: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) listener: Arc<str>,
    pub(crate) response: Box<[u8]>,
    pub(crate) trace: Trace,
}

/// The sending side of the log; cheap to clone. It feeds one writer per
/// configured destination, each optionally limited to some views.
#[derive(Clone)]
pub(crate) struct QueryLog {
    sinks: Vec<Sink>,
    metrics: Arc<Metrics>,
}

#[derive(Clone)]
struct Sink {
    sender: SyncSender<Entry>,
    forwarded: bool,
    views: Vec<String>,
}

impl Sink {
    fn wants(&self, entry: &Entry, forwarded: bool) -> bool {
        (!forwarded || self.forwarded) && (self.views.is_empty() || self.views.contains(&entry.trace.view))
    }
}

impl QueryLog {
    /// Start one writer thread per configuration, each writing lines in `format`.
    pub(crate) fn start_all(
        configs: &[QueryLogConfig],
        format: Arc<dyn QueryLogFormat>,
        metrics: Arc<Metrics>,
    ) -> io::Result<Self> {
        let mut sinks = Vec::with_capacity(configs.len());
        for config in configs {
            let writer: Box<dyn Write + Send> = match &config.destination {
                LogDestination::Stdout => Box::new(io::stdout()),
                LogDestination::File(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
            };
            let (sender, receiver) = sync_channel(config.queue.max(1));
            let format = format.clone();
            std::thread::Builder::new()
                .name("signpost-querylog".into())
                .spawn(move || write_lines(receiver, writer, &*format))?;
            sinks.push(Sink { sender, forwarded: config.forwarded, views: config.views.clone() });
        }
        Ok(Self { sinks, metrics })
    }

    /// Whether forwarded queries are logged (by any destination).
    pub(crate) fn logs_forwarded(&self) -> bool {
        self.sinks.iter().any(|sink| sink.forwarded)
    }

    /// Queue an entry for every destination that takes its view (and, for
    /// a forwarded or cached query, logs those); drops it (counted) where
    /// the writer is behind.
    pub(crate) fn log(&self, entry: Entry, forwarded: bool) {
        let mut previous: Option<&Sink> = None;
        for sink in self.sinks.iter().filter(|sink| sink.wants(&entry, forwarded)) {
            if let Some(earlier) = previous.replace(sink) {
                self.send(earlier, entry.clone());
            }
        }
        if let Some(last) = previous {
            self.send(last, entry);
        }
    }

    fn send(&self, sink: &Sink, entry: Entry) {
        match sink.sender.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.metrics.log_dropped(),
        }
    }
}

fn write_lines(receiver: Receiver<Entry>, writer: Box<dyn Write + Send>, format: &dyn QueryLogFormat) {
    let mut writer = BufWriter::new(writer);
    let mut line = Vec::with_capacity(1024);
    while let Ok(entry) = receiver.recv() {
        let mut next = Some(entry);
        while let Some(entry) = next {
            if let Some(record) = QueryRecord::from_response(entry) {
                line.clear();
                if format.write_line(&record, &mut line).is_ok() {
                    line.push(b'\n');
                    let _ = writer.write_all(&line);
                }
            }
            next = receiver.try_recv().ok();
        }
        // Flush whenever the queue runs dry, so lines appear promptly.
        let _ = writer.flush();
    }
    let _ = writer.flush();
}

/// Format a time as RFC 3339 in UTC with seconds precision
/// (`2021-02-04T17:51:55Z`).
pub fn rfc3339(time: SystemTime) -> String {
    let whole_seconds = jiff::Timestamp::try_from(time)
        .and_then(|timestamp| jiff::Timestamp::from_second(timestamp.as_second()))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    whole_seconds.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    use signpost_wire::{MessageBuilder, NameBuf, RData, Section};

    /// The response to `example.com. A` with one A record.
    fn response() -> Box<[u8]> {
        let mut query = Vec::new();
        let mut builder = MessageBuilder::new(&mut query).expect("builder");
        let name: NameBuf = "example.com".parse().expect("name");
        builder.push_question(&name, RecordType::A, Class::IN).expect("question");
        builder.finish().expect("query");
        let query = Message::parse(&query).expect("parse");
        let mut response = Vec::new();
        let mut builder = MessageBuilder::response_to(&mut response, &query).expect("builder");
        builder.push(Section::Answer, &name, Class::IN, 60, &RData::A("192.0.2.1".parse().expect("a"))).expect("a");
        builder.finish().expect("response");
        response.into()
    }

    /// A UDP query for `example.com. A` from 127.0.0.1:5353 in `view`.
    fn entry(view: &str) -> Entry {
        Entry {
            timestamp: UNIX_EPOCH + Duration::from_secs(1_612_461_115),
            client: "127.0.0.1:5353".parse().expect("address"),
            transport: Transport::Udp,
            listener: Arc::from("udp@127.0.0.1:53"),
            response: response(),
            trace: Trace { view: view.into(), decision: "local".into(), ..Trace::default() },
        }
    }

    fn config(path: std::path::PathBuf, views: &[&str], forwarded: bool) -> QueryLogConfig {
        QueryLogConfig {
            enabled: true,
            destination: LogDestination::File(path),
            forwarded,
            queue: 16,
            views: views.iter().map(|view| (*view).to_string()).collect(),
        }
    }

    /// The lines in `path`, once `count` are there (or after two seconds).
    fn lines(path: &std::path::Path, count: usize) -> Vec<String> {
        let mut lines = Vec::new();
        for _ in 0..100 {
            lines = std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect();
            if lines.len() >= count {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        lines
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_612_461_115)), "2021-02-04T17:51:55Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_612_461_115_999)), "2021-02-04T17:51:55Z");
    }

    #[test]
    fn the_neutral_format_writes_the_core_fields() {
        let record = QueryRecord::from_response(entry("default")).expect("record");
        let mut line = Vec::new();
        JsonLines.write_line(&record, &mut line).expect("write");
        assert_eq!(
            String::from_utf8(line).expect("utf-8"),
            r#"{"timestamp":"2021-02-04T17:51:55Z","client":"127.0.0.1","client_port":5353,"transport":"udp","listener":"udp@127.0.0.1:53","view":"default","query_name":"example.com.","query_type":"A","query_class":"IN","rcode":"NOERROR","answers":[{"name":"example.com.","ttl":60,"type":"A","class":"IN","rdata":"192.0.2.1"}],"trace":{"view":"default","matched":"","decision":"local","rcode":"NOERROR"}}"#
        );
    }

    #[test]
    fn a_response_without_a_question_is_not_logged() {
        let mut bare = entry("default");
        bare.response = Box::new([0u8; 12]);
        assert_eq!(QueryRecord::from_response(bare), None);
        let mut garbage = entry("default");
        garbage.response = Box::new([1, 2, 3]);
        assert_eq!(QueryRecord::from_response(garbage), None);
    }

    #[test]
    fn lines_reach_the_file_and_overflow_is_counted() {
        let temporary = tempfile::tempdir().expect("dir");
        let dir = temporary.path();
        let path = dir.join("queries.log");
        let metrics = Arc::new(Metrics::default());
        let log = QueryLog::start_all(&[config(path.clone(), &[], true)], Arc::new(JsonLines), metrics.clone())
            .expect("start");
        let mut doh = entry("default");
        doh.transport = Transport::Doh;
        for _ in 0..1_000 {
            log.log(doh.clone(), false);
        }
        drop(log);
        let mut text = String::new();
        for _ in 0..100 {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() as u64 + metrics.log_lines_dropped() == 1_000 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let lines = text.lines().count() as u64;
        assert_eq!(lines + metrics.log_lines_dropped(), 1_000);
        let first: serde_json::Value = serde_json::from_str(text.lines().next().expect("a line")).expect("json");
        assert_eq!(first["transport"], "doh");
        assert_eq!(first["answers"][0]["rdata"], "192.0.2.1");
    }

    /// An application's own format: fields added in front of the neutral ones.
    struct Tenant;

    impl QueryLogFormat for Tenant {
        fn write_line(&self, record: &QueryRecord, out: &mut dyn Write) -> io::Result<()> {
            #[derive(Serialize)]
            struct Line<'a> {
                tenant: &'a str,
                #[serde(flatten)]
                record: &'a QueryRecord,
            }
            serde_json::to_writer(out, &Line { tenant: "t-1", record }).map_err(io::Error::from)
        }
    }

    #[test]
    fn an_application_format_writes_the_lines() {
        let temporary = tempfile::tempdir().expect("dir");
        let dir = temporary.path();
        let path = dir.join("tenant.log");
        let log =
            QueryLog::start_all(&[config(path.clone(), &[], true)], Arc::new(Tenant), Arc::default()).expect("start");
        log.log(entry("view-1"), false);
        drop(log);
        let lines = lines(&path, 1);
        let line: serde_json::Value = serde_json::from_str(lines.first().expect("a line")).expect("json");
        assert_eq!(line["tenant"], "t-1");
        assert_eq!(line["view"], "view-1");
        assert_eq!(line["query_name"], "example.com.");
    }

    #[test]
    fn destinations_take_only_their_views() {
        let temporary = tempfile::tempdir().expect("dir");
        let dir = temporary.path();
        let configs = [config(dir.join("a.log"), &["view-a"], true), config(dir.join("all.log"), &[], false)];
        let log = QueryLog::start_all(&configs, Arc::new(JsonLines), Arc::default()).expect("start");
        assert!(log.logs_forwarded());
        log.log(entry("view-a"), false);
        log.log(entry("view-b"), false);
        log.log(entry("view-a"), true);
        drop(log);
        assert_eq!(lines(&dir.join("a.log"), 2).len(), 2, "view-a's two queries, forwarded included");
        assert_eq!(lines(&dir.join("all.log"), 2).len(), 2, "every view, but not forwarded queries");
    }
}
