//! Command-line interface, one file per subcommand: `serve`, `cert`, `user`, `admin`,
//! `doctor`, `connect`.

mod admin;
mod cert;
mod connect;
mod doctor;
mod serve;
mod user;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::report::Report;
use admin::AdminArgs;
use cert::CertCommand;
use connect::{CONNECT_EXAMPLE, ConnectArgs};
use doctor::DoctorArgs;
use serve::ServeArgs;
use user::UserCommand;

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

/// Options every command that touches the database takes.
#[derive(Debug, Args)]
pub(super) struct DbArgs {
    /// TOML config file (keys: listen, db, cert, key, [limits], [argon2])
    #[arg(long, env = "TLSCHAT_CONFIG", value_name = "FILE")]
    pub(super) config: Option<PathBuf>,
    /// SQLite database file, created if missing, or a postgres:// URL [default: tlschat.db]
    #[arg(long, env = "TLSCHAT_DB", value_name = "PATH|URL")]
    pub(super) db: Option<PathBuf>,
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let report = Report::new(cli.log_format == LogFormat::Json);
    match cli.command {
        Command::Serve(args) => serve::serve(*args, report).await,
        Command::Cert(CertCommand::Generate {
            out,
            names,
            force,
            days,
        }) => cert::cert_generate(&out, names, force, days, report),
        Command::User(cmd) => user::user(cmd, report).await,
        Command::Admin(args) => admin::admin_command(args, report).await,
        Command::Doctor(args) => doctor::doctor(*args, report).await,
        Command::Connect(args) => connect::connect(args).await,
    }
}
