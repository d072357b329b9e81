//! UDP listeners: one SO_REUSEPORT socket per worker thread, batched with
//! recvmmsg/sendmmsg.
//!
//! Local answers and cache hits are written inline into the outgoing batch
//! by the worker thread that read the query: no task, no channel, no
//! allocation. Only queries that need an upstream are handed to the tokio
//! runtime, whose task sends the answer back on the same socket.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use signpost_wire::SliceBuffer;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::runtime::Handle;

use crate::Error;
use crate::pipeline::{Fast, Incoming, ListenerContext, Pipeline};
use crate::sys::{self, RecvBatch, SendBatch};

/// How often a blocked worker wakes to check for shutdown.
const WAKE_INTERVAL: Duration = Duration::from_millis(100);

/// Bind `count` sockets sharing one address with SO_REUSEPORT. With port 0
/// the first socket picks the port and the others join it.
pub(crate) fn bind_sockets(address: SocketAddr, count: usize) -> Result<Vec<UdpSocket>, Error> {
    // SO_REUSEPORT would let a second server of the same user share the port
    // silently; a plain bind first fails if anyone holds it.
    if address.port() != 0 {
        let probe = || -> io::Result<()> {
            let domain = if address.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
            let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
            // As the real sockets are: `::` must not claim 0.0.0.0's port too.
            if address.is_ipv6() {
                socket.set_only_v6(true)?;
            }
            socket.bind(&address.into())
        };
        probe().map_err(|e| Error::bind("udp", address, e))?;
    }
    let mut sockets = Vec::with_capacity(count);
    let mut address = address;
    for _ in 0..count.max(1) {
        let socket = bind_one(address).map_err(|e| Error::bind("udp", address, e))?;
        if address.port() == 0 {
            address =
                socket.local_addr().map_err(|source| Error::Io { what: "reading the bound UDP address", source })?;
        }
        sockets.push(socket);
    }
    Ok(sockets)
}

fn bind_one(address: SocketAddr) -> io::Result<UdpSocket> {
    let domain = if address.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Room for bursts while a worker is busy; the kernel caps it at rmem_max.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&address.into())?;
    if address.ip().is_unspecified() {
        sys::enable_pktinfo(socket.as_raw_fd(), address.is_ipv6())?;
    }
    socket.set_read_timeout(Some(WAKE_INTERVAL))?;
    Ok(socket.into())
}

/// Start one worker thread per socket.
pub(crate) fn spawn_workers(
    sockets: Vec<UdpSocket>,
    context: Arc<ListenerContext>,
    pipeline: Arc<Pipeline>,
    runtime: Handle,
    stop: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
) -> Result<Vec<JoinHandle<()>>, Error> {
    let mut handles = Vec::with_capacity(sockets.len());
    for (index, socket) in sockets.into_iter().enumerate() {
        let socket = Arc::new(socket);
        let worker = Worker {
            socket,
            context: context.clone(),
            pipeline: pipeline.clone(),
            runtime: runtime.clone(),
            stop: stop.clone(),
            in_flight: in_flight.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("signpost-udp-{index}"))
            .spawn(move || worker.run())
            .map_err(|source| Error::Io { what: "starting a UDP worker thread", source })?;
        handles.push(handle);
    }
    Ok(handles)
}

struct Worker {
    socket: Arc<UdpSocket>,
    context: Arc<ListenerContext>,
    pipeline: Arc<Pipeline>,
    runtime: Handle,
    stop: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
}

impl Worker {
    fn run(self) {
        let fd = self.socket.as_raw_fd();
        let mut receive = RecvBatch::new();
        let mut send = SendBatch::new();
        // Replies leave from the address the query arrived on when the socket
        // is bound to a wildcard address.
        let wildcard = self.context.bound.is_none();
        while !self.stop.load(Ordering::Relaxed) {
            let count = match receive.receive(fd) {
                Ok(count) => count,
                Err(error) => {
                    match error.kind() {
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {}
                        // ICMP errors from earlier sends surface here; they concern old packets.
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => {}
                        _ => {
                            tracing::warn!(listener = %self.context.id, %error, "UDP receive failed");
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                    continue;
                }
            };
            let now = Instant::now();
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
                };
                match self.pipeline.handle_fast(&incoming, &mut out) {
                    Fast::Answered { len } => send.push(len, info.peer, source),
                    Fast::Forward(job) => self.forward(job, info.peer, source),
                    Fast::Delayed { len, delay } => {
                        let response = out.written().get(..len).unwrap_or(&[]).to_vec();
                        self.send_later(response, delay, info.peer, source);
                    }
                    Fast::Drop | Fast::Reset => {}
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

    fn forward(&self, job: Box<crate::pipeline::ForwardJob>, peer: SocketAddr, source: Option<IpAddr>) {
        let pipeline = self.pipeline.clone();
        let socket = self.socket.clone();
        let in_flight = self.in_flight.clone();
        in_flight.fetch_add(1, Ordering::Relaxed);
        self.runtime.spawn(async move {
            if let Some(response) = pipeline.forward(job).await {
                let _ = sys::send_one(socket.as_raw_fd(), &response, peer, source);
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }

    fn send_later(&self, response: Vec<u8>, delay: Duration, peer: SocketAddr, source: Option<IpAddr>) {
        let socket = self.socket.clone();
        self.runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = sys::send_one(socket.as_raw_fd(), &response, peer, source);
        });
    }
}
