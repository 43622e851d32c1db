//! The cached supernode list (`STATE_DIR/supernodes.json`): what lets a leaf that joined
//! before join again while every list server is down. Written atomically whenever a fresher
//! list arrives; a corrupt file is kept aside and the leaf goes on without it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use superpeer_common::wire::SupernodeInfo;
use superpeer_common::write_atomic;
use tracing::warn;

/// File name of the cache inside the state dir.
pub const CACHE_FILE: &str = "supernodes.json";

/// Most supernodes kept in the cache.
const MAX_CACHED: usize = 200;

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
    let Ok(bytes) = std::fs::read(&path) else {
        return Vec::new();
    };
    match serde_json::from_slice::<Cached>(&bytes) {
        Ok(cached) => cached
            .supernodes
            .into_iter()
            .take(MAX_CACHED)
            .map(|s| SupernodeInfo { stale: true, ..s })
            .collect(),
        Err(e) => {
            let kept = state_dir.join(format!(
                "{CACHE_FILE}.corrupt-{}",
                superpeer_bootstrap_list::unix_ms()
            ));
            let _ = std::fs::rename(&path, &kept);
            warn!(
                "{} is corrupt ({e}); kept it as {} and went on without it",
                path.display(),
                kept.display()
            );
            Vec::new()
        }
    }
}

/// Saves `supernodes` (best first) as the cache.
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
}
