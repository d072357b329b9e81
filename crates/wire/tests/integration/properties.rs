//! Property tests: build-then-parse gives back the message, presentation
//! format round-trips, and arbitrary bytes never panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use signpost_wire::{
    Buffer, Caa, Class, ClientSubnet, Cookie, EdnsHeader, EdnsOption, ExtendedError, ExtendedErrorCode, Flags, Message,
    MessageBuilder, Mx, NameBuf, Naptr, OptionCode, RDataBuf, RecordBuf, RecordData, RecordType, Section, SliceBuffer,
    Soa, Srv, Svcb, Txt, Unknown, fuzzing, write_query,
};

fn label() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(prop_oneof![b'a'..=b'z', b'A'..=b'Z', b'0'..=b'9', Just(b'-')], 1..12),
        1 => proptest::collection::vec(any::<u8>(), 1..64),
    ]
}

fn name() -> impl Strategy<Value = NameBuf> {
    proptest::collection::vec(label(), 0..6).prop_map(|labels| {
        let mut name = NameBuf::root();
        for label in labels.iter().rev() {
            match name.prepend(label) {
                Ok(longer) => name = longer,
                Err(_) => break,
            }
        }
        name
    })
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn svcb_params() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::option::of(proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..8), 1..4)),
        proptest::option::of(any::<u16>()),
        proptest::option::of(proptest::collection::vec(any::<[u8; 4]>(), 1..3)),
        proptest::option::of(bytes(10)),
    )
        .prop_map(|(alpn, port, v4, unknown)| {
            let mut wire = Vec::new();
            let mut push = |key: u16, value: &[u8]| {
                wire.extend_from_slice(&key.to_be_bytes());
                wire.extend_from_slice(&(value.len() as u16).to_be_bytes());
                wire.extend_from_slice(value);
            };
            if let Some(ids) = alpn {
                let value: Vec<u8> =
                    ids.iter().flat_map(|id| std::iter::once(id.len() as u8).chain(id.clone())).collect();
                push(1, &value);
            }
            if let Some(port) = port {
                push(3, &port.to_be_bytes());
            }
            if let Some(addrs) = v4 {
                push(4, &addrs.concat());
            }
            if let Some(value) = unknown {
                push(667, &value);
            }
            wire
        })
}

fn rdata() -> impl Strategy<Value = RDataBuf> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| RDataBuf::A(Ipv4Addr::from(a))),
        any::<[u8; 16]>().prop_map(|a| RDataBuf::Aaaa(Ipv6Addr::from(a))),
        name().prop_map(RDataBuf::Ns),
        name().prop_map(RDataBuf::Cname),
        name().prop_map(RDataBuf::Dname),
        name().prop_map(RDataBuf::Ptr),
        (any::<u16>(), name()).prop_map(|(preference, exchange)| RDataBuf::Mx(Mx { preference, exchange })),
        proptest::collection::vec(bytes(40), 1..4)
            .prop_map(|strings| RDataBuf::Txt(Txt::from_strings(strings).expect("short strings"))),
        (name(), name(), any::<[u32; 5]>()).prop_map(|(mname, rname, n)| RDataBuf::Soa(Soa {
            mname,
            rname,
            serial: n[0],
            refresh: n[1],
            retry: n[2],
            expire: n[3],
            minimum: n[4]
        })),
        (any::<[u16; 3]>(), name()).prop_map(|(n, target)| RDataBuf::Srv(Srv {
            priority: n[0],
            weight: n[1],
            port: n[2],
            target
        })),
        (any::<u8>(), proptest::collection::vec(prop_oneof![b'a'..=b'z', b'0'..=b'9'], 1..15), bytes(30))
            .prop_map(|(flags, tag, value)| RDataBuf::Caa(Caa { flags, tag, value })),
        (any::<[u16; 2]>(), bytes(8), bytes(8), bytes(20), name()).prop_map(
            |(n, flags, services, regexp, replacement)| RDataBuf::Naptr(Naptr {
                order: n[0],
                preference: n[1],
                flags,
                services,
                regexp,
                replacement
            })
        ),
        (1..u16::MAX, name(), svcb_params()).prop_map(|(priority, target, params)| RDataBuf::Https(
            Svcb::new(priority, target, params).expect("valid")
        )),
        // Plain SVCB: alias mode (priority 0, no parameters) or service mode.
        prop_oneof![name().prop_map(|target| (0, target, Vec::new())), (1..=u16::MAX, name(), svcb_params()),]
            .prop_map(|(priority, target, params)| RDataBuf::Svcb(Svcb::new(priority, target, params).expect("valid"))),
        (prop_oneof![Just(43u16), Just(46), Just(48), Just(52), Just(65280), Just(99)], bytes(40))
            .prop_map(|(rtype, data)| RDataBuf::Unknown(Unknown { rtype: RecordType(rtype), data })),
    ]
}

