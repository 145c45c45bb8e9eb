//! Every tunable number, its default, and how flag > env > config file > default are merged.
//!
//! The same `Option` structs are both clap argument groups and serde tables, so a knob is
//! declared once and is reachable by flag, environment variable and config file alike.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

/// Default listen address for `serve`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7443";
/// Default SQLite database path.
pub const DEFAULT_DB: &str = "tlschat.db";
/// Relayed messages that may wait for a slow or failing database: 64 MiB is about 500,000
/// chat lines, minutes of a busy server, and a small part of a small machine's memory.
pub const DEFAULT_HISTORY_BACKLOG_BYTES: usize = 64 * 1024 * 1024;
/// Default certificate chain path (generated on first start if missing).
pub const DEFAULT_CERT: &str = "certs/server.crt";
/// Default private key path (generated on first start if missing).
pub const DEFAULT_KEY: &str = "certs/server.key";

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid listen address {0:?} (expected IP:PORT, e.g. 0.0.0.0:7443)")]
    Listen(String),
    #[error("invalid setting {name}: {why}")]
    Invalid { name: &'static str, why: String },
}

/// Argon2id cost parameters as given by flag, env or file.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Argon2Settings {
    /// Argon2id memory cost in KiB [default: 19456]
    #[arg(
        long = "argon2-memory-kib",
        env = "TLSCHAT_ARGON2_MEMORY_KIB",
        value_name = "N"
    )]
    pub memory_kib: Option<u32>,
    /// Argon2id iterations (time cost) [default: 2]
    #[arg(
        long = "argon2-iterations",
        env = "TLSCHAT_ARGON2_ITERATIONS",
        value_name = "N"
    )]
    pub iterations: Option<u32>,
    /// Argon2id parallelism (lanes) [default: 1]
    #[arg(
        long = "argon2-parallelism",
        env = "TLSCHAT_ARGON2_PARALLELISM",
        value_name = "N"
    )]
    pub parallelism: Option<u32>,
    /// Password checks run at once [default: number of CPUs]
    #[arg(long = "hash-threads", env = "TLSCHAT_HASH_THREADS", value_name = "N")]
    pub threads: Option<usize>,
    /// Logins that may wait for a password check before "Server busy" [default: 64]
    #[arg(long = "hash-queue", env = "TLSCHAT_HASH_QUEUE", value_name = "N")]
    pub queue: Option<usize>,
}

