//! The downloader's side of NAT traversal: a connection to each holder, however it can be
//! made (the flow is in the module docs of `nat`).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use superpeer_common::wire::{
    CloseCode, Hello, HelloReply, Intent, RendezvousReply, Role, ToRendezvous, Via,
};
use superpeer_common::{ConnectError, Connection, Endpoint, NodeId, PeerAddr, Session};
use tracing::debug;

use super::holder::{PUNCH_WINDOW, dial_repeatedly};
use super::pushes::Pushes;

/// How a connection to a holder was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reached {
    /// We dialled it at its address.
    Direct,
    /// It dialled us back, as its supernode asked (Gnutella's push).
    Reverse,
    /// Both ends behind NATs dialled each other at once, and one got through.
    Punched,
    /// Through a relay on its supernode; end to end encrypted.
    Relayed,
}

impl Reached {
    /// The name status and search output show.
    pub fn name(self) -> &'static str {
        match self {
            Reached::Direct => "direct",
            Reached::Reverse => "reverse",
            Reached::Punched => "punched",
            Reached::Relayed => "relayed",
        }
    }
}

impl fmt::Display for Reached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What every download of a node shares to reach holders: the node's endpoint, the
/// reverse connections awaited, and whether we are behind a NAT ourselves. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Reacher {
    endpoint: Endpoint,
    pushes: Pushes,
    behind_nat: Arc<AtomicBool>,
    /// Our NAT maps per destination: no punch can work, go to the relay at once.
    symmetric: Arc<AtomicBool>,
}

