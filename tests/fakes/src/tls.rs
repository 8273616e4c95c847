//! A test certificate authority, generated at test time, for mutual TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// PEM files written for one test: the CA, the server's and a client's pair.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate a client trusts.
    pub ca: PathBuf,
    /// The client certificate and key a client presents.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    server_cert: String,
    server_key: String,
    ca_pem: String,
}

impl TestPki {
    /// Generates a CA, a server certificate for `127.0.0.1`/`localhost` and a
    /// client certificate, and writes the client side into `dir`.
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "fake teller test CA");
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate()?;
        let server_cert =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?
                .signed_by(&server_key, &issuer)?;
        let client_key = KeyPair::generate()?;
        let mut client_params = CertificateParams::new(Vec::new())?;
        client_params
            .distinguished_name
            .push(DnType::CommonName, "platform client");
        let client_cert = client_params.signed_by(&client_key, &issuer)?;

        let pki = Self {
            ca: dir.join("teller-ca.pem"),
            client_cert: dir.join("teller-client.pem"),
            client_key: dir.join("teller-client-key.pem"),
            server_cert: server_cert.pem(),
            server_key: server_key.serialize_pem(),
            ca_pem: ca_cert.pem(),
        };
        std::fs::write(&pki.ca, &pki.ca_pem)?;
        std::fs::write(&pki.client_cert, client_cert.pem())?;
        std::fs::write(&pki.client_key, client_key.serialize_pem())?;
        Ok(pki)
    }

    /// Writes the server's certificate and key (for `127.0.0.1` and
    /// `localhost`, signed by the CA) into `dir`, for a server not built
    /// here: their paths.
    pub fn write_server_pair(&self, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        let (cert, key) = (dir.join("server.pem"), dir.join("server-key.pem"));
        std::fs::write(&cert, &self.server_cert)?;
        std::fs::write(&key, &self.server_key)?;
        Ok((cert, key))
    }

    /// A server config that requires a client certificate signed by the CA.
    pub(crate) fn server_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes())?)?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()?;
        let chain = vec![CertificateDer::from_pem_slice(self.server_cert.as_bytes())?];
        let key = PrivateKeyDer::from_pem_slice(self.server_key.as_bytes())?;
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        Ok(Arc::new(config))
    }
}