/// Connection and session limits as given by flag, env or file (seconds for durations).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Longest accepted line in bytes, terminator excluded [default: 4096]
    #[arg(long, env = "TLSCHAT_MAX_LINE_BYTES", value_name = "BYTES")]
    pub max_line_bytes: Option<usize>,
    /// Bytes without a newline after which a client is disconnected [default: 65536]
    #[arg(long, env = "TLSCHAT_MAX_UNTERMINATED_BYTES", value_name = "BYTES")]
    pub max_unterminated_bytes: Option<usize>,
    /// Seconds allowed for the TLS handshake [default: 10]
    #[arg(long, env = "TLSCHAT_HANDSHAKE_TIMEOUT", value_name = "SECS")]
    pub handshake_timeout: Option<f64>,
    /// Seconds from connect to a successful login [default: 30]
    #[arg(long, env = "TLSCHAT_LOGIN_TIMEOUT", value_name = "SECS")]
    pub login_timeout: Option<f64>,
    /// Bytes that may wait in one member's outbound queue [default: 262144]
    #[arg(long, env = "TLSCHAT_OUTBOUND_QUEUE_BYTES", value_name = "BYTES")]
    pub outbound_queue_bytes: Option<usize>,
    /// Concurrent connections, all sources together [default: 10000]
    #[arg(long, env = "TLSCHAT_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Concurrent connections per source IP (IPv6 per /64) [default: 128]
    #[arg(long, env = "TLSCHAT_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Concurrent not-yet-logged-in connections per source IP [default: 16]
    #[arg(long, env = "TLSCHAT_MAX_PRELOGIN_PER_IP", value_name = "N")]
    pub max_prelogin_per_ip: Option<usize>,
    /// Concurrent not-yet-logged-in connections, all sources together [default: 25% of max_connections]
    #[arg(long, env = "TLSCHAT_MAX_PRELOGIN", value_name = "N")]
    pub max_prelogin: Option<usize>,
    /// Source IPs exempt from the per-IP caps (repeat the flag; comma-separated in env)
    #[arg(
        long = "exempt-ip",
        env = "TLSCHAT_EXEMPT_IPS",
        value_delimiter = ',',
        value_name = "IP"
    )]
    pub exempt_ips: Option<Vec<IpAddr>>,
    /// Lines a member may send in a burst [default: 10]
    #[arg(long, env = "TLSCHAT_RATE_BURST", value_name = "N")]
    pub rate_burst: Option<u32>,
    /// Lines per second a member may send once the burst is used [default: 2]
    #[arg(long, env = "TLSCHAT_RATE_PER_SEC", value_name = "N")]
    pub rate_per_sec: Option<f64>,
    /// Failed logins per username within the window before throttling [default: 5]
    #[arg(long, env = "TLSCHAT_USER_FAILURES", value_name = "N")]
    pub user_failures: Option<u32>,
    /// Failed logins per username within the window after which no source gets its password
    /// checked for that name [default: 50]
    #[arg(long, env = "TLSCHAT_USER_FAILURE_CEILING", value_name = "N")]
    pub user_failure_ceiling: Option<u32>,
    /// Window in seconds for per-username failures [default: 900]
    #[arg(long, env = "TLSCHAT_USER_FAILURE_WINDOW", value_name = "SECS")]
    pub user_failure_window: Option<f64>,
    /// Failed logins per source IP within the window before throttling [default: 20]
    #[arg(long, env = "TLSCHAT_IP_FAILURES", value_name = "N")]
    pub ip_failures: Option<u32>,
    /// Window in seconds for per-IP failures [default: 600]
    #[arg(long, env = "TLSCHAT_IP_FAILURE_WINDOW", value_name = "SECS")]
    pub ip_failure_window: Option<f64>,
    /// Seconds a throttled login waits for its answer; doubles with each further failure [default: 1]
    #[arg(long, env = "TLSCHAT_THROTTLE_DELAY", value_name = "SECS")]
    pub throttle_delay: Option<f64>,
    /// Seconds of idle before TCP keepalive probes start [default: 60]
    #[arg(long, env = "TLSCHAT_KEEPALIVE", value_name = "SECS")]
    pub keepalive: Option<f64>,
    /// Seconds between checks for accounts deleted, disabled or re-keyed by an admin [default: 2]
    #[arg(long, env = "TLSCHAT_ACCOUNT_CHECK_INTERVAL", value_name = "SECS")]
    pub account_check_interval: Option<f64>,
    /// Seconds between checks of the certificate files for changes (SIGHUP reloads at once) [default: 30]
    #[arg(long, env = "TLSCHAT_CERT_CHECK_INTERVAL", value_name = "SECS")]
    pub cert_check_interval: Option<f64>,
    /// Seconds given to sessions to say goodbye on shutdown [default: 3]
    #[arg(long, env = "TLSCHAT_SHUTDOWN_GRACE", value_name = "SECS")]
    pub shutdown_grace: Option<f64>,
    /// Seconds between pings to a WebSocket client; no pong for twice this closes it [default: 30]
    #[arg(long, env = "TLSCHAT_WS_PING_INTERVAL", value_name = "SECS")]
    pub ws_ping_interval: Option<f64>,
}

/// Where room history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HistoryMode {
    /// In the SQLite database: survives restarts.
    Sqlite,
    /// In memory only: lost on restart, with the read positions.
    Memory,
    /// Not kept: no `/history`, no catch-up.
    Off,
}

/// Rooms and history as given by flag, env or file (top-level keys of the file).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomSettings {
    /// Where history is kept: sqlite, memory or off [default: sqlite]
    #[arg(long, env = "TLSCHAT_HISTORY", value_name = "MODE")]
    pub history: Option<HistoryMode>,
    /// Messages kept per room [default: 10000]
    #[arg(long, env = "TLSCHAT_HISTORY_MESSAGES", value_name = "N")]
    pub history_messages: Option<u64>,
    /// Days a message is kept; 0 keeps messages of any age [default: 30]
    #[arg(long, env = "TLSCHAT_HISTORY_DAYS", value_name = "DAYS")]
    pub history_days: Option<u32>,
    /// Recent messages shown on joining a room [default: 10]
    #[arg(long, env = "TLSCHAT_JOIN_HISTORY", value_name = "N")]
    pub join_history: Option<usize>,
    /// Missed messages replayed per room at login [default: 50]
    #[arg(long, env = "TLSCHAT_CATCHUP_MESSAGES", value_name = "N")]
    pub catchup_messages: Option<usize>,
    /// Rooms a user may be in besides #lobby [default: 20]
    #[arg(long, env = "TLSCHAT_MAX_ROOMS_PER_USER", value_name = "N")]
    pub max_rooms_per_user: Option<usize>,
    /// Rooms with members online, #lobby included [default: 1000]
    #[arg(long, env = "TLSCHAT_MAX_ROOMS", value_name = "N")]
    pub max_rooms: Option<usize>,
    /// Bytes of relayed messages that may wait for the database; past it chat lines are
    /// refused [default: 67108864]
    #[arg(long, env = "TLSCHAT_HISTORY_BACKLOG_BYTES", value_name = "BYTES")]
    pub history_backlog_bytes: Option<usize>,
}

