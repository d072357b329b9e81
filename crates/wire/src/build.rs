//! Writing messages: sections in order, name compression with bounded cost,
//! a size limit that drops whole RRsets and sets TC, and EDNS written last.

use bytes::BytesMut;

use crate::Error;
use crate::edns::{EdnsHeader, EdnsOption, OptionBytes};
use crate::iana::{Class, Rcode, RecordType};
use crate::message::{Flags, HEADER_LEN, Header, Message, Record, Section};
use crate::name::{MAX_LABELS, MAX_NAME_LEN, Name, ToName};
use crate::rdata::{RecordData, Sink};
use crate::record::RecordBuf;

/// Largest DNS message (TCP and DoH framing both cap it at 65535 bytes).
pub const MAX_MESSAGE_LEN: usize = 65_535;
/// Size of an OPT record without options.
const OPT_FIXED_LEN: usize = 11;
/// Compression pointers can reach only the first 16 KiB.
const POINTER_RANGE: usize = 0x4000;
/// Compression table size: bounds the work per name.
const COMPRESSION_ENTRIES: usize = 64;

/// Where a builder writes.
pub trait Buffer {
    /// Bytes written so far.
    fn len(&self) -> usize;
    /// Whether nothing has been written.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The most bytes this buffer can hold.
    fn max_len(&self) -> usize {
        usize::MAX
    }
    /// Append bytes.
    fn put(&mut self, bytes: &[u8]) -> Result<(), Error>;
    /// Append a fixed-size array (lets growable buffers copy without a `memcpy` call).
    fn put_fixed<const N: usize>(&mut self, bytes: &[u8; N]) -> Result<(), Error> {
        self.put(bytes)
    }
    /// Drop everything after `len` bytes.
    fn truncate(&mut self, len: usize);
    /// The bytes written.
    fn as_slice(&self) -> &[u8];
    /// The bytes written, mutably.
    fn as_mut_slice(&mut self) -> &mut [u8];
}

impl Buffer for BytesMut {
    fn len(&self) -> usize {
        Self::len(self)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn put_fixed<const N: usize>(&mut self, bytes: &[u8; N]) -> Result<(), Error> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn truncate(&mut self, len: usize) {
        Self::truncate(self, len);
    }

    fn as_slice(&self) -> &[u8] {
        self
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        self
    }
}

impl Buffer for Vec<u8> {
    fn len(&self) -> usize {
        Self::len(self)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn put_fixed<const N: usize>(&mut self, bytes: &[u8; N]) -> Result<(), Error> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn truncate(&mut self, len: usize) {
        Self::truncate(self, len);
    }

    fn as_slice(&self) -> &[u8] {
        self
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        self
    }
}

/// A caller's fixed buffer (for example a stack array or a slot in a batch of
/// `sendmmsg` buffers).
#[derive(Debug)]
pub struct SliceBuffer<'a> {
    bytes: &'a mut [u8],
    len: usize,
}

impl<'a> SliceBuffer<'a> {
    /// Write into `bytes`, starting empty.
    pub fn new(bytes: &'a mut [u8]) -> Self {
        Self { bytes, len: 0 }
    }

