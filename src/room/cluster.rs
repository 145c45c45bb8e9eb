//! The rooms' side of cluster mode: what the node's link (`room::shared`) hands them (the
//! reader's entries and notes, the appender's outcomes, an outage's end) and the checks that
//! only a cluster makes (lines in flight, rooms counted on every node, Redis down).

use std::sync::Arc;

use super::log::redis::{Read, RedisLogError};
use super::log::{Log, SharedLog};
use super::presence::inbox::Note;
use super::presence::redis::SessionRecord;
use super::shared::{self, Link};
use super::{
    Channel, Line, MemberId, Rooms, State, hub, log, presence, presence_subject, removed_conn,
};
use crate::event::{ConnId, Event, EventKind, RoomName, Seq};
use crate::history::History;
use crate::metrics::Metrics;
use crate::protocol;

impl Rooms {
    /// Rooms of a cluster node: every room's log is its shared stream, read and written
    /// through `link`; #lobby's roster (everyone online, on every node) is read at once.
    pub async fn clustered(
        queue_limit_bytes: usize,
        metrics: Arc<Metrics>,
        history: Arc<History>,
        link: Arc<Link>,
    ) -> Result<Self, RedisLogError> {
        let lobby = RoomName::lobby();
        let tail = link.tail(&lobby).await?;
        let epoch = link.lobby_epoch_of(&tail).await?;
        let rooms = Self::with_history(queue_limit_bytes, metrics, history);
        {
            let mut state = rooms.lock();
            state.node = link.node;
            // Connection numbers that a restart under the same node id does not repeat.
            state.next_id = u64::try_from(crate::event::now_ms()).unwrap_or(0) << 10;
            state.first_id = state.next_id;
            state.rooms.insert(
                lobby.clone(),
                Channel {
                    roster: tail.roster.clone(),
                    log: Log::Redis(SharedLog::new(lobby, &tail)),
                },
            );
            link.saw_lobby_epoch(Some(epoch.as_str()));
            let _ = rooms.link.set(Arc::clone(&link));
            state.link = Some(link);
        }
        Ok(rooms)
    }

    /// The appender's word on members' lines: each appended one's number (its delivery here
    /// follows from the reader), or `None` for one not appended in time, whose sender is told
    /// `! Chat is unavailable right now; your message was not sent`.
    pub(super) fn appends_done(&self, outcomes: &[(ConnId, Option<Seq>)]) {
        let mut state = self.lock();
        for &(id, seq) in outcomes {
            let Some(member) = state.hub.get_mut(id) else {
                continue;
            };
            member.unconfirmed = member.unconfirmed.saturating_sub(1);
            match seq {
                // Lines of one member are appended in order, and it changes rooms only once
                // its lines are delivered (see `Rooms::wait_for_lines`).
                Some(seq) => member.last_appended = Some((member.current.clone(), seq)),
                None => state.reply(id, protocol::CHAT_UNAVAILABLE.to_owned()),
            }
        }
        drop(state);
        self.delivered.notify_waiters();
    }

    /// True when some of the member's lines are still on their way through the shared log.
    pub fn has_lines_in_flight(&self, id: MemberId) -> bool {
        let state = self.lock();
        state.hub.get(id).is_some_and(|m| state.in_flight(m, 0))
    }

    /// Waits (up to [`shared::APPEND_WAIT`]) until the member's lines are appended and
    /// delivered here, so that what it does next (`/history`, `/join`, `/part`) follows them.
    pub async fn wait_for_lines(&self, id: MemberId) {
        self.wait_for_appends(id, 0, true).await;
    }

    /// Waits until at most `unconfirmed` of the member's lines are unconfirmed and, with
    /// `delivered`, the appended ones are delivered here; gives up after
    /// [`shared::APPEND_WAIT`] (the appender answers for every line within it).
    pub(super) async fn wait_for_appends(&self, id: MemberId, unconfirmed: u32, delivered: bool) {
        let deadline = tokio::time::Instant::now() + shared::APPEND_WAIT;
        loop {
            let woken = self.delivered.notified();
            let done = {
                let state = self.lock();
                state.hub.get(id).is_none_or(|m| {
                    if delivered {
                        !state.in_flight(m, unconfirmed)
                    } else {
                        m.unconfirmed <= unconfirmed
                    }
                })
            };
            if done || tokio::time::timeout_at(deadline, woken).await.is_err() {
                return;
            }
        }
    }

