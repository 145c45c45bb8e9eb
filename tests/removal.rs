//! Every way a member is removed ends its session promptly, even when the session is blocked
//! writing to a peer that stopped reading.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{
    Opts, PASSWORD, TestClient, TestServer, spawn_server, tcp_from, test_limits, wait_until,
};
use tlschat::admin::execute;
use tlschat::config::Limits;
use tlschat::username::Username;

/// A removed session must be gone within this time (goodbye limit 2 s plus slack).
const GONE_WITHIN: Duration = Duration::from_secs(3);

async fn server() -> TestServer {
    spawn_server(Opts {
        limits: Limits {
            // Far above what the socket buffers hold: alice blocks long before eviction.
            outbound_queue_bytes: 64 << 20,
            ..test_limits()
        },
        ..Opts::default()
    })
    .await
}

async fn admin(server: &TestServer, command: &str) -> String {
    execute(command, &server.ctx.room, &server.ctx.metrics).await
}

fn open_connections(server: &TestServer) -> u64 {
    server.ctx.metrics.connections_open.load(Ordering::Relaxed)
}

fn queued_for(server: &TestServer, name: &str) -> Option<usize> {
    server
        .ctx
        .room
        .presence()
        .sessions()
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| s.queued_bytes)
}

/// alice logged in over a socket with a tiny receive buffer and not reading; bob talking until
/// alice's session has far more queued than any socket buffer holds, i.e. it is blocked in a
/// write. Returns (alice, bob); alice must be kept alive (not read) by the caller.
async fn blocked_alice(server: &TestServer) -> (TestClient, TestClient) {
    let tcp = tcp_from(server.addr, "127.0.0.1", Some(4096)).await;
    let mut alice = TestClient::over(tcp, &server.connector).await;
    alice.login("alice", PASSWORD).await;
    let mut bob = server.login("bob").await;
    let payload = "z".repeat(1000);
    for i in 0.. {
        assert!(i < 20_000, "alice's queue never backed up");
        bob.send(&format!("{i} {payload}")).await;
        if i % 100 == 99 {
            // A /who reply proves bob's lines so far were handled, so the queue is current.
            bob.send("/who").await;
            bob.wait_for("*** 2 online: alice, bob").await;
            if queued_for(server, "alice").unwrap() > 1 << 20 {
                break;
            }
        }
    }
    assert_eq!(open_connections(server), 2);
    (alice, bob)
}

#[tokio::test]
async fn kicked_member_blocked_in_a_write_is_gone_at_once_and_its_next_session_can_be_kicked() {
    let server = server().await;
    let (_alice, _bob) = blocked_alice(&server).await;
    assert_eq!(admin(&server, "kick alice").await, "ok\n");
    assert!(queued_for(&server, "alice").is_none(), "still listed");
    wait_until("the kicked session ends", GONE_WITHIN, || {
        open_connections(&server) == 1
    })
    .await;
    let mut again = server.login("alice").await;
    assert_eq!(admin(&server, "kick alice").await, "ok\n");
    // The new session first gets the catch-up of what the blocked one never wrote.
    again
        .wait_for("! You were removed by an administrator")
        .await;
    again.expect_closed().await;
}

#[tokio::test]
async fn taken_over_session_blocked_in_a_write_ends_and_is_listed_once() {
    let server = server().await;
    let (_alice, _bob) = blocked_alice(&server).await;
    let mut again = server.login("alice").await;
    wait_until("the replaced session ends", GONE_WITHIN, || {
        open_connections(&server) == 2
    })
    .await;
    let who = admin(&server, "who").await;
    assert_eq!(who.matches("alice\t").count(), 1, "{who}");
    assert_eq!(admin(&server, "kick alice").await, "ok\n");
    // The new session first gets the catch-up of what the blocked one's peer never
    // acknowledged.
    again
        .wait_for("! You were removed by an administrator")
        .await;
}

#[tokio::test]
async fn disabled_account_blocked_in_a_write_is_closed_promptly() {
    let server = server().await;
    let (_alice, _bob) = blocked_alice(&server).await;
    server
        .store
        .set_disabled(&Username::parse("alice").unwrap(), true)
        .await
        .unwrap();
    // The account check runs every 200 ms in tests.
    wait_until("the disabled account's session ends", GONE_WITHIN, || {
        open_connections(&server) == 1
    })
    .await;
    assert!(queued_for(&server, "alice").is_none());
}

#[tokio::test]
async fn shutdown_ends_a_session_blocked_in_a_write_within_the_goodbye_limit() {
    let server = server().await;
    let (_alice, mut bob) = blocked_alice(&server).await;
    let started = Instant::now();
    server.shutdown.cancel();
    bob.wait_for("*** Server shutting down").await;
    let metrics = std::sync::Arc::clone(&server.ctx.metrics);
    tokio::time::timeout(GONE_WITHIN, server.handle)
        .await
        .expect("the server did not finish in time")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < GONE_WITHIN);
    // Every session finished, rather than being abandoned at the deadline.
    assert_eq!(metrics.connections_open.load(Ordering::Relaxed), 0);
}
