//! The leaf's searches: ids, deadlines, merging what several supernodes say about one
//! content, and pacing under the query rate the supernode announced.
//!
//! A supernode refuses queries past its per-leaf token bucket (`SupernodeToLeaf::Limits`
//! says its size and rate). A leaf that knows the limit keeps its own bucket, one token
//! short of the supernode's, and holds back a search that would overrun it in a short queue,
//! in order; only past [`MAX_QUEUED_SEARCHES`] is a search refused, with a clear reason. The
//! supernode's bucket starts full when the leaf attaches, no later than ours starts (on the
//! `Limits` message), so ours never has a token the supernode's lacks.
//!
//! A supernode decides what it sends us, so a search keeps only what we asked for: the
//! first `want` results (a content at one size; at most [`MAX_CONTENTS_PER_SEARCH`]),
//! [`MAX_HOLDERS_PER_HIT`] holders each and [`MAX_HOLDERS_PER_SEARCH`] in all; no name is
//! kept (each hit passed on carries its own). Past that, hits are dropped unread, so a
//! flood costs a search a bounded table and the
//! asker a bounded number of results, whatever arrives before the deadline.
//!
//! A search outlives the supernode it went to when a spare takes over
//! ([`Searches::resend`]): it goes out again to the new supernode under a fresh wire id (the
//! new supernode may have seen the old id forwarded by the dead one, and would drop it as
//! a duplicate), and answers to the wire id are passed on under the user's id.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use superpeer_common::wire::{
    Holder, LeafLimits, MAX_HOLDERS_PER_HIT, Query, QueryHit, QueryId, SupernodeToLeaf,
};
use superpeer_common::{ContentId, TokenBucket};

use crate::names::printable;

/// Longest a search runs on the leaf's side, from when it went to the supernode.
pub const SEARCH_DEADLINE: Duration = Duration::from_secs(12);

/// Searches held back by the pacing at most; past it a search is refused.
pub const MAX_QUEUED_SEARCHES: usize = 64;

/// Searches running at once at most (each holds a table of what it has reported).
pub const MAX_RUNNING_SEARCHES: usize = 256;

/// The query rate assumed until the supernode announces its own (the supernode default).
pub const ASSUMED_LIMITS: LeafLimits = LeafLimits {
    query_interval_ms: 200,
    query_burst: 20,
    max_entries: 10_000,
};

/// Most distinct contents one search reports, whatever `want` says: the most a control
/// request may ask for (`control::MAX_WANT`). A search stops taking new contents at its
/// `want`; a supernode that sends more is ignored past it.
pub const MAX_CONTENTS_PER_SEARCH: usize = 1_000;

/// Most holders one search keeps, over all its contents (each at most
/// `MAX_HOLDERS_PER_HIT`): with [`MAX_RUNNING_SEARCHES`], what a flood of hits can make
/// the search table hold (256 x 4,096 holders of about 60 bytes: some 60 MB at worst).
pub const MAX_HOLDERS_PER_SEARCH: usize = 4_096;

/// What a search produced, for the driver to pass on to whoever asked.
#[derive(Clone, Debug, PartialEq)]
pub enum SearchOutput {
    /// New results (or known ones with new holders: they carry every holder known so far).
    Hits(QueryId, Vec<QueryHit>),
    /// The search is over; `Some(reason)` when it was refused (already printable).
    Over(QueryId, Option<String>),
}

struct Running {
    /// The id the supernode knows this search by (the user's id until it is sent again).
    wire: QueryId,
    keywords: Vec<String>,
    /// The `want` it was sent with.
    asked: u32,
    /// Whether any result was passed on.
    answered: bool,
    /// Holders reported so far, per content and size (a holder that gives another size is
    /// another result: a false size must not hide the holders of the true one).
    seen: HashMap<(ContentId, u64), Vec<Holder>>,
    /// Holders in `seen`, all results together.
    holders: usize,
    /// Results (content and size) it takes at most: the query's `want`, capped.
    want: usize,
    deadline: Instant,
}

/// The search table and the pacing queue.
pub struct Searches {
    running: HashMap<QueryId, Running>,
    /// Wire ids of searches sent again, to the user's id (one per running search at most).
    aliases: HashMap<QueryId, QueryId>,
    queued: VecDeque<Query>,
    bucket: TokenBucket,
    limits: LeafLimits,
    /// Attached, and the supernode's limits not in yet: searches wait for them.
    held: bool,
}

impl Searches {
    pub fn new(now: Instant) -> Self {
        Self {
            running: HashMap::new(),
            aliases: HashMap::new(),
            queued: VecDeque::new(),
            bucket: bucket(now, ASSUMED_LIMITS),
            limits: ASSUMED_LIMITS,
            held: false,
        }
    }

