//! The cached supernode list (`STATE_DIR/supernodes.json`): what lets a leaf that joined
//! before join again while every list server is down.
//!
//! - Saving: the core asks for it now and then ([`LeafAction::SaveCache`]); a [`Writer`]
//!   task writes it atomically on a blocking thread, never on the driver's event loop, one
//!   write at a time, and only the newest list when several wait.
//! - Loading: a file larger than [`MAX_CACHE_BYTES`], not a regular file, or not the JSON we
//!   write is set aside (kept as `supernodes.json.corrupt-TIME`) with a warning, and the leaf
//!   goes on without it; at most [`MAX_CACHED`] entries are taken from it.
//!
//! [`LeafAction::SaveCache`]: crate::leaf::LeafAction::SaveCache

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use superpeer_common::wire::SupernodeInfo;
use superpeer_common::write_atomic;
use tokio::sync::watch;
use tracing::warn;

/// File name of the cache inside the state dir.
pub const CACHE_FILE: &str = "supernodes.json";

/// Most supernodes kept in the cache, and taken from it.
pub const MAX_CACHED: usize = 200;

/// Largest cache file read: [`MAX_CACHED`] entries as we write them take about 50 KB, so
/// anything much larger was not written by us and is not parsed.
pub const MAX_CACHE_BYTES: u64 = 256 * 1024;

#[derive(Serialize, Deserialize)]
struct Cached {
    saved_at_ms: u64,
    supernodes: Vec<SupernodeInfo>,
}

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(CACHE_FILE)
}

/// The cached supernodes (marked stale), or none.
pub fn load(state_dir: &Path) -> Vec<SupernodeInfo> {
    let path = path(state_dir);
    match read(&path) {
        Ok(cached) => cached
            .into_iter()
            .take(MAX_CACHED)
            .map(|s| SupernodeInfo { stale: true, ..s })
            .collect(),
        Err(Unusable::Missing) => Vec::new(),
        Err(Unusable::Bad(why)) => {
            let kept = state_dir.join(format!(
                "{CACHE_FILE}.corrupt-{}",
                superpeer_bootstrap_list::unix_ms()
            ));
            let _ = std::fs::rename(&path, &kept);
            warn!(
                "{} is not a supernode cache ({why}); kept it as {} and went on without it",
                path.display(),
                kept.display()
            );
            Vec::new()
        }
    }
}

enum Unusable {
    /// No cache yet (or it cannot be opened: nothing to set aside either).
    Missing,
    /// There, but not ours to believe.
    Bad(String),
}

/// Reads the cache file within [`MAX_CACHE_BYTES`].
fn read(path: &Path) -> Result<Vec<SupernodeInfo>, Unusable> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Err(Unusable::Missing);
    };
    // A FIFO or a device would block the read or never end.
    if !meta.is_file() {
        return Err(Unusable::Bad("not a regular file".into()));
    }
    let too_large = || Unusable::Bad(format!("larger than {MAX_CACHE_BYTES} bytes"));
    if meta.len() > MAX_CACHE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    let file = std::fs::File::open(path).map_err(|_| Unusable::Missing)?;
    // It may have grown since the check.
    file.take(MAX_CACHE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Unusable::Bad(e.to_string()))?;
    if bytes.len() as u64 > MAX_CACHE_BYTES {
        return Err(too_large());
    }
    parse(&bytes).map_err(Unusable::Bad)
}

/// Parses the bytes of a `supernodes.json` the way [`load`] does (the fuzz target's entry).
pub fn parse(bytes: &[u8]) -> Result<Vec<SupernodeInfo>, String> {
    serde_json::from_slice::<Cached>(bytes)
        .map(|cached| cached.supernodes)
        .map_err(|e| e.to_string())
}

/// Saves `supernodes` (best first) as the cache, atomically. Blocks: call it off the event
/// loop (the [`Writer`] does).
pub fn save(state_dir: &Path, supernodes: &[SupernodeInfo]) {
    let cached = Cached {
        saved_at_ms: superpeer_bootstrap_list::unix_ms(),
        supernodes: supernodes.iter().take(MAX_CACHED).copied().collect(),
    };
    let result = serde_json::to_vec_pretty(&cached)
        .map_err(std::io::Error::other)
        .and_then(|bytes| write_atomic(&path(state_dir), &bytes, 0o644));
    if let Err(e) = result {
        warn!("cannot save the supernode cache: {e}");
    }
}

/// Writes the cache from a task of its own: [`Writer::save`] never blocks, saves never
/// overlap (an older list cannot land after a newer one), and a list superseded while the
/// previous write ran is skipped.
pub struct Writer {
    latest: watch::Sender<Option<Vec<SupernodeInfo>>>,
}

