//! A client certificate as a user makes one with openssl, and the TLS clients that present
//! it: enrolling it and logging in by it.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::TlsConnector;

use super::TestServer;

/// A client certificate as the files a user makes with openssl: PEM certificate and key.
pub struct ClientPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl ClientPair {
    pub fn new() -> ClientPair {
        let ck = rcgen::generate_simple_self_signed(vec!["me".into()]).unwrap();
        ClientPair {
            cert_pem: ck.cert.pem(),
            key_pem: ck.signing_key.serialize_pem(),
        }
    }

    pub fn fingerprint(&self) -> String {
        let der = CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap();
        tlschat::tls::fingerprint(&der)
    }

    /// A TLS client trusting the server that presents this certificate.
    pub fn connector(&self, server: &TestServer, tls12_only: bool) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(server.cert_der.clone()).unwrap();
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = vec![CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        TlsConnector::from(Arc::new(config))
    }

    pub async fn connect(&self, server: &TestServer) -> super::TestClient {
        super::TestClient::connect(server.addr, &self.connector(server, false)).await
    }

    /// Logs in as `name` by password over a connection presenting this certificate.
    pub async fn login_by_password(&self, server: &TestServer, name: &str) -> super::TestClient {
        let mut c = self.connect(server).await;
        c.login(name, super::PASSWORD).await;
        c
    }

    /// Enrolls this certificate for `name`, leaves, and logs in again by the certificate.
    pub async fn enroll_and_log_in_by_it(
        &self,
        server: &TestServer,
        name: &str,
    ) -> super::TestClient {
        let mut first = self.enroll(server, name, "laptop").await;
        first.send("/quit").await;
        first.expect_closed().await;
        self.log_in_by_it(server, &name.to_ascii_uppercase()).await
    }

    /// Logs in as `name` by this certificate (past `*** Authenticated by client certificate`).
    pub async fn log_in_by_it(&self, server: &TestServer, name: &str) -> super::TestClient {
        let mut c = self.connect(server).await;
        c.expect_greeting().await;
        c.send(name).await;
        c.expect_line("*** Authenticated by client certificate")
            .await;
        c
    }

    /// Enrolls this certificate for `name` (logging in by password) under `label`.
    pub async fn enroll(&self, server: &TestServer, name: &str, label: &str) -> super::TestClient {
        let mut c = self.login_by_password(server, name).await;
        c.send(&format!("/cert enroll {label}")).await;
        c.expect_line(&format!(
            "*** Certificate {} enrolled as {label}",
            self.fingerprint()
        ))
        .await;
        c
    }
}
