//! The AWS APIs driven over HTTP against the endpoint embedded in-process:
//! every call changes what the VPC resolvers and inbound endpoints answer.

use std::net::{Ipv4Addr, SocketAddr};

use serde_json::json;
use signpost_endpoint::service::{Service, ServiceOptions};

use crate::aws::{Aws, field, fields};
use crate::support::*;

pub(crate) struct Harness {
    pub(crate) service: Service,
    pub(crate) aws: Aws,
    pub(crate) _recursive: FakeUpstream,
    pub(crate) dir: TempDir,
}

pub(crate) async fn start(adjust: impl FnOnce(&mut ServiceOptions)) -> Harness {
    let dir = TempDir::new();
    let recursive = FakeUpstream::answering(RECURSIVE_ANSWER).await;
    let mut options = ServiceOptions {
        api: Some("127.0.0.1:0".parse().unwrap()),
        state: Some(dir.join("state")),
        dns_port: Some(0),
        doh_port: Some(0),
        recursive: vec![signpost_endpoint::HostPort {
            ip: recursive.address().ip(),
            port: Some(recursive.address().port()),
        }],
        status_delay_ms: Some(100),
        ..ServiceOptions::default()
    };
    adjust(&mut options);
    let service = Service::start(options, |_| {}).await.unwrap_or_else(|error| panic!("{error}"));
    let aws = Aws::new(service.api_address().unwrap());
    Harness { service, aws, _recursive: recursive, dir }
}

/// A VPC with two /26 subnets and a security group: ids and the resolver's address.
pub(crate) struct Vpc {
    pub(crate) id: String,
    pub(crate) subnets: [String; 2],
    pub(crate) group: String,
    pub(crate) resolver: SocketAddr,
}

pub(crate) async fn vpc(aws: &Aws, cidr: &str) -> Vpc {
    let id = aws.ec2_field("CreateVpc", &[("CidrBlock", cidr)], "vpcId").await;
    let base = cidr.trim_end_matches("/24").trim_end_matches(".0");
    let first =
        aws.ec2_field("CreateSubnet", &[("VpcId", &id), ("CidrBlock", &format!("{base}.0/26"))], "subnetId").await;
    let second = aws
        .ec2_field(
            "CreateSubnet",
            &[("VpcId", &id), ("CidrBlock", &format!("{base}.64/26")), ("AvailabilityZone", "us-east-1b")],
            "subnetId",
        )
        .await;
    let group = aws.dns_security_group(&id).await;
    let (_, described) = aws.ec2("DescribeVpcs", &[("VpcId.1", &id)]).await;
    let tag = described.split("<key>signpost:resolver</key><value>").nth(1).unwrap();
    let resolver = tag[..tag.find('<').unwrap()].parse().unwrap();
    Vpc { id, subnets: [first, second], group, resolver }
}

pub(crate) async fn private_zone(aws: &Aws, name: &str, vpc: &str, reference: &str) -> String {
    let body = format!(
        r#"<CreateHostedZoneRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Name>{name}</Name><VPC><VPCRegion>us-east-1</VPCRegion><VPCId>{vpc}</VPCId></VPC><CallerReference>{reference}</CallerReference></CreateHostedZoneRequest>"#
    );
    let (status, text) = aws.route53("POST", "hostedzone", &body).await;
    assert_eq!(status, 201, "{text}");
    field(&text, "Id").unwrap().trim_start_matches("/hostedzone/").to_string()
}

pub(crate) async fn endpoint(
    aws: &Aws,
    vpc: &Vpc,
    direction: &str,
    ips: [&str; 2],
    protocols: &[&str],
    request: &str,
) -> String {
    let value = aws
        .resolver_ok(
            "CreateResolverEndpoint",
            json!({
                "CreatorRequestId": request,
                "Name": request,
                "SecurityGroupIds": [vpc.group],
                "Direction": direction,
                "IpAddresses": [
                    { "SubnetId": vpc.subnets[0], "Ip": ips[0] },
                    { "SubnetId": vpc.subnets[1], "Ip": ips[1] },
                ],
                "Protocols": protocols,
            }),
        )
        .await;
    value["ResolverEndpoint"]["Id"].as_str().unwrap().to_string()
}

