//! Accounts, certificates, rooms, memberships, read positions and stored messages: the only
//! place with SQL. [`Store`] is the handle the rest of the server uses; each backend is a
//! variant in its own module (`sqlite`, the default, and `postgres`), with the domain types
//! and [`StoreError`] shared.

pub mod postgres;
pub mod sqlite;

use std::path::{Path, PathBuf};

use crate::event::{Event, MessageBlock, RoomName, Seq};
use crate::username::Username;

pub use sqlite::{Inspection, PAGE_SIZE_BYTES, inspect};

/// Where the store is, as `--db` names it: a SQLite file, or a PostgreSQL server by URL.
#[derive(Clone, PartialEq, Eq)]
pub enum Db {
    /// A SQLite file (created if missing).
    File(PathBuf),
    /// A `postgres://` or `postgresql://` URL (its password is never shown).
    Url(String),
}

impl Db {
    /// Reads `--db`: a PostgreSQL URL, or else a file path.
    pub fn parse(given: PathBuf) -> Db {
        match given.to_str() {
            Some(url) if postgres::is_url(url) => Db::Url(url.to_owned()),
            _ => Db::File(given),
        }
    }

    /// Where it is, as errors and logs may show it.
    pub fn location(&self) -> Location {
        match self {
            Db::File(path) => Location::path(path),
            Db::Url(url) => Location::url(url),
        }
    }
}

impl std::fmt::Debug for Db {
    /// Without the URL's password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.location())
    }
}

/// The result of a statement that changes the account `name`: it must have found it.
fn changed_user(rows_affected: u64, name: &Username) -> Result<(), StoreError> {
    if rows_affected == 0 {
        return Err(StoreError::NoSuchUser(name.to_string()));
    }
    Ok(())
}

/// Sequence numbers as SQL integers (signed; numbers stay far below 2^63).
fn seq_to_sql(seq: Seq) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn seq_from_sql(seq: i64) -> Seq {
    Seq::try_from(seq).unwrap_or(0)
}

/// The messages of one stored block that fall in `range`; an unreadable block counts as none
/// (and is logged).
fn decode_in(room: &RoomName, data: &[u8], range: MessageRange) -> Vec<Event> {
    let Some(events) = crate::event::decode_messages(room, data) else {
        tracing::warn!(room = %room, "skipping an unreadable block of stored messages");
        return Vec::new();
    };
    events.into_iter().filter(|e| range.holds(e)).collect()
}

/// The newest `limit` messages in `range` from blocks read newest first, oldest first: the
/// blocks are pulled one at a time, so a page costs about what it shows.
async fn newest_messages<E>(
    mut blocks: impl futures_util::Stream<Item = Result<Vec<u8>, E>> + Unpin,
    room: &RoomName,
    range: MessageRange,
    limit: usize,
) -> Result<Vec<Event>, E> {
    use futures_util::TryStreamExt as _;
    let mut newest_first = Vec::new();
    while newest_first.len() < limit {
        let Some(data) = blocks.try_next().await? else {
            break;
        };
        for event in decode_in(room, &data, range).into_iter().rev() {
            if newest_first.len() == limit {
                break;
            }
            newest_first.push(event);
        }
    }
    newest_first.reverse();
    Ok(newest_first)
}

/// How many messages of `range` the blocks hold, from the one statement both backends run:
/// the oldest block in range (first, last, data) and the sum of every block's bounds. The
/// oldest block's share of the sum is replaced by what it really holds (retention by age may
/// have left it partly out of range).
fn kept_messages(
    room: &RoomName,
    range: MessageRange,
    oldest: Option<(i64, i64, Vec<u8>, i64)>,
) -> u64 {
    let Some((first, last, data, bounded)) = oldest else {
        return 0;
    };
    let (after, upto) = (seq_to_sql(range.after), seq_to_sql(range.upto));
    let assumed = last.min(upto) - first.max(after.saturating_add(1)) + 1;
    let actual = decode_in(room, &data, range).len() as i64;
    u64::try_from(bounded - assumed + actual).unwrap_or(0)
}

/// The refusal of a certificate already bound: to another account, or to `user` under
/// `label`.
fn already_bound(owner: &str, label: String, user: &Username) -> StoreError {
    if owner.eq_ignore_ascii_case(user.as_str()) {
        StoreError::CertificateEnrolled(label)
    } else {
        StoreError::CertificateTaken
    }
}

