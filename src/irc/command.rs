//! A registered IRC connection's commands, without I/O: each message becomes what the rooms
//! must do ([`Command`]) and the answers the contract fixes without asking them (operators,
//! modes, topics, the nick, refused names, missing parameters, unknown commands). The
//! listener carries the commands out with the same rooms, limits and history as every other
//! protocol.

use std::borrow::Cow;

use super::message::{self, Message, write_text};
use crate::event::RoomName;

/// `HELP`'s subjects: the commands tlschat takes, each with its lines.
const HELP: &[(&str, &[&str])] = &[
    (
        "index",
        &[
            "tlschat: rooms are channels; your nick is your account name; #lobby has everyone.",
            "Commands: JOIN PART PRIVMSG NOTICE TAGMSG NAMES WHO WHOIS LIST AWAY USERHOST",
            "TIME LUSERS MOTD CAP PING QUIT. HELP <command> tells more.",
        ],
    ),
    (
        "JOIN",
        &["JOIN #room[,#room…]: join rooms (created on first join); JOIN 0 parts all."],
    ),
    (
        "PART",
        &["PART #room[,#room…] [:reason]: leave rooms (#lobby cannot be left)."],
    ),
    (
        "PRIVMSG",
        &["PRIVMSG <#room|nick> :text: a chat line to a room you are in, or a private message."],
    ),
    (
        "NOTICE",
        &["NOTICE <#room|nick> :text: like PRIVMSG, never answered with an error."],
    ),
    (
        "TAGMSG",
        &["TAGMSG <#room|nick>: client-only tags alone (typing, reactions)."],
    ),
    (
        "NAMES",
        &["NAMES [#room]: who is in a room (or in each of yours)."],
    ),
    (
        "WHO",
        &["WHO <#room|mask> [%fields]: members of a room, or online members matching a mask."],
    ),
    (
        "WHOIS",
        &["WHOIS <nick>: a member, its rooms and away message."],
    ),
    (
        "LIST",
        &["LIST [>n|<n|mask|!mask]: rooms in use with their headcounts."],
    ),
    (
        "AWAY",
        &["AWAY [:message]: set (or with no message clear) your away message."],
    ),
    (
        "USERHOST",
        &["USERHOST <nick>…: masks and away state of up to five members."],
    ),
    ("TIME", &["TIME: the server's clock."]),
    ("QUIT", &["QUIT [:reason]: leave; others see the reason."]),
];

