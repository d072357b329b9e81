//! Golden vectors from tests/vectors/ (see its README.md for where each came from).

use std::collections::HashMap;
use std::path::PathBuf;

use signpost_wire::relay::truncate_for_client;
use signpost_wire::{
    EdnsOption, Error, ExtendedErrorCode, Message, MessageBuilder, OptionCode, Rcode, RecordBuf, RecordType, Section,
};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// A file under tests/vectors.
pub(crate) fn read(name: &str) -> Vec<u8> {
    std::fs::read(vectors_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

struct Expectation {
    file: String,
    outcome: String,
    fields: HashMap<String, String>,
}

fn expectations() -> Vec<Expectation> {
    let text = std::fs::read_to_string(vectors_dir().join("expectations.txt")).expect("expectations.txt");
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let file = words.next().expect("file").to_string();
            let outcome = match words.next().expect("outcome") {
                "ok" => "ok".to_string(),
                "error" => words.next().expect("variant").to_string(),
                other => panic!("bad outcome {other}"),
            };
            let fields = words
                .map(|word| {
                    let (key, value) = word.split_once('=').expect("key=value");
                    (key.to_string(), value.to_string())
                })
                .collect();
            Expectation { file, outcome, fields }
        })
        .collect()
}

fn section(text: &str) -> Section {
    match text {
        "question" => Section::Question,
        "answer" => Section::Answer,
        "authority" => Section::Authority,
        "additional" => Section::Additional,
        other => panic!("bad section {other}"),
    }
}

fn expected_error(expectation: &Expectation) -> Error {
    let number = |key: &str| -> usize {
        expectation.fields.get(key).unwrap_or_else(|| panic!("{}: no {key}", expectation.file)).parse().expect("number")
    };
    match expectation.outcome.as_str() {
        "ShortHeader" => Error::ShortHeader { len: number("len") },
        "UnexpectedEnd" => Error::UnexpectedEnd { offset: number("offset"), needed: number("needed") },
        "MissingRecords" => Error::MissingRecords {
            section: section(&expectation.fields["section"]),
            expected: number("expected") as u16,
            found: number("found") as u16,
            offset: number("offset"),
        },
        "TrailingData" => Error::TrailingData { offset: number("offset"), len: number("len") },
        "LabelTooLong" => Error::LabelTooLong { offset: number("offset"), len: number("len") },
        "NameTooLong" => Error::NameTooLong { offset: number("offset") },
        "ForwardPointer" => Error::ForwardPointer { offset: number("offset"), target: number("target") },
        "TooManyPointers" => Error::TooManyPointers { offset: number("offset") },
        "ReservedLabelType" => {
            Error::ReservedLabelType { offset: number("offset"), label_type: number("label_type") as u8 }
        }
        "RdataLength" => Error::RdataLength {
            rtype: expectation.fields["rtype"].parse().expect("type"),
            offset: number("offset"),
            rdlength: number("rdlength"),
            used: number("used"),
        },
        "DuplicateOpt" => Error::DuplicateOpt { offset: number("offset") },
        "MisplacedOpt" => Error::MisplacedOpt { offset: number("offset") },
        other => panic!("{}: unknown variant {other}", expectation.file),
    }
}

/// Parse, walk and fully check a message; the first error found.
fn full_check(bytes: &[u8]) -> Result<Message<'_>, Error> {
    let message = Message::parse(bytes)?;
    message.check()?;
    Ok(message)
}

#[test]
fn every_vector_gives_its_expected_outcome() {
    let expectations = expectations();
    assert!(expectations.len() >= 90, "expectations.txt lists {} files", expectations.len());
    let mut files_on_disk: Vec<String> = std::fs::read_dir(vectors_dir())
        .expect("dir")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".bin"))
        .collect();
    files_on_disk.sort();
    let mut listed: Vec<String> = expectations.iter().map(|e| e.file.clone()).collect();
    listed.sort();
    assert_eq!(files_on_disk, listed, "every .bin file has exactly one expectation");

    for expectation in &expectations {
        let bytes = read(&expectation.file);
        let result = full_check(&bytes);
        if expectation.outcome == "ok" {
            let message = result.unwrap_or_else(|e| panic!("{}: {e}", expectation.file));
            let header = message.header();
            let counts = [header.qdcount, header.ancount, header.nscount, header.arcount];
            let expected: Vec<u16> =
                ["qd", "an", "ns", "ar"].iter().map(|key| expectation.fields[*key].parse().expect("count")).collect();
            assert_eq!(counts.to_vec(), expected, "{}", expectation.file);
            walk_and_round_trip(&expectation.file, &message);
        } else {
            let error = result.err().unwrap_or_else(|| panic!("{} parsed but should fail", expectation.file));
            assert_eq!(error, expected_error(expectation), "{}", expectation.file);
        }
    }
}

