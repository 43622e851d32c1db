//! The partial file of a download on disk, its state file, and the final rename.
//!
//! - `dest/.<name>.<id>.part` holds the bytes, written at their offsets as pieces verify.
//!   Hidden, so nobody mistakes it for a finished file.
//! - `dest/.<name>.<id>.part.json` lists the verified pieces. It is written with
//!   [`write_atomic`] only after the part file is synced, so it never claims a piece the
//!   disk does not hold; a crash loses at most the pieces since the last save.
//! - The whole file is read back and hashed against the content id (`readback`); only then
//!   is it hard-linked (never overwriting) to its final name: the name from the search
//!   result, sanitised, with ` (1)`, ` (2)`, ... before the extension when it is taken.
//!
//! Everything here blocks; the driver calls it from `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use superpeer_common::{ContentId, write_atomic};

use super::PIECE;
use super::save_name::{final_name, split_extension, truncate};

/// Longest name part of the partial file's name.
const MAX_PART_NAME_BYTES: usize = 100;

/// How many ` (N)` suffixes to try before giving up on a free name.
const MAX_SUFFIX: u32 = 10_000;

/// What the state file holds.
#[derive(Debug, Serialize, Deserialize)]
struct PartState {
    content_id: ContentId,
    size: u64,
    piece_size: u64,
    /// Verified pieces as runs of indices `[first, end)`.
    verified: Vec<[u64; 2]>,
}

/// A partial download on disk.
#[derive(Debug)]
pub struct PartFile {
    file: File,
    path: PathBuf,
    state_path: PathBuf,
    content_id: ContentId,
    size: u64,
}

impl PartFile {
    /// Opens (or creates) the partial file of `content_id` in `dest_dir` and returns it
    /// with the pieces an earlier run verified. A state file that does not match (another
    /// size, piece size or content, unreadable) or a part file of the wrong length means
    /// starting over.
    pub fn open(
        dest_dir: &Path,
        name: &str,
        content_id: ContentId,
        size: u64,
    ) -> io::Result<(PartFile, Vec<[u64; 2]>)> {
        let (path, state_path) = part_paths(dest_dir, name, content_id);
        let file = open_no_follow(&path)?;
        let verified = if file.metadata()?.len() == size {
            read_state(&state_path, content_id, size).unwrap_or_default()
        } else {
            file.set_len(size)?;
            Vec::new()
        };
        let part = PartFile {
            file,
            path,
            state_path,
            content_id,
            size,
        };
        Ok((part, verified))
    }

