//! Do53 over UDP, the way dnsdist talks to its backends: a few long-lived
//! sockets per server, each with a table of the message IDs in flight on it
//! and one receive loop that reads answers in batches (`recvmmsg`) and hands
//! each to the query whose ID and question it matches. No task and no
//! socket per query. A caller that polls many queries at once can have
//! their sends batched too ([`batch_sends`]: one `sendmmsg` per socket).
//!
//! The defences a forwarder needs against forged answers stay:
//!
//! - every query gets a random message ID, never one in flight on its socket;
//! - sockets are bound to port 0, so each has a random ephemeral port, and
//!   a query leaves from a random one of [`SOCKETS_PER_SERVER`]; a socket is
//!   retired after [`QUERIES_PER_SOCKET`] queries or [`SOCKET_LIFETIME`],
//!   and a new one on a new random port takes its place (the old one keeps
//!   listening until its queries are answered or given up);
//! - sockets are connected to the server, so the kernel drops datagrams
//!   from any other address or port before they reach us (and an ICMP port
//!   unreachable comes back as an error instead of a silent wait); the
//!   receive loop checks the source again;
//! - an answer must carry QR, the ID, the opcode and the question (name
//!   without regard to case, type, class) of a query in flight on that
//!   socket; anything else is dropped and counted in `spoofs_dropped`, and
//!   the query keeps waiting for the real answer.
//!
//! docs/upstream.md compares the entropy per query with Unbound's and dnsdist's.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::Failure;
use crate::query::{Prepared, answers};
use crate::stats::Stats;

/// Sockets kept open per server; each query leaves from a random one.
pub(crate) const SOCKETS_PER_SERVER: usize = 4;

/// Queries one socket carries before a new socket (on a new random port)
/// replaces it.
pub(crate) const QUERIES_PER_SOCKET: u32 = 2048;

/// How long one socket is used before it is replaced, however few queries it carried.
pub(crate) const SOCKET_LIFETIME: Duration = Duration::from_secs(30);

/// Most queries in flight on one socket. A random free ID is then found
/// at the first draw at least 15 times in 16, and a forged answer with a
/// random ID matches some query in flight at most once in 16 tries (it
/// must still carry that query's question).
pub(crate) const IDS_PER_SOCKET: usize = 4096;

/// Most queries in flight to one server, on its current sockets and on
/// retired ones still waiting for answers. Past it a send fails as
/// overloaded instead of piling up.
pub(crate) const MAX_IN_FLIGHT: usize = SOCKETS_PER_SERVER * IDS_PER_SOCKET;

/// Receive buffer asked of the kernel for each socket (it grants at most
/// `net.core.rmem_max`): room for thousands of answers between two reads.
const RECEIVE_BUFFER: usize = 4 << 20;

/// IDs of queries given up on that a socket remembers, so that their late
/// answers are told from forgeries.
const REMEMBERED_IDS: usize = 256;

/// Queries up to this long are copied (with their new ID) on the stack to be sent.
const SMALL_QUERY: usize = 512;

/// Batches read per wake-up before other tasks get a turn.
const BATCHES_PER_WAKE: usize = 8;

/// Sends queries to one server over a small pool of shared UDP sockets.
pub(crate) struct UdpTransport {
    address: SocketAddr,
    /// The local address its sockets are bound to, if one is given.
    source: Option<std::net::IpAddr>,
    stats: Arc<Stats>,
    pool: Mutex<Vec<Option<Arc<Shared>>>>,
    /// Queries in flight on all of this server's sockets.
    in_flight: Arc<AtomicUsize>,
}

impl std::fmt::Debug for UdpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpTransport").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Drop for UdpTransport {
    fn drop(&mut self) {
        if let Ok(pool) = self.pool.get_mut() {
            for shared in pool.iter().flatten() {
                shared.retire();
            }
        }
    }
}

