//! A WebSocket carrying the line protocol, bridged to the byte stream a session reads and
//! writes: each text frame from the client is one line (an LF is added when it has none),
//! and the session's output goes out as text frames of whole lines. The session itself is
//! the one line clients get, so login, commands, limits and fan-out are the same code.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_util::sync::CancellationToken;

use super::GOODBYE_TIMEOUT;
use super::ack::BridgeMap;
use crate::config::Limits;

/// Bytes in flight each way between a WebSocket and its session, on top of the session's
/// own output buffer and room queue (a line client's kernel socket buffers play this part).
const PIPE_BYTES: usize = 64 * 1024;
/// Bytes read from the session at a time.
const READ_STEP_BYTES: usize = 8 * 1024;
/// Bytes tungstenite reads from the socket at a time; it allocates this per connection.
const SOCKET_READ_BYTES: usize = 4 * 1024;
/// Output held back because it does not end a line yet; the session always ends its lines,
/// so this only caps what a bug could pile up.
const MAX_PARTIAL_BYTES: usize = 1024 * 1024;

/// tungstenite's settings for a chat session: small buffers (browsers send short lines) and
/// messages no longer than the bytes a line client may send without a newline, so a frame
/// longer than a line gets `! Line too long` and one longer than that closes with 1009.
pub fn config(limits: &Limits) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(SOCKET_READ_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(limits.max_unterminated_bytes))
        .max_frame_size(Some(limits.max_unterminated_bytes))
}

/// Runs `session` on one end of a pipe while the other end is bridged to `ws`. Returns when
/// the session has ended and its last lines have gone out, or the goodbye time has passed
/// (`shutdown_grace` once the server is shutting down).
pub async fn run<S, F, Fut, T>(
    ws: WebSocketStream<S>,
    limits: &Limits,
    shutdown: &CancellationToken,
    acks: Option<Arc<BridgeMap>>,
    session: F,
) -> T
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(DuplexStream) -> Fut,
    Fut: Future<Output = T>,
{
    let (session_end, bridge_end) = tokio::io::duplex(PIPE_BYTES);
    let session = session(session_end);
    let bridge = bridge(ws, bridge_end, limits.ws_ping_interval, acks);
    tokio::pin!(session, bridge);
    tokio::select! {
        end = &mut session => {
            // The session's last lines are in the pipe: the client gets the time any session
            // gets for its goodbye.
            let goodbye = if shutdown.is_cancelled() {
                limits.shutdown_grace
            } else {
                GOODBYE_TIMEOUT
            };
            let _ = tokio::time::timeout(goodbye, bridge).await;
            end
        }
        () = &mut bridge => session.await,
    }
}

/// What the two directions share.
struct Shared {
    /// When the client was last heard from, in ms after `start`.
    heard_ms: AtomicU64,
    start: Instant,
    /// Close code to send when the session has ended (0: normal closure).
    close_code: AtomicU16,
    /// Set when either direction is done: the other stops too.
    done: CancellationToken,
}

impl Shared {
    fn heard(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.heard_ms.store(ms, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let heard = Duration::from_millis(self.heard_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(heard)
    }

    fn close_with(&self, code: CloseCode) {
        self.close_code.store(code.into(), Ordering::Relaxed);
    }
}

async fn bridge<S>(
    ws: WebSocketStream<S>,
    pipe: DuplexStream,
    ping_every: Duration,
    acks: Option<Arc<BridgeMap>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let shared = Shared {
        heard_ms: AtomicU64::new(0),
        start: Instant::now(),
        close_code: AtomicU16::new(0),
        done: CancellationToken::new(),
    };
    let (sink, stream) = ws.split();
    let (from_session, to_session) = tokio::io::split(pipe);
    tokio::join!(
        inbound(stream, to_session, &shared),
        outbound(sink, from_session, ping_every, &shared, acks),
    );
}

/// Client frames into the session. Ends the session's input (EOF) when the client closes,
/// fails, or breaks the rules.
async fn inbound<St, W>(mut stream: St, mut to_session: W, shared: &Shared)
where
    St: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let message = tokio::select! {
            m = stream.next() => m,
            _ = shared.done.cancelled() => break,
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                shared.heard();
                let line = text.as_bytes();
                let mut written = to_session.write_all(line).await;
                if written.is_ok() && line.last() != Some(&b'\n') {
                    written = to_session.write_all(b"\n").await;
                }
                if written.is_err() {
                    break;
                }
            }
            Some(Ok(Message::Binary(_))) => {
                shared.close_with(CloseCode::Unsupported);
                break;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => shared.heard(),
            Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(_))) => {
                shared.close_with(CloseCode::Size);
                break;
            }
            Some(Ok(Message::Close(_)) | Err(_)) | None => break,
        }
    }
    // The session reads EOF and ends; `outbound` then closes the WebSocket.
    let _ = to_session.shutdown().await;
}

/// Session output to the client as text frames of whole lines, and pings. Sends the close
/// frame once the session's output ends.
async fn outbound<Si, R>(
    mut sink: Si,
    mut from_session: R,
    ping_every: Duration,
    shared: &Shared,
    acks: Option<Arc<BridgeMap>>,
) where
    Si: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
    R: AsyncRead + Unpin,
{
    let mut pending: Vec<u8> = Vec::new();
    // The session's bytes sent so far (its offsets for read positions).
    let mut sent: u64 = 0;
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    loop {
        pending.reserve(READ_STEP_BYTES);
        tokio::select! {
            n = from_session.read_buf(&mut pending) => {
                if !matches!(n, Ok(n) if n > 0) {
                    break;
                }
                let Some(last_lf) = pending.iter().rposition(|&b| b == b'\n') else {
                    if pending.len() > MAX_PARTIAL_BYTES {
                        break;
                    }
                    continue;
                };
                let rest = pending.split_off(last_lf + 1);
                let lines = std::mem::replace(&mut pending, rest);
                sent += lines.len() as u64;
                let socket_start = acks.as_ref().map(|acks| acks.socket_offset());
                if sink.send(text_frame(lines)).await.is_err() {
                    break;
                }
                if let (Some(acks), Some(start)) = (&acks, socket_start) {
                    acks.wrote(sent, start);
                }
                if pending.capacity() > READ_STEP_BYTES * 2 {
                    pending = Vec::new();
                }
            }
            _ = ping.tick() => {
                if shared.silent_for() >= ping_every * 2 {
                    shared.close_with(CloseCode::Away);
                    break;
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
    shared.done.cancel();
    let code = match shared.close_code.load(Ordering::Relaxed) {
        0 => CloseCode::Normal,
        code => CloseCode::from(code),
    };
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: "".into(),
        })))
        .await;
    let _ = sink.close().await;
}

/// The session writes UTF-8 (its lines are sanitised strings), and a cut after an LF never
/// splits a character.
fn text_frame(lines: Vec<u8>) -> Message {
    match String::from_utf8(lines) {
        Ok(text) => Message::text(text),
        Err(e) => Message::text(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}
