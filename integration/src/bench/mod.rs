//! `bench`: the figures of a real network on this machine, from real processes over
//! loopback, with the baselines measured in the same run.
//!
//! 1. A list server and `supernodes` supernodes; `leaves` leaves, placed round-robin on the
//!    supernodes (`--peer`), each sharing `files_per_leaf` files. Join time: from starting
//!    the process until its supernodes' indexes hold all its files. Supernode memory per
//!    indexed file: the growth of the supernodes' resident memory over the growth of
//!    their indexes while the leaves joined.
//! 2. Searches from one leaf, each kind `searches` times: a hit on a leaf of the same
//!    supernode (local), a hit on another supernode's leaf (one hop), a miss. Latency to the
//!    first result (to the end, for a miss) through the control API, p50 and p99, and
//!    overlay messages per query (query messages the supernodes sent each other).
//! 3. Downloads of a `file_mb` file, from one holder and from three, against a bare quinn
//!    stream and a plain TCP copy of as many bytes (ratios).
//! 4. Failover: a supernode killed with SIGKILL; the time until one of its leaves is
//!    attached elsewhere and its files are found again.

mod baseline;
mod measure;

use std::path::PathBuf;

use serde::Serialize;

pub use measure::run;

/// What to measure, and how big.
#[derive(Clone, Debug, Serialize)]
pub struct BenchConfig {
    pub supernodes: usize,
    pub leaves: usize,
    pub files_per_leaf: usize,
    pub searches: usize,
    pub file_mb: usize,
    /// The `superpeer` binary to run.
    #[serde(skip)]
    pub exe: PathBuf,
}

/// Percentiles of a sample, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub samples: usize,
}

impl Latency {
    /// Of `samples_ms`.
    pub fn of(mut samples_ms: Vec<f64>) -> Latency {
        samples_ms.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((samples_ms.len() as f64 - 1.0) * q).round() as usize;
            samples_ms.get(i).copied().unwrap_or(0.0)
        };
        Latency {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            samples: samples_ms.len(),
        }
    }
}

/// Search figures of one kind.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SearchFigures {
    pub latency: Latency,
    /// Query messages between supernodes per search.
    pub messages_per_query: f64,
}

/// Throughput figures of one download against the baselines.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DownloadFigures {
    pub mb_per_s: f64,
    pub of_bare_quinn: f64,
    pub of_tcp: f64,
    pub sources: usize,
}

/// Everything `bench` reports.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub join: Latency,
    pub memory_bytes_per_indexed_file: f64,
    pub indexed_files: usize,
    pub search_local_hit: SearchFigures,
    pub search_one_hop_hit: SearchFigures,
    pub search_miss: SearchFigures,
    pub bare_quinn_mb_per_s: f64,
    pub tcp_mb_per_s: f64,
    pub download_one_source: DownloadFigures,
    pub download_three_sources: DownloadFigures,
    pub failover_s: f64,
}

impl Report {
    /// The table `bench` prints.
    pub fn table(&self, config: &BenchConfig) -> String {
        let search = |name: &str, s: &SearchFigures| {
            format!(
                "{name:<28} p50 {:>7.1} ms   p99 {:>7.1} ms   {:>5.2} overlay messages/query\n",
                s.latency.p50_ms, s.latency.p99_ms, s.messages_per_query
            )
        };
        let download = |name: &str, d: &DownloadFigures| {
            format!(
                "{name:<28} {:>7.0} MB/s   {:>4.0}% of bare quinn   {:>4.0}% of TCP\n",
                d.mb_per_s,
                d.of_bare_quinn * 100.0,
                d.of_tcp * 100.0
            )
        };
        let mut out = format!(
            "superpeer bench: {} supernodes, {} leaves x {} files, {} searches per kind, {} MB \
             downloads\n\n",
            config.supernodes,
            config.leaves,
            config.files_per_leaf,
            config.searches,
            config.file_mb
        );
        out += &format!(
            "{:<28} p50 {:>7.1} ms   p99 {:>7.1} ms\n",
            "join (start to published)", self.join.p50_ms, self.join.p99_ms
        );
        out += &search("search, local hit", &self.search_local_hit);
        out += &search("search, one-hop hit", &self.search_one_hop_hit);
        out += &search("search, miss", &self.search_miss);
        out += &format!(
            "{:<28} {:>7.0} MB/s\n{:<28} {:>7.0} MB/s\n",
            "bare quinn stream", self.bare_quinn_mb_per_s, "TCP copy", self.tcp_mb_per_s
        );
        out += &download("download, 1 source", &self.download_one_source);
        out += &download("download, 3 sources", &self.download_three_sources);
        out += &format!(
            "{:<28} {:>7.1} s\n{:<28} {:>7.0} bytes ({} files indexed)\n",
            "failover after SIGKILL",
            self.failover_s,
            "supernode memory per file",
            self.memory_bytes_per_indexed_file,
            self.indexed_files
        );
        out
    }
}
