//! Scripted answers: what the fake upstream says to a question, built with
//! signpost-wire from the query it received.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use signpost_wire::{
    Class, EdnsHeader, EdnsOption, Message, MessageBuilder, NameBuf, OptionCode, RData, Rcode, RecordBuf, RecordType,
    Section,
};

use crate::{Error, Transport};

/// The address every spoofed answer carries (TEST-NET-3), so a test can
/// assert that no spoof reached its client.
pub const FORGED_ADDRESS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);

/// The question a spoofed "answer to another question" carries.
pub const OTHER_QUESTION: &str = "other.example.";

/// The owner written `@` in [`Answer::records`] stands for the question's name.
const QUESTION_OWNER: &str = "question.invalid.";

/// A function that answers a query itself: the raw response, or `None` for
/// no answer. The transport says how the query came.
pub type Handler = Arc<dyn Fn(&Message<'_>, Transport) -> Option<Vec<u8>> + Send + Sync>;

/// What the fake upstream answers to a question.
///
/// Built answers echo the question, ID, RD and CD, set QR and RA, and carry
/// an OPT record when the query had one. Over UDP an answer larger than the
/// client's limit (512 octets, or its EDNS payload size) is cut to the
/// header and question with TC set, as a real server does; the client then
/// asks again over TCP.
///
/// ```
/// use signpost_testkit::Answer;
/// use signpost_wire::Rcode;
///
/// // Every A question: 192.0.2.1; AAAA and other types: NODATA.
/// let address = Answer::address("192.0.2.1".parse().unwrap());
/// // Records in presentation format; `@` is the name asked.
/// let text = Answer::records(["@ 60 IN TXT \"hello\""]).authoritative();
/// let failure = Answer::rcode(Rcode::SERVFAIL);
/// ```
#[derive(Clone)]
pub struct Answer {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Built(Built),
    Raw(Vec<u8>),
    Handler(Handler),
}

#[derive(Clone, Debug)]
struct Built {
    rcode: Rcode,
    records: Vec<(Section, Template)>,
    authoritative: bool,
    authentic_data: bool,
    /// An OPT record to carry whatever the query had.
    edns: Option<EdnsHeader>,
    edns_options: Vec<(OptionCode, Vec<u8>)>,
}

#[derive(Clone, Debug)]
enum Template {
    /// The question's A or AAAA records from these addresses.
    Addresses { addresses: Vec<IpAddr>, ttl: u32 },
    /// One record; `owner_is_question` when it was written with `@`.
    Record { record: RecordBuf, owner_is_question: bool },
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Built(built) => built.fmt(f),
            Kind::Raw(bytes) => f.debug_tuple("Raw").field(&bytes.len()).finish(),
            Kind::Handler(_) => f.write_str("Handler"),
        }
    }
}

impl Answer {
    fn built(rcode: Rcode, records: Vec<(Section, Template)>) -> Self {
        Self {
            kind: Kind::Built(Built {
                rcode,
                records,
                authoritative: false,
                authentic_data: false,
                edns: None,
                edns_options: Vec::new(),
            }),
        }
    }

    /// NOERROR with `address` for the question's name when the question's
    /// type is its family's (A for IPv4, AAAA for IPv6), NODATA otherwise.
    /// TTL 300.
    pub fn address(address: IpAddr) -> Self {
        Self::addresses([address], 300)
    }

    /// Like [`Answer::address`] with several addresses (one record each, in
    /// this order) and a TTL.
    pub fn addresses(addresses: impl IntoIterator<Item = IpAddr>, ttl: u32) -> Self {
        let addresses = addresses.into_iter().collect();
        Self::built(Rcode::NOERROR, vec![(Section::Answer, Template::Addresses { addresses, ttl })])
    }

