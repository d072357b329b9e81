//! DNS-over-HTTPS listener (RFC 8484): HTTP/1.1 and HTTP/2, GET `?dns=` and
//! POST `application/dns-message`, over TLS or, behind a TLS-terminating
//! proxy, plain HTTP.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming as HttpBody;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use signpost_wire::{Message, RecordType};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::metrics::DropIndex;
use crate::pipeline::{Incoming, ListenerContext, Pending, Pipeline, Reply};
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
    let streams = StreamQueue::default();
    let mut builder = Builder::new(streams.clone());
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
    let serving = serve_streams(connection, streams);
    tokio::pin!(serving);
    let mut tick = tokio::time::interval((limits.idle_timeout / 4).max(Duration::from_millis(50)));
    loop {
        tokio::select! {
            _ = serving.as_mut() => break,
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

/// A connection's HTTP/2 streams, handed over by hyper (as its executor)
/// to be run inside the connection's own task by [`serve_streams`] rather
/// than spawned: a task per request cost more than its answer from the
/// cache (allocating, scheduling and completing the task, and waking the
/// connection's task from another one), and a connection's frames are read
/// and written by one task anyway.
#[derive(Clone, Default)]
struct StreamQueue(Arc<Mutex<Vec<StreamFuture>>>);

type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

impl<F> hyper::rt::Executor<F> for StreamQueue
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        // Only the connection's own poll calls this, and the queue is
        // drained right after it, so the lock is never contended.
        if let Ok(mut queue) = self.0.lock() {
            queue.push(Box::pin(stream));
        }
    }
}

/// Drive `connection` and the streams it hands to `queue` until the
/// connection is done. Streams that answered are followed by another poll
/// of the connection, so their frames are written in the same turn.
async fn serve_streams<C>(connection: C, queue: StreamQueue)
where
    C: Future,
{
    let mut connection = std::pin::pin!(connection);
    let mut running = FuturesUnordered::<StreamFuture>::new();
    std::future::poll_fn(|cx| {
        loop {
            if connection.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            if let Ok(mut queue) = queue.0.lock() {
                running.extend(queue.drain(..));
            }
            let mut answered = false;
            while let Poll::Ready(Some(())) = running.poll_next_unpin(cx) {
                answered = true;
            }
            if !answered {
                return Poll::Pending;
            }
        }
    })
    .await
}

/// HTTP/2 streams a client may reset before the server has served them
/// (h2's own default, made explicit); over it the connection is closed.
const MAX_PENDING_RESETS: usize = 20;

/// Streams the server may reset for protocol errors before it closes the connection.
const MAX_LOCAL_ERROR_RESETS: usize = 256;

/// Why a request carries no DNS query: the status and a short text.
pub(crate) type Rejection = (StatusCode, &'static str);

/// What a request's method, path and headers come to: a GET's `?dns=`
/// value (padding removed), to be decoded by [`decode_get`], or a POST
/// whose body is to be read.
pub(crate) enum Shape<'a> {
    Get(&'a str),
    Post,
}

/// Check a request's path, method and headers, and find a GET's `?dns=`.
pub(crate) fn check_request<'a>(path: &str, parts: &'a http::request::Parts) -> Result<Shape<'a>, Rejection> {
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
            Ok(Shape::Get(encoded.trim_end_matches('=')))
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

/// A GET's query of at most this many bytes is decoded into a buffer on
/// the stack (a query is rarely over 100 bytes); a longer one into `spill`.
pub(crate) const INLINE_QUERY: usize = 512;

/// Decode a GET's `?dns=` value (base64url, padding already removed) into
/// `inline` when it fits, or else into `spill`.
pub(crate) fn decode_get<'b>(
    encoded: &str,
    inline: &'b mut [u8; INLINE_QUERY],
    spill: &'b mut Vec<u8>,
) -> Result<&'b [u8], Rejection> {
    const NOT_BASE64: Rejection = (StatusCode::BAD_REQUEST, "dns parameter is not base64url");
    let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let query: &[u8] = if base64::decoded_len_estimate(encoded.len()) <= INLINE_QUERY {
        let len = engine.decode_slice(encoded, inline).map_err(|_| NOT_BASE64)?;
        inline.get(..len).unwrap_or_default()
    } else {
        engine.decode_vec(encoded, spill).map_err(|_| NOT_BASE64)?;
        spill
    };
    if query.len() > usize::from(u16::MAX) {
        return Err((StatusCode::URI_TOO_LONG, "a DNS message is at most 65535 bytes"));
    }
    Ok(query)
}

