//! Several nodes, one chat: three servers sharing a private redis-server (rooms' streams,
//! presence) and a private PostgreSQL (accounts, memberships, read positions), each client on
//! its own node over real TLS. Skips when either program is missing (unless
//! `TLSCHAT_REQUIRE_ALL=1`).

mod common;

use common::connect::{Connect, bobs_numbers};
use common::pg::Postgres;
use common::redis::Redis;
use common::{Opts, TestClient, TestServer, spawn_server};

/// Redis, PostgreSQL and `n` nodes named n1, n2, …
struct Cluster {
    nodes: Vec<TestServer>,
    redis: Redis,
    pg: Postgres,
}

async fn cluster(n: usize) -> Option<Cluster> {
    cluster_on(n, Redis::start()?).await
}

async fn cluster_on(n: usize, redis: Redis) -> Option<Cluster> {
    cluster_with(n, redis, common::test_limits()).await
}

async fn cluster_with(n: usize, redis: Redis, limits: tlschat::config::Limits) -> Option<Cluster> {
    let rooms = tlschat::config::RoomLimits {
        history: tlschat::config::HistoryMode::Redis,
        ..Default::default()
    };
    cluster_of(n, redis, limits, rooms).await
}

async fn cluster_of(
    n: usize,
    redis: Redis,
    limits: tlschat::config::Limits,
    rooms: tlschat::config::RoomLimits,
) -> Option<Cluster> {
    let pg = Postgres::start()?;
    let mut nodes = Vec::new();
    for i in 1..=n {
        nodes.push(
            spawn_server(Opts {
                db_url: Some(pg.url.clone()),
                cluster: Some((redis.url.clone(), format!("n{i}"))),
                limits: limits.clone(),
                rooms,
                ..Opts::default()
            })
            .await,
        );
    }
    Some(Cluster { nodes, redis, pg })
}

impl Cluster {
    async fn login(&self, node: usize, name: &str) -> TestClient {
        self.nodes[node - 1].login(name).await
    }
}

/// bob on node 2, then alice on node 1, in #lobby only; bob has read alice's joined line.
async fn lobby_pair(cluster: &Cluster) -> (TestClient, TestClient) {
    let mut bob = cluster.login(2, "bob").await;
    let alice = cluster.login(1, "alice").await;
    bob.expect_line("*** alice joined").await;
    (alice, bob)
}

/// carol tries to log in on `node` and must get `! Server busy, try again later`.
async fn login_is_busy(node: &TestServer) {
    let mut carol = node.connect().await;
    carol.expect_greeting().await;
    carol.send("carol").await;
    carol.expect_line("Password:").await;
    carol.send(common::PASSWORD).await;
    carol.expect_line("! Server busy, try again later").await;
    carol.expect_closed().await;
}

/// bob on node 2 and then alice on node 1 in #dev, every presence line read.
async fn two_in_dev(cluster: &Cluster) -> (TestClient, TestClient) {
    let mut bob = cluster.login(2, "bob").await;
    join(&mut bob, "#dev", "*** You joined #dev; 1 here: bob").await;
    let mut alice = cluster.login(1, "alice").await;
    bob.expect_line("*** alice joined").await;
    join(
        &mut alice,
        "#dev",
        "*** You joined #dev; 2 here: alice, bob",
    )
    .await;
    bob.expect_line("[#dev] *** alice joined").await;
    (alice, bob)
}

/// `name` joins `room` and reads its reply (which must start as given).
async fn join(c: &mut TestClient, room: &str, reply_start: &str) {
    c.send(&format!("/join {room}")).await;
    let line = c.wait_for_start("*** You joined").await;
    assert!(line.starts_with(reply_start), "{line}");
}

#[tokio::test]
async fn the_welcome_and_who_list_the_members_of_every_node() {
    let Some(cluster) = cluster(3).await else {
        return;
    };
    let mut alice = cluster.login(1, "alice").await;
    let mut bob = cluster.login(2, "bob").await;
    alice.expect_line("*** bob joined").await;
    let carol = cluster.login(3, "carol").await;
    assert_eq!(
        carol.welcome,
        "*** Welcome, carol! 3 online: alice, bob, carol"
    );
    alice.expect_line("*** carol joined").await;
    bob.expect_line("*** carol joined").await;
    bob.send("/who").await;
    bob.expect_line("*** 3 online: alice, bob, carol").await;
}

#[tokio::test]
async fn lines_from_three_nodes_reach_every_member_in_one_order_per_room() {
    let Some(cluster) = cluster(3).await else {
        return;
    };
    let mut senders = Vec::new();
    let mut readers = Vec::new();
    for (node, name) in [(1, "alice"), (2, "bob"), (3, "carol")] {
        let mut c = cluster.login(node, name).await;
        join(&mut c, "#dev", "*** You joined #dev").await;
        senders.push(c);
    }
    // dave reads on node 1, in #dev; nobody else's lines are his.
    let mut dave = cluster.login(1, "dave").await;
    join(
        &mut dave,
        "#dev",
        "*** You joined #dev; 4 here: alice, bob, carol, dave",
    )
    .await;
    readers.push(dave);
    for round in 0..10 {
        for (i, s) in senders.iter_mut().enumerate() {
            s.send(&format!("line {round} from {i}")).await;
        }
    }
    let dave_saw = read_chat(&mut readers[0], 30).await;
    // Each sender sees the others' 20 lines in the same relative order as dave.
    for (i, s) in senders.iter_mut().enumerate() {
        let saw = read_chat(s, 20).await;
        let expected: Vec<String> = dave_saw
            .iter()
            .filter(|l| !l.ends_with(&format!("from {i}")))
            .cloned()
            .collect();
        assert_eq!(saw, expected, "sender {i}");
    }
    // Each sender's own lines in the order sent.
    for i in 0..3 {
        let own: Vec<&String> = dave_saw
            .iter()
            .filter(|l| l.ends_with(&format!("from {i}")))
            .collect();
        let rounds: Vec<String> = own
            .iter()
            .map(|l| l.split(' ').nth(2).unwrap().to_owned())
            .collect();
        let sorted: Vec<String> = (0..10).map(|r| r.to_string()).collect();
        assert_eq!(rounds, sorted);
    }
}

