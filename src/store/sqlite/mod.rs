//! The SQLite backend: every SQL statement of the default server, its migrations
//! (`migrations/sqlite`), and the history writer's connection.

mod inspect;

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::{
    AccountStamp, Certificate, Credentials, HistoryBatch, Location, MessageRange, OnPasswordChange,
    StoreError, UserSummary, already_bound, changed_user, kept_messages, newest_messages,
    seq_from_sql, seq_to_sql,
};
use crate::event::{Event, RoomName, Seq};
use crate::username::Username;

pub use inspect::{Inspection, inspect};

/// The page size of databases this version creates.
pub const PAGE_SIZE_BYTES: u32 = 32 * 1024;
/// How long a writer waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Two processes opening a fresh file at once can race on the first migration; retry that.
const MIGRATE_ATTEMPTS: u32 = 5;

/// Read positions written by one statement (three parameters each, far below SQLite's
/// limit of 32,766).
const POSITIONS_PER_STATEMENT: usize = 500;

/// A handle on a SQLite database; cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

/// Tries of opening a database another process holds locked: switching a new file to WAL
/// answers "database is locked" at once (SQLite's busy timeout does not cover it), as when
/// two `tlschat user add` run together on a new database.
const CONNECT_TRIES: u32 = 40;
/// The wait between those tries.
const CONNECT_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// The pool, retrying while another process holds the file locked.
async fn connect(options: SqliteConnectOptions, path: &Path) -> Result<SqlitePool, StoreError> {
    let mut tries = 1;
    loop {
        let connected = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await;
        match connected {
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("5") && tries < CONNECT_TRIES =>
            {
                tries += 1;
                tokio::time::sleep(CONNECT_RETRY).await;
            }
            other => return other.map_err(|source| database(path, source)),
        }
    }
}

