//! A session's connection: the line transport plus what the session tracks about the room
//! lines in its output buffer (their bytes against the queue bound, the oldest's age, the read
//! positions they complete), and the answering of history requests in queue order.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{End, GOODBYE_TIMEOUT, MemberGuard};
use crate::config::Limits;
use crate::history::{History, Purpose};
use crate::protocol;
use crate::room::{Delivery, Handoff, Mark, Outbox, RESET_MARK, TakeoverCatchUp};
use crate::transport::ack::{AckSource, Unacknowledged};
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
    /// Where the peer's acknowledgements are learnt.
    pub(super) ack: AckSource,
    /// Read positions written and waiting for the peer's acknowledgement.
    pub(super) unacked: Unacknowledged<Mark>,
    /// Set when another login replaced this session: where its positions go as it ends.
    pub(super) handoff: Option<Handoff>,
    /// Where the batch being written starts (see [`Conn::write_batch`]).
    batch_start: u64,
    /// The client asked for numbered lines (`/resume`).
    pub(super) numbered: bool,
    /// Set for an IRC session: deliveries are rendered from what they mean (boxed: line
    /// sessions, the many, keep one word).
    pub(super) irc: Option<Box<crate::irc::view::View>>,
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

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub(super) fn new(stream: S, limits: &Limits, ack: AckSource) -> Self {
        Conn {
            line: LineConn::new(stream, limits),
            from_room: 0,
            oldest: None,
            marks: Vec::new(),
            ack,
            unacked: Unacknowledged::default(),
            handoff: None,
            batch_start: 0,
            numbered: false,
            irc: None,
        }
    }

    /// Writes the output buffer as one batch, noting where it starts for its positions.
    pub(super) async fn write_batch(&mut self) -> std::io::Result<()> {
        self.batch_start = self.ack.offset(self.line.written());
        self.line.write_out().await
    }

    /// Settles the positions in `marks`: those of a batch just `written` wait for the peer's
    /// acknowledgement; with nothing written, the member's own lines count now unless lines
    /// before them still wait (then they wait with those).
    pub(super) fn settle_marks(&mut self, member: &mut MemberGuard, written: bool) {
        if self.marks.is_empty() {
            return;
        }
        if !self.ack.is_tracked() || (!written && self.unacked.is_empty()) {
            member.commit(self.marks.drain(..));
            return;
        }
        let end = self.ack.offset(self.line.written());
        let start = if written { self.batch_start } else { end };
        self.unacked
            .push((start, end), self.marks.drain(..), fold_mark);
    }

    /// Commits what the peer has acknowledged, and what it acknowledges within `limit`
    /// (asking every few milliseconds) while anything still waits.
    pub(super) async fn wait_for_acknowledgement(
        &mut self,
        member: &mut MemberGuard,
        limit: Duration,
    ) {
        const ASK_EVERY: Duration = Duration::from_millis(10);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            self.take_acknowledged(member);
            if self.unacked.is_empty() || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(ASK_EVERY).await;
        }
    }

    /// Asks how much the peer has acknowledged (one system call) and commits the positions
    /// of every batch it has.
    pub(super) fn take_acknowledged(&mut self, member: &mut MemberGuard) {
        if self.unacked.is_empty() {
            return;
        }
        if let Some(acked) = self.ack.acknowledged() {
            self.unacked
                .take_acknowledged(acked, |mark| member.commit([mark]));
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
                // Boxed: rare, and it would otherwise size every session's task.
                Delivery::TakeoverCatchUp(catch_up) => {
                    Box::pin(self.catch_up_after_takeover(*catch_up, history, outbox)).await
                }
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
            Delivery::TakeoverCatchUp(catch_up) => {
                Box::pin(self.catch_up_after_takeover(*catch_up, history, outbox)).await
            }
            d => self.push_ready(d),
        }
    }

    /// The catch-up of a session that replaced another: waits for the old session's
    /// acknowledged positions (it hands them over as it ends, which a removal makes prompt),
    /// then answers each room from there up to its number at the takeover. Without them (the
    /// old session failed to say in time) the stored positions are used: more repeats, no
    /// loss.
    async fn catch_up_after_takeover(
        &mut self,
        catch_up: TakeoverCatchUp,
        history: &History,
        outbox: &mut Outbox,
    ) -> Option<End> {
        let TakeoverCatchUp { requests, handed } = catch_up;
        // The welcome and `You are in` lines need not wait for the old session. (Their
        // positions, if any, settle with the next batch.)
        match unless_removed(outbox, self.write_batch()).await {
            None => return Some(self.removed_end(outbox)),
            Some(Err(_)) => return Some(End::ClientClosed),
            Some(Ok(())) => {}
        }
        let waited = tokio::time::timeout(GOODBYE_TIMEOUT, handed);
        let Some(handed) = unless_removed(outbox, waited).await else {
            return Some(self.removed_end(outbox));
        };
        let handed = handed.ok().and_then(Result::ok).unwrap_or_else(|| {
            tracing::warn!(
                "the replaced session handed over no positions; catching up from the stored ones"
            );
            Vec::new()
        });
        for (mut request, resumed) in requests {
            if let Some((_, at)) = handed.iter().find(|(room, _)| *room == request.room)
                && !resumed
            {
                request.range.after = request.range.after.max(*at);
            }
            let range = request.range;
            if range.after >= range.upto {
                continue;
            }
            request.purpose = Purpose::CatchUp {
                missed: range.upto - range.after,
            };
            if let Some(end) = self.answer(&request, history, outbox).await {
                return Some(end);
            }
        }
        None
    }

    /// Reads and queues a history block where its request stood in the queue; a member
    /// removed meanwhile stops waiting for the database and ends with its last line.
    async fn answer(
        &mut self,
        request: &crate::history::HistoryRequest,
        history: &History,
        outbox: &mut Outbox,
    ) -> Option<End> {
        if self.irc.is_some() {
            return Box::pin(self.answer_irc(request, history, outbox)).await;
        }
        let answer = history.answer(request, self.numbered);
        let Some(block) = unless_removed(outbox, Box::pin(answer)).await else {
            return Some(self.removed_end(outbox));
        };
        self.queue(&block.text);
        self.marks.extend(block.mark);
        None
    }

    /// [`Conn::answer`] for an IRC session: the block's header as a notice, its messages in
    /// a batch.
    async fn answer_irc(
        &mut self,
        request: &crate::history::HistoryRequest,
        history: &History,
        outbox: &mut Outbox,
    ) -> Option<End> {
        let Some(read) = unless_removed(outbox, Box::pin(history.read(request))).await else {
            return Some(self.removed_end(outbox));
        };
        let view = self.irc.as_mut()?;
        let mut text = String::new();
        match read {
            Some((shown, kept)) => {
                let (header, mark) = crate::history::block_header(request, shown.len(), kept);
                if mark.is_some() {
                    view.history(&request.room, &header, &shown, &mut text);
                } else {
                    view.notices(&header, &mut text);
                }
                self.marks.extend(mark);
            }
            None => view.notices(protocol::HISTORY_UNAVAILABLE, &mut text),
        }
        self.queue(&text);
        None
    }

    /// Queues a line-protocol text: as it is, or for an IRC session as server notices.
    pub(super) fn queue_text(&mut self, text: &str) {
        match &self.irc {
            None => self.queue(text),
            Some(view) => {
                let mut out = String::new();
                view.notices(text, &mut out);
                self.queue(&out);
            }
        }
    }

    /// A member that sent too much without a newline: its last line, counted and logged.
    pub(super) fn no_newline(
        &mut self,
        ctx: &super::SessionContext,
        member: &mut MemberGuard,
    ) -> End {
        tracing::warn!(
            limit = "max_unterminated_bytes",
            "no newline, disconnecting"
        );
        self.queue_last(protocol::NO_NEWLINE);
        crate::metrics::inc(&ctx.metrics.evictions_no_newline);
        member.reason = Some("no newline".into());
        End::NoNewline
    }

    /// Queues a session's last line: as it is, or for an IRC session as `ERROR`.
    pub(super) fn queue_last(&mut self, text: &str) {
        match &self.irc {
            None => self.queue(text),
            Some(view) => {
                let mut out = String::new();
                view.last_line(text, &mut out);
                self.queue(&out);
            }
        }
    }

    /// Appends a delivered line in the session's format.
    fn push_line(&mut self, line: &crate::room::Line) {
        match &self.irc {
            None => self.line.out.extend_from_slice(line.text.as_bytes()),
            Some(view) => {
                let mut out = String::new();
                view.line(line, &mut out);
                self.line.out.extend_from_slice(out.as_bytes());
            }
        }
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
                if self.numbered
                    && line.is_message
                    && let Some((room, seq)) = &line.mark
                {
                    use std::io::Write as _;
                    // Writing to a Vec cannot fail.
                    let _ = write!(self.out, "{}", protocol::number(room, *seq));
                }
                self.push_line(&line);
                self.from_room += line.text.len();
                self.oldest.get_or_insert(line.queued_at);
                if let Some(mark) = &line.mark {
                    self.mark(mark);
                }
                None
            }
            // Answered by `push_delivery`; a removed member does not need it.
            Delivery::History(_) | Delivery::TakeoverCatchUp(_) => None,
            Delivery::Presence(line) => {
                // Outside the queue's byte bound, so not counted in `from_room`.
                self.push_line(&line);
                self.oldest.get_or_insert(line.queued_at);
                if let Some(mark) = &line.mark {
                    self.mark(mark);
                }
                None
            }
            Delivery::Close(line) => {
                self.queue_last(&line);
                Some(End::Closed(line.as_str().into()))
            }
            Delivery::Replaced(replaced) => {
                // The new session catches up on everything not acknowledged: sending it here
                // too would show it twice.
                self.out.clear();
                self.marks.clear();
                let crate::room::Replaced { line, handoff } = *replaced;
                self.handoff = Some(handoff);
                self.queue_last(&line);
                Some(End::Closed(line.as_str().into()))
            }
            Delivery::Evicted => Some(End::Evicted),
        }
    }

    /// Notes a read position reached once `out` is written; consecutive lines of one room
    /// update one entry.
    fn mark(&mut self, mark: &Mark) {
        if !self
            .marks
            .last_mut()
            .is_some_and(|last| fold_mark(last, mark))
        {
            self.marks.push(mark.clone());
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
                self.queue_last(protocol::SEND_QUEUE_EXCEEDED);
                (End::Evicted, Some(EVICTION_GOODBYE_TIMEOUT))
            }
            end => (end, Some(GOODBYE_TIMEOUT)),
        }
    }
}

/// Moves a position to `mark` when both are of one room (a reset mark stays apart: it
/// orders the positions before it from those after).
fn fold_mark((room, at): &mut Mark, (other, seq): &Mark) -> bool {
    if room != other || *at == RESET_MARK || *seq == RESET_MARK {
        return false;
    }
    *at = (*at).max(*seq);
    true
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
