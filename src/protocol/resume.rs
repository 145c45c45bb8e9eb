//! Numbered lines, which a client asks for with `/resume` at the `Username:` prompt: the
//! request (with where the client's display of each room ends), and the `@#room:SEQ ` number
//! in front of every line that carries a stored message. Clients that do not ask never see a
//! number (their bytes are v1's).

use crate::event::{RoomName, Seq};

/// The word that asks for numbered lines.
const RESUME: &str = "/resume";

/// What a `/resume` line asked for: numbered lines, and the catch-up of each named room from
/// after the number the client last showed.
pub type ResumeFrom = Vec<(RoomName, Seq)>;

/// Reads a line sent at the `Username:` prompt: `None` when it is not `/resume` (it is a
/// username), `Some(Err(()))` when it is `/resume` with arguments that are not `#ROOM SEQ`
/// pairs, else the pairs (a room named twice counts once, its last number).
pub fn parse_resume(line: &str) -> Option<Result<ResumeFrom, ()>> {
    let mut words = line.split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case(RESUME) {
        return None;
    }
    let mut from: ResumeFrom = Vec::new();
    loop {
        let Some(room) = words.next() else {
            return Some(Ok(from));
        };
        let seq = words
            .next()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<Seq>().ok());
        let (Ok(room), Some(seq)) = (RoomName::parse(room), seq) else {
            return Some(Err(()));
        };
        from.retain(|(r, _)| *r != room);
        from.push((room, seq));
    }
}

/// The number of a stored message, written in front of its line: `@#dev:42 `.
pub fn number(room: &RoomName, seq: Seq) -> impl std::fmt::Display + '_ {
    struct Number<'a>(&'a RoomName, Seq);
    impl std::fmt::Display for Number<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "@{}:{} ", self.0, self.1)
        }
    }
    Number(room, seq)
}

/// Splits a numbered line (without its LF) into its room, number and the line as v1 shows
/// it; `None` for a line without a number.
pub fn split_number(line: &str) -> Option<(&str, Seq, &str)> {
    let rest = line.strip_prefix('@')?;
    let (room, rest) = rest.split_once(':')?;
    let (seq, text) = rest.split_once(' ')?;
    if !room.starts_with('#') || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((room, seq.parse().ok()?, text))
}

/// The `/resume` line a client sends to continue after the numbers it showed.
pub fn resume_line<'a>(shown: impl IntoIterator<Item = (&'a str, Seq)>) -> String {
    let mut line = RESUME.to_owned();
    for (room, seq) in shown {
        line.push_str(&format!(" {room} {seq}"));
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    #[test]
    fn a_username_is_not_a_resume_line() {
        assert_eq!(parse_resume("alice"), None);
        assert_eq!(parse_resume("/resumed"), None);
        assert_eq!(parse_resume(""), None);
    }

    #[test]
    fn resume_alone_asks_for_numbers_only() {
        assert_eq!(parse_resume("/resume"), Some(Ok(vec![])));
        assert_eq!(parse_resume("/RESUME "), Some(Ok(vec![])));
    }

    #[test]
    fn pairs_are_read_and_a_repeated_room_keeps_its_last_number() {
        assert_eq!(
            parse_resume("/resume #lobby 120 #Dev 45 #lobby 121"),
            Some(Ok(vec![(room("#dev"), 45), (room("#lobby"), 121)]))
        );
    }

    #[test]
    fn anything_but_pairs_is_a_usage_error() {
        for bad in [
            "/resume #dev",
            "/resume dev 1",
            "/resume #dev -1",
            "/resume #dev +1",
            "/resume #dev 1x",
            "/resume #dev 99999999999999999999999",
            "/resume 1 #dev",
        ] {
            assert_eq!(parse_resume(bad), Some(Err(())), "{bad}");
        }
    }

    #[test]
    fn a_number_written_is_read_back() {
        let line = format!("{}[#dev] <bob> hi", number(&room("#dev"), 42));
        assert_eq!(line, "@#dev:42 [#dev] <bob> hi");
        assert_eq!(split_number(&line), Some(("#dev", 42, "[#dev] <bob> hi")));
    }

    #[test]
    fn lines_without_a_number_are_not_split() {
        for line in [
            "<bob> hi",
            "*** bob joined",
            "@#dev: x",
            "@dev:1 x",
            "@#dev:1",
        ] {
            assert_eq!(split_number(line), None, "{line}");
        }
    }

    #[test]
    fn the_resume_line_lists_each_room() {
        assert_eq!(
            resume_line([("#lobby", 3), ("#dev", 9)]),
            "/resume #lobby 3 #dev 9\n"
        );
        assert_eq!(resume_line([]), "/resume\n");
    }
}
