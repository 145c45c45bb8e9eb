//! What a member's line asks for: one enum, parsed without allocating.

use super::render::{CERT_USAGE, HISTORY_USAGE};

/// Largest `/history N`.
pub const MAX_HISTORY_REQUEST: usize = 500;
/// `/history` without N.
pub const DEFAULT_HISTORY_REQUEST: usize = 20;

/// What a member's line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Nothing to do (empty line).
    Nothing,
    /// Relay text to the room.
    Say(&'a str),
    /// `/me ACTION`.
    Emote(&'a str),
    /// `/msg NAME TEXT`.
    Whisper { to: &'a str, text: &'a str },
    /// `/who [#ROOM]`.
    Who(Option<&'a str>),
    /// `/join #ROOM` (the argument is checked by the caller).
    Join(&'a str),
    /// `/part [#ROOM]`.
    Part(Option<&'a str>),
    /// `/rooms`.
    Rooms,
    /// `/history [N]`, N already checked.
    History(usize),
    /// `/quit [REASON]`.
    Quit(Option<&'a str>),
    /// `/help`.
    Help,
    /// `/cert enroll [LABEL]`.
    CertEnroll(Option<&'a str>),
    /// `/cert list`.
    CertList,
    /// `/cert revoke FINGERPRINT|LABEL`.
    CertRevoke(&'a str),
    /// A known command used wrongly; holds the usage line.
    Usage(&'static str),
    /// `/word` that is not a command.
    Unknown(&'a str),
}

/// Parses one line from a logged-in member.
pub fn parse_command(line: &str) -> Command<'_> {
    if line.trim().is_empty() {
        return Command::Nothing;
    }
    if line.starts_with("//") {
        return Command::Say(&line[1..]);
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Command::Say(line);
    };
    let (word, args) = match rest.split_once(' ') {
        Some((w, a)) => (w, a.trim()),
        None => (rest, ""),
    };
    match word.to_ascii_lowercase().as_str() {
        // v1 ignored anything after /who; only a room name (starting with #) is read.
        "who" => Command::Who(Some(args).filter(|a| a.starts_with('#'))),
        "join" => Command::Join(args),
        "part" => Command::Part(Some(args).filter(|a| !a.is_empty())),
        "rooms" => Command::Rooms,
        "history" if args.is_empty() => Command::History(DEFAULT_HISTORY_REQUEST),
        "history" => match args.parse::<usize>() {
            Ok(n)
                if (1..=MAX_HISTORY_REQUEST).contains(&n)
                    && args.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Command::History(n)
            }
            _ => Command::Usage(HISTORY_USAGE),
        },
        "help" => Command::Help,
        "me" if args.is_empty() => Command::Usage("! Usage: /me ACTION\n"),
        "me" => Command::Emote(args),
        "msg" => match args.split_once(' ') {
            // Only what survives cleaning counts: zero-width text would relay an empty line.
            Some((to, text)) if super::clean::has_content(text) => Command::Whisper {
                to,
                text: text.trim(),
            },
            _ => Command::Usage("! Usage: /msg NAME TEXT\n"),
        },
        "quit" => Command::Quit(Some(args).filter(|a| !a.is_empty())),
        "cert" => match args.split_once(' ').map(|(w, a)| (w, a.trim())) {
            None if args == "enroll" => Command::CertEnroll(None),
            None if args == "list" => Command::CertList,
            Some(("enroll", label)) if !label.contains(' ') => Command::CertEnroll(Some(label)),
            Some(("revoke", key)) if !key.contains(' ') => Command::CertRevoke(key),
            _ => Command::Usage(CERT_USAGE),
        },
        _ => Command::Unknown(word),
    }
}
