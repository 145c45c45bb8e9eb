//! The IRC listener through real TLS: registration and its refusals, the welcome, rooms and
//! messages between IRC and line-protocol members, takeover across protocols.

mod common;

use common::irc::{IrcClient, plain};
use common::{Opts, PASSWORD, spawn_server};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn a_plaintext_client_is_told_to_enable_tls_and_closed() {
    let server = spawn_server(Opts::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(server.irc_addr)
        .await
        .unwrap();
    tcp.write_all(b"NICK alice\r\n").await.unwrap();
    let mut got = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut got);
    let _ = tokio::time::timeout(common::STEP, read).await.unwrap();
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "ERROR :This port speaks TLS only; enable TLS (SSL) in your IRC client\r\n"
    );
}

#[tokio::test]
async fn pass_logs_in_as_the_nick_and_the_welcome_ends_in_lobby_names() {
    let server = spawn_server(Opts::default()).await;
    let mut irc = IrcClient::connect(&server).await;
    irc.send(&format!("PASS :{PASSWORD}")).await;
    irc.send("NICK Alice").await;
    irc.send("USER al 0 * :Alice A").await;
    let first = irc.line().await;
    assert_eq!(
        first,
        ":tlschat 001 alice :Welcome to tlschat, alice!~al@tlschat"
    );
    let skipped = irc.wait_for(":alice!~al@tlschat JOIN #lobby").await;
    assert!(skipped.iter().any(|l| l.starts_with(":tlschat 005 alice ")));
    assert!(skipped.iter().any(|l| l.starts_with(":tlschat 376 alice ")));
    assert_eq!(irc.line().await, ":tlschat 353 alice = #lobby :alice");
    assert_eq!(
        irc.line().await,
        ":tlschat 366 alice #lobby :End of /NAMES list"
    );
}

#[tokio::test]
async fn a_wrong_pass_is_464_and_the_connection_closes() {
    let server = spawn_server(Opts::default()).await;
    let mut irc = IrcClient::connect(&server).await;
    irc.send("PASS :wrong password").await;
    irc.send("NICK alice").await;
    irc.send("USER alice 0 * :A").await;
    let lines = irc.until_closed().await;
    assert_eq!(
        lines,
        [
            ":tlschat 464 * :Password incorrect",
            "ERROR :Password incorrect"
        ]
    );
}

#[tokio::test]
async fn registering_without_a_login_is_refused_with_account_required() {
    let server = spawn_server(Opts::default()).await;
    let mut irc = IrcClient::connect(&server).await;
    irc.send("NICK alice").await;
    irc.send("USER alice 0 * :A").await;
    let lines = irc.until_closed().await;
    assert_eq!(
        lines,
        [
            ":tlschat FAIL * ACCOUNT_REQUIRED :Log in with SASL or PASS (your nick is your account name)",
            "ERROR :Account required"
        ]
    );
}

#[tokio::test]
async fn sasl_plain_logs_in_and_registration_completes_after_cap_end() {
    let server = spawn_server(Opts::default()).await;
    let mut irc = IrcClient::connect(&server).await;
    irc.send("CAP LS 302").await;
    irc.send("NICK bob").await;
    irc.send("USER bob 0 * :Bob").await;
    irc.line_starting(":tlschat CAP * LS ").await;
    irc.send("CAP REQ :sasl").await;
    assert_eq!(irc.line().await, ":tlschat CAP bob ACK :sasl");
    irc.send("AUTHENTICATE PLAIN").await;
    assert_eq!(irc.line().await, "AUTHENTICATE +");
    irc.send(&format!("AUTHENTICATE {}", plain("", "BOB", PASSWORD)))
        .await;
    assert_eq!(
        irc.line().await,
        ":tlschat 900 bob bob!~bob@tlschat bob :You are now logged in as bob"
    );
    assert_eq!(
        irc.line().await,
        ":tlschat 903 bob :SASL authentication successful"
    );
    irc.send("CAP END").await;
    irc.line_starting(":tlschat 001 bob ").await;
}

