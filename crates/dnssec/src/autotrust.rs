//! RFC 5011 automated updates of trust anchors, as unbound's
//! `auto-trust-anchor-file` keeps them.
//!
//! A [`TrustPoint`] is one zone's state file: its keys, each in an RFC 5011
//! state (unbound writes `;;state=2 [  VALID  ]` after each key), and the
//! probe bookkeeping unbound keeps in `;;` header lines. Each time the
//! validator fetches the zone's DNSKEY set it passes the set here
//! ([`TrustPoint::handle_dnskeys`]): a self-signed key with the REVOKE bit
//! moves its anchor to REVOKED at once; if the set is signed by a trusted
//! key, a new KSK (SEP bit) enters ADDPEND and becomes VALID after the
//! add hold-down (30 days) if it was seen at least twice; a trusted key no
//! longer published becomes MISSING (and VALID again when it returns).
//! [`TrustPoint::to_text`] writes the file back in unbound's format, so
//! unbound can take over the same file. Nothing here does I/O or reads a
//! clock: time comes in as seconds since the epoch.
//!
//! The state machine follows RFC 5011 §4 and unbound's reading of it
//! (validator/autotrust.c): the pending count of two sightings, DS anchors
//! turned into the DNSKEYs they match on the first successful probe, ZSK
//! anchors dropped once a KSK is VALID, MISSING keys kept for
//! `keep-missing`.

use std::fmt::Write as _;

use signpost_wire::{NameBuf, RecordType, base64_encode};

use crate::Error;
use crate::anchor::{Anchor, AnchorRecord, file_entries, parse_anchor_record};
use crate::crypto;
use crate::records::{Dnskey, Ds, FLAG_REVOKE, FLAG_SEP};
use crate::rrset::{self, Rrset, Skew, Window};

/// Sightings a new key needs before it may become VALID (unbound's `MIN_PENDINGCOUNT`).
const MIN_PENDING_COUNT: u8 = 2;

/// A key's RFC 5011 state, numbered as unbound writes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyState {
    /// Seen for the first time in this probe, not yet pending.
    Start,
    /// Waiting out the add hold-down.
    AddPend,
    /// A trust anchor.
    Valid,
    /// A trust anchor no longer published.
    Missing,
    /// Revoked by its owner: not trusted, kept for the remove hold-down.
    Revoked,
    /// Gone: not written back.
    Removed,
}

impl KeyState {
    /// Unbound's number for the state (`;;state=N`).
    pub fn number(self) -> u8 {
        match self {
            Self::Start => 0,
            Self::AddPend => 1,
            Self::Valid => 2,
            Self::Missing => 3,
            Self::Revoked => 4,
            Self::Removed => 5,
        }
    }

    fn from_number(number: u64) -> Self {
        match number {
            1 => Self::AddPend,
            2 => Self::Valid,
            3 => Self::Missing,
            4 => Self::Revoked,
            5 => Self::Removed,
            // unbound: "has undefined state, considered NewKey".
            _ => Self::Start,
        }
    }

    /// The name unbound writes between brackets, padded as it pads it.
    fn label(self) -> &'static str {
        match self {
            Self::Start => "  START  ",
            Self::AddPend => " ADDPEND ",
            Self::Valid => "  VALID  ",
            Self::Missing => " MISSING ",
            Self::Revoked => " REVOKED ",
            Self::Removed => " REMOVED ",
        }
    }

    /// A short lowercase name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::AddPend => "addpend",
            Self::Valid => "valid",
            Self::Missing => "missing",
            Self::Revoked => "revoked",
            Self::Removed => "removed",
        }
    }

    /// Whether a key in this state is a trust anchor.
    pub fn is_trusted(self) -> bool {
        matches!(self, Self::Valid | Self::Missing)
    }
}

/// One key (or, until the first probe, DS record) of a trust point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackedKey {
    record: AnchorRecord,
    /// The TTL written with the record.
    pub ttl: u32,
    /// Where the key stands.
    pub state: KeyState,
    /// How often it was seen while pending.
    pub pending_count: u8,
    /// When its state last changed (seconds since the epoch; 0: never, as configured).
    pub last_change: u64,
    /// Seen in the DNSKEY set being processed.
    fetched: bool,
}

impl TrackedKey {
    /// The DNSKEY, unless this is a DS record from the file.
    pub fn dnskey(&self) -> Option<&Dnskey> {
        match &self.record {
            AnchorRecord::Dnskey(key) => Some(key),
            AnchorRecord::Ds(_) => None,
        }
    }

    /// The key tag (of the DNSKEY as stored, or the DS's).
    pub fn key_tag(&self) -> u16 {
        match &self.record {
            AnchorRecord::Dnskey(key) => key.key_tag(),
            AnchorRecord::Ds(ds) => ds.key_tag,
        }
    }

