//! Account changes made while the server runs take effect on live sessions.

mod common;

use common::{Opts, PASSWORD, spawn_server};
use secrecy::SecretString;
use tlschat::password::{Hasher, Password};
use tlschat::username::Username;

async fn expect_kicked_within_5s(name: &str, change: impl AsyncFnOnce(&tlschat::store::Store)) {
    let server = spawn_server(Opts::default()).await;
    let mut victim = server.login(name).await;
    let mut other = server.login("bob").await;
    victim.expect_line("*** bob joined").await;
    let started = std::time::Instant::now();
    change(&server.store).await;
    let last = victim.expect_closed().await;
    assert_eq!(last, vec!["! Your account was changed by an administrator"]);
    other.expect_line(&format!("*** {name} left")).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

fn alice() -> Username {
    Username::parse("alice").unwrap()
}

#[tokio::test]
async fn deleting_a_user_closes_their_session() {
    expect_kicked_within_5s("alice", async |store| {
        store.delete_user(&alice()).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn disabling_a_user_closes_their_session_and_blocks_login() {
    let server = spawn_server(Opts::default()).await;
    let mut alice_client = server.login("alice").await;
    server.store.set_disabled(&alice(), true).await.unwrap();
    assert_eq!(
        alice_client.expect_closed().await,
        vec!["! Your account was changed by an administrator"]
    );
    let mut again = server.connect().await;
    again.expect_greeting().await;
    again.send("alice").await;
    again.expect_line("Password:").await;
    again.send(PASSWORD).await;
    again.expect_line("! Login failed").await;
}

#[tokio::test]
async fn changing_a_password_closes_the_session() {
    expect_kicked_within_5s("alice", async |store| {
        let hasher = Hasher::new(&common::test_hash_settings()).unwrap();
        let pw = Password::parse(SecretString::from("a new password".to_owned())).unwrap();
        let hash = hasher.hash(&pw).await.unwrap();
        store
            .set_password(
                &alice(),
                &hash,
                tlschat::store::OnPasswordChange::RemoveCertificates,
            )
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn unrelated_changes_leave_sessions_alone() {
    let server = spawn_server(Opts::default()).await;
    let mut alice_client = server.login("alice").await;
    server
        .store
        .set_disabled(&Username::parse("carol").unwrap(), true)
        .await
        .unwrap();
    // Several check intervals later alice is still a member.
    let waited = tokio::time::sleep(std::time::Duration::from_millis(700));
    waited.await;
    alice_client.send("/who").await;
    alice_client.expect_line("*** 1 online: alice").await;
}
