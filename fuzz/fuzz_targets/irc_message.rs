//! The IRC message parser and text helpers on arbitrary input: no panic; a parsed message
//! written back parses to the same message; stripped text has no formatting codes left; split
//! pieces stay within their size and join back to the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlschat::irc::message::{Message, write};
use tlschat::irc::text::{split, strip_formatting};

fuzz_target!(|line: &str| {
    if let Ok(m) = Message::parse(line)
        && !m.command.contains(['\r', '\n', '\0'])
        && m.params.iter().all(|p| !p.contains(['\r', '\n', '\0']))
        && m.tags
            .iter()
            .all(|(k, _)| !k.contains(['\r', '\n', '\0', '=']))
        && m.source.is_none_or(|s| !s.contains(['\r', '\n', '\0']))
    {
        let tags: Vec<(&str, &str)> = m.tags.iter().map(|(k, v)| (*k, v.as_ref())).collect();
        let mut out = String::new();
        write(&mut out, &tags, m.source, m.command, &m.params);
        let again = Message::parse(out.trim_end_matches("\r\n")).expect("written back");
        assert_eq!(again.command, m.command);
        assert_eq!(again.params, m.params);
        assert_eq!(again.source, m.source);
        for (key, value) in &m.tags {
            assert_eq!(again.tag(key), Some(value.as_ref()));
        }
    }
    let stripped = strip_formatting(line);
    assert!(!stripped.contains([
        '\x02', '\x03', '\x04', '\x0f', '\x11', '\x16', '\x1d', '\x1e', '\x1f'
    ]));
    let max = 4 + line.len() % 512;
    let pieces = split(line, max);
    assert!(pieces.iter().all(|p| p.len() <= max));
    assert_eq!(pieces.concat(), line);
});
