//! hickory-proto: owned `Message`/`Record`/`Name` values, decoded and
//! encoded through `BinDecoder`/`BinEncoder`.

use std::net::Ipv4Addr;

use crate::{CLIENT_COOKIE, HeaderFields, SERVER_COOKIE, Section, Sink};
use hickory_proto::op::{Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, Query};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::{A, CNAME, NS};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use super::Outcome;

fn header_fields(metadata: &Metadata) -> HeaderFields {
    HeaderFields {
        id: metadata.id,
        qr: metadata.message_type == MessageType::Response,
        opcode: u8::from(metadata.op_code),
        aa: metadata.authoritative,
        tc: metadata.truncation,
        rd: metadata.recursion_desired,
        ra: metadata.recursion_available,
        ad: metadata.authentic_data,
        cd: metadata.checking_disabled,
        rcode: metadata.response_code.low(),
    }
}

fn name(name: &Name, sink: &mut impl Sink) {
    for label in name.iter() {
        sink.label(label);
    }
    sink.name_end();
}

/// Decodes only the header and the first question (`Header::read`,
/// `Query::read`), the cheapest route hickory offers.
pub fn route<S: Sink>(msg: &[u8], sink: &mut S) -> Outcome {
    let mut decoder = BinDecoder::new(msg);
    let header = Header::read(&mut decoder)?;
    sink.header(&header_fields(&header.metadata));
    if header.counts.queries == 0 {
        return Err("no question".into());
    }
    let query = Query::read(&mut decoder)?;
    sink.question(u16::from(query.query_type), u16::from(query.query_class));
    name(&query.name, sink);
    Ok(())
}

fn record(section: Section, record: &Record, sink: &mut impl Sink) -> Outcome {
    sink.record(section, u16::from(record.record_type()), u16::from(record.dns_class), record.ttl);
    name(&record.name, sink);
    match &record.data {
        RData::A(a) => sink.a(a.0),
        RData::CNAME(cname) => name(&cname.0, sink),
        RData::NS(ns) => name(&ns.0, sink),
        other => return Err(format!("unexpected RDATA {other:?}").into()),
    }
    Ok(())
}

/// Decodes the whole `Message` (hickory lifts the OPT record into
/// `Message::edns`), then reads every field.
pub fn walk<S: Sink>(msg: &[u8], sink: &mut S) -> Outcome {
    let message = Message::from_vec(msg)?;
    sink.header(&header_fields(&message.metadata));
    for query in &message.queries {
        sink.question(u16::from(query.query_type), u16::from(query.query_class));
        name(&query.name, sink);
    }
    for rr in &message.answers {
        record(Section::Answer, rr, sink)?;
    }
    for rr in &message.authorities {
        record(Section::Authority, rr, sink)?;
    }
    for rr in &message.additionals {
        record(Section::Additional, rr, sink)?;
    }
    if let Some(edns) = &message.edns {
        sink.opt(edns.max_payload(), edns.rcode_high(), edns.version(), edns.flags().dnssec_ok);
        for (code, option) in &edns.options().options {
            match option {
                EdnsOption::Unknown(_, data) => sink.opt_option(u16::from(*code), data),
                other => sink.opt_option(u16::from(*code), &Vec::<u8>::try_from(other)?),
            }
        }
    }
    Ok(())
}

super::response_data!(Name, |name| Name::from_ascii(format!("{name}.")).expect("valid name"));

impl ResponseData {
    /// Builds a `Message` (records own their names, so names are cloned)
    /// and encodes it with compression into `buf`.
    pub fn build(&self, buf: &mut Vec<u8>) -> Outcome {
        let mut message = Message::response(0xbeef, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.metadata.recursion_available = true;
        message.add_query(Query::query(self.names.qname.clone(), RecordType::A));
        message.add_answer(Record::from_rdata(
            self.names.qname.clone(),
            300,
            RData::CNAME(CNAME(self.names.target.clone())),
        ));
        for last in 1..=3 {
            message.add_answer(Record::from_rdata(self.names.target.clone(), 60, RData::A(A::new(192, 0, 2, last))));
        }
        for ns in [&self.names.ns1, &self.names.ns2] {
            message.add_authority(Record::from_rdata(self.names.zone.clone(), 3600, RData::NS(NS(ns.clone()))));
        }
        for (ns, last) in [(&self.names.ns1, 53), (&self.names.ns2, 54)] {
            message.add_additional(Record::from_rdata(ns.clone(), 3600, RData::A(A::new(198, 51, 100, last))));
        }
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.options_mut().insert(EdnsOption::Unknown(10, [CLIENT_COOKIE.as_slice(), &SERVER_COOKIE].concat()));
        message.set_edns(edns);

        buf.clear();
        let mut encoder = BinEncoder::new(buf);
        message.emit(&mut encoder)?;
        Ok(())
    }
}

/// Decodes the header and first question only, then encodes header,
/// question and one record straight into `buf` (no `Message`).
pub fn redirect(query: &[u8], buf: &mut Vec<u8>) -> Outcome {
    let mut decoder = BinDecoder::new(query);
    let request = Header::read(&mut decoder)?;
    if request.counts.queries == 0 {
        return Err("no question".into());
    }
    let question = Query::read(&mut decoder)?;

    let mut metadata = Metadata::new(request.metadata.id, MessageType::Response, request.metadata.op_code);
    metadata.authoritative = true;
    metadata.recursion_desired = request.metadata.recursion_desired;
    let header = Header { metadata, counts: HeaderCounts { queries: 1, answers: 1, authorities: 0, additionals: 0 } };

    buf.clear();
    let mut encoder = BinEncoder::new(buf);
    header.emit(&mut encoder)?;
    question.emit(&mut encoder)?;
    Record::from_rdata(question.name, 60, RData::A(A(Ipv4Addr::LOCALHOST))).emit(&mut encoder)?;
    Ok(())
}
