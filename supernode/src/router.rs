//! Query routing: the state machine that takes a query through the overlay.
//!
//! No sockets and no clock: the core passes `now`, the local hits and the neighbours whose
//! summaries match; the router answers with messages to send ([`Router::poll_output`]) and
//! a time to be called back ([`Router::poll_timeout`]). Flow of one query:
//!
//! 1. [`Router::start_routed`]: a query from one of our leaves, or relayed by a neighbour.
//!    A query id seen before with as many hops left is a duplicate (an overlay loop, or a
//!    second path): the sender is told `QueryDone` at once and nothing else happens. A copy
//!    with more hops left than any before asks us to relay further: it runs without our
//!    local hits, which went to the first copy's sender already.
//! 2. Local hits go back to whoever asked (the leaf, or the relaying neighbour).
//! 3. Until `want` distinct contents are found: ask the next `fanout` *candidates* (the
//!    neighbours whose summaries match, most promising first) and wait for each one's
//!    `QueryDone` or the round timeout, then the next round. When there are *relays* too,
//!    candidates only answer (no hops left), since every one of them is asked directly.
//! 4. With candidates exhausted and results still wanted, ask the *relays* (neighbours
//!    linked to supernodes we are not linked to), `relay_fanout` a round, with one hop
//!    less to go: each asks its own matching neighbours that we do not reach ourselves.
//!    This is an expanding ring: a query that the direct neighbours satisfy never pays
//!    for the second hop.
//!    With the keyword directory, a leaf's query asks *direct* holders instead: the
//!    supernodes the owners of its words say hold them, asked directly over a pooled
//!    connection (they need not be neighbours), 32, 64, 128 a round, with no hops left;
//!    while the lookup is still out, the query waits for it. Relays are the fallback when
//!    the directory could not answer.
//! 5. Hits from asked neighbours stream back to the asker as they arrive.
//! 6. The query ends with `Enough`, `Exhausted` (no candidates or hops left), `Deadline`, or
//!    `Cancelled`; the asker gets `QueryDone`, and neighbours still working are told to stop.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};
use superpeer_common::wire::{
    MAX_HITS_PER_MESSAGE, Query, QueryEnd, QueryHit, QueryId, SupernodeToLeaf, SupernodeToSupernode,
};
use superpeer_common::{ContentId, NodeId};

use crate::SessionId;
use crate::seen::{Seen, SeenIds};

/// Supernodes the directory named asked in the first round, and twice as many each round
/// after (32, 64, 128): they were named because they hold the words, so a round asks more
/// of them than of neighbours whose summaries only may, and a query that needs all of
/// them (a rare match spread thin) gets there in a few round trips.
pub const DIRECT_FANOUT: usize = 32;

/// How many (content, holder) pairs a query remembers having passed on, so a holder that
/// two answers name (a leaf attached to two supernodes) goes upstream once. Past it, hits
/// pass on whole: the asking leaf merges by node id anyway, this only saves bytes. 128
/// pairs of 64 bytes bound it at a few KiB per query, about 40 MiB over `max_active`.
pub const MAX_REPORTED_HOLDERS: usize = 128;

/// Tunables of query routing.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// Candidates asked per round.
    pub fanout: usize,
    /// Relays asked per round, once the candidates are exhausted.
    pub relay_fanout: usize,
    /// How long a round waits for its neighbours before the next round starts.
    pub round_timeout: Duration,
    /// How long a leaf's query may run.
    pub leaf_deadline: Duration,
    /// How long a relayed query may run here.
    pub relay_deadline: Duration,
    /// Most queries running at once; more are refused.
    pub max_active: usize,
    /// How long query ids are remembered for duplicate suppression.
    pub remember_ids: Duration,
    /// Most query ids remembered.
    pub max_remembered: usize,
    /// After the last round has timed out and no candidate is left, how long neighbours
    /// that are still silent may take before the query ends anyway (a dead neighbour must
    /// not hold every query until the deadline).
    pub late_grace: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            fanout: 4,
            relay_fanout: 8,
            round_timeout: Duration::from_millis(400),
            leaf_deadline: Duration::from_secs(5),
            relay_deadline: Duration::from_secs(3),
            max_active: 4096,
            remember_ids: Duration::from_secs(60),
            late_grace: Duration::from_millis(800),
            max_remembered: 100_000,
        }
    }
}