    /// The bytes written.
    pub fn written(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

impl Buffer for SliceBuffer<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn max_len(&self) -> usize {
        self.bytes.len()
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let end = self.len + bytes.len();
        let capacity = self.bytes.len();
        let dest = self.bytes.get_mut(self.len..end).ok_or(Error::BufferFull { capacity })?;
        dest.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    fn as_slice(&self) -> &[u8] {
        self.written()
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.bytes.get_mut(..self.len).unwrap_or(&mut [])
    }
}

/// An entry's parent when the rest of its name is the root.
const ROOT_PARENT: u16 = u16::MAX;

/// One label written in the message: the name at `offset` is this label
/// followed by the name of entry `parent` (or the root).
#[derive(Clone, Copy, Default)]
struct Entry {
    offset: u16,
    parent: u16,
    len: u8,
}

/// Names remembered with their compression entry, so a name written again
/// (an RRset's owner, a CNAME target that owns the next record) skips the lookup.
const RECENT_NAMES: usize = 2;

/// Slots in the compression index (a power of two, four times the entries).
const INDEX_SLOTS: usize = 256;

/// Labels already written, linked to their parents, and indexed by (parent,
/// label) so a lookup costs one hash probe per label of the new name.
struct Compressor {
    entries: [Entry; COMPRESSION_ENTRIES],
    len: usize,
    /// Entry index + 1 by hash; 0 is an empty slot.
    index: [u8; INDEX_SLOTS],
    recent: [Recent; RECENT_NAMES],
    next_recent: usize,
}

/// A name written recently: its flat bytes and the entry of the whole name.
#[derive(Clone, Copy)]
struct Recent {
    flat: [u8; MAX_NAME_LEN],
    len: u8,
    entry: u16,
}

/// What a lookup found: labels `0..unmatched` must be written; the rest is
/// already in the message as entry `entry` (or `ROOT_PARENT` if nothing matched).
#[derive(Clone, Copy)]
struct Match {
    unmatched: usize,
    entry: u16,
}

/// A constant-time hash of (parent, label): length, first, middle and last
/// byte. Collisions only cost a comparison.
fn slot_of(parent: u16, label: &[u8]) -> usize {
    let len = label.len();
    let first = label.first().copied().unwrap_or_default();
    let middle = label.get(len / 2).copied().unwrap_or_default();
    let last = label.last().copied().unwrap_or_default();
    let key = u64::from(parent)
        | (len as u64) << 16
        | u64::from(first) << 24
        | u64::from(middle) << 32
        | u64::from(last) << 40;
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize & (INDEX_SLOTS - 1)
}

impl Compressor {
    fn new() -> Self {
        Self {
            entries: [Entry::default(); COMPRESSION_ENTRIES],
            len: 0,
            index: [0; INDEX_SLOTS],
            recent: [Recent { flat: [0; MAX_NAME_LEN], len: 0, entry: ROOT_PARENT }; RECENT_NAMES],
            next_recent: 0,
        }
    }

    /// The entry of a name written recently, if `flat` is one.
    fn recent(&self, flat: &[u8]) -> Option<u16> {
        self.recent
            .iter()
            .find(|recent| {
                recent.entry != ROOT_PARENT
                    && usize::from(recent.len) == flat.len()
                    && recent.flat.get(..flat.len()) == Some(flat)
            })
            .map(|recent| recent.entry)
    }

    fn remember(&mut self, flat: &[u8], entry: u16) {
        if entry == ROOT_PARENT {
            return;
        }
        let slot = self.next_recent % RECENT_NAMES;
        if let Some(recent) = self.recent.get_mut(slot)
            && let Some(dest) = recent.flat.get_mut(..flat.len())
        {
            dest.copy_from_slice(flat);
            recent.len = flat.len() as u8;
            recent.entry = entry;
            self.next_recent = slot + 1;
        }
    }

    fn forget_from(&mut self, offset: usize, message: &[u8]) {
        // Entries are added in message order, a name at a time, so those at or
        // after `offset` are a suffix of the table.
        let keep = self
            .entries
            .get(..self.len)
            .unwrap_or(&[])
            .iter()
            .position(|entry| usize::from(entry.offset) >= offset)
            .unwrap_or(self.len);
        if keep == self.len {
            return;
        }
        self.len = keep;
        for recent in &mut self.recent {
            if usize::from(recent.entry) >= keep {
                recent.entry = ROOT_PARENT;
            }
        }
        self.index = [0; INDEX_SLOTS];
        for position in 0..keep {
            if let Some(entry) = self.entries.get(position).copied() {
                let start = usize::from(entry.offset) + 1;
                let label = message.get(start..start + usize::from(entry.len)).unwrap_or(&[]);
                self.insert_index(entry.parent, label, position);
            }
        }
    }

    fn insert_index(&mut self, parent: u16, label: &[u8], position: usize) {
        let mut slot = slot_of(parent, label);
        for _ in 0..INDEX_SLOTS {
            match self.index.get_mut(slot) {
                Some(value @ 0) => {
                    *value = position as u8 + 1;
                    return;
                }
                Some(_) => slot = (slot + 1) & (INDEX_SLOTS - 1),
                None => return,
            }
        }
    }

    fn find(&self, message: &[u8], parent: u16, label: &[u8]) -> Option<u16> {
        let mut slot = slot_of(parent, label);
        loop {
            let value = *self.index.get(slot)?;
            if value == 0 {
                return None;
            }
            let position = usize::from(value - 1);
            let entry = self.entries.get(position)?;
            if entry.parent == parent && usize::from(entry.len) == label.len() {
                let start = usize::from(entry.offset) + 1;
                if message.get(start..start + label.len()) == Some(label) {
                    return Some(position as u16);
                }
            }
            slot = (slot + 1) & (INDEX_SLOTS - 1);
        }
    }

    fn lookup(&self, message: &[u8], flat: &[u8], labels: &LabelStarts) -> Match {
        let mut found = Match { unmatched: labels.count, entry: ROOT_PARENT };
        if self.len == 0 {
            return found;
        }
        for index in (0..labels.count).rev() {
            let start = labels.start(index);
            let len = usize::from(labels.len(index));
            let label = flat.get(start + 1..start + 1 + len).unwrap_or(&[]);
            match self.find(message, found.entry, label) {
                Some(position) => found = Match { unmatched: index, entry: position },
                None => break,
            }
        }
        found
    }

    /// Record the labels `0..unmatched` just written at `name_start`; returns
    /// the entry of the whole name, if it has one.
    fn add(&mut self, name_start: usize, flat: &[u8], labels: &LabelStarts, found: Match) -> u16 {
        let mut parent = found.entry;
        for index in (0..found.unmatched).rev() {
            let start = labels.start(index);
            let offset = name_start + start;
            if self.len >= COMPRESSION_ENTRIES || offset >= POINTER_RANGE {
                return ROOT_PARENT;
            }
            let len = labels.len(index);
            let position = self.len;
            if let Some(slot) = self.entries.get_mut(position) {
                *slot = Entry { offset: offset as u16, parent, len };
            }
            let label = flat.get(start + 1..start + 1 + usize::from(len)).unwrap_or(&[]);
            self.insert_index(parent, label, position);
            parent = position as u16;
            self.len += 1;
        }
        parent
    }
}

/// Where each label of a flat name starts.
struct LabelStarts {
    starts: [u8; MAX_LABELS],
    lens: [u8; MAX_LABELS],
    count: usize,
}

impl LabelStarts {
    fn of(flat: &[u8]) -> Self {
        let mut labels = Self { starts: [0; MAX_LABELS], lens: [0; MAX_LABELS], count: 0 };
        let mut position = 0usize;
        while let Some(&len) = flat.get(position) {
            if len == 0 || labels.count >= MAX_LABELS {
                break;
            }
            if let (Some(start), Some(slot)) = (labels.starts.get_mut(labels.count), labels.lens.get_mut(labels.count))
            {
                *start = position as u8;
                *slot = len;
            }
            labels.count += 1;
            position += 1 + usize::from(len);
        }
        labels
    }

    fn start(&self, index: usize) -> usize {
        usize::from(self.starts.get(index).copied().unwrap_or_default())
    }

    fn len(&self, index: usize) -> u8 {
        self.lens.get(index).copied().unwrap_or_default()
    }
}

/// Where the RRset being written started, so a record that does not fit can
/// take its whole RRset with it (RFC 2181 §9).
#[derive(Clone, Copy)]
struct RrsetMark {
    start: usize,
    count_before: u16,
    section: Section,
    rtype: RecordType,
    class: Class,
    /// The compression entry of the owner name, or `ROOT_PARENT` if it has none.
    owner_entry: u16,
    name_offset: usize,
}

/// Builds a message into a buffer.
///
/// ```
/// use bytes::BytesMut;
/// use signpost_wire::{Class, Message, MessageBuilder, RData, RecordType};
///
/// let query = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
///              3, b'w', b'w', b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, 0, 1, 0, 1];
/// let query = Message::parse(&query)?;
/// let mut buffer = BytesMut::with_capacity(512);
/// let mut builder = MessageBuilder::response_to(&mut buffer, &query)?;
/// let name = query.first_question()?.expect("one question").name();
/// builder.push(signpost_wire::Section::Answer, &name, Class::IN, 60, &RData::A([127, 0, 0, 1].into()))?;
/// builder.finish()?;
/// let response = Message::parse(&buffer)?;
/// assert_eq!(response.id(), 0x1234);
/// assert_eq!(response.header().ancount, 1);
/// # Ok::<(), signpost_wire::Error>(())
/// ```
pub struct MessageBuilder<'b, T: Buffer + ?Sized> {
    buffer: &'b mut T,
    base: usize,
    header: Header,
    section: Section,
    limit: usize,
    truncated: bool,
    compression: Compressor,
    rrset: Option<RrsetMark>,
    edns: Option<EdnsHeader>,
    edns_options: OptionBytes,
    extended_rcode: u8,
}

impl<'b, T: Buffer + ?Sized> MessageBuilder<'b, T> {
    /// Start a message at the end of `buffer` (so a caller can put a TCP length
    /// prefix first). The header starts zeroed.
    #[inline(always)]
    pub fn new(buffer: &'b mut T) -> Result<Self, Error> {
        let base = buffer.len();
        buffer.put(&[0; HEADER_LEN])?;
        Ok(Self {
            buffer,
            base,
            header: Header::default(),
            section: Section::Question,
            limit: MAX_MESSAGE_LEN,
            truncated: false,
            compression: Compressor::new(),
            rrset: None,
            edns: None,
            edns_options: OptionBytes::new(),
            extended_rcode: 0,
        })
    }