#[tokio::test]
async fn sasl_gives_the_same_904_for_an_unknown_account_and_a_wrong_password() {
    let server = spawn_server(Opts::default()).await;
    let mut irc = IrcClient::connect(&server).await;
    irc.send("CAP REQ :sasl").await;
    irc.line_starting(":tlschat CAP * ACK").await;
    let mut answers = Vec::new();
    for (user, password) in [("nobody", PASSWORD), ("alice", "wrong password")] {
        irc.send("AUTHENTICATE PLAIN").await;
        assert_eq!(irc.line().await, "AUTHENTICATE +");
        irc.send(&format!("AUTHENTICATE {}", plain("", user, password)))
            .await;
        answers.push(irc.line().await);
    }
    assert_eq!(answers[0], ":tlschat 904 * :SASL authentication failed");
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test]
async fn the_third_failed_sasl_login_closes_the_connection() {
    let server = spawn_server(Opts::default()).await;
    let mut irc = IrcClient::connect(&server).await;
    irc.send("CAP REQ :sasl").await;
    irc.line_starting(":tlschat CAP * ACK").await;
    for _ in 0..3 {
        irc.send("AUTHENTICATE PLAIN").await;
        irc.send(&format!("AUTHENTICATE {}", plain("", "alice", "nope nope")))
            .await;
    }
    let lines = irc.until_closed().await;
    assert_eq!(lines.last().unwrap(), "ERROR :Too many failed logins");
    let failures = lines.iter().filter(|l| l.contains(" 904 ")).count();
    assert_eq!(failures, 3, "{lines:?}");
}

#[tokio::test]
async fn irc_and_line_members_chat_in_lobby_both_ways() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = server.login("bob").await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    bob.expect_line("*** alice joined").await;
    alice.send("PRIVMSG #lobby :hello from irc").await;
    bob.expect_line("<alice> hello from irc").await;
    bob.send("hello from the line protocol").await;
    assert_eq!(
        alice.line().await,
        ":bob!~bob@tlschat PRIVMSG #lobby :hello from the line protocol"
    );
}

#[tokio::test]
async fn a_line_member_logging_in_is_a_join_in_lobby_and_leaving_a_quit() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    let mut bob = server.login("bob").await;
    assert_eq!(alice.line().await, ":bob!~bob@tlschat JOIN #lobby");
    bob.send("/quit gone fishing").await;
    assert_eq!(alice.line().await, ":bob!~bob@tlschat QUIT :gone fishing");
}

#[tokio::test]
async fn joining_a_room_shows_join_and_names_and_messages_reach_line_members_there() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = server.login("bob").await;
    bob.send("/join #dev").await;
    bob.wait_for("*** You joined #dev; 1 here: bob").await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    alice.send("JOIN #Dev").await;
    assert_eq!(alice.line().await, ":alice!~alice@tlschat JOIN #dev");
    assert_eq!(alice.line().await, ":tlschat 353 alice = #dev :alice bob");
    assert_eq!(
        alice.line().await,
        ":tlschat 366 alice #dev :End of /NAMES list"
    );
    bob.wait_for("[#dev] *** alice joined").await;
    alice.send("PRIVMSG #dev :in the room").await;
    bob.expect_line("[#dev] <alice> in the room").await;
    bob.send("back at you").await;
    assert_eq!(
        alice.line().await,
        ":bob!~bob@tlschat PRIVMSG #dev :back at you"
    );
}

#[tokio::test]
async fn parting_a_room_is_a_part_for_everyone() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    let mut carol = IrcClient::logged_in(&server, "carol").await;
    alice
        .line_starting(":carol!~carol@tlschat JOIN #lobby")
        .await;
    for irc in [&mut alice, &mut carol] {
        irc.send("JOIN #dev").await;
        irc.line_starting(":tlschat 366 ").await;
    }
    alice.line_starting(":carol!~carol@tlschat JOIN #dev").await;
    carol.send("PART #dev").await;
    assert_eq!(carol.line().await, ":carol!~carol@tlschat PART #dev");
    assert_eq!(alice.line().await, ":carol!~carol@tlschat PART #dev");
}

#[tokio::test]
async fn a_message_to_a_room_the_member_is_not_in_is_404_and_reaches_nobody() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = server.login("bob").await;
    bob.send("/join #dev").await;
    bob.wait_for("*** You joined #dev; 1 here: bob").await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    alice.send("PRIVMSG #dev :sneaky").await;
    assert_eq!(
        alice.line().await,
        ":tlschat 404 alice #dev :Cannot send to channel"
    );
    alice.send("PRIVMSG #lobby :marker").await;
    bob.wait_for("*** alice joined").await;
    bob.expect_line("<alice> marker").await;
}

