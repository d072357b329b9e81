//! DNSSEC validation of forwarded answers: drives a sans-IO
//! [`signpost_dnssec::Validation`], sending the DS and DNSKEY queries it
//! asks for through the upstream group that gave the answer.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use signpost_dnssec::{Security, Step, Validator, response};
use signpost_upstream::{Group, Protocol, Resolved};

use crate::pipeline::{ForwardFailure, Validating};

/// The UDP payload size the chain queries advertise.
const CHAIN_PAYLOAD: u16 = 1232;

/// Validate `resolved` and shape it for the client: DNSSEC records dropped
/// unless the client set DO, TTLs capped by the signatures, AD cleared (the
/// caller sets it for clients that understand it: the shaped answer is
/// cached for all). Returns it with whether it is secure; bogus answers
/// become [`ForwardFailure::Bogus`].
pub(crate) async fn validate(
    validating: &Validating<'_>,
    group: &Group,
    mut resolved: Resolved,
) -> Result<(Resolved, bool), ForwardFailure> {
    let validator: &Validator = validating.validator;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
    let mut validation = validator.start(&resolved.response, now);
    let mut id: u16 = 0x5ec0;
    let verdict = loop {
        match validation.poll() {
            Step::Done(verdict) => break verdict,
            Step::Query(query) => {
                id = id.wrapping_add(1);
                let answer = match response::chain_query(id, &query.name, query.rtype, CHAIN_PAYLOAD) {
                    Ok(bytes) => group.resolve(&bytes).await.ok().map(|chain| chain.response),
                    Err(_) => None,
                };
                validation.handle_response(&query, answer.as_deref());
            }
        }
    };
    write_trust_points(validator);
    let secure = match verdict.security {
        Security::Secure => true,
        Security::Insecure(_) => false,
        Security::Bogus(bogus) => return Err(ForwardFailure::Bogus(bogus)),
    };
    let Ok(mut shaped) = response::for_client(&resolved.response, false, validating.dnssec_ok) else {
        return Err(ForwardFailure::Internal("validated answer could not be rebuilt"));
    };
    if let Some(limit) = verdict.ttl_limit
        && response::cap_ttls(&mut shaped, limit).is_err()
    {
        return Err(ForwardFailure::Internal("validated answer could not be rebuilt"));
    }
    resolved.response = shaped.into();
    Ok((resolved, secure))
}

/// RFC 8198: the answer validated NSEC records kept by the validator give
/// to `query` (the upstream query, asked with DO), shaped for the client as
/// [`validate`] shapes upstream answers; `None` to ask upstream.
pub(crate) fn synthesize(validating: &Validating<'_>, query: &[u8]) -> Option<Resolved> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
    let response = validating.validator.synthesize_negative(query, now)?;
    let shaped = response::for_client(&response, false, validating.dnssec_ok).ok()?;
    Some(Resolved {
        response: shaped.into(),
        // Nobody was asked: the unspecified address stands for the cache.
        server: SocketAddr::from(([0, 0, 0, 0], 0)),
        protocol: Protocol::Udp,
        attempts: Vec::new(),
    })
}

/// Write back the RFC 5011 state files validation changed, as unbound does
/// after each probe, and log each key's change of state. Rare (a probe per
/// DNSKEY TTL of a tracked zone) and small, so written in place.
fn write_trust_points(validator: &Validator) {
    for update in validator.take_trust_point_updates() {
        for event in &update.events {
            tracing::warn!(
                zone = %update.zone,
                key_tag = event.key_tag,
                algorithm = event.algorithm,
                from = event.from.name(),
                to = event.to.name(),
                "RFC 5011: trust anchor key changed state"
            );
        }
        if update.revoked && !update.events.is_empty() {
            tracing::error!(zone = %update.zone, "RFC 5011: every trust anchor key of the zone is revoked; it is no longer validated");
        }
        if let Some(text) = update.text
            && let Err(error) = replace_file(&update.file, &text)
        {
            tracing::error!(file = %update.file.display(), %error, "RFC 5011: cannot write the trust anchor state file");
        }
    }
}

/// Replace `path` with `text` atomically: a temporary file beside it, synced, renamed over it.
fn replace_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}-{}.tmp", std::process::id(), SEQUENCE.fetch_add(1, Ordering::Relaxed)));
    let temporary = std::path::PathBuf::from(temporary);
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_file_swaps_the_whole_file() {
        let dir = std::env::temp_dir().join(format!("signpost-autotrust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("root.key");
        std::fs::write(&path, "old and longer text\n").expect("write");
        replace_file(&path, "new\n").expect("replaced");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new\n");
        let leftovers = std::fs::read_dir(&dir).expect("list").count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
        let _ = std::fs::remove_dir_all(&dir);
        // A directory that does not exist: an error, not a panic.
        assert!(replace_file(&dir.join("missing/root.key"), "x").is_err());
    }
}
