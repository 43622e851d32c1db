//! The node daemon: the tokio driver of a [`LeafCore`], for both roles. A leaf, and a
//! supernode too (`superpeer supernode` is a leaf that starts promoted), so every node
//! shares, searches and downloads the same way.
//!
//! The driver decides nothing. Network tasks (`session.rs`), the folder watcher, the
//! supernode it may run (`supernode.rs`) and the control API send it [`Event`]s; it hands
//! each to the core with the time, then carries out the core's [`LeafAction`]s: it spawns
//! probes and attaches, queues messages to the session's writer task (never awaiting a
//! network write itself), and routes search results to whoever asked. The shared folder's
//! lock is taken only on blocking threads (rescans), never on the driver's.

mod actions;
mod incoming;
mod session;
mod supernode;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use superpeer_common::wire::{Load, QueryHit, QueryId, SupernodeInfo, SupernodeToLeaf};
use superpeer_common::{Endpoint, Identity, NodeId, PeerAddr, TransportLimits};
use superpeer_supernode::{RelayCaps, SupernodeStatus};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::core::{LeafCore, LeafCoreConfig, PromotionOutcome, SessionNo, Source};
use super::status::LeafStatus;
use crate::nat::{Pushes, Reacher};
use crate::share::{FolderChanges, Hashing, ShareDelta, SharedFolder};
use crate::transfer::{DEFAULT_UPLOAD_SLOTS, OutboardStore, ServedFiles, Uploads};
use session::{Attached, SessionLink};

pub use supernode::transfer_service;

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct LeafConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Address others dial; defaults to the bound address.
    pub advertise: Option<SocketAddr>,
    /// List servers to get supernodes from (and to register with, as a supernode).
    pub list_servers: Vec<PeerAddr>,
    /// Supernodes given by hand.
    pub peers: Vec<PeerAddr>,
    /// Where the identity, the caches and the control file live.
    pub state_dir: PathBuf,
    /// The decisions' tunables (`start_as_supernode` among them).
    pub core: LeafCoreConfig,
    /// Links kept once a supernode (the supernode's default when `None`).
    pub max_neighbors: Option<usize>,
    /// Whether searches use the keyword directory once a supernode.
    pub directory: bool,
    /// Files indexed per leaf once a supernode (the supernode's default when `None`).
    pub max_files_per_leaf: Option<usize>,
    /// Connections held at once as a supernode (the supernode's default when `None`).
    pub max_connections: Option<usize>,
    /// As a supernode, the caps on sessions relayed for firewalled leaves.
    pub relay: RelayCaps,
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

/// What the driver hears.
pub enum Event {
    Probed {
        node_id: NodeId,
        result: Option<(Duration, Option<Load>)>,
        /// Where it saw our connection come from.
        observed: Option<SocketAddr>,
    },
    Attached {
        session: SessionNo,
        result: Attached,
    },
    FromSupernode {
        session: SessionNo,
        msg: SupernodeToLeaf,
    },
    SessionEnded {
        session: SessionNo,
        why: String,
    },
    Learned {
        infos: Vec<SupernodeInfo>,
        source: Source,
    },
    /// The folder may have changed: rescan it.
    ShareChanged,
    /// A rescan finished.
    Rescanned {
        delta: Option<ShareDelta>,
        shared: usize,
    },
    Status(oneshot::Sender<LeafStatus>),
    Search {
        words: Vec<String>,
        want: u32,
        results: mpsc::Sender<SearchItem>,
        started: oneshot::Sender<Result<(), String>>,
    },
    Promote(oneshot::Sender<Result<PromotionOutcome, String>>),
    Demote(oneshot::Sender<Result<(), String>>),
    /// An answer to one of our searches from our own supernode.
    OwnAnswer(SupernodeToLeaf),
    /// How our supernode's registrations stand (while we are one).
    Registrations(Box<SupernodeStatus>),
    /// The supernode we asked for has started (or could not).
    SupernodeStarted(Result<supernode::Running, String>),
    /// Our supernode has stopped (stepping down).
    SupernodeStopped,
}

/// What a search's channel carries: hits as they arrive, or, last, why the search was
/// refused (already made safe to print).
pub type SearchItem = Result<QueryHit, String>;

/// A handle to a running node.
#[derive(Clone)]
pub struct LeafHandle {
    events: mpsc::Sender<Event>,
}

const STOPPING: &str = "the daemon is stopping";

