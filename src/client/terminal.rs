//! The terminal side of `tlschat connect`: line editing with history and Ctrl-R
//! (rustyline), arriving lines printed above the input without breaking what is being typed,
//! a prompt with the current room, Tab completion of commands, rooms and names, and names in
//! consistent colours.

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{ExternalPrinter, Helper};
use tokio::sync::mpsc;

/// The commands Tab completes.
const COMMANDS: [&str; 12] = [
    "/who",
    "/me",
    "/msg",
    "/join",
    "/part",
    "/rooms",
    "/history",
    "/cert",
    "/help",
    "/quit",
    "/cert enroll",
    "/cert list",
];

/// What the prompt and completion know, kept up to date from the server's lines.
#[derive(Debug)]
pub struct Known {
    /// The current room.
    pub room: String,
    /// Rooms the user is in.
    pub rooms: BTreeSet<String>,
    /// People online.
    pub names: BTreeSet<String>,
}

impl Default for Known {
    fn default() -> Self {
        Known {
            room: "#lobby".into(),
            rooms: BTreeSet::from(["#lobby".to_owned()]),
            names: BTreeSet::new(),
        }
    }
}

impl Known {
    /// Learns from one line the server sent.
    pub fn learn(&mut self, line: &str) {
        use crate::protocol::ServerLine;
        let owned = |names: Vec<&str>| names.into_iter().map(str::to_owned).collect();
        match ServerLine::parse(line) {
            ServerLine::Welcome { online, .. } | ServerLine::Online(online) => {
                self.names = owned(online);
            }
            ServerLine::Joined(room) => {
                self.rooms.insert(room.to_owned());
                self.room = room.to_owned();
            }
            ServerLine::IsIn(room) => {
                self.rooms.insert(room.to_owned());
            }
            ServerLine::NowTalking(room) => self.room = room.to_owned(),
            ServerLine::Left(room) => {
                self.rooms.remove(room);
                if self.room == room {
                    self.room = "#lobby".into();
                }
            }
            ServerLine::MemberJoined(name) => {
                self.names.insert(name.to_owned());
            }
            ServerLine::MemberLeft(name) => {
                self.names.remove(name);
            }
            _ => {}
        }
    }
}

/// Longest wait for the answer to `/join` or `/part` before the next prompt, which names
/// the room the answer makes current.
const ROOM_ANSWER_WAIT: Duration = Duration::from_secs(1);

/// [`Known`], shared by the connection (which learns from every line) and the editor.
#[derive(Debug, Default)]
pub struct Shared {
    known: Mutex<(Known, u64)>,
    changed: Condvar,
}

impl Shared {
    /// Learns from one server line and wakes an editor waiting for an answer.
    pub fn learn(&self, line: &str) {
        let mut guard = self.known.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.learn(line);
        guard.1 += 1;
        self.changed.notify_all();
    }

    fn with<T>(&self, f: impl FnOnce(&Known) -> T) -> T {
        f(&self.known.lock().unwrap_or_else(|e| e.into_inner()).0)
    }