impl SqliteStore {
    /// Opens (creating with mode 0600 if missing) and migrates the database.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        create_private_file(path)?;
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|source| database(path, source))?
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // New databases only (an existing file keeps its size). History is written in
            // blocks of tens of KiB: with 32 KiB pages instead of 4 KiB, storing it costs half
            // the CPU (fewer pages per block to allocate, log, checkpoint and free; measured
            // with benches/run.sh fanout10). The WAL is checkpointed every 1000 pages (32 MiB).
            .page_size(PAGE_SIZE_BYTES)
            // 256 KiB of page cache per connection (SQLite's default is 2 MiB): every
            // connection of the pool keeps its own, filled by log-ins and history reads that
            // the OS page cache serves almost as fast; the history writer's is larger.
            .pragma("cache_size", "-256");
        let pool = connect(options, path).await?;
        let store = SqliteStore {
            pool,
            path: path.to_owned(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut attempt = 1;
        loop {
            match sqlx::migrate!("migrations/sqlite").run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(_) if attempt < MIGRATE_ATTEMPTS => attempt += 1,
                Err(source) => {
                    return Err(StoreError::Migrate {
                        at: Location::path(&self.path),
                        source: source.into(),
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
        certificates: OnPasswordChange,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.error(e))?;
        let changed = sqlx::query(
            "UPDATE users SET password_hash = ?, generation = generation + 1, \
             updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE username = ?",
        )
        .bind(password_hash)
        .bind(name.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| self.error(e))?;
        changed_user(changed.rows_affected(), name)?;
        let removed = match certificates {
            OnPasswordChange::RemoveCertificates => sqlx::query(
                "DELETE FROM certificates WHERE user_id = (SELECT id FROM users WHERE username = ?)",
            )
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error(e))?
            .rows_affected(),
            OnPasswordChange::KeepCertificates => 0,
        };
        tx.commit().await.map_err(|e| self.error(e))?;
        Ok(removed)
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
        changed_user(done.rows_affected(), name)
    }

    /// Binds the certificate with `fingerprint` to `user` under `label`.
    pub async fn add_certificate(
        &self,
        user: &Username,
        fingerprint: &str,
        label: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.error(e))?;
        let owner = sqlx::query(
            "SELECT c.label AS label, u.username AS username FROM certificates c \
             JOIN users u ON u.id = c.user_id WHERE c.fingerprint = ?",
        )
        .bind(fingerprint)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.error(e))?;
        if let Some(row) = owner {
            let username: String = row.try_get("username").map_err(|e| self.error(e))?;
            let label: String = row.try_get("label").map_err(|e| self.error(e))?;
            return Err(already_bound(&username, label, user));
        }
        let added = sqlx::query(
            "INSERT INTO certificates (user_id, fingerprint, label) \
             SELECT id, ?, ? FROM users WHERE username = ? \
             ON CONFLICT (user_id, label) DO NOTHING",
        )
        .bind(fingerprint)
        .bind(label)
        .bind(user.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| self.error(e))?;
        if added.rows_affected() == 0 {
            return Err(if self.user_exists(&mut *tx, user).await? {
                StoreError::LabelTaken(label.to_owned())
            } else {
                StoreError::NoSuchUser(user.to_string())
            });
        }
        tx.commit().await.map_err(|e| self.error(e))
    }

    /// Whether an account named `user` (any letter case) exists.
    async fn user_exists<'e>(
        &self,
        executor: impl sqlx::SqliteExecutor<'e>,
        user: &Username,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM users WHERE username = ?")
            .bind(user.as_str())
            .fetch_optional(executor)
            .await
            .map_err(|e| self.error(e))?;
        Ok(row.is_some())
    }

    /// The certificates of `user`, by label.
    pub async fn certificates(&self, user: &Username) -> Result<Vec<Certificate>, StoreError> {
        if !self.user_exists(&self.pool, user).await? {
            return Err(StoreError::NoSuchUser(user.to_string()));
        }
        sqlx::query_as(
            "SELECT c.label, c.fingerprint, c.added_at FROM certificates c \
             JOIN users u ON u.id = c.user_id WHERE u.username = ? ORDER BY c.label",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error(e))
    }

    /// Unbinds the certificate of `user` with this fingerprint or label; returns its label,
    /// or `None` when there is none.
    pub async fn delete_certificate(
        &self,
        user: &Username,
        fingerprint_or_label: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM certificates WHERE user_id = (SELECT id FROM users WHERE username = ?) \
             AND (fingerprint = ? OR label = ?) RETURNING label",
        )
        .bind(user.as_str())
        .bind(fingerprint_or_label)
        .bind(fingerprint_or_label)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.error(e))?;
        row.map(|r| r.try_get("label"))
            .transpose()
            .map_err(|e| self.error(e))
    }

    /// The account a certificate is bound to, if any, with its current credentials.
    pub async fn certificate_owner(
        &self,
        fingerprint: &str,
    ) -> Result<Option<Credentials>, StoreError> {
        let row = sqlx::query(
            "SELECT u.username FROM certificates c JOIN users u ON u.id = c.user_id \
             WHERE c.fingerprint = ?",
        )
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.error(e))?;
        let Some(row) = row else { return Ok(None) };
        let name: String = row.try_get("username").map_err(|e| self.error(e))?;
        match Username::parse(&name) {
            Ok(user) => self.credentials(&user).await,
            Err(_) => Ok(None),
        }
    }

    /// Every bound certificate as (fingerprint, account row id), for noticing revocations.
    pub async fn certificate_bindings(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT fingerprint, user_id FROM certificates")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        rows.into_iter()
            .map(|r| Ok((r.try_get("fingerprint")?, r.try_get("user_id")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.error(e))
    }

    /// The current stamp of every account, for noticing changes made by other processes.
    pub async fn account_stamps(&self) -> Result<Vec<AccountStamp>, StoreError> {
        sqlx::query_as("SELECT id, generation, disabled FROM users")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))
    }

    /// Deletes a user.
    pub async fn delete_user(&self, name: &Username) -> Result<(), StoreError> {
        self.change_one(sqlx::query("DELETE FROM users WHERE username = ?"), name)
            .await
    }

    /// All users, sorted case-insensitively.
    pub async fn list_users(&self) -> Result<Vec<UserSummary>, StoreError> {
        sqlx::query_as("SELECT username, created_at, disabled FROM users ORDER BY username")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))
    }

    /// The stored credentials for a name, matched case-insensitively.
    pub async fn credentials(&self, name: &Username) -> Result<Option<Credentials>, StoreError> {
        sqlx::query_as(
            "SELECT id, username, password_hash, disabled, generation, \
             (SELECT COUNT(*) FROM certificates c WHERE c.user_id = users.id) AS certificates \
             FROM users WHERE username = ?",
        )
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.error(e))
    }

    /// A connection of its own for the history writer: its page cache stays warm between
    /// commits (a pooled connection would re-read what another one wrote), and it commits with
    /// `synchronous = NORMAL`, which in WAL mode syncs at checkpoints instead of at every
    /// commit: a process crash loses no committed batch, a power failure may lose the last
    /// ones. Accounts keep the pool's full sync.
    pub async fn history_connection(&self) -> Result<HistoryConnection, StoreError> {
        let mut writer = HistoryConnection {
            conn: None,
            store: self.clone(),
        };
        writer.connection().await?;
        Ok(writer)
    }
}

