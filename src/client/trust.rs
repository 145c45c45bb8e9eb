//! Whether to trust a server: its chain against the system roots or `--ca`, a pinned
//! fingerprint, or the `known_hosts` entry a user accepted on first use, as ssh does.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// What the handshake saw of the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// SHA-256 of the leaf, in the form `serve` prints.
    pub fingerprint: String,
    /// The chain checked against the roots: `Ok`, or why not.
    pub chain: Result<(), String>,
}

/// Lets every handshake finish and records what it saw: the caller decides (and may ask the
/// user) before anything is sent, so an untrusted server never gets a password. The
/// handshake signature is still checked, so the server holds the key of what it showed.
#[derive(Debug)]
pub struct Recorder {
    roots: Arc<rustls::client::WebPkiServerVerifier>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
    seen: Mutex<Option<Seen>>,
}

impl Recorder {
    /// Checks chains against `roots`.
    pub fn new(roots: rustls::RootCertStore) -> Result<Arc<Self>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let roots =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| e.to_string())?;
        Ok(Arc::new(Recorder {
            roots,
            algorithms,
            seen: Mutex::new(None),
        }))
    }

    /// What the last handshake saw.
    pub fn take(&self) -> Option<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = self
            .roots
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let seen = Seen {
            fingerprint: crate::tls::fingerprint(end_entity),
            chain,
        };
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(seen);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// How the user asked for the server to be checked.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `--ca FILE` was given: its chain must verify, no trust-on-first-use.
    pub ca_given: bool,
    /// `--fingerprint FP`: exactly this certificate.
    pub pinned: Option<String>,
    /// `--insecure`: anything.
    pub insecure: bool,
}

/// The decision about a server.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go on.
    Trusted,
    /// Never seen: ask the user (or refuse without a terminal).
    Unknown(String),
    /// Refuse, with the reason to print.
    Refused(String),
}

/// Decides about `seen` for `host` (`HOST:PORT`) with the `known` entry, if any.
pub fn decide(
    policy: &Policy,
    host: &str,
    seen: &Seen,
    known: Option<&str>,
    file: &Path,
) -> Decision {
    if policy.insecure {
        return Decision::Trusted;
    }
    if let Some(pin) = &policy.pinned {
        return if *pin == seen.fingerprint {
            Decision::Trusted
        } else {
            Decision::Refused(format!(
                "the server at {host} presented certificate {} but --fingerprint pins {pin}",
                seen.fingerprint
            ))
        };
    }
    // A known fingerprint is checked first, as ssh does: a chain some authority signed does
    // not outweigh the certificate this user accepted for this server.
    if let Some(fp) = known
        && fp != seen.fingerprint
    {
        return Decision::Refused(format!(
            "WARNING: THE CERTIFICATE OF {host} HAS CHANGED!\n\
             known fingerprint:     {fp}\n\
             presented fingerprint: {}\n\
             Someone may be intercepting the connection, or the server got a new certificate.\n\
             Check the new fingerprint with the server's admin (tlschat serve prints it), then\n\
             remove the line for {host} from {} and connect again (or pass --fingerprint).",
            seen.fingerprint,
            file.display()
        ));
    }
    match (&seen.chain, policy.ca_given, known) {
        (Ok(()), _, _) => Decision::Trusted,
        (Err(why), true, _) => Decision::Refused(format!(
            "the certificate of {host} does not verify against --ca: {why}"
        )),
        (Err(_), false, Some(_)) => Decision::Trusted,
        (Err(_), false, None) => Decision::Unknown(seen.fingerprint.clone()),
    }
}

/// What `known_hosts` says about one server.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// The fingerprint accepted for the server.
    pub fingerprint: Option<String>,
    /// Line numbers (from 1) that are not `HOST:PORT FINGERPRINT`: skipped.
    pub malformed: Vec<usize>,
}

/// `HOST:PORT FINGERPRINT` lines, `#` comments ignored.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
}

impl KnownHosts {
    /// The file at `path` (it may not exist yet).
    pub fn at(path: PathBuf) -> Self {
        KnownHosts { path }
    }

    /// Where the entries live.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fingerprint stored for `host`, if any, from the first well-formed line for it;
    /// every malformed line in the file is listed (and skipped), so a typo never hides a
    /// good entry or turns it into a trust-on-first-use question.
    pub fn find(&self, host: &str) -> Found {
        let mut found = Found::default();
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return found;
        };
        for (number, entry) in entries(&text) {
            let entry = entry
                .and_then(|(h, fp)| crate::client_cert::parse_fingerprint(fp).map(|fp| (h, fp)));
            match entry {
                Some((h, fp)) => {
                    if found.fingerprint.is_none() && h.eq_ignore_ascii_case(host) {
                        found.fingerprint = Some(fp);
                    }
                }
                None => found.malformed.push(number),
            }
        }
        found
    }

    /// Appends `host fingerprint`.
    pub fn add(&self, host: &str, fingerprint: &str) -> std::io::Result<()> {
        append(&self.path, host, fingerprint)
    }
}

