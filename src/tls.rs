//! Certificates: PEM files to a rustls `ServerConfig`, self-signed generation, fingerprints.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::sync::RwLock;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Names a generated certificate covers unless others are given.
pub const DEFAULT_CERT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// File name of a generated certificate inside its directory.
pub const CERT_FILE: &str = "server.crt";
/// File name of a generated private key inside its directory.
pub const KEY_FILE: &str = "server.key";

/// A certificate problem.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading certificate {path}: {message}")]
    Cert { path: PathBuf, message: String },
    #[error("reading private key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("certificate {cert} and key {key} do not match: {message}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("{0} already exists (use --force to replace it)")]
    Exists(PathBuf),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating certificate: {0}")]
    Generate(String),
}

/// A loaded certificate pair ready for the acceptor.
pub struct LoadedCert {
    /// The rustls configurations for new handshakes.
    pub configs: ServerConfigs,
    /// SHA-256 fingerprint of the leaf certificate.
    pub fingerprint: String,
    /// Where new handshakes get their certificate; [`CertSource::reload`] swaps it.
    pub source: Arc<CertSource>,
}

/// The certificate new handshakes use, replaceable while the server runs: existing sessions
/// keep the keys they negotiated, only later handshakes see the new pair.
#[derive(Debug)]
pub struct CertSource {
    current: RwLock<(Arc<CertifiedKey>, String)>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl ResolvesServerCert for CertSource {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.read().0))
    }
}

impl CertSource {
    /// The fingerprint of the certificate in service.
    pub fn fingerprint(&self) -> String {
        self.read().1.clone()
    }

    /// Loads the files again; on any error the pair in service stays and the error is returned.
    pub fn reload(&self) -> Result<String, TlsError> {
        let (key, fingerprint) = load_pair(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (key, fingerprint.clone());
        Ok(fingerprint)
    }

    /// Reloads and logs the outcome: a failed reload keeps the pair in service.
    pub fn reload_and_log(&self) {
        match self.reload() {
            Ok(fingerprint) => tracing::info!(%fingerprint, "certificate reloaded"),
            Err(e) => tracing::error!(
                error = %e,
                "certificate reload failed; the previous one stays in service"
            ),
        }
    }

    /// Modification times and sizes of both files, to notice replacements.
    pub fn file_state(&self) -> Option<[(std::time::SystemTime, u64); 2]> {
        let stat = |p: &Path| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len()))
        };
        Some([stat(&self.cert_path)?, stat(&self.key_path)?])
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, (Arc<CertifiedKey>, String)> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reloads the certificate whenever either file changes on disk (checked every `interval`),
/// until `shutdown`.
pub async fn watch(
    source: Arc<CertSource>,
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut seen = source.file_state();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
        let state = source.file_state();
        if state != seen {
            seen = state;
            source.reload_and_log();
        }
    }
}

/// Loads a PEM certificate chain and key and checks that they belong together.
pub fn load(cert: &Path, key: &Path) -> Result<LoadedCert, TlsError> {
    let (certified, fingerprint) = load_pair(cert, key)?;
    let source = Arc::new(CertSource {
        current: RwLock::new((certified, fingerprint.clone())),
        cert_path: cert.to_owned(),
        key_path: key.to_owned(),
    });
    let configs = ServerConfigs::build(|builder| {
        Ok(builder.with_cert_resolver(Arc::clone(&source) as Arc<dyn ResolvesServerCert>))
    })
    .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok(LoadedCert {
        configs,
        fingerprint,
        source,
    })
}

fn load_pair(cert: &Path, key: &Path) -> Result<(Arc<CertifiedKey>, String), TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.to_owned(),
            message: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Cert {
            path: cert.to_owned(),
            message: "no certificate found in the file".into(),
        });
    };
    let fingerprint = fingerprint(leaf);
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        message: e.to_string(),
    })?;
    let certified =
        CertifiedKey::from_der(chain, private, &provider()).map_err(|e| TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
            message: e.to_string(),
        })?;
    Ok((Arc::new(certified), fingerprint))
}

fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn config_builder()
-> Result<rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>, rustls::Error> {
    Ok(ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth())
}

