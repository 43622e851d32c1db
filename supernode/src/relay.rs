//! Relaying for leaves that cannot reach each other: the caps, who holds relay sessions,
//! and the pipe that copies a session's bytes.
//!
//! A relay is a last resort for two leaves behind symmetric NATs, and it spends this
//! supernode's bandwidth twice (in and out) on traffic it cannot read, so every session is
//! capped in count, bytes, time and rate. The flow:
//!
//! 1. Leaf A asks for a relay to leaf B; the driver asks [`RelayBook::admit`], which refuses
//!    past the session caps. A refused leaf is told so; nothing is opened.
//! 2. Admitted, each leaf has a *relay leg*: one bidirectional stream on its connection to
//!    this supernode.
//! 3. [`pipe`] copies bytes between the two legs, never parsing them: they are the frames of a
//!    QUIC connection between A and B (`superpeer_common`'s relay tunnel), encrypted and
//!    authenticated end to end. It ends when both sides have finished, one leg fails, or a
//!    cap cuts the session off ([`RelayEnd`]).
//! 4. The driver hands the ticket and the [`RelayEnd`] to [`RelayBook::finish`], which frees
//!    the slots and counts what was relayed.
//!
//! The decisions (admission, the byte budget and its rate) are plain state with time passed
//! in; [`pipe`] only moves bytes and sleeps when the budget says so.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use quinn::{RecvStream, SendStream, VarInt};
use rustc_hash::FxHashMap;
use superpeer_common::{NodeId, TokenBucket};

/// The limits on relaying. A session is one pair of legs between two leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayCaps {
    /// Sessions at once, in all. Default 64: relaying is rare (both leaves behind symmetric
    /// NATs), and 64 sessions at the default rate are already 128 MiB/s in and out.
    pub max_sessions: usize,
    /// Sessions at once that involve one node, whether it asked or was asked for. Default 4:
    /// one leaf (or one popular holder) cannot take every slot.
    pub max_per_node: usize,
    /// Bytes per session, both directions together. Default 64 MiB: enough for a query's
    /// worth of downloads; a transfer that needs more resumes over a new session (or finds a
    /// holder it can reach directly).
    pub max_bytes: u64,
    /// Lifetime of a session. Default 120 s: a relay slot is held for a transfer, not a
    /// standing link, and a session that trickles still frees its slot.
    pub max_duration: Duration,
    /// Bytes per second per session, both directions together. Default 2 MiB/s: a usable
    /// download, while 64 sessions stay within a well-connected supernode's uplink.
    pub rate: u64,
    /// Bytes a session may send at once before the rate applies. Default 256 KiB: a QUIC
    /// handshake and the first flight of a transfer pass without waiting.
    pub burst: u64,
}

impl Default for RelayCaps {
    fn default() -> Self {
        Self {
            max_sessions: 64,
            max_per_node: 4,
            max_bytes: 64 * 1024 * 1024,
            max_duration: Duration::from_secs(120),
            rate: 2 * 1024 * 1024,
            burst: 256 * 1024,
        }
    }
}

/// Names one relay session in a [`RelayBook`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayId(pub u64);

/// Proof that a session was admitted. Not `Clone`: it is handed back exactly once, to
/// [`RelayBook::release`] or [`RelayBook::finish`].
#[derive(Debug, PartialEq, Eq)]
pub struct RelayTicket {
    id: RelayId,
    a: NodeId,
    b: NodeId,
    admitted_at: Instant,
}

impl RelayTicket {
    /// The session's id.
    pub fn id(&self) -> RelayId {
        self.id
    }

    /// The two nodes (the asker first).
    pub fn nodes(&self) -> (NodeId, NodeId) {
        (self.a, self.b)
    }

    /// When it was admitted.
    pub fn admitted_at(&self) -> Instant {
        self.admitted_at
    }
}

/// Why a relay session was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelayRefusal {
    /// A node asked for a relay to itself.
    #[error("a node cannot relay to itself")]
    SameNode,
    /// [`RelayCaps::max_sessions`] sessions are running.
    #[error("every relay session is taken")]
    Full,
    /// This node already takes part in [`RelayCaps::max_per_node`] sessions.
    #[error("node {0} has as many relay sessions as it may")]
    NodeBusy(NodeId),
}

/// Counters for the status page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Sessions running now.
    pub active: usize,
    /// Sessions admitted since start.
    pub admitted: u64,
    /// Sessions refused since start.
    pub refused: u64,
    /// Bytes relayed by finished sessions, both directions.
    pub bytes_relayed: u64,
    /// Sessions cut off for reaching [`RelayCaps::max_bytes`] or [`RelayCaps::max_duration`].
    pub cut_off: u64,
}

/// Who holds relay sessions: admission against the count caps, and the counters.
#[derive(Debug)]
pub struct RelayBook {
    caps: RelayCaps,
    sessions: FxHashMap<RelayId, (NodeId, NodeId, Instant)>,
    per_node: FxHashMap<NodeId, usize>,
    next_id: u64,
    stats: RelayStats,
}

