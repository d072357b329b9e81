//! Entry points for the fuzz targets in `fuzz/`.

use crate::{TrustAnchors, Validator, ValidatorConfig, records};

/// Parse every DNSSEC record type from the same bytes.
pub fn records(data: &[u8]) {
    let _ = records::Dnskey::parse(data);
    let _ = records::Ds::parse(data);
    let _ = records::Rrsig::parse(data);
    let _ = records::Nsec::parse(data);
    let _ = records::Nsec3::parse(data);
}

/// Read trust anchor text.
pub fn trust_anchors(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = TrustAnchors::empty().add_text(text, "fuzz");
    }
}

/// Validate a message as an upstream response under the root anchor,
/// answering every chain query with the same message.
pub fn validate(data: &[u8]) {
    let validator = Validator::new(TrustAnchors::root(), Vec::new(), ValidatorConfig::default());
    let mut validation = validator.start(data, 1_700_000_000);
    for _ in 0..64 {
        match validation.poll() {
            crate::Step::Query(query) => validation.handle_response(&query, Some(data)),
            crate::Step::Done(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            super::records(&bytes);
            super::trust_anchors(&bytes);
            super::validate(&bytes);
        }

        #[test]
        fn responses_with_random_records_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            // A header with one question and one answer, then anything.
            let mut message = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 3, b'w', b'w', b'w', 0, 0, 1, 0, 1];
            message.extend_from_slice(&tail);
            super::validate(&message);
        }
    }
}