    /// NOERROR with these answer records, in presentation format with
    /// absolute names (`www.example. 60 IN A 192.0.2.1`); an owner written
    /// `@` is the name asked.
    ///
    /// # Panics
    ///
    /// When a record does not parse; [`Answer::try_records`] returns the error.
    pub fn records<'t>(records: impl IntoIterator<Item = &'t str>) -> Self {
        match Self::try_records(records) {
            Ok(answer) => answer,
            Err(error) => panic!("Answer::records: {error}"),
        }
    }

    /// [`Answer::records`] that returns an error instead of panicking.
    pub fn try_records<'t>(records: impl IntoIterator<Item = &'t str>) -> Result<Self, Error> {
        Self::rcode(Rcode::NOERROR).try_with_records(Section::Answer, records)
    }

    /// This rcode and no records (NXDOMAIN, SERVFAIL, REFUSED...).
    pub fn rcode(rcode: Rcode) -> Self {
        Self::built(rcode, Vec::new())
    }

    /// NXDOMAIN without records.
    pub fn nxdomain() -> Self {
        Self::rcode(Rcode::NXDOMAIN)
    }

    /// These bytes as they are, but for the first two, which become the
    /// query's ID so that the client takes the packet as an answer (see
    /// [`Behaviour::WrongId`](crate::Behaviour::WrongId) for the other case).
    /// Nothing is checked or cut: the bytes may be anything.
    pub fn raw(bytes: impl Into<Vec<u8>>) -> Self {
        Self { kind: Kind::Raw(bytes.into()) }
    }

    /// Answer with a function of the query (`None`: no answer).
    pub fn with(handler: impl Fn(&Message<'_>, Transport) -> Option<Vec<u8>> + Send + Sync + 'static) -> Self {
        Self { kind: Kind::Handler(Arc::new(handler)) }
    }

    /// Add records to the authority section (same format as [`Answer::records`]).
    ///
    /// # Panics
    ///
    /// When a record does not parse, or this is a raw or handler answer.
    pub fn authority<'t>(self, records: impl IntoIterator<Item = &'t str>) -> Self {
        self.with_records_or_panic(Section::Authority, records)
    }

    /// Add records to the additional section (same format as [`Answer::records`]).
    ///
    /// # Panics
    ///
    /// When a record does not parse, or this is a raw or handler answer.
    pub fn additional<'t>(self, records: impl IntoIterator<Item = &'t str>) -> Self {
        self.with_records_or_panic(Section::Additional, records)
    }

    /// Set AA, as an authoritative server would.
    pub fn authoritative(mut self) -> Self {
        if let Kind::Built(built) = &mut self.kind {
            built.authoritative = true;
        }
        self
    }

    /// Set AD, as a validating resolver would.
    pub fn authentic_data(mut self) -> Self {
        if let Kind::Built(built) = &mut self.kind {
            built.authentic_data = true;
        }
        self
    }

    /// Carry an OPT record with these settings whether or not the query had
    /// one (without this, answers carry OPT exactly when their query did).
    pub fn edns(mut self, edns: EdnsHeader) -> Self {
        if let Kind::Built(built) = &mut self.kind {
            built.edns = Some(edns);
        }
        self
    }

    /// Add an EDNS option (NSID, say) to answers that carry an OPT record.
    pub fn edns_option(mut self, code: OptionCode, data: impl Into<Vec<u8>>) -> Self {
        if let Kind::Built(built) = &mut self.kind {
            built.edns_options.push((code, data.into()));
        }
        self
    }

    fn with_records_or_panic<'t>(self, section: Section, records: impl IntoIterator<Item = &'t str>) -> Self {
        match self.try_with_records(section, records) {
            Ok(answer) => answer,
            Err(error) => panic!("Answer: {error}"),
        }
    }

    fn try_with_records<'t>(
        mut self,
        section: Section,
        records: impl IntoIterator<Item = &'t str>,
    ) -> Result<Self, Error> {
        let Kind::Built(built) = &mut self.kind else {
            panic!("records can only be added to a built answer, not to a raw or handler one");
        };
        for text in records {
            let trimmed = text.trim_start();
            let (owner_is_question, parsed) = match trimmed.strip_prefix("@ ") {
                Some(rest) => (true, format!("{QUESTION_OWNER} {rest}").parse::<RecordBuf>()),
                None => (false, trimmed.parse::<RecordBuf>()),
            };
            let record = parsed.map_err(|source| Error::Record { text: text.to_owned(), source })?;
            built.records.push((section, Template::Record { record, owner_is_question }));
        }
        Ok(self)
    }

    /// The response to `query` over `transport`, before any behaviour; `None`
    /// when a handler gives no answer.
    pub(crate) fn respond(&self, query: &Message<'_>, transport: Transport) -> Option<Vec<u8>> {
        match &self.kind {
            Kind::Built(built) => build(built, query).ok(),
            Kind::Raw(bytes) => {
                let mut bytes = bytes.clone();
                if let Some(id) = bytes.get_mut(..2) {
                    id.copy_from_slice(&query.id().to_be_bytes());
                }
                Some(bytes)
            }
            Kind::Handler(handler) => handler(query, transport),
        }
    }

    /// Whether UDP size limits apply (not to raw bytes, which go out as given).
    pub(crate) fn is_raw(&self) -> bool {
        matches!(self.kind, Kind::Raw(_))
    }
}