/// A FORWARD rule (request `rule-1`) for `domain` through `outbound` to the
/// one target `target`: its id.
async fn forward_rule_to(aws: &Aws, outbound: &str, domain: &str, target: SocketAddr) -> String {
    let rule = aws
        .resolver_ok(
            "CreateResolverRule",
            json!({
                "CreatorRequestId": "rule-1",
                "RuleType": "FORWARD",
                "DomainName": domain,
                "ResolverEndpointId": outbound,
                "TargetIps": [{ "Ip": target.ip().to_string(), "Port": target.port() }],
            }),
        )
        .await;
    rule["ResolverRule"]["Id"].as_str().unwrap().to_string()
}

async fn answers(server: SocketAddr, source: std::net::IpAddr, name: &str) -> Vec<String> {
    ask(server, source, name).await.map(|(_, answers)| answers).unwrap_or_default()
}

#[tokio::test]
async fn every_call_changes_what_each_vpc_resolves() {
    let harness = start(|_| {}).await;
    let aws = &harness.aws;
    let a = vpc(aws, "127.0.1.0/24").await;
    let b = vpc(aws, "127.0.2.0/24").await;
    assert_eq!(a.resolver.ip(), "127.0.1.2".parse::<std::net::IpAddr>().unwrap());

    // A private zone associated with A: A sees it, B gets the recursive default.
    let zone = private_zone(aws, "corp.example", &a.id, "zone-1").await;
    let (status, text) = aws.change_record(&zone, "UPSERT", "www.corp.example", "A", 60, &["10.1.0.10"]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(answers(a.resolver, VPC_A_CLIENT, "www.corp.example").await, ["www.corp.example. 60 IN A 10.1.0.10"]);
    assert_eq!(answers(b.resolver, VPC_B_CLIENT, "www.corp.example").await, ["www.corp.example. 300 IN A 192.0.2.53"]);
    // ... then with both.
    let associate = format!(
        r#"<AssociateVPCWithHostedZoneRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><VPC><VPCRegion>us-east-1</VPCRegion><VPCId>{}</VPCId></VPC></AssociateVPCWithHostedZoneRequest>"#,
        b.id
    );
    let (status, text) = aws.route53("POST", &format!("hostedzone/{zone}/associatevpc"), &associate).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(answers(b.resolver, VPC_B_CLIENT, "www.corp.example").await, ["www.corp.example. 60 IN A 10.1.0.10"]);
    // UPSERT changes the answer at once.
    aws.change_record(&zone, "UPSERT", "www.corp.example", "A", 60, &["10.1.0.11"]).await;
    assert_eq!(answers(b.resolver, VPC_B_CLIENT, "www.corp.example").await, ["www.corp.example. 60 IN A 10.1.0.11"]);

    // An outbound endpoint and a FORWARD rule to an "on-premises" server, associated with A only.
    let onprem = FakeUpstream::answering(Ipv4Addr::new(10, 99, 0, 1)).await;
    let outbound = endpoint(aws, &a, "OUTBOUND", ["127.0.1.20", "127.0.1.80"], &["Do53"], "out-1").await;
    let rule = forward_rule_to(aws, &outbound, "onprem.example", onprem.address()).await;
    aws.resolver_ok("AssociateResolverRule", json!({ "ResolverRuleId": rule, "VPCId": a.id, "Name": "a" })).await;
    assert_eq!(answers(a.resolver, VPC_A_CLIENT, "db.onprem.example").await, ["db.onprem.example. 300 IN A 10.99.0.1"]);
    assert_eq!(
        answers(b.resolver, VPC_B_CLIENT, "db.onprem.example").await,
        ["db.onprem.example. 300 IN A 192.0.2.53"]
    );
    // A SYSTEM rule carves a subdomain out.
    let system = aws
        .resolver_ok(
            "CreateResolverRule",
            json!({ "CreatorRequestId": "rule-2", "RuleType": "SYSTEM", "DomainName": "public.onprem.example" }),
        )
        .await;
    let system = system["ResolverRule"]["Id"].as_str().unwrap().to_string();
    aws.resolver_ok("AssociateResolverRule", json!({ "ResolverRuleId": system, "VPCId": a.id })).await;
    assert_eq!(
        answers(a.resolver, VPC_A_CLIENT, "www.public.onprem.example").await,
        ["www.public.onprem.example. 300 IN A 192.0.2.53"]
    );
    assert!(onprem.names().iter().all(|name| !name.contains("public")), "{:?}", onprem.names());

    // An inbound endpoint answers on-premises clients with A's view.
    let inbound = endpoint(aws, &a, "INBOUND", ["127.0.1.10", "127.0.1.70"], &["Do53"], "in-1").await;
    let listeners = harness.service.listeners().await;
    let address = listeners.iter().find(|l| l.id == format!("{inbound}/127.0.1.10/udp")).unwrap().address;
    assert_eq!(answers(address, ONPREM_CLIENT, "www.corp.example").await, ["www.corp.example. 60 IN A 10.1.0.11"]);

    // Disassociating the rule from A sends the names back to the recursive default.
    aws.resolver_ok("DisassociateResolverRule", json!({ "ResolverRuleId": rule, "VPCId": a.id })).await;
    assert_eq!(
        answers(a.resolver, VPC_A_CLIENT, "db2.onprem.example").await,
        ["db2.onprem.example. 300 IN A 192.0.2.53"]
    );

    // Deleting the inbound endpoint stops its listeners.
    aws.resolver_ok("DeleteResolverEndpoint", json!({ "ResolverEndpointId": inbound })).await;
    assert!(ask(address, ONPREM_CLIENT, "www.corp.example").await.is_none());
    harness.service.shutdown().await;
}

#[tokio::test]
async fn statuses_move_from_creating_to_operational_and_complete() {
    let harness = start(|options| options.status_delay_ms = Some(300)).await;
    let aws = &harness.aws;
    let a = vpc(aws, "127.0.3.0/24").await;
    let id = endpoint(aws, &a, "OUTBOUND", ["127.0.3.20", "127.0.3.80"], &["Do53"], "out-status").await;
    let get = aws.resolver_ok("GetResolverEndpoint", json!({ "ResolverEndpointId": id })).await;
    assert_eq!(get["ResolverEndpoint"]["Status"], "CREATING");
    let rule = aws
        .resolver_ok(
            "CreateResolverRule",
            json!({ "CreatorRequestId": "r", "RuleType": "FORWARD", "DomainName": "x.example", "ResolverEndpointId": id, "TargetIps": [{ "Ip": "127.0.0.1", "Port": 9 }] }),
        )
        .await;
    assert_eq!(rule["ResolverRule"]["Status"], "COMPLETE");
    assert_eq!(rule["ResolverRule"]["TargetIps"][0]["Protocol"], "Do53");
    let association = aws
        .resolver_ok("AssociateResolverRule", json!({ "ResolverRuleId": rule["ResolverRule"]["Id"], "VPCId": a.id }))
        .await;
    assert_eq!(association["ResolverRuleAssociation"]["Status"], "CREATING");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let get = aws.resolver_ok("GetResolverEndpoint", json!({ "ResolverEndpointId": id })).await;
    assert_eq!(get["ResolverEndpoint"]["Status"], "OPERATIONAL");
    let association_id = association["ResolverRuleAssociation"]["Id"].clone();
    let get =
        aws.resolver_ok("GetResolverRuleAssociation", json!({ "ResolverRuleAssociationId": association_id })).await;
    assert_eq!(get["ResolverRuleAssociation"]["Status"], "COMPLETE");
    harness.service.shutdown().await;
}

#[tokio::test]
async fn the_service_s_validation_errors_come_back_with_its_codes() {
    let harness = start(|_| {}).await;
    let aws = &harness.aws;
    let a = vpc(aws, "127.0.4.0/24").await;
    let b = vpc(aws, "127.0.5.0/24").await;
    let endpoint_body = |ips: serde_json::Value, direction: &str, protocols: serde_json::Value, request: &str| json!({ "CreatorRequestId": request, "SecurityGroupIds": [a.group], "Direction": direction, "IpAddresses": ips, "Protocols": protocols });
    // Fewer than two addresses.
    let (code, message) = aws
        .resolver_error(
            "CreateResolverEndpoint",
            endpoint_body(json!([{ "SubnetId": a.subnets[0] }]), "INBOUND", json!(["Do53"]), "e1"),
        )
        .await;
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("InvalidRequestException", "[RSLVR-00400] Resolver endpoint need to have at least 2 IP addresses.")
    );
    // An address outside its subnet.
    let (code, message) = aws
        .resolver_error(
            "CreateResolverEndpoint",
            endpoint_body(
                json!([{ "SubnetId": a.subnets[0], "Ip": "127.0.4.100" }, { "SubnetId": a.subnets[1] }]),
                "INBOUND",
                json!(["Do53"]),
                "e2",
            ),
        )
        .await;
    assert_eq!(code, "InvalidRequestException");
    assert!(message.contains("is either not in subnet"), "{message}");
    // DoH-FIPS on an outbound endpoint.
    let two = json!([{ "SubnetId": a.subnets[0] }, { "SubnetId": a.subnets[1] }]);
    let (code, _) = aws
        .resolver_error("CreateResolverEndpoint", endpoint_body(two.clone(), "OUTBOUND", json!(["DoH-FIPS"]), "e3"))
        .await;
    assert_eq!(code, "InvalidParameterException");
    // A reused creator request id.
    let ok =
        aws.resolver_ok("CreateResolverEndpoint", endpoint_body(two.clone(), "OUTBOUND", json!(["Do53"]), "e4")).await;
    let outbound = ok["ResolverEndpoint"]["Id"].as_str().unwrap().to_string();
    let (code, _) = aws
        .resolver_error("CreateResolverEndpoint", endpoint_body(two.clone(), "OUTBOUND", json!(["Do53"]), "e4"))
        .await;
    assert_eq!(code, "ResourceExistsException");
    // FORWARD without targets, SYSTEM with targets, RECURSIVE.
    let rule = |request: &str, kind: &str, targets: serde_json::Value| json!({ "CreatorRequestId": request, "RuleType": kind, "DomainName": "corp.example", "ResolverEndpointId": outbound, "TargetIps": targets });
    let (code, message) = aws.resolver_error("CreateResolverRule", rule("r1", "FORWARD", json!([]))).await;
    assert_eq!(code, "InvalidRequestException", "{message}");
    let (code, _) =
        aws.resolver_error("CreateResolverRule", rule("r2", "SYSTEM", json!([{ "Ip": "127.0.0.1" }]))).await;
    assert_eq!(code, "InvalidRequestException");
    let (code, message) = aws.resolver_error("CreateResolverRule", rule("r3", "RECURSIVE", json!([]))).await;
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("InvalidRequestException", "[RSLVR-00718] Cannot create a rule with type RECURSIVE")
    );
    // A rule associated with one VPC twice; two rules of one domain on one VPC; deleting an associated rule.
    let forward =
        aws.resolver_ok("CreateResolverRule", rule("r4", "FORWARD", json!([{ "Ip": "127.0.0.1", "Port": 9 }]))).await;
    let forward = forward["ResolverRule"]["Id"].as_str().unwrap().to_string();
    aws.resolver_ok("AssociateResolverRule", json!({ "ResolverRuleId": forward, "VPCId": a.id })).await;
    let (code, message) =
        aws.resolver_error("AssociateResolverRule", json!({ "ResolverRuleId": forward, "VPCId": a.id })).await;
    assert_eq!(code, "InvalidRequestException");
    assert!(
        message.starts_with("[RSLVR-00802] Cannot associate rules with same domain name with same VPC"),
        "{message}"
    );
    let same =
        aws.resolver_ok("CreateResolverRule", rule("r5", "FORWARD", json!([{ "Ip": "127.0.0.2", "Port": 9 }]))).await;
    let (code, message) = aws
        .resolver_error("AssociateResolverRule", json!({ "ResolverRuleId": same["ResolverRule"]["Id"], "VPCId": a.id }))
        .await;
    assert_eq!(code, "InvalidRequestException");
    assert!(message.contains(&forward), "{message}");
    let (code, _) = aws.resolver_error("DeleteResolverRule", json!({ "ResolverRuleId": forward })).await;
    assert_eq!(code, "ResourceInUseException");
    let (code, message) = aws.resolver_error("DeleteResolverEndpoint", json!({ "ResolverEndpointId": outbound })).await;
    assert_eq!(code, "InvalidRequestException");
    assert!(message.starts_with("[RSLVR-00600]"), "{message}");
    // Unknown ids.
    let (code, message) = aws.resolver_error("GetResolverRule", json!({ "ResolverRuleId": "rslvr-rr-nope" })).await;
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("ResourceNotFoundException", "[RSLVR-00703] Resolver rule with ID \"rslvr-rr-nope\" does not exist.")
    );
    let (code, _) = aws.resolver_error("GetResolverEndpoint", json!({ "ResolverEndpointId": "rslvr-in-nope" })).await;
    assert_eq!(code, "ResourceNotFoundException");
    // Do53 alone straight to DoH alone.
    let inbound = endpoint(aws, &b, "INBOUND", ["127.0.5.10", "127.0.5.70"], &["Do53"], "in-b").await;
    let (code, message) = aws
        .resolver_error("UpdateResolverEndpoint", json!({ "ResolverEndpointId": inbound, "Protocols": ["DoH"] }))
        .await;
    assert_eq!(code, "InvalidRequestException");
    assert!(message.contains("Do53+DoH"), "{message}");
    aws.resolver_ok("UpdateResolverEndpoint", json!({ "ResolverEndpointId": inbound, "Protocols": ["Do53", "DoH"] }))
        .await;

    // Route 53: a reused caller reference, a zone that is not empty, changes that cannot apply.
    let zone = private_zone(aws, "corp.example", &a.id, "ref-1").await;
    let again = format!(
        r#"<CreateHostedZoneRequest><Name>other.example</Name><VPC><VPCRegion>us-east-1</VPCRegion><VPCId>{}</VPCId></VPC><CallerReference>ref-1</CallerReference></CreateHostedZoneRequest>"#,
        a.id
    );
    let (status, text) = aws.route53("POST", "hostedzone", &again).await;
    assert_eq!((status, field(&text, "Code").as_deref()), (409, Some("HostedZoneAlreadyExists")), "{text}");
    let (status, text) = aws.route53("GET", "hostedzone/ZNOPE", "").await;
    assert_eq!((status, field(&text, "Code").as_deref()), (404, Some("NoSuchHostedZone")), "{text}");
    let (status, text) = aws.change_record(&zone, "DELETE", "nope.corp.example", "A", 60, &["10.0.0.1"]).await;
    assert_eq!(status, 400);
    assert_eq!(
        field(&text, "Message").unwrap(),
        "[Tried to delete resource record set [name='nope.corp.example.', type='A'] but it was not found]"
    );
    aws.change_record(&zone, "CREATE", "www.corp.example", "A", 60, &["10.0.0.1"]).await;
    let (status, text) = aws.change_record(&zone, "CREATE", "www.corp.example", "A", 60, &["10.0.0.2"]).await;
    assert_eq!((status, field(&text, "Code").as_deref()), (400, Some("InvalidChangeBatch")), "{text}");
    let (status, text) = aws.route53("DELETE", &format!("hostedzone/{zone}"), "").await;
    assert_eq!((status, field(&text, "Code").as_deref()), (400, Some("HostedZoneNotEmpty")), "{text}");
    // A second zone of the same name on the same VPC.
    let clash = format!(
        r#"<CreateHostedZoneRequest><Name>corp.example</Name><VPC><VPCRegion>us-east-1</VPCRegion><VPCId>{}</VPCId></VPC><CallerReference>ref-2</CallerReference></CreateHostedZoneRequest>"#,
        a.id
    );
    let (status, text) = aws.route53("POST", "hostedzone", &clash).await;
    assert_eq!((status, field(&text, "Code").as_deref()), (400, Some("ConflictingDomainExists")), "{text}");
    // EC2: unknown VPC, overlapping blocks.
    let (status, text) = aws.ec2("DeleteVpc", &[("VpcId", "vpc-nope")]).await;
    assert_eq!((status, field(&text, "Code").as_deref()), (400, Some("InvalidVpcID.NotFound")), "{text}");
    let (status, text) = aws.ec2("DeleteVpc", &[("VpcId", &a.id)]).await;
    assert_eq!((status, field(&text, "Code").as_deref()), (400, Some("DependencyViolation")), "{text}");
    harness.service.shutdown().await;
}

