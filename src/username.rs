//! Validated usernames: once you hold a `Username`, it follows the naming rule.

use std::fmt;

/// Longest username in characters.
pub const MAX_USERNAME_CHARS: usize = 32;

/// The naming rule, quoted in every error about a bad name.
pub const USERNAME_RULE: &str =
    "1-32 ASCII letters, digits, '_', '-' or '.', starting with a letter or digit";

/// A name that is not a valid username.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid username {0:?}: use {USERNAME_RULE}")]
pub struct InvalidUsername(pub String);

/// A username as typed at creation; compare with [`Username::key`] for case-insensitive matching.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    /// Checks the naming rule.
    pub fn parse(text: &str) -> Result<Self, InvalidUsername> {
        let bytes = text.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= MAX_USERNAME_CHARS
            && bytes[0].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if ok {
            Ok(Username(text.to_owned()))
        } else {
            Err(InvalidUsername(text.to_owned()))
        }
    }

    /// The name as created.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded form used for uniqueness and lookups.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["a", "Alice", "bob_2", "x.y-z", "9lives", &"a".repeat(32)] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "_x",
            ".x",
            "-x",
            "a b",
            "é",
            "a\u{1b}",
            &"a".repeat(33),
            "a/b",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_is_case_folded() {
        assert_eq!(Username::parse("AlIce").unwrap().key(), "alice");
    }
}
