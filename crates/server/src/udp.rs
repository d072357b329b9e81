//! UDP listeners: one SO_REUSEPORT socket per worker task, batched with
//! recvmmsg/sendmmsg.
//!
//! Local answers and cache hits are written inline into the outgoing batch
//! by the task that read the query: no other task, no channel, no
//! allocation. Answers that come later (a query that needs an upstream)
//! are driven by the same worker task, between its batches, and sent back
//! on the same socket: no task per forwarded query. The answers that one
//! wake-up finds ready (an upstream's batch of replies wakes many at once)
//! leave together in one `sendmmsg`, as local answers do. The worker polls them
//! outside tokio's cooperative budget (`unconstrained`): with hundreds of
//! forwards in one task the budget would run out within a poll, and a
//! forward whose answer had come would look pending while its
//! retransmission timer (which tokio polls whatever the budget) fired.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use signpost_wire::SliceBuffer;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::pipeline::{Incoming, ListenerContext, Pending, Pipeline, Reply};
use crate::sys::{self, RecvBatch, SendBatch};

/// Batches a worker reads before it lets other tasks run.
const BATCHES_PER_TURN: usize = 8;

/// Bind `count` sockets sharing one address with SO_REUSEPORT. With port 0
/// the kernel picks a port no other socket holds.
///
/// Linux lets sockets share a port only if every one of them set
/// SO_REUSEPORT before binding (and belongs to the same user), and a port-0
/// bind *with* SO_REUSEPORT may be handed a port another such socket
/// already holds: two servers of one process would then share it silently.
/// So the first socket binds without SO_REUSEPORT — it gets a port nobody
/// holds (or, with a fixed port, fails if anybody does) and nobody can join
/// it — and only then turns SO_REUSEPORT on so that its siblings can join;
/// Linux forms the group when the second socket binds.
/// Each socket asks the kernel for `receive_buffer` bytes of receive buffer.
///
/// Sockets a predecessor or systemd passed for this address are taken
/// instead (see `handover`): every one of them, since each holds a queue.
pub(crate) fn bind_sockets(address: SocketAddr, count: usize, receive_buffer: usize) -> Result<Vec<UdpSocket>, Error> {
    let inherited = crate::handover::take_udp(address);
    if !inherited.is_empty() {
        return adopt_inherited(address, inherited, count);
    }
    let first = bind_one(address, false, receive_buffer).map_err(|e| Error::bind("udp", address, e))?;
    let address = first.local_addr().map_err(|source| Error::Io { what: "reading the bound UDP address", source })?;
    let mut sockets = Vec::with_capacity(count.max(1));
    if count > 1 {
        socket2::SockRef::from(&first).set_reuse_port(true).map_err(|e| Error::bind("udp", address, e))?;
    }
    sockets.push(first);
    for _ in 1..count {
        sockets.push(bind_one(address, true, receive_buffer).map_err(|e| Error::bind("udp", address, e))?);
    }
    Ok(sockets)
}

/// Serve inherited sockets with at least `count` workers: a single socket
/// from systemd is shared by several workers (copies of one descriptor).
fn adopt_inherited(address: SocketAddr, mut sockets: Vec<UdpSocket>, count: usize) -> Result<Vec<UdpSocket>, Error> {
    for socket in &sockets {
        socket.set_nonblocking(true).map_err(|e| Error::bind("udp", address, e))?;
        if address.ip().is_unspecified() {
            sys::enable_pktinfo(socket.as_raw_fd(), address.is_ipv6()).map_err(|e| Error::bind("udp", address, e))?;
        }
    }
    let inherited = sockets.len();
    for index in inherited..count {
        let copy = sockets.get(index % inherited).map(UdpSocket::try_clone);
        if let Some(copy) = copy {
            sockets.push(copy.map_err(|e| Error::bind("udp", address, e))?);
        }
    }
    Ok(sockets)
}

