//! The validator: a sans-IO session per response that asks for the DS and
//! DNSKEY records it needs and ends with a verdict.
//!
//! A [`Validation`] is driven by its caller, as quinn-proto is: `poll`
//! returns either a query to send upstream (with DO and CD set) or the
//! verdict; the caller feeds each answer back with `handle_response`. Time
//! comes in as seconds since the epoch; nothing here reads a clock.
//!
//! The chain of trust is built top-down from the closest trust anchor, one
//! label at a time, asking for the DS of each name: a signed DS set is a
//! secure zone cut (its DNSKEY set is fetched and checked), a proven absence
//! with NS in the bitmap is an insecure delegation, and a proven absence
//! without NS is no cut at all. What is learned about each name is kept in
//! the validator's cache for its TTL, shared by every session.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use signpost_wire::{ExtendedErrorCode, Message, NameBuf, Rcode, RecordType, Section};

use crate::aggressive::NsecCache;
use crate::anchor::{Anchor, TrustAnchors};
use crate::autotrust::{HoldDown, KeyEvent, TrustPoint};
use crate::crypto;
use crate::denial::{self, Denial, DenialFailure, OwnedNsec, OwnedNsec3};
use crate::records::{Dnskey, Ds, Nsec, Nsec3};
use crate::rrset::{self, Rrset, SignatureFailure, Skew, Verified};

/// Settings, named after unbound's `val-*` options.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidatorConfig {
    /// Clock skew allowed around signature windows (`val-sig-skew-min`, `val-sig-skew-max`).
    pub skew: Skew,
    /// How long a bogus result is kept, in seconds (`val-bogus-ttl`).
    pub bogus_ttl: u32,
    /// NSEC3 iterations above this make an answer insecure (RFC 9276; unbound's
    /// `val-nsec3-keysize-iterations` is 150 for every key size since 1.17).
    pub nsec3_max_iterations: u16,
    /// Most DS and DNSKEY queries one validation may ask.
    pub max_queries: usize,
    /// Most seconds a cached chain result is kept (`val-max-ttl`-like cap; unbound's `key-cache` TTL cap is a day).
    pub max_cache_ttl: u32,
    /// RFC 5011 hold-downs of tracked trust anchors (`add-holddown`, `del-holddown`, `keep-missing`).
    pub hold_down: HoldDown,
    /// RFC 8198: keep validated NSEC records and answer from them (`aggressive-nsec`, on by default).
    pub aggressive_nsec: bool,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        Self {
            skew: Skew::default(),
            bogus_ttl: 60,
            nsec3_max_iterations: 150,
            max_queries: 48,
            max_cache_ttl: 86_400,
            hold_down: HoldDown::default(),
            aggressive_nsec: true,
        }
    }
}

/// Why an answer is bogus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BogusReason {
    /// The only signatures have expired.
    SignatureExpired,
    /// The only signatures are not valid yet.
    SignatureNotYetValid,
    /// A signature did not verify.
    SignatureInvalid,
    /// Data from a secure zone came without signatures.
    RrsigsMissing,
    /// No DNSKEY of the zone matches its DS set or the signatures.
    DnskeyMissing,
    /// The matching keys lack the zone flag or are revoked.
    NoZoneKeyBit,
    /// A negative answer from a secure zone lacks its NSEC/NSEC3 proof.
    NsecMissing,
    /// The NSEC/NSEC3 records do not prove what the answer says.
    DenialInvalid,
    /// The DS or DNSKEY query for the chain failed upstream.
    ChainQueryFailed,
    /// An upstream message could not be read.
    Malformed,
    /// The chain needed more queries than allowed.
    TooManyQueries,
}

impl BogusReason {
    /// The RFC 8914 extended error code that says this.
    pub fn extended_error(self) -> ExtendedErrorCode {
        match self {
            Self::SignatureExpired => ExtendedErrorCode::SIGNATURE_EXPIRED,
            Self::SignatureNotYetValid => ExtendedErrorCode::SIGNATURE_NOT_YET_VALID,
            Self::RrsigsMissing => ExtendedErrorCode::RRSIGS_MISSING,
            Self::DnskeyMissing | Self::ChainQueryFailed => ExtendedErrorCode::DNSKEY_MISSING,
            Self::NoZoneKeyBit => ExtendedErrorCode::NO_ZONE_KEY_BIT_SET,
            Self::NsecMissing => ExtendedErrorCode::NSEC_MISSING,
            Self::SignatureInvalid | Self::DenialInvalid | Self::Malformed | Self::TooManyQueries => {
                ExtendedErrorCode::DNSSEC_BOGUS
            }
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::SignatureExpired => "signature expired",
            Self::SignatureNotYetValid => "signature not yet valid",
            Self::SignatureInvalid => "signature does not verify",
            Self::RrsigsMissing => "RRSIGs missing",
            Self::DnskeyMissing => "no DNSKEY matches",
            Self::NoZoneKeyBit => "key without zone bit or revoked",
            Self::NsecMissing => "no NSEC/NSEC3 proof",
            Self::DenialInvalid => "NSEC/NSEC3 records do not prove the denial",
            Self::ChainQueryFailed => "query for the chain of trust failed",
            Self::Malformed => "malformed upstream message",
            Self::TooManyQueries => "chain of trust needs too many queries",
        }
    }
}

/// A bogus verdict: the reason and the RRset (name and type) it was found at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bogus {
    /// What was wrong.
    pub reason: BogusReason,
    /// The owner of the failing data.
    pub name: NameBuf,
    /// The type of the failing data.
    pub rtype: RecordType,
}

impl fmt::Display for Bogus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {} {}", self.reason.text(), self.name, self.rtype)
    }
}

/// Why an answer is insecure (validated, but not provably signed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InsecureReason {
    /// No trust anchor above the name.
    NoTrustAnchor,
    /// Below a `domain-insecure` name or a negative trust anchor.
    DomainInsecure,
    /// Below a delegation proven to have no DS.
    UnsignedDelegation,
    /// The zone is signed only with algorithms or digests this validator does not support.
    UnsupportedAlgorithm,
    /// Inside an NSEC3 opt-out span.
    OptOut,
    /// NSEC3 with more iterations than allowed.
    Nsec3Iterations,
    /// The response is not an answer (SERVFAIL, REFUSED, …): passed on as is.
    NotAnAnswer,
}

