//! `Username::parse` on arbitrary text: no panic, and an accepted name obeys the rule.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlschat::username::Username;

fuzz_target!(|text: &str| {
    if let Ok(name) = Username::parse(text) {
        let s = name.as_str();
        assert_eq!(s, text);
        assert!((1..=32).contains(&s.len()));
        assert!(s.as_bytes()[0].is_ascii_alphanumeric());
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)));
        assert_eq!(name.key(), s.to_ascii_lowercase());
    }
});
