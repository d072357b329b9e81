//! Writing messages: sections in order, name compression with bounded cost,
//! a size limit that drops whole RRsets and sets TC, and EDNS written last.

use bytes::BytesMut;

use crate::Error;
use crate::compress::{Compressor, FIRST_NAME, Plan, ROOT_PARENT};
use crate::edns::{ByteSink, EdnsHeader, EdnsOption, OptionBytes};
use crate::iana::{Class, Rcode, RecordType};
use crate::message::{Flags, HEADER_LEN, Header, Message, Question, Record, Section};
use crate::name::{MAX_NAME_LEN, Name, ToName};
use crate::rdata::{RecordData, Sink};
use crate::record::RecordBuf;

/// Largest DNS message (TCP and DoH framing both cap it at 65535 bytes).
pub const MAX_MESSAGE_LEN: usize = 65_535;
/// Size of an OPT record without options.
const OPT_FIXED_LEN: usize = 11;

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

/// The two growable buffers share one implementation: both append with
/// `extend_from_slice` and never run out of room.
macro_rules! growable_buffer {
    ($($buffer:ty),*) => {$(
        impl Buffer for $buffer {
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
    )*};
}

growable_buffer!(BytesMut, Vec<u8>);

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

    /// [`response_to`](Self::response_to) for a query whose one question
    /// was read already (a server's check of the query reads it): the same
    /// bytes, without reading the query's question section again.
    #[inline]
    pub fn response_to_question(buffer: &'b mut T, query: Header, question: &Question<'_>) -> Result<Self, Error> {
        let mut builder = Self::response_header_to(buffer, query)?;
        builder.push_question(&question.name(), question.qtype(), question.qclass())?;
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
        let mut scratch = None;
        let flat = name.flat_or_copy(&mut scratch);
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
        let mut scratch = None;
        let flat = name.flat_or_copy(&mut scratch);
        let message = self.buffer.as_slice().get(self.base..).unwrap_or(&[]);
        let plan = self.compression.plan(message, start, flat, true);
        let same_rrset = self.rrset.is_some_and(|mark| {
            mark.section == section
                && mark.rtype == rtype
                && mark.class == class
                && if mark.owner_entry == ROOT_PARENT {
                    // The owner had no compression entry (a full table): compare bytes.
                    Name::from_message(message, mark.name_offset).is_ok_and(|(existing, _)| existing == FlatName(flat))
                } else {
                    plan.existing_entry().is_some_and(|entry| self.compression.same_entry(entry, mark.owner_entry))
                }
        });
        let mut fixed = [0u8; 10];
        fixed[..2].copy_from_slice(&rtype.0.to_be_bytes());
        fixed[2..4].copy_from_slice(&class.0.to_be_bytes());
        fixed[4..8].copy_from_slice(&ttl.to_be_bytes());
        let count_before = self.header.count(section);
        let limit = self.limit;
        let base = self.base;
        let result = write_record(&mut *self.buffer, base, &mut self.compression, flat, plan, &fixed, write_data)
            .map(|owner_entry| {
                if !same_rrset {
                    self.rrset =
                        Some(RrsetMark { start, count_before, section, rtype, class, owner_entry, name_offset: start });
                }
            })
            .map_err(
                |error| {
                    if let Error::BufferFull { .. } = error { Error::BufferFull { capacity: limit } } else { error }
                },
            );
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
    #[inline(always)]
    pub fn finish(mut self) -> Result<usize, Error> {
        // Inlined, so the builder is not moved just to be finished.
        self.write_end()
    }

    fn write_end(&mut self) -> Result<usize, Error> {
        let mut header = self.header;
        if let Some(edns) = self.edns {
            let len = u16::try_from(self.edns_options.len()).map_err(|_| Error::EdnsTooLong)?;
            self.buffer.put_fixed(&opt_fixed(edns, self.extended_rcode, len))?;
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

/// Write a query: a header with `id`, `flags` and one question, the
/// question, and an OPT record with `edns`'s header and options when given.
/// Returns the bytes written (from the buffer's end, as
/// [`MessageBuilder::new`] starts).
///
/// The bytes are the ones a [`MessageBuilder`] writes for the same calls
/// (`set_id`, `set_flags`, `push_question`, `set_edns`, `push_edns_option`
/// for each option, `finish`), without its compression table and option
/// buffer: a forwarder writes one query per forward, and the builder made
/// for responses took about 800 instructions for it. On an error (the
/// buffer full, options over 64 KiB) nothing is left written.
pub fn write_query<T: Buffer + ?Sized>(
    buffer: &mut T,
    id: u16,
    flags: Flags,
    (name, qtype, qclass): (&impl ToName, RecordType, Class),
    edns: Option<(EdnsHeader, &[EdnsOption<'_>])>,
) -> Result<usize, Error> {
    let base = buffer.len();
    let written = write_query_parts(buffer, id, flags, (name, qtype, qclass), edns).and_then(|()| {
        // The builder's bound on a message, kept here too.
        if buffer.len() - base > MAX_MESSAGE_LEN { Err(Error::Truncated { limit: MAX_MESSAGE_LEN }) } else { Ok(()) }
    });
    if written.is_err() {
        buffer.truncate(base);
    }
    written.map(|()| buffer.len() - base)
}

fn write_query_parts<T: Buffer + ?Sized>(
    buffer: &mut T,
    id: u16,
    flags: Flags,
    (name, qtype, qclass): (&impl ToName, RecordType, Class),
    edns: Option<(EdnsHeader, &[EdnsOption<'_>])>,
) -> Result<(), Error> {
    let header = Header { id, flags, qdcount: 1, ancount: 0, nscount: 0, arcount: u16::from(edns.is_some()) };
    buffer.put_fixed(&header.to_bytes())?;
    let mut scratch = None;
    buffer.put(name.flat_or_copy(&mut scratch))?;
    let [type_high, type_low] = qtype.0.to_be_bytes();
    let [class_high, class_low] = qclass.0.to_be_bytes();
    buffer.put_fixed(&[type_high, type_low, class_high, class_low])?;
    let Some((edns, options)) = edns else { return Ok(()) };
    // Each option is its code and length (4 bytes), then its data.
    let data_len = options.iter().try_fold(0u16, |total, option| {
        u16::try_from(4 + option.data_len()).ok().and_then(|len| total.checked_add(len)).ok_or(Error::EdnsTooLong)
    })?;
    buffer.put_fixed(&opt_fixed(edns, 0, data_len))?;
    let mut sink = BufferSink { buffer, failed: None };
    for option in options {
        option.write_into(&mut sink)?;
    }
    sink.failed.map_or(Ok(()), Err)
}

/// An OPT record's fixed part: the root owner, TYPE, the payload size as
/// CLASS, the extended RCODE, version and DO bit as TTL, then RDLENGTH
/// (`data_len`, the options that follow).
fn opt_fixed(edns: EdnsHeader, extended_rcode: u8, data_len: u16) -> [u8; OPT_FIXED_LEN] {
    let ttl = u32::from(extended_rcode) << 24 | u32::from(edns.version) << 16 | if edns.dnssec_ok { 0x8000 } else { 0 };
    let mut fixed = [0u8; OPT_FIXED_LEN];
    fixed[1..3].copy_from_slice(&RecordType::OPT.0.to_be_bytes());
    fixed[3..5].copy_from_slice(&edns.udp_payload_size.to_be_bytes());
    fixed[5..9].copy_from_slice(&ttl.to_be_bytes());
    fixed[9..11].copy_from_slice(&data_len.to_be_bytes());
    fixed
}

/// A [`Buffer`] as the options' byte sink: the first failed write is kept
/// and the rest are skipped.
struct BufferSink<'b, T: Buffer + ?Sized> {
    buffer: &'b mut T,
    failed: Option<Error>,
}

impl<T: Buffer + ?Sized> ByteSink for BufferSink<'_, T> {
    fn extend(&mut self, bytes: &[u8]) {
        if self.failed.is_none()
            && let Err(error) = self.buffer.put(bytes)
        {
            self.failed = Some(error);
        }
    }
}

/// A flat wire name as a `ToName`, for comparisons.
struct FlatName<'a>(&'a [u8]);

impl ToName for FlatName<'_> {
    fn flat<'s>(&'s self, _scratch: &'s mut [u8; MAX_NAME_LEN]) -> &'s [u8] {
        self.0
    }

    fn flat_in_place(&self) -> Option<&[u8]> {
        Some(self.0)
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
        let mut scratch = None;
        let flat = name.flat_or_copy(&mut scratch);
        write_name(self.buffer, self.base, self.compression, flat, compress)
    }
}

/// Write one record after planning its owner: owner, fixed fields, RDATA and
/// its length. Returns the owner's compression entry.
fn write_record<T: Buffer + ?Sized>(
    buffer: &mut T,
    base: usize,
    compression: &mut Compressor,
    flat: &[u8],
    plan: Plan,
    fixed: &[u8; 10],
    write_data: impl FnOnce(&mut RdataSink<'_, T>) -> Result<(), Error>,
) -> Result<u16, Error> {
    let owner_entry = write_planned_name(buffer, base, compression, flat, plan)?;
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
    let name_start = buffer.len() - base;
    let plan = compression.plan(buffer.as_slice().get(base..).unwrap_or(&[]), name_start, flat, compress);
    write_planned_name(buffer, base, compression, flat, plan).map(|_| ())
}

/// Write a name as planned: the labels not found whole, then a pointer to the
/// rest (or the root label); returns the compression entry of the whole name.
fn write_planned_name<T: Buffer + ?Sized>(
    buffer: &mut T,
    base: usize,
    compression: &mut Compressor,
    flat: &[u8],
    plan: Plan,
) -> Result<u16, Error> {
    let name_start = buffer.len() - base;
    match plan {
        Plan::Root => {
            buffer.put(flat)?;
            Ok(ROOT_PARENT)
        }
        Plan::First => {
            buffer.put(flat)?;
            Ok(FIRST_NAME)
        }
        Plan::PointToFirst => {
            buffer.put_fixed(&(0xc000 | compression.target(FIRST_NAME)).to_be_bytes())?;
            Ok(FIRST_NAME)
        }
        Plan::Table { labels, found } => {
            if found.entry == ROOT_PARENT {
                buffer.put(flat)?;
            } else {
                let prefix_end = labels.as_ref().map_or(0, |labels| labels.start(found.unmatched));
                if prefix_end > 0 {
                    buffer.put(flat.get(..prefix_end).unwrap_or(&[]))?;
                }
                buffer.put_fixed(&(0xc000 | compression.target(found.entry)).to_be_bytes())?;
            }
            match labels {
                Some(labels) => Ok(compression.add(name_start, flat, &labels, found)),
                None => Ok(found.entry),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdata::{Mx, RDataBuf};
    use crate::test_support::name;

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

    #[test]
    fn repeating_the_question_name_needs_no_table() {
        let mut buffer = Vec::new();
        let mut builder = MessageBuilder::new(&mut buffer).expect("header");
        builder.push_question(&name("www.example.com"), RecordType::A, Class::IN).expect("fits");
        for last in 1..=2 {
            let data = RDataBuf::A([192, 0, 2, last].into());
            builder.push(Section::Answer, &name("www.example.com"), Class::IN, 60, &data).expect("fits");
        }
        assert!(builder.compression.has_no_table());
        builder.finish().expect("done");
        // Both owners are pointers to the question name at 12.
        assert_eq!(&buffer[33..35], [0xc0, 12]);
        assert_eq!(&buffer[49..51], [0xc0, 12]);
        Message::parse(&buffer).expect("header").check().expect("valid");
    }

    #[test]
    fn the_table_made_later_knows_the_question_name() {
        let mut buffer = Vec::new();
        let mut builder = MessageBuilder::new(&mut buffer).expect("header");
        builder.push_question(&name("www.example.com"), RecordType::MX, Class::IN).expect("fits");
        let mx = RDataBuf::Mx(Mx { preference: 10, exchange: name("mail.example.com") });
        builder.push(Section::Answer, &name("www.example.com"), Class::IN, 60, &mx).expect("fits");
        assert!(!builder.compression.has_no_table());
        builder
            .push(Section::Answer, &name("example.com"), Class::IN, 60, &RDataBuf::Ns(name("ns.example.com")))
            .expect("fits");
        builder.finish().expect("done");
        #[rustfmt::skip]
        let expected: &[u8] = &[
            3, b'w', b'w', b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, // @12
            0, 15, 0, 1,                                   // MX IN
            0xc0, 12, 0, 15, 0, 1, 0, 0, 0, 60, 0, 9,      // @33: owner -> 12, MX IN 60, RDLENGTH 9
            0, 10, 4, b'm', b'a', b'i', b'l', 0xc0, 16,    // @45: 10 mail -> 16 (example.com)
            0xc0, 16, 0, 2, 0, 1, 0, 0, 0, 60, 0, 5,       // @54: owner -> 16, NS IN 60, RDLENGTH 5
            2, b'n', b's', 0xc0, 16,                       // ns -> 16
        ];
        assert_eq!(&buffer[12..], expected);
        Message::parse(&buffer).expect("header").check().expect("valid");
    }

    #[test]
    fn an_rrset_begun_before_the_table_is_still_one_rrset_after() {
        // Each MX exchange forces the table; the owners point at the question
        // before and after it exists, and a cut must still take the whole RRset.
        let mut buffer = Vec::new();
        let mut builder = MessageBuilder::new(&mut buffer).expect("header");
        builder.set_limit(110);
        builder.push_question(&name("example.com"), RecordType::MX, Class::IN).expect("fits");
        let mut results = Vec::new();
        for index in 0..4u8 {
            let exchange = name(&format!("mail{index}.example.net"));
            let mx = RDataBuf::Mx(Mx { preference: u16::from(index), exchange });
            results.push(builder.push(Section::Answer, &name("example.com"), Class::IN, 60, &mx));
        }
        assert!(results.first().is_some_and(Result::is_ok));
        assert_eq!(results.last(), Some(&Err(Error::Truncated { limit: 110 })));
        builder.finish().expect("done");
        let message = Message::parse(&buffer).expect("header");
        assert!(message.flags().tc());
        assert_eq!(message.header().ancount, 0, "the whole MX RRset goes");
        message.check().expect("valid");
    }

    #[test]
    fn a_first_name_cut_off_is_forgotten() {
        let mut buffer = Vec::new();
        let mut builder = MessageBuilder::new(&mut buffer).expect("header");
        builder.set_limit(40);
        let data = RDataBuf::A([192, 0, 2, 1].into());
        let result = builder.push(Section::Answer, &name("www.example.com"), Class::IN, 60, &data);
        assert_eq!(result, Err(Error::Truncated { limit: 40 }));
        assert_eq!(builder.compression.first_name(), None);
        assert_eq!(builder.finish(), Ok(12));
    }
}