/// The next `n` chat lines of #dev (presence lines skipped).
async fn read_chat(c: &mut TestClient, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let line = c.next_line().await;
        if let Some(rest) = line.strip_prefix("[#dev] <") {
            out.push(rest.to_owned());
        }
    }
    out
}

/// A sender does not wait for each line's append: a burst longer than the lines a member may
/// have in flight arrives whole and in order, and the sender's own lines count as read.
#[tokio::test]
async fn a_burst_of_lines_arrives_in_order_and_counts_as_read_by_its_sender() {
    let Some(cluster) = cluster(2).await else {
        return;
    };
    let (mut alice, mut bob) = two_in_dev(&cluster).await;
    let burst: String = (1..=200).map(|i| format!("b{i}\n")).collect();
    alice.send_raw(burst.as_bytes()).await;
    let got = read_chat(&mut bob, 200).await;
    let want: Vec<String> = (1..=200).map(|i| format!("alice> b{i}")).collect();
    assert_eq!(got, want);
    alice.send("/quit").await;
    alice.expect_line("*** Bye").await;
    bob.wait_for("*** alice left").await;
    let mut again = cluster.login(2, "alice").await;
    again
        .expect_line("*** You are in #dev; 2 here: alice, bob")
        .await;
    bob.send("after").await;
    again.expect_line("[#dev] <bob> after").await;
}

/// A client that closes right after a burst: its own lines, still on their way through Redis
/// as it closes, count as read once they are delivered.
#[tokio::test]
async fn a_sender_that_closes_after_a_burst_does_not_see_its_own_lines_again() {
    let Some(cluster) = cluster(2).await else {
        return;
    };
    let (mut alice, mut bob) = two_in_dev(&cluster).await;
    let burst: String = (1..=100).map(|i| format!("b{i}\n")).collect();
    alice.send_raw(burst.as_bytes()).await;
    drop(alice);
    assert_eq!(read_chat(&mut bob, 100).await.len(), 100);
    bob.wait_for("*** alice left").await;
    let mut again = cluster.login(2, "alice").await;
    again
        .expect_line("*** You are in #dev; 2 here: alice, bob")
        .await;
    bob.send("after").await;
    again.expect_line("[#dev] <bob> after").await;
}

#[tokio::test]
async fn rooms_lists_the_rooms_of_every_node() {
    let Some(cluster) = cluster(2).await else {
        return;
    };
    let (mut alice, mut bob) = lobby_pair(&cluster).await;
    join(&mut alice, "#a", "*** You joined #a; 1 here: alice").await;
    join(&mut bob, "#b", "*** You joined #b; 1 here: bob").await;
    bob.send("/rooms").await;
    bob.expect_line("*** 3 rooms: #a (1), #b (1), #lobby (2)")
        .await;
    alice.send("/part #a").await;
    alice.expect_line("*** You left #a").await;
    bob.send("/rooms").await;
    bob.expect_line("*** 2 rooms: #b (1), #lobby (2)").await;
}

/// Two nodes with `max_rooms` and `max_rooms_per_user` (`usize::MAX`: the default).
async fn two_with_room_limits(max_rooms: usize, per_user: usize) -> Option<Cluster> {
    let defaults = tlschat::config::RoomLimits::default();
    let rooms = tlschat::config::RoomLimits {
        history: tlschat::config::HistoryMode::Redis,
        max_rooms,
        max_rooms_per_user: per_user.min(defaults.max_rooms_per_user),
        ..defaults
    };
    cluster_of(2, Redis::start()?, common::test_limits(), rooms).await
}

#[tokio::test]
async fn max_rooms_counts_the_rooms_of_every_node() {
    let Some(cluster) = two_with_room_limits(2, usize::MAX).await else {
        return;
    };
    let (mut alice, mut bob) = lobby_pair(&cluster).await;
    join(&mut alice, "#a", "*** You joined #a; 1 here: alice").await;
    bob.send("/join #b").await;
    bob.expect_line("! Too many rooms on this server").await;
    // A room in use elsewhere is no new room.
    join(&mut bob, "#a", "*** You joined #a; 2 here: alice, bob").await;
}