/// A query's way through the pipeline, as far as it gets without waiting.
enum Started {
    Answered(Vec<u8>),
    Pending(Pending),
    Failed(Response<Full<Answer>>),
}

impl Service {
    async fn handle(
        &self,
        request: Request<HttpBody>,
        peer: SocketAddr,
        local: Option<SocketAddr>,
    ) -> Response<Full<Answer>> {
        let started = {
            let (parts, body) = request.into_parts();
            match check_request(&self.path, &parts) {
                // Decoded on the stack, and out of scope before any await.
                Ok(Shape::Get(encoded)) => {
                    let mut inline = [0u8; INLINE_QUERY];
                    let mut spill = Vec::new();
                    match decode_get(encoded, &mut inline, &mut spill) {
                        Ok(query) => self.start(query, peer, local),
                        Err(rejection) => return rejected(rejection),
                    }
                }
                // POST bodies are used as they were read (no copy).
                Ok(Shape::Post) => match Limited::new(body, usize::from(u16::MAX)).collect().await {
                    Ok(body) => self.start(&body.to_bytes(), peer, local),
                    Err(_) => return status(StatusCode::PAYLOAD_TOO_LARGE, "a DNS message is at most 65535 bytes"),
                },
                Err(rejection) => return rejected(rejection),
            }
        };
        match started {
            Started::Answered(response) => dns_response(response),
            // Dropped with this future when the client goes away.
            Started::Pending(pending) => match pending.answer().await {
                Some(response) => dns_response(response),
                None => status(StatusCode::BAD_GATEWAY, "no answer"),
            },
            Started::Failed(response) => response,
        }
    }

    /// Run `query` through the pipeline's synchronous steps.
    fn start(&self, query: &[u8], peer: SocketAddr, local: Option<SocketAddr>) -> Started {
        if Message::parse(query).is_err() {
            self.pipeline.metrics.dropped(DropIndex::Malformed);
            return Started::Failed(status(StatusCode::BAD_REQUEST, "not a DNS message"));
        }
        let mut out = Vec::with_capacity(512);
        let incoming = Incoming {
            bytes: query,
            peer,
            local: local.map(|a| a.ip()),
            listener: &self.context,
            max_response: Some(usize::from(u16::MAX)),
            now: Instant::now(),
            state: None,
        };
        match self.pipeline.handle(&incoming, &mut out) {
            Reply::Now { len } | Reply::Stream { len, .. } => {
                out.truncate(len);
                Started::Answered(out)
            }
            Reply::Later(pending) => Started::Pending(pending),
            Reply::Silent | Reply::Close => Started::Failed(status(StatusCode::SERVICE_UNAVAILABLE, "query dropped")),
        }
    }
}

/// A response body: the DNS answer as the pipeline wrote it, or a static
/// text. Sent as it is: no copy into `Bytes`, whose `From<Vec<u8>>`
/// allocates a shared header whenever the vector has spare capacity.
pub(crate) struct Answer {
    bytes: Cow<'static, [u8]>,
    sent: usize,
}

impl bytes::Buf for Answer {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.sent)
    }

    fn chunk(&self) -> &[u8] {
        self.bytes.get(self.sent..).unwrap_or_default()
    }

    fn advance(&mut self, count: usize) {
        self.sent = self.sent.saturating_add(count).min(self.bytes.len());
    }
}

fn body(bytes: Cow<'static, [u8]>) -> Full<Answer> {
    Full::new(Answer { bytes, sent: 0 })
}

fn rejected((code, text): Rejection) -> Response<Full<Answer>> {
    let mut response = status(code, text);
    if code == StatusCode::METHOD_NOT_ALLOWED {
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
    }
    response
}

