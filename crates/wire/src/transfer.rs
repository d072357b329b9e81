//! Zone transfers without I/O: the AXFR and IXFR queries, a checker that
//! reads a response stream message by message (RFC 5936 §2.2, RFC 1995 §4),
//! and a writer that packs a zone into response messages.
//!
//! ```
//! use signpost_wire::{NameBuf, RecordBuf, Transfer, TransferReader, TransferRequest, TransferWriter, Message};
//!
//! let zone: NameBuf = "example.".parse()?;
//! let soa: RecordBuf = "example. 3600 IN SOA ns.example. host.example. 5 3600 600 86400 60".parse()?;
//! let www: RecordBuf = "www.example. 60 IN A 192.0.2.1".parse()?;
//!
//! // The client asks...
//! let mut query = Vec::new();
//! TransferRequest::Axfr.write_query(&mut query, 42, &zone)?;
//!
//! // ...the server answers with the SOA, the records and the SOA again...
//! let records = [&soa, &www, &soa];
//! let mut writer = TransferWriter::new(&Message::parse(&query)?, records.len())?;
//! let mut reader = TransferReader::new(42, &zone, &TransferRequest::Axfr);
//! let mut message = Vec::new();
//! while writer.write_next(&mut message, &records)? {
//!     reader.handle_message(&message)?;
//!     message.clear();
//! }
//! // ...and the client checks the stream and has the zone.
//! let Transfer::Full { records, .. } = reader.finish()? else { panic!("a full transfer") };
//! assert_eq!(records, vec![soa, www]);
//! # Ok::<(), signpost_wire::Error>(())
//! ```

use core::fmt;

use crate::Error;
use crate::build::{Buffer, MessageBuilder};
use crate::iana::{Class, Opcode, Rcode, RecordType};
use crate::message::{Flags, Message, Section};
use crate::name::NameBuf;
use crate::rdata::RDataBuf;
use crate::record::RecordBuf;
use crate::serial::Serial;

/// Records a reader accepts by default before giving up on a stream: a
/// bound on memory for a primary that never sends the closing SOA.
pub const DEFAULT_MAX_RECORDS: usize = 10_000_000;

/// What a stream broke: carried by [`Error::Transfer`] with the index of the
/// message (from 0) where it was found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum TransferProblem {
    /// The message's ID is not the query's.
    IdMismatch {
        /// The query's ID.
        expected: u16,
        /// The message's ID.
        found: u16,
    },
    /// QR is clear or the opcode is not QUERY.
    NotAResponse,
    /// TC is set: a transfer stream is never truncated (RFC 5936 §2.2).
    Truncated,
    /// The primary answered with an error.
    Rcode {
        /// Its response code.
        rcode: Rcode,
    },
    /// The first message has no question, or a message has more than one.
    QuestionCount {
        /// The message's QDCOUNT.
        count: u16,
    },
    /// The question is not the query's zone, type and class.
    QuestionMismatch,
    /// The first record is not the zone's SOA.
    FirstNotSoa,
    /// A record after the closing SOA.
    RecordAfterEnd,
    /// A record whose owner is outside the zone, or of another class.
    OutOfZone {
        /// Where the record starts in its message.
        offset: usize,
    },
    /// An SOA in an IXFR stream with a serial that does not continue the chain.
    SerialChain {
        /// The serial expected.
        expected: Serial,
        /// The serial found.
        found: Serial,
    },
    /// The stream ended before its closing SOA.
    Incomplete,
    /// More records than the reader's limit.
    TooManyRecords {
        /// The limit.
        limit: usize,
    },
    /// One RRset does not fit in a single message (writer side).
    RrsetTooLarge,
}

