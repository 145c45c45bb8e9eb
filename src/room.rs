//! Membership and fan-out for the one chat room.
//!
//! [`Room`] is the interface sessions use; [`LocalRoom`] is the in-memory implementation. A
//! later multi-node room (nodes sharing one ordered event log) implements the same trait.
//!
//! Ordering: every room event is rendered once and pushed into each member's queue while the
//! state lock is held, so all members see events in the lock's order. The lock is a
//! `std::sync::Mutex`, never held across an `.await` (there is no async code here).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::protocol;
use crate::username::Username;

/// Identifies one logged-in connection (names can be reused by a takeover).
pub type MemberId = u64;

/// A rendered room line, shared by every member it is queued for.
#[derive(Debug, PartialEq, Eq)]
pub struct Line {
    /// The wire text, LF included.
    pub text: String,
    /// When it was rendered and queued, for the delivery-latency metric.
    pub queued_at: Instant,
}

impl Line {
    /// Renders once; the `Arc` is what each member's queue holds.
    pub fn new(text: String) -> Arc<Line> {
        Arc::new(Line {
            text,
            queued_at: Instant::now(),
        })
    }
}

/// An item in a member's outbound queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A rendered line.
    Line(Arc<Line>),
    /// `left` lines of members the room dropped, outside the byte bound (see
    /// [`LocalRoom`]'s eviction rule).
    Presence(Arc<Line>),
    /// A last line; the session writes it and closes. Boxed so that the enum stays two words:
    /// a fat `Arc<str>` here would make every queue slot of every member 50 % larger, which
    /// costs ~25 % of fan-out CPU when queues are deep (measured with benches/run.sh).
    Close(Box<String>),
    /// Evicted for not reading: the session drops what it holds and closes.
    Evicted,
}

/// The room has shut down and takes no new members.
#[derive(Debug, thiserror::Error)]
#[error("the room is closed")]
pub struct RoomClosed;

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
    /// The member's end of its outbound queue.
    pub outbox: Outbox,
}

impl Outbox {
    /// The queued-bytes counter, shared for reporting (`tlschat admin who`).
    pub fn queue_counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.queued)
    }
}

/// The receiving end of a member's byte-bounded queue.
pub struct Outbox {
    rx: UnboundedReceiver<Delivery>,
    queued: Arc<AtomicUsize>,
    removed: CancellationToken,
}

