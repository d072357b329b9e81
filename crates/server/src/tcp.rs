//! TCP and DNS-over-TLS listeners (RFC 7766, RFC 7858).
//!
//! Each connection reads length-prefixed queries and answers them as they
//! finish, out of order, with a cap on queries in flight per connection (so
//! a slow client only slows itself) and on connections per listener. A
//! connection idle past the timeout is closed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::metrics::{DropIndex, Metrics};
use crate::pipeline::{Incoming, ListenerContext, Pipeline, Reply};
use crate::sys;

/// Limits for stream listeners.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamLimits {
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_client: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) idle_timeout: Duration,
    /// Most concurrent HTTP/2 streams per DoH connection.
    pub(crate) doh_max_streams: u32,
    /// Largest HTTP header block a DoH client may send.
    pub(crate) doh_max_header_bytes: u32,
}

/// The open connections of one stream listener, in all and per client
/// (IPv6 clients per /64). The per-client table has an entry only for a
/// client with a connection open, so it is no larger than the total cap.
pub(crate) struct ConnectionCounts {
    total: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    max_total: usize,
    max_per_client: usize,
}

/// One admitted connection; dropping it gives the place back.
pub(crate) struct ConnectionSlot {
    counts: Arc<ConnectionCounts>,
    client: IpAddr,
}

impl ConnectionCounts {
    pub(crate) fn new(limits: &StreamLimits) -> Arc<Self> {
        Arc::new(Self {
            total: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            max_total: limits.max_connections,
            max_per_client: limits.max_connections_per_client.max(1),
        })
    }

    /// A place for a connection from `peer`, or `None` when the listener
    /// or the client is at its cap.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<ConnectionSlot> {
        let client = client_key(peer);
        let mut per_client = self.per_client.lock().ok()?;
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return None;
        }
        let open = per_client.entry(client).or_insert(0);
        if *open >= self.max_per_client {
            return None;
        }
        *open += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(ConnectionSlot { counts: self.clone(), client })
    }

    /// The next connection `listener` admits (`TCP_NODELAY` set), with its
    /// place, or `None` once `stop` is cancelled. A failed accept (out of
    /// descriptors) is logged and retried after a pause; a connection over
    /// a cap is closed at once and counted as dropped.
    pub(crate) async fn accept(
        self: &Arc<Self>,
        listener: &TcpListener,
        stop: &CancellationToken,
        context: &ListenerContext,
        metrics: &Metrics,
    ) -> Option<(TcpStream, SocketAddr, ConnectionSlot)> {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.cancelled() => return None,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(listener = %context.id, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Some(slot) = self.admit(peer.ip()) else {
                metrics.dropped(DropIndex::TcpLimit);
                continue;
            };
            let _ = stream.set_nodelay(true);
            return Some((stream, peer, slot));
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.counts.total.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut per_client) = self.counts.per_client.lock()
            && let Some(open) = per_client.get_mut(&self.client)
        {
            *open = open.saturating_sub(1);
            if *open == 0 {
                per_client.remove(&self.client);
            }
        }
    }
}

/// The address a client is counted under: IPv4 as is, IPv6 by its /64.
fn client_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
    }
}

/// Bind a TCP listening socket (SO_REUSEADDR so restarts do not wait out
/// TIME_WAIT), or take the one a predecessor or systemd passed for this
/// address (see `handover`).
pub(crate) fn bind(address: SocketAddr, transport: &'static str) -> Result<std::net::TcpListener, Error> {
    if let Some(inherited) = crate::handover::take_tcp(address) {
        inherited.set_nonblocking(true).map_err(|e| Error::bind(transport, address, e))?;
        return Ok(inherited);
    }
    let make = || -> std::io::Result<std::net::TcpListener> {
        let domain = if address.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if address.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_tcp_nodelay(true)?;
        socket.bind(&address.into())?;
        socket.listen(1024)?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    };
    make().map_err(|e| Error::bind(transport, address, e))
}

/// Accept connections until `stop` is cancelled.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    context: Arc<ListenerContext>,
    pipeline: Arc<Pipeline>,
    limits: StreamLimits,
    stop: CancellationToken,
) {
    let connections = ConnectionCounts::new(&limits);
    while let Some((stream, peer, slot)) = connections.accept(&listener, &stop, &context, &pipeline.metrics).await {
        let connection = Connection {
            context: context.clone(),
            pipeline: pipeline.clone(),
            limits,
            peer,
            local: stream.local_addr().ok().map(|a| a.ip()),
            fd: stream.as_raw_fd(),
            stop: stop.clone(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection.run(stream).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(limits.idle_timeout, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(stream)) => connection.run(stream).await,
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(slot);
        });
    }
}

struct Connection {
    context: Arc<ListenerContext>,
    pipeline: Arc<Pipeline>,
    limits: StreamLimits,
    peer: SocketAddr,
    local: Option<IpAddr>,
    fd: std::os::fd::RawFd,
    stop: CancellationToken,
}

