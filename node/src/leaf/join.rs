//! Which supernode a leaf attaches to: the joining state machine.
//!
//! No sockets, no clock: the daemon feeds in candidates, probe results and what happened to
//! attach attempts, and asks what to do next. The flow (as KaZaA's leaves did it):
//!
//! 1. Candidates come from list servers, the cached list, `--peer`, and supernodes' lists.
//! 2. [`Joiner::poll_probes`]: up to `probe_batch` unprobed (or stale) candidates to measure
//!    at once; results come back through [`Joiner::probe_result`] (median RTT of several
//!    samples, and the load the supernode reports).
//! 3. [`Joiner::next_attach`]: the lowest-RTT candidate that has room and is not backing off.
//!    A full supernode's refusal ([`Joiner::refused`]) marks it full for a while and adds its
//!    suggestions as candidates; a failure backs off exponentially.
//! 4. While attached, re-probing may find a clearly faster supernode: [`Joiner::better_than_current`]
//!    suggests a move only past a hysteresis (much faster *and* faster by a margin), so a
//!    leaf does not flap between two similar supernodes. Each round ([`Joiner::new_round`])
//!    an attached leaf spends at most `probes_per_round` probes: the current supernode and
//!    the best measured ones first, then candidates never measured. A leaf that knows 500
//!    supernodes must not probe them all every round: the simulator showed 200 leaves a
//!    supernode making 500 probes a second at every supernode that way.
//! 5. When the supernode goes away ([`Joiner::lost`]), the next best candidate is chosen
//!    at once; the lost one backs off.
//!
//! Trust (SECURITY.md): list servers (which dial a supernode back before listing it), the
//! operator's `--peer` and our own cache are believed ([`Joiner::add`]). A supernode's
//! suggestions (its lists, `MoveTo`, `try_instead`) only add candidates
//! ([`Joiner::add_suggested`]): they never change a known address, one that fails a probe
//! or an attach is dropped at the next round, and they reach the cache only once they have
//! answered a probe. Every candidate nobody has named for [`CANDIDATE_TTL`] is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use superpeer_common::wire::{Load, SupernodeInfo};
use superpeer_common::{NodeId, PeerAddr};

/// A candidate nobody has named for this long is forgotten (unless we are attached to it).
pub const CANDIDATE_TTL: Duration = Duration::from_secs(600);

/// The share of a supernode's capacity a leaf's extra attachments leave free for leaves
/// that have none (the list server calls a supernode full at 90% too).
pub const SECONDARY_HEADROOM: f64 = 0.1;

/// Tunables of joining.
#[derive(Clone, Debug)]
pub struct JoinConfig {
    /// Candidates probed at once.
    pub probe_batch: usize,
    /// A probe older than this is measured again before it is trusted.
    pub probe_ttl: Duration,
    /// Move only to a supernode whose RTT is below this share of the current one...
    pub move_ratio: f64,
    /// ...and lower by at least this much.
    pub move_margin: Duration,
    /// How long a supernode that refused us as full is left alone.
    pub full_backoff: Duration,
    /// First wait after a failure; doubles per failure up to `max_backoff`.
    pub failure_backoff: Duration,
    /// Longest wait after failures.
    pub max_backoff: Duration,
    /// Most candidates remembered.
    pub max_candidates: usize,
    /// Probes an attached leaf makes per round (half re-measuring the best known, the
    /// current one first; half trying candidates never measured). A leaf looking for a
    /// supernode probes whatever is due, `probe_batch` at a time.
    pub probes_per_round: usize,
}

impl Default for JoinConfig {
    fn default() -> Self {
        Self {
            probe_batch: 5,
            probe_ttl: Duration::from_secs(120),
            move_ratio: 0.5,
            move_margin: Duration::from_millis(10),
            full_backoff: Duration::from_secs(30),
            failure_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_candidates: 200,
            probes_per_round: 6,
        }
    }
}