    fn lines_seen(&self) -> u64 {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Waits until a line after the `seen`-th has arrived, at most `limit`.
    fn wait_past(&self, seen: u64, limit: Duration) {
        let guard = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .changed
            .wait_timeout_while(guard, limit, |g| g.1 <= seen);
    }
}

/// Completes `/commands`, `#rooms` and names from [`Known`].
struct Completion {
    shared: Arc<Shared>,
}

impl Completer for Completion {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = line[..pos].rfind(' ').map_or(0, |i| i + 1);
        let word = &line[start..pos];
        let candidates: Vec<String> = if start == 0 && word.starts_with('/') {
            COMMANDS
                .iter()
                .filter(|c| !c.contains(' '))
                .map(|c| (*c).to_owned())
                .collect()
        } else if word.starts_with('#') {
            self.shared.with(|k| k.rooms.iter().cloned().collect())
        } else {
            self.shared.with(|k| k.names.iter().cloned().collect())
        };
        let pairs = candidates
            .into_iter()
            .filter(|c| {
                c.to_ascii_lowercase()
                    .starts_with(&word.to_ascii_lowercase())
            })
            .map(|c| Pair {
                display: c.clone(),
                replacement: format!("{c} "),
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for Completion {
    type Hint = String;
}
impl Highlighter for Completion {}
impl Validator for Completion {}
impl Helper for Completion {}

/// Prints arriving lines above the input line.
pub struct Printer {
    inner: Box<dyn ExternalPrinter + Send>,
    colour: bool,
}

impl Printer {
    /// Prints one (already sanitised) line.
    pub fn print(&mut self, line: &str) {
        let text = if self.colour {
            colour_names(line)
        } else {
            line.to_owned()
        };
        let _ = self.inner.print(format!("{text}\n"));
    }
}

/// Starts the line editor on a thread of its own: typed lines arrive on the channel (Ctrl-D
/// and Ctrl-C send `/quit`), and the printer shows server lines above the input.
pub fn start(
    shared: Arc<Shared>,
    colour: bool,
) -> anyhow::Result<(mpsc::Receiver<String>, Printer)> {
    let (tx, rx) = mpsc::channel(64);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let config = rustyline::Config::builder()
            .auto_add_history(true)
            .max_history_size(1000)
            .map(|b| b.build());
        let editor = config.and_then(rustyline::Editor::with_config);
        let mut editor: rustyline::Editor<Completion, rustyline::history::DefaultHistory> =
            match editor {
                Ok(e) => e,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
        editor.set_helper(Some(Completion {
            shared: Arc::clone(&shared),
        }));
        match editor.create_external_printer() {
            Ok(p) => {
                let _ = ready_tx.send(Ok(Box::new(p) as Box<dyn ExternalPrinter + Send>));
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        }
        loop {
            let prompt = shared.with(|k| format!("{}> ", k.room));
            let line = match editor.readline(&prompt) {
                Ok(line) => line,
                Err(ReadlineError::Interrupted | ReadlineError::Eof) => "/quit".to_owned(),
                Err(_) => "/quit".to_owned(),
            };
            let quit = line.trim_start().starts_with("/quit");
            let changes_room = ["/join", "/part"]
                .iter()
                .any(|c| line.trim_start().starts_with(c));
            let seen = shared.lines_seen();
            if tx.blocking_send(line).is_err() || quit {
                return;
            }
            if changes_room {
                shared.wait_past(seen, ROOM_ANSWER_WAIT);
            }
        }
    });
    let inner = ready_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("the line editor did not start"))?
        .map_err(|e| anyhow::anyhow!("starting the line editor: {e}"))?;
    Ok((rx, Printer { inner, colour }))
}

/// Colours the sender's name of a chat, action or private line (after any `[#room] ` and
/// `[time] ` prefixes), the same colour for the same name every time.
pub fn colour_names(line: &str) -> String {
    let mut rest = line;
    let mut head = String::new();
    while rest.starts_with('[') {
        match rest.find("] ") {
            Some(i) => {
                head.push_str(&rest[..i + 2]);
                rest = &rest[i + 2..];
            }
            None => break,
        }
    }
    let (open, close) = if rest.starts_with('<') {
        ("<", '>')
    } else if rest.starts_with("* ") {
        ("* ", ' ')
    } else if rest.starts_with('*') && !rest.starts_with("***") {
        ("*", '*')
    } else {
        return line.to_owned();
    };
    let body = &rest[open.len()..];
    let Some(end) = body.find(close) else {
        return line.to_owned();
    };
    let name = &body[..end];
    if name.is_empty() || name.contains(' ') {
        return line.to_owned();
    }
    format!(
        "{head}{open}\x1b[1;38;5;{}m{name}\x1b[0m{}",
        colour_of(name),
        &body[end..]
    )
}

/// One of 12 well-readable 256-colour codes, chosen by the name's hash.
fn colour_of(name: &str) -> u8 {
    const PALETTE: [u8; 12] = [160, 28, 33, 127, 172, 37, 162, 64, 63, 130, 31, 125];
    let h = name
        .to_ascii_lowercase()
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    PALETTE[(h % 12) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_one_colour_after_any_prefix() {
        let plain = colour_names("<bob> hi");
        assert!(
            plain.starts_with("<\x1b[1;38;5;") && plain.ends_with("bob\x1b[0m> hi"),
            "{plain:?}"
        );
        let in_room = colour_names("[#dev] <bob> hi");
        assert!(in_room.starts_with("[#dev] <\x1b["), "{in_room:?}");
        assert_eq!(plain.replace("<", ""), in_room.replace("[#dev] <", ""));
        assert!(colour_names("* bob waves").contains("bob\x1b[0m waves"));
        assert_eq!(colour_names("*** bob joined"), "*** bob joined");
    }

    #[test]
    fn the_prompt_and_completion_follow_the_server() {
        let mut k = Known::default();
        k.learn("*** Welcome, alice! 2 online: alice, bob");
        k.learn("*** carol joined");
        k.learn("*** You joined #dev; 1 here: alice");
        assert_eq!(k.room, "#dev");
        k.learn("*** bob left (lunch)");
        assert_eq!(
            k.names.iter().cloned().collect::<Vec<_>>(),
            ["alice", "carol"]
        );
        k.learn("*** You left #dev");
        assert_eq!(k.room, "#lobby");
        assert!(!k.rooms.contains("#dev"));
    }
}
