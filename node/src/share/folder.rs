//! [`SharedFolder`]: the shared folder's current state, kept in step with the disk by
//! rescans that hash only what changed.
//!
//! A scan walks the folder, takes each file's content id from the [`HashCache`] when its
//! path, size and mtime match, and hashes the rest (streaming, constant memory), then saves
//! the cache. A file is published only if it stayed the same while it was read: a file
//! still being written is left for the scan its next change event triggers, so a half
//! copied file is never advertised under a hash of half its bytes.
//!
//! Racy files: a file system stores mtimes with some granularity (2 s on FAT), so a file
//! rewritten with the same size right after it was hashed can keep the same mtime. A file
//! modified less than [`SETTLE`] before it was hashed is therefore published but not cached;
//! it is hashed again by the next scan, and cached once it has been left alone long enough
//! (git handles its "racily clean" index entries the same way).
//!
//! Skipped files (unreadable, name too long) are warned about once, not on every rescan.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use superpeer_common::ContentId;
use superpeer_common::wire::FileEntry;
use tracing::{debug, info, warn};

use crate::transfer::OutboardStore;
use crate::transfer::verified::Outboard;

use super::cache::{HashCache, mtime_ns, system_time_ns};
use super::delta::{Published, ShareDelta};
use super::progress::{HashProgress, Hashing};
use super::{SharedFile, publishable_name, walk_skipping};

/// How long after its last modification a file's hash may be cached (see the module docs).
pub const SETTLE: Duration = Duration::from_secs(3);

/// The shared folder: which files are shared and under which content ids.
///
/// Blocking (it reads files): async code calls [`SharedFolder::open`] and
/// [`SharedFolder::rescan`] inside `spawn_blocking`.
#[derive(Debug)]
pub struct SharedFolder {
    /// The folder, canonical, so cache keys do not depend on the working directory.
    dir: PathBuf,
    state_dir: PathBuf,
    cache: HashCache,
    /// Every shared file's outboard, computed with its content id (see `transfer`).
    outboards: OutboardStore,
    progress: bool,
    /// What the scan under way hashes, for status (see [`SharedFolder::hashing`]).
    hashing: Arc<Hashing>,
    published: Published,
    last_scan: ScanCounts,
    /// Paths the last scan skipped, to warn about each only once.
    skipped: HashSet<PathBuf>,
}

/// What the last scan did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanCounts {
    /// Files shared (before merging copies of the same content).
    pub files: usize,
    /// Files whose content id came from the cache.
    pub from_cache: usize,
    /// Files the cache did not know, so they had to be read (including any found unreadable).
    pub hashed: usize,
}

impl SharedFolder {
    /// Scans `dir` (recursively), hashing what the cache in `state_dir` does not know, and
    /// saves the cache. With `progress`, a bar is shown on a terminal while a large amount
    /// is hashed. A missing `dir`, one that is not a folder, or one that is the state dir
    /// itself (it holds the node's private key) is an error; unreadable files are skipped.
    pub fn open(dir: &Path, state_dir: &Path, progress: bool) -> anyhow::Result<SharedFolder> {
        let canonical = std::fs::canonicalize(dir)
            .with_context(|| format!("cannot share {}", dir.display()))?;
        if !canonical.is_dir() {
            bail!("cannot share {}: not a folder", dir.display());
        }
        if std::fs::canonicalize(state_dir).is_ok_and(|s| s == canonical) {
            bail!(
                "cannot share {}: it is the state dir, which holds the node's private key",
                dir.display()
            );
        }
        let mut folder = SharedFolder {
            dir: canonical,
            state_dir: state_dir.to_path_buf(),
            cache: HashCache::load(state_dir),
            outboards: OutboardStore::in_state_dir(state_dir),
            progress,
            hashing: Arc::new(Hashing::default()),
            published: Published::default(),
            last_scan: ScanCounts::default(),
            skipped: HashSet::new(),
        };
        folder.published = folder.scan()?;
        let counts = folder.last_scan;
        info!(
            dir = %folder.dir.display(),
            files = counts.files,
            entries = folder.published.len(),
            hashed = counts.hashed,
            from_cache = counts.from_cache,
            "shared folder scanned"
        );
        Ok(folder)
    }

