//! `sim`: the network simulator. Runs the production supernode and leaf state machines
//! over a simulated network, compares our routing with Gnutella-0.4-style flooding on the
//! same overlay, content and queries, and follows failover and elections as supernodes
//! crash, stop or are missing. See `integration/SIMULATOR.md`.
//!
//! ```text
//! cargo run --release -p superpeer-integration --bin sim -- \
//!     --supernodes 1000 --leaves-per-supernode 200 --queries 1000 --seed 1 [--json out.json]
//!     [--crash-fraction 0.05] [--join-supernodes 50] [--no-directory]
//!     [--start-supernodes 100 --until-placed]
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use superpeer_integration::sim::{self, Faults, SimConfig};

/// Simulates a superpeer network; prints routing (with the keyword directory unless
/// --no-directory) vs flooding per query, failover and elections.
#[derive(Debug, Parser)]
#[command(name = "sim")]
struct Args {
    /// Supernodes (with --leaves-per-supernode, the number of leaves).
    #[arg(long, default_value_t = 100)]
    supernodes: usize,
    /// Leaves per supernode.
    #[arg(long, default_value_t = 50)]
    leaves_per_supernode: usize,
    /// Supernodes that actually start (default: --supernodes); the leaves must elect the
    /// rest.
    #[arg(long)]
    start_supernodes: Option<usize>,
    /// Share of the started supernodes that crash (silence: the idle timeout tells).
    #[arg(long, default_value_t = 0.0)]
    crash_fraction: f64,
    /// Share of the started supernodes that stop cleanly (their leaves get `MoveTo`).
    #[arg(long, default_value_t = 0.0)]
    stop_fraction: f64,
    /// New supernodes (no leaves yet) that start at --fault-at-secs: owners join.
    #[arg(long, default_value_t = 0)]
    join_supernodes: usize,
    /// When they crash, stop or join, in virtual seconds after the first query.
    #[arg(long, default_value_t = 10.0)]
    fault_at_secs: f64,
    /// Queries sent this long from the fault on form the "during" window.
    #[arg(long, default_value_t = 10.0)]
    fault_window_secs: f64,
    /// Leaves never elect themselves supernode.
    #[arg(long)]
    no_election: bool,
    /// Seconds a leaf must be up before it may elect itself (the daemon's --promote-after).
    #[arg(long, default_value_t = 60.0)]
    promote_after_secs: f64,
    /// Seconds between two samples of the time series.
    #[arg(long, default_value_t = 5.0)]
    series_secs: f64,
    /// The run lasts at least this many virtual seconds.
    #[arg(long, default_value_t = 0.0)]
    min_secs: f64,
    /// End as soon as every leaf is placed, once the queries are over.
    #[arg(long)]
    until_placed: bool,
    /// Queries sent.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Seed of the workload, latencies and every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Results each query asks for.
    #[arg(long, default_value_t = 50)]
    want: u32,
    /// Files in the catalog (0: one per three leaves, at least 1,000).
    #[arg(long, default_value_t = 0)]
    files: usize,
    /// Words in file names (at most 4,096 distinct).
    #[arg(long, default_value_t = 4096)]
    vocabulary: usize,
    /// Files a sharing leaf shares.
    #[arg(long, default_value_t = 10)]
    files_per_leaf: usize,
    /// Share of leaves that share nothing.
    #[arg(long, default_value_t = 0.7)]
    free_riders: f64,
    /// Mean leaf session in seconds (0: no churn).
    #[arg(long, default_value_t = 1800.0)]
    churn_mean_secs: f64,
    /// Queries per virtual second.
    #[arg(long, default_value_t = 50.0)]
    query_rate: f64,
    /// Most links per supernode (the daemon's default is 32).
    #[arg(long)]
    max_neighbors: Option<usize>,
    /// Most leaves per supernode (the daemon's default is 500).
    #[arg(long)]
    max_leaves: Option<usize>,
    /// Run every supernode without the keyword directory (`CoreConfig::directory =
    /// false`): queries go through neighbours and relays only, as before the directory.
    #[arg(long)]
    no_directory: bool,
    /// Flooding baseline: neighbours each node forwards to.
    #[arg(long, default_value_t = 7)]
    flood_fanout: usize,
    /// Flooding baseline: largest TTL (every TTL from 1 up is run).
    #[arg(long, default_value_t = 7)]
    flood_ttl: u8,
    /// Print progress to stderr every this many virtual seconds.
    #[arg(long)]
    progress_secs: Option<f64>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl Args {
    /// Checks the flags and turns them into the simulator's config.
    fn config(&self) -> anyhow::Result<SimConfig> {
        if self.supernodes == 0 || self.supernodes > u32::MAX as usize / 2 {
            bail!("--supernodes must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.free_riders) {
            bail!("--free-riders is a share between 0 and 1");
        }
        if self.query_rate <= 0.0 || self.churn_mean_secs < 0.0 {
            bail!("--query-rate must be positive and --churn-mean-secs not negative");
        }
        if self.vocabulary == 0 || self.want == 0 {
            bail!("--vocabulary and --want must be at least 1");
        }
        if self.start_supernodes == Some(0) || self.start_supernodes > Some(self.supernodes) {
            bail!("--start-supernodes must be between 1 and --supernodes");
        }
        let share = 0.0..=1.0;
        if !share.contains(&self.crash_fraction)
            || !share.contains(&self.stop_fraction)
            || self.crash_fraction + self.stop_fraction > 1.0
        {
            bail!("--crash-fraction and --stop-fraction are shares adding up to at most 1");
        }
        let secs = [
            self.fault_at_secs,
            self.fault_window_secs,
            self.promote_after_secs,
            self.min_secs,
        ];
        if secs.iter().any(|s| !s.is_finite() || *s < 0.0) || self.series_secs < 1.0 {
            bail!("times must not be negative, and --series-secs at least 1");
        }
        let defaults = SimConfig::default();
        let mut core = defaults.core.clone();
        if let Some(n) = self.max_neighbors {
            core.max_neighbors = n;
        }
        if let Some(n) = self.max_leaves {
            core.max_leaves = n;
        }
        core.directory = !self.no_directory;
        Ok(SimConfig {
            supernodes: self.supernodes,
            leaves_per_supernode: self.leaves_per_supernode,
            queries: self.queries,
            want: self.want,
            seed: self.seed,
            files: self.files,
            vocabulary: self.vocabulary,
            files_per_leaf: self.files_per_leaf,
            free_riders: self.free_riders,
            churn: (self.churn_mean_secs > 0.0)
                .then(|| Duration::from_secs_f64(self.churn_mean_secs)),
            query_rate: self.query_rate,
            core,
            flood_fanout: self.flood_fanout,
            flood_ttl: self.flood_ttl,
            progress: self
                .progress_secs
                .filter(|s| *s > 0.0)
                .map(Duration::from_secs_f64),
            start_supernodes: self.start_supernodes,
            faults: Faults {
                crash: self.crash_fraction,
                stop: self.stop_fraction,
                join: self.join_supernodes,
                at: Duration::from_secs_f64(self.fault_at_secs),
                window: Duration::from_secs_f64(self.fault_window_secs),
            },
            election: !self.no_election,
            promote_after: Duration::from_secs_f64(self.promote_after_secs),
            series_every: Duration::from_secs_f64(self.series_secs),
            min_duration: Duration::from_secs_f64(self.min_secs),
            until_placed: self.until_placed,
            ..defaults
        })
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = args.config()?;
    let report = sim::run(&config);
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).context("cannot encode the report")?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
