//! Carrying out a supernode's actions, as the daemon's driver does
//! (`superpeer_supernode`'s `driver.rs`, `carry_out` and `handle_event`):
//!
//! | the core asks for | the driver | the simulator |
//! |---|---|---|
//! | `ToLeaf(session, msg)` | encodes it into the session's outbox | delivers it to the leaf after the link's one-way delay |
//! | `ToLeaf(LOCAL, msg)` | hands it to the local user's search | nothing: simulated supernodes have no local user |
//! | `ToNeighbor(session, msg)` | encodes it into the session's outbox | delivers it to the neighbour's session after the delay, counted for its query |
//! | `Close { session, .. }` | closes the connection; the pump reports `Gone` | the core hears `leaf_gone`/`link_down` now, the other end after the delay |
//! | `Dial { node_id, addr }` | spawns a dial (`sessions::dial`) | the link handshake of `world`'s module docs |
//!
//! A message for a session that is no longer open is dropped, as a frame written to a
//! closed connection is.

use std::time::Duration;

use superpeer_common::wire::SupernodeToSupernode;
use superpeer_supernode::{Action, SessionId};

use super::ids::{self, supernode_number};
use super::latency::Place;
use super::world::{Event, Peer, World};

/// How long a dial to nobody takes to fail (QUIC's handshake timeout, shortened).
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);

impl World<'_> {
    /// Carries out every action supernode `sn`'s core has queued.
    pub fn carry_out(&mut self, sn: u32) {
        let now = self.now();
        let from = Place::Supernode(sn);
        loop {
            let Some(node) = self.nodes.get_mut(sn as usize) else {
                return;
            };
            let Some(action) = node.core.poll_action() else {
                return;
            };
            match action {
                Action::ToLeaf(SessionId::LOCAL, _) => {}
                Action::ToLeaf(session, msg) => {
                    if let Some(Peer::Leaf(leaf)) = node.sessions.get(&session).copied() {
                        let delay = self.latency.one_way(from, Place::Leaf(leaf));
                        let epoch = self.leaves.epoch(leaf);
                        self.queue.after(delay, Event::ToLeaf { leaf, epoch, msg });
                    }
                }
                Action::ToNeighbor(session, msg) => {
                    if let Some(Peer::Neighbor {
                        node: to,
                        session: theirs,
                    }) = node.sessions.get(&session).copied()
                    {
                        self.count(&msg);
                        let delay = self.latency.one_way(from, Place::Supernode(to));
                        let event = Event::ToSupernode {
                            sn: to,
                            session: theirs,
                            msg,
                        };
                        self.queue.after(delay, event);
                    }
                }
                Action::Close { session, .. } => match node.sessions.remove(&session) {
                    Some(Peer::Leaf(leaf)) => {
                        node.core.leaf_gone(now, session);
                        self.leaves.unindexed(leaf, sn);
                        let delay = self.latency.one_way(from, Place::Leaf(leaf));
                        let epoch = self.leaves.epoch(leaf);
                        self.queue.after(delay, Event::LeafClosed { leaf, epoch });
                    }
                    Some(Peer::Neighbor {
                        node: to,
                        session: theirs,
                    }) => {
                        node.core.link_down(now, session);
                        self.topology.changed();
                        let delay = self.latency.one_way(from, Place::Supernode(to));
                        let event = Event::Gone {
                            sn: to,
                            session: theirs,
                        };
                        self.queue.after(delay, event);
                    }
                    None => {}
                },
                Action::Dial { node_id, .. } => self.dial(sn, supernode_number(&node_id)),
            }
        }
    }

    /// Dials supernode `target` for `sn` (see `world`'s module docs for the handshake).
    fn dial(&mut self, sn: u32, target: Option<u32>) {
        let live = target.filter(|&t| self.nodes.get(t as usize).is_some_and(|n| n.started));
        let Some(target) = live else {
            let target = target.unwrap_or(u32::MAX);
            let event = Event::DialFailed { dialer: sn, target };
            self.queue.after(DIAL_TIMEOUT, event);
            return;
        };
        let Some(node) = self.nodes.get_mut(sn as usize) else {
            return;
        };
        let dialer_session = node.new_session();
        let delay = self
            .latency
            .rtt(Place::Supernode(sn), Place::Supernode(target))
            .mul_f64(1.5);
        let event = Event::LinkAccept {
            dialer: sn,
            dialer_session,
            target,
        };
        self.queue.after(delay, event);
    }

    /// Counts a supernode-to-supernode message: for the query it carries, or as upkeep of
    /// the overlay once queries are being sent.
    fn count(&mut self, msg: &SupernodeToSupernode) {
        let upkeep = self.queue.now() >= self.timeline.queries;
        match msg {
            SupernodeToSupernode::Summary { table, .. } if upkeep => {
                self.upkeep.summaries += 1;
                self.upkeep.summary_bytes += table.len() as u64;
            }
            SupernodeToSupernode::Known { .. } if upkeep => self.upkeep.gossip += 1,
            SupernodeToSupernode::Query { query, .. } => {
                self.queries.message(ids::query_number(&query.id), true)
            }
            SupernodeToSupernode::Hits { id, .. } | SupernodeToSupernode::QueryDone { id } => {
                self.queries.message(ids::query_number(id), false)
            }
            _ => {}
        }
    }
}