/// The address a listener's sockets are bound to.
pub(crate) fn local_addr(sockets: &[UdpSocket]) -> Result<SocketAddr, Error> {
    let first = sockets.first().ok_or(Error::Io {
        what: "reading the bound UDP address",
        source: io::Error::new(io::ErrorKind::NotFound, "no socket bound"),
    })?;
    first.local_addr().map_err(|source| Error::Io { what: "reading the bound UDP address", source })
}

fn bind_one(address: SocketAddr, reuse_port: bool, receive_buffer: usize) -> io::Result<UdpSocket> {
    let domain = if address.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(reuse_port)?;
    if address.is_ipv6() {
        // `::` must not claim 0.0.0.0's port too.
        socket.set_only_v6(true)?;
    }
    // Room for bursts while a worker is busy; without CAP_NET_ADMIN the
    // kernel caps it at rmem_max (what it granted shows in the metrics).
    let _ = signpost_upstream::request_receive_buffer(&socket, receive_buffer);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&address.into())?;
    if address.ip().is_unspecified() {
        sys::enable_pktinfo(socket.as_raw_fd(), address.is_ipv6())?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Start one worker task per socket.
pub(crate) fn spawn_workers(
    sockets: Vec<UdpSocket>,
    context: Arc<ListenerContext>,
    pipeline: Arc<Pipeline>,
    stop: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, Error> {
    let mut handles = Vec::with_capacity(sockets.len());
    for socket in sockets {
        let socket = Arc::new(socket);
        let readiness = sys::register_readable(socket.clone())
            .map_err(|source| Error::Io { what: "registering a UDP socket", source })?;
        let worker = Worker { socket, context: context.clone(), pipeline: pipeline.clone() };
        handles.push(tokio::spawn(worker.run(readiness, stop.clone())));
    }
    Ok(handles)
}

struct Worker {
    socket: Arc<UdpSocket>,
    context: Arc<ListenerContext>,
    pipeline: Arc<Pipeline>,
}

impl Worker {
    async fn run(self, readiness: AsyncFd<Arc<UdpSocket>>, stop: CancellationToken) {
        let fd = self.socket.as_raw_fd();
        // The batches (256 KiB) are made when the first packet comes: an
        // idle listener costs a socket and a task, no more.
        let mut batches: Option<Box<(RecvBatch, SendBatch)>> = None;
        // The forwarded queries this worker is answering.
        let mut later = FuturesUnordered::new();
        loop {
            let mut guard = tokio::select! {
                ready = readiness.readable() => match ready {
                    Ok(guard) => guard,
                    Err(error) => {
                        tracing::warn!(listener = %self.context.id, %error, "UDP socket failed");
                        // Queries already taken are still answered.
                        tokio::task::unconstrained(drive_to_end(&mut later, fd)).await;
                        return;
                    }
                },
                // Runs only when forwards are ready, and never ends.
                () = tokio::task::unconstrained(drive(&mut later, &mut batches, fd)) => continue,
                _ = stop.cancelled() => {
                    // Shutdown waits for queries in flight: answer them.
                    tokio::task::unconstrained(drive_to_end(&mut later, fd)).await;
                    return;
                }
            };
            let (receive, send) = batches_made(&mut batches);
            // Drain what is queued, a bounded number of batches at a time so
            // forwarded queries get to run between them.
            for _ in 0..BATCHES_PER_TURN {
                match receive.receive(fd) {
                    Ok(count) => self.answer_batch(receive, count, send, fd, &mut |pending, peer, source| {
                        later.push(answer_later(pending, peer, source));
                    }),
                    Err(error) => {
                        match error.kind() {
                            io::ErrorKind::WouldBlock => guard.clear_ready(),
                            // ICMP errors from earlier sends surface here; they concern old packets.
                            io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionReset => {}
                            _ => tracing::warn!(listener = %self.context.id, %error, "UDP receive failed"),
                        }
                        break;
                    }
                }
            }
            drop(guard);
            tokio::task::yield_now().await;
        }
    }

    /// Answer one received batch: local answers and cache hits go into the
    /// outgoing batch, the rest to `later` (with the client's address and
    /// the address to answer from).
    fn answer_batch(
        &self,
        receive: &RecvBatch,
        count: usize,
        send: &mut SendBatch,
        fd: RawFd,
        later: &mut impl FnMut(Pending, SocketAddr, Option<IpAddr>),
    ) {
        // Replies leave from the address the query arrived on when the socket
        // is bound to a wildcard address.
        let wildcard = self.context.bound.is_none();
        let now = Instant::now();
        // One load of the rules for the batch; a reload shows from the next.
        let state = self.pipeline.state.load_full();
        for index in 0..count {
            let Some((bytes, info)) = receive.get(index) else { continue };
            let source = if wildcard { info.local } else { None };
            let Some(slot) = send.next_buffer() else { break };
            let mut out = SliceBuffer::new(slot);
            let incoming = Incoming {
                bytes,
                peer: info.peer,
                local: info.local,
                listener: &self.context,
                max_response: None,
                now,
                state: Some(&state),
            };
            match self.pipeline.handle(&incoming, &mut out) {
                Reply::Now { len } | Reply::Stream { len, .. } => send.push(len, info.peer, source),
                Reply::Later(pending) => later(pending, info.peer, source),
                Reply::Silent | Reply::Close => {}
            }
            if send.is_full() {
                send.flush(fd);
            }
        }
        if !send.is_empty() {
            send.flush(fd);
        }
    }
}

/// A worker's batches, made when first needed (256 KiB: an idle listener
/// has none).
fn batches_made(batches: &mut Option<Box<(RecvBatch, SendBatch)>>) -> &mut (RecvBatch, SendBatch) {
    batches.get_or_insert_with(|| Box::new((RecvBatch::new(), SendBatch::new())))
}

/// A forwarded query's answer and where it goes.
struct LaterAnswer {
    response: Vec<u8>,
    peer: SocketAddr,
    /// The address to answer from (wildcard listeners).
    source: Option<IpAddr>,
}

/// A forwarded query's answer, when it comes (`None`: nothing to send).
async fn answer_later(pending: Pending, peer: SocketAddr, source: Option<IpAddr>) -> Option<LaterAnswer> {
    let response = pending.answer().await?;
    Some(LaterAnswer { response, peer, source })
}

/// Poll the worker's forwards whenever one is woken, each ready one until
/// it is pending, and send the answers found ready together on the
/// worker's socket `fd` (open while the worker, which drives this future,
/// runs); never ends (the worker's other events end its wait).
fn drive<'a, F: Future<Output = Option<LaterAnswer>>>(
    later: &'a mut FuturesUnordered<F>,
    batches: &'a mut Option<Box<(RecvBatch, SendBatch)>>,
    fd: RawFd,
) -> impl Future<Output = ()> + 'a {
    std::future::poll_fn(move |cx| {
        // The queries these forwards send upstream (first tries, and
        // retransmissions whose timers fired) leave together at the end.
        signpost_upstream::batch_sends(|| {
            // `None` when there are none: the next query pushed is polled on the worker's next turn.
            while let Poll::Ready(Some(answer)) = later.poll_next_unpin(cx) {
                if let Some(answer) = answer {
                    queue_answer(&mut batches_made(batches).1, fd, answer);
                }
            }
        });
        if let Some(send) = batches.as_deref_mut().map(|(_, send)| send).filter(|send| !send.is_empty()) {
            send.flush(fd);
        }
        Poll::Pending
    })
}

