//! Shared helpers for the Signpost benchmarks and load tools.
//!
//! This crate holds what the codec benchmarks (`benches/wire.rs`) share
//! between the libraries they compare:
//!
//! * the test packets, frozen as documented byte constants ([`QUERY`],
//!   [`RESPONSE`], [`REDIRECT_ANSWER`]), so every library parses exactly the
//!   same bytes;
//! * the [`Sink`] trait through which every library's walker reports what it
//!   read, with a cheap [`Digest`] sink for the timed loop and a [`Transcript`]
//!   sink used to check, once before timing, that a walker read every field
//!   ([`QUERY_ROUTE`], [`RESPONSE_WALK`] are the expected transcripts);
//! * [`walk_floor`], a minimal hand-rolled walk of a message that skips names
//!   and record headers with bounds checks but decodes no RDATA: the floor
//!   under any real parser;
//! * [`codecs`], the workloads implemented once per library, shared by the
//!   criterion bench and the `prof` binary (callgrind instruction counts);
//! * [`mmsg`], the batched UDP (`recvmmsg`/`sendmmsg`) the load benchmarks'
//!   floor binaries share.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

pub mod codecs;
pub mod mmsg;

// ---------------------------------------------------------------------------
// Test packets
// ---------------------------------------------------------------------------

/// A typical stub query, as a proxy receives it: `www.example.com. IN A`
/// with an EDNS(0) OPT record, 44 bytes.
///
/// This is what `dig +nocookie www.example.com A` sends (the AD bit is set
/// by dig by default).
///
/// | offset | bytes | field |
/// |---|---|---|
/// | 0 | `be ef` | ID `0xbeef` |
/// | 2 | `01 20` | flags: QR=0, OPCODE=0 (QUERY), AA=0, TC=0, RD=1; RA=0, Z=0, AD=1, CD=0, RCODE=0 |
/// | 4 | `00 01` | QDCOUNT 1 |
/// | 6 | `00 00` | ANCOUNT 0 |
/// | 8 | `00 00` | NSCOUNT 0 |
/// | 10 | `00 01` | ARCOUNT 1 (the OPT record) |
/// | 12 | `03 www 07 example 03 com 00` | QNAME `www.example.com.` (17 bytes, uncompressed) |
/// | 29 | `00 01` | QTYPE A (1) |
/// | 31 | `00 01` | QCLASS IN (1) |
/// | 33 | `00` | OPT owner: the root name |
/// | 34 | `00 29` | TYPE OPT (41) |
/// | 36 | `04 d0` | CLASS = requestor's UDP payload size, 1232 |
/// | 38 | `00` | TTL byte 1: extended RCODE 0 |
/// | 39 | `00` | TTL byte 2: EDNS version 0 |
/// | 40 | `00 00` | TTL bytes 3-4: flags, DO=0 |
/// | 42 | `00 00` | RDLENGTH 0: no options |
pub const QUERY: [u8; 44] = [
    // Header.
    0xbe, 0xef, // ID
    0x01, 0x20, // flags: RD, AD
    0x00, 0x01, // QDCOUNT
    0x00, 0x00, // ANCOUNT
    0x00, 0x00, // NSCOUNT
    0x00, 0x01, // ARCOUNT
    // Question @12: www.example.com. A IN
    3, b'w', b'w', b'w', //
    7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', //
    3, b'c', b'o', b'm', //
    0,    //
    0x00, 0x01, // QTYPE A
    0x00, 0x01, // QCLASS IN
    // Additional @33: OPT
    0x00, // owner: root
    0x00, 0x29, // TYPE OPT
    0x04, 0xd0, // UDP payload size 1232
    0x00, // extended RCODE
    0x00, // version
    0x00, 0x00, // flags (DO=0)
    0x00, 0x00, // RDLENGTH
];

/// The client cookie (8 bytes) echoed in [`RESPONSE`]'s COOKIE option.
pub const CLIENT_COOKIE: [u8; 8] = [0x24, 0x64, 0xc4, 0xab, 0xcf, 0x10, 0xc9, 0x57];

/// The server cookie (16 bytes, RFC 9018 layout) in [`RESPONSE`]'s COOKIE
/// option: version 1, 3 reserved bytes, a 32-bit timestamp, an 8-byte hash.
pub const SERVER_COOKIE: [u8; 16] = [
    0x01, 0x00, 0x00, 0x00, // version, reserved
    0x66, 0x0f, 0x2a, 0x10, // timestamp
    0x8e, 0x2d, 0x0b, 0x36, 0x91, 0xa4, 0xd5, 0x7c, // hash
];

