//! Content ids: the BLAKE3 hash of a whole file, shown as lower-case hex (what `b3sum`
//! prints). A peer asks for content by this id only, and every downloaded byte is checked
//! against it.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// BLAKE3 hash of a file's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId([u8; 32]);

/// Read buffer for hashing. BLAKE3 uses SIMD over 16 KiB+ inputs; 256 KiB keeps syscalls rare.
const HASH_BUFFER: usize = 256 * 1024;

impl ContentId {
    /// Wraps a 32-byte BLAKE3 hash.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw hash.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The content id of bytes in memory.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The content id of everything `reader` yields, read in streaming fashion (constant
    /// memory, any size). `on_progress` is told how many bytes each read added.
    pub fn of_reader(mut reader: impl Read, mut on_progress: impl FnMut(u64)) -> io::Result<Self> {
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; HASH_BUFFER];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(buf.get(..n).unwrap_or_default());
            on_progress(n as u64);
        }
        Ok(Self(*hasher.finalize().as_bytes()))
    }

    /// The content id of the file at `path`.
    pub fn of_file(path: &Path) -> io::Result<Self> {
        Self::of_reader(File::open(path)?, |_| {})
    }

    /// The first 8 hex digits, for log lines and tables.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl From<blake3::Hash> for ContentId {
    fn from(hash: blake3::Hash) -> Self {
        Self(*hash.as_bytes())
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({})", self.short())
    }
}

/// Why a string is not a content id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a content id is 64 hex digits (a BLAKE3 hash as b3sum prints it), got {0:?}")]
pub struct ParseContentIdError(String);

impl FromStr for ContentId {
    type Err = ParseContentIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        match (s.len(), hex::decode_to_slice(s, &mut bytes)) {
            (64, Ok(())) => Ok(Self(bytes)),
            _ => Err(ParseContentIdError(s.chars().take(80).collect())),
        }
    }
}

// Binary formats carry raw bytes; human-readable ones (JSON) carry hex.
impl Serialize for ContentId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for ContentId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let s = String::deserialize(deserializer)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Input of the official BLAKE3 test vectors: byte i is i mod 251.
    fn vector_input(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn matches_published_blake3_vectors() {
        // From BLAKE3's test_vectors.json (first 32 bytes of each hash).
        assert_eq!(
            ContentId::of_bytes(&[]).to_string(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(
            ContentId::of_bytes(&vector_input(1)).to_string(),
            "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213"
        );
        assert_eq!(
            ContentId::of_bytes(b"abc").to_string(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }

    #[test]
    fn file_id_equals_one_shot_blake3_of_its_bytes() {
        // 3 MiB + 7 bytes: many hash buffers and a ragged tail.
        let bytes: Vec<u8> = (0..3 * 1024 * 1024 + 7)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&bytes).unwrap();
        file.flush().unwrap();
        let id = ContentId::of_file(file.path()).unwrap();
        assert_eq!(id.as_bytes(), blake3::hash(&bytes).as_bytes());

        let mut seen = 0;
        let again = ContentId::of_reader(&bytes[..], |n| seen += n).unwrap();
        assert_eq!(again, id);
        assert_eq!(seen, bytes.len() as u64);
    }

    #[test]
    fn missing_file_is_an_io_error() {
        assert!(ContentId::of_file(Path::new("/nonexistent/superpeer/file")).is_err());
    }

    #[test]
    fn parses_hex_and_rejects_the_rest() {
        let id = ContentId::of_bytes(b"x");
        assert_eq!(id.to_string().parse::<ContentId>().unwrap(), id);
        assert_eq!(
            id.to_string().to_uppercase().parse::<ContentId>().unwrap(),
            id
        );
        assert!("".parse::<ContentId>().is_err());
        assert!("../../etc/passwd".parse::<ContentId>().is_err());
        assert!("g".repeat(64).parse::<ContentId>().is_err());
        assert!(format!("{id}00").parse::<ContentId>().is_err());
    }
}