    /// Start a response to `query`: same ID and opcode, RD and CD copied, QR
    /// set, and every question copied with its original case.
    #[inline(always)]
    pub fn response_to(buffer: &'b mut T, query: &Message<'_>) -> Result<Self, Error> {
        let mut builder = Self::response_header_to(buffer, query.header())?;
        for question in query.questions() {
            let question = question?;
            builder.push_question(&question.name(), question.qtype(), question.qclass())?;
        }
        Ok(builder)
    }

    /// Start a response carrying only the query's ID, opcode, RD and CD (for
    /// answering a query whose question could not be read).
    #[inline(always)]
    pub fn response_header_to(buffer: &'b mut T, query: Header) -> Result<Self, Error> {
        let mut builder = Self::new(buffer)?;
        let flags = Flags::default()
            .with_qr(true)
            .with_opcode(query.flags.opcode())
            .with_rd(query.flags.rd())
            .with_cd(query.flags.cd());
        builder.header.id = query.id;
        builder.header.flags = flags;
        Ok(builder)
    }

    /// The header as it will be written (counts are filled in by `finish`).
    pub fn header_mut(&mut self) -> &mut Header {
        &mut self.header
    }

    /// Set the message ID.
    pub fn set_id(&mut self, id: u16) {
        self.header.id = id;
    }

