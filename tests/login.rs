//! Login dialogue: greeting, prompts, success, failure, three strikes, pipelining, takeover.

mod common;

use common::{Opts, PASSWORD, spawn_server};

#[tokio::test]
async fn greeting_lines_precede_the_username_prompt() {
    let server = spawn_server(Opts::default()).await;
    let mut c = server.connect().await;
    c.expect_greeting().await;
}

#[tokio::test]
async fn welcome_lists_everyone_online_sorted_and_others_see_joined() {
    let server = spawn_server(Opts::default()).await;
    let mut carol = server.login("carol").await;
    let mut bob = server.login("bob").await;
    carol.expect_line("*** bob joined").await;
    let alice = server.login("alice").await;
    assert_eq!(
        alice.welcome,
        "*** Welcome, alice! 3 online: alice, bob, carol"
    );
    bob.expect_line("*** alice joined").await;
    carol.expect_line("*** alice joined").await;
}

#[tokio::test]
async fn login_is_case_insensitive_and_shows_the_name_as_created() {
    let server = spawn_server(Opts::default()).await;
    let mut c = server.connect().await;
    c.login("ALICE", PASSWORD).await;
    assert_eq!(c.welcome, "*** Welcome, alice! 1 online: alice");
}

#[tokio::test]
async fn wrong_password_fails_and_prompts_again() {
    let server = spawn_server(Opts::default()).await;
    let mut c = server.connect().await;
    c.expect_greeting().await;
    c.send("alice").await;
    c.expect_line("Password:").await;
    c.send("wrong password").await;
    c.expect_line("! Login failed").await;
    c.expect_line("Username:").await;
    c.send("alice").await;
    c.expect_line("Password:").await;
    c.send(PASSWORD).await;
    assert!(c.next_line().await.starts_with("*** Welcome, alice!"));
}

#[tokio::test]
async fn unknown_user_gets_the_same_failure_as_a_wrong_password() {
    let server = spawn_server(Opts::default()).await;
    let mut c = server.connect().await;
    c.expect_greeting().await;
    for name in ["nobody", "alice", "not a valid name!"] {
        c.send(name).await;
        c.expect_line("Password:").await;
        c.send("wrong password").await;
        c.expect_line("! Login failed").await;
        if name != "not a valid name!" {
            c.expect_line("Username:").await;
        }
    }
}

#[tokio::test]
async fn third_failed_login_closes_the_connection() {
    let server = spawn_server(Opts::default()).await;
    let mut c = server.connect().await;
    c.expect_greeting().await;
    for attempt in 1..=3 {
        c.send("alice").await;
        c.expect_line("Password:").await;
        c.send("nope nope").await;
        c.expect_line("! Login failed").await;
        if attempt < 3 {
            c.expect_line("Username:").await;
        }
    }
    c.expect_line("! Too many failed logins").await;
    assert!(c.expect_closed().await.is_empty());
}

#[tokio::test]
async fn pipelined_login_and_command_are_answered_in_order() {
    let server = spawn_server(Opts::default()).await;
    let mut c = server.connect().await;
    c.send_raw(format!("alice\n{PASSWORD}\n/who\n").as_bytes())
        .await;
    c.expect_greeting().await;
    c.expect_line("Password:").await;
    c.expect_line("*** Welcome, alice! 1 online: alice").await;
    c.expect_line("*** 1 online: alice").await;
}

#[tokio::test]
async fn crlf_line_endings_work_for_login() {
    let server = spawn_server(Opts::default()).await;
    let mut c = server.connect().await;
    c.expect_greeting().await;
    c.send_raw(b"alice\r\n").await;
    c.expect_line("Password:").await;
    c.send_raw(format!("{PASSWORD}\r\n").as_bytes()).await;
    c.expect_line("*** Welcome, alice! 1 online: alice").await;
}

#[tokio::test]
async fn second_login_takes_over_without_a_left_joined_pair() {
    let server = spawn_server(Opts::default()).await;
    let mut old = server.login("alice").await;
    let mut bob = server.login("bob").await;
    old.expect_line("*** bob joined").await;
    let new = server.login("Alice").await;
    assert_eq!(new.welcome, "*** Welcome, alice! 2 online: alice, bob");
    let last = old.expect_closed().await;
    assert_eq!(
        last,
        vec!["! You signed in elsewhere; closing this session"]
    );
    // bob's next line is the answer to /who: no left/joined in between.
    bob.send("/who").await;
    bob.expect_line("*** 2 online: alice, bob").await;
}

