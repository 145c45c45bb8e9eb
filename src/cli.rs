//! Command-line interface: `serve`, `cert generate`, `user add|passwd|del|list`.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::config::{
    Argon2Settings, CertPaths, FileConfig, LimitSettings, RoomSettings, resolve_listen,
};
use crate::password::{Hasher, Password};
use crate::report::Report;
use crate::store::Store;
use crate::tls::{self, DEFAULT_CERT_NAMES};
use crate::username::Username;
use serde_json::json;

/// tlschat: a small, fast, secure chat-room server over TLS.
///
/// Every option can also be set with the environment variable shown in its help, or in the
/// TOML file named by --config. Precedence: flag > environment > config file > default.
#[derive(Debug, Parser)]
#[command(name = "tlschat", version, propagate_version = true)]
pub struct Cli {
    /// Log line format on stderr (filter with RUST_LOG, default tlschat=info)
    #[arg(
        long,
        global = true,
        env = "TLSCHAT_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Cli {
    /// The chosen log format.
    pub fn log_format(&self) -> LogFormat {
        self.log_format
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the chat server (generates a self-signed certificate on first start)
    Serve(Box<ServeArgs>),
    /// Manage TLS certificates
    #[command(subcommand)]
    Cert(CertCommand),
    /// Manage user accounts in the database
    #[command(subcommand)]
    User(UserCommand),
    /// Talk to a running server through its admin socket
    Admin(AdminArgs),
    /// Check a configuration without serving: certificate, files, database, argon2, address
    Doctor(Box<DoctorArgs>),
    /// Chat with a server: checks its certificate (system roots, --ca, --fingerprint, or
    /// trust on first use like ssh), logs in and reconnects after a drop. Ctrl-C leaves.
    #[command(after_help = CONNECT_EXAMPLE)]
    Connect(ConnectArgs),
}

/// The session `tlschat connect --help` shows.
const CONNECT_EXAMPLE: &str = "\
A first session (typed lines after the prompts):
  $ tlschat connect localhost --user alice
  The server at localhost:7443 presented a certificate that no trusted authority signed.
  Its SHA-256 fingerprint is 4F:A7:1A:B1:…:F7:B5
  Trust this server? [y/N] y
  Password:
  *** Welcome, alice! 2 online: alice, bob
  Log in with this certificate next time? [Y/n]
  *** Certificate 9C:…:E1 enrolled as 2026-12-01
  #lobby> hello bob
  <bob> hi alice
  #lobby> /quit
  *** Bye

On a terminal: Up/Down and Ctrl-R search the history, Tab completes commands, rooms and
names, Ctrl-D or Ctrl-C leaves. Piped: the first line is the password with
--password-stdin, the rest are chat lines; the end of input leaves.
Trusted servers are kept in ~/.config/tlschat/known_hosts, the client's own certificate in
~/.config/tlschat/client.crt and client.key.";

#[derive(Debug, Args)]
struct ConnectArgs {
    /// Server to connect to [default: localhost:7443]
    #[arg(value_name = "HOST[:PORT]", default_value = "localhost")]
    target: String,
    /// Username (asked for on a terminal when missing)
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Read the password from the first line of standard input; the rest are chat lines
    #[arg(long)]
    password_stdin: bool,
    /// Trust only servers whose chain verifies against the certificates in FILE (PEM)
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Trusted servers' fingerprints [default: ~/.config/tlschat/known_hosts]
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,
    /// Trust exactly the certificate with this SHA-256 fingerprint
    #[arg(long, value_name = "FP")]
    fingerprint: Option<String>,
    /// Do not check the server's certificate at all (for tests; says so on every start)
    #[arg(long)]
    insecure: bool,
}

#[derive(Debug, Args)]
struct DoctorArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Host name clients will connect to; warns if the certificate does not cover it
    /// (repeatable) [default: localhost]
    #[arg(long = "name", value_name = "HOST")]
    names: Vec<String>,
}