/// Validated rooms and history settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomLimits {
    /// Where history is kept.
    pub history: HistoryMode,
    /// Messages kept per room.
    pub history_messages: u64,
    /// Days a message is kept (0: no age limit).
    pub history_days: u32,
    /// Messages shown on joining.
    pub join_history: usize,
    /// Missed messages replayed per room at login.
    pub catchup_messages: usize,
    /// Rooms per user besides #lobby.
    pub max_rooms_per_user: usize,
    /// Rooms with members online.
    pub max_rooms: usize,
    /// Bytes of messages relayed but not yet written that may wait in memory.
    pub history_backlog_bytes: usize,
}

impl Default for RoomLimits {
    fn default() -> Self {
        RoomLimits {
            history: HistoryMode::Sqlite,
            history_messages: 10_000,
            history_days: 30,
            join_history: 10,
            catchup_messages: 50,
            max_rooms_per_user: 20,
            max_rooms: 1_000,
            history_backlog_bytes: DEFAULT_HISTORY_BACKLOG_BYTES,
        }
    }
}

impl RoomLimits {
    /// Applies the given overrides on top of the defaults, each within its range.
    pub fn from_settings(s: &RoomSettings) -> Result<Self, ConfigError> {
        let d = RoomLimits::default();
        let out = RoomLimits {
            history: s.history.unwrap_or(d.history),
            history_messages: s.history_messages.unwrap_or(d.history_messages),
            history_days: s.history_days.unwrap_or(d.history_days),
            join_history: s.join_history.unwrap_or(d.join_history),
            catchup_messages: s.catchup_messages.unwrap_or(d.catchup_messages),
            max_rooms_per_user: s.max_rooms_per_user.unwrap_or(d.max_rooms_per_user),
            max_rooms: s.max_rooms.unwrap_or(d.max_rooms),
            history_backlog_bytes: s.history_backlog_bytes.unwrap_or(d.history_backlog_bytes),
        };
        let values: [(&'static str, f64); 7] = [
            ("history_messages", out.history_messages as f64),
            ("history_days", f64::from(out.history_days)),
            ("join_history", out.join_history as f64),
            ("catchup_messages", out.catchup_messages as f64),
            ("max_rooms_per_user", out.max_rooms_per_user as f64),
            ("max_rooms", out.max_rooms as f64),
            ("history_backlog_bytes", out.history_backlog_bytes as f64),
        ];
        for (name, v) in values {
            check_bound(name, v, "")?;
        }
        Ok(out)
    }
}

/// Validated argon2id parameters and password-check capacity.
#[derive(Debug, Clone, PartialEq)]
pub struct HashSettings {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// Password checks that run at once.
    pub threads: usize,
    /// Password checks that may wait for a thread before logins are refused as busy.
    pub queue: usize,
}

impl Default for HashSettings {
    /// OWASP's argon2id baseline: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        HashSettings {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue: 64,
        }
    }
}

