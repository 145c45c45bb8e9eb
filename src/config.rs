//! Every tunable number, its default, and how flag > env > config file > default are merged.
//!
//! Each knob is declared once, in a [`knobs!`] table: its documentation, value type, default,
//! range, flag, environment variable and file key. From that line come the clap argument (with
//! `[default: …]` in its help), the serde field of the config file, the validated value, the
//! range check that names the setting, and the [`Knob`] entry the README's tables are tested
//! against.

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

/// One knob as declared: what the README's tables and error messages refer to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Knob {
    /// The name errors use (the file key, prefixed `argon2_`/`hash_` in the `[argon2]` table
    /// as its flag is).
    pub name: &'static str,
    /// The key in the config file, within `table` if there is one.
    pub key: &'static str,
    /// The config file's table (`limits`, `argon2`), or none for a top-level key.
    pub table: Option<&'static str>,
    /// The flag, without `--`.
    pub flag: &'static str,
    /// The environment variable.
    pub env: &'static str,
    /// The documented range (minimum, maximum), in `unit`; none for values that are not
    /// numbers. Whatever the values in these ranges, no arithmetic on them can overflow (the
    /// largest product is a delay of 60 s × 2^16, capped).
    pub range: Option<(f64, f64)>,
    /// `""`, or `" seconds"` for durations.
    pub unit: &'static str,
}

/// A knob's value type: how it reads as a number for its range, and how its default is shown.
pub trait KnobValue {
    /// Appended to a range in errors.
    const UNIT: &'static str = "";
    /// The value as a number in the knob's unit; none for values without a range.
    fn number(&self) -> Option<f64>;
    /// The value as `--help` shows a default.
    fn show(&self) -> String;
}

