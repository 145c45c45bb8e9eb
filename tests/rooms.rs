//! Rooms: /join, /part, /rooms, /who in and out of rooms, prefixes, limits, persistence of
//! memberships, takeover, and per-room ordering, over real TLS.

mod common;

use common::{Opts, TestClient, TestServer, spawn_server};
use tlschat::config::RoomLimits;

/// `who` asks /who and expects exactly `reply`: nothing else arrived before it.
async fn expect_nothing_before_who(c: &mut TestClient, reply: &str) {
    c.send("/who").await;
    c.expect_line(reply).await;
}

/// alice and bob in #dev (alice joined second), carol only in #lobby.
async fn dev_room(server: &TestServer) -> (TestClient, TestClient, TestClient) {
    let mut bob = server.login("bob").await;
    bob.send("/join #dev").await;
    bob.expect_line("*** You joined #dev; 1 here: bob").await;
    let mut alice = server.login("alice").await;
    bob.expect_line("*** alice joined").await;
    alice.send("/join #dev").await;
    alice
        .expect_line("*** You joined #dev; 2 here: alice, bob")
        .await;
    bob.expect_line("[#dev] *** alice joined").await;
    let carol = server.login("carol").await;
    alice.expect_line("*** carol joined").await;
    bob.expect_line("*** carol joined").await;
    (alice, bob, carol)
}

#[tokio::test]
async fn join_creates_a_room_and_lists_who_is_there() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    alice.send("/join #dev").await;
    alice
        .expect_line("*** You joined #dev; 1 here: alice")
        .await;
}

#[tokio::test]
async fn the_joiner_does_not_get_its_own_joined_line() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, _bob, _carol) = dev_room(&server).await;
    // Besides carol's login (read by dev_room), nothing reached alice: no line of her own join.
    expect_nothing_before_who(&mut alice, "*** 2 in #dev: alice, bob").await;
}

#[tokio::test]
async fn room_lines_carry_the_prefix_and_reach_only_the_room() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, mut carol) = dev_room(&server).await;
    bob.send("hi").await;
    bob.send("/me waves").await;
    alice.expect_line("[#dev] <bob> hi").await;
    alice.expect_line("[#dev] * bob waves").await;
    expect_nothing_before_who(&mut carol, "*** 3 online: alice, bob, carol").await;
}

#[tokio::test]
async fn lobby_lines_have_no_prefix_and_reach_everyone() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, mut carol) = dev_room(&server).await;
    carol.send("hello all").await;
    alice.expect_line("<carol> hello all").await;
    bob.expect_line("<carol> hello all").await;
}

#[tokio::test]
async fn joining_a_room_again_makes_it_current() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, _carol) = dev_room(&server).await;
    alice.send("/join #lobby").await;
    alice.expect_line("*** Now talking in #lobby").await;
    alice.send("in the lobby").await;
    bob.expect_line("<alice> in the lobby").await;
    alice.send("/join #DEV").await;
    alice.expect_line("*** Now talking in #dev").await;
    alice.send("in dev").await;
    bob.expect_line("[#dev] <alice> in dev").await;
}

#[tokio::test]
async fn room_names_are_matched_in_any_case_and_shown_in_lower_case() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    alice.send("/join #Dev.Team_1").await;
    alice
        .expect_line("*** You joined #dev.team_1; 1 here: alice")
        .await;
}

#[tokio::test]
async fn invalid_room_names_are_refused_and_change_nothing() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    for bad in [
        "/join",
        "/join dev",
        "/join #",
        "/join #_dev",
        "/join #dev extra",
        "/join #dév",
        "/part dev",
        "/who #no way",
    ] {
        alice.send(bad).await;
        alice
            .expect_line("! Invalid room name: use # and 1-32 of a-z 0-9 _ - .")
            .await;
    }
    let long = format!("/join #{}", "a".repeat(33));
    alice.send(&long).await;
    alice
        .expect_line("! Invalid room name: use # and 1-32 of a-z 0-9 _ - .")
        .await;
    alice.send("/rooms").await;
    alice.expect_line("*** 1 room: #lobby (1)").await;
}

#[tokio::test]
async fn part_leaves_the_room_and_the_lobby_becomes_current() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, mut carol) = dev_room(&server).await;
    alice.send("/part").await;
    alice.expect_line("*** You left #dev").await;
    bob.expect_line("[#dev] *** alice left").await;
    alice.send("back here").await;
    carol.expect_line("<alice> back here").await;
    bob.expect_line("<alice> back here").await;
    expect_nothing_before_who(&mut alice, "*** 3 online: alice, bob, carol").await;
}

