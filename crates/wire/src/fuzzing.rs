//! Entry points for the fuzz targets in `fuzz/` (not a stable API).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use crate::{Message, MessageBuilder, NameBuf, Record, RecordBuf, RecordData, Section, relay};

/// Parse a message and read every field of every record; if it is valid,
/// rebuild it and check the copy parses to the same records.
pub fn message(data: &[u8]) {
    let Ok(message) = Message::parse(data) else { return };
    let _ = message.first_question();
    let _ = message.rcode();
    if let Ok(Some(edns)) = message.edns() {
        for option in edns.options().flatten() {
            let _ = option.to_string();
        }
    }
    // The iterators remember names they validated and `first_question`
    // reads on its own; reading each entry alone, without a memo, must give
    // the same name, end and error.
    let summary =
        |question: &crate::Question<'_>| (question.name().to_name_buf().as_wire().to_vec(), question.raw().len());
    let mut questions = message.questions();
    let first = questions.clone().next().map(|question| question.map(|question| summary(&question))).transpose();
    assert_eq!(message.first_question().map(|question| question.map(|question| summary(&question))), first);
    for question in &mut questions {
        let Ok(question) = question else { return };
        let (alone, end) = crate::Name::from_message(data, question.offset()).expect("valid alone");
        assert_eq!(
            (alone.to_name_buf().as_wire(), end + 4),
            (summary(&question).0.as_slice(), question.offset() + question.raw().len())
        );
        let _ = question.name().to_string();
        let _ = question.name().labels_rev().count();
    }
    let Ok(mut records) = questions.into_records() else { return };
    loop {
        let (offset, section) = (records.position(), records.current_section());
        let Some(record) = records.next() else { break };
        if offset < data.len() {
            let facts = |record: Record<'_>| {
                let name = record.name();
                (
                    name.to_name_buf().as_wire().to_vec(),
                    name.wire_len(),
                    name.label_count(),
                    name.is_compressed(),
                    record.end(),
                )
            };
            let alone = Record::parse(data, offset, section).map(|(alone, _)| facts(alone));
            assert_eq!(record.map(facts), alone, "record at {offset}");
        }
        let Ok(record) = record else { return };
        let _ = record.name().to_name_buf();
        if let Ok(data) = record.data() {
            let text = data.to_string();
            let owned = data.to_owned_data();
            assert_eq!(owned.to_string(), text);
            if let RecordData::Svcb(svcb) | RecordData::Https(svcb) = &data {
                for param in svcb.params() {
                    let _ = param.to_string();
                }
            }
        }
    }
    if message.check().is_ok() {
        rebuild_and_compare(&message);
    }
    let mut out = Vec::new();
    let _ = relay::truncate_for_client(data, 512, &mut out);
    if !out.is_empty()
        && message.check().is_ok()
        && let Ok(cut) = Message::parse(&out)
    {
        assert!(cut.check().is_ok(), "truncation produced an invalid message");
    }
}

fn rebuild_and_compare(message: &Message<'_>) {
    let mut buffer = Vec::new();
    let Ok(mut builder) = MessageBuilder::new(&mut buffer) else { return };
    builder.set_id(message.id());
    builder.set_flags(message.flags());
    for question in message.questions().flatten() {
        if builder.push_question(&question.name(), question.qtype(), question.qclass()).is_err() {
            return;
        }
    }
    let Ok(records) = message.records() else { return };
    for record in records.flatten() {
        if builder.push_record(record.section(), &record).is_err() {
            return;
        }
    }
    if builder.finish().is_err() {
        return;
    }
    let copy = Message::parse(&buffer).expect("rebuilt message has a header");
    copy.check().expect("rebuilt message is valid");
    let original: Vec<_> = message.records().expect("valid").flatten().map(|r| RecordBuf::from_record(&r)).collect();
    let rebuilt: Vec<_> = copy.records().expect("valid").flatten().map(|r| RecordBuf::from_record(&r)).collect();
    assert_eq!(original, rebuilt);
}

/// Parse a name from wire data at offset 0 and from presentation text.
pub fn name(data: &[u8]) {
    if let Ok((name, _)) = crate::Name::from_message(data, 0) {
        let text = name.to_string();
        let reparsed: NameBuf = text.parse().expect("displayed names parse");
        assert_eq!(reparsed, name, "{text}");
        assert_eq!(reparsed.to_string(), text);
    }
    if let Ok(text) = core::str::from_utf8(data)
        && let Ok(name) = text.parse::<NameBuf>()
    {
        let shown = name.to_string();
        assert_eq!(shown.parse::<NameBuf>().expect("round trip").as_wire(), name.as_wire());
    }
}

