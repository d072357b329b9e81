//! Hosted zones and their record sets as the Route 53 API holds them, turned
//! into zones every client of the redirect proxy is answered from (the
//! redirect has no VPCs), as LocalStack's DNS server answers the records of
//! its Route 53 API.
//!
//! The control plane's Route 53 service publishes its hosted zones through
//! a [`HostedZoneFeed`](crate::HostedZoneFeed) after every change it has
//! committed; this module only converts: names in Route 53's spelling (`\052`
//! for `*`, as Terraform sends it — LocalStack PR #12204), values in
//! presentation format, alias records resolved to the records of their
//! target (LocalStack answers alias records the same way).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use signpost_rules::{Zone, ZoneSpec};
use signpost_wire::{NameBuf, RecordBuf, RecordType};

use crate::RedirectError;

/// A hosted zone: its id, its name and its record sets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostedZone {
    /// The zone id (`Z0123456789ABC`, or `/hostedzone/Z...`).
    pub id: String,
    /// The zone name (its apex), in Route 53's spelling.
    pub name: String,
    /// The record sets, SOA and NS included when the API holds them
    /// (without an SOA one is made up for negative answers).
    #[serde(default)]
    pub resource_record_sets: Vec<ResourceRecordSet>,
}

/// One record set (`ResourceRecordSet` of `ChangeResourceRecordSets`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceRecordSet {
    /// The owner name, in Route 53's spelling (`\052.example.com.` or `*.example.com`).
    pub name: String,
    /// The type mnemonic (`A`, `AAAA`, `CNAME`, `MX`, `TXT`, `SRV`, `NS`, ...).
    #[serde(rename = "Type")]
    pub rtype: String,
    /// The TTL; alias records take their target's.
    #[serde(default, rename = "TTL")]
    pub ttl: Option<u32>,
    /// The values in presentation format (`10 mail.example.com`, `"text"`).
    #[serde(default)]
    pub resource_records: Vec<String>,
    /// For an alias record: where it points.
    #[serde(default)]
    pub alias_target: Option<AliasTarget>,
}

impl ResourceRecordSet {
    /// A record set of `values` (presentation format) with `ttl`, not an alias.
    pub fn new(name: &str, rtype: &str, ttl: u32, values: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            rtype: rtype.to_owned(),
            ttl: Some(ttl),
            resource_records: values.iter().map(|value| (*value).to_owned()).collect(),
            alias_target: None,
        }
    }
}

/// The target of an alias record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasTarget {
    /// The hosted zone the target is in (checked against nothing: the
    /// target is looked up by name in every zone).
    pub hosted_zone_id: String,
    /// The target name.
    #[serde(rename = "DNSName")]
    pub dns_name: String,
    /// Route 53 then answers only while the target is healthy; here
    /// targets are always taken as healthy.
    #[serde(default)]
    pub evaluate_target_health: bool,
}

impl HostedZone {
    /// A hosted zone from records, grouped into record sets by name and type
    /// (each set takes the TTL of its first record).
    pub fn from_records(id: impl Into<String>, name: &NameBuf, records: impl IntoIterator<Item = RecordBuf>) -> Self {
        let mut sets: Vec<ResourceRecordSet> = Vec::new();
        for record in records {
            let owner = route53_spelling(&record.name);
            let rtype = record.rtype().to_string();
            let value = record.data.to_string();
            match sets.iter_mut().find(|set| set.name == owner && set.rtype == rtype) {
                Some(set) => set.resource_records.push(value),
                None => sets.push(ResourceRecordSet {
                    name: owner,
                    rtype,
                    ttl: Some(record.ttl),
                    resource_records: vec![value],
                    alias_target: None,
                }),
            }
        }
        Self { id: id.into(), name: route53_spelling(name), resource_record_sets: sets }
    }

    /// A hosted zone from records in presentation format, names relative to
    /// the zone, `default_ttl` where a record gives none: the form
    /// signpost-endpoint's model keeps a zone's records in.
    pub fn from_presentation(
        id: impl Into<String>,
        name: &str,
        records: &[String],
        default_ttl: u32,
    ) -> Result<Self, RedirectError> {
        let apex = route53_name(name)?;
        let text = format!("$TTL {default_ttl}\n{}\n", records.join("\n"));
        let parsed = signpost_rules::parse_records(&text, &apex, signpost_rules::Source::memory())?;
        Ok(Self::from_records(id, &apex, parsed.into_iter().map(|(record, _)| record)))
    }
}

