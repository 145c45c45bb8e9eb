//! The numeric replies that list members and rooms, without I/O: NAMES (353/366), WHO (352,
//! WHOX 354, 315), WHOIS (311, 319, 312, 671, 330, 301, 318; 401), LIST (321–323) and AWAY
//! (305/306). Every mask's host is the server's name: no member's address is ever shown.

use super::message::{self, MAX_BODY_BYTES};

/// A member as these replies show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'a> {
    /// The nick (the account name as created).
    pub nick: &'a str,
    /// The user part of its mask.
    pub user: &'a str,
    /// Its real name.
    pub realname: &'a str,
    /// Its away message, if it is away.
    pub away: Option<&'a str>,
}

/// Who asks, and which server answers.
#[derive(Debug, Clone, Copy)]
pub struct To<'a> {
    /// `irc_server_name`.
    pub server: &'a str,
    /// The asking connection's nick.
    pub nick: &'a str,
}

impl To<'_> {
    fn text(&self, numeric: &str, params: &[&str]) -> String {
        message::numeric(self.server, self.nick, numeric, params)
    }

    fn words(&self, numeric: &str, params: &[&str]) -> String {
        message::numeric_words(self.server, self.nick, numeric, params)
    }
}

/// `NAMES #room`: 353 lines of nicks (no prefixes: rooms have no operators), each within
/// IRC's line length, then 366.
pub fn names(to: To<'_>, room: &str, nicks: &[&str]) -> Vec<String> {
    let mut lines = Vec::new();
    let head = to.text("353", &["=", room, ""]).len();
    let mut list = String::new();
    for nick in nicks {
        if !list.is_empty() && head + list.len() + 1 + nick.len() > MAX_BODY_BYTES {
            lines.push(to.text("353", &["=", room, &list]));
            list.clear();
        }
        if !list.is_empty() {
            list.push(' ');
        }
        list.push_str(nick);
    }
    if !list.is_empty() {
        lines.push(to.text("353", &["=", room, &list]));
    }
    lines.push(to.text("366", &[room, "End of /NAMES list"]));
    lines
}

/// `WHO <mask>`: one 352 per member (`H` here, `G` away; hop count 0), then 315. `room` is
/// the channel field (`*` for a nick).
pub fn who(to: To<'_>, mask: &str, room: &str, members: &[Member<'_>]) -> Vec<String> {
    let mut lines: Vec<String> = members
        .iter()
        .map(|m| {
            let flags = if m.away.is_some() { "G" } else { "H" };
            to.text(
                "352",
                &[
                    room,
                    m.user,
                    to.server,
                    to.server,
                    m.nick,
                    flags,
                    &format!("0 {}", m.realname),
                ],
            )
        })
        .collect();
    lines.push(to.text("315", &[mask, "End of /WHO list"]));
    lines
}

/// `WHO <mask> %fields[,token]` (WHOX): one 354 per member with the fields asked for, in
/// WHOX's order (`t c u i h s n f d l a o r`); the account is the nick, the address is hidden
/// (`255.255.255.255`), idle time 0, no operator level. Then 315.
pub fn whox(
    to: To<'_>,
    mask: &str,
    room: &str,
    fields: &str,
    members: &[Member<'_>],
) -> Vec<String> {
    let (letters, token) = fields.split_once(',').unwrap_or((fields, ""));
    let mut lines = Vec::new();
    for m in members {
        let flags = if m.away.is_some() { "G" } else { "H" };
        let mut params: Vec<&str> = Vec::new();
        for field in [
            't', 'c', 'u', 'i', 'h', 's', 'n', 'f', 'd', 'l', 'a', 'o', 'r',
        ] {
            if !letters.contains(field) {
                continue;
            }
            params.push(match field {
                't' => token,
                'c' => room,
                'u' => m.user,
                'i' => "255.255.255.255",
                'h' | 's' => to.server,
                'n' | 'a' => m.nick,
                'f' => flags,
                'd' | 'l' => "0",
                'o' => "n/a",
                _ => m.realname,
            });
        }
        lines.push(if letters.contains('r') {
            to.text("354", &params)
        } else {
            to.words("354", &params)
        });
    }
    lines.push(to.text("315", &[mask, "End of /WHO list"]));
    lines
}

/// `WHOIS <nick>`: who it is, its rooms, the server, TLS, its account and away message, then
/// 318; `None` (not online) gives 401 and 318.
pub fn whois(to: To<'_>, asked: &str, found: Option<(Member<'_>, &[&str])>) -> Vec<String> {
    let Some((m, rooms)) = found else {
        return vec![
            to.text("401", &[asked, "No such nick/channel"]),
            to.text("318", &[asked, "End of /WHOIS list"]),
        ];
    };
    let mut lines = vec![to.text("311", &[m.nick, m.user, to.server, "*", m.realname])];
    if !rooms.is_empty() {
        lines.push(to.text("319", &[m.nick, &rooms.join(" ")]));
    }
    lines.push(to.text("312", &[m.nick, to.server, "tlschat"]));
    lines.push(to.text("671", &[m.nick, "is using a secure connection"]));
    lines.push(to.text("330", &[m.nick, m.nick, "is logged in as"]));
    if let Some(away) = m.away {
        lines.push(to.text("301", &[m.nick, away]));
    }
    lines.push(to.text("318", &[m.nick, "End of /WHOIS list"]));
    lines
}

