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

mod joining;
mod liveness;
mod promotion;
mod publication;
mod reachability;
mod searches;
mod searching;
mod spares;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use superpeer_common::wire::{FileEntry, LeafToSupernode, Query, QueryHit, QueryId, SupernodeInfo};
use superpeer_common::{ContentId, NodeId, PeerAddr};

pub use promotion::{Origin, PromotionOutcome};
pub use publication::PublicationStatus;
pub use reachability::{Mapping, Reach, ReachView};
pub use searches::{
    ASSUMED_LIMITS, MAX_CONTENTS_PER_SEARCH, MAX_QUEUED_SEARCHES, MAX_RUNNING_SEARCHES,
    SEARCH_DEADLINE,
};

use super::election::{Election, ElectionConfig};
use super::join::{CandidateView, JoinConfig, Joiner};
use crate::share::ShareDelta;
use liveness::LivenessCheck;
use promotion::Role;
use publication::Publication;
use reachability::Reachability;
use searches::Searches;
use spares::{AttachFor, Spare};

/// Longest the first join waits for a batch of probes to compare.
pub const FIRST_JOIN_WAIT: Duration = Duration::from_millis(1500);

/// Least time between two list fetches made because nothing usable is known.
pub const REFRESH_MIN_GAP: Duration = Duration::from_secs(2);

/// Supernodes asked for, of a list server or of our supernode.
pub const SUPERNODES_ASKED: u16 = 50;

/// Least time between two saves of the known supernodes (lists come every 30 s; the cache
/// only has to survive a restart).
pub const CACHE_SAVE_EVERY: Duration = Duration::from_secs(300);

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
    /// Supernodes to attach to at once (1 to 3): the current one and spares that index
    /// our files too (see `spares.rs`).
    pub supernodes: usize,
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
            supernodes: 1,
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
    /// Our supernode asks us to dial `requester` at `addr`, where it observed it (a reverse
    /// connection or a hole punch), and serve it our files on that connection.
    DialBack { requester: NodeId, addr: SocketAddr },
    /// Open our leg of a relayed session with `requester` at our supernode `relay`.
    OpenRelay {
        requester: NodeId,
        token: u64,
        relay: PeerAddr,
    },
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
    /// Supernodes attached beside `current`, at most `config.supernodes - 1`.
    spares: Vec<Spare>,
    attaching: Option<(NodeId, Duration, SessionNo, SocketAddr)>,
    /// What the attach under way is for.
    attach_for: AttachFor,
    /// The ping out to the current supernode (with spares only).
    liveness: LivenessCheck,
    next_session: u64,
    ever_attached: bool,
    /// When the current batch of probes started, and how long its first answer took.
    probing_since: Option<Instant>,
    first_answer: Option<Duration>,
    last_refresh: Option<Instant>,
    next_reprobe: Instant,
    next_refresh: Instant,
    retry_publish: Option<Instant>,
    /// When the known supernodes may be saved next, and whether they changed since.
    next_cache_save: Instant,
    cache_dirty: bool,
    /// The next look at the clock at the latest (an absolute time, so that a stream of
    /// events cannot keep postponing it).
    next_check: Instant,
    searches: Searches,
    publication: Publication,
    reachability: Reachability,
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
        let mut joiner = Joiner::new(me, config.join.clone());
        joiner.set_wanted(config.supernodes);
        let mut core = Self {
            me,
            joiner,
            election,
            role: Role::Leaf,
            current: None,
            spares: Vec::new(),
            attaching: None,
            attach_for: AttachFor::Current,
            liveness: LivenessCheck::default(),
            next_session: 0,
            ever_attached: false,
            probing_since: None,
            first_answer: None,
            last_refresh: None,
            next_reprobe: now + config.reprobe_interval,
            next_refresh: now + config.refresh_interval,
            retry_publish: None,
            next_cache_save: now,
            cache_dirty: false,
            next_check: now + MAX_SLEEP,
            searches: Searches::new(now),
            publication: Publication::new(entries, ASSUMED_LIMITS.max_entries as usize),
            reachability: Reachability::new(now),
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
        consider(self.ping_due());
        consider(self.cache_dirty.then_some(self.next_cache_save));
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
        self.check_liveness(now);
        if now >= self.next_reprobe {
            self.next_reprobe = now + self.config.reprobe_interval;
            self.joiner.new_round(now);
        }
        if self.cache_dirty && now >= self.next_cache_save {
            self.save_cache(now);
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
            self.send_query(now, query);
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
            self.spares_retry_publish();
        }
        self.drive(now);
        self.elect(now);
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
        self.spares_share_delta(&delta);
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

    // ----- what status shows -----

    /// The supernode we are attached to.
    pub fn supernode(&self) -> Option<SupernodeView> {
        self.current.map(|c| SupernodeView {
            node_id: c.node_id,
            addr: c.addr,
            rtt: self.joiner.rtt(&c.node_id).unwrap_or(c.rtt),
        })
    }

    /// The supernodes we know, best measured first (for status; at most `max`).
    pub fn candidates(&self, max: usize) -> Vec<CandidateView> {
        self.joiner.candidates(max)
    }

    /// Whether others can reach us, and where our supernode sees us.
    pub fn reachability(&self) -> ReachView {
        self.reachability.view()
    }

    /// A supernode we probed saw our connection come from `addr`.
    pub fn handle_observed(&mut self, by: NodeId, addr: SocketAddr) {
        self.reachability.seen(by, addr);
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

    fn send(&mut self, session: SessionNo, msg: LeafToSupernode) {
        self.actions.push_back(LeafAction::Send { session, msg });
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

#[cfg(test)]
#[path = "core_cache_tests.rs"]
mod cache_tests;

#[cfg(test)]
#[path = "core_spares_tests.rs"]
mod spares_tests;
