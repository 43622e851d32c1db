//! `superpeer supernode` processes with a `superpeer list-server` process.

use std::collections::HashSet;
use std::time::{Duration, Instant};

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
