//! The wire protocol: messages, framing, the hello exchange, and errors.
//!
//! Layout:
//! - `messages`: every message, as enums named by direction, and their limits.
//! - `frame`: length-prefixed postcard frames; decoding apart from reading.
//! - `hello`: the versioned opening exchange.
//! - `error`: [`WireError`] and the close code each failure gets.

mod error;
mod frame;
mod hello;
mod messages;
mod nat;

pub use error::{CloseCode, WireError, close_for};
pub use frame::{FrameReader, FrameWriter, LENGTH_PREFIX, Message, decode, encode};
pub use hello::{
    Hello, HelloReply, MAX_AGENT_BYTES, agent, receive_hello, send_hello, send_hello_reply,
};
pub use messages::*;
pub use nat::*;

/// The protocol version this build speaks. Nodes of different versions refuse each other in
/// the hello exchange with [`WireError::VersionMismatch`] on both sides.
/// Version 2 added [`SupernodeToLeaf::Limits`] and [`SupernodeToLeaf::Indexed`]; version 3
/// the NAT traversal messages (`nat.rs`) and [`Holder::via`].
pub const PROTOCOL_VERSION: u16 = 3;

/// Largest frame body in bytes. A peer announcing more is cut off before we allocate for it.
/// 1 MiB holds a publish of [`MAX_ENTRIES_PER_MESSAGE`] entries with long names.
pub const MAX_FRAME_SIZE: usize = 1024 * 1024;

#[cfg(test)]
mod roundtrip_tests;