/// The history writer's connection (see [`SqliteStore::history_connection`]).
pub struct HistoryConnection {
    /// `None` after a failed write: the next write starts on a fresh connection.
    conn: Option<sqlx::pool::PoolConnection<sqlx::Sqlite>>,
    store: SqliteStore,
}

impl HistoryConnection {
    /// The connection, opened (with the writer's settings) if the last write failed.
    async fn connection(
        &mut self,
    ) -> Result<&mut sqlx::pool::PoolConnection<sqlx::Sqlite>, StoreError> {
        if self.conn.is_none() {
            let store = &self.store;
            let mut conn = store.pool.acquire().await.map_err(|e| store.error(e))?;
            // 1 MiB of cache holds a commit's pages under load, so the writer does not spill.
            sqlx::query("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -1024")
                .execute(&mut *conn)
                .await
                .map_err(|e| store.error(e))?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("just opened"))
    }

    /// Writes one batch of history in one transaction: messages (and each room's newest
    /// number), retention by count, memberships and read positions (which only move forward).
    /// Rows of users deleted meanwhile are skipped. After a failure the connection is closed:
    /// SQLite may or may not have rolled the transaction back itself (a full disk, an I/O
    /// error), and a retry on the same connection could nest inside a transaction left open
    /// and never be committed.
    pub async fn write_history(&mut self, batch: &HistoryBatch) -> Result<(), StoreError> {
        let result = self.try_write_history(batch).await;
        if result.is_err()
            && let Some(conn) = self.conn.take()
        {
            let _ = conn.close().await;
        }
        result
    }

