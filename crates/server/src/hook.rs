//! An application-level query handler: the pipeline asks it first, after
//! the listener's ACL and rate limits, so an application can answer queries
//! the rules do not cover (zone transfers, NOTIFY) without the runtime
//! knowing about them.

use std::net::SocketAddr;

use signpost_rules::Transport;
use signpost_wire::Message;

/// A query offered to a [`QueryHandler`].
#[derive(Clone, Copy, Debug)]
pub struct HandlerQuery<'a> {
    /// The query, parsed as far as its header (read the rest lazily).
    pub message: Message<'a>,
    /// Who sent it.
    pub peer: SocketAddr,
    /// The transport it came over.
    pub transport: Transport,
    /// The listener's id.
    pub listener: &'a str,
}

/// What a [`QueryHandler`] answers.
pub enum Handled {
    /// One response message.
    Message(Vec<u8>),
    /// Several response messages, written in order on the connection (a zone
    /// transfer). Over UDP and DoH only the first is sent, so a handler
    /// gives a stream only for [`Transport::Tcp`] and [`Transport::Dot`].
    /// Produced lazily, as the connection drains.
    Stream(Box<dyn Iterator<Item = Vec<u8>> + Send>),
    /// No answer at all.
    Drop,
}

impl core::fmt::Debug for Handled {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Message(message) => f.debug_tuple("Message").field(&message.len()).finish(),
            Self::Stream(_) => f.write_str("Stream"),
            Self::Drop => f.write_str("Drop"),
        }
    }
}

/// Answers some queries in place of the pipeline. Called synchronously on
/// the listener's task for every query that passed the ACL and the rate
/// limits, so `handle` must be quick: return `None` at once for queries it
/// does not take, and produce long answers lazily through [`Handled::Stream`].
pub trait QueryHandler: Send + Sync + 'static {
    /// The answer to `query`, or `None` to let the pipeline answer it.
    fn handle(&self, query: &HandlerQuery<'_>) -> Option<Handled>;
}
