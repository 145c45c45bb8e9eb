//! What an IRC session's deliveries look like, without I/O: a room line from what it means
//! (events, joining or leaving a room, a private message), a line without a meaning as a
//! server `NOTICE`, a history block as a `NOTICE` header and its messages in a
//! `chathistory` batch, and a session's last line as `ERROR`.

use std::fmt::Write as _;
use std::sync::Arc;

use super::message::{self, MAX_BODY_BYTES, write, write_text};
use super::render::{self, Caps, Source};
use super::reply::{self, To};
use super::text::split;
use crate::event::{Event, EventKind, RoomName};
use crate::room::{ClientTags, Line, Meaning};

/// One session's view: its server name, nick, user part and negotiated capabilities.
#[derive(Debug, Clone)]
pub struct View {
    /// `irc_server_name`.
    pub server: String,
    /// The nick (the account name as created).
    pub nick: String,
    /// The user part of the session's own mask.
    pub user: String,
    /// The real name from `USER`.
    pub realname: String,
    /// How events look.
    pub caps: Caps,
    /// `echo-message`: the session's own messages come back to it.
    pub echo: bool,
    /// `batch`: history blocks go in a `chathistory` batch.
    pub batch: bool,
    /// `away-notify`: other members going away and coming back.
    pub away_notify: bool,
    /// Batches opened so far (their references are numbered).
    batches: u64,
}

impl View {
    /// The view of `nick`'s session with the capabilities in `caps`.
    pub fn new(server: &str, nick: &str, (user, realname): (&str, &str), caps: &[&str]) -> Self {
        let has = |c: &str| caps.contains(&c);
        View {
            server: server.to_owned(),
            nick: nick.to_owned(),
            user: user.to_owned(),
            realname: realname.to_owned(),
            caps: Caps {
                server_time: has("server-time"),
                message_tags: has("message-tags"),
                account_tag: has("account-tag"),
                extended_join: has("extended-join"),
            },
            echo: has("echo-message"),
            batch: has("batch"),
            away_notify: has("away-notify"),
            batches: 0,
        }
    }

    /// The session's own mask: `nick!~user@server`.
    pub fn mask(&self) -> String {
        format!("{}!~{}@{}", self.nick, self.user, self.server)
    }

    /// Appends a delivered line: from its meaning, or as a notice when it has none. A room
    /// event that is not the session's own looks the same to every session with these
    /// capabilities: rendered once, kept on the line for the others.
    pub fn line(&self, line: &Line, out: &mut String) {
        let Some(key) = self.shared_key(line) else {
            return self.render_line(line, out);
        };
        if let Some((rendered_for, text)) = line.rendered.get()
            && *rendered_for == key
        {
            out.push_str(text);
            return;
        }
        let mut text = String::new();
        self.render_line(line, &mut text);
        out.push_str(&text);
        // The first set of capabilities keeps it; others render their own.
        let _ = line.rendered.set((key, text.into()));
    }

    /// What a room event's rendering depends on when it is not the session's own (its
    /// capabilities), or `None` when it is the session's own, or not a room event.
    fn shared_key(&self, line: &Line) -> Option<u16> {
        let events: &[Event] = match line.meaning.as_deref()? {
            Meaning::Events(events) => events,
            Meaning::Said { event, .. } => std::slice::from_ref(event),
            _ => return None,
        };
        let own = events.iter().any(|e| match &e.kind {
            EventKind::Chat { from, .. } | EventKind::Action { from, .. } => **from == *self.nick,
            EventKind::Joined { name, .. } | EventKind::Left { name, .. } => **name == *self.nick,
            _ => false,
        });
        if own {
            return None;
        }
        let c = self.caps;
        let bits = [
            c.server_time,
            c.message_tags,
            c.account_tag,
            c.extended_join,
        ];
        Some(bits.iter().fold(0, |key, bit| key << 1 | u16::from(*bit)))
    }

