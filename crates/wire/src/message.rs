//! Zero-copy message views: the header, questions and lazily iterated records.

use core::fmt;

use crate::Error;
use crate::edns::Edns;
use crate::iana::{Class, Opcode, Rcode, RecordType};
use crate::name::{Name, NameMemo, parse_in_message};
use crate::rdata::RData;

/// Size of the fixed DNS header.
pub const HEADER_LEN: usize = 12;

/// The four sections of a message.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Section {
    /// The question section.
    Question,
    /// The answer section.
    Answer,
    /// The authority section.
    Authority,
    /// The additional section.
    Additional,
}

impl Section {
    /// The section after this one.
    pub fn next(self) -> Option<Self> {
        match self {
            Self::Question => Some(Self::Answer),
            Self::Answer => Some(Self::Authority),
            Self::Authority => Some(Self::Additional),
            Self::Additional => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Question => 0,
            Self::Answer => 1,
            Self::Authority => 2,
            Self::Additional => 3,
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Question => "question",
            Self::Answer => "answer",
            Self::Authority => "authority",
            Self::Additional => "additional",
        })
    }
}

/// The 16-bit flags word of the header: QR, opcode, AA, TC, RD, RA, Z, AD, CD and rcode.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u16);

macro_rules! flag_bit {
    ($get:ident, $set:ident, $bit:expr, $doc:literal) => {
        #[doc = concat!("The ", $doc, " bit.")]
        pub fn $get(self) -> bool {
            self.0 & $bit != 0
        }

        #[doc = concat!("A copy with the ", $doc, " bit set to `value`.")]
        #[must_use]
        pub fn $set(self, value: bool) -> Self {
            if value { Self(self.0 | $bit) } else { Self(self.0 & !$bit) }
        }
    };
}

impl Flags {
    flag_bit!(qr, with_qr, 0x8000, "QR (response)");
    flag_bit!(aa, with_aa, 0x0400, "AA (authoritative answer)");
    flag_bit!(tc, with_tc, 0x0200, "TC (truncated)");
    flag_bit!(rd, with_rd, 0x0100, "RD (recursion desired)");
    flag_bit!(ra, with_ra, 0x0080, "RA (recursion available)");
    flag_bit!(z, with_z, 0x0040, "Z (reserved)");
    flag_bit!(ad, with_ad, 0x0020, "AD (authentic data)");
    flag_bit!(cd, with_cd, 0x0010, "CD (checking disabled)");

    /// The opcode.
    pub fn opcode(self) -> Opcode {
        Opcode(((self.0 >> 11) & 0x0f) as u8)
    }

    /// A copy with the opcode replaced.
    #[must_use]
    pub fn with_opcode(self, opcode: Opcode) -> Self {
        Self((self.0 & !0x7800) | (u16::from(opcode.0 & 0x0f) << 11))
    }

    /// The header's four rcode bits (without EDNS extended bits).
    pub fn rcode(self) -> Rcode {
        Rcode(self.0 & 0x000f)
    }

    /// A copy with the header's rcode bits set from `rcode` (its low four bits).
    #[must_use]
    pub fn with_rcode(self, rcode: Rcode) -> Self {
        Self((self.0 & !0x000f) | u16::from(rcode.header_bits()))
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.opcode(), self.rcode())?;
        for (set, name) in [
            (self.qr(), "qr"),
            (self.aa(), "aa"),
            (self.tc(), "tc"),
            (self.rd(), "rd"),
            (self.ra(), "ra"),
            (self.z(), "z"),
            (self.ad(), "ad"),
            (self.cd(), "cd"),
        ] {
            if set {
                write!(f, " {name}")?;
            }
        }
        Ok(())
    }
}

/// The fixed 12-byte header.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Header {
    /// Message ID.
    pub id: u16,
    /// Flags, opcode and rcode.
    pub flags: Flags,
    /// Entries in the question section.
    pub qdcount: u16,
    /// Records in the answer section.
    pub ancount: u16,
    /// Records in the authority section.
    pub nscount: u16,
    /// Records in the additional section.
    pub arcount: u16,
}

