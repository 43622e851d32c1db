//! The list server's driver: QUIC connections in, registry decisions out.
//!
//! The [`Registry`] decides; this file only moves messages between connections and it,
//! performs the dial-backs it asks for, runs its clock, and saves it to disk. Per
//! connection (after the hello, intent [`Intent::Registry`]):
//!
//! 1. `Register` (supernodes only) → registry → maybe a dial-back (pinned connect to the
//!    advertised address + probe) → `Registered { listed }` or `Refused`.
//! 2. `Heartbeat` → `Registered { listed }`; a node the registry forgot is registered again
//!    from the address it gave on this connection.
//! 3. `GetSupernodes` → `Supernodes(list)`.
//! 4. `Unregister` → dropped from the list at once.
//! 5. `GetMembers` (supernodes only) → `Members(page)`: the membership changes since a
//!    version, or a snapshot page; a supernode pages through a snapshot on one connection.
//!
//! Limits: concurrent connections, new connections per source address, registrations,
//! list and membership requests per source address, messages per connection.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use superpeer_common::wire::{
    CloseCode, HelloReply, Intent, ListServerToNode, MAX_MEMBERS_PER_PAGE, MAX_SUPERNODES_PER_LIST,
    Role, SupernodeList, ToListServer, WireError,
};
use superpeer_common::{
    Connection, Endpoint, Identity, NodeId, PeerAddr, TokenBucket, TransportError, TransportLimits,
};
use tokio::sync::{Semaphore, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::persist::{self, PersistError, unix_ms};
use crate::rate_limit::RateLimiter;
use crate::registry::{RegisterOutcome, Registry, RegistryConfig, SavedEntry};
use crate::stats::{ListServerStats, Message, Refusal};

/// Everything a list server needs to start.
#[derive(Clone, Debug)]
pub struct ListServerConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Where the identity and the saved registry live.
    pub state_dir: PathBuf,
    /// Registry tunables (heartbeat interval, expiry, caps).
    pub registry: RegistryConfig,
    /// QUIC limits.
    pub limits: TransportLimits,
    /// How long a dial-back may take.
    pub dial_back_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Most connections served at once for one source address.
    pub max_connections_per_source: usize,
    /// New connections per source address: (per second, burst).
    pub connect_rate: (f64, u32),
    /// Registrations per source address: (per second, burst).
    pub register_rate: (f64, u32),
    /// List requests per source address: (per second, burst).
    pub list_rate: (f64, u32),
    /// Membership requests per source address: (per second, burst). A supernode polls
    /// every few seconds and pages through a large snapshot back to back (10,000 members
    /// are 5 pages); an address may hold a few supernodes.
    pub members_rate: (f64, u32),
    /// Messages per connection: (per second, burst). Past it the connection is closed.
    pub message_rate: (f64, u32),
    /// Most source addresses tracked by each rate limiter.
    pub max_sources: usize,
}

impl ListServerConfig {
    /// Defaults for a list server on `listen` keeping its state in `state_dir`.
    pub fn new(listen: SocketAddr, state_dir: PathBuf) -> Self {
        Self {
            listen,
            state_dir,
            registry: RegistryConfig::default(),
            limits: TransportLimits::default(),
            dial_back_timeout: Duration::from_secs(3),
            max_connections: 4096,
            max_connections_per_source: 64,
            connect_rate: (5.0, 30),
            register_rate: (2.0, 20),
            list_rate: (10.0, 50),
            members_rate: (5.0, 20),
            message_rate: (20.0, 100),
            max_sources: 65_536,
        }
    }
}

/// Why the list server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ListServerError {
    /// The identity key could not be loaded or created.
    #[error(transparent)]
    Identity(#[from] superpeer_common::IdentityError),
    /// The QUIC endpoint could not be set up.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The saved registry could not be read or written.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The local address could not be read.
    #[error("cannot read the local address: {0}")]
    LocalAddr(std::io::Error),
}

struct Shared {
    config: ListServerConfig,
    endpoint: Endpoint,
    registry: Mutex<Registry>,
    register_limiter: Mutex<RateLimiter>,
    list_limiter: Mutex<RateLimiter>,
    members_limiter: Mutex<RateLimiter>,
    connect_limiter: Mutex<RateLimiter>,
    connections_per_source: Mutex<HashMap<IpAddr, usize>>,
    rng: Mutex<StdRng>,
    stats: Arc<ListServerStats>,
}

