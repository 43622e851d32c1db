//! A stranger in the supernode mesh (issue 14, finding 1): it links to an honest supernode
//! and gossips 500 invented supernodes, and an honest supernode's id, all at a victim's
//! address. Nothing may be sent to the victim, and the honest supernode's address must
//! survive: a leaf that learned of it only through the attacked supernode fails over to it.
//!
//! The attacker has only a QUIC endpoint of its own. Today's rule lets it in only through
//! the front door that is left: it dials the supernode, is refused as a stranger, and takes
//! the supernode's dial-back (to the address its handshake came from), then gossips on that
//! link. Before the trust rules it was let in at once; the test drives either path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use superpeer_common::wire::{
    Hello, HelloReply, Intent, Load, Role, SupernodeInfo, SupernodeToSupernode,
};
use superpeer_common::{Endpoint, Identity, NodeId, PeerAddr, Session, TransportLimits};
use superpeer_integration::harness::{Cluster, attached, wait_for};

const EXE: &str = env!("CARGO_BIN_EXE_superpeer-node");
const SUBNET: u8 = 50;
/// Supernodes the attacker invents.
const INVENTED: usize = 500;
/// How long the attacker gossips.
const ATTACK: Duration = Duration::from_secs(20);

#[test]
fn gossip_cannot_aim_the_mesh_at_a_victim_or_eclipse_an_honest_supernode() {
    let mut cluster = Cluster::new(EXE, SUBNET).unwrap();
    let list = cluster
        .list_server("list", &["--heartbeat-ms", "500"])
        .unwrap();
    let mut attacked = cluster.supernode("attacked", &list, &[]).unwrap();
    let honest = cluster.supernode("honest", &list, &[]).unwrap();
    // The leaf knows only the attacked supernode: all else it learns from it.
    let peer = attacked.pinned.to_string();
    let leaf = cluster
        .leaf("leaf", &["--peer", &peer, "--no-election"])
        .unwrap();
    attached(&leaf, Duration::from_secs(30)).unwrap();
    let honest_id = honest.pinned.node_id.unwrap();
    wait_for("the supernodes to link", Duration::from_secs(30), || {
        Ok((attacked.status()?.neighbors.unwrap_or(0) >= 1).then_some(()))
    })
    .unwrap();

    // The victim: a UDP socket that counts whatever reaches it.
    let victim = UdpSocket::bind(format!("127.0.{SUBNET}.200:0")).unwrap();
    victim
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let victim_addr = victim.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let listening = Arc::new(AtomicBool::new(true));
    let counter = {
        let (received, listening) = (received.clone(), listening.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while listening.load(Ordering::Relaxed) {
                if victim.recv_from(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let linked = runtime.block_on(attack(
        attacked.pinned,
        format!("127.0.{SUBNET}.201:0").parse().unwrap(),
        victim_addr,
        honest_id,
    ));
    println!("attacker linked: {linked}");
    // Gossip adds nobody to the directory's membership: only the list server does.
    let members = attacked.status().unwrap().directory.unwrap().members;
    assert!(members <= 2, "gossip made {members} members");

    // The attacked supernode stops cleanly: its leaf is told where to go (`MoveTo`, from
    // its own view of the mesh) and must reach the honest supernode at its real address.
    attacked.terminate();
    let status = wait_for(
        "the leaf to fail over to the honest supernode",
        Duration::from_secs(30),
        || {
            let status = leaf.status()?;
            let there = status
                .supernode
                .as_ref()
                .is_some_and(|s| s.node_id == honest_id.to_string());
            Ok(there.then_some(()))
        },
    );
    // Anything still in flight towards the victim has landed by now.
    std::thread::sleep(Duration::from_secs(2));
    listening.store(false, Ordering::Relaxed);
    counter.join().unwrap();
    let packets = received.load(Ordering::Relaxed);
    println!("the victim received {packets} datagrams");
    assert_eq!(packets, 0, "gossip aimed the network at the victim");
    status.unwrap();
}

/// Links to `target` as a supernode from `bind` (directly, or through the dial-back a
/// stranger gets) and gossips for [`ATTACK`]. Returns how it got the link.
async fn attack(
    target: PeerAddr,
    bind: SocketAddr,
    victim: SocketAddr,
    honest: NodeId,
) -> &'static str {
    let identity = Arc::new(Identity::generate().unwrap());
    let endpoint = Endpoint::bind(identity, bind, TransportLimits::default()).unwrap();
    let me = endpoint.local_addr().unwrap();
    let conn = endpoint.connect(&target).await.unwrap();
    let hello = Hello::new(Role::Supernode, Intent::Link, Some(me));
    let (session, how, _conn) = match conn.open_session(&hello).await {
        Ok((session, HelloReply::Welcome { .. })) => (session, "let in at once", conn),
        _ => {
            // Refused as a stranger: wait for the dial-back and take it.
            let incoming = tokio::time::timeout(Duration::from_secs(10), endpoint.incoming())
                .await
                .expect("no dial-back")
                .unwrap();
            let back = superpeer_common::accept(incoming, Duration::from_secs(5))
                .await
                .unwrap();
            let (mut session, hello) = back.accept_session().await.unwrap();
            assert_eq!(hello.intent, Intent::Link);
            session
                .reply(&HelloReply::Welcome {
                    role: Role::Supernode,
                })
                .await
                .unwrap();
            (session, "through the dial-back", back)
        }
    };
    gossip(session, victim, honest).await;
    how
}

async fn gossip(mut session: Session, victim: SocketAddr, honest: NodeId) {
    let load = Load {
        leaves: 0,
        capacity: 500,
        neighbors: 1,
    };
    let at_victim = |node_id| SupernodeInfo {
        node_id,
        addr: victim,
        load,
        stale: false,
    };
    let mut supernodes: Vec<SupernodeInfo> = (0..INVENTED)
        .map(|_| at_victim(Identity::generate().unwrap().node_id()))
        .collect();
    // The eclipse: the honest supernode "moved" to the victim.
    supernodes.insert(0, at_victim(honest));
    let until = tokio::time::Instant::now() + ATTACK;
    while tokio::time::Instant::now() < until {
        // As many as one message may carry, round after round.
        for chunk in supernodes.chunks(50) {
            let msg = SupernodeToSupernode::Known {
                load,
                supernodes: chunk.to_vec(),
            };
            if session.writer.send(&msg).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
