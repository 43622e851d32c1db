//! NAT traversal, a leaf's side (the message flow is in `superpeer_common::wire`'s
//! `nat.rs`; the supernode's side in `superpeer_supernode`'s `traversal`).
//!
//! - As a downloader ([`Dialer`]): a holder named with a `via` supernode is firewalled.
//!   The downloader asks that supernode to have it dial back, dials it at once too (the
//!   punch), takes whichever connection completes first, and falls back to a relay on that
//!   supernode when neither does. The transfer then runs as over any connection, and the
//!   holder is reported as reached directly, by reverse connection, punched or relayed.
//! - As a holder ([`dial_back`], [`relay_leg`]): when our supernode asks, we dial the
//!   requester at the address the supernode observed, pinned to its node id, from the
//!   endpoint we use for everything (so our NAT's mapping is the one the supernode saw),
//!   and serve it our files on that connection; or we open our leg at the relay and serve
//!   it through the tunnel.
//! - A reverse connection arriving for a download is handed over by [`Pushes`]; one nobody
//!   waits for is refused.
//!
//! Layout:
//! - `pushes`: downloads waiting for a holder's reverse connection.
//! - `holder`: the holder's side: dial back, relay leg.
//! - `dialer`: the downloader's side: direct, reverse, punch, relay.

mod dialer;
mod holder;
mod pushes;

pub use dialer::{Dialer, ReachError, Reached, Reacher};
pub use holder::{PUNCH_WINDOW, dial_back, relay_leg};
pub use pushes::{MAX_WAITING, PushWait, Pushes, take_push};