impl InsecureReason {
    /// A short description.
    pub fn text(self) -> &'static str {
        match self {
            Self::NoTrustAnchor => "no trust anchor",
            Self::DomainInsecure => "domain-insecure",
            Self::UnsignedDelegation => "unsigned delegation",
            Self::UnsupportedAlgorithm => "unsupported algorithm",
            Self::OptOut => "NSEC3 opt-out",
            Self::Nsec3Iterations => "NSEC3 iterations above the limit",
            Self::NotAnAnswer => "not an answer",
        }
    }
}

/// The security status of a response (RFC 4035 §4.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Security {
    /// Every RRset and denial proven from a trust anchor: set AD.
    Secure,
    /// Proven unsigned (or not validated): pass on without AD.
    Insecure(InsecureReason),
    /// Should be signed and is not, or signatures fail: SERVFAIL.
    Bogus(Bogus),
}

/// The end of a validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// What was proven.
    pub security: Security,
    /// The longest the response may be cached for given its signatures
    /// (for bogus results, `val-bogus-ttl`); `None` when validation sets no limit.
    pub ttl_limit: Option<u32>,
}

/// A query the validation needs answered: ask upstream with DO and CD set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Query {
    /// The name.
    pub name: NameBuf,
    /// DS or DNSKEY.
    pub rtype: RecordType,
}

/// What a validation wants next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this query upstream and pass the answer to [`Validation::handle_response`].
    Query(Query),
    /// Finished.
    Done(Verdict),
}

/// What is known about one name on the way down from an anchor.
#[derive(Clone, Debug)]
enum Cut {
    /// A secure zone apex with its validated keys.
    Secure(Arc<Vec<Dnskey>>),
    /// Inside the enclosing zone, not a zone cut.
    Interior,
    /// The name does not exist: nothing below it needs a chain.
    Nonexistent,
    /// An insecure delegation, or below one.
    Insecure(InsecureReason),
    /// The chain broke here.
    Bogus(Bogus),
}

/// Where a name stands: in a secure zone with these keys, or not.
#[derive(Clone, Debug)]
enum ZoneState {
    Secure { apex: NameBuf, keys: Arc<Vec<Dnskey>> },
    Insecure(InsecureReason),
    Bogus(Bogus),
}

/// A cut learned by a validation, with its expiry (seconds since the epoch).
#[derive(Clone, Debug)]
struct Cached {
    cut: Cut,
    expires: u64,
}

/// Trust anchors, insecure names, settings and the shared chain cache.
#[derive(Debug)]
pub struct Validator {
    /// Changed only by RFC 5011 tracking.
    anchors: RwLock<Arc<TrustAnchors>>,
    insecure: Vec<NameBuf>,
    config: ValidatorConfig,
    cache: Mutex<HashMap<NameBuf, Cached>>,
    tracked: Mutex<Vec<Tracked>>,
    /// Some tracked trust point has news for [`Validator::take_trust_point_updates`].
    tracking_news: AtomicBool,
    /// Validated NSEC records for RFC 8198.
    nsecs: Mutex<NsecCache>,
}

/// An RFC 5011 trust point and where its state is kept.
#[derive(Debug)]
struct Tracked {
    point: TrustPoint,
    file: PathBuf,
    write: bool,
    events: Vec<KeyEvent>,
}

/// A tracked trust point's news: its state file to write, and what changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustPointUpdate {
    /// The zone.
    pub zone: NameBuf,
    /// The file the point was read from (as given to [`Validator::track`]).
    pub file: PathBuf,
    /// The file's new text, in unbound's format; `None` when only events are new.
    pub text: Option<String>,
    /// Keys that changed state since the last update.
    pub events: Vec<KeyEvent>,
    /// The zone has no trusted key left (every one revoked).
    pub revoked: bool,
}

/// Largest number of names the chain cache keeps before it is cleared.
const CACHE_LIMIT: usize = 10_000;

impl Validator {
    /// A validator with these anchors. `insecure` names (unbound's
    /// `domain-insecure`, negative trust anchors) and everything below them
    /// are not validated.
    pub fn new(anchors: TrustAnchors, insecure: Vec<NameBuf>, config: ValidatorConfig) -> Self {
        Self {
            anchors: RwLock::new(Arc::new(anchors)),
            insecure,
            config,
            cache: Mutex::new(HashMap::new()),
            tracked: Mutex::new(Vec::new()),
            tracking_news: AtomicBool::new(false),
            nsecs: Mutex::new(NsecCache::default()),
        }
    }

    /// Track `point` (read from `file`) by RFC 5011: its anchor replaces any
    /// other for the zone, and each DNSKEY set the validator fetches for the
    /// zone moves its keys along; [`Validator::take_trust_point_updates`]
    /// hands out the file's new text.
    pub fn track(&self, point: TrustPoint, file: PathBuf) {
        self.set_anchor(&point.zone, point.anchor());
        if let Ok(mut tracked) = self.tracked.lock() {
            tracked.retain(|entry| entry.point.zone != point.zone);
            tracked.push(Tracked { point, file, write: false, events: Vec::new() });
        }
    }

    /// The tracked trust points' news since the last call: state files to
    /// write back, keys that changed state. Cheap when there is none.
    pub fn take_trust_point_updates(&self) -> Vec<TrustPointUpdate> {
        if !self.tracking_news.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        let Ok(mut tracked) = self.tracked.lock() else { return Vec::new() };
        tracked
            .iter_mut()
            .filter(|entry| entry.write || !entry.events.is_empty())
            .map(|entry| TrustPointUpdate {
                zone: entry.point.zone.clone(),
                file: entry.file.clone(),
                text: std::mem::take(&mut entry.write).then(|| entry.point.to_text()),
                events: std::mem::take(&mut entry.events),
                revoked: entry.point.revoked,
            })
            .collect()
    }