/// What a registered connection asks the rooms for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `JOIN #a,#b`: `/join` for each valid name, in order (keys are ignored).
    Join(Vec<RoomName>),
    /// `JOIN 0`: parts every room but #lobby.
    PartAll,
    /// `PART #a,#b [:reason]`, #lobby left out (it cannot be left).
    Part(Vec<RoomName>, Option<&'a str>),
    /// `PRIVMSG`/`NOTICE` to a room (a chat line or, for a CTCP ACTION, `/me`) or to a
    /// member (`/msg`); `tags` are the client-only ones (`+typing`, …), for IRC recipients.
    Say {
        /// Where it goes.
        target: Target<'a>,
        /// The text, CTCP framing removed for an action.
        text: &'a str,
        /// A CTCP ACTION (`/me`).
        action: bool,
        /// `NOTICE`: never answered with an error.
        notice: bool,
        /// Client-only tags (their `+` kept), never stored.
        tags: Vec<(&'a str, Cow<'a, str>)>,
    },
    /// `TAGMSG`: client-only tags alone, for IRC members of the target.
    TagMsg {
        /// Where it goes.
        target: Target<'a>,
        /// Client-only tags (their `+` kept).
        tags: Vec<(&'a str, Cow<'a, str>)>,
    },
    /// `NAMES [#room]` (`None`: every room of the member; a name that is no room name gets
    /// only the end of the list).
    Names(Option<Result<RoomName, &'a str>>),
    /// `TIME`: the server's clock.
    Time,
    /// `USERHOST nick…` (at most five).
    Userhost(Vec<&'a str>),
    /// `WHO <mask> [%fields]`.
    Who {
        /// The mask: a room or a nick.
        mask: &'a str,
        /// WHOX fields (after `%`), if asked.
        whox: Option<&'a str>,
    },
    /// `WHOIS [server] <nick>`.
    Whois(&'a str),
    /// `LIST [filters]`.
    List(Option<&'a str>),
    /// `AWAY [:message]` (`None` or empty: back).
    Away(Option<&'a str>),
    /// `CHATHISTORY …` (parsed by [`super::chathistory`]).
    ChatHistory,
    /// `LUSERS`.
    Lusers,
    /// `MOTD`.
    Motd,
    /// `CAP …` after registration (`LS`, `LIST`, `REQ`).
    Cap,
    /// `QUIT [:reason]`: `/quit`.
    Quit(Option<&'a str>),
}

/// A message's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// A room (its name checked).
    Room(RoomName),
    /// A member, by nick (any letter case).
    User(&'a str),
}

/// What a message comes to: lines to send at once, and what the rooms must do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Dispatch<'a> {
    /// Answers, CR LF included, in order.
    pub replies: Vec<String>,
    /// The command for the rooms, if any.
    pub command: Option<Command<'a>>,
}

/// A registered connection, as far as its commands need it.
pub struct Session {
    server: String,
    nick: String,
}

impl Session {
    /// The connection of `nick` (its account name) to the server named `server`.
    pub fn new(server: &str, nick: &str) -> Self {
        Session {
            server: server.to_owned(),
            nick: nick.to_owned(),
        }
    }

    /// A numeric reply: `:SERVER NUMERIC NICK params… :last`.
    fn numeric(&self, numeric: &str, params: &[&str]) -> String {
        message::numeric(&self.server, &self.nick, numeric, params)
    }

    /// A numeric whose parameters are all words (a mode string, not text).
    fn numeric_words(&self, numeric: &str, params: &[&str]) -> String {
        message::numeric_words(&self.server, &self.nick, numeric, params)
    }

    /// `461 NICK COMMAND :Not enough parameters`.
    fn need_more(&self, command: &str) -> String {
        self.numeric("461", &[command, "Not enough parameters"])
    }

    /// `482 NICK #room :Rooms have no operators`.
    fn no_operators(&self, room: &str) -> String {
        self.numeric("482", &[room, "Rooms have no operators"])
    }

    /// `HELP [subject]`: 704, 705 per line, 706; an unknown subject is 524.
    fn help(&self, subject: Option<&str>, d: &mut Dispatch<'_>) {
        let asked = subject.unwrap_or("index");
        let Some((_, lines)) = HELP
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(asked))
        else {
            d.replies
                .push(self.numeric("524", &[asked, "Help not found"]));
            return;
        };
        let subject = asked.to_ascii_uppercase();
        let subject = if subject == "INDEX" {
            "index"
        } else {
            &subject
        };
        for (i, line) in lines.iter().enumerate() {
            let numeric = if i == 0 { "704" } else { "705" };
            d.replies.push(self.numeric(numeric, &[subject, line]));
        }
        d.replies
            .push(self.numeric("706", &[subject, "End of /HELP"]));
    }

    /// The answer to a line over the length limits.
    pub fn too_long(&self) -> String {
        self.numeric("417", &["Input line was too long"])
    }

    /// What `m` comes to.
    pub fn dispatch<'a>(&self, m: &Message<'a>) -> Dispatch<'a> {
        let mut d = Dispatch::default();
        let command = m.command.to_ascii_uppercase();
        let p = m.params.as_slice();
        match command.as_str() {
            "JOIN" => self.join(p, &mut d),
            "PART" => self.part(p, &mut d),
            "PRIVMSG" | "NOTICE" => self.say(m, command == "NOTICE", &mut d),
            "TAGMSG" => match p.first() {
                Some(target) => {
                    if let Some(target) = self.target(target, false, &mut d) {
                        d.command = Some(Command::TagMsg {
                            target,
                            tags: client_tags(m),
                        });
                    }
                }
                None => d.replies.push(self.need_more("TAGMSG")),
            },
            "MODE" => self.mode(p, &mut d),
            "TOPIC" => match p {
                [] => d.replies.push(self.need_more("TOPIC")),
                [room] => d
                    .replies
                    .push(self.numeric("331", &[room, "No topic is set"])),
                [room, ..] => d.replies.push(self.no_operators(room)),
            },
            "KICK" => match p.first() {
                Some(room) if p.len() >= 2 => d.replies.push(self.no_operators(room)),
                _ => d.replies.push(self.need_more("KICK")),
            },
            "NICK" => match p.first() {
                None => d.replies.push(self.numeric("431", &["No nickname given"])),
                Some(nick) if *nick == self.nick => {}
                Some(_) => d.replies.push(self.numeric(
                    "400",
                    &["NICK", "You must use your account name as your nickname"],
                )),
            },
            "PING" => match p.first() {
                Some(token) => {
                    let mut out = String::new();
                    write_text(
                        &mut out,
                        &[],
                        Some(&self.server),
                        "PONG",
                        &[&self.server, token],
                    );
                    d.replies.push(out);
                }
                None => d
                    .replies
                    .push(self.numeric("409", &["No origin specified"])),
            },
            "PONG" => {}
            "USER" | "PASS" => d
                .replies
                .push(self.numeric("462", &["You may not reregister"])),
            "AUTHENTICATE" => d
                .replies
                .push(self.numeric("907", &["You have already authenticated using SASL"])),
            "HELP" => self.help(p.first().copied(), &mut d),
            "TIME" => d.command = Some(Command::Time),
            "USERHOST" => match p {
                [] => d.replies.push(self.need_more("USERHOST")),
                nicks => {
                    d.command = Some(Command::Userhost(nicks.iter().take(5).copied().collect()))
                }
            },
            "NAMES" => {
                let room = p.first().map(|r| RoomName::parse(r).map_err(|_| *r));
                d.command = Some(Command::Names(room));
            }
            "WHO" => match p.first() {
                Some(mask) => {
                    let whox = p.get(1).and_then(|f| f.strip_prefix('%'));
                    d.command = Some(Command::Who { mask, whox });
                }
                None => d.replies.push(self.need_more("WHO")),
            },
            "WHOIS" => match p.last() {
                Some(nick) => d.command = Some(Command::Whois(nick)),
                None => d.replies.push(self.numeric("431", &["No nickname given"])),
            },
            "LIST" => d.command = Some(Command::List(p.first().copied())),
            "AWAY" => d.command = Some(Command::Away(p.first().copied().filter(|a| !a.is_empty()))),
            "CHATHISTORY" => d.command = Some(Command::ChatHistory),
            "LUSERS" => d.command = Some(Command::Lusers),
            "MOTD" => d.command = Some(Command::Motd),
            "CAP" => d.command = Some(Command::Cap),
            "QUIT" => d.command = Some(Command::Quit(p.first().copied())),
            // No operators (OPER, KILL), invitations (INVITE), real-name changes (SETNAME),
            // server notices (WALLOPS) or watch lists (MONITOR), and nothing else.
            _ => d
                .replies
                .push(self.numeric("421", &[m.command, "Unknown command"])),
        }
        d
    }

    /// `JOIN #a,#b [keys]` and `JOIN 0`.
    fn join<'a>(&self, p: &[&'a str], d: &mut Dispatch<'a>) {
        let Some(names) = p.first() else {
            d.replies.push(self.need_more("JOIN"));
            return;
        };
        if *names == "0" {
            d.command = Some(Command::PartAll);
            return;
        }
        let mut rooms = Vec::new();
        for name in names.split(',').filter(|n| !n.is_empty()) {
            match RoomName::parse(name) {
                Ok(room) => rooms.push(room),
                Err(_) => d.replies.push(self.numeric(
                    "479",
                    &[name, "Invalid room name: use # and 1-32 of a-z 0-9 _ - ."],
                )),
            }
        }
        if !rooms.is_empty() {
            d.command = Some(Command::Join(rooms));
        }
    }

    /// `PART #a,#b [:reason]`: #lobby answered 400, unknown names 403.
    fn part<'a>(&self, p: &[&'a str], d: &mut Dispatch<'a>) {
        let Some(names) = p.first() else {
            d.replies.push(self.need_more("PART"));
            return;
        };
        let mut rooms = Vec::new();
        for name in names.split(',').filter(|n| !n.is_empty()) {
            match RoomName::parse(name) {
                Ok(room) if room.is_lobby() => d
                    .replies
                    .push(self.numeric("400", &["PART", "You cannot leave #lobby"])),
                Ok(room) => rooms.push(room),
                Err(_) => d
                    .replies
                    .push(self.numeric("403", &[name, "No such channel"])),
            }
        }
        if !rooms.is_empty() {
            let reason = p.get(1).copied().filter(|r| !r.is_empty());
            d.command = Some(Command::Part(rooms, reason));
        }
    }

    /// `MODE #room` (no modes but `n`), `MODE <own nick>` (`+r`); every change refused.
    fn mode(&self, p: &[&str], d: &mut Dispatch<'_>) {
        match p {
            [] => d.replies.push(self.need_more("MODE")),
            [room] if room.starts_with('#') => {
                d.replies.push(self.numeric_words("324", &[room, "+n"]));
            }
            [room, ..] if room.starts_with('#') => d.replies.push(self.no_operators(room)),
            [nick, ..] if nick.eq_ignore_ascii_case(&self.nick) => {
                if p.len() == 1 {
                    d.replies.push(self.numeric_words("221", &["+r"]));
                } else {
                    d.replies.push(self.numeric("501", &["Unknown MODE flag"]));
                }
            }
            [_, ..] => d
                .replies
                .push(self.numeric("502", &["Cannot change mode for other users"])),
        }
    }

    /// `PRIVMSG`/`NOTICE <target> :text`: 411 without a target, 412 without text, 407 for
    /// several targets; a NOTICE never gets an error. CTCPs other than ACTION are dropped.
    fn say<'a>(&self, m: &Message<'a>, notice: bool, d: &mut Dispatch<'a>) {
        let command = if notice { "NOTICE" } else { "PRIVMSG" };
        let mut errors = Vec::new();
        let said = match m.params.as_slice() {
            [] => {
                errors.push(self.numeric("411", &[&format!("No recipient given ({command})")]));
                None
            }
            [_] | [_, ""] => {
                errors.push(self.numeric("412", &["No text to send"]));
                None
            }
            [targets, ..] if targets.contains(',') => {
                errors.push(self.numeric("407", &[targets, "Too many targets"]));
                None
            }
            [target, text, ..] => Some((*target, *text)),
        };
        let Some((target, text)) = said else {
            if !notice {
                d.replies.extend(errors);
            }
            return;
        };
        let (text, action) = match ctcp(text) {
            Some(("ACTION", body)) => (body, true),
            // Other CTCPs (VERSION, PING, …) are neither relayed nor answered.
            Some(_) => return,
            None => (text, false),
        };
        if let Some(target) = self.target(target, notice, d) {
            d.command = Some(Command::Say {
                target,
                text,
                action,
                notice,
                tags: client_tags(m),
            });
        }
    }

    /// A message's target: a room (403 if the name is not one; nothing for a NOTICE) or a
    /// member.
    fn target<'a>(&self, target: &'a str, quiet: bool, d: &mut Dispatch<'a>) -> Option<Target<'a>> {
        if !target.starts_with('#') {
            return Some(Target::User(target));
        }
        match RoomName::parse(target) {
            Ok(room) => Some(Target::Room(room)),
            Err(_) => {
                if !quiet {
                    d.replies
                        .push(self.numeric("403", &[target, "No such channel"]));
                }
                None
            }
        }
    }
}

