//! A room's log kept by this node: the sequence counter and a bounded window of recent
//! messages, under the rooms' lock, with the durable copy written by `history`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::LogError;
use crate::event::MessageBlock;
use crate::event::{Event, EventKind, RoomName, Seq};
use crate::history::{Durable, History, HistoryRequest, Purpose};
use crate::store::MessageRange;

/// Recent messages a room keeps in memory when the database holds the rest: enough for the
/// join history, `/history 20` and most catch-ups without a read.
pub const RECENT_WINDOW_MESSAGES: usize = 100;
/// Messages per block of the window: the unit in which it is trimmed.
const WINDOW_BLOCK_MESSAGES: usize = 32;

/// One room's log on this node.
pub struct LocalLog {
    room: RoomName,
    last_seq: Seq,
    /// Recent messages, encoded (no allocation per message), oldest block first; the numbers
    /// are consecutive. Shared, so a history read takes pointers under the lock and decodes
    /// off it; the newest block is copied only if a read still holds it when it grows.
    window: VecDeque<Arc<MessageBlock>>,
    /// Messages in `window`.
    in_window: usize,
    /// The newest number the writer has committed (all of them when nothing is written).
    durable: Durable,
    /// Messages the window keeps once durable.
    keep: usize,
}

impl LocalLog {
    /// A log continuing after `last_seq` (the newest number ever used in this room).
    pub fn new(room: RoomName, last_seq: Seq, history: &History) -> Self {
        let limits = history.limits();
        let keep = if history.is_durable() {
            RECENT_WINDOW_MESSAGES
        } else if limits.history == crate::config::HistoryMode::Memory {
            // The window is the whole history.
            usize::try_from(limits.history_messages).unwrap_or(usize::MAX)
        } else {
            0
        };
        let durable = if history.is_durable() {
            last_seq
        } else {
            Seq::MAX
        };
        LocalLog {
            room,
            last_seq,
            window: VecDeque::new(),
            in_window: 0,
            durable: Arc::new(AtomicU64::new(durable)),
            keep,
        }
    }

    /// The newest number used.
    pub fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// Appends an event: a message takes the next number and is handed to the history
    /// writer; presence carries the number of the last message before it. A message is
    /// refused while the history writer's backlog is full: it could not be stored.
    pub fn append(&mut self, kind: EventKind, history: &History) -> Result<Event, LogError> {
        let message = kind.is_message();
        if message && history.is_backlogged() {
            return Err(LogError::Unavailable);
        }
        if message {
            self.last_seq += 1;
        }
        let event = Event {
            room: self.room.clone(),
            seq: self.last_seq,
            at_ms: crate::event::now_ms(),
            kind,
        };
        if message && history.limits().history != crate::config::HistoryMode::Off {
            // Encoded once, into the window; the writer gets a copy of the bytes.
            let encoded = match self.window.back_mut() {
                Some(block) if block.count < WINDOW_BLOCK_MESSAGES => {
                    Arc::make_mut(block).push(&event)
                }
                _ => {
                    self.window.push_back(Arc::new(MessageBlock::new(&event)));
                    let block = self.window.back().expect("just pushed");
                    &block.data[..]
                }
            };
            history.append(&event, encoded, &self.durable);
            self.in_window += 1;
            self.trim(history, event.at_ms);
        }
        Ok(event)
    }

    /// Drops whole blocks the window need not keep: past the retention limits, or beyond
    /// `keep` and durable.
    fn trim(&mut self, history: &History, now_ms: i64) {
        let durable = self.durable.load(Ordering::Acquire);
        let floor = self
            .last_seq
            .saturating_sub(history.limits().history_messages);
        let min_at = history.min_at_ms(now_ms);
        while let Some(front) = self.window.front() {
            let expired = front.last_seq <= floor || front.last_at_ms < min_at;
            let spare = self.in_window - front.count >= self.keep && front.last_seq <= durable;
            if !(expired || spare) {
                break;
            }
            self.in_window -= front.count;
            self.window.pop_front();
        }
    }