macro_rules! number_knob {
    ($($t:ty),*) => {$(
        impl KnobValue for $t {
            #[allow(clippy::cast_precision_loss, clippy::cast_lossless)]
            fn number(&self) -> Option<f64> {
                Some(*self as f64)
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
number_knob!(usize, u32, u64, f64);

impl KnobValue for Duration {
    const UNIT: &'static str = " seconds";
    fn number(&self) -> Option<f64> {
        Some(self.as_secs_f64())
    }
    fn show(&self) -> String {
        self.as_secs_f64().to_string()
    }
}

impl KnobValue for HistoryMode {
    fn number(&self) -> Option<f64> {
        None
    }
    fn show(&self) -> String {
        format!("{self:?}").to_ascii_lowercase()
    }
}

impl KnobValue for Vec<IpAddr> {
    fn number(&self) -> Option<f64> {
        None
    }
    fn show(&self) -> String {
        "none".to_owned()
    }
}

/// How a value given by flag, env or file becomes the knob's value (seconds become a
/// `Duration`; everything else is taken as it is).
pub trait FromGiven<R> {
    fn from_given(given: R) -> Self;
}

impl<T> FromGiven<T> for T {
    fn from_given(given: T) -> Self {
        given
    }
}

impl FromGiven<f64> for Duration {
    fn from_given(secs: f64) -> Self {
        // Only called after the range check: from_secs_f64 panics on 1e19 or NaN.
        Duration::from_secs_f64(secs)
    }
}

/// Checks a value against a knob's range; NaN and infinities are out of range.
fn check_range(knob: &Knob, value: &impl KnobValue) -> Result<(), ConfigError> {
    let (Some((min, max)), Some(v)) = (knob.range, value.number()) else {
        return Ok(());
    };
    if v.is_finite() && v >= min && v <= max {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            name: knob.name,
            why: format!("{v} is out of range: use {min} to {max}{}", knob.unit),
        })
    }
}

/// `--help` text: the doc line and the default.
fn knob_help(doc: &str, default: String) -> String {
    format!("{} [default: {default}]", doc.trim())
}

/// Declares a group of knobs: `$Given` (clap arguments and config-file fields, every one
/// optional) and `$Values` (validated, with defaults). One line per knob:
///
/// `/// doc` `field: Type [GivenType] = default, name "..", flag "..", env ".."`, `value ".."`,
/// then optionally `range MIN ..= MAX`, `shown ".."` (a default described in words), and
/// `arg(..)` (extra clap attributes).
macro_rules! knobs {
    (
        $(#[$gmeta:meta])*
        given $Given:ident, table $table:expr;
        $(#[$vmeta:meta])*
        values $Values:ident {
            $(
                $(#[doc = $doc:literal])*
                $field:ident: $Ty:ty [$Raw:ty] = $default:expr,
                    name $name:literal, flag $flag:literal, env $env:literal, value $vname:literal
                    $(, range $min:literal ..= $max:literal)?
                    $(, shown $shown:literal)?
                    $(, arg($($extra:tt)*))?;
            )*
        }
    ) => {
        $(#[$gmeta])*
        #[derive(Debug, Clone, Default, Args, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $Given {
            $(
                #[arg(
                    long = $flag,
                    env = $env,
                    value_name = $vname,
                    help = knob_help(concat!($($doc),*), knobs!(@shown $Values, $field $(, $shown)?))
                    $(, $($extra)*)?
                )]
                pub $field: Option<$Raw>,
            )*
        }

        $(#[$vmeta])*
        pub struct $Values {
            $(
                $(#[doc = $doc])*
                pub $field: $Ty,
            )*
        }

        impl Default for $Values {
            fn default() -> Self {
                $Values {
                    $($field: $default,)*
                }
            }
        }

        impl $Given {
            /// Every knob of this group.
            pub const KNOBS: &'static [Knob] = &[
                $(Knob {
                    name: $name,
                    key: stringify!($field),
                    table: $table,
                    flag: $flag,
                    env: $env,
                    range: knobs!(@range $($min, $max)?),
                    unit: <$Ty as KnobValue>::UNIT,
                },)*
            ];

            /// The values set here, else `fallback`'s (flag and environment over the file).
            pub fn or(&self, fallback: &Self) -> Self {
                $Given {
                    $($field: self.$field.clone().or_else(|| fallback.$field.clone()),)*
                }
            }
        }

        impl $Values {
            /// The given values over the defaults, each checked against its range (a given
            /// one before it is converted).
            fn from_given(given: &$Given) -> Result<Self, ConfigError> {
                let mut knobs = $Given::KNOBS.iter();
                let mut out = Self::default();
                $(
                    let knob = knobs.next().expect("one knob per field");
                    if let Some(value) = &given.$field {
                        check_range(knob, value)?;
                        out.$field = <$Ty as FromGiven<$Raw>>::from_given(value.clone());
                    }
                )*
                out.check_ranges()?;
                Ok(out)
            }

            /// Checks every value against its knob's range.
            fn check_ranges(&self) -> Result<(), ConfigError> {
                let mut knobs = $Given::KNOBS.iter();
                $(check_range(knobs.next().expect("one knob per field"), &self.$field)?;)*
                Ok(())
            }
        }
    };
    (@shown $Values:ident, $field:ident, $shown:literal) => { $shown.to_owned() };
    (@shown $Values:ident, $field:ident) => {
        KnobValue::show(&<$Values as Default>::default().$field)
    };
    (@range $min:literal, $max:literal) => { Some(($min as f64, $max as f64)) };
    (@range) => { None };
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
    /// In the cluster's Redis streams (cluster mode only, where it is the default).
    Redis,
}

knobs! {
    /// Argon2id cost parameters and password-check capacity as given by flag, env or file
    /// (`[argon2]` table).
    given Argon2Settings, table Some("argon2");
    /// Validated argon2id parameters and password-check capacity (the cost is OWASP's
    /// argon2id baseline: 19 MiB, 2 iterations, 1 lane).
    #[derive(Debug, Clone, PartialEq)]
    values HashSettings {
        /// Argon2id memory cost in KiB
        memory_kib: u32 [u32] = 19_456,
            name "argon2_memory_kib", flag "argon2-memory-kib", env "TLSCHAT_ARGON2_MEMORY_KIB",
            value "N", range 8 ..= 4_194_304;
        /// Argon2id iterations (time cost)
        iterations: u32 [u32] = 2,
            name "argon2_iterations", flag "argon2-iterations", env "TLSCHAT_ARGON2_ITERATIONS",
            value "N", range 1 ..= 100;
        /// Argon2id parallelism (lanes)
        parallelism: u32 [u32] = 1,
            name "argon2_parallelism", flag "argon2-parallelism",
            env "TLSCHAT_ARGON2_PARALLELISM", value "N", range 1 ..= 64;
        /// Password checks run at once
        threads: usize [usize] = std::thread::available_parallelism().map_or(2, |n| n.get()),
            name "hash_threads", flag "hash-threads", env "TLSCHAT_HASH_THREADS", value "N",
            range 1 ..= 1_024, shown "number of CPUs";
        /// Logins that may wait for a password check before "Server busy"
        queue: usize [usize] = 64,
            name "hash_queue", flag "hash-queue", env "TLSCHAT_HASH_QUEUE", value "N",
            range 0 ..= 1_000_000;
        /// Shortest password `user add` and `user passwd` accept, in characters
        min_password_chars: usize [usize] = MIN_PASSWORD_CHARS,
            name "min_password_chars", flag "min-password-chars",
            env "TLSCHAT_MIN_PASSWORD_CHARS", value "N", range 1 ..= 128;
    }
}

knobs! {
    /// Connection and session limits as given by flag, env or file (`[limits]` table;
    /// seconds for durations).
    given LimitSettings, table Some("limits");
    /// Every limit the server enforces, with units in the types.
    #[derive(Debug, Clone)]
    values Limits {
        /// Longest accepted line in bytes, terminator excluded
        max_line_bytes: usize [usize] = 4096,
            name "max_line_bytes", flag "max-line-bytes", env "TLSCHAT_MAX_LINE_BYTES",
            value "BYTES", range 16 ..= 1_048_576;
        /// Bytes without a newline after which a client is disconnected
        max_unterminated_bytes: usize [usize] = 64 * 1024,
            name "max_unterminated_bytes", flag "max-unterminated-bytes",
            env "TLSCHAT_MAX_UNTERMINATED_BYTES", value "BYTES", range 16 ..= 67_108_864;
        /// Seconds allowed for the TLS handshake
        handshake_timeout: Duration [f64] = Duration::from_secs(10),
            name "handshake_timeout", flag "handshake-timeout", env "TLSCHAT_HANDSHAKE_TIMEOUT",
            value "SECS", range 0.01 ..= 86_400;
        /// Seconds from connect to a successful login
        login_timeout: Duration [f64] = Duration::from_secs(30),
            name "login_timeout", flag "login-timeout", env "TLSCHAT_LOGIN_TIMEOUT",
            value "SECS", range 0.01 ..= 86_400;
        /// Bytes that may wait in one member's outbound queue
        outbound_queue_bytes: usize [usize] = 256 * 1024,
            name "outbound_queue_bytes", flag "outbound-queue-bytes",
            env "TLSCHAT_OUTBOUND_QUEUE_BYTES", value "BYTES", range 1_024 ..= 1_073_741_824;
        /// Concurrent connections, all sources together
        max_connections: usize [usize] = 10_000,
            name "max_connections", flag "max-connections", env "TLSCHAT_MAX_CONNECTIONS",
            value "N", range 1 ..= 1_000_000;
        /// Concurrent connections per source IP (IPv6 per /64)
        max_connections_per_ip: usize [usize] = 128,
            name "max_connections_per_ip", flag "max-connections-per-ip",
            env "TLSCHAT_MAX_CONNECTIONS_PER_IP", value "N", range 1 ..= 1_000_000;
        /// Concurrent not-yet-logged-in connections per source IP
        max_prelogin_per_ip: usize [usize] = 16,
            name "max_prelogin_per_ip", flag "max-prelogin-per-ip",
            env "TLSCHAT_MAX_PRELOGIN_PER_IP", value "N", range 1 ..= 1_000_000;
        /// Concurrent not-yet-logged-in connections, all sources together
        max_prelogin: usize [usize] = default_max_prelogin(10_000),
            name "max_prelogin", flag "max-prelogin", env "TLSCHAT_MAX_PRELOGIN", value "N",
            range 1 ..= 1_000_000, shown "25% of max_connections";
        /// Source IPs exempt from the per-IP caps (repeat the flag; comma-separated in env)
        exempt_ips: Vec<IpAddr> [Vec<IpAddr>] = Vec::new(),
            name "exempt_ips", flag "exempt-ip", env "TLSCHAT_EXEMPT_IPS", value "IP",
            arg(value_delimiter = ',');
        /// Lines a member may send in a burst
        rate_burst: u32 [u32] = 10,
            name "rate_burst", flag "rate-burst", env "TLSCHAT_RATE_BURST", value "N",
            range 1 ..= 1_000_000;
        /// Lines per second a member may send once the burst is used
        rate_per_sec: f64 [f64] = 2.0,
            name "rate_per_sec", flag "rate-per-sec", env "TLSCHAT_RATE_PER_SEC", value "N",
            range 0.01 ..= 1_000_000;
        /// Failed logins per username within the window before the sources that took part
        /// are throttled
        user_failures: u32 [u32] = 5,
            name "user_failures", flag "user-failures", env "TLSCHAT_USER_FAILURES", value "N",
            range 1 ..= 100_000;
        /// Failed logins per username within the window after which no source gets its
        /// password checked for that name
        user_failure_ceiling: u32 [u32] = 50,
            name "user_failure_ceiling", flag "user-failure-ceiling",
            env "TLSCHAT_USER_FAILURE_CEILING", value "N", range 1 ..= 100_000;
        /// Window in seconds for per-username failures
        user_failure_window: Duration [f64] = Duration::from_secs(15 * 60),
            name "user_failure_window", flag "user-failure-window",
            env "TLSCHAT_USER_FAILURE_WINDOW", value "SECS", range 0.01 ..= 86_400;
        /// Failed logins per source IP within the window before throttling
        ip_failures: u32 [u32] = 20,
            name "ip_failures", flag "ip-failures", env "TLSCHAT_IP_FAILURES", value "N",
            range 1 ..= 100_000;
        /// Window in seconds for per-IP failures
        ip_failure_window: Duration [f64] = Duration::from_secs(10 * 60),
            name "ip_failure_window", flag "ip-failure-window", env "TLSCHAT_IP_FAILURE_WINDOW",
            value "SECS", range 0.01 ..= 86_400;
        /// Seconds a throttled login waits for its answer; doubles with each further failure
        /// (at most 30 s)
        throttle_delay: Duration [f64] = Duration::from_secs(1),
            name "throttle_delay", flag "throttle-delay", env "TLSCHAT_THROTTLE_DELAY",
            value "SECS", range 0.001 ..= 60;
        /// Seconds of idle before TCP keepalive probes start (Linux takes up to 32767 s; the
        /// user timeout is twice this, in ms)
        keepalive: Duration [f64] = Duration::from_secs(60),
            name "keepalive", flag "keepalive", env "TLSCHAT_KEEPALIVE", value "SECS",
            range 1 ..= 7_200;
        /// Seconds between checks for accounts deleted, disabled or re-keyed by an admin
        account_check_interval: Duration [f64] = Duration::from_secs(2),
            name "account_check_interval", flag "account-check-interval",
            env "TLSCHAT_ACCOUNT_CHECK_INTERVAL", value "SECS", range 0.01 ..= 3_600;
        /// Seconds between checks of the certificate files for changes (SIGHUP reloads at
        /// once)
        cert_check_interval: Duration [f64] = Duration::from_secs(30),
            name "cert_check_interval", flag "cert-check-interval",
            env "TLSCHAT_CERT_CHECK_INTERVAL", value "SECS", range 0.01 ..= 86_400;
        /// Seconds given to sessions to say goodbye on shutdown
        shutdown_grace: Duration [f64] = Duration::from_secs(3),
            name "shutdown_grace", flag "shutdown-grace", env "TLSCHAT_SHUTDOWN_GRACE",
            value "SECS", range 0.01 ..= 3_600;
        /// Seconds between pings to a WebSocket client; no pong for twice this closes it
        ws_ping_interval: Duration [f64] = Duration::from_secs(30),
            name "ws_ping_interval", flag "ws-ping-interval", env "TLSCHAT_WS_PING_INTERVAL",
            value "SECS", range 0.01 ..= 3_600;
        /// Seconds of silence after which an IRC client is pinged; silence for twice this
        /// closes it ("Ping timeout")
        irc_ping_interval: Duration [f64] = Duration::from_secs(120),
            name "irc_ping_interval", flag "irc-ping-interval", env "TLSCHAT_IRC_PING_INTERVAL",
            value "SECS", range 0.01 ..= 3_600;
    }
}

knobs! {
    /// Rooms and history as given by flag, env or file (top-level keys of the file).
    given RoomSettings, table None;
    /// Validated rooms and history settings.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    values RoomLimits {
        /// Where history is kept: sqlite, memory or off; redis (the default) or off with --cluster
        history: HistoryMode [HistoryMode] = HistoryMode::Sqlite,
            name "history", flag "history", env "TLSCHAT_HISTORY", value "MODE";
        /// Messages kept per room
        history_messages: u64 [u64] = 10_000,
            name "history_messages", flag "history-messages", env "TLSCHAT_HISTORY_MESSAGES",
            value "N", range 1 ..= 10_000_000;
        /// Days a message is kept; 0 keeps messages of any age
        history_days: u32 [u32] = 30,
            name "history_days", flag "history-days", env "TLSCHAT_HISTORY_DAYS", value "DAYS",
            range 0 ..= 36_500;
        /// Recent messages shown on joining a room
        join_history: usize [usize] = 10,
            name "join_history", flag "join-history", env "TLSCHAT_JOIN_HISTORY", value "N",
            range 0 ..= 500;
        /// Missed messages replayed per room at login
        catchup_messages: usize [usize] = 50,
            name "catchup_messages", flag "catchup-messages", env "TLSCHAT_CATCHUP_MESSAGES",
            value "N", range 0 ..= 10_000;
        /// Missed messages replayed per room at login to a client that resumes from the
        /// numbers it showed (`/resume`)
        resume_messages: usize [usize] = 1_000,
            name "resume_messages", flag "resume-messages", env "TLSCHAT_RESUME_MESSAGES",
            value "N", range 0 ..= 10_000;
        /// Rooms a user may be in besides #lobby
        max_rooms_per_user: usize [usize] = 20,
            name "max_rooms_per_user", flag "max-rooms-per-user",
            env "TLSCHAT_MAX_ROOMS_PER_USER", value "N", range 0 ..= 1_000;
        /// Rooms with members online, #lobby included
        max_rooms: usize [usize] = 1_000,
            name "max_rooms", flag "max-rooms", env "TLSCHAT_MAX_ROOMS", value "N",
            range 1 ..= 100_000;
        /// Bytes of relayed messages that may wait for the database; past it chat lines are
        /// refused
        history_backlog_bytes: usize [usize] = DEFAULT_HISTORY_BACKLOG_BYTES,
            name "history_backlog_bytes", flag "history-backlog-bytes",
            env "TLSCHAT_HISTORY_BACKLOG_BYTES", value "BYTES",
            range 65_536 ..= 17_179_869_184_u64;
    }
}

/// Every knob declared with [`knobs!`].
pub fn knobs() -> impl Iterator<Item = &'static Knob> {
    Argon2Settings::KNOBS
        .iter()
        .chain(LimitSettings::KNOBS)
        .chain(RoomSettings::KNOBS)
}

/// The knob errors call `name`.
pub fn knob(name: &str) -> Option<&'static Knob> {
    knobs().find(|k| k.name == name)
}

impl RoomLimits {
    /// Applies the given overrides on top of the defaults, each within its range.
    pub fn from_settings(s: &RoomSettings) -> Result<Self, ConfigError> {
        Self::from_given(s)
    }
}

impl HashSettings {
    /// Applies the given overrides on top of the defaults, each within its range.
    pub fn from_settings(s: &Argon2Settings) -> Result<Self, ConfigError> {
        Self::from_given(s)
    }
}

impl Limits {
    /// Applies the given overrides on top of the defaults and validates the result: every
    /// value must lie in its documented range (its [`Knob`] and the relations checked in
    /// [`Limits::validate`]).
    pub fn from_settings(s: &LimitSettings) -> Result<Self, ConfigError> {
        let mut limits = Self::from_given(s)?;
        if s.max_prelogin.is_none() {
            limits.max_prelogin = default_max_prelogin(limits.max_connections);
        }
        limits.validate()?;
        Ok(limits)
    }

    /// Rejects values outside their documented ranges, naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_ranges()?;
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

/// A quarter of all slots may be held by connections that have not logged in.
pub const fn default_max_prelogin(max_connections: usize) -> usize {
    let quarter = max_connections / 4;
    if quarter == 0 { 1 } else { quarter }
}

/// The optional TOML config file (`--config FILE`); every key is optional. The rooms' knobs
/// are top-level keys, the others sit in their tables.
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
    /// `web = false` turns the web client off.
    pub web: Option<bool>,
    /// `web_origins = ["https://chat.example.org"]`: pages elsewhere that may open a WebSocket.
    pub web_origins: Option<Vec<String>>,
    /// `trusted_proxies = ["10.0.0.5"]`: load balancers that send a PROXY protocol header.
    pub trusted_proxies: Option<Vec<std::net::IpAddr>>,
    /// `cluster = "redis://…"`: cluster mode, on this Redis.
    pub cluster: Option<String>,
    /// `node_name = "chat-1"`: this node's name in the cluster.
    pub node_name: Option<String>,
    /// `cluster_ca = "/etc/tlschat/redis-ca.pem"`: what a `rediss://` server's certificate
    /// must chain to.
    pub cluster_ca: Option<PathBuf>,
    /// `irc_listen = "0.0.0.0:6697"`: the IRC port (off when absent).
    pub irc_listen: Option<String>,
    /// `irc_server_name = "chat.example.org"`: the server's name on IRC.
    pub irc_server_name: Option<String>,
    /// The top-level rooms and history keys (`history = "sqlite"`, `max_rooms = 1000`, …).
    #[serde(skip)]
    pub rooms: RoomSettings,
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
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses a config file's text; unknown keys are refused. (serde's `flatten` cannot be
    /// combined with refusing unknown keys, so the rooms' top-level keys are split off first.)
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let mut rooms = toml::Table::new();
        for knob in RoomSettings::KNOBS {
            if let Some(value) = table.remove(knob.key) {
                rooms.insert(knob.key.to_owned(), value);
            }
        }
        let mut file: FileConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_owned())?;
        file.rooms = toml::Value::Table(rooms)
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_owned())?;
        Ok(file)
    }

    /// The database path: the flag/env value, else the file's, else the default.
    pub fn db_path(&self, given: Option<PathBuf>) -> PathBuf {
        given
            .or_else(|| self.db.clone())
            .unwrap_or_else(|| DEFAULT_DB.into())
    }

    /// The database: `given` (flag or env), else the file's `db`, else the default file; a
    /// `postgres://` URL names a PostgreSQL server.
    pub fn db(&self, given: Option<PathBuf>) -> crate::store::Db {
        crate::store::Db::parse(self.db_path(given))
    }

    /// Argon2 settings with flag/env values taking precedence over the file's.
    pub fn hash_settings(&self, given: &Argon2Settings) -> Result<HashSettings, ConfigError> {
        HashSettings::from_settings(&given.or(&self.argon2))
    }

    /// Rooms and history settings with flag/env values taking precedence over the file's.
    pub fn room_limits(&self, given: &RoomSettings) -> Result<RoomLimits, ConfigError> {
        RoomLimits::from_settings(&given.or(&self.rooms))
    }

    /// Limits with flag/env values taking precedence over the file's.
    pub fn limits(&self, given: &LimitSettings) -> Result<Limits, ConfigError> {
        Limits::from_settings(&given.or(&self.limits))
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

/// Shortest accepted new password, in characters, unless `min_password_chars` says otherwise.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// The IRC listener's address (flag/env > file), if IRC is on.
pub fn resolve_irc_listen(
    given: Option<String>,
    file: &FileConfig,
) -> Result<Option<SocketAddr>, ConfigError> {
    given
        .or_else(|| file.irc_listen.clone())
        .map(|text| text.parse().map_err(|_| ConfigError::Listen(text)))
        .transpose()
}

/// The server's name on IRC when none is given.
pub const DEFAULT_IRC_SERVER_NAME: &str = "tlschat";

/// The server's name on IRC (flag/env > file > `tlschat`): 1–63 of `A-Z a-z 0-9 . -`, as a
/// host name, since clients parse it as the source of server messages and the host of masks.
pub fn resolve_irc_server_name(
    given: Option<String>,
    file: &FileConfig,
) -> Result<String, ConfigError> {
    let name = given
        .or_else(|| file.irc_server_name.clone())
        .unwrap_or_else(|| DEFAULT_IRC_SERVER_NAME.to_owned());
    let valid = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        && !name.starts_with(['.', '-']);
    if !valid {
        return Err(ConfigError::Invalid {
            name: "irc_server_name",
            why: format!("{name:?} is not a host name (1-63 of A-Z a-z 0-9 . -)"),
        });
    }
    Ok(name)
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
        let file = FileConfig::parse(
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
        let file = FileConfig::parse(
            "history = \"memory\"\nhistory_messages = 500\nhistory_days = 0\n\
             join_history = 3\ncatchup_messages = 7\nresume_messages = 70\nmax_rooms_per_user = 2\n\
             max_rooms = 9\n\
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
                resume_messages: 70,
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
            ("resume_messages = 10001", "resume_messages"),
            ("history_days = 40000", "history_days"),
        ] {
            let file = FileConfig::parse(text).unwrap();
            let err = file.room_limits(&RoomSettings::default()).unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
        assert!(FileConfig::parse("history = \"disk\"").is_err());
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        assert!(FileConfig::parse("lissten = \"x\"").is_err());
    }

    fn rejected(toml_text: &str) -> String {
        let file = FileConfig::parse(toml_text).unwrap();
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
        let file = FileConfig::parse("[limits]\nmax_connections = 400").unwrap();
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