/// A typical compressed recursive answer to [`QUERY`] from a CDN-hosted
/// name, 233 bytes: one CNAME, three A records for the CDN name, the CDN
/// zone's two NS records with their glue, and an OPT record carrying a DNS
/// cookie (client + server cookie, as BIND and Unbound return them).
///
/// Every name after the question is compressed as far as RFC 1035 allows
/// (each suffix already in the message becomes a pointer), which is also
/// what hickory-proto and `domain` produce when building the same message.
/// The OPT record is last in the additional section.
///
/// | offset | bytes | field |
/// |---|---|---|
/// | 0 | `be ef` | ID `0xbeef` |
/// | 2 | `81 80` | flags: QR=1, OPCODE=0, AA=0, TC=0, RD=1; RA=1, Z=0, AD=0, CD=0, RCODE=0 (NOERROR) |
/// | 4 | `00 01` | QDCOUNT 1 |
/// | 6 | `00 04` | ANCOUNT 4 (CNAME + 3 A) |
/// | 8 | `00 02` | NSCOUNT 2 (NS) |
/// | 10 | `00 03` | ARCOUNT 3 (2 glue A + OPT) |
/// | 12 | `03 www 07 example 03 com 00`, `00 01 00 01` | question `www.example.com. A IN`; labels at 12 (`www`), 16 (`example`), 24 (`com`) |
/// | 33 | `c0 0c` | answer 1 owner → 12 `www.example.com.` |
/// | 35 | `00 05 00 01 00 00 01 2c 00 21` | CNAME IN, TTL 300, RDLENGTH 33 |
/// | 45 | `03 www 07 example 03 com 03 cdn 07 example 03 net 00` | target `www.example.com.cdn.example.net.`, written in full (no suffix of it is in the message yet); `cdn.example.net.` starts at 61 |
/// | 78 | `c0 2d`, `00 01 00 01 00 00 00 3c 00 04`, `c0 00 02 01` | answer 2: owner → 45, A IN, TTL 60, `192.0.2.1` |
/// | 94 | `c0 2d ...`, `c0 00 02 02` | answer 3: A `192.0.2.2` |
/// | 110 | `c0 2d ...`, `c0 00 02 03` | answer 4: A `192.0.2.3` |
/// | 126 | `c0 3d`, `00 02 00 01 00 00 0e 10 00 06` | authority 1: owner → 61 `cdn.example.net.`, NS IN, TTL 3600, RDLENGTH 6 |
/// | 138 | `03 ns1 c0 3d` | NS target `ns1.cdn.example.net.` |
/// | 144 | `c0 3d ...`, `03 ns2 c0 3d` (target at 156) | authority 2: NS `ns2.cdn.example.net.` |
/// | 162 | `c0 8a`, `00 01 00 01 00 00 0e 10 00 04`, `c6 33 64 35` | additional 1: owner → 138 `ns1.cdn.example.net.`, A IN, TTL 3600, `198.51.100.53` |
/// | 178 | `c0 9c ...`, `c6 33 64 36` | additional 2: owner → 156 `ns2.cdn.example.net.`, A `198.51.100.54` |
/// | 194 | `00 00 29 04 d0 00 00 00 00 00 1c` | additional 3: OPT, UDP payload 1232, ext. RCODE 0, version 0, DO=0, RDLENGTH 28 |
/// | 205 | `00 0a 00 18` + 24 bytes | option COOKIE (10), length 24: [`CLIENT_COOKIE`] then [`SERVER_COOKIE`] |
pub const RESPONSE: [u8; 233] = [
    // Header.
    0xbe, 0xef, // ID
    0x81, 0x80, // flags: QR, RD, RA
    0x00, 0x01, // QDCOUNT
    0x00, 0x04, // ANCOUNT
    0x00, 0x02, // NSCOUNT
    0x00, 0x03, // ARCOUNT
    // Question @12: www.example.com. A IN
    3, b'w', b'w', b'w', // @12
    7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', // @16
    3, b'c', b'o', b'm', // @24
    0,    // @28
    0x00, 0x01, // QTYPE A
    0x00, 0x01, // QCLASS IN
    // Answer 1 @33: www.example.com. 300 IN CNAME www.example.com.cdn.example.net.
    0xc0, 0x0c, // owner -> 12
    0x00, 0x05, // TYPE CNAME
    0x00, 0x01, // CLASS IN
    0x00, 0x00, 0x01, 0x2c, // TTL 300
    0x00, 0x21, // RDLENGTH 33
    3, b'w', b'w', b'w', // @45
    7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', // @49
    3, b'c', b'o', b'm', // @57
    3, b'c', b'd', b'n', // @61
    7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', // @65
    3, b'n', b'e', b't', // @73
    0,    // @77
    // Answer 2 @78: www.example.com.cdn.example.net. 60 IN A 192.0.2.1
    0xc0, 0x2d, // owner -> 45
    0x00, 0x01, // TYPE A
    0x00, 0x01, // CLASS IN
    0x00, 0x00, 0x00, 0x3c, // TTL 60
    0x00, 0x04, // RDLENGTH 4
    192, 0, 2, 1, //
    // Answer 3 @94: ... A 192.0.2.2
    0xc0, 0x2d, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x04, //
    192, 0, 2, 2, //
    // Answer 4 @110: ... A 192.0.2.3
    0xc0, 0x2d, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x04, //
    192, 0, 2, 3, //
    // Authority 1 @126: cdn.example.net. 3600 IN NS ns1.cdn.example.net.
    0xc0, 0x3d, // owner -> 61
    0x00, 0x02, // TYPE NS
    0x00, 0x01, // CLASS IN
    0x00, 0x00, 0x0e, 0x10, // TTL 3600
    0x00, 0x06, // RDLENGTH 6
    3, b'n', b's', b'1', 0xc0, 0x3d, // @138: ns1 -> 61
    // Authority 2 @144: cdn.example.net. 3600 IN NS ns2.cdn.example.net.
    0xc0, 0x3d, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00, 0x0e, 0x10, 0x00, 0x06, //
    3, b'n', b's', b'2', 0xc0, 0x3d, // @156: ns2 -> 61
    // Additional 1 @162: ns1.cdn.example.net. 3600 IN A 198.51.100.53
    0xc0, 0x8a, // owner -> 138
    0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x0e, 0x10, 0x00, 0x04, //
    198, 51, 100, 53, //
    // Additional 2 @178: ns2.cdn.example.net. 3600 IN A 198.51.100.54
    0xc0, 0x9c, // owner -> 156
    0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x0e, 0x10, 0x00, 0x04, //
    198, 51, 100, 54, //
    // Additional 3 @194: OPT
    0x00, // owner: root
    0x00, 0x29, // TYPE OPT
    0x04, 0xd0, // UDP payload size 1232
    0x00, // extended RCODE
    0x00, // version
    0x00, 0x00, // flags (DO=0)
    0x00, 0x1c, // RDLENGTH 28
    0x00, 0x0a, // option COOKIE
    0x00, 0x18, // option length 24
    0x24, 0x64, 0xc4, 0xab, 0xcf, 0x10, 0xc9, 0x57, // client cookie
    0x01, 0x00, 0x00, 0x00, 0x66, 0x0f, 0x2a, 0x10, // server cookie: version, reserved, timestamp
    0x8e, 0x2d, 0x0b, 0x36, 0x91, 0xa4, 0xd5, 0x7c, // server cookie: hash
];

