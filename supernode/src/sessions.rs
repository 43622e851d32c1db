//! Connection tasks: completing incoming connections by intent, dialling neighbours, and
//! pumping frames between a session's stream and the actor.
//!
//! Each admitted session gets a writer task (frames from its outbox to the stream) and a
//! reader loop (messages from the stream to the actor). A read error closes the connection
//! with the close code the error calls for; either way the actor hears `Gone`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use superpeer_common::wire::{
    CloseCode, Hello, HelloReply, Intent, LeafToSupernode, Load, Message, Observed, Role,
    SupernodeToLeaf, SupernodeToSupernode, Via, WireError, encode,
};
use superpeer_common::{
    Connection, Endpoint, NodeId, PeerAddr, Session, Ticket, answer_probe_seeing, answers_at,
};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::debug;

use crate::SessionId;
use crate::driver::{Event, TransferService};
use crate::traversal::{self, Traversal};

/// Frames (already encoded) waiting to go out on one session.
pub type Outbox = mpsc::Sender<Vec<u8>>;

/// Most frames queued for one session; a peer that reads slower than this is dropped.
pub const OUTBOX_FRAMES: usize = 512;

/// Longest the dial-back to an attaching leaf's advertised address may take. The leaf waits
/// for its welcome meanwhile (up to 5 s from its hello), so this stays well under that.
pub const DIAL_BACK_TIMEOUT: Duration = Duration::from_secs(3);

/// Dial-backs under way at once. Each sends a few QUIC Initials to an address a leaf
/// named, so this also bounds what leaves can make us send to an address that is not
/// theirs: past it, the observed address is used without asking.
pub const MAX_DIAL_BACKS: usize = 16;

/// What every connection task needs from the supernode.
#[derive(Clone)]
pub struct Serving {
    /// Ours: dial-backs go out from it.
    pub endpoint: Endpoint,
    pub events: mpsc::Sender<Event>,
    pub load: watch::Receiver<Load>,
    pub transfer: Option<TransferService>,
    /// The window an admitted session gets.
    pub receive_window: u32,
    /// Slots for dial-backs ([`MAX_DIAL_BACKS`]).
    pub dial_backs: Arc<Semaphore>,
    /// Reachability checks go out from this second socket: a NAT lets a reply to our
    /// main port in, but not a packet from a port the leaf never sent to.
    pub checker: Option<Endpoint>,
    /// This supernode, as firewalled leaves' hits name it.
    pub me: Via,
    /// Rendezvous and relays for firewalled leaves.
    pub traversal: Traversal,
}