    /// The tracked trust points, as they stand.
    pub fn trust_points(&self) -> Vec<TrustPoint> {
        self.tracked.lock().map(|tracked| tracked.iter().map(|entry| entry.point.clone()).collect()).unwrap_or_default()
    }

    fn set_anchor(&self, zone: &NameBuf, anchor: Option<Anchor>) {
        if let Ok(mut anchors) = self.anchors.write() {
            let mut changed = TrustAnchors::clone(&anchors);
            changed.replace(zone, anchor);
            *anchors = Arc::new(changed);
        }
        // Keys learned under the old anchor may no longer be trusted.
        self.clear_cache();
    }

    /// Whether `zone` is an RFC 5011 trust point.
    fn is_tracked(&self, zone: &NameBuf) -> bool {
        self.tracked.lock().is_ok_and(|tracked| tracked.iter().any(|entry| entry.point.zone == *zone))
    }

    /// A DNSKEY set fetched for a tracked zone: run RFC 5011's events.
    fn observe_dnskeys(&self, set: &Rrset, now: u64) {
        let changed = {
            let Ok(mut tracked) = self.tracked.lock() else { return };
            let Some(entry) = tracked.iter_mut().find(|entry| entry.point.zone == set.owner) else { return };
            let probe = entry.point.handle_dnskeys(set, now, self.config.hold_down, self.config.skew);
            entry.write |= probe.write;
            entry.events.extend(probe.events);
            if probe.write || !entry.events.is_empty() {
                self.tracking_news.store(true, Ordering::Release);
            }
            probe.anchor_changed.then(|| entry.point.anchor())
        };
        if let Some(anchor) = changed {
            self.set_anchor(&set.owner, anchor);
        }
    }

    /// The settings.
    pub fn config(&self) -> &ValidatorConfig {
        &self.config
    }

    /// The trust anchors as they stand (RFC 5011 tracking may change them).
    pub fn anchors(&self) -> Arc<TrustAnchors> {
        self.anchors.read().map(|anchors| Arc::clone(&anchors)).unwrap_or_default()
    }

    /// Start validating `response` (a full DNS message from upstream, asked
    /// with DO set) at `now` seconds since the epoch.
    pub fn start(&self, response: &[u8], now: u64) -> Validation<'_> {
        Validation {
            validator: self,
            response: response.to_vec(),
            now,
            fetched: HashMap::new(),
            cuts: HashMap::new(),
            queries: 0,
        }
    }

    /// Drop every cached chain result and kept NSEC record (after a change of the anchors).
    pub fn clear_cache(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
        if let Ok(mut nsecs) = self.nsecs.lock() {
            nsecs.clear();
        }
    }

    /// RFC 8198: the answer to `query` (a client's question) that validated
    /// NSEC records kept from earlier negative answers prove — NXDOMAIN or
    /// NODATA, with the SOA, the NSEC records and their RRSIGs, shaped as an
    /// upstream's answer to a DO query; secure without asking upstream.
    /// `None` when `aggressive_nsec` is off or nothing kept proves it.
    pub fn synthesize_negative(&self, query: &[u8], now: u64) -> Option<Vec<u8>> {
        if !self.config.aggressive_nsec {
            return None;
        }
        let synthesized = self.nsecs.lock().ok()?.synthesize(query, now)?;
        let qname = Message::parse(&synthesized.response).ok()?.first_question().ok()??.name().to_name_buf();
        if self.is_declared_insecure(&qname) {
            return None;
        }
        Some(synthesized.response)
    }

    fn keep_nsecs(&self, zone: &NameBuf, authority: &[Rrset], now: u64) {
        if !self.config.aggressive_nsec {
            return;
        }
        let cap = self.config.max_cache_ttl;
        let soa = authority
            .iter()
            .find(|set| set.rtype == RecordType::SOA && set.owner == *zone)
            .map(|set| (set, kept_ttl(set, now).min(cap)));
        let nsecs: Vec<(&Rrset, u32)> = authority
            .iter()
            .filter(|set| set.rtype == RecordType::NSEC && set.owner.is_subdomain_of(zone))
            .map(|set| (set, kept_ttl(set, now).min(cap)))
            .collect();
        if let Ok(mut cache) = self.nsecs.lock() {
            cache.insert(zone, soa, &nsecs, now);
        }
    }

    fn cached(&self, name: &NameBuf, now: u64) -> Option<Cut> {
        let cache = self.cache.lock().ok()?;
        let entry = cache.get(name)?;
        (entry.expires > now).then(|| entry.cut.clone())
    }

    fn remember(&self, name: &NameBuf, cut: &Cut, ttl: u32, now: u64) {
        let ttl = ttl.min(self.config.max_cache_ttl);
        if ttl == 0 {
            return;
        }
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.retain(|_, entry| entry.expires > now);
                if cache.len() >= CACHE_LIMIT {
                    cache.clear();
                }
            }
            cache.insert(name.clone(), Cached { cut: cut.clone(), expires: now + u64::from(ttl) });
        }
    }

    fn is_declared_insecure(&self, name: &NameBuf) -> bool {
        self.insecure.iter().any(|insecure| name.is_subdomain_of(insecure))
    }
}

/// A query's outcome as the session saw it.
#[derive(Clone, Debug)]
enum Fetched {
    Answer(Vec<u8>),
    Failed,
}

/// Internal: the validation must wait for this query.
struct Pending(Query);

/// One response being validated. See the module documentation.
#[derive(Debug)]
pub struct Validation<'v> {
    validator: &'v Validator,
    response: Vec<u8>,
    now: u64,
    fetched: HashMap<Query, Fetched>,
    cuts: HashMap<NameBuf, Cut>,
    queries: usize,
}

fn bogus(reason: BogusReason, name: &NameBuf, rtype: RecordType) -> Bogus {
    Bogus { reason, name: name.clone(), rtype }
}

