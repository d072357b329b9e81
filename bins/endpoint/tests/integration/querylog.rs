//! Query logging configurations: per-VPC destinations, Route 53 fields,
//! `srcids` and the transport ("did this client use DoH?").

use signpost_endpoint::{EndpointError, LogAccount};
use signpost_server::Transport;

use crate::support::*;

#[tokio::test]
async fn each_configuration_logs_its_vpcs_with_route53_fields() {
    let Basics { dir, certificate, recursive } = basics().await;
    let (a_log, b_log) = (dir.join("a.log"), dir.join("b.log"));
    let extra = format!(
        r#"
private_hosted_zones = [{{ name = "corp.example", vpcs = ["vpc-a", "vpc-b"], records = ["www A 10.1.0.10"] }}]
query_logging = [
    {{ id = "rqlc-a", destination = "a.log", vpcs = ["vpc-a"] }},
    {{ id = "rqlc-b", destination = "b.log", vpcs = ["vpc-b"] }},
    {{ id = "rqlc-none", destination = "none.log" }},
]

[[inbound_endpoints]]
id = "rslvr-in-a"
vpc = "vpc-a"
addresses = ["127.0.1.10", "127.0.1.11"]
protocols = ["Do53", "DoH"]
port = 0
doh_port = 0
tls_cert = "{cert}"
tls_key = "{key}"
"#,
        cert = certificate.cert.display(),
        key = certificate.key.display(),
    );
    // Route 53's account_id and region, given at the top of the file.
    let text =
        format!("account_id = \"123456789012\"\nregion = \"eu-west-1\"\n{}", two_vpcs(recursive.address(), &extra));
    let endpoint = start(dir.path(), &text).await;

    ask(vpc_resolver(&endpoint, "vpc-a"), VPC_A_CLIENT, "www.corp.example").await.unwrap();
    ask(vpc_resolver(&endpoint, "vpc-b"), VPC_B_CLIENT, "www.corp.example").await.unwrap();
    let udp = inbound(&endpoint, "rslvr-in-a", "vpc-a", Transport::Udp)[0];
    ask(udp, ONPREM_CLIENT, "www.corp.example").await.unwrap();
    let doh = inbound(&endpoint, "rslvr-in-a", "vpc-a", Transport::Doh)[1];
    let client = certificate.doh_client(doh);
    assert_eq!(lookup_v4(&client, "www.corp.example.").await.len(), 1);

    let a = json_lines(&a_log, 3).await;
    assert_eq!(a.len(), 3, "{a:?}");
    let b = json_lines(&b_log, 1).await;
    assert_eq!(b.len(), 1, "{b:?}");
    assert!(!dir.join("none.log").exists() || json_lines(&dir.join("none.log"), 0).await.is_empty());

    // The VPC client: srcids.instance, UDP.
    let vpc_client = &a[0];
    assert_eq!(vpc_client["vpc_id"], "vpc-a");
    assert_eq!(vpc_client["query_name"], "www.corp.example.");
    assert_eq!(vpc_client["query_type"], "A");
    assert_eq!(vpc_client["rcode"], "NOERROR");
    assert_eq!(vpc_client["answers"][0]["Rdata"], "10.1.0.10");
    assert_eq!(vpc_client["srcaddr"], "127.0.1.1");
    assert_eq!(vpc_client["transport"], "UDP");
    assert_eq!(vpc_client["srcids"], serde_json::json!({ "instance": "127.0.1.1" }));
    assert!(a.iter().chain(&b).all(|line| line["account_id"] == "123456789012" && line["region"] == "eu-west-1"));
    assert_eq!(b[0]["vpc_id"], "vpc-b");
    assert_eq!(b[0]["srcids"]["instance"], "127.0.2.1");

    // On-premises clients through the inbound endpoint: srcids.resolver_endpoint,
    // and the transport answers "did this client use DoH?".
    let through_endpoint: Vec<_> =
        a.iter().filter(|line| line["srcids"]["resolver_endpoint"] == "rslvr-in-a").collect();
    assert_eq!(through_endpoint.len(), 2, "{a:?}");
    let transports: Vec<&str> = through_endpoint.iter().map(|line| line["transport"].as_str().unwrap()).collect();
    assert_eq!(transports, ["UDP", "DoH"]);
    assert!(through_endpoint.iter().all(|line| line["vpc_id"] == "vpc-a" && line["srcaddr"] == "127.0.0.1"));
    endpoint.shutdown().await;
}

#[test]
fn account_and_region_have_placeholder_defaults_and_are_checked() {
    let dir = TempDir::new();
    let recursive = "127.0.0.1:1".parse().unwrap();
    let deployment = config(dir.path(), &two_vpcs(recursive, "")).compile().unwrap();
    assert_eq!(deployment.log_account, LogAccount { account_id: "000000000000".into(), region: "us-east-1".into() });
    for (text, field) in [("account_id = \"1234\"\n", "account_id"), ("region = \"\"\n", "region")] {
        let error = config(dir.path(), &format!("{text}{}", two_vpcs(recursive, ""))).compile().err().unwrap();
        assert!(matches!(error, EndpointError::Invalid { .. }), "{error}");
        assert!(error.to_string().contains("endpoint.toml:1:"), "{field}: {error}");
    }
}

#[tokio::test]
async fn the_dnstap_table_makes_the_endpoint_stream_to_the_collector() {
    use signpost_server::dnstap::frame::{self, ControlType, Frame};
    use std::time::Duration;

    let Basics { dir, recursive, .. } = basics().await;
    let socket = dir.join("dnstap.sock");
    let collector = tokio::net::UnixListener::bind(&socket).unwrap();
    let text = two_vpcs(recursive.address(), &format!("[dnstap]\nsocket_path = \"{}\"\n", socket.display()));
    let deployment = config(dir.path(), &text).compile().unwrap();
    let dnstap = deployment.server.dnstap.expect("the [dnstap] table reaches the server");
    assert_eq!(dnstap.socket_path.as_deref(), Some(socket.as_path()));
    let endpoint = start(dir.path(), &text).await;
    // The server's writer connects and opens the Frame Streams handshake.
    let (mut stream, _) = tokio::time::timeout(Duration::from_secs(5), collector.accept()).await.unwrap().unwrap();
    let ready = tokio::time::timeout(Duration::from_secs(5), frame::read_frame(&mut stream)).await.unwrap().unwrap();
    let Some(Frame::Control { kind: ControlType::READY, content_types }) = ready else { panic!("{ready:?}") };
    assert_eq!(content_types, [frame::CONTENT_TYPE.to_vec()]);
    endpoint.shutdown().await;
}