/// How long past [`RelayCaps::max_duration`] a session may still be held before
/// [`RelayBook::overdue`] names it: [`pipe`] ends it at the cap, so only a driver that lost
/// track of one gets there.
pub const OVERDUE_GRACE: Duration = Duration::from_secs(10);

impl RelayBook {
    /// An empty book enforcing `caps`.
    pub fn new(caps: RelayCaps) -> Self {
        Self {
            caps,
            sessions: FxHashMap::default(),
            per_node: FxHashMap::default(),
            next_id: 1,
            stats: RelayStats::default(),
        }
    }

    /// Node `a` asks for a relay to node `b` at `now`.
    pub fn admit(
        &mut self,
        a: NodeId,
        b: NodeId,
        now: Instant,
    ) -> Result<RelayTicket, RelayRefusal> {
        let refusal = if a == b {
            Some(RelayRefusal::SameNode)
        } else if self.sessions.len() >= self.caps.max_sessions {
            Some(RelayRefusal::Full)
        } else {
            [a, b]
                .into_iter()
                .find(|node| self.sessions_of(node) >= self.caps.max_per_node)
                .map(RelayRefusal::NodeBusy)
        };
        if let Some(refusal) = refusal {
            self.stats.refused += 1;
            return Err(refusal);
        }
        let id = RelayId(self.next_id);
        self.next_id += 1;
        self.sessions.insert(id, (a, b, now));
        for node in [a, b] {
            *self.per_node.entry(node).or_default() += 1;
        }
        self.stats.admitted += 1;
        Ok(RelayTicket {
            id,
            a,
            b,
            admitted_at: now,
        })
    }

    /// The session ended without relaying anything worth counting (the other leaf never
    /// opened its leg): frees its slots.
    pub fn release(&mut self, ticket: RelayTicket) {
        if self.sessions.remove(&ticket.id).is_none() {
            return;
        }
        for node in [ticket.a, ticket.b] {
            if let Some(count) = self.per_node.get_mut(&node) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.per_node.remove(&node);
                }
            }
        }
    }

    /// The session's [`pipe`] ended with `end`: counts it and frees its slots.
    pub fn finish(&mut self, ticket: RelayTicket, end: &RelayEnd) {
        if !self.sessions.contains_key(&ticket.id) {
            return;
        }
        self.stats.bytes_relayed += end.bytes_a_to_b + end.bytes_b_to_a;
        if matches!(
            end.ended,
            RelayEndReason::BytesCap | RelayEndReason::TimeCap
        ) {
            self.stats.cut_off += 1;
        }
        self.release(ticket);
    }

    /// Sessions held past [`RelayCaps::max_duration`] and [`OVERDUE_GRACE`] at `now`: a
    /// backstop for a driver that lost a pipe, which should abort and release them.
    pub fn overdue(&self, now: Instant) -> Vec<RelayId> {
        let limit = self.caps.max_duration.saturating_add(OVERDUE_GRACE);
        let mut ids: Vec<RelayId> = self
            .sessions
            .iter()
            .filter(|(_, (_, _, since))| now.saturating_duration_since(*since) > limit)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Sessions that `node` takes part in.
    pub fn sessions_of(&self, node: &NodeId) -> usize {
        self.per_node.get(node).copied().unwrap_or(0)
    }

    /// The counters.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            active: self.sessions.len(),
            ..self.stats
        }
    }
}

/// How a relay session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayEndReason {
    /// Both leaves finished their side.
    Finished,
    /// Cut off at [`RelayCaps::max_bytes`].
    BytesCap,
    /// Cut off at [`RelayCaps::max_duration`].
    TimeCap,
    /// A leg failed (reset, stopped, its connection lost).
    Error,
}

/// What a relay session moved, and how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayEnd {
    /// Bytes read from A's leg and written to B's.
    pub bytes_a_to_b: u64,
    /// Bytes read from B's leg and written to A's.
    pub bytes_b_to_a: u64,
    /// Why it ended.
    pub ended: RelayEndReason,
}

/// The stream error code a session's legs are reset and stopped with when it ends
/// abnormally (a cap, or the other leg failing).
pub const RELAY_CUT_OFF: VarInt = VarInt::from_u32(1);

/// Bytes read from a leg at once (less when the burst is smaller, so that a read can always
/// be paid for).
const CHUNK: usize = 16 * 1024;