    /// True when nothing of this log lives only in memory: a room without members may then
    /// be forgotten and later continue from the database's number.
    pub fn is_settled(&self, history: &History) -> bool {
        match history.limits().history {
            crate::config::HistoryMode::Off | crate::config::HistoryMode::Redis => true,
            // Memory history has no copy elsewhere: a room is only forgotten if it never had a
            // message, so its numbers (and the read positions into them) are never reused.
            crate::config::HistoryMode::Memory => self.last_seq == 0,
            crate::config::HistoryMode::Sqlite => {
                self.durable.load(Ordering::Acquire) >= self.last_seq
            }
        }
    }

    /// A request for the newest `want` kept messages numbered after `after`, up to now: the
    /// window's blocks that overlap the range are shared (pointers; no bytes copied and
    /// nothing decoded under the lock).
    pub fn request(
        &self,
        purpose: Purpose,
        after: Seq,
        want: usize,
        history: &History,
    ) -> HistoryRequest {
        let limits = history.limits();
        let floor = self.last_seq.saturating_sub(limits.history_messages);
        let range = MessageRange {
            after: after.max(floor),
            upto: self.last_seq,
            min_at_ms: history.min_at_ms(crate::event::now_ms()),
        };
        let window: Vec<Arc<MessageBlock>> = self
            .window
            .iter()
            .filter(|b| b.last_seq > range.after && b.last_at_ms >= range.min_at_ms)
            .cloned()
            .collect();
        // The window is contiguous: it holds the whole range when it starts at or before the
        // range's first number (or when nothing exists outside memory).
        let first = self.window.front().map(|b| b.first_seq);
        let holds_all = !history.is_durable()
            || first.is_some_and(|f| f <= range.after + 1)
            || range.upto <= range.after;
        HistoryRequest {
            room: self.room.clone(),
            purpose,
            range,
            want,
            window,
            before_window: if holds_all {
                None
            } else {
                Some(first.unwrap_or(range.upto + 1))
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HistoryMode, RoomLimits};

    fn chat(text: &str) -> EventKind {
        EventKind::Chat {
            from: "bob".into(),
            text: text.into(),
        }
    }

    fn history(mode: HistoryMode, messages: u64) -> Arc<History> {
        History::detached(RoomLimits {
            history: mode,
            history_messages: messages,
            ..RoomLimits::default()
        })
    }

    #[test]
    fn messages_are_numbered_and_presence_is_not() {
        let h = history(HistoryMode::Memory, 100);
        let mut log = LocalLog::new(RoomName::lobby(), 41, &h);
        assert_eq!(log.append(chat("a"), &h).unwrap().seq, 42);
        let joined = log
            .append(
                EventKind::Joined {
                    name: "x".into(),
                    conn: crate::event::ConnId { node: 0, local: 1 },
                },
                &h,
            )
            .unwrap();
        assert_eq!(joined.seq, 42, "presence carries the last message's number");
        assert_eq!(log.append(chat("b"), &h).unwrap().seq, 43);
        assert_eq!(log.last_seq(), 43);
    }

    #[test]
    fn a_request_takes_the_newest_of_the_range_within_retention() {
        let h = history(HistoryMode::Memory, 3);
        let mut log = LocalLog::new(RoomName::lobby(), 0, &h);
        for i in 0..5 {
            log.append(chat(&i.to_string()), &h).unwrap();
        }
        let r = log.request(Purpose::CatchUp { missed: 5 }, 0, 2, &h);
        assert_eq!(r.range.after, 2, "only the last 3 are kept");
        let (shown, kept) = r.from_window();
        assert_eq!(kept, 3);
        let seqs: Vec<Seq> = shown.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [4, 5]);
        assert_eq!(r.before_window, None, "memory history is all in the window");
    }

    #[test]
    fn off_keeps_nothing_and_numbers_still_count() {
        let h = history(HistoryMode::Off, 100);
        let mut log = LocalLog::new(RoomName::lobby(), 0, &h);
        log.append(chat("a"), &h).unwrap();
        let r = log.request(Purpose::History, 0, 10, &h);
        assert!(r.from_window().0.is_empty());
        assert_eq!(r.range.upto, 1);
        assert!(log.is_settled(&h));
    }
}
