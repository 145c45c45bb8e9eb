//! The web client in headless Chromium against a real server: keyboard login, chat with a
//! line client, rooms with unread counts, timestamps, reconnect with catch-up, a phone-sized
//! screen, and the screenshot in the README. Skips when Chromium is missing (unless
//! `TLSCHAT_REQUIRE_ALL=1`).

mod common;

use std::net::SocketAddr;

use common::chrome::{Browser, chromium};
use common::proxy::Proxy;
use common::sclient::SClient;
use common::{Opts, TestServer, spawn_server};
use serde_json::json;
use tokio::net::TcpListener;

/// A page open on `addr` (the server, or a proxy in front of it), logged in as alice with
/// the keyboard only: the username field has the focus, Tab moves to the password, Enter
/// submits.
async fn logged_in_page(server: &TestServer, addr: SocketAddr) -> Option<Browser> {
    let binary = chromium()?;
    let mut page = Browser::start(&binary, &server.cert_der).await;
    page.open(&format!("https://localhost:{}/", addr.port()))
        .await;
    page.wait_for(
        "the username field to have the focus",
        "document.activeElement && document.activeElement.id === 'username'",
    )
    .await;
    page.type_text("alice").await;
    page.press("Tab").await;
    page.type_text(common::PASSWORD).await;
    page.press("Enter").await;
    page.wait_for(
        "the chat view",
        "!document.getElementById('chat-view').hidden && \
         document.activeElement.id === 'message'",
    )
    .await;
    Some(page)
}

const BOB_ONLINE: &str = "document.getElementById('people-list').textContent.includes('bob')";
const DEV_SHOWN: &str = "document.getElementById('room-title').textContent === '#dev'";
const LOBBY_UNREAD: &str = "!!document.querySelector('[data-room=\"#lobby\"] .unread')";

/// Types a line into the message field and sends it with Enter.
async fn say(page: &mut Browser, line: &str) {
    page.eval("document.getElementById('message').focus()")
        .await;
    page.type_text(line).await;
    page.press("Enter").await;
}

fn log_contains(text: &str) -> String {
    format!(
        "[...document.querySelectorAll('#log li')].some(li => li.textContent === {})",
        json!(text)
    )
}

#[tokio::test]
async fn a_keyboard_login_chats_both_ways_with_an_s_client_user() {
    let server = spawn_server(Opts::default()).await;
    let Some(mut page) = logged_in_page(&server, server.addr).await else {
        return;
    };
    let mut bob: SClient = common::sclient::login(&server, "bob", &[]).await;
    page.wait_for("bob in the online list", BOB_ONLINE).await;
    bob.send("hello from a terminal").await;
    page.wait_for("bob's line", &log_contains("<bob> hello from a terminal"))
        .await;
    say(&mut page, "hi bob").await;
    bob.wait_for("<alice> hi bob").await;
    page.wait_for("alice's own line", &log_contains("<alice> hi bob"))
        .await;
}

#[tokio::test]
async fn markup_from_an_s_client_user_shows_as_text_and_runs_nothing() {
    let server = spawn_server(Opts::default()).await;
    let Some(mut page) = logged_in_page(&server, server.addr).await else {
        return;
    };
    page.eval(
        "window.__ran = []; window.alert = (x) => window.__ran.push('alert ' + x); \
         document.addEventListener('securitypolicyviolation', \
           (e) => window.__ran.push('csp ' + e.violatedDirective));",
    )
    .await;
    let mut bob = common::sclient::login(&server, "bob", &[]).await;
    bob.send("<img src=x onerror=alert(1)><b>bold</b>").await;
    page.wait_for(
        "bob's line",
        &log_contains("<bob> <img src=x onerror=alert(1)><b>bold</b>"),
    )
    .await;
    let elements = page
        .eval("document.querySelectorAll('img, #log b').length")
        .await;
    assert_eq!(elements, json!(0));
    assert_eq!(page.eval("window.__ran").await, json!([]));
}