/// Where a query may go from a supernode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// Neighbours (other than the asker) whose summaries match, most promising first.
    pub candidates: Vec<SessionId>,
    /// Neighbours linked to supernodes we are not linked to, most promising first: the
    /// second hop, for a query the candidates cannot satisfy.
    pub relays: Vec<SessionId>,
    /// A directory lookup runs for this query: [`Router::directory_done`] will name the
    /// supernodes to ask directly.
    pub directory: bool,
}

/// Who asked for a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Asker {
    /// One of our leaves.
    Leaf(SessionId),
    /// A neighbour relaying it.
    Neighbor(SessionId),
}

/// A message the router wants sent.
#[derive(Clone, Debug, PartialEq)]
pub enum RouterOutput {
    /// To a leaf session.
    ToLeaf(SessionId, SupernodeToLeaf),
    /// To a neighbour session.
    ToNeighbor(SessionId, SupernodeToSupernode),
    /// To a supernode asked directly (the directory named it), by node id.
    ToMember(NodeId, SupernodeToSupernode),
}

/// How [`Router::start`] took a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Started {
    /// Running (or already finished from local hits alone).
    Running,
    /// Seen before; the asker was told it is done.
    Duplicate,
    /// Too many queries running; the asker was told it is done.
    Busy,
}

/// Counters, for status and for tests that count messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Queries started here (from leaves or neighbours), duplicates excluded.
    pub queries: u64,
    /// Of those, relayed to us by a neighbour.
    pub relayed_in: u64,
    /// Query messages sent to neighbours.
    pub forwarded: u64,
    /// Duplicate query ids dropped.
    pub duplicates: u64,
    /// Query messages sent directly to supernodes the directory named.
    pub asked_directly: u64,
    /// Hits left out because every holder in them had been passed on already.
    pub duplicate_holders: u64,
}

/// Where a query's directory lookup stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lookup {
    /// No lookup for this query.
    Off,
    /// Asked; the owners have not all answered.
    Waiting,
    /// The owners answered: `direct` holds whom to ask.
    Answered,
    /// No owner answered: relays are the fallback.
    Failed,
}

#[derive(Debug)]
struct Active {
    query: Query,
    asker: Asker,
    ttl: u8,
    found: FxHashSet<ContentId>,
    /// (content, holder) pairs passed on, up to [`MAX_REPORTED_HOLDERS`].
    reported: FxHashSet<(ContentId, NodeId)>,
    candidates: Vec<SessionId>,
    next_candidate: usize,
    relays: Vec<SessionId>,
    next_relay: usize,
    /// Asked this round, not yet done.
    outstanding: FxHashSet<SessionId>,
    /// Asked at some point and not yet done: their hits are still welcome.
    asked: FxHashSet<SessionId>,
    lookup: Lookup,
    /// Supernodes the directory named, and how far through them we are.
    direct: Vec<NodeId>,
    next_direct: usize,
    direct_rounds: u32,
    /// The neighbours' first round has been answered (or timed out).
    first_round_over: bool,
    /// Of those, asked this round and not done; asked at some point and not done.
    direct_outstanding: FxHashSet<NodeId>,
    direct_asked: FxHashSet<NodeId>,
    round_deadline: Instant,
    deadline: Instant,
}

impl Active {
    /// Every round is over and no candidate is left: only slow neighbours' answers remain.
    fn only_late_left(&self) -> bool {
        self.outstanding.is_empty()
            && self.direct_outstanding.is_empty()
            && (!self.asked.is_empty() || !self.direct_asked.is_empty())
            && self.next_candidate >= self.candidates.len()
            && self.lookup != Lookup::Waiting
            && self.next_direct >= self.direct.len()
            && (!self.relaying() || self.next_relay >= self.relays.len())
    }

    /// Relays are asked: hops are left, and no directory answer made them needless.
    fn relaying(&self) -> bool {
        self.ttl >= 2 && !self.relays.is_empty() && self.lookup != Lookup::Answered
    }

    fn nothing_outstanding(&self) -> bool {
        self.outstanding.is_empty() && self.direct_outstanding.is_empty()
    }
}

/// The query router.
#[derive(Debug)]
pub struct Router {
    config: RouterConfig,
    seen: SeenIds,
    active: FxHashMap<QueryId, Active>,
    out: VecDeque<RouterOutput>,
    stats: RouterStats,
}

