//! Record data of the DNSSEC types (RFC 4034, RFC 5155), read from wire bytes.
//!
//! The codec keeps these types as opaque bytes (their names are never
//! compressed, RFC 3597 §4), so they are read here from `Record::raw_data`.

use signpost_wire::{NameBuf, RecordType};

use crate::Error;

/// DNSKEY flag: the key is a zone key (RFC 4034 §2.1.1).
pub const FLAG_ZONE: u16 = 0x0100;
/// DNSKEY flag: the key is revoked (RFC 5011 §3).
pub const FLAG_REVOKE: u16 = 0x0080;
/// DNSKEY flag: secure entry point (RFC 4034 §2.1.1).
pub const FLAG_SEP: u16 = 0x0001;

fn malformed(rtype: RecordType, rule: &'static str) -> Error {
    Error::MalformedRdata { rtype, rule }
}

/// A bounds-checked cursor over RDATA.
struct Cursor<'a> {
    bytes: &'a [u8],
    rtype: RecordType,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], Error> {
        let Some((head, tail)) = self.bytes.split_at_checked(len) else {
            return Err(malformed(self.rtype, "shorter than its fields"));
        };
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        let [byte] = self.take(1)? else { return Err(malformed(self.rtype, "shorter than its fields")) };
        Ok(*byte)
    }

    fn u16(&mut self) -> Result<u16, Error> {
        let [a, b] = self.take(2)? else { return Err(malformed(self.rtype, "shorter than its fields")) };
        Ok(u16::from_be_bytes([*a, *b]))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        let [a, b, c, d] = self.take(4)? else { return Err(malformed(self.rtype, "shorter than its fields")) };
        Ok(u32::from_be_bytes([*a, *b, *c, *d]))
    }

    /// An uncompressed name.
    fn name(&mut self) -> Result<NameBuf, Error> {
        let mut len = 0;
        loop {
            let Some(&label) = self.bytes.get(len) else {
                return Err(malformed(self.rtype, "name runs past the RDATA"));
            };
            if label & 0xC0 != 0 {
                return Err(malformed(self.rtype, "compressed name in DNSSEC RDATA"));
            }
            len += 1 + usize::from(label);
            if label == 0 {
                break;
            }
        }
        let wire = self.take(len)?;
        Ok(NameBuf::from_wire(wire)?)
    }

    fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.bytes)
    }
}

/// DNSKEY record data (RFC 4034 §2).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Dnskey {
    /// Flags: zone key, SEP, revoke.
    pub flags: u16,
    /// Always 3.
    pub protocol: u8,
    /// DNSSEC algorithm number.
    pub algorithm: u8,
    /// The public key in the algorithm's format.
    pub public_key: Vec<u8>,
}

impl Dnskey {
    /// Read DNSKEY RDATA.
    pub fn parse(rdata: &[u8]) -> Result<Self, Error> {
        let mut cursor = Cursor { bytes: rdata, rtype: RecordType::DNSKEY };
        let flags = cursor.u16()?;
        let protocol = cursor.u8()?;
        let algorithm = cursor.u8()?;
        let public_key = cursor.rest().to_vec();
        if public_key.is_empty() {
            return Err(malformed(RecordType::DNSKEY, "empty public key"));
        }
        Ok(Self { flags, protocol, algorithm, public_key })
    }

    /// The RDATA in wire form.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.public_key.len());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.push(self.protocol);
        out.push(self.algorithm);
        out.extend_from_slice(&self.public_key);
        out
    }

    /// Whether the key may verify zone data: zone bit set, not revoked, protocol 3.
    pub fn is_usable_zone_key(&self) -> bool {
        self.flags & FLAG_ZONE != 0 && self.flags & FLAG_REVOKE == 0 && self.protocol == 3
    }

    /// The key tag (RFC 4034 Appendix B).
    pub fn key_tag(&self) -> u16 {
        key_tag(&self.to_wire(), self.algorithm)
    }
}

