//! Do53 over TCP (RFC 7766) and DNS over TLS (RFC 7858): length-prefixed
//! messages, pipelined on reused connections, answers matched by ID in any order.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::error::Failure;
use crate::query::Prepared;
use crate::stats::Stats;

/// A reply to one pipelined query.
type Reply = oneshot::Sender<Result<Bytes, Failure>>;

/// One query handed to a connection's task: the framed message (ID not yet set) and where to answer.
struct Request {
    framed: BytesMut,
    reply: Reply,
}

/// Sends queries to one server over TCP or TLS, reusing connections.
pub(crate) struct StreamTransport {
    address: SocketAddr,
    /// The local address connections are made from, if one is given.
    source: Option<std::net::IpAddr>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    max_in_flight: usize,
    max_connections: usize,
    idle_timeout: Duration,
    connections: Mutex<Vec<Arc<Connection>>>,
}

impl std::fmt::Debug for StreamTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTransport").field("address", &self.address).field("tls", &self.tls.is_some()).finish()
    }
}

/// An open connection: its task holds the socket.
struct Connection {
    requests: mpsc::UnboundedSender<Request>,
    in_flight: Arc<Semaphore>,
    answers: Arc<AtomicU64>,
}

/// A TCP connection to `address`, from `source` when given.
pub(crate) async fn connect_from(address: SocketAddr, source: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(source) = source else { return TcpStream::connect(address).await };
    let socket = if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(address).await
}

impl StreamTransport {
    pub(crate) fn new(
        (address, source): (SocketAddr, Option<std::net::IpAddr>),
        tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
        max_in_flight: usize,
        max_connections: usize,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            address,
            source,
            tls: tls.map(|(config, name)| (TlsConnector::from(config), name)),
            max_in_flight: max_in_flight.max(1),
            max_connections: max_connections.max(1),
            idle_timeout,
            connections: Mutex::new(Vec::new()),
        }
    }

    /// Send `query` and wait for its answer. A query that finds a reused
    /// connection closed under it is sent once more on a new connection.
    pub(crate) async fn exchange(&self, query: &Prepared, stats: &Stats) -> Result<Bytes, Failure> {
        let (connection, permit, fresh) = self.connection().await?;
        match self.exchange_on(&connection, query, stats).await {
            Err(Failure::Unreachable(reason)) if !fresh => {
                tracing::debug!(server = %self.address, %reason, "reused connection failed; retrying on a new one");
                drop(permit);
                let (connection, _permit, _) = self.connection().await?;
                self.exchange_on(&connection, query, stats).await
            }
            result => result,
        }
    }

    async fn exchange_on(&self, connection: &Connection, query: &Prepared, stats: &Stats) -> Result<Bytes, Failure> {
        let mut framed = query.with_id(0, 2);
        let len = u16::try_from(framed.len() - 2).unwrap_or(u16::MAX);
        if let Some(prefix) = framed.get_mut(..2) {
            prefix.copy_from_slice(&len.to_be_bytes());
        }
        let (reply, answer) = oneshot::channel();
        connection
            .requests
            .send(Request { framed, reply })
            .map_err(|_| Failure::Unreachable("connection closed".into()))?;
        let response =
            answer.await.map_err(|_| Failure::Unreachable("connection closed before the answer".into()))??;
        let id = signpost_wire::Header::parse(&response).map(|header| header.id).unwrap_or_default();
        match query.matches(&response, id, true) {
            Ok(()) => Ok(response),
            Err(mismatch) => {
                stats.spoof_dropped();
                Err(Failure::Failed(mismatch.as_str().to_string()))
            }
        }
    }

    /// A connection with room for one more query, opening one if needed.
    async fn connection(&self) -> Result<(Arc<Connection>, OwnedSemaphorePermit, bool), Failure> {
        let mut connections = self.connections.lock().await;
        connections.retain(|connection| !connection.requests.is_closed());
        for connection in connections.iter() {
            if let Ok(permit) = connection.in_flight.clone().try_acquire_owned() {
                let reused = connection.answers.load(Ordering::Relaxed) > 0;
                return Ok((connection.clone(), permit, !reused));
            }
        }
        if connections.len() < self.max_connections {
            let connection = Arc::new(self.connect().await?);
            let permit = connection
                .in_flight
                .clone()
                .try_acquire_owned()
                .map_err(|_| Failure::Unreachable("connection closed".into()))?;
            connections.push(connection.clone());
            return Ok((connection, permit, true));
        }
        // Every connection is full: wait for room on whichever frees first.
        let waiting: Vec<_> = connections
            .iter()
            .map(|connection| {
                let connection = connection.clone();
                Box::pin(async move {
                    let permit = connection.in_flight.clone().acquire_owned().await;
                    (connection, permit)
                })
            })
            .collect();
        drop(connections);
        if waiting.is_empty() {
            return Err(Failure::Unreachable("no connection".into()));
        }
        let ((connection, permit), _, _) = futures_util::future::select_all(waiting).await;
        let permit = permit.map_err(|_| Failure::Unreachable("connection closed".into()))?;
        Ok((connection, permit, false))
    }

    async fn connect(&self) -> Result<Connection, Failure> {
        let tcp = connect_from(self.address, self.source).await.map_err(|error| Failure::unreachable(&error))?;
        // Queries are small and latency matters more than packet count.
        let _ = tcp.set_nodelay(true);
        let (requests, receiver) = mpsc::unbounded_channel();
        let answers = Arc::new(AtomicU64::new(0));
        let driver = Driver { address: self.address, idle_timeout: self.idle_timeout, answers: answers.clone() };
        match &self.tls {
            None => {
                tokio::spawn(driver.run(tcp, receiver));
            }
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|error| Failure::Unreachable(format!("TLS handshake failed: {error}")))?;
                tokio::spawn(driver.run(tls, receiver));
            }
        }
        tracing::debug!(server = %self.address, tls = self.tls.is_some(), "connected");
        Ok(Connection { requests, in_flight: Arc::new(Semaphore::new(self.max_in_flight)), answers })
    }
}

