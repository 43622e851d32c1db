//! Tests of the `superpeer` binary as a user runs it: real processes, real QUIC on
//! 127.0.0.x. One test binary, one link step.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod control_flood;
mod download;
mod elected;
mod hostile_downloads;
mod leaf;
mod list_server;
mod multihome;
mod promote;
mod publish;
mod stuck_supernode;
mod supernode;
mod supernode_as_node;
mod support;
mod testnet;
