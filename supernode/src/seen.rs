//! Duplicate suppression: the query ids a supernode has seen recently. A query that comes
//! back (a loop in the overlay, or two paths to the same supernode) is recognised and not
//! answered twice. Bounded in time and in size.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rustc_hash::FxHashSet;
use superpeer_common::wire::QueryId;

/// Recently seen query ids.
#[derive(Debug)]
pub struct SeenIds {
    keep_for: Duration,
    capacity: usize,
    set: FxHashSet<QueryId>,
    order: VecDeque<(Instant, QueryId)>,
}

impl SeenIds {
    /// Remembers ids for `keep_for`, at most `capacity` of them (the oldest go first).
    pub fn new(keep_for: Duration, capacity: usize) -> Self {
        Self {
            keep_for,
            capacity,
            set: FxHashSet::default(),
            order: VecDeque::new(),
        }
    }

    /// Records `id`; false if it was already seen (a duplicate).
    pub fn insert(&mut self, now: Instant, id: QueryId) -> bool {
        self.expire(now);
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back((now, id));
        while self.order.len() > self.capacity {
            if let Some((_, old)) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// True if `id` was seen recently.
    #[cfg(test)]
    pub fn contains(&self, id: &QueryId) -> bool {
        self.set.contains(id)
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, id)) = self.order.front().copied() {
            if now.saturating_duration_since(at) < self.keep_for {
                break;
            }
            self.order.pop_front();
            self.set.remove(&id);
        }
    }

    /// Ids remembered now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.len()
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
        assert!(seen.insert(t0, id));
        assert!(!seen.insert(t0 + Duration::from_secs(29), id));
        assert!(seen.insert(t0 + Duration::from_secs(31), id));
    }

    #[test]
    fn size_is_capped() {
        let t0 = Instant::now();
        let mut seen = SeenIds::new(Duration::from_secs(30), 10);
        for n in 0..100u8 {
            seen.insert(t0, QueryId([n; 16]));
        }
        assert_eq!(seen.len(), 10);
        assert!(seen.contains(&QueryId([99; 16])));
        assert!(!seen.contains(&QueryId([0; 16])));
    }
}
