//! The simulator against real processes, on a network that is not a full mesh and with
//! queries that stop early: the same routes, the same messages, the same results.
//!
//! The network: six supernodes linked as a tree, up to four hops apart, so routing must go
//! through relays to reach past its neighbours (and cannot reach past two hops):
//!
//! ```text
//!   s0 - s1 - s2 - s3
//!             |
//!             s4 - s5
//! ```
//!
//! The daemons build it themselves: each supernode starts with `--max-neighbors` equal to
//! its links, one after the other, and a newcomer links to the only supernode that still
//! has room. Thirty leaves attach through the list server, five to each supernode (each
//! admits five, so all end up full and no leaf can move on); then each leaf gets the files
//! planned for its place, so every supernode indexes what the plan puts there. Each
//! catalog file is shared by one leaf only, 30% of the leaves share nothing, and every
//! query wants 3 results, so many stop before they have asked everyone.
//!
//! Three accounts of each query must agree:
//! 1. Real daemons over QUIC, one query at a time, with every supernode's
//!    `queries_received` and `queries_forwarded` (`status --json`) read before and after
//!    (until settled).
//! 2. The simulator on the same topology: it is fed the links and the leaves' supernodes
//!    read from the daemons' status (a `Layout`), the same shares, queries and askers.
//! 3. A model of the routing rule, written here from the documented behaviour
//!    ([`Net::expect`]): the asker's index; then the neighbours whose summaries match; then,
//!    while results are still wanted, every neighbour linked beyond the asker's
//!    neighbourhood (the relays), and through them every matching supernode two hops
//!    away, once.
//!
//! Per query, all three must give the same number of query messages received by each
//! supernode (so the same supernodes asked, relays included), sent = received, and the
//! same number of results; every result must carry its one true holder. Where the result
//! *set* may legitimately differ, it is bounded tightly: a query that stops early with
//! `want` results holds everything of the stages before the one it stopped at, and
//! nothing from past that stage (which of the last stage's it got depends on which answer
//! arrives first, and on the order an index returns its matches in when it holds more than
//! still wanted); a query that does not stop early holds exactly everything within two
//! hops. Relays switched off (in the core, the daemon's driver or the simulator), a
//! simulator that stops at another stage, or a relay draw that sends a query twice to one
//! supernode, each change the per-supernode counts.
//!
//! Why the counts agree by construction where timing could make them differ:
//! - Every supernode has at most 3 links, fewer than the router asks in one round (4
//!   candidates, 8 relays), so each stage asks all it has at once: which neighbour answers
//!   first changes no count.
//! - In a tree, each supernode two hops away is reached through one relay only, so the
//!   relay draw (keyed by the query id, random in the daemons and not the simulator's) has
//!   one choice. (Elsewhere the draw picks which relay passes a query on, never how many
//!   copies go.)
//! - No file has two holders, so a supernode that returns fewer than its matches (capped at
//!   what is still wanted) returns only results the asker does not have yet: whether a
//!   stage fills `want` does not depend on which matches it picked.
//! - Answers over loopback come well within the router's round timeout (400 ms), and over
//!   the simulator's links (5-150 ms one way) too.
//!
//! A second test runs the simulator alone on the planned tree against the model (no
//! processes; it shows a simulator bug apart from a daemon one).
//!
//! The keyword directory is off on both sides here (`--no-directory` for the daemons,
//! `CoreConfig::directory = false` in the simulator): this test is about routing through
//! neighbours and relays, whose counts the directory's direct asks would change. The
//! directory has its own tests: `directory_search` (real daemons) and `sim_directory`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use superpeer_common::{ContentId, keywords};
use superpeer_integration::harness::{
    Cluster, Proc, attached, search, wait_for, wait_settled_links,
};
use superpeer_integration::sim::{self, Layout, QueryOutcome, Report, SimConfig, Workload};
use superpeer_integration::workload::{self, CatalogFile};
use superpeer_supernode::{CoreConfig, RouterConfig, keyword_slot};