#[tokio::test]
async fn lists_page_and_filter_and_quotas_apply() {
    let harness = start(|_| {}).await;
    let aws = &harness.aws;
    let a = vpc(aws, "127.0.6.0/24").await;
    for index in 0..12 {
        aws.resolver_ok(
            "CreateResolverRule",
            json!({ "CreatorRequestId": format!("rule-{index}"), "Name": format!("rule-{index}"), "RuleType": "SYSTEM", "DomainName": format!("d{index}.example") }),
        )
        .await;
    }
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let mut body = json!({ "MaxResults": 5 });
        if let Some(token) = &token {
            body["NextToken"] = json!(token);
        }
        let page = aws.resolver_ok("ListResolverRules", body).await;
        names.extend(
            page["ResolverRules"].as_array().unwrap().iter().map(|rule| rule["Name"].as_str().unwrap().to_string()),
        );
        token = page["NextToken"].as_str().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(names.len(), 12, "{names:?}");
    let filtered = aws
        .resolver_ok("ListResolverRules", json!({ "Filters": [{ "Name": "DomainName", "Values": ["d3.example."] }] }))
        .await;
    assert_eq!(filtered["ResolverRules"].as_array().unwrap().len(), 1);
    let (code, _) =
        aws.resolver_error("ListResolverRules", json!({ "Filters": [{ "Name": "Colour", "Values": ["red"] }] })).await;
    assert_eq!(code, "InvalidParameterException");
    let (code, _) = aws.resolver_error("ListResolverRules", json!({ "NextToken": "bogus" })).await;
    assert_eq!(code, "InvalidNextTokenException");
    // AWS's default quota: five VPCs per region (one exists).
    for index in 7..11 {
        aws.ec2_field("CreateVpc", &[("CidrBlock", &format!("127.0.{index}.0/24"))], "vpcId").await;
    }
    let (status, text) = aws.ec2("CreateVpc", &[("CidrBlock", "127.0.11.0/24")]).await;
    assert_eq!((status, field(&text, "Code").as_deref()), (400, Some("VpcLimitExceeded")), "{text}");
    // Tags on a rule.
    let listed = aws.resolver_ok("ListResolverRules", json!({ "MaxResults": 1 })).await;
    let arn = listed["ResolverRules"][0]["Arn"].as_str().unwrap().to_string();
    aws.resolver_ok("TagResource", json!({ "ResourceArn": arn, "Tags": [{ "Key": "team", "Value": "dns" }] })).await;
    let tags = aws.resolver_ok("ListTagsForResource", json!({ "ResourceArn": arn })).await;
    assert_eq!(tags["Tags"], json!([{ "Key": "team", "Value": "dns" }]));
    let (_, described) = aws.ec2("DescribeVpcs", &[("Filter.1.Name", "vpc-id"), ("Filter.1.Value.1", &a.id)]).await;
    assert_eq!(fields(&described, "vpcId"), std::slice::from_ref(&a.id));
    harness.service.shutdown().await;
}

