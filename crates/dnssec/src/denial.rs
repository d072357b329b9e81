//! Authenticated denial of existence: NSEC (RFC 4035 §5.4) and NSEC3
//! (RFC 5155 §8), over records whose signatures were already checked.

use core::cmp::Ordering;

use signpost_wire::{NameBuf, RecordType};

use crate::crypto::nsec3_hash;
use crate::records::{Nsec, Nsec3, base32hex_decode};

/// What a set of NSEC or NSEC3 records proves about a name and type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The name does not exist and no wildcard could have made it.
    NxDomain,
    /// The name exists (or a wildcard covers it) without the type.
    /// `delegation` when it is an unsigned delegation point: NS without SOA or DS.
    NoData {
        /// Whether the proof is of a delegation without DS.
        delegation: bool,
    },
    /// An NSEC3 opt-out span covers the name: unsigned delegations may
    /// exist there, so nothing is proven securely (RFC 5155 §6).
    OptOut,
    /// NSEC3 with more iterations than allowed (RFC 9276 §3.2): treated as insecure.
    TooManyIterations(u16),
}

/// Why records do not prove a denial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenialFailure {
    /// No NSEC or NSEC3 record proves it.
    Missing,
    /// A record shows the type exists.
    TypeExists,
    /// The proof comes from the parent side of a delegation and cannot speak for the child.
    FromDelegation,
    /// The wildcard that could have answered is not denied.
    WildcardNotDenied,
}

/// An NSEC record with its owner.
#[derive(Clone, Debug)]
pub struct OwnedNsec {
    /// The owner.
    pub owner: NameBuf,
    /// The data.
    pub nsec: Nsec,
}

/// An NSEC3 record with its owner.
#[derive(Clone, Debug)]
pub struct OwnedNsec3 {
    /// The owner: base32hex hash, then the zone.
    pub owner: NameBuf,
    /// The data.
    pub nsec3: Nsec3,
}

fn wildcard_of(name: &NameBuf) -> Option<NameBuf> {
    name.prepend(b"*").ok()
}

/// The ancestor of `name` with `labels` labels.
pub(crate) fn ancestor_with(name: &NameBuf, labels: usize) -> Option<NameBuf> {
    let mut current = name.clone();
    while current.label_count() > labels {
        current = current.parent()?;
    }
    Some(current)
}

/// The longest common ancestor of two names.
fn common_ancestor(a: &NameBuf, b: &NameBuf) -> NameBuf {
    let mut current = a.clone();
    while !b.is_subdomain_of(&current) {
        match current.parent() {
            Some(parent) => current = parent,
            None => return NameBuf::root(),
        }
    }
    current
}

/// Whether an NSEC from `owner` to `next` covers `name`: strictly between them
/// in canonical order, where the last NSEC of a zone points back to the apex.
fn nsec_covers(owner: &NameBuf, next: &NameBuf, name: &NameBuf) -> bool {
    let after_owner = owner.cmp(name) == Ordering::Less;
    match owner.cmp(next) {
        Ordering::Less => after_owner && name.cmp(next) == Ordering::Less,
        // The last NSEC: everything after the owner (inside the zone) is covered.
        _ => after_owner || name.cmp(next) == Ordering::Less,
    }
}

/// Whether a delegation or DNAME above `name` makes an NSEC at `owner` unfit
/// to deny `name` (RFC 4035 §5.4, RFC 6672 §5.3.4.1).
fn blocks_descendants(owner: &NameBuf, types: &crate::records::TypeBitmap, name: &NameBuf) -> bool {
    name != owner
        && name.is_subdomain_of(owner)
        && ((types.contains(RecordType::NS) && !types.contains(RecordType::SOA)) || types.contains(RecordType::DNAME))
}

