//! Client certificates on the chat port: offered (never required) to line clients over TLS
//! 1.3, never to TLS 1.2 clients or browsers; any certificate is accepted if the client
//! proves it holds its key.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Opts, TestServer, spawn_server};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use rustls::sign::CertifiedKey;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Presents `key` (if any) when asked, and remembers whether the server asked.
#[derive(Debug)]
struct Presenter {
    key: Option<Arc<CertifiedKey>>,
    asked: AtomicBool,
}

impl ResolvesClientCert for Presenter {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::SeqCst);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A fresh self-signed client certificate and its key.
fn client_key() -> Arc<CertifiedKey> {
    let ck = rcgen::generate_simple_self_signed(vec!["alice".into()]).unwrap();
    let cert = CertificateDer::from(ck.cert.der().to_vec());
    let key = PrivateKeyDer::from_pem_slice(ck.signing_key.serialize_pem().as_bytes()).unwrap();
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).unwrap();
    Arc::new(CertifiedKey::new(vec![cert], signer))
}

/// Connects with the given TLS versions and ALPN, presenting `key`; returns whether the
/// server asked for a certificate and the first bytes it sent (empty for HTTP).
async fn handshake(
    server: &TestServer,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
    key: Option<Arc<CertifiedKey>>,
) -> (bool, String) {
    let presenter = Arc::new(Presenter {
        key,
        asked: AtomicBool::new(false),
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.cert_der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::clone(&presenter) as Arc<dyn ResolvesClientCert>);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut tls = tokio::time::timeout(
        common::STEP,
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .unwrap()
    .unwrap();
    let mut first = String::new();
    if alpn != [b"http/1.1"] {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(common::STEP, tls.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        first = String::from_utf8_lossy(&buf[..n]).into_owned();
    }
    (presenter.asked.load(Ordering::SeqCst), first)
}

const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

#[tokio::test]
async fn a_tls13_line_client_is_asked_for_a_certificate_but_may_present_none() {
    let server = spawn_server(Opts::default()).await;
    let (asked, first) = handshake(&server, TLS13, &[], None).await;
    assert!(asked);
    assert!(first.starts_with("*** Welcome to tlschat"), "{first}");
}

#[tokio::test]
async fn a_self_signed_client_certificate_is_accepted() {
    let server = spawn_server(Opts::default()).await;
    let (asked, first) = handshake(&server, TLS13, &[b"tlschat"], Some(client_key())).await;
    assert!(asked);
    assert!(first.starts_with("*** Welcome to tlschat"), "{first}");
}

#[tokio::test]
async fn a_tls12_client_is_never_asked_for_a_certificate() {
    let server = spawn_server(Opts::default()).await;
    let (asked, first) = handshake(&server, TLS12, &[], Some(client_key())).await;
    assert!(!asked);
    assert!(first.starts_with("*** Welcome to tlschat"), "{first}");
}

#[tokio::test]
async fn the_browser_path_never_sends_a_certificate_request() {
    let server = spawn_server(Opts::default()).await;
    let (asked, _) = handshake(&server, TLS13, &[b"http/1.1"], Some(client_key())).await;
    assert!(!asked);
}
