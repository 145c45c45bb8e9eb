//! An IRC connection's registration, without I/O: capability negotiation (`CAP`), login by
//! SASL PLAIN or EXTERNAL (`AUTHENTICATE`) or by `PASS`, and `NICK`/`USER`, in any order IRCv3
//! allows. It answers with lines to send and, where a credential must be checked, asks its
//! caller to check it (argon2 runs elsewhere) and waits for the answer. Nobody registers
//! without logging in.

use base64::Engine as _;
use secrecy::SecretString;

use super::message::{Message, write_text};

/// What the server offers in `CAP LS` (`sasl` with its mechanisms under CAP 302).
pub const CAPABILITIES: [&str; 12] = [
    "sasl",
    "server-time",
    "message-tags",
    "echo-message",
    "batch",
    "labeled-response",
    "account-tag",
    "extended-join",
    "away-notify",
    "cap-notify",
    "standard-replies",
    "draft/chathistory",
];

/// SASL mechanisms, as `sasl=` lists them and 908 names them.
const MECHANISMS: &str = "PLAIN,EXTERNAL";
/// An `AUTHENTICATE` chunk is at most this long; a chunk this long means more follow.
const SASL_CHUNK: usize = 400;
/// The most a SASL payload may take, in base64 (three chunks: room for a long password).
const MAX_SASL_BASE64: usize = 3 * SASL_CHUNK;
/// Failed logins on one connection before it is closed.
const MAX_FAILURES: u8 = 3;
/// What a refused login hears, whatever the reason (unknown account, wrong password,
/// disabled account, invalid name): the same words.
const SASL_FAILED: &str = "SASL authentication failed";

/// How a credential came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// SASL PLAIN.
    Sasl,
    /// `PASS`, for the account named by `NICK`.
    Pass,
}

/// What the connection does next.
#[derive(Debug)]
pub enum Action {
    /// Send this line (CR LF included).
    Send(String),
    /// Check `password` for `account` (any letter case) and call
    /// [`Registration::password_checked`] with the account's name as created, or `None`.
    CheckPassword {
        /// The account named.
        account: String,
        /// The password given.
        password: SecretString,
        /// Where it came from.
        via: Via,
    },
    /// Find the owner of the client's certificate and call
    /// [`Registration::certificate_checked`].
    CheckCertificate,
    /// Send this last line and close.
    Close(String),
    /// Registration is complete.
    Registered(Registered),
}

/// A registered connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The account's name as created: the connection's nick.
    pub account: String,
    /// The user part of its mask: `USER`'s first parameter when it is at most 10 of
    /// `A-Za-z0-9_.-`, else the account name.
    pub user: String,
    /// The real name from `USER`.
    pub realname: String,
    /// The capabilities the client enabled.
    pub caps: Vec<&'static str>,
}

/// A SASL exchange in progress.
enum Sasl {
    Plain(String),
    External,
}

/// One connection's registration.
pub struct Registration {
    server: String,
    nick: Option<String>,
    user: Option<(String, String)>,
    pass: Option<SecretString>,
    /// `CAP LS` or `REQ` was sent and `CAP END` not yet: registration waits.
    negotiating: bool,
    cap_302: bool,
    caps: Vec<&'static str>,
    sasl: Option<Sasl>,
    /// A credential is being checked.
    checking: Option<Via>,
    failures: u8,
    account: Option<String>,
    done: bool,
}

impl Registration {
    /// A new connection to the server named `server` (the source of its lines).
    pub fn new(server: &str) -> Self {
        Registration {
            server: server.to_owned(),
            nick: None,
            user: None,
            pass: None,
            negotiating: false,
            cap_302: false,
            caps: Vec::new(),
            sasl: None,
            checking: None,
            failures: 0,
            account: None,
            done: false,
        }
    }

    /// The nick numerics are addressed to (`*` before `NICK`).
    fn target(&self) -> &str {
        self.nick.as_deref().unwrap_or("*")
    }

    /// A line from the server: `:SERVER COMMAND params… :last`.
    fn line(&self, command: &str, params: &[&str]) -> Action {
        let mut out = String::new();
        write_text(&mut out, &[], Some(&self.server), command, params);
        Action::Send(out)
    }

    /// A numeric reply to the client's nick.
    fn numeric(&self, code: &str, params: &[&str]) -> Action {
        let target = self.target().to_owned();
        let mut all = vec![target.as_str()];
        all.extend_from_slice(params);
        self.line(code, &all)
    }