    async fn try_write_history(&mut self, batch: &HistoryBatch) -> Result<(), StoreError> {
        use sqlx::Connection;
        let path = self.store.path.clone();
        let error = |source| database(&path, source);
        let mut tx = self.connection().await?.begin().await.map_err(error)?;
        let mut newest: std::collections::BTreeMap<&str, Seq> = Default::default();
        for block in &batch.messages {
            sqlx::query(
                "INSERT OR IGNORE INTO message_blocks \
                 (room, first_seq, last_seq, last_at_ms, data) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(block.room.as_str())
            .bind(seq_to_sql(block.first_seq))
            .bind(seq_to_sql(block.last_seq))
            .bind(block.last_at_ms)
            .bind(block.data.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(error)?;
            let seq = newest.entry(block.room.as_str()).or_default();
            *seq = (*seq).max(block.last_seq);
        }
        for (room, seq) in newest {
            sqlx::query(
                "INSERT INTO rooms (name, last_seq) VALUES (?, ?) ON CONFLICT (name) \
                 DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
            )
            .bind(room)
            .bind(seq_to_sql(seq))
            .execute(&mut *tx)
            .await
            .map_err(error)?;
            if let Some(keep) = batch.keep_messages {
                // Blocks wholly past the limit; reads skip the older part of the one that
                // straddles it.
                sqlx::query("DELETE FROM message_blocks WHERE room = ? AND last_seq <= ?")
                    .bind(room)
                    .bind(seq_to_sql(seq.saturating_sub(keep)))
                    .execute(&mut *tx)
                    .await
                    .map_err(error)?;
            }
        }
        for (user, room, member) in &batch.memberships {
            let query = if *member {
                "INSERT OR IGNORE INTO memberships (user_id, room) \
                 SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM users WHERE id = ?1)"
            } else {
                "DELETE FROM memberships WHERE user_id = ?1 AND room = ?2"
            };
            sqlx::query(query)
                .bind(user)
                .bind(room.as_str())
                .execute(&mut *tx)
                .await
                .map_err(error)?;
        }
        // One statement per chunk, not per row: every sessions' positions of a tick share a
        // batch, and each statement of it costs a statement journal in SQLite. Rows of
        // deleted accounts are dropped by the join.
        for chunk in batch.positions.chunks(POSITIONS_PER_STATEMENT) {
            let rows = vec!["(?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "INSERT INTO read_positions (user_id, room, seq) \
                 SELECT p.column1, p.column2, max(p.column3) FROM (VALUES {rows}) AS p \
                 JOIN users ON users.id = p.column1 GROUP BY p.column1, p.column2 \
                 ON CONFLICT (user_id, room) DO UPDATE SET seq = max(seq, excluded.seq)"
            );
            let mut query = sqlx::query(&sql);
            // One node's history has no epochs: every position is of the one numbering.
            for (user, room, seq, _) in chunk {
                query = query.bind(user).bind(room.as_str()).bind(seq_to_sql(*seq));
            }
            query.execute(&mut *tx).await.map_err(error)?;
        }
        tx.commit().await.map_err(error)
    }
}

impl SqliteStore {
    /// Removes messages older than `cutoff_ms` (retention by age).
    pub async fn trim_history_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM message_blocks WHERE last_at_ms < ?")
            .bind(cutoff_ms)
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(done.rows_affected())
    }

    /// The number of the newest message ever written in `room` (0 if none).
    pub async fn room_last_seq(&self, room: &RoomName) -> Result<Seq, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM rooms WHERE name = ?")
            .bind(room.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(seq.map_or(0, seq_from_sql))
    }

    /// The rooms (besides #lobby) a user is a member of, sorted by name; names that no longer
    /// parse are skipped.
    pub async fn memberships(&self, user: i64) -> Result<Vec<RoomName>, StoreError> {
        let rooms: Vec<String> =
            sqlx::query_scalar("SELECT room FROM memberships WHERE user_id = ? ORDER BY room")
                .bind(user)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.error(e))?;
        Ok(rooms
            .iter()
            .filter_map(|r| RoomName::parse(r).ok())
            .filter(|r| !r.is_lobby())
            .collect())
    }

