//! The auth zones the forwarder gives out by transfer: kept current when a
//! reload reads their files again, and their secondaries told by NOTIFY
//! (RFC 1996) at start-up and whenever the serial moves on. Unbound gives
//! no zone out by transfer and sends no NOTIFY; `allow_transfer` and
//! `notify` are Signpost's (docs/zone-transfers.md).

use std::sync::Arc;

use signpost_rules::Zone;
use signpost_server::ServerHandle;
use signpost_server::transfer::{Notifier, ZoneTransfers};

use crate::AuthZone;

/// The zones given out, and the NOTIFY tasks of their secondaries.
pub(crate) struct GivenOut {
    zones: Vec<AuthZone>,
    transfers: Arc<ZoneTransfers>,
    notifier: Arc<Notifier>,
}

impl GivenOut {
    pub(crate) fn new(zones: &[AuthZone], transfers: Arc<ZoneTransfers>) -> Self {
        Self { zones: zones.to_vec(), transfers, notifier: Arc::new(Notifier::default()) }
    }

    /// The notifier, for the secondaries' tasks to tell their own secondaries of each copy.
    pub(crate) fn notifier(&self) -> Arc<Notifier> {
        self.notifier.clone()
    }

    /// After a reload: each zone read from its file and given out takes the
    /// file's version; when its serial moved on, its secondaries are told.
    pub(crate) fn reloaded(&self, server: &ServerHandle) {
        let rules = server.rules();
        for auth in self.zones.iter().filter(|auth| auth.primaries.is_empty()) {
            if !self.transfers.serves(&auth.apex) {
                continue;
            }
            let Some(next) = rules.zone(&auth.id) else { continue };
            let previous = self.transfers.zone(&auth.apex);
            if previous.as_deref() == Some(next) {
                continue;
            }
            let newer = previous.as_ref().is_none_or(|previous| next.serial().is_newer_than(previous.serial()));
            if !newer {
                tracing::warn!(
                    zone = %auth.apex, serial = %next.serial(),
                    "auth zone changed on reload without a newer serial: its secondaries keep the old copy"
                );
            }
            self.transfers.update(&auth.apex, Some(Arc::new(next.clone())));
            if newer {
                notify(&self.notifier, auth, next);
            }
        }
    }
}

/// Tell `auth`'s secondaries that it is now at `zone`'s SOA.
pub(crate) fn notify(notifier: &Notifier, auth: &AuthZone, zone: &Zone) {
    notifier.notify(&auth.apex, zone.soa().clone(), auth.notify.clone(), auth.key());
}
