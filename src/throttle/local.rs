//! Failure counters kept in this process (one server): sliding windows per name and per
//! source under one short lock, bounded in memory.

use std::collections::VecDeque;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

use super::{MAX_DELAY_DOUBLINGS, Rules, Verdict, delay_after, source_key, user_key};
use crate::config::Limits;

/// Distinct names, and distinct sources, tracked at once; bounds memory under a flood of
/// fresh names or addresses.
pub const MAX_TRACKED_KEYS: usize = 100_000;
/// Expired keys dropped from the least-recently-used end on each attempt.
const PRUNE_PER_ATTEMPT: usize = 2;

/// Counts failures in this process and decides whether an attempt may have its password
/// checked.
pub struct LocalCounter {
    state: Mutex<State>,
    rules: Rules,
    max_keys: usize,
}

struct State {
    /// Per name: when each counted attempt started and from which source.
    by_user: LruCache<String, History<IpAddr>>,
    /// Per source: each counted attempt, and whether it was throttled.
    by_source: LruCache<IpAddr, History<bool>>,
}

impl LocalCounter {
    /// Thresholds and windows from the limits.
    pub fn new(limits: &Limits) -> Self {
        Self::with_capacity(limits, MAX_TRACKED_KEYS)
    }

    /// Like [`Throttle::new`], tracking at most `max_keys` names and sources each.
    pub fn with_capacity(limits: &Limits, max_keys: usize) -> Self {
        LocalCounter {
            state: Mutex::new(State {
                // Unbounded maps trimmed by hand: a bounded one would allocate all of its
                // capacity up front, which an idle server does not need.
                by_user: LruCache::unbounded(),
                by_source: LruCache::unbounded(),
            }),
            rules: Rules::of(limits),
            max_keys,
        }
    }

    /// Decides on an attempt for `name` from `ip` at `now` and counts it: a checked attempt as
    /// a failure (until forgiven), a throttled one against its source.
    pub fn attempt(&self, name: &str, ip: IpAddr, now: Instant) -> Verdict {
        let key = user_key(name);
        let source = source_key(ip);
        let mut state = self.lock();
        state.prune_idle(now, self.rules.user_window, self.rules.ip_window);
        let mut excess = 0;
        let mut throttled = false;
        let mut earlier_throttled = 0;
        if let Some(attempts) = state.by_source.get_mut(&source) {
            expire(attempts, now, self.rules.ip_window);
            if attempts.len() >= self.rules.ip_limit {
                throttled = true;
                excess = attempts.len() - self.rules.ip_limit;
            }
            earlier_throttled = attempts.iter().filter(|(_, t)| *t).count();
        }
        if let Some(fails) = state.by_user.get_mut(&key) {
            expire(fails, now, self.rules.user_window);
            let took_part = || fails.iter().any(|(_, s)| *s == source);
            // The delay grows with this source's own attempts only: other sources' failures
            // on the name (up to the ceiling) must not start a newcomer at the longest delay.
            if fails.len() >= self.rules.user_ceiling
                || (fails.len() >= self.rules.user_limit && took_part())
            {
                throttled = true;
            }
        }
        let source_cap = self.rules.ip_limit + MAX_DELAY_DOUBLINGS;
        let max_keys = self.max_keys;
        push_capped(
            entry(&mut state.by_source, source, max_keys),
            (now, throttled),
            source_cap,
        );
        if throttled {
            let delay = delay_after(self.rules.base_delay, excess + earlier_throttled);
            return Verdict::Throttled(delay);
        }
        let ceiling = self.rules.user_ceiling;
        push_capped(
            entry(&mut state.by_user, key, max_keys),
            (now, source),
            ceiling,
        );
        Verdict::Check
    }

    /// Takes back the count of a checked attempt that succeeded or was never checked.
    pub fn forgive(&self, name: &str, ip: IpAddr) {
        let key = user_key(name);
        let source = source_key(ip);
        let mut state = self.lock();
        if let Some(fails) = state.by_user.peek_mut(&key)
            && let Some(i) = fails.iter().rposition(|(_, s)| *s == source)
        {
            fails.remove(i);
        }
        if let Some(attempts) = state.by_source.peek_mut(&source)
            && let Some(i) = attempts.iter().rposition(|(_, throttled)| !throttled)
        {
            attempts.remove(i);
        }
    }

