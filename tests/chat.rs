//! Relay, commands, presence, ordering and hostile text, over real TLS.

mod common;

use common::{Opts, TestClient, TestServer, spawn_server};

/// alice, bob and carol online, with all join notices consumed.
async fn three_members(server: &TestServer) -> (TestClient, TestClient, TestClient) {
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.expect_line("*** bob joined").await;
    let carol = server.login("carol").await;
    alice.expect_line("*** carol joined").await;
    bob.expect_line("*** carol joined").await;
    (alice, bob, carol)
}

/// The sender's next line must be the answer to /who, proving nothing else came first.
async fn expect_nothing_before_who(c: &mut TestClient, online: &str) {
    c.send("/who").await;
    c.expect_line(online).await;
}

const ALL3: &str = "*** 3 online: alice, bob, carol";

#[tokio::test]
async fn line_is_relayed_to_every_other_member_but_not_the_sender() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, mut carol) = three_members(&server).await;
    alice.send("hello room").await;
    bob.expect_line("<alice> hello room").await;
    carol.expect_line("<alice> hello room").await;
    expect_nothing_before_who(&mut alice, ALL3).await;
}

#[tokio::test]
async fn empty_lines_are_ignored() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, _carol) = three_members(&server).await;
    alice.send("").await;
    alice.send("after").await;
    bob.expect_line("<alice> after").await;
}

#[tokio::test]
async fn double_slash_sends_text_with_one_slash_removed() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, _carol) = three_members(&server).await;
    alice.send("//who is there").await;
    bob.expect_line("<alice> /who is there").await;
}

#[tokio::test]
async fn who_lists_everyone_sorted_case_insensitively() {
    let server = spawn_server(Opts {
        users: vec!["Zed", "alice", "Bob"],
        ..Opts::default()
    })
    .await;
    let mut zed = server.login("zed").await;
    let _alice = server.login("alice").await;
    let _bob = server.login("bob").await;
    zed.wait_for("*** Bob joined").await;
    zed.send("/who").await;
    zed.expect_line("*** 3 online: alice, Bob, Zed").await;
}

#[tokio::test]
async fn me_sends_an_action_to_the_others() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, mut carol) = three_members(&server).await;
    alice.send("/me waves").await;
    bob.expect_line("* alice waves").await;
    carol.expect_line("* alice waves").await;
    expect_nothing_before_who(&mut alice, ALL3).await;
}

#[tokio::test]
async fn msg_reaches_only_the_target_and_confirms_to_the_sender() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, mut carol) = three_members(&server).await;
    alice.send("/msg BOB hi there").await;
    alice.expect_line("-> *bob* hi there").await;
    bob.expect_line("*alice* hi there").await;
    expect_nothing_before_who(&mut carol, ALL3).await;
}

#[tokio::test]
async fn msg_with_only_invisible_text_is_a_usage_error_and_relays_nothing() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, _carol) = three_members(&server).await;
    alice.send("/msg bob \u{200B}\u{2060}\u{200D}").await;
    alice.expect_line("! Usage: /msg NAME TEXT").await;
    expect_nothing_before_who(&mut bob, ALL3).await;
}

#[tokio::test]
async fn msg_to_someone_not_online_is_an_error() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    alice.send("/msg dave hello").await;
    alice.expect_line("! dave is not online").await;
}

#[tokio::test]
async fn help_lists_the_commands() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    alice.send("/help").await;
    let mut lines = Vec::new();
    for _ in 0..14 {
        lines.push(alice.next_line().await);
    }
    assert!(lines.iter().all(|l| l.starts_with("*** ")), "{lines:?}");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("*** Any other line is sent to everyone else in the current room.")
    );
    let text = lines.join("\n");
    for cmd in [
        "/who", "/me", "/msg", "/join", "/part", "/rooms", "/history", "/cert", "/quit", "/help",
    ] {
        assert!(text.contains(cmd), "{cmd} missing from {text}");
    }
}

#[tokio::test]
async fn unknown_command_is_reported() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    alice.send("/frobnicate now").await;
    alice
        .expect_line("! Unknown command /frobnicate (try /help)")
        .await;
}

#[tokio::test]
async fn quit_says_bye_closes_and_others_see_left_with_reason() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, mut carol) = three_members(&server).await;
    alice.send("/quit off to lunch").await;
    alice.expect_line("*** Bye").await;
    assert!(alice.expect_closed().await.is_empty());
    bob.expect_line("*** alice left (off to lunch)").await;
    carol.expect_line("*** alice left (off to lunch)").await;
}

#[tokio::test]
async fn quit_without_reason_announces_plain_left() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.expect_line("*** bob joined").await;
    bob.send("/quit").await;
    bob.expect_line("*** Bye").await;
    alice.expect_line("*** bob left").await;
}

#[tokio::test]
async fn abrupt_disconnect_is_announced_as_left() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    let bob = server.login("bob").await;
    alice.expect_line("*** bob joined").await;
    drop(bob);
    alice.expect_line("*** bob left").await;
}

#[tokio::test]
async fn crlf_lines_are_relayed_without_the_cr() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, _carol) = three_members(&server).await;
    alice.send_raw(b"windows line\r\n").await;
    bob.expect_line("<alice> windows line").await;
}

