//! `tlschat doctor`: checks a configuration without serving or changing anything.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use secrecy::SecretString;

use crate::config::{CertPaths, HashSettings};
use crate::password::{Hasher, Password};
use crate::store;
use crate::tls;

/// A certificate expiring sooner than this is a warning.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but should be looked at.
    Warn,
    /// Will not work.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    /// Outcome.
    pub level: Level,
    /// What was checked.
    pub what: &'static str,
    /// Details for a human.
    pub detail: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "fail",
        };
        write!(f, "{level} {}: {}", self.what, self.detail)
    }
}

fn check(level: Level, what: &'static str, detail: impl Into<String>) -> Check {
    Check {
        level,
        what,
        detail: detail.into(),
    }
}

/// What to check.
pub struct Target<'a> {
    /// Certificate and key.
    pub certs: &'a CertPaths,
    /// Database.
    pub db: &'a store::Db,
    /// Listen address.
    pub listen: Result<SocketAddr, String>,
    /// Host names clients will use; each should be in the certificate.
    pub names: &'a [String],
    /// Hashing parameters.
    pub hash: Result<HashSettings, String>,
    /// Cluster mode's Redis URL, if cluster mode is on.
    pub cluster: Option<&'a str>,
    /// The certificates a `rediss://` server's must chain to (`--cluster-ca`), or why they
    /// could not be read.
    pub cluster_ca: Result<Option<Vec<u8>>, String>,
}

/// Runs every check.
pub async fn run(target: &Target<'_>) -> Vec<Check> {
    let mut out = Vec::new();
    certificate_checks(target, &mut out);
    out.push(file_mode("key file mode", &target.certs.key));
    match target.db {
        store::Db::File(path) => database_checks(path, &mut out).await,
        store::Db::Url(url) => postgres_checks(url, &mut out).await,
    }
    if let Some(url) = target.cluster {
        if matches!(target.db, store::Db::File(_)) {
            out.push(check(
                Level::Fail,
                "cluster",
                "cluster mode needs PostgreSQL: --db must be a postgres:// URL",
            ));
        }
        out.push(match &target.cluster_ca {
            Ok(ca) => redis_check(url, ca.as_deref()).await,
            Err(e) => check(Level::Fail, "redis", e.clone()),
        });
    }
    hash_check(&target.hash, &mut out).await;
    out.push(listen_check(&target.listen).await);
    out
}

/// The cluster's Redis answers; its append-only file should be on, or a Redis restart loses
/// the rooms' history and who is online.
async fn redis_check(url: &str, ca: Option<&[u8]>) -> Check {
    let at = store::Location::url(url);
    let redis = match crate::cluster::Redis::connect(url, ca).await {
        Ok(redis) => redis,
        Err(e) => return check(Level::Fail, "redis", e.to_string()),
    };
    let info: Result<String, _> = redis::cmd("INFO")
        .arg("server")
        .arg("persistence")
        .query_async(&mut redis.conn())
        .await;
    let info = match info {
        Ok(info) => info,
        Err(e) => return check(Level::Fail, "redis", redis.error(e).to_string()),
    };
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let version = field("redis_version").unwrap_or("?");
    if field("aof_enabled") == Some("1") {
        check(
            Level::Ok,
            "redis",
            format!("Redis {version} at {at}, append-only file on"),
        )
    } else {
        check(
            Level::Warn,
            "redis",
            format!(
                "Redis {version} at {at} has its append-only file off: a Redis restart loses \
                 the rooms' history; set appendonly yes (appendfsync everysec loses at most \
                 about 1 s)"
            ),
        )
    }
}

