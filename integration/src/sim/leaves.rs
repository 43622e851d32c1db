//! Leaves: plain structs, since a leaf decides nothing a supernode depends on beyond where
//! it attaches and what it sends. The joining rule is the one of the leaf's `Joiner`
//! (`node/src/leaf/join.rs`, not exported from the `superpeer` crate): take candidates
//! from the list server, probe a few (5) at once, attach to the lowest-RTT one that has
//! room; a full supernode's refusal sends the leaf to its next candidates. The probe's
//! load is read from the core when the probes come back.
//!
//! With a [`Layout`](super::Layout), a leaf's one candidate is its supernode there.
//!
//! Flow of one session: [`Event::LeafJoin`] (list fetch and probes) → `LeafAttach` at the
//! supernode (`leaf_attach`, 1.5 RTT after the choice) → `Publish` in messages of at most
//! 2,000 entries, one RTT later → queries → with churn, `Leaving` after an exponential
//! session, and back after an exponential pause (a quarter of the mean session).

use std::time::Duration;

use rand::Rng;
use superpeer_common::wire::{
    HelloReply, LeafToSupernode, MAX_ENTRIES_PER_MESSAGE, QueryEnd, SupernodeToLeaf,
};
use superpeer_supernode::SessionId;

use super::ids::{leaf_addr, leaf_id, supernode_number};
use super::latency::Place;
use super::world::{Event, Peer, World};

/// No supernode.
const NONE: u32 = u32::MAX;
/// Candidates probed at once (`JoinConfig::probe_batch`).
const PROBE_BATCH: usize = 5;
/// Wait before trying again when no candidate has room, or none is listed yet.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
struct Leaf {
    /// The supernode of the current session, or `NONE`.
    sn: u32,
    session: SessionId,
    /// Counts sessions: a message for an older one is dropped.
    epoch: u32,
    /// Counts online periods: a departure scheduled for an older one is ignored.
    life: u32,
    /// The supernode whose index holds our files now, or `NONE`.
    indexed_at: u32,
    online: bool,
}

/// Every leaf's state.
pub struct Leaves {
    all: Vec<Leaf>,
}

impl Leaves {
    /// `count` leaves, online, not yet attached.
    pub fn new(count: usize) -> Self {
        let leaf = Leaf {
            sn: NONE,
            session: SessionId(0),
            epoch: 0,
            life: 0,
            indexed_at: NONE,
            online: true,
        };
        Self {
            all: vec![leaf; count],
        }
    }

    /// Leaves in all.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The session number of leaf `n`, for messages sent to it.
    pub fn epoch(&self, n: u32) -> u32 {
        self.all.get(n as usize).map_or(0, |l| l.epoch)
    }

    /// The supernode whose index holds leaf `n`'s files.
    pub fn indexed_at(&self, n: u32) -> Option<u32> {
        self.all
            .get(n as usize)
            .map(|l| l.indexed_at)
            .filter(|&sn| sn != NONE)
    }

    /// Where leaf `n` is attached (supernode, session), if it is.
    pub fn attached(&self, n: u32) -> Option<(u32, SessionId)> {
        self.all
            .get(n as usize)
            .filter(|l| l.online && l.sn != NONE)
            .map(|l| (l.sn, l.session))
    }

    /// Leaves attached now.
    pub fn attached_count(&self) -> usize {
        self.all.iter().filter(|l| l.online && l.sn != NONE).count()
    }

    /// Supernode `sn` dropped leaf `n`'s files.
    pub fn unindexed(&mut self, n: u32, sn: u32) {
        if let Some(leaf) = self.all.get_mut(n as usize) {
            if leaf.indexed_at == sn {
                leaf.indexed_at = NONE;
            }
        }
    }

    fn get_mut(&mut self, n: u32) -> Option<&mut Leaf> {
        self.all.get_mut(n as usize)
    }
}

/// An exponential draw with `mean`.
fn exponential(mean: Duration, rng: &mut impl Rng) -> Duration {
    let u: f64 = rng.random();
    mean.mul_f64(-(1.0 - u).ln())
}

