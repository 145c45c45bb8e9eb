//! History: /history, the join history, catch-up after reconnect (with its counts), retention,
//! restarts, and the `memory` and `off` modes, over real TLS.

mod common;

use common::{Opts, TestClient, TestServer, block, spawn_server};
use tlschat::config::{HistoryMode, RoomLimits};

fn opts(rooms: RoomLimits) -> Opts {
    Opts {
        rooms,
        ..Opts::default()
    }
}

/// bob says `n` numbered lines in the lobby; alice (online) reads them.
async fn say_lines(bob: &mut TestClient, alice: &mut TestClient, n: usize) {
    for i in 1..=n {
        bob.send(&format!("line {i}")).await;
    }
    alice.wait_for(&format!("<bob> line {n}")).await;
}

/// alice logs in, out, and bob then says `n` lines while she is away.
async fn alice_misses(server: &TestServer, n: usize) -> TestClient {
    let mut bob = server.login("bob").await;
    let mut alice = server.login("alice").await;
    bob.expect_line("*** alice joined").await;
    alice.send("/quit").await;
    alice.expect_line("*** Bye").await;
    bob.expect_line("*** alice left").await;
    for i in 1..=n {
        bob.send(&format!("missed {i}")).await;
    }
    // The lines are relayed (and so queued for the database) before /who is answered.
    bob.send("/who").await;
    bob.expect_line("*** 1 online: bob").await;
    bob
}

#[tokio::test]
async fn history_shows_the_last_messages_with_their_time_oldest_first() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.expect_line("*** bob joined").await;
    say_lines(&mut bob, &mut alice, 3).await;
    bob.send("/me waves").await;
    alice.expect_line("* bob waves").await;
    alice.send("/history").await;
    alice.expect_line("*** History of #lobby: 4 messages").await;
    assert_eq!(
        block(&mut alice).await,
        [
            "<bob> line 1",
            "<bob> line 2",
            "<bob> line 3",
            "* bob waves"
        ]
    );
}

#[tokio::test]
async fn history_n_shows_the_last_n() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.expect_line("*** bob joined").await;
    say_lines(&mut bob, &mut alice, 25).await;
    alice.send("/history 2").await;
    alice.expect_line("*** History of #lobby: 2 messages").await;
    assert_eq!(block(&mut alice).await, ["<bob> line 24", "<bob> line 25"]);
    alice.send("/history").await;
    alice
        .expect_line("*** History of #lobby: 20 messages")
        .await;
    assert_eq!(block(&mut alice).await.len(), 20);
}

#[tokio::test]
async fn one_message_is_written_in_the_singular() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.expect_line("*** bob joined").await;
    say_lines(&mut bob, &mut alice, 1).await;
    alice.send("/history 500").await;
    alice.expect_line("*** History of #lobby: 1 message").await;
    assert_eq!(block(&mut alice).await, ["<bob> line 1"]);
}

#[tokio::test]
async fn history_counts_outside_1_to_500_are_refused() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    for bad in [
        "/history 0",
        "/history 501",
        "/history x",
        "/history -1",
        "/history 2 3",
    ] {
        alice.send(bad).await;
        alice.expect_line("! Usage: /history [1-500]").await;
    }
}

#[tokio::test]
async fn a_room_without_messages_has_no_history() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    alice.send("/join #dev").await;
    alice
        .expect_line("*** You joined #dev; 1 here: alice")
        .await;
    alice.send("/history").await;
    alice.expect_line("*** No history in #dev").await;
}

#[tokio::test]
async fn history_of_a_room_has_no_room_prefix_and_only_that_room() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.expect_line("*** bob joined").await;
    for c in [&mut alice, &mut bob] {
        c.send("/join #dev").await;
        c.wait_for_start("*** You joined #dev;").await;
    }
    bob.send("in dev").await;
    alice.wait_for("[#dev] <bob> in dev").await;
    alice.send("/history").await;
    alice.expect_line("*** History of #dev: 1 message").await;
    assert_eq!(block(&mut alice).await, ["<bob> in dev"]);
}