fn record() -> impl Strategy<Value = RecordBuf> {
    (name(), any::<u32>(), rdata()).prop_map(|(name, ttl, data)| RecordBuf::new(name, ttl, data))
}

/// An EDNS option as the test generates it: owned, so a `Sample` can hold
/// it; [`OptionSample::as_option`] lends it to the builder and the comparison.
#[derive(Debug, Clone)]
enum OptionSample {
    ClientSubnet { family: u16, source_prefix: u8, scope_prefix: u8, address: Vec<u8> },
    Cookie { client: [u8; 8], server: Vec<u8> },
    Padding(usize),
    ExtendedError { info_code: u16, extra_text: Vec<u8> },
    Unknown { code: u16, data: Vec<u8> },
}

impl OptionSample {
    fn as_option(&self) -> EdnsOption<'_> {
        match self {
            Self::ClientSubnet { family, source_prefix, scope_prefix, address } => {
                EdnsOption::ClientSubnet(ClientSubnet {
                    family: *family,
                    source_prefix: *source_prefix,
                    scope_prefix: *scope_prefix,
                    address,
                })
            }
            Self::Cookie { client, server } => EdnsOption::Cookie(Cookie { client: *client, server }),
            Self::Padding(len) => EdnsOption::padding(*len),
            Self::ExtendedError { info_code, extra_text } => {
                EdnsOption::ExtendedError(ExtendedError { info_code: ExtendedErrorCode(*info_code), extra_text })
            }
            Self::Unknown { code, data } => EdnsOption::Unknown { code: OptionCode(*code), data },
        }
    }
}

/// A client subnet option with a family, prefixes within the address
/// length, only as many address octets as the source prefix needs, and the
/// bits past the prefix cleared (RFC 7871 §6).
fn client_subnet() -> impl Strategy<Value = OptionSample> {
    prop_oneof![Just((1u16, 32u8)), Just((2, 128))]
        .prop_flat_map(|(family, max_prefix)| (Just(family), 0..=max_prefix, 0..=max_prefix, any::<[u8; 16]>()))
        .prop_map(|(family, source_prefix, scope_prefix, octets)| {
            let len = usize::from(source_prefix).div_ceil(8);
            let mut address = octets.get(..len).unwrap_or_default().to_vec();
            let spare_bits = len * 8 - usize::from(source_prefix);
            if let Some(last) = address.last_mut() {
                *last &= 0xffu8 << spare_bits;
            }
            OptionSample::ClientSubnet { family, source_prefix, scope_prefix, address }
        })
}

fn edns_option() -> impl Strategy<Value = OptionSample> {
    prop_oneof![
        client_subnet(),
        // A client cookie alone, or with a server cookie of 8 to 32 octets (RFC 7873 §4).
        (any::<[u8; 8]>(), prop_oneof![Just(Vec::new()), proptest::collection::vec(any::<u8>(), 8..=32)])
            .prop_map(|(client, server)| OptionSample::Cookie { client, server }),
        (0usize..=128).prop_map(OptionSample::Padding),
        (any::<u16>(), proptest::collection::vec(prop_oneof![b' '..=b'~'], 0..40))
            .prop_map(|(info_code, extra_text)| OptionSample::ExtendedError { info_code, extra_text }),
        // Codes the crate has no type for: unassigned, and local/experimental use.
        (prop_oneof![Just(20u16), Just(1000), 65001..=65534u16], bytes(30))
            .prop_map(|(code, data)| OptionSample::Unknown { code, data }),
    ]
}