/// The key tag of DNSKEY RDATA (RFC 4034 Appendix B, with the algorithm 1 special case).
pub fn key_tag(rdata: &[u8], algorithm: u8) -> u16 {
    if algorithm == 1 {
        // RSA/MD5: the third-last and second-last octets of the modulus.
        let len = rdata.len();
        return match (len.checked_sub(3).and_then(|i| rdata.get(i)), len.checked_sub(2).and_then(|i| rdata.get(i))) {
            (Some(&high), Some(&low)) => u16::from_be_bytes([high, low]),
            _ => 0,
        };
    }
    let mut sum: u32 = 0;
    for (index, &byte) in rdata.iter().enumerate() {
        sum += if index & 1 == 0 { u32::from(byte) << 8 } else { u32::from(byte) };
    }
    sum += (sum >> 16) & 0xFFFF;
    (sum & 0xFFFF) as u16
}

/// DS record data (RFC 4034 §5).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Ds {
    /// Key tag of the DNSKEY it points at.
    pub key_tag: u16,
    /// That DNSKEY's algorithm.
    pub algorithm: u8,
    /// Digest algorithm: 1 SHA-1, 2 SHA-256, 4 SHA-384.
    pub digest_type: u8,
    /// The digest over owner name and DNSKEY RDATA.
    pub digest: Vec<u8>,
}

impl Ds {
    /// Read DS RDATA.
    pub fn parse(rdata: &[u8]) -> Result<Self, Error> {
        let mut cursor = Cursor { bytes: rdata, rtype: RecordType::DS };
        let key_tag = cursor.u16()?;
        let algorithm = cursor.u8()?;
        let digest_type = cursor.u8()?;
        let digest = cursor.rest().to_vec();
        if digest.is_empty() {
            return Err(malformed(RecordType::DS, "empty digest"));
        }
        Ok(Self { key_tag, algorithm, digest_type, digest })
    }
}

/// RRSIG record data (RFC 4034 §3).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Rrsig {
    /// The type of the RRset it signs.
    pub type_covered: RecordType,
    /// DNSSEC algorithm number.
    pub algorithm: u8,
    /// Labels of the original owner name, without the root and a leading `*`.
    pub labels: u8,
    /// TTL of the RRset as signed.
    pub original_ttl: u32,
    /// End of validity, seconds since the epoch modulo 2^32.
    pub expiration: u32,
    /// Start of validity, seconds since the epoch modulo 2^32.
    pub inception: u32,
    /// Key tag of the signing key.
    pub key_tag: u16,
    /// The zone that signed.
    pub signer: NameBuf,
    /// The signature.
    pub signature: Vec<u8>,
}

impl Rrsig {
    /// Read RRSIG RDATA.
    pub fn parse(rdata: &[u8]) -> Result<Self, Error> {
        let mut cursor = Cursor { bytes: rdata, rtype: RecordType::RRSIG };
        let type_covered = RecordType(cursor.u16()?);
        let algorithm = cursor.u8()?;
        let labels = cursor.u8()?;
        let original_ttl = cursor.u32()?;
        let expiration = cursor.u32()?;
        let inception = cursor.u32()?;
        let key_tag = cursor.u16()?;
        let signer = cursor.name()?;
        let signature = cursor.rest().to_vec();
        if signature.is_empty() {
            return Err(malformed(RecordType::RRSIG, "empty signature"));
        }
        Ok(Self { type_covered, algorithm, labels, original_ttl, expiration, inception, key_tag, signer, signature })
    }

    /// The RRSIG RDATA without the signature, signer name lowercased: the
    /// first part of the signed data (RFC 4034 §3.1.8.1).
    pub fn signed_prefix(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(18 + self.signer.wire_len());
        out.extend_from_slice(&self.type_covered.0.to_be_bytes());
        out.push(self.algorithm);
        out.push(self.labels);
        out.extend_from_slice(&self.original_ttl.to_be_bytes());
        out.extend_from_slice(&self.expiration.to_be_bytes());
        out.extend_from_slice(&self.inception.to_be_bytes());
        out.extend_from_slice(&self.key_tag.to_be_bytes());
        out.extend_from_slice(self.signer.to_lowercase().as_wire());
        out
    }
}

/// The type bitmap of NSEC and NSEC3 records (RFC 4034 §4.1.2).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct TypeBitmap(Vec<u8>);

