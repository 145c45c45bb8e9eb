//! Where each account is and how far it has read: its rooms besides #lobby and its read
//! position in each. Writes are queued to the history writer (so they commit in the same
//! transaction as the messages around them) and stay visible here until committed, so a login
//! reads them without waiting for the writer; reads come from the store, or from memory with
//! `history = "memory"`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::{HistoryEpoch, Write};
use crate::config::HistoryMode;
use crate::event::{RoomName, Seq};
use crate::protocol::ResumeFrom;
use crate::store::{Store, StoreError};

/// Memberships and read positions queued but not yet committed, so that a login reads its
/// rooms and positions without waiting for the writer (whose queue may be long under load).
#[derive(Default)]
pub(super) struct Pending {
    next_id: u64,
    memberships: HashMap<(i64, RoomName), (bool, u64)>,
    positions: HashMap<(i64, RoomName), ((Seq, HistoryEpoch), u64)>,
}

impl Pending {
    /// Forgets what the writer has committed (everything numbered up to `id`).
    pub(super) fn committed(&mut self, id: u64) {
        self.memberships.retain(|_, (_, at)| *at > id);
        self.positions.retain(|_, (_, at)| *at > id);
    }
}

/// What a member needs at login: its rooms, read positions and each room's newest number.
#[derive(Debug, Default, Clone)]
pub struct Restore {
    /// Rooms besides #lobby, sorted, with the newest stored message number of each.
    pub rooms: Vec<(RoomName, Seq)>,
    /// Read positions by room, each with the epoch it was read in; empty at a user's first
    /// login.
    pub positions: HashMap<RoomName, (Seq, HistoryEpoch)>,
    /// The rooms' forget count when this was read (set by the rooms when they log a member
    /// in): stored numbers of rooms forgotten since may be stale.
    pub epoch: u64,
    /// What the client's `/resume` said (set by the rooms too): `Some` turns on numbered
    /// lines, and the catch-up of each room it names starts after its number.
    pub resume: Option<ResumeFrom>,
}

impl Restore {
    /// The stored read position in `room`, whose newest message is `newest`, in the history
    /// epoch `now`. One read in an older epoch (a cluster's Redis lost its data since) counts
    /// as the start of the room's new history, as does one past `newest` (from before the
    /// numbers started again, without an epoch to tell: `history = "memory"` after a restart):
    /// everything there now is new to the member.
    pub fn stored(&self, room: &RoomName, newest: Seq, now: &HistoryEpoch) -> Option<Seq> {
        let (at, epoch) = self.positions.get(room)?;
        Some(if *at > newest || !epoch.counts_in(now) {
            0
        } else {
            *at
        })
    }

    /// Folds in a read position that another session of the member reached (`epoch` as
    /// [`HistoryEpoch::merge`] takes it).
    pub fn merge_position(&mut self, room: RoomName, seq: Seq, epoch: &HistoryEpoch) {
        let at = self.positions.entry(room).or_default();
        HistoryEpoch::merge(at, seq, epoch);
    }

    /// Where the catch-up of `room` starts for a client that resumes: the number it showed
    /// last, if it named the room and the room has reached that number (a larger one belongs
    /// to numbers the room no longer has, e.g. `history = "memory"` before a restart).
    pub fn resumed(&self, room: &RoomName, newest: Seq) -> Option<Seq> {
        let (_, at) = self.resume.as_ref()?.iter().find(|(r, _)| r == room)?;
        (*at <= newest).then_some(*at)
    }
}

/// The memberships and read positions of every account (keyed by the account's row id).
pub struct Memberships {
    mode: HistoryMode,
    /// None without a database (unit tests): memberships are not kept.
    store: Option<Store>,
    writes: Option<mpsc::UnboundedSender<Write>>,
    /// Writes not yet committed, shared with the writer.
    pending: Arc<Mutex<Pending>>,
    /// Read positions in `memory` mode.
    positions: Mutex<HashMap<(i64, RoomName), Seq>>,
}

impl Memberships {
    pub(super) fn new(
        mode: HistoryMode,
        store: Option<Store>,
        writes: Option<mpsc::UnboundedSender<Write>>,
        pending: Arc<Mutex<Pending>>,
    ) -> Self {
        Memberships {
            mode,
            store,
            writes,
            pending,
            positions: Mutex::default(),
        }
    }

