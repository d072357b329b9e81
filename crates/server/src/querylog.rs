//! The query log: JSON lines with the fields of Route 53 Resolver query logs,
//! plus Signpost's decision trace, written by a thread of its own.
//!
//! Answering never waits for the log: records go through a bounded queue and
//! are dropped (and counted) when the writer falls behind.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

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

/// Why an answer is what it is: the "why this answer?" trace.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Trace {
    /// The view the client was placed in.
    pub view: String,
    /// The rule, zone or host table that matched (or "default").
    pub matched: String,
    /// What the pipeline did: local, block, cache, forward, stale, servfail, refused, formerr, notimp, badvers, drop.
    pub decision: String,
    /// The upstream group, for forwarded queries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Cache state: hit, miss, stale, bypass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// Upstream attempts in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<TraceAttempt>,
    /// The response code sent.
    pub rcode: String,
    /// Extra notes (e.g. why a query was refused or failed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One answer record in Route 53's query-log shape.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct LogAnswer {
    /// RDATA in presentation format.
    #[serde(rename = "Rdata")]
    pub rdata: String,
    /// Record type.
    #[serde(rename = "Type")]
    pub rtype: String,
    /// Class.
    #[serde(rename = "Class")]
    pub class: String,
}

/// One query-log line.
#[derive(Clone, Debug, Serialize)]
pub struct LogRecord {
    /// Format version, as Route 53 writes it.
    pub version: &'static str,
    /// The view, named as a VPC id when views stand for VPCs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// When the query arrived (RFC 3339, UTC).
    pub query_timestamp: String,
    /// The question name as asked.
    pub query_name: String,
    /// The question type.
    pub query_type: String,
    /// The question class.
    pub query_class: String,
    /// The response code sent.
    pub rcode: String,
    /// Answer records sent.
    pub answers: Vec<LogAnswer>,
    /// Client address.
    pub srcaddr: String,
    /// Client port.
    pub srcport: String,
    /// UDP, TCP, DoT or DoH.
    pub transport: &'static str,
    /// Where the query came in: the listener or endpoint id.
    pub srcids: BTreeMap<String, String>,
    /// Signpost's decision trace.
    pub signpost: Trace,
}

/// The AWS account and region a query log's lines name: Route 53 Resolver
/// writes `account_id` and `region` in every record. A server given one (the
/// endpoint emulator always is) writes both into each line, before the
/// [`LogRecord`]'s fields; without one, lines carry the record alone.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct LogAccount {
    /// The account id (twelve digits in AWS).
    pub account_id: String,
    /// The region, e.g. `us-east-1`.
    pub region: String,
}

/// One line as written: the account and region, then the record.
#[derive(Serialize)]
struct AccountLine<'a> {
    account_id: &'a str,
    region: &'a str,
    #[serde(flatten)]
    record: &'a LogRecord,
}

/// The sending side of the log; cheap to clone. It feeds one writer per
/// configured destination, each optionally limited to some views.
#[derive(Clone)]
pub struct QueryLog {
    sinks: Vec<Sink>,
    metrics: Arc<Metrics>,
}

#[derive(Clone)]
struct Sink {
    sender: SyncSender<LogRecord>,
    forwarded: bool,
    views: Vec<String>,
}

impl Sink {
    fn wants(&self, record: &LogRecord, forwarded: bool) -> bool {
        (!forwarded || self.forwarded) && (self.views.is_empty() || self.views.contains(&record.signpost.view))
    }
}

impl QueryLog {
    /// Start the writer thread for `config`.
    pub fn start(config: &QueryLogConfig, metrics: Arc<Metrics>) -> io::Result<Self> {
        Self::start_all(std::slice::from_ref(config), metrics)
    }

    /// Start one writer thread per configuration.
    pub fn start_all(configs: &[QueryLogConfig], metrics: Arc<Metrics>) -> io::Result<Self> {
        Self::start_all_for(configs, None, metrics)
    }

