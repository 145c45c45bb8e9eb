//! Brute-force throttling: failed logins counted per username and per source over sliding
//! windows.
//!
//! What it guarantees, per username and per `user_failure_window` (defaults in brackets):
//! - at most `user_failure_ceiling` [50] passwords are checked and found wrong, however many
//!   sources take part: past the ceiling no source has its password checked for that name;
//! - a source that took part in the name's recent failures gets no further checked guess once
//!   the name has `user_failures` [5];
//! - and per source (IPv6 per /64) and `ip_failure_window`, at most `ip_failures` [20] failed
//!   or throttled attempts, over all names, before everything it sends is throttled.
//!
//! An attempt is counted when its check *starts* (and forgiven if it succeeds or was never
//! made), so concurrent attempts cannot overshoot the ceiling. Trade-offs: below the ceiling
//! the real user logging in from another address still has the password checked and gets in
//! while guessers are slowed down; past it the name is locked for everyone until its oldest
//! failures leave the window, which takes `user_failure_ceiling` checked failures from
//! about that many distinct sources: one source alone can never lock a name. Throttled
//! attempts do not count towards a name's ceiling, only towards their source.
//!
//! Memory is bounded: at most `MAX_TRACKED_KEYS` names and sources each, the least recently
//! used dropped first; each name keeps at most `user_failure_ceiling` entries and each source
//! `ip_failures + MAX_DELAY_DOUBLINGS`. Expired keys are dropped a few at a time on each
//! attempt, never by a scan of the whole table.

mod local;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::Limits;
pub use local::{LocalCounter, MAX_TRACKED_KEYS};

/// The verdict for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Check the password; the attempt is already counted as a failure until
    /// [`FailureCounter::forgive`] is called.
    Check,
    /// Do not check; answer "Login failed" after this delay.
    Throttled(Duration),
}

/// The failure counters, wherever they are kept: in this process, or (in a cluster) shared by
/// every node so that a guesser cannot spread its attempts over them.
pub enum FailureCounter {
    /// In this process.
    Local(LocalCounter),
}

impl FailureCounter {
    /// Counters in this process with the thresholds and windows of `limits`.
    pub fn new(limits: &Limits) -> Self {
        FailureCounter::Local(LocalCounter::new(limits))
    }

    /// Counts an attempt at `name` from `ip` starting `now`; says whether to check it.
    pub fn attempt(&self, name: &str, ip: IpAddr, now: Instant) -> Verdict {
        match self {
            FailureCounter::Local(c) => c.attempt(name, ip, now),
        }
    }

    /// Takes back the attempt of `name` from `ip`: it succeeded, or was never checked.
    pub fn forgive(&self, name: &str, ip: IpAddr) {
        match self {
            FailureCounter::Local(c) => c.forgive(name, ip),
        }
    }
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The unit of per-source limits: IPv4 per address, IPv6 per /64 (the usual size of one
/// site's network), IPv4-mapped IPv6 as IPv4.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}
