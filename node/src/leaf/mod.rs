//! The leaf role: join the lowest-RTT supernode, publish the shared folder, search, and fail
//! over when the supernode goes away.
//!
//! - `join`: the joining state machine (candidates, probes, hysteresis, failover order).
//! - `attach`: probe and attach tasks, the supernode reader.
//! - `cache`: the cached supernode list.
//! - `daemon`: the actor that drives it all.

mod attach;
mod cache;
mod core;
mod daemon;
mod election;
mod join;

pub use cache::CACHE_FILE;
pub use core::{
    ASSUMED_LIMITS, AttachOutcome, FIRST_JOIN_WAIT, LeafAction, LeafCore, LeafCoreConfig,
    MAX_CONTENTS_PER_SEARCH, MAX_QUEUED_SEARCHES, MAX_RUNNING_SEARCHES, Origin, PromotionOutcome,
    PublicationStatus, SEARCH_DEADLINE, SessionNo, Source, SupernodeView,
};
pub use daemon::{Leaf, LeafConfig, LeafHandle, LeafStatus, SearchItem, transfer_service};
pub use election::{Decision, Election, ElectionConfig};
pub use join::JoinConfig;
