//! Certificates: PEM files to a rustls `ServerConfig`, self-signed generation, fingerprints.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
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
    /// The rustls configuration for new handshakes.
    pub config: Arc<ServerConfig>,
    /// SHA-256 fingerprint of the leaf certificate.
    pub fingerprint: String,
}

/// Loads a PEM certificate chain and key and checks that they belong together.
pub fn load(cert: &Path, key: &Path) -> Result<LoadedCert, TlsError> {
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
    let config = server_config(chain, private).map_err(|e| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        message: e.to_string(),
    })?;
    Ok(LoadedCert {
        config,
        fingerprint,
    })
}

/// A TLS 1.2/1.3 server configuration with the ring provider and no client certificates.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // Chat clients hold one long connection; resumption tickets would only cost memory.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
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
}

/// Generates an ECDSA P-256 self-signed certificate for `names` (DNS names or IP addresses).
pub fn self_signed(names: &[String]) -> Result<SelfSigned, TlsError> {
    let generated = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok(SelfSigned {
        cert_pem: generated.cert.pem(),
        key_pem: generated.signing_key.serialize_pem(),
        fingerprint: fingerprint(generated.cert.der()),
    })
}

/// Generates a pair and writes it to `cert`/`key` (key mode 0600); refuses to overwrite unless `force`.
pub fn write_self_signed(
    cert: &Path,
    key: &Path,
    names: &[String],
    force: bool,
) -> Result<SelfSigned, TlsError> {
    if !force {
        for path in [cert, key] {
            if path.exists() {
                return Err(TlsError::Exists(path.to_owned()));
            }
        }
    }
    let pair = self_signed(names)?;
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
        let pair = write_self_signed(&c, &k, &names(), false).unwrap();
        let loaded = load(&c, &k).unwrap();
        assert_eq!(loaded.fingerprint, pair.fingerprint);
        assert_eq!(loaded.fingerprint.len(), 95);
    }

    #[test]
    fn mismatched_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = (dir.path().join("c1"), dir.path().join("k1"));
        let (c2, k2) = (dir.path().join("c2"), dir.path().join("k2"));
        write_self_signed(&c1, &k1, &names(), false).unwrap();
        write_self_signed(&c2, &k2, &names(), false).unwrap();
        assert!(matches!(load(&c1, &k2), Err(TlsError::Mismatch { .. })));
    }

    #[test]
    fn existing_files_are_not_overwritten_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c"), dir.path().join("k"));
        let first = write_self_signed(&c, &k, &names(), false).unwrap();
        assert!(matches!(
            write_self_signed(&c, &k, &names(), false),
            Err(TlsError::Exists(_))
        ));
        let second = write_self_signed(&c, &k, &names(), true).unwrap();
        assert_ne!(first.fingerprint, second.fingerprint);
    }
}
