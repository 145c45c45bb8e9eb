//! Certificate hot reload on the real binary: SIGHUP and file changes; a bad pair keeps the old.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::bin::{Serve, add_users, serve, tlschat};
use common::{PASSWORD, STEP, TestClient, connector_for_all};
use rustls::pki_types::{CertificateDer, pem::PemObject};

fn generate(dir: &Path, force: bool) -> (CertificateDer<'static>, String) {
    let mut cmd = tlschat(dir);
    cmd.args(["cert", "generate", "--out", "c"]);
    if force {
        cmd.arg("--force");
    }
    assert!(cmd.output().unwrap().status.success());
    let pem = std::fs::read(dir.join("c/server.crt")).unwrap();
    let der = CertificateDer::from_pem_slice(&pem).unwrap().into_owned();
    let fingerprint = tlschat::tls::fingerprint(&der);
    (der, fingerprint)
}

fn start(dir: &Path, extra: &[&str]) -> Serve {
    add_users(dir, &["alice", "bob"], PASSWORD);
    let mut args = vec!["--cert", "c/server.crt", "--key", "c/server.key"];
    args.extend_from_slice(extra);
    serve(dir, &args)
}

fn hangup(s: &Serve) {
    let ok = Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Connects until the server presents `fingerprint` (reloads are asynchronous), within STEP.
async fn wait_for_certificate(s: &Serve, certs: &[CertificateDer<'static>], fingerprint: &str) {
    let connector = connector_for_all(certs);
    let deadline = Instant::now() + STEP;
    loop {
        let c = TestClient::connect(s.addr, &connector).await;
        if c.peer_fingerprint() == fingerprint {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server still presents the old certificate"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn sighup_reloads_for_new_clients_while_old_sessions_keep_chatting() {
    let dir = tempfile::tempdir().unwrap();
    let (old, old_fp) = generate(dir.path(), false);
    let s = start(dir.path(), &[]);
    let mut alice = TestClient::connect(s.addr, &common::connector_for(&old)).await;
    alice.login("alice", PASSWORD).await;
    assert_eq!(alice.peer_fingerprint(), old_fp);
    let (new, new_fp) = generate(dir.path(), true);
    hangup(&s);
    wait_for_certificate(&s, &[old.clone(), new.clone()], &new_fp).await;
    let mut bob = TestClient::connect(s.addr, &connector_for_all(&[new])).await;
    bob.login("bob", PASSWORD).await;
    alice.expect_line("*** bob joined").await;
    alice.send("still here on the old handshake").await;
    bob.expect_line("<alice> still here on the old handshake")
        .await;
}

#[tokio::test]
async fn changed_files_are_picked_up_without_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let (old, _) = generate(dir.path(), false);
    let s = start(dir.path(), &["--cert-check-interval", "0.2"]);
    let (new, new_fp) = generate(dir.path(), true);
    wait_for_certificate(&s, &[old, new], &new_fp).await;
}

#[tokio::test]
async fn a_bad_new_pair_is_rejected_and_the_old_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let (old, old_fp) = generate(dir.path(), false);
    let s = start(dir.path(), &[]);
    std::fs::write(
        dir.path().join("c/server.key"),
        "-----BEGIN PRIVATE KEY-----\nbad\n",
    )
    .unwrap();
    hangup(&s);
    // The failure is logged; wait for that line, then check what new clients get.
    let deadline = Instant::now() + STEP;
    while !std::fs::read_to_string(dir.path().join("serve.log"))
        .unwrap()
        .contains("certificate reload failed")
    {
        assert!(Instant::now() < deadline, "no reload error was logged");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut c = TestClient::connect(s.addr, &connector_for_all(&[old])).await;
    assert_eq!(c.peer_fingerprint(), old_fp);
    c.login("alice", PASSWORD).await;
}
