//! The supernode's driver: an actor that owns the [`SupernodeCore`] and moves messages
//! between it and the network. Connection tasks (`sessions.rs`) send [`Event`]s into one
//! inbox; the actor feeds them to the core, runs its clock, and carries out its actions:
//! frames into session outboxes, closes, dials. It also keeps the supernode registered with
//! its list servers and learns other supernodes from them.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use superpeer_bootstrap_list::{
    MemberSync, MemberUnion, RegistrationStatus, fetch_members, fetch_supernodes, keep_registered,
    unix_ms,
};
use superpeer_common::wire::{
    CloseCode, FileEntry, HelloReply, Holder, Intent, LeafToSupernode, Load, Query, Role,
    SupernodeInfo, SupernodeToLeaf, SupernodeToSupernode, Via, encode,
};
use superpeer_common::{
    Admitted, Connection, ContentId, Endpoint, Gate, GateLimits, Identity, NodeId, PeerAddr,
    Session, TransportError, TransportLimits,
};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::SessionId;
use crate::core::{Action, CoreConfig, CoreStatus, SupernodeCore};
use crate::directory::MemberSet;
use crate::local::LocalSearches;
use crate::relay::{RelayCaps, RelayStats};
use crate::sessions::{self, Outbox};
use crate::traversal::Traversal;

/// How often the list servers are asked during the first [`STARTUP_PERIOD`].
const STARTUP_REFRESH: Duration = Duration::from_secs(2);
/// How long a new supernode keeps asking often (the others may not be listed yet).
const STARTUP_PERIOD: Duration = Duration::from_secs(30);
/// How often the membership is fetched from each list server (changes only, after the
/// first): how far behind the list server a supernode's owners can be.
pub const MEMBERS_INTERVAL: Duration = Duration::from_secs(5);

/// Serves an incoming transfer session (hello read, not yet answered): how a supernode
/// hands downloads of its own shared files to the code that serves files (in the node
/// crate), without this crate knowing about files. The intent is `Transfer`, or `Push`:
/// a firewalled holder dialling us back for one of our own downloads.
pub type TransferService = Arc<
    dyn Fn(Connection, Session, Intent) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// Everything a supernode needs to start.
#[derive(Clone)]
pub struct SupernodeConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Address others dial; defaults to the bound address.
    pub advertise: Option<SocketAddr>,
    /// List servers to register with and learn supernodes from.
    pub list_servers: Vec<PeerAddr>,
    /// Supernodes to link to from the start.
    pub peers: Vec<PeerAddr>,
    /// The decisions' tunables.
    pub core: CoreConfig,
    /// QUIC limits.
    pub limits: TransportLimits,
    /// How often to ask the list servers for supernodes.
    pub refresh_interval: Duration,
    /// Connections served at once, in all and per source address, and when to answer
    /// with a QUIC Retry first.
    pub gate: GateLimits,
    /// Who serves transfer sessions; without one they are refused.
    pub transfer: Option<TransferService>,
    /// The caps on sessions relayed for firewalled leaves.
    pub relay: RelayCaps,
}

impl std::fmt::Debug for SupernodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupernodeConfig")
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("list_servers", &self.list_servers)
            .field("peers", &self.peers)
            .field("core", &self.core)
            .field("limits", &self.limits)
            .field("refresh_interval", &self.refresh_interval)
            .field("gate", &self.gate)
            .field("transfer", &self.transfer.is_some())
            .field("relay", &self.relay)
            .finish()
    }
}

impl SupernodeConfig {
    /// Defaults for a supernode listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            advertise: None,
            list_servers: Vec::new(),
            peers: Vec::new(),
            core: CoreConfig::default(),
            limits: TransportLimits::default(),
            refresh_interval: Duration::from_secs(20),
            gate: GateLimits::SUPERNODE,
            transfer: None,
            relay: RelayCaps::default(),
        }
    }
}

