//! The answer cache: whole upstream responses, keyed by view, question and
//! the DO/CD bits, served with TTLs counted down.
//!
//! An entry keeps the response bytes exactly as the upstream sent them plus
//! the offsets of every TTL field, so serving is a copy and a few 4-byte
//! writes: no parsing, no allocation. Negative answers (RFC 2308) are cached
//! for the SOA's negative TTL. Shards keep lock hold times short; eviction is
//! CLOCK (an approximation of least recently used).
//!
//! With DNSSEC validation an entry keeps its verdict too: a secure answer is
//! stored without AD and each client served it is shown AD if it understands
//! it (RFC 6840 §5.8), and a bogus one is kept as its SERVFAIL for
//! `val-bogus-ttl`, so the same bad data is not fetched and judged again.

use std::hash::BuildHasher;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use foldhash::quality::SeedableRandomState;
use hashbrown::HashTable;
use prometheus_client::metrics::counter::Counter;
use std::time::{Duration, Instant};

use signpost_wire::{Buffer, HEADER_LEN, Message, Rcode, RecordType, Section, relay};

use crate::config::CacheConfig;

const SHARDS: usize = 32;
/// Longest cache key: view name, flags, type, class and a 255-octet name.
pub(crate) const MAX_KEY: usize = 1 + 255 + 1 + 2 + 2 + 255;

/// A cache key built on the stack.
#[derive(Clone)]
pub(crate) struct CacheKey {
    bytes: [u8; MAX_KEY],
    len: usize,
}

impl CacheKey {
    /// The key of an IN A question for `name` (flat wire form, any case)
    /// in `view`, without DO or CD: what tests and the fuzz target cache.
    pub(crate) fn a_question(view: &str, name: &[u8]) -> Self {
        let mut key = Self::empty();
        key.set(view, false, false, 1, 1, name);
        key
    }

    /// An empty key, for [`CacheKey::set`] to fill where it lies: on the
    /// query path a key built and returned was copied whole (528 bytes).
    pub(crate) fn empty() -> Self {
        Self { bytes: [0u8; MAX_KEY], len: 0 }
    }

    /// Make this the key for `name` (flat wire form, any case), type,
    /// class, view and the DO/CD bits.
    pub(crate) fn set(
        &mut self,
        view: &str,
        dnssec_ok: bool,
        checking_disabled: bool,
        qtype: u16,
        qclass: u16,
        name: &[u8],
    ) {
        self.len = 0;
        let view = view.as_bytes().get(..255).unwrap_or(view.as_bytes());
        self.push(&[view.len() as u8]);
        self.push(view);
        self.push(&[u8::from(dnssec_ok) | u8::from(checking_disabled) << 1]);
        self.push(&qtype.to_be_bytes());
        self.push(&qclass.to_be_bytes());
        let name_start = self.len;
        self.push(name);
        if let Some(name) = self.bytes.get_mut(name_start..self.len) {
            name.make_ascii_lowercase();
        }
    }

    /// Append `part` (nothing when it does not fit: no key built here is that long).
    #[inline(always)]
    fn push(&mut self, part: &[u8]) {
        if let Some(slot) = self.bytes.get_mut(self.len..self.len + part.len()) {
            slot.copy_from_slice(part);
            self.len += part.len();
        }
    }

    /// The (lower-cased) name at the end of a key [`CacheKey::set`] made:
    /// after the view's length and name, the DO/CD byte, type and class.
    fn name_in(key: &[u8]) -> Option<&[u8]> {
        let view_len = usize::from(*key.first()?);
        key.get(1 + view_len + 1 + 2 + 2..)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

/// The shard of a key's hash. Bits from the middle: hashbrown takes a
/// bucket from the low bits and a tag from the top seven, and keys that
/// share their shard must not share those too.
fn shard_of(hash: u64) -> usize {
    (hash >> 32) as usize % SHARDS
}

#[derive(Clone, Copy, Debug)]
struct TtlField {
    offset: u16,
    ttl: u32,
}

/// What validation made of a cached answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CachedVerdict {
    /// Proven: AD for clients that understand it.
    Secure,
    /// Validated, but nothing to prove (an unsigned zone): no AD.
    Insecure,
    /// Bogus: the entry is the SERVFAIL the client got.
    Bogus,
}

impl CachedVerdict {
    /// The word the query log uses.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Secure => "secure",
            Self::Insecure => "insecure",
            Self::Bogus => "bogus",
        }
    }
}

