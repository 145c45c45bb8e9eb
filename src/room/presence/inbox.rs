//! Each node's inbox: a stream per node, read by the node's log reader in the same blocking
//! read as the rooms' streams, that carries what must reach a connection on that node (a
//! private message, a close) and the wake-up that makes the reader take up a room it just
//! activated. Key: `tlschat:node:ID:inbox` (stream; written by any node, trimmed to about
//! [`INBOX_KEEP`] entries at each write).

use redis::streams::StreamId;

use crate::cluster::{Redis, RedisUnavailable};
use crate::event::{ConnId, NodeId, RoomName, Seq};

/// Entries an inbox keeps (`MAXLEN ~`): a node reads its inbox as entries arrive, so only a
/// node that is down lets it fill.
pub const INBOX_KEEP: usize = 1000;

/// What one node tells another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Nothing to do but read again (the set of rooms to read changed).
    Wake,
    /// A line for one connection's queue (a private message).
    Line {
        /// The connection.
        to: ConnId,
        /// The wire text.
        line: String,
    },
    /// Close a connection with a last line: another node took its session over (no left
    /// line: the rooms see a `Replaced` entry instead).
    Replaced {
        /// The replaced connection.
        conn: ConnId,
        /// The connection that replaced it, which gets its positions ([`Note::Handed`]).
        by: ConnId,
    },
    /// The read positions a replaced session's peer acknowledged, for the session that
    /// replaced it (its catch-up starts there).
    Handed {
        /// The new session's connection.
        conn: ConnId,
        /// Room and number.
        positions: Vec<(RoomName, Seq)>,
    },
    /// An administrator kicked the session of this connection.
    Kick {
        /// The connection.
        conn: ConnId,
        /// The reason given, if any.
        reason: Option<String>,
    },
}

/// The inboxes of every node on one Redis; cheap to clone.
#[derive(Clone)]
pub struct Inboxes {
    redis: Redis,
}

impl Inboxes {
    /// The inboxes on `redis`.
    pub fn new(redis: Redis) -> Self {
        Inboxes { redis }
    }

    /// The key of `node`'s inbox.
    pub fn key(node: NodeId) -> String {
        format!("tlschat:node:{node}:inbox")
    }

    /// Leaves `note` in `node`'s inbox.
    pub async fn send(&self, node: NodeId, note: &Note) -> Result<(), RedisUnavailable> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(Self::key(node))
            .arg("MAXLEN")
            .arg("~")
            .arg(INBOX_KEEP)
            .arg("*");
        match note {
            Note::Wake => cmd.arg("k").arg("wake"),
            Note::Line { to, line } => cmd
                .arg("k")
                .arg("line")
                .arg("c")
                .arg(to.to_string())
                .arg("x")
                .arg(line),
            Note::Replaced { conn, by } => cmd
                .arg("k")
                .arg("replaced")
                .arg("c")
                .arg(conn.to_string())
                .arg("b")
                .arg(by.to_string()),
            Note::Handed { conn, positions } => {
                let positions: Vec<String> = positions
                    .iter()
                    .map(|(room, seq)| format!("{room}={seq}"))
                    .collect();
                cmd.arg("k")
                    .arg("handed")
                    .arg("c")
                    .arg(conn.to_string())
                    .arg("p")
                    .arg(positions.join(","))
            }
            Note::Kick { conn, reason } => {
                cmd.arg("k").arg("kick").arg("c").arg(conn.to_string());
                if let Some(reason) = reason {
                    cmd.arg("x").arg(reason);
                }
                &mut cmd
            }
        };
        cmd.query_async::<()>(&mut self.redis.conn())
            .await
            .map_err(|e| self.redis.error(e))
    }
}

/// A note read back; `None` for one this version does not know (skipped).
pub fn decode(entry: &StreamId) -> Option<Note> {
    let text = |field: &str| entry.get::<String>(field);
    let conn = || text("c")?.parse::<ConnId>().ok();
    match text("k")?.as_str() {
        "wake" => Some(Note::Wake),
        "line" => Some(Note::Line {
            to: conn()?,
            line: text("x")?,
        }),
        "replaced" => Some(Note::Replaced {
            conn: conn()?,
            by: text("b")?.parse().ok()?,
        }),
        "handed" => Some(Note::Handed {
            conn: conn()?,
            positions: text("p")?
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (room, seq) = p.split_once('=')?;
                    Some((RoomName::parse(room).ok()?, seq.parse().ok()?))
                })
                .collect::<Option<_>>()?,
        }),
        "kick" => Some(Note::Kick {
            conn: conn()?,
            reason: text("x"),
        }),
        _ => None,
    }
}
