//! Probes, attaches and sessions between leaves and supernodes, over simulated latency (the
//! node's `session.rs` and the supernode's side of it):
//!
//! 1. Probe: a QUIC handshake (1.5 RTT) and three pings (3 RTT); the answer carries the
//!    supernode's load as it is when the probe completes (`SupernodeCore::load`, what its
//!    probe answer says). A supernode that is down: nothing answers, the handshake gives up
//!    after 3 s; one that goes down during the probe: silence until the idle timeout.
//! 2. Attach: the hello reaches the supernode 1.5 RTT after the dial; its core decides
//!    (`leaf_attach`); the welcome or refusal (with `try_instead`) reaches the leaf half an
//!    RTT later, before anything the supernode sends on the session (the `Limits` first).
//! 3. Session: messages both ways after the one-way delay, on the session they were sent
//!    on; a message for a session its receiver no longer holds is dropped, as a frame on a
//!    closed connection is.

use std::time::Duration;

use superpeer::leaf::{AttachOutcome, SessionNo};
use superpeer_common::wire::{HelloReply, LeafToSupernode, SupernodeToLeaf};
use superpeer_common::{NodeId, PeerAddr};
use superpeer_supernode::SessionId;

use super::ids::{leaf_addr, leaf_id};
use super::latency::Place;
use super::leaves::LeafSession;
use super::world::{AttachReply, CONNECT_TIMEOUT, Event, LEAF_IDLE, Peer, World};

/// No slot.
const NO_SLOT: u32 = u32::MAX;

/// Where a probe or an attach to a node id goes.
enum Target {
    /// A running supernode.
    Supernode(u32, Duration),
    /// A node that answers, but as a leaf (a supernode that stepped down): after this.
    Leaf(Duration),
    /// Nobody.
    Nobody,
}

