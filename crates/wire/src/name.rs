//! Domain names: a zero-copy view that follows compression pointers in place,
//! and an owned, uncompressed `NameBuf`.
//!
//! Both compare and hash case-insensitively (RFC 4343) and keep the original
//! case for echoing. Presentation format uses `\.`, `\\` and `\DDD` escapes.

use core::cmp::Ordering;
use core::fmt;
use core::hash::{Hash, Hasher};
use core::str::FromStr;

use crate::Error;

/// Longest name in wire form, root label included (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// Most labels a name can have, root excluded: 127 one-octet labels fill 254 octets.
pub const MAX_LABELS: usize = 127;
/// A bound on pointer hops per name. Pointers must also move strictly
/// backwards, so loops are impossible; this bound caps the work per name.
const MAX_POINTER_HOPS: usize = 128;

/// Something that can give its uncompressed wire form.
pub trait ToName {
    /// The uncompressed wire form, borrowed if it is already contiguous,
    /// otherwise copied into `scratch`.
    fn flat<'s>(&'s self, scratch: &'s mut [u8; MAX_NAME_LEN]) -> &'s [u8];

    /// The uncompressed wire form if it is already stored contiguously, so a
    /// caller can skip preparing a scratch buffer for [`ToName::flat`].
    fn flat_in_place(&self) -> Option<&[u8]> {
        None
    }

    /// [`ToName::flat`], with a scratch buffer made (zeroed) only when the
    /// name is not stored contiguously: pass `&mut None`. Names read from a
    /// message are usually flat, and zeroing 255 bytes per name showed in
    /// the builder's and the query path's profiles.
    #[inline]
    fn flat_or_copy<'s>(&'s self, scratch: &'s mut Option<[u8; MAX_NAME_LEN]>) -> &'s [u8] {
        match self.flat_in_place() {
            Some(flat) => flat,
            None => self.flat(scratch.insert([0u8; MAX_NAME_LEN])),
        }
    }
}

/// A name inside a message, read in place.
///
/// The name was fully validated when the view was made: labels of at most
/// 63 octets, at most 255 octets uncompressed, pointers strictly backwards.
#[derive(Clone, Copy)]
pub struct Name<'a> {
    message: &'a [u8],
    start: u32,
    wire_len: u8,
    label_count: u8,
    compressed: bool,
}

/// What parsing a name found: the view and where the bytes after it start.
pub(crate) struct ParsedName<'a> {
    pub(crate) name: Name<'a>,
    pub(crate) end: usize,
}

impl<'a> Name<'a> {
    /// The root name.
    pub const ROOT: Name<'static> = Name { message: &[0], start: 0, wire_len: 1, label_count: 0, compressed: false };

    /// Read the name starting at `offset` in `message`, following compression pointers.
    ///
    /// Returns the name and the offset just past it in the original stream.
    #[inline]
    pub fn from_message(message: &'a [u8], offset: usize) -> Result<(Self, usize), Error> {
        let parsed = parse_in_message(message, offset, None)?;
        Ok((parsed.name, parsed.end))
    }

    /// Where the name starts in its message (for a name read from one).
    pub(crate) fn start(&self) -> usize {
        self.start as usize
    }

