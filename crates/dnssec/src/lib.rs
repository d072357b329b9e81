//! Sans-IO DNSSEC validation (RFC 4033–4035, RFC 5155) of answers a
//! forwarder gets from upstream.
//!
//! A [`Validator`] holds the trust anchors, the names declared insecure and
//! a cache of what it learned about zone cuts. For each upstream response it
//! starts a [`Validation`], which asks for the DS and DNSKEY records it needs
//! and ends in a [`Verdict`]: secure (set AD), insecure (pass on without AD)
//! or bogus (answer SERVFAIL with the extended error of
//! [`BogusReason::extended_error`]). Nothing here does I/O or reads a clock:
//! the caller sends the queries and passes the time in.
//!
//! ```
//! use signpost_dnssec::{Security, Step, TrustAnchors, Validator, ValidatorConfig};
//!
//! // No anchor covers the name, so the answer is insecure without any query.
//! let validator = Validator::new(TrustAnchors::empty(), Vec::new(), ValidatorConfig::default());
//! let response = [
//!     0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, // id 1, response, NOERROR, one question
//!     7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, 0, 1, 0, 1, // example. A IN
//! ];
//! let mut validation = validator.start(&response, 1_700_000_000);
//! let Step::Done(verdict) = validation.poll() else { panic!("no query expected") };
//! assert!(matches!(verdict.security, Security::Insecure(_)));
//! ```
#![forbid(unsafe_code)]

mod aggressive;
pub mod anchor;
pub mod autotrust;
pub mod crypto;
pub mod denial;
mod error;
pub mod records;
pub mod response;
pub mod rrset;
#[cfg(test)]
mod test_support;
mod validator;

#[doc(hidden)]
pub mod fuzzing;

pub use anchor::{Anchor, TrustAnchors};
pub use autotrust::{HoldDown, KeyEvent, KeyState, Probe, TrustPoint};
pub use error::{Error, LocatedError};
pub use validator::{
    Bogus, BogusReason, InsecureReason, Query, Security, Step, TrustPointUpdate, Validation, Validator,
    ValidatorConfig, Verdict,
};