#[tokio::test]
async fn query_log_configs_with_an_arn_write_json_lines_under_the_state_directory() {
    let harness = start(|_| {}).await;
    let aws = &harness.aws;
    let a = vpc(aws, "127.0.12.0/24").await;
    let config = aws
        .resolver_ok(
            "CreateResolverQueryLogConfig",
            json!({ "Name": "dns-logs", "CreatorRequestId": "qlc-1", "DestinationArn": "arn:aws:logs:us-east-1:000000000000:log-group:/signpost/dns" }),
        )
        .await;
    let id = config["ResolverQueryLogConfig"]["Id"].as_str().unwrap().to_string();
    aws.resolver_ok("AssociateResolverQueryLogConfig", json!({ "ResolverQueryLogConfigId": id, "ResourceId": a.id }))
        .await;
    let listed = aws
        .resolver_ok(
            "ListResolverQueryLogConfigs",
            json!({ "Filters": [{ "Name": "Destination", "Values": ["CloudWatchLogs"] }] }),
        )
        .await;
    assert_eq!(listed["TotalFilteredCount"], 1);
    let client = "127.0.12.1".parse().unwrap();
    let answer = ask(a.resolver, client, "logged.example").await;
    assert_eq!(
        answer.as_ref().map(|(_, answers)| answers.clone()),
        Some(vec!["logged.example. 300 IN A 192.0.2.53".to_string()]),
        "{answer:?}"
    );
    let file = harness.dir.join("state/query-logs/cloudwatch-logs/signpost/dns.jsonl");
    let lines = json_lines(&file, 1).await;
    assert!(
        lines.iter().any(|line| line["query_name"] == "logged.example." && line["vpc_id"] == a.id.as_str()),
        "{lines:?}"
    );
    let (code, _) = aws
        .resolver_error(
            "CreateResolverQueryLogConfig",
            json!({ "Name": "bad", "CreatorRequestId": "qlc-2", "DestinationArn": "arn:aws:sqs:us-east-1:1:queue" }),
        )
        .await;
    assert_eq!(code, "InvalidParameterException");
    harness.service.shutdown().await;
}

