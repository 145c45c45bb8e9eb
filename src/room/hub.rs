//! The members on this node: one byte-bounded queue per connection, fed by every room the
//! member is in and by the replies to its own commands, and the eviction of members that do
//! not read. The hub knows nothing of logs or rosters: the rooms say whom a line goes to.
//!
//! Delivery is the hot path (one call per member per event): it takes no lock of its own, and
//! allocates nothing per member (every queue holds an `Arc` of the one rendered line).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::queue;
use super::{MemberId, Roster};
use crate::event::{Event, RoomName, Seq};
use crate::history::HistoryRequest;
use crate::metrics::Metrics;

/// A room and the number of a message in it: a read position.
pub type Mark = (RoomName, Seq);

/// The number of the mark that a cluster's reset notice carries (in #lobby): the rooms'
/// numbers start again after it, so a session's positions reached before it are no numbers in
/// the new history. Never a message's number; never folded with another mark.
pub const RESET_MARK: Seq = Seq::MAX;

/// A rendered line, shared by every member it is queued for.
#[derive(Debug, PartialEq, Eq)]
pub struct Line {
    /// The wire text, LF included.
    pub text: String,
    /// When it was rendered and queued, for the delivery-latency metric.
    pub queued_at: Instant,
    /// The read position a member reaches once this line is written to its socket.
    pub mark: Option<Mark>,
    /// The line is a stored message and `mark` its number: sessions with numbered lines show
    /// it in front.
    pub is_message: bool,
    /// What the line says, for sessions that render it in another format (IRC); attached
    /// only while such a session is connected here, so a node without one pays nothing.
    pub meaning: Option<Box<Meaning>>,
    /// The line as IRC sessions with one set of capabilities show it (the first to render it
    /// keeps it here): an event is rendered once per set of capabilities in use, not once per
    /// recipient. Empty, and unused, without IRC members.
    pub rendered: std::sync::OnceLock<(u16, Box<str>)>,
}

/// IRC client-only tags (`+typing`, …), keys with their `+`, values unescaped.
pub type ClientTags = Vec<(String, String)>;

/// What a line says, apart from its text: the form other renderers (IRC) start from.
#[derive(Debug, PartialEq, Eq)]
pub enum Meaning {
    /// Room events: one, or the left events of members dropped together.
    Events(Vec<Event>),
    /// A member's chat line from IRC, with what only IRC shows: sent as `NOTICE`, and the
    /// client-only tags (`+typing`, …), never stored.
    Said {
        /// The chat line.
        event: Event,
        /// Sent as `NOTICE`.
        notice: bool,
        /// Client-only tags, `+` included.
        tags: ClientTags,
    },
    /// IRC's `TAGMSG`: client-only tags alone, to a room or a member; never stored.
    TagMsg {
        /// The message's id.
        id: Arc<str>,
        /// Who sent it.
        from: Arc<str>,
        /// The room, or the member's name.
        to: Arc<str>,
        /// The tags, `+` included.
        tags: ClientTags,
    },
    /// The member is in `room` with `here` (it joined the room, or logged in to it).
    InRoom {
        /// The room.
        room: RoomName,
        /// Everyone in it, sorted case-insensitively.
        here: Vec<Arc<str>>,
    },
    /// The member left `room`, saying why if it did.
    LeftRoom(RoomName, Option<String>),
    /// Nobody named so is online (the target of a private message).
    NotOnline(Arc<str>),
    /// An IRC member went away (`Some` message) or came back (away-notify).
    Away {
        /// Who.
        name: Arc<str>,
        /// The away message; `None`: back.
        away: Option<String>,
    },
    /// A private message from `from` to `to` (the recipient's copy, or the sender's echo).
    Private {
        /// The message's id, the same in both copies (IRC's `msgid`).
        id: Arc<str>,
        /// Client-only tags (from an IRC sender).
        tags: ClientTags,
        /// Sent as IRC's `NOTICE`.
        notice: bool,
        /// The sender.
        from: Arc<str>,
        /// The recipient.
        to: Arc<str>,
        /// The text.
        text: String,
    },
}

impl Line {
    /// Renders once; the `Arc` is what each member's queue holds.
    pub fn new(text: String) -> Arc<Line> {
        Self::marked(text, None)
    }

    /// A line that moves the reader's position in a room.
    pub fn marked(text: String, mark: Option<Mark>) -> Arc<Line> {
        Self::meaning(text, mark, None)
    }

    /// A line with what it says, for other renderers.
    pub fn meaning(text: String, mark: Option<Mark>, meaning: Option<Meaning>) -> Arc<Line> {
        Arc::new(Line {
            text,
            queued_at: Instant::now(),
            mark,
            is_message: false,
            meaning: meaning.map(Box::new),
            rendered: std::sync::OnceLock::new(),
        })
    }