struct Entry {
    key: Box<[u8]>,
    /// The key's hash, kept for the shard's table to move the entry when it grows.
    hash: u64,
    response: Box<[u8]>,
    /// `None` when the answer was not validated: its AD bit is served as the upstream sent it.
    verdict: Option<CachedVerdict>,
    /// Where a trailing OPT record starts, so clients without EDNS can be
    /// served the prefix.
    opt_start: Option<usize>,
    ttl_fields: Box<[TtlField]>,
    stored: Instant,
    expires: Instant,
    stale_until: Instant,
    referenced: AtomicBool,
}

impl Entry {
    fn size(&self) -> usize {
        self.key.len() + self.response.len() + self.ttl_fields.len() * size_of::<TtlField>() + 96
    }
}

#[derive(Default)]
struct Shard {
    /// Positions in `entries`, by the hash of their key (computed once per query).
    index: HashTable<usize>,
    entries: Vec<Entry>,
    hand: usize,
    bytes: usize,
}

impl Shard {
    /// The entry for `key`, whose hash is `hash`.
    fn find(&self, hash: u64, key: &[u8]) -> Option<(usize, &Entry)> {
        let &position = self.index.find(hash, |&at| self.entries.get(at).is_some_and(|entry| *entry.key == *key))?;
        Some((position, self.entries.get(position)?))
    }

    fn remove_at(&mut self, position: usize) {
        if position >= self.entries.len() {
            return;
        }
        let removed = self.entries.swap_remove(position);
        self.bytes = self.bytes.saturating_sub(removed.size());
        if let Ok(slot) = self.index.find_entry(removed.hash, |&at| at == position) {
            slot.remove();
        }
        // The last entry took the removed one's place.
        let last = self.entries.len();
        if let Some(moved) = self.entries.get(position)
            && let Some(slot) = self.index.find_mut(moved.hash, |&at| at == last)
        {
            *slot = position;
        }
    }

    fn push(&mut self, entry: Entry) {
        let position = self.entries.len();
        let entries = &self.entries;
        self.index.insert_unique(entry.hash, position, |&at| entries.get(at).map_or(0, |entry| entry.hash));
        self.bytes += entry.size();
        self.entries.push(entry);
    }

    /// Evict one entry: an expired one if the hand finds it, else the first
    /// not referenced since the hand last passed (CLOCK).
    fn evict_one(&mut self, now: Instant) -> bool {
        let len = self.entries.len();
        if len == 0 {
            return false;
        }
        for _ in 0..2 * len {
            let position = self.hand % len;
            self.hand = position + 1;
            let Some(entry) = self.entries.get(position) else { continue };
            if entry.stale_until <= now || !entry.referenced.swap(false, Ordering::Relaxed) {
                self.remove_at(position);
                return true;
            }
        }
        self.remove_at(self.hand % len);
        true
    }
}

/// The cache's counters (in a server, those of its metrics registry).
#[derive(Clone, Default, Debug)]
pub struct CacheStats {
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) stale_hits: Counter,
    pub(crate) inserts: Counter,
    pub(crate) evictions: Counter,
}

impl CacheStats {
    /// Answers served from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.get()
    }

    /// Lookups that found nothing usable.
    pub fn misses(&self) -> u64 {
        self.misses.get()
    }

    /// Expired answers served because upstreams failed (RFC 8767).
    pub fn stale_hits(&self) -> u64 {
        self.stale_hits.get()
    }

    /// Entries stored.
    pub fn inserts(&self) -> u64 {
        self.inserts.get()
    }

    /// Entries evicted to stay within the limits.
    pub fn evictions(&self) -> u64 {
        self.evictions.get()
    }
}

/// What a lookup found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Lookup {
    /// A fresh answer was written; its smallest remaining TTL, and what
    /// validation made of it when it was stored.
    Hit { len: usize, min_ttl: u32, verdict: Option<CachedVerdict> },
    /// Nothing fresh.
    Miss,
}

