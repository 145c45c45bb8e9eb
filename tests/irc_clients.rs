//! Real IRC clients against the IRC listener: WeeChat and irssi log in with SASL PLAIN over
//! TLS (the server's certificate pinned) and chat with a line-protocol client both ways
//! (lines, actions, private messages); WeeChat shows what it missed at its next login.

mod common;

use common::irssi::{Irssi, irssi};
use common::weechat::{WeeChat, weechat};
use common::{Opts, spawn_server};

/// The clients' password: one word, as WeeChat's `-r` commands take it.
const WEECHAT_PASSWORD: &str = "battery-staple-horse";

async fn server_with_alice_password() -> common::TestServer {
    let server = spawn_server(Opts::default()).await;
    let hasher = tlschat::password::Hasher::new(&common::test_hash_settings()).unwrap();
    let password = tlschat::password::Password::parse(secrecy::SecretString::from(
        WEECHAT_PASSWORD.to_owned(),
    ))
    .unwrap();
    let hash = hasher.hash(&password).await.unwrap();
    let alice = tlschat::username::Username::parse("alice").unwrap();
    server
        .store
        .set_password(
            &alice,
            &hash,
            tlschat::store::OnPasswordChange::KeepCertificates,
        )
        .await
        .unwrap();
    server
}

#[tokio::test]
async fn weechat_logs_in_with_sasl_and_chats_with_a_line_client_both_ways() {
    let Some(binary) = weechat() else { return };
    let server = server_with_alice_password().await;
    let mut bob = server.login("bob").await;
    let alice = WeeChat::connect(&binary, &server, "alice", WEECHAT_PASSWORD);
    bob.expect_line("*** alice joined").await;
    alice
        .wait_for_log("irc.tlschat.#lobby", "has joined #lobby")
        .await;
    alice.send("irc.tlschat.#lobby", "hello from weechat").await;
    bob.expect_line("<alice> hello from weechat").await;
    alice.send("irc.tlschat.#lobby", "/me waves").await;
    bob.expect_line("* alice waves").await;
    alice.send("irc.server.tlschat", "/msg bob psst").await;
    bob.expect_line("*alice* psst").await;
    bob.send("hi weechat").await;
    alice
        .wait_for_log("irc.tlschat.#lobby", "bob\thi weechat")
        .await;
    bob.send("/me nods").await;
    alice.wait_for_log("irc.tlschat.#lobby", "bob nods").await;
    bob.send("/msg alice just you").await;
    alice.wait_for_log("irc.tlschat.bob", "bob\tjust you").await;
}

#[tokio::test]
async fn weechat_shows_what_it_missed_at_its_next_login() {
    let Some(binary) = weechat() else { return };
    let server = server_with_alice_password().await;
    let mut bob = server.login("bob").await;
    let alice = WeeChat::connect(&binary, &server, "alice", WEECHAT_PASSWORD);
    bob.expect_line("*** alice joined").await;
    alice
        .wait_for_log("irc.tlschat.#lobby", "has joined #lobby")
        .await;
    let home = alice.quit();
    bob.expect_line("*** alice left").await;
    bob.send("while you were out").await;
    bob.send("second line").await;
    let alice = WeeChat::connect_in(&binary, &server, ("alice", WEECHAT_PASSWORD), home);
    let log = alice
        .wait_for_log("irc.tlschat.#lobby", "second line")
        .await;
    assert!(log.contains("You missed 2 messages in #lobby:"), "{log}");
    assert!(log.contains("while you were out"), "{log}");
}

#[tokio::test]
async fn irssi_logs_in_with_sasl_and_chats_with_a_line_client_both_ways() {
    let Some(binary) = irssi() else { return };
    let server = server_with_alice_password().await;
    let mut bob = server.login("bob").await;
    let alice = Irssi::connect(&binary, &server, "alice", WEECHAT_PASSWORD);
    bob.expect_line("*** alice joined").await;
    alice.wait_for_log("#lobby", "has joined #lobby").await;
    alice.type_line("/msg #lobby hello from irssi");
    bob.expect_line("<alice> hello from irssi").await;
    alice.type_line("/action #lobby waves");
    bob.expect_line("* alice waves").await;
    alice.type_line("/msg bob psst");
    bob.expect_line("*alice* psst").await;
    bob.send("hi irssi").await;
    alice.wait_for_log("#lobby", "< bob> hi irssi").await;
    bob.send("/msg alice just you").await;
    alice.wait_for_log("bob", "<bob> just you").await;
}