const EXE: &str = env!("CARGO_BIN_EXE_superpeer-node");
/// Per supernode, in start order: its `--max-neighbors`, and the earlier supernodes it
/// links to (when it starts, the only ones with room).
const PLAN: [(usize, &[usize]); 6] = [
    (1, &[]),
    (2, &[0]),
    (3, &[1]),
    (1, &[2]),
    (2, &[2]),
    (1, &[4]),
];
const SUPERNODES: usize = PLAN.len();
const LEAVES_PER_SUPERNODE: usize = 5;
const LEAVES: usize = SUPERNODES * LEAVES_PER_SUPERNODE;
const FILES_PER_LEAF: usize = 4;
const FREE_RIDERS: f64 = 0.3;
const VOCABULARY: usize = 20;
const QUERIES: usize = 36;
/// Small: a query often has enough before it has asked everyone.
const WANT: u32 = 3;
/// With the constants above, every stage is met several times (see `assert_coverage`).
const SEED: u64 = 3;

#[test]
fn the_simulator_routes_like_real_daemons() {
    let workload = partitioned_workload();
    let real = real_run(&workload);
    assert_eq!(real.adjacency, planned(SUPERNODES));
    let askers = &real.askers;
    let workload = Workload {
        catalog: workload.catalog,
        shares: real.shares.clone(),
        queries: workload.queries,
    };
    let net = Net::new(&real.adjacency, &real.homes, &workload);
    let simulated = simulate(&real.adjacency, &real.homes, askers, &workload);

    let mut failures = Vec::new();
    let mut figures = Figures::default();
    println!(
        "  q  from  words                stop       results real/sim/model  query msgs real/sim/model"
    );
    for (q, words) in workload.queries.iter().enumerate() {
        let origin = real.homes[askers[q]];
        let expected = net.expect(origin, words, WANT as usize);
        let got = &real.queries[q];
        let sim = simulated_outcome(&simulated.per_query[q], origin, &mut failures);
        println!(
            "{q:>3}  s{origin}    {:<20} {:<10} {:>2} / {:>2} / {:>2}            {:>2} / {:>2} / {:>2}",
            words.join(" "),
            format!("{:?}", expected.stop),
            got.found.len(),
            sim.found.len(),
            expected.found,
            got.sent,
            sim.sent,
            expected.received.values().sum::<u64>(),
        );
        figures.add(&expected, got.sent);
        let label = format!("query {q} {words:?} from s{origin}");
        check(
            &format!("{label}, real"),
            got,
            &expected,
            &net,
            &mut failures,
        );
        check(
            &format!("{label}, simulated"),
            &sim,
            &expected,
            &net,
            &mut failures,
        );
    }
    println!("{figures}");
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_coverage(&figures);
}

