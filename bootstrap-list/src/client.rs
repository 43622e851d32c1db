//! The client side of the list server: asking for supernodes, keeping a supernode
//! registered (register, then heartbeat at the pace the server asks, reconnecting with
//! backoff when the server goes away), and bringing a supernode's mirror of the membership
//! up to date.

use std::net::SocketAddr;
use std::time::Duration;

use superpeer_common::wire::{
    CloseCode, Hello, HelloReply, Intent, ListServerToNode, Load, Role, SupernodeList,
    ToListServer, WireError,
};
use superpeer_common::{ConnectError, Endpoint, PeerAddr, Session};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::members::MemberSync;

/// Why a request to a list server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection (nobody answers, wrong node id, handshake failure).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The conversation broke (bad or missing answer, connection lost).
    #[error("list server {addr}: {source}")]
    Wire { addr: SocketAddr, source: WireError },
    /// The list server said no.
    #[error("list server {addr} refused: {reason}")]
    Refused { addr: SocketAddr, reason: String },
}

async fn open(
    endpoint: &Endpoint,
    server: &PeerAddr,
    role: Role,
) -> Result<(superpeer_common::Connection, Session), ClientError> {
    let addr = server.addr;
    let conn = endpoint.connect(server).await?;
    let hello = Hello::new(role, Intent::Registry, None);
    let (session, reply) = conn
        .open_session(&hello)
        .await
        .map_err(|source| ClientError::Wire { addr, source })?;
    match reply {
        HelloReply::Welcome {
            role: Role::ListServer,
        } => Ok((conn, session)),
        HelloReply::Welcome { role } => {
            conn.close(CloseCode::Normal, "not a list server");
            Err(ClientError::Refused {
                addr,
                reason: format!("that node is a {role}, not a list server"),
            })
        }
        HelloReply::Refused { reason, .. } => Err(ClientError::Refused { addr, reason }),
    }
}

/// Asks the list server at `server` for up to `max` supernodes.
pub async fn fetch_supernodes(
    endpoint: &Endpoint,
    server: &PeerAddr,
    role: Role,
    max: u16,
) -> Result<SupernodeList, ClientError> {
    let addr = server.addr;
    tokio::time::timeout(REQUEST_TIMEOUT, fetch_inner(endpoint, server, role, max))
        .await
        .map_err(|_| ClientError::Wire {
            addr,
            source: WireError::TimedOut("the list server's answer"),
        })?
}

async fn fetch_inner(
    endpoint: &Endpoint,
    server: &PeerAddr,
    role: Role,
    max: u16,
) -> Result<SupernodeList, ClientError> {
    let addr = server.addr;
    let (conn, mut session) = open(endpoint, server, role).await?;
    let wire = |source| ClientError::Wire { addr, source };
    session
        .writer
        .send(&ToListServer::GetSupernodes { max })
        .await
        .map_err(wire)?;
    let reply = session
        .reader
        .recv_required::<ListServerToNode>()
        .await
        .map_err(wire)?;
    let _ = session.writer.inner_mut().finish();
    conn.close(CloseCode::Normal, "done");
    match reply {
        ListServerToNode::Supernodes(list) => {
            list.validate().map_err(wire)?;
            Ok(list)
        }
        ListServerToNode::Refused { reason } => Err(ClientError::Refused { addr, reason }),
        ListServerToNode::Registered { .. } | ListServerToNode::Members(_) => Err(wire(
            WireError::Unexpected("not a list in answer to GetSupernodes"),
        )),
    }
}

/// Most member pages one [`fetch_members`] asks for: 128,000 members, past any snapshot we
/// mirror, while a server that always says "more" cannot keep us busy forever.
const MAX_MEMBER_PAGES_PER_FETCH: usize = 64;

/// Brings `sync` up to date with the list server at `server`: asks for member pages on one
/// connection, as a supernode, until there is no more (or [`MAX_MEMBER_PAGES_PER_FETCH`];
/// the next call goes on from there). Pages taken before an error stay applied.
pub async fn fetch_members(
    endpoint: &Endpoint,
    server: &PeerAddr,
    sync: &mut MemberSync,
) -> Result<(), ClientError> {
    let addr = server.addr;
    let wire = |source| ClientError::Wire { addr, source };
    let timed_out = || wire(WireError::TimedOut("the list server's answer"));
    let (conn, mut session) =
        tokio::time::timeout(REQUEST_TIMEOUT, open(endpoint, server, Role::Supernode))
            .await
            .map_err(|_| timed_out())??;
    let result = async {
        for _ in 0..MAX_MEMBER_PAGES_PER_FETCH {
            session.writer.send(&sync.request()).await.map_err(wire)?;
            let reply = tokio::time::timeout(
                REQUEST_TIMEOUT,
                session.reader.recv_required::<ListServerToNode>(),
            )
            .await
            .map_err(|_| timed_out())?
            .map_err(wire)?;
            let more = match reply {
                ListServerToNode::Members(page) => sync.apply(page).map_err(wire)?,
                ListServerToNode::Refused { reason } => {
                    return Err(ClientError::Refused { addr, reason });
                }
                ListServerToNode::Registered { .. } | ListServerToNode::Supernodes(_) => {
                    return Err(wire(WireError::Unexpected(
                        "not a member page in answer to GetMembers",
                    )));
                }
            };
            if !more {
                break;
            }
        }
        Ok(())
    }
    .await;
    match &result {
        Err(ClientError::Wire { source, .. }) => conn.close_for(source),
        _ => {
            let _ = session.writer.inner_mut().finish();
            conn.close(CloseCode::Normal, "done");
        }
    }
    result
}