    fn lock_pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `user` joined (`true`) or parted (`false`) `room`.
    pub fn set(&self, user: i64, room: &RoomName, member: bool) {
        let Some(tx) = &self.writes else { return };
        // Numbered and sent under the lock, so the channel's order is the numbers' order.
        let mut pending = self.lock_pending();
        pending.next_id += 1;
        let id = pending.next_id;
        pending
            .memberships
            .insert((user, room.clone()), (member, id));
        // Fails only after close, when nothing is relayed any more.
        let _ = tx.send(Write::Membership(user, room.clone(), member, id));
    }

    /// Records read positions read in history epoch `epoch`; within one epoch they only ever
    /// move forward.
    pub fn save_positions(&self, user: i64, positions: Vec<(RoomName, Seq)>, epoch: HistoryEpoch) {
        if positions.is_empty() {
            return;
        }
        match self.mode {
            // Read positions into the shared logs are kept in the store too.
            HistoryMode::Sqlite | HistoryMode::Redis => {
                let Some(tx) = &self.writes else { return };
                let mut pending = self.lock_pending();
                pending.next_id += 1;
                let id = pending.next_id;
                for (room, seq) in &positions {
                    let at = pending
                        .positions
                        .entry((user, room.clone()))
                        .or_insert(((0, epoch.clone()), id));
                    HistoryEpoch::merge(&mut at.0, *seq, &epoch);
                    at.1 = id;
                }
                let _ = tx.send(Write::Positions(user, positions, epoch, id));
            }
            HistoryMode::Memory => {
                let mut map = self.positions.lock().unwrap_or_else(|e| e.into_inner());
                for (room, seq) in positions {
                    let at = map.entry((user, room)).or_default();
                    *at = (*at).max(seq);
                }
            }
            HistoryMode::Off => {}
        }
    }

    /// A user's rooms and read positions: the database's, updated by what is still queued (so
    /// a part or a position saved by the previous session is seen without waiting), with each
    /// room's newest stored number.
    pub async fn restore(&self, user: i64) -> Result<Restore, StoreError> {
        let Some(store) = &self.store else {
            return Ok(Restore::default());
        };
        // Taken before reading the database: an entry the writer clears meanwhile is in the
        // database by then.
        let (queued_rooms, queued_positions) = {
            let pending = self.lock_pending();
            let mine = |(u, _): &(i64, RoomName)| *u == user;
            let rooms: Vec<(RoomName, bool)> = pending
                .memberships
                .iter()
                .filter(|(k, _)| mine(k))
                .map(|((_, r), (m, _))| (r.clone(), *m))
                .collect();
            let positions: Vec<(RoomName, (Seq, HistoryEpoch))> = pending
                .positions
                .iter()
                .filter(|(k, _)| mine(k))
                .map(|((_, r), (at, _))| (r.clone(), at.clone()))
                .collect();
            (rooms, positions)
        };
        let mut names = store.memberships(user).await?;
        for (room, member) in queued_rooms {
            names.retain(|r| *r != room);
            if member {
                names.push(room);
            }
        }
        names.sort();
        let mut rooms = Vec::new();
        for room in names {
            let seq = match self.mode {
                HistoryMode::Sqlite => store.room_last_seq(&room).await?,
                // A shared room's number comes from its stream, read by the rooms.
                HistoryMode::Memory | HistoryMode::Off | HistoryMode::Redis => 0,
            };
            rooms.push((room, seq));
        }
        let positions = match self.mode {
            HistoryMode::Sqlite | HistoryMode::Redis => {
                let mut map: HashMap<RoomName, (Seq, HistoryEpoch)> = store
                    .read_positions(user)
                    .await?
                    .into_iter()
                    .map(|(room, seq, epoch)| (room, (seq, epoch)))
                    .collect();
                // Queued after what the store holds: newer.
                for (room, (seq, epoch)) in queued_positions {
                    HistoryEpoch::merge(map.entry(room).or_default(), seq, &epoch);
                }
                map
            }
            HistoryMode::Memory => {
                let map = self.positions.lock().unwrap_or_else(|e| e.into_inner());
                map.iter()
                    .filter(|((u, _), _)| *u == user)
                    .map(|((_, room), seq)| (room.clone(), (*seq, HistoryEpoch::none())))
                    .collect()
            }
            HistoryMode::Off => HashMap::new(),
        };
        Ok(Restore {
            rooms,
            positions,
            ..Restore::default()
        })
    }
}
