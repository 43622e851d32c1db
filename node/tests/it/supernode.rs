//! `superpeer supernode` processes with a `superpeer list-server` process.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use superpeer_common::ContentId;

use crate::leaf::{attached, found_within, status};
use crate::support::*;

/// Starts `superpeer supernode` on `ip` registered with `list`.
pub fn supernode(ip: &str, list: &Daemon, state: &std::path::Path, extra: &[&str]) -> Daemon {
    let listen = format!("{ip}:0");
    let list_server = list.pinned.to_string();
    let mut args = vec![
        "supernode",
        "--listen",
        &listen,
        "--list-server",
        &list_server,
        "--state-dir",
        state.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Daemon::start(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supernode_processes_register_and_a_killed_one_expires() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let list = Daemon::list_server(
        "127.0.0.30",
        dirs[0].path(),
        &["--heartbeat-ms", "300", "--expiry-ms", "2000"],
    );
    let a = supernode("127.0.0.31", &list, dirs[1].path(), &["--max-leaves", "7"]);
    let b = supernode("127.0.0.32", &list, dirs[2].path(), &[]);
    let ids = HashSet::from([a.pinned.node_id.unwrap(), b.pinned.node_id.unwrap()]);
    let listed = wait_for(
        "both supernodes listed",
        Duration::from_secs(15),
        || async {
            let listed = supernodes(&list.pinned).await;
            (listed.iter().map(|l| l.node_id).collect::<HashSet<_>>() == ids).then_some(listed)
        },
    )
    .await;
    let a_entry = listed
        .iter()
        .find(|l| Some(l.node_id) == a.pinned.node_id)
        .unwrap();
    assert_eq!(a_entry.capacity, 7);
    assert_eq!(a_entry.addr, a.pinned.addr);

    let b_id = b.pinned.node_id.unwrap();
    b.kill();
    let killed = Instant::now();
    wait_for(
        "the killed supernode to expire",
        Duration::from_secs(10),
        || async {
            let listed = supernodes(&list.pinned).await;
            (!listed.iter().any(|l| l.node_id == b_id)).then_some(())
        },
    )
    .await;
    assert!(
        killed.elapsed() >= Duration::from_millis(1500),
        "expired too early: {:?}",
        killed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supernode_with_a_missing_share_folder_exits_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let list = Daemon::list_server("127.0.0.33", dir.path(), &[]);
    let state = tempfile::tempdir().unwrap();
    let out = cli(&[
        "supernode",
        "--listen",
        "127.0.0.34:0",
        "--list-server",
        &list.pinned.to_string(),
        "--state-dir",
        state.path().to_str().unwrap(),
        "--share",
        "/nonexistent/superpeer-share",
    ])
    .await;
    assert!(!out.ok);
    assert!(
        out.stderr
            .contains("cannot share /nonexistent/superpeer-share"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_two_supernodes_away_is_found_through_a_relay() {
    // A chain a - b - c: b takes two links, a and c one each, and b indexes nothing, so
    // its summary matches no query. b and c link first; then a's only choice is b.
    let dirs: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    let share = dirs[5].path();
    std::fs::write(share.join("orchid sonata.flac"), b"two hops away").unwrap();
    let content_id = ContentId::of_bytes(b"two hops away").to_string();
    let list = Daemon::list_server("127.0.18.1", dirs[4].path(), &["--heartbeat-ms", "500"]);
    let links = |state: &Path| {
        let state = state.to_path_buf();
        async move { status(&state).await["neighbors"].as_u64() }
    };
    let b = supernode(
        "127.0.18.3",
        &list,
        dirs[1].path(),
        &["--max-neighbors", "2"],
    );
    let share_arg = share.to_str().unwrap();
    let c_args = ["--max-neighbors", "1", "--share", share_arg];
    let _c = supernode("127.0.18.4", &list, dirs[2].path(), &c_args);
    wait_for("b and c to link", Duration::from_secs(20), || async {
        (links(dirs[2].path()).await == Some(1)).then_some(())
    })
    .await;
    let a = supernode(
        "127.0.18.2",
        &list,
        dirs[0].path(),
        &["--max-neighbors", "1"],
    );
    wait_for("the chain to form", Duration::from_secs(20), || async {
        let (na, nb) = (links(dirs[0].path()).await, links(dirs[1].path()).await);
        (na == Some(1) && nb == Some(2)).then_some(())
    })
    .await;
    let peer = a.pinned.to_string();
    let _leaf = crate::leaf::leaf(
        "127.0.18.20",
        dirs[3].path(),
        &["--peer", &peer, "--no-election"],
    );
    attached(dirs[3].path()).await;
    found_within(
        dirs[3].path(),
        &["orchid"],
        &content_id,
        Duration::from_secs(20),
    )
    .await;
    // It came through b: a's one link is b.
    let a_status = status(dirs[0].path()).await;
    let neighbors = a_status["summaries"]["neighbors"].as_object().unwrap();
    assert_eq!(neighbors.len(), 1, "{a_status}");
    assert!(neighbors.contains_key(&b.pinned.node_id.unwrap().to_string()));
}