fn signature_reason(failure: SignatureFailure) -> BogusReason {
    match failure {
        SignatureFailure::Missing => BogusReason::RrsigsMissing,
        SignatureFailure::NoMatchingKey => BogusReason::DnskeyMissing,
        SignatureFailure::NoZoneKey => BogusReason::NoZoneKeyBit,
        SignatureFailure::Expired => BogusReason::SignatureExpired,
        SignatureFailure::NotYetValid => BogusReason::SignatureNotYetValid,
        SignatureFailure::UnsupportedAlgorithm | SignatureFailure::Invalid | SignatureFailure::BadLabels => {
            BogusReason::SignatureInvalid
        }
    }
}

/// The combined status of several parts: bogus beats insecure beats secure.
struct Tally {
    insecure: Option<InsecureReason>,
    ttl: Option<u32>,
}

impl Tally {
    fn ttl(&mut self, ttl: u32) {
        self.ttl = Some(self.ttl.map_or(ttl, |old| old.min(ttl)));
    }

    fn insecure(&mut self, reason: InsecureReason) {
        self.insecure.get_or_insert(reason);
    }
}

impl Validation<'_> {
    /// What to do next: a query to send, or the verdict.
    pub fn poll(&mut self) -> Step {
        match self.run() {
            Ok(verdict) => Step::Done(verdict),
            Err(Pending(query)) => {
                if self.queries >= self.validator.config.max_queries {
                    let name = query.name.clone();
                    return Step::Done(self.bogus_verdict(bogus(BogusReason::TooManyQueries, &name, query.rtype)));
                }
                self.queries += 1;
                Step::Query(query)
            }
        }
    }

    /// The upstream's answer to `query` (`None` when it failed: timeout,
    /// unreachable). Answers to queries not asked for are ignored.
    pub fn handle_response(&mut self, query: &Query, response: Option<&[u8]>) {
        let fetched = match response {
            Some(bytes) => Fetched::Answer(bytes.to_vec()),
            None => Fetched::Failed,
        };
        self.fetched.insert(query.clone(), fetched);
    }

    fn bogus_verdict(&self, bogus: Bogus) -> Verdict {
        Verdict { security: Security::Bogus(bogus), ttl_limit: Some(self.validator.config.bogus_ttl) }
    }

    fn fetch(&self, name: &NameBuf, rtype: RecordType) -> Result<Result<&[u8], Bogus>, Pending> {
        let query = Query { name: name.clone(), rtype };
        match self.fetched.get(&query) {
            Some(Fetched::Answer(bytes)) => Ok(Ok(bytes)),
            Some(Fetched::Failed) => Ok(Err(bogus(BogusReason::ChainQueryFailed, name, rtype))),
            None => Err(Pending(query)),
        }
    }

    /// [`Self::fetch`] for a zone cut: the answer's bytes, or the bogus cut
    /// (for `bogus_ttl`) that a failed chain query makes.
    fn fetch_for_cut(&self, name: &NameBuf, rtype: RecordType) -> Result<Result<Vec<u8>, (Cut, u32)>, Pending> {
        Ok(self
            .fetch(name, rtype)?
            .map(<[u8]>::to_vec)
            .map_err(|failure| (Cut::Bogus(failure), self.validator.config.bogus_ttl)))
    }

    /// Validate the response, or say which query is missing.
    fn run(&mut self) -> Result<Verdict, Pending> {
        let response = std::mem::take(&mut self.response);
        let result = self.validate_response(&response);
        self.response = response;
        result
    }

    fn validate_response(&mut self, bytes: &[u8]) -> Result<Verdict, Pending> {
        let root = NameBuf::root();
        let Ok(message) = Message::parse(bytes) else {
            return Ok(self.bogus_verdict(bogus(BogusReason::Malformed, &root, RecordType(0))));
        };
        let Ok(Some(question)) = message.first_question() else {
            return Ok(self.bogus_verdict(bogus(BogusReason::Malformed, &root, RecordType(0))));
        };
        let qname = question.name().to_name_buf();
        let qtype = question.qtype();
        let Ok(rcode) = message.rcode() else {
            return Ok(self.bogus_verdict(bogus(BogusReason::Malformed, &qname, qtype)));
        };
        if rcode != Rcode::NOERROR && rcode != Rcode::NXDOMAIN {
            return Ok(Verdict { security: Security::Insecure(InsecureReason::NotAnAnswer), ttl_limit: None });
        }
        let (Ok(answers), Ok(authority)) =
            (rrset::rrsets(&message, Section::Answer), rrset::rrsets(&message, Section::Authority))
        else {
            return Ok(self.bogus_verdict(bogus(BogusReason::Malformed, &qname, qtype)));
        };
        let mut tally = Tally { insecure: None, ttl: None };

        // Every RRset of the answer section, following CNAMEs and DNAMEs.
        let mut secure_dnames: Vec<(NameBuf, NameBuf)> = Vec::new();
        for set in &answers {
            if set.rtype == RecordType::RRSIG {
                continue;
            }
            if set.rtype == RecordType::CNAME && set.signatures.is_empty() && synthesised(set, &secure_dnames) {
                // RFC 6672 §5.3.1: a CNAME made from a validated DNAME needs no signature.
                continue;
            }
            match self.validate_rrset(set)? {
                Ok(Some((zone, verified))) => {
                    tally.ttl(verified.ttl);
                    if set.rtype == RecordType::DNAME
                        && let Some(target) = set.rdata.first().and_then(|data| NameBuf::from_wire(data).ok())
                    {
                        secure_dnames.push((set.owner.clone(), target));
                    }
                    if let Some(labels) = verified.wildcard_labels {
                        // A wildcard answer needs proof the name itself does not exist.
                        match self.prove_wildcard(&authority, &zone, &set.owner, labels)? {
                            Ok(None) => {}
                            Ok(Some(reason)) => tally.insecure(reason),
                            Err(failure) => return Ok(self.bogus_verdict(failure)),
                        }
                    }
                }
                Ok(None) => tally.insecure(InsecureReason::UnsignedDelegation),
                Err(Ok(reason)) => tally.insecure(reason),
                Err(Err(failure)) => return Ok(self.bogus_verdict(failure)),
            }
        }

        // Where the chain of names ends, and whether it has the type asked for.
        let final_name = chain_end(&answers, &qname, qtype);
        let answered = qtype == RecordType::ANY
            || answers
                .iter()
                .any(|set| set.owner == final_name && (set.rtype == qtype || set.rtype == RecordType::CNAME));
        if !answered {
            match self.validate_denial(&authority, &final_name, qtype, rcode == Rcode::NXDOMAIN)? {
                Ok(ttl) => {
                    if let Some(ttl) = ttl {
                        tally.ttl(ttl);
                    }
                }
                Err(Ok(reason)) => tally.insecure(reason),
                Err(Err(failure)) => return Ok(self.bogus_verdict(failure)),
            }
        } else if rcode == Rcode::NXDOMAIN {
            // NXDOMAIN for the end of a CNAME chain that was answered is a contradiction.
            return Ok(self.bogus_verdict(bogus(BogusReason::DenialInvalid, &final_name, qtype)));
        }

        let security = match tally.insecure {
            Some(reason) => Security::Insecure(reason),
            None => Security::Secure,
        };
        Ok(Verdict { security, ttl_limit: tally.ttl })
    }

    /// Validate one RRset: `Ok(Some(zone, verified))` when secure, `Err(Ok(reason))`
    /// when insecure, `Err(Err(bogus))` when bogus.
    #[allow(clippy::type_complexity)]
    fn validate_rrset(
        &mut self,
        set: &Rrset,
    ) -> Result<Result<Option<(NameBuf, Verified)>, Result<InsecureReason, Bogus>>, Pending> {
        // The signer the RRSIGs name, if it encloses the owner.
        let signer =
            set.signatures.iter().map(|(_, sig)| &sig.signer).find(|signer| set.owner.is_subdomain_of(*signer));
        let Some(signer) = signer.cloned() else {
            return Ok(match self.zone_state(&set.owner)? {
                ZoneState::Insecure(reason) => Err(Ok(reason)),
                ZoneState::Bogus(failure) => Err(Err(failure)),
                ZoneState::Secure { .. } => Err(Err(bogus(BogusReason::RrsigsMissing, &set.owner, set.rtype))),
            });
        };
        let state = if set.rtype == RecordType::DS && set.owner == signer {
            // The DS of a zone is signed by its parent, never by itself.
            return Ok(Err(Err(bogus(BogusReason::SignatureInvalid, &set.owner, set.rtype))));
        } else {
            self.zone_state(&signer)?
        };
        Ok(match state {
            ZoneState::Insecure(reason) => Err(Ok(reason)),
            ZoneState::Bogus(failure) => Err(Err(failure)),
            ZoneState::Secure { apex, keys } => {
                if apex != signer {
                    // The RRSIG names a zone the chain did not find.
                    return Ok(Err(Err(bogus(BogusReason::DnskeyMissing, &set.owner, set.rtype))));
                }
                match rrset::verify_rrset(set, &apex, &keys, self.now, self.validator.config.skew) {
                    Ok(verified) => Ok(Some((apex, verified))),
                    Err(SignatureFailure::UnsupportedAlgorithm) => Err(Ok(InsecureReason::UnsupportedAlgorithm)),
                    Err(failure) => Err(Err(bogus(signature_reason(failure), &set.owner, set.rtype))),
                }
            }
        })
    }

    /// Check the NSEC/NSEC3 records of `authority` for a wildcard answer at `owner`.
    fn prove_wildcard(
        &mut self,
        authority: &[Rrset],
        zone: &NameBuf,
        owner: &NameBuf,
        labels: u8,
    ) -> Result<Result<Option<InsecureReason>, Bogus>, Pending> {
        let keys = match self.zone_state(zone)? {
            ZoneState::Secure { keys, .. } => keys,
            ZoneState::Insecure(reason) => return Ok(Ok(Some(reason))),
            ZoneState::Bogus(failure) => return Ok(Err(failure)),
        };
        let (nsecs, nsec3s) = match self.denial_records(authority, zone, &keys) {
            Ok(records) => records,
            Err(failure) => return Ok(Err(failure)),
        };
        let max = self.validator.config.nsec3_max_iterations;
        Ok(match denial::prove_wildcard_expansion(&nsecs, &nsec3s, zone, owner, labels, max) {
            Ok(Denial::TooManyIterations(_)) => Ok(Some(InsecureReason::Nsec3Iterations)),
            Ok(_) => Ok(None),
            Err(_) => Err(bogus(BogusReason::NsecMissing, owner, RecordType::NSEC)),
        })
    }

    /// The verified NSEC and NSEC3 records of `zone` in a section; a record
    /// that fails its signature makes the whole answer bogus.
    fn denial_records(
        &self,
        section: &[Rrset],
        zone: &NameBuf,
        keys: &[Dnskey],
    ) -> Result<(Vec<OwnedNsec>, Vec<OwnedNsec3>), Bogus> {
        let mut nsecs = Vec::new();
        let mut nsec3s = Vec::new();
        for set in section {
            if set.rtype != RecordType::NSEC && set.rtype != RecordType::NSEC3 {
                continue;
            }
            if !set.owner.is_subdomain_of(zone) {
                continue;
            }
            if let Err(failure) = rrset::verify_rrset(set, zone, keys, self.now, self.validator.config.skew) {
                return Err(bogus(signature_reason(failure), &set.owner, set.rtype));
            }
            for data in &set.rdata {
                if set.rtype == RecordType::NSEC {
                    let Ok(nsec) = Nsec::parse(data) else {
                        return Err(bogus(BogusReason::Malformed, &set.owner, set.rtype));
                    };
                    nsecs.push(OwnedNsec { owner: set.owner.clone(), nsec });
                } else {
                    let Ok(nsec3) = Nsec3::parse(data) else {
                        return Err(bogus(BogusReason::Malformed, &set.owner, set.rtype));
                    };
                    nsec3s.push(OwnedNsec3 { owner: set.owner.clone(), nsec3 });
                }
            }
        }
        Ok((nsecs, nsec3s))
    }

    /// Validate a negative answer (NXDOMAIN or NODATA) for `name`/`qtype`.
    /// `Ok(ttl)` when secure.
    #[allow(clippy::type_complexity)]
    fn validate_denial(
        &mut self,
        authority: &[Rrset],
        name: &NameBuf,
        qtype: RecordType,
        nxdomain: bool,
    ) -> Result<Result<Option<u32>, Result<InsecureReason, Bogus>>, Pending> {
        // The zone that speaks: the signer of the SOA, else of any NSEC/NSEC3.
        let signer = authority
            .iter()
            .filter(|set| matches!(set.rtype, RecordType::SOA | RecordType::NSEC | RecordType::NSEC3))
            .flat_map(|set| set.signatures.iter().map(|(_, sig)| sig.signer.clone()))
            .find(|signer| name.is_subdomain_of(signer));
        let Some(zone) = signer else {
            return Ok(match self.zone_state(name)? {
                ZoneState::Insecure(reason) => Err(Ok(reason)),
                ZoneState::Bogus(failure) => Err(Err(failure)),
                ZoneState::Secure { .. } => Err(Err(bogus(BogusReason::NsecMissing, name, qtype))),
            });
        };
        let keys = match self.zone_state(&zone)? {
            ZoneState::Secure { apex, keys } if apex == zone => keys,
            ZoneState::Secure { .. } => return Ok(Err(Err(bogus(BogusReason::DnskeyMissing, name, qtype)))),
            ZoneState::Insecure(reason) => return Ok(Err(Ok(reason))),
            ZoneState::Bogus(failure) => return Ok(Err(Err(failure))),
        };
        let mut ttl: Option<u32> = None;
        for set in authority.iter().filter(|set| set.rtype == RecordType::SOA) {
            match rrset::verify_rrset(set, &zone, &keys, self.now, self.validator.config.skew) {
                Ok(verified) => ttl = Some(ttl.map_or(verified.ttl, |old| old.min(verified.ttl))),
                Err(failure) => return Ok(Err(Err(bogus(signature_reason(failure), &set.owner, set.rtype)))),
            }
        }
        let (nsecs, nsec3s) = match self.denial_records(authority, &zone, &keys) {
            Ok(records) => records,
            Err(failure) => return Ok(Err(Err(failure))),
        };
        let max = self.validator.config.nsec3_max_iterations;
        let proof = if !nsecs.is_empty() {
            denial::prove_nsec(&nsecs, name, qtype)
        } else if !nsec3s.is_empty() {
            denial::prove_nsec3(&nsec3s, &zone, name, qtype, max)
        } else {
            Err(DenialFailure::Missing)
        };
        let secure = matches!(
            (&proof, nxdomain),
            (Ok(Denial::NxDomain), true) | (Ok(Denial::NoData { delegation: false }), false)
        );
        if secure && !nsecs.is_empty() {
            self.validator.keep_nsecs(&zone, authority, self.now);
        }
        Ok(match proof {
            Ok(Denial::NxDomain) if nxdomain => Ok(ttl),
            Ok(Denial::NoData { delegation: false }) if !nxdomain => Ok(ttl),
            Ok(Denial::NoData { delegation: true }) if !nxdomain => Err(Ok(InsecureReason::UnsignedDelegation)),
            Ok(Denial::OptOut) => Err(Ok(InsecureReason::OptOut)),
            Ok(Denial::TooManyIterations(_)) => Err(Ok(InsecureReason::Nsec3Iterations)),
            Ok(_) => Err(Err(bogus(BogusReason::DenialInvalid, name, qtype))),
            Err(DenialFailure::Missing) => Err(Err(bogus(BogusReason::NsecMissing, name, qtype))),
            Err(_) => Err(Err(bogus(BogusReason::DenialInvalid, name, qtype))),
        })
    }

    fn cut(&self, name: &NameBuf) -> Option<Cut> {
        self.cuts.get(name).cloned().or_else(|| self.validator.cached(name, self.now))
    }

    fn learn(&mut self, name: &NameBuf, cut: Cut, ttl: u32) {
        let ttl = match cut {
            Cut::Bogus(_) => self.validator.config.bogus_ttl,
            _ => ttl,
        };
        self.validator.remember(name, &cut, ttl, self.now);
        self.cuts.insert(name.clone(), cut);
    }

    /// Walk down from the closest trust anchor to `target`.
    fn zone_state(&mut self, target: &NameBuf) -> Result<ZoneState, Pending> {
        if self.validator.is_declared_insecure(target) {
            return Ok(ZoneState::Insecure(InsecureReason::DomainInsecure));
        }
        let anchors = self.validator.anchors();
        let Some(anchor) = anchors.closest(target) else {
            return Ok(ZoneState::Insecure(InsecureReason::NoTrustAnchor));
        };
        let anchor = anchor.clone();
        let mut apex = anchor.name.clone();
        let mut keys = match self.cut(&apex) {
            Some(Cut::Secure(keys)) => keys,
            Some(Cut::Bogus(failure)) => return Ok(ZoneState::Bogus(failure)),
            Some(Cut::Insecure(reason)) => return Ok(ZoneState::Insecure(reason)),
            Some(Cut::Interior | Cut::Nonexistent) | None => {
                let (cut, ttl) = self.anchor_keys(&anchor)?;
                self.learn(&apex, cut.clone(), ttl);
                match cut {
                    Cut::Secure(keys) => keys,
                    Cut::Insecure(reason) => return Ok(ZoneState::Insecure(reason)),
                    Cut::Bogus(failure) => return Ok(ZoneState::Bogus(failure)),
                    Cut::Interior | Cut::Nonexistent => return Ok(ZoneState::Insecure(InsecureReason::NoTrustAnchor)),
                }
            }
        };
        let target_labels = target.label_count();
        for depth in apex.label_count() + 1..=target_labels {
            let Some(name) = denial::ancestor_with(target, depth) else { break };
            let cut = match self.cut(&name) {
                Some(cut) => cut,
                None => {
                    let (cut, ttl) = self.classify_cut(&name, &apex, &keys)?;
                    self.learn(&name, cut.clone(), ttl);
                    cut
                }
            };
            match cut {
                Cut::Secure(new_keys) => {
                    apex = name;
                    keys = new_keys;
                }
                Cut::Interior => {}
                Cut::Nonexistent => break,
                Cut::Insecure(reason) => return Ok(ZoneState::Insecure(reason)),
                Cut::Bogus(failure) => return Ok(ZoneState::Bogus(failure)),
            }
        }
        Ok(ZoneState::Secure { apex, keys })
    }

    /// The keys of an anchored zone: its DNSKEY set, self-signed by a key the anchor names.
    fn anchor_keys(&mut self, anchor: &Anchor) -> Result<(Cut, u32), Pending> {
        if self.validator.is_tracked(&anchor.name) {
            // RFC 5011: every DNSKEY set of a tracked zone is a probe, which may change the anchor.
            if let Ok(bytes) = self.fetch(&anchor.name, RecordType::DNSKEY)?
                && let Ok(message) = Message::parse(bytes)
                && let Ok(answers) = rrset::rrsets(&message, Section::Answer)
                && let Some(set) =
                    answers.iter().find(|set| set.rtype == RecordType::DNSKEY && set.owner == anchor.name)
            {
                self.validator.observe_dnskeys(set, self.now);
            }
            let anchors = self.validator.anchors();
            let Some(current) = anchors.iter().find(|current| current.name == anchor.name) else {
                return Ok((Cut::Insecure(InsecureReason::NoTrustAnchor), self.validator.config.bogus_ttl));
            };
            return self.anchor_keys_with(&current.clone());
        }
        self.anchor_keys_with(anchor)
    }

    fn anchor_keys_with(&mut self, anchor: &Anchor) -> Result<(Cut, u32), Pending> {
        let usable: Vec<&Ds> = usable_ds(&anchor.ds);
        if usable.is_empty() && anchor.keys.iter().all(|key| !crypto::algorithm_supported(key.algorithm)) {
            return Ok((Cut::Insecure(InsecureReason::UnsupportedAlgorithm), self.validator.config.max_cache_ttl));
        }
        let trusted = |key: &Dnskey, owner: &NameBuf| {
            anchor.keys.iter().any(|anchored| {
                anchored.flags == key.flags
                    && anchored.public_key == key.public_key
                    && anchored.algorithm == key.algorithm
            }) || ds_matches(&usable, owner, key)
        };
        self.fetch_keys(&anchor.name, &trusted)
    }

    /// Fetch and check the DNSKEY set of `zone`: some key that `trusted`
    /// accepts must sign it.
    fn fetch_keys(
        &mut self,
        zone: &NameBuf,
        trusted: &dyn Fn(&Dnskey, &NameBuf) -> bool,
    ) -> Result<(Cut, u32), Pending> {
        let bytes = match self.fetch_for_cut(zone, RecordType::DNSKEY)? {
            Ok(bytes) => bytes,
            Err(failed) => return Ok(failed),
        };
        let bogus_ttl = self.validator.config.bogus_ttl;
        let broken = |reason| Ok((Cut::Bogus(bogus(reason, zone, RecordType::DNSKEY)), bogus_ttl));
        let Ok(message) = Message::parse(&bytes) else { return broken(BogusReason::Malformed) };
        let Ok(answers) = rrset::rrsets(&message, Section::Answer) else { return broken(BogusReason::Malformed) };
        let Some(set) = answers.iter().find(|set| set.rtype == RecordType::DNSKEY && set.owner == *zone) else {
            return broken(BogusReason::DnskeyMissing);
        };
        let Ok(keys) = set.rdata.iter().map(|data| Dnskey::parse(data)).collect::<Result<Vec<_>, _>>() else {
            return broken(BogusReason::Malformed);
        };
        let entry: Vec<Dnskey> = keys.iter().filter(|key| trusted(key, zone)).cloned().collect();
        if entry.is_empty() {
            return broken(BogusReason::DnskeyMissing);
        }
        match rrset::verify_rrset(set, zone, &entry, self.now, self.validator.config.skew) {
            Ok(verified) => {
                let usable: Vec<Dnskey> = keys.into_iter().filter(Dnskey::is_usable_zone_key).collect();
                Ok((Cut::Secure(Arc::new(usable)), verified.ttl))
            }
            Err(SignatureFailure::UnsupportedAlgorithm) => {
                Ok((Cut::Insecure(InsecureReason::UnsupportedAlgorithm), self.validator.config.max_cache_ttl))
            }
            Err(failure) => broken(signature_reason(failure)),
        }
    }

    /// Ask for the DS of `name` below zone `apex` and say what `name` is.
    fn classify_cut(&mut self, name: &NameBuf, apex: &NameBuf, keys: &Arc<Vec<Dnskey>>) -> Result<(Cut, u32), Pending> {
        let bogus_ttl = self.validator.config.bogus_ttl;
        let bytes = match self.fetch_for_cut(name, RecordType::DS)? {
            Ok(bytes) => bytes,
            Err(failed) => return Ok(failed),
        };
        let broken = |reason| Ok((Cut::Bogus(bogus(reason, name, RecordType::DS)), bogus_ttl));
        let Ok(message) = Message::parse(&bytes) else { return broken(BogusReason::Malformed) };
        let rcode = match message.rcode() {
            Ok(rcode) if rcode == Rcode::NOERROR || rcode == Rcode::NXDOMAIN => rcode,
            _ => return broken(BogusReason::ChainQueryFailed),
        };
        let (Ok(answers), Ok(authority)) =
            (rrset::rrsets(&message, Section::Answer), rrset::rrsets(&message, Section::Authority))
        else {
            return broken(BogusReason::Malformed);
        };
        if let Some(set) = answers.iter().find(|set| set.rtype == RecordType::DS && set.owner == *name) {
            let verified = match rrset::verify_rrset(set, apex, keys, self.now, self.validator.config.skew) {
                Ok(verified) => verified,
                Err(SignatureFailure::UnsupportedAlgorithm) => {
                    return Ok((Cut::Insecure(InsecureReason::UnsupportedAlgorithm), bogus_ttl));
                }
                Err(failure) => return broken(signature_reason(failure)),
            };
            let Ok(dses) = set.rdata.iter().map(|data| Ds::parse(data)).collect::<Result<Vec<_>, _>>() else {
                return broken(BogusReason::Malformed);
            };
            let usable = usable_ds(&dses);
            if usable.is_empty() {
                return Ok((Cut::Insecure(InsecureReason::UnsupportedAlgorithm), verified.ttl));
            }
            let trusted = |key: &Dnskey, owner: &NameBuf| ds_matches(&usable, owner, key);
            let (cut, ttl) = self.fetch_keys(name, &trusted)?;
            return Ok((cut, ttl.min(verified.ttl)));
        }
        if answers.iter().any(|set| set.rtype == RecordType::CNAME && set.owner == *name) {
            // An alias is never a zone cut; the CNAME itself is checked with the answer.
            return Ok((Cut::Interior, bogus_ttl));
        }
        let (nsecs, nsec3s) = match self.denial_records(&authority, apex, keys) {
            Ok(records) => records,
            Err(failure) => return Ok((Cut::Bogus(failure), bogus_ttl)),
        };
        let ttl = authority
            .iter()
            .filter(|set| matches!(set.rtype, RecordType::NSEC | RecordType::NSEC3 | RecordType::SOA))
            .map(|set| set.ttl)
            .min()
            .unwrap_or(bogus_ttl);
        let max = self.validator.config.nsec3_max_iterations;
        let proof = if !nsecs.is_empty() {
            denial::prove_nsec(&nsecs, name, RecordType::DS)
        } else if !nsec3s.is_empty() {
            denial::prove_nsec3(&nsec3s, apex, name, RecordType::DS, max)
        } else {
            Err(DenialFailure::Missing)
        };
        Ok(match proof {
            Ok(Denial::NoData { delegation: true }) => (Cut::Insecure(InsecureReason::UnsignedDelegation), ttl),
            Ok(Denial::NoData { delegation: false }) => (Cut::Interior, ttl),
            Ok(Denial::NxDomain) if rcode == Rcode::NXDOMAIN => (Cut::Nonexistent, ttl),
            Ok(Denial::OptOut) => (Cut::Insecure(InsecureReason::OptOut), ttl),
            Ok(Denial::TooManyIterations(_)) => (Cut::Insecure(InsecureReason::Nsec3Iterations), ttl),
            Ok(Denial::NxDomain) => (Cut::Bogus(bogus(BogusReason::DenialInvalid, name, RecordType::DS)), bogus_ttl),
            Err(DenialFailure::Missing) => {
                (Cut::Bogus(bogus(BogusReason::NsecMissing, name, RecordType::DS)), bogus_ttl)
            }
            Err(_) => (Cut::Bogus(bogus(BogusReason::DenialInvalid, name, RecordType::DS)), bogus_ttl),
        })
    }
}

