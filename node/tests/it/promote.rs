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
