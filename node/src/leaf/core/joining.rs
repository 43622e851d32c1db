//! The leaf core's choice of supernode: probes, the first-join wait, attaching, failover,
//! and what a supernode tells us over the session.

use std::time::{Duration, Instant};

use superpeer_common::wire::{LeafToSupernode, Load, SupernodeInfo, SupernodeToLeaf};
use superpeer_common::{NodeId, PeerAddr};

use super::promotion::Role;
use super::spares::AttachFor;
use super::{
    ASSUMED_LIMITS, AttachOutcome, Attached, CACHE_SAVE_EVERY, LeafAction, LeafCore, PUBLISH_RETRY,
    REFRESH_MIN_GAP, SUPERNODES_ASKED, SessionNo, Source,
};

impl LeafCore {
    /// A probe finished: its median RTT and the load it reported, or failure.
    pub fn handle_probe(
        &mut self,
        now: Instant,
        node_id: NodeId,
        result: Option<(Duration, Option<Load>)>,
    ) {
        if result.is_some()
            && self.first_answer.is_none()
            && let Some(since) = self.probing_since
        {
            self.first_answer = Some(now.saturating_duration_since(since));
        }
        self.joiner.probe_result(now, node_id, result);
        self.drive(now);
    }

    /// Supernodes learned of.
    pub fn handle_learned(&mut self, now: Instant, infos: &[SupernodeInfo], source: Source) {
        if let Source::ListServer { short } = source {
            let listed = infos.iter().filter(|i| !i.stale).count();
            self.election.list_answer(now, short, listed);
        }
        self.joiner.add(now, infos);
        if matches!(source, Source::ListServer { .. }) {
            self.save_cache(now);
        }
        self.drive(now);
    }

    /// An attach attempt ended.
    pub fn handle_attach(&mut self, now: Instant, session: SessionNo, outcome: AttachOutcome) {
        let Some((node_id, rtt, no, addr)) = self.attaching else {
            return;
        };
        if no != session {
            return;
        }
        self.attaching = None;
        if !matches!(self.role, Role::Leaf) {
            // Promoted while this attach ran.
            if outcome == AttachOutcome::Welcomed {
                self.actions.push_back(LeafAction::Close {
                    session,
                    reason: "promoted to supernode",
                });
            }
            return;
        }
        let attach_for = std::mem::replace(&mut self.attach_for, AttachFor::Current);
        match (outcome, attach_for) {
            (AttachOutcome::Welcomed, AttachFor::Spare { replaces }) if self.current.is_some() => {
                let attached = Attached {
                    node_id,
                    addr,
                    rtt,
                    session,
                    limits_seen: false,
                };
                self.spare_welcomed(attached, replaces);
            }
            (AttachOutcome::Welcomed, _) => {
                self.liveness.reset();
                let old = self.current.replace(Attached {
                    node_id,
                    addr,
                    rtt,
                    session,
                    limits_seen: false,
                });
                self.joiner.attached(node_id);
                self.ever_attached = true;
                if let Some(old) = old {
                    self.joiner.left(old.node_id);
                    self.actions.push_back(LeafAction::Leave {
                        session: old.session,
                        reason: "moved to a faster supernode",
                    });
                }
                self.end_searches(
                    "the search was cut short: this node moved to another supernode; try again",
                );
                self.publication.reset(ASSUMED_LIMITS.max_entries as usize);
                self.retry_publish = None;
                // Searches wait for the supernode's limits (its first message).
                self.searches.hold();
                self.send(
                    session,
                    LeafToSupernode::GetSupernodes {
                        max: SUPERNODES_ASKED,
                    },
                );
            }
            (AttachOutcome::Full(try_instead), attach_for) => {
                // A spare refused says nothing about a shortage of supernodes: we have one.
                if attach_for == AttachFor::Current {
                    self.election.refused_full(now);
                }
                self.joiner.refused(now, node_id, &try_instead);
            }
            (AttachOutcome::Failed(_), _) => self.joiner.attach_failed(now, node_id),
        }
        self.drive(now);
    }

    /// A session ended (closed by either side, or silent past the idle timeout).
    pub fn handle_session_ended(&mut self, now: Instant, session: SessionNo) {
        if let Some((node_id, _, no, _)) = self.attaching
            && no == session
        {
            // Ended before its attach was reported: the attach failed.
            self.attaching = None;
            self.joiner.attach_failed(now, node_id);
            self.drive(now);
            return;
        }
        let Some(current) = self.current.take_if(|c| c.session == session) else {
            self.spare_ended(now, session);
            return;
        };
        self.joiner.lost(now, current.node_id);
        // Our files are indexed at a spare already; the searches go on through it.
        if self.spare_takes_over(
            now,
            "the search was cut short: the supernode went away; try again in a moment",
        ) {
            self.drive(now);
            return;
        }
        self.lost_supernode(now);
    }

    pub(super) fn lost_supernode(&mut self, now: Instant) {
        self.end_searches(
            "the search was cut short: the supernode went away; try again in a moment",
        );
        self.publication.reset(ASSUMED_LIMITS.max_entries as usize);
        self.retry_publish = None;
        if self.config.list_servers {
            self.fetch_lists(now);
        }
        self.drive(now);
    }

