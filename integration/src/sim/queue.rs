//! The virtual clock and the event queue.
//!
//! Time is a [`Duration`] since the start of the run; the state machines see it as
//! `base + offset`, with `base` one real [`Instant`] taken at the start, so they run
//! unchanged. Events due at the same virtual time are taken in the order they were
//! scheduled (a sequence number breaks ties), so a run depends on the seed only, never on
//! heap internals. That order also keeps each simulated link first-in first-out: a link's
//! latency is constant, so what is sent first arrives first.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// The virtual clock: offsets from a real instant taken once.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    /// A clock whose offset zero is now.
    pub fn start() -> Self {
        Self {
            base: Instant::now(),
        }
    }

    /// The instant the state machines see at virtual time `at`.
    pub fn instant(&self, at: Duration) -> Instant {
        self.base + at
    }

    /// The virtual time of `instant` (never before the start).
    pub fn offset(&self, instant: Instant) -> Duration {
        instant.saturating_duration_since(self.base)
    }

    /// The wall-clock milliseconds stamped on lists at virtual time `at` (an arbitrary,
    /// fixed epoch: the same seed gives the same stamps).
    pub fn unix_ms(&self, at: Duration) -> u64 {
        const EPOCH_MS: u64 = 1_700_000_000_000;
        EPOCH_MS + u64::try_from(at.as_millis()).unwrap_or(u64::MAX / 2)
    }
}

struct Scheduled<E> {
    at: Duration,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Scheduled<E> {}

impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Scheduled<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Events ordered by virtual time, then by the order they were scheduled.
pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<Scheduled<E>>>,
    next_seq: u64,
    now: Duration,
    processed: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> EventQueue<E> {
    /// An empty queue at time zero.
    pub fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            next_seq: 0,
            now: Duration::ZERO,
            processed: 0,
        }
    }

    /// The time of the event taken last.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Events taken so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Schedules `event` at `at`; a time in the past means "now" (time never runs back).
    pub fn at(&mut self, at: Duration, event: E) {
        let at = at.max(self.now);
        self.heap.push(Reverse(Scheduled {
            at,
            seq: self.next_seq,
            event,
        }));
        self.next_seq += 1;
    }

    /// Schedules `event` `delay` from now.
    pub fn after(&mut self, delay: Duration, event: E) {
        self.at(self.now + delay, event);
    }

    /// Takes the next event due no later than `until`, advancing the clock to it.
    pub fn pop_until(&mut self, until: Duration) -> Option<(Duration, E)> {
        if self.heap.peek().is_none_or(|Reverse(s)| s.at > until) {
            return None;
        }
        let Reverse(next) = self.heap.pop()?;
        self.now = next.at;
        self.processed += 1;
        Some((next.at, next.event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn events_come_in_time_order_and_ties_in_scheduling_order() {
        let mut q = EventQueue::new();
        q.at(ms(30), "c");
        q.at(ms(10), "a");
        q.at(ms(30), "d");
        q.at(ms(10), "b");
        q.at(ms(20), "x");
        let mut order = Vec::new();
        while let Some((at, e)) = q.pop_until(ms(1_000)) {
            order.push((at, e));
        }
        assert_eq!(
            order,
            vec![
                (ms(10), "a"),
                (ms(10), "b"),
                (ms(20), "x"),
                (ms(30), "c"),
                (ms(30), "d")
            ]
        );
        assert_eq!(q.processed(), 5);
    }

    #[test]
    fn the_clock_never_runs_back_and_stops_at_the_horizon() {
        let mut q = EventQueue::new();
        q.at(ms(50), 1);
        q.at(ms(150), 2);
        assert_eq!(q.pop_until(ms(100)), Some((ms(50), 1)));
        assert_eq!(
            q.pop_until(ms(100)),
            None,
            "the next event is past the horizon"
        );
        q.at(ms(10), 3);
        assert_eq!(
            q.pop_until(ms(100)),
            Some((ms(50), 3)),
            "an event scheduled in the past happens now"
        );
        q.after(ms(5), 4);
        assert_eq!(q.pop_until(ms(1_000)), Some((ms(55), 4)));
        assert_eq!(q.now(), ms(55));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn the_clock_maps_offsets_onto_one_base() {
        let clock = Clock::start();
        assert_eq!(clock.instant(ms(250)) - clock.instant(ms(50)), ms(200));
        assert_eq!(clock.offset(clock.instant(ms(250))), ms(250));
        assert_eq!(clock.unix_ms(ms(7)) - clock.unix_ms(ms(0)), 7);
    }
}
