//! NLnet Labs' `domain`: lazy parsing over the borrowed bytes
//! (`Message<&[u8]>`, `ParsedName`), building with `MessageBuilder` over a
//! `StaticCompressor` (allocation-free name compression).

use std::mem;
use std::net::Ipv4Addr;

use crate::{CLIENT_COOKIE, HeaderFields, SERVER_COOKIE, Section, Sink};
use domain::base::iana::OptionCode;
use domain::base::name::ParsedName;
use domain::base::opt::{Opt, OptRecord, UnknownOptData};
use domain::base::{Message, MessageBuilder, Name, Rtype, StaticCompressor};
use domain::dep::octseq::OctetsBuilder;
use domain::rdata::{A, AllRecordData, Cname, Ns};

use super::Outcome;

fn header_fields(header: domain::base::Header) -> HeaderFields {
    HeaderFields {
        id: header.id(),
        qr: header.qr(),
        opcode: header.opcode().to_int(),
        aa: header.aa(),
        tc: header.tc(),
        rd: header.rd(),
        ra: header.ra(),
        ad: header.ad(),
        cd: header.cd(),
        rcode: header.rcode().to_int(),
    }
}

fn name<O: AsRef<[u8]>>(name: &ParsedName<O>, sink: &mut impl Sink) {
    for label in name.iter() {
        if !label.is_root() {
            sink.label(label.as_slice());
        }
    }
    sink.name_end();
}

/// `Message::from_octets` (checks the header only), then the first
/// question is parsed lazily from the question section.
pub fn route<S: Sink>(msg: &[u8], sink: &mut S) -> Outcome {
    let message = Message::from_octets(msg)?;
    sink.header(&header_fields(message.header()));
    let question = message.question().next().ok_or("no question")??;
    sink.question(question.qtype().to_int(), question.qclass().to_int());
    name(question.qname(), sink);
    Ok(())
}

/// Walks the sections in wire order, parsing each record's data into
/// `AllRecordData` (the OPT record through `OptRecord`).
pub fn walk<S: Sink>(msg: &[u8], sink: &mut S) -> Outcome {
    let message = Message::from_octets(msg)?;
    let header = message.header();
    sink.header(&header_fields(header));
    let mut questions = message.question();
    for question in &mut questions {
        let question = question?;
        sink.question(question.qtype().to_int(), question.qclass().to_int());
        name(question.qname(), sink);
    }
    let mut records = questions.answer()?;
    for section in [Section::Answer, Section::Authority, Section::Additional] {
        for record in &mut records {
            let record = record?;
            if record.rtype() == Rtype::OPT {
                let opt = record.to_record::<Opt<_>>()?.ok_or("OPT record without OPT data")?;
                let opt = OptRecord::from_record(opt);
                let ext_rcode = (opt.rcode(header).to_int() >> 4) as u8;
                sink.opt(opt.udp_payload_size(), ext_rcode, opt.version(), opt.dnssec_ok());
                for option in opt.opt().iter::<UnknownOptData<_>>() {
                    let option = option?;
                    sink.opt_option(option.code().to_int(), option.data());
                }
                continue;
            }
            let record = record.into_any_record::<AllRecordData<_, ParsedName<_>>>()?;
            sink.record(section, record.rtype().to_int(), record.class().to_int(), record.ttl().as_secs());
            name(record.owner(), sink);
            match record.data() {
                AllRecordData::A(a) => sink.a(a.addr()),
                AllRecordData::Cname(cname) => name(cname.cname(), sink),
                AllRecordData::Ns(ns) => name(ns.nsdname(), sink),
                other => return Err(format!("unexpected RDATA {other:?}").into()),
            }
        }
        match records.next_section()? {
            Some(next) => records = next,
            None => break,
        }
    }
    Ok(())
}

type Names = Name<Vec<u8>>;

super::response_data!(Names, |name| Names::vec_from_str(&format!("{name}.")).expect("valid name"));

impl ResponseData {
    /// Pushes records (names by reference) through `MessageBuilder`
    /// into `buf`, wrapped in a `StaticCompressor`.
    pub fn build(&self, buf: &mut Vec<u8>) -> Outcome {
        let mut builder = MessageBuilder::from_target(StaticCompressor::new(mem::take(buf)))?;
        let header = builder.header_mut();
        header.set_id(0xbeef);
        header.set_qr(true);
        header.set_rd(true);
        header.set_ra(true);
        let mut question = builder.question();
        question.push((&self.names.qname, Rtype::A))?;
        let mut answer = question.answer();
        answer.push((&self.names.qname, 300, Cname::new(&self.names.target)))?;
        for last in 1..=3 {
            answer.push((&self.names.target, 60, A::from_octets(192, 0, 2, last)))?;
        }
        let mut authority = answer.authority();
        for ns in [&self.names.ns1, &self.names.ns2] {
            authority.push((&self.names.zone, 3600, Ns::new(ns)))?;
        }
        let mut additional = authority.additional();
        for (ns, last) in [(&self.names.ns1, 53), (&self.names.ns2, 54)] {
            additional.push((ns, 3600, A::from_octets(198, 51, 100, last)))?;
        }
        additional.opt(|opt| {
            opt.set_udp_payload_size(1232);
            opt.push_raw_option(OptionCode::COOKIE, 24, |target| {
                target.append_slice(&CLIENT_COOKIE)?;
                target.append_slice(&SERVER_COOKIE)
            })
        })?;
        *buf = additional.finish().into_target();
        Ok(())
    }
}

/// Parses the first question lazily and pushes it and the answer
/// (owner = the parsed question name) through `MessageBuilder`.
pub fn redirect(query: &[u8], buf: &mut Vec<u8>) -> Outcome {
    let request = Message::from_octets(query)?;
    let question = request.question().next().ok_or("no question")??;
    let request_header = request.header();

    let mut builder = MessageBuilder::from_target(StaticCompressor::new(mem::take(buf)))?;
    let header = builder.header_mut();
    header.set_id(request_header.id());
    header.set_qr(true);
    header.set_opcode(request_header.opcode());
    header.set_aa(true);
    header.set_rd(request_header.rd());
    let mut questions = builder.question();
    questions.push(question)?;
    let mut answer = questions.answer();
    answer.push((question.qname(), 60, A::new(Ipv4Addr::LOCALHOST)))?;
    *buf = answer.finish().into_target();
    Ok(())
}