/// The task that owns one connection.
struct Driver {
    address: SocketAddr,
    idle_timeout: Duration,
    answers: Arc<AtomicU64>,
}

impl Driver {
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(self, stream: S, mut requests: mpsc::UnboundedReceiver<Request>) {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut pending: HashMap<u16, Reply> = HashMap::new();
        let mut outgoing = BytesMut::new();
        let mut incoming = BytesMut::with_capacity(4096);
        let mut needs_flush = false;
        let mut accepting = true;
        let idle = tokio::time::sleep(self.idle_timeout);
        tokio::pin!(idle);
        let failure = loop {
            tokio::select! {
                request = requests.recv(), if accepting => match request {
                    Some(request) => queue(request, &mut pending, &mut outgoing),
                    None => accepting = false,
                },
                written = send(&mut writer, &outgoing), if needs_flush || !outgoing.is_empty() => match written {
                    Ok(Some(0)) => break Some(Failure::Unreachable("connection closed while sending".into())),
                    Ok(Some(len)) => {
                        outgoing.advance(len);
                        needs_flush = true;
                    }
                    Ok(None) => needs_flush = false,
                    Err(error) => break Some(Failure::unreachable(&error)),
                },
                read = reader.read_buf(&mut incoming) => match read {
                    Ok(0) if pending.is_empty() => break None,
                    Ok(0) => break Some(Failure::Unreachable("connection closed by the server mid-stream".into())),
                    Ok(_) => {
                        if let Err(failure) = self.dispatch(&mut incoming, &mut pending) {
                            break Some(failure);
                        }
                    }
                    Err(error) => break Some(Failure::unreachable(&error)),
                },
                () = &mut idle => {
                    // Forget queries whose callers gave up; close if nothing else waits.
                    pending.retain(|_, reply| !reply.is_closed());
                    if pending.is_empty() && outgoing.is_empty() {
                        break None;
                    }
                }
            }
            if !accepting && pending.is_empty() && outgoing.is_empty() {
                break None;
            }
            idle.as_mut().reset(Instant::now() + self.idle_timeout);
        };
        requests.close();
        let failure = failure.unwrap_or_else(|| Failure::Unreachable("connection closed".into()));
        if !pending.is_empty() {
            tracing::debug!(server = %self.address, pending = pending.len(), ?failure, "connection failed");
        }
        for (_, reply) in pending {
            let _ = reply.send(Err(failure.clone()));
        }
        // Queries that raced the close are answered too, so no caller waits for its timeout.
        while let Ok(request) = requests.try_recv() {
            let _ = request.reply.send(Err(failure.clone()));
        }
        let _ = writer.shutdown().await;
    }

