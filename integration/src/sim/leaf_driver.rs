//! Carrying out a leaf's actions, as the node's driver does (`node/src/leaf/driver.rs`,
//! `actions.rs`, `session.rs`, `supernode.rs`), over simulated latency:
//!
//! | the core asks for | the driver | the simulator |
//! |---|---|---|
//! | `Probe(target)` | connects, 3 pings, reports the median RTT and the load the supernode answers with | after a handshake (1.5 RTT) and 3 pings: `handle_probe` with the RTT and the running supernode's `load()` then; a dead one: `None` after the handshake gives up (3 s); a node that is a leaf now: `None` after it answers as one |
//! | `Attach { target, session }` | connects, says hello, waits for the welcome | `leaf_attach` at the supernode 1.5 RTT later, its reply half an RTT after that: `handle_attach(Welcomed \| Full(try_instead) \| Failed)`; a dead one: `Failed` after 3 s |
//! | `Send { session, msg }` | queues it to the session's writer | `leaf_message` at the supernode after the one-way delay |
//! | `Leave { session }` | sends `Leaving`, closes | the same, and the session is forgotten here |
//! | `Close { session }` | closes the connection | the supernode hears the session end after the one-way delay |
//! | `FetchLists` | asks each list server for 50 | the list server's answer two RTT later (handshake, request): `handle_learned(.., ListServer { short })` |
//! | `SaveCache` | writes the cache file | nothing: a leaf that comes back starts without it |
//! | `Hits`, `SearchOver` | passes them to whoever searched | the query's record |
//! | `StartSupernode` | starts a supernode on its endpoint, with its known supernodes as peers | a real `SupernodeCore` in the leaf's slot (see `roles`) |
//! | `StopSupernode` | the supernode lets its leaves go (`MoveTo`), unregisters, closes | the same (see `roles`) |
//! | `SearchOwnSupernode` | asks its own supernode | `local_query`; answers through `handle_own_answer` |
//! | `ShareOwnSupernode` | its own supernode indexes the change | `publish_own` / `unpublish_own` |
//! | `PromotionSettled` | answers `superpeer promote` | nothing (no promotions by hand here) |
//!
//! What the supernode sends a leaf reaches its core with `handle_message` after the one-way
//! delay, on the session it was sent on; a session that ends (closed by the supernode, or
//! silent past the idle timeout) reaches it as `handle_session_ended`.

use std::time::Duration;

use superpeer::leaf::LeafAction;
use superpeer_common::wire::LeafToSupernode;

use super::latency::Place;
use super::world::{Event, World};

impl World<'_> {
    /// Carries out every action leaf `n`'s core has queued, then re-arms its wakeup.
    pub fn leaf_actions(&mut self, n: u32) {
        loop {
            let action = self
                .leaves
                .get_mut(n)
                .and_then(|l| l.core_mut())
                .and_then(|core| core.poll_action());
            let Some(action) = action else {
                break;
            };
            self.leaf_act(n, action);
        }
        self.rearm(n);
    }

    fn leaf_act(&mut self, n: u32, action: LeafAction) {
        let life = self.leaves.life(n);
        let at = self.queue.now();
        match action {
            LeafAction::Probe(target) => self.probe(n, life, target),
            LeafAction::Attach { target, session } => self.attach(n, life, target, session),
            LeafAction::Send { session, msg } => self.leaf_send(n, life, session, msg),
            LeafAction::Leave { session, .. } => self.leaf_leave_session(n, life, session),
            LeafAction::Close { session, .. } => self.leaf_close_session(n, life, session),
            LeafAction::FetchLists => {
                self.dynamics.list_fetches += 1;
                let delay = self.latency.rtt(Place::Leaf(n), Place::ListServer) * 2;
                self.queue.after(delay, Event::ListAnswer { leaf: n, life });
            }
            LeafAction::SaveCache(_) | LeafAction::PromotionSettled(_) => {}
            // The simulated network has no NATs: every leaf is dialled directly, and no
            // supernode asks one to dial back or open a relay leg.
            LeafAction::DialBack { .. } | LeafAction::OpenRelay { .. } => {}
            LeafAction::Hits { id, hits } => self.queries.hits(id, at, &hits),
            LeafAction::SearchOver { id, refused } => self.queries.over(id, at, refused),
            LeafAction::StartSupernode => self.promote(n, life),
            LeafAction::StopSupernode => self.step_down(n),
            LeafAction::SearchOwnSupernode(query) => {
                let now = self.now();
                let Some(sn) = self.leaves.slot(n) else {
                    return;
                };
                if let Some(node) = self.live_node(sn) {
                    node.core.local_query(now, query);
                }
                self.carry_out(sn);
            }
            LeafAction::ShareOwnSupernode { add, remove } => {
                let Some(sn) = self.leaves.slot(n) else {
                    return;
                };
                let Some(node) = self.live_node(sn) else {
                    return;
                };
                // A refusal (an index full of our own files) leaves them out, as the
                // driver's supernode does.
                let _ = node.core.publish_own(&add);
                node.core.unpublish_own(&remove);
                if !add.is_empty() {
                    self.leaves.indexed(n, sn);
                    self.dynamics.searchable(self.leaves.get_mut(n), at);
                }
            }
        }
    }

    /// A leaf's message goes to its supernode on session `no` (dropped unless welcomed,
    /// as the driver holds only open sessions).
    fn leaf_send(
        &mut self,
        n: u32,
        life: u32,
        no: superpeer::leaf::SessionNo,
        msg: LeafToSupernode,
    ) {
        let Some(s) = self.leaves.session(n, life, no) else {
            return;
        };
        let Some(session) = s.session else {
            return;
        };
        let delay = self.latency.one_way(Place::Leaf(n), self.place(s.sn));
        let event = Event::FromLeaf {
            sn: s.sn,
            session,
            msg: Box::new(msg),
        };
        self.queue.after(delay, event);
    }

    /// Says goodbye on session `no` and forgets it.
    pub fn leaf_leave_session(&mut self, n: u32, life: u32, no: superpeer::leaf::SessionNo) {
        let Some(s) = self.leaves.take_session(n, life, no) else {
            return;
        };
        if let Some(session) = s.session {
            let delay = self.latency.one_way(Place::Leaf(n), self.place(s.sn));
            let msg = Box::new(LeafToSupernode::Leaving);
            let event = Event::FromLeaf {
                sn: s.sn,
                session,
                msg,
            };
            self.queue.after(delay, event);
        }
    }

    /// Closes session `no` at once: the supernode hears it end.
    fn leaf_close_session(&mut self, n: u32, life: u32, no: superpeer::leaf::SessionNo) {
        let Some(s) = self.leaves.take_session(n, life, no) else {
            return;
        };
        if let Some(session) = s.session {
            self.close_at_supernode(n, s.sn, session, Duration::ZERO);
        }
    }

    /// Supernode `sn` hears leaf `n`'s session end, `after` plus the one-way delay from now.
    pub fn close_at_supernode(
        &mut self,
        n: u32,
        sn: u32,
        session: superpeer_supernode::SessionId,
        after: Duration,
    ) {
        let delay = self.latency.one_way(Place::Leaf(n), self.place(sn));
        self.queue.after(after + delay, Event::Gone { sn, session });
    }
}
