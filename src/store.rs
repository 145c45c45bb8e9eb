//! The SQLite user store: the only module that speaks SQL.
//!
//! It stores PHC strings and knows nothing about how they were made.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::username::Username;

/// How long a writer waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Two processes opening a fresh file at once can race on the first migration; retry that.
const MIGRATE_ATTEMPTS: u32 = 5;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening database {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Database { path: PathBuf, source: sqlx::Error },
    #[error("migrating database {path}: {source}")]
    Migrate {
        path: PathBuf,
        source: sqlx::migrate::MigrateError,
    },
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("no such user: {0}")]
    NoSuchUser(String),
}

/// One account as listed for admins (never with its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    /// Name as created.
    pub username: String,
    /// UTC creation time, `YYYY-MM-DDTHH:MM:SSZ`.
    pub created_at: String,
    /// Whether logins are refused.
    pub disabled: bool,
}

/// What login needs to check a password.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Name as created (the display form).
    pub username: String,
    /// PHC string.
    pub password_hash: String,
    /// Whether logins are refused.
    pub disabled: bool,
    /// Identifies this account and its current state; see [`AccountStamp`].
    pub stamp: AccountStamp,
}

/// An account's row id and change counter: if either differs later, the account was deleted,
/// recreated, disabled or given a new password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccountStamp {
    /// Row id (a deleted and re-added user gets a new one).
    pub id: i64,
    /// Incremented by every password or state change.
    pub generation: i64,
    /// Disabled at the time of the stamp.
    pub disabled: bool,
}

/// A handle on the user database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