/// Locks a mutex; a panic elsewhere while holding it must not take the server down.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A bound list server, ready to [`run`](ListServer::run).
pub struct ListServer {
    shared: Arc<Shared>,
}

impl ListServer {
    /// Loads the identity and the saved registry from the state dir and binds the socket.
    /// A corrupt saved registry is moved aside and logged; the server starts empty.
    pub fn bind(config: ListServerConfig) -> Result<Self, ListServerError> {
        let identity = Arc::new(Identity::load_or_create(&config.state_dir)?);
        let endpoint = Endpoint::bind(identity, config.listen, config.limits.clone())?;
        let mut registry = Registry::new(config.registry.clone());
        match persist::load(&config.state_dir) {
            Ok(saved) => {
                if !saved.is_empty() {
                    info!(
                        entries = saved.len(),
                        "serving last-known supernodes as stale until they register again"
                    );
                }
                registry.restore(Instant::now(), saved);
            }
            Err(e @ PersistError::Corrupt { .. }) => warn!("{e}"),
            Err(e) => return Err(e.into()),
        }
        let limiter = |(rate, burst): (f64, u32)| {
            Mutex::new(RateLimiter::new(rate, burst, config.max_sources))
        };
        let shared = Arc::new(Shared {
            registry: Mutex::new(registry),
            register_limiter: limiter(config.register_rate),
            list_limiter: limiter(config.list_rate),
            members_limiter: limiter(config.members_rate),
            connect_limiter: limiter(config.connect_rate),
            connections_per_source: Mutex::new(HashMap::new()),
            rng: Mutex::new(StdRng::from_os_rng()),
            stats: Arc::default(),
            endpoint,
            config,
        });
        Ok(Self { shared })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, ListServerError> {
        self.shared
            .endpoint
            .local_addr()
            .map_err(ListServerError::LocalAddr)
    }

    /// This server's node id.
    pub fn node_id(&self) -> NodeId {
        self.shared.endpoint.node_id()
    }

    /// The counters the server bumps as it runs (shared; read them at any time).
    pub fn stats(&self) -> Arc<ListServerStats> {
        self.shared.stats.clone()
    }

    /// A probe of how many supernodes are listed right now, for the metrics endpoint.
    pub fn listed_probe(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || lock(&shared.registry).len()
    }

    /// Serves until `shutdown` completes, then saves the registry and closes connections.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ListServerError> {
        let shared = self.shared;
        let permits = Arc::new(Semaphore::new(shared.config.max_connections));
        let (saver, snapshots) = watch::channel(None);
        let saving = tokio::spawn(run_saver(shared.config.state_dir.clone(), snapshots));
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                incoming = shared.endpoint.incoming() => {
                    let Some(incoming) = incoming else { break };
                    let source = incoming.remote_address();
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        debug!(%source, "refusing connection: at the connection limit");
                        shared.stats.refusal(Refusal::ConnectionLimit);
                        incoming.refuse();
                        continue;
                    };
                    let Some(per_source) = SourceSlot::take(&shared, source.ip()) else {
                        debug!(%source, "refusing connection: too many from this address");
                        shared.stats.refusal(Refusal::PerSourceLimit);
                        incoming.refuse();
                        continue;
                    };
                    if !lock(&shared.connect_limiter).allow(Instant::now(), source.ip()) {
                        debug!(%source, "refusing connection: rate limited");
                        shared.stats.refusal(Refusal::ConnectRate);
                        incoming.refuse();
                        continue;
                    }
                    shared.stats.connection();
                    let shared = shared.clone();
                    tokio::spawn(
                        async move {
                            serve_connection(&shared, incoming).await;
                            drop((permit, per_source));
                        }
                        .instrument(info_span!("conn", %source)),
                    );
                }
                _ = tick.tick() => housekeeping(&shared, &saver),
            }
        }
        info!("shutting down");
        drop(saver);
        let _ = saving.await;
        save(&shared)?;
        shared.endpoint.shutdown().await;
        Ok(())
    }
}

/// Expires silent entries and hands the registry to the saver when it changed.
fn housekeeping(shared: &Shared, saver: &watch::Sender<Option<Vec<SavedEntry>>>) {
    let mut registry = lock(&shared.registry);
    for id in registry.handle_timeout(Instant::now()) {
        info!(node = %id.short(), "supernode expired (missed its heartbeats)");
    }
    if registry.take_dirty() {
        saver.send_replace(Some(registry.snapshot()));
    }
}