#[tokio::test]
async fn part_of_a_named_room_keeps_the_current_room() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, _carol) = dev_room(&server).await;
    alice.send("/join #ops").await;
    alice
        .expect_line("*** You joined #ops; 1 here: alice")
        .await;
    alice.send("/part #dev").await;
    alice.expect_line("*** You left #dev").await;
    bob.expect_line("[#dev] *** alice left").await;
    alice.send("/who").await;
    alice.expect_line("*** 1 in #ops: alice").await;
}

#[tokio::test]
async fn the_lobby_cannot_be_left() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    alice.send("/part #lobby").await;
    alice.expect_line("! You cannot leave #lobby").await;
    alice.send("/part").await;
    alice.expect_line("! You cannot leave #lobby").await;
}

#[tokio::test]
async fn parting_a_room_one_is_not_in_is_an_error() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    alice.send("/part #dev").await;
    alice.expect_line("! You are not in #dev").await;
}

#[tokio::test]
async fn rooms_lists_rooms_with_members_online_sorted_with_counts() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, _bob, _carol) = dev_room(&server).await;
    alice.send("/join #random").await;
    alice
        .expect_line("*** You joined #random; 1 here: alice")
        .await;
    alice.send("/rooms").await;
    alice
        .expect_line("*** 3 rooms: #dev (2), #lobby (3), #random (1)")
        .await;
}

#[tokio::test]
async fn who_lists_the_current_room_or_the_named_one() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, _bob, _carol) = dev_room(&server).await;
    alice.send("/who").await;
    alice.expect_line("*** 2 in #dev: alice, bob").await;
    alice.send("/who #lobby").await;
    alice.expect_line("*** 3 online: alice, bob, carol").await;
    alice.send("/who #nobody").await;
    alice.expect_line("*** 0 in #nobody").await;
    alice.send("/join #lobby").await;
    alice.expect_line("*** Now talking in #lobby").await;
    alice.send("/who #DEV").await;
    alice.expect_line("*** 2 in #dev: alice, bob").await;
}

#[tokio::test]
async fn disconnecting_gives_one_left_line_in_the_lobby_only() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, _carol) = dev_room(&server).await;
    alice.send("/quit").await;
    alice.expect_line("*** Bye").await;
    bob.expect_line("*** alice left").await;
    bob.send("/who").await;
    bob.expect_line("*** 1 in #dev: bob").await;
}

#[tokio::test]
async fn takeover_keeps_the_rooms_and_shows_no_flap() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, _carol) = dev_room(&server).await;
    let mut again = server.connect().await;
    again.login("alice", common::PASSWORD).await;
    again
        .expect_line("*** You are in #dev; 2 here: alice, bob")
        .await;
    alice
        .expect_line("! You signed in elsewhere; closing this session")
        .await;
    // Neither a left nor a joined line anywhere, and no catch-up for the new session.
    bob.send("/join #dev").await;
    bob.expect_line("*** Now talking in #dev").await;
    expect_nothing_before_who(&mut bob, "*** 2 in #dev: alice, bob").await;
    expect_nothing_before_who(&mut again, "*** 3 online: alice, bob, carol").await;
}

#[tokio::test]
async fn rooms_are_restored_at_the_next_login() {
    let server = spawn_server(Opts::default()).await;
    let (mut alice, mut bob, _carol) = dev_room(&server).await;
    alice.send("/join #ops").await;
    alice
        .expect_line("*** You joined #ops; 1 here: alice")
        .await;
    alice.send("/quit").await;
    alice.expect_line("*** Bye").await;
    bob.expect_line("*** alice left").await;
    let mut alice = server.login("alice").await;
    alice
        .expect_line("*** You are in #dev; 2 here: alice, bob")
        .await;
    alice
        .expect_line("*** You are in #ops; 1 here: alice")
        .await;
    bob.expect_line("*** alice joined").await;
    bob.expect_line("[#dev] *** alice joined").await;
}

#[tokio::test]
async fn a_parted_room_is_not_restored() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    alice.send("/join #dev").await;
    alice
        .expect_line("*** You joined #dev; 1 here: alice")
        .await;
    alice.send("/part").await;
    alice.expect_line("*** You left #dev").await;
    alice.send("/quit").await;
    alice.expect_line("*** Bye").await;
    let mut alice = server.login("alice").await;
    expect_nothing_before_who(&mut alice, "*** 1 online: alice").await;
}

#[tokio::test]
async fn memberships_survive_a_restart() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = server.login("alice").await;
    alice.send("/join #dev").await;
    alice
        .expect_line("*** You joined #dev; 1 here: alice")
        .await;
    drop(alice);
    let server = server.restart(Opts::default()).await;
    let mut alice = server.login("alice").await;
    alice
        .expect_line("*** You are in #dev; 1 here: alice")
        .await;
}

