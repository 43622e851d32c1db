//! The virtual clock and the event queue.
//!
//! Time is a [`Duration`] since the start of the run; the state machines see it as
//! `base + offset`, with `base` one real [`Instant`] taken at the start, so they run
//! unchanged. Events due at the same virtual time are taken in the order they were
//! scheduled (a sequence number breaks ties), so a run depends on the seed only, never on
//! heap internals. That order also keeps each simulated link first-in first-out: a link's
//! latency is constant, so what is sent first arrives first.
//!
//! The queue is a calendar: a ring of one-millisecond buckets covering the next minute
//! (nearly every event lands there: latencies, timers, wakeups), a heap for the bucket
//! being taken, and a heap for what lies further ahead. A run with millions of events
//! waiting sorts each bucket once instead of sifting every event through a heap of
//! millions; the order is the same `(time, sequence)` order.

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

/// An event and when: the time in nanoseconds (a `Duration` is twice as large, and the
/// heap moves these around a lot).
struct Scheduled<E> {
    at: u64,
    seq: u64,
    event: E,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
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

/// Width of a bucket, in nanoseconds.
const BUCKET_NANOS: u64 = 1_000_000;

/// Buckets in the ring (about 65 s ahead).
const SLOTS: u64 = 1 << 16;

fn bucket(at: u64) -> u64 {
    at / BUCKET_NANOS
}

/// Events ordered by virtual time, then by the order they were scheduled.
pub struct EventQueue<E> {
    /// Everything in bucket `current_bucket` or earlier.
    current: BinaryHeap<Reverse<Scheduled<E>>>,
    current_bucket: u64,
    /// Buckets `current_bucket + 1 ..= current_bucket + SLOTS - 1`, by bucket modulo
    /// `SLOTS`, unordered.
    ring: Vec<Vec<Scheduled<E>>>,
    /// Further ahead.
    far: BinaryHeap<Reverse<Scheduled<E>>>,
    len: usize,
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
            current: BinaryHeap::new(),
            current_bucket: 0,
            ring: (0..SLOTS).map(|_| Vec::new()).collect(),
            far: BinaryHeap::new(),
            len: 0,
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
        self.len
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `event` at `at`; a time in the past means "now" (time never runs back).
    pub fn at(&mut self, at: Duration, event: E) {
        let at = nanos(at.max(self.now));
        let scheduled = Scheduled {
            at,
            seq: self.next_seq,
            event,
        };
        self.next_seq += 1;
        self.len += 1;
        let b = bucket(at);
        if b <= self.current_bucket {
            self.current.push(Reverse(scheduled));
        } else if b < self.current_bucket + SLOTS {
            if let Some(slot) = self.ring.get_mut((b % SLOTS) as usize) {
                slot.push(scheduled);
            }
        } else {
            self.far.push(Reverse(scheduled));
        }
    }

    /// Schedules `event` `delay` from now.
    pub fn after(&mut self, delay: Duration, event: E) {
        self.at(self.now + delay, event);
    }

    /// Takes the next event due no later than `until`, advancing the clock to it.
    pub fn pop_until(&mut self, until: Duration) -> Option<(Duration, E)> {
        let until = nanos(until);
        while self.current.is_empty() {
            if self.len == 0 || self.current_bucket >= bucket(until) {
                return None;
            }
            self.advance();
        }
        if self.current.peek().is_none_or(|Reverse(s)| s.at > until) {
            return None;
        }
        let Reverse(next) = self.current.pop()?;
        self.len -= 1;
        self.now = Duration::from_nanos(next.at);
        self.processed += 1;
        Some((self.now, next.event))
    }

    /// Moves to the next bucket: its events (and any from far ahead now due) become the
    /// current heap. Called only with the current heap empty.
    fn advance(&mut self) {
        // Nothing in the ring: jump to the far heap's first bucket.
        let ring_empty = self.len == self.far.len();
        let next = match self.far.peek() {
            Some(Reverse(s)) if ring_empty => bucket(s.at).max(self.current_bucket + 1),
            _ => self.current_bucket + 1,
        };
        self.current_bucket = next;
        let slot = self
            .ring
            .get_mut((next % SLOTS) as usize)
            .map(std::mem::take)
            .unwrap_or_default();
        let mut heap = BinaryHeap::from(slot.into_iter().map(Reverse).collect::<Vec<_>>());
        while self
            .far
            .peek()
            .is_some_and(|Reverse(s)| bucket(s.at) <= next)
        {
            if let Some(event) = self.far.pop() {
                heap.push(event);
            }
        }
        self.current = heap;
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
    fn far_events_and_empty_stretches_keep_their_order() {
        let mut q = EventQueue::new();
        let far = Duration::from_secs(200);
        q.at(far + ms(1), "far b");
        q.at(far, "far a");
        q.at(ms(3), "near");
        q.at(far, "far a2");
        q.at(Duration::from_micros(3_500), "near2");
        assert_eq!(q.pop_until(far * 2), Some((ms(3), "near")));
        assert_eq!(
            q.pop_until(far * 2),
            Some((Duration::from_micros(3_500), "near2"))
        );
        assert_eq!(q.pop_until(far * 2), Some((far, "far a")));
        // Scheduled now, while the bucket is being taken: after what is already due.
        q.after(Duration::ZERO, "now");
        assert_eq!(q.pop_until(far * 2), Some((far, "far a2")));
        assert_eq!(q.pop_until(far * 2), Some((far, "now")));
        assert_eq!(q.pop_until(far * 2), Some((far + ms(1), "far b")));
        assert_eq!(q.pop_until(far * 2), None);
        assert!(q.is_empty());
        // A long empty stretch, then more.
        q.at(far + Duration::from_secs(100), "later");
        assert_eq!(q.pop_until(far), None, "past the horizon");
        assert_eq!(
            q.pop_until(far * 2),
            Some((far + Duration::from_secs(100), "later"))
        );
    }

    #[test]
    fn the_clock_maps_offsets_onto_one_base() {
        let clock = Clock::start();
        assert_eq!(clock.instant(ms(250)) - clock.instant(ms(50)), ms(200));
        assert_eq!(clock.offset(clock.instant(ms(250))), ms(250));
        assert_eq!(clock.unix_ms(ms(7)) - clock.unix_ms(ms(0)), 7);
    }
}