impl World<'_> {
    /// The initial population joins one leaf after the other over the join period.
    pub fn join_next(&mut self, n: u32) {
        let count = self.leaves.len() as u32;
        self.leaf_online(n);
        if n + 1 < count {
            let step = self.timeline.join_spread / count.max(1);
            self.queue.after(step, Event::JoinNext(n + 1));
        }
    }

    fn leaf_online(&mut self, n: u32) {
        let Some(leaf) = self.leaves.get_mut(n) else {
            return;
        };
        leaf.online = true;
        leaf.life += 1;
        let life = leaf.life;
        if let Some(mean) = self.config.churn {
            let session = exponential(mean, &mut self.rng);
            self.queue
                .after(session, Event::LeafLeave { leaf: n, life });
        }
        self.leaf_join(n);
    }

    /// Leaf `n` picks a supernode: the list server's candidates, probed.
    pub fn leaf_join(&mut self, n: u32) {
        if !self.leaves.all.get(n as usize).is_some_and(|l| l.online) {
            return;
        }
        let me = Place::Leaf(n);
        let home = self
            .config
            .layout
            .as_ref()
            .map(|l| l.homes.get(n as usize).copied());
        let candidates: Vec<u32> = match home {
            // Laid out: the leaf's one candidate is its supernode in the layout.
            Some(home) => home.into_iter().collect(),
            None => self
                .list
                .sample(PROBE_BATCH, &mut self.rng)
                .iter()
                .filter_map(|info| supernode_number(&info.node_id))
                .collect(),
        };
        let probed = candidates
            .iter()
            .map(|&sn| (self.latency.rtt(me, Place::Supernode(sn)), sn));
        let slowest_probe = probed.clone().map(|(rtt, _)| rtt).max();
        let best = probed
            .filter(|&(_, sn)| {
                self.nodes.get(sn as usize).is_some_and(|node| {
                    let load = node.core.load();
                    node.started && load.leaves < load.capacity
                })
            })
            .min();
        let (Some((rtt, sn)), Some(slowest)) = (best, slowest_probe) else {
            self.queue.after(RETRY, Event::LeafJoin(n));
            return;
        };
        let Some(leaf) = self.leaves.get_mut(n) else {
            return;
        };
        leaf.epoch += 1;
        let epoch = leaf.epoch;
        let fetch = self.latency.rtt(me, Place::ListServer);
        let delay = fetch + slowest + rtt.mul_f64(1.5);
        self.queue
            .after(delay, Event::LeafAttach { leaf: n, sn, epoch });
    }

    /// Leaf `n`'s attach reaches supernode `sn`.
    pub fn leaf_attach(&mut self, n: u32, sn: u32, epoch: u32) {
        let now = self.now();
        if self.leaves.epoch(n) != epoch {
            return; // the leaf went away meanwhile
        }
        let rtt = self.latency.rtt(Place::Leaf(n), Place::Supernode(sn));
        let Some(node) = self.nodes.get_mut(sn as usize) else {
            return;
        };
        let session = node.new_session();
        match node
            .core
            .leaf_attach(now, session, leaf_id(n), leaf_addr(n))
        {
            HelloReply::Welcome { .. } => {
                node.sessions.insert(session, Peer::Leaf(n));
                if let Some(leaf) = self.leaves.get_mut(n) {
                    leaf.sn = sn;
                    leaf.session = session;
                }
                let share = self.workload.shares.get(n as usize);
                let entries = self.content.entries(share.map_or(&[][..], Vec::as_slice));
                for chunk in entries.chunks(MAX_ENTRIES_PER_MESSAGE) {
                    let msg = LeafToSupernode::Publish {
                        entries: chunk.to_vec(),
                    };
                    self.queue.after(rtt, Event::FromLeaf { sn, session, msg });
                }
            }
            HelloReply::Refused { .. } => self.queue.after(rtt / 2, Event::LeafJoin(n)),
        }
        self.carry_out(sn);
    }

    /// A leaf's message reaches its supernode.
    pub fn deliver_from_leaf(&mut self, sn: u32, session: SessionId, msg: LeafToSupernode) {
        let now = self.now();
        let Some(node) = self.nodes.get_mut(sn as usize) else {
            return;
        };
        let Some(Peer::Leaf(n)) = node.sessions.get(&session).copied() else {
            return;
        };
        let published = matches!(msg, LeafToSupernode::Publish { .. });
        node.core.leaf_message(now, session, msg);
        if published {
            if let Some(leaf) = self.leaves.get_mut(n) {
                leaf.indexed_at = sn;
            }
        }
        self.carry_out(sn);
    }

    /// A supernode's message reaches leaf `n`.
    pub fn deliver_to_leaf(&mut self, n: u32, epoch: u32, msg: SupernodeToLeaf) {
        if self.leaves.epoch(n) != epoch {
            return;
        }
        let at = self.queue.now();
        match msg {
            SupernodeToLeaf::Hits { id, hits } => self.queries.hits(id, at, &hits),
            SupernodeToLeaf::QueryDone { id, end } => self.queries.done(id, at, end),
            // Over the leaf's query budget: it ends with nothing found.
            SupernodeToLeaf::QueryRefused { id, .. } => {
                self.queries.done(id, at, QueryEnd::Exhausted)
            }
            _ => {}
        }
    }

    /// Leaf `n`'s supernode closed its session: it attaches elsewhere at once.
    pub fn leaf_closed(&mut self, n: u32, epoch: u32) {
        let Some(leaf) = self.leaves.get_mut(n) else {
            return;
        };
        if leaf.epoch != epoch {
            return;
        }
        leaf.sn = NONE;
        self.leaf_join(n);
    }

    /// Leaf `n`'s session ends (churn): it says goodbye and comes back later.
    pub fn leaf_leave(&mut self, n: u32, life: u32) {
        let Some(leaf) = self.leaves.get_mut(n) else {
            return;
        };
        if leaf.life != life || !leaf.online {
            return;
        }
        let (sn, session) = (leaf.sn, leaf.session);
        leaf.online = false;
        leaf.sn = NONE;
        leaf.epoch += 1;
        if sn != NONE {
            let delay = self.latency.one_way(Place::Leaf(n), Place::Supernode(sn));
            let msg = LeafToSupernode::Leaving;
            self.queue
                .after(delay, Event::FromLeaf { sn, session, msg });
        }
        let mean = self.config.churn.unwrap_or(Duration::from_secs(60)) / 4;
        let pause = exponential(mean, &mut self.rng);
        self.queue.after(pause, Event::LeafReturn(n));
    }

    /// Leaf `n` comes back online.
    pub fn leaf_return(&mut self, n: u32) {
        self.leaf_online(n);
    }
}
