//! Sanitising: what may reach another member's terminal.

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

/// True when the cleaned text has something visible to relay.
pub fn has_content(text: &str) -> bool {
    !clean(text).trim().is_empty()
}
