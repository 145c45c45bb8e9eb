//! A node's link to the cluster's shared logs (cluster mode): the appender, which appends
//! this node's events to the rooms' streams in the order the rooms made them, off the rooms'
//! lock; the reader, which reads every active room's stream and the node's inbox in one
//! blocking read (a connection of its own) and hands what it reads to the rooms, in stream
//! order, the node's own events included; and the node's lease, renewed every heartbeat.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use std::collections::HashMap;

use super::Rooms;
use super::hub::{Handoff, Mark};
use super::log::redis::{RedisLogs, Tail};
use super::presence::inbox::{Inboxes, Note};
use super::presence::nodes::{ClaimError, DeadNode, HEARTBEAT, LEASE, Node, Nodes};
use super::presence::redis::{RedisSessions, SessionRecord};
use crate::cluster::{Redis, RedisUnavailable};
use crate::event::{ConnId, Event, EventKind, HistoryEpoch, NodeId, RoomName, Seq};
use crate::metrics::Metrics;

/// How long an append may wait for Redis before its sender is told the line was not sent;
/// the appender then drops it rather than append it late.
pub const APPEND_WAIT: Duration = Duration::from_secs(5);
/// How long the reader's read blocks when nothing happens.
const READ_BLOCK: Duration = Duration::from_secs(5);
/// Entries per stream and read: a busy room cannot starve the others for long.
const READ_COUNT: usize = 512;
/// The first wait after a failed read; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A write of this node's to the shared Redis, in the order the rooms made them.
enum Write {
    /// An event for its room's stream.
    Event(Append),
    /// The read positions of a session that ends (before its left line).
    Positions(i64, Vec<(RoomName, Seq)>),
    /// Says when everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// An event on its way to its room's stream.
struct Append {
    event: Event,
    /// The member that sent it (a message) or that it is about (presence).
    origin: Option<ConnId>,
    /// A member's line: the rooms hear how its append went (see [`Rooms::appends_done`]).
    said: bool,
    /// Appended no later than this, or not at all.
    deadline: Instant,
}

/// What the rooms use to reach the cluster; shared by the rooms and the link's tasks.
pub struct Link {
    /// This node's id in every connection id made here.
    pub node: NodeId,
    appends: mpsc::UnboundedSender<Write>,
    /// The rooms' streams.
    pub logs: RedisLogs,
    /// Who is online on every node.
    pub sessions: RedisSessions,
    /// The node registry (names for listings).
    pub nodes: Nodes,
    inboxes: Inboxes,
    redis: Redis,
    /// Set when a write or read failed; the reader's next good read clears it and tells the
    /// members that chat is available again.
    down: AtomicBool,
    /// #lobby's epoch as this node knows it: a different one after an outage means Redis
    /// lost its data.
    lobby_epoch: Mutex<HistoryEpoch>,
    /// Sessions here that took over one on another node, waiting for its positions
    /// ([`Note::Handed`]).
    handoffs: Mutex<HashMap<ConnId, Handoff>>,
}

/// What the link's tasks run on, handed to [`Link::start`].
pub struct Started {
    /// The link.
    pub link: Arc<Link>,
    appends: mpsc::UnboundedReceiver<Write>,
    node: Node,
    nodes: Nodes,
}

impl Link {
    /// Claims `node_name` (refused while a live node holds it) and makes the link; its tasks
    /// start with [`Started::run`].
    pub async fn connect(redis: Redis, node_name: &str, keep: u64) -> Result<Started, ClaimError> {
        let nodes = Nodes::new(redis.clone());
        let node = nodes.claim(node_name, LEASE).await?;
        let inboxes = Inboxes::new(redis.clone());
        // A previous incarnation's notes are not for this one.
        let _: Result<(), _> = redis::cmd("DEL")
            .arg(Inboxes::key(node.id))
            .query_async(&mut redis.conn())
            .await;
        let (tx, rx) = mpsc::unbounded_channel();
        let link = Arc::new(Link {
            node: node.id,
            appends: tx,
            logs: RedisLogs::new(redis.clone(), keep),
            sessions: RedisSessions::new(redis.clone()),
            nodes: nodes.clone(),
            inboxes,
            redis,
            down: AtomicBool::new(false),
            lobby_epoch: Mutex::new(HistoryEpoch::none()),
            handoffs: Mutex::new(HashMap::new()),
        });
        if node.unswept {
            // This name's previous incarnation died: its members leave before this one serves.
            let gone = sweep(&link, node.id).await.map_err(ClaimError::Redis)?;
            tracing::info!(node = %node.name, members = gone, "announced the previous incarnation's members as left");
        }
        Ok(Started {
            link,
            appends: rx,
            node,
            nodes,
        })
    }

