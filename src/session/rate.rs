//! A member's line rate: a token bucket, so a burst is allowed and a flood waits in the
//! client's TCP buffers instead of the server's memory.

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket of lines: `burst` at once, then `rate` per second.
pub(super) struct TokenBucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    last: Instant,
}

impl TokenBucket {
    pub(super) fn new(burst: u32, rate: f64) -> Self {
        TokenBucket {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            rate,
            last: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    pub(super) fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }

    pub(super) fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next token will be there.
    pub(super) fn ready_at(&self) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        self.last + Duration::from_secs_f64(missing / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::new(3, 2.0);
        b.last = start;
        assert!((0..3).all(|_| b.try_take(start)));
        assert!(!b.try_take(start));
        assert_eq!(b.ready_at(), start + Duration::from_millis(500));
        assert!(b.try_take(start + Duration::from_millis(500)));
        assert!(!b.try_take(start + Duration::from_millis(600)));
    }
}
