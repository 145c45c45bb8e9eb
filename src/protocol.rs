//! The wire text: bounded line decoding, command parsing, and every line the server sends.
//!
//! No async code lives here, so all of it is unit-tested with plain `#[test]`s. See
//! `docs/PROTOCOL.md` for the contract this module implements.

use crate::event::{Event, EventKind, RoomName};

/// Prompt sent when a username is expected.
pub const USERNAME_PROMPT: &str = "Username:\n";
/// Prompt sent when a password is expected.
pub const PASSWORD_PROMPT: &str = "Password:\n";
/// Greeting sent right after the TLS handshake.
pub const GREETING: &str = "*** Welcome to tlschat. Log in with your username and password.\n";
/// Reply to a failed login.
pub const LOGIN_FAILED: &str = "! Login failed\n";
/// Sent before closing after the third failure.
pub const TOO_MANY_FAILURES: &str = "! Too many failed logins\n";
/// Sent when the login timeout expires.
pub const LOGIN_TIMED_OUT: &str = "! Login timed out\n";
/// Sent when password checks are saturated.
pub const SERVER_BUSY: &str = "! Server busy, try again later\n";
/// A chat line or action refused while too much history waits for the database: it is
/// neither relayed nor stored.
pub const CHAT_UNAVAILABLE: &str = "! Chat is unavailable right now; your message was not sent\n";
/// Sent to everyone on SIGTERM/SIGINT.
pub const SHUTTING_DOWN: &str = "*** Server shutting down\n";
/// Reply to `/quit`.
pub const BYE: &str = "*** Bye\n";
/// Sent to a session replaced by a newer login of the same user.
pub const SIGNED_IN_ELSEWHERE: &str = "! You signed in elsewhere; closing this session\n";
/// Sent to a member whose account was deleted, disabled or given a new password.
pub const ACCOUNT_CHANGED: &str = "! Your account was changed by an administrator\n";
/// Sent (best effort) to a member evicted for not reading.
pub const SEND_QUEUE_EXCEEDED: &str = "! Send queue exceeded\n";
/// Reason shown to others when a slow member is evicted.
pub const REASON_SEND_QUEUE: &str = "send queue exceeded";
/// Sent when the line is not valid UTF-8.
pub const INVALID_UTF8: &str = "! Invalid UTF-8\n";
/// Sent before disconnecting a client that streams bytes without any newline.
pub const NO_NEWLINE: &str = "! Too much data without a newline\n";
/// Sent when the connection caps are reached.
pub const TOO_MANY_CONNECTIONS: &str = "! Too many connections\n";
/// `/help` output.
pub const HELP: &str = "\
*** Commands:
***   /who [#ROOM]      list who is online (in the current room, or in #ROOM)
***   /me ACTION        act, e.g. /me waves
***   /msg NAME TEXT    send TEXT to NAME only
***   /join #ROOM       join #ROOM (creating it) and talk there
***   /part [#ROOM]     leave #ROOM (default: the current room)
***   /rooms            list the rooms with people online
***   /history [N]      the last N messages of the current room (1-500, default 20)
***   /cert enroll [LABEL]  log in with this connection's client certificate from now on
***   /cert list        your certificates; /cert revoke FINGERPRINT|LABEL removes one
***   /quit [REASON]    leave
***   /help             this list
***   //TEXT            send TEXT that starts with /
*** Any other line is sent to everyone else in the current room.
";
/// Reply to a `/cert` the server cannot read.
pub const CERT_USAGE: &str =
    "! Usage: /cert enroll [LABEL] | /cert list | /cert revoke FINGERPRINT|LABEL\n";
/// Reply to `/cert enroll` on a connection that presented no certificate.
pub const CERT_NONE_PRESENTED: &str = "! Connect with a client certificate to enroll it\n";
/// Reply to `/cert enroll` of a certificate bound to another account (nothing more is said).
pub const CERT_OF_ANOTHER_ACCOUNT: &str = "! That certificate belongs to another account\n";
/// Reply to `/cert enroll` with a label that breaks the rule.
pub const CERT_INVALID_LABEL: &str = "! Invalid label: use 1-32 of A-Z a-z 0-9 _ - .\n";
/// Reply to `/cert revoke` of nothing the user has.
pub const CERT_NO_SUCH: &str = "! No such certificate\n";
/// Reply to `/cert list` for a user without certificates.
pub const CERT_NONE: &str = "*** No certificates\n";
/// Sent instead of a `/cert` answer when the database cannot be reached.
pub const CERT_UNAVAILABLE: &str = "! Certificates are unavailable right now; try again later\n";
/// Sent instead of `Password:` when the connection's certificate belongs to the user.
pub const AUTHENTICATED_BY_CERTIFICATE: &str = "*** Authenticated by client certificate\n";

/// `*** Certificate AA:BB:…:FF enrolled as laptop`
pub fn cert_enrolled(fingerprint: &str, label: &str) -> String {
    format!("*** Certificate {fingerprint} enrolled as {label}\n")
}

/// `! That certificate is already enrolled as laptop`
pub fn cert_already_enrolled(label: &str) -> String {
    format!("! That certificate is already enrolled as {label}\n")
}

/// `! You already have a certificate labelled laptop`
pub fn cert_label_taken(label: &str) -> String {
    format!("! You already have a certificate labelled {label}\n")
}

/// `*** Certificate laptop revoked`
pub fn cert_revoked(label: &str) -> String {
    format!("*** Certificate {label} revoked\n")
}

/// The `/cert list` answer: `*** 2 certificates:` and one `***   LABEL FINGERPRINT added
/// YYYY-MM-DD` line each.
pub fn cert_list(certificates: &[(String, String, String)]) -> String {
    if certificates.is_empty() {
        return CERT_NONE.to_owned();
    }
    let mut out = format!(
        "*** {}:\n",
        plural(certificates.len(), "certificate", "certificates")
    );
    for (label, fingerprint, added) in certificates {
        out.push_str(&format!("***   {label} {fingerprint} added {added}\n"));
    }
    out
}

/// Reply to a room name that breaks the rule.
pub const INVALID_ROOM_NAME: &str = "! Invalid room name: use # and 1-32 of a-z 0-9 _ - .\n";
/// Reply to `/part #lobby`.
pub const CANNOT_LEAVE_LOBBY: &str = "! You cannot leave #lobby\n";
/// Reply to a `/join` past the server's room cap.
pub const TOO_MANY_ROOMS_ON_SERVER: &str = "! Too many rooms on this server\n";
/// Reply to `/history` when history is off.
pub const HISTORY_OFF: &str = "! History is off on this server\n";
/// Reply to `/history` with a bad count.
pub const HISTORY_USAGE: &str = "! Usage: /history [1-500]\n";
/// Sent instead of a history block when the database cannot be read in time.
pub const HISTORY_UNAVAILABLE: &str = "! History is unavailable right now; try again later\n";
/// Closes a history or catch-up block.
pub const END_OF_HISTORY: &str = "*** End of history\n";
/// Largest `/history N`.
pub const MAX_HISTORY_REQUEST: usize = 500;
/// `/history` without N.
pub const DEFAULT_HISTORY_REQUEST: usize = 20;

/// One item decoded from the client's byte stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A complete line, CR/LF removed.
    Line(String),
    /// A line passed the limit; the rest of it is being discarded. Reported once per line.
    TooLong,
    /// A complete line that is not UTF-8.
    InvalidUtf8,
    /// More than the unterminated-bytes limit arrived without a newline: disconnect.
    Unterminated,
}

/// Splits a byte stream into lines, buffering at most one line's limit.
#[derive(Debug)]
pub struct LineDecoder {
    line: Vec<u8>,
    max_line: usize,
    max_unterminated: usize,
    /// Bytes since the last newline, including discarded ones.
    since_newline: usize,
    discarding: bool,
}

impl LineDecoder {
    /// A decoder for lines of at most `max_line` bytes (terminator excluded).
    pub fn new(max_line: usize, max_unterminated: usize) -> Self {
        LineDecoder {
            line: Vec::new(),
            max_line,
            max_unterminated,
            since_newline: 0,
            discarding: false,
        }
    }

    /// The line limit in bytes.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Consumes bytes from the front of `input` until one item is complete.
    /// Returns `None` once `input` is used up without completing an item. The result does
    /// not depend on how the stream is cut into `input`s: every limit is checked at the exact
    /// byte that crosses it.
    pub fn decode(&mut self, input: &mut &[u8]) -> Option<Incoming> {
        if self.since_newline > self.max_unterminated {
            // Sticky: the session disconnects on the first report; later calls repeat it.
            return Some(Incoming::Unterminated);
        }
        while !input.is_empty() {
            let newline = input.iter().position(|&b| b == b'\n');
            let avail = newline.unwrap_or(input.len());
            // Never consume past the byte that makes the run without a newline too long.
            let allowance = self.max_unterminated + 1 - self.since_newline;
            let take = avail.min(allowance);
            let chunk = &input[..take];
            self.since_newline += take;
            let mut started_discarding = false;
            if !self.discarding {
                // One extra byte of room for the CR of a CRLF.
                if self.line.len() + chunk.len() > self.max_line + 1 {
                    self.discarding = true;
                    started_discarding = true;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            if self.since_newline > self.max_unterminated {
                *input = &input[take..];
                // A line that just became too long is reported first; the next call
                // reports the cut-off.
                return Some(if started_discarding {
                    Incoming::TooLong
                } else {
                    Incoming::Unterminated
                });
            }
            *input = &input[(take + newline.map_or(0, |_| 1))..];
            if newline.is_none() {
                if started_discarding {
                    return Some(Incoming::TooLong);
                }
                continue;
            }
            self.since_newline = 0;
            if self.discarding {
                self.discarding = false;
                if !started_discarding {
                    // Reported when discarding started.
                    continue;
                }
                return Some(Incoming::TooLong);
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() > self.max_line {
                return Some(Incoming::TooLong);
            }
            return Some(match String::from_utf8(line) {
                Ok(s) => Incoming::Line(s),
                Err(_) => Incoming::InvalidUtf8,
            });
        }
        None
    }
}

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
            Some((to, text)) if !text.trim().is_empty() => Command::Whisper {
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

/// Format characters (Unicode category Cf, Unicode 15.1) that are removed: they are invisible
/// and can reorder (bidi controls), hide (zero-width, tags) or fake text.
const REMOVED_FORMAT: [(char, char); 17] = [
    ('\u{00AD}', '\u{00AD}'),   // soft hyphen
    ('\u{061C}', '\u{061C}'),   // Arabic letter mark (bidi)
    ('\u{180E}', '\u{180E}'),   // Mongolian vowel separator
    ('\u{200B}', '\u{200B}'),   // zero width space
    ('\u{200E}', '\u{200F}'),   // LRM, RLM (bidi)
    ('\u{202A}', '\u{202E}'),   // bidi embeddings and overrides
    ('\u{2060}', '\u{2064}'),   // word joiner, invisible operators
    ('\u{2066}', '\u{206F}'),   // bidi isolates, deprecated format characters
    ('\u{FEFF}', '\u{FEFF}'),   // zero width no-break space (BOM)
    ('\u{FFF9}', '\u{FFFB}'),   // interlinear annotation
    ('\u{13430}', '\u{1343F}'), // Egyptian hieroglyph format controls
    ('\u{1BCA0}', '\u{1BCA3}'), // shorthand format controls
    ('\u{1D173}', '\u{1D17A}'), // musical symbol format controls
    ('\u{E0001}', '\u{E0001}'), // language tag
    ('\u{E0020}', '\u{E007F}'), // tag characters (can smuggle invisible ASCII)
    ('\u{2028}', '\u{2029}'),   // line and paragraph separators (not Cf, but line breaks)
    ('\u{0080}', '\u{009F}'),   // C1 controls
];

/// ZERO WIDTH NON-JOINER and ZERO WIDTH JOINER: needed inside words of Persian, Indic and
/// other scripts and inside emoji sequences, so they are kept between two visible
/// characters and removed anywhere else (alone, at an end, next to a space).
const JOINERS: [char; 2] = ['\u{200C}', '\u{200D}'];

/// Removes what could change how a terminal or a line displays: C0 controls (except TAB),
/// DEL, C1 controls, U+2028/2029 and the format characters of [`REMOVED_FORMAT`]; keeps
/// ZWNJ/ZWJ only between visible characters. The Cf characters that remain are the
/// prepended concatenation marks (U+0600–0605, U+06DD, U+070F, U+0890–0891, U+08E2,
/// U+110BD, U+110CD), which are visible signs of Arabic, Syriac and Kaithi numbers.
pub fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    // Most lines are printable ASCII: one pass over the bytes decides, without decoding.
    if text.bytes().all(|b| matches!(b, b' '..=b'~' | b'\t')) {
        return text.into();
    }
    if !text
        .chars()
        .any(|c| is_forbidden(c) || JOINERS.contains(&c))
    {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().filter(|c| !is_forbidden(*c)).peekable();
    while let Some(c) = chars.next() {
        if JOINERS.contains(&c) {
            let visible =
                |c: Option<&char>| c.is_some_and(|c| !c.is_whitespace() && !JOINERS.contains(c));
            if !(visible(out.chars().last().as_ref()) && visible(chars.peek())) {
                continue;
            }
        }
        out.push(c);
    }
    out.into()
}

fn is_forbidden(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_control() && c != '\t';
    }
    REMOVED_FORMAT
        .iter()
        .any(|(first, last)| (*first..=*last).contains(&c))
}

/// `*** Welcome, alice! 3 online: alice, bob, carol`
pub fn welcome(name: &str, online: &[impl AsRef<str>]) -> String {
    format!("{WELCOME_PREFIX}{name}! {}", who_tail(online))
}

/// `*** 3 online: alice, bob, carol`
pub fn who(online: &[impl AsRef<str>]) -> String {
    format!("*** {}", who_tail(online))
}

fn who_tail(online: &[impl AsRef<str>]) -> String {
    let names: Vec<&str> = online.iter().map(AsRef::as_ref).collect();
    format!("{} online: {}\n", names.len(), names.join(", "))
}

/// `*** [admin] TEXT`
pub fn admin_notice(text: &str) -> String {
    format!("*** [admin] {}\n", clean(text))
}

/// `! You were removed by an administrator (REASON)`
pub fn kicked(reason: Option<&str>) -> String {
    match reason.map(clean).filter(|r| !r.trim().is_empty()) {
        Some(r) => format!("{KICKED} ({r})\n"),
        None => format!("{KICKED}\n"),
    }
}

/// The start of the line a member removed by `tlschat admin kick` gets.
pub const KICKED: &str = "! You were removed by an administrator";
/// The start of the welcome line (see [`welcome`]).
pub const WELCOME_PREFIX: &str = "*** Welcome, ";

/// `*** alice joined`
pub fn joined(name: &str) -> String {
    format!("*** {name} joined\n")
}

/// `*** alice left` or `*** alice left (reason)`
pub fn left(name: &str, reason: Option<&str>) -> String {
    match reason.map(clean).filter(|r| !r.trim().is_empty()) {
        Some(r) => format!("*** {name} left ({r})\n"),
        None => format!("*** {name} left\n"),
    }
}

/// `<alice> text`
pub fn chat(from: &str, text: &str) -> String {
    // `concat` sizes the line once: this runs for every chat line relayed.
    ["<", from, "> ", &clean(text), "\n"].concat()
}

/// `* alice waves`
pub fn action(from: &str, text: &str) -> String {
    ["* ", from, " ", &clean(text), "\n"].concat()
}

/// `*alice* text`, as the recipient sees it.
pub fn private_message(from: &str, text: &str) -> String {
    format!("*{from}* {}\n", clean(text))
}

/// `-> *bob* text`, the sender's confirmation.
pub fn private_echo(to: &str, text: &str) -> String {
    format!("-> *{to}* {}\n", clean(text))
}

/// `! bob is not online`
pub fn not_online(name: &str) -> String {
    format!("! {} is not online\n", clean(name))
}

/// `! Unknown command /word (try /help)`
pub fn unknown_command(word: &str) -> String {
    format!("! Unknown command /{} (try /help)\n", clean(word))
}

/// `! Line too long (max 4096 bytes)`
pub fn line_too_long(max: usize) -> String {
    format!("! Line too long (max {max} bytes)\n")
}

/// `! Slow down: at most 2 lines per second`
pub fn slow_down(per_sec: f64) -> String {
    format!("! Slow down: at most {per_sec} lines per second\n")
}

/// True when the cleaned text has something visible to relay.
pub fn has_content(text: &str) -> bool {
    !clean(text).trim().is_empty()
}

/// An event's line without a room prefix (`<alice> hi`, `*** bob joined`).
fn event_line(kind: &EventKind) -> String {
    match kind {
        EventKind::Chat { from, text } => chat(from, text),
        EventKind::Action { from, text } => action(from, text),
        EventKind::Notice { text } => admin_notice(text),
        EventKind::Joined { name } => joined(name),
        EventKind::Left { name, reason } => left(name, reason.as_deref()),
    }
}

/// An event as members of its room see it live: `[#dev] <alice> hi`, or `<alice> hi` in
/// `#lobby`.
pub fn render(event: &Event) -> String {
    if event.room.is_lobby() {
        return event_line(&event.kind);
    }
    format!("[{}] {}", event.room, event_line(&event.kind))
}

/// A stored message in a history or catch-up block: `[2026-12-01 11:58:02] <bob> hi`.
pub fn render_history(event: &Event) -> String {
    let secs = u64::try_from(event.at_ms.div_euclid(1000)).unwrap_or(0);
    // report::utc gives `YYYY-MM-DDTHH:MM:SSZ`.
    let stamp = crate::report::utc(secs).replace('T', " ").replace('Z', "");
    format!("[{stamp}] {}", event_line(&event.kind))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn names_tail(names: &[impl AsRef<str>]) -> String {
    let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(": {}", names.join(", "))
    }
}

/// `*** You joined #dev; 3 here: alice, bob, carol`
pub fn you_joined(room: &RoomName, here: &[impl AsRef<str>]) -> String {
    format!(
        "*** You joined {room}; {} here{}\n",
        here.len(),
        names_tail(here)
    )
}

/// `*** You are in #dev; 3 here: alice, bob, carol` (restored at login)
pub fn you_are_in(room: &RoomName, here: &[impl AsRef<str>]) -> String {
    format!(
        "*** You are in {room}; {} here{}\n",
        here.len(),
        names_tail(here)
    )
}

/// `*** Now talking in #dev`
pub fn now_talking(room: &RoomName) -> String {
    format!("*** Now talking in {room}\n")
}

/// `*** You left #dev`
pub fn you_left(room: &RoomName) -> String {
    format!("*** You left {room}\n")
}

/// `! You are not in #dev`
pub fn not_in(room: &RoomName) -> String {
    format!("! You are not in {room}\n")
}

/// `! Too many rooms (max 20)`
pub fn too_many_rooms(max: usize) -> String {
    format!("! Too many rooms (max {max})\n")
}

/// `/who` outside `#lobby`: `*** 3 in #dev: alice, bob, carol`, `*** 0 in #dev`.
pub fn who_in(room: &RoomName, here: &[impl AsRef<str>]) -> String {
    format!("*** {} in {room}{}\n", here.len(), names_tail(here))
}

/// `*** 3 rooms: #dev (3), #lobby (10), #random (1)`
pub fn rooms(list: &[(RoomName, usize)]) -> String {
    let items: Vec<String> = list.iter().map(|(r, n)| format!("{r} ({n})")).collect();
    format!(
        "*** {}: {}\n",
        plural(list.len(), "room", "rooms"),
        items.join(", ")
    )
}

/// `*** History of #dev: 3 messages`
pub fn history_header(room: &RoomName, shown: usize) -> String {
    format!(
        "*** History of {room}: {}\n",
        plural(shown, "message", "messages")
    )
}

/// `*** No history in #dev`
pub fn no_history(room: &RoomName) -> String {
    format!("*** No history in {room}\n")
}

/// The catch-up header: `*** You missed 7 messages in #dev:`, `… in #dev; the last 50:` when
/// more were missed than are shown, `… in #dev (80 no longer kept); the last 40:` when some
/// are gone.
pub fn missed_header(room: &RoomName, missed: u64, not_kept: u64, shown: usize) -> String {
    let count = plural(
        usize::try_from(missed).unwrap_or(usize::MAX),
        "message",
        "messages",
    );
    if not_kept > 0 {
        format!("*** You missed {count} in {room} ({not_kept} no longer kept); the last {shown}:\n")
    } else if missed > shown as u64 {
        format!("*** You missed {count} in {room}; the last {shown}:\n")
    } else {
        format!("*** You missed {count} in {room}:\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(d: &mut LineDecoder, mut input: &[u8]) -> Vec<Incoming> {
        let mut out = Vec::new();
        while let Some(item) = d.decode(&mut input) {
            let end = item == Incoming::Unterminated;
            out.push(item);
            if end {
                // Sticky: it would be reported forever.
                break;
            }
        }
        out
    }

    #[test]
    fn splits_lines_and_drops_cr() {
        let mut d = LineDecoder::new(10, 100);
        assert_eq!(
            decode_all(&mut d, b"a\r\nbc\n\nd"),
            vec![
                Incoming::Line("a".into()),
                Incoming::Line("bc".into()),
                Incoming::Line("".into())
            ]
        );
        assert_eq!(
            decode_all(&mut d, b"e\n"),
            vec![Incoming::Line("de".into())]
        );
    }

    #[test]
    fn exactly_the_limit_is_accepted_with_or_without_cr() {
        let mut d = LineDecoder::new(4, 100);
        assert_eq!(
            decode_all(&mut d, b"abcd\nabcd\r\nabcde\n"),
            vec![
                Incoming::Line("abcd".into()),
                Incoming::Line("abcd".into()),
                Incoming::TooLong
            ]
        );
    }

    #[test]
    fn long_line_is_reported_once_and_not_buffered() {
        let mut d = LineDecoder::new(4, 1000);
        let mut items = Vec::new();
        for _ in 0..50 {
            items.extend(decode_all(&mut d, b"xxxxxxxxxx"));
            assert!(d.line.capacity() <= 16);
        }
        items.extend(decode_all(&mut d, b"yy\nok\n"));
        assert_eq!(items, vec![Incoming::TooLong, Incoming::Line("ok".into())]);
    }

    #[test]
    fn stream_without_newline_is_cut_off() {
        let mut d = LineDecoder::new(4, 20);
        let mut input: &[u8] = &[b'x'; 30];
        assert_eq!(d.decode(&mut input), Some(Incoming::TooLong));
        assert_eq!(d.decode(&mut input), Some(Incoming::Unterminated));
    }

    /// Found by fuzzing: a run of more than the limit followed by a newline in the same read
    /// was taken as a line, but cut off when it arrived byte by byte.
    #[test]
    fn cut_off_does_not_depend_on_how_reads_split_the_stream() {
        let mut stream = vec![b'x'; 21];
        stream.extend_from_slice(b"\n\n");
        let mut whole = LineDecoder::new(4, 20);
        let at_once = decode_all(&mut whole, &stream);
        let mut bytewise = LineDecoder::new(4, 20);
        let mut one_by_one = Vec::new();
        for b in &stream {
            let mut input = std::slice::from_ref(b);
            while let Some(item) = bytewise.decode(&mut input) {
                let end = item == Incoming::Unterminated;
                one_by_one.push(item);
                if end {
                    break;
                }
            }
            if one_by_one.last() == Some(&Incoming::Unterminated) {
                break;
            }
        }
        assert_eq!(one_by_one, vec![Incoming::TooLong, Incoming::Unterminated]);
        assert_eq!(at_once, one_by_one);
    }

    #[test]
    fn exactly_the_unterminated_limit_then_a_newline_is_a_long_line_not_a_cut_off() {
        let mut d = LineDecoder::new(4, 20);
        let mut stream = vec![b'x'; 20];
        stream.extend_from_slice(b"\nok\n");
        assert_eq!(
            decode_all(&mut d, &stream),
            vec![Incoming::TooLong, Incoming::Line("ok".into())]
        );
    }

    #[test]
    fn invalid_utf8_is_reported() {
        let mut d = LineDecoder::new(10, 100);
        assert_eq!(
            decode_all(&mut d, b"\xff\xfe\nok\n"),
            vec![Incoming::InvalidUtf8, Incoming::Line("ok".into())]
        );
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse_command(""), Command::Nothing);
        assert_eq!(parse_command("  "), Command::Nothing);
        assert_eq!(parse_command("hi /x"), Command::Say("hi /x"));
        assert_eq!(parse_command("//who"), Command::Say("/who"));
        assert_eq!(parse_command("/who"), Command::Who(None));
        assert_eq!(parse_command("/WHO"), Command::Who(None));
        assert_eq!(parse_command("/who everyone"), Command::Who(None));
        assert_eq!(parse_command("/who #Dev"), Command::Who(Some("#Dev")));
        assert_eq!(parse_command("/me waves"), Command::Emote("waves"));
        assert!(matches!(parse_command("/me"), Command::Usage(_)));
        assert_eq!(
            parse_command("/msg bob hi there"),
            Command::Whisper {
                to: "bob",
                text: "hi there"
            }
        );
        assert!(matches!(parse_command("/msg bob"), Command::Usage(_)));
        assert_eq!(parse_command("/quit"), Command::Quit(None));
        assert_eq!(
            parse_command("/quit gone home"),
            Command::Quit(Some("gone home"))
        );
        assert_eq!(parse_command("/help"), Command::Help);
        assert_eq!(parse_command("/frob x"), Command::Unknown("frob"));
    }

    #[test]
    fn bidi_controls_are_removed() {
        for c in ('\u{202A}'..='\u{202E}')
            .chain('\u{2066}'..='\u{2069}')
            .chain(['\u{061C}', '\u{200E}', '\u{200F}'])
        {
            assert_eq!(clean(&format!("a{c}b")), "ab", "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn zero_width_characters_are_removed() {
        for c in ['\u{200B}', '\u{2060}', '\u{FEFF}', '\u{00AD}', '\u{180E}'] {
            assert_eq!(clean(&format!("a{c}b")), "ab", "U+{:04X}", c as u32);
        }
        assert!(!has_content("\u{200B}"));
        assert!(!has_content("\u{200B}\u{FEFF} \u{2060}"));
    }

    #[test]
    fn line_and_paragraph_separators_are_removed() {
        assert_eq!(clean("a\u{2028}b\u{2029}c"), "abc");
    }

    #[test]
    fn other_format_characters_are_removed() {
        for c in [
            '\u{2061}',
            '\u{206A}',
            '\u{FFF9}',
            '\u{13430}',
            '\u{1BCA0}',
            '\u{1D173}',
            '\u{E0001}',
            '\u{E0041}',
            '\u{E007F}',
        ] {
            assert_eq!(clean(&format!("a{c}b")), "ab", "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn joiners_stay_between_visible_characters_only() {
        // Persian "mi-khaham" needs ZWNJ; a family emoji needs ZWJ.
        assert_eq!(
            clean("\u{0645}\u{06CC}\u{200C}\u{062E}"),
            "\u{0645}\u{06CC}\u{200C}\u{062E}"
        );
        assert_eq!(
            clean("\u{1F468}\u{200D}\u{1F469}"),
            "\u{1F468}\u{200D}\u{1F469}"
        );
        assert_eq!(clean("\u{200D}a\u{200C}"), "a");
        assert_eq!(clean("a \u{200D}b"), "a b");
        assert_eq!(clean("a\u{200D}\u{200D}b"), "a\u{200D}b");
        assert_eq!(clean("a\u{200D}\u{202E}b"), "a\u{200D}b");
        assert!(!has_content("\u{200D}\u{200C}"));
    }

    #[test]
    fn prepended_concatenation_marks_are_kept() {
        assert_eq!(clean("\u{0600}123"), "\u{0600}123");
    }

    #[test]
    fn control_characters_are_removed() {
        assert_eq!(clean("a\u{1b}[31mred\u{7}\u{7f}\u{9b}b\tc"), "a[31mredb\tc");
        assert_eq!(chat("al", "\u{1b}]0;x\u{7}hi"), "<al> ]0;xhi\n");
    }

    #[test]
    fn printable_ascii_is_kept_without_a_copy() {
        let text = "hi\tthere ~ {ok}";
        assert!(matches!(clean(text), std::borrow::Cow::Borrowed(t) if t == text));
        assert_eq!(clean("x\u{7f}y"), "xy", "DEL is not printable");
    }

    #[test]
    fn rendering_matches_the_contract() {
        assert_eq!(
            welcome("alice", &["alice", "bob", "carol"]),
            "*** Welcome, alice! 3 online: alice, bob, carol\n"
        );
        assert_eq!(who(&["a", "b"]), "*** 2 online: a, b\n");
        assert_eq!(left("bob", Some("tea")), "*** bob left (tea)\n");
        assert_eq!(left("bob", None), "*** bob left\n");
        assert_eq!(line_too_long(4096), "! Line too long (max 4096 bytes)\n");
        assert_eq!(slow_down(2.0), "! Slow down: at most 2 lines per second\n");
        assert_eq!(
            unknown_command("frob"),
            "! Unknown command /frob (try /help)\n"
        );
    }

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    fn event(room_name: &str, kind: EventKind) -> Event {
        Event {
            room: room(room_name),
            seq: 1,
            // 2026-12-01 11:58:02 UTC
            at_ms: 1_796_126_282_000,
            kind,
        }
    }

    #[test]
    fn room_lines_carry_a_prefix_outside_the_lobby_only() {
        let chat = |r| {
            event(
                r,
                EventKind::Chat {
                    from: "bob".into(),
                    text: "hi".into(),
                },
            )
        };
        assert_eq!(render(&chat("#lobby")), "<bob> hi\n");
        assert_eq!(render(&chat("#dev")), "[#dev] <bob> hi\n");
        let joined = event("#dev", EventKind::Joined { name: "bob".into() });
        assert_eq!(render(&joined), "[#dev] *** bob joined\n");
    }

    #[test]
    fn history_lines_have_the_utc_time_and_no_prefix() {
        let action = event(
            "#dev",
            EventKind::Action {
                from: "bob".into(),
                text: "waves".into(),
            },
        );
        assert_eq!(
            render_history(&action),
            "[2026-12-01 11:58:02] * bob waves\n"
        );
    }

    #[test]
    fn counts_of_one_are_singular() {
        let dev = room("#dev");
        assert_eq!(history_header(&dev, 1), "*** History of #dev: 1 message\n");
        assert_eq!(history_header(&dev, 3), "*** History of #dev: 3 messages\n");
        assert_eq!(rooms(&[(room("#lobby"), 1)]), "*** 1 room: #lobby (1)\n");
        assert_eq!(
            rooms(&[(room("#dev"), 3), (room("#lobby"), 10)]),
            "*** 2 rooms: #dev (3), #lobby (10)\n"
        );
    }

    #[test]
    fn the_missed_header_says_what_is_shown() {
        let dev = room("#dev");
        assert_eq!(
            missed_header(&dev, 7, 0, 7),
            "*** You missed 7 messages in #dev:\n"
        );
        assert_eq!(
            missed_header(&dev, 1, 0, 1),
            "*** You missed 1 message in #dev:\n"
        );
        assert_eq!(
            missed_header(&dev, 120, 0, 50),
            "*** You missed 120 messages in #dev; the last 50:\n"
        );
        assert_eq!(
            missed_header(&dev, 120, 80, 40),
            "*** You missed 120 messages in #dev (80 no longer kept); the last 40:\n"
        );
    }

    #[test]
    fn room_replies_match_the_contract() {
        let dev = room("#dev");
        assert_eq!(
            you_joined(&dev, &["alice", "bob", "carol"]),
            "*** You joined #dev; 3 here: alice, bob, carol\n"
        );
        assert_eq!(who_in(&dev, &[] as &[&str]), "*** 0 in #dev\n");
        assert_eq!(who_in(&dev, &["a", "b"]), "*** 2 in #dev: a, b\n");
    }

    #[test]
    fn history_counts_are_checked() {
        assert_eq!(parse_command("/history"), Command::History(20));
        assert_eq!(parse_command("/history 500"), Command::History(500));
        for bad in ["/history 0", "/history 501", "/history +5", "/history 1.5"] {
            assert_eq!(parse_command(bad), Command::Usage(HISTORY_USAGE), "{bad}");
        }
    }
}