/// Writes snapshots to disk off the accept loop, one at a time, newest first: a snapshot
/// that arrives while one is being written replaces any older one still waiting.
async fn run_saver(state_dir: PathBuf, mut snapshots: watch::Receiver<Option<Vec<SavedEntry>>>) {
    while snapshots.changed().await.is_ok() {
        let Some(snapshot) = snapshots.borrow_and_update().clone() else {
            continue;
        };
        let dir = state_dir.clone();
        match tokio::task::spawn_blocking(move || persist::save(&dir, snapshot)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("{e}"),
            Err(e) => warn!("saving the registry failed: {e}"),
        }
    }
}

fn save(shared: &Shared) -> Result<(), PersistError> {
    let snapshot = lock(&shared.registry).snapshot();
    persist::save(&shared.config.state_dir, snapshot)
}

async fn serve_connection(shared: &Shared, incoming: quinn::Incoming) {
    let conn =
        match superpeer_common::accept(incoming, shared.config.limits.handshake_timeout).await {
            Ok(conn) => conn,
            Err(e) => return debug!("handshake failed: {e}"),
        };
    let (mut session, hello) = match conn.accept_session().await {
        Ok(pair) => pair,
        Err(e) => return debug!(peer = %conn.peer().short(), "bad hello: {e}"),
    };
    let result = match hello.intent {
        Intent::Registry => serve_registry(shared, &conn, &mut session, hello.role).await,
        Intent::Probe => {
            superpeer_common::answer_probe(&mut session, Role::ListServer, || None).await
        }
        other => {
            let reason = format!("this is a list server; {other:?} is not served here");
            let refusal = HelloReply::Refused {
                reason,
                try_instead: Vec::new(),
            };
            let _ = session.reply(&refusal).await;
            conn.finish_and_close(&mut session, CloseCode::Refused, "list server")
                .await;
            return;
        }
    };
    match result {
        Ok(()) => {
            let _ = session.writer.inner_mut().finish();
        }
        Err(e) => {
            debug!(peer = %conn.peer().short(), "closing: {e}");
            conn.close_for(&e);
        }
    }
}

async fn serve_registry(
    shared: &Shared,
    conn: &Connection,
    session: &mut superpeer_common::Session,
    role: Role,
) -> Result<(), WireError> {
    session
        .reply(&HelloReply::Welcome {
            role: Role::ListServer,
        })
        .await?;
    let peer = conn.peer();
    let source = conn.remote_addr().ip();
    let (rate, burst) = shared.config.message_rate;
    let mut budget = TokenBucket::new(Instant::now(), rate, burst);
    // Registry messages are small; lists and member pages are only ever sent, not received.
    session.reader.limit_frames(MAX_REGISTRY_FRAME);
    // A registered node heartbeats; anyone else asks and goes. Silence past this is dead.
    let idle = (shared.config.registry.heartbeat_interval * 3).max(Duration::from_secs(10));
    // The address this connection registered, to re-register a forgotten node on heartbeat.
    let mut advertised: Option<SocketAddr> = None;
    loop {
        let msg = match tokio::time::timeout(idle, session.reader.recv::<ToListServer>()).await {
            Ok(Ok(Some(msg))) => msg,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(WireError::TimedOut("a heartbeat or request")),
        };
        if !budget.try_take(Instant::now()) {
            shared.stats.refusal(Refusal::MessageRate);
            conn.close(CloseCode::Overloaded, "too many messages");
            return Ok(());
        }
        shared.stats.message(match &msg {
            ToListServer::Register { .. } => Message::Register,
            ToListServer::Heartbeat { .. } => Message::Heartbeat,
            ToListServer::Unregister => Message::Unregister,
            ToListServer::GetSupernodes { .. } => Message::List,
            ToListServer::GetMembers { .. } => Message::Members,
        });
        let reply = match msg {
            ToListServer::Register { advertise, load } => {
                if role == Role::Supernode {
                    // Remembered even when rate-limited: a later heartbeat retries it.
                    advertised = Some(advertise);
                    register(shared, peer, source, advertise, load).await
                } else {
                    refused("only supernodes register")
                }
            }
            ToListServer::Heartbeat { load } => {
                if lock(&shared.registry).handle_heartbeat(Instant::now(), peer, load) {
                    registered(shared, true)
                } else if let Some(advertise) = advertised {
                    register(shared, peer, source, advertise, load).await
                } else {
                    refused("not registered: send Register first")
                }
            }
            ToListServer::Unregister => {
                lock(&shared.registry).handle_unregister(peer);
                info!(node = %peer.short(), "supernode unregistered");
                return Ok(());
            }
            ToListServer::GetSupernodes { max } => {
                if lock(&shared.list_limiter).allow(Instant::now(), source) {
                    ListServerToNode::Supernodes(select(shared, usize::from(max)))
                } else {
                    shared.stats.refusal(Refusal::ListRate);
                    refused("too many list requests from your address; retry later")
                }
            }
            ToListServer::GetMembers {
                epoch,
                since,
                after,
            } => {
                if role != Role::Supernode {
                    refused("only supernodes ask for the membership")
                } else if lock(&shared.members_limiter).allow(Instant::now(), source) {
                    let page = lock(&shared.registry).members_page(
                        epoch,
                        since,
                        after,
                        MAX_MEMBERS_PER_PAGE,
                    );
                    ListServerToNode::Members(page)
                } else {
                    shared.stats.refusal(Refusal::MembersRate);
                    refused("too many membership requests from your address; retry later")
                }
            }
        };
        session.writer.send(&reply).await?;
    }
}