impl Router {
    /// A router with `config`.
    pub fn new(config: RouterConfig) -> Self {
        let seen = SeenIds::new(config.remember_ids, config.max_remembered);
        Self {
            config,
            seen,
            active: FxHashMap::default(),
            out: VecDeque::new(),
            stats: RouterStats::default(),
        }
    }

    /// Starts `query` for `asker` with no relays: see [`Router::start_routed`].
    pub fn start(
        &mut self,
        now: Instant,
        query: Query,
        asker: Asker,
        local: Vec<QueryHit>,
        candidates: Vec<SessionId>,
        ttl: u8,
    ) -> Started {
        let targets = Targets {
            candidates,
            relays: Vec::new(),
            directory: false,
        };
        self.start_routed(now, query, asker, local, targets, ttl)
    }

    /// Starts `query` for `asker`. `local` holds our own index's hits; `targets` where it
    /// may go next (relays only with a `ttl` of 2 or more); `ttl` how many more hops the
    /// query may take from here.
    pub fn start_routed(
        &mut self,
        now: Instant,
        query: Query,
        asker: Asker,
        local: Vec<QueryHit>,
        targets: Targets,
        ttl: u8,
    ) -> Started {
        let Targets {
            candidates,
            relays,
            directory,
        } = targets;
        let id = query.id;
        let local = match self.seen.insert(now, id, ttl) {
            Seen::New => local,
            // Our hits went to the first copy's sender; this one asks us to reach further.
            Seen::Deeper if !self.active.contains_key(&id) => Vec::new(),
            Seen::Deeper | Seen::Duplicate => {
                self.stats.duplicates += 1;
                self.tell_done(asker, id, QueryEnd::Exhausted);
                return Started::Duplicate;
            }
        };
        if self.active.len() >= self.config.max_active {
            self.tell_done(asker, id, QueryEnd::Exhausted);
            return Started::Busy;
        }
        self.stats.queries += 1;
        if matches!(asker, Asker::Neighbor(_)) {
            self.stats.relayed_in += 1;
        }
        let deadline = now
            + match asker {
                Asker::Leaf(_) => self.config.leaf_deadline,
                Asker::Neighbor(_) => self.config.relay_deadline,
            };
        let active = Active {
            query,
            asker,
            ttl,
            found: FxHashSet::default(),
            reported: FxHashSet::default(),
            candidates,
            next_candidate: 0,
            relays,
            next_relay: 0,
            outstanding: FxHashSet::default(),
            asked: FxHashSet::default(),
            lookup: if directory {
                Lookup::Waiting
            } else {
                Lookup::Off
            },
            direct: Vec::new(),
            next_direct: 0,
            direct_rounds: 0,
            first_round_over: false,
            direct_outstanding: FxHashSet::default(),
            direct_asked: FxHashSet::default(),
            round_deadline: now,
            deadline,
        };
        self.active.insert(id, active);
        self.deliver(id, local);
        self.advance(now, id);
        Started::Running
    }

    /// Hits for `id` from neighbour `from`.
    ///
    /// Returns how many of them did not match the query's words: they are dropped (an
    /// honest supernode never sends one, so the caller may close the link).
    pub fn handle_hits(
        &mut self,
        now: Instant,
        from: SessionId,
        id: QueryId,
        hits: Vec<QueryHit>,
    ) -> usize {
        let Some(q) = self.active.get(&id) else {
            return 0;
        };
        if !q.asked.contains(&from) {
            return 0; // late, or never asked: not ours to relay
        }
        self.take_hits(now, id, hits)
    }

    /// The directory lookup of `id` is over: `holders` are the supernodes to ask directly
    /// (`None`: no owner answered, so relays are the fallback).
    pub fn directory_done(&mut self, now: Instant, id: QueryId, holders: Option<Vec<NodeId>>) {
        let Some(q) = self.active.get_mut(&id) else {
            return;
        };
        if q.lookup != Lookup::Waiting {
            return;
        }
        match holders {
            Some(holders) => {
                q.lookup = Lookup::Answered;
                q.direct = holders;
            }
            None => q.lookup = Lookup::Failed,
        }
        self.advance(now, id);
    }

    /// The words of running query `id`.
    pub fn keywords_of(&self, id: &QueryId) -> Option<Vec<String>> {
        self.active.get(id).map(|q| q.query.keywords.clone())
    }

