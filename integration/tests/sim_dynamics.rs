//! The simulator's leaves run the daemon's `LeafCore`: small networks where supernodes
//! crash, or where too few supernodes start, must heal the way the cores decide, and the
//! report must say how long it took.
//!
//! - A crash: two of ten supernodes crash while queries run. Each of their leaves notices
//!   after the idle timeout, attaches elsewhere and publishes again; the report gives the
//!   failover times, and at the end every leaf is placed again.
//! - A shortage: two supernodes start where the leaves need ten; the list server says the
//!   network is short, leaves elect themselves (their cores decide when), and the network
//!   ends with every leaf placed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use superpeer_integration::sim::{self, Faults, SimConfig};
use superpeer_supernode::CoreConfig;

fn small(supernodes: usize, leaves_per_supernode: usize) -> SimConfig {
    SimConfig {
        supernodes,
        leaves_per_supernode,
        queries: 60,
        want: 20,
        seed: 7,
        files: 400,
        vocabulary: 80,
        files_per_leaf: 5,
        free_riders: 0.5,
        churn: None,
        query_rate: 5.0,
        ..SimConfig::default()
    }
}

#[test]
fn leaves_of_crashed_supernodes_fail_over_and_are_searchable_again() {
    let config = SimConfig {
        faults: Faults {
            crash: 0.2,
            at: Duration::from_secs(4),
            window: Duration::from_secs(6),
            ..Faults::default()
        },
        ..small(10, 20)
    };
    let report = sim::run(&config);
    print!("{}", report.table());
    let d = &report.dynamics;
    assert_eq!(d.crashed, 2);
    assert_eq!(d.elections, 0, "the network has room: nobody elects itself");
    let crash = d
        .failover
        .iter()
        .find(|f| f.cause == "crash")
        .expect("failover after the crash is reported");
    assert!(crash.orphaned >= 20, "the crashed supernodes had leaves");
    assert_eq!(crash.pending, 0, "every orphaned leaf failed over");
    assert_eq!(
        crash.reattached_ms.count + crash.left,
        crash.orphaned,
        "each orphan attached again"
    );
    assert!(
        crash.searchable_ms.count > 0,
        "sharing orphans were indexed again"
    );
    // Noticed after the leaf's 3 s idle timeout, then a list, probes and an attach.
    assert!(
        crash.reattached_ms.min >= 3_000.0,
        "{:?}",
        crash.reattached_ms
    );
    assert!(
        crash.searchable_ms.p99 < 15_000.0,
        "{:?}",
        crash.searchable_ms
    );
    assert_eq!(report.placed, report.online, "every leaf is placed again");
    assert_eq!(report.placed, 200);
    let phases: Vec<&str> = d.phases.iter().map(|p| p.phase.as_str()).collect();
    assert_eq!(
        phases,
        [
            "before the fault",
            "during the fault window",
            "after the fault window"
        ]
    );
    assert_eq!(report.link_mismatches, 0);
    assert_eq!(report.routing.wrong_results, 0);
}

#[test]
fn a_network_short_of_supernodes_elects_until_every_leaf_is_placed() {
    // Room for 60 leaves at the start (2 x 30); 200 leaves want it.
    let config = SimConfig {
        start_supernodes: Some(2),
        core: CoreConfig {
            max_leaves: 30,
            ..CoreConfig::default()
        },
        promote_after: Duration::from_secs(5),
        queries: 20,
        until_placed: true,
        min_duration: Duration::from_secs(120),
        ..small(10, 20)
    };
    let report = sim::run(&config);
    print!("{}", report.table());
    let d = &report.dynamics;
    assert!(d.elections > 0, "leaves elected themselves");
    assert!(d.elected_running > 0);
    let placed_at = d
        .all_placed_secs
        .expect("every leaf was placed at some point");
    assert!(d.max_unplaced >= 100, "most leaves had no room at first");
    assert_eq!(report.placed, report.online, "every leaf placed at the end");
    assert_eq!(report.online, 200);
    let last = d.series.last().unwrap();
    assert!(last.at_secs >= placed_at - 1.0);
    // Enough supernodes for everyone: running ones hold every leaf that is not one.
    assert!(
        (2 + d.elected_running) * 30 + d.elected_running >= 200,
        "{} elected",
        d.elected_running
    );
}