    /// The shared rooms the cluster reader reads, each from the last entry delivered.
    pub(super) fn reading(&self) -> Vec<(RoomName, String)> {
        let state = self.lock();
        state
            .rooms
            .iter()
            .filter_map(|(name, channel)| match &channel.log {
                Log::Redis(log) => Some((name.clone(), log.read_from())),
                Log::Local(_) => None,
            })
            .collect()
    }

    /// Delivers what the cluster reader read: each room's entries in order, then the notes
    /// other nodes left for this one.
    pub(super) fn deliver_read(&self, read: Read) {
        let mut state = self.lock();
        for (room, entries) in read.rooms {
            for entry in entries {
                state.deliver_entry(&room, entry);
            }
        }
        for raw in &read.inbox {
            match presence::inbox::decode(raw) {
                Some(Note::Line { to, line }) => {
                    if let Err(why) = state.hub.reply(to, &Line::new(line)) {
                        state.announce_dropped(vec![(to, why)]);
                    }
                }
                Some(Note::Replaced { conn, by }) => state.replaced_elsewhere(conn, by),
                Some(Note::Handed { conn, positions }) => {
                    if let Some(link) = &state.link {
                        link.handed(conn, positions);
                    }
                }
                Some(Note::Kick { conn, reason }) => {
                    let line = protocol::kicked(reason.as_deref());
                    state.kick(conn, &line, reason.as_deref());
                }
                Some(Note::Wake) | None => {}
            }
        }
        drop(state);
        self.delivered.notify_waiters();
    }

    /// This node's members and the shared rooms it reads (for writing what an outage kept
    /// from being written).
    pub(super) fn local_presence(&self) -> (std::collections::HashSet<ConnId>, Vec<RoomName>) {
        let state = self.lock();
        let here = state.hub.iter().map(|(id, _)| *id).collect();
        let active = state
            .rooms
            .iter()
            .filter(|(_, c)| matches!(c.log, Log::Redis(_)))
            .map(|(name, _)| name.clone())
            .collect();
        (here, active)
    }

    /// The shared Redis answers again after an outage: every member here is told, and if
    /// Redis lost its data (`reset`), history restarts: the rooms are read from their new
    /// beginning, and this node's sessions and room memberships are written to Redis again
    /// (as silent takeovers of themselves, so no room shows a line).
    pub(super) fn recovered(&self, reset: bool) {
        let mut state = self.lock();
        let Some(link) = state.link.clone() else {
            return;
        };
        let mut text = protocol::CHAT_AVAILABLE_AGAIN.to_owned();
        if reset {
            text.push_str(protocol::HISTORY_RESET);
            // Numbers restart: lines appended before would never seem delivered.
            for (_, member) in state.hub.iter_mut() {
                member.last_appended = None;
            }
            for channel in state.rooms.values_mut() {
                if let Log::Redis(log) = &mut channel.log {
                    log.restart();
                }
            }
            let records = state
                .presence
                .sessions()
                .into_iter()
                .map(|s| SessionRecord {
                    node: s.id.node,
                    local: s.id.local,
                    name: s.name,
                    peer: s.peer,
                    since_ms: s
                        .since
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                    account: s.account,
                })
                .collect();
            link.register_again(records);
            let lobby = state.lobby.clone();
            let members: Vec<(ConnId, Arc<str>, Vec<RoomName>)> = state
                .hub
                .iter()
                .map(|(id, m)| (*id, Arc::clone(&m.name), m.rooms.clone()))
                .collect();
            for (id, name, rooms) in members {
                for room in std::iter::once(&lobby).chain(&rooms) {
                    let kind = EventKind::Replaced {
                        name: Arc::clone(&name),
                        old: id,
                        new: id,
                    };
                    state.publish_presence(room, kind, None);
                }
            }
        }
        // In each member's stream after every line of the old numbering: the positions the
        // session reaches start again there.
        let mark = reset.then(|| (state.lobby.clone(), hub::RESET_MARK));
        let dropped = state.hub.deliver_presence(&Line::marked(text, mark));
        state.announce_dropped(dropped);
    }