/// The answer the `redirect_path` workload writes for [`QUERY`], 49 bytes:
/// the question echoed, one `A 127.0.0.1` record with TTL 60, ID and RD
/// copied from the query, QR and AA set, no OPT record.
///
/// | offset | bytes | field |
/// |---|---|---|
/// | 0 | `be ef` | ID `0xbeef` (copied) |
/// | 2 | `85 00` | flags: QR=1, OPCODE=0, AA=1, TC=0, RD=1 (copied); RA=0, Z=0, AD=0, CD=0, RCODE=0 |
/// | 4 | `00 01 00 01 00 00 00 00` | QDCOUNT 1, ANCOUNT 1, NSCOUNT 0, ARCOUNT 0 |
/// | 12 | `03 www 07 example 03 com 00 00 01 00 01` | question `www.example.com. A IN` (echoed) |
/// | 33 | `c0 0c` | answer owner → 12 |
/// | 35 | `00 01 00 01 00 00 00 3c 00 04` | A IN, TTL 60, RDLENGTH 4 |
/// | 45 | `7f 00 00 01` | `127.0.0.1` |
pub const REDIRECT_ANSWER: [u8; 49] = [
    // Header.
    0xbe, 0xef, // ID
    0x85, 0x00, // flags: QR, AA, RD
    0x00, 0x01, // QDCOUNT
    0x00, 0x01, // ANCOUNT
    0x00, 0x00, // NSCOUNT
    0x00, 0x00, // ARCOUNT
    // Question @12.
    3, b'w', b'w', b'w', //
    7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', //
    3, b'c', b'o', b'm', //
    0,    //
    0x00, 0x01, // QTYPE A
    0x00, 0x01, // QCLASS IN
    // Answer @33: www.example.com. 60 IN A 127.0.0.1
    0xc0, 0x0c, // owner -> 12
    0x00, 0x01, // TYPE A
    0x00, 0x01, // CLASS IN
    0x00, 0x00, 0x00, 0x3c, // TTL 60
    0x00, 0x04, // RDLENGTH
    127, 0, 0, 1, //
];