/// Writes for [`HistoryConnection::write_history`], collected by the history writer.
#[derive(Debug, Default)]
pub struct HistoryBatch {
    /// New messages, encoded, in runs of one room each.
    pub messages: Vec<MessageBlock>,
    /// (user id, room, now a member).
    pub memberships: Vec<(i64, RoomName, bool)>,
    /// (user id, room, read position, the history epoch it was read in; see
    /// [`crate::event::HistoryEpoch`]).
    pub positions: Vec<(i64, RoomName, Seq, crate::event::HistoryEpoch)>,
    /// Messages kept per room (`history_messages`); `None` keeps all.
    pub keep_messages: Option<u64>,
}

/// Which messages of a room a read wants: numbers `after+1 ..= upto`, sent at or after
/// `min_at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRange {
    /// Exclusive lower bound.
    pub after: Seq,
    /// Inclusive upper bound.
    pub upto: Seq,
    /// Oldest send time kept (retention by age), ms since the epoch.
    pub min_at_ms: i64,
}

impl MessageRange {
    /// True when `event` is one of the messages wanted.
    pub fn holds(&self, event: &Event) -> bool {
        event.seq > self.after && event.seq <= self.upto && event.at_ms >= self.min_at_ms
    }
}

/// Where a store lives, as errors and logs may show it: a file path, or a URL whose password
/// (in the user info or a `password=` parameter) is replaced by `***`. A store error never
/// holds the URL itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location(String);

impl Location {
    /// A database file.
    pub fn path(path: &Path) -> Self {
        Location(path.display().to_string())
    }

    /// A server named by URL (`postgres://…`, `redis://…`), its password hidden.
    pub fn url(url: &str) -> Self {
        Location(redact_url(url))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `scheme://user:***@host/path?password=***`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", pairs.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// A backend's own error (sqlx's, redis-rs's), kept as the cause.
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// A store operation failed; the same for every backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening database {at}: {source}")]
    Open {
        at: Location,
        source: std::io::Error,
    },
    #[error("database {at}: {source}")]
    Database { at: Location, source: BackendError },
    #[error("migrating database {at}: {source}")]
    Migrate { at: Location, source: BackendError },
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("no such user: {0}")]
    NoSuchUser(String),
    #[error("that certificate belongs to another account")]
    CertificateTaken,
    #[error("that certificate is already enrolled as {0}")]
    CertificateEnrolled(String),
    #[error("a certificate is already labelled {0}")]
    LabelTaken(String),
}

/// A client certificate bound to an account. (Read from a row by either backend: the column
/// names are the same in both schemas.)
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Certificate {
    /// The owner's label for it.
    pub label: String,
    /// SHA-256 of its DER, upper-case hex pairs with colons.
    pub fingerprint: String,
    /// UTC day it was added, `YYYY-MM-DD`.
    #[sqlx(rename = "added_at")]
    pub added: String,
}

/// One account as listed for admins (never with its hash).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserSummary {
    /// Name as created.
    pub username: String,
    /// UTC creation time, `YYYY-MM-DDTHH:MM:SSZ`.
    pub created_at: String,
    /// Whether logins are refused.
    pub disabled: bool,
}

/// What login needs to check a password.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Credentials {
    /// Name as created (the display form).
    pub username: String,
    /// PHC string.
    pub password_hash: String,
    /// Whether logins are refused.
    pub disabled: bool,
    /// Client certificates that can log in to this account.
    pub certificates: i64,
    /// Identifies this account and its current state; see [`AccountStamp`].
    #[sqlx(flatten)]
    pub stamp: AccountStamp,
}

/// What a password change does to the account's client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPasswordChange {
    /// Remove them (the default of `tlschat user passwd`).
    RemoveCertificates,
    /// Keep them (`--keep-certificates`).
    KeepCertificates,
}

/// An account's row id and change counter: if either differs later, the account was deleted,
/// recreated, disabled or given a new password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::FromRow)]
pub struct AccountStamp {
    /// Row id (a deleted and re-added user gets a new one).
    pub id: i64,
    /// Incremented by every password or state change.
    pub generation: i64,
    /// Disabled at the time of the stamp.
    pub disabled: bool,
}

/// A handle on the store, whatever the backend; cheap to clone.
#[derive(Clone, Debug)]
pub enum Store {
    /// A SQLite file (the default).
    Sqlite(sqlite::SqliteStore),
    /// A PostgreSQL server (`--db postgres://…`).
    Postgres(postgres::PgStore),
}

