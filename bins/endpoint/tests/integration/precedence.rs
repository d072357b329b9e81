//! Every row of the precedence table in docs/endpoint.md, asked from vpc-a.
//!
//! Where an answer comes from shows in its address: 10.1.x.x from a private
//! hosted zone of the emulator, 10.99.x.x from the on-premises server
//! (FORWARD targets), 192.0.2.77 from a second on-premises server, and
//! 192.0.2.53 from the recursive default.

use std::net::Ipv4Addr;

use signpost_wire::Rcode;

use crate::support::*;

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// A private hosted zone answered with this address.
    Zone(Ipv4Addr),
    /// The on-premises server (a FORWARD target) answered with this address.
    OnPremises(Ipv4Addr),
    /// The second on-premises server answered.
    OtherOnPremises,
    /// The recursive default answered.
    Recursive,
    /// NXDOMAIN from a private hosted zone.
    NxDomain,
}

const OTHER_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);

fn zone(name: &str, records: &[&str], vpcs: &str) -> String {
    let records: Vec<String> = records.iter().map(|record| format!("\"{record}\"")).collect();
    format!("\n[[private_hosted_zones]]\nname = \"{name}\"\nvpcs = {vpcs}\nrecords = [{}]\n", records.join(", "))
}

/// A FORWARD rule to the on-premises server (`@ONPREM@`) or the other one (`@OTHER@`).
fn forward(id: &str, domain: &str, target: &str, vpcs: &str) -> String {
    forward_rule(id, domain, &format!("[{{ ip = \"127.0.0.1\", port = {target} }}]"), vpcs)
}

const A: &str = r#"["vpc-a"]"#;
const B: &str = r#"["vpc-b"]"#;

/// Start everything with `parts`, ask each name from vpc-a, and say where each answer came from.
async fn resolve(parts: &[String], names: &[&str]) -> Vec<Outcome> {
    let dir = TempDir::new();
    let certificate = certificate(dir.path());
    let onprem = OnPremises::start(dir.path(), &certificate).await;
    let other = FakeUpstream::answering(OTHER_ANSWER).await;
    let recursive = FakeUpstream::answering(RECURSIVE_ANSWER).await;
    let mut extra = String::from("\n[[outbound_endpoints]]\nid = \"rslvr-out-a\"\nvpc = \"vpc-a\"\n");
    for part in parts {
        extra.push_str(
            &part
                .replace("@ONPREM@", &onprem.udp().port().to_string())
                .replace("@OTHER@", &other.address().port().to_string()),
        );
    }
    let endpoint = start(dir.path(), &two_vpcs(recursive.address(), &extra)).await;
    let server = vpc_resolver(&endpoint, "vpc-a");
    let mut outcomes = Vec::new();
    for name in names {
        let before = recursive.names().len();
        let (rcode, answers) = ask(server, VPC_A_CLIENT, name).await.unwrap();
        let address = answers.first().and_then(|answer| answer.rsplit(' ').next()?.parse::<Ipv4Addr>().ok());
        let outcome = match (rcode, address) {
            (Rcode::NXDOMAIN, _) => Outcome::NxDomain,
            (_, Some(address)) if address == RECURSIVE_ANSWER => {
                assert_eq!(recursive.names().len(), before + 1, "{name} reached the recursive default");
                Outcome::Recursive
            }
            (_, Some(address)) if address == OTHER_ANSWER => Outcome::OtherOnPremises,
            (_, Some(address)) if address.octets()[..2] == [10, 99] => Outcome::OnPremises(address),
            (_, Some(address)) if address.octets()[..2] == [10, 1] => Outcome::Zone(address),
            other => panic!("{name}: unexpected answer {other:?} {answers:?}"),
        };
        if outcome == Outcome::NxDomain {
            assert_eq!(recursive.names().len(), before, "{name}: NXDOMAIN must not be forwarded");
        }
        outcomes.push(outcome);
    }
    endpoint.shutdown().await;
    onprem.server.shutdown().await;
    outcomes
}

/// [`resolve`] with only corp.example (www A 10.1.0.10) in vpc-a: rows 1 to 3.
async fn resolve_with_corp_zone(names: &[&str]) -> Vec<Outcome> {
    resolve(&[zone("corp.example", &["www A 10.1.0.10"], A)], names).await
}

#[tokio::test]
async fn row_1_nothing_covers_the_name_so_the_recursive_default_answers() {
    assert_eq!(resolve_with_corp_zone(&["www.example.org"]).await, [Outcome::Recursive]);
}

#[tokio::test]
async fn row_2_a_private_hosted_zone_answers_its_names() {
    let outcomes = resolve_with_corp_zone(&["www.corp.example", "WWW.Corp.Example"]).await;
    assert_eq!(outcomes, [Outcome::Zone(Ipv4Addr::new(10, 1, 0, 10)), Outcome::Zone(Ipv4Addr::new(10, 1, 0, 10))]);
}

#[tokio::test]
async fn row_3_a_name_the_zone_lacks_is_nxdomain_and_not_forwarded() {
    assert_eq!(resolve_with_corp_zone(&["nope.corp.example"]).await, [Outcome::NxDomain]);
}

