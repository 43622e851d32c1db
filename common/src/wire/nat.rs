//! The messages that reach leaves behind NATs: reachability, reverse connections, hole
//! punching and relays.
//!
//! Flow, for a downloader D and a firewalled holder H attached to supernode S (the hit
//! names H with `via: Some(S)`):
//! 1. D connects to S with [`Intent::Rendezvous`](super::Intent::Rendezvous) from the
//!    endpoint it uses for everything, and sends [`ToRendezvous::Reach`].
//! 2. S sends H [`SupernodeToLeaf::DialBack`](super::SupernodeToLeaf::DialBack) with D's
//!    node id and the address S *observed* D's connection come from (never one D names),
//!    and answers D [`RendezvousReply::Dialling`] with the address S observes H at.
//! 3. At once, H dials D there ([`Intent::Push`](super::Intent::Push), pinned to D's id) and
//!    D dials H at the observed address. A public D takes H's connection: a reverse
//!    connection (Gnutella's push). Behind an endpoint-independent NAT each side's packets
//!    open its own NAT for the other's: a hole punch. Whichever connection completes first
//!    carries the transfer sessions, which D opens as always.
//! 4. When neither completes (a symmetric NAT), D asks S again with
//!    [`ToRendezvous::Relay`]. S tells H [`SupernodeToLeaf::OpenRelay`] with a token; H
//!    connects to S with [`Intent::RelayLeg`](super::Intent::RelayLeg) and sends
//!    [`RelayLegRequest::Join`]. S answers both [`RendezvousReply::Relaying`] and from then
//!    pipes the two streams' bytes, capped. D and H run their own QUIC connection through
//!    it (`superpeer_common::tunnel`): the relay sees only ciphertext.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::identity::NodeId;

/// Longest reason text in a refusal.
pub const MAX_REASON_BYTES: usize = 256;

/// Where a firewalled holder is asked for: the supernode it is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Via {
    /// The supernode's node id (pin it when dialling).
    pub node_id: NodeId,
    /// Where the supernode answers.
    pub addr: SocketAddr,
}

/// A downloader to a supernode, after [`Intent::Rendezvous`](super::Intent::Rendezvous).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToRendezvous {
    /// Have the attached leaf `holder` dial me back, and tell me where it is seen.
    Reach { holder: NodeId },
    /// Relay me to the attached leaf `holder`: the stream carries the tunnel from the
    /// `Relaying` answer on.
    Relay { holder: NodeId },
}

/// A supernode's answer to [`ToRendezvous`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RendezvousReply {
    /// The holder was told to dial `you` (where this connection comes from); it is seen at
    /// `holder`: dial it there at once too.
    Dialling { holder: SocketAddr, you: SocketAddr },
    /// Both ends are here: from now on the stream's bytes go to the other end.
    Relaying,
    /// Not done (not attached here, rate-limited, relay full); for people.
    Refused { reason: String },
}

/// A holder opening its leg of a relayed session, after
/// [`Intent::RelayLeg`](super::Intent::RelayLeg).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayLegRequest {
    /// The leg for the session announced with this token (from `OpenRelay`).
    Join { token: u64 },
}

/// Whether a node can be reached from outside, as its supernode found out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// The address the supernode sees the node's connection come from.
    pub addr: SocketAddr,
    /// Whether a dial-back from another port of the supernode reached the node there (or
    /// at the address it advertises).
    pub reachable: bool,
}