    /// A stored message's line, numbered `mark`.
    pub fn message(text: String, mark: Mark, meaning: Option<Meaning>) -> Arc<Line> {
        Arc::new(Line {
            text,
            queued_at: Instant::now(),
            mark: Some(mark),
            is_message: true,
            meaning: meaning.map(Box::new),
            rendered: std::sync::OnceLock::new(),
        })
    }
}

/// Where a replaced session hands the read positions its peer acknowledged to the session
/// that replaced it.
pub type Handoff = tokio::sync::oneshot::Sender<Vec<Mark>>;

/// The end of a session that another login replaced.
#[derive(Debug)]
pub struct Replaced {
    /// The last line.
    pub line: String,
    /// Where the session sends its acknowledged positions as it ends.
    pub handoff: Handoff,
}

/// The catch-up of a session that replaced another: the old session's unacknowledged lines,
/// up to the numbers the rooms had at the takeover (later ones reach the new session live).
#[derive(Debug)]
pub struct TakeoverCatchUp {
    /// One catch-up per room, from the stored position (or the room's start) to its number at
    /// the takeover; narrowed to what the old session's peer did not acknowledge, unless the
    /// flag says the client named where it is (`/resume`): then it starts exactly there.
    pub requests: Vec<(HistoryRequest, bool)>,
    /// The old session's acknowledged positions, sent as it ends.
    pub handed: tokio::sync::oneshot::Receiver<Vec<Mark>>,
}

/// An item in a member's outbound queue.
#[derive(Debug)]
pub enum Delivery {
    /// A rendered line.
    Line(Arc<Line>),
    /// `left` lines of members the room dropped, outside the byte bound (see
    /// [`Hub`]'s eviction rule).
    Presence(Arc<Line>),
    /// A history block to be read and written at this point of the queue.
    History(Box<HistoryRequest>),
    /// A last line; the session writes it and closes. Boxed so that the enum stays two words:
    /// a fat `Arc<str>` here would make every queue slot of every member 50 % larger, which
    /// costs ~25 % of fan-out CPU when queues are deep (measured with benches/run.sh).
    Close(Box<String>),
    /// Replaced by another login: the session drops its unwritten lines (the new session
    /// catches up on them), writes the last line, and hands over its positions.
    Replaced(Box<Replaced>),
    /// The catch-up after a takeover, answered where the room put it.
    TakeoverCatchUp(Box<TakeoverCatchUp>),
    /// Evicted for not reading: the session drops what it holds and closes.
    Evicted,
}

/// The signal that the rooms removed a member (see [`Outbox::removed`]).
pub type Removal = queue::Removal<Delivery>;

/// The receiving end of a member's byte-bounded queue.
pub struct Outbox {
    rx: queue::Receiver<Delivery>,
    queued: Arc<AtomicUsize>,
}

impl Outbox {
    /// Waits for the next delivery; `None` once the room dropped this member without a `Close`.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Takes a delivery if one is queued.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        self.rx.try_recv()
    }

    /// Reports that `bytes` of taken deliveries have reached the socket.
    pub fn written(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Signalled whenever the room removes this member (kick, takeover, account change,
    /// shutdown, eviction), after the last delivery is queued: a session blocked in a write
    /// stops it and says goodbye within a bounded time.
    pub fn removed(&self) -> Removal {
        self.rx.removal()
    }

    /// The queued-bytes counter, shared for reporting (`tlschat admin who`).
    pub fn queue_counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.queued)
    }
}

/// A member connected to this node.
pub(super) struct Member {
    pub name: Arc<str>,
    pub key: String,
    /// The account's row id (memberships and read positions are kept per account).
    pub user: i64,
    /// Rooms besides #lobby, sorted.
    pub rooms: Vec<RoomName>,
    /// Where plain lines and `/me` go.
    pub current: RoomName,
    /// The session asked for numbered lines (or IRC's echo-message): its own chat lines come
    /// back to it, in room order.
    pub numbered: bool,
    /// Set for a session that renders lines from their [`Meaning`] (IRC): how IRC shows it.
    pub irc: Option<Box<super::directory::IrcIdentity>>,
    /// In a cluster: this member's lines handed to the appender whose append is not
    /// confirmed yet (a sender does not wait for each; see `Rooms::relay`).
    pub unconfirmed: u32,
    /// In a cluster: the room and number of the member's newest appended line.
    pub last_appended: Option<Mark>,
    tx: queue::Sender<Delivery>,
    queued: Arc<AtomicUsize>,
}