    /// Start one writer thread per configuration; with `account`, every line
    /// names its account and region.
    pub fn start_all_for(
        configs: &[QueryLogConfig],
        account: Option<&LogAccount>,
        metrics: Arc<Metrics>,
    ) -> io::Result<Self> {
        let mut sinks = Vec::with_capacity(configs.len());
        for config in configs {
            let writer: Box<dyn Write + Send> = match &config.destination {
                LogDestination::Stdout => Box::new(io::stdout()),
                LogDestination::File(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
            };
            let (sender, receiver) = sync_channel(config.queue.max(1));
            let account = account.cloned();
            std::thread::Builder::new()
                .name("signpost-querylog".into())
                .spawn(move || write_lines(receiver, writer, account))?;
            sinks.push(Sink { sender, forwarded: config.forwarded, views: config.views.clone() });
        }
        Ok(Self { sinks, metrics })
    }

    /// Whether forwarded queries are logged (by any destination).
    pub fn logs_forwarded(&self) -> bool {
        self.sinks.iter().any(|sink| sink.forwarded)
    }

    /// Queue a record for every destination that takes its view; drops it
    /// (counted) where the writer is behind.
    pub fn log(&self, record: LogRecord) {
        self.log_query(record, false);
    }

    /// Like [`QueryLog::log`], for a forwarded (or cached) query: only
    /// destinations that log forwarded queries take it.
    pub fn log_query(&self, record: LogRecord, forwarded: bool) {
        let mut previous: Option<&Sink> = None;
        for sink in self.sinks.iter().filter(|sink| sink.wants(&record, forwarded)) {
            if let Some(earlier) = previous.replace(sink) {
                self.send(earlier, record.clone());
            }
        }
        if let Some(last) = previous {
            self.send(last, record);
        }
    }

    fn send(&self, sink: &Sink, record: LogRecord) {
        match sink.sender.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.metrics.log_dropped(),
        }
    }
}

fn write_lines(receiver: Receiver<LogRecord>, writer: Box<dyn Write + Send>, account: Option<LogAccount>) {
    let mut writer = BufWriter::new(writer);
    while let Ok(record) = receiver.recv() {
        let mut next = Some(record);
        while let Some(record) = next {
            let written = match &account {
                Some(account) => serde_json::to_writer(
                    &mut writer,
                    &AccountLine { account_id: &account.account_id, region: &account.region, record: &record },
                ),
                None => serde_json::to_writer(&mut writer, &record),
            };
            if written.is_ok() {
                let _ = writer.write_all(b"\n");
            }
            next = receiver.try_recv().ok();
        }
        // Flush whenever the queue runs dry, so lines appear promptly.
        let _ = writer.flush();
    }
    let _ = writer.flush();
}

