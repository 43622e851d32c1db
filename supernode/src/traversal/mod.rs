//! NAT traversal, the supernode's side: connecting downloaders with attached leaves that
//! cannot be dialled (the message flow is in `superpeer_common::wire`'s `nat.rs`).
//!
//! - Attached leaves are registered here with their outbox and the address their
//!   connection comes from ([`Traversal::attached`]).
//! - A rendezvous request makes the holder dial the *observed* address of the asker, never
//!   one the asker names, and only that asker's node id: nobody can aim a leaf at a third
//!   party. Requests are rate-limited per asker address and per holder (`limits`).
//! - A relay carries only a session both ends asked for: the downloader on its rendezvous
//!   connection, the holder with the token this supernode sent it. Sessions are capped in
//!   number, per node, in bytes, rate and time (`crate::relay`).

mod limits;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use superpeer_common::wire::{
    CloseCode, HelloReply, RelayLegRequest, RendezvousReply, Role, SupernodeToLeaf, ToRendezvous,
    encode,
};
use superpeer_common::{Connection, NodeId, Session};
use tokio::sync::oneshot;
use tracing::debug;

pub use limits::RequestLimits;

use crate::SessionId;
use crate::relay::{RelayBook, RelayCaps, RelayStats, pipe};
use crate::sessions::Outbox;

/// Longest a rendezvous connection may wait between requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests on one rendezvous connection at most (a reach, then a relay, and spares).
const MAX_REQUESTS_PER_CONNECTION: usize = 4;
/// How long a downloader waits at the relay for the holder's leg.
pub const LEG_TIMEOUT: Duration = Duration::from_secs(5);

/// An attached leaf, as rendezvous requests need it.
struct AttachedLeaf {
    session: SessionId,
    outbox: Outbox,
    observed: SocketAddr,
}

/// The streams of one end of a relayed session.
type Leg = (quinn::SendStream, quinn::RecvStream);

/// A downloader waiting at the relay for a holder's leg.
struct Pending {
    holder: NodeId,
    leg: oneshot::Sender<Leg>,
}

/// What rendezvous and relay requests share. Cheap to clone.
#[derive(Clone)]
pub struct Traversal {
    inner: Arc<Inner>,
}

