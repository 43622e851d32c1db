//! How the network holds up as supernodes come and go: failover times, elections,
//! step-downs, and a time series of placement.
//!
//! - Failover: a leaf whose supernode crashes (or stops, or steps down) is *orphaned* at
//!   that moment. It is *re-attached* when a running supernode welcomes it as its current
//!   one (or it runs its own), and *searchable again* when its files are in a running
//!   supernode's index (a `Publish` taken there, or its own supernode's index). Free riders
//!   have nothing to index: they count in re-attachment only.
//! - Placement: a leaf is placed when it is online and attached to a running supernode on
//!   a session both ends hold, or runs its own; sampled every second, reported every
//!   `series_every`.

use std::time::Duration;

use serde::Serialize;

use super::Faults;
use super::leaves::SimLeaf;
use super::report::Stats;
use super::world::{AttachReply, Event, Timeline, World};

/// How a leaf lost its supernode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// It crashed: silence until the idle timeout.
    Crash,
    /// It stopped cleanly (`MoveTo`): a shutdown.
    Stop,
    /// An elected supernode stepped down (`MoveTo` too).
    StepDown,
}

const CAUSES: [Cause; 3] = [Cause::Crash, Cause::Stop, Cause::StepDown];

impl Cause {
    fn index(self) -> usize {
        match self {
            Cause::Crash => 0,
            Cause::Stop => 1,
            Cause::StepDown => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Cause::Crash => "crash",
            Cause::Stop => "clean stop",
            Cause::StepDown => "step-down",
        }
    }
}

/// One sample of the time series.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    /// Virtual seconds.
    pub at_secs: f64,
    pub online: usize,
    pub placed: usize,
    /// Online and neither attached to a running supernode nor running one.
    pub unplaced: usize,
    /// Supernodes running (started ones and elected ones).
    pub supernodes: usize,
    /// Of those, elected.
    pub elected: usize,
    /// Elections and step-downs so far.
    pub elections: u64,
    pub step_downs: u64,
    /// Probes leaves started since the previous sample, per online leaf and second.
    pub probes_per_leaf_sec: f64,
    /// Leaves that moved to a faster supernode since the previous sample.
    pub moves: u64,
}

/// Failover after one cause.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Failover {
    pub cause: String,
    /// Leaves whose supernode went away.
    pub orphaned: usize,
    /// Milliseconds to a running supernode's welcome (or running their own).
    pub reattached_ms: Stats,
    /// Milliseconds until their files were indexed at a running supernode (sharing leaves).
    pub searchable_ms: Stats,
    /// Went offline before failing over.
    pub left: usize,
    /// Not failed over by the end of the run.
    pub pending: usize,
}

/// Query figures over one window of send times.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PhaseFigures {
    pub phase: String,
    pub queries: usize,
    pub success: f64,
    /// Success among the queries whose results the network held, and how many of those
    /// got nothing.
    pub success_held: f64,
    pub zero_held: usize,
    /// Mean distinct results and mean ground truth.
    pub found: f64,
    pub truth: f64,
    /// Queries ended without an answer (the asker's supernode went away under them).
    pub lost: usize,
}

/// What a run's dynamics came to.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Dynamics {
    pub crashed: usize,
    pub stopped: usize,
    pub elections: u64,
    pub step_downs: u64,
    /// Of those, while the list server refused the registration.
    pub step_downs_refused: u64,
    /// Elected supernodes running at the end.
    pub elected_running: usize,
    pub failover: Vec<Failover>,
    /// First time every online leaf was placed, once the initial population was up.
    pub all_placed_secs: Option<f64>,
    /// Most leaves unplaced at once once the initial joins are done (when the overlay
    /// forms), and when.
    pub max_unplaced: usize,
    pub max_unplaced_secs: f64,
    /// Probes and list fetches by leaves, per online leaf and second over the run.
    pub probes_per_leaf_sec: f64,
    pub list_fetches_per_leaf_sec: f64,
    /// Probes per running supernode and second over the run.
    pub probes_per_supernode_sec: f64,
    /// Moves of attached leaves to a clearly faster supernode, per online leaf and second.
    pub moves: u64,
    pub moves_per_leaf_sec: f64,
    /// Searches under way at leaves that moved (their cores ended them).
    pub searches_ended_by_moves: u64,
    /// Attach attempts: welcomed, refused as full, failed (no answer, or not a supernode).
    pub attaches_welcomed: u64,
    pub attaches_refused: u64,
    pub attaches_failed: u64,
    pub series: Vec<Sample>,
    pub phases: Vec<PhaseFigures>,
}

