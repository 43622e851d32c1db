//! The one error type of the wire layer, and the one place that decides which QUIC close code
//! each failure gets.

use std::io;

/// Why a frame or message could not be read, decoded or accepted.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The length prefix announces more than [`super::MAX_FRAME_SIZE`]; the body is not read.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge { len: u64, max: usize },
    /// We were asked to send a message that encodes to more than the frame limit.
    #[error("message of {len} bytes exceeds the {max}-byte frame limit")]
    MessageTooLarge { len: usize, max: usize },
    /// The stream ended inside a frame (after part of the length prefix or the body).
    #[error("stream ended inside a frame")]
    Truncated,
    /// The stream ended cleanly where a message was required.
    #[error("peer closed the stream where a message was expected")]
    Closed,
    /// The body is not a valid message of the expected type (garbage bytes, bad lengths,
    /// invalid UTF-8, ...).
    #[error("malformed message: {0}")]
    Malformed(postcard::Error),
    /// The body names a message variant this version does not know.
    #[error("unknown message variant")]
    UnknownVariant,
    /// The body decoded but left bytes over: a message of another shape.
    #[error("{0} unexpected trailing bytes after the message")]
    TrailingBytes(usize),
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: we speak {ours}, the peer speaks {theirs}")]
    VersionMismatch { ours: u16, theirs: u16 },
    /// A well-formed message that is not allowed at this point of the conversation.
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
    /// A message breaks a limit or rule of the protocol (too many entries, empty query, ...).
    #[error("invalid message: {0}")]
    Invalid(String),
    /// The peer closed the connection with an application close code.
    #[error("peer closed the connection: {code:?} ({reason})")]
    PeerClosed { code: CloseCode, reason: String },
    /// The QUIC connection or stream failed underneath us (timeout, reset, local close).
    #[error("connection lost: {0}")]
    Connection(String),
    /// The peer did not send what the conversation needs in time.
    #[error("timed out waiting for {0}")]
    TimedOut(&'static str),
    /// Encoding failed (only for values serde cannot represent; not expected in practice).
    #[error("encoding failed: {0}")]
    Encode(postcard::Error),
}

impl WireError {
    /// The close code a connection gets when this error ends it.
    pub fn close_code(&self) -> CloseCode {
        match self {
            WireError::FrameTooLarge { .. } | WireError::MessageTooLarge { .. } => {
                CloseCode::FrameTooLarge
            }
            WireError::VersionMismatch { .. } => CloseCode::VersionMismatch,
            WireError::Truncated
            | WireError::Malformed(_)
            | WireError::UnknownVariant
            | WireError::TrailingBytes(_)
            | WireError::Unexpected(_)
            | WireError::TimedOut(_)
            | WireError::Invalid(_) => CloseCode::ProtocolViolation,
            WireError::Closed
            | WireError::PeerClosed { .. }
            | WireError::Connection(_)
            | WireError::Encode(_) => CloseCode::Normal,
        }
    }
}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        // quinn's streams report through io::Error; recover the QUIC cause (close codes).
        if let Some(inner) = e.get_ref() {
            if let Some(read) = inner.downcast_ref::<quinn::ReadError>() {
                return read.clone().into();
            }
            if let Some(write) = inner.downcast_ref::<quinn::WriteError>() {
                return write.clone().into();
            }
        }
        match e.kind() {
            io::ErrorKind::UnexpectedEof => WireError::Truncated,
            _ => WireError::Connection(e.to_string()),
        }
    }
}

impl From<quinn::ConnectionError> for WireError {
    fn from(e: quinn::ConnectionError) -> Self {
        match e {
            quinn::ConnectionError::ApplicationClosed(close) => WireError::PeerClosed {
                code: CloseCode::from_varint(close.error_code),
                reason: String::from_utf8_lossy(&close.reason)
                    .chars()
                    .take(200)
                    .collect(),
            },
            other => WireError::Connection(other.to_string()),
        }
    }
}

