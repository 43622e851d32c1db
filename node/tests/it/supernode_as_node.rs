//! `superpeer supernode` is a node like any leaf: it shares, searches and downloads through
//! its own CLI, and its leaves download what it shares.

use std::path::Path;
use std::time::Duration;

use superpeer_common::ContentId;

use crate::download::{finished, get, random_bytes};
use crate::leaf::{attached, found_within, leaf, status};
use crate::supernode::supernode;
use crate::support::*;

/// `superpeer get --out OUT` from the daemon of `state`: must succeed, and the file at
/// `out` must hash to `content_id` (what `b3sum` prints) and hold `data`.
async fn get_verified(state: &Path, content_id: &str, out: &Path, data: &[u8]) {
    let (ok, events, stderr) = get(state, content_id, &["--out", out.to_str().unwrap()]).await;
    assert!(ok, "get failed: {stderr} {events:#?}");
    assert_eq!(finished(&events)["path"], out.to_str().unwrap());
    assert_eq!(ContentId::of_file(out).unwrap().to_string(), content_id);
    assert!(
        std::fs::read(out).unwrap() == data,
        "the downloaded bytes differ"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supernode_searches_and_gets_through_its_own_cli_and_serves_its_leaves() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let shares: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let own = random_bytes(1024 * 1024 + 17, 31);
    let on_b = random_bytes(700 * 1024 + 3, 32);
    let on_leaf = random_bytes(600 * 1024 + 5, 33);
    std::fs::write(shares[0].path().join("aurora field notes.txt"), &own).unwrap();
    std::fs::write(shares[1].path().join("borealis chart.pdf"), &on_b).unwrap();
    std::fs::write(shares[2].path().join("comet diary.txt"), &on_leaf).unwrap();
    let (own_id, b_id, leaf_id) = (
        ContentId::of_bytes(&own).to_string(),
        ContentId::of_bytes(&on_b).to_string(),
        ContentId::of_bytes(&on_leaf).to_string(),
    );

    let list = Daemon::list_server("127.0.33.1", dirs[0].path(), &["--heartbeat-ms", "500"]);
    let share_arg = |i: usize| shares[i].path().to_str().unwrap().to_string();
    let a = supernode(
        "127.0.33.2",
        &list,
        dirs[1].path(),
        &["--share", &share_arg(0)],
    );
    let b = supernode(
        "127.0.33.3",
        &list,
        dirs[2].path(),
        &["--share", &share_arg(1)],
    );
    let _leaf = leaf(
        "127.0.33.20",
        dirs[3].path(),
        &[
            "--peer",
            &b.pinned.to_string(),
            "--share",
            &share_arg(2),
            "--no-election",
        ],
    );
    attached(dirs[3].path()).await;
    wait_for("a and b to link", Duration::from_secs(20), || async {
        (status(dirs[1].path()).await["neighbors"] == 1).then_some(())
    })
    .await;

    // The supernode's status: its role and its own share.
    let s = status(dirs[1].path()).await;
    assert_eq!(s["role"], "supernode", "{s}");
    assert_eq!(s["shared_files"], 1, "{s}");
    assert!(s["supernode"].is_null(), "{s}");

    // From the supernode's state dir: search finds the other supernode's file and its
    // leaf's file, and get downloads both, verified.
    let limit = Duration::from_secs(20);
    found_within(dirs[1].path(), &["borealis"], &b_id, limit).await;
    found_within(dirs[1].path(), &["comet", "diary"], &leaf_id, limit).await;
    let out = tempfile::tempdir().unwrap();
    get_verified(dirs[1].path(), &b_id, &out.path().join("b.pdf"), &on_b).await;
    get_verified(
        dirs[1].path(),
        &leaf_id,
        &out.path().join("c.txt"),
        &on_leaf,
    )
    .await;

    // A leaf (on the other supernode) finds and downloads the supernode's own file.
    found_within(dirs[3].path(), &["aurora", "notes"], &own_id, limit).await;
    get_verified(dirs[3].path(), &own_id, &out.path().join("a.txt"), &own).await;
    assert_eq!(
        status(dirs[1].path()).await["uploaded_bytes"],
        own.len() as u64
    );
    drop((a, b));
}