impl Store {
    /// Opens (creating with mode 0600 if missing) and migrates a SQLite database.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Store::Sqlite(sqlite::SqliteStore::open(path).await?))
    }

    /// Opens and migrates the database `db` names, whatever its backend.
    pub async fn open_db(db: &Db) -> Result<Self, StoreError> {
        match db {
            Db::File(path) => Self::open(path).await,
            Db::Url(url) => Ok(Store::Postgres(postgres::PgStore::open(url).await?)),
        }
    }

    /// Adds a user; the name must not exist in any letter case.
    pub async fn add_user(&self, name: &Username, password_hash: &str) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.add_user(name, password_hash).await,
            Store::Postgres(s) => s.add_user(name, password_hash).await,
        }
    }

    /// Replaces a user's password hash (closing the account's sessions, as any change does)
    /// and, unless told to keep them, removes its client certificates in the same
    /// transaction: a reset after a compromise must not leave an enrolled certificate in.
    /// Returns how many certificates were removed.
    pub async fn set_password(
        &self,
        name: &Username,
        password_hash: &str,
        certificates: OnPasswordChange,
    ) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.set_password(name, password_hash, certificates).await,
            Store::Postgres(s) => s.set_password(name, password_hash, certificates).await,
        }
    }

    /// Replaces the hash of the account in `stamp` with one of the same password made with
    /// other parameters; unlike [`Store::set_password`] it keeps the generation, so the live
    /// session is not closed as changed. Does nothing (false) if the account changed since.
    pub async fn rehash_password(
        &self,
        stamp: AccountStamp,
        password_hash: &str,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.rehash_password(stamp, password_hash).await,
            Store::Postgres(s) => s.rehash_password(stamp, password_hash).await,
        }
    }

    /// Disables or enables a user's logins.
    pub async fn set_disabled(&self, name: &Username, disabled: bool) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.set_disabled(name, disabled).await,
            Store::Postgres(s) => s.set_disabled(name, disabled).await,
        }
    }

    /// Binds the certificate with `fingerprint` to `user` under `label`.
    pub async fn add_certificate(
        &self,
        user: &Username,
        fingerprint: &str,
        label: &str,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.add_certificate(user, fingerprint, label).await,
            Store::Postgres(s) => s.add_certificate(user, fingerprint, label).await,
        }
    }

    /// The certificates of `user`, by label.
    pub async fn certificates(&self, user: &Username) -> Result<Vec<Certificate>, StoreError> {
        match self {
            Store::Sqlite(s) => s.certificates(user).await,
            Store::Postgres(s) => s.certificates(user).await,
        }
    }

    /// Unbinds the certificate of `user` with this fingerprint or label; returns its label,
    /// or `None` when there is none.
    pub async fn delete_certificate(
        &self,
        user: &Username,
        fingerprint_or_label: &str,
    ) -> Result<Option<String>, StoreError> {
        match self {
            Store::Sqlite(s) => s.delete_certificate(user, fingerprint_or_label).await,
            Store::Postgres(s) => s.delete_certificate(user, fingerprint_or_label).await,
        }
    }

    /// The account a certificate is bound to, if any, with its current credentials.
    pub async fn certificate_owner(
        &self,
        fingerprint: &str,
    ) -> Result<Option<Credentials>, StoreError> {
        match self {
            Store::Sqlite(s) => s.certificate_owner(fingerprint).await,
            Store::Postgres(s) => s.certificate_owner(fingerprint).await,
        }
    }

    /// Every bound certificate as (fingerprint, account row id), for noticing revocations.
    pub async fn certificate_bindings(&self) -> Result<Vec<(String, i64)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.certificate_bindings().await,
            Store::Postgres(s) => s.certificate_bindings().await,
        }
    }

    /// The current stamp of every account, for noticing changes made by other processes.
    pub async fn account_stamps(&self) -> Result<Vec<AccountStamp>, StoreError> {
        match self {
            Store::Sqlite(s) => s.account_stamps().await,
            Store::Postgres(s) => s.account_stamps().await,
        }
    }

    /// A feed of account changes, where the backend has one (PostgreSQL); `None` means the
    /// stamps must be polled (SQLite, whose other writers cannot notify).
    pub async fn account_feed(&self) -> Result<Option<postgres::AccountFeed>, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(s) => Ok(Some(s.account_feed().await?)),
        }
    }

    /// Deletes a user.
    pub async fn delete_user(&self, name: &Username) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.delete_user(name).await,
            Store::Postgres(s) => s.delete_user(name).await,
        }
    }

    /// All users, sorted case-insensitively.
    pub async fn list_users(&self) -> Result<Vec<UserSummary>, StoreError> {
        match self {
            Store::Sqlite(s) => s.list_users().await,
            Store::Postgres(s) => s.list_users().await,
        }
    }

    /// The stored credentials for a name, matched case-insensitively.
    pub async fn credentials(&self, name: &Username) -> Result<Option<Credentials>, StoreError> {
        match self {
            Store::Sqlite(s) => s.credentials(name).await,
            Store::Postgres(s) => s.credentials(name).await,
        }
    }

    /// A connection of its own for the history writer: its page cache stays warm between
    /// commits (a pooled connection would re-read what another one wrote), and it commits with
    /// `synchronous = NORMAL`, which in WAL mode syncs at checkpoints instead of at every
    /// commit: a process crash loses no committed batch, a power failure may lose the last
    /// ones. Accounts keep the pool's full sync.
    pub async fn history_connection(&self) -> Result<HistoryConnection, StoreError> {
        match self {
            Store::Sqlite(s) => Ok(HistoryConnection::Sqlite(s.history_connection().await?)),
            Store::Postgres(s) => Ok(HistoryConnection::Postgres(s.history_connection())),
        }
    }

    /// Removes messages older than `cutoff_ms` (retention by age).
    pub async fn trim_history_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.trim_history_before(cutoff_ms).await,
            Store::Postgres(s) => s.trim_history_before(cutoff_ms).await,
        }
    }

    /// The number of the newest message ever written in `room` (0 if none).
    pub async fn room_last_seq(&self, room: &RoomName) -> Result<Seq, StoreError> {
        match self {
            Store::Sqlite(s) => s.room_last_seq(room).await,
            Store::Postgres(s) => s.room_last_seq(room).await,
        }
    }

    /// The rooms (besides #lobby) a user is a member of, sorted by name; names that no longer
    /// parse are skipped.
    pub async fn memberships(&self, user: i64) -> Result<Vec<RoomName>, StoreError> {
        match self {
            Store::Sqlite(s) => s.memberships(user).await,
            Store::Postgres(s) => s.memberships(user).await,
        }
    }

    /// A user's read positions, each with the history epoch it was read in (always empty on
    /// SQLite, whose history has none).
    pub async fn read_positions(
        &self,
        user: i64,
    ) -> Result<Vec<(RoomName, Seq, crate::event::HistoryEpoch)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.read_positions(user).await,
            Store::Postgres(s) => s.read_positions(user).await,
        }
    }

    /// The newest `limit` messages of `room` numbered in `after+1 ..= upto` and sent at or after
    /// `min_at_ms`, oldest first.
    pub async fn messages(
        &self,
        room: &RoomName,
        range: MessageRange,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        match self {
            Store::Sqlite(s) => s.messages(room, range, limit).await,
            Store::Postgres(s) => s.messages(room, range, limit).await,
        }
    }

    /// How many messages of `room` in `range` are stored.
    pub async fn count_messages(
        &self,
        room: &RoomName,
        range: MessageRange,
    ) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.count_messages(room, range).await,
            Store::Postgres(s) => s.count_messages(room, range).await,
        }
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }
}