impl Writer {
    /// Starts the writer for `state_dir`'s cache; it ends once the writer is dropped and
    /// the last list asked for is written.
    pub fn start(state_dir: PathBuf) -> Self {
        let (latest, mut next) = watch::channel(None::<Vec<SupernodeInfo>>);
        tokio::spawn(async move {
            while next.changed().await.is_ok() {
                let Some(list) = next.borrow_and_update().clone() else {
                    continue;
                };
                let dir = state_dir.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || save(&dir, &list)).await {
                    warn!("the supernode cache writer failed: {e}");
                }
            }
        });
        Self { latest }
    }

    /// Asks for `supernodes` to be written; returns at once.
    pub fn save(&self, supernodes: Vec<SupernodeInfo>) {
        self.latest.send_replace(Some(supernodes));
    }
}

#[cfg(test)]
mod tests {
    use superpeer_common::NodeId;
    use superpeer_common::wire::Load;

    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_empty());
        let info = SupernodeInfo {
            node_id: NodeId::from_bytes([3; 32]),
            addr: "127.0.0.3:4000".parse().unwrap(),
            load: Load {
                leaves: 1,
                capacity: 5,
                neighbors: 0,
            },
            stale: false,
        };
        save(dir.path(), &[info]);
        assert_eq!(
            load(dir.path()),
            vec![SupernodeInfo {
                stale: true,
                ..info
            }]
        );
        std::fs::write(dir.path().join(CACHE_FILE), b"nonsense").unwrap();
        assert!(load(dir.path()).is_empty());
        let kept = std::fs::read_dir(dir.path()).unwrap().filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".corrupt-")
        });
        assert_eq!(kept.count(), 1);
    }

    fn info(n: u16) -> SupernodeInfo {
        let mut id = [9u8; 32];
        id[..2].copy_from_slice(&n.to_be_bytes());
        SupernodeInfo {
            node_id: NodeId::from_bytes(id),
            addr: std::net::SocketAddr::from(([127, 0, 43, 1], n.max(1))),
            load: Load {
                leaves: 1,
                capacity: 500,
                neighbors: 0,
            },
            stale: false,
        }
    }

    fn set_aside(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".corrupt-")
            })
            .count()
    }

    #[test]
    fn a_full_cache_of_our_own_fits_the_byte_cap() {
        let dir = tempfile::tempdir().unwrap();
        let full: Vec<_> = (0..MAX_CACHED as u16).map(info).collect();
        save(dir.path(), &full);
        let len = std::fs::metadata(dir.path().join(CACHE_FILE))
            .unwrap()
            .len();
        assert!(len * 2 < MAX_CACHE_BYTES, "{len} bytes");
        assert_eq!(load(dir.path()).len(), MAX_CACHED);
    }

    #[test]
    fn an_oversized_cache_is_set_aside_unparsed() {
        // Before: read whole and parsed whole (every entry allocated) before the first 200
        // were taken. 50,000 valid entries: about 12 MB.
        let dir = tempfile::tempdir().unwrap();
        let huge = Cached {
            saved_at_ms: 1,
            supernodes: (0..50_000u32).map(|n| info(n as u16)).collect(),
        };
        std::fs::write(
            dir.path().join(CACHE_FILE),
            serde_json::to_vec_pretty(&huge).unwrap(),
        )
        .unwrap();
        assert!(load(dir.path()).is_empty());
        assert_eq!(set_aside(dir.path()), 1);
        assert!(!dir.path().join(CACHE_FILE).exists());
    }

    #[test]
    fn entries_past_the_cap_are_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let many = Cached {
            saved_at_ms: 1,
            supernodes: (0..400u16).map(info).collect(),
        };
        std::fs::write(
            dir.path().join(CACHE_FILE),
            serde_json::to_vec(&many).unwrap(),
        )
        .unwrap();
        assert_eq!(load(dir.path()).len(), MAX_CACHED);
    }

    #[cfg(unix)]
    #[test]
    fn a_cache_that_is_not_a_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(CACHE_FILE)).unwrap();
        assert!(load(dir.path()).is_empty());
        assert_eq!(set_aside(dir.path()), 1);
    }

    #[tokio::test]
    async fn the_writer_writes_the_newest_list_off_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Writer::start(dir.path().to_owned());
        for n in 1..=20u16 {
            writer.save((0..n).map(info).collect());
        }
        drop(writer);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while load(dir.path()).len() != 20 {
            assert!(
                std::time::Instant::now() < deadline,
                "the newest list never landed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