fn build(built: &Built, query: &Message<'_>) -> Result<Vec<u8>, signpost_wire::Error> {
    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::response_to(&mut buffer, query)?;
    let flags = builder.header_mut().flags.with_ra(true).with_aa(built.authoritative).with_ad(built.authentic_data);
    builder.set_flags(flags);
    builder.set_rcode(built.rcode);
    let question = query.first_question()?;
    for (section, template) in &built.records {
        match template {
            Template::Addresses { addresses, ttl } => {
                let Some(question) = &question else { continue };
                for address in addresses {
                    match (address, question.qtype()) {
                        (IpAddr::V4(v4), RecordType::A) => {
                            builder.push(*section, &question.name(), Class::IN, *ttl, &RData::A(*v4))?;
                        }
                        (IpAddr::V6(v6), RecordType::AAAA) => {
                            builder.push(*section, &question.name(), Class::IN, *ttl, &RData::Aaaa(*v6))?;
                        }
                        _ => {}
                    }
                }
            }
            Template::Record { record, owner_is_question: true } => {
                let Some(question) = &question else { continue };
                builder.push(*section, &question.name(), record.class, record.ttl, &record.data)?;
            }
            Template::Record { record, owner_is_question: false } => builder.push_record_buf(*section, record)?,
        }
    }
    let edns = match built.edns {
        Some(forced) => Some(forced),
        None => query.edns()?.map(|_| EdnsHeader::default()),
    };
    if let Some(edns) = edns {
        builder.set_edns(edns);
        for (code, data) in &built.edns_options {
            builder.push_edns_option(&EdnsOption::Unknown { code: *code, data })?;
        }
    }
    builder.finish()?;
    Ok(buffer)
}

/// The largest UDP answer the sender of `query` takes: its EDNS payload size
/// (at least 512), or 512 without EDNS.
pub(crate) fn udp_limit(query: &Message<'_>) -> usize {
    match query.edns() {
        Ok(Some(edns)) => usize::from(edns.udp_payload_size()).max(512),
        _ => 512,
    }
}

/// The answer a server gives when the full one does not fit: the header and
/// question with TC set (and the same rcode), plus OPT when the query had it.
pub(crate) fn truncated(query: &Message<'_>, rcode: Rcode) -> Option<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::response_to(&mut buffer, query).ok()?;
    let flags = builder.header_mut().flags.with_ra(true).with_tc(true);
    builder.set_flags(flags);
    builder.set_rcode(rcode);
    if query.edns().ok()?.is_some() {
        builder.set_edns(EdnsHeader::default());
    }
    builder.finish().ok()?;
    Some(buffer)
}

/// A spoof: an answer to the query's own question with [`FORGED_ADDRESS`].
pub(crate) fn forged(query: &Message<'_>) -> Option<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::response_to(&mut buffer, query).ok()?;
    let question = query.first_question().ok()??;
    builder.push(Section::Answer, &question.name(), Class::IN, 60, &RData::A(FORGED_ADDRESS)).ok()?;
    builder.finish().ok()?;
    Some(buffer)
}

/// A spoof with the query's ID but [`OTHER_QUESTION`] as its question.
pub(crate) fn other_question(query: &Message<'_>) -> Option<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut builder = MessageBuilder::response_header_to(&mut buffer, query.header()).ok()?;
    let other: NameBuf = OTHER_QUESTION.parse().ok()?;
    builder.push_question(&other, RecordType::A, Class::IN).ok()?;
    builder.push(Section::Answer, &other, Class::IN, 60, &RData::A(FORGED_ADDRESS)).ok()?;
    builder.finish().ok()?;
    Some(buffer)
}

#[cfg(test)]
mod tests {
    use signpost_wire::RecordBuf;

    use super::*;
    use crate::Query;

    /// A query with RD, and an OPT record offering 4096 bytes if `edns`.
    fn query(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
        let query = Query::new(name, qtype).id(0x1234);
        let query =
            if edns { query.edns(EdnsHeader { udp_payload_size: 4096, ..EdnsHeader::default() }) } else { query };
        query.to_bytes()
    }

    fn lines(response: &[u8]) -> Vec<String> {
        let message = Message::parse(response).unwrap();
        message.records().unwrap().map(|r| RecordBuf::from_record(&r.unwrap()).unwrap().to_string()).collect()
    }