#[tokio::test]
async fn joining_a_room_shows_its_recent_messages() {
    let server = spawn_server(opts(RoomLimits {
        join_history: 3,
        ..RoomLimits::default()
    }))
    .await;
    let mut bob = server.login("bob").await;
    bob.send("/join #dev").await;
    bob.expect_line("*** You joined #dev; 1 here: bob").await;
    for i in 1..=5 {
        bob.send(&format!("d{i}")).await;
    }
    let mut alice = server.login("alice").await;
    alice.send("/join #dev").await;
    alice
        .expect_line("*** You joined #dev; 2 here: alice, bob")
        .await;
    alice.expect_line("*** History of #dev: 3 messages").await;
    assert_eq!(
        block(&mut alice).await,
        ["<bob> d3", "<bob> d4", "<bob> d5"]
    );
}

#[tokio::test]
async fn joining_an_empty_room_shows_no_history_block() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    alice.send("/join #dev").await;
    alice
        .expect_line("*** You joined #dev; 1 here: alice")
        .await;
    alice.send("/who").await;
    alice.expect_line("*** 1 in #dev: alice").await;
}

#[tokio::test]
async fn messages_missed_while_away_are_replayed_at_login() {
    let server = spawn_server(Opts::default()).await;
    let _bob = alice_misses(&server, 3).await;
    let mut alice = server.login("alice").await;
    alice
        .expect_line("*** You missed 3 messages in #lobby:")
        .await;
    assert_eq!(
        block(&mut alice).await,
        ["<bob> missed 1", "<bob> missed 2", "<bob> missed 3"]
    );
}

#[tokio::test]
async fn one_missed_message_is_written_in_the_singular() {
    let server = spawn_server(Opts::default()).await;
    let _bob = alice_misses(&server, 1).await;
    let mut alice = server.login("alice").await;
    alice
        .expect_line("*** You missed 1 message in #lobby:")
        .await;
}

#[tokio::test]
async fn nothing_missed_gives_no_catch_up_block() {
    let server = spawn_server(Opts::default()).await;
    let _bob = alice_misses(&server, 0).await;
    let mut alice = server.login("alice").await;
    alice.send("/who").await;
    alice.expect_line("*** 2 online: alice, bob").await;
}

#[tokio::test]
async fn a_first_login_ever_has_no_catch_up() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = server.login("bob").await;
    bob.send("before alice ever came").await;
    bob.send("/who").await;
    bob.expect_line("*** 1 online: bob").await;
    let mut alice = server.login("alice").await;
    alice.send("/who").await;
    alice.expect_line("*** 2 online: alice, bob").await;
}

#[tokio::test]
async fn more_missed_than_catchup_messages_shows_the_last_ones() {
    let server = spawn_server(opts(RoomLimits {
        catchup_messages: 2,
        ..RoomLimits::default()
    }))
    .await;
    let _bob = alice_misses(&server, 5).await;
    let mut alice = server.login("alice").await;
    alice
        .expect_line("*** You missed 5 messages in #lobby; the last 2:")
        .await;
    assert_eq!(
        block(&mut alice).await,
        ["<bob> missed 4", "<bob> missed 5"]
    );
}

#[tokio::test]
async fn missed_messages_no_longer_kept_are_counted_in_the_header() {
    let server = spawn_server(opts(RoomLimits {
        history_messages: 3,
        ..RoomLimits::default()
    }))
    .await;
    let _bob = alice_misses(&server, 5).await;
    let mut alice = server.login("alice").await;
    alice
        .expect_line("*** You missed 5 messages in #lobby (2 no longer kept); the last 3:")
        .await;
    assert_eq!(
        block(&mut alice).await,
        ["<bob> missed 3", "<bob> missed 4", "<bob> missed 5"]
    );
}

#[tokio::test]
async fn a_members_own_lines_are_not_missed() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    alice.send("mine").await;
    alice.send("/quit").await;
    alice.expect_line("*** Bye").await;
    let mut alice = server.login("alice").await;
    alice.send("/who").await;
    alice.expect_line("*** 1 online: alice").await;
}