    /// Names and sources tracked right now.
    pub fn tracked(&self) -> (usize, usize) {
        let state = self.lock();
        (state.by_user.len(), state.by_source.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// Drops a few keys whose newest entry has left its window, oldest-used first: bounded
    /// work per attempt that still empties the tables once an attack is over.
    fn prune_idle(&mut self, now: Instant, user_window: Duration, ip_window: Duration) {
        for _ in 0..PRUNE_PER_ATTEMPT {
            drop_if_idle(&mut self.by_user, now, user_window);
            drop_if_idle(&mut self.by_source, now, ip_window);
        }
    }
}

/// One key's counted attempts, oldest first: when, and a detail (the source for a name,
/// whether it was throttled for a source).
type History<X> = VecDeque<(Instant, X)>;

/// Drops the least recently used key if its newest entry has left the window.
fn drop_if_idle<K: Hash + Eq, X>(
    table: &mut LruCache<K, History<X>>,
    now: Instant,
    window: Duration,
) {
    if let Some((_, history)) = table.peek_lru()
        && history
            .back()
            .is_none_or(|(t, _)| now.saturating_duration_since(*t) >= window)
    {
        table.pop_lru();
    }
}

/// The history of `key`, made room for by dropping the least recently used key when full.
fn entry<K: Hash + Eq, X>(
    table: &mut LruCache<K, History<X>>,
    key: K,
    max_keys: usize,
) -> &mut History<X> {
    if !table.contains(&key) && table.len() >= max_keys {
        table.pop_lru();
    }
    table.get_or_insert_mut(key, VecDeque::new)
}

/// Drops the entries that have left the window.
fn expire<X>(history: &mut History<X>, now: Instant, window: Duration) {
    while history
        .front()
        .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= window)
    {
        history.pop_front();
    }
}

fn push_capped<T>(q: &mut VecDeque<T>, item: T, cap: usize) {
    if q.len() >= cap {
        q.pop_front();
    }
    q.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            user_failures: 5,
            user_failure_ceiling: 50,
            user_failure_window: Duration::from_secs(900),
            ip_failures: 20,
            ip_failure_window: Duration::from_secs(600),
            throttle_delay: Duration::from_secs(1),
            ..Limits::default()
        }
    }

    fn throttle() -> LocalCounter {
        LocalCounter::new(&limits())
    }

    const A: &str = "10.0.0.1";
    const B: &str = "10.0.0.2";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nth_source(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i))
    }

    #[test]
    fn sixth_attempt_for_a_name_is_throttled_with_growing_delay() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..5 {
            assert_eq!(t.attempt("Alice", ip(A), now), Verdict::Check);
        }
        assert_eq!(
            t.attempt("alice", ip(A), now),
            Verdict::Throttled(Duration::from_secs(1))
        );
        assert_eq!(
            t.attempt("ALICE", ip(A), now),
            Verdict::Throttled(Duration::from_secs(2))
        );
    }

    #[test]
    fn another_source_still_gets_its_password_checked() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..6 {
            t.attempt("alice", ip(A), now);
        }
        assert_eq!(t.attempt("alice", ip(B), now), Verdict::Check);
    }

    #[test]
    fn forgiven_attempts_do_not_count() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(t.attempt("alice", ip(A), now), Verdict::Check);
            t.forgive("alice", ip(A));
        }
    }

    #[test]
    fn per_source_limit_covers_every_name() {
        let t = throttle();
        let now = Instant::now();
        for i in 0..20 {
            assert_eq!(t.attempt(&format!("user{i}"), ip(A), now), Verdict::Check);
        }
        assert!(matches!(
            t.attempt("fresh", ip(A), now),
            Verdict::Throttled(_)
        ));
        assert_eq!(t.attempt("fresh", ip(B), now), Verdict::Check);
    }

    #[test]
    fn failures_expire_after_the_window() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..5 {
            t.attempt("bob", ip(A), now);
        }
        assert_ne!(t.attempt("bob", ip(A), now), Verdict::Check);
        let later = now + Duration::from_secs(901);
        assert_eq!(t.attempt("bob", ip(A), later), Verdict::Check);
    }

    #[test]
    fn rotating_sources_get_at_most_the_ceiling_of_checked_guesses_per_window() {
        let t = throttle();
        let start = Instant::now();
        let mut checked = 0;
        // 100 sources take turns, ten rounds each, all within one window.
        for round in 0..10u32 {
            for i in 0..100u32 {
                let at = start + Duration::from_millis(u64::from(round * 100 + i));
                if t.attempt("alice", nth_source(i), at) == Verdict::Check {
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 50, "checked guesses in one window");
        // A fresh source is throttled too once the ceiling is reached.
        assert!(matches!(
            t.attempt("alice", ip("192.0.2.1"), start + Duration::from_secs(1)),
            Verdict::Throttled(_)
        ));
        // Other names are unaffected.
        assert_eq!(
            t.attempt("bob", ip("192.0.2.1"), start + Duration::from_secs(1)),
            Verdict::Check
        );
    }

    #[test]
    fn a_new_source_past_the_ceiling_starts_at_the_first_delay() {
        let t = throttle();
        let now = Instant::now();
        for i in 0..50 {
            assert_eq!(t.attempt("alice", nth_source(i), now), Verdict::Check);
        }
        let newcomer = ip("192.0.2.7");
        assert_eq!(
            t.attempt("alice", newcomer, now),
            Verdict::Throttled(Duration::from_secs(1))
        );
        assert_eq!(
            t.attempt("alice", newcomer, now),
            Verdict::Throttled(Duration::from_secs(2))
        );
    }

    #[test]
    fn ceiling_holds_however_many_attempts_are_in_flight() {
        let t = throttle();
        let now = Instant::now();
        // Attempts whose checks have started but not finished count already.
        let checked = (0..200)
            .filter(|i| t.attempt("alice", nth_source(*i), now) == Verdict::Check)
            .count();
        assert_eq!(checked, 50);
    }

    #[test]
    fn one_source_cannot_lock_a_name_for_others() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..1_000 {
            t.attempt("alice", ip(A), now);
        }
        assert_eq!(t.attempt("alice", ip(B), now), Verdict::Check);
    }

    #[test]
    fn a_full_table_drops_the_least_recently_used_key_instead_of_refusing_new_ones() {
        let t = LocalCounter::with_capacity(&limits(), 3);
        let now = Instant::now();
        for i in 0..3 {
            t.attempt("alice", nth_source(i), now);
        }
        // Touch source 0 so that source 1 is the least recently used.
        t.attempt("bob", nth_source(0), now);
        t.attempt("alice", nth_source(3), now);
        let state = t.lock();
        assert_eq!(state.by_source.len(), 3);
        assert!(state.by_source.contains(&nth_source(3)));
        assert!(state.by_source.contains(&nth_source(0)));
        assert!(!state.by_source.contains(&nth_source(1)));
    }

    #[test]
    fn a_new_source_is_still_limited_when_the_table_is_full() {
        let t = LocalCounter::with_capacity(&limits(), 10);
        let now = Instant::now();
        for i in 0..10 {
            t.attempt(&format!("n{i}"), nth_source(i), now);
        }
        let newcomer = ip("192.0.2.9");
        let verdicts: Vec<Verdict> = (0..21)
            .map(|i| t.attempt(&format!("x{i}"), newcomer, now))
            .collect();
        assert!(verdicts[..20].iter().all(|v| *v == Verdict::Check));
        assert!(matches!(verdicts[20], Verdict::Throttled(_)));
    }

    #[test]
    fn idle_keys_are_dropped_a_few_at_a_time() {
        let t = throttle();
        let now = Instant::now();
        for i in 0..10 {
            t.attempt(&format!("n{i}"), nth_source(i), now);
        }
        assert_eq!(t.tracked(), (10, 10));
        let later = now + Duration::from_secs(1_000);
        t.attempt("late", ip("192.0.2.1"), later);
        let (names, sources) = t.tracked();
        assert_eq!(
            (names, sources),
            (10 - PRUNE_PER_ATTEMPT + 1, 10 - PRUNE_PER_ATTEMPT + 1)
        );
        for _ in 0..10 {
            t.attempt("late", ip("192.0.2.1"), later);
        }
        assert_eq!(t.tracked(), (1, 1));
    }
}
