//! Rooms on this node: who is in which room, each room's log, and delivery of its events.
//!
//! [`Rooms`] is the handle sessions use (shared in an `Arc`). It is made of four owners:
//! - the [`hub`]: the members connected here and their byte-bounded queues (delivery and the
//!   eviction of members that do not read);
//! - [`presence`]: who is online (admin listing, kick, account changes, takeover), an enum
//!   whose local variant is this node's [`directory`];
//! - per room, a [`log::Log`] (numbers, the recent window, the durable copy) and a roster;
//! - the rooms' own state: memberships, the room limits, forgetting idle rooms.
//!
//! Every member is in `#lobby` (the v1 room) and in up to `max_rooms_per_user` others; one
//! queue per connection is fed by all of them and by the replies to the member's own commands,
//! so a member receives everything in one order.
//!
//! **Append, then deliver.** Each change goes through the room's log first: a message gets its
//! number there, presence (`Joined`, `Left`, `Replaced`, `Offline`, each naming a [`ConnId`])
//! is placed in the same order. A room's roster changes only by applying those events
//! ([`State::apply`]), and delivery follows the append. With the local log both steps run under
//! the rooms' lock (`std::sync::Mutex`, never held across an `.await`): that is the fast path,
//! with no task, lock or allocation per delivery. A shared log (Redis Streams) appends off the
//! lock and delivers what the node's reader returns, in stream order, through the same
//! [`State::apply`] and [`hub::Hub::deliver`]; that is why [`Rooms::say`] is async and hands
//! the sender its number from the append's result.
//!
//! A reply (`/who`, `/rooms`, a history block) is queued exactly where it was computed. History
//! reads that need the database are queued as a [`Delivery::History`] request and answered by
//! the session, in place, off the lock.

mod cluster;
pub mod directory;
mod hub;
pub mod log;
pub mod presence;
mod queue;
pub mod shared;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::HistoryMode;
pub use crate::event::{ConnId, NodeId};
use crate::event::{Event, EventKind, RoomName, Seq};
use crate::history::{History, HistoryEpoch, Memberships, Purpose, Restore};
use crate::metrics::Metrics;
use crate::protocol::{self, ResumeFrom};
use crate::username::Username;
use directory::{Login, OnlineSession};
use hub::{Audience, Hub, Undeliverable};
pub use hub::{
    ClientTags, Delivery, Handoff, Line, Mark, Meaning, Outbox, RESET_MARK, Removal, Replaced,
    TakeoverCatchUp,
};
use log::redis::Tail;
use log::{Log, LogError, SharedLog};
use presence::Presence;
use presence::inbox::Note;
use presence::redis::SessionRecord;
use shared::Link;

/// A member is known by its connection.
pub type MemberId = ConnId;

/// Who is in a room (every node's members, by connection), as its presence events say.
pub type Roster = HashMap<ConnId, Arc<str>>;

/// The room has shut down and takes no new members.
#[derive(Debug, thiserror::Error)]
#[error("the room is closed")]
pub struct RoomClosed;

