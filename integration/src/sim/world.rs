//! The simulated network: the supernodes (real [`SupernodeCore`]s and the sessions the
//! simulator numbers for them), the leaves (real `LeafCore`s, see `leaves`), the list
//! server, and the event loop that moves messages between them in virtual time.
//!
//! Supernodes live in numbered slots. The first slots are the supernodes started as such
//! (`superpeer supernode`); a leaf that elects itself gets a slot of its own the first time
//! (its node id and address stay the leaf's), and keeps it: each time it becomes a
//! supernode again its slot comes back up with a fresh core. A slot's `life` counts these;
//! events of an earlier life are dropped, and session numbers keep growing across lives,
//! so a message for a session of an earlier life finds nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use superpeer::leaf::SessionNo;
use superpeer_bootstrap_list::RegistrationStatus;
use superpeer_common::NodeId;
use superpeer_common::wire::Holder;
use superpeer_supernode::{SessionId, SupernodeCore};

use super::content::Content;
use super::direct::DirectSessions;
use super::dynamics::Tracker;
pub use super::events::{AttachReply, Event};
use super::flood::Topology;
use super::ids::{leaf_number, supernode_addr, supernode_id, supernode_number};
use super::latency::{Latency, Place, splitmix64};
use super::leaves::Leaves;
use super::list_server::ListServer;
use super::queries::QueryLog;
use super::queue::{Clock, EventQueue};
use super::report::Report;
use super::{SimConfig, Workload};

/// How long a connection to nobody takes to fail: the handshake gives up at the leaf's
/// idle timeout (QUIC's idle timer runs during the handshake too).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Idle timeout of a node started as a supernode (`TransportLimits::default`).
pub const SUPERNODE_IDLE: Duration = Duration::from_secs(4);

/// Idle timeout of a node started as a leaf (`leaf_limits`), promoted or not: it keeps
/// its endpoint.
pub const LEAF_IDLE: Duration = Duration::from_secs(3);

/// The other end of a supernode's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Leaf `leaf` in its life `life`, on its session `no`.
    Leaf { leaf: u32, life: u32, no: SessionNo },
    /// Supernode `node`, on its session `session`.
    Neighbor { node: u32, session: SessionId },
    /// Supernode `node` over a directory session (not a link), on its session `session`.
    Direct { node: u32, session: SessionId },
}

/// Where a slot is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Not started yet.
    Waiting,
    /// Running.
    Up,
    /// Crashed, stopped, or stepped down.
    Down,
}

/// One simulated supernode: the production core and the driver's session table.
pub struct Node {
    /// The decisions.
    pub core: SupernodeCore,
    /// Open sessions and who is at their other end (ordered: runs must not depend on hash
    /// seeds).
    pub sessions: BTreeMap<SessionId, Peer>,
    next_session: u64,
    /// Its id and address.
    pub me: Holder,
    /// The leaf that runs it (elected), or `None` for a supernode started as one.
    pub owner: Option<u32>,
    /// When it starts, as a share of the start period (started supernodes).
    pub start: f64,
    pub state: NodeState,
    /// Counts the slot's lives.
    pub life: u32,
    /// How its registration stands, as `keep_registered` reports it.
    pub registration: RegistrationStatus,
    /// Its endpoint's idle timeout.
    pub idle: Duration,
    /// Its driver's list refreshes count their start-up period from here.
    pub refresh_from: Duration,
    /// When its driver started (its membership fetches count their start-up period from
    /// here).
    pub started_at: Duration,
    /// The membership version its core holds (0: none yet).
    pub members_version: u64,
}

impl Node {
    /// A slot with `core`, waiting to start.
    pub fn new(core: SupernodeCore, owner: Option<u32>, start: f64) -> Self {
        Self {
            me: core.me(),
            core,
            sessions: BTreeMap::new(),
            next_session: 0,
            owner,
            start,
            state: NodeState::Waiting,
            life: 0,
            registration: RegistrationStatus::Connecting,
            idle: if owner.is_some() {
                LEAF_IDLE
            } else {
                SUPERNODE_IDLE
            },
            refresh_from: Duration::ZERO,
            started_at: Duration::ZERO,
            members_version: 0,
        }
    }