    fn is_sep_key(&self) -> bool {
        self.dnskey().is_some_and(|key| key.flags & FLAG_SEP != 0)
    }

    /// Same key as `other`, the REVOKE bit aside (unbound's `dnskey_compare_skip_revbit`).
    fn same_key(&self, other: &Dnskey) -> bool {
        self.dnskey().is_some_and(|key| {
            key.flags | FLAG_REVOKE == other.flags | FLAG_REVOKE
                && key.protocol == other.protocol
                && key.algorithm == other.algorithm
                && key.public_key == other.public_key
        })
    }
}

/// unbound's `add-holddown`, `del-holddown` and `keep-missing`, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldDown {
    /// How long a new key waits in ADDPEND (RFC 5011: 30 days).
    pub add: u64,
    /// How long a revoked key is kept before removal (30 days).
    pub remove: u64,
    /// How long a MISSING key is kept while another is VALID; 0 keeps it for ever (366 days).
    pub keep_missing: u64,
}

impl Default for HoldDown {
    fn default() -> Self {
        Self { add: 30 * 86_400, remove: 30 * 86_400, keep_missing: 366 * 86_400 }
    }
}

/// A key's change of state in a probe, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyEvent {
    /// The key's tag (as stored: a revoked key's tag has the REVOKE bit in it).
    pub key_tag: u16,
    /// Its algorithm.
    pub algorithm: u8,
    /// The state before.
    pub from: KeyState,
    /// The state after.
    pub to: KeyState,
}

/// What a probe did to a trust point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    /// The DNSKEY set was signed by a trusted key (the probe succeeded).
    pub verified: bool,
    /// The state file should be written back (as unbound writes it after each probe).
    pub write: bool,
    /// The set of trusted keys changed: the validator's anchor must follow.
    pub anchor_changed: bool,
    /// Each key's change of state.
    pub events: Vec<KeyEvent>,
}

/// One zone's RFC 5011 state: unbound's `auto-trust-anchor-file`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustPoint {
    /// The zone.
    pub zone: NameBuf,
    /// Its class (1, IN).
    pub class: u16,
    keys: Vec<TrackedKey>,
    /// When the DNSKEY set was last looked at.
    pub last_queried: u64,
    /// When a DNSKEY set last verified.
    pub last_success: u64,
    /// When unbound would probe next.
    pub next_probe_time: u64,
    /// Probes failed in a row since the last success.
    pub query_failed: u8,
    /// Seconds between probes (RFC 5011 §2.3).
    pub query_interval: u32,
    /// Seconds before a failed probe is retried.
    pub retry_time: u32,
    /// Every trusted key was revoked: the zone has no anchor any more.
    pub revoked: bool,
}

