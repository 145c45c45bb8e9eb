//! `tlschat serve`: settings resolved, listeners bound, the app built and run to a signal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::config::{
    Argon2Settings, CertPaths, FileConfig, HistoryMode, LimitSettings, RoomSettings, resolve_listen,
};
use crate::password::Hasher;
use crate::report::Report;
use crate::store::Store;
use crate::tls::{self, DEFAULT_CERT_NAMES};
use serde_json::json;

use super::*;

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    #[command(flatten)]
    pub(super) db: DbArgs,
    /// Address to listen on; port 0 picks a free port [default: 0.0.0.0:7443]
    #[arg(long, env = "TLSCHAT_LISTEN", value_name = "ADDR")]
    pub(super) listen: Option<String>,
    /// Serve IRC clients (TLS only) on ADDR, e.g. 0.0.0.0:6697 [default: off]
    #[arg(long, env = "TLSCHAT_IRC_LISTEN", value_name = "ADDR")]
    pub(super) irc_listen: Option<String>,
    /// The server's name on IRC: the source of server messages and the host in every mask
    /// [default: tlschat]
    #[arg(long, env = "TLSCHAT_IRC_SERVER_NAME", value_name = "NAME")]
    pub(super) irc_server_name: Option<String>,
    /// Certificate chain, PEM [default: certs/server.crt, generated if missing]
    #[arg(long, env = "TLSCHAT_CERT", value_name = "FILE")]
    pub(super) cert: Option<PathBuf>,
    /// Private key, PEM [default: certs/server.key, generated if missing]
    #[arg(long, env = "TLSCHAT_KEY", value_name = "FILE")]
    pub(super) key: Option<PathBuf>,
    /// Admin socket (mode 0600), or "off" [default: next to the database, tlschat.sock]
    #[arg(long, env = "TLSCHAT_ADMIN_SOCKET", value_name = "PATH")]
    pub(super) admin_socket: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics; keep it on loopback or firewalled
    /// [default: off]
    #[arg(long, env = "TLSCHAT_METRICS_LISTEN", value_name = "ADDR")]
    pub(super) metrics_listen: Option<SocketAddr>,
    /// Allow --metrics-listen on a non-loopback address (the metrics have no authentication)
    #[arg(long, env = "TLSCHAT_METRICS_PUBLIC")]
    pub(super) metrics_public: bool,
    /// Serve the web client to browsers on the chat port (ALPN http/1.1) [default: true]
    #[arg(long, env = "TLSCHAT_WEB", value_name = "BOOL", action = clap::ArgAction::Set)]
    pub(super) web: Option<bool>,
    /// Another origin whose pages may open a WebSocket, e.g. https://chat.example.org
    /// (repeatable; the page's own origin is always allowed)
    #[arg(
        long = "web-origin",
        env = "TLSCHAT_WEB_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub(super) web_origins: Vec<String>,
    /// A load balancer whose connections begin with a PROXY protocol header (v2, or v1 text)
    /// naming the client (repeatable) [default: none]
    #[arg(
        long = "trusted-proxy",
        env = "TLSCHAT_TRUSTED_PROXIES",
        value_name = "IP",
        value_delimiter = ','
    )]
    pub(super) trusted_proxies: Vec<std::net::IpAddr>,
    /// Cluster mode: the Redis the nodes share (redis://[:PASSWORD@]HOST:PORT[/DB],
    /// rediss://…, redis+unix:///path); needs a postgres:// --db [default: off]
    #[arg(
        long,
        env = "TLSCHAT_CLUSTER",
        value_name = "URL",
        hide_env_values = true
    )]
    pub(super) cluster: Option<String>,
    /// PEM certificates that a rediss:// server's certificate must chain to [default: the
    /// system's roots]
    #[arg(long, env = "TLSCHAT_CLUSTER_CA", value_name = "FILE")]
    pub(super) cluster_ca: Option<PathBuf>,
    /// This node's name in the cluster, unique among live nodes [default: host name and port]
    #[arg(long, env = "TLSCHAT_NODE_NAME", value_name = "NAME")]
    pub(super) node_name: Option<String>,
    #[command(flatten, next_help_heading = "Limits")]
    pub(super) limits: LimitSettings,
    #[command(flatten, next_help_heading = "Rooms and history")]
    pub(super) rooms: RoomSettings,
    #[command(flatten, next_help_heading = "Password hashing")]
    pub(super) argon2: Argon2Settings,
}