impl Header {
    /// Read the header from the first 12 bytes.
    #[inline]
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let Some(&[i0, i1, f0, f1, q0, q1, a0, a1, n0, n1, r0, r1]) = bytes.first_chunk::<HEADER_LEN>() else {
            return Err(Error::ShortHeader { len: bytes.len() });
        };
        Ok(Self {
            id: u16::from_be_bytes([i0, i1]),
            flags: Flags(u16::from_be_bytes([f0, f1])),
            qdcount: u16::from_be_bytes([q0, q1]),
            ancount: u16::from_be_bytes([a0, a1]),
            nscount: u16::from_be_bytes([n0, n1]),
            arcount: u16::from_be_bytes([r0, r1]),
        })
    }

    /// The wire form.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        for (chunk, value) in
            out.chunks_exact_mut(2).zip([self.id, self.flags.0, self.qdcount, self.ancount, self.nscount, self.arcount])
        {
            chunk.copy_from_slice(&value.to_be_bytes());
        }
        out
    }

    /// The count of the given section.
    pub fn count(&self, section: Section) -> u16 {
        match section {
            Section::Question => self.qdcount,
            Section::Answer => self.ancount,
            Section::Authority => self.nscount,
            Section::Additional => self.arcount,
        }
    }
}

/// A message read in place. Creating it checks only the header; sections are
/// read lazily, and each entry is validated as it is reached.
#[derive(Clone, Copy)]
pub struct Message<'a> {
    bytes: &'a [u8],
    header: Header,
}

impl<'a> Message<'a> {
    /// View `bytes` as a message. Fails only if there is no complete header.
    #[inline]
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        Ok(Self { header: Header::parse(bytes)?, bytes })
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// The message ID.
    pub fn id(&self) -> u16 {
        self.header.id
    }

    /// The flags word.
    pub fn flags(&self) -> Flags {
        self.header.flags
    }

    /// The opcode.
    pub fn opcode(&self) -> Opcode {
        self.header.flags.opcode()
    }

    /// The questions, in order.
    pub fn questions(&self) -> Questions<'a> {
        Questions {
            message: self.bytes,
            position: HEADER_LEN,
            remaining: self.header.qdcount,
            header: self.header,
            memo: NameMemo::default(),
        }
    }

    /// The first question, reading nothing past it: what a proxy routes on.
    #[inline(always)]
    pub fn first_question(&self) -> Result<Option<Question<'a>>, Error> {
        if self.header.qdcount == 0 {
            return Ok(None);
        }
        if self.bytes.len() <= HEADER_LEN {
            return Err(Error::MissingRecords {
                section: Section::Question,
                expected: self.header.qdcount,
                found: 0,
                offset: HEADER_LEN,
            });
        }
        read_question(self.bytes, HEADER_LEN, None).map(Some)
    }

    /// Records of the answer, authority and additional sections, in order.
    pub fn records(&self) -> Result<Records<'a>, Error> {
        self.questions().into_records()
    }

    /// Records of one section only.
    pub fn section(&self, section: Section) -> Result<Records<'a>, Error> {
        let mut records = self.records()?;
        records.skip_to(section)?;
        records.stop_after(section);
        Ok(records)
    }

    /// The answer section.
    pub fn answers(&self) -> Result<Records<'a>, Error> {
        self.section(Section::Answer)
    }

    /// The authority section.
    pub fn authority(&self) -> Result<Records<'a>, Error> {
        self.section(Section::Authority)
    }

    /// The additional section.
    pub fn additional(&self) -> Result<Records<'a>, Error> {
        self.section(Section::Additional)
    }

    /// The OPT record's EDNS data, if the message has one.
    pub fn edns(&self) -> Result<Option<Edns<'a>>, Error> {
        for record in self.additional()? {
            let record = record?;
            if record.rtype() == RecordType::OPT {
                return Edns::from_record(&record).map(Some);
            }
        }
        Ok(None)
    }

    /// The full rcode: the header's bits combined with the OPT record's extended bits.
    pub fn rcode(&self) -> Result<Rcode, Error> {
        let extended = self.edns()?.map_or(0, |edns| edns.extended_rcode_bits());
        Ok(Rcode::from_parts(self.header.flags.rcode().header_bits(), extended))
    }

    /// Walk the whole message and check every field: names, every record's
    /// typed RDATA, EDNS rules (one OPT, in the additional section, root
    /// owner) and that nothing trails the last record.
    pub fn check(&self) -> Result<(), Error> {
        self.checked_rcode().map(|_| ())
    }

    /// [`check`](Self::check) and [`rcode`](Self::rcode) in one walk: the
    /// full rcode of a message whose every field was checked.
    pub fn checked_rcode(&self) -> Result<Rcode, Error> {
        let mut extended = 0;
        let mut questions = self.questions();
        for question in &mut questions {
            question?;
        }
        let mut records = questions.into_records()?;
        let mut seen_opt = false;
        for record in &mut records {
            let record = record?;
            record.data()?;
            if record.rtype() == RecordType::OPT {
                if record.section() != Section::Additional || !record.name().is_root() {
                    return Err(Error::MisplacedOpt { offset: record.offset() });
                }
                if seen_opt {
                    return Err(Error::DuplicateOpt { offset: record.offset() });
                }
                seen_opt = true;
                extended = Edns::from_record(&record).map_or(0, |edns| edns.extended_rcode_bits());
            }
        }
        let end = records.position();
        if end < self.bytes.len() {
            return Err(Error::TrailingData { offset: end, len: self.bytes.len() - end });
        }
        Ok(Rcode::from_parts(self.header.flags.rcode().header_bits(), extended))
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("header", &self.header).field("len", &self.bytes.len()).finish()
    }
}

