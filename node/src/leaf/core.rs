//! The leaf's decisions in one state machine, with no I/O (the quinn-proto pattern, like
//! `SupernodeCore`): which supernode to attach to and when to move, the first-join wait,
//! list refreshes, the search table and its pacing, what has been published, and when to
//! become a supernode or step back down. The driver (`driver.rs`) and the simulator feed
//! events in (`handle_*`, with the time) and carry out what [`LeafCore::poll_action`]
//! returns; randomness comes from a seed.
//!
//! A leaf's life, step by step:
//! 1. Candidates arrive ([`LeafCore::handle_learned`]: list servers, the cache, `--peer`,
//!    supernodes' lists); [`LeafAction::Probe`] measures up to five at once.
//! 2. The first join waits for the probes that matter ([`FIRST_JOIN_WAIT`] at most): until
//!    every probe has answered, or as long again as the first answer took, so a slower
//!    probe cannot hold the join up; then [`LeafAction::Attach`] to the lowest RTT with room.
//! 3. Welcomed, the leaf waits for the supernode's `Limits` (the first message after the
//!    welcome) and publishes what fits ([`Publication`]); each change after that is a delta.
//! 4. Searches go out paced under the announced query rate ([`Searches`]); answers are
//!    merged per content id and passed on ([`LeafAction::Hits`]).
//! 5. Re-probes may find a clearly faster supernode (the joiner's hysteresis): the leaf
//!    attaches there and then leaves the old one. A lost supernode means the next best at
//!    once, and a fresh list.
//! 6. The election ([`Election`]) may promote the leaf; promoted by election, it steps down
//!    when no list server will list it (refused after a dial-back, never merely unreachable)
//!    or when it stays underused (see `promotion.rs`).

mod promotion;
mod publication;
mod searches;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use superpeer_common::wire::{
    FileEntry, LeafToSupernode, Query, QueryHit, QueryId, SupernodeInfo, SupernodeToLeaf,
};
use superpeer_common::{ContentId, NodeId, PeerAddr, keywords};

pub use promotion::{Origin, PromotionOutcome};
pub use publication::PublicationStatus;
pub use searches::{
    ASSUMED_LIMITS, MAX_CONTENTS_PER_SEARCH, MAX_QUEUED_SEARCHES, MAX_RUNNING_SEARCHES,
    SEARCH_DEADLINE,
};

use super::election::{Election, ElectionConfig};
use super::join::{JoinConfig, Joiner};
use crate::share::ShareDelta;
use promotion::Role;
use publication::Publication;
use searches::{SearchOutput, Searches};

/// Longest the first join waits for a batch of probes to compare.
pub const FIRST_JOIN_WAIT: Duration = Duration::from_millis(1500);

/// Least time between two list fetches made because nothing usable is known.
pub const REFRESH_MIN_GAP: Duration = Duration::from_secs(2);

/// Supernodes asked for, of a list server or of our supernode.
pub const SUPERNODES_ASKED: u16 = 50;

/// Longest a refused publish waits before it is tried again.
pub const PUBLISH_RETRY: Duration = Duration::from_secs(30);

/// Longest between two looks at the clock while anything waits (backoffs, the election):
/// what [`LeafCore::poll_timeout`] returns at the latest.
pub const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Tunables of a leaf.
#[derive(Clone, Debug)]
pub struct LeafCoreConfig {
    /// Choosing a supernode.
    pub join: JoinConfig,
    /// Promoting ourselves, and stepping down.
    pub election: ElectionConfig,
    /// Leaves admitted once a supernode (the election wants enough capacity).
    pub max_leaves: usize,
    /// How often candidates are measured again while attached.
    pub reprobe_interval: Duration,
    /// How often lists are fetched again.
    pub refresh_interval: Duration,
    /// Whether there are list servers to ask.
    pub list_servers: bool,
    /// Start as a supernode (`superpeer supernode`): never steps down by itself.
    pub start_as_supernode: bool,
}

impl Default for LeafCoreConfig {
    fn default() -> Self {
        Self {
            join: JoinConfig::default(),
            election: ElectionConfig::default(),
            max_leaves: 500,
            reprobe_interval: Duration::from_secs(30),
            refresh_interval: Duration::from_secs(30),
            list_servers: true,
            start_as_supernode: false,
        }
    }
}

/// A session with a supernode, numbered: what a driver reports about an older one is
/// ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionNo(pub u64);

/// How an attach attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum AttachOutcome {
    /// Welcome: the session is open.
    Welcomed,
    /// The supernode is full; it suggests these.
    Full(Vec<SupernodeInfo>),
    /// No connection or no welcome.
    Failed(String),
}

