//! `tlschat connect`: a client for the line protocol that checks the server (system roots,
//! `--ca`, a pinned fingerprint, or trust on first use with `known_hosts`), logs in, relays
//! lines between the terminal (or pipes) and the server, and reconnects after a drop.

pub mod identity;
pub mod terminal;
pub mod trust;

use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::pki_types::ServerName;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::protocol::{self, ServerLine};
use trust::{Decision, KnownHosts, Policy, Recorder};

/// The port `serve` listens on by default.
pub const DEFAULT_PORT: u16 = 7443;
/// First wait before reconnecting; doubles per failed try up to [`RECONNECT_MAX`].
const RECONNECT_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between reconnection tries.
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// Time allowed for TCP connect and TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// What `tlschat connect` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// `HOST[:PORT]`.
    pub target: String,
    /// `--user NAME`.
    pub user: Option<String>,
    /// `--password-stdin`: the first line of standard input is the password.
    pub password_stdin: bool,
    /// `--ca FILE`.
    pub ca: Option<PathBuf>,
    /// `--known-hosts FILE`.
    pub known_hosts: Option<PathBuf>,
    /// `--fingerprint FP`.
    pub fingerprint: Option<String>,
    /// `--insecure`.
    pub insecure: bool,
}

/// Splits `HOST[:PORT]` (`[v6]:PORT` for IPv6) into host and port.
pub fn parse_target(target: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .with_context(|| format!("invalid address {target:?}: missing ]"))?;
        (host, after.strip_prefix(':'))
    } else {
        match target.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (target, None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse()
            .with_context(|| format!("invalid port in {target:?}"))?,
        None => DEFAULT_PORT,
    };
    if host.is_empty() {
        bail!("invalid address {target:?}: no host");
    }
    Ok((host.to_owned(), port))
}

/// How one connection ended.
enum Ended {
    /// `/quit` answered, or standard input ended: leave.
    Left,
    /// The server will not take us back (takeover, kick, failed login): leave with an error.
    Final(String),
    /// The connection dropped: reconnect.
    Dropped,
}

