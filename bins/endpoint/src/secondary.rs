//! Secondary DNS in a VPC, built in: a private hosted zone that follows an
//! on-premises primary, as the AWS hybrid-DNS whitepaper's "Secondary DNS
//! in an Amazon VPC" does with a scheduled Lambda function, without the
//! Lambda.
//!
//! Each secondary zone runs a [`SecondaryZone`] task (SOA check, AXFR or
//! IXFR through [`signpost_upstream::TransferClient`], refresh and retry on
//! the SOA's timers, NOTIFY). Every new copy is diffed against the private
//! hosted zone's record sets and applied through the control plane as a
//! `ChangeResourceRecordSets` batch would be: the change is live (the VPC
//! resolvers answer it), stored (with `--state`) and listed by
//! `ListResourceRecordSets`. As the whitepaper's function does, the zone
//! keeps Route 53's own SOA and apex NS records, and the SOA takes the
//! primary's serial. A copy past its SOA expire time makes the zone answer
//! SERVFAIL until a primary answers again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use signpost_rules::Zone;
use signpost_server::transfer::{Publish, SecondaryTask, SecondaryZone, ZoneTransfers};
use signpost_upstream::TransferClient;
use signpost_wire::{RDataBuf, RecordBuf, RecordType};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::error::ApiError;
use crate::api::route53::{change_id, record_sets, same_records};
use crate::compile::PlannedSecondary;
use crate::control::{ChangeRecord, ControlPlane, Kind, Mutation};
use crate::live::EndpointRuntime;
use crate::model::EndpointConfig;

/// The ids of secondary zones past their expire time, shared between the
/// supervisor (which fills it) and the runtime (which compiles them to SERVFAIL).
pub type ExpiredZones = Arc<Mutex<BTreeSet<String>>>;

/// What one new copy changed in the private hosted zone, by record set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Record sets created.
    pub created: usize,
    /// Record sets whose TTL or records changed.
    pub changed: usize,
    /// Record sets deleted.
    pub deleted: usize,
    /// The serial the zone's SOA carries now.
    pub serial: u32,
}

impl Applied {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.created == 0 && self.changed == 0 && self.deleted == 0
    }
}

/// The records `zone` (the private hosted zone's, as built) holds once
/// `copy` (the primary's) is applied: Route 53's SOA with the primary's
/// serial, Route 53's apex NS set (the primary's when the zone has none),
/// and every other record of the copy.
pub fn merged_records(zone: &Zone, copy: &Zone) -> Vec<RecordBuf> {
    let apex = zone.apex().to_lowercase();
    let at_apex = |record: &RecordBuf, rtype: RecordType| record.rtype() == rtype && record.name.to_lowercase() == apex;
    let mut soa = zone.soa().clone();
    if let (RDataBuf::Soa(ours), RDataBuf::Soa(theirs)) = (&mut soa.data, &copy.soa().data) {
        ours.serial = theirs.serial;
    }
    let mut records = vec![soa];
    let own_ns: Vec<RecordBuf> = zone.records().filter(|record| at_apex(record, RecordType::NS)).cloned().collect();
    let keep_own_ns = !own_ns.is_empty();
    records.extend(own_ns);
    records.extend(
        copy.records()
            .filter(|record| !(at_apex(record, RecordType::SOA) || keep_own_ns && at_apex(record, RecordType::NS)))
            .cloned(),
    );
    records
}

/// Count what changes between two record lists, by record set.
fn difference(before: Vec<RecordBuf>, after: Vec<RecordBuf>) -> Applied {
    let (before, after) = (record_sets(before), record_sets(after));
    let mut applied = Applied::default();
    for (key, set) in &after {
        match before.get(key) {
            None => applied.created += 1,
            Some(old) if !same_records(old, set) => applied.changed += 1,
            Some(_) => {}
        }
    }
    applied.deleted = before.keys().filter(|key| !after.contains_key(*key)).count();
    applied
}