/// Collects the dynamics during a run.
pub struct Tracker {
    pub crashed: usize,
    pub stopped: usize,
    pub probes: u64,
    pub list_fetches: u64,
    /// Leaves that moved to another supernode while attached (a clearly faster one).
    pub moves: u64,
    /// Searches under way at a leaf when it moved (the core ends them).
    pub searches_ended_by_moves: u64,
    /// Attaches: welcomed, refused as full, failed.
    attaches: [u64; 3],
    moves_at_last: u64,
    elections: u64,
    step_downs: u64,
    step_downs_refused: u64,
    reattached: [Vec<f64>; 3],
    searchable: [Vec<f64>; 3],
    orphans: [usize; 3],
    left: [usize; 3],
    series: Vec<Sample>,
    every: Duration,
    next_series: Duration,
    probes_at_last: u64,
    last_sample: Duration,
    /// Sums over samples (one a second) of online leaves and running supernodes.
    leaf_secs: f64,
    supernode_secs: f64,
    population_up: Duration,
    /// Unplaced leaves are counted from here (the joins are done).
    joined: Duration,
    all_placed: Option<Duration>,
    max_unplaced: (usize, Duration),
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

impl Tracker {
    pub fn new(timeline: &Timeline, _faults: &Faults, every: Duration) -> Self {
        Self {
            crashed: 0,
            stopped: 0,
            probes: 0,
            list_fetches: 0,
            moves: 0,
            searches_ended_by_moves: 0,
            attaches: [0; 3],
            moves_at_last: 0,
            elections: 0,
            step_downs: 0,
            step_downs_refused: 0,
            reattached: Default::default(),
            searchable: Default::default(),
            orphans: [0; 3],
            left: [0; 3],
            series: Vec::new(),
            every: every.max(Duration::from_secs(1)),
            next_series: Duration::ZERO,
            probes_at_last: 0,
            last_sample: Duration::ZERO,
            leaf_secs: 0.0,
            supernode_secs: 0.0,
            population_up: timeline.join + timeline.join_spread,
            joined: timeline.mesh,
            all_placed: None,
            max_unplaced: (0, Duration::ZERO),
        }
    }

    /// A leaf attached to a supernode (its core's current one: `node_id`) lost it.
    pub fn orphaned(
        &mut self,
        leaf: Option<&mut SimLeaf>,
        life: u32,
        node_id: superpeer_common::NodeId,
        at: Duration,
        cause: Cause,
    ) {
        let Some(leaf) = leaf.filter(|l| l.life() == life && l.orphaned.is_none()) else {
            return;
        };
        let current = leaf.core().and_then(|c| c.supernode()).map(|v| v.node_id);
        if current != Some(node_id) {
            return;
        }
        leaf.orphaned = Some((at, cause));
        leaf.reattached = false;
        self.orphans[cause.index()] += 1;
    }

    /// A running supernode welcomed the leaf as its current one.
    pub fn reattached(&mut self, leaf: Option<&mut SimLeaf>, at: Duration) {
        let Some(leaf) = leaf else {
            return;
        };
        let Some((since, cause)) = leaf.orphaned.filter(|_| !leaf.reattached) else {
            return;
        };
        self.reattached[cause.index()].push(ms(at.saturating_sub(since)));
        leaf.reattached = true;
        if !leaf.sharer() {
            leaf.orphaned = None;
        }
    }

    /// The leaf's files are in a running supernode's index.
    pub fn searchable(&mut self, leaf: Option<&mut SimLeaf>, at: Duration) {
        let Some(leaf) = leaf else {
            return;
        };
        let Some((since, cause)) = leaf.orphaned.take() else {
            return;
        };
        let took = ms(at.saturating_sub(since));
        if !leaf.reattached {
            self.reattached[cause.index()].push(took);
        }
        self.searchable[cause.index()].push(took);
    }

    /// The leaf was elected (placed: it runs its own supernode).
    pub fn elected(&mut self, leaf: Option<&mut SimLeaf>, at: Duration) {
        self.elections += 1;
        self.reattached(leaf, at);
    }

    /// An attach ended this way.
    pub fn attach_outcome(&mut self, reply: &AttachReply) {
        let i = match reply {
            AttachReply::Welcomed { .. } => 0,
            AttachReply::Full(_) => 1,
            AttachReply::Failed(_) => 2,
        };
        if let Some(count) = self.attaches.get_mut(i) {
            *count += 1;
        }
    }