    /// Set the flags word.
    pub fn set_flags(&mut self, flags: Flags) {
        self.header.flags = flags;
    }

    /// Set the response code; bits beyond four go in the OPT record.
    pub fn set_rcode(&mut self, rcode: Rcode) {
        self.header.flags = self.header.flags.with_rcode(rcode);
        self.extended_rcode = rcode.extended_bits();
    }

    /// Limit the message to `limit` bytes (at least a header; at most 65535).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.clamp(HEADER_LEN, MAX_MESSAGE_LEN);
    }

    /// Add an OPT record when the message is finished. Space for it is
    /// reserved from now on.
    pub fn set_edns(&mut self, edns: EdnsHeader) {
        self.edns = Some(edns);
    }

    /// Add an option to the OPT record (requires `set_edns`). Fails without
    /// adding it if the message would no longer fit.
    pub fn push_edns_option(&mut self, option: &EdnsOption<'_>) -> Result<(), Error> {
        let before = self.edns_options.len();
        option.write_into(&mut self.edns_options)?;
        if self.edns_options.len() > usize::from(u16::MAX) || self.len() + self.reserved() > self.effective_limit() {
            self.edns_options.truncate(before);
            return Err(Error::Truncated { limit: self.limit });
        }
        Ok(())
    }

    /// Bytes written so far (without the pending OPT record).
    pub fn len(&self) -> usize {
        self.buffer.len() - self.base
    }

    /// Whether only the header has been written.
    pub fn is_empty(&self) -> bool {
        self.len() <= HEADER_LEN
    }

    /// Whether a record was dropped for the size limit.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// The section records are currently added to.
    pub fn current_section(&self) -> Section {
        self.section
    }

    fn reserved(&self) -> usize {
        self.edns.map_or(0, |_| OPT_FIXED_LEN + self.edns_options.len())
    }

    fn effective_limit(&self) -> usize {
        self.limit.min(self.buffer.max_len().saturating_sub(self.base))
    }

    fn count_mut(&mut self, section: Section) -> &mut u16 {
        match section {
            Section::Question => &mut self.header.qdcount,
            Section::Answer => &mut self.header.ancount,
            Section::Authority => &mut self.header.nscount,
            Section::Additional => &mut self.header.arcount,
        }
    }

    fn enter(&mut self, section: Section) -> Result<(), Error> {
        if self.truncated {
            return Err(Error::Truncated { limit: self.limit });
        }
        if section < self.section {
            return Err(Error::SectionOrder { section });
        }
        if self.header.count(section) == u16::MAX {
            return Err(Error::CountOverflow { section });
        }
        self.section = section;
        Ok(())
    }

