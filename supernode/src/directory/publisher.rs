//! What this supernode tells the owners: for every keyword its index holds (words and
//! content ids), the count of entries, sent to the keyword's owners in batches.
//!
//! Incremental both ways. A keyword that appears or goes is sent to its owners at the next
//! flush; a member that joins takes the keywords it now ranks among the first for (one
//! rank computed per keyword), and a member that leaves hands its keywords to the next
//! ranked (owners recomputed for those keywords only). Everything is sent again to its
//! owners every [`REFRESH`], well within the owners' expiry, so an owner that restarted
//! or missed a batch is filled again and a dead publisher's entries run out.
//!
//! Kept small, since a supernode holds one record per distinct word of its leaves' files:
//! a keyword's owners are remembered by their 8-byte member hashes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};
use superpeer_common::NodeId;
use superpeer_common::wire::{KeywordCount, MAX_DIRECTORY_KEYWORDS};

use super::members::{MemberSet, outranks};
use super::owners::{OWNERS, keyword_hash, member_hash, rank_of};

/// Everything is published again this often (the owners forget after 600 s).
pub const REFRESH: Duration = Duration::from_secs(240);
/// An owner that could not be reached (or refused us, its view of the membership not
/// yet holding us) is sent its keywords again after this, until it takes them or leaves
/// the membership.
pub const RETRY: Duration = Duration::from_secs(3);

#[derive(Debug)]
struct Published {
    count: u32,
    hash: u64,
    /// Current owners' member hashes, the first-ranked first.
    owners: Vec<u64>,
}

/// The publishing side of the directory.
#[derive(Debug)]
pub struct Publisher {
    me: NodeId,
    published: FxHashMap<Box<str>, Published>,
    /// When everything is sent again.
    next_refresh: Instant,
    /// Keyword counts waiting to go, per owner.
    outbox: FxHashMap<NodeId, FxHashMap<Box<str>, u32>>,
    /// Owners to send everything of theirs again, and when.
    retry: FxHashMap<NodeId, Instant>,
    /// The wait before the next retry of an owner: doubles from [`RETRY`] up to
    /// [`REFRESH`] while it keeps failing (an owner whose view of the membership stays
    /// different must not draw a resend every few seconds), reset when it takes a batch.
    backoff: FxHashMap<NodeId, Duration>,
}

impl Publisher {
    pub fn new(now: Instant, me: NodeId) -> Self {
        Self {
            me,
            published: FxHashMap::default(),
            next_refresh: now + REFRESH,
            outbox: FxHashMap::default(),
            retry: FxHashMap::default(),
            backoff: FxHashMap::default(),
        }
    }

    /// What was sent to `owner` did not reach it: it is sent again after [`RETRY`].
    pub fn owner_unreachable(&mut self, now: Instant, owner: NodeId) {
        if self.retry.contains_key(&owner) {
            return;
        }
        let hash = member_hash(&owner);
        if self.published.values().any(|p| p.owners.contains(&hash)) {
            let wait = self.backoff.entry(owner).or_insert(RETRY);
            self.retry.insert(owner, now + *wait);
            *wait = (*wait * 2).min(REFRESH);
        }
    }

    /// `owner` took a batch whole: its next failure is retried soon again.
    pub fn owner_took(&mut self, owner: NodeId) {
        self.backoff.remove(&owner);
    }

    /// Keywords held.
    pub fn len(&self) -> usize {
        self.published.len()
    }

    pub fn is_empty(&self) -> bool {
        self.published.is_empty()
    }

    /// Our index now holds `count` entries with `keyword` (0: none): its owners are told.
    pub fn keyword_changed(&mut self, members: &MemberSet, keyword: &str, count: u32) {
        if count == 0 {
            if let Some(gone) = self.published.remove(keyword) {
                for owner in gone.owners.iter().filter_map(|h| members.id_of_hash(*h)) {
                    queue(&mut self.outbox, owner, keyword, 0);
                }
            }
            return;
        }
        let entry = self.published.entry(keyword.into()).or_insert_with(|| {
            let hash = keyword_hash(keyword);
            Published {
                count,
                hash,
                owners: owner_hashes(members, hash),
            }
        });
        entry.count = count;
        for owner in entry.owners.iter().filter_map(|h| members.id_of_hash(*h)) {
            queue(&mut self.outbox, owner, keyword, count);
        }
    }