/// Put `copy` into the private hosted zone `id` as one change. With
/// `force`, the zone is made live again even when no record changes (it
/// was answering SERVFAIL). `Ok(None)` when the zone is gone.
fn apply_copy(m: &mut Mutation<'_>, id: &str, copy: &Zone, force: bool) -> Result<Option<Applied>, ApiError> {
    let Some(index) = m.config.private_hosted_zones.iter().position(|zone| zone.zone_id() == id) else {
        return Ok(None);
    };
    let Some(config) = m.config.private_hosted_zones.get(index) else { return Ok(None) };
    let built = m
        .config
        .hosted_zone(config)
        .map_err(|error| ApiError::internal(format!("the zone {id} cannot be read: {error}")))?;
    let records = merged_records(&built, copy);
    let mut applied = difference(built.records().cloned().collect(), records.clone());
    applied.serial = copy.serial().0;
    if applied.is_empty() && !force {
        return Ok(Some(applied));
    }
    if m.config.quotas.enabled && records.len() > m.config.quotas.records_per_hosted_zone as usize {
        return Err(ApiError::internal(format!(
            "the primary's copy has {} records; the quota is {} (quotas.records_per_hosted_zone)",
            records.len(),
            m.config.quotas.records_per_hosted_zone
        )));
    }
    let Some(zone) = m.config.private_hosted_zones.get_mut(index) else { return Ok(None) };
    if !applied.is_empty() {
        zone.records = Arc::new(records.iter().map(ToString::to_string).collect());
        zone.file = None;
        zone.ttl = None;
        let change = change_id();
        let comment = format!("signpost secondary: zone transfer at serial {}", applied.serial);
        m.record_change(&change, ChangeRecord { submitted: m.now.clone(), comment: Some(comment) });
    }
    m.touch(Kind::PrivateHostedZone, id);
    Ok(Some(applied))
}

/// The running secondary zones of an endpoint.
pub struct Secondaries {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Secondaries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secondaries").finish_non_exhaustive()
    }
}

/// One running zone.
struct Running {
    planned: PlannedSecondary,
    task: SecondaryTask,
}

/// A new copy (or `None`: expired) of a zone, by id.
type Copy = (String, Option<Arc<Zone>>);

impl Secondaries {
    /// Follow the model of `control`: start a refresh task for each
    /// secondary private hosted zone, stop those that go, and apply each
    /// copy. Last good copies are kept as master files in `files_dir/secondaries`.
    pub async fn start(control: Arc<ControlPlane<EndpointRuntime>>) -> Self {
        let (transfers, expired, files_dir) = control
            .with_runtime(|runtime| (runtime.transfers(), runtime.expired_zones(), runtime.files_dir().to_path_buf()))
            .await;
        let stop = CancellationToken::new();
        let supervisor = Supervisor {
            control,
            transfers,
            expired,
            copies_dir: files_dir.join("secondaries"),
            running: BTreeMap::new(),
            latest: BTreeMap::new(),
        };
        let task = tokio::spawn(supervisor.run(stop.clone()));
        Self { stop, task }
    }

    /// Stop every refresh task.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

struct Supervisor {
    control: Arc<ControlPlane<EndpointRuntime>>,
    transfers: Arc<ZoneTransfers>,
    expired: ExpiredZones,
    copies_dir: PathBuf,
    running: BTreeMap<String, Running>,
    /// The last copy of each zone, and the records it was applied as (to
    /// see when a reload of the file put other records in the zone).
    latest: BTreeMap<String, LastCopy>,
}

/// A zone's last copy from its primary.
struct LastCopy {
    copy: Arc<Zone>,
    /// The zone's records once the copy was applied (`None` until it was).
    written: Option<Arc<Vec<String>>>,
}

impl Supervisor {
    async fn run(mut self, stop: CancellationToken) {
        let mut models = self.control.subscribe();
        let (sender, mut copies) = mpsc::unbounded_channel::<Copy>();
        loop {
            let model = models.borrow_and_update().clone();
            self.reconcile(&model, &sender);
            self.resync(&model).await;
            tokio::select! {
                changed = models.changed() => if changed.is_err() { break },
                Some((id, copy)) = copies.recv() => self.take_copy(id, copy).await,
                _ = stop.cancelled() => break,
            }
        }
        for (_, running) in std::mem::take(&mut self.running) {
            running.task.stop().await;
        }
    }

