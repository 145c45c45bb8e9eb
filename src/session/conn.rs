//! A session's connection: the line transport plus what the session tracks about the room
//! lines in its output buffer (their bytes against the queue bound, the oldest's age, the read
//! positions they complete), and the answering of history requests in queue order.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use super::{End, GOODBYE_TIMEOUT};
use crate::config::Limits;
use crate::history::History;
use crate::protocol;
use crate::room::{Delivery, Mark, Outbox};
use crate::transport::line::LineConn;

/// Time given to the eviction notice: the peer is known not to read.
const EVICTION_GOODBYE_TIMEOUT: Duration = Duration::from_millis(200);

/// A line connection and the room lines in its output buffer.
pub(super) struct Conn<S> {
    line: LineConn<S>,
    /// Bytes in `out` taken from the room queue and still counted against its bound.
    pub(super) from_room: usize,
    /// When the oldest room line in `out` was queued.
    pub(super) oldest: Option<std::time::Instant>,
    /// Read positions reached once `out` is written.
    pub(super) marks: Vec<Mark>,
}

impl<S> Deref for Conn<S> {
    type Target = LineConn<S>;
    fn deref(&self) -> &LineConn<S> {
        &self.line
    }
}

impl<S> DerefMut for Conn<S> {
    fn deref_mut(&mut self) -> &mut LineConn<S> {
        &mut self.line
    }
}

impl<S> Conn<S> {
    pub(super) fn new(stream: S, limits: &Limits) -> Self {
        Conn {
            line: LineConn::new(stream, limits),
            from_room: 0,
            oldest: None,
            marks: Vec::new(),
        }
    }

    /// Moves queued room lines into the output buffer, answering history requests in place;
    /// returns an end if one was a `Close`.
    /// The member loop takes at most [`super::member::MAX_BATCH_BYTES`] per write, so that a long backlog is
    /// written in steps with the client's input read in between; before a reply of the
    /// session's own it takes everything.
    pub(super) async fn take_deliveries(
        &mut self,
        outbox: &mut Outbox,
        history: &History,
        max_bytes: usize,
    ) -> Option<End> {
        while self.out.len() < max_bytes
            && let Some(d) = outbox.try_recv()
        {
            let end = match d {
                Delivery::History(request) => self.answer(&request, history, outbox).await,
                d => self.push_ready(d),
            };
            if end.is_some() {
                return end;
            }
        }
        None
    }

    /// Like [`Conn::take_deliveries`] without history reads, for a member that is removed:
    /// only its last line still matters.
    pub(super) fn take_deliveries_now(&mut self, outbox: &mut Outbox) -> Option<End> {
        while let Some(d) = outbox.try_recv() {
            if let Some(end) = self.push_ready(d) {
                return Some(end);
            }
        }
        None
    }

    /// Takes one delivery the member loop received (`outbox` answers for a removal during a
    /// history read).
    pub(super) async fn push_delivery(
        &mut self,
        d: Delivery,
        history: &History,
        outbox: &mut Outbox,
    ) -> Option<End> {
        match d {
            Delivery::History(request) => self.answer(&request, history, outbox).await,
            d => self.push_ready(d),
        }
    }

    /// Reads and queues a history block where its request stood in the queue; a member
    /// removed meanwhile stops waiting for the database and ends with its last line.
    async fn answer(
        &mut self,
        request: &crate::history::HistoryRequest,
        history: &History,
        outbox: &mut Outbox,
    ) -> Option<End> {
        let Some(block) = unless_removed(outbox, Box::pin(history.answer(request))).await else {
            return Some(self.removed_end(outbox));
        };
        self.queue(&block.text);
        self.marks.extend(block.mark);
        None
    }

    /// Queues the answer of a step that waited on the database, or ends a member removed
    /// meanwhile (`None` from [`unless_removed`]).
    pub(super) fn queue_or_removed(
        &mut self,
        answer: Option<String>,
        outbox: &mut Outbox,
    ) -> Option<End> {
        match answer {
            Some(text) => {
                self.queue(&text);
                None
            }
            None => Some(self.removed_end(outbox)),
        }
    }

    /// The end of a member that was removed: the last line in its queue.
    pub(super) fn removed_end(&mut self, outbox: &mut Outbox) -> End {
        self.take_deliveries_now(outbox)
            .unwrap_or_else(|| End::Closed("removed from the room".into()))
    }

    fn push_ready(&mut self, d: Delivery) -> Option<End> {
        match d {
            Delivery::Line(line) => {
                self.out.extend_from_slice(line.text.as_bytes());
                self.from_room += line.text.len();
                self.oldest.get_or_insert(line.queued_at);
                if let Some(mark) = &line.mark {
                    self.mark(mark);
                }
                None
            }
            // Answered by `push_delivery`; a removed member does not need it.
            Delivery::History(_) => None,
            Delivery::Presence(line) => {
                // Outside the queue's byte bound, so not counted in `from_room`.
                self.out.extend_from_slice(line.text.as_bytes());
                self.oldest.get_or_insert(line.queued_at);
                None
            }
            Delivery::Close(line) => {
                self.queue(&line);
                Some(End::Closed(line.as_str().into()))
            }
            Delivery::Evicted => Some(End::Evicted),
        }
    }

    /// Notes a read position reached once `out` is written; consecutive lines of one room
    /// update one entry.
    fn mark(&mut self, (room, seq): &Mark) {
        match self.marks.last_mut() {
            Some((r, s)) if r == room => *s = (*s).max(*seq),
            _ => self.marks.push((room.clone(), *seq)),
        }
    }

    /// The room removed this member: its last deliveries (ending in the reason) are queued.
    pub(super) fn removed(&mut self, outbox: &mut Outbox) -> (End, Option<Duration>) {
        let end = self.removed_end(outbox);
        self.last_words(end)
    }

    /// What is left to send for `end`, and the time it may take.
    pub(super) fn last_words(&mut self, end: End) -> (End, Option<Duration>) {
        match end {
            End::Evicted => {
                // Counted by the room, which decides evictions. Best effort: whatever is held
                // is what overflowed, so only the reason is tried, briefly.
                self.out.clear();
                self.queue(protocol::SEND_QUEUE_EXCEEDED);
                (End::Evicted, Some(EVICTION_GOODBYE_TIMEOUT))
            }
            end => (end, Some(GOODBYE_TIMEOUT)),
        }
    }
}

/// Runs `step`, a wait on the database, unless the member is removed first (`None`): a kick
/// or a takeover never waits for the store. Only steps that may wait go through here, so the
/// delivery path builds no extra future.
pub(super) async fn unless_removed<T>(
    outbox: &Outbox,
    step: impl std::future::Future<Output = T>,
) -> Option<T> {
    let removed = outbox.removed();
    tokio::select! {
        biased;
        out = step => Some(out),
        _ = removed.wait() => None,
    }
}
