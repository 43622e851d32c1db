//! What an owner holds: for each keyword it owns, which supernodes hold entries with that
//! word and how many. Publishers refresh what they hold before [`DirectoryLimits::ttl`]
//! runs out, so a supernode that dies vanishes from the directory on its own.
//!
//! Everything a publisher can make an owner keep is capped: keywords per publisher, and
//! publishers per keyword (a hot word keeps the publishers with the most entries, as Kad's
//! nodes cap a popular keyword), and a publish for a word the owner does not own is
//! refused. The reply says how much was taken.

use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use superpeer_common::NodeId;

/// The owner's caps.
#[derive(Clone, Debug)]
pub struct DirectoryLimits {
    /// Keywords one publisher may hold here.
    pub keywords_per_publisher: usize,
    /// Publishers one keyword lists at most (those with the most entries are kept).
    pub publishers_per_keyword: usize,
    /// An entry not published again within this is forgotten.
    pub ttl: Duration,
}

impl Default for DirectoryLimits {
    fn default() -> Self {
        Self {
            // A supernode of 500 leaves sharing 10 files of a few words each holds some
            // 20,000 distinct words; with 10,000 supernodes and 3 owners a word, an owner
            // gets about 0.03% of everyone's words.
            keywords_per_publisher: 50_000,
            publishers_per_keyword: 1_000,
            ttl: Duration::from_secs(600),
        }
    }
}

/// How a publish went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishOutcome {
    /// Keywords taken (added, refreshed or removed).
    pub accepted: usize,
    /// Keywords this owner does not own: ignored.
    pub not_owner: usize,
    /// Keywords past a cap: not kept.
    pub capped: usize,
}

#[derive(Clone, Copy, Debug)]
struct Holding {
    entries: u32,
    expires: Instant,
}

/// An owner's part of the directory.
#[derive(Debug, Default)]
pub struct OwnerStore {
    limits: DirectoryLimits,
    keywords: FxHashMap<String, FxHashMap<NodeId, Holding>>,
    per_publisher: FxHashMap<NodeId, usize>,
}

impl OwnerStore {
    /// An empty store with these caps.
    pub fn new(limits: DirectoryLimits) -> Self {
        Self {
            limits,
            keywords: FxHashMap::default(),
            per_publisher: FxHashMap::default(),
        }
    }

    /// `publisher` holds `entries` entries for each keyword of `adds` (added or refreshed)
    /// and none for `removes`. `owned` says whether we own a keyword now.
    pub fn publish(
        &mut self,
        now: Instant,
        publisher: NodeId,
        adds: &[(String, u32)],
        removes: &[String],
        owned: impl Fn(&str) -> bool,
    ) -> PublishOutcome {
        let mut outcome = PublishOutcome::default();
        for keyword in removes {
            if !owned(keyword) {
                outcome.not_owner += 1;
                continue;
            }
            self.remove(&publisher, keyword);
            outcome.accepted += 1;
        }
        let expires = now + self.limits.ttl;
        for (keyword, entries) in adds {
            if !owned(keyword) {
                outcome.not_owner += 1;
                continue;
            }
            if *entries == 0 {
                self.remove(&publisher, keyword);
                outcome.accepted += 1;
                continue;
            }
            let holding = Holding {
                entries: *entries,
                expires,
            };
            if self.keep(publisher, keyword, holding) {
                outcome.accepted += 1;
            } else {
                outcome.capped += 1;
            }
        }
        outcome
    }

    /// Stores one holding if the caps allow it; false if not.
    fn keep(&mut self, publisher: NodeId, keyword: &str, holding: Holding) -> bool {
        let held = self.per_publisher.get(&publisher).copied().unwrap_or(0);
        let known = self
            .keywords
            .get(keyword)
            .is_some_and(|p| p.contains_key(&publisher));
        if !known && held >= self.limits.keywords_per_publisher {
            return false;
        }
        let cap = self.limits.publishers_per_keyword;
        let publishers = self.keywords.entry(keyword.to_string()).or_default();
        if !known && publishers.len() >= cap {
            // A hot word keeps the publishers with the most entries.
            let Some((weakest, least)) = publishers
                .iter()
                .map(|(id, h)| (*id, h.entries))
                .min_by_key(|(id, entries)| (*entries, std::cmp::Reverse(*id)))
            else {
                return false;
            };
            if holding.entries <= least {
                return false;
            }
            publishers.remove(&weakest);
            Self::count(&mut self.per_publisher, &weakest, -1);
        }
        if publishers.insert(publisher, holding).is_none() {
            Self::count(&mut self.per_publisher, &publisher, 1);
        }
        true
    }

    fn remove(&mut self, publisher: &NodeId, keyword: &str) {
        let Some(publishers) = self.keywords.get_mut(keyword) else {
            return;
        };
        if publishers.remove(publisher).is_some() {
            Self::count(&mut self.per_publisher, publisher, -1);
        }
        if publishers.is_empty() {
            self.keywords.remove(keyword);
        }
    }

