//! Name compression for the builder: where each name already written can be
//! pointed to, found with bounded work, and nothing set up until needed.
//!
//! Most answers a proxy writes repeat only the question name (a redirect's
//! `A` record, a NODATA answer's SOA owner): the first name is written whole
//! and a name equal to it becomes a pointer, without a table. The table
//! (labels linked to their parents, a hash index and two recent names) is
//! made on the first name that could share a suffix with something else, and
//! the first name's labels are entered then, so compression is the same as
//! if the table had existed from the start.

use crate::name::MAX_LABELS;

/// Compression pointers can reach only the first 16 KiB.
const POINTER_RANGE: usize = 0x4000;
/// Compression table size: bounds the work per name.
const COMPRESSION_ENTRIES: usize = 64;
/// Names remembered with their compression entry, so a name written again
/// (an RRset's owner, a CNAME target that owns the next record) skips the lookup.
const RECENT_NAMES: usize = 2;
/// Longest name remembered as recent (longer ones are looked up label by label).
const RECENT_NAME_LEN: usize = 64;
/// Slots in the compression index (a power of two, four times the entries).
const INDEX_SLOTS: usize = 256;

/// An entry's parent when the rest of its name is the root; also "no entry".
pub(crate) const ROOT_PARENT: u16 = u16::MAX;
/// The entry of the first name written, while no table exists.
pub(crate) const FIRST_NAME: u16 = u16::MAX - 1;

/// One label written in the message: the name at `offset` (its length octet)
/// is this label followed by the name of entry `parent` (or the root).
#[derive(Clone, Copy, Default)]
struct Entry {
    offset: u16,
    parent: u16,
}

/// A name written recently: its flat bytes and the entry of the whole name.
#[derive(Clone, Copy)]
struct Recent {
    flat: [u8; RECENT_NAME_LEN],
    len: u8,
    entry: u16,
}

/// What a lookup found: labels `0..unmatched` must be written; the rest is
/// already in the message as entry `entry` (or `ROOT_PARENT` if nothing matched).
#[derive(Clone, Copy)]
pub(crate) struct Match {
    pub(crate) unmatched: usize,
    pub(crate) entry: u16,
}

/// How to write one name.
pub(crate) enum Plan {
    /// The root name: its one octet.
    Root,
    /// The first name with a label: written whole, remembered as [`FIRST_NAME`].
    First,
    /// The same name as the first: a pointer to it.
    PointToFirst,
    /// Through the table: labels `0..found.unmatched` whole (their starts in
    /// `labels`, `None` when the whole name matched), then a pointer to
    /// `found.entry`, or the root label if nothing matched.
    Table { labels: Option<LabelStarts>, found: Match },
}

impl Plan {
    /// The entry of the whole name if it is already in the message.
    pub(crate) fn existing_entry(&self) -> Option<u16> {
        match self {
            Self::PointToFirst => Some(FIRST_NAME),
            Self::Table { found, .. } if found.unmatched == 0 && found.entry != ROOT_PARENT => Some(found.entry),
            _ => None,
        }
    }
}

/// Where each label of a flat name starts.
pub(crate) struct LabelStarts {
    starts: [u8; MAX_LABELS],
    count: usize,
}

impl LabelStarts {
    fn of(flat: &[u8]) -> Self {
        let mut labels = Self { starts: [0; MAX_LABELS], count: 0 };
        let mut position = 0usize;
        while let Some(&len) = flat.get(position) {
            if len == 0 {
                break;
            }
            let Some(start) = labels.starts.get_mut(labels.count) else { break };
            *start = position as u8;
            labels.count += 1;
            position += 1 + usize::from(len);
        }
        labels
    }

    /// Where label `index` (its length octet) starts in the flat name.
    pub(crate) fn start(&self, index: usize) -> usize {
        usize::from(self.starts.get(index).copied().unwrap_or_default())
    }

    /// Label `index` of `flat`, without its length octet.
    fn label<'f>(&self, flat: &'f [u8], index: usize) -> &'f [u8] {
        let start = self.start(index);
        let len = usize::from(flat.get(start).copied().unwrap_or_default());
        flat.get(start + 1..start + 1 + len).unwrap_or(&[])
    }
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

/// The label whose length octet is at `offset` of `message`.
fn label_at(message: &[u8], offset: usize) -> &[u8] {
    let len = usize::from(message.get(offset).copied().unwrap_or_default());
    message.get(offset + 1..offset + 1 + len).unwrap_or(&[])
}

/// Labels already written, linked to their parents, and indexed by (parent,
/// label) so a lookup costs one hash probe per label of the new name.
struct Table {
    entries: [Entry; COMPRESSION_ENTRIES],
    len: usize,
    /// Entry index + 1 by hash; 0 is an empty slot.
    index: [u8; INDEX_SLOTS],
    recent: [Recent; RECENT_NAMES],
    next_recent: usize,
}

