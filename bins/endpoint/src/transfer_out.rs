//! Private hosted zones given out by zone transfer: an on-premises Knot or
//! BIND can be the secondary of a Route 53 private zone through an inbound
//! endpoint (the other direction of [`crate::secondary`]). A Signpost
//! extension: `[private_hosted_zones.transfer]` in the TOML, or the
//! `signpost:transfer-*` tags through the API.
//!
//! Route 53 keeps a private zone's SOA serial at 1 whatever changes; a
//! secondary would never see a change. So each change to a zone given out
//! (`ChangeResourceRecordSets`, a reload of the file) that leaves the
//! serial where it was raises it by one ([`bump_serials`]), and the zone's
//! secondaries are told by NOTIFY ([`GivenOut::sync`]). A zone read from a
//! `file` keeps the file's serial: its owner sets it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use signpost_server::transfer::{Notifier, TransferPolicy, ZoneTransfers};
use signpost_wire::{NameBuf, RDataBuf, RecordBuf, RecordType};

use crate::error::EndpointError;
use crate::model::{EndpointConfig, HostedZoneConfig, TsigKeyConfig};

/// A private hosted zone given out by transfer, as checked: networks, key
/// found and usable, secondaries' addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedTransferOut {
    /// The zone's id.
    pub zone_id: String,
    /// Its apex.
    pub apex: NameBuf,
    /// Who may transfer it.
    pub allow: Vec<ipnet::IpNet>,
    /// The key transfers must be signed with and NOTIFY is.
    pub key: Option<TsigKeyConfig>,
    /// The secondaries told of each change.
    pub notify: Vec<SocketAddr>,
}

impl PlannedTransferOut {
    /// The TSIG key (checked when planned, so `None` only when none is named).
    pub fn tsig_key(&self) -> Option<signpost_wire::TsigKey> {
        self.key.as_ref().and_then(|key| key.key().ok())
    }

    fn policy(&self) -> TransferPolicy {
        let keys: Vec<_> = self.tsig_key().into_iter().collect();
        TransferPolicy { allow: self.allow.clone(), require_key: !keys.is_empty(), keys }
    }
}

/// What is wrong with transfer settings that do not parse.
const TRANSFER_ADDRESS_UNPARSED: &str =
    "an address or network in the transfer settings does not parse (IP, IP/prefix, or IP:port for notify)";

impl EndpointConfig {
    /// The `[[tsig_keys]]` entry a zone's `FIELD.tsig_key` names, if it names
    /// one; an unknown name is an error at that field. Shared by the
    /// secondaries' and the transfers-out checks.
    pub(crate) fn tsig_key_named(
        &self,
        name: Option<&str>,
        field: &str,
    ) -> Result<Option<TsigKeyConfig>, EndpointError> {
        let Some(name) = name else { return Ok(None) };
        let key = self.tsig_keys.iter().find(|key| key.is_named(name)).cloned();
        key.map(Some).ok_or_else(|| EndpointError::UnknownReference {
            at: self.locate(&format!("{field}.tsig_key")),
            what: "TSIG key",
            id: name.to_string(),
        })
    }

    /// The private hosted zones given out by transfer, checked: values that
    /// parse, keys known and usable, one zone given out per name.
    pub fn transfers_out(&self) -> Result<Vec<PlannedTransferOut>, EndpointError> {
        let mut planned: Vec<PlannedTransferOut> = Vec::new();
        for zone in self.zones_with("transfer", HostedZoneConfig::transfer_of, TRANSFER_ADDRESS_UNPARSED) {
            let (field, config, apex, transfer) = zone?;
            let key = self.tsig_key_named(transfer.tsig_key.as_deref(), &field)?;
            if let Some(key) = &key {
                key.key().map_err(|problem| EndpointError::Invalid { at: self.locate("tsig_keys"), problem })?;
            }
            let lowercase = apex.to_lowercase();
            if planned.iter().any(|other| other.apex.to_lowercase() == lowercase) {
                return Err(EndpointError::Invalid {
                    at: self.locate(&field),
                    problem: "another private hosted zone of this name is given out by transfer: a secondary asks by name, so one zone per name",
                });
            }
            planned.push(PlannedTransferOut {
                zone_id: config.zone_id().to_string(),
                apex,
                allow: transfer.allow.clone(),
                key,
                notify: transfer.notify.iter().map(|secondary| secondary.with_default_port(53)).collect(),
            });
        }
        Ok(planned)
    }
}