pub(super) async fn serve(args: ServeArgs, report: Report) -> anyhow::Result<()> {
    let file = FileConfig::load(args.db.config.as_deref())?;
    let listen = resolve_listen(args.listen, &file)?;
    let irc_listen = crate::config::resolve_irc_listen(args.irc_listen, &file)?;
    let irc_server_name = crate::config::resolve_irc_server_name(args.irc_server_name, &file)?;
    let db = file.db(args.db.db);
    let certs = CertPaths::resolve(args.cert, args.key, &file);
    let limits = file.limits(&args.limits)?;
    let mut room_limits = file.room_limits(&args.rooms)?;
    let history_given = args.rooms.history.or(file.rooms.history);
    let cluster = match args.cluster.clone().or_else(|| file.cluster.clone()) {
        Some(url) => {
            if !matches!(db, crate::store::Db::Url(_)) {
                bail!(
                    "cluster mode needs PostgreSQL: --db must be a postgres:// URL (a SQLite file \
                     belongs to one node)"
                );
            }
            match history_given {
                None => room_limits.history = HistoryMode::Redis,
                Some(HistoryMode::Redis | HistoryMode::Off) => {}
                Some(other) => bail!(
                    "with --cluster, history is kept in Redis: history must be \"redis\" or \
                     \"off\", not \"{}\"",
                    crate::config::KnobValue::show(&other)
                ),
            }
            let node_name = match args.node_name.clone().or_else(|| file.node_name.clone()) {
                Some(name) => name,
                None => default_node_name(listen.port()),
            };
            let ca = cluster_ca(&url, args.cluster_ca.as_deref(), &file)?;
            Some(crate::app::ClusterSettings { url, node_name, ca })
        }
        None => {
            if room_limits.history == HistoryMode::Redis {
                bail!("history = \"redis\" needs cluster mode (--cluster URL)");
            }
            None
        }
    };
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

    let store = Store::open_db(&db).await?;
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
        irc_server_name,
        trusted_proxies: if args.trusted_proxies.is_empty() {
            file.trusted_proxies.clone().unwrap_or_default()
        } else {
            args.trusted_proxies.clone()
        },
        cluster,
    })
    .await?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let irc_listener = match irc_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the IRC address {addr}"))?,
        ),
        None => None,
    };
    let admin_path = match args.admin_socket.or_else(|| file.admin_socket.clone()) {
        Some(p) if p == "off" => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(crate::admin::default_socket_for(&db)),
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
    if let Some(l) = &irc_listener {
        let addr = l.local_addr()?;
        report.line(
            &format!("IRC (TLS) on {addr}"),
            "irc listening",
            &[("addr", json!(addr.to_string()))],
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
        irc: irc_listener,
        admin: admin_listener,
        metrics: metrics_listener,
    };
    app.run(listeners, shutdown).await?;
    Ok(())
}

/// The host's name and the chat port: a node name that differs between machines and between
/// nodes of one machine.
/// The certificates named by `--cluster-ca` (or the file's `cluster_ca`), read; only for a
/// `rediss://` URL.
pub(super) fn cluster_ca(
    url: &str,
    flag: Option<&std::path::Path>,
    file: &FileConfig,
) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(path) = flag.or(file.cluster_ca.as_deref()) else {
        return Ok(None);
    };
    if !url.starts_with("rediss://") {
        bail!("--cluster-ca applies to a rediss:// cluster URL only");
    }
    std::fs::read(path)
        .map(Some)
        .with_context(|| format!("reading --cluster-ca {}", path.display()))
}

fn default_node_name(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{port}")
}

/// A private key others can read is a key others may have copied.
pub(super) fn warn_if_key_readable(key: &Path) {
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
pub(super) fn s_client_command(local: SocketAddr) -> String {
    let ip = local.ip();
    let host = if ip.is_unspecified() || ip.is_loopback() {
        "localhost".to_owned()
    } else {
        ip.to_string()
    };
    format!("openssl s_client -quiet -connect {host}:{}", local.port())
}

/// Generates the default pair on first start; never touches configured paths.
pub(super) fn ensure_default_cert(certs: &CertPaths) -> anyhow::Result<bool> {
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

/// SIGHUP reloads the certificate (telling systemd while it does).
pub(super) async fn reload_on_hangup(mut hangups: Signal, source: Arc<tls::CertSource>) {
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the certificate");
        crate::notify::notify("RELOADING=1");
        source.reload_and_log();
        crate::notify::notify("READY=1");
    }
}

/// SIGTERM or SIGINT starts the graceful shutdown.
pub(super) async fn cancel_on_signal(
    mut terminate: Signal,
    mut interrupt: Signal,
    token: CancellationToken,
) {
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    tracing::info!("signal received");
    crate::notify::notify("STOPPING=1");
    token.cancel();
}