/// The closest encloser of `qname` an NSEC covering it shows: the longer
/// of its common ancestors with the owner and the next name.
fn closest_encloser(qname: &NameBuf, covering: &OwnedNsec) -> NameBuf {
    let by_owner = common_ancestor(qname, &covering.owner);
    let by_next = common_ancestor(qname, &covering.nsec.next);
    if by_owner.label_count() >= by_next.label_count() { by_owner } else { by_next }
}

/// Which of `records` (indexes) a proof about `qname` rests on: the NSEC
/// at it, or the one covering it and the one at or covering the wildcard of
/// its closest encloser. What they prove is [`prove_nsec`]'s to say.
pub(crate) fn nsec_proof_records(records: &[OwnedNsec], qname: &NameBuf) -> Vec<usize> {
    if let Some(index) = records.iter().position(|record| record.owner == *qname) {
        return vec![index];
    }
    let Some(index) = records.iter().position(|record| nsec_covers(&record.owner, &record.nsec.next, qname)) else {
        return Vec::new();
    };
    let mut used = vec![index];
    let Some(covering) = records.get(index) else { return used };
    if covering.nsec.next.is_subdomain_of(qname) {
        // An empty non-terminal: the covering NSEC is the whole proof.
        return used;
    }
    let Some(wildcard) = wildcard_of(&closest_encloser(qname, covering)) else { return used };
    let at_wildcard = records.iter().position(|record| record.owner == wildcard);
    let covers_wildcard = || records.iter().position(|record| nsec_covers(&record.owner, &record.nsec.next, &wildcard));
    if let Some(other) = at_wildcard.or_else(covers_wildcard)
        && other != index
    {
        used.push(other);
    }
    used
}

/// Prove with NSEC records that `qname`/`qtype` does not exist.
pub fn prove_nsec(records: &[OwnedNsec], qname: &NameBuf, qtype: RecordType) -> Result<Denial, DenialFailure> {
    if let Some(found) = records.iter().find(|record| record.owner == *qname) {
        let types = &found.nsec.types;
        if types.contains(qtype) || types.contains(RecordType::CNAME) {
            return Err(DenialFailure::TypeExists);
        }
        let delegation = types.contains(RecordType::NS) && !types.contains(RecordType::SOA);
        if qtype != RecordType::DS && delegation {
            // Data below a delegation lives in the child zone.
            return Err(DenialFailure::FromDelegation);
        }
        if qtype == RecordType::DS && types.contains(RecordType::SOA) && !qname.is_root() {
            // The child's apex NSEC cannot deny the parent's DS.
            return Err(DenialFailure::FromDelegation);
        }
        return Ok(Denial::NoData { delegation: delegation && qtype == RecordType::DS });
    }
    let Some(covering) = records.iter().find(|record| nsec_covers(&record.owner, &record.nsec.next, qname)) else {
        return Err(DenialFailure::Missing);
    };
    if blocks_descendants(&covering.owner, &covering.nsec.types, qname) {
        return Err(DenialFailure::FromDelegation);
    }
    // An empty non-terminal: the next name lies below qname.
    if covering.nsec.next != *qname && covering.nsec.next.is_subdomain_of(qname) {
        return Ok(Denial::NoData { delegation: false });
    }
    let wildcard = wildcard_of(&closest_encloser(qname, covering)).ok_or(DenialFailure::Missing)?;
    if let Some(at_wildcard) = records.iter().find(|record| record.owner == wildcard) {
        // The wildcard exists: only a NODATA from it is possible.
        let types = &at_wildcard.nsec.types;
        if types.contains(qtype) || types.contains(RecordType::CNAME) {
            return Err(DenialFailure::TypeExists);
        }
        return Ok(Denial::NoData { delegation: false });
    }
    if records.iter().any(|record| nsec_covers(&record.owner, &record.nsec.next, &wildcard)) {
        return Ok(Denial::NxDomain);
    }
    Err(DenialFailure::WildcardNotDenied)
}

