//! `tlschat admin`: commands to a running server through its admin socket.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Subcommand};

use crate::config::FileConfig;
use crate::report::Report;
use serde_json::json;

#[derive(Debug, Args)]
pub(super) struct AdminArgs {
    #[command(subcommand)]
    pub(super) command: AdminCommand,
    /// TOML config file (keys: db, admin_socket)
    #[arg(long, env = "TLSCHAT_CONFIG", value_name = "FILE", global = true)]
    pub(super) config: Option<PathBuf>,
    /// The server's database, to find the socket next to it [default: tlschat.db]
    #[arg(long, env = "TLSCHAT_DB", value_name = "PATH", global = true)]
    pub(super) db: Option<PathBuf>,
    /// The server's admin socket [default: next to the database, tlschat.sock]
    #[arg(long, env = "TLSCHAT_ADMIN_SOCKET", value_name = "PATH", global = true)]
    pub(super) admin_socket: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(super) enum AdminCommand {
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

pub(super) async fn admin_command(args: AdminArgs, report: Report) -> anyhow::Result<()> {
    let file = FileConfig::load(args.config.as_deref())?;
    let path = match args.admin_socket {
        Some(p) => p,
        None => match file.admin_socket.as_deref() {
            Some(p) if p != "off" => PathBuf::from(p),
            _ => crate::admin::default_socket_for(&file.db(args.db)),
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
                    [user, peer, since, queued, node] => vec![
                        ("user", json!(user)),
                        ("peer", json!(peer)),
                        ("since", json!(since)),
                        ("queued_bytes", json!(queued.parse::<u64>().ok())),
                        ("node", json!(node)),
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
