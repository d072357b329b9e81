//! DNSSEC validation end to end: the forwarder in front of Knot DNS serving
//! the signed test hierarchy of crates/dnssec/tests/zones on loopback, with
//! that hierarchy's root key as the trust anchor.

use std::path::Path;
use std::time::Duration;

use signpost_testkit::{Answer, FakeUpstream, Knot, Query, TempDir, signed_test_zones, udp_exchange};
use signpost_wire::{EdnsHeader, EdnsOption, ExtendedErrorCode, Message, OptionCode, Rcode, RecordType};

use crate::support::{start_in, udp};

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

/// Configuration forwarding every name to `upstream` and validating with
/// the signed test hierarchy's trust anchor.
fn validating_everything_to(upstream: std::net::SocketAddr) -> String {
    let anchor = signed_test_zones().join("anchor.key");
    format!(
        "[[forward_zones]]\nname = \".\"\nservers = [\"{upstream}\"]\n\n[dnssec]\nvalidate = true\ntrust_anchor_files = [{:?}]\n",
        anchor.display().to_string(),
    )
}

#[tokio::test]
async fn answers_get_ad_only_when_proven_and_bogus_ones_say_why() {
    let knot = Knot::start_signed_test_hierarchy().await;
    let toml = validating_everything_to(knot.address());
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

/// What a DO client sees of a negative answer: RCODE, AD and the authority section's types.
async fn negative(
    server: std::net::SocketAddr,
    name: &str,
    qtype: RecordType,
    dnssec_ok: bool,
) -> (Rcode, bool, Vec<RecordType>) {
    let bytes = Query::new(name, qtype).edns(EdnsHeader { udp_payload_size: 1232, version: 0, dnssec_ok }).to_bytes();
    let response = udp_exchange(server, &bytes, Duration::from_secs(5)).await.expect("an answer");
    let message = Message::parse(&response).expect("parses");
    let authority = message.authority().expect("authority").map(|record| record.expect("record").rtype()).collect();
    (message.rcode().expect("rcode"), message.flags().ad(), authority)
}

/// A relay in front of Knot that counts every query the forwarder sends upstream.
async fn counting_relay(knot: std::net::SocketAddr) -> FakeUpstream {
    FakeUpstream::builder()
        .otherwise(Answer::with(move |message, _| {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
            socket.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            socket.send_to(message.as_bytes(), knot).ok()?;
            let mut buffer = vec![0; 65_535];
            let (len, _) = socket.recv_from(&mut buffer).ok()?;
            buffer.truncate(len);
            Some(buffer)
        }))
        .udp()
        .start()
        .await
        .expect("the relay starts on loopback")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validated_nsec_records_answer_names_they_cover_without_asking_upstream() {
    let knot = Knot::start_signed_test_hierarchy().await;
    let relay = counting_relay(knot.address()).await;
    let toml = validating_everything_to(relay.address());
    let server = start_in(&toml, Path::new(".")).await;
    let address = udp(&server);

    // b.nsec.test. does not exist: NSEC alias -> host.ent covers it, NSEC nsec.test. -> alias the wildcard.
    let (rcode, ad, authority) = negative(address, "b.nsec.test.", RecordType::A, true).await;
    assert_eq!((rcode, ad), (Rcode::NXDOMAIN, true), "{authority:?}");
    let asked = relay.query_count();
    assert!(asked > 1, "the first answer and its chain came from upstream ({asked} queries)");

    // c.nsec.test. lies under the same NSEC records: NXDOMAIN, proven, nobody asked.
    let (rcode, ad, authority) = negative(address, "c.nsec.test.", RecordType::A, true).await;
    assert_eq!((rcode, ad), (Rcode::NXDOMAIN, true), "{authority:?}");
    assert!(authority.contains(&RecordType::SOA) && authority.contains(&RecordType::NSEC), "{authority:?}");
    assert!(authority.contains(&RecordType::RRSIG), "{authority:?}");
    assert_eq!(relay.query_count(), asked, "synthesised from the cache, not asked upstream");
    // Without DO: the same NXDOMAIN, without the DNSSEC records or AD.
    let (rcode, ad, authority) = negative(address, "d.nsec.test.", RecordType::A, false).await;
    assert_eq!((rcode, ad, authority.as_slice()), (Rcode::NXDOMAIN, false, [RecordType::SOA].as_slice()));
    assert_eq!(relay.query_count(), asked);

    // NODATA: the NSEC at www.nsec.test. (A AAAA) denies TXT, then MX without asking.
    let (rcode, ad, _) = negative(address, "www.nsec.test.", RecordType::TXT, true).await;
    assert_eq!((rcode, ad), (Rcode::NOERROR, true));
    let asked = relay.query_count();
    let (rcode, ad, authority) = negative(address, "www.nsec.test.", RecordType::MX, true).await;
    assert_eq!((rcode, ad), (Rcode::NOERROR, true), "{authority:?}");
    assert_eq!(relay.query_count(), asked, "NODATA synthesised from the cache");
    // A type the NSEC lists is asked for, of course.
    let seen = query(address, "www.nsec.test.", RecordType::AAAA, true, false).await;
    assert_eq!((seen.rcode, seen.ad), (Rcode::NOERROR, true), "{seen:?}");
    assert_eq!(relay.query_count(), asked + 1);
    // The trace says where the answer came from.
    let client: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
    let trace = server
        .explain(&"e.nsec.test.".parse().expect("name"), RecordType::A, client, signpost_rules::Transport::Udp)
        .await;
    assert!(trace.notes.iter().any(|note| note.contains("RFC 8198")), "{trace:?}");
    server.shutdown().await;

    // aggressive_nsec = false (unbound's aggressive-nsec: no): every name is asked.
    let server = start_in(&format!("{toml}aggressive_nsec = false\n"), Path::new(".")).await;
    let address = udp(&server);
    negative(address, "b.nsec.test.", RecordType::A, true).await;
    let asked = relay.query_count();
    let (rcode, ad, _) = negative(address, "c.nsec.test.", RecordType::A, true).await;
    assert_eq!((rcode, ad), (Rcode::NXDOMAIN, true));
    assert_eq!(relay.query_count(), asked + 1, "asked upstream");
    server.shutdown().await;
}

#[tokio::test]
async fn auto_trust_anchor_files_are_tracked_and_written_back_in_unbounds_format() {
    let knot = Knot::start_signed_test_hierarchy().await;
    // As unbound-anchor first writes it: the root's DS, no state.
    let temp = TempDir::new();
    let ds = std::fs::read_to_string(signed_test_zones().join("anchor.key")).expect("anchor.key");
    let root_key = temp.write("root.key", &ds);
    let toml = format!(
        "[[forward_zones]]\nname = \".\"\nservers = [\"{}\"]\n\n[dnssec]\nvalidate = true\nauto_trust_anchor_files = [{:?}]\n",
        knot.address(),
        root_key.display().to_string(),
    );
    let server = start_in(&toml, Path::new(".")).await;
    let seen = query(udp(&server), "www.nsec.test.", RecordType::A, true, false).await;
    assert_eq!((seen.rcode, seen.ad), (Rcode::NOERROR, true), "{seen:?}");
    server.shutdown().await;

    // The DS became the key it names, VALID, in unbound's format.
    let text = std::fs::read_to_string(&root_key).expect("root.key");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"; autotrust trust anchor file"), "{text}");
    assert!(lines.contains(&";;id: . 1"), "{text}");
    let keys: Vec<&&str> = lines.iter().filter(|line| line.contains("\tDNSKEY\t")).collect();
    assert_eq!(keys.len(), 1, "{text}");
    assert!(keys[0].contains(";{id = 36589 (ksk)") && keys[0].contains(";;state=2 [  VALID  ]"), "{text}");
    assert!(!text.contains(" DS "), "{text}");
    let leftovers: Vec<_> = std::fs::read_dir(temp.path()).expect("list").collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left behind");

    // Read back at the next start, it still validates.
    let server = start_in(&toml, Path::new(".")).await;
    let seen = query(udp(&server), "www.nsec.test.", RecordType::A, true, false).await;
    assert_eq!((seen.rcode, seen.ad), (Rcode::NOERROR, true), "{seen:?}");
    server.shutdown().await;
}