/// DS records this validator can use; SHA-1 digests are ignored when a
/// stronger one is present (RFC 4509 §3).
fn usable_ds(dses: &[Ds]) -> Vec<&Ds> {
    let supported: Vec<&Ds> = dses
        .iter()
        .filter(|ds| crypto::algorithm_supported(ds.algorithm) && crypto::digest_supported(ds.digest_type))
        .collect();
    if supported.iter().any(|ds| ds.digest_type != 1) {
        supported.into_iter().filter(|ds| ds.digest_type != 1).collect()
    } else {
        supported
    }
}

/// Whether some DS matches `key` at `owner`.
pub(crate) fn ds_matches(dses: &[&Ds], owner: &NameBuf, key: &Dnskey) -> bool {
    let rdata = key.to_wire();
    let tag = key.key_tag();
    let owner = owner.to_lowercase();
    dses.iter().any(|ds| {
        ds.key_tag == tag
            && ds.algorithm == key.algorithm
            && crypto::ds_digest(ds.digest_type, owner.as_wire(), &rdata).is_some_and(|digest| digest == ds.digest)
    })
}

/// How long a verified RRset may be kept: its TTL, its signatures' original
/// TTL and the time to their expiry, whichever ends first.
fn kept_ttl(set: &Rrset, now: u64) -> u32 {
    set.signatures.iter().fold(set.ttl, |ttl, (rrsig_ttl, rrsig)| {
        let left = u64::from(rrsig.expiration).saturating_sub(now);
        ttl.min(*rrsig_ttl).min(rrsig.original_ttl).min(u32::try_from(left).unwrap_or(u32::MAX))
    })
}