impl HashSettings {
    /// Applies the given overrides on top of the defaults.
    pub fn from_settings(s: &Argon2Settings) -> Result<Self, ConfigError> {
        let d = HashSettings::default();
        let out = HashSettings {
            memory_kib: s.memory_kib.unwrap_or(d.memory_kib),
            iterations: s.iterations.unwrap_or(d.iterations),
            parallelism: s.parallelism.unwrap_or(d.parallelism),
            threads: s.threads.unwrap_or(d.threads),
            queue: s.queue.unwrap_or(d.queue),
        };
        let values: [(&'static str, f64); 5] = [
            ("argon2_memory_kib", f64::from(out.memory_kib)),
            ("argon2_iterations", f64::from(out.iterations)),
            ("argon2_parallelism", f64::from(out.parallelism)),
            ("hash_threads", out.threads as f64),
            ("hash_queue", out.queue as f64),
        ];
        for (name, v) in values {
            check_bound(name, v, "")?;
        }
        Ok(out)
    }
}

/// Every limit the server enforces, with units in the types.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest line in bytes, terminator excluded.
    pub max_line_bytes: usize,
    /// Bytes without a newline before the client is disconnected.
    pub max_unterminated_bytes: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time from connect to successful login.
    pub login_timeout: Duration,
    /// Bytes that may wait in one member's outbound queue.
    pub outbound_queue_bytes: usize,
    /// Concurrent connections in total.
    pub max_connections: usize,
    /// Concurrent connections per source IP (IPv6 per /64).
    pub max_connections_per_ip: usize,
    /// Concurrent not-yet-logged-in connections per source IP.
    pub max_prelogin_per_ip: usize,
    /// Concurrent not-yet-logged-in connections in total.
    pub max_prelogin: usize,
    /// Sources exempt from per-IP caps.
    pub exempt_ips: Vec<IpAddr>,
    /// Line burst per member.
    pub rate_burst: u32,
    /// Sustained lines per second per member.
    pub rate_per_sec: f64,
    /// Failures per username within `user_failure_window` before the sources that took part
    /// are throttled.
    pub user_failures: u32,
    /// Failures per username within `user_failure_window` before every source is throttled.
    pub user_failure_ceiling: u32,
    /// Sliding window for per-username failures.
    pub user_failure_window: Duration,
    /// Failures per source IP within `ip_failure_window` before throttling.
    pub ip_failures: u32,
    /// Sliding window for per-IP failures.
    pub ip_failure_window: Duration,
    /// Delay before answering a throttled login (doubling per further failure, at most 30 s).
    pub throttle_delay: Duration,
    /// Idle time before TCP keepalive probes.
    pub keepalive: Duration,
    /// Time sessions get to flush their goodbye on shutdown.
    pub shutdown_grace: Duration,
    /// How often the server looks for accounts changed by the admin CLI.
    pub account_check_interval: Duration,
    /// How often the certificate files are checked for changes.
    pub cert_check_interval: Duration,
    /// How often a WebSocket client is pinged; a client silent for twice this is closed.
    pub ws_ping_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_bytes: 4096,
            max_unterminated_bytes: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            login_timeout: Duration::from_secs(30),
            outbound_queue_bytes: 256 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 128,
            max_prelogin_per_ip: 16,
            max_prelogin: 2_500,
            exempt_ips: Vec::new(),
            rate_burst: 10,
            rate_per_sec: 2.0,
            user_failures: 5,
            user_failure_ceiling: 50,
            user_failure_window: Duration::from_secs(15 * 60),
            ip_failures: 20,
            ip_failure_window: Duration::from_secs(10 * 60),
            throttle_delay: Duration::from_secs(1),
            keepalive: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(3),
            account_check_interval: Duration::from_secs(2),
            cert_check_interval: Duration::from_secs(30),
            ws_ping_interval: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// Applies the given overrides on top of the defaults and validates the result: every
    /// value must lie in its documented range ([`BOUNDS`] and the relations checked below).
    pub fn from_settings(s: &LimitSettings) -> Result<Self, ConfigError> {
        let d = Limits::default();
        let secs = |name, v: Option<f64>, dflt: Duration| -> Result<Duration, ConfigError> {
            match v {
                None => Ok(dflt),
                Some(x) => {
                    // Checked before converting: from_secs_f64 panics on 1e19 or NaN.
                    check_bound(name, x, " seconds")?;
                    Ok(Duration::from_secs_f64(x))
                }
            }
        };
        let max_connections = s.max_connections.unwrap_or(d.max_connections);
        let limits = Limits {
            max_line_bytes: s.max_line_bytes.unwrap_or(d.max_line_bytes),
            max_unterminated_bytes: s.max_unterminated_bytes.unwrap_or(d.max_unterminated_bytes),
            handshake_timeout: secs(
                "handshake_timeout",
                s.handshake_timeout,
                d.handshake_timeout,
            )?,
            login_timeout: secs("login_timeout", s.login_timeout, d.login_timeout)?,
            outbound_queue_bytes: s.outbound_queue_bytes.unwrap_or(d.outbound_queue_bytes),
            max_connections,
            max_connections_per_ip: s.max_connections_per_ip.unwrap_or(d.max_connections_per_ip),
            max_prelogin_per_ip: s.max_prelogin_per_ip.unwrap_or(d.max_prelogin_per_ip),
            max_prelogin: s
                .max_prelogin
                .unwrap_or_else(|| default_max_prelogin(max_connections)),
            exempt_ips: s.exempt_ips.clone().unwrap_or(d.exempt_ips),
            rate_burst: s.rate_burst.unwrap_or(d.rate_burst),
            rate_per_sec: s.rate_per_sec.unwrap_or(d.rate_per_sec),
            user_failures: s.user_failures.unwrap_or(d.user_failures),
            user_failure_ceiling: s.user_failure_ceiling.unwrap_or(d.user_failure_ceiling),
            user_failure_window: secs(
                "user_failure_window",
                s.user_failure_window,
                d.user_failure_window,
            )?,
            ip_failures: s.ip_failures.unwrap_or(d.ip_failures),
            ip_failure_window: secs(
                "ip_failure_window",
                s.ip_failure_window,
                d.ip_failure_window,
            )?,
            throttle_delay: secs("throttle_delay", s.throttle_delay, d.throttle_delay)?,
            keepalive: secs("keepalive", s.keepalive, d.keepalive)?,
            shutdown_grace: secs("shutdown_grace", s.shutdown_grace, d.shutdown_grace)?,
            account_check_interval: secs(
                "account_check_interval",
                s.account_check_interval,
                d.account_check_interval,
            )?,
            cert_check_interval: secs(
                "cert_check_interval",
                s.cert_check_interval,
                d.cert_check_interval,
            )?,
            ws_ping_interval: secs("ws_ping_interval", s.ws_ping_interval, d.ws_ping_interval)?,
        };
        limits.validate()?;
        Ok(limits)
    }

