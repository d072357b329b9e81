//! Name helpers for lookups that must not allocate: lowercased wire names in
//! stack buffers, label offsets, presentation form for regexes, and a fast
//! hasher for maps keyed by wire names.

use core::hash::{BuildHasherDefault, Hasher};
use std::collections::HashMap;

use signpost_wire::{MAX_LABELS, MAX_NAME_LEN, NameBuf, ToName};

/// A hash map with the [`FxHasher`]: keys come from configuration, never
/// from queries, so flooding is not a concern and speed is.
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The multiply-rotate hash of rustc (`rustc-hash`), eight bytes at a time.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0xf135_7aea_2e62_a9c5;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = self.hash.wrapping_add(word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            for (slot, byte) in word.iter_mut().zip(rest) {
                *slot = *byte;
            }
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash.rotate_left(26)
    }
}

/// A name in lowercased wire form on the stack, with the offsets of its labels.
pub(crate) struct LowerName {
    wire: [u8; MAX_NAME_LEN],
    len: usize,
    /// `starts[i]` is where label `i` (from the left) starts; `starts[count]` is the root.
    starts: [u8; MAX_LABELS + 1],
    count: usize,
}

impl LowerName {
    /// Lowercase `name` (a valid uncompressed wire name).
    pub(crate) fn new(name: &impl ToName) -> Self {
        let mut scratch = [0u8; MAX_NAME_LEN];
        Self::from_flat(name.flat(&mut scratch))
    }

    /// Lowercase a valid uncompressed wire name.
    pub(crate) fn from_flat(flat: &[u8]) -> Self {
        let mut wire = [0u8; MAX_NAME_LEN];
        let len = flat.len().min(MAX_NAME_LEN);
        for (slot, byte) in wire.iter_mut().zip(flat) {
            *slot = byte.to_ascii_lowercase();
        }
        let mut starts = [0u8; MAX_LABELS + 1];
        let mut count = 0;
        let mut position = 0usize;
        while let Some(&label_len) = wire.get(position) {
            if position >= len {
                break;
            }
            if let Some(slot) = starts.get_mut(count) {
                *slot = position as u8;
            }
            if label_len == 0 || count >= MAX_LABELS {
                break;
            }
            count += 1;
            position += 1 + usize::from(label_len);
        }
        Self { wire, len, starts, count }
    }

    /// The whole name.
    pub(crate) fn as_wire(&self) -> &[u8] {
        self.wire.get(..self.len).unwrap_or(&[])
    }

    /// Number of labels, root excluded.
    pub(crate) fn label_count(&self) -> usize {
        self.count
    }

    /// The suffix made of the last `labels` labels (0 gives the root).
    pub(crate) fn suffix(&self, labels: usize) -> &[u8] {
        let index = self.count.saturating_sub(labels);
        let start = usize::from(self.starts.get(index).copied().unwrap_or(0));
        self.wire.get(start..self.len).unwrap_or(&[])
    }

    /// Write the presentation form without the trailing dot (the root is
    /// `.`) into `out`, returning it. Escapes follow signpost-wire's.
    pub(crate) fn presentation<'b>(&self, out: &'b mut [u8; 4 * MAX_NAME_LEN]) -> &'b str {
        let mut len = 0usize;
        let mut push = |byte: u8| {
            if let Some(slot) = out.get_mut(len) {
                *slot = byte;
                len += 1;
            }
        };
        if self.count == 0 {
            push(b'.');
        }
        for index in 0..self.count {
            if index > 0 {
                push(b'.');
            }
            let start = usize::from(self.starts.get(index).copied().unwrap_or(0));
            let label_len = usize::from(self.wire.get(start).copied().unwrap_or(0));
            for &byte in self.wire.get(start + 1..start + 1 + label_len).unwrap_or(&[]) {
                let special = matches!(byte, b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$');
                if byte.is_ascii_graphic() && !special {
                    push(byte);
                } else if byte.is_ascii_graphic() {
                    push(b'\\');
                    push(byte);
                } else {
                    push(b'\\');
                    push(b'0' + byte / 100);
                    push(b'0' + byte / 10 % 10);
                    push(b'0' + byte % 10);
                }
            }
        }
        // Everything written is ASCII.
        core::str::from_utf8(out.get(..len).unwrap_or(&[])).unwrap_or_default()
    }
}

/// The lowercased wire form of a name, as map keys hold it.
pub(crate) fn key_of(name: &NameBuf) -> Box<[u8]> {
    name.to_lowercase().as_wire().into()
}

/// Key bytes kept inside a table entry; longer keys live in the arena.
const INLINE_KEY: usize = 31;

