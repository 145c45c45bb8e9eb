//! The durable side of the rooms' logs: a writer that batches messages, memberships and read
//! positions into SQLite off the hot path, and the reads behind `/history`, the join history
//! and catch-up, made off the room lock. Memberships and read positions have their own handle,
//! [`Memberships`] (in `memberships`), which queues its writes to the same writer.
//!
//! The room appends to its in-memory log under its lock and hands each message here without
//! waiting ([`History::append`]); the writer commits whatever has queued up in one transaction,
//! at most every [`COMMIT_INTERVAL`], with each room's messages encoded into a few block rows.
//! A line is relayed before it is durable: a crash loses what was still queued, at most the
//! last 50 ms or so. A batch the database refuses (locked, full, failing) is kept and retried
//! until it is written, and only then counts as durable: while it waits, the messages stay in
//! memory (bounded by `history_backlog_bytes`, past which chat lines are refused instead of
//! relayed), so a line that was relayed is always stored, in order, under its one number.
//! Everything queued is committed before `close` returns (it keeps retrying a failing
//! database for at most [`CLOSE_RETRY_LIMIT`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::config::{HistoryMode, RoomLimits};
pub use crate::event::HistoryEpoch;
use crate::event::{Event, MessageBlock, RoomName, Seq};
use crate::protocol;
use crate::store::{HistoryBatch, HistoryConnection, MessageRange, Store, StoreError};
use memberships::Pending;
pub use memberships::{Memberships, Restore};

mod memberships;

/// The writer commits at most this often: at moderate rates a commit (and its fsync) carries
/// every line of the interval instead of one; it is also the most a crash can lose.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(50);
/// Bytes reserved for a room's block of unsaved messages: a busy room fills it without
/// regrowing from nothing each interval; a quiet one frees it within 50 ms.
const UNSAVED_BLOCK_BYTES: usize = 16 * 1024;
/// Writes gathered into one transaction at most.
const MAX_BATCH_WRITES: usize = 10_000;
/// The first wait before a failed batch is tried again; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
/// The longest wait between two tries of a failed batch.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);
/// How long `close` (at shutdown) keeps retrying a failing database before it gives the
/// unwritten messages up, with an error naming how many.
pub const CLOSE_RETRY_LIMIT: Duration = Duration::from_secs(10);
/// How often messages past `history_days` are deleted.
const AGE_TRIM_INTERVAL: Duration = Duration::from_secs(60);
/// The longest a history read may take before the member gets an error line instead.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const MS_PER_DAY: i64 = 86_400_000;

/// The number of a room's newest durable message, shared by the room and the writer: the
/// room drops messages from its in-memory window only once they are durable.
pub type Durable = Arc<AtomicU64>;

enum Write {
    /// Memberships and positions, numbered so that the writer can clear them from [`Pending`].
    Membership(i64, RoomName, bool, u64),
    Positions(i64, Vec<(RoomName, Seq)>, HistoryEpoch, u64),
    Barrier(oneshot::Sender<()>),
    /// Commit everything and stop, releasing the writer's database connection.
    Close(oneshot::Sender<()>),
}

/// Messages appended since the writer last took them, already encoded: a few bytes copied
/// under a short lock per message, and one wake-up of the writer per batch.
#[derive(Default)]
struct Unsaved {
    blocks: Mutex<UnsavedBlocks>,
    wake: tokio::sync::Notify,
    /// Set by the first append after the writer took the list; the others need not wake it.
    scheduled: std::sync::atomic::AtomicBool,
    /// Bytes of messages not yet committed: queued here or in a batch being written.
    backlog: AtomicUsize,
    /// When `close` was asked: from then on a failing database is retried for a bounded time.
    closing: std::sync::OnceLock<tokio::time::Instant>,
}