#[tokio::test]
async fn private_messages_go_both_ways_and_an_absent_nick_is_401() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = server.login("bob").await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    alice.send("PRIVMSG Bob :psst").await;
    bob.wait_for("*alice* psst").await;
    bob.send("/msg alice hi there").await;
    assert_eq!(
        alice.line().await,
        ":bob!~bob@tlschat PRIVMSG alice :hi there"
    );
    alice.send("PRIVMSG dave :anyone?").await;
    assert_eq!(
        alice.line().await,
        ":tlschat 401 alice dave :No such nick/channel"
    );
}

#[tokio::test]
async fn echo_message_returns_the_members_own_line_in_room_order() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = IrcClient::connect(&server).await;
    alice.send("CAP LS 302").await;
    alice.send("CAP REQ :echo-message message-tags").await;
    alice.send(&format!("PASS :{PASSWORD}")).await;
    alice.send("NICK alice").await;
    alice.send("USER alice 0 * :A").await;
    alice.send("CAP END").await;
    alice.line_starting(":tlschat 366 alice #lobby ").await;
    alice.send("PRIVMSG #lobby :mine").await;
    assert_eq!(
        alice.line().await,
        "@msgid=lobby/1 :alice!~alice@tlschat PRIVMSG #lobby :mine"
    );
}

#[tokio::test]
async fn an_irc_login_takes_over_a_line_session_without_quit_or_join() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = server.login("bob").await;
    let mut carol = server.login("carol").await;
    bob.expect_line("*** carol joined").await;
    let mut carol_irc = IrcClient::logged_in(&server, "carol").await;
    let last = carol.expect_closed().await;
    assert_eq!(last, ["! You signed in elsewhere; closing this session"]);
    carol_irc.send("PRIVMSG #lobby :still me").await;
    bob.expect_line("<carol> still me").await;
}

#[tokio::test]
async fn a_line_login_takes_over_an_irc_session_which_gets_error() {
    let server = spawn_server(Opts::default()).await;
    let mut carol_irc = IrcClient::logged_in(&server, "carol").await;
    let _carol = server.login("carol").await;
    let lines = carol_irc.until_closed().await;
    assert_eq!(
        lines,
        ["ERROR :You signed in elsewhere; closing this session"]
    );
}

#[tokio::test]
async fn after_registration_nick_must_stay_the_account_name() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    alice.send("NICK alice").await;
    alice.send("NICK mallory").await;
    assert_eq!(
        alice.line().await,
        ":tlschat 400 alice NICK :You must use your account name as your nickname"
    );
}

#[tokio::test]
async fn an_irc_quit_is_quit_for_the_others() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = server.login("bob").await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    bob.expect_line("*** alice joined").await;
    alice.send("QUIT :see you").await;
    assert_eq!(alice.until_closed().await, ["ERROR :Bye"]);
    bob.expect_line("*** alice left (see you)").await;
}

#[tokio::test]
async fn shutdown_ends_an_irc_session_with_error() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    server.shutdown.cancel();
    assert_eq!(alice.until_closed().await, ["ERROR :Server shutting down"]);
}

#[tokio::test]
async fn the_catch_up_at_login_is_a_notice_and_a_chathistory_batch() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    alice.send("QUIT").await;
    alice.until_closed().await;
    let mut bob = server.login("bob").await;
    bob.send("one").await;
    bob.send("two").await;
    bob.send("/quit").await;
    bob.expect_closed().await;
    let mut alice = IrcClient::connect(&server).await;
    alice.send("CAP REQ :batch").await;
    alice.send(&format!("PASS :{PASSWORD}")).await;
    alice.send("NICK alice").await;
    alice.send("USER alice 0 * :A").await;
    alice.send("CAP END").await;
    alice.line_starting(":tlschat 366 alice #lobby ").await;
    assert_eq!(
        alice.line().await,
        ":tlschat NOTICE #lobby :You missed 2 messages in #lobby:"
    );
    assert_eq!(
        alice.line().await,
        ":tlschat BATCH +history1 chathistory #lobby"
    );
    let one = alice.line().await;
    assert!(
        one.starts_with("@batch=history1 :bob!~bob@tlschat PRIVMSG #lobby :[")
            && one.ends_with("] one"),
        "{one}"
    );
    let two = alice.line().await;
    assert!(two.ends_with("] two"), "{two}");
    assert_eq!(alice.line().await, ":tlschat BATCH -history1");
}

