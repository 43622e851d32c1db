//! Outboards kept on disk for every shared file, so that a request never makes the holder
//! hash a whole file.
//!
//! A `Have` for a file whose outboard was not in memory used to hash the whole file while
//! holding an upload slot; the memory cache keeps 32, so a downloader cycling over more
//! shared ids (new identities dodge the per-peer session cap) kept every upload slot
//! hashing. Now the outboard is computed when the file is hashed for sharing (the same
//! read: its root is the content id) and saved here, under the state dir, as
//! `outboards/<content id>.obao`: the post-order hash pairs, 1/256 of the file. Serving
//! loads it (a small read), never the file. It is computed again only when the file
//! changes (a new content id) or the saved one is missing or unreadable.
//!
//! Trust: the file name is the content id, the length must be the tree's for the file's
//! size, and every block served is checked against the outboard as it is read, so a
//! damaged outboard answers `NotFound`, never bad data. Files are written atomically.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bao_tree::BaoTree;
use superpeer_common::ContentId;

use super::outboard::Outboard;
use super::span::BLOCK_SIZE;

/// The store's folder in the state dir.
pub const STORE_DIR: &str = "outboards";

const EXTENSION: &str = "obao";

/// The outboards of the shared files, on disk. Cheap to clone.
#[derive(Clone, Debug)]
pub struct OutboardStore {
    dir: PathBuf,
}

impl OutboardStore {
    /// The store of the node whose state dir is `state_dir` (created when first written).
    pub fn in_state_dir(state_dir: &Path) -> OutboardStore {
        OutboardStore {
            dir: state_dir.join(STORE_DIR),
        }
    }

    fn path(&self, id: &ContentId) -> PathBuf {
        self.dir.join(format!("{id}.{EXTENSION}"))
    }

    /// Whether the outboard of `id`, a `size`-byte file, is at hand (a saved one may still
    /// fail to load). A file of one block has an empty outboard: nothing is saved for it.
    pub fn has(&self, id: &ContentId, size: u64) -> bool {
        BaoTree::new(size, BLOCK_SIZE).outboard_size() == 0 || self.path(id).is_file()
    }

    /// The saved outboard of `id` for a `size`-byte file; `None` when missing, unreadable
    /// or of the wrong length. Reads about `size / 256` bytes; blocks.
    pub fn load(&self, id: &ContentId, size: u64) -> Option<Outboard> {
        let expected = BaoTree::new(size, BLOCK_SIZE).outboard_size();
        if expected == 0 {
            return Outboard::from_saved(*id, size, Vec::new());
        }
        let path = self.path(id);
        let meta = fs::symlink_metadata(&path).ok()?;
        if !meta.is_file() || meta.len() != expected {
            return None;
        }
        let data = fs::read(&path).ok()?;
        Outboard::from_saved(*id, size, data)
    }

    /// Saves `outboard` (creating the folder), through a temporary file and a rename, so a
    /// reader never sees half of one. Not synced: an outboard is recomputed from the file
    /// whenever the saved one is missing or of the wrong length, which is all a crash can
    /// leave (a sync per file made sharing 1,000 small files take 0.4 s longer). An empty
    /// outboard (a file of one block) is not saved at all. Blocks.
    pub fn save(&self, outboard: &Outboard) -> io::Result<()> {
        if outboard.data().is_empty() {
            return Ok(());
        }
        fs::create_dir_all(&self.dir)?;
        let path = self.path(&outboard.root());
        let temporary = path.with_extension("obao.tmp");
        fs::write(&temporary, outboard.data())?;
        fs::rename(&temporary, &path)
    }

    /// Removes the outboards of contents not in `shared` (files deleted or changed), so the
    /// store follows the shared folder. Blocks; errors only leave files behind.
    pub fn retain(&self, shared: &HashSet<ContentId>) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            // A save a crash cut short.
            if name.to_str().is_some_and(|n| n.ends_with(".obao.tmp")) {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".obao")) else {
                continue;
            };
            let keep = stem
                .parse::<ContentId>()
                .is_ok_and(|id| shared.contains(&id));
            if !keep {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_outboards_load_back_and_follow_the_share() {
        let state = tempfile::tempdir().unwrap();
        let store = OutboardStore::in_state_dir(state.path());
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let outboard = Outboard::of_bytes(&data);
        let id = outboard.root();
        assert!(store.load(&id, data.len() as u64).is_none());
        store.save(&outboard).unwrap();
        let loaded = store.load(&id, data.len() as u64).unwrap();
        assert_eq!(loaded.root(), id);
        assert_eq!(loaded.data(), outboard.data());
        // Another size is another tree: refused.
        assert!(store.load(&id, data.len() as u64 + 64 * 1024).is_none());
        store.retain(&HashSet::from([id]));
        assert!(store.has(&id, data.len() as u64));
        store.retain(&HashSet::new());
        assert!(!store.has(&id, data.len() as u64));
        // A file of one block needs no saved outboard.
        let small = Outboard::of_bytes(b"small");
        store.save(&small).unwrap();
        assert!(store.has(&small.root(), 5));
        assert_eq!(store.load(&small.root(), 5).unwrap().root(), small.root());
        assert!(!store.dir.join(format!("{}.obao", small.root())).exists());
    }
}
