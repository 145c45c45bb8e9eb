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
pub use local::{LocalLog, RECENT_WINDOW_MESSAGES};

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
}

impl Log {
    /// A log kept by this node, continuing after `last_seq` (the room's newest number, read
    /// from the durable store).
    pub fn local(room: RoomName, last_seq: Seq, history: &History) -> Self {
        Log::Local(LocalLog::new(room, last_seq, history))
    }

    /// Appends an event; a message gets the room's next number.
    pub fn append(&mut self, kind: EventKind, history: &History) -> Result<Event, LogError> {
        match self {
            Log::Local(log) => log.append(kind, history),
        }
    }

    /// The newest number used.
    pub fn last_seq(&self) -> Seq {
        match self {
            Log::Local(log) => log.last_seq(),
        }
    }

    /// True when nothing of this log lives only in memory, so the room may be forgotten.
    pub fn is_settled(&self, history: &History) -> bool {
        match self {
            Log::Local(log) => log.is_settled(history),
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
        }
    }
}