/// A candidate as status shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CandidateView {
    pub node_id: NodeId,
    pub addr: SocketAddr,
    /// The median RTT of its last probe, if it answered one that still counts.
    pub rtt: Option<Duration>,
    /// The load it (or whoever named it) last reported.
    pub load: Option<Load>,
    /// We are attached to it.
    pub attached: bool,
}

/// What a candidate is known to be.
#[derive(Clone, Debug)]
struct Candidate {
    addr: SocketAddr,
    load: Option<Load>,
    rtt: Option<(Duration, Instant)>,
    /// Its RTT is to be measured again, however recent (see [`Joiner::new_round`]).
    stale: bool,
    probing: bool,
    failures: u32,
    not_before: Option<Instant>,
    /// When a source last named it.
    named: Instant,
    /// Only a supernode named it: unproven until it answers a probe.
    suggested: bool,
}

impl Candidate {
    fn new(now: Instant, addr: SocketAddr, load: Option<Load>, suggested: bool) -> Self {
        Self {
            addr,
            load,
            rtt: None,
            stale: false,
            probing: false,
            failures: 0,
            not_before: None,
            named: now,
            suggested,
        }
    }

    fn has_room(&self) -> bool {
        self.load
            .is_none_or(|l| l.capacity == 0 || l.leaves < l.capacity)
    }

    /// Room for a leaf's second (or third) attachment: more than [`SECONDARY_HEADROOM`] of
    /// the capacity free, so spare attachments never take the last slots from leaves that
    /// have no supernode at all (a first attachment takes any free slot).
    fn has_room_for_secondary(&self) -> bool {
        self.load.is_none_or(|l| {
            l.capacity == 0
                || f64::from(l.leaves) < f64::from(l.capacity) * (1.0 - SECONDARY_HEADROOM)
        })
    }

    fn ready(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }
}

/// The joining state machine.
#[derive(Debug)]
pub struct Joiner {
    config: JoinConfig,
    me: NodeId,
    candidates: HashMap<NodeId, Candidate>,
    /// The supernodes we are attached to, in the order we attached.
    attached: Vec<NodeId>,
    /// How many the leaf wants to be attached to: short of that it is looking, and probes
    /// whatever is due rather than a round's budget.
    wanted: usize,
    /// Probes left in this round while attached.
    round: RoundBudget,
    /// Candidates being probed (kept, not counted: this is asked at every event).
    probing: usize,
}

/// An attached leaf's probes left in this round: for re-measuring known candidates and
/// for trying new ones; what one kind cannot use goes to the other.
#[derive(Clone, Copy, Debug)]
struct RoundBudget {
    remeasure: usize,
    explore: usize,
}

impl RoundBudget {
    fn new(per_round: usize) -> Self {
        Self {
            remeasure: per_round.div_ceil(2),
            explore: per_round / 2,
        }
    }

    fn spent(&self) -> bool {
        self.remeasure + self.explore == 0
    }

    /// How many of `measured` and of `unmeasured` due candidates to probe now, at most
    /// `room` in all; spends them.
    fn take(&mut self, measured: usize, unmeasured: usize, room: usize) -> (usize, usize) {
        let total = self.remeasure + self.explore;
        let mut m = measured.min(self.remeasure);
        let mut u = unmeasured.min(self.explore);
        // Lend what one kind cannot use to the other.
        m = measured.min(m + (self.explore - u));
        u = unmeasured.min(u + (self.remeasure.saturating_sub(m)));
        // Fit the batch, keeping the two in turn.
        while m + u > room.min(total) {
            if m > u { m -= 1 } else { u -= 1 }
        }
        let from_own = m.min(self.remeasure);
        self.remeasure -= from_own;
        self.explore -= (m - from_own).min(self.explore);
        let from_own = u.min(self.explore);
        self.explore -= from_own;
        self.remeasure = self.remeasure.saturating_sub(u - from_own);
        (m, u)
    }
}

impl Joiner {
    /// A joiner for node `me` (which never joins itself).
    pub fn new(me: NodeId, config: JoinConfig) -> Self {
        Self {
            round: RoundBudget::new(config.probes_per_round),
            config,
            me,
            candidates: HashMap::new(),
            attached: Vec::new(),
            wanted: 1,
            probing: 0,
        }
    }