/// NSEC3 records of one zone with one parameter set, hashed once each.
struct Hashed<'r> {
    zone: &'r NameBuf,
    records: Vec<(Vec<u8>, &'r Nsec3)>,
    salt: &'r [u8],
    iterations: u16,
}

impl<'r> Hashed<'r> {
    fn new(records: &'r [OwnedNsec3], zone: &'r NameBuf) -> Option<Self> {
        let first = records.iter().find(|record| record.nsec3.hash_algorithm == 1)?;
        let salt = first.nsec3.salt.as_slice();
        let iterations = first.nsec3.iterations;
        let records = records
            .iter()
            .filter(|record| {
                record.nsec3.hash_algorithm == 1
                    && record.nsec3.salt == salt
                    && record.nsec3.iterations == iterations
                    && record.owner.parent().is_some_and(|parent| parent == *zone)
            })
            .filter_map(|record| {
                let label = record.owner.labels().next()?;
                Some((base32hex_decode(label)?, &record.nsec3))
            })
            .collect();
        Some(Self { zone, records, salt, iterations })
    }

    fn hash(&self, name: &NameBuf) -> Vec<u8> {
        nsec3_hash(name.to_lowercase().as_wire(), self.salt, self.iterations)
    }

    fn matching(&self, name: &NameBuf) -> Option<&'r Nsec3> {
        let hash = self.hash(name);
        self.records.iter().find(|(owner, _)| *owner == hash).map(|(_, record)| *record)
    }

    fn covering(&self, name: &NameBuf) -> Option<&'r Nsec3> {
        let hash = self.hash(name);
        self.records
            .iter()
            .find(|(owner, record)| {
                let next = &record.next_hashed;
                if owner < next {
                    *owner < hash && hash < *next
                } else {
                    // The last record wraps around to the first.
                    hash > *owner || hash < *next
                }
            })
            .map(|(_, record)| *record)
    }

    /// The closest encloser proof (RFC 5155 §8.3): the closest encloser and
    /// the record covering the next closer name.
    fn closest_encloser(&self, qname: &NameBuf) -> Result<(NameBuf, &'r Nsec3), DenialFailure> {
        let mut candidate = qname.clone();
        let mut next_closer = qname.clone();
        loop {
            if candidate != *qname
                && let Some(record) = self.matching(&candidate)
            {
                let types = &record.types;
                if (types.contains(RecordType::NS) && !types.contains(RecordType::SOA))
                    || types.contains(RecordType::DNAME)
                {
                    return Err(DenialFailure::FromDelegation);
                }
                let covering = self.covering(&next_closer).ok_or(DenialFailure::Missing)?;
                return Ok((candidate, covering));
            }
            if candidate == *self.zone || candidate.is_root() {
                return Err(DenialFailure::Missing);
            }
            next_closer = candidate.clone();
            candidate = candidate.parent().ok_or(DenialFailure::Missing)?;
        }
    }
}

