//! List-server loss and restart: while it is down, joined leaves and supernodes keep
//! working and a leaf with a cached list joins; restarted, it lists exactly the live
//! supernodes again within the expiry (a supernode that died meanwhile is not listed).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use superpeer_integration::harness::{
    Cluster, attached, listed, node_id, search, stop_all, wait_for,
};

const EXE: &str = env!("CARGO_BIN_EXE_superpeer-node");
/// The list server's expiry: a supernode not heard from for this long is dropped.
const EXPIRY_MS: u64 = 3000;

#[test]
fn the_network_outlives_its_list_server_and_the_list_recovers() {
    let mut cluster = Cluster::new(EXE, 61).unwrap();
    let expiry = EXPIRY_MS.to_string();
    let list_flags = ["--heartbeat-ms", "500", "--expiry-ms", expiry.as_str()];
    let mut list = cluster.list_server("list", &list_flags).unwrap();
    let sn: Vec<_> = (0..3)
        .map(|i| cluster.supernode(&format!("sn-{i}"), &list, &[]).unwrap())
        .collect();
    let mut sn = sn.into_iter();
    let (sn0, sn1, mut sn2) = (sn.next().unwrap(), sn.next().unwrap(), sn.next().unwrap());
    wait_for("three supernodes listed", Duration::from_secs(20), || {
        Ok((listed(&cluster, &list)?.len() == 3).then_some(()))
    })
    .unwrap();
    let share = cluster.folder("sharer/share").unwrap();
    std::fs::write(
        share.join("lighthouse keeper diary.txt"),
        b"kept while the list was down",
    )
    .unwrap();
    let list_addr = list.pinned.to_string();
    let share_arg = share.to_str().unwrap().to_string();
    let sharer = cluster
        .leaf(
            "sharer",
            &[
                "--list-server",
                &list_addr,
                "--share",
                &share_arg,
                "--no-election",
            ],
        )
        .unwrap();
    let asker = cluster
        .leaf("asker", &["--list-server", &list_addr, "--no-election"])
        .unwrap();
    // A leaf that joined once and stopped: it has the list cached.
    let mut returning = cluster
        .leaf("returning", &["--list-server", &list_addr, "--no-election"])
        .unwrap();
    for leaf in [&sharer, &asker, &returning] {
        attached(leaf, Duration::from_secs(20)).unwrap();
    }
    let find = || {
        wait_for("the diary found", Duration::from_secs(15), || {
            let hits = search(&asker, &["lighthouse", "diary"], 10)?;
            Ok((hits.len() == 1).then_some(()))
        })
    };
    find().unwrap();
    stop_all(std::iter::once(&mut returning));

    // The list server dies.
    list.kill();
    // Searches go on: leaves and supernodes do not need it.
    find().unwrap();
    // The returning leaf joins from its cached list alone.
    returning.restart().unwrap();
    let status = attached(&returning, Duration::from_secs(20)).unwrap();
    assert!(status.supernode.is_some());
    // A supernode dies while nobody keeps the list.
    let dead = node_id(&sn2).unwrap();
    sn2.kill();

    // Back, from its saved registry: the dead supernode may be listed (stale) until the
    // expiry, never after; the live ones are confirmed by their heartbeats.
    list.restart().unwrap();
    let restarted = Instant::now();
    let live: BTreeSet<_> = [node_id(&sn0).unwrap(), node_id(&sn1).unwrap()].into();
    let (mut confirmed, mut forgotten) = (None, None);
    wait_for(
        "the list to be correct again",
        Duration::from_millis(EXPIRY_MS * 3),
        || {
            let all = listed(&cluster, &list)?;
            let fresh: BTreeSet<_> = all.iter().filter(|l| !l.stale).map(|l| l.node_id).collect();
            if fresh == live && confirmed.is_none() {
                confirmed = Some(restarted.elapsed());
            }
            if !all.iter().any(|l| l.node_id == dead) && forgotten.is_none() {
                forgotten = Some(restarted.elapsed());
            }
            Ok((confirmed.is_some() && forgotten.is_some()).then_some(()))
        },
    )
    .unwrap();
    let (confirmed, forgotten) = (confirmed.unwrap(), forgotten.unwrap());
    println!(
        "after the restart: live supernodes confirmed in {confirmed:?}, the dead one gone in \
         {forgotten:?} (expiry {EXPIRY_MS} ms)"
    );
    let expiry = Duration::from_millis(EXPIRY_MS);
    assert!(confirmed <= expiry, "{confirmed:?}");
    // The dead one cannot be known dead before the expiry runs out; allow the polling.
    assert!(
        forgotten <= expiry + Duration::from_secs(1),
        "{forgotten:?}"
    );
    // And it serves new leaves again.
    let newcomer = cluster
        .leaf(
            "newcomer",
            &["--list-server", &list.pinned.to_string(), "--no-election"],
        )
        .unwrap();
    attached(&newcomer, Duration::from_secs(20)).unwrap();
}
