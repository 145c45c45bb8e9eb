//! IRCv3 `draft/chathistory` as far as it is text: the `CHATHISTORY` command parsed into a
//! request, message ids (stable per room and number), and `server-time` timestamps both
//! ways.

use crate::event::{RoomName, Seq};

/// The most messages one request may ask for (`CHATHISTORY=500` in ISUPPORT).
pub const MAX_LIMIT: usize = 500;

/// Where a request starts or ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `*`: the newest end (`LATEST` only).
    Newest,
    /// `msgid=…`: a message of the room, by number.
    Message(Seq),
    /// `timestamp=…`, in milliseconds since the Unix epoch.
    Time(i64),
}

/// A parsed `CHATHISTORY` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `LATEST target <*|ref> limit`: the newest messages, after `ref` when given.
    Latest(String, Reference, usize),
    /// `BEFORE target ref limit`.
    Before(String, Reference, usize),
    /// `AFTER target ref limit`.
    After(String, Reference, usize),
    /// `AROUND target ref limit`.
    Around(String, Reference, usize),
    /// `BETWEEN target ref ref limit`.
    Between(String, Reference, Reference, usize),
    /// `TARGETS timestamp timestamp limit`: the rooms with messages between the two.
    Targets(i64, i64, usize),
}

/// Why a `CHATHISTORY` command was refused: `FAIL CHATHISTORY <code> <params> :<text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `INVALID_PARAMS`, `INVALID_TARGET`, `MESSAGE_ERROR` or `UNKNOWN_COMMAND`.
    pub code: &'static str,
    /// What the failure is about (the subcommand, or it and the target).
    pub context: Vec<String>,
    /// The human text.
    pub text: &'static str,
}

fn refused(code: &'static str, context: &[&str], text: &'static str) -> Refused {
    Refused {
        code,
        context: context.iter().map(|s| (*s).to_owned()).collect(),
        text,
    }
}

/// Parses `CHATHISTORY`'s parameters. A `msgid` names a message of the target room (one of
/// another room, or not one of ours, is `MESSAGE_ERROR`); the limit is 1 to [`MAX_LIMIT`].
pub fn parse(params: &[&str]) -> Result<Request, Refused> {
    let Some(sub) = params.first() else {
        return Err(refused("INVALID_PARAMS", &["*"], "Missing parameters"));
    };
    let sub_upper = sub.to_ascii_uppercase();
    let want = if sub_upper == "BETWEEN" { 5 } else { 4 };
    if !matches!(
        sub_upper.as_str(),
        "LATEST" | "BEFORE" | "AFTER" | "AROUND" | "BETWEEN" | "TARGETS"
    ) {
        return Err(refused("UNKNOWN_COMMAND", &[sub], "Unknown subcommand"));
    }
    if params.len() < want {
        return Err(refused("INVALID_PARAMS", &[sub], "Missing parameters"));
    }
    let limit = params[want - 1]
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| refused("INVALID_PARAMS", &[sub], "Invalid limit"))?;
    if sub_upper == "TARGETS" {
        let time = |p: &str| match reference(p, None) {
            Ok(Reference::Time(t)) => Ok(t),
            _ => Err(refused("INVALID_PARAMS", &[sub], "Invalid timestamp")),
        };
        return Ok(Request::Targets(time(params[1])?, time(params[2])?, limit));
    }
    let target = params[1];
    let room = RoomName::parse(target)
        .map_err(|_| refused("INVALID_TARGET", &[sub, target], "Invalid target"))?;
    let at = |p: &str| {
        reference(p, Some(&room)).map_err(|code| {
            let text = if code == "MESSAGE_ERROR" {
                "Unknown message id"
            } else {
                "Invalid message reference"
            };
            refused(code, &[sub, target], text)
        })
    };
    let first = at(params[2])?;
    if first == Reference::Newest && sub_upper != "LATEST" {
        return Err(refused(
            "INVALID_PARAMS",
            &[sub, target],
            "Invalid message reference",
        ));
    }
    let name = target.to_owned();
    Ok(match sub_upper.as_str() {
        "LATEST" => Request::Latest(name, first, limit),
        "BEFORE" => Request::Before(name, first, limit),
        "AFTER" => Request::After(name, first, limit),
        "AROUND" => Request::Around(name, first, limit),
        _ => {
            let second = at(params[3])?;
            if second == Reference::Newest {
                return Err(refused(
                    "INVALID_PARAMS",
                    &[sub, target],
                    "Invalid message reference",
                ));
            }
            Request::Between(name, first, second, limit)
        }
    })
}

/// `*`, `msgid=…` (of `room` when one is given) or `timestamp=…`; the failure code otherwise.
fn reference(text: &str, room: Option<&RoomName>) -> Result<Reference, &'static str> {
    if text == "*" {
        return Ok(Reference::Newest);
    }
    if let Some(id) = text.strip_prefix("msgid=") {
        return match (parse_msgid(id), room) {
            (Some((of, seq)), Some(room)) if of == *room => Ok(Reference::Message(seq)),
            _ => Err("MESSAGE_ERROR"),
        };
    }
    if let Some(time) = text.strip_prefix("timestamp=") {
        return parse_time(time)
            .map(Reference::Time)
            .ok_or("INVALID_PARAMS");
    }
    Err("INVALID_PARAMS")
}

/// A message's id: its room without `#`, `/` and its number (`dev/42`); the same live, in
/// playback and in `CHATHISTORY`. (`/` cannot be in a room name.)
pub fn msgid(room: &RoomName, seq: Seq) -> String {
    format!("{}/{seq}", room.as_str().trim_start_matches('#'))
}