impl fmt::Display for TransferProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IdMismatch { expected, found } => write!(f, "message ID {found}, query ID {expected}"),
            Self::NotAResponse => f.write_str("not a response to a standard query"),
            Self::Truncated => f.write_str("TC set in a transfer stream"),
            Self::Rcode { rcode } => write!(f, "primary answered {rcode}"),
            Self::QuestionCount { count } => write!(f, "{count} questions"),
            Self::QuestionMismatch => f.write_str("question differs from the query's"),
            Self::FirstNotSoa => f.write_str("first record is not the zone's SOA"),
            Self::RecordAfterEnd => f.write_str("records after the closing SOA"),
            Self::OutOfZone { offset } => write!(f, "record at byte {offset} is outside the zone or its class"),
            Self::SerialChain { expected, found } => write!(f, "SOA serial {found} where {expected} was expected"),
            Self::Incomplete => f.write_str("stream ended before the closing SOA"),
            Self::TooManyRecords { limit } => write!(f, "more than {limit} records"),
            Self::RrsetTooLarge => f.write_str("an RRset larger than one message"),
        }
    }
}

/// What the client asks for.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum TransferRequest {
    /// The whole zone (RFC 5936).
    Axfr,
    /// The changes since the copy whose SOA this is (RFC 1995); the primary
    /// may answer with the whole zone instead.
    Ixfr {
        /// The SOA of the copy the client holds.
        soa: RecordBuf,
    },
}

impl TransferRequest {
    /// The query type.
    pub fn qtype(&self) -> RecordType {
        match self {
            Self::Axfr => RecordType::AXFR,
            Self::Ixfr { .. } => RecordType::IXFR,
        }
    }

    /// Write the query for `zone` (class IN) with message ID `id`. An IXFR
    /// query carries the client's SOA in its authority section (RFC 1995 §3).
    pub fn write_query(&self, buffer: &mut impl Buffer, id: u16, zone: &NameBuf) -> Result<usize, Error> {
        let mut builder = MessageBuilder::new(buffer)?;
        builder.set_id(id);
        builder.push_question(zone, self.qtype(), Class::IN)?;
        if let Self::Ixfr { soa } = self {
            builder.push_record_buf(Section::Authority, soa)?;
        }
        builder.finish()
    }

    fn client_serial(&self) -> Option<Serial> {
        match self {
            Self::Axfr => None,
            Self::Ixfr { soa } => soa_serial(soa),
        }
    }
}

/// The serial of an SOA record (`None` for other types).
pub fn soa_serial(record: &RecordBuf) -> Option<Serial> {
    match &record.data {
        RDataBuf::Soa(soa) => Some(Serial(soa.serial)),
        _ => None,
    }
}

/// Write the query for a zone's SOA, which a secondary sends before a
/// transfer to learn whether the primary's copy is newer.
pub fn write_soa_query(buffer: &mut impl Buffer, id: u16, zone: &NameBuf) -> Result<usize, Error> {
    let mut builder = MessageBuilder::new(buffer)?;
    builder.set_id(id);
    builder.push_question(zone, RecordType::SOA, Class::IN)?;
    builder.finish()
}

/// One version step of an IXFR: the records deleted from the version with
/// SOA `from` and added to make the version with SOA `to`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IxfrDiff {
    /// The SOA of the version the changes apply to.
    pub from: RecordBuf,
    /// Records to delete (without the SOA).
    pub deleted: Vec<RecordBuf>,
    /// The SOA of the version the changes make.
    pub to: RecordBuf,
    /// Records to add (without the SOA).
    pub added: Vec<RecordBuf>,
}

/// A checked, complete transfer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Transfer {
    /// The whole zone: the SOA first, then every other record, once each
    /// (the closing SOA is not repeated).
    Full {
        /// The zone's SOA.
        soa: RecordBuf,
        /// Every record, the SOA first.
        records: Vec<RecordBuf>,
    },
    /// Changes to apply, oldest first (IXFR only).
    Incremental {
        /// The SOA after the last change.
        soa: RecordBuf,
        /// The changes.
        diffs: Vec<IxfrDiff>,
    },
    /// The client's copy is current: the primary sent only its SOA (IXFR only).
    UpToDate {
        /// The primary's SOA.
        soa: RecordBuf,
    },
}

