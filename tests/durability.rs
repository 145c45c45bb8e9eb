//! A stalled, failing or full database: no relayed line is lost or renumbered, unwritten
//! history is bounded, and a room that cannot be read is not joined. Real SQLite files, locked
//! or changed by a second connection, and a real (small) tmpfs.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::db::{lock_writes, release, second_connection};
use common::{Opts, STEP, TestClient, TestServer, block, spawn_server};
use sqlx::Connection;
use tlschat::config::RoomLimits;

/// Longer than the store's busy timeout (10 s): a write waiting on the lock fails.
const STALL: Duration = Duration::from_secs(11);

fn db_path(server: &TestServer) -> PathBuf {
    server.dir.path().join("users.db")
}

/// `/history N` in the current room: the lines between the header and the end, unstamped.
async fn history(c: &mut TestClient, n: usize) -> Vec<String> {
    c.send(&format!("/history {n}")).await;
    c.wait_for_start("*** History of ").await;
    block(c).await
}

/// True for the `/rooms` reply (`*** 2 rooms: #dev (1), #lobby (2)`).
fn is_rooms_reply(line: &str) -> bool {
    line.starts_with("*** ") && (line.contains(" room: #") || line.contains(" rooms: #"))
}

/// A round trip: everything sent before it has been handled when the reply arrives.
async fn sync(c: &mut TestClient) {
    c.send("/rooms").await;
    loop {
        if is_rooms_reply(&c.next_line().await) {
            return;
        }
    }
}

