//! `superpeer leaf`: runs a leaf until Ctrl-C or SIGTERM, with its control API.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use superpeer_bootstrap_list::RegistrationStatus;
use superpeer_common::Identity;
use tokio::sync::{mpsc, watch};

use crate::cli::LeafArgs;
use crate::control::{
    self, ControlHandler, DownloadJson, ErrorJson, GetEventJson, GetRequest, HolderJson,
    PromoteJson, SearchLineJson, SearchRequest, SearchResultJson, StatusJson, SummariesJson,
    SupernodeJson,
};
use crate::downloads::Downloads;
use crate::leaf::{CACHE_FILE, ElectionConfig, JoinConfig, Leaf, LeafConfig, LeafHandle};
use crate::share::SharedFolder;
use crate::transfer::Uploads;
use crate::{names, runtime};

pub fn run(args: LeafArgs) -> anyhow::Result<()> {
    let (args, listen) = args.resolve()?;
    let state_dir = runtime::state_dir(args.state_dir, None)?;
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    if args.list_servers.is_empty() && args.peers.is_empty() && !state_dir.join(CACHE_FILE).exists()
    {
        bail!(
            "no supernodes to join: pass --list-server ADDR or --peer NODEID@HOST:PORT \
             (there is no cached list in {} from an earlier run)",
            state_dir.display()
        );
    }
    let folder = match &args.share {
        Some(dir) => Some(SharedFolder::open(dir, &state_dir, true)?),
        None => None,
    };
    let identity = Arc::new(Identity::load_or_create(&state_dir)?);
    let config = LeafConfig {
        listen,
        advertise: args.advertise,
        list_servers: args.list_servers,
        peers: args.peers,
        share: args.share,
        state_dir: state_dir.clone(),
        join: JoinConfig::default(),
        reprobe_interval: Duration::from_secs(30),
        refresh_interval: Duration::from_secs(30),
        max_leaves: args.max_leaves.unwrap_or(500),
        election: ElectionConfig {
            enabled: !args.no_election,
            ..ElectionConfig::with_min_uptime(Duration::from_secs(args.promote_after))
        },
    };
    let control_addr = args
        .control
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    let downloads_dir = args
        .downloads
        .clone()
        .unwrap_or_else(|| state_dir.join("downloads"));
    runtime::tokio()?.block_on(async {
        let leaf = Leaf::bind(identity, config, folder).context("cannot start the leaf")?;
        let handle = leaf.handle();
        let (stop_tx, stop_rx) = watch::channel(false);
        let control_handler = LeafControl {
            leaf: handle,
            downloads: Downloads::new(leaf.endpoint(), downloads_dir.clone()),
            uploads: leaf.uploads(),
        };
        let control = control::serve(
            Arc::new(control_handler),
            control_addr,
            &state_dir,
            stopped(stop_rx.clone()),
        )
        .await?;
        let node_id = leaf.node_id();
        let mut out = std::io::stdout().lock();
        writeln!(out, "superpeer leaf")?;
        writeln!(out, "node id: {node_id}")?;
        writeln!(out, "listening on: {}", leaf.local_addr()?)?;
        writeln!(out, "control: {}", control.addr())?;
        writeln!(out, "downloads: {}", downloads_dir.display())?;
        writeln!(out, "pinned address: {node_id}@{}", leaf.advertise())?;
        out.flush()?;
        drop(out);
        let running = tokio::spawn(leaf.run(stopped(stop_rx)));
        runtime::shutdown_signal().await;
        let _ = stop_tx.send(true);
        running.await.context("the leaf stopped unexpectedly")?;
        control.finished().await;
        Ok(())
    })
}

/// Completes when `stop` turns true (or its sender is gone).
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// The control API's view of a leaf.
struct LeafControl {
    leaf: LeafHandle,
    downloads: Downloads,
    uploads: Arc<Uploads>,
}

