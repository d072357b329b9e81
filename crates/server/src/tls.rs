//! TLS server configuration for DoT and DoH listeners (rustls with ring).

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// The certificates of a PEM file (a chain, or CA certificates to trust);
/// at least one. The error says what is wrong with the file.
pub(crate) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificates: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate found".into());
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub(crate) fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("cannot read private key: {e}"))
}

/// A rustls server config from PEM files, with the given ALPN protocols;
/// `fips` restricts it as [`signpost_upstream::crypto_provider`] says.
/// Errors name the listener and the file.
pub fn server_config(
    listener: &str,
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
    fips: bool,
) -> Result<Arc<ServerConfig>, Error> {
    let tls_error =
        |path: &Path, reason: String| Error::Tls { listener: listener.to_string(), path: path.to_path_buf(), reason };
    let certs = read_certificates(cert).map_err(|reason| tls_error(cert, reason))?;
    let private_key = read_private_key(key).map_err(|reason| tls_error(key, reason))?;
    let builder = ServerConfig::builder_with_provider(Arc::new(signpost_upstream::crypto_provider(fips)));
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