    /// Add a question.
    pub fn push_question(&mut self, name: &impl ToName, qtype: RecordType, qclass: Class) -> Result<(), Error> {
        self.enter(Section::Question)?;
        let start = self.len();
        let mut scratch = [0u8; MAX_NAME_LEN];
        let flat = name.flat(&mut scratch);
        let mut fixed = [0u8; 4];
        fixed[..2].copy_from_slice(&qtype.0.to_be_bytes());
        fixed[2..].copy_from_slice(&qclass.0.to_be_bytes());
        let result = write_name(self.buffer, self.base, &mut self.compression, flat, true)
            .and_then(|_| self.buffer.put_fixed(&fixed));
        if result.is_err() || self.len() + self.reserved() > self.effective_limit() {
            self.buffer.truncate(self.base + start);
            self.compression.forget_from(start, self.buffer.as_slice().get(self.base..).unwrap_or(&[]));
            return self.overflow(result.err(), true);
        }
        self.header.qdcount += 1;
        Ok(())
    }

    fn overflow(&mut self, error: Option<Error>, set_tc: bool) -> Result<(), Error> {
        match error {
            None | Some(Error::BufferFull { .. }) => {
                self.truncated = true;
                if set_tc {
                    self.header.flags = self.header.flags.with_tc(true);
                }
                Err(Error::Truncated { limit: self.limit })
            }
            Some(other) => Err(other),
        }
    }

    /// Add a record with typed data to `section`.
    pub fn push<N: ToName, B: AsRef<[u8]>>(
        &mut self,
        section: Section,
        name: &impl ToName,
        class: Class,
        ttl: u32,
        data: &RecordData<N, B>,
    ) -> Result<(), Error> {
        self.push_with(section, name, data.rtype(), class, ttl, |sink| data.write_to(sink))
    }

    /// Add an owned record to `section`.
    pub fn push_record_buf(&mut self, section: Section, record: &RecordBuf) -> Result<(), Error> {
        self.push(section, &record.name, record.class, record.ttl, &record.data)
    }

    /// Copy a record read from another message: names are decompressed and
    /// recompressed here; unknown types are copied byte for byte.
    pub fn push_record(&mut self, section: Section, record: &Record<'_>) -> Result<(), Error> {
        let data = record.data()?;
        self.push(section, &record.name(), record.class(), record.ttl(), &data)
    }

    /// Add a record whose RDATA is already in wire form (no names are compressed).
    pub fn push_raw(
        &mut self,
        section: Section,
        name: &impl ToName,
        rtype: RecordType,
        class: Class,
        ttl: u32,
        rdata: &[u8],
    ) -> Result<(), Error> {
        self.push_with(section, name, rtype, class, ttl, |sink| sink.put(rdata))
    }

    fn push_with(
        &mut self,
        section: Section,
        name: &impl ToName,
        rtype: RecordType,
        class: Class,
        ttl: u32,
        write_data: impl FnOnce(&mut RdataSink<'_, T>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if section == Section::Question {
            return Err(Error::SectionOrder { section });
        }
        self.enter(section)?;
        let start = self.len();
        let mut scratch = [0u8; MAX_NAME_LEN];
        let flat = name.flat(&mut scratch);
        let message = self.buffer.as_slice().get(self.base..).unwrap_or(&[]);
        let (labels, found) = match self.compression.recent(flat) {
            Some(entry) => (None, Match { unmatched: 0, entry }),
            None => {
                let labels = LabelStarts::of(flat);
                let found = self.compression.lookup(message, flat, &labels);
                (Some(labels), found)
            }
        };
        let same_rrset = self.rrset.is_some_and(|mark| {
            mark.section == section
                && mark.rtype == rtype
                && mark.class == class
                && if mark.owner_entry == ROOT_PARENT {
                    // The owner had no compression entry (a full table): compare bytes.
                    Name::from_message(message, mark.name_offset).is_ok_and(|(existing, _)| existing == FlatName(flat))
                } else {
                    found.unmatched == 0 && found.entry == mark.owner_entry
                }
        });
        let mut fixed = [0u8; 10];
        fixed[..2].copy_from_slice(&rtype.0.to_be_bytes());
        fixed[2..4].copy_from_slice(&class.0.to_be_bytes());
        fixed[4..8].copy_from_slice(&ttl.to_be_bytes());
        let count_before = self.header.count(section);
        let limit = self.limit;
        let base = self.base;
        let result = write_record(
            &mut *self.buffer,
            base,
            &mut self.compression,
            flat,
            labels.as_ref(),
            found,
            &fixed,
            write_data,
        )
        .map(|owner_entry| {
            if !same_rrset {
                self.rrset =
                    Some(RrsetMark { start, count_before, section, rtype, class, owner_entry, name_offset: start });
            }
        })
        .map_err(|error| {
            if let Error::BufferFull { .. } = error { Error::BufferFull { capacity: limit } } else { error }
        });
        if result.is_err() || self.len() + self.reserved() > self.effective_limit() {
            // Drop the whole RRset this record belongs to.
            let (rewind, count) = match self.rrset.take() {
                Some(mark) if same_rrset || mark.start == start => (mark.start, mark.count_before),
                _ => (start, self.header.count(section)),
            };
            self.buffer.truncate(self.base + rewind);
            self.compression.forget_from(rewind, self.buffer.as_slice().get(self.base..).unwrap_or(&[]));
            *self.count_mut(section) = count;
            return self.overflow(result.err(), section != Section::Additional);
        }
        *self.count_mut(section) += 1;
        Ok(())
    }