/// The [`Transcript`] every `parse_query_route` walker must produce for
/// [`QUERY`]: header, then the first question's type/class and name.
pub const QUERY_ROUTE: &[&str] = &[
    "header id=0xbeef qr=0 opcode=0 aa=0 tc=0 rd=1 ra=0 ad=1 cd=0 rcode=0",
    "question type=1 class=1",
    "name www.example.com.",
];

/// The [`Transcript`] every `parse_response_walk` walker must produce for
/// [`RESPONSE`].
///
/// Per record: the `rr` line (section, type, class, TTL), then its names
/// (owner first, then any name in the RDATA), then typed RDATA lines. The
/// OPT record is reported by its EDNS fields and options only (its owner is
/// always the root and its class/TTL are the EDNS fields), because hickory
/// and simple-dns lift it out of the additional section.
pub const RESPONSE_WALK: &[&str] = &[
    "header id=0xbeef qr=1 opcode=0 aa=0 tc=0 rd=1 ra=1 ad=0 cd=0 rcode=0",
    "question type=1 class=1",
    "name www.example.com.",
    "rr answer type=5 class=1 ttl=300",
    "name www.example.com.",
    "name www.example.com.cdn.example.net.",
    "rr answer type=1 class=1 ttl=60",
    "name www.example.com.cdn.example.net.",
    "a 192.0.2.1",
    "rr answer type=1 class=1 ttl=60",
    "name www.example.com.cdn.example.net.",
    "a 192.0.2.2",
    "rr answer type=1 class=1 ttl=60",
    "name www.example.com.cdn.example.net.",
    "a 192.0.2.3",
    "rr authority type=2 class=1 ttl=3600",
    "name cdn.example.net.",
    "name ns1.cdn.example.net.",
    "rr authority type=2 class=1 ttl=3600",
    "name cdn.example.net.",
    "name ns2.cdn.example.net.",
    "rr additional type=1 class=1 ttl=3600",
    "name ns1.cdn.example.net.",
    "a 198.51.100.53",
    "rr additional type=1 class=1 ttl=3600",
    "name ns2.cdn.example.net.",
    "a 198.51.100.54",
    "opt udp=1232 ext_rcode=0 version=0 do=0",
    "option code=10 data=2464c4abcf10c95701000000660f2a108e2d0b3691a4d57c",
];

// ---------------------------------------------------------------------------
// Walk sinks
// ---------------------------------------------------------------------------

/// The header fields a walker reports, each read through the library's own
/// typed accessors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderFields {
    /// Message ID.
    pub id: u16,
    /// QR: this is a response.
    pub qr: bool,
    /// OPCODE (4 bits).
    pub opcode: u8,
    /// AA: authoritative answer.
    pub aa: bool,
    /// TC: truncated.
    pub tc: bool,
    /// RD: recursion desired.
    pub rd: bool,
    /// RA: recursion available.
    pub ra: bool,
    /// AD: authentic data.
    pub ad: bool,
    /// CD: checking disabled.
    pub cd: bool,
    /// The header's 4-bit RCODE.
    pub rcode: u8,
}

impl HeaderFields {
    /// Packs the fields into the second 16-bit word of the header.
    #[must_use]
    pub fn flags_word(&self) -> u16 {
        (u16::from(self.qr) << 15)
            | (u16::from(self.opcode & 0x0f) << 11)
            | (u16::from(self.aa) << 10)
            | (u16::from(self.tc) << 9)
            | (u16::from(self.rd) << 8)
            | (u16::from(self.ra) << 7)
            | (u16::from(self.ad) << 5)
            | (u16::from(self.cd) << 4)
            | u16::from(self.rcode & 0x0f)
    }
}

/// A message section holding resource records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// The answer section.
    Answer,
    /// The authority section.
    Authority,
    /// The additional section.
    Additional,
}

impl Section {
    /// The section's lowercase name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Answer => "answer",
            Self::Authority => "authority",
            Self::Additional => "additional",
        }
    }
}

/// What a benchmark walker reports, event by event, in message order.
///
/// Every library's walker calls the same events for the same packet, which
/// is what makes the per-library work comparable; [`Transcript`] checks that
/// once, [`Digest`] folds the events cheaply inside the timed loop.
pub trait Sink {
    /// The header's ID and flags.
    fn header(&mut self, header: &HeaderFields);
    /// A question's type and class (its name follows).
    fn question(&mut self, qtype: u16, qclass: u16);
    /// A resource record's header (its names and RDATA follow).
    fn record(&mut self, section: Section, rtype: u16, class: u16, ttl: u32);
    /// One non-root label of the name being walked, in order.
    fn label(&mut self, label: &[u8]);
    /// The end of the name being walked.
    fn name_end(&mut self);
    /// An A record's address.
    fn a(&mut self, addr: Ipv4Addr);
    /// The OPT record's EDNS fields (its options follow).
    fn opt(&mut self, udp_payload: u16, ext_rcode: u8, version: u8, dnssec_ok: bool);
    /// One EDNS option.
    fn opt_option(&mut self, code: u16, data: &[u8]);
}