/// The shared answer cache.
pub struct Cache {
    shards: Box<[RwLock<Shard>]>,
    /// Keyed: clients choose the names (crate::keyed_hash).
    hasher: SeedableRandomState,
    config: CacheConfig,
    stats: CacheStats,
}

/// Details of how the served copy should look.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ServeAs<'a> {
    pub(crate) id: u16,
    /// The client's spelling of the question name (flat wire form).
    pub(crate) question_name: &'a [u8],
    /// Largest response the client takes (UDP payload size), or 65535.
    pub(crate) limit: usize,
    /// Whether the client sent EDNS (if not, the OPT record is removed).
    pub(crate) client_edns: bool,
    /// The client's RD bit, echoed in the answer (RFC 1035 §4.1.1) whatever
    /// the upstream's answer to our own query carried.
    pub(crate) recursion_desired: bool,
    /// Whether the client is shown AD on an answer validated secure.
    pub(crate) authentic_data: bool,
}

impl Cache {
    /// An empty cache with these limits.
    pub fn new(config: CacheConfig) -> Self {
        Self::with_stats(config, CacheStats::default())
    }

    /// An empty cache counting into `stats`.
    pub(crate) fn with_stats(config: CacheConfig, stats: CacheStats) -> Self {
        let shards = (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect();
        Self { shards, hasher: crate::keyed_hash::keyed(), config, stats }
    }

    /// Counters.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Whether caching is on.
    pub fn is_enabled(&self) -> bool {
        self.config.enabled
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.read().map_or(0, |shard| shard.entries.len())).sum()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop everything (on reload, when views or rules change).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            if let Ok(mut shard) = shard.write() {
                *shard = Shard::default();
            }
        }
    }

    /// Serve a fresh entry for `key` into `out`; with `count`, the hit or
    /// miss shows in the counters.
    pub(crate) fn lookup(
        &self,
        key: &[u8],
        now: Instant,
        serve: ServeAs<'_>,
        out: &mut impl Buffer,
        count: bool,
    ) -> Lookup {
        let count = |counter: &Counter| {
            if count {
                counter.inc();
            }
        };
        if !self.config.enabled {
            return Lookup::Miss;
        }
        let hash = self.hasher.hash_one(key);
        let Some(shard) = self.shards.get(shard_of(hash)) else { return Lookup::Miss };
        let Ok(shard) = shard.read() else { return Lookup::Miss };
        let Some((_, entry)) = shard.find(hash, key) else {
            count(&self.stats.misses);
            return Lookup::Miss;
        };
        if entry.expires <= now {
            count(&self.stats.misses);
            return Lookup::Miss;
        }
        entry.referenced.store(true, Ordering::Relaxed);
        let elapsed = now.saturating_duration_since(entry.stored).as_secs().min(u64::from(u32::MAX)) as u32;
        match write_entry(entry, elapsed, None, serve, out) {
            Some((len, min_ttl)) => {
                count(&self.stats.hits);
                Lookup::Hit { len, min_ttl, verdict: entry.verdict }
            }
            None => Lookup::Miss,
        }
    }

    /// Serve an expired entry still inside the serve-stale window, with the
    /// configured stale TTL (RFC 8767). Returns the length written; with
    /// `count`, the stale hit shows in the counters.
    pub(crate) fn lookup_stale(
        &self,
        key: &[u8],
        now: Instant,
        serve: ServeAs<'_>,
        out: &mut impl Buffer,
        count: bool,
    ) -> Option<usize> {
        if !self.config.enabled || self.config.serve_stale_secs == 0 {
            return None;
        }
        let hash = self.hasher.hash_one(key);
        let shard = self.shards.get(shard_of(hash))?.read().ok()?;
        let (_, entry) = shard.find(hash, key)?;
        // A bogus verdict is no answer to fall back on.
        if entry.stale_until <= now || entry.verdict == Some(CachedVerdict::Bogus) {
            return None;
        }
        let (len, _) = write_entry(entry, 0, Some(self.config.stale_ttl_secs), serve, out)?;
        if count {
            self.stats.stale_hits.inc();
        }
        Some(len)
    }

    /// Store an upstream response if it is cacheable. Returns the TTL it was
    /// stored for.
    pub(crate) fn insert(&self, key: &[u8], response: &[u8], now: Instant) -> Option<u32> {
        self.insert_judged(key, response, now, None)
    }

    /// Store a validated response (shaped for the client, AD cleared) with
    /// its verdict, `secure` or not.
    pub(crate) fn insert_validated(&self, key: &[u8], response: &[u8], now: Instant, secure: bool) -> Option<u32> {
        let verdict = if secure { CachedVerdict::Secure } else { CachedVerdict::Insecure };
        self.insert_judged(key, response, now, Some(verdict))
    }

    /// Store the SERVFAIL a bogus answer became, for `ttl` seconds
    /// (`val-bogus-ttl`): it is not cacheable as an answer is, having no
    /// records to take a TTL from.
    pub(crate) fn insert_bogus(&self, key: &[u8], servfail: &[u8], ttl: u32, now: Instant) -> Option<u32> {
        if !self.config.enabled || ttl == 0 {
            return None;
        }
        let message = Message::parse(servfail).ok()?;
        let opt_start = message.additional().ok()?.flatten().find(|record| record.rtype() == RecordType::OPT);
        let opt_start = opt_start.filter(|record| record.end() == servfail.len()).map(|record| record.offset());
        self.store(key, servfail, now, (Vec::new(), ttl, opt_start), Some(CachedVerdict::Bogus))
    }

    fn insert_judged(&self, key: &[u8], response: &[u8], now: Instant, verdict: Option<CachedVerdict>) -> Option<u32> {
        if !self.config.enabled {
            return None;
        }
        let cacheable = cacheable(response, &self.config)?;
        self.store(key, response, now, cacheable, verdict)
    }

    fn store(
        &self,
        key: &[u8],
        response: &[u8],
        now: Instant,
        (ttl_fields, ttl, opt_start): (Vec<TtlField>, u32, Option<usize>),
        verdict: Option<CachedVerdict>,
    ) -> Option<u32> {
        if ttl == 0 || !asks_the_key(key, response) {
            return None;
        }
        let hash = self.hasher.hash_one(key);
        let entry = Entry {
            key: key.into(),
            hash,
            response: response.into(),
            verdict,
            opt_start,
            ttl_fields: ttl_fields.into(),
            stored: now,
            expires: now + Duration::from_secs(u64::from(ttl)),
            stale_until: now + Duration::from_secs(u64::from(ttl) + self.config.serve_stale_secs),
            referenced: AtomicBool::new(false),
        };
        let size = entry.size();
        let shard_entries = (self.config.max_entries / SHARDS).max(1);
        let shard_bytes = (self.config.max_bytes / SHARDS).max(size);
        let mut shard = self.shards.get(shard_of(hash))?.write().ok()?;
        if let Some((position, _)) = shard.find(hash, key) {
            shard.remove_at(position);
        }
        while shard.entries.len() >= shard_entries || shard.bytes + size > shard_bytes {
            if !shard.evict_one(now) {
                break;
            }
            self.stats.evictions.inc();
        }
        shard.push(entry);
        self.stats.inserts.inc();
        Some(ttl)
    }
}

