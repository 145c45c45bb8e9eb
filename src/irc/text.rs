//! Chat text between IRC and the other protocols: IRC's formatting codes removed (other
//! protocols would show them as garbage), and a line longer than IRC allows split into pieces
//! that join back to it.

use std::borrow::Cow;

/// How far back from a piece's end a space is looked for to split at.
const SPLIT_AT_SPACE_WITHIN: usize = 40;

/// `text` without IRC formatting: `\x03` with up to two digits of foreground and, after a
/// comma, two of background; `\x04` with up to six hex digits; and the toggles `\x02` bold,
/// `\x0f` reset, `\x11` monospace, `\x16` reverse, `\x1d` italics, `\x1e` strikethrough and
/// `\x1f` underline.
pub fn strip_formatting(text: &str) -> Cow<'_, str> {
    let is_code = |b: u8| {
        matches!(
            b,
            0x02 | 0x03 | 0x04 | 0x0f | 0x11 | 0x16 | 0x1d | 0x1e | 0x1f
        )
    };
    if !text.bytes().any(is_code) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    // After `\x03` (two decimal digits) or `\x04` (six hex): the colour, and `,` and a
    // background colour when there is one; returns the bytes they take from `from`.
    let colour = |from: usize, max: usize, ok: fn(&u8) -> bool| {
        let run = |at: usize| bytes[at..].iter().take(max).take_while(|b| ok(b)).count();
        let fg = run(from);
        let bg = if fg > 0 && bytes.get(from + fg) == Some(&b',') {
            run(from + fg + 1)
        } else {
            0
        };
        if bg > 0 { fg + 1 + bg } else { fg }
    };
    while i < bytes.len() {
        match bytes[i] {
            0x03 => i += 1 + colour(i + 1, 2, u8::is_ascii_digit),
            0x04 => i += 1 + colour(i + 1, 6, u8::is_ascii_hexdigit),
            b if is_code(b) => i += 1,
            _ => {
                // Everything up to the next code at once (codes are ASCII, so the run ends on
                // a character boundary).
                let end = bytes[i..]
                    .iter()
                    .position(|&b| is_code(b))
                    .map_or(bytes.len(), |n| i + n);
                out.push_str(&text[i..end]);
                i = end;
            }
        }
    }
    Cow::Owned(out)
}

/// `text` in pieces of at most `max` bytes each (`max` ≥ 4, so any character fits), split
/// between characters, and at a space within the last 40 bytes of a piece when there is one
/// (the space ends that piece): the pieces joined are `text` again.
pub fn split(text: &str, max: usize) -> Vec<&str> {
    assert!(max >= 4, "a piece must hold any character");
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut end = max;
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let window = end.saturating_sub(SPLIT_AT_SPACE_WITHIN);
        if let Some(space) = rest[window..end].rfind(' ') {
            end = window + space + 1;
        }
        let (piece, more) = rest.split_at(end);
        pieces.push(piece);
        rest = more;
    }
    if !rest.is_empty() || pieces.is_empty() {
        pieces.push(rest);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_codes_go_with_their_parameters() {
        let cases = [
            ("plain", "plain"),
            (
                "\x02bold\x02 \x1ditalic\x1d \x1funder\x1f",
                "bold italic under",
            ),
            ("\x0304red\x03 \x034,12on blue\x03", "red on blue"),
            ("\x03,5comma stays", ",5comma stays"),
            ("\x0312345", "345"),
            ("\x04ff00aahex\x04 \x04FF0000,00ff00both", "hex both"),
            ("\x0f\x11\x16\x1e", ""),
            ("é\x02ü\x03", "éü"),
        ];
        for (input, want) in cases {
            assert_eq!(strip_formatting(input), want, "{input:?}");
        }
        assert!(matches!(strip_formatting("no codes"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_long_line_splits_into_pieces_that_join_back_to_it() {
        let text: String = (0..400).map(|i| format!("word{i} ")).collect();
        let pieces = split(&text, 100);
        assert!(pieces.len() > 1);
        assert!(pieces.iter().all(|p| p.len() <= 100));
        assert_eq!(pieces.concat(), text);
        // Each piece but the last ends at a space.
        assert!(pieces[..pieces.len() - 1].iter().all(|p| p.ends_with(' ')));
    }

    #[test]
    fn without_a_space_near_the_end_a_piece_is_cut_between_characters() {
        let text = "ü".repeat(300); // two bytes each
        let pieces = split(&text, 101);
        assert!(pieces.iter().all(|p| p.len() <= 101));
        assert_eq!(pieces[0].len(), 100);
        assert_eq!(pieces.concat(), text);
        let far = format!("a {}", "b".repeat(200));
        assert_eq!(split(&far, 100)[0], format!("a {}", "b".repeat(98)));
    }

    #[test]
    fn a_short_line_is_one_piece() {
        assert_eq!(split("hello", 100), ["hello"]);
        assert_eq!(split("", 100), [""]);
    }
}
