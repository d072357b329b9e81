//! The binary with `--api` and `--state`: calls survive `kill -9`, the model
//! exports as TOML that loads back to the same model, resources from a
//! TOML file are visible through the API, and a state directory is never
//! shared or silently replaced.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use signpost_endpoint::EndpointConfig;

use crate::api::{private_zone, vpc};
use crate::aws::{Aws, field};
use crate::support::*;

/// How long start-up or an exit may take.
const PATIENCE: Duration = Duration::from_secs(10);

/// The address of listener `id` from its `listening ID TRANSPORT ADDRESS ...` line.
fn listener(running: &RunningBinary, id: &str) -> SocketAddr {
    running
        .stdout_lines()
        .iter()
        .filter_map(|line| line.strip_prefix("listening "))
        .find_map(|rest| {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            (fields.first() == Some(&id)).then(|| fields.get(2)?.parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no listener {id} in {:?}", running.stdout_lines()))
}

/// Kill with SIGKILL (dropping a running binary does), then give the kernel
/// a moment to let go of its lock.
async fn kill_minus_nine(running: RunningBinary) {
    drop(running);
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn every_successful_call_survives_kill_minus_nine() {
    let dir = TempDir::new();
    let state = dir.join("state");
    let recursive = FakeUpstream::answering(RECURSIVE_ANSWER).await;
    let port = free_port();
    let args = api_args(Some(&state), recursive.address(), port);
    let running = start_binary(&args, "warn").await;
    let aws = Aws::new(api_address(&running));
    let a = vpc(&aws, "127.0.21.0/24").await;
    let zone = private_zone(&aws, "kill.example", &a.id, "kill-1").await;
    aws.change_record(&zone, "UPSERT", "www.kill.example", "A", 60, &["10.21.0.1"]).await;
    aws.change_record(&zone, "UPSERT", "www.kill.example", "A", 60, &["10.21.0.2"]).await;
    let client = "127.0.21.1".parse().unwrap();
    let resolver = SocketAddr::new("127.0.21.2".parse().unwrap(), port);
    assert_eq!(ask(resolver, client, "www.kill.example").await.unwrap().1, ["www.kill.example. 60 IN A 10.21.0.2"]);

    kill_minus_nine(running).await;
    let running = start_binary(&args, "warn").await;
    assert_eq!(ask(resolver, client, "www.kill.example").await.unwrap().1, ["www.kill.example. 60 IN A 10.21.0.2"]);
    let api = api_address(&running);
    let aws = Aws::new(api);
    let (status, text) = aws.route53("GET", &format!("hostedzone/{zone}"), "").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(field(&text, "VPCId").as_deref(), Some(a.id.as_str()));

    // A second process on the same directory is refused.
    let second = endpoint_binary().args(args.iter().cloned()).output(PATIENCE).await.unwrap();
    assert!(!second.status.success());
    assert!(second.stderr.contains("locked by another process"), "{}", second.stderr);
    assert!(second.stderr.contains(&state.join("lock").display().to_string()), "{}", second.stderr);

    // The running model exports as TOML that loads and compiles to the same model.
    let output = endpoint_binary().args(["export", "--from", &format!("http://{api}")]).output(PATIENCE).await.unwrap();
    assert!(output.status.success(), "{}", output.stderr);
    let text = output.stdout;
    let loaded = EndpointConfig::from_toml(&text, dir.join("export.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
    loaded.compile().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(signpost_endpoint::service::export(&loaded), text);
    assert!(text.contains("www.kill.example. 60 IN A 10.21.0.2"), "{text}");
}

#[tokio::test]
async fn a_damaged_state_file_is_reported_and_kept() {
    let dir = TempDir::new();
    let file = dir.write("state/state.redb", b"not a database");
    let state = dir.join("state");
    let output = endpoint_binary()
        .args(["--api", "127.0.0.1:0", "--state"])
        .arg(state.as_os_str())
        .args(["--recursive", "127.0.0.1:9"])
        .output(PATIENCE)
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(
        output.stderr.contains(&file.display().to_string()) && output.stderr.contains("cannot be opened"),
        "{}",
        output.stderr
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"not a database");
}

#[tokio::test]
async fn resources_from_a_toml_file_are_visible_through_the_api_and_kept_in_the_state() {
    let dir = TempDir::new();
    let recursive = FakeUpstream::answering(RECURSIVE_ANSWER).await;
    let file = dir.write(
        "endpoint.toml",
        r#"
vpcs = [{ id = "vpc-file", cidrs = ["127.0.22.0/24"] }]
private_hosted_zones = [{ name = "file.example", vpcs = ["vpc-file"], records = ["www A 10.22.0.1"] }]
resolver_rules = [{ id = "rslvr-rr-file", type = "SYSTEM", domain = "sys.file.example", vpcs = ["vpc-file"] }]
"#,
    );
    let state = dir.join("state");
    let mut args = api_args(Some(&state), recursive.address(), 0);
    args.extend(["--config".into(), file.as_os_str().to_owned()]);
    let running = start_binary(&args, "warn").await;
    let aws = Aws::new(api_address(&running));
    let rules = aws.resolver_ok("ListResolverRules", json!({})).await;
    assert_eq!(rules["ResolverRules"][0]["Id"], "rslvr-rr-file");
    assert_eq!(rules["ResolverRules"][0]["DomainName"], "sys.file.example.");
    let associations = aws.resolver_ok("ListResolverRuleAssociations", json!({})).await;
    assert_eq!(associations["ResolverRuleAssociations"][0]["VPCId"], "vpc-file");
    let (_, zones) = aws.route53("GET", "hostedzonesbyvpc?vpcid=vpc-file&vpcregion=us-east-1", "").await;
    assert_eq!(field(&zones, "HostedZoneId").as_deref(), Some("file.example"), "{zones}");
    let (_, records) = aws.route53("GET", "hostedzone/file.example/rrset", "").await;
    assert!(records.contains("<Name>www.file.example.</Name><Type>A</Type><TTL>300</TTL>"), "{records}");
    // An API change to a file's zone, then a restart without the file: the state has both.
    aws.change_record("file.example", "CREATE", "api.file.example", "A", 60, &["10.22.0.2"]).await;
    kill_minus_nine(running).await;
    let running = start_binary(&api_args(Some(&state), recursive.address(), 0), "warn").await;
    let resolver = listener(&running, "vpc-file/resolver/udp");
    let client = "127.0.22.1".parse().unwrap();
    assert_eq!(ask(resolver, client, "www.file.example").await.unwrap().1, ["www.file.example. 300 IN A 10.22.0.1"]);
    assert_eq!(ask(resolver, client, "api.file.example").await.unwrap().1, ["api.file.example. 60 IN A 10.22.0.2"]);
}
