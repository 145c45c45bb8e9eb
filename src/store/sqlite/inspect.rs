//! What `tlschat doctor` reads from a SQLite database without changing it.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use super::{BUSY_TIMEOUT, database};
use crate::store::StoreError;

/// What `tlschat doctor` learns from a database without changing it.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The first line of `PRAGMA integrity_check` (`ok` when healthy).
    pub integrity: String,
    /// Migrations applied.
    pub applied: usize,
    /// Versions of embedded migrations not applied yet.
    pub pending: Vec<i64>,
    /// Number of accounts (0 if the table does not exist yet).
    pub users: i64,
    /// The page size in bytes (see [`super::PAGE_SIZE_BYTES`]).
    pub page_size: i64,
}

/// Opens an existing database read-only (no creation, no migration) and checks it.
pub async fn inspect(path: &Path) -> Result<Inspection, StoreError> {
    let options = SqliteConnectOptions::from_str("sqlite:")
        .map_err(|source| database(path, source))?
        .filename(path)
        .create_if_missing(false)
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|source| database(path, source))?;
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .map_err(|source| database(path, source))?;
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1")
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap_or(0);
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&pool)
        .await
        .map_err(|source| database(path, source))?;
    pool.close().await;
    let pending = sqlx::migrate!("migrations/sqlite")
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect();
    Ok(Inspection {
        integrity,
        applied: applied.len(),
        pending,
        users,
        page_size,
    })
}