fn certificate_checks(target: &Target<'_>, out: &mut Vec<Check>) {
    let certs = target.certs;
    match tls::load(&certs.cert, &certs.key) {
        Ok(loaded) => out.push(check(
            Level::Ok,
            "certificate",
            format!(
                "{} and {} load and match (SHA-256 {})",
                certs.cert.display(),
                certs.key.display(),
                loaded.fingerprint
            ),
        )),
        Err(e) => {
            let detail = if certs.is_default && !certs.cert.exists() && !certs.key.exists() {
                format!("{e} (serve generates a self-signed pair at the default paths)")
            } else {
                e.to_string()
            };
            out.push(check(Level::Fail, "certificate", detail));
            return;
        }
    }
    let Ok(pem) = std::fs::read(&certs.cert) else {
        return;
    };
    let Ok(der) =
        <rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::from_pem_slice(
            &pem,
        )
    else {
        return;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        out.push(check(
            Level::Fail,
            "certificate expiry",
            "cannot parse the certificate",
        ));
        return;
    };
    let not_after = cert.validity().not_after.timestamp();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let left = not_after - now;
    out.push(if left <= 0 {
        check(Level::Fail, "certificate expiry", "expired")
    } else if left < EXPIRY_WARNING.as_secs() as i64 {
        check(
            Level::Warn,
            "certificate expiry",
            format!("expires in {} days", left / 86_400),
        )
    } else {
        check(
            Level::Ok,
            "certificate expiry",
            format!("valid for {} more days", left / 86_400),
        )
    });
    let mut covered: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => covered.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        covered.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let missing: Vec<&String> = target
        .names
        .iter()
        .filter(|n| !covered.iter().any(|c| name_matches(c, n)))
        .collect();
    out.push(if missing.is_empty() {
        check(
            Level::Ok,
            "certificate names",
            format!("covers {}", covered.join(", ")),
        )
    } else {
        check(
            Level::Warn,
            "certificate names",
            format!(
                "does not cover {} (covers {})",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                covered.join(", ")
            ),
        )
    });
}

/// `pattern` from a certificate (possibly `*.example.org`) against a host name.
fn name_matches(pattern: &str, host: &str) -> bool {
    if pattern.eq_ignore_ascii_case(host) {
        return true;
    }
    match (pattern.strip_prefix("*."), host.split_once('.')) {
        (Some(suffix), Some((_, rest))) => suffix.eq_ignore_ascii_case(rest),
        _ => false,
    }
}

fn file_mode(what: &'static str, path: &Path) -> Check {
    match std::fs::metadata(path) {
        Err(e) => check(Level::Fail, what, format!("{}: {e}", path.display())),
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o044 != 0 {
                check(
                    Level::Warn,
                    what,
                    format!(
                        "{} is readable by group or others (mode {mode:04o}); use chmod 600",
                        path.display()
                    ),
                )
            } else {
                check(
                    Level::Ok,
                    what,
                    format!("{} mode {mode:04o}", path.display()),
                )
            }
        }
    }
}

async fn database_checks(db: &Path, out: &mut Vec<Check>) {
    if !db.exists() {
        out.push(check(
            Level::Warn,
            "database",
            format!(
                "{} does not exist yet (serve or user add creates it)",
                db.display()
            ),
        ));
        return;
    }
    out.push(file_mode("database file mode", db));
    match store::inspect(db).await {
        Err(e) => out.push(check(Level::Fail, "database", e.to_string())),
        Ok(report) => {
            out.push(if report.integrity == "ok" {
                check(
                    Level::Ok,
                    "database integrity",
                    "PRAGMA integrity_check: ok",
                )
            } else {
                check(Level::Fail, "database integrity", report.integrity)
            });
            out.push(migrations_check(
                report.applied,
                report.pending.len(),
                report.users,
            ));
            out.push(page_size_check(report.page_size, db));
        }
    }
}

/// Whether every migration this version has is applied (pending ones are applied by the next
/// `serve` or `user` command, not by `doctor`).
fn migrations_check(applied: impl std::fmt::Display, pending: usize, users: i64) -> Check {
    if pending == 0 {
        check(
            Level::Ok,
            "database migrations",
            format!("all {applied} applied; {users} users"),
        )
    } else {
        check(
            Level::Warn,
            "database migrations",
            format!("{pending} pending (applied when serve or a user command next opens it)"),
        )
    }
}

