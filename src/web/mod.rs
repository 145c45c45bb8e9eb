//! The web client on the chat port: a small HTTP/1.1 server (hyper) for the embedded page and
//! the WebSocket upgrade at `/ws`, whose connection then becomes an ordinary session.

mod assets;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::room::directory::Protocol;
use crate::session::{self, End, LoginObserver, SessionContext};
use crate::transport::ack::{AckSource, BridgeMap, SocketProbe};
use crate::transport::ws;

/// Largest request head accepted (hyper's minimum); a browser's is about 1 KiB.
const MAX_REQUEST_HEAD_BYTES: usize = 8 * 1024;
/// The policy of every response: the page loads its own script and style and talks only to
/// its own origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Settings of the web client, made once at start.
#[derive(Debug, Clone, Default)]
pub struct Web {
    /// Origins besides the page's own that may open a WebSocket.
    origins: Vec<Origin>,
}

impl Web {
    /// Parses `origins` (`https://host[:port]`), as `web_origins` lists them.
    pub fn new(origins: &[String]) -> Result<Self, String> {
        let origins = origins
            .iter()
            .map(|o| {
                Origin::parse(o)
                    .ok_or_else(|| format!("invalid web origin {o:?}: use https://host[:port]"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Web { origins })
    }

    /// Whether a page at `origin` may open a WebSocket to a server reached as `host`.
    fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin.and_then(Origin::parse) else {
            return false;
        };
        let own = host.and_then(|h| Origin::parse(&format!("https://{h}")));
        own.as_ref() == Some(&origin) || self.origins.contains(&origin)
    }
}

/// An origin's scheme, host (lower case) and port (the scheme's default when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn parse(text: &str) -> Option<Origin> {
        let (scheme, rest) = text.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return None,
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return None;
        }
        let uri: hyper::http::uri::Authority = authority.parse().ok()?;
        Some(Origin {
            scheme,
            host: uri.host().to_ascii_lowercase(),
            port: uri.port_u16().unwrap_or(default_port),
        })
    }
}

/// Serves one browser connection: HTTP requests until it upgrades to a WebSocket (then the
/// session runs on it) or closes. The HTTP part lives at most `login_timeout`, so a page that
/// keeps a connection open does not hold a pre-login slot for long.
pub async fn serve<S>(
    tls: S,
    peer: SocketAddr,
    ctx: &SessionContext,
    web: Arc<Web>,
    shutdown: &CancellationToken,
    (observer, probe): (impl LoginObserver, Option<Arc<SocketProbe>>),
    connected: Instant,
) -> io::Result<End>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let upgrade: Arc<Mutex<Option<OnUpgrade>>> = Arc::default();
    let service = {
        let upgrade = Arc::clone(&upgrade);
        hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            let response = respond(&web, &mut req, &upgrade);
            async move { Ok::<_, Infallible>(response) }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.limits.handshake_timeout)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES);
    let connection = builder
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades();
    let served = tokio::select! {
        r = connection => r,
        _ = sleep_until(connected + ctx.limits.login_timeout) => return Ok(End::HttpIdle),
        _ = shutdown.cancelled() => return Ok(End::Shutdown),
    };
    if let Err(e) = served {
        debug!(error = %e, "http connection ended");
        return Ok(End::ClientClosed);
    }
    let pending = upgrade.lock().expect("never poisoned").take();
    let Some(pending) = pending else {
        return Ok(End::HttpDone);
    };
    let upgraded = match pending.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            debug!(error = %e, "websocket upgrade failed");
            return Ok(End::ClientClosed);
        }
    };
    debug!("websocket open");
    let limits = &ctx.limits;
    let socket = WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        Role::Server,
        Some(ws::config(limits)),
    )
    .await;
    let map = probe.map(BridgeMap::new);
    let ack = map.clone().map_or(AckSource::Written, AckSource::Bridge);
    ws::run(socket, limits, shutdown, map, |pipe| {
        // Browsers are never asked for a certificate.
        session::serve(
            pipe,
            peer,
            ctx,
            shutdown,
            (observer, None, ack, Protocol::Web),
            Instant::now(),
        )
    })
    .await
}

