//! Every line the server sends, built here so there is one place to grep.

use super::clean::clean;
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
/// To every member of a cluster node once the shared Redis answers again after an outage.
pub const CHAT_AVAILABLE_AGAIN: &str = "*** Chat is available again\n";
/// To every member of a cluster node when Redis came back without its data: room numbers
/// start again.
pub const HISTORY_RESET: &str = "*** Server history was reset\n";
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
/// Why the members of a cluster node that stopped answering left.
pub const REASON_CONNECTION_LOST: &str = "connection lost";
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
/// Reply to `/resume` at the `Username:` prompt: this session's lines of stored messages
/// carry their numbers.
pub const NUMBERED_LINES_ON: &str = "*** Numbered lines on\n";
/// Reply to a `/resume` whose arguments are not `#ROOM SEQ` pairs.
pub const RESUME_USAGE: &str = "! Usage: /resume [#ROOM SEQ]...\n";
/// After the welcome, when the member's rooms and read positions could not be read.
pub const CATCH_UP_UNAVAILABLE: &str =
    "! Catch-up is unavailable right now; you will get it at your next login\n";

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

/// An event's line without a room prefix (`<alice> hi`, `*** bob joined`).
fn event_line(kind: &EventKind) -> String {
    match kind {
        EventKind::Chat { from, text } => chat(from, text),
        EventKind::Action { from, text } => action(from, text),
        EventKind::Notice { text } => admin_notice(text),
        EventKind::Joined { name, .. } => joined(name),
        EventKind::Left { name, reason, .. } => left(name, reason.as_deref()),
        // Not shown (see `EventKind::is_shown`).
        EventKind::Replaced { .. } | EventKind::Offline { .. } => String::new(),
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

/// After a password login: who else can log in to the account without its password.
pub fn certificates_can_log_in(count: i64, name: &str) -> String {
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    format!(
        "*** {} can log in as {name}\n",
        plural(count, "client certificate", "client certificates")
    )
}

/// `1 room`, `3 rooms`: a count of 1 is singular, every other count plural.
pub fn plural(n: usize, one: &str, many: &str) -> String {
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
