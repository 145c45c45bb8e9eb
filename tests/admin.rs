//! `tlschat admin` against a running binary over its control socket.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
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

#[tokio::test]
async fn database_option_is_accepted_after_the_subcommand_as_the_readme_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, _alice, _bob) = room(dir.path()).await;
    let out = tlschat(dir.path())
        .args(["admin", "who", "--db", "users.db"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 2);
    let by_socket = tlschat(dir.path())
        .args(["admin", "kick", "bob", "--admin-socket", "users.sock"])
        .output()
        .unwrap();
    assert!(by_socket.status.success(), "{}", text(&by_socket.stderr));
}

#[tokio::test]
async fn every_admin_command_is_logged_with_the_peer_uid_and_target() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, _alice, _bob) = room(dir.path()).await;
    assert!(
        admin(dir.path(), &["kick", "alice", "spam"])
            .status
            .success()
    );
    assert!(
        admin(dir.path(), &["say", "secret notice text"])
            .status
            .success()
    );
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    let uid = std::fs::metadata(dir.path().join("users.sock"))
        .unwrap()
        .uid();
    let kick = log
        .lines()
        .find(|l| l.contains("admin command") && l.contains("command=\"kick\""))
        .unwrap_or_else(|| panic!("no kick in the log: {log}"));
    assert!(kick.contains(&format!("peer_uid={uid}")), "{kick}");
    assert!(kick.contains("target=\"alice\""), "{kick}");
    let say = log
        .lines()
        .find(|l| l.contains("admin command") && l.contains("command=\"say\""))
        .unwrap_or_else(|| panic!("no say in the log: {log}"));
    assert!(say.contains("text_len=18"), "{say}");
    assert!(!log.contains("secret notice text"), "message body logged");
}

#[test]
fn serve_refuses_an_admin_socket_path_that_holds_a_regular_file_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("users.sock");
    std::fs::write(&precious, "not a socket").unwrap();
    let out = tlschat(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--db", "users.db"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "not a socket");
    // The database named as the admin socket is not deleted either.
    let db_as_socket = tlschat(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--db", "users.db"])
        .args(["--admin-socket", "users.db"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(db_as_socket.status.code(), Some(1));
    assert!(dir.path().join("users.db").metadata().unwrap().len() > 0);
}

#[tokio::test]
async fn admin_socket_refuses_a_peer_with_another_uid() {
    if !Path::new("/usr/bin/setpriv").exists()
        || std::fs::metadata("/proc/self").unwrap().uid() != 0
    {
        if std::env::var("TLSCHAT_REQUIRE_ALL").as_deref() == Ok("1") {
            panic!("this test needs root and setpriv to run a client as another uid");
        }
        eprintln!("skipped: needs root and setpriv to run a client as another uid");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_s, _alice, _bob) = room(dir.path()).await;
    // Open the file mode wide, so that only the uid check stands in the way.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("users.sock");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(common::bin::BIN)
        .args(["admin", "kick", "alice", "--admin-socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("permission denied: uid 65534"), "{err}");
    // Nothing happened: alice is still online.
    let who = admin(dir.path(), &["who"]);
    assert!(text(&who.stdout).contains("alice\t"));
}
