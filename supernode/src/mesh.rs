//! The supernode overlay: which other supernodes we know, which we link to, whom to dial.
//!
//! Supernodes are learned from the list server and from neighbours' gossip. The mesh keeps
//! links to up to `max_neighbors` of them (a full mesh while the network is small), dials
//! new ones when a link is lost, and backs off from addresses that fail. When two supernodes
//! dial each other at once, both keep the link started by the smaller node id.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::seq::SliceRandom;
use rustc_hash::{FxHashMap, FxHashSet};
use superpeer_common::NodeId;
use superpeer_common::wire::{Load, SupernodeInfo};

use crate::SessionId;

/// Forget a supernode nobody has mentioned for this long (and we are not linked to).
const FORGET_AFTER: Duration = Duration::from_secs(120);
/// Most supernodes remembered.
const MAX_KNOWN: usize = 5_000;
/// Longest wait between dial attempts to one supernode.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Known {
    addr: SocketAddr,
    load: Load,
    heard: Instant,
    failures: u32,
    next_attempt: Instant,
}

/// A live link.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// The session carrying it.
    pub session: SessionId,
    /// Which side dialled.
    pub initiator: NodeId,
}

/// What to do with a newly established link.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkDecision {
    /// Keep it; `close` is an older duplicate link to close.
    Keep { close: Option<SessionId> },
    /// Close it: we already have the link both sides keep, or we are full.
    Refuse,
}

/// The overlay's state.
#[derive(Debug)]
pub struct Mesh {
    me: NodeId,
    max_neighbors: usize,
    known: FxHashMap<NodeId, Known>,
    links: FxHashMap<NodeId, Link>,
    dialing: FxHashSet<NodeId>,
}

impl Mesh {
    /// A mesh for node `me` with links to at most `max_neighbors` supernodes.
    pub fn new(me: NodeId, max_neighbors: usize) -> Self {
        Self {
            me,
            max_neighbors,
            known: FxHashMap::default(),
            links: FxHashMap::default(),
            dialing: FxHashSet::default(),
        }
    }

    /// Supernodes heard of (list server, gossip). Our own entry is ignored.
    pub fn learn(&mut self, now: Instant, infos: &[SupernodeInfo]) {
        for info in infos {
            if info.node_id == self.me {
                continue;
            }
            let room = self.known.len() < MAX_KNOWN;
            match self.known.get_mut(&info.node_id) {
                Some(k) => {
                    if k.addr != info.addr {
                        k.addr = info.addr;
                        k.failures = 0;
                        k.next_attempt = now;
                    }
                    k.load = info.load;
                    k.heard = now;
                }
                None if room => {
                    self.known.insert(
                        info.node_id,
                        Known {
                            addr: info.addr,
                            load: info.load,
                            heard: now,
                            failures: 0,
                            next_attempt: now,
                        },
                    );
                }
                None => {}
            }
        }
    }

    /// Records a neighbour's load as it reports it.
    pub fn update_load(&mut self, now: Instant, node_id: NodeId, load: Load) {
        if let Some(k) = self.known.get_mut(&node_id) {
            k.load = load;
            k.heard = now;
        }
    }

    /// Supernodes to dial now, marked as being dialled. Random among the eligible so
    /// supernodes do not all crowd the same ones.
    pub fn poll_dials(&mut self, now: Instant, rng: &mut impl Rng) -> Vec<(NodeId, SocketAddr)> {
        let room = self
            .max_neighbors
            .saturating_sub(self.links.len() + self.dialing.len());
        if room == 0 {
            return Vec::new();
        }
        let mut eligible: Vec<(NodeId, SocketAddr)> = self
            .known
            .iter()
            .filter(|(id, k)| {
                k.next_attempt <= now && !self.links.contains_key(id) && !self.dialing.contains(id)
            })
            .map(|(id, k)| (*id, k.addr))
            .collect();
        eligible.shuffle(rng);
        eligible.truncate(room);
        for (id, _) in &eligible {
            self.dialing.insert(*id);
        }
        eligible
    }

    /// A dial we asked for failed: back off exponentially.
    pub fn dial_failed(&mut self, now: Instant, node_id: NodeId) {
        self.dialing.remove(&node_id);
        if let Some(k) = self.known.get_mut(&node_id) {
            k.failures = k.failures.saturating_add(1);
            let backoff = Duration::from_secs(1)
                .saturating_mul(1 << k.failures.min(6))
                .min(MAX_BACKOFF);
            k.next_attempt = now + backoff;
        }
    }