/// Waits until the database holds `seq` as `room`'s newest number.
async fn wait_stored(path: &Path, room: &str, seq: i64) {
    let sql = "SELECT last_seq FROM rooms WHERE name = ?";
    common::db::wait_for_value(path, sql, room, seq, STEP * 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_database_loses_no_line_and_reuses_no_number() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    let mut carol = server.login("carol").await;
    for c in [&mut alice, &mut bob, &mut carol] {
        c.send("/join #dev").await;
        c.wait_for_start("*** You joined #dev").await;
    }
    bob.send("one").await;
    alice.wait_for("[#dev] <bob> one").await;
    carol.wait_for("[#dev] <bob> one").await;
    carol.send("/quit").await;
    carol.wait_for("*** Bye").await;

    let lock = lock_writes(&db_path(&server)).await;
    bob.send("two").await;
    bob.send("three").await;
    alice.wait_for("[#dev] <bob> three").await;
    // The writer's batch waits out the busy timeout and fails while the lock is held.
    tokio::time::sleep(STALL).await;
    // Nobody is left in #dev while its lines are unwritten.
    for c in [&mut alice, &mut bob] {
        c.send("/part #dev").await;
        c.wait_for("*** You left #dev").await;
    }
    release(lock).await;
    // Once #dev is written, a join and part by dave lets the rooms forget it: bob's /join
    // then continues its numbers from the store.
    wait_stored(&db_path(&server), "#dev", 3).await;
    let mut dave = server.login("dave").await;
    dave.send("/join #dev").await;
    dave.wait_for_start("*** You joined #dev").await;
    dave.send("/part").await;
    dave.wait_for("*** You left #dev").await;

    bob.send("/join #dev").await;
    bob.wait_for_start("*** You joined #dev").await;
    bob.wait_for_start("*** History of #dev").await;
    let shown = block(&mut bob).await;
    assert_eq!(shown, ["<bob> one", "<bob> two", "<bob> three"]);
    bob.send("four").await;
    sync(&mut bob).await;

    // carol was away for all of it: three missed, numbered after her position.
    let mut carol = server.login("carol").await;
    carol.wait_for("*** You missed 3 messages in #dev:").await;
    let missed = block(&mut carol).await;
    assert_eq!(missed, ["<bob> two", "<bob> three", "<bob> four"]);

    // And all of it is stored, in order, after a restart.
    drop((alice, bob, carol, dave));
    let server = server.restart(Opts::default()).await;
    let mut bob = server.login("bob").await;
    bob.send("/join #dev").await;
    bob.wait_for("*** Now talking in #dev").await;
    assert_eq!(
        history(&mut bob, 10).await,
        ["<bob> one", "<bob> two", "<bob> three", "<bob> four"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_whose_positions_cannot_be_read_stays_usable_and_catches_up_next_time() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    alice.send("/quit").await;
    alice.expect_closed().await;
    let mut bob = server.login("bob").await;
    bob.send("one").await;
    bob.send("two").await;
    sync(&mut bob).await;
    let mut conn = second_connection(&db_path(&server)).await;
    let rename = |from: &str, to: &str| format!("ALTER TABLE {from} RENAME TO {to}");
    sqlx::query(&rename("read_positions", "read_positions_away"))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut alice = server.login("alice").await;
    alice
        .expect_line("! Catch-up is unavailable right now; you will get it at your next login")
        .await;
    alice.send("still here").await;
    bob.wait_for("<alice> still here").await;
    alice.send("/quit").await;
    alice.expect_closed().await;
    sqlx::query(&rename("read_positions_away", "read_positions"))
        .execute(&mut conn)
        .await
        .unwrap();
    // Nothing was skipped for good: the catch-up starts at the position saved before.
    let mut alice = server.login("alice").await;
    alice.wait_for("*** You missed 3 messages in #lobby:").await;
    assert_eq!(
        block(&mut alice).await,
        ["<bob> one", "<bob> two", "<alice> still here"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_whose_room_cannot_be_read_answers_busy_and_changes_nothing() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    let mut conn = second_connection(&db_path(&server)).await;
    sqlx::query("ALTER TABLE rooms RENAME TO rooms_away")
        .execute(&mut conn)
        .await
        .unwrap();
    alice.send("/join #new").await;
    alice.expect_line("! Server busy, try again later").await;
    alice.send("/rooms").await;
    alice.expect_line("*** 1 room: #lobby (1)").await;
    sqlx::query("ALTER TABLE rooms_away RENAME TO rooms")
        .execute(&mut conn)
        .await
        .unwrap();
    alice.send("/join #new").await;
    alice
        .expect_line("*** You joined #new; 1 here: alice")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_database_keeps_relayed_lines_until_it_recovers() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.wait_for("*** bob joined").await;
    let mut conn = second_connection(&db_path(&server)).await;
    // Every history write fails (the rooms table is gone) until it is put back.
    sqlx::query("ALTER TABLE rooms RENAME TO rooms_away")
        .execute(&mut conn)
        .await
        .unwrap();
    for i in 1..=5 {
        bob.send(&format!("while failing {i}")).await;
    }
    alice.wait_for("<bob> while failing 5").await;
    // Several failed tries (100 ms, 200 ms, 400 ms apart).
    tokio::time::sleep(Duration::from_secs(1)).await;
    sqlx::query("ALTER TABLE rooms_away RENAME TO rooms")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    bob.send("after").await;
    alice.wait_for("<bob> after").await;
    drop((alice, bob));
    let server = server.restart(Opts::default()).await;
    let mut bob = server.login("bob").await;
    let expected: Vec<String> = (1..=5)
        .map(|i| format!("<bob> while failing {i}"))
        .chain(["<bob> after".to_owned()])
        .collect();
    assert_eq!(history(&mut bob, 10).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritten_history_is_bounded_and_nothing_unstored_is_relayed() {
    let opts = || Opts {
        rooms: RoomLimits {
            history_backlog_bytes: 64 * 1024,
            ..RoomLimits::default()
        },
        ..Opts::default()
    };
    let server = spawn_server(opts()).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.wait_for("*** bob joined").await;
    let lock = lock_writes(&db_path(&server)).await;
    let text = "x".repeat(400);
    // Each line takes ~420 bytes of the 64 KiB: refused well before 1,000.
    let mut sent = 0;
    loop {
        assert!(sent < 1000, "never refused");
        bob.send(&format!("{sent} {text}")).await;
        bob.send("/rooms").await;
        let reply = bob.next_line().await;
        if reply == "! Chat is unavailable right now; your message was not sent" {
            assert!(is_rooms_reply(&bob.next_line().await));
            break;
        }
        assert!(is_rooms_reply(&reply), "{reply}");
        sent += 1;
    }
    assert!(sent > 100, "refused after only {sent} lines");
    // alice got every accepted line and then nothing but what follows the refusal.
    alice.wait_for(&format!("<bob> {} {text}", sent - 1)).await;
    alice.send("/who").await;
    assert_eq!(alice.next_line().await, "*** 2 online: alice, bob");
    release(lock).await;
    // Once the backlog is written, lines are taken again.
    let deadline = std::time::Instant::now() + STEP * 3;
    loop {
        assert!(std::time::Instant::now() < deadline, "chat never came back");
        bob.send("back").await;
        bob.send("/rooms").await;
        let reply = bob.next_line().await;
        if is_rooms_reply(&reply) {
            break;
        }
        assert_eq!(
            reply,
            "! Chat is unavailable right now; your message was not sent"
        );
        assert!(is_rooms_reply(&bob.next_line().await));
    }
    alice.wait_for("<bob> back").await;
    drop((alice, bob));
    let server = server.restart(opts()).await;
    let mut bob = server.login("bob").await;
    let stored = history(&mut bob, 500).await;
    let expected: Vec<String> = (0..sent)
        .map(|i| format!("<bob> {i} {text}"))
        .chain(["<bob> back".to_owned()])
        .collect();
    assert_eq!(stored, expected);
}

/// A tmpfs of `size`, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mounting a tmpfs was refused: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the filesystem of `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    // Down to the last bytes.
    while file.write_all(&chunk[..512]).is_ok() {}
    let _ = file.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_no_relayed_line_after_shutdown_and_restart() {
    let tmpfs = match Tmpfs::mount("32m") {
        Ok(t) => t,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let opts = |dir| Opts {
        dir: Some(dir),
        ..Opts::default()
    };
    let dir = tempfile::tempdir_in(tmpfs.dir.path()).unwrap();
    let users_dir = dir.path().to_owned();
    let server = spawn_server(opts(dir)).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.wait_for("*** bob joined").await;
    for i in 1..=20 {
        bob.send(&format!("line {i}")).await;
    }
    alice.wait_for("<bob> line 20").await;
    sync(&mut bob).await;
    let filler = fill(&users_dir);
    for i in 21..=80 {
        bob.send(&format!("line {i}")).await;
    }
    alice.wait_for("<bob> line 80").await;
    // Let the writer run into the full disk.
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::remove_file(filler).unwrap();
    bob.send("line 81").await;
    alice.wait_for("<bob> line 81").await;
    drop((alice, bob));
    let server = server.restart(Opts::default()).await;
    let mut bob = server.login("bob").await;
    let expected: Vec<String> = (1..=81).map(|i| format!("<bob> line {i}")).collect();
    assert_eq!(history(&mut bob, 100).await, expected);
}