/// A sink that folds every event into a 64-bit value with one rotate and one
/// add per event: cheap enough not to dominate a parse, opaque enough that
/// the compiler must produce every value it is handed.
///
/// Labels are folded by length and first and last byte, so a walker must
/// materialise each label but the sink does no per-byte work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digest(pub u64);

impl Digest {
    #[inline(always)]
    fn mix(&mut self, value: u64) {
        self.0 = self.0.rotate_left(5).wrapping_add(value);
    }
}

impl Sink for Digest {
    #[inline(always)]
    fn header(&mut self, header: &HeaderFields) {
        self.mix(u64::from(header.id) | (u64::from(header.flags_word()) << 16));
    }

    #[inline(always)]
    fn question(&mut self, qtype: u16, qclass: u16) {
        self.mix(u64::from(qtype) | (u64::from(qclass) << 16));
    }

    #[inline(always)]
    fn record(&mut self, section: Section, rtype: u16, class: u16, ttl: u32) {
        let header = u64::from(rtype) | (u64::from(class) << 16) | (u64::from(ttl) << 32);
        self.mix(header ^ ((section as u64) << 60));
    }

    #[inline(always)]
    fn label(&mut self, label: &[u8]) {
        let first = label.first().copied().unwrap_or(0);
        let last = label.last().copied().unwrap_or(0);
        self.mix(label.len() as u64 | (u64::from(first) << 8) | (u64::from(last) << 16));
    }

    #[inline(always)]
    fn name_end(&mut self) {
        self.mix(0x2e);
    }

    #[inline(always)]
    fn a(&mut self, addr: Ipv4Addr) {
        self.mix(u64::from(addr.to_bits()));
    }

    #[inline(always)]
    fn opt(&mut self, udp_payload: u16, ext_rcode: u8, version: u8, dnssec_ok: bool) {
        self.mix(
            u64::from(udp_payload)
                | (u64::from(ext_rcode) << 16)
                | (u64::from(version) << 24)
                | (u64::from(dnssec_ok) << 32),
        );
    }

    #[inline(always)]
    fn opt_option(&mut self, code: u16, data: &[u8]) {
        let first = data.first().copied().unwrap_or(0);
        self.mix(u64::from(code) | ((data.len() as u64) << 16) | (u64::from(first) << 32));
    }
}

/// A sink that records every event as a line of text, for checking a walker
/// against [`QUERY_ROUTE`] or [`RESPONSE_WALK`]; it also keeps the
/// [`Digest`] of the same events.
#[derive(Clone, Debug, Default)]
pub struct Transcript {
    /// One line per event (names are collected into one line each).
    pub lines: Vec<String>,
    /// The [`Digest`] of the same events.
    pub digest: Digest,
    name: String,
}

impl Transcript {
    /// Creates an empty transcript.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl Sink for Transcript {
    fn header(&mut self, h: &HeaderFields) {
        self.digest.header(h);
        self.lines.push(format!(
            "header id={:#06x} qr={} opcode={} aa={} tc={} rd={} ra={} ad={} cd={} rcode={}",
            h.id,
            u8::from(h.qr),
            h.opcode,
            u8::from(h.aa),
            u8::from(h.tc),
            u8::from(h.rd),
            u8::from(h.ra),
            u8::from(h.ad),
            u8::from(h.cd),
            h.rcode
        ));
    }

    fn question(&mut self, qtype: u16, qclass: u16) {
        self.digest.question(qtype, qclass);
        self.lines.push(format!("question type={qtype} class={qclass}"));
    }

    fn record(&mut self, section: Section, rtype: u16, class: u16, ttl: u32) {
        self.digest.record(section, rtype, class, ttl);
        self.lines.push(format!("rr {} type={rtype} class={class} ttl={ttl}", section.name()));
    }

    fn label(&mut self, label: &[u8]) {
        self.digest.label(label);
        self.name.push_str(&String::from_utf8_lossy(label));
        self.name.push('.');
    }

    fn name_end(&mut self) {
        self.digest.name_end();
        if self.name.is_empty() {
            self.name.push('.');
        }
        self.lines.push(format!("name {}", self.name));
        self.name.clear();
    }

