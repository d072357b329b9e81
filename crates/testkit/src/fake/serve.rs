//! The fake upstream's sockets: binding (with a retry when UDP's port is
//! taken for TCP) and the serving loops for UDP, TCP/DoT and DoH.
//!
//! Every loop owns the tasks it starts in a `JoinSet`, so aborting the loop
//! (when the fake is dropped) stops them all and closes their sockets.

use std::convert::Infallible;
use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::behaviour::{Packet, Plan, StreamEnd};
use super::{HttpRequest, SHARED_PORT_TRIES, Shared, lock};
use crate::{Error, Transport};

pub(super) async fn bind_udp(address: SocketAddr) -> Result<UdpSocket, Error> {
    UdpSocket::bind(address).await.map_err(|source| Error::Bind { transport: "UDP", address, source })
}

pub(super) async fn bind_tcp(address: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(address).await.map_err(|source| Error::Bind { transport: "TCP", address, source })
}

/// The UDP socket and TCP listener asked for, on one port when both are.
pub(super) async fn bind_udp_and_tcp(
    address: SocketAddr,
    udp: bool,
    tcp: bool,
) -> Result<(Option<UdpSocket>, Option<TcpListener>), Error> {
    Ok(match (udp, tcp) {
        (false, false) => (None, None),
        (true, false) => (Some(bind_udp(address).await?), None),
        (false, true) => (None, Some(bind_tcp(address).await?)),
        (true, true) if address.port() != 0 => (Some(bind_udp(address).await?), Some(bind_tcp(address).await?)),
        (true, true) => {
            let (socket, listener) = bind_shared_port(address, SHARED_PORT_TRIES, bind_udp).await?;
            (Some(socket), Some(listener))
        }
    })
}

/// Let the kernel pick a UDP port, then take TCP on the same number; when
/// that TCP port is in use, let go and try a new UDP port (up to `tries`).
async fn bind_shared_port<F, Fut>(
    address: SocketAddr,
    tries: usize,
    mut bind_udp: F,
) -> Result<(UdpSocket, TcpListener), Error>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: Future<Output = Result<UdpSocket, Error>>,
{
    for _ in 0..tries {
        let socket = bind_udp(address).await?;
        let chosen = socket.local_addr().map_err(|source| Error::Bind { transport: "UDP", address, source })?;
        match TcpListener::bind(chosen).await {
            Ok(listener) => return Ok((socket, listener)),
            Err(error) if error.kind() == ErrorKind::AddrInUse => continue,
            Err(source) => return Err(Error::Bind { transport: "TCP", address: chosen, source }),
        }
    }
    Err(Error::NoSharedPort { ip: address.ip(), tries })
}

/// Forget the tasks that have finished.
fn reap(tasks: &mut JoinSet<()>) {
    while tasks.try_join_next().is_some() {}
}

/// Serve UDP on `socket`; spoofs "from another port" leave from `spoofer`.
pub(super) async fn udp(socket: UdpSocket, spoofer: UdpSocket, shared: Arc<Shared>) {
    let socket = Arc::new(socket);
    let spoofer = Arc::new(spoofer);
    let mut tasks = JoinSet::new();
    let mut buffer = vec![0u8; 65535];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buffer).await else {
            // An ICMP error reported on the socket, say: keep serving, without spinning.
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let query = buffer.get(..len).unwrap_or_default();
        let plan = shared.receive(query, Transport::Udp, peer);
        let (socket, spoofer) = (socket.clone(), spoofer.clone());
        let send = async move {
            for packet in plan.packets {
                tokio::time::sleep(packet.after).await;
                let from = if packet.from_other_port { &spoofer } else { &socket };
                // A client that went away is not the fake's problem.
                let _ = from.send_to(&packet.bytes, peer).await;
            }
        };
        tasks.spawn(send);
        reap(&mut tasks);
    }
}

/// Accept connections on `listener`, counting them, and serve each with
/// `serve` in a task this loop owns.
async fn accept<F, Fut>(listener: TcpListener, shared: Arc<Shared>, serve: F)
where
    F: Fn(TcpStream, SocketAddr, Arc<Shared>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        shared.connection();
        connections.spawn(serve(stream, peer, shared.clone()));
        reap(&mut connections);
    }
}

/// Accept TCP connections (with TLS for DoT) and serve each.
pub(super) async fn streams(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    transport: Transport,
    shared: Arc<Shared>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    accept(listener, shared, move |stream, peer, shared| {
        let acceptor = acceptor.clone();
        async move {
            match acceptor {
                None => serve_stream(stream, peer, transport, shared).await,
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve_stream(stream, peer, transport, shared).await;
                    }
                }
            }
        }
    })
    .await;
}

/// A DNS message with its two-octet length in front (RFC 1035 4.2.2).
fn framed(message: &[u8]) -> Vec<u8> {
    let len = u16::try_from(message.len()).unwrap_or(u16::MAX);
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(message);
    frame
}

async fn write_packets<W: AsyncWrite + Unpin>(writer: &AsyncMutex<W>, packets: &[Packet]) {
    for packet in packets {
        tokio::time::sleep(packet.after).await;
        let _ = writer.lock().await.write_all(&framed(&packet.bytes)).await;
    }
}

