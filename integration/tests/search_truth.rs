//! Search correctness against ground truth: 4 supernodes, 40 leaves sharing a Zipf
//! workload; 100 keyword queries must return exactly what the leaves share (up to `want`),
//! with the right holders, before and after 10 leaves leave (5 cleanly, 5 killed).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use superpeer_common::ContentId;
use superpeer_integration::harness::{
    Cluster, Proc, attached, listed, search, wait_for, wait_settled,
};
use superpeer_integration::workload::{self, Truth};

const EXE: &str = env!("CARGO_BIN_EXE_superpeer-node");
const SUPERNODES: usize = 4;
const LEAVES: usize = 40;
const QUERIES: usize = 100;
const WANT: u32 = 50;
const VOCABULARY: usize = 60;
const SEED: u64 = 2026;

#[test]
fn search_results_match_what_the_leaves_share() {
    let mut cluster = Cluster::new(EXE, 60).unwrap();
    let list = cluster
        .list_server("list", &["--heartbeat-ms", "500"])
        .unwrap();
    let supernodes: Vec<Proc> = (0..SUPERNODES)
        .map(|i| {
            cluster
                .supernode(&format!("sn-{i}"), &list, &["--max-leaves", "12"])
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

    let catalog = workload::catalog(300, VOCABULARY, SEED);
    let shares = workload::shares(catalog.len(), LEAVES, 8, 0.3, SEED);
    let list_addr = list.pinned.to_string();
    let mut leaves: Vec<Option<Proc>> = Vec::new();
    for (i, share) in shares.iter().enumerate() {
        let label = format!("leaf-{i}");
        let mut args = vec!["--list-server", &list_addr, "--no-election"];
        let dir = cluster.folder(&format!("{label}/share")).unwrap();
        workload::write_share(&dir, &catalog, share).unwrap();
        let dir = dir.to_str().unwrap().to_string();
        if !share.is_empty() {
            args.extend(["--share", &dir]);
        }
        leaves.push(Some(cluster.leaf(&label, &args).unwrap()));
    }
    let homes: Vec<String> = leaves
        .iter()
        .flatten()
        .map(|leaf| {
            let status = attached(leaf, Duration::from_secs(30)).unwrap();
            status.supernode.unwrap().node_id
        })
        .collect();
    // The askers: the leaves of one supernode (in a full mesh whose summaries are all
    // current, the asker's supernode does not change what a query finds).
    let askers: Vec<usize> = (0..LEAVES).filter(|&i| homes[i] == homes[0]).collect();
    let index_of: HashMap<String, usize> = leaves
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_ref().unwrap().pinned.node_id.unwrap().to_string(), i))
        .collect();
    let queries = workload::queries(QUERIES, VOCABULARY, SEED);

    let all: Vec<usize> = (0..LEAVES).collect();
    let truth = Truth::new(&catalog, &shares, &all);
    let sizes: Vec<usize> = queries.iter().map(|q| truth.answer(q).len()).collect();
    println!(
        "{QUERIES} queries: {} with no match, {} with more than {WANT}, {} expected results in all",
        sizes.iter().filter(|&&n| n == 0).count(),
        sizes.iter().filter(|&&n| n > WANT as usize).count(),
        sizes.iter().sum::<usize>()
    );
    let entries: usize = shares.iter().map(Vec::len).sum();
    wait_settled(&supernodes, entries, Duration::from_secs(20)).unwrap();
    let failures = check_all(&leaves, &queries, &truth, &index_of, &all, &askers);
    assert!(
        failures.is_empty(),
        "{} queries wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Ten leave: five say goodbye, five vanish.
    let mut gone = Vec::new();
    for i in (0..LEAVES).filter(|i| i % 4 == 1).take(10) {
        let mut leaf = leaves[i].take().unwrap();
        if gone.len() % 2 == 0 {
            superpeer_integration::harness::stop_all(std::iter::once(&mut leaf));
        } else {
            leaf.kill();
        }
        gone.push(i);
    }
    let live: Vec<usize> = (0..LEAVES).filter(|i| !gone.contains(i)).collect();
    wait_for("the supernodes to notice", Duration::from_secs(20), || {
        let mut total = 0;
        for sn in &supernodes {
            total += sn.status()?.leaves.unwrap_or(0);
        }
        Ok((total == live.len()).then_some(()))
    })
    .unwrap();
    let entries: usize = live.iter().map(|&i| shares[i].len()).sum();
    wait_settled(&supernodes, entries, Duration::from_secs(20)).unwrap();
    let truth = Truth::new(&catalog, &shares, &live);
    let askers: Vec<usize> = askers.into_iter().filter(|i| live.contains(i)).collect();
    let failures = check_all(&leaves, &queries, &truth, &index_of, &live, &askers);
    assert!(
        failures.is_empty(),
        "after departures, {} queries wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Runs every query (spread over ten live leaves, in parallel) and returns what was wrong.
fn check_all(
    leaves: &[Option<Proc>],
    queries: &[Vec<String>],
    truth: &Truth,
    index_of: &HashMap<String, usize>,
    live: &[usize],
    askers: &[usize],
) -> Vec<String> {
    let askers: Vec<&Proc> = askers
        .iter()
        .take(10)
        .map(|&i| leaves[i].as_ref().unwrap())
        .collect();
    let count = askers.len();
    std::thread::scope(|scope| {
        let handles: Vec<_> = askers
            .iter()
            .enumerate()
            .map(|(a, &asker)| {
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    for query in queries.iter().skip(a).step_by(count) {
                        if let Err(e) = check(asker, query, truth, index_of, live) {
                            failures.push(format!("{query:?} from {}: {e}", asker.label));
                        }
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

fn check(
    asker: &Proc,
    query: &[String],
    truth: &Truth,
    index_of: &HashMap<String, usize>,
    live: &[usize],
) -> Result<(), String> {
    let words: Vec<&str> = query.iter().map(String::as_str).collect();
    let results = search(asker, &words, WANT).map_err(|e| format!("search failed: {e:#}"))?;
    let expected = truth.answer(query);
    // A later line for the same content supersedes an earlier one (more holders).
    let mut found: HashMap<ContentId, BTreeSet<usize>> = HashMap::new();
    for r in &results {
        let id: ContentId = r.content_id.parse().map_err(|e| format!("{e}"))?;
        let holders = r
            .holders
            .iter()
            .map(|h| {
                index_of
                    .get(&h.node_id)
                    .copied()
                    .ok_or(format!("holder {} is no leaf of ours", h.node_id))
            })
            .collect::<Result<BTreeSet<usize>, String>>()?;
        if let Some(left) = holders.iter().find(|h| !live.contains(h)) {
            return Err(format!("{} names leaf-{left}, which has left", r.name));
        }
        found.insert(id, holders);
    }
    let ids: BTreeSet<ContentId> = found.keys().copied().collect();
    if !ids.is_subset(&expected) {
        let extra: Vec<_> = ids.difference(&expected).collect();
        return Err(format!("results not shared by anyone live: {extra:?}"));
    }
    if expected.len() <= WANT as usize && ids != expected {
        return Err(format!(
            "{} of {} expected contents found",
            ids.len(),
            expected.len()
        ));
    }
    if expected.len() > WANT as usize && ids.len() < WANT as usize {
        return Err(format!("only {} results of the {WANT} wanted", ids.len()));
    }
    for (id, holders) in &found {
        let all = truth.holders(id);
        if !holders.is_subset(&all) || holders.is_empty() {
            return Err(format!("holders {holders:?} of {id}, truth {all:?}"));
        }
    }
    Ok(())
}