#[tokio::test]
async fn two_nodes_opening_the_last_free_room_at_once_get_it_only_once() {
    let Some(cluster) = two_with_room_limits(2, usize::MAX).await else {
        return;
    };
    let (mut alice, mut bob) = lobby_pair(&cluster).await;
    // #lobby is one of the 2; both ask for the other at the same moment.
    tokio::join!(alice.send("/join #a"), bob.send("/join #b"));
    let (a, b) = tokio::join!(join_outcome(&mut alice), join_outcome(&mut bob));
    let mut outcomes = [a, b];
    outcomes.sort();
    assert_eq!(
        outcomes,
        ["! Too many rooms on this server", "*** You joined"],
        "exactly one of them got the last room"
    );
}

#[tokio::test]
async fn a_room_a_member_could_not_join_does_not_count_against_max_rooms() {
    let Some(cluster) = two_with_room_limits(3, 1).await else {
        return;
    };
    let (mut alice, mut bob) = lobby_pair(&cluster).await;
    join(&mut alice, "#a", "*** You joined #a; 1 here: alice").await;
    alice.send("/join #b").await;
    alice.expect_line("! Too many rooms (max 1)").await;
    // #lobby, #a and now #c: #b, refused to alice, was given back.
    join(&mut bob, "#c", "*** You joined #c; 1 here: bob").await;
}

/// What a `/join` got: `*** You joined` or the line that refused it.
async fn join_outcome(c: &mut TestClient) -> &'static str {
    loop {
        let line = c.next_line().await;
        if line.starts_with("*** You joined") {
            return "*** You joined";
        }
        if line == "! Too many rooms on this server" {
            return "! Too many rooms on this server";
        }
    }
}

#[tokio::test]
async fn a_private_message_reaches_another_node() {
    let Some(cluster) = cluster(2).await else {
        return;
    };
    let (mut alice, mut bob) = lobby_pair(&cluster).await;
    alice.send("/msg BOB psst").await;
    alice.expect_line("-> *bob* psst").await;
    bob.expect_line("*alice* psst").await;
    alice.send("/msg zed hello").await;
    alice.expect_line("! zed is not online").await;
}

#[tokio::test]
async fn join_history_and_history_come_from_the_shared_log_on_every_node() {
    let Some(cluster) = cluster(2).await else {
        return;
    };
    let mut alice = cluster.login(1, "alice").await;
    join(&mut alice, "#dev", "*** You joined #dev; 1 here: alice").await;
    for i in 1..=3 {
        alice.send(&format!("m{i}")).await;
    }
    alice.send("/history 2").await;
    alice.expect_line("*** History of #dev: 2 messages").await;
    alice.wait_for("*** End of history").await;
    let mut bob = cluster.login(2, "bob").await;
    alice.expect_line("*** bob joined").await;
    join(&mut bob, "#dev", "*** You joined #dev; 2 here: alice, bob").await;
    bob.expect_line("*** History of #dev: 3 messages").await;
    assert_eq!(
        common::block(&mut bob).await,
        ["<alice> m1", "<alice> m2", "<alice> m3"]
    );
    alice.expect_line("[#dev] *** bob joined").await;
    bob.send("m4").await;
    alice.expect_line("[#dev] <bob> m4").await;
    bob.send("/part").await;
    bob.expect_line("*** You left #dev").await;
    alice.expect_line("[#dev] *** bob left").await;
    alice.send("/who").await;
    alice.expect_line("*** 1 in #dev: alice").await;
}

/// bob says `line` in #dev, alice reads it and quits (her position there is stored), and bob
/// sees her leave.
async fn quits_after_reading(mut alice: TestClient, bob: &mut TestClient, line: &str) {
    bob.send(line).await;
    alice.expect_line(&format!("[#dev] <bob> {line}")).await;
    alice.send("/quit").await;
    alice.expect_line("*** Bye").await;
    bob.wait_for("*** alice left").await;
}

#[tokio::test]
async fn rooms_and_catch_up_follow_the_user_to_another_node() {
    let Some(cluster) = cluster(2).await else {
        return;
    };
    let (alice, mut bob) = two_in_dev(&cluster).await;
    quits_after_reading(alice, &mut bob, "seen").await;
    bob.send("missed 1").await;
    bob.send("missed 2").await;
    // bob's lines are in the log once his own next reply arrives.
    bob.send("/history 1").await;
    bob.wait_for("*** End of history").await;
    let mut again = cluster.login(2, "alice").await;
    again
        .expect_line("*** You are in #dev; 2 here: alice, bob")
        .await;
    again
        .expect_line("*** You missed 2 messages in #dev:")
        .await;
    assert_eq!(
        common::block(&mut again).await,
        ["<bob> missed 1", "<bob> missed 2"]
    );
}

#[tokio::test]
async fn a_login_on_another_node_takes_the_session_over_without_a_flap() {
    let Some(cluster) = cluster(2).await else {
        return;
    };
    let (mut alice, mut bob) = two_in_dev(&cluster).await;
    let again = cluster.login(2, "ALICE").await;
    assert_eq!(again.welcome, "*** Welcome, alice! 2 online: alice, bob");
    alice
        .expect_line("! You signed in elsewhere; closing this session")
        .await;
    alice.expect_closed().await;
    // Neither a left nor a joined line reached bob, and alice is listed once.
    bob.send("/who").await;
    bob.expect_line("*** 2 in #dev: alice, bob").await;
    bob.send("/join #lobby").await;
    bob.expect_line("*** Now talking in #lobby").await;
    bob.send("/who").await;
    bob.expect_line("*** 2 online: alice, bob").await;
}

