//! The AWS APIs on one HTTP listener, as the AWS endpoints users point
//! `--endpoint-url` at: Route 53 Resolver (JSON 1.1, `POST /` with
//! `X-Amz-Target: Route53Resolver.<Operation>`), Route 53 (REST-XML under
//! `/2013-04-01/`) and the EC2 calls they need (query protocol, `POST /`
//! with `Action=...`).
//!
//! Requests are routed by the target prefix, then by the service name in
//! the SigV4 credential scope (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`),
//! then by the form's `Action`. Any credentials are accepted: signatures
//! are not verified (this is a local emulator; nothing here is secret).

pub mod ec2;
pub mod error;
pub mod firewall;
mod paging;
pub mod resolver;
pub mod route53;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::control::{ControlPlane, Runtime};
use error::ApiError;

/// A request id as AWS prints them (a UUID's shape).
pub fn request_id() -> String {
    let a: u128 = rand::random();
    let hex = format!("{a:032x}");
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Region and service of a SigV4 `Authorization` header, when present.
pub fn credential_scope(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let credential = value.split([' ', ',']).find_map(|part| part.trim().strip_prefix("Credential="))?;
    let mut parts = credential.split('/');
    let (_key, _date, region, service) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some((region.to_string(), service.to_string()))
}

/// Where the running model can be read as TOML (`signpost-endpoint export --from`).
pub const EXPORT_PATH: &str = "/_signpost/export";

/// The whole API: Route 53 under `/2013-04-01`, Route 53 Resolver and EC2 on `POST /`.
pub fn router<R: Runtime>(control: Arc<ControlPlane<R>>) -> Router {
    Router::new()
        .route("/", post(dispatch::<R>))
        .route(EXPORT_PATH, get(export::<R>))
        .fallback(not_found)
        .with_state(control.clone())
        .nest("/2013-04-01", route53::router(control))
}

async fn export<R: Runtime>(State(control): State<Arc<ControlPlane<R>>>) -> Response {
    let text = crate::service::export(&control.snapshot());
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/toml"));
    response
}

async fn not_found() -> Response {
    let error = ApiError::new(
        "UnknownOperationException",
        StatusCode::NOT_FOUND,
        "signpost-endpoint does not answer this path.",
    );
    json_error(&error)
}

fn json_error(error: &ApiError) -> Response {
    let body = serde_json::json!({ "__type": error.code, "message": error.message, "Message": error.message });
    let mut response = (error.status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/x-amz-json-1.1"));
    if let Ok(value) = HeaderValue::from_str(&error.code) {
        headers.insert("x-amzn-errortype", value);
    }
    response
}

async fn dispatch<R: Runtime>(
    State(control): State<Arc<ControlPlane<R>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = request_id();
    let target = headers.get("x-amz-target").and_then(|value| value.to_str().ok()).unwrap_or_default();
    let service = credential_scope(&headers).map(|(_, service)| service);
    if let Some(operation) = target.strip_prefix("Route53Resolver.") {
        let parsed: Result<serde_json::Value, _> =
            if body.is_empty() { Ok(serde_json::json!({})) } else { serde_json::from_slice(&body) };
        let result = match parsed {
            Ok(value) => resolver::handle(&control, operation, value).await,
            Err(error) => {
                Err(ApiError::bad_request("SerializationException", format!("The request body is not JSON: {error}")))
            }
        };
        let mut response = match result {
            Ok(value) => {
                let mut response = (StatusCode::OK, value.to_string()).into_response();
                response.headers_mut().insert("content-type", HeaderValue::from_static("application/x-amz-json-1.1"));
                response
            }
            Err(error) => json_error(&error),
        };
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-amzn-requestid", value);
        }
        return response;
    }
    if !target.is_empty() {
        let service = target.split('.').next().unwrap_or(target);
        return json_error(&ApiError::bad_request(
            "UnknownOperationException",
            format!(
                "The service {service} is not emulated by signpost-endpoint (route53resolver, route53 and ec2 are)."
            ),
        ));
    }
    let form: Vec<(String, String)> = form_pairs(&body);
    let is_ec2 = service.as_deref() == Some("ec2") || form.iter().any(|(key, _)| key == "Action");
    if !is_ec2 {
        return json_error(&ApiError::bad_request(
            "UnknownOperationException",
            format!(
                "No operation in this request: signpost-endpoint routes by X-Amz-Target (Route53Resolver.*), by path (/2013-04-01/ for route53) and by Action (ec2){}.",
                service.map(|s| format!("; the credential scope names {s}")).unwrap_or_default()
            ),
        ));
    }
    let params = ec2::Params::new(form);
    let (status, text) = match ec2::handle(&control, &params, &request_id).await {
        Ok(text) => (StatusCode::OK, text),
        Err(error) => (error.status, ec2::error_body(&error, &request_id)),
    };
    let mut response = (status, text).into_response();
    response.headers_mut().insert("content-type", HeaderValue::from_static("text/xml;charset=UTF-8"));
    response
}

/// `application/x-www-form-urlencoded` pairs (`+` is a space, `%XX` a byte).
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    let decode = |text: &[u8]| {
        let spaced: Vec<u8> = text.iter().map(|&byte| if byte == b'+' { b' ' } else { byte }).collect();
        percent_encoding::percent_decode(&spaced).decode_utf8_lossy().into_owned()
    };
    body.split(|&byte| byte == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&byte| byte == b'=') {
            Some(at) => (decode(pair.get(..at).unwrap_or_default()), decode(pair.get(at + 1..).unwrap_or_default())),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// Serve `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

/// Bind the API listener.
pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_scope_gives_region_and_service() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/eu-west-1/route53resolver/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc"),
        );
        assert_eq!(credential_scope(&headers), Some(("eu-west-1".to_string(), "route53resolver".to_string())));
        assert_eq!(credential_scope(&HeaderMap::new()), None);
        assert_eq!(request_id().len(), 36);
    }

    #[test]
    fn form_bodies_decode_as_botocore_encodes_them() {
        let pairs = form_pairs(b"Action=CreateVpc&CidrBlock=10.0.0.0%2F16&TagSpecification.1.Tag.1.Value=my+vpc&Empty");
        assert_eq!(
            pairs,
            vec![
                ("Action".to_string(), "CreateVpc".to_string()),
                ("CidrBlock".to_string(), "10.0.0.0/16".to_string()),
                ("TagSpecification.1.Tag.1.Value".to_string(), "my vpc".to_string()),
                ("Empty".to_string(), String::new()),
            ]
        );
    }
}
