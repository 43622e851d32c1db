//! The flooding baseline, Gnutella 0.4 style, on the links the supernodes' cores made:
//!
//! 1. The asker's supernode answers from its index and sends the query to `fanout` of its
//!    neighbours (all of them if it has fewer), drawn at random, with the TTL.
//! 2. A supernode that gets a query id for the first time answers from its index and, if
//!    hops remain, forwards it to `fanout` of its other neighbours. A copy that arrives
//!    later is a duplicate: dropped, though it was sent and is counted.
//! 3. Each supernode that has matches sends one hit message back along the path the query
//!    came by: a message per hop. Results reach the asker after the way out and back.
//!
//! Flooding does not stop at `want` results: it reaches everything within the TTL. The
//! query is sent in virtual time with the same link latencies, so the time to the first
//! and the `want`-th result compare with routing's.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::latency::{Latency, Place};
use super::world::{Node, Peer};

const NOBODY: u32 = u32::MAX;

/// What one flood did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodOutcome {
    /// Query messages sent (duplicates included).
    pub query_messages: u64,
    /// Query and hit messages, per hop.
    pub messages: u64,
    /// Supernodes reached.
    pub visited: u64,
    /// Distinct contents found (all of them, not capped at `want`).
    pub found: usize,
    /// Time to the first result.
    pub first: Option<Duration>,
    /// Time to the `want`-th result.
    pub wanted: Option<Duration>,
}

/// What a flood starts from.
#[derive(Clone, Copy, Debug)]
pub struct FloodParams {
    /// The asker's supernode.
    pub origin: u32,
    /// Neighbours each supernode forwards to.
    pub fanout: usize,
    /// Results the asker wants.
    pub want: usize,
    /// One-way delay between the asker and its supernode.
    pub leaf_delay: Duration,
    /// Seeds the random choice of neighbours.
    pub seed: u64,
}

/// The supernode overlay as the cores built it, and scratch space for floods.
#[derive(Default)]
pub struct Topology {
    neighbors: Vec<Vec<u32>>,
    /// Where each supernode sits.
    places: Vec<Place>,
    current: bool,
    /// Per supernode (and per catalog file), the flood that last reached it.
    reached: Vec<u32>,
    seen_file: Vec<u32>,
    stamp: u32,
}

impl Topology {
    /// A link came or went: rebuild before the next flood.
    pub fn changed(&mut self) {
        self.current = false;
    }

