//! What happens in a room, not how it looks: room names, sequence numbers and events.
//!
//! A room is an ordered log. Chat lines, actions and admin notices are *messages*: each gets
//! the room's next sequence number (1, 2, 3 …, never reused) and is stored as history.
//! Presence (joined, left) is in the same order but is not stored and takes no number of its
//! own: it carries the number of the last message before it. Wire text is made from events
//! by `protocol`, once per event and format.

pub mod codec;
mod epoch;

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use codec::{MessageBlock, decode_messages, encode_message};
pub use epoch::HistoryEpoch;

/// A message's number in its room: 1 for the first, never reused; 0 means "before any".
pub type Seq = u64;

/// The room every logged-in member is in and cannot leave.
pub const LOBBY: &str = "#lobby";
/// Longest room name after the `#`.
pub const MAX_ROOM_NAME_CHARS: usize = 32;

/// A valid room name, lower case, `#` included; cheap to clone.
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct RoomName(Arc<str>);

impl std::hash::Hash for RoomName {
    /// By the text, as equality is.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for RoomName {
    /// Clones of one name share their text, so most comparisons (once per delivered line, for
    /// read positions) end at the pointer.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

/// The text is not a room name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid room name")]
pub struct InvalidRoomName;

impl RoomName {
    /// `#` and 1–32 of `a-z 0-9 _ - .`, the first a letter or digit; any letter case, kept in
    /// lower case.
    pub fn parse(text: &str) -> Result<Self, InvalidRoomName> {
        let rest = text.strip_prefix('#').ok_or(InvalidRoomName)?;
        let first_ok = rest
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        let all_ok = rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !first_ok || !all_ok || rest.len() > MAX_ROOM_NAME_CHARS {
            return Err(InvalidRoomName);
        }
        Ok(RoomName(text.to_ascii_lowercase().into()))
    }

    /// `#lobby`.
    pub fn lobby() -> Self {
        RoomName(LOBBY.into())
    }

    /// True for `#lobby`.
    pub fn is_lobby(&self) -> bool {
        &*self.0 == LOBBY
    }

    /// The name with its `#`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which node a connection is on: 0 on a single server; in a cluster each node has its own.
pub type NodeId = u16;

/// Identifies one logged-in connection wherever it is (a name can be reused by a takeover):
/// the node it is on and a number counting up from 1 there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    /// The node the connection is on.
    pub node: NodeId,
    /// Its number on that node.
    pub local: u64,
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.node, self.local)
    }
}

impl std::str::FromStr for ConnId {
    type Err = ();

    /// `NODE:LOCAL`, as [`ConnId`]'s `Display` writes it.
    fn from_str(text: &str) -> Result<Self, ()> {
        let (node, local) = text.split_once(':').ok_or(())?;
        Ok(ConnId {
            node: node.parse().map_err(|_| ())?,
            local: local.parse().map_err(|_| ())?,
        })
    }
}

/// Which protocol a session speaks, as `admin who`, the metrics and the log name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Lines over TLS (`openssl s_client`, `tlschat connect`).
    #[default]
    Line,
    /// The line protocol over a WebSocket (the web client).
    Web,
    /// IRC.
    Irc,
}

impl Protocol {
    /// Every protocol, in the order the metrics list them.
    pub const ALL: [Protocol; 3] = [Protocol::Line, Protocol::Web, Protocol::Irc];

    /// `line`, `web` or `irc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Line => "line",
            Protocol::Web => "web",
            Protocol::Irc => "irc",
        }
    }
}

/// What happened.
///
/// Presence names the connection it is about, so a room's roster (who is in it, on every
/// node) is rebuilt from its events alone, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A chat line (stored).
    Chat { from: Arc<str>, text: String },
    /// `/me` (stored).
    Action { from: Arc<str>, text: String },
    /// `admin say` (stored; a `#lobby` event).
    Notice { text: String },
    /// A member came online in the room or joined it.
    Joined { name: Arc<str>, conn: ConnId },
    /// A member left the room or went offline.
    Left {
        name: Arc<str>,
        reason: Option<String>,
        conn: ConnId,
    },
    /// A new login of the name took over from connection `old` (not shown: no flap).
    Replaced {
        name: Arc<str>,
        old: ConnId,
        new: ConnId,
    },
    /// The connection went offline; it stays a member of the room, which shows nothing
    /// (#lobby shows it as `Left`).
    Offline { conn: ConnId },
}

impl EventKind {
    /// Messages are stored and numbered; presence is neither.
    pub fn is_message(&self) -> bool {
        matches!(
            self,
            EventKind::Chat { .. } | EventKind::Action { .. } | EventKind::Notice { .. }
        )
    }

    /// True for events members see as a line; a takeover and a member going offline in a
    /// room other than #lobby only change the roster.
    pub fn is_shown(&self) -> bool {
        !matches!(self, EventKind::Replaced { .. } | EventKind::Offline { .. })
    }
}

/// One entry of a room's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The room it happened in.
    pub room: RoomName,
    /// A message's own number; for presence, the number of the last message before it.
    pub seq: Seq,
    /// When, in milliseconds since the Unix epoch (UTC).
    pub at_ms: i64,
    /// What.
    pub kind: EventKind,
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_follow_the_rule_and_are_lower_cased() {
        assert_eq!(RoomName::parse("#Dev").unwrap().as_str(), "#dev");
        assert!(RoomName::parse("#a").is_ok());
        assert!(RoomName::parse("#9.x_y-z").is_ok());
        assert!(RoomName::parse(&format!("#{}", "a".repeat(32))).is_ok());
        for bad in [
            "dev",
            "#",
            "#_dev",
            "#-dev",
            "#.dev",
            "#de v",
            "#dév",
            "##dev",
            &format!("#{}", "a".repeat(33)),
        ] {
            assert_eq!(RoomName::parse(bad), Err(InvalidRoomName), "{bad}");
        }
    }

    #[test]
    fn only_messages_are_numbered() {
        let from: Arc<str> = "a".into();
        assert!(
            EventKind::Chat {
                from: from.clone(),
                text: "x".into()
            }
            .is_message()
        );
        assert!(EventKind::Notice { text: "x".into() }.is_message());
        let conn = ConnId { node: 0, local: 1 };
        assert!(!EventKind::Joined { name: from, conn }.is_message());
        assert!(!EventKind::Offline { conn }.is_shown());
    }
}