/// Where supernodes we learned of came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A list server's answer, and whether it says the network is short of supernodes.
    ListServer { short: bool },
    /// `--peer` on the command line.
    Peer,
    /// The cached list of an earlier run.
    Cache,
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq)]
pub enum LeafAction {
    /// Measure a candidate; report with [`LeafCore::handle_probe`].
    Probe(PeerAddr),
    /// Open a session; report with [`LeafCore::handle_attach`].
    Attach {
        target: PeerAddr,
        session: SessionNo,
    },
    /// Send on a session (without waiting: a supernode that does not read ends it).
    Send {
        session: SessionNo,
        msg: LeafToSupernode,
    },
    /// Say goodbye on a session (so the supernode drops our files at once), then close it.
    Leave {
        session: SessionNo,
        reason: &'static str,
    },
    /// Close a session at once.
    Close {
        session: SessionNo,
        reason: &'static str,
    },
    /// Ask every list server for supernodes; report with [`LeafCore::handle_learned`].
    FetchLists,
    /// Save the candidate list (best first) for the next start.
    SaveCache(Vec<SupernodeInfo>),
    /// Results of a search for whoever asked.
    Hits { id: QueryId, hits: Vec<QueryHit> },
    /// A search is over; `refused` says why it was refused, when it was.
    SearchOver {
        id: QueryId,
        refused: Option<String>,
    },
    /// Become a supernode; report with [`LeafCore::handle_supernode_started`].
    StartSupernode,
    /// Stop being a supernode (tell its leaves where to go), and be a leaf again.
    StopSupernode,
    /// Search through our own supernode; answers come to [`LeafCore::handle_own_answer`].
    SearchOwnSupernode(Query),
    /// Our own supernode indexes these changes to our files.
    ShareOwnSupernode {
        add: Vec<FileEntry>,
        remove: Vec<ContentId>,
    },
    /// A promotion by hand is settled: how, or why it was undone.
    PromotionSettled(Result<PromotionOutcome, String>),
}

/// The session with our supernode.
#[derive(Clone, Copy, Debug)]
struct Attached {
    node_id: NodeId,
    addr: SocketAddr,
    rtt: Duration,
    session: SessionNo,
    /// The supernode's limits arrived (we publish only then).
    limits_seen: bool,
}

/// What `status` shows of the leaf's supernode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SupernodeView {
    pub node_id: NodeId,
    pub addr: SocketAddr,
    pub rtt: Duration,
}

/// The leaf's state. See the module docs.
pub struct LeafCore {
    me: NodeId,
    config: LeafCoreConfig,
    joiner: Joiner,
    election: Election,
    role: Role,
    current: Option<Attached>,
    attaching: Option<(NodeId, Duration, SessionNo, SocketAddr)>,
    next_session: u64,
    ever_attached: bool,
    /// When the current batch of probes started, and how long its first answer took.
    probing_since: Option<Instant>,
    first_answer: Option<Duration>,
    last_refresh: Option<Instant>,
    next_reprobe: Instant,
    next_refresh: Instant,
    retry_publish: Option<Instant>,
    /// The next look at the clock at the latest (an absolute time, so that a stream of
    /// events cannot keep postponing it).
    next_check: Instant,
    searches: Searches,
    publication: Publication,
    actions: VecDeque<LeafAction>,
    rng: StdRng,
}

impl LeafCore {
    /// A leaf `me` at `now`, sharing `entries`, with `seed` for its random choices.
    pub fn new(
        now: Instant,
        me: NodeId,
        config: LeafCoreConfig,
        entries: Vec<FileEntry>,
        seed: u64,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let election = Election::new(
            now,
            config.election.clone(),
            config.max_leaves,
            rng.random(),
        );
        let mut core = Self {
            me,
            joiner: Joiner::new(me, config.join.clone()),
            election,
            role: Role::Leaf,
            current: None,
            attaching: None,
            next_session: 0,
            ever_attached: false,
            probing_since: None,
            first_answer: None,
            last_refresh: None,
            next_reprobe: now + config.reprobe_interval,
            next_refresh: now + config.refresh_interval,
            retry_publish: None,
            next_check: now + MAX_SLEEP,
            searches: Searches::new(now),
            publication: Publication::new(entries, ASSUMED_LIMITS.max_entries as usize),
            actions: VecDeque::new(),
            rng,
            config,
        };
        if core.config.start_as_supernode {
            core.start_supernode(now, Origin::Started);
        } else if core.config.list_servers {
            core.fetch_lists(now);
        }
        core
    }

