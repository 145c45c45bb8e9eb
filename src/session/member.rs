//! The logged-in loop: the member's own lines, its queued room lines and its removal by the
//! rooms, fairly, with everything queued written as one batch.

use std::io;
use std::pin::Pin;
use std::time::Duration;

use futures_util::future::OptionFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep, sleep_until};
use tracing::warn;

use super::conn::Conn;
use super::rate::TokenBucket;
use super::{End, MemberGuard, SessionContext};
use crate::protocol::Incoming;
use crate::room::Outbox;

/// What a protocol does with a member's input: the line protocol's commands, or IRC's.
pub(super) trait Commands<S> {
    /// Acts on one decoded item from the member; returns how the session ends, if it does.
    /// Room lines queued before the item go out before any reply to it.
    fn handle(
        &mut self,
        conn: &mut Conn<S>,
        ctx: &SessionContext,
        member: &mut MemberGuard,
        outbox: &mut Outbox,
        item: Incoming,
    ) -> impl std::future::Future<Output = Option<End>>;

    /// Queues the notice that the member sends faster than its rate (once per episode).
    fn slow_down(&self, conn: &mut Conn<S>, per_sec: f64);

    /// The budget an item spends: the member's line rate unless the protocol says otherwise.
    fn budget(&self, _item: &Incoming) -> Budget {
        Budget::Lines
    }

    /// How long the client may stay silent before it is pinged (and closed after as long
    /// again without a word); `None`: never (the line protocol relies on TCP keepalive).
    fn keepalive(&self) -> Option<Duration> {
        None
    }

    /// Queues a ping, or (`timed_out`) the last line of a client that did not answer one.
    fn ping(&mut self, _conn: &mut Conn<S>, _timed_out: bool) {}
}

/// Which token bucket an item spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Budget {
    /// The member's line rate (`rate_burst`, `rate_per_sec`): what reaches other members.
    Lines,
    /// Commands that only ask ([`COMMAND_BURST`] at once, [`COMMAND_RATE`] per second).
    Commands,
    /// Never delayed (IRC's `PING` and `PONG`).
    Free,
}

/// Commands that only ask (IRC's `WHO`, `MODE`, …) a client may send at once.
pub(super) const COMMAND_BURST: u32 = 50;
/// Such commands per second once the burst is used.
pub(super) const COMMAND_RATE: f64 = 10.0;

