//! The parser gives back what it did parse: a message whose header and first
//! question are fine but whose records are malformed still yields its id,
//! opcode and question, so a server can answer FORMERR to it, while walking
//! the records reports what was wrong and at which byte.

use signpost_wire::{Error, Flags, Message, MessageBuilder, Opcode, Rcode, RecordType, Section};

/// The header and question shared by the packets below: id 0xbeef, and the
/// question `Example.COM. A IN` (mixed case, which a FORMERR answer must echo).
/// The question ends at byte 29.
#[rustfmt::skip]
const QUERY_START: &[u8] = &[
    0xbe, 0xef,             // id
    0x01, 0x00,             // QUERY, RD
    0x00, 0x01,             // qdcount 1
    0x00, 0x01,             // ancount 1
    0x00, 0x00,             // nscount 0
    0x00, 0x00,             // arcount 0
    7, b'E', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'C', b'O', b'M', 0, // 12: Example.COM.
    0x00, 0x01,             // 25: qtype A
    0x00, 0x01,             // 27: qclass IN
];

/// `QUERY_START` followed by `rest`, with the header's four counts replaced.
fn message(counts: [u16; 4], rest: &[u8]) -> Vec<u8> {
    let mut bytes = QUERY_START.to_vec();
    for (slot, count) in bytes[4..12].chunks_exact_mut(2).zip(counts) {
        slot.copy_from_slice(&count.to_be_bytes());
    }
    bytes.extend_from_slice(rest);
    bytes
}

/// `message` with the opcode set in the flags word.
fn message_with_opcode(counts: [u16; 4], rest: &[u8], opcode: Opcode) -> Vec<u8> {
    let mut bytes = message(counts, rest);
    let flags = Flags(u16::from_be_bytes([bytes[2], bytes[3]])).with_opcode(opcode);
    bytes[2..4].copy_from_slice(&flags.0.to_be_bytes());
    bytes
}

/// What a server reads before answering FORMERR: the header and the first
/// question, both of which must come back intact.
fn assert_routable(message: &Message<'_>, opcode: Opcode) {
    assert_eq!(message.id(), 0xbeef);
    assert_eq!(message.opcode(), opcode);
    let question = message.first_question().expect("the question is well formed").expect("one question");
    assert_eq!(question.name().to_string(), "Example.COM.");
    assert_eq!(question.qtype(), RecordType::A);
    assert_eq!(question.offset(), 12);
}

/// Answer FORMERR to `query` from its header and first question only, as a
/// server does when the rest of the message is malformed; check the answer
/// echoes the id, opcode, RD and the question in its original case.
fn assert_formerr_answer(query: &Message<'_>) {
    let question = query.first_question().expect("readable").expect("present");
    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::response_header_to(&mut buffer, query.header()).expect("header");
    builder.push_question(&question.name(), question.qtype(), question.qclass()).expect("fits");
    builder.set_rcode(Rcode::FORMERR);
    builder.finish().expect("done");

    let answer = Message::parse(&buffer).expect("header");
    assert_eq!(answer.check(), Ok(()));
    assert_eq!(answer.id(), query.id());
    assert_eq!(answer.opcode(), query.opcode());
    assert!(answer.flags().qr());
    assert_eq!(answer.flags().rd(), query.flags().rd());
    assert_eq!(answer.rcode(), Ok(Rcode::FORMERR));
    let echoed = answer.first_question().expect("valid").expect("present");
    assert_eq!(echoed.name().to_name_buf().as_wire(), question.name().to_name_buf().as_wire());
    assert_eq!(echoed.qtype(), question.qtype());
}

#[test]
fn truncated_rdata_in_the_answer() {
    #[rustfmt::skip]
    let bytes = message([1, 1, 0, 0], &[
        0xc0, 0x0c,             // 29: pointer to 12: Example.COM.
        0x00, 0x01,             // 31: type A
        0x00, 0x01,             // 33: class IN
        0x00, 0x00, 0x0e, 0x10, // 35: ttl 3600
        0x00, 0x04,             // 39: rdlength 4
        192, 0,                 // 41: only two of the four address octets
    ]);
    let message = Message::parse(&bytes).expect("the header is complete");
    assert_routable(&message, Opcode::QUERY);

    let expected = Error::UnexpectedEnd { offset: 41, needed: 2 };
    let mut records = message.records().expect("the question section is fine");
    assert_eq!(records.next().map(|r| r.map(|r| r.offset())), Some(Err(expected)));
    assert_eq!(records.next().map(|r| r.map(|r| r.offset())), None, "the walk stops at the first error");
    assert_eq!(expected.position(), Some(41));
    assert_eq!(message.answers().expect("fine so far").find_map(Result::err), Some(expected));
    assert_eq!(message.check(), Err(expected));
    assert_formerr_answer(&message);
}

