//! Relaying a message faithfully: restore the client's ID and question case,
//! and cut it to a client's size at an RRset boundary without re-encoding.
//!
//! Compression pointers only point backwards, so any prefix of a message that
//! ends on a record boundary is still a valid message; the OPT record has a
//! root owner and no names in its data, so it can be moved to the end of such
//! a prefix byte for byte.

use crate::Error;
use crate::build::Buffer;
use crate::iana::RecordType;
use crate::message::{Flags, HEADER_LEN, Header, Message, Section};
use crate::name::{MAX_NAME_LEN, ToName};

/// What [`truncate_for_client`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Truncation {
    /// Length of the message written.
    pub len: usize,
    /// Whether records were dropped.
    pub dropped: bool,
    /// Whether TC was set (records of the answer or authority sections dropped).
    pub tc: bool,
}

/// Set a relayed response's ID.
pub fn set_id(message: &mut [u8], id: u16) {
    if let Some(slot) = message.get_mut(..2) {
        slot.copy_from_slice(&id.to_be_bytes());
    }
}

/// Set a relayed response's RD bit to the client's: RD is set in a query and
/// copied into the response (RFC 1035 §4.1.1), so an upstream's answer to our
/// own query must not pass its RD bit on to a client that asked otherwise
/// (`dig +norecurse`). Every other bit is left as the upstream sent it. Does
/// nothing to a message shorter than the flags word.
pub fn set_rd(message: &mut [u8], rd: bool) {
    if let Some(flags) = message.get_mut(2) {
        // RD is the lowest bit of the header's third octet.
        if rd {
            *flags |= 0x01;
        } else {
            *flags &= !0x01;
        }
    }
}

/// Set a relayed response's AD bit: a validator keeps one copy of a secure
/// answer and shows AD only to the clients that understand it (RFC 6840
/// §5.8). Does nothing to a message shorter than the flags word.
pub fn set_ad(message: &mut [u8], ad: bool) {
    if let Some(flags) = message.get_mut(3) {
        // AD is bit 5 of the header's fourth octet (RFC 4035 §3.2.3).
        if ad {
            *flags |= 0x20;
        } else {
            *flags &= !0x20;
        }
    }
}

/// Write the client's spelling of the question name over the response's
/// first question, if they are the same name and the response's copy is
/// stored uncompressed at the usual place. Returns whether it did.
pub fn restore_question_case(response: &mut [u8], original: &impl ToName) -> bool {
    let mut scratch = [0u8; MAX_NAME_LEN];
    let original = original.flat(&mut scratch);
    let Ok(message) = Message::parse(response) else { return false };
    let Ok(Some(question)) = message.first_question() else { return false };
    let name = question.name();
    let Some(stored) = name.as_flat() else { return false };
    if !stored.eq_ignore_ascii_case(original) || question.offset() != HEADER_LEN {
        return false;
    }
    match response.get_mut(HEADER_LEN..HEADER_LEN + original.len()) {
        Some(slot) => {
            slot.copy_from_slice(original);
            true
        }
        None => false,
    }
}

