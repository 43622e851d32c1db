//! A leaf on two supernodes (`--supernodes 2`, issue 19): while the supernode it searches
//! through is killed twice (with time between to find a replacement), other leaves
//! searching every 100 ms never miss its file, and its own searches keep working.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use superpeer_common::ContentId;
use tokio::task::JoinSet;

use crate::leaf::{attached, found_within, leaf, network, status};
use crate::support::*;

/// The node ids of the supernodes a leaf is attached to, current first.
fn attached_to(status: &Value) -> Vec<String> {
    status["supernodes"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|s| s["node_id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the leaf in `state` is on two supernodes, none of them in `not`.
async fn on_two_avoiding(state: &std::path::Path, not: &[String]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = status(state).await;
        let on = attached_to(&s);
        if on.len() == 2 && !on.iter().any(|id| not.contains(id)) {
            return on;
        }
        assert!(
            Instant::now() < deadline,
            "not on two supernodes within 15 s (killed {not:?}): {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_on_two_supernodes_stays_findable_while_they_die_one_at_a_time() {
    let mut net = network(36, 5);
    let list = net.list.pinned.to_string();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let share = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("twofold anthem.ogg"), b"twofold anthem").unwrap();
    let mine = tempfile::tempdir().unwrap();
    std::fs::write(mine.path().join("searcher tune.ogg"), b"searcher tune").unwrap();
    let sharer = leaf(
        "127.0.36.20",
        dirs[0].path(),
        &[
            "--list-server",
            &list,
            "--supernodes",
            "2",
            "--no-election",
            "--share",
            share.path().to_str().unwrap(),
        ],
    );
    let sharer_id = sharer.pinned.node_id.unwrap().to_string();
    // Three searchers take turns at one search every 100 ms (each under its supernode's
    // query rate); one of them shares a file for the sharer to find.
    let searchers: Vec<_> = (1..4)
        .map(|i| {
            // On two supernodes as well: a searcher's own supernode may be one of those
            // killed.
            let mut args = vec![
                "--list-server",
                list.as_str(),
                "--no-election",
                "--supernodes",
                "2",
            ];
            if i == 1 {
                args.extend(["--share", mine.path().to_str().unwrap()]);
            }
            leaf(&format!("127.0.36.2{i}"), dirs[i].path(), &args)
        })
        .collect();
    let anthem = ContentId::of_bytes(b"twofold anthem").to_string();
    let tune = ContentId::of_bytes(b"searcher tune").to_string();
    on_two_avoiding(dirs[0].path(), &[]).await;
    for dir in &dirs[1..] {
        attached(dir.path()).await;
        found_within(dir.path(), &["twofold"], &anthem, Duration::from_secs(20)).await;
    }
    found_within(dirs[0].path(), &["tune"], &tune, Duration::from_secs(20)).await;

    // The searches, until told to stop: (who, seconds since the first kill's countdown,
    // why it missed if it did).
    let begin = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = JoinSet::new();
    let searchers_states: Vec<_> = dirs[1..].iter().map(|d| d.path().to_path_buf()).collect();
    let plan = [
        (
            "searcher",
            searchers_states,
            "twofold",
            anthem.clone(),
            Some(sharer_id.clone()),
            100,
        ),
        (
            "sharer",
            vec![dirs[0].path().to_path_buf()],
            "tune",
            tune.clone(),
            None,
            300,
        ),
    ];
    for (who, states, word, content, holder, every_ms) in plan {
        let stop = stop.clone();
        loops.spawn(async move {
            let mut rounds = JoinSet::new();
            let mut turn = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let state = states[turn % states.len()].clone();
                let (content, holder) = (content.clone(), holder.clone());
                rounds.spawn(async move {
                    let at = begin.elapsed();
                    let state = state.to_str().unwrap();
                    let out = cli(&["search", "--json", "--state-dir", state, word]).await;
                    let found = out.ok
                        && out.stdout.lines().any(|line| {
                            let r: Value = serde_json::from_str(line).unwrap_or_default();
                            r["content_id"] == content.as_str()
                                && holder.as_ref().is_none_or(|h| {
                                    r["holders"].as_array().is_some_and(|hs| {
                                        hs.iter().any(|x| x["node_id"] == h.as_str())
                                    })
                                })
                        });
                    let why = (!found).then(|| {
                        if out.ok {
                            "not in the results".to_string()
                        } else {
                            out.stderr
                        }
                    });
                    (who, at, why)
                });
                turn += 1;
                tokio::time::sleep(Duration::from_millis(every_ms)).await;
            }
            rounds.join_all().await
        });
    }

    // Kill the supernode the sharer searches through, twice, with time between to find a
    // replacement: each time its spare takes over.
    let mut killed = Vec::new();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Every leaf has found a replacement for what the last kill took.
        for dir in &dirs[1..] {
            on_two_avoiding(dir.path(), &killed).await;
        }
        let on = on_two_avoiding(dirs[0].path(), &killed).await;
        let victim = on[0].clone();
        let at = net
            .sn
            .iter()
            .position(|d| d.pinned.node_id.unwrap().to_string() == victim)
            .unwrap();
        net.sn.remove(at).kill();
        let when = Instant::now();
        killed.push(victim);
        on_two_avoiding(dirs[0].path(), &killed).await;
        eprintln!(
            "back on two supernodes {:?} after a SIGKILL",
            when.elapsed()
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let results: Vec<_> = loops.join_all().await.into_iter().flatten().collect();

    let count = |who: &str| results.iter().filter(|(w, _, _)| *w == who).count();
    let missed: Vec<_> = results.iter().filter(|(_, _, why)| why.is_some()).collect();
    eprintln!(
        "searcher searches {}, sharer searches {}, missed {}",
        count("searcher"),
        count("sharer"),
        missed.len()
    );
    assert!(count("searcher") >= 50, "{}", count("searcher"));
    assert!(count("sharer") >= 15, "{}", count("sharer"));
    assert!(missed.is_empty(), "searches that missed: {missed:?}");
    drop(searchers);
}