    /// Queues `event` for its room's stream, behind everything this node queued before;
    /// `said`: it is `origin`'s line, whose outcome the rooms hear.
    pub(super) fn append(&self, event: Event, origin: Option<ConnId>, said: bool) {
        let append = Append {
            event,
            origin,
            said,
            deadline: Instant::now() + APPEND_WAIT,
        };
        // Fails only once the appender is gone (shutdown): the sender times out.
        let _ = self.appends.send(Write::Event(append));
    }

    /// Queues the read positions of a session that ends, behind this node's earlier writes.
    pub(super) fn share_positions(&self, account: i64, positions: Vec<(RoomName, Seq)>) {
        let _ = self.appends.send(Write::Positions(account, positions));
    }

    /// `conn` took over a session on another node: the positions that session's peer
    /// acknowledged come to the returned receiver when it ends.
    pub(super) fn await_handoff(&self, conn: ConnId) -> oneshot::Receiver<Vec<Mark>> {
        let (tx, rx) = oneshot::channel();
        self.handoffs().insert(conn, tx);
        rx
    }

    /// Positions handed over by another node for `conn` (nothing if it no longer waits).
    pub(super) fn handed(&self, conn: ConnId, positions: Vec<Mark>) {
        if let Some(tx) = self.handoffs().remove(&conn) {
            let _ = tx.send(positions);
        }
    }

    /// `conn` left: it waits for no positions any more.
    pub(super) fn forget_handoff(&self, conn: ConnId) {
        self.handoffs().remove(&conn);
    }

    /// A session here was taken over by `by` on another node: once it ends, its
    /// acknowledged positions go to `by`'s node.
    pub(super) fn hand_over(self: &Arc<Self>, by: ConnId) -> Handoff {
        let (tx, rx) = oneshot::channel::<Vec<Mark>>();
        let link = Arc::clone(self);
        tokio::spawn(async move {
            if let Ok(positions) = rx.await {
                link.send(
                    by.node,
                    Note::Handed {
                        conn: by,
                        positions,
                    },
                );
            }
        });
        tx
    }