/// Parse records in presentation format and check they survive display and wire.
pub fn presentation(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else { return };
    let origin: NameBuf = "example.".parse().expect("valid origin");
    let Ok(record) = RecordBuf::from_presentation(text, Some(&origin), Some(300)) else { return };
    let shown = record.to_string();
    let again = RecordBuf::from_presentation(&shown, None, None).expect("displayed records parse");
    assert_eq!(again, record, "{shown}");
    let wire = record.data.to_wire();
    let parsed = crate::RData::parse(record.rtype(), &wire, 0, wire.len()).expect("written data parses");
    assert_eq!(parsed.to_owned_data(), record.data);
}

/// Build a message from fuzz-chosen records, then parse it back.
pub fn build(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else { return };
    let mut records = Vec::new();
    for line in text.lines().take(64) {
        if let Ok(record) = line.parse::<RecordBuf>() {
            records.push(record);
        }
    }
    let limit = data.first().map_or(512, |&b| 12 + usize::from(b) * 8);
    let mut buffer = Vec::new();
    let Ok(mut builder) = MessageBuilder::new(&mut buffer) else { return };
    builder.set_limit(limit);
    let mut written = Vec::new();
    for record in &records {
        let section = match record.ttl % 3 {
            0 => Section::Answer,
            1 => Section::Authority,
            _ => Section::Additional,
        };
        if section < builder.current_section() || record.rtype() == crate::RecordType::OPT {
            continue;
        }
        match builder.push_record_buf(section, record) {
            Ok(()) => written.push((section, record.clone())),
            Err(_) => break,
        }
    }
    let truncated = builder.is_truncated();
    let Ok(len) = builder.finish() else { return };
    assert!(len <= limit.max(12));
    let message = Message::parse(&buffer).expect("built message has a header");
    message.check().expect("built message is valid");
    let parsed: Vec<_> = message
        .records()
        .expect("valid")
        .map(|r| r.expect("valid record"))
        .map(|r| (r.section(), RecordBuf::from_record(&r).expect("valid data")))
        .collect();
    if truncated {
        assert!(parsed.len() <= written.len());
        assert_eq!(parsed.as_slice(), written.get(..parsed.len()).expect("prefix"));
    } else {
        assert_eq!(parsed, written);
    }
}

/// Read `data` as a transfer stream: a TCP byte stream of length-prefixed
/// messages, fed to an AXFR reader, an IXFR reader and a TSIG verifier. A
/// complete transfer must hold exactly the records the stream's answers
/// carried, with the closing SOA equal to the opening one.
pub fn transfer_stream(data: &[u8]) {
    use crate::{Serial, Transfer, TransferReader, TransferRequest, TsigAlgorithm, TsigKey, TsigSession};
    let zone: NameBuf = "example.".parse().unwrap();
    let soa: RecordBuf = "example. 0 IN SOA . . 5 1 1 1 1".parse().unwrap();
    let key = TsigKey::new("key.".parse().unwrap(), TsigAlgorithm::HmacSha256, b"fuzz");
    let mut readers = [
        TransferReader::new(0, &zone, &TransferRequest::Axfr).with_max_records(2000),
        TransferReader::new(0, &zone, &TransferRequest::Ixfr { soa }).with_max_records(2000),
    ];
    let mut request = vec![0u8; 12];
    let mut verifier = TsigSession::sign_request(&key, &mut request, 0).unwrap();
    let mut rest = data;
    while let [high, low, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        let (message, after) = tail.split_at(len.min(tail.len()));
        rest = after;
        let _ = verifier.verify_response(message, 0);
        for reader in &mut readers {
            let _ = reader.handle_message(message);
        }
    }
    for reader in readers {
        let complete = reader.is_complete();
        match reader.finish() {
            Ok(Transfer::Full { soa, records }) => {
                assert!(complete);
                assert_eq!(records.first(), Some(&soa));
                assert!(records.iter().skip(1).all(|record| record.rtype() != crate::RecordType::SOA));
            }
            Ok(Transfer::Incremental { soa, diffs }) => {
                assert!(!diffs.is_empty());
                assert_eq!(diffs.last().map(|diff| &diff.to), Some(&soa));
                for pair in diffs.windows(2) {
                    assert_eq!(crate::soa_serial(&pair[0].to), crate::soa_serial(&pair[1].from));
                }
            }
            Ok(Transfer::UpToDate { soa }) => {
                assert!(crate::soa_serial(&soa).is_some_and(|serial| !serial.is_newer_than(Serial(5))));
            }
            Err(_) => assert!(!complete),
        }
    }
}
