//! Framing: each message is a 4-byte big-endian length, then that many bytes of postcard.
//!
//! Encoding and decoding ([`encode`], [`decode`]) work on byte slices and know nothing of
//! streams; reading and writing ([`FrameReader`], [`FrameWriter`]) move whole frames over any
//! tokio stream (QUIC streams in the node, byte slices in tests). A length over
//! [`MAX_FRAME_SIZE`] is refused before any of the body is read or allocated.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{MAX_FRAME_SIZE, WireError};

/// Bytes in the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// `msg` as a complete frame: length prefix and body.
pub fn encode<T: Serialize + ?Sized>(msg: &T) -> Result<Vec<u8>, WireError> {
    let mut frame =
        postcard::to_extend(msg, vec![0u8; LENGTH_PREFIX]).map_err(WireError::Encode)?;
    let body_len = frame.len() - LENGTH_PREFIX;
    if body_len > MAX_FRAME_SIZE {
        return Err(WireError::MessageTooLarge {
            len: body_len,
            max: MAX_FRAME_SIZE,
        });
    }
    // body_len <= MAX_FRAME_SIZE, which fits in u32.
    let prefix = (body_len as u32).to_be_bytes();
    frame.splice(..LENGTH_PREFIX, prefix);
    Ok(frame)
}

/// A type that travels as one frame.
pub trait Message: Serialize + DeserializeOwned {
    /// For an enum, how many variants this version knows: postcard encodes the variant index
    /// first, so an index at or past this is a message from a newer or hostile peer. `None`
    /// for structs.
    const VARIANTS: Option<u32>;
}

/// Decodes one message from a frame body. The whole body must be the message.
pub fn decode<T: Message>(body: &[u8]) -> Result<T, WireError> {
    if let Some(known) = T::VARIANTS {
        let (index, _) = postcard::take_from_bytes::<u32>(body).map_err(decode_error)?;
        if index >= known {
            return Err(WireError::UnknownVariant);
        }
    }
    let (msg, rest) = postcard::take_from_bytes::<T>(body).map_err(decode_error)?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes(rest.len()));
    }
    Ok(msg)
}

pub(crate) fn decode_error(e: postcard::Error) -> WireError {
    match e {
        postcard::Error::DeserializeBadEnum => WireError::UnknownVariant,
        other => WireError::Malformed(other),
    }
}

/// Reads whole frames from a stream.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    max_frame: usize,
}

/// Memory set aside before a frame's body arrives. Beyond it the buffer grows only as bytes
/// really come in, so announcing a large frame costs a peer as much as sending one.
const INITIAL_RESERVE: usize = 16 * 1024;

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a stream; frames up to [`MAX_FRAME_SIZE`].
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            max_frame: MAX_FRAME_SIZE,
        }
    }

    /// Lowers the largest frame accepted on this stream (conversations with small messages
    /// should not let a peer make us buffer a whole megabyte).
    pub fn limit_frames(&mut self, max_frame: usize) {
        self.max_frame = max_frame.min(MAX_FRAME_SIZE);
    }

    /// The next frame body, or `None` when the stream ends cleanly between frames.
    pub async fn read_frame(&mut self) -> Result<Option<&[u8]>, WireError> {
        let mut prefix = [0u8; LENGTH_PREFIX];
        // The first byte tells a clean end (no byte at all) from a truncated frame.
        if self.inner.read(&mut prefix[..1]).await? == 0 {
            return Ok(None);
        }
        self.inner.read_exact(&mut prefix[1..]).await?;
        let len = u32::from_be_bytes(prefix) as usize;
        if len > self.max_frame {
            return Err(WireError::FrameTooLarge {
                len: len as u64,
                max: self.max_frame,
            });
        }
        self.buf.clear();
        self.buf.reserve(len.min(INITIAL_RESERVE));
        (&mut self.inner)
            .take(len as u64)
            .read_to_end(&mut self.buf)
            .await?;
        if self.buf.len() != len {
            return Err(WireError::Truncated);
        }
        // Do not keep a large buffer around for small messages that follow.
        if self.buf.capacity() > 4 * INITIAL_RESERVE && len <= INITIAL_RESERVE {
            self.buf.shrink_to(INITIAL_RESERVE);
        }
        Ok(Some(&self.buf))
    }

    /// The next message, or `None` at a clean end of stream.
    pub async fn recv<T: Message>(&mut self) -> Result<Option<T>, WireError> {
        match self.read_frame().await? {
            Some(body) => decode(body).map(Some),
            None => Ok(None),
        }
    }

    /// The next message; a clean end of stream here is [`WireError::Closed`].
    pub async fn recv_required<T: Message>(&mut self) -> Result<T, WireError> {
        self.recv().await?.ok_or(WireError::Closed)
    }

    /// The underlying stream.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Writes whole frames to a stream.
pub struct FrameWriter<W> {
    inner: W,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Wraps a stream.
    pub fn new(inner: W) -> Self {
        Self { inner }
    }

