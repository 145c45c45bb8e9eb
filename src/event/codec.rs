//! The stored form of messages: consecutive messages of one room encoded into one block, so
//! storing a message costs a few bytes of encoding instead of a row with its own index entries.
//! The same bytes live in a room's in-memory window, in the database and (for a shared log) in
//! a stream entry, which is why the codec belongs to the events and not to one store backend:
//! every backend keeps these blocks as opaque bytes.

use super::{Event, EventKind, RoomName, Seq};

/// Consecutive messages of one room encoded for one stored block row (see [`encode_message`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBlock {
    /// The room.
    pub room: RoomName,
    /// The first message's number.
    pub first_seq: Seq,
    /// The last message's number.
    pub last_seq: Seq,
    /// The last message's time.
    pub last_at_ms: i64,
    /// Messages in `data`.
    pub count: usize,
    /// The encoded messages.
    pub data: Vec<u8>,
}

impl MessageBlock {
    /// A block starting with `event`.
    pub fn new(event: &Event) -> Self {
        let mut block = MessageBlock {
            room: event.room.clone(),
            first_seq: event.seq,
            last_seq: event.seq,
            last_at_ms: event.at_ms,
            count: 0,
            data: Vec::new(),
        };
        block.push(event);
        block
    }

    /// True when `event` may be added: same room, not full.
    pub fn takes(&self, event: &Event) -> bool {
        self.count < MESSAGES_PER_BLOCK && self.room == event.room
    }

    /// The messages, decoded; `None` if the bytes are damaged.
    pub fn events(&self) -> Option<Vec<Event>> {
        decode_messages(&self.room, &self.data)
    }

    /// Appends a message (the caller checked [`MessageBlock::takes`]); returns its bytes.
    pub fn push(&mut self, event: &Event) -> &[u8] {
        let start = self.data.len();
        encode_message(&mut self.data, event);
        self.last_seq = event.seq;
        self.last_at_ms = event.at_ms;
        self.count += 1;
        &self.data[start..]
    }

    /// A block starting with a message already encoded (by [`MessageBlock::push`]), with room
    /// for `capacity` bytes.
    pub fn from_encoded(event: &Event, bytes: &[u8], capacity: usize) -> Self {
        let mut data = Vec::with_capacity(capacity.max(bytes.len()));
        data.extend_from_slice(bytes);
        MessageBlock {
            room: event.room.clone(),
            first_seq: event.seq,
            last_seq: event.seq,
            last_at_ms: event.at_ms,
            count: 1,
            data,
        }
    }

    /// Appends a message already encoded (the caller checked [`MessageBlock::takes`]).
    pub fn push_encoded(&mut self, event: &Event, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        self.last_seq = event.seq;
        self.last_at_ms = event.at_ms;
        self.count += 1;
    }
}

/// Messages in one stored block at most: a read of the last few decodes little.
pub const MESSAGES_PER_BLOCK: usize = 1024;

/// Encodes one message for a block row: the number (u64), the time (i64), the kind (0 chat,
/// 1 action, 2 notice), the sender (u8 length + bytes) and the text (u32 length + bytes),
/// little-endian. Presence is never stored and is skipped.
pub fn encode_message(out: &mut Vec<u8>, event: &Event) {
    let (kind, sender, body) = match &event.kind {
        EventKind::Chat { from, text } => (0u8, &**from, text.as_str()),
        EventKind::Action { from, text } => (1, &**from, text.as_str()),
        EventKind::Notice { text } => (2, "", text.as_str()),
        EventKind::Joined { .. }
        | EventKind::Left { .. }
        | EventKind::Replaced { .. }
        | EventKind::Offline { .. } => return,
    };
    // Usernames are at most 32 bytes; lines at most the line limit (≤ 1 MiB).
    let sender = &sender.as_bytes()[..sender.len().min(255)];
    out.reserve(22 + sender.len() + body.len());
    out.extend_from_slice(&event.seq.to_le_bytes());
    out.extend_from_slice(&event.at_ms.to_le_bytes());
    out.push(kind);
    out.push(sender.len() as u8);
    out.extend_from_slice(sender);
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(body.as_bytes());
}

/// Decodes a block written by [`encode_message`]; `None` if it is damaged.
pub fn decode_messages(room: &RoomName, mut data: &[u8]) -> Option<Vec<Event>> {
    fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if data.len() < n {
            return None;
        }
        let (head, rest) = data.split_at(n);
        *data = rest;
        Some(head)
    }
    let mut out = Vec::new();
    while !data.is_empty() {
        let seq = u64::from_le_bytes(take(&mut data, 8)?.try_into().ok()?);
        let at_ms = i64::from_le_bytes(take(&mut data, 8)?.try_into().ok()?);
        let kind = take(&mut data, 1)?[0];
        let sender_len = usize::from(take(&mut data, 1)?[0]);
        let sender = std::str::from_utf8(take(&mut data, sender_len)?).ok()?;
        let body_len = u32::from_le_bytes(take(&mut data, 4)?.try_into().ok()?);
        let body = std::str::from_utf8(take(&mut data, usize::try_from(body_len).ok()?)?).ok()?;
        let kind = match kind {
            0 => EventKind::Chat {
                from: sender.into(),
                text: body.to_owned(),
            },
            1 => EventKind::Action {
                from: sender.into(),
                text: body.to_owned(),
            },
            2 => EventKind::Notice {
                text: body.to_owned(),
            },
            _ => return None,
        };
        out.push(Event {
            room: room.clone(),
            seq,
            at_ms,
            kind,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_blocks_round_trip_and_damage_is_detected() {
        let room = RoomName::parse("#dev").unwrap();
        let events = vec![
            Event {
                room: room.clone(),
                seq: 7,
                at_ms: 1_796_126_282_000,
                kind: EventKind::Chat {
                    from: "bob".into(),
                    text: "hi ünïcode".into(),
                },
            },
            Event {
                room: room.clone(),
                seq: 8,
                at_ms: 1_796_126_283_000,
                kind: EventKind::Notice {
                    text: "maintenance".into(),
                },
            },
        ];
        let mut data = Vec::new();
        for e in &events {
            encode_message(&mut data, e);
        }
        assert_eq!(decode_messages(&room, &data), Some(events));
        assert_eq!(decode_messages(&room, &data[..data.len() - 1]), None);
        let mut bad_kind = data.clone();
        bad_kind[16] = 9;
        assert_eq!(decode_messages(&room, &bad_kind), None);
    }
}