/// One entry of the question section.
#[derive(Clone, Copy, Debug)]
pub struct Question<'a> {
    /// Read from the message at the question's offset.
    name: Name<'a>,
    qtype: RecordType,
    qclass: Class,
    end: u32,
}

impl<'a> Question<'a> {
    /// The name asked about, in its original case.
    pub fn name(&self) -> Name<'a> {
        self.name
    }

    /// The type asked for.
    pub fn qtype(&self) -> RecordType {
        self.qtype
    }

    /// The class asked for.
    pub fn qclass(&self) -> Class {
        self.qclass
    }

    /// Where the question starts in the message.
    pub fn offset(&self) -> usize {
        self.name.start()
    }

    /// The question's bytes as they appear in the message (may hold pointers).
    pub fn raw(&self) -> &'a [u8] {
        self.name.message().get(self.offset()..self.end as usize).unwrap_or(&[])
    }
}

/// Iterator over the question section.
#[derive(Clone, Debug)]
pub struct Questions<'a> {
    message: &'a [u8],
    position: usize,
    /// Questions still to read; 0 after an error too.
    remaining: u16,
    header: Header,
    memo: NameMemo,
}

impl<'a> Questions<'a> {
    /// Continue with the records after the questions, reading any questions not yet read.
    #[inline(always)]
    pub fn into_records(mut self) -> Result<Records<'a>, Error> {
        for question in self.by_ref() {
            question?;
        }
        let header = self.header;
        let mut records = Records {
            message: self.message,
            position: self.position,
            section: Section::Answer,
            remaining: header.ancount,
            counts: [header.qdcount, header.ancount, header.nscount, header.arcount],
            stop_after: Section::Additional,
            failed: false,
            memo: self.memo,
        };
        records.advance_empty_sections();
        Ok(records)
    }

    /// The error for a question section that ends early; nothing more is read.
    #[cold]
    fn missing(&mut self) -> Error {
        let expected = self.header.qdcount;
        let error = Error::MissingRecords {
            section: Section::Question,
            expected,
            found: expected - self.remaining,
            offset: self.position,
        };
        self.remaining = 0;
        error
    }
}

impl<'a> Iterator for Questions<'a> {
    type Item = Result<Question<'a>, Error>;

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        if self.position >= self.message.len() {
            return Some(Err(self.missing()));
        }
        match read_question(self.message, self.position, Some(&mut self.memo)) {
            Ok(question) => {
                self.remaining -= 1;
                self.position = question.end as usize;
                Some(Ok(question))
            }
            Err(error) => {
                self.remaining = 0;
                Some(Err(error))
            }
        }
    }
}

#[inline(always)]
fn read_question<'a>(message: &'a [u8], offset: usize, memo: Option<&mut NameMemo>) -> Result<Question<'a>, Error> {
    let parsed = parse_in_message(message, offset, memo)?;
    let after = parsed.end;
    let Some(&[t0, t1, c0, c1]) = message.get(after..).and_then(<[u8]>::first_chunk::<4>) else {
        return Err(short_fixed_fields(message, after));
    };
    // Names start at a u32 offset, and the fixed fields were found in the message.
    let end = u32::try_from(after + 4).map_err(|_| Error::UnexpectedEnd { offset: after, needed: 0 })?;
    Ok(Question {
        name: parsed.name,
        qtype: RecordType(u16::from_be_bytes([t0, t1])),
        qclass: Class(u16::from_be_bytes([c0, c1])),
        end,
    })
}

