//! `superpeer supernodes`: asks list servers for supernodes and prints them.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::bail;
use serde::Serialize;
use superpeer_bootstrap_list::fetch_supernodes;
use superpeer_common::wire::{Role, SupernodeInfo};
use superpeer_common::{Endpoint, Identity, TransportLimits};

use crate::cli::SupernodesArgs;
use crate::runtime;

/// One line of `--json` output.
#[derive(Serialize)]
struct JsonLine {
    node_id: String,
    addr: String,
    leaves: u32,
    capacity: u32,
    neighbors: u32,
    stale: bool,
}

pub fn run(args: SupernodesArgs) -> anyhow::Result<()> {
    runtime::tokio()?.block_on(async {
        // A throwaway identity: asking for a list needs no reputation, and this command must
        // not touch a daemon's state.
        let identity = Arc::new(Identity::generate()?);
        let mut seen = HashSet::new();
        let mut supernodes: Vec<SupernodeInfo> = Vec::new();
        let mut errors = Vec::new();
        for server in &args.list_servers {
            let endpoint =
                Endpoint::client(identity.clone(), server.addr, TransportLimits::default())?;
            match fetch_supernodes(&endpoint, server, Role::Leaf, args.max).await {
                Ok(list) => {
                    for s in list.supernodes {
                        if seen.insert(s.node_id) {
                            supernodes.push(s);
                        }
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
            endpoint.shutdown().await;
        }
        if errors.len() == args.list_servers.len() {
            bail!("no list server answered: {}", errors.join("; "));
        }
        for e in &errors {
            eprintln!("superpeer: warning: {e}");
        }
        print(&supernodes, args.json)
    })
}

fn print(supernodes: &[SupernodeInfo], json: bool) -> anyhow::Result<()> {
    if json {
        for s in supernodes {
            let line = JsonLine {
                node_id: s.node_id.to_string(),
                addr: s.addr.to_string(),
                leaves: s.load.leaves,
                capacity: s.load.capacity,
                neighbors: s.load.neighbors,
                stale: s.stale,
            };
            println!("{}", serde_json::to_string(&line)?);
        }
        return Ok(());
    }
    if supernodes.is_empty() {
        println!("no supernodes listed");
        return Ok(());
    }
    println!(
        "{:<64}  {:<21}  {:>11}  {:>9}  note",
        "node id", "address", "leaves/cap", "neighbors"
    );
    for s in supernodes {
        let note = if s.stale {
            "stale (from before a list-server restart)"
        } else {
            ""
        };
        let load = format!("{}/{}", s.load.leaves, s.load.capacity);
        println!(
            "{:<64}  {:<21}  {:>11}  {:>9}  {note}",
            s.node_id, s.addr, load, s.load.neighbors
        );
    }
    Ok(())
}
