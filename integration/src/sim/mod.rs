//! The overlay simulator: the production state machines of every node over a simulated
//! network with per-link latency, a virtual clock and a seed. Supernodes run
//! [`SupernodeCore`] (the very type the daemon's supernode driver runs), every leaf runs
//! [`LeafCore`] (the very type the daemon's node driver runs), and the list server runs
//! [`Registry`]. It measures, per query, supernode-to-supernode messages (the keyword
//! directory's included) and their bytes, supernodes visited, results against what the
//! network held, and the time to the first and to the `want`-th result; it runs a
//! Gnutella-0.4-style flooding baseline (fanout 7, TTL 7) over the same supernode links,
//! content and queries; and it follows how the network holds up: supernodes that crash or
//! stop, leaves that fail over, elect themselves or step back down.
//!
//! What is real and what is modelled:
//! - Real: every supernode decision (admission, index, summaries, routing rounds, duplicate
//!   suppression, mesh dials and link tie-breaks, gossip, the keyword directory's
//!   publishes, owner stores, lookups and direct queries), every leaf decision (which
//!   supernode to probe and attach to, the first-join wait, failover, list refreshes, what
//!   is published, search pacing and merging, the election, stepping down) and the
//!   registry's admission, heartbeats, expiry and shortage signal. The simulator carries out
//!   a supernode's `Action`s as `superpeer_supernode`'s driver does (see `carry`) and a
//!   leaf's `LeafAction`s as the node's driver does (see `leaf_driver`).
//! - Modelled: the wire (messages are moved, not encoded; their sizes are computed), QUIC
//!   (a handshake takes 1.5 RTT, a probe 1.5 RTT and three pings, a dead peer is noticed
//!   after the idle timeout), which supernodes a list holds (see `list_server`), and when
//!   each supernode fetches the membership (see `membership`).
//!
//! A run, in virtual time: supernodes start and register (1,000 a second); leaves come up
//! and join through the list server; the supernodes then fetch lists and form their mesh,
//! in the order and over the time they started (so the first summaries carry full indexes
//! instead of a storm of partial ones); after 20 s to settle, queries are sent at a steady
//! rate from random placed leaves; each query's flooding baseline is computed on the mesh
//! at the moment it is sent. Faults (crashes, clean stops, new supernodes joining) happen
//! at a set time; leaves elect themselves whenever their cores decide to.
//!
//! With a [`Layout`] (a real network's, read from its daemons), the overlay is not formed
//! by the supernodes' dials but laid out: the given links come up at once when the mesh
//! would form, each leaf knows only the supernode given for it (as with `--peer`), and each
//! query is sent by the leaf given for it. Everything else (indexes, summaries, gossip,
//! routing, the leaves' cores) runs as usual, so the simulator routes on the very topology
//! the daemons had.
//!
//! Layout:
//! - `queue`: the virtual clock and the event queue.
//! - `latency`: seeded positions and one-way delays.
//! - `ids`: node ids, addresses and query ids that carry the simulator's numbering.
//! - `content`: the catalog by word, holders, ground truth.
//! - `world`: the simulated network and its event loop.
//! - `events`: everything that happens, and where each event goes.
//! - `links`: links between supernodes (the handshake of `sessions.rs`).
//! - `direct`: directory sessions between supernodes that need not be neighbours.
//! - `carry`: carrying out a supernode's actions, as the supernode's driver does.
//! - `list_server`: the registry, registrations and list fetches.
//! - `membership`: the listed set as shared, versioned memberships, and their fetches.
//! - `leaves`: each leaf's core and the simulator's view of it; coming and going; wakeups.
//! - `leaf_driver`: carrying out a leaf's actions, as the node's driver does.
//! - `leaf_sessions`: probes, attaches and sessions between leaves and supernodes.
//! - `roles`: supernodes that crash, stop or join, leaves promoted to supernode and
//!   stepping down.
//! - `dynamics`: failover times, elections, step-downs, placement over time.
//! - `queries`: the queries and what each one saw.
//! - `flood`: the flooding baseline.
//! - `report`: figures, the table and JSON.
//! - `report_directory`: the directory's figures: outcomes, costs, counters, memory.
//! - `report_dynamics`: crashes, failover, elections and success around the fault.
//!
//! [`SupernodeCore`]: superpeer_supernode::SupernodeCore
//! [`LeafCore`]: superpeer::leaf::LeafCore
//! [`Registry`]: superpeer_bootstrap_list::Registry