#[tokio::test]
async fn a_takeover_on_another_node_catches_up_from_what_the_old_peer_read() {
    let Some(cluster) = cluster(2).await else {
        return;
    };
    let (alice, mut bob) = two_in_dev(&cluster).await;
    // alice's position in #dev is stored (at logout) before bob's line.
    quits_after_reading(alice, &mut bob, "first").await;
    let mut alice = cluster.login(1, "alice").await;
    alice
        .expect_line("*** You are in #dev; 2 here: alice, bob")
        .await;
    bob.wait_for("*** alice joined").await;
    bob.send("read by alice").await;
    alice.expect_line("[#dev] <bob> read by alice").await;
    // At once, well before the old session saves its positions by itself: the new one
    // starts from what the old one's peer acknowledged, not from the stored position.
    let mut again = cluster.login(2, "alice").await;
    again
        .expect_line("*** You are in #dev; 2 here: alice, bob")
        .await;
    alice
        .expect_line("! You signed in elsewhere; closing this session")
        .await;
    bob.send("live").await;
    again.expect_line("[#dev] <bob> live").await;
}

/// `tlschat connect` moved from one node to another (its connection reset, the address now
/// leading to the other node) while 300 lines flow: it logs in there, catches up, and shows
/// every line once, in order.
#[tokio::test]
async fn tlschat_connect_moved_to_another_node_shows_each_line_once_in_order() {
    let Some(cluster) = cluster(2).await else {
        return;
    };
    let (one, two) = (&cluster.nodes[0], &cluster.nodes[1]);
    let proxy = common::proxy::Proxy::start(one.addr).await;
    let dir = tempfile::tempdir().unwrap();
    // Both nodes' (self-signed) certificates are trusted.
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, format!("{}{}", one.cert_pem, two.cert_pem)).unwrap();
    let mut bob = cluster.login(2, "bob").await;
    let mut c = Connect::start(
        dir.path(),
        proxy.addr,
        &[
            "--user",
            "alice",
            "--password-stdin",
            "--ca",
            ca.to_str().unwrap(),
        ],
    );
    c.send(common::PASSWORD).await;
    c.wait_for("*** Welcome, alice! 2 online: alice, bob").await;
    bob.wait_for("*** alice joined").await;
    for i in 1..=150 {
        bob.send(&format!("n{i}")).await;
    }
    let mut shown = Vec::new();
    c.read_until_ending("<bob> n50", &mut shown, common::STEP)
        .await;
    proxy.restore(two.addr);
    proxy.reset_all();
    for i in 151..=300 {
        bob.send(&format!("n{i}")).await;
    }
    c.read_until_ending("<bob> n300", &mut shown, common::STEP * 2)
        .await;
    assert!(
        shown.iter().any(|l| l.starts_with("*** You missed ")),
        "no catch-up on the other node: {shown:?}"
    );
    assert_eq!(bobs_numbers(&shown), (1..=300).collect::<Vec<_>>());
}

/// The real binary as a cluster node named `name`, in `dir`, on `pg` and `redis`.
fn node(dir: &std::path::Path, pg: &Postgres, redis: &Redis, name: &str) -> common::bin::Serve {
    common::bin::serve_on(
        dir,
        &pg.url,
        &[
            "--cluster",
            &redis.url,
            "--node-name",
            name,
            "--admin-socket",
            "off",
        ],
        &[],
    )
}