    /// The bytes the name was read from.
    pub(crate) fn message(&self) -> &'a [u8] {
        self.message
    }

    /// Read an uncompressed name that fills `bytes` exactly.
    pub fn from_wire(bytes: &'a [u8]) -> Result<Self, Error> {
        let parsed = parse(bytes, 0, false)?;
        if parsed.end != bytes.len() {
            return Err(Error::TrailingData { offset: parsed.end, len: bytes.len() - parsed.end });
        }
        Ok(parsed.name)
    }

    /// Length of the uncompressed wire form, root label included.
    pub fn wire_len(&self) -> usize {
        usize::from(self.wire_len)
    }

    /// Number of labels, not counting the root.
    pub fn label_count(&self) -> usize {
        usize::from(self.label_count)
    }

    /// Whether this is the root name.
    pub fn is_root(&self) -> bool {
        self.label_count == 0
    }

    /// Whether the name used compression pointers in the message.
    pub fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// The uncompressed wire bytes, if the name is stored contiguously.
    pub fn as_flat(&self) -> Option<&'a [u8]> {
        if self.compressed {
            return None;
        }
        let start = self.start as usize;
        self.message.get(start..start + self.wire_len())
    }

    /// Labels from left to right, not counting the root.
    pub fn labels(&self) -> Labels<'a> {
        Labels { message: self.message, position: self.start as usize, remaining: self.label_count }
    }

    /// Labels from right to left, not counting the root.
    pub fn labels_rev(&self) -> LabelsRev<'a> {
        LabelsRev::new(self.labels())
    }

    /// Copy the uncompressed wire form into `buf`, returning the used part.
    pub fn flatten_into<'b>(&self, buf: &'b mut [u8; MAX_NAME_LEN]) -> &'b [u8] {
        let mut len = 0;
        for label in self.labels() {
            let end = len + 1 + label.len();
            if let Some(slot) = buf.get_mut(len) {
                *slot = label.len() as u8;
            }
            if let Some(dest) = buf.get_mut(len + 1..end) {
                dest.copy_from_slice(label);
            }
            len = end;
        }
        if let Some(slot) = buf.get_mut(len) {
            *slot = 0;
        }
        buf.get(..len + 1).unwrap_or(&[])
    }

    /// Copy the uncompressed wire form, ASCII-lowercased, into `buf`.
    pub fn lowercase_into<'b>(&self, buf: &'b mut [u8; MAX_NAME_LEN]) -> &'b [u8] {
        let len = self.flatten_into(buf).len();
        let out = buf.get_mut(..len).unwrap_or(&mut []);
        out.make_ascii_lowercase();
        out
    }

    /// An owned copy, case preserved.
    pub fn to_name_buf(&self) -> NameBuf {
        let mut scratch = [0u8; MAX_NAME_LEN];
        NameBuf { wire: self.flatten_into(&mut scratch).into() }
    }

    /// Whether this name equals `parent` or lies below it (case-insensitive).
    pub fn is_subdomain_of(&self, parent: &impl ToName) -> bool {
        let mut a = [0u8; MAX_NAME_LEN];
        let mut b = [0u8; MAX_NAME_LEN];
        flat_is_subdomain(self.flat(&mut a), parent.flat(&mut b))
    }
}

/// Offsets a compression pointer can reach (14 bits).
const POINTER_RANGE: usize = 0x4000;
/// Slots in a [`NameMemo`] (a power of two).
const MEMO_SLOTS: usize = 16;

/// Offsets of one message known to start a valid name, with what validating
/// that name found, so a pointer to one of them need not be followed again.
///
/// A message's names point into each other (every owner of an RRset to the
/// same earlier name, glue owners to NS targets, which point to the zone
/// name), so without a memo the same suffixes are validated many times. An
/// entry is only ever made from a name that passed every check, from the
/// same message bytes, and the suffix it describes was checked with its own
/// run start as the pointer bound, so a name that reaches it through a
/// backward pointer only has to add up the length and hop totals, which
/// [`parse_in_message`] still checks. A memo belongs to one message: the
/// record and question iterators own theirs.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct NameMemo {
    slots: [MemoSlot; MEMO_SLOTS],
}

/// One memo entry: the name at `key - 1` (0 is an empty slot).
#[derive(Clone, Copy, Debug, Default)]
struct MemoSlot {
    key: u16,
    wire_len: u8,
    label_count: u8,
    hops: u8,
}

impl NameMemo {
    #[inline(always)]
    fn slot(offset: usize) -> usize {
        (offset ^ (offset >> 4)) & (MEMO_SLOTS - 1)
    }

    #[inline(always)]
    fn get(&self, offset: usize) -> Option<MemoSlot> {
        let slot = self.slots.get(Self::slot(offset))?;
        (usize::from(slot.key) == offset + 1).then_some(*slot)
    }

    #[inline(always)]
    fn insert(&mut self, offset: usize, wire_len: usize, label_count: usize, hops: usize) {
        // Only offsets a pointer can reach are worth remembering; the totals
        // of a valid name always fit in a byte.
        if offset >= POINTER_RANGE {
            return;
        }
        if let Some(slot) = self.slots.get_mut(Self::slot(offset)) {
            *slot = MemoSlot {
                key: offset as u16 + 1,
                wire_len: wire_len as u8,
                label_count: label_count as u8,
                hops: hops as u8,
            };
        }
    }
}