/// Copies bytes between the legs `a` and `b` (each: our send and receive halves of the
/// leaf's stream) under `caps`, until both leaves finish (each finish is passed on), one leg
/// fails, or a cap is reached; then resets and stops both legs unless they finished.
/// The caller keeps the leaves' connections open: a finished stream is still being
/// delivered.
pub async fn pipe(
    a: (SendStream, RecvStream),
    b: (SendStream, RecvStream),
    caps: &RelayCaps,
) -> RelayEnd {
    let ((mut a_send, mut a_recv), (mut b_send, mut b_recv)) = (a, b);
    let meter = Mutex::new(Meter::new(caps, Instant::now()));
    let both = async {
        tokio::try_join!(
            forward(&mut a_recv, &mut b_send, &meter, Direction::AToB),
            forward(&mut b_recv, &mut a_send, &meter, Direction::BToA),
        )
    };
    let ended = match tokio::time::timeout(caps.max_duration, both).await {
        Ok(Ok(_)) => RelayEndReason::Finished,
        Ok(Err(reason)) => reason,
        Err(_) => RelayEndReason::TimeCap,
    };
    if ended != RelayEndReason::Finished {
        let _ = a_send.reset(RELAY_CUT_OFF);
        let _ = b_send.reset(RELAY_CUT_OFF);
        let _ = a_recv.stop(RELAY_CUT_OFF);
        let _ = b_recv.stop(RELAY_CUT_OFF);
    }
    let meter = meter.into_inner().unwrap_or_else(PoisonError::into_inner);
    RelayEnd {
        bytes_a_to_b: meter.a_to_b,
        bytes_b_to_a: meter.b_to_a,
        ended,
    }
}

/// One direction of a session: read a chunk, wait until the budget pays for it, write it.
async fn forward(
    from: &mut RecvStream,
    to: &mut SendStream,
    meter: &Mutex<Meter>,
    direction: Direction,
) -> Result<(), RelayEndReason> {
    let chunk = meter.lock().unwrap_or_else(PoisonError::into_inner).chunk;
    let mut buf = vec![0; chunk];
    loop {
        let read = match from.read(&mut buf).await {
            Ok(Some(n)) => buf.get(..n).unwrap_or_default(),
            Ok(None) => {
                let _ = to.finish();
                return Ok(());
            }
            Err(e) => {
                tracing::debug!(?direction, error = %e, "relay leg failed");
                return Err(RelayEndReason::Error);
            }
        };
        loop {
            let grant = meter.lock().unwrap_or_else(PoisonError::into_inner).grant(
                Instant::now(),
                direction,
                read.len(),
            );
            match grant {
                Grant::Go => break,
                Grant::Wait(wait) => tokio::time::sleep(wait).await,
                Grant::OverCap => return Err(RelayEndReason::BytesCap),
            }
        }
        if let Err(e) = to.write_all(read).await {
            tracing::debug!(?direction, error = %e, "relay leg failed");
            return Err(RelayEndReason::Error);
        }
    }
}

/// Which way bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    AToB,
    BToA,
}

/// A session's byte budget: both directions draw on one rate and one byte cap.
#[derive(Debug)]
struct Meter {
    bucket: TokenBucket,
    rate: f64,
    max_bytes: u64,
    /// Largest read, so that any read fits in a full bucket.
    chunk: usize,
    /// Bytes paid for from A to B.
    a_to_b: u64,
    /// Bytes paid for from B to A.
    b_to_a: u64,
}

/// The budget's answer for a chunk.
#[derive(Debug, PartialEq)]
enum Grant {
    /// Paid for: write it.
    Go,
    /// Not enough tokens: ask again after this long.
    Wait(Duration),
    /// It would take the session past its byte cap.
    OverCap,
}

impl Meter {
    fn new(caps: &RelayCaps, now: Instant) -> Self {
        // A rate of 0 would never pay for anything, and TokenBucket counts its burst in u32.
        let rate = caps.rate.max(1) as f64;
        let burst = u32::try_from(caps.burst).unwrap_or(u32::MAX).max(1);
        let chunk = usize::try_from(burst).unwrap_or(CHUNK).min(CHUNK);
        Self {
            bucket: TokenBucket::new(now, rate, burst),
            rate,
            max_bytes: caps.max_bytes,
            chunk,
            a_to_b: 0,
            b_to_a: 0,
        }
    }

    fn grant(&mut self, now: Instant, direction: Direction, len: usize) -> Grant {
        let len64 = len as u64;
        let total = self.a_to_b.saturating_add(self.b_to_a);
        if total.saturating_add(len64) > self.max_bytes {
            return Grant::OverCap;
        }
        let tokens = u32::try_from(len).unwrap_or(u32::MAX);
        if !self.bucket.try_take_n(now, tokens) {
            // Waiting for the whole chunk's worth is never too short; the tokens that had
            // built up stay in the bucket, so the session still averages the full rate.
            return Grant::Wait(Duration::from_secs_f64(f64::from(tokens) / self.rate));
        }
        let moved = match direction {
            Direction::AToB => &mut self.a_to_b,
            Direction::BToA => &mut self.b_to_a,
        };
        *moved = moved.saturating_add(len64);
        Grant::Go
    }
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