    /// Rejects values outside their documented ranges, naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let counts: [(&'static str, f64); 12] = [
            ("max_line_bytes", self.max_line_bytes as f64),
            ("max_unterminated_bytes", self.max_unterminated_bytes as f64),
            ("outbound_queue_bytes", self.outbound_queue_bytes as f64),
            ("max_connections", self.max_connections as f64),
            ("max_connections_per_ip", self.max_connections_per_ip as f64),
            ("max_prelogin_per_ip", self.max_prelogin_per_ip as f64),
            ("max_prelogin", self.max_prelogin as f64),
            ("rate_burst", f64::from(self.rate_burst)),
            ("rate_per_sec", self.rate_per_sec),
            ("user_failures", f64::from(self.user_failures)),
            ("user_failure_ceiling", f64::from(self.user_failure_ceiling)),
            ("ip_failures", f64::from(self.ip_failures)),
        ];
        let durations: [(&'static str, Duration); 10] = [
            ("handshake_timeout", self.handshake_timeout),
            ("login_timeout", self.login_timeout),
            ("user_failure_window", self.user_failure_window),
            ("ip_failure_window", self.ip_failure_window),
            ("throttle_delay", self.throttle_delay),
            ("keepalive", self.keepalive),
            ("shutdown_grace", self.shutdown_grace),
            ("account_check_interval", self.account_check_interval),
            ("cert_check_interval", self.cert_check_interval),
            ("ws_ping_interval", self.ws_ping_interval),
        ];
        for (name, v) in counts {
            check_bound(name, v, "")?;
        }
        for (name, d) in durations {
            check_bound(name, d.as_secs_f64(), " seconds")?;
        }
        let relation = |name, ok: bool, why: &str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    name,
                    why: why.into(),
                })
            }
        };
        relation(
            "max_unterminated_bytes",
            self.max_unterminated_bytes >= self.max_line_bytes,
            "must be at least max_line_bytes",
        )?;
        // The queue must hold at least one full line plus its prefix, or every long line evicts.
        relation(
            "outbound_queue_bytes",
            self.outbound_queue_bytes >= self.max_line_bytes + 64,
            "must be at least max_line_bytes + 64",
        )?;
        relation(
            "max_prelogin",
            self.max_prelogin <= self.max_connections,
            "must be at most max_connections",
        )?;
        relation(
            "user_failure_ceiling",
            self.user_failure_ceiling >= self.user_failures,
            "must be at least user_failures",
        )
    }
}

/// The documented range of each numeric setting: (minimum, maximum), in the setting's unit
/// (bytes, connections, lines, failures, seconds). Whatever the values in these ranges, no
/// arithmetic on them can overflow (the largest product is a delay of 60 s × 2^16, capped).
pub const BOUNDS: [(&str, f64, f64); 34] = [
    ("history_backlog_bytes", 65_536.0, 17_179_869_184.0),
    ("history_messages", 1.0, 10_000_000.0),
    ("history_days", 0.0, 36_500.0),
    ("join_history", 0.0, 500.0),
    ("catchup_messages", 0.0, 10_000.0),
    ("max_rooms_per_user", 0.0, 1_000.0),
    ("max_rooms", 1.0, 100_000.0),
    ("argon2_memory_kib", 8.0, 4_194_304.0),
    ("argon2_iterations", 1.0, 100.0),
    ("argon2_parallelism", 1.0, 64.0),
    ("hash_threads", 1.0, 1_024.0),
    ("hash_queue", 0.0, 1_000_000.0),
    ("max_line_bytes", 16.0, 1_048_576.0),
    ("max_unterminated_bytes", 16.0, 67_108_864.0),
    ("outbound_queue_bytes", 1_024.0, 1_073_741_824.0),
    ("max_connections", 1.0, 1_000_000.0),
    ("max_connections_per_ip", 1.0, 1_000_000.0),
    ("max_prelogin_per_ip", 1.0, 1_000_000.0),
    ("max_prelogin", 1.0, 1_000_000.0),
    ("rate_burst", 1.0, 1_000_000.0),
    ("rate_per_sec", 0.01, 1_000_000.0),
    ("user_failures", 1.0, 100_000.0),
    ("user_failure_ceiling", 1.0, 100_000.0),
    ("ip_failures", 1.0, 100_000.0),
    ("handshake_timeout", 0.01, 86_400.0),
    ("login_timeout", 0.01, 86_400.0),
    ("user_failure_window", 0.01, 86_400.0),
    ("ip_failure_window", 0.01, 86_400.0),
    ("throttle_delay", 0.001, 60.0),
    // Linux takes keepalive times up to 32767 s; the user timeout is twice this, in ms.
    ("keepalive", 1.0, 7_200.0),
    ("shutdown_grace", 0.01, 3_600.0),
    ("account_check_interval", 0.01, 3_600.0),
    ("cert_check_interval", 0.01, 86_400.0),
    ("ws_ping_interval", 0.01, 3_600.0),
];

