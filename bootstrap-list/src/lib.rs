//! The list server: the registry of live, dial-back-verified supernodes, served to any node
//! that asks, and saved to disk so a restart serves the last-known list at once.
//!
//! It does not route queries or index content. The registry's decisions (admit, expire,
//! choose what to hand out, signal a shortage) live in a plain state machine with time passed
//! in.
//!
//! Layout: filled in by the list-server issue.