/// Prove with NSEC3 records of `zone` that `qname`/`qtype` does not exist.
/// More than `max_iterations` iterations makes the answer insecure.
pub fn prove_nsec3(
    records: &[OwnedNsec3],
    zone: &NameBuf,
    qname: &NameBuf,
    qtype: RecordType,
    max_iterations: u16,
) -> Result<Denial, DenialFailure> {
    let Some(hashed) = Hashed::new(records, zone) else {
        return Err(DenialFailure::Missing);
    };
    if hashed.iterations > max_iterations {
        return Ok(Denial::TooManyIterations(hashed.iterations));
    }
    if let Some(record) = hashed.matching(qname) {
        let types = &record.types;
        if types.contains(qtype) || types.contains(RecordType::CNAME) {
            return Err(DenialFailure::TypeExists);
        }
        let delegation = types.contains(RecordType::NS) && !types.contains(RecordType::SOA);
        if qtype != RecordType::DS && delegation {
            return Err(DenialFailure::FromDelegation);
        }
        if qtype == RecordType::DS && types.contains(RecordType::SOA) && qname != zone {
            return Err(DenialFailure::FromDelegation);
        }
        return Ok(Denial::NoData { delegation: delegation && qtype == RecordType::DS });
    }
    let (encloser, next_closer_cover) = hashed.closest_encloser(qname)?;
    // No DS and no matching NSEC3: only an opt-out span may explain it (§8.6).
    if qtype == RecordType::DS {
        return if next_closer_cover.opt_out() { Ok(Denial::OptOut) } else { Err(DenialFailure::Missing) };
    }
    let wildcard = wildcard_of(&encloser).ok_or(DenialFailure::Missing)?;
    if let Some(record) = hashed.matching(&wildcard) {
        // Wildcard NODATA (§8.7).
        let types = &record.types;
        if types.contains(qtype) || types.contains(RecordType::CNAME) {
            return Err(DenialFailure::TypeExists);
        }
        return Ok(Denial::NoData { delegation: false });
    }
    if hashed.covering(&wildcard).is_some() {
        // Under opt-out the name may be an unsigned delegation (§8.4, §9.2).
        return Ok(if next_closer_cover.opt_out() { Denial::OptOut } else { Denial::NxDomain });
    }
    Err(DenialFailure::WildcardNotDenied)
}

