//! Health checks of alias targets: an alias whose target fails its check is
//! skipped and the next target answers, as LocalStack's `add_alias` with a
//! `health_check` (dns/server.py `_resolve_alias`). LocalStack calls its
//! check on every query; here a background task checks at an interval and
//! the rule set is rebuilt when a result changes, so answering stays free
//! of I/O.

use core::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::net::TcpStream;

use crate::RedirectError;

/// How often a check runs unless told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Longest wait for one check; a slower target counts as failing.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What to check.
#[derive(Clone)]
pub enum HealthCheck {
    /// A TCP connection to this address succeeds.
    Tcp(SocketAddr),
    /// `GET` of this `http://IP:port/path` URL answers 2xx or 3xx (Route 53's
    /// rule for HTTP checks). The host must be an IP address: looking a name
    /// up could ask this very server.
    Http(String),
    /// A function of the embedding program (LocalStack's `health_check`
    /// callable); it must return quickly.
    Custom(Arc<dyn Fn() -> bool + Send + Sync>),
}

impl fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl PartialEq for HealthCheck {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Tcp(a), Self::Tcp(b)) => a == b,
            (Self::Http(a), Self::Http(b)) => a == b,
            (Self::Custom(a), Self::Custom(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl HealthCheck {
    /// `tcp 127.0.0.1:4566`, `http http://...`, `custom`.
    pub fn describe(&self) -> String {
        match self {
            Self::Tcp(address) => format!("tcp {address}"),
            Self::Http(url) => format!("http {url}"),
            Self::Custom(_) => "custom".to_owned(),
        }
    }

    /// Check that the URL of an HTTP check can be used.
    pub fn validate(&self) -> Result<(), RedirectError> {
        if let Self::Http(url) = self {
            http_target(url)?;
        }
        Ok(())
    }

    /// Run the check once: whether the target is healthy.
    pub async fn run(&self) -> bool {
        match self {
            Self::Tcp(address) => {
                matches!(tokio::time::timeout(CHECK_TIMEOUT, TcpStream::connect(address)).await, Ok(Ok(_)))
            }
            Self::Http(url) => {
                let Ok((address, path, host)) = http_target(url) else { return false };
                matches!(tokio::time::timeout(CHECK_TIMEOUT, http_get(address, &path, &host)).await, Ok(Ok(true)))
            }
            Self::Custom(check) => check(),
        }
    }
}

/// A check and how often it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthCheckSpec {
    /// What to check.
    pub check: HealthCheck,
    /// How often.
    pub interval: Duration,
}

impl HealthCheckSpec {
    /// `check` every [`DEFAULT_INTERVAL`].
    pub fn new(check: HealthCheck) -> Self {
        Self { check, interval: DEFAULT_INTERVAL }
    }
}

/// The JSON form: `{"tcp": "127.0.0.1:4566"}` or `{"http":
/// "http://127.0.0.1:4566/_localstack/health"}`, with an optional
/// `"interval": "1s"`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct HealthCheckBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tcp: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    custom: Option<bool>,
    #[serde(default, with = "optional_duration", skip_serializing_if = "Option::is_none")]
    interval: Option<Duration>,
}

mod optional_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapper(#[serde(with = "signpost_upstream::duration_text")] Duration);
        Ok(Option::<Wrapper>::deserialize(deserializer)?.map(|Wrapper(duration)| duration))
    }

    pub(super) fn serialize<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => signpost_upstream::duration_text::serialize(duration, serializer),
            None => serializer.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for HealthCheckSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let body = HealthCheckBody::deserialize(deserializer)?;
        let check = match (body.tcp, body.http) {
            (Some(address), None) => HealthCheck::Tcp(address),
            (None, Some(url)) => HealthCheck::Http(url),
            _ => return Err(serde::de::Error::custom("a health check is one of \"tcp\" or \"http\"")),
        };
        check.validate().map_err(serde::de::Error::custom)?;
        let interval = body.interval.unwrap_or(DEFAULT_INTERVAL);
        if interval < Duration::from_millis(100) {
            return Err(serde::de::Error::custom("a health check interval is at least 100ms"));
        }
        Ok(Self { check, interval })
    }
}

