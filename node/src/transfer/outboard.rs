//! [`Outboard`]: a file's bao hash tree without the data, computed once per file by the
//! holder; its root is the content id, and ranges are read and checked against it.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use bao_tree::BaoTree;
use bao_tree::io::outboard::PostOrderMemOutboard;
use bao_tree::io::sync::outboard_post_order;
use superpeer_common::ContentId;

use super::span::BLOCK_SIZE;

/// Read buffer while building an outboard; large reads keep syscalls rare.
const READ_BUFFER: usize = 256 * 1024;

/// The bao outboard (the hash tree without the data) of a file, computed once per file.
#[derive(Clone)]
pub struct Outboard {
    /// Post-order hash pairs of the whole file; its root is the content id.
    inner: PostOrderMemOutboard,
}

impl Outboard {
    /// Hashes the file at `path` (streaming, constant memory apart from the tree,
    /// ~size/16KiB*64 bytes) and builds its outboard.
    pub fn of_file(path: &Path) -> io::Result<Outboard> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        Outboard::of_reader(file, size)
    }

    /// An outboard saved earlier (`outboard_store`): the post-order pairs of a `size`-byte
    /// file whose root is `root`. `None` when `data` is not the tree's length.
    pub fn from_saved(root: ContentId, size: u64, data: Vec<u8>) -> Option<Outboard> {
        let tree = BaoTree::new(size, BLOCK_SIZE);
        if data.len() as u64 != tree.outboard_size() {
            return None;
        }
        let root = bao_tree::blake3::Hash::from_bytes(*root.as_bytes());
        Some(Outboard {
            inner: PostOrderMemOutboard { root, tree, data },
        })
    }

    /// Hashes what `reader` gives (`size` bytes, streaming) and builds its outboard: the
    /// sharing scan's single read of a file, which yields the content id and the tree.
    pub fn of_reader(reader: impl Read, size: u64) -> io::Result<Outboard> {
        let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
        let tree = BaoTree::new(size, BLOCK_SIZE);
        let mut data = Vec::with_capacity(usize::try_from(tree.outboard_size()).unwrap_or(0));
        let root = outboard_post_order(&mut reader, tree, &mut data).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                changed_while_hashing()
            } else {
                e
            }
        })?;
        // A file that grew while we read it would otherwise get the id of a prefix.
        let mut probe = Vec::new();
        if reader.take(1).read_to_end(&mut probe)? != 0 {
            return Err(changed_while_hashing());
        }
        Ok(Outboard {
            inner: PostOrderMemOutboard { root, tree, data },
        })
    }

    /// The post-order hash pairs, as saved.
    pub fn data(&self) -> &[u8] {
        &self.inner.data
    }

    /// The outboard of bytes in memory (tests and small files).
    pub fn of_bytes(data: &[u8]) -> Outboard {
        Outboard {
            inner: PostOrderMemOutboard::create(data, BLOCK_SIZE),
        }
    }

    /// The content id: the plain BLAKE3 hash of the file, equal to
    /// [`ContentId::of_file`].
    pub fn root(&self) -> ContentId {
        ContentId::from_bytes(*self.inner.root.as_bytes())
    }

    /// Size of the file in bytes.
    pub fn size(&self) -> u64 {
        self.inner.tree.size()
    }

    /// The hash tree, for encoding ranges.
    pub(super) fn tree(&self) -> &PostOrderMemOutboard {
        &self.inner
    }
}

impl fmt::Debug for Outboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outboard")
            .field("root", &self.root())
            .field("size", &self.size())
            .field("tree_bytes", &self.inner.data.len())
            .finish()
    }
}

fn changed_while_hashing() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the file changed while it was hashed",
    )
}