#[tokio::test]
async fn control_characters_and_ansi_escapes_never_reach_others() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, _carol) = three_members(&server).await;
    alice.send("\x1b[31mred\x1b[0m\x07 and\ttab\u{9b}2J").await;
    bob.expect_line("<alice> [31mred[0m and\ttab2J").await;
    alice.send("/me \x1b]0;title\x07waves").await;
    bob.expect_line("* alice ]0;titlewaves").await;
    alice.send("/msg bob \x1bc\x08reset").await;
    bob.expect_line("*alice* creset").await;
    alice.send("/quit \x1b[2Jgone\x7f").await;
    bob.expect_line("*** alice left ([2Jgone)").await;
}

#[tokio::test]
async fn line_with_only_control_characters_is_not_relayed() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, _carol) = three_members(&server).await;
    alice.send("\x1b\x07").await;
    alice.send("visible").await;
    bob.expect_line("<alice> visible").await;
}

#[tokio::test]
async fn overlong_line_is_rejected_and_the_next_line_still_works() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, _carol) = three_members(&server).await;
    alice.send(&"x".repeat(4097)).await;
    alice.expect_line("! Line too long (max 4096 bytes)").await;
    let exact = "y".repeat(4096);
    alice.send(&exact).await;
    alice.send("short").await;
    bob.expect_line(&format!("<alice> {exact}")).await;
    bob.expect_line("<alice> short").await;
}

#[tokio::test]
async fn invalid_utf8_is_reported_and_the_session_continues() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, _carol) = three_members(&server).await;
    alice.send_raw(b"bad \xff\xfe bytes\n").await;
    alice.expect_line("! Invalid UTF-8").await;
    alice.send("good").await;
    bob.expect_line("<alice> good").await;
}

#[tokio::test]
async fn every_member_sees_room_events_in_the_same_order() {
    const LINES: usize = 500;
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, mut carol) = three_members(&server).await;
    let send_all = |mut c: TestClient, tag: &'static str| async move {
        for i in 0..LINES {
            c.send(&format!("{tag} {i}")).await;
        }
        c
    };
    let (a, b) = tokio::join!(
        tokio::spawn(send_all(alice, "a")),
        tokio::spawn(send_all(bob, "b"))
    );
    alice = a.unwrap();
    bob = b.unwrap();
    let mut carol_seen = Vec::new();
    for _ in 0..2 * LINES {
        carol_seen.push(carol.next_line().await);
    }
    // alice sees only bob's lines and bob only alice's; each must be carol's order filtered.
    let mut alice_seen = Vec::new();
    for _ in 0..LINES {
        alice_seen.push(alice.next_line().await);
    }
    let mut bob_seen = Vec::new();
    for _ in 0..LINES {
        bob_seen.push(bob.next_line().await);
    }
    let from = |who: &str| -> Vec<String> {
        carol_seen
            .iter()
            .filter(|l| l.starts_with(&format!("<{who}>")))
            .cloned()
            .collect()
    };
    assert_eq!(alice_seen, from("bob"));
    assert_eq!(bob_seen, from("alice"));
    let expected_bob: Vec<String> = (0..LINES).map(|i| format!("<bob> b {i}")).collect();
    assert_eq!(from("bob"), expected_bob, "per-sender order");
    // A join now is one event after all of them, seen last by everyone.
    let _dave = server.login("dave").await;
    for c in [&mut alice, &mut bob, &mut carol] {
        c.expect_line("*** dave joined").await;
    }
}

#[tokio::test]
async fn who_agrees_with_the_joined_and_left_lines_before_it_while_members_come_and_go() {
    use std::collections::BTreeSet;
    let server = std::sync::Arc::new(
        spawn_server(Opts {
            users: vec!["alice", "bob", "carol", "dave", "erin"],
            ..Opts::default()
        })
        .await,
    );
    let mut alice = server.login("alice").await;
    let mut roster: BTreeSet<String> = BTreeSet::from(["alice".to_owned()]);
    let mut churn = Vec::new();
    for name in ["bob", "carol", "dave", "erin"] {
        let server = std::sync::Arc::clone(&server);
        churn.push(tokio::spawn(async move {
            for _ in 0..15 {
                let mut c = server.login(name).await;
                c.send("/quit").await;
                c.wait_for("*** Bye").await;
            }
        }));
    }
    let mut checked = 0;
    while !churn.iter().all(|t| t.is_finished()) || checked < 20 {
        assert!(checked < 10_000, "churn never finished");
        alice.send("/who").await;
        loop {
            let line = alice.next_line().await;
            if let Some(name) = line
                .strip_prefix("*** ")
                .and_then(|l| l.strip_suffix(" joined"))
            {
                roster.insert(name.to_owned());
            } else if let Some(rest) = line.strip_prefix("*** ").filter(|l| l.contains(" left")) {
                roster.remove(rest.split(' ').next().unwrap());
            } else if let Some((count, names)) = line
                .strip_prefix("*** ")
                .and_then(|l| l.split_once(" online: "))
            {
                let listed: BTreeSet<String> = names.split(", ").map(str::to_owned).collect();
                assert_eq!(listed, roster, "/who disagrees with the lines before it");
                assert_eq!(count.parse::<usize>().unwrap(), roster.len());
                checked += 1;
                break;
            } else {
                panic!("unexpected line {line:?}");
            }
        }
    }
    for t in churn {
        t.await.unwrap();
    }
}
