//! The admin control socket: a local Unix socket (mode 0600) on which `serve` answers one
//! command per connection: `who`, `kick NAME [REASON]`, `say TEXT`.
//!
//! Replies are text lines; the last line is `ok` or starts with `error: `.
//!
//! Access: the socket is created inside a fresh private directory (mode 0700), set to 0600
//! there and only then renamed into place, so it is never reachable by others, not even for
//! an instant; a peer whose uid (SO_PEERCRED) is neither the server's nor root is refused
//! whatever the file mode; every command is logged with the peer's uid.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::protocol;
use crate::room::Rooms;

/// Longest command line accepted on the socket.
const MAX_COMMAND_BYTES: u64 = 4096;
/// A client that does not send its command within this time is dropped.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// The control socket could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("another server is already listening on the admin socket {0}")]
    InUse(PathBuf),
    #[error("admin socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "no tlschat server is running with admin socket {0} (start one with `tlschat serve`, or give its --admin-socket)"
    )]
    NoServer(PathBuf),
    #[error(
        "refusing to use {0} as the admin socket: a file that is not a socket is there (choose another --admin-socket, or \"off\")"
    )]
    NotASocket(PathBuf),
}

/// The bound control socket.
pub struct AdminSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Identifies our socket file, so that shutdown never removes another file.
    inode: (u64, u64),
    /// The uid that owns the socket: the server's effective uid.
    owner: u32,
}

/// Binds the socket with mode 0600, replacing a stale socket left by a server that is gone;
/// refuses any other kind of file at `path`.
pub async fn bind(path: &Path) -> Result<AdminSocket, AdminError> {
    let io_err = |source| AdminError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(AdminError::NotASocket(path.to_owned()));
        }
        Ok(_) if UnixStream::connect(path).await.is_ok() => {
            return Err(AdminError::InUse(path.to_owned()));
        }
        // A stale socket: the rename below replaces it.
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Made with mode 0700 by tempfile; removed again when `private` drops.
    let private = tempfile::Builder::new()
        .prefix(".tlschat-admin-")
        .tempdir_in(parent)
        .map_err(io_err)?;
    let staged = private.path().join("admin.sock");
    let listener = UnixListener::bind(&staged).map_err(io_err)?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    let meta = std::fs::metadata(&staged).map_err(io_err)?;
    std::fs::rename(&staged, path).map_err(io_err)?;
    Ok(AdminSocket {
        listener,
        path: path.to_owned(),
        inode: (meta.dev(), meta.ino()),
        owner: meta.uid(),
    })
}

impl AdminSocket {
    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Who may use the socket: the server's own uid and root.
pub fn peer_allowed(peer_uid: u32, server_uid: u32) -> bool {
    peer_uid == server_uid || peer_uid == 0
}

/// Answers commands until `shutdown`, then removes the socket file (if it is still ours).
pub async fn serve(
    socket: AdminSocket,
    room: Arc<Rooms>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let AdminSocket {
        listener,
        path,
        inode,
        owner,
    } = socket;
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let (room, metrics) = (Arc::clone(&room), Arc::clone(&metrics));
        tokio::spawn(async move {
            if let Err(e) = answer(stream, owner, &room, &metrics).await {
                tracing::debug!(error = %e, "admin connection failed");
            }
        });
    }
    let ours = std::fs::symlink_metadata(&path)
        .is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == inode);
    if ours {
        let _ = std::fs::remove_file(&path);
    }
}

async fn answer(
    stream: UnixStream,
    server_uid: u32,
    room: &Rooms,
    metrics: &Metrics,
) -> io::Result<()> {
    let peer_uid = stream.peer_cred()?.uid();
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_COMMAND_BYTES));
    // Read even a refused peer's command, so that closing does not reset the connection
    // before it has read the refusal.
    tokio::time::timeout(COMMAND_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no command"))??;
    if !peer_allowed(peer_uid, server_uid) {
        tracing::warn!(
            peer_uid,
            "admin connection refused: not the server's uid or root"
        );
        let reply =
            format!("error: permission denied: uid {peer_uid} may not administer this server\n");
        write.write_all(reply.as_bytes()).await?;
        return write.shutdown().await;
    }
    let command = line.trim_end_matches(['\r', '\n']);
    log_command(peer_uid, command);
    let reply = execute(command, room, metrics).await;
    write.write_all(reply.as_bytes()).await?;
    write.shutdown().await
}

/// The audit trail: who ran what on whom. The text of `say` is a message body, so only its
/// length is logged.
fn log_command(peer_uid: u32, command: &str) {
    let (word, rest) = command.split_once(' ').unwrap_or((command, ""));
    let rest = rest.trim();
    match word {
        "kick" => {
            let (target, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            tracing::info!(peer_uid, command = "kick", target = ?target, reason = ?reason.trim(), "admin command");
        }
        "say" => tracing::info!(
            peer_uid,
            command = "say",
            text_len = rest.len(),
            "admin command"
        ),
        "who" => tracing::info!(peer_uid, command = "who", "admin command"),
        _ => tracing::info!(
            peer_uid,
            command_len = command.len(),
            "unknown admin command"
        ),
    }
}

/// Runs one command and renders the reply.
pub async fn execute(command: &str, room: &Rooms, metrics: &Metrics) -> String {
    let (word, rest) = command.split_once(' ').unwrap_or((command, ""));
    let rest = rest.trim();
    match word {
        "who" if room.link().is_some() => who_in_cluster(room).await,
        "who" => {
            let mut out = String::new();
            for s in room.presence().sessions() {
                let since = crate::report::utc(
                    s.since
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                );
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    s.name,
                    s.peer,
                    since,
                    s.queued_bytes,
                    s.protocol.as_str()
                ));
            }
            out.push_str("ok\n");
            out
        }
        "kick" if !rest.is_empty() => {
            let (name, reason) = match rest.split_once(' ') {
                Some((n, r)) => (n, Some(r.trim()).filter(|r| !r.is_empty())),
                None => (rest, None),
            };
            let kicked = room
                .presence()
                .find(name)
                .filter(|id| room.kick(*id, &protocol::kicked(reason), reason))
                .is_some()
                || kick_elsewhere(room, name, reason).await;
            if kicked {
                crate::metrics::inc(&metrics.evictions_admin);
                tracing::info!(user = ?name, "kicked by an administrator");
                "ok\n".to_owned()
            } else {
                format!("error: {} is not online\n", protocol::clean(name))
            }
        }
        "say" if !rest.is_empty() => {
            if room.announce(rest) {
                "ok\n".to_owned()
            } else {
                "error: chat is unavailable right now (history is waiting for the database); \
                 nothing was sent\n"
                    .to_owned()
            }
        }
        _ => "error: commands are: who | kick NAME [REASON] | say TEXT\n".to_owned(),
    }
}

