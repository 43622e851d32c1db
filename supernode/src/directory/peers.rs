//! Connections to supernodes that need not be neighbours, for the directory: publishes to
//! owners, lookups, and queries asked directly. Sans-IO: the core asks for a connection
//! ([`PeerStep::Connect`]) and queues what it wants to send until the driver reports the
//! session up; a member reached once is reached again on the same connection until it has
//! been idle for [`IDLE`]. At most [`MAX_OUTGOING`] are open or opening at once; past
//! that the least recently used idle one is closed to make room.
//!
//! Sessions other supernodes open to us are kept here too (answers go back on them), with
//! the budgets a neighbour has: a member that asks directly is held to the same limits.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use superpeer_common::wire::SupernodeToSupernode;
use superpeer_common::{NodeId, TokenBucket};

use crate::SessionId;

/// Most connections we open to other supernodes for the directory at once.
pub const MAX_OUTGOING: usize = 256;
/// An outgoing connection unused this long is closed.
pub const IDLE: Duration = Duration::from_secs(60);
/// A connection that is not up within this is given up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages queued for a member while its connection opens.
pub const MAX_QUEUED: usize = 256;
/// A session is closed to make room only once it has been quiet this long: what was just
/// sent on it (a publish, a lookup) has had time to arrive and be answered.
pub const QUIET_BEFORE_EVICTION: Duration = Duration::from_secs(2);
/// Of the outgoing connections, how many publishes may hold: the rest stay free for
/// lookups and queries, which a user waits for.
pub const MAX_FOR_PUBLISHING: usize = 64;

/// What the pool asks of the caller.
#[derive(Debug, PartialEq)]
pub enum PeerStep {
    /// Open a directory connection to this member; report with `up` or `failed`.
    Connect { node_id: NodeId, addr: SocketAddr },
    /// Send on this session.
    Send(SessionId, SupernodeToSupernode),
    /// Close this (idle) session.
    Close(SessionId),
}

/// A directory session, either way.
#[derive(Debug)]
pub struct Peer {
    pub node_id: NodeId,
    pub outgoing: bool,
    last_used: Instant,
    /// Publishes sent on it whose answer has not come: closing it now would lose them.
    unanswered: u32,
    /// Its queries and lookups to us, all its messages, and the keywords it publishes.
    pub budgets: Budgets,
}

/// What one member may make us do.
#[derive(Clone, Copy, Debug)]
pub struct Budgets {
    pub queries: TokenBucket,
    pub messages: TokenBucket,
    pub keywords: TokenBucket,
}

#[derive(Debug)]
enum Slot {
    Connecting {
        since: Instant,
        queued: VecDeque<SupernodeToSupernode>,
    },
    Up(SessionId),
}

/// The pool.
#[derive(Debug, Default)]
pub struct Peers {
    by_node: FxHashMap<NodeId, Slot>,
    sessions: FxHashMap<SessionId, Peer>,
    /// The budgets of members whose last session ended, for [`IDLE`]: a member that
    /// reconnects goes on with what it had left, not with a fresh burst.
    spent: FxHashMap<NodeId, (Budgets, Instant)>,
}

impl Peers {
    /// Sends `msg` to member `node` at `addr`, connecting first if need be. Returns false
    /// if it cannot go (no room for another connection, or the queue is full): the caller
    /// treats the member as unreachable.
    pub fn send(
        &mut self,
        now: Instant,
        node: NodeId,
        addr: SocketAddr,
        msg: SupernodeToSupernode,
        steps: &mut Vec<PeerStep>,
    ) -> bool {
        self.send_within(now, node, addr, msg, MAX_OUTGOING, steps)
    }

    /// Whether a publish to `node` can go now without taking more than
    /// [`MAX_FOR_PUBLISHING`] connections (publishes that cannot wait for the next flush).
    pub fn publish(
        &mut self,
        now: Instant,
        node: NodeId,
        addr: SocketAddr,
        msg: SupernodeToSupernode,
        steps: &mut Vec<PeerStep>,
    ) -> Result<(), SupernodeToSupernode> {
        let room = self.by_node.contains_key(&node) || self.has_room(now, MAX_FOR_PUBLISHING);
        if room && self.send_within(now, node, addr, msg.clone(), MAX_FOR_PUBLISHING, steps) {
            return Ok(());
        }
        Err(msg)
    }

