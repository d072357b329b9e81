//! Codec benchmarks: the DNS wire codec workloads a proxy runs, measured for
//! signpost-wire, hickory-proto, NLnet Labs' `domain` and simple-dns on the
//! same bytes, in the same criterion groups, so their ratios come from one run.
//!
//! Groups (one criterion group per workload, one entry per library):
//!
//! * `parse_query_route`: parse the header and first question of
//!   [`QUERY`] and report ID, flags, QNAME labels, QTYPE, QCLASS.
//! * `parse_response_walk`: parse [`RESPONSE`] and report every record's
//!   header, every name's labels and every typed RDATA field (A address,
//!   CNAME/NS target labels, OPT payload size and options), plus the
//!   `handrolled_floor`: [`walk_floor`], which decodes no RDATA.
//! * `build_response`: build [`RESPONSE`] from scratch, with name
//!   compression, into a reused buffer.
//! * `redirect_path`: parse [`QUERY`] and write [`REDIRECT_ANSWER`] (one
//!   `A 127.0.0.1` record) into a reused buffer.
//!
//! Every walker reports what it reads through the same [`Sink`] events, so
//! the per-library work is the same by construction; before timing, each
//! entry's output is checked once (walk transcripts against [`QUERY_ROUTE`]
//! and [`RESPONSE_WALK`], built bytes against the frozen packets).

use std::error::Error;
use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use signpost_benches::{Digest, QUERY, QUERY_ROUTE, REDIRECT_ANSWER, RESPONSE, RESPONSE_WALK, Transcript, walk_floor};

/// What every walker, builder and writer returns; errors only on malformed
/// input, never on the benchmarked paths.
type Outcome = Result<(), Box<dyn Error>>;

type Group<'a> = BenchmarkGroup<'a, WallTime>;

const HICKORY: &str = "hickory-proto";
const DOMAIN: &str = "domain";
const SIMPLE_DNS: &str = "simple-dns";
const SIGNPOST: &str = "signpost-wire";

// ---------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------

fn parse_query_route(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_query_route");
    group.throughput(Throughput::Bytes(QUERY.len() as u64));
    bench_walk(&mut group, HICKORY, &QUERY, QUERY_ROUTE, hickory::route, hickory::route);
    bench_walk(&mut group, DOMAIN, &QUERY, QUERY_ROUTE, dom::route, dom::route);
    bench_walk(&mut group, SIMPLE_DNS, &QUERY, QUERY_ROUTE, simple::route, simple::route);
    bench_walk(&mut group, SIGNPOST, &QUERY, QUERY_ROUTE, signpost::route, signpost::route);
    group.finish();
}

fn parse_response_walk(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_response_walk");
    group.throughput(Throughput::Bytes(RESPONSE.len() as u64));
    bench_walk(&mut group, HICKORY, &RESPONSE, RESPONSE_WALK, hickory::walk, hickory::walk);
    bench_walk(&mut group, DOMAIN, &RESPONSE, RESPONSE_WALK, dom::walk, dom::walk);
    bench_walk(&mut group, SIMPLE_DNS, &RESPONSE, RESPONSE_WALK, simple::walk, simple::walk);
    handrolled_floor(&mut group);
    bench_walk(&mut group, SIGNPOST, &RESPONSE, RESPONSE_WALK, signpost::walk, signpost::walk);
    group.finish();
}

fn build_response(c: &mut Criterion) {
    let mut group = c.benchmark_group("build_response");
    group.throughput(Throughput::Bytes(RESPONSE.len() as u64));
    let data = hickory::ResponseData::new();
    bench_build(&mut group, HICKORY, Exact::Bytes, |buf| black_box(&data).build(buf));
    let data = dom::ResponseData::new();
    bench_build(&mut group, DOMAIN, Exact::Bytes, |buf| black_box(&data).build(buf));
    let data = simple::ResponseData::new();
    bench_build(&mut group, SIMPLE_DNS, Exact::OptFirstInAdditional, |buf| black_box(&data).build(buf));
    let data = signpost::ResponseData::new();
    bench_build(&mut group, SIGNPOST, Exact::Bytes, |buf| black_box(&data).build(buf));
    group.finish();
}

fn redirect_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("redirect_path");
    group.throughput(Throughput::Bytes(QUERY.len() as u64));
    bench_redirect(&mut group, HICKORY, hickory::redirect);
    bench_redirect(&mut group, DOMAIN, dom::redirect);
    bench_redirect(&mut group, SIMPLE_DNS, simple::redirect);
    bench_redirect(&mut group, SIGNPOST, signpost::redirect);
    group.finish();
}