/// The OPT record a sample asks for: header fields and options in order.
#[derive(Debug, Clone)]
struct EdnsSample {
    header: EdnsHeader,
    options: Vec<OptionSample>,
}

fn edns() -> impl Strategy<Value = EdnsSample> {
    (any::<u16>(), any::<bool>(), proptest::collection::vec(edns_option(), 0..6)).prop_map(
        |(udp_payload_size, dnssec_ok, options)| EdnsSample {
            header: EdnsHeader { udp_payload_size, version: 0, dnssec_ok },
            options,
        },
    )
}

#[derive(Debug, Clone)]
struct Sample {
    id: u16,
    flags: u16,
    question: (NameBuf, u16),
    sections: Vec<(Section, RecordBuf)>,
    edns: Option<EdnsSample>,
}

fn sample() -> impl Strategy<Value = Sample> {
    (
        any::<u16>(),
        any::<u16>(),
        (name(), any::<u16>()),
        proptest::collection::vec(record(), 0..5),
        proptest::collection::vec(record(), 0..3),
        proptest::collection::vec(record(), 0..3),
        proptest::option::of(edns()),
    )
        .prop_map(|(id, flags, question, answers, authority, additional, edns)| {
            let sections = answers
                .into_iter()
                .map(|r| (Section::Answer, r))
                .chain(authority.into_iter().map(|r| (Section::Authority, r)))
                .chain(additional.into_iter().map(|r| (Section::Additional, r)))
                .collect();
            Sample { id, flags, question, sections, edns }
        })
}