/// `who` on a cluster node: every node's sessions, the node's name in a fifth column and the
/// protocol in a sixth (bytes queued and protocols are known for this node's sessions only:
/// `-` for the others').
async fn who_in_cluster(room: &Rooms) -> String {
    let Some(link) = room.link() else {
        return "ok\n".to_owned();
    };
    let (sessions, names) = match (link.sessions.sessions().await, link.nodes.names().await) {
        (Ok(sessions), Ok(names)) => (sessions, names),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "listing the cluster's sessions failed");
            return "error: the cluster is unavailable right now\n".to_owned();
        }
    };
    let here: std::collections::HashMap<_, _> = room
        .presence()
        .sessions()
        .into_iter()
        .map(|s| (s.id, (s.queued_bytes, s.protocol)))
        .collect();
    let mut out = String::new();
    for s in sessions {
        let since = crate::report::utc(u64::try_from(s.since_ms / 1000).unwrap_or(0));
        let (queued, protocol) = here.get(&s.conn()).map_or_else(
            || ("-".to_owned(), "-"),
            |(queued, protocol)| (queued.to_string(), protocol.as_str()),
        );
        let node = names.get(&s.node).map_or("?", String::as_str);
        out.push_str(&format!(
            "{}\t{}\t{since}\t{queued}\t{node}\t{protocol}\n",
            s.name, s.peer
        ));
    }
    out.push_str("ok\n");
    out
}

/// `kick` of a session on another node of the cluster: its node closes it.
async fn kick_elsewhere(room: &Rooms, name: &str, reason: Option<&str>) -> bool {
    let Some(link) = room.link() else {
        return false;
    };
    match link.sessions.find(name).await {
        Ok(Some(session)) if session.node != link.node => {
            let note = crate::room::presence::inbox::Note::Kick {
                conn: session.conn(),
                reason: reason.map(str::to_owned),
            };
            link.send(session.node, note);
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(error = %e, "finding a session to kick failed");
            false
        }
    }
}

/// Sends one command to a running server and returns its reply.
pub async fn request(path: &Path, command: &str) -> Result<String, AdminError> {
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                AdminError::NoServer(path.to_owned())
            }
            _ => AdminError::Io {
                path: path.to_owned(),
                source: e,
            },
        })?;
    let io_err = |source| AdminError::Io {
        path: path.to_owned(),
        source,
    };
    stream
        .write_all(format!("{command}\n").as_bytes())
        .await
        .map_err(io_err)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.map_err(io_err)?;
    Ok(reply)
}

/// The default socket path: next to the database, `tlschat.db` → `tlschat.sock`.
pub fn default_socket_path(db: &Path) -> PathBuf {
    db.with_extension("sock")
}

/// The admin socket's default for a database: next to a SQLite file, or `tlschat.sock` in the
/// working directory when the database is a PostgreSQL server.
pub fn default_socket_for(db: &crate::store::Db) -> PathBuf {
    match db {
        crate::store::Db::File(path) => default_socket_path(path),
        crate::store::Db::Url(_) => PathBuf::from("tlschat.sock"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_commands_and_offline_targets_are_errors() {
        let room = Rooms::new(1 << 20);
        let m = Metrics::default();
        assert!(execute("frob", &room, &m).await.starts_with("error: "));
        assert!(execute("kick", &room, &m).await.starts_with("error: "));
        assert_eq!(
            execute("kick zed spam", &room, &m).await,
            "error: zed is not online\n"
        );
        assert_eq!(execute("who", &room, &m).await, "ok\n");
    }

    #[test]
    fn only_the_servers_uid_and_root_are_allowed() {
        assert!(peer_allowed(1000, 1000));
        assert!(peer_allowed(0, 1000));
        assert!(!peer_allowed(1001, 1000));
        assert!(!peer_allowed(65534, 0));
    }

    #[tokio::test]
    async fn bind_refuses_to_replace_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.db");
        std::fs::write(&path, "precious").unwrap();
        assert!(matches!(bind(&path).await, Err(AdminError::NotASocket(_))));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[tokio::test]
    async fn bind_replaces_a_stale_socket_and_leaves_no_staging_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let socket = bind(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(UnixStream::connect(socket.path()).await.is_ok());
    }

    #[test]
    fn default_socket_sits_next_to_the_database() {
        assert_eq!(
            default_socket_path(Path::new("/var/lib/tlschat/tlschat.db")),
            PathBuf::from("/var/lib/tlschat/tlschat.sock")
        );
    }
}
