//! DNSSEC validation of forwarded answers: drives a sans-IO
//! [`signpost_dnssec::Validation`], sending the DS and DNSKEY queries it
//! asks for through the upstream group that gave the answer.

use std::time::{SystemTime, UNIX_EPOCH};

use signpost_dnssec::{Security, Step, Validator, response};
use signpost_upstream::{Group, Resolved};

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