impl Outbox {
    /// Waits for the next delivery; `None` once the room dropped this member without a `Close`.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// Takes a delivery if one is queued.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        self.rx.try_recv().ok()
    }

    /// Reports that `bytes` of taken deliveries have reached the socket.
    pub fn written(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Cancelled whenever the room removes this member (kick, takeover, account change,
    /// shutdown, eviction), after the last delivery is queued: a session blocked in a write
    /// stops it and says goodbye within a bounded time.
    pub fn removed(&self) -> &CancellationToken {
        &self.removed
    }
}

/// The room as sessions see it.
pub trait Room: Send + Sync {
    /// Adds a member; an existing member of the same name (any case) is replaced silently.
    fn join(&self, name: &Username) -> Result<Joined, RoomClosed>;
    /// Removes a member and tells the others; does nothing for a replaced or evicted id.
    fn leave(&self, id: MemberId, reason: Option<&str>);
    /// Relays a chat line to every other member.
    fn say(&self, id: MemberId, text: &str);
    /// Relays an action (`/me`) to every other member.
    fn emote(&self, id: MemberId, text: &str);
    /// Sends a private message and queues the sender's echo (or `! NAME is not online`) in
    /// the sender's own queue, in room order; returns the target's name as created.
    fn whisper(&self, id: MemberId, to: &str, text: &str) -> Result<Arc<str>, NotOnline>;
    /// Queues the `/who` reply in the member's own queue, so it agrees with the joined and
    /// left lines queued before it.
    fn send_who(&self, id: MemberId);
    /// Everyone online, sorted case-insensitively (for `admin` and tests; members get
    /// [`Room::send_who`]).
    fn who(&self) -> Vec<Arc<str>>;
    /// Removes a member with a last line to it and `*** name left` (with the reason, if any)
    /// to the others; false if the member is no longer there.
    fn kick(&self, id: MemberId, line: &str, reason: Option<&str>) -> bool;
    /// Sends `*** [admin] TEXT` to every member, as a room event.
    fn announce(&self, text: &str);
    /// Queues the shutdown notice behind each member's pending lines and closes the room.
    fn shutdown(&self);
}

/// The in-memory room of a single server.
pub struct LocalRoom {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    members: HashMap<MemberId, Member>,
    by_key: HashMap<String, MemberId>,
    next_id: MemberId,
    closed: bool,
    metrics: Arc<Metrics>,
    /// Bytes that may wait in one member's queue.
    limit: usize,
}

struct Member {
    name: Arc<str>,
    key: String,
    tx: UnboundedSender<Delivery>,
    queued: Arc<AtomicUsize>,
    removed: CancellationToken,
}

enum Undeliverable {
    Full,
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
    fn close(&self, line: &str) {
        let _ = self.tx.send(Delivery::Close(Box::new(line.to_owned())));
        self.removed.cancel();
    }

    /// Ends the session of a member that does not read, without anything more to queue.
    fn evict(&self) {
        let _ = self.tx.send(Delivery::Evicted);
        self.removed.cancel();
    }
}

impl LocalRoom {
    /// An empty room whose members may each have `queue_limit_bytes` waiting.
    pub fn new(queue_limit_bytes: usize) -> Self {
        Self::with_metrics(queue_limit_bytes, Arc::default())
    }

    /// Like [`LocalRoom::new`], counting events and deliveries in `metrics`.
    pub fn with_metrics(queue_limit_bytes: usize, metrics: Arc<Metrics>) -> Self {
        LocalRoom {
            state: Mutex::new(State {
                metrics,
                limit: queue_limit_bytes,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Room methods do not panic mid-update; if one ever did, the members' map is still
        // consistent enough to keep serving, which beats taking the whole room down.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn relay(&self, id: MemberId, render: impl FnOnce(&str) -> String) {
        let mut state = self.lock();
        let Some(member) = state.members.get(&id) else {
            return;
        };
        let line = Line::new(render(&member.name));
        state.broadcast(line, Some(id));
    }
}

impl State {
    /// Delivers `line` to every member but `except`, then announces anyone it had to drop.
    ///
    /// Everyone dropped by one event is announced in one presence delivery (their `left`
    /// lines, concatenated and shared), which is queued past the byte bound: a mass eviction
    /// costs each survivor one delivery and can evict nobody else, so the work under the lock
    /// stays proportional to the members, never to evicted × members.
    fn broadcast(&mut self, line: Arc<Line>, except: Option<MemberId>) {
        let limit = self.limit;
        let dropped = self.fan_out(except, |member| member.deliver(&line, limit));
        self.announce_dropped(dropped);
    }

    /// Removes the members that could not take a delivery and tells everyone left, in one
    /// presence delivery per round; a round only repeats for members found gone meanwhile.
    fn announce_dropped(&mut self, mut dropped: Vec<(MemberId, Undeliverable)>) {
        while !dropped.is_empty() {
            let mut text = String::new();
            for (id, why) in dropped.drain(..) {
                if let Some(left) = self.drop_member(id, why) {
                    text.push_str(&left);
                }
            }
            if text.is_empty() {
                return;
            }
            let presence = Line::new(text);
            dropped = self.fan_out(None, |member| member.deliver_presence(&presence));
        }
    }

    /// Offers one room event to every member but `except` and counts it; returns the members
    /// that could not take it.
    fn fan_out(
        &self,
        except: Option<MemberId>,
        send: impl Fn(&Member) -> Result<(), Undeliverable>,
    ) -> Vec<(MemberId, Undeliverable)> {
        let mut dropped = Vec::new();
        let mut delivered = 0;
        for (&id, member) in &self.members {
            if Some(id) == except {
                continue;
            }
            match send(member) {
                Ok(()) => delivered += 1,
                Err(why) => dropped.push((id, why)),
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
    fn reply(&mut self, id: MemberId, text: String) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        if let Err(why) = member.deliver(&Line::new(text), self.limit) {
            self.announce_dropped(vec![(id, why)]);
        }
    }

    /// Removes a member that could not take a delivery; returns the line announcing it.
    fn drop_member(&mut self, id: MemberId, why: Undeliverable) -> Option<String> {
        let limit = self.limit;
        let member = self.remove(id)?;
        let reason = match why {
            Undeliverable::Full => {
                tracing::warn!(user = %member.name, limit_bytes = limit, "slow consumer evicted");
                crate::metrics::inc(&self.metrics.evictions_send_queue);
                member.evict();
                Some(protocol::REASON_SEND_QUEUE)
            }
            Undeliverable::Gone => None,
        };
        Some(protocol::left(&member.name, reason))
    }

    fn remove(&mut self, id: MemberId) -> Option<Member> {
        let member = self.members.remove(&id)?;
        self.by_key.remove(&member.key);
        Some(member)
    }

    fn sorted_names(&self) -> Vec<Arc<str>> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        members.into_iter().map(|m| Arc::clone(&m.name)).collect()
    }
}

impl Room for LocalRoom {
    fn join(&self, name: &Username) -> Result<Joined, RoomClosed> {
        let mut state = self.lock();
        if state.closed {
            return Err(RoomClosed);
        }
        let key = name.key();
        let replaced = match state.by_key.get(&key).copied() {
            Some(old_id) => state.remove(old_id),
            None => None,
        };
        match &replaced {
            Some(old) => old.close(protocol::SIGNED_IN_ELSEWHERE),
            None => {
                let line = Line::new(protocol::joined(name.as_str()));
                state.broadcast(line, None);
            }
        }
        state.next_id += 1;
        let id = state.next_id;
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let removed = CancellationToken::new();
        state.members.insert(
            id,
            Member {
                name: name.as_str().into(),
                key: key.clone(),
                tx,
                queued: Arc::clone(&queued),
                removed: removed.clone(),
            },
        );
        state.by_key.insert(key, id);
        let welcome = protocol::welcome(name.as_str(), &state.sorted_names());
        Ok(Joined {
            id,
            welcome,
            outbox: Outbox {
                rx,
                queued,
                removed,
            },
        })
    }

    fn leave(&self, id: MemberId, reason: Option<&str>) {
        let mut state = self.lock();
        let Some(member) = state.remove(id) else {
            return;
        };
        if !state.closed {
            let line = Line::new(protocol::left(&member.name, reason));
            state.broadcast(line, None);
        }
    }

    fn say(&self, id: MemberId, text: &str) {
        self.relay(id, |name| protocol::chat(name, text));
    }

    fn emote(&self, id: MemberId, text: &str) {
        self.relay(id, |name| protocol::action(name, text));
    }

    fn whisper(&self, id: MemberId, to: &str, text: &str) -> Result<Arc<str>, NotOnline> {
        let mut state = self.lock();
        let Some(from) = state.members.get(&id).map(|m| Arc::clone(&m.name)) else {
            return Err(NotOnline(to.to_owned()));
        };
        let target = state
            .by_key
            .get(&to.to_ascii_lowercase())
            .and_then(|tid| state.members.get(tid).map(|t| (*tid, t)));
        let result = match target {
            Some((target_id, target)) => {
                let line = Line::new(protocol::private_message(&from, text));
                match target.deliver(&line, state.limit) {
                    Ok(()) => Ok(Arc::clone(&target.name)),
                    Err(why) => {
                        state.announce_dropped(vec![(target_id, why)]);
                        Err(NotOnline(to.to_owned()))
                    }
                }
            }
            None => Err(NotOnline(to.to_owned())),
        };
        let reply = match &result {
            Ok(target_name) => protocol::private_echo(target_name, text),
            Err(_) => protocol::not_online(to),
        };
        state.reply(id, reply);
        result
    }

    fn send_who(&self, id: MemberId) {
        let mut state = self.lock();
        let reply = protocol::who(&state.sorted_names());
        state.reply(id, reply);
    }

    fn who(&self) -> Vec<Arc<str>> {
        self.lock().sorted_names()
    }

    fn kick(&self, id: MemberId, line: &str, reason: Option<&str>) -> bool {
        let mut state = self.lock();
        let Some(member) = state.remove(id) else {
            return false;
        };
        member.close(line);
        let left = Line::new(protocol::left(&member.name, reason));
        state.broadcast(left, None);
        true
    }

    fn announce(&self, text: &str) {
        let line = Line::new(protocol::admin_notice(text));
        self.lock().broadcast(line, None);
    }

    fn shutdown(&self) {
        let mut state = self.lock();
        state.closed = true;
        for (_, member) in state.members.drain() {
            member.close(protocol::SHUTTING_DOWN);
        }
        state.by_key.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> Username {
        Username::parse(s).unwrap()
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
                Delivery::Evicted => out.push("EVICTED".to_owned()),
            }
        }
        out
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
        let room = LocalRoom::new(1 << 20);
        let mut bob = room.join(&user("bob")).unwrap();
        let alice = room.join(&user("Alice")).unwrap();
        assert_eq!(alice.welcome, "*** Welcome, Alice! 2 online: Alice, bob\n");
        assert_eq!(drain(&mut bob.outbox), vec!["*** Alice joined"]);
    }

    #[test]
    fn say_reaches_others_but_not_the_sender() {
        let room = LocalRoom::new(1 << 20);
        let mut a = room.join(&user("a")).unwrap();
        let mut b = room.join(&user("b")).unwrap();
        drain(&mut a.outbox);
        room.say(a.id, "hello");
        assert_eq!(drain(&mut b.outbox), vec!["<a> hello"]);
        assert!(drain(&mut a.outbox).is_empty());
    }

    #[test]
    fn takeover_closes_the_old_session_without_presence_flap() {
        let room = LocalRoom::new(1 << 20);
        let mut old = room.join(&user("alice")).unwrap();
        let mut bob = room.join(&user("bob")).unwrap();
        drain(&mut old.outbox);
        let new = room.join(&user("ALICE")).unwrap();
        assert_eq!(
            drain(&mut old.outbox),
            vec![format!(
                "CLOSE {}",
                protocol::SIGNED_IN_ELSEWHERE.trim_end()
            )]
        );
        assert!(drain(&mut bob.outbox).is_empty());
        assert!(new.welcome.contains("2 online: ALICE, bob"));
        room.leave(old.id, None);
        assert!(drain(&mut bob.outbox).is_empty(), "stale leave is ignored");
    }

    /// A room where `slow` never reads, `fast` always does, and `talker` speaks.
    fn three_members(limit: usize) -> (LocalRoom, Joined, Joined, Joined) {
        let room = LocalRoom::new(limit);
        let slow = room.join(&user("slow")).unwrap();
        let mut fast = room.join(&user("fast")).unwrap();
        let talker = room.join(&user("talker")).unwrap();
        drain(&mut fast.outbox);
        (room, slow, fast, talker)
    }

    #[test]
    fn full_queue_evicts_and_others_keep_receiving() {
        // slow holds 34 bytes of join notices; each chat line is 30 bytes.
        let (room, slow, mut fast, talker) = three_members(100);
        room.say(talker.id, "aaaaaaaaaaaaaaaaaaaa");
        room.say(talker.id, "bbbbbbbbbbbbbbbbbbbb");
        assert!(!slow.outbox.removed().is_cancelled());
        drain(&mut fast.outbox);
        room.say(talker.id, "cccccccccccccccccccc");
        assert!(slow.outbox.removed().is_cancelled());
        assert_eq!(room.who().len(), 2);
        assert_eq!(drain(&mut fast.outbox).len(), 2);
        room.say(talker.id, "after");
        assert_eq!(drain(&mut fast.outbox), vec!["<talker> after"]);
    }

    #[test]
    fn eviction_notice_follows_the_event_that_overflowed() {
        let (room, _slow, mut fast, talker) = three_members(100);
        let mut seen = Vec::new();
        for _ in 0..3 {
            room.say(talker.id, "xxxxxxxxxxxxxxxxxxxx");
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

    #[test]
    fn mass_eviction_evicts_no_healthy_member_and_costs_each_survivor_one_delivery() {
        let metrics = Arc::new(Metrics::default());
        // Room for one 40-byte chat line and a little more.
        let line = "x".repeat(29);
        let room = LocalRoom::with_metrics(64, Arc::clone(&metrics));
        let mut talker = room.join(&user("talker")).unwrap();
        let mut stalled: Vec<Joined> = Vec::new();
        let mut healthy: Vec<Joined> = Vec::new();
        for i in 0..200 {
            stalled.push(room.join(&user(&format!("s{i:03}"))).unwrap());
            healthy.push(room.join(&user(&format!("h{i:03}"))).unwrap());
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
        room.say(talker.id, &line);
        drain_all(&mut healthy);
        let before = metrics.deliveries.load(Ordering::Relaxed);
        room.say(talker.id, &line);
        let after = metrics.deliveries.load(Ordering::Relaxed);
        assert!(stalled.iter().all(|s| s.outbox.removed().is_cancelled()));
        assert!(healthy.iter().all(|h| !h.outbox.removed().is_cancelled()));
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
        room.say(talker.id, &line);
        assert!(healthy.iter().all(|h| !h.outbox.removed().is_cancelled()));
    }

    #[test]
    fn dropped_receiver_is_announced_as_left() {
        let room = LocalRoom::new(1 << 20);
        let gone = room.join(&user("gone")).unwrap();
        let b = room.join(&user("b")).unwrap();
        let mut c = room.join(&user("c")).unwrap();
        drain(&mut c.outbox);
        drop(gone);
        room.say(b.id, "x");
        assert_eq!(drain(&mut c.outbox), vec!["<b> x", "*** gone left"]);
        assert_eq!(room.who().len(), 2);
    }

    #[test]
    fn whisper_goes_to_one_member_only() {
        let room = LocalRoom::new(1 << 20);
        let mut a = room.join(&user("a")).unwrap();
        let mut b = room.join(&user("Bob")).unwrap();
        let mut c = room.join(&user("c")).unwrap();
        drain(&mut b.outbox);
        assert_eq!(&*room.whisper(a.id, "bob", "psst").unwrap(), "Bob");
        assert_eq!(drain(&mut b.outbox), vec!["*a* psst"]);
        assert!(drain(&mut c.outbox).is_empty());
        assert!(room.whisper(a.id, "zed", "x").is_err());
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
        let room = LocalRoom::new(1 << 20);
        let mut a = room.join(&user("a")).unwrap();
        let b = room.join(&user("b")).unwrap();
        room.leave(b.id, None);
        let _c = room.join(&user("c")).unwrap();
        room.send_who(a.id);
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
        let room = LocalRoom::new(1 << 20);
        let mut a = room.join(&user("a")).unwrap();
        let mut b = room.join(&user("b")).unwrap();
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
        let room = LocalRoom::new(1 << 20);
        let mut a = room.join(&user("a")).unwrap();
        room.shutdown();
        assert_eq!(
            drain(&mut a.outbox),
            vec![format!("CLOSE {}", protocol::SHUTTING_DOWN.trim_end())]
        );
        assert!(room.join(&user("b")).is_err());
    }
}
