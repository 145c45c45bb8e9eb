//! Browser-side helpers: HTTP/1.1 requests and WebSocket sessions over TLS with ALPN
//! `http/1.1`, as a browser opens them.

use std::collections::VecDeque;
use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{PASSWORD, STEP, TestServer};

/// A TLS client configuration trusting the test server that offers `protocols`.
pub fn connector_offering(server: &TestServer, protocols: &[&[u8]]) -> TlsConnector {
    connector_trusting(&server.cert_der, protocols)
}

/// A TLS client configuration trusting `cert` that offers `protocols`.
pub fn connector_trusting(cert: &CertificateDer<'static>, protocols: &[&[u8]]) -> TlsConnector {
    super::connector_offering_to(std::slice::from_ref(cert), protocols)
}

/// A handshake as Chrome offers it: `h2` and `http/1.1`.
pub async fn browser_tls(server: &TestServer) -> TlsStream<TcpStream> {
    browser_tls_to(server.addr, &server.cert_der).await
}

/// Like [`browser_tls`], to any server trusting `cert`.
pub async fn browser_tls_to(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
) -> TlsStream<TcpStream> {
    let connector = connector_trusting(cert, &[b"h2", b"http/1.1"]);
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio::time::timeout(
        STEP,
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .expect("handshake timed out")
    .unwrap()
}

/// One HTTP response, as read off the wire.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

/// Sends `METHOD PATH` with `Connection: close` and reads the whole answer.
pub async fn request(server: &TestServer, method: &str, path: &str) -> HttpResponse {
    let mut tls = browser_tls(server).await;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
        server.addr.port()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(STEP, tls.read_to_end(&mut raw))
        .await
        .expect("timed out reading the response");
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    HttpResponse {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

/// The origin of the test server's own page.
pub fn own_origin(server: &TestServer) -> String {
    format!("https://localhost:{}", server.addr.port())
}

/// Opens `/ws` with `origin` (none when `None`); the error is the HTTP refusal.
pub async fn try_ws(
    server: &TestServer,
    origin: Option<&str>,
) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
    try_ws_to(server.addr, &server.cert_der, origin).await
}

/// Like [`try_ws`], to any server trusting `cert`.
pub async fn try_ws_to(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
    origin: Option<&str>,
) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
    let tls = browser_tls_to(addr, cert).await;
    ws_over(tls, addr, origin).await
}

/// Opens `/ws` over a TLS connection already made to `addr`.
pub async fn ws_over(
    tls: TlsStream<TcpStream>,
    addr: SocketAddr,
    origin: Option<&str>,
) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("wss://localhost:{}/ws", addr.port())
        .into_client_request()
        .unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    let (ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::client_async(request, tls))
        .await
        .expect("websocket handshake timed out")?;
    Ok(WsClient {
        ws,
        lines: VecDeque::new(),
        frames: 0,
    })
}

/// A WebSocket opened from the page's own origin.
pub async fn ws(server: &TestServer) -> WsClient {
    try_ws(server, Some(&own_origin(server))).await.unwrap()
}

/// A WebSocket session logged in as `name`, past the welcome line.
pub async fn ws_login(server: &TestServer, name: &str) -> WsClient {
    ws_login_as(ws(server).await, name).await
}

/// Like [`ws_login`], over a socket with a `recv_buffer`-byte receive buffer.
pub async fn ws_login_over(server: &TestServer, name: &str, recv_buffer: u32) -> WsClient {
    let tcp = super::tcp_from(server.addr, "127.0.0.1", Some(recv_buffer)).await;
    let connector = connector_trusting(&server.cert_der, &[b"h2", b"http/1.1"]);
    let tls = tokio::time::timeout(
        STEP,
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .expect("handshake timed out")
    .unwrap();
    let origin = own_origin(server);
    let c = ws_over(tls, server.addr, Some(&origin)).await.unwrap();
    ws_login_as(c, name).await
}

/// A WebSocket session of `name` that sent `resume` (a `/resume …` line) before its
/// username, past the welcome line.
pub async fn ws_login_resuming(server: &TestServer, name: &str, resume: &str) -> WsClient {
    let mut c = ws(server).await;
    c.wait_for("Username:").await;
    c.send(resume).await;
    c.expect_line("*** Numbered lines on").await;
    ws_login_as(c, name).await
}

/// Logs `c` in as `name`, past the welcome line.
async fn ws_login_as(mut c: WsClient, name: &str) -> WsClient {
    c.wait_for("Username:").await;
    c.send(name).await;
    c.expect_line("Password:").await;
    c.send(PASSWORD).await;
    let welcome = c.next_line().await;
    assert!(welcome.starts_with("*** Welcome, "), "{welcome}");
    c
}

/// How a WebSocket ended.
#[derive(Debug, PartialEq)]
pub enum Closed {
    /// A close frame with this code.
    Code(CloseCode),
    /// The connection ended without a close frame.
    NoFrame,
}

pub struct WsClient {
    pub ws: WebSocketStream<TlsStream<TcpStream>>,
    lines: VecDeque<String>,
    /// Text frames received so far.
    pub frames: usize,
}

impl WsClient {
    /// Sends one text frame holding `line` (no LF: the server adds it).
    pub async fn send(&mut self, line: &str) {
        self.ws.send(Message::text(line)).await.unwrap();
    }

    /// The next frame; a text frame's lines are queued, and every text frame must hold
    /// whole LF-terminated lines. `None` when the connection ended.
    async fn next_message(&mut self) -> Option<Message> {
        let message = tokio::time::timeout(STEP, self.ws.next())
            .await
            .expect("timed out waiting for a frame")?
            .ok()?;
        if let Message::Text(text) = &message {
            assert!(text.ends_with('\n'), "frame not ending a line: {text:?}");
            self.frames += 1;
            self.lines
                .extend(text.split_terminator('\n').map(str::to_owned));
        }
        Some(message)
    }

    /// The next line without its LF; panics on close or timeout.
    pub async fn next_line(&mut self) -> String {
        loop {
            if let Some(line) = self.lines.pop_front() {
                return line;
            }
            match self.next_message().await {
                Some(Message::Text(_)) | Some(Message::Ping(_)) | Some(Message::Pong(_)) => {}
                other => panic!("connection ended while waiting for a line: {other:?}"),
            }
        }
    }

    pub async fn expect_line(&mut self, expected: &str) {
        assert_eq!(self.next_line().await, expected);
    }

    /// Skips lines until one equals `expected`; returns the skipped ones.
    pub async fn wait_for(&mut self, expected: &str) -> Vec<String> {
        let mut skipped = Vec::new();
        loop {
            let line = self.next_line().await;
            if line == expected {
                return skipped;
            }
            skipped.push(line);
        }
    }

    /// Reads until the server closes; returns the lines before it and how it closed.
    pub async fn expect_closed(&mut self) -> (Vec<String>, Closed) {
        let mut lines: Vec<String> = self.lines.drain(..).collect();
        loop {
            match self.next_message().await {
                Some(Message::Text(_)) => lines.extend(self.lines.drain(..)),
                Some(Message::Close(frame)) => {
                    let code = frame.map_or(CloseCode::Status, |f| f.code);
                    return (lines, Closed::Code(code));
                }
                Some(_) => {}
                None => return (lines, Closed::NoFrame),
            }
        }
    }

    /// Waits for the server's next ping.
    pub async fn expect_ping(&mut self) {
        loop {
            match self.next_message().await {
                Some(Message::Ping(_)) => return,
                Some(Message::Text(_) | Message::Pong(_)) => {}
                other => panic!("no ping before {other:?}"),
            }
        }
    }
}
