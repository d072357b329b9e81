//! A small AWS API client for the tests: JSON 1.1 (Route 53 Resolver),
//! REST-XML (Route 53) and the EC2 query protocol, over HTTP to 127.0.0.1,
//! with dummy SigV4 credentials (the endpoint does not verify them).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub(crate) struct Aws {
    base: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
}

fn authorization(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000"
    )
}

impl Aws {
    pub(crate) fn new(base: SocketAddr) -> Self {
        Self { base, client: Client::builder(TokioExecutor::new()).build_http() }
    }

    async fn send(&self, request: http::Request<Full<Bytes>>) -> (u16, String) {
        let response = self.client.request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// A Route 53 Resolver call: status and JSON body.
    pub(crate) async fn resolver(&self, operation: &str, body: Value) -> (u16, Value) {
        let request = http::Request::post(format!("http://{}/", self.base))
            .header("x-amz-target", format!("Route53Resolver.{operation}"))
            .header("content-type", "application/x-amz-json-1.1")
            .header("authorization", authorization("route53resolver"))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let (status, text) = self.send(request).await;
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
    }

    /// A Route 53 Resolver call that must succeed.
    pub(crate) async fn resolver_ok(&self, operation: &str, body: Value) -> Value {
        let (status, value) = self.resolver(operation, body).await;
        assert_eq!(status, 200, "{operation}: {value}");
        value
    }

    /// A Route 53 Resolver call that must fail: its error code and message.
    pub(crate) async fn resolver_error(&self, operation: &str, body: Value) -> (String, String) {
        let (status, value) = self.resolver(operation, body).await;
        assert_eq!(status, 400, "{operation}: {value}");
        (value["__type"].as_str().unwrap().to_string(), value["message"].as_str().unwrap().to_string())
    }

    /// An EC2 action: status and XML body.
    pub(crate) async fn ec2(&self, action: &str, params: &[(&str, &str)]) -> (u16, String) {
        let mut body = format!("Action={action}&Version=2016-11-15");
        for (key, value) in params {
            body.push_str(&format!("&{key}={}", value.replace('/', "%2F").replace(' ', "+")));
        }
        let request = http::Request::post(format!("http://{}/", self.base))
            .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
            .header("authorization", authorization("ec2"))
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        self.send(request).await
    }

    /// An EC2 action that must succeed; the text of its first `<tag>`.
    pub(crate) async fn ec2_field(&self, action: &str, params: &[(&str, &str)], tag: &str) -> String {
        let (status, body) = self.ec2(action, params).await;
        assert_eq!(status, 200, "{action}: {body}");
        field(&body, tag).unwrap_or_else(|| panic!("no <{tag}> in {body}"))
    }

    /// A security group "dns" in `vpc`: its id.
    pub(crate) async fn dns_security_group(&self, vpc: &str) -> String {
        self.ec2_field(
            "CreateSecurityGroup",
            &[("VpcId", vpc), ("GroupName", "dns"), ("GroupDescription", "DNS")],
            "groupId",
        )
        .await
    }

    /// A Route 53 call: status and XML body.
    pub(crate) async fn route53(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}/2013-04-01/{path}", self.base))
            .header("authorization", authorization("route53"))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        self.send(request).await
    }

    /// `ChangeResourceRecordSets` with one change.
    pub(crate) async fn change_record(
        &self,
        zone: &str,
        action: &str,
        name: &str,
        rtype: &str,
        ttl: u32,
        values: &[&str],
    ) -> (u16, String) {
        let records: String =
            values.iter().map(|v| format!("<ResourceRecord><Value>{v}</Value></ResourceRecord>")).collect();
        let body = format!(
            r#"<ChangeResourceRecordSetsRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ChangeBatch><Changes><Change><Action>{action}</Action><ResourceRecordSet><Name>{name}</Name><Type>{rtype}</Type><TTL>{ttl}</TTL><ResourceRecords>{records}</ResourceRecords></ResourceRecordSet></Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"#
        );
        self.route53("POST", &format!("hostedzone/{zone}/rrset/"), &body).await
    }
}

/// The text of the first `<tag>` element.
pub(crate) fn field(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml.get(start..)?.find(&format!("</{tag}>"))? + start;
    xml.get(start..end).map(str::to_string)
}

/// The texts of every `<tag>` element.
pub(crate) fn fields(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(after[..end].to_string());
        rest = &after[end..];
    }
    out
}
