//! The membership as one supernode sees it: every live supernode the list servers list,
//! with where to reach it. Immutable once built, and shared (`Arc`) so the simulator's
//! thousands of supernodes can hold one copy; the daemon builds a new one after each fetch.
//!
//! Owners are computed over this set, so two supernodes that fetched the same version
//! agree on every keyword's owners. While versions differ (a fetch's lag), an owner also
//! takes publishes for words it would own with one more member ranked above it
//! ([`MemberSet::owns`]'s slack).

use std::net::SocketAddr;

use rustc_hash::FxHashMap;
use superpeer_common::NodeId;

use super::owners::{OWNERS, keyword_hash, member_hash, rank_of};

/// Every live supernode.
#[derive(Clone, Debug, Default)]
pub struct MemberSet {
    /// (member hash, id): scanned once per keyword ranked.
    ranked: Vec<(u64, NodeId)>,
    addrs: FxHashMap<NodeId, SocketAddr>,
    /// Member hash to id: what owners are remembered by (8 bytes instead of 32).
    by_hash: FxHashMap<u64, NodeId>,
}

impl MemberSet {
    /// The set of these members (a node id given twice keeps the last address).
    pub fn new(members: impl IntoIterator<Item = (NodeId, SocketAddr)>) -> Self {
        let addrs: FxHashMap<NodeId, SocketAddr> = members.into_iter().collect();
        let mut ranked: Vec<(u64, NodeId)> =
            addrs.keys().map(|id| (member_hash(id), *id)).collect();
        ranked.sort_unstable_by_key(|(_, id)| *id);
        let by_hash = ranked.iter().copied().collect();
        Self {
            ranked,
            addrs,
            by_hash,
        }
    }

    /// The member whose [`member_hash`] is `hash`.
    pub fn id_of_hash(&self, hash: u64) -> Option<NodeId> {
        self.by_hash.get(&hash).copied()
    }

    pub fn len(&self) -> usize {
        self.ranked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranked.is_empty()
    }

    pub fn contains(&self, id: &NodeId) -> bool {
        self.addrs.contains_key(id)
    }

    /// Where a member is reached.
    pub fn addr(&self, id: &NodeId) -> Option<SocketAddr> {
        self.addrs.get(id).copied()
    }

    pub fn ids(&self) -> impl Iterator<Item = &NodeId> + '_ {
        self.ranked.iter().map(|(_, id)| id)
    }

    /// The [`OWNERS`] owners of `keyword` with their ranks, the first-ranked first (ties,
    /// a 64-bit collision, to the smaller id, as [`super::owners`] breaks them).
    pub fn owners(&self, keyword: &str) -> Vec<(u64, NodeId)> {
        self.owners_of_hash(keyword_hash(keyword))
    }

    /// [`MemberSet::owners`] for a keyword already hashed.
    pub fn owners_of_hash(&self, key: u64) -> Vec<(u64, NodeId)> {
        self.owner_hashes(key)
            .into_iter()
            .filter_map(|(rank, hash)| Some((rank, self.id_of_hash(hash)?)))
            .collect()
    }

    /// The owners of a keyword already hashed, as (rank, member hash), the first first.
    pub fn owner_hashes(&self, key: u64) -> Vec<(u64, u64)> {
        let mut best: Vec<(u64, NodeId, u64)> = Vec::with_capacity(OWNERS + 1);
        for &(hash, id) in &self.ranked {
            let entry = (rank_of(key, hash), id, hash);
            let before = |b: &(u64, NodeId, u64)| outranks(&(entry.0, entry.1), &(b.0, b.1));
            if best.len() == OWNERS && best.last().is_some_and(|last| !before(last)) {
                continue;
            }
            let at = best.iter().position(before).unwrap_or(best.len());
            best.insert(at, entry);
            best.truncate(OWNERS);
        }
        best.into_iter()
            .map(|(rank, _, hash)| (rank, hash))
            .collect()
    }

    /// Whether `me` owns `keyword`, or would if `slack` more members ranked above it: an
    /// owner whose view lags (or leads) a publisher's by a member still takes the word.
    pub fn owns(&self, keyword: &str, me: &NodeId, slack: usize) -> bool {
        let key = keyword_hash(keyword);
        let mine = (rank_of(key, member_hash(me)), *me);
        let mut above = 0;
        for &(hash, id) in &self.ranked {
            if id != *me && outranks(&(rank_of(key, hash), id), &mine) {
                above += 1;
                if above >= OWNERS + slack {
                    return false;
                }
            }
        }
        true
    }
}

/// Whether rank `a` comes before `b`.
pub fn outranks(a: &(u64, NodeId), b: &(u64, NodeId)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::owners::owners;

    fn member(i: u16) -> (NodeId, SocketAddr) {
        let mut bytes = [0u8; 32];
        bytes[..2].copy_from_slice(&i.to_le_bytes());
        bytes[31] = 0x33;
        let addr = SocketAddr::from(([127, 0, 0, 1], 1000 + i));
        (NodeId::from_bytes(bytes), addr)
    }

    #[test]
    fn owners_match_the_reference_ranking() {
        let all: Vec<(NodeId, SocketAddr)> = (0..300).map(member).collect();
        let set = MemberSet::new(all.iter().copied());
        let ids: Vec<NodeId> = all.iter().map(|(id, _)| *id).collect();
        for i in 0..500 {
            let word = format!("w{i}");
            let fast: Vec<NodeId> = set.owners(&word).into_iter().map(|(_, id)| id).collect();
            assert_eq!(fast, owners(&word, &ids, OWNERS), "{word}");
            for id in &ids {
                assert_eq!(set.owns(&word, id, 0), fast.contains(id), "{word}");
            }
        }
    }

    #[test]
    fn slack_takes_the_next_ranked_only() {
        let all: Vec<(NodeId, SocketAddr)> = (0..50).map(member).collect();
        let set = MemberSet::new(all.iter().copied());
        let ids: Vec<NodeId> = all.iter().map(|(id, _)| *id).collect();
        let ranked = owners("slack", &ids, OWNERS + 2);
        assert!(set.owns("slack", &ranked[OWNERS], 1));
        assert!(!set.owns("slack", &ranked[OWNERS + 1], 1));
        assert!(!set.owns("slack", &ranked[OWNERS], 0));
    }

    #[test]
    fn addresses_and_membership() {
        let set = MemberSet::new([member(1), member(2)]);
        assert_eq!(set.len(), 2);
        assert_eq!(set.addr(&member(2).0), Some(member(2).1));
        assert!(!set.contains(&member(3).0));
        assert!(MemberSet::default().owners("x").is_empty());
    }
}
