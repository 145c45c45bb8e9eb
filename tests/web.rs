//! The web client on the chat port: ALPN dispatch, the HTTP answers and their headers, the
//! WebSocket upgrade with its origin check, and WebSocket sessions under the same rules as
//! line clients.

mod common;

use std::time::Duration;

use common::web::{
    Closed, browser_tls, connector_offering, request, try_ws, ws, ws_login, ws_login_resuming,
};
use common::{Opts, TestClient, spawn_server, test_limits};
use futures_util::SinkExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A server whose test limits `change` adjusts.
async fn server_with(change: impl FnOnce(&mut tlschat::config::Limits)) -> common::TestServer {
    let mut limits = test_limits();
    change(&mut limits);
    spawn_server(Opts {
        limits,
        ..Opts::default()
    })
    .await
}

fn assert_security_headers(r: &common::web::HttpResponse) {
    assert_eq!(r.header("content-security-policy"), Some(CSP));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("set-cookie"), None);
}

/// The hashed script and style the page names.
fn asset_paths(index: &str) -> Vec<String> {
    index
        .split('"')
        .filter(|s| s.starts_with("/app.") && (s.ends_with(".js") || s.ends_with(".css")))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_browser_handshake_negotiates_http1() {
    let server = spawn_server(Opts::default()).await;
    let tls = browser_tls(&server).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn the_page_is_served_at_the_root_with_security_headers_and_no_store() {
    let server = spawn_server(Opts::default()).await;
    let r = request(&server, "GET", "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_security_headers(&r);
    let page = r.text();
    assert!(
        page.contains(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#)
    );
    assert_eq!(asset_paths(&page).len(), 2, "{page}");
}

#[tokio::test]
async fn assets_carry_a_content_hash_and_are_cached_for_good() {
    let server = spawn_server(Opts::default()).await;
    let page = request(&server, "GET", "/").await.text();
    for path in asset_paths(&page) {
        let hash = path.split('.').nth(1).unwrap();
        assert_eq!(hash.len(), 8, "{path}");
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{path}");
        let r = request(&server, "GET", &path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        let expected = if path.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(r.header("content-type"), Some(expected));
        assert_security_headers(&r);
        assert!(!r.body.is_empty());
    }
}

#[tokio::test]
async fn the_page_names_nothing_outside_its_own_origin() {
    let server = spawn_server(Opts::default()).await;
    let page = request(&server, "GET", "/").await.text();
    let mut texts = vec![page.clone()];
    for path in asset_paths(&page) {
        texts.push(request(&server, "GET", &path).await.text());
    }
    for text in texts {
        assert!(
            !text.contains("http://"),
            "external reference in {text:.80}"
        );
        assert!(!text.contains("//cdn"), "external reference");
        assert!(
            !text.contains("innerHTML"),
            "server text must go in as text"
        );
    }
}

#[tokio::test]
async fn an_unknown_path_is_404_with_the_security_headers() {
    let server = spawn_server(Opts::default()).await;
    let r = request(&server, "GET", "/nope").await;
    assert_eq!(r.status, 404);
    assert_security_headers(&r);
}

#[tokio::test]
async fn metrics_are_not_served_on_the_chat_port() {
    let server = spawn_server(Opts::default()).await;
    assert_eq!(request(&server, "GET", "/metrics").await.status, 404);
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let server = spawn_server(Opts::default()).await;
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let r = request(&server, method, "/").await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
        assert_security_headers(&r);
    }
}

#[tokio::test]
async fn head_answers_the_headers_of_get_without_a_body() {
    let server = spawn_server(Opts::default()).await;
    let get = request(&server, "GET", "/").await;
    let head = request(&server, "HEAD", "/").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), get.header("content-length"));
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn h2_alone_is_refused_in_the_handshake() {
    let server = spawn_server(Opts::default()).await;
    let connector = connector_offering(&server, &[b"h2"]);
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let err = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect_err("the handshake must fail");
    assert!(err.to_string().contains("NoApplicationProtocol"), "{err}");
}

#[tokio::test]
async fn with_web_off_a_browser_handshake_fails_with_no_application_protocol() {
    let server = spawn_server(Opts {
        web: None,
        ..Opts::default()
    })
    .await;
    let connector = connector_offering(&server, &[b"h2", b"http/1.1"]);
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let err = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect_err("the handshake must fail");
    assert!(err.to_string().contains("NoApplicationProtocol"), "{err}");
}

#[tokio::test]
async fn with_web_off_line_clients_are_served_as_before() {
    let server = spawn_server(Opts {
        web: None,
        ..Opts::default()
    })
    .await;
    let connector = connector_offering(&server, &[b"tlschat"]);
    let mut c = TestClient::connect(server.addr, &connector).await;
    c.expect_greeting().await;
}

#[tokio::test]
async fn a_client_offering_tlschat_and_http1_gets_the_line_protocol() {
    let server = spawn_server(Opts::default()).await;
    let connector = connector_offering(&server, &[b"http/1.1", b"tlschat"]);
    let mut c = TestClient::connect(server.addr, &connector).await;
    c.expect_greeting().await;
}

#[tokio::test]
async fn an_upgrade_without_origin_is_forbidden() {
    let server = spawn_server(Opts::default()).await;
    let err = try_ws(&server, None).await.err().expect("must be refused");
    assert!(err.to_string().contains("403"), "{err}");
}

#[tokio::test]
async fn an_upgrade_from_another_origin_is_forbidden() {
    let server = spawn_server(Opts::default()).await;
    let err = try_ws(&server, Some("https://evil.example"))
        .await
        .err()
        .expect("must be refused");
    assert!(err.to_string().contains("403"), "{err}");
}

#[tokio::test]
async fn an_upgrade_from_a_listed_origin_is_accepted() {
    let server = spawn_server(Opts {
        web: Some(tlschat::web::Web::new(&["https://chat.example.org".into()]).unwrap()),
        ..Opts::default()
    })
    .await;
    let mut c = try_ws(&server, Some("https://chat.example.org"))
        .await
        .unwrap();
    c.wait_for("Username:").await;
}

#[tokio::test]
async fn ws_without_an_upgrade_is_a_bad_request() {
    let server = spawn_server(Opts::default()).await;
    assert_eq!(request(&server, "GET", "/ws").await.status, 400);
}

#[tokio::test]
async fn a_websocket_session_gets_the_greeting_and_prompts_in_whole_line_frames() {
    let server = spawn_server(Opts::default()).await;
    let mut c = ws(&server).await;
    let greeting = c.wait_for("Username:").await;
    assert!(!greeting.is_empty());
    assert!(
        greeting.iter().all(|l| l.starts_with("*** ")),
        "{greeting:?}"
    );
    assert!(c.frames >= 1);
}

#[tokio::test]
async fn a_browser_and_a_line_client_chat_with_each_other() {
    let server = spawn_server(Opts::default()).await;
    let mut web = ws_login(&server, "alice").await;
    let mut line = server.login("bob").await;
    web.expect_line("*** bob joined").await;
    line.send("hi from the terminal").await;
    web.expect_line("<bob> hi from the terminal").await;
    web.send("hi from the browser").await;
    line.expect_line("<alice> hi from the browser").await;
}

#[tokio::test]
async fn a_frame_ending_in_lf_is_one_line() {
    let server = spawn_server(Opts::default()).await;
    let mut web = ws_login(&server, "alice").await;
    let mut line = server.login("bob").await;
    web.send("with lf\n").await;
    web.send("/who").await;
    line.expect_line("<alice> with lf").await;
    web.wait_for("*** 2 online: alice, bob").await;
}

#[tokio::test]
async fn a_binary_frame_closes_with_1003() {
    let server = spawn_server(Opts::default()).await;
    let mut web = ws_login(&server, "alice").await;
    web.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    let (_, closed) = web.expect_closed().await;
    assert_eq!(closed, Closed::Code(CloseCode::Unsupported));
}

#[tokio::test]
async fn a_frame_over_the_line_limit_is_dropped_with_line_too_long() {
    let server = spawn_server(Opts::default()).await;
    let mut web = ws_login(&server, "alice").await;
    let mut line = server.login("bob").await;
    web.send(&"x".repeat(5000)).await;
    web.expect_line("*** bob joined").await;
    web.expect_line("! Line too long (max 4096 bytes)").await;
    web.send("still here").await;
    line.expect_line("<alice> still here").await;
}

#[tokio::test]
async fn a_frame_over_the_unterminated_limit_closes_with_1009() {
    let server = spawn_server(Opts::default()).await;
    let mut web = ws_login(&server, "alice").await;
    web.send(&"x".repeat(64 * 1024 + 1)).await;
    let (_, closed) = web.expect_closed().await;
    assert_eq!(closed, Closed::Code(CloseCode::Size));
}

#[tokio::test]
async fn quit_says_bye_and_closes_normally() {
    let server = spawn_server(Opts::default()).await;
    let mut web = ws_login(&server, "alice").await;
    web.send("/quit").await;
    let (lines, closed) = web.expect_closed().await;
    assert_eq!(lines, vec!["*** Bye"]);
    assert_eq!(closed, Closed::Code(CloseCode::Normal));
}

#[tokio::test]
async fn the_login_timeout_applies_to_websocket_sessions() {
    let server = server_with(|l| l.login_timeout = Duration::from_millis(300)).await;
    let mut web = ws(&server).await;
    let (lines, _) = web.expect_closed().await;
    assert_eq!(lines.last().map(String::as_str), Some("! Login timed out"));
}

#[tokio::test]
async fn a_wrong_password_fails_like_on_a_line_client() {
    let server = spawn_server(Opts::default()).await;
    let mut web = ws(&server).await;
    web.wait_for("Username:").await;
    web.send("alice").await;
    web.expect_line("Password:").await;
    web.send("wrong").await;
    web.expect_line("! Login failed").await;
    web.expect_line("Username:").await;
}

#[tokio::test]
async fn flood_control_applies_to_websocket_sessions() {
    let server = server_with(|l| {
        l.rate_burst = 3;
        l.rate_per_sec = 2.0;
    })
    .await;
    let mut web = ws_login(&server, "alice").await;
    for i in 0..4 {
        web.send(&format!("line {i}")).await;
    }
    web.expect_line("! Slow down: at most 2 lines per second")
        .await;
}

#[tokio::test]
async fn a_browser_login_takes_over_a_line_session() {
    let server = spawn_server(Opts::default()).await;
    let mut line = server.login("alice").await;
    let _web = ws_login(&server, "alice").await;
    let lines = line.expect_closed().await;
    assert_eq!(
        lines.last().map(String::as_str),
        Some("! You signed in elsewhere; closing this session")
    );
}

#[tokio::test]
async fn a_line_login_takes_over_a_browser_session() {
    let server = spawn_server(Opts::default()).await;
    let mut web = ws_login(&server, "alice").await;
    let _line = server.login("alice").await;
    let (lines, _) = web.expect_closed().await;
    assert_eq!(
        lines.last().map(String::as_str),
        Some("! You signed in elsewhere; closing this session")
    );
}

#[tokio::test]
async fn browser_and_line_connections_share_the_per_ip_cap() {
    let server = server_with(|l| l.max_connections_per_ip = 2).await;
    let _web = ws_login(&server, "alice").await;
    let _line = server.login("bob").await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut refusal = String::new();
    tokio::time::timeout(common::STEP, tcp.read_to_string(&mut refusal))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(refusal, "! Too many connections\n");
}

#[tokio::test]
async fn a_websocket_client_that_does_not_read_is_evicted_at_the_outbound_bound() {
    let server = server_with(|l| l.outbound_queue_bytes = 8 * 1024).await;
    let _stalled = ws_login(&server, "alice").await;
    let (mut reader, mut writer) = server.login("bob").await.split();
    // 2 MB for alice, who reads none of it: far past the pipe, the socket buffers and the bound.
    let flood = tokio::spawn(async move {
        let line = format!("{}\n", "y".repeat(1000));
        for _ in 0..2_000 {
            if writer.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
        writer
    });
    let expected = "*** alice left (send queue exceeded)\n";
    let mut line = String::new();
    while line != expected {
        line.clear();
        let n = tokio::time::timeout(common::STEP, reader.read_line(&mut line))
            .await
            .expect("no eviction")
            .unwrap();
        assert!(n > 0, "bob's connection closed");
    }
    let _ = flood.await;
}

#[tokio::test]
async fn the_server_pings_websocket_clients() {
    let server = server_with(|l| l.ws_ping_interval = Duration::from_millis(200)).await;
    let mut web = ws_login(&server, "alice").await;
    web.expect_ping().await;
}

#[tokio::test]
async fn a_client_that_answers_no_pings_is_closed() {
    let server = server_with(|l| l.ws_ping_interval = Duration::from_millis(200)).await;
    let mut line = server.login("bob").await;
    // Logged in, then silent: this client never reads again, so it never answers a ping.
    let _silent = ws_login(&server, "alice").await;
    line.wait_for("*** alice joined").await;
    line.expect_line("*** alice left").await;
}

#[tokio::test]
async fn shutdown_tells_websocket_sessions_and_closes_them() {
    let server = spawn_server(Opts::default()).await;
    let mut web = ws_login(&server, "alice").await;
    server.shutdown.cancel();
    let (lines, closed) = web.expect_closed().await;
    assert_eq!(lines, vec!["*** Server shutting down"]);
    assert_eq!(closed, Closed::Code(CloseCode::Normal));
}

#[tokio::test]
async fn a_page_connection_left_open_is_closed_after_the_login_timeout() {
    let server = server_with(|l| l.login_timeout = Duration::from_millis(300)).await;
    let mut tls = browser_tls(&server).await;
    let head = format!(
        "GET / HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
        server.addr.port()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(common::STEP, tls.read_to_end(&mut raw))
        .await
        .expect("the keep-alive connection must be closed")
        .ok();
    assert_eq!(common::web::parse_response(&raw).status, 200);
}

#[tokio::test]
async fn a_browser_that_stopped_reading_catches_up_on_what_it_never_acknowledged() {
    const LINES: usize = 400;
    const BODY: usize = 100;
    let mut limits = common::test_limits();
    limits.outbound_queue_bytes = 64 << 20;
    let server = spawn_server(Opts {
        limits,
        rooms: tlschat::config::RoomLimits {
            catchup_messages: 10_000,
            ..Default::default()
        },
        ..Opts::default()
    })
    .await;
    let mut web = common::web::ws_login_over(&server, "alice", 4096).await;
    let mut bob = server.login("bob").await;
    web.expect_line("*** bob joined").await;
    // The browser stops reading; the rest waits in the server's buffers.
    let body = "x".repeat(BODY);
    for i in 1..=LINES {
        bob.send(&format!("n{i} {body}")).await;
        if i % 10 == 0 {
            bob.send("/who").await;
            bob.wait_for("*** 2 online: alice, bob").await;
        }
    }
    drop(web);
    bob.wait_for("*** alice left").await;
    let mut alice = server.login("alice").await;
    let header = alice.next_line().await;
    assert!(header.starts_with("*** You missed "), "{header}");
    let caught: Vec<usize> = common::block(&mut alice)
        .await
        .iter()
        .filter_map(|l| l.strip_prefix("<bob> n"))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    let first = *caught.first().expect("no catch-up lines");
    assert_eq!(caught, (first..=LINES).collect::<Vec<_>>());
    // Counted as read: what the browser's 4 KiB receive buffer took, not what the session
    // wrote into the bridge and the server's send buffer.
    assert!(
        (first - 1) * (BODY + 12) <= 16 * 1024,
        "the catch-up starts at n{first}"
    );
}

#[tokio::test]
async fn a_websocket_takeover_that_resumes_gets_exactly_the_lines_after_its_numbers() {
    let server = spawn_server(Opts::default()).await;
    let mut first = ws_login_resuming(&server, "alice", "/resume").await;
    let mut bob = server.login("bob").await;
    first.wait_for("*** bob joined").await;
    for i in 1..=10 {
        bob.send(&format!("line {i}")).await;
    }
    first.wait_for("@#lobby:10 <bob> line 10").await;
    let mut second = ws_login_resuming(&server, "alice", "/resume #lobby 6").await;
    let (last, _) = first.expect_closed().await;
    assert_eq!(
        last,
        ["! You signed in elsewhere; closing this session"],
        "the old session sends no room line after the takeover"
    );
    second
        .expect_line("*** You missed 4 messages in #lobby:")
        .await;
    let block = second.wait_for("*** End of history").await;
    let shown: Vec<&str> = block
        .iter()
        .map(|l| {
            let (_, _, text) = tlschat::protocol::split_number(l).unwrap();
            common::untimed(text)
        })
        .collect();
    assert_eq!(
        shown,
        [
            "<bob> line 7",
            "<bob> line 8",
            "<bob> line 9",
            "<bob> line 10"
        ]
    );
    bob.send("live").await;
    second.expect_line("@#lobby:11 <bob> live").await;
}
