//! `tlschat admin` against a running binary over its control socket.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use common::bin::{Serve, add_users, serve, tlschat};
use common::{PASSWORD, TestClient};

fn admin(dir: &Path, args: &[&str]) -> Output {
    tlschat(dir)
        .args(["admin", "--db", "users.db"])
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A server with alice and bob logged in (bob has seen alice's join).
async fn room(dir: &Path) -> (Serve, TestClient, TestClient) {
    add_users(dir, &["alice", "bob"], PASSWORD);
    let s = serve(dir, &[]);
    let connector = common::bin::connector_for_dir(dir);
    let mut bob = TestClient::connect(s.addr, &connector).await;
    bob.login("bob", PASSWORD).await;
    let mut alice = TestClient::connect(s.addr, &connector).await;
    alice.login("alice", PASSWORD).await;
    bob.expect_line("*** alice joined").await;
    (s, alice, bob)
}

#[tokio::test]
async fn who_lists_sessions_with_address_time_and_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _alice, _bob) = room(dir.path()).await;
    assert!(s.printed.iter().any(|l| l.ends_with("users.sock")));
    let mode = std::fs::metadata(dir.path().join("users.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = admin(dir.path(), &["who"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<Vec<String>> = text(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0][0], "alice");
    assert_eq!(rows[1][0], "bob");
    for row in &rows {
        assert!(row[1].starts_with("127.0.0.1:"), "{row:?}");
        assert!(row[2].starts_with("20") && row[2].ends_with('Z'), "{row:?}");
        assert!(row[3].parse::<usize>().is_ok(), "{row:?}");
    }
}

#[tokio::test]
async fn kick_disconnects_the_user_and_tells_the_room() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, mut alice, mut bob) = room(dir.path()).await;
    let out = admin(dir.path(), &["kick", "ALICE", "too", "loud"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        alice.expect_closed().await,
        vec!["! You were removed by an administrator (too loud)"]
    );
    bob.expect_line("*** alice left (too loud)").await;
    let again = admin(dir.path(), &["kick", "alice"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("alice is not online"));
}

#[tokio::test]
async fn say_reaches_everyone_as_an_admin_notice() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, mut alice, mut bob) = room(dir.path()).await;
    let out = admin(dir.path(), &["say", "restart", "at", "noon"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    alice.expect_line("*** [admin] restart at noon").await;
    bob.expect_line("*** [admin] restart at noon").await;
}

#[test]
fn no_running_server_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = admin(dir.path(), &["who"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("no tlschat server is running"), "{err}");
    assert!(err.contains("users.sock"), "{err}");
}
