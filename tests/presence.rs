//! One registry of who is online: concurrent logins of one account always leave the rooms and
//! the admin's list agreeing on the surviving session, which account changes then reach.

mod common;

use std::net::SocketAddr;

use common::{Opts, PASSWORD, TestClient, TestServer, spawn_server, tcp_from};
use tlschat::admin::execute;
use tlschat::username::Username;

const ROUNDS: usize = 300;

/// A logged-in client and its local address (the peer address the server sees).
async fn log_in(server: &TestServer) -> (TestClient, SocketAddr) {
    let tcp = tcp_from(server.addr, "127.0.0.1", None).await;
    let local = tcp.local_addr().unwrap();
    let mut c = TestClient::over(tcp, &server.connector).await;
    c.login("alice", PASSWORD).await;
    (c, local)
}

/// `admin who`'s rows for alice: (peer address).
fn listed(server: &TestServer) -> Vec<String> {
    let reply = execute("who", &server.ctx.room, &server.ctx.metrics);
    reply
        .lines()
        .filter(|l| l.starts_with("alice\t"))
        .map(|l| l.split('\t').nth(1).unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_of_one_account_leave_the_survivor_listed_and_closable() {
    let server = spawn_server(Opts::default()).await;
    let alice = Username::parse("alice").unwrap();
    for round in 0..ROUNDS {
        let ((a, a_addr), (b, b_addr)) = tokio::join!(log_in(&server), log_in(&server));
        let rows = listed(&server);
        assert_eq!(rows.len(), 1, "round {round}: admin who lists one alice");
        let (mut survivor, mut replaced) = if rows[0] == a_addr.to_string() {
            (a, b)
        } else {
            assert_eq!(rows[0], b_addr.to_string(), "round {round}");
            (b, a)
        };
        // The listed session is the live one; the other was taken over.
        replaced
            .expect_line("! You signed in elsewhere; closing this session")
            .await;
        survivor.send("/who").await;
        survivor.expect_line("*** 1 online: alice").await;
        if round % 50 == 49 {
            // An account change reaches the survivor.
            server.store.set_disabled(&alice, true).await.unwrap();
            survivor
                .expect_line("! Your account was changed by an administrator")
                .await;
            survivor.expect_closed().await;
            server.store.set_disabled(&alice, false).await.unwrap();
        } else {
            survivor.send("/quit").await;
            survivor.wait_for("*** Bye").await;
        }
        common::wait_until("alice to be gone", common::STEP, || {
            server.ctx.room.directory().find("alice").is_none()
        })
        .await;
    }
}