impl Table {
    fn new() -> Self {
        Self {
            entries: [Entry::default(); COMPRESSION_ENTRIES],
            len: 0,
            index: [0; INDEX_SLOTS],
            recent: [Recent { flat: [0; RECENT_NAME_LEN], len: 0, entry: ROOT_PARENT }; RECENT_NAMES],
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
                self.insert_index(entry.parent, label_at(message, usize::from(entry.offset)), position);
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
            if entry.parent == parent && label_at(message, usize::from(entry.offset)) == label {
                return Some(position as u16);
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
            match self.find(message, found.entry, labels.label(flat, index)) {
                Some(position) => found = Match { unmatched: index, entry: position },
                None => break,
            }
        }
        found
    }

    /// Record the labels `0..found.unmatched` just written at `name_start`;
    /// returns the entry of the whole name, if it has one.
    fn add(&mut self, name_start: usize, flat: &[u8], labels: &LabelStarts, found: Match) -> u16 {
        let mut parent = found.entry;
        for index in (0..found.unmatched).rev() {
            let offset = name_start + labels.start(index);
            if self.len >= COMPRESSION_ENTRIES || offset >= POINTER_RANGE {
                return ROOT_PARENT;
            }
            let position = self.len;
            if let Some(slot) = self.entries.get_mut(position) {
                *slot = Entry { offset: offset as u16, parent };
            }
            self.insert_index(parent, labels.label(flat, index), position);
            parent = position as u16;
            self.len += 1;
        }
        parent
    }
}

/// A message's name compression: the first name, and the table once needed.
pub(crate) struct Compressor {
    /// The first name with a label: where it starts and its length (it is
    /// written whole, so its bytes are its flat form).
    first: Option<(u16, u8)>,
    /// The first name's entry once the table exists.
    first_entry: u16,
    /// Boxed: most messages never need it, and a builder that carried its
    /// 664 bytes inline copied them with every move (three per local answer).
    table: Option<Box<Table>>,
}

impl Compressor {
    pub(crate) fn new() -> Self {
        Self { first: None, first_entry: ROOT_PARENT, table: None }
    }

    /// How to write `flat` at `name_start` of `message` (the bytes written so
    /// far), pointing at names already written when `compress` is set.
    #[inline]
    pub(crate) fn plan(&mut self, message: &[u8], name_start: usize, flat: &[u8], compress: bool) -> Plan {
        if flat.len() <= 1 {
            return Plan::Root;
        }
        if self.table.is_none() {
            match self.first {
                None if name_start < POINTER_RANGE => {
                    self.first = Some((name_start as u16, flat.len() as u8));
                    return Plan::First;
                }
                Some((offset, len))
                    if compress
                        && usize::from(len) == flat.len()
                        && message.get(usize::from(offset)..usize::from(offset) + flat.len()) == Some(flat) =>
                {
                    return Plan::PointToFirst;
                }
                _ => self.make_table(message),
            }
        }
        let table = self.table.get_or_insert_with(|| Box::new(Table::new()));
        if compress && let Some(entry) = table.recent(flat) {
            return Plan::Table { labels: None, found: Match { unmatched: 0, entry } };
        }
        let labels = LabelStarts::of(flat);
        let found = if compress {
            table.lookup(message, flat, &labels)
        } else {
            Match { unmatched: labels.count, entry: ROOT_PARENT }
        };
        Plan::Table { labels: Some(labels), found }
    }

    /// Make the table and enter the first name's labels, as if the table had
    /// been there when it was written.
    #[cold]
    fn make_table(&mut self, message: &[u8]) {
        let mut table = Box::new(Table::new());
        if let Some((offset, len)) = self.first {
            let start = usize::from(offset);
            let flat = message.get(start..start + usize::from(len)).unwrap_or(&[]);
            let labels = LabelStarts::of(flat);
            let entry = table.add(start, flat, &labels, Match { unmatched: labels.count, entry: ROOT_PARENT });
            if flat.len() <= RECENT_NAME_LEN {
                table.remember(flat, entry);
            }
            self.first_entry = entry;
        }
        self.table = Some(table);
    }

    /// Whether no table was needed so far.
    #[cfg(test)]
    pub(crate) fn has_no_table(&self) -> bool {
        self.table.is_none()
    }

    /// Where the first name was written, and its length.
    #[cfg(test)]
    pub(crate) fn first_name(&self) -> Option<(u16, u8)> {
        self.first
    }

    /// Where a pointer to `entry` points.
    pub(crate) fn target(&self, entry: u16) -> u16 {
        match (entry, self.first, &self.table) {
            (FIRST_NAME, Some((offset, _)), _) => offset,
            (_, _, Some(table)) => table.entries.get(usize::from(entry)).map_or(0, |entry| entry.offset),
            _ => 0,
        }
    }

    /// Record a name just written at `name_start` by a table plan; returns
    /// the entry of the whole name.
    pub(crate) fn add(&mut self, name_start: usize, flat: &[u8], labels: &LabelStarts, found: Match) -> u16 {
        let Some(table) = &mut self.table else { return ROOT_PARENT };
        let entry = table.add(name_start, flat, labels, found);
        if flat.len() <= RECENT_NAME_LEN {
            table.remember(flat, entry);
        }
        entry
    }

    /// Whether two entries name the same written name ([`FIRST_NAME`] is the
    /// first name's table entry once there is a table).
    pub(crate) fn same_entry(&self, a: u16, b: u16) -> bool {
        let resolve = |entry| if entry == FIRST_NAME && self.table.is_some() { self.first_entry } else { entry };
        resolve(a) == resolve(b)
    }

    /// Forget every name written at or after `offset` (the message was cut there).
    pub(crate) fn forget_from(&mut self, offset: usize, message: &[u8]) {
        if self.first.is_some_and(|(first, _)| usize::from(first) >= offset) {
            self.first = None;
            self.first_entry = ROOT_PARENT;
        }
        if let Some(table) = &mut self.table {
            table.forget_from(offset, message);
            if usize::from(self.first_entry) >= table.len {
                self.first_entry = ROOT_PARENT;
            }
        }
    }
}
