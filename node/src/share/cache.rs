//! The hash cache: content ids remembered across runs, so that restarting a node with a large
//! shared folder does not read every byte of it again.
//!
//! An entry is trusted only while the file's path, size and modification time (in
//! nanoseconds) are exactly what they were when it was hashed, the same test `make`, rsync
//! and git use. Its known limit: a program that rewrites a file with the same size and then
//! sets the old modification time back defeats it. The racy case, a second write within the
//! file system's timestamp granularity after the hash, is kept out by the caller (see
//! `folder.rs`), which does not cache files modified moments ago.
//!
//! The cache is only an optimisation, so it never stops a node: a missing file is an empty
//! cache, and a corrupt one is renamed aside (kept for a human to look at, never silently
//! destroyed) before starting empty. It is saved with [`write_atomic`], so a crash leaves the
//! old file or the new one, never half of one. Paths that are not UTF-8 cannot be written
//! as JSON strings; they are cached in memory only and re-hashed after a restart.

use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use superpeer_common::{ContentId, write_atomic};
use tracing::warn;

/// The cache's file name in the state dir.
pub const CACHE_FILE: &str = "hash-cache.json";

/// Version of the file format; another version is treated as unreadable.
const FORMAT_VERSION: u32 = 1;

/// Content ids by (path, size, mtime), loaded from and saved to the state dir.
#[derive(Debug)]
pub struct HashCache {
    file: PathBuf,
    entries: HashMap<PathBuf, Stamped>,
    /// Whether `entries` differs from the file. Atomic so that `save(&self)` can clear it
    /// while the cache stays `Sync` (a folder may be shared between threads behind a lock).
    dirty: AtomicBool,
}

/// What a file looked like when it was hashed, and its content id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamped {
    size: u64,
    mtime_ns: i64,
    content_id: ContentId,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    files: Vec<CacheRecord>,
}

#[derive(Serialize, Deserialize)]
struct CacheRecord {
    path: String,
    size: u64,
    mtime_ns: i64,
    content_id: ContentId,
}

impl HashCache {
    /// The cache saved in `state_dir`, or an empty one. Never fails: a corrupt file is
    /// renamed to `hash-cache.json.corrupt-<unix ms>` with a warning; any other read error is
    /// logged and the cache starts empty (the only cost is hashing again).
    pub fn load(state_dir: &Path) -> HashCache {
        let file = state_dir.join(CACHE_FILE);
        let mut cache = HashCache {
            file,
            entries: HashMap::new(),
            dirty: AtomicBool::new(false),
        };
        let bytes = match std::fs::read(&cache.file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return cache,
            Err(e) => {
                warn!(file = %cache.file.display(), "cannot read the hash cache, starting empty: {e}");
                return cache;
            }
        };
        match parse(&bytes) {
            Ok(entries) => cache.entries = entries,
            Err(why) => cache.set_aside(&why),
        }
        cache
    }

    /// Moves an unusable cache file out of the way so it is neither lost nor read again.
    fn set_aside(&self, why: &str) {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let mut aside = self.file.clone().into_os_string();
        aside.push(format!(".corrupt-{unix_ms}"));
        let aside = PathBuf::from(aside);
        match std::fs::rename(&self.file, &aside) {
            Ok(()) => warn!(
                file = %self.file.display(),
                kept_as = %aside.display(),
                "the hash cache is corrupt ({why}); kept it as {} and starting empty",
                aside.display()
            ),
            Err(e) => warn!(
                file = %self.file.display(),
                "the hash cache is corrupt ({why}) and cannot be moved aside ({e}); starting empty"
            ),
        }
    }

    /// The cached content id of `path`, if it was hashed at exactly this size and mtime.
    pub fn get(&self, path: &Path, size: u64, mtime_ns: i64) -> Option<ContentId> {
        self.entries
            .get(path)
            .filter(|s| s.size == size && s.mtime_ns == mtime_ns)
            .map(|s| s.content_id)
    }

