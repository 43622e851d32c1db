//! The leaf daemon: an actor that owns the [`Joiner`] and the session with the current
//! supernode. Network tasks (`attach.rs`), the folder watcher and the control API send it
//! [`Event`]s; it decides with the joiner, keeps the supernode's view of our files current,
//! and routes search results back to whoever asked.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use superpeer_bootstrap_list::fetch_supernodes;
use superpeer_common::wire::{
    CloseCode, FileEntry, FrameWriter, Holder, LeafToSupernode, Load, MAX_ENTRIES_PER_MESSAGE,
    MAX_HOLDERS_PER_HIT, Query, QueryHit, QueryId, Role, SupernodeInfo, SupernodeToLeaf,
};
use superpeer_common::{
    Connection, ContentId, Endpoint, Identity, NodeId, PeerAddr, TransportLimits, keywords,
};
use superpeer_supernode::SupernodeStatus;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

mod incoming;
mod promote;

use promote::Promoted;
pub use promote::transfer_service;

use super::attach::{self, Attached};
use super::cache;
use super::election::{Election, ElectionConfig};
use super::join::{JoinConfig, Joiner};
use crate::names::printable;
use crate::share::{ShareDelta, SharedFolder};
use crate::transfer::{ServedFiles, Uploads};

/// Everything a leaf needs to start.
#[derive(Clone, Debug)]
pub struct LeafConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Address others dial; defaults to the bound address.
    pub advertise: Option<SocketAddr>,
    /// List servers to get supernodes from.
    pub list_servers: Vec<PeerAddr>,
    /// Supernodes given by hand.
    pub peers: Vec<PeerAddr>,
    /// The shared folder (watched for changes).
    pub share: Option<PathBuf>,
    /// Where the identity, the caches and the control file live.
    pub state_dir: PathBuf,
    /// Joining tunables.
    pub join: JoinConfig,
    /// How often candidates are measured again while attached.
    pub reprobe_interval: Duration,
    /// How often lists are fetched again.
    pub refresh_interval: Duration,
    /// Leaves admitted once promoted to supernode.
    pub max_leaves: usize,
    /// When to promote ourselves (and step back down).
    pub election: ElectionConfig,
}

/// QUIC limits for a leaf: a short idle timeout, so a dead supernode is noticed fast (the
/// connection's timeout is the smaller of both sides').
pub fn leaf_limits() -> TransportLimits {
    TransportLimits {
        idle_timeout: Duration::from_secs(3),
        keep_alive: Duration::from_millis(750),
        ..TransportLimits::default()
    }
}

/// The leaf's state as `status` shows it.
#[derive(Clone, Debug)]
pub struct LeafStatus {
    pub node_id: NodeId,
    pub listen: SocketAddr,
    pub advertise: SocketAddr,
    /// The supernode we are attached to, its address and measured RTT.
    pub supernode: Option<(NodeId, SocketAddr, Duration)>,
    pub shared_files: usize,
    /// Once promoted: the supernode's own status.
    pub promoted: Option<SupernodeStatus>,
}

/// What the daemon hears.
pub enum Event {
    Probed {
        node_id: NodeId,
        result: Option<(Duration, Option<Load>)>,
    },
    AttachDone {
        node_id: NodeId,
        addr: SocketAddr,
        rtt: Duration,
        generation: u64,
        result: Attached,
    },
    FromSupernode {
        generation: u64,
        msg: SupernodeToLeaf,
    },
    SessionEnded {
        generation: u64,
        why: String,
    },
    Learned {
        infos: Vec<SupernodeInfo>,
        save: bool,
        /// From a list server: whether it says the network is short of supernodes.
        short: Option<bool>,
    },
    ShareChanged,
    ShareDelta(ShareDelta),
    Status(oneshot::Sender<LeafStatus>),
    Search {
        keywords: Vec<String>,
        want: u32,
        results: mpsc::Sender<SearchItem>,
        started: oneshot::Sender<Result<(), String>>,
    },
    /// Become a supernode.
    Promote(oneshot::Sender<Result<(), String>>),
    /// Step back down to leaf.
    Demote(oneshot::Sender<Result<(), String>>),
    /// An answer to one of our searches from our own supernode (once promoted).
    OwnSupernode(SupernodeToLeaf),
}