impl Reacher {
    /// Reaches holders from `endpoint`, with reverse connections handed over by `pushes`.
    pub fn new(endpoint: Endpoint, pushes: Pushes) -> Self {
        Self {
            endpoint,
            pushes,
            behind_nat: Arc::new(AtomicBool::new(false)),
            symmetric: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Dials holders directly only (tests, benchmarks, the command-line client).
    pub fn direct(endpoint: Endpoint) -> Self {
        Self::new(endpoint, Pushes::default())
    }

    /// Whether we are behind a NAT (names a reverse connection that got in a punch), and
    /// whether it maps per destination (a symmetric NAT: our dials toward a holder open a
    /// port its dial-back never reaches, so a firewalled holder is reached by relay at once
    /// instead of after the punch window).
    pub fn set_behind_nat(&self, behind: bool, symmetric: bool) {
        self.behind_nat.store(behind, Ordering::Relaxed);
        self.symmetric.store(behind && symmetric, Ordering::Relaxed);
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Where reverse connections for downloads are handed over.
    pub fn pushes(&self) -> Pushes {
        self.pushes.clone()
    }
}

/// Why no connection to a holder could be made.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    /// Dialling it failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// It is firewalled, and neither a reverse connection, a punch nor the relay worked.
    #[error("firewalled, and not reachable through its supernode: {0}")]
    Traversal(String),
}

/// One download's way to its holders: dials each directly, or through the supernode its
/// hit names, and keeps a connection made the hard way for the next session (the size
/// proof, then the pieces).
#[derive(Debug)]
pub struct Dialer {
    reacher: Reacher,
    via: HashMap<NodeId, Via>,
    kept: Mutex<HashMap<NodeId, (Connection, Reached)>>,
}

impl Dialer {
    /// Reaches the holders of one download; `via` names the firewalled ones' supernodes.
    pub fn new(reacher: Reacher, via: impl IntoIterator<Item = (NodeId, Via)>) -> Self {
        Self {
            reacher,
            via: via.into_iter().collect(),
            kept: Mutex::new(HashMap::new()),
        }
    }

    /// A connection to `holder`, and how it was made.
    pub async fn connect(&self, holder: &PeerAddr) -> Result<(Connection, Reached), ReachError> {
        let Some(node_id) = holder.node_id else {
            return Ok((
                self.reacher.endpoint.connect(holder).await?,
                Reached::Direct,
            ));
        };
        if let Some(kept) = self.lock().remove(&node_id) {
            if kept.0.quinn().close_reason().is_none() {
                return Ok(kept);
            }
        }
        match self.via.get(&node_id) {
            None => Ok((
                self.reacher.endpoint.connect(holder).await?,
                Reached::Direct,
            )),
            Some(via) => self.traverse(node_id, *via).await,
        }
    }

    /// Keeps a connection made the hard way for the next session with that holder.
    pub fn keep(&self, conn: Connection, reached: Reached) {
        if reached != Reached::Direct {
            self.lock().insert(conn.peer(), (conn, reached));
        } else {
            conn.close(CloseCode::Normal, "done");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, (Connection, Reached)>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reverse connection or punch through `via`; the relay when neither works.
    async fn traverse(
        &self,
        holder: NodeId,
        via: Via,
    ) -> Result<(Connection, Reached), ReachError> {
        let fail = |why: String| ReachError::Traversal(why);
        let endpoint = &self.reacher.endpoint;
        let supernode = endpoint
            .connect(&PeerAddr::pinned(via.node_id, via.addr))
            .await
            .map_err(|e| fail(format!("its supernode: {e}")))?;
        let hello = Hello::new(Role::Leaf, Intent::Rendezvous, None);
        let (mut session, reply) = supernode
            .open_session(&hello)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if let HelloReply::Refused { reason, .. } = reply {
            return Err(fail(reason));
        }
        if self.reacher.symmetric.load(Ordering::Relaxed) {
            debug!(holder = %holder.short(), "behind a symmetric NAT: straight to the relay");
        } else {
            match self.reverse_or_punch(&mut session, holder).await {
                Ok(done) => {
                    supernode.close(CloseCode::Normal, "reached");
                    return Ok(done);
                }
                Err(why) => {
                    debug!(holder = %holder.short(), "no reverse connection or punch: {why}");
                }
            }
        }
        let conn = relay(endpoint, supernode, session, holder)
            .await
            .map_err(fail)?;
        Ok((conn, Reached::Relayed))
    }

    async fn reverse_or_punch(
        &self,
        session: &mut Session,
        holder: NodeId,
    ) -> Result<(Connection, Reached), String> {
        let mut wait = self
            .reacher
            .pushes
            .expect(holder)
            .ok_or("too many waiting")?;
        session
            .writer
            .send(&ToRendezvous::Reach { holder })
            .await
            .map_err(|e| e.to_string())?;
        let holder_addr: SocketAddr = match session.reader.recv_required().await {
            Ok(RendezvousReply::Dialling { holder, .. }) => holder,
            Ok(RendezvousReply::Refused { reason }) => return Err(reason),
            Ok(other) => return Err(format!("unexpected answer {other:?}")),
            Err(e) => return Err(e.to_string()),
        };
        // Whichever connection wins, the holder's packets made it possible: for a public
        // downloader that is a reverse connection, behind a NAT a punch.
        let how = if self.reacher.behind_nat.load(Ordering::Relaxed) {
            Reached::Punched
        } else {
            Reached::Reverse
        };
        let endpoint = &self.reacher.endpoint;
        // Our own dials toward the holder open our NAT for its packets; one of them gets
        // through once its dial-back has opened its NAT for ours.
        let punch = dial_repeatedly(endpoint, PeerAddr::pinned(holder, holder_addr));
        tokio::select! {
            pushed = &mut wait.arrived => {
                let conn = pushed.map_err(|_| "the wait ended".to_string())?;
                Ok((conn, how))
            }
            dialled = punch => match dialled {
                Some(conn) => Ok((conn, how)),
                None => Err(format!("nothing got through within {PUNCH_WINDOW:?}")),
            },
        }
    }
}

/// Asks the supernode on `session` to relay us to `holder`, then connects to the holder
/// through the tunnel (pinned: the relay cannot answer for it).
async fn relay(
    endpoint: &Endpoint,
    supernode: Connection,
    mut session: Session,
    holder: NodeId,
) -> Result<Connection, String> {
    session
        .writer
        .send(&ToRendezvous::Relay { holder })
        .await
        .map_err(|e| e.to_string())?;
    match session.reader.recv_required::<RendezvousReply>().await {
        Ok(RendezvousReply::Relaying) => {}
        Ok(RendezvousReply::Refused { reason }) => return Err(format!("relay: {reason}")),
        Ok(other) => return Err(format!("unexpected answer {other:?}")),
        Err(e) => return Err(e.to_string()),
    }
    let Session { reader, writer } = session;
    let (tunnel, peer) = Endpoint::over_relay_leg(
        endpoint.identity().clone(),
        endpoint.limits().clone(),
        writer.into_inner(),
        reader.into_inner(),
    )
    .map_err(|e| e.to_string())?;
    let conn = tunnel
        .connect(&PeerAddr::pinned(holder, peer))
        .await
        .map_err(|e| format!("through the relay: {e}"))?;
    // The connection to the relay carries the tunnel: it lives as long as the connection
    // through it does.
    let inner = conn.clone();
    tokio::spawn(async move {
        let _ = inner.closed().await;
        supernode.close(CloseCode::Normal, "relayed session over");
        drop(tunnel);
    });
    Ok(conn)
}
