//! Handing answers to the query log: the response bytes and the trace go
//! into the log's queue; the writer thread parses and formats them.

use std::time::SystemTime;

use signpost_wire::Buffer;

use super::forward::ForwardJob;
use super::{Incoming, Pipeline};
use crate::querylog::{Entry, Trace};

impl Pipeline {
    /// Log an answer the synchronous steps wrote into `out` from `start`.
    pub(super) fn log_written(
        &self,
        out: &impl Buffer,
        start: usize,
        trace: Trace,
        incoming: &Incoming<'_>,
        forwarded: bool,
    ) {
        let Some(log) = &self.log else { return };
        if forwarded && !log.logs_forwarded() {
            return;
        }
        let response = out.as_slice().get(start..).unwrap_or_default();
        let entry = Entry {
            timestamp: SystemTime::now(),
            client: incoming.peer,
            transport: incoming.listener.transport,
            listener: incoming.listener.id.clone(),
            response: response.into(),
            trace,
        };
        log.log(entry, forwarded);
    }

    /// Log the answer a forward job made.
    pub(super) fn log_forwarded(&self, job: &ForwardJob, response: &[u8]) {
        let (Some(log), Some(context), Some(trace)) = (&self.log, &job.log, &job.trace) else { return };
        if !log.logs_forwarded() {
            return;
        }
        let entry = Entry {
            timestamp: context.timestamp,
            client: context.peer,
            transport: context.transport,
            listener: context.listener.clone(),
            response: response.into(),
            trace: Trace::clone(trace),
        };
        log.log(entry, true);
    }
}
