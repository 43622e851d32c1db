//! The supernode core's side of the keyword directory (see `directory/`): keeping the
//! owners told what our index holds, answering as an owner, looking a query's words up
//! and asking the named supernodes directly, over the pooled directory sessions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use superpeer_common::wire::{
    CloseCode, DirHolder, KeywordCount, MAX_DIRECTORY_HOLDERS, SupernodeToSupernode,
};
use superpeer_common::{NodeId, TokenBucket};

use super::{
    Action, MAX_RUNNING_PER_NEIGHBOR, NEIGHBOR_MESSAGE_BURST, NEIGHBOR_MESSAGES_PER_SECOND,
    NEIGHBOR_QUERIES_PER_SECOND, NEIGHBOR_QUERY_BURST, SupernodeCore, bad_hits,
};
use crate::SessionId;
use crate::directory::MemberSet;
use crate::directory::lookup::LookupStep;
use crate::directory::peers::{Budgets, PeerStep};
use crate::router::Asker;

/// Keywords one member may publish to us: per second, and burst (a new member of a
/// 10,000-supernode network is sent about 3/10,000 of every index at once).
pub const PUBLISHED_KEYWORDS_PER_SECOND: f64 = 5_000.0;
pub const PUBLISHED_KEYWORD_BURST: u32 = 50_000;
/// An owner taking one member fewer or more than the publisher's view still takes the word.
const OWNER_SLACK: usize = 1;
/// Publishes are gathered this long, so a leaf's files go to each owner in one batch.
pub const PUBLISH_BATCH: Duration = Duration::from_millis(500);
/// New connections publishing may open per flush (32 a second).
pub const NEW_PUBLISH_SESSIONS: usize = 16;

/// The directory's counters, for status, the simulator and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectoryStatus {
    /// Live supernodes known (from the list servers).
    pub members: usize,
    /// Keywords our index holds, told to their owners.
    pub published_keywords: usize,
    /// As an owner: keywords held, and (keyword, publisher) pairs.
    pub owned_keywords: usize,
    pub owned_pairs: usize,
    /// Directory sessions open, either way.
    pub sessions: usize,
    /// Publish messages sent, and keywords in them.
    pub publishes_sent: u64,
    pub keywords_sent: u64,
    /// Keywords an owner refused as not its own, or past its caps (from its replies).
    pub refused_not_owner: u64,
    pub refused_capped: u64,
    /// As an owner: keywords refused because the publisher is not a member, not ours, or
    /// over a cap or rate.
    pub refused_to_others: u64,
    /// Lookups sent, and queries that asked supernodes directly.
    pub lookups_sent: u64,
    pub lookups_answered: u64,
    /// Directory messages that could not go (no room for a connection, unreachable).
    pub unreachable: u64,
}

impl SupernodeCore {
    /// The membership changed (a fetch from the list servers): `members` is the whole new
    /// set, `joined` and `left` what changed.
    pub fn members_changed(
        &mut self,
        now: Instant,
        members: Arc<MemberSet>,
        joined: &[NodeId],
        left: &[NodeId],
    ) {
        self.members = members;
        self.publisher.members_changed(&self.members, joined, left);
        for node in left {
            self.member_unreachable(now, *node, false);
        }
    }

    /// The current membership.
    pub fn members(&self) -> &Arc<MemberSet> {
        &self.members
    }

    /// A directory session with `node` is up on `session` (`outgoing`: we asked for it).
    /// Returns false if it is to be closed: a supernode that is not a member may not use
    /// the directory.
    pub fn direct_up(
        &mut self,
        now: Instant,
        session: SessionId,
        node: NodeId,
        outgoing: bool,
    ) -> bool {
        if !outgoing && !self.members.contains(&node) {
            return false;
        }
        let budgets = Budgets {
            queries: TokenBucket::new(now, NEIGHBOR_QUERIES_PER_SECOND, NEIGHBOR_QUERY_BURST),
            messages: TokenBucket::new(now, NEIGHBOR_MESSAGES_PER_SECOND, NEIGHBOR_MESSAGE_BURST),
            keywords: TokenBucket::new(now, PUBLISHED_KEYWORDS_PER_SECOND, PUBLISHED_KEYWORD_BURST),
        };
        let mut steps = Vec::new();
        self.peers
            .up(now, session, node, outgoing, budgets, &mut steps);
        self.run_peer_steps(now, steps);
        true
    }

    /// A directory connection the core asked for could not be opened.
    pub fn direct_failed(&mut self, now: Instant, node: NodeId) {
        if self.peers.failed(node) {
            self.member_unreachable(now, node, true);
        }
    }

