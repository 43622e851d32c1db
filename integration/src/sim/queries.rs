//! The queries: who sends each, its ground truth when sent, and what it saw: the
//! supernode-to-supernode messages that carried it, the supernodes it reached, its results
//! and when they came. Its flooding baseline is computed when it is sent, on the overlay
//! and the indexes of that moment.
//!
//! A query is a search of a placed leaf's core (`LeafCore::search`, which makes its id and
//! paces it), or of an elected supernode's own user; its results are what the core passes
//! on (`Hits`, merged per content), its end the core's `SearchOver`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rand::Rng;
use superpeer_common::ContentId;
use superpeer_common::wire::{QueryEnd, QueryHit, QueryId};

use super::flood::{FloodOutcome, FloodParams};
use super::latency::Place;
use super::world::World;

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
    /// The supernodes whose indexes held a match when it was sent.
    pub held_at: Vec<u32>,
    /// Distinct contents it got.
    pub found: BTreeSet<ContentId>,
    /// The holders it got for each content, by leaf number (holders that are not
    /// simulated leaves are left out).
    pub holders: BTreeMap<ContentId, BTreeSet<u32>>,
    /// Time from sending to the first result.
    pub first: Option<Duration>,
    /// Time from sending to the `want`-th result.
    pub wanted: Option<Duration>,
    /// Time from sending to its end at the leaf, and why it ended: how the supernode ended
    /// it, `Refused: ..`, or `Ended` (the leaf's deadline, or its supernode went away).
    pub done: Option<(Duration, String)>,
    /// How the supernode ended it, when its `QueryDone` came.
    pub end: Option<QueryEnd>,
    /// Supernode-to-supernode messages carrying it (queries, hits, done, and the
    /// directory's lookups and their answers).
    pub messages: u64,
    /// Their bytes on the wire.
    pub bytes: u64,
    /// Of those, the query itself (to neighbours, and to supernodes asked directly).
    pub query_messages: u64,
    /// Of the query messages, those sent directly to supernodes the directory named.
    pub direct: u64,
    /// Directory lookups and their answers.
    pub lookups: u64,
    /// Supernodes that got it (the origin first; duplicates kept, removed when reported).
    pub visited: Vec<u32>,
    /// The flooding baseline, per TTL from 1.
    pub flood: Vec<FloodOutcome>,
}

/// What a supernode-to-supernode message carries for a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carried {
    /// The query itself (`direct`: to a supernode the directory named).
    Query { direct: bool },
    /// Hits, or done.
    Answer,
    /// A directory lookup, or an owner's answer.
    Lookup,
}

/// Every query's record.
pub struct QueryLog {
    /// By query number.
    pub records: Vec<QueryRecord>,
    /// Query numbers by the id the asker's core gave them.
    numbers: HashMap<QueryId, u32>,
    want: usize,
}

impl QueryLog {
    /// Room for `count` queries asking for `want` results each.
    pub fn new(count: usize, want: u32) -> Self {
        Self {
            records: vec![QueryRecord::default(); count],
            numbers: HashMap::new(),
            want: want as usize,
        }
    }

    /// The number of the query with id `id`.
    pub fn number(&self, id: &QueryId) -> Option<u32> {
        self.numbers.get(id).copied()
    }

    fn record(&mut self, id: &QueryId) -> Option<&mut QueryRecord> {
        let q = self.number(id)?;
        self.records.get_mut(q as usize)
    }

    /// A supernode-to-supernode message for query `id`, of `bytes` on the wire.
    pub fn message(&mut self, id: &QueryId, kind: Carried, bytes: u64) {
        if let Some(r) = self.record(id) {
            r.messages += 1;
            r.bytes += bytes;
            match kind {
                Carried::Query { direct } => {
                    r.query_messages += 1;
                    r.direct += u64::from(direct);
                }
                Carried::Answer => {}
                Carried::Lookup => r.lookups += 1,
            }
        }
    }

    /// Query `q` reached supernode `sn`.
    pub fn visited(&mut self, q: u32, sn: u32) {
        if let Some(r) = self.records.get_mut(q as usize) {
            r.visited.push(sn);
        }
    }

    /// Results for query `id` reached its asker at `at` (as its core passed them on).
    pub fn hits(&mut self, id: QueryId, at: Duration, hits: &[QueryHit]) {
        let want = self.want;
        let Some(r) = self.record(&id) else {
            return;
        };
        let elapsed = at.saturating_sub(r.start);
        for hit in hits {
            r.found.insert(hit.content_id);
            let leaves = hit
                .holders
                .iter()
                .filter_map(|h| super::ids::leaf_number(&h.node_id));
            r.holders.entry(hit.content_id).or_default().extend(leaves);
        }
        if !r.found.is_empty() && r.first.is_none() {
            r.first = Some(elapsed);
        }
        if r.found.len() >= want && r.wanted.is_none() {
            r.wanted = Some(elapsed);
        }
    }