    /// A session number, as the driver hands them out: from 1 (0 is the local user).
    pub fn new_session(&mut self) -> SessionId {
        self.next_session += 1;
        SessionId(self.next_session)
    }

    /// Running.
    pub fn is_up(&self) -> bool {
        self.state == NodeState::Up
    }
}

/// Messages that keep the overlay and the directory up (not queries), counted from the
/// first query on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Upkeep {
    /// Keyword summaries sent.
    pub summaries: u64,
    /// Their bytes.
    pub summary_bytes: u64,
    /// Gossip (`Known`) messages sent.
    pub gossip: u64,
    /// Publishes carried to owners over the whole run (beside the cores' own count of
    /// publishes they tried to send).
    pub publishes: u64,
    /// Directory upkeep: publishes to owners and their replies, and their bytes.
    pub directory: u64,
    pub directory_bytes: u64,
    /// The same over the whole run (the first publishes of every index included).
    pub directory_total: u64,
    pub directory_total_bytes: u64,
}

/// When each phase of a run begins, in virtual time.
#[derive(Clone, Copy, Debug)]
pub struct Timeline {
    /// Supernodes start over `[0, starts)`.
    pub starts: Duration,
    /// Leaves come up over `[join, join + join_spread)`.
    pub join: Duration,
    /// How long the initial population takes to come up.
    pub join_spread: Duration,
    /// Supernodes begin fetching lists (the overlay forms).
    pub mesh: Duration,
    /// The first query.
    pub queries: Duration,
    /// The last query's results are in.
    pub queries_over: Duration,
    /// Supernodes crash or stop, if any do.
    pub fault: Option<Duration>,
    /// The run ends (at the latest).
    pub end: Duration,
}

impl Timeline {
    fn new(config: &SimConfig, leaves: usize, queries: usize) -> Self {
        let secs = Duration::from_secs_f64;
        // The list server takes 256 dial-backs at once: start 1,000 supernodes a second.
        let starts = secs((config.started_supernodes() as f64 / 1_000.0).max(1.0));
        let join = starts + Duration::from_secs(1);
        let join_spread = secs((leaves as f64 / 100_000.0).max(2.0));
        // A leaf's join takes a list fetch, probes, the first join's wait (1.5 s at most)
        // and an attach: the overlay forms once they are in.
        let mesh = join + join_spread + Duration::from_secs(3);
        // The overlay forms over the start period again; then it settles.
        let queries_at = mesh + starts.max(Duration::from_secs(2)) + Duration::from_secs(20);
        let sending = secs(queries as f64 / config.query_rate.max(0.001));
        let queries_over =
            queries_at + sending + config.core.router.leaf_deadline + Duration::from_secs(2);
        let fault = config.faults.any().then(|| queries_at + config.faults.at);
        // Failover is followed to its end: the idle timeout, a new list, probes, attaches.
        let after_fault = fault.map_or(Duration::ZERO, |at| at + config.faults.window + secs(15.0));
        let end = queries_over.max(after_fault).max(config.min_duration);
        Self {
            starts,
            join,
            join_spread,
            mesh,
            queries: queries_at,
            queries_over,
            fault,
            end,
        }
    }
}

/// The simulated network.
pub struct World<'w> {
    pub config: SimConfig,
    pub workload: &'w Workload,
    pub clock: Clock,
    pub queue: EventQueue<Event>,
    pub latency: Latency,
    pub rng: StdRng,
    pub nodes: Vec<Node>,
    /// Supernodes started as such (the first slots).
    pub started: usize,
    /// Supernodes that join while the queries run (the slots after the started ones).
    pub joining: usize,
    pub list: ListServer,
    pub leaves: Leaves,
    pub content: Content,
    pub queries: QueryLog,
    pub topology: Topology,
    pub timeline: Timeline,
    pub upkeep: Upkeep,
    /// Directory sessions asked for, and what became of them.
    pub direct: DirectSessions,
    pub dynamics: Tracker,
    /// Set when the run may end now (`until_placed`).
    finished: bool,
}

