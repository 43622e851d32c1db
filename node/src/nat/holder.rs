//! The holder's side of NAT traversal: dialling a downloader back, and opening a relay leg,
//! each only when our own supernode asks (over our attach session), and each serving our
//! files on the connection made, as an incoming transfer connection is served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use superpeer_common::wire::{
    CloseCode, Hello, HelloReply, Intent, RelayLegRequest, RendezvousReply, Role,
};
use superpeer_common::{Connection, Endpoint, NodeId, PeerAddr};
use tokio::task::JoinSet;
use tracing::debug;

use crate::transfer::{ServedFiles, Uploads, serve_dialled};

/// How long both ends of a punch keep trying.
pub const PUNCH_WINDOW: Duration = Duration::from_secs(4);

/// When each attempt of a punch starts. Each sends fresh QUIC Initials: the early ones
/// open our own NAT toward the peer, a later one gets through once the peer's packets
/// have opened its NAT toward us (quinn's own first retransmission would come only after
/// about a second).
const ATTEMPTS_AT_MS: [u64; 6] = [0, 100, 250, 500, 1000, 2000];

/// How long a relay leg waits for the downloader's connection through the tunnel.
const TUNNEL_ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Dials `peer` several times over [`PUNCH_WINDOW`] (see [`ATTEMPTS_AT_MS`]) and returns
/// the first connection made, pinned to its node id. Both ends of a punch run this.
pub async fn dial_repeatedly(endpoint: &Endpoint, peer: PeerAddr) -> Option<Connection> {
    let mut attempts = JoinSet::new();
    for at in ATTEMPTS_AT_MS {
        let endpoint = endpoint.clone();
        attempts.spawn(async move {
            tokio::time::sleep(Duration::from_millis(at)).await;
            endpoint.connect(&peer).await
        });
    }
    let first = tokio::time::timeout(PUNCH_WINDOW, async {
        while let Some(done) = attempts.join_next().await {
            match done {
                Ok(Ok(conn)) => return Some(conn),
                Ok(Err(e)) => debug!(addr = %peer.addr, "punch attempt failed: {e}"),
                Err(_) => {}
            }
        }
        None
    });
    let conn = first.await.ok().flatten();
    attempts.abort_all();
    conn
}

/// Our supernode asked: dial `requester` at `addr` (where it observed it) and serve it our
/// files on that connection ([`Intent::Push`]).
pub async fn dial_back(
    endpoint: Endpoint,
    requester: NodeId,
    addr: SocketAddr,
    role: Role,
    served: ServedFiles,
    uploads: Arc<Uploads>,
) {
    let Some(conn) = dial_repeatedly(&endpoint, PeerAddr::pinned(requester, addr)).await else {
        debug!(peer = %requester.short(), %addr, "could not dial back");
        return;
    };
    let hello = Hello::new(role, Intent::Push, None);
    match conn.open_session(&hello).await {
        Ok((_session, HelloReply::Welcome { .. })) => {
            debug!(peer = %requester.short(), %addr, "dialled back; serving");
            // The push session stays open (held here) while the downloader's transfer
            // sessions run on the connection.
            serve_dialled(conn, role, served, uploads).await;
        }
        Ok((mut session, HelloReply::Refused { reason, .. })) => {
            debug!(peer = %requester.short(), "dial-back refused: {reason}");
            conn.finish_and_close(&mut session, CloseCode::Normal, "refused")
                .await;
        }
        Err(e) => debug!(peer = %requester.short(), "dial-back failed: {e}"),
    }
}

/// Our supernode asked: open our leg of the relayed session `token` at `relay`, then serve
/// `requester`, and only it, through the tunnel.
pub async fn relay_leg(
    endpoint: Endpoint,
    relay: PeerAddr,
    requester: NodeId,
    token: u64,
    role: Role,
    served: ServedFiles,
    uploads: Arc<Uploads>,
) {
    if let Err(why) = serve_leg(&endpoint, relay, requester, token, role, served, uploads).await {
        debug!(peer = %requester.short(), "relay leg failed: {why}");
    }
}

async fn serve_leg(
    endpoint: &Endpoint,
    relay: PeerAddr,
    requester: NodeId,
    token: u64,
    role: Role,
    served: ServedFiles,
    uploads: Arc<Uploads>,
) -> Result<(), String> {
    let conn = endpoint.connect(&relay).await.map_err(|e| e.to_string())?;
    let hello = Hello::new(role, Intent::RelayLeg, None);
    let (mut session, reply) = conn.open_session(&hello).await.map_err(|e| e.to_string())?;
    if let HelloReply::Refused { reason, .. } = reply {
        return Err(reason);
    }
    session
        .writer
        .send(&RelayLegRequest::Join { token })
        .await
        .map_err(|e| e.to_string())?;
    match session.reader.recv_required::<RendezvousReply>().await {
        Ok(RendezvousReply::Relaying) => {}
        Ok(RendezvousReply::Refused { reason }) => return Err(reason),
        Ok(other) => return Err(format!("unexpected answer {other:?}")),
        Err(e) => return Err(e.to_string()),
    }
    let superpeer_common::Session { reader, writer } = session;
    let (tunnel, _peer) = Endpoint::over_relay_leg(
        endpoint.identity().clone(),
        endpoint.limits().clone(),
        writer.into_inner(),
        reader.into_inner(),
    )
    .map_err(|e| e.to_string())?;
    let incoming = tokio::time::timeout(TUNNEL_ACCEPT_TIMEOUT, tunnel.incoming())
        .await
        .map_err(|_| "nobody came through the relay".to_string())?
        .ok_or("the tunnel closed")?;
    let inner = superpeer_common::accept(incoming, endpoint.limits().handshake_timeout)
        .await
        .map_err(|e| e.to_string())?;
    if inner.peer() != requester {
        inner.close(CloseCode::Refused, "not the node that asked");
        return Err("someone else came through the relay".into());
    }
    // Through the tunnel the downloader's transfer sessions arrive as on any connection:
    // each opens with its hello.
    serve_dialled(inner, role, served, uploads).await;
    conn.close(CloseCode::Normal, "relay done");
    Ok(())
}