    /// A user's read positions (without epochs: one node's history has none).
    pub async fn read_positions(
        &self,
        user: i64,
    ) -> Result<Vec<(RoomName, Seq, crate::event::HistoryEpoch)>, StoreError> {
        let rows = sqlx::query("SELECT room, seq FROM read_positions WHERE user_id = ?")
            .bind(user)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let room: String = r.try_get("room").map_err(|e| self.error(e))?;
            let seq: i64 = r.try_get("seq").map_err(|e| self.error(e))?;
            if let Ok(room) = RoomName::parse(&room) {
                out.push((room, seq_from_sql(seq), crate::event::HistoryEpoch::none()));
            }
        }
        Ok(out)
    }

    /// The newest `limit` messages of `room` numbered in `after+1 ..= upto` and sent at or after
    /// `min_at_ms`, oldest first.
    pub async fn messages(
        &self,
        room: &RoomName,
        range: MessageRange,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        // Newest block first, read one row at a time.
        let rows = sqlx::query_scalar::<_, Vec<u8>>(
            "SELECT data FROM message_blocks WHERE room = ? AND last_seq > ? AND first_seq <= ? \
             AND last_at_ms >= ? ORDER BY last_seq DESC",
        )
        .bind(room.as_str())
        .bind(seq_to_sql(range.after))
        .bind(seq_to_sql(range.upto))
        .bind(range.min_at_ms)
        .fetch(&self.pool);
        newest_messages(rows, room, range, limit)
            .await
            .map_err(|e| self.error(e))
    }

    /// How many messages of `room` in `range` are stored: from the blocks' bounds (a block
    /// holds consecutive numbers), decoding only the oldest block, which retention by age may
    /// have left partly older than `range.min_at_ms`.
    pub async fn count_messages(
        &self,
        room: &RoomName,
        range: MessageRange,
    ) -> Result<u64, StoreError> {
        let (after, upto) = (seq_to_sql(range.after), seq_to_sql(range.upto));
        // One statement: the oldest block in range, and the sum over every block's bounds.
        let oldest: Option<(i64, i64, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT first_seq, last_seq, data, \
             (SELECT SUM(MIN(last_seq, ?2) - MAX(first_seq, ?1 + 1) + 1) FROM message_blocks \
              WHERE room = ?3 AND last_seq > ?1 AND first_seq <= ?2 AND last_at_ms >= ?4) \
             FROM message_blocks WHERE room = ?3 \
             AND last_seq > ?1 AND first_seq <= ?2 AND last_at_ms >= ?4 \
             ORDER BY last_seq ASC LIMIT 1",
        )
        .bind(after)
        .bind(upto)
        .bind(room.as_str())
        .bind(range.min_at_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.error(e))?;
        Ok(kept_messages(room, range, oldest))
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn error(&self, source: sqlx::Error) -> StoreError {
        database(&self.path, source)
    }
}

