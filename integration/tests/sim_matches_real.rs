//! The simulator against real processes: the same small network (4 supernodes, 40 leaves
//! with at most 12 per supernode), the same seeded workload and the same 60 queries, run
//! once as real daemons over QUIC and once in the simulator, must give the same contents
//! for every query, and both must be exactly what the leaves share (every query asks for
//! more results than can match, so routing must find all of them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::time::Duration;

use superpeer_common::ContentId;
use superpeer_integration::harness::{
    Cluster, Proc, attached, listed, search, wait_for, wait_settled,
};
use superpeer_integration::sim::{self, SimConfig, Workload};
use superpeer_integration::workload::{self, Truth};

const EXE: &str = env!("CARGO_BIN_EXE_superpeer-node");
const SUPERNODES: usize = 4;
const LEAVES_PER_SUPERNODE: usize = 10;
const MAX_LEAVES: usize = 12;
const QUERIES: usize = 60;
/// More than the catalog holds: a query's answer is all of its matches.
const WANT: u32 = 400;
const SEED: u64 = 4242;

fn config() -> SimConfig {
    let mut config = SimConfig {
        supernodes: SUPERNODES,
        leaves_per_supernode: LEAVES_PER_SUPERNODE,
        queries: QUERIES,
        want: WANT,
        seed: SEED,
        files: 300,
        vocabulary: 60,
        files_per_leaf: 8,
        free_riders: 0.3,
        churn: None,
        ..SimConfig::default()
    };
    config.core.max_leaves = MAX_LEAVES;
    config
}

#[test]
fn the_simulator_finds_what_real_daemons_find() {
    let config = config();
    let workload = Workload::generate(&config);
    let leaves = workload.shares.len();
    let all: Vec<usize> = (0..leaves).collect();
    let truth = Truth::new(&workload.catalog, &workload.shares, &all);
    assert!(
        workload
            .queries
            .iter()
            .all(|q| truth.answer(q).len() <= WANT as usize),
        "every answer must fit in one query's want"
    );

    let simulated = sim::run_with(&config, &workload);
    assert_eq!(simulated.queries, QUERIES, "the simulator sent every query");
    assert_eq!(simulated.link_mismatches, 0);
    let real = real_run(&workload);

    let mut failures = Vec::new();
    for (i, query) in workload.queries.iter().enumerate() {
        let expected = truth.answer(query);
        let from_sim = &simulated.per_query[i].found;
        if *from_sim != real[i] {
            failures.push(format!(
                "{query:?}: simulator {} contents, real {} (truth {})",
                from_sim.len(),
                real[i].len(),
                expected.len()
            ));
        } else if *from_sim != expected {
            failures.push(format!(
                "{query:?}: both found {} contents, truth {}",
                from_sim.len(),
                expected.len()
            ));
        }
    }
    let matched = workload
        .queries
        .iter()
        .filter(|q| !truth.answer(q).is_empty())
        .count();
    println!("{QUERIES} queries ({matched} with matches) compared");
    assert!(
        failures.is_empty(),
        "{} of {QUERIES} queries differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Runs the network as real daemons; per query, the contents found.
fn real_run(workload: &Workload) -> Vec<BTreeSet<ContentId>> {
    let mut cluster = Cluster::new(EXE, 64).unwrap();
    let list = cluster
        .list_server("list", &["--heartbeat-ms", "500"])
        .unwrap();
    let max_leaves = MAX_LEAVES.to_string();
    let supernodes: Vec<Proc> = (0..SUPERNODES)
        .map(|i| {
            cluster
                .supernode(&format!("sn-{i}"), &list, &["--max-leaves", &max_leaves])
                .unwrap()
        })
        .collect();
    wait_for(
        "every supernode listed and linked",
        Duration::from_secs(30),
        || {
            if listed(&cluster, &list)?.len() != SUPERNODES {
                return Ok(None);
            }
            for sn in &supernodes {
                if sn.status()?.neighbors != Some(SUPERNODES - 1) {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .unwrap();

    let list_addr = list.pinned.to_string();
    let mut leaves = Vec::new();
    for (i, share) in workload.shares.iter().enumerate() {
        let label = format!("leaf-{i}");
        let mut args = vec!["--list-server", &list_addr, "--no-election"];
        let dir = cluster.folder(&format!("{label}/share")).unwrap();
        workload::write_share(&dir, &workload.catalog, share).unwrap();
        let dir = dir.to_str().unwrap().to_string();
        if !share.is_empty() {
            args.extend(["--share", &dir]);
        }
        leaves.push(cluster.leaf(&label, &args).unwrap());
    }
    let homes: Vec<String> = leaves
        .iter()
        .map(|leaf| {
            let status = attached(leaf, Duration::from_secs(30)).unwrap();
            status.supernode.unwrap().node_id
        })
        .collect();
    let entries: usize = workload.shares.iter().map(Vec::len).sum();
    // Queries go only where summaries match.
    wait_settled(&supernodes, entries, Duration::from_secs(20)).unwrap();

    // Ten leaves of one supernode ask, in parallel, each its share of the queries (each leaf
    // may send only a few queries a second); in a full mesh the asker's supernode does not
    // change what a query finds.
    let askers: Vec<&Proc> = leaves
        .iter()
        .zip(&homes)
        .filter(|(_, home)| **home == homes[0])
        .map(|(leaf, _)| leaf)
        .take(10)
        .collect();
    let count = askers.len();
    let mut results = vec![BTreeSet::new(); workload.queries.len()];
    std::thread::scope(|scope| {
        let handles: Vec<_> = askers
            .iter()
            .enumerate()
            .map(|(a, &asker)| {
                let queries = &workload.queries;
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    for (i, query) in queries.iter().enumerate().skip(a).step_by(count) {
                        let words: Vec<&str> = query.iter().map(String::as_str).collect();
                        let found: BTreeSet<ContentId> = search(asker, &words, WANT)
                            .unwrap()
                            .iter()
                            .map(|r| r.content_id.parse().unwrap())
                            .collect();
                        mine.push((i, found));
                    }
                    mine
                })
            })
            .collect();
        for handle in handles {
            for (i, found) in handle.join().unwrap() {
                results[i] = found;
            }
        }
    });
    results
}