/// `tlschat serve ARGS` that must fail; its output.
fn refused(dir: &std::path::Path, args: &[&str]) -> String {
    let out = common::bin::tlschat(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve started with {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn cluster_mode_refuses_a_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let said = refused(dir.path(), &["--cluster", "redis://127.0.0.1:1"]);
    assert!(
        said.contains("error: cluster mode needs PostgreSQL: --db must be a postgres:// URL"),
        "{said}"
    );
    let said = refused(
        dir.path(),
        &["--cluster", "redis://127.0.0.1:1", "--db", "chat.db"],
    );
    assert!(said.contains("cluster mode needs PostgreSQL"), "{said}");
}

#[test]
fn history_in_redis_needs_cluster_mode_and_cluster_mode_keeps_history_nowhere_else() {
    let dir = tempfile::tempdir().unwrap();
    let said = refused(dir.path(), &["--history", "redis"]);
    assert!(
        said.contains("error: history = \"redis\" needs cluster mode (--cluster URL)"),
        "{said}"
    );
    let said = refused(
        dir.path(),
        &[
            "--cluster",
            "redis://127.0.0.1:1",
            "--db",
            "postgres://u@127.0.0.1:1/db",
            "--history",
            "sqlite",
        ],
    );
    assert!(
        said.contains("with --cluster, history is kept in Redis: history must be \"redis\" or \"off\", not \"sqlite\""),
        "{said}"
    );
}

#[test]
fn a_node_under_the_name_of_a_live_node_is_refused() {
    let (Some(redis), Some(pg)) = (Redis::start(), Postgres::start()) else {
        return;
    };
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _n1 = node(one.path(), &pg, &redis, "chat-1");
    let said = refused(
        two.path(),
        &[
            "--db",
            &pg.url,
            "--cluster",
            &redis.url,
            "--node-name",
            "chat-1",
        ],
    );
    assert!(said.contains("error: node name chat-1 is in use"), "{said}");
    assert!(!said.contains(common::redis::REDIS_PASSWORD), "{said}");
}

#[tokio::test]
async fn a_node_reaches_redis_over_tls_when_its_certificate_chains_to_cluster_ca() {
    let (Some(redis), Some(pg)) = (Redis::start_tls(), Postgres::start()) else {
        return;
    };
    let (url, ca) = redis.tls.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    add_users(dir.path(), &pg, &["alice"]);
    let ca = ca.to_str().unwrap();
    let args = [
        "--cluster",
        &url,
        "--node-name",
        "n1",
        "--admin-socket",
        "off",
    ];
    let n1 = common::bin::serve_on(
        dir.path(),
        &pg.url,
        &[&args[..], &["--cluster-ca", ca]].concat(),
        &[],
    );
    let mut alice = login_on(&n1, dir.path(), "alice").await;
    alice.send("/rooms").await;
    alice.expect_line("*** 1 room: #lobby (1)").await;
    // Without it the system's roots do not vouch for the self-signed certificate.
    let said = refused(dir.path(), &[&["--db", &pg.url][..], &args].concat());
    assert!(said.contains("certificate"), "{said}");
    assert!(!said.contains(common::redis::REDIS_PASSWORD), "{said}");
}

#[test]
fn cluster_ca_is_refused_for_a_redis_url_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let said = refused(
        dir.path(),
        &[
            "--cluster",
            "redis://127.0.0.1:1",
            "--db",
            "postgres://u@127.0.0.1:1/db",
            "--cluster-ca",
            "ca.pem",
        ],
    );
    assert!(
        said.contains("error: --cluster-ca applies to a rediss:// cluster URL only"),
        "{said}"
    );
}

#[tokio::test]
async fn the_members_of_a_killed_node_are_announced_as_left_and_its_name_is_free_again() {
    let (Some(redis), Some(pg)) = (Redis::start(), Postgres::start()) else {
        return;
    };
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    add_users(one.path(), &pg, &["alice", "bob"]);
    let n1 = node(one.path(), &pg, &redis, "n1");
    let n2 = node(two.path(), &pg, &redis, "n2");
    let mut bob = login_on(&n2, two.path(), "bob").await;
    join(&mut bob, "#dev", "*** You joined #dev; 1 here: bob").await;
    let mut alice = login_on(&n1, one.path(), "alice").await;
    bob.expect_line("*** alice joined").await;
    join(
        &mut alice,
        "#dev",
        "*** You joined #dev; 2 here: alice, bob",
    )
    .await;
    bob.expect_line("[#dev] *** alice joined").await;
    let killed = std::time::Instant::now();
    drop(n1); // SIGKILL
    let line = bob
        .next_line_within(std::time::Duration::from_secs(15))
        .await;
    assert_eq!(line, "*** alice left (connection lost)");
    eprintln!("announced after {:?}", killed.elapsed());
    bob.send("/who").await;
    bob.expect_line("*** 1 in #dev: bob").await;
    bob.send("/join #lobby").await;
    bob.expect_line("*** Now talking in #lobby").await;
    bob.send("/who").await;
    bob.expect_line("*** 1 online: bob").await;
    // The name is free, and the node starts clean.
    let n1 = node(one.path(), &pg, &redis, "n1");
    let mut again = TestClient::connect(n1.addr, &common::bin::connector_for_dir(one.path())).await;
    again.login("alice", common::PASSWORD).await;
    assert_eq!(again.welcome, "*** Welcome, alice! 2 online: alice, bob");
    let log = std::fs::read_to_string(one.path().join("serve.log")).unwrap();
    assert!(!log.contains(common::redis::REDIS_PASSWORD));
    assert!(
        !n1.printed
            .join("\n")
            .contains(common::redis::REDIS_PASSWORD)
    );
}

/// Adds `names` (password [`common::PASSWORD`]) with `tlschat user add` on `pg`.
fn add_users(dir: &std::path::Path, pg: &Postgres, names: &[&str]) {
    for name in names {
        let mut cmd = common::bin::tlschat(dir);
        cmd.args(["user", "add", name, "--password-stdin", "--db", &pg.url]);
        common::bin::succeeded(&common::bin::run_with_stdin(
            cmd,
            &format!("{}\n", common::PASSWORD),
        ));
    }
}

/// `tlschat admin ARGS` through the admin socket in `dir`; its stdout.
fn admin(dir: &std::path::Path, args: &[&str]) -> String {
    let out = common::bin::tlschat(dir)
        .arg("admin")
        .args(args)
        .args(["--admin-socket", "tlschat.sock"])
        .output()
        .unwrap();
    common::bin::succeeded(&out)
}

/// A client logged in as `name` on the binary node `serve` run in `dir`.
async fn login_on(serve: &common::bin::Serve, dir: &std::path::Path, name: &str) -> TestClient {
    let mut c = TestClient::connect(serve.addr, &common::bin::connector_for_dir(dir)).await;
    c.login(name, common::PASSWORD).await;
    c
}

#[tokio::test]
async fn admin_who_kick_and_say_on_one_node_reach_every_node() {
    let (Some(redis), Some(pg)) = (Redis::start(), Postgres::start()) else {
        return;
    };
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    add_users(one.path(), &pg, &["alice", "bob"]);
    let n1 = common::bin::serve_on(
        one.path(),
        &pg.url,
        &["--cluster", &redis.url, "--node-name", "n1"],
        &[],
    );
    let n2 = node(two.path(), &pg, &redis, "n2");
    let mut bob = login_on(&n1, one.path(), "bob").await;
    let mut alice = login_on(&n2, two.path(), "alice").await;
    bob.expect_line("*** alice joined").await;
    let who = admin(one.path(), &["who"]);
    let rows: Vec<Vec<&str>> = who.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 2, "{who}");
    assert_eq!((rows[0][0], rows[0][4]), ("alice", "n2"), "{who}");
    assert_eq!(
        rows[0][3], "-",
        "bytes queued on another node are not known here"
    );
    assert_eq!((rows[1][0], rows[1][4]), ("bob", "n1"), "{who}");
    assert!(rows[1][3].parse::<u64>().is_ok(), "{who}");
    admin(one.path(), &["say", "maintenance at 5"]);
    alice.expect_line("*** [admin] maintenance at 5").await;
    bob.expect_line("*** [admin] maintenance at 5").await;
    admin(one.path(), &["kick", "alice", "spam"]);
    alice
        .expect_line("! You were removed by an administrator (spam)")
        .await;
    alice.expect_closed().await;
    bob.expect_line("*** alice left (spam)").await;
    drop(n2);
}

