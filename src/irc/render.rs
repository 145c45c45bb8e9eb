//! A room's event as IRC lines for one set of negotiated capabilities: a chat line or `/me` is
//! `PRIVMSG` (an action as CTCP ACTION), an admin notice `NOTICE`, joining a room `JOIN`,
//! leaving one `PART`, and leaving the server (a left line in #lobby) `QUIT`; a takeover and
//! a member going offline in another room show nothing. Messages carry `time`, `msgid` and
//! `account` tags when those are enabled, and a text longer than one IRC line goes out as
//! several, the first with the `msgid`, all with the same `time`.

use super::chathistory::{msgid, server_time};
use super::message::{MAX_BODY_BYTES, write, write_text};
use super::text::{split, strip_formatting};
use crate::event::{Event, EventKind};

/// The capabilities that change how an event looks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Caps {
    /// `server-time`: a `time` tag.
    pub server_time: bool,
    /// `message-tags`: a `msgid` tag on messages.
    pub message_tags: bool,
    /// `account-tag`: the sender's `account`.
    pub account_tag: bool,
    /// `extended-join`: `JOIN #room account :realname`.
    pub extended_join: bool,
}

/// Who an event is from, as IRC shows them.
pub struct Source<'a> {
    /// The nick (the account name).
    pub nick: &'a str,
    /// The user part of the mask.
    pub user: &'a str,
    /// The real name (for extended-join).
    pub realname: &'a str,
}

/// Appends `event`'s IRC lines to `out`. `server` is the server name (the host of every mask
/// and the source of notices); `source` describes the member the event is about (unused for
/// a notice).
pub fn event(out: &mut String, event: &Event, caps: Caps, server: &str, source: &Source<'_>) {
    event_as(out, event, (caps, server), source, "PRIVMSG");
}

/// Like [`event`], a chat line sent as `NOTICE` (a member's IRC `NOTICE`, live).
pub fn notice(out: &mut String, event: &Event, caps: Caps, server: &str, source: &Source<'_>) {
    event_as(out, event, (caps, server), source, "NOTICE");
}

/// [`event`] with `verb` as the command of a chat line.
fn event_as(
    out: &mut String,
    event: &Event,
    (caps, server): (Caps, &str),
    source: &Source<'_>,
    verb: &str,
) {
    let mask = format!("{}!~{}@{server}", source.nick, source.user);
    let time = caps.server_time.then(|| server_time(event.at_ms));
    let mut tags: Vec<(&str, &str)> = Vec::new();
    if let Some(time) = &time {
        tags.push(("time", time));
    }
    let room = event.room.as_str();
    match &event.kind {
        EventKind::Chat { text, .. } | EventKind::Action { text, .. } => {
            let (open, close) = match event.kind {
                EventKind::Action { .. } => ("\x01ACTION ", "\x01"),
                _ => ("", ""),
            };
            let from = (mask.as_str(), source.nick);
            let verb = if open.is_empty() { verb } else { "PRIVMSG" };
            message(out, (event, verb), caps, &tags, from, (open, text, close));
        }
        EventKind::Notice { text } => {
            let id = caps.message_tags.then(|| msgid(&event.room, event.seq));
            if let Some(id) = &id {
                tags.push(("msgid", id));
            }
            let text = strip_formatting(text);
            write_text(out, &tags, Some(server), "NOTICE", &[room, &text]);
        }
        EventKind::Joined { .. } => {
            if caps.extended_join {
                let params = [room, source.nick, source.realname];
                write_text(out, &tags, Some(&mask), "JOIN", &params);
            } else {
                write(out, &tags, Some(&mask), "JOIN", &[room]);
            }
        }
        EventKind::Left { reason, .. } if event.room.is_lobby() => {
            let reason = reason.as_deref().unwrap_or("Quit");
            write_text(out, &tags, Some(&mask), "QUIT", &[reason]);
        }
        EventKind::Left {
            reason: Some(reason),
            ..
        } => write_text(out, &tags, Some(&mask), "PART", &[room, reason]),
        EventKind::Left { .. } => write(out, &tags, Some(&mask), "PART", &[room]),
        EventKind::Replaced { .. } | EventKind::Offline { .. } => {}
    }
}