    /// The limits of a newly attached supernode: its bucket starts full, so ours does too.
    pub fn set_limits(&mut self, now: Instant, limits: LeafLimits) {
        self.limits = limits;
        self.bucket = bucket(now, limits);
        self.held = false;
    }

    /// A new supernode welcomed us: its limits come next; until then searches wait, so
    /// none is sent on a bucket the supernode does not share.
    pub fn hold(&mut self) {
        self.held = true;
    }

    /// Takes `query` on. Returns it when it may go to the supernode now; `Ok(None)` when it
    /// waits its turn in the queue; `Err` past the queue or the running cap.
    pub fn start(
        &mut self,
        now: Instant,
        query: Query,
        paced: bool,
    ) -> Result<Option<Query>, String> {
        if self.running.len() + self.queued.len() >= MAX_RUNNING_SEARCHES {
            return Err("too many searches running at once; wait for some to end".into());
        }
        if paced && (self.held || !self.queued.is_empty() || !self.bucket.try_take(now)) {
            if self.queued.len() >= MAX_QUEUED_SEARCHES {
                return Err(format!(
                    "too many searches at once: {MAX_QUEUED_SEARCHES} are already waiting for \
                     the supernode's query limit; slow down"
                ));
            }
            self.queued.push_back(query);
            return Ok(None);
        }
        self.sent(now, &query);
        Ok(Some(query))
    }

    /// Queued searches whose turn has come, in order.
    pub fn poll_queued(&mut self, now: Instant) -> Vec<Query> {
        let mut due = Vec::new();
        while !self.held && !self.queued.is_empty() && self.bucket.try_take(now) {
            if let Some(query) = self.queued.pop_front() {
                self.sent(now, &query);
                due.push(query);
            }
        }
        due
    }

    /// When the next queued search may go (`None` with nothing queued).
    pub fn next_release(&self, now: Instant) -> Option<Instant> {
        if self.queued.is_empty() || self.held {
            return None;
        }
        Some(now + Duration::from_millis(u64::from(self.limits.query_interval_ms).min(60_000) / 4))
    }

    fn sent(&mut self, now: Instant, query: &Query) {
        let want = usize::try_from(query.want).unwrap_or(usize::MAX);
        self.running.insert(
            query.id,
            Running {
                wire: query.id,
                keywords: query.keywords.clone(),
                asked: query.want,
                answered: false,
                seen: HashMap::new(),
                holders: 0,
                want: want.clamp(1, MAX_CONTENTS_PER_SEARCH),
                deadline: now + SEARCH_DEADLINE,
            },
        );
    }

    /// The asker went away: forget the search. Returns whether it had gone out (the
    /// supernode should be told to stop).
    /// Returns the id the supernode knows it by, if it had gone out (the supernode should
    /// be told to stop).
    pub fn cancel(&mut self, id: &QueryId) -> Option<QueryId> {
        self.queued.retain(|q| q.id != *id);
        let running = self.running.remove(id)?;
        self.aliases.remove(&running.wire);
        Some(running.wire)
    }

    /// A new supernode took over from the one the running searches went to: each goes out
    /// again under a fresh wire id (from `fresh_id`), as many as the new supernode's bucket
    /// allows now; the rest end with `why`. Returns the queries to send and the ended.
    pub fn resend(
        &mut self,
        now: Instant,
        mut fresh_id: impl FnMut() -> QueryId,
        why: &str,
    ) -> (Vec<Query>, Vec<SearchOutput>) {
        let mut order: Vec<(Instant, QueryId)> = self
            .running
            .iter()
            .map(|(id, s)| (s.deadline, *id))
            .collect();
        order.sort();
        let (mut again, mut over) = (Vec::new(), Vec::new());
        for (_, id) in order {
            let Some(search) = self.running.get_mut(&id) else {
                continue;
            };
            if self.held || !self.bucket.try_take(now) {
                let answered = search.answered;
                self.running.remove(&id);
                over.push(SearchOutput::Over(id, (!answered).then(|| why.to_string())));
                continue;
            }
            self.aliases.remove(&search.wire);
            search.wire = fresh_id();
            self.aliases.insert(search.wire, id);
            again.push(Query {
                id: search.wire,
                keywords: search.keywords.clone(),
                want: search.asked,
            });
        }
        self.aliases
            .retain(|_, user| self.running.contains_key(user));
        (again, over)
    }

    /// The user's id of a search the supernode knows as `wire`.
    fn user_id(&self, wire: QueryId) -> QueryId {
        self.aliases.get(&wire).copied().unwrap_or(wire)
    }

