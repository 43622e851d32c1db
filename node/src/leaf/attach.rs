//! The leaf's network tasks: probing candidates, attaching to a supernode, and reading what
//! the supernode sends. Each reports back to the daemon through its event channel.

use std::time::Duration;

use superpeer_common::wire::{
    CloseCode, FrameWriter, Hello, HelloReply, Intent, Role, SupernodeInfo, SupernodeToLeaf,
    WireError,
};
use superpeer_common::{Connection, Endpoint, PeerAddr, Session, probe};
use tokio::sync::mpsc;

use super::daemon::Event;

/// Pings per probe: the median of a few samples, not one noisy handshake.
const PROBE_SAMPLES: usize = 3;

/// Probes `target` and reports its RTT and load (or failure).
pub async fn run_probe(endpoint: Endpoint, target: PeerAddr, events: mpsc::Sender<Event>) {
    let Some(node_id) = target.node_id else {
        return;
    };
    let result = async {
        let conn = endpoint.connect(&target).await.ok()?;
        let result = probe(&conn, Role::Leaf, PROBE_SAMPLES).await.ok();
        conn.close(CloseCode::Normal, "probe done");
        let result = result?;
        (result.role == Role::Supernode).then_some((result.rtt, result.load))
    };
    let result = tokio::time::timeout(Duration::from_secs(8), result)
        .await
        .ok()
        .flatten();
    let _ = events.send(Event::Probed { node_id, result }).await;
}

/// How an attach attempt ended.
pub enum Attached {
    /// Welcome: the session is open.
    Yes {
        conn: Connection,
        writer: FrameWriter<quinn::SendStream>,
    },
    /// The supernode is full; try these.
    Full(Vec<SupernodeInfo>),
    /// No connection or no welcome.
    Failed(String),
}

/// Attaches to `target`; on success spawns the reader that forwards the supernode's
/// messages (tagged with `generation`) until the session ends.
pub async fn attach(
    endpoint: Endpoint,
    target: PeerAddr,
    advertise: std::net::SocketAddr,
    generation: u64,
    events: mpsc::Sender<Event>,
) -> Attached {
    let conn = match endpoint.connect(&target).await {
        Ok(conn) => conn,
        Err(e) => return Attached::Failed(e.to_string()),
    };
    let hello = Hello::new(Role::Leaf, Intent::Attach, Some(advertise));
    let opened = tokio::time::timeout(Duration::from_secs(5), conn.open_session(&hello)).await;
    let (session, reply) = match opened {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Attached::Failed(e.to_string()),
        Err(_) => {
            conn.close(CloseCode::Normal, "no welcome");
            return Attached::Failed("no welcome within 5 s".into());
        }
    };
    match reply {
        HelloReply::Welcome {
            role: Role::Supernode,
        } => {
            let Session { reader, writer } = session;
            tokio::spawn(read_supernode(conn.clone(), reader, generation, events));
            Attached::Yes { conn, writer }
        }
        HelloReply::Welcome { role } => {
            conn.close(CloseCode::Normal, "not a supernode");
            Attached::Failed(format!("it is a {role}, not a supernode"))
        }
        HelloReply::Refused { try_instead, .. } => {
            conn.close(CloseCode::Normal, "refused");
            Attached::Full(try_instead)
        }
    }
}

async fn read_supernode(
    conn: Connection,
    mut reader: superpeer_common::wire::FrameReader<quinn::RecvStream>,
    generation: u64,
    events: mpsc::Sender<Event>,
) {
    let why = loop {
        match reader.recv::<SupernodeToLeaf>().await {
            Ok(Some(msg)) => {
                if events
                    .send(Event::FromSupernode { generation, msg })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => break "the supernode ended the session".to_string(),
            Err(e) => {
                if !matches!(e, WireError::PeerClosed { .. } | WireError::Connection(_)) {
                    conn.close_for(&e);
                }
                break e.to_string();
            }
        }
    };
    let _ = events.send(Event::SessionEnded { generation, why }).await;
}