/// Unsaved blocks in append order, with each room's open block found by name (any number
/// of rooms may be waiting while the database is unavailable).
#[derive(Default)]
struct UnsavedBlocks {
    list: Vec<(MessageBlock, Durable)>,
    open: HashMap<RoomName, usize>,
}

impl Unsaved {
    fn take(&self) -> Vec<(MessageBlock, Durable)> {
        self.scheduled.store(false, Ordering::Release);
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        blocks.open.clear();
        std::mem::take(&mut blocks.list)
    }
}

/// Why a block of stored messages is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `/history N`: says so when there is nothing.
    History,
    /// The recent messages after `/join`: nothing when there is nothing.
    Join,
    /// At login: `missed` messages arrived after the read position.
    CatchUp {
        /// Messages numbered after the position (kept or not).
        missed: u64,
    },
}

/// A history block the room asked for, answered by the session in queue order (so it sits
/// exactly where the room put it among the member's other lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRequest {
    /// The room.
    pub room: RoomName,
    /// What the block is for.
    pub purpose: Purpose,
    /// The messages wanted (retention applied).
    pub range: MessageRange,
    /// Most messages to show.
    pub want: usize,
    /// The room's window blocks that overlap the range, oldest first (still encoded: they
    /// are decoded by whoever answers, off the room lock).
    pub window: Vec<Arc<MessageBlock>>,
    /// The range's messages before this number are not in the window (`None`: the window
    /// holds all of the range).
    pub before_window: Option<Seq>,
}

impl HistoryRequest {
    /// The last `want` messages of the range in the window, oldest first, and how many of the
    /// range it holds. Decodes only the newest blocks that hold what is shown, and the oldest
    /// block (which retention by age may have left partly out of range); the others are
    /// counted from their bounds (a block holds consecutive numbers).
    pub fn from_window(&self) -> (Vec<Arc<Event>>, u64) {
        let range = self.range;
        let mut newest_first: Vec<Arc<Event>> = Vec::new();
        let mut kept = 0u64;
        for (i, block) in self.window.iter().enumerate().rev() {
            if newest_first.len() < self.want || i == 0 {
                let events: Vec<Event> = block
                    .events()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|e| range.holds(e))
                    .collect();
                kept += events.len() as u64;
                for event in events.into_iter().rev() {
                    if newest_first.len() < self.want {
                        newest_first.push(Arc::new(event));
                    }
                }
            } else {
                let first = block.first_seq.max(range.after + 1);
                let last = block.last_seq.min(range.upto);
                kept += (last + 1).saturating_sub(first);
            }
        }
        newest_first.reverse();
        (newest_first, kept)
    }
}

/// A block ready to write: its lines, and the read position it completes.
#[derive(Debug, Default)]
pub struct Block {
    /// Wire text.
    pub text: String,
    /// The room and the last message number covered.
    pub mark: Option<(RoomName, Seq)>,
}

/// The history backend and writer handle shared by the room and the sessions.
pub struct History {
    limits: RoomLimits,
    store: Option<Store>,
    writes: Option<mpsc::UnboundedSender<Write>>,
    /// Memberships and read positions, written by the same writer.
    memberships: Arc<Memberships>,
    /// Messages not yet taken by the writer.
    unsaved: Arc<Unsaved>,
    lobby_last_seq: Seq,
    /// The rooms' shared logs, which hold the messages with `history = "redis"`.
    shared: std::sync::OnceLock<Arc<dyn SharedHistory>>,
}

/// Why a history read failed.
pub type ReadError = Box<dyn std::error::Error + Send + Sync>;

/// A read of a shared log's messages, boxed (the logs sit above this module).
pub type SharedRead<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(Vec<Event>, Option<Seq>), ReadError>> + Send + 'a>,
>;

/// Where messages live with `history = "redis"`: the rooms' shared logs, which this module
/// reads through this interface so that it does not depend on the rooms.
pub trait SharedHistory: Send + Sync {
    /// The newest `want` messages numbered in `after+1 ..= upto`, oldest first, and the
    /// first number the log still keeps.
    fn messages<'a>(
        &'a self,
        room: &'a RoomName,
        after: Seq,
        upto: Seq,
        want: usize,
    ) -> SharedRead<'a>;
}