    /// Whether an earlier run verified the last piece of `content_id` at `size` (its state
    /// file says so and the partial file has that length): then the size is proven (see
    /// `size_proof`) and need not be again. Creates nothing.
    pub fn proves_size(dest_dir: &Path, name: &str, content_id: ContentId, size: u64) -> bool {
        if size == 0 {
            return false;
        }
        let (path, state_path) = part_paths(dest_dir, name, content_id);
        let last = (size - 1) / PIECE;
        let sized = fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.len() == size);
        sized
            && read_state(&state_path, content_id, size)
                .is_some_and(|runs| runs.iter().any(|&[first, end]| first <= last && last < end))
    }

    /// Where the bytes go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the verified pieces are listed.
    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    /// Writes verified bytes at `offset`.
    pub fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        write_all_at(&self.file, offset, bytes)
    }

    /// Records `verified` (runs of piece indices) after making every byte written so far
    /// durable. Call with a snapshot taken before this call: pieces recorded are then on
    /// disk.
    pub fn save(&self, verified: Vec<[u64; 2]>) -> io::Result<()> {
        self.file.sync_data()?;
        let state = PartState {
            content_id: self.content_id,
            size: self.size,
            piece_size: PIECE,
            verified,
        };
        let bytes = serde_json::to_vec(&state).map_err(io::Error::other)?;
        write_atomic(&self.state_path, &bytes, 0o644)
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_exact_at(&self.file, offset, buf)
    }

    /// Makes every byte written so far durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// The whole file hashed to something other than the content id: removes the part and
    /// state files, so the next attempt starts over.
    pub fn discard(&self) {
        let _ = fs::remove_file(&self.state_path);
        let _ = fs::remove_file(&self.path);
    }

    /// Moves the verified file to its final name in `dest_dir` (see [`final_name`]; a name
    /// already taken gets a suffix), removes the state file and returns the final path.
    pub fn place(&self, dest_dir: &Path, name: &str) -> io::Result<PathBuf> {
        let name = final_name(name);
        let mut last_error = None;
        for n in 0..=MAX_SUFFIX {
            let candidate = dest_dir.join(with_suffix(&name, n));
            match link_new(&self.path, &candidate) {
                Ok(()) => {
                    let _ = fs::remove_file(&self.state_path);
                    if let Ok(dir) = File::open(dest_dir) {
                        let _ = dir.sync_all();
                    }
                    return Ok(candidate);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no free file name")))
    }
}

/// Removes the partial file of `content_id` saved as `name` in `dest_dir`, and its state
/// file (a download cancelled by the user). What is not there is not an error.
pub fn remove_partial(dest_dir: &Path, name: &str, content_id: ContentId) -> io::Result<()> {
    let (path, state_path) = part_paths(dest_dir, name, content_id);
    for file in [state_path, path] {
        match fs::remove_file(&file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// `name`, or with ` (n)` before its extension for n > 0: `song (2).mp3`.
fn with_suffix(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    let (stem, ext) = split_extension(name);
    format!("{stem} ({n}){ext}")
}

/// The partial file's path in `dest_dir` and its state file's.
fn part_paths(dest_dir: &Path, name: &str, content_id: ContentId) -> (PathBuf, PathBuf) {
    let base = format!(
        ".{}.{}.part",
        truncate(&final_name(name), MAX_PART_NAME_BYTES),
        content_id.short()
    );
    (dest_dir.join(&base), dest_dir.join(format!("{base}.json")))
}

/// Opens (or creates) the partial file at `path` for reading and writing, refusing a
/// symbolic link there: someone who can write to the downloads folder could otherwise point
/// the `.part` name at any file we may write (our key, a shell profile) and have a peer's
/// bytes written into it.
fn open_no_follow(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    #[cfg(windows)]
    {
        // FILE_FLAG_OPEN_REPARSE_POINT: open a link itself, never what it points to.
        use std::os::windows::fs::OpenOptionsExt;
        options.custom_flags(0x0020_0000);
    }
    let file = options.open(path).map_err(|e| {
        if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a symbolic link; refusing to write through it",
                    path.display()
                ),
            )
        } else {
            e
        }
    })?;
    // Windows opened the link itself; a link is never our partial file.
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// Reads the state file; `None` when it is missing, unreadable or for other content.
fn read_state(path: &Path, content_id: ContentId, size: u64) -> Option<Vec<[u64; 2]>> {
    parse_state(&fs::read(path).ok()?, content_id, size)
}

/// Parses the bytes of a partial download's state file the way [`Part::open`] does: the
/// verified runs when it is ours for this content, `None` otherwise (the fuzz target's entry).
pub fn parse_state(bytes: &[u8], content_id: ContentId, size: u64) -> Option<Vec<[u64; 2]>> {
    let state: PartState = serde_json::from_slice(bytes).ok()?;
    let matches = state.content_id == content_id && state.size == size && state.piece_size == PIECE;
    matches.then_some(state.verified)
}

/// Puts the file at `from` under the new name `to`, never replacing anything there: a hard
/// link (which fails if `to` exists) then removing `from`. On file systems without hard
/// links, a rename after checking that `to` is free.
fn link_new(from: &Path, to: &Path) -> io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => {
            let _ = fs::remove_file(from);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) if fs::symlink_metadata(to).is_ok() => {
            Err(io::Error::from(io::ErrorKind::AlreadyExists))
        }
        Err(_) => fs::rename(from, to),
    }
}

#[cfg(unix)]
fn write_all_at(file: &File, offset: u64, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(bytes, offset)
}

#[cfg(unix)]
fn read_exact_at(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = file.seek_read(buf, offset)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf = std::mem::take(&mut buf).get_mut(n..).unwrap_or_default();
        offset += n as u64;
    }
    Ok(())
}

