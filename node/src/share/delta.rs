//! What a node publishes for its folder, and what changed in it between two scans.
//!
//! The supernode keeps one entry per (leaf, content id): publishing an entry whose content id
//! it already has from that leaf replaces the name and size. So what a leaf publishes is a
//! set keyed by content id, not a list of files, and everything here follows from that:
//! - Several files with the same bytes are one entry: the file whose path sorts first gives
//!   it its name. Serving the content needs only one of them.
//! - A content id is removed only when no file holds it any more; deleting one of two
//!   copies removes nothing (or, if the deleted copy gave the name, re-publishes the entry
//!   under the other copy's name).
//! - A renamed file keeps its content id, so a rename is an addition under the new name
//!   (which replaces the old name on the supernode) and no removal. Moving a file to another
//!   sub-folder under the same name changes nothing that is published.
//! - A changed file is its old id removed (unless another file still holds it) and its new
//!   entry added.
//!
//! A delta never names the same content id in both lists, so the order in which a receiver
//! applies them does not matter.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use superpeer_common::ContentId;
use superpeer_common::wire::FileEntry;

use super::SharedFile;

/// The changes to publish after a rescan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShareDelta {
    /// Entries that are new, or whose name changed (publish them; they replace an entry with
    /// the same content id).
    pub added: Vec<FileEntry>,
    /// Content ids that no shared file holds any more (unpublish them).
    pub removed: Vec<ContentId>,
}

impl ShareDelta {
    /// Whether there is nothing to publish.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// The changes that turn `old` into `new`.
    pub(super) fn between(old: &Published, new: &Published) -> ShareDelta {
        let added = new
            .0
            .iter()
            .filter(|(id, file)| old.0.get(id).is_none_or(|was| was.entry != file.entry))
            .map(|(_, file)| file.entry.clone())
            .collect();
        let removed = old
            .0
            .keys()
            .filter(|id| !new.0.contains_key(id))
            .copied()
            .collect();
        ShareDelta { added, removed }
    }
}

/// The published view of a folder: for each content id, the file that represents it.
#[derive(Clone, Debug, Default)]
pub(super) struct Published(BTreeMap<ContentId, SharedFile>);

impl Published {
    /// The view of `files`: one per content id, the first by path.
    pub(super) fn from_files(mut files: Vec<SharedFile>) -> Published {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut view = BTreeMap::new();
        for file in files {
            view.entry(file.entry.content_id).or_insert(file);
        }
        Published(view)
    }

    /// The entries, in content id order.
    pub(super) fn entries(&self) -> Vec<FileEntry> {
        self.0.values().map(|f| f.entry.clone()).collect()
    }

    /// How many entries.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// The path of the file that represents `id`.
    pub(super) fn path_of(&self, id: &ContentId) -> Option<&Path> {
        self.0.get(id).map(|f| f.path.as_path())
    }

    /// Every content id with the file that serves it.
    pub(super) fn paths(&self) -> HashMap<ContentId, PathBuf> {
        self.0
            .iter()
            .map(|(id, file)| (*id, file.path.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn file(path: &str, bytes: &[u8]) -> SharedFile {
        let path = PathBuf::from(path);
        SharedFile {
            entry: FileEntry {
                content_id: ContentId::of_bytes(bytes),
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                size: bytes.len() as u64,
            },
            path,
        }
    }

    fn view(files: &[SharedFile]) -> Published {
        Published::from_files(files.to_vec())
    }

    #[test]
    fn duplicates_are_one_entry_named_by_the_first_path() {
        let v = view(&[file("/s/b.txt", b"same"), file("/s/a.txt", b"same")]);
        assert_eq!(v.len(), 1);
        assert_eq!(v.entries()[0].name, "a.txt");
        assert_eq!(
            v.path_of(&ContentId::of_bytes(b"same")),
            Some(Path::new("/s/a.txt"))
        );
    }

    #[test]
    fn added_changed_removed() {
        let old = view(&[
            file("/s/keep", b"k"),
            file("/s/edit", b"v1"),
            file("/s/del", b"d"),
        ]);
        let new = view(&[
            file("/s/keep", b"k"),
            file("/s/edit", b"v2"),
            file("/s/new", b"n"),
        ]);
        let delta = ShareDelta::between(&old, &new);
        let mut added: Vec<_> = delta.added.iter().map(|e| e.content_id).collect();
        added.sort();
        let mut want = vec![ContentId::of_bytes(b"v2"), ContentId::of_bytes(b"n")];
        want.sort();
        assert_eq!(added, want);
        let mut removed = delta.removed.clone();
        removed.sort();
        let mut want = vec![ContentId::of_bytes(b"v1"), ContentId::of_bytes(b"d")];
        want.sort();
        assert_eq!(removed, want);
    }

    #[test]
    fn deleting_one_copy_removes_nothing() {
        let old = view(&[file("/s/a", b"same"), file("/s/b", b"same")]);
        // The copy that did not give the name: nothing to publish at all.
        assert!(ShareDelta::between(&old, &view(&[file("/s/a", b"same")])).is_empty());
        // The copy that gave the name: the entry is re-published under the other name.
        let delta = ShareDelta::between(&old, &view(&[file("/s/b", b"same")]));
        assert!(delta.removed.is_empty());
        assert_eq!(delta.added.len(), 1);
        assert_eq!(delta.added[0].name, "b");
    }

    #[test]
    fn a_rename_is_an_addition_and_a_move_is_nothing() {
        let old = view(&[file("/s/old name", b"x")]);
        let delta = ShareDelta::between(&old, &view(&[file("/s/new name", b"x")]));
        assert!(delta.removed.is_empty());
        assert_eq!(delta.added.len(), 1);
        assert_eq!(delta.added[0].name, "new name");
        assert!(ShareDelta::between(&old, &view(&[file("/s/sub/old name", b"x")])).is_empty());
    }

    #[test]
    fn no_id_is_both_added_and_removed() {
        let old = view(&[file("/s/a", b"1"), file("/s/b", b"2")]);
        let new = view(&[file("/s/b", b"1"), file("/s/c", b"3")]);
        let delta = ShareDelta::between(&old, &new);
        for entry in &delta.added {
            assert!(!delta.removed.contains(&entry.content_id));
        }
    }
}