impl LeafHandle {
    /// The node's status, or `None` once it stopped.
    pub async fn status(&self) -> Option<LeafStatus> {
        let (tx, rx) = oneshot::channel();
        self.events.send(Event::Status(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Starts a search; hits arrive on the returned channel, which closes when it is over.
    /// A refused search ends with one `Err` naming why.
    pub async fn search(
        &self,
        words: Vec<String>,
        want: u32,
    ) -> Result<mpsc::Receiver<SearchItem>, String> {
        let (results, rx) = mpsc::channel(1024);
        let (started, started_rx) = oneshot::channel();
        let event = Event::Search {
            words,
            want,
            results,
            started,
        };
        self.events.send(event).await.map_err(|_| STOPPING)?;
        started_rx.await.map_err(|_| STOPPING)??;
        Ok(rx)
    }

    /// Turns the leaf into a supernode; returns once a list server has listed it (or
    /// could not be asked), an error when it stays a leaf, and why.
    pub async fn promote(&self) -> Result<PromotionOutcome, String> {
        let (tx, rx) = oneshot::channel();
        self.events
            .send(Event::Promote(tx))
            .await
            .map_err(|_| STOPPING)?;
        rx.await.map_err(|_| STOPPING)?
    }

    /// Turns a supernode back into a leaf.
    pub async fn demote(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.events
            .send(Event::Demote(tx))
            .await
            .map_err(|_| STOPPING)?;
        rx.await.map_err(|_| STOPPING)?
    }
}

/// The shared folder as the driver holds it: rescans lock it on a blocking thread.
struct Folder {
    folder: Arc<Mutex<SharedFolder>>,
    changes: Option<FolderChanges>,
    /// A rescan is running; another signal during it asks for one more.
    rescanning: bool,
    again: bool,
}

/// A bound node, ready to [`run`](Leaf::run).
pub struct Leaf {
    endpoint: Endpoint,
    advertise: SocketAddr,
    config: LeafConfig,
    folder: Option<(SharedFolder, FolderChanges)>,
    served: ServedFiles,
    uploads: Arc<Uploads>,
    reacher: Reacher,
    events_tx: mpsc::Sender<Event>,
    events_rx: mpsc::Receiver<Event>,
}

impl Leaf {
    /// Binds the socket. `folder` is the shared folder, opened with its watch (see
    /// [`crate::share::open_watched`]).
    pub fn bind(
        identity: Arc<Identity>,
        config: LeafConfig,
        folder: Option<(SharedFolder, FolderChanges)>,
    ) -> anyhow::Result<Self> {
        // A node started as a supernode keeps connections as a supernode does; a leaf
        // notices a dead supernode fast.
        let limits = if config.core.start_as_supernode {
            TransportLimits::default()
        } else {
            leaf_limits()
        };
        let endpoint = Endpoint::bind(identity, config.listen, limits)?;
        let advertise = config.advertise.unwrap_or(endpoint.local_addr()?);
        let (events_tx, events_rx) = mpsc::channel(1024);
        // Outboards from where the sharing scan saved them: no request hashes a file.
        let store = OutboardStore::in_state_dir(&config.state_dir);
        let uploads = Arc::new(Uploads::with_store(DEFAULT_UPLOAD_SLOTS, store));
        let served = ServedFiles::default();
        if let Some((folder, _)) = &folder {
            served.replace(folder.paths());
        }
        let reacher = Reacher::new(endpoint.clone(), Pushes::default());
        Ok(Self {
            endpoint,
            advertise,
            config,
            folder,
            served,
            uploads,
            reacher,
            events_tx,
            events_rx,
        })
    }

    /// The endpoint, for downloads: they dial holders from the node's own address.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint.clone()
    }

    /// How downloads reach holders, firewalled ones through their supernodes.
    pub fn reacher(&self) -> Reacher {
        self.reacher.clone()
    }

    /// What this node has uploaded, and its upload slots.
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

    /// Runs until `shutdown`; then leaves the supernode cleanly (it drops our files at
    /// once), or, as a supernode, lets its leaves go.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Leaf {
            endpoint,
            advertise,
            config,
            folder,
            served,
            uploads,
            reacher,
            events_tx,
            events_rx,
        } = self;
        let listen = endpoint.local_addr().unwrap_or(config.listen);
        let hashing = folder.as_ref().map(|(folder, _)| folder.hashing());
        let (entries, shared, folder) = match folder {
            Some((folder, changes)) => (
                folder.entries(),
                folder.len(),
                Some(Folder {
                    folder: Arc::new(Mutex::new(folder)),
                    changes: Some(changes),
                    rescanning: false,
                    again: false,
                }),
            ),
            None => (Vec::new(), 0, None),
        };
        let core = LeafCore::new(
            Instant::now(),
            endpoint.node_id(),
            config.core.clone(),
            entries,
            rand::random(),
        );
        let config_state_dir = config.state_dir.clone();
        let mut driver = Driver {
            endpoint,
            advertise,
            listen,
            config,
            folder,
            shared,
            hashing,
            served,
            uploads,
            reacher,
            events: events_tx,
            core,
            sessions: HashMap::new(),
            searches: HashMap::new(),
            promote_reply: None,
            supernode: None,
            accepting: None,
            leaving: Vec::new(),
            cache: super::cache::Writer::start(config_state_dir),
        };
        driver.start(super::cache::load(&driver.config.state_dir));
        driver.run(events_rx, shutdown).await;
    }
}

