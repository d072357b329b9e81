//! Test certificates: a private CA and a leaf it signed for the loopback
//! names, as PEM files on request and as rustls configurations.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::Error;

/// The names every leaf certificate carries.
pub const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A private CA and a leaf certificate it signed (ECDSA P-256, which the
/// FIPS policy allows) for `localhost`, 127.0.0.1 and ::1, plus any extra
/// names. Clients trust only the CA.
///
/// ```
/// use signpost_testkit::{TempDir, TestCertificates};
///
/// let certificates = TestCertificates::new()?;
/// let dir = TempDir::new();
/// let files = certificates.write_to(dir.path())?;
/// assert!(files.cert.exists() && files.key.exists() && files.ca.exists());
/// let server = certificates.server_config(&[b"h2"])?;
/// let client = certificates.client_config(&[b"h2"])?;
/// # Ok::<(), signpost_testkit::Error>(())
/// ```
pub struct TestCertificates {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    leaf_pem: String,
    leaf_der: CertificateDer<'static>,
    key_pem: String,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for TestCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCertificates").finish_non_exhaustive()
    }
}

/// Where [`TestCertificates::write_to`] put the PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The CA certificate (`ca.pem`): what clients trust.
    pub ca: PathBuf,
    /// The leaf certificate (`cert.pem`): what servers present.
    pub cert: PathBuf,
    /// The leaf's private key (`key.pem`, PKCS#8).
    pub key: PathBuf,
}

impl TestCertificates {
    /// A CA and a leaf for the loopback names.
    pub fn new() -> Result<Self, Error> {
        Self::with_names(&[])
    }

    /// A CA and a leaf for the loopback names and `extra` (DNS names or IP addresses).
    pub fn with_names(extra: &[&str]) -> Result<Self, Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let names: Vec<String> = LOOPBACK_NAMES.iter().chain(extra).map(|name| (*name).to_owned()).collect();
        let leaf_key = KeyPair::generate()?;
        let leaf = CertificateParams::new(names)?.signed_by(&leaf_key, &ca)?;
        Ok(Self {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            leaf_pem: leaf.pem(),
            leaf_der: leaf.der().clone(),
            key_pem: leaf_key.serialize_pem(),
            key_der: leaf_key.serialize_der(),
        })
    }

    /// The CA certificate in PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate in DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// The leaf certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.leaf_pem
    }

    /// The leaf's private key in PEM (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Write `ca.pem`, `cert.pem` and `key.pem` into `dir`.
    pub fn write_to(&self, dir: &Path) -> Result<CertificateFiles, Error> {
        let files = CertificateFiles { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
        for (path, text) in [(&files.ca, &self.ca_pem), (&files.cert, &self.leaf_pem), (&files.key, &self.key_pem)] {
            std::fs::write(path, text).map_err(|source| Error::File { path: path.clone(), source })?;
        }
        Ok(files)
    }

    /// Server settings presenting the leaf and offering `alpn` (`b"h2"`,
    /// `b"http/1.1"`, `b"dot"`), with ring's default choices.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, Error> {
        self.server_config_with(rustls::crypto::ring::default_provider(), alpn)
    }

    /// [`TestCertificates::server_config`] with another crypto provider (one
    /// limited to some cipher suites, say).
    pub fn server_config_with(
        &self,
        provider: CryptoProvider,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, Error> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.leaf_der.clone()], key)?;
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// Client settings trusting only the CA and offering `alpn` (none: no
    /// ALPN extension at all).
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_client_trusting_the_ca_talks_to_a_server_with_the_leaf() {
        let certificates = TestCertificates::with_names(&["dns.test"]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(certificates.server_config(&[b"dot"]).unwrap());
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = acceptor.accept(stream).await.unwrap();
            stream.write_all(b"hello").await.unwrap();
            stream.shutdown().await.unwrap();
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(certificates.client_config(&[b"dot"]).unwrap()));
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("dns.test").unwrap();
        let mut stream = connector.connect(name, stream).await.unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"dot"[..]));
        let mut text = Vec::new();
        let _ = stream.read_to_end(&mut text).await;
        assert_eq!(text, b"hello");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_client_trusting_another_ca_is_refused() {
        let ours = TestCertificates::new().unwrap();
        let theirs = TestCertificates::new().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(ours.server_config(&[]).unwrap());
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = acceptor.accept(stream).await;
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(theirs.client_config(&[]).unwrap()));
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        assert!(connector.connect(name, stream).await.is_err());
    }

    #[test]
    fn pem_files_are_written_where_asked() {
        let certificates = TestCertificates::new().unwrap();
        let dir = crate::TempDir::new();
        let files = certificates.write_to(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&files.cert).unwrap(), certificates.cert_pem());
        assert!(std::fs::read_to_string(&files.key).unwrap().contains("PRIVATE KEY"));
        assert!(std::fs::read_to_string(&files.ca).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
        assert_ne!(certificates.ca_pem(), certificates.cert_pem());
    }
}