    /// Whether query `id` is still running.
    pub fn is_active(&self, id: &QueryId) -> bool {
        self.active.contains_key(id)
    }

    /// Hits for `id` from `from`, a supernode asked directly. Returns how many did not
    /// match the query's words (see [`Router::handle_hits`]).
    pub fn handle_direct_hits(
        &mut self,
        now: Instant,
        from: NodeId,
        id: QueryId,
        hits: Vec<QueryHit>,
    ) -> usize {
        let Some(q) = self.active.get(&id) else {
            return 0;
        };
        if !q.direct_asked.contains(&from) {
            return 0;
        }
        self.take_hits(now, id, hits)
    }

    /// Passes on the hits that match the query's words and moves it on; returns how many
    /// did not match.
    fn take_hits(&mut self, now: Instant, id: QueryId, hits: Vec<QueryHit>) -> usize {
        let Some(q) = self.active.get(&id) else {
            return 0;
        };
        let before = hits.len();
        let hits: Vec<QueryHit> = hits
            .into_iter()
            .filter(|hit| hit_matches(hit, &q.query.keywords))
            .collect();
        let unmatched = before - hits.len();
        self.deliver(id, hits);
        self.advance(now, id);
        unmatched
    }

    /// `QueryDone` for `id` from `from`, a supernode asked directly.
    pub fn handle_direct_done(&mut self, now: Instant, from: NodeId, id: QueryId) {
        let Some(q) = self.active.get_mut(&id) else {
            return;
        };
        q.direct_outstanding.remove(&from);
        q.direct_asked.remove(&from);
        self.advance(now, id);
    }