#[tokio::test]
async fn a_silent_client_is_pinged_then_closed_with_ping_timeout() {
    let mut opts = Opts::default();
    opts.limits.irc_ping_interval = std::time::Duration::from_millis(300);
    let server = spawn_server(opts).await;
    let mut bob = server.login("bob").await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    bob.expect_line("*** alice joined").await;
    assert_eq!(alice.line().await, "PING tlschat");
    assert_eq!(alice.until_closed().await, ["ERROR :Ping timeout"]);
    bob.expect_line("*** alice left (Ping timeout)").await;
}

#[tokio::test]
async fn a_client_that_answers_pings_stays() {
    let mut opts = Opts::default();
    opts.limits.irc_ping_interval = std::time::Duration::from_millis(300);
    let server = spawn_server(opts).await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    for _ in 0..3 {
        assert_eq!(alice.line().await, "PING tlschat");
        alice.send("PONG tlschat").await;
    }
    alice.send("PING still-here").await;
    assert_eq!(alice.line().await, ":tlschat PONG tlschat :still-here");
}

#[tokio::test]
async fn commands_that_only_ask_and_pings_do_not_spend_the_line_rate() {
    let mut opts = Opts::default();
    opts.limits.rate_burst = 1;
    opts.limits.rate_per_sec = 0.01;
    let server = spawn_server(opts).await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    alice
        .send("PRIVMSG #lobby :one line, the whole burst")
        .await;
    for i in 0..20 {
        alice.send(&format!("PING t{i}")).await;
        alice.send("NAMES #lobby").await;
    }
    for i in 0..20 {
        assert_eq!(alice.line().await, format!(":tlschat PONG tlschat :t{i}"));
        alice.line_starting(":tlschat 366 alice #lobby ").await;
    }
}

/// Registered as `name` with the capabilities `caps`.
async fn with_caps(server: &common::TestServer, name: &str, caps: &str) -> IrcClient {
    let mut irc = IrcClient::connect(server).await;
    irc.send(&format!("CAP REQ :{caps}")).await;
    irc.send(&format!("PASS :{PASSWORD}")).await;
    irc.send(&format!("NICK {name}")).await;
    irc.send(&format!("USER {name}u 0 * :{name} R")).await;
    irc.send("CAP END").await;
    irc.line_starting(&format!(":tlschat 366 {name} #lobby "))
        .await;
    irc
}

#[tokio::test]
async fn a_labeled_command_without_an_answer_is_acked() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = with_caps(&server, "alice", "labeled-response").await;
    alice.send("@label=x1 PRIVMSG #lobby :hi").await;
    assert_eq!(alice.line().await, "@label=x1 :tlschat ACK");
}

#[tokio::test]
async fn a_labeled_command_with_one_answer_line_carries_the_label() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = with_caps(&server, "alice", "labeled-response").await;
    alice.send("@label=x2 PING tok").await;
    assert_eq!(alice.line().await, "@label=x2 :tlschat PONG tlschat :tok");
}

#[tokio::test]
async fn a_labeled_join_is_one_batch_with_the_join_and_names() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = with_caps(&server, "alice", "labeled-response batch").await;
    alice.send("@label=x3 JOIN #dev").await;
    assert_eq!(
        alice.line().await,
        "@label=x3 :tlschat BATCH +lr1 labeled-response"
    );
    assert_eq!(
        alice.line().await,
        "@batch=lr1 :alice!~aliceu@tlschat JOIN #dev"
    );
    assert_eq!(
        alice.line().await,
        "@batch=lr1 :tlschat 353 alice = #dev :alice"
    );
    assert_eq!(
        alice.line().await,
        "@batch=lr1 :tlschat 366 alice #dev :End of /NAMES list"
    );
    assert_eq!(alice.line().await, ":tlschat BATCH -lr1");
}

#[tokio::test]
async fn who_and_whois_show_an_irc_members_user_real_name_away_and_rooms() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = with_caps(&server, "alice", "batch").await;
    let mut bob = IrcClient::logged_in(&server, "bob").await;
    alice.send("JOIN #dev").await;
    alice.line_starting(":tlschat 366 alice #dev ").await;
    alice.send("AWAY :lunch").await;
    assert_eq!(
        alice.line().await,
        ":tlschat 306 alice :You have been marked as being away"
    );
    bob.send("WHO alice").await;
    assert_eq!(
        bob.line_starting(":tlschat 352 ").await,
        ":tlschat 352 bob * aliceu tlschat tlschat alice G :0 alice R"
    );
    bob.send("WHOIS alice").await;
    assert_eq!(
        bob.line_starting(":tlschat 311 ").await,
        ":tlschat 311 bob alice aliceu tlschat * :alice R"
    );
    assert_eq!(
        bob.line_starting(":tlschat 319 ").await,
        ":tlschat 319 bob alice :#lobby #dev"
    );
    assert_eq!(
        bob.line_starting(":tlschat 301 ").await,
        ":tlschat 301 bob alice :lunch"
    );
}

