//! Signature verification and digests through `ring`.
//!
//! Algorithms follow RFC 8624's validation column: RSA/SHA-1 (5, 7),
//! RSA/SHA-256 (8), RSA/SHA-512 (10), ECDSA P-256 (13) and P-384 (14) and
//! Ed25519 (15). RSA/MD5 and DSA must not be validated; GOST and Ed448 are
//! not offered by `ring`. A zone signed only with those is treated as
//! insecure (RFC 4035 §5.2), not bogus.

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

/// Whether this validator can check signatures of DNSSEC algorithm `algorithm`.
pub fn algorithm_supported(algorithm: u8) -> bool {
    matches!(algorithm, 5 | 7 | 8 | 10 | 13 | 14 | 15)
}

/// Whether DS digest type `digest_type` can be computed.
pub fn digest_supported(digest_type: u8) -> bool {
    matches!(digest_type, 1 | 2 | 4)
}

/// Verify `signature` over `data` with a DNSKEY public key. `false` for a
/// bad signature, a malformed key or an unsupported algorithm.
pub fn verify(algorithm: u8, public_key: &[u8], data: &[u8], signature: &[u8]) -> bool {
    match algorithm {
        5 | 7 => verify_rsa(&signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY, public_key, data, signature),
        8 => verify_rsa(&signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY, public_key, data, signature),
        10 => verify_rsa(&signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY, public_key, data, signature),
        13 => verify_ecdsa(&signature::ECDSA_P256_SHA256_FIXED, 64, public_key, data, signature),
        14 => verify_ecdsa(&signature::ECDSA_P384_SHA384_FIXED, 96, public_key, data, signature),
        15 => {
            public_key.len() == 32
                && UnparsedPublicKey::new(&signature::ED25519, public_key).verify(data, signature).is_ok()
        }
        _ => false,
    }
}

/// RSA keys are an exponent length (one octet, or zero and two octets), the
/// exponent, then the modulus (RFC 3110 §2).
fn verify_rsa(parameters: &'static signature::RsaParameters, key: &[u8], data: &[u8], signature: &[u8]) -> bool {
    let (exponent_len, rest) = match key {
        [0, high, low, rest @ ..] => (usize::from(u16::from_be_bytes([*high, *low])), rest),
        [len, rest @ ..] => (usize::from(*len), rest),
        [] => return false,
    };
    let Some((exponent, modulus)) = rest.split_at_checked(exponent_len) else {
        return false;
    };
    let modulus = trim_leading_zeros(modulus);
    let exponent = trim_leading_zeros(exponent);
    if modulus.is_empty() || exponent.is_empty() {
        return false;
    }
    RsaPublicKeyComponents { n: modulus, e: exponent }.verify(parameters, data, signature).is_ok()
}

fn trim_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or(&[])
}

/// ECDSA keys are the point's x and y (RFC 6605 §4); `ring` wants the
/// uncompressed SEC1 form, 0x04 then x and y.
fn verify_ecdsa(
    algorithm: &'static signature::EcdsaVerificationAlgorithm,
    key_len: usize,
    key: &[u8],
    data: &[u8],
    signature: &[u8],
) -> bool {
    if key.len() != key_len {
        return false;
    }
    let mut point = Vec::with_capacity(1 + key_len);
    point.push(4);
    point.extend_from_slice(key);
    UnparsedPublicKey::new(algorithm, &point).verify(data, signature).is_ok()
}

/// The DS digest of `owner` (canonical wire form) followed by DNSKEY RDATA,
/// or `None` for an unsupported digest type.
pub fn ds_digest(digest_type: u8, owner_canonical: &[u8], dnskey_rdata: &[u8]) -> Option<Vec<u8>> {
    let algorithm = match digest_type {
        1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        2 => &ring::digest::SHA256,
        4 => &ring::digest::SHA384,
        _ => return None,
    };
    let mut context = ring::digest::Context::new(algorithm);
    context.update(owner_canonical);
    context.update(dnskey_rdata);
    Some(context.finish().as_ref().to_vec())
}

/// The NSEC3 hash of a canonical (lowercase, uncompressed) name (RFC 5155 §5).
pub fn nsec3_hash(name_canonical: &[u8], salt: &[u8], iterations: u16) -> Vec<u8> {
    let hash_once = |input: &[u8]| {
        let mut context = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        context.update(input);
        context.update(salt);
        context.finish()
    };
    let mut digest = hash_once(name_canonical);
    for _ in 0..iterations {
        digest = hash_once(digest.as_ref());
    }
    digest.as_ref().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::base32hex_encode;

    #[test]
    fn nsec3_hash_matches_rfc_5155_appendix_a() {
        // RFC 5155 Appendix A: salt aabbccdd, 12 iterations, H(example) = 0p9mhaveqvm6t7vbl5lop2u3t2rp3tom.
        let name = b"\x07example\x00";
        let hash = nsec3_hash(name, &[0xaa, 0xbb, 0xcc, 0xdd], 12);
        assert_eq!(base32hex_encode(&hash), "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom");
        let name = b"\x01a\x07example\x00";
        assert_eq!(
            base32hex_encode(&nsec3_hash(name, &[0xaa, 0xbb, 0xcc, 0xdd], 12)),
            "35mthgpgcu1qg68fab165klnsnk3dpvl"
        );
    }

    #[test]
    fn unsupported_algorithms_never_verify() {
        for algorithm in [1, 3, 6, 12, 16, 200] {
            assert!(!algorithm_supported(algorithm));
            assert!(!verify(algorithm, &[1, 2, 3], b"data", b"sig"));
        }
    }

    #[test]
    fn malformed_keys_do_not_verify() {
        assert!(!verify(8, &[], b"data", b"sig"));
        assert!(!verify(8, &[0, 0xff, 0xff, 1], b"data", b"sig"));
        assert!(!verify(13, &[4; 63], b"data", &[0; 64]));
        assert!(!verify(15, &[0; 31], b"data", &[0; 64]));
    }
}
