//! The leaf role: join the lowest-RTT supernode, publish the shared folder, search, and fail
//! over when the supernode goes away.
//!
//! - `join`: the joining state machine (candidates, probes, hysteresis, failover order).
//! - `attach`: probe and attach tasks, the supernode reader.
//! - `cache`: the cached supernode list.
//! - `daemon`: the actor that drives it all.

mod attach;
mod cache;
mod daemon;
mod election;
mod join;

pub use cache::CACHE_FILE;
pub use daemon::{Leaf, LeafConfig, LeafHandle, LeafStatus, SearchItem, transfer_service};
pub use election::{Decision, Election, ElectionConfig};
pub use join::JoinConfig;