impl Transfer {
    /// The SOA of the version the transfer brings.
    pub fn soa(&self) -> &RecordBuf {
        match self {
            Self::Full { soa, .. } | Self::Incremental { soa, .. } | Self::UpToDate { soa } => soa,
        }
    }
}

#[derive(Clone, Debug)]
enum State {
    /// No record read yet.
    Start,
    /// Only the opening SOA read.
    Opened,
    /// A full zone, after its opening SOA.
    Full(Vec<RecordBuf>),
    /// An IXFR diff whose deletions are being read.
    Deleting(Vec<IxfrDiff>),
    /// An IXFR diff whose additions are being read.
    Adding(Vec<IxfrDiff>),
    /// Complete.
    Done(Transfer),
    /// A problem was found; nothing more is read.
    Failed,
}

/// Reads a transfer response stream message by message and checks it:
/// every message has the query's ID, QR and opcode QUERY, NOERROR, no TC,
/// and at most one question, equal to the query's (the first message must
/// have it); the first record is the zone's SOA and the stream ends with
/// that SOA again; every record is in the zone and its class. TSIG and OPT
/// records in the additional section are left to the caller.
#[derive(Clone, Debug)]
pub struct TransferReader {
    id: u16,
    zone: NameBuf,
    qtype: RecordType,
    client_serial: Option<Serial>,
    messages: usize,
    records: usize,
    max_records: usize,
    opening: Option<RecordBuf>,
    state: State,
}

impl TransferReader {
    /// A reader for the answer to `request` for `zone` sent with ID `id`.
    pub fn new(id: u16, zone: &NameBuf, request: &TransferRequest) -> Self {
        Self {
            id,
            zone: zone.to_lowercase(),
            qtype: request.qtype(),
            client_serial: request.client_serial(),
            messages: 0,
            records: 0,
            max_records: DEFAULT_MAX_RECORDS,
            opening: None,
            state: State::Start,
        }
    }

    /// Accept at most `limit` records in all.
    #[must_use]
    pub fn with_max_records(mut self, limit: usize) -> Self {
        self.max_records = limit;
        self
    }

    /// Messages read so far.
    pub fn messages(&self) -> usize {
        self.messages
    }