impl From<quinn::ReadExactError> for WireError {
    fn from(e: quinn::ReadExactError) -> Self {
        match e {
            quinn::ReadExactError::FinishedEarly(_) => WireError::Truncated,
            quinn::ReadExactError::ReadError(e) => e.into(),
        }
    }
}

impl From<quinn::ReadError> for WireError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::ConnectionLost(c) => c.into(),
            other => WireError::Connection(other.to_string()),
        }
    }
}

impl From<quinn::WriteError> for WireError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::ConnectionLost(c) => c.into(),
            other => WireError::Connection(other.to_string()),
        }
    }
}

/// QUIC application close codes. The numbers are part of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCode {
    /// Done, nothing wrong.
    Normal,
    /// Malformed, unknown or out-of-place message.
    ProtocolViolation,
    /// Versions differ.
    VersionMismatch,
    /// A frame over the size limit.
    FrameTooLarge,
    /// The peer was refused (full, not wanted, wrong role); a reply may say where to go.
    Refused,
    /// The node is shutting down.
    ShuttingDown,
    /// A newer session of the same node id replaced this one.
    Replaced,
    /// The peer sent more than its share (rate limit).
    Overloaded,
    /// A code this version does not know.
    Unknown(u32),
}

impl CloseCode {
    /// The QUIC error code.
    pub fn code(self) -> u32 {
        match self {
            CloseCode::Normal => 0,
            CloseCode::ProtocolViolation => 1,
            CloseCode::VersionMismatch => 2,
            CloseCode::FrameTooLarge => 3,
            CloseCode::Refused => 4,
            CloseCode::ShuttingDown => 5,
            CloseCode::Replaced => 6,
            CloseCode::Overloaded => 7,
            CloseCode::Unknown(n) => n,
        }
    }

    /// The close code as quinn takes it.
    pub fn varint(self) -> quinn::VarInt {
        quinn::VarInt::from_u32(self.code())
    }

    /// Reads a close code received from a peer.
    pub fn from_varint(v: quinn::VarInt) -> Self {
        match v.into_inner() {
            0 => CloseCode::Normal,
            1 => CloseCode::ProtocolViolation,
            2 => CloseCode::VersionMismatch,
            3 => CloseCode::FrameTooLarge,
            4 => CloseCode::Refused,
            5 => CloseCode::ShuttingDown,
            6 => CloseCode::Replaced,
            7 => CloseCode::Overloaded,
            n => CloseCode::Unknown(u32::try_from(n).unwrap_or(u32::MAX)),
        }
    }
}

/// Closes `conn` because of `error`, with the code [`WireError::close_code`] picks.
pub fn close_for(conn: &quinn::Connection, error: &WireError) {
    let reason: String = error.to_string().chars().take(120).collect();
    conn.close(error.close_code().varint(), reason.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_round_trip() {
        for code in [
            CloseCode::Normal,
            CloseCode::ProtocolViolation,
            CloseCode::VersionMismatch,
            CloseCode::FrameTooLarge,
            CloseCode::Refused,
            CloseCode::ShuttingDown,
            CloseCode::Replaced,
            CloseCode::Overloaded,
            CloseCode::Unknown(99),
        ] {
            assert_eq!(CloseCode::from_varint(code.varint()), code);
        }
    }

    #[test]
    fn protocol_errors_close_as_violations() {
        assert_eq!(
            WireError::UnknownVariant.close_code(),
            CloseCode::ProtocolViolation
        );
        assert_eq!(
            WireError::Truncated.close_code(),
            CloseCode::ProtocolViolation
        );
        assert_eq!(
            WireError::FrameTooLarge { len: 1, max: 0 }.close_code(),
            CloseCode::FrameTooLarge
        );
        assert_eq!(
            WireError::VersionMismatch { ours: 1, theirs: 2 }.close_code(),
            CloseCode::VersionMismatch
        );
    }
}
