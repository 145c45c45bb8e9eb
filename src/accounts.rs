//! The live effect of account changes: the admin CLI is another process that only writes the
//! database, so the server polls every account's stamp (row id, change counter, disabled) at a
//! short interval and closes the sessions whose account was deleted, disabled or given a new
//! password since they logged in, or whose login certificate was unbound. One small query per
//! interval, whatever the number of members. Who is online is the rooms' directory
//! ([`crate::room::directory`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::protocol;
use crate::room::Rooms;
use crate::store::Store;

/// Polls the store every `interval` until `shutdown`, closing sessions of changed accounts.
pub async fn watch(
    store: Store,
    room: Arc<Rooms>,
    metrics: Arc<Metrics>,
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
        let bindings = if room.presence().has_certificate_logins() {
            match store.certificate_bindings().await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read certificate bindings");
                    continue;
                }
            }
        } else {
            Vec::new()
        };
        for id in room.presence().stale(&stamps, &bindings) {
            if room.kick(id, protocol::ACCOUNT_CHANGED, None) {
                crate::metrics::inc(&metrics.evictions_admin);
                tracing::info!(
                    member = %id,
                    "session closed: account changed by an administrator"
                );
            }
        }
    }
}