#[tokio::test]
async fn the_input_keeps_a_history_for_up_and_down() {
    let server = spawn_server(Opts::default()).await;
    let Some(mut page) = logged_in_page(&server, server.addr).await else {
        return;
    };
    say(&mut page, "first").await;
    say(&mut page, "second").await;
    page.press("ArrowUp").await;
    page.press("ArrowUp").await;
    assert_eq!(
        page.eval("document.getElementById('message').value").await,
        json!("first")
    );
    page.press("ArrowDown").await;
    assert_eq!(
        page.eval("document.getElementById('message').value").await,
        json!("second")
    );
}

#[tokio::test]
async fn a_room_not_shown_counts_unread_lines_and_choosing_it_makes_it_current() {
    let server = spawn_server(Opts::default()).await;
    let Some(mut page) = logged_in_page(&server, server.addr).await else {
        return;
    };
    let mut bob = server.login("bob").await;
    say(&mut page, "/join #dev").await;
    page.wait_for("#dev shown", DEV_SHOWN).await;
    page.wait_for(
        "a #dev entry among the rooms",
        "document.querySelector('[data-room=\"#dev\"]').getAttribute('aria-current') === 'true'",
    )
    .await;
    bob.send("while alice looks at #dev").await;
    page.wait_for(
        "an unread count on #lobby",
        "(document.querySelector('[data-room=\"#lobby\"] .unread') || {}).textContent === '1'",
    )
    .await;
    page.eval("document.querySelector('[data-room=\"#lobby\"]').click()")
        .await;
    page.wait_for(
        "#lobby shown without a count",
        "document.getElementById('room-title').textContent === '#lobby' && \
         !document.querySelector('[data-room=\"#lobby\"] .unread')",
    )
    .await;
    // The server made #lobby current again: a plain line goes there, without a prefix.
    say(&mut page, "back in the lobby").await;
    bob.wait_for("<alice> back in the lobby").await;
}

#[tokio::test]
async fn the_online_list_follows_joins_and_leaves_of_the_current_room() {
    let server = spawn_server(Opts::default()).await;
    let Some(mut page) = logged_in_page(&server, server.addr).await else {
        return;
    };
    let mut bob = server.login("bob").await;
    let _carol = server.login("carol").await;
    bob.send("/join #dev").await;
    bob.wait_for_start("*** You joined #dev").await;
    say(&mut page, "/join #dev").await;
    page.wait_for(
        "alice and bob listed in #dev",
        "document.getElementById('people-title').textContent === '2 online in #dev' && \
         document.getElementById('people-list').textContent === 'alicebob'",
    )
    .await;
    bob.send("/part").await;
    page.wait_for(
        "bob gone from #dev",
        "document.getElementById('people-title').textContent === '1 online in #dev' && \
         document.getElementById('people-list').textContent === 'alice'",
    )
    .await;
}

#[tokio::test]
async fn history_lines_show_their_timestamps() {
    let server = spawn_server(Opts::default()).await;
    let mut bob = server.login("bob").await;
    bob.send("stored one").await;
    bob.send("stored two").await;
    bob.send("/history").await;
    bob.wait_for("*** End of history").await;
    let Some(mut page) = logged_in_page(&server, server.addr).await else {
        return;
    };
    say(&mut page, "/history 2").await;
    page.wait_for(
        "two timestamped lines",
        "[...document.querySelectorAll('#log li')].filter(li => \
           li.querySelector('time') && /^\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d<bob> stored (one|two)$/\
             .test(li.textContent)).length === 2",
    )
    .await;
}

const CONNECTION_LOST: &str =
    "document.getElementById('status').textContent.startsWith('Connection lost')";
const MISSED_LINE: &str = "[...document.querySelectorAll('#log li')].some(li => \
    li.querySelector('time') && li.textContent.endsWith('<bob> while you were away'))";

#[tokio::test]
async fn after_a_network_drop_the_page_logs_in_again_and_shows_the_catch_up() {
    let server = spawn_server(Opts::default()).await;
    let proxy = Proxy::start(server.addr).await;
    let Some(mut page) = logged_in_page(&server, proxy.addr).await else {
        return;
    };
    let mut bob = server.login("bob").await;
    page.wait_for("bob in the online list", BOB_ONLINE).await;
    proxy.drop_network();
    bob.wait_for("*** alice left").await;
    bob.send("while you were away").await;
    page.wait_for("the drop shown", CONNECTION_LOST).await;
    proxy.restore(server.addr);
    bob.wait_for("*** alice joined").await;
    page.wait_for(
        "the catch-up block",
        &log_contains("*** You missed 1 message in #lobby:"),
    )
    .await;
    page.wait_for("the missed line with its time", MISSED_LINE)
        .await;
}