mod carry;
mod content;
mod direct;
#[allow(
    clippy::indexing_slicing,
    reason = "per-cause counters: arrays sized by the cause enum, indexed by it"
)]
mod dynamics;
mod events;
mod flood;
mod ids;
mod latency;
mod leaf_driver;
mod leaf_sessions;
mod leaves;
mod links;
mod list_server;
mod membership;
mod queries;
mod queue;
mod report;
mod report_directory;
mod report_dynamics;
mod roles;
mod world;

use std::time::Duration;

use superpeer_supernode::CoreConfig;

use crate::workload::{self, CatalogFile};

pub use dynamics::{Dynamics, Failover, PhaseFigures, Sample};
pub use latency::{Latency, Place};
pub use queue::{Clock, EventQueue};
pub use report::{FloodFigures, QueryOutcome, Report, RoutingFigures, Stats};
pub use report_directory::{DirectoryFigures, Outcome};

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Supernodes.
    pub supernodes: usize,
    /// Leaves per supernode (all leaves = this x supernodes).
    pub leaves_per_supernode: usize,
    /// Queries sent.
    pub queries: usize,
    /// Results each query asks for.
    pub want: u32,
    /// Seeds the workload, the latencies and every random choice.
    pub seed: u64,
    /// Files in the catalog.
    pub files: usize,
    /// Words file names are made of.
    pub vocabulary: usize,
    /// Files a sharing leaf shares.
    pub files_per_leaf: usize,
    /// Share of leaves that share nothing.
    pub free_riders: f64,
    /// Mean leaf session length; `None`: leaves stay.
    pub churn: Option<Duration>,
    /// Queries sent per virtual second.
    pub query_rate: f64,
    /// The supernodes' tunables (the daemon's defaults unless a run says otherwise).
    pub core: CoreConfig,
    /// How often each supernode's timers run (the daemon's driver ticks every 100 ms).
    pub tick: Duration,
    /// Flooding baseline: neighbours each node forwards to.
    pub flood_fanout: usize,
    /// Flooding baseline: the largest TTL; the baseline runs every TTL from 1 up to it.
    pub flood_ttl: u8,
    /// Print a line to stderr every this much virtual time (phase, memory, progress).
    pub progress: Option<Duration>,
    /// A network laid out in advance instead of formed by dials and joins.
    pub layout: Option<Layout>,
    /// Supernodes that start (the others are only counted for the leaves: the network
    /// must elect the rest); `None`: all of them.
    pub start_supernodes: Option<usize>,
    /// Faults: supernodes that crash or stop, when.
    pub faults: Faults,
    /// Whether leaves may elect themselves supernode (the daemon's default: yes).
    pub election: bool,
    /// How long a leaf must be up before it may elect itself (`leaf --promote-after`, 60 s
    /// by default); the election's other waits scale with it, as in the daemon.
    pub promote_after: Duration,
    /// How often the time series samples the network.
    pub series_every: Duration,
    /// The run lasts at least this long (virtual time).
    pub min_duration: Duration,
    /// Ends the run early, once past the queries, when every leaf is placed.
    pub until_placed: bool,
}