impl Connection {
    async fn run<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(self, stream: S) {
        let (mut reader, writer) = tokio::io::split(stream);
        let (sender, receiver) = mpsc::channel::<Vec<u8>>(self.limits.max_in_flight.max(1) * 2);
        let writer_task = tokio::spawn(write_frames(writer, receiver));
        let permits = Arc::new(Semaphore::new(self.limits.max_in_flight.max(1)));
        let mut reset = false;
        let mut buffer = vec![0u8; 512];
        loop {
            let length = tokio::select! {
                read = tokio::time::timeout(self.limits.idle_timeout, reader.read_u16()) => match read {
                    Ok(Ok(length)) => usize::from(length),
                    // Closed, reset, or idle for too long.
                    _ => break,
                },
                _ = self.stop.cancelled() => break,
            };
            if buffer.len() < length {
                buffer.resize(length, 0);
            }
            let Some(query) = buffer.get_mut(..length) else { break };
            match tokio::time::timeout(self.limits.idle_timeout, reader.read_exact(query)).await {
                Ok(Ok(_)) => {}
                _ => break,
            }
            let Ok(permit) = permits.clone().acquire_owned().await else { break };
            let mut out = Vec::with_capacity(512);
            let incoming = Incoming {
                bytes: buffer.get(..length).unwrap_or(&[]),
                peer: self.peer,
                local: self.local,
                listener: &self.context,
                max_response: Some(usize::from(u16::MAX)),
                now: Instant::now(),
                state: None,
            };
            match self.pipeline.handle(&incoming, &mut out) {
                Reply::Now { len } => {
                    out.truncate(len);
                    if sender.send(out).await.is_err() {
                        break;
                    }
                    drop(permit);
                }
                Reply::Later(pending) => {
                    let sender = sender.clone();
                    tokio::spawn(async move {
                        if let Some(response) = pending.answer().await {
                            let _ = sender.send(response).await;
                        }
                        drop(permit);
                    });
                }
                Reply::Stream { len, rest } => {
                    out.truncate(len);
                    // A transfer holds the connection's writer until it is done:
                    // its messages must not interleave with other answers' frames.
                    if sender.send(out).await.is_err() {
                        break;
                    }
                    let mut closed = false;
                    for message in rest {
                        if sender.send(message).await.is_err() {
                            closed = true;
                            break;
                        }
                    }
                    drop(permit);
                    if closed {
                        break;
                    }
                }
                Reply::Silent => drop(permit),
                Reply::Close => {
                    reset = true;
                    break;
                }
            }
        }
        if reset {
            sys::set_linger_zero(self.fd);
            writer_task.abort();
            return;
        }
        // Let answers still in flight go out before closing (RFC 7766 §6.2.3).
        drop(sender);
        let _ = tokio::time::timeout(Duration::from_secs(5), writer_task).await;
    }
}

/// Write frames as they come; flush whenever no more are waiting, so
/// pipelined answers share segments.
async fn write_frames<W: AsyncWrite + Unpin>(writer: W, mut receiver: mpsc::Receiver<Vec<u8>>) {
    let mut writer = BufWriter::with_capacity(16 * 1024, writer);
    while let Some(frame) = receiver.recv().await {
        let mut next = Some(frame);
        while let Some(frame) = next {
            let Ok(length) = u16::try_from(frame.len()) else { return };
            if writer.write_all(&length.to_be_bytes()).await.is_err() || writer.write_all(&frame).await.is_err() {
                return;
            }
            next = receiver.try_recv().ok();
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Convert a std listener to tokio (must run inside the runtime).
pub(crate) fn into_tokio(listener: std::net::TcpListener) -> Result<TcpListener, Error> {
    TcpListener::from_std(listener).map_err(|source| Error::Io { what: "registering a TCP listener", source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, max_connections_per_client: usize) -> StreamLimits {
        StreamLimits {
            max_connections,
            max_connections_per_client,
            max_in_flight: 1,
            idle_timeout: Duration::from_secs(1),
            doh_max_streams: 1,
            doh_max_header_bytes: 1,
        }
    }

    #[test]
    fn connections_are_capped_per_client_and_in_all_and_given_back() {
        let counts = ConnectionCounts::new(&limits(5, 2));
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let first = counts.admit(client).unwrap();
        let _second = counts.admit(client).unwrap();
        assert!(counts.admit(client).is_none(), "a third from one client");
        // One IPv6 /64 counts as one client.
        let _v6 = counts.admit("2001:db8::1".parse().unwrap()).unwrap();
        let _v6_other = counts.admit("2001:db8::2".parse().unwrap()).unwrap();
        assert!(counts.admit("2001:db8::3".parse().unwrap()).is_none());
        let _fifth = counts.admit("192.0.2.2".parse().unwrap()).unwrap();
        assert!(counts.admit("192.0.2.3".parse().unwrap()).is_none(), "the listener is full");
        drop(first);
        assert!(counts.admit(client).is_some(), "a closed connection gives its place back");
        assert!(counts.per_client.lock().unwrap().len() <= 5);
    }
}
