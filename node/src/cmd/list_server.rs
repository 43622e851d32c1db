//! `superpeer list-server`: runs the registry until Ctrl-C or SIGTERM.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use superpeer_bootstrap_list::{ListServer, ListServerConfig};

use crate::cli::ListServerArgs;
use crate::runtime;

pub fn run(args: ListServerArgs) -> anyhow::Result<()> {
    let state_dir = runtime::state_dir(args.state_dir, Some("list-server"))?;
    let mut config = ListServerConfig::new(args.listen, state_dir.clone());
    config.registry.heartbeat_interval = Duration::from_millis(args.heartbeat_ms);
    config.registry.expiry = Duration::from_millis(args.expiry_ms);
    config.registry.max_per_source = args.max_per_address as usize;
    anyhow::ensure!(
        config.registry.expiry > config.registry.heartbeat_interval,
        "--expiry-ms must be longer than --heartbeat-ms"
    );
    runtime::tokio()?.block_on(async {
        let server = ListServer::bind(config).context("cannot start the list server")?;
        let addr = server.local_addr()?;
        let node_id = server.node_id();
        // Scripts and tests read these lines; keep their shape.
        let mut out = std::io::stdout().lock();
        writeln!(out, "superpeer list server")?;
        writeln!(out, "node id: {node_id}")?;
        writeln!(out, "listening on: {addr}")?;
        writeln!(out, "state dir: {}", state_dir.display())?;
        writeln!(out, "pinned address: {node_id}@{addr}")?;
        out.flush()?;
        drop(out);
        server.run(runtime::shutdown_signal()).await?;
        Ok(())
    })
}