    #[test]
    fn addresses_answer_their_family_and_nodata_otherwise() {
        let answer = Answer::addresses(["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()], 60);
        let a = query("Www.Example", RecordType::A, false);
        let response = answer.respond(&Message::parse(&a).unwrap(), Transport::Udp).unwrap();
        let message = Message::parse(&response).unwrap();
        assert_eq!(message.id(), 0x1234);
        assert!(message.flags().qr() && message.flags().rd() && message.flags().ra());
        assert_eq!(lines(&response), ["Www.Example. 60 IN A 192.0.2.1"]);
        let aaaa = query("www.example", RecordType::AAAA, false);
        let response = answer.respond(&Message::parse(&aaaa).unwrap(), Transport::Tcp).unwrap();
        assert_eq!(lines(&response), ["www.example. 60 IN AAAA 2001:db8::1"]);
        let mx = query("www.example", RecordType::MX, false);
        let response = answer.respond(&Message::parse(&mx).unwrap(), Transport::Tcp).unwrap();
        assert_eq!(Message::parse(&response).unwrap().rcode(), Ok(Rcode::NOERROR));
        assert!(lines(&response).is_empty());
    }

    #[test]
    fn records_flags_sections_and_edns_options() {
        let answer = Answer::records(["@ 30 IN TXT \"hi\""])
            .authority(["example. 60 IN NS ns.example."])
            .additional(["ns.example. 60 IN A 192.0.2.53"])
            .authoritative()
            .authentic_data()
            .edns_option(OptionCode::NSID, b"fake-1".to_vec());
        let with_edns = query("t.example", RecordType::TXT, true);
        let response = answer.respond(&Message::parse(&with_edns).unwrap(), Transport::Udp).unwrap();
        let message = Message::parse(&response).unwrap();
        assert!(message.flags().aa() && message.flags().ad());
        assert_eq!(
            lines(&response)[..3],
            ["t.example. 30 IN TXT \"hi\"", "example. 60 IN NS ns.example.", "ns.example. 60 IN A 192.0.2.53"]
        );
        let edns = message.edns().unwrap().unwrap();
        assert_eq!(edns.option(OptionCode::NSID), Some(EdnsOption::Nsid(b"fake-1")));
        // Without EDNS in the query there is no OPT in the answer, unless it is forced.
        let plain = query("t.example", RecordType::TXT, false);
        let response = answer.respond(&Message::parse(&plain).unwrap(), Transport::Udp).unwrap();
        assert!(Message::parse(&response).unwrap().edns().unwrap().is_none());
        let forced = answer.edns(EdnsHeader { udp_payload_size: 1400, ..EdnsHeader::default() });
        let response = forced.respond(&Message::parse(&plain).unwrap(), Transport::Udp).unwrap();
        assert_eq!(Message::parse(&response).unwrap().edns().unwrap().unwrap().udp_payload_size(), 1400);
    }

    #[test]
    fn bad_records_are_reported_with_their_text() {
        let error = Answer::try_records(["www.example. 60 IN A not-an-address"]).err().unwrap();
        assert!(error.to_string().contains("not-an-address"), "{error}");
    }

    #[test]
    fn raw_answers_take_the_query_id_and_nothing_else() {
        let answer = Answer::raw(vec![0, 0, 1, 2, 3]);
        let bytes = query("x.example", RecordType::A, false);
        assert_eq!(answer.respond(&Message::parse(&bytes).unwrap(), Transport::Udp), Some(vec![0x12, 0x34, 1, 2, 3]));
        assert!(answer.is_raw());
    }

    #[test]
    fn spoofs_carry_the_forged_address_and_truncation_keeps_the_question() {
        let bytes = query("x.example", RecordType::A, true);
        let message = Message::parse(&bytes).unwrap();
        assert_eq!(lines(&forged(&message).unwrap()), ["x.example. 60 IN A 203.0.113.66"]);
        let other = other_question(&message).unwrap();
        let other = Message::parse(&other).unwrap();
        assert_eq!(other.id(), 0x1234);
        assert_eq!(other.first_question().unwrap().unwrap().name().to_string(), OTHER_QUESTION);
        let cut = truncated(&message, Rcode::NOERROR).unwrap();
        let cut = Message::parse(&cut).unwrap();
        assert!(cut.flags().tc());
        assert_eq!(cut.header().ancount, 0);
        assert!(cut.edns().unwrap().is_some());
        assert_eq!(udp_limit(&message), 4096);
        assert_eq!(udp_limit(&Message::parse(&query("x.example", RecordType::A, false)).unwrap()), 512);
    }
}
