//! RRsets in canonical form (RFC 4034 §6) and their signatures.

use signpost_wire::{Class, Message, NameBuf, Record, RecordData, RecordType, Section};

use crate::Error;
use crate::crypto;
use crate::records::{Dnskey, Rrsig};

/// One RRset read from a message: owner, type, class, the smallest TTL,
/// each RDATA in canonical form (sorted, duplicates removed), and the RRSIGs
/// that cover it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rrset {
    /// The owner as received.
    pub owner: NameBuf,
    /// The type.
    pub rtype: RecordType,
    /// The class.
    pub class: Class,
    /// The smallest TTL of the records.
    pub ttl: u32,
    /// Canonical RDATA, sorted, without duplicates.
    pub rdata: Vec<Vec<u8>>,
    /// RRSIGs over this RRset (record TTL, data).
    pub signatures: Vec<(u32, Rrsig)>,
}

/// Types whose RDATA names are lowercased in canonical form (RFC 4034 §6.2
/// item 3 as RFC 6840 §5.1 corrects it: not NSEC), among those the codec reads.
fn lowercases_names(rtype: RecordType) -> bool {
    matches!(
        rtype,
        RecordType::NS
            | RecordType::CNAME
            | RecordType::SOA
            | RecordType::PTR
            | RecordType::MX
            | RecordType::SRV
            | RecordType::NAPTR
            | RecordType::DNAME
    )
}

/// The canonical RDATA of a record: names decompressed, and lowercased for
/// the types that call for it. Types the codec does not know are taken byte
/// for byte (their names are never compressed, RFC 3597 §4).
pub fn canonical_rdata(record: &Record<'_>) -> Result<Vec<u8>, Error> {
    let data = record.data()?;
    Ok(match data {
        RecordData::Unknown(_) => record.raw_data().to_vec(),
        _ => {
            let lower = lowercases_names(record.rtype());
            data.map(
                |name| if lower { name.to_name_buf().to_lowercase() } else { name.to_name_buf() },
                |bytes| bytes.to_vec(),
            )
            .to_wire()
        }
    })
}

/// Group the records of `section` into RRsets with their RRSIGs attached.
/// RRSIGs whose covered RRset is absent are kept as RRsets of their own type
/// so a caller can see them.
pub fn rrsets(message: &Message<'_>, section: Section) -> Result<Vec<Rrset>, Error> {
    let mut sets: Vec<Rrset> = Vec::new();
    let mut signatures: Vec<(NameBuf, u32, Rrsig)> = Vec::new();
    for record in message.section(section)? {
        let record = record?;
        if record.rtype() == RecordType::OPT {
            continue;
        }
        let owner = record.name().to_name_buf();
        if record.rtype() == RecordType::RRSIG {
            signatures.push((owner, record.ttl(), Rrsig::parse(record.raw_data())?));
            continue;
        }
        let rdata = canonical_rdata(&record)?;
        match sets
            .iter_mut()
            .find(|set| set.rtype == record.rtype() && set.class == record.class() && set.owner == owner)
        {
            Some(set) => {
                set.ttl = set.ttl.min(record.ttl());
                set.rdata.push(rdata);
            }
            None => sets.push(Rrset {
                owner,
                rtype: record.rtype(),
                class: record.class(),
                ttl: record.ttl(),
                rdata: vec![rdata],
                signatures: Vec::new(),
            }),
        }
    }
    for set in &mut sets {
        set.rdata.sort();
        set.rdata.dedup();
    }
    for (owner, ttl, rrsig) in signatures {
        match sets.iter_mut().find(|set| set.rtype == rrsig.type_covered && set.owner == owner) {
            Some(set) => set.signatures.push((ttl, rrsig)),
            None => {
                // A signature without its RRset: kept so callers can report it.
                let rdata = Vec::new();
                sets.push(Rrset {
                    owner,
                    rtype: RecordType::RRSIG,
                    class: Class::IN,
                    ttl,
                    rdata: vec![rdata],
                    signatures: vec![(ttl, rrsig)],
                });
            }
        }
    }
    Ok(sets)
}

