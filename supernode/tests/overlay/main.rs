//! The supernode overlay over real QUIC on 127.0.x.y: an in-process list server, supernodes
//! and test leaves speaking the wire protocol. One test binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod mesh;
mod support;
