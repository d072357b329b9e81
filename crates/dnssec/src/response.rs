//! Shaping a validated upstream response for the client, and the queries
//! the validator sends.

use signpost_wire::{Class, EdnsHeader, Flags, HEADER_LEN, Message, MessageBuilder, NameBuf, RecordType};

use crate::Error;

/// The record types RFC 4035 §3.2.1 keeps from a client that did not set DO
/// (unless it asked for that type).
fn is_dnssec_type(rtype: RecordType) -> bool {
    matches!(rtype, RecordType::RRSIG | RecordType::NSEC | RecordType::NSEC3)
}

/// The response for the client: AD set when `secure` and cleared otherwise
/// (RFC 4035 §3.2.3, RFC 6840 §5.8), and without RRSIG, NSEC and NSEC3
/// records when the client did not set DO (RFC 3225 §3), since the validator
/// asked upstream with DO on the client's behalf.
pub fn for_client(response: &[u8], secure: bool, client_dnssec_ok: bool) -> Result<Vec<u8>, Error> {
    let message = Message::parse(response)?;
    let qtype = message.first_question()?.map(|question| question.qtype());
    let keep = |rtype: RecordType| client_dnssec_ok || !is_dnssec_type(rtype) || Some(rtype) == qtype;
    let strip = message.records()?.any(|record| record.is_ok_and(|record| !keep(record.rtype())));
    let flags = message.flags().with_ad(secure);
    if !strip {
        let mut out = response.to_vec();
        if let Some(header) = out.get_mut(..HEADER_LEN) {
            let mut parsed = message.header();
            parsed.flags = flags;
            header.copy_from_slice(&parsed.to_bytes());
        }
        return Ok(out);
    }
    let mut out = Vec::with_capacity(response.len());
    let mut builder = MessageBuilder::new(&mut out)?;
    builder.set_id(message.id());
    builder.set_flags(flags);
    for question in message.questions() {
        let question = question?;
        builder.push_question(&question.name(), question.qtype(), question.qclass())?;
    }
    for record in message.records()? {
        let record = record?;
        if record.rtype() == RecordType::OPT || !keep(record.rtype()) {
            continue;
        }
        builder.push_record(record.section(), &record)?;
    }
    if let Some(edns) = message.edns()? {
        builder.set_edns(EdnsHeader {
            udp_payload_size: edns.raw_udp_payload_size(),
            version: edns.version(),
            dnssec_ok: edns.dnssec_ok(),
        });
        for option in edns.options() {
            builder.push_edns_option(&option?)?;
        }
    }
    builder.finish()?;
    Ok(out)
}

/// Lower every TTL in `response` (OPT aside) to at most `limit`: validated
/// data may not outlive its signatures (RFC 4035 §5.3.3).
pub fn cap_ttls(response: &mut [u8], limit: u32) -> Result<(), Error> {
    let mut fields = Vec::new();
    for record in Message::parse(response)?.records()? {
        let record = record?;
        if record.rtype() != RecordType::OPT && record.ttl() > limit {
            fields.push(record.data_offset().saturating_sub(6));
        }
    }
    for offset in fields {
        if let Some(field) = response.get_mut(offset..offset + 4) {
            field.copy_from_slice(&limit.to_be_bytes());
        }
    }
    Ok(())
}

/// A query the validator sends upstream for the chain of trust: RD, CD and
/// DO set, so a validating upstream passes on what it would call bogus.
pub fn chain_query(id: u16, name: &NameBuf, rtype: RecordType, udp_payload_size: u16) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(64 + name.wire_len());
    let mut builder = MessageBuilder::new(&mut out)?;
    builder.set_id(id);
    builder.set_flags(Flags::default().with_rd(true).with_cd(true));
    builder.push_question(name, rtype, Class::IN)?;
    builder.set_edns(EdnsHeader { udp_payload_size, version: 0, dnssec_ok: true });
    builder.finish()?;
    Ok(out)
}

/// The types of a section's records, for tests.
#[cfg(test)]
fn types_in(response: &[u8], section: signpost_wire::Section) -> Vec<RecordType> {
    let message = Message::parse(response).expect("parses");
    message.section(section).expect("section").map(|record| record.expect("record").rtype()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use signpost_wire::{RData, Section};

    fn signed_answer(ad: bool) -> Vec<u8> {
        let name = NameBuf::from_presentation("www.example.").expect("name");
        let mut out = Vec::new();
        let mut builder = MessageBuilder::new(&mut out).expect("builder");
        builder.set_id(9);
        builder.set_flags(Flags::default().with_qr(true).with_ad(ad));
        builder.push_question(&name, RecordType::A, Class::IN).expect("question");
        builder.push(Section::Answer, &name, Class::IN, 60, &RData::A([192, 0, 2, 1].into())).expect("A");
        builder.push_raw(Section::Answer, &name, RecordType::RRSIG, Class::IN, 60, &[0; 20]).expect("RRSIG");
        builder.push_raw(Section::Authority, &name, RecordType::NSEC, Class::IN, 60, &[0, 0, 1, 0x40]).expect("NSEC");
        builder.set_edns(EdnsHeader { udp_payload_size: 1232, version: 0, dnssec_ok: true });
        builder.finish().expect("finish");
        out
    }

    #[test]
    fn ad_follows_the_verdict() {
        let secure = for_client(&signed_answer(false), true, true).expect("shaped");
        assert!(Message::parse(&secure).expect("parses").flags().ad());
        let insecure = for_client(&signed_answer(true), false, true).expect("shaped");
        assert!(!Message::parse(&insecure).expect("parses").flags().ad());
        assert_eq!(types_in(&insecure, Section::Answer), vec![RecordType::A, RecordType::RRSIG]);
    }

    #[test]
    fn dnssec_records_go_unless_the_client_set_do() {
        let stripped = for_client(&signed_answer(false), true, false).expect("shaped");
        let message = Message::parse(&stripped).expect("parses");
        assert!(message.flags().ad());
        assert_eq!(message.id(), 9);
        assert_eq!(types_in(&stripped, Section::Answer), vec![RecordType::A]);
        assert!(types_in(&stripped, Section::Authority).is_empty());
        assert!(message.edns().expect("edns").is_some());
    }

    #[test]
    fn ttls_are_capped() {
        let mut response = signed_answer(false);
        cap_ttls(&mut response, 30).expect("capped");
        let message = Message::parse(&response).expect("parses");
        for record in message.records().expect("records") {
            let record = record.expect("record");
            if record.rtype() != RecordType::OPT {
                assert_eq!(record.ttl(), 30);
            }
        }
    }

    #[test]
    fn chain_queries_set_do_and_cd() {
        let name = NameBuf::from_presentation("example.").expect("name");
        let query = chain_query(5, &name, RecordType::DNSKEY, 1232).expect("query");
        let message = Message::parse(&query).expect("parses");
        assert!(message.flags().cd() && message.flags().rd());
        assert!(message.edns().expect("edns").expect("opt").dnssec_ok());
    }
}
