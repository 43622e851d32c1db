//! The queries: who sends each, its ground truth when sent, and what it saw: the
//! supernode-to-supernode messages that carried it, the supernodes it reached, its results
//! and when they came. Its flooding baseline is computed when it is sent, on the overlay
//! and the indexes of that moment.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::Rng;
use superpeer_common::ContentId;
use superpeer_common::wire::{LeafToSupernode, Query, QueryEnd, QueryHit, QueryId};

use super::flood::{FloodOutcome, FloodParams};
use super::ids;
use super::latency::Place;
use super::world::{Event, World};

/// Random picks tried before walking the leaves in order to find one attached.
const ASKER_TRIES: usize = 64;

/// One query and what happened to it.
#[derive(Clone, Debug, Default)]
pub struct QueryRecord {
    /// Sent at all (an attached leaf was found to send it).
    pub sent: bool,
    /// The leaf that sent it.
    pub asker: u32,
    /// Its supernode.
    pub origin: u32,
    /// When it was sent.
    pub start: Duration,
    /// Distinct contents matching it among the files indexed when it was sent.
    pub truth: usize,
    /// Distinct contents it got.
    pub found: BTreeSet<ContentId>,
    /// The holders it got for each content, by leaf number (holders that are not
    /// simulated leaves are left out).
    pub holders: BTreeMap<ContentId, BTreeSet<u32>>,
    /// Time from sending to the first result.
    pub first: Option<Duration>,
    /// Time from sending to the `want`-th result.
    pub wanted: Option<Duration>,
    /// Time from sending to its `QueryDone`, and why it ended.
    pub done: Option<(Duration, QueryEnd)>,
    /// Supernode-to-supernode messages carrying it (queries, hits, done).
    pub messages: u64,
    /// Of those, the query itself.
    pub query_messages: u64,
    /// Supernodes that got it (the origin first; duplicates kept, removed when reported).
    pub visited: Vec<u32>,
    /// The flooding baseline, per TTL from 1.
    pub flood: Vec<FloodOutcome>,
}

/// Every query's record.
pub struct QueryLog {
    /// By query number.
    pub records: Vec<QueryRecord>,
    want: usize,
}

impl QueryLog {
    /// Room for `count` queries asking for `want` results each.
    pub fn new(count: usize, want: u32) -> Self {
        Self {
            records: vec![QueryRecord::default(); count],
            want: want as usize,
        }
    }

    /// A supernode-to-supernode message for query `q`.
    pub fn message(&mut self, q: u32, is_query: bool) {
        if let Some(r) = self.records.get_mut(q as usize) {
            r.messages += 1;
            r.query_messages += u64::from(is_query);
        }
    }

    /// Query `q` reached supernode `sn`.
    pub fn visited(&mut self, q: u32, sn: u32) {
        if let Some(r) = self.records.get_mut(q as usize) {
            r.visited.push(sn);
        }
    }

    /// Results for query `id` reached its leaf at `at`.
    pub fn hits(&mut self, id: QueryId, at: Duration, hits: &[QueryHit]) {
        let want = self.want;
        let Some(r) = self.records.get_mut(ids::query_number(&id) as usize) else {
            return;
        };
        let elapsed = at.saturating_sub(r.start);
        for hit in hits {
            r.found.insert(hit.content_id);
            let leaves = hit
                .holders
                .iter()
                .filter_map(|h| ids::leaf_number(&h.node_id));
            r.holders.entry(hit.content_id).or_default().extend(leaves);
        }
        if !r.found.is_empty() && r.first.is_none() {
            r.first = Some(elapsed);
        }
        if r.found.len() >= want && r.wanted.is_none() {
            r.wanted = Some(elapsed);
        }
    }

    /// Query `id` ended.
    pub fn done(&mut self, id: QueryId, at: Duration, end: QueryEnd) {
        if let Some(r) = self.records.get_mut(ids::query_number(&id) as usize) {
            if r.done.is_none() {
                r.done = Some((at.saturating_sub(r.start), end));
            }
        }
    }
}

impl World<'_> {
    /// A leaf that is attached now, drawn at random.
    fn asker(&mut self) -> Option<(u32, u32, superpeer_supernode::SessionId)> {
        let count = self.leaves.len() as u32;
        if count == 0 {
            return None;
        }
        for _ in 0..ASKER_TRIES {
            let n = self.rng.random_range(0..count);
            if let Some((sn, session)) = self.leaves.attached(n) {
                return Some((n, sn, session));
            }
        }
        let from = self.rng.random_range(0..count);
        (0..count)
            .map(|i| (from + i) % count)
            .find_map(|n| self.leaves.attached(n).map(|(sn, s)| (n, sn, s)))
    }

    /// The leaf the layout names for query `q`, if it is attached now.
    fn laid_out_asker(&self, q: u32) -> Option<(u32, u32, superpeer_supernode::SessionId)> {
        let leaf = *self.config.layout.as_ref()?.askers.get(q as usize)?;
        let (sn, session) = self.leaves.attached(leaf)?;
        Some((leaf, sn, session))
    }

    /// Query `q` is sent by a random attached leaf (or the layout's).
    pub fn query_start(&mut self, q: u32) {
        let Some(words) = self.workload.queries.get(q as usize) else {
            return;
        };
        let asker = if self.config.layout.is_some() {
            self.laid_out_asker(q)
        } else {
            self.asker()
        };
        let Some((asker, origin, session)) = asker else {
            return;
        };
        let matching = self.content.matching(words);
        let leaves = &self.leaves;
        let placed = self
            .content
            .placed(&matching, |leaf| leaves.indexed_at(leaf));
        let truth: BTreeSet<u32> = placed.iter().map(|&(_, file)| file).collect();
        let leaf_delay = self
            .latency
            .one_way(Place::Leaf(asker), Place::Supernode(origin));
        let params = FloodParams {
            origin,
            fanout: self.config.flood_fanout,
            want: self.config.want as usize,
            leaf_delay,
            seed: self.config.seed ^ (u64::from(q) << 20),
        };
        self.topology.refresh(&self.nodes);
        let flood: Vec<FloodOutcome> = (1..=self.config.flood_ttl)
            .map(|ttl| self.topology.flood(&params, ttl, &placed, &self.latency))
            .collect();
        let id = ids::query_id(q, &mut self.rng);
        let start = self.queue.now();
        if let Some(r) = self.queries.records.get_mut(q as usize) {
            *r = QueryRecord {
                sent: true,
                asker,
                origin,
                start,
                truth: truth.len(),
                visited: vec![origin],
                flood,
                ..QueryRecord::default()
            };
        }
        let msg = LeafToSupernode::Query(Query {
            id,
            keywords: words.clone(),
            want: self.config.want,
        });
        self.queue.after(
            leaf_delay,
            Event::FromLeaf {
                sn: origin,
                session,
                msg,
            },
        );
    }
}
