//! A query ready to send, and the checks an answer must pass to be taken as its answer.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use signpost_wire::{Class, Message, NameBuf, Opcode, Rcode, RecordType, Section};

/// A query as the caller gave it, checked to carry a question. The bytes
/// are shared with every socket table the query waits in (a reference
/// count, not a copy), and answers are matched against the question in
/// them: one allocation per query.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    bytes: Arc<[u8]>,
}

/// Why a received message is not the answer to a query.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mismatch {
    /// Shorter than a header, or QR clear.
    NotResponse,
    /// A different message ID.
    WrongId,
    /// A different opcode, or a question with another name, type or class (or none).
    WrongQuestion,
}

impl Mismatch {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::NotResponse => "not a DNS response",
            Self::WrongId => "answer with another message ID",
            Self::WrongQuestion => "answer to another question",
        }
    }
}

/// What an accepted answer says, for the group to decide on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Verdict {
    pub(crate) rcode: Rcode,
    pub(crate) truncated: bool,
}

impl Prepared {
    /// Read `query`'s header and first question. When the query carries an
    /// OPT record its advertised UDP payload size is set to `edns_payload`.
    pub(crate) fn new(query: &[u8], edns_payload: u16) -> Result<Self, signpost_wire::Error> {
        let payload_at = Self::check(query)?;
        let mut bytes = Arc::<[u8]>::from(query);
        if let Some(slot) = payload_at.and_then(|at| Arc::get_mut(&mut bytes)?.get_mut(at..at + 2)) {
            slot.copy_from_slice(&edns_payload.to_be_bytes());
        }
        Ok(Self { bytes })
    }

    /// [`Prepared::new`] for bytes the caller keeps in an `Arc`: shared, not
    /// copied, unless the OPT record's payload size has to change.
    pub(crate) fn shared(query: &Arc<[u8]>, edns_payload: u16) -> Result<Self, signpost_wire::Error> {
        match Self::check(query)? {
            Some(at) if query.get(at..at + 2) != Some(&edns_payload.to_be_bytes()[..]) => {
                Self::new(query, edns_payload)
            }
            _ => Ok(Self { bytes: query.clone() }),
        }
    }

    /// Check that `query` is a message with a question; where its OPT
    /// record's payload size is, if it has one.
    fn check(query: &[u8]) -> Result<Option<usize>, signpost_wire::Error> {
        Self::check_with(query, true)
    }

    /// [`Self::check`], with or without reading a lone OPT record in place
    /// (the tests check that both ways agree).
    #[inline(always)]
    fn check_with(query: &[u8], in_place: bool) -> Result<Option<usize>, signpost_wire::Error> {
        if query.len() > signpost_wire::MAX_MESSAGE_LEN {
            return Err(signpost_wire::Error::Truncated { limit: signpost_wire::MAX_MESSAGE_LEN });
        }
        let message = Message::parse(query)?;
        let mut questions = message.questions();
        // A query without a question has nothing to match answers against.
        let question = questions.next().ok_or(signpost_wire::Error::MissingRecords {
            section: Section::Question,
            expected: 1,
            found: 0,
            offset: signpost_wire::HEADER_LEN,
        })??;
        let header = message.header();
        if in_place
            && (header.qdcount, header.ancount, header.nscount, header.arcount) == (1, 0, 0, 1)
            && let Some(at) = lone_opt_payload_at(query, question.offset() + question.raw().len())
        {
            return Ok(Some(at));
        }
        let mut payload_at = None;
        if header.arcount > 0 {
            // The walk goes on from the question read above: what
            // `message.additional()` reads, without reading the name again.
            for record in questions.into_records()? {
                let record = record?;
                if record.section() == Section::Additional && record.rtype() == RecordType::OPT {
                    // CLASS sits before TTL (4) and RDLENGTH (2), just before the data.
                    payload_at = record.data_offset().checked_sub(8);
                    break;
                }
            }
        }
        Ok(payload_at)
    }

    /// The query bytes (ID as given).
    pub(crate) fn bytes(&self) -> &Arc<[u8]> {
        &self.bytes
    }

    /// A copy with message ID `id`, after `prefix_len` zero bytes (2 for a TCP length).
    pub(crate) fn with_id(&self, id: u16, prefix_len: usize) -> BytesMut {
        let mut out = BytesMut::with_capacity(prefix_len + self.bytes.len());
        out.resize(prefix_len, 0);
        out.extend_from_slice(&self.bytes);
        signpost_wire::relay::set_id(out.get_mut(prefix_len..).unwrap_or_default(), id);
        out
    }