#[derive(Debug, Args)]
struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
    /// TOML config file (keys: db, admin_socket)
    #[arg(long, env = "TLSCHAT_CONFIG", value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// The server's database, to find the socket next to it [default: tlschat.db]
    #[arg(long, env = "TLSCHAT_DB", value_name = "PATH", global = true)]
    db: Option<PathBuf>,
    /// The server's admin socket [default: next to the database, tlschat.sock]
    #[arg(long, env = "TLSCHAT_ADMIN_SOCKET", value_name = "PATH", global = true)]
    admin_socket: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// List sessions: user, source address, connected since (UTC), queued bytes
    Who,
    /// Disconnect a user; the others see "*** NAME left (REASON)"
    Kick {
        /// User to disconnect (matched case-insensitively)
        name: String,
        /// Shown to the user and to the room
        reason: Vec<String>,
    },
    /// Send "*** [admin] TEXT" to everyone
    Say {
        /// The notice
        #[arg(required = true)]
        text: Vec<String>,
    },
}

/// Options every command that touches the database takes.
#[derive(Debug, Args)]
struct DbArgs {
    /// TOML config file (keys: listen, db, cert, key, [limits], [argon2])
    #[arg(long, env = "TLSCHAT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// SQLite database file, created if missing [default: tlschat.db]
    #[arg(long, env = "TLSCHAT_DB", value_name = "PATH")]
    db: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Address to listen on; port 0 picks a free port [default: 0.0.0.0:7443]
    #[arg(long, env = "TLSCHAT_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// Certificate chain, PEM [default: certs/server.crt, generated if missing]
    #[arg(long, env = "TLSCHAT_CERT", value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Private key, PEM [default: certs/server.key, generated if missing]
    #[arg(long, env = "TLSCHAT_KEY", value_name = "FILE")]
    key: Option<PathBuf>,
    /// Admin socket (mode 0600), or "off" [default: next to the database, tlschat.sock]
    #[arg(long, env = "TLSCHAT_ADMIN_SOCKET", value_name = "PATH")]
    admin_socket: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics; keep it on loopback or firewalled
    /// [default: off]
    #[arg(long, env = "TLSCHAT_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Allow --metrics-listen on a non-loopback address (the metrics have no authentication)
    #[arg(long, env = "TLSCHAT_METRICS_PUBLIC")]
    metrics_public: bool,
    /// Serve the web client to browsers on the chat port (ALPN http/1.1) [default: true]
    #[arg(long, env = "TLSCHAT_WEB", value_name = "BOOL", action = clap::ArgAction::Set)]
    web: Option<bool>,
    /// Another origin whose pages may open a WebSocket, e.g. https://chat.example.org
    /// (repeatable; the page's own origin is always allowed)
    #[arg(
        long = "web-origin",
        env = "TLSCHAT_WEB_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    web_origins: Vec<String>,
    #[command(flatten, next_help_heading = "Limits")]
    limits: LimitSettings,
    #[command(flatten, next_help_heading = "Rooms and history")]
    rooms: RoomSettings,
    #[command(flatten, next_help_heading = "Password hashing")]
    argon2: Argon2Settings,
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Generate a self-signed ECDSA P-256 certificate and key
    Generate {
        /// Directory for server.crt and server.key
        #[arg(long, default_value = "certs", value_name = "DIR")]
        out: PathBuf,
        /// DNS name or IP address to cover (repeatable) [default: localhost, 127.0.0.1, ::1]
        #[arg(long = "name", value_name = "HOST")]
        names: Vec<String>,
        /// Replace existing files
        #[arg(long)]
        force: bool,
        /// Days the certificate is valid, 1-3650 (browsers accept at most 398 for public CAs)
        #[arg(long, default_value_t = tls::DEFAULT_CERT_DAYS, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
    },
}