/// Whether `response`'s question (uncompressed, right after the header)
/// has the name at the end of `key` ([`CacheKey`]'s layout), in any case:
/// checked once when stored, so that serving can write the client's
/// spelling over it without comparing.
fn asks_the_key(key: &[u8], response: &[u8]) -> bool {
    let Some(name) = CacheKey::name_in(key) else { return false };
    response.get(HEADER_LEN..HEADER_LEN + name.len()).is_some_and(|asked| asked.eq_ignore_ascii_case(name))
}

/// Write `entry` with TTLs reduced by `elapsed` (or all set to `fixed_ttl`),
/// the client's ID and question spelling, cut to the client's limit.
fn write_entry(
    entry: &Entry,
    elapsed: u32,
    fixed_ttl: Option<u32>,
    serve: ServeAs<'_>,
    out: &mut impl Buffer,
) -> Option<(usize, u32)> {
    let start = out.len();
    let strip_opt = !serve.client_edns && entry.opt_start.is_some();
    let body = match entry.opt_start {
        Some(opt_start) if strip_opt => entry.response.get(..opt_start)?,
        _ => &entry.response,
    };
    out.put(body).ok()?;
    let mut min_ttl = u32::MAX;
    {
        let bytes = out.as_mut_slice().get_mut(start..)?;
        if strip_opt && let Some(arcount) = bytes.get_mut(10..12) {
            let count = u16::from_be_bytes([arcount[0], arcount[1]]).saturating_sub(1);
            arcount.copy_from_slice(&count.to_be_bytes());
        }
        for field in entry.ttl_fields.iter() {
            let ttl = fixed_ttl.unwrap_or_else(|| field.ttl.saturating_sub(elapsed));
            min_ttl = min_ttl.min(ttl);
            let offset = usize::from(field.offset);
            if let Some(slot) = bytes.get_mut(offset..offset + 4) {
                slot.copy_from_slice(&ttl.to_be_bytes());
            }
        }
        relay::set_id(bytes, serve.id);
        relay::set_rd(bytes, serve.recursion_desired);
        if entry.verdict == Some(CachedVerdict::Secure) {
            relay::set_ad(bytes, serve.authentic_data);
        }
        // The entry's question is the key's name (`store` checked it), and
        // the client's name is the key's in its own case: no comparison here.
        if let Some(slot) = bytes.get_mut(HEADER_LEN..HEADER_LEN + serve.question_name.len()) {
            slot.copy_from_slice(serve.question_name);
        }
    }
    let len = out.len() - start;
    if len > serve.limit {
        let copy: Vec<u8> = out.as_slice().get(start..)?.to_vec();
        out.truncate(start);
        let written = relay::truncate_for_client(&copy, serve.limit, out).ok()?.len;
        return Some((written, if min_ttl == u32::MAX { 0 } else { min_ttl }));
    }
    Some((len, if min_ttl == u32::MAX { 0 } else { min_ttl }))
}