    /// [`View::line`] without the shared rendering.
    fn render_line(&self, line: &Line, out: &mut String) {
        match line.meaning.as_deref() {
            Some(Meaning::Events(events)) => {
                for event in events {
                    self.event(event, out);
                }
            }
            Some(Meaning::Said {
                event,
                notice,
                tags,
            }) => {
                let mut lines = String::new();
                self.event_as(event, *notice, &mut lines);
                self.tagged(&lines, tags, out);
            }
            Some(Meaning::TagMsg { id, from, to, tags }) => {
                self.tag_message(id, (from, to), tags, out)
            }
            Some(Meaning::InRoom { room, here }) => self.in_room(room, here, out),
            Some(Meaning::LeftRoom(room, None)) => {
                write(out, &[], Some(&self.mask()), "PART", &[room.as_str()]);
            }
            Some(Meaning::LeftRoom(room, Some(reason))) => {
                let params = [room.as_str(), reason.as_str()];
                write_text(out, &[], Some(&self.mask()), "PART", &params);
            }
            Some(Meaning::Private {
                id,
                tags,
                notice,
                from,
                to,
                text,
            }) => {
                let mut lines = String::new();
                self.private((id, *notice), (from, to), text, &mut lines);
                self.tagged(&lines, tags, out);
            }
            Some(Meaning::Away { name, away }) => {
                if self.away_notify {
                    let mask = format!("{name}!~{name}@{}", self.server);
                    match away {
                        Some(text) => write_text(out, &[], Some(&mask), "AWAY", &[text]),
                        None => write(out, &[], Some(&mask), "AWAY", &[]),
                    }
                }
            }
            Some(Meaning::NotOnline(name)) => {
                out.push_str(&self.numeric("401", &[name, "No such nick/channel"]));
            }
            None => self.notices(&line.text, out),
        }
    }

    /// One room event, unless it is the session's own line and echo-message is off.
    pub fn event(&self, event: &Event, out: &mut String) {
        self.event_as(event, false, out);
    }

    /// [`View::event`], a chat line as `NOTICE` with `notice`.
    fn event_as(&self, event: &Event, notice: bool, out: &mut String) {
        let name = match &event.kind {
            EventKind::Chat { from, .. } | EventKind::Action { from, .. } => Some(from),
            EventKind::Joined { name, .. } | EventKind::Left { name, .. } => Some(name),
            EventKind::Notice { .. } => None,
            EventKind::Replaced { .. } | EventKind::Offline { .. } => return,
        };
        let own = name.is_some_and(|n| **n == *self.nick);
        if own && event.kind.is_message() && !self.echo {
            return;
        }
        let nick = name.map_or(self.server.as_str(), |n| n);
        let source = if own {
            Source {
                nick,
                user: &self.user,
                realname: &self.realname,
            }
        } else {
            Source {
                nick,
                user: nick,
                realname: nick,
            }
        };
        if notice {
            render::notice(out, event, self.caps, &self.server, &source);
        } else {
            render::event(out, event, self.caps, &self.server, &source);
        }
    }

    /// The session is in `room`: its `JOIN`, then the names.
    fn in_room(&self, room: &RoomName, here: &[Arc<str>], out: &mut String) {
        let mask = self.mask();
        if self.caps.extended_join {
            let params = [room.as_str(), self.nick.as_str(), self.realname.as_str()];
            write_text(out, &[], Some(&mask), "JOIN", &params);
        } else {
            write(out, &[], Some(&mask), "JOIN", &[room.as_str()]);
        }
        let nicks: Vec<&str> = here.iter().map(|n| &**n).collect();
        for line in reply::names(self.to(), room.as_str(), &nicks) {
            out.push_str(&line);
        }
    }

    /// A private message, as many `PRIVMSG`s as its text needs; the sender's copy only with
    /// echo-message.
    fn private(
        &self,
        (id, notice): (&str, bool),
        (from, to): (&str, &str),
        text: &str,
        out: &mut String,
    ) {
        let verb = if notice { "NOTICE" } else { "PRIVMSG" };
        let Some((mask, time)) = self.direct_from(from) else {
            return;
        };
        let mut tags: Vec<(&str, &str)> = Vec::new();
        if let Some(time) = &time {
            tags.push(("time", time));
        }
        if self.caps.account_tag {
            tags.push(("account", from));
        }
        let overhead = 1 + mask.len() + verb.len() + 2 + to.len() + 2 + 2;
        let pieces = split(text, MAX_BODY_BYTES.saturating_sub(overhead).max(4));
        for (i, piece) in pieces.into_iter().enumerate() {
            let mut piece_tags = tags.clone();
            if i == 0 && self.caps.message_tags {
                piece_tags.push(("msgid", id));
            }
            write_text(out, &piece_tags, Some(&mask), verb, &[to, piece]);
        }
    }