    /// Walks the folder again and returns what to publish. Files whose size or mtime
    /// changed are hashed again; the cache is saved. An error (the folder is gone) leaves
    /// the state as it was.
    pub fn rescan(&mut self) -> anyhow::Result<ShareDelta> {
        let published = self.scan()?;
        let delta = ShareDelta::between(&self.published, &published);
        self.published = published;
        if !delta.is_empty() {
            debug!(
                dir = %self.dir.display(),
                added = delta.added.len(),
                removed = delta.removed.len(),
                hashed = self.last_scan.hashed,
                "shared folder changed"
            );
        }
        Ok(delta)
    }

    /// Hashing progress, readable from any thread while a scan holds the folder.
    pub fn hashing(&self) -> Arc<Hashing> {
        self.hashing.clone()
    }

    /// The shared folder (canonical path).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything to publish: one entry per content id.
    pub fn entries(&self) -> Vec<FileEntry> {
        self.published.entries()
    }

    /// How many entries are published (copies of the same content count once).
    pub fn len(&self) -> usize {
        self.published.len()
    }

    /// Whether nothing is shared.
    pub fn is_empty(&self) -> bool {
        self.published.len() == 0
    }

    /// What the last scan did.
    pub fn last_scan(&self) -> ScanCounts {
        self.last_scan
    }

    /// A file holding `id`, as of the last scan (the first by path). The file may have
    /// changed since: whoever serves it must still check what it reads.
    pub fn path_of(&self, id: &ContentId) -> Option<PathBuf> {
        self.published.path_of(id).map(Path::to_path_buf)
    }

    /// Every shared content id with the file that serves it, as of the last scan.
    pub fn paths(&self) -> HashMap<ContentId, PathBuf> {
        self.published.paths()
    }

    fn scan(&mut self) -> anyhow::Result<Published> {
        let mut skips = Skips::after(std::mem::take(&mut self.skipped));
        // Checked on every scan: the state dir may be created after the folder is opened.
        let state_dir = std::fs::canonicalize(&self.state_dir).ok();
        let walked = walk_skipping(&self.dir, state_dir.as_deref(), |folder, e| {
            skips.note(folder, &format!("skipping unreadable folder: {e}"));
        });
        let paths = match walked {
            Ok(paths) => paths,
            Err(e) => {
                self.skipped = skips.before;
                return Err(e);
            }
        };

        let mut files = Vec::with_capacity(paths.len());
        let mut pending = Vec::new();
        for path in &paths {
            let name = match publishable_name(path) {
                Ok(name) => name,
                Err(why) => {
                    skips.note(path, &format!("skipping: {why}"));
                    continue;
                }
            };
            let meta = match std::fs::metadata(path) {
                Ok(meta) => meta,
                Err(e) => {
                    skips.note(path, &format!("skipping unreadable file: {e}"));
                    continue;
                }
            };
            let size = meta.len();
            // A file whose outboard is not saved is read again (once): serving it must
            // never need a whole-file hash.
            let cached = mtime_ns(&meta)
                .and_then(|mtime| self.cache.get(path, size, mtime))
                .filter(|id| self.outboards.has(id, size));
            match cached {
                Some(content_id) => files.push(SharedFile {
                    path: path.clone(),
                    entry: FileEntry {
                        content_id,
                        name,
                        size,
                    },
                }),
                None => pending.push(Pending {
                    path: path.clone(),
                    name,
                    size,
                }),
            }
        }

        let from_cache = files.len();
        let total = pending
            .iter()
            .fold(0u64, |sum, p| sum.saturating_add(p.size));
        let bar = HashProgress::start(self.progress, pending.len(), total, self.hashing.clone());
        let hashed = pending.len();
        for p in pending {
            let store = &self.outboards;
            let file = hash_pending(p, &mut self.cache, store, &bar, &mut skips);
            bar.file_done();
            files.extend(file);
        }
        drop(bar);

        self.cache.retain_paths(&paths.into_iter().collect());
        self.outboards
            .retain(&files.iter().map(|f| f.entry.content_id).collect());
        if let Err(e) = self.cache.save() {
            warn!(state_dir = %self.state_dir.display(), "cannot save the hash cache: {e}");
        }
        self.skipped = skips.now;
        self.last_scan = ScanCounts {
            files: files.len(),
            from_cache,
            hashed,
        };
        Ok(Published::from_files(files))
    }
}

