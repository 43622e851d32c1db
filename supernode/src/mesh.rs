//! The supernode overlay: which other supernodes we know, which we link to, whom to dial.
//!
//! Supernodes are learned from the list server and from neighbours' gossip. The mesh keeps
//! links to up to `max_neighbors` of them (a full mesh while the network is small), dials
//! new ones when a link is lost, and backs off from addresses that fail. When two supernodes
//! dial each other at once, both keep the link started by the smaller node id.
//!
//! Trust (SECURITY.md): a supernode is believed to be one only when a list server listed
//! it (after its dial-back), the operator named it, or it answered as itself at its address
//! (we dialled it, pinned to its id). Gossip only adds [`Trust::Heard`] candidates: never
//! dialled, listed or passed on, never overwriting a known address, at most
//! [`MAX_HEARD_PER_NEIGHBOR`] per neighbour, forgotten after [`FORGET_AFTER`]. So no
//! neighbour can make us send a packet to an address it names. A supernode that links to
//! us without being believed is refused and dialled back at the address its handshake
//! came from (proven by QUIC's handshake, so not a third party's), a few a minute.

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
/// Most gossip-only candidates one neighbour may add.
pub const MAX_HEARD_PER_NEIGHBOR: usize = 32;
/// Most dial-backs to supernodes that linked to us unbelieved, per minute.
pub const MAX_DIAL_BACKS_PER_MINUTE: usize = 20;
/// Most leaves we believe a supernode has or can take (what it says is clamped to this:
/// a claim decides who is asked first and who is handed to leaves).
pub const MAX_BELIEVED_LEAVES: u32 = 2_000;

/// Why we believe a supernode is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trust {
    /// Only a neighbour said so: a candidate, never dialled, listed or gossiped.
    Heard,
    /// A list server listed it after its dial-back, or the operator named it.
    Listed,
    /// It answered as itself at its address when we dialled it.
    Reached,
}

#[derive(Debug, Clone)]
struct Known {
    addr: SocketAddr,
    load: Load,
    heard: Instant,
    failures: u32,
    next_attempt: Instant,
    trust: Trust,
    /// Who told us, for a `Heard` one.
    told_by: Option<NodeId>,
    /// It linked to us unbelieved: dial it back once at the address it came from.
    dial_back: bool,
}

impl Known {
    fn new(now: Instant, addr: SocketAddr, load: Load, trust: Trust) -> Self {
        Self {
            addr,
            load: clamp(load),
            heard: now,
            failures: 0,
            next_attempt: now,
            trust,
            told_by: None,
            dial_back: false,
        }
    }

    fn dialable(&self) -> bool {
        self.trust != Trust::Heard || self.dial_back
    }
}

