//! The membership over real QUIC: a list server in this process, supernodes that register
//! with `keep_registered` and answer its dial-back, and a mirror kept with `fetch_members`.
//! Loopback addresses 127.0.52.x only (no other test uses them), ports chosen by the OS.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use superpeer_bootstrap_list::{
    ListServer, ListServerConfig, MemberSync, REGISTRY_FILE, RegistrationStatus, SavedEntry,
    fetch_members, keep_registered, unix_ms,
};
use superpeer_common::wire::{
    Hello, HelloReply, Intent, ListServerToNode, Load, MemberChange, MemberPage, Role, ToListServer,
};
use superpeer_common::{Endpoint, Identity, NodeId, PeerAddr, TransportLimits};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

fn bind(ip: &str) -> Endpoint {
    let identity = Arc::new(Identity::generate().unwrap());
    let addr = format!("{ip}:0").parse().unwrap();
    Endpoint::bind(identity, addr, TransportLimits::default()).unwrap()
}

/// A list server running in this process until dropped.
struct TestListServer {
    pinned: PeerAddr,
    _stop: oneshot::Sender<()>,
}

fn start_list_server(ip: &str, state_dir: &Path) -> TestListServer {
    let mut config = ListServerConfig::new(format!("{ip}:0").parse().unwrap(), state_dir.into());
    config.registry.heartbeat_interval = Duration::from_millis(300);
    config.registry.expiry = Duration::from_secs(2);
    let server = ListServer::bind(config).unwrap();
    let pinned = PeerAddr::pinned(server.node_id(), server.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    TestListServer {
        pinned,
        _stop: stop,
    }
}

/// A supernode that answers the list server's dial-back and keeps itself registered.
struct TestSupernode {
    endpoint: Endpoint,
    shutdown: watch::Sender<bool>,
    _load: watch::Sender<Load>,
    answering: JoinHandle<()>,
    registering: JoinHandle<()>,
}

impl TestSupernode {
    async fn start(ip: &str, server: &PeerAddr) -> TestSupernode {
        let endpoint = bind(ip);
        let advertise = endpoint.local_addr().unwrap();
        let load = Load {
            leaves: 0,
            capacity: 500,
            neighbors: 0,
        };
        let (load_tx, load_rx) = watch::channel(load);
        let (status_tx, mut status) = watch::channel(RegistrationStatus::Connecting);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let answering = tokio::spawn(answer_probes(endpoint.clone()));
        let registering = tokio::spawn(keep_registered(
            endpoint.clone(),
            *server,
            advertise,
            load_rx,
            status_tx,
            shutdown_rx,
        ));
        let listed = tokio::time::timeout(
            Duration::from_secs(15),
            status.wait_for(|s| *s == RegistrationStatus::Registered { listed: true }),
        )
        .await;
        assert!(matches!(listed, Ok(Ok(_))), "{ip} never got listed");
        TestSupernode {
            endpoint,
            shutdown,
            _load: load_tx,
            answering,
            registering,
        }
    }

    fn node_id(&self) -> NodeId {
        self.endpoint.node_id()
    }

    fn addr(&self) -> SocketAddr {
        self.endpoint.local_addr().unwrap()
    }

    /// Unregisters cleanly.
    async fn shut_down(self) {
        self.shutdown.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.registering)
            .await
            .expect("unregistered in time")
            .unwrap();
        self.answering.abort();
    }

    /// Stops dead: no unregister, no more heartbeats or answers.
    fn crash(self) {
        self.registering.abort();
        self.answering.abort();
    }
}

async fn answer_probes(endpoint: Endpoint) {
    while let Some(incoming) = endpoint.incoming().await {
        tokio::spawn(async move {
            let Ok(conn) = superpeer_common::accept(incoming, Duration::from_secs(5)).await else {
                return;
            };
            let Ok((mut session, hello)) = conn.accept_session().await else {
                return;
            };
            if hello.intent == Intent::Probe {
                let _ =
                    superpeer_common::answer_probe(&mut session, Role::Supernode, || None).await;
            }
        });
    }
}

/// Sends `requests` back to back on one registry session as `role`; the answers in order.
async fn ask(
    endpoint: &Endpoint,
    server: &PeerAddr,
    role: Role,
    requests: &[ToListServer],
) -> Vec<ListServerToNode> {
    let conn = endpoint.connect(server).await.unwrap();
    let hello = Hello::new(role, Intent::Registry, None);
    let (mut session, reply) = conn.open_session(&hello).await.unwrap();
    assert!(matches!(reply, HelloReply::Welcome { .. }), "{reply:?}");
    for request in requests {
        session.writer.send(request).await.unwrap();
    }
    let mut answers = Vec::new();
    for _ in requests {
        answers.push(session.reader.recv_required().await.unwrap());
    }
    answers
}

/// The membership changes since (`epoch`, `since`), asked for directly.
async fn changes_since(
    endpoint: &Endpoint,
    server: &PeerAddr,
    epoch: u64,
    since: u64,
) -> MemberPage {
    let request = ToListServer::GetMembers {
        epoch,
        since,
        after: None,
    };
    match ask(endpoint, server, Role::Supernode, &[request])
        .await
        .pop()
    {
        Some(ListServerToNode::Members(page)) => page,
        other => panic!("expected a member page, got {other:?}"),
    }
}