    /// Records read so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Whether the closing SOA has been read.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Done(_))
    }

    /// Read the next message of the stream. Returns whether the transfer is
    /// complete. After an error the reader accepts nothing more.
    pub fn handle_message(&mut self, bytes: &[u8]) -> Result<bool, Error> {
        let index = self.messages;
        self.messages += 1;
        let result = self.read_message(bytes, index);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn read_message(&mut self, bytes: &[u8], index: usize) -> Result<bool, Error> {
        let fail = |problem| Error::Transfer { message: index, problem };
        if matches!(self.state, State::Failed) {
            return Err(fail(TransferProblem::RecordAfterEnd));
        }
        let message = Message::parse(bytes)?;
        let flags: Flags = message.flags();
        if message.id() != self.id {
            return Err(fail(TransferProblem::IdMismatch { expected: self.id, found: message.id() }));
        }
        if !flags.qr() || flags.opcode() != Opcode::QUERY {
            return Err(fail(TransferProblem::NotAResponse));
        }
        let rcode = message.rcode()?;
        if rcode != Rcode::NOERROR {
            return Err(fail(TransferProblem::Rcode { rcode }));
        }
        if flags.tc() {
            return Err(fail(TransferProblem::Truncated));
        }
        let count = message.header().qdcount;
        if count > 1 || (count == 0 && index == 0) {
            return Err(fail(TransferProblem::QuestionCount { count }));
        }
        let mut questions = message.questions();
        for question in &mut questions {
            let question = question?;
            if question.name() != self.zone || question.qtype() != self.qtype || question.qclass() != Class::IN {
                return Err(fail(TransferProblem::QuestionMismatch));
            }
        }
        let mut records = questions.into_records()?;
        records.stop_after(Section::Answer);
        for record in &mut records {
            let record = record?;
            if matches!(self.state, State::Done(_)) {
                return Err(fail(TransferProblem::RecordAfterEnd));
            }
            if record.class() != Class::IN || !record.name().is_subdomain_of(&self.zone) {
                return Err(fail(TransferProblem::OutOfZone { offset: record.offset() }));
            }
            self.records += 1;
            if self.records > self.max_records {
                return Err(fail(TransferProblem::TooManyRecords { limit: self.max_records }));
            }
            let owned = RecordBuf::from_record(&record)?;
            self.step(owned).map_err(fail)?;
        }
        // An IXFR answered with the SOA alone: the client is current (RFC 1995 §4).
        if matches!(self.state, State::Opened)
            && let (Some(client), Some(opening)) = (self.client_serial, self.opening.as_ref())
            && soa_serial(opening).is_some_and(|serial| !serial.is_newer_than(client))
        {
            self.state = State::Done(Transfer::UpToDate { soa: opening.clone() });
        }
        Ok(self.is_complete())
    }

    fn step(&mut self, record: RecordBuf) -> Result<(), TransferProblem> {
        let is_soa = record.rtype() == RecordType::SOA;
        let serial = soa_serial(&record);
        let state = core::mem::replace(&mut self.state, State::Failed);
        self.state = match state {
            State::Start => {
                if !is_soa || record.name != self.zone {
                    return Err(TransferProblem::FirstNotSoa);
                }
                self.opening = Some(record);
                State::Opened
            }
            State::Opened => {
                let opening = self.opening.clone().ok_or(TransferProblem::FirstNotSoa)?;
                match serial {
                    // The second record is an SOA: incremental, unless it
                    // closes a zone that holds nothing but its SOA.
                    Some(found) if self.qtype == RecordType::IXFR && Some(found) != soa_serial(&opening) => {
                        if let Some(expected) = self.client_serial.filter(|&expected| expected != found) {
                            return Err(TransferProblem::SerialChain { expected, found });
                        }
                        State::Deleting(vec![IxfrDiff {
                            from: record,
                            deleted: Vec::new(),
                            to: opening,
                            added: Vec::new(),
                        }])
                    }
                    Some(_) => State::Done(Transfer::Full { soa: opening.clone(), records: vec![opening] }),
                    None => State::Full(vec![opening, record]),
                }
            }
            State::Full(mut records) => {
                if is_soa {
                    let opening = self.opening.clone().ok_or(TransferProblem::FirstNotSoa)?;
                    if serial != soa_serial(&opening) {
                        let expected = soa_serial(&opening).unwrap_or_default();
                        return Err(TransferProblem::SerialChain { expected, found: serial.unwrap_or_default() });
                    }
                    State::Done(Transfer::Full { soa: opening, records })
                } else {
                    records.push(record);
                    State::Full(records)
                }
            }
            State::Deleting(mut diffs) => {
                let Some(diff) = diffs.last_mut() else { return Err(TransferProblem::FirstNotSoa) };
                if is_soa {
                    // The SOA of the version this step makes; its records follow.
                    diff.to = record;
                    State::Adding(diffs)
                } else {
                    diff.deleted.push(record);
                    State::Deleting(diffs)
                }
            }
            State::Adding(mut diffs) => {
                let Some(diff) = diffs.last_mut() else { return Err(TransferProblem::FirstNotSoa) };
                if !is_soa {
                    diff.added.push(record);
                    self.state = State::Adding(diffs);
                    return Ok(());
                }
                let reached = soa_serial(&diff.to);
                let opening = self.opening.clone().ok_or(TransferProblem::FirstNotSoa)?;
                if reached != serial {
                    return Err(TransferProblem::SerialChain {
                        expected: reached.unwrap_or_default(),
                        found: serial.unwrap_or_default(),
                    });
                }
                if reached == soa_serial(&opening) {
                    State::Done(Transfer::Incremental { soa: opening, diffs })
                } else {
                    diffs.push(IxfrDiff { from: record, deleted: Vec::new(), to: opening, added: Vec::new() });
                    State::Deleting(diffs)
                }
            }
            State::Done(_) | State::Failed => return Err(TransferProblem::RecordAfterEnd),
        };
        Ok(())
    }

    /// The checked transfer, once the stream is complete.
    pub fn finish(self) -> Result<Transfer, Error> {
        match self.state {
            State::Done(transfer) => Ok(transfer),
            _ => Err(Error::Transfer { message: self.messages, problem: TransferProblem::Incomplete }),
        }
    }
}