/// A hash table from lowercased wire names to small values, laid out for
/// lookups that touch as little memory as possible: a slot array of
/// (tag, entry) pairs, so most misses stop at the slot, and entries that
/// hold their key inline (names up to 31 octets), so a hit reads one slot
/// and one entry. Built once, never changed.
#[derive(Clone, Debug)]
pub(crate) struct NameTable<V> {
    slots: Box<[TableSlot]>,
    mask: usize,
    entries: Box<[TableEntry<V>]>,
    arena: Box<[u8]>,
}

#[derive(Clone, Copy, Debug)]
struct TableSlot {
    tag: u32,
    /// Index in `entries`, or `u32::MAX` for an empty slot.
    entry: u32,
}

const EMPTY_SLOT: TableSlot = TableSlot { tag: 0, entry: u32::MAX };

#[derive(Clone, Debug)]
struct TableEntry<V> {
    value: V,
    len: u8,
    /// The key itself, or for longer keys its offset in the arena (little-endian u32).
    key: [u8; INLINE_KEY],
}

impl<V> Default for NameTable<V> {
    fn default() -> Self {
        Self { slots: Box::new([EMPTY_SLOT]), mask: 0, entries: Box::new([]), arena: Box::new([]) }
    }
}

impl<V> NameTable<V> {
    /// A table of these keys (each a lowercased wire name, at most 255 octets, no duplicates).
    pub(crate) fn new(pairs: impl IntoIterator<Item = (Box<[u8]>, V)>) -> Self {
        let mut entries = Vec::new();
        let mut arena = Vec::new();
        let mut hashes = Vec::new();
        for (key, value) in pairs {
            let mut inline = [0u8; INLINE_KEY];
            if key.len() <= INLINE_KEY {
                if let Some(head) = inline.get_mut(..key.len()) {
                    head.copy_from_slice(&key);
                }
            } else {
                let offset = (arena.len() as u32).to_le_bytes();
                if let Some(head) = inline.get_mut(..4) {
                    head.copy_from_slice(&offset);
                }
                arena.extend_from_slice(&key);
            }
            hashes.push(hash_key(&key));
            entries.push(TableEntry { value, len: key.len().min(usize::from(u8::MAX)) as u8, key: inline });
        }
        let capacity = (entries.len() * 2).next_power_of_two().max(8);
        let mask = capacity - 1;
        let mut slots = vec![EMPTY_SLOT; capacity];
        for (index, hash) in hashes.into_iter().enumerate() {
            let mut position = hash as usize & mask;
            while slots.get(position).is_some_and(|slot| slot.entry != u32::MAX) {
                position = (position + 1) & mask;
            }
            if let Some(slot) = slots.get_mut(position) {
                *slot = TableSlot { tag: (hash >> 32) as u32, entry: index as u32 };
            }
        }
        Self { slots: slots.into(), mask, entries: entries.into(), arena: arena.into() }
    }

    fn key_of<'a>(&'a self, entry: &'a TableEntry<V>) -> &'a [u8] {
        let len = usize::from(entry.len);
        if len <= INLINE_KEY {
            return entry.key.get(..len).unwrap_or(&[]);
        }
        let mut offset = [0u8; 4];
        offset.copy_from_slice(entry.key.get(..4).unwrap_or(&[0; 4]));
        let start = u32::from_le_bytes(offset) as usize;
        self.arena.get(start..start + len).unwrap_or(&[])
    }

    /// The value of a key.
    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<&V> {
        let hash = hash_key(key);
        let tag = (hash >> 32) as u32;
        let mut position = hash as usize & self.mask;
        loop {
            let slot = self.slots.get(position)?;
            if slot.entry == u32::MAX {
                return None;
            }
            if slot.tag == tag
                && let Some(entry) = self.entries.get(slot.entry as usize)
                && usize::from(entry.len) == key.len()
                && self.key_of(entry) == key
            {
                return Some(&entry.value);
            }
            position = (position + 1) & self.mask;
        }
    }

    /// Every key and value.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.entries.iter().map(|entry| (self.key_of(entry), &entry.value))
    }
}

fn hash_key(key: &[u8]) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write(key);
    // Spread the high bits, which the multiply mixes best, into the index bits.
    let hash = hasher.finish();
    hash ^ (hash >> 29)
}

/// A set of label counts (0 to 127), to skip probes that cannot hit.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct DepthSet([u64; 2]);

impl DepthSet {
    pub(crate) fn insert(&mut self, depth: usize) {
        if let Some(word) = self.0.get_mut(depth / 64) {
            *word |= 1 << (depth % 64);
        }
    }

