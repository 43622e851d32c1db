//! Carrying out a supernode's actions, as the daemon's driver does
//! (`superpeer_supernode`'s `driver.rs`, `carry_out` and `handle_event`):
//!
//! | the core asks for | the driver | the simulator |
//! |---|---|---|
//! | `ToLeaf(session, msg)` | encodes it into the session's outbox | delivers it to the leaf after the link's one-way delay |
//! | `ToLeaf(LOCAL, msg)` | hands it to the local user's search | an elected supernode's own leaf core gets it (`handle_own_answer`); a supernode started as one has no local user here |
//! | `ToNeighbor(session, msg)` | encodes it into the session's outbox | delivers it to the neighbour's (or directory peer's) session after the delay, counted for its query or as upkeep |
//! | `Close { session, .. }` | closes the connection; the pump reports `Gone` | the core hears `leaf_gone`/`link_down` now, the other end after the delay |
//! | `Dial { node_id, addr }` | spawns a dial (`sessions::dial`) | the link handshake of `links` |
//! | `Connect { node_id, addr }` | spawns a dial for a directory session | the handshake of `direct` |
//!
//! A message for a session that is no longer open is dropped, as a frame written to a
//! closed connection is.

use superpeer_common::wire::SupernodeToSupernode;
use superpeer_supernode::{Action, SessionId};

use super::latency::Place;
use super::queries::Carried;
use super::world::{Event, Peer, World};

impl World<'_> {
    /// Carries out every action supernode `sn`'s core has queued.
    pub fn carry_out(&mut self, sn: u32) {
        let now = self.now();
        let from = self.place(sn);
        loop {
            let Some(node) = self.nodes.get_mut(sn as usize).filter(|n| n.is_up()) else {
                return;
            };
            let Some(action) = node.core.poll_action() else {
                return;
            };
            match action {
                Action::ToLeaf(SessionId::LOCAL, msg) => {
                    // The node's own searches: through a channel to its driver, at once.
                    if let Some(leaf) = node.owner {
                        let life = self.leaves.life(leaf);
                        let msg = Box::new(msg);
                        let event = Event::OwnAnswer { leaf, life, msg };
                        self.queue.after(std::time::Duration::ZERO, event);
                    }
                }
                Action::ToLeaf(session, msg) => {
                    if let Some(Peer::Leaf { leaf, life, no }) =
                        node.sessions.get(&session).copied()
                    {
                        let delay = self.latency.one_way(from, Place::Leaf(leaf));
                        let event = Event::ToLeaf {
                            leaf,
                            life,
                            no,
                            msg: Box::new(msg),
                        };
                        self.queue.after(delay, event);
                    }
                }
                Action::ToNeighbor(session, msg) => {
                    let (to, theirs, direct) = match node.sessions.get(&session).copied() {
                        Some(Peer::Neighbor { node, session }) => (node, session, false),
                        Some(Peer::Direct { node, session }) => (node, session, true),
                        _ => continue,
                    };
                    self.count(&msg, direct);
                    let delay = self.latency.one_way(from, self.place(to));
                    let event = Event::ToSupernode {
                        sn: to,
                        session: theirs,
                        msg: Box::new(msg),
                    };
                    self.queue.after(delay, event);
                }
                Action::Close { session, .. } => match node.sessions.remove(&session) {
                    Some(Peer::Leaf { leaf, life, no }) => {
                        node.core.leaf_gone(now, session);
                        self.leaves.unindexed(leaf, sn);
                        let delay = self.latency.one_way(from, Place::Leaf(leaf));
                        self.queue
                            .after(delay, Event::LeafClosed { leaf, life, no });
                    }
                    Some(
                        peer @ (Peer::Neighbor {
                            node: to,
                            session: theirs,
                        }
                        | Peer::Direct {
                            node: to,
                            session: theirs,
                        }),
                    ) => {
                        node.core.link_down(now, session);
                        if matches!(peer, Peer::Neighbor { .. }) {
                            self.topology.changed();
                        } else {
                            self.direct.closed += 1;
                        }
                        let delay = self.latency.one_way(from, self.place(to));
                        let event = Event::Gone {
                            sn: to,
                            session: theirs,
                        };
                        self.queue.after(delay, event);
                    }
                    None => {}
                },
                Action::Dial { node_id, .. } => self.dial(sn, node_id),
                Action::Connect { node_id, .. } => self.connect(sn, node_id),
            }
        }
    }

    /// Counts a supernode-to-supernode message (`direct`: on a directory session): for
    /// the query it carries, with its size on the wire, or as upkeep of the overlay and the
    /// directory once queries are being sent.
    fn count(&mut self, msg: &SupernodeToSupernode, direct: bool) {
        let upkeep = self.queue.now() >= self.timeline.queries;
        let kind = match msg {
            SupernodeToSupernode::Summary { table, .. } => {
                if upkeep {
                    self.upkeep.summaries += 1;
                    self.upkeep.summary_bytes += table.len() as u64;
                }
                return;
            }
            SupernodeToSupernode::Known { .. } => {
                self.upkeep.gossip += u64::from(upkeep);
                return;
            }
            SupernodeToSupernode::DirPublish { .. } | SupernodeToSupernode::DirPublished { .. } => {
                let bytes = wire_bytes(msg);
                let publish = matches!(msg, SupernodeToSupernode::DirPublish { .. });
                self.upkeep.publishes += u64::from(publish);
                self.upkeep.directory_total += 1;
                self.upkeep.directory_total_bytes += bytes;
                if upkeep {
                    self.upkeep.directory += 1;
                    self.upkeep.directory_bytes += bytes;
                }
                return;
            }
            SupernodeToSupernode::Query { query, .. } => (query.id, Carried::Query { direct }),
            SupernodeToSupernode::Hits { id, .. } | SupernodeToSupernode::QueryDone { id } => {
                (*id, Carried::Answer)
            }
            SupernodeToSupernode::DirLookup { id, .. }
            | SupernodeToSupernode::DirHolders { id, .. } => (*id, Carried::Lookup),
            SupernodeToSupernode::Ping { .. } | SupernodeToSupernode::Pong { .. } => return,
        };
        let (id, kind) = kind;
        if self.queries.number(&id).is_some() {
            self.queries.message(&id, kind, wire_bytes(msg));
        }
    }
}

/// A message's size on the wire: its frame (length prefix and postcard body).
fn wire_bytes(msg: &SupernodeToSupernode) -> u64 {
    superpeer_common::wire::encode(msg).map_or(0, |frame| frame.len() as u64)
}
