//! The client's own certificate: an ECDSA P-256 key pair and self-signed certificate made on
//! first use in the configuration directory, presented on every connection so that a server
//! that has it enrolled logs the user in without a password.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// File names inside the configuration directory.
const CERT_FILE: &str = "client.crt";
const KEY_FILE: &str = "client.key";

/// The client's certificate and key.
pub struct Identity {
    /// The certificate (one, self-signed).
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the certificate, as `serve` prints fingerprints.
    pub fingerprint: String,
}

/// Reads the pair in `dir`, making it first if neither file is there (directory 0700, key
/// 0600). With only one of the two it stops with an error: a key is never written over, since
/// a server may have its certificate enrolled.
pub fn load_or_create(dir: &Path) -> anyhow::Result<Identity> {
    let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    match (cert_path.exists(), key_path.exists()) {
        (true, true) | (false, false) => {}
        (has_cert, _) => {
            let (present, missing) = if has_cert {
                (&cert_path, &key_path)
            } else {
                (&key_path, &cert_path)
            };
            anyhow::bail!(
                "{} exists but {} is missing: restore it, or move {} away to make a new \
                 certificate (servers that enrolled the old one will ask for the password)",
                present.display(),
                missing.display(),
                present.display()
            );
        }
    }
    if !cert_path.exists() {
        let pair = rcgen::generate_simple_self_signed(vec!["tlschat-client".to_owned()])
            .context("making a client certificate")?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        write_new(
            &key_path,
            0o600,
            pair.signing_key.serialize_pem().as_bytes(),
        )?;
        write_new(&cert_path, 0o644, pair.cert.pem().as_bytes())?;
    }
    let cert = CertificateDer::from_pem_file(&cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    Ok(Identity {
        fingerprint: crate::tls::fingerprint(&cert),
        chain: vec![cert],
        key,
    })
}

fn write_new(path: &Path, mode: u32, data: &[u8]) -> anyhow::Result<()> {
    // create_new: another process making the pair at the same moment fails here instead of
    // both writing over each other's key.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(data)
        .with_context(|| format!("writing {}", path.display()))
}

/// Answers to "Log in with this certificate next time?", one `HOST:PORT yes|no` a line, so
/// the question comes once per server.
pub struct Answers {
    path: std::path::PathBuf,
}

impl Answers {
    /// The file next to `known_hosts`.
    pub fn next_to(known_hosts: &Path) -> Self {
        let dir = known_hosts.parent().unwrap_or(Path::new("."));
        Answers {
            path: dir.join("certificate_answers"),
        }
    }

    /// The stored answer for `host`, if any.
    pub fn get(&self, host: &str) -> Option<bool> {
        super::trust::lookup(&self.path, host).map(|a| a == "yes")
    }

    /// Stores `answer` for `host`.
    pub fn set(&self, host: &str, answer: bool) -> std::io::Result<()> {
        super::trust::append(&self.path, host, if answer { "yes" } else { "no" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_pair_is_made_once_with_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("tlschat");
        let first = load_or_create(&sub).unwrap();
        let again = load_or_create(&sub).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        let mode = |p: &str| std::fs::metadata(sub.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(KEY_FILE), 0o600);
        assert_eq!(mode(""), 0o700);
    }

    #[test]
    fn a_key_without_its_certificate_is_an_error_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("tlschat");
        load_or_create(&sub).unwrap();
        std::fs::remove_file(sub.join(CERT_FILE)).unwrap();
        let key = std::fs::read(sub.join(KEY_FILE)).unwrap();
        let err = load_or_create(&sub).err().unwrap().to_string();
        assert!(err.contains("client.crt is missing"), "{err}");
        assert_eq!(std::fs::read(sub.join(KEY_FILE)).unwrap(), key);
        assert!(!sub.join(CERT_FILE).exists());
    }

    #[test]
    fn a_certificate_without_its_key_is_an_error_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("tlschat");
        load_or_create(&sub).unwrap();
        std::fs::remove_file(sub.join(KEY_FILE)).unwrap();
        let cert = std::fs::read(sub.join(CERT_FILE)).unwrap();
        let err = load_or_create(&sub).err().unwrap().to_string();
        assert!(err.contains("client.key is missing"), "{err}");
        assert_eq!(std::fs::read(sub.join(CERT_FILE)).unwrap(), cert);
    }

    #[test]
    fn answers_are_remembered_per_server() {
        let dir = tempfile::tempdir().unwrap();
        let answers = Answers::next_to(&dir.path().join("known_hosts"));
        assert_eq!(answers.get("a:1"), None);
        answers.set("a:1", false).unwrap();
        answers.set("b:2", true).unwrap();
        assert_eq!(answers.get("A:1"), Some(false));
        assert_eq!(answers.get("b:2"), Some(true));
    }
}
