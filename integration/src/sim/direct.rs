//! Directory sessions between supernodes that need not be neighbours (publishes to owners,
//! lookups, queries asked directly), as the daemon opens them (`sessions::dial` with
//! `Intent::Directory`, served by `direct_up` on both sides):
//! 1. `Action::Connect` at A: A's session number is reserved; the QUIC handshake and the
//!    hello take 1.5 RTT to reach B ([`Event::DirectAccept`]).
//! 2. B's core decides with `direct_up(outgoing = false)`: it refuses a supernode that is
//!    not a member in its view. Taken: A hears it half an RTT later and its core is told
//!    `direct_up(outgoing = true)` ([`Event::DirectConfirm`]); refused: A's core hears
//!    `direct_failed` ([`Event::DirectFailed`]).
//!
//! As with links (see `links`), what B sends right after taking the session reaches A
//! after A's core knows it, and a connection to a supernode that is not running fails when
//! the dialler's handshake gives up, at its idle timeout (3-4 s; the core gives up on its
//! own at 5 s). Messages, `Close` and crashes are carried as for links: the session is a
//! [`Peer::Direct`] in both session tables, and the core knows which of its sessions are
//! directory sessions.

use superpeer_common::NodeId;
use superpeer_supernode::SessionId;

use super::world::{Event, Peer, World};

/// What became of the directory sessions the cores asked for.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct DirectSessions {
    /// Asked for (`Action::Connect`).
    pub connects: u64,
    /// Up on both sides.
    pub opened: u64,
    /// Refused by the target's core (the dialler is not a member in its view).
    pub refused: u64,
    /// Nobody there: the target was not running, or went away during the handshake.
    pub unreachable: u64,
    /// Closed by a core (idle, or to make room for another).
    pub closed: u64,
    /// Messages (on any supernode session, links included) that arrived after the
    /// receiver's end of their session had closed: lost with the connection.
    pub lost: u64,
}

impl World<'_> {
    /// Opens a directory session from `sn` to the supernode `target` names.
    pub fn connect(&mut self, sn: u32, target: NodeId) {
        let Some((dialer_life, timeout)) = self.nodes.get(sn as usize).map(|n| (n.life, n.idle))
        else {
            return;
        };
        self.direct.connects += 1;
        let live = self
            .slot_of(&target)
            .filter(|&t| t != sn && self.nodes.get(t as usize).is_some_and(|n| n.is_up()));
        let Some(to) = live else {
            self.direct.unreachable += 1;
            let event = Event::DirectFailed {
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
        let event = Event::DirectAccept {
            dialer: sn,
            dialer_life,
            dialer_session,
            target: to,
        };
        self.queue.after(delay, event);
    }

    /// A directory connection reaches its target, which decides.
    pub fn direct_accept(
        &mut self,
        dialer: u32,
        dialer_life: u32,
        dialer_session: SessionId,
        target: u32,
    ) {
        let now = self.now();
        let back = self.latency.one_way(self.place(target), self.place(dialer));
        let Some((dialer_id, timeout)) = self
            .nodes
            .get(dialer as usize)
            .map(|n| (n.me.node_id, n.idle))
        else {
            return;
        };
        let target_id = self.nodes.get(target as usize).map(|n| n.me.node_id);
        let failed = |target_id: Option<NodeId>| Event::DirectFailed {
            dialer,
            dialer_life,
            target: Box::new(target_id.unwrap_or(dialer_id)),
        };
        let Some(node) = self.live_node(target) else {
            // It went away meanwhile: the handshake gives up.
            self.direct.unreachable += 1;
            let waited = self
                .latency
                .rtt(self.place(dialer), self.place(target))
                .mul_f64(1.5);
            self.queue
                .after(timeout.saturating_sub(waited), failed(target_id));
            return;
        };
        let session = node.new_session();
        if node.core.direct_up(now, session, dialer_id, false) {
            let peer = Peer::Direct {
                node: dialer,
                session: dialer_session,
            };
            node.sessions.insert(session, peer);
            self.direct.opened += 1;
            let confirm = Event::DirectConfirm {
                dialer,
                dialer_life,
                dialer_session,
                target,
                target_session: session,
            };
            self.queue.after(back, confirm);
        } else {
            self.direct.refused += 1;
            self.queue.after(back, failed(target_id));
        }
        self.carry_out(target);
    }

    /// The target took the session: the dialler's core hears it is up.
    pub fn direct_confirm(
        &mut self,
        dialer: u32,
        dialer_life: u32,
        dialer_session: SessionId,
        target: u32,
        target_session: SessionId,
    ) {
        let now = self.now();
        let Some(target_id) = self.nodes.get(target as usize).map(|n| n.me.node_id) else {
            return;
        };
        let up = match self.nodes.get_mut(dialer as usize) {
            Some(node) if node.is_up() && node.life == dialer_life => {
                let peer = Peer::Direct {
                    node: target,
                    session: target_session,
                };
                node.sessions.insert(dialer_session, peer);
                // An outgoing session is always taken.
                node.core.direct_up(now, dialer_session, target_id, true)
            }
            _ => false,
        };
        if !up {
            // The dialler is gone (or its core would not have it): the session ends.
            if let Some(node) = self.nodes.get_mut(dialer as usize) {
                node.sessions.remove(&dialer_session);
            }
            let delay = self.latency.one_way(self.place(dialer), self.place(target));
            let gone = Event::Gone {
                sn: target,
                session: target_session,
            };
            self.queue.after(delay, gone);
        }
        self.carry_out(dialer);
    }

    /// A directory connection failed.
    pub fn direct_failed(&mut self, dialer: u32, dialer_life: u32, target: NodeId) {
        if !self.is_live(dialer, dialer_life) {
            return;
        }
        let now = self.now();
        if let Some(node) = self.nodes.get_mut(dialer as usize) {
            node.core.direct_failed(now, target);
        }
        self.carry_out(dialer);
    }
}