/// How a supernode's registration stands, as [`keep_registered`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrationStatus {
    /// Not yet connected, or reconnecting.
    Connecting,
    /// Registered; `listed` once the dial-back confirmed our address.
    Registered { listed: bool },
    /// The list server answered and refused us (the reason says why: most often its
    /// dial-back could not reach our advertised address); we keep trying.
    Refused(String),
    /// The list server could not be reached, or the conversation broke (it is down,
    /// restarting, or the path to it is lost). Says nothing about us: we keep trying.
    Unreachable(String),
}

impl RegistrationStatus {
    /// How a failed registration session reads: refused only when the server said so.
    fn from_error(e: &ClientError) -> Self {
        match e {
            ClientError::Refused { .. } => RegistrationStatus::Refused(e.to_string()),
            ClientError::Connect(_) | ClientError::Wire { .. } => {
                RegistrationStatus::Unreachable(e.to_string())
            }
        }
    }
}

/// Keeps this supernode registered with `server` until `shutdown` fires, then unregisters.
/// `load` is read at every heartbeat; `status` reports how it stands.
pub async fn keep_registered(
    endpoint: Endpoint,
    server: PeerAddr,
    advertise: SocketAddr,
    load: watch::Receiver<Load>,
    status: watch::Sender<RegistrationStatus>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(250);
    // The heartbeat interval the server asked for: a restarted server hears from us again
    // within one, as it would from a live supernode, so its list is right within its expiry.
    let mut heartbeat = None;
    loop {
        let _ = status.send(RegistrationStatus::Connecting);
        let session = registration_session(
            &endpoint,
            &server,
            advertise,
            &load,
            &status,
            &mut shutdown,
            &mut heartbeat,
        );
        match session.await {
            Ok(()) => return,
            Err(e) => {
                if matches!(*status.borrow(), RegistrationStatus::Registered { .. }) {
                    // It worked until now: reconnect quickly, not at the last backoff.
                    backoff = Duration::from_millis(250);
                }
                warn!(list_server = %server.addr, "registration: {e}; retrying in {backoff:?}");
                let _ = status.send(RegistrationStatus::from_error(&e));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            () = stopped(&mut shutdown) => return,
        }
        let longest = heartbeat.unwrap_or(Duration::from_secs(5));
        backoff = (backoff * 2).min(longest).max(Duration::from_millis(250));
    }
}

/// One connection's worth of registration; `Ok` only after a clean unregister on shutdown.
async fn registration_session(
    endpoint: &Endpoint,
    server: &PeerAddr,
    advertise: SocketAddr,
    load: &watch::Receiver<Load>,
    status: &watch::Sender<RegistrationStatus>,
    shutdown: &mut watch::Receiver<bool>,
    heartbeat: &mut Option<Duration>,
) -> Result<(), ClientError> {
    let addr = server.addr;
    let wire = |source| ClientError::Wire { addr, source };
    let (conn, mut session) = open(endpoint, server, Role::Supernode).await?;
    let current = *load.borrow();
    session
        .writer
        .send(&ToListServer::Register {
            advertise,
            load: current,
        })
        .await
        .map_err(wire)?;
    let mut interval = Duration::from_secs(5);
    // A registration may wait for a dial-back; a heartbeat's answer comes at once, and a
    // server that does not give it (killed, restarted) is dropped before the transport's
    // idle timeout would notice, so we register again with its successor quickly.
    let mut reply_timeout = REQUEST_TIMEOUT;
    loop {
        let reply = tokio::time::timeout(
            reply_timeout,
            session.reader.recv_required::<ListServerToNode>(),
        )
        .await
        .map_err(|_| wire(WireError::TimedOut("the list server's answer")))?;
        // Set when the server did not take us: the next message registers again.
        let register_again;
        match reply.map_err(wire)? {
            ListServerToNode::Registered {
                heartbeat_interval_ms,
                listed,
            } => {
                interval =
                    Duration::from_millis(u64::from(heartbeat_interval_ms.clamp(100, 60_000)));
                *heartbeat = Some(interval);
                register_again = !listed;
                if status.send_replace(RegistrationStatus::Registered { listed })
                    != (RegistrationStatus::Registered { listed })
                {
                    info!(list_server = %addr, listed, "registration");
                }
            }
            ListServerToNode::Refused { reason } => {
                debug!(list_server = %addr, "refused: {reason}");
                register_again = true;
                let _ = status.send(RegistrationStatus::Refused(reason));
            }
            ListServerToNode::Supernodes(_) | ListServerToNode::Members(_) => {
                return Err(wire(WireError::Unexpected("a list without asking")));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            () = stopped(shutdown) => {
                let _ = session.writer.send(&ToListServer::Unregister).await;
                conn.finish_and_close(&mut session, CloseCode::Normal, "unregistered").await;
                return Ok(());
            }
        }
        let current = *load.borrow();
        let next = if register_again {
            reply_timeout = REQUEST_TIMEOUT;
            ToListServer::Register {
                advertise,
                load: current,
            }
        } else {
            reply_timeout = (interval * 2)
                .max(Duration::from_secs(1))
                .min(REQUEST_TIMEOUT);
            ToListServer::Heartbeat { load: current }
        };
        session.writer.send(&next).await.map_err(wire)?;
    }
}

/// How long one request to a list server may take (a dial-back included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Completes once `shutdown` says stop, or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // Map the borrow guard away at once: it must not live across an await.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}
