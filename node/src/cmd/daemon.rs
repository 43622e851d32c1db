//! The node daemon behind `superpeer leaf` and `superpeer supernode`: one program for both
//! roles, with its control API, until Ctrl-C or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use superpeer_common::Identity;
use superpeer_supernode::RelayCaps;
use tokio::sync::{mpsc, watch};

use crate::cli::DaemonArgs;
use crate::control::{
    self, ControlHandler, DownloadAction, DownloadJson, ErrorJson, GetEventJson, GetRequest,
    HolderJson, PromoteJson, SearchLineJson, SearchRequest, SearchResultJson, SharingJson,
    StatusJson,
};
use crate::downloads::Downloads;
use crate::leaf::{CACHE_FILE, Leaf, LeafConfig, LeafCoreConfig, LeafHandle};
use crate::metrics::{NodeMetrics, SearchOutcome};
use crate::transfer::Uploads;
use crate::{names, runtime, share};

/// What only `superpeer supernode` sets (a promoted leaf takes the defaults).
#[derive(Clone, Copy, Debug)]
pub struct SupernodeTunables {
    /// Links kept (the supernode's default when `None`).
    pub max_neighbors: Option<usize>,
    /// Whether searches use the keyword directory.
    pub directory: bool,
}

impl Default for SupernodeTunables {
    fn default() -> Self {
        Self {
            max_neighbors: None,
            directory: true,
        }
    }
}

/// Runs a node with `core`'s role and tunables until a shutdown signal.
pub fn run(
    args: DaemonArgs,
    mut core: LeafCoreConfig,
    supernode_tunables: SupernodeTunables,
) -> anyhow::Result<()> {
    raise_descriptor_limit();
    let (args, listen) = args.resolve()?;
    let relay = relay_caps(&args);
    let supernode = core.start_as_supernode;
    if supernode && args.list_servers.is_empty() {
        bail!("a supernode needs --list-server ADDR (or `list-server` in the --config file)");
    }
    let state_dir = runtime::state_dir(args.state_dir, None)?;
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    if !supernode
        && args.list_servers.is_empty()
        && args.peers.is_empty()
        && !state_dir.join(CACHE_FILE).exists()
    {
        bail!(
            "no supernodes to join: pass --list-server ADDR or --peer NODEID@HOST:PORT \
             (there is no cached list in {} from an earlier run)",
            state_dir.display()
        );
    }
    // The watch is registered before the first scan, so no change is lost at start-up.
    let folder = match &args.share {
        Some(dir) => Some(share::open_watched(dir, &state_dir, true)?),
        None => None,
    };
    let identity = Arc::new(Identity::load_or_create(&state_dir)?);
    core.max_leaves = args.max_leaves.unwrap_or(core.max_leaves);
    core.supernodes = args.supernodes.map_or(core.supernodes, |n| n as usize);
    core.list_servers = !args.list_servers.is_empty();
    let config = LeafConfig {
        listen,
        advertise: args.advertise,
        list_servers: args.list_servers,
        peers: args.peers,
        state_dir: state_dir.clone(),
        core,
        max_neighbors: supernode_tunables.max_neighbors,
        directory: supernode_tunables.directory,
        max_files_per_leaf: args.max_files_per_leaf.map(|n| n as usize),
        max_connections: args.max_connections.map(|n| n as usize),
        relay,
    };
    let control_addr = args
        .control
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    let downloads_dir = args
        .downloads
        .clone()
        .unwrap_or_else(|| state_dir.join("downloads"));
    runtime::tokio()?.block_on(async {
        let leaf = Leaf::bind(identity, config, folder).context("cannot start the node")?;
        let handle = leaf.handle();
        let (stop_tx, stop_rx) = watch::channel(false);
        let metrics = args.metrics.map(|_| Arc::new(NodeMetrics::new()));
        let control_handler = Arc::new(NodeControl {
            leaf: handle,
            downloads: Downloads::reaching(leaf.reacher(), downloads_dir.clone()),
            uploads: leaf.uploads(),
            share: args.share.clone(),
            metrics: metrics.clone(),
        });
        let metrics_addr = match (args.metrics, metrics) {
            (Some(addr), Some(metrics)) => {
                let handler = control_handler.clone();
                let render = move || {
                    let (handler, metrics) = (handler.clone(), metrics.clone());
                    async move {
                        let status = handler.status().await;
                        let sharing = handler.sharing().await;
                        metrics.observe(&status, &sharing);
                        metrics.render()
                    }
                };
                Some(crate::metrics::serve(addr, render, stopped(stop_rx.clone())).await?)
            }
            _ => None,
        };
        let control = control::serve(
            control_handler,
            control_addr,
            &state_dir,
            stopped(stop_rx.clone()),
        )
        .await?;
        let node_id = leaf.node_id();
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "superpeer {}",
            if supernode { "supernode" } else { "leaf" }
        )?;
        writeln!(out, "node id: {node_id}")?;
        writeln!(out, "listening on: {}", leaf.local_addr()?)?;
        writeln!(out, "control: {}", control.addr())?;
        if let Some(addr) = metrics_addr {
            writeln!(out, "metrics: http://{addr}/metrics")?;
        }
        writeln!(out, "downloads: {}", downloads_dir.display())?;
        writeln!(out, "pinned address: {node_id}@{}", leaf.advertise())?;
        out.flush()?;
        drop(out);
        let running = tokio::spawn(leaf.run(stopped(stop_rx)));
        runtime::shutdown_signal().await;
        let _ = stop_tx.send(true);
        running.await.context("the node stopped unexpectedly")?;
        control.finished().await;
        Ok(())
    })
}