impl UdpTransport {
    pub(crate) fn new(address: SocketAddr, source: Option<std::net::IpAddr>, stats: Arc<Stats>) -> Self {
        Self {
            address,
            source,
            stats,
            pool: Mutex::new(vec![None; SOCKETS_PER_SERVER]),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Send `query` and wait for the first datagram that answers it.
    pub(crate) async fn exchange(&self, query: &Prepared) -> Result<Bytes, Failure> {
        self.send(query).await?.await
    }

    /// Send `query` with a fresh random ID on one of the server's sockets;
    /// the returned future is its answer. Dropping it gives the ID back.
    pub(crate) async fn send(&self, query: &Prepared) -> Result<Pending, Failure> {
        self.send_with_id(query, rand::random::<u16>()).await
    }

    /// [`Self::send`] with the random ID `id`, drawn by the caller (who
    /// logs it): the message goes out with it unless a query in flight on
    /// the socket has it, and then with another random ID
    /// ([`Pending::id`] says which).
    pub(crate) async fn send_with_id(&self, query: &Prepared, id: u16) -> Result<Pending, Failure> {
        let pending = self.register(query, id)?;
        if queue_in_batch(&pending, query.bytes()) {
            return Ok(pending);
        }
        // Usually the socket has room: the message is written on the stack
        // and sent at once, without a copy on the heap.
        let sent = {
            // In a block of its own, so that the array is not kept in the future.
            let bytes = query.bytes();
            let mut small = [0u8; SMALL_QUERY];
            match small.get_mut(..bytes.len()) {
                Some(message) => {
                    message.copy_from_slice(bytes);
                    signpost_wire::relay::set_id(message, pending.id);
                    pending.shared.socket.try_send(message)
                }
                None => Err(io::ErrorKind::WouldBlock.into()),
            }
        };
        let sent = match sent {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                let message = query.with_id(pending.id, 0);
                pending.shared.socket.send(&message).await
            }
            other => other,
        };
        match sent {
            Ok(_) => Ok(pending),
            Err(error) => {
                if error.kind() == io::ErrorKind::ConnectionRefused {
                    // An ICMP error for an earlier query on this socket,
                    // reported on this send: the port is closed for them all.
                    pending.shared.fail_all(&Failure::unreachable(&error));
                }
                Err(Failure::unreachable(&error))
            }
        }
    }

    /// Queries waiting for an answer now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Take an ID (`id` if it is free there) on a random socket (replacing
    /// it first if it is due), or on any other with room.
    fn register(&self, query: &Prepared, id: u16) -> Result<Pending, Failure> {
        if self.in_flight() >= MAX_IN_FLIGHT {
            self.stats.overloaded();
            return Err(Failure::Overloaded);
        }
        let mut pool = self.pool.lock().map_err(|_| Failure::Unreachable("socket pool poisoned".into()))?;
        let first = rand::random_range(0..pool.len().max(1));
        let now = Instant::now();
        for offset in 0..pool.len() {
            let index = (first + offset) % pool.len();
            let Some(slot) = pool.get_mut(index) else { continue };
            let shared = match slot.as_ref().filter(|shared| shared.is_usable(now)) {
                Some(shared) => shared.clone(),
                None => {
                    if let Some(old) = slot.take() {
                        old.retire();
                    }
                    let shared = Shared::open(self.address, self.source, self.stats.clone(), self.in_flight.clone())?;
                    *slot = Some(shared.clone());
                    shared
                }
            };
            if let Some(pending) = shared.register(query, id) {
                return Ok(pending);
            }
        }
        self.stats.overloaded();
        Err(Failure::Overloaded)
    }
}

/// Send the UDP queries that `work` makes on this thread together when it
/// returns: one `sendmmsg` per socket instead of one `send` per query.
///
/// A transport that polls many forwards in one go (the server's UDP
/// worker) wraps each round of polling in it. The queries' IDs are taken
/// and their waits (and retransmission timers) start as they are queued,
/// a few microseconds before they leave. Outside a batch, or for a query
/// longer than [`SMALL_QUERY`], a query is sent at once. Nested calls
/// join the outer batch.
pub fn batch_sends<R>(work: impl FnOnce() -> R) -> R {
    let opened = SEND_QUEUE.with_borrow_mut(|queue| !std::mem::replace(&mut queue.open, true));
    if !opened {
        return work();
    }
    /// Sends the batch even if `work` panics, so no query is left unsent.
    struct SendOnExit;
    impl Drop for SendOnExit {
        fn drop(&mut self) {
            send_queued();
        }
    }
    let _send = SendOnExit;
    work()
}

/// The queries of this thread's open batch ([`batch_sends`]).
#[derive(Default)]
struct SendQueue {
    open: bool,
    /// The queued messages back to back, each with its ID set.
    bytes: Vec<u8>,
    queued: Vec<Queued>,
}

/// One query waiting in a batch: `bytes[start..end]` of the queue.
struct Queued {
    shared: Arc<Shared>,
    id: u16,
    token: u64,
    start: usize,
    end: usize,
}

thread_local! {
    static SEND_QUEUE: std::cell::RefCell<SendQueue> = std::cell::RefCell::new(SendQueue::default());
}

/// Put `pending`'s query (`bytes`, to be sent with its ID) in this
/// thread's open batch; `false` when no batch is open or the query is too
/// long to be queued.
fn queue_in_batch(pending: &Pending, bytes: &[u8]) -> bool {
    if bytes.len() > SMALL_QUERY {
        return false;
    }
    SEND_QUEUE.with_borrow_mut(|queue| {
        if !queue.open {
            return false;
        }
        let start = queue.bytes.len();
        queue.bytes.extend_from_slice(bytes);
        let end = queue.bytes.len();
        if let Some(message) = queue.bytes.get_mut(start..end) {
            signpost_wire::relay::set_id(message, pending.id);
        }
        queue.queued.push(Queued { shared: pending.shared.clone(), id: pending.id, token: pending.token, start, end });
        true
    })
}

/// Close this thread's batch and send its queries, socket by socket.
fn send_queued() {
    // Taken out of the thread's cell while sending (failing a query wakes
    // tasks), and given back afterwards to keep their capacity.
    let (mut bytes, mut queued) = SEND_QUEUE.with_borrow_mut(|queue| {
        queue.open = false;
        (std::mem::take(&mut queue.bytes), std::mem::take(&mut queue.queued))
    });
    queued.sort_unstable_by_key(|query| Arc::as_ptr(&query.shared) as usize);
    for run in queued.chunk_by(|a, b| Arc::ptr_eq(&a.shared, &b.shared)) {
        let Some(shared) = run.first().map(|query| &query.shared) else { continue };
        let mut start = 0;
        while start < run.len() {
            let chunk = run.get(start..run.len().min(start + batch::SEND_BATCH)).unwrap_or_default();
            let messages: smallvec::SmallVec<[&[u8]; batch::SEND_BATCH]> =
                chunk.iter().map(|query| bytes.get(query.start..query.end).unwrap_or_default()).collect();
            // Straight to the kernel, not through tokio's readiness: a
            // socket just opened is not known writable until the reactor's
            // next turn, and nothing here waits for it.
            match batch::send(&shared.socket, &messages) {
                Ok(sent) => start += sent.max(1),
                Err(error) => {
                    if let Some(query) = run.get(start) {
                        shared.send_failed(query.id, query.token, &error);
                    }
                    start += 1;
                    // A full buffer would not take the rest of the run
                    // either (they wait for their retransmissions); after a
                    // refusal every query on the socket has failed.
                    if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused) {
                        break;
                    }
                }
            }
        }
    }
    queued.clear();
    bytes.clear();
    // The batch is closed, so nothing was queued meanwhile.
    SEND_QUEUE.with_borrow_mut(|queue| {
        queue.bytes = bytes;
        queue.queued = queued;
    });
}

/// One socket, shared by the queries in flight on it and its receive loop.
struct Shared {
    socket: UdpSocket,
    server: SocketAddr,
    stats: Arc<Stats>,
    /// The server's count of queries in flight, kept with this table.
    in_flight: Arc<AtomicUsize>,
    table: Mutex<Table>,
    /// Wakes the receive loop when the socket is retired or its table empties.
    wake: Notify,
    opened: Instant,
    queries: AtomicU32,
    /// Set when the receive loop has ended (its runtime shut down, or the socket failed).
    stopped: AtomicBool,
}

/// The queries in flight on one socket, by message ID, and the answers
/// (or failures) that came for them until each query takes its own.
#[derive(Default)]
struct Table {
    waiting: HashMap<u16, Waiter, BuildHasherDefault<IdHasher>>,
    /// Tells a waiter's own entry from a later query that reuses its ID.
    next_token: u64,
    /// IDs of the last queries given up on, newest last.
    given_up: std::collections::VecDeque<u16>,
    retired: bool,
}