/// Completes an incoming connection and serves it until it ends. `ticket` holds its slot
/// at the gate; dropping it at the end frees the slot.
pub async fn serve_incoming(incoming: quinn::Incoming, mut ticket: Ticket, serving: Serving) {
    let handshake_timeout = serving.endpoint.limits().handshake_timeout;
    let conn = match superpeer_common::accept(incoming, handshake_timeout).await {
        Ok(conn) => conn,
        Err(e) => return debug!("handshake failed: {e}"),
    };
    if !ticket.established() {
        debug!(peer = %conn.peer().short(), "too many connections from this address");
        return conn.close(CloseCode::Refused, "too many connections from this address");
    }
    let (mut session, hello) = match conn.accept_session().await {
        Ok(pair) => pair,
        Err(e) => return debug!(peer = %conn.peer().short(), "bad hello: {e}"),
    };
    let Serving {
        events,
        load,
        transfer,
        receive_window,
        ..
    } = serving.clone();
    let peer = conn.peer();
    match (hello.intent, hello.role) {
        (Intent::Probe, _) => {
            let result = answer_probe_seeing(
                &mut session,
                Role::Supernode,
                || Some(*load.borrow()),
                Some(conn.remote_addr()),
            )
            .await;
            finish(&conn, &mut session, result);
        }
        (Intent::Rendezvous, _) => {
            traversal::serve_rendezvous(conn, session, serving.traversal.clone()).await;
        }
        (Intent::RelayLeg, Role::Leaf) => {
            traversal::serve_relay_leg(conn, session, serving.traversal.clone()).await;
        }
        (Intent::Attach, _) => {
            let observed = conn.remote_addr();
            let addr = holder_address(&serving, &conn, hello.advertise).await;
            // Provisional until the check below: a leaf listening where we see it is
            // taken to be reachable, any other is reached through us.
            let proven = addr != observed;
            let reachable = proven || hello.advertise == Some(observed);
            let (outbox, frames) = mpsc::channel(OUTBOX_FRAMES);
            let outbox_for_traversal = outbox.clone();
            let (reply_tx, reply_rx) = oneshot::channel();
            let attach = Event::Attach {
                node_id: peer,
                addr,
                conn: conn.clone(),
                outbox,
                reply: reply_tx,
            };
            if events.send(attach).await.is_err() {
                return;
            }
            let Ok((session_id, reply)) = reply_rx.await else {
                return;
            };
            let admitted = matches!(reply, HelloReply::Welcome { .. });
            if admitted {
                // Publishes come in frames of up to 1 MiB.
                conn.admit(receive_window);
                session.admitted();
                let via = (!reachable).then_some(serving.me);
                let _ = events.send(Event::LeafReachability(session_id, via)).await;
                serving.traversal.attached(
                    peer,
                    session_id,
                    outbox_for_traversal.clone(),
                    observed,
                );
                tokio::spawn(check_reachability(
                    serving.clone(),
                    peer,
                    session_id,
                    outbox_for_traversal.clone(),
                    Observed {
                        addr: observed,
                        reachable,
                    },
                    !proven,
                ));
            }
            if session.reply(&reply).await.is_err() || !admitted {
                refuse(&conn, &mut session).await;
                if admitted {
                    let _ = events.send(Event::Gone(session_id)).await;
                }
                return;
            }
            drop(outbox_for_traversal);
            pump::<LeafToSupernode>(conn, session, session_id, frames, events, Event::FromLeaf)
                .await;
            serving.traversal.detached(peer, session_id);
        }
        (Intent::Link | Intent::Directory, Role::Supernode) => {
            let (outbox, frames) = mpsc::channel(OUTBOX_FRAMES);
            let (reply_tx, reply_rx) = oneshot::channel();
            // The address its handshake came from (QUIC validated it): a dial-back goes
            // there, never to an address it merely claims.
            let link = if hello.intent == Intent::Link {
                Event::LinkUp {
                    node_id: peer,
                    initiator: peer,
                    addr: Some(conn.remote_addr()),
                    conn: conn.clone(),
                    outbox,
                    reply: reply_tx,
                }
            } else {
                Event::DirectUp {
                    node_id: peer,
                    outgoing: false,
                    conn: conn.clone(),
                    outbox,
                    reply: reply_tx,
                }
            };
            if events.send(link).await.is_err() {
                return;
            }
            match reply_rx.await {
                Ok(Some(session_id)) => {
                    conn.admit(receive_window);
                    session.admitted();
                    if session
                        .reply(&HelloReply::Welcome {
                            role: Role::Supernode,
                        })
                        .await
                        .is_err()
                    {
                        let _ = events.send(Event::Gone(session_id)).await;
                        return;
                    }
                    pump::<SupernodeToSupernode>(
                        conn,
                        session,
                        session_id,
                        frames,
                        events,
                        Event::FromNeighbor,
                    )
                    .await;
                }
                _ => {
                    let refusal = HelloReply::Refused {
                        reason: "link not wanted".into(),
                        try_instead: Vec::new(),
                    };
                    let _ = session.reply(&refusal).await;
                    refuse(&conn, &mut session).await;
                }
            }
        }
        (Intent::Transfer | Intent::Push, _) if transfer.is_some() => {
            if let Some(serve) = transfer {
                serve(conn, session, hello.intent).await;
            }
        }
        (intent, role) => {
            let reason = format!("a supernode does not serve {intent:?} from a {role}");
            let _ = session
                .reply(&HelloReply::Refused {
                    reason,
                    try_instead: Vec::new(),
                })
                .await;
            refuse(&conn, &mut session).await;
        }
    }
}

/// The address published as the holder of an attaching leaf's files: the one its
/// connection came from, or the one it advertises once a dial-back reached the same node
/// there (port forwarding, a proxy). Never a bare claim: a leaf naming someone else's
/// address would send every downloader of its files there.
async fn holder_address(
    serving: &Serving,
    conn: &Connection,
    advertised: Option<SocketAddr>,
) -> SocketAddr {
    let observed = conn.remote_addr();
    let claimable = |a: &SocketAddr| {
        *a != observed && dialable(*a) && (local_only(observed) || !local_only(*a))
    };
    let Some(claimed) = advertised.filter(claimable) else {
        return observed;
    };
    let Ok(_slot) = serving.dial_backs.try_acquire() else {
        debug!(%claimed, "too many dial-backs under way; using the observed address");
        return observed;
    };
    if answers_at(&serving.endpoint, conn.peer(), claimed, DIAL_BACK_TIMEOUT).await {
        claimed
    } else {
        debug!(peer = %conn.peer().short(), %claimed, %observed, "advertised address failed the dial-back");
        observed
    }
}

/// Whether `addr` could be a node's address at all (not worth a dial-back otherwise).
fn dialable(addr: SocketAddr) -> bool {
    let ip = addr.ip();
    addr.port() != 0
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && ip != std::net::Ipv4Addr::BROADCAST
}

/// Whether `addr` is one only its own network can dial (a home's 192.168.x.y, link-local,
/// loopback): a leaf seen from elsewhere that claims one is behind a NAT, and dialling it
/// would reach someone else's host, if anyone.
fn local_only(addr: SocketAddr) -> bool {
    match addr.ip().to_canonical() {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local() || v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local(),
    }
}

