//! Node identity: one Ed25519 key pair per node, kept in the node's state dir.
//!
//! The node id is the 32-byte Ed25519 public key, shown as lower-case hex. The key file is a
//! standard PKCS#8 PEM (`openssl pkey -in identity.key -text` reads it), created with mode
//! 0600. A key file that exists but cannot be read or parsed is an error: replacing it would
//! silently change who this node is.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::atomic_file::create_new_atomic;

/// File name of the identity key inside a state dir.
pub const IDENTITY_FILE: &str = "identity.key";

/// DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410): the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A node's identity on the network: its Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; 32]);

impl NodeId {
    /// Wraps raw public-key bytes. Any 32 bytes are accepted here; the TLS layer only ever
    /// produces node ids from keys that really signed a handshake.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw public key.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 8 hex digits, for log lines and tables.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    /// Checks an Ed25519 signature made by this node.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// Why a string is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseNodeIdError {
    /// A node id is exactly 64 hex digits.
    #[error("a node id is 64 hex digits, got {0} characters")]
    Length(usize),
    /// A character outside `0-9a-fA-F`.
    #[error("a node id is 64 hex digits: {0}")]
    NotHex(String),
}

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 {
            return Err(ParseNodeIdError::Length(s.chars().count()));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|e| ParseNodeIdError::NotHex(e.to_string()))?;
        Ok(Self(bytes))
    }
}

// Binary formats (postcard) carry the 32 raw bytes; human-readable ones (JSON) carry hex.
impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let s = String::deserialize(deserializer)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Self)
        }
    }
}

/// Why an identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file exists but could not be read (permissions, I/O error).
    #[error("cannot read identity key {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// The key file is not a PEM PKCS#8 Ed25519 key. It is left untouched.
    #[error(
        "identity key {path} is corrupt ({reason}); it was left as it is. Restore it, or move it \
         aside to create a new identity (the node id will change)"
    )]
    Corrupt { path: PathBuf, reason: String },
    /// The state dir or the key file could not be written.
    #[error("cannot write identity key {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    /// The key file is a symbolic link to nothing. It is left alone: writing through it
    /// would create a file wherever it points, and replacing it would lose that choice.
    #[error(
        "identity key {path} is a symbolic link to a file that does not exist; restore its \
         target, or remove the link to create a new identity (the node id will change)"
    )]
    DanglingLink { path: PathBuf },
    /// The key file appeared and disappeared again while we created it (another program
    /// is deleting it).
    #[error(
        "identity key {path} keeps disappearing while it is created; is another program removing it?"
    )]
    Vanished { path: PathBuf },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// A node's Ed25519 key pair.