    /// Check that `response` answers this query sent with `id`: QR set, the
    /// same ID and opcode, and the same question (name compared without
    /// regard to case, type, class). With `lenient`, used on connections that
    /// cannot be spoofed, an error answer without a question is accepted.
    pub(crate) fn matches(&self, response: &[u8], id: u16, lenient: bool) -> Result<(), Mismatch> {
        check_answer(&self.bytes, response, id, lenient)
    }
}

/// The offset of the payload-size field of an OPT record that starts at
/// `at` and ends the message exactly: the shape of every query a forwarder
/// writes (one question, then OPT alone). Read in place, it spares the
/// group a record walk per forwarded query; `None` sends the caller to the
/// walk, which reaches the same offset for such a message.
fn lone_opt_payload_at(query: &[u8], at: usize) -> Option<usize> {
    // Root owner name, TYPE OPT, CLASS (the payload size), TTL, RDLENGTH.
    let fixed: [u8; 11] = query.get(at..at + 11)?.try_into().ok()?;
    let [root, type_high, type_low, _, _, _, _, _, _, length_high, length_low] = fixed;
    let is_opt = root == 0 && [type_high, type_low] == RecordType::OPT.0.to_be_bytes();
    let data_len = usize::from(u16::from_be_bytes([length_high, length_low]));
    (is_opt && at + 11 + data_len == query.len()).then_some(at + 3)
}

/// Check that `response` answers the query message `query` sent with `id`,
/// as [`Prepared::matches`] does without leniency; for callers that keep
/// only the query's bytes.
pub(crate) fn answers(query: &[u8], response: &[u8], id: u16) -> Result<(), Mismatch> {
    check_answer(query, response, id, false)
}

fn check_answer(query: &[u8], response: &[u8], id: u16, lenient: bool) -> Result<(), Mismatch> {
    let message = Message::parse(query).map_err(|_| Mismatch::WrongQuestion)?;
    let Ok(Some(asked)) = message.first_question() else { return Err(Mismatch::WrongQuestion) };
    check_response(response, id, message.opcode(), lenient, |question| {
        question.qtype() == asked.qtype() && question.qclass() == asked.qclass() && question.name() == asked.name()
    })
}

