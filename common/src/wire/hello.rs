//! The hello exchange that opens every connection, and the version check.
//!
//! 1. The initiator opens the first bidirectional stream and sends `(version, Hello)`.
//! 2. The responder reads the version *before* the rest: a different version gets the reply
//!    `(our version)` alone, and both sides report [`WireError::VersionMismatch`]. This
//!    envelope (a postcard `u16`, then the body) is frozen for all versions, so old and new
//!    nodes can always tell each other apart cleanly.
//! 3. Same version: the responder answers `(version, HelloReply)`: welcome, or refused with
//!    other supernodes to try. On welcome the stream carries the conversation the
//!    [`Intent`] names.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use super::frame::{FrameReader, FrameWriter, Message, decode, decode_error};
use super::messages::{Intent, Role, SupernodeInfo};
use super::{PROTOCOL_VERSION, WireError};

/// Longest agent string accepted.
pub const MAX_AGENT_BYTES: usize = 64;

/// The initiator's first message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The initiator's role.
    pub role: Role,
    /// What the initiator wants from this connection.
    pub intent: Intent,
    /// Where others can dial the initiator, if it accepts connections.
    pub advertise: Option<SocketAddr>,
    /// Software name and version, for logs only.
    pub agent: String,
}

impl Hello {
    /// A hello from this build of superpeer.
    pub fn new(role: Role, intent: Intent, advertise: Option<SocketAddr>) -> Self {
        Self {
            role,
            intent,
            advertise,
            agent: agent(),
        }
    }
}

impl Message for Hello {
    const VARIANTS: Option<u32> = None;
}

impl Message for HelloReply {
    const VARIANTS: Option<u32> = Some(2);
}

/// This build's agent string.
pub fn agent() -> String {
    format!("superpeer/{}", env!("CARGO_PKG_VERSION"))
}

/// The responder's answer to a [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// Go ahead.
    Welcome {
        /// The responder's role.
        role: Role,
    },
    /// Not here (full supernode, wrong role, shutting down); try these instead.
    Refused {
        /// Why, for people.
        reason: String,
        /// Other supernodes to try (like X-Try-Ultrapeers).
        try_instead: Vec<SupernodeInfo>,
    },
}

/// `msg` behind the version envelope.
fn encode_versioned<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    super::frame::encode(&(PROTOCOL_VERSION, msg))
}

/// Checks the envelope's version, then decodes the body.
pub(crate) fn decode_versioned<T: Message>(body: &[u8]) -> Result<T, WireError> {
    let (theirs, rest) = postcard::take_from_bytes::<u16>(body).map_err(decode_error)?;
    if theirs != PROTOCOL_VERSION {
        return Err(WireError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs,
        });
    }
    decode(rest)
}

/// Initiator: sends `hello` and waits for the reply.
pub async fn send_hello<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    hello: &Hello,
) -> Result<HelloReply, WireError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    writer.write_frame(&encode_versioned(hello)?).await?;
    let body = reader.read_frame().await?.ok_or(WireError::Closed)?;
    decode_versioned(body)
}

/// Responder: reads the initiator's hello. On a version mismatch it tells the initiator our
/// version before returning the error; the caller then closes the connection.
pub async fn receive_hello<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
) -> Result<Hello, WireError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let body = reader.read_frame().await?.ok_or(WireError::Closed)?;
    match decode_versioned::<Hello>(body) {
        Ok(hello) if hello.agent.len() > MAX_AGENT_BYTES => Err(WireError::Invalid(format!(
            "agent string of {} bytes",
            hello.agent.len()
        ))),
        Ok(hello) => Ok(hello),
        Err(e @ WireError::VersionMismatch { .. }) => {
            // Best effort: the initiator learns our version even though we stop here.
            let _ = writer
                .write_frame(&super::frame::encode(&PROTOCOL_VERSION)?)
                .await;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Responder: answers a hello it accepted.
pub async fn send_hello_reply<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    reply: &HelloReply,
) -> Result<(), WireError> {
    writer.write_frame(&encode_versioned(reply)?).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello::new(
            Role::Leaf,
            Intent::Attach,
            Some("127.0.0.1:5".parse().unwrap()),
        )
    }

    #[test]
    fn versioned_round_trip() {
        let frame = encode_versioned(&hello()).unwrap();
        let back: Hello = decode_versioned(&frame[4..]).unwrap();
        assert_eq!(back, hello());
    }

    #[test]
    fn another_version_is_refused_whatever_its_body() {
        // A future version with a body this version cannot parse at all.
        let frame = super::super::frame::encode(&(PROTOCOL_VERSION + 1, [0xffu8; 9])).unwrap();
        let err = decode_versioned::<Hello>(&frame[4..]).unwrap_err();
        assert!(
            matches!(err, WireError::VersionMismatch { ours, theirs } if ours == PROTOCOL_VERSION && theirs == PROTOCOL_VERSION + 1)
        );
    }

    #[tokio::test]
    async fn responder_tells_a_mismatched_initiator_its_version() {
        let frame = super::super::frame::encode(&(PROTOCOL_VERSION + 7, hello())).unwrap();
        let mut reader = FrameReader::new(&frame[..]);
        let mut out = Vec::new();
        let mut writer = FrameWriter::new(&mut out);
        let err = receive_hello(&mut reader, &mut writer).await.unwrap_err();
        assert!(
            matches!(err, WireError::VersionMismatch { theirs, .. } if theirs == PROTOCOL_VERSION + 7)
        );

        // What the initiator reads back is a mismatch on its side too.
        let body = &out[4..];
        let seen = postcard::from_bytes::<u16>(body).unwrap();
        assert_eq!(seen, PROTOCOL_VERSION);
    }

    #[tokio::test]
    async fn oversized_agent_is_invalid() {
        let mut h = hello();
        h.agent = "x".repeat(MAX_AGENT_BYTES + 1);
        let frame = encode_versioned(&h).unwrap();
        let mut out = Vec::new();
        let err = receive_hello(
            &mut FrameReader::new(&frame[..]),
            &mut FrameWriter::new(&mut out),
        )
        .await;
        assert!(matches!(err, Err(WireError::Invalid(_))));
    }
}