struct Waiter {
    token: u64,
    /// The query as sent (any ID), for checking the answer's question.
    query: Arc<[u8]>,
    /// Where its answer is left for it: a slot in the table rather than a
    /// channel per query (which was an allocation per query).
    slot: Slot,
}

/// A query's place for its answer in the socket's table.
enum Slot {
    /// No answer yet; the task to wake when one comes.
    Waiting(Option<Waker>),
    /// Answered, or failed: kept (its ID still taken) until the query takes it.
    Done(Result<Bytes, Failure>),
}

impl Slot {
    fn is_waiting(&self) -> bool {
        matches!(self, Self::Waiting(_))
    }

    /// Leave `result` for the query; the task to wake, if it waits.
    fn fill(&mut self, result: Result<Bytes, Failure>) -> Option<Waker> {
        match std::mem::replace(self, Self::Done(result)) {
            Self::Waiting(waker) => waker,
            Self::Done(_) => None,
        }
    }
}

/// What a query whose entry is gone gets (the socket's table is unusable).
fn receive_loop_stopped() -> Failure {
    Failure::Unreachable("the UDP receive loop stopped".into())
}

/// Message IDs are random already; spreading them over the hash's high bits
/// (which hashbrown uses to filter) is all the hashing they need.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64((self.0 << 8) | u64::from(*byte));
        }
    }

    fn write_u16(&mut self, id: u16) {
        self.write_u64(u64::from(id));
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl Shared {
    /// A socket on a random port, connected to `server`, with its receive loop running.
    fn open(
        server: SocketAddr,
        source: Option<std::net::IpAddr>,
        stats: Arc<Stats>,
        in_flight: Arc<AtomicUsize>,
    ) -> Result<Arc<Self>, Failure> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Failure::Unreachable("no tokio runtime to receive answers on".into()))?;
        let (socket, granted) = bind_connected(server, source).map_err(|error| Failure::unreachable(&error))?;
        if let Some(granted) = granted
            && stats.socket_opened(granted)
            && granted < RECEIVE_BUFFER
        {
            // Once per server: answers past the buffer are dropped and retransmitted.
            tracing::warn!(
                %server,
                asked = RECEIVE_BUFFER,
                granted,
                "the kernel granted an upstream UDP socket a smaller receive buffer than asked; \
                 raise net.core.rmem_max (or run with CAP_NET_ADMIN) for heavy forwarding"
            );
        }
        let socket = {
            let _entered = runtime.enter();
            UdpSocket::from_std(socket).map_err(|error| Failure::unreachable(&error))?
        };
        let shared = Arc::new(Self {
            socket,
            server,
            stats,
            in_flight,
            table: Mutex::new(Table::default()),
            wake: Notify::new(),
            opened: Instant::now(),
            queries: AtomicU32::new(0),
            stopped: AtomicBool::new(false),
        });
        tracing::debug!(%server, local = ?shared.socket.local_addr().ok(), "opened an upstream UDP socket");
        runtime.spawn(receive_loop(shared.clone()));
        Ok(shared)
    }

    fn is_usable(&self, now: Instant) -> bool {
        !self.stopped.load(Ordering::Relaxed)
            && self.queries.load(Ordering::Relaxed) < QUERIES_PER_SOCKET
            && now.saturating_duration_since(self.opened) < SOCKET_LIFETIME
    }

    /// Take a random ID no query in flight here has: `first` (the caller's
    /// random draw) when it is free, else another drawn here; `None` when
    /// the table is full.
    fn register(self: &Arc<Self>, query: &Prepared, first: u16) -> Option<Pending> {
        let mut table = self.table.lock().ok()?;
        if table.waiting.len() >= IDS_PER_SOCKET {
            return None;
        }
        // At most one in 16 IDs is taken, so this ends at once; the bound
        // only guards against a broken random source.
        for draw in 0..64 {
            let id = if draw == 0 { first } else { rand::random::<u16>() };
            if table.waiting.contains_key(&id) {
                continue;
            }
            let token = table.next_token;
            table.next_token += 1;
            table.waiting.insert(id, Waiter { token, query: query.bytes().clone(), slot: Slot::Waiting(None) });
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            self.queries.fetch_add(1, Ordering::Relaxed);
            return Some(Pending { shared: self.clone(), id, token, taken: false });
        }
        None
    }

    /// Stop giving this socket new queries; it closes once the ones in flight are done.
    fn retire(&self) {
        if let Ok(mut table) = self.table.lock() {
            table.retired = true;
        }
        self.wake.notify_one();
    }

    fn is_finished(&self) -> bool {
        self.table.lock().map_or(true, |table| table.retired && table.waiting.is_empty())
    }

    /// Remove the waiter `token` put under `id`, if it is still there. A
    /// query that stopped waiting has its ID remembered (its answer may
    /// still come); one whose answer came and was not taken has not.
    fn forget(&self, id: u16, token: u64) {
        let Ok(mut table) = self.table.lock() else { return };
        // Under the same ID may be a later query's entry: not ours to remove.
        if table.waiting.get(&id).is_none_or(|waiter| waiter.token != token) {
            return;
        }
        if table.waiting.remove(&id).is_some_and(|waiter| waiter.slot.is_waiting()) {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            if table.given_up.len() >= REMEMBERED_IDS {
                table.given_up.pop_front();
            }
            table.given_up.push_back(id);
        }
        self.woken_if_finished(&table);
    }

    /// Wake the receive loop when the socket is retired and nothing is left in its table.
    fn woken_if_finished(&self, table: &Table) {
        if table.retired && table.waiting.is_empty() {
            self.wake.notify_one();
        }
    }

    /// The answer left for the query `token` under `id`, taken out of the
    /// table; or, while none has come, `waker` kept to be woken when it does.
    fn poll_answer(&self, id: u16, token: u64, waker: &Waker) -> Poll<Result<Bytes, Failure>> {
        let Ok(mut table) = self.table.lock() else { return Poll::Ready(Err(receive_loop_stopped())) };
        match table.waiting.get_mut(&id) {
            Some(Waiter { token: owner, slot: Slot::Waiting(waiting), .. }) if *owner == token => {
                if !waiting.as_ref().is_some_and(|waiting| waiting.will_wake(waker)) {
                    *waiting = Some(waker.clone());
                }
                return Poll::Pending;
            }
            Some(Waiter { token: owner, .. }) if *owner == token => {}
            _ => return Poll::Ready(Err(receive_loop_stopped())),
        }
        let result = match table.waiting.remove(&id) {
            Some(Waiter { slot: Slot::Done(result), .. }) => result,
            _ => Err(receive_loop_stopped()),
        };
        self.woken_if_finished(&table);
        Poll::Ready(result)
    }

    /// A batched query could not be sent. Refused: an ICMP error for an
    /// earlier query, so the port is closed for every query here. The
    /// socket's buffer full: the query counts as lost, and its
    /// retransmission (from the round-trip estimate) sends it again.
    /// Anything else fails the query, as an unbatched send would.
    fn send_failed(&self, id: u16, token: u64, error: &io::Error) {
        match error.kind() {
            io::ErrorKind::ConnectionRefused => self.fail_all(&Failure::unreachable(error)),
            io::ErrorKind::WouldBlock => {
                self.stats.send_buffer_full();
                tracing::debug!(server = %self.server, "an upstream UDP socket's send buffer is full: query left to its retransmission");
            }
            _ => {
                let waker = match self.table.lock() {
                    Ok(mut table) => match table.waiting.get_mut(&id) {
                        Some(waiter) if waiter.token == token && waiter.slot.is_waiting() => {
                            self.in_flight.fetch_sub(1, Ordering::Relaxed);
                            waiter.slot.fill(Err(Failure::unreachable(error)))
                        }
                        _ => None,
                    },
                    Err(_) => None,
                };
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
        }
    }

    /// Fail every query in flight on this socket.
    fn fail_all(&self, failure: &Failure) {
        let wakers: Vec<Waker> = match self.table.lock() {
            Ok(mut table) => {
                let mut failed = 0;
                let mut wakers = Vec::new();
                for waiter in table.waiting.values_mut().filter(|waiter| waiter.slot.is_waiting()) {
                    failed += 1;
                    wakers.extend(waiter.slot.fill(Err(failure.clone())));
                }
                self.in_flight.fetch_sub(failed, Ordering::Relaxed);
                if failed > 0 {
                    tracing::debug!(server = %self.server, queries = failed, ?failure, "failing the queries on a UDP socket");
                }
                wakers
            }
            Err(_) => return,
        };
        for waker in wakers {
            waker.wake();
        }
        self.wake.notify_one();
    }

    /// Hand a received datagram to the query it answers, or drop and count it.
    fn dispatch(&self, datagram: &[u8], source: Option<SocketAddr>) {
        if source.is_some_and(|source| source.ip() != self.server.ip() || source.port() != self.server.port()) {
            self.stats.spoof_dropped();
            tracing::debug!(server = %self.server, ?source, "dropped a UDP datagram from another address");
            return;
        }
        let Ok(header) = signpost_wire::Header::parse(datagram) else {
            self.stats.spoof_dropped();
            return;
        };
        let Ok(mut table) = self.table.lock() else { return };
        // An entry already answered is no longer waiting: a second answer is suspect.
        let verdict = match table.waiting.get_mut(&header.id).filter(|waiter| waiter.slot.is_waiting()) {
            Some(waiter) => answers(&waiter.query, datagram, header.id)
                .map(|()| waiter.slot.fill(Ok(Bytes::copy_from_slice(datagram)))),
            None => Err(crate::query::Mismatch::WrongId),
        };
        match verdict {
            Ok(waker) => {
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
                drop(table);
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            Err(crate::query::Mismatch::WrongId)
                if let Some(position) = table.given_up.iter().position(|&id| id == header.id) =>
            {
                // The answer to a query that stopped waiting (its message was
                // sent again and answered, or the query ended): not a forgery.
                table.given_up.remove(position);
                drop(table);
                self.stats.stale_answer();
            }
            Err(mismatch) => {
                drop(table);
                self.stats.spoof_dropped();
                tracing::debug!(server = %self.server, id = header.id, reason = mismatch.as_str(), "dropped a UDP datagram");
            }
        }
    }

    /// Read what is queued on the socket, a batch at a time.
    fn drain(&self) {
        for _ in 0..BATCHES_PER_WAKE {
            let received = self.socket.try_io(Interest::READABLE, || {
                let count = batch::receive(&self.socket, |datagram, source| self.dispatch(datagram, source))?;
                if batch::drained(count) {
                    // A short batch emptied the queue: tell tokio so (it
                    // keeps readiness that a newer datagram set), saving
                    // the call that would only return EAGAIN.
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(count)
            });
            match received {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // An ICMP error (port unreachable, host unreachable) for a
                // query sent on this socket: every query here went to the
                // same server and port.
                Err(error) => self.fail_all(&Failure::unreachable(&error)),
            }
        }
    }

    /// A socket error reported without a datagram (an ICMP error).
    fn take_error(&self) {
        if let Ok(Some(error)) = self.socket.take_error() {
            self.fail_all(&Failure::unreachable(&error));
        }
        // Clear the error readiness so the loop sleeps again.
        let _ = self.socket.try_io(Interest::ERROR, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
    }
}

/// Marks the socket stopped and fails its queries when the receive loop ends, however it ends.
struct StopGuard<'a>(&'a Shared);

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Relaxed);
        self.0.fail_all(&Failure::Unreachable("the UDP receive loop stopped".into()));
    }
}

