//! The supernode role: leaf admission, the content index of attached leaves, keyword query
//! routing across the supernode overlay, and the overlay links themselves.
//!
//! A supernode admits up to `max_leaves` leaves, indexes the files they publish (and its
//! own), answers their keyword queries from the index and forwards them, in rounds, to the
//! neighbours whose keyword summaries may match, then, while results are still wanted,
//! through relays to the matching supernodes one hop further (each reached once). It links to up to `max_neighbors` other
//! supernodes learned from list servers and gossip, registers with the list servers, and
//! hands out lists of supernodes so that joined peers survive a list-server outage.
//!
//! It does not run the list server (`superpeer-bootstrap-list`) nor the leaf side of
//! sharing and downloading (the `superpeer` binary). Every decision lives in plain state
//! machines with time and randomness passed in ([`SupernodeCore`] and its parts), so the
//! simulator drives the same code the daemon runs; [`Supernode`] only moves messages.
//!
//! Layout:
//! - `core`: [`SupernodeCore`], the whole supernode as one state machine.
//! - `leaves`: admission, one session per node id.
//! - `index`: [`ContentIndex`], keyword → entries, AND queries.
//! - `summary`: [`KeywordSummary`], the routing bit table.
//! - `router`: [`Router`], a query's rounds through the overlay.
//! - `seen`: duplicate query ids.
//! - `mesh`: [`Mesh`], known supernodes, links, dials.
//! - `driver`: [`Supernode`], the tokio actor around the core.
//! - `local`: the supernode's own user's searches.
//! - `relay`: [`RelayBook`] and [`pipe`]: relaying for leaves that cannot reach each other.
//! - `traversal`: rendezvous for firewalled leaves: reverse connections, punches, relays.
//! - `sessions`: connection tasks (accept by intent, dial, frame pumps).

mod core;
pub mod directory;
mod driver;
mod index;
mod leaves;
mod local;
mod mesh;
mod relay;
mod router;
mod seen;
mod sessions;
mod summary;
mod traversal;

/// A connection's conversation, as the core names it. The driver hands them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl SessionId {
    /// The supernode itself, searching on behalf of its own user: its queries are routed
    /// like a leaf's and their answers come back to the driver, never onto a connection.
    /// The driver numbers real sessions from 1.
    pub const LOCAL: SessionId = SessionId(0);
}

pub use crate::core::{Action, CoreConfig, CoreStatus, SupernodeCore};
pub use driver::{
    Supernode, SupernodeConfig, SupernodeError, SupernodeHandle, SupernodeStatus, TransferService,
    identify_peers,
};
pub use index::{ContentIndex, IndexError, IndexLimits};
pub use leaves::{Admission, Leaves};
pub use mesh::{LinkDecision, Mesh};
pub use relay::{
    OVERDUE_GRACE, RELAY_CUT_OFF, RelayBook, RelayCaps, RelayEnd, RelayEndReason, RelayId,
    RelayRefusal, RelayStats, RelayTicket, pipe,
};
pub use router::{Asker, Router, RouterConfig, RouterOutput, RouterStats, Started, Targets};
pub use summary::{KeywordSummary, SUMMARY_BITS, keyword_slot};