#[test]
fn the_simulator_follows_the_routing_rule_on_the_planned_tree() {
    let workload = partitioned_workload();
    let adjacency = planned(SUPERNODES);
    let homes = planned_homes();
    let askers = askers(&homes);
    let net = Net::new(&adjacency, &homes, &workload);
    let simulated = simulate(&adjacency, &homes, &askers, &workload);
    let mut failures = Vec::new();
    let mut figures = Figures::default();
    for (q, words) in workload.queries.iter().enumerate() {
        let origin = homes[askers[q]];
        let expected = net.expect(origin, words, WANT as usize);
        let sim = simulated_outcome(&simulated.per_query[q], origin, &mut failures);
        figures.add(&expected, sim.sent);
        let label = format!("query {q} {words:?} from s{origin}, simulated");
        check(&label, &sim, &expected, &net, &mut failures);
    }
    println!("simulated: {figures}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_coverage(&figures);
}

/// The workload is seeded and the topology and homes fixed: every way a query can end is
/// met, relays carry a good share of the messages, and queries find content two hops away.
fn assert_coverage(figures: &Figures) {
    assert!(figures.local >= 5, "{figures}");
    assert!(figures.neighbors >= 3, "{figures}");
    assert!(figures.relays >= 5, "{figures}");
    assert!(figures.exhausted >= 5, "{figures}");
    assert!(figures.two_hop_results >= 5, "{figures}");
    assert!(figures.relay_messages >= 20, "{figures}");
}

/// The planned places: leaf `i` at supernode `i % 6` (the real leaves get the shares of
/// the place they took, see `placed_shares`).
fn planned_homes() -> Vec<usize> {
    (0..LEAVES).map(|leaf| leaf % SUPERNODES).collect()
}

/// Query `q` is sent by a leaf of supernode `q % 6`, each of its leaves in turn.
fn askers(homes: &[usize]) -> Vec<usize> {
    (0..QUERIES)
        .map(|q| {
            let sn = q % SUPERNODES;
            let mine: Vec<usize> = (0..homes.len()).filter(|&l| homes[l] == sn).collect();
            assert!(!mine.is_empty(), "s{sn} has leaves");
            mine[q / SUPERNODES % mine.len()]
        })
        .collect()
}

/// The workload: Zipf-worded file names and queries from `workload`, but each file shared
/// by one leaf only (see the module docs).
fn partitioned_workload() -> Workload {
    let mut rng = StdRng::seed_from_u64(SEED ^ 0x5EED);
    let mut next = 0;
    let shares: Vec<Vec<usize>> = (0..LEAVES)
        .map(|_| {
            if rng.random::<f64>() < FREE_RIDERS {
                return Vec::new();
            }
            next += FILES_PER_LEAF;
            (next - FILES_PER_LEAF..next).collect()
        })
        .collect();
    Workload {
        catalog: workload::catalog(next, VOCABULARY, SEED),
        shares,
        queries: workload::queries(QUERIES, VOCABULARY, SEED),
    }
}

/// The simulator on `adjacency`, with leaf `i` attached to `homes[i]` and query `q` sent by
/// leaf `askers[q]`.
fn simulate(
    adjacency: &[BTreeSet<usize>],
    homes: &[usize],
    askers: &[usize],
    workload: &Workload,
) -> Report {
    let mut links = Vec::new();
    for (a, neighbors) in adjacency.iter().enumerate() {
        for &b in neighbors.iter().filter(|&&b| b > a) {
            links.push((a as u32, b as u32));
        }
    }
    let layout = Layout {
        links: links.clone(),
        homes: homes.iter().map(|&h| h as u32).collect(),
        askers: askers.iter().map(|&a| a as u32).collect(),
    };
    let config = SimConfig {
        supernodes: SUPERNODES,
        leaves_per_supernode: LEAVES_PER_SUPERNODE,
        queries: QUERIES,
        want: WANT,
        seed: SEED,
        files: workload.catalog.len(),
        vocabulary: VOCABULARY,
        files_per_leaf: FILES_PER_LEAF,
        free_riders: FREE_RIDERS,
        churn: None,
        query_rate: 2.0,
        layout: Some(layout),
        // The daemons here have no membership source yet (their driver never passes a
        // membership to the core), so they never use the keyword directory: neither do
        // the simulated ones. The simulator would give them the list server's membership
        // and send lookups and direct queries the model below does not know.
        core: CoreConfig {
            directory: false,
            ..CoreConfig::default()
        },
        ..SimConfig::default()
    };
    let report = sim::run_with(&config, workload);
    assert_eq!(report.link_mismatches, 0);
    assert_eq!(report.links, links, "the simulator runs the given links");
    assert_eq!(report.attached, LEAVES, "every simulated leaf attached");
    assert_eq!(report.queries, QUERIES, "the simulator sent every query");
    report
}

/// What one query did, as the test compares it.
struct Outcome {
    /// Results, with their holders as leaf numbers (`usize::MAX`: not a leaf of ours).
    found: BTreeMap<ContentId, BTreeSet<usize>>,
    /// Per supernode, query messages received (those that received any).
    received: BTreeMap<usize, u64>,
    /// Query messages sent.
    sent: u64,
}

/// A simulated query as an [`Outcome`]; it must have been sent from `origin`.
fn simulated_outcome(sim: &QueryOutcome, origin: usize, failures: &mut Vec<String>) -> Outcome {
    if !sim.sent || sim.origin as usize != origin {
        failures.push(format!(
            "{:?}: simulated from s{} (sent: {}), really from s{origin}",
            sim.keywords, sim.origin, sim.sent
        ));
    }
    Outcome {
        found: sim
            .holders
            .iter()
            .map(|(c, h)| (*c, h.iter().map(|&l| l as usize).collect()))
            .collect(),
        received: sim
            .received
            .iter()
            .map(|(&sn, &n)| (sn as usize, n))
            .collect(),
        sent: sim.query_messages,
    }
}

/// Compares one run's `got` with the model's `expected`; a disagreement goes to `failures`.
fn check(
    label: &str,
    got: &Outcome,
    expected: &Expected,
    net: &Net<'_>,
    failures: &mut Vec<String>,
) {
    let mut fail = |what: &str, detail: String| failures.push(format!("{label}: {what}: {detail}"));
    if got.received != expected.received {
        fail(
            "query messages received per supernode",
            format!("{:?}, expected {:?}", got.received, expected.received),
        );
    }
    let received: u64 = got.received.values().sum();
    if got.sent != received {
        fail(
            "query messages",
            format!("{} sent, {received} received", got.sent),
        );
    }
    let ids: BTreeSet<ContentId> = got.found.keys().copied().collect();
    if ids.len() != expected.found {
        fail(
            "results",
            format!("{}, expected {}", ids.len(), expected.found),
        );
    }
    if !ids.is_superset(&expected.sure) {
        let missing: Vec<_> = expected.sure.difference(&ids).collect();
        fail(
            "results of an earlier stage missing",
            format!("{missing:?}"),
        );
    }
    if !ids.is_subset(&expected.possible) {
        let beyond: Vec<_> = ids.difference(&expected.possible).collect();
        fail(
            "results past the stage it stopped at",
            format!("{beyond:?}"),
        );
    }
    for (content, holders) in &got.found {
        let truth = net.holder.get(content).map(|&leaf| BTreeSet::from([leaf]));
        if truth.as_ref() != Some(holders) {
            fail(
                "holders",
                format!("{content}: {holders:?}, truly {truth:?}"),
            );
        }
    }
}

/// Where a query stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// The asker's supernode had `want` results itself: no neighbour was asked.
    Local,
    /// The neighbours whose summaries match gave enough.
    Neighbors,
    /// Enough once the relays passed it on.
    Relays,
    /// Everything within two hops asked: fewer than `want` results.
    Exhausted,
}