    /// `lines` with the client-only `tags` on the first, for a client that takes
    /// message-tags.
    fn tagged(&self, lines: &str, tags: &ClientTags, out: &mut String) {
        if tags.is_empty() || !self.caps.message_tags || lines.is_empty() {
            out.push_str(lines);
            return;
        }
        let mut list = String::new();
        for (i, (key, value)) in tags.iter().enumerate() {
            if i > 0 {
                list.push(';');
            }
            list.push_str(key);
            if !value.is_empty() {
                list.push('=');
                super::message::escape_into(&mut list, value);
            }
        }
        let (first, rest) = lines.split_at(lines.find("\r\n").map_or(lines.len(), |i| i + 2));
        match first.strip_prefix('@') {
            Some(tagged) => {
                let _ = write!(out, "@{list};{tagged}");
            }
            None => {
                let _ = write!(out, "@{list} {first}");
            }
        }
        out.push_str(rest);
    }

    /// The mask and `time` tag (with server-time) of a message sent to a member by `from`;
    /// `None` for the session's own without echo-message.
    fn direct_from(&self, from: &str) -> Option<(String, Option<String>)> {
        let own = from == self.nick;
        if own && !self.echo {
            return None;
        }
        let mask = if own {
            self.mask()
        } else {
            format!("{from}!~{from}@{}", self.server)
        };
        let time = self
            .caps
            .server_time
            .then(|| super::chathistory::server_time(crate::event::now_ms()));
        Some((mask, time))
    }

    /// A `TAGMSG` for a client that takes message-tags (the sender's own only with
    /// echo-message).
    fn tag_message(&self, id: &str, (from, to): (&str, &str), tags: &ClientTags, out: &mut String) {
        if !self.caps.message_tags {
            return;
        }
        let Some((mask, time)) = self.direct_from(from) else {
            return;
        };
        let mut line_tags: Vec<(&str, &str)> = Vec::new();
        if let Some(time) = &time {
            line_tags.push(("time", time));
        }
        line_tags.push(("msgid", id));
        if self.caps.account_tag {
            line_tags.push(("account", from));
        }
        let mut line = String::new();
        write(&mut line, &line_tags, Some(&mask), "TAGMSG", &[to]);
        self.tagged(&line, tags, out);
    }

    /// Lines of the line protocol that have no meaning attached (answers, errors, notices
    /// of the server): each a `NOTICE` from the server, its `*** ` or `! ` left out.
    pub fn notices(&self, text: &str, out: &mut String) {
        for line in text.lines().filter(|l| !l.is_empty()) {
            let said = plain(line);
            write_text(out, &[], Some(&self.server), "NOTICE", &[&self.nick, said]);
        }
    }

    /// A history block: its header as a `NOTICE` in the room (the line protocol's words),
    /// then the messages, in a `chathistory` batch when the client takes batches.
    pub fn history(
        &mut self,
        room: &RoomName,
        header: &str,
        shown: &[Arc<Event>],
        out: &mut String,
    ) {
        if !header.is_empty() {
            let said = plain(header.trim_end());
            write_text(
                out,
                &[],
                Some(&self.server),
                "NOTICE",
                &[room.as_str(), said],
            );
        }
        if shown.is_empty() {
            return;
        }
        let reference = self.batch.then(|| {
            self.batches += 1;
            format!("history{}", self.batches)
        });
        if let Some(reference) = &reference {
            let open = format!("+{reference}");
            write(
                out,
                &[],
                Some(&self.server),
                "BATCH",
                &[&open, "chathistory", room.as_str()],
            );
        }
        for event in shown {
            let mut lines = String::new();
            let echo = Self {
                echo: true,
                ..self.clone()
            };
            echo.event(event, &mut lines);
            if !self.caps.server_time {
                lines = stamped(&lines, event.at_ms);
            }
            match &reference {
                Some(reference) => in_batch(&lines, reference, out),
                None => out.push_str(&lines),
            }
        }
        if let Some(reference) = &reference {
            let close = format!("-{reference}");
            write(out, &[], Some(&self.server), "BATCH", &[&close]);
        }
    }

