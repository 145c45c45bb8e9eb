//! `tlschat connect` (the real binary) in plain mode, with piped standard input, against a
//! real server: how it decides to trust a server, login, chat, and reconnecting with the
//! catch-up after a restart.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use common::connect::{Connect, bobs_numbers};
use common::proxy::Proxy;
use common::{Opts, PASSWORD, STEP, TestServer, spawn_server};
use tokio::io::AsyncWriteExt as _;
use tokio::process::Child;

/// The server's certificate as a CA file in `dir`.
fn ca_file(server: &TestServer) -> PathBuf {
    let path = server.dir.path().join("ca.pem");
    std::fs::write(&path, &server.cert_pem).unwrap();
    path
}

fn fingerprint(server: &TestServer) -> String {
    tlschat::tls::fingerprint(&server.cert_der)
}

const LOGIN: [&str; 3] = ["--user", "alice", "--password-stdin"];

/// Runs `connect` with the login options and `extra`; it must exit 1. Returns its stderr.
async fn refused(dir: &Path, addr: std::net::SocketAddr, extra: &[&str]) -> String {
    let mut c = Connect::start(dir, addr, &[&LOGIN[..], extra].concat());
    c.send(PASSWORD).await;
    let (code, err) = c.finish().await;
    assert_eq!(code, Some(1), "{err}");
    err
}

/// Runs `connect` with the login options and `extra` as the only user online; it must log in
/// and exit 0. Returns its stderr.
async fn admitted(dir: &Path, addr: std::net::SocketAddr, extra: &[&str]) -> String {
    let mut c = Connect::start(dir, addr, &[&LOGIN[..], extra].concat());
    c.send(PASSWORD).await;
    c.wait_for("*** Welcome, alice! 1 online: alice").await;
    let (code, err) = c.finish().await;
    assert_eq!(code, Some(0), "{err}");
    err
}

#[tokio::test]
async fn piped_input_logs_in_and_chats_and_eof_leaves() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = server.login("bob").await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&server);
    let mut c = Connect::start(
        dir.path(),
        server.addr,
        &[&LOGIN[..], &["--ca", ca.to_str().unwrap()]].concat(),
    );
    c.send(PASSWORD).await;
    c.wait_for("*** Welcome, alice! 2 online: alice, bob").await;
    c.send("hello from connect").await;
    bob.wait_for("<alice> hello from connect").await;
    bob.send("hi alice").await;
    c.wait_for("<bob> hi alice").await;
    let (code, _) = c.finish().await;
    assert_eq!(code, Some(0));
    bob.wait_for("*** alice left").await;
}

#[tokio::test]
async fn an_unknown_server_without_a_terminal_is_refused_with_its_fingerprint() {
    let server = spawn_server(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = Connect::start(dir.path(), server.addr, &LOGIN);
    c.send(PASSWORD).await;
    let (code, err) = c.finish().await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&fingerprint(&server)), "{err}");
    assert!(err.contains("--fingerprint"), "{err}");
    assert!(!dir.path().join("known_hosts").exists());
}

#[tokio::test]
async fn a_known_hosts_entry_is_trusted_silently() {
    let server = spawn_server(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("known_hosts"),
        format!(
            "localhost:{} {}\n",
            server.addr.port(),
            fingerprint(&server)
        ),
    )
    .unwrap();
    let err = admitted(dir.path(), server.addr, &[]).await;
    assert_eq!(err, "");
}

/// A known_hosts entry for `server` with a fingerprint it does not have; returns that one.
fn known_under_another_certificate(dir: &Path, server: &TestServer) -> String {
    let old = "AB:".repeat(31) + "AB";
    let entry = format!("localhost:{} {old}\n", server.addr.port());
    std::fs::write(dir.join("known_hosts"), entry).unwrap();
    old
}

