//! DNS-over-HTTPS listener (RFC 8484): HTTP/1.1 and HTTP/2, GET `?dns=` and
//! POST `application/dns-message`, over TLS or, behind a TLS-terminating
//! proxy, plain HTTP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming as HttpBody;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use signpost_wire::{Message, RecordType};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::pipeline::{Incoming, ListenerContext, Pipeline, Reply};

const CONTENT_TYPE: &str = "application/dns-message";

/// Everything a DoH request handler needs.
struct Service {
    context: Arc<ListenerContext>,
    pipeline: Arc<Pipeline>,
    path: String,
}

/// Accept connections until `stop` is cancelled.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    context: Arc<ListenerContext>,
    pipeline: Arc<Pipeline>,
    path: String,
    stop: CancellationToken,
    handshake_timeout: Duration,
) {
    let service = Arc::new(Service { context, pipeline, path });
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(listener = %service.context.id, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok();
        let service = service.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let handler = {
                let service = service.clone();
                service_fn(move |request| {
                    let service = service.clone();
                    async move { Ok::<_, Infallible>(service.handle(request, peer, local).await) }
                })
            };
            let builder = Builder::new(TokioExecutor::new());
            match tls {
                None => {
                    let connection = builder.serve_connection(TokioIo::new(stream), handler);
                    tokio::select! {
                        _ = connection => {}
                        _ = stop.cancelled() => {}
                    }
                }
                Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let connection = builder.serve_connection(TokioIo::new(stream), handler);
                        tokio::select! {
                            _ = connection => {}
                            _ = stop.cancelled() => {}
                        }
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
}

impl Service {
    async fn handle(
        &self,
        request: Request<HttpBody>,
        peer: SocketAddr,
        local: Option<SocketAddr>,
    ) -> Response<Full<Bytes>> {
        if request.uri().path() != self.path {
            return status(StatusCode::NOT_FOUND, "not a DoH path");
        }
        let query: Vec<u8> = match *request.method() {
            Method::GET => {
                let Some(encoded) =
                    request.uri().query().and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("dns=")))
                else {
                    return status(StatusCode::BAD_REQUEST, "missing dns parameter");
                };
                let trimmed = encoded.trim_end_matches('=');
                match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed) {
                    Ok(bytes) => bytes,
                    Err(_) => return status(StatusCode::BAD_REQUEST, "dns parameter is not base64url"),
                }
            }
            Method::POST => {
                let content_type =
                    request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
                let media_type = content_type.split(';').next().unwrap_or("").trim();
                if !media_type.eq_ignore_ascii_case(CONTENT_TYPE) {
                    return status(StatusCode::UNSUPPORTED_MEDIA_TYPE, "content type must be application/dns-message");
                }
                match Limited::new(request.into_body(), usize::from(u16::MAX)).collect().await {
                    Ok(body) => body.to_bytes().to_vec(),
                    Err(_) => return status(StatusCode::PAYLOAD_TOO_LARGE, "a DNS message is at most 65535 bytes"),
                }
            }
            _ => {
                let mut response = status(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST");
                response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
                return response;
            }
        };
        if Message::parse(&query).is_err() {
            self.pipeline.metrics.dropped(crate::metrics::DropIndex::Malformed);
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
        };
        let response = match self.pipeline.handle(&incoming, &mut out) {
            Reply::Now { len } => {
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
    if let Ok(value) = HeaderValue::from_str(&format!("max-age={}", max_age.unwrap_or(0))) {
        headers.insert(header::CACHE_CONTROL, value);
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
