//! How much of a session's output the peer has acknowledged: a read position moves only when
//! the peer's TCP acknowledged the whole batch that carried the line, not when the kernel took
//! the bytes.
//!
//! Every TCP connection is wrapped in [`Counted`], which counts the bytes handed to the socket.
//! The bytes the peer has acknowledged are that count minus the socket's send queue (unsent
//! plus unacknowledged bytes, `SIOCOUTQ`, Linux only). A session asks at most once per
//! position-save interval while it has unacknowledged lines, and once when it ends: never per
//! delivery. Elsewhere, or when the socket cannot say, written counts as read.
//!
//! A line session writes TLS straight into the socket, so its batches end at socket offsets. A
//! WebSocket session writes into a pipe; the bridge notes which pipe offset each of its socket
//! writes ended, and [`AckSource::Bridge`] translates.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What a session's connection shares with whoever asks about acknowledgements.
#[derive(Debug)]
pub struct SocketProbe {
    /// Bytes handed to the socket so far.
    written: AtomicU64,
    /// The socket while it is open (`None` once closed, so that a number reused by another
    /// socket is never asked about).
    #[cfg(target_os = "linux")]
    fd: Mutex<Option<std::os::fd::RawFd>>,
    /// Set when unacknowledged output must not reach the peer after the session ends (its
    /// lines go to another session's catch-up): the socket is reset on close.
    discard_unsent: AtomicBool,
}

impl SocketProbe {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Bytes written that the peer has acknowledged, or `None` when the socket cannot say
    /// (closed, reset, or not Linux).
    pub fn acknowledged(&self) -> Option<u64> {
        let written = self.written();
        let queued = self.send_queue()?;
        Some(written.saturating_sub(queued))
    }

    /// Makes the socket's close a reset, dropping what the peer has not acknowledged.
    pub fn discard_unsent(&self) {
        self.discard_unsent.store(true, Ordering::Relaxed);
    }

    /// Unsent plus unacknowledged bytes in the socket's send queue.
    #[cfg(target_os = "linux")]
    fn send_queue(&self) -> Option<u64> {
        let fd = self.fd.lock().expect("never poisoned");
        let fd = (*fd)?;
        let mut queued: libc::c_int = 0;
        // SAFETY: `fd` is this connection's open socket: `Counted` clears it under the same
        // lock before the socket closes. SIOCOUTQ (TIOCOUTQ) writes one c_int to the pointer,
        // which points at a live c_int.
        #[allow(unsafe_code)]
        let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued as *mut libc::c_int) };
        (r == 0).then(|| u64::try_from(queued).unwrap_or(0))
    }

    #[cfg(not(target_os = "linux"))]
    fn send_queue(&self) -> Option<u64> {
        None
    }
}

/// A TCP stream that counts the bytes written to it, for [`SocketProbe`].
#[derive(Debug)]
pub struct Counted {
    inner: TcpStream,
    probe: Arc<SocketProbe>,
}

impl Counted {
    /// Wraps `inner`; the probe answers for it until it is dropped.
    pub fn new(inner: TcpStream) -> Self {
        #[cfg(target_os = "linux")]
        let fd = std::os::fd::AsRawFd::as_raw_fd(&inner);
        let probe = Arc::new(SocketProbe {
            written: AtomicU64::new(0),
            #[cfg(target_os = "linux")]
            fd: Mutex::new(Some(fd)),
            discard_unsent: AtomicBool::new(false),
        });
        Counted { inner, probe }
    }

