//! The supernode a node runs once it is one (started as one, promoted by hand or elected).
//!
//! Promotion keeps everything the user has: the same process, identity, address, shared
//! folder, downloads and control API. The driver stops the leaf's accept loop (the
//! supernode accepts every kind of connection from then on: probes, leaves, links,
//! transfers of our files) and starts a supernode on the same endpoint with our list
//! servers (which dial it back before listing it), the supernodes we knew as its first
//! peers, and our shared files in its own index. Stepping down reverses it: the supernode
//! tells its leaves where to go, unregisters and closes its sessions.
//!
//! Nothing here decides: the leaf core says when to start and stop, and hears how the
//! registrations stand through [`Event::Registrations`].

use std::sync::Arc;
use std::time::Duration;

use superpeer_common::wire::{FileEntry, Intent, Query, Role};
use superpeer_common::{ContentId, Endpoint, GateLimits, PeerAddr};
use superpeer_supernode::{
    RelayCaps, Supernode, SupernodeConfig, SupernodeHandle, TransferService,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::Event;
use crate::nat::{Pushes, take_push};
use crate::transfer::{ServedFiles, Uploads, serve_connection};

/// How often a running supernode's registrations and leaves are reported to the core.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// Changes to our own files queued for the supernode at most.
const SHARE_QUEUE: usize = 64;

/// What the supernode is started with.
pub struct Settings {
    pub endpoint: Endpoint,
    pub advertise: std::net::SocketAddr,
    pub list_servers: Vec<PeerAddr>,
    pub peers: Vec<PeerAddr>,
    pub max_leaves: usize,
    pub max_neighbors: Option<usize>,
    pub directory: bool,
    pub max_files_per_leaf: Option<usize>,
    pub max_connections: Option<usize>,
    pub relay: RelayCaps,
    pub transfer: TransferService,
}

/// A running supernode.
pub struct Running {
    pub handle: SupernodeHandle,
    shares: mpsc::Sender<(Vec<FileEntry>, Vec<ContentId>)>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    reporter: JoinHandle<()>,
}

/// Starts the supernode and a task that reports its status to the driver.
pub fn start(settings: Settings, events: mpsc::Sender<Event>) -> Result<Running, String> {
    let listen = settings
        .endpoint
        .local_addr()
        .map_err(|e| format!("cannot read the local address: {e}"))?;
    let mut config = SupernodeConfig::new(listen);
    config.advertise = Some(settings.advertise);
    config.list_servers = settings.list_servers;
    config.peers = settings.peers;
    config.core.max_leaves = settings.max_leaves;
    if let Some(links) = settings.max_neighbors {
        config.core.max_neighbors = links;
    }
    config.core.directory = settings.directory;
    if let Some(files) = settings.max_files_per_leaf {
        config.core.index.max_entries_per_holder = files;
    }
    if let Some(connections) = settings.max_connections {
        config.gate = GateLimits::supernode(connections);
    }
    config.transfer = Some(settings.transfer);
    config.relay = settings.relay;
    let supernode = Supernode::on_endpoint(settings.endpoint, config)
        .map_err(|e| format!("cannot start the supernode: {e}"))?;
    let handle = supernode.handle();
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(supernode.run(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    // Our own files go in order, without the driver waiting for the supernode's inbox.
    let (shares, mut queue) = mpsc::channel::<(Vec<FileEntry>, Vec<ContentId>)>(SHARE_QUEUE);
    let sharer = handle.clone();
    tokio::spawn(async move {
        while let Some((add, remove)) = queue.recv().await {
            sharer.share(add, remove).await;
        }
    });
    let reporter = tokio::spawn(report(handle.clone(), events));
    Ok(Running {
        handle,
        shares,
        stop,
        task,
        reporter,
    })
}

impl Running {
    /// Our own files changed.
    pub fn share(&self, add: Vec<FileEntry>, remove: Vec<ContentId>) {
        // A full queue only while the supernode is stuck; the next rescan brings it back.
        let _ = self.shares.try_send((add, remove));
    }

    /// Searches through the supernode; answers come back as [`Event::OwnAnswer`].
    pub fn search(&self, query: Query, events: mpsc::Sender<Event>) {
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let Some(mut answers) = handle.search(query).await else {
                return;
            };
            while let Some(msg) = answers.recv().await {
                if events.send(Event::OwnAnswer(msg)).await.is_err() {
                    break;
                }
            }
        });
    }

    /// Stops the supernode (it lets its leaves go first); completes when it has.
    pub async fn stop(self) {
        self.reporter.abort();
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn report(handle: SupernodeHandle, events: mpsc::Sender<Event>) {
    let mut every = tokio::time::interval(REPORT_EVERY);
    loop {
        every.tick().await;
        let Some(status) = handle.status().await else {
            return;
        };
        if events
            .send(Event::Registrations(Box::new(status)))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// How a supernode serves transfers of our shared files, and hands reverse connections
/// (a firewalled holder dialling back for one of our downloads) to the download waiting.
pub fn transfer_service(
    served: ServedFiles,
    uploads: Arc<Uploads>,
    pushes: Pushes,
    receive_window: u32,
) -> TransferService {
    Arc::new(move |conn, session, intent| {
        let (served, uploads, pushes) = (served.clone(), uploads.clone(), pushes.clone());
        Box::pin(async move {
            if intent == Intent::Push {
                take_push(conn, session, Role::Supernode, &pushes, receive_window).await;
            } else {
                serve_connection(conn, session, Role::Supernode, served, uploads).await;
            }
        })
    })
}
