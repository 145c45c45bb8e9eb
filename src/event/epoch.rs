//! Which numbering a read position belongs to. One node's history has one numbering, for
//! ever (no epoch). A cluster's rooms are numbered in Redis, and a Redis that lost its data
//! numbers them again from 1 under a new epoch (#lobby's): a position read before counts as
//! the start of the new history, never as a number in it.

use std::sync::Arc;

use super::{RoomName, Seq};

/// The epoch a read position was read in; none on one node (and for positions stored before
/// epochs were kept, which are then taken as they are).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HistoryEpoch(Option<Arc<str>>);

impl HistoryEpoch {
    /// No epoch: one node's numbering, or not known.
    pub fn none() -> Self {
        HistoryEpoch(None)
    }

    /// The epoch as stored (`""` for none).
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }

    /// A position read in `self` is read in `now`'s numbering too (or has no epoch to tell).
    pub fn counts_in(&self, now: &HistoryEpoch) -> bool {
        self.0.is_none() || self == now
    }

    /// Folds a position into `at`: within one epoch positions only move forward; one of
    /// another epoch replaces it (numbers of two epochs do not compare, and the later write
    /// is the newer epoch's).
    pub fn merge(at: &mut (Seq, HistoryEpoch), seq: Seq, epoch: &HistoryEpoch) {
        if at.1 == *epoch {
            at.0 = at.0.max(seq);
        } else {
            *at = (seq, epoch.clone());
        }
    }

    /// `rows` with one row per user and room, merged in order (see [`HistoryEpoch::merge`]).
    pub fn merge_rows(
        rows: &[(i64, RoomName, Seq, HistoryEpoch)],
    ) -> Vec<(i64, RoomName, Seq, HistoryEpoch)> {
        let mut merged: Vec<(i64, RoomName, Seq, HistoryEpoch)> = Vec::with_capacity(rows.len());
        let mut index = std::collections::HashMap::new();
        for (user, room, seq, epoch) in rows {
            match index.get(&(*user, room)) {
                Some(&i) => {
                    let row: &mut (i64, RoomName, Seq, HistoryEpoch) = &mut merged[i];
                    let mut at = (row.2, row.3.clone());
                    HistoryEpoch::merge(&mut at, *seq, epoch);
                    (row.2, row.3) = at;
                }
                None => {
                    index.insert((*user, room), merged.len());
                    merged.push((*user, room.clone(), *seq, epoch.clone()));
                }
            }
        }
        merged
    }
}

impl From<&str> for HistoryEpoch {
    fn from(epoch: &str) -> Self {
        HistoryEpoch((!epoch.is_empty()).then(|| Arc::from(epoch)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_one_epoch_move_forward_and_another_epoch_replaces_them() {
        let (e1, e2) = (HistoryEpoch::from("e1"), HistoryEpoch::from("e2"));
        let mut at = (40, e1.clone());
        HistoryEpoch::merge(&mut at, 30, &e1);
        assert_eq!(at, (40, e1.clone()));
        HistoryEpoch::merge(&mut at, 3, &e2);
        assert_eq!(at, (3, e2.clone()));
    }

    #[test]
    fn a_position_without_an_epoch_counts_in_any() {
        let e1 = HistoryEpoch::from("e1");
        assert!(HistoryEpoch::none().counts_in(&e1));
        assert!(e1.counts_in(&e1));
        assert!(!e1.counts_in(&HistoryEpoch::from("e2")));
        assert!(!e1.counts_in(&HistoryEpoch::none()));
        assert_eq!(HistoryEpoch::from(""), HistoryEpoch::none());
    }

    #[test]
    fn rows_merge_to_one_per_user_and_room_in_order() {
        let (e1, e2) = (HistoryEpoch::from("e1"), HistoryEpoch::from("e2"));
        let dev = RoomName::parse("#dev").unwrap();
        let merged = HistoryEpoch::merge_rows(&[
            (1, dev.clone(), 50, e1.clone()),
            (2, dev.clone(), 7, e1.clone()),
            (1, dev.clone(), 60, e1.clone()),
            (1, dev.clone(), 2, e2.clone()),
        ]);
        assert_eq!(merged, [(1, dev.clone(), 2, e2), (2, dev, 7, e1)]);
    }
}
