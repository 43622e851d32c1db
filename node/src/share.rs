//! The shared folder: walking it and hashing what it holds into file entries.
//!
//! Files are hashed in streaming fashion (constant memory). A file that cannot be read is
//! skipped with a warning; the folder itself missing is an error.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use superpeer_common::ContentId;
use superpeer_common::wire::{FileEntry, MAX_NAME_BYTES};
use tracing::warn;

/// One shared file: where it is and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedFile {
    /// Its path on disk.
    pub path: PathBuf,
    /// What is published for it.
    pub entry: FileEntry,
}

/// Every regular file under `dir`, recursively (symbolic links are not followed).
pub fn walk(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
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
                warn!(folder = %folder.display(), "skipping unreadable folder: {e}");
                continue;
            }
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The entry for the file at `path`, hashing it. `None` (with a warning) when it cannot be
/// read or its name cannot be published.
pub fn hash_file(path: &Path) -> Option<SharedFile> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        warn!(file = %path.display(), "skipping: the name is longer than {MAX_NAME_BYTES} bytes");
        return None;
    }
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

/// Every shareable file under `dir`, hashed.
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