#[tokio::test]
async fn a_private_message_to_an_away_member_is_answered_with_301() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    let mut bob = IrcClient::logged_in(&server, "bob").await;
    alice.send("AWAY :back soon").await;
    alice.line_starting(":tlschat 306 ").await;
    bob.send("PRIVMSG alice :hello?").await;
    assert_eq!(bob.line().await, ":tlschat 301 bob alice :back soon");
    assert_eq!(
        alice.line_starting(":bob!").await,
        ":bob!~bob@tlschat PRIVMSG alice :hello?"
    );
}

#[tokio::test]
async fn userhost_shows_masks_and_away_state() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    let _bob = server.login("bob").await;
    alice.send("AWAY :out").await;
    alice.line_starting(":tlschat 306 ").await;
    alice.send("USERHOST alice bob nobody").await;
    assert_eq!(
        alice.line_starting(":tlschat 302 ").await,
        ":tlschat 302 alice :alice=-~alice@tlschat bob=+~bob@tlschat"
    );
}

#[tokio::test]
async fn list_shows_every_room_in_use_and_takes_elist_filters() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = server.login("bob").await;
    bob.send("/join #dev").await;
    bob.wait_for("*** You joined #dev; 1 here: bob").await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    alice.send("LIST").await;
    assert_eq!(
        alice.line().await,
        ":tlschat 321 alice Channel :Users  Name"
    );
    assert_eq!(alice.line().await, ":tlschat 322 alice #dev 1 :");
    assert_eq!(alice.line().await, ":tlschat 322 alice #lobby 2 :");
    assert_eq!(alice.line().await, ":tlschat 323 alice :End of /LIST");
    alice.send("LIST >1").await;
    alice.line_starting(":tlschat 321 ").await;
    assert_eq!(alice.line().await, ":tlschat 322 alice #lobby 2 :");
    assert_eq!(alice.line().await, ":tlschat 323 alice :End of /LIST");
}

#[tokio::test]
async fn a_part_with_a_reason_shows_it_to_the_room_and_to_line_members() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = server.login("bob").await;
    bob.send("/join #dev").await;
    bob.wait_for("*** You joined #dev; 1 here: bob").await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    alice.send("JOIN #dev").await;
    alice.line_starting(":tlschat 366 alice #dev ").await;
    bob.wait_for("[#dev] *** alice joined").await;
    alice.send("PART #dev :off to lunch").await;
    assert_eq!(
        alice.line().await,
        ":alice!~alice@tlschat PART #dev :off to lunch"
    );
    bob.expect_line("[#dev] *** alice left (off to lunch)")
        .await;
}

#[tokio::test]
async fn a_notice_to_a_room_reaches_irc_members_as_a_notice_and_line_members_as_a_chat_line() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = server.login("bob").await;
    let mut carol = IrcClient::logged_in(&server, "carol").await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    carol.line_starting(":alice!").await;
    alice.send("NOTICE #lobby :heads up").await;
    assert_eq!(
        carol.line().await,
        ":alice!~alice@tlschat NOTICE #lobby :heads up"
    );
    bob.wait_for("*** alice joined").await;
    bob.expect_line("<alice> heads up").await;
}

#[tokio::test]
async fn client_only_tags_reach_irc_members_that_take_message_tags_and_are_not_stored() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = with_caps(&server, "bob", "message-tags").await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    bob.line_starting(":alice!").await;
    alice
        .send("@+draft/reply=lobby/1;+x=a\\sb;server=no PRIVMSG #lobby :tagged")
        .await;
    assert_eq!(
        bob.line().await,
        "@+draft/reply=lobby/1;+x=a\\sb;msgid=lobby/1 :alice!~alice@tlschat PRIVMSG #lobby :tagged"
    );
    let mut history = server.login("carol").await;
    history.send("/history 5").await;
    history.wait_for_start("*** History of #lobby").await;
    let line = history.next_line().await;
    assert!(line.ends_with("<alice> tagged"), "{line}");
}