    fn count(per_publisher: &mut FxHashMap<NodeId, usize>, publisher: &NodeId, delta: isize) {
        let held = per_publisher.entry(*publisher).or_default();
        *held = held.saturating_add_signed(delta);
        if *held == 0 {
            per_publisher.remove(publisher);
        }
    }

    /// The supernodes holding `keyword` now, the most entries first.
    pub fn holders(&self, now: Instant, keyword: &str) -> Vec<(NodeId, u32)> {
        let mut holders: Vec<(NodeId, u32)> = self
            .keywords
            .get(keyword)
            .into_iter()
            .flat_map(|p| p.iter())
            .filter(|(_, h)| h.expires > now)
            .map(|(id, h)| (*id, h.entries))
            .collect();
        holders.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        holders
    }

    /// Forgets what was not published again in time.
    pub fn expire(&mut self, now: Instant) {
        let per_publisher = &mut self.per_publisher;
        self.keywords.retain(|_, publishers| {
            publishers.retain(|id, h| {
                let live = h.expires > now;
                if !live {
                    Self::count(per_publisher, id, -1);
                }
                live
            });
            !publishers.is_empty()
        });
    }

    /// Keywords held, and (keyword, publisher) pairs: what the caps bound.
    pub fn size(&self) -> (usize, usize) {
        let pairs = self.keywords.values().map(|p| p.len()).sum();
        (self.keywords.len(), pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    fn adds(words: &[&str], entries: u32) -> Vec<(String, u32)> {
        words.iter().map(|w| (w.to_string(), entries)).collect()
    }

    #[test]
    fn holders_come_most_entries_first_and_expire_unless_refreshed() {
        let t0 = Instant::now();
        let mut store = OwnerStore::new(DirectoryLimits::default());
        let all = |_: &str| true;
        store.publish(t0, id(1), &adds(&["abba", "gold"], 2), &[], all);
        store.publish(t0, id(2), &adds(&["abba"], 7), &[], all);
        assert_eq!(store.holders(t0, "abba"), vec![(id(2), 7), (id(1), 2)]);
        // 2 refreshes, 1 does not.
        let later = t0 + Duration::from_secs(400);
        store.publish(later, id(2), &adds(&["abba"], 7), &[], all);
        let gone = t0 + Duration::from_secs(601);
        assert_eq!(store.holders(gone, "abba"), vec![(id(2), 7)]);
        store.expire(gone);
        assert_eq!(store.size(), (1, 1));
        // A remove, or a count of zero, takes it out at once.
        store.publish(gone, id(2), &[], &["abba".to_string()], all);
        assert_eq!(store.size(), (0, 0));
    }

    #[test]
    fn only_owned_keywords_are_taken() {
        let t0 = Instant::now();
        let mut store = OwnerStore::new(DirectoryLimits::default());
        let outcome = store.publish(t0, id(1), &adds(&["mine", "yours"], 1), &[], |w| {
            w == "mine"
        });
        assert_eq!(
            outcome,
            PublishOutcome {
                accepted: 1,
                not_owner: 1,
                capped: 0
            }
        );
        assert!(store.holders(t0, "yours").is_empty());
    }

    #[test]
    fn a_publisher_claiming_millions_of_keywords_is_held_to_its_cap() {
        let t0 = Instant::now();
        let limits = DirectoryLimits {
            keywords_per_publisher: 1_000,
            ..DirectoryLimits::default()
        };
        let mut store = OwnerStore::new(limits);
        let claimed: Vec<(String, u32)> = (0..100_000).map(|i| (format!("w{i}"), 1)).collect();
        let outcome = store.publish(t0, id(9), &claimed, &[], |_| true);
        assert_eq!(outcome.accepted, 1_000);
        assert_eq!(outcome.capped, 99_000);
        assert_eq!(store.size(), (1_000, 1_000));
        // Refreshing what it holds still works at the cap.
        let again = store.publish(t0, id(9), &claimed[..10], &[], |_| true);
        assert_eq!(again.accepted, 10);
    }

    #[test]
    fn a_hot_keyword_keeps_the_publishers_with_the_most_entries() {
        let t0 = Instant::now();
        let limits = DirectoryLimits {
            publishers_per_keyword: 3,
            ..DirectoryLimits::default()
        };
        let mut store = OwnerStore::new(limits);
        for (n, entries) in [(1, 5), (2, 1), (3, 9)] {
            store.publish(t0, id(n), &adds(&["hot"], entries), &[], |_| true);
        }
        // A small newcomer does not push anyone out; a big one pushes the smallest out.
        let small = store.publish(t0, id(4), &adds(&["hot"], 1), &[], |_| true);
        assert_eq!(small.capped, 1);
        store.publish(t0, id(5), &adds(&["hot"], 6), &[], |_| true);
        let holders: Vec<NodeId> = store
            .holders(t0, "hot")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(holders, vec![id(3), id(5), id(1)]);
        assert_eq!(store.size(), (1, 3));
        // The pushed-out publisher's count went down with it: it may publish elsewhere.
        assert!(!store.per_publisher.contains_key(&id(2)));
    }
}
