//! Per-source token buckets: how often one address may connect, register or ask for lists.
//!
//! Time is passed in. The table of sources is capped: when it is full, buckets that have
//! refilled completely (sources that went quiet) are forgotten first; if none has, a new
//! source is refused until one does, so a flood from many addresses cannot grow memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use superpeer_common::TokenBucket;

/// A token bucket per source address.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: u32,
    max_sources: usize,
    buckets: HashMap<IpAddr, TokenBucket>,
}

impl RateLimiter {
    /// Each source may do `burst` things at once, then `per_second` on average; at most
    /// `max_sources` sources are tracked.
    pub fn new(per_second: f64, burst: u32, max_sources: usize) -> Self {
        Self {
            per_second,
            burst,
            max_sources,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `source` if it has one.
    pub fn allow(&mut self, now: Instant, source: IpAddr) -> bool {
        let source = Self::key(source);
        if !self.buckets.contains_key(&source) && self.buckets.len() >= self.max_sources {
            self.forget_idle(now);
            if self.buckets.len() >= self.max_sources {
                return false;
            }
        }
        let (per_second, burst) = (self.per_second, self.burst);
        self.buckets
            .entry(source)
            .or_insert_with(|| TokenBucket::new(now, per_second, burst))
            .try_take(now)
    }

    /// Sources tracked now.
    pub fn sources(&self) -> usize {
        self.buckets.len()
    }

    fn forget_idle(&mut self, now: Instant) {
        self.buckets.retain(|_, b| !b.is_full(now));
    }

    /// IPv6 sources are limited per /64: one host usually holds a whole /64.
    fn key(source: IpAddr) -> IpAddr {
        match source {
            IpAddr::V4(_) => source,
            IpAddr::V6(v6) => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::from(octets)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn burst_then_steady_rate() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(2.0, 5, 100);
        let allowed = (0..20).filter(|_| limiter.allow(t0, ip(9))).count();
        assert_eq!(allowed, 5);
        // Another source is not affected.
        assert!(limiter.allow(t0, ip(3)));
        // One second later two more tokens.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..10).filter(|_| limiter.allow(t1, ip(9))).count(), 2);
    }

    #[test]
    fn table_of_sources_is_capped() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(1.0, 2, 10);
        for n in 0..255 {
            limiter.allow(t0, ip(n));
            assert!(limiter.sources() <= 10);
        }
        // Once the tracked sources have refilled (gone quiet), new ones get room again.
        let later = t0 + Duration::from_secs(10);
        assert!(limiter.allow(later, ip(200)));
    }

    #[test]
    fn ipv6_is_limited_per_64() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(0.0, 1, 10);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        assert!(limiter.allow(t0, a));
        assert!(!limiter.allow(t0, b));
    }
}