/// Open files a daemon asks for when the hard limit is unlimited.
#[cfg(unix)]
const WANTED_DESCRIPTORS: u64 = 1 << 20;

/// Raises the soft limit on open files to the hard one. A daemon holds a socket per control
/// connection and a file per upload, download and scan, and the common soft default
/// (1,024) is what a local flood exhausted first; the hard limit is what the administrator
/// allows. Failing to raise it is not fatal: the caps on connections still hold.
#[cfg(unix)]
pub fn raise_descriptor_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let target = limit.maximum.unwrap_or(WANTED_DESCRIPTORS);
    if limit.current.is_some_and(|current| current >= target) || limit.current.is_none() {
        return;
    }
    let raised = Rlimit {
        current: Some(target),
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(from = ?limit.current, to = target, "raised the open-file limit"),
        Err(e) => {
            tracing::info!(error = %e, limit = ?limit.current, "cannot raise the open-file limit")
        }
    }
}

#[cfg(not(unix))]
pub fn raise_descriptor_limit() {}

/// Completes when `stop` turns true (or its sender is gone).
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// The control API's view of a node.
struct NodeControl {
    leaf: LeafHandle,
    downloads: Downloads,
    uploads: Arc<Uploads>,
    /// The shared folder, as given.
    share: Option<std::path::PathBuf>,
    /// Where searches are counted, with `--metrics`.
    metrics: Option<Arc<NodeMetrics>>,
}

impl ControlHandler for NodeControl {
    async fn status(&self) -> StatusJson {
        let downloads = self.downloads.list();
        let uploaded_bytes = self.uploads.sent().0;
        match self.leaf.status().await {
            Some(status) => status.to_json(downloads, uploaded_bytes),
            None => StatusJson {
                node_id: String::new(),
                role: "leaf".into(),
                supernode: None,
                shared_files: 0,
                hashing: None,
                candidates: Vec::new(),
                supernodes: Vec::new(),
                publication: None,
                leaves: None,
                neighbors: None,
                indexed: None,
                queries_forwarded: None,
                queries_received: None,
                summaries: None,
                directory: None,
                reachability: Default::default(),
                relay: None,
                listen: String::new(),
                advertise: String::new(),
                downloads,
                uploaded_bytes,
            },
        }
    }

