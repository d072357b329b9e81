//! Zones: validated record sets with an apex and an SOA, indexed for
//! authoritative lookups (RFC 1034 §4.3.2, RFC 4592 wildcards, RFC 6672
//! DNAME, referrals below zone cuts), and edited by producing new zones.

use std::collections::BTreeMap;

use signpost_wire::{
    Class, NameBuf, RDataBuf, RecordBuf, RecordType, Serial, Soa, Transfer, flat_is_subdomain, soa_serial,
};

use crate::error::{Error, Location};
use crate::names::{LowerName, NameTable, key_of};

/// RRSIG and NSEC may sit beside a CNAME (RFC 4035 §2.5).
const RRSIG: RecordType = RecordType(46);
const NSEC: RecordType = RecordType(47);

/// A zone: an apex, its SOA, and the records at and below the apex.
///
/// Immutable once built; [`Zone::apply`] makes a changed copy. Records are
/// kept in canonical order (RFC 4034 §6), names first, then type, then data,
/// with identical records merged.
#[derive(Clone, Debug)]
pub struct Zone {
    apex: NameBuf,
    class: Class,
    /// Every name that exists, empty non-terminals included, in canonical order.
    nodes: Vec<Node>,
    /// Lowercased wire name to index in `nodes`.
    index: NameTable<u32>,
    /// The SOA with the negative-caching TTL, min(SOA TTL, SOA minimum) (RFC 2308 §5).
    negative: [RecordBuf; 1],
    apex_labels: usize,
    has_cuts: bool,
    has_dnames: bool,
    has_wildcards: bool,
    /// Whether the SOA is one of the zone's records; a loose zone
    /// ([`Zone::loose`]) has none and keeps a synthesised one for `negative`.
    soa_held: bool,
    record_count: usize,
}

#[derive(Clone, Debug)]
struct Node {
    name: NameBuf,
    /// Sorted by type, then canonical data; empty for an empty non-terminal.
    records: Vec<RecordBuf>,
    /// Has NS and is not the apex: a delegation.
    cut: bool,
    /// For a cut: addresses of its name servers found in this zone.
    glue: Vec<RecordBuf>,
}

impl Node {
    fn rrset(&self, rtype: RecordType) -> &[RecordBuf] {
        let start = self.records.partition_point(|record| record.rtype() < rtype);
        let end = self.records.partition_point(|record| record.rtype() <= rtype);
        self.records.get(start..end).unwrap_or(&[])
    }
}