#[derive(Debug, Args)]
struct PasswordArgs {
    /// Read the password as one line from standard input instead of the terminal
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten, next_help_heading = "Password hashing")]
    argon2: Argon2Settings,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user (asks for the password twice)
    Add {
        /// 1-32 ASCII letters, digits, '_', '-' or '.', starting with a letter or digit
        name: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Change a user's password
    Passwd {
        /// Existing user (matched case-insensitively)
        name: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Delete a user
    Del {
        /// Existing user (matched case-insensitively)
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Refuse a user's logins and close their session (within a few seconds)
    Disable {
        /// Existing user (matched case-insensitively)
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Allow a disabled user to log in again
    Enable {
        /// Existing user (matched case-insensitively)
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List users: name, creation time (UTC), enabled or disabled
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Client certificates that log a user in without a password
    #[command(subcommand)]
    Cert(UserCertCommand),
}

#[derive(Debug, Subcommand)]
enum UserCertCommand {
    /// Bind the certificate in FILE (PEM) to NAME
    Add {
        /// Existing user (matched case-insensitively)
        name: String,
        /// The certificate, PEM (the first one in the file)
        file: PathBuf,
        /// 1-32 ASCII letters, digits, '_', '-' or '.' [default: today's date]
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List NAME's certificates: label, fingerprint, date added (UTC)
    List {
        /// Existing user (matched case-insensitively)
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Unbind a certificate (by fingerprint or label); sessions that logged in with it close
    Del {
        /// Existing user (matched case-insensitively)
        name: String,
        /// SHA-256 fingerprint (with or without colons, any case, optional SHA256:) or label
        certificate: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let report = Report::new(cli.log_format == LogFormat::Json);
    match cli.command {
        Command::Serve(args) => serve(*args, report).await,
        Command::Cert(CertCommand::Generate {
            out,
            names,
            force,
            days,
        }) => cert_generate(&out, names, force, days, report),
        Command::User(cmd) => user(cmd, report).await,
        Command::Admin(args) => admin_command(args, report).await,
        Command::Doctor(args) => doctor(*args, report).await,
        Command::Connect(args) => {
            crate::client::run(crate::client::Options {
                target: args.target,
                user: args.user,
                password_stdin: args.password_stdin,
                ca: args.ca,
                known_hosts: args.known_hosts,
                fingerprint: args.fingerprint,
                insecure: args.insecure,
            })
            .await
        }
    }
}

async fn doctor(args: DoctorArgs, report: Report) -> anyhow::Result<()> {
    let serve = args.serve;
    let file = FileConfig::load(serve.db.config.as_deref())?;
    let certs = CertPaths::resolve(serve.cert, serve.key, &file);
    let db = file.db_path(serve.db.db);
    let names = if args.names.is_empty() {
        vec!["localhost".to_owned()]
    } else {
        args.names
    };
    let target = crate::doctor::Target {
        certs: &certs,
        db: &db,
        listen: resolve_listen(serve.listen, &file).map_err(|e| e.to_string()),
        names: &names,
        hash: file.hash_settings(&serve.argon2).map_err(|e| e.to_string()),
    };
    let checks = crate::doctor::run(&target).await;
    let mut failed = 0;
    for c in &checks {
        let level = format!("{:?}", c.level).to_lowercase();
        report.line(
            &c.to_string(),
            "check",
            &[
                ("check", json!(c.what)),
                ("result", json!(level)),
                ("detail", json!(c.detail)),
            ],
        )?;
        failed += usize::from(c.level == crate::doctor::Level::Fail);
    }
    if failed > 0 {
        bail!("{failed} check(s) failed");
    }
    Ok(())
}

async fn admin_command(args: AdminArgs, report: Report) -> anyhow::Result<()> {
    let file = FileConfig::load(args.config.as_deref())?;
    let path = match args.admin_socket {
        Some(p) => p,
        None => match file.admin_socket.as_deref() {
            Some(p) if p != "off" => PathBuf::from(p),
            _ => crate::admin::default_socket_path(&file.db_path(args.db)),
        },
    };
    let command = match args.command {
        AdminCommand::Who => "who".to_owned(),
        AdminCommand::Kick { name, reason } => format!("kick {name} {}", reason.join(" ")),
        AdminCommand::Say { text } => format!("say {}", text.join(" ")),
    };
    let reply = crate::admin::request(&path, command.trim_end()).await?;
    let mut lines: Vec<&str> = reply.lines().collect();
    match lines.pop() {
        Some("ok") => {
            for line in lines {
                let cols: Vec<&str> = line.split('\t').collect();
                let fields = match cols.as_slice() {
                    [user, peer, since, queued] => vec![
                        ("user", json!(user)),
                        ("peer", json!(peer)),
                        ("since", json!(since)),
                        ("queued_bytes", json!(queued.parse::<u64>().ok())),
                    ],
                    _ => vec![("text", json!(line))],
                };
                report.line(line, "session", &fields)?;
            }
            Ok(())
        }
        Some(error) => bail!("{}", error.strip_prefix("error: ").unwrap_or(error)),
        None => bail!("the server closed the admin connection without a reply"),
    }
}

async fn serve(args: ServeArgs, report: Report) -> anyhow::Result<()> {
    let file = FileConfig::load(args.db.config.as_deref())?;
    let listen = resolve_listen(args.listen, &file)?;
    let db_path = file.db_path(args.db.db);
    let certs = CertPaths::resolve(args.cert, args.key, &file);
    let limits = file.limits(&args.limits)?;
    let room_limits = file.room_limits(&args.rooms)?;
    let hasher = Hasher::new(&file.hash_settings(&args.argon2)?)?;
    let web = match args.web.or(file.web).unwrap_or(true) {
        true => {
            let origins = if args.web_origins.is_empty() {
                file.web_origins.clone().unwrap_or_default()
            } else {
                args.web_origins.clone()
            };
            Some(Arc::new(
                crate::web::Web::new(&origins).map_err(anyhow::Error::msg)?,
            ))
        }
        false => None,
    };

    let store = Store::open(&db_path).await?;
    let generated = ensure_default_cert(&certs)?;
    let loaded = tls::load(&certs.cert, &certs.key)?;
    warn_if_key_readable(&certs.key);
    let app = crate::app::App::build(crate::app::Parts {
        store,
        hasher,
        tls: loaded.configs.clone(),
        web,
        limits,
        rooms: room_limits,
    })
    .await?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let admin_path = match args.admin_socket.or_else(|| file.admin_socket.clone()) {
        Some(p) if p == "off" => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(crate::admin::default_socket_path(&db_path)),
    };
    let metrics_listen = args.metrics_listen.or(file.metrics_listen);
    let metrics_public = args.metrics_public || file.metrics_public.unwrap_or(false);
    if let Some(addr) = metrics_listen.filter(|a| !a.ip().is_loopback()) {
        if !metrics_public {
            bail!(
                "refusing to serve metrics on {addr}: it is not a loopback address and the \
                 metrics have no authentication; use 127.0.0.1, or allow it with \
                 --metrics-public (metrics_public = true)"
            );
        }
        tracing::warn!(addr = %addr, "metrics served on a non-loopback address without authentication");
    }
    let metrics_listener = match metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics address {addr}"))?,
        ),
        None => None,
    };
    let admin_listener = match &admin_path {
        Some(path) => Some(crate::admin::bind(path).await?),
        None => None,
    };

    // Handlers exist before anyone learns the port, so an early signal cannot hit the default
    // action (which would end the process without the goodbye).
    let signal = |kind| tokio::signal::unix::signal(kind).context("installing a signal handler");
    let terminate = signal(SignalKind::terminate())?;
    let interrupt = signal(SignalKind::interrupt())?;
    let hangups = signal(SignalKind::hangup())?;

    if generated {
        let dir = certs.cert.parent().unwrap_or(Path::new(".")).display();
        report.line(
            &format!(
                "generated a self-signed certificate for {} in {dir}",
                DEFAULT_CERT_NAMES.join(", ")
            ),
            "generated a self-signed certificate",
            &[
                ("names", json!(DEFAULT_CERT_NAMES)),
                ("dir", json!(dir.to_string())),
            ],
        )?;
    }
    report.line(
        &format!("certificate SHA-256 fingerprint: {}", loaded.fingerprint),
        "certificate loaded",
        &[
            ("fingerprint", json!(loaded.fingerprint)),
            ("cert", json!(certs.cert.display().to_string())),
        ],
    )?;
    if let Some(path) = &admin_path {
        report.line(
            &format!("admin socket: {}", path.display()),
            "admin socket",
            &[("path", json!(path.display().to_string()))],
        )?;
    }
    if let Some(l) = &metrics_listener {
        let url = format!("http://{}/metrics", l.local_addr()?);
        report.line(
            &format!("metrics on {url}"),
            "metrics",
            &[("url", json!(url))],
        )?;
    }
    report.line(
        &format!("listening on {local}"),
        "listening",
        &[("addr", json!(local.to_string()))],
    )?;
    let connect = s_client_command(local);
    report.line(
        &format!("connect with: {connect}"),
        "connect with",
        &[("command", json!(connect))],
    )?;
    if !report.is_json() {
        // In JSON mode the stdout events above carry these facts already.
        tracing::info!(fingerprint = %loaded.fingerprint, cert = %certs.cert.display(), "certificate loaded");
        tracing::info!(addr = %local, "listening");
    }

    let cert_check_interval = app.context().limits.cert_check_interval;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(terminate, interrupt, shutdown.clone()));
    tokio::spawn(reload_on_hangup(hangups, Arc::clone(&loaded.source)));
    tokio::spawn(tls::watch(
        Arc::clone(&loaded.source),
        cert_check_interval,
        shutdown.clone(),
    ));
    crate::notify::notify("READY=1");
    let listeners = crate::app::Listeners {
        chat: listener,
        admin: admin_listener,
        metrics: metrics_listener,
    };
    app.run(listeners, shutdown).await?;
    Ok(())
}

/// A private key others can read is a key others may have copied.
fn warn_if_key_readable(key: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(key) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %key.display(),
                mode = format!("{mode:o}"),
                "the private key file is readable by group or others; restrict it with chmod 600"
            );
        }
    }
}

/// The command a user pastes to connect; `localhost` when listening on all or loopback addresses.
fn s_client_command(local: SocketAddr) -> String {
    let ip = local.ip();
    let host = if ip.is_unspecified() || ip.is_loopback() {
        "localhost".to_owned()
    } else {
        ip.to_string()
    };
    format!("openssl s_client -quiet -connect {host}:{}", local.port())
}

/// Generates the default pair on first start; never touches configured paths.
fn ensure_default_cert(certs: &CertPaths) -> anyhow::Result<bool> {
    let (cert_exists, key_exists) = (certs.cert.exists(), certs.key.exists());
    if !certs.is_default || (cert_exists && key_exists) {
        return Ok(false);
    }
    if cert_exists || key_exists {
        bail!(
            "only one of {} and {} exists; restore the other or remove both to generate a new pair",
            certs.cert.display(),
            certs.key.display()
        );
    }
    let names: Vec<String> = DEFAULT_CERT_NAMES.iter().map(|s| s.to_string()).collect();
    tls::write_self_signed(
        &certs.cert,
        &certs.key,
        &names,
        tls::DEFAULT_CERT_DAYS,
        false,
    )?;
    Ok(true)
}

fn cert_generate(
    out: &Path,
    mut names: Vec<String>,
    force: bool,
    days: u32,
    report: Report,
) -> anyhow::Result<()> {
    if names.is_empty() {
        names = DEFAULT_CERT_NAMES.iter().map(|s| s.to_string()).collect();
    }
    let (cert, key) = (out.join(tls::CERT_FILE), out.join(tls::KEY_FILE));
    let pair = tls::write_self_signed(&cert, &key, &names, days, force)?;
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    report.line(
        &format!("certificate: {c}"),
        "certificate",
        &[("path", json!(c))],
    )?;
    report.line(
        &format!("private key: {k} (mode 0600)"),
        "private key",
        &[("path", json!(k))],
    )?;
    report.line(
        &format!("names: {}", names.join(", ")),
        "names",
        &[("names", json!(names))],
    )?;
    report.line(
        &format!("valid until: {}", pair.not_after),
        "valid until",
        &[("not_after", json!(pair.not_after)), ("days", json!(days))],
    )?;
    report.line(
        &format!("SHA-256 fingerprint: {}", pair.fingerprint),
        "fingerprint",
        &[("fingerprint", json!(pair.fingerprint))],
    )?;
    Ok(())
}

async fn user(cmd: UserCommand, report: Report) -> anyhow::Result<()> {
    let done = |human: String, message: &str, name: &Username| {
        report.line(&human, message, &[("user", json!(name.as_str()))])
    };
    match cmd {
        UserCommand::Add { name, db, password } => {
            let name = Username::parse(&name)?;
            let (store, hasher) = open(&db, Some(&password.argon2)).await?;
            let secret = read_new_password(password.password_stdin)?;
            let hash = hasher.hash(&secret).await?;
            store.add_user(&name, &hash).await?;
            store.close().await;
            done(format!("added user {name}"), "added user", &name)?;
        }
        UserCommand::Passwd { name, db, password } => {
            let name = Username::parse(&name)?;
            let (store, hasher) = open(&db, Some(&password.argon2)).await?;
            if store.credentials(&name).await?.is_none() {
                bail!("no such user: {name}");
            }
            let secret = read_new_password(password.password_stdin)?;
            let hash = hasher.hash(&secret).await?;
            store.set_password(&name, &hash).await?;
            store.close().await;
            done(
                format!("changed password of {name}"),
                "changed password",
                &name,
            )?;
        }
        UserCommand::Del { name, db } => {
            let name = Username::parse(&name)?;
            let (store, _) = open(&db, None).await?;
            store.delete_user(&name).await?;
            store.close().await;
            done(format!("deleted user {name}"), "deleted user", &name)?;
        }
        UserCommand::Disable { name, db } => set_disabled(&name, &db, true, report).await?,
        UserCommand::Enable { name, db } => set_disabled(&name, &db, false, report).await?,
        UserCommand::List { db } => {
            let (store, _) = open(&db, None).await?;
            for user in store.list_users().await? {
                let state = if user.disabled { "disabled" } else { "enabled" };
                report.line(
                    &format!("{}\t{}\t{state}", user.username, user.created_at),
                    "user",
                    &[
                        ("user", json!(user.username)),
                        ("created_at", json!(user.created_at)),
                        ("state", json!(state)),
                    ],
                )?;
            }
            store.close().await;
        }
        UserCommand::Cert(cmd) => user_cert(cmd, report).await?,
    }
    Ok(())
}

async fn user_cert(cmd: UserCertCommand, report: Report) -> anyhow::Result<()> {
    match cmd {
        UserCertCommand::Add {
            name,
            file,
            label,
            db,
        } => {
            let name = Username::parse(&name)?;
            let fingerprint =
                crate::client_cert::fingerprint_of_pem_file(&file).map_err(anyhow::Error::msg)?;
            let label = label.unwrap_or_else(crate::client_cert::default_label);
            if !crate::client_cert::valid_label(&label) {
                bail!("invalid label {label:?}: use 1-32 of A-Z a-z 0-9 _ - .");
            }
            let (store, _) = open(&db, None).await?;
            let added = store.add_certificate(&name, &fingerprint, &label).await;
            store.close().await;
            added?;
            report.line(
                &format!("added certificate {label} {fingerprint} to {name}"),
                "added certificate",
                &[
                    ("user", json!(name.as_str())),
                    ("label", json!(label)),
                    ("fingerprint", json!(fingerprint)),
                ],
            )?;
        }
        UserCertCommand::List { name, db } => {
            let name = Username::parse(&name)?;
            let (store, _) = open(&db, None).await?;
            let certificates = store.certificates(&name).await;
            store.close().await;
            for c in certificates? {
                report.line(
                    &format!("{}\t{}\t{}", c.label, c.fingerprint, c.added),
                    "certificate",
                    &[
                        ("label", json!(c.label)),
                        ("fingerprint", json!(c.fingerprint)),
                        ("added", json!(c.added)),
                    ],
                )?;
            }
        }
        UserCertCommand::Del {
            name,
            certificate,
            db,
        } => {
            let name = Username::parse(&name)?;
            let key = crate::client_cert::parse_fingerprint(&certificate).unwrap_or(certificate);
            let (store, _) = open(&db, None).await?;
            let deleted = store.delete_certificate(&name, &key).await;
            store.close().await;
            let Some(label) = deleted? else {
                bail!("no such certificate for {name}: {key}");
            };
            report.line(
                &format!("deleted certificate {label} of {name}"),
                "deleted certificate",
                &[("user", json!(name.as_str())), ("label", json!(label))],
            )?;
        }
    }
    Ok(())
}

async fn set_disabled(
    name: &str,
    db: &DbArgs,
    disabled: bool,
    report: Report,
) -> anyhow::Result<()> {
    let name = Username::parse(name)?;
    let (store, _) = open(db, None).await?;
    store.set_disabled(&name, disabled).await?;
    store.close().await;
    let verb = if disabled { "disabled" } else { "enabled" };
    report.line(
        &format!("{verb} user {name}"),
        &format!("{verb} user"),
        &[("user", json!(name.as_str()))],
    )?;
    Ok(())
}

/// Opens the store and, when passwords are involved, a hasher with the configured parameters.
async fn open(db: &DbArgs, argon2: Option<&Argon2Settings>) -> anyhow::Result<(Store, Hasher)> {
    let file = FileConfig::load(db.config.as_deref())?;
    let settings = file.hash_settings(argon2.unwrap_or(&Argon2Settings::default()))?;
    let hasher = Hasher::new(&settings)?;
    let store = Store::open(&file.db_path(db.db.clone())).await?;
    Ok((store, hasher))
}

/// One line from stdin, or twice from the terminal without echo.
fn read_new_password(from_stdin: bool) -> anyhow::Result<Password> {
    let secret = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let trimmed = line.strip_suffix('\n').unwrap_or(&line);
        let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        SecretString::from(trimmed.to_owned())
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("no terminal to ask for the password; use --password-stdin");
        }
        let first = rpassword::prompt_password("Password: ").context("reading the password")?;
        let second =
            rpassword::prompt_password("Repeat password: ").context("reading the password")?;
        let (first, second) = (SecretString::from(first), SecretString::from(second));
        if first.expose_secret() != second.expose_secret() {
            bail!("passwords differ");
        }
        first
    };
    Ok(Password::parse(secret)?)
}

/// SIGHUP reloads the certificate (telling systemd while it does).
async fn reload_on_hangup(mut hangups: Signal, source: Arc<tls::CertSource>) {
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the certificate");
        crate::notify::notify("RELOADING=1");
        source.reload_and_log();
        crate::notify::notify("READY=1");
    }
}

/// SIGTERM or SIGINT starts the graceful shutdown.
async fn cancel_on_signal(mut terminate: Signal, mut interrupt: Signal, token: CancellationToken) {
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    tracing::info!("signal received");
    crate::notify::notify("STOPPING=1");
    token.cancel();
}