/// What a query must do, by the routing rule.
struct Expected {
    stop: Stop,
    /// Per supernode, query messages received.
    received: BTreeMap<usize, u64>,
    /// Results.
    found: usize,
    /// Results it must have: everything of the stages before the one it stopped at.
    sure: BTreeSet<ContentId>,
    /// Results it may have: everything up to the stage it stopped at.
    possible: BTreeSet<ContentId>,
    /// Of `possible`, results found only two hops away.
    two_hop: usize,
    /// Of the query messages, those to relays and through them.
    relay_messages: u64,
}

/// The network as the routing rule sees it.
struct Net<'w> {
    adjacency: Vec<BTreeSet<usize>>,
    catalog: &'w [CatalogFile],
    /// Per supernode, the catalog files its index holds.
    files: Vec<Vec<usize>>,
    /// Per supernode, the summary bits of its index: every word and content id.
    slots: Vec<BTreeSet<usize>>,
    /// The one leaf that shares each content.
    holder: BTreeMap<ContentId, usize>,
}

impl<'w> Net<'w> {
    fn new(adjacency: &[BTreeSet<usize>], homes: &[usize], workload: &'w Workload) -> Self {
        let mut files: Vec<Vec<usize>> = vec![Vec::new(); adjacency.len()];
        let mut holder = BTreeMap::new();
        for (leaf, share) in workload.shares.iter().enumerate() {
            files[homes[leaf]].extend(share);
            for &f in share {
                assert!(
                    holder
                        .insert(workload.catalog[f].content_id, leaf)
                        .is_none(),
                    "one holder per file"
                );
            }
        }
        let slots = files
            .iter()
            .map(|files| {
                files
                    .iter()
                    .flat_map(|&f| {
                        let file = &workload.catalog[f];
                        let mut words = keywords(&file.name);
                        words.push(file.content_id.to_string());
                        words.into_iter().map(|w| keyword_slot(&w))
                    })
                    .collect()
            })
            .collect();
        Self {
            adjacency: adjacency.to_vec(),
            catalog: &workload.catalog,
            files,
            slots,
            holder,
        }
    }

    /// The contents supernode `sn` indexes that match `words`.
    fn matches(&self, sn: usize, words: &[String]) -> BTreeSet<ContentId> {
        self.files[sn]
            .iter()
            .map(|&f| &self.catalog[f])
            .filter(|file| {
                let names = keywords(&file.name);
                words.iter().all(|w| names.contains(w))
            })
            .map(|file| file.content_id)
            .collect()
    }

    /// Whether `sn`'s summary has the bit of every word (false positives included).
    fn summary_matches(&self, sn: usize, words: &[String]) -> bool {
        words
            .iter()
            .all(|w| self.slots[sn].contains(&keyword_slot(w)))
    }

