//! End to end with the real `openssl s_client`: two users log in and see each other's lines.

mod common;

use common::sclient::SClient;
use common::{Opts, spawn_server};

#[tokio::test]
async fn two_users_chat_through_openssl_s_client() {
    let server = spawn_server(Opts::default()).await;
    let ca = server.dir.path().join("ca.pem");
    std::fs::write(&ca, &server.cert_pem).unwrap();

    let mut alice = SClient::start(server.addr, &ca, &[]).await;
    alice.login("alice").await;
    alice.wait_for("*** Welcome, alice! 1 online: alice").await;
    let mut bob = SClient::start(server.addr, &ca, &[]).await;
    bob.login("bob").await;
    bob.wait_for("*** Welcome, bob! 2 online: alice, bob").await;
    alice.wait_for("*** bob joined").await;
    alice.send("hello bob").await;
    bob.wait_for("<alice> hello bob").await;
    bob.send("hi alice").await;
    alice.wait_for("<bob> hi alice").await;
    bob.send("/quit").await;
    bob.wait_for("*** Bye").await;
    alice.wait_for("*** bob left").await;
}

#[tokio::test]
async fn s_client_offering_alpn_tlschat_gets_the_line_protocol() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = common::sclient::login(&server, "alice", &["-alpn", "tlschat"]).await;
    alice.send("/who").await;
    alice.wait_for("*** 1 online: alice").await;
}

#[tokio::test]
async fn s_client_offering_alpn_h2_alone_is_refused_with_an_alert() {
    let server = spawn_server(Opts::default()).await;
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-alpn", "h2", "-connect"])
        .arg(server.addr.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("openssl must be installed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no application protocol"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Username:"));
}
