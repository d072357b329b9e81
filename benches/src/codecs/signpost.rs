//! signpost-wire: `Message` is a view over the bytes; names are walked in
//! place through compression pointers; RDATA is typed on demand; the builder
//! writes into the caller's buffer; its fixed-size compression table is made
//! only when a name could share a suffix with one other than the first.

use std::net::Ipv4Addr;

use crate::{CLIENT_COOKIE, HeaderFields, SERVER_COOKIE, Section, Sink};
use signpost_wire::{
    Class, Cookie, Edns, EdnsHeader, EdnsOption, Flags, Message, MessageBuilder, Name, NameBuf, RData, RecordData,
    RecordType, Section as WireSection,
};

use super::Outcome;

fn header_fields(message: &Message<'_>) -> HeaderFields {
    let flags = message.flags();
    HeaderFields {
        id: message.id(),
        qr: flags.qr(),
        opcode: flags.opcode().0,
        aa: flags.aa(),
        tc: flags.tc(),
        rd: flags.rd(),
        ra: flags.ra(),
        ad: flags.ad(),
        cd: flags.cd(),
        rcode: flags.rcode().header_bits(),
    }
}

fn name(name: Name<'_>, sink: &mut impl Sink) {
    for label in name.labels() {
        sink.label(label);
    }
    sink.name_end();
}

/// Header plus first question; nothing after it is read.
pub fn route<S: Sink>(msg: &[u8], sink: &mut S) -> Outcome {
    let message = Message::parse(msg)?;
    sink.header(&header_fields(&message));
    let question = message.first_question()?.ok_or("no question")?;
    sink.question(question.qtype().0, question.qclass().0);
    name(question.name(), sink);
    Ok(())
}

/// One pass over the message; every record's RDATA is typed and checked.
pub fn walk<S: Sink>(msg: &[u8], sink: &mut S) -> Outcome {
    let message = Message::parse(msg)?;
    sink.header(&header_fields(&message));
    let mut questions = message.questions();
    for question in &mut questions {
        let question = question?;
        sink.question(question.qtype().0, question.qclass().0);
        name(question.name(), sink);
    }
    for record in questions.into_records()? {
        let record = record?;
        if record.rtype() == RecordType::OPT {
            let edns = Edns::from_record(&record)?;
            sink.opt(edns.raw_udp_payload_size(), edns.extended_rcode_bits(), edns.version(), edns.dnssec_ok());
            // Options were checked by `from_record`; report each with its raw data.
            let mut raw = edns.options_wire();
            while let [code_high, code_low, len_high, len_low, rest @ ..] = raw {
                let len = usize::from(u16::from_be_bytes([*len_high, *len_low]));
                let (data, tail) = rest.split_at_checked(len).ok_or("short option")?;
                sink.opt_option(u16::from_be_bytes([*code_high, *code_low]), data);
                raw = tail;
            }
            continue;
        }
        let section = match record.section() {
            WireSection::Answer => Section::Answer,
            WireSection::Authority => Section::Authority,
            _ => Section::Additional,
        };
        sink.record(section, record.rtype().0, record.class().0, record.ttl());
        name(record.name(), sink);
        match record.data()? {
            RecordData::A(addr) => sink.a(addr),
            RecordData::Cname(target) | RecordData::Ns(target) => name(target, sink),
            other => return Err(format!("unexpected RDATA {other:?}").into()),
        }
    }
    Ok(())
}

super::response_data!(NameBuf, |name| name.parse::<NameBuf>().expect("valid name"));

impl ResponseData {
    /// Writes the response straight into the buffer; names are
    /// compressed through the builder's table.
    pub fn build(&self, buf: &mut Vec<u8>) -> Outcome {
        type Data<'n> = RecordData<&'n NameBuf, &'n [u8]>;
        buf.clear();
        let mut builder = MessageBuilder::new(buf)?;
        builder.set_id(0xbeef);
        builder.set_flags(Flags::default().with_qr(true).with_rd(true).with_ra(true));
        builder.push_question(&self.names.qname, RecordType::A, Class::IN)?;
        builder.push(WireSection::Answer, &self.names.qname, Class::IN, 300, &Data::Cname(&self.names.target))?;
        for last in 1..=3 {
            builder.push(
                WireSection::Answer,
                &self.names.target,
                Class::IN,
                60,
                &Data::A(Ipv4Addr::new(192, 0, 2, last)),
            )?;
        }
        for ns in [&self.names.ns1, &self.names.ns2] {
            builder.push(WireSection::Authority, &self.names.zone, Class::IN, 3600, &Data::Ns(ns))?;
        }
        for (ns, last) in [(&self.names.ns1, 53), (&self.names.ns2, 54)] {
            let address = Ipv4Addr::new(198, 51, 100, last);
            builder.push(WireSection::Additional, ns, Class::IN, 3600, &Data::A(address))?;
        }
        builder.set_edns(EdnsHeader { udp_payload_size: 1232, version: 0, dnssec_ok: false });
        builder.push_edns_option(&EdnsOption::Cookie(Cookie { client: CLIENT_COOKIE, server: &SERVER_COOKIE }))?;
        builder.finish()?;
        Ok(())
    }
}

/// Parse header and question in place, then write the answer into the
/// reused buffer: the question's bytes are copied as sent and the answer
/// owner is a pointer to them.
pub fn redirect(query: &[u8], buf: &mut Vec<u8>) -> Outcome {
    buf.clear();
    let message = Message::parse(query)?;
    let question = message.first_question()?.ok_or("no question")?;
    let mut builder = MessageBuilder::response_header_to(buf, message.header())?;
    builder.header_mut().flags = builder.header_mut().flags.with_aa(true);
    builder.push_question(&question.name(), question.qtype(), question.qclass())?;
    builder.push(WireSection::Answer, &question.name(), Class::IN, 60, &RData::A(Ipv4Addr::LOCALHOST))?;
    builder.finish()?;
    Ok(())
}