pub struct Identity {
    seed: [u8; 32],
    key_pair: Ed25519KeyPair,
    node_id: NodeId,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A fresh random identity (not saved anywhere).
    pub fn generate() -> Result<Self, IdentityError> {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| IdentityError::Random)?;
        Ok(Self::from_seed(seed))
    }

    /// The identity whose private key is `seed` (RFC 8032 secret key).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        // `from_seed_unchecked` only fails for a seed of the wrong length, which the type rules out.
        let key_pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .unwrap_or_else(|_| unreachable!("a 32-byte seed is always a valid Ed25519 key"));
        let mut public = [0u8; 32];
        public.copy_from_slice(key_pair.public_key().as_ref());
        Self {
            seed,
            key_pair,
            node_id: NodeId(public),
        }
    }

    /// Loads `dir/identity.key`, or creates it (and `dir`) on first start.
    pub fn load_or_create(dir: &Path) -> Result<Self, IdentityError> {
        let path = dir.join(IDENTITY_FILE);
        // Twice at most: a second round only follows a process that created the key between
        // our read and our create. Anything else that makes the read miss while the create
        // finds a file (a dangling symlink) is an error, never a loop.
        for _ in 0..2 {
            match std::fs::read(&path) {
                Ok(bytes) => {
                    warn_if_readable_by_others(&path);
                    return Self::from_pem(&bytes)
                        .map_err(|reason| IdentityError::Corrupt { path, reason });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if is_symlink(&path) {
                        return Err(IdentityError::DanglingLink { path });
                    }
                    if let Some(identity) = Self::create(dir, &path)? {
                        return Ok(identity);
                    }
                }
                Err(source) => return Err(IdentityError::Read { path, source }),
            }
        }
        Err(IdentityError::Vanished { path })
    }

    /// Writes a new key at `path`; `None` when another process created one first (then we
    /// use theirs, or we would run under an id that is not on disk). The key is linked into
    /// place, which never follows or replaces whatever `path` names.
    fn create(dir: &Path, path: &Path) -> Result<Option<Self>, IdentityError> {
        let identity = Self::generate()?;
        let write_error = |source| IdentityError::Write {
            path: path.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(write_error)?;
        if !create_new_atomic(path, identity.to_pem().as_bytes(), 0o600).map_err(write_error)? {
            return Ok(None);
        }
        tracing::info!(node_id = %identity.node_id, path = %path.display(), "created a new identity");
        Ok(Some(identity))
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Signs `message` with this node's key.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.key_pair.sign(message).as_ref());
        out
    }

    /// The private key as PKCS#8 v1 DER, the form rustls loads.
    pub fn pkcs8_der(&self) -> PrivatePkcs8KeyDer<'static> {
        let mut der = Vec::with_capacity(48);
        der.extend_from_slice(&PKCS8_ED25519_PREFIX);
        der.extend_from_slice(&self.seed);
        PrivatePkcs8KeyDer::from(der)
    }

    fn to_pem(&self) -> String {
        use base64::Engine;
        let body =
            base64::engine::general_purpose::STANDARD.encode(self.pkcs8_der().secret_pkcs8_der());
        format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
    }

    fn from_pem(bytes: &[u8]) -> Result<Self, String> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(bytes)
            .map_err(|e| format!("not a PEM private key: {e}"))?;
        let der = der.secret_pkcs8_der();
        let seed = der
            .strip_prefix(&PKCS8_ED25519_PREFIX[..])
            .and_then(|rest| <[u8; 32]>::try_from(rest).ok())
            .ok_or("not an Ed25519 PKCS#8 v1 key")?;
        Ok(Self::from_seed(seed))
    }
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink())
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "identity key is readable by other users; run chmod 600 on it");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded_with_the_same_id() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("nested").join("state");
        let first = Identity::load_or_create(&state).unwrap();
        let again = Identity::load_or_create(&state).unwrap();
        assert_eq!(first.node_id(), again.node_id());
        let pem = std::fs::read_to_string(state.join(IDENTITY_FILE)).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn processes_starting_together_agree_on_one_identity() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<NodeId> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| Identity::load_or_create(dir.path()).unwrap().node_id()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let on_disk = Identity::load_or_create(dir.path()).unwrap().node_id();
        assert!(ids.iter().all(|id| *id == on_disk), "{ids:?}");
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(IDENTITY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn corrupt_key_is_an_error_and_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        std::fs::write(&path, b"not a key at all").unwrap();
        let err = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, IdentityError::Corrupt { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"not a key at all");

        // A well-formed PEM holding some other key type is corrupt too.
        let other = "-----BEGIN PRIVATE KEY-----\nMAUCAQAwAA==\n-----END PRIVATE KEY-----\n";
        std::fs::write(&path, other).unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Corrupt { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn unreadable_key_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the key file should be cannot be read as a file.
        std::fs::create_dir(dir.path().join(IDENTITY_FILE)).unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Read { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn dangling_symlink_is_a_clear_error_and_is_left_alone() {
        // Before: the read missed, the create found the link, and the retry recursed until
        // the stack overflowed.
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join(IDENTITY_FILE);
        let target = dir.path().join("elsewhere").join("key.pem");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, IdentityError::DanglingLink { .. }), "{err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(!target.exists(), "nothing was written through the link");
        assert_eq!(std::fs::read_link(&link).unwrap(), target);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlink_to_a_key_is_followed_for_reading() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        let first = Identity::load_or_create(&real).unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::os::unix::fs::symlink(real.join(IDENTITY_FILE), state.join(IDENTITY_FILE)).unwrap();
        assert_eq!(
            Identity::load_or_create(&state).unwrap().node_id(),
            first.node_id()
        );
    }

    #[test]
    fn node_id_is_the_public_key_in_lower_case_hex() {
        // RFC 8032 section 7.1, test 1.
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap();
        let id = Identity::from_seed(seed.try_into().unwrap());
        assert_eq!(
            id.node_id().to_string(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let parsed: NodeId = "D75A980182B10AB7D54BFED3C964073A0EE172F3DAA62325AF021A68F707511A"
            .parse()
            .unwrap();
        assert_eq!(parsed, id.node_id());
    }

    #[test]
    fn signatures_verify_only_for_the_signer() {
        let a = Identity::generate().unwrap();
        let b = Identity::generate().unwrap();
        let sig = a.sign(b"hello");
        assert!(a.node_id().verify(b"hello", &sig));
        assert!(!a.node_id().verify(b"hullo", &sig));
        assert!(!b.node_id().verify(b"hello", &sig));
    }

    #[test]
    fn bad_node_id_strings_are_rejected() {
        assert_eq!("abc".parse::<NodeId>(), Err(ParseNodeIdError::Length(3)));
        assert!(matches!(
            "zz".repeat(32).parse::<NodeId>(),
            Err(ParseNodeIdError::NotHex(_))
        ));
    }

    #[test]
    fn node_id_is_hex_in_json_and_raw_in_postcard() {
        let id = Identity::generate().unwrap().node_id();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), id);
        let bin = postcard::to_stdvec(&id).unwrap();
        assert_eq!(bin.len(), 32);
        assert_eq!(postcard::from_bytes::<NodeId>(&bin).unwrap(), id);
    }
}