fn build(sample: &Sample) -> Vec<u8> {
    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::new(&mut buffer).expect("header");
    builder.set_id(sample.id);
    builder.set_flags(Flags(sample.flags));
    if let Some(edns) = &sample.edns {
        builder.set_edns(edns.header);
        for option in &edns.options {
            builder.push_edns_option(&option.as_option()).expect("fits");
        }
    }
    builder.push_question(&sample.question.0, RecordType(sample.question.1), Class::IN).expect("fits");
    for (section, record) in &sample.sections {
        builder.push_record_buf(*section, record).expect("fits");
    }
    builder.finish().expect("done");
    buffer
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    /// `write_query` writes what the builder writes for a query: the same
    /// header, question and OPT record, byte for byte, after a prefix (a
    /// TCP length) and into a buffer too small for it (an error, nothing left).
    #[test]
    fn write_query_matches_the_builder(sample in sample(), prefix in 0usize..3) {
        let query = Sample { sections: Vec::new(), ..sample };
        let built = build(&query);
        let options: Vec<EdnsOption<'_>> =
            query.edns.iter().flat_map(|edns| edns.options.iter().map(OptionSample::as_option)).collect();
        let edns = query.edns.as_ref().map(|edns| (edns.header, options.as_slice()));
        let question = (&query.question.0, RecordType(query.question.1), Class::IN);
        let mut written = vec![0xaa; prefix];
        let len = write_query(&mut written, query.id, Flags(query.flags), question, edns).expect("fits");
        prop_assert_eq!(len, built.len());
        prop_assert_eq!(&written[prefix..], &built[..]);
        let mut room = vec![0u8; built.len() - 1];
        let mut short = SliceBuffer::new(&mut room);
        prop_assert!(write_query(&mut short, query.id, Flags(query.flags), question, edns).is_err());
        prop_assert_eq!(short.len(), 0);
    }

    /// A response started from the question already read is the response
    /// `response_to` starts from the whole query, byte for byte, with
    /// records and EDNS added the same way after it.
    #[test]
    fn a_response_to_a_read_question_matches_response_to(sample in sample(), answer in record(), limit in 12usize..600) {
        let query = build(&sample);
        let message = Message::parse(&query).expect("built");
        let question = message.first_question().expect("readable").expect("one question");
        let respond = |builder: Result<MessageBuilder<'_, Vec<u8>>, signpost_wire::Error>| {
            let mut builder = builder?;
            builder.set_limit(limit);
            builder.set_edns(EdnsHeader::default());
            let _ = builder.push_record_buf(Section::Answer, &answer);
            builder.finish()
        };
        let (mut whole, mut read) = (Vec::new(), Vec::new());
        let from_whole = respond(MessageBuilder::response_to(&mut whole, &message));
        let from_read = respond(MessageBuilder::response_to_question(&mut read, message.header(), &question));
        prop_assert_eq!(from_whole.is_ok(), from_read.is_ok());
        prop_assert_eq!(whole, read);
    }

    #[test]
    fn parse_of_build_gives_back_the_message(sample in sample()) {
        let bytes = build(&sample);
        let message = Message::parse(&bytes).expect("header");
        prop_assert_eq!(message.check(), Ok(()));
        prop_assert_eq!(message.id(), sample.id);
        prop_assert_eq!(message.flags(), Flags(sample.flags));
        let question = message.first_question().expect("valid").expect("one");
        let question_name = question.name().to_name_buf();
        prop_assert_eq!(question_name.as_wire(), sample.question.0.as_wire());
        let mut parsed: Vec<(Section, RecordBuf)> = message
            .records()
            .expect("valid")
            .map(|r| r.expect("valid"))
            .map(|r| (r.section(), RecordBuf::from_record(&r).expect("valid")))
            .collect();
        // The OPT record is written last, after every additional record.
        let opt = parsed.pop_if(|(_, record)| record.rtype() == RecordType::OPT);
        prop_assert_eq!(opt.is_some(), sample.edns.is_some());
        if let Some((section, record)) = &opt {
            prop_assert_eq!(*section, Section::Additional);
            prop_assert!(record.name.is_root());
        }
        prop_assert_eq!(&parsed, &sample.sections);
        // Names keep their case exactly, not just case-insensitively.
        for ((_, a), (_, b)) in parsed.iter().zip(&sample.sections) {
            prop_assert_eq!(a.name.as_wire(), b.name.as_wire());
        }

        let edns = message.edns().expect("valid");
        prop_assert_eq!(edns.is_some(), sample.edns.is_some());
        if let (Some(edns), Some(expected)) = (edns, &sample.edns) {
            prop_assert_eq!(edns.raw_udp_payload_size(), expected.header.udp_payload_size);
            prop_assert_eq!(edns.udp_payload_size(), expected.header.udp_payload_size.max(512));
            prop_assert_eq!(edns.version(), expected.header.version);
            prop_assert_eq!(edns.dnssec_ok(), expected.header.dnssec_ok);
            prop_assert_eq!(edns.flags(), if expected.header.dnssec_ok { 0x8000 } else { 0 });
            prop_assert_eq!(edns.extended_rcode_bits(), 0);
            let options: Vec<EdnsOption<'_>> = edns.options().map(|o| o.expect("valid")).collect();
            let written: Vec<EdnsOption<'_>> = expected.options.iter().map(OptionSample::as_option).collect();
            prop_assert_eq!(&options, &written);
            for option in &written {
                prop_assert_eq!(edns.option(option.code()), options.iter().find(|o| o.code() == option.code()).copied());
            }
        }
    }

    #[test]
    fn records_round_trip_through_presentation_format(record in record()) {
        let text = record.to_string();
        let parsed: RecordBuf = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(&parsed, &record);
        prop_assert_eq!(parsed.to_string(), text);
    }

    #[test]
    fn names_round_trip_through_presentation_format(name in name()) {
        let text = name.to_string();
        let parsed: NameBuf = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(parsed.as_wire(), name.as_wire());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::message(&bytes);
        fuzzing::name(&bytes);
        fuzzing::presentation(&bytes);
        fuzzing::build(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(sample in sample(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = build(&sample);
        for (index, value) in flips {
            let len = bytes.len();
            bytes[index % len] = value;
        }
        fuzzing::message(&bytes);
        let cut = bytes.len() / 2;
        fuzzing::message(&bytes[..cut]);
    }

    #[test]
    fn suffix_rule_matches_exactly_the_domain_and_below(parent in name(), child in name(), other in name()) {
        let below = child.concat(&parent);
        if let Ok(below) = below {
            prop_assert!(below.is_subdomain_of(&parent));
        }
        let expected = other.as_wire().len() >= parent.as_wire().len()
            && other.labels().count() >= parent.labels().count()
            && {
                let skip = other.labels().count() - parent.labels().count();
                let mut suffix = other.clone();
                for _ in 0..skip { suffix = suffix.parent().expect("has labels"); }
                suffix == parent
            };
        prop_assert_eq!(other.is_subdomain_of(&parent), expected);
    }
}

#[test]
fn records_of_unknown_type_keep_their_bytes() {
    let record = RecordBuf::new(
        "x.example.".parse().expect("name"),
        60,
        RecordData::Unknown(Unknown { rtype: RecordType(65280), data: vec![0xc0, 0x0c, 0x00] }),
    );
    let sample = Sample {
        id: 1,
        flags: 0,
        question: ("example.".parse().expect("name"), 1),
        sections: vec![(Section::Answer, record)],
        edns: None,
    };
    let bytes = build(&sample);
    // An unknown type's bytes look like a pointer but must not be touched.
    assert!(bytes.ends_with(&[0xc0, 0x0c, 0x00]));
}

/// Records under `example.` of class IN, without SOAs: what a zone holds.
fn zone_records() -> impl Strategy<Value = Vec<RecordBuf>> {
    proptest::collection::vec(record(), 0..40).prop_map(|records| {
        let zone: NameBuf = "example.".parse().expect("name");
        records
            .into_iter()
            .filter(|record| record.rtype() != RecordType::SOA)
            .filter_map(|mut record| {
                record.name = record.name.concat(&zone).ok()?;
                Some(record)
            })
            .collect()
    })
}

fn transfer_soa(serial: u32) -> RecordBuf {
    format!("example. 3600 IN SOA ns.example. host.example. {serial} 3600 600 86400 60").parse().expect("SOA")
}

proptest! {
    #[test]
    fn transfers_written_then_read_give_back_the_records(
        records in zone_records(),
        serial in any::<u32>(),
        limit in 512usize..4096,
        signed in any::<bool>(),
    ) {
        use signpost_wire::{Transfer, TransferReader, TransferRequest, TransferWriter, TsigAlgorithm, TsigKey, TsigSession};
        let zone: NameBuf = "example.".parse().expect("name");
        let soa = transfer_soa(serial);
        let mut stream = vec![soa.clone()];
        stream.extend(records.iter().cloned());
        stream.push(soa.clone());

        let key = TsigKey::new("key.".parse().expect("name"), TsigAlgorithm::HmacSha256, b"secret");
        let mut query = Vec::new();
        TransferRequest::Axfr.write_query(&mut query, 77, &zone).expect("query");
        let mut client = signed.then(|| TsigSession::sign_request(&key, &mut query, 1000).expect("sign"));
        let mut server = TsigSession::verify_request(std::slice::from_ref(&key), &query, 1000).expect("verifies");
        prop_assert_eq!(server.is_some(), signed);

        let mut writer = TransferWriter::new(&Message::parse(&query).expect("query"), stream.len())
            .expect("writer")
            .with_limit(limit);
        let mut reader = TransferReader::new(77, &zone, &TransferRequest::Axfr);
        let mut message = Vec::new();
        loop {
            match writer.write_next(&mut message, &stream) {
                Ok(true) => {}
                Ok(false) => break,
                // A single record larger than the limit: nothing to compare.
                Err(_) => return Ok(()),
            }
            if let Some(server) = server.as_mut() {
                server.sign_response(&mut message, 1001).expect("sign response");
            }
            if let Some(client) = client.as_mut() {
                prop_assert!(client.verify_response(&message, 1002).expect("verifies"));
            }
            reader.handle_message(&message).expect("valid stream");
            message.clear();
        }
        let Transfer::Full { soa: got_soa, records: got } = reader.finish().expect("complete") else {
            return Err(TestCaseError::fail("not a full transfer"));
        };
        prop_assert_eq!(got_soa, soa);
        prop_assert_eq!(&got[1..], &stream[1..stream.len() - 1]);
    }

    #[test]
    fn transfer_streams_of_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
        fuzzing::transfer_stream(&bytes);
    }
}