    /// A session's last line (`! You signed in elsewhere…`, `*** Server shutting down`) as
    /// `ERROR`.
    pub fn last_line(&self, text: &str, out: &mut String) {
        let said = plain(text.trim_end());
        write_text(out, &[], None, "ERROR", &[said]);
    }

    fn to(&self) -> To<'_> {
        To {
            server: &self.server,
            nick: &self.nick,
        }
    }

    /// A numeric reply to this session.
    pub fn numeric(&self, numeric: &str, params: &[&str]) -> String {
        message::numeric(&self.server, &self.nick, numeric, params)
    }
}

/// A line-protocol line without its `*** ` or `! ` and its line end.
fn plain(line: &str) -> &str {
    let line = line.trim_end_matches(['\r', '\n']);
    line.strip_prefix("*** ")
        .or_else(|| line.strip_prefix("! "))
        .unwrap_or(line)
}

/// Puts each line of `lines` in batch `reference`.
fn in_batch(lines: &str, reference: &str, out: &mut String) {
    for line in lines.split_inclusive("\r\n") {
        match line.strip_prefix('@') {
            Some(rest) => {
                let _ = write!(out, "@batch={reference};{rest}");
            }
            None => {
                let _ = write!(out, "@batch={reference} {line}");
            }
        }
    }
}