#[tokio::test]
async fn disabling_a_user_closes_its_session_on_another_node_within_5_s() {
    let Some(cluster) = cluster(2).await else {
        return;
    };
    let mut alice = cluster.login(2, "alice").await;
    let dir = tempfile::tempdir().unwrap();
    let url = cluster.pg.url.clone();
    let disabled = std::time::Instant::now();
    let mut cmd = common::bin::tlschat(dir.path());
    cmd.args(["user", "disable", "alice", "--db", &url]);
    common::bin::succeeded(&cmd.output().unwrap());
    alice
        .expect_line("! Your account was changed by an administrator")
        .await;
    alice.expect_closed().await;
    assert!(disabled.elapsed() < std::time::Duration::from_secs(5));
}

/// Waits (up to 20 s) for `line`, skipping others; returns the skipped ones.
async fn within_20_s(c: &mut TestClient, line: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut skipped = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let got = c.next_line_within(left).await;
        if got == line {
            return skipped;
        }
        skipped.push(got);
    }
}

#[tokio::test]
async fn while_redis_is_down_changes_are_refused_and_afterwards_chat_goes_on_with_history_intact() {
    let Some(redis) = Redis::start_persistent() else {
        return;
    };
    let Some(mut cluster) = cluster_on(2, redis).await else {
        return;
    };
    let (mut alice, mut bob) = two_in_dev(&cluster).await;
    alice.send("before").await;
    bob.expect_line("[#dev] <alice> before").await;
    // Redis's answer to alice's node is in too (a command waits for the member's lines): a
    // Redis killed with that answer unread would leave her told "not sent" for a line that
    // was (README, "What each failure loses").
    alice.send("/history 1").await;
    alice.wait_for("*** End of history").await;
    cluster.redis.stop();
    let stopped = std::time::Instant::now();
    alice.send("during").await;
    let refused = alice
        .next_line_within(std::time::Duration::from_secs(6))
        .await;
    assert_eq!(
        refused,
        "! Chat is unavailable right now; your message was not sent"
    );
    assert!(stopped.elapsed() < std::time::Duration::from_secs(6));
    alice.send("/part").await;
    let refused = alice
        .next_line_within(std::time::Duration::from_secs(6))
        .await;
    assert_eq!(
        refused,
        "! Chat is unavailable right now; your message was not sent"
    );
    login_is_busy(&cluster.nodes[1]).await;
    cluster.redis.restart();
    let restarted = std::time::Instant::now();
    assert_eq!(
        within_20_s(&mut alice, "*** Chat is available again").await,
        Vec::<String>::new()
    );
    assert_eq!(
        within_20_s(&mut bob, "*** Chat is available again").await,
        Vec::<String>::new()
    );
    eprintln!("available again after {:?}", restarted.elapsed());
    alice.send("after").await;
    bob.expect_line("[#dev] <alice> after").await;
    bob.send("/history").await;
    bob.expect_line("*** History of #dev: 2 messages").await;
    assert_eq!(
        common::block(&mut bob).await,
        ["<alice> before", "<alice> after"],
        "the refused line never took effect, and nothing came twice"
    );
    bob.send("/who").await;
    bob.expect_line("*** 2 in #dev: alice, bob").await;
}

#[tokio::test]
async fn a_line_refused_while_redis_stalls_never_appears_once_it_answers() {
    let Some(cluster) = cluster(2).await else {
        return;
    };
    let (mut alice, mut bob) = two_in_dev(&cluster).await;
    let stalled = cluster.redis.stall(2.0).await;
    alice.send("during").await;
    let refused = alice
        .next_line_within(std::time::Duration::from_secs(6))
        .await;
    assert_eq!(
        refused,
        "! Chat is unavailable right now; your message was not sent"
    );
    stalled.await.unwrap();
    assert_eq!(
        within_20_s(&mut alice, "*** Chat is available again").await,
        Vec::<String>::new()
    );
    alice.send("after").await;
    // bob's node lost nothing, so he gets no notice: his next line is alice's next one.
    bob.expect_line("[#dev] <alice> after").await;
    bob.send("/history").await;
    bob.expect_line("*** History of #dev: 1 message").await;
    assert_eq!(common::block(&mut bob).await, ["<alice> after"]);
}

