//! An elected supernode outlives its list server: a list server that cannot be reached says
//! nothing about us, so the elected node stays a supernode and keeps its leaves.

use std::time::{Duration, Instant};

use crate::leaf::{attached, leaf, status};
use crate::supernode::supernode;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elected_supernode_stays_one_while_its_list_server_is_down() {
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let list = Daemon::list_server("127.0.32.1", dirs[0].path(), &["--heartbeat-ms", "500"]);
    let _sn = supernode("127.0.32.2", &list, dirs[1].path(), &["--max-leaves", "1"]);
    let list_addr = list.pinned.to_string();
    // The first leaf fills the only supernode (and never runs for office itself)...
    let _first = leaf(
        "127.0.32.10",
        dirs[2].path(),
        &["--list-server", &list_addr, "--no-election"],
    );
    attached(dirs[2].path()).await;
    // ...so the second, turned away, elects itself once the list server says the network
    // is short.
    let elected = leaf(
        "127.0.32.11",
        dirs[3].path(),
        &["--list-server", &list_addr, "--promote-after", "2"],
    );
    let elected_id = elected.pinned.node_id.unwrap();
    wait_for(
        "the second leaf elected and listed",
        Duration::from_secs(45),
        || async {
            let s = status(dirs[3].path()).await;
            if s["role"] != "supernode" {
                return None;
            }
            supernodes(&list.pinned)
                .await
                .iter()
                .any(|l| l.node_id == elected_id)
                .then_some(())
        },
    )
    .await;
    // A leaf of its own.
    let _third = leaf(
        "127.0.32.12",
        dirs[4].path(),
        &["--peer", &elected.pinned.to_string(), "--no-election"],
    );
    let s = attached(dirs[4].path()).await;
    assert_eq!(s["supernode"]["node_id"], elected_id.to_string(), "{s}");
    wait_for(
        "the elected supernode to count its leaf",
        Duration::from_secs(10),
        || async { (status(dirs[3].path()).await["leaves"].as_u64() >= Some(1)).then_some(()) },
    )
    .await;

    // The list server dies and stays down: the elected node's registration can only find
    // it unreachable, never a refusal.
    list.kill();
    let killed = Instant::now();
    let mut polls = 0;
    while killed.elapsed() < Duration::from_secs(20) {
        let s = status(dirs[3].path()).await;
        let at = killed.elapsed();
        assert_eq!(
            s["role"], "supernode",
            "stepped down {at:?} after the list server died: {s}"
        );
        assert!(
            s["leaves"].as_u64() >= Some(1),
            "lost its leaf {at:?} after the list server died: {s}"
        );
        polls += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("still a supernode with its leaf after 20 s without the list server ({polls} polls)");
    assert!(polls >= 10, "only {polls} status polls in 20 s");
    // Its leaf is still attached.
    let s = status(dirs[4].path()).await;
    assert!(!s["supernode"].is_null(), "{s}");
}