/// Why a member could not take a delivery.
pub(super) enum Undeliverable {
    /// Its queue is past the byte bound: it does not read.
    Full,
    /// Its session has gone.
    Gone,
}

impl Member {
    /// Queues a line unless it would push the member's queue past `limit` bytes.
    fn deliver(&self, line: &Arc<Line>, limit: usize) -> Result<(), Undeliverable> {
        let len = line.text.len();
        if self.queued.load(Ordering::Relaxed) + len > limit {
            return Err(Undeliverable::Full);
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        self.tx
            .send(Delivery::Line(Arc::clone(line)))
            .map_err(|_| Undeliverable::Gone)
    }

    /// Queues presence lines outside the bound: they are at most one line per member that
    /// left (so bounded by the room's size), and must never turn one eviction into more.
    fn deliver_presence(&self, line: &Arc<Line>) -> Result<(), Undeliverable> {
        self.tx
            .send(Delivery::Presence(Arc::clone(line)))
            .map_err(|_| Undeliverable::Gone)
    }

    /// Sends the final line regardless of the bound (it is short and ends the queue), and
    /// interrupts the session even if it is blocked writing to a peer that does not read.
    pub fn close(&self, line: &str) {
        let _ = self.tx.send(Delivery::Close(Box::new(line.to_owned())));
        self.tx.remove();
    }

    /// Ends the session of a member another login replaces: like [`Member::close`], and the
    /// session sends its acknowledged positions to `handoff`.
    pub fn replace(&self, line: &str, handoff: Handoff) {
        let replaced = Replaced {
            line: line.to_owned(),
            handoff,
        };
        let _ = self.tx.send(Delivery::Replaced(Box::new(replaced)));
        self.tx.remove();
    }

    /// Ends the session of a member that does not read, without anything more to queue.
    pub fn evict(&self) {
        let _ = self.tx.send(Delivery::Evicted);
        self.tx.remove();
    }

    /// True when the member is in `room` (everyone is in #lobby).
    pub fn in_room(&self, room: &RoomName) -> bool {
        room.is_lobby() || self.rooms.binary_search(room).is_ok()
    }
}

/// Whom a room event goes to on this node.
pub(super) enum Audience<'a> {
    /// Every member here (#lobby).
    Everyone,
    /// The members of a room's roster that are connected here.
    Roster(&'a Roster),
}

/// The members connected to this node, by connection and by name.
pub(super) struct Hub {
    members: HashMap<MemberId, Member>,
    by_key: HashMap<String, MemberId>,
    /// `#lobby`, shared by every member's `current`, so that comparing room names (once per
    /// delivered line, for read positions) ends at the pointer.
    lobby: RoomName,
    /// Bytes that may wait in one member's queue.
    limit: usize,
    /// Members here that render lines from their meaning (see [`Line::meaning`]).
    irc_members: usize,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// No members yet; each may have `limit` bytes waiting.
    pub fn new(limit: usize, metrics: Arc<Metrics>) -> Self {
        Hub {
            members: HashMap::new(),
            by_key: HashMap::new(),
            lobby: RoomName::lobby(),
            limit,
            irc_members: 0,
            metrics,
        }
    }

    /// Connects a member: its queue starts empty; the `Outbox` is the session's end.
    pub fn connect(
        &mut self,
        id: MemberId,
        (name, user): (Arc<str>, i64),
        rooms: Vec<RoomName>,
        (numbered, irc): (bool, Option<super::directory::IrcIdentity>),
    ) -> Outbox {
        let (tx, rx) = queue::queue();
        let queued = Arc::new(AtomicUsize::new(0));
        let key = name.to_ascii_lowercase();
        self.by_key.insert(key.clone(), id);
        self.irc_members += usize::from(irc.is_some());
        self.members.insert(
            id,
            Member {
                name,
                key,
                user,
                rooms,
                current: self.lobby.clone(),
                numbered,
                irc: irc.map(Box::new),
                unconfirmed: 0,
                last_appended: None,
                tx,
                queued: Arc::clone(&queued),
            },
        );
        Outbox { rx, queued }
    }

    /// Takes a member out of the hub (its queue stays open until the caller closes it).
    pub fn remove(&mut self, id: MemberId) -> Option<Member> {
        let member = self.members.remove(&id)?;
        self.by_key.remove(&member.key);
        self.irc_members -= usize::from(member.irc.is_some());
        Some(member)
    }

    /// True when a member here renders lines from their meaning: only then do room lines
    /// carry one.
    pub fn has_irc_members(&self) -> bool {
        self.irc_members > 0
    }

