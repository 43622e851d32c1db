//! Tests of [`SharedFolder`] on real files in temporary folders.

use std::fs;
use std::time::{Duration, SystemTime};

use super::*;

fn id(bytes: &[u8]) -> ContentId {
    ContentId::of_bytes(bytes)
}

/// An hour ago: far enough in the past for the hash to be cached (see `SETTLE`).
fn an_hour_ago() -> SystemTime {
    SystemTime::now() - Duration::from_secs(3600)
}

fn set_mtime(path: &Path, time: SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

/// Writes `bytes` to `dir/name` with an old mtime, so its hash is cached.
fn write_old(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(&path, bytes).unwrap();
    set_mtime(&path, an_hour_ago());
    path
}

struct Fixture {
    share: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            share: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn dir(&self) -> &Path {
        self.share.path()
    }

    fn open(&self) -> SharedFolder {
        SharedFolder::open(self.share.path(), self.state.path(), false).unwrap()
    }
}

fn names(entries: &[FileEntry]) -> Vec<String> {
    let mut names: Vec<_> = entries.iter().map(|e| e.name.clone()).collect();
    names.sort();
    names
}

#[test]
fn the_first_scan_publishes_the_blake3_of_each_file() {
    let f = Fixture::new();
    fs::create_dir_all(f.dir().join("a/b")).unwrap();
    fs::write(f.dir().join("top.txt"), b"top").unwrap();
    fs::write(f.dir().join("a/b/deep song.mp3"), b"deep").unwrap();
    fs::write(f.dir().join("empty"), b"").unwrap();
    let folder = f.open();

    let mut want = vec![
        FileEntry {
            content_id: id(b"top"),
            name: "top.txt".into(),
            size: 3,
        },
        FileEntry {
            content_id: id(b"deep"),
            name: "deep song.mp3".into(),
            size: 4,
        },
        FileEntry {
            content_id: id(b""),
            name: "empty".into(),
            size: 0,
        },
    ];
    want.sort_by_key(|e| e.content_id);
    assert_eq!(folder.entries(), want);
    assert_eq!(folder.len(), 3);
    assert_eq!(folder.last_scan().hashed, 3);
    let deep = folder.path_of(&id(b"deep")).unwrap();
    assert_eq!(fs::read(&deep).unwrap(), b"deep");
    assert!(deep.is_absolute());
    assert_eq!(folder.path_of(&id(b"nothing")), None);
}

#[test]
fn a_restart_takes_unchanged_files_from_the_cache() {
    let f = Fixture::new();
    write_old(f.dir(), "a.txt", b"aaaa");
    write_old(f.dir(), "sub/b.txt", b"bb");
    let first = f.open();
    assert_eq!(first.last_scan().hashed, 2);
    assert!(f.state.path().join("hash-cache.json").exists());
    drop(first);

    let again = f.open();
    assert_eq!(
        again.last_scan(),
        ScanCounts {
            files: 2,
            from_cache: 2,
            hashed: 0
        }
    );
    assert_eq!(names(&again.entries()), ["a.txt", "b.txt"]);
}

#[test]
fn the_cache_is_trusted_while_size_and_mtime_stay_the_same() {
    let f = Fixture::new();
    let path = write_old(f.dir(), "a.txt", b"aaaa");
    let when = mtime(&path);
    drop(f.open());

    // New bytes, same size, mtime put back: only the cache can still say "aaaa".
    fs::write(&path, b"bbbb").unwrap();
    set_mtime(&path, when);
    let mut folder = f.open();
    assert_eq!(folder.entries()[0].content_id, id(b"aaaa"));
    assert_eq!(folder.last_scan().hashed, 0);

    // A different mtime is a miss: hashed again, and published as a change.
    set_mtime(&path, when - Duration::from_secs(60));
    let delta = folder.rescan().unwrap();
    assert_eq!(delta.removed, [id(b"aaaa")]);
    assert_eq!(delta.added[0].content_id, id(b"bbbb"));
    assert_eq!(folder.last_scan().hashed, 1);

    // So is a different size with the mtime put back.
    fs::write(&path, b"ccccc").unwrap();
    set_mtime(&path, when - Duration::from_secs(60));
    let delta = folder.rescan().unwrap();
    assert_eq!(delta.removed, [id(b"bbbb")]);
    assert_eq!(delta.added[0].content_id, id(b"ccccc"));
}

#[test]
fn a_file_modified_moments_ago_is_not_cached() {
    let f = Fixture::new();
    let path = f.dir().join("fresh.txt");
    fs::write(&path, b"v1v1").unwrap();
    let when = mtime(&path);
    let mut folder = f.open();
    assert_eq!(folder.entries()[0].content_id, id(b"v1v1"));

    // Rewritten within the same timestamp (as on a coarse file system): still noticed.
    fs::write(&path, b"v2v2").unwrap();
    set_mtime(&path, when);
    let delta = folder.rescan().unwrap();
    assert_eq!(delta.removed, [id(b"v1v1")]);
    assert_eq!(delta.added[0].content_id, id(b"v2v2"));
}

#[test]
fn added_changed_and_removed_files_are_deltas() {
    let f = Fixture::new();
    let keep = write_old(f.dir(), "keep.txt", b"keep");
    let edit = write_old(f.dir(), "edit.txt", b"old");
    let gone = write_old(f.dir(), "gone.txt", b"gone");
    let mut folder = f.open();
    assert!(folder.rescan().unwrap().is_empty(), "nothing changed");

    fs::write(&edit, b"new content").unwrap();
    fs::remove_file(&gone).unwrap();
    write_old(f.dir(), "sub/added.txt", b"added");
    let delta = folder.rescan().unwrap();
    let mut removed = delta.removed.clone();
    removed.sort();
    let mut want = vec![id(b"old"), id(b"gone")];
    want.sort();
    assert_eq!(removed, want);
    assert_eq!(names(&delta.added), ["added.txt", "edit.txt"]);
    assert_eq!(
        names(&folder.entries()),
        ["added.txt", "edit.txt", "keep.txt"]
    );
    assert_eq!(folder.path_of(&id(b"gone")), None);
    assert_eq!(folder.path_of(&id(b"keep")), Some(keep));
}

#[test]
fn deleting_one_of_two_copies_removes_nothing() {
    let f = Fixture::new();
    let first = write_old(f.dir(), "a copy.txt", b"same bytes");
    let second = write_old(f.dir(), "b copy.txt", b"same bytes");
    let mut folder = f.open();
    assert_eq!(folder.len(), 1, "one entry per content id");
    assert_eq!(folder.last_scan().files, 2);

    fs::remove_file(&second).unwrap();
    assert!(folder.rescan().unwrap().is_empty());
    assert_eq!(folder.path_of(&id(b"same bytes")), Some(first.clone()));

    fs::remove_file(&first).unwrap();
    let delta = folder.rescan().unwrap();
    assert_eq!(delta.removed, [id(b"same bytes")]);
    assert!(delta.added.is_empty());
    assert!(folder.is_empty());
}

#[test]
fn a_rename_adds_the_new_name_and_removes_nothing() {
    let f = Fixture::new();
    let old = write_old(f.dir(), "old name.mp3", b"song");
    let mut folder = f.open();
    let new = f.dir().join("new name.mp3");
    fs::rename(&old, &new).unwrap();
    let delta = folder.rescan().unwrap();
    assert!(delta.removed.is_empty());
    assert_eq!(names(&delta.added), ["new name.mp3"]);
    assert_eq!(folder.path_of(&id(b"song")), Some(new));
}

#[test]
fn a_missing_folder_is_a_clear_error() {
    let state = tempfile::tempdir().unwrap();
    let err = SharedFolder::open(
        Path::new("/nonexistent/superpeer-share"),
        state.path(),
        false,
    )
    .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.starts_with("cannot share /nonexistent/superpeer-share: "),
        "{message}"
    );
}