    /// Remembers that `path`, at this size and mtime, holds `content_id` (replacing what was
    /// known about that path).
    pub fn insert(&mut self, path: PathBuf, size: u64, mtime_ns: i64, content_id: ContentId) {
        let stamped = Stamped {
            size,
            mtime_ns,
            content_id,
        };
        if self.entries.insert(path, stamped) != Some(stamped) {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Forgets every path not in `present` (files that were deleted or are no longer
    /// shared), so the cache does not grow forever.
    pub fn retain_paths(&mut self, present: &HashSet<PathBuf>) {
        let before = self.entries.len();
        self.entries.retain(|path, _| present.contains(path));
        if self.entries.len() != before {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// How many paths are cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the cache to the state dir (creating it), atomically, if it changed since it
    /// was loaded or last saved.
    pub fn save(&self) -> io::Result<()> {
        if !self.dirty.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut files: Vec<CacheRecord> = self
            .entries
            .iter()
            .filter_map(|(path, s)| {
                Some(CacheRecord {
                    path: path.to_str()?.to_owned(),
                    size: s.size,
                    mtime_ns: s.mtime_ns,
                    content_id: s.content_id,
                })
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let bytes = serde_json::to_vec(&CacheFile {
            version: FORMAT_VERSION,
            files,
        })
        .map_err(io::Error::other)?;
        if let Some(dir) = self.file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        write_atomic(&self.file, &bytes, 0o644)?;
        self.dirty.store(false, Ordering::Relaxed);
        Ok(())
    }
}

/// Parses the bytes of a `hash-cache.json` the way loading it does; the number of entries
/// (the fuzz target's entry).
pub fn parse_count(bytes: &[u8]) -> Result<usize, String> {
    parse(bytes).map(|files| files.len())
}

fn parse(bytes: &[u8]) -> Result<HashMap<PathBuf, Stamped>, String> {
    let file: CacheFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if file.version != FORMAT_VERSION {
        return Err(format!("format version {}", file.version));
    }
    Ok(file
        .files
        .into_iter()
        .map(|r| {
            let stamped = Stamped {
                size: r.size,
                mtime_ns: r.mtime_ns,
                content_id: r.content_id,
            };
            (PathBuf::from(r.path), stamped)
        })
        .collect())
}

/// A modification time in nanoseconds since the Unix epoch (negative before it); `None`
/// when the platform has none or it falls outside about 1678..2262.
pub fn mtime_ns(meta: &Metadata) -> Option<i64> {
    system_time_ns(meta.modified().ok()?)
}

/// `time` in nanoseconds since the Unix epoch, if it fits an `i64`.
pub fn system_time_ns(time: SystemTime) -> Option<i64> {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).ok(),
        Err(before) => i64::try_from(before.duration().as_nanos())
            .ok()
            .map(|ns| -ns),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(bytes: &[u8]) -> ContentId {
        ContentId::of_bytes(bytes)
    }

    #[test]
    fn round_trip_through_the_state_dir() {
        let state = tempfile::tempdir().unwrap();
        let mut cache = HashCache::load(state.path());
        assert!(cache.is_empty());
        cache.insert(
            PathBuf::from("/share/a.mp3"),
            3,
            1_700_000_000_123_456_789,
            id(b"a"),
        );
        cache.insert(PathBuf::from("/share/b c.txt"), 5, -42, id(b"b"));
        cache.save().unwrap();

        let loaded = HashCache::load(state.path());
        assert_eq!(loaded.len(), 2);
        assert_eq!(
            loaded.get(Path::new("/share/a.mp3"), 3, 1_700_000_000_123_456_789),
            Some(id(b"a"))
        );
        assert_eq!(
            loaded.get(Path::new("/share/b c.txt"), 5, -42),
            Some(id(b"b"))
        );
        // Human-readable: content ids as b3sum prints them.
        let text = std::fs::read_to_string(state.path().join(CACHE_FILE)).unwrap();
        assert!(text.contains(&id(b"a").to_string()), "{text}");
    }

    #[test]
    fn a_stale_size_or_mtime_misses() {
        let state = tempfile::tempdir().unwrap();
        let mut cache = HashCache::load(state.path());
        let path = PathBuf::from("/share/a.mp3");
        cache.insert(path.clone(), 3, 1000, id(b"a"));
        assert_eq!(cache.get(&path, 3, 1000), Some(id(b"a")));
        assert_eq!(cache.get(&path, 4, 1000), None);
        assert_eq!(cache.get(&path, 3, 1001), None);
        assert_eq!(cache.get(Path::new("/share/other"), 3, 1000), None);
        // A new stamp for the path replaces the old one.
        cache.insert(path.clone(), 4, 2000, id(b"abcd"));
        assert_eq!(cache.get(&path, 3, 1000), None);
        assert_eq!(cache.get(&path, 4, 2000), Some(id(b"abcd")));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_corrupt_file_is_kept_aside_and_the_cache_starts_empty() {
        let state = tempfile::tempdir().unwrap();
        let file = state.path().join(CACHE_FILE);
        std::fs::write(&file, b"{\"version\":1,\"files\":[{\"path\":").unwrap();
        let mut cache = HashCache::load(state.path());
        assert!(cache.is_empty());
        assert!(!file.exists(), "the corrupt file must not be read again");
        let aside: Vec<_> = std::fs::read_dir(state.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("hash-cache.json.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        let kept = std::fs::read(state.path().join(&aside[0])).unwrap();
        assert_eq!(kept, b"{\"version\":1,\"files\":[{\"path\":");
        // And the cache still works and saves over the old name.
        cache.insert(PathBuf::from("/x"), 1, 1, id(b"x"));
        cache.save().unwrap();
        assert_eq!(HashCache::load(state.path()).len(), 1);
    }

    #[test]
    fn another_format_version_is_set_aside() {
        let state = tempfile::tempdir().unwrap();
        std::fs::write(
            state.path().join(CACHE_FILE),
            br#"{"version":99,"files":[]}"#,
        )
        .unwrap();
        assert!(HashCache::load(state.path()).is_empty());
        assert!(!state.path().join(CACHE_FILE).exists());
    }

    #[test]
    fn saves_only_when_changed() {
        let state = tempfile::tempdir().unwrap();
        let file = state.path().join(CACHE_FILE);
        let mut cache = HashCache::load(state.path());
        cache.save().unwrap();
        assert!(!file.exists(), "nothing changed, nothing written");
        cache.insert(PathBuf::from("/a"), 1, 1, id(b"a"));
        cache.save().unwrap();
        std::fs::remove_file(&file).unwrap();
        cache.save().unwrap();
        assert!(!file.exists(), "already saved");
        // Re-inserting the same stamp is not a change either.
        cache.insert(PathBuf::from("/a"), 1, 1, id(b"a"));
        cache.save().unwrap();
        assert!(!file.exists());
    }

    #[test]
    fn retain_paths_drops_files_that_are_gone() {
        let state = tempfile::tempdir().unwrap();
        let mut cache = HashCache::load(state.path());
        cache.insert(PathBuf::from("/kept"), 1, 1, id(b"k"));
        cache.insert(PathBuf::from("/gone"), 1, 1, id(b"g"));
        cache.retain_paths(&HashSet::from([PathBuf::from("/kept")]));
        cache.save().unwrap();
        let loaded = HashCache::load(state.path());
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded.get(Path::new("/kept"), 1, 1), Some(id(b"k")));
    }

    #[test]
    fn save_creates_the_state_dir() {
        let state = tempfile::tempdir().unwrap();
        let nested = state.path().join("not/yet");
        let mut cache = HashCache::load(&nested);
        cache.insert(PathBuf::from("/a"), 1, 1, id(b"a"));
        cache.save().unwrap();
        assert_eq!(HashCache::load(&nested).len(), 1);
    }

    #[test]
    fn times_before_the_epoch_are_negative() {
        let before = UNIX_EPOCH - std::time::Duration::from_nanos(5);
        assert_eq!(system_time_ns(before), Some(-5));
        let after = UNIX_EPOCH + std::time::Duration::from_nanos(7);
        assert_eq!(system_time_ns(after), Some(7));
    }
}