/// Runs the client until the user leaves. Errors are for the terminal: trust refused,
/// login failed, no way to ask for what is missing.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let (host, port) = parse_target(&opts.target)?;
    let host_port = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    if opts.insecure {
        let (red, reset) =
            if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
                ("\x1b[1;31m", "\x1b[0m")
            } else {
                ("", "")
            };
        eprintln!(
            "{red}WARNING: --insecure: the server's certificate is not checked; anyone on the \
             way can read and change everything. Use it for tests only.{reset}"
        );
    }
    let pinned = match &opts.fingerprint {
        Some(fp) => Some(
            crate::client_cert::parse_fingerprint(fp)
                .with_context(|| format!("invalid fingerprint {fp:?}: expected SHA-256 hex"))?,
        ),
        None => None,
    };
    let policy = Policy {
        ca_given: opts.ca.is_some(),
        pinned,
        insecure: opts.insecure,
    };
    let Some(config_dir) = trust::config_dir() else {
        bail!("cannot find a configuration directory (set HOME or XDG_CONFIG_HOME)");
    };
    let known = KnownHosts::at(
        opts.known_hosts
            .clone()
            .unwrap_or_else(|| config_dir.join("known_hosts")),
    );
    let answers = identity::Answers::next_to(known.path());
    let identity = identity::for_server(&config_dir, &host_port, &answers)?;
    let recorder = Recorder::new(roots(opts.ca.as_deref())?).map_err(anyhow::Error::msg)?;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .dangerous()
    .with_custom_certificate_verifier(Arc::clone(&recorder) as _);
    let finish = |mut config: rustls::ClientConfig| {
        config.alpn_protocols = vec![crate::tls::ALPN_TLSCHAT.to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(config))
    };
    let anonymous = finish(builder.clone().with_no_client_auth());
    // Presented once the server is trusted: a server that has it enrolled needs no password.
    let presenting = finish(
        builder
            .with_client_auth_cert(identity.chain, identity.key)
            .context("using the client certificate")?,
    );
    // An unknown server must not learn a stable identity: the certificate goes only to one
    // trusted before the handshake (a pin, a known_hosts entry) or after it (then the client
    // reconnects at once, having sent nothing). --insecure never presents it.
    let mut present =
        !opts.insecure && (policy.pinned.is_some() || known.find(&host_port).fingerprint.is_some());
    let server_name = ServerName::try_from(host.clone()).context("invalid host name")?;

    let interactive = std::io::stdin().is_terminal();
    let password = if opts.password_stdin {
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line)? == 0 {
            bail!("--password-stdin: standard input ended before the password");
        }
        Some(SecretString::from(
            line.trim_end_matches(['\n', '\r']).to_owned(),
        ))
    } else {
        None
    };
    // Standard input is read from the first login on: before it, the terminal answers the
    // prompts (username, trust, password), which must not race a reader.
    let mut io = Io {
        input: None,
        printer: None,
        known: Arc::default(),
        editor: interactive && std::io::stdout().is_terminal(),
        shown: Default::default(),
        me: String::new(),
    };
    let user = match opts.user.clone() {
        Some(u) => u,
        None if interactive => ask_line("Username: ")?,
        None => bail!("give --user NAME (standard input is not a terminal)"),
    };
    let mut session = Login {
        user,
        password,
        interactive,
        offer_enrollment: interactive.then(|| (answers, host_port.clone())),
        by_password: false,
    };
    // Once trusted, later connections must present exactly this certificate.
    let mut trusted: Option<String> = None;
    let mut wait = RECONNECT_FIRST;
    loop {
        let connector = if present { &presenting } else { &anonymous };
        let tls = match connect(connector, &server_name, &host, port).await {
            Ok(tls) => tls,
            Err(e) if trusted.is_some() => {
                wait = retry_after(wait, &e.to_string()).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let seen = recorder
            .take()
            .context("the handshake showed no certificate")?;
        let decision = match &trusted {
            Some(fp) if *fp == seen.fingerprint => Decision::Trusted,
            // A new certificate since the last connection: decided like the first one (a
            // renewed certificate that an authority signs is fine, a changed known one not).
            _ => {
                let found = known.find(&host_port);
                if trusted.is_none() {
                    for line in &found.malformed {
                        eprintln!(
                            "warning: {}:{line}: not `HOST:PORT FINGERPRINT`; line skipped",
                            known.path().display()
                        );
                    }
                }
                let entry = found.fingerprint;
                trust::decide(&policy, &host_port, &seen, entry.as_deref(), known.path())
            }
        };
        match decision {
            Decision::Trusted => {}
            Decision::Refused(why) => bail!("{why}"),
            Decision::Unknown(fp) => {
                if !interactive {
                    bail!(
                        "the server at {host_port} is not known and its certificate is not \
                         signed by a trusted authority.\nIts SHA-256 fingerprint is {fp}.\n\
                         Check it against the one `tlschat serve` printed, then pass \
                         --fingerprint {fp} (or connect once from a terminal to trust it)"
                    );
                }
                eprintln!(
                    "The server at {host_port} presented a certificate that no trusted authority signed."
                );
                eprintln!("Its SHA-256 fingerprint is {fp}");
                eprintln!(
                    "Compare it with the one `tlschat serve` printed (ask the server's admin)."
                );
                let answer = ask_line("Trust this server? [y/N] ")?;
                if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
                    bail!("the server at {host_port} is not trusted; nothing was sent");
                }
                known
                    .add(&host_port, &fp)
                    .with_context(|| format!("saving {}", known.path().display()))?;
                eprintln!("Added {host_port} to {}", known.path().display());
            }
        }
        trusted = Some(seen.fingerprint);
        if !present && !opts.insecure {
            // Trusted now: the same server again, this time with the certificate.
            present = true;
            drop(tls);
            continue;
        }
        match relay(tls, &mut session, &mut io, &mut wait).await {
            Ended::Left => return Ok(()),
            Ended::Final(why) => bail!("{why}"),
            Ended::Dropped => wait = retry_after(wait, "connection lost").await,
        }
    }
}