    fn handoffs(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, Handoff>> {
        self.handoffs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves `note` in `node`'s inbox without waiting.
    pub fn send(&self, node: NodeId, note: Note) {
        let inboxes = self.inboxes.clone();
        tokio::spawn(async move {
            if let Err(e) = inboxes.send(node, &note).await {
                tracing::warn!(error = %e, node, "leaving a note for another node failed");
            }
        });
    }

    /// Removes a session that ended from the cluster's list, without waiting (nothing if
    /// another login took it over meanwhile).
    pub(super) fn forget_session(&self, name: &str, conn: ConnId) {
        let (sessions, name) = (self.sessions.clone(), name.to_owned());
        tokio::spawn(async move {
            if let Err(e) = sessions.unregister(&name, conn).await {
                tracing::warn!(error = %e, "removing a session from the cluster's list failed");
            }
        });
    }

    /// A room became active here: notes it among the rooms this node's members may be in
    /// (where a sweep looks after the node dies), then makes the reader read again, now with
    /// the room.
    pub(super) fn activated(&self, room: &RoomName) {
        let (redis, node, room) = (self.redis.clone(), self.node, room.to_string());
        let inboxes = self.inboxes.clone();
        tokio::spawn(async move {
            let noted: Result<(), _> = redis::cmd("SADD")
                .arg(rooms_key(node))
                .arg(&room)
                .query_async(&mut redis.conn())
                .await;
            if let Err(e) = noted {
                tracing::warn!(error = %redis.error(e), "noting an active room failed");
            }
            if let Err(e) = inboxes.send(node, &Note::Wake).await {
                tracing::warn!(error = %e, "waking the log reader failed");
            }
        });
    }

    /// The cluster's Redis.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Waits (up to [`APPEND_WAIT`]) until every write queued so far is done.
    pub async fn flush(&self) -> &Self {
        let (done, wait) = oneshot::channel();
        if self.appends.send(Write::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(APPEND_WAIT, wait).await;
        }
        self
    }

    /// True while the shared Redis is known to be failing: commands that change the rooms are
    /// refused rather than left to fail later.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    fn lobby_epoch(&self) -> std::sync::MutexGuard<'_, HistoryEpoch> {
        self.lobby_epoch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers #lobby's epoch (from the tail read at start or an append).
    pub(super) fn saw_lobby_epoch(&self, epoch: Option<&str>) {
        let mut known = self.lobby_epoch();
        if *known == HistoryEpoch::none() {
            *known = HistoryEpoch::from(epoch.unwrap_or(""));
        }
    }

    /// #lobby's epoch as `tail` shows it, made now if the cluster has none yet (a fresh or
    /// emptied Redis): members never read lines of an epoch their node does not know.
    pub(super) async fn lobby_epoch_of(
        &self,
        tail: &Tail,
    ) -> Result<HistoryEpoch, RedisUnavailable> {
        let made;
        let epoch = match &tail.epoch {
            Some(epoch) => epoch,
            None => {
                made = self.logs.epoch(&RoomName::lobby(), &epoch()).await?;
                &made
            }
        };
        Ok(HistoryEpoch::from(epoch.as_str()))
    }

    /// The cluster's history epoch (#lobby's; a Redis that lost its data starts a new one),
    /// as far as this node knows it: read positions are tagged with it.
    pub(super) fn history_epoch(&self) -> HistoryEpoch {
        self.lobby_epoch().clone()
    }

    /// Registers sessions again (after Redis lost its data), without waiting.
    pub(super) fn register_again(&self, sessions: Vec<SessionRecord>) {
        let registry = self.sessions.clone();
        tokio::spawn(async move {
            for session in sessions {
                if let Err(e) = registry.register(&session).await {
                    tracing::warn!(error = %e, "registering a session again failed");
                }
            }
        });
    }

    /// Where a room's stream ends now, with its roster.
    pub async fn tail(&self, room: &RoomName) -> Result<Tail, RedisUnavailable> {
        self.logs.tail(room).await
    }
}

impl Started {
    /// Runs the appender, the reader (delivering to `rooms`), the heartbeat and the sweeper
    /// of dead nodes until `shutdown`; [`Running::finish`] ends the node's part.
    pub fn run(
        self,
        rooms: &Arc<Rooms>,
        metrics: &Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Running {
        let Started {
            link,
            appends,
            node,
            nodes,
        } = self;
        let tasks = Tasks {
            link: Arc::clone(&link),
            metrics: Arc::clone(metrics),
        };
        tokio::spawn(run_appender(tasks.clone(), Arc::downgrade(rooms), appends));
        tokio::spawn(run_reader(
            tasks.clone(),
            Arc::downgrade(rooms),
            shutdown.clone(),
        ));
        tokio::spawn(run_heartbeat(nodes.clone(), node.clone(), shutdown.clone()));
        tokio::spawn(run_sweeper(nodes.clone(), tasks, shutdown));
        Running { link, nodes, node }
    }
}

/// What the link's tasks share.
#[derive(Clone)]
struct Tasks {
    link: Arc<Link>,
    metrics: Arc<Metrics>,
}

/// A node serving in the cluster.
pub struct Running {
    link: Arc<Link>,
    nodes: Nodes,
    node: Node,
}

impl Running {
    /// After the sessions ended: writes what they queued (their left lines), removes any
    /// session still listed for this node and gives the name up, so it is free at once.
    pub async fn finish(self) {
        self.link.flush().await;
        if let Err(e) = forget_reading(&self.link, self.node.id).await {
            tracing::warn!(error = %e, "removing this node from the rooms' readers failed");
        }
        if let Err(e) = self.link.sessions.sweep(self.node.id).await {
            tracing::warn!(error = %e, "removing this node's sessions failed");
        }
        if let Err(e) = self.nodes.release(&self.node).await {
            tracing::warn!(error = %e, "giving up the node's name failed");
        }
    }
}

/// A candidate epoch for a log that has none yet (a new room, or Redis lost its data): made
/// afresh for every batch, so that a log made again never gets the epoch it had.
fn epoch() -> String {
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = MADE.fetch_add(1, Ordering::Relaxed);
    format!("{}.{n}", crate::event::now_ms())
}

/// The set of rooms where `node` had members (for its sweep).
fn rooms_key(node: NodeId) -> String {
    format!("tlschat:node:{node}:rooms")
}

/// The rooms where `node` had members (names that no longer parse skipped).
async fn node_rooms(link: &Link, node: NodeId) -> Result<Vec<RoomName>, RedisUnavailable> {
    let rooms: Vec<String> = redis::cmd("SMEMBERS")
        .arg(rooms_key(node))
        .query_async(&mut link.redis.conn())
        .await
        .map_err(|e| link.redis.error(e))?;
    Ok(rooms
        .iter()
        .filter_map(|r| RoomName::parse(r).ok())
        .collect())
}

/// Removes `node` from the readers of every room it had members in (it reads no more), so
/// that they trim again.
async fn forget_reading(link: &Link, node: NodeId) -> Result<(), RedisUnavailable> {
    let rooms = node_rooms(link, node).await?;
    crate::room::log::redis::forget_reader(&link.redis, node, &rooms).await
}

/// Who sweeps a dead node: one node at a time (`SET NX`, lapsing after this long).
const SWEEP_LOCK_MS: u64 = 30_000;

/// Announces a dead node's members as left: `*** NAME left (connection lost)` in #lobby for
/// each of its sessions, and silently out of every other room it had members in. Returns how
/// many sessions it announced.
async fn sweep(link: &Link, dead: NodeId) -> Result<usize, RedisUnavailable> {
    let gone = link.sessions.sweep(dead).await?;
    let epoch = epoch();
    let append = |room: RoomName, kind: EventKind, conn: ConnId| {
        let logs = link.logs.clone();
        let epoch = epoch.clone();
        async move {
            let at = (crate::event::now_ms(), Some(conn));
            logs.append(&kind, &room, at, &epoch).await.map(|_| ())
        }
    };
    let rooms = node_rooms(link, dead).await?;
    for room in &rooms {
        let tail = link.logs.tail(room).await?;
        if room.is_lobby() {
            continue;
        }
        for conn in tail.roster.keys().filter(|c| c.node == dead) {
            append(room.clone(), EventKind::Offline { conn: *conn }, *conn).await?;
        }
    }
    let lobby = RoomName::lobby();
    for session in &gone {
        let kind = EventKind::Left {
            name: session.name.as_str().into(),
            reason: Some(crate::protocol::REASON_CONNECTION_LOST.to_owned()),
            conn: session.conn(),
        };
        append(lobby.clone(), kind, session.conn()).await?;
    }
    // Anyone of the node still listed in #lobby without a session (its login was cut short).
    let tail = link.logs.tail(&lobby).await?;
    for conn in tail.roster.keys().filter(|c| c.node == dead) {
        append(lobby.clone(), EventKind::Offline { conn: *conn }, *conn).await?;
    }
    crate::room::log::redis::forget_reader(&link.redis, dead, &rooms).await?;
    let _: Result<(), _> = redis::cmd("DEL")
        .arg(rooms_key(dead))
        .query_async(&mut link.redis.conn())
        .await;
    Ok(gone.len())
}

/// Every heartbeat, sweeps the nodes whose lease lapsed (one node sweeps each).
async fn run_sweeper(nodes: Nodes, tasks: Tasks, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(HEARTBEAT) => {}
            () = shutdown.cancelled() => return,
        }
        let dead = match nodes.dead().await {
            Ok(dead) => dead,
            Err(e) => {
                tracing::warn!(error = %e, "listing dead nodes failed");
                continue;
            }
        };
        for node in dead {
            if let Err(e) = sweep_once(&nodes, &tasks, &node).await {
                tracing::warn!(error = %e, node = %node.name, "sweeping a dead node failed");
            }
        }
    }
}

/// Sweeps `dead` unless another node is at it.
async fn sweep_once(nodes: &Nodes, tasks: &Tasks, dead: &DeadNode) -> Result<(), RedisUnavailable> {
    let link = &tasks.link;
    let mine: Option<String> = redis::cmd("SET")
        .arg(format!("tlschat:node:{}:sweeping", dead.id))
        .arg(link.node)
        .arg("NX")
        .arg("PX")
        .arg(SWEEP_LOCK_MS)
        .query_async(&mut link.redis.conn())
        .await
        .map_err(|e| link.redis.error(e))?;
    if mine.is_none() {
        return Ok(());
    }
    let gone = sweep(link, dead.id).await?;
    tasks
        .metrics
        .orphan_cleanups
        .fetch_add(gone as u64, Ordering::Relaxed);
    if nodes.swept(dead).await? {
        tracing::warn!(node = %dead.name, members = gone, "a node stopped answering; its members were announced as left");
    }
    Ok(())
}

/// Most events sent in one round trip.
const APPEND_BATCH: usize = 1024;

/// Appends queued events in the order the rooms made them: whatever queued up while the
/// previous round trip was out goes in the next one, as one pipeline (so a busy node sends
/// few round trips and its reader gets lines in bursts, which its members' writes coalesce).
async fn run_appender(tasks: Tasks, rooms: Weak<Rooms>, mut rx: mpsc::UnboundedReceiver<Write>) {
    let link = &tasks.link;
    let appender = Appender {
        tasks: &tasks,
        rooms: &rooms,
    };
    let mut batch: Vec<Append> = Vec::with_capacity(APPEND_BATCH);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(write) = next.take() {
            match write {
                Write::Event(append) => {
                    batch.push(append);
                    if batch.len() < APPEND_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                Write::Positions(account, positions) => {
                    appender.send(&mut batch).await;
                    if let Err(e) = link.sessions.save_positions(account, &positions).await {
                        link.down.store(true, Ordering::Relaxed);
                        tracing::warn!(error = %e, "sharing read positions failed");
                    }
                    next = rx.try_recv().ok();
                }
                Write::Flush(done) => {
                    appender.send(&mut batch).await;
                    let _ = done.send(());
                    next = rx.try_recv().ok();
                }
            }
        }
        appender.send(&mut batch).await;
    }
}

/// What the appender's round trips need.
struct Appender<'a> {
    tasks: &'a Tasks,
    rooms: &'a Weak<Rooms>,
}

impl Appender<'_> {
    /// Sends `batch` (emptied) in one round trip and tells the rooms how the members' lines
    /// went; events past their deadline are dropped (their senders are told they were not
    /// sent).
    async fn send(&self, batch: &mut Vec<Append>) {
        let mut outcomes = Vec::new();
        self.append(batch, &mut outcomes).await;
        if !outcomes.is_empty()
            && let Some(rooms) = self.rooms.upgrade()
        {
            rooms.appends_done(&outcomes);
        }
    }

