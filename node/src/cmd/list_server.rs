//! `superpeer list-server`: runs the registry until Ctrl-C or SIGTERM.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use superpeer_bootstrap_list::{ListServer, ListServerConfig};

use crate::cli::ListServerArgs;
use crate::cmd::daemon::stopped;
use crate::metrics::{self, ListServerMetrics};
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
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let metrics_addr = match args.metrics {
            Some(metrics_addr) => {
                let metrics = Arc::new(ListServerMetrics::new(
                    server.stats(),
                    server.listed_probe(),
                ));
                let render = move || {
                    let metrics = metrics.clone();
                    async move { metrics.render() }
                };
                Some(metrics::serve(metrics_addr, render, stopped(stop_rx)).await?)
            }
            None => None,
        };
        let node_id = server.node_id();
        // Scripts and tests read these lines; keep their shape.
        let mut out = std::io::stdout().lock();
        writeln!(out, "superpeer list server")?;
        writeln!(out, "node id: {node_id}")?;
        writeln!(out, "listening on: {addr}")?;
        writeln!(out, "state dir: {}", state_dir.display())?;
        writeln!(out, "pinned address: {node_id}@{addr}")?;
        if let Some(addr) = metrics_addr {
            writeln!(out, "metrics: http://{addr}/metrics")?;
        }
        out.flush()?;
        drop(out);
        server.run(runtime::shutdown_signal()).await?;
        let _ = stop_tx.send(true);
        Ok(())
    })
}