/// The history writer's own connection, whatever the backend.
pub enum HistoryConnection {
    /// On a SQLite file.
    Sqlite(sqlite::HistoryConnection),
    /// On a PostgreSQL server.
    Postgres(postgres::HistoryConnection),
}

impl HistoryConnection {
    /// Writes one batch of history in one transaction: messages (and each room's newest
    /// number), retention by count, memberships and read positions (which only move forward).
    /// Rows of users deleted meanwhile are skipped. After a failure the connection is closed:
    /// SQLite may or may not have rolled the transaction back itself (a full disk, an I/O
    /// error), and a retry on the same connection could nest inside a transaction left open
    /// and never be committed.
    pub async fn write_history(&mut self, batch: &HistoryBatch) -> Result<(), StoreError> {
        match self {
            HistoryConnection::Sqlite(s) => s.write_history(batch).await,
            HistoryConnection::Postgres(s) => s.write_history(batch).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_never_shows_a_password() {
        let cases = [
            (
                "postgres://chat:s3cret@db.example:5432/chat?sslmode=require&password=s3cret",
                "postgres://chat:***@db.example:5432/chat?sslmode=require&password=***",
            ),
            (
                "redis://:s3cret@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            (
                "rediss://default:s3cret@cache",
                "rediss://default:***@cache",
            ),
            ("postgres://chat@db/chat", "postgres://chat@db/chat"),
            (
                "redis+unix:///run/redis.sock",
                "redis+unix:///run/redis.sock",
            ),
        ];
        for (url, shown) in cases {
            assert_eq!(Location::url(url).to_string(), shown);
        }
        let error = StoreError::Database {
            at: Location::url("postgres://chat:s3cret@db/chat"),
            source: "connection refused".into(),
        };
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }
}