/// Replayed text without server-time: `[YYYY-MM-DD HH:MM:SS] ` in front of each message's
/// text (after the ` :` that starts it).
fn stamped(lines: &str, at_ms: i64) -> String {
    let time = super::chathistory::server_time(at_ms);
    // `YYYY-MM-DDThh:mm:ss.sssZ` → `YYYY-MM-DD hh:mm:ss`.
    let shown = format!("[{} {}] ", &time[..10], &time[11..19]);
    let mut out = String::with_capacity(lines.len() + 24);
    for line in lines.split_inclusive("\r\n") {
        match line.find(" :") {
            Some(at) => {
                out.push_str(&line[..at + 2]);
                out.push_str(&shown);
                out.push_str(&line[at + 2..]);
            }
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ConnId;

    fn view(caps: &[&str]) -> View {
        View::new("tlschat", "bob", ("bobby", "Bob B"), caps)
    }

    fn chat(from: &str, text: &str) -> Event {
        Event {
            room: RoomName::parse("#dev").unwrap(),
            seq: 7,
            at_ms: 1_796_126_282_123,
            kind: EventKind::Chat {
                from: from.into(),
                text: text.into(),
            },
        }
    }

    #[test]
    fn a_room_event_is_rendered_from_its_meaning() {
        let line = Line::message(
            "<alice> hi\n".into(),
            (RoomName::parse("#dev").unwrap(), 7),
            Some(Meaning::Events(vec![chat("alice", "hi")])),
        );
        let mut out = String::new();
        view(&[]).line(&line, &mut out);
        assert_eq!(out, ":alice!~alice@tlschat PRIVMSG #dev :hi\r\n");
    }

    #[test]
    fn a_room_event_is_rendered_once_per_set_of_capabilities() {
        let line = Line::message(
            "<alice> hi\n".into(),
            (RoomName::parse("#dev").unwrap(), 7),
            Some(Meaning::Events(vec![chat("alice", "hi")])),
        );
        let (mut first, mut second, mut own) = (String::new(), String::new(), String::new());
        view(&["server-time"]).line(&line, &mut first);
        let kept = line.rendered.get().map(|(_, text)| text.to_string());
        assert_eq!(kept.as_deref(), Some(first.as_str()));
        View::new("tlschat", "carol", ("c", "C"), &["server-time"]).line(&line, &mut second);
        assert_eq!(second, first);
        // Other capabilities, or the sender itself, render their own.
        let mut plain = String::new();
        view(&[]).line(&line, &mut plain);
        assert_eq!(plain, ":alice!~alice@tlschat PRIVMSG #dev :hi\r\n");
        View::new(
            "tlschat",
            "alice",
            ("al", "A"),
            &["server-time", "echo-message"],
        )
        .line(&line, &mut own);
        assert!(
            own.ends_with(":alice!~al@tlschat PRIVMSG #dev :hi\r\n"),
            "{own}"
        );
    }

    #[test]
    fn own_messages_come_back_only_with_echo_message() {
        let line = Line::meaning(
            String::new(),
            None,
            Some(Meaning::Events(vec![chat("bob", "mine")])),
        );
        let mut out = String::new();
        view(&[]).line(&line, &mut out);
        assert_eq!(out, "");
        view(&["echo-message"]).line(&line, &mut out);
        assert_eq!(out, ":bob!~bobby@tlschat PRIVMSG #dev :mine\r\n");
    }

    #[test]
    fn joining_a_room_is_join_then_names() {
        let line = Line::meaning(
            String::new(),
            None,
            Some(Meaning::InRoom {
                room: RoomName::parse("#dev").unwrap(),
                here: vec!["alice".into(), "bob".into()],
            }),
        );
        let mut out = String::new();
        view(&[]).line(&line, &mut out);
        assert_eq!(
            out,
            ":bob!~bobby@tlschat JOIN #dev\r\n\
             :tlschat 353 bob = #dev :alice bob\r\n\
             :tlschat 366 bob #dev :End of /NAMES list\r\n"
        );
    }

    #[test]
    fn a_line_without_meaning_is_a_notice_from_the_server() {
        let mut out = String::new();
        view(&[]).notices("! Too many rooms on this server\n", &mut out);
        assert_eq!(
            out,
            ":tlschat NOTICE bob :Too many rooms on this server\r\n"
        );
    }

    #[test]
    fn a_last_line_is_an_error() {
        let mut out = String::new();
        view(&[]).last_line(
            "! You signed in elsewhere; closing this session\n",
            &mut out,
        );
        assert_eq!(
            out,
            "ERROR :You signed in elsewhere; closing this session\r\n"
        );
    }

    #[test]
    fn history_goes_in_a_batch_after_its_header() {
        let mut v = view(&["batch", "server-time"]);
        let mut out = String::new();
        let room = RoomName::parse("#dev").unwrap();
        let shown = [Arc::new(chat("alice", "hi"))];
        v.history(
            &room,
            "*** You missed 1 message in #dev:\n",
            &shown,
            &mut out,
        );
        assert_eq!(
            out,
            ":tlschat NOTICE #dev :You missed 1 message in #dev:\r\n\
             :tlschat BATCH +history1 chathistory #dev\r\n\
             @batch=history1;time=2026-12-01T11:58:02.123Z :alice!~alice@tlschat PRIVMSG #dev :hi\r\n\
             :tlschat BATCH -history1\r\n"
        );
    }

    #[test]
    fn history_without_server_time_shows_the_time_in_the_text() {
        let mut v = view(&[]);
        let mut out = String::new();
        let room = RoomName::parse("#dev").unwrap();
        v.history(&room, "", &[Arc::new(chat("alice", "hi"))], &mut out);
        assert_eq!(
            out,
            ":alice!~alice@tlschat PRIVMSG #dev :[2026-12-01 11:58:02] hi\r\n"
        );
    }

    #[test]
    fn a_member_leaving_the_server_is_a_quit() {
        let left = Event {
            room: RoomName::lobby(),
            seq: 0,
            at_ms: 0,
            kind: EventKind::Left {
                name: "alice".into(),
                reason: Some("send queue exceeded".into()),
                conn: ConnId { node: 0, local: 1 },
            },
        };
        let line = Line::meaning(String::new(), None, Some(Meaning::Events(vec![left])));
        let mut out = String::new();
        view(&[]).line(&line, &mut out);
        assert_eq!(out, ":alice!~alice@tlschat QUIT :send queue exceeded\r\n");
    }
}