impl TypeBitmap {
    /// Check and keep a bitmap in wire form.
    fn parse(bytes: &[u8], rtype: RecordType) -> Result<Self, Error> {
        let mut rest = bytes;
        let mut last_window: Option<u8> = None;
        while let [window, len, tail @ ..] = rest {
            if *len == 0 || *len > 32 {
                return Err(malformed(rtype, "type bitmap window length must be 1 to 32"));
            }
            if last_window.is_some_and(|last| last >= *window) {
                return Err(malformed(rtype, "type bitmap windows out of order"));
            }
            last_window = Some(*window);
            let Some(after) = tail.get(usize::from(*len)..) else {
                return Err(malformed(rtype, "type bitmap window runs past the RDATA"));
            };
            rest = after;
        }
        if !rest.is_empty() {
            return Err(malformed(rtype, "type bitmap ends inside a window header"));
        }
        Ok(Self(bytes.to_vec()))
    }

    /// Whether `rtype` is set.
    pub fn contains(&self, rtype: RecordType) -> bool {
        let [high, low] = rtype.0.to_be_bytes();
        let mut rest = self.0.as_slice();
        while let [window, len, tail @ ..] = rest {
            let len = usize::from(*len);
            if *window == high {
                let index = usize::from(low / 8);
                return index < len && tail.get(index).is_some_and(|byte| byte & (0x80 >> (low % 8)) != 0);
            }
            rest = tail.get(len..).unwrap_or(&[]);
        }
        false
    }

    /// The bitmap in wire form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Build a bitmap from types (for tests and fixtures).
    pub fn from_types(types: &[RecordType]) -> Self {
        let mut sorted: Vec<u16> = types.iter().map(|t| t.0).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut out = Vec::new();
        let mut index = 0;
        while let Some(&first) = sorted.get(index) {
            let window = (first >> 8) as u8;
            let mut bits = [0u8; 32];
            let mut used = 0;
            while let Some(&value) = sorted.get(index) {
                if (value >> 8) as u8 != window {
                    break;
                }
                let low = (value & 0xFF) as u8;
                if let Some(byte) = bits.get_mut(usize::from(low / 8)) {
                    *byte |= 0x80 >> (low % 8);
                }
                used = used.max(usize::from(low / 8) + 1);
                index += 1;
            }
            out.push(window);
            out.push(used as u8);
            out.extend_from_slice(bits.get(..used).unwrap_or(&[]));
        }
        Self(out)
    }
}

/// NSEC record data (RFC 4034 §4).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Nsec {
    /// The next owner name in canonical order.
    pub next: NameBuf,
    /// Types present at the owner.
    pub types: TypeBitmap,
}

impl Nsec {
    /// Read NSEC RDATA.
    pub fn parse(rdata: &[u8]) -> Result<Self, Error> {
        let mut cursor = Cursor { bytes: rdata, rtype: RecordType::NSEC };
        let next = cursor.name()?;
        let types = TypeBitmap::parse(cursor.rest(), RecordType::NSEC)?;
        Ok(Self { next, types })
    }
}

/// NSEC3 flag: opt-out (RFC 5155 §3.1.2.1).
pub const NSEC3_OPT_OUT: u8 = 0x01;

/// NSEC3 record data (RFC 5155 §3).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Nsec3 {
    /// Hash algorithm; 1 is SHA-1, the only one defined.
    pub hash_algorithm: u8,
    /// Flags: opt-out.
    pub flags: u8,
    /// Extra hash iterations.
    pub iterations: u16,
    /// Salt appended before each hash.
    pub salt: Vec<u8>,
    /// The next hashed owner name (raw hash, not base32).
    pub next_hashed: Vec<u8>,
    /// Types present at the original owner.
    pub types: TypeBitmap,
}