impl TrustPoint {
    /// Read a state file as unbound writes it (or as unbound-anchor first
    /// writes it: DS or DNSKEY records without states, which are VALID).
    /// `file` names the source in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, Error> {
        let error = |line, rule| Error::TrustAnchor { file: file.to_owned(), line, rule };
        let mut point = Self {
            zone: NameBuf::root(),
            class: 1,
            keys: Vec::new(),
            last_queried: 0,
            last_success: 0,
            next_probe_time: 0,
            query_failed: 0,
            query_interval: 0,
            retry_time: 0,
            revoked: false,
        };
        let mut zone: Option<NameBuf> = None;
        for (index, line) in text.lines().enumerate() {
            let number = |prefix: &str| {
                line.strip_prefix(prefix).and_then(|rest| {
                    let digits: String = rest.trim_start().chars().take_while(char::is_ascii_digit).collect();
                    digits.parse::<u64>().ok()
                })
            };
            if let Some(id) = line.strip_prefix(";;id: ") {
                let mut words = id.split_whitespace();
                let name = words
                    .next()
                    .and_then(|word| NameBuf::from_presentation(word).ok())
                    .ok_or_else(|| error(index + 1, "the ;;id: line needs a zone name"))?;
                zone = Some(name.to_lowercase());
                point.class = words.next().and_then(|word| word.parse().ok()).unwrap_or(1);
            } else if line.starts_with(";;REVOKED") {
                // unbound stops reading here: the zone has no anchor.
                point.revoked = true;
            } else if let Some(value) = number(";;last_queried:") {
                point.last_queried = value;
            } else if let Some(value) = number(";;last_success:") {
                point.last_success = value;
            } else if let Some(value) = number(";;next_probe_time:") {
                point.next_probe_time = value;
            } else if let Some(value) = number(";;query_failed:") {
                point.query_failed = u8::try_from(value).unwrap_or(u8::MAX);
            } else if let Some(value) = number(";;query_interval:") {
                point.query_interval = u32::try_from(value).unwrap_or(u32::MAX);
            } else if let Some(value) = number(";;retry_time:") {
                point.retry_time = u32::try_from(value).unwrap_or(u32::MAX);
            }
        }
        for entry in file_entries(text, file)? {
            let (owner, ttl, record) = parse_anchor_record(&entry.code, file, entry.line)?;
            match &zone {
                Some(zone) if *zone != owner => {
                    return Err(error(entry.line, "an auto-trust-anchor-file holds the keys of one zone only"));
                }
                Some(_) => {}
                None => zone = Some(owner),
            }
            point.keys.push(TrackedKey {
                record,
                ttl: ttl.unwrap_or(0),
                state: entry.number_after("state=").map_or(KeyState::Valid, KeyState::from_number),
                pending_count: entry.number_after("count=").map_or(0, |count| u8::try_from(count).unwrap_or(u8::MAX)),
                last_change: entry.number_after("lastchange=").unwrap_or(0),
                fetched: false,
            });
        }
        match zone {
            Some(zone) => point.zone = zone,
            None => return Err(error(1, "no DS or DNSKEY record in the auto-trust-anchor-file")),
        }
        if point.keys.is_empty() && !point.revoked {
            return Err(error(1, "no DS or DNSKEY record in the auto-trust-anchor-file"));
        }
        Ok(point)
    }

    /// The keys and DS records, in file order.
    pub fn keys(&self) -> &[TrackedKey] {
        &self.keys
    }

    /// The trust anchor the validator uses: DS records and keys in state
    /// VALID or MISSING; `None` once every key was revoked.
    pub fn anchor(&self) -> Option<Anchor> {
        if self.revoked {
            return None;
        }
        let mut anchor = Anchor { name: self.zone.clone(), ds: Vec::new(), keys: Vec::new() };
        for key in self.keys.iter().filter(|key| key.state.is_trusted()) {
            match &key.record {
                AnchorRecord::Ds(ds) => anchor.ds.push(ds.clone()),
                AnchorRecord::Dnskey(dnskey) => anchor.keys.push(dnskey.clone()),
            }
        }
        (!anchor.ds.is_empty() || !anchor.keys.is_empty()).then_some(anchor)
    }

    /// Process the zone's DNSKEY set (with its RRSIGs) fetched at `now`:
    /// RFC 5011's events for each key. See the module documentation.
    pub fn handle_dnskeys(&mut self, set: &Rrset, now: u64, hold: HoldDown, skew: Skew) -> Probe {
        let mut probe = Probe::default();
        if self.revoked || set.rtype != RecordType::DNSKEY || set.owner != self.zone {
            return probe;
        }
        let trusted_before = self.anchor();
        self.last_queried = now;
        let mut keys: Vec<Dnskey> = Vec::with_capacity(set.rdata.len());
        for data in &set.rdata {
            match Dnskey::parse(data) {
                Ok(key) => keys.push(key),
                Err(_) => return probe,
            }
        }
        // Time alone may end a hold-down.
        for index in 0..self.keys.len() {
            self.add_time(index, now, hold, &mut probe);
        }
        // Self-signed revoked keys count whoever else signed the set (RFC 5011 §2.1).
        for key in keys.iter().filter(|key| key.flags & FLAG_SEP != 0 && key.flags & FLAG_REVOKE != 0) {
            let Some(index) = self.keys.iter().position(|tracked| tracked.same_key(key)) else { continue };
            if self_signed(set, key, now, skew)
                && let Some(tracked) = self.keys.get_mut(index)
                && tracked.state.is_trusted()
            {
                if let AnchorRecord::Dnskey(stored) = &mut tracked.record {
                    stored.flags |= FLAG_REVOKE;
                }
                self.set_state(index, KeyState::Revoked, now, &mut probe);
            }
        }
        if self.anchor().is_none() {
            // Every anchor revoked: the zone is no longer trusted (unbound's autr_tp_remove).
            self.revoked = true;
            self.last_success = now;
            probe.verified = true;
            probe.write = true;
            probe.anchor_changed = true;
            return probe;
        }
        if !self.verifies(set, &keys, now, skew) {
            // Only after an earlier success does a failure count (and get written).
            if self.last_success != 0 {
                self.query_failed = self.query_failed.saturating_add(1);
                probe.write = true;
            }
            probe.anchor_changed = self.anchor() != trusted_before;
            return probe;
        }
        probe.verified = true;
        probe.write = true;
        self.last_success = now;
        self.query_failed = 0;
        self.update_events(set, &keys, now);
        for index in 0..self.keys.len() {
            if self.keys.get(index).is_some_and(TrackedKey::is_sep_key) {
                self.state_update(index, now, hold, &mut probe);
            }
        }
        self.remove_missing(now, hold, &mut probe);
        // Only keys are kept: DS records have done their work, START and REMOVED entries go.
        self.keys
            .retain(|key| key.dnskey().is_some() && key.state != KeyState::Start && key.state != KeyState::Removed);
        for key in &mut self.keys {
            key.fetched = false;
            if key.state != KeyState::AddPend {
                key.pending_count = 0;
            }
        }
        self.next_probe_time = now + u64::from(self.query_interval);
        probe.anchor_changed = self.anchor() != trusted_before;
        probe
    }

    /// Whether a trusted key (or one a trusted DS names) signs the set.
    fn verifies(&self, set: &Rrset, keys: &[Dnskey], now: u64, skew: Skew) -> bool {
        let Some(anchor) = self.anchor() else { return false };
        let dses: Vec<&Ds> = anchor.ds.iter().collect();
        let entry: Vec<Dnskey> = keys
            .iter()
            .filter(|key| {
                anchor.keys.iter().any(|anchored| {
                    anchored.flags == key.flags
                        && anchored.algorithm == key.algorithm
                        && anchored.public_key == key.public_key
                }) || crate::validator::ds_matches(&dses, &self.zone, key)
            })
            .cloned()
            .collect();
        !entry.is_empty() && rrset::verify_rrset(set, &self.zone, &entry, now, skew).is_ok()
    }

    /// Note which keys the set holds, adding new KSKs (unbound's update_events),
    /// and derive the probe intervals (RFC 5011 §2.3).
    fn update_events(&mut self, set: &Rrset, keys: &[Dnskey], now: u64) {
        for key in &mut self.keys {
            key.fetched = false;
        }
        let dses: Vec<Ds> = self
            .keys
            .iter()
            .filter_map(|key| match &key.record {
                AnchorRecord::Ds(ds) if key.state.is_trusted() => Some(ds.clone()),
                _ => None,
            })
            .collect();
        for key in keys {
            if key.flags & FLAG_SEP == 0 || key.flags & FLAG_REVOKE != 0 || !crypto::algorithm_supported(key.algorithm)
            {
                continue;
            }
            let index = match self.keys.iter().position(|tracked| tracked.same_key(key)) {
                Some(index) => index,
                None => {
                    // First seen: a key a configured DS names is VALID at once.
                    let dses: Vec<&Ds> = dses.iter().collect();
                    let state = if crate::validator::ds_matches(&dses, &self.zone, key) {
                        KeyState::Valid
                    } else {
                        KeyState::Start
                    };
                    self.keys.push(TrackedKey {
                        record: AnchorRecord::Dnskey(key.clone()),
                        ttl: set.ttl,
                        state,
                        pending_count: 0,
                        last_change: 0,
                        fetched: false,
                    });
                    self.keys.len() - 1
                }
            };
            if let Some(tracked) = self.keys.get_mut(index) {
                tracked.fetched = true;
                tracked.pending_count = tracked.pending_count.saturating_add(1).min(250);
            }
        }
        // MIN(15 days, TTL/2, expiry/2) and MIN(1 day, TTL/10, expiry/10), at least an hour.
        let expiry = set
            .signatures
            .iter()
            .filter_map(|(_, sig)| u64::from(sig.expiration).checked_sub(now))
            .filter(|left| *left > 0)
            .min()
            .unwrap_or(15 * 86_400)
            .min(15 * 86_400);
        let ttl = u64::from(set.ttl);
        let interval = (15 * 86_400).min(ttl / 2).min(expiry / 2).max(3600);
        let retry = 86_400u64.min(ttl / 10).min(expiry / 10).max(3600);
        self.query_interval = u32::try_from(interval).unwrap_or(u32::MAX);
        self.retry_time = u32::try_from(retry).unwrap_or(u32::MAX);
    }

    fn set_state(&mut self, index: usize, state: KeyState, now: u64, probe: &mut Probe) {
        let Some(key) = self.keys.get_mut(index) else { return };
        let (key_tag, algorithm) = (key.key_tag(), key.dnskey().map_or(0, |key| key.algorithm));
        probe.events.push(KeyEvent { key_tag, algorithm, from: key.state, to: state });
        key.state = state;
        key.last_change = now;
    }

    /// Seconds past `holddown` since the key's last change (0: not yet, or the clock went back).
    fn past_holddown(&self, index: usize, now: u64, holddown: u64) -> u64 {
        self.keys.get(index).map_or(0, |key| now.saturating_sub(key.last_change).saturating_sub(holddown))
    }

    /// AddTime: a pending key seen often enough and past the add hold-down becomes VALID.
    fn add_time(&mut self, index: usize, now: u64, hold: HoldDown, probe: &mut Probe) {
        let Some(key) = self.keys.get(index) else { return };
        if key.state != KeyState::AddPend || !key.is_sep_key() {
            return;
        }
        if self.past_holddown(index, now, hold.add) > 0 && key.pending_count >= MIN_PENDING_COUNT {
            self.set_state(index, KeyState::Valid, now, probe);
            if let Some(key) = self.keys.get_mut(index) {
                key.pending_count = 0;
            }
        }
    }

    /// RFC 5011 §4.4's transitions for one KSK after a verified probe.
    fn state_update(&mut self, index: usize, now: u64, hold: HoldDown, probe: &mut Probe) {
        let Some(key) = self.keys.get(index) else { return };
        let fetched = key.fetched;
        match key.state {
            KeyState::Start if fetched => self.set_state(index, KeyState::AddPend, now, probe),
            KeyState::AddPend if !fetched => {
                self.set_state(index, KeyState::Start, now, probe);
                if let Some(key) = self.keys.get_mut(index) {
                    key.pending_count = 0;
                }
            }
            KeyState::AddPend => self.add_time(index, now, hold, probe),
            KeyState::Valid if !fetched => self.set_state(index, KeyState::Missing, now, probe),
            KeyState::Valid if key.last_change == 0 => {
                // First seen since it was configured: start its clock.
                if let Some(key) = self.keys.get_mut(index) {
                    key.last_change = now;
                }
            }
            KeyState::Missing if fetched => self.set_state(index, KeyState::Valid, now, probe),
            KeyState::Revoked if fetched => {
                if let Some(key) = self.keys.get_mut(index) {
                    key.last_change = now;
                }
            }
            KeyState::Revoked if self.past_holddown(index, now, hold.remove) > 0 => {
                self.set_state(index, KeyState::Removed, now, probe);
            }
            _ => {}
        }
    }

    /// Drop ZSK anchors once a KSK is VALID, and MISSING keys older than
    /// `keep-missing` (unbound's remove_missing_trustanchors).
    fn remove_missing(&mut self, now: u64, hold: HoldDown, probe: &mut Probe) {
        let mut valid = self.keys.iter().filter(|key| key.is_sep_key() && key.state == KeyState::Valid).count();
        if valid == 0 {
            // A configured ZSK anchor vouches for the pending KSKs at once.
            let configured_zsk = self.keys.iter().any(|key| {
                key.dnskey().is_some() && !key.is_sep_key() && key.state == KeyState::Valid && key.last_change == 0
            });
            if !configured_zsk {
                return;
            }
            for index in 0..self.keys.len() {
                if self.keys.get(index).is_some_and(|key| key.is_sep_key() && key.state == KeyState::AddPend) {
                    self.set_state(index, KeyState::Valid, now, probe);
                    valid += 1;
                }
            }
            if valid == 0 {
                return;
            }
        }
        for index in 0..self.keys.len() {
            let Some(key) = self.keys.get(index) else { continue };
            if key.state == KeyState::Start || key.dnskey().is_none() {
                continue;
            }
            // ZSKs go once a KSK is VALID; MISSING KSKs after keep-missing.
            let expired_missing = key.state == KeyState::Missing
                && hold.keep_missing != 0
                && self.past_holddown(index, now, hold.keep_missing) > 0;
            if !key.is_sep_key() || expired_missing {
                self.set_state(index, KeyState::Removed, now, probe);
            }
        }
    }

    /// The state file in unbound's format (validator/autotrust.c
    /// autr_write_contents): the header lines, then each key with its state.
    /// Dates in the comments are UTC.
    pub fn to_text(&self) -> String {
        let mut out = String::from("; autotrust trust anchor file\n");
        if self.revoked {
            out.push_str(
                ";;REVOKED\n; The zone has all keys revoked, and is\n; considered as if it has no trust anchors.\n\
                 ; the remainder of the file is the last probe.\n; to restart the trust anchor, overwrite this file.\n\
                 ; with one containing valid DNSKEYs or DSes.\n",
            );
        }
        let _ = writeln!(out, ";;id: {} {}", self.zone, self.class);
        let _ = writeln!(out, ";;last_queried: {} ;;{}", self.last_queried, ctime(self.last_queried));
        let _ = writeln!(out, ";;last_success: {} ;;{}", self.last_success, ctime(self.last_success));
        let _ = writeln!(out, ";;next_probe_time: {} ;;{}", self.next_probe_time, ctime(self.next_probe_time));
        let _ = writeln!(out, ";;query_failed: {}", self.query_failed);
        let _ = writeln!(out, ";;query_interval: {}", self.query_interval);
        let _ = writeln!(out, ";;retry_time: {}", self.retry_time);
        for key in &self.keys {
            let Some(dnskey) = key.dnskey() else { continue };
            if key.state == KeyState::Start || key.state == KeyState::Removed {
                continue;
            }
            let mut encoded = String::new();
            let _ = base64_encode(&dnskey.public_key, &mut encoded);
            let kind = if dnskey.flags & FLAG_SEP != 0 { "ksk" } else { "zsk" };
            let _ = writeln!(
                out,
                "{}\t{}\tIN\tDNSKEY\t{} {} {} {} ;{{id = {} ({kind}), size = {}b}} ;;state={} [{}] ;;count={} ;;lastchange={} ;;{}",
                self.zone,
                key.ttl,
                dnskey.flags,
                dnskey.protocol,
                dnskey.algorithm,
                encoded,
                dnskey.key_tag(),
                key_size(dnskey),
                key.state.number(),
                key.state.label(),
                key.pending_count,
                key.last_change,
                ctime(key.last_change),
            );
        }
        out
    }
}