    /// Our node id.
    pub fn node_id(&self) -> NodeId {
        self.me
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<LeafAction> {
        self.actions.pop_front()
    }

    /// When [`LeafCore::handle_timeout`] should run next at the latest.
    pub fn poll_timeout(&self, now: Instant) -> Instant {
        let mut at = self.next_check.max(now);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                at = at.min(t.max(now));
            }
        };
        consider(Some(self.next_reprobe));
        consider(Some(self.next_refresh));
        consider(self.searches.next_deadline());
        consider(self.searches.next_release(now));
        consider(self.retry_publish);
        // A deadline already past has been acted on (or has nothing to act on): waking
        // for it again would only spin.
        consider(self.first_join_ends().filter(|end| *end > now));
        at
    }

    /// When the first join stops waiting for probes; `None` once it is decided.
    fn first_join_ends(&self) -> Option<Instant> {
        if self.ever_attached || self.current.is_some() || self.attaching.is_some() {
            return None;
        }
        let since = self.probing_since?;
        let cap = since + FIRST_JOIN_WAIT;
        Some(match self.first_answer {
            Some(first) => cap.min(since + first * 2),
            None => cap,
        })
    }

    // ----- events -----

    /// The clock moved: probes, attaches, refreshes, pacing, deadlines, the election.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.next_check = now + MAX_SLEEP;
        if now >= self.next_reprobe {
            self.next_reprobe = now + self.config.reprobe_interval;
            self.joiner.reprobe_all(now);
        }
        if now >= self.next_refresh {
            self.next_refresh = now + self.config.refresh_interval;
            // Promoted, the lists still bring the list server's shortage signal.
            if self.config.list_servers {
                self.fetch_lists(now);
            }
            if let Some(current) = self.current {
                self.send(
                    current.session,
                    LeafToSupernode::GetSupernodes {
                        max: SUPERNODES_ASKED,
                    },
                );
            }
        }
        for query in self.searches.poll_queued(now) {
            self.send_query(query);
        }
        for over in self.searches.expire(now) {
            self.output(over);
        }
        if self.retry_publish.is_some_and(|t| now >= t) {
            self.retry_publish = None;
            if let Some(current) = self.current.filter(|c| c.limits_seen) {
                for msg in self.publication.retry() {
                    self.send(current.session, msg);
                }
            }
        }
        self.drive(now);
        self.elect(now);
    }

    /// A probe finished: its median RTT and the load it reported, or failure.
    pub fn handle_probe(
        &mut self,
        now: Instant,
        node_id: NodeId,
        result: Option<(Duration, Option<superpeer_common::wire::Load>)>,
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
        self.joiner.add(infos);
        if matches!(source, Source::ListServer { .. }) {
            self.save_cache();
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
        match outcome {
            AttachOutcome::Welcomed => {
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
                    self.actions.push_back(LeafAction::Leave {
                        session: old.session,
                        reason: "moved to a faster supernode",
                    });
                }
                self.end_searches("moved to another supernode");
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
            AttachOutcome::Full(try_instead) => {
                self.election.refused_full(now);
                self.joiner.refused(now, node_id, &try_instead);
            }
            AttachOutcome::Failed(_) => self.joiner.attach_failed(now, node_id),
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
            return;
        };
        self.joiner.lost(now, current.node_id);
        self.lost_supernode(now);
    }

    fn lost_supernode(&mut self, now: Instant) {
        self.end_searches("lost the supernode");
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
            return;
        };
        match msg {
            SupernodeToLeaf::Limits(limits) => {
                self.searches.set_limits(now, limits);
                for query in self.searches.poll_queued(now) {
                    self.send_query(query);
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
                    self.joiner.add(&list.supernodes);
                    self.save_cache();
                }
            }
            SupernodeToLeaf::MoveTo { supernodes } => {
                self.current = None;
                self.joiner.add(&supernodes);
                self.joiner.lost(now, current.node_id);
                self.actions.push_back(LeafAction::Close {
                    session,
                    reason: "moving",
                });
                self.lost_supernode(now);
            }
            SupernodeToLeaf::Refused { .. } | SupernodeToLeaf::Pong { .. } => {}
            answer @ (SupernodeToLeaf::Hits { .. }
            | SupernodeToLeaf::QueryDone { .. }
            | SupernodeToLeaf::QueryRefused { .. }) => {
                if let Some(out) = self.searches.answer(answer) {
                    self.output(out);
                }
            }
        }
    }

    /// The shared folder changed.
    pub fn handle_share_delta(&mut self, delta: ShareDelta) {
        if self.role.is_supernode() {
            let (add, remove) = (delta.added.clone(), delta.removed.clone());
            self.publication.change(delta, false);
            self.actions
                .push_back(LeafAction::ShareOwnSupernode { add, remove });
            return;
        }
        match self.current.filter(|c| c.limits_seen) {
            Some(current) => {
                for msg in self.publication.change(delta, true) {
                    self.send(current.session, msg);
                }
            }
            None => {
                self.publication.change(delta, false);
            }
        }
    }

    /// Our user searches. Returns the search's id: its results come as
    /// [`LeafAction::Hits`], its end as [`LeafAction::SearchOver`].
    pub fn search(&mut self, now: Instant, words: &[String], want: u32) -> Result<QueryId, String> {
        let words = keywords(&words.join(" "));
        if words.is_empty() {
            return Err("no searchable words in the query".into());
        }
        let supernode = self.role.is_running_supernode();
        if self.current.is_none() && !supernode {
            return Err("not attached to a supernode yet; try again in a moment".into());
        }
        let query = Query {
            id: QueryId(self.rng.random()),
            keywords: words,
            want,
        };
        query.validate().map_err(|e| e.to_string())?;
        let id = query.id;
        // Our own supernode does not rate-limit its own user.
        if let Some(query) = self.searches.start(now, query, !supernode)? {
            self.send_query(query);
        }
        Ok(id)
    }

    /// Whoever asked stopped listening: forget the search, and tell the supernode.
    pub fn cancel_search(&mut self, id: QueryId) {
        if self.searches.cancel(&id)
            && let Some(current) = self.current
        {
            self.send(current.session, LeafToSupernode::CancelQuery { id });
        }
    }

    /// An answer to one of our searches from our own supernode.
    pub fn handle_own_answer(&mut self, msg: SupernodeToLeaf) {
        if let Some(out) = self.searches.answer(msg) {
            self.output(out);
        }
    }

    // ----- what status shows -----

    /// The supernode we are attached to.
    pub fn supernode(&self) -> Option<SupernodeView> {
        self.current.map(|c| SupernodeView {
            node_id: c.node_id,
            addr: c.addr,
            rtt: self.joiner.rtt(&c.node_id).unwrap_or(c.rtt),
        })
    }

    /// Whether we run as a supernode (or are starting one).
    pub fn is_supernode(&self) -> bool {
        self.role.is_supernode()
    }

    /// How our files stand with the supernode that indexes them.
    pub fn publication(&self) -> PublicationStatus {
        if self.role.is_running_supernode() {
            let shared = self.publication.shared_len();
            return PublicationStatus {
                shared,
                indexed: shared,
                pending: 0,
                reason: None,
            };
        }
        self.publication
            .status(self.current.is_some_and(|c| c.limits_seen))
    }

    /// Searches (running, waiting for the query limit).
    pub fn searches(&self) -> (usize, usize) {
        self.searches.len()
    }

    /// Candidates known, best first.
    pub fn known(&self) -> Vec<SupernodeInfo> {
        self.joiner.known()
    }

    // ----- inside -----

    /// Starts probes and an attach when one is due.
    fn drive(&mut self, now: Instant) {
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
            None => self.joiner.next_attach(now),
            Some(_) => self.joiner.better_than_current(now),
        };
        match target {
            Some((target, rtt)) => self.attach(target, rtt),
            // Nothing usable: ask the list servers again (not too often).
            None if self.current.is_none()
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

    fn attach(&mut self, target: PeerAddr, rtt: Duration) {
        let Some(node_id) = target.node_id else {
            return;
        };
        self.next_session += 1;
        let session = SessionNo(self.next_session);
        self.attaching = Some((node_id, rtt, session, target.addr));
        self.actions
            .push_back(LeafAction::Attach { target, session });
    }

    fn fetch_lists(&mut self, now: Instant) {
        self.last_refresh = Some(now);
        self.actions.push_back(LeafAction::FetchLists);
    }

    fn save_cache(&mut self) {
        self.actions
            .push_back(LeafAction::SaveCache(self.joiner.known()));
    }

    fn send(&mut self, session: SessionNo, msg: LeafToSupernode) {
        self.actions.push_back(LeafAction::Send { session, msg });
    }

    fn send_query(&mut self, query: Query) {
        if self.role.is_running_supernode() {
            self.actions
                .push_back(LeafAction::SearchOwnSupernode(query));
        } else if let Some(current) = self.current {
            self.send(current.session, LeafToSupernode::Query(query));
        }
    }

    fn output(&mut self, out: SearchOutput) {
        self.actions.push_back(match out {
            SearchOutput::Hits(id, hits) => LeafAction::Hits { id, hits },
            SearchOutput::Over(id, refused) => LeafAction::SearchOver { id, refused },
        });
    }

    fn end_searches(&mut self, why: &str) {
        for over in self.searches.end_all(why) {
            self.output(over);
        }
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "core_search_tests.rs"]
mod search_tests;

#[cfg(test)]
#[path = "core_election_tests.rs"]
mod election_tests;

#[cfg(test)]
#[path = "core_publication_tests.rs"]
mod publication_tests;