/// A file the cache could not answer for.
struct Pending {
    path: PathBuf,
    name: String,
    size: u64,
}

/// Hashes one file; `None` if it cannot be read or changed while it was read.
fn hash_pending(
    p: Pending,
    cache: &mut HashCache,
    outboards: &OutboardStore,
    bar: &HashProgress,
    skips: &mut Skips,
) -> Option<SharedFile> {
    let file = match File::open(&p.path) {
        Ok(file) => file,
        Err(e) => return skips.unreadable(&p.path, e),
    };
    let before = match file.metadata() {
        Ok(meta) => meta,
        Err(e) => return skips.unreadable(&p.path, e),
    };
    let size = before.len();
    let mut read = 0u64;
    // One read gives the content id and the outboard (its root is the id).
    let counting = Counting {
        inner: &file,
        count: |n| {
            read = read.saturating_add(n);
            bar.inc(n);
        },
    };
    let outboard = match Outboard::of_reader(counting, size) {
        Ok(outboard) => outboard,
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            debug!(file = %p.path.display(), "changed while being hashed; left for the next scan");
            return None;
        }
        Err(e) => return skips.unreadable(&p.path, e),
    };
    let content_id = outboard.root();
    let mtime = mtime_ns(&before);
    let after = file.metadata().ok();
    let steady = read == size && after.is_some_and(|a| a.len() == size && mtime_ns(&a) == mtime);
    if !steady {
        debug!(file = %p.path.display(), "changed while being hashed; left for the next scan");
        return None;
    }
    // Cached only with its outboard saved: the cache then vouches for both.
    let saved = outboards.save(&outboard);
    if let Err(e) = &saved {
        debug!(file = %p.path.display(), "cannot save its outboard: {e}");
    }
    if let Some(mtime) = mtime.filter(|&m| saved.is_ok() && settled(m, SystemTime::now())) {
        cache.insert(p.path.clone(), size, mtime, content_id);
    }
    Some(SharedFile {
        path: p.path,
        entry: FileEntry {
            content_id,
            name: p.name,
            size,
        },
    })
}

/// A reader that reports how many bytes it read (the progress bar).
struct Counting<R, F> {
    inner: R,
    count: F,
}

impl<R: io::Read, F: FnMut(u64)> io::Read for Counting<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.count)(n as u64);
        Ok(n)
    }
}

/// Whether a file last modified at `mtime_ns` can no longer be modified again within the
/// same timestamp, as of `now`.
fn settled(mtime_ns: i64, now: SystemTime) -> bool {
    let settle = u64::try_from(SETTLE.as_nanos()).unwrap_or(u64::MAX);
    system_time_ns(now).is_some_and(|now| now.abs_diff(mtime_ns) >= settle)
}

/// Paths skipped by this scan; a warning for those the previous scan did not skip already.
struct Skips {
    before: HashSet<PathBuf>,
    now: HashSet<PathBuf>,
}

impl Skips {
    fn after(before: HashSet<PathBuf>) -> Skips {
        Skips {
            before,
            now: HashSet::new(),
        }
    }

    fn note(&mut self, path: &Path, why: &str) {
        if self.before.contains(path) {
            debug!(path = %path.display(), "{why}");
        } else {
            warn!(path = %path.display(), "{why}");
        }
        self.now.insert(path.to_path_buf());
    }

    /// Notes a file that cannot be read; `None` so a caller can return it directly.
    fn unreadable<T>(&mut self, path: &Path, e: io::Error) -> Option<T> {
        self.note(path, &format!("skipping unreadable file: {e}"));
        None
    }
}

#[cfg(test)]
#[path = "folder_tests.rs"]
mod tests;