criterion_group!(wire, parse_query_route, parse_response_walk, build_response, redirect_path);
criterion_main!(wire);

// ---------------------------------------------------------------------------
// Shared harness: check once, then time
// ---------------------------------------------------------------------------

/// Benchmarks a walker after checking it once.
///
/// `check` and `walk` are the same generic walker instantiated for
/// [`Transcript`] and [`Digest`]: the transcript must equal `expected`, and
/// the timed [`Digest`] instance must fold the very same events.
fn bench_walk(
    group: &mut Group<'_>,
    id: &str,
    packet: &[u8],
    expected: &[&str],
    check: impl Fn(&[u8], &mut Transcript) -> Outcome,
    walk: impl Fn(&[u8], &mut Digest) -> Outcome,
) {
    let mut transcript = Transcript::new();
    check(packet, &mut transcript).unwrap_or_else(|err| panic!("{id}: walk failed: {err}"));
    assert_eq!(transcript.lines, expected, "{id}: walk transcript");
    let mut digest = Digest::default();
    walk(packet, &mut digest).unwrap_or_else(|err| panic!("{id}: walk failed: {err}"));
    assert_eq!(digest, transcript.digest, "{id}: timed walk saw other events");

    group.bench_function(id, |b| {
        b.iter(|| {
            let mut digest = Digest::default();
            if let Err(err) = walk(black_box(packet), &mut digest) {
                panic!("{id}: walk failed: {err}");
            }
            black_box(digest)
        });
    });
}

/// The hand-rolled floor for `parse_response_walk`: skip names and record
/// headers with bounds checks, decode no RDATA.
fn handrolled_floor(group: &mut Group<'_>) {
    let summary = walk_floor(&RESPONSE).expect("handrolled floor walks RESPONSE");
    assert_eq!((summary.questions, summary.records, summary.end), (1, 9, RESPONSE.len()), "handrolled floor");
    group.bench_function("handrolled_floor", |b| {
        b.iter(|| walk_floor(black_box(&RESPONSE)));
    });
}

/// How close a builder's output must be to [`RESPONSE`].
#[derive(Clone, Copy, Debug)]
enum Exact {
    /// Byte for byte.
    Bytes,
    /// The same bytes except that the OPT record comes first in the
    /// additional section (simple-dns always writes it there).
    OptFirstInAdditional,
}

/// [`RESPONSE`] with its OPT record (the last 39 bytes) moved to the front
/// of the additional section (offset 162). Compression pointers all point
/// before 162, so nothing else changes.
fn response_with_opt_first() -> Vec<u8> {
    let (head, tail) = RESPONSE.split_at(162);
    let (glue, opt) = tail.split_at(tail.len() - 39);
    [head, opt, glue].concat()
}

/// Benchmarks a response builder after checking its output once: it must
/// decode (with the hickory-proto walker) to [`RESPONSE_WALK`], match the
/// bytes of [`RESPONSE`] as `exact` says, and come out the same length when
/// built again into the used buffer.
fn bench_build(group: &mut Group<'_>, id: &str, exact: Exact, build: impl Fn(&mut Vec<u8>) -> Outcome) {
    let mut buf = Vec::with_capacity(512);
    build(&mut buf).unwrap_or_else(|err| panic!("{id}: build failed: {err}"));
    let mut transcript = Transcript::new();
    hickory::walk(&buf, &mut transcript).unwrap_or_else(|err| panic!("{id}: built response does not parse: {err}"));
    assert_eq!(transcript.lines, RESPONSE_WALK, "{id}: built response contents");
    match exact {
        Exact::Bytes => assert_eq!(buf, RESPONSE, "{id}: built response bytes"),
        Exact::OptFirstInAdditional => {
            assert_eq!(buf, response_with_opt_first(), "{id}: built response bytes");
        }
    }
    // Build again into the used buffer: reuse must not append.
    build(&mut buf).unwrap_or_else(|err| panic!("{id}: rebuild failed: {err}"));
    assert_eq!(buf.len(), RESPONSE.len(), "{id}: rebuilt response length");

    group.bench_function(id, |b| {
        b.iter(|| {
            if let Err(err) = build(&mut buf) {
                panic!("{id}: build failed: {err}");
            }
            black_box(buf.as_slice());
        });
    });
}

