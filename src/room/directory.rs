//! Who is online on this node: the one registry of logged-in connections (name, source, login
//! time, the account stamp and certificate they logged in with), kept by the rooms in the same
//! step as a join, a takeover or a removal, so `admin who`, `admin kick` and the account
//! watch always see the session the rooms hold. It has its own short lock (taken inside the
//! rooms' lock, never the other way round), so listing or checking every session does not
//! hold up fan-out.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::MemberId;
use crate::store::AccountStamp;

/// What the directory keeps of a connection that logs in.
#[derive(Debug, Clone)]
pub struct Login {
    /// Source address.
    pub peer: SocketAddr,
    /// The account stamp at login (its row id keys memberships and read positions).
    pub stamp: AccountStamp,
    /// The client certificate the session logged in with, if it did.
    pub certificate: Option<Arc<str>>,
    /// The session speaks IRC: it renders lines from their meaning, and its own messages
    /// come back to it (echo-message) when `echo` is set.
    pub irc: Option<IrcLogin>,
    /// The protocol it speaks.
    pub protocol: Protocol,
}

pub use crate::event::Protocol;

/// What the rooms keep of an IRC session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrcLogin {
    /// The client enabled echo-message.
    pub echo: bool,
    /// How others see it on IRC.
    pub identity: IrcIdentity,
}

/// An IRC session as WHO, WHOIS and private senders see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IrcIdentity {
    /// The user part of its mask (from `USER`).
    pub user: String,
    /// Its real name (from `USER`).
    pub realname: String,
    /// Its away message, while it is away.
    pub away: Option<String>,
}

impl Login {
    /// A login of account `user` from no particular address, without a certificate (for
    /// tools that drive the rooms directly).
    pub fn new(user: i64) -> Self {
        Login {
            peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            stamp: AccountStamp {
                id: user,
                generation: 0,
                disabled: false,
            },
            certificate: None,
            irc: None,
            protocol: Protocol::Line,
        }
    }
}

/// One logged-in session.
#[derive(Clone)]
pub struct OnlineSession {
    /// Name as created.
    pub name: Arc<str>,
    /// Source address.
    pub peer: SocketAddr,
    /// Login time.
    pub since: SystemTime,
    /// The account stamp at login.
    pub stamp: AccountStamp,
    /// Bytes waiting in the member's outbound queue (shared with the room).
    pub queued: Arc<AtomicUsize>,
    /// The client certificate the session logged in with, if it did: unbinding it closes
    /// the session.
    pub certificate: Option<Arc<str>>,
    /// The protocol it speaks.
    pub protocol: Protocol,
}

/// A row of `tlschat admin who`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// Member id.
    pub id: MemberId,
    /// Name as created.
    pub name: String,
    /// Source address.
    pub peer: SocketAddr,
    /// Login time.
    pub since: SystemTime,
    /// Bytes queued for the member.
    pub queued_bytes: usize,
    /// The account's row id.
    pub account: i64,
    /// The protocol it speaks.
    pub protocol: Protocol,
}

/// Every logged-in session with the account stamp it logged in with: one per name, since a
/// new login of a name replaces the old session (takeover).
#[derive(Default)]
pub struct Directory {
    online: Mutex<Online>,
}

#[derive(Default)]
struct Online {
    by_id: HashMap<MemberId, OnlineSession>,
    /// Lower-case name → the live session of that name.
    by_name: HashMap<String, MemberId>,
}

impl Online {
    fn remove(&mut self, id: MemberId) -> Option<OnlineSession> {
        let session = self.by_id.remove(&id)?;
        let key = session.name.to_ascii_lowercase();
        if self.by_name.get(&key) == Some(&id) {
            self.by_name.remove(&key);
        }
        Some(session)
    }
}

impl Directory {
    /// Remembers a member that logged in, replacing an older session of the same name (which
    /// the rooms close in the same step), so `admin who` and `admin kick` see only the live
    /// one.
    pub(super) fn register(&self, id: MemberId, session: OnlineSession) {
        let mut online = self.lock();
        let key = session.name.to_ascii_lowercase();
        if let Some(old) = online.by_name.insert(key, id) {
            online.by_id.remove(&old);
        }
        online.by_id.insert(id, session);
    }

    /// Every session, sorted by name (case-insensitively).
    pub fn sessions(&self) -> Vec<SessionSummary> {
        let mut out: Vec<SessionSummary> = self
            .lock()
            .by_id
            .iter()
            .map(|(id, s)| SessionSummary {
                id: *id,
                name: s.name.to_string(),
                peer: s.peer,
                since: s.since,
                queued_bytes: s.queued.load(Ordering::Relaxed),
                account: s.stamp.id,
                protocol: s.protocol,
            })
            .collect();
        out.sort_by_key(|s| (s.name.to_ascii_lowercase(), s.id));
        out
    }