    /// The round trip of [`Appender::send`]: each member's line's outcome goes to `outcomes`
    /// (its number, or `None` when it was not appended).
    async fn append(&self, batch: &mut Vec<Append>, outcomes: &mut Vec<(ConnId, Option<Seq>)>) {
        let now = Instant::now();
        let mut waiting = Vec::with_capacity(batch.len());
        for append in batch.drain(..) {
            if append.deadline > now {
                waiting.push(append);
            } else if append.said
                && let Some(origin) = append.origin
            {
                outcomes.push((origin, None));
            }
        }
        let Some(deadline) = waiting.iter().map(|a| a.deadline).min() else {
            return;
        };
        let (tasks, link) = (self.tasks, &self.tasks.link);
        let events: Vec<_> = waiting
            .iter()
            .map(|a| (&a.event.kind, &a.event.room, (a.event.at_ms, a.origin)))
            .collect();
        let started = std::time::Instant::now();
        // The batch must act well before this node gives up on it (at `deadline`), or never.
        let within = deadline.saturating_duration_since(Instant::now()) / 2;
        let sent =
            tokio::time::timeout_at(deadline, link.logs.append_many(&events, &epoch(), within))
                .await;
        let appended = match sent {
            Ok(Ok(appended)) => {
                tasks.metrics.redis_seconds.observe(started.elapsed());
                appended
            }
            Ok(Err(e)) => {
                link.down.store(true, Ordering::Relaxed);
                tracing::warn!(error = %e, events = waiting.len(), "appending to the rooms' logs failed");
                Vec::new()
            }
            Err(_) => {
                link.down.store(true, Ordering::Relaxed);
                tracing::warn!(
                    events = waiting.len(),
                    "appending to the rooms' logs timed out"
                );
                Vec::new()
            }
        };
        for (i, append) in waiting.iter().enumerate() {
            let done = appended.get(i);
            if let Some(done) = done
                && append.event.room.is_lobby()
            {
                link.saw_lobby_epoch(Some(&done.epoch));
            }
            if append.said
                && let Some(origin) = append.origin
            {
                outcomes.push((origin, done.map(|d| d.seq)));
            }
        }
    }
}

