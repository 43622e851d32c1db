//! The list server as a real `superpeer list-server` process, with supernodes registering
//! over real QUIC and `superpeer supernodes` asking for the list.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use superpeer_bootstrap_list::RegistrationStatus;
use superpeer_common::wire::Load;
use superpeer_common::{Identity, PeerAddr};

use crate::support::*;

fn load(leaves: u32) -> Load {
    Load {
        leaves,
        capacity: 500,
        neighbors: 2,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_supernodes_register_and_are_listed_with_their_load() {
    let dir = tempfile::tempdir().unwrap();
    let server = Daemon::list_server("127.0.0.2", dir.path(), &[]);
    let mut nodes = vec![
        TestSupernode::start("127.0.0.3", &server.pinned, load(11)),
        TestSupernode::start("127.0.0.4", &server.pinned, load(22)),
        TestSupernode::start("127.0.0.5", &server.pinned, load(33)),
    ];
    for node in &mut nodes {
        node.wait_listed().await;
    }
    let listed = supernodes(&server.pinned).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    for node in &nodes {
        let entry = listed
            .iter()
            .find(|l| l.node_id == node.node_id())
            .expect("every supernode listed");
        assert_eq!(entry.addr, node.endpoint.local_addr().unwrap());
        assert_eq!(entry.leaves, node.load.borrow().leaves);
        assert_eq!(entry.capacity, 500);
        assert!(!entry.stale);
    }

    // Heartbeats carry load changes to the list.
    nodes[0].load.send(load(123)).unwrap();
    let id = nodes[0].node_id();
    wait_for("the new load to show", Duration::from_secs(15), || async {
        supernodes(&server.pinned)
            .await
            .iter()
            .find(|l| l.node_id == id && l.leaves == 123)
            .map(|_| ())
    })
    .await;

    // The human-readable form names them too.
    let table = cli(&["supernodes", "--list-server", &server.pinned.to_string()]).await;
    assert!(table.ok);
    for node in &nodes {
        assert!(table.stdout.contains(&node.node_id().to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_nobody_or_somebody_else_answers_on_is_never_listed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Daemon::list_server("127.0.0.6", dir.path(), &[]);

    // Advertises a UDP port where nothing speaks QUIC.
    let silent = std::net::UdpSocket::bind("127.0.0.7:0").unwrap();
    let mut liar = TestSupernode::start_advertising(
        bind("127.0.0.7"),
        silent.local_addr().unwrap(),
        &server.pinned,
        load(0),
    );
    // Advertises the address of another, real supernode (whose key is not its own).
    let mut honest = TestSupernode::start("127.0.0.8", &server.pinned, load(0));
    honest.wait_listed().await;
    let honest_addr = honest.endpoint.local_addr().unwrap();
    let mut impostor =
        TestSupernode::start_advertising(bind("127.0.0.8"), honest_addr, &server.pinned, load(0));

    for node in [&mut liar, &mut impostor] {
        let refused = tokio::time::timeout(
            Duration::from_secs(15),
            node.status.wait_for(
                |s| matches!(s, RegistrationStatus::Refused(r) if r.contains("dial-back")),
            ),
        )
        .await
        .map(|r| r.map(|_| ()));
        assert!(
            matches!(refused, Ok(Ok(()))),
            "expected a dial-back refusal, got {:?}",
            *node.status.borrow()
        );
    }
    let listed: HashSet<_> = supernodes(&server.pinned)
        .await
        .into_iter()
        .map(|l| l.node_id)
        .collect();
    assert_eq!(listed, HashSet::from([honest.node_id()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_supernode_disappears_after_the_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let server = Daemon::list_server(
        "127.0.0.10",
        dir.path(),
        &["--heartbeat-ms", "300", "--expiry-ms", "2000"],
    );
    let mut alive = TestSupernode::start("127.0.0.11", &server.pinned, load(1));
    let mut doomed = TestSupernode::start("127.0.0.12", &server.pinned, load(2));
    alive.wait_listed().await;
    doomed.wait_listed().await;
    assert_eq!(supernodes(&server.pinned).await.len(), 2);

    let doomed_id = doomed.node_id();
    doomed.crash();
    let killed_at = Instant::now();
    wait_for(
        "the killed supernode to expire",
        Duration::from_secs(10),
        || async {
            let listed = supernodes(&server.pinned).await;
            (!listed.iter().any(|l| l.node_id == doomed_id)).then_some(listed)
        },
    )
    .await;
    let gone_after = killed_at.elapsed();
    // Not before the expiry (minus one heartbeat it may have just sent), and not much after.
    assert!(
        gone_after >= Duration::from_millis(1500),
        "dropped too early: {gone_after:?}"
    );
    let listed = supernodes(&server.pinned).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].node_id, alive.node_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_list_server_lists_the_last_known_supernodes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Daemon::list_server("127.0.0.13", dir.path(), &[]);
    let mut nodes = vec![
        TestSupernode::start("127.0.0.14", &server.pinned, load(5)),
        TestSupernode::start("127.0.0.15", &server.pinned, load(6)),
        TestSupernode::start("127.0.0.16", &server.pinned, load(7)),
    ];
    for node in &mut nodes {
        node.wait_listed().await;
    }
    let ids: HashSet<_> = nodes.iter().map(|n| n.node_id()).collect();
    // The registry reaches the disk within a second of changing.
    let saved = dir.path().join(superpeer_bootstrap_list::REGISTRY_FILE);
    wait_for(
        "the registry to be saved",
        Duration::from_secs(10),
        || async {
            let text = std::fs::read_to_string(&saved).unwrap_or_default();
            ids.iter()
                .all(|id| text.contains(&id.to_string()))
                .then_some(())
        },
    )
    .await;

    // The supernodes go quiet, so whatever the new server lists comes from disk.
    for node in &nodes {
        node.stop_heartbeats();
    }
    let pinned = server.pinned;
    server.kill();
    let restarted = Daemon::start(&[
        "list-server",
        "--listen",
        &pinned.addr.to_string(),
        "--state-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(restarted.pinned, pinned, "same identity, same address");
    let listed = supernodes(&restarted.pinned).await;
    let listed_ids: HashSet<_> = listed.iter().map(|l| l.node_id).collect();
    assert_eq!(listed_ids, ids);
    assert!(
        listed.iter().all(|l| l.stale),
        "restored entries are marked stale: {listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_list_server_with_the_wrong_node_id_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Daemon::list_server("127.0.0.17", dir.path(), &[]);
    let wrong = PeerAddr::pinned(Identity::generate().unwrap().node_id(), server.pinned.addr);
    let out = cli(&["supernodes", "--list-server", &wrong.to_string(), "--json"]).await;
    assert!(!out.ok);
    assert!(out.stdout.is_empty());
    let expected = format!(
        "is node {}, not the expected {}",
        server.pinned.node_id.unwrap(),
        wrong.node_id.unwrap()
    );
    assert!(out.stderr.contains(&expected), "stderr: {}", out.stderr);
    assert_eq!(
        out.stderr.trim().lines().count(),
        1,
        "one clear line: {}",
        out.stderr
    );

    // Nothing listening at all is a clear error too.
    let nobody = std::net::UdpSocket::bind("127.0.0.17:0").unwrap();
    let out = cli(&[
        "supernodes",
        "--list-server",
        &nobody.local_addr().unwrap().to_string(),
    ])
    .await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("no answer from"),
        "stderr: {}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_is_kept_aside_and_the_server_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join(superpeer_bootstrap_list::REGISTRY_FILE);
    std::fs::write(&saved, b"\x00\x01 this is not json").unwrap();
    let server = Daemon::list_server("127.0.0.18", dir.path(), &[]);
    assert!(supernodes(&server.pinned).await.is_empty());
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .contains(".corrupt-")
        })
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        std::fs::read(&kept[0]).unwrap(),
        b"\x00\x01 this is not json"
    );
    // And it works: a supernode registers.
    let mut node = TestSupernode::start("127.0.0.19", &server.pinned, load(0));
    node.wait_listed().await;
    assert_eq!(supernodes(&server.pinned).await.len(), 1);
}

/// What a flood managed to do.
#[derive(Debug, Default)]
struct FloodStats {
    connections: u32,
    connections_refused: u32,
    registrations_sent: u32,
    refusals_received: u32,
}

/// One flooding connection from `ip`: a fresh identity pipelining `count` registrations of
/// addresses where nobody answers, then reading every answer it gets (bounded).
async fn flood_one(server: PeerAddr, ip: &'static str, first_port: u16, count: u16) -> FloodStats {
    use superpeer_common::wire::{Hello, Intent, ListServerToNode, Role, ToListServer};
    let mut stats = FloodStats::default();
    let endpoint = bind(ip);
    let opened = async {
        let conn = endpoint.connect(&server).await.ok()?;
        let hello = Hello::new(Role::Supernode, Intent::Registry, None);
        conn.open_session(&hello)
            .await
            .ok()
            .map(|(session, _)| (conn, session))
    };
    let Some((_conn, mut session)) = opened.await else {
        stats.connections_refused += 1;
        return stats;
    };
    stats.connections += 1;
    for port in first_port..first_port + count {
        let advertise = format!("{ip}:{port}").parse().unwrap();
        if session
            .writer
            .send(&ToListServer::Register {
                advertise,
                load: load(0),
            })
            .await
            .is_err()
        {
            break;
        }
        stats.registrations_sent += 1;
    }
    // Registrations that get past the rate limit wait on a dial-back (3 s) each, so one
    // connection can trickle on for long: read what comes within a fixed time.
    let reading = async {
        while let Ok(Some(reply)) = session.reader.recv::<ListServerToNode>().await {
            if matches!(reply, ListServerToNode::Refused { .. }) {
                stats.refusals_received += 1;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(8), reading).await;
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_flood_stays_bounded_and_does_not_lock_out_real_supernodes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Daemon::list_server("127.0.0.20", dir.path(), &[]);
    // Let the server settle before measuring.
    assert!(supernodes(&server.pinned).await.is_empty());
    let rss_before = server.rss_kib();

    // 25 connections at once from one address, 100 registrations each.
    let flooders: Vec<_> = (0..25u16)
        .map(|i| tokio::spawn(flood_one(server.pinned, "127.0.0.21", 1000 + i * 100, 100)))
        .collect();
    let mut legit = TestSupernode::start("127.0.0.22", &server.pinned, load(3));
    legit.wait_listed().await;
    let mut stats = FloodStats::default();
    for flooder in flooders {
        let one = flooder.await.unwrap();
        stats.connections += one.connections;
        stats.connections_refused += one.connections_refused;
        stats.registrations_sent += one.registrations_sent;
        stats.refusals_received += one.refusals_received;
    }

    assert!(
        stats.registrations_sent >= 2000,
        "the flood was real: {stats:?}"
    );
    assert!(
        stats.refusals_received >= 1000,
        "registrations past the rate were refused: {stats:?}"
    );
    let listed: Vec<_> = supernodes(&server.pinned)
        .await
        .into_iter()
        .map(|l| l.node_id)
        .collect();
    assert_eq!(
        listed,
        vec![legit.node_id()],
        "none of the flood's addresses is listed"
    );
    let grown_kib = server.rss_kib().saturating_sub(rss_before);
    assert!(
        grown_kib < 32 * 1024,
        "memory grew by {grown_kib} KiB under the flood"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_supernodes_behind_one_address_all_get_listed() {
    // Past the per-address registration burst: the refused ones get in on a later heartbeat.
    let dir = tempfile::tempdir().unwrap();
    let server = Daemon::list_server(
        "127.0.0.25",
        dir.path(),
        &["--heartbeat-ms", "500", "--max-per-address", "24"],
    );
    let mut nodes: Vec<_> = (0..24)
        .map(|_| TestSupernode::start("127.0.0.26", &server.pinned, load(0)))
        .collect();
    for node in &mut nodes {
        node.wait_listed().await;
    }
    assert_eq!(supernodes(&server.pinned).await.len(), 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly_and_saves_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let server = Daemon::list_server("127.0.0.23", dir.path(), &[]);
    let mut node = TestSupernode::start("127.0.0.24", &server.pinned, load(9));
    node.wait_listed().await;
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    let saved =
        std::fs::read_to_string(dir.path().join(superpeer_bootstrap_list::REGISTRY_FILE)).unwrap();
    assert!(saved.contains(&node.node_id().to_string()));
}