    /// The capabilities the client has enabled (a registered client may change them with
    /// `CAP REQ`, which [`Registration::handle`] answers too).
    pub fn caps(&self) -> &[&'static str] {
        &self.caps
    }

    /// Takes one message from the client, before registration is complete.
    pub fn handle(&mut self, m: &Message<'_>) -> Vec<Action> {
        let command = m.command.to_ascii_uppercase();
        let param = |i: usize| m.params.get(i).copied();
        let mut out = Vec::new();
        match command.as_str() {
            "CAP" => self.cap(m, &mut out),
            "AUTHENTICATE" => self.authenticate(param(0).unwrap_or(""), &mut out),
            "PASS" => match param(0) {
                Some(password) => self.pass = Some(password.into()),
                None => out.push(self.numeric("461", &["PASS", "Not enough parameters"])),
            },
            "NICK" => match param(0).filter(|n| !n.is_empty()) {
                Some(nick) => {
                    self.nick = Some(nick.to_owned());
                    self.try_complete(&mut out);
                }
                None => out.push(self.numeric("431", &["No nickname given"])),
            },
            "USER" => match (param(0), param(3)) {
                (Some(user), Some(realname)) if !user.is_empty() && !realname.is_empty() => {
                    self.user = Some((user.to_owned(), realname.to_owned()));
                    self.try_complete(&mut out);
                }
                _ => out.push(self.numeric("461", &["USER", "Not enough parameters"])),
            },
            "PING" => {
                let token = param(0).unwrap_or("");
                let server = self.server.clone();
                out.push(self.line("PONG", &[&server, token]));
            }
            "PONG" => {}
            "QUIT" => out.push(Action::Close("ERROR :Closing link\r\n".to_owned())),
            _ => out.push(self.numeric("451", &["You have not registered"])),
        }
        out
    }

