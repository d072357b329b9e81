//! Do53 over UDP: connected sockets with random ports, reused a bounded
//! number of times, and a random ID per query.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::error::Failure;
use crate::query::Prepared;
use crate::stats::Stats;

/// How many queries one socket carries before it is closed and a new one
/// (with a new random port) takes its place. Binding, connecting and closing
/// a socket per query costs four system calls and two epoll updates; reusing
/// it for a while keeps most of the port randomness (RFC 5452) for a small
/// fraction of that cost.
const QUERIES_PER_SOCKET: u32 = 64;

/// Idle sockets kept per server. A query takes one of them at random, so
/// consecutive queries leave from different random ports; while fewer are
/// idle, a query opens a new socket instead.
const IDLE_SOCKETS: usize = 16;

/// A socket not in use, with how many queries it has carried.
struct Idle {
    socket: UdpSocket,
    uses: u32,
}

/// Sends queries to one server over UDP.
///
/// Each socket is bound to port 0, so the kernel picks a random ephemeral
/// port, and connected to the server: the kernel then drops datagrams from
/// any other address, and an ICMP port unreachable comes back as an error on
/// the next receive instead of a silent wait. A query has a socket to itself
/// while it waits: a random one of `IDLE_SOCKETS` idle sockets, each kept
/// until it has carried `QUERIES_PER_SOCKET` queries, or a new one while the
/// idle set is not full. The number of sockets in use at
/// once is bounded by the group's semaphore (the socket pool).
pub(crate) struct UdpTransport {
    address: SocketAddr,
    sockets: Arc<Semaphore>,
    receive_size: usize,
    idle: Mutex<VecDeque<Idle>>,
}

impl std::fmt::Debug for UdpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpTransport").field("address", &self.address).finish_non_exhaustive()
    }
}

impl UdpTransport {
    pub(crate) fn new(address: SocketAddr, sockets: Arc<Semaphore>, edns_payload: u16) -> Self {
        Self {
            address,
            sockets,
            receive_size: usize::from(edns_payload).clamp(4096, signpost_wire::MAX_MESSAGE_LEN),
            idle: Mutex::new(VecDeque::new()),
        }
    }

    /// Send `query` and wait for the first datagram that answers it. Others
    /// (wrong ID, wrong question, not a response) are dropped and counted.
    pub(crate) async fn exchange(&self, query: &Prepared, stats: &Stats) -> Result<Bytes, Failure> {
        let _permit = self.sockets.acquire().await.map_err(|_| Failure::Unreachable("socket pool closed".into()))?;
        let taken = self.idle.lock().ok().and_then(|mut idle| {
            let ready = idle.len();
            (ready >= IDLE_SOCKETS).then(|| rand::random_range(0..ready)).and_then(|index| idle.swap_remove_back(index))
        });
        let (socket, uses) = match taken {
            Some(idle) => (idle.socket, idle.uses),
            None => (self.open().await?, 0),
        };
        let id = rand::random::<u16>();
        let message = query.with_id(id, 0);
        socket.send(&message).await.map_err(|error| Failure::unreachable(&error))?;
        // Received into spare capacity: nothing is zeroed, nothing copied after.
        let mut buffer = BytesMut::with_capacity(self.receive_size);
        loop {
            buffer.clear();
            let len = socket.recv_buf(&mut buffer).await.map_err(|error| Failure::unreachable(&error))?;
            let received = buffer.get(..len).unwrap_or_default();
            match query.matches(received, id, false) {
                Ok(()) => {
                    buffer.truncate(len);
                    self.release(socket, uses + 1);
                    return Ok(buffer.freeze());
                }
                Err(mismatch) => {
                    stats.spoof_dropped();
                    tracing::debug!(server = %self.address, reason = mismatch.as_str(), "dropped a UDP datagram");
                }
            }
        }
    }

    /// A new socket on a random port, connected to the server.
    async fn open(&self) -> Result<UdpSocket, Failure> {
        let local: SocketAddr = match self.address {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await.map_err(|error| Failure::unreachable(&error))?;
        socket.connect(self.address).await.map_err(|error| Failure::unreachable(&error))?;
        Ok(socket)
    }

    /// Keep a socket for another query, unless it has carried its share.
    /// Sockets of queries that failed or timed out are simply dropped: a
    /// late answer must not meet the next query.
    fn release(&self, socket: UdpSocket, uses: u32) {
        if uses >= QUERIES_PER_SOCKET {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push_back(Idle { socket, uses });
        }
    }
}
