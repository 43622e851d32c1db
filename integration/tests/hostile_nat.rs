//! NAT traversal hands strangers ways to make our nodes send packets; these tests play the
//! stranger against real daemons (a list server, a supernode, a leaf attached to it) from
//! their own QUIC endpoint, on 127.0.72.x:
//! - a reverse connection nobody asked for is refused;
//! - rendezvous requests are rate-limited per asker, and the holder dials back only the
//!   address the asker's connection came from (the request names no address at all);
//! - a relay needs both ends: a leg with an unknown token, or a relay to a node not
//!   attached to the supernode, is refused, and one node holds at most 4 relayed sessions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use superpeer_common::wire::{
    Hello, HelloReply, Intent, RelayLegRequest, RendezvousReply, Role, ToRendezvous,
};
use superpeer_common::{Connection, Endpoint, Identity, NodeId, PeerAddr, TransportLimits};
use superpeer_integration::harness::{Cluster, Proc, attached, node_id};

const EXE: &str = env!("CARGO_BIN_EXE_superpeer-node");
const SUBNET: u8 = 72;

fn stranger(host: u8) -> Endpoint {
    let identity = Arc::new(Identity::generate().unwrap());
    let addr: SocketAddr = format!("127.0.{SUBNET}.{host}:0").parse().unwrap();
    Endpoint::bind(identity, addr, TransportLimits::default()).unwrap()
}

/// A list server, a supernode, and one leaf attached to it (the holder).
fn network() -> (Cluster, Proc, Proc, Proc) {
    let mut cluster = Cluster::new(EXE, SUBNET).unwrap();
    let list = cluster.list_server("list", &[]).unwrap();
    let supernode = cluster.supernode("sn", &list, &[]).unwrap();
    let sn = supernode.pinned.to_string();
    let holder = cluster
        .leaf("holder", &["--peer", &sn, "--no-election"])
        .unwrap();
    attached(&holder, Duration::from_secs(30)).unwrap();
    (cluster, list, supernode, holder)
}