    /// In a cluster, `/join` of a room nobody is in, anywhere, when `max_rooms` rooms are in
    /// use on all nodes together: refused (`true`) with `! Too many rooms on this server`.
    /// Otherwise the room is taken among the rooms in use in the same step (two nodes cannot
    /// both take the last free one); one taken but not joined is given back by
    /// [`Rooms::release_if_not_joined`].
    pub(super) async fn too_many_rooms_in_cluster(&self, id: MemberId, room: &RoomName) -> bool {
        let (link, max_rooms) = {
            let state = self.lock();
            (state.link.clone(), state.history.limits().max_rooms)
        };
        let Some(link) = link else {
            return false;
        };
        match link.flush().await.logs.reserve(room, max_rooms).await {
            Ok(true) => false,
            Ok(false) => {
                self.lock()
                    .reply(id, protocol::TOO_MANY_ROOMS_ON_SERVER.to_owned());
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "counting the cluster's rooms failed");
                self.lock().reply(id, protocol::CHAT_UNAVAILABLE.to_owned());
                true
            }
        }
    }

    /// After a cluster `/join` that did not make `id` a member of `room` (a limit of its own,
    /// a failure): the room taken for it is given back unless someone is in it.
    pub(super) async fn release_if_not_joined(&self, id: MemberId, room: &RoomName) {
        let link = {
            let state = self.lock();
            let joined = state.hub.get(id).is_some_and(|m| m.rooms.contains(room));
            match &state.link {
                Some(link) if !joined => Arc::clone(link),
                _ => return,
            }
        };
        if let Err(e) = link.flush().await.logs.release(room).await {
            tracing::warn!(error = %e, room = %room, "giving back an unjoined room failed");
        }
    }

    /// In a cluster whose Redis is failing, answers a command that would change the rooms
    /// with `! Chat is unavailable right now; your message was not sent` (true: refused).
    pub(super) fn refused_while_down(&self, id: MemberId) -> bool {
        let mut state = self.lock();
        if state.link.as_ref().is_some_and(|l| l.is_down()) {
            state.reply(id, protocol::CHAT_UNAVAILABLE.to_owned());
            return true;
        }
        false
    }
}

impl State {
    /// Queues an event for a room's shared stream. Presence is applied to the roster here at
    /// once (the replies that follow, such as `You joined`, list the member) and not again
    /// when the reader returns it; its line, like every message, is delivered by the reader.
    pub(super) fn publish_shared(&mut self, link: &Link, room: &RoomName, kind: EventKind) -> Seq {
        let Some(channel) = self.rooms.get(room) else {
            return 0;
        };
        let event = Event {
            room: room.clone(),
            seq: channel.log.last_seq(),
            at_ms: crate::event::now_ms(),
            kind,
        };
        self.apply(&event);
        let origin = presence_subject(&event.kind);
        let seq = event.seq;
        link.append(event, origin, false);
        seq
    }

    /// The cluster reader's entries of one room, in stream order: each is applied to the
    /// roster (unless this node made it, and applied it then) and shown here.
    pub(super) fn deliver_entry(&mut self, room: &RoomName, entry: log::redis::Entry) {
        let Some(channel) = self.rooms.get_mut(room) else {
            return;
        };
        let Log::Redis(log) = &mut channel.log else {
            return;
        };
        let event = entry.event;
        if !log.advance(&entry.id, event.seq, event.kind.is_message()) {
            return;
        }
        let subject = presence_subject(&event.kind);
        // A sender here gets its own line's number in room order (its read position moves
        // past it), or, with numbered lines, its own line back.
        let sender = match subject {
            Some(_) => None,
            None => entry
                .origin
                .filter(|o| self.hub.get(*o).is_some_and(|m| !m.numbered)),
        };
        if subject.is_none_or(|c| !self.is_mine(c)) {
            self.apply(&event);
            if removed_conn(&event.kind).is_some_and(|c| self.is_mine(c)) {
                self.forget_if_idle(room);
            }
        }
        self.show(&event, subject.or(sender));
        if let Some(sender) = sender
            && event.kind.is_message()
        {
            self.reply_marked(sender, String::new(), Some((event.room, event.seq)));
        }
    }

    /// Another node took over a session of this node (for `by`): it ends as a takeover does
    /// here, with the usual last line and no left line (the rooms see the other node's
    /// `Replaced` entries), and its acknowledged positions go to `by`.
    pub(super) fn replaced_elsewhere(&mut self, conn: ConnId, by: ConnId) {
        let Some(link) = self.link.clone() else {
            return;
        };
        let Some(member) = self.hub.remove(conn) else {
            return;
        };
        self.presence.unregister(conn);
        member.replace(protocol::SIGNED_IN_ELSEWHERE, link.hand_over(by));
    }

    /// More than `unconfirmed` of the member's lines are unconfirmed, or its newest appended
    /// line is not delivered here yet.
    pub(super) fn in_flight(&self, member: &hub::Member, unconfirmed: u32) -> bool {
        member.unconfirmed > unconfirmed
            || member.last_appended.as_ref().is_some_and(|(room, seq)| {
                self.rooms
                    .get(room)
                    .is_some_and(|c| c.log.last_seq() < *seq)
            })
    }
}
