//! Behind a load balancer: connections from `trusted_proxies` begin with a PROXY protocol
//! header (v2, or v1 text), and the client it names is the connection's source for caps, logs
//! and `admin who`; without a valid header such a connection is closed; from anywhere else a
//! header is not accepted. Over real TCP and TLS.

mod common;

use common::{Opts, PASSWORD, STEP, TestClient, TestServer, spawn_server, test_limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A server that trusts the test's own address (127.0.0.1) as a load balancer.
async fn behind_a_balancer(limits: tlschat::config::Limits) -> TestServer {
    spawn_server(Opts {
        limits,
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..Opts::default()
    })
    .await
}

/// A PROXY v2 header for a TCP client at `source` (IPv4) talking to 10.0.0.1:7443.
fn v2_header(source: std::net::SocketAddrV4) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&source.ip().octets());
    h.extend_from_slice(&[10, 0, 0, 1]);
    h.extend_from_slice(&source.port().to_be_bytes());
    h.extend_from_slice(&7443u16.to_be_bytes());
    h
}

/// A TLS client whose connection starts with `header`.
async fn through_balancer(server: &TestServer, header: &[u8]) -> TestClient {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(header).await.unwrap();
    TestClient::over(tcp, &server.connector).await
}

/// The address `admin who` would show for `name`.
fn source_of(server: &TestServer, name: &str) -> std::net::SocketAddr {
    let sessions = server.ctx.room.presence().sessions();
    sessions
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} is not online"))
        .peer
}

#[tokio::test]
async fn a_v2_header_from_a_trusted_proxy_names_the_client() {
    let server = behind_a_balancer(test_limits()).await;
    let mut alice =
        through_balancer(&server, &v2_header("203.0.113.7:50000".parse().unwrap())).await;
    alice.login("alice", PASSWORD).await;
    assert_eq!(
        source_of(&server, "alice"),
        "203.0.113.7:50000".parse().unwrap()
    );
}

#[tokio::test]
async fn a_v1_text_header_is_accepted_too() {
    let server = behind_a_balancer(test_limits()).await;
    let header = b"PROXY TCP4 198.51.100.2 10.0.0.1 40000 7443\r\n";
    let mut alice = through_balancer(&server, header).await;
    alice.login("alice", PASSWORD).await;
    assert_eq!(
        source_of(&server, "alice"),
        "198.51.100.2:40000".parse().unwrap()
    );
}

#[tokio::test]
async fn per_ip_caps_count_the_client_the_header_names_not_the_balancer() {
    let server = behind_a_balancer(tlschat::config::Limits {
        max_connections_per_ip: 1,
        ..test_limits()
    })
    .await;
    let mut first = through_balancer(&server, &v2_header("203.0.113.7:1".parse().unwrap())).await;
    first.expect_greeting().await;
    // Another client behind the same balancer is admitted.
    let mut other = through_balancer(&server, &v2_header("203.0.113.8:1".parse().unwrap())).await;
    other.expect_greeting().await;
    // The first client again is over its cap.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&v2_header("203.0.113.7:2".parse().unwrap()))
        .await
        .unwrap();
    let mut refused = Vec::new();
    tokio::time::timeout(STEP, tcp.read_to_end(&mut refused))
        .await
        .expect("not closed")
        .unwrap();
    assert_eq!(refused, b"! Too many connections\n");
}

#[tokio::test]
async fn a_trusted_proxy_connection_without_a_header_is_closed() {
    let server = behind_a_balancer(test_limits()).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let handshake = tokio::time::timeout(STEP, server.connector.connect(name, tcp))
        .await
        .expect("the server neither closed nor answered");
    assert!(
        handshake.is_err(),
        "a TLS handshake without a header was served"
    );
}

#[tokio::test]
async fn a_header_from_an_address_not_trusted_is_not_accepted() {
    let server = spawn_server(Opts {
        trusted_proxies: vec!["10.0.0.5".parse().unwrap()],
        ..Opts::default()
    })
    .await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&v2_header("203.0.113.7:50000".parse().unwrap()))
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(STEP, tcp.read_to_end(&mut answer))
        .await
        .expect("not closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("This port speaks TLS."), "{answer}");
}

#[tokio::test]
async fn a_malformed_header_from_a_trusted_proxy_is_closed_without_an_answer() {
    let server = behind_a_balancer(test_limits()).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"PROXY TCP4 not-an-address 10.0.0.1 1 2\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // Closed (EOF or reset) with nothing written.
    let _ = tokio::time::timeout(STEP, tcp.read_to_end(&mut answer))
        .await
        .expect("not closed");
    assert!(answer.is_empty(), "{answer:?}");
}
