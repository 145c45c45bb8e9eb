//! Scraping `--metrics-listen` on the real binary.

mod common;

use std::io::{Read, Write};

use common::bin::{add_users, serve};
use common::{PASSWORD, TestClient};

fn scrape(addr: &str) -> String {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing:\n{body}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_scrape_lists_the_series_and_counts_logins() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_users(d, &["alice", "bob"], PASSWORD);
    let s = serve(d, &["--metrics-listen", "127.0.0.1:0"]);
    let url = s
        .printed
        .iter()
        .find_map(|l| l.strip_prefix("metrics on http://"))
        .expect("metrics address printed")
        .trim_end_matches("/metrics")
        .to_owned();
    let connector = common::bin::connector_for_dir(d);
    let mut alice = TestClient::connect(s.addr, &connector).await;
    alice.login("alice", PASSWORD).await;
    let mut bob = TestClient::connect(s.addr, &connector).await;
    bob.expect_greeting().await;
    bob.send("bob").await;
    bob.expect_line("Password:").await;
    bob.send("wrong password").await;
    bob.expect_line("! Login failed").await;
    bob.expect_line("Username:").await;
    bob.send("bob").await;
    bob.expect_line("Password:").await;
    bob.send(PASSWORD).await;
    bob.expect_line("*** Welcome, bob! 2 online: alice, bob")
        .await;
    alice.expect_line("*** bob joined").await;
    bob.send("hello").await;
    alice.expect_line("<bob> hello").await;

    let body = scrape(&url);
    for series in [
        "tlschat_connections_open",
        "tlschat_connections_accepted_total",
        "tlschat_tls_handshake_failures_total",
        "tlschat_logins_total{result=\"throttled\"}",
        "tlschat_members_online",
        "tlschat_room_events_total",
        "tlschat_deliveries_total",
        "tlschat_bytes_sent_total",
        "tlschat_evictions_total{reason=\"send_queue\"}",
        "tlschat_password_check_queue_depth",
        "tlschat_password_check_seconds_count",
        "tlschat_delivery_latency_seconds_count",
    ] {
        value(&body, series);
    }
    assert_eq!(value(&body, "tlschat_logins_total{result=\"ok\"}"), 2.0);
    assert_eq!(value(&body, "tlschat_logins_total{result=\"failed\"}"), 1.0);
    assert_eq!(value(&body, "tlschat_members_online"), 2.0);
    assert_eq!(value(&body, "tlschat_connections_open"), 2.0);
    assert_eq!(value(&body, "tlschat_password_check_seconds_count"), 3.0);
    assert!(value(&body, "tlschat_deliveries_total") >= 2.0);
    assert!(value(&body, "tlschat_bytes_sent_total") > 0.0);
}

fn metrics_url(s: &common::bin::Serve) -> String {
    s.printed
        .iter()
        .find_map(|l| l.strip_prefix("metrics on http://"))
        .expect("metrics address printed")
        .trim_end_matches("/metrics")
        .to_owned()
}

#[test]
fn fifth_concurrent_slow_scraper_is_refused_and_slots_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let url = metrics_url(&s);
    // Four clients that never send a request hold every slot (each for at most 2 s).
    let slow: Vec<std::net::TcpStream> = (0..4)
        .map(|_| std::net::TcpStream::connect(&url).unwrap())
        .collect();
    let mut fifth = std::net::TcpStream::connect(&url).unwrap();
    fifth
        .set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    let mut response = String::new();
    fifth.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{response}"
    );
    drop(slow);
    // The slots are free again once the slow clients are gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let body = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "slots never came back"
        );
        let mut tcp = std::net::TcpStream::connect(&url).unwrap();
        let _ = tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut response = String::new();
        // A refusal closes without reading the request, which may reset the connection.
        if tcp.read_to_string(&mut response).is_err() {
            continue;
        }
        if let Some(body) = response.strip_prefix("HTTP/1.1 200 OK\r\n") {
            break body.to_owned();
        }
        assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    };
    assert!(body.contains("tlschat_connections_open"));
}

#[test]
fn a_non_loopback_metrics_address_needs_the_explicit_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::bin::tlschat(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--db", "users.db"])
        .args(["--metrics-listen", "0.0.0.0:0"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve metrics on 0.0.0.0:0"),
        "{err}"
    );
    assert!(err.contains("--metrics-public"), "{err}");
    let s = serve(
        dir.path(),
        &["--metrics-listen", "0.0.0.0:0", "--metrics-public"],
    );
    let port = metrics_url(&s).rsplit(':').next().unwrap().to_owned();
    let body = scrape(&format!("127.0.0.1:{port}"));
    assert!(body.contains("tlschat_members_online"));
}

#[tokio::test]
async fn a_client_cut_off_for_no_newline_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let url = metrics_url(&s);
    let connector = common::bin::connector_for_dir(dir.path());
    let mut c = TestClient::connect(s.addr, &connector).await;
    c.expect_greeting().await;
    let _ = c.try_send_raw(&vec![b'x'; 70 * 1024]).await;
    let lines = c.expect_closed().await;
    assert_eq!(
        lines.last().map(String::as_str),
        Some("! Too much data without a newline")
    );
    assert_eq!(
        value(
            &scrape(&url),
            "tlschat_evictions_total{reason=\"no_newline\"}"
        ),
        1.0
    );
}