#[tokio::test]
async fn a_model_with_many_vpcs_keeps_finding_each_of_them() {
    let harness = start(|options| options.no_quotas = true).await;
    let aws = &harness.aws;
    let mut vpcs = Vec::new();
    for index in 0..18 {
        vpcs.push(aws.ec2_field("CreateVpc", &[("CidrBlock", &format!("127.0.{}.0/24", 100 + index))], "vpcId").await);
    }
    let rule = aws
        .resolver_ok(
            "CreateResolverRule",
            json!({ "CreatorRequestId": "many", "RuleType": "SYSTEM", "DomainName": "many.example" }),
        )
        .await;
    // The newest VPC, then one more made after it: both are found.
    aws.resolver_ok(
        "AssociateResolverRule",
        json!({ "ResolverRuleId": rule["ResolverRule"]["Id"], "VPCId": vpcs[17] }),
    )
    .await;
    let newest = aws.ec2_field("CreateVpc", &[("CidrBlock", "127.0.130.0/24")], "vpcId").await;
    aws.resolver_ok("AssociateResolverRule", json!({ "ResolverRuleId": rule["ResolverRule"]["Id"], "VPCId": newest }))
        .await;
    let (code, _) = aws
        .resolver_error(
            "AssociateResolverRule",
            json!({ "ResolverRuleId": rule["ResolverRule"]["Id"], "VPCId": "vpc-nope" }),
        )
        .await;
    assert_eq!(code, "InvalidParameterException");
    harness.service.shutdown().await;
}