    /// A link is up (dialled by `initiator`). Decides whether to keep it.
    pub fn link_up(
        &mut self,
        now: Instant,
        node_id: NodeId,
        session: SessionId,
        initiator: NodeId,
        addr: Option<SocketAddr>,
    ) -> LinkDecision {
        self.dialing.remove(&node_id);
        if let Some(addr) = addr {
            let k = self.known.entry(node_id).or_insert(Known {
                addr,
                load: Load::default(),
                heard: now,
                failures: 0,
                next_attempt: now,
            });
            k.heard = now;
            k.failures = 0;
        }
        let preferred = self.me.min(node_id);
        match self.links.get(&node_id).copied() {
            None => {
                // Our own dials under way hold their slots: an incoming link may not take
                // them, and no link goes past `max_neighbors`.
                let taken = if initiator == self.me {
                    self.links.len()
                } else {
                    self.links.len() + self.dialing.len()
                };
                if taken >= self.max_neighbors {
                    return LinkDecision::Refuse;
                }
                self.links.insert(node_id, Link { session, initiator });
                LinkDecision::Keep { close: None }
            }
            // Two links at once: both sides keep the one the smaller id dialled. A second
            // link from the same initiator is a reconnect: the new one wins.
            Some(old) if old.initiator == initiator || initiator == preferred => {
                self.links.insert(node_id, Link { session, initiator });
                LinkDecision::Keep {
                    close: Some(old.session),
                }
            }
            Some(_) => LinkDecision::Refuse,
        }
    }

    /// A link is gone. Returns true if it was the current link to that node; we will dial
    /// it again after a short pause, if it is still around.
    pub fn link_down(&mut self, now: Instant, node_id: NodeId, session: SessionId) -> bool {
        match self.links.get(&node_id) {
            Some(link) if link.session == session => {
                self.links.remove(&node_id);
                if let Some(k) = self.known.get_mut(&node_id) {
                    k.next_attempt = now + Duration::from_secs(1);
                }
                true
            }
            _ => false,
        }
    }

    /// Forgets supernodes not heard of for long.
    pub fn expire(&mut self, now: Instant) {
        let links = &self.links;
        self.known.retain(|id, k| {
            links.contains_key(id) || now.saturating_duration_since(k.heard) < FORGET_AFTER
        });
    }

    /// The current link to `node_id`.
    pub fn link(&self, node_id: &NodeId) -> Option<Link> {
        self.links.get(node_id).copied()
    }

