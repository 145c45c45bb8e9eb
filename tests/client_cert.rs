//! Client certificates on the chat port: offered (never required) to line clients over TLS
//! 1.3, never to TLS 1.2 clients or browsers; any certificate is accepted if the client
//! proves it holds its key.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::cert::ClientPair;
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

#[tokio::test]
async fn an_enrolled_certificate_logs_its_owner_in_without_a_password() {
    let server = spawn_server(Opts::default()).await;
    let mut c = ClientPair::new()
        .enroll_and_log_in_by_it(&server, "alice")
        .await;
    let welcome = c.next_line().await;
    assert!(welcome.starts_with("*** Welcome, alice! "), "{welcome}");
}

#[tokio::test]
async fn another_username_with_the_certificate_gets_the_password_flow() {
    let server = spawn_server(Opts::default()).await;
    let pair = ClientPair::new();
    let _alice = pair.enroll(&server, "alice", "laptop").await;
    let mut c = pair.connect(&server).await;
    c.expect_greeting().await;
    c.send("bob").await;
    c.expect_line("Password:").await;
    c.send("wrong password").await;
    c.expect_line("! Login failed").await;
}

#[tokio::test]
async fn a_tls12_connection_with_an_enrolled_certificate_logs_in_by_password() {
    let server = spawn_server(Opts::default()).await;
    let pair = ClientPair::new();
    let _alice = pair.enroll(&server, "alice", "laptop").await;
    let mut c = common::TestClient::connect(server.addr, &pair.connector(&server, true)).await;
    assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    c.expect_greeting().await;
    c.send("alice").await;
    c.expect_line("Password:").await;
}

#[tokio::test]
async fn enrolling_without_a_certificate_says_how() {
    let server = spawn_server(Opts::default()).await;
    let mut c = server.login("alice").await;
    c.send("/cert enroll").await;
    c.expect_line("! Connect with a client certificate to enroll it")
        .await;
}

#[tokio::test]
async fn a_certificate_of_another_account_cannot_be_enrolled() {
    let server = spawn_server(Opts::default()).await;
    let pair = ClientPair::new();
    let _alice = pair.enroll(&server, "alice", "laptop").await;
    let mut bob = pair.login_by_password(&server, "bob").await;
    bob.send("/cert enroll").await;
    bob.expect_line("! That certificate belongs to another account")
        .await;
}

#[tokio::test]
async fn the_default_label_is_todays_date() {
    let server = spawn_server(Opts::default()).await;
    let pair = ClientPair::new();
    let mut c = pair.login_by_password(&server, "alice").await;
    c.send("/cert enroll").await;
    let line = c.next_line().await;
    let label = line
        .strip_prefix(&format!(
            "*** Certificate {} enrolled as ",
            pair.fingerprint()
        ))
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(label, tlschat::client_cert::default_label());
}

#[tokio::test]
async fn cert_list_shows_label_fingerprint_and_date_and_revoke_removes_one() {
    let server = spawn_server(Opts::default()).await;
    let pair = ClientPair::new();
    let mut c = pair.enroll(&server, "alice", "laptop").await;
    c.send("/cert list").await;
    c.expect_line("*** 1 certificate:").await;
    c.expect_line(&format!(
        "***   laptop {} added {}",
        pair.fingerprint(),
        tlschat::client_cert::default_label()
    ))
    .await;
    c.send("/cert revoke nothing-like-it").await;
    c.expect_line("! No such certificate").await;
    c.send("/cert revoke laptop").await;
    c.expect_line("*** Certificate laptop revoked").await;
    c.send("/cert list").await;
    c.expect_line("*** No certificates").await;
}

#[tokio::test]
async fn revoke_takes_the_fingerprint_in_any_accepted_form() {
    let server = spawn_server(Opts::default()).await;
    let pair = ClientPair::new();
    let mut c = pair.enroll(&server, "alice", "laptop").await;
    let plain = pair.fingerprint().replace(':', "").to_ascii_lowercase();
    c.send(&format!("/cert revoke SHA256:{plain}")).await;
    c.expect_line("*** Certificate laptop revoked").await;
}