/// Reads the active rooms' streams and the node's inbox, and delivers what it reads, until
/// `shutdown` or the rooms are gone; reconnects with backoff after a failure.
async fn run_reader(tasks: Tasks, rooms: Weak<Rooms>, shutdown: CancellationToken) {
    let link = &tasks.link;
    let inbox = Inboxes::key(link.node);
    let mut inbox_read = "0-0".to_owned();
    let mut backoff = FIRST_BACKOFF;
    let mut reader = None;
    while !shutdown.is_cancelled() {
        let Some(from) = rooms.upgrade().map(|r| r.reading()) else {
            return;
        };
        if reader.is_none() {
            match link.logs.reader(link.node).await {
                Ok(r) => {
                    reader = Some(r);
                    if link.down.swap(false, Ordering::Relaxed) {
                        crate::metrics::inc(&tasks.metrics.redis_reconnects);
                        let Some(rooms) = rooms.upgrade() else { return };
                        if !recover(link, &rooms, &mut inbox_read).await {
                            reader = None;
                            wait(&shutdown, &mut backoff).await;
                        }
                        continue;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "connecting the log reader failed; retrying");
                    wait(&shutdown, &mut backoff).await;
                    continue;
                }
            }
        }
        let Some(r) = reader.as_mut() else { continue };
        let read = tokio::select! {
            read = r.read(&from, Some((&inbox, &inbox_read)), READ_BLOCK, READ_COUNT) => read,
            () = shutdown.cancelled() => return,
        };
        match read {
            Ok(read) => {
                backoff = FIRST_BACKOFF;
                if let Some(last) = read.inbox.last() {
                    inbox_read.clone_from(&last.id);
                }
                let entries: usize = read.rooms.iter().map(|(_, e)| e.len()).sum();
                tasks
                    .metrics
                    .log_lag_entries
                    .store(entries as u64, Ordering::Relaxed);
                let Some(rooms) = rooms.upgrade() else { return };
                rooms.deliver_read(read);
                if link.down.swap(false, Ordering::Relaxed)
                    && !recover(link, &rooms, &mut inbox_read).await
                {
                    reader = None;
                    wait(&shutdown, &mut backoff).await;
                }
            }
            Err(e) => {
                if !link.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "reading the rooms' logs failed; retrying");
                }
                reader = None;
                wait(&shutdown, &mut backoff).await;
            }
        }
    }
}