/// Copy a relayed response for a client: drop the OPT record when the client
/// sent no EDNS (RFC 6891 §7), and cut it to the client's size.
pub(crate) fn adapt_for_client(
    response: &[u8],
    limit: usize,
    client_edns: bool,
    out: &mut impl Buffer,
) -> Result<usize, signpost_wire::Error> {
    if client_edns {
        return relay::truncate_for_client(response, limit, out).map(|t| t.len);
    }
    let without_opt = strip_opt(response);
    relay::truncate_for_client(without_opt.as_deref().unwrap_or(response), limit, out).map(|t| t.len)
}

/// The response without its OPT record, if it has one at the end of the
/// additional section (where every sane server puts it).
fn strip_opt(response: &[u8]) -> Option<Vec<u8>> {
    let message = Message::parse(response).ok()?;
    if message.header().arcount == 0 {
        return None;
    }
    let mut last = None;
    for record in message.additional().ok()? {
        let record = record.ok()?;
        last = Some((record.rtype(), record.offset(), record.end()));
    }
    let (rtype, start, end) = last?;
    if rtype != RecordType::OPT || end != response.len() {
        return None;
    }
    let mut copy = response.get(..start)?.to_vec();
    let mut header = message.header();
    header.arcount = header.arcount.saturating_sub(1);
    copy.get_mut(..HEADER_LEN)?.copy_from_slice(&header.to_bytes());
    Some(copy)
}

