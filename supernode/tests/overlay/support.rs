//! A small network in one process: a list server, supernodes, and leaves that speak the
//! protocol by hand. Everything runs on real QUIC sockets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use superpeer_bootstrap_list::{ListServer, ListServerConfig};
use superpeer_common::wire::{
    FileEntry, Hello, HelloReply, Holder, Intent, LeafToSupernode, Query, QueryHit, QueryId, Role,
    SupernodeToLeaf,
};
use superpeer_common::{
    Connection, ContentId, Endpoint, Identity, NodeId, PeerAddr, Session, TransportLimits,
};
use superpeer_supernode::{Supernode, SupernodeConfig, SupernodeHandle, SupernodeStatus};
use tokio::sync::watch;

/// A list server in this process.
pub struct TestListServer {
    pub pinned: PeerAddr,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

pub async fn list_server(ip: &str) -> TestListServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        ListServerConfig::new(format!("{ip}:0").parse().unwrap(), dir.path().to_path_buf());
    config.registry.heartbeat_interval = Duration::from_millis(300);
    let server = ListServer::bind(config).unwrap();
    let pinned = PeerAddr::pinned(server.node_id(), server.local_addr().unwrap());
    let (stop, mut stop_rx) = watch::channel(false);
    tokio::spawn(server.run(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    TestListServer {
        pinned,
        _stop: stop,
        _dir: dir,
    }
}

/// A supernode in this process.
pub struct TestSupernode {
    pub pinned: PeerAddr,
    pub handle: SupernodeHandle,
    stop: watch::Sender<bool>,
}

impl TestSupernode {
    pub async fn start(ip: &str, list: &TestListServer, max_leaves: usize) -> TestSupernode {
        let identity = Arc::new(Identity::generate().unwrap());
        let mut config = SupernodeConfig::new(format!("{ip}:0").parse().unwrap());
        config.list_servers = vec![list.pinned];
        config.refresh_interval = Duration::from_millis(500);
        config.core.max_leaves = max_leaves;
        let supernode = Supernode::bind(identity, config).unwrap();
        let pinned = PeerAddr::pinned(supernode.node_id(), supernode.advertise());
        let handle = supernode.handle();
        let (stop, mut stop_rx) = watch::channel(false);
        tokio::spawn(supernode.run(async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        }));
        TestSupernode {
            pinned,
            handle,
            stop,
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.pinned.node_id.unwrap()
    }

    pub async fn status(&self) -> SupernodeStatus {
        self.handle.status().await.expect("supernode running")
    }

    /// Stops cleanly (leaves are told where to go).
    #[allow(dead_code)]
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// Waits (bounded) until every supernode links to all the others.
pub async fn wait_full_mesh(nodes: &[&TestSupernode]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut complete = true;
        for node in nodes {
            let status = node.status().await;
            let want: Vec<NodeId> = nodes
                .iter()
                .map(|n| n.node_id())
                .filter(|id| *id != node.node_id())
                .collect();
            complete &= want.iter().all(|id| status.core.neighbors.contains(id));
        }
        if complete {
            return;
        }
        assert!(Instant::now() < deadline, "no full mesh within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A leaf that speaks the protocol by hand.
pub struct TestLeaf {
    pub endpoint: Endpoint,
    pub conn: Connection,
    session: Session,
    next_query: u8,
}

pub fn entry(name: &str, bytes: &[u8]) -> FileEntry {
    FileEntry {
        content_id: ContentId::of_bytes(bytes),
        name: name.into(),
        size: bytes.len() as u64,
    }
}

impl TestLeaf {
    /// Attaches to `supernode`; the hello reply when refused.
    pub async fn attach(ip: &str, supernode: &PeerAddr) -> Result<TestLeaf, HelloReply> {
        let identity = Arc::new(Identity::generate().unwrap());
        let endpoint = Endpoint::bind(
            identity,
            format!("{ip}:0").parse().unwrap(),
            TransportLimits::default(),
        )
        .unwrap();
        let conn = endpoint.connect(supernode).await.unwrap();
        let advertise = endpoint.local_addr().unwrap();
        let (session, reply) = conn
            .open_session(&Hello::new(Role::Leaf, Intent::Attach, Some(advertise)))
            .await
            .unwrap();
        match reply {
            HelloReply::Welcome {
                role: Role::Supernode,
            } => Ok(TestLeaf {
                endpoint,
                conn,
                session,
                next_query: 0,
            }),
            other => Err(other),
        }
    }

    pub fn holder(&self) -> Holder {
        Holder {
            node_id: self.endpoint.node_id(),
            addr: self.endpoint.local_addr().unwrap(),
            via: None,
        }
    }

    pub async fn publish(&mut self, entries: Vec<FileEntry>) {
        self.session
            .writer
            .send(&LeafToSupernode::Publish { entries })
            .await
            .unwrap();
        // A ping round trip: the publish has been processed once the pong is back.
        self.session
            .writer
            .send(&LeafToSupernode::Ping { nonce: 7 })
            .await
            .unwrap();
        loop {
            if let SupernodeToLeaf::Pong { nonce: 7 } =
                self.session.reader.recv_required().await.unwrap()
            {
                break;
            }
        }
    }

    /// Searches and gathers every hit until the supernode says the query is done, merging
    /// holders by content id.
    pub async fn search(&mut self, words: &[&str], want: u32) -> BTreeMap<ContentId, QueryHit> {
        self.next_query += 1;
        let id = QueryId([self.next_query; 16]);
        let keywords = words.iter().map(|w| w.to_string()).collect();
        self.session
            .writer
            .send(&LeafToSupernode::Query(Query { id, keywords, want }))
            .await
            .unwrap();
        let mut found: BTreeMap<ContentId, QueryHit> = BTreeMap::new();
        let collect = async {
            loop {
                match self
                    .session
                    .reader
                    .recv_required::<SupernodeToLeaf>()
                    .await
                    .unwrap()
                {
                    SupernodeToLeaf::Hits { id: hid, hits } if hid == id => {
                        for hit in hits {
                            match found.get_mut(&hit.content_id) {
                                Some(known) => {
                                    for h in hit.holders {
                                        if !known.holders.contains(&h) {
                                            known.holders.push(h);
                                        }
                                    }
                                }
                                None => {
                                    found.insert(hit.content_id, hit);
                                }
                            }
                        }
                    }
                    SupernodeToLeaf::QueryDone { id: did, .. } if did == id => break,
                    // A refused query must not pass for "no results".
                    SupernodeToLeaf::Refused { reason } => panic!("query refused: {reason}"),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), collect)
            .await
            .expect("query finished");
        found
    }

    /// Searches until `check` accepts the results (summaries take a moment to spread).
    pub async fn search_until(
        &mut self,
        words: &[&str],
        check: impl Fn(&BTreeMap<ContentId, QueryHit>) -> bool,
    ) -> BTreeMap<ContentId, QueryHit> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.search(words, 50).await;
            if check(&found) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "search {words:?} never gave the expected results: {found:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[allow(dead_code)]
pub fn addr_of(leaf: &TestLeaf) -> SocketAddr {
    leaf.endpoint.local_addr().unwrap()
}