/// A name in Route 53's spelling: lowercase, every byte but letters,
/// digits, `-`, `_` and a leading `*` as a three-digit octal escape, with
/// the final dot (`\052.example.com.` is written `*.example.com.`, which
/// Route 53 also accepts).
pub fn route53_spelling(name: &NameBuf) -> String {
    let mut text = String::new();
    for label in name.labels() {
        for &byte in label {
            match byte.to_ascii_lowercase() {
                lower @ (b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'*') => text.push(char::from(lower)),
                other => text.push_str(&format!("\\{other:03o}")),
            }
        }
        text.push('.');
    }
    if text.is_empty() {
        text.push('.');
    }
    text
}

/// What the compiled zones could not use, without failing the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostedZoneWarning {
    /// The zone id.
    pub zone: String,
    /// The record set's name.
    pub name: String,
    /// What happened.
    pub problem: String,
}

/// An alias record whose target is none of the zones' records: a name the
/// redirect proxy answers itself (an AWS name: ELB, CloudFront, S3 website
/// endpoints) gets the redirect rule at its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExternalAlias {
    /// The alias record's owner.
    pub(crate) name: NameBuf,
    /// The target.
    pub(crate) target: NameBuf,
}

/// The hosted zones compiled: one authoritative zone each.
#[derive(Clone, Debug, Default)]
pub(crate) struct CompiledHostedZones {
    /// The zones, by apex (lowercased, absolute), with their ids.
    pub(crate) zones: Vec<(String, Zone)>,
    /// Alias records pointing outside every zone.
    pub(crate) external_aliases: Vec<ExternalAlias>,
    /// What was left out.
    pub(crate) warnings: Vec<HostedZoneWarning>,
}

/// A name in Route 53's spelling: `\NNN` escapes are octal (`\052` is `*`,
/// Terraform's spelling of a wildcard), not the decimal escapes of zone
/// files; a trailing dot is optional. Lowercased.
pub fn route53_name(text: &str) -> Result<NameBuf, RedirectError> {
    let mut presentation = String::with_capacity(text.len());
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            presentation.push(c);
            continue;
        }
        let digits: String = chars.clone().take(3).collect();
        if digits.len() == 3 && digits.chars().all(|d| ('0'..='7').contains(&d)) {
            let byte = u8::from_str_radix(&digits, 8).map_err(|_| invalid_name(text))?;
            for _ in 0..3 {
                chars.next();
            }
            match byte {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'*' => presentation.push(char::from(byte)),
                // Anything else stays escaped, in the decimal form zone files use.
                other => presentation.push_str(&format!("\\{other:03}")),
            }
        } else {
            presentation.push('\\');
            if let Some(next) = chars.next() {
                presentation.push(next);
            }
        }
    }
    if !presentation.ends_with('.') {
        presentation.push('.');
    }
    presentation.parse::<NameBuf>().map(|name| name.to_lowercase()).map_err(|source| RedirectError::InvalidName {
        what: "Route 53 record name",
        name: text.to_owned(),
        source,
    })
}

fn invalid_name(text: &str) -> RedirectError {
    RedirectError::InvalidName {
        what: "Route 53 record name",
        name: text.to_owned(),
        source: signpost_wire::Error::InvalidEscape { column: 0 },
    }
}

/// One record from a record set's owner, type, TTL and value (absolute
/// names; a missing trailing dot is added, as Route 53 does).
pub(crate) fn record_from_value(
    owner: &NameBuf,
    rtype: RecordType,
    ttl: u32,
    value: &str,
) -> Result<RecordBuf, signpost_wire::Error> {
    let text = format!("{owner} {ttl} IN {rtype} {value}");
    RecordBuf::from_presentation(&text, Some(&NameBuf::root()), None)
}

