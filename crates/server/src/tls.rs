//! TLS server configuration for DoT and DoH listeners (rustls with ring).

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// The ring provider, optionally restricted to FIPS-approved algorithms:
/// AES-GCM suites, P-256/P-384 key exchange, TLS 1.2 and 1.3. This emulates
/// the policy; ring is not a FIPS-validated module.
pub(crate) fn provider(fips: bool) -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    if fips {
        use rustls::CipherSuite;
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
        provider
            .kx_groups
            .retain(|group| matches!(group.name(), rustls::NamedGroup::secp256r1 | rustls::NamedGroup::secp384r1));
    }
    provider
}

/// A rustls server config from PEM files, with the given ALPN protocols.
pub(crate) fn server_config(
    listener: &str,
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
    fips: bool,
) -> Result<Arc<ServerConfig>, Error> {
    let tls_error =
        |path: &Path, reason: String| Error::Tls { listener: listener.to_string(), path: path.to_path_buf(), reason };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_error(cert, format!("cannot read certificates: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error(cert, format!("bad certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(cert, "no certificate found".into()));
    }
    let private_key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error(key, format!("cannot read private key: {e}")))?;
    let builder = ServerConfig::builder_with_provider(Arc::new(provider(fips)));
    let builder = if fips {
        builder.with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    } else {
        builder.with_safe_default_protocol_versions()
    }
    .map_err(|e| tls_error(cert, format!("protocol versions: {e}")))?;
    let mut config = builder
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        .map_err(|e| tls_error(cert, format!("certificate and key do not work together: {e}")))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
