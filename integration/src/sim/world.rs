//! The simulated network: the supernodes (real [`SupernodeCore`]s and the sessions the
//! simulator numbers for them), the leaves, the list server, and the event loop that moves
//! messages between them in virtual time.
//!
//! Links, as the daemon makes them (`superpeer_supernode`'s `sessions.rs`):
//! 1. `Action::Dial` at A: A's session number is reserved; the QUIC handshake and the hello
//!    take 1.5 RTT to reach B ([`Event::LinkAccept`]).
//! 2. B's core decides with `link_up(initiator = A)`. Kept: B answers welcome, A hears it
//!    half an RTT later ([`Event::LinkConfirm`]); refused: A's dial failed
//!    ([`Event::DialFailed`]).
//! 3. A's core decides with `link_up(initiator = A)`. Refused (a duplicate): A closes the
//!    connection and B hears the session end ([`Event::Gone`]).
//!
//! Anything B sends right after keeping the link is scheduled after the confirmation and
//! takes the same half RTT, so it reaches A after A's core knows the session, as frames
//! wait in the QUIC stream until A's driver reads them.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use superpeer_common::wire::{Holder, LeafToSupernode, SupernodeToLeaf, SupernodeToSupernode};
use superpeer_supernode::{SessionId, SupernodeCore};

use super::content::Content;
use super::flood::Topology;
use super::ids::{self, supernode_addr, supernode_id};
use super::latency::{Latency, Place, splitmix64};
use super::leaves::Leaves;
use super::list_server::ListServer;
use super::queries::QueryLog;
use super::queue::{Clock, EventQueue};
use super::report::Report;
use super::{SimConfig, Workload};

/// The other end of a supernode's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Leaf number n.
    Leaf(u32),
    /// Supernode `node`, on its session `session`.
    Neighbor { node: u32, session: SessionId },
}

/// One simulated supernode: the production core and the driver's session table.
pub struct Node {
    /// The decisions.
    pub core: SupernodeCore,
    /// Open sessions and who is at their other end (ordered: runs must not depend on hash
    /// seeds).
    pub sessions: BTreeMap<SessionId, Peer>,
    next_session: u64,
    /// When it starts, as a share of the start period.
    start: f64,
    /// Started (registered, ticking).
    pub started: bool,
}

impl Node {
    /// A session number, as the driver hands them out: from 1 (0 is the local user).
    pub fn new_session(&mut self) -> SessionId {
        self.next_session += 1;
        SessionId(self.next_session)
    }
}

/// Everything that happens, at a virtual time.
pub enum Event {
    /// Supernode n starts: it registers and its timers run.
    Start(u32),
    /// Supernode n's timers (the driver's 100 ms tick).
    Tick(u32),
    /// Supernode n's registration reaches the list server.
    Register(u32),
    /// The list server's dial-back to supernode n came back.
    DialBack(u32),
    /// Supernode n's heartbeat reaches the list server.
    Heartbeat(u32),
    /// Supernode n asks the list server for supernodes (the driver's refresh timer).
    Fetch(u32),
    /// The list server's clock.
    ListTick,
    /// A dial reaches its target (see the module docs).
    LinkAccept {
        dialer: u32,
        dialer_session: SessionId,
        target: u32,
    },
    /// The target's welcome reaches the dialer.
    LinkConfirm {
        dialer: u32,
        dialer_session: SessionId,
        target: u32,
        target_session: SessionId,
    },
    /// A dial failed (refused, or nobody there).
    DialFailed { dialer: u32, target: u32 },
    /// The other end closed supernode `sn`'s session.
    Gone { sn: u32, session: SessionId },
    /// A neighbour's message reaches supernode `sn`.
    ToSupernode {
        sn: u32,
        session: SessionId,
        msg: SupernodeToSupernode,
    },
    /// The next leaf of the initial population joins.
    JoinNext(u32),
    /// Leaf n looks for a supernode.
    LeafJoin(u32),
    /// Leaf `leaf`'s attach reaches supernode `sn`.
    LeafAttach { leaf: u32, sn: u32, epoch: u32 },
    /// A leaf's message reaches supernode `sn`.
    FromLeaf {
        sn: u32,
        session: SessionId,
        msg: LeafToSupernode,
    },
    /// A supernode's message reaches a leaf (dropped if the leaf has moved on since).
    ToLeaf {
        leaf: u32,
        epoch: u32,
        msg: SupernodeToLeaf,
    },
    /// The supernode closed the leaf's session.
    LeafClosed { leaf: u32, epoch: u32 },
    /// Leaf n ends its session (churn); `life` tells stale departures apart.
    LeafLeave { leaf: u32, life: u32 },
    /// Leaf n comes back.
    LeafReturn(u32),
    /// Query n is sent.
    QueryStart(u32),
    /// The layout's links come up (instead of the supernodes' own dials).
    LayOut,
}