    /// True when member `id` renders lines from their meaning.
    pub fn is_irc(&self, id: MemberId) -> bool {
        self.members.get(&id).is_some_and(|m| m.irc.is_some())
    }

    /// Everyone, for shutdown.
    pub fn drain(&mut self) -> impl Iterator<Item = Member> + '_ {
        self.by_key.clear();
        self.irc_members = 0;
        self.members.drain().map(|(_, member)| member)
    }

    /// Every member here, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&MemberId, &Member)> {
        self.members.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&MemberId, &mut Member)> {
        self.members.iter_mut()
    }

    pub fn get(&self, id: MemberId) -> Option<&Member> {
        self.members.get(&id)
    }

    pub fn get_mut(&mut self, id: MemberId) -> Option<&mut Member> {
        self.members.get_mut(&id)
    }

    /// The connection of a name (any letter case) on this node.
    pub fn find(&self, name: &str) -> Option<MemberId> {
        self.by_key.get(&name.to_ascii_lowercase()).copied()
    }

    /// Members connected here.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Names of everyone here, sorted case-insensitively.
    pub fn sorted_names(&self) -> Vec<Arc<str>> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        members.into_iter().map(|m| Arc::clone(&m.name)).collect()
    }

    /// Offers one room line to its audience here but `except`, and counts it; returns the
    /// members that could not take it (the rooms remove and announce them).
    pub fn deliver(
        &self,
        to: Audience<'_>,
        line: &Arc<Line>,
        except: Option<MemberId>,
    ) -> Vec<(MemberId, Undeliverable)> {
        let limit = self.limit;
        self.fan_out(to, except, |member| member.deliver(line, limit))
    }

    /// Offers a line that only IRC sessions show (away-notify) to the IRC members of the
    /// audience but `except`.
    pub fn deliver_irc(
        &self,
        to: Audience<'_>,
        line: &Arc<Line>,
        except: Option<MemberId>,
    ) -> Vec<(MemberId, Undeliverable)> {
        let limit = self.limit;
        self.fan_out(to, except, |member| match member.irc {
            Some(_) => member.deliver(line, limit),
            None => Ok(()),
        })
    }

    /// Offers the `left` lines of dropped members to everyone here, outside the byte bound
    /// (see [`Hub::deliver_presence`]'s use in the rooms' eviction rule).
    pub fn deliver_presence(&self, line: &Arc<Line>) -> Vec<(MemberId, Undeliverable)> {
        self.fan_out(Audience::Everyone, None, |member| {
            member.deliver_presence(line)
        })
    }

    fn fan_out(
        &self,
        to: Audience<'_>,
        except: Option<MemberId>,
        send: impl Fn(&Member) -> Result<(), Undeliverable>,
    ) -> Vec<(MemberId, Undeliverable)> {
        let mut dropped = Vec::new();
        let mut delivered = 0;
        let mut offer = |id: MemberId, member: &Member| {
            if Some(id) == except {
                return;
            }
            match send(member) {
                Ok(()) => delivered += 1,
                Err(why) => dropped.push((id, why)),
            }
        };
        match to {
            Audience::Everyone => {
                for (&id, member) in &self.members {
                    offer(id, member);
                }
            }
            Audience::Roster(roster) => {
                for id in roster.keys() {
                    if let Some(member) = self.members.get(id) {
                        offer(*id, member);
                    }
                }
            }
        }
        crate::metrics::inc(&self.metrics.room_events);
        self.metrics
            .deliveries
            .fetch_add(delivered, Ordering::Relaxed);
        dropped
    }

    /// Queues a reply to one member's command in its own queue, under the same bound as room
    /// lines (a member that asks but never reads is evicted like any slow consumer).
    pub fn reply(&self, id: MemberId, line: &Arc<Line>) -> Result<(), Undeliverable> {
        match self.members.get(&id) {
            Some(member) => member.deliver(line, self.limit),
            None => Ok(()),
        }
    }

    /// Queues a history request (a block read in place, `Delivery::History`) or the catch-up
    /// after a takeover for one member, outside the byte bound: its size is bounded by the
    /// request itself (`want` ≤ 500, or `catchup_messages` per room).
    pub fn request(&self, id: MemberId, request: Delivery) -> Result<(), Undeliverable> {
        debug_assert!(matches!(
            request,
            Delivery::History(_) | Delivery::TakeoverCatchUp(_)
        ));
        match self.members.get(&id) {
            Some(member) => member.tx.send(request).map_err(|_| Undeliverable::Gone),
            None => Ok(()),
        }
    }

    /// The byte bound, for the eviction log line.
    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}