/// Whether `key` signed `set` itself (a revocation is only believed from the key revoked).
fn self_signed(set: &Rrset, key: &Dnskey, now: u64, skew: Skew) -> bool {
    let tag = key.key_tag();
    set.signatures.iter().any(|(_, rrsig)| {
        rrsig.key_tag == tag
            && rrsig.algorithm == key.algorithm
            && rrsig.signer == set.owner
            && matches!(rrset::window(rrsig, now, skew), Window::Valid(_))
            && rrset::signed_data(set, rrsig)
                .is_some_and(|data| crypto::verify(key.algorithm, &key.public_key, &data, &rrsig.signature))
    })
}

/// The key's size in bits, as unbound's comment gives it.
fn key_size(key: &Dnskey) -> usize {
    match key.algorithm {
        // RSA: an exponent length (one octet, or zero and two), the exponent, the modulus.
        5 | 7 | 8 | 10 => {
            let (length, skip) = match key.public_key.first() {
                Some(0) => (key.public_key.get(1..3).map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]]))), 3),
                Some(&length) => (usize::from(length), 1),
                None => (0, 0),
            };
            key.public_key.len().saturating_sub(skip + length) * 8
        }
        13 | 15 => 256,
        14 => 384,
        _ => key.public_key.len() * 8,
    }
}

