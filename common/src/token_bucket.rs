//! A token bucket with time passed in: `burst` actions at once, then `per_second` on
//! average. The building block of every per-peer rate limit.

use std::time::Instant;

/// A token bucket.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(now: Instant, per_second: f64, burst: u32) -> Self {
        Self {
            per_second,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.updated = now;
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens if there are that many (none otherwise).
    pub fn try_take_n(&mut self, now: Instant, n: u32) -> bool {
        self.refill(now);
        if self.tokens >= f64::from(n) {
            self.tokens -= f64::from(n);
            true
        } else {
            false
        }
    }

    /// True if the bucket would be full at `now` (the source has been quiet).
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * self.per_second >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(t0, 4.0, 3);
        assert_eq!((0..10).filter(|_| bucket.try_take(t0)).count(), 3);
        assert!(!bucket.is_full(t0));
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..10).filter(|_| bucket.try_take(t1)).count(), 2);
        assert!(bucket.is_full(t1 + Duration::from_secs(1)));
        let t2 = t1 + Duration::from_secs(1);
        assert!(!bucket.try_take_n(t2, 4));
        assert!(bucket.try_take_n(t2, 3));
        assert!(!bucket.try_take(t2));
    }
}