/// The driver's state: the core, and the I/O it stands for.
struct Driver {
    endpoint: Endpoint,
    advertise: SocketAddr,
    listen: SocketAddr,
    config: LeafConfig,
    folder: Option<Folder>,
    /// Files in the shared folder as of the last scan (a rescan may hold its lock).
    shared: usize,
    /// The shared folder's hashing progress (read without its lock).
    hashing: Option<Arc<Hashing>>,
    /// What the shared folder serves, by content id (updated by every rescan).
    served: ServedFiles,
    uploads: Arc<Uploads>,
    /// Downloads' way to holders; reverse connections for them arrive through its pushes.
    reacher: Reacher,
    events: mpsc::Sender<Event>,
    core: LeafCore,
    sessions: HashMap<SessionNo, SessionLink>,
    searches: HashMap<QueryId, mpsc::Sender<SearchItem>>,
    promote_reply: Option<oneshot::Sender<Result<PromotionOutcome, String>>>,
    supernode: Option<supernode::Running>,
    /// The leaf's own accept loop (stopped while a supernode: the supernode accepts).
    accepting: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    /// Sessions saying goodbye, waited for at shutdown.
    leaving: Vec<session::Leaving>,
    /// Writes `supernodes.json` off the event loop.
    cache: super::cache::Writer,
}

impl Driver {
    fn start(&mut self, cached: Vec<SupernodeInfo>) {
        if !self.core.is_supernode() {
            self.start_accepting();
        }
        let now = Instant::now();
        self.core.handle_learned(now, &cached, Source::Cache);
        // --peer addresses, learning the ids of unpinned ones.
        let (endpoint, peers, events) = (
            self.endpoint.clone(),
            self.config.peers.clone(),
            self.events.clone(),
        );
        tokio::spawn(async move {
            let pinned = superpeer_supernode::identify_peers(&endpoint, &peers).await;
            let infos = pinned
                .into_iter()
                .filter_map(|p| {
                    Some(SupernodeInfo {
                        node_id: p.node_id?,
                        addr: p.addr,
                        load: Load::default(),
                        stale: true,
                    })
                })
                .collect();
            let learned = Event::Learned {
                infos,
                source: Source::Peer,
            };
            let _ = events.send(learned).await;
        });
        if let Some(changes) = self.folder.as_mut().and_then(|f| f.changes.take()) {
            let events = self.events.clone();
            tokio::spawn(forward_changes(changes, events));
        }
        self.run_actions();
    }

    async fn run(&mut self, mut events: mpsc::Receiver<Event>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let wake = self.core.poll_timeout(Instant::now());
            tokio::select! {
                () = &mut shutdown => break,
                Some(event) = events.recv() => self.handle(event),
                () = tokio::time::sleep_until(wake.into()) => {}
            }
            // Due whether or not events kept coming meanwhile.
            let now = Instant::now();
            if now >= wake {
                self.core.handle_timeout(now);
            }
            self.run_actions();
        }
        self.stop().await;
    }

    /// At shutdown: a supernode lets its leaves go; a leaf says goodbye to its supernode.
    async fn stop(&mut self) {
        if let Some(running) = self.supernode.take() {
            running.stop().await;
        }
        for (_, link) in self.sessions.drain() {
            self.leaving.push(link.leave("leaving"));
        }
        let mut goodbyes = tokio::task::JoinSet::new();
        for leaving in self.leaving.drain(..) {
            goodbyes.spawn(leaving.finish(Duration::from_secs(1)));
        }
        goodbyes.join_all().await;
        self.endpoint.shutdown().await;
    }

    /// Starts answering incoming connections as a leaf: probes (dial-back checks) and
    /// downloads of our files.
    fn start_accepting(&mut self) {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(incoming::serve(
            self.endpoint.clone(),
            self.served.clone(),
            self.uploads.clone(),
            self.reacher.pushes(),
            stopped,
        ));
        self.accepting = Some((stop, task));
    }
}

/// Passes the folder's change signals on to the driver.
async fn forward_changes(mut changes: FolderChanges, events: mpsc::Sender<Event>) {
    while changes.changed().await.is_some() {
        if events.send(Event::ShareChanged).await.is_err() {
            break;
        }
    }
}