/// Checks `v` against the setting's range in [`BOUNDS`]; NaN and infinities are out of range.
fn check_bound(name: &'static str, v: f64, unit: &str) -> Result<(), ConfigError> {
    let (min, max) = BOUNDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, min, max)| (*min, *max))
        .expect("every bounded setting is listed in BOUNDS");
    if v.is_finite() && v >= min && v <= max {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            name,
            why: format!("{v} is out of range: use {min} to {max}{unit}"),
        })
    }
}

/// A quarter of all slots may be held by connections that have not logged in.
pub fn default_max_prelogin(max_connections: usize) -> usize {
    (max_connections / 4).max(1)
}

/// The optional TOML config file (`--config FILE`); every key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `listen = "0.0.0.0:7443"`
    pub listen: Option<String>,
    /// `db = "tlschat.db"`
    pub db: Option<PathBuf>,
    /// `cert = "certs/server.crt"`
    pub cert: Option<PathBuf>,
    /// `key = "certs/server.key"`
    pub key: Option<PathBuf>,
    /// `admin_socket = "/run/tlschat/admin.sock"` or `"off"`
    pub admin_socket: Option<String>,
    /// `metrics_listen = "127.0.0.1:9464"` (off when absent)
    pub metrics_listen: Option<SocketAddr>,
    /// `metrics_public = true` allows a non-loopback `metrics_listen`.
    pub metrics_public: Option<bool>,
    /// `history = "sqlite"`, `"memory"` or `"off"`.
    pub history: Option<HistoryMode>,
    /// `history_messages = 10000`
    pub history_messages: Option<u64>,
    /// `history_days = 30`
    pub history_days: Option<u32>,
    /// `join_history = 10`
    pub join_history: Option<usize>,
    /// `catchup_messages = 50`
    pub catchup_messages: Option<usize>,
    /// `max_rooms_per_user = 20`
    pub max_rooms_per_user: Option<usize>,
    /// `max_rooms = 1000`
    pub max_rooms: Option<usize>,
    /// `history_backlog_bytes = 67108864`
    pub history_backlog_bytes: Option<usize>,
    /// `web = false` turns the web client off.
    pub web: Option<bool>,
    /// `web_origins = ["https://chat.example.org"]`: pages elsewhere that may open a WebSocket.
    pub web_origins: Option<Vec<String>>,
    /// `[argon2]` table.
    #[serde(default)]
    pub argon2: Argon2Settings,
    /// `[limits]` table.
    #[serde(default)]
    pub limits: LimitSettings,
}

