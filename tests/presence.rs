//! One registry of who is online: concurrent logins of one account always leave the rooms and
//! the admin's list agreeing on the surviving session, which account changes then reach.

mod common;

use std::net::SocketAddr;

use common::{Opts, PASSWORD, TestClient, TestServer, spawn_server, tcp_from};
use tlschat::admin::execute;
use tlschat::username::Username;

const ROUNDS: usize = 300;

const REPLACED: &str = "! You signed in elsewhere; closing this session";

/// A client that logged in, its local address (the peer address the server sees), and
/// whether it was already replaced (a session replaced before its welcome was written gets
/// only the takeover line).
async fn log_in(server: &TestServer) -> (TestClient, SocketAddr, bool) {
    let tcp = tcp_from(server.addr, "127.0.0.1", None).await;
    let local = tcp.local_addr().unwrap();
    let mut c = TestClient::over(tcp, &server.connector).await;
    c.expect_greeting().await;
    c.send("alice").await;
    c.expect_line("Password:").await;
    c.send(PASSWORD).await;
    let line = c.next_line().await;
    let replaced = line == REPLACED;
    assert!(
        replaced || line.starts_with("*** Welcome, alice!"),
        "{line}"
    );
    (c, local, replaced)
}

/// `admin who`'s rows for alice: (peer address).
async fn listed(server: &TestServer) -> Vec<String> {
    let reply = execute("who", &server.ctx.room, &server.ctx.metrics).await;
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
        let ((a, a_addr, a_gone), (b, b_addr, b_gone)) =
            tokio::join!(log_in(&server), log_in(&server));
        let rows = listed(&server).await;
        assert_eq!(rows.len(), 1, "round {round}: admin who lists one alice");
        let ((mut survivor, survivor_gone), (mut replaced, replaced_gone)) =
            if rows[0] == a_addr.to_string() {
                ((a, a_gone), (b, b_gone))
            } else {
                assert_eq!(rows[0], b_addr.to_string(), "round {round}");
                ((b, b_gone), (a, a_gone))
            };
        // The listed session is the live one; the other was taken over.
        assert!(
            !survivor_gone,
            "round {round}: the listed session was replaced"
        );
        if !replaced_gone {
            replaced.expect_line(REPLACED).await;
        }
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
            server.ctx.room.presence().find("alice").is_none()
        })
        .await;
    }
}
