//! Lines from the server as a client reads them: the one parser `tlschat connect` uses, built
//! from the same strings `render` writes, so the client cannot drift from the server.

use super::render::{
    ACCOUNT_CHANGED, BYE, KICKED, LOGIN_FAILED, PASSWORD_PROMPT, SIGNED_IN_ELSEWHERE,
    TOO_MANY_FAILURES, USERNAME_PROMPT, WELCOME_PREFIX,
};

/// What a line from the server means to a client (the line without its LF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLine<'a> {
    /// `Username:`.
    UsernamePrompt,
    /// `Password:`.
    PasswordPrompt,
    /// `! Login failed`.
    LoginFailed,
    /// `*** Welcome, NAME! N online: A, B`: the member's name and the names online.
    Welcome {
        /// The member's name as the account was created.
        name: &'a str,
        /// Everyone online, the member included.
        online: Vec<&'a str>,
    },
    /// `*** You joined #room; N here: …`: the room is joined and current.
    Joined(&'a str),
    /// `*** You are in #room; N here: …` (restored at login).
    IsIn(&'a str),
    /// `*** Now talking in #room`.
    NowTalking(&'a str),
    /// `*** You left #room`.
    Left(&'a str),
    /// `*** NAME joined` (any room).
    MemberJoined(&'a str),
    /// `*** NAME left` or `*** NAME left (reason)` (any room).
    MemberLeft(&'a str),
    /// `*** N online: A, B`: who is online (or in a room).
    Online(Vec<&'a str>),
    /// `*** Bye`: the server takes the `/quit`.
    Bye,
    /// A line after which the server will not take this session back (a takeover, an
    /// administrator, too many failures).
    Final,
    /// Anything else: chat, history, notices, errors.
    Other,
}

/// Whether `line` is the wire line `wire` without its LF.
fn is(line: &str, wire: &str) -> bool {
    line == wire.trim_end_matches('\n')
}

/// The names of a `N online: A, B` or `N here: A, B` tail.
fn names(text: &str) -> Vec<&str> {
    text.split(", ").filter(|n| !n.is_empty()).collect()
}

impl<'a> ServerLine<'a> {
    /// Reads one line (without its LF; a room prefix such as `[#dev] ` is left on, so room
    /// lines are told apart from `#lobby` ones by the caller).
    pub fn parse(line: &'a str) -> Self {
        if is(line, USERNAME_PROMPT) {
            return ServerLine::UsernamePrompt;
        }
        if is(line, PASSWORD_PROMPT) {
            return ServerLine::PasswordPrompt;
        }
        if is(line, LOGIN_FAILED) {
            return ServerLine::LoginFailed;
        }
        if is(line, BYE) {
            return ServerLine::Bye;
        }
        let final_lines = [SIGNED_IN_ELSEWHERE, TOO_MANY_FAILURES, ACCOUNT_CHANGED];
        if final_lines.iter().any(|wire| is(line, wire)) || line.starts_with(KICKED) {
            return ServerLine::Final;
        }
        if let Some(rest) = line.strip_prefix(WELCOME_PREFIX) {
            let name = rest.split_once('!').map_or("", |(name, _)| name);
            let online = rest
                .split_once(" online: ")
                .map_or_else(Vec::new, |(_, list)| names(list));
            return ServerLine::Welcome { name, online };
        }
        let room_of = |rest: &'a str| rest.split_once(';').map(|(room, _)| room);
        if let Some(room) = line.strip_prefix("*** You joined ").and_then(room_of) {
            return ServerLine::Joined(room);
        }
        if let Some(room) = line.strip_prefix("*** You are in ").and_then(room_of) {
            return ServerLine::IsIn(room);
        }
        if let Some(room) = line.strip_prefix("*** Now talking in ") {
            return ServerLine::NowTalking(room);
        }
        if let Some(room) = line.strip_prefix("*** You left ") {
            return ServerLine::Left(room);
        }
        let Some(rest) = line.strip_prefix("*** ") else {
            return ServerLine::Other;
        };
        if let Some(name) = rest.strip_suffix(" joined") {
            return ServerLine::MemberJoined(name);
        }
        if let Some((name, _)) = rest.split_once(" left")
            && !name.contains(' ')
        {
            return ServerLine::MemberLeft(name);
        }
        if let Some((_, list)) = rest.split_once(" online: ") {
            return ServerLine::Online(names(list));
        }
        ServerLine::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RoomName;
    use crate::protocol;

    fn parse(wire: &str) -> ServerLine<'_> {
        ServerLine::parse(wire.trim_end_matches('\n'))
    }

    #[test]
    fn the_server_s_own_lines_are_recognised() {
        assert_eq!(parse(protocol::USERNAME_PROMPT), ServerLine::UsernamePrompt);
        assert_eq!(parse(protocol::PASSWORD_PROMPT), ServerLine::PasswordPrompt);
        assert_eq!(parse(protocol::LOGIN_FAILED), ServerLine::LoginFailed);
        assert_eq!(parse(protocol::BYE), ServerLine::Bye);
        for line in [
            protocol::SIGNED_IN_ELSEWHERE.to_owned(),
            protocol::ACCOUNT_CHANGED.to_owned(),
            protocol::TOO_MANY_FAILURES.to_owned(),
            protocol::kicked(Some("spam")),
            protocol::kicked(None),
        ] {
            assert_eq!(parse(&line), ServerLine::Final, "{line}");
        }
        assert_eq!(
            parse(&protocol::welcome("bob", &["alice", "bob"])),
            ServerLine::Welcome {
                name: "bob",
                online: vec!["alice", "bob"]
            }
        );
    }

    #[test]
    fn room_replies_name_their_room() {
        let dev = RoomName::parse("#dev").unwrap();
        assert_eq!(
            parse(&protocol::you_joined(&dev, &["alice"])),
            ServerLine::Joined("#dev")
        );
        assert_eq!(
            parse(&protocol::you_are_in(&dev, &["alice"])),
            ServerLine::IsIn("#dev")
        );
        assert_eq!(
            parse(&protocol::now_talking(&dev)),
            ServerLine::NowTalking("#dev")
        );
        assert_eq!(parse(&protocol::you_left(&dev)), ServerLine::Left("#dev"));
    }

    #[test]
    fn presence_and_who_name_their_members() {
        assert_eq!(
            parse(&protocol::joined("carol")),
            ServerLine::MemberJoined("carol")
        );
        assert_eq!(
            parse(&protocol::left("carol", Some("bye now"))),
            ServerLine::MemberLeft("carol")
        );
        assert_eq!(
            parse(&protocol::who(&["a", "b"])),
            ServerLine::Online(vec!["a", "b"])
        );
        assert_eq!(parse("<bob> *** carol joined"), ServerLine::Other);
        assert_eq!(parse("*** [admin] maintenance left"), ServerLine::Other);
    }
}
