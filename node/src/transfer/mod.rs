//! Transfers: a downloader fetches content by id straight from the nodes that hold it, in
//! verified pieces, from several holders at once, resumable.
//!
//! Message flow on one connection, after a hello with [`Intent::Transfer`] and the holder's
//! Welcome (messages in `superpeer_common::wire`):
//! 0. Before anything is allocated for a download, its size is proven: the first holder
//!    that answers is asked steps 1-3 for the last piece, which verifies against the
//!    content id only at the true size (`size_proof`).
//! 1. The downloader asks `DownloaderToHolder::Have { content_id }`. The holder answers
//!    `HolderToDownloader::Have { content_id, size }` if it shares that content and the
//!    file still hashes to the id, else `NotFound`, or `Busy { retry_after_ms }` when all
//!    its upload slots are taken. A size other than the one the downloader expects drops
//!    the holder.
//! 2. The downloader asks `Range { content_id, start, len }` for one piece ([`PIECE`]
//!    bytes at a multiple of [`PIECE`]; the last piece may be shorter). It may send the
//!    next requests before the answers arrive (a short pipeline); the holder answers them
//!    in order (reading the next range from disk while it sends the previous one).
//! 3. The holder answers `RangeFollows { content_id, start, len, encoded_len }` and, on the
//!    same stream, one more frame: a 4-byte big-endian length equal to `encoded_len`, then
//!    the bao encoding of the range ([`verified::encode_range`]). A piece's encoding is the
//!    piece plus 64 bytes per tree node on its path, so it always fits under the 1 MiB
//!    `MAX_FRAME_SIZE`. The downloader computes the encoding's length itself
//!    ([`verified::encoded_len`]), never trusting `encoded_len`: a frame or an
//!    `encoded_len` of any other length is a protocol violation, and it reads exactly that
//!    many bytes. Or `NotFound` (the file changed since it was shared) or `Busy`.
//! 4. The downloader verifies the encoding against the content id before writing a byte
//!    (a holder whose data fails is dropped, its pieces go to the others), then repeats 2
//!    until no piece is left for it, and finishes the stream; the holder's loop ends there.
//!
//! A request for more than [`PIECE`] bytes, a range off the block grid or past the end,
//! or a malformed or oversized request frame is a protocol violation: [`serve_transfer`]
//! returns the `WireError` (`Invalid` for a bad range) and the caller closes the
//! connection with the code it calls for. Likewise a holder that answers out of order,
//! sends a frame of another length than the range's encoding, or data that does not
//! verify is closed with `ProtocolViolation` and dropped.
//!
//! Not here: finding holders (search), the control API and progress display, accepting
//! connections and routing them by intent (the daemons).
//!
//! Layout:
//! - `verified`: the public face of verified ranges: the bao encoding of a range and its
//!   verification, on one buffer.
//! - `encoding`: one range's encoding worked with in place: its layout, its parts (the
//!   data contiguous), the check against the content id.
//! - `outboard`: a file's hash tree, [`verified::Outboard`].
//! - `span`: the block grid, [`verified::BLOCK`], and a range checked against it.
//! - `verify_error`: [`verified::VerifyError`].
//! - `serve`: the holder side: the files served ([`ServedFiles`]), a connection.
//! - `uploads`: what the holder's sessions share: upload slots, sessions per peer,
//!   outboards ([`Uploads`]).
//! - `session`: one holder session, [`serve_transfer`]: reading ranges while sending.
//! - `outboard_cache`: the holder's cache of hash trees in memory.
//! - `outboard_store`: every shared file's hash tree on disk, saved by the sharing scan.
//! - `download`: the downloader's driver: [`download()`], [`DownloadPlan`].
//! - `dial`: which holders of a search result a download may dial.
//! - `size_proof`: the size proven by the verified last piece before anything is allocated.
//! - `report`: what a download tells its caller: [`Progress`], [`DownloadError`].
//! - `worker`: one holder's connection during a download.
//! - `job`: what a download's workers share: the piece table, the file, progress.
//! - `pieces`: the piece table, a plain state machine.
//! - `part`: the partial file, its state file, placing it under its final name.
//! - `save_name`: the name a download is saved under, made safe.
//! - `readback`: the final check, done as the download runs: the verified part of the
//!   file read back from disk and hashed.
//!
//! [`Intent::Transfer`]: superpeer_common::wire::Intent::Transfer

mod dial;
mod download;
mod encoding;
mod job;
mod outboard;
mod outboard_cache;
mod outboard_store;
mod part;
mod pieces;
mod readback;
mod report;
mod save_name;
mod serve;
mod session;
mod size_proof;
mod span;
mod uploads;
pub mod verified;
mod verify_error;
mod worker;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod serve_tests;

pub use dial::{MAX_HOLDERS_PER_DOWNLOAD, MAX_HOLDERS_PER_IP, dialable};
pub use download::{DownloadPlan, MAX_DOWNLOAD_SIZE, download, download_reaching};
pub use outboard_store::OutboardStore;
pub use part::{parse_state as parse_part_state, remove_partial};
pub use report::{DownloadError, Progress};
pub use serve::{IDLE_CLOSE, ServedFiles, serve_connection, serve_dialled};
pub use session::serve_transfer;
pub use uploads::{DEFAULT_UPLOAD_SLOTS, MAX_HASHING, MAX_SESSIONS_PER_PEER, Uploads};

/// Bytes of one piece: what one `Range` request may ask for. A multiple of
/// [`verified::BLOCK`]; its encoding (the piece plus at most a few KiB of hashes) fits in
/// one frame.
pub const PIECE: u64 = 512 * 1024;

const _: () = assert!(PIECE % verified::BLOCK == 0);
const _: () = assert!((PIECE as usize) + 64 * 1024 < superpeer_common::wire::MAX_FRAME_SIZE);