impl Store {
    /// Opens (creating with mode 0600 if missing) and migrates the database.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        create_private_file(path)?;
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|source| database(path, source))?
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| database(path, source))?;
        let store = Store {
            pool,
            path: path.to_owned(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut attempt = 1;
        loop {
            match sqlx::migrate!().run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(_) if attempt < MIGRATE_ATTEMPTS => attempt += 1,
                Err(source) => {
                    return Err(StoreError::Migrate {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Adds a user; the name must not exist in any letter case.
    pub async fn add_user(&self, name: &Username, password_hash: &str) -> Result<(), StoreError> {
        let result = sqlx::query("INSERT INTO users (username, password_hash) VALUES (?, ?)")
            .bind(name.as_str())
            .bind(password_hash)
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::UserExists(name.to_string()))
            }
            Err(source) => Err(self.error(source)),
        }
    }

    /// Replaces a user's password hash.
    pub async fn set_password(
        &self,
        name: &Username,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE users SET password_hash = ?, generation = generation + 1, \
             updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE username = ?",
        )
        .bind(password_hash);
        self.change_one(query, name).await
    }

    /// Replaces the hash of the account in `stamp` with one of the same password made with
    /// other parameters; unlike [`Store::set_password`] it keeps the generation, so the live
    /// session is not closed as changed. Does nothing (false) if the account changed since.
    pub async fn rehash_password(
        &self,
        stamp: AccountStamp,
        password_hash: &str,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE users SET password_hash = ? WHERE id = ? AND generation = ?")
                .bind(password_hash)
                .bind(stamp.id)
                .bind(stamp.generation)
                .execute(&self.pool)
                .await
                .map_err(|e| self.error(e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Disables or enables a user's logins.
    pub async fn set_disabled(&self, name: &Username, disabled: bool) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE users SET disabled = ?, generation = generation + 1, \
             updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE username = ?",
        )
        .bind(disabled);
        self.change_one(query, name).await
    }

    /// Runs a statement whose last parameter is the username; the user must exist.
    async fn change_one<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
        name: &'q Username,
    ) -> Result<(), StoreError> {
        let done = query
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    /// The current stamp of every account, for noticing changes made by other processes.
    pub async fn account_stamps(&self) -> Result<Vec<AccountStamp>, StoreError> {
        let rows = sqlx::query("SELECT id, generation, disabled FROM users")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        rows.into_iter()
            .map(|r| {
                Ok(AccountStamp {
                    id: r.try_get("id")?,
                    generation: r.try_get("generation")?,
                    disabled: r.try_get("disabled")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.error(e))
    }

    /// Deletes a user.
    pub async fn delete_user(&self, name: &Username) -> Result<(), StoreError> {
        self.change_one(sqlx::query("DELETE FROM users WHERE username = ?"), name)
            .await
    }

    /// All users, sorted case-insensitively.
    pub async fn list_users(&self) -> Result<Vec<UserSummary>, StoreError> {
        let rows =
            sqlx::query("SELECT username, created_at, disabled FROM users ORDER BY username")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.error(e))?;
        rows.into_iter()
            .map(|r| {
                Ok(UserSummary {
                    username: r.try_get("username")?,
                    created_at: r.try_get("created_at")?,
                    disabled: r.try_get("disabled")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.error(e))
    }

    /// The stored credentials for a name, matched case-insensitively.
    pub async fn credentials(&self, name: &Username) -> Result<Option<Credentials>, StoreError> {
        let row = sqlx::query(
            "SELECT id, username, password_hash, disabled, generation FROM users WHERE username = ?",
        )
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        // try_get: a row edited by hand with a wrong type is an error, not a panic.
        let Some(r) = row else { return Ok(None) };
        let get_err = |e| self.error(e);
        let disabled: bool = r.try_get("disabled").map_err(get_err)?;
        Ok(Some(Credentials {
            username: r.try_get("username").map_err(get_err)?,
            password_hash: r.try_get("password_hash").map_err(get_err)?,
            disabled,
            stamp: AccountStamp {
                id: r.try_get("id").map_err(get_err)?,
                generation: r.try_get("generation").map_err(get_err)?,
                disabled,
            },
        }))
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn error(&self, source: sqlx::Error) -> StoreError {
        database(&self.path, source)
    }
}

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
    pool.close().await;
    let pending = sqlx::migrate!()
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect();
    Ok(Inspection {
        integrity,
        applied: applied.len(),
        pending,
        users,
    })
}

fn database(path: &Path, source: sqlx::Error) -> StoreError {
    StoreError::Database {
        path: path.to_owned(),
        source,
    }
}

/// Creates the database file owner-only before SQLite sees it (SQLite copies the mode to -wal/-shm).
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::Open {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn name(s: &str) -> Username {
        Username::parse(s).unwrap()
    }

    #[tokio::test]
    async fn new_file_is_private_and_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = Store::open(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(store.list_users().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_row_with_a_wrong_type_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("u.db")).await.unwrap();
        store.add_user(&name("alice"), "h").await.unwrap();
        sqlx::query("UPDATE users SET generation = 'not a number'")
            .execute(&store.pool)
            .await
            .unwrap();
        assert!(store.credentials(&name("alice")).await.is_err());
        assert!(store.account_stamps().await.is_err());
    }

    #[tokio::test]
    async fn names_are_unique_regardless_of_case() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        store.add_user(&name("Alice"), "h1").await.unwrap();
        assert!(matches!(
            store.add_user(&name("alice"), "h2").await,
            Err(StoreError::UserExists(_))
        ));
        let c = store.credentials(&name("ALICE")).await.unwrap().unwrap();
        assert_eq!(c.username, "Alice");
        assert_eq!(c.password_hash, "h1");
    }

    #[tokio::test]
    async fn passwd_and_del_need_an_existing_user() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        assert!(matches!(
            store.set_password(&name("nobody"), "h").await,
            Err(StoreError::NoSuchUser(_))
        ));
        assert!(matches!(
            store.delete_user(&name("nobody")).await,
            Err(StoreError::NoSuchUser(_))
        ));
        store.add_user(&name("bob"), "h").await.unwrap();
        store.set_password(&name("BOB"), "h2").await.unwrap();
        store.delete_user(&name("bob")).await.unwrap();
        assert!(store.credentials(&name("bob")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn every_change_moves_the_account_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        store.add_user(&name("carol"), "h").await.unwrap();
        let stamp = |s: &Store| {
            let s = s.clone();
            async move { s.credentials(&name("carol")).await.unwrap().unwrap().stamp }
        };
        let s0 = stamp(&store).await;
        store.set_disabled(&name("carol"), true).await.unwrap();
        let s1 = stamp(&store).await;
        assert!(s1.disabled && s1.generation > s0.generation);
        store.set_disabled(&name("carol"), false).await.unwrap();
        store.set_password(&name("carol"), "h2").await.unwrap();
        let s2 = stamp(&store).await;
        assert!(!s2.disabled && s2.generation > s1.generation + 1);
        assert_eq!(store.account_stamps().await.unwrap(), vec![s2]);
        assert!(
            store
                .list_users()
                .await
                .unwrap()
                .iter()
                .all(|u| !u.disabled)
        );
    }
}
