//! SIGTERM/SIGINT and in-process shutdown: notice, close_notify, exit code.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::bin::serve;
use common::{Opts, PASSWORD, TestClient, spawn_server};

#[tokio::test]
async fn shutdown_notifies_members_and_clients_still_logging_in_then_closes_cleanly() {
    let server = spawn_server(Opts::default()).await;
    let mut member = server.login("alice").await;
    let mut pending = server.connect().await;
    pending.expect_greeting().await;
    server.shutdown.cancel();
    member.expect_line("*** Server shutting down").await;
    member.expect_clean_close().await;
    pending.expect_line("*** Server shutting down").await;
    pending.expect_clean_close().await;
    let result = tokio::time::timeout(Duration::from_secs(5), server.handle)
        .await
        .expect("server did not stop");
    assert!(result.unwrap().is_ok());
}

#[tokio::test]
async fn queued_lines_are_delivered_before_the_shutdown_notice() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.expect_line("*** bob joined").await;
    bob.send("last words").await;
    bob.send("/who").await;
    bob.expect_line("*** 2 online: alice, bob").await;
    server.shutdown.cancel();
    alice.expect_line("<bob> last words").await;
    alice.expect_line("*** Server shutting down").await;
    alice.expect_clean_close().await;
}

fn sigterm_exits_zero(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::bin::add_users(d, &["alice", "bob"], PASSWORD);
    let mut s = serve(d, &[]);
    let connector = common::bin::connector_for_dir(d);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut alice, _stalled_bob, mut pending) = rt.block_on(async {
        let mut alice = TestClient::connect(s.addr, &connector).await;
        alice.login("alice", PASSWORD).await;
        // bob logs in and then never reads again.
        let mut bob = TestClient::connect(s.addr, &connector).await;
        bob.login("bob", PASSWORD).await;
        alice.expect_line("*** bob joined").await;
        let mut pending = TestClient::connect(s.addr, &connector).await;
        pending.expect_greeting().await;
        (alice, bob, pending)
    });
    let started = Instant::now();
    let killed = Command::new("kill")
        .args([signal, &s.child.id().to_string()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(killed.success());
    rt.block_on(async {
        alice.expect_line("*** Server shutting down").await;
        alice.expect_clean_close().await;
        pending.expect_line("*** Server shutting down").await;
        pending.expect_clean_close().await;
    });
    let status = loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "server did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigterm_sends_notice_and_close_notify_and_exits_zero() {
    sigterm_exits_zero("-TERM");
}

#[test]
fn sigint_sends_notice_and_close_notify_and_exits_zero() {
    sigterm_exits_zero("-INT");
}