    /// Write the OPT record and the header; returns the message length.
    pub fn finish(self) -> Result<usize, Error> {
        let mut header = self.header;
        if let Some(edns) = self.edns {
            let ttl = u32::from(self.extended_rcode) << 24
                | u32::from(edns.version) << 16
                | if edns.dnssec_ok { 0x8000 } else { 0 };
            let len = u16::try_from(self.edns_options.len()).map_err(|_| Error::EdnsTooLong)?;
            let mut fixed = [0u8; OPT_FIXED_LEN];
            fixed[1..3].copy_from_slice(&RecordType::OPT.0.to_be_bytes());
            fixed[3..5].copy_from_slice(&edns.udp_payload_size.to_be_bytes());
            fixed[5..9].copy_from_slice(&ttl.to_be_bytes());
            fixed[9..11].copy_from_slice(&len.to_be_bytes());
            self.buffer.put_fixed(&fixed)?;
            self.buffer.put(self.edns_options.as_slice())?;
            header.arcount =
                header.arcount.checked_add(1).ok_or(Error::CountOverflow { section: Section::Additional })?;
        }
        let bytes = header.to_bytes();
        let slot = self
            .buffer
            .as_mut_slice()
            .get_mut(self.base..self.base + HEADER_LEN)
            .ok_or(Error::BufferFull { capacity: self.base + HEADER_LEN })?;
        slot.copy_from_slice(&bytes);
        Ok(self.buffer.len() - self.base)
    }
}

/// A flat wire name as a `ToName`, for comparisons.
struct FlatName<'a>(&'a [u8]);

impl ToName for FlatName<'_> {
    fn flat<'s>(&'s self, _scratch: &'s mut [u8; MAX_NAME_LEN]) -> &'s [u8] {
        self.0
    }
}

/// Writes RDATA into the builder's buffer with access to its compression table.
pub(crate) struct RdataSink<'s, T: Buffer + ?Sized> {
    buffer: &'s mut T,
    base: usize,
    compression: &'s mut Compressor,
}

impl<T: Buffer + ?Sized> Sink for RdataSink<'_, T> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.buffer.put(bytes)
    }

    fn put_fixed<const N: usize>(&mut self, bytes: &[u8; N]) -> Result<(), Error> {
        self.buffer.put_fixed(bytes)
    }

    fn put_name(&mut self, name: &impl ToName, compress: bool) -> Result<(), Error> {
        let mut scratch = [0u8; MAX_NAME_LEN];
        let flat = name.flat(&mut scratch);
        write_name(self.buffer, self.base, self.compression, flat, compress)
    }
}