/// What a zone holds for a name and type.
#[derive(Debug)]
pub(crate) enum Lookup<'z> {
    /// The RRset asked for (all records of the name for ANY).
    Records(&'z [RecordBuf]),
    /// The name is an alias: its CNAME record.
    Cname(&'z RecordBuf),
    /// Synthesised from a wildcard: these records, to be given the question name as owner.
    Wildcard(&'z [RecordBuf]),
    /// A CNAME synthesised from a wildcard, to be given the question name as owner.
    WildcardCname(&'z RecordBuf),
    /// A DNAME above the name redirects its subtree (RFC 6672).
    Dname(&'z RecordBuf),
    /// The name exists but has no data of the type.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// The name is at or below a delegation.
    Referral {
        /// The NS records of the cut.
        ns: &'z [RecordBuf],
        /// Addresses of those name servers held in this zone.
        glue: &'z [RecordBuf],
    },
}

/// One change to a zone, as Route 53's `ChangeResourceRecordSets` makes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZoneChange {
    /// Add a record to its RRset (creating the RRset if needed).
    Add(RecordBuf),
    /// Replace the RRset of these records' name and type with these records
    /// (Route 53's UPSERT). They must all have the same name and type.
    Upsert(Vec<RecordBuf>),
    /// Delete this record (matched by name, class, type and data; the TTL is ignored).
    Delete(RecordBuf),
    /// Delete the RRset of this name and type.
    DeleteRrset {
        /// The owner name.
        name: NameBuf,
        /// The type.
        rtype: RecordType,
    },
    /// Delete every record of this name.
    DeleteName(NameBuf),
}

impl Zone {
    /// A zone with only a synthesised SOA: `apex 3600 IN SOA apex hostmaster.apex 1 3600 600 86400 60`.
    pub fn new(apex: NameBuf) -> Self {
        let soa = synthetic_soa(&apex, 3600, 60);
        Self::build(apex, Class::IN, vec![(soa, None)], &Location::default()).unwrap_or_else(|_| Self::empty())
    }

    /// A zone from records. Without an SOA at the apex, one is synthesised as
    /// by [`Zone::new`]. Fails if a record is outside the apex, of another
    /// class, of a query-only type, or breaks CNAME or SOA rules.
    pub fn from_records(apex: NameBuf, records: impl IntoIterator<Item = RecordBuf>) -> Result<Self, Error> {
        let mut records: Vec<(RecordBuf, Option<Location>)> = records.into_iter().map(|r| (r, None)).collect();
        if !records.iter().any(|(record, _)| record.rtype() == RecordType::SOA) {
            records.insert(0, (synthetic_soa(&apex, 3600, 60), None));
        }
        let class = records.first().map_or(Class::IN, |(record, _)| record.class);
        Self::build(apex, class, records, &Location::default())
    }

    /// A loose set of records under `apex`, for [`ZoneMode::Overlay`](crate::ZoneMode):
    /// no SOA is added, so the apex may hold a CNAME like any other name and
    /// an SOA question at the apex finds nothing (an overlay passes it on).
    /// [`Zone::soa`] is then a synthesised one that is not among the records.
    /// Fails as [`Zone::from_records`] does.
    pub fn loose(apex: NameBuf, records: impl IntoIterator<Item = RecordBuf>) -> Result<Self, Error> {
        let records: Vec<(RecordBuf, Option<Location>)> = records.into_iter().map(|r| (r, None)).collect();
        let class = records.first().map_or(Class::IN, |(record, _)| record.class);
        Self::build_loose(apex, class, records, &Location::default())
    }

    fn build_loose(
        apex: NameBuf,
        class: Class,
        records: Vec<(RecordBuf, Option<Location>)>,
        zone_at: &Location,
    ) -> Result<Self, Error> {
        let held = records.iter().any(|(record, _)| record.rtype() == RecordType::SOA);
        let fallback = (!held).then(|| synthetic_soa(&apex, 3600, 60));
        Self::build_with(apex, class, records, zone_at, fallback)
    }

    /// Build from records that each may carry where they were read; the
    /// zone must have its SOA.
    pub(crate) fn build(
        apex: NameBuf,
        class: Class,
        records: Vec<(RecordBuf, Option<Location>)>,
        zone_at: &Location,
    ) -> Result<Self, Error> {
        Self::build_with(apex, class, records, zone_at, None)
    }

    /// Build; without an SOA among the records, `fallback` (if any) serves
    /// for negative answers without being one of the zone's records.
    fn build_with(
        apex: NameBuf,
        class: Class,
        records: Vec<(RecordBuf, Option<Location>)>,
        zone_at: &Location,
        fallback: Option<RecordBuf>,
    ) -> Result<Self, Error> {
        let soa_held = fallback.is_none();
        let apex_key = key_of(&apex);
        let mut by_name: BTreeMap<NameBuf, Vec<(RecordBuf, Option<Location>)>> = BTreeMap::new();
        for (record, at) in records {
            let here = || at.clone().unwrap_or_else(|| zone_at.clone());
            if !flat_is_subdomain(record.name.as_wire(), &apex_key) {
                return Err(Error::OutOfZone { at: here(), name: record.name.clone(), zone: apex.clone() });
            }
            if record.class != class {
                return Err(Error::WrongClass { at: here(), class: record.class, zone_class: class });
            }
            if record.rtype().is_meta() || record.rtype() == RecordType(0) {
                return Err(Error::MetaType { at: here(), rtype: record.rtype() });
            }
            if record.rtype() == RecordType::SOA && record.name != apex {
                return Err(Error::InvalidZoneData {
                    at: here(),
                    name: record.name.clone(),
                    problem: "an SOA record can only be at the zone apex",
                });
            }
            by_name.entry(record.name.clone()).or_default().push((record, at));
        }
        // Empty non-terminals: every name between a record's owner and the apex exists.
        let owners: Vec<NameBuf> = by_name.keys().cloned().collect();
        for owner in owners {
            let mut current = owner.parent();
            while let Some(name) = current {
                if !flat_is_subdomain(name.as_wire(), &apex_key) || by_name.contains_key(&name) {
                    break;
                }
                current = name.parent();
                by_name.insert(name, Vec::new());
            }
        }
        by_name.entry(apex.clone()).or_default();

        let mut nodes = Vec::with_capacity(by_name.len());
        let mut record_count = 0;
        for (name, mut entries) in by_name {
            entries.sort_by_cached_key(|(record, _)| (record.rtype(), record.data.to_wire()));
            entries.dedup_by(|later, earlier| later.0.rtype() == earlier.0.rtype() && later.0.data == earlier.0.data);
            check_node(&name, &entries, zone_at)?;
            let records: Vec<RecordBuf> = entries.into_iter().map(|(record, _)| record).collect();
            record_count += records.len();
            let cut = name != apex && records.iter().any(|record| record.rtype() == RecordType::NS);
            nodes.push(Node { name, records, cut, glue: Vec::new() });
        }
        let index =
            NameTable::new(nodes.iter().enumerate().map(|(position, node)| (key_of(&node.name), position as u32)));
        let soa = nodes
            .iter()
            .find(|node| node.name == apex)
            .and_then(|node| node.rrset(RecordType::SOA).first().cloned())
            .or(fallback)
            .ok_or_else(|| Error::InvalidZoneData {
                at: zone_at.clone(),
                name: apex.clone(),
                problem: "the zone has no SOA record at its apex",
            })?;
        let negative = negative_soa(&soa);
        let mut zone = Self {
            apex_labels: apex.label_count(),
            apex,
            class,
            has_cuts: nodes.iter().any(|node| node.cut),
            has_dnames: nodes.iter().any(|node| !node.rrset(RecordType::DNAME).is_empty()),
            has_wildcards: nodes.iter().any(|node| node.name.labels().next() == Some(b"*")),
            nodes,
            index,
            negative: [negative],
            soa_held,
            record_count,
        };
        zone.collect_glue();
        Ok(zone)
    }

    fn empty() -> Self {
        let apex = NameBuf::root();
        let soa = synthetic_soa(&apex, 3600, 60);
        Self {
            apex: apex.clone(),
            class: Class::IN,
            nodes: vec![Node { name: apex, records: vec![soa.clone()], cut: false, glue: Vec::new() }],
            index: NameTable::default(),
            negative: [soa],
            soa_held: true,
            apex_labels: 0,
            has_cuts: false,
            has_dnames: false,
            has_wildcards: false,
            record_count: 1,
        }
    }

    fn collect_glue(&mut self) {
        if !self.has_cuts {
            return;
        }
        let mut glue_by_node = Vec::new();
        for (position, node) in self.nodes.iter().enumerate() {
            if !node.cut {
                continue;
            }
            let mut glue = Vec::new();
            for ns in node.rrset(RecordType::NS) {
                let RDataBuf::Ns(target) = &ns.data else { continue };
                let Some(&target_index) = self.index.get(&key_of(target)) else { continue };
                let Some(target_node) = self.nodes.get(target_index as usize) else { continue };
                glue.extend(target_node.rrset(RecordType::A).iter().cloned());
                glue.extend(target_node.rrset(RecordType::AAAA).iter().cloned());
            }
            glue_by_node.push((position, glue));
        }
        for (position, glue) in glue_by_node {
            if let Some(node) = self.nodes.get_mut(position) {
                node.glue = glue;
            }
        }
    }

    /// The apex.
    pub fn apex(&self) -> &NameBuf {
        &self.apex
    }

    /// The class.
    pub fn class(&self) -> Class {
        self.class
    }

    /// The SOA record.
    pub fn soa(&self) -> &RecordBuf {
        self.nodes.first().and_then(|apex| apex.rrset(RecordType::SOA).first()).unwrap_or(&self.negative[0])
    }

    /// The SOA record as sent in negative answers: its TTL is the negative-caching
    /// TTL, min(SOA TTL, SOA minimum) (RFC 2308 §5).
    pub fn negative_soa(&self) -> &[RecordBuf] {
        &self.negative
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.record_count
    }

    /// Whether the zone holds no records (never true: it has its SOA).
    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// All records in canonical order (the apex, with its SOA, comes first).
    pub fn records(&self) -> impl Iterator<Item = &RecordBuf> + '_ {
        self.nodes.iter().flat_map(|node| node.records.iter())
    }

    /// The records of `name` and `rtype` (empty if none).
    pub fn rrset(&self, name: &NameBuf, rtype: RecordType) -> &[RecordBuf] {
        self.node(&key_of(name)).map_or(&[], |node| node.rrset(rtype))
    }

    /// The records for a zone transfer (RFC 5936): the SOA, every other
    /// record in canonical order, and the SOA again.
    pub fn axfr(&self) -> impl Iterator<Item = &RecordBuf> + '_ {
        let soa = self.soa();
        core::iter::once(soa)
            .chain(self.records().filter(|record| record.rtype() != RecordType::SOA))
            .chain(core::iter::once(soa))
    }

    /// A copy of the zone with `changes` applied, all or nothing.
    pub fn apply(&self, changes: impl IntoIterator<Item = ZoneChange>) -> Result<Self, Error> {
        let mut records: Vec<RecordBuf> = self.records().cloned().collect();
        for change in changes {
            apply_change(&mut records, change, &self.apex)?;
        }
        let at = Location::field(format!("zone {}", self.apex));
        let records = records.into_iter().map(|r| (r, None)).collect();
        if self.soa_held {
            Self::build(self.apex.clone(), self.class, records, &at)
        } else {
            Self::build_loose(self.apex.clone(), self.class, records, &at)
        }
    }

    /// The zone a transfer brings (RFC 5936, RFC 1995): a full transfer
    /// replaces the records, an incremental one is applied to this copy,
    /// version by version, and must start from this copy's serial; every
    /// deleted record must exist. On an error the caller keeps this copy and
    /// asks for a full transfer (AXFR) instead.
    pub fn apply_transfer(&self, transfer: &Transfer) -> Result<Self, Error> {
        let at = || Location::field(format!("zone {}", self.apex));
        match transfer {
            Transfer::UpToDate { .. } => Ok(self.clone()),
            Transfer::Full { .. } => Self::from_transfer(self.apex.clone(), transfer),
            Transfer::Incremental { diffs, .. } => {
                let mut records: Vec<RecordBuf> = self.records().cloned().collect();
                let mut serial = soa_serial(self.soa());
                for diff in diffs {
                    if soa_serial(&diff.from) != serial {
                        return Err(Error::InvalidZoneData {
                            at: at(),
                            name: self.apex.clone(),
                            problem: "the incremental transfer starts from another serial than this copy's",
                        });
                    }
                    records.retain(|record| record.rtype() != RecordType::SOA);
                    for deleted in &diff.deleted {
                        apply_change(&mut records, ZoneChange::Delete(deleted.clone()), &self.apex)?;
                    }
                    records.extend(diff.added.iter().cloned());
                    records.push(diff.to.clone());
                    serial = soa_serial(&diff.to);
                }
                let records = records.into_iter().map(|record| (record, None)).collect();
                Self::build(self.apex.clone(), self.class, records, &at())
            }
        }
    }

    /// A zone from a full transfer (the SOA first, as [`Transfer::Full`] holds it).
    /// Fails for other kinds of transfer, and as [`Zone::from_records`] does.
    pub fn from_transfer(apex: NameBuf, transfer: &Transfer) -> Result<Self, Error> {
        let Transfer::Full { records, .. } = transfer else {
            return Err(Error::InvalidZoneData {
                at: Location::field(format!("zone {apex}")),
                name: apex,
                problem: "only a full transfer (AXFR) makes a zone without a previous copy",
            });
        };
        let records = records.iter().cloned().map(|record| (record, None)).collect();
        let at = Location::field(format!("zone {apex}"));
        Self::build(apex, Class::IN, records, &at)
    }

    /// The serial of the zone's SOA.
    pub fn serial(&self) -> Serial {
        soa_serial(self.soa()).unwrap_or_default()
    }

    fn node(&self, key: &[u8]) -> Option<&Node> {
        self.index.get(key).and_then(|&position| self.nodes.get(position as usize))
    }

    /// Look up a lowercased name at or below the apex.
    pub(crate) fn lookup(&self, name: &LowerName, qtype: RecordType) -> Lookup<'_> {
        let labels = name.label_count();
        if self.has_cuts || self.has_dnames {
            // Walk down from the apex: a cut or a DNAME above the name decides.
            for depth in self.apex_labels..=labels {
                let Some(node) = self.node(name.suffix(depth)) else { break };
                if node.cut && !(depth == labels && qtype == RecordType::DS) {
                    return Lookup::Referral { ns: node.rrset(RecordType::NS), glue: &node.glue };
                }
                if depth < labels
                    && let Some(dname) = node.rrset(RecordType::DNAME).first()
                {
                    return Lookup::Dname(dname);
                }
            }
        }
        if let Some(node) = self.node(name.as_wire()) {
            return answer_from(node, qtype, false);
        }
        // The closest encloser, and the wildcard below it (RFC 4592 §3.3.1).
        for depth in (self.apex_labels..labels).rev() {
            let suffix = name.suffix(depth);
            if self.node(suffix).is_none() {
                continue;
            }
            if self.has_wildcards {
                let mut key = [0u8; signpost_wire::MAX_NAME_LEN + 2];
                key[0] = 1;
                key[1] = b'*';
                if let Some(rest) = key.get_mut(2..2 + suffix.len()) {
                    rest.copy_from_slice(suffix);
                    if let Some(wildcard) = self.node(key.get(..2 + suffix.len()).unwrap_or(&[])) {
                        return answer_from(wildcard, qtype, true);
                    }
                }
            }
            return Lookup::NxDomain;
        }
        Lookup::NxDomain
    }
}

