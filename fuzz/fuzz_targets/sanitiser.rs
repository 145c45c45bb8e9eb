//! The sanitiser on arbitrary text: nothing that can steer a terminal or reorder a line
//! survives, cleaning twice changes nothing, and rendering never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlschat::protocol::{chat, clean, has_content};

fn removed(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c,
            '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}' | '\u{200E}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}' | '\u{2028}'..='\u{2029}' | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

fuzz_target!(|text: &str| {
    let once = clean(text);
    assert!(!once.chars().any(removed), "{once:?}");
    let joiner = |c: char| c == '\u{200C}' || c == '\u{200D}';
    let chars: Vec<char> = once.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if joiner(*c) {
            let visible = |c: Option<&char>| c.is_some_and(|c| !c.is_whitespace() && !joiner(*c));
            assert!(i > 0 && visible(chars.get(i - 1)) && visible(chars.get(i + 1)), "{once:?}");
        }
    }
    assert_eq!(clean(&once), once, "not idempotent");
    let line = chat("alice", text);
    assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
    let _ = has_content(text);
});