/// Every record's presentation form parses back to the same record, the
/// message rebuilt with our builder has the same records, and a 512-byte
/// truncation of it is still a valid message.
fn walk_and_round_trip(file: &str, message: &Message<'_>) {
    let records = owned_records(message);
    for (_, owned) in &records {
        let text = owned.to_string();
        let parsed: RecordBuf = text.parse().unwrap_or_else(|e| panic!("{file}: {text}: {e}"));
        assert_eq!(&parsed, owned, "{file}: {text}");
    }

    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::new(&mut buffer).expect("header");
    builder.set_id(message.id());
    builder.set_flags(message.flags());
    for question in message.questions() {
        let question = question.expect("valid");
        builder.push_question(&question.name(), question.qtype(), question.qclass()).expect("fits");
    }
    for record in message.records().expect("valid") {
        let record = record.expect("valid");
        builder.push_record(record.section(), &record).expect("fits");
    }
    builder.finish().expect("done");
    let rebuilt = Message::parse(&buffer).expect("header");
    rebuilt.check().unwrap_or_else(|e| panic!("{file}: rebuilt: {e}"));
    assert_eq!(owned_records(&rebuilt), records, "{file}");
    assert!(buffer.len() <= message.as_bytes().len() + 64, "{file}: our compression is much worse");

    let mut cut = Vec::new();
    let result = truncate_for_client(message.as_bytes(), 512, &mut cut).expect("truncates");
    assert!(result.len <= 512);
    full_check(&cut).unwrap_or_else(|e| panic!("{file}: truncated copy: {e}"));
}

/// Every record of a valid message with its section, owned.
fn owned_records(message: &Message<'_>) -> Vec<(Section, RecordBuf)> {
    let records = message.records().expect("valid").map(|record| record.expect("valid"));
    records.map(|record| (record.section(), RecordBuf::from_record(&record).expect("valid data"))).collect()
}

fn answers_text(file: &str) -> Vec<String> {
    let bytes = read(file);
    let message = full_check(&bytes).expect("valid");
    message
        .answers()
        .expect("valid")
        .map(|r| RecordBuf::from_record(&r.expect("valid")).expect("valid").to_string())
        .collect()
}

#[test]
fn typical_response_reads_as_unbound_sent_it() {
    let target = "www-example-com.edge-frontend.eu-west-1.global-lb.cdn.example.com.";
    assert_eq!(
        answers_text("typical_cname_3a.response.bin"),
        [
            format!("www.example.com. 300 IN CNAME {target}"),
            format!("{target} 300 IN A 192.0.2.10"),
            format!("{target} 300 IN A 192.0.2.11"),
            format!("{target} 300 IN A 192.0.2.12"),
        ]
    );
}

#[test]
fn svcb_and_https_parameters_are_typed() {
    assert_eq!(
        answers_text("rr_svcb.response.bin"),
        [
            "svc.example. 3600 IN SVCB 1 svc1.example. alpn=\"h2,h3\" port=8443 key667=\"hello\"",
            "svc.example. 3600 IN SVCB 2 . ipv4hint=192.0.2.7",
        ]
    );
    assert_eq!(
        answers_text("rr_https.response.bin"),
        ["https.example. 3600 IN HTTPS 1 . mandatory=alpn,ipv4hint alpn=\"h2,h3\" no-default-alpn port=8443 \
          ipv4hint=192.0.2.1,192.0.2.2 ech=AEX+DQBBpQAgACB/RRIm ipv6hint=2001:db8::1,2001:db8::2"]
    );
}