    /// A message from the supernode of `session`.
    pub fn handle_message(&mut self, now: Instant, session: SessionNo, msg: SupernodeToLeaf) {
        let Some(current) = self.current.filter(|c| c.session == session) else {
            self.handle_spare_message(now, session, msg);
            return;
        };
        match msg {
            SupernodeToLeaf::Limits(limits) => {
                self.searches.set_limits(now, limits);
                for query in self.searches.poll_queued(now) {
                    self.send_query(now, query);
                }
                self.publication.reset(limits.max_entries as usize);
                self.retry_publish = None;
                if let Some(c) = self.current.as_mut() {
                    c.limits_seen = true;
                }
                for msg in self.publication.fill() {
                    self.send(session, msg);
                }
            }
            SupernodeToLeaf::Indexed { entries, refused } => {
                let refused_now = refused.is_some();
                self.publication.indexed(entries, refused);
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
                self.current = None;
                self.joiner.add_suggested(now, &supernodes);
                self.joiner.lost(now, current.node_id);
                self.actions.push_back(LeafAction::Close {
                    session,
                    reason: "moving",
                });
                if self.spare_takes_over(
                    now,
                    "the search was cut short: this node moved to another supernode; try again",
                ) {
                    self.drive(now);
                } else {
                    self.lost_supernode(now);
                }
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
                        relay: PeerAddr::pinned(current.node_id, current.addr),
                    });
                }
            }
            SupernodeToLeaf::Pong { nonce } => self.pong(nonce),
            SupernodeToLeaf::Refused { .. } => {}
            answer @ (SupernodeToLeaf::Hits { .. }
            | SupernodeToLeaf::QueryDone { .. }
            | SupernodeToLeaf::QueryRefused { .. }) => {
                if let Some(out) = self.searches.answer(answer) {
                    self.output(out);
                }
            }
        }
    }

    /// Starts probes and an attach when one is due.
    pub(super) fn drive(&mut self, now: Instant) {
        if !matches!(self.role, Role::Leaf) {
            return;
        }
        for target in self.joiner.poll_probes(now) {
            self.actions.push_back(LeafAction::Probe(target));
        }
        if !self.joiner.probing() {
            self.probing_since = None;
            self.first_answer = None;
        } else if self.probing_since.is_none() {
            self.probing_since = Some(now);
        }
        if self.attaching.is_some() {
            return;
        }
        // The first join compares the probes that matter rather than taking whichever
        // answers first; a failover uses what is measured.
        let waiting = self.first_join_ends().is_some_and(|end| now < end);
        if self.current.is_none() && !self.ever_attached && waiting {
            return;
        }
        let target = match &self.current {
            None => self
                .joiner
                .next_attach(now)
                .map(|(target, rtt)| (target, rtt, AttachFor::Current)),
            Some(_) if self.config.supernodes > 1 => self.spare_target(now),
            Some(_) => self
                .joiner
                .better_than_current(now)
                .map(|(target, rtt)| (target, rtt, AttachFor::Current)),
        };
        match target {
            Some((target, rtt, attach_for)) => {
                self.attach_for = attach_for;
                self.attach(target, rtt);
            }
            // Nothing usable, for the current supernode or a missing spare: ask the list
            // servers again (not too often).
            None if (self.current.is_none() || 1 + self.spares.len() < self.config.supernodes)
                && !self.joiner.probing()
                && self.config.list_servers
                && self
                    .last_refresh
                    .is_none_or(|t| now.duration_since(t) >= REFRESH_MIN_GAP) =>
            {
                self.fetch_lists(now);
            }
            None => {}
        }
    }

    pub(super) fn attach(&mut self, target: PeerAddr, rtt: Duration) {
        let Some(node_id) = target.node_id else {
            return;
        };
        self.next_session += 1;
        let session = SessionNo(self.next_session);
        self.attaching = Some((node_id, rtt, session, target.addr));
        self.actions
            .push_back(LeafAction::Attach { target, session });
    }

    pub(super) fn fetch_lists(&mut self, now: Instant) {
        self.last_refresh = Some(now);
        self.actions.push_back(LeafAction::FetchLists);
    }

    /// Saves the known supernodes now, or marks them to be saved once
    /// [`CACHE_SAVE_EVERY`] has passed since the last save. An empty list is never saved
    /// (it would only replace what an earlier run knew), and the wait starts with the
    /// first list that is not: a first list that came before any supernode was listed
    /// must not keep the cache empty for five minutes.
    pub(super) fn save_cache(&mut self, now: Instant) {
        if now < self.next_cache_save {
            self.cache_dirty = true;
            return;
        }
        let known = self.joiner.known();
        self.cache_dirty = false;
        if known.is_empty() {
            return;
        }
        self.next_cache_save = now + CACHE_SAVE_EVERY;
        self.actions.push_back(LeafAction::SaveCache(known));
    }
}