fn answer_from(node: &Node, qtype: RecordType, wildcard: bool) -> Lookup<'_> {
    if node.records.is_empty() {
        return Lookup::NoData;
    }
    let found = if qtype == RecordType::ANY { &node.records[..] } else { node.rrset(qtype) };
    if !found.is_empty() {
        return if wildcard { Lookup::Wildcard(found) } else { Lookup::Records(found) };
    }
    match node.rrset(RecordType::CNAME).first() {
        Some(cname) if wildcard => Lookup::WildcardCname(cname),
        Some(cname) => Lookup::Cname(cname),
        None => Lookup::NoData,
    }
}

/// Zone content rules for the records of one name.
fn check_node(name: &NameBuf, entries: &[(RecordBuf, Option<Location>)], zone_at: &Location) -> Result<(), Error> {
    let count = |rtype| entries.iter().filter(|(record, _)| record.rtype() == rtype).count();
    let fail = |problem| {
        let at = entries.iter().find_map(|(_, at)| at.clone()).unwrap_or_else(|| zone_at.clone());
        Err(Error::InvalidZoneData { at, name: name.clone(), problem })
    };
    let cnames = count(RecordType::CNAME);
    if cnames > 1 {
        return fail("more than one CNAME record at a name");
    }
    if cnames == 1 && entries.iter().any(|(record, _)| !matches!(record.rtype(), RecordType::CNAME | RRSIG | NSEC)) {
        return fail("a CNAME record cannot coexist with other data (RFC 1034 §3.6.2)");
    }
    if count(RecordType::DNAME) > 1 {
        return fail("more than one DNAME record at a name");
    }
    if count(RecordType::SOA) > 1 {
        return fail("more than one SOA record");
    }
    Ok(())
}

