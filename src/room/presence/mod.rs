//! Who is online, whatever keeps it: [`Presence`] is the registry the rooms update in the same
//! step as every join, takeover and removal, and that `admin who`, `admin kick` and the
//! account watch read. Each backend is a variant: this node's [`Directory`] now; a cluster's
//! (sessions of every node in Redis, with node heartbeats) is a second variant in its own
//! file, providing the same methods.

pub mod inbox;
pub mod nodes;
pub mod redis;

use super::MemberId;
use super::directory::{Directory, OnlineSession, SessionSummary};
use crate::store::AccountStamp;

/// The registry of logged-in sessions.
pub enum Presence {
    /// Kept by this node.
    Local(Directory),
}

impl Default for Presence {
    fn default() -> Self {
        Presence::Local(Directory::default())
    }
}

impl Presence {
    /// Remembers a session that logged in, replacing an older one of the same name.
    pub(super) fn register(&self, id: MemberId, session: OnlineSession) {
        match self {
            Presence::Local(directory) => directory.register(id, session),
        }
    }

    /// Forgets a session that left or was removed.
    pub(super) fn unregister(&self, id: MemberId) {
        match self {
            Presence::Local(directory) => directory.unregister(id),
        }
    }

    /// Every session, sorted by name (case-insensitively).
    pub fn sessions(&self) -> Vec<SessionSummary> {
        match self {
            Presence::Local(directory) => directory.sessions(),
        }
    }

    /// The session of `name` (any letter case), if online.
    pub fn find(&self, name: &str) -> Option<MemberId> {
        match self {
            Presence::Local(directory) => directory.find(name),
        }
    }

    /// Sessions online.
    pub fn len(&self) -> usize {
        match self {
            Presence::Local(directory) => directory.len(),
        }
    }

    /// True when nobody is online.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sessions whose account changed since they logged in, or whose login certificate is no
    /// longer bound to their account (`bindings`: fingerprint, account id).
    pub fn stale(&self, current: &[AccountStamp], bindings: &[(String, i64)]) -> Vec<MemberId> {
        match self {
            Presence::Local(directory) => directory.stale(current, bindings),
        }
    }

    /// True when some session logged in by certificate (only then are bindings read).
    pub fn has_certificate_logins(&self) -> bool {
        match self {
            Presence::Local(directory) => directory.has_certificate_logins(),
        }
    }
}