/// Supernodes that go away, and new ones that join, while the queries run.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Share of the started supernodes that crash: their links and leaves just see silence.
    pub crash: f64,
    /// Share that stop cleanly, telling their leaves where to go first (`MoveTo`).
    pub stop: f64,
    /// New supernodes (`superpeer supernode`, with no leaves yet) that start: they become
    /// owners of some keywords.
    pub join: usize,
    /// When all of it happens, after the first query.
    pub at: Duration,
    /// Queries sent this long from the fault on are counted in the "during" window.
    pub window: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            crash: 0.0,
            stop: 0.0,
            join: 0,
            at: Duration::from_secs(10),
            window: Duration::from_secs(10),
        }
    }
}

impl Faults {
    /// Whether any supernode goes away or joins.
    pub fn any(&self) -> bool {
        self.crash > 0.0 || self.stop > 0.0 || self.join > 0
    }
}

/// A network laid out in advance: which supernodes are linked, where each leaf attaches,
/// who sends each query. Supernodes, leaves and queries are numbered as in the run
/// (leaves and queries in the order of the workload's shares and queries).
///
/// Each supernode's `max_neighbors` becomes the number of links it has here, so no
/// supernode dials beyond the layout, and its `max_leaves` the number of leaves placed on
/// it, so that every supernode is full and no leaf moves elsewhere (as in the real test
/// the layouts come from). In a settled real network a supernode with room only dials
/// supernodes that refuse it (they are full), which changes no route.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// Links between supernodes, each once, as (dialler, dialled).
    pub links: Vec<(u32, u32)>,
    /// Per leaf, the supernode it attaches to.
    pub homes: Vec<u32>,
    /// Per query, the leaf that sends it.
    pub askers: Vec<u32>,
}

impl Layout {
    /// Links supernode `n` has.
    pub fn degree(&self, n: u32) -> usize {
        self.links
            .iter()
            .filter(|&&(a, b)| a == n || b == n)
            .count()
    }

    /// Leaves placed on supernode `n`.
    pub fn leaves_of(&self, n: u32) -> usize {
        self.homes.iter().filter(|&&h| h == n).count()
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            supernodes: 100,
            leaves_per_supernode: 50,
            queries: 200,
            want: 50,
            seed: 1,
            files: 0,
            vocabulary: 4096,
            files_per_leaf: 10,
            free_riders: 0.7,
            churn: Some(Duration::from_secs(1800)),
            query_rate: 50.0,
            core: CoreConfig::default(),
            tick: Duration::from_millis(100),
            flood_fanout: 7,
            flood_ttl: 7,
            progress: None,
            layout: None,
            start_supernodes: None,
            faults: Faults::default(),
            election: true,
            promote_after: Duration::from_secs(60),
            series_every: Duration::from_secs(5),
            min_duration: Duration::ZERO,
            until_placed: false,
        }
    }
}

impl SimConfig {
    /// All leaves.
    pub fn leaves(&self) -> usize {
        self.supernodes * self.leaves_per_supernode
    }

    /// Supernodes that start.
    pub fn started_supernodes(&self) -> usize {
        self.start_supernodes
            .unwrap_or(self.supernodes)
            .min(self.supernodes)
    }

    /// Files in the catalog: as configured, or one per three leaves (at least 1,000) so
    /// that popular files have many holders and rare ones few.
    pub fn catalog_size(&self) -> usize {
        if self.files > 0 {
            self.files
        } else {
            (self.leaves() / 3).max(1_000)
        }
    }
}

/// The files, who shares what, and the queries: everything a run needs besides the network.
/// The real-process test builds the same from the same seed.
pub struct Workload {
    /// The catalog.
    pub catalog: Vec<CatalogFile>,
    /// Per leaf, the catalog numbers it shares.
    pub shares: Vec<Vec<usize>>,
    /// Per query, its keywords.
    pub queries: Vec<Vec<String>>,
}