    /// A directory session ended.
    pub(super) fn direct_gone(&mut self, now: Instant, session: SessionId) {
        self.router.session_gone(now, session);
        if let Some((node, unanswered)) = self.peers.gone(session) {
            self.member_unreachable(now, node, unanswered);
        }
        self.drain_router(now);
    }

    /// `node` cannot be reached now: nothing waits for it. `lost`: messages for it were
    /// dropped (a failed or refused connection), so its keywords go again later.
    fn member_unreachable(&mut self, now: Instant, node: NodeId, lost: bool) {
        self.directory_stats.unreachable += 1;
        if lost && self.members.contains(&node) {
            self.publisher.owner_unreachable(now, node);
        }
        self.router.member_gone(now, node);
        let steps = self.lookups.unreachable(now, node);
        self.run_lookup_steps(now, steps);
        self.drain_router(now);
    }

    /// Whether a query from our own leaf should ask the directory too.
    pub(super) fn wants_directory(&self, found: usize, want: u32) -> bool {
        self.config.directory && !self.members.is_empty() && found < want as usize
    }

    /// Starts the lookups for a query the router runs with `directory` set.
    pub(super) fn start_lookups(
        &mut self,
        now: Instant,
        id: superpeer_common::wire::QueryId,
        keywords: &[String],
    ) {
        let steps = self
            .lookups
            .start(now, id, keywords, &self.members, self.me.node_id);
        self.run_lookup_steps(now, steps);
    }

    fn run_lookup_steps(&mut self, now: Instant, steps: Vec<LookupStep>) {
        for step in steps {
            match step {
                LookupStep::Send(node, msg) => {
                    self.directory_stats.lookups_sent += 1;
                    self.send_member(now, node, msg);
                }
                LookupStep::Done(id, holders) => {
                    let holders = holders.map(|holders| self.not_asked_anyway(&id, holders));
                    self.router.directory_done(now, id, holders);
                }
            }
        }
        self.drain_router(now);
    }

    /// Leaves out ourselves and the neighbours the fast path asks anyway.
    fn not_asked_anyway(
        &self,
        id: &superpeer_common::wire::QueryId,
        holders: Vec<NodeId>,
    ) -> Vec<NodeId> {
        let keywords = self.router.keywords_of(id).unwrap_or_default();
        holders
            .into_iter()
            .filter(|h| *h != self.me.node_id)
            .filter(|h| {
                !self
                    .neighbors
                    .values()
                    .any(|n| n.node_id == *h && n.summary.may_contain_all(&keywords))
            })
            .collect()
    }

    /// Sends to a member by node id, over a pooled directory session.
    pub(super) fn send_member(&mut self, now: Instant, node: NodeId, msg: SupernodeToSupernode) {
        let Some(addr) = self.members.addr(&node) else {
            self.directory_stats.unreachable += 1;
            self.router.member_gone(now, node);
            return;
        };
        let mut steps = Vec::new();
        let sent = self.peers.send(now, node, addr, msg, &mut steps);
        self.run_peer_steps(now, steps);
        if !sent {
            self.member_unreachable(now, node, true);
        }
    }

    fn run_peer_steps(&mut self, _now: Instant, steps: Vec<PeerStep>) {
        for step in steps {
            self.actions.push_back(match step {
                PeerStep::Connect { node_id, addr } => Action::Connect { node_id, addr },
                PeerStep::Send(session, msg) => Action::ToNeighbor(session, msg),
                PeerStep::Close(session) => Action::Close {
                    session,
                    code: CloseCode::Normal,
                    reason: "idle".into(),
                },
            });
        }
    }

