//! The lines a registered IRC connection gets first, without I/O: 001–004, the ISUPPORT
//! tokens (005), LUSERS and the MOTD (the server's greeting lines).

use super::message::{numeric, numeric_words};

/// ISUPPORT tokens per 005 line (clients accept up to 13 besides the nick and the text).
const TOKENS_PER_LINE: usize = 13;

/// What the welcome says.
#[derive(Debug, Clone, Copy)]
pub struct Welcome<'a> {
    /// `irc_server_name`: the source of server lines and the host of every mask.
    pub server: &'a str,
    /// The account name: the nick.
    pub nick: &'a str,
    /// The user part of the connection's mask.
    pub user: &'a str,
    /// The server's version (`CARGO_PKG_VERSION`).
    pub version: &'a str,
    /// When the server started, as shown in 003.
    pub created: &'a str,
    /// `max_rooms_per_user` (`CHANLIMIT` counts #lobby too; `JOIN`/`PART` targets).
    pub max_rooms_per_user: usize,
}

/// The ISUPPORT tokens, in the order 005 lists them.
pub fn isupport(w: &Welcome<'_>) -> Vec<String> {
    let per_command = w.max_rooms_per_user.max(1);
    vec![
        "CASEMAPPING=ascii".to_owned(),
        "CHANTYPES=#".to_owned(),
        "CHANNELLEN=33".to_owned(),
        "NICKLEN=32".to_owned(),
        format!("CHANLIMIT=#:{}", w.max_rooms_per_user + 1),
        "CHANMODES=,,,n".to_owned(),
        "PREFIX=".to_owned(),
        "MODES=0".to_owned(),
        format!("NETWORK={}", w.server),
        "UTF8ONLY".to_owned(),
        "WHOX".to_owned(),
        "ELIST=MNU".to_owned(),
        "SAFELIST".to_owned(),
        "MSGREFTYPES=msgid,timestamp".to_owned(),
        "CHATHISTORY=500".to_owned(),
        "AWAYLEN=390".to_owned(),
        format!(
            "TARGMAX=PRIVMSG:1,NOTICE:1,TAGMSG:1,NAMES:1,WHOIS:1,LIST:1,JOIN:{per_command},PART:{per_command}"
        ),
        "draft/ACCOUNTREQUIRED".to_owned(),
    ]
}

/// 001–005 for the connection.
pub fn registration(w: &Welcome<'_>) -> Vec<String> {
    let mask = format!("{}!~{}@{}", w.nick, w.user, w.server);
    let version = format!("tlschat-{}", w.version);
    let text = |n: &str, words: &str| numeric(w.server, w.nick, n, &[words]);
    let mut lines = vec![
        text("001", &format!("Welcome to {}, {mask}", w.server)),
        text(
            "002",
            &format!("Your host is {}, running version {version}", w.server),
        ),
        text("003", &format!("This server was created {}", w.created)),
    ];
    lines.push(numeric_words(
        w.server,
        w.nick,
        "004",
        &[w.server, &version, "r", "n"],
    ));
    let tokens = isupport(w);
    for chunk in tokens.chunks(TOKENS_PER_LINE) {
        let mut params: Vec<&str> = chunk.iter().map(String::as_str).collect();
        params.push("are supported by this server");
        lines.push(numeric(w.server, w.nick, "005", &params));
    }
    lines
}

/// LUSERS: `online` sessions on every node, `rooms` in use.
pub fn lusers(server: &str, nick: &str, online: usize, rooms: usize) -> Vec<String> {
    let line = |n: &str, params: &[&str]| numeric(server, nick, n, params);
    vec![
        line(
            "251",
            &[&format!(
                "There are {online} users and 0 invisible on 1 servers"
            )],
        ),
        line("254", &[&rooms.to_string(), "channels formed"]),
        line("255", &[&format!("I have {online} clients and 0 servers")]),
    ]
}

/// The MOTD: the server's greeting lines (422 when it has none).
pub fn motd(server: &str, nick: &str, greeting: &[&str]) -> Vec<String> {
    let line = |n: &str, text: &str| numeric(server, nick, n, &[text]);
    if greeting.is_empty() {
        return vec![line("422", "MOTD File is missing")];
    }
    let mut lines = vec![line("375", &format!("- {server} Message of the day - "))];
    lines.extend(greeting.iter().map(|g| line("372", &format!("- {g}"))));
    lines.push(line("376", "End of /MOTD command."));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn welcome() -> Welcome<'static> {
        Welcome {
            server: "chat.example",
            nick: "alice",
            user: "al",
            version: "1.2.3",
            created: "2026-12-08",
            max_rooms_per_user: 20,
        }
    }

    #[test]
    fn registration_sends_001_to_004_and_the_tokens_in_005_lines_of_at_most_13() {
        let lines = registration(&welcome());
        assert_eq!(
            lines[0],
            ":chat.example 001 alice :Welcome to chat.example, alice!~al@chat.example\r\n"
        );
        assert_eq!(
            lines[1],
            ":chat.example 002 alice :Your host is chat.example, running version tlschat-1.2.3\r\n"
        );
        assert_eq!(
            lines[3],
            ":chat.example 004 alice chat.example tlschat-1.2.3 r n\r\n"
        );
        let tokens: Vec<&str> = lines[4..]
            .iter()
            .flat_map(|l| {
                let body = l.strip_prefix(":chat.example 005 alice ").unwrap();
                let (tokens, text) = body.split_once(" :").unwrap();
                assert_eq!(text, "are supported by this server\r\n");
                assert!(tokens.split(' ').count() <= TOKENS_PER_LINE);
                tokens.split(' ')
            })
            .collect();
        assert_eq!(tokens.len(), 18);
        for token in [
            "CASEMAPPING=ascii",
            "CHANLIMIT=#:21",
            "NETWORK=chat.example",
            "TARGMAX=PRIVMSG:1,NOTICE:1,TAGMSG:1,NAMES:1,WHOIS:1,LIST:1,JOIN:20,PART:20",
            "draft/ACCOUNTREQUIRED",
            "PREFIX=",
        ] {
            assert!(tokens.contains(&token), "{token} in {tokens:?}");
        }
    }

    #[test]
    fn the_motd_is_the_greeting_or_422() {
        assert_eq!(
            motd("s", "alice", &["Hello", "Be nice"]),
            [
                ":s 375 alice :- s Message of the day - \r\n",
                ":s 372 alice :- Hello\r\n",
                ":s 372 alice :- Be nice\r\n",
                ":s 376 alice :End of /MOTD command.\r\n",
            ]
        );
        assert_eq!(
            motd("s", "alice", &[]),
            [":s 422 alice :MOTD File is missing\r\n"]
        );
    }

    #[test]
    fn lusers_counts_sessions_and_rooms() {
        assert_eq!(
            lusers("s", "alice", 7, 3),
            [
                ":s 251 alice :There are 7 users and 0 invisible on 1 servers\r\n",
                ":s 254 alice 3 :channels formed\r\n",
                ":s 255 alice :I have 7 clients and 0 servers\r\n",
            ]
        );
    }
}
