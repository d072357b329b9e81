//! DNS over HTTPS (RFC 8484): hyper over rustls, HTTP/2 multiplexed on one
//! connection when the server offers it (ALPN), HTTP/1.1 connections otherwise.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::config::{DohMethod, ServerConfig};
use crate::error::Failure;
use crate::query::Prepared;
use crate::stats::Stats;
use crate::tls::ALPN_H2;

/// The media type of DNS messages over HTTP.
const DNS_MESSAGE: &str = "application/dns-message";
/// Idle HTTP/1.1 connections kept for reuse.
const MAX_IDLE_HTTP1: usize = 8;

type Body = Full<Bytes>;

/// Sends queries to one DoH server.
pub(crate) struct DohTransport {
    address: SocketAddr,
    /// The local address connections are made from, if one is given.
    source: Option<std::net::IpAddr>,
    connector: TlsConnector,
    name: ServerName<'static>,
    authority: String,
    path: String,
    method: DohMethod,
    idle_timeout: Duration,
    h2: StdMutex<Option<Http2>>,
    h1_idle: StdMutex<Vec<Http1>>,
    connecting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for DohTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DohTransport").field("address", &self.address).field("path", &self.path).finish()
    }
}

/// The HTTP/2 connection and its use counter.
#[derive(Clone)]
struct Http2 {
    sender: http2::SendRequest<Body>,
    activity: Arc<Activity>,
}

/// An HTTP/1.1 connection and its use counter.
struct Http1 {
    sender: http1::SendRequest<Body>,
    activity: Arc<Activity>,
}

/// What a connection's driver needs to close it when idle.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    last_used: StdMutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self { in_flight: AtomicUsize::new(0), last_used: StdMutex::new(Instant::now()) }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        self.last_used.lock().ok().map(|last| *last)
    }
}

/// Marks a request in flight until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut last) = self.0.last_used.lock() {
            *last = Instant::now();
        }
    }
}

/// A connection to send one request on.
enum Sender {
    Http2(Http2),
    Http1(Http1),
}

/// The path with any `{?dns}` template suffix removed.
fn plain_path(path: &str) -> &str {
    path.strip_suffix("{?dns}").unwrap_or(path)
}

/// Whether `path` can be the path of a DoH URI.
pub(crate) fn valid_path(path: &str) -> bool {
    let path = plain_path(path);
    path.starts_with('/') && path.parse::<http::uri::PathAndQuery>().is_ok()
}

