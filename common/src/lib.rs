//! superpeer's shared ground: what every role (leaf, supernode, list server) stands on.
//!
//! - Who a node is: an Ed25519 [`Identity`] kept in the state dir; its [`NodeId`] is the
//!   public key. [`PeerAddr`] is `HOST:PORT` or `NODEID@HOST:PORT` (pinned).
//! - How nodes talk: QUIC over an [`Endpoint`] with TLS 1.3, mutual authentication by raw
//!   Ed25519 public keys (RFC 7250), ALPN `superpeer/1`, bounded windows and streams. Every
//!   [`Connection`] knows the peer's verified node id.
//! - What they say: the [`wire`] module: message enums named by direction, postcard in
//!   length-prefixed frames with a hard size limit, a versioned hello, typed errors and the
//!   close code each one gets.
//! - What they share: [`ContentId`] (BLAKE3 of a file, as `b3sum` prints it) and the
//!   [`keywords`] tokenizer every node uses for names and queries.
//!
//! It does not decide anything: which supernode to join, where a query goes, what to list.
//! Those state machines live in the role crates; this crate only gives them their types.
//!
//! Layout:
//! - `identity`: [`NodeId`], [`Identity`], the key file.
//! - `address`: [`PeerAddr`].
//! - `tls`: rustls configuration and the raw-key verifiers.
//! - `transport`: [`Endpoint`], [`Connection`], [`Session`], [`TransportLimits`].
//! - `tunnel`: QUIC between two leaves through a supernode's relay
//!   ([`Endpoint::over_relay_leg`]).
//! - `wire`: messages, frames, hello, errors.
//! - `content`: [`ContentId`] and streaming hashing.
//! - `keywords`: the tokenizer.
//! - `probe`: RTT probes and dial-back checks.
//! - `gate`: [`Gate`], which connections an accept loop takes (caps per source, QUIC Retry).
//! - `token_bucket`: [`TokenBucket`], for per-peer rate limits.
//! - `atomic_file`: [`write_atomic`], for every file a node saves.

mod address;
mod atomic_file;
mod content;
mod gate;
mod identity;
mod keywords;
mod probe;
mod tls;
mod token_bucket;
mod transport;
mod tunnel;
pub mod wire;

pub use address::{ParsePeerAddrError, PeerAddr};
pub use atomic_file::{create_new_atomic, write_atomic};
pub use content::{ContentId, ParseContentIdError};
pub use gate::{Admitted, Gate, GateLimits, Ticket};
pub use identity::{IDENTITY_FILE, Identity, IdentityError, NodeId, ParseNodeIdError};
pub use keywords::{MAX_KEYWORD_BYTES, MAX_KEYWORDS_PER_NAME, keywords};
pub use probe::{
    MAX_PINGS_PER_PROBE, PROBE_SESSION_LIMIT, ProbeResult, answer_probe, answer_probe_seeing,
    answers_at, probe,
};
pub use tls::{ALPN, TlsError};
pub use token_bucket::TokenBucket;
pub use transport::{
    ConnectError, Connection, Endpoint, HELLO_TIMEOUT, Session, TransportError, TransportLimits,
    UNADMITTED_MAX_FRAME, accept,
};
pub use tunnel::{MAX_TUNNEL_DATAGRAM, TUNNEL_PEER_ADDR};