/// The value of the first `HOST VALUE` line for `host` (any letter case) in the file at
/// `path`; `#` comments are skipped.
pub(crate) fn lookup(path: &Path, host: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    entries(&text)
        .filter_map(|(_, entry)| entry)
        .find(|(h, _)| h.eq_ignore_ascii_case(host))
        .map(|(_, value)| value.to_owned())
}

/// The `HOST VALUE` lines of `text` with their numbers (from 1), skipping blank lines and `#`
/// comments; `None` for a line without the space between the two.
fn entries(text: &str) -> impl Iterator<Item = (usize, Option<(&str, &str)>)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(number, line)| {
            let entry = line.split_once(' ').map(|(h, v)| (h, v.trim()));
            (number, entry)
        })
}

/// Appends `HOST VALUE` to the file at `path`, creating its directory (0700) and the file
/// (0600).
pub(crate) fn append(path: &Path, host: &str, value: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{host} {value}")
}

/// tlschat's directory under the user's configuration directory (XDG).
pub fn config_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("tlschat"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA";
    const B: &str = "BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB:BB";

    fn seen(fp: &str, chain_ok: bool) -> Seen {
        Seen {
            fingerprint: fp.into(),
            chain: if chain_ok {
                Ok(())
            } else {
                Err("unknown issuer".into())
            },
        }
    }

    fn decide_with(policy: Policy, s: Seen, known: Option<&str>) -> Decision {
        decide(&policy, "h:1", &s, known, Path::new("/k"))
    }

    #[test]
    fn a_verified_chain_is_trusted() {
        assert_eq!(
            decide_with(Policy::default(), seen(A, true), None),
            Decision::Trusted
        );
    }

    #[test]
    fn an_unknown_self_signed_server_is_a_question() {
        assert_eq!(
            decide_with(Policy::default(), seen(A, false), None),
            Decision::Unknown(A.into())
        );
    }

    #[test]
    fn a_known_fingerprint_is_trusted_and_a_changed_one_refused() {
        assert_eq!(
            decide_with(Policy::default(), seen(A, false), Some(A)),
            Decision::Trusted
        );
        let Decision::Refused(why) = decide_with(Policy::default(), seen(B, false), Some(A)) else {
            panic!()
        };
        assert!(
            why.contains(A) && why.contains(B) && why.contains("/k"),
            "{why}"
        );
    }

    #[test]
    fn with_ca_a_failed_chain_is_refused_not_asked() {
        let policy = Policy {
            ca_given: true,
            ..Policy::default()
        };
        assert!(matches!(
            decide_with(policy, seen(A, false), None),
            Decision::Refused(_)
        ));
    }

    #[test]
    fn a_pin_decides_alone() {
        let pin = |fp: &str| Policy {
            pinned: Some(fp.into()),
            ..Policy::default()
        };
        assert_eq!(
            decide_with(pin(A), seen(A, false), Some(B)),
            Decision::Trusted
        );
        assert!(matches!(
            decide_with(pin(B), seen(A, true), None),
            Decision::Refused(_)
        ));
    }

    #[test]
    fn a_known_fingerprint_is_checked_even_when_an_authority_signs_the_chain() {
        assert!(matches!(
            decide_with(Policy::default(), seen(B, true), Some(A)),
            Decision::Refused(why) if why.contains("HAS CHANGED")
        ));
        assert_eq!(
            decide_with(Policy::default(), seen(A, true), Some(A)),
            Decision::Trusted
        );
    }

    #[test]
    fn malformed_known_hosts_lines_are_listed_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownHosts::at(dir.path().join("known_hosts"));
        std::fs::write(
            known.path(),
            format!(
                "# comment\nchat:7443 not-a-fingerprint\n\nchat:7443\nchat:7443 {A}\nother:1 {B}\n"
            ),
        )
        .unwrap();
        assert_eq!(
            known.find("chat:7443"),
            Found {
                fingerprint: Some(A.into()),
                malformed: vec![2, 4],
            }
        );
    }

    #[test]
    fn known_hosts_round_trip_and_match_hosts_case_insensitively() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownHosts::at(dir.path().join("sub/known_hosts"));
        assert_eq!(known.find("Chat:7443").fingerprint, None);
        known.add("chat:7443", A).unwrap();
        assert_eq!(known.find("CHAT:7443").fingerprint.as_deref(), Some(A));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(known.path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
}