/// The room and number of a [`msgid`].
pub fn parse_msgid(id: &str) -> Option<(RoomName, Seq)> {
    let (room, seq) = id.split_once('/')?;
    let seq = seq.parse().ok().filter(|s| *s > 0)?;
    Some((RoomName::parse(&format!("#{room}")).ok()?, seq))
}

/// `server-time`: `YYYY-MM-DDThh:mm:ss.sssZ` for milliseconds since the Unix epoch.
pub fn server_time(at_ms: i64) -> String {
    let at_ms = at_ms.max(0);
    let secs = crate::report::utc((at_ms / 1000) as u64);
    format!("{}.{:03}Z", secs.trim_end_matches('Z'), at_ms % 1000)
}

/// A `server-time` timestamp back to milliseconds (`YYYY-MM-DDThh:mm:ss[.fff…]Z`, at least the
/// seconds; digits past milliseconds are ignored).
pub fn parse_time(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let (date, clock) = text.split_once('T')?;
    let mut date = date.splitn(3, '-');
    let (year, month, day): (i64, i64, i64) = (
        date.next()?.parse().ok()?,
        date.next()?.parse().ok()?,
        date.next()?.parse().ok()?,
    );
    let (clock, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut clock = clock.splitn(3, ':');
    let (hour, minute, second): (i64, i64, i64) = (
        clock.next()?.parse().ok()?,
        clock.next()?.parse().ok()?,
        clock.next()?.parse().ok()?,
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
        || hour < 0
        || minute < 0
        || second < 0
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let millis: i64 = format!("{fraction:0<3}")[..3].parse().ok()?;
    // Days from civil (proleptic Gregorian), the inverse of `report::utc`.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> RoomName {
        RoomName::parse("#dev").unwrap()
    }

    #[test]
    fn timestamps_go_both_ways() {
        let at = 1_796_126_282_123;
        let text = server_time(at);
        assert_eq!(text, "2026-12-01T11:58:02.123Z");
        assert_eq!(parse_time(&text), Some(at));
        assert_eq!(parse_time("2000-02-29T01:01:01Z"), Some(951_786_061_000));
        assert_eq!(parse_time("2000-02-29T01:01:01.5Z"), Some(951_786_061_500));
        assert_eq!(parse_time("1970-01-01T00:00:00.000999Z"), Some(0));
        for bad in [
            "2026-12-01 12:38:02Z",
            "2026-13-01T00:00:00Z",
            "2026-12-01T00:00:00",
            "x",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_msgid_names_its_room_and_number() {
        let id = msgid(&RoomName::parse("#my-room.2").unwrap(), 42);
        assert_eq!(id, "my-room.2/42");
        assert_eq!(
            parse_msgid(&id),
            Some((RoomName::parse("#my-room.2").unwrap(), 42))
        );
        for bad in ["dev", "dev/", "dev/0", "dev/x", "/4", "DEV!/4"] {
            assert_eq!(parse_msgid(bad), None, "{bad}");
        }
    }

    #[test]
    fn each_subcommand_parses_with_its_references() {
        let id = format!("msgid={}", msgid(&dev(), 7));
        assert_eq!(
            parse(&["LATEST", "#dev", "*", "50"]),
            Ok(Request::Latest("#dev".into(), Reference::Newest, 50))
        );
        assert_eq!(
            parse(&["before", "#dev", &id, "10"]),
            Ok(Request::Before("#dev".into(), Reference::Message(7), 10))
        );
        assert_eq!(
            parse(&["AFTER", "#dev", "timestamp=1970-01-01T00:00:01.000Z", "500"]),
            Ok(Request::After("#dev".into(), Reference::Time(1000), 500))
        );
        assert_eq!(
            parse(&[
                "BETWEEN",
                "#dev",
                &id,
                "timestamp=1970-01-01T00:00:00Z",
                "1"
            ]),
            Ok(Request::Between(
                "#dev".into(),
                Reference::Message(7),
                Reference::Time(0),
                1
            ))
        );
        assert_eq!(
            parse(&[
                "TARGETS",
                "timestamp=1970-01-01T00:00:00Z",
                "timestamp=1970-01-01T00:00:02Z",
                "5"
            ]),
            Ok(Request::Targets(0, 2000, 5))
        );
    }

    #[test]
    fn bad_requests_fail_with_the_right_code() {
        let code = |params: &[&str]| parse(params).unwrap_err().code;
        assert_eq!(code(&[]), "INVALID_PARAMS");
        assert_eq!(code(&["FOO", "#dev", "*", "1"]), "UNKNOWN_COMMAND");
        assert_eq!(code(&["LATEST", "#dev", "*"]), "INVALID_PARAMS");
        assert_eq!(code(&["LATEST", "#dev", "*", "0"]), "INVALID_PARAMS");
        assert_eq!(code(&["LATEST", "#dev", "*", "501"]), "INVALID_PARAMS");
        assert_eq!(code(&["LATEST", "bob", "*", "5"]), "INVALID_TARGET");
        assert_eq!(code(&["BEFORE", "#dev", "*", "5"]), "INVALID_PARAMS");
        assert_eq!(
            code(&["BEFORE", "#dev", "msgid=ops/3", "5"]),
            "MESSAGE_ERROR"
        );
        assert_eq!(
            code(&["BEFORE", "#dev", "msgid=nonsense", "5"]),
            "MESSAGE_ERROR"
        );
        assert_eq!(
            code(&["BEFORE", "#dev", "timestamp=yesterday", "5"]),
            "INVALID_PARAMS"
        );
        assert_eq!(code(&["TARGETS", "*", "*", "5"]), "INVALID_PARAMS");
        let failed = parse(&["LATEST", "bob", "*", "5"]).unwrap_err();
        assert_eq!(failed.context, ["LATEST", "bob"]);
    }
}
