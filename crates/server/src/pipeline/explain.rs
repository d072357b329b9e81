//! "Why this answer?": a question run through the pipeline as a client's
//! would be, its trace returned and its answer sent to no one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use signpost_rules::Transport;
use signpost_wire::{Class, EdnsHeader, Flags, Message, MessageBuilder, NameBuf, Rcode, RecordType};

use super::{Incoming, ListenerContext, Pipeline, Purpose, Step};
use crate::querylog::Trace;

impl Pipeline {
    /// The listener an explain run stands in for: `listener`'s id (views
    /// can select by listener), bound address and allow-list, without its
    /// rate limits; without one, a listener that allows every client.
    fn explain_listener(transport: Transport, listener: Option<&ListenerContext>) -> ListenerContext {
        let (id, allow, bound) = match listener {
            Some(listener) => (listener.id.clone(), listener.allow.clone(), listener.bound),
            None => {
                (Arc::from("explain"), ["0.0.0.0/0", "::/0"].iter().filter_map(|net| net.parse().ok()).collect(), None)
            }
        };
        ListenerContext {
            id,
            transport,
            allow,
            max_qps: None,
            group_limit: None,
            bound,
            port: 0,
            client_rate_limit: false,
        }
    }

    /// Run the pipeline for a question and return the decision trace; the
    /// answer goes to no one, the cache is read but neither filled nor
    /// counted in, and no metric moves.
    pub(crate) async fn explain(
        self: &Arc<Self>,
        name: &NameBuf,
        qtype: RecordType,
        client: SocketAddr,
        transport: Transport,
        listener: Option<&ListenerContext>,
    ) -> Trace {
        let mut query = Vec::new();
        if let Ok(mut builder) = MessageBuilder::new(&mut query) {
            builder.set_flags(Flags::default().with_rd(true));
            let _ = builder.push_question(name, qtype, Class::IN);
            builder.set_edns(EdnsHeader::default());
            let _ = builder.finish();
        }
        let listener = Self::explain_listener(transport, listener);
        let incoming = Incoming {
            bytes: &query,
            peer: client,
            local: None,
            listener: &listener,
            max_response: Some(65535),
            now: Instant::now(),
            state: None,
        };
        let mut out = Vec::new();
        let mut trace = Some(Trace::default());
        match self.run(&incoming, &mut out, &mut trace, &mut None, Purpose::Explain) {
            Step::Forward(mut job) => {
                job.log = None;
                let response = self.forward(&mut job).await;
                let mut trace = job.trace.take().map(|trace| *trace).unwrap_or_default();
                if let Some(response) = response {
                    fill_answers(&mut trace, &response);
                }
                trace
            }
            Step::Answered { .. } | Step::Delayed { .. } | Step::Stream { .. } => {
                let mut trace = trace.unwrap_or_default();
                fill_answers(&mut trace, &out);
                trace
            }
            Step::Drop | Step::Close => Trace { decision: "drop".into(), ..trace.unwrap_or_default() },
        }
    }
}

/// The response code and answers of `response`, into the trace.
fn fill_answers(trace: &mut Trace, response: &[u8]) {
    if let Ok(message) = Message::parse(response) {
        trace.rcode = message.rcode().unwrap_or(Rcode::SERVFAIL).to_string();
        if trace.decision.is_empty() {
            trace.decision = trace.rcode.to_lowercase();
        }
        if let Ok(answers) = message.answers() {
            for record in answers.flatten() {
                if let Ok(data) = record.data() {
                    trace.notes.push(format!("answer: {} {} {} {}", record.name(), record.ttl(), record.rtype(), data));
                }
            }
        }
    }
}