/// The numbers of bob's `n…` lines in the log, live or stamped, in the order shown.
const BOBS_NUMBERS: &str = "[...document.querySelectorAll('#log li')]\
    .map(li => /<bob> n(\\d+)$/.exec(li.textContent)).filter(m => m).map(m => Number(m[1]))";

/// Takes the browser off the network (`offline`) or puts it back, as DevTools does.
async fn set_offline(page: &mut Browser, offline: bool) {
    let conditions = json!({
        "offline": offline,
        "latency": 0,
        "downloadThroughput": -1,
        "uploadThroughput": -1,
    });
    page.call("Network.emulateNetworkConditions", conditions)
        .await;
}

#[tokio::test]
async fn after_the_browser_was_offline_while_300_lines_flowed_each_is_shown_once_in_order() {
    let server = spawn_server(Opts::default()).await;
    let proxy = Proxy::start(server.addr).await;
    let Some(mut page) = logged_in_page(&server, proxy.addr).await else {
        return;
    };
    page.call("Network.enable", json!({})).await;
    let mut bob = server.login("bob").await;
    page.wait_for("bob in the online list", BOB_ONLINE).await;
    bob.send("n1").await;
    page.wait_for("line 1", &log_contains("<bob> n1")).await;
    for i in 2..=150 {
        bob.send(&format!("n{i}")).await;
    }
    // Cut while those lines are on their way.
    set_offline(&mut page, true).await;
    proxy.drop_network();
    page.wait_for("the drop shown", CONNECTION_LOST).await;
    for i in 151..=300 {
        bob.send(&format!("n{i}")).await;
    }
    proxy.restore(server.addr);
    set_offline(&mut page, false).await;
    page.wait_for("line 300", &format!("{BOBS_NUMBERS}.includes(300)"))
        .await;
    let shown = page.eval(BOBS_NUMBERS).await;
    assert_eq!(shown, json!((1..=300).collect::<Vec<u32>>()));
}

#[tokio::test]
async fn after_a_server_restart_the_page_logs_in_again_and_shows_the_catch_up() {
    let server = spawn_server(Opts::default()).await;
    let proxy = Proxy::start(server.addr).await;
    let Some(mut page) = logged_in_page(&server, proxy.addr).await else {
        return;
    };
    // Until bob has spoken, the page's attempts to log in again find nobody listening.
    proxy.block();
    let server = server.restart(Opts::default()).await;
    page.wait_for("the drop shown", CONNECTION_LOST).await;
    let mut bob = server.login("bob").await;
    bob.send("while you were away").await;
    proxy.restore(server.addr);
    bob.wait_for("*** alice joined").await;
    page.wait_for(
        "the catch-up block",
        &log_contains("*** You missed 1 message in #lobby:"),
    )
    .await;
    page.wait_for("the missed line with its time", MISSED_LINE)
        .await;
}

/// A page of another origin (plain HTTP on its own port) that opens a WebSocket to the chat
/// server on `?port=`; `window.result` resolves to how that went.
async fn foreign_page() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let html = "<!doctype html><script>window.result = new Promise(done => { \
           const port = new URLSearchParams(location.search).get('port'); \
           const ws = new WebSocket('wss://localhost:' + port + '/ws'); \
           ws.onopen = () => done('open'); \
           ws.onclose = (e) => done('closed ' + e.code); });</script>";
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = tcp.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

/// How the foreign page's WebSocket to `server` went.
async fn from_foreign_page(server: &TestServer, foreign: SocketAddr) -> Option<serde_json::Value> {
    let binary = chromium()?;
    let mut page = Browser::start(&binary, &server.cert_der).await;
    let url = format!(
        "http://127.0.0.1:{}/?port={}",
        foreign.port(),
        server.addr.port()
    );
    page.call("Page.navigate", json!({ "url": url })).await;
    page.wait_for("the foreign page", "typeof window.result === 'object'")
        .await;
    Some(page.eval("window.result").await)
}

