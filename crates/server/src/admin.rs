//! The admin HTTP listener: `/metrics` (Prometheus), `/explain`, `/reload`,
//! `/health`, plus routes a binary adds through [`AdminExtension`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming as HttpBody;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use signpost_rules::Transport;
use signpost_wire::{NameBuf, RecordType};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::server::{ServerHandle, WeakHandle};

/// A JSON response from an admin route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminResponse {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: String,
}

impl AdminResponse {
    /// 200 with a JSON body.
    pub fn ok(body: impl Into<String>) -> Self {
        Self { status: 200, body: body.into() }
    }

    /// An error status with a JSON `{"error": message}` body.
    pub fn error(status: u16, message: &str) -> Self {
        Self { status, body: serde_json::json!({ "error": message }).to_string() }
    }
}

/// One request to the admin listener, as an [`AdminExtension`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct AdminRequest<'a> {
    /// `GET`, `POST`...
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The query string, without the `?`.
    pub query: Option<&'a str>,
    /// The body (at most 1 MiB).
    pub body: &'a [u8],
}

/// Extra admin routes a binary provides (e.g. the redirect proxy's host-record API).
pub trait AdminExtension: Send + Sync {
    /// Handle a request, or return `None` to let the built-in routes (and 404) answer.
    fn handle(&self, request: &AdminRequest<'_>, server: &ServerHandle) -> Option<AdminResponse>;
}

pub(crate) async fn serve(
    listener: TcpListener,
    server: WeakHandle,
    extension: Option<Arc<dyn AdminExtension>>,
    stop: CancellationToken,
) {
    crate::probes::spawn_per_connection(&listener, &stop, |stream| {
        let server = server.clone();
        let extension = extension.clone();
        async move {
            let handler = service_fn(move |request| {
                let server = server.upgrade();
                let extension = extension.clone();
                async move {
                    Ok::<_, Infallible>(match server {
                        Some(server) => handle(request, server, extension).await,
                        None => json(AdminResponse::error(503, "the server is stopping")),
                    })
                }
            });
            let _ = Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), handler).await;
        }
    })
    .await;
}

async fn handle(
    request: Request<HttpBody>,
    server: ServerHandle,
    extension: Option<Arc<dyn AdminExtension>>,
) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let body = match Limited::new(request.into_body(), 1 << 20).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return json(AdminResponse::error(413, "request body over 1 MiB")),
    };
    if let Some(extension) = &extension
        && let Some(response) = extension.handle(
            &AdminRequest { method: method.as_str(), path: &path, query: query.as_deref(), body: &body },
            &server,
        )
    {
        return json(response);
    }
    match (method, path.as_str()) {
        (Method::GET, "/metrics") => {
            let mut response = Response::new(Full::new(Bytes::from(server.metrics_text())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            response
        }
        (Method::GET, "/health") => json(AdminResponse::ok(r#"{"status":"ok"}"#)),
        (Method::GET, "/explain") => json(explain(&server, query.as_deref()).await),
        (Method::POST, "/reload") => json(match server.reload_from_source().await {
            Ok(_) => AdminResponse::ok(r#"{"reloaded":true}"#),
            Err(error) => AdminResponse::error(400, &error.to_string()),
        }),
        _ => json(AdminResponse::error(404, "no such route")),
    }
}

/// The raw value of `key` in a query string (`a=1&b=2`), still encoded.
pub fn parameter<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

/// Decode a query-string value: `+` is a space, `%XX` a byte (form
/// encoding); invalid UTF-8 is replaced, never an error.
pub fn percent_decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// The decoded value of `key` in a query string.
pub fn query_parameter(query: Option<&str>, key: &str) -> Option<String> {
    parameter(query, key).map(percent_decode)
}

async fn explain(server: &ServerHandle, query: Option<&str>) -> AdminResponse {
    let Some(name) = parameter(query, "name").map(percent_decode) else {
        return AdminResponse::error(400, "name is required: /explain?name=www.example.com&type=A&client=127.0.0.1");
    };
    let Ok(name) = name.parse::<NameBuf>() else { return AdminResponse::error(400, "name is not a valid domain name") };
    let qtype = match parameter(query, "type").map(percent_decode) {
        None => RecordType::A,
        Some(text) => match text.parse::<RecordType>() {
            Ok(qtype) => qtype,
            Err(_) => return AdminResponse::error(400, "unknown record type"),
        },
    };
    let client: SocketAddr = match parameter(query, "client").map(percent_decode) {
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(text) => match text.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, 0),
            Err(_) => match text.parse() {
                Ok(address) => address,
                Err(_) => return AdminResponse::error(400, "client must be an IP address"),
            },
        },
    };
    let transport = match parameter(query, "transport").unwrap_or("udp") {
        "tcp" => Transport::Tcp,
        "dot" => Transport::Dot,
        "doh" => Transport::Doh,
        _ => Transport::Udp,
    };
    let trace = server.explain(&name, qtype, client, transport).await;
    match serde_json::to_string_pretty(&trace) {
        Ok(body) => AdminResponse::ok(body),
        Err(_) => AdminResponse::error(500, "trace could not be serialised"),
    }
}

fn json(response: AdminResponse) -> Response<Full<Bytes>> {
    let mut http = Response::new(Full::new(Bytes::from(response.body)));
    *http.status_mut() = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    http.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    http
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(
            parameter(Some("name=a%2Eb.example&type=AAAA"), "name").map(percent_decode),
            Some("a.b.example".into())
        );
        assert_eq!(parameter(Some("name=x&type=AAAA"), "type"), Some("AAAA"));
        assert_eq!(parameter(Some("names=x"), "name"), None);
        assert_eq!(percent_decode("a%2Eb+c%2B%zz"), "a.b c+%zz");
        assert_eq!(query_parameter(Some("x=1&pattern=.%2A%5C.s3"), "pattern").as_deref(), Some(r".*\.s3"));
    }
}