/// Packs the records of a transfer into response messages, as many as fit in
/// each (RFC 5936 §2.2): the question in the first message only, AA set.
#[derive(Clone, Debug)]
pub struct TransferWriter {
    id: u16,
    flags: Flags,
    question: Option<(NameBuf, RecordType, Class)>,
    next: usize,
    total: usize,
    limit: usize,
    first: bool,
}

impl TransferWriter {
    /// A writer answering `query` with `total` records.
    pub fn new(query: &Message<'_>, total: usize) -> Result<Self, Error> {
        let question = query
            .first_question()?
            .map(|question| (question.name().to_name_buf(), question.qtype(), question.qclass()));
        Ok(Self {
            id: query.id(),
            flags: Flags::default().with_qr(true).with_aa(true).with_opcode(query.opcode()),
            question,
            next: 0,
            total,
            limit: crate::MAX_MESSAGE_LEN,
            first: true,
        })
    }

    /// Keep each message within `limit` bytes (leave room for a TSIG record).
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Write the next message into `buffer` (appending). Returns `false`,
    /// writing nothing, once every record has been sent. `records` must be
    /// the same slice on every call.
    pub fn write_next<R: core::borrow::Borrow<RecordBuf>>(
        &mut self,
        buffer: &mut impl Buffer,
        records: &[R],
    ) -> Result<bool, Error> {
        if self.next >= self.total.min(records.len()) && !self.first {
            return Ok(false);
        }
        let start = buffer.len();
        let mut builder = MessageBuilder::new(buffer)?;
        builder.set_id(self.id);
        builder.set_flags(self.flags);
        builder.set_limit(self.limit);
        if self.first
            && let Some((name, qtype, qclass)) = &self.question
        {
            builder.push_question(name, *qtype, *qclass)?;
        }
        let before = self.next;
        for record in records.get(self.next..self.total).unwrap_or(&[]) {
            match builder.push_record_buf(Section::Answer, record.borrow()) {
                Ok(()) => {}
                Err(Error::Truncated { .. }) => break,
                Err(other) => return Err(other),
            }
        }
        // The builder drops a whole RRset that does not fit: what it kept is what was sent.
        let written = usize::from(builder.header_mut().ancount);
        let flags = builder.header_mut().flags.with_tc(false);
        builder.header_mut().flags = flags;
        builder.finish()?;
        if written == 0 && before < self.total.min(records.len()) {
            buffer.truncate(start);
            return Err(Error::Transfer { message: 0, problem: TransferProblem::RrsetTooLarge });
        }
        self.next = before + written;
        self.first = false;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(text: &str) -> RecordBuf {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn soa(serial: u32) -> RecordBuf {
        record(&format!("example. 3600 IN SOA ns.example. host.example. {serial} 3600 600 86400 60"))
    }

    fn zone() -> NameBuf {
        "example.".parse().unwrap()
    }

    /// One response message with these answers.
    fn message(id: u16, question: Option<RecordType>, answers: &[RecordBuf]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut builder = MessageBuilder::new(&mut out).unwrap();
        builder.set_id(id);
        builder.set_flags(Flags::default().with_qr(true).with_aa(true));
        if let Some(qtype) = question {
            builder.push_question(&zone(), qtype, Class::IN).unwrap();
        }
        for answer in answers {
            builder.push_record_buf(Section::Answer, answer).unwrap();
        }
        builder.finish().unwrap();
        out
    }

    fn read(request: &TransferRequest, messages: &[Vec<u8>]) -> Result<Transfer, Error> {
        let mut reader = TransferReader::new(1, &zone(), request);
        for message in messages {
            reader.handle_message(message)?;
        }
        reader.finish()
    }

    fn problem(result: Result<Transfer, Error>) -> TransferProblem {
        match result {
            Err(Error::Transfer { problem, .. }) => problem,
            other => panic!("expected a transfer error, got {other:?}"),
        }
    }

    #[test]
    fn axfr_over_several_messages() {
        let www = record("www.example. 60 IN A 192.0.2.1");
        let mail = record("mail.example. 60 IN MX 10 www.example.");
        let messages = [
            message(1, Some(RecordType::AXFR), &[soa(5), www.clone()]),
            message(1, None, std::slice::from_ref(&mail)),
            message(1, Some(RecordType::AXFR), &[soa(5)]),
        ];
        let transfer = read(&TransferRequest::Axfr, &messages).unwrap();
        assert_eq!(transfer, Transfer::Full { soa: soa(5), records: vec![soa(5), www, mail] });
    }

    #[test]
    fn broken_streams_are_named() {
        let a = record("a.example. 60 IN A 192.0.2.1");
        let axfr = |messages: &[Vec<u8>]| problem(read(&TransferRequest::Axfr, messages));
        assert_eq!(
            axfr(&[message(2, Some(RecordType::AXFR), &[soa(5), soa(5)])]),
            TransferProblem::IdMismatch { expected: 1, found: 2 }
        );
        assert_eq!(axfr(&[message(1, None, &[soa(5), soa(5)])]), TransferProblem::QuestionCount { count: 0 });
        assert_eq!(axfr(&[message(1, Some(RecordType::IXFR), &[soa(5), soa(5)])]), TransferProblem::QuestionMismatch);
        assert_eq!(axfr(&[message(1, Some(RecordType::AXFR), &[a.clone(), soa(5)])]), TransferProblem::FirstNotSoa);
        assert_eq!(axfr(&[message(1, Some(RecordType::AXFR), &[soa(5), a.clone()])]), TransferProblem::Incomplete);
        assert_eq!(
            axfr(&[message(1, Some(RecordType::AXFR), &[soa(5), soa(5), a.clone()])]),
            TransferProblem::RecordAfterEnd
        );
        assert_eq!(
            axfr(&[message(1, Some(RecordType::AXFR), &[soa(5), a.clone(), soa(6)])]),
            TransferProblem::SerialChain { expected: Serial(5), found: Serial(6) }
        );
        let outside = record("www.example.org. 60 IN A 192.0.2.1");
        assert!(matches!(
            axfr(&[message(1, Some(RecordType::AXFR), &[soa(5), outside, soa(5)])]),
            TransferProblem::OutOfZone { .. }
        ));
        let mut truncated = message(1, Some(RecordType::AXFR), &[soa(5), soa(5)]);
        truncated[2] |= 0x02;
        assert_eq!(axfr(&[truncated]), TransferProblem::Truncated);
        let mut refused = message(1, Some(RecordType::AXFR), &[]);
        refused[3] |= 0x05;
        assert_eq!(axfr(&[refused]), TransferProblem::Rcode { rcode: Rcode::REFUSED });
        let many = TransferReader::new(1, &zone(), &TransferRequest::Axfr).with_max_records(2);
        let mut many = many;
        assert!(matches!(
            many.handle_message(&message(1, Some(RecordType::AXFR), &[soa(5), a.clone(), soa(5)])),
            Err(Error::Transfer { problem: TransferProblem::TooManyRecords { limit: 2 }, .. })
        ));
        // After an error nothing more is accepted.
        assert!(many.handle_message(&message(1, None, &[soa(5)])).is_err());
    }

    #[test]
    fn ixfr_answers_up_to_date_full_and_incremental() {
        let request = TransferRequest::Ixfr { soa: soa(5) };
        let current = read(&request, &[message(1, Some(RecordType::IXFR), &[soa(5)])]).unwrap();
        assert_eq!(current, Transfer::UpToDate { soa: soa(5) });

        let a = record("a.example. 60 IN A 192.0.2.1");
        let b = record("b.example. 60 IN A 192.0.2.2");
        let c = record("c.example. 60 IN A 192.0.2.3");
        let full = read(&request, &[message(1, Some(RecordType::IXFR), &[soa(7), a.clone(), soa(7)])]).unwrap();
        assert_eq!(full, Transfer::Full { soa: soa(7), records: vec![soa(7), a.clone()] });

        // 5 -> 6 deletes a, adds b; 6 -> 7 adds c; split across messages anywhere.
        let stream = [soa(7), soa(5), a.clone(), soa(6), b.clone(), soa(6), soa(7), c.clone(), soa(7)];
        for split in 1..stream.len() {
            let (first, rest) = stream.split_at(split);
            let messages = [message(1, Some(RecordType::IXFR), first), message(1, None, rest)];
            let transfer = read(&request, &messages).unwrap();
            assert_eq!(
                transfer,
                Transfer::Incremental {
                    soa: soa(7),
                    diffs: vec![
                        IxfrDiff { from: soa(5), deleted: vec![a.clone()], to: soa(6), added: vec![b.clone()] },
                        IxfrDiff { from: soa(6), deleted: vec![], to: soa(7), added: vec![c.clone()] },
                    ],
                }
            );
        }
        // A chain that skips a version is refused.
        let gap = [soa(7), soa(5), soa(6), soa(4), soa(7), soa(7)];
        assert_eq!(
            problem(read(&request, &[message(1, Some(RecordType::IXFR), &gap)])),
            TransferProblem::SerialChain { expected: Serial(6), found: Serial(4) }
        );
        // The diffs must start at the client's version.
        let elsewhere = [soa(7), soa(3), soa(7), soa(7)];
        assert_eq!(
            problem(read(&request, &[message(1, Some(RecordType::IXFR), &elsewhere)])),
            TransferProblem::SerialChain { expected: Serial(5), found: Serial(3) }
        );
    }

    #[test]
    fn writer_splits_and_reader_reassembles() {
        let mut records = vec![soa(9)];
        for index in 0..3000u32 {
            records.push(record(&format!("host{index}.example. 60 IN TXT \"{}\"", "x".repeat(40))));
        }
        records.push(soa(9));
        let mut query = Vec::new();
        TransferRequest::Axfr.write_query(&mut query, 1, &zone()).unwrap();
        let mut writer = TransferWriter::new(&Message::parse(&query).unwrap(), records.len()).unwrap();
        let mut reader = TransferReader::new(1, &zone(), &TransferRequest::Axfr);
        let mut buffer = Vec::new();
        while writer.write_next(&mut buffer, &records).unwrap() {
            assert!(buffer.len() <= crate::MAX_MESSAGE_LEN);
            reader.handle_message(&buffer).unwrap();
            buffer.clear();
        }
        assert!(reader.messages() > 1);
        let Transfer::Full { records: got, .. } = reader.finish().unwrap() else { panic!("full") };
        assert_eq!(got.len(), records.len() - 1);
        assert_eq!(got, records[..records.len() - 1]);
    }
}