    /// Hand every complete message in `incoming` to the query with its ID.
    fn dispatch(&self, incoming: &mut BytesMut, pending: &mut HashMap<u16, Reply>) -> Result<(), Failure> {
        loop {
            let Some(prefix) = incoming.get(..2) else { return Ok(()) };
            let len = usize::from(u16::from_be_bytes([
                prefix.first().copied().unwrap_or(0),
                prefix.get(1).copied().unwrap_or(0),
            ]));
            if len < signpost_wire::HEADER_LEN {
                return Err(Failure::Failed(format!("{len}-byte message on the stream, shorter than a header")));
            }
            if incoming.len() < 2 + len {
                incoming.reserve(2 + len - incoming.len());
                return Ok(());
            }
            incoming.advance(2);
            let message = incoming.split_to(len).freeze();
            let id = signpost_wire::Header::parse(&message).map(|header| header.id).unwrap_or_default();
            match pending.remove(&id) {
                Some(reply) => {
                    self.answers.fetch_add(1, Ordering::Relaxed);
                    let _ = reply.send(Ok(message));
                }
                None => tracing::debug!(server = %self.address, id, "answer for no query in flight dropped"),
            }
        }
    }
}

/// Write some of `outgoing`, or flush when it is all written: `Some(written)` or `None` for flushed.
/// Cancel safe: a cancelled write wrote nothing, and a cancelled flush is resumed by the next.
async fn send<W: AsyncWrite + Unpin>(writer: &mut W, outgoing: &[u8]) -> std::io::Result<Option<usize>> {
    if outgoing.is_empty() { writer.flush().await.map(|()| None) } else { writer.write(outgoing).await.map(Some) }
}

/// Give `request` an ID no query in flight on this connection has, and queue it.
fn queue(request: Request, pending: &mut HashMap<u16, Reply>, outgoing: &mut BytesMut) {
    let Request { mut framed, reply } = request;
    if reply.is_closed() {
        return;
    }
    if pending.len() >= usize::from(u16::MAX) / 2 {
        pending.retain(|_, reply| !reply.is_closed());
    }
    for _ in 0..64 {
        let id = rand::random::<u16>();
        if let Entry::Vacant(slot) = pending.entry(id) {
            signpost_wire::relay::set_id(framed.get_mut(2..).unwrap_or_default(), id);
            outgoing.extend_from_slice(&framed);
            slot.insert(reply);
            return;
        }
    }
    let _ = reply.send(Err(Failure::Failed("no free message ID on the connection".into())));
}

#[cfg(test)]
mod tests {
    use super::*;
    use signpost_wire::{Class, Message, MessageBuilder, NameBuf, RecordType};
    use tokio::net::TcpListener;

    fn query(name: &str) -> Prepared {
        let name: NameBuf = name.parse().unwrap();
        Prepared::new(&crate::query::build_query(&name, RecordType::A, None), 1232).unwrap()
    }

    /// Read `count` framed queries, then answer them in reverse order.
    async fn reversing_server(listener: TcpListener, count: usize) {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut queries = Vec::new();
        for _ in 0..count {
            let len = stream.read_u16().await.unwrap();
            let mut message = vec![0; usize::from(len)];
            stream.read_exact(&mut message).await.unwrap();
            queries.push(message);
        }
        for message in queries.iter().rev() {
            let parsed = Message::parse(message).unwrap();
            let mut response = Vec::new();
            MessageBuilder::response_to(&mut response, &parsed).unwrap().finish().unwrap();
            stream.write_u16(response.len() as u16).await.unwrap();
            stream.write_all(&response).await.unwrap();
        }
        // Hold the connection open until the client goes.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    }

    #[tokio::test]
    async fn pipelined_answers_arrive_out_of_order_on_one_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(reversing_server(listener, 3));
        let transport = StreamTransport::new((address, None), None, 8, 1, Duration::from_secs(5));
        let stats = Stats::default();
        let (a, b, c) = (query("a.example"), query("b.example"), query("c.example"));
        let (ra, rb, rc) = tokio::join!(
            transport.exchange(&a, &stats),
            transport.exchange(&b, &stats),
            transport.exchange(&c, &stats)
        );
        for (response, name) in [(ra, "a.example."), (rb, "b.example."), (rc, "c.example.")] {
            let response = response.unwrap();
            let parsed = Message::parse(&response).unwrap();
            assert_eq!(parsed.first_question().unwrap().unwrap().name().to_string(), name);
            assert_eq!(parsed.first_question().unwrap().unwrap().qclass(), Class::IN);
        }
        assert_eq!(transport.connections.lock().await.len(), 1);
        drop(transport);
        server.abort();
    }

    #[test]
    fn ids_are_unique_per_connection() {
        let mut pending = HashMap::new();
        let mut outgoing = BytesMut::new();
        let prepared = query("a.example");
        let mut receivers = Vec::new();
        for _ in 0..1000 {
            let (reply, receiver) = oneshot::channel();
            receivers.push(receiver);
            queue(Request { framed: prepared.with_id(0, 2), reply }, &mut pending, &mut outgoing);
        }
        assert_eq!(pending.len(), 1000);
    }
}