/// The error for a question's type and class cut short: the first of the two
/// 16-bit fields that does not fit.
#[cold]
fn short_fixed_fields(message: &[u8], after: usize) -> Error {
    let available = message.len().saturating_sub(after);
    if available < 2 {
        Error::UnexpectedEnd { offset: after, needed: 2 - available }
    } else {
        Error::UnexpectedEnd { offset: after + 2, needed: 4 - available }
    }
}

/// A resource record read in place.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The owner, read from the message at the record's offset.
    name: Name<'a>,
    rtype: RecordType,
    class: Class,
    ttl: u32,
    data_start: u32,
    data_len: u16,
    section: Section,
}

impl<'a> Record<'a> {
    /// Read one record at `offset` of `message` (for callers that track offsets themselves).
    pub fn parse(message: &'a [u8], offset: usize, section: Section) -> Result<(Self, usize), Error> {
        let record = read_record(message, offset, section, None)?;
        Ok((record, record.end()))
    }

    /// The owner name, in its original case.
    pub fn name(&self) -> Name<'a> {
        self.name
    }

    /// The record type.
    pub fn rtype(&self) -> RecordType {
        self.rtype
    }

    /// The class (for OPT: the UDP payload size).
    pub fn class(&self) -> Class {
        self.class
    }

    /// The TTL (for OPT: extended rcode, version and flags).
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// The section the record was found in.
    pub fn section(&self) -> Section {
        self.section
    }

    /// Where the record starts in the message.
    pub fn offset(&self) -> usize {
        self.name.start()
    }

    /// Where the RDATA starts in the message.
    pub fn data_offset(&self) -> usize {
        self.data_start as usize
    }

    /// Where the record ends in the message.
    pub fn end(&self) -> usize {
        self.data_offset() + usize::from(self.data_len)
    }

    /// The record's bytes as they appear in the message (may hold pointers).
    pub fn raw(&self) -> &'a [u8] {
        self.name.message().get(self.offset()..self.end()).unwrap_or(&[])
    }

    /// The RDATA bytes as they appear in the message (names may be compressed).
    pub fn raw_data(&self) -> &'a [u8] {
        self.name.message().get(self.data_offset()..self.end()).unwrap_or(&[])
    }

    /// The typed RDATA, checked against its type's rules.
    #[inline]
    pub fn data(&self) -> Result<RData<'a>, Error> {
        RData::parse(self.rtype, self.name.message(), self.data_offset(), usize::from(self.data_len))
    }

    /// The message this record belongs to.
    pub fn message_bytes(&self) -> &'a [u8] {
        self.name.message()
    }
}

#[inline(always)]
fn read_record<'a>(
    message: &'a [u8],
    offset: usize,
    section: Section,
    memo: Option<&mut NameMemo>,
) -> Result<Record<'a>, Error> {
    let parsed = parse_in_message(message, offset, memo)?;
    let after = parsed.end;
    // The fixed fields are read in one bounds check: type, class, TTL, RDLENGTH.
    let Some(&[t0, t1, c0, c1, l0, l1, l2, l3, d0, d1]) = message.get(after..).and_then(<[u8]>::first_chunk::<10>)
    else {
        return Err(Error::UnexpectedEnd { offset: after, needed: after + 10 - message.len().min(after + 10) });
    };
    let data_len = u16::from_be_bytes([d0, d1]);
    let data_start = after + 10;
    let data_end = data_start + usize::from(data_len);
    if data_end > message.len() {
        return Err(Error::UnexpectedEnd { offset: data_start, needed: data_end - message.len() });
    }
    let Ok(data_start32) = u32::try_from(data_start) else {
        return Err(Error::UnexpectedEnd { offset, needed: 0 });
    };
    Ok(Record {
        name: parsed.name,
        rtype: RecordType(u16::from_be_bytes([t0, t1])),
        class: Class(u16::from_be_bytes([c0, c1])),
        ttl: u32::from_be_bytes([l0, l1, l2, l3]),
        data_start: data_start32,
        data_len,
        section,
    })
}

