//! The leaf core's searches: starting them (paced under the supernode's limit), passing
//! answers on, ending them.

use std::time::Instant;

use rand::Rng;
use superpeer_common::keywords;
use superpeer_common::wire::{LeafToSupernode, Query, QueryId, SupernodeToLeaf};

use super::searches::SearchOutput;
use super::{LeafAction, LeafCore};

impl LeafCore {
    /// Our user searches. Returns the search's id: its results come as
    /// [`LeafAction::Hits`], its end as [`LeafAction::SearchOver`].
    pub fn search(&mut self, now: Instant, words: &[String], want: u32) -> Result<QueryId, String> {
        let words = keywords(&words.join(" "));
        if words.is_empty() {
            return Err("no searchable words in the query".into());
        }
        let supernode = self.role.is_running_supernode();
        if self.current.is_none() && !supernode {
            return Err("not attached to a supernode yet; try again in a moment".into());
        }
        let query = Query {
            id: QueryId(self.rng.random()),
            keywords: words,
            want,
        };
        query.validate().map_err(|e| e.to_string())?;
        let id = query.id;
        // Our own supernode does not rate-limit its own user.
        if let Some(query) = self.searches.start(now, query, !supernode)? {
            self.send_query(now, query);
        }
        Ok(id)
    }

    /// Whoever asked stopped listening: forget the search, and tell the supernode.
    pub fn cancel_search(&mut self, id: QueryId) {
        if let Some(wire) = self.searches.cancel(&id)
            && let Some(current) = self.current
        {
            self.send(current.session, LeafToSupernode::CancelQuery { id: wire });
        }
    }

    /// An answer to one of our searches from our own supernode.
    pub fn handle_own_answer(&mut self, msg: SupernodeToLeaf) {
        if let Some(out) = self.searches.answer(msg) {
            self.output(out);
        }
    }

    pub(super) fn send_query(&mut self, now: Instant, query: Query) {
        if self.role.is_running_supernode() {
            self.actions
                .push_back(LeafAction::SearchOwnSupernode(query));
        } else if let Some(current) = self.current {
            self.send(current.session, LeafToSupernode::Query(query));
            self.ping_current(now);
        }
    }

    pub(super) fn output(&mut self, out: SearchOutput) {
        self.actions.push_back(match out {
            SearchOutput::Hits(id, hits) => LeafAction::Hits { id, hits },
            SearchOutput::Over(id, refused) => LeafAction::SearchOver { id, refused },
        });
    }

    pub(super) fn end_searches(&mut self, why: &str) {
        for over in self.searches.end_all(why) {
            self.output(over);
        }
    }
}