/// The answer to one request; a WebSocket upgrade leaves its pending connection in `upgrade`.
fn respond(
    web: &Web,
    req: &mut Request<hyper::body::Incoming>,
    upgrade: &Mutex<Option<OnUpgrade>>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED);
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let path = req.uri().path();
    if path == "/ws" {
        return upgrade_to_websocket(web, req, upgrade);
    }
    let pages = assets::pages();
    if path == "/" {
        return file(&pages.index, "no-store");
    }
    match pages.file(path) {
        Some(asset) => file(asset, "public, max-age=31536000, immutable"),
        None => plain(StatusCode::NOT_FOUND),
    }
}

/// Checks the RFC 6455 handshake and the origin, and answers 101 Switching Protocols.
fn upgrade_to_websocket(
    web: &Web,
    req: &mut Request<hyper::body::Incoming>,
    upgrade: &Mutex<Option<OnUpgrade>>,
) -> Response<Full<Bytes>> {
    let headers = req.headers();
    let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let is_websocket = req.method() == Method::GET
        && has_token(headers, header::CONNECTION, "upgrade")
        && has_token(headers, header::UPGRADE, "websocket")
        && headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v == "13");
    let Some(key) = key.filter(|_| is_websocket) else {
        return plain(StatusCode::BAD_REQUEST);
    };
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if !web.allows(text(header::ORIGIN), text(header::HOST)) {
        debug!(origin = ?text(header::ORIGIN), "websocket refused: origin");
        return plain(StatusCode::FORBIDDEN);
    }
    *upgrade.lock().expect("never poisoned") = Some(hyper::upgrade::on(req));
    let mut response = with_security_headers(Response::new(Full::default()), "no-store");
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let accept = derive_accept_key(key.as_bytes());
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    response
}

/// Whether a comma-separated header holds `token` (case-insensitively).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

fn file(asset: &assets::Asset, cache: &'static str) -> Response<Full<Bytes>> {
    let mut response = with_security_headers(Response::new(Full::new(asset.body.clone())), cache);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    response
}

/// A status with its reason as a short text body.
fn plain(status: StatusCode) -> Response<Full<Bytes>> {
    let body = format!("{}\n", status.canonical_reason().unwrap_or("Error"));
    let mut response = with_security_headers(Response::new(Full::new(body.into())), "no-store");
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn with_security_headers(
    mut response: Response<Full<Bytes>>,
    cache: &'static str,
) -> Response<Full<Bytes>> {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_own_origin_is_allowed_with_or_without_the_default_port() {
        let web = Web::default();
        assert!(web.allows(Some("https://localhost:7443"), Some("localhost:7443")));
        assert!(web.allows(
            Some("https://Chat.Example.org"),
            Some("chat.example.org:443")
        ));
    }

    #[test]
    fn other_origins_are_refused_unless_listed() {
        let web = Web::new(&["https://chat.example.org".into()]).unwrap();
        assert!(!web.allows(Some("https://evil.example:7443"), Some("localhost:7443")));
        assert!(!web.allows(Some("http://localhost:7443"), Some("localhost:7443")));
        assert!(!web.allows(Some("https://localhost:7444"), Some("localhost:7443")));
        assert!(!web.allows(None, Some("localhost:7443")));
        assert!(!web.allows(Some("null"), Some("localhost:7443")));
        assert!(web.allows(Some("https://chat.example.org"), Some("localhost:7443")));
    }

    #[test]
    fn malformed_origins_are_rejected_at_start() {
        assert!(Web::new(&["chat.example.org".into()]).is_err());
        assert!(Web::new(&["https://chat.example.org/path".into()]).is_err());
        assert!(Web::new(&["ftp://chat.example.org".into()]).is_err());
        assert!(Web::new(&["https://[::1]:8443".into()]).is_ok());
    }
}
