//! Property tests: build-then-parse gives back the message, presentation
//! format round-trips, and arbitrary bytes never panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use signpost_wire::{
    Caa, Class, Flags, Message, MessageBuilder, Mx, NameBuf, Naptr, RDataBuf, RecordBuf, RecordData, RecordType,
    Section, Soa, Srv, Svcb, Txt, Unknown, fuzzing,
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
        (prop_oneof![Just(43u16), Just(46), Just(48), Just(52), Just(65280), Just(99)], bytes(40))
            .prop_map(|(rtype, data)| RDataBuf::Unknown(Unknown { rtype: RecordType(rtype), data })),
    ]
}

fn record() -> impl Strategy<Value = RecordBuf> {
    (name(), any::<u32>(), rdata()).prop_map(|(name, ttl, data)| RecordBuf::new(name, ttl, data))
}

#[derive(Debug, Clone)]
struct Sample {
    id: u16,
    flags: u16,
    question: (NameBuf, u16),
    sections: Vec<(Section, RecordBuf)>,
}

fn sample() -> impl Strategy<Value = Sample> {
    (
        any::<u16>(),
        any::<u16>(),
        (name(), any::<u16>()),
        proptest::collection::vec(record(), 0..5),
        proptest::collection::vec(record(), 0..3),
        proptest::collection::vec(record(), 0..3),
    )
        .prop_map(|(id, flags, question, answers, authority, additional)| {
            let sections = answers
                .into_iter()
                .map(|r| (Section::Answer, r))
                .chain(authority.into_iter().map(|r| (Section::Authority, r)))
                .chain(additional.into_iter().map(|r| (Section::Additional, r)))
                .collect();
            Sample { id, flags, question, sections }
        })
}

fn build(sample: &Sample) -> Vec<u8> {
    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::new(&mut buffer).expect("header");
    builder.set_id(sample.id);
    builder.set_flags(Flags(sample.flags));
    builder.push_question(&sample.question.0, RecordType(sample.question.1), Class::IN).expect("fits");
    for (section, record) in &sample.sections {
        builder.push_record_buf(*section, record).expect("fits");
    }
    builder.finish().expect("done");
    buffer
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

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
        let parsed: Vec<(Section, RecordBuf)> = message
            .records()
            .expect("valid")
            .map(|r| r.expect("valid"))
            .map(|r| (r.section(), RecordBuf::from_record(&r).expect("valid")))
            .collect();
        prop_assert_eq!(&parsed, &sample.sections);
        // Names keep their case exactly, not just case-insensitively.
        for ((_, a), (_, b)) in parsed.iter().zip(&sample.sections) {
            prop_assert_eq!(a.name.as_wire(), b.name.as_wire());
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
    };
    let bytes = build(&sample);
    // An unknown type's bytes look like a pointer but must not be touched.
    assert!(bytes.ends_with(&[0xc0, 0x0c, 0x00]));
}