impl<'w> World<'w> {
    /// A network of `config.started_supernodes()` supernodes and one leaf per share of
    /// `workload`.
    pub fn new(config: SimConfig, workload: &'w Workload) -> Self {
        let clock = Clock::start();
        let timeline = Timeline::new(&config, workload.shares.len(), workload.queries.len());
        let mut rng = StdRng::seed_from_u64(config.seed);
        let started = config.started_supernodes();
        let joining = if timeline.fault.is_some() {
            config.faults.join
        } else {
            0
        };
        let nodes = (0..(started + joining) as u32)
            .map(|n| {
                // A core is made when its daemon starts, so the supernodes' timers (gossip
                // every 15 s) are spread as in a real network, not all in step.
                let start: f64 = rng.random();
                let t0 = match timeline.fault {
                    Some(at) if n as usize >= started => clock.instant(at),
                    _ => clock.instant(timeline.starts.mul_f64(start)),
                };
                let me = Holder {
                    node_id: supernode_id(n),
                    addr: supernode_addr(n),
                    via: None,
                };
                let seed = splitmix64(config.seed ^ u64::from(n));
                let mut core = config.core.clone();
                if let Some(layout) = &config.layout {
                    core.max_neighbors = layout.degree(n);
                    core.max_leaves = layout.leaves_of(n);
                }
                let mut node = Node::new(SupernodeCore::new(t0, me, core, seed), None, start);
                node.refresh_from = timeline.mesh;
                node
            })
            .collect();
        Self {
            clock,
            queue: EventQueue::new(),
            latency: Latency::new(config.seed),
            rng,
            nodes,
            started,
            joining,
            list: ListServer::new(config.supernodes, config.seed),
            leaves: Leaves::new(workload.shares.len()),
            content: Content::new(&workload.catalog, &workload.shares),
            queries: QueryLog::new(workload.queries.len(), config.want),
            topology: Topology::default(),
            dynamics: Tracker::new(&timeline, &config.faults, config.series_every),
            timeline,
            upkeep: Upkeep::default(),
            direct: DirectSessions::default(),
            finished: false,
            config,
            workload,
        }
    }

    /// Runs every phase to the end and reports.
    pub fn run(mut self) -> Report {
        let wall = std::time::Instant::now();
        let timeline = self.timeline;
        // The overlay forms as the supernodes came up: each driver's refresh timer starts
        // as far into the overlay phase as the supernode started into the start phase (over
        // at least 2 s), so a large network does not link all at once.
        let spread = timeline.starts.max(Duration::from_secs(2));
        if self.config.layout.is_some() {
            // Before the first list fetch: a core that knows nobody dials nobody.
            self.queue.at(timeline.mesh, Event::LayOut);
        }
        for (n, node) in self.nodes.iter().enumerate().take(self.started) {
            let n = n as u32;
            self.queue
                .at(timeline.starts.mul_f64(node.start), Event::Start(n));
            let fetch = Event::Fetch { sn: n, life: 1 };
            self.queue
                .at(timeline.mesh + spread.mul_f64(node.start), fetch);
        }
        self.queue.at(Duration::ZERO, Event::ListTick);
        self.queue.at(Duration::ZERO, Event::Sample);
        if !self.workload.shares.is_empty() {
            self.queue.at(timeline.join, Event::JoinNext(0));
        }
        if let Some(at) = timeline.fault {
            self.queue.at(at, Event::Fault);
        }
        for q in 0..self.workload.queries.len() as u32 {
            let at = timeline.queries
                + Duration::from_secs_f64(f64::from(q) / self.config.query_rate.max(0.001));
            self.queue.at(at, Event::QueryStart(q));
        }
        let mut next_progress = Duration::ZERO;
        while let Some((at, event)) = self.queue.pop_until(timeline.end) {
            if let Some(every) = self.config.progress.filter(|_| at >= next_progress) {
                next_progress = at + every;
                self.progress(wall.elapsed());
            }
            self.handle(event);
            if self.finished {
                break;
            }
        }
        Report::new(&self, wall.elapsed())
    }