/// Raise the SOA serial of each zone given out whose records `next`
/// changes from `previous` without raising it (Route 53 never does), so
/// its secondaries see the change. Zones read from a `file` are left to
/// the file's serial.
pub fn bump_serials(previous: &EndpointConfig, next: &mut EndpointConfig) {
    let Ok(planned) = next.transfers_out() else { return };
    let given_out: BTreeSet<&str> = planned.iter().map(|zone| zone.zone_id.as_str()).collect();
    let mut raised: Vec<(usize, Arc<Vec<String>>)> = Vec::new();
    for (index, zone) in next.private_hosted_zones.iter().enumerate() {
        // A secondary takes its primary's serial.
        let secondary = zone.secondary_of().ok().flatten().is_some();
        if zone.file.is_some() || secondary || !given_out.contains(zone.zone_id()) {
            continue;
        }
        let Some(before) = previous.private_hosted_zones.iter().find(|old| old.zone_id() == zone.zone_id()) else {
            continue;
        };
        if Arc::ptr_eq(&before.records, &zone.records) && before.ttl == zone.ttl && before.file == zone.file {
            continue;
        }
        // A zone that does not build is reported by the compile that follows.
        let (Ok(old), Ok(new)) = (previous.hosted_zone(before), next.hosted_zone(zone)) else { continue };
        if old == new || new.serial().is_newer_than(old.serial()) {
            continue;
        }
        // The same data under an older serial (a file reloaded that never
        // had the raised one) keeps the serial it has; other data gets the next.
        let serial = if same_but_serial(&old, &new) { old.serial().0 } else { old.serial().0.wrapping_add(1) };
        if serial == new.serial().0 {
            continue;
        }
        if let Some(records) = with_serial(zone, &new, serial) {
            tracing::info!(zone = %new.apex(), id = zone.zone_id(), serial, "transfer: raised the SOA serial of a changed zone given out");
            raised.push((index, Arc::new(records)));
        }
    }
    for (index, records) in raised {
        if let Some(zone) = next.private_hosted_zones.get_mut(index) {
            zone.records = records;
        }
    }
}

/// Whether two zones hold the same records, the SOA serial aside.
fn same_but_serial(a: &signpost_rules::Zone, b: &signpost_rules::Zone) -> bool {
    let without_serial = |record: &RecordBuf| {
        let mut record = record.clone();
        if let RDataBuf::Soa(soa) = &mut record.data {
            soa.serial = 0;
        }
        record
    };
    a.records().count() == b.records().count()
        && a.records().zip(b.records()).all(|(a, b)| without_serial(a) == without_serial(b))
}

/// The zone's record lines with the SOA replaced by `built`'s at `serial`.
fn with_serial(config: &HostedZoneConfig, built: &signpost_rules::Zone, serial: u32) -> Option<Vec<String>> {
    let mut soa: RecordBuf = built.soa().clone();
    let RDataBuf::Soa(data) = &mut soa.data else { return None };
    data.serial = serial;
    let apex = built.apex();
    let default_ttl = config.ttl.unwrap_or(300);
    let mut records: Vec<String> = config
        .records
        .iter()
        .filter(|line| {
            !matches!(
                RecordBuf::from_presentation(line, Some(apex), Some(default_ttl)),
                Ok(record) if record.rtype() == RecordType::SOA
            )
        })
        .cloned()
        .collect();
    records.insert(0, soa.to_string());
    Some(records)
}

/// What the endpoint gives out by transfer: kept in step with the model,
/// each new serial told to the zone's secondaries.
#[derive(Debug, Default)]
pub struct GivenOut {
    /// The apex each zone id was given out under.
    served: BTreeMap<String, NameBuf>,
    notifier: Notifier,
}