/// TLS 1.3 only, offering client authentication: TLS 1.2 would send the client's certificate
/// in the clear.
fn client_cert_config_builder()
-> Result<rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>, rustls::Error> {
    let provider = Arc::new(provider());
    let verifier = Arc::new(AnyClientCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    Ok(ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier))
}

/// Accepts any client certificate, self-signed included, as long as the client proves it
/// holds the key (the handshake signature, checked by the crypto provider). The certificate
/// is an identity, not a chain of trust: the server identifies it by its SHA-256 and the
/// account it was enrolled to decides what it may do.
#[derive(Debug)]
struct AnyClientCertificate {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::server::danger::ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        // Something that is not a certificate is refused before its signature is looked at.
        x509_parser::parse_x509_certificate(end_entity.as_ref()).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The ALPN name of the line protocol. Clients that offer no ALPN (`openssl s_client`) are
/// served too; a client that offers only other protocols (`h2` alone, or anything with the web
/// client off) is refused in the handshake with the no_application_protocol alert.
pub const ALPN_TLSCHAT: &[u8] = b"tlschat";
/// The ALPN name browsers offer for HTTP/1.1: such a client gets the web client.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The configurations the chat port chooses from once it has read a ClientHello. Both share
/// the certificate; they differ in the protocol they negotiate, and only the line protocol
/// may ever ask for a client certificate (browsers drop a WebSocket when asked for one).
#[derive(Clone)]
pub struct ServerConfigs {
    /// For the line protocol from a client that offers TLS 1.3: ALPN `tlschat` or none, and
    /// a client certificate may be presented (TLS 1.3 only).
    pub line: Arc<ServerConfig>,
    /// For the line protocol from a TLS 1.2 client: no client certificates.
    pub line_tls12: Arc<ServerConfig>,
    /// For browsers: ALPN `http/1.1`, never a client certificate.
    pub web: Arc<ServerConfig>,
    /// For IRC clients that offer TLS 1.3: no ALPN (IRC clients offer none, or `irc`), and a
    /// client certificate may be presented (SASL EXTERNAL).
    pub irc: Arc<ServerConfig>,
    /// For IRC clients on TLS 1.2: no client certificates.
    pub irc_tls12: Arc<ServerConfig>,
}

/// What the certificate part of a configuration is made with.
type WantsCert = rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>;

impl ServerConfigs {
    fn build(
        config: impl Fn(WantsCert) -> Result<ServerConfig, rustls::Error>,
    ) -> Result<Self, rustls::Error> {
        Ok(ServerConfigs {
            line: finish(config(client_cert_config_builder()?)?, Some(ALPN_TLSCHAT)),
            line_tls12: finish(config(config_builder()?)?, Some(ALPN_TLSCHAT)),
            web: finish(config(config_builder()?)?, Some(ALPN_HTTP1)),
            irc: finish(config(client_cert_config_builder()?)?, None),
            irc_tls12: finish(config(config_builder()?)?, None),
        })
    }
}

fn finish(mut config: ServerConfig, alpn: Option<&[u8]>) -> Arc<ServerConfig> {
    // Chat clients hold one long connection; resumption tickets would only cost memory.
    config.send_tls13_tickets = 0;
    config.alpn_protocols = alpn.into_iter().map(<[u8]>::to_vec).collect();
    Arc::new(config)
}

/// The server configurations (see [`ServerConfigs`]) for one fixed certificate.
pub fn server_configs(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfigs, rustls::Error> {
    ServerConfigs::build(|builder| builder.with_single_cert(chain.clone(), key.clone_key()))
}

/// Uppercase colon-separated SHA-256 of a DER certificate, as `openssl x509 -fingerprint` prints.
pub fn fingerprint(der: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    let mut out = String::with_capacity(95);
    for (i, b) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{b:02X}");
    }
    out
}

/// A freshly generated self-signed pair, in memory.
pub struct SelfSigned {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// PKCS#8 private key, PEM.
    pub key_pem: String,
    /// SHA-256 fingerprint of the certificate.
    pub fingerprint: String,
    /// Last day of validity, `YYYY-MM-DD` (UTC).
    pub not_after: String,
}

/// Validity of generated certificates: 397 days, the most the CA/Browser Forum allows
/// publicly trusted ones, so that `doctor`'s expiry check means something.
pub const DEFAULT_CERT_DAYS: u32 = 397;

/// Generates an ECDSA P-256 self-signed certificate for `names` (DNS names or IP addresses),
/// valid from an hour ago (clock skew) for `days` days.
pub fn self_signed(names: &[String], days: u32) -> Result<SelfSigned, TlsError> {
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(generate)?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    let key = rcgen::KeyPair::generate().map_err(generate)?;
    let cert = params.self_signed(&key).map_err(generate)?;
    let end = params.not_after.date();
    Ok(SelfSigned {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        fingerprint: fingerprint(cert.der()),
        not_after: format!(
            "{:04}-{:02}-{:02}",
            end.year(),
            u8::from(end.month()),
            end.day()
        ),
    })
}

/// Generates a pair and writes it to `cert`/`key` (key mode 0600); refuses to overwrite unless `force`.
pub fn write_self_signed(
    cert: &Path,
    key: &Path,
    names: &[String],
    days: u32,
    force: bool,
) -> Result<SelfSigned, TlsError> {
    if !force {
        for path in [cert, key] {
            if path.exists() {
                return Err(TlsError::Exists(path.to_owned()));
            }
        }
    }
    let pair = self_signed(names, days)?;
    for (path, mode, pem) in [(key, 0o600, &pair.key_pem), (cert, 0o644, &pair.cert_pem)] {
        write_file(path, mode, pem.as_bytes(), force)?;
    }
    Ok(pair)
}

fn write_file(path: &Path, mode: u32, data: &[u8], force: bool) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    if force {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(err(e)),
            _ => {}
        }
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == ErrorKind::AlreadyExists {
                TlsError::Exists(path.to_owned())
            } else {
                err(e)
            }
        })?;
    file.write_all(data).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        DEFAULT_CERT_NAMES.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn generated_pair_loads_and_fingerprint_matches() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let pair = write_self_signed(&c, &k, &names(), DEFAULT_CERT_DAYS, false).unwrap();
        let loaded = load(&c, &k).unwrap();
        assert_eq!(loaded.fingerprint, pair.fingerprint);
        assert_eq!(loaded.fingerprint.len(), 95);
    }

    #[test]
    fn generated_certificates_are_valid_for_the_given_days_only() {
        let pair = self_signed(&names(), 397).unwrap();
        let der = CertificateDer::from_pem_slice(pair.cert_pem.as_bytes()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let validity = cert.validity();
        let span = validity.not_after.timestamp() - validity.not_before.timestamp();
        assert_eq!(span, 397 * 86_400 + 3_600);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(validity.not_before.timestamp() < now && validity.not_after.timestamp() > now);
    }

    #[test]
    fn mismatched_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = (dir.path().join("c1"), dir.path().join("k1"));
        let (c2, k2) = (dir.path().join("c2"), dir.path().join("k2"));
        write_self_signed(&c1, &k1, &names(), DEFAULT_CERT_DAYS, false).unwrap();
        write_self_signed(&c2, &k2, &names(), DEFAULT_CERT_DAYS, false).unwrap();
        assert!(matches!(load(&c1, &k2), Err(TlsError::Mismatch { .. })));
    }

    #[test]
    fn reload_swaps_the_pair_and_a_bad_pair_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c"), dir.path().join("k"));
        let first = write_self_signed(&c, &k, &names(), DEFAULT_CERT_DAYS, false).unwrap();
        let loaded = load(&c, &k).unwrap();
        let second = write_self_signed(&c, &k, &names(), DEFAULT_CERT_DAYS, true).unwrap();
        assert_eq!(loaded.source.reload().unwrap(), second.fingerprint);
        assert_ne!(first.fingerprint, second.fingerprint);
        std::fs::write(&k, "not a key").unwrap();
        assert!(loaded.source.reload().is_err());
        assert_eq!(loaded.source.fingerprint(), second.fingerprint);
    }

    #[test]
    fn existing_files_are_not_overwritten_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c"), dir.path().join("k"));
        let first = write_self_signed(&c, &k, &names(), DEFAULT_CERT_DAYS, false).unwrap();
        assert!(matches!(
            write_self_signed(&c, &k, &names(), DEFAULT_CERT_DAYS, false),
            Err(TlsError::Exists(_))
        ));
        let second = write_self_signed(&c, &k, &names(), DEFAULT_CERT_DAYS, true).unwrap();
        assert_ne!(first.fingerprint, second.fingerprint);
    }
}
