//! Is the current supernode still there? With a spare to fall back on, a leaf does not
//! wait out the transport's idle timeout (3 s, a long time for a search) to find out that
//! its supernode crashed: each search goes out with a `Ping`, which the supernode answers
//! in order as soon as it has read the query. No `Pong` within [`LivenessCheck::patience`]
//! (four round trips, between [`MIN_PATIENCE`] and [`MAX_PATIENCE`]) and the leaf gives the
//! supernode up: the spare takes over and the searches go out again through it. A live
//! supernode that is merely slow to search still answers the ping at once, so only a
//! supernode that stopped reading is given up.

use std::time::{Duration, Instant};

use superpeer_common::wire::LeafToSupernode;

use super::{LeafAction, LeafCore};

/// Least wait for a `Pong` (a loaded machine or a busy supernode takes some time to read).
pub const MIN_PATIENCE: Duration = Duration::from_millis(500);

/// Longest wait for a `Pong`: past it the transport's own timeout is not far off anyway.
pub const MAX_PATIENCE: Duration = Duration::from_secs(2);

/// The ping out to the current supernode, if any.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct LivenessCheck {
    out: Option<(u64, Instant)>,
    next_nonce: u64,
}

impl LivenessCheck {
    /// How long to wait for a `Pong` from a supernode `rtt` away.
    pub(super) fn patience(rtt: Duration) -> Duration {
        (rtt * 4).clamp(MIN_PATIENCE, MAX_PATIENCE)
    }

    /// Forget any ping out (a new current supernode).
    pub(super) fn reset(&mut self) {
        self.out = None;
    }
}

impl LeafCore {
    /// A search went to the current supernode: ping it, unless a ping is out already. Only
    /// with a spare to fall back on (with none, there is nothing better than waiting).
    pub(super) fn ping_current(&mut self, now: Instant) {
        if self.spares.is_empty() || self.liveness.out.is_some() {
            return;
        }
        let Some(current) = self.current else {
            return;
        };
        self.liveness.next_nonce = self.liveness.next_nonce.wrapping_add(1);
        let nonce = self.liveness.next_nonce;
        self.liveness.out = Some((nonce, now));
        self.send(current.session, LeafToSupernode::Ping { nonce });
    }

    /// The current supernode answered a ping.
    pub(super) fn pong(&mut self, nonce: u64) {
        if self.liveness.out.is_some_and(|(out, _)| out == nonce) {
            self.liveness.out = None;
        }
    }

    /// When the ping out is overdue, if one is.
    pub(super) fn ping_due(&self) -> Option<Instant> {
        let (_, sent) = self.liveness.out?;
        let rtt = self.current.map_or(MAX_PATIENCE, |c| c.rtt);
        Some(sent + LivenessCheck::patience(rtt))
    }

    /// Gives the current supernode up if its ping is overdue and a spare can take over.
    pub(super) fn check_liveness(&mut self, now: Instant) {
        if self.ping_due().is_none_or(|due| now < due) || self.spares.is_empty() {
            return;
        }
        let Some(current) = self.current else {
            return;
        };
        self.liveness.reset();
        self.actions.push_back(LeafAction::Close {
            session: current.session,
            reason: "no answer to a ping",
        });
        self.handle_session_ended(now, current.session);
    }
}