/// A load as far as we believe it.
pub fn clamp(load: Load) -> Load {
    let capacity = load.capacity.min(MAX_BELIEVED_LEAVES);
    Load {
        leaves: load.leaves.min(MAX_BELIEVED_LEAVES),
        capacity,
        neighbors: load.neighbors,
    }
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
    /// When the dial-backs of the last minute were asked for.
    dial_backs: std::collections::VecDeque<Instant>,
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
            dial_backs: std::collections::VecDeque::new(),
        }
    }

    /// Supernodes a list server listed, or the operator named: believed. Our own entry is
    /// ignored.
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
                    k.load = clamp(info.load);
                    k.heard = now;
                    k.trust = k.trust.max(Trust::Listed);
                    k.told_by = None;
                }
                None if room => {
                    let known = Known::new(now, info.addr, info.load, Trust::Listed);
                    self.known.insert(info.node_id, known);
                }
                None => {}
            }
        }
    }

    /// Supernodes neighbour `from` says it is linked to: candidates at most, see the module
    /// docs. A known supernode keeps its address and load; gossip only keeps it fresh.
    pub fn learn_gossip(&mut self, now: Instant, from: NodeId, infos: &[SupernodeInfo]) {
        let mut heard_from = self
            .known
            .values()
            .filter(|k| k.trust == Trust::Heard && k.told_by == Some(from))
            .count();
        for info in infos {
            if info.node_id == self.me || info.node_id == from {
                continue;
            }
            let room = self.known.len() < MAX_KNOWN;
            match self.known.get_mut(&info.node_id) {
                Some(k) if k.addr == info.addr => k.heard = now,
                Some(_) => {}
                None if heard_from < MAX_HEARD_PER_NEIGHBOR && room => {
                    let mut known = Known::new(now, info.addr, info.load, Trust::Heard);
                    known.told_by = Some(from);
                    self.known.insert(info.node_id, known);
                    heard_from += 1;
                }
                None => {}
            }
        }
    }

    /// How far we believe `node_id` is a supernode.
    pub fn trust(&self, node_id: &NodeId) -> Option<Trust> {
        self.known.get(node_id).map(|k| k.trust)
    }

    /// Records a neighbour's load as it reports it.
    pub fn update_load(&mut self, now: Instant, node_id: NodeId, load: Load) {
        if let Some(k) = self.known.get_mut(&node_id) {
            k.load = clamp(load);
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
                k.dialable()
                    && k.next_attempt <= now
                    && !self.links.contains_key(id)
                    && !self.dialing.contains(id)
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
        // A dial-back that failed: it is not a supernode we can reach; forget it.
        if self
            .known
            .get(&node_id)
            .is_some_and(|k| k.trust == Trust::Heard)
        {
            self.known.remove(&node_id);
            return;
        }
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
        if initiator == self.me {
            // We dialled it, pinned to its id: it answered as itself at that address.
            if let Some(k) = self.known.get_mut(&node_id) {
                k.trust = Trust::Reached;
                k.told_by = None;
                k.dial_back = false;
                k.heard = now;
                k.failures = 0;
            }
        } else if self
            .known
            .get(&node_id)
            .is_none_or(|k| k.trust == Trust::Heard)
        {
            // A stranger: not a link, but a dial back at the address it came from.
            if let Some(addr) = addr {
                self.ask_dial_back(now, node_id, addr);
            }
            return LinkDecision::Refuse;
        } else if let Some(k) = self.known.get_mut(&node_id) {
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

    /// Marks `node_id` to be dialled back at `addr`, within the minute's budget.
    fn ask_dial_back(&mut self, now: Instant, node_id: NodeId, addr: SocketAddr) {
        let minute = Duration::from_secs(60);
        while self
            .dial_backs
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= minute)
        {
            self.dial_backs.pop_front();
        }
        if self.dial_backs.len() >= MAX_DIAL_BACKS_PER_MINUTE
            || self.dialing.contains(&node_id)
            || (self.known.len() >= MAX_KNOWN && !self.known.contains_key(&node_id))
        {
            return;
        }
        self.dial_backs.push_back(now);
        let mut known = Known::new(now, addr, Load::default(), Trust::Heard);
        known.dial_back = true;
        self.known.insert(node_id, known);
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

    /// Number of other supernodes known (gossip-only candidates included).
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
            .filter(|(id, k)| Some(**id) != exclude && k.trust != Trust::Heard)
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
        big.learn(t0, &[info(3)]);
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
        small.learn(t0, &[info(5)]);
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
        mesh.learn(t0, &[info(1), info(2), info(3), info(9)]);
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

    fn at(n: u8, addr: &str) -> SupernodeInfo {
        SupernodeInfo {
            addr: addr.parse().unwrap(),
            ..info(n)
        }
    }

    #[test]
    fn gossip_never_makes_us_dial_or_list_an_address_it_names() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(1);
        let mut mesh = Mesh::new(id(100), 32);
        // A neighbour gossips 200 invented supernodes, all at one victim address.
        let invented: Vec<SupernodeInfo> = (0..200u8)
            .map(|n| SupernodeInfo {
                node_id: NodeId::from_bytes([
                    n, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
                    7, 7, 7, 7, 7, 7,
                ]),
                ..at(1, "127.0.9.9:9")
            })
            .collect();
        mesh.learn_gossip(t0, id(1), &invented);
        assert_eq!(
            mesh.known_count(),
            MAX_HEARD_PER_NEIGHBOR,
            "capped per neighbour"
        );
        for later in [0, 5, 60, 119] {
            let now = t0 + Duration::from_secs(later);
            assert!(
                mesh.poll_dials(now, &mut rng).is_empty(),
                "dialled at {later} s"
            );
        }
        assert!(mesh.list(100, None).is_empty(), "handed on to leaves");
        mesh.expire(t0 + FORGET_AFTER);
        assert_eq!(mesh.known_count(), 0, "forgotten");
    }

    #[test]
    fn gossip_never_rewrites_a_believed_address() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(1);
        let mut mesh = Mesh::new(id(100), 32);
        mesh.learn(t0, &[info(1), info(2)]);
        // The eclipse: a neighbour says both honest supernodes moved to a victim address.
        mesh.learn_gossip(t0, id(3), &[at(1, "127.0.9.9:9"), at(2, "127.0.9.9:9")]);
        let mut dials = mesh.poll_dials(t0, &mut rng);
        dials.sort();
        assert_eq!(dials, vec![(id(1), info(1).addr), (id(2), info(2).addr)]);
        let listed: Vec<SocketAddr> = mesh.list(10, None).iter().map(|i| i.addr).collect();
        assert!(
            listed
                .iter()
                .all(|a| a.ip() != "127.0.9.9".parse::<std::net::IpAddr>().unwrap())
        );
        // A list server may move one (it dialled it back there).
        mesh.learn(t0, &[at(1, "127.0.0.11:7000")]);
        assert_eq!(
            mesh.list(10, None)
                .iter()
                .find(|i| i.node_id == id(1))
                .unwrap()
                .addr,
            "127.0.0.11:7000".parse().unwrap()
        );
    }

    #[test]
    fn a_stranger_linking_to_us_is_refused_and_dialled_back_where_it_came_from() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(1);
        let mut mesh = Mesh::new(id(100), 32);
        let came_from: SocketAddr = "127.0.0.5:7000".parse().unwrap();
        assert_eq!(
            mesh.link_up(t0, id(5), SessionId(1), id(5), Some(came_from)),
            LinkDecision::Refuse
        );
        assert_eq!(mesh.poll_dials(t0, &mut rng), vec![(id(5), came_from)]);
        // Our dial reached it: now it is believed, and the link we dialled is kept.
        assert_eq!(
            mesh.link_up(t0, id(5), SessionId(2), id(100), None),
            LinkDecision::Keep { close: None }
        );
        assert_eq!(mesh.trust(&id(5)), Some(Trust::Reached));
        // A stranger whose dial-back fails is forgotten.
        mesh.link_up(
            t0,
            id(6),
            SessionId(3),
            id(6),
            Some("127.0.0.6:7000".parse().unwrap()),
        );
        assert_eq!(mesh.poll_dials(t0, &mut rng).len(), 1);
        mesh.dial_failed(t0, id(6));
        assert_eq!(mesh.trust(&id(6)), None);
        // Dial-backs are budgeted: a flood of strangers gets a few a minute.
        for n in 0..100u8 {
            let stranger = NodeId::from_bytes([n; 32].map(|b| b ^ 0x80));
            let addr = SocketAddr::from(([127, 0, 1, n], 7000));
            mesh.link_up(
                t0,
                stranger,
                SessionId(100 + u64::from(n)),
                stranger,
                Some(addr),
            );
        }
        let mut dialled = 0;
        while let dials = mesh.poll_dials(t0, &mut rng)
            && !dials.is_empty()
        {
            for (node, _) in dials {
                dialled += 1;
                mesh.dial_failed(t0, node);
            }
        }
        assert_eq!(dialled, MAX_DIAL_BACKS_PER_MINUTE - 2);
    }

    #[test]
    fn claimed_loads_are_clamped() {
        let t0 = Instant::now();
        let mut mesh = Mesh::new(id(100), 32);
        let mut huge = info(1);
        huge.load = Load {
            leaves: u32::MAX,
            capacity: u32::MAX,
            neighbors: 0,
        };
        mesh.learn(t0, &[huge, info(2)]);
        let listed = mesh.list(10, None);
        let one = listed.iter().find(|i| i.node_id == id(1)).unwrap();
        assert_eq!(one.load.capacity, MAX_BELIEVED_LEAVES);
        assert_eq!(one.load.leaves, MAX_BELIEVED_LEAVES);
    }
}