    /// Adds or refreshes candidates a list server, `--peer` or the cache named: believed,
    /// so they may move a known supernode to a new address.
    pub fn add(&mut self, now: Instant, infos: &[SupernodeInfo]) {
        self.add_from(now, infos, false);
    }

    /// Adds candidates a supernode suggested: a known one keeps its address.
    pub fn add_suggested(&mut self, now: Instant, infos: &[SupernodeInfo]) {
        self.add_from(now, infos, true);
    }

    fn add_from(&mut self, now: Instant, infos: &[SupernodeInfo], suggested: bool) {
        for info in infos {
            if info.node_id == self.me {
                continue;
            }
            let room = self.candidates.len() < self.config.max_candidates;
            match self.candidates.get_mut(&info.node_id) {
                Some(c) if c.addr != info.addr && suggested => {}
                Some(c) => {
                    if c.addr != info.addr {
                        let probing = c.probing;
                        *c = Candidate::new(now, info.addr, Some(info.load), false);
                        c.probing = probing;
                    } else if c.rtt.is_none() || !info.stale {
                        c.load = Some(info.load);
                    }
                    c.named = now;
                    c.suggested &= suggested;
                }
                None if room => {
                    let load = (!info.stale).then_some(info.load);
                    let candidate = Candidate::new(now, info.addr, load, suggested);
                    self.candidates.insert(info.node_id, candidate);
                }
                None => {}
            }
        }
    }

    /// Drops what nobody has named for [`CANDIDATE_TTL`], and suggestions that failed.
    fn forget_stale(&mut self, now: Instant) {
        let attached = &self.attached;
        self.candidates.retain(|id, c| {
            c.probing
                || attached.contains(id)
                || (now.saturating_duration_since(c.named) < CANDIDATE_TTL
                    && !(c.suggested && c.failures > 0))
        });
    }

    /// Candidates to probe now (at most `probe_batch` probing at once), marked as probing.
    /// While attached, at most what is left of the round's budget.
    pub fn poll_probes(&mut self, now: Instant) -> Vec<PeerAddr> {
        let room = self.config.probe_batch.saturating_sub(self.probing);
        let settled = self.attached.len() >= self.wanted;
        if room == 0 || (settled && self.round.spent()) {
            return Vec::new();
        }
        let ttl = self.config.probe_ttl;
        let due = self
            .candidates
            .iter()
            .filter(|(_, c)| !c.probing && c.ready(now))
            .filter(|(_, c)| {
                c.stale
                    || c.rtt
                        .is_none_or(|(_, at)| now.saturating_duration_since(at) >= ttl)
            });
        let (mut measured, mut unmeasured): (Vec<_>, Vec<_>) = due
            .map(|(id, c)| {
                let first = !self.attached.contains(id);
                (first, c.rtt.map(|(rtt, _)| rtt), *id)
            })
            .partition(|(_, rtt, _)| rtt.is_some());
        measured.sort();
        unmeasured.sort();
        let chosen: Vec<NodeId> = if settled {
            // The attached ones and the best known, and the never measured, in turn.
            let (m, u) = self.round.take(measured.len(), unmeasured.len(), room);
            let mut measured = measured.into_iter().take(m);
            let mut unmeasured = unmeasured.into_iter().take(u);
            let mut chosen = Vec::new();
            while chosen.len() < m + u {
                chosen.extend(measured.next().map(|(_, _, id)| id));
                chosen.extend(unmeasured.next().map(|(_, _, id)| id));
            }
            chosen
        } else {
            // Looking for a supernode (or a spare): the never measured first.
            unmeasured.append(&mut measured);
            unmeasured
                .into_iter()
                .take(room)
                .map(|(_, _, id)| id)
                .collect()
        };
        chosen
            .into_iter()
            .filter_map(|id| {
                let c = self.candidates.get_mut(&id)?;
                c.probing = true;
                self.probing += 1;
                Some(PeerAddr::pinned(id, c.addr))
            })
            .collect()
    }

