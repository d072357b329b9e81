//! Aggressive use of the DNSSEC-validated cache (RFC 8198): NSEC records
//! that validated as part of a negative answer are kept, with the zone's
//! SOA, and later questions they prove do not exist are answered NXDOMAIN
//! or NODATA from them without asking upstream.
//!
//! Only NSEC (not NSEC3) is used, as in unbound's `aggressive-nsec`. Records
//! are kept until the smallest of their TTL and their signatures' expiry,
//! and dropped when the trust anchors change.

use std::collections::HashMap;

use signpost_wire::{Class, Message, MessageBuilder, NameBuf, Rcode, RecordType, Section};

use crate::denial::{self, Denial, OwnedNsec};
use crate::records::Nsec;
use crate::rrset::Rrset;

/// Most NSEC records kept over all zones before the cache is emptied.
const NSEC_LIMIT: usize = 10_000;

/// A validated RRset and when it stops being usable (seconds since the epoch).
#[derive(Clone, Debug)]
struct Kept {
    set: Rrset,
    expires: u64,
}

/// One signed zone's validated SOA and NSEC records (`owned[i]` is read from `kept[i]`).
#[derive(Clone, Debug, Default)]
struct Zone {
    soa: Option<Kept>,
    owned: Vec<OwnedNsec>,
    kept: Vec<Kept>,
}

/// The validated NSEC records by zone.
#[derive(Debug, Default)]
pub(crate) struct NsecCache {
    zones: HashMap<NameBuf, Zone>,
    count: usize,
}

/// What the cache can answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Synthesized {
    /// The response: NXDOMAIN or NODATA with the SOA, the NSEC records and their RRSIGs.
    pub(crate) response: Vec<u8>,
    /// Its smallest TTL.
    pub(crate) ttl: u32,
}

impl NsecCache {
    /// Keep the validated SOA and NSEC sets of `zone` from a negative answer;
    /// `ttl` is what validation allowed for each (TTL, original TTL, expiry).
    pub(crate) fn insert(&mut self, zone: &NameBuf, soa: Option<(&Rrset, u32)>, nsecs: &[(&Rrset, u32)], now: u64) {
        if nsecs.is_empty() {
            return;
        }
        if self.count + nsecs.len() > NSEC_LIMIT {
            self.zones.clear();
            self.count = 0;
        }
        let entry = self.zones.entry(zone.clone()).or_default();
        if let Some((set, ttl)) = soa {
            entry.soa = Some(Kept { set: set.clone(), expires: now + u64::from(ttl) });
        }
        for (set, ttl) in nsecs {
            let Some(nsec) = set.rdata.first().and_then(|data| Nsec::parse(data).ok()) else { continue };
            let kept = Kept { set: (*set).clone(), expires: now + u64::from(*ttl) };
            let owned = OwnedNsec { owner: set.owner.clone(), nsec };
            match entry.owned.iter().position(|existing| existing.owner == owned.owner) {
                Some(index) => {
                    if let (Some(owned_slot), Some(kept_slot)) = (entry.owned.get_mut(index), entry.kept.get_mut(index))
                    {
                        *owned_slot = owned;
                        *kept_slot = kept;
                    }
                }
                None => {
                    entry.owned.push(owned);
                    entry.kept.push(kept);
                    self.count += 1;
                }
            }
        }
    }

    /// Empty the cache (the trust anchors changed).
    pub(crate) fn clear(&mut self) {
        self.zones.clear();
        self.count = 0;
    }