impl Workload {
    /// The workload `config` describes, from the generators in [`crate::workload`].
    pub fn generate(config: &SimConfig) -> Self {
        let catalog = workload::catalog(config.catalog_size(), config.vocabulary, config.seed);
        let shares = workload::shares(
            catalog.len(),
            config.leaves(),
            config.files_per_leaf,
            config.free_riders,
            config.seed,
        );
        let queries = workload::queries(config.queries, config.vocabulary, config.seed);
        Self {
            catalog,
            shares,
            queries,
        }
    }
}

/// Generates the workload and runs the simulation.
pub fn run(config: &SimConfig) -> Report {
    let workload = Workload::generate(config);
    run_with(config, &workload)
}

/// Runs the simulation of `config` on `workload` (whose share and query counts win over
/// the config's).
pub fn run_with(config: &SimConfig, workload: &Workload) -> Report {
    world::World::new(config.clone(), workload).run()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SimConfig {
        SimConfig {
            supernodes: 12,
            leaves_per_supernode: 8,
            queries: 40,
            want: 20,
            seed: 5,
            files: 400,
            vocabulary: 80,
            files_per_leaf: 6,
            free_riders: 0.5,
            churn: Some(Duration::from_secs(60)),
            ..SimConfig::default()
        }
    }

    fn fingerprint(report: &Report) -> Vec<(usize, Vec<ContentIdHex>, u64, usize)> {
        report
            .per_query
            .iter()
            .map(|q| {
                let found = q.found.iter().map(|c| c.to_string()).collect();
                (q.truth, found, q.messages, q.visited)
            })
            .collect()
    }

    type ContentIdHex = String;

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let a = run(&small());
        let b = run(&small());
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_eq!(a.events, b.events);
        assert_eq!(a.routing.messages, b.routing.messages);
        assert_eq!(a.link_mismatches, 0);
        assert_eq!(a.flooding.len(), 7);
        for (fa, fb) in a.flooding.iter().zip(&b.flooding) {
            assert_eq!(fa.messages, fb.messages);
        }
        let other = run(&SimConfig { seed: 6, ..small() });
        assert_ne!(fingerprint(&a), fingerprint(&other), "the seed matters");
    }

    #[test]
    fn a_layout_is_the_overlay_and_relays_reach_two_hops() {
        // a - b - c, four leaves each; every query from a leaf of a, wanting everything.
        let layout = Layout {
            links: vec![(0, 1), (1, 2)],
            homes: (0..12).map(|leaf| leaf % 3).collect(),
            askers: (0..40).map(|q| (q % 4) * 3).collect(),
        };
        let report = run(&SimConfig {
            supernodes: 3,
            leaves_per_supernode: 4,
            free_riders: 0.0,
            churn: None,
            want: 500,
            layout: Some(layout.clone()),
            ..small()
        });
        assert_eq!(report.links, layout.links);
        assert_eq!(report.link_mismatches, 0);
        assert_eq!(report.attached, 12);
        assert_eq!(report.queries, 40);
        for q in &report.per_query {
            assert_eq!(q.origin, 0, "{:?}", q.keywords);
            assert_eq!(q.found.len(), q.truth, "{:?}", q.keywords);
            assert_eq!(q.received.get(&0), None, "{:?}", q.keywords);
        }
        assert!(
            report
                .per_query
                .iter()
                .any(|q| q.received.get(&1) == Some(&1) && q.received.get(&2) == Some(&1)),
            "some queries reach c through b"
        );
    }

    #[test]
    fn a_full_mesh_finds_exactly_what_is_shared() {
        // Twelve supernodes link to all others: every query reaches every index.
        let report = run(&SimConfig {
            churn: None,
            want: 500,
            ..small()
        });
        assert_eq!(report.degree.min, 11.0);
        assert_eq!(report.link_mismatches, 0);
        assert_eq!(report.queries, 40);
        assert_eq!(report.routing.wrong_results, 0);
        for q in &report.per_query {
            assert_eq!(q.found.len(), q.truth, "{:?}", q.keywords);
        }
        assert_eq!(report.routing.success, 1.0);
        assert_eq!(report.attached, 96);
    }
}