/// Read the (possibly compressed) name at `offset`, with every check of
/// [`parse`], consulting and filling `memo` if given.
///
/// This is the fast path: it walks valid names in tight loops and hands
/// anything unusual (the end of the data, a reserved label type, a forward
/// pointer, a name too long, too many hops) to [`parse`], which finds the
/// exact error, so errors are the same with or without the fast path.
#[inline(always)]
pub(crate) fn parse_in_message<'a>(
    message: &'a [u8],
    offset: usize,
    memo: Option<&mut NameMemo>,
) -> Result<ParsedName<'a>, Error> {
    let mut position = offset;
    // Pointers must point before the start of the run of labels being read.
    let mut run_start = offset;
    // Where the name ends in the stream, once its first pointer is seen.
    let mut end = None;
    // Octets of the labels read so far (the root's octet is added at the end).
    let mut label_octets = 0usize;
    let mut label_count = 0usize;
    let mut hops = 0usize;
    // The first pointer target and the totals before it, for the memo.
    let mut first_target = None;
    loop {
        // A run of labels stored in place: one length octet of 1..=63 each.
        let first = loop {
            let Some(&first) = message.get(position) else { return Err(name_error(message, offset)) };
            if first == 0 || first > 0x3f {
                break first;
            }
            label_count += 1;
            position += 1 + usize::from(first);
        };
        label_octets += position - run_start;
        if label_octets >= MAX_NAME_LEN {
            return Err(name_error(message, offset));
        }
        if first == 0 {
            if end.is_none() {
                end = Some(position + 1);
            }
            break;
        }
        if first < 0xc0 {
            return Err(name_error(message, offset));
        }
        let Some(&second) = message.get(position + 1) else { return Err(name_error(message, offset)) };
        let target = usize::from(first & 0x3f) << 8 | usize::from(second);
        if target >= run_start {
            return Err(name_error(message, offset));
        }
        if end.is_none() {
            end = Some(position + 2);
        }
        hops += 1;
        if hops > MAX_POINTER_HOPS {
            return Err(name_error(message, offset));
        }
        if let Some(known) = memo.as_deref().and_then(|memo| memo.get(target)) {
            let total_octets = label_octets + usize::from(known.wire_len) - 1;
            let total_hops = hops + usize::from(known.hops);
            if total_octets < MAX_NAME_LEN && total_hops <= MAX_POINTER_HOPS {
                label_octets = total_octets;
                label_count += usize::from(known.label_count);
                hops = total_hops;
                break;
            }
            // Over a limit: walk on, so the checks above report it exactly.
        }
        if hops == 1 {
            first_target = Some((target, label_octets, label_count));
        }
        run_start = target;
        position = target;
    }
    let wire_len = label_octets + 1;
    let (Some(end), Ok(start)) = (end, u32::try_from(offset)) else { return Err(name_error(message, offset)) };
    if let Some(memo) = memo {
        // A name that starts with a pointer is not itself pointed to (a
        // pointer would go to its target instead), nor is the root.
        if message.get(offset).is_some_and(|&first| first != 0 && first < 0x40) {
            memo.insert(offset, wire_len, label_count, hops);
        }
        if let Some((target, octets_before, labels_before)) = first_target {
            memo.insert(target, wire_len - octets_before, label_count - labels_before, hops - 1);
        }
    }
    Ok(ParsedName {
        name: Name { message, start, wire_len: wire_len as u8, label_count: label_count as u8, compressed: hops > 0 },
        end,
    })
}

/// The careful walk's error, for a name the fast path did not accept.
///
/// The fast path gives up only on names the careful walk rejects; should the
/// two ever disagree, the name is refused rather than trusted.
#[cold]
#[inline(never)]
fn name_error(message: &[u8], offset: usize) -> Error {
    match parse(message, offset, true) {
        Err(error) => error,
        Ok(_) => Error::NameTooLong { offset },
    }
}

fn parse(message: &[u8], offset: usize, allow_pointers: bool) -> Result<ParsedName<'_>, Error> {
    let mut position = offset;
    // Pointers must point before the start of the run of labels being read,
    // so the sequence of runs strictly descends and cannot loop.
    let mut run_start = offset;
    let mut end = None;
    let mut wire_len = 1usize;
    let mut label_count = 0u8;
    let mut hops = 0usize;
    loop {
        let Some(&first) = message.get(position) else {
            return Err(Error::UnexpectedEnd { offset: position, needed: 1 });
        };
        match first & 0xc0 {
            0x00 => {
                if first == 0 {
                    let end = end.unwrap_or(position + 1);
                    let Ok(start) = u32::try_from(offset) else {
                        return Err(Error::NameTooLong { offset });
                    };
                    return Ok(ParsedName {
                        name: Name { message, start, wire_len: wire_len as u8, label_count, compressed: hops > 0 },
                        end,
                    });
                }
                let len = usize::from(first);
                wire_len += 1 + len;
                if wire_len > MAX_NAME_LEN {
                    return Err(Error::NameTooLong { offset });
                }
                if message.len() < position + 1 + len {
                    return Err(Error::UnexpectedEnd {
                        offset: position + 1,
                        needed: position + 1 + len - message.len(),
                    });
                }
                label_count += 1;
                position += 1 + len;
            }
            0xc0 => {
                if !allow_pointers {
                    return Err(Error::CompressedNameNotAllowed { offset: position });
                }
                let Some(&second) = message.get(position + 1) else {
                    return Err(Error::UnexpectedEnd { offset: position + 1, needed: 1 });
                };
                let target = usize::from(u16::from_be_bytes([first & 0x3f, second]));
                if target >= run_start {
                    return Err(Error::ForwardPointer { offset: position, target });
                }
                hops += 1;
                if hops > MAX_POINTER_HOPS {
                    return Err(Error::TooManyPointers { offset });
                }
                if end.is_none() {
                    end = Some(position + 2);
                }
                run_start = target;
                position = target;
            }
            // 0b01 is the obsolete extended-label type (RFC 6891 §5); a byte of
            // 64..=127 is far more often an encoder writing a label over 63, so
            // report it as that.
            0x40 => return Err(Error::LabelTooLong { offset: position, len: usize::from(first) }),
            _ => return Err(Error::ReservedLabelType { offset: position, label_type: first & 0xc0 }),
        }
    }
}

