//! Spare supernodes: with `supernodes` above 1, a leaf attaches to the next lowest-RTT
//! supernodes with room beside its current one and publishes its files to each (Gnutella
//! 0.6 leaves keep 3-4 ultrapeers for this). A crash of the current supernode then hides
//! nothing: the spares index the files already, and the first spare takes over as current
//! at once, its limits known and its index filled, while a replacement spare is found in
//! the background (the usual probes, backoffs and hysteresis).
//!
//! Searches go through the current supernode only; a spare's session carries publishing,
//! its supernode list, and what a downloader asks through it (dial-backs and relays: a
//! search that reached us through a spare names the spare as our way in).

use std::time::{Duration, Instant};

use rand::Rng;
use superpeer_common::wire::{LeafLimits, QueryId, SupernodeToLeaf};
use superpeer_common::{NodeId, PeerAddr};

use super::publication::Publication;
use super::{ASSUMED_LIMITS, Attached, LeafAction, LeafCore, PUBLISH_RETRY, SessionNo};

/// A supernode we are attached to beside the current one.
pub(super) struct Spare {
    pub(super) attached: Attached,
    /// Its limits, once its first message came (we publish to it only then).
    pub(super) limits: Option<LeafLimits>,
    /// What it indexes of ours: its own record, the same files as the current one's.
    pub(super) publication: Publication,
}

/// What the attach under way is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AttachFor {
    /// The current supernode (the first, a failover with no spare, or a move).
    Current,
    /// A spare, replacing the named one if any (a clearly faster supernode was found).
    Spare { replaces: Option<NodeId> },
}

impl LeafCore {
    /// The next spare to attach to, if one is missing (or a clearly faster supernode than
    /// the slowest spare is known), and the current supernode is there.
    pub(super) fn spare_target(&self, now: Instant) -> Option<(PeerAddr, Duration, AttachFor)> {
        let current = self.current?;
        if 1 + self.spares.len() < self.config.supernodes {
            let (target, rtt) = self.joiner.next_secondary(now)?;
            return Some((target, rtt, AttachFor::Spare { replaces: None }));
        }
        let (target, rtt, slowest) = self.joiner.better_than_slowest(now)?;
        // Replacing the current supernode is a move; a spare is replaced in place.
        let replaces = (slowest != current.node_id).then_some(slowest);
        let attach_for = match replaces {
            Some(_) => AttachFor::Spare { replaces },
            None => AttachFor::Current,
        };
        Some((target, rtt, attach_for))
    }

    /// A spare welcomed us: publish to it once its limits come.
    pub(super) fn spare_welcomed(&mut self, attached: Attached, replaces: Option<NodeId>) {
        self.joiner.attached(attached.node_id);
        let publication =
            Publication::new(self.publication.all(), ASSUMED_LIMITS.max_entries as usize);
        self.spares.push(Spare {
            attached,
            limits: None,
            publication,
        });
        if let Some(old) = replaces
            && let Some(at) = self.spares.iter().position(|s| s.attached.node_id == old)
        {
            let old = self.spares.remove(at);
            self.joiner.left(old.attached.node_id);
            self.actions.push_back(LeafAction::Leave {
                session: old.attached.session,
                reason: "moved to a faster supernode",
            });
        }
    }

