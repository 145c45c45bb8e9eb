//! A room's ordered log: appending gives a message its number (1, 2, 3 …, never reused),
//! and reads serve `/history`, the join history and catch-up.
//!
//! [`Log`] is the interface the rooms use, one per room in memory; each backend is a variant
//! in a file of its own. The local one (`local`) numbers and windows messages under the rooms'
//! lock, so appending and delivering stay one step there. A shared log (Redis Streams) is a
//! second variant whose append is a script on the room's stream: it may wait or fail, so the
//! rooms append to it off their lock and deliver what the node's reader returns, in stream
//! order, the sender's own line included.

mod local;
pub mod redis;

use crate::event::{Event, EventKind, RoomName, Seq};
use crate::history::{History, HistoryRequest, Purpose};
use crate::store::MessageRange;
pub use local::{LocalLog, RECENT_WINDOW_MESSAGES};
use redis::{Tail, split_id};

/// Why an append was refused; nothing was relayed or stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The log cannot take messages now: the history writer's backlog is full (or a shared
    /// log is unreachable).
    #[error("the room's log is unavailable")]
    Unavailable,
}

/// One room's log, whatever keeps it.
pub enum Log {
    /// Kept by this node.
    Local(LocalLog),
    /// A room stream in the cluster's Redis, as far as this node has read it.
    Redis(SharedLog),
}

/// Where this node is in a room's shared log: the entries it has delivered.
pub struct SharedLog {
    room: RoomName,
    /// The newest message number delivered here.
    last_seq: Seq,
    /// The last entry delivered here (`SEQ-N`); the reader continues after it.
    read: (Seq, u64),
}

impl SharedLog {
    /// The log as found at `tail` (the room's end when it became active here).
    pub fn new(room: RoomName, tail: &Tail) -> Self {
        SharedLog {
            room,
            last_seq: tail.seq,
            read: split_id(&tail.id).unwrap_or((tail.seq, 0)),
        }
    }

    /// The entry id the reader continues after.
    pub fn read_from(&self) -> String {
        format!("{}-{}", self.read.0, self.read.1)
    }

    /// Starts again from the stream's beginning: Redis lost the room and numbering restarts.
    pub fn restart(&mut self) {
        self.last_seq = 0;
        self.read = (0, 0);
    }

    /// Takes the entry `id` as delivered; false if it was already (a read that raced a
    /// reactivation), so it is not delivered twice.
    pub fn advance(&mut self, id: &str, seq: Seq, message: bool) -> bool {
        let Some(at) = split_id(id) else {
            return false;
        };
        if at <= self.read {
            return false;
        }
        self.read = at;
        if message {
            if self.last_seq > 0 && seq > self.last_seq + 1 {
                // Trimmed before this node read them: it lagged by more than the stream keeps
                // for a slow reader.
                tracing::warn!(
                    room = %self.room,
                    missed = seq - self.last_seq - 1,
                    "messages were trimmed from a room's log before this node read them"
                );
            }
            self.last_seq = self.last_seq.max(seq);
        }
        true
    }
}

impl Log {
    /// A log kept by this node, continuing after `last_seq` (the room's newest number, read
    /// from the durable store).
    pub fn local(room: RoomName, last_seq: Seq, history: &History) -> Self {
        Log::Local(LocalLog::new(room, last_seq, history))
    }

    /// Appends an event to a local log; a message gets the room's next number. (A shared
    /// log is appended to by the node's link, off the rooms' lock.)
    pub fn append(&mut self, kind: EventKind, history: &History) -> Result<Event, LogError> {
        match self {
            Log::Local(log) => log.append(kind, history),
            Log::Redis(_) => Err(LogError::Unavailable),
        }
    }

    /// The newest number used (for a shared log, the newest delivered here).
    pub fn last_seq(&self) -> Seq {
        match self {
            Log::Local(log) => log.last_seq(),
            Log::Redis(log) => log.last_seq,
        }
    }

    /// True when nothing of this log lives only in memory, so the room may be forgotten.
    pub fn is_settled(&self, history: &History) -> bool {
        match self {
            Log::Local(log) => log.is_settled(history),
            Log::Redis(_) => true,
        }
    }

    /// The read of the newest `want` messages numbered after `after`: what memory holds, and
    /// what must come from the durable store.
    pub fn range(
        &self,
        purpose: Purpose,
        after: Seq,
        want: usize,
        history: &History,
    ) -> HistoryRequest {
        match self {
            Log::Local(log) => log.request(purpose, after, want, history),
            Log::Redis(log) => {
                let floor = log
                    .last_seq
                    .saturating_sub(history.limits().history_messages);
                let range = MessageRange {
                    after: after.max(floor),
                    upto: log.last_seq,
                    min_at_ms: history.min_at_ms(crate::event::now_ms()),
                };
                HistoryRequest {
                    room: log.room.clone(),
                    purpose,
                    range,
                    want,
                    window: Vec::new(),
                    before_window: Some(range.upto + 1),
                }
            }
        }
    }
}