impl ToName for Name<'_> {
    fn flat<'s>(&'s self, scratch: &'s mut [u8; MAX_NAME_LEN]) -> &'s [u8] {
        match self.as_flat() {
            Some(flat) => flat,
            None => self.flatten_into(scratch),
        }
    }

    fn flat_in_place(&self) -> Option<&[u8]> {
        self.as_flat()
    }
}

impl<T: ToName + ?Sized> ToName for &T {
    fn flat<'s>(&'s self, scratch: &'s mut [u8; MAX_NAME_LEN]) -> &'s [u8] {
        (**self).flat(scratch)
    }

    fn flat_in_place(&self) -> Option<&[u8]> {
        (**self).flat_in_place()
    }
}

/// Labels of a name, left to right.
#[derive(Clone, Debug)]
pub struct Labels<'a> {
    message: &'a [u8],
    position: usize,
    remaining: u8,
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.remaining == 0 {
            return None;
        }
        loop {
            let first = *self.message.get(self.position)?;
            if first & 0xc0 == 0xc0 {
                let second = *self.message.get(self.position + 1)?;
                self.position = usize::from(u16::from_be_bytes([first & 0x3f, second]));
                continue;
            }
            let start = self.position + 1;
            let end = start + usize::from(first);
            let label = self.message.get(start..end)?;
            self.position = end;
            self.remaining -= 1;
            return Some(label);
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.remaining), Some(usize::from(self.remaining)))
    }
}

impl ExactSizeIterator for Labels<'_> {}

/// Labels of a name, right to left.
#[derive(Clone)]
pub struct LabelsRev<'a> {
    labels: [&'a [u8]; MAX_LABELS],
    remaining: usize,
}

impl<'a> LabelsRev<'a> {
    fn new(labels: Labels<'a>) -> Self {
        let mut out: [&'a [u8]; MAX_LABELS] = [&[]; MAX_LABELS];
        let mut count = 0;
        for (slot, label) in out.iter_mut().zip(labels) {
            *slot = label;
            count += 1;
        }
        Self { labels: out, remaining: count }
    }
}

impl<'a> Iterator for LabelsRev<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        self.remaining = self.remaining.checked_sub(1)?;
        self.labels.get(self.remaining).copied()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for LabelsRev<'_> {}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_presentation(self.labels(), f)
    }
}

impl fmt::Debug for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

impl<T: ToName> PartialEq<T> for Name<'_> {
    fn eq(&self, other: &T) -> bool {
        let mut a = [0u8; MAX_NAME_LEN];
        let mut b = [0u8; MAX_NAME_LEN];
        self.flat(&mut a).eq_ignore_ascii_case(other.flat(&mut b))
    }
}

impl Eq for Name<'_> {}

impl Hash for Name<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut scratch = [0u8; MAX_NAME_LEN];
        hash_flat(self.flat(&mut scratch), state);
    }
}

/// An owned domain name in uncompressed wire form, case preserved.
///
/// `Ord` is the canonical DNS order of RFC 4034 §6.1.
#[derive(Clone)]
pub struct NameBuf {
    wire: Box<[u8]>,
}

impl NameBuf {
    /// The root name.
    pub fn root() -> Self {
        Self { wire: Box::new([0]) }
    }

    /// From uncompressed wire form (validated).
    pub fn from_wire(bytes: &[u8]) -> Result<Self, Error> {
        Name::from_wire(bytes)?;
        Ok(Self { wire: bytes.into() })
    }

    /// Parse presentation format. A name without a trailing dot is taken as
    /// absolute (as configuration files mean it); `@` is not accepted here.
    pub fn from_presentation(text: &str) -> Result<Self, Error> {
        parse_presentation(text, None)
    }

    /// Parse presentation format as a zone file does: a name without a
    /// trailing dot is relative to `origin`, and `@` means `origin`.
    pub fn from_presentation_relative(text: &str, origin: &Self) -> Result<Self, Error> {
        parse_presentation(text, Some(origin))
    }