    fn cap(&mut self, m: &Message<'_>, out: &mut Vec<Action>) {
        let sub = m.params.first().map(|s| s.to_ascii_uppercase());
        let arg = m.params.get(1).copied().unwrap_or("");
        match sub.as_deref() {
            Some("LS") => {
                self.negotiating = !self.done;
                if arg.parse::<u32>().is_ok_and(|v| v >= 302) {
                    self.cap_302 = true;
                }
                let sasl = format!("sasl={MECHANISMS}");
                let list: Vec<&str> = CAPABILITIES
                    .iter()
                    .map(|c| {
                        if *c == "sasl" && self.cap_302 {
                            sasl.as_str()
                        } else {
                            c
                        }
                    })
                    .collect();
                out.push(self.numeric("CAP", &["LS", &list.join(" ")]));
            }
            Some("LIST") => {
                let list = self.caps.join(" ");
                out.push(self.numeric("CAP", &["LIST", &list]));
            }
            Some("REQ") => {
                self.negotiating = !self.done;
                let wanted: Vec<(bool, Option<&'static str>)> = arg
                    .split(' ')
                    .filter(|c| !c.is_empty())
                    .map(|c| {
                        let (off, name) = c.strip_prefix('-').map_or((false, c), |n| (true, n));
                        (off, CAPABILITIES.iter().copied().find(|k| *k == name))
                    })
                    .collect();
                if wanted.is_empty() || wanted.iter().any(|(_, known)| known.is_none()) {
                    out.push(self.numeric("CAP", &["NAK", arg]));
                    return;
                }
                for (off, cap) in wanted.into_iter().filter_map(|(o, c)| Some((o, c?))) {
                    self.caps.retain(|c| *c != cap);
                    if !off {
                        self.caps.push(cap);
                    }
                }
                out.push(self.numeric("CAP", &["ACK", arg]));
            }
            Some("END") => {
                self.negotiating = false;
                self.try_complete(out);
            }
            _ => {
                let sub = m.params.first().copied().unwrap_or("*");
                out.push(self.numeric("410", &[sub, "Invalid CAP command"]));
            }
        }
    }

    fn authenticate(&mut self, data: &str, out: &mut Vec<Action>) {
        if self.done || self.account.is_some() {
            out.push(self.numeric("907", &["You have already authenticated"]));
            return;
        }
        if self.checking.is_some() {
            return;
        }
        if data == "*" {
            self.sasl = None;
            out.push(self.numeric("906", &["SASL authentication aborted"]));
            return;
        }
        match &mut self.sasl {
            None => match data.to_ascii_uppercase().as_str() {
                "PLAIN" => {
                    self.sasl = Some(Sasl::Plain(String::new()));
                    out.push(Action::Send("AUTHENTICATE +\r\n".to_owned()));
                }
                "EXTERNAL" => {
                    self.sasl = Some(Sasl::External);
                    out.push(Action::Send("AUTHENTICATE +\r\n".to_owned()));
                }
                _ => {
                    out.push(self.numeric("908", &[MECHANISMS, "are available SASL mechanisms"]));
                    out.push(self.numeric("904", &[SASL_FAILED]));
                }
            },
            Some(Sasl::External) => {
                self.sasl = None;
                self.checking = Some(Via::Sasl);
                out.push(Action::CheckCertificate);
            }
            Some(Sasl::Plain(buffer)) => {
                if data.len() > SASL_CHUNK || buffer.len() + data.len() > MAX_SASL_BASE64 {
                    self.sasl = None;
                    out.push(self.numeric("905", &["SASL message too long"]));
                    return;
                }
                if data != "+" {
                    buffer.push_str(data);
                }
                if data.len() == SASL_CHUNK {
                    return;
                }
                let payload = std::mem::take(buffer);
                self.sasl = None;
                match plain_credentials(&payload) {
                    Some((account, password)) => {
                        self.checking = Some(Via::Sasl);
                        out.push(Action::CheckPassword {
                            account,
                            password,
                            via: Via::Sasl,
                        });
                    }
                    None => self.failed(out),
                }
            }
        }
    }

    /// A SASL login failed: 904, and the connection closes at the third.
    fn failed(&mut self, out: &mut Vec<Action>) {
        self.failures += 1;
        out.push(self.numeric("904", &[SASL_FAILED]));
        if self.failures >= MAX_FAILURES {
            out.push(Action::Close(
                "ERROR :Too many failed logins\r\n".to_owned(),
            ));
        }
    }

    /// The answer to [`Action::CheckPassword`]: the account's name as created, or `None`.
    pub fn password_checked(&mut self, account: Option<String>) -> Vec<Action> {
        let mut out = Vec::new();
        match (self.checking.take(), account) {
            (Some(Via::Sasl), Some(account)) => self.logged_in(account, &mut out),
            (Some(Via::Sasl), None) => self.failed(&mut out),
            (Some(Via::Pass), Some(account)) => {
                self.account = Some(account);
                self.try_complete(&mut out);
            }
            (Some(Via::Pass), None) => {
                out.push(self.line("464", &["*", "Password incorrect"]));
                out.push(Action::Close("ERROR :Password incorrect\r\n".to_owned()));
            }
            (None, _) => {}
        }
        out
    }

    /// The answer to [`Action::CheckCertificate`]: its owner's name, or `None`.
    pub fn certificate_checked(&mut self, account: Option<String>) -> Vec<Action> {
        self.password_checked(account)
    }

    fn logged_in(&mut self, account: String, out: &mut Vec<Action>) {
        let user = self.user.as_ref().map_or(account.as_str(), |(u, _)| u);
        let mask = format!(
            "{}!~{}@{}",
            self.target(),
            mask_user(user, &account),
            self.server
        );
        let said = format!("You are now logged in as {account}");
        out.push(self.numeric("900", &[&mask, &account, &said]));
        out.push(self.numeric("903", &["SASL authentication successful"]));
        self.account = Some(account);
        self.try_complete(out);
    }

    /// Completes registration once NICK and USER are in, negotiation is over and no check
    /// is out: logged in, or checking `PASS`, or refused.
    fn try_complete(&mut self, out: &mut Vec<Action>) {
        if self.done || self.negotiating || self.checking.is_some() {
            return;
        }
        let (Some(nick), Some((user, realname))) = (&self.nick, &self.user) else {
            return;
        };
        if let Some(account) = &self.account {
            self.done = true;
            out.push(Action::Registered(Registered {
                account: account.clone(),
                user: mask_user(user, account).to_owned(),
                realname: realname.clone(),
                caps: self.caps.clone(),
            }));
        } else if let Some(password) = self.pass.take() {
            self.checking = Some(Via::Pass);
            out.push(Action::CheckPassword {
                account: nick.clone(),
                password,
                via: Via::Pass,
            });
        } else {
            let text = "Log in with SASL or PASS (your nick is your account name)";
            out.push(self.line("FAIL", &["*", "ACCOUNT_REQUIRED", text]));
            out.push(Action::Close("ERROR :Account required\r\n".to_owned()));
        }
    }
}

/// `user` when it is at most 10 of `A-Za-z0-9_.-`, else `account`.
fn mask_user<'a>(user: &'a str, account: &'a str) -> &'a str {
    let fits = !user.is_empty()
        && user.len() <= 10
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if fits { user } else { account }
}

/// A PLAIN payload (`authzid NUL authcid NUL password`, base64): the account and password,
/// when the authorization identity is empty or the same account (any case).
fn plain_credentials(payload: &str) -> Option<(String, SecretString)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.splitn(3, '\0');
    let (authzid, authcid, password) = (parts.next()?, parts.next()?, parts.next()?);
    if authcid.is_empty() || (!authzid.is_empty() && !authzid.eq_ignore_ascii_case(authcid)) {
        return None;
    }
    Some((authcid.to_owned(), password.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    /// Feeds lines; returns what the registration did, lines as text.
    fn feed(r: &mut Registration, lines: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for line in lines {
            let m = Message::parse(line).unwrap();
            out.extend(r.handle(&m).into_iter().map(show));
        }
        out
    }

    fn show(a: Action) -> String {
        match a {
            Action::Send(line) => line.trim_end().to_owned(),
            Action::Close(line) => format!("close {}", line.trim_end()),
            Action::CheckPassword {
                account,
                password,
                via,
            } => format!("check {via:?} {account} {}", password.expose_secret()),
            Action::CheckCertificate => "check certificate".to_owned(),
            Action::Registered(r) => format!("registered {} {} {:?}", r.account, r.user, r.caps),
        }
    }

    fn plain(authzid: &str, authcid: &str, password: &str) -> String {
        base64::engine::general_purpose::STANDARD
            .encode(format!("{authzid}\0{authcid}\0{password}"))
    }

    #[test]
    fn sasl_plain_during_cap_negotiation_registers_after_cap_end() {
        let mut r = Registration::new("tlschat");
        let out = feed(
            &mut r,
            &["CAP LS 302", "NICK alice", "USER al 0 * :Alice A"],
        );
        assert_eq!(
            out,
            [
                ":tlschat CAP * LS :sasl=PLAIN,EXTERNAL server-time message-tags echo-message batch labeled-response account-tag extended-join away-notify cap-notify standard-replies draft/chathistory"
            ]
        );
        let out = feed(&mut r, &["CAP REQ :sasl server-time", "AUTHENTICATE PLAIN"]);
        assert_eq!(
            out,
            [":tlschat CAP alice ACK :sasl server-time", "AUTHENTICATE +"]
        );
        let out = feed(
            &mut r,
            &[&format!("AUTHENTICATE {}", plain("", "ALICE", "pw"))],
        );
        assert_eq!(out, ["check Sasl ALICE pw"]);
        let out: Vec<String> = r
            .password_checked(Some("alice".into()))
            .into_iter()
            .map(show)
            .collect();
        assert_eq!(
            out,
            [
                ":tlschat 900 alice alice!~al@tlschat alice :You are now logged in as alice",
                ":tlschat 903 alice :SASL authentication successful",
            ]
        );
        let out = feed(&mut r, &["CAP END"]);
        assert_eq!(out, [r#"registered alice al ["sasl", "server-time"]"#]);
    }

    #[test]
    fn a_failed_sasl_login_says_904_and_the_third_closes() {
        let mut r = Registration::new("tlschat");
        feed(&mut r, &["CAP LS", "NICK bob", "USER b 0 * :B"]);
        for attempt in 1..=3 {
            feed(&mut r, &["AUTHENTICATE PLAIN"]);
            let out = feed(
                &mut r,
                &[&format!("AUTHENTICATE {}", plain("", "bob", "bad"))],
            );
            assert_eq!(out, ["check Sasl bob bad"]);
            let out: Vec<String> = r.password_checked(None).into_iter().map(show).collect();
            let mut want = vec![":tlschat 904 bob :SASL authentication failed".to_owned()];
            if attempt == 3 {
                want.push("close ERROR :Too many failed logins".to_owned());
            }
            assert_eq!(out, want);
        }
    }

    #[test]
    fn a_plain_payload_for_someone_else_fails_without_a_check() {
        let mut r = Registration::new("tlschat");
        feed(&mut r, &["AUTHENTICATE PLAIN"]);
        let out = feed(
            &mut r,
            &[&format!("AUTHENTICATE {}", plain("carol", "bob", "pw"))],
        );
        assert_eq!(out, [":tlschat 904 * :SASL authentication failed"]);
        feed(&mut r, &["AUTHENTICATE PLAIN"]);
        let out = feed(&mut r, &["AUTHENTICATE not-base64!"]);
        assert_eq!(out, [":tlschat 904 * :SASL authentication failed"]);
    }

    #[test]
    fn a_payload_comes_in_400_byte_chunks_and_a_longer_one_is_refused() {
        let mut r = Registration::new("tlschat");
        let password = "p".repeat(500);
        let payload = plain("", "alice", &password);
        assert!(payload.len() > SASL_CHUNK);
        feed(&mut r, &["AUTHENTICATE PLAIN"]);
        let (first, rest) = payload.split_at(SASL_CHUNK);
        assert!(feed(&mut r, &[&format!("AUTHENTICATE {first}")]).is_empty());
        let out = feed(&mut r, &[&format!("AUTHENTICATE {rest}")]);
        assert_eq!(out, [format!("check Sasl alice {password}")]);
        let mut r = Registration::new("tlschat");
        feed(&mut r, &["AUTHENTICATE PLAIN"]);
        let out = feed(
            &mut r,
            &[&format!("AUTHENTICATE {}", "A".repeat(SASL_CHUNK + 1))],
        );
        assert_eq!(out, [":tlschat 905 * :SASL message too long"]);
    }

    #[test]
    fn aborting_and_authenticating_twice_have_their_numerics() {
        let mut r = Registration::new("tlschat");
        feed(&mut r, &["AUTHENTICATE PLAIN"]);
        assert_eq!(
            feed(&mut r, &["AUTHENTICATE *"]),
            [":tlschat 906 * :SASL authentication aborted"]
        );
        let out = feed(&mut r, &["AUTHENTICATE SCRAM-SHA-256"]);
        assert_eq!(
            out,
            [
                ":tlschat 908 * PLAIN,EXTERNAL :are available SASL mechanisms",
                ":tlschat 904 * :SASL authentication failed",
            ]
        );
        feed(&mut r, &["NICK alice", "AUTHENTICATE EXTERNAL"]);
        assert_eq!(feed(&mut r, &["AUTHENTICATE +"]), ["check certificate"]);
        r.certificate_checked(Some("alice".into()));
        assert_eq!(
            feed(&mut r, &["AUTHENTICATE PLAIN"]),
            [":tlschat 907 alice :You have already authenticated"]
        );
    }

    #[test]
    fn pass_logs_in_the_account_named_by_nick() {
        let mut r = Registration::new("tlschat");
        let out = feed(
            &mut r,
            &["PASS secret", "NICK Alice", "USER a-very-long-user 0 * :A"],
        );
        assert_eq!(out, ["check Pass Alice secret"]);
        let out: Vec<String> = r
            .password_checked(Some("alice".into()))
            .into_iter()
            .map(show)
            .collect();
        assert_eq!(out, ["registered alice alice []"]);
    }

    #[test]
    fn a_wrong_pass_is_464_and_closes() {
        let mut r = Registration::new("tlschat");
        feed(&mut r, &["PASS wrong", "NICK bob", "USER b 0 * :B"]);
        let out: Vec<String> = r.password_checked(None).into_iter().map(show).collect();
        assert_eq!(
            out,
            [
                ":tlschat 464 * :Password incorrect",
                "close ERROR :Password incorrect"
            ]
        );
    }

    #[test]
    fn registering_without_logging_in_is_refused() {
        let mut r = Registration::new("tlschat");
        let out = feed(&mut r, &["NICK guest", "USER g 0 * :G"]);
        assert_eq!(
            out,
            [
                ":tlschat FAIL * ACCOUNT_REQUIRED :Log in with SASL or PASS (your nick is your account name)",
                "close ERROR :Account required",
            ]
        );
    }

    #[test]
    fn before_registration_ping_is_answered_and_other_commands_are_not_yet() {
        let mut r = Registration::new("tlschat");
        assert_eq!(feed(&mut r, &["PING :x"]), [":tlschat PONG tlschat :x"]);
        assert_eq!(
            feed(&mut r, &["JOIN #dev"]),
            [":tlschat 451 * :You have not registered"]
        );
        assert_eq!(
            feed(&mut r, &["CAP REQ :sasl bogus"]),
            [":tlschat CAP * NAK :sasl bogus"]
        );
        assert_eq!(
            feed(&mut r, &["CAP FOO"]),
            [":tlschat 410 * FOO :Invalid CAP command"]
        );
    }
}
