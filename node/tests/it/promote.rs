//! `superpeer promote`: a running leaf becomes a supernode without a restart, keeps its
//! shares searchable and downloadable, admits leaves, and is listed; one that cannot be
//! dialled back stays a leaf.

use std::path::Path;
use std::time::Duration;

use superpeer_common::ContentId;

use crate::leaf::{attached, leaf, search, status, try_search};
use crate::support::*;

async fn promote(state: &Path) -> Output {
    cli(&["promote", "--state-dir", state.to_str().unwrap()]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_leaf_is_listed_admits_leaves_and_keeps_its_files() {
    let dirs: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    let list = Daemon::list_server("127.0.26.1", dirs[0].path(), &["--heartbeat-ms", "500"]);
    let sn = crate::supernode::supernode("127.0.26.2", &list, dirs[1].path(), &[]);
    let shares: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    std::fs::write(
        shares[0].path().join("promoted treasure.txt"),
        b"the promoted leaf's own file",
    )
    .unwrap();
    std::fs::write(
        shares[1].path().join("other gem.txt"),
        b"a leaf of the new supernode",
    )
    .unwrap();
    let list_addr = list.pinned.to_string();
    let p = leaf(
        "127.0.26.10",
        dirs[2].path(),
        &[
            "--list-server",
            &list_addr,
            "--share",
            shares[0].path().to_str().unwrap(),
        ],
    );
    let q = leaf(
        "127.0.26.11",
        dirs[3].path(),
        &["--list-server", &list_addr],
    );
    attached(dirs[2].path()).await;
    attached(dirs[3].path()).await;
    let p_id = p.pinned.node_id.unwrap();

    let out = promote(dirs[2].path()).await;
    assert!(out.ok, "promote failed: {}", out.stderr);
    assert!(out.stdout.contains("role: supernode"), "{}", out.stdout);
    assert!(out.stdout.contains("listed by: "), "{}", out.stdout);
    let s = status(dirs[2].path()).await;
    assert_eq!(s["role"], "supernode");
    assert!(s["supernode"].is_null());
    assert_eq!(s["shared_files"], 1);
    assert!(
        supernodes(&list.pinned)
            .await
            .iter()
            .any(|l| l.node_id == p_id)
    );
    // Twice is an error that changes nothing.
    let again = promote(dirs[2].path()).await;
    assert!(!again.ok);
    assert!(
        again.stderr.contains("supernode already"),
        "{}",
        again.stderr
    );
    let on_a_supernode = promote(dirs[1].path()).await;
    assert!(!on_a_supernode.ok);
    assert!(
        on_a_supernode.stderr.contains("supernode already"),
        "{}",
        on_a_supernode.stderr
    );

    // It admits leaves.
    let _r = leaf(
        "127.0.26.12",
        dirs[4].path(),
        &[
            "--peer",
            &p.pinned.to_string(),
            "--share",
            shares[1].path().to_str().unwrap(),
        ],
    );
    let rs = attached(dirs[4].path()).await;
    assert_eq!(rs["supernode"]["node_id"], p_id.to_string());
    wait_for("the new leaf counted", Duration::from_secs(10), || async {
        (status(dirs[2].path()).await["leaves"] == 1).then_some(())
    })
    .await;
    // Its own file stays searchable from elsewhere, now served by its own index...
    let id = ContentId::of_bytes(b"the promoted leaf's own file").to_string();
    wait_for(
        "the promoted node's file found",
        Duration::from_secs(20),
        || async {
            let results = try_search(dirs[3].path(), &["promoted", "treasure"]).await?;
            results
                .iter()
                .any(|r| {
                    r["content_id"] == id.as_str() && r["holders"][0]["node_id"] == p_id.to_string()
                })
                .then_some(())
        },
    )
    .await;
    // ...it searches through itself...
    let found = search(dirs[2].path(), &["other", "gem"]).await;
    assert_eq!(found.len(), 1, "{found:?}");
    // ...and its files still download, verified.
    let downloads = tempfile::tempdir().unwrap();
    let out = cli(&[
        "get",
        "--state-dir",
        dirs[4].path().to_str().unwrap(),
        &id,
        "--out",
        downloads.path().join("got.txt").to_str().unwrap(),
    ])
    .await;
    assert!(out.ok, "get failed: {}", out.stderr);
    assert_eq!(
        std::fs::read(downloads.path().join("got.txt")).unwrap(),
        b"the promoted leaf's own file"
    );
    drop((sn, q));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_that_cannot_be_dialled_back_stays_a_leaf() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let list = Daemon::list_server("127.0.27.1", dirs[0].path(), &[]);
    let _sn = crate::supernode::supernode("127.0.27.2", &list, dirs[1].path(), &[]);
    // It tells everyone to dial an address where nothing listens.
    let _p = leaf(
        "127.0.27.10",
        dirs[2].path(),
        &[
            "--list-server",
            &list.pinned.to_string(),
            "--advertise",
            "127.0.27.99:9",
        ],
    );
    attached(dirs[2].path()).await;
    let out = promote(dirs[2].path()).await;
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stderr.contains("will not list") && out.stderr.contains("stays a leaf"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("127.0.27.99:9"), "{}", out.stderr);
    // A leaf again, attached again, and never listed.
    let s = attached(dirs[2].path()).await;
    assert_eq!(s["role"], "leaf");
    assert_eq!(supernodes(&list.pinned).await.len(), 1);
}

/// Whether the list server says the network is short of supernodes, asked as a leaf would.
async fn short_of_supernodes(list: &Daemon) -> bool {
    let endpoint = bind("127.0.28.100");
    let list = superpeer_bootstrap_list::fetch_supernodes(
        &endpoint,
        &list.pinned,
        superpeer_common::wire::Role::Leaf,
        50,
    )
    .await
    .unwrap();
    list.short_of_supernodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_elect_supernodes_until_everyone_is_placed() {
    let dirs: Vec<_> = (0..8).map(|_| tempfile::tempdir().unwrap()).collect();
    let list = Daemon::list_server("127.0.28.1", dirs[0].path(), &["--heartbeat-ms", "500"]);
    let _sn =
        crate::supernode::supernode("127.0.28.2", &list, dirs[1].path(), &["--max-leaves", "2"]);
    let list_addr = list.pinned.to_string();
    let leaves: Vec<Daemon> = (0..6)
        .map(|i| {
            leaf(
                &format!("127.0.28.{}", 10 + i),
                dirs[2 + i].path(),
                &["--list-server", &list_addr, "--promote-after", "2"],
            )
        })
        .collect();
    let roles = wait_for(
        "every leaf placed and no shortage",
        Duration::from_secs(45),
        || async {
            let mut roles = Vec::new();
            for dir in &dirs[2..] {
                let s = status(dir.path()).await;
                let placed = s["role"] == "supernode" || !s["supernode"].is_null();
                if !placed {
                    return None;
                }
                roles.push(s["role"].as_str().unwrap().to_string());
            }
            (!short_of_supernodes(&list).await).then_some(roles)
        },
    )
    .await;
    let promoted = roles.iter().filter(|r| *r == "supernode").count();
    println!("elected {promoted} of 6 leaves: {roles:?}");
    assert!(promoted >= 1, "{roles:?}");
    assert!(promoted < 6, "everyone promoted: {roles:?}");
    // The elected supernodes are listed.
    let listed = supernodes(&list.pinned).await;
    assert_eq!(listed.len(), 1 + promoted, "{listed:?}");
    drop(leaves);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supernode_that_shuts_down_cleanly_moves_its_leaves_within_2_s() {
    let dirs: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    let list = Daemon::list_server("127.0.29.1", dirs[0].path(), &["--heartbeat-ms", "500"]);
    let a = crate::supernode::supernode("127.0.29.2", &list, dirs[1].path(), &[]);
    let b = crate::supernode::supernode("127.0.29.3", &list, dirs[2].path(), &[]);
    let a_id = a.pinned.node_id.unwrap().to_string();
    let _leaves: Vec<Daemon> = (0..3)
        .map(|i| {
            leaf(
                &format!("127.0.29.{}", 10 + i),
                dirs[3 + i].path(),
                &["--peer", &a.pinned.to_string(), "--no-election"],
            )
        })
        .collect();
    for dir in &dirs[3..] {
        wait_for("the leaf on A", Duration::from_secs(20), || async {
            (status(dir.path()).await["supernode"]["node_id"] == a_id.as_str()).then_some(())
        })
        .await;
    }
    // A and B are linked before A goes, so A can tell its leaves about B.
    wait_for("A linked to B", Duration::from_secs(20), || async {
        (status(dirs[1].path()).await["neighbors"] == 1).then_some(())
    })
    .await;
    let b_id = b.pinned.node_id.unwrap().to_string();
    let stopped = std::time::Instant::now();
    assert!(a.terminate().success());
    for dir in &dirs[3..] {
        loop {
            let s = status(dir.path()).await;
            if s["supernode"]["node_id"] == b_id.as_str() {
                break;
            }
            assert!(
                stopped.elapsed() < Duration::from_secs(2),
                "a leaf still not on B after 2 s: {s}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let moved = stopped.elapsed();
    println!("leaves moved {moved:?} after SIGTERM");
    assert!(moved < Duration::from_secs(2));
}