#[tokio::test]
async fn when_redis_comes_back_empty_members_are_told_once_and_chat_starts_a_new_history() {
    let Some(mut cluster) = cluster(2).await else {
        return;
    };
    let (mut alice, mut bob) = two_in_dev(&cluster).await;
    alice.send("old").await;
    bob.expect_line("[#dev] <alice> old").await;
    cluster.redis.stop();
    cluster.redis.restart();
    for c in [&mut alice, &mut bob] {
        assert_eq!(
            within_20_s(c, "*** Chat is available again").await,
            Vec::<String>::new()
        );
        c.expect_line("*** Server history was reset").await;
    }
    alice.send("new").await;
    bob.expect_line("[#dev] <alice> new").await;
    bob.send("/who").await;
    bob.expect_line("*** 2 in #dev: alice, bob").await;
    bob.send("/history").await;
    bob.expect_line("*** History of #dev: 1 message").await;
    assert_eq!(common::block(&mut bob).await, ["<alice> new"]);
    bob.send("/msg alice still here?").await;
    bob.expect_line("-> *alice* still here?").await;
    alice.expect_line("*bob* still here?").await;
}

#[tokio::test]
async fn after_redis_lost_its_data_a_member_who_comes_back_catches_up_on_the_new_history() {
    bob_back_after_a_reset_and_new_lines(1).await;
}