fn dns_response(message: Vec<u8>) -> Response<Full<Answer>> {
    let max_age = smallest_ttl(&message).unwrap_or(0);
    let length = message.len();
    let mut response = Response::new(body(Cow::Owned(message)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    let common = &*COMMON_VALUES;
    let content_length = common.lengths.get(length).cloned().unwrap_or_else(|| HeaderValue::from(length));
    headers.insert(header::CONTENT_LENGTH, content_length);
    let cache_control = match usize::try_from(max_age).ok().and_then(|age| common.max_ages.get(age)) {
        Some(value) => Some(value.clone()),
        None => header_value(format_args!("max-age={max_age}")),
    };
    if let Some(value) = cache_control {
        headers.insert(header::CACHE_CONTROL, value);
    }
    response
}

/// Answers up to this many bytes take their `content-length` from
/// [`COMMON_VALUES`] (a UDP-sized answer and more).
const COMMON_LENGTHS: usize = 1500;

/// TTLs up to this many seconds take their `cache-control` from
/// [`COMMON_VALUES`] (an hour).
const COMMON_MAX_AGES: usize = 3600;

/// Header values made once: a `HeaderValue` made per response from a
/// number or from text allocates, and one cloned from these does not (they
/// point into one string made at first use and kept for the process's life).
struct CommonValues {
    /// `content-length` for 0..=COMMON_LENGTHS bytes.
    lengths: Vec<HeaderValue>,
    /// `cache-control: max-age=` for 0..=COMMON_MAX_AGES seconds.
    max_ages: Vec<HeaderValue>,
}

static COMMON_VALUES: LazyLock<CommonValues> = LazyLock::new(|| {
    use std::fmt::Write;
    let mut text = String::new();
    // Where `prefix` and each number up to `last` stand in `text`.
    let mut write_all = |prefix: &str, last: usize| -> Vec<std::ops::Range<usize>> {
        (0..=last)
            .map(|number| {
                let start = text.len();
                let _ = write!(text, "{prefix}{number}");
                start..text.len()
            })
            .collect()
    };
    let lengths = write_all("", COMMON_LENGTHS);
    let max_ages = write_all("max-age=", COMMON_MAX_AGES);
    let text: &'static str = Box::leak(text.into_boxed_str());
    let values = |ranges: Vec<std::ops::Range<usize>>| -> Vec<HeaderValue> {
        ranges
            .into_iter()
            .map_while(|range| text.get(range))
            .map_while(|value| HeaderValue::from_maybe_shared(Bytes::from_static(value.as_bytes())).ok())
            .collect()
    };
    CommonValues { lengths: values(lengths), max_ages: values(max_ages) }
});

/// A header value formatted on the stack (at most 24 bytes), or `None`.
fn header_value(arguments: std::fmt::Arguments<'_>) -> Option<HeaderValue> {
    let mut text = [0u8; 24];
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    std::io::Write::write_fmt(&mut cursor, arguments).ok()?;
    let written = usize::try_from(cursor.position()).ok()?;
    HeaderValue::from_bytes(text.get(..written)?).ok()
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

fn status(code: StatusCode, text: &'static str) -> Response<Full<Answer>> {
    let mut response = Response::new(body(Cow::Borrowed(text.as_bytes())));
    *response.status_mut() = code;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values made once read as the ones made per response would, at
    /// both ends of the tables and past them.
    #[test]
    fn common_header_values_match_formatted_ones() {
        let common = &*COMMON_VALUES;
        assert_eq!(common.lengths.len(), COMMON_LENGTHS + 1);
        assert_eq!(common.max_ages.len(), COMMON_MAX_AGES + 1);
        for length in [0, 1, 12, 512, COMMON_LENGTHS] {
            assert_eq!(common.lengths[length], HeaderValue::from(length), "content-length {length}");
        }
        for age in [0, 1, 300, COMMON_MAX_AGES] {
            let formatted = header_value(format_args!("max-age={age}")).expect("fits");
            assert_eq!(common.max_ages[age], formatted, "max-age {age}");
        }
        let longest = header_value(format_args!("max-age={}", u32::MAX)).expect("fits");
        assert_eq!(longest, "max-age=4294967295");
    }

    /// A response's `content-length` and `cache-control` from the tables and
    /// past them: the smallest TTL of the records, the message's length.
    #[test]
    fn dns_response_headers_follow_the_message() {
        for (ttl, padding) in [(42u32, 0usize), (86_400, 2_000)] {
            let mut message = vec![0u8; 12];
            message[2] = 0x81; // QR, RD
            message[7] = 1; // ANCOUNT
            message.extend_from_slice(&[0, 0, 1, 0, 1]); // root, A, IN
            message.extend_from_slice(&ttl.to_be_bytes());
            message.extend_from_slice(&[0, 4, 192, 0, 2, 1]);
            message.resize(message.len() + padding, 0);
            let length = message.len();
            let response = dns_response(message);
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], CONTENT_TYPE);
            assert_eq!(headers[header::CONTENT_LENGTH], length.to_string().as_str());
            assert_eq!(headers[header::CACHE_CONTROL], format!("max-age={ttl}").as_str());
        }
    }
}
