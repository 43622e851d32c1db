//! The shared folder: which files a node offers, under which content ids, and how that set
//! follows the disk.
//!
//! A leaf publishes one entry per content id (BLAKE3 of the bytes, name, size) and later
//! only the changes, so this module has three jobs: find the shareable files, hash them
//! without re-hashing what has not changed since the last run, and notice changes quickly.
//!
//! What is shared: every regular file under the folder, recursively. Symbolic links are not
//! followed (a link could point anywhere, including out of the folder). Hidden entries (a
//! name starting with `.`) are skipped with everything under them: that is where secrets
//! (`.ssh`, `.env`), version-control data and the temporary names of half-written files
//! live, and a user sharing a folder means its visible content. The node's state dir is
//! never shared, because it holds the node's private key.
//!
//! Layout:
//! - `mod.rs`: walking the folder, and the cache-less [`scan`] (one pass, no state).
//! - `cache`: [`HashCache`], content ids remembered by (path, size, mtime) across runs.
//! - `folder`: [`SharedFolder`], the folder's current state, kept up to date by rescans.
//! - `delta`: what is published (one entry per content id) and the [`ShareDelta`] that
//!   [`SharedFolder::rescan`] returns.
//! - `progress`: the terminal progress bar while a large folder is hashed, and the
//!   [`Hashing`] counters status reads meanwhile.
//! - `watch`: [`watch()`], a debounced "something changed" signal from the file system.
//! - `changes`: [`FolderChanges`], that signal (or a timer where watching fails) without a
//!   task of its own, and [`open_watched`], which watches before the first scan so that no
//!   change is missed.

// The roles use this API piece by piece as they are built (the leaf first, then downloads
// serving files by content id); what they do not use yet is still tested here.
#[allow(dead_code, reason = "not every item is used by the roles yet")]
mod cache;
#[allow(dead_code, reason = "not every item is used by the roles yet")]
mod changes;
#[allow(dead_code, reason = "not every item is used by the roles yet")]
mod delta;
#[allow(dead_code, reason = "not every item is used by the roles yet")]
mod folder;
#[allow(dead_code, reason = "not every item is used by the roles yet")]
mod progress;
#[allow(dead_code, reason = "not every item is used by the roles yet")]
mod watch;

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use superpeer_common::ContentId;
use superpeer_common::wire::{FileEntry, MAX_NAME_BYTES};
use tracing::warn;

#[allow(unused_imports, reason = "not every item is used by the roles yet")]
pub use cache::{HashCache, parse_count as parse_hash_cache};
#[allow(unused_imports, reason = "not every item is used by the roles yet")]
pub use changes::{FolderChanges, POLL_INTERVAL, open_watched};
#[allow(unused_imports, reason = "not every item is used by the roles yet")]
pub use delta::ShareDelta;
#[allow(unused_imports, reason = "not every item is used by the roles yet")]
pub use folder::SharedFolder;
pub use progress::{Hashing, HashingNow};
#[allow(unused_imports, reason = "not every item is used by the roles yet")]
pub use watch::watch;

/// One shared file: where it is and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedFile {
    /// Its path on disk.
    pub path: PathBuf,
    /// What is published for it.
    pub entry: FileEntry,
}

/// Every regular file under `dir`, recursively, sorted (symbolic links are not followed,
/// hidden entries are skipped). An unreadable sub-folder is skipped with a warning; `dir`
/// itself missing or not a folder is an error.
pub fn walk(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    walk_skipping(dir, None, |folder, e| {
        warn!(folder = %folder.display(), "skipping unreadable folder: {e}");
    })
}

/// [`walk`], leaving out `skip` (a folder inside `dir`) and reporting unreadable folders to
/// `on_unreadable` instead of logging them.
pub(crate) fn walk_skipping(
    dir: &Path,
    skip: Option<&Path>,
    mut on_unreadable: impl FnMut(&Path, io::Error),
) -> anyhow::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot share {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("cannot share {}: not a folder", dir.display());
    }
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) => {
                on_unreadable(&folder, e);
                continue;
            }
        };
        for entry in entries.flatten() {
            if entry.file_name().as_encoded_bytes().starts_with(b".") {
                continue;
            }
            // `DirEntry::file_type` does not follow symbolic links: a link is neither.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                if skip != Some(path.as_path()) {
                    pending.push(path);
                }
            } else if kind.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The name published for the file at `path`, or why it cannot be published. Names that