    pub(crate) fn contains(&self, depth: usize) -> bool {
        self.0.get(depth / 64).is_some_and(|word| word & (1 << (depth % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::name;
    use core::hash::{BuildHasher, Hash};

    /// The hash reads a message's bytes as little-endian words, the last
    /// one zero-padded and marked with its length: checked against that
    /// definition written out plainly, for every tail length.
    #[test]
    fn the_hash_reads_words_little_endian_with_a_marked_tail() {
        fn reference(bytes: &[u8]) -> u64 {
            let mut hash = 0u64;
            let mut add = |word: u64| hash = hash.wrapping_add(word).wrapping_mul(FX_SEED);
            for chunk in bytes.chunks(8) {
                let mut word = [0u8; 8];
                word[..chunk.len()].copy_from_slice(chunk);
                let mark = if chunk.len() < 8 { (chunk.len() as u64) << 59 } else { 0 };
                add(u64::from_le_bytes(word) ^ mark);
            }
            hash.rotate_left(26)
        }
        let bytes: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(151).wrapping_add(7)).collect();
        for len in 0..=bytes.len() {
            let mut hasher = FxHasher::default();
            hasher.write(&bytes[..len]);
            assert_eq!(hasher.finish(), reference(&bytes[..len]), "{len} bytes");
        }
    }

    #[test]
    fn suffixes_follow_label_boundaries() {
        let lower = LowerName::new(&name("WWW.Example.COM."));
        assert_eq!(lower.label_count(), 3);
        assert_eq!(lower.as_wire(), b"\x03www\x07example\x03com\x00");
        assert_eq!(lower.suffix(3), lower.as_wire());
        assert_eq!(lower.suffix(2), b"\x07example\x03com\x00");
        assert_eq!(lower.suffix(1), b"\x03com\x00");
        assert_eq!(lower.suffix(0), b"\x00");
        let root = LowerName::new(&NameBuf::root());
        assert_eq!(root.label_count(), 0);
        assert_eq!(root.suffix(0), b"\x00");
    }

    #[test]
    fn presentation_matches_the_wire_crate_without_the_dot() {
        let mut out = [0u8; 4 * MAX_NAME_LEN];
        for text in ["www.example.com.", "a\\.b.example.", "\\000\\255bin.", "sp\\032ace.x.", "semi\\;colon."] {
            let parsed = name(text);
            let lower = LowerName::new(&parsed);
            assert_eq!(lower.presentation(&mut out), parsed.to_lowercase().to_relative_string(), "{text}");
        }
        assert_eq!(LowerName::new(&NameBuf::root()).presentation(&mut out), ".");
    }

    #[test]
    fn fx_hash_agrees_for_boxed_and_borrowed_keys() {
        let build = BuildHasherDefault::<FxHasher>::default();
        let boxed: Box<[u8]> = b"\x03com\x00".to_vec().into();
        let borrowed: &[u8] = b"\x03com\x00";
        assert_eq!(build.hash_one(&boxed), build.hash_one(borrowed));
        assert_ne!(build.hash_one(b"\x03com\x00" as &[u8]), build.hash_one(b"\x03org\x00" as &[u8]));
        let mut hasher = FxHasher::default();
        b"".hash(&mut hasher);
        let _ = hasher.finish();
    }

    #[test]
    fn name_tables_find_short_and_long_keys() {
        let long = name(&format!("{}.example.", "x".repeat(60)));
        let keys: Vec<NameBuf> = (0..100).map(|i| name(&format!("host{i}.example."))).chain([long.clone()]).collect();
        let table = NameTable::new(keys.iter().enumerate().map(|(i, k)| (key_of(k), i)));
        for (index, key) in keys.iter().enumerate() {
            assert_eq!(table.get(&key_of(key)), Some(&index));
        }
        assert_eq!(table.get(&key_of(&long)), Some(&100));
        assert_eq!(table.get(b"\x04none\x07example\x00"), None);
        assert_eq!(table.get(b""), None);
        assert_eq!(table.iter().count(), 101);
        let empty: NameTable<u8> = NameTable::default();
        assert_eq!(empty.get(b"\x00"), None);
    }

    #[test]
    fn depth_sets_hold_0_to_127() {
        let mut set = DepthSet::default();
        assert!(!set.contains(0));
        set.insert(0);
        set.insert(127);
        set.insert(64);
        assert!(set.contains(0) && set.contains(64) && set.contains(127));
        assert!(!set.contains(1) && !set.contains(63) && !set.contains(128));
    }
}
