//! The keyword directory across the supernodes (issue 15, in progress): each keyword has
//! owners among the live supernodes (rendezvous hashing, [`owners`]); every supernode tells
//! the owners of its index's keywords how many entries it holds for each, and an owner
//! answers "who holds this word" ([`store`]), so a query can reach every supernode that
//! holds a match, however far it is in the overlay.
//!
//! Plain state, no I/O: the core publishes and asks; the driver carries the messages.
//!
//! Built so far: [`owners`] and the owner's [`store`]. The plan for the rest:
//! - Membership: the list server already holds every verified supernode; it serves the
//!   whole set as versioned deltas (about 60 bytes an entry: id, address, load), fetched
//!   every few seconds, so every supernode ranks owners over the same set up to that lag.
//!   Gossip carries only the version, to tell a lagging supernode to fetch. Under the trust
//!   rules (SECURITY.md) no neighbour adds members. While membership moves, a publish is
//!   taken by a supernode that owns the word under its current or its previous view.
//! - Publishing: each supernode diffs its index's keyword counts and sends each owner its
//!   adds and removes in batches, refreshes everything within half the TTL, and sends the
//!   keywords that changed hands to their new owners when membership changes.
//! - Queries: after the neighbours (the fast path), while results are short, the owners of
//!   the query's rarest word say which supernodes hold it (filtered by the other words
//!   where they can), and those are asked directly over a pooled connection (capped).
//! - The simulator runs the same code, with owners dying and joining during queries.

pub mod lookup;
pub mod members;
pub mod owners;
pub mod peers;
pub mod publisher;
pub mod store;

pub use members::MemberSet;
pub use owners::{OWNERS, owners, owns, rank};
pub use publisher::Publisher;
pub use store::{DirectoryLimits, OwnerStore, PublishOutcome};
