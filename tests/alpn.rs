//! ALPN on the chat port: `tlschat` is advertised, clients without ALPN are served, clients
//! that offer only other protocols are refused in the handshake.

mod common;

use common::web::connector_offering;
use common::{Opts, TestClient, spawn_server};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

#[tokio::test]
async fn a_client_offering_tlschat_negotiates_it_and_gets_the_greeting() {
    let server = spawn_server(Opts::default()).await;
    let connector = connector_offering(&server, &[b"h2", b"tlschat"]);
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"tlschat"[..]));
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut c = TestClient::over(tcp, &connector).await;
    c.expect_greeting().await;
}

#[tokio::test]
async fn a_client_without_alpn_is_served_without_a_protocol() {
    let server = spawn_server(Opts::default()).await;
    let connector = connector_offering(&server, &[]);
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
}

#[tokio::test]
async fn a_client_offering_only_other_protocols_is_refused_in_the_handshake() {
    let server = spawn_server(Opts::default()).await;
    let connector = connector_offering(&server, &[b"h2", b"imap"]);
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let err = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect_err("the handshake must fail");
    let text = err.to_string();
    assert!(text.contains("NoApplicationProtocol"), "{text}");
}
