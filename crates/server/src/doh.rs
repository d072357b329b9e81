//! DNS-over-HTTPS listener (RFC 8484): HTTP/1.1 and HTTP/2, GET `?dns=` and
//! POST `application/dns-message`, over TLS or, behind a TLS-terminating
//! proxy, plain HTTP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming as HttpBody;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use signpost_wire::{Message, RecordType};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::metrics::DropIndex;
use crate::pipeline::{Incoming, ListenerContext, Pipeline, Reply};
use crate::tcp::{ConnectionCounts, StreamLimits};

const CONTENT_TYPE: &str = "application/dns-message";

/// Everything a DoH request handler needs.
pub(crate) struct Service {
    pub(crate) context: Arc<ListenerContext>,
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) path: String,
}

/// Accept connections until `stop` is cancelled.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    context: Arc<ListenerContext>,
    pipeline: Arc<Pipeline>,
    path: String,
    stop: CancellationToken,
    limits: StreamLimits,
) {
    let service = Arc::new(Service { context, pipeline, path });
    let connections = ConnectionCounts::new(&limits);
    while let Some((stream, peer, slot)) =
        connections.accept(&listener, &stop, &service.context, &service.pipeline.metrics).await
    {
        let local = stream.local_addr().ok();
        let service = service.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(service, stream, peer, local, limits, stop).await,
                Some(acceptor) => match tokio::time::timeout(limits.idle_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(service, stream, peer, local, limits, stop).await,
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
            drop(slot);
        });
    }
}

/// When a connection last finished a request, and how many it has open:
/// a connection with none open for the idle timeout is closed.
struct Activity {
    opened: Instant,
    /// Milliseconds after `opened` that the last request finished.
    last: AtomicU64,
    open: AtomicUsize,
}

impl Activity {
    fn idle_for(&self, now: Instant) -> Option<Duration> {
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = self.opened + Duration::from_millis(self.last.load(Ordering::Acquire));
        Some(now.saturating_duration_since(last))
    }
}

/// A request being served; dropped (answered, or its stream reset) it marks the connection active.
struct RequestGuard(Arc<Activity>);

impl RequestGuard {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.open.fetch_add(1, Ordering::AcqRel);
        Self(activity.clone())
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let elapsed = self.0.opened.elapsed().as_millis() as u64;
        self.0.last.fetch_max(elapsed, Ordering::AcqRel);
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serve HTTP/1.1 or HTTP/2 on one connection, within the limits: streams
/// per connection, header size, HTTP/2 streams reset before they are
/// served (CVE-2023-44487, "rapid reset": over the cap the connection gets
/// GOAWAY), and an idle timeout.
pub(crate) async fn serve_connection<I>(
    service: Arc<Service>,
    io: I,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    limits: StreamLimits,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let activity = Arc::new(Activity { opened: Instant::now(), last: AtomicU64::new(0), open: AtomicUsize::new(0) });
    let handler = {
        let activity = activity.clone();
        service_fn(move |request| {
            let service = service.clone();
            let guard = RequestGuard::start(&activity);
            async move {
                let response = service.handle(request, peer, local).await;
                drop(guard);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_buf_size((limits.doh_max_header_bytes as usize).max(8192))
        .max_headers(64);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.doh_max_streams)
        .max_header_list_size(limits.doh_max_header_bytes)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS);
    let connection = builder.serve_connection(TokioIo::new(io), handler);
    tokio::pin!(connection);
    let mut tick = tokio::time::interval((limits.idle_timeout / 4).max(Duration::from_millis(50)));
    loop {
        tokio::select! {
            _ = connection.as_mut() => break,
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                if activity.idle_for(Instant::now()).is_some_and(|idle| idle >= limits.idle_timeout) {
                    tracing::debug!(%peer, "idle DoH connection closed");
                    break;
                }
            }
        }
    }
}

/// HTTP/2 streams a client may reset before the server has served them
/// (h2's own default, made explicit); over it the connection is closed.
const MAX_PENDING_RESETS: usize = 20;

/// Streams the server may reset for protocol errors before it closes the connection.
const MAX_LOCAL_ERROR_RESETS: usize = 256;

/// Why a request carries no DNS query: the status and a short text.
pub(crate) type Rejection = (StatusCode, &'static str);

/// What a request's method, path and headers come to: a GET's query
/// already decoded, or a POST whose body is to be read.
pub(crate) enum Shape {
    Get(Vec<u8>),
    Post,
}

/// Check a request's path, method and headers, and decode a GET's
/// `?dns=` (base64url, padding tolerated).
pub(crate) fn check_request(path: &str, parts: &http::request::Parts) -> Result<Shape, Rejection> {
    if parts.uri.path() != path {
        return Err((StatusCode::NOT_FOUND, "not a DoH path"));
    }
    match parts.method {
        Method::GET => {
            let Some(encoded) =
                parts.uri.query().and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("dns=")))
            else {
                return Err((StatusCode::BAD_REQUEST, "missing dns parameter"));
            };
            let trimmed = encoded.trim_end_matches('=');
            match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed) {
                Ok(bytes) if bytes.len() <= usize::from(u16::MAX) => Ok(Shape::Get(bytes)),
                Ok(_) => Err((StatusCode::URI_TOO_LONG, "a DNS message is at most 65535 bytes")),
                Err(_) => Err((StatusCode::BAD_REQUEST, "dns parameter is not base64url")),
            }
        }
        Method::POST => {
            let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let media_type = content_type.split(';').next().unwrap_or("").trim();
            if !media_type.eq_ignore_ascii_case(CONTENT_TYPE) {
                return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "content type must be application/dns-message"));
            }
            Ok(Shape::Post)
        }
        _ => Err((StatusCode::METHOD_NOT_ALLOWED, "use GET or POST")),
    }
}