/// Why a login could not join the rooms.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The server is shutting down.
    #[error(transparent)]
    Closed(#[from] RoomClosed),
    /// The member's rooms or a room's state could not be read from the store.
    #[error("reading the member's rooms failed: {0}")]
    Store(#[from] crate::store::StoreError),
    /// Rooms kept being forgotten between the read and the join (never in practice).
    #[error("the rooms changed while they were read")]
    Changed,
    /// The cluster's Redis could not register the session or read a room.
    #[error("the cluster is unavailable: {0}")]
    Cluster(String),
}

/// What a cluster login brings to the join: its registered id, the session it took over on
/// another node, and the tails of its rooms.
#[derive(Default)]
struct Joining {
    id: Option<ConnId>,
    remote: Option<ConnId>,
    tails: HashMap<RoomName, Tail>,
}

/// What a login read: its rooms and read positions (or why they could not be read), and in a
/// cluster each restored room's tail.
type Restored = (
    Result<Restore, crate::store::StoreError>,
    HashMap<RoomName, Tail>,
);

/// Registers a cluster login's session; returns the session it took over on another node.
async fn register(
    link: &Link,
    name: &Username,
    login: &Login,
    id: ConnId,
) -> Result<Option<ConnId>, JoinError> {
    let record = SessionRecord {
        node: id.node,
        local: id.local,
        name: name.as_str().to_owned(),
        peer: login.peer,
        since_ms: crate::event::now_ms(),
        account: login.stamp.id,
    };
    let replaced = link
        .redis()
        .within(link.sessions.register(&record))
        .await
        .map_err(|e| JoinError::Cluster(e.to_string()))?;
    Ok(replaced.map(|r| r.conn()).filter(|c| c.node != link.node))
}

/// What a cluster login adds to the restored rooms and positions: the read positions a
/// session on another node saved that the store may not have yet, and each room's tail.
async fn shared_restore(
    link: &Link,
    account: i64,
    restore: &mut Restore,
) -> Result<HashMap<RoomName, Tail>, JoinError> {
    let unavailable = |e: crate::cluster::RedisUnavailable| JoinError::Cluster(e.to_string());
    // Shared by a session that just ended, in the epoch this node knows now.
    let epoch = link.history_epoch();
    for (room, seq) in link
        .redis()
        .within(link.sessions.positions(account))
        .await
        .map_err(unavailable)?
    {
        restore.merge_position(room, seq, &epoch);
    }
    let mut tails = HashMap::new();
    for (room, _) in &restore.rooms {
        let tail = link.redis().within(link.tail(room)).await;
        tails.insert(room.clone(), tail.map_err(unavailable)?);
    }
    Ok(tails)
}

/// The connection a presence event is about (the new one of a takeover).
fn presence_subject(kind: &EventKind) -> Option<ConnId> {
    match kind {
        EventKind::Joined { conn, .. }
        | EventKind::Left { conn, .. }
        | EventKind::Offline { conn } => Some(*conn),
        EventKind::Replaced { new, .. } => Some(*new),
        EventKind::Chat { .. } | EventKind::Action { .. } | EventKind::Notice { .. } => None,
    }
}

/// The connection a presence event takes out of the room.
fn removed_conn(kind: &EventKind) -> Option<ConnId> {
    match kind {
        EventKind::Left { conn, .. } | EventKind::Offline { conn } => Some(*conn),
        EventKind::Replaced { old, .. } => Some(*old),
        _ => None,
    }
}

/// Where a relayed message stands after the step under the lock.
enum Relayed {
    /// Appended and delivered here (a local log), with its number if it was taken.
    Here(Option<Mark>),
    /// Queued for the shared log, with this many of the sender's lines unconfirmed.
    Appending(u32),
}

/// Lines a member may have queued for the shared log before its session waits for their
/// appends: enough for the appender's round trips to carry many lines under load, few enough
/// that the appender's queue stays small (at most this many lines per member).
const MAX_UNCONFIRMED: u32 = 128;

/// Where a room's numbers continue when it becomes active on this node.
pub enum Start {
    /// After this number, read from the durable store (a local log).
    Stored(Seq),
    /// At the end of the room's shared stream, with its roster there.
    Shared(Tail),
}

/// Tries of a join whose rooms were forgotten between reading their state and joining.
const JOIN_TRIES: usize = 3;

/// A private message target that is not online.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not online")]
pub struct NotOnline(pub String);

/// What a session gets on joining.
pub struct Joined {
    /// This connection's member id.
    pub id: MemberId,
    /// The rendered welcome line (with everyone online).
    pub welcome: String,
    /// The member's end of its outbound queue (with its `You are in` lines and catch-up
    /// requests already queued).
    pub outbox: Outbox,
    /// Read positions that start now (rooms without a saved position).
    pub positions: Vec<Mark>,
    /// The history epoch those positions (and the ones the session reaches) are read in.
    pub history_epoch: HistoryEpoch,
    /// The member's rooms and read positions could not be read: it is in #lobby (and the
    /// rooms of a session it replaced) without catch-up, and must not save positions, which
    /// would overwrite the stored ones and skip what it missed for good.
    pub catch_up_unavailable: bool,
}

/// The rooms of this node, as sessions see them: every method but the ones that may wait on
/// the store or a shared log ([`Rooms::log_in`], [`Rooms::join_room`], [`Rooms::say`],
/// [`Rooms::emote`]) is synchronous and quick, so a session may call it from its loop.
pub struct Rooms {
    state: Mutex<State>,
    /// Who is online; kept under `state`'s lock in the same step as every join and removal.
    presence: Arc<Presence>,
    /// The durable side of the logs, read (off the lock) for rooms not in memory.
    history: Arc<History>,
    /// Members' rooms and read positions, read (off the lock) at login.
    memberships: Arc<Memberships>,
    /// Woken after each delivery of the cluster reader: a sender waits for its own line to
    /// be delivered here, so that what it does next (`/history`, `/join` elsewhere) sees it.
    delivered: tokio::sync::Notify,
    /// The cluster link (as in the state), for what must not take the rooms' lock.
    link: std::sync::OnceLock<Arc<Link>>,
}

struct State {
    /// The members connected here; #lobby's audience (everyone is in #lobby).
    hub: Hub,
    /// Every room with members online, or with messages not yet durable; #lobby always.
    rooms: HashMap<RoomName, Channel>,
    lobby: RoomName,
    /// This node's id, in every connection id made here.
    node: NodeId,
    /// The last connection number given out on this node.
    next_id: u64,
    /// The connection numbers of this node's incarnation are above this one (in a cluster, a
    /// node that restarts under its name sees its previous incarnation's entries as others').
    first_id: u64,
    closed: bool,
    history: Arc<History>,
    memberships: Arc<Memberships>,
    presence: Arc<Presence>,
    /// Rooms forgotten so far: a room's stored state read before a change of this count may
    /// be stale (the room may have been active and forgotten meanwhile), so it is read again.
    forgets: u64,
    /// The cluster (shared logs, presence on every node); `None` on a single node.
    link: Option<Arc<Link>>,
    /// Set while a member's IRC `NOTICE` or tagged line is published: IRC members see it as
    /// a `NOTICE`, with its client-only tags (it is stored, and shown elsewhere, as a chat
    /// line without them).
    publishing_irc: Option<(bool, hub::ClientTags)>,
}

/// A room: its log and, besides #lobby (whose audience is everyone), its roster.
struct Channel {
    roster: Roster,
    log: Log,
}

impl Rooms {
    /// Rooms whose members may each have `queue_limit_bytes` waiting, without history.
    pub fn new(queue_limit_bytes: usize) -> Self {
        let limits = crate::config::RoomLimits {
            history: HistoryMode::Off,
            ..Default::default()
        };
        Self::with_history(queue_limit_bytes, Arc::default(), History::detached(limits))
    }

    /// Rooms counting events and deliveries in `metrics`, keeping history in `history`.
    pub fn with_history(
        queue_limit_bytes: usize,
        metrics: Arc<Metrics>,
        history: Arc<History>,
    ) -> Self {
        let lobby = RoomName::lobby();
        let mut rooms = HashMap::new();
        rooms.insert(
            lobby.clone(),
            Channel {
                roster: Roster::new(),
                log: Log::local(lobby.clone(), history.lobby_last_seq(), &history),
            },
        );
        let presence = Arc::new(Presence::default());
        let memberships = history.memberships();
        Rooms {
            state: Mutex::new(State {
                hub: Hub::new(queue_limit_bytes, metrics),
                rooms,
                lobby,
                node: 0,
                next_id: 0,
                first_id: 0,
                closed: false,
                history: Arc::clone(&history),
                memberships: Arc::clone(&memberships),
                presence: Arc::clone(&presence),
                forgets: 0,
                link: None,
                publishing_irc: None,
            }),
            presence,
            history,
            memberships,
            delivered: tokio::sync::Notify::new(),
            link: std::sync::OnceLock::new(),
        }
    }

    /// The cluster link, in cluster mode.
    pub fn link(&self) -> Option<Arc<Link>> {
        self.lock().link.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Room methods do not panic mid-update; if one ever did, the members' map is still
        // consistent enough to keep serving, which beats taking the whole room down.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a message from `id` to its current room and relays it to the others there;
    /// refused with an error line to the sender when the log cannot take it. On a single
    /// node returns the line's number. In a cluster the line is queued for the shared log
    /// and the sender goes on: the node's reader delivers it, with its number for the sender
    /// in room order, and [`Rooms::appends_done`] tells a sender whose line was not sent. A
    /// sender with [`MAX_UNCONFIRMED`] lines unconfirmed waits here (boxed: the session's
    /// own future stays small).
    async fn relay(
        &self,
        (id, room, irc): (MemberId, Option<&RoomName>, Option<(bool, hub::ClientTags)>),
        kind: impl FnOnce(Arc<str>) -> EventKind,
    ) -> Option<Mark> {
        match self.relay_here((id, room, irc), kind)? {
            Relayed::Here(mark) => mark,
            Relayed::Appending(unconfirmed) => {
                if unconfirmed >= MAX_UNCONFIRMED {
                    Box::pin(self.wait_for_appends(id, MAX_UNCONFIRMED / 2, false)).await;
                }
                None
            }
        }
    }

    /// The relay's step under the lock: done on a single node, queued for the shared log in a
    /// cluster.
    fn relay_here(
        &self,
        (id, room, irc): (MemberId, Option<&RoomName>, Option<(bool, hub::ClientTags)>),
        kind: impl FnOnce(Arc<str>) -> EventKind,
    ) -> Option<Relayed> {
        let mut state = self.lock();
        let link = state.link.clone();
        let member = state.hub.get_mut(id)?;
        let room = match room {
            Some(room) if member.in_room(room) => room.clone(),
            Some(_) => return None,
            None => member.current.clone(),
        };
        let from = Arc::clone(&member.name);
        let Some(link) = link else {
            // A session with numbered lines gets its own line back, in room order, numbered.
            let except = (!member.numbered).then_some(id);
            state.publishing_irc = irc;
            let published = state.publish(&room, kind(from), except);
            state.publishing_irc = None;
            return Some(Relayed::Here(match published {
                Ok(seq) => Some((room, seq)),
                Err(LogError::Unavailable) => {
                    state.reply(id, protocol::CHAT_UNAVAILABLE.to_owned());
                    None
                }
            }));
        };
        member.unconfirmed += 1;
        let unconfirmed = member.unconfirmed;
        let event = Event {
            room,
            seq: 0,
            at_ms: crate::event::now_ms(),
            kind: kind(from),
        };
        link.append(event, Some(id), true);
        Some(Relayed::Appending(unconfirmed))
    }

    /// Where a room not in memory continues: its shared stream's tail in a cluster, else the
    /// durable store's newest number.
    async fn start_of(&self, room: &RoomName) -> Result<Start, String> {
        match self.link() {
            Some(link) => link
                .tail(room)
                .await
                .map(Start::Shared)
                .map_err(|e| e.to_string()),
            None => self
                .history
                .last_seq(room)
                .await
                .map(Start::Stored)
                .map_err(|e| e.to_string()),
        }
    }

    /// The history epoch read positions are in now: a session's positions of an older one
    /// (a cluster's Redis lost its data since) are no longer numbers in its rooms.
    pub fn history_epoch(&self) -> HistoryEpoch {
        self.link
            .get()
            .map_or_else(HistoryEpoch::none, |link| link.history_epoch())
    }

    /// In a cluster, shares the read positions of a session that ends with the other nodes,
    /// ahead of its left line; nothing on a single node.
    pub fn share_positions(&self, account: i64, positions: &[(RoomName, Seq)]) {
        if let Some(link) = &self.lock().link {
            link.share_positions(account, positions.to_vec());
        }
    }

    /// Who is online.
    pub fn presence(&self) -> &Presence {
        &self.presence
    }
}

impl State {
    /// Appends an event to a room's log, then delivers it here (the local log's fast path:
    /// both steps under the rooms' lock); returns the room's newest number.
    fn publish(
        &mut self,
        room: &RoomName,
        kind: EventKind,
        except: Option<MemberId>,
    ) -> Result<Seq, LogError> {
        if let Some(link) = self.link.clone() {
            return Ok(self.publish_shared(&link, room, kind));
        }
        let history = Arc::clone(&self.history);
        let Some(channel) = self.rooms.get_mut(room) else {
            return Ok(0);
        };
        let event = channel.log.append(kind, &history)?;
        self.deliver(&event, except);
        Ok(event.seq)
    }

    /// Per-node delivery of one logged event, in log order: applies it to the room's roster
    /// and queues its line (if it has one) for the room's members here but `except`.
    fn deliver(&mut self, event: &Event, except: Option<MemberId>) {
        self.apply(event);
        self.show(event, except);
    }

    /// Queues an event's line (if it has one) for the room's members here but `except`.
    fn show(&mut self, event: &Event, except: Option<MemberId>) {
        if event.kind.is_shown() {
            // The log's own name: one allocation shared by every line of the room, so the
            // read-position bookkeeping compares pointers, not text.
            let text = protocol::render(event);
            // The member's own line is the first message shown while its IRC form is set
            // (members dropped meanwhile are announced after it, without it).
            let said = match event.kind.is_message() {
                true => self.publishing_irc.take(),
                false => None,
            };
            let meaning = self.hub.has_irc_members().then(|| match said {
                Some((notice, tags)) => Meaning::Said {
                    event: event.clone(),
                    notice,
                    tags,
                },
                None => Meaning::Events(vec![event.clone()]),
            });
            let line = if event.kind.is_message() {
                Line::message(text, (event.room.clone(), event.seq), meaning)
            } else {
                Line::meaning(text, None, meaning)
            };
            self.broadcast(&event.room, line, except);
        }
    }

    /// Publishes presence, which takes no number and is never refused.
    fn publish_presence(&mut self, room: &RoomName, kind: EventKind, except: Option<MemberId>) {
        debug_assert!(!kind.is_message());
        let _ = self.publish(room, kind, except);
    }

    /// The one place a roster changes: by a presence event, in log order. #lobby's audience
    /// is the hub (everyone connected here), so its roster stays empty on a single node; in a
    /// cluster it lists everyone online on every node.
    fn apply(&mut self, event: &Event) {
        if event.room.is_lobby() && self.link.is_none() {
            return;
        }
        let Some(channel) = self.rooms.get_mut(&event.room) else {
            return;
        };
        match &event.kind {
            EventKind::Joined { name, conn } => {
                channel.roster.insert(*conn, Arc::clone(name));
            }
            EventKind::Left { conn, .. } | EventKind::Offline { conn } => {
                channel.roster.remove(conn);
            }
            EventKind::Replaced { name, old, new } => {
                channel.roster.remove(old);
                channel.roster.insert(*new, Arc::clone(name));
            }
            EventKind::Chat { .. } | EventKind::Action { .. } | EventKind::Notice { .. } => {}
        }
    }

    /// Delivers `line` to every member of `room` here but `except`, then announces anyone it
    /// had to drop.
    ///
    /// Everyone dropped by one event is announced in one presence delivery (their `left`
    /// lines, concatenated and shared), which is queued past the byte bound: a mass eviction
    /// costs each survivor one delivery and can evict nobody else, so the work under the lock
    /// stays proportional to the members, never to evicted × members.
    fn broadcast(&mut self, room: &RoomName, line: Arc<Line>, except: Option<MemberId>) {
        let dropped = if room.is_lobby() {
            self.hub.deliver(Audience::Everyone, &line, except)
        } else if let Some(channel) = self.rooms.get(room) {
            self.hub
                .deliver(Audience::Roster(&channel.roster), &line, except)
        } else {
            return;
        };
        self.announce_dropped(dropped);
    }

    /// Removes the members that could not take a delivery and tells everyone left in #lobby
    /// (where everybody is), in one presence delivery per round; a round only repeats for
    /// members found gone meanwhile.
    fn announce_dropped(&mut self, mut dropped: Vec<(MemberId, Undeliverable)>) {
        while !dropped.is_empty() {
            let mut text = String::new();
            let mut events = Vec::new();
            for (id, why) in dropped.drain(..) {
                if let Some(left) = self.drop_member(id, why) {
                    text.push_str(&protocol::render(&left));
                    events.push(left);
                }
            }
            if text.is_empty() {
                return;
            }
            let meaning = self
                .hub
                .has_irc_members()
                .then_some(Meaning::Events(events));
            dropped = self
                .hub
                .deliver_presence(&Line::meaning(text, None, meaning));
        }
    }

    /// Queues a reply to one member's command in its own queue, under the same bound as room
    /// lines (a member that asks but never reads is evicted like any slow consumer).
    fn reply(&mut self, id: MemberId, text: String) {
        self.reply_marked(id, text, None);
    }

    fn reply_marked(&mut self, id: MemberId, text: String, mark: Option<Mark>) {
        self.reply_meaning(id, text, mark, || None);
    }

    /// A reply with what it says, for a member that renders lines from their meaning.
    fn reply_meaning(
        &mut self,
        id: MemberId,
        text: String,
        mark: Option<Mark>,
        meaning: impl FnOnce() -> Option<Meaning>,
    ) {
        let meaning = if self.hub.is_irc(id) { meaning() } else { None };
        if let Err(why) = self.hub.reply(id, &Line::meaning(text, mark, meaning)) {
            self.announce_dropped(vec![(id, why)]);
        }
    }

    /// Messages a catch-up block shows at most: more for a client that said what it showed
    /// (`/resume`), which wants everything after that.
    fn catch_up_size(&self, resumed: bool) -> usize {
        let limits = self.history.limits();
        if resumed {
            limits.resume_messages
        } else {
            limits.catchup_messages
        }
    }

    fn request_history_of(
        &mut self,
        id: MemberId,
        room: &RoomName,
        purpose: Purpose,
        after: Seq,
        want: usize,
    ) {
        let Some(channel) = self.rooms.get(room) else {
            return;
        };
        let request = channel.log.range(purpose, after, want, &self.history);
        if let Err(why) = self.hub.request(id, Delivery::History(Box::new(request))) {
            self.announce_dropped(vec![(id, why)]);
        }
    }

    /// Removes a member that could not take a delivery; returns the event announcing it (in
    /// #lobby, not logged: it reaches everyone here at once).
    fn drop_member(&mut self, id: MemberId, why: Undeliverable) -> Option<Event> {
        let member = self.remove(id)?;
        let reason = match why {
            Undeliverable::Full => {
                let limit_bytes = self.hub.limit();
                tracing::warn!(user = %member.name, limit_bytes, "slow consumer evicted");
                crate::metrics::inc(&self.hub.metrics().evictions_send_queue);
                member.evict();
                Some(protocol::REASON_SEND_QUEUE)
            }
            Undeliverable::Gone => None,
        };
        Some(Event {
            room: self.lobby.clone(),
            seq: self.last_seq(&self.lobby.clone()),
            at_ms: crate::event::now_ms(),
            kind: EventKind::Left {
                name: member.name,
                reason: reason.map(str::to_owned),
                conn: id,
            },
        })
    }

    /// Takes a member out of everything: its other rooms see it go offline, without a line
    /// (memberships stay for its next login).
    fn remove(&mut self, id: MemberId) -> Option<hub::Member> {
        let member = self.hub.remove(id)?;
        self.presence.unregister(id);
        if let Some(link) = &self.link {
            link.forget_session(&member.name, id);
            link.forget_handoff(id);
        }
        for room in &member.rooms {
            self.publish_presence(room, EventKind::Offline { conn: id }, None);
            self.forget_if_idle(room);
        }
        Some(member)
    }

    /// Forgets a room (not #lobby) without members once nothing of it lives only in memory.
    fn forget_if_idle(&mut self, room: &RoomName) {
        if room.is_lobby() {
            return;
        }
        let node = self.node;
        let clustered = self.link.is_some();
        if let Some(channel) = self.rooms.get(room)
            // A shared room is read here while a member here is in it.
            && (channel.roster.is_empty()
                || clustered && channel.roster.keys().all(|c| c.node != node))
            && channel.log.is_settled(&self.history)
        {
            self.rooms.remove(room);
            self.forgets += 1;
        }
    }

    /// Names in a room, sorted case-insensitively.
    fn sorted_names(&self, room: &RoomName) -> Vec<Arc<str>> {
        if room.is_lobby() && self.link.is_none() {
            return self.hub.sorted_names();
        }
        let Some(channel) = self.rooms.get(room) else {
            return Vec::new();
        };
        let mut names: Vec<Arc<str>> = channel.roster.values().cloned().collect();
        names.sort_unstable_by(|a, b| {
            let a = a.bytes().map(|c| c.to_ascii_lowercase());
            a.cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
        });
        names
    }

    /// Rooms with members here and their headcounts, sorted by name.
    fn local_room_list(&self) -> Vec<(RoomName, usize)> {
        let mut list: Vec<(RoomName, usize)> = self
            .rooms
            .iter()
            .map(|(name, c)| (name.clone(), self.headcount(name, c)))
            .filter(|(_, n)| *n > 0)
            .collect();
        list.sort_unstable();
        list
    }

    /// Members of a room, #lobby's being everyone here.
    fn headcount(&self, name: &RoomName, channel: &Channel) -> usize {
        if name.is_lobby() && self.link.is_none() {
            self.hub.len()
        } else {
            channel.roster.len()
        }
    }

    /// Rooms with members online, #lobby included.
    fn active_rooms(&self) -> usize {
        1 + self
            .rooms
            .iter()
            .filter(|(name, c)| !name.is_lobby() && !c.roster.is_empty())
            .count()
    }

    /// Makes sure a room is in memory, continuing its numbers from `start`.
    fn activate(&mut self, room: &RoomName, start: Start) {
        if self.rooms.contains_key(room) {
            return;
        }
        let channel = match start {
            Start::Stored(seq) => Channel {
                roster: Roster::new(),
                log: Log::local(room.clone(), seq, &self.history),
            },
            Start::Shared(tail) => {
                if let Some(link) = &self.link {
                    link.activated(room);
                }
                Channel {
                    log: Log::Redis(SharedLog::new(room.clone(), &tail)),
                    roster: tail.roster,
                }
            }
        };
        self.rooms.insert(room.clone(), channel);
    }

    /// Adds `id` to a room it is not in: the others there see it join (or, for a session
    /// taken over from `replacing` on another node, nothing).
    fn enter(&mut self, id: MemberId, room: &RoomName, replacing: Option<ConnId>) {
        let Some(name) = self.hub.get(id).map(|m| Arc::clone(&m.name)) else {
            return;
        };
        let kind = match replacing {
            Some(old) => EventKind::Replaced { name, old, new: id },
            None => EventKind::Joined { name, conn: id },
        };
        self.publish_presence(room, kind, Some(id));
        if let Some(member) = self.hub.get_mut(id)
            && let Err(at) = member.rooms.binary_search(room)
        {
            member.rooms.insert(at, room.clone());
        }
        // An away member joining: the room's IRC members with away-notify learn it.
        let away = self.hub.get(id).and_then(|m| {
            let away = m.irc.as_ref()?.away.clone()?;
            Some((Arc::clone(&m.name), away))
        });
        if let (Some((name, away)), Some(channel)) = (away, self.rooms.get(room)) {
            let meaning = Meaning::Away {
                name,
                away: Some(away),
            };
            let line = Line::meaning(String::new(), None, Some(meaning));
            let dropped = self
                .hub
                .deliver_irc(Audience::Roster(&channel.roster), &line, Some(id));
            self.announce_dropped(dropped);
        }
    }

    /// Removes a member with a last line to it and `*** name left` (with the reason) to all.
    fn kick(&mut self, id: MemberId, line: &str, reason: Option<&str>) -> bool {
        let Some(member) = self.remove(id) else {
            return false;
        };
        member.close(line);
        self.publish_left(member.name, reason, id);
        true
    }

    /// `*** name left` (with the reason, if any) in #lobby, where everyone is.
    fn publish_left(&mut self, name: Arc<str>, reason: Option<&str>, conn: ConnId) {
        let lobby = self.lobby.clone();
        let kind = EventKind::Left {
            name,
            reason: reason.map(str::to_owned),
            conn,
        };
        self.publish_presence(&lobby, kind, None);
    }

    /// True for a connection of this node's incarnation.
    fn is_mine(&self, conn: ConnId) -> bool {
        conn.node == self.node && conn.local > self.first_id
    }

    /// A new connection id of this node.
    fn next_conn(&mut self) -> ConnId {
        self.next_id += 1;
        ConnId {
            node: self.node,
            local: self.next_id,
        }
    }

    /// A private message to `target` (found here, or nobody), and the sender's echo.
    fn whisper_here(
        &mut self,
        id: MemberId,
        (from, target, to): (&str, Option<MemberId>, &str),
        text: &str,
        (tags, notice): (hub::ClientTags, bool),
    ) -> Result<Arc<str>, NotOnline> {
        let message_id = private_message_id();
        let result = match target {
            Some(target_id) => {
                let meaning = self
                    .hub
                    .get(target_id)
                    .filter(|t| t.irc.is_some())
                    .map(|t| Meaning::Private {
                        id: Arc::clone(&message_id),
                        tags: tags.clone(),
                        notice,
                        from: from.into(),
                        to: Arc::clone(&t.name),
                        text: text.to_owned(),
                    });
                let line = Line::meaning(protocol::private_message(from, text), None, meaning);
                match self.hub.reply(target_id, &line) {
                    Ok(()) => self
                        .hub
                        .get(target_id)
                        .map(|t| Arc::clone(&t.name))
                        .ok_or_else(|| NotOnline(to.to_owned())),
                    Err(why) => {
                        self.announce_dropped(vec![(target_id, why)]);
                        Err(NotOnline(to.to_owned()))
                    }
                }
            }
            None => Err(NotOnline(to.to_owned())),
        };
        match &result {
            Ok(target_name) => {
                let echo = protocol::private_echo(target_name, text);
                self.reply_meaning(id, echo, None, || {
                    Some(Meaning::Private {
                        id: message_id,
                        tags,
                        notice,
                        from: from.into(),
                        to: Arc::clone(target_name),
                        text: text.to_owned(),
                    })
                });
            }
            Err(_) => self.reply_meaning(id, protocol::not_online(to), None, || {
                Some(Meaning::NotOnline(to.into()))
            }),
        }
        result
    }

    fn last_seq(&self, room: &RoomName) -> Seq {
        self.rooms.get(room).map_or(0, |c| c.log.last_seq())
    }

    /// `/join` under the lock; `Err(epoch)` when the room is not in memory and its stored
    /// number (read at `epoch`) is missing or may be stale.
    fn join_room(
        &mut self,
        id: MemberId,
        room: &RoomName,
        stored: &mut Option<(Start, u64)>,
    ) -> Result<(), u64> {
        let Some(member) = self.hub.get(id) else {
            return Ok(());
        };
        if member.in_room(room) {
            self.reply(id, protocol::now_talking(room));
            if let Some(member) = self.hub.get_mut(id) {
                member.current = room.clone();
            }
            return Ok(());
        }
        let limits = *self.history.limits();
        let user = member.user;
        if member.rooms.len() >= limits.max_rooms_per_user {
            self.reply(id, protocol::too_many_rooms(limits.max_rooms_per_user));
            return Ok(());
        }
        let empty = self.rooms.get(room).is_none_or(|c| c.roster.is_empty());
        if empty && self.active_rooms() >= limits.max_rooms {
            self.reply(id, protocol::TOO_MANY_ROOMS_ON_SERVER.to_owned());
            return Ok(());
        }
        if !self.rooms.contains_key(room) {
            match stored.take() {
                Some((start, epoch)) if epoch == self.forgets => self.activate(room, start),
                _ => return Err(self.forgets),
            }
        }
        self.enter(id, room, None);
        self.memberships.set(user, room, true);
        if let Some(member) = self.hub.get_mut(id) {
            member.current = room.clone();
        }
        let here = self.sorted_names(room);
        let newest = self.last_seq(room);
        let text = protocol::you_joined(room, &here);
        self.reply_meaning(id, text, Some((room.clone(), newest)), || {
            Some(Meaning::InRoom {
                room: room.clone(),
                here,
            })
        });
        if self.history_on() && limits.join_history > 0 && newest > 0 {
            self.request_history_of(id, room, Purpose::Join, 0, limits.join_history);
        }
        Ok(())
    }

    fn history_on(&self) -> bool {
        self.history.limits().history != HistoryMode::Off
    }
}

/// Where a `TAGMSG` goes.
#[derive(Debug, Clone, Copy)]
pub enum TagTarget<'a> {
    /// A room.
    Room(&'a RoomName),
    /// A member, by name (any letter case).
    Member(&'a str),
}

/// How a member's line was said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Said {
    /// A chat line.
    Chat,
    /// `/me`.
    Action,
    /// IRC's `NOTICE`: a chat line, which IRC members see live as a `NOTICE`.
    Notice,
}

/// A new private message's id: unique on this server (the process's start and a count).
fn private_message_id() -> Arc<str> {
    static STARTED: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let started = *STARTED.get_or_init(crate::event::now_ms);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    format!("pm.{started:x}.{n}").into()
}

impl Rooms {
    /// Logs a member in: reads its rooms and read positions, then joins #lobby and those rooms
    /// (see [`Rooms::join`]), registering the session in the directory in the same step.
    ///
    /// When they cannot be read, the member still joins (#lobby only, no catch-up) with
    /// [`Joined::catch_up_unavailable`] set: a failed read is not a first login.
    pub async fn log_in(
        &self,
        name: &Username,
        login: Login,
        resume: Option<ResumeFrom>,
    ) -> Result<Joined, JoinError> {
        let (link, id) = {
            let mut state = self.lock();
            (state.link.clone(), state.next_conn())
        };
        // In a cluster the session is registered first: a session of the name on another
        // node is taken over there (closed without a left line) and replaced in the rooms.
        // (Each cluster step is boxed, so a single node's login future stays small.)
        let remote = match &link {
            Some(link) => Box::pin(register(link, name, &login, id)).await?,
            None => None,
        };
        let mut tries = 0;
        let joined = loop {
            tries += 1;
            if tries > JOIN_TRIES {
                break Err(JoinError::Changed);
            }
            let epoch = self.lock().forgets;
            let restoring = Box::pin(self.read_restore(login.stamp.id, link.as_deref()));
            let (read, tails) = match restoring.await {
                Ok(read) => read,
                Err(e) => break Err(e),
            };
            let unavailable = read.is_err();
            let mut restore = read.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading rooms and read positions failed; no catch-up");
                Restore::default()
            });
            restore.epoch = epoch;
            restore.resume.clone_from(&resume);
            let joining = Joining {
                id: Some(id),
                remote,
                tails,
            };
            match self.join_with(name, login.clone(), restore, joining) {
                Err(JoinError::Changed) => continue,
                Ok(mut joined) => {
                    if unavailable {
                        joined.positions.clear();
                        joined.catch_up_unavailable = true;
                    }
                    break Ok(joined);
                }
                Err(e) => break Err(e),
            }
        };
        if let Some(link) = &link {
            match (&joined, remote) {
                (Ok(joined), Some(old)) => link.send(
                    old.node,
                    Note::Replaced {
                        conn: old,
                        by: joined.id,
                    },
                ),
                (Err(_), _) => link.forget_session(name.as_str(), id),
                _ => {}
            }
        }
        joined
    }

    /// A member's rooms and read positions from the store and, in a cluster, what a session
    /// on another node shared and each room's tail.
    async fn read_restore(&self, account: i64, link: Option<&Link>) -> Result<Restored, JoinError> {
        let mut read = self.memberships.restore(account).await;
        let tails = match (link, &mut read) {
            (Some(link), Ok(restore)) => shared_restore(link, account, restore).await?,
            _ => HashMap::new(),
        };
        Ok((read, tails))
    }

    /// Adds a member to #lobby and to its restored rooms, queueing its `You are in` lines and
    /// catch-up requests; an existing member of the same name (any case) is replaced silently
    /// (a `Replaced` event in each of its rooms) and its rooms are kept. `Changed` when a
    /// restored room not in memory was forgotten since `restore` was read (its stored number
    /// may be stale): read it again.
    pub fn join(
        &self,
        name: &Username,
        login: Login,
        restore: Restore,
    ) -> Result<Joined, JoinError> {
        self.join_with(name, login, restore, Joining::default())
    }

    fn join_with(
        &self,
        name: &Username,
        login: Login,
        restore: Restore,
        mut joining: Joining,
    ) -> Result<Joined, JoinError> {
        let mut state = self.lock();
        if state.closed {
            return Err(RoomClosed.into());
        }
        if restore.epoch != state.forgets
            && restore
                .rooms
                .iter()
                .any(|(room, _)| !state.rooms.contains_key(room))
        {
            return Err(JoinError::Changed);
        }
        let user = login.stamp.id;
        let shown: Arc<str> = name.as_str().into();
        let id = joining.id.unwrap_or_else(|| state.next_conn());
        // A takeover keeps the rooms and shows no flap; the old session is only closed.
        let replaced = state
            .hub
            .find(name.as_str())
            .and_then(|old_id| state.hub.remove(old_id).map(|m| (old_id, m)));
        let first_login = replaced.is_none();
        let mut handed = None;
        let kept_rooms = match replaced {
            Some((old_id, old)) => {
                let (handoff, receiver) = tokio::sync::oneshot::channel();
                old.replace(protocol::SIGNED_IN_ELSEWHERE, handoff);
                handed = Some(receiver);
                let lobby = state.lobby.clone();
                for room in std::iter::once(&lobby).chain(&old.rooms) {
                    let kind = EventKind::Replaced {
                        name: Arc::clone(&shown),
                        old: old_id,
                        new: id,
                    };
                    state.publish_presence(room, kind, None);
                }
                old.rooms
            }
            None => {
                let lobby = state.lobby.clone();
                let kind = match joining.remote {
                    // Taken over from another node: no flap there either.
                    Some(old) => EventKind::Replaced {
                        name: Arc::clone(&shown),
                        old,
                        new: id,
                    },
                    None => EventKind::Joined {
                        name: Arc::clone(&shown),
                        conn: id,
                    },
                };
                state.publish_presence(&lobby, kind, None);
                Vec::new()
            }
        };
        let numbered = restore.resume.is_some();
        let irc = login.irc;
        let echo = irc.as_ref().is_some_and(|i| i.echo);
        let outbox = state.hub.connect(
            id,
            (shown, user),
            kept_rooms,
            (numbered || echo, irc.map(|i| i.identity)),
        );
        // Replaces the old session's entry, as the rooms just did.
        state.presence.register(
            id,
            OnlineSession {
                name: name.as_str().into(),
                peer: login.peer,
                since: std::time::SystemTime::now(),
                stamp: login.stamp,
                queued: outbox.queue_counter(),
                certificate: login.certificate,
                protocol: login.protocol,
            },
        );
        let lobby = state.lobby.clone();
        let welcome = protocol::welcome(name.as_str(), &state.sorted_names(&lobby));
        let epoch = self.history_epoch();
        let mut positions = Vec::new();
        let mut catch_up = Vec::new();
        if first_login {
            let max_per_user = state.history.limits().max_rooms_per_user;
            let max_rooms = state.history.limits().max_rooms;
            for (room, stored) in restore.rooms.iter().take(max_per_user) {
                if !state.rooms.contains_key(room) && state.active_rooms() >= max_rooms {
                    continue;
                }
                let start = match joining.tails.remove(room) {
                    Some(tail) => Start::Shared(tail),
                    // A shared room is only activated from its stream's tail.
                    None if state.link.is_some() && !state.rooms.contains_key(room) => continue,
                    None => Start::Stored(*stored),
                };
                state.activate(room, start);
                state.enter(id, room, joining.remote);
            }
            let mut rooms = vec![lobby.clone()];
            rooms.extend(
                state
                    .hub
                    .get(id)
                    .map(|m| m.rooms.clone())
                    .unwrap_or_default(),
            );
            for room in rooms {
                let newest = state.last_seq(&room);
                let stored = restore.stored(&room, newest, &epoch);
                let resumed = restore.resumed(&room, newest);
                match resumed.or(stored) {
                    // Taken over from another node: caught up as a takeover here (below).
                    Some(_) if joining.remote.is_some() => {}
                    Some(at) if newest > at && state.history_on() => {
                        catch_up.push((room, at, resumed.is_some()));
                    }
                    _ if stored.is_none() => positions.push((room, newest)),
                    _ => {}
                }
            }
        }
        let rooms = state
            .hub
            .get(id)
            .map(|m| m.rooms.clone())
            .unwrap_or_default();
        for room in std::iter::once(&lobby).chain(&rooms) {
            let here = state.sorted_names(room);
            if room.is_lobby() {
                // The welcome names #lobby's members; a session rendering meanings shows it
                // as being in #lobby.
                if !state.hub.is_irc(id) {
                    continue;
                }
                state.reply_meaning(id, String::new(), None, || {
                    Some(Meaning::InRoom {
                        room: room.clone(),
                        here,
                    })
                });
                continue;
            }
            let text = protocol::you_are_in(room, &here);
            state.reply_meaning(id, text, None, || {
                Some(Meaning::InRoom {
                    room: room.clone(),
                    here,
                })
            });
        }
        for (room, at, resumed) in catch_up {
            let missed = state.last_seq(&room) - at;
            let want = state.catch_up_size(resumed);
            state.request_history_of(id, &room, Purpose::CatchUp { missed }, at, want);
        }
        if let (Some(_), Some(link)) = (joining.remote, &state.link) {
            handed = Some(link.await_handoff(id));
        }
        if let Some(handed) = handed
            && state.history_on()
        {
            // Up to each room's number now (later lines reach the new session live), from the
            // stored position at the latest: the old session's acknowledged positions, handed
            // over as it ends, narrow it. A room the client resumes starts where it said.
            let requests = std::iter::once(&lobby)
                .chain(&rooms)
                .filter_map(|room| {
                    let channel = state.rooms.get(room)?;
                    let newest = channel.log.last_seq();
                    let resumed = restore.resumed(room, newest);
                    let stored = restore.stored(room, newest, &epoch);
                    let after = resumed.or(stored).unwrap_or(0);
                    let want = state.catch_up_size(resumed.is_some());
                    let purpose = Purpose::CatchUp { missed: 0 };
                    let request = channel.log.range(purpose, after, want, &state.history);
                    Some((request, resumed.is_some()))
                })
                .collect();
            let catch_up = TakeoverCatchUp { requests, handed };
            let catch_up = Delivery::TakeoverCatchUp(Box::new(catch_up));
            if let Err(why) = state.hub.request(id, catch_up) {
                state.announce_dropped(vec![(id, why)]);
            }
        }
        Ok(Joined {
            id,
            welcome,
            outbox,
            positions,
            history_epoch: epoch,
            catch_up_unavailable: false,
        })
    }

    /// Removes a member and tells #lobby; does nothing for a replaced or evicted id.
    pub fn leave(&self, id: MemberId, reason: Option<&str>) {
        let mut state = self.lock();
        let Some(member) = state.remove(id) else {
            return;
        };
        if !state.closed {
            state.publish_left(member.name, reason, id);
        }
    }

    /// Relays a chat line to the other members of the current room; returns its number
    /// (the append's result: a shared log's append waits for the log).
    pub async fn say(&self, id: MemberId, text: &str) -> Option<Mark> {
        self.say_in(id, None, text, (Said::Chat, Vec::new())).await
    }

    /// Relays an action (`/me`) to the other members of the current room.
    pub async fn emote(&self, id: MemberId, text: &str) -> Option<Mark> {
        self.say_in(id, None, text, (Said::Action, Vec::new()))
            .await
    }

    /// Relays a line to `room` (the current room if `None`), when the member is in it; IRC
    /// members see the client-only `tags` live.
    pub async fn say_in(
        &self,
        id: MemberId,
        room: Option<&RoomName>,
        text: &str,
        (said, tags): (Said, hub::ClientTags),
    ) -> Option<Mark> {
        let text = text.to_owned();
        let notice = said == Said::Notice;
        let irc = (notice || !tags.is_empty()).then_some((notice, tags));
        self.relay((id, room, irc), |from| match said {
            Said::Action => EventKind::Action { from, text },
            Said::Chat | Said::Notice => EventKind::Chat { from, text },
        })
        .await
    }

    /// IRC's `TAGMSG`: client-only tags to a room the member is in (its IRC members here) or
    /// to a member by name (if an IRC session here); never stored. The sender gets its own
    /// with echo-message; a name nobody here has is `401`. False when nothing was sent.
    pub fn tag_message(&self, id: MemberId, to: TagTarget<'_>, tags: hub::ClientTags) -> bool {
        let mut state = self.lock();
        let Some(sender) = state.hub.get(id) else {
            return false;
        };
        let (from, echo) = (Arc::clone(&sender.name), sender.numbered);
        let except = (!echo).then_some(id);
        let message_id = private_message_id();
        match to {
            TagTarget::Room(room) => {
                if !sender.in_room(room) {
                    return false;
                }
                let meaning = Meaning::TagMsg {
                    id: message_id,
                    from,
                    to: room.as_str().into(),
                    tags,
                };
                let line = Line::meaning(String::new(), None, Some(meaning));
                let dropped = if room.is_lobby() {
                    state.hub.deliver_irc(Audience::Everyone, &line, except)
                } else if let Some(channel) = state.rooms.get(room) {
                    state
                        .hub
                        .deliver_irc(Audience::Roster(&channel.roster), &line, except)
                } else {
                    Vec::new()
                };
                state.announce_dropped(dropped);
                true
            }
            TagTarget::Member(name) => {
                let Some(target) = state.hub.find(name) else {
                    state.reply_meaning(id, String::new(), None, || {
                        Some(Meaning::NotOnline(name.into()))
                    });
                    return false;
                };
                let Some(to) = state.hub.get(target).map(|t| Arc::clone(&t.name)) else {
                    return false;
                };
                let meaning = || Meaning::TagMsg {
                    id: Arc::clone(&message_id),
                    from: Arc::clone(&from),
                    to: Arc::clone(&to),
                    tags: tags.clone(),
                };
                if state.hub.is_irc(target) {
                    let line = Line::meaning(String::new(), None, Some(meaning()));
                    if let Err(why) = state.hub.reply(target, &line) {
                        state.announce_dropped(vec![(target, why)]);
                    }
                }
                if echo {
                    state.reply_meaning(id, String::new(), None, || Some(meaning()));
                }
                true
            }
        }
    }

    /// True when member `id` is in `room`.
    pub fn is_in(&self, id: MemberId, room: &RoomName) -> bool {
        self.lock().hub.get(id).is_some_and(|m| m.in_room(room))
    }

    /// The rooms member `id` is in besides #lobby, sorted.
    pub fn rooms_of(&self, id: MemberId) -> Vec<RoomName> {
        self.lock()
            .hub
            .get(id)
            .map(|m| m.rooms.clone())
            .unwrap_or_default()
    }

    /// Who is in `room`, sorted case-insensitively.
    pub fn names_in(&self, room: &RoomName) -> Vec<Arc<str>> {
        self.lock().sorted_names(room)
    }

    /// How IRC shows the member named `name` (any letter case) connected here: its
    /// identity if it is an IRC session, a plain one (its name, not away) if it is another.
    pub fn irc_identity(&self, name: &str) -> Option<(Arc<str>, directory::IrcIdentity)> {
        let state = self.lock();
        let member = state.hub.get(state.hub.find(name)?)?;
        let identity = match &member.irc {
            Some(identity) => (**identity).clone(),
            None => directory::IrcIdentity {
                user: member.name.to_string(),
                realname: member.name.to_string(),
                away: None,
            },
        };
        Some((Arc::clone(&member.name), identity))
    }

    /// The rooms the member named `name` is in here, #lobby first.
    pub fn rooms_of_name(&self, name: &str) -> Vec<RoomName> {
        let state = self.lock();
        let Some(member) = state.hub.find(name).and_then(|id| state.hub.get(id)) else {
            return Vec::new();
        };
        std::iter::once(state.lobby.clone())
            .chain(member.rooms.iter().cloned())
            .collect()
    }

    /// Sets (or with `None` clears) an IRC member's away message, and tells the IRC members
    /// here (everyone shares #lobby) for away-notify.
    pub fn set_away(&self, id: MemberId, away: Option<String>) {
        let mut state = self.lock();
        let Some(member) = state.hub.get_mut(id) else {
            return;
        };
        let name = Arc::clone(&member.name);
        let Some(identity) = member.irc.as_mut() else {
            return;
        };
        identity.away.clone_from(&away);
        let line = Line::meaning(String::new(), None, Some(Meaning::Away { name, away }));
        let dropped = state.hub.deliver_irc(Audience::Everyone, &line, Some(id));
        state.announce_dropped(dropped);
    }

    /// Every room in use here with its headcount, sorted by name.
    pub fn room_list(&self) -> Vec<(RoomName, usize)> {
        let state = self.lock();
        state.local_room_list()
    }

    /// Rooms with members online, #lobby included.
    pub fn rooms_in_use(&self) -> usize {
        self.lock().active_rooms()
    }

    /// Sends a private message and queues the sender's echo (or `! NAME is not online`) in
    /// the sender's own queue, in room order; returns the target's name as created. In a
    /// cluster a target on another node gets it through that node's inbox.
    pub async fn whisper(&self, id: MemberId, to: &str, text: &str) -> Result<Arc<str>, NotOnline> {
        self.whisper_tagged(id, to, text, (Vec::new(), false)).await
    }

    /// [`Rooms::whisper`] with client-only tags, and sent as IRC's `NOTICE` with `notice`,
    /// which an IRC recipient here sees.
    pub async fn whisper_tagged(
        &self,
        id: MemberId,
        to: &str,
        text: &str,
        tags: (hub::ClientTags, bool),
    ) -> Result<Arc<str>, NotOnline> {
        let (from, link) = {
            let mut state = self.lock();
            let Some(from) = state.hub.get(id).map(|m| Arc::clone(&m.name)) else {
                return Err(NotOnline(to.to_owned()));
            };
            match (state.hub.find(to), state.link.clone()) {
                (None, Some(link)) => (from, link),
                (found, _) => return state.whisper_here(id, (&from, found, to), text, tags),
            }
        };
        let target = match link.sessions.find(to).await {
            Ok(Some(session)) if session.node != link.node => Some(session),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "finding a private message's target failed");
                self.lock().reply(id, protocol::CHAT_UNAVAILABLE.to_owned());
                return Err(NotOnline(to.to_owned()));
            }
        };
        let mut state = self.lock();
        let Some(target) = target else {
            state.reply_meaning(id, protocol::not_online(to), None, || {
                Some(Meaning::NotOnline(to.into()))
            });
            return Err(NotOnline(to.to_owned()));
        };
        let line = protocol::private_message(&from, text);
        link.send(
            target.node,
            Note::Line {
                to: target.conn(),
                line,
            },
        );
        state.reply(id, protocol::private_echo(&target.name, text));
        Ok(target.name.as_str().into())
    }

    /// Queues the `/who` reply (the current room, or `room`) in the member's own queue, so it
    /// agrees with the joined and left lines queued before it.
    pub fn send_who(&self, id: MemberId, room: Option<&RoomName>) {
        let mut state = self.lock();
        let Some(current) = state.hub.get(id).map(|m| m.current.clone()) else {
            return;
        };
        let room = room.cloned().unwrap_or(current);
        let names = state.sorted_names(&room);
        let reply = if room.is_lobby() {
            protocol::who(&names)
        } else {
            protocol::who_in(&room, &names)
        };
        state.reply(id, reply);
    }

    /// Queues the `/rooms` reply.
    pub async fn send_rooms(&self, id: MemberId) {
        let link = self.lock().link.clone();
        // In a cluster, the rooms of every node, read off the lock once this node's own
        // presence (the member's joins among it) is written.
        let shared = match link {
            Some(link) => match link.flush().await.logs.rooms_in_use().await {
                Ok(list) => Some(list),
                Err(e) => {
                    tracing::warn!(error = %e, "listing the cluster's rooms failed");
                    self.lock().reply(id, protocol::SERVER_BUSY.to_owned());
                    return;
                }
            },
            None => None,
        };
        let mut state = self.lock();
        let list = shared.unwrap_or_else(|| state.local_room_list());
        state.reply(id, protocol::rooms(&list));
    }

    /// True when the room is in memory.
    pub fn is_active(&self, room: &RoomName) -> bool {
        self.lock().rooms.contains_key(room)
    }

    /// `/join`: joins or switches to the room, and queues the replies. A room not in memory
    /// continues its numbers from the store's; when that cannot be read the member gets
    /// `! Server busy, try again later` and nothing changes.
    pub async fn join_room(&self, id: MemberId, room: RoomName) {
        if self.refused_while_down(id) || self.too_many_rooms_in_cluster(id, &room).await {
            return;
        }
        Box::pin(self.join_taken_room(id, &room)).await;
        self.release_if_not_joined(id, &room).await;
    }

    /// [`Rooms::join_room`] once the room counts among the cluster's rooms in use.
    async fn join_taken_room(&self, id: MemberId, room: &RoomName) {
        let room = room.clone();
        let mut stored = None;
        for _ in 0..JOIN_TRIES {
            let epoch = match self.lock().join_room(id, &room, &mut stored) {
                Ok(()) => return,
                Err(epoch) => epoch,
            };
            match Box::pin(self.start_of(&room)).await {
                Ok(start) => stored = Some((start, epoch)),
                Err(e) => {
                    tracing::warn!(error = %e, room = %room, "reading a room's state failed");
                    break;
                }
            }
        }
        let mut state = self.lock();
        let busy = match state.link {
            Some(_) => protocol::CHAT_UNAVAILABLE,
            None => protocol::SERVER_BUSY,
        };
        state.reply(id, busy.to_owned());
    }

    /// `/part [#room]`.
    pub fn part_room(&self, id: MemberId, room: Option<RoomName>) {
        self.part_room_saying(id, room, None);
    }

    /// `/part`, with a reason the room's members see (IRC's `PART #room :reason`).
    pub fn part_room_saying(&self, id: MemberId, room: Option<RoomName>, reason: Option<&str>) {
        if self.refused_while_down(id) {
            return;
        }
        let mut state = self.lock();
        let Some(member) = state.hub.get(id) else {
            return;
        };
        let room = room.unwrap_or_else(|| member.current.clone());
        if room.is_lobby() {
            state.reply(id, protocol::CANNOT_LEAVE_LOBBY.to_owned());
            return;
        }
        if !member.in_room(&room) {
            state.reply(id, protocol::not_in(&room));
            return;
        }
        let (user, name) = (member.user, Arc::clone(&member.name));
        let lobby = state.lobby.clone();
        if let Some(member) = state.hub.get_mut(id) {
            member.rooms.retain(|r| *r != room);
            if member.current == room {
                member.current = lobby;
            }
        }
        let left = EventKind::Left {
            name,
            reason: reason.map(str::to_owned),
            conn: id,
        };
        state.publish_presence(&room, left, None);
        state.memberships.set(user, &room, false);
        state.reply_meaning(id, protocol::you_left(&room), None, || {
            Some(Meaning::LeftRoom(room.clone(), reason.map(str::to_owned)))
        });
        state.forget_if_idle(&room);
    }

    /// `/history N` in the current room.
    pub fn send_history(&self, id: MemberId, want: usize) {
        let mut state = self.lock();
        let Some(room) = state.hub.get(id).map(|m| m.current.clone()) else {
            return;
        };
        if !state.history_on() {
            state.reply(id, protocol::HISTORY_OFF.to_owned());
            return;
        }
        state.request_history_of(id, &room, Purpose::History, 0, want);
    }

    /// Everyone online, sorted case-insensitively (for tests; members get
    /// [`Rooms::send_who`]).
    pub fn who(&self) -> Vec<Arc<str>> {
        let state = self.lock();
        state.sorted_names(&state.lobby)
    }

    /// Removes a member with a last line to it and `*** name left` (with the reason, if any)
    /// to the others; false if the member is no longer there.
    pub fn kick(&self, id: MemberId, line: &str, reason: Option<&str>) -> bool {
        self.lock().kick(id, line, reason)
    }

    /// Sends `*** [admin] TEXT` to every member, as a #lobby message; false (nothing sent)
    /// while too much history waits for the database.
    pub fn announce(&self, text: &str) -> bool {
        let mut state = self.lock();
        let lobby = state.lobby.clone();
        let notice = EventKind::Notice {
            text: text.to_owned(),
        };
        state.publish(&lobby, notice, None).is_ok()
    }

    /// Queues the shutdown notice behind each member's pending lines and closes the room.
    pub fn shutdown(&self) {
        let mut state = self.lock();
        state.closed = true;
        if state.link.is_some() {
            // The other nodes' members see this node's members leave.
            let here: Vec<MemberId> = state.hub.iter().map(|(id, _)| *id).collect();
            for id in here {
                if let Some(member) = state.remove(id) {
                    state.publish_left(Arc::clone(&member.name), None, id);
                    member.close(protocol::SHUTTING_DOWN);
                }
            }
        }
        for member in state.hub.drain() {
            member.close(protocol::SHUTTING_DOWN);
        }
        for channel in state.rooms.values_mut() {
            channel.roster.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn user(s: &str) -> Username {
        Username::parse(s).unwrap()
    }

    trait JoinAs {
        fn join_as(&self, name: &Username) -> Result<Joined, JoinError>;
    }

    impl JoinAs for Rooms {
        /// A login with nothing to restore.
        fn join_as(&self, name: &Username) -> Result<Joined, JoinError> {
            self.join(name, Login::new(0), Restore::default())
        }
    }

    fn drain(outbox: &mut Outbox) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(d) = outbox.try_recv() {
            match d {
                Delivery::Presence(l) => out.push(l.text.trim_end().to_owned()),
                Delivery::Line(l) => {
                    outbox.written(l.text.len());
                    out.push(l.text.trim_end().to_owned());
                }
                Delivery::Close(l) => out.push(format!("CLOSE {}", l.trim_end())),
                Delivery::Replaced(r) => out.push(format!("REPLACED {}", r.line.trim_end())),
                Delivery::TakeoverCatchUp(t) => out.push(format!(
                    "TAKEOVER CATCH-UP {:?}",
                    t.requests
                        .iter()
                        .map(|(r, _)| r.room.to_string())
                        .collect::<Vec<_>>()
                )),
                Delivery::History(r) => out.push(format!("HISTORY {} {:?}", r.room, r.purpose)),
                Delivery::Evicted => out.push("EVICTED".to_owned()),
            }
        }
        out
    }

    fn no_history() -> Arc<History> {
        History::detached(crate::config::RoomLimits {
            history: HistoryMode::Off,
            ..Default::default()
        })
    }

    #[test]
    fn a_delivery_is_two_words() {
        assert_eq!(
            std::mem::size_of::<Delivery>(),
            2 * std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn join_announces_and_welcome_lists_everyone_sorted() {
        let room = Rooms::new(1 << 20);
        let mut bob = room.join_as(&user("bob")).unwrap();
        let alice = room.join_as(&user("Alice")).unwrap();
        assert_eq!(alice.welcome, "*** Welcome, Alice! 2 online: Alice, bob\n");
        assert_eq!(drain(&mut bob.outbox), vec!["*** Alice joined"]);
    }

    #[tokio::test]
    async fn say_reaches_others_but_not_the_sender() {
        let room = Rooms::new(1 << 20);
        let mut a = room.join_as(&user("a")).unwrap();
        let mut b = room.join_as(&user("b")).unwrap();
        drain(&mut a.outbox);
        room.say(a.id, "hello").await;
        assert_eq!(drain(&mut b.outbox), vec!["<a> hello"]);
        assert!(drain(&mut a.outbox).is_empty());
    }

    #[test]
    fn takeover_closes_the_old_session_without_presence_flap() {
        let room = Rooms::new(1 << 20);
        let mut old = room.join_as(&user("alice")).unwrap();
        let mut bob = room.join_as(&user("bob")).unwrap();
        drain(&mut old.outbox);
        let new = room.join_as(&user("ALICE")).unwrap();
        assert_eq!(
            drain(&mut old.outbox),
            vec![format!(
                "REPLACED {}",
                protocol::SIGNED_IN_ELSEWHERE.trim_end()
            )]
        );
        assert!(drain(&mut bob.outbox).is_empty());
        assert!(new.welcome.contains("2 online: ALICE, bob"));
        room.leave(old.id, None);
        assert!(drain(&mut bob.outbox).is_empty(), "stale leave is ignored");
    }

    /// A room where `slow` never reads, `fast` always does, and `talker` speaks.
    fn three_members(limit: usize) -> (Rooms, Joined, Joined, Joined) {
        let room = Rooms::new(limit);
        let slow = room.join_as(&user("slow")).unwrap();
        let mut fast = room.join_as(&user("fast")).unwrap();
        let talker = room.join_as(&user("talker")).unwrap();
        drain(&mut fast.outbox);
        (room, slow, fast, talker)
    }

    #[tokio::test]
    async fn full_queue_evicts_and_others_keep_receiving() {
        // slow holds 34 bytes of join notices; each chat line is 30 bytes.
        let (room, slow, mut fast, talker) = three_members(100);
        room.say(talker.id, "aaaaaaaaaaaaaaaaaaaa").await;
        room.say(talker.id, "bbbbbbbbbbbbbbbbbbbb").await;
        assert!(!slow.outbox.removed().happened());
        drain(&mut fast.outbox);
        room.say(talker.id, "cccccccccccccccccccc").await;
        assert!(slow.outbox.removed().happened());
        assert_eq!(room.who().len(), 2);
        assert_eq!(drain(&mut fast.outbox).len(), 2);
        room.say(talker.id, "after").await;
        assert_eq!(drain(&mut fast.outbox), vec!["<talker> after"]);
    }

    #[tokio::test]
    async fn eviction_notice_follows_the_event_that_overflowed() {
        let (room, _slow, mut fast, talker) = three_members(100);
        let mut seen = Vec::new();
        for _ in 0..3 {
            room.say(talker.id, "xxxxxxxxxxxxxxxxxxxx").await;
            seen.extend(drain(&mut fast.outbox));
        }
        assert_eq!(
            seen,
            vec![
                "<talker> xxxxxxxxxxxxxxxxxxxx",
                "<talker> xxxxxxxxxxxxxxxxxxxx",
                "<talker> xxxxxxxxxxxxxxxxxxxx",
                "*** slow left (send queue exceeded)"
            ]
        );
    }

    #[tokio::test]
    async fn mass_eviction_evicts_no_healthy_member_and_costs_each_survivor_one_delivery() {
        let metrics = Arc::new(Metrics::default());
        // Room for one 40-byte chat line and a little more.
        let line = "x".repeat(29);
        let room = Rooms::with_history(64, Arc::clone(&metrics), no_history());
        let mut talker = room.join_as(&user("talker")).unwrap();
        let mut stalled: Vec<Joined> = Vec::new();
        let mut healthy: Vec<Joined> = Vec::new();
        for i in 0..200 {
            stalled.push(room.join_as(&user(&format!("s{i:03}"))).unwrap());
            healthy.push(room.join_as(&user(&format!("h{i:03}"))).unwrap());
            // Everyone reads the join notices; the bound is tiny.
            for m in stalled.iter_mut().chain(healthy.iter_mut()) {
                drain(&mut m.outbox);
            }
            drain(&mut talker.outbox);
        }
        let drain_all = |healthy: &mut Vec<Joined>| {
            healthy
                .iter_mut()
                .map(|h| drain(&mut h.outbox))
                .collect::<Vec<_>>()
        };
        // From here on the stalled members read nothing.
        room.say(talker.id, &line).await;
        drain_all(&mut healthy);
        let before = metrics.deliveries.load(Ordering::Relaxed);
        room.say(talker.id, &line).await;
        let after = metrics.deliveries.load(Ordering::Relaxed);
        assert!(stalled.iter().all(|s| s.outbox.removed().happened()));
        assert!(healthy.iter().all(|h| !h.outbox.removed().happened()));
        assert_eq!(room.who().len(), 201);
        // One chat line and one presence delivery per healthy member (and the talker's
        // presence delivery), not one per evicted member.
        assert_eq!(after - before, 200 + 201);
        let got_all = drain_all(&mut healthy);
        for got in got_all {
            assert_eq!(got.len(), 2);
            assert_eq!(got[0], format!("<talker> {line}"));
            let left: Vec<&str> = got[1].lines().collect();
            assert_eq!(left.len(), 200);
            assert_eq!(
                left[0]
                    .strip_suffix(" left (send queue exceeded)")
                    .map(|n| n.starts_with("*** s")),
                Some(true)
            );
        }
        // Presence lines do not count towards the bound: a survivor that has not read them yet
        // still takes the next line.
        room.say(talker.id, &line).await;
        assert!(healthy.iter().all(|h| !h.outbox.removed().happened()));
    }

    #[tokio::test]
    async fn dropped_receiver_is_announced_as_left() {
        let room = Rooms::new(1 << 20);
        let gone = room.join_as(&user("gone")).unwrap();
        let b = room.join_as(&user("b")).unwrap();
        let mut c = room.join_as(&user("c")).unwrap();
        drain(&mut c.outbox);
        drop(gone);
        room.say(b.id, "x").await;
        assert_eq!(drain(&mut c.outbox), vec!["<b> x", "*** gone left"]);
        assert_eq!(room.who().len(), 2);
    }

    #[tokio::test]
    async fn whisper_goes_to_one_member_only() {
        let room = Rooms::new(1 << 20);
        let mut a = room.join_as(&user("a")).unwrap();
        let mut b = room.join_as(&user("Bob")).unwrap();
        let mut c = room.join_as(&user("c")).unwrap();
        drain(&mut b.outbox);
        assert_eq!(&*room.whisper(a.id, "bob", "psst").await.unwrap(), "Bob");
        assert_eq!(drain(&mut b.outbox), vec!["*a* psst"]);
        assert!(drain(&mut c.outbox).is_empty());
        assert!(room.whisper(a.id, "zed", "x").await.is_err());
        assert_eq!(
            drain(&mut a.outbox)[..],
            [
                "*** Bob joined",
                "*** c joined",
                "-> *Bob* psst",
                "! zed is not online"
            ]
        );
    }

    #[test]
    fn who_reply_is_queued_behind_the_presence_lines_before_it() {
        let room = Rooms::new(1 << 20);
        let mut a = room.join_as(&user("a")).unwrap();
        let b = room.join_as(&user("b")).unwrap();
        room.leave(b.id, None);
        let _c = room.join_as(&user("c")).unwrap();
        room.send_who(a.id, None);
        assert_eq!(
            drain(&mut a.outbox),
            vec![
                "*** b joined",
                "*** b left",
                "*** c joined",
                "*** 2 online: a, c"
            ]
        );
    }

    #[test]
    fn kick_closes_the_member_and_announces_left() {
        let room = Rooms::new(1 << 20);
        let mut a = room.join_as(&user("a")).unwrap();
        let mut b = room.join_as(&user("b")).unwrap();
        drain(&mut a.outbox);
        assert!(room.kick(a.id, "! bye\n", Some("spam")));
        assert_eq!(drain(&mut a.outbox), vec!["CLOSE ! bye"]);
        assert_eq!(drain(&mut b.outbox), vec!["*** a left (spam)"]);
        assert!(!room.kick(a.id, "! bye\n", None));
        room.announce("maintenance at 5");
        assert_eq!(drain(&mut b.outbox), vec!["*** [admin] maintenance at 5"]);
    }

    #[test]
    fn shutdown_closes_every_queue_and_refuses_joins() {
        let room = Rooms::new(1 << 20);
        let mut a = room.join_as(&user("a")).unwrap();
        room.shutdown();
        assert_eq!(
            drain(&mut a.outbox),
            vec![format!("CLOSE {}", protocol::SHUTTING_DOWN.trim_end())]
        );
        assert!(room.join_as(&user("b")).is_err());
    }

    #[tokio::test]
    async fn a_rooms_roster_follows_its_presence_events_through_takeover_and_logout() {
        let rooms = Rooms::new(1 << 20);
        let dev = RoomName::parse("#dev").unwrap();
        let old = rooms.join_as(&user("alice")).unwrap();
        let mut bob = rooms.join_as(&user("bob")).unwrap();
        rooms.join_room(old.id, dev.clone()).await;
        rooms.join_room(bob.id, dev.clone()).await;
        let new = rooms.join_as(&user("Alice")).unwrap();
        // The replaced connection's late leave must not take the new one out of #dev.
        rooms.leave(old.id, None);
        drain(&mut bob.outbox);
        rooms.send_who(bob.id, Some(&dev));
        assert_eq!(drain(&mut bob.outbox), vec!["*** 2 in #dev: Alice, bob"]);
        rooms.leave(new.id, None);
        rooms.send_who(bob.id, Some(&dev));
        assert_eq!(
            drain(&mut bob.outbox),
            vec!["*** Alice left", "*** 1 in #dev: bob"],
            "offline in #dev without a line there"
        );
    }

    #[tokio::test]
    async fn a_room_forgotten_after_a_stale_read_continues_from_its_real_number() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("t.db"))
            .await
            .unwrap();
        let history = History::start(crate::config::RoomLimits::default(), store)
            .await
            .unwrap();
        let rooms = Rooms::with_history(1 << 20, Arc::default(), Arc::clone(&history));
        let dev = RoomName::parse("#dev").unwrap();
        let mut a = rooms.join_as(&user("a")).unwrap();
        // What a reader saw before anything happened in #dev.
        let stale = (history.last_seq(&dev).await.unwrap(), rooms.lock().forgets);
        rooms.join_room(a.id, dev.clone()).await;
        assert_eq!(rooms.say(a.id, "x").await, Some((dev.clone(), 1)));
        history.barrier().await;
        rooms.part_room(a.id, None);
        assert!(!rooms.is_active(&dev), "settled and empty: forgotten");
        // The stale number is refused, not used: it would hand out 1 again.
        let mut stored = Some((Start::Stored(stale.0), stale.1));
        assert_eq!(rooms.lock().join_room(a.id, &dev, &mut stored), Err(1));
        assert!(!rooms.is_active(&dev));
        rooms.join_room(a.id, dev.clone()).await;
        assert_eq!(rooms.say(a.id, "y").await, Some((dev.clone(), 2)));
        drain(&mut a.outbox);
    }

    #[tokio::test]
    async fn a_room_whose_lines_live_only_in_memory_is_not_forgotten() {
        let history = History::detached(crate::config::RoomLimits {
            history: HistoryMode::Memory,
            ..Default::default()
        });
        let rooms = Rooms::with_history(1 << 20, Arc::default(), history);
        let dev = RoomName::parse("#dev").unwrap();
        let a = rooms.join_as(&user("a")).unwrap();
        rooms.join_room(a.id, dev.clone()).await;
        rooms.say(a.id, "x").await;
        rooms.part_room(a.id, None);
        assert!(rooms.is_active(&dev), "its numbers exist nowhere else");
        rooms.join_room(a.id, dev.clone()).await;
        assert_eq!(rooms.say(a.id, "y").await, Some((dev, 2)));
    }
}