#[test]
fn forward_pointer_in_an_additional_owner_name() {
    #[rustfmt::skip]
    let bytes = message([1, 1, 0, 1], &[
        // Answer: a well-formed A record.
        0xc0, 0x0c,             // 29: pointer to 12: Example.COM.
        0x00, 0x01,             // 31: type A
        0x00, 0x01,             // 33: class IN
        0x00, 0x00, 0x0e, 0x10, // 35: ttl 3600
        0x00, 0x04,             // 39: rdlength 4
        192, 0, 2, 1,           // 41: 192.0.2.1
        // Additional: its owner name points forwards, into its own RDATA.
        0xc0, 0x39,             // 45: pointer to 57 (after this byte)
        0x00, 0x01,             // 47: type A
        0x00, 0x01,             // 49: class IN
        0x00, 0x00, 0x0e, 0x10, // 51: ttl 3600
        0x00, 0x04,             // 55: rdlength 4
        1, b'x', 0, 0,          // 57: bytes that would read as the name x.
    ]);
    let message = Message::parse(&bytes).expect("the header is complete");
    assert_routable(&message, Opcode::QUERY);

    // The answer section reads cleanly; the error is in the additional section.
    let answers: Vec<_> = message.answers().expect("fine").collect();
    assert_eq!(answers.len(), 1);
    let answer = answers[0].expect("well formed");
    assert_eq!((answer.offset(), answer.section()), (29, Section::Answer));
    assert_eq!(answer.data().map(|data| data.to_string()), Ok("192.0.2.1".to_string()));

    let expected = Error::ForwardPointer { offset: 45, target: 57 };
    let walked: Vec<_> = message.records().expect("fine").map(|r| r.map(|r| r.offset())).collect();
    assert_eq!(walked, [Ok(29), Err(expected)]);
    assert_eq!(message.additional().expect("the answer section is fine").next().map(|r| r.err()), Some(Some(expected)));
    assert_eq!(message.edns().map(|edns| edns.is_some()), Err(expected));
    assert_eq!(message.check(), Err(expected));
    assert_formerr_answer(&message);
}

#[test]
fn forward_pointer_inside_rdata_is_found_when_the_data_is_read() {
    #[rustfmt::skip]
    let bytes = message([1, 1, 0, 0], &[
        0xc0, 0x0c,             // 29: pointer to 12: Example.COM.
        0x00, 0x05,             // 31: type CNAME
        0x00, 0x01,             // 33: class IN
        0x00, 0x00, 0x0e, 0x10, // 35: ttl 3600
        0x00, 0x02,             // 39: rdlength 2
        0xc0, 0x2b,             // 41: pointer to 43, past the end of the message
    ]);
    let message = Message::parse(&bytes).expect("the header is complete");
    assert_routable(&message, Opcode::QUERY);

    // The record's frame (owner, type, class, TTL, RDLENGTH) is sound, so the
    // walk yields it; its typed data is what is wrong.
    let record = message.answers().expect("fine").next().expect("one").expect("framing is fine");
    assert_eq!((record.offset(), record.data_offset(), record.rtype()), (29, 41, RecordType::CNAME));
    let expected = Error::ForwardPointer { offset: 41, target: 43 };
    assert_eq!(record.data().map(|data| data.to_string()), Err(expected));
    assert_eq!(message.check(), Err(expected));
    assert_formerr_answer(&message);
}

#[test]
fn counts_larger_than_the_message() {
    #[rustfmt::skip]
    let answer: &[u8] = &[
        0xc0, 0x0c,             // 29: pointer to 12: Example.COM.
        0x00, 0x01,             // 31: type A
        0x00, 0x01,             // 33: class IN
        0x00, 0x00, 0x0e, 0x10, // 35: ttl 3600
        0x00, 0x04,             // 39: rdlength 4
        192, 0, 2, 1,           // 41: 192.0.2.1; the message ends at 45
    ];

    // ancount 3 and arcount 2, but one answer and nothing after it.
    let bytes = message([1, 3, 0, 2], answer);
    let message = Message::parse(&bytes).expect("the header is complete");
    assert_routable(&message, Opcode::QUERY);
    assert_eq!((message.header().ancount, message.header().arcount), (3, 2));
    let expected = Error::MissingRecords { section: Section::Answer, expected: 3, found: 1, offset: 45 };
    let walked: Vec<_> = message.records().expect("fine").map(|r| r.map(|r| r.offset())).collect();
    assert_eq!(walked, [Ok(29), Err(expected)]);
    assert_eq!(message.additional().err(), Some(expected));
    assert_eq!(message.check(), Err(expected));
    assert_formerr_answer(&message);

    // qdcount 2 and ancount 1 in a NOTIFY that ends after its first
    // question: that question is still there to route on and to echo; the
    // second is reported missing where the message ends, and no record can
    // be reached past a broken question section.
    let bytes = message_with_opcode([2, 1, 0, 0], &[], Opcode::NOTIFY);
    let message = Message::parse(&bytes).expect("the header is complete");
    assert_routable(&message, Opcode::NOTIFY);
    let missing = Error::MissingRecords { section: Section::Question, expected: 2, found: 1, offset: 29 };
    assert_eq!(message.questions().map(|q| q.map(|q| q.offset())).collect::<Vec<_>>(), [Ok(12), Err(missing)]);
    assert_eq!(message.records().err(), Some(missing));
    assert_eq!(message.answers().err(), Some(missing));
    assert_eq!(message.check(), Err(missing));
    assert_eq!(missing.position(), Some(29));
    assert_formerr_answer(&message);
}