async fn at_username_prompt(server: &common::TestServer) -> common::TestClient {
    let mut c = server.connect().await;
    c.expect_greeting().await;
    c
}

#[tokio::test]
async fn over_long_username_line_gets_the_error_and_the_prompt_again() {
    let server = spawn_server(Opts::default()).await;
    let mut c = at_username_prompt(&server).await;
    c.send(&"u".repeat(5000)).await;
    c.expect_line("! Line too long (max 4096 bytes)").await;
    c.expect_line("Username:").await;
    c.login_after_prompt("alice", PASSWORD).await;
}

#[tokio::test]
async fn non_utf8_username_line_gets_the_error_and_the_prompt_again() {
    let server = spawn_server(Opts::default()).await;
    let mut c = at_username_prompt(&server).await;
    c.send_raw(b"\xff\xfe\n").await;
    c.expect_line("! Invalid UTF-8").await;
    c.expect_line("Username:").await;
    c.login_after_prompt("alice", PASSWORD).await;
}

#[tokio::test]
async fn over_long_password_line_gets_the_error_and_the_prompt_again() {
    let server = spawn_server(Opts::default()).await;
    let mut c = at_username_prompt(&server).await;
    c.send("alice").await;
    c.expect_line("Password:").await;
    c.send(&"p".repeat(5000)).await;
    c.expect_line("! Line too long (max 4096 bytes)").await;
    c.expect_line("Password:").await;
    c.send(PASSWORD).await;
    assert!(c.next_line().await.starts_with("*** Welcome, alice!"));
}

#[tokio::test]
async fn non_utf8_password_line_gets_the_error_and_the_prompt_again() {
    let server = spawn_server(Opts::default()).await;
    let mut c = at_username_prompt(&server).await;
    c.send("alice").await;
    c.expect_line("Password:").await;
    c.send_raw(b"\xc3\x28\n").await;
    c.expect_line("! Invalid UTF-8").await;
    c.expect_line("Password:").await;
    c.send(PASSWORD).await;
    assert!(c.next_line().await.starts_with("*** Welcome, alice!"));
}

#[tokio::test]
async fn a_hash_with_older_parameters_is_rehashed_at_login_without_closing_the_session() {
    use secrecy::SecretString;
    use tlschat::password::{Hasher, Password};
    use tlschat::username::Username;
    let server = spawn_server(Opts::default()).await;
    let old = Hasher::new(&tlschat::config::HashSettings {
        iterations: 2,
        ..common::test_hash_settings()
    })
    .unwrap();
    let pw = Password::parse(SecretString::from(PASSWORD.to_owned())).unwrap();
    let erin = Username::parse("erin").unwrap();
    server
        .store
        .add_user(&erin, &old.hash(&pw).await.unwrap())
        .await
        .unwrap();
    let before = server.store.credentials(&erin).await.unwrap().unwrap();
    assert!(
        before
            .password_hash
            .starts_with("$argon2id$v=19$m=1024,t=2,p=1$")
    );
    let mut c = server.login("erin").await;
    let after = server.store.credentials(&erin).await.unwrap().unwrap();
    assert!(
        after
            .password_hash
            .starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
        "{}",
        after.password_hash
    );
    // Same account state: the change watcher does not close the session.
    assert_eq!(after.stamp, before.stamp);
    c.send("/who").await;
    c.expect_line("*** 1 online: erin").await;
    // And the new hash logs in.
    let mut again = server.connect().await;
    again.login("erin", PASSWORD).await;
}

#[tokio::test]
async fn an_unusable_stored_hash_answers_login_failed_and_keeps_the_connection() {
    let server = spawn_server(Opts::default()).await;
    let alice = tlschat::username::Username::parse("alice").unwrap();
    server
        .store
        .set_password(
            &alice,
            "$argon2id$v=19$garbage",
            tlschat::store::OnPasswordChange::KeepCertificates,
        )
        .await
        .unwrap();
    let mut c = server.connect().await;
    c.expect_greeting().await;
    c.send("alice").await;
    c.expect_line("Password:").await;
    c.send(PASSWORD).await;
    c.expect_line("! Login failed").await;
    c.expect_line("Username:").await;
    c.login_after_prompt("bob", PASSWORD).await;
}
