//! Live effect of account changes: the admin CLI is another process that only writes the
//! database, so the server polls every account's stamp (row id, change counter, disabled) at a
//! short interval and closes the sessions whose account was deleted, disabled or given a new
//! password since they logged in. One small query per interval, whatever the number of members.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::protocol;
use crate::room::{MemberId, Room};
use crate::store::{AccountStamp, Store};

/// The account stamp each logged-in member had at login.
#[derive(Default)]
pub struct AccountWatch {
    online: Mutex<HashMap<MemberId, AccountStamp>>,
}

impl AccountWatch {
    /// Remembers the stamp a member logged in with.
    pub fn register(&self, id: MemberId, stamp: AccountStamp) {
        self.lock().insert(id, stamp);
    }

    /// Forgets a member that left.
    pub fn unregister(&self, id: MemberId) {
        self.lock().remove(&id);
    }

    /// Members whose account no longer has the stamp they logged in with.
    pub fn stale(&self, current: &[AccountStamp]) -> Vec<MemberId> {
        let current: HashSet<&AccountStamp> = current.iter().collect();
        self.lock()
            .iter()
            .filter(|(_, stamp)| !current.contains(stamp))
            .map(|(id, _)| *id)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MemberId, AccountStamp>> {
        self.online.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Polls the store every `interval` until `shutdown`, closing sessions of changed accounts.
pub async fn watch(
    accounts: Arc<AccountWatch>,
    store: Store,
    room: Arc<dyn Room>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
        let stamps = match store.account_stamps().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read account states");
                continue;
            }
        };
        for id in accounts.stale(&stamps) {
            accounts.unregister(id);
            if room.kick(id, protocol::ACCOUNT_CHANGED) {
                tracing::info!(
                    member = id,
                    "session closed: account changed by an administrator"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(id: i64, generation: i64, disabled: bool) -> AccountStamp {
        AccountStamp {
            id,
            generation,
            disabled,
        }
    }

    #[test]
    fn members_with_changed_or_missing_accounts_are_stale() {
        let w = AccountWatch::default();
        w.register(1, stamp(10, 0, false));
        w.register(2, stamp(20, 3, false));
        w.register(3, stamp(30, 0, false));
        w.register(4, stamp(40, 0, false));
        let current = [stamp(10, 0, false), stamp(20, 4, false), stamp(40, 1, true)];
        let mut stale = w.stale(&current);
        stale.sort_unstable();
        assert_eq!(stale, vec![2, 3, 4]);
        w.unregister(2);
        assert!(!w.stale(&current).contains(&2));
    }
}
