//! Who owns a keyword in the directory: rendezvous (highest random weight) hashing.
//!
//! Every supernode ranks every member for a keyword by a hash of (keyword, member id)
//! ([`rank`]) and takes the [`OWNERS`] highest. Two supernodes that know the same members
//! compute the same owners, whatever order they learned them in; a member that joins or
//! dies moves only the keywords it ranks first for, about `OWNERS / members` of them, and
//! nothing else changes hands (Thaler and Ravishankar's HRW; Kad's XOR distance plays the
//! same part). Keywords are ranked as queries normalise them (`superpeer_common::keywords`).

use superpeer_common::NodeId;

/// Supernodes that own each keyword: enough that one death loses no keyword, few enough
/// that a publish costs little.
pub const OWNERS: usize = 3;

/// The domain of the hashes: a new layout of the directory changes this string, so
/// versions never agree on owners by accident.
const CONTEXT: &str = "superpeer 2026-12 directory owner rank";

/// A keyword's side of the rank, computed once per keyword.
pub fn keyword_hash(keyword: &str) -> u64 {
    first_u64(
        blake3::Hasher::new_derive_key(CONTEXT)
            .update(b"k")
            .update(keyword.as_bytes()),
    )
}

/// A member's side of the rank, computed once per member.
pub fn member_hash(member: &NodeId) -> u64 {
    first_u64(
        blake3::Hasher::new_derive_key(CONTEXT)
            .update(b"m")
            .update(member.as_bytes()),
    )
}

fn first_u64(hasher: &blake3::Hasher) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// The rank of a member for a keyword from their hashes: both hashed once, so that ranking
/// 20,000 keywords over 10,000 members (what a supernode that starts does) costs a fraction
/// of a second instead of a BLAKE3 call per pair. The mixer (Stafford's variant 13 of the
/// SplitMix64 finaliser) is a bijection, so distinct inputs never tie.
pub fn rank_of(keyword: u64, member: u64) -> u64 {
    let mut z = keyword ^ member;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `member`'s rank for `keyword`: the higher, the more it owns it.
pub fn rank(keyword: &str, member: &NodeId) -> u64 {
    rank_of(keyword_hash(keyword), member_hash(member))
}

/// The `count` owners of `keyword` among `members`, the first-ranked first. Ties (which
/// need a 64-bit collision) fall to the smaller node id, so the answer is still the same
/// everywhere.
pub fn owners<'a>(
    keyword: &str,
    members: impl IntoIterator<Item = &'a NodeId>,
    count: usize,
) -> Vec<NodeId> {
    let key = keyword_hash(keyword);
    let mut best: Vec<(u64, NodeId)> = Vec::with_capacity(count + 1);
    for member in members {
        let entry = (rank_of(key, member_hash(member)), *member);
        let better = |a: &(u64, NodeId), b: &(u64, NodeId)| a.0 > b.0 || (a.0 == b.0 && a.1 < b.1);
        let at = best
            .iter()
            .position(|b| better(&entry, b))
            .unwrap_or(best.len());
        if at < count {
            if best.iter().any(|(_, id)| *id == entry.1) {
                continue;
            }
            best.insert(at, entry);
            best.truncate(count);
        }
    }
    best.into_iter().map(|(_, id)| id).collect()
}

/// Whether `me` is among the owners of `keyword`.
pub fn owns<'a>(keyword: &str, me: &NodeId, members: impl IntoIterator<Item = &'a NodeId>) -> bool {
    owners(keyword, members, OWNERS).contains(me)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: u16) -> Vec<NodeId> {
        (0..n)
            .map(|i| {
                let mut bytes = [0u8; 32];
                bytes[..2].copy_from_slice(&i.to_le_bytes());
                bytes[31] = 0x5a;
                NodeId::from_bytes(bytes)
            })
            .collect()
    }

    fn words(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("word{i}")).collect()
    }

    #[test]
    fn every_supernode_computes_the_same_owners_whatever_its_order() {
        let all = members(200);
        let mut shuffled = all.clone();
        shuffled.reverse();
        shuffled.rotate_left(77);
        for word in words(500) {
            let a = owners(&word, &all, OWNERS);
            assert_eq!(a.len(), OWNERS);
            assert_eq!(a, owners(&word, &shuffled, OWNERS), "{word}");
            let mut dedup = a.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), OWNERS, "distinct owners");
        }
    }

    #[test]
    fn a_death_moves_only_the_keywords_the_dead_one_owned() {
        let all = members(100);
        let dead = all[42];
        let rest: Vec<NodeId> = all.iter().copied().filter(|m| *m != dead).collect();
        let mut moved = 0;
        for word in words(10_000) {
            let before = owners(&word, &all, OWNERS);
            let after = owners(&word, &rest, OWNERS);
            if before.contains(&dead) {
                moved += 1;
                // The survivors keep their places; one newcomer fills the gap at the end.
                let kept: Vec<NodeId> = before.iter().copied().filter(|m| *m != dead).collect();
                assert_eq!(after[..OWNERS - 1], kept[..], "{word}");
            } else {
                assert_eq!(before, after, "{word} moved though its owners live");
            }
        }
        // About OWNERS / 100 of the keywords: 300 of 10,000, give or take.
        assert!((200..400).contains(&moved), "{moved}");
    }

    #[test]
    fn keywords_spread_evenly_over_the_members() {
        let all = members(50);
        let mut load = vec![0usize; all.len()];
        for word in words(20_000) {
            for owner in owners(&word, &all, OWNERS) {
                let i = all.iter().position(|m| *m == owner).unwrap();
                load[i] += 1;
            }
        }
        // 20,000 x 3 / 50 = 1,200 each on average.
        let (min, max) = (load.iter().min().unwrap(), load.iter().max().unwrap());
        assert!(*min > 1_000 && *max < 1_400, "min {min}, max {max}");
    }

    #[test]
    fn fewer_members_than_owners_all_own_everything() {
        let all = members(2);
        assert_eq!(owners("abba", &all, OWNERS).len(), 2);
        assert!(owns("abba", &all[0], &all));
        assert!(owners("abba", &[], OWNERS).is_empty());
    }
}