    fn a(&mut self, addr: Ipv4Addr) {
        self.digest.a(addr);
        self.lines.push(format!("a {addr}"));
    }

    fn opt(&mut self, udp_payload: u16, ext_rcode: u8, version: u8, dnssec_ok: bool) {
        self.digest.opt(udp_payload, ext_rcode, version, dnssec_ok);
        self.lines
            .push(format!("opt udp={udp_payload} ext_rcode={ext_rcode} version={version} do={}", u8::from(dnssec_ok)));
    }

    fn opt_option(&mut self, code: u16, data: &[u8]) {
        self.digest.opt_option(code, data);
        let mut line = format!("option code={code} data=");
        for byte in data {
            // Writing to a String cannot fail.
            let _ = write!(line, "{byte:02x}");
        }
        self.lines.push(line);
    }
}

// ---------------------------------------------------------------------------
// Hand-rolled floor
// ---------------------------------------------------------------------------

/// What [`walk_floor`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloorSummary {
    /// The message ID.
    pub id: u16,
    /// Number of questions walked.
    pub questions: u16,
    /// Number of resource records walked (answer + authority + additional).
    pub records: u16,
    /// XOR of every record's TYPE and TTL, so the header fields are read.
    pub type_ttl_mix: u32,
    /// Offset just past the last record.
    pub end: usize,
}

/// Skips one name starting at `pos`, returning the offset just past it.
///
/// Compression pointers are not followed: a pointer ends the name in place.
/// Returns `None` if the name runs past `msg`, uses a reserved label type,
/// or has more than 255 bytes before its terminator or pointer.
#[inline]
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    let start = pos;
    loop {
        let len = *msg.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => {
                pos += 1 + usize::from(len);
                if pos - start > 255 {
                    return None;
                }
            }
            0xc0 => {
                msg.get(pos + 1)?;
                return Some(pos + 2);
            }
            _ => return None,
        }
    }
}