    /// The routing rule (`supernode/src/router.rs`, `core.rs`), for a query of `words`
    /// wanting `want` from a leaf of `origin`, every supernode knowing every other.
    fn expect(&self, origin: usize, words: &[String], want: usize) -> Expected {
        let words = keywords(&words.join(" "));
        let mut received = BTreeMap::new();
        let done =
            |stop, received, found: usize, sure, possible, two_hop, relay_messages| Expected {
                stop,
                received,
                found,
                sure,
                possible,
                two_hop,
                relay_messages,
            };
        // 1. The asker's own index.
        let local = self.matches(origin, &words);
        if local.len() >= want {
            return done(Stop::Local, received, want, BTreeSet::new(), local, 0, 0);
        }
        // 2. Candidates: the neighbours whose summaries match.
        let neighbors = &self.adjacency[origin];
        let mut one_hop = local.clone();
        for &n in neighbors {
            if self.summary_matches(n, &words) {
                *received.entry(n).or_insert(0) += 1;
                one_hop.extend(self.matches(n, &words));
            }
        }
        if one_hop.len() >= want {
            return done(Stop::Neighbors, received, want, local, one_hop, 0, 0);
        }
        // 3. Relays: neighbours linked beyond our neighbourhood (the query has two hops
        //    unless the asker links to every supernode); through them, each matching
        //    supernode two hops away, once.
        let near: BTreeSet<usize> = neighbors.iter().copied().chain([origin]).collect();
        let beyond: BTreeSet<usize> = neighbors
            .iter()
            .flat_map(|&r| self.adjacency[r].iter().copied())
            .filter(|x| !near.contains(x))
            .collect();
        let relays: Vec<usize> = neighbors
            .iter()
            .copied()
            .filter(|&r| self.adjacency[r].iter().any(|x| beyond.contains(x)))
            .collect();
        let mut two_hops = one_hop.clone();
        let mut relay_messages = relays.len() as u64;
        for &r in &relays {
            *received.entry(r).or_insert(0) += 1;
        }
        if !relays.is_empty() {
            for &x in &beyond {
                if self.summary_matches(x, &words) {
                    *received.entry(x).or_insert(0) += 1;
                    relay_messages += 1;
                    two_hops.extend(self.matches(x, &words));
                }
            }
        }
        let two_hop = two_hops.len() - one_hop.len();
        if two_hops.len() >= want {
            let stop = Stop::Relays;
            done(
                stop,
                received,
                want,
                one_hop,
                two_hops,
                two_hop,
                relay_messages,
            )
        } else {
            let (found, sure) = (two_hops.len(), two_hops.clone());
            let stop = Stop::Exhausted;
            done(
                stop,
                received,
                found,
                sure,
                two_hops,
                two_hop,
                relay_messages,
            )
        }
    }
}

/// What the queries did, summed up.
#[derive(Default)]
struct Figures {
    local: usize,
    neighbors: usize,
    relays: usize,
    exhausted: usize,
    /// Queries whose results include one from two hops away.
    two_hop_results: usize,
    /// Query messages, all queries.
    messages: u64,
    /// Of those, to relays and through them.
    relay_messages: u64,
}

impl Figures {
    fn add(&mut self, expected: &Expected, messages: u64) {
        match expected.stop {
            Stop::Local => self.local += 1,
            Stop::Neighbors => self.neighbors += 1,
            Stop::Relays => self.relays += 1,
            Stop::Exhausted => self.exhausted += 1,
        }
        // Stopping after the relays, or exhausting them, includes their results.
        self.two_hop_results += usize::from(expected.two_hop > 0);
        self.messages += messages;
        self.relay_messages += expected.relay_messages;
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{QUERIES} queries wanting {WANT}: {} answered by the asker's supernode, {} stopped \
             after its neighbours, {} after relays, {} exhausted everything within two hops \
             ({} queries with results from two hops away); {} query messages in all, {} of \
             them to relays and through them",
            self.local,
            self.neighbors,
            self.relays,
            self.exhausted,
            self.two_hop_results,
            self.messages,
            self.relay_messages
        )
    }
}

/// The real run.
struct Real {
    /// Per supernode, its neighbours, read from status.
    adjacency: Vec<BTreeSet<usize>>,
    /// Per leaf, its supernode, read from status.
    homes: Vec<usize>,
    /// Per leaf, the catalog files it shares.
    shares: Vec<Vec<usize>>,
    /// Per query, the leaf that sent it.
    askers: Vec<usize>,
    queries: Vec<Outcome>,
}