/// Read answers until the socket is retired and nothing waits on it.
async fn receive_loop(shared: Arc<Shared>) {
    let _guard = StopGuard(&shared);
    loop {
        if shared.is_finished() {
            return;
        }
        tokio::select! {
            ready = shared.socket.ready(Interest::READABLE | Interest::ERROR) => match ready {
                Ok(ready) => {
                    if ready.is_error() {
                        shared.take_error();
                    }
                    if ready.is_readable() {
                        shared.drain();
                    }
                }
                Err(error) => {
                    tracing::warn!(server = %shared.server, %error, "upstream UDP socket failed");
                    return;
                }
            },
            () = shared.wake.notified() => {}
        }
    }
}

/// The answer to one query sent over UDP. Dropping it forgets the query:
/// a later answer with its ID is dropped (and the ID may be given out again).
pub(crate) struct Pending {
    shared: Arc<Shared>,
    id: u16,
    token: u64,
    /// Its answer was taken: its entry is gone from the table already.
    taken: bool,
}

impl Pending {
    /// The message ID the query was sent with.
    pub(crate) fn id(&self) -> u16 {
        self.id
    }
}

impl Future for Pending {
    type Output = Result<Bytes, Failure>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let answer = self.shared.poll_answer(self.id, self.token, cx.waker());
        if answer.is_ready() {
            self.taken = true;
        }
        answer
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.taken {
            self.shared.forget(self.id, self.token);
        }
    }
}