#[cfg(windows)]
fn write_all_at(file: &File, mut offset: u64, mut bytes: &[u8]) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !bytes.is_empty() {
        let n = file.seek_write(bytes, offset)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = bytes.get(n..).unwrap_or_default();
        offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_go_before_the_extension() {
        assert_eq!(with_suffix("song.mp3", 0), "song.mp3");
        assert_eq!(with_suffix("song.mp3", 2), "song (2).mp3");
        assert_eq!(with_suffix("archive.tar.gz", 1), "archive.tar (1).gz");
        assert_eq!(with_suffix("README", 1), "README (1)");
    }

    #[test]
    fn state_survives_reopening_and_a_mismatch_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let id = ContentId::of_bytes(b"x");
        let size = 3 * PIECE;
        let (part, verified) = PartFile::open(dir.path(), "x.bin", id, size).unwrap();
        assert!(verified.is_empty());
        part.write_at(PIECE, b"abc").unwrap();
        part.save(vec![[1, 2]]).unwrap();
        drop(part);
        let (part, verified) = PartFile::open(dir.path(), "x.bin", id, size).unwrap();
        assert_eq!(verified, vec![[1, 2]]);
        assert!(part.path().starts_with(dir.path()));
        assert_eq!(fs::metadata(part.path()).unwrap().len(), size);
        drop(part);
        // Another content id or size: the old list means nothing.
        let other = ContentId::of_bytes(b"y");
        let (_, verified) = PartFile::open(dir.path(), "x.bin", other, size).unwrap();
        assert!(verified.is_empty());
        let (_, verified) = PartFile::open(dir.path(), "x.bin", id, size + 1).unwrap();
        assert!(verified.is_empty());
    }

    #[test]
    fn a_cancelled_download_leaves_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let id = ContentId::of_bytes(b"x");
        let (part, _) = PartFile::open(dir.path(), "x.bin", id, 2 * PIECE).unwrap();
        part.save(vec![[0, 1]]).unwrap();
        assert!(part.path().exists() && part.state_path().exists());
        remove_partial(dir.path(), "x.bin", id).unwrap();
        assert!(!part.path().exists() && !part.state_path().exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        // Nothing there is no error.
        remove_partial(dir.path(), "x.bin", id).unwrap();
    }

    #[test]
    fn placing_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.txt"), b"mine").unwrap();
        let id = ContentId::of_bytes(b"new");
        let (part, _) = PartFile::open(dir.path(), "a.txt", id, 3).unwrap();
        part.write_at(0, b"new").unwrap();
        let mut back = [0; 3];
        part.read_at(0, &mut back).unwrap();
        assert_eq!(&back, b"new");
        part.sync().unwrap();
        let state = part.state_path().to_path_buf();
        part.save(vec![[0, 1]]).unwrap();
        let placed = part.place(dir.path(), "a.txt").unwrap();
        assert_eq!(placed, dir.path().join("a (1).txt"));
        assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), b"mine");
        assert_eq!(fs::read(&placed).unwrap(), b"new");
        assert!(!state.exists());
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "only the two finished files remain");
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_in_place_of_the_part_file_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("precious");
        fs::write(&target, b"keep me").unwrap();
        let id = ContentId::of_bytes(b"new");
        let part_name = format!(".a.txt.{}.part", id.short());
        std::os::unix::fs::symlink(&target, dir.path().join(&part_name)).unwrap();
        let opened = PartFile::open(dir.path(), "a.txt", id, 1 << 20);
        assert!(opened.is_err(), "a symlinked .part must be refused");
        assert_eq!(fs::read(&target).unwrap(), b"keep me");
        assert_eq!(fs::metadata(&target).unwrap().len(), 7, "not resized");
        // A dangling link is refused too (it would create the file where it points).
        let nowhere = outside.path().join("created-by-us");
        fs::remove_file(dir.path().join(&part_name)).unwrap();
        std::os::unix::fs::symlink(&nowhere, dir.path().join(&part_name)).unwrap();
        assert!(PartFile::open(dir.path(), "a.txt", id, 3).is_err());
        assert!(!nowhere.exists());
    }

    #[test]
    fn a_spoofing_name_is_saved_defused() {
        let dir = tempfile::tempdir().unwrap();
        let id = ContentId::of_bytes(b"new");
        let (part, _) = PartFile::open(dir.path(), "photo\u{202E}gpj.exe", id, 3).unwrap();
        part.write_at(0, b"new").unwrap();
        let placed = part.place(dir.path(), "photo\u{202E}gpj.exe").unwrap();
        let name = placed.file_name().unwrap().to_str().unwrap();
        assert!(!name.contains('\u{202E}'), "{name:?}");
        let (part, _) = PartFile::open(dir.path(), "CON.txt", id, 3).unwrap();
        let placed = part.place(dir.path(), "CON.txt").unwrap();
        assert_eq!(placed.file_name().unwrap(), "_CON.txt");
    }

    #[test]
    fn discarding_removes_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let id = ContentId::of_bytes(b"abc");
        let (part, _) = PartFile::open(dir.path(), "a", id, 3).unwrap();
        part.write_at(0, b"abd").unwrap();
        part.save(vec![[0, 1]]).unwrap();
        part.discard();
        assert!(!part.path().exists());
        assert!(!part.state_path().exists());
    }
}
