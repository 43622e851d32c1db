//! Asking the owners who holds a query's words.
//!
//! Lookups for every query word go out at once (a query has at most a few words, and one
//! round trip for all costs less time than asking for counts first), each to the word's
//! first two owners: their answers are merged, so an owner that has only just become one
//! (a member joined, or one ranked above it died) and has not been told everything yet
//! does not hide what the other knows. An owner that says it does not own the word, does
//! not answer within [`LOOKUP_TIMEOUT`] or cannot be reached is replaced by the next
//! (unless the other has answered already: a slow owner costs at most one timeout). When
//! every word is settled, the supernodes to ask are those on every complete list (a list
//! an owner capped cannot rule anyone out), the most entries of the rarest word first: an
//! owner of one word cannot filter by the others, so the asker intersects.

use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use superpeer_common::NodeId;
use superpeer_common::wire::{DirHolder, QueryId, SupernodeToSupernode};

use super::members::MemberSet;

/// How long an owner may take to answer a lookup before the next owner is asked.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);
/// Most supernodes one query asks directly.
pub const MAX_DIRECT_ASKED: usize = 256;
/// Owners asked about each word at once, whose answers are merged.
pub const OWNERS_ASKED: usize = 2;

#[derive(Debug)]
struct WordLookup {
    keyword: String,
    owners: Vec<NodeId>,
    /// Index in `owners` of the next one to ask.
    next: usize,
    /// Asked and not answered yet, with when.
    waiting: Vec<(NodeId, Instant)>,
    /// (total, holders) from each owner that answered.
    answers: Vec<(u32, Vec<DirHolder>)>,
}

impl WordLookup {
    fn settled(&self) -> bool {
        self.answers.len() >= OWNERS_ASKED
            || (self.waiting.is_empty() && self.next >= self.owners.len())
    }

    /// Asks the next owners until [`OWNERS_ASKED`] are answered or asked.
    fn ask_more(&mut self, now: Instant, id: QueryId, steps: &mut Vec<LookupStep>) {
        while self.answers.len() + self.waiting.len() < OWNERS_ASKED {
            let Some(owner) = self.owners.get(self.next).copied() else {
                return;
            };
            self.next += 1;
            self.waiting.push((owner, now));
            steps.push(LookupStep::Send(
                owner,
                SupernodeToSupernode::DirLookup {
                    id,
                    keyword: self.keyword.clone(),
                },
            ));
        }
    }

    /// `owner` will not answer: the next is asked, unless another answered already.
    fn give_up_on(
        &mut self,
        now: Instant,
        id: QueryId,
        owner: NodeId,
        steps: &mut Vec<LookupStep>,
    ) {
        self.waiting.retain(|(o, _)| *o != owner);
        if self.answers.is_empty() {
            self.ask_more(now, id, steps);
        } else if self.waiting.is_empty() {
            self.next = self.owners.len(); // settled on what we have
        }
    }

    /// The owners' answers merged: every holder either named (with the larger count), the
    /// larger total, and whether every answer was complete.
    fn merged(&self) -> Option<(u32, Vec<DirHolder>, bool)> {
        if self.answers.is_empty() {
            return None;
        }
        let mut holders: FxHashMap<NodeId, u32> = FxHashMap::default();
        let mut total = 0;
        let mut complete = true;
        for (t, named) in &self.answers {
            total = total.max(*t);
            complete &= named.len() as u64 >= u64::from(*t);
            for h in named {
                let count = holders.entry(h.node_id).or_default();
                *count = (*count).max(h.count);
            }
        }
        let holders = holders
            .into_iter()
            .map(|(node_id, count)| DirHolder { node_id, count })
            .collect();
        Some((total, holders, complete))
    }
}

/// What a lookup step asks of the caller.
#[derive(Debug, PartialEq)]
pub enum LookupStep {
    /// Send this to a member.
    Send(NodeId, SupernodeToSupernode),
    /// Every word is settled: these supernodes may hold a match (`None`: no owner
    /// answered for any word, so the directory could not help).
    Done(QueryId, Option<Vec<NodeId>>),
}

/// Running lookups.
#[derive(Debug, Default)]
pub struct Lookups {
    active: FxHashMap<QueryId, Vec<WordLookup>>,
}