fn check_response(
    response: &[u8],
    id: u16,
    opcode: Opcode,
    lenient: bool,
    same_question: impl Fn(&signpost_wire::Question<'_>) -> bool,
) -> Result<(), Mismatch> {
    let message = Message::parse(response).map_err(|_| Mismatch::NotResponse)?;
    let header = message.header();
    if !header.flags.qr() {
        return Err(Mismatch::NotResponse);
    }
    if header.id != id {
        return Err(Mismatch::WrongId);
    }
    if message.opcode() != opcode {
        return Err(Mismatch::WrongQuestion);
    }
    match message.first_question() {
        Ok(Some(question)) if same_question(&question) => Ok(()),
        Ok(None) if lenient && header.flags.rcode() != Rcode::NOERROR => Ok(()),
        _ => Err(Mismatch::WrongQuestion),
    }
}

/// Check a matched answer from end to end and read its rcode and TC bit.
pub(crate) fn inspect(response: &[u8]) -> Result<Verdict, String> {
    let message = Message::parse(response).map_err(|error| format!("malformed answer: {error}"))?;
    // One walk checks every field and reads the extended rcode bits.
    let rcode = message.checked_rcode().map_err(|error| format!("malformed answer: {error}"))?;
    Ok(Verdict { rcode, truncated: message.flags().tc() })
}

/// A query for `name` `qtype` with RD set and ID 0, as probes and the example send.
pub(crate) fn build_query(name: &NameBuf, qtype: RecordType, edns_payload: Option<u16>) -> Bytes {
    let mut buffer = BytesMut::with_capacity(64);
    let result = (|| {
        let mut builder = signpost_wire::MessageBuilder::new(&mut buffer)?;
        builder.set_flags(signpost_wire::Flags::default().with_rd(true));
        builder.push_question(name, qtype, Class::IN)?;
        if let Some(size) = edns_payload {
            builder.set_edns(signpost_wire::EdnsHeader { udp_payload_size: size, ..Default::default() });
        }
        builder.finish()
    })();
    match result {
        Ok(_) => buffer.freeze(),
        // A name is at most 255 octets, so a query always fits; keep a header-only message otherwise.
        Err(_) => Bytes::from_static(&[0; signpost_wire::HEADER_LEN]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signpost_wire::{EdnsHeader, Flags, MessageBuilder, RData, Section};

    fn query(name: &str, edns: bool) -> Vec<u8> {
        let mut buffer = Vec::new();
        let mut builder = MessageBuilder::new(&mut buffer).unwrap();
        builder.set_id(0x1234);
        builder.set_flags(Flags::default().with_rd(true));
        builder.push_question(&name.parse::<NameBuf>().unwrap(), RecordType::A, Class::IN).unwrap();
        if edns {
            builder.set_edns(EdnsHeader { udp_payload_size: 4096, ..Default::default() });
        }
        builder.finish().unwrap();
        buffer
    }

    fn answer(query: &[u8], id: u16, name: &str, rcode: Rcode) -> Vec<u8> {
        let parsed = Message::parse(query).unwrap();
        let mut buffer = Vec::new();
        let mut builder = MessageBuilder::response_header_to(&mut buffer, parsed.header()).unwrap();
        builder.set_id(id);
        let question = parsed.first_question().unwrap().unwrap();
        let name: NameBuf = name.parse().unwrap();
        builder.push_question(&name, question.qtype(), question.qclass()).unwrap();
        builder.set_rcode(rcode);
        builder.push(Section::Answer, &name, Class::IN, 60, &RData::A([192, 0, 2, 1].into())).unwrap();
        builder.finish().unwrap();
        buffer
    }

    #[test]
    fn the_payload_size_is_rewritten_only_when_edns_is_present() {
        let with = Prepared::new(&query("example.com", true), 1232).unwrap();
        let edns_size = Message::parse(with.bytes()).unwrap().edns().unwrap().unwrap().raw_udp_payload_size();
        assert_eq!(edns_size, 1232);
        let original = query("example.com", false);
        let without = Prepared::new(&original, 1232).unwrap();
        assert_eq!(without.bytes().as_ref(), original.as_slice());
    }

    #[test]
    fn shared_bytes_are_copied_only_when_the_payload_size_changes() {
        let bytes: Arc<[u8]> = query("example.com", true).into();
        let same = Prepared::shared(&bytes, 4096).unwrap();
        assert!(Arc::ptr_eq(same.bytes(), &bytes));
        let changed = Prepared::shared(&bytes, 1232).unwrap();
        assert!(!Arc::ptr_eq(changed.bytes(), &bytes));
        assert_eq!(Message::parse(changed.bytes()).unwrap().edns().unwrap().unwrap().raw_udp_payload_size(), 1232);
        assert_eq!(Message::parse(&bytes).unwrap().edns().unwrap().unwrap().raw_udp_payload_size(), 4096);
        let without: Arc<[u8]> = query("example.com", false).into();
        assert!(Arc::ptr_eq(Prepared::shared(&without, 1232).unwrap().bytes(), &without));
        assert!(Prepared::shared(&Arc::from(&[0u8; 12][..]), 1232).is_err());
    }

    #[test]
    fn ids_are_set_after_the_prefix() {
        let prepared = Prepared::new(&query("example.com", false), 1232).unwrap();
        let framed = prepared.with_id(0xbeef, 2);
        assert_eq!(&framed[..4], &[0, 0, 0xbe, 0xef]);
        assert_eq!(&framed[4..], &prepared.bytes()[2..]);
    }

    #[test]
    fn answers_must_match_id_and_question_but_not_case() {
        let sent = query("Example.COM", false);
        let prepared = Prepared::new(&sent, 1232).unwrap();
        assert_eq!(prepared.matches(&answer(&sent, 7, "example.com", Rcode::NOERROR), 7, false), Ok(()));
        assert_eq!(
            prepared.matches(&answer(&sent, 8, "example.com", Rcode::NOERROR), 7, false),
            Err(Mismatch::WrongId)
        );
        assert_eq!(
            prepared.matches(&answer(&sent, 7, "example.org", Rcode::NOERROR), 7, false),
            Err(Mismatch::WrongQuestion)
        );
        assert_eq!(prepared.matches(&sent, 0x1234, false), Err(Mismatch::NotResponse));
        assert_eq!(prepared.matches(&[0x80; 5], 7, false), Err(Mismatch::NotResponse));
        // The same checks from the query's bytes alone.
        assert_eq!(answers(&sent, &answer(&sent, 7, "EXAMPLE.com", Rcode::NOERROR), 7), Ok(()));
        assert_eq!(answers(&sent, &answer(&sent, 8, "example.com", Rcode::NOERROR), 7), Err(Mismatch::WrongId));
        assert_eq!(answers(&sent, &answer(&sent, 7, "example.org", Rcode::NOERROR), 7), Err(Mismatch::WrongQuestion));
        assert_eq!(answers(&sent, &sent, 0x1234), Err(Mismatch::NotResponse));
        let mut other_type = query("Example.COM", false);
        let qtype_low = other_type.len() - 3;
        other_type[qtype_low] = 28; // QTYPE AAAA
        assert_eq!(
            answers(&other_type, &answer(&sent, 7, "example.com", Rcode::NOERROR), 7),
            Err(Mismatch::WrongQuestion)
        );
    }

    #[test]
    fn error_answers_without_a_question_pass_only_when_lenient() {
        let sent = query("example.com", false);
        let prepared = Prepared::new(&sent, 1232).unwrap();
        let mut buffer = Vec::new();
        let mut builder =
            MessageBuilder::response_header_to(&mut buffer, Message::parse(&sent).unwrap().header()).unwrap();
        builder.set_rcode(Rcode::FORMERR);
        builder.finish().unwrap();
        assert_eq!(prepared.matches(&buffer, 0x1234, true), Ok(()));
        assert_eq!(prepared.matches(&buffer, 0x1234, false), Err(Mismatch::WrongQuestion));
    }

    #[test]
    fn inspection_reads_rcode_and_rejects_trailing_garbage() {
        let sent = query("example.com", false);
        let mut response = answer(&sent, 1, "example.com", Rcode::SERVFAIL);
        assert_eq!(inspect(&response), Ok(Verdict { rcode: Rcode::SERVFAIL, truncated: false }));
        response.push(0);
        assert!(inspect(&response).unwrap_err().contains("malformed"));
    }

    /// A query with one question and an OPT record carrying `options`, then `extra`
    /// additional records (an A record each), `trailing` bytes after them.
    fn query_with_opt(options: &[u8], extra: u16, trailing: &[u8]) -> Vec<u8> {
        let mut bytes = query("example.com", false);
        bytes[11] = u8::try_from(1 + extra).unwrap();
        bytes.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&u16::try_from(options.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(options);
        for _ in 0..extra {
            bytes.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        }
        bytes.extend_from_slice(trailing);
        bytes
    }

    #[test]
    fn a_lone_opt_record_is_found_in_place_where_the_walk_finds_it() {
        // Loop marker and client subnet options, as the pipeline writes them.
        let options = [0xfd, 0xe9, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 8, 0, 7, 0, 1, 24, 0, 192, 0, 2];
        let lone = query_with_opt(&options, 0, &[]);
        let opt_at = query("example.com", false).len();
        assert_eq!(lone_opt_payload_at(&lone, opt_at), Some(opt_at + 3));
        assert_eq!(Prepared::check(&lone), Ok(Some(opt_at + 3)));
        let changed = |at: usize, value: u8| {
            let mut bytes = lone.clone();
            bytes[at] = value;
            bytes
        };
        for shape in [
            // Not an OPT record: an owner name other than the root, another type.
            changed(opt_at, 1),
            changed(opt_at, 0xc0),
            changed(opt_at + 2, 1),
            changed(opt_at + 1, 1),
            // Data shorter or longer than RDLENGTH says.
            changed(opt_at + 10, u8::try_from(options.len() - 1).unwrap()),
            changed(opt_at + 10, u8::try_from(options.len() + 1).unwrap()),
            lone.clone(),
            query("example.com", true),
            query_with_opt(&[], 0, &[]),
            // Not alone: the walk decides.
            query_with_opt(&options, 1, &[]),
            query_with_opt(&[], 0, &[0]),
            query_with_opt(&options[..4], 0, &[]),
            query("example.com", false),
        ] {
            assert_eq!(Prepared::check_with(&shape, true), Prepared::check_with(&shape, false), "{shape:?}");
        }
        assert_eq!(lone_opt_payload_at(&query_with_opt(&[], 0, &[0]), opt_at), None, "a byte after OPT");
        assert_eq!(lone_opt_payload_at(&query_with_opt(&[], 1, &[]), opt_at), None, "a record after OPT");
    }

    proptest::proptest! {
        /// Any message, however damaged: reading a lone OPT in place comes
        /// to what the record walk comes to.
        #[test]
        fn reading_opt_in_place_agrees_with_the_walk(
            options in proptest::collection::vec(proptest::num::u8::ANY, 0..24),
            extra in 0u16..2,
            flips in proptest::collection::vec((0usize..80, proptest::num::u8::ANY), 0..3),
            cut in 0usize..8,
        ) {
            let mut bytes = query_with_opt(&options, extra, &[]);
            for (at, value) in flips {
                if let Some(byte) = bytes.get_mut(at) {
                    *byte = value;
                }
            }
            bytes.truncate(bytes.len().saturating_sub(cut));
            proptest::prop_assert_eq!(Prepared::check_with(&bytes, true), Prepared::check_with(&bytes, false));
        }
    }

    #[test]
    fn queries_without_a_question_are_refused() {
        assert!(Prepared::new(&[0; 12], 1232).is_err());
        assert!(Prepared::new(&[0; 3], 1232).is_err());
    }
}