/// Output written per step of the member loop: a backlog longer than this is written in
/// several steps, each followed by a chance to read the client's lines.
pub(super) const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Read positions are handed to the history writer at most this long after they move (and
/// at logout), so a crash of the server repeats about this much in the next catch-up. It is
/// also how often a session with unacknowledged lines asks its socket how far the peer got.
pub const POSITION_SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// The logged-in loop: client lines, queued room lines, and removal by the room. Returns how
/// the session ends and how long its goodbye (whatever is left in the output buffer, then
/// close_notify) may take; the caller leaves the room first.
pub(super) async fn member_loop<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    ctx: &SessionContext,
    (member, commands): (&mut MemberGuard, &mut impl Commands<S>),
    mut outbox: Outbox,
) -> io::Result<(End, Option<Duration>)> {
    let limits = &ctx.limits;
    let mut lines = TokenBucket::new(limits.rate_burst, limits.rate_per_sec);
    let mut asks = TokenBucket::new(COMMAND_BURST, COMMAND_RATE);
    let mut held: Option<(Incoming, Budget)> = None;
    let keepalive = commands.keepalive();
    // When the client last said anything, and whether it was pinged since.
    let mut heard_at = Instant::now();
    let mut pinged = false;
    let mut warned = false;
    let removed = outbox.removed();
    let history = &ctx.history;
    // When the positions that moved are saved; `None` while nothing is unsaved.
    let mut save_at: Option<Instant> = None;
    // One timer, kept across steps and moved only when its deadline changes (a timer built
    // and dropped per step costs a registration in the timer wheel on every step); boxed on
    // first use, so an idle session holds none.
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    let mut armed_at: Option<Instant> = None;
    loop {
        if save_at.is_none() && (member.has_unsaved_positions() || !conn.unacked.is_empty()) {
            save_at = Some(next_save_tick(Instant::now()));
        }
        // Everything queued so far goes out as one write: under load a member's lines pile up
        // while it writes, so batches grow by themselves; at low rates each line goes at once.
        if let Some(end) = conn
            .take_deliveries(&mut outbox, history, MAX_BATCH_BYTES)
            .await
        {
            return Ok(conn.last_words(end));
        }
        if conn.out.is_empty() {
            // Nothing unwritten: positions reached by the member's own lines hold now.
            conn.settle_marks(member, false);
        } else {
            let bytes = conn.out.len() as u64;
            tokio::select! {
                r = conn.write_batch() => r?,
                _ = removed.wait() => {
                    // The interrupted write left an unknown part of the buffer unsent, and
                    // the peer is not reading anyway: only the last line is still worth trying.
                    conn.out.clear();
                    return Ok(conn.removed(&mut outbox));
                }
            }
            outbox.written(std::mem::take(&mut conn.from_room));
            conn.settle_marks(member, true);
            if outbox.is_empty() {
                conn.release_buffer();
            }
            ctx.metrics
                .bytes_sent
                .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
            if let Some(queued_at) = conn.oldest.take() {
                ctx.metrics
                    .delivery_latency_seconds
                    .observe(queued_at.elapsed());
            }
        }
        let resume_at = held
            .as_ref()
            .and_then(|(_, budget)| bucket(*budget, &mut lines, &mut asks))
            .map(|b| b.ready_at());
        let ping_at = keepalive.map(|k| heard_at + if pinged { k * 2 } else { k });
        let wake_at = [resume_at, save_at, ping_at].into_iter().flatten().min();
        if let Some(at) = wake_at
            && armed_at != Some(at)
        {
            match &mut timer {
                Some(timer) => timer.as_mut().reset(at),
                None => timer = Some(Box::pin(sleep_until(at))),
            }
            armed_at = Some(at);
        }
        let timer_fired = OptionFuture::from(timer.as_mut().map(|t| t.as_mut()));
        // Not biased: under sustained fan-out the queue is never empty, and a biased select
        // would never read the member's own lines (`/quit` included).
        // A step that waits on the database (a history page, a command) gives up if the
        // member is removed meanwhile, and ends with the last line then.
        let ended = tokio::select! {
            _ = removed.wait() => return Ok(conn.removed(&mut outbox)),
            d = outbox.recv() => match d {
                Some(d) => conn.push_delivery(d, history, &mut outbox).await,
                None => Some(End::Closed("removed from the room".into())),
            },
            // One timer for both: the held line's turn and saving positions.
            _ = timer_fired, if wake_at.is_some() => {
                armed_at = None;
                let now = Instant::now();
                if save_at.is_some_and(|at| at <= now) {
                    conn.take_acknowledged(member);
                    member.save_positions();
                    save_at = None;
                }
                if ping_at.is_some_and(|at| at <= now) {
                    commands.ping(conn, pinged);
                    if pinged {
                        member.reason = Some("Ping timeout".into());
                        return Ok(conn.last_words(End::PingTimeout));
                    }
                    pinged = true;
                }
                match held.take() {
                    Some((item, budget)) if resume_at.is_some_and(|at| at <= now) => {
                        if let Some(b) = bucket(budget, &mut lines, &mut asks) {
                            b.try_take(now);
                        }
                        commands.handle(conn, ctx, member, &mut outbox, item).await
                    }
                    other => {
                        held = other;
                        None
                    }
                }
            }
            item = conn.next_item(), if held.is_none() => {
                let item = match item {
                    Ok(Some(item)) => item,
                    ended => {
                        settle_lines_in_flight(conn, ctx, member, &mut outbox).await;
                        return ended.map(|_| (End::ClientClosed, None));
                    }
                };
                let now = Instant::now();
                heard_at = now;
                pinged = false;
                let budget = commands.budget(&item);
                let spent = match bucket(budget, &mut lines, &mut asks) {
                    None => true,
                    Some(b) => {
                        if budget == Budget::Lines && b.is_full(now) {
                            // The client was quiet long enough to earn its whole burst: a new
                            // episode.
                            warned = false;
                        }
                        b.try_take(now)
                    }
                };
                if spent {
                    commands.handle(conn, ctx, member, &mut outbox, item).await
                } else {
                    // Stop reading: the rest waits in the client's TCP buffers, not here.
                    held = Some((item, budget));
                    if warned {
                        None
                    } else {
                        warned = true;
                        warn!(limit = "rate", "member over line rate");
                        match conn.take_deliveries(&mut outbox, history, usize::MAX).await {
                            Some(end) => Some(end),
                            None => {
                                commands.slow_down(conn, limits.rate_per_sec);
                                None
                            }
                        }
                    }
                }
            }
        };
        if let Some(end) = ended {
            return Ok(conn.last_words(end));
        }
    }
}

/// The bucket `budget` spends from; `None` for items that are never delayed.
fn bucket<'a>(
    budget: Budget,
    lines: &'a mut TokenBucket,
    asks: &'a mut TokenBucket,
) -> Option<&'a mut TokenBucket> {
    match budget {
        Budget::Lines => Some(lines),
        Budget::Commands => Some(asks),
        Budget::Free => None,
    }
}

/// The next whole [`POSITION_SAVE_INTERVAL`] since the process started: every member saves
/// on the same ticks, so the history writer commits the positions of all of them in one
/// transaction per tick instead of one per member.
fn next_save_tick(now: Instant) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| now);
    let interval = POSITION_SAVE_INTERVAL.as_nanos();
    let ticks = now.saturating_duration_since(epoch).as_nanos() / interval + 1;
    epoch + Duration::from_nanos(u64::try_from(ticks * interval).unwrap_or(u64::MAX))
}

/// A client that closed while its own lines were still on their way through a cluster's shared
/// log: once they are delivered here, the read position moves past them, unless lines before
/// them were left unwritten (then it stays, and the next catch-up shows those).
async fn settle_lines_in_flight<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    ctx: &SessionContext,
    member: &mut MemberGuard,
    outbox: &mut Outbox,
) {
    if !ctx.room.has_lines_in_flight(member.id) {
        return;
    }
    // Boxed: only in a cluster, and rare.
    Box::pin(ctx.room.wait_for_lines(member.id)).await;
    if conn.out.is_empty() && conn.take_deliveries_now(outbox).is_none() && conn.out.is_empty() {
        conn.settle_marks(member, false);
    }
}
