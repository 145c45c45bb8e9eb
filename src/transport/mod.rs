//! How a connection reaches a session: the ClientHello decides between the line protocol and
//! the web client, and a WebSocket is turned into the same byte stream of lines.

pub mod ws;

use std::io;
use std::sync::Arc;

use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::tls::{ALPN_HTTP1, ALPN_TLSCHAT, ServerConfigs};

/// A finished TLS handshake and the protocol it chose.
pub enum Accepted {
    /// ALPN `tlschat` or none: the line protocol.
    Line(TlsStream<TcpStream>),
    /// ALPN `http/1.1`: a browser.
    Web(TlsStream<TcpStream>),
}

/// Reads the ClientHello, picks the configuration for what the client offers and finishes the
/// handshake. A client offering `http/1.1` (and not `tlschat`) gets the web configuration
/// when `web` is on; everyone else gets the line configuration, which refuses a client that
/// offers only protocols other than `tlschat` with the no_application_protocol alert.
pub async fn accept(tcp: TcpStream, configs: &ServerConfigs, web: bool) -> io::Result<Accepted> {
    let start =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
    let hello = start.client_hello();
    let offers = |protocol: &[u8]| hello.alpn().is_some_and(|mut it| it.any(|p| p == protocol));
    let is_web = web && offers(ALPN_HTTP1) && !offers(ALPN_TLSCHAT);
    let config: Arc<ServerConfig> = Arc::clone(if is_web { &configs.web } else { &configs.line });
    let tls = start.into_stream(config).await?;
    Ok(if is_web {
        Accepted::Web(tls)
    } else {
        Accepted::Line(tls)
    })
}
