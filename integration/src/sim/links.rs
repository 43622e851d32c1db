//! Links between supernodes, as the daemon makes them (`superpeer_supernode`'s
//! `sessions.rs`):
//! 1. `Action::Dial` at A: A's session number is reserved; the QUIC handshake and the hello
//!    take 1.5 RTT to reach B ([`Event::LinkAccept`]).
//! 2. B's core decides with `link_up(initiator = A)`. Kept: B answers welcome, A hears it
//!    half an RTT later ([`Event::LinkConfirm`]); refused: A's dial failed
//!    ([`Event::DialFailed`]).
//! 3. A's core decides with `link_up(initiator = A)`. Refused (a duplicate): A closes the
//!    connection and B hears the session end ([`Event::Gone`]).
//!
//! Anything B sends right after keeping the link is scheduled after the confirmation and
//! takes the same half RTT, so it reaches A after A's core knows the session, as frames
//! wait in the QUIC stream until A's driver reads them. A dial to a supernode that is not
//! running fails when the dialler's handshake gives up: QUIC's idle timer runs during the
//! handshake, so after the dialler's idle timeout (4 s for a supernode started as one, 3 s
//! for one a leaf runs), before its 5 s handshake timeout.

use superpeer_common::NodeId;
use superpeer_common::wire::SupernodeToSupernode;
use superpeer_supernode::SessionId;

use super::world::{Event, Peer, World};

