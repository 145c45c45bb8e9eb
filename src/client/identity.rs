//! The client's own certificates: one ECDSA P-256 key pair and self-signed certificate per
//! server (`keys/HOST_PORT.key` and `.crt` in the configuration directory), made on first
//! use and presented only to a server already trusted, so that a server that has it enrolled
//! logs the user in without a password and no two servers can link the user by it.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The single pair of earlier versions (`client.crt`, `client.key`), kept for the servers
/// where it was enrolled.
const LEGACY_STEM: &str = "client";
/// Where the per-server pairs live, inside the configuration directory.
const KEYS_DIR: &str = "keys";

/// The client's certificate and key.
pub struct Identity {
    /// The certificate (one, self-signed).
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the certificate, as `serve` prints fingerprints.
    pub fingerprint: String,
}

/// The pair for `host` (`HOST:PORT`) in `config_dir/keys`, made on first use. A server
/// where the single pair of earlier versions was enrolled (answered yes in `answers`) keeps
/// that pair, copied, so its certificate login goes on working.
pub fn for_server(config_dir: &Path, host: &str, answers: &Answers) -> anyhow::Result<Identity> {
    let dir = config_dir.join(KEYS_DIR);
    let stem = file_stem(host);
    let (cert, key) = paths(&dir, &stem);
    let (legacy_cert, legacy_key) = paths(config_dir, LEGACY_STEM);
    if !cert.exists()
        && !key.exists()
        && legacy_cert.exists()
        && legacy_key.exists()
        && answers.get(host) == Some(true)
    {
        make_dir(&dir)?;
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        write_new(&key, 0o600, &read(&legacy_key)?)?;
        write_new(&cert, 0o644, &read(&legacy_cert)?)?;
    }
    load_or_create(&dir, &stem)
}

/// `HOST:PORT` as a file name: letters, digits, `.` and `-` kept, anything else `_`
/// (`chat.example.org_7443`, `___1__7443` for `[::1]:7443`).
pub fn file_stem(host: &str) -> String {
    host.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The certificate and key files of `stem` in `dir`.
pub fn paths(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    )
}

fn make_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Reads the pair `stem` in `dir`, making it first if neither file is there (directory 0700,
/// key 0600). With only one of the two it stops with an error: a key is never written over,
/// since a server may have its certificate enrolled.
fn load_or_create(dir: &Path, stem: &str) -> anyhow::Result<Identity> {
    let (cert_path, key_path) = paths(dir, stem);
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
        make_dir(dir)?;
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
    fn the_pair_is_made_once_per_server_with_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("tlschat");
        let answers = Answers::next_to(&sub.join("known_hosts"));
        let first = for_server(&sub, "chat:7443", &answers).unwrap();
        let again = for_server(&sub, "CHAT:7443", &answers).unwrap();
        let other = for_server(&sub, "[::1]:7443", &answers).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        assert_ne!(first.fingerprint, other.fingerprint);
        let mode = |p: &str| std::fs::metadata(sub.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("keys/chat_7443.key"), 0o600);
        assert_eq!(mode("keys/___1__7443.key"), 0o600);
        assert_eq!(mode("keys"), 0o700);
    }

    #[test]
    fn the_earlier_single_pair_is_kept_where_it_was_enrolled() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("tlschat");
        let legacy = load_or_create(&sub, LEGACY_STEM).unwrap();
        let answers = Answers::next_to(&sub.join("known_hosts"));
        answers.set("old:1", true).unwrap();
        answers.set("declined:1", false).unwrap();
        let enrolled = for_server(&sub, "old:1", &answers).unwrap();
        assert_eq!(enrolled.fingerprint, legacy.fingerprint);
        let declined = for_server(&sub, "declined:1", &answers).unwrap();
        assert_ne!(declined.fingerprint, legacy.fingerprint);
    }

    /// Removes `s.{missing}` from a pair: loading is an error naming it, and `s.{kept}` is
    /// left as it was (nothing is regenerated over it).
    fn a_lone_half_is_an_error_and_is_kept(missing: &str, kept: &str) {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("tlschat");
        load_or_create(&sub, "s").unwrap();
        std::fs::remove_file(sub.join(format!("s.{missing}"))).unwrap();
        let before = std::fs::read(sub.join(format!("s.{kept}"))).unwrap();
        let err = load_or_create(&sub, "s").err().unwrap().to_string();
        assert!(err.contains(&format!("s.{missing} is missing")), "{err}");
        assert_eq!(
            std::fs::read(sub.join(format!("s.{kept}"))).unwrap(),
            before
        );
        assert!(!sub.join(format!("s.{missing}")).exists());
    }

    #[test]
    fn a_key_without_its_certificate_is_an_error_and_is_kept() {
        a_lone_half_is_an_error_and_is_kept("crt", "key");
    }

    #[test]
    fn a_certificate_without_its_key_is_an_error_and_is_kept() {
        a_lone_half_is_an_error_and_is_kept("key", "crt");
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