    /// A supernode asked directly cannot be reached: not waited for any more.
    pub fn member_gone(&mut self, now: Instant, node: NodeId) {
        let ids: Vec<QueryId> = self
            .active
            .iter()
            .filter(|(_, q)| q.direct_asked.contains(&node))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.handle_direct_done(now, node, id);
        }
    }

    /// Queries running for neighbour `session`.
    pub fn running_for(&self, session: SessionId) -> usize {
        self.active
            .values()
            .filter(|q| q.asker == Asker::Neighbor(session))
            .count()
    }

    /// `QueryDone` for `id` from `from`: a neighbour we asked has finished, or the neighbour
    /// that asked us wants it stopped.
    pub fn handle_done(&mut self, now: Instant, from: SessionId, id: QueryId) {
        let Some(q) = self.active.get_mut(&id) else {
            return;
        };
        if q.asker == Asker::Neighbor(from) {
            self.finish(id, QueryEnd::Cancelled);
            return;
        }
        q.outstanding.remove(&from);
        q.asked.remove(&from);
        self.advance(now, id);
    }

    /// A leaf cancels its query.
    pub fn cancel(&mut self, leaf: SessionId, id: QueryId) {
        if self
            .active
            .get(&id)
            .is_some_and(|q| q.asker == Asker::Leaf(leaf))
        {
            self.finish(id, QueryEnd::Cancelled);
        }
    }

    /// A session ended: its queries stop; it is no longer waited for or asked.
    pub fn session_gone(&mut self, now: Instant, session: SessionId) {
        let ids: Vec<QueryId> = self.active.keys().copied().collect();
        for id in ids {
            let Some(q) = self.active.get_mut(&id) else {
                continue;
            };
            if q.asker == Asker::Leaf(session) || q.asker == Asker::Neighbor(session) {
                // Nobody to answer: stop without telling the gone session.
                let q = self.active.remove(&id);
                if let Some(q) = q {
                    self.stop_downstream(id, &q);
                }
                continue;
            }
            q.outstanding.remove(&session);
            q.asked.remove(&session);
            q.candidates.retain(|c| *c != session);
            q.next_candidate = q.next_candidate.min(q.candidates.len());
            q.relays.retain(|c| *c != session);
            q.next_relay = q.next_relay.min(q.relays.len());
            self.advance(now, id);
        }
    }

    /// Runs the clock: deadlines and round timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        let grace = self.config.late_grace;
        let due: Vec<(QueryId, bool, bool)> = self
            .active
            .iter()
            .filter(|(_, q)| {
                now >= q.deadline
                    || (now >= q.round_deadline && !q.nothing_outstanding())
                    || (q.only_late_left() && now >= q.round_deadline + grace)
            })
            .map(|(id, q)| (*id, now >= q.deadline, q.only_late_left()))
            .collect();
        for (id, past_deadline, only_late) in due {
            if past_deadline {
                self.finish(id, QueryEnd::Deadline);
            } else if only_late {
                self.finish(id, QueryEnd::Exhausted);
            } else if let Some(q) = self.active.get_mut(&id) {
                // Slow neighbours stop holding up the next round; their hits stay welcome.
                q.outstanding.clear();
                q.direct_outstanding.clear();
                self.advance(now, id);
            }
        }
    }

    /// The next message to send.
    pub fn poll_output(&mut self) -> Option<RouterOutput> {
        self.out.pop_front()
    }

    /// When [`Router::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let grace = self.config.late_grace;
        self.active
            .values()
            .map(|q| {
                if q.only_late_left() {
                    (q.round_deadline + grace).min(q.deadline)
                } else if q.nothing_outstanding() {
                    q.deadline
                } else {
                    q.round_deadline.min(q.deadline)
                }
            })
            .min()
    }

    /// Counters so far.
    pub fn stats(&self) -> RouterStats {
        self.stats
    }

    /// Queries running.
    pub fn active(&self) -> usize {
        self.active.len()
    }

    /// Sends hits to the asker, up to `want` distinct contents in all.
    fn deliver(&mut self, id: QueryId, hits: Vec<QueryHit>) {
        let Some(q) = self.active.get_mut(&id) else {
            return;
        };
        let want = q.query.want as usize;
        let mut fresh = Vec::new();
        for mut hit in hits {
            let known = q.found.contains(&hit.content_id);
            if !known && q.found.len() >= want {
                continue;
            }
            // A holder already passed on for this content (reported again by another
            // supernode it is attached to) is left out.
            let content = hit.content_id;
            hit.holders.retain(|h| {
                if q.reported.contains(&(content, h.node_id)) {
                    return false;
                }
                if q.reported.len() < MAX_REPORTED_HOLDERS {
                    q.reported.insert((content, h.node_id));
                }
                true
            });
            if hit.holders.is_empty() {
                self.stats.duplicate_holders += 1;
                continue;
            }
            // More holders of content already reported cost no slot.
            q.found.insert(content);
            fresh.push(hit);
        }
        let asker = q.asker;
        for chunk in fresh.chunks(MAX_HITS_PER_MESSAGE) {
            let hits = chunk.to_vec();
            self.out.push_back(match asker {
                Asker::Leaf(s) => RouterOutput::ToLeaf(s, SupernodeToLeaf::Hits { id, hits }),
                Asker::Neighbor(s) => {
                    RouterOutput::ToNeighbor(s, SupernodeToSupernode::Hits { id, hits })
                }
            });
        }
    }

    /// Moves a query on: finish when enough, start the next round when the last is over.
    fn advance(&mut self, now: Instant, id: QueryId) {
        let Some(q) = self.active.get_mut(&id) else {
            return;
        };
        if q.found.len() >= q.query.want as usize {
            self.finish(id, QueryEnd::Enough);
            return;
        }
        // The supernodes the directory named are asked beside the neighbours' rounds, once
        // the first of those is over (a popular query ends there, and pays no direct ask).
        let first_round_over = q.ttl == 0
            || q.candidates.is_empty()
            || (q.next_candidate > 0 && (q.outstanding.is_empty() || q.first_round_over));
        q.first_round_over = first_round_over;
        if q.lookup == Lookup::Answered
            && first_round_over
            && q.direct_outstanding.is_empty()
            && q.next_direct < q.direct.len()
        {
            self.ask_direct(now, id);
        }
        let Some(q) = self.active.get_mut(&id) else {
            return;
        };
        if !q.outstanding.is_empty() {
            return;
        }
        let fast_path_done = q.ttl == 0 || q.next_candidate >= q.candidates.len();
        if fast_path_done && q.lookup == Lookup::Waiting {
            return; // the directory's answer moves it on
        }
        if fast_path_done && (!q.direct_outstanding.is_empty() || q.next_direct < q.direct.len()) {
            return; // the direct rounds are still going
        }
        let relaying = q.relaying();
        let (round, ttl): (Vec<SessionId>, u8) =
            if q.ttl > 0 && q.next_candidate < q.candidates.len() {
                let round: Vec<SessionId> = q
                    .candidates
                    .iter()
                    .skip(q.next_candidate)
                    .take(self.config.fanout)
                    .copied()
                    .collect();
                q.next_candidate += round.len();
                // With relays to reach further, a candidate only answers for itself.
                (round, if relaying { 0 } else { q.ttl - 1 })
            } else if relaying && q.next_relay < q.relays.len() {
                // A candidate still late with its answer is not asked again meanwhile: its
                // `QueryDone` would end both.
                let mut round = Vec::new();
                while round.len() < self.config.relay_fanout {
                    let Some(&relay) = q.relays.get(q.next_relay) else {
                        break;
                    };
                    q.next_relay += 1;
                    if !q.asked.contains(&relay) {
                        round.push(relay);
                    }
                }
                if round.is_empty() {
                    return;
                }
                (round, q.ttl - 1)
            } else {
                if q.asked.is_empty() && q.direct_asked.is_empty() {
                    self.finish(id, QueryEnd::Exhausted);
                }
                // Otherwise late neighbours may still send hits until they finish or the deadline.
                return;
            };
        q.round_deadline = now + self.config.round_timeout;
        let still_wanted = (q.query.want as usize).saturating_sub(q.found.len());
        let forwarded = Query {
            id,
            keywords: q.query.keywords.clone(),
            want: u32::try_from(still_wanted).unwrap_or(u32::MAX),
        };
        for session in round {
            q.outstanding.insert(session);
            q.asked.insert(session);
            self.stats.forwarded += 1;
            self.out.push_back(RouterOutput::ToNeighbor(
                session,
                SupernodeToSupernode::Query {
                    query: forwarded.clone(),
                    ttl,
                },
            ));
        }
    }

    /// The next round of supernodes the directory named: 32, then 64, then 128.
    fn ask_direct(&mut self, now: Instant, id: QueryId) {
        let Some(q) = self.active.get_mut(&id) else {
            return;
        };
        let round: Vec<NodeId> = q
            .direct
            .iter()
            .skip(q.next_direct)
            .take(DIRECT_FANOUT << q.direct_rounds.min(4))
            .copied()
            .collect();
        q.next_direct += round.len();
        q.direct_rounds += 1;
        q.round_deadline = now + self.config.round_timeout;
        // The whole `want`: a holder asked for only what is still missing would send its
        // first matches, often ones we have already.
        let asked = Query {
            id,
            keywords: q.query.keywords.clone(),
            want: q.query.want,
        };
        for node in round {
            q.direct_outstanding.insert(node);
            q.direct_asked.insert(node);
            self.stats.asked_directly += 1;
            self.out.push_back(RouterOutput::ToMember(
                node,
                SupernodeToSupernode::Query {
                    query: asked.clone(),
                    ttl: 0,
                },
            ));
        }
    }

    fn finish(&mut self, id: QueryId, end: QueryEnd) {
        let Some(q) = self.active.remove(&id) else {
            return;
        };
        self.tell_done(q.asker, id, end);
        self.stop_downstream(id, &q);
    }

    /// Neighbours still working on a finished query are told to stop.
    fn stop_downstream(&mut self, id: QueryId, q: &Active) {
        for session in &q.asked {
            self.out.push_back(RouterOutput::ToNeighbor(
                *session,
                SupernodeToSupernode::QueryDone { id },
            ));
        }
        for node in &q.direct_asked {
            self.out.push_back(RouterOutput::ToMember(
                *node,
                SupernodeToSupernode::QueryDone { id },
            ));
        }
    }

    fn tell_done(&mut self, asker: Asker, id: QueryId, end: QueryEnd) {
        self.out.push_back(match asker {
            Asker::Leaf(s) => RouterOutput::ToLeaf(s, SupernodeToLeaf::QueryDone { id, end }),
            Asker::Neighbor(s) => {
                RouterOutput::ToNeighbor(s, SupernodeToSupernode::QueryDone { id })
            }
        });
    }
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;

/// Whether `hit` matches every one of `keywords` as the index matches them: a content id
/// keyword (what `get` searches for) by the hit's id, any other as a whole word of its name.
fn hit_matches(hit: &QueryHit, keywords: &[String]) -> bool {
    let words = superpeer_common::keywords(&hit.name);
    keywords
        .iter()
        .all(|k| match crate::index::content_keyword(k) {
            Some(id) => hit.content_id == id,
            None => words.iter().any(|w| w == k),
        })
}