/// Compile hosted zones: each becomes one authoritative zone; alias records
/// take their target's records of the same type (and the target's TTL);
/// records that cannot be read are left out with a warning rather than
/// losing the whole zone (the API validated them when they were written).
pub(crate) fn compile(hosted: &[HostedZone], default_ttl: u32) -> Result<CompiledHostedZones, RedirectError> {
    let mut out = CompiledHostedZones::default();
    let mut records_by_zone: Vec<(String, NameBuf, Vec<RecordBuf>)> = Vec::new();
    let mut aliases: Vec<(usize, NameBuf, RecordType, NameBuf)> = Vec::new();
    for zone in hosted {
        let apex = route53_name(&zone.name)?;
        let index = records_by_zone.len();
        let mut records = Vec::new();
        for set in &zone.resource_record_sets {
            let warn = |problem: String| HostedZoneWarning { zone: zone.id.clone(), name: set.name.clone(), problem };
            let owner = match route53_name(&set.name) {
                Ok(owner) if owner.is_subdomain_of(&apex) => owner,
                Ok(_) => {
                    out.warnings.push(warn(format!("not in the zone {}", apex.to_relative_string())));
                    continue;
                }
                Err(error) => {
                    out.warnings.push(warn(error.to_string()));
                    continue;
                }
            };
            let Some(rtype) = RecordType::from_mnemonic(set.rtype.trim()) else {
                out.warnings.push(warn(format!("unknown type {:?}", set.rtype)));
                continue;
            };
            if let Some(alias) = &set.alias_target {
                match route53_name(&alias.dns_name) {
                    Ok(target) => aliases.push((index, owner, rtype, target)),
                    Err(error) => out.warnings.push(warn(error.to_string())),
                }
                continue;
            }
            let ttl = set.ttl.unwrap_or(default_ttl);
            for value in &set.resource_records {
                match record_from_value(&owner, rtype, ttl, value) {
                    Ok(record) => records.push(record),
                    Err(error) => out.warnings.push(warn(format!("value {value:?}: {error}"))),
                }
            }
        }
        records_by_zone.push((zone.id.clone(), apex, records));
    }
    // Alias records: the target's RRset of the alias's type, from any zone,
    // resolved against the zones before any alias was added (aliases do not chain).
    let mut alias_records: Vec<(usize, RecordBuf)> = Vec::new();
    for (index, owner, rtype, target) in aliases {
        let found = lookup(&records_by_zone, &target, rtype);
        if found.is_empty() {
            out.external_aliases.push(ExternalAlias { name: owner, target });
            continue;
        }
        for record in found {
            alias_records.push((index, RecordBuf { name: owner.clone(), ..record }));
        }
    }
    for (index, record) in alias_records {
        if let Some((_, _, records)) = records_by_zone.get_mut(index) {
            records.push(record);
        }
    }
    let mut seen: BTreeMap<NameBuf, String> = BTreeMap::new();
    for (id, apex, records) in records_by_zone {
        if let Some(first) = seen.get(&apex) {
            out.warnings.push(HostedZoneWarning {
                zone: id.clone(),
                name: apex.to_string(),
                problem: format!("zone {first} has the same name and is served instead"),
            });
            continue;
        }
        seen.insert(apex.clone(), id.clone());
        match Zone::from_records(apex.clone(), records) {
            Ok(zone) => out.zones.push((id, zone)),
            Err(error) => out.warnings.push(HostedZoneWarning {
                zone: id,
                name: apex.to_string(),
                problem: format!("the zone is left out: {error}"),
            }),
        }
    }
    Ok(out)
}

/// The records of `name` and `rtype` in the zone holding it (the one with
/// the longest apex), exact or through a wildcard, owner as stored.
fn lookup(zones: &[(String, NameBuf, Vec<RecordBuf>)], name: &NameBuf, rtype: RecordType) -> Vec<RecordBuf> {
    let Some((_, _, records)) =
        zones.iter().filter(|(_, apex, _)| name.is_subdomain_of(apex)).max_by_key(|(_, apex, _)| apex.label_count())
    else {
        return Vec::new();
    };
    let exact: Vec<RecordBuf> =
        records.iter().filter(|record| record.name == *name && record.rtype() == rtype).cloned().collect();
    if !exact.is_empty() || records.iter().any(|record| record.name == *name) {
        return exact;
    }
    let mut ancestor = name.parent();
    while let Some(parent) = ancestor {
        if let Ok(wildcard) = parent.prepend(b"*") {
            let found: Vec<RecordBuf> =
                records.iter().filter(|record| record.name == wildcard && record.rtype() == rtype).cloned().collect();
            if !found.is_empty() {
                return found;
            }
        }
        ancestor = parent.parent();
    }
    Vec::new()
}