#[tokio::test]
async fn catch_up_covers_the_lobby_first_then_rooms_in_name_order_after_you_are_in() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.expect_line("*** bob joined").await;
    for room in ["#zed", "#abc"] {
        for c in [&mut alice, &mut bob] {
            c.send(&format!("/join {room}")).await;
            c.wait_for_start(&format!("*** You joined {room};")).await;
        }
    }
    alice.send("/quit").await;
    alice.wait_for("*** Bye").await;
    bob.wait_for("*** alice left").await;
    for room in ["#zed", "#abc", "#lobby"] {
        bob.send(&format!("/join {room}")).await;
        bob.send(&format!("to {room}")).await;
    }
    bob.send("/who").await;
    bob.wait_for("*** 1 online: bob").await;
    let mut alice = server.login("alice").await;
    alice
        .expect_line("*** You are in #abc; 2 here: alice, bob")
        .await;
    alice
        .expect_line("*** You are in #zed; 2 here: alice, bob")
        .await;
    alice
        .expect_line("*** You missed 1 message in #lobby:")
        .await;
    assert_eq!(block(&mut alice).await, ["<bob> to #lobby"]);
    alice.expect_line("*** You missed 1 message in #abc:").await;
    assert_eq!(block(&mut alice).await, ["<bob> to #abc"]);
    alice.expect_line("*** You missed 1 message in #zed:").await;
    assert_eq!(block(&mut alice).await, ["<bob> to #zed"]);
}

#[tokio::test]
async fn admin_notices_are_stored_in_the_lobby() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    server.ctx.room.announce("maintenance at 5");
    alice.expect_line("*** [admin] maintenance at 5").await;
    alice.send("/history").await;
    alice.expect_line("*** History of #lobby: 1 message").await;
    assert_eq!(block(&mut alice).await, ["*** [admin] maintenance at 5"]);
}

#[tokio::test]
async fn history_and_numbers_survive_a_restart() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = server.login("bob").await;
    bob.send("before the restart").await;
    let alice = server.login("alice").await;
    bob.expect_line("*** alice joined").await;
    drop((alice, bob));
    let server = server.restart(Opts::default()).await;
    let mut alice = server.login("alice").await;
    alice.send("/history").await;
    alice.expect_line("*** History of #lobby: 1 message").await;
    assert_eq!(block(&mut alice).await, ["<bob> before the restart"]);
    alice.send("/quit").await;
    alice.expect_line("*** Bye").await;
    // Numbers continue after the restart: alice's position (1) is before bob's new line.
    let mut bob = server.login("bob").await;
    bob.send("after the restart").await;
    bob.send("/who").await;
    bob.expect_line("*** 1 online: bob").await;
    let mut alice = server.login("alice").await;
    alice
        .expect_line("*** You missed 1 message in #lobby:")
        .await;
    assert_eq!(block(&mut alice).await, ["<bob> after the restart"]);
}

#[tokio::test]
async fn history_off_refuses_history_and_shows_none_on_join() {
    let server = spawn_server(opts(RoomLimits {
        history: HistoryMode::Off,
        ..RoomLimits::default()
    }))
    .await;
    let _bob = alice_misses(&server, 2).await;
    let mut alice = server.login("alice").await;
    alice.send("/history").await;
    alice.expect_line("! History is off on this server").await;
    alice.send("/join #dev").await;
    alice
        .expect_line("*** You joined #dev; 1 here: alice")
        .await;
    alice.send("/who").await;
    alice.expect_line("*** 1 in #dev: alice").await;
}

