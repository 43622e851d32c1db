//! The registry on disk: `registry.json` in the state dir, replaced atomically.
//!
//! A file that cannot be parsed is moved aside (never overwritten) and the server starts
//! empty; a missing file is simply a first start.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use superpeer_common::write_atomic;

use crate::registry::SavedEntry;

/// File name of the saved registry inside the state dir.
pub const REGISTRY_FILE: &str = "registry.json";

/// The format version of the saved registry.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct SavedRegistry {
    format: u32,
    saved_at_ms: u64,
    entries: Vec<SavedEntry>,
}

/// Why the saved registry could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// The file is not a saved registry; it was moved to `kept_as`.
    #[error(
        "{path} is corrupt ({reason}); kept it as {kept_as} and started with an empty registry"
    )]
    Corrupt {
        path: PathBuf,
        reason: String,
        kept_as: PathBuf,
    },
    /// The file could not be written.
    #[error("cannot save {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Loads the saved entries. Missing file: empty. Corrupt file: moved aside, and the error
/// says where (the caller logs it and goes on empty).
pub fn load(state_dir: &Path) -> Result<Vec<SavedEntry>, PersistError> {
    let path = state_dir.join(REGISTRY_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(PersistError::Read { path, source }),
    };
    let reason = match parse(&bytes) {
        Ok(entries) => return Ok(entries),
        Err(reason) => reason,
    };
    let kept_as = state_dir.join(format!("{REGISTRY_FILE}.corrupt-{}", unix_ms()));
    std::fs::rename(&path, &kept_as).map_err(|source| PersistError::Read {
        path: path.clone(),
        source,
    })?;
    Err(PersistError::Corrupt {
        path,
        reason,
        kept_as,
    })
}

/// Parses the bytes of a `registry.json` the way [`load`] does, or says why it is not one
/// (the fuzz target's entry).
pub fn parse(bytes: &[u8]) -> Result<Vec<SavedEntry>, String> {
    match serde_json::from_slice::<SavedRegistry>(bytes) {
        Ok(saved) if saved.format == FORMAT => Ok(saved.entries),
        Ok(saved) => Err(format!("unknown format {}", saved.format)),
        Err(e) => Err(e.to_string()),
    }
}

/// Saves `entries`, atomically.
pub fn save(state_dir: &Path, entries: Vec<SavedEntry>) -> Result<(), PersistError> {
    let path = state_dir.join(REGISTRY_FILE);
    let saved = SavedRegistry {
        format: FORMAT,
        saved_at_ms: unix_ms(),
        entries,
    };
    let bytes = serde_json::to_vec_pretty(&saved).map_err(|e| PersistError::Write {
        path: path.clone(),
        source: io::Error::other(e),
    })?;
    write_atomic(&path, &bytes, 0o644).map_err(|source| PersistError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use superpeer_common::NodeId;
    use superpeer_common::wire::Load;

    use super::*;

    fn entry(n: u8) -> SavedEntry {
        SavedEntry {
            node_id: NodeId::from_bytes([n; 32]),
            addr: format!("127.0.0.{n}:4000").parse().unwrap(),
            load: Load {
                leaves: u32::from(n),
                capacity: 500,
                neighbors: 1,
            },
        }
    }

    #[test]
    fn saves_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty(), "no file yet: empty");
        save(dir.path(), vec![entry(2), entry(3)]).unwrap();
        assert_eq!(load(dir.path()).unwrap(), vec![entry(2), entry(3)]);
    }

    #[test]
    fn corrupt_file_is_kept_aside_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REGISTRY_FILE);
        std::fs::write(&path, b"{\"format\": 1, \"entries\": [garbage").unwrap();
        match load(dir.path()) {
            Err(PersistError::Corrupt { kept_as, .. }) => {
                assert_eq!(
                    std::fs::read(&kept_as).unwrap(),
                    b"{\"format\": 1, \"entries\": [garbage"
                );
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(!path.exists());
        // The next start is a clean first start.
        assert!(load(dir.path()).unwrap().is_empty());
    }
}