/// Copy `message` into `out`, cut to at most `limit` bytes if needed.
///
/// Whole RRsets are dropped from the end (RFC 2181 §9); the OPT record is
/// kept; TC is set when answer or authority records had to go. If even the
/// header, questions and OPT do not fit, those are written alone with TC.
pub fn truncate_for_client(message: &[u8], limit: usize, out: &mut impl Buffer) -> Result<Truncation, Error> {
    if message.len() <= limit {
        out.put(message)?;
        return Ok(Truncation { len: message.len(), dropped: false, tc: false });
    }
    let parsed = Message::parse(message)?;
    let mut header = parsed.header();
    let mut questions = parsed.questions();
    for question in &mut questions {
        question?;
    }
    let mut records = questions.into_records()?;
    let questions_end = records.position();

    // The OPT record is kept whatever else goes.
    let mut opt: Option<(usize, usize)> = None;
    for record in &mut records {
        let record = record?;
        if record.rtype() == RecordType::OPT {
            opt = Some((record.offset(), record.end()));
        }
    }
    // Choose the longest prefix ending on an RRset boundary (and before the
    // OPT record) that fits with the OPT record appended.
    let opt_len = opt.map_or(0, |(start, end)| end - start);
    let budget = limit.saturating_sub(opt_len);
    let mut chosen = (questions_end, [0u16; 3]);
    let mut counts = [0u16; 3];
    let mut previous: Option<(Section, RecordType, usize)> = None;
    let mut records = parsed.records()?;
    let mut pending: Option<(usize, [u16; 3])> = None;
    for record in &mut records {
        let record = record?;
        if record.rtype() == RecordType::OPT {
            break;
        }
        let same_rrset = previous.is_some_and(|(section, rtype, name_offset)| {
            section == record.section()
                && rtype == record.rtype()
                && crate::name::Name::from_message(message, name_offset).is_ok_and(|(name, _)| name == record.name())
        });
        if !same_rrset {
            // The previous RRset ended here: accept it if it fit.
            if let Some((end, at_counts)) = pending.take() {
                if end <= budget {
                    chosen = (end, at_counts);
                } else {
                    break;
                }
            }
            previous = Some((record.section(), record.rtype(), record.offset()));
        }
        let index = match record.section() {
            Section::Answer => 0,
            Section::Authority => 1,
            _ => 2,
        };
        if let Some(count) = counts.get_mut(index) {
            *count += 1;
        }
        pending = Some((record.end(), counts));
    }
    if let Some((end, at_counts)) = pending
        && end <= budget
    {
        chosen = (end, at_counts);
    }
    let (end, kept) = if questions_end <= budget { chosen } else { (HEADER_LEN, [0; 3]) };
    let total = [header.ancount, header.nscount, header.arcount.saturating_sub(u16::from(opt.is_some()))];
    let answer_or_authority_dropped = kept.first() != total.first() || kept.get(1) != total.get(1);
    let tc = answer_or_authority_dropped || end == HEADER_LEN;
    header.ancount = kept.first().copied().unwrap_or_default();
    header.nscount = kept.get(1).copied().unwrap_or_default();
    header.arcount = kept.get(2).copied().unwrap_or_default() + u16::from(opt.is_some());
    if end == HEADER_LEN {
        header.qdcount = 0;
    }
    if tc {
        header.flags = Flags(header.flags.0).with_tc(true);
    }
    let start_len = out.len();
    out.put(&header.to_bytes())?;
    out.put(message.get(HEADER_LEN..end).unwrap_or(&[]))?;
    if let Some((opt_start, opt_end)) = opt {
        out.put(message.get(opt_start..opt_end).unwrap_or(&[]))?;
    }
    Ok(Truncation { len: out.len() - start_len, dropped: true, tc })
}