#[tokio::test]
async fn memory_history_works_until_a_restart() {
    let rooms = RoomLimits {
        history: HistoryMode::Memory,
        ..RoomLimits::default()
    };
    let server = spawn_server(opts(rooms)).await;
    let _bob = alice_misses(&server, 2).await;
    let mut alice = server.login("alice").await;
    alice
        .expect_line("*** You missed 2 messages in #lobby:")
        .await;
    assert_eq!(
        block(&mut alice).await,
        ["<bob> missed 1", "<bob> missed 2"]
    );
    drop((_bob, alice));
    let server = server.restart(opts(rooms)).await;
    let mut alice = server.login("alice").await;
    alice.send("/history").await;
    alice.expect_line("*** No history in #lobby").await;
}

#[tokio::test]
async fn an_evicted_member_catches_up_from_the_first_line_it_did_not_get() {
    let (server, mut alice, mut bob) = alice_over_a_small_buffer(8 * 1024).await;
    let body = "x".repeat(1000);
    let metrics = std::sync::Arc::clone(&server.ctx.metrics);
    let evicted = || {
        metrics
            .evictions_send_queue
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    };
    let mut sent = 0;
    while !evicted() && sent < 5_000 {
        sent += 1;
        bob.send(&format!("n{sent} {body}")).await;
        if sent % 50 == 0 {
            // Paces bob to the server; the reply says 1 online once alice is gone.
            bob.send("/who").await;
            while !bob.next_line().await.contains(" online: ") {}
        }
    }
    assert!(evicted(), "alice was never evicted");
    // What alice did get, up to the end of her connection.
    let got = alice.expect_closed().await;
    let last_got = got
        .iter()
        .filter_map(|l| l.strip_prefix("<bob> n"))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    assert!(last_got < sent, "alice got everything");
    bob.send("/who").await;
    bob.wait_for("*** 1 online: bob").await;
    let mut alice = server.login("alice").await;
    let header = alice.next_line().await;
    assert!(header.starts_with("*** You missed "), "{header}");
    let caught: Vec<usize> = block(&mut alice)
        .await
        .iter()
        .filter_map(|l| l.strip_prefix("<bob> n"))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        caught.first().is_some_and(|&first| first <= last_got + 1),
        "catch-up starts at {:?}, alice last got n{last_got}",
        caught.first()
    );
    assert_eq!(caught.last(), Some(&sent));
}

#[tokio::test]
async fn a_room_read_back_from_the_database_continues_its_numbers() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = server.login("bob").await;
    bob.send("/join #dev").await;
    bob.expect_line("*** You joined #dev; 1 here: bob").await;
    for i in 1..=3 {
        bob.send(&format!("d{i}")).await;
    }
    bob.send("/part").await;
    bob.expect_line("*** You left #dev").await;
    drop(bob);
    let server = server.restart(Opts::default()).await;
    // Nobody is in #dev: joining reads its last messages and its newest number from SQLite.
    let mut alice = server.login("alice").await;
    alice.send("/join #dev").await;
    alice
        .expect_line("*** You joined #dev; 1 here: alice")
        .await;
    alice.expect_line("*** History of #dev: 3 messages").await;
    assert_eq!(
        block(&mut alice).await,
        ["<bob> d1", "<bob> d2", "<bob> d3"]
    );
    alice.send("/quit").await;
    alice.expect_line("*** Bye").await;
    let mut bob = server.login("bob").await;
    bob.send("/join #dev").await;
    bob.wait_for("*** End of history").await;
    bob.send("d4").await;
    bob.send("/who").await;
    bob.expect_line("*** 1 in #dev: bob").await;
    let mut alice = server.login("alice").await;
    alice
        .expect_line("*** You are in #dev; 2 here: alice, bob")
        .await;
    alice.expect_line("*** You missed 1 message in #dev:").await;
    assert_eq!(block(&mut alice).await, ["<bob> d4"]);
}