    /// The supernode ended query `id` (seen on its way to the asker).
    pub fn ended(&mut self, id: &QueryId, end: QueryEnd) {
        if let Some(r) = self.record(id) {
            r.end.get_or_insert(end);
        }
    }

    /// Query `id` is over at its asker.
    pub fn over(&mut self, id: QueryId, at: Duration, refused: Option<String>) {
        let Some(r) = self.record(&id) else {
            return;
        };
        if r.done.is_some() {
            return;
        }
        let why = match (refused, r.end) {
            (Some(reason), _) => format!("Refused: {reason}"),
            (None, Some(end)) => format!("{end:?}"),
            (None, None) => "Ended".to_string(),
        };
        r.done = Some((at.saturating_sub(r.start), why));
    }
}

impl World<'_> {
    /// The supernode slot leaf `n` searches through now: its core's supernode, or its own
    /// running supernode.
    fn searches_through(&self, n: u32) -> Option<u32> {
        let leaf = self.leaves.get(n)?;
        let core = leaf.core()?;
        if core.is_supernode() {
            return leaf
                .slot()
                .filter(|&sn| self.nodes.get(sn as usize).is_some_and(|node| node.is_up()));
        }
        self.slot_of(&core.supernode()?.node_id)
    }

    /// A leaf that is placed now (by its own account), drawn at random.
    fn asker(&mut self) -> Option<(u32, u32)> {
        let count = self.leaves.len() as u32;
        if count == 0 {
            return None;
        }
        for _ in 0..ASKER_TRIES {
            let n = self.rng.random_range(0..count);
            if let Some(sn) = self.searches_through(n) {
                return Some((n, sn));
            }
        }
        let from = self.rng.random_range(0..count);
        (0..count)
            .map(|i| (from + i) % count)
            .find_map(|n| self.searches_through(n).map(|sn| (n, sn)))
    }

    /// The leaf the layout names for query `q`, if it is placed now.
    fn laid_out_asker(&self, q: u32) -> Option<(u32, u32)> {
        let leaf = *self.config.layout.as_ref()?.askers.get(q as usize)?;
        Some((leaf, self.searches_through(leaf)?))
    }

    /// Query `q` is searched for by a random placed leaf (or the layout's).
    pub fn query_start(&mut self, q: u32) {
        let Some(words) = self.workload.queries.get(q as usize) else {
            return;
        };
        let asker = if self.config.layout.is_some() {
            self.laid_out_asker(q)
        } else {
            self.asker()
        };
        let Some((asker, origin)) = asker else {
            return;
        };
        let matching = self.content.matching(words);
        let leaves = &self.leaves;
        let placed = self
            .content
            .placed(&matching, |leaf| leaves.indexed_at(leaf));
        let truth: BTreeSet<u32> = placed.iter().map(|&(_, file)| file).collect();
        let leaf_delay = self.latency.one_way(Place::Leaf(asker), self.place(origin));
        let params = FloodParams {
            origin,
            fanout: self.config.flood_fanout,
            want: self.config.want as usize,
            leaf_delay,
            seed: self.config.seed ^ (u64::from(q) << 20),
        };
        let places: Vec<Place> = (0..self.nodes.len() as u32)
            .map(|sn| self.place(sn))
            .collect();
        self.topology.refresh(&self.nodes, places);
        let flood: Vec<FloodOutcome> = (1..=self.config.flood_ttl)
            .map(|ttl| self.topology.flood(&params, ttl, &placed, &self.latency))
            .collect();
        let now = self.now();
        let start = self.queue.now();
        let want = self.config.want;
        let Some(core) = self.leaves.get_mut(asker).and_then(|l| l.core_mut()) else {
            return;
        };
        let Ok(id) = core.search(now, words, want) else {
            return;
        };
        self.queries.numbers.insert(id, q);
        if let Some(r) = self.queries.records.get_mut(q as usize) {
            *r = QueryRecord {
                sent: true,
                asker,
                origin,
                start,
                truth: truth.len(),
                held_at: held_at(&placed),
                visited: vec![origin],
                flood,
                ..QueryRecord::default()
            };
        }
        self.leaf_actions(asker);
    }
}

/// The distinct supernodes of sorted (supernode, file) matches.
fn held_at(placed: &[(u32, u32)]) -> Vec<u32> {
    let mut at: Vec<u32> = placed.iter().map(|&(sn, _)| sn).collect();
    at.dedup();
    at
}