/// Whether a response may be cached, with its TTL field offsets and the TTL
/// to keep it for (clamped by the configuration).
fn cacheable(response: &[u8], config: &CacheConfig) -> Option<(Vec<TtlField>, u32, Option<usize>)> {
    let message = Message::parse(response).ok()?;
    if message.flags().tc() || message.header().qdcount != 1 || response.len() > usize::from(u16::MAX) {
        return None;
    }
    let rcode = message.rcode().ok()?;
    let mut fields = Vec::new();
    let mut answer_ttl = u32::MAX;
    let mut negative_ttl = None;
    let mut answers = 0;
    let mut opt_start = None;
    for record in message.records().ok()? {
        let record = record.ok()?;
        if record.rtype() == RecordType::OPT {
            if record.end() == response.len() {
                opt_start = Some(record.offset());
            }
            continue;
        }
        let offset = u16::try_from(record.data_offset().checked_sub(6)?).ok()?;
        // Served TTLs respect the clamps too, not only the time kept.
        let clamped = record.ttl().clamp(config.min_ttl, config.max_ttl.max(config.min_ttl));
        fields.push(TtlField { offset, ttl: clamped });
        match record.section() {
            Section::Answer => {
                answers += 1;
                answer_ttl = answer_ttl.min(record.ttl());
            }
            Section::Authority if record.rtype() == RecordType::SOA => {
                // RFC 2308 §5: the negative TTL is the smaller of the SOA's TTL and its MINIMUM.
                if let Ok(signpost_wire::RecordData::Soa(soa)) = record.data() {
                    negative_ttl = Some(record.ttl().min(soa.minimum));
                }
            }
            _ => {}
        }
    }
    let ttl = match rcode {
        Rcode::NOERROR if answers > 0 => answer_ttl,
        Rcode::NOERROR | Rcode::NXDOMAIN => negative_ttl?.min(config.negative_max_ttl),
        _ => return None,
    };
    Some((fields, ttl.clamp(config.min_ttl, config.max_ttl.max(config.min_ttl)), opt_start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use signpost_wire::{Class, EdnsHeader, Flags, MessageBuilder, NameBuf, RecordBuf};

    fn response(name: &str, rcode: Rcode, answers: &[&str], authority: &[&str]) -> Vec<u8> {
        let mut buffer = Vec::new();
        let mut builder = MessageBuilder::new(&mut buffer).expect("header");
        builder.set_flags(Flags::default().with_qr(true).with_rd(true).with_ra(true));
        builder.set_rcode(rcode);
        let owner: NameBuf = name.parse().expect("name");
        builder.push_question(&owner, RecordType::A, Class::IN).expect("fits");
        for record in answers {
            builder.push_record_buf(Section::Answer, &record.parse::<RecordBuf>().expect("record")).expect("fits");
        }
        for record in authority {
            builder.push_record_buf(Section::Authority, &record.parse::<RecordBuf>().expect("record")).expect("fits");
        }
        builder.set_edns(EdnsHeader::default());
        builder.finish().expect("done");
        buffer
    }

    fn config() -> CacheConfig {
        CacheConfig { max_entries: 64, ..CacheConfig::default() }
    }

    fn serve(name: &[u8]) -> ServeAs<'_> {
        ServeAs {
            id: 0x4242,
            question_name: name,
            limit: 65535,
            client_edns: true,
            recursion_desired: true,
            authentic_data: false,
        }
    }

    fn key(name: &str) -> CacheKey {
        let name: NameBuf = name.parse().expect("name");
        CacheKey::a_question("default", name.as_wire())
    }

    #[test]
    fn hits_count_ttls_down_and_restore_id_and_case() {
        let cache = Cache::new(config());
        let now = Instant::now();
        let bytes = response("www.example.com", Rcode::NOERROR, &["www.example.com. 300 IN A 192.0.2.1"], &[]);
        assert_eq!(cache.insert(key("WWW.example.com").as_bytes(), &bytes, now), Some(300));
        let asked: NameBuf = "wWw.ExAmPle.com".parse().expect("name");
        let mut out = Vec::new();
        let later = now + Duration::from_secs(100);
        let result = cache.lookup(key("www.EXAMPLE.com").as_bytes(), later, serve(asked.as_wire()), &mut out, true);
        assert_eq!(result, Lookup::Hit { len: bytes.len(), min_ttl: 200, verdict: None });
        let message = Message::parse(&out).expect("header");
        assert_eq!(message.id(), 0x4242);
        assert_eq!(message.first_question().expect("ok").expect("one").name().to_string(), "wWw.ExAmPle.com.");
        let answer = message.answers().expect("ok").next().expect("one").expect("valid");
        assert_eq!(answer.ttl(), 200);
        // Expired: a miss, but still servable as stale within the window.
        let expired = now + Duration::from_secs(301);
        out.clear();
        assert_eq!(
            cache.lookup(key("www.example.com").as_bytes(), expired, serve(asked.as_wire()), &mut out, true),
            Lookup::Miss
        );
        let stale_config = CacheConfig { serve_stale_secs: 3600, ..config() };
        let stale_cache = Cache::new(stale_config);
        stale_cache.insert(key("www.example.com").as_bytes(), &bytes, now);
        let len = stale_cache.lookup_stale(
            key("www.example.com").as_bytes(),
            expired,
            serve(asked.as_wire()),
            &mut out,
            true,
        );
        assert!(len.is_some());
        let stale = Message::parse(&out).expect("header");
        assert_eq!(stale.answers().expect("ok").next().expect("one").expect("valid").ttl(), 30);
    }

    #[test]
    fn hits_echo_the_clients_rd_bit() {
        let cache = Cache::new(config());
        let now = Instant::now();
        // Stored as the upstream answered our query: RD set.
        let bytes = response("rd.example", Rcode::NOERROR, &["rd.example. 300 IN A 192.0.2.1"], &[]);
        cache.insert(key("rd.example").as_bytes(), &bytes, now);
        let name: NameBuf = "rd.example".parse().expect("name");
        for recursion_desired in [false, true] {
            let mut out = Vec::new();
            let serve = ServeAs { recursion_desired, ..serve(name.as_wire()) };
            let result = cache.lookup(key("rd.example").as_bytes(), now, serve, &mut out, true);
            assert!(matches!(result, Lookup::Hit { .. }));
            let flags = Message::parse(&out).expect("header").flags();
            assert_eq!(flags.rd(), recursion_desired);
            assert!(flags.qr() && flags.ra(), "the other bits stay as stored");
        }
    }

    #[test]
    fn secure_entries_show_ad_to_clients_that_understand_it() {
        let cache = Cache::new(config());
        let now = Instant::now();
        let bytes = response("ad.example", Rcode::NOERROR, &["ad.example. 300 IN A 192.0.2.1"], &[]);
        assert_eq!(cache.insert_validated(key("ad.example").as_bytes(), &bytes, now, true), Some(300));
        let insecure = response("plain.example", Rcode::NOERROR, &["plain.example. 300 IN A 192.0.2.1"], &[]);
        cache.insert_validated(key("plain.example").as_bytes(), &insecure, now, false);
        for (name, verdict) in [("ad.example", CachedVerdict::Secure), ("plain.example", CachedVerdict::Insecure)] {
            let owner: NameBuf = name.parse().expect("name");
            for authentic_data in [false, true] {
                let mut out = Vec::new();
                let serve = ServeAs { authentic_data, ..serve(owner.as_wire()) };
                let result = cache.lookup(key(name).as_bytes(), now, serve, &mut out, true);
                assert!(matches!(result, Lookup::Hit { verdict: Some(found), .. } if found == verdict));
                let shown = Message::parse(&out).expect("header").flags().ad();
                assert_eq!(shown, authentic_data && verdict == CachedVerdict::Secure, "{name}");
            }
        }
    }

    #[test]
    fn bogus_verdicts_are_kept_for_their_ttl_and_never_served_stale() {
        let cache = Cache::new(CacheConfig { serve_stale_secs: 3600, ..config() });
        let now = Instant::now();
        let servfail = response("bogus.example", Rcode::SERVFAIL, &[], &[]);
        assert_eq!(cache.insert_bogus(key("bogus.example").as_bytes(), &servfail, 30, now), Some(30));
        let owner: NameBuf = "bogus.example".parse().expect("name");
        let mut out = Vec::new();
        let hit = cache.lookup(key("bogus.example").as_bytes(), now, serve(owner.as_wire()), &mut out, true);
        assert!(matches!(hit, Lookup::Hit { verdict: Some(CachedVerdict::Bogus), .. }));
        assert_eq!(Message::parse(&out).expect("header").flags().rcode(), Rcode::SERVFAIL);
        let later = now + Duration::from_secs(31);
        out.clear();
        assert_eq!(
            cache.lookup(key("bogus.example").as_bytes(), later, serve(owner.as_wire()), &mut out, true),
            Lookup::Miss
        );
        assert!(
            cache
                .lookup_stale(key("bogus.example").as_bytes(), later, serve(owner.as_wire()), &mut out, true)
                .is_none()
        );
        assert_eq!(cache.insert_bogus(key("zero.example").as_bytes(), &servfail, 0, now), None);
    }

    #[test]
    fn negative_answers_use_the_soa_minimum() {
        let cache = Cache::new(config());
        let now = Instant::now();
        let soa = "example.com. 3600 IN SOA ns.example.com. host.example.com. 1 2 3 4 60";
        let nxdomain = response("nx.example.com", Rcode::NXDOMAIN, &[], &[soa]);
        assert_eq!(cache.insert(key("nx.example.com").as_bytes(), &nxdomain, now), Some(60));
        let no_soa = response("nx2.example.com", Rcode::NXDOMAIN, &[], &[]);
        assert_eq!(cache.insert(key("nx2.example.com").as_bytes(), &no_soa, now), None);
        let servfail = response("sf.example.com", Rcode::SERVFAIL, &[], &[]);
        assert_eq!(cache.insert(key("sf.example.com").as_bytes(), &servfail, now), None);
    }

    #[test]
    fn an_answer_to_another_name_is_not_stored() {
        let cache = Cache::new(config());
        let now = Instant::now();
        let other = response("other.example", Rcode::NOERROR, &["other.example. 300 IN A 192.0.2.1"], &[]);
        assert_eq!(cache.insert(key("www.example").as_bytes(), &other, now), None);
        assert!(cache.is_empty());
        // The same name in another case is the same question.
        let upper = response("WWW.Example", Rcode::NOERROR, &["WWW.Example. 300 IN A 192.0.2.1"], &[]);
        assert_eq!(cache.insert(key("www.example").as_bytes(), &upper, now), Some(300));
    }

    #[test]
    fn ttls_are_clamped() {
        let cache = Cache::new(CacheConfig { min_ttl: 60, max_ttl: 120, ..config() });
        let now = Instant::now();
        let short = response("a.example", Rcode::NOERROR, &["a.example. 5 IN A 192.0.2.1"], &[]);
        assert_eq!(cache.insert(key("a.example").as_bytes(), &short, now), Some(60));
        let long = response("b.example", Rcode::NOERROR, &["b.example. 86400 IN A 192.0.2.1"], &[]);
        assert_eq!(cache.insert(key("b.example").as_bytes(), &long, now), Some(120));
    }

    #[test]
    fn the_entry_limit_evicts() {
        let cache = Cache::new(CacheConfig { max_entries: SHARDS * 2, ..config() });
        let now = Instant::now();
        for index in 0..500 {
            let name = format!("host{index}.example");
            let bytes = response(&name, Rcode::NOERROR, &[&format!("{name}. 300 IN A 192.0.2.1")], &[]);
            cache.insert(key(&name).as_bytes(), &bytes, now);
        }
        assert!(cache.len() <= SHARDS * 2);
        assert!(cache.stats().evictions() >= 500 - (SHARDS * 2) as u64);
    }

    #[test]
    fn clients_without_edns_get_no_opt_and_small_clients_get_tc() {
        let cache = Cache::new(config());
        let now = Instant::now();
        let records: Vec<String> = (0..40).map(|i| format!("big.example. 300 IN A 192.0.2.{i}")).collect();
        let refs: Vec<&str> = records.iter().map(String::as_str).collect();
        let bytes = response("big.example", Rcode::NOERROR, &refs, &[]);
        cache.insert(key("big.example").as_bytes(), &bytes, now);
        let name: NameBuf = "big.example".parse().expect("name");
        let mut out = Vec::new();
        let serve_small = ServeAs {
            id: 1,
            question_name: name.as_wire(),
            limit: 512,
            client_edns: false,
            recursion_desired: true,
            authentic_data: false,
        };
        let result = cache.lookup(key("big.example").as_bytes(), now, serve_small, &mut out, true);
        assert!(matches!(result, Lookup::Hit { len, .. } if len <= 512));
        let message = Message::parse(&out).expect("header");
        assert!(message.flags().tc());
        assert!(message.edns().expect("ok").is_none());
        message.check().expect("valid");
    }
}
