//! What a run found: routing and flooding figures per query, summed up; the ratio of
//! messages per query at equal success; run time and memory. Printed as a table or JSON.
//!
//! A query succeeds when it got at least `min(want, truth)` distinct results, `truth` being
//! the contents matching it among the files indexed when it was sent; `held` success counts
//! only the queries whose results the network held (`truth > 0`), as the directory issue
//! defines it (see `report_directory`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use superpeer_common::ContentId;

use super::dynamics::Dynamics;
use super::flood::FloodOutcome;
use super::latency::Place;
use super::queries::QueryRecord;
use super::report_directory::{DirectoryFigures, Outcome};
use super::report_dynamics::{dynamics, want_of};
use super::world::{Peer, World};

/// Mean and percentiles of one figure over the queries.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Stats {
    /// Values counted.
    pub count: usize,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Stats {
    /// Over `values` (any order).
    pub fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((values.len() as f64 - 1.0) * q).round() as usize;
            values.get(i).copied().unwrap_or_default()
        };
        Self {
            count: values.len(),
            min: at(0.0),
            mean: values.iter().sum::<f64>() / values.len() as f64,
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// Our routing's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RoutingFigures {
    /// Share of queries that got `min(want, truth)` results.
    pub success: f64,
    /// The same among the queries whose results the network held.
    pub success_held: f64,
    /// Supernode-to-supernode messages per query (queries, hits and done).
    pub messages: Stats,
    /// Of those, the query messages.
    pub query_messages: Stats,
    /// Distinct supernodes that got the query (the asker's included).
    pub visited: Stats,
    /// Distinct results.
    pub found: Stats,
    /// Milliseconds to the first result (queries that got one).
    pub first_ms: Stats,
    /// Milliseconds to the `want`-th result (queries that got that many).
    pub wanted_ms: Stats,
    /// Queries that had not ended when the run did.
    pub unfinished: usize,
    /// Results that match nothing in the catalog (must be 0).
    pub wrong_results: usize,
}

/// The flooding baseline's figures at one TTL.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FloodFigures {
    pub ttl: u8,
    pub success: f64,
    pub success_held: f64,
    /// Query and hit messages per query, per hop.
    pub messages: Stats,
    pub query_messages: Stats,
    pub visited: Stats,
    /// Distinct results, capped at `want` (the asker wants no more).
    pub found: Stats,
    pub first_ms: Stats,
    pub wanted_ms: Stats,
}

/// One query, for tests and JSON.
#[derive(Clone, Debug, Serialize)]
pub struct QueryOutcome {
    pub keywords: Vec<String>,
    pub sent: bool,
    pub truth: usize,
    /// The contents routing found.
    #[serde(skip)]
    pub found: BTreeSet<ContentId>,
    /// Their holders, by leaf number.
    #[serde(skip)]
    pub holders: BTreeMap<ContentId, BTreeSet<u32>>,
    /// The leaf that sent it, and its supernode.
    pub asker: u32,
    pub origin: u32,
    pub messages: u64,
    /// Of `messages`, the query itself.
    pub query_messages: u64,
    /// Per supernode, the copies of the query it received from neighbours (what a
    /// daemon's `queries_received` counts).
    pub received: BTreeMap<u32, u64>,
    pub visited: usize,
    pub success: bool,
    /// Against what the network held when it was sent.
    pub outcome: Outcome,
    /// Bytes of its supernode-to-supernode messages; directory lookups and answers; query
    /// messages sent directly to supernodes the directory named.
    pub bytes: u64,
    pub lookups: u64,
    pub direct: u64,
    /// Milliseconds to the first and to the `want`-th result.
    pub first_ms: Option<f64>,
    pub wanted_ms: Option<f64>,
    /// How routing ended it, and after how many milliseconds.
    pub end: Option<(String, f64)>,
}