impl Nsec3 {
    /// Read NSEC3 RDATA.
    pub fn parse(rdata: &[u8]) -> Result<Self, Error> {
        let mut cursor = Cursor { bytes: rdata, rtype: RecordType::NSEC3 };
        let hash_algorithm = cursor.u8()?;
        let flags = cursor.u8()?;
        let iterations = cursor.u16()?;
        let salt_len = cursor.u8()?;
        let salt = cursor.take(usize::from(salt_len))?.to_vec();
        let hash_len = cursor.u8()?;
        if hash_len == 0 {
            return Err(malformed(RecordType::NSEC3, "empty next hashed owner name"));
        }
        let next_hashed = cursor.take(usize::from(hash_len))?.to_vec();
        let types = TypeBitmap::parse(cursor.rest(), RecordType::NSEC3)?;
        Ok(Self { hash_algorithm, flags, iterations, salt, next_hashed, types })
    }

    /// Whether the opt-out flag is set.
    pub fn opt_out(&self) -> bool {
        self.flags & NSEC3_OPT_OUT != 0
    }
}

/// Decode base32hex without padding (RFC 4648 §7), as NSEC3 owner labels are written.
pub fn base32hex_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in text {
        let value = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'v' => byte - b'a' + 10,
            b'A'..=b'V' => byte - b'A' + 10,
            _ => return None,
        };
        buffer = (buffer << 5) | u32::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero padding.
    if buffer != 0 {
        return None;
    }
    Some(out)
}

/// Encode base32hex without padding, lowercase.
pub fn base32hex_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bitmap_membership() {
        let bitmap = TypeBitmap::from_types(&[RecordType::A, RecordType::NS, RecordType::RRSIG, RecordType(1234)]);
        assert!(bitmap.contains(RecordType::A));
        assert!(bitmap.contains(RecordType::NS));
        assert!(bitmap.contains(RecordType::RRSIG));
        assert!(bitmap.contains(RecordType(1234)));
        assert!(!bitmap.contains(RecordType::AAAA));
        assert!(!bitmap.contains(RecordType::DS));
        assert!(TypeBitmap::parse(&bitmap.0, RecordType::NSEC).is_ok());
    }

    #[test]
    fn bitmap_rejects_bad_windows() {
        assert!(TypeBitmap::parse(&[0, 0], RecordType::NSEC).is_err());
        assert!(TypeBitmap::parse(&[0, 33], RecordType::NSEC).is_err());
        assert!(TypeBitmap::parse(&[1, 1, 0, 0, 1, 0], RecordType::NSEC).is_err());
        assert!(TypeBitmap::parse(&[0, 2, 0], RecordType::NSEC).is_err());
        assert!(TypeBitmap::parse(&[0], RecordType::NSEC).is_err());
    }

    #[test]
    fn root_ksk_2017_key_tag_is_20326() {
        // The DS of the root KSK-2017 from IANA's root-anchors.xml names key tag 20326;
        // the key below is that KSK.
        let key = crate::anchor::root_ksk_2017();
        assert_eq!(key.key_tag(), 20326);
    }

    #[test]
    fn base32hex_known_values() {
        // RFC 5155 Appendix A: H(example) = 0p9mhaveqvm6t7vbl5lop2u3t2rp3tom.
        let decoded = base32hex_decode(b"0p9mhaveqvm6t7vbl5lop2u3t2rp3tom").expect("valid");
        assert_eq!(decoded.len(), 20);
        assert_eq!(base32hex_encode(&decoded), "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom");
        assert!(base32hex_decode(b"w").is_none());
    }

    proptest! {
        #[test]
        fn base32hex_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(base32hex_decode(base32hex_encode(&bytes).as_bytes()), Some(bytes));
        }

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Dnskey::parse(&bytes);
            let _ = Ds::parse(&bytes);
            let _ = Rrsig::parse(&bytes);
            let _ = Nsec::parse(&bytes);
            let _ = Nsec3::parse(&bytes);
        }

        #[test]
        fn bitmap_from_types_reads_back(types in proptest::collection::vec(any::<u16>(), 0..20)) {
            let types: Vec<RecordType> = types.into_iter().map(RecordType).collect();
            let bitmap = TypeBitmap::from_types(&types);
            prop_assert!(TypeBitmap::parse(&bitmap.0, RecordType::NSEC).is_ok());
            for rtype in &types {
                prop_assert!(bitmap.contains(*rtype));
            }
        }
    }
}
