//! The wire text: bounded line decoding (`decode`), command parsing (`command`), sanitising
//! (`clean`), every line the server sends (`render`), those lines as a client reads them
//! (`server_line`), and the numbered lines a client may ask for (`resume`).
//!
//! No async code lives here, so all of it is unit-tested with plain `#[test]`s. See
//! `docs/PROTOCOL.md` for the contract this module implements.

mod clean;
mod command;
mod decode;
mod render;
mod resume;
mod server_line;

pub use clean::{clean, has_content};
pub use command::{Command, DEFAULT_HISTORY_REQUEST, MAX_HISTORY_REQUEST, parse_command};
pub use decode::{Incoming, LineDecoder};
pub use render::*;
pub use resume::{ResumeFrom, number, parse_resume, resume_line, split_number};
pub use server_line::ServerLine;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventKind, RoomName};

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
        assert!(matches!(
            parse_command("/msg bob \u{200B}\u{2060} \u{FEFF}"),
            Command::Usage(_)
        ));
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
        let conn = crate::event::ConnId { node: 0, local: 1 };
        let joined = event(
            "#dev",
            EventKind::Joined {
                name: "bob".into(),
                conn,
            },
        );
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
