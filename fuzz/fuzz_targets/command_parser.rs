//! The command parser on arbitrary lines: no panic, and every part it returns is a slice of
//! the line with the shape the session relies on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlschat::protocol::{Command, parse_command};

fuzz_target!(|line: &str| {
    match parse_command(line) {
        Command::Whisper { to, text } => {
            assert!(!to.contains(' '));
            assert!(!text.trim().is_empty());
            assert!(line.contains(to) && line.contains(text));
        }
        Command::Say(text) | Command::Emote(text) => assert!(line.contains(text)),
        Command::Quit(Some(reason)) => assert!(!reason.is_empty()),
        Command::Nothing => assert!(line.trim().is_empty()),
        _ => {}
    }
});