/// Why a supernode could not start.
#[derive(Debug, thiserror::Error)]
pub enum SupernodeError {
    /// The QUIC endpoint could not be set up.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The bound address could not be read.
    #[error("cannot read the local address: {0}")]
    LocalAddr(std::io::Error),
}

/// What `status` reports.
#[derive(Clone, Debug)]
pub struct SupernodeStatus {
    /// Our node id.
    pub node_id: NodeId,
    /// The address we advertise.
    pub advertise: SocketAddr,
    /// Our load.
    pub load: Load,
    /// The core's counters.
    pub core: CoreStatus,
    /// How our registration with each list server stands.
    pub registrations: Vec<(SocketAddr, RegistrationStatus)>,
    /// Sessions relayed for firewalled leaves.
    pub relay: RelayStats,
}

/// What connection tasks and handles tell the actor.
pub enum Event {
    /// A leaf wants to attach; the actor answers with the session id and the hello reply.
    Attach {
        node_id: NodeId,
        addr: SocketAddr,
        conn: Connection,
        outbox: Outbox,
        reply: oneshot::Sender<(SessionId, HelloReply)>,
    },
    /// A link to a supernode is up; the actor answers with a session id if it keeps it.
    LinkUp {
        node_id: NodeId,
        initiator: NodeId,
        addr: Option<SocketAddr>,
        conn: Connection,
        outbox: Outbox,
        reply: oneshot::Sender<Option<SessionId>>,
    },
    /// A directory session with a member is up (`outgoing`: we dialled); the actor answers
    /// with a session id if it keeps it.
    DirectUp {
        node_id: NodeId,
        outgoing: bool,
        conn: Connection,
        outbox: Outbox,
        reply: oneshot::Sender<Option<SessionId>>,
    },
    /// A directory session the core asked for could not be opened.
    DirectFailed(NodeId),
    /// The membership, fetched from the list servers, changed.
    Members {
        members: Arc<MemberSet>,
        joined: Vec<NodeId>,
        left: Vec<NodeId>,
    },
    /// Whether the leaf attached on the session is firewalled (`Some(us)`: reached through
    /// us) or can be dialled.
    LeafReachability(SessionId, Option<Via>),
    /// A leaf's message.
    FromLeaf(SessionId, LeafToSupernode),
    /// A neighbour's message.
    FromNeighbor(SessionId, SupernodeToSupernode),
    /// A session ended.
    Gone(SessionId),
    /// A dial the core asked for failed.
    DialFailed(NodeId),
    /// Supernodes learned from a list server or a `--peer`.
    Learned(Vec<SupernodeInfo>),
    /// Status request.
    Status(oneshot::Sender<SupernodeStatus>),
    /// Our own shares changed.
    Share {
        add: Vec<FileEntry>,
        remove: Vec<ContentId>,
    },
    /// Our own user searches; answers go to `answers` until its `QueryDone`.
    Search {
        query: Query,
        answers: mpsc::Sender<SupernodeToLeaf>,
    },
}

/// A handle to a running supernode.
#[derive(Clone, Debug)]
pub struct SupernodeHandle {
    events: mpsc::Sender<Event>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Event")
    }
}

