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

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use signpost_benches::codecs::{Outcome, dom, hickory, signpost, simple};
use signpost_benches::{Digest, QUERY, QUERY_ROUTE, REDIRECT_ANSWER, RESPONSE, RESPONSE_WALK, Transcript, walk_floor};

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