#[tokio::test]
async fn a_user_may_be_in_at_most_max_rooms_per_user_rooms() {
    let server = spawn_server(Opts {
        rooms: RoomLimits {
            max_rooms_per_user: 2,
            ..RoomLimits::default()
        },
        ..Opts::default()
    })
    .await;
    let mut alice = server.login("alice").await;
    for room in ["#a", "#b"] {
        alice.send(&format!("/join {room}")).await;
        alice
            .expect_line(&format!("*** You joined {room}; 1 here: alice"))
            .await;
    }
    alice.send("/join #c").await;
    alice.expect_line("! Too many rooms (max 2)").await;
    alice.send("/who").await;
    alice.expect_line("*** 1 in #b: alice").await;
}

#[tokio::test]
async fn the_server_holds_at_most_max_rooms_rooms_with_members() {
    let server = spawn_server(Opts {
        rooms: RoomLimits {
            max_rooms: 2,
            ..RoomLimits::default()
        },
        ..Opts::default()
    })
    .await;
    let mut alice = server.login("alice").await;
    alice.send("/join #a").await;
    alice.expect_line("*** You joined #a; 1 here: alice").await;
    alice.send("/join #b").await;
    alice.expect_line("! Too many rooms on this server").await;
    // An existing room can still be joined.
    let mut bob = server.login("bob").await;
    bob.send("/join #a").await;
    bob.expect_line("*** You joined #a; 2 here: alice, bob")
        .await;
}

#[tokio::test]
async fn every_member_of_a_room_sees_its_events_in_one_order() {
    let server = spawn_server(Opts::default()).await;
    let names = ["alice", "bob", "carol"];
    let mut clients = Vec::new();
    for name in names {
        let mut c = server.login(name).await;
        for room in ["#one", "#two"] {
            c.send(&format!("/join {room}")).await;
            c.wait_for_start(&format!("*** You joined {room};")).await;
        }
        clients.push(c);
    }
    // dave reads both rooms without talking.
    let mut dave = server.login("dave").await;
    for room in ["#one", "#two"] {
        dave.send(&format!("/join {room}")).await;
        dave.wait_for_start(&format!("*** You joined {room};"))
            .await;
    }
    const LINES: usize = 100;
    let mut senders = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        senders.push(tokio::spawn(async move {
            for n in 0..LINES {
                let room = if n % 2 == 0 { "#one" } else { "#two" };
                c.send(&format!("/join {room}")).await;
                c.send(&format!("m{i}-{n}")).await;
            }
            c
        }));
    }
    let mut clients = Vec::new();
    for s in senders {
        clients.push(s.await.unwrap());
    }
    // Each member's view of a room, in arrival order.
    let mut views: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    let mut readers: Vec<TestClient> = clients;
    readers.push(dave);
    for (i, c) in readers.iter_mut().enumerate() {
        let others = if i < names.len() { 2 } else { 3 };
        let (mut one, mut two) = (Vec::new(), Vec::new());
        while one.len() + two.len() < others * LINES {
            let line = c.next_line().await;
            if let Some(rest) = line.strip_prefix("[#one] <") {
                one.push(rest.to_owned());
            } else if let Some(rest) = line.strip_prefix("[#two] <") {
                two.push(rest.to_owned());
            }
        }
        views.push((one, two));
    }
    // Every member's view of a room is the full order with its own lines taken out.
    let (full_one, full_two) = views.last().unwrap().clone();
    for (i, (one, two)) in views.iter().enumerate().take(names.len()) {
        let own = format!("{}> ", names[i]);
        let expect = |full: &Vec<String>| -> Vec<String> {
            full.iter()
                .filter(|l| !l.starts_with(&own))
                .cloned()
                .collect()
        };
        assert_eq!(*one, expect(&full_one), "{} in #one", names[i]);
        assert_eq!(*two, expect(&full_two), "{} in #two", names[i]);
    }
}

