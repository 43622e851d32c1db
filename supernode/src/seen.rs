//! Duplicate suppression: the query ids a supernode has seen recently, with the most hops
//! any copy had left. A query that comes back (a loop in the overlay, or two paths to the
//! same supernode) is recognised and not answered twice; a copy with more hops left than
//! any before is not a duplicate but a request to relay further (see `router`). Bounded in
//! time and in size.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use superpeer_common::wire::QueryId;

/// What a copy of a query is, given the copies seen before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The first copy.
    New,
    /// Seen before, but every earlier copy had fewer hops left.
    Deeper,
    /// Seen before with at least as many hops left.
    Duplicate,
}

/// Recently seen query ids, each with the most hops left of any of its copies.
#[derive(Debug)]
pub struct SeenIds {
    keep_for: Duration,
    capacity: usize,
    ttl: FxHashMap<QueryId, u8>,
    order: VecDeque<(Instant, QueryId)>,
}

impl SeenIds {
    /// Remembers ids for `keep_for`, at most `capacity` of them (the oldest go first).
    pub fn new(keep_for: Duration, capacity: usize) -> Self {
        Self {
            keep_for,
            capacity,
            ttl: FxHashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// Records a copy of `id` with `ttl` hops left.
    pub fn insert(&mut self, now: Instant, id: QueryId, ttl: u8) -> Seen {
        self.expire(now);
        if let Some(seen) = self.ttl.get_mut(&id) {
            if *seen >= ttl {
                return Seen::Duplicate;
            }
            *seen = ttl;
            return Seen::Deeper;
        }
        self.ttl.insert(id, ttl);
        self.order.push_back((now, id));
        while self.order.len() > self.capacity {
            if let Some((_, old)) = self.order.pop_front() {
                self.ttl.remove(&old);
            }
        }
        Seen::New
    }

    /// True if `id` was seen recently.
    #[cfg(test)]
    pub fn contains(&self, id: &QueryId) -> bool {
        self.ttl.contains_key(id)
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, id)) = self.order.front().copied() {
            if now.saturating_duration_since(at) < self.keep_for {
                break;
            }
            self.order.pop_front();
            self.ttl.remove(&id);
        }
    }

    /// Ids remembered now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ttl.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_caught_until_they_expire() {
        let t0 = Instant::now();
        let mut seen = SeenIds::new(Duration::from_secs(30), 100);
        let id = QueryId([1; 16]);
        assert_eq!(seen.insert(t0, id, 1), Seen::New);
        assert_eq!(
            seen.insert(t0 + Duration::from_secs(29), id, 1),
            Seen::Duplicate
        );
        assert_eq!(seen.insert(t0 + Duration::from_secs(31), id, 1), Seen::New);
    }

    #[test]
    fn a_copy_with_more_hops_left_is_deeper_once() {
        let t0 = Instant::now();
        let mut seen = SeenIds::new(Duration::from_secs(30), 100);
        let id = QueryId([2; 16]);
        assert_eq!(seen.insert(t0, id, 0), Seen::New);
        assert_eq!(seen.insert(t0, id, 0), Seen::Duplicate);
        assert_eq!(seen.insert(t0, id, 1), Seen::Deeper);
        assert_eq!(seen.insert(t0, id, 1), Seen::Duplicate);
        assert_eq!(seen.insert(t0, id, 0), Seen::Duplicate);
    }

    #[test]
    fn size_is_capped() {
        let t0 = Instant::now();
        let mut seen = SeenIds::new(Duration::from_secs(30), 10);
        for n in 0..100u8 {
            seen.insert(t0, QueryId([n; 16]), 1);
        }
        assert_eq!(seen.len(), 10);
        assert!(seen.contains(&QueryId([99; 16])));
        assert!(!seen.contains(&QueryId([0; 16])));
    }
}