/// What a search's channel carries: hits as they arrive, or, last, why the supernode
/// refused to run it (already made safe to print).
pub type SearchItem = Result<QueryHit, String>;

/// A handle to a running leaf.
#[derive(Clone)]
pub struct LeafHandle {
    events: mpsc::Sender<Event>,
}

impl LeafHandle {
    /// The leaf's status, or `None` once it stopped.
    pub async fn status(&self) -> Option<LeafStatus> {
        let (tx, rx) = oneshot::channel();
        self.events.send(Event::Status(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Starts a search; hits arrive on the returned channel, which closes when it is over.
    /// A search the supernode refuses ends with one `Err` naming why.
    pub async fn search(
        &self,
        words: Vec<String>,
        want: u32,
    ) -> Result<mpsc::Receiver<SearchItem>, String> {
        let (results, rx) = mpsc::channel(1024);
        let (started, started_rx) = oneshot::channel();
        let event = Event::Search {
            keywords: words,
            want,
            results,
            started,
        };
        self.events
            .send(event)
            .await
            .map_err(|_| "the daemon is stopping".to_string())?;
        started_rx
            .await
            .map_err(|_| "the daemon is stopping".to_string())??;
        Ok(rx)
    }

    /// Turns the leaf into a supernode; an error says why it stays what it is.
    pub async fn promote(&self) -> Result<(), String> {
        self.ask(Event::Promote).await
    }

    /// Turns a promoted node back into a leaf.
    pub async fn demote(&self) -> Result<(), String> {
        self.ask(Event::Demote).await
    }

    async fn ask(
        &self,
        event: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Event,
    ) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        let stopping = || "the daemon is stopping".to_string();
        self.events.send(event(tx)).await.map_err(|_| stopping())?;
        rx.await.map_err(|_| stopping())?
    }
}

struct Current {
    node_id: NodeId,
    addr: SocketAddr,
    rtt: Duration,
    conn: Connection,
    writer: FrameWriter<quinn::SendStream>,
    generation: u64,
}

struct Search {
    results: mpsc::Sender<SearchItem>,
    /// Holders reported so far, per content.
    seen: HashMap<ContentId, Vec<Holder>>,
    deadline: Instant,
}

/// Longest the first join waits for a batch of probes to compare.
const BATCH_WAIT: Duration = Duration::from_millis(1500);

/// Longest a write to the supernode may wait for flow control.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a search runs on the leaf's side.
const SEARCH_DEADLINE: Duration = Duration::from_secs(12);

/// A bound leaf, ready to [`run`](Leaf::run).
pub struct Leaf {
    endpoint: Endpoint,
    advertise: SocketAddr,
    config: LeafConfig,
    folder: Option<Arc<Mutex<SharedFolder>>>,
    served: ServedFiles,
    uploads: Arc<Uploads>,
    events_tx: mpsc::Sender<Event>,
    events_rx: mpsc::Receiver<Event>,
}

impl Leaf {
    /// Binds the socket. `folder` is the shared folder, already scanned.
    pub fn bind(
        identity: Arc<Identity>,
        config: LeafConfig,
        folder: Option<SharedFolder>,
    ) -> anyhow::Result<Self> {
        let endpoint = Endpoint::bind(identity, config.listen, leaf_limits())?;
        let advertise = config.advertise.unwrap_or(endpoint.local_addr()?);
        let (events_tx, events_rx) = mpsc::channel(1024);
        let served = ServedFiles::default();
        if let Some(folder) = &folder {
            served.replace(folder.paths());
        }
        Ok(Self {
            endpoint,
            advertise,
            config,
            folder: folder.map(|f| Arc::new(Mutex::new(f))),
            served,
            uploads: Arc::new(Uploads::default()),
            events_tx,
            events_rx,
        })
    }

    /// The endpoint, for downloads: they dial holders from the leaf's own address.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint.clone()
    }

    /// What this leaf has uploaded, and its upload slots.
    pub fn uploads(&self) -> Arc<Uploads> {
        self.uploads.clone()
    }

    pub fn node_id(&self) -> NodeId {
        self.endpoint.node_id()
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }

    pub fn advertise(&self) -> SocketAddr {
        self.advertise
    }

    pub fn handle(&self) -> LeafHandle {
        LeafHandle {
            events: self.events_tx.clone(),
        }
    }

    /// Runs until `shutdown`; then leaves the supernode cleanly (it drops our files at once).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Leaf {
            endpoint,
            advertise,
            config,
            folder,
            served,
            uploads,
            events_tx,
            events_rx,
        } = self;
        let listen = endpoint.local_addr().unwrap_or(config.listen);
        let shared_files = folder.as_ref().map_or(0, |f| lock(f).len());
        let entries = folder
            .as_ref()
            .map(|f| lock(f).entries())
            .unwrap_or_default();
        let mut joiner = Joiner::new(endpoint.node_id(), config.join.clone());
        joiner.add(&cache::load(&config.state_dir));
        let election = Election::new(
            Instant::now(),
            config.election.clone(),
            config.max_leaves,
            rand::random(),
        );
        let mut actor = Actor {
            endpoint,
            advertise,
            listen,
            config,
            folder,
            served,
            uploads,
            events: events_tx,
            joiner,
            current: None,
            attaching: None,
            generation: 0,
            searches: HashMap::new(),
            last_refresh: None,
            shared_files: Arc::new(AtomicUsize::new(shared_files)),
            entries: Arc::new(Mutex::new(entries)),
            ended_early: None,
            probing_since: None,
            ever_attached: false,
            promoted: None,
            accepting: None,
            election,
            _watcher: None,
        };
        actor.start_background();
        actor.run(events_rx, shutdown).await;
    }
}