impl FileConfig {
    /// Reads the file if one was named; no file means every key is unset.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.message().to_owned(),
        })
    }

    /// The database path: the flag/env value, else the file's, else the default.
    pub fn db_path(&self, given: Option<PathBuf>) -> PathBuf {
        given
            .or_else(|| self.db.clone())
            .unwrap_or_else(|| DEFAULT_DB.into())
    }

    /// Argon2 settings with flag/env values taking precedence over the file's.
    pub fn hash_settings(&self, given: &Argon2Settings) -> Result<HashSettings, ConfigError> {
        let f = &self.argon2;
        HashSettings::from_settings(&Argon2Settings {
            memory_kib: given.memory_kib.or(f.memory_kib),
            iterations: given.iterations.or(f.iterations),
            parallelism: given.parallelism.or(f.parallelism),
            threads: given.threads.or(f.threads),
            queue: given.queue.or(f.queue),
        })
    }

    /// Rooms and history settings with flag/env values taking precedence over the file's.
    pub fn room_limits(&self, given: &RoomSettings) -> Result<RoomLimits, ConfigError> {
        RoomLimits::from_settings(&RoomSettings {
            history: given.history.or(self.history),
            history_messages: given.history_messages.or(self.history_messages),
            history_days: given.history_days.or(self.history_days),
            join_history: given.join_history.or(self.join_history),
            catchup_messages: given.catchup_messages.or(self.catchup_messages),
            max_rooms_per_user: given.max_rooms_per_user.or(self.max_rooms_per_user),
            max_rooms: given.max_rooms.or(self.max_rooms),
            history_backlog_bytes: given.history_backlog_bytes.or(self.history_backlog_bytes),
        })
    }

    /// Limits with flag/env values taking precedence over the file's.
    pub fn limits(&self, given: &LimitSettings) -> Result<Limits, ConfigError> {
        let f = &self.limits;
        Limits::from_settings(&LimitSettings {
            max_line_bytes: given.max_line_bytes.or(f.max_line_bytes),
            max_unterminated_bytes: given.max_unterminated_bytes.or(f.max_unterminated_bytes),
            handshake_timeout: given.handshake_timeout.or(f.handshake_timeout),
            login_timeout: given.login_timeout.or(f.login_timeout),
            outbound_queue_bytes: given.outbound_queue_bytes.or(f.outbound_queue_bytes),
            max_connections: given.max_connections.or(f.max_connections),
            max_connections_per_ip: given.max_connections_per_ip.or(f.max_connections_per_ip),
            max_prelogin_per_ip: given.max_prelogin_per_ip.or(f.max_prelogin_per_ip),
            max_prelogin: given.max_prelogin.or(f.max_prelogin),
            exempt_ips: given.exempt_ips.clone().or_else(|| f.exempt_ips.clone()),
            rate_burst: given.rate_burst.or(f.rate_burst),
            rate_per_sec: given.rate_per_sec.or(f.rate_per_sec),
            user_failures: given.user_failures.or(f.user_failures),
            user_failure_ceiling: given.user_failure_ceiling.or(f.user_failure_ceiling),
            user_failure_window: given.user_failure_window.or(f.user_failure_window),
            ip_failures: given.ip_failures.or(f.ip_failures),
            ip_failure_window: given.ip_failure_window.or(f.ip_failure_window),
            throttle_delay: given.throttle_delay.or(f.throttle_delay),
            keepalive: given.keepalive.or(f.keepalive),
            shutdown_grace: given.shutdown_grace.or(f.shutdown_grace),
            account_check_interval: given.account_check_interval.or(f.account_check_interval),
            cert_check_interval: given.cert_check_interval.or(f.cert_check_interval),
            ws_ping_interval: given.ws_ping_interval.or(f.ws_ping_interval),
        })
    }
}

/// Where the certificate comes from: defaults may be generated, named files never are.
#[derive(Debug, Clone, PartialEq)]
pub struct CertPaths {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// True when neither path was configured, so a missing pair may be generated.
    pub is_default: bool,
}

impl CertPaths {
    /// Merges flag/env and file values; either path configured makes the pair explicit.
    pub fn resolve(cert: Option<PathBuf>, key: Option<PathBuf>, file: &FileConfig) -> Self {
        let cert = cert.or_else(|| file.cert.clone());
        let key = key.or_else(|| file.key.clone());
        let is_default = cert.is_none() && key.is_none();
        CertPaths {
            cert: cert.unwrap_or_else(|| DEFAULT_CERT.into()),
            key: key.unwrap_or_else(|| DEFAULT_KEY.into()),
            is_default,
        }
    }
}

