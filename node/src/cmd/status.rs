//! `superpeer status`: shows the running daemon's state.

use crate::cli::StatusArgs;
use crate::control::ControlClient;
use crate::runtime;

pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let client = ControlClient::from_state_dir(&runtime::state_dir(args.state_dir, None)?)?;
    let status = client.status()?;
    if args.json {
        println!("{}", serde_json::to_string(&status)?);
        return Ok(());
    }
    println!("node id:      {}", status.node_id);
    println!("role:         {}", status.role);
    println!("listening on: {}", status.listen);
    println!("advertised:   {}", status.advertise);
    match &status.supernode {
        Some(s) => println!(
            "supernode:    {} at {} ({:.1} ms)",
            s.node_id, s.addr, s.rtt_ms
        ),
        None if status.role == "leaf" => println!("supernode:    none yet (joining)"),
        None => {}
    }
    for spare in status.supernodes.iter().skip(1) {
        println!(
            "spare:        {} at {} ({:.1} ms)",
            spare.node_id, spare.addr, spare.rtt_ms
        );
    }
    let measured = status.candidates.iter().filter(|c| c.rtt_ms.is_some());
    let best: Vec<String> = measured
        .take(3)
        .map(|c| match c.rtt_ms {
            Some(rtt) => format!("{} ({rtt:.1} ms)", c.addr),
            None => c.addr.clone(),
        })
        .collect();
    if !status.candidates.is_empty() {
        println!(
            "candidates:   {} known{}{}",
            status.candidates.len(),
            if best.is_empty() { "" } else { ", best " },
            best.join(", ")
        );
    }
    let reach = &status.reachability;
    let mut reachability = reach.kind.clone();
    if let Some(mapping) = &reach.mapping {
        reachability.push_str(&format!(" ({mapping} mapping)"));
    }
    if let Some(observed) = &reach.observed {
        reachability.push_str(&format!(", seen at {observed}"));
    }
    println!("reachability: {reachability}");
    println!("shared files: {}", status.shared_files);
    if let Some(h) = status.hashing.filter(|h| h.files > 0) {
        println!(
            "hashing:      {} of {} files, {} of {} MB",
            h.files_done,
            h.files,
            h.bytes_done / 1_000_000,
            h.bytes / 1_000_000
        );
    }
    if let Some(p) = &status.publication {
        match &p.reason {
            Some(reason) => println!(
                "indexed:      {} of {} ({} not indexed: {reason})",
                p.indexed,
                p.indexed + p.pending,
                p.pending
            ),
            None => println!("indexed:      {} of {}", p.indexed, p.indexed + p.pending),
        }
    }
    if let Some(leaves) = status.leaves {
        println!("leaves:       {leaves}");
    }
    if let Some(neighbors) = status.neighbors {
        println!("neighbors:    {neighbors}");
    }
    Ok(())
}