/// The data an RRSIG signs over an RRset (RFC 4034 §3.1.8.1, RFC 4035
/// §5.3.2): the RRSIG fields, then each record in canonical form and order
/// with the original TTL, the owner replaced by the wildcard when the RRSIG's
/// label count is smaller. `None` when the label count exceeds the owner's.
pub fn signed_data(rrset: &Rrset, rrsig: &Rrsig) -> Option<Vec<u8>> {
    let mut owner = rrset.owner.to_lowercase();
    let labels = usize::from(rrsig.labels);
    let count = owner.label_count();
    if labels > count {
        return None;
    }
    if labels < count {
        while owner.label_count() > labels {
            owner = owner.parent()?;
        }
        owner = owner.prepend(b"*").ok()?;
    }
    let mut data = rrsig.signed_prefix();
    for rdata in &rrset.rdata {
        data.extend_from_slice(owner.as_wire());
        data.extend_from_slice(&rrset.rtype.0.to_be_bytes());
        data.extend_from_slice(&rrset.class.0.to_be_bytes());
        data.extend_from_slice(&rrsig.original_ttl.to_be_bytes());
        data.extend_from_slice(&u16::try_from(rdata.len()).ok()?.to_be_bytes());
        data.extend_from_slice(rdata);
    }
    Some(data)
}

/// Labels of a name for RRSIG purposes: a leading `*` does not count (RFC 4034 §3.1.3).
pub fn rrsig_labels(name: &NameBuf) -> usize {
    let count = name.label_count();
    if name.labels().next() == Some(b"*".as_slice()) { count - 1 } else { count }
}

/// How much a signature's validity window may be off: a tenth of the window,
/// within `[min, max]` seconds (unbound's `val-sig-skew-min` and `-max`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skew {
    /// The least allowance, in seconds.
    pub min: u32,
    /// The greatest allowance, in seconds.
    pub max: u32,
}

impl Default for Skew {
    fn default() -> Self {
        Self { min: 3600, max: 86400 }
    }
}

/// Whether serial number `a` comes at or before `b` (RFC 1982, 32 bits).
fn serial_at_or_before(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) >= 0
}

/// Where `now` lies against a signature's validity window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// Inside; the seconds left before expiration.
    Valid(u32),
    /// Before the inception.
    NotYetValid,
    /// After the expiration.
    Expired,
}

/// Check a signature's window at `now` (seconds since the epoch).
pub fn window(rrsig: &Rrsig, now: u64, skew: Skew) -> Window {
    let now = now as u32; // RRSIG times are modulo 2^32 (RFC 4034 §3.1.5).
    let span = rrsig.expiration.wrapping_sub(rrsig.inception) / 10;
    let allowance = span.clamp(skew.min, skew.max.max(skew.min));
    if !serial_at_or_before(rrsig.inception.wrapping_sub(allowance), now) {
        return Window::NotYetValid;
    }
    if !serial_at_or_before(now, rrsig.expiration.wrapping_add(allowance)) {
        return Window::Expired;
    }
    let left = rrsig.expiration.wrapping_sub(now) as i32;
    Window::Valid(left.max(0) as u32)
}

/// Why no signature over an RRset verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureFailure {
    /// No RRSIG covers the RRset.
    Missing,
    /// RRSIGs exist but none was made by a key of the zone's DNSKEY set.
    NoMatchingKey,
    /// The matching keys do not have the zone bit, or are revoked.
    NoZoneKey,
    /// Only signatures of algorithms this validator does not support.
    UnsupportedAlgorithm,
    /// The best signature has expired.
    Expired,
    /// The best signature is not valid yet.
    NotYetValid,
    /// A signature did not verify.
    Invalid,
    /// The RRSIG's label count is larger than the owner's.
    BadLabels,
}

/// A verified RRset: how long it may be kept and, when it was synthesised
/// from a wildcard, the RRSIG's label count (RFC 4035 §5.3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The TTL the validated data may be kept for: the smallest of the
    /// records' TTL, the original TTL and the time to the signature's expiration.
    pub ttl: u32,
    /// `Some(labels)` when the owner was expanded from a wildcard.
    pub wildcard_labels: Option<u8>,
}