    /// Answer `query` (a client's question) from kept NSEC records, if they
    /// prove the name or type does not exist. The response carries the
    /// query's ID and question, RA set, AD clear (the caller decides), and
    /// an OPT record with DO so the caller can shape it as an upstream answer.
    pub(crate) fn synthesize(&mut self, query: &[u8], now: u64) -> Option<Synthesized> {
        let message = Message::parse(query).ok()?;
        let question = message.first_question().ok()??;
        if question.qclass() != Class::IN || matches!(question.qtype(), RecordType::ANY | RecordType::DS) {
            return None;
        }
        let qname = question.name().to_name_buf().to_lowercase();
        let qtype = question.qtype();
        // The closest zone kept: qname or its nearest ancestor with records.
        let mut candidate = Some(qname.clone());
        let zone = loop {
            let name = candidate?;
            if self.zones.contains_key(&name) {
                break self.zones.get_mut(&name)?;
            }
            candidate = name.parent();
        };
        if zone.kept.iter().any(|kept| kept.expires <= now) {
            let before = zone.owned.len();
            let (owned, kept): (Vec<OwnedNsec>, Vec<Kept>) = std::mem::take(&mut zone.owned)
                .into_iter()
                .zip(std::mem::take(&mut zone.kept))
                .filter(|(_, kept)| kept.expires > now)
                .unzip();
            self.count = self.count.saturating_sub(before - owned.len());
            zone.owned = owned;
            zone.kept = kept;
        }
        let soa = zone.soa.as_ref().filter(|kept| kept.expires > now)?;
        let used = denial::nsec_proof_records(&zone.owned, &qname);
        let proof: Vec<OwnedNsec> = used.iter().filter_map(|index| zone.owned.get(*index).cloned()).collect();
        let rcode = match denial::prove_nsec(&proof, &qname, qtype) {
            Ok(Denial::NxDomain) => Rcode::NXDOMAIN,
            Ok(Denial::NoData { delegation: false }) => Rcode::NOERROR,
            _ => return None,
        };
        let mut sets: Vec<&Kept> = vec![soa];
        sets.extend(used.iter().filter_map(|index| zone.kept.get(*index)));
        let ttl = sets.iter().map(|kept| kept.expires.saturating_sub(now)).min()?;
        let ttl = u32::try_from(ttl).unwrap_or(u32::MAX);
        let mut response = Vec::with_capacity(512);
        let mut builder = MessageBuilder::response_to(&mut response, &message).ok()?;
        builder.header_mut().flags = builder.header_mut().flags.with_ra(true).with_ad(false);
        builder.set_rcode(rcode);
        for kept in sets {
            let set = &kept.set;
            for data in &set.rdata {
                builder.push_raw(Section::Authority, &set.owner, set.rtype, set.class, ttl, data).ok()?;
            }
            for (_, rrsig) in &set.signatures {
                let mut data = rrsig.signed_prefix();
                data.extend_from_slice(&rrsig.signature);
                builder.push_raw(Section::Authority, &set.owner, RecordType::RRSIG, set.class, ttl, &data).ok()?;
            }
        }
        builder.set_edns(signpost_wire::EdnsHeader { udp_payload_size: 1232, version: 0, dnssec_ok: true });
        builder.finish().ok()?;
        Some(Synthesized { response, ttl })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Rrsig, TypeBitmap};
    use crate::test_support::name;
    use signpost_wire::{EdnsHeader, Flags};

    const NOW: u64 = 1_780_272_000;

    fn rrsig(rtype: RecordType, owner: &NameBuf) -> (u32, Rrsig) {
        let rrsig = Rrsig {
            type_covered: rtype,
            algorithm: 15,
            labels: owner.label_count() as u8,
            original_ttl: 300,
            expiration: (NOW + 86_400) as u32,
            inception: (NOW - 86_400) as u32,
            key_tag: 1,
            signer: name("example."),
            signature: vec![7; 64],
        };
        (300, rrsig)
    }

    /// A signed RRset of one record.
    fn signed(owner: NameBuf, rtype: RecordType, ttl: u32, rdata: Vec<u8>) -> Rrset {
        Rrset { signatures: vec![rrsig(rtype, &owner)], owner, rtype, class: Class::IN, ttl, rdata: vec![rdata] }
    }

    fn nsec(owner: &str, next: &str, types: &[RecordType]) -> Rrset {
        let owner = name(owner);
        let mut rdata = name(next).as_wire().to_vec();
        rdata.extend_from_slice(TypeBitmap::from_types(types).as_bytes());
        signed(owner, RecordType::NSEC, 300, rdata)
    }

    fn soa() -> Rrset {
        let owner = name("example.");
        let mut rdata = name("ns.example.").as_wire().to_vec();
        rdata.extend_from_slice(name("hostmaster.example.").as_wire());
        rdata.extend_from_slice(&[0; 20]);
        signed(owner, RecordType::SOA, 3600, rdata)
    }