/// Opens a session with `intent` at `target`; the connection and the reply.
async fn open(
    from: &Endpoint,
    target: PeerAddr,
    intent: Intent,
) -> (Connection, superpeer_common::Session, HelloReply) {
    let conn = from.connect(&target).await.unwrap();
    let (session, reply) = conn
        .open_session(&Hello::new(Role::Leaf, intent, None))
        .await
        .unwrap();
    (conn, session, reply)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_reverse_connection_nobody_asked_for_is_refused() {
    let (_cluster, _list, _sn, holder) = network();
    runtime().block_on(async {
        let me = stranger(200);
        let (conn, _session, reply) = open(&me, holder.pinned, Intent::Push).await;
        match reply {
            HelloReply::Refused { reason, .. } => {
                assert!(reason.contains("no download waits"), "{reason}");
            }
            other => panic!("an unsolicited push was welcomed: {other:?}"),
        }
        // And the connection is closed behind the refusal.
        let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
        assert!(closed.is_ok(), "the refused connection stays open");
    });
}

#[test]
fn rendezvous_is_rate_limited_and_the_holder_dials_back_only_the_asker() {
    let (_cluster, _list, supernode, holder) = network();
    let holder_id = node_id(&holder).unwrap();
    runtime().block_on(async {
        let me = stranger(201);
        // Count the holder's reverse connections arriving at our own endpoint: the only
        // address it may dial is the one our requests come from.
        let pushes = Arc::new(AtomicUsize::new(0));
        let counting = {
            let (me, pushes) = (me.clone(), pushes.clone());
            tokio::spawn(async move {
                while let Some(incoming) = me.incoming().await {
                    let pushes = pushes.clone();
                    tokio::spawn(async move {
                        let Ok(conn) =
                            superpeer_common::accept(incoming, Duration::from_secs(5)).await
                        else {
                            return;
                        };
                        if let Ok((mut session, hello)) = conn.accept_session().await
                            && hello.intent == Intent::Push
                            && conn.peer() == holder_id
                        {
                            pushes.fetch_add(1, Ordering::SeqCst);
                            let refusal = HelloReply::Refused {
                                reason: "counted".into(),
                                try_instead: Vec::new(),
                            };
                            let _ = session.reply(&refusal).await;
                        }
                    });
                }
            })
        };
        let (mut dialling, mut limited, mut asked) = (0, 0, 0);
        // 40 requests, 4 per connection (a connection's most), as fast as they go.
        for _ in 0..10 {
            let (_conn, mut session, reply) = open(&me, supernode.pinned, Intent::Rendezvous).await;
            assert!(matches!(reply, HelloReply::Welcome { .. }), "{reply:?}");
            for _ in 0..4 {
                asked += 1;
                session
                    .writer
                    .send(&ToRendezvous::Reach { holder: holder_id })
                    .await
                    .unwrap();
                match session
                    .reader
                    .recv_required::<RendezvousReply>()
                    .await
                    .unwrap()
                {
                    RendezvousReply::Dialling { you, .. } => {
                        assert_eq!(you, me.local_addr().unwrap(), "it names where we are");
                        dialling += 1;
                    }
                    RendezvousReply::Refused { reason } => {
                        assert!(reason.contains("too many requests"), "{reason}");
                        limited += 1;
                    }
                    RendezvousReply::Relaying => panic!("a reach is no relay"),
                }
            }
        }
        assert_eq!(asked, 40);
        // A burst of 10, and 2 a second while the requests run (well under 5 s).
        assert!((10..=20).contains(&dialling), "{dialling} reaches passed");
        assert_eq!(dialling + limited, asked);
        // The holder dials back at most once per request that passed.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let pushed = pushes.load(Ordering::SeqCst);
        assert!(
            pushed >= 1,
            "the holder dialled back the asker's own address"
        );
        assert!(
            pushed <= dialling,
            "{pushed} reverse connections for {dialling} requests"
        );
        counting.abort();
    });
}

#[test]
fn a_relay_needs_both_ends_and_holds_a_node_to_four_sessions() {
    let (_cluster, _list, supernode, holder) = network();
    let holder_id = node_id(&holder).unwrap();
    runtime().block_on(async {
        let me = stranger(202);
        // A leg with a token nobody handed out.
        let (_conn, mut session, reply) = open(&me, supernode.pinned, Intent::RelayLeg).await;
        assert!(matches!(reply, HelloReply::Welcome { .. }));
        session
            .writer
            .send(&RelayLegRequest::Join { token: 12345 })
            .await
            .unwrap();
        let answer = session.reader.recv_required::<RendezvousReply>().await.unwrap();
        assert!(
            matches!(&answer, RendezvousReply::Refused { reason } if reason.contains("no relayed session")),
            "{answer:?}"
        );

        // A relay to a node that is not attached here.
        let (_conn, mut session, _) = open(&me, supernode.pinned, Intent::Rendezvous).await;
        let nobody = NodeId::from_bytes([7; 32]);
        session
            .writer
            .send(&ToRendezvous::Relay { holder: nobody })
            .await
            .unwrap();
        let answer = session.reader.recv_required::<RendezvousReply>().await.unwrap();
        assert!(
            matches!(&answer, RendezvousReply::Refused { reason } if reason.contains("not attached")),
            "{answer:?}"
        );

        // Six relays to the (honest) holder at once: it opens its legs, and the relay
        // carries at most 4 sessions of one node.
        let mut asks = Vec::new();
        for _ in 0..6 {
            let me = me.clone();
            let target = supernode.pinned;
            asks.push(tokio::spawn(async move {
                let (conn, mut session, _) = open(&me, target, Intent::Rendezvous).await;
                session
                    .writer
                    .send(&ToRendezvous::Relay { holder: holder_id })
                    .await
                    .unwrap();
                let answer = session.reader.recv_required::<RendezvousReply>().await;
                // Held open until all have answered.
                (answer, conn, session)
            }));
        }
        let mut relaying = 0;
        let mut held = Vec::new();
        for ask in asks {
            let (answer, conn, session) = ask.await.unwrap();
            match answer.unwrap() {
                RendezvousReply::Relaying => relaying += 1,
                RendezvousReply::Refused { reason } => {
                    assert!(reason.contains("busy") || reason.contains("relay"), "{reason}");
                }
                other => panic!("{other:?}"),
            }
            held.push((conn, session));
        }
        assert_eq!(relaying, 4, "one node holds at most 4 relayed sessions");
        drop(held);
    });
}