/// After an outage: tells every member here that chat works again and, if Redis lost its data
/// meanwhile (#lobby's epoch changed), that history was reset, then rebuilds this node's part
/// of the shared state (sessions, rosters) and reads every room from its new start. False
/// (still down) when Redis does not answer yet.
async fn recover(link: &Link, rooms: &Rooms, inbox_read: &mut String) -> bool {
    let lobby = RoomName::lobby();
    if let Err(e) = link.redis.measure_clock().await {
        link.down.store(true, Ordering::Relaxed);
        tracing::debug!(error = %e, "reading Redis's clock after an outage failed");
        return false;
    }
    let tail = link.tail(&lobby).await;
    let now = match tail {
        Ok(tail) => link.lobby_epoch_of(&tail).await,
        Err(e) => Err(e),
    };
    let now = match now {
        Ok(now) => now,
        Err(e) => {
            link.down.store(true, Ordering::Relaxed);
            tracing::debug!(error = %e, "reading #lobby after an outage failed");
            return false;
        }
    };
    let reset = {
        let mut known = link.lobby_epoch();
        let reset = *known != HistoryEpoch::none() && *known != now;
        if *known != now {
            *known = now;
        }
        reset
    };
    if reset {
        tracing::warn!(
            "Redis lost the cluster's data: history restarts and this node's sessions are registered again"
        );
        "0-0".clone_into(inbox_read);
    } else {
        tracing::info!("Redis answers again");
    }
    rooms.recovered(reset);
    write_missed_departures(link, rooms).await;
    true
}

