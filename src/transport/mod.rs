//! How a connection reaches a session: the ClientHello decides between the line protocol and
//! the web client, and a WebSocket is turned into the same byte stream of lines.

pub mod ack;
pub mod proxy;
pub mod ws;

use std::io;
use std::sync::Arc;

use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use ack::Counted;

use crate::tls::{ALPN_HTTP1, ALPN_TLSCHAT, ServerConfigs};

pub mod line;

/// The most of a ClientHello record looked at (a record's maximum).
const MAX_HELLO_RECORD_BYTES: usize = 5 + 16 * 1024;
/// How often a ClientHello that has arrived only in part is looked at again.
const PARTIAL_HELLO_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// A finished TLS handshake and the protocol it chose.
pub enum Accepted {
    /// ALPN `tlschat` or none: the line protocol.
    Line(TlsStream<Counted>),
    /// ALPN `http/1.1`: a browser.
    Web(TlsStream<Counted>),
}

/// Reads the ClientHello, picks the configuration for what the client offers and finishes the
/// handshake. A client offering `http/1.1` (and not `tlschat`) gets the web configuration
/// when `web` is on; everyone else gets the line configuration, which refuses a client that
/// offers only protocols other than `tlschat` with the no_application_protocol alert.
pub async fn accept(tcp: TcpStream, configs: &ServerConfigs, web: bool) -> io::Result<Accepted> {
    let offers_tls13 = offers_tls13(&tcp).await?;
    let start = tokio_rustls::LazyConfigAcceptor::new(
        rustls::server::Acceptor::default(),
        Counted::new(tcp),
    )
    .await?;
    let hello = start.client_hello();
    let offers = |protocol: &[u8]| hello.alpn().is_some_and(|mut it| it.any(|p| p == protocol));
    let is_web = web && offers(ALPN_HTTP1) && !offers(ALPN_TLSCHAT);
    // A client that offers TLS 1.3 may present a certificate; a TLS 1.2 client gets no
    // CertificateRequest (its certificate would travel in the clear).
    let config: Arc<ServerConfig> = Arc::clone(if is_web {
        &configs.web
    } else if offers_tls13 {
        &configs.line
    } else {
        &configs.line_tls12
    });
    let tls = start.into_stream(config).await?;
    Ok(if is_web {
        Accepted::Web(tls)
    } else {
        Accepted::Line(tls)
    })
}

/// The TLS handshake of an IRC client: no ALPN; a client certificate may be presented over
/// TLS 1.3 (SASL EXTERNAL).
pub async fn accept_irc(tcp: TcpStream, configs: &ServerConfigs) -> io::Result<TlsStream<Counted>> {
    let offers_tls13 = offers_tls13(&tcp).await?;
    let config = if offers_tls13 {
        &configs.irc
    } else {
        &configs.irc_tls12
    };
    tokio_rustls::TlsAcceptor::from(Arc::clone(config))
        .accept(Counted::new(tcp))
        .await
}

/// Whether the ClientHello waiting in the socket lists TLS 1.3 in its supported_versions.
/// rustls does not expose the offered versions, so the record is peeked at (not consumed)
/// until it is complete; anything unreadable counts as "no", which only means no
/// CertificateRequest.
async fn offers_tls13(tcp: &TcpStream) -> io::Result<bool> {
    let mut buf = vec![0u8; 5];
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 {
            return Ok(false);
        }
        let wanted = match buf.get(3..5) {
            Some(len) if n >= 5 => 5 + usize::from(u16::from_be_bytes([len[0], len[1]])),
            _ => 5,
        };
        let wanted = wanted.min(MAX_HELLO_RECORD_BYTES);
        if n >= wanted && buf.len() >= wanted {
            return Ok(hello_offers_tls13(&buf[..wanted]).unwrap_or(false));
        }
        if buf.len() < wanted {
            buf.resize(wanted, 0);
        } else {
            // The rest of the record is on its way (a hello larger than a segment, or a
            // slow client, which the handshake timeout ends). Readiness stays set after a
            // peek, so waiting for it would spin: wait a little instead.
            tokio::time::sleep(PARTIAL_HELLO_POLL).await;
        }
    }
}