    /// Encodes and writes one message.
    pub async fn send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<(), WireError> {
        let frame = encode(msg)?;
        self.write_frame(&frame).await
    }

    /// Writes an already encoded frame (see [`encode`]): lets one encoding go to many peers.
    pub async fn write_frame(&mut self, frame: &[u8]) -> Result<(), WireError> {
        self.inner.write_all(frame).await?;
        Ok(())
    }

    /// The underlying stream (to finish or reset it).
    pub fn inner_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The underlying stream.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Msg {
        A(u32),
        B { name: String },
    }

    impl Message for Msg {
        const VARIANTS: Option<u32> = Some(2);
    }

    async fn read_one(bytes: &[u8]) -> Result<Option<Msg>, WireError> {
        FrameReader::new(bytes).recv::<Msg>().await
    }

    #[tokio::test]
    async fn frames_round_trip_back_to_back() {
        let mut bytes = encode(&Msg::A(7)).unwrap();
        bytes.extend(encode(&Msg::B { name: "x".into() }).unwrap());
        let mut reader = FrameReader::new(&bytes[..]);
        assert_eq!(reader.recv::<Msg>().await.unwrap(), Some(Msg::A(7)));
        assert_eq!(
            reader.recv::<Msg>().await.unwrap(),
            Some(Msg::B { name: "x".into() })
        );
        assert_eq!(reader.recv::<Msg>().await.unwrap(), None);
        assert!(matches!(
            reader.recv_required::<Msg>().await,
            Err(WireError::Closed)
        ));
    }

    #[tokio::test]
    async fn oversize_length_is_refused_before_reading_the_body() {
        let mut bytes = ((MAX_FRAME_SIZE + 1) as u32).to_be_bytes().to_vec();
        bytes.extend([0u8; 16]);
        assert!(matches!(
            read_one(&bytes).await,
            Err(WireError::FrameTooLarge { .. })
        ));
        let huge = u32::MAX.to_be_bytes();
        assert!(matches!(
            read_one(&huge).await,
            Err(WireError::FrameTooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn a_lowered_limit_applies() {
        let frame = encode(&Msg::B {
            name: "x".repeat(100),
        })
        .unwrap();
        let mut reader = FrameReader::new(&frame[..]);
        reader.limit_frames(50);
        assert!(matches!(
            reader.recv::<Msg>().await,
            Err(WireError::FrameTooLarge { max: 50, .. })
        ));
    }

    #[tokio::test]
    async fn an_announced_frame_does_not_allocate_before_its_bytes_arrive() {
        // A 1 MiB frame announced, 10 bytes sent, then the stream ends.
        let mut bytes = (MAX_FRAME_SIZE as u32).to_be_bytes().to_vec();
        bytes.extend([1u8; 10]);
        let mut reader = FrameReader::new(&bytes[..]);
        assert!(matches!(
            reader.read_frame().await,
            Err(WireError::Truncated)
        ));
        assert!(
            reader.buf.capacity() < MAX_FRAME_SIZE / 4,
            "reserved {}",
            reader.buf.capacity()
        );
    }

    #[tokio::test]
    async fn oversize_message_is_refused_on_send() {
        let big = Msg::B {
            name: "x".repeat(MAX_FRAME_SIZE),
        };
        assert!(matches!(
            encode(&big),
            Err(WireError::MessageTooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn truncated_frames_are_errors() {
        let frame = encode(&Msg::B {
            name: "hello".into(),
        })
        .unwrap();
        for cut in 1..frame.len() {
            let result = read_one(&frame[..cut]).await;
            assert!(
                matches!(result, Err(WireError::Truncated)),
                "cut at {cut}: {result:?}"
            );
        }
    }

    #[tokio::test]
    async fn garbage_unknown_variants_and_trailing_bytes_are_errors() {
        // Variant index 9 does not exist.
        let unknown = [0, 0, 0, 2, 9, 1];
        assert!(matches!(
            read_one(&unknown).await,
            Err(WireError::UnknownVariant)
        ));
        // Variant B with a string length far past the body.
        let bad_len = [0, 0, 0, 3, 1, 0xff, 0x7f];
        assert!(matches!(
            read_one(&bad_len).await,
            Err(WireError::Malformed(_))
        ));
        // Variant B with invalid UTF-8.
        let bad_utf8 = [0, 0, 0, 4, 1, 2, 0xc3, 0x28];
        assert!(matches!(
            read_one(&bad_utf8).await,
            Err(WireError::Malformed(_))
        ));
        // A valid A(1) followed by a stray byte.
        let trailing = [0, 0, 0, 3, 0, 1, 0];
        assert!(matches!(
            read_one(&trailing).await,
            Err(WireError::TrailingBytes(1))
        ));
        // Empty body.
        assert!(matches!(
            read_one(&[0, 0, 0, 0]).await,
            Err(WireError::Malformed(_))
        ));
    }
}