#[tokio::test]
async fn sigterm_writes_every_relayed_line_before_the_server_exits() {
    use common::bin::{add_users, connector_for_dir, serve};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_users(d, &["alice", "bob"], common::PASSWORD);
    let fast = ["--rate-burst", "1000", "--rate-per-sec", "1000"];
    let mut s = serve(d, &fast);
    let connector = connector_for_dir(d);
    let mut alice = TestClient::connect(s.addr, &connector).await;
    alice.login("alice", common::PASSWORD).await;
    let mut bob = TestClient::connect(s.addr, &connector).await;
    bob.login("bob", common::PASSWORD).await;
    alice.expect_line("*** bob joined").await;
    for i in 1..=200 {
        bob.send(&format!("line {i}")).await;
    }
    // Relayed, so in the room's log; the signal follows at once, well inside the writer's
    // 50 ms interval.
    alice.wait_for("<bob> line 200").await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    alice.wait_for("*** Server shutting down").await;
    let status = tokio::task::spawn_blocking(move || {
        let status = s.child.wait().unwrap();
        (s, status)
    });
    let (s, status) = tokio::time::timeout(common::STEP, status)
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    drop(s);
    let s = serve(d, &fast);
    let mut alice = TestClient::connect(s.addr, &connector).await;
    alice.login("alice", common::PASSWORD).await;
    alice.send("/history 500").await;
    alice
        .expect_line("*** History of #lobby: 200 messages")
        .await;
    let lines = block(&mut alice).await;
    assert_eq!(lines.first().map(String::as_str), Some("<bob> line 1"));
    assert_eq!(lines.last().map(String::as_str), Some("<bob> line 200"));
}

#[tokio::test]
async fn read_positions_reach_the_database_while_reading_so_kill_9_repeats_nothing_older() {
    use common::bin::{add_users, connector_for_dir, serve};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_users(d, &["alice", "bob"], common::PASSWORD);
    let s = serve(d, &[]);
    let connector = connector_for_dir(d);
    let log_in = async |name: &str, addr| {
        let mut c = TestClient::connect(addr, &connector).await;
        c.login(name, common::PASSWORD).await;
        c
    };
    // A first visit gives alice a stored position in #lobby.
    let mut alice = log_in("alice", s.addr).await;
    alice.send("/quit").await;
    alice.expect_closed().await;
    let mut alice = log_in("alice", s.addr).await;
    let mut bob = log_in("bob", s.addr).await;
    alice.expect_line("*** bob joined").await;
    for i in 1..=5 {
        bob.send(&format!("line {i}")).await;
    }
    alice.wait_for("<bob> line 5").await;
    // Saved about a second after it moved, with alice still connected.
    wait_for_position(&d.join("users.db"), "alice", 5).await;
    drop(s); // SIGKILL: no logout, no shutdown path.
    let s = serve(d, &[]);
    let mut alice = log_in("alice", s.addr).await;
    // Nothing to catch up on: the answer to /rooms comes right after the welcome.
    alice.send("/rooms").await;
    alice.expect_line("*** 1 room: #lobby (1)").await;
}

/// Waits until `user`'s stored read position in #lobby is `seq`.
async fn wait_for_position(db: &std::path::Path, user: &str, seq: i64) {
    let sql = "SELECT rp.seq FROM read_positions rp JOIN users u ON u.id = rp.user_id \
               WHERE u.username = ? AND rp.room = '#lobby'";
    common::db::wait_for_value(db, sql, user, seq, common::STEP).await;
}

/// The numbers of `<bob> nN …` lines (live or in a block, stamped or not).
fn numbers(lines: &[String]) -> Vec<usize> {
    lines
        .iter()
        .filter_map(|l| l.split_once("<bob> n"))
        .filter_map(|(_, rest)| rest.split(' ').next()?.parse().ok())
        .collect()
}

/// A server with `queue_bytes` of outbound queue per member that shows every missed line;
/// alice logged in over a socket with a 4 KiB receive buffer, and bob, whose arrival she has
/// read. Returns (server, alice, bob).
async fn alice_over_a_small_buffer(queue_bytes: usize) -> (TestServer, TestClient, TestClient) {
    let mut limits = common::test_limits();
    limits.outbound_queue_bytes = queue_bytes;
    let server = spawn_server(Opts {
        limits,
        rooms: RoomLimits {
            catchup_messages: 10_000,
            ..RoomLimits::default()
        },
        ..Opts::default()
    })
    .await;
    let tcp = common::tcp_from(server.addr, "127.0.0.1", Some(4096)).await;
    let mut alice = TestClient::over(tcp, &server.connector).await;
    alice.login("alice", common::PASSWORD).await;
    let bob = server.login("bob").await;
    alice.expect_line("*** bob joined").await;
    (server, alice, bob)
}