/// Serve length-prefixed queries on one connection. Answers that wait (a
/// delay, a spoof first) are sent from tasks of their own, so they may
/// overtake each other as RFC 7766 allows.
async fn serve_stream<S>(stream: S, peer: SocketAddr, transport: Transport, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let writer = Arc::new(AsyncMutex::new(writer));
    let mut pending = JoinSet::new();
    loop {
        let Ok(len) = reader.read_u16().await else { return };
        let mut query = vec![0u8; usize::from(len)];
        if reader.read_exact(&mut query).await.is_err() {
            return;
        }
        let Plan { packets, stream_end, .. } = shared.receive(&query, transport, peer);
        match stream_end {
            StreamEnd::KeepOpen if packets.iter().all(|packet| packet.after.is_zero()) => {
                write_packets(&writer, &packets).await;
            }
            StreamEnd::KeepOpen => {
                let writer = writer.clone();
                pending.spawn(async move { write_packets(&writer, &packets).await });
            }
            StreamEnd::Close => {
                write_packets(&writer, &packets).await;
                let _ = writer.lock().await.shutdown().await;
                return;
            }
            StreamEnd::CloseMidPacket => {
                let (last, before) = packets.split_last().map_or((None, &packets[..0]), |(l, b)| (Some(l), b));
                write_packets(&writer, before).await;
                if let Some(last) = last {
                    tokio::time::sleep(last.after).await;
                    let frame = framed(&last.bytes);
                    let half = frame.get(..frame.len() / 2).unwrap_or_default();
                    let mut writer = writer.lock().await;
                    let _ = writer.write_all(half).await;
                    let _ = writer.flush().await;
                }
                return;
            }
        }
        reap(&mut pending);
    }
}

/// Runs hyper's HTTP/2 stream tasks in a `JoinSet` the connection owns, so
/// they stop with it (a held request must not outlive the fake).
#[derive(Clone, Default)]
struct OwnedExecutor(Arc<Mutex<JoinSet<()>>>);

impl<F> hyper::rt::Executor<F> for OwnedExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        let mut tasks = lock(&self.0);
        tasks.spawn(future);
        reap(&mut tasks);
    }
}

type BoxedResponse = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

/// Accept DoH connections: TLS, then HTTP/2 or HTTP/1.1 as negotiated.
pub(super) async fn https(listener: TcpListener, tls: Arc<rustls::ServerConfig>, shared: Arc<Shared>) {
    let acceptor = TlsAcceptor::from(tls);
    accept(listener, shared, move |stream, peer, shared| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(stream) = acceptor.accept(stream).await else { return };
            let service = hyper::service::service_fn(move |request| -> BoxedResponse {
                Box::pin(serve_request(request, peer, shared.clone()))
            });
            // The builder owns the executor: when this connection ends, so do its streams.
            let _ = hyper_util::server::conn::auto::Builder::new(OwnedExecutor::default())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}

/// One DoH request (RFC 8484): GET with `?dns=` or POST of
/// `application/dns-message` to `/dns-query`.
async fn serve_request(
    request: Request<hyper::body::Incoming>,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().as_str().to_owned();
    shared.http_request(HttpRequest {
        method: method.clone(),
        version: format!("{:?}", request.version()),
        uri: request.uri().to_string(),
    });
    if request.uri().path() != "/dns-query" {
        return Ok(status(StatusCode::NOT_FOUND));
    }
    let query = match method.as_str() {
        "GET" => {
            let encoded = request.uri().query().and_then(|query| query.split('&').find_map(|p| p.strip_prefix("dns=")));
            let decoded = encoded.map(|text| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text));
            match decoded {
                Some(Ok(query)) => query,
                _ => return Ok(status(StatusCode::BAD_REQUEST)),
            }
        }
        "POST" => {
            let content_type = request.headers().get("content-type").and_then(|value| value.to_str().ok());
            if content_type != Some("application/dns-message") {
                return Ok(status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
            }
            match request.into_body().collect().await {
                Ok(body) => body.to_bytes().to_vec(),
                Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
            }
        }
        _ => return Ok(status(StatusCode::METHOD_NOT_ALLOWED)),
    };
    let plan = shared.receive(&query, Transport::Doh, peer);
    if let Some(code) = plan.http_status {
        return Ok(status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)));
    }
    let Some(packet) = plan.packets.into_iter().next() else {
        // Silence: hold the request until the client gives up or the fake stops.
        return std::future::pending().await;
    };
    tokio::time::sleep(packet.after).await;
    let mut response = Response::new(Full::new(Bytes::from(packet.bytes)));
    if let Ok(value) = "application/dns-message".parse() {
        response.headers_mut().insert("content-type", value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_tcp_port_makes_the_binding_try_another() {
        // The first UDP socket the kernel "picks" has its TCP port taken.
        let first = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let taken = TcpListener::bind(first.local_addr().unwrap()).await.unwrap();
        let mut offered = Some(first);
        let address: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (socket, listener) = bind_shared_port(address, 4, |address| {
            let next = offered.take();
            async move {
                match next {
                    Some(socket) => Ok(socket),
                    None => bind_udp(address).await,
                }
            }
        })
        .await
        .unwrap();
        let port = socket.local_addr().unwrap().port();
        assert_ne!(port, taken.local_addr().unwrap().port());
        assert_eq!(listener.local_addr().unwrap().port(), port);
    }

    #[tokio::test]
    async fn it_gives_up_after_the_tries_with_a_clear_error() {
        let first = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = first.local_addr().unwrap();
        let _taken = TcpListener::bind(port).await.unwrap();
        // One try, on a port whose TCP side is taken.
        let mut offered = Some(first);
        let error = bind_shared_port("127.0.0.1:0".parse().unwrap(), 1, |address| {
            let next = offered.take();
            async move { next.ok_or(Error::NoSharedPort { ip: address.ip(), tries: 0 }) }
        })
        .await
        .err()
        .unwrap();
        assert!(error.to_string().contains("after 1 tries"), "{error}");
    }

    #[test]
    fn frames_carry_the_length_first() {
        assert_eq!(framed(&[7, 8, 9]), [0, 3, 7, 8, 9]);
    }
}