    /// The membership changed: `joined` take the keywords they now own, the keywords
    /// `left` owned go to the next ranked. Either way the new owner is sent the keyword.
    pub fn members_changed(&mut self, members: &MemberSet, joined: &[NodeId], left: &[NodeId]) {
        let left: FxHashSet<u64> = left.iter().map(member_hash).collect();
        let joined: Vec<(u64, NodeId)> = joined
            .iter()
            .map(|id| (member_hash(id), *id))
            .filter(|(hash, _)| !left.contains(hash))
            .collect();
        // Many joined at once (the first fetch): ranking afresh costs the same.
        let afresh = joined.len() * 4 > members.len().max(1);
        for (keyword, p) in &mut self.published {
            let before = p.owners.clone();
            if afresh || p.owners.iter().any(|h| left.contains(h)) {
                p.owners = owner_hashes(members, p.hash);
            } else {
                for &(hash, id) in &joined {
                    if p.owners.contains(&hash) {
                        continue;
                    }
                    let rank = |h: u64| {
                        let id = members
                            .id_of_hash(h)
                            .unwrap_or(NodeId::from_bytes([0xff; 32]));
                        (rank_of(p.hash, h), id)
                    };
                    let entry = (rank_of(p.hash, hash), id);
                    let full = p.owners.len() >= OWNERS;
                    if full
                        && p.owners
                            .last()
                            .is_some_and(|last| !outranks(&entry, &rank(*last)))
                    {
                        continue;
                    }
                    let at = p
                        .owners
                        .iter()
                        .position(|b| outranks(&entry, &rank(*b)))
                        .unwrap_or(p.owners.len());
                    p.owners.insert(at, hash);
                    p.owners.truncate(OWNERS);
                }
            }
            for owner in p.owners.iter().filter(|h| !before.contains(h)) {
                if let Some(id) = members.id_of_hash(*owner) {
                    queue(&mut self.outbox, id, keyword, p.count);
                }
            }
        }
    }

    /// Sends everything again once every [`REFRESH`], and everything of an unreachable
    /// owner's whose retry is due.
    pub fn refresh(&mut self, now: Instant, members: &MemberSet) {
        if now >= self.next_refresh {
            self.next_refresh = now + REFRESH;
            for (keyword, p) in &self.published {
                for owner in p.owners.iter().filter_map(|h| members.id_of_hash(*h)) {
                    queue(&mut self.outbox, owner, keyword, p.count);
                }
            }
        }
        let due: Vec<NodeId> = self
            .retry
            .iter()
            .filter(|(_, at)| now >= **at)
            .map(|(owner, _)| *owner)
            .collect();
        for owner in due {
            self.retry.remove(&owner);
            let hash = member_hash(&owner);
            for (keyword, p) in self
                .published
                .iter()
                .filter(|(_, p)| p.owners.contains(&hash))
            {
                queue(&mut self.outbox, owner, keyword, p.count);
            }
        }
    }

    /// The batches to send now, per owner, at most [`MAX_DIRECTORY_KEYWORDS`] each (ours,
    /// when we own a keyword ourselves, included: the caller stores those directly).
    pub fn take_batches(&mut self) -> Vec<(NodeId, Vec<KeywordCount>)> {
        let mut batches = Vec::new();
        for (owner, keywords) in self.outbox.drain() {
            let mut all: Vec<KeywordCount> = keywords
                .into_iter()
                .map(|(keyword, count)| KeywordCount {
                    keyword: keyword.into_string(),
                    count,
                })
                .collect();
            all.sort_by(|a, b| a.keyword.cmp(&b.keyword));
            for chunk in all.chunks(MAX_DIRECTORY_KEYWORDS) {
                batches.push((owner, chunk.to_vec()));
            }
        }
        batches.sort_by_key(|b| b.0);
        batches
    }

