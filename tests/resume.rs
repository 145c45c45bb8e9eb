//! Numbered lines and exact resume: `/resume` at the `Username:` prompt numbers the lines of
//! stored messages (live, echoed, in blocks) and starts each named room's catch-up right
//! after the number the client showed, on a fresh login and on a takeover, over real TLS.

mod common;

use common::{Opts, TestClient, TestServer, spawn_server, untimed};
use tlschat::config::RoomLimits;

/// A client of `name` that sent `resume` (a `/resume …` line) before its username.
async fn resuming(server: &TestServer, name: &str, resume: &str) -> TestClient {
    let mut c = server.connect().await;
    c.expect_greeting().await;
    c.send(resume).await;
    c.expect_line("*** Numbered lines on").await;
    c.expect_line("Username:").await;
    c.login_after_prompt(name, common::PASSWORD).await;
    c
}

/// bob says `line 1` … `line n` in #lobby; `reader` (numbered) reads up to the last.
async fn bob_says(bob: &mut TestClient, reader: &mut TestClient, n: usize) {
    for i in 1..=n {
        bob.send(&format!("line {i}")).await;
    }
    reader
        .wait_for(&format!("@#lobby:{n} <bob> line {n}"))
        .await;
}

/// The block after a catch-up header: each line's number, and its text without the stamp.
async fn numbered_block(c: &mut TestClient) -> Vec<(u64, String)> {
    c.wait_for("*** End of history")
        .await
        .iter()
        .map(|line| {
            let (room, seq, rest) = tlschat::protocol::split_number(line)
                .unwrap_or_else(|| panic!("not numbered: {line:?}"));
            assert_eq!(room, "#lobby");
            (seq, untimed(rest).to_owned())
        })
        .collect()
}

fn lines(from: u64, to: u64) -> Vec<(u64, String)> {
    (from..=to)
        .map(|i| (i, format!("<bob> line {i}")))
        .collect()
}

#[tokio::test]
async fn live_lines_of_stored_messages_carry_their_room_and_number() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = resuming(&server, "alice", "/resume").await;
    let mut bob = server.login("bob").await;
    alice.expect_line("*** bob joined").await;
    bob.send("hi").await;
    alice.expect_line("@#lobby:1 <bob> hi").await;
    bob.send("/me waves").await;
    alice.expect_line("@#lobby:2 * bob waves").await;
    bob.send("/join #dev").await;
    bob.wait_for_start("*** You joined #dev").await;
    alice.send("/join #dev").await;
    alice.wait_for_start("*** You joined #dev").await;
    bob.expect_line("[#dev] *** alice joined").await;
    bob.send("in dev").await;
    alice.expect_line("@#dev:1 [#dev] <bob> in dev").await;
}

#[tokio::test]
async fn a_numbered_session_gets_its_own_lines_back_numbered_and_others_see_v1() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = resuming(&server, "alice", "/resume").await;
    let mut bob = server.login("bob").await;
    alice.expect_line("*** bob joined").await;
    alice.send("mine").await;
    alice.expect_line("@#lobby:1 <alice> mine").await;
    bob.expect_line("<alice> mine").await;
    alice.send("/msg bob psst").await;
    alice.expect_line("-> *bob* psst").await;
}

#[tokio::test]
async fn history_blocks_of_a_numbered_session_are_numbered() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = resuming(&server, "alice", "/resume").await;
    let mut bob = server.login("bob").await;
    alice.expect_line("*** bob joined").await;
    bob_says(&mut bob, &mut alice, 3).await;
    alice.send("/history 2").await;
    alice.expect_line("*** History of #lobby: 2 messages").await;
    assert_eq!(numbered_block(&mut alice).await, lines(2, 3));
}

#[tokio::test]
async fn a_resumed_login_gets_exactly_the_messages_after_the_numbers_it_names() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = resuming(&server, "alice", "/resume").await;
    let mut bob = server.login("bob").await;
    alice.expect_line("*** bob joined").await;
    bob_says(&mut bob, &mut alice, 10).await;
    alice.send("/quit").await;
    alice.expect_line("*** Bye").await;
    bob.expect_line("*** alice left").await;
    // Her stored position is line 10 (she read it all); she says she showed up to line 4.
    let mut alice = resuming(&server, "alice", "/resume #lobby 4").await;
    alice
        .expect_line("*** You missed 6 messages in #lobby:")
        .await;
    assert_eq!(numbered_block(&mut alice).await, lines(5, 10));
    bob.send("live again").await;
    alice.expect_line("@#lobby:11 <bob> live again").await;
}

#[tokio::test]
async fn a_takeover_that_resumes_starts_where_the_client_says_not_where_the_peer_acknowledged() {
    let server = spawn_server(Opts::default()).await;
    let mut first = resuming(&server, "alice", "/resume").await;
    let mut bob = server.login("bob").await;
    first.expect_line("*** bob joined").await;
    bob_says(&mut bob, &mut first, 10).await;
    // The first connection's peer acknowledged all ten; the client showed seven.
    let mut second = resuming(&server, "alice", "/resume #lobby 7").await;
    first
        .expect_line("! You signed in elsewhere; closing this session")
        .await;
    second
        .expect_line("*** You missed 3 messages in #lobby:")
        .await;
    assert_eq!(numbered_block(&mut second).await, lines(8, 10));
}

#[tokio::test]
async fn a_number_the_room_has_not_reached_is_ignored_for_the_stored_position() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = resuming(&server, "alice", "/resume").await;
    let mut bob = server.login("bob").await;
    alice.expect_line("*** bob joined").await;
    bob_says(&mut bob, &mut alice, 2).await;
    alice.send("/quit").await;
    alice.expect_line("*** Bye").await;
    bob.expect_line("*** alice left").await;
    bob.send("line 3").await;
    bob.send("/who").await;
    bob.expect_line("*** 1 online: bob").await;
    let mut alice = resuming(&server, "alice", "/resume #lobby 900").await;
    alice
        .expect_line("*** You missed 1 message in #lobby:")
        .await;
    assert_eq!(numbered_block(&mut alice).await, lines(3, 3));
}

#[tokio::test]
async fn a_resumed_catch_up_shows_up_to_resume_messages() {
    let server = spawn_server(Opts {
        rooms: RoomLimits {
            catchup_messages: 1,
            resume_messages: 3,
            ..RoomLimits::default()
        },
        ..Opts::default()
    })
    .await;
    let mut alice = resuming(&server, "alice", "/resume").await;
    let mut bob = server.login("bob").await;
    alice.expect_line("*** bob joined").await;
    bob_says(&mut bob, &mut alice, 5).await;
    let mut second = resuming(&server, "alice", "/resume #lobby 0").await;
    second
        .expect_line("*** You missed 5 messages in #lobby; the last 3:")
        .await;
    assert_eq!(numbered_block(&mut second).await, lines(3, 5));
}

#[tokio::test]
async fn a_malformed_resume_is_answered_with_its_usage_and_the_login_goes_on() {
    let server = spawn_server(Opts::default()).await;
    let mut c = server.connect().await;
    c.expect_greeting().await;
    c.send("/resume #lobby").await;
    c.expect_line("! Usage: /resume [#ROOM SEQ]...").await;
    c.expect_line("Username:").await;
    c.login_after_prompt("alice", common::PASSWORD).await;
    let mut bob = server.login("bob").await;
    c.expect_line("*** bob joined").await;
    bob.send("plain").await;
    c.expect_line("<bob> plain").await;
}