/// A run's results.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Supernodes started as such.
    pub supernodes: usize,
    /// Supernodes that joined while the queries ran.
    pub joined: usize,
    pub leaves: usize,
    /// Leaves attached to a running supernode at the end of the run.
    pub attached: usize,
    /// Leaves placed at the end (attached, or running their own supernode), and online.
    pub placed: usize,
    pub online: usize,
    pub queries: usize,
    pub want: u32,
    pub seed: u64,
    pub max_neighbors: usize,
    /// Links per supernode at the end of the run.
    pub degree: Stats,
    /// Per query sent, over every core's router: copies that arrived at a supernode which
    /// had already seen the query id (and so answered `QueryDone` without relaying).
    pub duplicates_per_query: f64,
    /// Supernodes whose core counts other links than the simulator's session table
    /// (must be 0: the simulator carries out every link decision).
    pub link_mismatches: usize,
    /// The links between supernodes at the end of the run, as (smaller, larger) numbers.
    #[serde(skip)]
    pub links: Vec<(u32, u32)>,
    pub routing: RoutingFigures,
    /// Crashes, stops, failover, elections, step-downs, placement over time, and query
    /// success before, during and after the fault.
    pub dynamics: Dynamics,
    /// The keyword directory: outcomes, costs, counters, memory.
    pub directory: DirectoryFigures,
    /// Per TTL from 1.
    pub flooding: Vec<FloodFigures>,
    /// The smallest flooding TTL at least as successful as routing.
    pub equal_success_ttl: Option<u8>,
    /// Flooding's messages per query at that TTL over routing's.
    pub ratio_at_equal_success: Option<f64>,
    /// Flooding's messages per query at the largest TTL over routing's.
    pub ratio_at_max_ttl: Option<f64>,
    /// From the first query to the end of the run, per supernode and second: keyword
    /// summaries sent, their bytes, and gossip messages. Routing pays these to keep its
    /// summaries fresh (leaves come and go); flooding has no such cost.
    pub summaries_per_supernode_sec: f64,
    pub summary_bytes_per_supernode_sec: f64,
    pub gossip_per_supernode_sec: f64,
    pub virtual_secs: f64,
    pub events: u64,
    pub wall_secs: f64,
    /// Peak resident memory of the process (VmHWM), MiB.
    pub peak_rss_mib: Option<f64>,
    pub per_query: Vec<QueryOutcome>,
}