/// A PostgreSQL database: reachable, its version, and its migrations (none applied here).
async fn postgres_checks(url: &str, out: &mut Vec<Check>) {
    match store::postgres::inspect(url).await {
        Err(e) => out.push(check(Level::Fail, "database", e.to_string())),
        Ok(report) => {
            out.push(check(
                Level::Ok,
                "database",
                format!("{} at {}", report.version, store::Location::url(url)),
            ));
            out.push(migrations_check(
                report.applied,
                report.pending,
                report.users,
            ));
        }
    }
}

/// Databases made by earlier versions have 4 KiB pages, on which storing history costs about
/// twice the CPU; they work, and converting them is one sqlite3 command.
fn page_size_check(page_size: i64, db: &Path) -> Check {
    let kib = page_size / 1024;
    if page_size >= i64::from(store::PAGE_SIZE_BYTES) {
        check(Level::Ok, "database pages", format!("{kib} KiB"))
    } else {
        check(
            Level::Warn,
            "database pages",
            format!(
                "{kib} KiB (made by an earlier version; storing history costs about twice the \
                 CPU): with the server stopped, run sqlite3 {} 'PRAGMA journal_mode=DELETE; \
                 PRAGMA page_size={}; VACUUM; PRAGMA journal_mode=WAL;'",
                db.display(),
                store::PAGE_SIZE_BYTES
            ),
        )
    }
}

async fn hash_check(settings: &Result<HashSettings, String>, out: &mut Vec<Check>) {
    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            out.push(check(Level::Fail, "argon2", e.clone()));
            return;
        }
    };
    let hasher = match Hasher::new(settings) {
        Ok(h) => h,
        Err(e) => {
            out.push(check(Level::Fail, "argon2", e.to_string()));
            return;
        }
    };
    let password = Password::parse(SecretString::from("doctor test password".to_owned()))
        .expect("a valid constant");
    let started = Instant::now();
    match hasher.hash(&password).await {
        Ok(_) => out.push(check(
            Level::Ok,
            "argon2",
            format!(
                "argon2id m={} KiB t={} p={}: one hash took {:.1} ms; {} at once, {} may wait",
                settings.memory_kib,
                settings.iterations,
                settings.parallelism,
                started.elapsed().as_secs_f64() * 1000.0,
                settings.threads,
                settings.queue
            ),
        )),
        Err(e) => out.push(check(Level::Fail, "argon2", e.to_string())),
    }
}

async fn listen_check(listen: &Result<SocketAddr, String>) -> Check {
    match listen {
        Err(e) => check(Level::Fail, "listen address", e.clone()),
        Ok(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(_) => check(Level::Ok, "listen address", format!("{addr} is free")),
            Err(e) => check(
                Level::Fail,
                "listen address",
                format!("cannot bind {addr}: {e} (is tlschat already running?)"),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_names_cover_one_label() {
        assert!(name_matches("chat.example.org", "CHAT.example.org"));
        assert!(name_matches("*.example.org", "chat.example.org"));
        assert!(!name_matches("*.example.org", "a.b.example.org"));
        assert!(!name_matches("*.example.org", "example.org"));
    }

    #[test]
    fn small_pages_get_a_warning_with_the_conversion() {
        let c = page_size_check(4096, Path::new("/var/lib/tlschat/tlschat.db"));
        assert_eq!(c.level, Level::Warn);
        let text = c.to_string();
        assert!(text.contains("4 KiB"), "{text}");
        assert!(
            text.contains("sqlite3 /var/lib/tlschat/tlschat.db 'PRAGMA journal_mode=DELETE; PRAGMA page_size=32768; VACUUM;"),
            "{text}"
        );
        assert_eq!(page_size_check(32768, Path::new("x")).level, Level::Ok);
    }
}