/// Parses the listen address (flag/env > file > default).
pub fn resolve_listen(given: Option<String>, file: &FileConfig) -> Result<SocketAddr, ConfigError> {
    let text = given
        .or_else(|| file.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    text.parse().map_err(|_| ConfigError::Listen(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_file_and_file_beats_default() {
        let file: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:9000\"\n[limits]\nmax_line_bytes = 100\nrate_burst = 3\n",
        )
        .unwrap();
        let given = LimitSettings {
            max_line_bytes: Some(200),
            ..Default::default()
        };
        let limits = file.limits(&given).unwrap();
        assert_eq!(limits.max_line_bytes, 200);
        assert_eq!(limits.rate_burst, 3);
        assert_eq!(limits.max_connections, 10_000);
        assert_eq!(
            resolve_listen(None, &file).unwrap(),
            "127.0.0.1:9000".parse().unwrap()
        );
        assert_eq!(
            resolve_listen(Some("127.0.0.1:1".into()), &file).unwrap(),
            "127.0.0.1:1".parse().unwrap()
        );
    }

    #[test]
    fn room_settings_are_top_level_keys_under_flags() {
        let file: FileConfig = toml::from_str(
            "history = \"memory\"\nhistory_messages = 500\nhistory_days = 0\n\
             join_history = 3\ncatchup_messages = 7\nmax_rooms_per_user = 2\nmax_rooms = 9\n\
             history_backlog_bytes = 1048576\n",
        )
        .unwrap();
        let given = RoomSettings {
            history: Some(HistoryMode::Off),
            max_rooms: Some(50),
            ..Default::default()
        };
        let rooms = file.room_limits(&given).unwrap();
        assert_eq!(
            rooms,
            RoomLimits {
                history: HistoryMode::Off,
                history_messages: 500,
                history_days: 0,
                join_history: 3,
                catchup_messages: 7,
                max_rooms_per_user: 2,
                max_rooms: 50,
                history_backlog_bytes: 1_048_576,
            }
        );
        assert_eq!(
            FileConfig::default()
                .room_limits(&RoomSettings::default())
                .unwrap(),
            RoomLimits::default()
        );
    }

    #[test]
    fn room_settings_out_of_range_name_the_key() {
        for (text, key) in [
            ("history_messages = 0", "history_messages"),
            ("join_history = 501", "join_history"),
            ("max_rooms = 0", "max_rooms"),
            ("max_rooms_per_user = 1001", "max_rooms_per_user"),
            ("catchup_messages = 10001", "catchup_messages"),
            ("history_days = 40000", "history_days"),
        ] {
            let file: FileConfig = toml::from_str(text).unwrap();
            let err = file.room_limits(&RoomSettings::default()).unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
        assert!(toml::from_str::<FileConfig>("history = \"disk\"").is_err());
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        assert!(toml::from_str::<FileConfig>("lissten = \"x\"").is_err());
    }

    fn rejected(toml_text: &str) -> String {
        let file: FileConfig = toml::from_str(toml_text).unwrap();
        let err = file
            .limits(&LimitSettings::default())
            .and_then(|_| file.hash_settings(&Argon2Settings::default()))
            .unwrap_err();
        err.to_string()
    }

    #[test]
    fn out_of_range_values_are_rejected_with_the_key_name() {
        let cases = [
            ("[limits]\nlogin_timeout = 1e19", "login_timeout"),
            ("[limits]\nrate_per_sec = 1e-20", "rate_per_sec"),
            ("[limits]\nrate_per_sec = nan", "rate_per_sec"),
            ("[limits]\nhandshake_timeout = -1", "handshake_timeout"),
            ("[limits]\nkeepalive = 100000", "keepalive"),
            ("[limits]\nthrottle_delay = 3600", "throttle_delay"),
            (
                "[limits]\nuser_failure_window = 1e300",
                "user_failure_window",
            ),
            ("[limits]\nshutdown_grace = inf", "shutdown_grace"),
            (
                "[limits]\noutbound_queue_bytes = 2000000000",
                "outbound_queue_bytes",
            ),
            ("[limits]\nmax_line_bytes = 0", "max_line_bytes"),
            ("[limits]\nmax_connections = 0", "max_connections"),
            (
                "[limits]\nmax_connections = 100\nmax_prelogin = 101",
                "max_prelogin",
            ),
            ("[limits]\nrate_burst = 0", "rate_burst"),
            (
                "[limits]\nuser_failures = 10\nuser_failure_ceiling = 9",
                "user_failure_ceiling",
            ),
            ("[argon2]\nmemory_kib = 4294967295", "argon2_memory_kib"),
            ("[argon2]\nthreads = 0", "hash_threads"),
        ];
        for (text, key) in cases {
            let err = rejected(text);
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn every_default_is_inside_its_range() {
        Limits::default().validate().unwrap();
        HashSettings::from_settings(&Argon2Settings::default()).unwrap();
    }

    #[test]
    fn prelogin_cap_defaults_to_a_quarter_of_all_connections() {
        let file: FileConfig = toml::from_str("[limits]\nmax_connections = 400").unwrap();
        assert_eq!(
            file.limits(&LimitSettings::default()).unwrap().max_prelogin,
            100
        );
        assert_eq!(Limits::default().max_prelogin, 2_500);
    }

    #[test]
    fn zero_timeouts_are_rejected() {
        let s = LimitSettings {
            login_timeout: Some(0.0),
            ..Default::default()
        };
        assert!(Limits::from_settings(&s).is_err());
    }

    #[test]
    fn naming_either_cert_path_makes_the_pair_explicit() {
        let file = FileConfig::default();
        assert!(CertPaths::resolve(None, None, &file).is_default);
        assert!(!CertPaths::resolve(None, Some("k.pem".into()), &file).is_default);
    }
}