#[tokio::test]
async fn resource_policies_are_kept_checked_and_survive_a_restart() {
    let harness = start(|_| {}).await;
    let aws = &harness.aws;
    let vpc = vpc(aws, "127.0.3.0/24").await;
    let out = endpoint(aws, &vpc, "OUTBOUND", ["127.0.3.20", "127.0.3.70"], &["Do53"], "out").await;
    let rule = aws
        .resolver_ok(
            "CreateResolverRule",
            json!({ "CreatorRequestId": "r", "RuleType": "FORWARD", "DomainName": "onprem.example",
                    "ResolverEndpointId": out, "TargetIps": [{ "Ip": "127.0.0.1", "Port": 5301 }] }),
        )
        .await;
    let rule_arn = rule["ResolverRule"]["Arn"].as_str().unwrap().to_string();
    let log = aws
        .resolver_ok(
            "CreateResolverQueryLogConfig",
            json!({ "Name": "q", "CreatorRequestId": "q", "DestinationArn": "arn:aws:s3:::bucket" }),
        )
        .await;
    let log_arn = log["ResolverQueryLogConfig"]["Arn"].as_str().unwrap().to_string();
    let group = aws.resolver_ok("CreateFirewallRuleGroup", json!({ "CreatorRequestId": "g", "Name": "g" })).await;
    let group_arn = group["FirewallRuleGroup"]["Arn"].as_str().unwrap().to_string();
    let policy = |resource: &str| {
        json!({ "Version": "2012-10-17", "Statement": [{ "Effect": "Allow",
                "Principal": { "AWS": "111122223333" }, "Action": ["route53resolver:GetResolverRule"],
                "Resource": [resource] }] })
        .to_string()
    };
    let kinds = [
        ("ResolverRulePolicy", "PutResolverRulePolicy", "GetResolverRulePolicy", &rule_arn),
        (
            "ResolverQueryLogConfigPolicy",
            "PutResolverQueryLogConfigPolicy",
            "GetResolverQueryLogConfigPolicy",
            &log_arn,
        ),
        ("FirewallRuleGroupPolicy", "PutFirewallRuleGroupPolicy", "GetFirewallRuleGroupPolicy", &group_arn),
    ];
    for (field, put, get, arn) in kinds {
        // Nothing stored yet: an empty policy.
        assert_eq!(aws.resolver_ok(get, json!({ "Arn": arn })).await[field], "");
        let answer = aws.resolver_ok(put, json!({ "Arn": arn, field: policy(arn) })).await;
        assert_eq!(answer["ReturnValue"], true);
        assert_eq!(aws.resolver_ok(get, json!({ "Arn": arn })).await[field], policy(arn));
        // Not JSON; an ARN of another kind of resource.
        let (status, error) = aws.resolver(put, json!({ "Arn": arn, field: "{not json" })).await;
        assert_eq!(status, 400, "{error}");
        let expected = if field == "FirewallRuleGroupPolicy" { "ValidationException" } else { "InvalidPolicyDocument" };
        assert_eq!(error["__type"], expected, "{error}");
        let other = if *arn == rule_arn { &log_arn } else { &rule_arn };
        let (status, error) = aws.resolver(get, json!({ "Arn": other })).await;
        let expected =
            if field == "FirewallRuleGroupPolicy" { "ResourceNotFoundException" } else { "UnknownResourceException" };
        assert_eq!((status, error["__type"].as_str()), (400, Some(expected)), "{error}");
    }
    // DNS Firewall Advanced's rule types are not emulated: none is listed.
    assert_eq!(aws.resolver_ok("ListFirewallRuleTypes", json!({})).await, json!({ "FirewallRuleTypes": [] }));

    // The policies are in the state directory: a new process on it has them.
    let state = harness.dir.join("state");
    let Harness { service, _recursive, dir, .. } = harness;
    service.shutdown().await;
    let again = start(|options| options.state = Some(state)).await;
    for (field, _, get, arn) in kinds {
        assert_eq!(again.aws.resolver_ok(get, json!({ "Arn": arn })).await[field], policy(arn), "{get}");
    }
    again.service.shutdown().await;
    drop((dir, _recursive));
}