    /// A view of this name.
    pub fn as_name(&self) -> Name<'_> {
        let label_count = self.labels().count() as u8;
        Name { message: &self.wire, start: 0, wire_len: self.wire.len() as u8, label_count, compressed: false }
    }

    /// The uncompressed wire form.
    pub fn as_wire(&self) -> &[u8] {
        &self.wire
    }

    /// Length of the wire form, root label included.
    pub fn wire_len(&self) -> usize {
        self.wire.len()
    }

    /// Whether this is the root name.
    pub fn is_root(&self) -> bool {
        self.wire.len() == 1
    }

    /// Labels from left to right, not counting the root.
    pub fn labels(&self) -> FlatLabels<'_> {
        FlatLabels { wire: &self.wire, position: 0 }
    }

    /// Labels from right to left, not counting the root.
    pub fn labels_rev(&self) -> impl DoubleEndedIterator<Item = &[u8]> + '_ {
        let mut starts = [0u8; MAX_LABELS];
        let mut count = 0usize;
        let mut position = 0usize;
        while let Some(&len) = self.wire.get(position) {
            if len == 0 || count >= MAX_LABELS {
                break;
            }
            if let Some(slot) = starts.get_mut(count) {
                *slot = position as u8;
            }
            count += 1;
            position += 1 + usize::from(len);
        }
        let wire = &self.wire;
        (0..count).rev().filter_map(move |index| {
            let start = usize::from(*starts.get(index)?);
            let len = usize::from(*wire.get(start)?);
            wire.get(start + 1..start + 1 + len)
        })
    }

    /// Number of labels, not counting the root.
    pub fn label_count(&self) -> usize {
        self.labels().count()
    }

    /// Whether this name equals `parent` or lies below it (case-insensitive).
    pub fn is_subdomain_of(&self, parent: &impl ToName) -> bool {
        let mut scratch = [0u8; MAX_NAME_LEN];
        flat_is_subdomain(&self.wire, parent.flat(&mut scratch))
    }

    /// The name with its first label removed, or `None` for the root.
    pub fn parent(&self) -> Option<Self> {
        let len = usize::from(*self.wire.first()?);
        if len == 0 {
            return None;
        }
        Some(Self { wire: self.wire.get(1 + len..)?.into() })
    }

    /// The name formed by putting `label` in front of this one.
    pub fn prepend(&self, label: &[u8]) -> Result<Self, Error> {
        if label.is_empty() {
            return Err(Error::EmptyLabel { column: 0 });
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(Error::LabelTooLong { offset: 0, len: label.len() });
        }
        if self.wire.len() + 1 + label.len() > MAX_NAME_LEN {
            return Err(Error::NameTooLong { offset: 0 });
        }
        let mut wire = Vec::with_capacity(self.wire.len() + 1 + label.len());
        wire.push(label.len() as u8);
        wire.extend_from_slice(label);
        wire.extend_from_slice(&self.wire);
        Ok(Self { wire: wire.into() })
    }

    /// This name's labels followed by `origin`'s (self must be read as relative).
    pub fn concat(&self, origin: &Self) -> Result<Self, Error> {
        let own = self.wire.len().saturating_sub(1);
        if own + origin.wire.len() > MAX_NAME_LEN {
            return Err(Error::NameTooLong { offset: 0 });
        }
        let mut wire = Vec::with_capacity(own + origin.wire.len());
        wire.extend_from_slice(self.wire.get(..own).unwrap_or(&[]));
        wire.extend_from_slice(&origin.wire);
        Ok(Self { wire: wire.into() })
    }

    /// A copy with ASCII letters lowercased.
    pub fn to_lowercase(&self) -> Self {
        let mut wire = self.wire.clone();
        wire.make_ascii_lowercase();
        Self { wire }
    }

    /// The presentation form without the trailing dot (the root is ".").
    pub fn to_relative_string(&self) -> String {
        let mut text = self.to_string();
        if text.len() > 1 {
            text.pop();
        }
        text
    }
}

impl ToName for NameBuf {
    fn flat<'s>(&'s self, _scratch: &'s mut [u8; MAX_NAME_LEN]) -> &'s [u8] {
        &self.wire
    }

    fn flat_in_place(&self) -> Option<&[u8]> {
        Some(&self.wire)
    }
}

impl From<Name<'_>> for NameBuf {
    fn from(name: Name<'_>) -> Self {
        name.to_name_buf()
    }
}

impl FromStr for NameBuf {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Self::from_presentation(text)
    }
}

impl<T: ToName> PartialEq<T> for NameBuf {
    fn eq(&self, other: &T) -> bool {
        let mut scratch = [0u8; MAX_NAME_LEN];
        self.wire.eq_ignore_ascii_case(other.flat(&mut scratch))
    }
}

impl Eq for NameBuf {}

impl Hash for NameBuf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_flat(&self.wire, state);
    }
}

impl PartialOrd for NameBuf {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for NameBuf {
    fn cmp(&self, other: &Self) -> Ordering {
        canonical_cmp(&self.wire, &other.wire)
    }
}

impl fmt::Display for NameBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_presentation(self.labels(), f)
    }
}