fn apply_change(records: &mut Vec<RecordBuf>, change: ZoneChange, apex: &NameBuf) -> Result<(), Error> {
    let at = || Location::field(format!("zone {apex}"));
    match change {
        ZoneChange::Add(record) => records.push(record),
        ZoneChange::Upsert(rrset) => {
            let Some(first) = rrset.first() else {
                return Err(Error::InvalidEntry { at: at(), problem: "an upsert needs at least one record" });
            };
            let (name, rtype) = (first.name.clone(), first.rtype());
            if rrset.iter().any(|record| record.name != name || record.rtype() != rtype) {
                return Err(Error::InvalidEntry {
                    at: at(),
                    problem: "the records of an upsert must share name and type",
                });
            }
            records.retain(|record| !(record.name == name && record.rtype() == rtype));
            records.extend(rrset);
        }
        ZoneChange::Delete(target) => {
            let before = records.len();
            records.retain(|record| {
                !(record.name == target.name && record.class == target.class && record.data == target.data)
            });
            if records.len() == before {
                return Err(Error::InvalidZoneData {
                    at: at(),
                    name: target.name,
                    problem: "no such record to delete",
                });
            }
        }
        ZoneChange::DeleteRrset { name, rtype } => {
            let before = records.len();
            records.retain(|record| !(record.name == name && record.rtype() == rtype));
            if records.len() == before {
                return Err(Error::InvalidZoneData { at: at(), name, problem: "no such RRset to delete" });
            }
        }
        ZoneChange::DeleteName(name) => {
            let before = records.len();
            records.retain(|record| record.name != name);
            if records.len() == before {
                return Err(Error::InvalidZoneData { at: at(), name, problem: "no records of that name to delete" });
            }
        }
    }
    Ok(())
}

