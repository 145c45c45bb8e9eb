//! One IRC message (RFC 1459 framing with IRCv3 message tags): parsed from what a client sent,
//! or written by the server. A line arrives without its CR LF (the framing is the
//! transport's).

use std::borrow::Cow;
use std::fmt::Write as _;

/// The most a message may take without its tags, CR LF included (RFC 1459).
pub const MAX_BODY_BYTES: usize = 512;
/// The most a client's tags may take, without the leading `@` and the space after them
/// (IRCv3 message-tags).
pub const MAX_CLIENT_TAG_BYTES: usize = 4094;

/// Why a client's line is not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Over [`MAX_BODY_BYTES`] (answered with 417).
    #[error("input line was too long")]
    TooLong,
    /// Tags over [`MAX_CLIENT_TAG_BYTES`] (answered with 417).
    #[error("message tags were too long")]
    TagsTooLong,
    /// Nothing but tags and a source, or nothing at all (ignored).
    #[error("no command")]
    NoCommand,
}

/// The command word of a client's line, without parsing the rest (what a rate limiter needs
/// to know): tags and a source are skipped; empty when there is none.
pub fn command_of(line: &str) -> &str {
    let mut rest = line;
    if let Some(tagged) = rest.strip_prefix('@') {
        rest = tagged
            .split_once(' ')
            .map_or("", |(_, r)| r)
            .trim_start_matches(' ');
    }
    if let Some(sourced) = rest.strip_prefix(':') {
        rest = sourced
            .split_once(' ')
            .map_or("", |(_, r)| r)
            .trim_start_matches(' ');
    }
    rest.split(' ').next().unwrap_or("")
}

/// A message a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// Tags in the order sent (a key sent twice keeps its last value), values unescaped; a
    /// tag without a value has an empty one.
    pub tags: Vec<(&'a str, Cow<'a, str>)>,
    /// The source a client put in front (`:nick!user@host`), which servers ignore.
    pub source: Option<&'a str>,
    /// The command as sent (IRC commands are case-insensitive: compare with
    /// `eq_ignore_ascii_case`).
    pub command: &'a str,
    /// The parameters, the trailing one (after ` :`) last and whole.
    pub params: Vec<&'a str>,
}

impl<'a> Message<'a> {
    /// Parses one line (without CR LF).
    pub fn parse(line: &'a str) -> Result<Self, MessageError> {
        let (tags, rest) = match line.strip_prefix('@') {
            Some(tagged) => {
                let (tags, rest) = tagged.split_once(' ').unwrap_or((tagged, ""));
                if tags.len() > MAX_CLIENT_TAG_BYTES {
                    return Err(MessageError::TagsTooLong);
                }
                (parse_tags(tags), rest.trim_start_matches(' '))
            }
            None => (Vec::new(), line),
        };
        if rest.len() + 2 > MAX_BODY_BYTES {
            return Err(MessageError::TooLong);
        }
        let (source, rest) = match rest.strip_prefix(':') {
            Some(sourced) => {
                let (source, rest) = sourced.split_once(' ').unwrap_or((sourced, ""));
                (Some(source), rest.trim_start_matches(' '))
            }
            None => (None, rest),
        };
        let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if command.is_empty() {
            return Err(MessageError::NoCommand);
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                params.push(trailing);
                break;
            }
            let (param, more) = rest.split_once(' ').unwrap_or((rest, ""));
            params.push(param);
            rest = more;
        }
        Ok(Message {
            tags,
            source,
            command,
            params,
        })
    }

    /// The value of tag `key`, if the message has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_ref())
    }
}

/// `key[=value];…`, values unescaped; empty keys skipped; a repeated key keeps its last value.
fn parse_tags(tags: &str) -> Vec<(&str, Cow<'_, str>)> {
    let mut out: Vec<(&str, Cow<'_, str>)> = Vec::new();
    for tag in tags.split(';') {
        let (key, value) = tag.split_once('=').unwrap_or((tag, ""));
        if key.is_empty() {
            continue;
        }
        let value = unescape(value);
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => out.push((key, value)),
        }
    }
    out
}