impl DohTransport {
    pub(crate) fn new(server: &ServerConfig, config: Arc<ClientConfig>, name: ServerName<'static>) -> Self {
        let host = match &server.tls_name {
            Some(name) => name.clone(),
            None => match server.address {
                SocketAddr::V4(address) => address.ip().to_string(),
                SocketAddr::V6(address) => format!("[{}]", address.ip()),
            },
        };
        let authority = if server.address.port() == 443 { host } else { format!("{host}:{}", server.address.port()) };
        Self {
            address: server.address,
            source: server.source,
            connector: TlsConnector::from(config),
            name,
            authority,
            path: plain_path(&server.doh_path).to_string(),
            method: server.doh_method,
            idle_timeout: server.idle_timeout,
            h2: StdMutex::new(None),
            h1_idle: StdMutex::new(Vec::new()),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// Send `query` with ID 0 and read the answer.
    pub(crate) async fn exchange(&self, query: &Prepared, stats: &Stats) -> Result<Bytes, Failure> {
        let message = query.with_id(0, 0).freeze();
        let (sender, fresh) = self.sender().await?;
        let response = match self.send(sender, &message).await {
            Err(Failure::Unreachable(reason)) if !fresh => {
                tracing::debug!(server = %self.address, %reason, "reused DoH connection failed; retrying on a new one");
                let (sender, _) = self.connect_sender().await?;
                self.send(sender, &message).await?
            }
            result => result?,
        };
        match query.matches(&response, 0, true) {
            Ok(()) => Ok(response),
            Err(mismatch) => {
                stats.spoof_dropped();
                Err(Failure::Failed(mismatch.as_str().to_string()))
            }
        }
    }

    fn request(&self, message: &Bytes, absolute: bool) -> Result<Request<Body>, Failure> {
        let target = match self.method {
            DohMethod::Post => self.path.clone(),
            DohMethod::Get => {
                let separator = if self.path.contains('?') { '&' } else { '?' };
                let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(message);
                format!("{}{separator}dns={encoded}", self.path)
            }
        };
        let uri = if absolute { format!("https://{}{target}", self.authority) } else { target };
        let uri: Uri = uri.parse().map_err(|error| Failure::Failed(format!("invalid DoH URI: {error}")))?;
        let builder = Request::builder().uri(uri).header(ACCEPT, DNS_MESSAGE);
        let builder = if absolute { builder } else { builder.header(HOST, &self.authority) };
        let request = match self.method {
            DohMethod::Post => {
                builder.method(Method::POST).header(CONTENT_TYPE, DNS_MESSAGE).body(Full::new(message.clone()))
            }
            DohMethod::Get => builder.method(Method::GET).body(Full::new(Bytes::new())),
        };
        request.map_err(|error| Failure::Failed(format!("invalid DoH request: {error}")))
    }

    async fn send(&self, sender: Sender, message: &Bytes) -> Result<Bytes, Failure> {
        match sender {
            Sender::Http2(mut connection) => {
                let request = self.request(message, true)?;
                let _in_flight = connection.activity.begin();
                connection.sender.ready().await.map_err(http_failure)?;
                let response = connection.sender.send_request(request).await.map_err(http_failure)?;
                read_body(response).await
            }
            Sender::Http1(mut connection) => {
                let request = self.request(message, false)?;
                let _in_flight = connection.activity.begin();
                connection.sender.ready().await.map_err(http_failure)?;
                let response = connection.sender.send_request(request).await.map_err(http_failure)?;
                let body = read_body(response).await;
                if body.is_ok() && connection.sender.is_ready() {
                    self.keep_http1(connection);
                }
                body
            }
        }
    }

    fn keep_http1(&self, connection: Http1) {
        if let Ok(mut idle) = self.h1_idle.lock()
            && idle.len() < MAX_IDLE_HTTP1
        {
            idle.push(connection);
        }
    }

    /// A connection to use: the HTTP/2 one, an idle HTTP/1.1 one, or a new one.
    async fn sender(&self) -> Result<(Sender, bool), Failure> {
        if let Some(sender) = self.cached() {
            return Ok((sender, false));
        }
        let _connecting = self.connecting.lock().await;
        // Someone else may have connected while we waited.
        if let Some(sender) = self.cached() {
            return Ok((sender, false));
        }
        self.connect_sender().await
    }

    fn cached(&self) -> Option<Sender> {
        if let Ok(h2) = self.h2.lock()
            && let Some(connection) = h2.as_ref()
            && !connection.sender.is_closed()
        {
            return Some(Sender::Http2(connection.clone()));
        }
        let mut idle = self.h1_idle.lock().ok()?;
        while let Some(connection) = idle.pop() {
            if connection.sender.is_ready() {
                return Some(Sender::Http1(connection));
            }
        }
        None
    }

    async fn connect_sender(&self) -> Result<(Sender, bool), Failure> {
        let tcp = crate::stream::connect_from(self.address, self.source)
            .await
            .map_err(|error| Failure::unreachable(&error))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .connector
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|error| Failure::Unreachable(format!("TLS handshake failed: {error}")))?;
        let http2 = tls.get_ref().1.alpn_protocol() == Some(ALPN_H2);
        let io = TokioIo::new(tls);
        let activity = Arc::new(Activity::new());
        let idle_timeout = self.idle_timeout;
        if http2 {
            let (sender, connection) =
                http2::Builder::new(TokioExecutor::new()).handshake(io).await.map_err(http_failure)?;
            tokio::spawn(drive(connection, activity.clone(), idle_timeout, self.address));
            let connection = Http2 { sender, activity };
            if let Ok(mut h2) = self.h2.lock() {
                *h2 = Some(connection.clone());
            }
            tracing::debug!(server = %self.address, "DoH connection (HTTP/2)");
            Ok((Sender::Http2(connection), true))
        } else {
            let (sender, connection) = http1::handshake(io).await.map_err(http_failure)?;
            tokio::spawn(drive(connection, activity.clone(), idle_timeout, self.address));
            tracing::debug!(server = %self.address, "DoH connection (HTTP/1.1)");
            Ok((Sender::Http1(Http1 { sender, activity }), true))
        }
    }
}

/// Run a connection until it ends or has been idle for `idle_timeout`.
async fn drive<F>(connection: F, activity: Arc<Activity>, idle_timeout: Duration, address: SocketAddr)
where
    F: Future<Output = hyper::Result<()>>,
{
    let idle = async {
        loop {
            let due = activity.idle_since().map_or(Instant::now() + idle_timeout, |since| since + idle_timeout);
            tokio::time::sleep_until(due).await;
            if activity.idle_since().is_some_and(|since| since + idle_timeout <= Instant::now()) {
                return;
            }
        }
    };
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(server = %address, %error, "DoH connection ended");
            }
        }
        () = idle => tracing::debug!(server = %address, "DoH connection idle; closing"),
    }
}

fn http_failure(error: hyper::Error) -> Failure {
    Failure::Unreachable(format!("HTTP: {error}"))
}

/// Check the status and media type, and read at most one DNS message of body.
async fn read_body(response: Response<Incoming>) -> Result<Bytes, Failure> {
    let status = response.status();
    if status != StatusCode::OK {
        return Err(Failure::Failed(format!("HTTP status {status}")));
    }
    let media_type = response.headers().get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let essence = media_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case(DNS_MESSAGE) {
        return Err(Failure::Failed(format!("HTTP answer of type {media_type:?}, not {DNS_MESSAGE}")));
    }
    let body = Limited::new(response.into_body(), signpost_wire::MAX_MESSAGE_LEN)
        .collect()
        .await
        .map_err(|error| Failure::Failed(format!("reading the HTTP body: {error}")))?;
    Ok(body.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_accept_templates_and_queries() {
        assert!(valid_path("/dns-query"));
        assert!(valid_path("/dns-query{?dns}"));
        assert!(valid_path("/resolve?ct=dns"));
        assert!(!valid_path("dns-query"));
        assert!(!valid_path("/dns query"));
        assert_eq!(plain_path("/q{?dns}"), "/q");
    }

    #[test]
    fn get_requests_carry_base64url_without_padding() {
        let address = SocketAddr::from(([127, 0, 0, 1], 8443));
        let mut server = ServerConfig::https(address, "dns.test");
        server.doh_method = DohMethod::Get;
        server.doh_path = "/dns-query{?dns}".into();
        let config = Arc::new(
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        );
        let transport = DohTransport::new(&server, config, ServerName::try_from("dns.test").unwrap());
        let message = Bytes::from_static(&[0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0xfb]);
        let request = transport.request(&message, true).unwrap();
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri().to_string(), "https://dns.test:8443/dns-query?dns=AAABAAABAAAAAAAAAAABAAH7");
        let request = transport.request(&message, false).unwrap();
        assert_eq!(request.uri().to_string(), "/dns-query?dns=AAABAAABAAAAAAAAAAABAAH7");
        assert_eq!(request.headers()[HOST], "dns.test:8443");
    }
}