/// Per supernode, its neighbours as supernode numbers (an unknown node id fails).
fn adjacency_of(supernodes: &[Proc], ids: &[String]) -> anyhow::Result<Vec<BTreeSet<usize>>> {
    supernodes
        .iter()
        .map(|sn| {
            let status = sn.status()?;
            let summaries = status
                .summaries
                .ok_or_else(|| anyhow::anyhow!("{} reports no summaries", sn.label))?;
            let neighbors: BTreeSet<usize> = summaries
                .neighbors
                .keys()
                .map(|id| {
                    ids.iter()
                        .position(|known| known == id)
                        .ok_or_else(|| anyhow::anyhow!("{} links to a stranger {id}", sn.label))
                })
                .collect::<anyhow::Result<_>>()?;
            anyhow::ensure!(
                status.neighbors == Some(neighbors.len()),
                "{}: {:?} links, {} summaries",
                sn.label,
                status.neighbors,
                neighbors.len()
            );
            Ok(neighbors)
        })
        .collect()
}

/// The planned links among the first `started` supernodes.
fn planned(started: usize) -> Vec<BTreeSet<usize>> {
    let mut adjacency = vec![BTreeSet::new(); started];
    for (n, (_, earlier)) in PLAN.iter().enumerate().take(started) {
        for &e in *earlier {
            adjacency[n].insert(e);
            adjacency[e].insert(n);
        }
    }
    adjacency
}

/// Per supernode, (query messages received, sent) so far.
fn counters(supernodes: &[Proc]) -> anyhow::Result<(Vec<u64>, u64)> {
    let mut received = Vec::with_capacity(supernodes.len());
    let mut forwarded = 0;
    for sn in supernodes {
        let status = sn.status()?;
        received.push(status.queries_received.unwrap_or(0));
        forwarded += status.queries_forwarded.unwrap_or(0);
    }
    Ok((received, forwarded))
}