/// Iterator over records of one or more consecutive sections.
#[derive(Clone, Debug)]
pub struct Records<'a> {
    message: &'a [u8],
    position: usize,
    section: Section,
    /// Records still to read in `section`; 0 once nothing more will be read
    /// (all sections done, an error, or `section` is past `stop_after`).
    remaining: u16,
    counts: [u16; 4],
    stop_after: Section,
    failed: bool,
    memo: NameMemo,
}

impl<'a> Records<'a> {
    /// The offset just past the last record read.
    pub fn position(&self) -> usize {
        self.position
    }

    /// The section of the next record.
    pub fn current_section(&self) -> Section {
        self.section
    }

    fn section_count(&self, section: Section) -> u16 {
        self.counts.get(section.index()).copied().unwrap_or_default()
    }

    /// Move past finished and empty sections; stop at `stop_after`.
    fn advance_empty_sections(&mut self) {
        while self.remaining == 0 {
            match self.section.next() {
                Some(next) => {
                    self.section = next;
                    self.remaining = self.section_count(next);
                }
                None => break,
            }
        }
        if self.section > self.stop_after {
            self.remaining = 0;
        }
    }

    /// Read nothing past `section`.
    pub(crate) fn stop_after(&mut self, section: Section) {
        self.stop_after = section;
        if self.section > section {
            self.remaining = 0;
        }
    }

    /// Read (and check) records until `section` starts.
    fn skip_to(&mut self, section: Section) -> Result<(), Error> {
        while self.section < section && self.remaining > 0 {
            match self.next() {
                Some(Err(error)) => return Err(error),
                Some(Ok(_)) => {}
                None => break,
            }
        }
        if self.section < section && !self.failed {
            self.section = section;
            self.remaining = self.section_count(section);
        }
        Ok(())
    }

    /// The error for a section that ends early; nothing more is read.
    #[cold]
    fn missing(&mut self) -> Error {
        let expected = self.section_count(self.section);
        let error = Error::MissingRecords {
            section: self.section,
            expected,
            found: expected - self.remaining,
            offset: self.position,
        };
        self.fail();
        error
    }