impl World<'_> {
    fn target(&self, n: u32, id: &NodeId) -> Target {
        let Some(sn) = self.slot_of(id) else {
            return Target::Nobody;
        };
        let rtt = self.latency.rtt(Place::Leaf(n), self.place(sn));
        match self.nodes.get(sn as usize) {
            Some(node) if node.is_up() => Target::Supernode(sn, rtt),
            Some(node)
                if node
                    .owner
                    .is_some_and(|o| self.leaves.get(o).is_some_and(|l| l.online())) =>
            {
                Target::Leaf(rtt)
            }
            _ => Target::Nobody,
        }
    }

    /// Leaf `n` probes `target`.
    pub fn probe(&mut self, n: u32, life: u32, target: PeerAddr) {
        let Some(id) = target.node_id else {
            return;
        };
        self.dynamics.probes += 1;
        let failed = Event::ProbeFailed {
            leaf: n,
            life,
            target: Box::new(id),
        };
        match self.target(n, &id) {
            Target::Supernode(sn, rtt) => {
                let done = Event::ProbeDone {
                    leaf: n,
                    life,
                    sn,
                    rtt,
                };
                self.queue.after(rtt.mul_f64(4.5), done);
            }
            Target::Leaf(rtt) => self.queue.after(rtt.mul_f64(2.5), failed),
            Target::Nobody => self.queue.after(CONNECT_TIMEOUT, failed),
        }
    }

    /// Leaf `n`'s probe of slot `sn` completes.
    pub fn probe_done(&mut self, n: u32, life: u32, sn: u32, rtt: Duration) {
        let now = self.now();
        let Some(node) = self.nodes.get(sn as usize) else {
            return;
        };
        let id = node.me.node_id;
        if !node.is_up() {
            // Gone during the probe: silence until the idle timeout.
            let failed = Event::ProbeFailed {
                leaf: n,
                life,
                target: Box::new(id),
            };
            self.queue.after(LEAF_IDLE, failed);
            return;
        }
        let load = node.core.load();
        let Some(core) = self.leaves.core_mut(n, life) else {
            return;
        };
        core.handle_probe(now, id, Some((rtt, Some(load))));
        self.leaf_actions(n);
    }

    /// Leaf `n`'s probe of `target` failed.
    pub fn probe_failed(&mut self, n: u32, life: u32, target: NodeId) {
        let now = self.now();
        let Some(core) = self.leaves.core_mut(n, life) else {
            return;
        };
        core.handle_probe(now, target, None);
        self.leaf_actions(n);
    }

    /// Leaf `n` dials `target` to attach on its session `no`.
    pub fn attach(&mut self, n: u32, life: u32, target: PeerAddr, no: SessionNo) {
        let Some(id) = target.node_id else {
            return;
        };
        let target = self.target(n, &id);
        let sn = match target {
            Target::Supernode(sn, _) => sn,
            _ => NO_SLOT,
        };
        let session = LeafSession {
            no,
            sn,
            session: None,
        };
        self.leaves.put_session(n, session);
        let failed = |why| Event::Attached {
            leaf: n,
            life,
            no,
            reply: Box::new(AttachReply::Failed(why)),
        };
        match target {
            Target::Supernode(sn, rtt) => {
                let event = Event::LeafAttach {
                    leaf: n,
                    life,
                    no,
                    sn,
                };
                self.queue.after(rtt.mul_f64(1.5), event);
            }
            Target::Leaf(rtt) => self
                .queue
                .after(rtt * 2, failed("it is a leaf, not a supernode")),
            Target::Nobody => self.queue.after(CONNECT_TIMEOUT, failed("no answer")),
        }
    }

    /// Leaf `n`'s hello reaches supernode `sn`, whose core admits or refuses it.
    pub fn leaf_attach(&mut self, n: u32, life: u32, no: SessionNo, sn: u32) {
        if self.leaves.session(n, life, no).is_none() {
            return; // the leaf's process is gone: so is the connection
        }
        let now = self.now();
        let back = self.latency.one_way(self.place(sn), Place::Leaf(n));
        let Some(node) = self.live_node(sn) else {
            let failed = Event::Attached {
                leaf: n,
                life,
                no,
                reply: Box::new(AttachReply::Failed("no answer")),
            };
            self.queue
                .after(CONNECT_TIMEOUT.saturating_sub(back * 3), failed);
            return;
        };
        let session = node.new_session();
        let reply = match node
            .core
            .leaf_attach(now, session, leaf_id(n), leaf_addr(n))
        {
            HelloReply::Welcome { .. } => {
                node.sessions
                    .insert(session, Peer::Leaf { leaf: n, life, no });
                AttachReply::Welcomed { sn, session }
            }
            HelloReply::Refused { try_instead, .. } => AttachReply::Full(try_instead),
        };
        let event = Event::Attached {
            leaf: n,
            life,
            no,
            reply: Box::new(reply),
        };
        self.queue.after(back, event);
        self.carry_out(sn);
    }

    /// How leaf `n`'s attach went reaches it.
    pub fn attached(&mut self, n: u32, life: u32, no: SessionNo, reply: AttachReply) {
        let now = self.now();
        let pending = self
            .leaves
            .session(n, life, no)
            .is_some_and(|s| s.session.is_none());
        if !pending {
            // The leaf dropped it meanwhile: a welcome's connection is closed.
            if let AttachReply::Welcomed { sn, session } = reply {
                self.close_at_supernode(n, sn, session, Duration::ZERO);
            }
            return;
        }
        let mut welcomed_at = None;
        self.dynamics.attach_outcome(&reply);
        let outcome = match reply {
            AttachReply::Welcomed { sn, session } => {
                let open = LeafSession {
                    no,
                    sn,
                    session: Some(session),
                };
                self.leaves.put_session(n, open);
                welcomed_at = self.nodes.get(sn as usize).map(|node| node.me.node_id);
                AttachOutcome::Welcomed
            }
            AttachReply::Full(try_instead) => {
                self.leaves.take_session(n, life, no);
                AttachOutcome::Full(try_instead)
            }
            AttachReply::Failed(why) => {
                self.leaves.take_session(n, life, no);
                AttachOutcome::Failed(why.to_string())
            }
        };
        let Some(core) = self.leaves.core_mut(n, life) else {
            return;
        };
        let before = core.supernode().map(|v| v.node_id);
        let (running, queued) = core.searches();
        core.handle_attach(now, no, outcome);
        let current = core.supernode().map(|v| v.node_id);
        if before.is_some() && current != before {
            self.dynamics.moves += 1;
            // A move ends the searches under way (`handle_attach`).
            self.dynamics.searches_ended_by_moves += (running + queued) as u64;
        }
        if welcomed_at.is_some() && current == welcomed_at {
            let at = self.queue.now();
            self.dynamics.reattached(self.leaves.get_mut(n), at);
        }
        self.leaf_actions(n);
    }

    /// A leaf's message reaches its supernode.
    pub fn deliver_from_leaf(&mut self, sn: u32, session: SessionId, msg: LeafToSupernode) {
        let now = self.now();
        let at = self.queue.now();
        let Some(node) = self.live_node(sn) else {
            return;
        };
        let Some(Peer::Leaf { leaf, .. }) = node.sessions.get(&session).copied() else {
            return;
        };
        let published = matches!(&msg, LeafToSupernode::Publish { entries } if !entries.is_empty());
        node.core.leaf_message(now, session, msg);
        if published && node.sessions.contains_key(&session) {
            self.leaves.indexed(leaf, sn);
            self.dynamics.searchable(self.leaves.get_mut(leaf), at);
        }
        self.carry_out(sn);
    }

    /// A supernode's message reaches leaf `n` on its session `no`.
    pub fn deliver_to_leaf(&mut self, n: u32, life: u32, no: SessionNo, msg: SupernodeToLeaf) {
        let open = self
            .leaves
            .session(n, life, no)
            .is_some_and(|s| s.session.is_some());
        if !open {
            return;
        }
        self.own_answer_or_message(n, life, Some(no), msg);
    }

    /// An answer of leaf `n`'s own supernode to one of its searches.
    pub fn own_answer(&mut self, n: u32, life: u32, msg: SupernodeToLeaf) {
        self.own_answer_or_message(n, life, None, msg);
    }

    fn own_answer_or_message(
        &mut self,
        n: u32,
        life: u32,
        no: Option<SessionNo>,
        msg: SupernodeToLeaf,
    ) {
        let now = self.now();
        if let SupernodeToLeaf::QueryDone { id, end } = &msg {
            self.queries.ended(id, *end);
        }
        let Some(core) = self.leaves.core_mut(n, life) else {
            return;
        };
        match no {
            Some(no) => core.handle_message(now, no, msg),
            None => core.handle_own_answer(msg),
        }
        self.leaf_actions(n);
    }

    /// Leaf `n`'s session `no` ended: closed by the supernode, or silent past the idle
    /// timeout.
    pub fn leaf_closed(&mut self, n: u32, life: u32, no: SessionNo) {
        let now = self.now();
        if self.leaves.take_session(n, life, no).is_none() {
            return;
        }
        let Some(core) = self.leaves.core_mut(n, life) else {
            return;
        };
        core.handle_session_ended(now, no);
        self.leaf_actions(n);
    }
}