/// Fetches into `sync` until `node` is gone from it (bounded).
async fn fetch_until_gone(
    observer: &Endpoint,
    server: &PeerAddr,
    sync: &mut MemberSync,
    node: NodeId,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        fetch_members(observer, server, sync).await.unwrap();
        if !sync.members().contains_key(&node) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never left",
            node.short()
        );
        // Slow enough to stay within the server's connection and request rates.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_sees_every_supernode_then_leaves_as_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_list_server("127.0.52.1", dir.path());
    let mut supernodes = Vec::new();
    for n in 10..14 {
        supernodes.push(TestSupernode::start(&format!("127.0.52.{n}"), &server.pinned).await);
    }
    let observer = bind("127.0.52.20");
    let mut sync = MemberSync::new();
    fetch_members(&observer, &server.pinned, &mut sync)
        .await
        .unwrap();
    let expected: BTreeMap<NodeId, SocketAddr> =
        supernodes.iter().map(|s| (s.node_id(), s.addr())).collect();
    assert_eq!(sync.members(), &expected);
    let epoch = sync.epoch();

    // A clean unregister: the next fetch's change removes it.
    let before = sync.version();
    let unregistered = supernodes.remove(0);
    let gone = unregistered.node_id();
    unregistered.shut_down().await;
    fetch_until_gone(&observer, &server.pinned, &mut sync, gone).await;
    let page = changes_since(&observer, &server.pinned, epoch, before).await;
    assert!(!page.snapshot, "changes, not a snapshot: {page:?}");
    assert_eq!(
        page.changes,
        vec![MemberChange {
            node_id: gone,
            addr: None
        }]
    );

    // A crash: it leaves once it expires.
    let before = sync.version();
    let crashed = supernodes.remove(0);
    let gone = crashed.node_id();
    crashed.crash();
    fetch_until_gone(&observer, &server.pinned, &mut sync, gone).await;
    let page = changes_since(&observer, &server.pinned, epoch, before).await;
    assert!(!page.snapshot, "changes, not a snapshot: {page:?}");
    assert_eq!(
        page.changes,
        vec![MemberChange {
            node_id: gone,
            addr: None
        }]
    );

    let expected: BTreeMap<NodeId, SocketAddr> =
        supernodes.iter().map(|s| (s.node_id(), s.addr())).collect();
    assert_eq!(sync.members(), &expected);
    assert_eq!(sync.epoch(), epoch, "no restart, no new snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_members_are_paged_on_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    // Saved entries are listed (stale) at start: members the server pages out.
    let saved: Vec<SavedEntry> = (0..4_500u32)
        .map(|n| {
            let mut id = [7u8; 32];
            id[..4].copy_from_slice(&n.to_be_bytes());
            SavedEntry {
                node_id: NodeId::from_bytes(id),
                addr: SocketAddr::from(([127, 0, 52, 200], 1_000 + n as u16)),
                load: Load {
                    leaves: 0,
                    capacity: 500,
                    neighbors: 0,
                },
            }
        })
        .collect();
    let file = serde_json::json!({ "format": 1, "saved_at_ms": unix_ms(), "entries": saved });
    std::fs::write(dir.path().join(REGISTRY_FILE), file.to_string()).unwrap();
    let server = start_list_server("127.0.52.2", dir.path());

    let observer = bind("127.0.52.21");
    let mut sync = MemberSync::new();
    fetch_members(&observer, &server.pinned, &mut sync)
        .await
        .unwrap();
    let expected: BTreeMap<NodeId, SocketAddr> =
        saved.iter().map(|e| (e.node_id, e.addr)).collect();
    assert_eq!(sync.members().len(), 4_500);
    assert_eq!(sync.members(), &expected);
    assert!(!sync.is_paging());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_supernodes_get_the_membership() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_list_server("127.0.52.3", dir.path());
    let asker = bind("127.0.52.22");
    let request = MemberSync::new().request();
    let answers = ask(
        &asker,
        &server.pinned,
        Role::Leaf,
        std::slice::from_ref(&request),
    )
    .await;
    assert!(
        matches!(&answers[..], [ListServerToNode::Refused { reason }] if reason.contains("supernodes")),
        "{answers:?}"
    );
    let answers = ask(&asker, &server.pinned, Role::Supernode, &[request]).await;
    assert!(
        matches!(&answers[..], [ListServerToNode::Members(_)]),
        "{answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_membership_requests_is_refused_past_the_rate() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_list_server("127.0.52.4", dir.path());
    let flooder = bind("127.0.52.23");
    let requests = vec![MemberSync::new().request(); 60];
    let answers = ask(&flooder, &server.pinned, Role::Supernode, &requests).await;
    let served = answers
        .iter()
        .filter(|a| matches!(a, ListServerToNode::Members(_)))
        .count();
    let refused = answers
        .iter()
        .filter(
            |a| matches!(a, ListServerToNode::Refused { reason } if reason.contains("too many")),
        )
        .count();
    assert_eq!(served + refused, 60, "{answers:?}");
    // The default burst is 20, then 5 a second: the flood takes well under a second.
    assert!((20..30).contains(&served), "served {served}");
    // Another address is not affected.
    let other = bind("127.0.52.24");
    let answers = ask(&other, &server.pinned, Role::Supernode, &requests[..1]).await;
    assert!(
        matches!(&answers[..], [ListServerToNode::Members(_)]),
        "{answers:?}"
    );
}