/// Put `answer` in the outgoing batch (sending the batch when it is full);
/// an answer too large for a slot goes alone at once.
fn queue_answer(send: &mut SendBatch, fd: RawFd, answer: LaterAnswer) {
    let LaterAnswer { response, peer, source } = answer;
    let slot = send.next_buffer().and_then(|slot| slot.get_mut(..response.len()));
    match slot {
        Some(slot) => {
            slot.copy_from_slice(&response);
            send.push(response.len(), peer, source);
            if send.is_full() {
                send.flush(fd);
            }
        }
        None => {
            let _ = sys::send_one(fd, &response, peer, source);
        }
    }
}

/// Answer every forward the worker holds, each as it comes.
async fn drive_to_end<F: Future<Output = Option<LaterAnswer>>>(later: &mut FuturesUnordered<F>, fd: RawFd) {
    while let Some(answer) = later.next().await {
        if let Some(LaterAnswer { response, peer, source }) = answer {
            let _ = sys::send_one(fd, &response, peer, source);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::config::DEFAULT_RECEIVE_BUFFER;

    /// Linux may hand a port-0 SO_REUSEPORT bind a port that another
    /// SO_REUSEPORT socket of the same user holds; every listener here must
    /// get a port of its own all the same.
    #[test]
    fn port_zero_listeners_never_share_a_port() {
        let mut held = Vec::new();
        let mut ports = HashSet::new();
        for start in 0..2_000 {
            let sockets = bind_sockets(SocketAddr::from(([127, 0, 0, 1], 0)), 2, DEFAULT_RECEIVE_BUFFER).expect("bind");
            let port = sockets[0].local_addr().expect("address").port();
            assert!(ports.insert(port), "start {start} was given port {port}, which an earlier listener holds");
            held.push(sockets);
        }
    }

    /// Forwarded answers wait in the batch until it is flushed or full; one
    /// too large for a slot leaves at once, alone.
    #[test]
    fn forwarded_answers_leave_in_batches_and_large_ones_alone() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("server");
        let client = UdpSocket::bind("127.0.0.1:0").expect("client");
        client.set_nonblocking(true).expect("nonblocking");
        let peer = client.local_addr().expect("address");
        let fd = server.as_raw_fd();
        let received = |client: &UdpSocket| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let mut buffer = vec![0u8; 65_536];
            std::iter::from_fn(|| client.recv(&mut buffer).ok()).collect::<Vec<usize>>()
        };
        let answer = |len: usize| LaterAnswer { response: vec![7; len], peer, source: None };
        let mut send = SendBatch::new();
        queue_answer(&mut send, fd, answer(100));
        queue_answer(&mut send, fd, answer(200));
        assert_eq!(received(&client), Vec::<usize>::new(), "sent before the flush");
        queue_answer(&mut send, fd, answer(sys::SLOT + 1));
        assert_eq!(received(&client), vec![sys::SLOT + 1]);
        assert_eq!(send.flush(fd), 2);
        assert_eq!(received(&client), vec![100, 200]);
        for _ in 0..sys::BATCH {
            queue_answer(&mut send, fd, answer(12));
        }
        assert!(send.is_empty(), "a full batch is sent at once");
        assert_eq!(received(&client), vec![12; sys::BATCH]);
    }

    #[test]
    fn siblings_share_the_port_and_nobody_else_joins() {
        let sockets = bind_sockets(SocketAddr::from(([127, 0, 0, 1], 0)), 2, DEFAULT_RECEIVE_BUFFER).expect("bind");
        let address = sockets[0].local_addr().expect("address");
        assert_eq!(sockets[1].local_addr().expect("address"), address);
        // A second listener asking for the same fixed port is turned away.
        assert!(bind_sockets(address, 2, DEFAULT_RECEIVE_BUFFER).is_err());
        assert!(bind_sockets(address, 1, DEFAULT_RECEIVE_BUFFER).is_err());
        // Both sockets are in one reuse-port group: the kernel spreads
        // datagrams from many source ports over them.
        for _ in 0..200 {
            let client = UdpSocket::bind("127.0.0.1:0").expect("client");
            client.send_to(b"x", address).expect("send");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let received: Vec<usize> = sockets
            .iter()
            .map(|socket| {
                let mut buffer = [0u8; 8];
                std::iter::from_fn(|| socket.recv(&mut buffer).ok()).count()
            })
            .collect();
        assert_eq!(received.iter().sum::<usize>(), 200, "{received:?}");
        assert!(received.iter().all(|count| *count > 0), "{received:?}");
    }
}