impl Lookups {
    pub fn len(&self) -> usize {
        self.active.len()
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// Starts the lookups of query `id`'s `keywords`. Owners are ranked over `members`;
    /// `me` is skipped as an owner (what we own we were told too, as the others were).
    pub fn start(
        &mut self,
        now: Instant,
        id: QueryId,
        keywords: &[String],
        members: &MemberSet,
        me: NodeId,
    ) -> Vec<LookupStep> {
        let mut steps = Vec::new();
        let words = keywords
            .iter()
            .map(|keyword| {
                let mut w = WordLookup {
                    keyword: keyword.clone(),
                    owners: members
                        .owners(keyword)
                        .into_iter()
                        .map(|(_, id)| id)
                        .filter(|id| *id != me)
                        .collect(),
                    next: 0,
                    waiting: Vec::new(),
                    answers: Vec::new(),
                };
                w.ask_more(now, id, &mut steps);
                w
            })
            .collect();
        self.active.insert(id, words);
        self.check_done(id, &mut steps);
        steps
    }

    /// An owner's answer: the total and the holders it named, or `None` when it says it
    /// does not own the word.
    pub fn answered(
        &mut self,
        now: Instant,
        from: NodeId,
        id: QueryId,
        keyword: &str,
        answer: Option<(u32, Vec<DirHolder>)>,
    ) -> Vec<LookupStep> {
        let mut steps = Vec::new();
        let Some(words) = self.active.get_mut(&id) else {
            return steps;
        };
        for w in words.iter_mut() {
            let asked = w.waiting.iter().any(|(o, _)| *o == from);
            if w.keyword != keyword || !asked {
                continue;
            }
            match &answer {
                Some(answer) => {
                    w.waiting.retain(|(o, _)| *o != from);
                    w.answers.push(answer.clone());
                }
                None => w.give_up_on(now, id, from, &mut steps),
            }
        }
        self.check_done(id, &mut steps);
        steps
    }

    /// `node` cannot be reached: lookups waiting on it move to the next owner.
    pub fn unreachable(&mut self, now: Instant, node: NodeId) -> Vec<LookupStep> {
        self.each_stuck(now, |owner, _| owner == node)
    }

    /// Lookups whose owner has not answered in time move to the next owner.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<LookupStep> {
        self.each_stuck(now, |_, asked| now >= asked + LOOKUP_TIMEOUT)
    }

    /// When [`Lookups::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.active
            .values()
            .flatten()
            .flat_map(|w| w.waiting.iter())
            .map(|(_, asked)| *asked + LOOKUP_TIMEOUT)
            .min()
    }

    /// The query ended: its lookups are forgotten.
    pub fn cancel(&mut self, id: &QueryId) {
        self.active.remove(id);
    }

    fn each_stuck(
        &mut self,
        now: Instant,
        stuck: impl Fn(NodeId, Instant) -> bool,
    ) -> Vec<LookupStep> {
        let mut steps = Vec::new();
        let ids: Vec<QueryId> = self.active.keys().copied().collect();
        for id in ids {
            let Some(words) = self.active.get_mut(&id) else {
                continue;
            };
            let mut moved = false;
            for w in words.iter_mut() {
                let gone: Vec<NodeId> = w
                    .waiting
                    .iter()
                    .filter(|(o, at)| stuck(*o, *at))
                    .map(|(o, _)| *o)
                    .collect();
                for owner in gone {
                    w.give_up_on(now, id, owner, &mut steps);
                    moved = true;
                }
            }
            if moved {
                self.check_done(id, &mut steps);
            }
        }
        steps
    }

    fn check_done(&mut self, id: QueryId, steps: &mut Vec<LookupStep>) {
        let settled = self
            .active
            .get(&id)
            .is_some_and(|words| words.iter().all(WordLookup::settled));
        if settled {
            if let Some(words) = self.active.remove(&id) {
                steps.push(LookupStep::Done(id, candidates(&words)));
            }
        }
    }
}

/// The supernodes that may hold every word: on every complete answer (or, with none
/// complete, on the shortest). Most promising first: the most entries for the word they
/// have fewest of (a supernode with many entries for every word more likely holds one
/// entry with all of them), then for the rarest word.
fn candidates(words: &[WordLookup]) -> Option<Vec<NodeId>> {
    let answers: Vec<(u32, Vec<DirHolder>, bool)> =
        words.iter().filter_map(WordLookup::merged).collect();
    let rarest = answers.iter().min_by_key(|(total, _, _)| *total)?;
    let on_every: Vec<FxHashMap<NodeId, u32>> = answers
        .iter()
        .filter(|(_, _, complete)| *complete)
        .map(|(_, holders, _)| holders.iter().map(|h| (h.node_id, h.count)).collect())
        .collect();
    let mut chosen: Vec<(u32, u32, NodeId)> = rarest
        .1
        .iter()
        .filter_map(|h| {
            let mut least = h.count;
            for counts in &on_every {
                least = least.min(*counts.get(&h.node_id)?);
            }
            Some((least, h.count, h.node_id))
        })
        .collect();
    chosen.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    Some(
        chosen
            .into_iter()
            .map(|(_, _, id)| id)
            .take(MAX_DIRECT_ASKED)
            .collect(),
    )
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
mod tests;