    /// Links per supernode now (after [`Topology::refresh`]).
    pub fn degrees(&self) -> impl Iterator<Item = usize> + '_ {
        self.neighbors.iter().map(Vec::len)
    }

    /// Reads the links from the running supernodes' session tables, if they changed;
    /// `places` says where each supernode sits.
    pub fn refresh(&mut self, nodes: &[Node], places: Vec<Place>) {
        self.places = places;
        if self.current && self.neighbors.len() == nodes.len() {
            return;
        }
        self.neighbors = nodes
            .iter()
            .map(|node| {
                if !node.is_up() {
                    return Vec::new();
                }
                let mut list: Vec<u32> = node
                    .sessions
                    .values()
                    .filter_map(|peer| match peer {
                        Peer::Neighbor { node, .. } => Some(*node),
                        Peer::Leaf { .. } | Peer::Direct { .. } => None,
                    })
                    .collect();
                list.sort_unstable();
                list.dedup();
                list
            })
            .collect();
        self.reached = vec![0; nodes.len()];
        self.current = true;
    }

    /// Floods a query with `ttl`. `placed` lists (supernode, file) matches, sorted.
    pub fn flood(
        &mut self,
        params: &FloodParams,
        ttl: u8,
        placed: &[(u32, u32)],
        latency: &Latency,
    ) -> FloodOutcome {
        self.stamp = self.stamp.wrapping_add(1).max(1);
        let stamp = self.stamp;
        if let Some(max) = placed.iter().map(|&(_, f)| f as usize).max() {
            if self.seen_file.len() <= max {
                self.seen_file.resize(max + 1, 0);
            }
        }
        let mut rng = StdRng::seed_from_u64(params.seed);
        let mut out = FloodOutcome::default();
        let mut seq = 0u64;
        let mut heap = BinaryHeap::new();
        heap.push(Reverse((Duration::ZERO, seq, params.origin, 0u8, NOBODY)));
        let mut chosen: Vec<u32> = Vec::new();
        while let Some(Reverse((at, _, node, hops, from))) = heap.pop() {
            match self.reached.get_mut(node as usize) {
                Some(r) if *r != stamp => *r = stamp,
                _ => continue, // a duplicate (or no such node)
            }
            out.visited += 1;
            let lo = placed.partition_point(|&(sn, _)| sn < node);
            let hi = placed.partition_point(|&(sn, _)| sn <= node);
            let matches = placed.get(lo..hi).unwrap_or_default();
            if !matches.is_empty() {
                out.messages += u64::from(hops);
            }
            let back = (params.leaf_delay + at) * 2;
            for &(_, file) in matches {
                if let Some(seen) = self.seen_file.get_mut(file as usize) {
                    if *seen != stamp {
                        *seen = stamp;
                        out.found += 1;
                        out.first.get_or_insert(back);
                        if out.found == params.want {
                            out.wanted = Some(back);
                        }
                    }
                }
            }
            if hops >= ttl {
                continue;
            }
            chosen.clear();
            let neighbors = self
                .neighbors
                .get(node as usize)
                .map_or(&[][..], Vec::as_slice);
            chosen.extend(neighbors.iter().copied().filter(|&n| n != from));
            // A partial Fisher-Yates shuffle: the first `fanout` are a uniform draw.
            let take = params.fanout.min(chosen.len());
            for i in 0..take {
                let j = rng.random_range(i..chosen.len());
                chosen.swap(i, j);
            }
            for &next in chosen.iter().take(take) {
                seq += 1;
                out.query_messages += 1;
                out.messages += 1;
                let place = |n: u32| {
                    self.places
                        .get(n as usize)
                        .copied()
                        .unwrap_or(Place::Supernode(n))
                };
                let delay = latency.one_way(place(node), place(next));
                heap.push(Reverse((at + delay, seq, next, hops + 1, node)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: u32) -> Topology {
        Topology {
            neighbors: (0..n).map(|i| vec![(i + n - 1) % n, (i + 1) % n]).collect(),
            current: true,
            reached: vec![0; n as usize],
            ..Topology::default()
        }
    }

    fn params(want: usize) -> FloodParams {
        FloodParams {
            origin: 0,
            fanout: 7,
            want,
            leaf_delay: Duration::from_millis(10),
            seed: 1,
        }
    }

    #[test]
    fn the_ttl_bounds_the_reach_and_duplicates_are_counted() {
        let mut topo = ring(10);
        let latency = Latency::new(1);
        // Content on node 3 (three hops away either way round... or seven).
        let placed = vec![(3, 0), (3, 1)];
        let short = topo.flood(&params(1), 2, &placed, &latency);
        assert_eq!(short.visited, 5, "origin and two hops each way");
        assert_eq!(short.found, 0);
        assert_eq!(short.query_messages, 4);
        let far = topo.flood(&params(2), 3, &placed, &latency);
        assert_eq!(far.found, 2);
        assert_eq!(
            far.messages,
            far.query_messages + 3,
            "one hit message per hop back"
        );
        assert!(far.first.is_some() && far.wanted == far.first);
        let all = topo.flood(&params(2), 7, &placed, &latency);
        assert_eq!(all.visited, 10);
        assert!(
            all.query_messages > 10,
            "the two waves meet: duplicates are sent too"
        );
        assert_eq!(topo.flood(&params(2), 7, &placed, &latency), all, "seeded");
    }
}
