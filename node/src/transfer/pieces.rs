//! Which pieces of a download are verified, which are out with a holder, which are still to
//! fetch. A plain state machine: no I/O, no clock; the download driver and its workers share
//! one behind a mutex.
//!
//! A piece is [`PIECE`] bytes (the last one may be shorter). Pieces go out lowest index
//! first, so the file fills roughly front to back; a piece a holder gave back (dropped,
//! busy) goes out again before any fresh one.

use std::collections::BTreeSet;

use super::PIECE;

/// One piece: bytes `start..start + len` of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Index in the file, from 0.
    pub index: u64,
    /// First byte.
    pub start: u64,
    /// Bytes in the piece: [`PIECE`], or less for the last one.
    pub len: u64,
}

/// The piece table of one download.
#[derive(Debug)]
pub struct Pieces {
    size: u64,
    /// Verified and written, by index.
    done: Vec<bool>,
    /// Pieces below this index have been handed out at least once (or were done).
    cursor: u64,
    /// Pieces handed back, to hand out again before fresh ones.
    returned: BTreeSet<u64>,
    done_count: u64,
    done_bytes: u64,
    /// Pieces below this index are all done: the verified prefix of the file.
    prefix: u64,
}

impl Pieces {
    /// The table of a `size`-byte file whose pieces in `verified` (runs of indices
    /// `[first, end)`, as [`Pieces::verified_runs`] gives them) are already on disk. Runs
    /// out of range are ignored.
    pub fn new(size: u64, verified: &[[u64; 2]]) -> Pieces {
        let count = size.div_ceil(PIECE);
        let mut pieces = Pieces {
            size,
            // The download driver caps `size`, so this fits in memory.
            done: vec![false; usize::try_from(count).unwrap_or(0)],
            cursor: 0,
            returned: BTreeSet::new(),
            done_count: 0,
            done_bytes: 0,
            prefix: 0,
        };
        for &[first, end] in verified {
            for index in first..end.min(count) {
                pieces.finish(index);
            }
        }
        pieces
    }

    /// Number of pieces in the file.
    pub fn count(&self) -> u64 {
        self.done.len() as u64
    }

    /// Size of the file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes verified so far.
    pub fn done_bytes(&self) -> u64 {
        self.done_bytes
    }

    /// Bytes from the start of the file up to the first piece not verified yet.
    pub fn verified_prefix(&self) -> u64 {
        self.prefix.saturating_mul(PIECE).min(self.size)
    }

    /// Pieces not verified yet.
    pub fn missing(&self) -> u64 {
        self.count() - self.done_count
    }