    /// A probe finished: its median RTT and the load it reported, or failure.
    pub fn probe_result(
        &mut self,
        now: Instant,
        node_id: NodeId,
        result: Option<(Duration, Option<Load>)>,
    ) {
        let config = self.config.clone();
        let Some(c) = self.candidates.get_mut(&node_id) else {
            return;
        };
        if c.probing {
            c.probing = false;
            self.probing = self.probing.saturating_sub(1);
        }
        match result {
            Some((rtt, load)) => {
                // It answered as itself (the probe is pinned to its id): proven.
                c.suggested = false;
                c.rtt = Some((rtt, now));
                c.stale = false;
                if load.is_some() {
                    c.load = load;
                }
                c.failures = 0;
            }
            None => Self::fail(&config, c, now),
        }
    }

    /// True while probes are under way.
    pub fn probing(&self) -> bool {
        self.probing > 0
    }

    /// The candidate to attach to now: not attached already, measured, with room, not
    /// backing off, lowest RTT. `None` while nothing measured qualifies (probe first, or
    /// wait).
    pub fn next_attach(&self, now: Instant) -> Option<(PeerAddr, Duration)> {
        self.best(now, Candidate::has_room)
    }

    /// Like [`Joiner::next_attach`], for an extra attachment beside the ones we have: only
    /// where it leaves [`SECONDARY_HEADROOM`] free.
    pub fn next_secondary(&self, now: Instant) -> Option<(PeerAddr, Duration)> {
        self.best(now, Candidate::has_room_for_secondary)
    }

    fn best(&self, now: Instant, room: fn(&Candidate) -> bool) -> Option<(PeerAddr, Duration)> {
        self.candidates
            .iter()
            .filter(|(id, c)| !self.attached.contains(id) && c.ready(now) && room(c))
            .filter_map(|(id, c)| c.rtt.map(|(rtt, _)| (rtt, *id, c.addr)))
            .min()
            .map(|(rtt, id, addr)| (PeerAddr::pinned(id, addr), rtt))
    }

    /// The leaf wants to be attached to `n` supernodes (1 to 3).
    pub fn set_wanted(&mut self, n: usize) {
        self.wanted = n.max(1);
    }

    /// Attached to `node_id` (besides any we are attached to already).
    pub fn attached(&mut self, node_id: NodeId) {
        if !self.attached.contains(&node_id) {
            self.attached.push(node_id);
        }
        if let Some(c) = self.candidates.get_mut(&node_id) {
            c.failures = 0;
        }
    }

    /// The supernode we attached to first and are still attached to.
    #[cfg(test)]
    pub fn current(&self) -> Option<NodeId> {
        self.attached.first().copied()
    }

    /// The supernodes we are attached to, in the order we attached.
    #[cfg(test)]
    pub fn attached_to(&self) -> &[NodeId] {
        &self.attached
    }

    /// We left `node_id` of our own accord (moved to a faster one): no fault of its own.
    pub fn left(&mut self, node_id: NodeId) {
        self.attached.retain(|id| *id != node_id);
    }

    /// The measured RTT of `node_id`.
    pub fn rtt(&self, node_id: &NodeId) -> Option<Duration> {
        self.candidates
            .get(node_id)
            .and_then(|c| c.rtt.map(|(r, _)| r))
    }

    /// `node_id` refused us as full and suggested `try_instead`.
    pub fn refused(&mut self, now: Instant, node_id: NodeId, try_instead: &[SupernodeInfo]) {
        if let Some(c) = self.candidates.get_mut(&node_id) {
            c.not_before = Some(now + self.config.full_backoff);
            if let Some(load) = c.load.as_mut() {
                load.leaves = load.capacity;
            }
        }
        self.add_suggested(now, try_instead);
    }

