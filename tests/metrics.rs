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
