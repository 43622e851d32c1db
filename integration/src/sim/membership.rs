//! The membership every supernode follows for the keyword directory: the list server's
//! listed supernodes, as the daemon's driver mirrors them (`follow_members`: a fetch when
//! the driver starts, then every 2 s for 30 s, then every 5 s). Each supernode's view is
//! the list server's at its last fetch, so views lag by up to a fetch interval, and
//! supernodes that fetched at different times rank owners over different sets, as in a
//! real network. The warm start brings every supernode up within the first seconds, which
//! would keep their timers in step (every supernode fetching within the same second) and
//! hide most of that lag; daemons started at different times fetch at independent
//! moments. So each supernode's timer takes a phase of its own, a seeded fraction of the
//! interval, when it moves to the 5 s cadence.
//!
//! Cheap at 10,000 supernodes: the list server's set becomes a new version only when it
//! changes (the list tick compares it with the last one, once a second), each version is
//! one `Arc<MemberSet>` shared by every core that holds it, and a supernode keeps only the
//! number of the version its core holds. What changed between a supernode's version and
//! the current one (joined, left) is computed once per old version, by comparing the two
//! sets (O(members)), and shared by every supernode that makes the same jump; a supernode
//! that skipped versions gets the combined change. The answer's round trip to the list
//! server is not modelled (tens of milliseconds beside the fetch interval).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use superpeer_common::NodeId;
use superpeer_supernode::directory::MemberSet;

use super::world::{Event, World};

/// The driver's membership fetch while it starts (`STARTUP_REFRESH`)...
const STARTUP_FETCH: Duration = Duration::from_secs(2);
/// ...for this long (`STARTUP_PERIOD`)...
const STARTUP_PERIOD: Duration = Duration::from_secs(30);
/// ...and after that (`MEMBERS_INTERVAL`).
const FETCH: Duration = Duration::from_secs(5);

/// What changed from one version to another.
#[derive(Debug, Default)]
pub struct Change {
    pub joined: Vec<NodeId>,
    pub left: Vec<NodeId>,
}

/// The versions of the listed set.
#[derive(Debug, Default)]
pub struct Membership {
    /// 0 is the empty set, which every core starts with.
    version: u64,
    current: Arc<MemberSet>,
    /// The current set, by node id, to tell whether the next one differs.
    listed: Vec<(NodeId, SocketAddr)>,
    /// From an older version (by its number) to the current one.
    changes: HashMap<u64, Rc<Change>>,
}

impl Membership {
    /// The list server lists `listed` now, sorted by node id: a new version if it differs.
    pub fn update(&mut self, listed: impl Iterator<Item = (NodeId, SocketAddr)>) {
        let listed: Vec<(NodeId, SocketAddr)> = listed.collect();
        if listed == self.listed {
            return;
        }
        self.version += 1;
        self.current = Arc::new(MemberSet::new(listed.iter().copied()));
        self.listed = listed;
        self.changes.clear();
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn current(&self) -> &Arc<MemberSet> {
        &self.current
    }

    /// Listed supernodes now.
    pub fn len(&self) -> usize {
        self.listed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// What changed from `old` (version `from`) to the current version.
    fn change(&mut self, from: u64, old: &MemberSet) -> Rc<Change> {
        let current = &self.current;
        self.changes
            .entry(from)
            .or_insert_with(|| {
                Rc::new(Change {
                    joined: current
                        .ids()
                        .filter(|id| !old.contains(id))
                        .copied()
                        .collect(),
                    left: old
                        .ids()
                        .filter(|id| !current.contains(id))
                        .copied()
                        .collect(),
                })
            })
            .clone()
    }
}

impl World<'_> {
    /// Supernode `sn`'s driver starts following the membership: a fetch at once.
    pub fn follow_members(&mut self, sn: u32, life: u32) {
        let at = self.queue.now();
        if let Some(node) = self.nodes.get_mut(sn as usize) {
            node.started_at = at;
        }
        self.queue
            .after(Duration::ZERO, Event::Members { sn, life });
    }

    /// Supernode `sn` fetches the membership: its core hears what changed since its last.
    pub fn members_fetch(&mut self, sn: u32, life: u32) {
        if !self.is_live(sn, life) {
            return;
        }
        let now = self.now();
        let at = self.queue.now();
        let version = self.list.members.version();
        let Some(node) = self.nodes.get_mut(sn as usize) else {
            return;
        };
        let since_start = at.saturating_sub(node.started_at);
        if node.members_version != version {
            let old = node.core.members().clone();
            let change = self.list.members.change(node.members_version, &old);
            let members = self.list.members.current().clone();
            node.core
                .members_changed(now, members, &change.joined, &change.left);
            node.members_version = version;
            self.carry_out(sn);
        }
        let next = if since_start < STARTUP_PERIOD {
            STARTUP_FETCH
        } else if since_start < STARTUP_PERIOD + STARTUP_FETCH {
            // Onto the steady cadence with a phase of its own (see the module docs).
            let phase = (self.seed_for(3, sn, life) >> 11) as f64 / (1u64 << 53) as f64;
            FETCH.mul_f64(phase)
        } else {
            FETCH
        };
        self.queue.after(next, Event::Members { sn, life });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::ids::{supernode_addr, supernode_id};

    fn listed(numbers: &[u32]) -> Vec<(NodeId, SocketAddr)> {
        let mut all: Vec<(NodeId, SocketAddr)> = numbers
            .iter()
            .map(|&n| (supernode_id(n), supernode_addr(n)))
            .collect();
        all.sort();
        all
    }

    #[test]
    fn versions_change_only_with_the_set_and_jumps_get_the_combined_change() {
        let mut m = Membership::default();
        m.update(listed(&[1, 2, 3]).into_iter());
        assert_eq!(m.version(), 1);
        let v1 = m.current().clone();
        m.update(listed(&[1, 2, 3]).into_iter());
        assert_eq!(m.version(), 1, "the same set is the same version");
        m.update(listed(&[1, 3, 4]).into_iter());
        m.update(listed(&[1, 4, 5]).into_iter());
        assert_eq!(m.version(), 3);
        let change = m.change(1, &v1);
        assert_eq!(change.joined, vec![supernode_id(4), supernode_id(5)]);
        let mut left = change.left.clone();
        left.sort();
        assert_eq!(left, vec![supernode_id(2), supernode_id(3)]);
        // Computed once, shared by every supernode that makes the same jump.
        assert!(Rc::ptr_eq(&change, &m.change(1, &v1)));
        let first = m.change(0, &MemberSet::default());
        assert_eq!(first.joined.len(), 3);
        assert!(first.left.is_empty());
    }
}
