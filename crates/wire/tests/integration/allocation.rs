//! Parsing and walking a whole message allocates nothing; nor does the
//! redirect path (parse a query, write an answer into a reused buffer).

use bytes::BytesMut;
use signpost_alloc_count::{CountingAllocator, allocations_during};
use signpost_wire::{Class, EdnsHeader, Message, MessageBuilder, RData, RecordData, Section};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors").join(name)).expect("vector")
}

/// Touch every field of every record, typed.
fn walk(bytes: &[u8]) -> usize {
    let mut touched = 0usize;
    let message = Message::parse(bytes).expect("header");
    touched += usize::from(message.id());
    let mut questions = message.questions();
    for question in &mut questions {
        let question = question.expect("valid");
        touched += question.name().labels().map(<[u8]>::len).sum::<usize>() + usize::from(question.qtype().0);
    }
    for record in questions.into_records().expect("valid") {
        let record = record.expect("valid");
        touched += record.name().labels_rev().map(<[u8]>::len).sum::<usize>();
        touched += record.ttl() as usize + usize::from(record.class().0);
        match record.data().expect("valid") {
            RecordData::A(addr) => touched += addr.octets()[3] as usize,
            RecordData::Aaaa(addr) => touched += addr.octets()[15] as usize,
            RecordData::Cname(name) | RecordData::Ns(name) | RecordData::Ptr(name) | RecordData::Dname(name) => {
                touched += name.labels().count();
            }
            RecordData::Mx(mx) => touched += mx.exchange.labels().count() + usize::from(mx.preference),
            RecordData::Soa(soa) => touched += soa.mname.labels().count() + soa.minimum as usize,
            RecordData::Txt(txt) => touched += txt.strings().map(<[u8]>::len).sum::<usize>(),
            RecordData::Srv(srv) => touched += srv.target.labels().count() + usize::from(srv.port),
            RecordData::Svcb(svcb) | RecordData::Https(svcb) => touched += svcb.params().count(),
            RecordData::Opt(opt) => touched += opt.options().count(),
            _ => touched += record.raw_data().len(),
        }
    }
    if let Some(edns) = message.edns().expect("valid") {
        touched += usize::from(edns.udp_payload_size()) + edns.options().count();
    }
    touched
}

#[test]
fn parsing_and_walking_a_whole_message_allocates_nothing() {
    for name in [
        "typical_cname_3a.response.bin",
        "rr_mx_glue.response.bin",
        "rr_https.response.bin",
        "rr_txt.response.bin",
        "nxdomain.response.bin",
        "edns_ecs_v4.query.bin",
    ] {
        let bytes = vector(name);
        let mut touched = 0;
        let count = allocations_during(|| touched = walk(&bytes));
        assert!(touched > 0);
        assert_eq!(count, 0, "{name} allocated {count} times");
    }
}

#[test]
fn the_redirect_path_allocates_nothing_with_a_reused_buffer() {
    let query = vector("typical_cname_3a.query.bin");
    let mut buffer = BytesMut::with_capacity(1500);
    let answer = |buffer: &mut BytesMut| {
        buffer.clear();
        let query = Message::parse(&query).expect("header");
        let question = query.first_question().expect("valid").expect("one");
        let mut builder = MessageBuilder::response_to(buffer, &query).expect("fits");
        builder.header_mut().flags = builder.header_mut().flags.with_aa(true);
        builder.set_edns(EdnsHeader::default());
        builder.push(Section::Answer, &question.name(), Class::IN, 60, &RData::A([127, 0, 0, 1].into())).expect("fits");
        builder.finish().expect("done")
    };
    answer(&mut buffer);
    let count = allocations_during(|| {
        for _ in 0..100 {
            answer(&mut buffer);
        }
    });
    assert_eq!(count, 0, "the redirect path allocated {count} times in 100 answers");
    let response = Message::parse(&buffer).expect("header");
    response.check().expect("valid");
    assert_eq!(response.header().ancount, 1);
}
