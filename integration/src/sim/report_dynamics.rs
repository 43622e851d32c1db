//! The dynamics part of a report: crashes, stops, joins, failover, elections, placement
//! over time, and query success by window of send time around the fault.

use std::fmt::Write as _;

use super::dynamics::{Dynamics, PhaseFigures, Tracker};
use super::queries::QueryRecord;
use super::report::Report;
use super::world::World;

pub fn want_of(world: &World<'_>) -> usize {
    world.config.want as usize
}

/// The dynamics of `world`'s run: the tracker's figures, the leaves still orphaned, and
/// query success by window of send time around the fault.
pub fn dynamics(world: &World<'_>, want: usize) -> Dynamics {
    let mut still = [0usize; 3];
    for n in 0..world.leaves.len() as u32 {
        if let Some((_, cause)) = world.leaves.get(n).and_then(|l| l.orphaned) {
            if let Some(c) = still.get_mut(Tracker::cause_index(cause)) {
                *c += 1;
            }
        }
    }
    let elected_running = world
        .nodes
        .iter()
        .filter(|n| n.is_up() && n.owner.is_some())
        .count();
    let fault = world.timeline.fault;
    let window = world.config.faults.window;
    let phase_of = |r: &QueryRecord| match fault {
        None => "all",
        Some(at) if r.start < at => "before the fault",
        Some(at) if r.start < at + window => "during the fault window",
        Some(_) => "after the fault window",
    };
    let names: &[&str] = if fault.is_some() {
        &[
            "before the fault",
            "during the fault window",
            "after the fault window",
        ]
    } else {
        &["all"]
    };
    let phases = names
        .iter()
        .map(|name| {
            let sent: Vec<&QueryRecord> = world
                .queries
                .records
                .iter()
                .filter(|r| r.sent && phase_of(r) == *name)
                .collect();
            let count = sent.len().max(1) as f64;
            PhaseFigures {
                phase: (*name).to_string(),
                queries: sent.len(),
                success: sent
                    .iter()
                    .filter(|r| r.found.len() >= want.min(r.truth))
                    .count() as f64
                    / count,
                success_held: sent
                    .iter()
                    .filter(|r| r.truth > 0 && r.found.len() >= want.min(r.truth))
                    .count() as f64
                    / sent.iter().filter(|r| r.truth > 0).count().max(1) as f64,
                zero_held: sent
                    .iter()
                    .filter(|r| r.truth > 0 && r.found.is_empty())
                    .count(),
                found: sent.iter().map(|r| r.found.len() as f64).sum::<f64>() / count,
                truth: sent.iter().map(|r| r.truth as f64).sum::<f64>() / count,
                lost: sent.iter().filter(|r| r.end.is_none()).count(),
            }
        })
        .collect();
    world.dynamics.figures(still, elected_running, phases)
}

impl Report {
    /// The dynamics part of the table.
    pub fn dynamics_table(&self, out: &mut String) {
        let d = &self.dynamics;
        let _ = writeln!(
            out,
            "\nnetwork: {} supernodes started, {} joined, {} crashed, {} stopped; {} elections, {} step-downs ({} while the list server refused them), {} elected running at the end",
            self.supernodes,
            self.joined,
            d.crashed,
            d.stopped,
            d.elections,
            d.step_downs,
            d.step_downs_refused,
            d.elected_running
        );
        let _ = writeln!(
            out,
            "leaves: {} online, {} placed ({} attached) at the end; every leaf placed first at {}; most unplaced {} at {:.0} s",
            self.online,
            self.placed,
            self.attached,
            d.all_placed_secs
                .map_or("never".to_string(), |s| format!("{s:.0} s")),
            d.max_unplaced,
            d.max_unplaced_secs
        );
        let _ = writeln!(
            out,
            "probing: {:.2} probes per leaf and second ({:.0} per supernode and second), {:.3} list fetches per leaf and second; {} moves to a faster supernode ({:.4} per leaf and second)",
            d.probes_per_leaf_sec,
            d.probes_per_supernode_sec,
            d.list_fetches_per_leaf_sec,
            d.moves,
            d.moves_per_leaf_sec
        );
        let _ = writeln!(
            out,
            "attaches: {} welcomed, {} refused as full, {} failed; {} searches under way ended by their leaf's move",
            d.attaches_welcomed, d.attaches_refused, d.attaches_failed, d.searches_ended_by_moves
        );
        for f in &d.failover {
            let _ = writeln!(
                out,
                "failover after a {}: {} leaves; attached again p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({}); searchable again p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} sharing); {} went offline first, {} not failed over at the end",
                f.cause,
                f.orphaned,
                f.reattached_ms.p50,
                f.reattached_ms.p99,
                f.reattached_ms.max,
                f.reattached_ms.count,
                f.searchable_ms.p50,
                f.searchable_ms.p99,
                f.searchable_ms.max,
                f.searchable_ms.count,
                f.left,
                f.pending
            );
        }
        if d.phases.len() > 1 {
            for p in &d.phases {
                let _ = writeln!(
                    out,
                    "queries {}: {} sent, {:.1}% success ({:.1}% among held, {} zero although held), {:.1} results (truth {:.1}), {} ended without the supernode's answer",
                    p.phase,
                    p.queries,
                    p.success * 100.0,
                    p.success_held * 100.0,
                    p.zero_held,
                    p.found,
                    p.truth,
                    p.lost
                );
            }
        }
        if !d.series.is_empty() {
            let _ = writeln!(
                out,
                "\n{:>7} {:>9} {:>9} {:>9} {:>11} {:>8} {:>9} {:>10} {:>13} {:>7}",
                "t (s)",
                "online",
                "placed",
                "unplaced",
                "supernodes",
                "elected",
                "elections",
                "step-downs",
                "probes/leaf/s",
                "moves"
            );
            for s in &d.series {
                let _ = writeln!(
                    out,
                    "{:>7.0} {:>9} {:>9} {:>9} {:>11} {:>8} {:>9} {:>10} {:>13.2} {:>7}",
                    s.at_secs,
                    s.online,
                    s.placed,
                    s.unplaced,
                    s.supernodes,
                    s.elected,
                    s.elections,
                    s.step_downs,
                    s.probes_per_leaf_sec,
                    s.moves
                );
            }
        }
        let _ = writeln!(out);
    }
}
