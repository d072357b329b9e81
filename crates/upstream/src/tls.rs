//! rustls client settings for DoT and DoH: roots, the extra CA file, ALPN and the FIPS-style policy.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{CipherSuite, ClientConfig, NamedGroup, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::Error;
use crate::config::{GroupConfig, ServerConfig, TlsOptions};

/// ALPN protocol ID of DNS over TLS (RFC 7858 §3.2 registration).
const ALPN_DOT: &[u8] = b"dot";
/// ALPN protocol IDs offered for DoH, most preferred first.
pub(crate) const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The client settings a group's TLS servers share.
#[derive(Clone, Debug)]
pub(crate) struct TlsConfigs {
    pub(crate) dot: Arc<ClientConfig>,
    pub(crate) doh: Arc<ClientConfig>,
}

/// The system's trust anchors, read once per process.
/// The system's trusted root certificates (read once; unreadable ones are
/// left out with a warning).
pub fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let result = rustls_native_certs::load_native_certs();
        for error in &result.errors {
            tracing::warn!(%error, "could not read some system root certificates");
        }
        result.certs
    })
}

/// Build the TLS settings for `group`, or none when it has no TLS servers.
pub(crate) fn configs_for(group: &GroupConfig) -> Result<Option<TlsConfigs>, Error> {
    if !group.servers.iter().any(|server| server.protocol.is_encrypted()) {
        return Ok(None);
    }
    let roots = root_store(&group.name, &group.tls)?;
    let provider = Arc::new(crypto_provider(group.tls.fips));
    let build = |alpn: &[&[u8]]| -> Result<Arc<ClientConfig>, Error> {
        let mut config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| Error::Tls { group: group.name.clone(), source })?
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(Arc::new(config))
    };
    Ok(Some(TlsConfigs { dot: build(&[ALPN_DOT])?, doh: build(&[ALPN_H2, ALPN_HTTP1])? }))
}

fn root_store(group: &str, options: &TlsOptions) -> Result<Arc<RootCertStore>, Error> {
    let mut roots = RootCertStore::empty();
    if !options.ignore_system_roots {
        let (added, ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
        tracing::debug!(added, ignored, "system root certificates");
    }
    if let Some(path) = &options.ca_file {
        for certificate in read_ca_file(path)? {
            roots.add(certificate).map_err(|error| Error::BadCaFile {
                path: path.clone(),
                reason: format!("certificate rejected: {error}"),
            })?;
        }
    }
    if roots.is_empty() {
        return Err(Error::NoTrustedRoots { group: group.to_string() });
    }
    Ok(Arc::new(roots))
}

/// Read every certificate of a PEM file.
pub(crate) fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::CaFile { path: path.to_path_buf(), source })?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| Error::BadCaFile { path: path.to_path_buf(), reason: error.to_string() })?;
    if certificates.is_empty() {
        return Err(Error::BadCaFile { path: path.to_path_buf(), reason: "no PEM certificate in the file".into() });
    }
    Ok(certificates)
}

/// The name a server's certificate is checked against: `tls_name`, or else its IP address.
pub(crate) fn server_name(server: &ServerConfig) -> Option<ServerName<'static>> {
    match &server.tls_name {
        Some(name) => ServerName::try_from(name.clone()).ok(),
        None => Some(ServerName::IpAddress(server.address.ip().into())),
    }
}

/// ring's provider, restricted in FIPS mode to FIPS-approved algorithms:
/// AES-GCM suites, P-256/P-384 key exchange, no EdDSA signatures. This
/// emulates the policy; ring is not a FIPS-validated module. Listeners
/// (signpost-server) and upstream clients use this one filter.
pub fn crypto_provider(fips: bool) -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    if fips {
        provider.cipher_suites.retain(|suite| {
            matches!(
                suite.suite(),
                CipherSuite::TLS13_AES_128_GCM_SHA256
                    | CipherSuite::TLS13_AES_256_GCM_SHA384
                    | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                    | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                    | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
                    | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
            )
        });
        provider.kx_groups.retain(|group| matches!(group.name(), NamedGroup::secp256r1 | NamedGroup::secp384r1));
        provider.signature_verification_algorithms =
            fips_signature_algorithms(provider.signature_verification_algorithms);
    }
    provider
}

/// ring's signature algorithms without EdDSA, which FIPS 140-2 era policies do not approve.
fn fips_signature_algorithms(all: WebPkiSupportedAlgorithms) -> WebPkiSupportedAlgorithms {
    static FIPS: OnceLock<WebPkiSupportedAlgorithms> = OnceLock::new();
    *FIPS.get_or_init(|| {
        let eddsa = [rustls_pki_types::alg_id::ED25519, rustls_pki_types::alg_id::ED448];
        let kept: Vec<_> =
            all.all.iter().copied().filter(|algorithm| !eddsa.contains(&algorithm.public_key_alg_id())).collect();
        let mapping: Vec<_> = all
            .mapping
            .iter()
            .copied()
            .filter(|(scheme, _)| !matches!(scheme, SignatureScheme::ED25519 | SignatureScheme::ED448))
            .collect();
        // Leaked once per process: rustls wants 'static tables.
        WebPkiSupportedAlgorithms { all: Vec::leak(kept), mapping: Vec::leak(mapping) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Protocol, ServerConfig};
    use std::net::SocketAddr;

    #[test]
    fn fips_mode_keeps_only_aes_gcm_and_nist_curves() {
        let provider = crypto_provider(true);
        assert!(!provider.cipher_suites.is_empty());
        for suite in &provider.cipher_suites {
            assert!(format!("{:?}", suite.suite()).contains("GCM"), "{:?}", suite.suite());
        }
        let groups: Vec<_> = provider.kx_groups.iter().map(|group| group.name()).collect();
        assert_eq!(groups, [NamedGroup::secp256r1, NamedGroup::secp384r1]);
        assert!(provider.signature_verification_algorithms.mapping.iter().all(|(s, _)| *s != SignatureScheme::ED25519));
        let normal = crypto_provider(false);
        assert!(normal.cipher_suites.len() > provider.cipher_suites.len());
    }

    #[test]
    fn groups_without_tls_servers_need_no_roots() {
        let server = ServerConfig::udp(SocketAddr::from(([127, 0, 0, 1], 53)));
        let group = GroupConfig::new("plain", vec![server]);
        assert!(configs_for(&group).unwrap().is_none());
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_an_error() {
        let mut server = ServerConfig::tls(SocketAddr::from(([127, 0, 0, 1], 853)), "dns.test");
        server.protocol = Protocol::Tls;
        let mut group = GroupConfig::new("tls", vec![server]);
        group.tls.ignore_system_roots = true;
        assert!(matches!(configs_for(&group), Err(Error::NoTrustedRoots { .. })));
        group.tls.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(matches!(configs_for(&group), Err(Error::CaFile { .. })));
        let empty = std::env::temp_dir().join(format!("signpost-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        group.tls.ca_file = Some(empty.clone());
        assert!(matches!(configs_for(&group), Err(Error::BadCaFile { .. })));
        std::fs::remove_file(empty).unwrap();
    }

    #[test]
    fn names_fall_back_to_the_address() {
        let address = SocketAddr::from(([127, 0, 0, 1], 853));
        assert_eq!(server_name(&ServerConfig::new(address, Protocol::Tls)), Some(ServerName::from(address.ip())));
        let named = server_name(&ServerConfig::tls(address, "dns.test")).unwrap();
        assert_eq!(named.to_str(), "dns.test");
    }
}
