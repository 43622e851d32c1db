//! Per-link latency: every node sits at a seeded point of a unit square, and the one-way
//! delay between two nodes grows with their distance, from 5 ms (neighbours) to 150 ms
//! (opposite corners), as between hosts on one continent and across an ocean. Positions are
//! derived from the seed and the node's number, never stored, so three million leaves cost
//! no memory here.

use std::time::Duration;

/// Shortest one-way delay.
const MIN_DELAY_US: f64 = 5_000.0;
/// Longest one-way delay.
const MAX_DELAY_US: f64 = 150_000.0;

/// Which kind of node a position is for (they must not share points by number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Supernode number n.
    Supernode(u32),
    /// Leaf number n.
    Leaf(u32),
    /// The list server.
    ListServer,
}

/// The latency model of one run.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    seed: u64,
}

impl Latency {
    /// The model for `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// Where `place` is, in the unit square.
    pub fn position(&self, place: Place) -> (f64, f64) {
        let key = match place {
            Place::Supernode(n) => 1 << 40 | u64::from(n),
            Place::Leaf(n) => 2 << 40 | u64::from(n),
            Place::ListServer => 3 << 40,
        };
        let bits = splitmix64(self.seed ^ splitmix64(key));
        let x = (bits >> 32) as f64 / f64::from(u32::MAX);
        let y = (bits & 0xFFFF_FFFF) as f64 / f64::from(u32::MAX);
        (x, y)
    }

    /// One-way delay between `a` and `b`.
    pub fn one_way(&self, a: Place, b: Place) -> Duration {
        let (ax, ay) = self.position(a);
        let (bx, by) = self.position(b);
        let distance = ((ax - bx).powi(2) + (ay - by).powi(2)).sqrt() / std::f64::consts::SQRT_2;
        let us = MIN_DELAY_US + (MAX_DELAY_US - MIN_DELAY_US) * distance.min(1.0);
        Duration::from_micros(us as u64)
    }

    /// Round-trip time between `a` and `b`.
    pub fn rtt(&self, a: Place, b: Place) -> Duration {
        self.one_way(a, b) * 2
    }
}

/// A well-mixed 64-bit hash (SplitMix64's finaliser).
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_symmetric_bounded_and_seeded() {
        let model = Latency::new(7);
        let (a, b) = (Place::Supernode(1), Place::Leaf(1));
        assert_eq!(model.one_way(a, b), model.one_way(b, a));
        assert_eq!(model.one_way(a, a), Duration::from_millis(5));
        for n in 0..1_000 {
            let d = model.one_way(Place::Supernode(n), Place::Leaf(n * 7));
            assert!(d >= Duration::from_millis(5) && d <= Duration::from_millis(150));
        }
        assert_eq!(
            Latency::new(7).position(Place::Leaf(42)),
            model.position(Place::Leaf(42))
        );
        assert_ne!(
            Latency::new(8).position(Place::Leaf(42)),
            model.position(Place::Leaf(42))
        );
    }
}