#[tokio::test]
async fn row_4_a_forward_rule_covers_its_domain_and_every_name_below() {
    let outcomes =
        resolve(&[forward("fwd", "onprem.example", "@ONPREM@", A)], &["db.onprem.example", "app.sub.onprem.example"])
            .await;
    assert_eq!(
        outcomes,
        [Outcome::OnPremises(Ipv4Addr::new(10, 99, 0, 10)), Outcome::OnPremises(Ipv4Addr::new(10, 99, 0, 30))]
    );
}

#[tokio::test]
async fn row_5_of_two_forward_rules_the_more_specific_wins() {
    let parts =
        [forward("broad", "onprem.example", "@OTHER@", A), forward("narrow", "sub.onprem.example", "@ONPREM@", A)];
    let outcomes = resolve(&parts, &["app.sub.onprem.example", "db.onprem.example"]).await;
    assert_eq!(outcomes, [Outcome::OnPremises(Ipv4Addr::new(10, 99, 0, 30)), Outcome::OtherOnPremises]);
}

#[tokio::test]
async fn row_6_a_forward_rule_beats_a_zone_for_the_same_domain() {
    let parts = [zone("corp.example", &["www A 10.1.0.10"], A), forward("fwd", "corp.example", "@ONPREM@", A)];
    let outcomes = resolve(&parts, &["www.corp.example"]).await;
    assert_eq!(outcomes, [Outcome::OnPremises(Ipv4Addr::new(10, 99, 1, 1))]);
}

#[tokio::test]
async fn row_7_a_zone_below_a_forward_rule_wins_for_its_names() {
    let parts = [forward("fwd", "corp.example", "@ONPREM@", A), zone("dev.corp.example", &["x A 10.1.5.5"], A)];
    let outcomes = resolve(&parts, &["x.dev.corp.example", "www.corp.example"]).await;
    assert_eq!(outcomes, [Outcome::Zone(Ipv4Addr::new(10, 1, 5, 5)), Outcome::OnPremises(Ipv4Addr::new(10, 99, 1, 1))]);
}

#[tokio::test]
async fn row_8_a_forward_rule_below_a_zone_wins_for_its_names() {
    let parts = [
        zone("corp.example", &["www A 10.1.0.10", "api A 10.1.0.20"], A),
        forward("fwd", "api.corp.example", "@ONPREM@", A),
    ];
    let outcomes = resolve(&parts, &["api.corp.example", "www.corp.example"]).await;
    assert_eq!(
        outcomes,
        [Outcome::OnPremises(Ipv4Addr::new(10, 99, 1, 2)), Outcome::Zone(Ipv4Addr::new(10, 1, 0, 10))]
    );
}

#[tokio::test]
async fn row_9_a_system_rule_below_a_forward_rule_carves_its_names_out() {
    let parts = [forward("fwd", "onprem.example", "@ONPREM@", A), system_rule("sys", "public.onprem.example", A)];
    let outcomes = resolve(&parts, &["public.onprem.example", "a.public.onprem.example", "db.onprem.example"]).await;
    assert_eq!(outcomes, [Outcome::Recursive, Outcome::Recursive, Outcome::OnPremises(Ipv4Addr::new(10, 99, 0, 10))]);
}

#[tokio::test]
async fn row_10_a_system_rule_under_a_zone_resolves_from_the_zone() {
    let parts = [
        zone("corp.example", &["www A 10.1.0.10", "svc.dev A 10.1.0.30"], A),
        forward("fwd", "dev.corp.example", "@ONPREM@", A),
        system_rule("sys", "svc.dev.corp.example", A),
    ];
    let outcomes = resolve(&parts, &["svc.dev.corp.example", "other.svc.dev.corp.example", "x.dev.corp.example"]).await;
    assert_eq!(
        outcomes,
        [
            Outcome::Zone(Ipv4Addr::new(10, 1, 0, 30)),
            Outcome::NxDomain,
            Outcome::OnPremises(Ipv4Addr::new(10, 99, 1, 3))
        ]
    );
}

#[tokio::test]
async fn row_11_a_system_rule_for_a_zone_s_domain_lets_the_zone_answer() {
    let parts = [zone("corp.example", &["www A 10.1.0.10"], A), system_rule("sys", "corp.example", A)];
    let outcomes = resolve(&parts, &["www.corp.example", "nope.corp.example"]).await;
    assert_eq!(outcomes, [Outcome::Zone(Ipv4Addr::new(10, 1, 0, 10)), Outcome::NxDomain]);
}

#[tokio::test]
async fn row_12_a_forward_rule_below_a_system_rule_wins_for_its_names() {
    let parts = [system_rule("sys", "onprem.example", A), forward("fwd", "sub.onprem.example", "@ONPREM@", A)];
    let outcomes = resolve(&parts, &["app.sub.onprem.example", "db.onprem.example"]).await;
    assert_eq!(outcomes, [Outcome::OnPremises(Ipv4Addr::new(10, 99, 0, 30)), Outcome::Recursive]);
}

#[tokio::test]
async fn row_13_rules_and_zones_of_another_vpc_do_not_apply() {
    let parts = [zone("corp.example", &["www A 10.1.0.10"], B), forward("fwd", "onprem.example", "@ONPREM@", B)];
    let outcomes = resolve(&parts, &["www.corp.example", "db.onprem.example"]).await;
    assert_eq!(outcomes, [Outcome::Recursive, Outcome::Recursive]);
}