    fn send_within(
        &mut self,
        now: Instant,
        node: NodeId,
        addr: SocketAddr,
        msg: SupernodeToSupernode,
        limit: usize,
        steps: &mut Vec<PeerStep>,
    ) -> bool {
        match self.by_node.get_mut(&node) {
            Some(Slot::Up(session)) => {
                let session = *session;
                if let Some(peer) = self.sessions.get_mut(&session) {
                    peer.last_used = now;
                    peer.unanswered += u32::from(is_publish(&msg));
                }
                steps.push(PeerStep::Send(session, msg));
                true
            }
            Some(Slot::Connecting { queued, .. }) => {
                if queued.len() >= MAX_QUEUED {
                    return false;
                }
                queued.push_back(msg);
                true
            }
            None => {
                if self.opening_or_open() >= limit && !self.evict_idle(now, steps) {
                    return false;
                }
                self.by_node.insert(
                    node,
                    Slot::Connecting {
                        since: now,
                        queued: VecDeque::from([msg]),
                    },
                );
                steps.push(PeerStep::Connect {
                    node_id: node,
                    addr,
                });
                true
            }
        }
    }

    /// A directory session with `node` is up (`outgoing`: we opened it). Messages queued
    /// for it go out.
    pub fn up(
        &mut self,
        now: Instant,
        session: SessionId,
        node: NodeId,
        outgoing: bool,
        budgets: Budgets,
        steps: &mut Vec<PeerStep>,
    ) {
        // Budgets belong to the member: one it still has (another session open, or one
        // that ended lately) carries over.
        let budgets = self
            .sessions
            .values()
            .find(|p| p.node_id == node)
            .map(|p| p.budgets)
            .or_else(|| self.spent.remove(&node).map(|(b, _)| b))
            .unwrap_or(budgets);
        self.sessions.insert(
            session,
            Peer {
                node_id: node,
                outgoing,
                last_used: now,
                unanswered: 0,
                budgets,
            },
        );
        let previous = self.by_node.insert(node, Slot::Up(session));
        if let Some(Slot::Connecting { queued, .. }) = previous {
            if let Some(peer) = self.sessions.get_mut(&session) {
                peer.unanswered += queued.iter().filter(|m| is_publish(m)).count() as u32;
            }
            steps.extend(queued.into_iter().map(|m| PeerStep::Send(session, m)));
        }
    }

    /// Opening a connection to `node` failed: what was queued for it is dropped.
    pub fn failed(&mut self, node: NodeId) -> bool {
        matches!(self.by_node.get(&node), Some(Slot::Connecting { .. }))
            && self.by_node.remove(&node).is_some()
    }

    /// A directory session ended. Returns its member, and whether publishes sent on it
    /// were still unanswered (perhaps lost).
    pub fn gone(&mut self, session: SessionId) -> Option<(NodeId, bool)> {
        let peer = self.sessions.remove(&session)?;
        if matches!(self.by_node.get(&peer.node_id), Some(Slot::Up(s)) if *s == session) {
            self.by_node.remove(&peer.node_id);
        }
        self.spent
            .insert(peer.node_id, (peer.budgets, peer.last_used));
        Some((peer.node_id, peer.unanswered > 0))
    }

    /// An owner answered a publish sent on `session`.
    pub fn publish_answered(&mut self, session: SessionId) {
        if let Some(peer) = self.sessions.get_mut(&session) {
            peer.unanswered = peer.unanswered.saturating_sub(1);
        }
    }

    /// The session's peer; the session counts as used now (a message came on it).
    pub fn get_mut(&mut self, now: Instant, session: SessionId) -> Option<&mut Peer> {
        let peer = self.sessions.get_mut(&session)?;
        peer.last_used = now;
        Some(peer)
    }

    /// Whether a new connection fits under `limit`, now or by closing a quiet one.
    fn has_room(&self, now: Instant, limit: usize) -> bool {
        self.opening_or_open() < limit || self.quietest(now).is_some()
    }

    /// Whether a session to `node` is open or opening.
    pub fn is_reaching(&self, node: &NodeId) -> bool {
        self.by_node.contains_key(node)
    }

