//! A line transport over a byte stream (TLS, or the WebSocket bridge): a bounded line decoder
//! on the way in, one output buffer on the way out, written and flushed once per batch so that
//! queued lines coalesce into as few TLS records as possible.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use crate::config::Limits;
use crate::protocol::{Incoming, LineDecoder};

/// Bytes read from the stream at a time. rustls already holds each decrypted record, so a
/// small buffer only means more memcpy calls, while it is memory every idle session keeps.
const READ_CHUNK_BYTES: usize = 512;
/// An output buffer larger than this is released once written: idle sessions keep none.
const OUT_BUFFER_KEEP_BYTES: usize = 1024;

/// A stream with a bounded line decoder and one output buffer.
pub struct LineConn<S> {
    stream: S,
    decoder: LineDecoder,
    rbuf: Box<[u8]>,
    rpos: usize,
    rlen: usize,
    /// Bytes to write at the next flush.
    pub out: Vec<u8>,
    /// Bytes written so far (the offsets read positions wait on, see [`super::ack`]).
    written: u64,
}

impl<S> LineConn<S> {
    /// A connection whose lines are bounded by `limits`.
    pub fn new(stream: S, limits: &Limits) -> Self {
        LineConn {
            stream,
            decoder: LineDecoder::new(limits.max_line_bytes, limits.max_unterminated_bytes),
            rbuf: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
            rpos: 0,
            rlen: 0,
            out: Vec::new(),
            written: 0,
        }
    }

    /// Bytes written to the stream so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends text to the output buffer.
    pub fn queue(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
    }

    /// The longest line the decoder takes, in bytes.
    pub fn max_line(&self) -> usize {
        self.decoder.max_line()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> LineConn<S> {
    /// The next decoded item; `None` on EOF. Cancel-safe: state lives in `self`.
    pub async fn next_item(&mut self) -> io::Result<Option<Incoming>> {
        loop {
            if self.rpos < self.rlen {
                let mut input = &self.rbuf[self.rpos..self.rlen];
                let item = self.decoder.decode(&mut input);
                self.rpos = self.rlen - input.len();
                if item.is_some() {
                    return Ok(item);
                }
            }
            let n = self.stream.read(&mut self.rbuf).await?;
            if n == 0 {
                return Ok(None);
            }
            self.rpos = 0;
            self.rlen = n;
        }
    }

    /// Writes the output buffer as one write and one flush, then releases a large buffer.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.write_out().await?;
        self.release_buffer();
        Ok(())
    }

    /// Writes the output buffer as one write and one flush, keeping its capacity for the next
    /// batch of a backlog.
    pub async fn write_out(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.stream.write_all(&self.out).await?;
        self.stream.flush().await?;
        self.written += self.out.len() as u64;
        self.out.clear();
        Ok(())
    }

    /// Idle sessions keep no large output buffer.
    pub fn release_buffer(&mut self) {
        if self.out.capacity() > OUT_BUFFER_KEEP_BYTES {
            self.out = Vec::new();
        }
    }

    /// Sends what is queued plus `line`, then close_notify, all within `limit`.
    pub async fn goodbye(&mut self, line: &str, limit: Duration) {
        self.queue(line);
        self.goodbye_queued(limit).await;
    }

    /// Sends what is queued, then close_notify, within `limit`.
    pub async fn goodbye_queued(&mut self, limit: Duration) {
        let _ = timeout(limit, async {
            self.flush().await?;
            self.stream.shutdown().await
        })
        .await;
    }
}