/// A tag value as sent: `\:` is `;`, `\s` a space, `\\` a backslash, `\r` and `\n` CR and LF,
/// a backslash before anything else is dropped, and so is one at the end.
fn unescape(value: &str) -> Cow<'_, str> {
    if !value.contains('\\') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    Cow::Owned(out)
}

/// Writes a tag value escaped (the inverse of [`unescape`]).
pub fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            ';' => out.push_str("\\:"),
            ' ' => out.push_str("\\s"),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends one message as the server sends it, CR LF included: `@tags` (values escaped; a
/// tag with an empty value as its key alone), `:source`, the command and the parameters, the
/// last one after ` :` when it is empty, holds a space or starts with `:`. The other
/// parameters must be single words (nicks, channels, numbers), which callers guarantee.
pub fn write(
    out: &mut String,
    tags: &[(&str, &str)],
    source: Option<&str>,
    command: &str,
    params: &[&str],
) {
    write_with(out, (tags, source), command, params, false);
}

/// Like [`write`], the last parameter always after ` :`: for free text (a message, a reason,
/// a numeric's words), which clients expect there even when it is one word.
pub fn write_text(
    out: &mut String,
    tags: &[(&str, &str)],
    source: Option<&str>,
    command: &str,
    params: &[&str],
) {
    write_with(out, (tags, source), command, params, true);
}

/// A server's reply to `nick`, CR LF included: `:SERVER NUMERIC NICK params…`, the last
/// parameter after ` :` (free text, as [`write_text`]).
pub fn numeric(server: &str, nick: &str, numeric: &str, params: &[&str]) -> String {
    numeric_with(server, nick, numeric, params, true)
}

/// Like [`numeric`], every parameter a word (a mode string, a count), as [`write`].
pub fn numeric_words(server: &str, nick: &str, numeric: &str, params: &[&str]) -> String {
    numeric_with(server, nick, numeric, params, false)
}

fn numeric_with(server: &str, nick: &str, numeric: &str, params: &[&str], text: bool) -> String {
    let mut all = Vec::with_capacity(params.len() + 1);
    all.push(nick);
    all.extend_from_slice(params);
    let mut out = String::new();
    write_with(&mut out, (&[], Some(server)), numeric, &all, text);
    out
}

fn write_with(
    out: &mut String,
    (tags, source): (&[(&str, &str)], Option<&str>),
    command: &str,
    params: &[&str],
    text: bool,
) {
    if !tags.is_empty() {
        out.push('@');
        for (i, (key, value)) in tags.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            out.push_str(key);
            if !value.is_empty() {
                out.push('=');
                escape_into(out, value);
            }
        }
        out.push(' ');
    }
    if let Some(source) = source {
        // Writing to a String cannot fail.
        let _ = write!(out, ":{source} ");
    }
    out.push_str(command);
    if let Some((last, middle)) = params.split_last() {
        for param in middle {
            debug_assert!(
                !param.is_empty() && !param.contains(' ') && !param.starts_with(':'),
                "{param:?} is not a middle parameter"
            );
            out.push(' ');
            out.push_str(param);
        }
        out.push(' ');
        if text || last.is_empty() || last.contains(' ') || last.starts_with(':') {
            out.push(':');
        }
        out.push_str(last);
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_word_skips_tags_and_source() {
        assert_eq!(command_of("PRIVMSG #a :hi"), "PRIVMSG");
        assert_eq!(command_of("@+typing=active :me!u@h TAGMSG #a"), "TAGMSG");
        assert_eq!(command_of(":src  ping x"), "ping");
        assert_eq!(command_of("@only-tags"), "");
    }

    #[test]
    fn a_message_has_tags_source_command_and_parameters() {
        let m =
            Message::parse("@time=x;+typing=active :alice!a@h PRIVMSG #dev :hello  there").unwrap();
        assert_eq!(m.tag("time"), Some("x"));
        assert_eq!(m.tag("+typing"), Some("active"));
        assert_eq!(m.source, Some("alice!a@h"));
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params, ["#dev", "hello  there"]);
    }

    #[test]
    fn parameters_split_on_runs_of_spaces_and_the_trailing_one_is_whole() {
        let m = Message::parse("USER  guest 0   * :Real  Name ").unwrap();
        assert_eq!(m.params, ["guest", "0", "*", "Real  Name "]);
        let m = Message::parse("NICK alice").unwrap();
        assert_eq!(m.params, ["alice"]);
        let m = Message::parse("PING :").unwrap();
        assert_eq!(m.params, [""]);
        assert!(Message::parse("QUIT").unwrap().params.is_empty());
    }

    #[test]
    fn tag_values_are_unescaped_and_a_repeated_key_keeps_its_last_value() {
        let m =
            Message::parse(r"@a=1\:2\s3\\4\r\n;b;c=\x;a=again;=skipped;d=end\ TAGMSG #x").unwrap();
        assert_eq!(m.tag("a"), Some("again"));
        assert_eq!(m.tag("b"), Some(""));
        assert_eq!(m.tag("c"), Some("x"));
        assert_eq!(m.tag("d"), Some("end"));
        assert_eq!(m.tags.len(), 4);
        let m = Message::parse(r"@a=1\:2\s3\\4\r\n TAGMSG #x").unwrap();
        assert_eq!(m.tag("a"), Some("1;2 3\\4\r\n"));
    }

    #[test]
    fn a_body_over_512_bytes_with_cr_lf_is_too_long_whatever_its_tags() {
        let fits = format!("PRIVMSG #dev :{}", "x".repeat(510 - 14));
        assert_eq!(fits.len(), 510);
        assert!(Message::parse(&fits).is_ok());
        assert_eq!(
            Message::parse(&format!("{fits}x")),
            Err(MessageError::TooLong)
        );
        let tagged = format!("@{} {fits}", "t".repeat(MAX_CLIENT_TAG_BYTES));
        assert!(Message::parse(&tagged).is_ok());
    }

    #[test]
    fn tags_over_4094_bytes_are_too_long() {
        let line = format!("@{} PING x", "t".repeat(MAX_CLIENT_TAG_BYTES + 1));
        assert_eq!(Message::parse(&line), Err(MessageError::TagsTooLong));
    }

    #[test]
    fn a_line_without_a_command_is_not_a_message() {
        for line in ["", "   ", ":source", "@a=b", "@a=b :source "] {
            assert_eq!(
                Message::parse(line),
                Err(MessageError::NoCommand),
                "{line:?}"
            );
        }
    }

    #[test]
    fn the_server_writes_tags_escaped_and_the_last_parameter_trailing_when_it_must() {
        let mut out = String::new();
        write(
            &mut out,
            &[
                ("time", "2026-12-07T10:00:00.000Z"),
                ("x", "a;b c\\"),
                ("flag", ""),
            ],
            Some("alice!~alice@tlschat"),
            "PRIVMSG",
            &["#dev", "hi there"],
        );
        assert_eq!(
            out,
            "@time=2026-12-07T10:00:00.000Z;x=a\\:b\\sc\\\\;flag :alice!~alice@tlschat PRIVMSG #dev :hi there\r\n"
        );
        for (last, wire) in [("word", "word"), ("", ":"), (":x", "::x")] {
            let mut out = String::new();
            write(&mut out, &[], Some("tlschat"), "NOTICE", &["bob", last]);
            assert_eq!(out, format!(":tlschat NOTICE bob {wire}\r\n"));
        }
        let mut out = String::new();
        write(&mut out, &[], None, "PING", &[]);
        assert_eq!(out, "PING\r\n");
        let mut out = String::new();
        write_text(&mut out, &[], Some("a!~a@s"), "QUIT", &["Quit"]);
        assert_eq!(out, ":a!~a@s QUIT :Quit\r\n");
    }

    #[test]
    fn what_the_server_writes_parses_back_to_the_same_message() {
        let value = "semi;space \\back\rcr\nlf";
        let mut out = String::new();
        write(&mut out, &[("k", value)], Some("s"), "CMD", &["a", "b c"]);
        let m = Message::parse(out.trim_end_matches("\r\n")).unwrap();
        assert_eq!(m.tag("k"), Some(value));
        assert_eq!((m.source, m.command), (Some("s"), "CMD"));
        assert_eq!(m.params, ["a", "b c"]);
    }
}