    /// An elected supernode stepped down; `refused`: its registration stood refused.
    pub fn stepped_down(&mut self, refused: bool) {
        self.step_downs += 1;
        self.step_downs_refused += u64::from(refused);
    }

    /// The leaf went offline.
    pub fn left(&mut self, leaf: Option<&mut SimLeaf>) {
        if let Some((_, cause)) = leaf.and_then(|l| l.orphaned.take()) {
            self.left[cause.index()] += 1;
        }
    }

    /// Sums up, with the leaves still orphaned and the queries' phases.
    pub fn figures(
        &self,
        still_orphaned: [usize; 3],
        elected_running: usize,
        phases: Vec<PhaseFigures>,
    ) -> Dynamics {
        let failover = CAUSES
            .iter()
            .filter(|c| self.orphans[c.index()] > 0)
            .map(|&c| Failover {
                cause: c.name().to_string(),
                orphaned: self.orphans[c.index()],
                reattached_ms: Stats::of(self.reattached[c.index()].clone()),
                searchable_ms: Stats::of(self.searchable[c.index()].clone()),
                left: self.left[c.index()],
                pending: still_orphaned[c.index()],
            })
            .collect();
        let per = |count: u64, secs: f64| {
            if secs > 0.0 { count as f64 / secs } else { 0.0 }
        };
        Dynamics {
            crashed: self.crashed,
            stopped: self.stopped,
            elections: self.elections,
            step_downs: self.step_downs,
            step_downs_refused: self.step_downs_refused,
            elected_running,
            failover,
            all_placed_secs: self.all_placed.map(|d| d.as_secs_f64()),
            max_unplaced: self.max_unplaced.0,
            max_unplaced_secs: self.max_unplaced.1.as_secs_f64(),
            probes_per_leaf_sec: per(self.probes, self.leaf_secs),
            list_fetches_per_leaf_sec: per(self.list_fetches, self.leaf_secs),
            probes_per_supernode_sec: per(self.probes, self.supernode_secs),
            moves: self.moves,
            moves_per_leaf_sec: per(self.moves, self.leaf_secs),
            searches_ended_by_moves: self.searches_ended_by_moves,
            attaches_welcomed: self.attaches[0],
            attaches_refused: self.attaches[1],
            attaches_failed: self.attaches[2],
            series: self.series.clone(),
            phases,
        }
    }

    /// Whether `cause`'s index counts a still-orphaned leaf.
    pub fn cause_index(cause: Cause) -> usize {
        cause.index()
    }
}

impl World<'_> {
    /// Samples placement (every second), keeps the series (every `series_every`), and ends
    /// an `until_placed` run once everyone is placed after the queries.
    pub fn sample(&mut self) {
        let now = self.queue.now();
        let online = self.leaves.online_count();
        let placed = self.placed_count();
        let unplaced = online.saturating_sub(placed);
        let supernodes = self.nodes.iter().filter(|n| n.is_up()).count();
        let elected = self
            .nodes
            .iter()
            .filter(|n| n.is_up() && n.owner.is_some())
            .count();
        let t = &mut self.dynamics;
        let step = now.saturating_sub(t.last_sample).as_secs_f64();
        t.leaf_secs += online as f64 * step;
        t.supernode_secs += supernodes as f64 * step;
        t.last_sample = now;
        if now >= t.population_up {
            if unplaced == 0 && online > 0 && t.all_placed.is_none() {
                t.all_placed = Some(now);
            }
            if unplaced > t.max_unplaced.0 && now >= t.joined {
                t.max_unplaced = (unplaced, now);
            }
        }
        if now >= t.next_series {
            let since = now.saturating_sub(
                t.series
                    .last()
                    .map_or(Duration::ZERO, |s| Duration::from_secs_f64(s.at_secs)),
            );
            let probes = t.probes - t.probes_at_last;
            t.probes_at_last = t.probes;
            let moves = t.moves - t.moves_at_last;
            t.moves_at_last = t.moves;
            let leaf_secs = online as f64 * since.as_secs_f64();
            t.series.push(Sample {
                at_secs: now.as_secs_f64(),
                online,
                placed,
                unplaced,
                supernodes,
                elected,
                elections: t.elections,
                step_downs: t.step_downs,
                probes_per_leaf_sec: if leaf_secs > 0.0 {
                    probes as f64 / leaf_secs
                } else {
                    0.0
                },
                moves,
            });
            t.next_series = now + t.every;
        }
        if self.config.until_placed
            && now >= self.timeline.queries_over
            && unplaced == 0
            && online > 0
        {
            self.finish();
        }
        self.queue.after(Duration::from_secs(1), Event::Sample);
    }
}
