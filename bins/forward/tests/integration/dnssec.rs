//! DNSSEC validation end to end: the forwarder in front of Knot DNS serving
//! the signed test hierarchy of crates/dnssec/tests/zones on loopback, with
//! that hierarchy's root key as the trust anchor.

use std::path::{Path, PathBuf};
use std::time::Duration;

use signpost_testkit::{Knot, Query, udp_exchange};
use signpost_wire::{EdnsHeader, EdnsOption, ExtendedErrorCode, Message, OptionCode, Rcode, RecordType};

use crate::support::{start_in, udp};

fn zone_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/dnssec/tests/zones")
}

/// What a client sees: RCODE, AD, the answer's types and the extended error.
#[derive(Debug)]
struct Seen {
    rcode: Rcode,
    ad: bool,
    types: Vec<RecordType>,
    extended: Option<(ExtendedErrorCode, String)>,
}

async fn query(server: std::net::SocketAddr, name: &str, qtype: RecordType, dnssec_ok: bool, cd: bool) -> Seen {
    query_flags(server, name, qtype, dnssec_ok, if cd { 0x10 } else { 0 }).await
}

/// [`query`] with these bits of the header's fourth octet set (0x10 CD, 0x20 AD).
async fn query_flags(server: std::net::SocketAddr, name: &str, qtype: RecordType, dnssec_ok: bool, bits: u8) -> Seen {
    let mut bytes =
        Query::new(name, qtype).edns(EdnsHeader { udp_payload_size: 1232, version: 0, dnssec_ok }).to_bytes();
    bytes[3] |= bits;
    let response = udp_exchange(server, &bytes, Duration::from_secs(5)).await.expect("an answer");
    let message = Message::parse(&response).expect("parses");
    let types = message.answers().expect("answers").map(|record| record.expect("record").rtype()).collect();
    let extended = message.edns().expect("edns").and_then(|edns| match edns.option(OptionCode::EXTENDED_ERROR) {
        Some(EdnsOption::ExtendedError(error)) => {
            Some((error.info_code, String::from_utf8_lossy(error.extra_text).into_owned()))
        }
        _ => None,
    });
    Seen { rcode: message.rcode().expect("rcode"), ad: message.flags().ad(), types, extended }
}

#[tokio::test]
async fn answers_get_ad_only_when_proven_and_bogus_ones_say_why() {
    let dir = zone_dir();
    let knot = tokio::task::spawn_blocking(move || Knot::serve_signed_zones(&dir))
        .await
        .expect("joined")
        .unwrap_or_else(|error| panic!("knotd (Debian package knot) must run: {error}"));
    let anchor = zone_dir().join("anchor.key");
    let toml = format!(
        "[[forward_zones]]\nname = \".\"\nservers = [\"{}\"]\n\n[dnssec]\nvalidate = true\ntrust_anchor_files = [{:?}]\n",
        knot.address(),
        anchor.display().to_string(),
    );
    let server = start_in(&toml, Path::new(".")).await;
    let address = udp(&server);

    // Secure, with signatures for a DO client.
    let seen = query(address, "www.nsec.test.", RecordType::A, true, false).await;
    assert_eq!((seen.rcode, seen.ad), (Rcode::NOERROR, true), "{seen:?}");
    assert_eq!(seen.types, [RecordType::A, RecordType::RRSIG]);
    // The same from the cache.
    let seen = query(address, "www.nsec.test.", RecordType::A, true, false).await;
    assert_eq!((seen.rcode, seen.ad), (Rcode::NOERROR, true), "{seen:?}");
    // Without DO: no signatures, no AD.
    let seen = query(address, "www.nsec.test.", RecordType::A, false, false).await;
    assert_eq!(
        (seen.rcode, seen.ad, seen.types.as_slice()),
        (Rcode::NOERROR, false, [RecordType::A].as_slice()),
        "{seen:?}"
    );

    // Proven denials and a wildcard.
    for (name, qtype, rcode) in [
        ("nothere.nsec3.test.", RecordType::A, Rcode::NXDOMAIN),
        ("www.nsec.test.", RecordType::TXT, Rcode::NOERROR),
        ("x.wild.nsec.test.", RecordType::TXT, Rcode::NOERROR),
        ("www.rsa.test.", RecordType::A, Rcode::NOERROR),
    ] {
        let seen = query(address, name, qtype, true, false).await;
        assert_eq!((seen.rcode, seen.ad), (rcode, true), "{name} {qtype}: {seen:?}");
    }

    // Insecure: answered, no AD.
    for name in ["www.insecure.test.", "nothere.iter.test."] {
        let seen = query(address, name, RecordType::A, true, false).await;
        assert!(!seen.ad && seen.rcode != Rcode::SERVFAIL, "{name}: {seen:?}");
    }

    // Bogus: SERVFAIL with the reason.
    for (name, code, words) in [
        ("www.tampered.test.", ExtendedErrorCode::DNSSEC_BOGUS, "signature does not verify"),
        ("www.expired.test.", ExtendedErrorCode::SIGNATURE_EXPIRED, "signature expired"),
        ("www.nokey.test.", ExtendedErrorCode::DNSKEY_MISSING, "no DNSKEY matches"),
    ] {
        let seen = query(address, name, RecordType::A, true, false).await;
        assert_eq!(seen.rcode, Rcode::SERVFAIL, "{name}: {seen:?}");
        let (got, text) = seen.extended.expect("an extended error");
        assert_eq!(got, code, "{name}: {text}");
        assert!(text.contains(words), "{name}: {text}");
    }

    // The cache keeps the verdict: a client that sets AD (no DO) is shown AD
    // from the cached copy, one that sets neither is not, from the same entry.
    for (bits, ad) in [(0x20, true), (0x20, true), (0, false), (0x20, true)] {
        let seen = query_flags(address, "www.nsec.test.", RecordType::AAAA, false, bits).await;
        assert_eq!((seen.rcode, seen.ad), (Rcode::NOERROR, ad), "bits {bits:#x}: {seen:?}");
    }
    // A bogus verdict is cached too (val-bogus-ttl): asked again, answered without asking.
    let hits = server.cache_stats().hits();
    let seen = query(address, "www.tampered.test.", RecordType::A, true, false).await;
    assert_eq!(seen.rcode, Rcode::SERVFAIL, "{seen:?}");
    assert_eq!(seen.extended.map(|(code, _)| code), Some(ExtendedErrorCode::DNSSEC_BOGUS));
    assert_eq!(server.cache_stats().hits(), hits + 1, "the bogus answer came from the cache");
    // The decision trace (and so the JSON query log) says what validation decided.
    let client: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
    for (name, verdict) in
        [("www.nsec.test.", "secure"), ("www.insecure.test.", "insecure"), ("www.tampered.test.", "bogus")]
    {
        let trace =
            server.explain(&name.parse().expect("name"), RecordType::A, client, signpost_rules::Transport::Udp).await;
        assert_eq!(trace.dnssec.as_deref(), Some(verdict), "{name}: {trace:?}");
    }

    // CD: the client validates itself and gets the data as served.
    let seen = query(address, "www.tampered.test.", RecordType::A, true, true).await;
    assert_eq!((seen.rcode, seen.ad), (Rcode::NOERROR, false), "{seen:?}");
    assert_eq!(seen.types, [RecordType::A, RecordType::RRSIG]);
    server.shutdown().await;
}