    fn query(qname: &str, qtype: RecordType) -> Vec<u8> {
        let mut out = Vec::new();
        let mut builder = MessageBuilder::new(&mut out).expect("builder");
        builder.set_id(0x1234);
        builder.set_flags(Flags::default().with_rd(true));
        builder.push_question(&name(qname), qtype, Class::IN).expect("question");
        builder.set_edns(EdnsHeader { udp_payload_size: 1232, version: 0, dnssec_ok: true });
        builder.finish().expect("query");
        out
    }

    /// The cache after a proven NXDOMAIN for b.example.: the NSEC covering it and the one denying *.example.
    fn filled() -> NsecCache {
        use RecordType as T;
        let mut cache = NsecCache::default();
        let apex = nsec("example.", "a.example.", &[T::SOA, T::NS, T::NSEC, T::RRSIG, T::DNSKEY]);
        let span = nsec("a.example.", "m.example.", &[T::A, T::NSEC, T::RRSIG]);
        let soa = soa();
        cache.insert(&name("example."), Some((&soa, 300)), &[(&apex, 300), (&span, 300)], NOW);
        cache
    }

    /// RCODE, ID, AD and the authority section's owners and types.
    fn read(response: &[u8]) -> (Rcode, u16, bool, Vec<(String, RecordType)>) {
        let message = Message::parse(response).expect("parses");
        let authority = message
            .authority()
            .expect("authority")
            .map(|record| {
                let record = record.expect("record");
                (record.name().to_name_buf().to_string(), record.rtype())
            })
            .collect();
        (message.rcode().expect("rcode"), message.id(), message.flags().ad(), authority)
    }

    #[test]
    fn a_covered_name_is_nxdomain_with_its_proof() {
        let mut cache = filled();
        let synthesized = cache.synthesize(&query("c.example.", RecordType::A), NOW + 10).expect("covered");
        let (rcode, id, ad, authority) = read(&synthesized.response);
        assert_eq!((rcode, id, ad), (Rcode::NXDOMAIN, 0x1234, false));
        assert_eq!(synthesized.ttl, 290, "the TTL counts down");
        let types: Vec<RecordType> = authority.iter().map(|(_, rtype)| *rtype).collect();
        use RecordType as T;
        assert_eq!(types, [T::SOA, T::RRSIG, T::NSEC, T::RRSIG, T::NSEC, T::RRSIG], "{authority:?}");
        // Every record the proof needs and no other.
        assert!(authority.iter().any(|(owner, rtype)| owner == "a.example." && *rtype == T::NSEC));
        assert!(authority.iter().any(|(owner, rtype)| owner == "example." && *rtype == T::NSEC));
    }

    #[test]
    fn a_missing_type_is_nodata() {
        let mut cache = filled();
        let synthesized = cache.synthesize(&query("a.example.", RecordType::MX), NOW).expect("nodata");
        let (rcode, _, _, authority) = read(&synthesized.response);
        assert_eq!(rcode, Rcode::NOERROR);
        assert_eq!(authority.len(), 4, "SOA, NSEC and their RRSIGs: {authority:?}");
    }

    #[test]
    fn nothing_is_made_up_without_a_proof() {
        let mut cache = filled();
        // The type exists, the name lies outside the spans, another zone, a DS, an expired record.
        assert!(cache.synthesize(&query("a.example.", RecordType::A), NOW).is_none());
        assert!(cache.synthesize(&query("x.example.", RecordType::A), NOW).is_none());
        assert!(cache.synthesize(&query("b.example.org.", RecordType::A), NOW).is_none());
        assert!(cache.synthesize(&query("c.example.", RecordType::DS), NOW).is_none());
        assert!(cache.synthesize(&query("c.example.", RecordType::A), NOW + 300).is_none());
        // Only the covering NSEC, not the wildcard's: no proof.
        use RecordType as T;
        let mut partial = NsecCache::default();
        let span = nsec("a.example.", "m.example.", &[T::A, T::NSEC, T::RRSIG]);
        let soa = soa();
        partial.insert(&name("example."), Some((&soa, 300)), &[(&span, 300)], NOW);
        assert!(partial.synthesize(&query("c.example.", RecordType::A), NOW).is_none());
        // Cleared, nothing.
        let mut cleared = filled();
        cleared.clear();
        assert!(cleared.synthesize(&query("c.example.", RecordType::A), NOW).is_none());
    }
}
