//! `superpeer supernode`: runs a supernode until Ctrl-C or SIGTERM, with its control API.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use superpeer_common::Identity;
use superpeer_supernode::{Supernode, SupernodeConfig, SupernodeHandle};
use tokio::sync::{mpsc, watch};

use super::leaf::stopped;
use crate::cli::SupernodeArgs;
use crate::control::{
    self, ControlHandler, DownloadJson, GetEventJson, GetRequest, PromoteJson, SearchLineJson,
    SearchRequest, StatusJson, SummariesJson,
};
use crate::leaf::transfer_service;
use crate::transfer::{ServedFiles, Uploads};
use crate::{runtime, share};

pub fn run(args: SupernodeArgs) -> anyhow::Result<()> {
    let (args, listen) = args.resolve()?;
    let state_dir = runtime::state_dir(args.state_dir, None)?;
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let shared = match &args.share {
        Some(dir) => share::scan(dir)?,
        None => Vec::new(),
    };
    let identity = Arc::new(Identity::load_or_create(&state_dir)?);
    let mut config = SupernodeConfig::new(listen);
    config.advertise = args.advertise;
    config.list_servers = args.list_servers;
    config.peers = args.peers;
    config.core.max_leaves = args.max_leaves.unwrap_or(500);
    if let Some(links) = args.max_neighbors {
        config.core.max_neighbors = usize::from(links);
    }
    // Our own shared files are served like a leaf serves its own.
    let served = ServedFiles::default();
    served.replace(
        shared
            .iter()
            .map(|s| (s.entry.content_id, s.path.clone()))
            .collect(),
    );
    let uploads = Arc::new(Uploads::default());
    config.transfer = Some(transfer_service(served, uploads.clone()));
    let control_addr = args
        .control
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    runtime::tokio()?.block_on(async {
        let supernode = Supernode::bind(identity, config).context("cannot start the supernode")?;
        let node_id = supernode.node_id();
        let handle = supernode.handle();
        let (stop_tx, stop_rx) = watch::channel(false);
        let control_handler = SupernodeControl {
            handle: handle.clone(),
            shared_files: shared.len(),
            uploads,
        };
        let control = control::serve(
            Arc::new(control_handler),
            control_addr,
            &state_dir,
            stopped(stop_rx.clone()),
        )
        .await?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "superpeer supernode")?;
        writeln!(out, "node id: {node_id}")?;
        writeln!(out, "listening on: {}", supernode.local_addr()?)?;
        writeln!(out, "sharing: {} files", shared.len())?;
        writeln!(out, "control: {}", control.addr())?;
        writeln!(out, "pinned address: {node_id}@{}", supernode.advertise())?;
        out.flush()?;
        drop(out);
        let running = tokio::spawn(supernode.run(stopped(stop_rx)));
        handle
            .share(shared.into_iter().map(|s| s.entry).collect(), Vec::new())
            .await;
        runtime::shutdown_signal().await;
        let _ = stop_tx.send(true);
        running
            .await
            .context("the supernode stopped unexpectedly")?;
        control.finished().await;
        Ok(())
    })
}

/// The control API's view of a supernode.
struct SupernodeControl {
    handle: SupernodeHandle,
    shared_files: usize,
    uploads: Arc<Uploads>,
}

impl ControlHandler for SupernodeControl {
    async fn status(&self) -> StatusJson {
        let status = self.handle.status().await;
        StatusJson {
            node_id: status
                .as_ref()
                .map(|s| s.node_id.to_string())
                .unwrap_or_default(),
            role: "supernode".into(),
            supernode: None,
            shared_files: self.shared_files,
            leaves: Some(status.as_ref().map_or(0, |s| s.core.leaves)),
            neighbors: Some(status.as_ref().map_or(0, |s| s.core.neighbors.len())),
            indexed: status.as_ref().map(|s| s.core.indexed),
            queries_forwarded: status.as_ref().map(|s| s.core.router.forwarded),
            queries_received: status.as_ref().map(|s| s.core.queries_from_neighbors),
            summaries: status.as_ref().map(|s| SummariesJson::from(&s.core)),
            listen: status
                .as_ref()
                .map(|s| s.advertise.to_string())
                .unwrap_or_default(),
            advertise: status
                .as_ref()
                .map(|s| s.advertise.to_string())
                .unwrap_or_default(),
            downloads: Vec::new(),
            uploaded_bytes: self.uploads.sent().0,
        }
    }

    async fn search(
        &self,
        _request: SearchRequest,
    ) -> Result<mpsc::Receiver<SearchLineJson>, String> {
        Err("searching from a supernode daemon is not supported; run `superpeer search` against a leaf".into())
    }

    async fn get(&self, _request: GetRequest) -> Result<mpsc::Receiver<GetEventJson>, String> {
        Err("downloading from a supernode daemon is not supported; run `superpeer get` against a leaf".into())
    }

    async fn downloads(&self) -> Vec<DownloadJson> {
        Vec::new()
    }

    async fn promote(&self) -> Result<PromoteJson, String> {
        Err("this node is a supernode already".into())
    }
}