#[tokio::test]
async fn tagmsg_reaches_irc_members_of_the_room_with_message_tags_only() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = with_caps(&server, "bob", "message-tags").await;
    let mut carol = IrcClient::logged_in(&server, "carol").await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    bob.line_starting(":carol!").await;
    bob.line_starting(":alice!").await;
    carol.line_starting(":alice!").await;
    alice.send("@+typing=active TAGMSG #lobby").await;
    let line = bob.line().await;
    assert!(
        line.starts_with("@+typing=active;msgid=pm.")
            && line.ends_with(" :alice!~alice@tlschat TAGMSG #lobby"),
        "{line}"
    );
    alice.send("PRIVMSG #lobby :after").await;
    assert_eq!(
        carol.line().await,
        ":alice!~alice@tlschat PRIVMSG #lobby :after"
    );
}

#[tokio::test]
async fn private_messages_carry_one_msgid_in_both_copies() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = with_caps(&server, "bob", "message-tags").await;
    let mut alice = with_caps(&server, "alice", "message-tags echo-message").await;
    bob.line_starting(":alice!").await;
    alice.send("PRIVMSG bob :one id").await;
    let echo = alice.line().await;
    let got = bob.line().await;
    let msgid = |line: &str| line.split(' ').next().unwrap().to_owned();
    assert!(echo.starts_with("@msgid=pm."), "{echo}");
    assert_eq!(msgid(&echo), msgid(&got));
    assert!(
        echo.ends_with(" :alice!~aliceu@tlschat PRIVMSG bob :one id"),
        "{echo}"
    );
    assert!(
        got.ends_with(" :alice!~alice@tlschat PRIVMSG bob :one id"),
        "{got}"
    );
}

#[tokio::test]
async fn away_notify_tells_other_irc_members_when_someone_goes_away_and_comes_back() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = with_caps(&server, "bob", "away-notify").await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    bob.line_starting(":alice!").await;
    alice.send("AWAY :gone").await;
    assert_eq!(bob.line().await, ":alice!~alice@tlschat AWAY :gone");
    alice.send("AWAY").await;
    assert_eq!(bob.line().await, ":alice!~alice@tlschat AWAY");
}

#[tokio::test]
async fn admin_who_and_the_metrics_name_each_sessions_protocol() {
    let server = spawn_server(Opts::default()).await;
    let _bob = server.login("bob").await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    alice.send("PING sync").await;
    alice.line_starting(":tlschat PONG").await;
    let who = tlschat::admin::execute("who", &server.ctx.room, &server.ctx.metrics).await;
    let protocols: Vec<(&str, &str)> = who
        .lines()
        .filter(|l| *l != "ok")
        .map(|l| {
            (
                l.split('\t').next().unwrap(),
                l.rsplit('\t').next().unwrap(),
            )
        })
        .collect();
    assert_eq!(protocols, [("alice", "irc"), ("bob", "line")], "{who}");
    let metrics = server.ctx.metrics.render(2, 0);
    assert!(
        metrics.contains("tlschat_sessions{protocol=\"irc\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tlschat_sessions{protocol=\"line\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tlschat_sessions{protocol=\"web\"} 0\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_admin_kick_ends_an_irc_session_with_error() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    let reply =
        tlschat::admin::execute("kick alice spam", &server.ctx.room, &server.ctx.metrics).await;
    assert_eq!(reply, "ok\n");
    assert_eq!(
        alice.until_closed().await,
        ["ERROR :You were removed by an administrator (spam)"]
    );
}

#[tokio::test]
async fn admin_say_reaches_irc_members_as_a_notice_in_lobby() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = IrcClient::logged_in(&server, "alice").await;
    let reply = tlschat::admin::execute(
        "say maintenance at 5",
        &server.ctx.room,
        &server.ctx.metrics,
    )
    .await;
    assert_eq!(reply, "ok\n");
    assert_eq!(
        alice.line().await,
        ":tlschat NOTICE #lobby :maintenance at 5"
    );
}

#[tokio::test]
async fn a_labeled_message_to_oneself_labels_only_the_echo() {
    let server = spawn_server(Opts::default()).await;
    let mut alice = with_caps(&server, "alice", "labeled-response echo-message").await;
    alice.send("@label=s1 PRIVMSG alice :note to self").await;
    assert_eq!(
        alice.line().await,
        ":alice!~aliceu@tlschat PRIVMSG alice :note to self"
    );
    assert_eq!(
        alice.line().await,
        "@label=s1 :alice!~aliceu@tlschat PRIVMSG alice :note to self"
    );
}