    async fn search(
        &self,
        request: SearchRequest,
    ) -> Result<mpsc::Receiver<SearchLineJson>, String> {
        let (started, want) = (std::time::Instant::now(), request.want);
        let mut hits = self.leaf.search(request.keywords, request.want).await?;
        let (tx, rx) = mpsc::channel(256);
        let downloads = self.downloads.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let mut got = 0usize;
            while let Some(hit) = hits.recv().await {
                let hit = match hit {
                    Ok(hit) => hit,
                    Err(error) => {
                        let _ = tx.send(SearchLineJson::Error(ErrorJson { error })).await;
                        break;
                    }
                };
                got += 1;
                downloads.remember(&hit);
                let result = SearchResultJson {
                    content_id: hit.content_id.to_string(),
                    name: names::sanitize(&hit.name),
                    size: hit.size,
                    sources: hit.holders.len(),
                    holders: hit
                        .holders
                        .iter()
                        .map(|h| HolderJson {
                            node_id: h.node_id.to_string(),
                            addr: h.addr.to_string(),
                            firewalled: h.via.is_some(),
                        })
                        .collect(),
                };
                if tx.send(SearchLineJson::Result(result)).await.is_err() {
                    break;
                }
            }
            if let Some(metrics) = metrics {
                metrics.search_finished(SearchOutcome::of(got, want), started.elapsed());
            }
        });
        Ok(rx)
    }

    async fn get(&self, request: GetRequest) -> Result<mpsc::Receiver<GetEventJson>, String> {
        self.downloads.get(request, self.leaf.clone())
    }

    async fn downloads(&self) -> Vec<DownloadJson> {
        self.downloads.list()
    }

    async fn promote(&self) -> Result<PromoteJson, String> {
        let outcome = self.leaf.promote().await?;
        Ok(PromoteJson {
            role: "supernode".into(),
            listed_by: outcome.listed_by.iter().map(|a| a.to_string()).collect(),
            note: outcome.note,
        })
    }

    async fn demote(&self) -> Result<(), String> {
        self.leaf.demote().await
    }

    async fn download_action(
        &self,
        content_id: String,
        action: DownloadAction,
    ) -> Result<(), String> {
        match action {
            DownloadAction::Pause => self.downloads.pause(&content_id),
            DownloadAction::Resume => self.downloads.resume(&content_id, self.leaf.clone()),
            DownloadAction::Cancel => self.downloads.cancel(&content_id).await,
        }
    }

    async fn sharing(&self) -> SharingJson {
        let (upload_peers, upload_sessions) = self.uploads.open_sessions();
        let (uploaded_bytes, uploaded_pieces) = self.uploads.sent();
        SharingJson {
            folder: self.share.as_ref().map(|dir| dir.display().to_string()),
            upload_peers,
            upload_sessions,
            uploaded_bytes,
            uploaded_pieces,
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

    #[test]
    fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
        let before = getrlimit(Resource::Nofile);
        let Some(hard) = before.maximum.filter(|hard| *hard > 256) else {
            return; // nothing to lower and raise on this machine
        };
        let lowered = Rlimit {
            current: Some(256),
            maximum: Some(hard),
        };
        setrlimit(Resource::Nofile, lowered).unwrap();
        super::raise_descriptor_limit();
        let after = getrlimit(Resource::Nofile);
        // Put back whatever the test process had, whatever happened.
        setrlimit(Resource::Nofile, before).unwrap();
        assert_eq!(after.current, Some(hard));
        assert_eq!(after.maximum, Some(hard));
    }
}

/// The relay's caps: the defaults, with what the flags change.
fn relay_caps(args: &DaemonArgs) -> RelayCaps {
    let mut caps = RelayCaps::default();
    if let Some(n) = args.relay_sessions {
        caps.max_sessions = n as usize;
    }
    if let Some(rate) = args.relay_rate {
        caps.rate = rate;
        caps.burst = caps.burst.max(rate / 4);
    }
    if let Some(bytes) = args.relay_max_bytes {
        caps.max_bytes = bytes;
    }
    if let Some(secs) = args.relay_max_seconds {
        caps.max_duration = std::time::Duration::from_secs(secs);
    }
    caps
}