impl Report {
    /// Sums up `world` after a run that took `wall`.
    pub fn new(world: &World<'_>, wall: Duration) -> Self {
        let dynamics = dynamics(world, want_of(world));
        let want = world.config.want as usize;
        let sent: Vec<&QueryRecord> = world.queries.records.iter().filter(|r| r.sent).collect();
        let succeeded = |found: usize, truth: usize| found >= want.min(truth);
        let share = |n: usize| n as f64 / sent.len().max(1) as f64;
        let per_query: Vec<QueryOutcome> = world
            .queries
            .records
            .iter()
            .zip(&world.workload.queries)
            .map(|(r, words)| QueryOutcome {
                keywords: words.clone(),
                sent: r.sent,
                truth: r.truth,
                found: r.found.clone(),
                holders: r.holders.clone(),
                asker: r.asker,
                origin: r.origin,
                messages: r.messages,
                query_messages: r.query_messages,
                received: received(&r.visited),
                visited: distinct(&r.visited),
                success: r.sent && succeeded(r.found.len(), r.truth),
                outcome: Outcome::of(r.found.len(), r.truth, want),
                bytes: r.bytes,
                lookups: r.lookups,
                direct: r.direct,
                first_ms: r.first.map(ms),
                wanted_ms: r.wanted.map(ms),
                end: r.done.as_ref().map(|(at, end)| (end.clone(), ms(*at))),
            })
            .collect();
        let wrong_results = world
            .queries
            .records
            .iter()
            .zip(&world.workload.queries)
            .map(|(r, words)| {
                let matching: BTreeSet<ContentId> = world
                    .content
                    .matching(words)
                    .into_iter()
                    .filter_map(|f| world.content.content_id(f))
                    .collect();
                r.found.difference(&matching).count()
            })
            .sum();
        let stat = |f: &dyn Fn(&QueryRecord) -> Option<f64>| {
            Stats::of(sent.iter().filter_map(|r| f(r)).collect())
        };
        let held: Vec<&QueryRecord> = sent.iter().copied().filter(|r| r.truth > 0).collect();
        let held_share = |ok: usize| ok as f64 / held.len().max(1) as f64;
        let routing = RoutingFigures {
            success: share(per_query.iter().filter(|q| q.success).count()),
            success_held: held_share(
                held.iter()
                    .filter(|r| succeeded(r.found.len(), r.truth))
                    .count(),
            ),
            messages: stat(&|r| Some(r.messages as f64)),
            query_messages: stat(&|r| Some(r.query_messages as f64)),
            visited: stat(&|r| Some(distinct(&r.visited) as f64)),
            found: stat(&|r| Some(r.found.len() as f64)),
            first_ms: stat(&|r| r.first.map(ms)),
            wanted_ms: stat(&|r| r.wanted.map(ms)),
            unfinished: sent.iter().filter(|r| r.done.is_none()).count(),
            wrong_results,
        };
        let ttls = sent.iter().map(|r| r.flood.len()).max().unwrap_or(0);
        let flooding: Vec<FloodFigures> = (0..ttls)
            .map(|i| {
                let at = |r: &QueryRecord| r.flood.get(i).copied().unwrap_or_default();
                let fstat = |f: &dyn Fn(&FloodOutcome) -> Option<f64>| {
                    Stats::of(sent.iter().filter_map(|r| f(&at(r))).collect())
                };
                let ok = sent
                    .iter()
                    .filter(|r| succeeded(at(r).found, r.truth))
                    .count();
                let ok_held = held
                    .iter()
                    .filter(|r| succeeded(at(r).found, r.truth))
                    .count();
                FloodFigures {
                    ttl: u8::try_from(i + 1).unwrap_or(u8::MAX),
                    success: share(ok),
                    success_held: held_share(ok_held),
                    messages: fstat(&|f| Some(f.messages as f64)),
                    query_messages: fstat(&|f| Some(f.query_messages as f64)),
                    visited: fstat(&|f| Some(f.visited as f64)),
                    found: fstat(&|f| Some(f.found.min(want) as f64)),
                    first_ms: fstat(&|f| f.first.map(ms)),
                    wanted_ms: fstat(&|f| f.wanted.map(ms)),
                }
            })
            .collect();
        let ratio = |f: &FloodFigures| {
            (routing.messages.mean > 0.0).then(|| f.messages.mean / routing.messages.mean)
        };
        let equal = flooding.iter().find(|f| f.success >= routing.success);
        let degree = Stats::of({
            let mut topology = super::flood::Topology::default();
            let places = vec![Place::ListServer; world.nodes.len()];
            topology.refresh(&world.nodes, places);
            topology
                .degrees()
                .zip(&world.nodes)
                .filter(|(_, node)| node.is_up())
                .map(|(d, _)| d as f64)
                .collect()
        });
        let links: BTreeSet<(u32, u32)> = world
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(n, node)| {
                node.sessions.values().filter_map(move |peer| match *peer {
                    Peer::Neighbor { node: other, .. } => {
                        let n = n as u32;
                        Some((n.min(other), n.max(other)))
                    }
                    Peer::Leaf { .. } | Peer::Direct { .. } => None,
                })
            })
            .collect();
        let link_mismatches = world
            .nodes
            .iter()
            .filter(|node| node.is_up())
            .filter(|node| {
                let sessions = node
                    .sessions
                    .values()
                    .filter(|p| matches!(p, Peer::Neighbor { .. }))
                    .count();
                sessions != node.core.status().neighbors.len()
            })
            .count();
        let upkeep = world.upkeep;
        let span = world
            .queue
            .now()
            .saturating_sub(world.timeline.queries)
            .as_secs_f64()
            .max(f64::MIN_POSITIVE)
            * world.nodes.len().max(1) as f64;
        let duplicates: u64 = world
            .nodes
            .iter()
            .map(|node| node.core.status().router.duplicates)
            .sum();
        let directory = DirectoryFigures::new(
            world,
            routing.messages.mean,
            flooding.last().map(|f| f.messages.mean),
        );
        Self {
            joined: world.joining,
            directory,
            duplicates_per_query: duplicates as f64 / sent.len().max(1) as f64,
            summaries_per_supernode_sec: upkeep.summaries as f64 / span,
            summary_bytes_per_supernode_sec: upkeep.summary_bytes as f64 / span,
            gossip_per_supernode_sec: upkeep.gossip as f64 / span,
            link_mismatches,
            links: links.into_iter().collect(),
            supernodes: world.started,
            leaves: world.leaves.len(),
            attached: (0..world.leaves.len() as u32)
                .filter(|&n| {
                    world.is_placed(n)
                        && world
                            .leaves
                            .get(n)
                            .is_some_and(|l| l.open_sessions().next().is_some())
                })
                .count(),
            placed: world.placed_count(),
            online: world.leaves.online_count(),
            dynamics,
            queries: sent.len(),
            want: world.config.want,
            seed: world.config.seed,
            max_neighbors: world.config.core.max_neighbors,
            degree,
            equal_success_ttl: equal.map(|f| f.ttl),
            ratio_at_equal_success: equal.and_then(ratio),
            ratio_at_max_ttl: flooding.last().and_then(ratio),
            routing,
            flooding,
            virtual_secs: world.queue.now().as_secs_f64(),
            events: world.queue.processed(),
            wall_secs: wall.as_secs_f64(),
            peak_rss_mib: peak_rss_mib(),
            per_query,
        }
    }

    /// The report as a table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "superpeer network simulator, seed {}: {} supernodes started, {} leaves ({} attached at the end), {} queries wanting {} results",
            self.seed, self.supernodes, self.leaves, self.attached, self.queries, self.want,
        );
        let _ = writeln!(
            out,
            "overlay: {:.1} links per running supernode (min {:.0}, max_neighbors {})\n",
            self.degree.mean, self.degree.min, self.max_neighbors
        );
        let _ = writeln!(
            out,
            "{:<12} {:>8} {:>9} {:>9} {:>9} {:>8} {:>8} {:>7} {:>8} {:>8} {:>8} {:>8}",
            "",
            "msgs/q",
            "msgs p99",
            "query/q",
            "visited",
            "success",
            "held",
            "found",
            "1st p50",
            "1st p99",
            "want p50",
            "want p99"
        );
        let mut row = |name: &str,
                       m: &Stats,
                       qm: &Stats,
                       v: &Stats,
                       s: f64,
                       held: f64,
                       f: &Stats,
                       first: &Stats,
                       wanted: &Stats| {
            let _ = writeln!(
                out,
                "{name:<12} {:>8.1} {:>9.0} {:>9.1} {:>9.1} {:>7.1}% {:>7.1}% {:>7.1} {:>6.0}ms {:>6.0}ms {:>6.0}ms {:>6.0}ms",
                m.mean,
                m.p99,
                qm.mean,
                v.mean,
                s * 100.0,
                held * 100.0,
                f.mean,
                first.p50,
                first.p99,
                wanted.p50,
                wanted.p99
            );
        };
        let r = &self.routing;
        row(
            "routing",
            &r.messages,
            &r.query_messages,
            &r.visited,
            r.success,
            r.success_held,
            &r.found,
            &r.first_ms,
            &r.wanted_ms,
        );
        for f in &self.flooding {
            let name = format!("flood ttl {}", f.ttl);
            row(
                &name,
                &f.messages,
                &f.query_messages,
                &f.visited,
                f.success,
                f.success_held,
                &f.found,
                &f.first_ms,
                &f.wanted_ms,
            );
        }
        let _ = writeln!(out);
        match (self.equal_success_ttl, self.ratio_at_equal_success) {
            (Some(ttl), Some(ratio)) => {
                let _ = writeln!(
                    out,
                    "at equal success (flooding TTL {ttl} >= routing's {:.1}%): flooding sends {ratio:.1}x the messages per query",
                    r.success * 100.0
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "no flooding TTL up to the largest is as successful as routing"
                );
            }
        }
        if let (Some(ratio), Some(last)) = (self.ratio_at_max_ttl, self.flooding.last()) {
            let _ = writeln!(
                out,
                "against the classic baseline (TTL {}): {ratio:.1}x the messages per query",
                last.ttl
            );
        }
        let _ = writeln!(
            out,
            "overlay upkeep while querying, per supernode and second: {:.2} summaries ({:.1} KiB), {:.2} gossip messages",
            self.summaries_per_supernode_sec,
            self.summary_bytes_per_supernode_sec / 1024.0,
            self.gossip_per_supernode_sec
        );
        let _ = writeln!(
            out,
            "routing: {:.1} duplicate copies dropped per query; {} queries unfinished at the end; {} results matching nothing; {} link mismatches",
            self.duplicates_per_query, r.unfinished, r.wrong_results, self.link_mismatches
        );
        self.directory.table(&mut out);
        self.dynamics_table(&mut out);
        let _ = writeln!(
            out,
            "wall {:.1} s for {:.1} virtual s ({} events); peak RSS {}",
            self.wall_secs,
            self.virtual_secs,
            self.events,
            self.peak_rss_mib
                .map_or("unknown".to_string(), |m| format!("{m:.0} MiB"))
        );
        out
    }
}

/// Per supernode, the copies of a query it received: `visited` less its first entry (the
/// asker's supernode, which the leaf's copy reached).
fn received(visited: &[u32]) -> BTreeMap<u32, u64> {
    let mut counts = BTreeMap::new();
    for &sn in visited.iter().skip(1) {
        *counts.entry(sn).or_insert(0) += 1;
    }
    counts
}

fn distinct(visited: &[u32]) -> usize {
    visited.iter().collect::<BTreeSet<_>>().len()
}

/// The process's peak resident memory (Linux's VmHWM), MiB.
pub fn peak_rss_mib() -> Option<f64> {
    status_mib("VmHWM:")
}

/// The process's resident memory now (Linux's VmRSS), MiB.
pub fn rss_mib() -> Option<f64> {
    status_mib("VmRSS:")
}

fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