/// Format a time as RFC 3339 in UTC with seconds precision, as Route 53 does.
pub fn rfc3339(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (seconds / 86_400) as i64;
    let of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", of_day / 3_600, (of_day % 3_600) / 60, of_day % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A UDP query for `example.com. A` from 127.0.0.1 in `view`.
    fn sample_record(view: &str) -> LogRecord {
        LogRecord {
            version: "1.100000",
            vpc_id: Some(view.into()),
            query_timestamp: rfc3339(SystemTime::now()),
            query_name: "example.com.".into(),
            query_type: "A".into(),
            query_class: "IN".into(),
            rcode: "NOERROR".into(),
            answers: Vec::new(),
            srcaddr: "127.0.0.1".into(),
            srcport: "5353".into(),
            transport: "UDP",
            srcids: BTreeMap::new(),
            signpost: Trace { view: view.into(), ..Trace::default() },
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_612_461_115)), "2021-02-04T17:51:55Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn lines_reach_the_file_and_overflow_is_counted() {
        let dir = std::env::temp_dir().join(format!("signpost-querylog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("queries.log");
        let _ = std::fs::remove_file(&path);
        let metrics = Arc::new(Metrics::default());
        let config = QueryLogConfig {
            enabled: true,
            destination: LogDestination::File(path.clone()),
            forwarded: true,
            queue: 16,
            views: Vec::new(),
        };
        let log = QueryLog::start(&config, metrics.clone()).expect("start");
        let record = LogRecord {
            version: "1.100000",
            vpc_id: Some("vpc-1".into()),
            query_timestamp: rfc3339(SystemTime::now()),
            query_name: "example.com.".into(),
            query_type: "A".into(),
            query_class: "IN".into(),
            rcode: "NOERROR".into(),
            answers: vec![LogAnswer { rdata: "192.0.2.1".into(), rtype: "A".into(), class: "IN".into() }],
            srcaddr: "127.0.0.1".into(),
            srcport: "5353".into(),
            transport: "DoH",
            srcids: BTreeMap::from([("resolver_endpoint".to_string(), "rslvr-in-1".to_string())]),
            signpost: Trace { decision: "local".into(), rcode: "NOERROR".into(), ..Trace::default() },
        };
        for _ in 0..1_000 {
            log.log(record.clone());
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
        assert_eq!(first["transport"], "DoH");
        assert_eq!(first["answers"][0]["Rdata"], "192.0.2.1");
        assert_eq!(first["srcids"]["resolver_endpoint"], "rslvr-in-1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lines_name_the_account_and_region_when_given() {
        let dir = std::env::temp_dir().join(format!("signpost-querylog-account-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let config = |name: &str| QueryLogConfig {
            enabled: true,
            destination: LogDestination::File(dir.join(name)),
            forwarded: true,
            queue: 16,
            views: Vec::new(),
        };
        let account = LogAccount { account_id: "123456789012".into(), region: "eu-west-1".into() };
        let with = QueryLog::start_all_for(&[config("with.log")], Some(&account), Arc::new(Metrics::default()))
            .expect("start");
        let without = QueryLog::start_all(&[config("without.log")], Arc::new(Metrics::default())).expect("start");
        let record = sample_record("vpc-1");
        with.log(record.clone());
        without.log(record);
        drop((with, without));
        let line = |name: &str| {
            for _ in 0..100 {
                let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
                if let Some(line) = text.lines().next() {
                    return serde_json::from_str::<serde_json::Value>(line).expect("json");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            panic!("no line in {name}");
        };
        let with = line("with.log");
        assert_eq!(with["account_id"], "123456789012");
        assert_eq!(with["region"], "eu-west-1");
        assert_eq!(with["vpc_id"], "vpc-1", "the record's fields follow");
        assert_eq!(with["transport"], "UDP");
        let without = line("without.log");
        assert!(without.get("account_id").is_none() && without.get("region").is_none(), "{without}");
        assert_eq!(without["vpc_id"], "vpc-1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn destinations_take_only_their_views() {
        let dir = std::env::temp_dir().join(format!("signpost-querylog-views-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let config = |name: &str, views: &[&str], forwarded: bool| QueryLogConfig {
            enabled: true,
            destination: LogDestination::File(dir.join(name)),
            forwarded,
            queue: 16,
            views: views.iter().map(|view| (*view).to_string()).collect(),
        };
        let configs = [config("a.log", &["vpc-a"], true), config("all.log", &[], false)];
        let log = QueryLog::start_all(&configs, Arc::new(Metrics::default())).expect("start");
        assert!(log.logs_forwarded());
        let record = sample_record;
        log.log_query(record("vpc-a"), false);
        log.log_query(record("vpc-b"), false);
        log.log_query(record("vpc-a"), true);
        drop(log);
        let count = |name: &str| {
            let mut lines = 0;
            for _ in 0..100 {
                lines = std::fs::read_to_string(dir.join(name)).unwrap_or_default().lines().count();
                if lines > 0 {
                    std::thread::sleep(Duration::from_millis(20));
                    lines = std::fs::read_to_string(dir.join(name)).unwrap_or_default().lines().count();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            lines
        };
        assert_eq!(count("a.log"), 2, "vpc-a's two queries, forwarded included");
        assert_eq!(count("all.log"), 2, "every view, but not forwarded queries");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