    /// Linked supernodes.
    pub fn neighbors(&self) -> impl Iterator<Item = (NodeId, Link)> + '_ {
        self.links.iter().map(|(id, l)| (*id, *l))
    }

    /// Number of links.
    pub fn neighbor_count(&self) -> usize {
        self.links.len()
    }

    /// Number of other supernodes known.
    pub fn known_count(&self) -> usize {
        self.known.len()
    }

    /// Up to `max` supernodes we are linked to (live right now), those with room first.
    pub fn list_linked(&self, max: usize, exclude: Option<NodeId>) -> Vec<SupernodeInfo> {
        let mut infos = self.list(usize::MAX, exclude);
        infos.retain(|info| self.links.contains_key(&info.node_id));
        infos.truncate(max);
        infos
    }

    /// Up to `max` known supernodes for a leaf or a neighbour, those with room first
    /// (linked ones before merely heard-of ones within each group).
    pub fn list(&self, max: usize, exclude: Option<NodeId>) -> Vec<SupernodeInfo> {
        let mut infos: Vec<(bool, bool, SupernodeInfo)> = self
            .known
            .iter()
            .filter(|(id, _)| Some(**id) != exclude)
            .map(|(id, k)| {
                let full = k.load.capacity > 0 && k.load.leaves >= k.load.capacity;
                let info = SupernodeInfo {
                    node_id: *id,
                    addr: k.addr,
                    load: k.load,
                    stale: false,
                };
                (full, !self.links.contains_key(id), info)
            })
            .collect();
        // Asked by every leaf twice a minute: select the first `max`, sort only those.
        let key = |a: &(bool, bool, SupernodeInfo)| (a.0, a.1, a.2.load.leaves, a.2.node_id);
        if max < infos.len() {
            infos.select_nth_unstable_by_key(max, key);
            infos.truncate(max);
        }
        infos.sort_unstable_by_key(key);
        infos.into_iter().map(|(_, _, info)| info).collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    fn info(n: u8) -> SupernodeInfo {
        SupernodeInfo {
            node_id: id(n),
            addr: format!("127.0.0.{n}:7000").parse().unwrap(),
            load: Load {
                leaves: 0,
                capacity: 10,
                neighbors: 0,
            },
            stale: false,
        }
    }

    #[test]
    fn dials_up_to_the_degree_and_backs_off_failures() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(1);
        let mut mesh = Mesh::new(id(100), 2);
        mesh.learn(t0, &[info(1), info(2), info(3), info(100)]);
        assert_eq!(mesh.known_count(), 3, "our own entry is ignored");
        let dials = mesh.poll_dials(t0, &mut rng);
        assert_eq!(dials.len(), 2);
        assert!(
            mesh.poll_dials(t0, &mut rng).is_empty(),
            "already dialling up to the degree"
        );
        let (failed, _) = dials[0];
        mesh.dial_failed(t0, failed);
        let next = mesh.poll_dials(t0, &mut rng);
        assert_eq!(next.len(), 1);
        assert_ne!(next[0].0, failed, "the failed one waits out its backoff");
        assert_eq!(
            mesh.link_up(t0, next[0].0, SessionId(1), id(100), None),
            LinkDecision::Keep { close: None }
        );
    }

    #[test]
    fn simultaneous_links_converge_on_the_smaller_initiator() {
        let t0 = Instant::now();
        // Node 5 (larger) and node 3 (smaller) dial each other.
        let mut big = Mesh::new(id(5), 8);
        assert_eq!(
            big.link_up(t0, id(3), SessionId(1), id(5), None),
            LinkDecision::Keep { close: None }
        );
        assert_eq!(
            big.link_up(t0, id(3), SessionId(2), id(3), None),
            LinkDecision::Keep {
                close: Some(SessionId(1))
            }
        );
        let mut small = Mesh::new(id(3), 8);
        assert_eq!(
            small.link_up(t0, id(5), SessionId(7), id(3), None),
            LinkDecision::Keep { close: None }
        );
        assert_eq!(
            small.link_up(t0, id(5), SessionId(8), id(5), None),
            LinkDecision::Refuse
        );
        // Both keep the link node 3 dialled.
        assert_eq!(big.link(&id(3)).unwrap().initiator, id(3));
        assert_eq!(small.link(&id(5)).unwrap().initiator, id(3));
    }

    #[test]
    fn links_never_exceed_max_neighbors() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(3);
        let mut mesh = Mesh::new(id(100), 2);
        mesh.learn(t0, &[info(1), info(2), info(3)]);
        let dials = mesh.poll_dials(t0, &mut rng);
        assert_eq!(dials.len(), 2);
        // While both dials are under way, their slots are theirs.
        assert_eq!(
            mesh.link_up(t0, id(9), SessionId(1), id(9), None),
            LinkDecision::Refuse
        );
        // One dial fails; an incoming link takes its slot; the other dial completes.
        mesh.dial_failed(t0, dials[0].0);
        assert_eq!(
            mesh.link_up(t0, id(9), SessionId(2), id(9), None),
            LinkDecision::Keep { close: None }
        );
        assert_eq!(
            mesh.link_up(t0, dials[1].0, SessionId(3), id(100), None),
            LinkDecision::Keep { close: None }
        );
        // Full: neither an incoming link nor one we dialled gets in.
        assert_eq!(
            mesh.link_up(t0, id(8), SessionId(4), id(8), None),
            LinkDecision::Refuse
        );
        assert_eq!(
            mesh.link_up(t0, dials[0].0, SessionId(5), id(100), None),
            LinkDecision::Refuse
        );
        assert_eq!(mesh.neighbor_count(), 2);
    }

    #[test]
    fn lost_links_are_redialled() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(2);
        let mut mesh = Mesh::new(id(100), 4);
        mesh.learn(t0, &[info(1)]);
        let dials = mesh.poll_dials(t0, &mut rng);
        mesh.link_up(t0, dials[0].0, SessionId(1), id(100), None);
        assert!(mesh.link_down(t0, id(1), SessionId(1)));
        assert!(
            mesh.poll_dials(t0, &mut rng).is_empty(),
            "a short pause first"
        );
        assert_eq!(
            mesh.poll_dials(t0 + Duration::from_secs(2), &mut rng).len(),
            1
        );
    }

    #[test]
    fn lists_prefer_room() {
        let t0 = Instant::now();
        let mut mesh = Mesh::new(id(100), 4);
        let mut full = info(1);
        full.load.leaves = 10;
        mesh.learn(t0, &[full, info(2)]);
        let list = mesh.list(10, None);
        assert_eq!(list[0].node_id, id(2));
        assert_eq!(list[1].node_id, id(1));
        assert_eq!(mesh.list(10, Some(id(2))).len(), 1);
    }
}
