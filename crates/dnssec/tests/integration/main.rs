//! The validator against Knot DNS serving the signed hierarchy in
//! tests/zones (built by tests/zones/make.sh with ldns-signzone): every
//! question is asked of Knot on loopback with DO and CD, and the chain
//! queries the validation asks for go to the same Knot.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use signpost_dnssec::{BogusReason, InsecureReason, Security, Step, TrustAnchors, Validator, ValidatorConfig, Verdict};
use signpost_testkit::{Knot, Query, signed_test_zones};
use signpost_wire::{EdnsHeader, ExtendedErrorCode, Message, NameBuf, Rcode, RecordType};

/// 2026-06-01T00:00:00Z: inside the fixtures' signature windows (2025 to 2045).
const NOW: u64 = 1_780_272_000;

fn anchors() -> TrustAnchors {
    let text = std::fs::read_to_string(signed_test_zones().join("anchor.key")).expect("anchor.key");
    let mut anchors = TrustAnchors::empty();
    anchors.add_text(&text, "anchor.key").expect("anchor parses");
    anchors
}

/// Ask `server` with DO and CD set, over UDP and again over TCP when truncated.
fn ask(server: SocketAddr, name: &str, rtype: RecordType) -> Option<Vec<u8>> {
    let mut query = Query::new(name, rtype)
        .recursion_desired(false)
        .edns(EdnsHeader { udp_payload_size: 1232, version: 0, dnssec_ok: true })
        .to_bytes();
    // CD: the flags' low byte, bit 0x10.
    query[3] |= 0x10;
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    socket.send_to(&query, server).ok()?;
    let mut buffer = vec![0u8; 65535];
    let (len, _) = socket.recv_from(&mut buffer).ok()?;
    buffer.truncate(len);
    if Message::parse(&buffer).ok()?.flags().tc() {
        let mut stream = TcpStream::connect(server).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        let mut framed = u16::try_from(query.len()).ok()?.to_be_bytes().to_vec();
        framed.extend_from_slice(&query);
        stream.write_all(&framed).ok()?;
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).ok()?;
        buffer = vec![0u8; usize::from(u16::from_be_bytes(length))];
        stream.read_exact(&mut buffer).ok()?;
    }
    Some(buffer)
}

/// Ask, validate, and answer the validation's own queries; the verdict,
/// the response's RCODE and the number of chain queries.
fn validate(
    validator: &Validator,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    now: u64,
) -> (Verdict, Rcode, usize) {
    let response = ask(server, name, rtype).expect("knot answers");
    let rcode = Message::parse(&response).expect("parses").rcode().expect("rcode");
    let mut validation = validator.start(&response, now);
    let mut queries = 0;
    loop {
        match validation.poll() {
            Step::Query(query) => {
                queries += 1;
                assert!(queries <= 64, "too many queries");
                let answer = ask(server, &query.name.to_string(), query.rtype);
                validation.handle_response(&query, answer.as_deref());
            }
            Step::Done(verdict) => return (verdict, rcode, queries),
        }
    }
}

fn bogus_reason(verdict: &Verdict) -> Option<BogusReason> {
    match &verdict.security {
        Security::Bogus(bogus) => Some(bogus.reason),
        _ => None,
    }
}

#[test]
fn secure_answers_denials_and_wildcards() {
    let knot = Knot::signed_test_hierarchy();
    let validator = Validator::new(anchors(), Vec::new(), ValidatorConfig::default());
    let cases: &[(&str, RecordType, Rcode)] = &[
        // NSEC, Ed25519.
        ("www.nsec.test.", RecordType::A, Rcode::NOERROR),
        ("www.nsec.test.", RecordType::AAAA, Rcode::NOERROR),
        ("alias.nsec.test.", RecordType::A, Rcode::NOERROR),
        ("nothere.nsec.test.", RecordType::A, Rcode::NXDOMAIN),
        ("www.nsec.test.", RecordType::TXT, Rcode::NOERROR),
        ("ent.nsec.test.", RecordType::A, Rcode::NOERROR),
        ("anything.wild.nsec.test.", RecordType::TXT, Rcode::NOERROR),
        ("anything.wild.nsec.test.", RecordType::A, Rcode::NOERROR),
        ("nsec.test.", RecordType::DNSKEY, Rcode::NOERROR),
        ("nsec.test.", RecordType::DS, Rcode::NOERROR),
        // NSEC3 with salt and iterations, ECDSA P-384.
        ("www.nsec3.test.", RecordType::A, Rcode::NOERROR),
        ("nothere.nsec3.test.", RecordType::A, Rcode::NXDOMAIN),
        ("www.nsec3.test.", RecordType::TXT, Rcode::NOERROR),
        ("a.b.wild.nsec3.test.", RecordType::A, Rcode::NOERROR),
        ("a.wild.nsec3.test.", RecordType::AAAA, Rcode::NOERROR),
        // RSA/SHA-512; RSA/SHA-256 in test. with NSEC3 and no iterations.
        ("www.rsa.test.", RecordType::A, Rcode::NOERROR),
        ("nothere.rsa.test.", RecordType::A, Rcode::NXDOMAIN),
        ("nothere.test.", RecordType::A, Rcode::NXDOMAIN),
        ("test.", RecordType::SOA, Rcode::NOERROR),
        // Positive answers from a zone whose NSEC3 iterations are too many are fine.
        ("www.iter.test.", RecordType::A, Rcode::NOERROR),
        (".", RecordType::NS, Rcode::NOERROR),
    ];
    for (name, rtype, expected_rcode) in cases {
        let (verdict, rcode, _) = validate(&validator, knot.address(), name, *rtype, NOW);
        assert_eq!(rcode, *expected_rcode, "{name} {rtype}");
        assert_eq!(verdict.security, Security::Secure, "{name} {rtype}");
        assert!(verdict.ttl_limit.is_some_and(|ttl| ttl <= 3600), "{name} {rtype}: {verdict:?}");
    }
}

