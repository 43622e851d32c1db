//! Asking the owners who holds a query's words.
//!
//! One lookup per query word goes to the word's first owner at once (a query has at most
//! a few words, and asking all in one round trip costs less time than asking for counts
//! first). An owner that says it does not own the word, does not answer within
//! [`LOOKUP_TIMEOUT`] or cannot be reached is replaced by the next owner. When every word
//! is settled, the supernodes to ask are those on every complete list (a list the owner
//! capped cannot rule anyone out), the most entries of the rarest word first: an owner of
//! one word cannot filter by the others, so the asker intersects.

use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};
use superpeer_common::NodeId;
use superpeer_common::wire::{DirHolder, QueryId, SupernodeToSupernode};

use super::members::MemberSet;

/// How long an owner may take to answer a lookup before the next owner is asked.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);
/// Most supernodes one query asks directly.
pub const MAX_DIRECT_ASKED: usize = 64;

#[derive(Debug)]
struct WordLookup {
    keyword: String,
    owners: Vec<NodeId>,
    /// Index in `owners` of the one asked now.
    asking: usize,
    asked_at: Instant,
    /// (total, holders) once an owner answered.
    answer: Option<(u32, Vec<DirHolder>)>,
}

impl WordLookup {
    fn settled(&self) -> bool {
        self.answer.is_some() || self.asking >= self.owners.len()
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
    /// `me` is skipped as an owner (the caller answers its own store first).
    pub fn start(
        &mut self,
        now: Instant,
        id: QueryId,
        keywords: &[String],
        members: &MemberSet,
        me: NodeId,
    ) -> Vec<LookupStep> {
        let words = keywords
            .iter()
            .map(|keyword| WordLookup {
                keyword: keyword.clone(),
                owners: members
                    .owners(keyword)
                    .into_iter()
                    .map(|(_, id)| id)
                    .filter(|id| *id != me)
                    .collect(),
                asking: 0,
                asked_at: now,
                answer: None,
            })
            .collect();
        self.active.insert(id, words);
        let mut steps = Vec::new();
        if let Some(words) = self.active.get(&id) {
            for w in words {
                if let Some(owner) = w.owners.first() {
                    steps.push(ask(id, *owner, &w.keyword));
                }
            }
        }
        self.check_done(id, &mut steps);
        steps
    }

    /// Our own store answers for a word we own (no message needed).
    pub fn answer_locally(
        &mut self,
        id: QueryId,
        keyword: &str,
        total: u32,
        holders: Vec<DirHolder>,
    ) -> Vec<LookupStep> {
        let mut steps = Vec::new();
        if let Some(words) = self.active.get_mut(&id) {
            for w in words
                .iter_mut()
                .filter(|w| w.keyword == keyword && w.answer.is_none())
            {
                w.answer = Some((total, holders.clone()));
            }
        }
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
            let asked = w.owners.get(w.asking) == Some(&from);
            if w.keyword != keyword || w.answer.is_some() || !asked {
                continue;
            }
            match &answer {
                Some(answer) => w.answer = Some(answer.clone()),
                None => next_owner(now, id, w, &mut steps),
            }
        }
        self.check_done(id, &mut steps);
        steps
    }

    /// `node` cannot be reached: lookups waiting on it move to the next owner.
    pub fn unreachable(&mut self, now: Instant, node: NodeId) -> Vec<LookupStep> {
        self.each_waiting(now, |w| w.owners.get(w.asking) == Some(&node))
    }

    /// Lookups whose owner has not answered in time move to the next owner.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<LookupStep> {
        self.each_waiting(now, |w| now >= w.asked_at + LOOKUP_TIMEOUT)
    }

    /// When [`Lookups::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.active
            .values()
            .flatten()
            .filter(|w| !w.settled())
            .map(|w| w.asked_at + LOOKUP_TIMEOUT)
            .min()
    }

    /// The query ended: its lookups are forgotten.
    pub fn cancel(&mut self, id: &QueryId) {
        self.active.remove(id);
    }

    fn each_waiting(
        &mut self,
        now: Instant,
        stuck: impl Fn(&WordLookup) -> bool,
    ) -> Vec<LookupStep> {
        let mut steps = Vec::new();
        let ids: Vec<QueryId> = self.active.keys().copied().collect();
        for id in ids {
            let Some(words) = self.active.get_mut(&id) else {
                continue;
            };
            let mut moved = false;
            for w in words.iter_mut().filter(|w| !w.settled() && stuck(w)) {
                next_owner(now, id, w, &mut steps);
                moved = true;
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

fn ask(id: QueryId, owner: NodeId, keyword: &str) -> LookupStep {
    LookupStep::Send(
        owner,
        SupernodeToSupernode::DirLookup {
            id,
            keyword: keyword.to_owned(),
        },
    )
}

fn next_owner(now: Instant, id: QueryId, w: &mut WordLookup, steps: &mut Vec<LookupStep>) {
    w.asking += 1;
    w.asked_at = now;
    if let Some(owner) = w.owners.get(w.asking) {
        steps.push(ask(id, *owner, &w.keyword));
    }
}

/// The supernodes that may hold every word: on every complete answer (or, with none
/// complete, on the shortest), the most entries of the rarest word first.
fn candidates(words: &[WordLookup]) -> Option<Vec<NodeId>> {
    let answers: Vec<&(u32, Vec<DirHolder>)> =
        words.iter().filter_map(|w| w.answer.as_ref()).collect();
    if answers.is_empty() {
        return None;
    }
    let complete: Vec<&(u32, Vec<DirHolder>)> = answers
        .iter()
        .copied()
        .filter(|(total, holders)| holders.len() as u64 >= u64::from(*total))
        .collect();
    let rarest = answers.iter().min_by_key(|(total, _)| *total)?;
    let on_every: Vec<FxHashSet<NodeId>> = complete
        .iter()
        .map(|(_, holders)| holders.iter().map(|h| h.node_id).collect())
        .collect();
    let mut chosen: Vec<&DirHolder> = rarest
        .1
        .iter()
        .filter(|h| on_every.iter().all(|set| set.contains(&h.node_id)))
        .collect();
    chosen.sort_by(|a, b| b.count.cmp(&a.count).then(a.node_id.cmp(&b.node_id)));
    Some(
        chosen
            .into_iter()
            .map(|h| h.node_id)
            .take(MAX_DIRECT_ASKED)
            .collect(),
    )
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
mod tests;