#[test]
fn strings_and_opaque_types_survive() {
    assert_eq!(
        answers_text("rr_txt.response.bin"),
        [
            "txt.example. 3600 IN TXT \"hello world\" \"say \\\"hi\\\"\" \"back\\\\slash\" \"semi;colon\" \"\\000\\001\\255\\254bin\" \"\""
        ]
    );
    assert_eq!(answers_text("rr_type65280.response.bin"), ["priv.example. 3600 IN TYPE65280 \\# 6 010203ff00fe"]);
    let caa = answers_text("rr_caa.response.bin");
    assert!(caa.contains(&"caa.example. 3600 IN CAA 128 tbs \"Unknown\"".to_string()), "{caa:?}");
    let naptr = answers_text("rr_naptr.response.bin");
    assert_eq!(naptr[1], "naptr.example. 3600 IN NAPTR 102 10 \"S\" \"SIP+D2U\" \"\" _sip._udp.example.");
    let ds = answers_text("rr_ds.response.bin");
    assert!(ds[0].starts_with("sec.example. 3600 IN DS \\# 36 30390d027bc28361"), "{ds:?}");
}

#[test]
fn unusual_names_keep_their_bytes_and_case() {
    assert_eq!(answers_text("name_escaped_dot.response.bin"), ["a\\.b.example. 3600 IN A 192.0.2.10"]);
    assert_eq!(answers_text("name_binary_label.response.bin"), ["\\000\\255bin.example. 3600 IN A 192.0.2.11"]);
    let bytes = read("name_255.response.bin");
    let message = full_check(&bytes).expect("valid");
    let question = message.first_question().expect("ok").expect("one");
    assert_eq!(question.name().wire_len(), 255);
    let bytes = read("name_mixed_case.response.bin");
    let message = full_check(&bytes).expect("valid");
    assert_eq!(message.first_question().expect("ok").expect("one").name().to_string(), "wWw.ExAmPlE.cOm.");
}

#[test]
fn edns_options_are_typed() {
    let bytes = read("edns_ecs_v4.query.bin");
    let edns = full_check(&bytes).expect("valid").edns().expect("ok").expect("OPT");
    let Some(EdnsOption::ClientSubnet(subnet)) = edns.option(OptionCode::CLIENT_SUBNET) else { panic!("no ECS") };
    assert_eq!(subnet.address().to_string(), "192.0.2.0");
    assert_eq!(subnet.source_prefix, 24);

    let bytes = read("edns_cookie.query.bin");
    let edns = full_check(&bytes).expect("valid").edns().expect("ok").expect("OPT");
    assert!(matches!(edns.option(OptionCode::COOKIE), Some(EdnsOption::Cookie(cookie)) if cookie.server.is_empty()));

    let bytes = read("edns_ede_prohibited.response.bin");
    let message = full_check(&bytes).expect("valid");
    assert_eq!(message.rcode(), Ok(Rcode::REFUSED));
    let edns = message.edns().expect("ok").expect("OPT");
    let Some(EdnsOption::ExtendedError(error)) = edns.option(OptionCode::EXTENDED_ERROR) else { panic!("no EDE") };
    assert_eq!(error.info_code, ExtendedErrorCode::PROHIBITED);

    let bytes = read("edns_badvers.response.bin");
    assert_eq!(full_check(&bytes).expect("valid").rcode(), Ok(Rcode::BADVERS));
    let bytes = read("edns_badvers.query.bin");
    assert_eq!(full_check(&bytes).expect("valid").edns().expect("ok").expect("OPT").version(), 1);

    let bytes = read("rr_dnskey_do.query.bin");
    assert!(full_check(&bytes).expect("valid").edns().expect("ok").expect("OPT").dnssec_ok());

    let bytes = read("edns_nsid.response.bin");
    let edns = full_check(&bytes).expect("valid").edns().expect("ok").expect("OPT");
    assert_eq!(edns.option(OptionCode::NSID), Some(EdnsOption::Nsid(b"signpost-unbound")));

    let bytes = read("edns_padding_kdig.query.bin");
    let edns = full_check(&bytes).expect("valid").edns().expect("ok").expect("OPT");
    assert!(matches!(edns.option(OptionCode::PADDING), Some(EdnsOption::Padding(_))));
}

#[test]
fn negative_answers_carry_the_soa() {
    for file in ["nxdomain.response.bin", "nodata.response.bin"] {
        let bytes = read(file);
        let message = full_check(&bytes).expect("valid");
        let soa = message.authority().expect("ok").next().expect("SOA").expect("valid");
        assert_eq!(soa.rtype(), RecordType::SOA);
        assert_eq!(
            soa.data().expect("valid").to_string(),
            "ns1.example. hostmaster.example. 2024010101 7200 900 1209600 300"
        );
    }
    let bytes = read("nxdomain.response.bin");
    assert_eq!(Message::parse(&bytes).expect("header").rcode(), Ok(Rcode::NXDOMAIN));
}