/// Write one record after its owner's compression lookup: owner, fixed
/// fields, RDATA and its length. Returns the owner's compression entry.
#[allow(clippy::too_many_arguments)]
fn write_record<T: Buffer + ?Sized>(
    buffer: &mut T,
    base: usize,
    compression: &mut Compressor,
    flat: &[u8],
    labels: Option<&LabelStarts>,
    found: Match,
    fixed: &[u8; 10],
    write_data: impl FnOnce(&mut RdataSink<'_, T>) -> Result<(), Error>,
) -> Result<u16, Error> {
    let owner_entry = write_found_name(buffer, base, compression, flat, labels, found)?;
    buffer.put_fixed(fixed)?;
    let data_start = buffer.len();
    let mut sink = RdataSink { buffer: &mut *buffer, base, compression };
    write_data(&mut sink)?;
    let data_len = u16::try_from(buffer.len() - data_start).map_err(|_| Error::BufferFull { capacity: 0 })?;
    let slot = buffer.as_mut_slice().get_mut(data_start - 2..data_start).ok_or(Error::BufferFull { capacity: 0 })?;
    slot.copy_from_slice(&data_len.to_be_bytes());
    Ok(owner_entry)
}

/// Write a flat name, pointing at the longest suffix already in the message
/// when `compress` is set; every label written becomes a pointer target.
fn write_name<T: Buffer + ?Sized>(
    buffer: &mut T,
    base: usize,
    compression: &mut Compressor,
    flat: &[u8],
    compress: bool,
) -> Result<(), Error> {
    if compress && let Some(entry) = compression.recent(flat) {
        return write_found_name(buffer, base, compression, flat, None, Match { unmatched: 0, entry }).map(|_| ());
    }
    let labels = LabelStarts::of(flat);
    let found = if compress {
        compression.lookup(buffer.as_slice().get(base..).unwrap_or(&[]), flat, &labels)
    } else {
        Match { unmatched: labels.count, entry: ROOT_PARENT }
    };
    write_found_name(buffer, base, compression, flat, Some(&labels), found).map(|_| ())
}

/// Write the unmatched labels and a pointer to the matched suffix (or the
/// root label); returns the compression entry of the whole name. `labels`
/// may be `None` only when the whole name matched.
fn write_found_name<T: Buffer + ?Sized>(
    buffer: &mut T,
    base: usize,
    compression: &mut Compressor,
    flat: &[u8],
    labels: Option<&LabelStarts>,
    found: Match,
) -> Result<u16, Error> {
    let name_start = buffer.len() - base;
    if found.entry == ROOT_PARENT {
        buffer.put(flat)?;
    } else {
        let prefix_end = labels.map_or(0, |labels| labels.start(found.unmatched));
        let target = compression.entries.get(usize::from(found.entry)).map_or(0, |entry| entry.offset);
        if prefix_end > 0 {
            buffer.put(flat.get(..prefix_end).unwrap_or(&[]))?;
        }
        buffer.put_fixed(&(0xc000 | target).to_be_bytes())?;
    }
    let Some(labels) = labels else { return Ok(found.entry) };
    let entry = compression.add(name_start, flat, labels, found);
    compression.remember(flat, entry);
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::NameBuf;
    use crate::rdata::{Mx, RDataBuf};

    fn name(text: &str) -> NameBuf {
        text.parse().expect("valid")
    }

    #[test]
    fn compresses_repeated_suffixes() {
        let mut buffer = BytesMut::new();
        let mut builder = MessageBuilder::new(&mut buffer).expect("header");
        builder.push_question(&name("www.example.com"), RecordType::MX, Class::IN).expect("fits");
        let mx = RDataBuf::Mx(Mx { preference: 10, exchange: name("mail.example.com") });
        builder.push(Section::Answer, &name("www.example.com"), Class::IN, 300, &mx).expect("fits");
        let len = builder.finish().expect("done");
        // header 12 + question 17+4; answer: pointer 2 + 10 fixed + pref 2 + "mail" 5 + pointer 2.
        assert_eq!(len, 12 + 21 + 2 + 10 + 2 + 5 + 2);
        let message = Message::parse(&buffer).expect("parses");
        message.check().expect("valid");
        let answer = message.answers().expect("ok").next().expect("one").expect("valid");
        assert_eq!(answer.name().to_string(), "www.example.com.");
        assert_eq!(answer.data().expect("mx").to_string(), "10 mail.example.com.");
    }

    #[test]
    fn srv_targets_are_never_compressed() {
        let mut buffer = Vec::new();
        let mut builder = MessageBuilder::new(&mut buffer).expect("header");
        builder.push_question(&name("_sip._udp.example.com"), RecordType::SRV, Class::IN).expect("fits");
        let srv: RDataBuf =
            RDataBuf::Srv(crate::rdata::Srv { priority: 1, weight: 2, port: 3, target: name("example.com") });
        builder.push(Section::Answer, &name("_sip._udp.example.com"), Class::IN, 60, &srv).expect("fits");
        builder.finish().expect("done");
        let message = Message::parse(&buffer).expect("parses");
        let answer = message.answers().expect("ok").next().expect("one").expect("valid");
        assert!(answer.raw_data().ends_with(b"\x07example\x03com\x00"));
    }

    #[test]
    fn limit_drops_whole_rrsets_and_sets_tc() {
        let mut buffer = BytesMut::new();
        let mut builder = MessageBuilder::new(&mut buffer).expect("header");
        builder.set_limit(100);
        builder.push_question(&name("example.com"), RecordType::A, Class::IN).expect("fits");
        let owner = name("example.com");
        let mut results = Vec::new();
        for last in 1..=10u8 {
            results.push(builder.push(Section::Answer, &owner, Class::IN, 60, &RDataBuf::A([192, 0, 2, last].into())));
        }
        assert!(results.iter().any(Result::is_err));
        assert!(builder.is_truncated());
        let len = builder.finish().expect("done");
        assert!(len <= 100);
        let message = Message::parse(&buffer).expect("parses");
        assert!(message.flags().tc());
        // The whole A RRset went: none of its records remain.
        assert_eq!(message.header().ancount, 0);
        message.check().expect("valid");
    }

    #[test]
    fn additional_overflow_does_not_set_tc_and_opt_always_fits() {
        let mut buffer = BytesMut::new();
        let mut builder = MessageBuilder::new(&mut buffer).expect("header");
        builder.set_limit(80);
        builder.set_edns(EdnsHeader::default());
        builder.push_question(&name("example.com"), RecordType::A, Class::IN).expect("fits");
        builder
            .push(Section::Answer, &name("example.com"), Class::IN, 60, &RDataBuf::A([192, 0, 2, 1].into()))
            .expect("fits");
        let glue = builder.push(
            Section::Additional,
            &name("a-long-glue-name.example.net"),
            Class::IN,
            60,
            &RDataBuf::A([192, 0, 2, 2].into()),
        );
        assert_eq!(glue, Err(Error::Truncated { limit: 80 }));
        builder.finish().expect("done");
        let message = Message::parse(&buffer).expect("parses");
        assert!(!message.flags().tc());
        assert_eq!(message.header().arcount, 1);
        assert!(message.edns().expect("ok").is_some());
        message.check().expect("valid");
    }

    #[test]
    fn sections_must_be_in_order() {
        let mut buffer = BytesMut::new();
        let mut builder = MessageBuilder::new(&mut buffer).expect("header");
        let data = RDataBuf::A([192, 0, 2, 1].into());
        builder.push(Section::Authority, &name("a"), Class::IN, 1, &data).expect("fits");
        assert_eq!(
            builder.push(Section::Answer, &name("a"), Class::IN, 1, &data),
            Err(Error::SectionOrder { section: Section::Answer })
        );
        assert_eq!(
            builder.push_question(&name("a"), RecordType::A, Class::IN),
            Err(Error::SectionOrder { section: Section::Question })
        );
    }

    #[test]
    fn response_to_copies_id_flags_and_question_case() {
        let mut query_buffer = BytesMut::new();
        let mut query = MessageBuilder::new(&mut query_buffer).expect("header");
        query.set_id(0xbeef);
        query.set_flags(Flags::default().with_rd(true).with_cd(true).with_ad(true));
        query.push_question(&name("WwW.ExAmPlE.cOm"), RecordType::AAAA, Class::IN).expect("fits");
        query.finish().expect("done");
        let query = Message::parse(&query_buffer).expect("parses");

        let mut buffer = [0u8; 512];
        let mut slice = SliceBuffer::new(&mut buffer);
        let mut builder = MessageBuilder::response_to(&mut slice, &query).expect("fits");
        builder.set_rcode(Rcode::BADVERS);
        builder.set_edns(EdnsHeader::default());
        builder.finish().expect("done");
        let response = Message::parse(slice.written()).expect("parses");
        assert_eq!(response.id(), 0xbeef);
        let flags = response.flags();
        assert!(flags.qr() && flags.rd() && flags.cd() && !flags.ad());
        let question = response.first_question().expect("ok").expect("one");
        assert_eq!(question.name().to_string(), "WwW.ExAmPlE.cOm.");
        assert_eq!(response.rcode(), Ok(Rcode::BADVERS));
    }

    #[test]
    fn slice_buffer_overflow_is_truncation() {
        let mut buffer = [0u8; 40];
        let mut slice = SliceBuffer::new(&mut buffer);
        let mut builder = MessageBuilder::new(&mut slice).expect("header");
        builder.push_question(&name("example.com"), RecordType::A, Class::IN).expect("fits");
        let result =
            builder.push(Section::Answer, &name("other.example.org"), Class::IN, 1, &RDataBuf::A([1, 2, 3, 4].into()));
        assert_eq!(result, Err(Error::Truncated { limit: MAX_MESSAGE_LEN }));
        let len = builder.finish().expect("done");
        assert_eq!(len, 12 + 17);
    }
}