/// `Sat Aug 12 14:55:28 2017`, as ctime(3) writes it (in UTC).
fn ctime(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|seconds| jiff::Timestamp::from_second(seconds).ok())
        .map_or_else(String::new, |timestamp| timestamp.strftime("%a %b %e %H:%M:%S %Y").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Rrsig;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    use signpost_wire::Class;

    const NOW: u64 = 1_780_272_000;
    const DAY: u64 = 86_400;

    fn pair(seed: u8) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).expect("seed")
    }

    fn ksk(seed: u8) -> Dnskey {
        Dnskey { flags: 257, protocol: 3, algorithm: 15, public_key: pair(seed).public_key().as_ref().to_vec() }
    }

    fn revoked(seed: u8) -> Dnskey {
        Dnskey { flags: 257 | FLAG_REVOKE, ..ksk(seed) }
    }

    /// The root's DNSKEY set of `keys`, signed at `now` by each key of `signers` (seed and key as published).
    fn dnskey_set(keys: &[Dnskey], signers: &[(u8, Dnskey)], now: u64) -> Rrset {
        let mut set = Rrset {
            owner: NameBuf::root(),
            rtype: RecordType::DNSKEY,
            class: Class::IN,
            ttl: 172_800,
            rdata: keys.iter().map(Dnskey::to_wire).collect(),
            signatures: Vec::new(),
        };
        for (seed, key) in signers {
            let mut rrsig = Rrsig {
                type_covered: RecordType::DNSKEY,
                algorithm: 15,
                labels: 0,
                original_ttl: 172_800,
                expiration: (now + 20 * DAY) as u32,
                inception: (now - DAY) as u32,
                key_tag: key.key_tag(),
                signer: NameBuf::root(),
                signature: Vec::new(),
            };
            let data = rrset::signed_data(&set, &rrsig).expect("signed data");
            rrsig.signature = pair(*seed).sign(&data).as_ref().to_vec();
            set.signatures.push((172_800, rrsig));
        }
        set
    }

    fn states(point: &TrustPoint) -> Vec<(u16, KeyState)> {
        point.keys().iter().map(|key| (key.key_tag(), key.state)).collect()
    }

    fn file_with(key: &Dnskey) -> String {
        let mut encoded = String::new();
        base64_encode(&key.public_key, &mut encoded).expect("base64");
        format!(". 172800 IN DNSKEY 257 3 15 {encoded}\n")
    }

    /// A trust point read from a file of `keys`, each VALID.
    fn trusting(keys: &[&Dnskey]) -> TrustPoint {
        let text: String = keys.iter().map(|key| file_with(key)).collect();
        TrustPoint::parse(&text, "root.key").expect("parses")
    }

    /// `point` handles the DNSKEY set of `keys` signed by `signers` at `now`,
    /// with the default hold-downs and clock-skew allowance.
    fn handle(point: &mut TrustPoint, keys: &[Dnskey], signers: &[(u8, Dnskey)], now: u64) -> Probe {
        point.handle_dnskeys(&dnskey_set(keys, signers, now), now, HoldDown::default(), Skew::default())
    }

    #[test]
    fn a_new_ksk_waits_out_the_hold_down_then_becomes_valid() {
        let old = ksk(1);
        let new = ksk(2);
        let mut point = trusting(&[&old]);
        assert_eq!(states(&point), [(old.key_tag(), KeyState::Valid)]);

        // The new key appears, signed by the old one: ADDPEND.
        let probe = handle(&mut point, &[old.clone(), new.clone()], &[(1, old.clone())], NOW);
        assert!(probe.verified && probe.write && !probe.anchor_changed, "{probe:?}");
        assert_eq!(states(&point), [(old.key_tag(), KeyState::Valid), (new.key_tag(), KeyState::AddPend)]);
        assert_eq!(point.anchor().expect("anchor").keys, std::slice::from_ref(&old));

        // Seen again within the hold-down: still pending.
        let later = NOW + 10 * DAY;
        handle(&mut point, &[old.clone(), new.clone()], &[(1, old.clone())], later);
        assert_eq!(point.keys()[1].state, KeyState::AddPend);
        assert_eq!(point.keys()[1].pending_count, 2);

        // Past 30 days: VALID, and the anchor now holds both keys.
        let after = NOW + 31 * DAY;
        let probe = handle(&mut point, &[old.clone(), new.clone()], &[(1, old.clone())], after);
        assert!(probe.anchor_changed);
        assert_eq!(
            probe.events,
            [KeyEvent { key_tag: new.key_tag(), algorithm: 15, from: KeyState::AddPend, to: KeyState::Valid }]
        );
        assert_eq!(point.anchor().expect("anchor").keys, [old, new]);
    }

    #[test]
    fn a_pending_key_that_disappears_starts_over() {
        let old = ksk(1);
        let mut point = trusting(&[&old]);
        handle(&mut point, &[old.clone(), ksk(2)], &[(1, old.clone())], NOW);
        let probe = handle(&mut point, std::slice::from_ref(&old), &[(1, old.clone())], NOW + DAY);
        assert_eq!(probe.events[0].to, KeyState::Start);
        // START entries are not kept.
        assert_eq!(states(&point), [(old.key_tag(), KeyState::Valid)]);
    }

    #[test]
    fn a_set_not_signed_by_a_trusted_key_changes_nothing() {
        let old = ksk(1);
        let mut point = trusting(&[&old]);
        let probe = handle(&mut point, &[old.clone(), ksk(2)], &[(2, ksk(2))], NOW);
        assert!(!probe.verified && !probe.write, "{probe:?}");
        assert_eq!(states(&point), [(old.key_tag(), KeyState::Valid)]);
    }

    #[test]
    fn missing_keys_come_back_and_are_dropped_after_keep_missing() {
        let (a, b) = (ksk(1), ksk(2));
        let mut point = trusting(&[&a, &b]);
        // b is gone: MISSING, still trusted.
        handle(&mut point, std::slice::from_ref(&a), &[(1, a.clone())], NOW);
        assert_eq!(states(&point), [(a.key_tag(), KeyState::Valid), (b.key_tag(), KeyState::Missing)]);
        assert_eq!(point.anchor().expect("anchor").keys.len(), 2);
        // It returns: VALID.
        handle(&mut point, &[a.clone(), b.clone()], &[(1, a.clone())], NOW + DAY);
        assert_eq!(point.keys()[1].state, KeyState::Valid);
        // Gone for longer than keep-missing (366 days): removed.
        handle(&mut point, std::slice::from_ref(&a), &[(1, a.clone())], NOW + 2 * DAY);
        let much_later = NOW + 400 * DAY;
        handle(&mut point, std::slice::from_ref(&a), &[(1, a.clone())], much_later);
        assert_eq!(states(&point), [(a.key_tag(), KeyState::Valid)]);
    }

    #[test]
    fn a_self_signed_revoked_key_is_revoked_then_removed() {
        let (a, b) = (ksk(1), ksk(2));
        let mut point = trusting(&[&a, &b]);
        // a publishes itself revoked and signs with the revoked key; b signs too.
        let probe = handle(&mut point, &[revoked(1), b.clone()], &[(1, revoked(1)), (2, b.clone())], NOW);
        assert!(probe.anchor_changed);
        assert_eq!(probe.events[0].to, KeyState::Revoked);
        assert_eq!(point.keys()[0].state, KeyState::Revoked);
        assert_eq!(point.anchor().expect("anchor").keys, std::slice::from_ref(&b));
        // A revoked key not signed by itself is not believed.
        let mut other = trusting(&[&a, &b]);
        handle(&mut other, &[revoked(1), b.clone()], &[(2, b.clone())], NOW);
        assert_eq!(other.keys()[0].state, KeyState::Missing);
        // After the remove hold-down the revoked key leaves the file.
        let later = NOW + 31 * DAY;
        handle(&mut point, std::slice::from_ref(&b), &[(2, b.clone())], later);
        assert_eq!(states(&point), [(b.key_tag(), KeyState::Valid)]);
    }

    #[test]
    fn revoking_the_only_anchor_revokes_the_trust_point() {
        let a = ksk(1);
        let mut point = trusting(&[&a]);
        let probe = handle(&mut point, &[revoked(1), ksk(2)], &[(1, revoked(1))], NOW);
        assert!(probe.anchor_changed && probe.write);
        assert!(point.revoked && point.anchor().is_none());
        let text = point.to_text();
        assert!(text.contains(";;REVOKED\n"), "{text}");
        let again = TrustPoint::parse(&text, "root.key").expect("parses");
        assert!(again.anchor().is_none());
    }

    #[test]
    fn a_ds_anchor_becomes_the_key_it_matches() {
        let a = ksk(1);
        let digest = crypto::ds_digest(2, NameBuf::root().as_wire(), &a.to_wire()).expect("digest");
        let hex: String = digest.iter().map(|byte| format!("{byte:02X}")).collect();
        let text = format!(". IN DS {} 15 2 {hex}\n", a.key_tag());
        let mut point = TrustPoint::parse(&text, "root.key").expect("parses");
        assert_eq!(point.anchor().expect("anchor").ds.len(), 1);
        let probe = handle(&mut point, std::slice::from_ref(&a), &[(1, a.clone())], NOW);
        assert!(probe.verified && probe.anchor_changed, "{probe:?}");
        let anchor = point.anchor().expect("anchor");
        assert!(anchor.ds.is_empty());
        assert_eq!(anchor.keys, [a]);
        assert_eq!(point.keys()[0].last_change, NOW);
    }

    #[test]
    fn the_file_round_trips_in_unbounds_format() {
        let (a, b) = (ksk(1), ksk(2));
        let mut point = trusting(&[&a]);
        handle(&mut point, &[a.clone(), b.clone()], &[(1, a.clone())], NOW);
        let text = point.to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "; autotrust trust anchor file");
        assert_eq!(lines[1], ";;id: . 1");
        assert_eq!(lines[2], format!(";;last_queried: {NOW} ;;Mon Jun  1 00:00:00 2026"));
        assert_eq!(lines[5], ";;query_failed: 0");
        assert_eq!(lines[6], ";;query_interval: 86400");
        assert_eq!(lines[7], ";;retry_time: 17280");
        assert!(lines[8].starts_with(".\t172800\tIN\tDNSKEY\t257 3 15 "), "{}", lines[8]);
        assert!(
            lines[8].ends_with(&format!(
                " ;{{id = {} (ksk), size = 256b}} ;;state=2 [  VALID  ] ;;count=0 ;;lastchange={NOW} ;;Mon Jun  1 00:00:00 2026",
                a.key_tag()
            )),
            "{}",
            lines[8]
        );
        assert!(lines[9].contains(";;state=1 [ ADDPEND ] ;;count=1 "), "{}", lines[9]);
        let again = TrustPoint::parse(&text, "root.key").expect("parses");
        assert_eq!(again, point);
    }

    #[test]
    fn parse_errors_name_the_file_and_line() {
        let error = TrustPoint::parse("; nothing\n", "root.key").expect_err("no key");
        assert!(error.to_string().starts_with("root.key:1:"), "{error}");
        let text = format!("{}example. 3600 IN DS 1 8 2 00FF\n", file_with(&ksk(1)));
        let error = TrustPoint::parse(&text, "root.key").expect_err("two zones");
        assert_eq!(error.to_string(), "root.key:2: an auto-trust-anchor-file holds the keys of one zone only");
    }
}
