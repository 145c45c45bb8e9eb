//! Brute-force throttling: failed logins counted per username and per source over sliding
//! windows.
//!
//! Trade-off: a username with too many recent failures is throttled only for the sources that
//! took part in those failures. A guesser is slowed down, while the real user, coming from
//! another address, still has their password checked and can log in. A botnet therefore gets
//! one checked guess per address per window once a name is under attack; the per-source limit
//! and argon2's cost bound the rest. Unknown and invalid names are counted like known ones.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Limits;
use crate::server::source_key;

/// Longest stored username key; longer (invalid) names are truncated, which only merges them.
const MAX_KEY_BYTES: usize = 64;
/// Distinct names or sources tracked at once; bounds memory under a flood of fresh names.
const MAX_TRACKED_KEYS: usize = 100_000;
/// Longest delay for a throttled attempt.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// Counts failures and decides whether an attempt may have its password checked.
pub struct Throttle {
    state: Mutex<State>,
    user_limit: usize,
    user_window: Duration,
    ip_limit: usize,
    ip_window: Duration,
    base_delay: Duration,
}

#[derive(Default)]
struct State {
    by_user: HashMap<String, VecDeque<(Instant, IpAddr)>>,
    by_source: HashMap<IpAddr, VecDeque<Instant>>,
}

/// The verdict for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Check the password.
    Check,
    /// Do not check; answer "Login failed" after this delay.
    Throttled(Duration),
}

impl Throttle {
    /// Thresholds and windows from the limits.
    pub fn new(limits: &Limits) -> Self {
        Throttle {
            state: Mutex::new(State::default()),
            user_limit: limits.user_failures as usize,
            user_window: limits.user_failure_window,
            ip_limit: limits.ip_failures as usize,
            ip_window: limits.ip_failure_window,
            base_delay: limits.throttle_delay,
        }
    }

    /// Whether an attempt for `name` from `ip` may be checked, as of `now`.
    pub fn check(&self, name: &str, ip: IpAddr, now: Instant) -> Verdict {
        let key = user_key(name);
        let source = source_key(ip);
        let mut state = self.lock();
        let mut excess = 0;
        let mut throttled = false;
        if let Some(fails) = state.by_source.get_mut(&source) {
            prune(fails, now, self.ip_window, |t| *t);
            if fails.len() >= self.ip_limit {
                throttled = true;
                excess = excess.max(fails.len() - self.ip_limit);
            }
        }
        if let Some(fails) = state.by_user.get_mut(&key) {
            prune(fails, now, self.user_window, |(t, _)| *t);
            if fails.len() >= self.user_limit && fails.iter().any(|(_, s)| *s == source) {
                throttled = true;
                excess = excess.max(fails.len() - self.user_limit);
            }
        }
        if !throttled {
            return Verdict::Check;
        }
        let factor = 1u32 << excess.min(16) as u32;
        Verdict::Throttled(self.base_delay.saturating_mul(factor).min(MAX_DELAY))
    }

    /// Records a failed (or throttled) attempt.
    pub fn record_failure(&self, name: &str, ip: IpAddr, now: Instant) {
        let key = user_key(name);
        let source = source_key(ip);
        let mut state = self.lock();
        if state.by_user.len() >= MAX_TRACKED_KEYS || state.by_source.len() >= MAX_TRACKED_KEYS {
            state.prune_all(now, self.user_window, self.ip_window);
        }
        let user_cap = self.user_limit * 8;
        if state.by_user.len() < MAX_TRACKED_KEYS || state.by_user.contains_key(&key) {
            push_capped(
                state.by_user.entry(key).or_default(),
                (now, source),
                user_cap,
            );
        }
        let ip_cap = self.ip_limit * 8;
        if state.by_source.len() < MAX_TRACKED_KEYS || state.by_source.contains_key(&source) {
            push_capped(state.by_source.entry(source).or_default(), now, ip_cap);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn prune_all(&mut self, now: Instant, user_window: Duration, ip_window: Duration) {
        self.by_user.retain(|_, v| {
            prune(v, now, user_window, |(t, _)| *t);
            !v.is_empty()
        });
        self.by_source.retain(|_, v| {
            prune(v, now, ip_window, |t| *t);
            !v.is_empty()
        });
    }
}

fn prune<T>(q: &mut VecDeque<T>, now: Instant, window: Duration, at: impl Fn(&T) -> Instant) {
    while q
        .front()
        .is_some_and(|e| now.saturating_duration_since(at(e)) >= window)
    {
        q.pop_front();
    }
}

fn push_capped<T>(q: &mut VecDeque<T>, item: T, cap: usize) {
    if q.len() >= cap {
        q.pop_front();
    }
    q.push_back(item);
}

fn user_key(name: &str) -> String {
    let mut end = name.len().min(MAX_KEY_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(&Limits {
            user_failures: 5,
            user_failure_window: Duration::from_secs(900),
            ip_failures: 20,
            ip_failure_window: Duration::from_secs(600),
            throttle_delay: Duration::from_secs(1),
            ..Limits::default()
        })
    }

    const A: &str = "10.0.0.1";
    const B: &str = "10.0.0.2";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sixth_attempt_for_a_name_is_throttled_with_growing_delay() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..5 {
            assert_eq!(t.check("Alice", ip(A), now), Verdict::Check);
            t.record_failure("Alice", ip(A), now);
        }
        assert_eq!(
            t.check("alice", ip(A), now),
            Verdict::Throttled(Duration::from_secs(1))
        );
        t.record_failure("alice", ip(A), now);
        assert_eq!(
            t.check("ALICE", ip(A), now),
            Verdict::Throttled(Duration::from_secs(2))
        );
    }

    #[test]
    fn another_source_still_gets_its_password_checked() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..6 {
            t.record_failure("alice", ip(A), now);
        }
        assert_eq!(t.check("alice", ip(B), now), Verdict::Check);
    }

    #[test]
    fn per_source_limit_covers_every_name() {
        let t = throttle();
        let now = Instant::now();
        for i in 0..20 {
            t.record_failure(&format!("user{i}"), ip(A), now);
        }
        assert!(matches!(
            t.check("fresh", ip(A), now),
            Verdict::Throttled(_)
        ));
        assert_eq!(t.check("fresh", ip(B), now), Verdict::Check);
    }

    #[test]
    fn failures_expire_after_the_window() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..5 {
            t.record_failure("bob", ip(A), now);
        }
        assert_ne!(t.check("bob", ip(A), now), Verdict::Check);
        let later = now + Duration::from_secs(901);
        assert_eq!(t.check("bob", ip(A), later), Verdict::Check);
    }
}