#[test]
fn a_file_is_not_a_folder() {
    let f = Fixture::new();
    let file = write_old(f.dir(), "plain.txt", b"x");
    let err = SharedFolder::open(&file, f.state.path(), false).unwrap_err();
    assert!(format!("{err:#}").contains("not a folder"), "{err:#}");
}

#[test]
fn a_folder_that_disappears_is_an_error_and_keeps_the_state() {
    let f = Fixture::new();
    let sub = f.dir().join("shared");
    fs::create_dir_all(&sub).unwrap();
    write_old(&sub, "a.txt", b"a");
    let mut folder = SharedFolder::open(&sub, f.state.path(), false).unwrap();
    fs::remove_dir_all(&sub).unwrap();
    assert!(folder.rescan().is_err());
    assert_eq!(folder.len(), 1);
}

#[test]
fn the_state_dir_is_never_shared() {
    let share = tempfile::tempdir().unwrap();
    let state = share.path().join("state");
    fs::create_dir_all(&state).unwrap();
    fs::write(state.join("identity.key"), b"private").unwrap();
    write_old(share.path(), "song.mp3", b"la");
    let folder = SharedFolder::open(share.path(), &state, false).unwrap();
    assert_eq!(names(&folder.entries()), ["song.mp3"]);

    let err = SharedFolder::open(&state, &state, false).unwrap_err();
    assert!(format!("{err:#}").contains("state dir"), "{err:#}");
}

#[cfg(unix)]
#[test]
fn unreadable_files_are_skipped() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let secret = write_old(f.dir(), "secret.txt", b"x");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    write_old(f.dir(), "open.txt", b"y");
    let mut folder = f.open();
    assert!(folder.entries().iter().any(|e| e.name == "open.txt"));
    // Root reads anything; elsewhere the unreadable file is skipped, on every scan.
    if fs::read(&secret).is_err() {
        assert_eq!(folder.len(), 1);
        assert!(folder.rescan().unwrap().is_empty());
        // Readable again: now it is shared.
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(names(&folder.rescan().unwrap().added), ["secret.txt"]);
    }
}

#[cfg(unix)]
#[test]
fn names_too_long_to_publish_are_skipped() {
    use std::os::unix::ffi::OsStrExt;
    let f = Fixture::new();
    // 200 bytes that are not UTF-8 become 200 replacement characters: 600 bytes.
    let name = std::ffi::OsStr::from_bytes(&[0xff; 200]);
    if fs::write(f.dir().join(name), b"x").is_err() {
        return; // A file system that only takes UTF-8 names.
    }
    write_old(f.dir(), "ok.txt", b"ok");
    let folder = f.open();
    assert_eq!(names(&folder.entries()), ["ok.txt"]);
}

#[test]
fn settled_means_a_few_seconds_away_from_now() {
    let now = SystemTime::now();
    let ns = |t: SystemTime| system_time_ns(t).unwrap();
    assert!(!settled(ns(now), now));
    assert!(!settled(ns(now - Duration::from_secs(1)), now));
    assert!(settled(ns(now - SETTLE), now));
    assert!(settled(ns(now - Duration::from_secs(3600)), now));
    // Far in the future is settled too: the next write gets a different (current) mtime.
    assert!(settled(ns(now + Duration::from_secs(3600)), now));
}