impl SupernodeHandle {
    /// The supernode's status, or `None` once it has stopped.
    pub async fn status(&self) -> Option<SupernodeStatus> {
        let (tx, rx) = oneshot::channel();
        self.events.send(Event::Status(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Shares files from this supernode itself.
    pub async fn share(&self, add: Vec<FileEntry>, remove: Vec<ContentId>) {
        let _ = self.events.send(Event::Share { add, remove }).await;
    }

    /// Searches the network for our own user, as a leaf's query would: hits and the final
    /// `QueryDone` (or a `Refused` then `QueryDone`) arrive on the returned channel. `None`
    /// once the supernode has stopped.
    pub async fn search(&self, query: Query) -> Option<mpsc::Receiver<SupernodeToLeaf>> {
        let (answers, rx) = mpsc::channel(256);
        self.events
            .send(Event::Search { query, answers })
            .await
            .ok()?;
        Some(rx)
    }
}

struct Live {
    conn: Connection,
    outbox: Outbox,
    is_leaf: bool,
}

/// A bound supernode, ready to [`run`](Supernode::run).
pub struct Supernode {
    endpoint: Endpoint,
    /// Whether the endpoint is ours to shut down (not when a promoted leaf lends it).
    owns_endpoint: bool,
    advertise: SocketAddr,
    config: SupernodeConfig,
    events_tx: mpsc::Sender<Event>,
    events_rx: mpsc::Receiver<Event>,
}

impl Supernode {
    /// Binds the socket.
    pub fn bind(identity: Arc<Identity>, config: SupernodeConfig) -> Result<Self, SupernodeError> {
        let endpoint = Endpoint::bind(identity, config.listen, config.limits.clone())?;
        let bound = endpoint.local_addr().map_err(SupernodeError::LocalAddr)?;
        let advertise = config.advertise.unwrap_or(bound);
        let (events_tx, events_rx) = mpsc::channel(4096);
        Ok(Self {
            endpoint,
            owns_endpoint: true,
            advertise,
            config,
            events_tx,
            events_rx,
        })
    }

    /// A supernode on an endpoint that is already bound (a leaf being promoted keeps its
    /// address and identity). The caller must have stopped accepting on it: this supernode
    /// accepts every incoming connection while it runs, and leaves the endpoint open when
    /// it stops, so its owner can go on (as a leaf again).
    pub fn on_endpoint(
        endpoint: Endpoint,
        config: SupernodeConfig,
    ) -> Result<Self, SupernodeError> {
        let bound = endpoint.local_addr().map_err(SupernodeError::LocalAddr)?;
        let advertise = config.advertise.unwrap_or(bound);
        let (events_tx, events_rx) = mpsc::channel(4096);
        Ok(Self {
            endpoint,
            owns_endpoint: false,
            advertise,
            config,
            events_tx,
            events_rx,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, SupernodeError> {
        self.endpoint
            .local_addr()
            .map_err(SupernodeError::LocalAddr)
    }

    /// The address others dial.
    pub fn advertise(&self) -> SocketAddr {
        self.advertise
    }

    /// Our node id.
    pub fn node_id(&self) -> NodeId {
        self.endpoint.node_id()
    }

    /// A handle for status and shares.
    pub fn handle(&self) -> SupernodeHandle {
        SupernodeHandle {
            events: self.events_tx.clone(),
        }
    }

    /// Serves until `shutdown` completes; then tells leaves where to go, unregisters, and
    /// closes every connection.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Supernode {
            endpoint,
            owns_endpoint,
            advertise,
            config,
            events_tx,
            mut events_rx,
        } = self;
        let me = Holder {
            node_id: endpoint.node_id(),
            addr: advertise,
            via: None,
        };
        let mut core = SupernodeCore::new(Instant::now(), me, config.core.clone(), rand::random());
        let (load_tx, load_rx) = watch::channel(core.load());
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut registrations = Vec::new();
        for server in &config.list_servers {
            let (status_tx, status_rx) = watch::channel(RegistrationStatus::Connecting);
            registrations.push((server.addr, status_rx));
            tokio::spawn(keep_registered(
                endpoint.clone(),
                *server,
                advertise,
                load_rx.clone(),
                status_tx,
                stop_rx.clone(),
            ));
        }
        tokio::spawn(learn_peers(
            endpoint.clone(),
            config.peers.clone(),
            events_tx.clone(),
        ));
        if !config.list_servers.is_empty() {
            tokio::spawn(follow_members(
                endpoint.clone(),
                config.list_servers.clone(),
                events_tx.clone(),
                stop_rx.clone(),
            ));
        }
        let gate = Gate::new(config.gate);
        let traversal = Traversal::new(config.relay.clone());
        let serving = sessions::Serving {
            endpoint: endpoint.clone(),
            events: events_tx.clone(),
            load: load_rx.clone(),
            transfer: config.transfer.clone(),
            receive_window: config.limits.receive_window,
            dial_backs: Arc::new(Semaphore::new(sessions::MAX_DIAL_BACKS)),
            checker: Endpoint::client(
                endpoint.identity().clone(),
                advertise,
                config.limits.clone(),
            )
            .map_err(|e| warn!("no second socket for reachability checks: {e}"))
            .ok(),
            me: Via {
                node_id: endpoint.node_id(),
                addr: advertise,
            },
            traversal: traversal.clone(),
        };
        let mut sessions: HashMap<SessionId, Live> = HashMap::new();
        let mut local_searches = LocalSearches::default();
        // Real sessions are numbered from 1: 0 is `SessionId::LOCAL`.
        let mut next_session = 0u64;
        // Ask the list servers often while the mesh forms, then at the configured pace.
        let started = Instant::now();
        let mut refresh = tokio::time::interval(config.refresh_interval.min(STARTUP_REFRESH));
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        info!(node_id = %me.node_id, %advertise, "supernode running");
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                incoming = endpoint.incoming() => {
                    let Some(incoming) = incoming else { break };
                    let source = incoming.remote_address();
                    let (ticket, incoming) = match gate.admit(incoming) {
                        Admitted::Serve(ticket, incoming) => (ticket, *incoming),
                        Admitted::Retried => continue,
                        Admitted::Refused(why) => {
                            debug!(%source, "refusing a connection: {why}");
                            continue;
                        }
                    };
                    tokio::spawn(
                        sessions::serve_incoming(incoming, ticket, serving.clone())
                            .instrument(info_span!("conn", %source)),
                    );
                }
                Some(event) = events_rx.recv() => {
                    let now = Instant::now();
                    match event {
                        Event::Search { query, answers } => {
                            local_searches.start(query.id, answers);
                            core.local_query(now, query);
                        }
                        event => handle_event(&mut core, &mut sessions, &mut next_session, (&registrations, &traversal), advertise, now, event),
                    }
                }
                _ = tick.tick() => core.handle_timeout(Instant::now(), unix_ms()),
                _ = refresh.tick() => {
                    for server in &config.list_servers {
                        tokio::spawn(fetch_into(endpoint.clone(), *server, events_tx.clone()));
                    }
                    if started.elapsed() > STARTUP_PERIOD && refresh.period() < config.refresh_interval {
                        refresh = tokio::time::interval_at(
                            tokio::time::Instant::now() + config.refresh_interval,
                            config.refresh_interval,
                        );
                    }
                }
            }
            carry_out(
                &mut core,
                &mut sessions,
                &mut local_searches,
                &endpoint,
                advertise,
                &events_tx,
            );
            load_tx.send_if_modified(|load| {
                let now = core.load();
                std::mem::replace(load, now) != now
            });
        }
        info!("supernode shutting down");
        // Leaves move at once instead of waiting for a timeout.
        let move_to = SupernodeToLeaf::MoveTo {
            supernodes: core.supernode_list(10).supernodes,
        };
        if let Ok(frame) = encode(&move_to) {
            for live in sessions.values().filter(|l| l.is_leaf) {
                let _ = live.outbox.try_send(frame.clone());
            }
        }
        let _ = stop_tx.send(true);
        tokio::time::sleep(Duration::from_millis(200)).await;
        if owns_endpoint {
            endpoint.shutdown().await;
        } else {
            // The endpoint lives on (a leaf again): close what was ours on it.
            for live in sessions.values() {
                live.conn.close(CloseCode::Normal, "stepping down");
            }
        }
    }
}

fn handle_event(
    core: &mut SupernodeCore,
    sessions: &mut HashMap<SessionId, Live>,
    next_session: &mut u64,
    registrations: (
        &[(SocketAddr, watch::Receiver<RegistrationStatus>)],
        &Traversal,
    ),
    advertise: SocketAddr,
    now: Instant,
    event: Event,
) {
    let mut new_session = |conn: Connection,
                           outbox: Outbox,
                           is_leaf: bool,
                           sessions: &mut HashMap<SessionId, Live>| {
        *next_session += 1;
        let id = SessionId(*next_session);
        sessions.insert(
            id,
            Live {
                conn,
                outbox,
                is_leaf,
            },
        );
        id
    };
    match event {
        Event::Attach {
            node_id,
            addr,
            conn,
            outbox,
            reply,
        } => {
            let session = new_session(conn, outbox, true, sessions);
            let answer = core.leaf_attach(now, session, node_id, addr);
            if !matches!(answer, HelloReply::Welcome { .. }) {
                sessions.remove(&session);
            } else {
                info!(leaf = %node_id.short(), %addr, "leaf attached");
            }
            let _ = reply.send((session, answer));
        }
        Event::LinkUp {
            node_id,
            initiator,
            addr,
            conn,
            outbox,
            reply,
        } => {
            let session = new_session(conn, outbox, false, sessions);
            if core.link_up(now, session, node_id, initiator, addr) {
                debug!(neighbor = %node_id.short(), "link up");
                let _ = reply.send(Some(session));
            } else {
                sessions.remove(&session);
                let _ = reply.send(None);
            }
        }
        Event::DirectUp {
            node_id,
            outgoing,
            conn,
            outbox,
            reply,
        } => {
            let session = new_session(conn, outbox, false, sessions);
            if core.direct_up(now, session, node_id, outgoing) {
                let _ = reply.send(Some(session));
            } else {
                sessions.remove(&session);
                let _ = reply.send(None);
            }
        }
        Event::DirectFailed(node_id) => core.direct_failed(now, node_id),
        Event::Members {
            members,
            joined,
            left,
        } => core.members_changed(now, members, &joined, &left),
        Event::LeafReachability(session, via) => core.leaf_reachability(session, via),
        Event::FromLeaf(session, msg) => core.leaf_message(now, session, msg),
        Event::FromNeighbor(session, msg) => core.neighbor_message(now, session, msg),
        Event::Gone(session) => {
            if let Some(live) = sessions.remove(&session) {
                if live.is_leaf {
                    core.leaf_gone(now, session);
                } else {
                    core.link_down(now, session);
                }
            }
        }
        Event::DialFailed(node_id) => core.dial_failed(now, node_id),
        Event::Learned(infos) => core.learn(now, &infos),
        Event::Status(reply) => {
            let status = SupernodeStatus {
                node_id: core.me().node_id,
                advertise,
                load: core.load(),
                core: core.status(),
                registrations: registrations
                    .0
                    .iter()
                    .map(|(addr, rx)| (*addr, rx.borrow().clone()))
                    .collect(),
                relay: registrations.1.relay_stats(),
            };
            let _ = reply.send(status);
        }
        Event::Share { add, remove } => {
            core.unpublish_own(&remove);
            if let Err(e) = core.publish_own(&add) {
                warn!("cannot index our own shares: {e}");
            }
        }
        // Taken by the run loop before this is called.
        Event::Search { .. } => {}
    }
}

/// Carries out the core's actions.
fn carry_out(
    core: &mut SupernodeCore,
    sessions: &mut HashMap<SessionId, Live>,
    local_searches: &mut LocalSearches,
    endpoint: &Endpoint,
    advertise: SocketAddr,
    events: &mpsc::Sender<Event>,
) {
    while let Some(action) = core.poll_action() {
        let (session, frame) = match action {
            Action::ToLeaf(SessionId::LOCAL, msg) => {
                local_searches.deliver(msg);
                continue;
            }
            Action::ToLeaf(session, msg) => (session, encode(&msg)),
            Action::ToNeighbor(session, msg) => (session, encode(&msg)),
            Action::Close {
                session,
                code,
                reason,
            } => {
                if let Some(live) = sessions.get(&session) {
                    live.conn.close(code, &reason);
                }
                continue;
            }
            Action::Dial { node_id, addr } | Action::Connect { node_id, addr } => {
                let intent = if matches!(action, Action::Dial { .. }) {
                    Intent::Link
                } else {
                    Intent::Directory
                };
                let target = PeerAddr::pinned(node_id, addr);
                tokio::spawn(sessions::dial(
                    endpoint.clone(),
                    target,
                    advertise,
                    intent,
                    events.clone(),
                ));
                continue;
            }
        };
        let Some(live) = sessions.get(&session) else {
            continue;
        };
        match frame {
            Ok(frame) => {
                if live.outbox.try_send(frame).is_err() {
                    // It does not read fast enough (or is gone): drop it rather than queue
                    // without bound.
                    live.conn
                        .close(CloseCode::Overloaded, "not reading fast enough");
                }
            }
            Err(e) => warn!("cannot encode a message: {e}"),
        }
    }
}

/// Asks a list server for supernodes and passes them to the actor.
async fn fetch_into(endpoint: Endpoint, server: PeerAddr, events: mpsc::Sender<Event>) {
    match fetch_supernodes(&endpoint, &server, Role::Supernode, 100).await {
        Ok(list) => {
            let _ = events.send(Event::Learned(list.supernodes)).await;
        }
        Err(e) => debug!(list_server = %server.addr, "cannot fetch supernodes: {e}"),
    }
}

/// Keeps the membership (every listed supernode) mirrored from every list server: the
/// changes since the last fetch, every [`MEMBERS_INTERVAL`] (every 2 s while starting),
/// merged over the servers and passed to the actor when something changed.
async fn follow_members(
    endpoint: Endpoint,
    servers: Vec<PeerAddr>,
    events: mpsc::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let mut mirrors: Vec<MemberSync> = servers.iter().map(|_| MemberSync::new()).collect();
    let mut union = MemberUnion::new();
    let started = Instant::now();
    loop {
        for (server, mirror) in servers.iter().zip(mirrors.iter_mut()) {
            if let Err(e) = fetch_members(&endpoint, server, mirror).await {
                debug!(list_server = %server.addr, "cannot fetch the membership: {e}");
            }
        }
        let delta = union.update(mirrors.iter());
        if !delta.is_empty() {
            let members = Arc::new(MemberSet::new(
                union.members().iter().map(|(id, addr)| (*id, *addr)),
            ));
            let event = Event::Members {
                members,
                joined: delta.joined.iter().map(|(id, _)| *id).collect(),
                left: delta.left,
            };
            if events.send(event).await.is_err() {
                return;
            }
        }
        let wait = if started.elapsed() < STARTUP_PERIOD {
            STARTUP_REFRESH
        } else {
            MEMBERS_INTERVAL
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Turns `--peer` addresses into known supernodes (learning ids of unpinned ones).
async fn learn_peers(endpoint: Endpoint, peers: Vec<PeerAddr>, events: mpsc::Sender<Event>) {
    let infos = identify_peers(&endpoint, &peers)
        .await
        .into_iter()
        .filter_map(|peer| {
            Some(SupernodeInfo {
                node_id: peer.node_id?,
                addr: peer.addr,
                load: Load::default(),
                stale: false,
            })
        })
        .collect();
    let _ = events.send(Event::Learned(infos)).await;
}

/// `--peer` addresses with their node ids: pinned ones as given, the others asked for
/// theirs in a handshake. A peer that does not answer is left out with a warning.
pub async fn identify_peers(endpoint: &Endpoint, peers: &[PeerAddr]) -> Vec<PeerAddr> {
    let mut pinned = Vec::new();
    for peer in peers {
        let node_id = match peer.node_id {
            Some(id) => Some(id),
            None => endpoint.identify(peer.addr).await,
        };
        match node_id {
            Some(node_id) => pinned.push(PeerAddr::pinned(node_id, peer.addr)),
            None => warn!(peer = %peer.addr, "no supernode answers at this --peer address"),
        }
    }
    pinned
}