impl GivenOut {
    /// Serve the zones `config` gives out from `transfers` (and stop
    /// serving those it no longer does); a zone whose serial moved on, or
    /// that is given out for the first time, is told to its secondaries.
    /// Secondary zones past their expire time (`expired`) are not given out.
    pub fn sync(&mut self, config: &EndpointConfig, transfers: &ZoneTransfers, expired: &BTreeSet<String>) {
        let planned = match config.transfers_out() {
            Ok(planned) => planned,
            Err(error) => {
                tracing::error!(%error, "transfer: the zones given out cannot be read");
                return;
            }
        };
        let gone: Vec<(String, NameBuf)> = self
            .served
            .iter()
            .filter(|(id, apex)| !planned.iter().any(|zone| zone.zone_id == **id && zone.apex == **apex))
            .map(|(id, apex)| (id.clone(), apex.clone()))
            .collect();
        for (id, apex) in gone {
            tracing::info!(zone = %apex, id, "transfer: no longer given out");
            transfers.withdraw(&apex);
            self.served.remove(&id);
        }
        for out in &planned {
            let Some(config_zone) = config.private_hosted_zones.iter().find(|zone| zone.zone_id() == out.zone_id)
            else {
                continue;
            };
            let zone = match config.hosted_zone(config_zone) {
                Ok(zone) => zone,
                Err(error) => {
                    tracing::error!(zone = %out.apex, id = out.zone_id, %error, "transfer: the zone cannot be built");
                    continue;
                }
            };
            let previous = transfers.zone(&out.apex);
            transfers.serve(zone.clone(), out.policy());
            if expired.contains(&out.zone_id) {
                // A secondary past its expire time has nothing to give.
                transfers.update(&out.apex, None);
                continue;
            }
            if self.served.insert(out.zone_id.clone(), out.apex.clone()).is_none() {
                tracing::info!(zone = %out.apex, id = out.zone_id, serial = %zone.serial(), "transfer: given out");
            }
            let moved_on = previous.is_none_or(|previous| zone.serial().is_newer_than(previous.serial()));
            if moved_on {
                self.notifier.notify(&out.apex, zone.soa().clone(), out.notify.clone(), out.tsig_key());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(extra: &str) -> EndpointConfig {
        let text = format!(
            "[[vpcs]]\nid = \"vpc-1\"\ncidrs = [\"10.0.0.0/16\"]\n\n\
             [[tsig_keys]]\nname = \"xfr.\"\nsecret = \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"\n\n\
             [[private_hosted_zones]]\nname = \"corp.example\"\nvpcs = [\"vpc-1\"]\n\
             records = [\"@ 900 IN SOA ns. host. 1 7200 900 1209600 86400\", \"www 60 A 10.0.0.1\"]\n{extra}"
        );
        EndpointConfig::from_toml(&text, "endpoint.toml").unwrap()
    }

    #[test]
    fn the_table_and_the_tags_say_the_same() {
        let table = model(
            "[private_hosted_zones.transfer]\nallow = [\"192.0.2.0/24\"]\ntsig_key = \"xfr.\"\nnotify = [\"192.0.2.53\", \"192.0.2.54:5300\"]\n",
        );
        let mut tagged = model("");
        let tags = &mut tagged.private_hosted_zones[0].tags;
        tags.insert(crate::model::TRANSFER_ALLOW_TAG.into(), "192.0.2.0/24".into());
        tags.insert(crate::model::TRANSFER_TSIG_KEY_TAG.into(), "xfr.".into());
        tags.insert(crate::model::TRANSFER_NOTIFY_TAG.into(), "192.0.2.53, 192.0.2.54:5300".into());
        let planned = table.transfers_out().unwrap();
        assert_eq!(planned, tagged.transfers_out().unwrap());
        assert_eq!(planned[0].notify, ["192.0.2.53:53".parse().unwrap(), "192.0.2.54:5300".parse().unwrap()]);
        assert!(planned[0].policy().require_key);

        let mut unknown = model("[private_hosted_zones.transfer]\nallow = [\"192.0.2.0/24\"]\ntsig_key = \"nope.\"\n");
        assert!(unknown.transfers_out().unwrap_err().to_string().contains("tsig_key"));
        unknown.private_hosted_zones[0].transfer = None;
        unknown.private_hosted_zones[0].tags.insert(crate::model::TRANSFER_ALLOW_TAG.into(), "not-a-net".into());
        assert!(unknown.transfers_out().is_err());
    }

    #[test]
    fn a_change_given_out_raises_the_serial_and_one_not_given_out_does_not() {
        let previous = model("[private_hosted_zones.transfer]\nallow = [\"192.0.2.0/24\"]\n");
        let mut next = previous.clone();
        let mut records = Vec::clone(&next.private_hosted_zones[0].records);
        records.push("new 60 A 10.0.0.2".into());
        next.private_hosted_zones[0].records = Arc::new(records);
        let plain_previous = {
            let mut plain = previous.clone();
            plain.private_hosted_zones[0].transfer = None;
            plain
        };
        let mut plain_next = next.clone();
        plain_next.private_hosted_zones[0].transfer = None;

        bump_serials(&previous, &mut next);
        let zone = next.hosted_zone(&next.private_hosted_zones[0]).unwrap();
        assert_eq!(zone.serial().0, 2);
        assert!(zone.records().any(|record| record.to_string().starts_with("new.corp.example.")));
        // Once raised, the same model raises nothing more.
        let again = next.clone();
        let mut same = next.clone();
        bump_serials(&again, &mut same);
        assert!(Arc::ptr_eq(&same.private_hosted_zones[0].records, &next.private_hosted_zones[0].records));

        // The old file read again (serial 1, the new record): the raised serial stays.
        let mut reread = previous.clone();
        let mut records = Vec::clone(&next.private_hosted_zones[0].records);
        records.retain(|line| !line.contains("SOA"));
        records.push("@ 900 IN SOA ns. host. 1 7200 900 1209600 86400".into());
        reread.private_hosted_zones[0].records = Arc::new(records);
        bump_serials(&next, &mut reread);
        assert_eq!(reread.hosted_zone(&reread.private_hosted_zones[0]).unwrap().serial().0, 2);

        bump_serials(&plain_previous, &mut plain_next);
        assert_eq!(plain_next.hosted_zone(&plain_next.private_hosted_zones[0]).unwrap().serial().0, 1, "as Route 53");
    }
}