/// After an outage: the departures this node could not write meanwhile are written now.
/// Every connection of this node that Redis still lists in a room, or as online, but that is
/// no longer here leaves (`*** NAME left` in #lobby, silently elsewhere).
async fn write_missed_departures(link: &Link, rooms: &Rooms) {
    // A login registers before it joins: one registered since shortly before now may still
    // be joining, so it is left alone.
    let settled_before = crate::event::now_ms() - 1000;
    // What was queued during the outage is written (or given up) first, so the rosters read
    // below already show it and nothing leaves twice.
    link.flush().await;
    let (here, active) = rooms.local_presence();
    let gone = |conn: &ConnId| conn.node == link.node && !here.contains(conn);
    for room in active {
        let tail = match link.tail(&room).await {
            Ok(tail) => tail,
            Err(e) => {
                tracing::warn!(error = %e, "reading a room after an outage failed");
                return;
            }
        };
        for (conn, name) in tail.roster.iter().filter(|(c, _)| gone(c)) {
            let kind = if room.is_lobby() {
                EventKind::Left {
                    name: Arc::clone(name),
                    reason: None,
                    conn: *conn,
                }
            } else {
                EventKind::Offline { conn: *conn }
            };
            let event = Event {
                room: room.clone(),
                seq: tail.seq,
                at_ms: crate::event::now_ms(),
                kind,
            };
            link.append(event, Some(*conn), false);
        }
    }
    match link.sessions.sessions().await {
        Ok(sessions) => {
            let left = sessions
                .iter()
                .filter(|s| gone(&s.conn()) && s.since_ms < settled_before);
            for session in left {
                link.forget_session(&session.name, session.conn());
            }
        }
        Err(e) => tracing::warn!(error = %e, "listing sessions after an outage failed"),
    }
}

async fn wait(shutdown: &CancellationToken, backoff: &mut Duration) {
    tokio::select! {
        () = tokio::time::sleep(*backoff) => {}
        () = shutdown.cancelled() => {}
    }
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
}

/// Renews the node's lease every heartbeat until shutdown.
async fn run_heartbeat(nodes: Nodes, node: Node, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(HEARTBEAT) => {}
            () = shutdown.cancelled() => break,
        }
        match nodes.renew(&node, LEASE).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(node = %node.name, "this node's lease lapsed and its name was taken");
            }
            Err(e) => tracing::warn!(error = %e, "renewing this node's lease failed"),
        }
    }
}