    /// A message on a spare's session. False if `session` is no spare's.
    pub(super) fn handle_spare_message(
        &mut self,
        now: Instant,
        session: SessionNo,
        msg: SupernodeToLeaf,
    ) -> bool {
        let Some(at) = self
            .spares
            .iter()
            .position(|s| s.attached.session == session)
        else {
            return false;
        };
        let Some(spare) = self.spares.get_mut(at) else {
            return false;
        };
        let via = PeerAddr::pinned(spare.attached.node_id, spare.attached.addr);
        match msg {
            SupernodeToLeaf::Limits(limits) => {
                spare.limits = Some(limits);
                spare.attached.limits_seen = true;
                spare.publication.reset(limits.max_entries as usize);
                let publish = spare.publication.fill();
                for msg in publish {
                    self.send(session, msg);
                }
            }
            SupernodeToLeaf::Indexed { entries, refused } => {
                let refused_now = refused.is_some();
                spare.publication.indexed(entries, refused);
                if refused_now && self.retry_publish.is_none() {
                    self.retry_publish = Some(now + PUBLISH_RETRY);
                }
            }
            SupernodeToLeaf::Supernodes(list) => {
                if list.validate().is_ok() {
                    self.joiner.add_suggested(now, &list.supernodes);
                    self.save_cache(now);
                }
            }
            SupernodeToLeaf::MoveTo { supernodes } => {
                let spare = self.spares.remove(at);
                self.joiner.add_suggested(now, &supernodes);
                self.joiner.lost(now, spare.attached.node_id);
                self.actions.push_back(LeafAction::Close {
                    session,
                    reason: "moving",
                });
                self.drive(now);
            }
            SupernodeToLeaf::Reachability(observed) => self.reachability.reported(observed),
            SupernodeToLeaf::DialBack { requester, addr } => {
                if self.reachability.allow_dial_back(now) {
                    self.actions
                        .push_back(LeafAction::DialBack { requester, addr });
                }
            }
            SupernodeToLeaf::OpenRelay { requester, token } => {
                if self.reachability.allow_dial_back(now) {
                    self.actions.push_back(LeafAction::OpenRelay {
                        requester,
                        token,
                        relay: via,
                    });
                }
            }
            // Searches go through the current supernode; anything else a spare sends about
            // them is stale.
            SupernodeToLeaf::Refused { .. }
            | SupernodeToLeaf::Pong { .. }
            | SupernodeToLeaf::Hits { .. }
            | SupernodeToLeaf::QueryDone { .. }
            | SupernodeToLeaf::QueryRefused { .. } => {}
        }
        true
    }

    /// A spare's session ended. False if `session` is no spare's.
    pub(super) fn spare_ended(&mut self, now: Instant, session: SessionNo) -> bool {
        let Some(at) = self
            .spares
            .iter()
            .position(|s| s.attached.session == session)
        else {
            return false;
        };
        let spare = self.spares.remove(at);
        self.joiner.lost(now, spare.attached.node_id);
        self.drive(now);
        true
    }

    /// The current supernode is gone: the first spare takes its place with what it indexes
    /// and its limits, and the searches that were out on the lost one go out again to it
    /// (those its query budget cannot take now end with `why`). False if there is no spare.
    pub(super) fn spare_takes_over(&mut self, now: Instant, why: &str) -> bool {
        if self.spares.is_empty() {
            return false;
        }
        let spare = self.spares.remove(0);
        self.liveness.reset();
        self.current = Some(spare.attached);
        self.publication = spare.publication;
        // A spare whose limits have not come yet is taken at the default ones (searches
        // that were out would otherwise end; its `Limits` replaces them when it comes).
        self.searches
            .set_limits(now, spare.limits.unwrap_or(ASSUMED_LIMITS));
        let rng = &mut self.rng;
        let (again, over) = self.searches.resend(now, || QueryId(rng.random()), why);
        for query in again {
            self.send_query(now, query);
        }
        for out in over {
            self.output(out);
        }
        for query in self.searches.poll_queued(now) {
            self.send_query(now, query);
        }
        true
    }

    /// Tells every spare about a change of the shared folder.
    pub(super) fn spares_share_delta(&mut self, delta: &crate::share::ShareDelta) {
        let mut out = Vec::new();
        for spare in &mut self.spares {
            let limits_seen = spare.attached.limits_seen;
            let msgs = spare.publication.change(delta.clone(), limits_seen);
            out.extend(msgs.into_iter().map(|m| (spare.attached.session, m)));
        }
        for (session, msg) in out {
            self.send(session, msg);
        }
    }

    /// Publishes again to the spares that refused some files.
    pub(super) fn spares_retry_publish(&mut self) {
        let mut out = Vec::new();
        for spare in self.spares.iter_mut().filter(|s| s.attached.limits_seen) {
            let msgs = spare.publication.retry();
            out.extend(msgs.into_iter().map(|m| (spare.attached.session, m)));
        }
        for (session, msg) in out {
            self.send(session, msg);
        }
    }

    /// Leaves every spare (promoted to supernode).
    pub(super) fn leave_spares(&mut self, reason: &'static str) {
        for spare in std::mem::take(&mut self.spares) {
            self.actions.push_back(LeafAction::Leave {
                session: spare.attached.session,
                reason,
            });
        }
    }

    /// The supernodes we are attached to, current first.
    pub fn attached_supernodes(&self) -> Vec<super::SupernodeView> {
        self.current
            .iter()
            .chain(self.spares.iter().map(|s| &s.attached))
            .map(|a| super::SupernodeView {
                node_id: a.node_id,
                addr: a.addr,
                rtt: self.joiner.rtt(&a.node_id).unwrap_or(a.rtt),
            })
            .collect()
    }
}