/// The compiled zones as rule-set zones, served to every view.
pub(crate) fn zone_specs(compiled: &CompiledHostedZones) -> Vec<ZoneSpec> {
    compiled
        .zones
        .iter()
        .map(|(id, zone)| ZoneSpec { id: format!("route53:{id}"), ..ZoneSpec::new(zone.clone()).in_views(["*"]) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, rtype: &str, values: &[&str]) -> ResourceRecordSet {
        ResourceRecordSet::new(name, rtype, 60, values)
    }

    #[test]
    fn route53_names_unescape_octal_as_terraform_sends_them() {
        assert_eq!(route53_name("\\052.example.com.").expect("name").to_string(), "*.example.com.");
        assert_eq!(route53_name("*.Example.COM").expect("name").to_string(), "*.example.com.");
        assert_eq!(route53_name("a\\055b.example.com").expect("name").to_string(), "a-b.example.com.");
        // An escaped dot stays part of its label.
        let dotted = route53_name("a\\056b.example.com").expect("name");
        assert_eq!(dotted.label_count(), 3);
        assert!(route53_name("a..b").is_err());
    }

    #[test]
    fn zones_from_presentation_records_round_trip_through_route53_spelling() {
        let records =
            ["@ MX 10 mail", "www 60 A 192.0.2.1", "www 60 A 192.0.2.2", "* TXT \"any\"", "a\\.b A 192.0.2.3"]
                .map(str::to_owned);
        let zone = HostedZone::from_presentation("Z1", "Example.com", &records, 300).expect("zone");
        assert_eq!(zone.name, "example.com.");
        let names: Vec<&str> = zone.resource_record_sets.iter().map(|set| set.name.as_str()).collect();
        assert_eq!(names, ["example.com.", "www.example.com.", "*.example.com.", "a\\056b.example.com."]);
        assert_eq!(zone.resource_record_sets[1].resource_records.len(), 2);
        assert_eq!(zone.resource_record_sets[0].ttl, Some(300));
        let compiled = compile(&[zone], 300).expect("compiles");
        assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
        let (_, zone) = &compiled.zones[0];
        let dotted = route53_name("a\\056b.example.com.").expect("name");
        assert_eq!(zone.rrset(&dotted, RecordType::A).len(), 1, "the escaped dot survives");
        assert!(HostedZone::from_presentation("Z2", "example.com", &["www A nope".to_owned()], 300).is_err());
    }

    #[test]
    fn zones_compile_with_wildcards_and_aliases_to_their_targets() {
        let alias = |name: &str, rtype: &str, target: &str| ResourceRecordSet {
            name: name.to_owned(),
            rtype: rtype.to_owned(),
            ttl: None,
            resource_records: Vec::new(),
            alias_target: Some(AliasTarget {
                hosted_zone_id: "Z1".into(),
                dns_name: target.to_owned(),
                evaluate_target_health: false,
            }),
        };
        let zone = HostedZone {
            id: "Z1".into(),
            name: "example.com.".into(),
            resource_record_sets: vec![
                set("www.example.com.", "A", &["192.0.2.1", "192.0.2.2"]),
                set("\\052.example.com.", "A", &["192.0.2.9"]),
                set("example.com.", "MX", &["10 mail.example.com"]),
                set("example.com.", "TXT", &["\"v=spf1 -all\""]),
                set("_sip._tcp.example.com.", "SRV", &["10 5 5060 sip.example.com"]),
                set("sub.example.com.", "NS", &["ns1.elsewhere.test"]),
                set("web.example.com.", "CNAME", &["www.example.com"]),
                set("bad.example.com.", "A", &["not-an-address"]),
                set("other.test.", "A", &["192.0.2.3"]),
                alias("apex.example.com.", "A", "www.example.com."),
                alias("star.example.com.", "A", "anything.example.com."),
                alias("lb.example.com.", "A", "my-lb-123.us-east-1.elb.amazonaws.com."),
            ],
        };
        let compiled = compile(&[zone], 300).expect("compiles");
        assert_eq!(compiled.zones.len(), 1);
        let (_, zone) = &compiled.zones[0];
        let name = |text: &str| text.parse::<NameBuf>().expect("name");
        assert_eq!(zone.rrset(&name("www.example.com."), RecordType::A).len(), 2);
        assert_eq!(zone.rrset(&name("*.example.com."), RecordType::A).len(), 1);
        assert_eq!(zone.rrset(&name("apex.example.com."), RecordType::A).len(), 2, "alias copies its target");
        assert_eq!(zone.rrset(&name("apex.example.com."), RecordType::A)[0].ttl, 60, "the target's TTL");
        assert_eq!(zone.rrset(&name("star.example.com."), RecordType::A).len(), 1, "through the wildcard");
        assert_eq!(zone.rrset(&name("_sip._tcp.example.com."), RecordType::SRV).len(), 1);
        assert_eq!(
            compiled.external_aliases,
            [ExternalAlias { name: name("lb.example.com."), target: name("my-lb-123.us-east-1.elb.amazonaws.com.") }]
        );
        let problems: Vec<&str> = compiled.warnings.iter().map(|warning| warning.name.as_str()).collect();
        assert_eq!(problems, ["bad.example.com.", "other.test."]);
    }
}