#[tokio::test]
async fn a_page_of_another_origin_cannot_open_a_websocket() {
    let server = spawn_server(Opts::default()).await;
    let foreign = foreign_page().await;
    let Some(result) = from_foreign_page(&server, foreign).await else {
        return;
    };
    // 1006: the handshake was refused (the server answered 403), so no session opened.
    assert_eq!(result, json!("closed 1006"));
}

#[tokio::test]
async fn a_page_of_a_listed_origin_opens_a_websocket() {
    let foreign = foreign_page().await;
    let origin = format!("http://127.0.0.1:{}", foreign.port());
    let server = spawn_server(Opts {
        web: Some(tlschat::web::Web::new(&[origin]).unwrap()),
        ..Opts::default()
    })
    .await;
    let Some(result) = from_foreign_page(&server, foreign).await else {
        return;
    };
    assert_eq!(result, json!("open"));
}

/// Opens a second WebSocket from the page, logs in as `name`, sends `frame` (a string, or
/// bytes when `binary`), and resolves to the first line after the welcome, or to how the
/// socket closed.
fn second_socket(port: u16, name: &str, frame: &str, binary: bool) -> String {
    format!(
        "new Promise(done => {{ \
           const ws = new WebSocket('wss://localhost:{port}/ws'); \
           let welcomed = false; \
           ws.onmessage = (e) => {{ for (const line of e.data.split('\\n')) {{ \
             if (line === 'Username:') ws.send({name}); \
             else if (line === 'Password:') ws.send({password}); \
             else if (line.startsWith('*** Welcome, ')) {{ welcomed = true; \
               ws.send({binary} ? new Uint8Array([1, 2, 3]) : {frame}); }} \
             else if (welcomed && line) done('line ' + line); }} }}; \
           ws.onclose = (e) => done('closed ' + e.code); }})",
        name = json!(name),
        password = json!(common::PASSWORD),
        frame = json!(frame),
    )
}

#[tokio::test]
async fn a_binary_frame_from_the_browser_closes_with_1003() {
    let server = spawn_server(Opts::default()).await;
    let Some(mut page) = logged_in_page(&server, server.addr).await else {
        return;
    };
    let result = page
        .eval(&second_socket(server.addr.port(), "bob", "", true))
        .await;
    assert_eq!(result, json!("closed 1003"));
}

#[tokio::test]
async fn an_over_long_frame_from_the_browser_gets_the_error() {
    let server = spawn_server(Opts::default()).await;
    let Some(mut page) = logged_in_page(&server, server.addr).await else {
        return;
    };
    let result = page
        .eval(&second_socket(
            server.addr.port(),
            "bob",
            &"x".repeat(5000),
            false,
        ))
        .await;
    assert_eq!(result, json!("line ! Line too long (max 4096 bytes)"));
}

#[tokio::test]
async fn the_page_fits_a_phone_screen_without_horizontal_scroll() {
    let server = spawn_server(Opts::default()).await;
    let Some(binary) = chromium() else { return };
    let mut page = Browser::start(&binary, &server.cert_der).await;
    page.viewport(360, 740, true).await;
    page.open(&format!("https://localhost:{}/", server.addr.port()))
        .await;
    let fits = "document.documentElement.scrollWidth <= 360 && \
                document.body.scrollWidth <= 360";
    assert_eq!(page.eval(fits).await, json!(true), "login view");
    page.eval("document.getElementById('username').value = 'alice'")
        .await;
    page.eval(&format!(
        "document.getElementById('password').value = {}",
        json!(common::PASSWORD)
    ))
    .await;
    page.eval("document.getElementById('login-form').requestSubmit()")
        .await;
    page.wait_for(
        "the chat view",
        "!document.getElementById('chat-view').hidden",
    )
    .await;
    say(&mut page, "/join #a-rather-long-room-name-here").await;
    let mut bob = server.login("bob").await;
    bob.send(&"a-very-long-word-without-any-space-".repeat(6))
        .await;
    page.wait_for("#lobby unread", LOBBY_UNREAD).await;
    assert_eq!(page.eval(fits).await, json!(true), "chat view");
    let png = page.screenshot().await;
    // The PNG's width (bytes 16..20 of the IHDR chunk): 360 CSS pixels at 2 device pixels each.
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 720);
}

