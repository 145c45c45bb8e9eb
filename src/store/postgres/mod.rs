//! The PostgreSQL backend (`--db postgres://…`): the same tables and answers as SQLite's, for
//! a server whose accounts live in a database several nodes share. Migrations are in
//! `migrations/postgres` (sqlx takes an advisory lock, so nodes starting together migrate
//! once). No error or log line holds the URL's password (see [`Location::url`]).

use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{
    AccountStamp, Certificate, Credentials, HistoryBatch, Location, MessageRange, OnPasswordChange,
    StoreError, UserSummary, already_bound, changed_user, kept_messages, newest_messages,
    seq_from_sql, seq_to_sql,
};
use crate::event::{Event, RoomName, Seq};
use crate::username::Username;

/// Connections in the pool: logins, history reads and the history writer share it.
const MAX_CONNECTIONS: u32 = 8;
/// How long an operation waits for a connection (a database that is down answers within
/// this, so logins get `Server busy` instead of hanging).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// True when `db` names a PostgreSQL server rather than a SQLite file.
pub fn is_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// A handle on a PostgreSQL database; cheap to clone.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    at: Location,
}

impl PgStore {
    /// Connects and migrates.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let (pool, at) = connect(url, MAX_CONNECTIONS).await?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                at: at.clone(),
                source: source.into(),
            })?;
        Ok(PgStore { pool, at })
    }

    /// Adds a user; the name must not exist in any letter case.
    pub async fn add_user(&self, name: &Username, password_hash: &str) -> Result<(), StoreError> {
        let result = sqlx::query("INSERT INTO users (username, password_hash) VALUES ($1, $2)")
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

    /// Replaces a user's password hash, removing its certificates unless told to keep them.
    pub async fn set_password(
        &self,
        name: &Username,
        password_hash: &str,
        certificates: OnPasswordChange,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.error(e))?;
        let changed = sqlx::query(&format!(
            "UPDATE users SET password_hash = $1, generation = generation + 1, \
             updated_at = {NOW} WHERE lower(username) = lower($2)"
        ))
        .bind(password_hash)
        .bind(name.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| self.error(e))?;
        changed_user(changed.rows_affected(), name)?;
        let removed = match certificates {
            OnPasswordChange::RemoveCertificates => sqlx::query(
                "DELETE FROM certificates WHERE user_id = \
                 (SELECT id FROM users WHERE lower(username) = lower($1))",
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

    /// Replaces the hash of the account in `stamp` if it has not changed since.
    pub async fn rehash_password(
        &self,
        stamp: AccountStamp,
        password_hash: &str,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND generation = $3")
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
        let done = sqlx::query(&format!(
            "UPDATE users SET disabled = $1, generation = generation + 1, updated_at = {NOW} \
             WHERE lower(username) = lower($2)"
        ))
        .bind(disabled)
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
             JOIN users u ON u.id = c.user_id WHERE c.fingerprint = $1",
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
             SELECT id, $1, $2 FROM users WHERE lower(username) = lower($3) \
             ON CONFLICT DO NOTHING",
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
        executor: impl sqlx::PgExecutor<'e>,
        user: &Username,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM users WHERE lower(username) = lower($1)")
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
             JOIN users u ON u.id = c.user_id WHERE lower(u.username) = lower($1) \
             ORDER BY c.label COLLATE \"C\"",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error(e))
    }

    /// Unbinds the certificate of `user` with this fingerprint or label; returns its label.
    pub async fn delete_certificate(
        &self,
        user: &Username,
        fingerprint_or_label: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM certificates WHERE user_id = \
             (SELECT id FROM users WHERE lower(username) = lower($1)) \
             AND (fingerprint = $2 OR label = $2) RETURNING label",
        )
        .bind(user.as_str())
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
             WHERE c.fingerprint = $1",
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

    /// Every bound certificate as (fingerprint, account row id).
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

    /// The current stamp of every account.
    pub async fn account_stamps(&self) -> Result<Vec<AccountStamp>, StoreError> {
        sqlx::query_as("SELECT id, generation, disabled FROM users")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))
    }

    /// Deletes a user.
    pub async fn delete_user(&self, name: &Username) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM users WHERE lower(username) = lower($1)")
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        changed_user(done.rows_affected(), name)
    }

    /// All users, sorted case-insensitively.
    pub async fn list_users(&self) -> Result<Vec<UserSummary>, StoreError> {
        sqlx::query_as(
            "SELECT username, created_at, disabled FROM users \
             ORDER BY lower(username) COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error(e))
    }

    /// The stored credentials for a name, matched case-insensitively.
    pub async fn credentials(&self, name: &Username) -> Result<Option<Credentials>, StoreError> {
        sqlx::query_as(
            "SELECT id, username, password_hash, disabled, generation, \
             (SELECT COUNT(*) FROM certificates c WHERE c.user_id = users.id) AS certificates \
             FROM users WHERE lower(username) = lower($1)",
        )
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.error(e))
    }

    /// The history writer's handle: a pooled connection per batch (PostgreSQL keeps no
    /// per-connection page cache worth pinning one for).
    pub fn history_connection(&self) -> HistoryConnection {
        HistoryConnection {
            store: self.clone(),
        }
    }

    /// Removes messages older than `cutoff_ms` (retention by age).
    pub async fn trim_history_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM message_blocks WHERE last_at_ms < $1")
            .bind(cutoff_ms)
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(done.rows_affected())
    }

    /// The number of the newest message ever written in `room` (0 if none).
    pub async fn room_last_seq(&self, room: &RoomName) -> Result<Seq, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM rooms WHERE name = $1")
            .bind(room.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(seq.map_or(0, seq_from_sql))
    }

    /// The rooms (besides #lobby) a user is a member of, sorted by name.
    pub async fn memberships(&self, user: i64) -> Result<Vec<RoomName>, StoreError> {
        let rooms: Vec<String> = sqlx::query_scalar(
            "SELECT room FROM memberships WHERE user_id = $1 ORDER BY room COLLATE \"C\"",
        )
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

    /// A user's read positions, each with the history epoch it was read in.
    pub async fn read_positions(
        &self,
        user: i64,
    ) -> Result<Vec<(RoomName, Seq, crate::event::HistoryEpoch)>, StoreError> {
        let rows: Vec<(String, i64, String)> =
            sqlx::query_as("SELECT room, seq, epoch FROM read_positions WHERE user_id = $1")
                .bind(user)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.error(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(room, seq, epoch)| {
                let epoch = crate::event::HistoryEpoch::from(epoch.as_str());
                Some((RoomName::parse(&room).ok()?, seq_from_sql(seq), epoch))
            })
            .collect())
    }

    /// The newest `limit` messages of `room` in `range`, oldest first; reads the newest
    /// blocks first, one row at a time, so a page costs about what it shows.
    pub async fn messages(
        &self,
        room: &RoomName,
        range: MessageRange,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        // Newest block first, read one row at a time.
        let rows = sqlx::query_scalar::<_, Vec<u8>>(
            "SELECT data FROM message_blocks WHERE room = $1 AND last_seq > $2 \
             AND first_seq <= $3 AND last_at_ms >= $4 ORDER BY last_seq DESC",
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

    /// How many messages of `room` in `range` are stored: from the blocks' bounds, decoding
    /// only the oldest block (retention by age may have left it partly out of range).
    pub async fn count_messages(
        &self,
        room: &RoomName,
        range: MessageRange,
    ) -> Result<u64, StoreError> {
        let (after, upto) = (seq_to_sql(range.after), seq_to_sql(range.upto));
        let oldest: Option<(i64, i64, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT first_seq, last_seq, data, \
             (SELECT SUM(LEAST(last_seq, $2) - GREATEST(first_seq, $1 + 1) + 1)::BIGINT \
              FROM message_blocks \
              WHERE room = $3 AND last_seq > $1 AND first_seq <= $2 AND last_at_ms >= $4) \
             FROM message_blocks WHERE room = $3 \
             AND last_seq > $1 AND first_seq <= $2 AND last_at_ms >= $4 \
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

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn error(&self, source: sqlx::Error) -> StoreError {
        database(&self.at, source)
    }
}

/// The channel the account triggers notify (see `migrations/postgres`).
const ACCOUNT_CHANNEL: &str = "tlschat_accounts";

/// Notifications that an account, its state or its certificates changed, on any node or from
/// the admin CLI: the server re-reads the stamps when told instead of polling.
pub struct AccountFeed {
    listener: sqlx::postgres::PgListener,
}

impl AccountFeed {
    /// Waits until something may have changed: a notification, or a lost connection
    /// (notifications sent meanwhile are lost, so the caller checks anyway; the next call
    /// reconnects). While the server is unreachable it returns once a second.
    pub async fn changed(&mut self) {
        if let Err(e) = self.listener.try_recv().await {
            tracing::warn!(error = %e, "account change feed interrupted");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

impl PgStore {
    /// Listens for account changes on a connection of its own.
    pub async fn account_feed(&self) -> Result<AccountFeed, StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        listener
            .listen(ACCOUNT_CHANNEL)
            .await
            .map_err(|e| self.error(e))?;
        Ok(AccountFeed { listener })
    }
}

/// What `tlschat doctor` reports of a PostgreSQL database, read without changing it.
#[derive(Debug)]
pub struct PgInspection {
    /// The server's `version()`.
    pub version: String,
    /// Migrations applied.
    pub applied: usize,
    /// Migrations this version has that are not applied yet.
    pub pending: usize,
    /// Accounts (0 before the first migration).
    pub users: i64,
}

/// Connects to `url` and reads its version, migrations and account count; migrates nothing.
pub async fn inspect(url: &str) -> Result<PgInspection, StoreError> {
    let (pool, at) = connect(url, 1).await?;
    let result = async {
        let version: String = sqlx::query_scalar("SELECT version()")
            .fetch_one(&pool)
            .await?;
        let migrated: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&pool)
                .await?;
        let applied: Vec<i64> = if migrated {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&pool)
                .await?
        } else {
            Vec::new()
        };
        let users: i64 = if migrated {
            sqlx::query_scalar("SELECT COUNT(*) FROM users")
                .fetch_one(&pool)
                .await?
        } else {
            0
        };
        let pending = sqlx::migrate!("migrations/postgres")
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .count();
        Ok::<_, sqlx::Error>(PgInspection {
            version,
            applied: applied.len(),
            pending,
            users,
        })
    }
    .await;
    pool.close().await;
    result.map_err(|e| database(&at, e))
}

/// The UTC time as the `created_at`/`updated_at` columns keep it.
const NOW: &str = "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";

/// The history writer's handle (see [`PgStore::history_connection`]).
pub struct HistoryConnection {
    store: PgStore,
}

impl HistoryConnection {
    /// Writes one batch in one transaction, as the SQLite writer does: messages and each
    /// room's newest number, retention by count, memberships, and read positions (which only
    /// move forward); rows of users deleted meanwhile are skipped. A failed transaction is
    /// rolled back when its connection returns to the pool.
    pub async fn write_history(&mut self, batch: &HistoryBatch) -> Result<(), StoreError> {
        let store = &self.store;
        let error = |source| store.error(source);
        let mut tx = store.pool.begin().await.map_err(error)?;
        let mut newest: std::collections::BTreeMap<&str, Seq> = Default::default();
        for block in &batch.messages {
            sqlx::query(
                "INSERT INTO message_blocks (room, first_seq, last_seq, last_at_ms, data) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
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
                "INSERT INTO rooms (name, last_seq) VALUES ($1, $2) ON CONFLICT (name) \
                 DO UPDATE SET last_seq = GREATEST(rooms.last_seq, excluded.last_seq)",
            )
            .bind(room)
            .bind(seq_to_sql(seq))
            .execute(&mut *tx)
            .await
            .map_err(error)?;
            if let Some(keep) = batch.keep_messages {
                sqlx::query("DELETE FROM message_blocks WHERE room = $1 AND last_seq <= $2")
                    .bind(room)
                    .bind(seq_to_sql(seq.saturating_sub(keep)))
                    .execute(&mut *tx)
                    .await
                    .map_err(error)?;
            }
        }
        for (user, room, member) in &batch.memberships {
            let query = if *member {
                "INSERT INTO memberships (user_id, room) \
                 SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM users WHERE id = $1) \
                 ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM memberships WHERE user_id = $1 AND room = $2"
            };
            sqlx::query(query)
                .bind(user)
                .bind(room.as_str())
                .execute(&mut *tx)
                .await
                .map_err(error)?;
        }
        if !batch.positions.is_empty() {
            // One statement for the whole tick, as arrays, one row per user and room (an
            // upsert may not touch a row twice).
            let positions = crate::event::HistoryEpoch::merge_rows(&batch.positions);
            let users: Vec<i64> = positions.iter().map(|(u, _, _, _)| *u).collect();
            let rooms: Vec<&str> = positions.iter().map(|(_, r, _, _)| r.as_str()).collect();
            let seqs: Vec<i64> = positions
                .iter()
                .map(|(_, _, s, _)| seq_to_sql(*s))
                .collect();
            let epochs: Vec<&str> = positions.iter().map(|(_, _, _, e)| e.as_str()).collect();
            // A position of another epoch replaces the stored one rather than being compared
            // with it: numbers of two epochs do not compare.
            sqlx::query(
                "INSERT INTO read_positions (user_id, room, seq, epoch) \
                 SELECT p.u, p.r, p.s, p.e \
                 FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[]) AS p (u, r, s, e) \
                 JOIN users ON users.id = p.u \
                 ON CONFLICT (user_id, room) DO UPDATE SET \
                 seq = CASE WHEN read_positions.epoch = excluded.epoch \
                 THEN GREATEST(read_positions.seq, excluded.seq) ELSE excluded.seq END, \
                 epoch = excluded.epoch",
            )
            .bind(users)
            .bind(rooms)
            .bind(seqs)
            .bind(epochs)
            .execute(&mut *tx)
            .await
            .map_err(error)?;
        }
        tx.commit().await.map_err(error)
    }
}

/// A pool of at most `connections` on `url`, and where it is (without the password).
async fn connect(url: &str, connections: u32) -> Result<(PgPool, Location), StoreError> {
    let at = Location::url(url);
    let options: PgConnectOptions = url.parse().map_err(|e| database(&at, e))?;
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| database(&at, e))?;
    Ok((pool, at))
}

fn database(at: &Location, source: sqlx::Error) -> StoreError {
    StoreError::Database {
        at: at.clone(),
        source: source.into(),
    }
}