/// Messages that keep the overlay up (not queries), counted from the first query on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Upkeep {
    /// Keyword summaries sent.
    pub summaries: u64,
    /// Their bytes.
    pub summary_bytes: u64,
    /// Gossip (`Known`) messages sent.
    pub gossip: u64,
}

/// When each phase of a run begins, in virtual time.
#[derive(Clone, Copy, Debug)]
pub struct Timeline {
    /// Supernodes start over `[0, starts)`.
    pub starts: Duration,
    /// Leaves join over `[join, join + join_spread)`.
    pub join: Duration,
    /// How long the initial joins take.
    pub join_spread: Duration,
    /// Supernodes begin fetching lists (the overlay forms).
    pub mesh: Duration,
    /// The first query.
    pub queries: Duration,
    /// The run ends.
    pub end: Duration,
}

impl Timeline {
    fn new(config: &SimConfig, leaves: usize, queries: usize) -> Self {
        let secs = Duration::from_secs_f64;
        // The list server takes 256 dial-backs at once: start 1,000 supernodes a second.
        let starts = secs((config.supernodes as f64 / 1_000.0).max(1.0));
        let join = starts + Duration::from_secs(1);
        let join_spread = secs((leaves as f64 / 100_000.0).max(2.0));
        let mesh = join + join_spread + Duration::from_secs(1);
        // The overlay forms over the start period again; then it settles.
        let queries_at = mesh + starts.max(Duration::from_secs(2)) + Duration::from_secs(20);
        let sending = secs(queries as f64 / config.query_rate.max(0.001));
        let end = queries_at + sending + config.core.router.leaf_deadline + Duration::from_secs(2);
        Self {
            starts,
            join,
            join_spread,
            mesh,
            queries: queries_at,
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
    pub list: ListServer,
    pub leaves: Leaves,
    pub content: Content,
    pub queries: QueryLog,
    pub topology: Topology,
    pub timeline: Timeline,
    pub upkeep: Upkeep,
}

impl<'w> World<'w> {
    /// A network of `config.supernodes` supernodes and one leaf per share of `workload`.
    pub fn new(config: SimConfig, workload: &'w Workload) -> Self {
        let clock = Clock::start();
        let timeline = Timeline::new(&config, workload.shares.len(), workload.queries.len());
        let mut rng = StdRng::seed_from_u64(config.seed);
        let nodes = (0..config.supernodes as u32)
            .map(|n| {
                // A core is made when its daemon starts, so the supernodes' timers (gossip
                // every 15 s) are spread as in a real network, not all in step.
                let start: f64 = rng.random();
                let t0 = clock.instant(timeline.starts.mul_f64(start));
                let me = Holder {
                    node_id: supernode_id(n),
                    addr: supernode_addr(n),
                };
                let seed = splitmix64(config.seed ^ u64::from(n));
                let mut core = config.core.clone();
                if let Some(layout) = &config.layout {
                    core.max_neighbors = layout.degree(n);
                }
                Node {
                    core: SupernodeCore::new(t0, me, core, seed),
                    sessions: BTreeMap::new(),
                    next_session: 0,
                    start,
                    started: false,
                }
            })
            .collect();
        Self {
            clock,
            queue: EventQueue::new(),
            latency: Latency::new(config.seed),
            rng,
            nodes,
            list: ListServer::new(config.supernodes, config.seed),
            leaves: Leaves::new(workload.shares.len()),
            content: Content::new(&workload.catalog, &workload.shares),
            queries: QueryLog::new(workload.queries.len(), config.want),
            topology: Topology::default(),
            timeline,
            upkeep: Upkeep::default(),
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
        for (n, node) in self.nodes.iter().enumerate() {
            let n = n as u32;
            self.queue
                .at(timeline.starts.mul_f64(node.start), Event::Start(n));
            self.queue
                .at(timeline.mesh + spread.mul_f64(node.start), Event::Fetch(n));
        }
        self.queue.at(Duration::ZERO, Event::ListTick);
        if !self.workload.shares.is_empty() {
            self.queue.at(timeline.join, Event::JoinNext(0));
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
        } else {
            "queries"
        };
        eprintln!(
            "[{:>6.1} s virtual, {:>6.1} s wall] {phase}: {} events, {} waiting, {} leaves attached, RSS {}",
            now.as_secs_f64(),
            wall.as_secs_f64(),
            self.queue.processed(),
            self.queue.len(),
            self.leaves.attached_count(),
            super::report::rss_mib().map_or("?".into(), |m| format!("{m:.0} MiB")),
        );
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Start(sn) => self.start(sn),
            Event::Tick(sn) => self.tick(sn),
            Event::Register(sn) => self.register(sn),
            Event::DialBack(sn) => self.dial_back(sn),
            Event::Heartbeat(sn) => self.heartbeat(sn),
            Event::Fetch(sn) => self.fetch(sn),
            Event::ListTick => self.list_tick(),
            Event::LinkAccept {
                dialer,
                dialer_session,
                target,
            } => self.link_accept(dialer, dialer_session, target),
            Event::LinkConfirm {
                dialer,
                dialer_session,
                target,
                target_session,
            } => self.link_confirm(dialer, dialer_session, target, target_session),
            Event::DialFailed { dialer, target } => {
                let now = self.now();
                if let Some(node) = self.nodes.get_mut(dialer as usize) {
                    node.core.dial_failed(now, supernode_id(target));
                }
                self.carry_out(dialer);
            }
            Event::Gone { sn, session } => self.gone(sn, session),
            Event::ToSupernode { sn, session, msg } => self.deliver_to_supernode(sn, session, msg),
            Event::JoinNext(leaf) => self.join_next(leaf),
            Event::LeafJoin(leaf) => self.leaf_join(leaf),
            Event::LeafAttach { leaf, sn, epoch } => self.leaf_attach(leaf, sn, epoch),
            Event::FromLeaf { sn, session, msg } => self.deliver_from_leaf(sn, session, msg),
            Event::ToLeaf { leaf, epoch, msg } => self.deliver_to_leaf(leaf, epoch, msg),
            Event::LeafClosed { leaf, epoch } => self.leaf_closed(leaf, epoch),
            Event::LeafLeave { leaf, life } => self.leaf_leave(leaf, life),
            Event::LeafReturn(leaf) => self.leaf_return(leaf),
            Event::QueryStart(q) => self.query_start(q),
            Event::LayOut => self.lay_out(),
        }
    }

    /// The instant the state machines see now.
    pub fn now(&self) -> std::time::Instant {
        self.clock.instant(self.queue.now())
    }

    fn start(&mut self, sn: u32) {
        let Some(node) = self.nodes.get_mut(sn as usize) else {
            return;
        };
        node.started = true;
        let delay = self
            .latency
            .one_way(Place::Supernode(sn), Place::ListServer);
        self.queue.after(delay, Event::Register(sn));
        self.queue.after(self.config.tick, Event::Tick(sn));
    }

    fn tick(&mut self, sn: u32) {
        let (now, unix_ms) = (self.now(), self.clock.unix_ms(self.queue.now()));
        let Some(node) = self.nodes.get_mut(sn as usize) else {
            return;
        };
        node.core.handle_timeout(now, unix_ms);
        self.carry_out(sn);
        self.queue.after(self.config.tick, Event::Tick(sn));
    }

    /// Brings up every link of the layout at once, as if each dialler's dial had just
    /// completed: the dialled core decides first, then the dialler's (as in
    /// [`Event::LinkAccept`] and [`Event::LinkConfirm`]). All in one event, so no core's
    /// timer runs between two links and dials elsewhere while it still has room.
    fn lay_out(&mut self) {
        let now = self.now();
        let links = self
            .config
            .layout
            .as_ref()
            .map(|l| l.links.clone())
            .unwrap_or_default();
        for (dialer, target) in links {
            let (Some(dialer_session), Some(target_session)) = (
                self.nodes
                    .get_mut(dialer as usize)
                    .map(|node| node.new_session()),
                self.nodes
                    .get_mut(target as usize)
                    .map(|node| node.new_session()),
            ) else {
                continue;
            };
            let dialer_id = supernode_id(dialer);
            let target_kept = self.nodes.get_mut(target as usize).is_some_and(|node| {
                node.core.link_up(
                    now,
                    target_session,
                    dialer_id,
                    dialer_id,
                    Some(supernode_addr(dialer)),
                )
            });
            let kept = target_kept
                && self.nodes.get_mut(dialer as usize).is_some_and(|node| {
                    node.core.link_up(
                        now,
                        dialer_session,
                        supernode_id(target),
                        dialer_id,
                        Some(supernode_addr(target)),
                    )
                });
            if !kept {
                // Refused (a link twice in the layout): the dialler closes it, and the
                // report's links show what came up.
                if let Some(node) = self.nodes.get_mut(target as usize).filter(|_| target_kept) {
                    node.core.link_down(now, target_session);
                }
                continue;
            }
            for (at, peer, session, theirs) in [
                (target, dialer, target_session, dialer_session),
                (dialer, target, dialer_session, target_session),
            ] {
                if let Some(node) = self.nodes.get_mut(at as usize) {
                    node.sessions.insert(
                        session,
                        Peer::Neighbor {
                            node: peer,
                            session: theirs,
                        },
                    );
                }
            }
        }
        self.topology.changed();
        for sn in 0..self.nodes.len() as u32 {
            self.carry_out(sn);
        }
    }

    fn link_accept(&mut self, dialer: u32, dialer_session: SessionId, target: u32) {
        let now = self.now();
        let back = self
            .latency
            .one_way(Place::Supernode(target), Place::Supernode(dialer));
        let Some(node) = self.nodes.get_mut(target as usize) else {
            return;
        };
        let session = node.new_session();
        let dialer_id = supernode_id(dialer);
        let kept = node.core.link_up(
            now,
            session,
            dialer_id,
            dialer_id,
            Some(supernode_addr(dialer)),
        );
        if kept {
            node.sessions.insert(
                session,
                Peer::Neighbor {
                    node: dialer,
                    session: dialer_session,
                },
            );
            self.topology.changed();
            self.queue.after(
                back,
                Event::LinkConfirm {
                    dialer,
                    dialer_session,
                    target,
                    target_session: session,
                },
            );
        } else {
            self.queue.after(back, Event::DialFailed { dialer, target });
        }
        self.carry_out(target);
    }

    fn link_confirm(
        &mut self,
        dialer: u32,
        dialer_session: SessionId,
        target: u32,
        target_session: SessionId,
    ) {
        let now = self.now();
        let Some(node) = self.nodes.get_mut(dialer as usize) else {
            return;
        };
        let kept = node.core.link_up(
            now,
            dialer_session,
            supernode_id(target),
            supernode_id(dialer),
            Some(supernode_addr(target)),
        );
        if kept {
            node.sessions.insert(
                dialer_session,
                Peer::Neighbor {
                    node: target,
                    session: target_session,
                },
            );
            self.topology.changed();
        } else {
            // The driver closes a link its core did not keep; the other side sees it end.
            let delay = self
                .latency
                .one_way(Place::Supernode(dialer), Place::Supernode(target));
            self.queue.after(
                delay,
                Event::Gone {
                    sn: target,
                    session: target_session,
                },
            );
        }
        self.carry_out(dialer);
    }

    fn gone(&mut self, sn: u32, session: SessionId) {
        let now = self.now();
        let Some(node) = self.nodes.get_mut(sn as usize) else {
            return;
        };
        match node.sessions.remove(&session) {
            Some(Peer::Leaf(leaf)) => {
                node.core.leaf_gone(now, session);
                self.leaves.unindexed(leaf, sn);
            }
            Some(Peer::Neighbor { .. }) => {
                node.core.link_down(now, session);
                self.topology.changed();
            }
            None => {}
        }
        self.carry_out(sn);
    }

    fn deliver_to_supernode(&mut self, sn: u32, session: SessionId, msg: SupernodeToSupernode) {
        let now = self.now();
        let Some(node) = self.nodes.get_mut(sn as usize) else {
            return;
        };
        if !node.sessions.contains_key(&session) {
            return; // closed meanwhile: the frame dies with the connection
        }
        if let SupernodeToSupernode::Query { query, .. } = &msg {
            self.queries.visited(ids::query_number(&query.id), sn);
        }
        node.core.neighbor_message(now, session, msg);
        self.carry_out(sn);
    }
}