/// Waits `wait` (with jitter) after telling the user; returns the next wait.
async fn retry_after(wait: Duration, why: &str) -> Duration {
    let jitter = 0.5 + f64::from(rand_fraction()) / 2.0;
    let this = wait.mul_f64(jitter);
    eprintln!("*** {why}; reconnecting in {:.1} s", this.as_secs_f64());
    tokio::time::sleep(this).await;
    (wait * 2).min(RECONNECT_MAX)
}

/// A pseudo-random fraction in [0, 1) from the clock: jitter needs no better.
fn rand_fraction() -> f32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos % 1000) as f32 / 1000.0
}

/// The certificates chains are checked against: `--ca`'s, else the system's.
fn roots(ca: Option<&std::path::Path>) -> anyhow::Result<rustls::RootCertStore> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect())
                .with_context(|| format!("reading --ca {}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                bail!("--ca {}: no certificate in the file", path.display());
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    Ok(roots)
}

async fn connect(
    connector: &tokio_rustls::TlsConnector,
    name: &ServerName<'static>,
    host: &str,
    port: u16,
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let attempt = async {
        let tcp = TcpStream::connect((host, port))
            .await
            .with_context(|| format!("connecting to {host}:{port}"))?;
        let tls = connector
            .connect(name.clone(), tcp)
            .await
            .with_context(|| format!("TLS handshake with {host}:{port}"))?;
        anyhow::Ok(tls)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .with_context(|| format!("connecting to {host}:{port}: timed out"))?
}

/// Who logs in; the password is kept (as a secret) for logging in again after a drop.
struct Login {
    user: String,
    password: Option<SecretString>,
    interactive: bool,
    /// On a terminal: where the answer to the enrollment question is kept, and for which
    /// server.
    offer_enrollment: Option<(identity::Answers, String)>,
    /// This connection's login used the password (so the certificate is not enrolled).
    by_password: bool,
}

impl Login {
    fn password(&mut self) -> anyhow::Result<SecretString> {
        if let Some(p) = &self.password {
            return Ok(p.clone());
        }
        if !self.interactive {
            bail!("the server asks for a password: use --password-stdin");
        }
        let typed = rpassword::prompt_password("Password: ").context("reading the password")?;
        let secret = SecretString::from(typed);
        self.password = Some(secret.clone());
        Ok(secret)
    }
}

/// The user's side, kept across reconnects: typed lines, where server lines are printed, and
/// what the prompt and completion know.
struct Io {
    /// Lines typed (or piped), from the first login on.
    input: Option<mpsc::Receiver<String>>,
    /// The line editor's printer, on a terminal.
    printer: Option<terminal::Printer>,
    known: Arc<terminal::Shared>,
    /// Standard input and output are a terminal: use the line editor.
    editor: bool,
    /// The number of the last message shown per room, sent with `/resume` at each login so
    /// that the server replays exactly what came after.
    shown: std::collections::BTreeMap<String, u64>,
    /// The account's name as the server writes it (from the welcome): the server's echo of
    /// the user's own lines is not printed again.
    me: String,
}

impl Io {
    /// Starts reading what the user types: the line editor on a terminal, plain lines
    /// otherwise.
    fn start_input(&mut self) {
        if self.input.is_some() {
            return;
        }
        if self.editor {
            let colour = std::env::var_os("NO_COLOR").is_none();
            match terminal::start(Arc::clone(&self.known), colour) {
                Ok((rx, printer)) => {
                    self.input = Some(rx);
                    self.printer = Some(printer);
                    return;
                }
                Err(e) => eprintln!("*** {e}; reading plain lines"),
            }
        }
        self.input = Some(spawn_stdin_reader());
    }

    /// Takes the number off a numbered line (noting it as shown) and says what to print:
    /// nothing for the echo of the user's own live line, which is on the screen already.
    fn unnumber<'a>(&mut self, line: &'a str) -> Option<&'a str> {
        let Some((room, seq, text)) = protocol::split_number(line) else {
            return Some(line);
        };
        self.shown.insert(room.to_owned(), seq);
        let live = text
            .strip_prefix('[')
            .and_then(|t| t.strip_prefix(room))
            .and_then(|t| t.strip_prefix("] "))
            .unwrap_or(text);
        let own = live
            .strip_prefix('<')
            .and_then(|t| t.strip_prefix(self.me.as_str()))
            .is_some_and(|t| t.starts_with("> "))
            || live
                .strip_prefix("* ")
                .and_then(|t| t.strip_prefix(self.me.as_str()))
                .is_some_and(|t| t.starts_with(' '));
        (!own).then_some(text)
    }

    fn print(&mut self, line: &str) {
        match &mut self.printer {
            Some(p) => p.print(line),
            None => {
                let mut out = std::io::stdout();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        }
    }
}

/// Relays one connection: answers the login prompts (first with `/resume` and the numbers
/// shown so far, so the catch-up repeats and skips nothing), then copies input lines to the
/// server and the server's lines (sanitised again: nothing from the network may move the
/// cursor or change the terminal; numbers taken off) to standard output.
async fn relay(
    tls: tokio_rustls::client::TlsStream<TcpStream>,
    login: &mut Login,
    io: &mut Io,
    wait: &mut Duration,
) -> Ended {
    login.by_password = false;
    let (read, mut write) = tokio::io::split(tls);
    let mut lines = BufReader::new(read).lines();
    let mut logged_in = false;
    let mut resumed = false;
    let mut quitting = false;
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let line = match line {
                    Ok(Some(line)) => line,
                    _ if quitting => return Ended::Left,
                    _ => return Ended::Dropped,
                };
                let line = protocol::clean(&line).into_owned();
                let parsed = ServerLine::parse(&line);
                if !logged_in {
                    let answer = match parsed {
                        ServerLine::UsernamePrompt if !resumed => {
                            resumed = true;
                            let shown = io.shown.iter().map(|(room, seq)| (room.as_str(), *seq));
                            let line = protocol::resume_line(shown);
                            Some(SecretString::from(line.trim_end().to_owned()))
                        }
                        ServerLine::UsernamePrompt => Some(SecretString::from(login.user.clone())),
                        ServerLine::PasswordPrompt => match login.password() {
                            Ok(p) => {
                                login.by_password = true;
                                Some(p)
                            }
                            Err(e) => return Ended::Final(e.to_string()),
                        },
                        _ => None,
                    };
                    if let Some(answer) = answer {
                        let sent = write
                            .write_all(format!("{}\n", answer.expose_secret()).as_bytes())
                            .await;
                        if sent.is_err() {
                            return Ended::Dropped;
                        }
                        continue;
                    }
                    if parsed == ServerLine::LoginFailed {
                        return Ended::Final("login failed".into());
                    }
                    if line == protocol::NUMBERED_LINES_ON.trim_end() {
                        continue;
                    }
                    if let ServerLine::Welcome { name, .. } = parsed {
                        io.me = name.to_owned();
                        logged_in = true;
                        *wait = RECONNECT_FIRST;
                        io.known.learn(&line);
                        io.print(&line);
                        if login.by_password && offer_enrollment(login).await {
                            let sent = write.write_all(b"/cert enroll\n").await;
                            if sent.is_err() {
                                return Ended::Dropped;
                            }
                        }
                        io.start_input();
                        continue;
                    }
                }
                let Some(text) = io.unnumber(&line) else {
                    continue;
                };
                let text = text.to_owned();
                io.known.learn(&text);
                io.print(&text);
                match parsed {
                    ServerLine::Left(room) => {
                        io.shown.remove(room);
                    }
                    ServerLine::Final => return Ended::Final(line),
                    ServerLine::Bye => quitting = true,
                    _ => {}
                }
            }
            typed = recv(&mut io.input), if logged_in && !quitting => {
                let line = match typed {
                    Some(line) => line,
                    None => {
                        // Standard input ended: leave as /quit does.
                        quitting = true;
                        "/quit".to_owned()
                    }
                };
                if line.trim_start().starts_with("/quit") {
                    quitting = true;
                }
                if write.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                    return if quitting { Ended::Left } else { Ended::Dropped };
                }
            }
        }
    }
}