    pub fn contains(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    /// Sessions open, either way.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Closes outgoing sessions idle for [`IDLE`]; gives up connections not up within
    /// [`CONNECT_TIMEOUT`] (returned: the caller treats them as unreachable).
    pub fn expire(&mut self, now: Instant, steps: &mut Vec<PeerStep>) -> Vec<NodeId> {
        self.spent.retain(|_, (_, last)| now < *last + IDLE);
        for (session, peer) in &self.sessions {
            if peer.outgoing && now >= peer.last_used + IDLE {
                steps.push(PeerStep::Close(*session));
            }
        }
        let stuck: Vec<NodeId> = self
            .by_node
            .iter()
            .filter(|(_, slot)| {
                matches!(slot, Slot::Connecting { since, .. } if now >= *since + CONNECT_TIMEOUT)
            })
            .map(|(node, _)| *node)
            .collect();
        for node in &stuck {
            self.by_node.remove(node);
        }
        stuck
    }

    fn opening_or_open(&self) -> usize {
        let opening = self
            .by_node
            .values()
            .filter(|s| matches!(s, Slot::Connecting { .. }))
            .count();
        opening + self.sessions.values().filter(|p| p.outgoing).count()
    }

    /// The least recently used outgoing session quiet for [`QUIET_BEFORE_EVICTION`].
    fn quietest(&self, now: Instant) -> Option<SessionId> {
        self.sessions
            .iter()
            .filter(|(_, p)| {
                p.outgoing && p.unanswered == 0 && now >= p.last_used + QUIET_BEFORE_EVICTION
            })
            .min_by_key(|(s, p)| (p.last_used, **s))
            .map(|(s, _)| *s)
    }

    /// Closes the least recently used quiet outgoing session; false if there is none.
    fn evict_idle(&mut self, now: Instant, steps: &mut Vec<PeerStep>) -> bool {
        match self.quietest(now) {
            Some(session) => {
                let _ = self.gone(session);
                steps.push(PeerStep::Close(session));
                true
            }
            None => false,
        }
    }
}

fn is_publish(msg: &SupernodeToSupernode) -> bool {
    matches!(msg, SupernodeToSupernode::DirPublish { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u16) -> NodeId {
        let mut bytes = [7u8; 32];
        bytes[..2].copy_from_slice(&i.to_le_bytes());
        NodeId::from_bytes(bytes)
    }

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 4000 + i))
    }

    fn budgets(now: Instant) -> Budgets {
        let bucket = TokenBucket::new(now, 10.0, 10);
        Budgets {
            queries: bucket,
            messages: bucket,
            keywords: bucket,
        }
    }

    fn ping(n: u64) -> SupernodeToSupernode {
        SupernodeToSupernode::Ping { nonce: n }
    }

    #[test]
    fn messages_wait_for_the_connection_and_then_reuse_it() {
        let now = Instant::now();
        let mut peers = Peers::default();
        let mut steps = Vec::new();
        assert!(peers.send(now, node(1), addr(1), ping(1), &mut steps));
        assert!(peers.send(now, node(1), addr(1), ping(2), &mut steps));
        assert_eq!(
            steps,
            vec![PeerStep::Connect {
                node_id: node(1),
                addr: addr(1)
            }]
        );
        steps.clear();
        peers.up(now, SessionId(7), node(1), true, budgets(now), &mut steps);
        assert_eq!(
            steps,
            vec![
                PeerStep::Send(SessionId(7), ping(1)),
                PeerStep::Send(SessionId(7), ping(2))
            ]
        );
        steps.clear();
        peers.send(now, node(1), addr(1), ping(3), &mut steps);
        assert_eq!(steps, vec![PeerStep::Send(SessionId(7), ping(3))]);
        assert_eq!(peers.gone(SessionId(7)), Some((node(1), false)));
    }

    #[test]
    fn outgoing_connections_are_capped_and_idle_ones_closed() {
        let now = Instant::now();
        let mut peers = Peers::default();
        let mut steps = Vec::new();
        for i in 0..MAX_OUTGOING as u16 {
            assert!(peers.send(now, node(i), addr(i), ping(0), &mut steps));
        }
        // All opening, none idle to close: no room.
        assert!(!peers.send(now, node(1000), addr(1000), ping(0), &mut steps));
        for i in 0..MAX_OUTGOING as u16 {
            let at = now + Duration::from_millis(u64::from(i));
            peers.up(
                at,
                SessionId(u64::from(i) + 1),
                node(i),
                true,
                budgets(now),
                &mut steps,
            );
        }
        steps.clear();
        // All just used: none is closed under what was just sent on it.
        assert!(!peers.send(now, node(1000), addr(1000), ping(0), &mut steps));
        // Once quiet, room is made by closing the least recently used.
        let quiet = now + QUIET_BEFORE_EVICTION + Duration::from_millis(10);
        assert!(peers.send(quiet, node(1000), addr(1000), ping(0), &mut steps));
        assert!(steps.contains(&PeerStep::Close(SessionId(1))));
        steps.clear();
        let stuck = peers.expire(quiet + CONNECT_TIMEOUT, &mut steps);
        assert_eq!(stuck, vec![node(1000)]);
        peers.expire(now + IDLE + Duration::from_secs(1), &mut steps);
        assert_eq!(
            steps
                .iter()
                .filter(|s| matches!(s, PeerStep::Close(_)))
                .count(),
            MAX_OUTGOING - 1
        );
    }

    #[test]
    fn publishes_leave_room_for_lookups() {
        let now = Instant::now();
        let mut peers = Peers::default();
        let mut steps = Vec::new();
        for i in 0..MAX_FOR_PUBLISHING as u16 {
            assert!(
                peers
                    .publish(now, node(i), addr(i), ping(0), &mut steps)
                    .is_ok()
            );
        }
        // Publishing is full: the publish comes back to wait for the next flush...
        assert!(
            peers
                .publish(now, node(1000), addr(1000), ping(9), &mut steps)
                .is_err()
        );
        // ...but to a member already being reached it still goes, and lookups have room.
        assert!(
            peers
                .publish(now, node(1), addr(1), ping(1), &mut steps)
                .is_ok()
        );
        assert!(peers.send(now, node(1001), addr(1001), ping(2), &mut steps));
    }

    #[test]
    fn a_session_with_unanswered_publishes_is_not_closed_for_room_and_says_so_when_gone() {
        let now = Instant::now();
        let mut peers = Peers::default();
        let mut steps = Vec::new();
        let publish = SupernodeToSupernode::DirPublish { keywords: vec![] };
        assert!(
            peers
                .publish(now, node(1), addr(1), publish.clone(), &mut steps)
                .is_ok()
        );
        peers.up(now, SessionId(1), node(1), true, budgets(now), &mut steps);
        let later = now + QUIET_BEFORE_EVICTION * 2;
        assert_eq!(peers.quietest(later), None, "its publish is unanswered");
        peers.publish_answered(SessionId(1));
        assert_eq!(peers.quietest(later), Some(SessionId(1)));
        assert!(
            peers
                .publish(later, node(1), addr(1), publish, &mut steps)
                .is_ok()
        );
        assert_eq!(peers.gone(SessionId(1)), Some((node(1), true)));
    }

    #[test]
    fn a_member_that_reconnects_keeps_its_spent_budget() {
        let now = Instant::now();
        let mut peers = Peers::default();
        let mut steps = Vec::new();
        peers.up(now, SessionId(1), node(1), false, budgets(now), &mut steps);
        let peer = peers.get_mut(now, SessionId(1)).unwrap();
        while peer.budgets.queries.try_take(now) {}
        assert!(peers.gone(SessionId(1)).is_some());
        peers.up(now, SessionId(2), node(1), false, budgets(now), &mut steps);
        let peer = peers.get_mut(now, SessionId(2)).unwrap();
        assert!(
            !peer.budgets.queries.try_take(now),
            "a fresh burst on reconnecting"
        );
        // After a long quiet, a new session starts full.
        assert!(peers.gone(SessionId(2)).is_some());
        peers.expire(now + IDLE, &mut steps);
        peers.up(
            now + IDLE,
            SessionId(3),
            node(1),
            false,
            budgets(now),
            &mut steps,
        );
        assert!(
            peers
                .get_mut(now + IDLE, SessionId(3))
                .unwrap()
                .budgets
                .queries
                .try_take(now + IDLE)
        );
    }

    #[test]
    fn a_failed_connection_drops_its_queue() {
        let now = Instant::now();
        let mut peers = Peers::default();
        let mut steps = Vec::new();
        peers.send(now, node(1), addr(1), ping(1), &mut steps);
        assert!(peers.failed(node(1)));
        assert!(!peers.failed(node(1)));
        steps.clear();
        peers.send(now, node(1), addr(1), ping(2), &mut steps);
        assert!(matches!(steps[0], PeerStep::Connect { .. }));
    }
}
