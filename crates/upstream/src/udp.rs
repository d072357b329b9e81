//! Do53 over UDP: a fresh connected socket per query, with a random port and ID.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::error::Failure;
use crate::query::Prepared;
use crate::stats::Stats;

/// Sends queries to one server over UDP.
///
/// Each query binds its own socket to port 0, so the kernel picks a random
/// ephemeral port, and connects it to the server: the kernel then drops
/// datagrams from any other address, and an ICMP port unreachable comes back
/// as an error on the next receive instead of a silent wait. The number of
/// sockets open at once is bounded by the group's semaphore (the socket pool).
#[derive(Debug)]
pub(crate) struct UdpTransport {
    address: SocketAddr,
    sockets: Arc<Semaphore>,
    receive_size: usize,
}

impl UdpTransport {
    pub(crate) fn new(address: SocketAddr, sockets: Arc<Semaphore>, edns_payload: u16) -> Self {
        Self { address, sockets, receive_size: usize::from(edns_payload).clamp(4096, signpost_wire::MAX_MESSAGE_LEN) }
    }

    /// Send `query` and wait for the first datagram that answers it. Others
    /// (wrong ID, wrong question, not a response) are dropped and counted.
    pub(crate) async fn exchange(&self, query: &Prepared, stats: &Stats) -> Result<Bytes, Failure> {
        let _permit = self.sockets.acquire().await.map_err(|_| Failure::Unreachable("socket pool closed".into()))?;
        let local: SocketAddr = match self.address {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await.map_err(|error| Failure::unreachable(&error))?;
        socket.connect(self.address).await.map_err(|error| Failure::unreachable(&error))?;
        let id = rand::random::<u16>();
        let message = query.with_id(id, 0);
        socket.send(&message).await.map_err(|error| Failure::unreachable(&error))?;
        let mut buffer = vec![0u8; self.receive_size];
        loop {
            let len = socket.recv(&mut buffer).await.map_err(|error| Failure::unreachable(&error))?;
            let received = buffer.get(..len).unwrap_or_default();
            match query.matches(received, id, false) {
                Ok(()) => return Ok(Bytes::copy_from_slice(received)),
                Err(mismatch) => {
                    stats.spoof_dropped();
                    tracing::debug!(server = %self.address, reason = mismatch.as_str(), "dropped a UDP datagram");
                }
            }
        }
    }
}