    /// Start, restart and stop refresh tasks to match the model.
    fn reconcile(&mut self, model: &EndpointConfig, sender: &mpsc::UnboundedSender<Copy>) {
        let planned = model.secondaries().unwrap_or_default();
        let wanted: BTreeSet<&str> = planned.iter().map(|zone| zone.zone_id.as_str()).collect();
        let gone: Vec<String> = self
            .running
            .iter()
            .filter(|(id, running)| {
                !wanted.contains(id.as_str()) || planned.iter().all(|zone| zone != &running.planned)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(running) = self.running.remove(&id) {
                tracing::info!(zone = %running.planned.apex, id, "secondary: stopped");
                // Given out by transfer too, it stays so: only NOTIFY stops.
                self.transfers.refuse_notify(&running.planned.apex);
                self.latest.remove(&id);
                self.expired.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
                tokio::spawn(running.task.stop());
            }
        }
        for zone in planned {
            if self.running.contains_key(&zone.zone_id) {
                continue;
            }
            let key = zone.tsig_key();
            let primaries: Vec<String> = zone.primaries.iter().map(ToString::to_string).collect();
            tracing::info!(zone = %zone.apex, id = zone.zone_id, primaries = primaries.join(", "), "secondary: following");
            if let Err(error) = std::fs::create_dir_all(&self.copies_dir) {
                tracing::warn!(path = %self.copies_dir.display(), %error, "secondary: cannot keep copies on disk");
            }
            let file_name: String = zone
                .zone_id
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
                .collect();
            let secondary = SecondaryZone {
                apex: zone.apex.clone(),
                primaries: zone
                    .primaries
                    .iter()
                    .map(|primary| TransferClient::new(*primary).with_key(key.clone()))
                    .collect(),
                copy: Some(self.copies_dir.join(format!("{file_name}.zone"))),
                allow_notify: zone.allow_notify.clone(),
                notify_keys: key.into_iter().collect(),
                serve: None,
            };
            let (id, sender) = (zone.zone_id.clone(), sender.clone());
            let publish: Publish = Arc::new(move |_, copy| {
                let _ = sender.send((id.clone(), copy));
            });
            let task = secondary.spawn(self.transfers.clone(), publish);
            self.running.insert(zone.zone_id.clone(), Running { planned: zone, task });
        }
    }

    /// After a change made elsewhere (a reload of the file, an API call),
    /// put the last copy back into zones whose records it replaced.
    async fn resync(&mut self, model: &EndpointConfig) {
        let stale: Vec<(String, Arc<Zone>)> = self
            .latest
            .iter()
            .filter(|(id, LastCopy { written, .. })| {
                let current = model.private_hosted_zones.iter().find(|zone| zone.zone_id() == id.as_str());
                match (current, written) {
                    (Some(zone), Some(written)) => !Arc::ptr_eq(&zone.records, written),
                    (Some(_), None) => true,
                    (None, _) => false,
                }
            })
            .map(|(id, last)| (id.clone(), last.copy.clone()))
            .collect();
        for (id, copy) in stale {
            self.apply(&id, copy, false).await;
        }
    }

    async fn take_copy(&mut self, id: String, copy: Option<Arc<Zone>>) {
        let Some(running) = self.running.get(&id) else { return };
        let apex = running.planned.apex.clone();
        match copy {
            Some(copy) => {
                let was_expired = self.expired.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
                self.latest.insert(id.clone(), LastCopy { copy: copy.clone(), written: None });
                self.apply(&id, copy, was_expired).await;
            }
            None => {
                tracing::warn!(zone = %apex, id, "secondary: past its expire time; answering SERVFAIL");
                self.expired.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id.clone());
                let outcome = self
                    .control
                    .mutate(|m| {
                        if m.config.private_hosted_zones.iter().any(|zone| zone.zone_id() == id) {
                            m.touch(Kind::PrivateHostedZone, &id);
                        }
                        Ok(())
                    })
                    .await;
                if let Err(error) = outcome {
                    tracing::error!(zone = %apex, id, %error, "secondary: cannot withdraw the expired zone");
                }
            }
        }
    }