impl ControlHandler for LeafControl {
    async fn status(&self) -> StatusJson {
        let downloads = self.downloads.list();
        let uploaded_bytes = self.uploads.sent().0;
        match self.leaf.status().await {
            Some(s) => StatusJson {
                node_id: s.node_id.to_string(),
                role: if s.promoted.is_some() {
                    "supernode"
                } else {
                    "leaf"
                }
                .into(),
                supernode: s.supernode.map(|(id, addr, rtt)| SupernodeJson {
                    node_id: id.to_string(),
                    addr: addr.to_string(),
                    rtt_ms: rtt.as_secs_f64() * 1000.0,
                }),
                shared_files: s.shared_files,
                leaves: s.promoted.as_ref().map(|p| p.core.leaves),
                neighbors: s.promoted.as_ref().map(|p| p.core.neighbors.len()),
                indexed: s.promoted.as_ref().map(|p| p.core.indexed),
                queries_forwarded: s.promoted.as_ref().map(|p| p.core.router.forwarded),
                queries_received: s.promoted.as_ref().map(|p| p.core.queries_from_neighbors),
                summaries: s.promoted.as_ref().map(|p| SummariesJson::from(&p.core)),
                listen: s.listen.to_string(),
                advertise: s.advertise.to_string(),
                downloads,
                uploaded_bytes,
            },
            None => StatusJson {
                node_id: String::new(),
                role: "leaf".into(),
                supernode: None,
                shared_files: 0,
                leaves: None,
                neighbors: None,
                indexed: None,
                queries_forwarded: None,
                queries_received: None,
                summaries: None,
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
        let mut hits = self.leaf.search(request.keywords, request.want).await?;
        let (tx, rx) = mpsc::channel(256);
        let downloads = self.downloads.clone();
        tokio::spawn(async move {
            while let Some(hit) = hits.recv().await {
                let hit = match hit {
                    Ok(hit) => hit,
                    Err(error) => {
                        let _ = tx.send(SearchLineJson::Error(ErrorJson { error })).await;
                        break;
                    }
                };
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
                        })
                        .collect(),
                };
                if tx.send(SearchLineJson::Result(result)).await.is_err() {
                    break;
                }
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
        self.leaf.promote().await?;
        confirm_promotion(&self.leaf).await
    }
}

/// How long `promote` waits for the list servers' dial-back.
const PROMOTE_CONFIRM: Duration = Duration::from_secs(10);

/// Waits until a list server lists the new supernode. If every list server refuses it
/// (most often: it cannot dial us back at our advertised address), the node steps back
/// down: a supernode nobody can reach would only lose its leaves.
async fn confirm_promotion(leaf: &LeafHandle) -> Result<PromoteJson, String> {
    let answer = |listed_by: Vec<String>, note: Option<&str>| PromoteJson {
        role: "supernode".into(),
        listed_by,
        note: note.map(str::to_string),
    };
    let deadline = Instant::now() + PROMOTE_CONFIRM;
    loop {
        let registrations = leaf
            .status()
            .await
            .and_then(|s| s.promoted)
            .map(|p| p.registrations)
            .ok_or("the daemon is stopping")?;
        if registrations.is_empty() {
            return Ok(answer(
                Vec::new(),
                Some(
                    "no list server configured: others find this supernode through --peer or gossip",
                ),
            ));
        }
        let listed_by: Vec<String> = registrations
            .iter()
            .filter(|(_, r)| matches!(r, RegistrationStatus::Registered { listed: true }))
            .map(|(addr, _)| addr.to_string())
            .collect();
        if !listed_by.is_empty() {
            return Ok(answer(listed_by, None));
        }
        let refusals: Vec<String> = registrations
            .iter()
            .filter_map(|(addr, r)| match r {
                RegistrationStatus::Refused(reason) => Some(format!("{addr}: {reason}")),
                _ => None,
            })
            .collect();
        if refusals.len() == registrations.len() {
            leaf.demote().await?;
            return Err(format!(
                "the list server will not list this node ({}); it stays a leaf",
                refusals.join("; ")
            ));
        }
        if Instant::now() >= deadline {
            return Ok(answer(
                Vec::new(),
                Some("promoted; no list server has confirmed it yet"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