/// The header of a relayed message with TC forced, for callers building
/// their own truncated answers.
pub fn header_with_tc(header: Header) -> Header {
    Header { flags: header.flags.with_tc(true), ..header }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::MessageBuilder;
    use crate::edns::{EdnsHeader, EdnsOption};
    use crate::iana::Class;
    use crate::name::NameBuf;
    use crate::rdata::RDataBuf;
    use bytes::BytesMut;

    fn big_response() -> BytesMut {
        let mut buffer = BytesMut::new();
        let mut builder = MessageBuilder::new(&mut buffer).expect("header");
        builder.set_flags(Flags::default().with_qr(true).with_rd(true).with_ra(true));
        let owner: NameBuf = "big.example.com".parse().expect("name");
        builder.push_question(&owner, RecordType::TXT, Class::IN).expect("fits");
        for index in 0..20u8 {
            let text = RDataBuf::Txt(crate::rdata::Txt::from_strings([vec![b'a' + index; 60]]).expect("txt"));
            builder.push(Section::Answer, &owner, Class::IN, 60, &text).expect("fits");
        }
        let ns: NameBuf = "ns.example.com".parse().expect("name");
        builder
            .push(
                Section::Authority,
                &"example.com".parse::<NameBuf>().expect("name"),
                Class::IN,
                60,
                &RDataBuf::Ns(ns.clone()),
            )
            .expect("fits");
        builder.push(Section::Additional, &ns, Class::IN, 60, &RDataBuf::A([192, 0, 2, 53].into())).expect("fits");
        builder.set_edns(EdnsHeader::default());
        builder.push_edns_option(&EdnsOption::Nsid(b"relay-test")).expect("fits");
        builder.finish().expect("done");
        buffer
    }

    #[test]
    fn small_messages_are_copied_unchanged() {
        let response = big_response();
        let mut out = Vec::new();
        let result = truncate_for_client(&response, 65535, &mut out).expect("ok");
        assert_eq!(out, response.to_vec());
        assert!(!result.dropped && !result.tc);
    }

    #[test]
    fn large_answers_lose_whole_rrsets_keep_opt_and_set_tc() {
        let response = big_response();
        assert!(response.len() > 1232);
        let mut out = Vec::new();
        let result = truncate_for_client(&response, 512, &mut out).expect("ok");
        assert!(result.tc && result.len <= 512);
        let message = Message::parse(&out).expect("parses");
        message.check().expect("still valid");
        assert!(message.flags().tc());
        // The TXT RRset is one RRset: it goes entirely.
        assert_eq!(message.header().ancount, 0);
        assert_eq!(message.header().qdcount, 1);
        let edns = message.edns().expect("ok").expect("OPT kept");
        assert_eq!(edns.option(crate::iana::OptionCode::NSID), Some(EdnsOption::Nsid(b"relay-test")));
    }

    #[test]
    fn additional_records_go_without_tc() {
        let response = big_response();
        let message = Message::parse(&response).expect("parses");
        let additional_start = message.additional().expect("ok").next().expect("glue").expect("valid").offset();
        let opt_len = 11 + 4 + 10;
        let limit = additional_start + opt_len + 5;
        let mut out = Vec::new();
        let result = truncate_for_client(&response, limit, &mut out).expect("ok");
        assert!(result.dropped && !result.tc);
        let cut = Message::parse(&out).expect("parses");
        cut.check().expect("valid");
        assert_eq!(cut.header().ancount, 20);
        assert_eq!(cut.header().arcount, 1);
    }

    #[test]
    fn rd_follows_the_client_and_nothing_else_changes() {
        let response = big_response().to_vec();
        let before = Message::parse(&response).expect("parses").flags();
        assert!(before.rd());
        let mut relayed = response.clone();
        set_rd(&mut relayed, false);
        let after = Message::parse(&relayed).expect("parses").flags();
        assert!(!after.rd());
        assert_eq!(after, before.with_rd(false));
        assert_eq!(relayed[..2], response[..2]);
        assert_eq!(relayed[3..], response[3..]);
        set_rd(&mut relayed, true);
        assert_eq!(relayed, response);
        // An upstream that cleared RD for a client that set it.
        let mut cleared = response.clone();
        cleared[2] &= !0x01;
        set_rd(&mut cleared, true);
        assert_eq!(cleared, response);
        // Too short to hold the flags: left alone.
        let mut short = [0xbe, 0xef];
        set_rd(&mut short, true);
        assert_eq!(short, [0xbe, 0xef]);
    }

    #[test]
    fn ad_is_set_and_cleared_alone() {
        let response = big_response().to_vec();
        let before = Message::parse(&response).expect("parses").flags();
        let mut relayed = response.clone();
        set_ad(&mut relayed, true);
        let after = Message::parse(&relayed).expect("parses").flags();
        assert!(after.ad());
        assert_eq!(after, before.with_ad(true));
        assert_eq!(relayed[..3], response[..3]);
        assert_eq!(relayed[4..], response[4..]);
        set_ad(&mut relayed, false);
        assert_eq!(Message::parse(&relayed).expect("parses").flags(), before.with_ad(false));
        let mut short = [0xbe, 0xef, 0x01];
        set_ad(&mut short, true);
        assert_eq!(short, [0xbe, 0xef, 0x01]);
    }

    #[test]
    fn question_case_and_id_are_restored() {
        let mut response = big_response().to_vec();
        let original: NameBuf = "BiG.eXaMpLe.CoM".parse().expect("name");
        assert!(restore_question_case(&mut response, &original));
        set_id(&mut response, 0x4242);
        let message = Message::parse(&response).expect("parses");
        assert_eq!(message.id(), 0x4242);
        assert_eq!(message.first_question().expect("ok").expect("one").name().to_string(), "BiG.eXaMpLe.CoM.");
        let other: NameBuf = "other.example.com".parse().expect("name");
        assert!(!restore_question_case(&mut response, &other));
    }
}