/// are not UTF-8 are shown with replacement characters, which may push them over the limit.
pub(crate) fn publishable_name(path: &Path) -> Result<String, String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "the name is {} bytes, more than the {MAX_NAME_BYTES} a published name may have",
            name.len()
        ));
    }
    Ok(name)
}

/// The entry for the file at `path`, hashing it. `None` (with a warning) when it cannot be
/// read or its name cannot be published.
pub fn hash_file(path: &Path) -> Option<SharedFile> {
    let name = match publishable_name(path) {
        Ok(name) => name,
        Err(why) => {
            warn!(file = %path.display(), "skipping: {why}");
            return None;
        }
    };
    let size = std::fs::metadata(path).ok()?.len();
    match ContentId::of_file(path) {
        Ok(content_id) => Some(SharedFile {
            path: path.to_path_buf(),
            entry: FileEntry {
                content_id,
                name,
                size,
            },
        }),
        Err(e) => {
            warn!(file = %path.display(), "skipping unreadable file: {e}");
            None
        }
    }
}

/// Every shareable file under `dir`, hashed, with no cache and no state: for a one-off
/// listing. A long-running node uses [`SharedFolder`] instead.
pub fn scan(dir: &Path) -> anyhow::Result<Vec<SharedFile>> {
    Ok(walk(dir)?.iter().filter_map(|p| hash_file(p)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_recursively_and_hashes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("top.txt"), b"top").unwrap();
        std::fs::write(dir.path().join("a/b/deep song.mp3"), b"deep").unwrap();
        let shared = scan(dir.path()).unwrap();
        assert_eq!(shared.len(), 2);
        let deep = shared
            .iter()
            .find(|s| s.entry.name == "deep song.mp3")
            .unwrap();
        assert_eq!(deep.entry.content_id, ContentId::of_bytes(b"deep"));
        assert_eq!(deep.entry.size, 4);
    }

    #[test]
    fn a_missing_folder_is_a_clear_error() {
        let err = scan(Path::new("/nonexistent/superpeer-share")).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot share /nonexistent/superpeer-share")
        );
    }

    #[test]
    fn a_file_is_not_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain.txt");
        std::fs::write(&file, b"x").unwrap();
        let err = walk(&file).unwrap_err();
        assert!(err.to_string().contains("not a folder"), "{err}");
    }

    #[test]
    fn hidden_entries_are_not_shared() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".ssh")).unwrap();
        std::fs::write(dir.path().join(".ssh/id_ed25519"), b"secret").unwrap();
        std::fs::write(dir.path().join(".env"), b"TOKEN=1").unwrap();
        std::fs::write(dir.path().join("song.mp3"), b"la").unwrap();
        let files = walk(dir.path()).unwrap();
        assert_eq!(files, vec![dir.path().join("song.mp3")]);
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_are_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("private.txt"), b"p").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link-dir")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("private.txt"),
            dir.path().join("link.txt"),
        )
        .unwrap();
        assert!(walk(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_skipped_folder_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        std::fs::write(dir.path().join("state/identity.key"), b"k").unwrap();
        std::fs::write(dir.path().join("a.txt"), b"a").unwrap();
        let skip = dir.path().join("state");
        let files = walk_skipping(dir.path(), Some(&skip), |_, _| {}).unwrap();
        assert_eq!(files, vec![dir.path().join("a.txt")]);
    }

    #[cfg(unix)]
    #[test]
    fn unreadable_files_are_skipped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret.txt");
        std::fs::write(&secret, b"x").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
        std::fs::write(dir.path().join("open.txt"), b"y").unwrap();
        let shared = scan(dir.path()).unwrap();
        // Root reads anything; elsewhere the unreadable file is skipped.
        assert!(shared.iter().any(|s| s.entry.name == "open.txt"));
        if std::fs::read(&secret).is_err() {
            assert_eq!(shared.len(), 1);
        }
    }
}