struct Inner {
    leaves: Mutex<HashMap<NodeId, AttachedLeaf>>,
    limits: Mutex<RequestLimits>,
    relay: Mutex<RelayBook>,
    pending: Mutex<HashMap<u64, Pending>>,
    caps: RelayCaps,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Traversal {
    /// Relays within `caps`.
    pub fn new(caps: RelayCaps) -> Self {
        Self {
            inner: Arc::new(Inner {
                leaves: Mutex::new(HashMap::new()),
                limits: Mutex::new(RequestLimits::default()),
                relay: Mutex::new(RelayBook::new(caps.clone())),
                pending: Mutex::new(HashMap::new()),
                caps,
            }),
        }
    }

    /// A leaf attached on `session`, its connection coming from `observed`.
    pub fn attached(&self, node: NodeId, session: SessionId, outbox: Outbox, observed: SocketAddr) {
        lock(&self.inner.leaves).insert(
            node,
            AttachedLeaf {
                session,
                outbox,
                observed,
            },
        );
    }

    /// The leaf's session ended (a newer session of it stays registered).
    pub fn detached(&self, node: NodeId, session: SessionId) {
        let mut leaves = lock(&self.inner.leaves);
        if leaves.get(&node).is_some_and(|l| l.session == session) {
            leaves.remove(&node);
        }
    }

    /// The relay's counters, for status.
    pub fn relay_stats(&self) -> RelayStats {
        lock(&self.inner.relay).stats()
    }

    /// Tells `holder` (attached here) to send `msg`; the address it is seen at.
    fn tell(&self, holder: NodeId, msg: &SupernodeToLeaf) -> Result<SocketAddr, String> {
        let leaves = lock(&self.inner.leaves);
        let leaf = leaves
            .get(&holder)
            .ok_or_else(|| "that node is not attached here".to_string())?;
        let frame = encode(msg).map_err(|e| e.to_string())?;
        leaf.outbox
            .try_send(frame)
            .map_err(|_| "that node is not keeping up".to_string())?;
        Ok(leaf.observed)
    }

    fn allow(&self, asker: SocketAddr, holder: NodeId) -> Result<(), String> {
        lock(&self.inner.limits)
            .allow(Instant::now(), asker.ip(), holder)
            .map_err(|e| e.to_string())
    }

    /// A reverse connection or punch: the holder dials the asker where we see it.
    fn reach(&self, asker: NodeId, asker_addr: SocketAddr, holder: NodeId) -> RendezvousReply {
        if asker == holder {
            return refused("a node cannot reach itself".into());
        }
        if let Err(why) = self.allow(asker_addr, holder) {
            return refused(why);
        }
        let dial = SupernodeToLeaf::DialBack {
            requester: asker,
            addr: asker_addr,
        };
        match self.tell(holder, &dial) {
            Ok(holder_addr) => RendezvousReply::Dialling {
                holder: holder_addr,
                you: asker_addr,
            },
            Err(why) => refused(why),
        }
    }
}

fn refused(reason: String) -> RendezvousReply {
    RendezvousReply::Refused { reason }
}

/// Serves a downloader's rendezvous connection (hello read, not yet answered).
pub async fn serve_rendezvous(conn: Connection, mut session: Session, traversal: Traversal) {
    let welcome = HelloReply::Welcome {
        role: Role::Supernode,
    };
    if session.reply(&welcome).await.is_err() {
        return;
    }
    let (asker, asker_addr) = (conn.peer(), conn.remote_addr());
    for answered in 0.. {
        let request = tokio::time::timeout(REQUEST_TIMEOUT, session.reader.recv::<ToRendezvous>());
        let request = match request.await {
            Ok(Ok(Some(request))) => request,
            Ok(Ok(None)) | Err(_) => {
                return conn
                    .finish_and_close(&mut session, CloseCode::Normal, "done")
                    .await;
            }
            Ok(Err(e)) => return conn.close_for(&e),
        };
        if answered == MAX_REQUESTS_PER_CONNECTION {
            return conn.close(CloseCode::Overloaded, "too many requests on one connection");
        }
        match request {
            ToRendezvous::Reach { holder } => {
                let reply = traversal.reach(asker, asker_addr, holder);
                if session.writer.send(&reply).await.is_err() {
                    return;
                }
            }
            ToRendezvous::Relay { holder } => {
                return relay_downloader(conn, session, traversal, asker, holder).await;
            }
        }
    }
}

/// The downloader's end of a relayed session: admitted, the holder told, its leg awaited,
/// then the bytes piped until either end stops or a cap cuts them off.
async fn relay_downloader(
    conn: Connection,
    mut session: Session,
    traversal: Traversal,
    asker: NodeId,
    holder: NodeId,
) {
    let inner = &traversal.inner;
    let admitted = traversal.allow(conn.remote_addr(), holder).and_then(|()| {
        lock(&inner.relay)
            .admit(asker, holder, Instant::now())
            .map_err(|e| e.to_string())
    });
    let ticket = match admitted {
        Ok(ticket) => ticket,
        Err(why) => {
            let _ = session.writer.send(&refused(why)).await;
            return conn
                .finish_and_close(&mut session, CloseCode::Normal, "relay refused")
                .await;
        }
    };
    let token: u64 = rand::random();
    let (leg_tx, leg_rx) = oneshot::channel();
    lock(&inner.pending).insert(
        token,
        Pending {
            holder,
            leg: leg_tx,
        },
    );
    let told = traversal.tell(
        holder,
        &SupernodeToLeaf::OpenRelay {
            requester: asker,
            token,
        },
    );
    let leg = match told {
        Ok(_) => tokio::time::timeout(LEG_TIMEOUT, leg_rx)
            .await
            .ok()
            .and_then(Result::ok),
        Err(why) => {
            lock(&inner.pending).remove(&token);
            lock(&inner.relay).release(ticket);
            let _ = session.writer.send(&refused(why)).await;
            return conn
                .finish_and_close(&mut session, CloseCode::Normal, "relay refused")
                .await;
        }
    };
    lock(&inner.pending).remove(&token);
    let Some(holder_leg) = leg else {
        lock(&inner.relay).release(ticket);
        let reply = refused("the holder did not open its relay leg".into());
        let _ = session.writer.send(&reply).await;
        return conn
            .finish_and_close(&mut session, CloseCode::Normal, "no relay leg")
            .await;
    };
    if session
        .writer
        .send(&RendezvousReply::Relaying)
        .await
        .is_err()
    {
        lock(&inner.relay).release(ticket);
        return;
    }
    let Session { reader, writer } = session;
    let downloader_leg = (writer.into_inner(), reader.into_inner());
    let end = pipe(downloader_leg, holder_leg, &inner.caps).await;
    debug!(asker = %asker.short(), holder = %holder.short(), ?end, "relayed session ended");
    lock(&inner.relay).finish(ticket, &end);
    conn.close(CloseCode::Normal, "relay ended");
}

/// Serves a holder's relay leg (hello read, not yet answered): handed to the downloader
/// waiting with the same token, if the token is this holder's.
pub async fn serve_relay_leg(conn: Connection, mut session: Session, traversal: Traversal) {
    let welcome = HelloReply::Welcome {
        role: Role::Supernode,
    };
    if session.reply(&welcome).await.is_err() {
        return;
    }
    let request = tokio::time::timeout(REQUEST_TIMEOUT, session.reader.recv::<RelayLegRequest>());
    let Ok(Ok(Some(RelayLegRequest::Join { token }))) = request.await else {
        return conn.close(CloseCode::Normal, "no relay leg");
    };
    let waiting = {
        let mut pending = lock(&traversal.inner.pending);
        match pending.get(&token) {
            Some(p) if p.holder == conn.peer() => pending.remove(&token),
            _ => None,
        }
    };
    let Some(waiting) = waiting else {
        let reply = refused("no relayed session waits for this leg".into());
        let _ = session.writer.send(&reply).await;
        return conn
            .finish_and_close(&mut session, CloseCode::Refused, "no such relay session")
            .await;
    };
    if session
        .writer
        .send(&RendezvousReply::Relaying)
        .await
        .is_err()
    {
        return;
    }
    let Session { reader, writer } = session;
    if waiting
        .leg
        .send((writer.into_inner(), reader.into_inner()))
        .is_err()
    {
        return;
    }
    // The downloader's task pipes the streams; this connection lives until it is done.
    let _ = conn.closed().await;
}