/// `\x01COMMAND body\x01` as (COMMAND, body); the closing `\x01` may be missing.
fn ctcp(text: &str) -> Option<(&str, &str)> {
    let inner = text.strip_prefix('\u{1}')?;
    let inner = inner.strip_suffix('\u{1}').unwrap_or(inner);
    Some(inner.split_once(' ').unwrap_or((inner, "")))
}

/// The client-only tags of `m` (`+` in front), in the order sent.
fn client_tags<'a>(m: &Message<'a>) -> Vec<(&'a str, Cow<'a, str>)> {
    m.tags
        .iter()
        .filter(|(key, _)| key.starts_with('+'))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_answers_a_known_subject_and_refuses_an_unknown_one() {
        let session = Session::new("tlschat", "alice");
        let d = session.dispatch(&Message::parse("HELP join").unwrap());
        assert_eq!(
            d.replies,
            [
                ":tlschat 704 alice JOIN :JOIN #room[,#room…]: join rooms (created on first join); JOIN 0 parts all.\r\n",
                ":tlschat 706 alice JOIN :End of /HELP\r\n"
            ]
        );
        let d = session.dispatch(&Message::parse("HELP nothing").unwrap());
        assert_eq!(
            d.replies,
            [":tlschat 524 alice nothing :Help not found\r\n"]
        );
    }

    fn dispatch(line: &str) -> (Vec<String>, Option<String>) {
        let session = Session::new("tlschat", "alice");
        let m = Message::parse(line).unwrap();
        let d = session.dispatch(&m);
        (d.replies, d.command.map(|c| format!("{c:?}")))
    }

    fn replies(line: &str) -> Vec<String> {
        dispatch(line).0
    }

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    #[test]
    fn join_takes_each_valid_name_in_order_and_refuses_the_others_with_479() {
        let session = Session::new("tlschat", "alice");
        let m = Message::parse("JOIN #Dev,bad,#ops key1,key2").unwrap();
        let d = session.dispatch(&m);
        assert_eq!(
            d.replies,
            [":tlschat 479 alice bad :Invalid room name: use # and 1-32 of a-z 0-9 _ - .\r\n"]
        );
        assert_eq!(
            d.command,
            Some(Command::Join(vec![room("#dev"), room("#ops")]))
        );
        let zero = Message::parse("JOIN 0").unwrap();
        assert_eq!(session.dispatch(&zero).command, Some(Command::PartAll));
    }

    #[test]
    fn lobby_cannot_be_parted() {
        let session = Session::new("tlschat", "alice");
        let m = Message::parse("PART #lobby,#dev :bye").unwrap();
        let d = session.dispatch(&m);
        assert_eq!(
            d.replies,
            [":tlschat 400 alice PART :You cannot leave #lobby\r\n"]
        );
        assert_eq!(
            d.command,
            Some(Command::Part(vec![room("#dev")], Some("bye")))
        );
    }

    #[test]
    fn rooms_have_no_modes_topics_or_operators() {
        assert_eq!(replies("MODE #dev"), [":tlschat 324 alice #dev +n\r\n"]);
        assert_eq!(
            replies("MODE #dev +o bob"),
            [":tlschat 482 alice #dev :Rooms have no operators\r\n"]
        );
        assert_eq!(replies("MODE alice"), [":tlschat 221 alice +r\r\n"]);
        assert_eq!(
            replies("TOPIC #dev"),
            [":tlschat 331 alice #dev :No topic is set\r\n"]
        );
        assert_eq!(
            replies("TOPIC #dev :new"),
            [":tlschat 482 alice #dev :Rooms have no operators\r\n"]
        );
        assert_eq!(
            replies("KICK #dev bob"),
            [":tlschat 482 alice #dev :Rooms have no operators\r\n"]
        );
    }

    #[test]
    fn operator_and_other_unsupported_commands_are_unknown() {
        for command in [
            "OPER", "KILL", "INVITE", "SETNAME", "WALLOPS", "MONITOR", "FOO",
        ] {
            assert_eq!(
                replies(&format!("{command} x y")),
                [format!(":tlschat 421 alice {command} :Unknown command\r\n")],
                "{command}"
            );
        }
    }

    #[test]
    fn the_nick_stays_the_account_name() {
        assert!(replies("NICK alice").is_empty());
        assert_eq!(
            replies("NICK bob"),
            [":tlschat 400 alice NICK :You must use your account name as your nickname\r\n"]
        );
        assert_eq!(
            replies("NICK"),
            [":tlschat 431 alice :No nickname given\r\n"]
        );
    }

    #[test]
    fn privmsg_errors_follow_the_numerics_and_notice_never_gets_one() {
        assert_eq!(
            replies("PRIVMSG"),
            [":tlschat 411 alice :No recipient given (PRIVMSG)\r\n"]
        );
        assert_eq!(
            replies("PRIVMSG #dev"),
            [":tlschat 412 alice :No text to send\r\n"]
        );
        assert_eq!(
            replies("PRIVMSG #dev :"),
            [":tlschat 412 alice :No text to send\r\n"]
        );
        assert_eq!(
            replies("PRIVMSG #a,#b :hi"),
            [":tlschat 407 alice #a,#b :Too many targets\r\n"]
        );
        assert_eq!(
            replies("PRIVMSG #no!such :hi"),
            [":tlschat 403 alice #no!such :No such channel\r\n"]
        );
        for line in [
            "NOTICE",
            "NOTICE #dev",
            "NOTICE #a,#b :hi",
            "NOTICE #no!such :hi",
        ] {
            assert_eq!(dispatch(line), (Vec::new(), None), "{line}");
        }
    }

    #[test]
    fn a_message_to_a_room_or_a_member_keeps_its_client_only_tags() {
        let session = Session::new("tlschat", "alice");
        let m = Message::parse("@+typing=active;label=7 PRIVMSG #dev :hello there").unwrap();
        assert_eq!(
            session.dispatch(&m).command,
            Some(Command::Say {
                target: Target::Room(room("#dev")),
                text: "hello there",
                action: false,
                notice: false,
                tags: vec![("+typing", Cow::Borrowed("active"))],
            })
        );
        let m = Message::parse("NOTICE Bob :psst").unwrap();
        assert!(matches!(
            session.dispatch(&m).command,
            Some(Command::Say {
                target: Target::User("Bob"),
                notice: true,
                ..
            })
        ));
    }

    #[test]
    fn ctcp_action_is_an_action_and_other_ctcps_are_dropped() {
        let session = Session::new("tlschat", "alice");
        let m = Message::parse("PRIVMSG #dev :\u{1}ACTION waves\u{1}").unwrap();
        assert!(matches!(
            session.dispatch(&m).command,
            Some(Command::Say {
                text: "waves",
                action: true,
                ..
            })
        ));
        for line in [
            "PRIVMSG bob :\u{1}VERSION\u{1}",
            "PRIVMSG #dev :\u{1}PING 123\u{1}",
        ] {
            assert_eq!(dispatch(line), (Vec::new(), None), "{line}");
        }
    }

    #[test]
    fn ping_is_answered_at_once_and_registration_commands_are_refused() {
        assert_eq!(replies("PING :abc"), [":tlschat PONG tlschat :abc\r\n"]);
        assert_eq!(
            replies("PING"),
            [":tlschat 409 alice :No origin specified\r\n"]
        );
        assert_eq!(
            replies("USER a 0 * :A"),
            [":tlschat 462 alice :You may not reregister\r\n"]
        );
        assert_eq!(
            replies("AUTHENTICATE PLAIN"),
            [":tlschat 907 alice :You have already authenticated using SASL\r\n"]
        );
        assert_eq!(
            dispatch("QUIT :later").1.as_deref(),
            Some("Quit(Some(\"later\"))")
        );
    }

    #[test]
    fn too_long_says_417() {
        let session = Session::new("tlschat", "alice");
        assert_eq!(
            session.too_long(),
            ":tlschat 417 alice :Input line was too long\r\n"
        );
    }
}