    async fn apply(&mut self, id: &str, copy: Arc<Zone>, force: bool) {
        match self.control.mutate(|m| apply_copy(m, id, &copy, force)).await {
            Ok(Some(applied)) if !applied.is_empty() || force => tracing::info!(
                zone = %copy.apex(), id, serial = applied.serial, created = applied.created,
                changed = applied.changed, deleted = applied.deleted,
                "secondary: applied the primary's copy to the private hosted zone"
            ),
            Ok(_) => {}
            // Not tried again on every model change: the next copy will be.
            Err(error) => tracing::error!(zone = %copy.apex(), id, %error, "secondary: the copy cannot be applied"),
        }
        let written = self
            .control
            .snapshot()
            .private_hosted_zones
            .iter()
            .find(|zone| zone.zone_id() == id)
            .map(|zone| zone.records.clone());
        if let Some(last) = self.latest.get_mut(id) {
            last.written = written;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(apex: &str, records: &[&str]) -> Zone {
        let apex: signpost_wire::NameBuf = apex.parse().unwrap();
        let records: Vec<RecordBuf> =
            records.iter().map(|text| RecordBuf::from_presentation(text, Some(&apex), Some(300)).unwrap()).collect();
        Zone::from_records(apex, records).unwrap()
    }

    #[test]
    fn route53_keeps_its_soa_and_ns_and_takes_the_serial_and_the_rest() {
        let phz = zone(
            "corp.example.",
            &[
                "@ 900 IN SOA ns-1536.awsdns-00.co.uk. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400",
                "@ 172800 IN NS ns-1536.awsdns-00.co.uk.",
                "old A 10.0.0.1",
            ],
        );
        let primary = zone(
            "corp.example.",
            &[
                "@ 3600 IN SOA ns1.corp.example. admin.corp.example. 2024010101 60 30 600 60",
                "@ 3600 IN NS ns1.corp.example.",
                "ns1 A 192.0.2.53",
                "www A 10.1.0.10",
            ],
        );
        let merged = merged_records(&phz, &primary);
        let text: Vec<String> = merged.iter().map(ToString::to_string).collect();
        assert!(text[0].contains("awsdns-hostmaster.amazon.com. 2024010101 7200"), "{text:?}");
        assert!(text.iter().any(|line| line.contains("NS ns-1536.awsdns-00.co.uk.")));
        assert!(!text.iter().any(|line| line.contains("NS ns1.corp.example.")));
        assert!(text.iter().any(|line| line.starts_with("www.corp.example.")));
        assert!(!text.iter().any(|line| line.starts_with("old.")));
        let applied = difference(phz.records().cloned().collect(), merged);
        // www and ns1 created, SOA changed, old deleted.
        assert_eq!((applied.created, applied.changed, applied.deleted), (2, 1, 1));
    }

    #[test]
    fn the_same_copy_changes_nothing() {
        let phz = zone("corp.example.", &["@ 900 IN SOA ns. host. 5 7200 900 1209600 86400", "www A 10.0.0.1"]);
        let primary = zone("corp.example.", &["@ 900 IN SOA p. h. 5 60 30 600 60", "www A 10.0.0.1"]);
        assert!(difference(phz.records().cloned().collect(), merged_records(&phz, &primary)).is_empty());
    }
}