    /// One line on stderr: where the run is and what it costs.
    fn progress(&self, wall: Duration) {
        let t = self.timeline;
        let now = self.queue.now();
        let phase = if now < t.join {
            "supernodes start"
        } else if now < t.mesh {
            "leaves join"
        } else if now < t.queries {
            "overlay forms"
        } else if now < t.queries_over {
            "queries"
        } else {
            "settling"
        };
        let up = self.nodes.iter().filter(|n| n.is_up()).count();
        eprintln!(
            "[{:>6.1} s virtual, {:>6.1} s wall] {phase}: {} events, {} waiting, {} supernodes up, {} leaves placed of {} online, RSS {}",
            now.as_secs_f64(),
            wall.as_secs_f64(),
            self.queue.processed(),
            self.queue.len(),
            up,
            self.placed_count(),
            self.leaves.online_count(),
            super::report::rss_mib().map_or("?".into(), |m| format!("{m:.0} MiB")),
        );
    }

    /// The instant the state machines see now.
    pub fn now(&self) -> std::time::Instant {
        self.clock.instant(self.queue.now())
    }

    /// Where slot `sn` sits: an elected supernode sits where its leaf does.
    pub fn place(&self, sn: u32) -> Place {
        match self.nodes.get(sn as usize).and_then(|n| n.owner) {
            Some(leaf) => Place::Leaf(leaf),
            None => Place::Supernode(sn),
        }
    }

    /// The slot of the supernode `id` names, if it has one.
    pub fn slot_of(&self, id: &NodeId) -> Option<u32> {
        if let Some(n) = supernode_number(id) {
            return ((n as usize) < self.started + self.joining).then_some(n);
        }
        self.leaves.slot(leaf_number(id)?)
    }

    /// Slot `sn`, if it is running.
    pub fn live_node(&mut self, sn: u32) -> Option<&mut Node> {
        self.nodes.get_mut(sn as usize).filter(|n| n.is_up())
    }

    /// Slot `sn` is running in its life `life`.
    pub fn is_live(&self, sn: u32, life: u32) -> bool {
        self.nodes
            .get(sn as usize)
            .is_some_and(|n| n.is_up() && n.life == life)
    }

    /// Slot `sn`'s supernode starts (its daemon): it registers, its timers run, and it
    /// follows the membership.
    pub fn start(&mut self, sn: u32) {
        let life = match self.nodes.get_mut(sn as usize) {
            Some(node) if node.state == NodeState::Waiting => {
                node.state = NodeState::Up;
                node.life = 1;
                node.life
            }
            _ => return,
        };
        let delay = self.latency.one_way(self.place(sn), Place::ListServer);
        self.queue.after(delay, Event::Register { sn, life });
        self.queue.after(self.config.tick, Event::Tick { sn, life });
        self.follow_members(sn, life);
    }

    /// Supernode `sn`'s timers run (the driver's tick).
    pub fn tick(&mut self, sn: u32, life: u32) {
        if !self.is_live(sn, life) {
            return;
        }
        let (now, unix_ms) = (self.now(), self.clock.unix_ms(self.queue.now()));
        if let Some(node) = self.nodes.get_mut(sn as usize) {
            node.core.handle_timeout(now, unix_ms);
        }
        self.carry_out(sn);
        self.queue.after(self.config.tick, Event::Tick { sn, life });
    }

    /// Leaves placed now: attached to a running supernode, or running one.
    pub fn placed_count(&self) -> usize {
        (0..self.leaves.len() as u32)
            .filter(|&n| self.is_placed(n))
            .count()
    }

    /// Whether leaf `n` is placed: online, and attached to a running supernode (on a
    /// session both ends hold) or running its own.
    pub fn is_placed(&self, n: u32) -> bool {
        let Some(leaf) = self.leaves.get(n) else {
            return false;
        };
        if !leaf.online() {
            return false;
        }
        if leaf.slot().is_some_and(|sn| {
            self.nodes
                .get(sn as usize)
                .is_some_and(|node| node.is_up() && node.owner == Some(n))
        }) {
            return true;
        }
        leaf.open_sessions().any(|(sn, session)| {
            self.nodes
                .get(sn as usize)
                .is_some_and(|node| node.is_up() && node.sessions.contains_key(&session))
        })
    }

    /// Marks the run as done (checked after each event).
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// A seeded number for a new core (a leaf's, or an elected supernode's).
    pub fn seed_for(&self, what: u64, n: u32, life: u32) -> u64 {
        splitmix64(self.config.seed ^ splitmix64(what << 48 | u64::from(n) << 16 | u64::from(life)))
    }
}