/// Prove that no name closer than the wildcard's source existed when an
/// answer for `owner` was synthesised from a wildcard whose RRSIG has
/// `labels` labels (RFC 4035 §5.3.4, RFC 5155 §8.8).
pub fn prove_wildcard_expansion(
    nsecs: &[OwnedNsec],
    nsec3s: &[OwnedNsec3],
    zone: &NameBuf,
    owner: &NameBuf,
    labels: u8,
    max_iterations: u16,
) -> Result<Denial, DenialFailure> {
    if nsecs.iter().any(|record| nsec_covers(&record.owner, &record.nsec.next, owner)) {
        return Ok(Denial::NxDomain);
    }
    let Some(hashed) = Hashed::new(nsec3s, zone) else {
        return Err(DenialFailure::Missing);
    };
    if hashed.iterations > max_iterations {
        return Ok(Denial::TooManyIterations(hashed.iterations));
    }
    let next_closer = ancestor_with(owner, usize::from(labels) + 1).ok_or(DenialFailure::Missing)?;
    match hashed.covering(&next_closer) {
        Some(_) => Ok(Denial::NxDomain),
        None => Err(DenialFailure::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::TypeBitmap;
    use crate::test_support::name;

    fn nsec(owner: &str, next: &str, types: &[RecordType]) -> OwnedNsec {
        OwnedNsec { owner: name(owner), nsec: Nsec { next: name(next), types: TypeBitmap::from_types(types) } }
    }

    fn zone() -> Vec<OwnedNsec> {
        use RecordType as T;
        vec![
            nsec("example.", "a.example.", &[T::SOA, T::NS, T::NSEC, T::RRSIG, T::DNSKEY]),
            nsec("a.example.", "x.b.example.", &[T::A, T::NSEC, T::RRSIG]),
            nsec("x.b.example.", "d.example.", &[T::A, T::NSEC, T::RRSIG]),
            nsec("d.example.", "m.example.", &[T::NS, T::NSEC, T::RRSIG]),
            nsec("m.example.", "example.", &[T::AAAA, T::NSEC, T::RRSIG]),
        ]
    }

    #[test]
    fn nxdomain_needs_the_name_and_the_wildcard_covered() {
        let records = zone();
        // c.example. is covered by x.b.example. -> d.example.; *.example. by example. -> a.example.
        assert_eq!(prove_nsec(&records, &name("c.example."), RecordType::A), Ok(Denial::NxDomain));
        // Without the apex NSEC the wildcard is not denied.
        let partial: Vec<OwnedNsec> = records.iter().skip(1).cloned().collect();
        assert_eq!(prove_nsec(&partial, &name("c.example."), RecordType::A), Err(DenialFailure::WildcardNotDenied));
        // zz.example. is after m.example.: the last NSEC wraps to the apex.
        assert_eq!(prove_nsec(&records, &name("zz.example."), RecordType::A), Ok(Denial::NxDomain));
    }

    #[test]
    fn nodata_and_empty_non_terminals() {
        let records = zone();
        assert_eq!(
            prove_nsec(&records, &name("a.example."), RecordType::AAAA),
            Ok(Denial::NoData { delegation: false })
        );
        assert_eq!(prove_nsec(&records, &name("a.example."), RecordType::A), Err(DenialFailure::TypeExists));
        // b.example. is an empty non-terminal above x.b.example.
        assert_eq!(prove_nsec(&records, &name("b.example."), RecordType::A), Ok(Denial::NoData { delegation: false }));
    }

    #[test]
    fn delegations() {
        let records = zone();
        assert_eq!(prove_nsec(&records, &name("d.example."), RecordType::DS), Ok(Denial::NoData { delegation: true }));
        assert_eq!(prove_nsec(&records, &name("d.example."), RecordType::A), Err(DenialFailure::FromDelegation));
        // A name below the delegation cannot be denied by the parent.
        let below = vec![nsec("d.example.", "m.example.", &[RecordType::NS, RecordType::NSEC])];
        assert_eq!(prove_nsec(&below, &name("x.d.example."), RecordType::A), Err(DenialFailure::FromDelegation));
    }

    #[test]
    fn nsec3_rfc_5155_appendix_b_nxdomain() {
        // RFC 5155 Appendix B.1: a.c.x.w.example. does not exist; salt aabbccdd, 12 iterations.
        use RecordType as T;
        let zone = name("example.");
        let record = |owner: &str, next: &str, types: &[T]| OwnedNsec3 {
            owner: name(&format!("{owner}.example.")),
            nsec3: Nsec3 {
                hash_algorithm: 1,
                flags: 1,
                iterations: 12,
                salt: vec![0xaa, 0xbb, 0xcc, 0xdd],
                next_hashed: base32hex_decode(next.as_bytes()).expect("hash"),
                types: TypeBitmap::from_types(types),
            },
        };
        let records = vec![
            record(
                "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom",
                "2t7b4g4vsa5smi47k61mv5bv1a22bojr",
                &[T::MX, T::DNSKEY, T::NS, T::SOA, T::NSEC3PARAM, T::RRSIG],
            ),
            record("b4um86eghhds6nea196smvmlo4ors995", "gjeqe526plbf1g8mklp59enfd789njgi", &[T::MX, T::RRSIG]),
            record("35mthgpgcu1qg68fab165klnsnk3dpvl", "b4um86eghhds6nea196smvmlo4ors995", &[T::NS, T::DS, T::RRSIG]),
        ];
        // The example's NSEC3s have the opt-out flag, so the NXDOMAIN is only insecurely proven.
        assert_eq!(prove_nsec3(&records, &zone, &name("a.c.x.w.example."), T::A, 150), Ok(Denial::OptOut));
        assert_eq!(prove_nsec3(&records, &zone, &name("a.c.x.w.example."), T::A, 5), Ok(Denial::TooManyIterations(12)));
        let strict: Vec<OwnedNsec3> = records
            .into_iter()
            .map(|mut record| {
                record.nsec3.flags = 0;
                record
            })
            .collect();
        assert_eq!(prove_nsec3(&strict, &zone, &name("a.c.x.w.example."), T::A, 150), Ok(Denial::NxDomain));
        // Each of the three records is needed.
        for left_out in 0..strict.len() {
            let partial: Vec<OwnedNsec3> =
                strict.iter().enumerate().filter(|(index, _)| *index != left_out).map(|(_, r)| r.clone()).collect();
            assert!(prove_nsec3(&partial, &zone, &name("a.c.x.w.example."), T::A, 150).is_err(), "without {left_out}");
        }
    }
}