#[test]
fn insecure_delegations_and_limits() {
    let knot = Knot::signed_test_hierarchy();
    let validator = Validator::new(anchors(), Vec::new(), ValidatorConfig::default());
    let cases: &[(&str, RecordType, InsecureReason)] = &[
        ("www.insecure.test.", RecordType::A, InsecureReason::UnsignedDelegation),
        ("nothere.insecure.test.", RecordType::A, InsecureReason::UnsignedDelegation),
        ("nothere.iter.test.", RecordType::A, InsecureReason::Nsec3Iterations),
        ("www.iter.test.", RecordType::TXT, InsecureReason::Nsec3Iterations),
    ];
    for (name, rtype, reason) in cases {
        let (verdict, _, _) = validate(&validator, knot.address(), name, *rtype, NOW);
        assert_eq!(verdict.security, Security::Insecure(*reason), "{name} {rtype}");
    }
}

#[test]
fn bogus_answers_say_why() {
    let knot = Knot::signed_test_hierarchy();
    let validator = Validator::new(anchors(), Vec::new(), ValidatorConfig::default());
    let cases: &[(&str, RecordType, BogusReason, ExtendedErrorCode)] = &[
        ("www.expired.test.", RecordType::A, BogusReason::SignatureExpired, ExtendedErrorCode::SIGNATURE_EXPIRED),
        ("www.tampered.test.", RecordType::A, BogusReason::SignatureInvalid, ExtendedErrorCode::DNSSEC_BOGUS),
        ("www.nokey.test.", RecordType::A, BogusReason::DnskeyMissing, ExtendedErrorCode::DNSKEY_MISSING),
    ];
    for (name, rtype, reason, code) in cases {
        let (verdict, _, _) = validate(&validator, knot.address(), name, *rtype, NOW);
        assert_eq!(bogus_reason(&verdict), Some(*reason), "{name} {rtype}: {verdict:?}");
        assert_eq!(reason.extended_error(), *code);
        assert_eq!(verdict.ttl_limit, Some(ValidatorConfig::default().bogus_ttl));
    }
    // Twenty years on every signature has expired, the anchored root's first.
    let later = Validator::new(anchors(), Vec::new(), ValidatorConfig::default());
    let (verdict, _, _) = validate(&later, knot.address(), "www.nsec.test.", RecordType::A, 2_398_377_600);
    assert_eq!(bogus_reason(&verdict), Some(BogusReason::SignatureExpired));
    // The real root's anchor does not match this root.
    let real_root = Validator::new(TrustAnchors::root(), Vec::new(), ValidatorConfig::default());
    let (verdict, _, _) = validate(&real_root, knot.address(), "www.nsec.test.", RecordType::A, NOW);
    assert_eq!(bogus_reason(&verdict), Some(BogusReason::DnskeyMissing));
}

#[test]
fn anchors_and_insecure_domains_decide_before_any_query() {
    let knot = Knot::signed_test_hierarchy();
    let none = Validator::new(TrustAnchors::empty(), Vec::new(), ValidatorConfig::default());
    let (verdict, _, queries) = validate(&none, knot.address(), "www.tampered.test.", RecordType::A, NOW);
    assert_eq!(verdict.security, Security::Insecure(InsecureReason::NoTrustAnchor));
    assert_eq!(queries, 0);
    let domain_insecure = vec![NameBuf::from_presentation("tampered.test.").expect("name")];
    let validator = Validator::new(anchors(), domain_insecure, ValidatorConfig::default());
    let (verdict, _, queries) = validate(&validator, knot.address(), "www.tampered.test.", RecordType::A, NOW);
    assert_eq!(verdict.security, Security::Insecure(InsecureReason::DomainInsecure));
    assert_eq!(queries, 0);
}

#[test]
fn the_chain_is_cached_between_validations() {
    let knot = Knot::signed_test_hierarchy();
    let validator = Validator::new(anchors(), Vec::new(), ValidatorConfig::default());
    let (verdict, _, first) = validate(&validator, knot.address(), "www.nsec.test.", RecordType::A, NOW);
    assert_eq!(verdict.security, Security::Secure);
    // DNSKEY ., DS test., DNSKEY test., DS nsec.test., DNSKEY nsec.test.
    assert_eq!(first, 5);
    let (verdict, _, second) = validate(&validator, knot.address(), "www.nsec.test.", RecordType::AAAA, NOW);
    assert_eq!(verdict.security, Security::Secure);
    assert_eq!(second, 0);
    // After the keys' TTL (3600 s) the chain is fetched again.
    let (_, _, later) = validate(&validator, knot.address(), "www.nsec.test.", RecordType::A, NOW + 7200);
    assert_eq!(later, 5);
}