    /// An attach attempt to `node_id` failed (no answer, handshake, protocol).
    pub fn attach_failed(&mut self, now: Instant, node_id: NodeId) {
        let config = self.config.clone();
        if let Some(c) = self.candidates.get_mut(&node_id) {
            Self::fail(&config, c, now);
        }
    }

    /// We left the current supernode of our own accord (promoted): no fault of its own,
    /// so it stays a good candidate for later.
    pub fn detached(&mut self) {
        self.attached.clear();
    }

    /// An attached supernode went away (closed, silent, or told us to move).
    pub fn lost(&mut self, now: Instant, node_id: NodeId) {
        self.attached.retain(|id| *id != node_id);
        self.attach_failed(now, node_id);
    }

    /// A measured candidate clearly faster than the slowest supernode we are attached to
    /// (past the hysteresis), if there is one, with the one it would replace.
    pub fn better_than_current(&self, now: Instant) -> Option<(PeerAddr, Duration)> {
        self.better_than_slowest(now)
            .map(|(best, rtt, _)| (best, rtt))
    }

    /// Like [`Joiner::better_than_current`], naming the attached supernode to replace.
    pub fn better_than_slowest(&self, now: Instant) -> Option<(PeerAddr, Duration, NodeId)> {
        let (slowest_rtt, slowest) = self
            .attached
            .iter()
            .filter_map(|id| self.rtt(id).map(|rtt| (rtt, *id)))
            .max()?;
        let (best, rtt) = self.next_attach(now)?;
        let clearly = rtt.as_secs_f64() < slowest_rtt.as_secs_f64() * self.config.move_ratio
            && rtt + self.config.move_margin < slowest_rtt;
        clearly.then_some((best, rtt, slowest))
    }

    /// A new re-probe round: every measurement is stale, and an attached leaf may spend
    /// `probes_per_round` probes on the best of them and on new candidates.
    pub fn new_round(&mut self, now: Instant) {
        self.round = RoundBudget::new(self.config.probes_per_round);
        self.forget_stale(now);
        // A flag, not a back-dated time: an `Instant` cannot go back further than the
        // machine's uptime.
        for c in self.candidates.values_mut() {
            if c.rtt.is_some() {
                c.stale = true;
            }
        }
    }

    /// Known candidates, for the cache (best first).
    pub fn known(&self) -> Vec<SupernodeInfo> {
        let mut known: Vec<(Duration, SupernodeInfo)> = self
            .candidates
            .iter()
            .filter(|(_, c)| !c.suggested)
            .map(|(id, c)| {
                let info = SupernodeInfo {
                    node_id: *id,
                    addr: c.addr,
                    load: c.load.unwrap_or_default(),
                    stale: true,
                };
                (c.rtt.map_or(Duration::MAX, |(r, _)| r), info)
            })
            .collect();
        known.sort_by_key(|(rtt, info)| (*rtt, info.node_id));
        known.into_iter().map(|(_, info)| info).collect()
    }

    /// The candidates as status shows them: measured ones by RTT first, then the rest, at
    /// most `max`.
    pub fn candidates(&self, max: usize) -> Vec<CandidateView> {
        let mut list: Vec<CandidateView> = self
            .candidates
            .iter()
            .map(|(id, c)| CandidateView {
                node_id: *id,
                addr: c.addr,
                rtt: c.rtt.map(|(rtt, _)| rtt),
                load: c.load,
                attached: self.attached.contains(id),
            })
            .collect();
        list.sort_by_key(|c| (c.rtt.is_none(), c.rtt, c.node_id));
        list.truncate(max);
        list
    }

    /// Number of candidates.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    fn fail(config: &JoinConfig, c: &mut Candidate, now: Instant) {
        c.failures = c.failures.saturating_add(1);
        let backoff = config
            .failure_backoff
            .saturating_mul(1 << c.failures.min(10).saturating_sub(1))
            .min(config.max_backoff);
        c.not_before = Some(now + backoff);
        // Its old RTT no longer says anything: measure again when it is back.
        c.rtt = None;
    }
}

#[cfg(test)]
#[path = "join_tests.rs"]
mod tests;
