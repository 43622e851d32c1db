//! The node: a leaf, and a supernode too once promoted (or started as one).
//!
//! Decisions and I/O are apart (the quinn-proto pattern, like the supernode's):
//! - `core`: [`LeafCore`], every decision of a node as a plain state machine: which
//!   supernode to attach to, the first-join wait, failover, list refreshes, searches and
//!   their pacing, what is published, promotion and stepping down. The simulator runs it.
//! - `join`: the joining state machine the core uses (candidates, probes, hysteresis).
//! - `election`: when to promote ourselves and when to step down.
//! - `driver`: the tokio driver of the core ([`Leaf`]): sessions, probes, the folder
//!   watcher, the supernode it may run; it decides nothing.
//! - `cache`: the cached supernode list.
//! - `status`: [`LeafStatus`] and its JSON.

mod cache;
mod core;
mod driver;
mod election;
mod join;
mod status;

pub use cache::{CACHE_FILE, parse as parse_supernode_cache};
pub use core::{
    ASSUMED_LIMITS, AttachOutcome, FIRST_JOIN_WAIT, LeafAction, LeafCore, LeafCoreConfig,
    MAX_CONTENTS_PER_SEARCH, MAX_QUEUED_SEARCHES, MAX_RUNNING_SEARCHES, Mapping, Origin,
    PromotionOutcome, PublicationStatus, Reach, ReachView, SEARCH_DEADLINE, SessionNo, Source,
    SupernodeView,
};
pub use driver::{Leaf, LeafConfig, LeafHandle, SearchItem, leaf_limits, transfer_service};
pub use election::{Decision, Election, ElectionConfig};
pub use join::JoinConfig;
pub use status::LeafStatus;