/// `/ready` follows API changes: a FORWARD rule's targets count once it is
/// associated with a VPC, and no longer once it is disassociated.
#[tokio::test]
async fn ready_follows_the_rules_the_api_associates() {
    let file_dir = TempDir::new();
    let file = file_dir.join("endpoint.toml");
    std::fs::write(&file, "ready = { address = \"127.0.0.1:0\", upstream_interval_ms = 200 }\n").unwrap();
    let harness = start(|options| options.config = Some(file)).await;
    let aws = &harness.aws;
    let ready = harness.service.probes().ready_addr().unwrap();
    let ready_becomes = |status: u16, body: String| async move {
        let expected = Some((status, body));
        let answers = || async { signpost_testkit::http_get(ready, "/ready").await == expected };
        assert!(
            signpost_testkit::eventually(std::time::Duration::from_secs(10), answers).await,
            "wanted {expected:?}, /ready answers {:?}",
            signpost_testkit::http_get(ready, "/ready").await
        );
    };
    // The recursive default answers.
    ready_becomes(200, "OK".into()).await;

    let a = vpc(aws, "127.0.1.0/24").await;
    let outbound = endpoint(aws, &a, "OUTBOUND", ["127.0.1.20", "127.0.1.80"], &["Do53"], "out-1").await;
    let closed = signpost_testkit::closed_udp_port();
    let rule = forward_rule_to(aws, &outbound, "onprem.example", closed).await;
    // Associated with no VPC, the rule sends nothing: still ready (checked over several rounds).
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    ready_becomes(200, "OK".into()).await;

    aws.resolver_ok("AssociateResolverRule", json!({ "ResolverRuleId": rule, "VPCId": a.id })).await;
    ready_becomes(503, format!("upstreams:forward:{rule}")).await;

    aws.resolver_ok("DisassociateResolverRule", json!({ "ResolverRuleId": rule, "VPCId": a.id })).await;
    ready_becomes(200, "OK".into()).await;
    harness.service.shutdown().await;
}