#[tokio::test]
async fn who_agrees_with_the_joined_and_left_lines_before_it() {
    let server = spawn_server(Opts {
        users: vec!["alice", "bob", "carol", "dave", "erin", "frank"],
        ..Opts::default()
    })
    .await;
    let mut alice = server.login("alice").await;
    alice.send("/join #dev").await;
    alice
        .expect_line("*** You joined #dev; 1 here: alice")
        .await;
    let churners: Vec<_> = ["bob", "carol", "dave", "erin", "frank"]
        .into_iter()
        .map(|name| {
            let server_addr = server.addr;
            let connector = server.connector.clone();
            tokio::spawn(async move {
                let mut c = TestClient::connect(server_addr, &connector).await;
                c.login(name, common::PASSWORD).await;
                for _ in 0..10 {
                    c.send("/join #dev").await;
                    c.wait_for_start("*** You joined #dev;").await;
                    c.send("/part #dev").await;
                    c.wait_for("*** You left #dev").await;
                }
                c
            })
        })
        .collect();
    // alice asks /who over and over while the others come and go; every reply must list
    // exactly the members the lines before it imply.
    let mut here: std::collections::BTreeSet<String> = ["alice".to_owned()].into();
    let mut replies = 0;
    let mut asked = 0;
    let mut done = false;
    while !done || replies < asked {
        if !done && asked - replies < 3 {
            alice.send("/who").await;
            asked += 1;
        }
        let line =
            tokio::time::timeout(std::time::Duration::from_millis(200), alice.next_line()).await;
        let Ok(line) = line else {
            done = churners.iter().all(|c| c.is_finished());
            continue;
        };
        if let Some(name) = line
            .strip_prefix("[#dev] *** ")
            .and_then(|l| l.strip_suffix(" joined"))
        {
            here.insert(name.to_owned());
        } else if let Some(name) = line
            .strip_prefix("[#dev] *** ")
            .and_then(|l| l.strip_suffix(" left"))
        {
            here.remove(name);
        } else if let Some((count, names)) = line
            .strip_prefix("*** ")
            .and_then(|l| l.split_once(" in #dev: "))
        {
            let listed: std::collections::BTreeSet<String> =
                names.split(", ").map(str::to_owned).collect();
            assert_eq!(count.parse::<usize>().unwrap(), listed.len());
            assert_eq!(listed, here, "/who disagrees with the lines before it");
            replies += 1;
        }
        if !done {
            done = churners.iter().all(|c| c.is_finished());
        }
    }
    assert!(replies > 0);
    for c in churners {
        c.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_is_read_while_ten_senders_flood_the_members_rooms() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let names: Vec<&'static str> = (0..10)
        .map(|i| &*Box::leak(format!("sender{i}").into_boxed_str()))
        .collect();
    let mut limits = common::test_limits();
    // Nobody is evicted: the flood must keep alice's queue busy, not end her session.
    limits.outbound_queue_bytes = 256 * 1024 * 1024;
    limits.rate_burst = 1_000_000;
    limits.rate_per_sec = 1_000_000.0;
    let mut users = names.clone();
    users.push("alice");
    let server = spawn_server(Opts {
        users,
        limits,
        ..Opts::default()
    })
    .await;
    let alice = server.login("alice").await;
    let stop = Arc::new(AtomicBool::new(false));
    let flood_began = std::time::Instant::now();
    let mut tasks = Vec::new();
    for name in &names {
        let (mut reader, mut writer) = server.login(name).await.split();
        let stop = Arc::clone(&stop);
        // Each sender drains what it receives and floods #lobby, for at most 30 s.
        tasks.push(tokio::spawn(async move {
            let mut sink = vec![0u8; 64 * 1024];
            while reader.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        }));
        tasks.push(tokio::spawn(async move {
            let batch = "flooding the room with one more line\n".repeat(100);
            let until = std::time::Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
                if writer.write_all(batch.as_bytes()).await.is_err() {
                    break;
                }
            }
        }));
    }
    let (mut reader, mut writer) = alice.split();
    tokio::spawn(async move {
        let mut sink = vec![0u8; 64 * 1024];
        while reader.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    });
    // Wait until the flood reaches alice's session (her queue is never empty from here on).
    let deliveries = || server.ctx.metrics.deliveries.load(Ordering::Relaxed);
    let started = deliveries();
    common::wait_until("the flood to start", common::STEP, || {
        deliveries() > started + 20_000
    })
    .await;
    writer.write_all(b"/quit\n").await.unwrap();
    writer.flush().await.unwrap();
    // Generous for a loaded machine (about 2 s here); a member loop that prefers its queue
    // never reads the line while the flood lasts (30 s).
    common::wait_until("alice's /quit to be read", Duration::from_secs(10), || {
        server.ctx.room.presence().find("alice").is_none()
    })
    .await;
    assert!(
        flood_began.elapsed() < Duration::from_secs(30),
        "the flood was over when /quit was read"
    );
    assert_eq!(
        server
            .ctx
            .metrics
            .evictions_send_queue
            .load(Ordering::Relaxed),
        0,
        "alice left by /quit, not by eviction"
    );
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
}
