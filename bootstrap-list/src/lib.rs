//! The list server: the registry of live, dial-back-verified supernodes, served to any node
//! that asks, and saved to disk so a restart serves the last-known list at once.
//!
//! A supernode registers with its advertised address and load; the server dials that
//! address back, pinned to the registering node id, and lists the node only if that very
//! node answers there. Heartbeats keep an entry; silence expires it. Lists prefer
//! supernodes with room and spread askers over them; each list says whether the network is
//! short of supernodes. Supernodes also mirror the whole membership (every listed
//! supernode), as a snapshot once and then as versioned changes, to agree on who owns
//! which keywords.
//!
//! It does not route queries or index content, and it is not needed by peers that have
//! joined before (they cache lists). The registry's decisions live in a plain state machine
//! with time passed in ([`Registry`]); [`ListServer`] only drives it.
//!
//! Layout:
//! - `registry`: the state machine (admit after dial-back, expire, select, shortage).
//! - `membership`: the listed entries and the versioned log of their changes.
//! - `members`: [`MemberSync`], a supernode's mirror of one server's members, and
//!   [`MemberUnion`] of several.
//! - `rate_limit`: per-source token buckets with a capped table.
//! - `persist`: `registry.json`, atomic saves, corrupt files kept aside.
//! - `server`: the QUIC driver ([`ListServer`]).
//! - `stats`: [`ListServerStats`], counters the driver bumps for the metrics endpoint.
//! - `client`: [`fetch_supernodes`], [`keep_registered`] and [`fetch_members`] for the
//!   other roles.

mod client;
mod members;
mod membership;
mod persist;
mod rate_limit;
mod registry;
mod server;
mod stats;

pub use client::{
    ClientError, RegistrationStatus, fetch_members, fetch_supernodes, keep_registered,
};
pub use members::{MAX_MIRRORED_MEMBERS, MemberSync, MemberUnion, MembershipDelta};
pub use persist::{PersistError, REGISTRY_FILE, parse as parse_registry, unix_ms};
pub use rate_limit::RateLimiter;
pub use registry::{
    DEFAULT_MAX_CAPACITY, DEFAULT_MAX_PER_SOURCE, RefuseReason, RegisterOutcome, Registry,
    RegistryConfig, SavedEntry,
};
pub use server::{ListServer, ListServerConfig, ListServerError};
pub use stats::ListServerStats;
