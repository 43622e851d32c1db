//! Mesh, search, summaries, holders, departures and refusals.

use superpeer_common::wire::HelloReply;

use crate::support::*;

/// Three supernodes in a full mesh with a leaf each.
struct Net {
    _list: TestListServer,
    sn: Vec<TestSupernode>,
}

async fn three_supernodes(base: u8) -> Net {
    let list = list_server(&format!("127.0.{base}.1")).await;
    let mut sn = Vec::new();
    for i in 2..5 {
        sn.push(TestSupernode::start(&format!("127.0.{base}.{i}"), &list, 500).await);
    }
    wait_full_mesh(&sn.iter().collect::<Vec<_>>()).await;
    Net { _list: list, sn }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_on_different_supernodes_find_each_others_files() {
    let net = three_supernodes(1).await;
    let mut a = TestLeaf::attach("127.0.1.10", &net.sn[0].pinned)
        .await
        .unwrap();
    let mut b = TestLeaf::attach("127.0.1.11", &net.sn[1].pinned)
        .await
        .unwrap();
    let mut c = TestLeaf::attach("127.0.1.12", &net.sn[2].pinned)
        .await
        .unwrap();
    a.publish(vec![entry("ABBA - Waterloo (1974).mp3", b"waterloo")])
        .await;
    b.publish(vec![entry("The_Beatles-Help.flac", b"help")])
        .await;

    let found = c
        .search_until(&["waterloo", "abba"], |f| f.len() == 1)
        .await;
    let hit = found.values().next().unwrap();
    assert_eq!(hit.name, "ABBA - Waterloo (1974).mp3");
    assert_eq!(hit.holders, vec![a.holder()]);
    let found = a.search_until(&["beatles"], |f| f.len() == 1).await;
    assert_eq!(found.values().next().unwrap().holders, vec![b.holder()]);
    // AND: both words must be in one name.
    assert!(c.search(&["waterloo", "help"], 10).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_reaches_only_supernodes_whose_summary_matches() {
    let net = three_supernodes(2).await;
    let mut asker = TestLeaf::attach("127.0.2.10", &net.sn[0].pinned)
        .await
        .unwrap();
    let mut holder = TestLeaf::attach("127.0.2.11", &net.sn[1].pinned)
        .await
        .unwrap();
    let mut other = TestLeaf::attach("127.0.2.12", &net.sn[2].pinned)
        .await
        .unwrap();
    holder
        .publish(vec![entry("rare-orchid-photo.jpg", b"orchid")])
        .await;
    other
        .publish(vec![entry("common-daisy-photo.jpg", b"daisy")])
        .await;
    // Wait until the asker's supernode can route to both.
    asker.search_until(&["orchid"], |f| f.len() == 1).await;
    asker.search_until(&["photo"], |f| f.len() == 2).await;

    let before: Vec<u64> = {
        let mut v = Vec::new();
        for sn in &net.sn {
            v.push(sn.status().await.core.queries_from_neighbors);
        }
        v
    };
    for _ in 0..5 {
        assert_eq!(asker.search(&["orchid"], 10).await.len(), 1);
    }
    assert_eq!(asker.search(&["photo"], 10).await.len(), 2);
    assert!(asker.search(&["tulip"], 10).await.is_empty());
    let after: Vec<u64> = {
        let mut v = Vec::new();
        for sn in &net.sn {
            v.push(sn.status().await.core.queries_from_neighbors);
        }
        v
    };
    let delta: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    // "orchid" x5 reaches only the holder's supernode; "photo" reaches both; "tulip" none.
    assert_eq!(delta, vec![0, 6, 1], "queries received per supernode");
    let forwarded = net.sn[0].status().await.core.router.forwarded;
    assert!(forwarded >= 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_held_by_two_leaves_lists_both_holders() {
    let net = three_supernodes(3).await;
    let mut asker = TestLeaf::attach("127.0.3.10", &net.sn[0].pinned)
        .await
        .unwrap();
    let mut near1 = TestLeaf::attach("127.0.3.11", &net.sn[1].pinned)
        .await
        .unwrap();
    let mut near2 = TestLeaf::attach("127.0.3.12", &net.sn[1].pinned)
        .await
        .unwrap();
    let mut far = TestLeaf::attach("127.0.3.13", &net.sn[2].pinned)
        .await
        .unwrap();
    let bytes = b"the same bytes everywhere";
    near1
        .publish(vec![entry("concert recording.ogg", bytes)])
        .await;
    near2
        .publish(vec![entry("Concert_Recording.ogg", bytes)])
        .await;
    far.publish(vec![entry("concert-recording (copy).ogg", bytes)])
        .await;

    let found = asker
        .search_until(&["concert", "recording"], |f| {
            f.values().next().is_some_and(|h| h.holders.len() == 3)
        })
        .await;
    assert_eq!(found.len(), 1, "one content");
    let holders = &found.values().next().unwrap().holders;
    for leaf in [&near1, &near2, &far] {
        assert!(holders.contains(&leaf.holder()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_that_disconnects_vanishes_from_results() {
    let net = three_supernodes(4).await;
    let mut asker = TestLeaf::attach("127.0.4.10", &net.sn[0].pinned)
        .await
        .unwrap();
    let mut leaving = TestLeaf::attach("127.0.4.11", &net.sn[1].pinned)
        .await
        .unwrap();
    let mut staying = TestLeaf::attach("127.0.4.12", &net.sn[1].pinned)
        .await
        .unwrap();
    leaving
        .publish(vec![entry("ephemeral notes.txt", b"going")])
        .await;
    staying
        .publish(vec![entry("lasting notes.txt", b"staying")])
        .await;
    asker.search_until(&["notes"], |f| f.len() == 2).await;

    leaving
        .conn
        .close(superpeer_common::wire::CloseCode::Normal, "bye");
    // The supernode drops its entries as soon as it sees the connection close.
    let found = asker.search_until(&["notes"], |f| f.len() == 1).await;
    assert_eq!(
        found.values().next().unwrap().holders,
        vec![staying.holder()]
    );
    // And never again: a few more searches agree.
    for _ in 0..3 {
        let found = asker.search(&["ephemeral"], 10).await;
        assert!(found.is_empty(), "{found:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_supernode_refuses_with_alternatives() {
    let list = list_server("127.0.5.1").await;
    let tiny = TestSupernode::start("127.0.5.2", &list, 1).await;
    let roomy = TestSupernode::start("127.0.5.3", &list, 500).await;
    wait_full_mesh(&[&tiny, &roomy]).await;
    let _first = TestLeaf::attach("127.0.5.10", &tiny.pinned).await.unwrap();
    // The tiny supernode hears the roomy one's load through gossip on link-up.
    match TestLeaf::attach("127.0.5.11", &tiny.pinned).await {
        Err(HelloReply::Refused { try_instead, .. }) => {
            assert_eq!(try_instead.len(), 1, "{try_instead:?}");
            assert_eq!(try_instead[0].node_id, roomy.node_id());
            assert_eq!(try_instead[0].addr, roomy.pinned.addr);
            // The suggestion works.
            let target =
                superpeer_common::PeerAddr::pinned(try_instead[0].node_id, try_instead[0].addr);
            assert!(TestLeaf::attach("127.0.5.11", &target).await.is_ok());
        }
        Ok(_) => panic!("a full supernode admitted a leaf"),
        Err(other) => panic!("unexpected reply {other:?}"),
    }
}