    /// A message on a directory session.
    pub(super) fn direct_message(
        &mut self,
        now: Instant,
        session: SessionId,
        msg: SupernodeToSupernode,
    ) {
        let Some(peer) = self.peers.get_mut(now, session) else {
            return;
        };
        if !peer.budgets.messages.try_take(now) {
            return self.violation(session, "too many messages");
        }
        if let Err(e) = msg.validate_directory() {
            return self.violation(session, &e.to_string());
        }
        let from = peer.node_id;
        match msg {
            SupernodeToSupernode::DirPublish { keywords } => {
                let n = u32::try_from(keywords.len()).unwrap_or(u32::MAX);
                let allowed = peer.budgets.keywords.try_take_n(now, n);
                let reply = self.take_publish(now, from, &keywords, allowed);
                self.send_neighbor(session, reply);
            }
            SupernodeToSupernode::DirPublished {
                not_owner, capped, ..
            } => {
                self.peers.publish_answered(session);
                self.directory_stats.refused_not_owner += u64::from(not_owner);
                self.directory_stats.refused_capped += u64::from(capped);
                // Refused as not its own: its view of the membership differs from ours
                // (one of us lags), so its words go again once views have met.
                if not_owner > 0 {
                    self.publisher.owner_unreachable(now, from);
                } else {
                    self.publisher.owner_took(from);
                }
            }
            SupernodeToSupernode::DirLookup { id, keyword } => {
                let allowed = peer.budgets.queries.try_take(now);
                let reply = self.answer_lookup(now, from, id, keyword, allowed);
                self.send_neighbor(session, reply);
            }
            SupernodeToSupernode::DirHolders {
                id,
                keyword,
                owner,
                total,
                holders,
            } => {
                self.directory_stats.lookups_answered += 1;
                let answer = owner.then_some((total, holders));
                let steps = self.lookups.answered(now, from, id, &keyword, answer);
                self.run_lookup_steps(now, steps);
            }
            SupernodeToSupernode::Query { query, .. } => {
                self.queries_from_neighbors += 1;
                if let Err(e) = query.validate() {
                    return self.violation(session, &e.to_string());
                }
                let id = query.id;
                let over_rate = !peer.budgets.queries.try_take(now);
                if over_rate || self.router.running_for(session) >= MAX_RUNNING_PER_NEIGHBOR {
                    self.busy_for_neighbors += 1;
                    return self.send_neighbor(session, SupernodeToSupernode::QueryDone { id });
                }
                match self.normalize(query) {
                    // Asked directly: it answers for itself, and goes no further.
                    Ok(query) => self.start_query(now, query, Asker::Neighbor(session), 0),
                    Err(_) => self.send_neighbor(session, SupernodeToSupernode::QueryDone { id }),
                }
            }
            SupernodeToSupernode::Hits { id, hits } => {
                if let Some(bad) = bad_hits(&hits) {
                    return self.violation(session, &bad);
                }
                let unmatched = self.router.handle_direct_hits(now, from, id, hits);
                self.drain_router(now);
                if unmatched > 0 {
                    self.violation(session, "hits that do not match the query");
                }
            }
            SupernodeToSupernode::QueryDone { id } => {
                // Either the asker stops a query it asked us, or one we asked is done.
                self.router.handle_done(now, session, id);
                self.router.handle_direct_done(now, from, id);
                self.drain_router(now);
            }
            SupernodeToSupernode::Ping { nonce } => {
                self.send_neighbor(session, SupernodeToSupernode::Pong { nonce })
            }
            SupernodeToSupernode::Pong { .. } => {}
            SupernodeToSupernode::Summary { .. } | SupernodeToSupernode::Known { .. } => {
                self.violation(session, "a link message on a directory session")
            }
        }
    }

    /// As an owner: a member's publish, within its keyword budget (`allowed`).
    fn take_publish(
        &mut self,
        now: Instant,
        from: NodeId,
        keywords: &[KeywordCount],
        allowed: bool,
    ) -> SupernodeToSupernode {
        let n = u32::try_from(keywords.len()).unwrap_or(u32::MAX);
        if !allowed || !self.members.contains(&from) {
            self.directory_stats.refused_to_others += u64::from(n);
            return SupernodeToSupernode::DirPublished {
                accepted: 0,
                not_owner: if allowed { n } else { 0 },
                capped: if allowed { 0 } else { n },
            };
        }
        let adds: Vec<(String, u32)> = keywords
            .iter()
            .map(|k| (k.keyword.clone(), k.count))
            .collect();
        let me = self.me.node_id;
        let members = &self.members;
        let outcome = self
            .store
            .publish(now, from, &adds, &[], |k| members.owns(k, &me, OWNER_SLACK));
        let refused = outcome.not_owner + outcome.capped;
        self.directory_stats.refused_to_others += refused as u64;
        let count = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        SupernodeToSupernode::DirPublished {
            accepted: count(outcome.accepted),
            not_owner: count(outcome.not_owner),
            capped: count(outcome.capped),
        }
    }

