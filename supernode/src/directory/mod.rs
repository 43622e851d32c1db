//! The keyword directory across the supernodes (issue 15, in progress): each keyword has
//! owners among the live supernodes (rendezvous hashing, [`owners`]); every supernode tells
//! the owners of its index's keywords how many entries it holds for each, and an owner
//! answers "who holds this word" ([`store`]), so a query can reach every supernode that
//! holds a match, however far it is in the overlay.
//!
//! Plain state, no I/O: the core publishes and asks; the driver carries the messages.

pub mod owners;
pub mod store;

pub use owners::{OWNERS, owners, owns, rank};
pub use store::{DirectoryLimits, OwnerStore, PublishOutcome};