#[tokio::test]
async fn a_changed_certificate_is_refused_loudly_with_both_fingerprints() {
    let server = spawn_server(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let old = known_under_another_certificate(dir.path(), &server);
    let mut c = Connect::start(dir.path(), server.addr, &LOGIN);
    c.send(PASSWORD).await;
    let (code, err) = c.finish().await;
    assert_eq!(code, Some(1));
    assert!(err.contains("HAS CHANGED"), "{err}");
    assert!(
        err.contains(&old) && err.contains(&fingerprint(&server)),
        "{err}"
    );
    assert!(err.contains("known_hosts"), "{err}");
}

#[tokio::test]
async fn a_known_fingerprint_is_checked_even_when_the_chain_verifies() {
    let server = spawn_server(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    known_under_another_certificate(dir.path(), &server);
    let ca = ca_file(&server);
    let err = refused(dir.path(), server.addr, &["--ca", ca.to_str().unwrap()]).await;
    assert!(err.contains("HAS CHANGED"), "{err}");
}

#[tokio::test]
async fn a_malformed_known_hosts_line_is_reported_and_skipped() {
    let server = spawn_server(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let port = server.addr.port();
    let known = dir.path().join("known_hosts");
    std::fs::write(
        &known,
        format!(
            "localhost:{port} AB:CD\nlocalhost:{port} {}\n",
            fingerprint(&server)
        ),
    )
    .unwrap();
    let err = admitted(dir.path(), server.addr, &[]).await;
    assert_eq!(
        err,
        format!(
            "warning: {}:1: not `HOST:PORT FINGERPRINT`; line skipped\n",
            known.display()
        )
    );
}

#[tokio::test]
async fn a_pinned_fingerprint_in_plain_hex_is_trusted() {
    let server = spawn_server(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let pin = fingerprint(&server).replace(':', "").to_ascii_lowercase();
    admitted(dir.path(), server.addr, &["--fingerprint", &pin]).await;
}

#[tokio::test]
async fn a_pin_that_does_not_match_exits_1() {
    let server = spawn_server(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let pin = "SHA256:".to_owned() + &"00".repeat(32);
    let err = refused(dir.path(), server.addr, &["--fingerprint", &pin]).await;
    assert!(err.contains("--fingerprint pins"), "{err}");
}

#[tokio::test]
async fn with_ca_a_chain_that_does_not_verify_is_refused_not_asked() {
    let server = spawn_server(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (other, _) = common::localhost_cert();
    let ca = dir.path().join("other-ca.pem");
    std::fs::write(&ca, other).unwrap();
    let err = refused(dir.path(), server.addr, &["--ca", ca.to_str().unwrap()]).await;
    assert!(err.contains("does not verify against --ca"), "{err}");
}

#[tokio::test]
async fn insecure_says_so_on_start() {
    let server = spawn_server(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = Connect::start(
        dir.path(),
        server.addr,
        &[&LOGIN[..], &["--insecure"]].concat(),
    );
    c.send(PASSWORD).await;
    c.wait_for("*** Welcome, alice! 1 online: alice").await;
    let (_, err) = c.finish().await;
    assert!(err.contains("WARNING: --insecure"), "{err}");
}

#[tokio::test]
async fn a_wrong_password_exits_1_without_retrying() {
    let server = spawn_server(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&server);
    let mut c = Connect::start(
        dir.path(),
        server.addr,
        &[&LOGIN[..], &["--ca", ca.to_str().unwrap()]].concat(),
    );
    c.send("not the password").await;
    let (code, err) = c.finish().await;
    assert_eq!(code, Some(1));
    assert!(err.contains("login failed"), "{err}");
}

/// A server, a proxy in front of it, and alice connected through the proxy with the server's
/// fingerprint pinned, past her welcome (the directory holds her configuration).
async fn alice_through_a_proxy() -> (TestServer, Proxy, tempfile::TempDir, Connect) {
    let server = spawn_server(Opts::default()).await;
    let proxy = Proxy::start(server.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let pin = fingerprint(&server);
    let mut c = Connect::start(
        dir.path(),
        proxy.addr,
        &[&LOGIN[..], &["--fingerprint", &pin]].concat(),
    );
    c.send(PASSWORD).await;
    c.wait_for("*** Welcome, alice! 1 online: alice").await;
    (server, proxy, dir, c)
}

#[tokio::test]
async fn after_the_server_restarts_it_logs_in_again_and_shows_the_catch_up() {
    let (server, proxy, _dir, mut c) = alice_through_a_proxy().await;
    // Until bob has spoken, the client's attempts to come back find nobody.
    proxy.block();
    let server = server.restart(Opts::default()).await;
    c.wait_for("*** Server shutting down").await;
    let mut bob = server.login("bob").await;
    bob.send("while you were away").await;
    bob.send("/who").await;
    bob.wait_for("*** 1 online: bob").await;
    proxy.restore(server.addr);
    c.wait_for("*** Welcome, alice! 2 online: alice, bob").await;
    c.wait_for("*** You missed 1 message in #lobby:").await;
    let line = tokio::time::timeout(STEP, c.stdout.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(line.ends_with("] <bob> while you were away"), "{line}");
}

#[tokio::test]
async fn after_a_reset_while_300_lines_flow_each_line_is_shown_once_in_order() {
    let (server, proxy, _dir, mut c) = alice_through_a_proxy().await;
    let mut bob = server.login("bob").await;
    c.wait_for("*** bob joined").await;
    for i in 1..=150 {
        bob.send(&format!("n{i}")).await;
    }
    let mut shown = Vec::new();
    // Reset once the client has shown line 50: up to a hundred lines are in flight then.
    c.read_until_ending("<bob> n50", &mut shown, STEP).await;
    proxy.reset_all();
    for i in 151..=300 {
        bob.send(&format!("n{i}")).await;
    }
    c.read_until_ending("<bob> n300", &mut shown, STEP * 2)
        .await;
    assert!(
        shown.iter().any(|l| l.starts_with("*** You missed ")),
        "no catch-up after the reset: {shown:?}"
    );
    assert_eq!(bobs_numbers(&shown), (1..=300).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_enrolled_client_certificate_logs_in_without_a_password() {
    let server = spawn_server(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    use tlschat::client::identity;
    let host = format!("localhost:{}", server.addr.port());
    let config = dir.path().join("tlschat");
    let answers = identity::Answers::next_to(&dir.path().join("known_hosts"));
    let identity = identity::for_server(&config, &host, &answers).unwrap();
    let (cert, _) = identity::paths(&config.join("keys"), &identity::file_stem(&host));
    let printed = common::bin::add_certificate(server.dir.path(), "alice", &cert, &[]);
    assert!(printed.contains(&identity.fingerprint));
    let pin = fingerprint(&server);
    let mut c = Connect::start(
        dir.path(),
        server.addr,
        &["--user", "alice", "--fingerprint", &pin],
    );
    c.wait_for("*** Authenticated by client certificate").await;
    c.wait_for("*** Welcome, alice! 1 online: alice").await;
    assert_eq!(c.finish().await.0, Some(0));
}

#[tokio::test]
async fn terminal_controls_from_the_network_are_removed() {
    // A fake server that sends escape sequences, which tlschat serve itself never relays.
    let (cert_pem, key_pem) = common::localhost_cert();
    let cert = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let configs = tlschat::tls::server_configs(vec![cert.clone()], key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&configs.line_tls12));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = tls
                    .write_all(
                        b"*** Welcome, alice! 1 online: alice\n\x1b[2J\x1b]0;owned\x07visible\n",
                    )
                    .await;
                let _ = tls.flush().await;
                std::future::pending::<()>().await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let pin = tlschat::tls::fingerprint(&cert);
    let mut c = Connect::start(
        dir.path(),
        addr,
        &[&LOGIN[..], &["--fingerprint", &pin]].concat(),
    );
    c.send(PASSWORD).await;
    c.wait_for("*** Welcome, alice! 1 online: alice").await;
    c.wait_for("[2J]0;ownedvisible").await;
}

use rustls::pki_types::pem::PemObject as _;

/// `tlschat connect` in a pseudo-terminal, as a person runs it.
fn on_terminal(
    dir: &Path,
    addr: std::net::SocketAddr,
    args: &[&str],
) -> rexpect::session::PtySession {
    let mut cmd = common::bin::tlschat(dir);
    cmd.env("XDG_CONFIG_HOME", dir)
        .env("TERM", "xterm-256color")
        .arg("connect")
        .arg(format!("localhost:{}", addr.port()))
        .args(args);
    rexpect::session::spawn_command(cmd, Some(10_000)).unwrap()
}

/// Waits for `text` on the terminal; returns what came before it.
fn expect(p: &mut rexpect::session::PtySession, text: &str) -> String {
    tokio::task::block_in_place(|| p.exp_string(text))
        .unwrap_or_else(|e| panic!("waiting for {text:?}: {e}"))
}

/// Logs in on the terminal (trusting by `--fingerprint`) and declines the certificate.
/// The client as alice on a terminal, trusting the server by its pinned fingerprint, at the
/// password prompt.
fn pinned_terminal(server: &TestServer, dir: &Path) -> rexpect::session::PtySession {
    let pin = fingerprint(server);
    let mut p = on_terminal(
        dir,
        server.addr,
        &["--user", "alice", "--fingerprint", &pin],
    );
    expect(&mut p, "Password:");
    p
}

fn terminal_login(server: &TestServer, dir: &Path) -> rexpect::session::PtySession {
    let mut p = pinned_terminal(server, dir);
    p.send_line(PASSWORD).unwrap();
    expect(&mut p, "*** Welcome, alice!");
    expect(&mut p, "next time? [Y/n]");
    p.send_line("n").unwrap();
    expect(&mut p, "#lobby> ");
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn trust_on_first_use_asks_once_and_remembers() {
    let server = spawn_server(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = on_terminal(dir.path(), server.addr, &["--user", "alice"]);
    let shown = expect(&mut p, "Trust this server? [y/N]");
    assert!(shown.contains(&fingerprint(&server)), "{shown}");
    p.send_line("y").unwrap();
    expect(&mut p, "Password:");
    p.send_line(PASSWORD).unwrap();
    expect(&mut p, "*** Welcome, alice!");
    let known = std::fs::read_to_string(dir.path().join("tlschat/known_hosts")).unwrap();
    assert_eq!(
        known,
        format!(
            "localhost:{} {}\n",
            server.addr.port(),
            fingerprint(&server)
        )
    );
    drop(p);
    let mut again = on_terminal(dir.path(), server.addr, &["--user", "alice"]);
    let before = expect(&mut again, "Password:");
    assert!(!before.contains("Trust this server"), "{before}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_is_not_trusted_and_sends_nothing() {
    let server = spawn_server(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = on_terminal(dir.path(), server.addr, &["--user", "alice"]);
    expect(&mut p, "Trust this server? [y/N]");
    p.send_line("").unwrap();
    expect(&mut p, "is not trusted; nothing was sent");
    assert!(!dir.path().join("tlschat/known_hosts").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_is_not_echoed() {
    let server = spawn_server(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = pinned_terminal(&server, dir.path());
    p.send_line(PASSWORD).unwrap();
    let shown = expect(&mut p, "*** Welcome, alice!");
    assert!(!shown.contains(PASSWORD), "{shown:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_line_arriving_while_typing_leaves_the_typed_text_intact() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = server.login("bob").await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = terminal_login(&server, dir.path());
    p.send("hel").unwrap();
    p.flush().unwrap();
    expect(&mut p, "hel");
    bob.wait_for("*** alice joined").await;
    bob.send("a line while alice types").await;
    expect(&mut p, "a line while alice types");
    p.send_line("lo").unwrap();
    bob.wait_for("<alice> hello").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_prompt_shows_the_current_room() {
    let server = spawn_server(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = terminal_login(&server, dir.path());
    p.send_line("/join #dev").unwrap();
    expect(&mut p, "*** You joined #dev");
    expect(&mut p, "#dev> ");
}

#[tokio::test(flavor = "multi_thread")]
async fn tab_completes_commands_and_names() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = server.login("bob").await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = terminal_login(&server, dir.path());
    p.send("/hist\t").unwrap();
    p.flush().unwrap();
    expect(&mut p, "/history ");
    p.send_line("").unwrap();
    expect(&mut p, "*** No history in #lobby");
    expect(&mut p, "#lobby> ");
    // The name is completed in place: what bob receives shows it.
    p.send("/msg bo\t").unwrap();
    p.flush().unwrap();
    expect(&mut p, "bo");
    p.send_line("psst").unwrap();
    bob.wait_for("*alice* psst").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn yes_to_the_certificate_question_enrolls_it() {
    let server = spawn_server(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = pinned_terminal(&server, dir.path());
    p.send_line(PASSWORD).unwrap();
    expect(&mut p, "next time? [Y/n]");
    p.send_line("").unwrap();
    expect(&mut p, "enrolled as");
    p.send_line("/quit").unwrap();
    expect(&mut p, "*** Bye");
    drop(p);
    // Next time: no password.
    let pin = fingerprint(&server);
    let mut again = on_terminal(
        dir.path(),
        server.addr,
        &["--user", "alice", "--fingerprint", &pin],
    );
    expect(&mut again, "*** Authenticated by client certificate");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_r_finds_an_earlier_line() {
    let server = spawn_server(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = terminal_login(&server, dir.path());
    p.send_line("/rooms").unwrap();
    expect(&mut p, "*** 1 room: #lobby (1)");
    expect(&mut p, "#lobby> ");
    p.send("\x12roo").unwrap();
    p.flush().unwrap();
    expect(&mut p, "/rooms");
    p.send_line("").unwrap();
    expect(&mut p, "*** 1 room: #lobby (1)");
}

#[test]
fn connect_help_shows_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::bin::tlschat(dir.path())
        .args(["connect", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for part in [
        "Trust this server? [y/N]",
        "#lobby> hello bob",
        "--fingerprint",
        "--ca",
    ] {
        assert!(help.contains(part), "{part} missing from {help}");
    }
}

/// `openssl s_server` on a free port that asks for (but does not require) a client
/// certificate; its output goes to `dir/s_server.out`.
struct SServer {
    _child: tokio::process::Child,
    port: u16,
    out: PathBuf,
}

impl SServer {
    async fn start(dir: &Path) -> SServer {
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.join("s.crt"), pair.cert.pem()).unwrap();
        std::fs::write(dir.join("s.key"), pair.signing_key.serialize_pem()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = dir.join("s_server.out");
        let child = tokio::process::Command::new("openssl")
            .args(["s_server", "-verify", "1", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(dir.join("s.crt"))
            .arg("-key")
            .arg(dir.join("s.key"))
            // Kept open: s_server stops at the end of its standard input.
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("openssl must be installed");
        let server = SServer {
            _child: child,
            port,
            out,
        };
        server.wait_for_output("ACCEPT").await;
        server
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    async fn wait_for_output(&self, text: &str) {
        let deadline = std::time::Instant::now() + STEP;
        while !self.output().contains(text) {
            assert!(
                std::time::Instant::now() < deadline,
                "s_server never printed {text:?}: {}",
                self.output()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    fn fingerprint(&self, dir: &Path) -> String {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let pem = std::fs::read(dir.join("s.crt")).unwrap();
        tlschat::tls::fingerprint(&CertificateDer::from_pem_slice(&pem).unwrap())
    }

    /// `tlschat connect` to it as alice, from `dir`, with `extra` options; the password is
    /// on its standard input, which stays open.
    async fn connect(&self, dir: &Path, extra: &[&str]) -> Child {
        let mut cmd: tokio::process::Command = common::bin::tlschat(dir).into();
        let mut child = cmd
            .env("XDG_CONFIG_HOME", dir)
            .arg("connect")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["--known-hosts", "known_hosts"])
            .args(LOGIN)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
        child
    }
}

#[tokio::test]
async fn no_client_certificate_goes_to_a_server_before_it_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let s = SServer::start(dir.path()).await;
    // Unknown and not signed by an authority: refused after a handshake without certificate.
    let refused = s.connect(dir.path(), &[]).await;
    let status = tokio::time::timeout(STEP, refused.wait_with_output())
        .await
        .expect("connect did not exit")
        .unwrap()
        .status;
    assert_eq!(status.code(), Some(1));
    // Printed after any client certificate the handshake brought.
    s.wait_for_output("CIPHER is ").await;
    let seen = s.output();
    assert!(!seen.contains("Client certificate"), "{seen}");
    // Pinned, so trusted from the start: the certificate (this server's own) is presented.
    let pin = s.fingerprint(dir.path());
    let _trusted = s.connect(dir.path(), &["--fingerprint", &pin]).await;
    s.wait_for_output("Client certificate").await;
    let key = dir
        .path()
        .join(format!("tlschat/keys/127.0.0.1_{}.key", s.port));
    assert!(key.exists(), "{}", key.display());
}