impl Service {
    async fn handle(
        &self,
        request: Request<HttpBody>,
        peer: SocketAddr,
        local: Option<SocketAddr>,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        // POST bodies are kept as they were read (no copy); GET's is decoded.
        let query: Bytes = match check_request(&self.path, &parts) {
            Ok(Shape::Get(query)) => Bytes::from(query),
            Ok(Shape::Post) => match Limited::new(body, usize::from(u16::MAX)).collect().await {
                Ok(body) => body.to_bytes(),
                Err(_) => return status(StatusCode::PAYLOAD_TOO_LARGE, "a DNS message is at most 65535 bytes"),
            },
            Err((code, text)) => {
                let mut response = status(code, text);
                if code == StatusCode::METHOD_NOT_ALLOWED {
                    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
                }
                return response;
            }
        };
        if Message::parse(&query).is_err() {
            self.pipeline.metrics.dropped(DropIndex::Malformed);
            return status(StatusCode::BAD_REQUEST, "not a DNS message");
        }
        let mut out = Vec::with_capacity(512);
        let incoming = Incoming {
            bytes: &query,
            peer,
            local: local.map(|a| a.ip()),
            listener: &self.context,
            max_response: Some(usize::from(u16::MAX)),
            now: Instant::now(),
            state: None,
        };
        let response = match self.pipeline.handle(&incoming, &mut out) {
            Reply::Now { len } | Reply::Stream { len, .. } => {
                out.truncate(len);
                out
            }
            // Dropped with this future when the client goes away.
            Reply::Later(pending) => match pending.answer().await {
                Some(response) => response,
                None => return status(StatusCode::BAD_GATEWAY, "no answer"),
            },
            Reply::Silent | Reply::Close => return status(StatusCode::SERVICE_UNAVAILABLE, "query dropped"),
        };
        dns_response(response)
    }
}

fn dns_response(message: Vec<u8>) -> Response<Full<Bytes>> {
    let max_age = smallest_ttl(&message);
    let length = message.len();
    let mut response = Response::new(Full::new(Bytes::from(message)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    // "max-age=" and at most ten digits, written without an allocation.
    let mut text = [0u8; 24];
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    if std::io::Write::write_fmt(&mut cursor, format_args!("max-age={}", max_age.unwrap_or(0))).is_ok() {
        let written = usize::try_from(cursor.position()).unwrap_or(0);
        if let Some(Ok(value)) = text.get(..written).map(HeaderValue::from_bytes) {
            headers.insert(header::CACHE_CONTROL, value);
        }
    }
    response
}

/// The smallest TTL of the records (not OPT), which bounds HTTP freshness (RFC 8484 §5.1).
fn smallest_ttl(message: &[u8]) -> Option<u32> {
    let message = Message::parse(message).ok()?;
    message
        .records()
        .ok()?
        .flatten()
        .filter(|record| record.rtype() != RecordType::OPT)
        .map(|record| record.ttl())
        .min()
}

fn status(code: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = code;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}