/// Finds out whether the attached leaf answers at `observed.addr` when dialled from our
/// *other* socket (its NAT, if any, has only seen our main port), unless an advertised
/// address already proved it (`check` false). Tells the leaf what we found, and the
/// actor whether its hits must name us as the way to reach it.
async fn check_reachability(
    serving: Serving,
    leaf: NodeId,
    session_id: SessionId,
    outbox: Outbox,
    mut observed: Observed,
    check: bool,
) {
    if check
        && let Some(checker) = &serving.checker
        && let Ok(_slot) = serving.dial_backs.clone().try_acquire_owned()
    {
        observed.reachable = answers_at(checker, leaf, observed.addr, DIAL_BACK_TIMEOUT).await;
        let via = (!observed.reachable).then_some(serving.me);
        let _ = serving
            .events
            .send(Event::LeafReachability(session_id, via))
            .await;
    }
    if let Ok(frame) = encode(&SupernodeToLeaf::Reachability(observed)) {
        let _ = outbox.send(frame).await;
    }
}

/// Dials a supernode for a link (`Intent::Link`) or a directory session
/// (`Intent::Directory`) and, if it takes it, serves it until it ends.
pub async fn dial(
    endpoint: Endpoint,
    target: PeerAddr,
    advertise: SocketAddr,
    intent: Intent,
    events: mpsc::Sender<Event>,
) {
    let Some(node_id) = target.node_id else {
        return;
    };
    let me = endpoint.node_id();
    let link = async {
        let conn = endpoint.connect(&target).await.map_err(|e| e.to_string())?;
        let hello = Hello::new(Role::Supernode, intent, Some(advertise));
        let (session, reply) = conn.open_session(&hello).await.map_err(|e| e.to_string())?;
        match reply {
            HelloReply::Welcome {
                role: Role::Supernode,
            } => Ok((conn, session)),
            HelloReply::Welcome { role } => Err(format!("it answered as a {role}")),
            HelloReply::Refused { reason, .. } => Err(reason),
        }
    };
    let (conn, session) = match link.await {
        Ok(pair) => pair,
        Err(reason) => {
            debug!(node = %node_id.short(), addr = %target.addr, ?intent, "dial failed: {reason}");
            let failed = if intent == Intent::Link {
                Event::DialFailed(node_id)
            } else {
                Event::DirectFailed(node_id)
            };
            let _ = events.send(failed).await;
            return;
        }
    };
    let (outbox, frames) = mpsc::channel(OUTBOX_FRAMES);
    let (reply_tx, reply_rx) = oneshot::channel();
    let up = if intent == Intent::Link {
        Event::LinkUp {
            node_id,
            initiator: me,
            addr: Some(target.addr),
            conn: conn.clone(),
            outbox,
            reply: reply_tx,
        }
    } else {
        Event::DirectUp {
            node_id,
            outgoing: true,
            conn: conn.clone(),
            outbox,
            reply: reply_tx,
        }
    };
    if events.send(up).await.is_err() {
        return;
    }
    match reply_rx.await {
        Ok(Some(session_id)) => {
            pump::<SupernodeToSupernode>(
                conn,
                session,
                session_id,
                frames,
                events,
                Event::FromNeighbor,
            )
            .await
        }
        _ => conn.close(CloseCode::Normal, "duplicate link"),
    }
}

/// Moves frames both ways until the session ends, then tells the actor.
async fn pump<M: Message>(
    conn: Connection,
    session: Session,
    session_id: SessionId,
    mut frames: mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<Event>,
    wrap: fn(SessionId, M) -> Event,
) {
    let Session {
        mut reader,
        mut writer,
    } = session;
    let writer_conn = conn.clone();
    let writing = tokio::spawn(async move {
        while let Some(frame) = frames.recv().await {
            if let Err(e) = writer.write_frame(&frame).await {
                debug!("write failed: {e}");
                writer_conn.close_for(&e);
                break;
            }
        }
        let _ = writer.inner_mut().finish();
    });
    loop {
        match reader.recv::<M>().await {
            Ok(Some(msg)) => {
                if events.send(wrap(session_id, msg)).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                if !matches!(e, WireError::PeerClosed { .. } | WireError::Connection(_)) {
                    debug!(peer = %conn.peer().short(), "closing: {e}");
                }
                conn.close_for(&e);
                break;
            }
        }
    }
    let _ = events.send(Event::Gone(session_id)).await;
    writing.abort();
}

fn finish(conn: &Connection, session: &mut Session, result: Result<(), WireError>) {
    match result {
        Ok(()) => {
            let _ = session.writer.inner_mut().finish();
        }
        Err(e) => conn.close_for(&e),
    }
}

/// Lets a refusal reach the peer before the connection closes.
async fn refuse(conn: &Connection, session: &mut Session) {
    conn.finish_and_close(session, CloseCode::Refused, "refused")
        .await;
}