impl fmt::Debug for NameBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NameBuf({self})")
    }
}

/// Labels of a flat (uncompressed) name, left to right.
#[derive(Clone, Debug)]
pub struct FlatLabels<'a> {
    wire: &'a [u8],
    position: usize,
}

impl<'a> FlatLabels<'a> {
    /// Labels of a validated flat wire name.
    pub fn new(wire: &'a [u8]) -> Self {
        Self { wire, position: 0 }
    }
}

impl<'a> Iterator for FlatLabels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(*self.wire.get(self.position)?);
        if len == 0 || len > MAX_LABEL_LEN {
            return None;
        }
        let label = self.wire.get(self.position + 1..self.position + 1 + len)?;
        self.position += 1 + len;
        Some(label)
    }
}

fn hash_flat<H: Hasher>(flat: &[u8], state: &mut H) {
    // Lowercase in chunks so hashing needs no allocation.
    let mut chunk = [0u8; 64];
    for part in flat.chunks(chunk.len()) {
        let out = chunk.get_mut(..part.len()).unwrap_or(&mut []);
        out.copy_from_slice(part);
        out.make_ascii_lowercase();
        state.write(out);
    }
}

/// Whether flat name `child` equals or is below flat name `parent`, case-insensitively.
pub fn flat_is_subdomain(child: &[u8], parent: &[u8]) -> bool {
    let Some(offset) = child.len().checked_sub(parent.len()) else {
        return false;
    };
    // The suffix must start on a label boundary of the child.
    let mut position = 0;
    while position < offset {
        match child.get(position) {
            Some(&len) if len != 0 => position += 1 + usize::from(len),
            _ => return false,
        }
    }
    position == offset && child.get(offset..).is_some_and(|suffix| suffix.eq_ignore_ascii_case(parent))
}

/// Compare two flat names in canonical DNS order (RFC 4034 §6.1).
pub fn canonical_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let mut a_labels: [&[u8]; MAX_LABELS] = [&[]; MAX_LABELS];
    let mut b_labels: [&[u8]; MAX_LABELS] = [&[]; MAX_LABELS];
    let mut a_count = 0;
    for (slot, label) in a_labels.iter_mut().zip(FlatLabels::new(a)) {
        *slot = label;
        a_count += 1;
    }
    let mut b_count = 0;
    for (slot, label) in b_labels.iter_mut().zip(FlatLabels::new(b)) {
        *slot = label;
        b_count += 1;
    }
    let a_rev = a_labels.get(..a_count).unwrap_or(&[]).iter().rev();
    let b_rev = b_labels.get(..b_count).unwrap_or(&[]).iter().rev();
    for (x, y) in a_rev.zip(b_rev) {
        let ordering = x.iter().map(u8::to_ascii_lowercase).cmp(y.iter().map(u8::to_ascii_lowercase));
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    a_count.cmp(&b_count)
}

/// Write labels in presentation format with a trailing dot.
pub(crate) fn write_presentation<'a>(
    labels: impl Iterator<Item = &'a [u8]>,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    let mut any = false;
    for label in labels {
        any = true;
        write_label(label, f)?;
        f.write_str(".")?;
    }
    if !any {
        f.write_str(".")?;
    }
    Ok(())
}

