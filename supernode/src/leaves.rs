//! Leaf admission: who is attached, up to the capacity, one session per node id.

use std::net::SocketAddr;
use std::time::Instant;

use rustc_hash::FxHashMap;
use superpeer_common::wire::{Holder, Via};
use superpeer_common::{NodeId, TokenBucket};

use crate::SessionId;

/// Messages of any kind a leaf may send per second on average...
const MESSAGES_PER_SECOND: f64 = 50.0;
/// ...and at once (a large folder is published in a few messages; pings are rare).
const MESSAGE_BURST: u32 = 200;

/// One attached leaf.
#[derive(Debug)]
pub struct Leaf {
    /// The leaf's node id.
    pub node_id: NodeId,
    /// Where downloaders reach it.
    pub addr: SocketAddr,
    /// `Some` while it is firewalled: downloaders ask this supernode to reach it.
    pub via: Option<Via>,
    /// Its query budget.
    pub queries: TokenBucket,
    /// Its budget for every message (publishes and pings churn the index and summaries).
    pub messages: TokenBucket,
}

impl Leaf {
    /// The leaf as a holder of content.
    pub fn holder(&self) -> Holder {
        Holder {
            node_id: self.node_id,
            addr: self.addr,
            via: self.via,
        }
    }
}

/// The result of an attach attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Attached. `replaced` is the older session of the same node id, to be closed.
    Admitted { replaced: Option<SessionId> },
    /// No room.
    Full,
}

/// The attached leaves.
#[derive(Debug)]
pub struct Leaves {
    capacity: usize,
    query_rate: (f64, u32),
    by_session: FxHashMap<SessionId, Leaf>,
    by_node: FxHashMap<NodeId, SessionId>,
}

impl Leaves {
    /// Room for `capacity` leaves, each allowed `query_rate` (per second, burst) queries.
    pub fn new(capacity: usize, query_rate: (f64, u32)) -> Self {
        Self {
            capacity,
            query_rate,
            by_session: FxHashMap::default(),
            by_node: FxHashMap::default(),
        }
    }

    /// A leaf asks to attach on `session`. A second session of the same node id replaces the
    /// first (the leaf reconnected before we noticed the old one die).
    pub fn admit(
        &mut self,
        now: Instant,
        session: SessionId,
        node_id: NodeId,
        addr: SocketAddr,
    ) -> Admission {
        let replaced = self.by_node.get(&node_id).copied();
        if replaced.is_none() && self.by_session.len() >= self.capacity {
            return Admission::Full;
        }
        if let Some(old) = replaced {
            self.by_session.remove(&old);
        }
        let (rate, burst) = self.query_rate;
        self.by_session.insert(
            session,
            Leaf {
                node_id,
                addr,
                via: None,
                queries: TokenBucket::new(now, rate, burst),
                messages: TokenBucket::new(now, MESSAGES_PER_SECOND, MESSAGE_BURST),
            },
        );
        self.by_node.insert(node_id, session);
        Admission::Admitted { replaced }
    }

    /// The session ended; returns the leaf if it was still the current one for its id.
    pub fn remove(&mut self, session: SessionId) -> Option<Leaf> {
        let leaf = self.by_session.remove(&session)?;
        if self.by_node.get(&leaf.node_id) == Some(&session) {
            self.by_node.remove(&leaf.node_id);
        }
        Some(leaf)
    }

    /// The leaf on `session`.
    pub fn get(&self, session: SessionId) -> Option<&Leaf> {
        self.by_session.get(&session)
    }

    /// The leaf on `session`, mutably.
    pub fn get_mut(&mut self, session: SessionId) -> Option<&mut Leaf> {
        self.by_session.get_mut(&session)
    }

    /// Attached leaves.
    pub fn len(&self) -> usize {
        self.by_session.len()
    }

    /// No leaf attached.
    pub fn is_empty(&self) -> bool {
        self.by_session.is_empty()
    }

    /// Most leaves admitted.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Every leaf session.
    pub fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.by_session.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    #[test]
    fn capacity_and_replacement() {
        let now = Instant::now();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut leaves = Leaves::new(2, (1.0, 1));
        assert_eq!(
            leaves.admit(now, SessionId(1), id(1), addr),
            Admission::Admitted { replaced: None }
        );
        assert_eq!(
            leaves.admit(now, SessionId(2), id(2), addr),
            Admission::Admitted { replaced: None }
        );
        assert_eq!(
            leaves.admit(now, SessionId(3), id(3), addr),
            Admission::Full
        );
        // The same node again replaces its old session even when full.
        assert_eq!(
            leaves.admit(now, SessionId(4), id(1), addr),
            Admission::Admitted {
                replaced: Some(SessionId(1))
            }
        );
        assert_eq!(leaves.len(), 2);
        // The old session's end does not remove the new one.
        assert!(leaves.remove(SessionId(1)).is_none());
        assert_eq!(leaves.get(SessionId(4)).unwrap().node_id, id(1));
        assert!(leaves.remove(SessionId(4)).is_some());
        assert_eq!(
            leaves.admit(now, SessionId(5), id(3), addr),
            Admission::Admitted { replaced: None }
        );
    }
}