/// Lines bob says while alice's client does not read.
const SILENT_LINES: usize = 400;
/// Short lines, paced in tens: the first batches are records smaller than the client's 4 KiB
/// receive buffer, so its kernel acknowledges whole batches before the buffer fills.
const SILENT_BODY: usize = 100;
/// The bytes of one such line on the wire.
const SILENT_LINE_BYTES: usize = SILENT_BODY + 12;

/// [`alice_over_a_small_buffer`] on a server that never evicts (the silent session must
/// stay); alice reads nothing more, and bob has said `n1` … `n400`, all relayed.
async fn alice_silent_while_bob_talks() -> (TestServer, TestClient, TestClient) {
    let (server, alice, mut bob) = alice_over_a_small_buffer(64 << 20).await;
    let body = "x".repeat(SILENT_BODY);
    for i in 1..=SILENT_LINES {
        bob.send(&format!("n{i} {body}")).await;
        if i % 10 == 0 {
            bob.send("/who").await;
            bob.wait_for("*** 2 online: alice, bob").await;
        }
    }
    (server, alice, bob)
}

/// The catch-up block that must come next: its numbers, checked to run without a gap up to
/// the last line bob said.
async fn caught_up_to_the_end(alice: &mut TestClient) -> Vec<usize> {
    let header = alice.next_line().await;
    assert!(header.starts_with("*** You missed "), "{header}");
    let caught = numbers(&block(alice).await);
    let first = *caught.first().expect("no catch-up lines");
    assert_eq!(caught, (first..=SILENT_LINES).collect::<Vec<_>>());
    caught
}

#[tokio::test]
async fn a_takeover_of_a_member_that_stopped_reading_loses_no_line_and_repeats_little() {
    let (server, mut first, _bob) = alice_silent_while_bob_talks().await;
    let mut second = server.login("alice").await;
    let first_caught = caught_up_to_the_end(&mut second).await[0];
    // Now that the old session has handed over: everything that reached the first client's
    // socket, up to its end.
    let got_first = numbers(&first.expect_closed().await);
    let last_first = got_first.iter().copied().max().unwrap_or(0);
    assert!(
        last_first > 0 && last_first < SILENT_LINES,
        "the first client got n{last_first}: nothing to test"
    );
    assert!(
        first_caught <= last_first + 1,
        "lost n{} to n{}",
        last_first + 1,
        first_caught - 1
    );
    // Repeated: at most one entry of acknowledged output (4 KiB) and one batch (10 lines).
    let repeated = got_first.iter().filter(|&&n| n >= first_caught).count();
    println!(
        "takeover: the first client got n1..n{last_first}, the catch-up starts at \
         n{first_caught}: {repeated} lines repeated"
    );
    assert!(
        repeated * SILENT_LINE_BYTES <= 4 * 1024 + 10 * SILENT_LINE_BYTES,
        "{repeated} lines repeated"
    );
}

#[tokio::test]
async fn lines_the_peer_never_acknowledged_are_caught_up_after_its_connection_dies() {
    let (server, first, mut bob) = alice_silent_while_bob_talks().await;
    // Her connection dies (closed with unread data: a reset).
    drop(first);
    bob.wait_for("*** alice left").await;
    let mut alice = server.login("alice").await;
    let first_caught = caught_up_to_the_end(&mut alice).await[0];
    // Counted as read: at most what a 4 KiB receive buffer (doubled by the kernel) holds,
    // not what was written into the server's send buffer.
    assert!(
        (first_caught - 1) * SILENT_LINE_BYTES <= 16 * 1024,
        "the catch-up starts at n{first_caught}"
    );
}