    /// The probe for this stream.
    pub fn probe(&self) -> Arc<SocketProbe> {
        Arc::clone(&self.probe)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        {
            *self.probe.fd.lock().expect("never poisoned") = None;
        }
        if self.probe.discard_unsent.load(Ordering::Relaxed) {
            // Linger zero: close sends a reset and drops the send queue.
            let _ = socket2::SockRef::from(&self.inner).set_linger(Some(std::time::Duration::ZERO));
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.probe.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.probe.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Where a session learns how much of its output the peer acknowledged, in the session's own
/// byte offsets (the bytes it has written to its stream).
#[derive(Clone, Debug, Default)]
pub enum AckSource {
    /// No way to know: written counts as read.
    #[default]
    Written,
    /// TLS written straight into this socket.
    Socket(Arc<SocketProbe>),
    /// A WebSocket bridge between the session's pipe and the socket.
    Bridge(Arc<BridgeMap>),
}

impl AckSource {
    /// Where the session's output stands now, in the offsets acknowledgements are given in
    /// (the socket's, or the session's own `session_written` bytes behind a bridge): a batch
    /// starts at the offset before its write and ends at the one after its flush.
    pub fn offset(&self, session_written: u64) -> u64 {
        match self {
            AckSource::Written | AckSource::Bridge(_) => session_written,
            AckSource::Socket(probe) => probe.written(),
        }
    }

    /// The offset up to which the peer has acknowledged; `None`: nothing new can be known
    /// (the caller keeps what it has).
    pub fn acknowledged(&self) -> Option<u64> {
        match self {
            AckSource::Written => Some(u64::MAX),
            AckSource::Socket(probe) => probe.acknowledged(),
            AckSource::Bridge(map) => map.acknowledged(),
        }
    }

    /// True when positions wait for acknowledgements.
    pub fn is_tracked(&self) -> bool {
        !matches!(self, AckSource::Written)
    }

    /// Resets the connection on close, dropping what the peer has not acknowledged (it is
    /// replayed to another session).
    pub fn discard_unsent(&self) {
        match self {
            AckSource::Written => {}
            AckSource::Socket(probe) => probe.discard_unsent(),
            AckSource::Bridge(map) => map.probe.discard_unsent(),
        }
    }
}

/// The pipe offsets a WebSocket bridge's socket writes ended at.
#[derive(Debug)]
pub struct BridgeMap {
    probe: Arc<SocketProbe>,
    /// The session's output offsets the bridge has written, each waiting for the socket
    /// offset its write ended at; and the session offset acknowledged so far.
    ends: Mutex<(Unacknowledged<u64>, u64)>,
}

impl BridgeMap {
    /// A map for the socket `probe` answers for.
    pub fn new(probe: Arc<SocketProbe>) -> Arc<Self> {
        Arc::new(BridgeMap {
            probe,
            ends: Mutex::new((Unacknowledged::default(), 0)),
        })
    }

    /// The bridge has written everything up to `session_offset` of the session's output; the
    /// write began at socket offset `socket_start` and ends where the socket is now.
    pub fn wrote(&self, session_offset: u64, socket_start: u64) {
        let socket_end = self.probe.written();
        let mut ends = self.ends.lock().expect("never poisoned");
        ends.0.push(
            (socket_start, socket_end),
            [session_offset],
            |at, offset| {
                *at = (*at).max(*offset);
                true
            },
        );
    }

    /// The socket's offset now, for [`BridgeMap::wrote`].
    pub fn socket_offset(&self) -> u64 {
        self.probe.written()
    }

    fn acknowledged(&self) -> Option<u64> {
        let acked = self.probe.acknowledged();
        let mut ends = self.ends.lock().expect("never poisoned");
        let (list, session_acked) = &mut *ends;
        if let Some(acked) = acked {
            list.take_acknowledged(acked, |offset| *session_acked = offset);
        }
        Some(*session_acked)
    }
}

/// Read positions written to the peer and not yet acknowledged, each with the output bytes
/// that must be acknowledged first. Consecutive positions of one room closer than
/// [`ACK_MERGE_BYTES`] share an entry; past [`MAX_UNACKNOWLEDGED`] entries a room's positions
/// fold into its last entry, so a peer that stops reading costs a bounded amount of memory.
#[derive(Debug)]
pub struct Unacknowledged<M> {
    /// `(start, end, position)`, oldest first: the position holds once `end` is acknowledged;
    /// `start` is where the entry's first batch began.
    entries: VecDeque<(u64, u64, M)>,
}

/// Output bytes one entry of [`Unacknowledged`] may span: a takeover repeats at most this much
/// (or one batch, if longer) of what the peer had acknowledged.
pub const ACK_MERGE_BYTES: u64 = 4 * 1024;

/// Entries of [`Unacknowledged`] kept before a room's positions fold into its last entry.
pub const MAX_UNACKNOWLEDGED: usize = 1024;

impl<M> Default for Unacknowledged<M> {
    fn default() -> Self {
        Unacknowledged {
            entries: VecDeque::new(),
        }
    }
}

impl<M> Unacknowledged<M> {
    /// True when every position written has been acknowledged.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Notes positions reached once the peer acknowledges the batch from `start` to `end`.
    /// `fold(entry, mark)` moves an entry's position to `mark` when both are of one room
    /// (returning true), and returns false otherwise.
    pub fn push(
        &mut self,
        (start, end): (u64, u64),
        marks: impl IntoIterator<Item = M>,
        fold: impl Fn(&mut M, &M) -> bool,
    ) {
        'marks: for mark in marks {
            let full = self.entries.len() >= MAX_UNACKNOWLEDGED;
            for (entry_start, entry_end, entry) in self.entries.iter_mut().rev() {
                let near = end.saturating_sub(*entry_start) <= ACK_MERGE_BYTES;
                if (near || full) && fold(entry, &mark) {
                    *entry_end = (*entry_end).max(end);
                    continue 'marks;
                }
                if !full {
                    // Only the newest entry may take a position while there is room.
                    break;
                }
            }
            self.entries.push_back((start, end, mark));
        }
    }

    /// Takes the positions the peer acknowledged (`acked` and before), oldest first.
    pub fn take_acknowledged(&mut self, acked: u64, mut each: impl FnMut(M)) {
        while let Some(&(_, end, _)) = self.entries.front()
            && end <= acked
        {
            let (_, _, mark) = self.entries.pop_front().expect("just looked");
            each(mark);
        }
        if self.entries.is_empty() {
            // An idle session keeps no buffer.
            self.entries = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(entry: &mut (u8, u64), mark: &(u8, u64)) -> bool {
        entry.0 == mark.0 && {
            entry.1 = entry.1.max(mark.1);
            true
        }
    }

    fn taken(u: &mut Unacknowledged<(u8, u64)>, acked: u64) -> Vec<(u8, u64)> {
        let mut out = Vec::new();
        u.take_acknowledged(acked, |m| out.push(m));
        out
    }

    #[test]
    fn a_batch_counts_only_once_all_of_it_is_acknowledged() {
        let mut u = Unacknowledged::default();
        u.push((50, 100), [(1, 5)], fold);
        assert_eq!(taken(&mut u, 99), vec![]);
        assert_eq!(taken(&mut u, 100), vec![(1, 5)]);
        assert!(u.is_empty());
    }

    #[test]
    fn close_batches_of_a_room_share_an_entry_and_far_ones_do_not() {
        let mut u = Unacknowledged::default();
        u.push((0, 100), [(1, 5)], fold);
        u.push((100, 200), [(1, 7)], fold);
        u.push((200, 300), [(2, 1)], fold);
        u.push((300, 200 + ACK_MERGE_BYTES + 1), [(2, 4)], fold);
        // The first two share an entry: the first alone is not enough.
        assert_eq!(taken(&mut u, 150), vec![]);
        assert_eq!(taken(&mut u, 300), vec![(1, 7), (2, 1)]);
        assert_eq!(taken(&mut u, u64::MAX), vec![(2, 4)]);
    }

    #[test]
    fn a_silent_peer_costs_a_bounded_number_of_entries() {
        let mut u: Unacknowledged<(u8, u64)> = Unacknowledged::default();
        for i in 1..=100_000u64 {
            let room = (i % 3) as u8;
            u.push(((i - 1) * 5_000, i * 5_000), [(room, i)], fold);
        }
        assert!(u.entries.len() <= MAX_UNACKNOWLEDGED, "{}", u.entries.len());
        // Nothing is lost: once everything is acknowledged, each room is at its last line.
        let mut furthest = std::collections::HashMap::new();
        for (room, seq) in taken(&mut u, u64::MAX) {
            let at = furthest.entry(room).or_insert(0);
            *at = (*at).max(seq);
        }
        assert_eq!(furthest[&0], 99_999);
        assert_eq!(furthest[&1], 100_000);
        assert_eq!(furthest[&2], 99_998);
    }
}