impl World<'_> {
    /// Dials the supernode `target` names for `sn`.
    pub fn dial(&mut self, sn: u32, target: NodeId) {
        let Some((dialer_life, timeout)) = self.nodes.get(sn as usize).map(|n| (n.life, n.idle))
        else {
            return;
        };
        let live = self
            .slot_of(&target)
            .filter(|&t| t != sn && self.nodes.get(t as usize).is_some_and(|n| n.is_up()));
        let Some(to) = live else {
            let event = Event::DialFailed {
                dialer: sn,
                dialer_life,
                target: Box::new(target),
            };
            self.queue.after(timeout, event);
            return;
        };
        let delay = self
            .latency
            .rtt(self.place(sn), self.place(to))
            .mul_f64(1.5);
        let Some(node) = self.nodes.get_mut(sn as usize) else {
            return;
        };
        let dialer_session = node.new_session();
        let event = Event::LinkAccept {
            dialer: sn,
            dialer_life,
            dialer_session,
            target: to,
        };
        self.queue.after(delay, event);
    }

    /// A dial reaches its target, which decides.
    pub fn link_accept(
        &mut self,
        dialer: u32,
        dialer_life: u32,
        dialer_session: SessionId,
        target: u32,
    ) {
        let now = self.now();
        let back = self.latency.one_way(self.place(target), self.place(dialer));
        let Some((dialer_id, timeout)) = self.nodes.get(dialer as usize).map(|n| (n.me, n.idle))
        else {
            return;
        };
        let target_id = self
            .nodes
            .get(target as usize)
            .map_or(dialer_id.node_id, |n| n.me.node_id);
        let Some(node) = self.live_node(target) else {
            // It went away meanwhile: the handshake gives up.
            let failed = Event::DialFailed {
                dialer,
                dialer_life,
                target: Box::new(target_id),
            };
            let waited = self
                .latency
                .rtt(self.place(dialer), self.place(target))
                .mul_f64(1.5);
            self.queue.after(timeout.saturating_sub(waited), failed);
            return;
        };
        let session = node.new_session();
        let kept = node.core.link_up(
            now,
            session,
            dialer_id.node_id,
            dialer_id.node_id,
            Some(dialer_id.addr),
        );
        if kept {
            node.sessions.insert(
                session,
                Peer::Neighbor {
                    node: dialer,
                    session: dialer_session,
                },
            );
            self.topology.changed();
            let confirm = Event::LinkConfirm {
                dialer,
                dialer_life,
                dialer_session,
                target,
                target_session: session,
            };
            self.queue.after(back, confirm);
        } else {
            let failed = Event::DialFailed {
                dialer,
                dialer_life,
                target: Box::new(target_id),
            };
            self.queue.after(back, failed);
        }
        self.carry_out(target);
    }

    /// The target's welcome reaches the dialer, which decides too.
    pub fn link_confirm(
        &mut self,
        dialer: u32,
        dialer_life: u32,
        dialer_session: SessionId,
        target: u32,
        target_session: SessionId,
    ) {
        let now = self.now();
        let delay = self.latency.one_way(self.place(dialer), self.place(target));
        let Some(target_me) = self.nodes.get(target as usize).map(|n| n.me) else {
            return;
        };
        let kept = match self.nodes.get_mut(dialer as usize) {
            Some(node) if node.is_up() && node.life == dialer_life => {
                let dialer_id = node.me.node_id;
                let kept = node.core.link_up(
                    now,
                    dialer_session,
                    target_me.node_id,
                    dialer_id,
                    Some(target_me.addr),
                );
                if kept {
                    node.sessions.insert(
                        dialer_session,
                        Peer::Neighbor {
                            node: target,
                            session: target_session,
                        },
                    );
                    self.topology.changed();
                }
                kept
            }
            // The dialler is gone: its connection dies with it.
            _ => false,
        };
        if !kept {
            // The driver closes a link its core did not keep; the other side sees it end.
            let gone = Event::Gone {
                sn: target,
                session: target_session,
            };
            self.queue.after(delay, gone);
        }
        self.carry_out(dialer);
    }

    /// A dial failed.
    pub fn dial_failed(&mut self, dialer: u32, dialer_life: u32, target: NodeId) {
        if !self.is_live(dialer, dialer_life) {
            return;
        }
        let now = self.now();
        if let Some(node) = self.nodes.get_mut(dialer as usize) {
            node.core.dial_failed(now, target);
        }
        self.carry_out(dialer);
    }

    /// The other end of supernode `sn`'s session closed it (or went silent).
    pub fn gone(&mut self, sn: u32, session: SessionId) {
        let now = self.now();
        let Some(node) = self.live_node(sn) else {
            return;
        };
        match node.sessions.remove(&session) {
            Some(Peer::Leaf { leaf, .. }) => {
                node.core.leaf_gone(now, session);
                self.leaves.unindexed(leaf, sn);
            }
            Some(Peer::Neighbor { .. }) => {
                node.core.link_down(now, session);
                self.topology.changed();
            }
            Some(Peer::Direct { .. }) => node.core.link_down(now, session),
            None => {}
        }
        self.carry_out(sn);
    }

    /// A neighbour's message reaches supernode `sn`.
    pub fn deliver_to_supernode(&mut self, sn: u32, session: SessionId, msg: SupernodeToSupernode) {
        let now = self.now();
        let query = match &msg {
            SupernodeToSupernode::Query { query, .. } => self.queries.number(&query.id),
            _ => None,
        };
        let Some(node) = self.live_node(sn) else {
            return;
        };
        if !node.sessions.contains_key(&session) {
            // Closed meanwhile: the frame dies with the connection.
            self.direct.lost += 1;
            return;
        }
        node.core.neighbor_message(now, session, msg);
        if let Some(q) = query {
            self.queries.visited(q, sn);
        }
        self.carry_out(sn);
    }

    /// Brings up every link of the layout at once, as if each dialler's dial had just
    /// completed: the dialled core decides first, then the dialler's (as in
    /// [`Event::LinkAccept`] and [`Event::LinkConfirm`]). All in one event, so no core's
    /// timer runs between two links and dials elsewhere while it still has room.
    pub fn lay_out(&mut self) {
        let now = self.now();
        let links = self
            .config
            .layout
            .as_ref()
            .map(|l| l.links.clone())
            .unwrap_or_default();
        for (dialer, target) in links {
            let (Some(dialer_session), Some(target_session)) = (
                self.nodes
                    .get_mut(dialer as usize)
                    .map(|node| node.new_session()),
                self.nodes
                    .get_mut(target as usize)
                    .map(|node| node.new_session()),
            ) else {
                continue;
            };
            let (Some(dialer_me), Some(target_me)) = (
                self.nodes.get(dialer as usize).map(|n| n.me),
                self.nodes.get(target as usize).map(|n| n.me),
            ) else {
                continue;
            };
            let dialer_id = dialer_me.node_id;
            // The real daemons that made the layout believe each other (a list server
            // listed them); so do these cores.
            let believed =
                |me: superpeer_common::wire::Holder| superpeer_common::wire::SupernodeInfo {
                    node_id: me.node_id,
                    addr: me.addr,
                    load: superpeer_common::wire::Load::default(),
                    stale: false,
                };
            if let Some(node) = self.nodes.get_mut(target as usize) {
                node.core.learn(now, &[believed(dialer_me)]);
            }
            if let Some(node) = self.nodes.get_mut(dialer as usize) {
                node.core.learn(now, &[believed(target_me)]);
            }
            let target_kept = self.nodes.get_mut(target as usize).is_some_and(|node| {
                node.core.link_up(
                    now,
                    target_session,
                    dialer_id,
                    dialer_id,
                    Some(dialer_me.addr),
                )
            });
            let kept = target_kept
                && self.nodes.get_mut(dialer as usize).is_some_and(|node| {
                    node.core.link_up(
                        now,
                        dialer_session,
                        target_me.node_id,
                        dialer_id,
                        Some(target_me.addr),
                    )
                });
            if !kept {
                // Refused (a link twice in the layout): the dialler closes it, and the
                // report's links show what came up.
                if let Some(node) = self.nodes.get_mut(target as usize).filter(|_| target_kept) {
                    node.core.link_down(now, target_session);
                }
                continue;
            }
            for (at, peer, session, theirs) in [
                (target, dialer, target_session, dialer_session),
                (dialer, target, dialer_session, target_session),
            ] {
                if let Some(node) = self.nodes.get_mut(at as usize) {
                    node.sessions.insert(
                        session,
                        Peer::Neighbor {
                            node: peer,
                            session: theirs,
                        },
                    );
                }
            }
        }
        self.topology.changed();
        for sn in 0..self.nodes.len() as u32 {
            self.carry_out(sn);
        }
    }
}