/// Write one label with presentation-format escapes.
pub(crate) fn write_label(label: &[u8], f: &mut impl fmt::Write) -> fmt::Result {
    let mut start = 0;
    for (index, &byte) in label.iter().enumerate() {
        let plain = byte.is_ascii_graphic() && !matches!(byte, b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$');
        if plain {
            continue;
        }
        if let Some(run) = label.get(start..index) {
            // Plain bytes are printable ASCII, hence valid UTF-8.
            f.write_str(core::str::from_utf8(run).unwrap_or_default())?;
        }
        if byte.is_ascii_graphic() {
            f.write_char('\\')?;
            f.write_char(char::from(byte))?;
        } else {
            write!(f, "\\{byte:03}")?;
        }
        start = index + 1;
    }
    if let Some(run) = label.get(start..) {
        f.write_str(core::str::from_utf8(run).unwrap_or_default())?;
    }
    Ok(())
}

/// Decode one presentation-format escape starting after the backslash at
/// `bytes[index]`; returns the byte and how many input bytes it used.
pub(crate) fn decode_escape(bytes: &[u8], index: usize, column: usize) -> Result<(u8, usize), Error> {
    match bytes.get(index) {
        Some(digit) if digit.is_ascii_digit() => {
            let digits = bytes.get(index..index + 3).ok_or(Error::InvalidEscape { column })?;
            if !digits.iter().all(u8::is_ascii_digit) {
                return Err(Error::InvalidEscape { column });
            }
            let value = digits.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
            let byte = u8::try_from(value).map_err(|_| Error::InvalidEscape { column })?;
            Ok((byte, 3))
        }
        Some(&other) => Ok((other, 1)),
        None => Err(Error::InvalidEscape { column }),
    }
}

fn parse_presentation(text: &str, origin: Option<&NameBuf>) -> Result<NameBuf, Error> {
    if text.is_empty() {
        return Err(Error::EmptyLabel { column: 0 });
    }
    if text == "." {
        return Ok(NameBuf::root());
    }
    if text == "@"
        && let Some(origin) = origin
    {
        return Ok(origin.clone());
    }
    let bytes = text.as_bytes();
    let mut wire = Vec::with_capacity(bytes.len() + 2);
    let mut label_start = 0usize; // index in `wire` of the current label's length byte
    let mut label_column = 0usize;
    wire.push(0);
    let mut index = 0;
    let mut absolute = false;
    while index < bytes.len() {
        let byte = bytes.get(index).copied().unwrap_or_default();
        match byte {
            b'.' => {
                let len = wire.len() - label_start - 1;
                if len == 0 {
                    return Err(Error::EmptyLabel { column: index });
                }
                if index + 1 == bytes.len() {
                    absolute = true;
                    index += 1;
                    continue;
                }
                wire.push(0);
                label_start = wire.len() - 1;
                label_column = index + 1;
                index += 1;
            }
            b'\\' => {
                let (decoded, used) = decode_escape(bytes, index + 1, index)?;
                wire.push(decoded);
                index += 1 + used;
            }
            _ => {
                wire.push(byte);
                index += 1;
            }
        }
        let len = wire.len() - label_start - 1;
        if len > MAX_LABEL_LEN {
            return Err(Error::LabelTooLong { offset: label_column, len });
        }
        if let Some(slot) = wire.get_mut(label_start) {
            *slot = len as u8;
        }
    }
    if wire.len() - label_start - 1 == 0 {
        return Err(Error::EmptyLabel { column: label_column });
    }
    match (absolute, origin) {
        (false, Some(origin)) => wire.extend_from_slice(&origin.wire),
        _ => wire.push(0),
    }
    if wire.len() > MAX_NAME_LEN {
        return Err(Error::NameTooLong { offset: 0 });
    }
    Ok(NameBuf { wire: wire.into() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::name;
    use std::collections::hash_map::DefaultHasher;

    fn hash_of(value: &impl Hash) -> u64 {
        let mut hasher = DefaultHasher::new();
        value.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn presentation_round_trips_with_escapes() {
        for text in ["www.example.com.", ".", "a\\.b.example.", "back\\\\slash.", "\\000\\255bin.", "sp\\032ace."] {
            let parsed = name(text);
            assert_eq!(parsed.to_string(), text);
        }
        assert_eq!(name("\\065bc.").to_string(), "Abc.");
        assert_eq!(name("example.com").to_string(), "example.com.");
        assert_eq!(name("a\\.b.example").as_wire(), b"\x03a.b\x07example\x00");
    }

    #[test]
    fn presentation_rejects_bad_names_with_positions() {
        assert_eq!("a..b".parse::<NameBuf>(), Err(Error::EmptyLabel { column: 2 }));
        assert_eq!(".a".parse::<NameBuf>(), Err(Error::EmptyLabel { column: 0 }));
        assert_eq!("a\\256".parse::<NameBuf>(), Err(Error::InvalidEscape { column: 1 }));
        assert_eq!("a\\2".parse::<NameBuf>(), Err(Error::InvalidEscape { column: 1 }));
        assert_eq!("a\\".parse::<NameBuf>(), Err(Error::InvalidEscape { column: 1 }));
        let long_label = "x".repeat(64);
        assert_eq!(format!("ok.{long_label}").parse::<NameBuf>(), Err(Error::LabelTooLong { offset: 3, len: 64 }));
        let max_label = "y".repeat(63);
        assert!(max_label.parse::<NameBuf>().is_ok());
        // 4 labels of 63 = 256 octets with the root: one too many.
        let too_long = [max_label.as_str(); 4].join(".");
        assert_eq!(too_long.parse::<NameBuf>(), Err(Error::NameTooLong { offset: 0 }));
        let just_fits = format!("{}.{}", [max_label.as_str(); 3].join("."), "z".repeat(61));
        assert_eq!(name(&just_fits).wire_len(), 255);
    }

    #[test]
    fn relative_names_take_the_origin() {
        let origin = name("example.com.");
        assert_eq!(NameBuf::from_presentation_relative("www", &origin), Ok(name("www.example.com.")));
        assert_eq!(NameBuf::from_presentation_relative("www.", &origin), Ok(name("www.")));
        assert_eq!(NameBuf::from_presentation_relative("@", &origin), Ok(origin.clone()));
    }

    #[test]
    fn comparison_and_hash_ignore_ascii_case_but_display_keeps_it() {
        let mixed = name("WwW.ExAmPlE.CoM");
        let lower = name("www.example.com");
        assert_eq!(mixed, lower);
        assert_eq!(hash_of(&mixed), hash_of(&lower));
        assert_eq!(mixed.to_string(), "WwW.ExAmPlE.CoM.");
        assert_eq!(hash_of(&mixed.as_name()), hash_of(&lower));
        assert_ne!(name("www.example.org"), lower);
    }

    #[test]
    fn subdomain_checks_respect_label_boundaries() {
        let parent = name("example.com");
        assert!(name("www.example.com").is_subdomain_of(&parent));
        assert!(name("EXAMPLE.com").is_subdomain_of(&parent));
        assert!(!name("badexample.com").is_subdomain_of(&parent));
        assert!(!name("com").is_subdomain_of(&parent));
        assert!(name("anything").is_subdomain_of(&NameBuf::root()));
        // A label containing a dot is not a boundary.
        assert!(!name("a\\.example.com").is_subdomain_of(&name("example.com.com")));
    }

    #[test]
    fn labels_iterate_both_ways() {
        let n = name("a.bb.ccc");
        assert_eq!(n.labels().collect::<Vec<_>>(), [b"a" as &[u8], b"bb", b"ccc"]);
        assert_eq!(n.labels_rev().collect::<Vec<_>>(), [b"ccc" as &[u8], b"bb", b"a"]);
        assert_eq!(n.as_name().labels_rev().collect::<Vec<_>>(), [b"ccc" as &[u8], b"bb", b"a"]);
        assert_eq!(n.parent(), Some(name("bb.ccc")));
        assert_eq!(NameBuf::root().parent(), None);
    }

    #[test]
    fn canonical_order_follows_rfc4034() {
        // The example list from RFC 4034 §6.1.
        let ordered = [
            "example.",
            "a.example.",
            "yljkjljk.a.example.",
            "Z.a.example.",
            "zABC.a.EXAMPLE.",
            "z.example.",
            "\\001.z.example.",
            "*.z.example.",
            "\\200.z.example.",
        ];
        let names: Vec<NameBuf> = ordered.iter().map(|t| name(t)).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, names);
    }

    #[test]
    fn compressed_names_follow_pointers_backwards_only() {
        // "example.com" at 0, then "www" + pointer to 0 at 13.
        let message = b"\x07example\x03com\x00\x03www\xc0\x00";
        let (n, end) = Name::from_message(message, 13).expect("valid");
        assert_eq!(end, message.len());
        assert_eq!(n.to_string(), "www.example.com.");
        assert!(n.is_compressed());
        assert_eq!(n.wire_len(), 17);
        assert_eq!(n.labels_rev().next(), Some(&b"com"[..]));
        // Pointer to itself.
        assert_eq!(
            Name::from_message(b"\xc0\x00", 0).map(|x| x.1),
            Err(Error::ForwardPointer { offset: 0, target: 0 })
        );
        // Loop: 0 -> 2 is forward.
        assert_eq!(
            Name::from_message(b"\xc0\x02\xc0\x00", 0).map(|x| x.1),
            Err(Error::ForwardPointer { offset: 0, target: 2 })
        );
        // A pointer back into its own run of labels.
        assert_eq!(
            Name::from_message(b"\x01a\xc0\x00", 0).map(|x| x.1),
            Err(Error::ForwardPointer { offset: 2, target: 0 })
        );
        assert_eq!(Name::from_message(b"\x40", 0).map(|x| x.1), Err(Error::LabelTooLong { offset: 0, len: 64 }));
        assert_eq!(
            Name::from_message(b"\x80", 0).map(|x| x.1),
            Err(Error::ReservedLabelType { offset: 0, label_type: 0x80 })
        );
        assert_eq!(Name::from_message(b"\x03ab", 0).map(|x| x.1), Err(Error::UnexpectedEnd { offset: 1, needed: 1 }));
        assert_eq!(
            Name::from_wire(b"\x01a\xc0\x00").map(|n| n.wire_len()),
            Err(Error::CompressedNameNotAllowed { offset: 2 })
        );
    }

    #[test]
    fn hop_bound_stops_long_pointer_chains() {
        // 200 pointers each pointing at the previous one, the first to a root label.
        let mut message = vec![0u8];
        for index in 0..200u16 {
            let target = if index == 0 { 0 } else { 1 + (index - 1) * 2 };
            message.extend_from_slice(&(0xc000 | target).to_be_bytes());
        }
        let last = message.len() - 2;
        assert_eq!(Name::from_message(&message, last).map(|x| x.1), Err(Error::TooManyPointers { offset: last }));
        assert!(Name::from_message(&message, 1 + 2 * 10).is_ok());
    }
}