/// Writes `docs/web.png` when `TLSCHAT_SCREENSHOT` names a path (the README's picture);
/// otherwise checks that a screenshot is taken.
#[tokio::test]
async fn a_screenshot_of_a_conversation() {
    let server = spawn_server(Opts::default()).await;
    let Some(mut page) = logged_in_page(&server, server.addr).await else {
        return;
    };
    page.viewport(1024, 600, false).await;
    let (mut bob, mut carol) = (server.login("bob").await, server.login("carol").await);
    bob.send("morning! the build is green again").await;
    say(&mut page, "/join #dev").await;
    page.wait_for("#dev shown", DEV_SHOWN).await;
    carol.send("/join #dev").await;
    carol.wait_for_start("*** You joined #dev").await;
    say(&mut page, "who is reviewing the rooms change?").await;
    carol
        .wait_for("[#dev] <alice> who is reviewing the rooms change?")
        .await;
    carol.send("me, after lunch").await;
    carol.send("/me pours coffee").await;
    bob.send("lunch anyone?").await;
    page.wait_for("carol's action", &log_contains("* carol pours coffee"))
        .await;
    page.wait_for("#lobby unread", LOBBY_UNREAD).await;
    let png = page.screenshot().await;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    if let Ok(path) = std::env::var("TLSCHAT_SCREENSHOT") {
        std::fs::write(&path, &png).unwrap();
    }
}

#[tokio::test]
async fn a_failed_login_is_shown_on_the_form() {
    let server = spawn_server(Opts::default()).await;
    let Some(binary) = chromium() else { return };
    let mut page = Browser::start(&binary, &server.cert_der).await;
    page.open(&format!("https://localhost:{}/", server.addr.port()))
        .await;
    page.type_text("alice").await;
    page.press("Tab").await;
    page.type_text("not the password").await;
    page.press("Enter").await;
    page.wait_for(
        "the error on the form",
        "document.getElementById('login-error').textContent === \
         'Login failed: check the username and password.' && \
         document.getElementById('chat-view').hidden",
    )
    .await;
}

#[tokio::test]
async fn every_field_has_a_label_for_screen_readers() {
    let server = spawn_server(Opts::default()).await;
    let Some(mut page) = logged_in_page(&server, server.addr).await else {
        return;
    };
    let unlabelled = page
        .eval("[...document.querySelectorAll('input')].filter(i => i.labels.length === 0).length")
        .await;
    assert_eq!(unlabelled, json!(0));
}

#[tokio::test]
async fn a_name_has_the_same_colour_on_every_line() {
    let server = spawn_server(Opts::default()).await;
    let Some(mut page) = logged_in_page(&server, server.addr).await else {
        return;
    };
    let mut bob = server.login("bob").await;
    bob.send("one").await;
    bob.send("/me two").await;
    page.wait_for("bob's action", &log_contains("* bob two"))
        .await;
    let colours = page
        .eval(
            "[...new Set([...document.querySelectorAll('#log .name, #people-list .name')]\
               .filter(n => n.textContent === 'bob').map(n => n.className))]",
        )
        .await;
    assert_eq!(colours.as_array().map(Vec::len), Some(1), "{colours}");
}

#[tokio::test]
async fn the_log_follows_new_lines_only_while_scrolled_to_the_bottom() {
    let server = spawn_server(Opts::default()).await;
    let Some(mut page) = logged_in_page(&server, server.addr).await else {
        return;
    };
    page.viewport(800, 400, false).await;
    let mut bob = server.login("bob").await;
    for i in 0..40 {
        bob.send(&format!("filler {i}")).await;
    }
    page.wait_for("the fillers", &log_contains("<bob> filler 39"))
        .await;
    let at_bottom = "(() => { const l = document.getElementById('log'); \
                     return l.scrollHeight - l.scrollTop - l.clientHeight < 2; })()";
    page.wait_for("the log at the bottom", at_bottom).await;
    page.eval("document.getElementById('log').scrollTop = 0")
        .await;
    bob.send("while scrolled up").await;
    page.wait_for("the new line", &log_contains("<bob> while scrolled up"))
        .await;
    assert_eq!(
        page.eval("document.getElementById('log').scrollTop").await,
        json!(0)
    );
}