/// After a password login on a terminal, once per server: asks whether to enroll the
/// client's certificate, and remembers the answer.
async fn offer_enrollment(login: &mut Login) -> bool {
    let Some((answers, host)) = &login.offer_enrollment else {
        return false;
    };
    if answers.get(host).is_some() {
        return false;
    }
    let asked =
        tokio::task::spawn_blocking(|| ask_line("Log in with this certificate next time? [Y/n] "))
            .await;
    let yes = match asked {
        Ok(Ok(answer)) => !matches!(answer.trim(), "n" | "N" | "no" | "No"),
        _ => return false,
    };
    if let Err(e) = answers.set(host, yes) {
        eprintln!("*** could not remember the answer: {e}");
    }
    yes
}

async fn recv(input: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match input {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Standard input as lines, read on a thread of its own so a reconnect keeps what was typed.
fn spawn_stdin_reader() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = line.trim_end_matches(['\n', '\r']).to_owned();
                    if tx.blocking_send(text).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Prints `prompt` on stderr and reads one line from the terminal.
fn ask_line(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let tty = std::fs::File::open("/dev/tty").context("opening the terminal")?;
    std::io::BufRead::read_line(&mut std::io::BufReader::new(tty), &mut line)
        .context("reading the terminal")?;
    Ok(line.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_default_to_port_7443() {
        assert_eq!(
            parse_target("localhost").unwrap(),
            ("localhost".into(), 7443)
        );
        assert_eq!(
            parse_target("chat.example.org:8443").unwrap(),
            ("chat.example.org".into(), 8443)
        );
        assert_eq!(parse_target("[::1]:9000").unwrap(), ("::1".into(), 9000));
        assert_eq!(parse_target("[::1]").unwrap(), ("::1".into(), 7443));
        assert!(parse_target("host:port").is_err());
        assert!(parse_target(":7443").is_err());
    }

    fn io_of(me: &str) -> Io {
        Io {
            input: None,
            printer: None,
            known: Arc::default(),
            editor: false,
            shown: Default::default(),
            me: me.to_owned(),
        }
    }

    #[test]
    fn a_numbered_line_is_printed_without_its_number_which_is_noted() {
        let mut io = io_of("alice");
        assert_eq!(
            io.unnumber("@#dev:7 [#dev] <bob> hi"),
            Some("[#dev] <bob> hi")
        );
        assert_eq!(io.unnumber("@#lobby:3 * bob waves"), Some("* bob waves"));
        assert_eq!(io.unnumber("*** bob joined"), Some("*** bob joined"));
        let shown: Vec<_> = io.shown.iter().map(|(r, s)| (r.as_str(), *s)).collect();
        assert_eq!(shown, [("#dev", 7), ("#lobby", 3)]);
    }

    #[test]
    fn the_echo_of_an_own_live_line_is_noted_but_not_printed_again() {
        let mut io = io_of("alice");
        assert_eq!(io.unnumber("@#lobby:4 <alice> mine"), None);
        assert_eq!(io.unnumber("@#dev:9 [#dev] * alice waves"), None);
        assert_eq!(io.shown.get("#dev"), Some(&9));
        // In a catch-up block it was not on the screen: it is printed.
        let stamped = "@#lobby:2 [2026-12-01 11:58:02] <alice> earlier";
        assert_eq!(
            io.unnumber(stamped),
            Some("[2026-12-01 11:58:02] <alice> earlier")
        );
        // Another member whose name starts with the user's is someone else.
        assert_eq!(io.unnumber("@#lobby:5 <alicia> hi"), Some("<alicia> hi"));
    }
}
