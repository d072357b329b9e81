//! Recording the queries a server saw, so tests can assert on them.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use signpost_rules::Transport;
use signpost_wire::{NameBuf, RecordType};

/// Most queries kept; older ones are dropped first.
const MAX_RECORDED: usize = 100_000;

/// One query as the server received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedQuery {
    /// The question name, case as sent.
    pub name: NameBuf,
    /// The question type.
    pub qtype: RecordType,
    /// How it arrived.
    pub transport: Transport,
    /// The client's address and port.
    pub client: SocketAddr,
    /// The listener it arrived on.
    pub listener: String,
}

#[derive(Default)]
pub(crate) struct Recorder {
    enabled: AtomicBool,
    queries: Mutex<Vec<RecordedQuery>>,
}

impl Recorder {
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub(crate) fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    pub(crate) fn record(&self, query: RecordedQuery) {
        if let Ok(mut queries) = self.queries.lock() {
            if queries.len() >= MAX_RECORDED {
                queries.remove(0);
            }
            queries.push(query);
        }
    }

    pub(crate) fn take(&self) -> Vec<RecordedQuery> {
        self.queries.lock().map(|mut queries| std::mem::take(&mut *queries)).unwrap_or_default()
    }

    pub(crate) fn snapshot(&self) -> Vec<RecordedQuery> {
        self.queries.lock().map(|queries| queries.clone()).unwrap_or_default()
    }
}