struct Actor {
    endpoint: Endpoint,
    advertise: SocketAddr,
    listen: SocketAddr,
    config: LeafConfig,
    folder: Option<Arc<Mutex<SharedFolder>>>,
    /// What the shared folder serves, by content id (updated by every rescan).
    served: ServedFiles,
    uploads: Arc<Uploads>,
    events: mpsc::Sender<Event>,
    joiner: Joiner,
    current: Option<Current>,
    attaching: Option<NodeId>,
    generation: u64,
    searches: HashMap<QueryId, Search>,
    last_refresh: Option<Instant>,
    shared_files: Arc<AtomicUsize>,
    /// What we publish on attach: the folder's entries as of the last scan. Kept apart from
    /// the folder, whose lock a long rescan may hold.
    entries: Arc<Mutex<Vec<FileEntry>>>,
    /// A session that ended before its attach was reported (the reader starts first).
    ended_early: Option<u64>,
    /// Since when probes have been under way without a pause.
    probing_since: Option<Instant>,
    /// Attached at least once in this run.
    ever_attached: bool,
    /// The supernode we run since we were promoted.
    promoted: Option<Promoted>,
    /// The leaf's own accept loop (stopped while promoted: the supernode accepts).
    accepting: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    /// Whether to promote ourselves, or step back down.
    election: Election,
    _watcher: Option<notify::RecommendedWatcher>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Actor {
    fn start_background(&mut self) {
        self.start_accepting();
        // --peer addresses (learning the ids of unpinned ones).
        let (endpoint, peers, events) = (
            self.endpoint.clone(),
            self.config.peers.clone(),
            self.events.clone(),
        );
        tokio::spawn(async move {
            let mut infos = Vec::new();
            for peer in peers {
                let node_id = match peer.node_id {
                    Some(id) => Some(id),
                    None => endpoint.identify(peer.addr).await,
                };
                match node_id {
                    Some(node_id) => infos.push(SupernodeInfo {
                        node_id,
                        addr: peer.addr,
                        load: Load::default(),
                        stale: true,
                    }),
                    None => warn!(peer = %peer.addr, "no supernode answers at this --peer address"),
                }
            }
            let _ = events
                .send(Event::Learned {
                    infos,
                    save: false,
                    short: None,
                })
                .await;
        });
        self.refresh_lists();
        if let (Some(_), Some(dir)) = (&self.folder, self.config.share.clone()) {
            match crate::share::watch(&dir) {
                Ok((watcher, mut changes)) => {
                    self._watcher = Some(watcher);
                    let events = self.events.clone();
                    tokio::spawn(async move {
                        while changes.recv().await.is_some() {
                            if events.send(Event::ShareChanged).await.is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(e) => {
                    warn!(
                        "cannot watch {} ({e}); rescanning it every 2 s instead",
                        dir.display()
                    );
                    let events = self.events.clone();
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                            if events.send(Event::ShareChanged).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            }
        }
    }

    async fn run(&mut self, mut events: mpsc::Receiver<Event>, shutdown: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reprobe = tokio::time::interval(self.config.reprobe_interval);
        reprobe.tick().await;
        let mut refresh = tokio::time::interval(self.config.refresh_interval);
        refresh.tick().await;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(event) = events.recv() => self.handle(event).await,
                _ = tick.tick() => {
                    self.drive(Instant::now());
                    self.elect(Instant::now()).await;
                }
                _ = reprobe.tick() => self.joiner.reprobe_all(Instant::now()),
                // Promoted, the lists still bring the list server's shortage signal.
                _ = refresh.tick() => {
                    self.refresh_lists();
                    self.send(LeafToSupernode::GetSupernodes { max: 50 }).await;
                }
            }
        }
        self.stop_supernode().await;
        self.leave_supernode("leaving").await;
        self.endpoint.shutdown().await;
    }

    /// Leaves the current supernode cleanly: it drops our files at once instead of after
    /// a timeout.
    async fn leave_supernode(&mut self, reason: &str) {
        let Some(mut current) = self.current.take() else {
            return;
        };
        let _ = tokio::time::timeout(
            WRITE_TIMEOUT,
            current.writer.send(&LeafToSupernode::Leaving),
        )
        .await;
        let _ = current.writer.inner_mut().finish();
        let _ = tokio::time::timeout(Duration::from_millis(500), current.conn.closed()).await;
        current.conn.close(CloseCode::Normal, reason);
    }

    /// Starts answering incoming connections as a leaf: probes (dial-back checks) and
    /// downloads of our files.
    fn start_accepting(&mut self) {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(incoming::serve(
            self.endpoint.clone(),
            self.served.clone(),
            self.uploads.clone(),
            stopped,
        ));
        self.accepting = Some((stop, task));
    }

    /// Stops the leaf's accept loop and waits until it has stopped (connections it took
    /// are served to their end).
    async fn stop_accepting(&mut self) {
        if let Some((stop, task)) = self.accepting.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }

    /// Starts probes and an attach when one is due.
    fn drive(&mut self, now: Instant) {
        for target in self.joiner.poll_probes(now) {
            tokio::spawn(attach::run_probe(
                self.endpoint.clone(),
                target,
                self.events.clone(),
            ));
        }
        self.searches.retain(|_, s| now < s.deadline);
        if self.attaching.is_some() || self.promoted.is_some() {
            return;
        }
        if !self.joiner.probing() {
            self.probing_since = None;
        } else if self.probing_since.is_none() {
            self.probing_since = Some(now);
        }
        // The first join compares a whole batch of probes rather than taking whichever
        // answers first (bounded, in case one hangs); a failover uses what is measured.
        let batch_pending = self
            .probing_since
            .is_some_and(|t| now.duration_since(t) < BATCH_WAIT);
        if self.current.is_none() && !self.ever_attached && batch_pending {
            return;
        }
        let target = match &self.current {
            None => self.joiner.next_attach(now),
            Some(_) => self.joiner.better_than_current(now),
        };
        match target {
            Some((target, rtt)) => self.start_attach(target, rtt),
            // Nothing usable: ask the list servers again (not more than every 2 s).
            None if self.current.is_none()
                && !self.joiner.probing()
                && self
                    .last_refresh
                    .is_none_or(|t| now.duration_since(t) > Duration::from_secs(2)) =>
            {
                self.refresh_lists();
            }
            None => {}
        }
    }

    fn start_attach(&mut self, target: PeerAddr, rtt: Duration) {
        let Some(node_id) = target.node_id else {
            return;
        };
        self.attaching = Some(node_id);
        self.ended_early = None;
        self.generation += 1;
        let (endpoint, events, advertise, generation) = (
            self.endpoint.clone(),
            self.events.clone(),
            self.advertise,
            self.generation,
        );
        tokio::spawn(async move {
            let result =
                attach::attach(endpoint, target, advertise, generation, events.clone()).await;
            let done = Event::AttachDone {
                node_id,
                addr: target.addr,
                rtt,
                generation,
                result,
            };
            let _ = events.send(done).await;
        });
    }

    fn refresh_lists(&mut self) {
        self.last_refresh = Some(Instant::now());
        for server in self.config.list_servers.clone() {
            let (endpoint, events) = (self.endpoint.clone(), self.events.clone());
            tokio::spawn(async move {
                match fetch_supernodes(&endpoint, &server, Role::Leaf, 50).await {
                    Ok(list) => {
                        let _ = events
                            .send(Event::Learned {
                                infos: list.supernodes,
                                save: true,
                                short: Some(list.short_of_supernodes),
                            })
                            .await;
                    }
                    Err(e) => debug!(list_server = %server.addr, "cannot fetch supernodes: {e}"),
                }
            });
        }
    }

    async fn handle(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Probed { node_id, result } => {
                self.joiner.probe_result(now, node_id, result);
                self.drive(now);
            }
            Event::AttachDone {
                node_id,
                addr,
                rtt,
                generation,
                result,
            } => {
                self.attaching = None;
                if self.promoted.is_some() {
                    // Promoted while this attach ran.
                    if let Attached::Yes { conn, .. } = result {
                        conn.close(CloseCode::Normal, "promoted to supernode");
                    }
                    return;
                }
                match result {
                    Attached::Yes { conn, .. } if self.ended_early == Some(generation) => {
                        info!(supernode = %node_id.short(), "the session ended as soon as it opened");
                        conn.close(CloseCode::Normal, "ended");
                        self.joiner.attach_failed(now, node_id);
                    }
                    Attached::Yes { conn, writer } => {
                        let old = self.current.replace(Current {
                            node_id,
                            addr,
                            rtt,
                            conn,
                            writer,
                            generation,
                        });
                        self.joiner.attached(node_id);
                        self.ever_attached = true;
                        info!(supernode = %node_id.short(), %addr, rtt_ms = rtt.as_secs_f64() * 1000.0, "attached");
                        if let Some(mut old) = old {
                            info!(from = %old.node_id.short(), "moved to a clearly faster supernode");
                            let leaving = old.writer.send(&LeafToSupernode::Leaving);
                            let _ = tokio::time::timeout(WRITE_TIMEOUT, leaving).await;
                            old.conn.close(CloseCode::Normal, "moved");
                        }
                        self.end_searches();
                        self.publish_all().await;
                        self.send(LeafToSupernode::GetSupernodes { max: 50 }).await;
                    }
                    Attached::Full(try_instead) => {
                        self.election.refused_full(now);
                        info!(supernode = %node_id.short(), "full; trying its suggestions");
                        self.joiner.refused(now, node_id, &try_instead);
                    }
                    Attached::Failed(why) => {
                        info!(supernode = %node_id.short(), "cannot attach: {why}");
                        self.joiner.attach_failed(now, node_id);
                    }
                }
                self.drive(now);
            }
            Event::FromSupernode { generation, msg } => {
                if self
                    .current
                    .as_ref()
                    .is_some_and(|c| c.generation == generation)
                {
                    self.supernode_message(now, msg);
                }
            }
            Event::SessionEnded { generation, why } => {
                let Some(current) = self.current.take_if(|c| c.generation == generation) else {
                    return;
                };
                warn!(supernode = %current.node_id.short(), "lost the supernode: {why}");
                self.joiner.lost(now, current.node_id);
                self.end_searches();
                self.refresh_lists();
                self.drive(now);
            }
            Event::Learned { infos, save, short } => {
                if let Some(short) = short {
                    let listed = infos.iter().filter(|i| !i.stale).count();
                    self.election.list_answer(now, short, listed);
                }
                self.joiner.add(&infos);
                if save {
                    cache::save(&self.config.state_dir, &self.joiner.known());
                }
                self.drive(now);
            }
            Event::ShareChanged => {
                let Some(folder) = self.folder.clone() else {
                    return;
                };
                let events = self.events.clone();
                let count = self.shared_files.clone();
                let entries = self.entries.clone();
                let served = self.served.clone();
                tokio::task::spawn_blocking(move || {
                    let mut folder = lock(&folder);
                    let delta = folder.rescan();
                    count.store(folder.len(), Ordering::Relaxed);
                    *lock(&entries) = folder.entries();
                    served.replace(folder.paths());
                    drop(folder);
                    match delta {
                        Ok(delta) if !delta.is_empty() => {
                            let _ = events.blocking_send(Event::ShareDelta(delta));
                        }
                        Ok(_) => {}
                        Err(e) => warn!("rescanning the shared folder failed: {e}"),
                    }
                });
            }
            Event::ShareDelta(delta) => {
                info!(
                    added = delta.added.len(),
                    removed = delta.removed.len(),
                    "shared folder changed"
                );
                if let Some(promoted) = &self.promoted {
                    promoted.handle.share(delta.added, delta.removed).await;
                    return;
                }
                if !delta.removed.is_empty() {
                    for chunk in delta.removed.chunks(MAX_ENTRIES_PER_MESSAGE) {
                        self.send(LeafToSupernode::Unpublish {
                            content_ids: chunk.to_vec(),
                        })
                        .await;
                    }
                }
                self.publish(delta.added).await;
            }
            Event::Status(reply) => {
                // Not the folder's lock: a rescan may hold it for long.
                let shared_files = self.shared_files.load(Ordering::Relaxed);
                let status = LeafStatus {
                    node_id: self.endpoint.node_id(),
                    listen: self.listen,
                    advertise: self.advertise,
                    supernode: self.current.as_ref().map(|c| {
                        (
                            c.node_id,
                            c.addr,
                            self.joiner.rtt(&c.node_id).unwrap_or(c.rtt),
                        )
                    }),
                    shared_files,
                    promoted: match &self.promoted {
                        Some(promoted) => promoted.handle.status().await,
                        None => None,
                    },
                };
                let _ = reply.send(status);
            }
            Event::Promote(reply) => {
                let result = self.promote(false).await;
                if result.is_ok() {
                    self.election.promoted(true);
                }
                let _ = reply.send(result);
            }
            Event::Demote(reply) => {
                let result = self.demote().await;
                if result.is_ok() {
                    self.election.demoted(now);
                }
                let _ = reply.send(result);
            }
            Event::OwnSupernode(msg) => self.supernode_message(now, msg),
            Event::Search {
                keywords: words,
                want,
                results,
                started,
            } => {
                let _ = started.send(self.start_search(now, &words, want, results).await);
            }
        }
    }

    async fn start_search(
        &mut self,
        now: Instant,
        words: &[String],
        want: u32,
        results: mpsc::Sender<SearchItem>,
    ) -> Result<(), String> {
        let words = keywords(&words.join(" "));
        if words.is_empty() {
            return Err("no searchable words in the query".into());
        }
        if self.current.is_none() && self.promoted.is_none() {
            return Err("not attached to a supernode yet; try again in a moment".into());
        }
        let id = QueryId(rand::random());
        let query = Query {
            id,
            keywords: words,
            want,
        };
        query.validate().map_err(|e| e.to_string())?;
        self.searches.insert(
            id,
            Search {
                results,
                seen: HashMap::new(),
                deadline: now + SEARCH_DEADLINE,
            },
        );
        if self.promoted.is_some() {
            return self.search_as_supernode(query).await;
        }
        self.send(LeafToSupernode::Query(query)).await;
        Ok(())
    }

    fn supernode_message(&mut self, now: Instant, msg: SupernodeToLeaf) {
        match msg {
            SupernodeToLeaf::Hits { id, hits } => {
                let Some(search) = self.searches.get_mut(&id) else {
                    return;
                };
                for mut hit in hits {
                    if hit.validate().is_err() {
                        continue;
                    }
                    // The same content from another supernode: pass it on again only if it
                    // brings holders not reported yet, with every holder known so far (a
                    // later result for a content id supersedes the earlier one).
                    let known = search.seen.entry(hit.content_id).or_default();
                    let before = known.len();
                    for holder in &hit.holders {
                        if !known.contains(holder) && known.len() < MAX_HOLDERS_PER_HIT {
                            known.push(*holder);
                        }
                    }
                    if known.len() == before {
                        continue;
                    }
                    hit.holders = known.clone();
                    if search.results.try_send(Ok(hit)).is_err() {
                        break;
                    }
                }
            }
            SupernodeToLeaf::QueryDone { id, .. } => {
                self.searches.remove(&id);
            }
            SupernodeToLeaf::QueryRefused { id, reason } => {
                if let Some(search) = self.searches.remove(&id) {
                    let reason =
                        format!("the supernode refused the search: {}", printable(&reason));
                    let _ = search.results.try_send(Err(reason));
                }
            }
            SupernodeToLeaf::Supernodes(list) => {
                if list.validate().is_ok() {
                    self.joiner.add(&list.supernodes);
                    cache::save(&self.config.state_dir, &self.joiner.known());
                }
            }
            SupernodeToLeaf::MoveTo { supernodes } => {
                if let Some(current) = self.current.take() {
                    info!(supernode = %current.node_id.short(), "the supernode sent us elsewhere");
                    self.joiner.add(&supernodes);
                    self.joiner.lost(now, current.node_id);
                    current.conn.close(CloseCode::Normal, "moving");
                    self.end_searches();
                    self.drive(now);
                }
            }
            SupernodeToLeaf::Refused { reason } => {
                warn!("the supernode refused a request: {reason}")
            }
            SupernodeToLeaf::Pong { .. } => {}
            SupernodeToLeaf::Limits(_) | SupernodeToLeaf::Indexed { .. } => {}
        }
    }

    fn end_searches(&mut self) {
        self.searches.clear();
    }

    async fn publish_all(&mut self) {
        let entries = self
            .folder
            .as_ref()
            .map(|f| lock(f).entries())
            .unwrap_or_default();
        self.publish(entries).await;
    }

    async fn publish(&mut self, entries: Vec<FileEntry>) {
        for chunk in entries.chunks(MAX_ENTRIES_PER_MESSAGE) {
            self.send(LeafToSupernode::Publish {
                entries: chunk.to_vec(),
            })
            .await;
        }
    }

    /// Sends to the current supernode; a failed write ends the session (the reader reports it).
    async fn send(&mut self, msg: LeafToSupernode) {
        let Some(current) = self.current.as_mut() else {
            return;
        };
        if let Err(e) = current.writer.send(&msg).await {
            debug!("write to the supernode failed: {e}");
            current.conn.close_for(&e);
        }
    }
}