    /// True once every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.done_count == self.count()
    }

    /// The next piece to fetch, or `None` when every piece is done or out with a holder.
    pub fn next(&mut self) -> Option<Piece> {
        while let Some(index) = self.returned.pop_first() {
            if !self.is_done(index) {
                return Some(self.piece(index));
            }
        }
        self.skip_done();
        if self.cursor < self.count() {
            let piece = self.piece(self.cursor);
            self.cursor += 1;
            return Some(piece);
        }
        None
    }

    /// True when [`Pieces::next`] would hand out a piece.
    pub fn has_pending(&mut self) -> bool {
        self.skip_done();
        self.cursor < self.count() || self.returned.iter().any(|&i| !self.is_done(i))
    }

    /// Marks a piece verified and written. False if it was done already (or out of range).
    pub fn finish(&mut self, index: u64) -> bool {
        let len = self.piece(index).len;
        match usize::try_from(index)
            .ok()
            .and_then(|i| self.done.get_mut(i))
        {
            Some(done) if !*done => {
                *done = true;
                self.done_count += 1;
                self.done_bytes += len;
                self.returned.remove(&index);
                while self.is_done(self.prefix) {
                    self.prefix += 1;
                }
                true
            }
            _ => false,
        }
    }

    /// Gives a piece handed out by [`Pieces::next`] back, to fetch from someone else.
    /// False if there was nothing to give back (done, or out of range).
    pub fn release(&mut self, index: u64) -> bool {
        index < self.count() && !self.is_done(index) && self.returned.insert(index)
    }

    /// The verified pieces as runs of indices `[first, end)`, for the state file.
    pub fn verified_runs(&self) -> Vec<[u64; 2]> {
        let mut runs: Vec<[u64; 2]> = Vec::new();
        for (index, _) in (0u64..).zip(&self.done).filter(|(_, done)| **done) {
            match runs.last_mut() {
                Some(run) if run[1] == index => run[1] = index + 1,
                _ => runs.push([index, index + 1]),
            }
        }
        runs
    }

    fn is_done(&self, index: u64) -> bool {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.done.get(i))
            .copied()
            .unwrap_or(false)
    }

    fn skip_done(&mut self) {
        while self.cursor < self.count() && self.is_done(self.cursor) {
            self.cursor += 1;
        }
    }

    fn piece(&self, index: u64) -> Piece {
        let start = index.saturating_mul(PIECE).min(self.size);
        Piece {
            index,
            start,
            len: PIECE.min(self.size - start),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(pieces: &mut Pieces) -> Vec<u64> {
        std::iter::from_fn(|| pieces.next().map(|p| p.index)).collect()
    }

    #[test]
    fn pieces_cover_the_file_and_the_last_is_short() {
        let size = 3 * PIECE + 123;
        let mut pieces = Pieces::new(size, &[]);
        assert_eq!(pieces.count(), 4);
        let all: Vec<Piece> = std::iter::from_fn(|| pieces.next()).collect();
        assert_eq!(all.iter().map(|p| p.len).sum::<u64>(), size);
        assert_eq!(
            all[3],
            Piece {
                index: 3,
                start: 3 * PIECE,
                len: 123
            }
        );
        assert!(!pieces.has_pending());
        assert!(!pieces.is_complete());
    }

    #[test]
    fn an_empty_file_is_complete_at_once() {
        let mut pieces = Pieces::new(0, &[]);
        assert!(pieces.is_complete());
        assert_eq!(pieces.next(), None);
        assert!(pieces.verified_runs().is_empty());
    }

    #[test]
    fn released_pieces_go_out_again_first() {
        let mut pieces = Pieces::new(6 * PIECE, &[]);
        assert_eq!(pieces.next().map(|p| p.index), Some(0));
        assert_eq!(pieces.next().map(|p| p.index), Some(1));
        assert_eq!(pieces.next().map(|p| p.index), Some(2));
        pieces.release(1);
        assert!(pieces.finish(0));
        assert_eq!(pieces.next().map(|p| p.index), Some(1));
        assert_eq!(pieces.next().map(|p| p.index), Some(3));
        // Releasing a finished piece does not hand it out again.
        assert!(pieces.finish(2));
        pieces.release(2);
        assert_eq!(drain(&mut pieces), vec![4, 5]);
    }

    #[test]
    fn finishing_twice_counts_once() {
        let mut pieces = Pieces::new(2 * PIECE + 1, &[]);
        assert!(pieces.finish(2));
        assert!(!pieces.finish(2));
        assert!(!pieces.finish(99));
        assert_eq!(pieces.done_bytes(), 1);
        assert_eq!(pieces.missing(), 2);
        assert_eq!(pieces.verified_prefix(), 0);
        pieces.finish(0);
        pieces.finish(1);
        assert_eq!(pieces.verified_prefix(), 2 * PIECE + 1);
    }

    #[test]
    fn verified_runs_round_trip_and_resume_skips_them() {
        let mut pieces = Pieces::new(10 * PIECE, &[]);
        for index in [0, 1, 2, 5, 7, 8, 9] {
            pieces.finish(index);
        }
        let runs = pieces.verified_runs();
        assert_eq!(runs, vec![[0, 3], [5, 6], [7, 10]]);
        assert_eq!(pieces.verified_prefix(), 3 * PIECE);
        let mut resumed = Pieces::new(10 * PIECE, &runs);
        assert_eq!(resumed.done_bytes(), 7 * PIECE);
        assert_eq!(drain(&mut resumed), vec![3, 4, 6]);
        assert_eq!(resumed.verified_prefix(), 3 * PIECE);
        for index in [3, 4, 6] {
            resumed.finish(index);
        }
        assert!(resumed.is_complete());
        assert_eq!(resumed.verified_prefix(), 10 * PIECE);
    }

    #[test]
    fn hostile_runs_are_clamped() {
        let pieces = Pieces::new(2 * PIECE, &[[1, u64::MAX], [5, 3], [u64::MAX, u64::MAX]]);
        assert_eq!(pieces.verified_runs(), vec![[1, 2]]);
    }
}
