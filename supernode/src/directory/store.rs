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

use super::owners::{keyword_hash, member_hash};

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

/// One publisher's entries for a keyword, 16 bytes: an owner holds one per keyword and
/// publisher. The publisher by its member hash (the membership maps it back to an id and
/// an address), the expiry in whole seconds from the store's start.
#[derive(Clone, Copy, Debug)]
struct Holding {
    publisher: u64,
    entries: u32,
    expires: u32,
}

/// An owner's part of the directory, keyed by the keywords' 64-bit hashes (the ones owners
/// are ranked by; the words themselves are not kept). A keyword's publishers are a short
/// vector (most keywords have one or a few; a hot one at most `publishers_per_keyword`).
#[derive(Debug)]
pub struct OwnerStore {
    limits: DirectoryLimits,
    started: Instant,
    keywords: FxHashMap<u64, Vec<Holding>>,
    per_publisher: FxHashMap<u64, usize>,
}

impl OwnerStore {
    /// An empty store with these caps.
    pub fn new(now: Instant, limits: DirectoryLimits) -> Self {
        Self {
            limits,
            started: now,
            keywords: FxHashMap::default(),
            per_publisher: FxHashMap::default(),
        }
    }

    /// Seconds from the store's start to `at` (0 before it).
    fn secs(&self, at: Instant) -> u32 {
        let secs = at.saturating_duration_since(self.started).as_secs();
        u32::try_from(secs).unwrap_or(u32::MAX)
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
        let publisher = member_hash(&publisher);
        for keyword in removes {
            if !owned(keyword) {
                outcome.not_owner += 1;
                continue;
            }
            self.remove(publisher, keyword_hash(keyword));
            outcome.accepted += 1;
        }
        let expires = self.secs(now + self.limits.ttl);
        for (keyword, entries) in adds {
            if !owned(keyword) {
                outcome.not_owner += 1;
                continue;
            }
            let keyword = keyword_hash(keyword);
            if *entries == 0 {
                self.remove(publisher, keyword);
                outcome.accepted += 1;
                continue;
            }
            let holding = Holding {
                publisher,
                entries: *entries,
                expires,
            };
            if self.keep(keyword, holding) {
                outcome.accepted += 1;
            } else {
                outcome.capped += 1;
            }
        }
        outcome
    }

    /// Stores one holding if the caps allow it; false if not.
    fn keep(&mut self, keyword: u64, holding: Holding) -> bool {
        let publisher = holding.publisher;
        if let Some(known) = self
            .keywords
            .get_mut(&keyword)
            .and_then(|p| p.iter_mut().find(|h| h.publisher == publisher))
        {
            *known = holding;
            return true;
        }
        let held = self.per_publisher.get(&publisher).copied().unwrap_or(0);
        if held >= self.limits.keywords_per_publisher {
            return false;
        }
        let cap = self.limits.publishers_per_keyword;
        let publishers = self.keywords.entry(keyword).or_default();
        if publishers.len() >= cap {
            // A hot word keeps the publishers with the most entries.
            let Some((at, least)) = publishers
                .iter()
                .enumerate()
                .min_by_key(|(_, h)| (h.entries, std::cmp::Reverse(h.publisher)))
                .map(|(at, h)| (at, h.entries))
            else {
                return false;
            };
            if holding.entries <= least {
                return false;
            }
            let weakest = publishers.swap_remove(at).publisher;
            Self::count(&mut self.per_publisher, &weakest, -1);
        }
        publishers.push(holding);
        Self::count(&mut self.per_publisher, &publisher, 1);
        true
    }

    fn remove(&mut self, publisher: u64, keyword: u64) {
        let Some(publishers) = self.keywords.get_mut(&keyword) else {
            return;
        };
        if let Some(at) = publishers.iter().position(|h| h.publisher == publisher) {
            publishers.swap_remove(at);
            Self::count(&mut self.per_publisher, &publisher, -1);
        }
        if publishers.is_empty() {
            self.keywords.remove(&keyword);
        }
    }

    fn count(per_publisher: &mut FxHashMap<u64, usize>, publisher: &u64, delta: isize) {
        let held = per_publisher.entry(*publisher).or_default();
        *held = held.saturating_add_signed(delta);
        if *held == 0 {
            per_publisher.remove(publisher);
        }
    }

    /// The supernodes holding `keyword` now, by member hash, the most entries first.
    pub fn holders(&self, now: Instant, keyword: &str) -> Vec<(u64, u32)> {
        let now = self.secs(now);
        let mut holders: Vec<(u64, u32)> = self
            .keywords
            .get(&keyword_hash(keyword))
            .into_iter()
            .flat_map(|p| p.iter())
            .filter(|h| h.expires > now)
            .map(|h| (h.publisher, h.entries))
            .collect();
        holders.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        holders
    }

    /// Forgets what was not published again in time.
    pub fn expire(&mut self, now: Instant) {
        let now = self.secs(now);
        let per_publisher = &mut self.per_publisher;
        self.keywords.retain(|_, publishers| {
            publishers.retain(|h| {
                let live = h.expires > now;
                if !live {
                    Self::count(per_publisher, &h.publisher, -1);
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

    fn h(n: u8) -> u64 {
        member_hash(&id(n))
    }

    fn adds(words: &[&str], entries: u32) -> Vec<(String, u32)> {
        words.iter().map(|w| (w.to_string(), entries)).collect()
    }

    #[test]
    fn holders_come_most_entries_first_and_expire_unless_refreshed() {
        let t0 = Instant::now();
        let mut store = OwnerStore::new(t0, DirectoryLimits::default());
        let all = |_: &str| true;
        store.publish(t0, id(1), &adds(&["abba", "gold"], 2), &[], all);
        store.publish(t0, id(2), &adds(&["abba"], 7), &[], all);
        assert_eq!(store.holders(t0, "abba"), vec![(h(2), 7), (h(1), 2)]);
        // 2 refreshes, 1 does not.
        let later = t0 + Duration::from_secs(400);
        store.publish(later, id(2), &adds(&["abba"], 7), &[], all);
        let gone = t0 + Duration::from_secs(601);
        assert_eq!(store.holders(gone, "abba"), vec![(h(2), 7)]);
        store.expire(gone);
        assert_eq!(store.size(), (1, 1));
        // A remove, or a count of zero, takes it out at once.
        store.publish(gone, id(2), &[], &["abba".to_string()], all);
        assert_eq!(store.size(), (0, 0));
    }

    #[test]
    fn only_owned_keywords_are_taken() {
        let t0 = Instant::now();
        let mut store = OwnerStore::new(t0, DirectoryLimits::default());
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
        let mut store = OwnerStore::new(t0, limits);
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
        let mut store = OwnerStore::new(t0, limits);
        for (n, entries) in [(1, 5), (2, 1), (3, 9)] {
            store.publish(t0, id(n), &adds(&["hot"], entries), &[], |_| true);
        }
        // A small newcomer does not push anyone out; a big one pushes the smallest out.
        let small = store.publish(t0, id(4), &adds(&["hot"], 1), &[], |_| true);
        assert_eq!(small.capped, 1);
        store.publish(t0, id(5), &adds(&["hot"], 6), &[], |_| true);
        let holders: Vec<u64> = store
            .holders(t0, "hot")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(holders, vec![h(3), h(5), h(1)]);
        assert_eq!(store.size(), (1, 3));
        // The pushed-out publisher's count went down with it: it may publish elsewhere.
        assert!(!store.per_publisher.contains_key(&h(2)));
    }
}