fn database(path: &Path, source: sqlx::Error) -> StoreError {
    StoreError::Database {
        at: Location::path(path),
        source: source.into(),
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
            at: Location::path(path),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use crate::event::MessageBlock;
    use std::os::unix::fs::PermissionsExt;

    fn name(s: &str) -> Username {
        Username::parse(s).unwrap()
    }

    fn message(seq: Seq, at_ms: i64) -> std::sync::Arc<Event> {
        std::sync::Arc::new(Event {
            room: RoomName::lobby(),
            seq,
            at_ms,
            kind: EventKind::Chat {
                from: "bob".into(),
                text: format!("m{seq}"),
            },
        })
    }

    fn all(upto: Seq) -> MessageRange {
        MessageRange {
            after: 0,
            upto,
            min_at_ms: i64::MIN,
        }
    }

    /// Writes `batches` of messages in #lobby, keeping `keep` per room.
    async fn stored(
        batches: Vec<Vec<std::sync::Arc<Event>>>,
        keep: Option<u64>,
    ) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("h.db")).await.unwrap();
        let mut conn = store.history_connection().await.unwrap();
        for messages in batches {
            let mut blocks: Vec<MessageBlock> = Vec::new();
            for e in &messages {
                match blocks.last_mut() {
                    Some(b) if b.takes(e) => {
                        b.push(e);
                    }
                    _ => blocks.push(MessageBlock::new(e)),
                }
            }
            let batch = HistoryBatch {
                messages: blocks,
                keep_messages: keep,
                ..HistoryBatch::default()
            };
            conn.write_history(&batch).await.unwrap();
        }
        (dir, store)
    }

    #[tokio::test]
    async fn positions_move_forward_and_those_of_deleted_accounts_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("p.db")).await.unwrap();
        store.add_user(&name("alice"), "h").await.unwrap();
        let alice = store
            .credentials(&name("alice"))
            .await
            .unwrap()
            .unwrap()
            .stamp
            .id;
        let (lobby, dev) = (RoomName::lobby(), RoomName::parse("#dev").unwrap());
        let mut conn = store.history_connection().await.unwrap();
        let batch = |positions| HistoryBatch {
            positions,
            ..HistoryBatch::default()
        };
        let none = crate::event::HistoryEpoch::none;
        conn.write_history(&batch(vec![
            (alice, lobby.clone(), 5, none()),
            (alice, dev.clone(), 2, none()),
            // The same room twice in one batch: the larger wins.
            (alice, dev.clone(), 7, none()),
            (alice + 1, lobby.clone(), 9, none()),
        ]))
        .await
        .unwrap();
        // Never back.
        conn.write_history(&batch(vec![(alice, lobby.clone(), 3, none())]))
            .await
            .unwrap();
        let mut stored = store.read_positions(alice).await.unwrap();
        stored.sort();
        assert_eq!(stored, [(dev, 7, none()), (lobby, 5, none())]);
        assert!(store.read_positions(alice + 1).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn counts_come_from_block_bounds_and_a_partly_old_block_is_decoded() {
        let lobby = RoomName::lobby();
        let batch = |seqs: std::ops::RangeInclusive<Seq>, at: &[i64]| {
            seqs.zip(at).map(|(s, at)| message(s, *at)).collect()
        };
        let (_dir, store) = stored(
            vec![
                batch(1..=3, &[1_000, 1_000, 1_000]),
                batch(4..=6, &[2_000, 2_000, 3_000]),
                batch(7..=9, &[3_000, 3_000, 3_000]),
            ],
            None,
        )
        .await;
        let count = |range| store.count_messages(&lobby, range);
        assert_eq!(count(all(9)).await.unwrap(), 9);
        let middle = MessageRange { after: 2, ..all(8) };
        assert_eq!(count(middle).await.unwrap(), 6);
        // Retention by age: 4 and 5 are older than the limit although their block is not.
        let recent = MessageRange {
            min_at_ms: 2_500,
            ..all(9)
        };
        assert_eq!(count(recent).await.unwrap(), 4);
        let shown: Vec<Seq> = store
            .messages(&lobby, recent, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(shown, [6, 7, 8, 9]);
        assert_eq!(count(MessageRange { after: 9, ..all(9) }).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn history_is_kept_by_count() {
        let lobby = RoomName::lobby();
        let first = (1..=3).map(|s| message(s, 1_000)).collect();
        let second = (4..=2000).map(|s| message(s, 1_000)).collect();
        let (_dir, store) = stored(vec![first, second], Some(1500)).await;
        assert_eq!(store.room_last_seq(&lobby).await.unwrap(), 2000);
        // The block of 1-3 is wholly past the count and gone; reads skip the older part of
        // the block that straddles the limit by range.
        assert_eq!(store.count_messages(&lobby, all(3)).await.unwrap(), 0);
        let kept = MessageRange {
            after: 500,
            ..all(2000)
        };
        assert_eq!(store.count_messages(&lobby, kept).await.unwrap(), 1500);
        let last = store.messages(&lobby, all(2000), 2).await.unwrap();
        let seqs: Vec<Seq> = last.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1999, 2000]);
    }

    #[tokio::test]
    async fn history_is_kept_by_age() {
        let lobby = RoomName::lobby();
        let old = (1..=3).map(|s| message(s, 1_000)).collect();
        let new = (4..=6).map(|s| message(s, 2_000_000)).collect();
        let (_dir, store) = stored(vec![old, new], None).await;
        let recent = MessageRange {
            min_at_ms: 1_500_000,
            ..all(6)
        };
        assert_eq!(store.count_messages(&lobby, recent).await.unwrap(), 3);
        assert_eq!(store.count_messages(&lobby, all(6)).await.unwrap(), 6);
        store.trim_history_before(1_500_000).await.unwrap();
        assert_eq!(store.count_messages(&lobby, all(6)).await.unwrap(), 3);
        assert_eq!(
            store.room_last_seq(&lobby).await.unwrap(),
            6,
            "numbers stay"
        );
    }

    #[tokio::test]
    async fn new_databases_use_large_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("p.db")).await.unwrap();
        let size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(size, i64::from(PAGE_SIZE_BYTES));
    }

    #[tokio::test]
    async fn blocks_stored_before_the_rowid_table_are_kept_by_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        // A database as the previous version left it: every migration before the rowid one.
        let old = dir.path().join("old-migrations");
        std::fs::create_dir(&old).unwrap();
        let current = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        for entry in std::fs::read_dir(&current).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name().to_string_lossy().as_ref() < "20261203" {
                std::fs::copy(entry.path(), old.join(entry.file_name())).unwrap();
            }
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .unwrap()
            .filename(&path)
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .connect_with(options)
            .await
            .unwrap();
        sqlx::migrate::Migrator::new(old.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        let block = MessageBlock::new(&message(1, 1_000));
        sqlx::query(
            "INSERT INTO message_blocks (room, first_seq, last_seq, last_at_ms, data) \
             VALUES ('#lobby', 1, 1, 1000, ?)",
        )
        .bind(block.data.as_slice())
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let store = SqliteStore::open(&path).await.unwrap();
        let kept = store
            .messages(&RoomName::lobby(), all(1), 10)
            .await
            .unwrap();
        assert_eq!(kept, vec![(*message(1, 1_000)).clone()]);
    }

    #[tokio::test]
    async fn new_file_is_private_and_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(store.list_users().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_row_with_a_wrong_type_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("u.db")).await.unwrap();
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
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
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
    async fn a_password_change_removes_the_accounts_certificates_unless_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        for user in ["alice", "bob"] {
            store.add_user(&name(user), "h").await.unwrap();
        }
        store
            .add_certificate(&name("alice"), "aa", "laptop")
            .await
            .unwrap();
        store
            .add_certificate(&name("alice"), "bb", "phone")
            .await
            .unwrap();
        store
            .add_certificate(&name("bob"), "cc", "laptop")
            .await
            .unwrap();
        let count = |c: Option<Credentials>| c.unwrap().certificates;
        assert_eq!(count(store.credentials(&name("alice")).await.unwrap()), 2);
        let kept = store
            .set_password(&name("alice"), "h2", OnPasswordChange::KeepCertificates)
            .await
            .unwrap();
        assert_eq!(kept, 0);
        assert_eq!(count(store.credentials(&name("alice")).await.unwrap()), 2);
        let removed = store
            .set_password(&name("ALICE"), "h3", OnPasswordChange::RemoveCertificates)
            .await
            .unwrap();
        assert_eq!(removed, 2);
        assert_eq!(count(store.credentials(&name("alice")).await.unwrap()), 0);
        assert_eq!(count(store.credentials(&name("bob")).await.unwrap()), 1);
    }

    #[tokio::test]
    async fn passwd_and_del_need_an_existing_user() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        assert!(matches!(
            store
                .set_password(&name("nobody"), "h", OnPasswordChange::RemoveCertificates)
                .await,
            Err(StoreError::NoSuchUser(_))
        ));
        assert!(matches!(
            store.delete_user(&name("nobody")).await,
            Err(StoreError::NoSuchUser(_))
        ));
        store.add_user(&name("bob"), "h").await.unwrap();
        store
            .set_password(&name("BOB"), "h2", OnPasswordChange::KeepCertificates)
            .await
            .unwrap();
        store.delete_user(&name("bob")).await.unwrap();
        assert!(store.credentials(&name("bob")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn every_change_moves_the_account_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        store.add_user(&name("carol"), "h").await.unwrap();
        let stamp = |s: &SqliteStore| {
            let s = s.clone();
            async move { s.credentials(&name("carol")).await.unwrap().unwrap().stamp }
        };
        let s0 = stamp(&store).await;
        store.set_disabled(&name("carol"), true).await.unwrap();
        let s1 = stamp(&store).await;
        assert!(s1.disabled && s1.generation > s0.generation);
        store.set_disabled(&name("carol"), false).await.unwrap();
        store
            .set_password(&name("carol"), "h2", OnPasswordChange::KeepCertificates)
            .await
            .unwrap();
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