/// Verify `rrset` against the DNSKEYs of `zone`: some RRSIG by `zone`, inside
/// its window, made with a usable zone key of matching tag and algorithm.
pub fn verify_rrset(
    rrset: &Rrset,
    zone: &NameBuf,
    keys: &[Dnskey],
    now: u64,
    skew: Skew,
) -> Result<Verified, SignatureFailure> {
    let mut failure = SignatureFailure::Missing;
    // Later failures only replace earlier ones when they say more.
    let mut note = |new: SignatureFailure| {
        let rank = |f: SignatureFailure| match f {
            SignatureFailure::Missing => 0,
            SignatureFailure::UnsupportedAlgorithm => 1,
            SignatureFailure::NoMatchingKey => 2,
            SignatureFailure::NoZoneKey => 3,
            SignatureFailure::BadLabels => 4,
            SignatureFailure::NotYetValid => 5,
            SignatureFailure::Expired => 6,
            SignatureFailure::Invalid => 7,
        };
        if rank(new) > rank(failure) {
            failure = new;
        }
    };
    if !rrset.owner.is_subdomain_of(zone) {
        return Err(SignatureFailure::NoMatchingKey);
    }
    for (rrsig_ttl, rrsig) in &rrset.signatures {
        if rrsig.type_covered != rrset.rtype || rrsig.signer != *zone {
            note(SignatureFailure::NoMatchingKey);
            continue;
        }
        if !crypto::algorithm_supported(rrsig.algorithm) {
            note(SignatureFailure::UnsupportedAlgorithm);
            continue;
        }
        if usize::from(rrsig.labels) > rrsig_labels(&rrset.owner) {
            note(SignatureFailure::BadLabels);
            continue;
        }
        let left = match window(rrsig, now, skew) {
            Window::Valid(left) => left,
            Window::Expired => {
                note(SignatureFailure::Expired);
                continue;
            }
            Window::NotYetValid => {
                note(SignatureFailure::NotYetValid);
                continue;
            }
        };
        let mut candidates =
            keys.iter().filter(|key| key.algorithm == rrsig.algorithm && key.key_tag() == rrsig.key_tag).peekable();
        if candidates.peek().is_none() {
            note(SignatureFailure::NoMatchingKey);
            continue;
        }
        let Some(data) = signed_data(rrset, rrsig) else {
            note(SignatureFailure::BadLabels);
            continue;
        };
        for key in candidates {
            if !key.is_usable_zone_key() {
                note(SignatureFailure::NoZoneKey);
                continue;
            }
            if crypto::verify(key.algorithm, &key.public_key, &data, &rrsig.signature) {
                let ttl = rrset.ttl.min(rrsig.original_ttl).min(*rrsig_ttl).min(left);
                let wildcard_labels = (usize::from(rrsig.labels) < rrsig_labels(&rrset.owner)).then_some(rrsig.labels);
                return Ok(Verified { ttl, wildcard_labels });
            }
            note(SignatureFailure::Invalid);
        }
    }
    Err(failure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    const NOW: u64 = 1_780_272_000;

    fn key_pair(seed: u8) -> (Ed25519KeyPair, Dnskey) {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).expect("seed");
        let key = Dnskey { flags: 257, protocol: 3, algorithm: 15, public_key: pair.public_key().as_ref().to_vec() };
        (pair, key)
    }

    fn signed(owner: &str, rdata: Vec<Vec<u8>>, labels: Option<u8>, seed: u8) -> (Rrset, Dnskey) {
        let (pair, key) = key_pair(seed);
        let owner = NameBuf::from_presentation(owner).expect("name");
        let mut set = Rrset {
            owner: owner.clone(),
            rtype: RecordType::TXT,
            class: Class::IN,
            ttl: 300,
            rdata,
            signatures: Vec::new(),
        };
        set.rdata.sort();
        set.rdata.dedup();
        let mut rrsig = Rrsig {
            type_covered: RecordType::TXT,
            algorithm: 15,
            labels: labels.unwrap_or(rrsig_labels(&owner) as u8),
            original_ttl: 300,
            expiration: (NOW + 86_400 * 30) as u32,
            inception: (NOW - 86_400 * 30) as u32,
            key_tag: key.key_tag(),
            signer: NameBuf::from_presentation("example.").expect("name"),
            signature: Vec::new(),
        };
        let data = signed_data(&set, &rrsig).expect("labels fit");
        rrsig.signature = pair.sign(&data).as_ref().to_vec();
        set.signatures.push((300, rrsig));
        (set, key)
    }

    fn zone() -> NameBuf {
        NameBuf::from_presentation("example.").expect("name")
    }

    #[test]
    fn wildcard_signatures_use_the_source_name() {
        let (set, key) = signed("a.b.example.", vec![b"\x01x".to_vec()], Some(1), 1);
        let verified = verify_rrset(&set, &zone(), &[key], NOW, Skew::default()).expect("verifies");
        assert_eq!(verified.wildcard_labels, Some(1));
    }

    #[test]
    fn windows_allow_skew_and_no_more() {
        let (set, key) = signed("www.example.", vec![b"\x01x".to_vec()], None, 2);
        let keys = [key];
        let expiration = NOW + 86_400 * 30;
        // A tenth of the 60-day window is more than the day max: one day of skew.
        assert!(verify_rrset(&set, &zone(), &keys, expiration + 86_000, Skew::default()).is_ok());
        assert_eq!(
            verify_rrset(&set, &zone(), &keys, expiration + 86_401, Skew::default()),
            Err(SignatureFailure::Expired)
        );
        assert_eq!(
            verify_rrset(&set, &zone(), &keys, NOW - 86_400 * 32, Skew::default()),
            Err(SignatureFailure::NotYetValid)
        );
    }

    #[test]
    fn keys_must_match_and_be_zone_keys() {
        let (set, key) = signed("www.example.", vec![b"\x01x".to_vec()], None, 3);
        let (_, other) = key_pair(4);
        assert_eq!(verify_rrset(&set, &zone(), &[other], NOW, Skew::default()), Err(SignatureFailure::NoMatchingKey));
        assert_eq!(verify_rrset(&set, &zone(), &[], NOW, Skew::default()), Err(SignatureFailure::NoMatchingKey));
        let mut unsigned = set.clone();
        unsigned.signatures.clear();
        assert_eq!(
            verify_rrset(&unsigned, &zone(), std::slice::from_ref(&key), NOW, Skew::default()),
            Err(SignatureFailure::Missing)
        );
        // Outside the signer's zone.
        let elsewhere = NameBuf::from_presentation("other.").expect("name");
        assert!(verify_rrset(&set, &elsewhere, &[key], NOW, Skew::default()).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_change_to_a_signed_rrset_breaks_it(
            rdata in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..20), 1..5),
            which in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let (set, key) = signed("www.example.", rdata, None, 5);
            let keys = [key];
            prop_assert!(verify_rrset(&set, &zone(), &keys, NOW, Skew::default()).is_ok());

            // Tamper with one byte of one record.
            let mut tampered = set.clone();
            let record = which.index(tampered.rdata.len());
            let byte = which.index(tampered.rdata[record].len());
            tampered.rdata[record][byte] ^= flip;
            tampered.rdata.sort();
            tampered.rdata.dedup();
            prop_assert_eq!(verify_rrset(&tampered, &zone(), &keys, NOW, Skew::default()), Err(SignatureFailure::Invalid));

            // Or with the signature.
            let mut forged = set.clone();
            let signature = &mut forged.signatures[0].1.signature;
            let at = which.index(signature.len());
            signature[at] ^= flip;
            prop_assert_eq!(verify_rrset(&forged, &zone(), &keys, NOW, Skew::default()), Err(SignatureFailure::Invalid));

            // Or with the owner's case, which canonical form ignores.
            let mut shouted = set.clone();
            shouted.owner = NameBuf::from_presentation("WWW.Example.").expect("name");
            prop_assert!(verify_rrset(&shouted, &zone(), &keys, NOW, Skew::default()).is_ok());
        }
    }
}