    /// As an owner: who holds `keyword`. Past the asker's budget, or not ours, the answer
    /// says we are not the owner, so the asker moves on to the next.
    fn answer_lookup(
        &mut self,
        now: Instant,
        from: NodeId,
        id: superpeer_common::wire::QueryId,
        keyword: String,
        allowed: bool,
    ) -> SupernodeToSupernode {
        let owner = allowed
            && self.members.contains(&from)
            && self.members.owns(&keyword, &self.me.node_id, OWNER_SLACK);
        let (total, holders) = if owner {
            // A holder that left the membership is gone now, not when its entries expire.
            let all: Vec<(NodeId, u32)> = self
                .store
                .holders(now, &keyword)
                .into_iter()
                .filter_map(|(hash, count)| Some((self.members.id_of_hash(hash)?, count)))
                .collect();
            let total = u32::try_from(all.len()).unwrap_or(u32::MAX);
            let holders = all
                .into_iter()
                .take(MAX_DIRECTORY_HOLDERS)
                .map(|(node_id, count)| DirHolder { node_id, count })
                .collect();
            (total, holders)
        } else {
            (0, Vec::new())
        };
        SupernodeToSupernode::DirHolders {
            id,
            keyword,
            owner,
            total,
            holders,
        }
    }

    /// The directory's part of the clock: lookups past their time, idle sessions, the
    /// index's changes to the owners (batched), refreshes, and expiry as an owner.
    pub(super) fn directory_timeout(&mut self, now: Instant) {
        let steps = self.lookups.handle_timeout(now);
        self.run_lookup_steps(now, steps);
        let mut steps = Vec::new();
        let stuck = self.peers.expire(now, &mut steps);
        self.run_peer_steps(now, steps);
        for node in stuck {
            self.member_unreachable(now, node, true);
        }
        let changes = self.index.take_keyword_changes();
        if self.config.directory {
            for (keyword, count) in changes {
                self.publisher
                    .keyword_changed(&self.members, &keyword, count);
            }
        }
        if now >= self.last_store_expiry + Duration::from_secs(10) {
            self.last_store_expiry = now;
            self.store.expire(now);
        }
        if now < self.last_publish + PUBLISH_BATCH || !self.config.directory {
            return;
        }
        self.last_publish = now;
        self.publisher.refresh(now, &self.members);
        self.flush_publishes(now);
    }

    /// Sends what the publisher has for the owners, as far as the pool has room for
    /// publishes and at most [`NEW_PUBLISH_SESSIONS`] new connections a flush; the rest
    /// waits for the next flush (so a supernode whose words have a thousand owners reaches
    /// them over a minute, never by dropping what does not fit).
    fn flush_publishes(&mut self, now: Instant) {
        let mut opened = 0;
        for (owner, keywords) in self.publisher.take_batches() {
            if owner == self.me.node_id {
                let adds: Vec<(String, u32)> =
                    keywords.into_iter().map(|k| (k.keyword, k.count)).collect();
                self.store.publish(now, owner, &adds, &[], |_| true);
                continue;
            }
            let Some(addr) = self.members.addr(&owner) else {
                continue; // left the membership: its keywords went to the next owner
            };
            if opened >= NEW_PUBLISH_SESSIONS && !self.peers.is_reaching(&owner) {
                self.publisher.requeue(owner, keywords);
                continue;
            }
            let n = keywords.len() as u64;
            let mut steps = Vec::new();
            match self.peers.publish(
                now,
                owner,
                addr,
                SupernodeToSupernode::DirPublish { keywords },
                &mut steps,
            ) {
                Ok(()) => {
                    opened += steps
                        .iter()
                        .filter(|s| matches!(s, PeerStep::Connect { .. }))
                        .count();
                    self.directory_stats.publishes_sent += 1;
                    self.directory_stats.keywords_sent += n;
                    self.run_peer_steps(now, steps);
                }
                Err(SupernodeToSupernode::DirPublish { keywords }) => {
                    self.run_peer_steps(now, steps);
                    self.publisher.requeue(owner, keywords);
                }
                Err(_) => {}
            }
        }
    }

    /// When the directory's clock must run next.
    pub(super) fn directory_poll_timeout(&self) -> Option<Instant> {
        let publish = self
            .publisher
            .has_batches()
            .then_some(self.last_publish + PUBLISH_BATCH);
        match (self.lookups.poll_timeout(), publish) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The directory's counters now.
    pub fn directory_status(&self) -> DirectoryStatus {
        let (owned_keywords, owned_pairs) = self.store.size();
        DirectoryStatus {
            members: self.members.len(),
            published_keywords: self.publisher.len(),
            owned_keywords,
            owned_pairs,
            sessions: self.peers.len(),
            ..self.directory_stats.clone()
        }
    }
}

#[cfg(test)]
#[path = "core_directory_tests.rs"]
mod tests;