/// `LIST`: 321, one 322 per room with its member count (no topics), 323.
pub fn list(to: To<'_>, rooms: &[(&str, usize)]) -> Vec<String> {
    let mut lines = vec![to.text("321", &["Channel", "Users  Name"])];
    lines.extend(
        rooms
            .iter()
            .map(|(room, count)| to.text("322", &[room, &count.to_string(), ""])),
    );
    lines.push(to.text("323", &["End of /LIST"]));
    lines
}

/// `AWAY`: 306 when now away, 305 when back.
pub fn away(to: To<'_>, away: bool) -> String {
    if away {
        to.text("306", &["You have been marked as being away"])
    } else {
        to.text("305", &["You are no longer marked as being away"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TO: To<'static> = To {
        server: "s",
        nick: "alice",
    };

    fn bob(away: Option<&'static str>) -> Member<'static> {
        Member {
            nick: "bob",
            user: "b",
            realname: "Bob B",
            away,
        }
    }

    #[test]
    fn names_fit_lines_of_512_bytes_and_end_with_366() {
        assert_eq!(
            names(TO, "#dev", &["alice", "bob"]),
            [
                ":s 353 alice = #dev :alice bob\r\n",
                ":s 366 alice #dev :End of /NAMES list\r\n"
            ]
        );
        let many: Vec<String> = (0..200).map(|i| format!("member{i:03}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let lines = names(TO, "#dev", &refs);
        assert!(lines.len() > 3);
        let mut seen = Vec::new();
        for line in &lines[..lines.len() - 1] {
            assert!(line.len() <= MAX_BODY_BYTES, "{}", line.len());
            let list = line
                .strip_prefix(":s 353 alice = #dev :")
                .unwrap()
                .trim_end();
            seen.extend(list.split(' ').map(str::to_owned));
        }
        assert_eq!(seen, many);
    }

    #[test]
    fn who_shows_the_server_as_every_host_and_g_for_away() {
        assert_eq!(
            who(TO, "#dev", "#dev", &[bob(None), bob(Some("lunch"))]),
            [
                ":s 352 alice #dev b s s bob H :0 Bob B\r\n",
                ":s 352 alice #dev b s s bob G :0 Bob B\r\n",
                ":s 315 alice #dev :End of /WHO list\r\n",
            ]
        );
    }

    #[test]
    fn whox_gives_the_fields_asked_for_with_the_account_as_the_nick() {
        assert_eq!(
            whox(TO, "#dev", "#dev", "tcuhnfar,42", &[bob(None)]),
            [
                ":s 354 alice 42 #dev b s bob H bob :Bob B\r\n",
                ":s 315 alice #dev :End of /WHO list\r\n",
            ]
        );
        assert_eq!(
            whox(TO, "bob", "*", "na", &[bob(None)])[0],
            ":s 354 alice bob bob\r\n"
        );
    }

    #[test]
    fn whois_lists_rooms_account_and_away_or_401() {
        let lines = whois(TO, "BOB", Some((bob(Some("lunch")), &["#lobby", "#dev"])));
        assert_eq!(
            lines,
            [
                ":s 311 alice bob b s * :Bob B\r\n",
                ":s 319 alice bob :#lobby #dev\r\n",
                ":s 312 alice bob s :tlschat\r\n",
                ":s 671 alice bob :is using a secure connection\r\n",
                ":s 330 alice bob bob :is logged in as\r\n",
                ":s 301 alice bob :lunch\r\n",
                ":s 318 alice bob :End of /WHOIS list\r\n",
            ]
        );
        assert_eq!(
            whois(TO, "carol", None),
            [
                ":s 401 alice carol :No such nick/channel\r\n",
                ":s 318 alice carol :End of /WHOIS list\r\n",
            ]
        );
    }

    #[test]
    fn list_and_away() {
        assert_eq!(
            list(TO, &[("#dev", 3)]),
            [
                ":s 321 alice Channel :Users  Name\r\n",
                ":s 322 alice #dev 3 :\r\n",
                ":s 323 alice :End of /LIST\r\n",
            ]
        );
        assert_eq!(
            away(TO, true),
            ":s 306 alice :You have been marked as being away\r\n"
        );
        assert_eq!(
            away(TO, false),
            ":s 305 alice :You are no longer marked as being away\r\n"
        );
    }
}
