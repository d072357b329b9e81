//! simple-dns: `Packet::parse` decodes the whole packet into vectors of
//! borrowed records (it lifts the OPT record into the header); building
//! writes a `Packet` through `write_compressed_to`.

use std::borrow::Cow;
use std::io::Cursor;
use std::net::Ipv4Addr;

use crate::{CLIENT_COOKIE, HeaderFields, SERVER_COOKIE, Section, Sink};
use simple_dns::rdata::{A, CNAME, NS, OPT, OPTCode, RData};
use simple_dns::{CLASS, Name, Packet, PacketFlag, Question, ResourceRecord, TYPE};

use super::Outcome;

fn header_fields(packet: &Packet<'_>) -> HeaderFields {
    HeaderFields {
        id: packet.id(),
        qr: packet.has_flags(PacketFlag::RESPONSE),
        opcode: packet.opcode() as u8,
        aa: packet.has_flags(PacketFlag::AUTHORITATIVE_ANSWER),
        tc: packet.has_flags(PacketFlag::TRUNCATION),
        rd: packet.has_flags(PacketFlag::RECURSION_DESIRED),
        ra: packet.has_flags(PacketFlag::RECURSION_AVAILABLE),
        ad: packet.has_flags(PacketFlag::AUTHENTIC_DATA),
        cd: packet.has_flags(PacketFlag::CHECKING_DISABLED),
        rcode: packet.rcode() as u8 & 0x0f,
    }
}

fn name(name: &Name<'_>, sink: &mut impl Sink) {
    for label in name.get_labels() {
        sink.label(label.as_ref());
    }
    sink.name_end();
}

/// simple-dns has no header-only or question-only decoder:
/// `Packet::parse` decodes the whole packet, OPT included.
pub fn route<S: Sink>(msg: &[u8], sink: &mut S) -> Outcome {
    let packet = Packet::parse(msg)?;
    sink.header(&header_fields(&packet));
    let question = packet.questions.first().ok_or("no question")?;
    sink.question(u16::from(question.qtype), u16::from(question.qclass));
    name(&question.qname, sink);
    Ok(())
}

fn record(section: Section, rr: &ResourceRecord<'_>, sink: &mut impl Sink) -> Outcome {
    sink.record(section, u16::from(rr.rdata.type_code()), u16::from(rr.class), rr.ttl);
    name(&rr.name, sink);
    match &rr.rdata {
        RData::A(a) => sink.a(Ipv4Addr::from_bits(a.address)),
        RData::CNAME(cname) => name(&cname.0, sink),
        RData::NS(ns) => name(&ns.0, sink),
        other => return Err(format!("unexpected RDATA {other:?}").into()),
    }
    Ok(())
}

/// `Packet::parse`, then reads every field. simple-dns does not expose
/// the OPT record's DO bit (it drops the EDNS flags) and merges the
/// extended RCODE into the packet's RCODE.
pub fn walk<S: Sink>(msg: &[u8], sink: &mut S) -> Outcome {
    let packet = Packet::parse(msg)?;
    sink.header(&header_fields(&packet));
    for question in &packet.questions {
        sink.question(u16::from(question.qtype), u16::from(question.qclass));
        name(&question.qname, sink);
    }
    for rr in &packet.answers {
        record(Section::Answer, rr, sink)?;
    }
    for rr in &packet.name_servers {
        record(Section::Authority, rr, sink)?;
    }
    for rr in &packet.additional_records {
        record(Section::Additional, rr, sink)?;
    }
    if let Some(opt) = packet.opt() {
        let ext_rcode = ((packet.rcode() as u16) >> 4) as u8;
        sink.opt(opt.udp_packet_size, ext_rcode, opt.version, false);
        for option in &opt.opt_codes {
            sink.opt_option(option.code, &option.data);
        }
    }
    Ok(())
}

super::response_data!(Name<'static>, |name| Name::new(name).expect("valid name"), cookie: Vec<u8> = [CLIENT_COOKIE.as_slice(), &SERVER_COOKIE].concat());

impl ResponseData {
    /// Builds a `Packet` (records own their `Name`s, so names are
    /// cloned; labels stay borrowed) and writes it with compression.
    pub fn build(&self, buf: &mut Vec<u8>) -> Outcome {
        let mut packet = Packet::new_reply(0xbeef);
        packet.set_flags(PacketFlag::RECURSION_DESIRED | PacketFlag::RECURSION_AVAILABLE);
        packet.questions.push(Question::new(self.names.qname.clone(), TYPE::A.into(), CLASS::IN.into(), false));
        packet.answers.push(ResourceRecord::new(
            self.names.qname.clone(),
            CLASS::IN,
            300,
            RData::CNAME(CNAME(self.names.target.clone())),
        ));
        for last in 1..=3 {
            packet.answers.push(ResourceRecord::new(
                self.names.target.clone(),
                CLASS::IN,
                60,
                RData::A(A { address: Ipv4Addr::new(192, 0, 2, last).to_bits() }),
            ));
        }
        for ns in [&self.names.ns1, &self.names.ns2] {
            packet.name_servers.push(ResourceRecord::new(
                self.names.zone.clone(),
                CLASS::IN,
                3600,
                RData::NS(NS(ns.clone())),
            ));
        }
        for (ns, last) in [(&self.names.ns1, 53), (&self.names.ns2, 54)] {
            packet.additional_records.push(ResourceRecord::new(
                ns.clone(),
                CLASS::IN,
                3600,
                RData::A(A { address: Ipv4Addr::new(198, 51, 100, last).to_bits() }),
            ));
        }
        *packet.opt_mut() = Some(OPT {
            opt_codes: vec![OPTCode { code: 10, data: Cow::Borrowed(&self.cookie) }],
            udp_packet_size: 1232,
            version: 0,
        });

        buf.clear();
        packet.write_compressed_to(&mut Cursor::new(buf))?;
        Ok(())
    }
}

/// `Packet::parse`, then turns the parsed packet into the reply in
/// place (`into_reply` keeps the question vector) and writes it.
pub fn redirect(query: &[u8], buf: &mut Vec<u8>) -> Outcome {
    let packet = Packet::parse(query)?;
    let rd = packet.has_flags(PacketFlag::RECURSION_DESIRED);
    let mut reply = packet.into_reply();
    reply.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
    if rd {
        reply.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    reply.questions.truncate(1);
    reply.answers.clear();
    reply.name_servers.clear();
    reply.additional_records.clear();
    let qname = reply.questions.first().ok_or("no question")?.qname.clone();
    reply.answers.push(ResourceRecord::new(
        qname,
        CLASS::IN,
        60,
        RData::A(A { address: Ipv4Addr::LOCALHOST.to_bits() }),
    ));

    buf.clear();
    reply.write_compressed_to(&mut Cursor::new(buf))?;
    Ok(())
}