/// Whether an unsigned CNAME is what a validated DNAME synthesises.
fn synthesised(cname: &Rrset, dnames: &[(NameBuf, NameBuf)]) -> bool {
    let Some(target) = cname.rdata.first().and_then(|data| NameBuf::from_wire(data).ok()) else {
        return false;
    };
    dnames.iter().any(|(owner, dname_target)| {
        cname.owner != *owner && cname.owner.is_subdomain_of(owner) && {
            // Replace the DNAME owner suffix with its target.
            let keep = cname.owner.label_count() - owner.label_count();
            let mut prefix: Vec<&[u8]> = cname.owner.labels().take(keep).collect();
            let mut expected = Some(dname_target.clone());
            while let Some(label) = prefix.pop() {
                expected = expected.and_then(|name| name.prepend(label).ok());
            }
            expected.is_some_and(|expected| expected == target)
        }
    })
}

/// Follow CNAMEs (and DNAME-made CNAMEs) from `qname` through the answer section.
fn chain_end(answers: &[Rrset], qname: &NameBuf, qtype: RecordType) -> NameBuf {
    let mut name = qname.clone();
    if qtype == RecordType::CNAME {
        return name;
    }
    for _ in 0..answers.len() {
        let next = answers
            .iter()
            .find(|set| set.rtype == RecordType::CNAME && set.owner == name)
            .and_then(|set| set.rdata.first())
            .and_then(|data| NameBuf::from_wire(data).ok());
        match next {
            Some(target) => name = target,
            None => break,
        }
    }
    name
}
