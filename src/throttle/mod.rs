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
pub mod redis;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::Limits;
pub use local::{LocalCounter, MAX_TRACKED_KEYS};

/// Longest stored username key; longer (invalid) names are truncated, which only merges them.
const MAX_KEY_BYTES: usize = 64;
/// Longest delay for a throttled attempt.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// The delay doubles at most this often (1 s × 2^5 already passes 30 s).
const MAX_DELAY_DOUBLINGS: usize = 16;

/// The thresholds and windows every counter applies (from `limits`).
#[derive(Debug, Clone, Copy)]
struct Rules {
    user_limit: usize,
    user_ceiling: usize,
    user_window: Duration,
    ip_limit: usize,
    ip_window: Duration,
    base_delay: Duration,
}

impl Rules {
    fn of(limits: &Limits) -> Self {
        Rules {
            user_limit: limits.user_failures as usize,
            user_ceiling: limits.user_failure_ceiling as usize,
            user_window: limits.user_failure_window,
            ip_limit: limits.ip_failures as usize,
            ip_window: limits.ip_failure_window,
            base_delay: limits.throttle_delay,
        }
    }
}

/// The delay of a throttled attempt: `base`, doubled `doublings` times (at most
/// [`MAX_DELAY_DOUBLINGS`]), at most [`MAX_DELAY`].
fn delay_after(base: Duration, doublings: usize) -> Duration {
    let doublings = doublings.min(MAX_DELAY_DOUBLINGS) as u32;
    base.saturating_mul(1 << doublings).min(MAX_DELAY)
}

/// The key a name's failures are counted under: lower case, at most [`MAX_KEY_BYTES`].
fn user_key(name: &str) -> String {
    let mut end = name.len().min(MAX_KEY_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_lowercase()
}

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
// One per server: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum FailureCounter {
    /// In this process.
    Local(LocalCounter),
    /// In Redis, shared by the nodes of a cluster.
    Redis(redis::RedisCounter),
}

impl FailureCounter {
    /// Counters in this process with the thresholds and windows of `limits`.
    pub fn new(limits: &Limits) -> Self {
        FailureCounter::Local(LocalCounter::new(limits))
    }

    /// Counts an attempt at `name` from `ip` starting `now` (shared counters use the wall
    /// clock); says whether to check it. Shared counters that cannot be reached are an
    /// error: the login is answered busy, never let through unthrottled.
    pub async fn attempt(
        &self,
        name: &str,
        ip: IpAddr,
        now: Instant,
    ) -> Result<Verdict, crate::cluster::RedisUnavailable> {
        match self {
            FailureCounter::Local(c) => Ok(c.attempt(name, ip, now)),
            FailureCounter::Redis(c) => c.attempt(name, ip).await,
        }
    }

    /// Takes back the attempt of `name` from `ip`: it succeeded, or was never checked.
    pub async fn forgive(&self, name: &str, ip: IpAddr) {
        match self {
            FailureCounter::Local(c) => c.forgive(name, ip),
            FailureCounter::Redis(c) => c.forgive(name, ip).await,
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