    /// The member id of the session of `name` (any letter case), if online.
    pub fn find(&self, name: &str) -> Option<MemberId> {
        self.lock().by_name.get(&name.to_ascii_lowercase()).copied()
    }

    /// Members online.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// True when nobody is online.
    pub fn is_empty(&self) -> bool {
        self.lock().by_id.is_empty()
    }

    /// Forgets a member that left or was removed.
    pub(super) fn unregister(&self, id: MemberId) {
        self.lock().remove(id);
    }

    /// Members whose account no longer has the stamp they logged in with, or whose login
    /// certificate is no longer bound to their account (`bindings`: fingerprint, account id).
    pub fn stale(&self, current: &[AccountStamp], bindings: &[(String, i64)]) -> Vec<MemberId> {
        let current: HashSet<&AccountStamp> = current.iter().collect();
        let bound: HashSet<(&str, i64)> = bindings.iter().map(|(f, u)| (f.as_str(), *u)).collect();
        self.lock()
            .by_id
            .iter()
            .filter(|(_, s)| {
                let unbound = s
                    .certificate
                    .as_deref()
                    .is_some_and(|fp| !bound.contains(&(fp, s.stamp.id)));
                !current.contains(&s.stamp) || unbound
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// True when some session logged in by certificate (only then are bindings read).
    pub fn has_certificate_logins(&self) -> bool {
        self.lock().by_id.values().any(|s| s.certificate.is_some())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Online> {
        self.online.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::ConnId;

    fn c(local: u64) -> ConnId {
        ConnId { node: 0, local }
    }

    fn stamp(id: i64, generation: i64, disabled: bool) -> AccountStamp {
        AccountStamp {
            id,
            generation,
            disabled,
        }
    }

    fn online(name: &str, stamp: AccountStamp) -> OnlineSession {
        OnlineSession {
            name: name.into(),
            peer: "127.0.0.1:1".parse().unwrap(),
            since: SystemTime::UNIX_EPOCH,
            stamp,
            queued: Arc::default(),
            certificate: None,
            protocol: Protocol::Line,
        }
    }

    #[test]
    fn sessions_are_listed_by_name_and_found_case_insensitively() {
        let w = Directory::default();
        w.register(c(7), online("bob", stamp(2, 0, false)));
        w.register(c(3), online("Alice", stamp(1, 0, false)));
        let names: Vec<String> = w.sessions().into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec!["Alice", "bob"]);
        assert_eq!(w.find("alice"), Some(c(3)));
        assert_eq!(w.find("carol"), None);
    }

    #[test]
    fn a_new_session_of_a_name_replaces_the_old_one() {
        let w = Directory::default();
        w.register(c(1), online("alice", stamp(1, 0, false)));
        w.register(c(2), online("Alice", stamp(1, 0, false)));
        assert_eq!(w.len(), 1);
        assert_eq!(w.find("ALICE"), Some(c(2)));
        w.unregister(c(1));
        assert_eq!(w.find("alice"), Some(c(2)));
        w.unregister(c(2));
        assert!(w.is_empty());
        assert_eq!(w.find("alice"), None);
    }

    #[test]
    fn members_with_changed_or_missing_accounts_are_stale() {
        let w = Directory::default();
        w.register(c(1), online("a", stamp(10, 0, false)));
        w.register(c(2), online("b", stamp(20, 3, false)));
        w.register(c(3), online("c", stamp(30, 0, false)));
        w.register(c(4), online("d", stamp(40, 0, false)));
        let current = [stamp(10, 0, false), stamp(20, 4, false), stamp(40, 1, true)];
        let mut stale = w.stale(&current, &[]);
        stale.sort_unstable();
        assert_eq!(stale, vec![c(2), c(3), c(4)]);
        w.unregister(c(2));
        assert!(!w.stale(&current, &[]).contains(&c(2)));
    }

    #[test]
    fn a_session_whose_login_certificate_is_unbound_is_stale() {
        let w = Directory::default();
        let mut by_cert = online("alice", stamp(1, 0, false));
        by_cert.certificate = Some("AA".into());
        w.register(c(1), by_cert);
        w.register(c(2), online("bob", stamp(2, 0, false)));
        let current = [stamp(1, 0, false), stamp(2, 0, false)];
        assert!(w.stale(&current, &[("AA".into(), 1)]).is_empty());
        // Bound to another account now (deleted and re-added elsewhere): not this login's.
        assert_eq!(w.stale(&current, &[("AA".into(), 2)]), vec![c(1)]);
        assert_eq!(w.stale(&current, &[]), vec![c(1)]);
        assert!(w.has_certificate_logins());
    }
}
