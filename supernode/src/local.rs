//! The supernode's own user's searches: a promoted leaf (or a supernode daemon) searches
//! through its own core, as [`SessionId::LOCAL`](crate::SessionId::LOCAL), and the answers
//! the core addresses to that session come here instead of onto a connection.

use std::collections::HashMap;

use superpeer_common::wire::{QueryId, SupernodeToLeaf};
use tokio::sync::mpsc;

/// Our own user's searches in progress: where each one's answers go.
#[derive(Default)]
pub struct LocalSearches(HashMap<QueryId, mpsc::Sender<SupernodeToLeaf>>);

impl LocalSearches {
    /// Most of our own searches at once; the oldest answer channel is dropped beyond.
    const MAX: usize = 64;

    pub fn start(&mut self, id: QueryId, answers: mpsc::Sender<SupernodeToLeaf>) {
        self.0.retain(|_, tx| !tx.is_closed());
        if self.0.len() < Self::MAX {
            self.0.insert(id, answers);
        }
    }

    /// Passes an answer on; the search ends with its `QueryDone`.
    pub fn deliver(&mut self, msg: SupernodeToLeaf) {
        let (id, last) = match &msg {
            SupernodeToLeaf::Hits { id, .. } => (*id, false),
            SupernodeToLeaf::QueryDone { id, .. } => (*id, true),
            _ => return,
        };
        let delivered = self.0.get(&id).is_some_and(|tx| tx.try_send(msg).is_ok());
        if last || !delivered {
            self.0.remove(&id);
        }
    }
}