/// Runs the network as real daemons and sends the queries one at a time.
fn real_run(workload: &Workload) -> Real {
    let mut cluster = Cluster::new(EXE, 64).unwrap();
    let list = cluster
        .list_server("list", &["--heartbeat-ms", "500"])
        .unwrap();
    let mut supernodes: Vec<Proc> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let max_leaves = LEAVES_PER_SUPERNODE.to_string();
    for (n, (max, _)) in PLAN.iter().enumerate() {
        let max = max.to_string();
        let args = [
            "--max-neighbors",
            &max,
            "--max-leaves",
            &max_leaves,
            "--no-directory",
        ];
        let sn = cluster.supernode(&format!("sn-{n}"), &list, &args).unwrap();
        ids.push(sn.pinned.node_id.unwrap().to_string());
        supernodes.push(sn);
        let want = planned(n + 1);
        wait_for(
            &format!("sn-{n} to link as planned"),
            Duration::from_secs(20),
            || Ok((adjacency_of(&supernodes, &ids)? == want).then_some(())),
        )
        .unwrap();
    }
    let adjacency = adjacency_of(&supernodes, &ids).unwrap();
    let fanout = RouterConfig::default().fanout;
    assert!(
        adjacency.iter().all(|n| n.len() <= fanout),
        "every round asks all neighbours at once"
    );

    // The leaves start sharing empty folders and attach as they like; each supernode
    // admits five, so all end up full and no leaf can move on to a faster supernode with
    // room (leaves re-probe, and a loaded machine can make any supernode look faster).
    let list_addr = list.pinned.to_string();
    let mut leaves = Vec::new();
    let mut folders = Vec::new();
    for i in 0..LEAVES {
        let label = format!("leaf-{i}");
        let dir = cluster.folder(&format!("{label}/share")).unwrap();
        let share = dir.to_str().unwrap().to_string();
        let args = [
            "--list-server",
            &list_addr,
            "--no-election",
            "--share",
            &share,
        ];
        leaves.push(cluster.leaf(&label, &args).unwrap());
        folders.push(dir);
    }
    wait_for("every supernode full", Duration::from_secs(30), || {
        let mut counts = Vec::new();
        for sn in &supernodes {
            counts.push(sn.status()?.leaves.unwrap_or(0));
        }
        // Not yet: if it stays so, the timeout names the counts.
        anyhow::ensure!(
            counts.iter().all(|&n| n == LEAVES_PER_SUPERNODE),
            "leaves per supernode: {counts:?}"
        );
        Ok(Some(()))
    })
    .unwrap();
    let homes = homes_of(&leaves, &ids).unwrap();
    let askers = askers(&homes);
    // Then each leaf gets the files planned for its place: the k-th leaf of supernode s
    // those of planned leaf 6k + s. Whoever attached where, each supernode indexes what
    // the plan puts there, and the k-th leaf of s asks what planned leaf 6k + s asks.
    let shares = placed_shares(&homes, &workload.shares);
    for (leaf, share) in shares.iter().enumerate() {
        // Written aside and moved in, so the folder watch sees whole files only.
        let aside = cluster.folder(&format!("leaf-{leaf}/aside")).unwrap();
        workload::write_share(&aside, &workload.catalog, share).unwrap();
        for &f in share {
            let name = &workload.catalog[f].name;
            std::fs::rename(aside.join(name), folders[leaf].join(name)).unwrap();
        }
    }
    let leaf_ids: Vec<String> = leaves
        .iter()
        .map(|leaf| leaf.pinned.node_id.unwrap().to_string())
        .collect();
    let entries: usize = shares.iter().map(Vec::len).sum();
    wait_settled_links(&supernodes, entries, Duration::from_secs(20)).unwrap();
    assert_eq!(
        adjacency_of(&supernodes, &ids).unwrap(),
        adjacency,
        "the links held while the leaves came"
    );

    let mut queries = Vec::new();
    let (mut received, mut forwarded) = counters(&supernodes).unwrap();
    for (q, words) in workload.queries.iter().enumerate() {
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let results = search(&leaves[askers[q]], &words, WANT).unwrap();
        let mut found: BTreeMap<ContentId, BTreeSet<usize>> = BTreeMap::new();
        for result in results {
            let holders = found.entry(result.content_id.parse().unwrap()).or_default();
            for holder in result.holders {
                let leaf = leaf_ids.iter().position(|id| *id == holder.node_id);
                holders.insert(leaf.unwrap_or(usize::MAX));
            }
        }
        // Relays may still pass it on after the asker has enough: wait until every query
        // message sent has been received and nothing moved between two reads.
        let mut last = None;
        let now = wait_for(
            &format!("query {q}'s messages to settle"),
            Duration::from_secs(10),
            || {
                let now = counters(&supernodes)?;
                let settled = last.as_ref() == Some(&now)
                    && now.0.iter().sum::<u64>() - received.iter().sum::<u64>()
                        == now.1 - forwarded;
                last = Some(now.clone());
                Ok(settled.then_some(now))
            },
        )
        .unwrap();
        queries.push(Outcome {
            found,
            received: now
                .0
                .iter()
                .zip(&received)
                .enumerate()
                .filter(|(_, (after, before))| after > before)
                .map(|(sn, (after, before))| (sn, after - before))
                .collect(),
            sent: now.1 - forwarded,
        });
        (received, forwarded) = now;
    }
    assert_eq!(
        adjacency_of(&supernodes, &ids).unwrap(),
        adjacency,
        "the links held while the queries ran"
    );
    assert_eq!(
        homes_of(&leaves, &ids).unwrap(),
        homes,
        "the leaves stayed where they were"
    );
    Real {
        adjacency,
        homes,
        shares,
        askers,
        queries,
    }
}

/// Per leaf, the share `planned` gives the leaf in its place: the k-th leaf (by number)
/// of supernode s gets planned leaf 6k + s's.
fn placed_shares(homes: &[usize], planned: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let places: Vec<usize> = (0..homes.len())
        .map(|leaf| {
            let rank = (0..leaf).filter(|&l| homes[l] == homes[leaf]).count();
            rank * SUPERNODES + homes[leaf]
        })
        .collect();
    let distinct: BTreeSet<usize> = places.iter().copied().collect();
    assert_eq!(distinct.len(), planned.len(), "one leaf in each place");
    places.iter().map(|&p| planned[p].clone()).collect()
}

/// Per leaf, its supernode's number.
fn homes_of(leaves: &[Proc], ids: &[String]) -> anyhow::Result<Vec<usize>> {
    leaves
        .iter()
        .map(|leaf| {
            let status = attached(leaf, Duration::from_secs(30))?;
            let home = status.supernode.map(|s| s.node_id).unwrap_or_default();
            ids.iter()
                .position(|id| *id == home)
                .ok_or_else(|| anyhow::anyhow!("{} attached to a stranger", leaf.label))
        })
        .collect()
}
