//! Certificates for DoH on inbound endpoints that were given none (created
//! through the API, which has no certificate parameter): a local CA kept in
//! `tls/` under the state directory, and one certificate per endpoint for
//! its addresses, `localhost` and `route53resolver.REGION.amazonaws.com`
//! (the name AWS's DoH template uses). Clients trust `tls/ca.pem`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

use crate::error::EndpointError;
use crate::model::TlsFiles;

/// The CA certificate clients trust, inside the TLS directory.
pub const CA_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";

/// A CA on disk that signs endpoint certificates.
pub struct LocalCa {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    /// The addresses each endpoint's certificate was made for.
    issued: BTreeMap<String, Vec<IpAddr>>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "Signpost endpoint local CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

fn failure(path: &Path, message: impl std::fmt::Display) -> EndpointError {
    EndpointError::Certificate { path: path.to_path_buf(), message: message.to_string() }
}

impl LocalCa {
    /// Load the CA in `dir`, or create it there.
    pub fn open_or_create(dir: &Path) -> Result<Self, EndpointError> {
        std::fs::create_dir_all(dir).map_err(|error| failure(dir, error))?;
        let cert_path = dir.join(CA_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let params = ca_params().map_err(|error| failure(&cert_path, error))?;
        let key = if key_path.exists() && cert_path.exists() {
            let pem = std::fs::read_to_string(&key_path).map_err(|error| failure(&key_path, error))?;
            KeyPair::from_pem(&pem).map_err(|error| failure(&key_path, error))?
        } else {
            let key = KeyPair::generate().map_err(|error| failure(&key_path, error))?;
            let cert = params.self_signed(&key).map_err(|error| failure(&cert_path, error))?;
            write_private(&key_path, &key.serialize_pem())?;
            std::fs::write(&cert_path, cert.pem()).map_err(|error| failure(&cert_path, error))?;
            key
        };
        Ok(Self { dir: dir.to_path_buf(), issuer: Issuer::new(params, key), issued: BTreeMap::new() })
    }

    /// The CA certificate's file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(CA_FILE)
    }

    /// The certificate and key of `endpoint` for `addresses`, made (or
    /// remade, when the addresses changed) as needed.
    pub fn endpoint_certificate(
        &mut self,
        endpoint: &str,
        addresses: &[IpAddr],
        region: &str,
    ) -> Result<TlsFiles, EndpointError> {
        let files =
            TlsFiles { cert: self.dir.join(format!("{endpoint}.pem")), key: self.dir.join(format!("{endpoint}.key")) };
        if self.issued.get(endpoint).is_some_and(|issued| issued == addresses) && files.cert.exists() {
            return Ok(files);
        }
        let mut names = vec!["localhost".to_string(), format!("route53resolver.{region}.amazonaws.com")];
        names.extend(addresses.iter().map(ToString::to_string));
        let mut params = CertificateParams::new(names).map_err(|error| failure(&files.cert, error))?;
        params
            .subject_alt_names
            .retain(|name| !matches!(name, SanType::DnsName(dns) if dns.as_str().parse::<IpAddr>().is_ok()));
        params.subject_alt_names.extend(addresses.iter().map(|address| SanType::IpAddress(*address)));
        params.distinguished_name.push(DnType::CommonName, endpoint);
        let key = KeyPair::generate().map_err(|error| failure(&files.key, error))?;
        let cert = params.signed_by(&key, &self.issuer).map_err(|error| failure(&files.cert, error))?;
        write_private(&files.key, &key.serialize_pem())?;
        std::fs::write(&files.cert, cert.pem()).map_err(|error| failure(&files.cert, error))?;
        self.issued.insert(endpoint.to_string(), addresses.to_vec());
        Ok(files)
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), EndpointError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| failure(path, error))?;
    file.write_all(text.as_bytes()).map_err(|error| failure(path, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_kept_and_signs_endpoint_certificates_for_their_addresses() {
        let dir = std::env::temp_dir().join(format!("signpost-ca-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut ca = LocalCa::open_or_create(&dir).unwrap();
        let ca_pem = std::fs::read_to_string(ca.ca_file()).unwrap();
        let addresses: Vec<IpAddr> = vec!["127.0.1.10".parse().unwrap(), "127.0.1.11".parse().unwrap()];
        let files = ca.endpoint_certificate("rslvr-in-1", &addresses, "us-east-1").unwrap();
        assert!(std::fs::read_to_string(&files.cert).unwrap().contains("BEGIN CERTIFICATE"));
        // The same CA after a restart.
        let again = LocalCa::open_or_create(&dir).unwrap();
        assert_eq!(std::fs::read_to_string(again.ca_file()).unwrap(), ca_pem);
        // The certificate chains to the CA: rustls accepts it for 127.0.1.10.
        signpost_server::tls::server_config("test", &files.cert, &files.key, &[b"h2"], false).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
