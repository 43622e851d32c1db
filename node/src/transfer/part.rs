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
use crate::names::sanitize;

/// Longest final file name in bytes; leaves room for a ` (N)` suffix under the usual
/// 255-byte limit of file systems.
const MAX_NAME_BYTES: usize = 200;

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
        let base = format!(
            ".{}.{}.part",
            truncate(&final_name(name), MAX_PART_NAME_BYTES),
            content_id.short()
        );
        let path = dest_dir.join(&base);
        let state_path = dest_dir.join(format!("{base}.json"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
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

/// Reads the state file; `None` when it is missing, unreadable or for other content.
fn read_state(path: &Path, content_id: ContentId, size: u64) -> Option<Vec<[u64; 2]>> {
    let bytes = fs::read(path).ok()?;
    let state: PartState = serde_json::from_slice(&bytes).ok()?;
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

/// A file name from the network made safe to create in the downloads folder: no path
/// separators, control characters, `.` or `..` (see [`sanitize`]), no leading dot (a
/// download is never hidden and never looks like one of our `.part` files), at most
/// [`MAX_NAME_BYTES`] bytes with the extension kept.
pub fn final_name(name: &str) -> String {
    let clean = sanitize(name);
    let visible = clean.trim_start_matches('.');
    let visible = if visible.is_empty() {
        "download"
    } else {
        visible
    };
    if visible.len() <= MAX_NAME_BYTES {
        return visible.to_string();
    }
    let (stem, ext) = split_extension(visible);
    let ext = if ext.len() <= 16 { ext } else { "" };
    format!("{}{ext}", truncate(stem, MAX_NAME_BYTES - ext.len()))
}

/// `name`, or with ` (n)` before its extension for n > 0: `song (2).mp3`.
fn with_suffix(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    let (stem, ext) = split_extension(name);
    format!("{stem} ({n}){ext}")
}

/// Splits at the last dot: `("archive.tar", ".gz")`; no extension when the only dot leads.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if dot > 0 => name.split_at(dot),
        _ => (name, ""),
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
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
    fn final_names_stay_one_visible_component() {
        assert_eq!(final_name("song.mp3"), "song.mp3");
        assert_eq!(final_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(final_name(".bashrc"), "bashrc");
        assert_eq!(final_name(".."), "_");
        assert_eq!(final_name("..."), "download");
        assert_eq!(final_name("a\u{7}b\nc"), "a_b_c");
        let long = format!("{}.flac", "é".repeat(300));
        let capped = final_name(&long);
        assert!(capped.len() <= MAX_NAME_BYTES, "{}", capped.len());
        assert!(capped.ends_with("é.flac"));
    }

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
