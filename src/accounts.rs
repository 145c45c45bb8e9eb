//! The live effect of account changes: the admin CLI (and, with PostgreSQL, other nodes) only
//! write the database, so the server reads every account's stamp (row id, change counter,
//! disabled) and closes the sessions whose account was deleted, disabled or given a new
//! password since they logged in, or whose login certificate was unbound. On SQLite it polls
//! at a short interval (one small query, whatever the number of members); on PostgreSQL it
//! reads when the database notifies a change, and once a minute in case one was lost. Who is online is the rooms' directory
//! ([`crate::room::directory`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::protocol;
use crate::room::Rooms;
use crate::store::Store;

/// With a change feed the stamps are still read this often, in case a notification was lost.
const FEED_SAFETY_INTERVAL: Duration = Duration::from_secs(60);

/// Checks the store until `shutdown`, closing sessions of changed accounts: when its change
/// feed says so (PostgreSQL), or every `interval` without one (SQLite).
pub async fn watch(
    store: Store,
    room: Arc<Rooms>,
    metrics: Arc<Metrics>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut feed = match store.account_feed().await {
        Ok(feed) => feed,
        Err(e) => {
            tracing::warn!(error = %e, "no account change feed; polling instead");
            None
        }
    };
    let poll = if feed.is_some() {
        FEED_SAFETY_INTERVAL
    } else {
        interval
    };
    // Changes made before the feed listened are only seen by reading.
    let mut due = feed.is_some();
    loop {
        if !due {
            let changed = async {
                match &mut feed {
                    Some(feed) => feed.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = changed => {}
                _ = shutdown.cancelled() => return,
            }
        }
        due = false;
        close_changed(&store, &room, &metrics).await;
    }
}

/// Reads the stamps (and, if anyone logged in by certificate, the bindings) and closes the
/// sessions whose account or certificate changed.
async fn close_changed(store: &Store, room: &Rooms, metrics: &Metrics) {
    let stamps = match store.account_stamps().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read account states");
            return;
        }
    };
    let bindings = if room.presence().has_certificate_logins() {
        match store.certificate_bindings().await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read certificate bindings");
                return;
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
