//! What a leaf publishes, seen from another leaf: files copied in while the leaf is still
//! starting are published, and a share larger than the supernode's per-leaf cap shows the
//! gap in `status`, publishes the first files in name order, and fills freed room.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use superpeer_common::ContentId;

use crate::leaf::{attached, leaf, network, status, try_search};
use crate::supernode::supernode;
use crate::support::*;

/// Names of the files a search for `words` finds now (empty if the search fails).
async fn names_found(state: &Path, words: &[&str]) -> BTreeSet<String> {
    try_search(state, words)
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_copied_in_while_the_leaf_starts_are_published_within_5_s() {
    let net = network(31, 1);
    let (searcher_state, sharer_state) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let share = tempfile::tempdir().unwrap();
    let peer = net.sn[0].pinned.to_string();
    let _searcher = leaf(
        "127.0.31.21",
        searcher_state.path(),
        &["--peer", &peer, "--no-election"],
    );
    attached(searcher_state.path()).await;

    // A file shared from before, old enough for the hash cache: the cache file appearing
    // in the state dir marks the end of the first scan.
    let old = share.path().join("racer before.txt");
    std::fs::write(&old, b"bytes of racer before.txt").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    // Copies race the start-up: one the moment the process is spawned (before or during
    // the first scan), one the moment the first scan has ended, one the moment the control
    // file appears (the node is not running yet). Nothing changes the folder after them: a
    // later change would make any watcher rescan the whole folder and hide a lost one.
    let copy = |name: &str| {
        std::fs::write(share.path().join(name), format!("bytes of {name}")).unwrap();
        (name.to_string(), Instant::now())
    };
    let appears = |path: &Path| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !path.exists() {
            assert!(
                Instant::now() < deadline,
                "no {} within 20 s",
                path.display()
            );
            std::thread::yield_now();
        }
    };
    let mut written = Vec::new();
    let share_arg = share.path().to_str().unwrap().to_string();
    let state_arg = sharer_state.path().to_str().unwrap().to_string();
    let args = [
        "leaf",
        "--listen",
        "127.0.31.20:0",
        "--state-dir",
        &state_arg,
        "--peer",
        &peer,
        "--share",
        &share_arg,
        "--no-election",
    ];
    let _sharer = Daemon::start_racing(&args, || {
        written.push(copy("racer spawned.txt"));
        appears(&sharer_state.path().join("hash-cache.json"));
        written.push(copy("racer scanned.txt"));
        appears(&sharer_state.path().join("control.json"));
        written.push(copy("racer control.txt"));
    });

    // Every file is searchable (by content id) within 5 s of being written.
    let ids: BTreeMap<String, (String, Instant)> = written
        .iter()
        .map(|(name, at)| {
            let id = ContentId::of_bytes(format!("bytes of {name}").as_bytes()).to_string();
            (id, (name.clone(), *at))
        })
        .collect();
    // Polled past the 5 s, so that a failure says which file was lost and which was late.
    let mut seen: BTreeMap<String, Duration> = BTreeMap::new();
    let mut found: BTreeSet<String> = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (seen.len() < ids.len() || !found.contains("racer before.txt"))
        && Instant::now() < deadline
    {
        for hit in try_search(searcher_state.path(), &["racer"])
            .await
            .unwrap_or_default()
        {
            found.insert(hit["name"].as_str().unwrap().to_string());
            if let Some((name, at)) = ids.get(hit["content_id"].as_str().unwrap()) {
                seen.entry(name.clone()).or_insert_with(|| at.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("searchable after being written: {seen:?}");
    for (name, _) in ids.values() {
        assert!(
            seen.contains_key(name),
            "{name} never searchable (20 s); found only {found:?}"
        );
    }
    assert!(found.contains("racer before.txt"), "{found:?}");
    for (name, took) in &seen {
        assert!(
            *took < Duration::from_secs(5),
            "{name} searchable only {took:?} after it was written: {seen:?}"
        );
    }
    let s = status(sharer_state.path()).await;
    assert_eq!(s["shared_files"], 4, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_over_the_per_leaf_cap_shows_the_gap_and_fills_freed_room() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let list = Daemon::list_server("127.0.34.1", dirs[0].path(), &["--heartbeat-ms", "500"]);
    let sn = supernode(
        "127.0.34.2",
        &list,
        dirs[1].path(),
        &["--max-files-per-leaf", "5"],
    );
    let share = tempfile::tempdir().unwrap();
    let letters = ["a", "b", "c", "d", "e", "f", "g", "h"];
    // Written in reverse, so the choice cannot follow the order of creation.
    for letter in letters.iter().rev() {
        std::fs::write(
            share.path().join(format!("{letter} capped.txt")),
            format!("capped file {letter}"),
        )
        .unwrap();
    }
    let peer = sn.pinned.to_string();
    let _sharer = leaf(
        "127.0.34.20",
        dirs[2].path(),
        &[
            "--peer",
            &peer,
            "--share",
            share.path().to_str().unwrap(),
            "--no-election",
        ],
    );
    let _searcher = leaf(
        "127.0.34.21",
        dirs[3].path(),
        &["--peer", &peer, "--no-election"],
    );
    attached(dirs[3].path()).await;

    // status --json: all 8 shared, 5 indexed, 3 waiting, and why.
    let publication = wait_for(
        "the publication to settle at 5 of 8",
        Duration::from_secs(20),
        || async {
            let s = status(dirs[2].path()).await;
            let p = s["publication"].clone();
            (s["shared_files"] == 8 && p["indexed"] == 5 && p["pending"] == 3).then_some(p)
        },
    )
    .await;
    let reason = publication["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("at most 5"), "{publication}");
    // The human-readable status says it too.
    let text = cli(&["status", "--state-dir", dirs[2].path().to_str().unwrap()]).await;
    assert!(text.ok, "{}", text.stderr);
    assert!(text.stdout.contains("shared files: 8"), "{}", text.stdout);
    assert!(
        text.stdout.contains("5 of 8") && text.stdout.contains("3 not indexed"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("at most 5"), "{}", text.stdout);

    // The first five in name order are found, the other three are not.
    let names = |range: &[&str]| -> BTreeSet<String> {
        range.iter().map(|l| format!("{l} capped.txt")).collect()
    };
    let first_five = names(&letters[..5]);
    let found = wait_for("a..e to be found", Duration::from_secs(20), || async {
        let found = names_found(dirs[3].path(), &["capped"]).await;
        (found.len() >= 5).then_some(found)
    })
    .await;
    assert_eq!(found, first_five);
    assert!(names_found(dirs[3].path(), &["f"]).await.is_empty());

    // Room freed: "f" goes in within 5 s, and "a" is gone.
    std::fs::remove_file(share.path().join("a capped.txt")).unwrap();
    let removed = Instant::now();
    let next_five = names(&letters[1..6]);
    wait_for("f to take a's place", Duration::from_secs(20), || async {
        (names_found(dirs[3].path(), &["capped"]).await == next_five).then_some(())
    })
    .await;
    let took = removed.elapsed();
    println!("f searchable {took:?} after a was removed");
    assert!(
        took < Duration::from_secs(5),
        "f searchable only after {took:?}"
    );
    let s = status(dirs[2].path()).await;
    assert_eq!(s["shared_files"], 7, "{s}");
    assert_eq!(s["publication"]["indexed"], 5, "{s}");
    assert_eq!(s["publication"]["pending"], 2, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_added_while_running_shows_its_hashing_progress_then_is_shared() {
    let net = network(37, 1);
    let (state, outside) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir_in(".").unwrap(),
    );
    let share = tempfile::tempdir_in(".").unwrap();
    // Old enough for the hash cache, so no later scan hashes it again.
    let small = share.path().join("small.txt");
    std::fs::write(&small, b"small").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&small)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let peer = net.sn[0].pinned.to_string();
    let _sharer = leaf(
        "127.0.37.20",
        state.path(),
        &["--peer", &peer, "--share", share.path().to_str().unwrap()],
    );
    let first = attached(state.path()).await;
    assert_eq!(first["shared_files"], 1, "{first}");
    assert_eq!(
        first["hashing"]["files"], 0,
        "idle after the first scan: {first}"
    );
    let hashed_at_start = first["hashing"]["hashed_bytes"].as_u64().unwrap();
    assert_eq!(hashed_at_start, 5, "{first}");

    // A large file appears whole (renamed in from the same file system), so one rescan
    // hashes it; sparse, so it costs no disk; hashing it takes seconds (0.6 s for 256 MiB here).
    const SIZE: u64 = 2 << 30;
    let staged = outside.path().join("large.bin");
    std::fs::File::create(&staged)
        .unwrap()
        .set_len(SIZE)
        .unwrap();
    std::fs::rename(&staged, share.path().join("large.bin")).unwrap();
    let during = wait_for(
        "hashing to show in status",
        Duration::from_secs(20),
        || async {
            let s = status(state.path()).await;
            (s["hashing"]["files"] == 1 && s["hashing"]["bytes_done"].as_u64() > Some(0))
                .then_some(s)
        },
    )
    .await;
    let h = &during["hashing"];
    assert_eq!(h["bytes"], SIZE, "{during}");
    assert!(h["bytes_done"].as_u64().unwrap() <= SIZE, "{during}");
    assert_eq!(h["files_done"], 0, "{during}");
    let after = wait_for(
        "the large file to be shared",
        Duration::from_secs(120),
        || async {
            let s = status(state.path()).await;
            (s["shared_files"] == 2).then_some(s)
        },
    )
    .await;
    assert_eq!(after["hashing"]["files"], 0, "idle again: {after}");
    assert_eq!(
        after["hashing"]["hashed_bytes"].as_u64().unwrap(),
        hashed_at_start + SIZE,
        "{after}"
    );
}
