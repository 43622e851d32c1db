//! `superpeer supernode`: runs a supernode until Ctrl-C or SIGTERM.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use superpeer_common::Identity;
use superpeer_supernode::{Supernode, SupernodeConfig};

use crate::cli::SupernodeArgs;
use crate::{runtime, share};

pub fn run(args: SupernodeArgs) -> anyhow::Result<()> {
    let state_dir = runtime::state_dir(args.state_dir, None)?;
    let shared = match &args.share {
        Some(dir) => share::scan(dir)?,
        None => Vec::new(),
    };
    let identity = Arc::new(Identity::load_or_create(&state_dir)?);
    let mut config = SupernodeConfig::new(args.listen);
    config.advertise = args.advertise;
    config.list_servers = args.list_servers;
    config.peers = args.peers;
    config.core.max_leaves = args.max_leaves;
    runtime::tokio()?.block_on(async {
        let supernode = Supernode::bind(identity, config).context("cannot start the supernode")?;
        let node_id = supernode.node_id();
        let handle = supernode.handle();
        let mut out = std::io::stdout().lock();
        writeln!(out, "superpeer supernode")?;
        writeln!(out, "node id: {node_id}")?;
        writeln!(out, "listening on: {}", supernode.local_addr()?)?;
        writeln!(out, "sharing: {} files", shared.len())?;
        writeln!(out, "pinned address: {node_id}@{}", supernode.advertise())?;
        out.flush()?;
        drop(out);
        let running = tokio::spawn(supernode.run(runtime::shutdown_signal()));
        handle
            .share(shared.into_iter().map(|s| s.entry).collect(), Vec::new())
            .await;
        running
            .await
            .context("the supernode stopped unexpectedly")?;
        Ok(())
    })
}