#[tokio::test]
async fn deleting_a_certificate_with_the_cli_closes_the_sessions_it_logged_in() {
    let server = spawn_server(Opts::default()).await;
    let pair = ClientPair::new();
    let mut c = pair.enroll_and_log_in_by_it(&server, "alice").await;
    c.next_line().await;
    let db = server.dir.path().join("users.db");
    let out = common::bin::tlschat(server.dir.path())
        .args(["user", "cert", "del", "alice", &pair.fingerprint(), "--db"])
        .arg(&db)
        .output()
        .unwrap();
    common::bin::succeeded(&out);
    let lines = c.expect_closed().await;
    assert_eq!(
        lines.last().map(String::as_str),
        Some("! Your account was changed by an administrator")
    );
}

#[tokio::test]
async fn a_certificate_added_with_the_cli_logs_in_from_openssl_s_client() {
    let server = spawn_server(Opts::default()).await;
    let pair = ClientPair::new();
    let dir = server.dir.path();
    std::fs::write(dir.join("me.crt"), &pair.cert_pem).unwrap();
    std::fs::write(dir.join("me.key"), &pair.key_pem).unwrap();
    let printed =
        common::bin::add_certificate(dir, "alice", &dir.join("me.crt"), &["--label", "openssl"]);
    assert_eq!(
        printed.trim(),
        format!("added certificate openssl {} to alice", pair.fingerprint())
    );
    std::fs::write(dir.join("ca.pem"), &server.cert_pem).unwrap();
    let (cert, key) = (dir.join("me.crt"), dir.join("me.key"));
    let mut s = common::sclient::SClient::start(
        server.addr,
        &dir.join("ca.pem"),
        &[
            "-cert",
            cert.to_str().unwrap(),
            "-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    s.wait_for("Username:").await;
    s.send("alice").await;
    s.wait_for("*** Authenticated by client certificate").await;
    s.wait_for_start("*** Welcome, alice! ").await;
}

#[test]
fn the_cli_lists_and_deletes_certificates() {
    let dir = tempfile::tempdir().unwrap();
    common::bin::add_users(dir.path(), &["alice"], common::PASSWORD);
    let pair = ClientPair::new();
    std::fs::write(dir.path().join("me.crt"), &pair.cert_pem).unwrap();
    let run = |args: &[&str]| {
        let out = common::bin::tlschat(dir.path())
            .args(["user", "cert"])
            .args(args)
            .args(["--db", "users.db"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        run(&["add", "alice", "me.crt", "--label", "desk"]).0,
        Some(0)
    );
    let (code, listed, _) = run(&["list", "alice"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        listed,
        format!(
            "desk\t{}\t{}\n",
            pair.fingerprint(),
            tlschat::client_cert::default_label()
        )
    );
    let plain = pair.fingerprint().replace(':', "").to_ascii_lowercase();
    let (code, deleted, _) = run(&["del", "alice", &plain]);
    assert_eq!(code, Some(0));
    assert_eq!(deleted.trim(), "deleted certificate desk of alice");
    let (code, _, err) = run(&["del", "alice", "desk"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no such certificate for alice"), "{err}");
    assert_eq!(run(&["list", "alice"]).1, "");
}

/// `tlschat user passwd NAME` with a new password on stdin and `extra` flags; its stdout.
fn passwd(dir: &std::path::Path, name: &str, extra: &[&str]) -> String {
    let mut cmd = common::bin::tlschat(dir);
    cmd.args([
        "user",
        "passwd",
        name,
        "--password-stdin",
        "--db",
        "users.db",
    ])
    .args(extra);
    common::bin::succeeded(&common::bin::run_with_stdin(cmd, "a brand new password\n"))
}

#[tokio::test]
async fn a_password_reset_removes_the_certificates_and_closes_their_sessions() {
    let server = spawn_server(Opts::default()).await;
    let pair = ClientPair::new();
    let mut by_cert = pair.enroll_and_log_in_by_it(&server, "alice").await;
    by_cert.next_line().await;
    let printed = passwd(server.dir.path(), "ALICE", &[]);
    assert_eq!(
        printed,
        "changed password of ALICE\nremoved 1 client certificate\n"
    );
    let lines = by_cert.expect_closed().await;
    assert_eq!(
        lines.last().map(String::as_str),
        Some("! Your account was changed by an administrator")
    );
    // The certificate no longer logs in: the password is asked for.
    let mut again = pair.connect(&server).await;
    again.expect_greeting().await;
    again.send("alice").await;
    again.expect_line("Password:").await;
}

#[test]
fn keep_certificates_keeps_them_through_a_password_reset() {
    let dir = tempfile::tempdir().unwrap();
    common::bin::add_users(dir.path(), &["alice"], common::PASSWORD);
    for (i, pair) in [ClientPair::new(), ClientPair::new()].iter().enumerate() {
        let file = dir.path().join(format!("c{i}.crt"));
        std::fs::write(&file, &pair.cert_pem).unwrap();
        let label = format!("c{i}");
        common::bin::add_certificate(dir.path(), "alice", &file, &["--label", &label]);
    }
    let printed = passwd(dir.path(), "alice", &["--keep-certificates"]);
    assert_eq!(printed, "changed password of alice\n");
    let listed = common::bin::succeeded(
        &common::bin::tlschat(dir.path())
            .args(["user", "cert", "list", "alice", "--db", "users.db"])
            .output()
            .unwrap(),
    );
    assert_eq!(listed.lines().count(), 2, "{listed}");
    let printed = passwd(dir.path(), "alice", &[]);
    assert_eq!(
        printed,
        "changed password of alice\nremoved 2 client certificates\n"
    );
}

#[tokio::test]
async fn a_password_login_says_how_many_certificates_can_log_in() {
    let server = spawn_server(Opts::default()).await;
    for (i, pair) in [ClientPair::new(), ClientPair::new()].iter().enumerate() {
        let file = server.dir.path().join(format!("c{i}.crt"));
        std::fs::write(&file, &pair.cert_pem).unwrap();
        let label = format!("c{i}");
        common::bin::add_certificate(server.dir.path(), "alice", &file, &["--label", &label]);
    }
    let mut alice = server.login("alice").await;
    alice
        .expect_line("*** 2 client certificates can log in as alice")
        .await;
    // None enrolled: no such line (the next one is the answer to /who).
    let mut bob = server.login("bob").await;
    bob.send("/who").await;
    bob.expect_line("*** 2 online: alice, bob").await;
}

#[tokio::test]
async fn a_takeover_during_a_database_wait_closes_the_old_session_within_2_s() {
    let server = spawn_server(Opts::default()).await;
    let mut old = server.login("alice").await;
    let mut bob = server.login("bob").await;
    old.expect_line("*** bob joined").await;
    let lock = common::db::lock_writes(&server.dir.path().join("users.db")).await;
    // One write: once bob has "ready", the old session has the revoke line in hand, and the
    // revoke's DELETE waits on the locked database (for up to the 10 s busy timeout).
    old.send("ready\n/cert revoke laptop").await;
    bob.expect_line("<alice> ready").await;
    let started = std::time::Instant::now();
    let _new = server.login("alice").await;
    let lines = old.expect_closed().await;
    let waited = started.elapsed();
    common::db::release(lock).await;
    assert_eq!(
        lines,
        vec!["! You signed in elsewhere; closing this session"],
        "the revoke was still waiting"
    );
    assert!(waited < std::time::Duration::from_secs(2), "{waited:?}");
}