/// A chat line or action from `from`: as many `PRIVMSG`s as its text needs, each at most
/// [`MAX_BODY_BYTES`] with CR LF, the first with the `msgid`.
fn message(
    out: &mut String,
    (event, verb): (&Event, &str),
    caps: Caps,
    tags: &[(&str, &str)],
    (mask, nick): (&str, &str),
    (open, text, close): (&str, &str, &str),
) {
    let room = event.room.as_str();
    // `:MASK PRIVMSG #room :` + open + piece + close + CR LF.
    let overhead = 1 + mask.len() + verb.len() + 2 + room.len() + 2 + open.len() + close.len() + 2;
    let room_for_text = MAX_BODY_BYTES.saturating_sub(overhead).max(4);
    let id = caps.message_tags.then(|| msgid(&event.room, event.seq));
    for (i, piece) in split(text, room_for_text).into_iter().enumerate() {
        let mut piece_tags = tags.to_vec();
        if i == 0
            && let Some(id) = &id
        {
            piece_tags.push(("msgid", id));
        }
        if caps.account_tag {
            piece_tags.push(("account", nick));
        }
        let body = format!("{open}{piece}{close}");
        write_text(out, &piece_tags, Some(mask), verb, &[room, &body]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ConnId, RoomName};
    use crate::irc::message::Message;

    fn at(room: &str, seq: u64, kind: EventKind) -> Event {
        Event {
            room: RoomName::parse(room).unwrap(),
            seq,
            at_ms: 1_796_126_282_123,
            kind,
        }
    }

    const ALICE: Source<'static> = Source {
        nick: "alice",
        user: "al",
        realname: "Alice A",
    };

    fn lines(e: &Event, caps: Caps) -> Vec<String> {
        let mut out = String::new();
        event(&mut out, e, caps, "tlschat", &ALICE);
        out.split_terminator("\r\n").map(str::to_owned).collect()
    }

    fn chat(text: &str) -> EventKind {
        EventKind::Chat {
            from: "alice".into(),
            text: text.into(),
        }
    }

    #[test]
    fn a_chat_line_is_a_privmsg_with_the_tags_enabled() {
        let e = at("#dev", 42, chat("hi there"));
        assert_eq!(
            lines(&e, Caps::default()),
            [":alice!~al@tlschat PRIVMSG #dev :hi there"]
        );
        let all = Caps {
            server_time: true,
            message_tags: true,
            account_tag: true,
            extended_join: true,
        };
        assert_eq!(
            lines(&e, all),
            [
                "@time=2026-12-01T11:58:02.123Z;msgid=dev/42;account=alice :alice!~al@tlschat PRIVMSG #dev :hi there"
            ]
        );
    }

    #[test]
    fn an_action_is_ctcp_action_and_a_notice_comes_from_the_server() {
        let action = at(
            "#lobby",
            3,
            EventKind::Action {
                from: "alice".into(),
                text: "waves".into(),
            },
        );
        assert_eq!(
            lines(&action, Caps::default()),
            [":alice!~al@tlschat PRIVMSG #lobby :\x01ACTION waves\x01"]
        );
        let notice = at(
            "#lobby",
            4,
            EventKind::Notice {
                text: "\x02restart\x02 at noon".into(),
            },
        );
        assert_eq!(
            lines(&notice, Caps::default()),
            [":tlschat NOTICE #lobby :restart at noon"]
        );
    }

    #[test]
    fn presence_is_join_part_and_quit() {
        let conn = ConnId { node: 0, local: 1 };
        let joined = at(
            "#dev",
            0,
            EventKind::Joined {
                name: "alice".into(),
                conn,
            },
        );
        assert_eq!(
            lines(&joined, Caps::default()),
            [":alice!~al@tlschat JOIN #dev"]
        );
        let extended = Caps {
            extended_join: true,
            ..Caps::default()
        };
        assert_eq!(
            lines(&joined, extended),
            [":alice!~al@tlschat JOIN #dev alice :Alice A"]
        );
        let left = |room: &str, reason: Option<&str>| {
            at(
                room,
                0,
                EventKind::Left {
                    name: "alice".into(),
                    reason: reason.map(str::to_owned),
                    conn,
                },
            )
        };
        assert_eq!(
            lines(&left("#dev", None), Caps::default()),
            [":alice!~al@tlschat PART #dev"]
        );
        assert_eq!(
            lines(&left("#lobby", Some("connection lost")), Caps::default()),
            [":alice!~al@tlschat QUIT :connection lost"]
        );
        assert_eq!(
            lines(&left("#lobby", None), Caps::default()),
            [":alice!~al@tlschat QUIT :Quit"]
        );
        let offline = at("#dev", 0, EventKind::Offline { conn });
        assert!(lines(&offline, Caps::default()).is_empty());
    }

    #[test]
    fn a_4096_byte_line_goes_out_as_privmsgs_of_at_most_512_bytes_that_rejoin() {
        let text: String =
            (0..1200).map(|i| format!("w{i} ")).collect::<String>()[..4096].to_owned();
        let e = at("#dev", 9, chat(&text));
        let caps = Caps {
            server_time: true,
            message_tags: true,
            ..Caps::default()
        };
        let sent = lines(&e, caps);
        assert!(sent.len() >= 9, "{}", sent.len());
        let mut rejoined = String::new();
        for (i, line) in sent.iter().enumerate() {
            let m = Message::parse(line).unwrap();
            let body = line.split_once(' ').unwrap().1;
            assert!(body.len() + 2 <= MAX_BODY_BYTES, "{}", body.len());
            assert_eq!(m.tag("time"), Some("2026-12-01T11:58:02.123Z"));
            assert_eq!(m.tag("msgid").is_some(), i == 0);
            rejoined.push_str(m.params[1]);
        }
        assert_eq!(rejoined, text);
    }
}
