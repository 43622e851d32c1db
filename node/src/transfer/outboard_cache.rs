//! The holder's cache of outboards (hash trees), keyed by a file's path, size and
//! modification time, so a file is hashed once for all the ranges it serves, and a file that
//! changed is hashed again (and then no longer matches its old content id).
//!
//! Bounded by entries and by bytes (an outboard is 1/256 of its file); the least recently
//! used entry goes first.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::outboard::Outboard;

/// Most outboards kept.
const MAX_ENTRIES: usize = 32;

/// Most outboard bytes kept (the trees of 16 GiB of files).
const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Which version of which file an outboard was computed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileKey {
    /// The file.
    pub path: PathBuf,
    /// Its length when it was hashed.
    pub size: u64,
    /// Its modification time when it was hashed, where the platform has one.
    pub modified: Option<SystemTime>,
}

#[derive(Debug)]
struct Entry {
    key: FileKey,
    outboard: Arc<Outboard>,
    last_used: u64,
}

/// A small LRU of outboards.
#[derive(Debug, Default)]
pub struct OutboardCache {
    entries: Vec<Entry>,
    clock: u64,
}

impl OutboardCache {
    /// The outboard of this version of the file, if cached.
    pub fn get(&mut self, key: &FileKey) -> Option<Arc<Outboard>> {
        self.clock += 1;
        let clock = self.clock;
        let entry = self.entries.iter_mut().find(|e| e.key == *key)?;
        entry.last_used = clock;
        Some(entry.outboard.clone())
    }

    /// Keeps an outboard; older versions of the same file and the least recently used
    /// entries beyond the bounds go.
    pub fn insert(&mut self, key: FileKey, outboard: Arc<Outboard>) {
        self.clock += 1;
        self.entries.retain(|e| e.key.path != key.path);
        self.entries.push(Entry {
            key,
            outboard,
            last_used: self.clock,
        });
        while self.entries.len() > MAX_ENTRIES || self.bytes() > MAX_BYTES {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i);
            match oldest {
                // Never evict the entry just added, even if it alone is over the bound.
                Some(i) if self.entries.len() > 1 => {
                    self.entries.swap_remove(i);
                }
                _ => break,
            }
        }
    }

    /// Forgets a file (it changed under an outboard we had).
    pub fn remove(&mut self, key: &FileKey) {
        self.entries.retain(|e| e.key != *key);
    }

    fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.outboard.size() / 256).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> FileKey {
        FileKey {
            path: PathBuf::from(format!("/f{n}")),
            size: n as u64,
            modified: None,
        }
    }

    #[test]
    fn least_recently_used_goes_first() {
        let mut cache = OutboardCache::default();
        let outboard = Arc::new(Outboard::of_bytes(b"x"));
        for n in 0..MAX_ENTRIES {
            cache.insert(key(n), outboard.clone());
        }
        assert!(cache.get(&key(0)).is_some());
        cache.insert(key(MAX_ENTRIES), outboard.clone());
        assert!(cache.get(&key(0)).is_some(), "recently used, kept");
        assert!(cache.get(&key(1)).is_none(), "least recently used, evicted");
        assert_eq!(cache.entries.len(), MAX_ENTRIES);
    }

    #[test]
    fn a_new_version_replaces_the_old() {
        let mut cache = OutboardCache::default();
        let outboard = Arc::new(Outboard::of_bytes(b"x"));
        cache.insert(key(1), outboard.clone());
        let newer = FileKey { size: 9, ..key(1) };
        cache.insert(newer.clone(), outboard);
        assert!(cache.get(&key(1)).is_none());
        assert!(cache.get(&newer).is_some());
        cache.remove(&newer);
        assert!(cache.get(&newer).is_none());
    }
}