/// Largest frame a registry conversation accepts.
const MAX_REGISTRY_FRAME: usize = 64 * 1024;

/// One of the connections a source address may hold at once; released when dropped.
struct SourceSlot {
    shared: Arc<Shared>,
    source: IpAddr,
}

impl SourceSlot {
    fn take(shared: &Arc<Shared>, source: IpAddr) -> Option<SourceSlot> {
        let mut counts = lock(&shared.connections_per_source);
        let count = counts.entry(source).or_insert(0);
        if *count >= shared.config.max_connections_per_source {
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            shared: shared.clone(),
            source,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.shared.connections_per_source);
        if let Some(count) = counts.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.source);
            }
        }
    }
}

fn refused(reason: &str) -> ListServerToNode {
    ListServerToNode::Refused {
        reason: reason.to_owned(),
    }
}

fn registered(shared: &Shared, listed: bool) -> ListServerToNode {
    let interval = shared.config.registry.heartbeat_interval.as_millis();
    ListServerToNode::Registered {
        heartbeat_interval_ms: u32::try_from(interval).unwrap_or(u32::MAX),
        listed,
    }
}

fn select(shared: &Shared, max: usize) -> SupernodeList {
    let max = max.min(MAX_SUPERNODES_PER_LIST);
    let mut rng = lock(&shared.rng);
    lock(&shared.registry).select(unix_ms(), max, &mut *rng)
}

async fn register(
    shared: &Shared,
    peer: NodeId,
    source: IpAddr,
    advertise: SocketAddr,
    load: superpeer_common::wire::Load,
) -> ListServerToNode {
    if !lock(&shared.register_limiter).allow(Instant::now(), source) {
        shared.stats.refusal(Refusal::RegisterRate);
        return refused("too many registrations from your address; retry later");
    }
    let outcome =
        lock(&shared.registry).handle_register(Instant::now(), peer, source, advertise, load);
    match outcome {
        RegisterOutcome::Refreshed => registered(shared, true),
        RegisterOutcome::AlreadyPending => registered(shared, false),
        RegisterOutcome::Refused(reason) => refused(&reason.to_string()),
        RegisterOutcome::DialBack { node_id, addr } => {
            let reached = dial_back(shared, node_id, addr).await;
            let listed =
                lock(&shared.registry).handle_dial_back(Instant::now(), node_id, addr, reached);
            if listed {
                info!(node = %node_id.short(), %addr, "supernode listed (dial-back confirmed)");
                registered(shared, true)
            } else {
                info!(node = %node_id.short(), %addr, "supernode not listed: dial-back failed");
                refused(&format!(
                    "dial-back to {addr} failed: nobody with your node id answers there"
                ))
            }
        }
    }
}

/// Dials `addr` pinned to `node_id` and probes it: true only if that very node answers
/// there as a supernode.
async fn dial_back(shared: &Shared, node_id: NodeId, addr: SocketAddr) -> bool {
    let attempt = async {
        let conn = shared
            .endpoint
            .connect(&PeerAddr::pinned(node_id, addr))
            .await
            .ok()?;
        let result = superpeer_common::probe(&conn, Role::ListServer, 1).await;
        conn.close(CloseCode::Normal, "dial-back done");
        result.ok()
    };
    match tokio::time::timeout(shared.config.dial_back_timeout, attempt).await {
        Ok(Some(probe)) => probe.role == Role::Supernode,
        _ => false,
    }
}
