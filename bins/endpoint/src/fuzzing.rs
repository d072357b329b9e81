//! Entry points for the fuzz targets in `fuzz/` (not a stable API).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::body::Body;
use tower::ServiceExt;

use crate::control::{ControlPlane, Runtime};
use crate::{EndpointConfig, EndpointError};

/// A runtime that serves nothing: the fuzzed control plane changes its
/// model and nothing else (no sockets, no files).
struct ModelOnly;

impl Runtime for ModelOnly {
    async fn apply(&mut self, config: Arc<EndpointConfig>) -> Result<(), EndpointError> {
        drop(config);
        Ok(())
    }
}

/// The three AWS APIs (route53resolver JSON 1.1, route53 REST-XML, ec2
/// query) over one model with no state directory, on a runtime of their own.
struct Api {
    runtime: tokio::runtime::Runtime,
    router: Router,
}

static API: LazyLock<Api> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let control = runtime
        .block_on(ControlPlane::start(EndpointConfig::default(), None, ModelOnly))
        .expect("an empty control plane starts");
    Api { router: crate::api::router(Arc::new(control)), runtime }
});

/// Read fuzz bytes as an HTTP request — a request line (`METHOD TARGET`),
/// header lines (`name: value`), a blank line, a body — and send it to the
/// AWS API router: whatever the bytes, an HTTP response, never a panic.
/// Requests that change the model change it for the next input too, so
/// sequences of calls are explored.
pub fn aws_api(data: &[u8]) {
    let Some((builder, body)) = signpost_server::fuzzing::http_request(data) else { return };
    // What the HTTP layer would have rejected before the router saw it.
    let Ok(request) = builder.body(Body::from(body.to_vec())) else { return };
    let api = &*API;
    api.runtime.block_on(async {
        let Ok(response) = api.router.clone().oneshot(request).await;
        let _ = axum::body::to_bytes(response.into_body(), 16 << 20).await;
    });
}

/// Read fuzz bytes as the endpoint's TOML and compile what parses: any text
/// gives a configuration or an error, never a panic. Compiling reads files
/// the text names (zone files, TLS files) but sends nothing.
pub fn endpoint_toml(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else { return };
    if let Ok(config) = EndpointConfig::from_toml(text, "/nonexistent/signpost-fuzz/endpoint.toml") {
        let _ = config.compile();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_api_seeds_do_not_panic() {
        aws_api(
            b"POST /\nx-amz-target: Route53Resolver.ListResolverRules\ncontent-type: application/x-amz-json-1.1\n\n{}",
        );
        aws_api(b"POST /\nx-amz-target: Route53Resolver.CreateResolverRule\ncontent-type: application/x-amz-json-1.1\n\n{\"CreatorRequestId\":\"a\",\"RuleType\":\"FORWARD\",\"DomainName\":\"x.example\",\"TargetIps\":[{\"Ip\":\"10.0.0.1\"}]}");
        aws_api(b"POST /\nx-amz-target: Route53Resolver.CreateResolverRule\n\n{\"TargetIps\": 3");
        aws_api(b"POST /\ncontent-type: application/x-www-form-urlencoded\n\nAction=CreateVpc&CidrBlock=10.9.0.0%2F16&Version=2016-11-15");
        aws_api(b"POST /\ncontent-type: application/x-www-form-urlencoded\n\nAction=DescribeVpcs&Filter.1.Name=%ff");
        aws_api(b"POST /2013-04-01/hostedzone\n\n<CreateHostedZoneRequest xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Name>z.example</Name><CallerReference>r</CallerReference></CreateHostedZoneRequest>");
        aws_api(b"GET /2013-04-01/hostedzone?maxitems=-1");
        aws_api(b"POST /2013-04-01/hostedzone/Z1/rrset\n\n<ChangeResourceRecordSetsRequest><ChangeBatch><Changes><Change><Action>UPSERT</Action>");
        aws_api(b"G\xffT /\xff");
        aws_api(b"");
    }

    #[test]
    fn seeds_do_not_panic() {
        endpoint_toml(
            b"[recursive]\nservers = [\"127.0.0.1:5300\"]\n[[vpcs]]\nid = \"vpc-a\"\ncidrs = [\"127.0.1.0/24\"]\n",
        );
        endpoint_toml(b"[[vpcs]]\nid = 3\n");
        endpoint_toml(&[0xff]);
    }
}