#[inline]
fn read_u16(msg: &[u8], pos: usize) -> Option<u16> {
    let bytes = msg.get(pos..pos + 2)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

/// A minimal hand-rolled walk of a DNS message: the floor for the
/// `parse_response_walk` workload.
///
/// It reads the header counts, skips every question (name + 4 bytes) and
/// every record (name + 10-byte header + RDLENGTH bytes) with bounds checks,
/// reading each record's TYPE, TTL and RDLENGTH. It decodes no RDATA, does
/// not follow compression pointers and touches no label contents. Returns
/// `None` if the message is shorter than its header counts say or a name is
/// malformed.
#[must_use]
pub fn walk_floor(msg: &[u8]) -> Option<FloorSummary> {
    let id = read_u16(msg, 0)?;
    let qdcount = read_u16(msg, 4)?;
    let ancount = read_u16(msg, 6)?;
    let nscount = read_u16(msg, 8)?;
    let arcount = read_u16(msg, 10)?;
    let mut pos = 12;
    for _ in 0..qdcount {
        pos = skip_name(msg, pos)? + 4;
        if pos > msg.len() {
            return None;
        }
    }
    let records = u32::from(ancount) + u32::from(nscount) + u32::from(arcount);
    let mut type_ttl_mix = 0u32;
    for _ in 0..records {
        pos = skip_name(msg, pos)?;
        let header = msg.get(pos..pos + 10)?;
        let rtype = u16::from_be_bytes([header[0], header[1]]);
        let ttl = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let rdlen = u16::from_be_bytes([header[8], header[9]]);
        type_ttl_mix ^= u32::from(rtype) ^ ttl;
        pos += 10 + usize::from(rdlen);
        if pos > msg.len() {
            return None;
        }
    }
    Some(FloorSummary { id, questions: qdcount, records: u16::try_from(records).ok()?, type_ttl_mix, end: pos })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`RESPONSE`]'s records other than the OPT record, in presentation
    /// format (hickory's and `domain`'s print them the same way).
    const RESPONSE_RECORDS: [&str; 8] = [
        "www.example.com. 300 IN CNAME www.example.com.cdn.example.net.",
        "www.example.com.cdn.example.net. 60 IN A 192.0.2.1",
        "www.example.com.cdn.example.net. 60 IN A 192.0.2.2",
        "www.example.com.cdn.example.net. 60 IN A 192.0.2.3",
        "cdn.example.net. 3600 IN NS ns1.cdn.example.net.",
        "cdn.example.net. 3600 IN NS ns2.cdn.example.net.",
        "ns1.cdn.example.net. 3600 IN A 198.51.100.53",
        "ns2.cdn.example.net. 3600 IN A 198.51.100.54",
    ];

    #[test]
    fn floor_walks_the_test_packets() {
        let response = walk_floor(&RESPONSE).expect("response walks");
        assert_eq!(response.id, 0xbeef);
        assert_eq!(response.questions, 1);
        assert_eq!(response.records, 9);
        assert_eq!(response.end, RESPONSE.len());
        // CNAME^300, 3 × (A^60), 2 × (NS^3600), 2 × (A^3600), OPT^0.
        let expected = (5 ^ 300) ^ (1 ^ 60) ^ 41;
        assert_eq!(response.type_ttl_mix, expected);

        let query = walk_floor(&QUERY).expect("query walks");
        assert_eq!((query.questions, query.records), (1, 1));
        assert_eq!(query.end, QUERY.len());

        let redirect = walk_floor(&REDIRECT_ANSWER).expect("redirect walks");
        assert_eq!((redirect.questions, redirect.records), (1, 1));
        assert_eq!(redirect.end, REDIRECT_ANSWER.len());
    }

    #[test]
    fn floor_rejects_truncated_and_malformed_messages() {
        for len in 0..RESPONSE.len() {
            assert_eq!(walk_floor(&RESPONSE[..len]), None, "prefix of {len} bytes");
        }
        // A reserved label type (0b01) in the question name.
        let mut bad = QUERY;
        bad[12] = 0x43;
        assert_eq!(walk_floor(&bad), None);
        // A question name longer than 255 bytes.
        let mut long = vec![0u8; 12];
        long[5] = 1; // QDCOUNT 1
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(walk_floor(&long), None);
    }

    #[test]
    fn header_flags_word_matches_the_packets() {
        let query = HeaderFields { id: 0xbeef, rd: true, ad: true, ..HeaderFields::default() };
        assert_eq!(query.flags_word().to_be_bytes(), [QUERY[2], QUERY[3]]);
        let response = HeaderFields { id: 0xbeef, qr: true, rd: true, ra: true, ..HeaderFields::default() };
        assert_eq!(response.flags_word().to_be_bytes(), [RESPONSE[2], RESPONSE[3]]);
    }

    /// hickory-proto decodes the frozen bytes to the documented contents and
    /// re-encodes them to the very same bytes.
    #[test]
    fn packets_parse_with_hickory() {
        use hickory_proto::op::{Message, MessageType};
        use hickory_proto::rr::rdata::opt::EdnsOption;

        let query = Message::from_vec(&QUERY).expect("query parses");
        assert_eq!(query.id, 0xbeef);
        assert_eq!(query.message_type, MessageType::Query);
        assert!(query.recursion_desired && query.authentic_data);
        assert_eq!(query.queries.len(), 1);
        assert_eq!(query.queries[0].to_string(), "www.example.com. IN A");
        let edns = query.edns.as_ref().expect("query has EDNS");
        assert_eq!(edns.max_payload(), 1232);
        assert_eq!(query.to_vec().expect("query encodes"), QUERY);

        let response = Message::from_vec(&RESPONSE).expect("response parses");
        assert_eq!(response.message_type, MessageType::Response);
        assert!(response.recursion_desired && response.recursion_available);
        let records: Vec<String> = response
            .answers
            .iter()
            .chain(&response.authorities)
            .chain(&response.additionals)
            .map(ToString::to_string)
            .collect();
        assert_eq!(records, RESPONSE_RECORDS);
        let edns = response.edns.as_ref().expect("response has EDNS");
        assert_eq!(edns.max_payload(), 1232);
        assert!(!edns.flags().dnssec_ok);
        let options = &edns.options().options;
        assert_eq!(options.len(), 1);
        let mut cookie = CLIENT_COOKIE.to_vec();
        cookie.extend_from_slice(&SERVER_COOKIE);
        assert!(matches!(&options[0].1, EdnsOption::Unknown(10, data) if *data == cookie));
        // Hickory compresses exactly as documented above.
        assert_eq!(response.to_vec().expect("response encodes"), RESPONSE);

        let redirect = Message::from_vec(&REDIRECT_ANSWER).expect("redirect parses");
        assert!(redirect.authoritative && redirect.recursion_desired);
        assert!(!redirect.recursion_available);
        assert_eq!(redirect.answers.len(), 1);
        assert_eq!(redirect.answers[0].to_string(), "www.example.com. 60 IN A 127.0.0.1");
        assert!(redirect.edns.is_none());
        assert_eq!(redirect.to_vec().expect("redirect encodes"), REDIRECT_ANSWER);
    }

    /// NLnet Labs' `domain` decodes the frozen bytes to the documented
    /// contents.
    #[test]
    fn packets_parse_with_domain() {
        use domain::base::opt::{AllOptData, Cookie};
        use domain::base::{Message, ParsedName, Rtype};
        use domain::rdata::AllRecordData;

        let query = Message::from_octets(&QUERY[..]).expect("query parses");
        assert_eq!(query.header().id(), 0xbeef);
        assert!(!query.header().qr() && query.header().rd() && query.header().ad());
        let question = query.sole_question().expect("one question");
        assert_eq!(question.to_string(), "www.example.com.\tA\tIN");
        assert_eq!(query.opt().expect("query has OPT").udp_payload_size(), 1232);

        let response = Message::from_octets(&RESPONSE[..]).expect("response parses");
        let header = response.header();
        assert!(header.qr() && header.rd() && header.ra() && !header.aa());
        let counts = response.header_counts();
        assert_eq!((counts.qdcount(), counts.ancount(), counts.nscount(), counts.arcount()), (1, 4, 2, 3));
        let (_, answer, authority, additional) = response.sections().expect("sections");
        let mut records = Vec::new();
        for section in [answer, authority, additional] {
            for record in section {
                let record = record.expect("record parses");
                if record.rtype() == Rtype::OPT {
                    continue;
                }
                let record = record.into_any_record::<AllRecordData<_, ParsedName<_>>>().expect("record data parses");
                records.push(record.to_string());
            }
        }
        assert_eq!(records, RESPONSE_RECORDS);
        let opt = response.opt().expect("response has OPT");
        assert_eq!(opt.udp_payload_size(), 1232);
        assert_eq!(opt.version(), 0);
        assert!(!opt.dnssec_ok());
        let options: Vec<_> = opt.opt().iter::<AllOptData<_, _>>().collect();
        assert_eq!(options.len(), 1);
        let Ok(AllOptData::Cookie(cookie)) = &options[0] else {
            panic!("expected a cookie option, got {:?}", options[0]);
        };
        assert_eq!(cookie.client().into_octets(), CLIENT_COOKIE);
        assert_eq!(cookie.server().expect("server cookie").as_ref(), SERVER_COOKIE);
        let _: &Cookie = cookie;

        let redirect = Message::from_octets(&REDIRECT_ANSWER[..]).expect("redirect parses");
        assert!(redirect.header().aa() && redirect.header().qr() && redirect.header().rd());
        assert!(redirect.opt().is_none());
        let answer = redirect
            .answer()
            .expect("answer")
            .limit_to::<AllRecordData<_, ParsedName<_>>>()
            .next()
            .expect("one answer")
            .expect("answer parses");
        assert_eq!(answer.to_string(), "www.example.com. 60 IN A 127.0.0.1");
    }

    /// simple-dns decodes the frozen bytes to the documented contents.
    #[test]
    fn packets_parse_with_simple_dns() {
        use simple_dns::{Packet, PacketFlag};

        let response = Packet::parse(&RESPONSE).expect("response parses");
        assert_eq!(response.id(), 0xbeef);
        assert!(response.has_flags(PacketFlag::RESPONSE | PacketFlag::RECURSION_DESIRED));
        assert_eq!(response.questions.len(), 1);
        assert_eq!(response.questions[0].qname.to_string(), "www.example.com");
        assert_eq!(response.answers.len(), 4);
        assert_eq!(response.name_servers.len(), 2);
        assert_eq!(response.additional_records.len(), 2);
        assert_eq!(response.answers[3].name.to_string(), "www.example.com.cdn.example.net");
        assert_eq!(response.additional_records[1].name.to_string(), "ns2.cdn.example.net");
        let opt = response.opt().expect("response has OPT");
        assert_eq!(opt.udp_packet_size, 1232);
        assert_eq!(opt.opt_codes.len(), 1);
        assert_eq!(opt.opt_codes[0].code, 10);
        assert_eq!(opt.opt_codes[0].data[..8], CLIENT_COOKIE);
        assert_eq!(opt.opt_codes[0].data[8..], SERVER_COOKIE);

        let redirect = Packet::parse(&REDIRECT_ANSWER).expect("redirect parses");
        assert!(redirect.has_flags(PacketFlag::AUTHORITATIVE_ANSWER));
        assert_eq!(redirect.answers.len(), 1);
    }

    #[test]
    fn transcript_formats_events() {
        let mut transcript = Transcript::new();
        transcript.question(1, 1);
        transcript.label(b"www");
        transcript.label(b"example");
        transcript.name_end();
        transcript.name_end();
        transcript.opt_option(10, &[0xab, 0x01]);
        assert_eq!(
            transcript.lines,
            ["question type=1 class=1", "name www.example.", "name .", "option code=10 data=ab01"]
        );
        assert_ne!(transcript.digest, Digest::default());
    }
}