/// Parses a TLS record holding a ClientHello and looks for TLS 1.3 (0x0304) among the
/// supported_versions extension (43); `None` when the bytes are not such a record.
fn hello_offers_tls13(record: &[u8]) -> Option<bool> {
    let mut r = Reader(record);
    if r.u8()? != 0x16 {
        return None;
    }
    r.take(4)?; // version, length
    if r.u8()? != 1 {
        return None; // not a ClientHello
    }
    r.take(3)?; // handshake length
    r.take(2 + 32)?; // legacy version, random
    let session_id = usize::from(r.u8()?);
    r.take(session_id)?;
    let suites = usize::from(r.u16()?);
    r.take(suites)?;
    let compression = usize::from(r.u8()?);
    r.take(compression)?;
    let len = usize::from(r.u16()?);
    let mut extensions = Reader(r.take(len)?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let len = usize::from(extensions.u16()?);
        let body = extensions.take(len)?;
        if kind == 43 {
            let mut versions = Reader(body);
            let len = usize::from(versions.u8()?);
            let list = versions.take(len)?;
            return Some(list.chunks_exact(2).any(|v| v == [3, 4]));
        }
    }
    Some(false)
}

/// Big-endian reads off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

/// Time given to a last line and close_notify when a connection ends, whether on its own or
/// removed by the room (kick, takeover, account change, shutdown): a peer that does not read
/// holds nothing longer than this.
pub const GOODBYE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// First byte of a TLS handshake record.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Peeks at the first byte without consuming it; `None` on EOF.
pub async fn first_byte(tcp: &TcpStream) -> io::Result<Option<u8>> {
    let mut byte = [0u8; 1];
    let n = tcp.peek(&mut byte).await?;
    Ok((n == 1).then_some(byte[0]))
}

/// What a plaintext client of the IRC port reads before it is closed.
pub const IRC_TLS_ONLY: &str =
    "ERROR :This port speaks TLS only; enable TLS (SSL) in your IRC client\r\n";

/// Tells a plaintext client how to connect, without parsing anything it sent, within `limit`.
pub async fn refuse_plaintext(tcp: TcpStream, limit: std::time::Duration) {
    let addr = tcp
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "HOST:PORT".into());
    let hint =
        format!("This port speaks TLS. Connect with: openssl s_client -quiet -connect {addr}\r\n");
    say_and_close(tcp, &hint, limit).await;
}

/// Writes `text` to a plaintext client and closes, within `limit`.
pub async fn say_and_close(mut tcp: TcpStream, text: &str, limit: std::time::Duration) {
    let _ = tokio::time::timeout(limit, async {
        tcp.write_all(text.as_bytes()).await?;
        tcp.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first record a rustls client sends with `versions`.
    fn client_hello(versions: &[&'static rustls::SupportedProtocolVersion]) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn a_tls13_hello_is_recognised() {
        let hello = client_hello(&[&rustls::version::TLS13, &rustls::version::TLS12]);
        assert_eq!(hello_offers_tls13(&hello), Some(true));
    }

    #[test]
    fn a_tls12_only_hello_is_recognised() {
        let hello = client_hello(&[&rustls::version::TLS12]);
        assert_eq!(hello_offers_tls13(&hello), Some(false));
    }

    #[test]
    fn truncated_or_foreign_bytes_are_not_a_hello() {
        let hello = client_hello(&[&rustls::version::TLS13]);
        for cut in [0, 1, 5, 9, 43, hello.len() - 1] {
            assert_ne!(
                hello_offers_tls13(&hello[..cut]),
                Some(true),
                "cut at {cut}"
            );
        }
        assert_eq!(hello_offers_tls13(b"GET / HTTP/1.1\r\n"), None);
    }
}