impl History {
    /// Reads messages from the cluster's shared logs (`history = "redis"`).
    pub fn read_from(&self, logs: Arc<dyn SharedHistory>) {
        let _ = self.shared.set(logs);
    }

    /// Starts the writer on `store` (memberships are always kept there; messages and read
    /// positions only with `history = "sqlite"`).
    pub async fn start(limits: RoomLimits, store: Store) -> Result<Arc<Self>, StoreError> {
        let lobby_last_seq = match limits.history {
            HistoryMode::Sqlite => store.room_last_seq(&RoomName::lobby()).await?,
            _ => 0,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(Mutex::new(Pending::default()));
        let unsaved = Arc::new(Unsaved::default());
        tokio::spawn(run_writer(
            store.clone(),
            rx,
            limits,
            Arc::clone(&pending),
            Arc::clone(&unsaved),
        ));
        let memberships = Arc::new(Memberships::new(
            limits.history,
            Some(store.clone()),
            Some(tx.clone()),
            pending,
        ));
        Ok(Arc::new(History {
            limits,
            store: Some(store),
            writes: Some(tx),
            memberships,
            unsaved,
            lobby_last_seq,
            shared: std::sync::OnceLock::new(),
        }))
    }

    /// A backend without a database (unit tests): memberships are not kept; `memory` history
    /// works as configured.
    pub fn detached(limits: RoomLimits) -> Arc<Self> {
        Arc::new(History {
            limits,
            store: None,
            writes: None,
            memberships: Arc::new(Memberships::new(limits.history, None, None, Arc::default())),
            unsaved: Arc::default(),
            lobby_last_seq: 0,
            shared: std::sync::OnceLock::new(),
        })
    }

    /// Memberships and read positions, which this history's writer stores.
    pub fn memberships(&self) -> Arc<Memberships> {
        Arc::clone(&self.memberships)
    }

    /// The settings.
    pub fn limits(&self) -> &RoomLimits {
        &self.limits
    }

    /// The lobby's newest stored number at start.
    pub fn lobby_last_seq(&self) -> Seq {
        self.lobby_last_seq
    }

    /// True when messages are written to the database.
    pub fn is_durable(&self) -> bool {
        self.limits.history == HistoryMode::Sqlite && self.writes.is_some()
    }

    /// Queues a message (and its encoding) for the database without waiting; `durable` moves
    /// up once it is in.
    pub fn append(&self, event: &Event, encoded: &[u8], durable: &Durable) {
        if !self.is_durable() {
            return;
        }
        {
            let mut blocks = self
                .unsaved
                .blocks
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let UnsavedBlocks { list, open } = &mut *blocks;
            // Messages of one room mostly come in a row: the last block, found by a pointer
            // comparison of the name, before the lookup by name.
            let open_block = match list.last_mut() {
                Some((block, _)) if block.takes(event) => Some(block),
                _ => open.get(&event.room).map(|&i| &mut list[i].0),
            };
            match open_block {
                Some(block) if block.takes(event) => block.push_encoded(event, encoded),
                _ => {
                    open.insert(event.room.clone(), list.len());
                    list.push((
                        MessageBlock::from_encoded(event, encoded, UNSAVED_BLOCK_BYTES),
                        Arc::clone(durable),
                    ));
                }
            }
        }
        self.unsaved
            .backlog
            .fetch_add(encoded.len(), Ordering::Relaxed);
        if !self.unsaved.scheduled.swap(true, Ordering::AcqRel) {
            self.unsaved.wake.notify_one();
        }
    }

    /// True when unwritten messages have reached `history_backlog_bytes`: new messages are
    /// refused (not relayed) until the database takes the backlog.
    pub fn is_backlogged(&self) -> bool {
        self.is_durable()
            && self.unsaved.backlog.load(Ordering::Relaxed) >= self.limits.history_backlog_bytes
    }

    /// Bytes of messages relayed and not yet written.
    pub fn backlog_bytes(&self) -> usize {
        self.unsaved.backlog.load(Ordering::Relaxed)
    }

    /// Waits until every write queued before it is committed.
    pub async fn barrier(&self) {
        let Some(tx) = &self.writes else { return };
        let (done, wait) = oneshot::channel();
        if tx.send(Write::Barrier(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Commits everything queued and stops the writer (at shutdown); later writes are
    /// dropped.
    pub async fn close(&self) {
        let Some(tx) = &self.writes else { return };
        let _ = self.unsaved.closing.set(tokio::time::Instant::now());
        let (done, wait) = oneshot::channel();
        if tx.send(Write::Close(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// The newest stored number of a room not active in memory (0 without a database).
    pub async fn last_seq(&self, room: &RoomName) -> Result<Seq, StoreError> {
        match (&self.store, self.limits.history) {
            (Some(store), HistoryMode::Sqlite) => store.room_last_seq(room).await,
            _ => Ok(0),
        }
    }

    /// The oldest send time kept, for reads at `now_ms`.
    pub fn min_at_ms(&self, now_ms: i64) -> i64 {
        match self.limits.history_days {
            0 => i64::MIN,
            days => now_ms.saturating_sub(i64::from(days) * MS_PER_DAY),
        }
    }

    /// Answers a request: the window's part, plus older messages from the database when the
    /// window does not reach back far enough. A failing or slow database gives an error line.
    /// `numbered`: each message line starts with its number (see [`protocol::number`]).
    pub async fn answer(&self, req: &HistoryRequest, numbered: bool) -> Block {
        match self.read(req).await {
            Some((shown, kept)) => render_block(req, &shown, kept, numbered),
            None => Block {
                text: protocol::HISTORY_UNAVAILABLE.to_owned(),
                mark: None,
            },
        }
    }

    /// The messages a request shows and how many of its range are kept, for renderers of
    /// other formats; `None` (logged) when they cannot be read in time.
    pub async fn read(&self, req: &HistoryRequest) -> Option<(Vec<Arc<Event>>, u64)> {
        match tokio::time::timeout(READ_TIMEOUT, self.complete(req)).await {
            Ok(Ok(read)) => Some(read),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, room = %req.room, "history read failed");
                None
            }
            Err(_) => {
                tracing::warn!(room = %req.room, "history read timed out");
                None
            }
        }
    }

    /// The messages to show from a room's shared stream, and how many of the range it keeps.
    async fn complete_shared(
        &self,
        req: &HistoryRequest,
    ) -> Result<(Vec<Arc<Event>>, u64), ReadError> {
        let Some(logs) = self.shared.get() else {
            return Ok((Vec::new(), 0));
        };
        let range = req.range;
        let (events, first_kept) = logs
            .messages(&req.room, range.after, range.upto, req.want)
            .await?;
        let shown = events
            .into_iter()
            .filter(|e| e.at_ms >= range.min_at_ms)
            .map(Arc::new)
            .collect();
        let kept = first_kept.map_or(0, |first| {
            (range.upto + 1).saturating_sub(first.max(range.after + 1))
        });
        Ok((shown, kept))
    }

    /// The messages to show and how many of the range are kept.
    async fn complete(&self, req: &HistoryRequest) -> Result<(Vec<Arc<Event>>, u64), ReadError> {
        if self.limits.history == HistoryMode::Redis {
            return self.complete_shared(req).await;
        }
        let (mut shown, mut kept) = req.from_window();
        let (Some(before), Some(store)) = (req.before_window, &self.store) else {
            return Ok((shown, kept));
        };
        if self.limits.history != HistoryMode::Sqlite {
            return Ok((shown, kept));
        }
        let older = MessageRange {
            upto: before.saturating_sub(1),
            ..req.range
        };
        if older.upto <= older.after {
            return Ok((shown, kept));
        }
        if shown.len() < req.want {
            let mut page: Vec<Arc<Event>> = store
                .messages(&req.room, older, req.want - shown.len())
                .await?
                .into_iter()
                .map(Arc::new)
                .collect();
            page.append(&mut shown);
            shown = page;
        }
        if matches!(req.purpose, Purpose::CatchUp { .. }) {
            kept += store.count_messages(&req.room, older).await?;
        }
        Ok((shown, kept))
    }
}

/// The wire text of a block (header, timestamped lines, end), or nothing for an empty join
/// history.
fn render_block(req: &HistoryRequest, shown: &[Arc<Event>], kept: u64, numbered: bool) -> Block {
    let (mut text, mark) = block_header(req, shown.len(), kept);
    if mark.is_none() {
        return Block { text, mark };
    }
    for event in shown {
        if numbered {
            use std::fmt::Write as _;
            // Writing to a String cannot fail.
            let _ = write!(text, "{}", protocol::number(&req.room, event.seq));
        }
        text.push_str(&protocol::render_history(event));
    }
    text.push_str(protocol::END_OF_HISTORY);
    Block { text, mark }
}

/// A history block's header line for `shown` messages of which `kept` are still kept, and
/// the read position the block reaches; no position (and at most `*** No history in #dev`)
/// when an empty block shows nothing.
pub fn block_header(
    req: &HistoryRequest,
    shown: usize,
    kept: u64,
) -> (String, Option<(RoomName, Seq)>) {
    let header = match req.purpose {
        Purpose::History | Purpose::Join if shown == 0 => {
            let text = if req.purpose == Purpose::History {
                protocol::no_history(&req.room)
            } else {
                String::new()
            };
            return (text, None);
        }
        Purpose::History | Purpose::Join => protocol::history_header(&req.room, shown),
        Purpose::CatchUp { missed } => {
            let not_kept = missed.saturating_sub(kept);
            protocol::missed_header(&req.room, missed, not_kept, shown)
        }
    };
    (header, Some((req.room.clone(), req.range.upto)))
}

/// Commits queued writes in batches until every sender is gone.
async fn run_writer(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Write>,
    limits: RoomLimits,
    pending: Arc<Mutex<Pending>>,
    unsaved: Arc<Unsaved>,
) {
    let mut conn = loop {
        match store.history_connection().await {
            Ok(conn) => break conn,
            Err(e) => {
                tracing::error!(error = %e, "opening the history writer's connection failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut next_age_trim = tokio::time::Instant::now();
    let mut last_commit = tokio::time::Instant::now() - COMMIT_INTERVAL;
    loop {
        let first = tokio::select! {
            w = rx.recv() => match w {
                Some(w) => Some(w),
                None => return,
            },
            _ = unsaved.wake.notified() => None,
        };
        if !matches!(first, Some(Write::Barrier(_) | Write::Close(_))) {
            // Let the interval's writes gather; a barrier alone (a login, shutdown) goes at once.
            tokio::time::sleep_until(last_commit + COMMIT_INTERVAL).await;
        }
        let mut batch = HistoryBatch {
            keep_messages: Some(limits.history_messages),
            ..HistoryBatch::default()
        };
        // Taken after the control writes' first item: a barrier covers every message appended
        // before it was sent.
        let mut durable: Vec<(Durable, Seq)> = Vec::new();
        for (block, d) in unsaved.take() {
            durable.push((d, block.last_seq));
            batch.messages.push(block);
        }
        let mut barriers = Vec::new();
        let mut newest_id = 0;
        let mut closing = None;
        let mut next = first.or_else(|| rx.try_recv().ok());
        let mut taken = 0;
        while let Some(write) = next {
            match write {
                Write::Membership(user, room, member, id) => {
                    newest_id = id;
                    batch.memberships.push((user, room, member));
                }
                Write::Positions(user, positions, epoch, id) => {
                    newest_id = id;
                    batch.positions.extend(
                        positions
                            .into_iter()
                            .map(|(r, s)| (user, r, s, epoch.clone())),
                    );
                }
                Write::Barrier(done) => barriers.push(done),
                Write::Close(done) => closing = Some(done),
            }
            taken += 1;
            next = if taken < MAX_BATCH_WRITES && closing.is_none() {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        let written = commit(&mut conn, &batch, &unsaved).await;
        last_commit = tokio::time::Instant::now();
        let bytes: usize = batch.messages.iter().map(|b| b.data.len()).sum();
        unsaved.backlog.fetch_sub(bytes, Ordering::Relaxed);
        if written {
            if newest_id > 0 {
                pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .committed(newest_id);
            }
            for (d, seq) in durable {
                d.fetch_max(seq, Ordering::Release);
            }
        }
        // Also after a batch given up (only ever when closing): nothing of it was marked
        // durable, and whoever waits is told the writer is done with it.
        for done in barriers {
            let _ = done.send(());
        }
        if let Some(done) = closing {
            drop(conn);
            let _ = done.send(());
            return;
        }
        if !written {
            continue;
        }
        if limits.history_days > 0 && tokio::time::Instant::now() >= next_age_trim {
            next_age_trim = tokio::time::Instant::now() + AGE_TRIM_INTERVAL;
            let cutoff = crate::event::now_ms() - i64::from(limits.history_days) * MS_PER_DAY;
            if let Err(e) = store.trim_history_before(cutoff).await {
                tracing::warn!(error = %e, "trimming old history failed");
            }
        }
    }
}

/// Writes a batch, retrying a failing database until it succeeds: a batch is never given up
/// while the server runs (the messages in it were relayed). Only once `close` was asked and
/// [`CLOSE_RETRY_LIMIT`] has passed is it given up, with an error; returns whether it was
/// written.
async fn commit(conn: &mut HistoryConnection, batch: &HistoryBatch, unsaved: &Unsaved) -> bool {
    if batch.messages.is_empty() && batch.memberships.is_empty() && batch.positions.is_empty() {
        return true;
    }
    let mut attempt: u32 = 1;
    let mut delay = FIRST_RETRY_DELAY;
    loop {
        match conn.write_history(batch).await {
            Ok(()) => {
                if attempt > 1 {
                    tracing::info!(
                        attempts = attempt,
                        "history written after the database recovered"
                    );
                }
                return true;
            }
            Err(e) => {
                let closing = unsaved.closing.get().copied();
                if closing.is_some_and(|at| at.elapsed() >= CLOSE_RETRY_LIMIT) {
                    tracing::error!(
                        error = %e,
                        messages = batch.messages.iter().map(|b| b.count).sum::<usize>(),
                        memberships = batch.memberships.len(),
                        positions = batch.positions.len(),
                        "writing history failed at shutdown; these writes are lost"
                    );
                    return false;
                }
                if attempt == 1 {
                    tracing::warn!(error = %e, "writing history failed; keeping it and retrying");
                } else if attempt.is_power_of_two() {
                    tracing::warn!(error = %e, attempt, "writing history still failing; retrying");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use sqlx::Connection;

    async fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        (dir, store)
    }

    fn message(room: &RoomName, seq: Seq, text: &str) -> (Event, Vec<u8>) {
        let event = Event {
            room: room.clone(),
            seq,
            at_ms: crate::event::now_ms(),
            kind: EventKind::Chat {
                from: "bob".into(),
                text: text.into(),
            },
        };
        let mut bytes = Vec::new();
        crate::event::encode_message(&mut bytes, &event);
        (event, bytes)
    }

    /// Runs `sql` on a second connection to the database in `dir`.
    async fn on_the_side(dir: &tempfile::TempDir, sql: &str) {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("t.db"));
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        sqlx::query(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }

    async fn wait_durable(durable: &Durable, seq: Seq) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while durable.load(Ordering::Acquire) < seq {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("never durable");
    }

    #[tokio::test]
    async fn one_batch_carries_the_messages_of_several_rooms_in_order() {
        let (_dir, store) = open().await;
        let history = History::start(RoomLimits::default(), store.clone())
            .await
            .unwrap();
        let (lobby, dev) = (RoomName::lobby(), RoomName::parse("#dev").unwrap());
        let (d_lobby, d_dev): (Durable, Durable) = (Arc::default(), Arc::default());
        for seq in 1..=3 {
            let (e, b) = message(&lobby, seq, &format!("l{seq}"));
            history.append(&e, &b, &d_lobby);
            let (e, b) = message(&dev, seq, &format!("d{seq}"));
            history.append(&e, &b, &d_dev);
        }
        assert!(history.backlog_bytes() > 0);
        history.barrier().await;
        assert_eq!(d_lobby.load(Ordering::Acquire), 3);
        assert_eq!(d_dev.load(Ordering::Acquire), 3);
        assert_eq!(history.backlog_bytes(), 0);
        let range = MessageRange {
            after: 0,
            upto: 3,
            min_at_ms: 0,
        };
        let texts = |events: Vec<Event>| -> Vec<String> {
            events
                .into_iter()
                .map(|e| match e.kind {
                    EventKind::Chat { text, .. } => text,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(
            texts(store.messages(&dev, range, 10).await.unwrap()),
            ["d1", "d2", "d3"]
        );
        assert_eq!(store.room_last_seq(&lobby).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_failed_batch_is_kept_and_retried_until_written() {
        let (dir, store) = open().await;
        let history = History::start(RoomLimits::default(), store.clone())
            .await
            .unwrap();
        let dev = RoomName::parse("#dev").unwrap();
        let durable: Durable = Arc::default();
        // Every write fails while the rooms table is away.
        on_the_side(&dir, "ALTER TABLE rooms RENAME TO rooms_away").await;
        let (e, b) = message(&dev, 1, "kept");
        history.append(&e, &b, &durable);
        // Long enough for several tries (100, 200, 400 ms apart).
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(
            durable.load(Ordering::Acquire),
            0,
            "not durable while failing"
        );
        assert_eq!(history.backlog_bytes(), b.len());
        on_the_side(&dir, "ALTER TABLE rooms_away RENAME TO rooms").await;
        wait_durable(&durable, 1).await;
        assert_eq!(history.backlog_bytes(), 0);
        assert_eq!(store.room_last_seq(&dev).await.unwrap(), 1);
        // And the writer goes on with later batches on its new connection.
        let (e, b) = message(&dev, 2, "next");
        history.append(&e, &b, &durable);
        history.close().await;
        assert_eq!(store.room_last_seq(&dev).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn the_backlog_bound_refuses_once_reached() {
        let (dir, store) = open().await;
        let limits = RoomLimits {
            history_backlog_bytes: 64 * 1024,
            ..RoomLimits::default()
        };
        let history = History::start(limits, store).await.unwrap();
        on_the_side(&dir, "ALTER TABLE rooms RENAME TO rooms_away").await;
        let dev = RoomName::parse("#dev").unwrap();
        let durable: Durable = Arc::default();
        let text = "x".repeat(1000);
        let mut seq = 0;
        while !history.is_backlogged() {
            seq += 1;
            assert!(seq < 100, "never backlogged");
            let (e, b) = message(&dev, seq, &text);
            history.append(&e, &b, &durable);
        }
        assert!(history.backlog_bytes() >= 64 * 1024);
        on_the_side(&dir, "ALTER TABLE rooms_away RENAME TO rooms").await;
        wait_durable(&durable, seq).await;
        assert!(!history.is_backlogged());
    }
}