    fn fail(&mut self) {
        self.failed = true;
        self.remaining = 0;
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, Error>;

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        if self.position >= self.message.len() {
            return Some(Err(self.missing()));
        }
        match read_record(self.message, self.position, self.section, Some(&mut self.memo)) {
            Ok(record) => {
                self.position = record.end();
                self.remaining -= 1;
                if self.remaining == 0 {
                    self.advance_empty_sections();
                }
                Some(Ok(record))
            }
            Err(error) => {
                self.fail();
                Some(Err(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response to `example.com. A`: one A record using a pointer to the question name.
    #[rustfmt::skip]
    const RESPONSE: &[u8] = &[
        0x12, 0x34,             // id
        0x81, 0x80,             // QR RD RA, NOERROR
        0x00, 0x01,             // qdcount
        0x00, 0x01,             // ancount
        0x00, 0x00,             // nscount
        0x00, 0x00,             // arcount
        7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, // example.com.
        0x00, 0x01,             // qtype A
        0x00, 0x01,             // qclass IN
        0xc0, 0x0c,             // pointer to 12: example.com.
        0x00, 0x01,             // type A
        0x00, 0x01,             // class IN
        0x00, 0x00, 0x0e, 0x10, // ttl 3600
        0x00, 0x04,             // rdlength
        192, 0, 2, 1,           // 192.0.2.1
    ];

    #[test]
    fn reads_header_question_and_answer() {
        let message = Message::parse(RESPONSE).expect("header");
        assert_eq!(message.id(), 0x1234);
        assert!(message.flags().qr() && message.flags().rd() && message.flags().ra());
        assert!(!message.flags().aa());
        assert_eq!(message.opcode(), Opcode::QUERY);
        let question = message.first_question().expect("valid").expect("present");
        assert_eq!(question.name().to_string(), "example.com.");
        assert_eq!(question.qtype(), RecordType::A);
        let answers: Vec<_> = message.answers().expect("ok").collect::<Result<_, _>>().expect("ok");
        assert_eq!(answers.len(), 1);
        let answer = answers[0];
        assert_eq!(answer.ttl(), 3600);
        assert_eq!(answer.section(), Section::Answer);
        assert_eq!(answer.data(), Ok(RData::A([192, 0, 2, 1].into())));
        assert_eq!(message.check(), Ok(()));
        assert_eq!(message.authority().expect("ok").count(), 0);
    }

    #[test]
    fn one_section_reads_only_its_own_records() {
        // RESPONSE's answer again as an additional record; the authority section is empty.
        let mut bytes = RESPONSE.to_vec();
        bytes[11] = 1; // arcount 1
        let answer = RESPONSE.len() - 16;
        bytes.extend_from_slice(&RESPONSE[answer..]);
        let message = Message::parse(&bytes).expect("header");
        message.check().expect("valid");
        let offsets = |records: Records<'_>| -> Vec<(Section, usize)> {
            records
                .map(|record| record.map(|record| (record.section(), record.offset())))
                .collect::<Result<_, _>>()
                .expect("valid")
        };
        assert_eq!(offsets(message.answers().expect("ok")), [(Section::Answer, answer)]);
        assert_eq!(offsets(message.authority().expect("ok")), []);
        assert_eq!(offsets(message.additional().expect("ok")), [(Section::Additional, RESPONSE.len())]);
        assert_eq!(offsets(message.records().expect("ok")).len(), 2);
        let mut answers = message.answers().expect("ok");
        assert!(answers.next().is_some_and(|record| record.is_ok()));
        assert!(answers.next().is_none());
        assert_eq!(answers.current_section(), Section::Additional);
        assert_eq!(answers.position(), RESPONSE.len());
    }

    #[test]
    fn counts_beyond_the_end_are_reported() {
        let mut bytes = RESPONSE.to_vec();
        bytes[7] = 3; // ancount 3
        let message = Message::parse(&bytes).expect("header");
        let results: Vec<_> = message.answers().expect("ok").collect();
        assert_eq!(
            results.last().and_then(|r| r.as_ref().err()),
            Some(&(Error::MissingRecords { section: Section::Answer, expected: 3, found: 1, offset: bytes.len() }))
        );
        assert!(message.check().is_err());
    }

    #[test]
    fn trailing_bytes_fail_the_full_check_only() {
        let mut bytes = RESPONSE.to_vec();
        bytes.extend_from_slice(&[0, 0]);
        let message = Message::parse(&bytes).expect("header");
        assert!(message.answers().expect("ok").all(|r| r.is_ok()));
        assert_eq!(message.check(), Err(Error::TrailingData { offset: RESPONSE.len(), len: 2 }));
    }

    #[test]
    fn short_input_is_not_a_message() {
        assert_eq!(Message::parse(&RESPONSE[..5]).map(|m| m.id()), Err(Error::ShortHeader { len: 5 }));
    }

    #[test]
    fn truncated_rdata_points_at_its_start() {
        let bytes = &RESPONSE[..RESPONSE.len() - 2];
        let message = Message::parse(bytes).expect("header");
        let err = message.answers().expect("ok").next().expect("one").expect_err("truncated");
        assert_eq!(err, Error::UnexpectedEnd { offset: RESPONSE.len() - 4, needed: 2 });
    }

    #[test]
    fn flags_set_and_clear() {
        let flags = Flags::default().with_qr(true).with_opcode(Opcode::NOTIFY).with_rcode(Rcode::REFUSED);
        assert!(flags.qr());
        assert_eq!(flags.opcode(), Opcode::NOTIFY);
        assert_eq!(flags.rcode(), Rcode::REFUSED);
        assert!(!flags.with_qr(false).qr());
        let header = Header { id: 7, flags, qdcount: 1, ..Header::default() };
        assert_eq!(Header::parse(&header.to_bytes()), Ok(header));
    }

    /// A header announcing `ancount` answers and nothing else.
    fn header_with_answers(ancount: u16) -> Vec<u8> {
        Header { id: 1, ancount, ..Header::default() }.to_bytes().to_vec()
    }

    /// Type, class, TTL and RDLENGTH of a record of an unknown type (its
    /// RDATA is opaque, so it can hold pointer targets).
    fn fixed_fields(rdlength: usize) -> [u8; 10] {
        let mut fixed = [0xff, 0x00, 0, 1, 0, 0, 0, 60, 0, 0];
        fixed[8..].copy_from_slice(&(rdlength as u16).to_be_bytes());
        fixed
    }

    /// Every answer read by the iterator (which remembers validated names)
    /// against the same answer read alone, without a memo.
    fn answers_with_and_without_memo(message: &[u8]) -> Vec<Result<(usize, usize), Error>> {
        let mut records = Message::parse(message).expect("header").records().expect("no questions");
        let mut results = Vec::new();
        loop {
            let offset = records.position();
            let Some(record) = records.next() else { break };
            let facts = |record: Record<'_>| (record.name().wire_len(), record.end());
            let alone = Record::parse(message, offset, Section::Answer).map(|(record, _)| facts(record));
            assert_eq!(record.map(facts), alone, "record at {offset}");
            results.push(alone);
        }
        results
    }

    #[test]
    fn a_remembered_suffix_still_counts_towards_the_length_limit() {
        let mut message = header_with_answers(2);
        // Answer 1 @12: an owner of three 63-octet labels (193 octets with the root).
        for _ in 0..3 {
            message.push(63);
            message.extend_from_slice(&[b'a'; 63]);
        }
        message.push(0);
        message.extend_from_slice(&fixed_fields(0));
        // Answer 2: one more 63-octet label, then a pointer to answer 1's owner: 257 octets.
        let second = message.len();
        message.push(63);
        message.extend_from_slice(&[b'b'; 63]);
        message.extend_from_slice(&[0xc0, 12]);
        message.extend_from_slice(&fixed_fields(0));
        let results = answers_with_and_without_memo(&message);
        assert_eq!(results, [Ok((193, second)), Err(Error::NameTooLong { offset: second })]);
    }

    #[test]
    fn a_remembered_suffix_still_counts_towards_the_hop_limit() {
        let mut message = header_with_answers(4);
        // Answer 1 @12: root owner; its opaque RDATA holds a root label and a
        // chain of 100 pointers, each to the one before.
        message.push(0);
        message.extend_from_slice(&fixed_fields(1 + 2 * 100));
        let mut last = message.len();
        message.push(0);
        for _ in 0..100 {
            let here = message.len();
            message.extend_from_slice(&(0xc000 | last as u16).to_be_bytes());
            last = here;
        }
        // Answer 2: owner is a pointer to the end of that chain, 101 hops (remembered).
        let second = message.len();
        message.extend_from_slice(&(0xc000 | last as u16).to_be_bytes());
        message.extend_from_slice(&fixed_fields(0));
        // Answer 3: root owner; RDATA is a chain of 30 pointers starting at answer 2's owner.
        let third = message.len();
        message.push(0);
        message.extend_from_slice(&fixed_fields(2 * 30));
        let mut last = second;
        for _ in 0..30 {
            let here = message.len();
            message.extend_from_slice(&(0xc000 | last as u16).to_be_bytes());
            last = here;
        }
        // Answer 4: a pointer to the end of the second chain: 31 + 101 hops, over the limit of 128.
        let fourth = message.len();
        message.extend_from_slice(&(0xc000 | last as u16).to_be_bytes());
        message.extend_from_slice(&fixed_fields(0));
        let results = answers_with_and_without_memo(&message);
        assert_eq!(
            results,
            [Ok((1, second)), Ok((1, third)), Ok((1, fourth)), Err(Error::TooManyPointers { offset: fourth }),]
        );
    }

    #[test]
    fn first_question_reports_what_the_iterator_reports() {
        let message = Message::parse(RESPONSE).expect("header");
        let direct = message.first_question().expect("valid").expect("one");
        let iterated = message.questions().next().expect("one").expect("valid");
        assert_eq!((direct.offset(), direct.raw()), (iterated.offset(), iterated.raw()));
        // Cut inside the question's type and class, and right after the header.
        for len in [HEADER_LEN, HEADER_LEN + 13, HEADER_LEN + 14, HEADER_LEN + 15] {
            let message = Message::parse(&RESPONSE[..len]).expect("header");
            let direct = message.first_question().map(|q| q.map(|q| q.offset()));
            let iterated = message.questions().next().transpose().map(|q| q.map(|q| q.offset()));
            assert!(direct.is_err(), "cut at {len}");
            assert_eq!(direct, iterated, "cut at {len}");
        }
    }
}