/// A non-blocking socket on a random port of the right family (of
/// `source` when given), connected to `server`, and the receive buffer the
/// kernel granted it.
fn bind_connected(
    server: SocketAddr,
    source: Option<std::net::IpAddr>,
) -> io::Result<(std::net::UdpSocket, Option<usize>)> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let (domain, mut local): (Domain, SocketAddr) = match server {
        SocketAddr::V4(_) => (Domain::IPV4, (Ipv4Addr::UNSPECIFIED, 0).into()),
        SocketAddr::V6(_) => (Domain::IPV6, (Ipv6Addr::UNSPECIFIED, 0).into()),
    };
    if let Some(source) = source {
        local.set_ip(source);
    }
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: without CAP_NET_ADMIN the kernel caps it at net.core.rmem_max.
    let granted = crate::buffer::request_receive_buffer(&socket, RECEIVE_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(local))?;
    socket.connect(&SockAddr::from(server))?;
    Ok((socket.into(), granted))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod batch {
    //! `recvmmsg` through nix: up to [`BATCH`] datagrams per system call,
    //! into buffers kept per thread (they are only used while a receive
    //! loop is being polled, never across an await).

    use std::cell::RefCell;
    use std::io::{self, IoSlice, IoSliceMut};
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
    use tokio::net::UdpSocket;

    /// Datagrams per system call.
    const BATCH: usize = 32;
    /// Room for the largest datagram, so nothing is ever cut short. Pages
    /// of the buffer that no datagram reaches are never touched, so the
    /// memory actually used is about one page per slot.
    const SLOT: usize = 65536;

    struct Batch {
        buffer: Vec<u8>,
        headers: MultiHeaders<SockaddrStorage>,
        received: Vec<(usize, Option<SocketAddr>)>,
    }

    thread_local! {
        static BATCH_BUFFERS: RefCell<Option<Batch>> = const { RefCell::new(None) };
    }

    /// Whether a batch of `count` datagrams emptied the socket's queue: the
    /// call asks for [`BATCH`] without waiting, so fewer means none was left.
    pub(super) fn drained(count: usize) -> bool {
        count < BATCH
    }

    /// Receive what is queued (at least one datagram, or `WouldBlock`) and
    /// call `each` with every datagram and its source. Returns how many.
    pub(super) fn receive(socket: &UdpSocket, mut each: impl FnMut(&[u8], Option<SocketAddr>)) -> io::Result<usize> {
        BATCH_BUFFERS.with(|cell| {
            let mut cell = cell.try_borrow_mut().map_err(|_| io::Error::other("receive buffers in use"))?;
            let batch = cell.get_or_insert_with(|| Batch {
                buffer: vec![0; BATCH * SLOT],
                headers: MultiHeaders::preallocate(BATCH, None),
                received: Vec::with_capacity(BATCH),
            });
            batch.received.clear();
            {
                let mut chunks = batch.buffer.chunks_exact_mut(SLOT);
                let mut slices: [[IoSliceMut<'_>; 1]; BATCH] =
                    std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
                let results =
                    recvmmsg(socket.as_raw_fd(), &mut batch.headers, slices.iter_mut(), MsgFlags::MSG_DONTWAIT, None)
                        .map_err(io::Error::from)?;
                for message in results {
                    batch.received.push((message.bytes, message.address.as_ref().and_then(to_std)));
                }
            }
            for (index, &(len, source)) in batch.received.iter().enumerate() {
                let start = index * SLOT;
                if let Some(datagram) = batch.buffer.get(start..start + len.min(SLOT)) {
                    each(datagram, source);
                }
            }
            Ok(batch.received.len())
        })
    }

    /// Queries per `sendmmsg`.
    pub(super) const SEND_BATCH: usize = 32;

    /// A thread's headers for `sendmmsg`, and the addresses it passes: none
    /// (the sockets are connected), kept rather than made per call (4 KiB).
    struct SendHeaders {
        headers: MultiHeaders<SockaddrStorage>,
        addresses: [Option<SockaddrStorage>; SEND_BATCH],
    }

    thread_local! {
        static SEND_HEADERS: RefCell<Option<SendHeaders>> = const { RefCell::new(None) };
    }

    /// Send `messages` (at most [`SEND_BATCH`]) on the connected `socket`,
    /// from the first: how many left, or the first one's error.
    pub(super) fn send(socket: &UdpSocket, messages: &[&[u8]]) -> io::Result<usize> {
        SEND_HEADERS.with(|cell| {
            let mut cell = cell.try_borrow_mut().map_err(|_| io::Error::other("send headers in use"))?;
            let SendHeaders { headers, addresses } = cell.get_or_insert_with(|| SendHeaders {
                headers: MultiHeaders::preallocate(SEND_BATCH, None),
                addresses: [None; SEND_BATCH],
            });
            let slices: smallvec::SmallVec<[[IoSlice<'_>; 1]; SEND_BATCH]> =
                messages.iter().take(SEND_BATCH).map(|message| [IoSlice::new(message)]).collect();
            let sent = sendmmsg(
                socket.as_raw_fd(),
                headers,
                slices.iter(),
                &addresses[..],
                [] as [ControlMessage<'_>; 0],
                MsgFlags::MSG_DONTWAIT,
            )
            .map_err(io::Error::from)?;
            Ok(sent.count())
        })
    }

    fn to_std(address: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = address.as_sockaddr_in() {
            return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
        }
        address.as_sockaddr_in6().map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod batch {
    //! One datagram per system call where `recvmmsg` is not available.

    use std::io;
    use std::net::SocketAddr;

    use tokio::net::UdpSocket;

    /// One datagram says nothing about the rest of the queue.
    pub(super) fn drained(_count: usize) -> bool {
        false
    }

    /// Queries per call: one.
    pub(super) const SEND_BATCH: usize = 1;

    /// Send the first of `messages`.
    pub(super) fn send(socket: &UdpSocket, messages: &[&[u8]]) -> io::Result<usize> {
        match messages.first() {
            // Straight to the kernel, as on Linux.
            Some(message) => socket2::SockRef::from(socket).send(message).map(|_| 1),
            None => Ok(0),
        }
    }

    pub(super) fn receive(socket: &UdpSocket, mut each: impl FnMut(&[u8], Option<SocketAddr>)) -> io::Result<usize> {
        let mut buffer = vec![0; 65536];
        let (len, source) = socket.try_recv_from(&mut buffer)?;
        each(buffer.get(..len).unwrap_or_default(), Some(source));
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signpost_wire::{Message, MessageBuilder, NameBuf, RecordType};

    fn prepared(name: &str) -> Prepared {
        let name: NameBuf = name.parse().unwrap();
        Prepared::new(&crate::query::build_query(&name, RecordType::A, None), 1232).unwrap()
    }

    /// A server that answers every query (in reverse order of a batch of `per_batch`).
    async fn reversing_server(per_batch: usize) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            loop {
                let mut batch = Vec::new();
                for _ in 0..per_batch {
                    let Ok((len, peer)) = socket.recv_from(&mut buffer).await else { return };
                    batch.push((buffer[..len].to_vec(), peer));
                }
                for (query, peer) in batch.iter().rev() {
                    let parsed = Message::parse(query).unwrap();
                    let mut response = Vec::new();
                    MessageBuilder::response_to(&mut response, &parsed).unwrap().finish().unwrap();
                    socket.send_to(&response, peer).await.unwrap();
                }
            }
        });
        (address, task)
    }

    #[tokio::test]
    async fn answers_out_of_order_reach_their_queries() {
        let (address, task) = reversing_server(8).await;
        let transport = UdpTransport::new(address, None, Arc::new(Stats::default()));
        let queries: Vec<Prepared> = (0..8).map(|i| prepared(&format!("q{i}.example"))).collect();
        let answers = futures_util::future::join_all(queries.iter().map(|query| transport.exchange(query))).await;
        for (index, answer) in answers.into_iter().enumerate() {
            let answer = answer.unwrap();
            let name = Message::parse(&answer).unwrap().first_question().unwrap().unwrap().name().to_string();
            assert_eq!(name, format!("q{index}.example."));
        }
        assert_eq!(transport.in_flight(), 0);
        task.abort();
    }

    #[tokio::test]
    async fn queries_leave_from_the_source_address_when_one_is_given() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = server.local_addr().unwrap();
        let source: std::net::IpAddr = "127.0.0.9".parse().unwrap();
        let transport = UdpTransport::new(address, Some(source), Arc::new(Stats::default()));
        let query = prepared("from.example");
        let exchange = transport.exchange(&query);
        let receive = async {
            let mut buffer = [0u8; 512];
            let (_, peer) = server.recv_from(&mut buffer).await.unwrap();
            peer
        };
        let peer = tokio::select! {
            peer = receive => peer,
            _ = exchange => panic!("the exchange ended before the server saw the query"),
        };
        assert_eq!(peer.ip(), source);
    }

    #[tokio::test]
    async fn ids_are_unique_per_socket_and_given_back() {
        let (address, task) = reversing_server(1).await;
        let transport = UdpTransport::new(address, None, Arc::new(Stats::default()));
        let query = prepared("a.example");
        let pending: Vec<Pending> = (0..500).map(|_| transport.register(&query, rand::random()).unwrap()).collect();
        assert_eq!(transport.in_flight(), 500);
        for shared in transport.pool.lock().unwrap().iter().flatten() {
            let table = shared.table.lock().unwrap();
            let ours = pending.iter().filter(|p| Arc::ptr_eq(&p.shared, shared)).count();
            assert_eq!(table.waiting.len(), ours, "one entry per query, no ID twice");
        }
        let sockets = transport.pool.lock().unwrap().iter().flatten().count();
        assert!(sockets <= SOCKETS_PER_SERVER);
        drop(pending);
        assert_eq!(transport.in_flight(), 0);
        task.abort();
    }

    #[tokio::test]
    async fn the_callers_id_is_used_unless_a_query_on_the_socket_has_it() {
        let (address, task) = reversing_server(1).await;
        let transport = UdpTransport::new(address, None, Arc::new(Stats::default()));
        let query = prepared("a.example");
        let first = transport.register(&query, 0x1234).unwrap();
        assert_eq!(first.id(), 0x1234);
        // Asked for again on the same socket while the first waits: another (random) ID.
        let second = first.shared.register(&query, 0x1234).unwrap();
        assert_ne!(second.id(), 0x1234);
        assert_eq!(first.shared.table.lock().unwrap().waiting.len(), 2);
        drop((first, second));
        assert_eq!(transport.in_flight(), 0);
        task.abort();
    }

    #[tokio::test]
    async fn a_full_socket_pool_is_overloaded() {
        let (address, task) = reversing_server(1).await;
        let stats = Arc::new(Stats::default());
        let transport = UdpTransport::new(address, None, stats.clone());
        let query = prepared("a.example");
        // Sockets are replaced as they carry their share; the ones replaced
        // still hold their queries, which count against the server.
        let pending: Vec<Pending> =
            (0..MAX_IN_FLIGHT).map(|_| transport.register(&query, rand::random()).unwrap()).collect();
        assert!(matches!(transport.register(&query, rand::random()), Err(Failure::Overloaded)));
        let snapshot = stats.snapshot("g", address, crate::Protocol::Udp, transport.in_flight());
        assert_eq!((snapshot.overloaded, snapshot.in_flight), (1, MAX_IN_FLIGHT));
        drop(pending);
        assert!(transport.register(&query, rand::random()).is_ok());
        task.abort();
    }

    #[tokio::test]
    async fn a_forgotten_id_reused_by_another_query_is_not_forgotten_twice() {
        let (address, task) = reversing_server(1).await;
        let transport = UdpTransport::new(address, None, Arc::new(Stats::default()));
        let query = prepared("a.example");
        let first = transport.register(&query, rand::random()).unwrap();
        let shared = first.shared.clone();
        let (id, token) = (first.id, first.token);
        drop(first);
        // Another query takes the same ID on the same socket.
        shared
            .table
            .lock()
            .unwrap()
            .waiting
            .insert(id, Waiter { token: token + 100, query: query.bytes().clone(), slot: Slot::Waiting(None) });
        shared.forget(id, token);
        assert!(shared.table.lock().unwrap().waiting.contains_key(&id));
        task.abort();
    }

    #[tokio::test]
    async fn sockets_are_replaced_after_their_share_of_queries() {
        let (address, task) = reversing_server(1).await;
        let transport = UdpTransport::new(address, None, Arc::new(Stats::default()));
        let query = prepared("a.example");
        let first: Vec<Arc<Shared>> = transport.pool.lock().unwrap().iter().flatten().cloned().collect();
        assert!(first.is_empty(), "sockets open on first use");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..(SOCKETS_PER_SERVER as u32 * QUERIES_PER_SOCKET * 2) {
            let pending = transport.register(&query, rand::random()).unwrap();
            seen.insert(pending.shared.socket.local_addr().unwrap().port());
        }
        // Every socket was replaced at least once, on a new port.
        assert!(seen.len() > SOCKETS_PER_SERVER, "{} ports", seen.len());
        assert!(
            transport
                .pool
                .lock()
                .unwrap()
                .iter()
                .flatten()
                .all(|shared| shared.queries.load(Ordering::Relaxed) <= QUERIES_PER_SOCKET)
        );
        task.abort();
    }

    #[tokio::test]
    async fn late_answers_to_given_up_queries_are_not_counted_as_spoofs() {
        let (address, task) = reversing_server(1).await;
        let stats = Arc::new(Stats::default());
        let transport = UdpTransport::new(address, None, stats.clone());
        let query = prepared("a.example");
        let pending = transport.register(&query, rand::random()).unwrap();
        let (shared, id) = (pending.shared.clone(), pending.id);
        drop(pending);
        let answer = |id: u16| answer_to(&query, id);
        let source = Some(address);
        shared.dispatch(&answer(id), source);
        // Remembered once: a second answer with that ID is suspect again.
        shared.dispatch(&answer(id), source);
        shared.dispatch(&answer(id.wrapping_add(1)), source);
        // And anything from another address is, whatever it says.
        shared.dispatch(&answer(id), Some(SocketAddr::from(([127, 0, 0, 2], address.port()))));
        let snapshot = stats.snapshot("g", address, crate::Protocol::Udp, 0);
        assert_eq!((snapshot.stale_answers, snapshot.spoofs_dropped), (1, 3));
        task.abort();
    }

    /// The answer a server would give to `query` sent with `id`.
    fn answer_to(query: &Prepared, id: u16) -> Vec<u8> {
        let mut response = Vec::new();
        let parsed = Message::parse(query.bytes()).unwrap();
        let mut builder = MessageBuilder::response_to(&mut response, &parsed).unwrap();
        builder.set_id(id);
        builder.finish().unwrap();
        response
    }

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn poll_once(pending: &mut Pending, waker: &Arc<CountingWaker>) -> Poll<Result<Bytes, Failure>> {
        let waker = Waker::from(waker.clone());
        Pin::new(pending).poll(&mut Context::from_waker(&waker))
    }

    #[tokio::test]
    async fn an_answer_is_left_in_the_table_and_wakes_its_query() {
        let (address, task) = reversing_server(1).await;
        let stats = Arc::new(Stats::default());
        let transport = UdpTransport::new(address, None, stats.clone());
        let query = prepared("slot.example");
        let mut pending = transport.register(&query, rand::random()).unwrap();
        let shared = pending.shared.clone();
        let waker = Arc::new(CountingWaker::default());
        assert!(poll_once(&mut pending, &waker).is_pending());
        let answer = answer_to(&query, pending.id());
        shared.dispatch(&answer, Some(address));
        assert_eq!(waker.0.load(Ordering::Relaxed), 1, "the waiting task is woken once");
        assert_eq!(transport.in_flight(), 0, "answered: no longer in flight");
        // Until the query takes it, the answer holds its ID: a copy of it is suspect.
        assert_eq!(shared.table.lock().unwrap().waiting.len(), 1);
        shared.dispatch(&answer, Some(address));
        let snapshot = stats.snapshot("g", address, crate::Protocol::Udp, 0);
        assert_eq!((snapshot.spoofs_dropped, snapshot.stale_answers), (1, 0));
        let Poll::Ready(Ok(taken)) = poll_once(&mut pending, &waker) else { panic!("the answer was not taken") };
        assert_eq!(&taken[..], &answer[..]);
        assert!(shared.table.lock().unwrap().waiting.is_empty(), "taken: the ID is free again");
        drop(pending);
        assert!(shared.table.lock().unwrap().given_up.is_empty(), "an answered query is not given up");
        task.abort();
    }

    /// Queries sent inside `batch_sends` (nested or not) leave only when
    /// the outermost batch ends, more than one `sendmmsg` of them, each with
    /// an ID of its own on its socket, and their answers reach them.
    #[tokio::test]
    async fn batched_queries_leave_when_the_batch_ends_and_get_their_answers() {
        use futures_util::FutureExt;
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = server.local_addr().unwrap();
        let transport = UdpTransport::new(address, None, Arc::new(Stats::default()));
        let count = 3 * batch::SEND_BATCH + 1;
        let queries: Vec<Prepared> = (0..count).map(|i| prepared(&format!("b{i}.example"))).collect();
        let mut buffer = [0u8; 512];
        let pending: Vec<Pending> = batch_sends(|| {
            let mut pending: Vec<Pending> = batch_sends(|| {
                let send = |query| transport.send(query).now_or_never().expect("queued at once").expect("sent");
                queries.iter().take(2).map(send).collect()
            });
            assert!(server.try_recv_from(&mut buffer).is_err(), "an inner batch sends nothing");
            for query in queries.iter().skip(2) {
                pending.push(transport.send(query).now_or_never().expect("queued at once").expect("sent"));
            }
            assert!(server.try_recv_from(&mut buffer).is_err(), "nothing leaves before the batch ends");
            pending
        });
        let mut ids = std::collections::HashSet::new();
        for _ in 0..count {
            let (len, peer) = tokio::time::timeout(Duration::from_secs(5), server.recv_from(&mut buffer))
                .await
                .expect("every query arrives")
                .unwrap();
            let query = Message::parse(&buffer[..len]).unwrap();
            assert!(ids.insert((peer, query.header().id)), "one ID per query on each socket");
            let mut response = Vec::new();
            MessageBuilder::response_to(&mut response, &query).unwrap().finish().unwrap();
            server.send_to(&response, peer).await.unwrap();
        }
        let answers = futures_util::future::join_all(pending).await;
        for (index, answer) in answers.into_iter().enumerate() {
            let answer = answer.unwrap();
            let name = Message::parse(&answer).unwrap().first_question().unwrap().unwrap().name().to_string();
            assert_eq!(name, format!("b{index}.example."));
        }
        assert_eq!(transport.in_flight(), 0);
    }

    /// Batched queries to a closed port fail as unreachable (the ICMP error
    /// reported to the receive loop or to a later batch's send), promptly.
    #[tokio::test]
    async fn batched_queries_to_a_closed_port_fail_as_unreachable() {
        use futures_util::FutureExt;
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = closed.local_addr().unwrap();
        drop(closed);
        let transport = UdpTransport::new(address, None, Arc::new(Stats::default()));
        let query = prepared("closed.example");
        for _ in 0..3 {
            let pending: Vec<Pending> = batch_sends(|| {
                (0..8)
                    .map(|_| transport.send(&query).now_or_never().expect("queued at once").expect("queued"))
                    .collect()
            });
            let answers = tokio::time::timeout(Duration::from_secs(5), futures_util::future::join_all(pending))
                .await
                .expect("failed promptly");
            for answer in answers {
                assert!(matches!(answer, Err(Failure::Unreachable(_))), "{answer:?}");
            }
        }
        assert_eq!(transport.in_flight(), 0);
    }

    /// A batched query the kernel would not take: a full buffer leaves it
    /// waiting (to be retransmitted), any other error fails it at once.
    #[tokio::test]
    async fn a_batched_query_that_could_not_be_sent_waits_or_fails() {
        let (address, task) = reversing_server(1).await;
        let transport = UdpTransport::new(address, None, Arc::new(Stats::default()));
        let query = prepared("unsent.example");
        let mut pending = transport.register(&query, rand::random()).unwrap();
        let shared = pending.shared.clone();
        let waker = Arc::new(CountingWaker::default());
        assert!(poll_once(&mut pending, &waker).is_pending());
        shared.send_failed(pending.id, pending.token, &io::ErrorKind::WouldBlock.into());
        assert!(poll_once(&mut pending, &waker).is_pending(), "left to its retransmission");
        assert_eq!(transport.in_flight(), 1);
        assert_eq!(shared.stats.snapshot("group", address, crate::Protocol::Udp, 1).send_buffer_full, 1, "counted");
        shared.send_failed(pending.id, pending.token, &io::ErrorKind::PermissionDenied.into());
        assert_eq!(waker.0.load(Ordering::Relaxed), 1, "the waiting task is woken");
        assert_eq!(transport.in_flight(), 0);
        let Poll::Ready(Err(Failure::Unreachable(_))) = poll_once(&mut pending, &waker) else {
            panic!("the query did not fail")
        };
        task.abort();
    }

    #[tokio::test]
    async fn an_answer_that_comes_before_the_first_poll_is_there_for_it() {
        let (address, task) = reversing_server(1).await;
        let transport = UdpTransport::new(address, None, Arc::new(Stats::default()));
        let query = prepared("early.example");
        let mut pending = transport.register(&query, rand::random()).unwrap();
        pending.shared.clone().dispatch(&answer_to(&query, pending.id()), Some(address));
        let waker = Arc::new(CountingWaker::default());
        assert!(matches!(poll_once(&mut pending, &waker), Poll::Ready(Ok(_))));
        assert_eq!(waker.0.load(Ordering::Relaxed), 0);
        task.abort();
    }

    #[tokio::test]
    async fn an_answer_never_taken_goes_with_its_query() {
        let (address, task) = reversing_server(1).await;
        let transport = UdpTransport::new(address, None, Arc::new(Stats::default()));
        let query = prepared("dropped.example");
        let pending = transport.register(&query, rand::random()).unwrap();
        let shared = pending.shared.clone();
        shared.dispatch(&answer_to(&query, pending.id()), Some(address));
        drop(pending);
        let table = shared.table.lock().unwrap();
        assert!(table.waiting.is_empty());
        assert!(table.given_up.is_empty(), "its answer came: nothing late to expect");
        assert_eq!(transport.in_flight(), 0);
        drop(table);
        task.abort();
    }

    #[tokio::test]
    async fn failing_a_socket_fails_the_waiting_queries_not_the_answered_ones() {
        let (address, task) = reversing_server(1).await;
        let transport = UdpTransport::new(address, None, Arc::new(Stats::default()));
        let query = prepared("fail.example");
        let mut answered = transport.register(&query, rand::random()).unwrap();
        let shared = answered.shared.clone();
        let mut waiting = shared.register(&query, rand::random()).unwrap();
        let waker = Arc::new(CountingWaker::default());
        assert!(poll_once(&mut waiting, &waker).is_pending());
        shared.dispatch(&answer_to(&query, answered.id()), Some(address));
        shared.fail_all(&Failure::Unreachable("test".into()));
        assert_eq!(waker.0.load(Ordering::Relaxed), 1);
        assert_eq!(transport.in_flight(), 0);
        assert!(matches!(poll_once(&mut waiting, &waker), Poll::Ready(Err(Failure::Unreachable(_)))));
        assert!(matches!(poll_once(&mut answered, &waker), Poll::Ready(Ok(_))));
        assert!(shared.table.lock().unwrap().waiting.is_empty());
        task.abort();
    }

    #[tokio::test]
    async fn a_retired_socket_is_finished_once_its_answers_are_taken() {
        let (address, task) = reversing_server(1).await;
        let transport = UdpTransport::new(address, None, Arc::new(Stats::default()));
        let query = prepared("retired.example");
        let mut pending = transport.register(&query, rand::random()).unwrap();
        let shared = pending.shared.clone();
        shared.retire();
        shared.dispatch(&answer_to(&query, pending.id()), Some(address));
        assert!(!shared.is_finished(), "an answer not yet taken keeps the socket");
        let waker = Arc::new(CountingWaker::default());
        assert!(matches!(poll_once(&mut pending, &waker), Poll::Ready(Ok(_))));
        assert!(shared.is_finished());
        task.abort();
    }

    #[test]
    fn the_id_hasher_spreads_ids_over_the_high_bits() {
        let hash = |id: u16| {
            let mut hasher = IdHasher::default();
            hasher.write_u16(id);
            hasher.finish()
        };
        let high: std::collections::HashSet<u64> = (0..256u16).map(|id| hash(id) >> 57).collect();
        assert!(high.len() > 64, "{}", high.len());
    }
}