    fn remove(&mut self, id: &QueryId) -> Option<Running> {
        let running = self.running.remove(id)?;
        self.aliases.remove(&running.wire);
        Some(running)
    }

    /// A supernode's answer; what to pass on.
    pub fn answer(&mut self, msg: SupernodeToLeaf) -> Option<SearchOutput> {
        match msg {
            SupernodeToLeaf::Hits { id, hits } => {
                let id = self.user_id(id);
                let search = self.running.get_mut(&id)?;
                let fresh: Vec<QueryHit> = hits
                    .into_iter()
                    .filter_map(|hit| search.take(hit))
                    .collect();
                if fresh.is_empty() {
                    return None;
                }
                search.answered = true;
                Some(SearchOutput::Hits(id, fresh))
            }
            SupernodeToLeaf::QueryDone { id, .. } => {
                let id = self.user_id(id);
                self.remove(&id)?;
                Some(SearchOutput::Over(id, None))
            }
            SupernodeToLeaf::QueryRefused { id, reason } => {
                let id = self.user_id(id);
                self.remove(&id)?;
                let reason = format!("the supernode refused the search: {}", printable(&reason));
                Some(SearchOutput::Over(id, Some(reason)))
            }
            _ => None,
        }
    }

    /// Searches past their deadline, ended.
    pub fn expire(&mut self, now: Instant) -> Vec<SearchOutput> {
        let over: Vec<QueryId> = self
            .running
            .iter()
            .filter(|(_, s)| now >= s.deadline)
            .map(|(id, _)| *id)
            .collect();
        over.into_iter()
            .map(|id| {
                self.remove(&id);
                SearchOutput::Over(id, None)
            })
            .collect()
    }

    /// The earliest deadline of a running search.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.running.values().map(|s| s.deadline).min()
    }

    /// The supernode went away or we changed role: every search ends (its answers would
    /// come from a session that no longer exists). One that has passed nothing on yet ends
    /// with `why`, so "nothing matched" is never said of a search that did not run.
    pub fn end_all(&mut self, why: &str) -> Vec<SearchOutput> {
        self.aliases.clear();
        let mut over: Vec<SearchOutput> = self
            .running
            .drain()
            .map(|(id, s)| SearchOutput::Over(id, (!s.answered).then(|| why.to_string())))
            .collect();
        over.extend(
            self.queued
                .drain(..)
                .map(|q| SearchOutput::Over(q.id, Some(why.to_string()))),
        );
        over
    }

    /// Searches running and queued.
    pub fn len(&self) -> (usize, usize) {
        (self.running.len(), self.queued.len())
    }

    /// Contents and holders the running searches hold, all together: what the caps bound.
    #[cfg(test)]
    pub fn held(&self) -> (usize, usize) {
        self.running
            .values()
            .fold((0, 0), |(c, h), s| (c + s.seen.len(), h + s.holders))
    }
}

impl Running {
    /// Merges one hit; returns what to pass on, if anything is new. The same content from
    /// another supernode is passed on again only if it brings holders not reported yet,
    /// with every holder known so far (a later result for a content id supersedes the
    /// earlier one).
    fn take(&mut self, mut hit: QueryHit) -> Option<QueryHit> {
        if hit.validate().is_err() {
            return None;
        }
        let key = (hit.content_id, hit.size);
        if !self.seen.contains_key(&key) && self.seen.len() >= self.want {
            return None;
        }
        if self.holders >= MAX_HOLDERS_PER_SEARCH {
            return None;
        }
        let known = self.seen.entry(key).or_default();
        let before = known.len();
        for holder in &hit.holders {
            if known.len() >= MAX_HOLDERS_PER_HIT || self.holders >= MAX_HOLDERS_PER_SEARCH {
                break;
            }
            // One holder per node id: a leaf attached to two supernodes is reported by
            // both (perhaps with a different `via`), and it is still one source.
            if !known.iter().any(|k| k.node_id == holder.node_id) {
                known.push(*holder);
                self.holders += 1;
            }
        }
        if known.len() == before {
            return None;
        }
        hit.holders = known.clone();
        Some(hit)
    }
}

/// Our bucket for `limits`: one token short of the supernode's, so timing differences
/// between the two never make us spend a token it does not have.
fn bucket(now: Instant, limits: LeafLimits) -> TokenBucket {
    let per_second = if limits.query_interval_ms == 0 {
        1000.0
    } else {
        1000.0 / f64::from(limits.query_interval_ms)
    };
    // A margin on the rate too: our clock and the supernode's see the same gaps only up
    // to network jitter.
    TokenBucket::new(
        now,
        per_second * 0.95,
        limits.query_burst.saturating_sub(1).max(1),
    )
}