/// An SOA for a name with no zone data of its own (redirect rules, host
/// tables, zones given without one): `name ttl IN SOA name hostmaster.name 1 3600 600 86400 minimum`.
pub(crate) fn synthetic_soa(name: &NameBuf, ttl: u32, minimum: u32) -> RecordBuf {
    let rname = name.prepend(b"hostmaster").unwrap_or_else(|_| name.clone());
    RecordBuf::new(
        name.clone(),
        ttl,
        RDataBuf::Soa(Soa { mname: name.clone(), rname, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum }),
    )
}

/// The SOA as sent in a negative answer: TTL = min(SOA TTL, SOA minimum).
pub(crate) fn negative_soa(soa: &RecordBuf) -> RecordBuf {
    let mut negative = soa.clone();
    if let RDataBuf::Soa(data) = &soa.data {
        negative.ttl = soa.ttl.min(data.minimum);
    }
    negative
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.apex == other.apex && self.class == other.class && self.records().eq(other.records())
    }
}

impl Eq for Zone {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::name;

    fn record(text: &str) -> RecordBuf {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn zone(lines: &[&str]) -> Zone {
        let mut records = vec![record("example. 3600 IN SOA ns.example. host.example. 1 7200 900 1209600 300")];
        records.extend(lines.iter().map(|line| record(line)));
        Zone::from_records(name("example."), records).expect("valid zone")
    }

    fn lookup<'z>(zone: &'z Zone, text: &str, qtype: RecordType) -> Lookup<'z> {
        zone.lookup(&LowerName::new(&name(text)), qtype)
    }

    #[test]
    fn exact_nodata_and_nxdomain() {
        let z = zone(&["www.example. 300 A 192.0.2.1", "www.example. 300 A 192.0.2.2", "a.b.c.example. 300 TXT x"]);
        let Lookup::Records(records) = lookup(&z, "WWW.example.", RecordType::A) else { panic!("answer") };
        assert_eq!(records.len(), 2);
        assert!(matches!(lookup(&z, "www.example.", RecordType::AAAA), Lookup::NoData));
        // b.c.example is an empty non-terminal: NODATA, not NXDOMAIN.
        assert!(matches!(lookup(&z, "b.c.example.", RecordType::A), Lookup::NoData));
        assert!(matches!(lookup(&z, "c.example.", RecordType::TXT), Lookup::NoData));
        assert!(matches!(lookup(&z, "nope.example.", RecordType::A), Lookup::NxDomain));
        assert!(matches!(lookup(&z, "x.nope.example.", RecordType::A), Lookup::NxDomain));
        let Lookup::Records(all) = lookup(&z, "www.example.", RecordType::ANY) else { panic!("any") };
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn negative_ttl_is_the_smaller_of_soa_ttl_and_minimum() {
        let z = zone(&[]);
        assert_eq!(z.negative_soa()[0].ttl, 300);
        let high_minimum = Zone::from_records(
            name("example."),
            [record("example. 60 IN SOA ns.example. host.example. 1 7200 900 1209600 300")],
        )
        .expect("zone");
        assert_eq!(high_minimum.negative_soa()[0].ttl, 60);
    }

    #[test]
    fn cname_is_reported_for_other_types() {
        let z = zone(&["alias.example. 300 CNAME www.example.", "www.example. 300 A 192.0.2.1"]);
        assert!(matches!(lookup(&z, "alias.example.", RecordType::A), Lookup::Cname(_)));
        assert!(matches!(lookup(&z, "alias.example.", RecordType::CNAME), Lookup::Records(_)));
    }

    #[test]
    fn wildcards_follow_rfc4592() {
        // The examples of RFC 4592 §2.2.1, trimmed.
        let z = zone(&[
            "*.example. 3600 TXT \"this is a wildcard\"",
            "*.example. 3600 MX 10 host1.example.",
            "sub.*.example. 3600 TXT \"this is not a wildcard\"",
            "host1.example. 3600 A 192.0.2.1",
            "_ssh._tcp.host1.example. 3600 SRV 0 0 22 host1.example.",
            "subdel.example. 3600 NS ns.example.com.",
        ]);
        assert!(matches!(lookup(&z, "host3.example.", RecordType::MX), Lookup::Wildcard(_)));
        assert!(matches!(lookup(&z, "host3.example.", RecordType::A), Lookup::NoData));
        assert!(matches!(lookup(&z, "foo.bar.example.", RecordType::TXT), Lookup::Wildcard(_)));
        // Names that exist, empty non-terminals included, block the wildcard.
        assert!(matches!(lookup(&z, "host1.example.", RecordType::MX), Lookup::NoData));
        assert!(matches!(lookup(&z, "_tcp.host1.example.", RecordType::A), Lookup::NoData));
        assert!(matches!(lookup(&z, "sub.*.example.", RecordType::MX), Lookup::NoData));
        // The closest encloser of these has no wildcard child.
        assert!(matches!(lookup(&z, "_telnet._tcp.host1.example.", RecordType::SRV), Lookup::NxDomain));
        assert!(matches!(lookup(&z, "host.subdel.example.", RecordType::A), Lookup::Referral { .. }));
        assert!(matches!(lookup(&z, "ghost.*.example.", RecordType::MX), Lookup::NxDomain));
        // The wildcard name itself answers like any other.
        assert!(matches!(lookup(&z, "*.example.", RecordType::MX), Lookup::Records(_)));
    }

    #[test]
    fn delegations_give_referrals_with_glue() {
        let z = zone(&[
            "example. 3600 NS ns.example.",
            "ns.example. 3600 A 192.0.2.53",
            "sub.example. 3600 NS ns.sub.example.",
            "sub.example. 3600 NS ns.elsewhere.",
            "ns.sub.example. 3600 A 192.0.2.54",
            "ns.sub.example. 3600 AAAA 2001:db8::54",
        ]);
        let Lookup::Referral { ns, glue } = lookup(&z, "www.sub.example.", RecordType::A) else { panic!("referral") };
        assert_eq!(ns.len(), 2);
        assert_eq!(glue.len(), 2);
        assert!(matches!(lookup(&z, "sub.example.", RecordType::NS), Lookup::Referral { .. }));
        // Glue itself is below the cut: a referral too.
        assert!(matches!(lookup(&z, "ns.sub.example.", RecordType::A), Lookup::Referral { .. }));
        // DS belongs to the parent side of the cut.
        assert!(matches!(lookup(&z, "sub.example.", RecordType::DS), Lookup::NoData));
        // The apex NS is not a cut.
        assert!(matches!(lookup(&z, "example.", RecordType::NS), Lookup::Records(_)));
    }

    #[test]
    fn dname_redirects_the_subtree_but_not_its_owner() {
        let z = zone(&["dn.example. 3600 DNAME target.example.", "host.target.example. 3600 A 192.0.2.99"]);
        assert!(matches!(lookup(&z, "host.dn.example.", RecordType::A), Lookup::Dname(_)));
        assert!(matches!(lookup(&z, "dn.example.", RecordType::A), Lookup::NoData));
        assert!(matches!(lookup(&z, "dn.example.", RecordType::DNAME), Lookup::Records(_)));
    }

    #[test]
    fn content_rules_are_checked() {
        let soa = record("example. 3600 IN SOA ns.example. host.example. 1 7200 900 1209600 300");
        let build = |extra: &[&str]| {
            let mut records = vec![soa.clone()];
            records.extend(extra.iter().map(|line| record(line)));
            Zone::from_records(name("example."), records)
        };
        assert!(matches!(build(&["www.other. 300 A 192.0.2.1"]), Err(Error::OutOfZone { .. })));
        assert!(matches!(
            build(&["a.example. 300 CNAME b.example.", "a.example. 300 A 192.0.2.1"]),
            Err(Error::InvalidZoneData { .. })
        ));
        assert!(matches!(
            build(&["a.example. 300 CNAME b.example.", "a.example. 300 CNAME c.example."]),
            Err(Error::InvalidZoneData { .. })
        ));
        assert!(matches!(build(&["a.example. 300 CH TXT x"]), Err(Error::WrongClass { .. })));
        assert!(matches!(
            build(&["a.example. 300 SOA ns.example. host.example. 1 2 3 4 5"]),
            Err(Error::InvalidZoneData { .. })
        ));
        assert!(matches!(build(&["a.example. 300 TYPE255 \\# 0"]), Err(Error::MetaType { .. })));
        // Identical records merge.
        let z = build(&["a.example. 300 A 192.0.2.1", "a.example. 600 A 192.0.2.1"]).expect("valid");
        assert_eq!(z.len(), 2);
    }

    #[test]
    fn zones_without_soa_get_one_and_axfr_brackets_with_it() {
        let z = Zone::from_records(name("corp."), [record("www.corp. 60 A 10.0.0.1")]).expect("valid");
        assert_eq!(z.soa().to_string(), "corp. 3600 IN SOA corp. hostmaster.corp. 1 3600 600 86400 60");
        let axfr: Vec<String> = z.axfr().map(ToString::to_string).collect();
        assert_eq!(axfr.len(), 3);
        assert_eq!(axfr.first(), axfr.last());
        assert_eq!(axfr[1], "www.corp. 60 IN A 10.0.0.1");
        assert_eq!(Zone::new(name("corp.")).len(), 1);
    }

    #[test]
    fn transfers_replace_or_patch_the_zone() {
        use signpost_wire::IxfrDiff;
        let soa = |serial: u32| {
            record(&format!("example. 3600 IN SOA ns.example. host.example. {serial} 7200 900 1209600 300"))
        };
        let base = zone(&["www.example. 300 A 192.0.2.1", "old.example. 300 A 192.0.2.9"]);
        assert_eq!(base.serial(), Serial(1));
        let step = |from: u32, to: u32, deleted: &[&str], added: &[&str]| IxfrDiff {
            from: soa(from),
            deleted: deleted.iter().map(|line| record(line)).collect(),
            to: soa(to),
            added: added.iter().map(|line| record(line)).collect(),
        };
        let incremental = Transfer::Incremental {
            soa: soa(3),
            diffs: vec![
                step(1, 2, &["old.example. 300 A 192.0.2.9"], &["new.example. 300 A 192.0.2.10"]),
                step(2, 3, &["www.example. 300 A 192.0.2.1"], &["www.example. 300 A 192.0.2.2"]),
            ],
        };
        let patched = base.apply_transfer(&incremental).expect("applies");
        assert_eq!(patched.serial(), Serial(3));
        let expected = Zone::from_records(
            name("example."),
            [soa(3), record("new.example. 300 A 192.0.2.10"), record("www.example. 300 A 192.0.2.2")],
        )
        .expect("zone");
        assert_eq!(patched, expected);

        // From another serial, or deleting what is not there: refused, so the caller falls back to AXFR.
        assert!(patched.apply_transfer(&incremental).is_err());
        let missing =
            Transfer::Incremental { soa: soa(2), diffs: vec![step(1, 2, &["nope.example. 300 A 192.0.2.1"], &[])] };
        assert!(base.apply_transfer(&missing).is_err());

        let full = Transfer::Full { soa: soa(9), records: vec![soa(9), record("a.example. 60 A 192.0.2.7")] };
        let replaced = base.apply_transfer(&full).expect("full");
        assert_eq!(replaced.serial(), Serial(9));
        assert_eq!(replaced.len(), 2);
        assert_eq!(Zone::from_transfer(name("example."), &full).expect("zone"), replaced);
        assert!(Zone::from_transfer(name("example."), &incremental).is_err());
        assert_eq!(base.apply_transfer(&Transfer::UpToDate { soa: soa(1) }).expect("same"), base);
        // Records outside the zone make no zone.
        let outside = Transfer::Full { soa: soa(9), records: vec![soa(9), record("a.example.org. 60 A 192.0.2.7")] };
        assert!(base.apply_transfer(&outside).is_err());
    }

    #[test]
    fn changes_make_a_new_zone() {
        let z = zone(&["www.example. 300 A 192.0.2.1"]);
        let changed = z
            .apply([
                ZoneChange::Add(record("www.example. 300 A 192.0.2.2")),
                ZoneChange::Upsert(vec![record("mail.example. 300 MX 10 www.example.")]),
            ])
            .expect("valid");
        assert_eq!(changed.rrset(&name("www.example."), RecordType::A).len(), 2);
        assert_eq!(z.rrset(&name("www.example."), RecordType::A).len(), 1);
        let upserted = changed.apply([ZoneChange::Upsert(vec![record("www.example. 60 A 192.0.2.9")])]).expect("valid");
        assert_eq!(upserted.rrset(&name("www.example."), RecordType::A), [record("www.example. 60 A 192.0.2.9")]);
        let deleted = upserted
            .apply([
                ZoneChange::Delete(record("www.example. 1 A 192.0.2.9")),
                ZoneChange::DeleteRrset { name: name("mail.example."), rtype: RecordType::MX },
            ])
            .expect("valid");
        assert_eq!(deleted, zone(&[]));
        assert!(deleted.apply([ZoneChange::DeleteName(name("nope.example."))]).is_err());
        assert!(z.apply([ZoneChange::Add(record("www.example. 300 CNAME x.example."))]).is_err());
        assert!(z.apply([ZoneChange::DeleteRrset { name: name("example."), rtype: RecordType::SOA }]).is_err());
    }
}