    /// A batch that could not go now goes with the next flush (unless newer counts for
    /// its keywords are already waiting).
    pub fn requeue(&mut self, owner: NodeId, keywords: Vec<KeywordCount>) {
        let waiting = self.outbox.entry(owner).or_default();
        for k in keywords {
            waiting.entry(k.keyword.into()).or_insert(k.count);
        }
    }

    /// Whether anything waits to be sent (or retried).
    pub fn has_batches(&self) -> bool {
        !self.outbox.is_empty() || !self.retry.is_empty()
    }

    /// We are `me`.
    pub fn me(&self) -> NodeId {
        self.me
    }
}

fn owner_hashes(members: &MemberSet, key: u64) -> Vec<u64> {
    members
        .owner_hashes(key)
        .into_iter()
        .map(|(_, h)| h)
        .collect()
}

fn queue(
    outbox: &mut FxHashMap<NodeId, FxHashMap<Box<str>, u32>>,
    owner: NodeId,
    keyword: &str,
    count: u32,
) {
    outbox
        .entry(owner)
        .or_default()
        .insert(keyword.into(), count);
}

/// A shared empty membership, for a supernode that has fetched none yet.
pub fn no_members() -> Arc<MemberSet> {
    Arc::new(MemberSet::default())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn member(i: u16) -> (NodeId, SocketAddr) {
        let mut bytes = [0u8; 32];
        bytes[..2].copy_from_slice(&i.to_le_bytes());
        bytes[30] = 0x77;
        (
            NodeId::from_bytes(bytes),
            SocketAddr::from(([127, 0, 0, 1], 2000 + i)),
        )
    }

    fn set(range: std::ops::Range<u16>) -> MemberSet {
        MemberSet::new(range.map(member))
    }

    fn sent(batches: &[(NodeId, Vec<KeywordCount>)]) -> Vec<(NodeId, String, u32)> {
        let mut all: Vec<(NodeId, String, u32)> = batches
            .iter()
            .flat_map(|(o, ks)| ks.iter().map(|k| (*o, k.keyword.clone(), k.count)))
            .collect();
        all.sort();
        all
    }

    #[test]
    fn a_new_keyword_goes_to_its_three_owners_and_a_gone_one_is_withdrawn() {
        let now = Instant::now();
        let members = set(0..40);
        let mut p = Publisher::new(now, member(0).0);
        p.keyword_changed(&members, "rare", 2);
        let batches = p.take_batches();
        let owners: Vec<NodeId> = members
            .owners("rare")
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        let mut expected: Vec<(NodeId, String, u32)> =
            owners.iter().map(|o| (*o, "rare".to_owned(), 2)).collect();
        expected.sort();
        assert_eq!(sent(&batches), expected);
        p.keyword_changed(&members, "rare", 0);
        let gone = sent(&p.take_batches());
        assert_eq!(gone.len(), OWNERS);
        assert!(gone.iter().all(|(_, _, c)| *c == 0));
        assert!(p.is_empty());
    }

    #[test]
    fn membership_changes_send_each_keyword_to_its_new_owner_only() {
        let now = Instant::now();
        let all = set(0..60);
        let fewer = set(0..59);
        let mut p = Publisher::new(now, member(0).0);
        for i in 0..2_000 {
            p.keyword_changed(&fewer, &format!("k{i}"), 1);
        }
        p.take_batches();
        // Member 59 joins: it gets exactly the keywords it now owns.
        p.members_changed(&all, &[member(59).0], &[]);
        let joined = sent(&p.take_batches());
        let newcomer = member(59).0;
        let expected = (0..2_000)
            .filter(|i| {
                all.owners(&format!("k{i}"))
                    .iter()
                    .any(|(_, id)| *id == newcomer)
            })
            .count();
        assert_eq!(joined.len(), expected);
        assert!(joined.iter().all(|(o, _, _)| *o == newcomer));
        assert!(expected > 40 && expected < 170, "{expected}");
        // Member 7 dies: each keyword it owned goes to whoever is third now.
        let dead = member(7).0;
        let rest = MemberSet::new((0..60).filter(|i| *i != 7).map(member));
        p.members_changed(&rest, &[], &[dead]);
        let moved = sent(&p.take_batches());
        for (owner, keyword, _) in &moved {
            let owners = rest.owners(keyword);
            assert!(owners.iter().any(|(_, id)| id == owner));
            assert!(all.owners(keyword).iter().any(|(_, id)| *id == dead));
        }
        let dead_owned = (0..2_000)
            .filter(|i| {
                all.owners(&format!("k{i}"))
                    .iter()
                    .any(|(_, id)| *id == dead)
            })
            .count();
        assert_eq!(moved.len(), dead_owned);
    }

    #[test]
    fn refresh_resends_everything_once_per_period() {
        let now = Instant::now();
        let members = set(0..10);
        let mut p = Publisher::new(now, member(0).0);
        p.keyword_changed(&members, "a", 1);
        p.keyword_changed(&members, "b", 3);
        p.take_batches();
        p.refresh(now + REFRESH - Duration::from_millis(1), &members);
        assert!(!p.has_batches());
        p.refresh(now + REFRESH, &members);
        let all = sent(&p.take_batches());
        assert_eq!(all.len(), 2 * OWNERS);
        assert!(
            all.iter()
                .all(|(_, k, c)| (k == "a" && *c == 1) || (k == "b" && *c == 3))
        );
        // Once a period.
        p.refresh(now + REFRESH + Duration::from_secs(100), &members);
        assert!(!p.has_batches());
        p.refresh(now + REFRESH * 2, &members);
        assert_eq!(sent(&p.take_batches()).len(), 2 * OWNERS);
    }

    #[test]
    fn an_unreachable_owner_is_sent_its_keywords_again() {
        let now = Instant::now();
        let members = set(0..30);
        let mut p = Publisher::new(now, member(0).0);
        for i in 0..100 {
            p.keyword_changed(&members, &format!("r{i}"), 1);
        }
        let first = sent(&p.take_batches());
        let owner = first[0].0;
        let theirs: Vec<_> = first
            .iter()
            .filter(|(o, _, _)| *o == owner)
            .cloned()
            .collect();
        p.owner_unreachable(now, owner);
        p.refresh(now + RETRY - Duration::from_millis(1), &members);
        assert!(p.take_batches().is_empty());
        p.refresh(now + RETRY, &members);
        assert_eq!(sent(&p.take_batches()), theirs);
        // Failing again, it waits twice as long; taking a batch resets that.
        p.owner_unreachable(now, owner);
        p.refresh(now + RETRY * 2 - Duration::from_millis(1), &members);
        assert!(p.take_batches().is_empty());
        p.refresh(now + RETRY * 2, &members);
        assert_eq!(sent(&p.take_batches()), theirs);
        p.owner_took(owner);
        p.owner_unreachable(now, owner);
        p.refresh(now + RETRY, &members);
        assert_eq!(sent(&p.take_batches()), theirs);
        // An owner of none of ours is not retried.
        p.owner_unreachable(now, member(999).0);
        assert!(!p.has_batches());
    }

    #[test]
    fn batches_are_split_at_the_message_cap() {
        let now = Instant::now();
        let members = set(0..2);
        let mut p = Publisher::new(now, member(0).0);
        for i in 0..(MAX_DIRECTORY_KEYWORDS + 5) {
            p.keyword_changed(&members, &format!("w{i}"), 1);
        }
        let batches = p.take_batches();
        // Two members: both own everything, two batches each.
        assert_eq!(batches.len(), 4);
        assert!(
            batches
                .iter()
                .all(|(_, b)| b.len() <= MAX_DIRECTORY_KEYWORDS)
        );
    }
}