/// Benchmarks a redirect writer after checking that it turns [`QUERY`] into
/// exactly [`REDIRECT_ANSWER`], also when the buffer is reused.
fn bench_redirect(group: &mut Group<'_>, id: &str, redirect: impl Fn(&[u8], &mut Vec<u8>) -> Outcome) {
    let mut buf = Vec::with_capacity(512);
    for _ in 0..2 {
        redirect(&QUERY, &mut buf).unwrap_or_else(|err| panic!("{id}: redirect failed: {err}"));
        assert_eq!(buf, REDIRECT_ANSWER, "{id}: redirect answer bytes");
    }

    group.bench_function(id, |b| {
        b.iter(|| {
            if let Err(err) = redirect(black_box(&QUERY), &mut buf) {
                panic!("{id}: redirect failed: {err}");
            }
            black_box(buf.as_slice());
        });
    });
}

// ---------------------------------------------------------------------------
// hickory-proto 0.26
// ---------------------------------------------------------------------------

/// hickory-proto: owned `Message`/`Record`/`Name` values, decoded and
/// encoded through `BinDecoder`/`BinEncoder`.
mod hickory {
    use std::net::Ipv4Addr;

    use hickory_proto::op::{Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, Query};
    use hickory_proto::rr::rdata::opt::EdnsOption;
    use hickory_proto::rr::rdata::{A, CNAME, NS};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
    use signpost_benches::{CLIENT_COOKIE, HeaderFields, SERVER_COOKIE, Section, Sink};

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
    pub(super) fn route<S: Sink>(msg: &[u8], sink: &mut S) -> Outcome {
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
    pub(super) fn walk<S: Sink>(msg: &[u8], sink: &mut S) -> Outcome {
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

    /// The response's names, parsed once (a server holds them already).
    pub(super) struct ResponseData {
        qname: Name,
        target: Name,
        zone: Name,
        ns1: Name,
        ns2: Name,
    }

    impl ResponseData {
        pub(super) fn new() -> Self {
            let parse = |name: &str| Name::from_ascii(name).expect("valid name");
            Self {
                qname: parse("www.example.com."),
                target: parse("www.example.com.cdn.example.net."),
                zone: parse("cdn.example.net."),
                ns1: parse("ns1.cdn.example.net."),
                ns2: parse("ns2.cdn.example.net."),
            }
        }

        /// Builds a `Message` (records own their names, so names are cloned)
        /// and encodes it with compression into `buf`.
        pub(super) fn build(&self, buf: &mut Vec<u8>) -> Outcome {
            let mut message = Message::response(0xbeef, OpCode::Query);
            message.metadata.recursion_desired = true;
            message.metadata.recursion_available = true;
            message.add_query(Query::query(self.qname.clone(), RecordType::A));
            message.add_answer(Record::from_rdata(self.qname.clone(), 300, RData::CNAME(CNAME(self.target.clone()))));
            for last in 1..=3 {
                message.add_answer(Record::from_rdata(self.target.clone(), 60, RData::A(A::new(192, 0, 2, last))));
            }
            for ns in [&self.ns1, &self.ns2] {
                message.add_authority(Record::from_rdata(self.zone.clone(), 3600, RData::NS(NS(ns.clone()))));
            }
            for (ns, last) in [(&self.ns1, 53), (&self.ns2, 54)] {
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
    pub(super) fn redirect(query: &[u8], buf: &mut Vec<u8>) -> Outcome {
        let mut decoder = BinDecoder::new(query);
        let request = Header::read(&mut decoder)?;
        if request.counts.queries == 0 {
            return Err("no question".into());
        }
        let question = Query::read(&mut decoder)?;

        let mut metadata = Metadata::new(request.metadata.id, MessageType::Response, request.metadata.op_code);
        metadata.authoritative = true;
        metadata.recursion_desired = request.metadata.recursion_desired;
        let header =
            Header { metadata, counts: HeaderCounts { queries: 1, answers: 1, authorities: 0, additionals: 0 } };

        buf.clear();
        let mut encoder = BinEncoder::new(buf);
        header.emit(&mut encoder)?;
        question.emit(&mut encoder)?;
        Record::from_rdata(question.name, 60, RData::A(A(Ipv4Addr::LOCALHOST))).emit(&mut encoder)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// domain 0.12
// ---------------------------------------------------------------------------

/// NLnet Labs' `domain`: lazy parsing over the borrowed bytes
/// (`Message<&[u8]>`, `ParsedName`), building with `MessageBuilder` over a
/// `StaticCompressor` (allocation-free name compression).
mod dom {
    use std::mem;
    use std::net::Ipv4Addr;

    use domain::base::iana::OptionCode;
    use domain::base::name::ParsedName;
    use domain::base::opt::{Opt, OptRecord, UnknownOptData};
    use domain::base::{Message, MessageBuilder, Name, Rtype, StaticCompressor};
    use domain::dep::octseq::OctetsBuilder;
    use domain::rdata::{A, AllRecordData, Cname, Ns};
    use signpost_benches::{CLIENT_COOKIE, HeaderFields, SERVER_COOKIE, Section, Sink};

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
    pub(super) fn route<S: Sink>(msg: &[u8], sink: &mut S) -> Outcome {
        let message = Message::from_octets(msg)?;
        sink.header(&header_fields(message.header()));
        let question = message.question().next().ok_or("no question")??;
        sink.question(question.qtype().to_int(), question.qclass().to_int());
        name(question.qname(), sink);
        Ok(())
    }

    /// Walks the sections in wire order, parsing each record's data into
    /// `AllRecordData` (the OPT record through `OptRecord`).
    pub(super) fn walk<S: Sink>(msg: &[u8], sink: &mut S) -> Outcome {
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

    /// The response's names, parsed once (a server holds them already).
    pub(super) struct ResponseData {
        qname: Names,
        target: Names,
        zone: Names,
        ns1: Names,
        ns2: Names,
    }

    impl ResponseData {
        pub(super) fn new() -> Self {
            let parse = |name: &str| Names::vec_from_str(name).expect("valid name");
            Self {
                qname: parse("www.example.com."),
                target: parse("www.example.com.cdn.example.net."),
                zone: parse("cdn.example.net."),
                ns1: parse("ns1.cdn.example.net."),
                ns2: parse("ns2.cdn.example.net."),
            }
        }

        /// Pushes records (names by reference) through `MessageBuilder`
        /// into `buf`, wrapped in a `StaticCompressor`.
        pub(super) fn build(&self, buf: &mut Vec<u8>) -> Outcome {
            let mut builder = MessageBuilder::from_target(StaticCompressor::new(mem::take(buf)))?;
            let header = builder.header_mut();
            header.set_id(0xbeef);
            header.set_qr(true);
            header.set_rd(true);
            header.set_ra(true);
            let mut question = builder.question();
            question.push((&self.qname, Rtype::A))?;
            let mut answer = question.answer();
            answer.push((&self.qname, 300, Cname::new(&self.target)))?;
            for last in 1..=3 {
                answer.push((&self.target, 60, A::from_octets(192, 0, 2, last)))?;
            }
            let mut authority = answer.authority();
            for ns in [&self.ns1, &self.ns2] {
                authority.push((&self.zone, 3600, Ns::new(ns)))?;
            }
            let mut additional = authority.additional();
            for (ns, last) in [(&self.ns1, 53), (&self.ns2, 54)] {
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
    pub(super) fn redirect(query: &[u8], buf: &mut Vec<u8>) -> Outcome {
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
}

// ---------------------------------------------------------------------------
// simple-dns 0.13
// ---------------------------------------------------------------------------

/// simple-dns: `Packet::parse` decodes the whole packet into vectors of
/// borrowed records (it lifts the OPT record into the header); building
/// writes a `Packet` through `write_compressed_to`.
mod simple {
    use std::borrow::Cow;
    use std::io::Cursor;
    use std::net::Ipv4Addr;

    use signpost_benches::{CLIENT_COOKIE, HeaderFields, SERVER_COOKIE, Section, Sink};
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
    pub(super) fn route<S: Sink>(msg: &[u8], sink: &mut S) -> Outcome {
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
    pub(super) fn walk<S: Sink>(msg: &[u8], sink: &mut S) -> Outcome {
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

    /// The response's names, parsed once (a server holds them already).
    pub(super) struct ResponseData {
        qname: Name<'static>,
        target: Name<'static>,
        zone: Name<'static>,
        ns1: Name<'static>,
        ns2: Name<'static>,
        cookie: Vec<u8>,
    }

    impl ResponseData {
        pub(super) fn new() -> Self {
            let parse = |name: &'static str| Name::new(name).expect("valid name");
            Self {
                qname: parse("www.example.com"),
                target: parse("www.example.com.cdn.example.net"),
                zone: parse("cdn.example.net"),
                ns1: parse("ns1.cdn.example.net"),
                ns2: parse("ns2.cdn.example.net"),
                cookie: [CLIENT_COOKIE.as_slice(), &SERVER_COOKIE].concat(),
            }
        }

        /// Builds a `Packet` (records own their `Name`s, so names are
        /// cloned; labels stay borrowed) and writes it with compression.
        pub(super) fn build(&self, buf: &mut Vec<u8>) -> Outcome {
            let mut packet = Packet::new_reply(0xbeef);
            packet.set_flags(PacketFlag::RECURSION_DESIRED | PacketFlag::RECURSION_AVAILABLE);
            packet.questions.push(Question::new(self.qname.clone(), TYPE::A.into(), CLASS::IN.into(), false));
            packet.answers.push(ResourceRecord::new(
                self.qname.clone(),
                CLASS::IN,
                300,
                RData::CNAME(CNAME(self.target.clone())),
            ));
            for last in 1..=3 {
                packet.answers.push(ResourceRecord::new(
                    self.target.clone(),
                    CLASS::IN,
                    60,
                    RData::A(A { address: Ipv4Addr::new(192, 0, 2, last).to_bits() }),
                ));
            }
            for ns in [&self.ns1, &self.ns2] {
                packet.name_servers.push(ResourceRecord::new(
                    self.zone.clone(),
                    CLASS::IN,
                    3600,
                    RData::NS(NS(ns.clone())),
                ));
            }
            for (ns, last) in [(&self.ns1, 53), (&self.ns2, 54)] {
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
    pub(super) fn redirect(query: &[u8], buf: &mut Vec<u8>) -> Outcome {
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
}

// ---------------------------------------------------------------------------
// signpost-wire
// ---------------------------------------------------------------------------

/// signpost-wire: `Message` is a view over the bytes; names are walked in
/// place through compression pointers; RDATA is typed on demand; the builder
/// writes into the caller's buffer with a fixed-size compression table.
mod signpost {
    use std::net::Ipv4Addr;

    use signpost_benches::{CLIENT_COOKIE, HeaderFields, SERVER_COOKIE, Section, Sink};
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
    pub(super) fn route<S: Sink>(msg: &[u8], sink: &mut S) -> Outcome {
        let message = Message::parse(msg)?;
        sink.header(&header_fields(&message));
        let question = message.first_question()?.ok_or("no question")?;
        sink.question(question.qtype().0, question.qclass().0);
        name(question.name(), sink);
        Ok(())
    }

    /// One pass over the message; every record's RDATA is typed and checked.
    pub(super) fn walk<S: Sink>(msg: &[u8], sink: &mut S) -> Outcome {
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

    /// The response's names, parsed once (a server holds them already).
    pub(super) struct ResponseData {
        qname: NameBuf,
        target: NameBuf,
        zone: NameBuf,
        ns1: NameBuf,
        ns2: NameBuf,
    }

    impl ResponseData {
        pub(super) fn new() -> Self {
            let parse = |text: &str| text.parse::<NameBuf>().expect("valid name");
            Self {
                qname: parse("www.example.com"),
                target: parse("www.example.com.cdn.example.net"),
                zone: parse("cdn.example.net"),
                ns1: parse("ns1.cdn.example.net"),
                ns2: parse("ns2.cdn.example.net"),
            }
        }

        /// Writes the response straight into the buffer; names are
        /// compressed through the builder's fixed table.
        pub(super) fn build(&self, buf: &mut Vec<u8>) -> Outcome {
            type Data<'n> = RecordData<&'n NameBuf, &'n [u8]>;
            buf.clear();
            let mut builder = MessageBuilder::new(buf)?;
            builder.set_id(0xbeef);
            builder.set_flags(Flags::default().with_qr(true).with_rd(true).with_ra(true));
            builder.push_question(&self.qname, RecordType::A, Class::IN)?;
            builder.push(WireSection::Answer, &self.qname, Class::IN, 300, &Data::Cname(&self.target))?;
            for last in 1..=3 {
                builder.push(
                    WireSection::Answer,
                    &self.target,
                    Class::IN,
                    60,
                    &Data::A(Ipv4Addr::new(192, 0, 2, last)),
                )?;
            }
            for ns in [&self.ns1, &self.ns2] {
                builder.push(WireSection::Authority, &self.zone, Class::IN, 3600, &Data::Ns(ns))?;
            }
            for (ns, last) in [(&self.ns1, 53), (&self.ns2, 54)] {
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
    pub(super) fn redirect(query: &[u8], buf: &mut Vec<u8>) -> Outcome {
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
}