/// bob reads 3 lines in #dev and leaves (his position, 3, stored in the epoch of then); Redis
/// loses its data; alice sends `new` lines; bob logs in again and must catch up on all of
/// them, however many (fewer than 3, or more).
async fn bob_back_after_a_reset_and_new_lines(new: usize) {
    let Some(mut cluster) = cluster(2).await else {
        return;
    };
    let (mut alice, mut bob) = two_in_dev(&cluster).await;
    for i in 1..=3 {
        alice.send(&format!("old {i}")).await;
        bob.expect_line(&format!("[#dev] <alice> old {i}")).await;
    }
    bob.send("/quit").await;
    bob.expect_line("*** Bye").await;
    alice.wait_for("*** bob left").await;
    cluster.redis.stop();
    cluster.redis.restart();
    within_20_s(&mut alice, "*** Chat is available again").await;
    alice.expect_line("*** Server history was reset").await;
    for i in 1..=new {
        alice.send(&format!("new {i}")).await;
    }
    alice.send("/history 1").await;
    alice.wait_for("*** End of history").await;
    let mut again = cluster.login(2, "bob").await;
    again
        .expect_line("*** You are in #dev; 2 here: alice, bob")
        .await;
    let missed = match new {
        1 => "*** You missed 1 message in #dev:".to_owned(),
        n => format!("*** You missed {n} messages in #dev:"),
    };
    again.expect_line(&missed).await;
    assert_eq!(
        common::block(&mut again).await,
        (1..=new)
            .map(|i| format!("<alice> new {i}"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn after_redis_lost_its_data_a_stored_position_the_new_numbers_passed_counts_as_their_start()
{
    bob_back_after_a_reset_and_new_lines(5).await;
}

#[tokio::test]
async fn a_member_online_when_redis_lost_its_data_keeps_her_place_in_the_new_history() {
    let Some(mut cluster) = cluster(2).await else {
        return;
    };
    let (mut alice, mut bob) = two_in_dev(&cluster).await;
    for i in 1..=3 {
        alice.send(&format!("old {i}")).await;
        bob.expect_line(&format!("[#dev] <alice> old {i}")).await;
    }
    cluster.redis.stop();
    cluster.redis.restart();
    within_20_s(&mut bob, "*** Chat is available again").await;
    bob.expect_line("*** Server history was reset").await;
    within_20_s(&mut alice, "*** Chat is available again").await;
    for i in 1..=2 {
        alice.send(&format!("new {i}")).await;
        bob.expect_line(&format!("[#dev] <alice> new {i}")).await;
    }
    // bob has read the new history's 2 lines; that, not his 3 of before, is where he is.
    bob.send("/quit").await;
    bob.expect_line("*** Bye").await;
    alice.wait_for("*** bob left").await;
    alice.send("new 3").await;
    alice.send("/history 1").await;
    alice.wait_for("*** End of history").await;
    let mut again = cluster.login(2, "bob").await;
    again
        .expect_line("*** You are in #dev; 2 here: alice, bob")
        .await;
    again.expect_line("*** You missed 1 message in #dev:").await;
    assert_eq!(common::block(&mut again).await, ["<alice> new 3"]);
}

#[test]
fn doctor_checks_the_clusters_redis_and_warns_when_its_append_only_file_is_off() {
    let (Some(plain), Some(durable), Some(pg)) =
        (Redis::start(), Redis::start_persistent(), Postgres::start())
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let doctor = |redis: &Redis| {
        let out = common::bin::tlschat(dir.path())
            .args(["doctor", "--db", &pg.url, "--cluster", &redis.url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = doctor(&plain);
    let line = said
        .lines()
        .find(|l| l.contains("redis:"))
        .unwrap_or_default();
    assert!(line.starts_with("warn redis: Redis "), "{said}");
    assert!(line.contains("append-only file off"), "{said}");
    let said = doctor(&durable);
    let line = said
        .lines()
        .find(|l| l.contains("redis:"))
        .unwrap_or_default();
    assert!(line.starts_with("ok   redis: Redis "), "{said}");
    assert!(line.ends_with("append-only file on"), "{said}");
    assert!(!said.contains(common::redis::REDIS_PASSWORD), "{said}");
}

#[tokio::test]
async fn a_web_client_and_a_line_client_on_different_nodes_chat_both_ways() {
    let Some(cluster) = cluster(2).await else {
        return;
    };
    let mut bob = cluster.login(2, "bob").await;
    let mut alice = common::web::ws_login(&cluster.nodes[0], "alice").await;
    bob.expect_line("*** alice joined").await;
    alice.send("hi from the browser").await;
    bob.expect_line("<alice> hi from the browser").await;
    bob.send("hi from s_client").await;
    alice.expect_line("<bob> hi from s_client").await;
}

#[tokio::test]
async fn a_node_that_shuts_down_announces_its_members_as_left() {
    let Some(cluster) = cluster(2).await else {
        return;
    };
    let (_alice, mut bob) = lobby_pair(&cluster).await;
    cluster.nodes[0].shutdown.cancel();
    bob.expect_line("*** alice left").await;
    bob.send("/who").await;
    bob.expect_line("*** 1 online: bob").await;
}

#[tokio::test]
async fn while_postgresql_is_down_members_chat_on_and_logins_are_busy_until_it_is_back() {
    let Some(mut cluster) = cluster(2).await else {
        return;
    };
    let (mut alice, mut bob) = two_in_dev(&cluster).await;
    cluster.pg.stop();
    alice.send("still here").await;
    bob.expect_line("[#dev] <alice> still here").await;
    bob.send("/join #ops").await;
    bob.expect_line("*** You joined #ops; 1 here: bob").await;
    login_is_busy(&cluster.nodes[1]).await;
    cluster.pg.restart();
    let back = std::time::Instant::now();
    loop {
        let mut carol = cluster.nodes[1].connect().await;
        carol.expect_greeting().await;
        carol.send("carol").await;
        carol.expect_line("Password:").await;
        carol.send(common::PASSWORD).await;
        let line = carol.next_line().await;
        if line.starts_with("*** Welcome, carol!") {
            break;
        }
        assert_eq!(line, "! Server busy, try again later");
        assert!(
            back.elapsed() < std::time::Duration::from_secs(30),
            "logins still busy 30 s after PostgreSQL came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_certificate_enrolled_on_one_node_logs_in_on_another_until_it_is_deleted() {
    let Some(cluster) = cluster(2).await else {
        return;
    };
    let pair = common::cert::ClientPair::new();
    let mut first = pair.enroll(&cluster.nodes[0], "alice", "laptop").await;
    first.send("/quit").await;
    first.expect_closed().await;
    let mut c = pair.log_in_by_it(&cluster.nodes[1], "alice").await;
    c.wait_for_start("*** Welcome, alice! ").await;
    let dir = tempfile::tempdir().unwrap();
    let deleted = std::time::Instant::now();
    let out = common::bin::tlschat(dir.path())
        .args(["user", "cert", "del", "alice", &pair.fingerprint()])
        .args(["--db", &cluster.pg.url])
        .output()
        .unwrap();
    common::bin::succeeded(&out);
    let lines = c.expect_closed().await;
    assert_eq!(
        lines.last().map(String::as_str),
        Some("! Your account was changed by an administrator")
    );
    assert!(deleted.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn a_member_who_left_while_redis_was_down_is_announced_once_it_is_back() {
    let Some(redis) = Redis::start_persistent() else {
        return;
    };
    let Some(mut cluster) = cluster_on(2, redis).await else {
        return;
    };
    let (mut alice, mut bob) = two_in_dev(&cluster).await;
    cluster.redis.stop();
    alice.send("/quit").await;
    alice.expect_line("*** Bye").await;
    cluster.redis.restart();
    within_20_s(&mut bob, "*** Chat is available again").await;
    assert_eq!(
        within_20_s(&mut bob, "*** alice left").await,
        Vec::<String>::new()
    );
    bob.send("/who").await;
    bob.expect_line("*** 1 in #dev: bob").await;
    bob.send("/join #lobby").await;
    bob.expect_line("*** Now talking in #lobby").await;
    bob.send("/who").await;
    bob.expect_line("*** 1 online: bob").await;
}

#[tokio::test]
async fn a_failed_login_on_one_node_counts_on_another() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let limits = tlschat::config::Limits {
        throttle_delay: std::time::Duration::from_millis(100),
        user_failures: 1,
        user_failure_ceiling: 1,
        ..common::test_limits()
    };
    let Some(cluster) = cluster_with(2, redis, limits).await else {
        return;
    };
    let mut guesser = cluster.nodes[0].connect().await;
    guesser.expect_greeting().await;
    guesser.send("alice").await;
    guesser.expect_line("Password:").await;
    guesser.send("not alice's password").await;
    guesser.expect_line("! Login failed").await;
    // The right password on the other node is not even checked: the name is throttled.
    let mut c = cluster.nodes[1].connect().await;
    c.expect_greeting().await;
    c.send("alice").await;
    c.expect_line("Password:").await;
    c.send(common::PASSWORD).await;
    c.expect_line("! Login failed").await;
}
