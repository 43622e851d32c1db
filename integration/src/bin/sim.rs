//! `sim`: the overlay simulator. Runs the production supernode state machines over a
//! simulated network and compares our routing with Gnutella-0.4-style flooding on the same
//! overlay, content and queries. See `integration/SIMULATOR.md`.
//!
//! ```text
//! cargo run --release -p superpeer-integration --bin sim -- \
//!     --supernodes 1000 --leaves-per-supernode 200 --queries 1000 --seed 1 [--json out.json]
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use superpeer_integration::sim::{self, SimConfig};

/// Simulates a superpeer overlay; prints routing vs flooding per query.
#[derive(Debug, Parser)]
#[command(name = "sim")]
struct Args {
    /// Supernodes.
    #[arg(long, default_value_t = 100)]
    supernodes: usize,
    /// Leaves per supernode.
    #[arg(long, default_value_t = 50)]
    leaves_per_supernode: usize,
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
        let defaults = SimConfig::default();
        let mut core = defaults.core.clone();
        if let Some(n) = self.max_neighbors {
            core.max_neighbors = n;
        }
        if let Some(n) = self.max_leaves {
            core.max_leaves = n;
        }
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