impl Serialize for HealthCheckSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut body = HealthCheckBody { tcp: None, http: None, custom: None, interval: Some(self.interval) };
        match &self.check {
            HealthCheck::Tcp(address) => body.tcp = Some(*address),
            HealthCheck::Http(url) => body.http = Some(url.clone()),
            HealthCheck::Custom(_) => body.custom = Some(true),
        }
        body.serialize(serializer)
    }
}

/// The address, path and Host header of an `http://IP[:port]/path` URL.
fn http_target(url: &str) -> Result<(SocketAddr, String, String), RedirectError> {
    let invalid = |problem| RedirectError::InvalidSetting { setting: "health check", value: url.to_owned(), problem };
    let uri: http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(invalid("only http:// URLs can be checked"));
    }
    let authority = uri.authority().ok_or_else(|| invalid("the URL has no host"))?;
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let ip = host.parse().map_err(|_| invalid("the host must be an IP address (a name would need DNS)"))?;
    let address = SocketAddr::new(ip, authority.port_u16().unwrap_or(80));
    let path = uri.path_and_query().map_or("/", |path| path.as_str()).to_owned();
    Ok((address, path, authority.as_str().to_owned()))
}

/// One `GET`: whether it answered 2xx or 3xx.
async fn http_get(address: SocketAddr, path: &str, host: &str) -> Result<bool, Box<dyn std::error::Error>> {
    let stream = TcpStream::connect(address).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    let driver = tokio::spawn(connection);
    let request = http::Request::get(path).header(http::header::HOST, host).body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await;
    driver.abort();
    let status = response?.status();
    Ok(status.is_success() || status.is_redirection())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_read_from_json() {
        let spec: HealthCheckSpec =
            serde_json::from_str(r#"{"tcp": "127.0.0.1:4566", "interval": "250ms"}"#).expect("tcp");
        assert_eq!(spec.check, HealthCheck::Tcp("127.0.0.1:4566".parse().expect("address")));
        assert_eq!(spec.interval, Duration::from_millis(250));
        let spec: HealthCheckSpec = serde_json::from_str(r#"{"http": "http://127.0.0.1:8080/health"}"#).expect("http");
        assert_eq!(spec.interval, DEFAULT_INTERVAL);
        assert_eq!(
            serde_json::to_string(&spec).expect("json"),
            r#"{"http":"http://127.0.0.1:8080/health","interval":"5s"}"#
        );
        for bad in [
            r#"{}"#,
            r#"{"tcp": "127.0.0.1:1", "http": "http://127.0.0.1/"}"#,
            r#"{"http": "https://127.0.0.1/"}"#,
            r#"{"http": "http://emulator.test/"}"#,
            r#"{"tcp": "127.0.0.1:1", "interval": "1ms"}"#,
        ] {
            assert!(serde_json::from_str::<HealthCheckSpec>(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn tcp_and_http_checks_see_a_listener_come_and_go() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buffer = [0u8; 1024];
                let read = stream.read(&mut buffer).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buffer[..read]).into_owned();
                let status = if request.starts_with("GET /ok ") { "200 OK" } else { "503 Service Unavailable" };
                let _ = stream.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes()).await;
            }
        });
        assert!(HealthCheck::Tcp(address).run().await);
        assert!(HealthCheck::Http(format!("http://{address}/ok")).run().await);
        assert!(!HealthCheck::Http(format!("http://{address}/down")).run().await);
        server.abort();
        let _ = server.await;
        assert!(!HealthCheck::Tcp(address).run().await, "nothing listens any more");
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let seen = flag.clone();
        let custom = HealthCheck::Custom(Arc::new(move || seen.load(std::sync::atomic::Ordering::SeqCst)));
        assert!(custom.run().await);
        flag.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(!custom.run().await);
    }
}
