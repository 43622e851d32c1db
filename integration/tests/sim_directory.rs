//! The keyword directory in the simulator: a network whose overlay cannot reach far (60
//! supernodes in a chain, at most 2 links each, so two hops reach 5 of them), each
//! supernode holding one file nobody else has, and every file searched for from the
//! other end of the chain.
//!
//! With the directory, the owners of a query's word name the one supernode that holds it,
//! which is asked directly: every query whose file is in the network finds it. Without it
//! (`CoreConfig::directory = false`, the same run otherwise), queries reach two hops and
//! find almost nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use superpeer_common::ContentId;
use superpeer_integration::sim::{self, Layout, Outcome, Report, SimConfig, Workload};
use superpeer_integration::workload::{CatalogFile, word};
use superpeer_supernode::CoreConfig;

const SUPERNODES: u32 = 60;
const LEAVES_PER_SUPERNODE: u32 = 10;

/// File `s`, held by the first leaf of supernode `s`: a word nobody else's name has.
fn rare_file(s: u32) -> CatalogFile {
    let name = format!("{} live {s}.dat", word(2_000 + s as usize));
    let bytes = format!("the one copy of {name}").into_bytes();
    CatalogFile {
        content_id: ContentId::of_bytes(&bytes),
        name,
        bytes,
    }
}

fn run(directory: bool) -> Report {
    let leaves = SUPERNODES * LEAVES_PER_SUPERNODE;
    let workload = Workload {
        catalog: (0..SUPERNODES).map(rare_file).collect(),
        shares: (0..leaves)
            .map(|leaf| {
                let (s, k) = (leaf / LEAVES_PER_SUPERNODE, leaf % LEAVES_PER_SUPERNODE);
                if k == 0 { vec![s as usize] } else { Vec::new() }
            })
            .collect(),
        queries: (0..SUPERNODES)
            .map(|s| vec![word(2_000 + s as usize)])
            .collect(),
    };
    // Query s is sent by a leaf of the supernode half the chain away from the holder.
    let layout = Layout {
        links: (1..SUPERNODES).map(|s| (s - 1, s)).collect(),
        homes: (0..leaves)
            .map(|leaf| leaf / LEAVES_PER_SUPERNODE)
            .collect(),
        askers: (0..SUPERNODES)
            .map(|s| ((s + SUPERNODES / 2) % SUPERNODES) * LEAVES_PER_SUPERNODE + 1)
            .collect(),
    };
    let config = SimConfig {
        supernodes: SUPERNODES as usize,
        leaves_per_supernode: LEAVES_PER_SUPERNODE as usize,
        queries: SUPERNODES as usize,
        seed: 11,
        churn: None,
        query_rate: 10.0,
        layout: Some(layout),
        core: CoreConfig {
            directory,
            ..CoreConfig::default()
        },
        ..SimConfig::default()
    };
    let report = sim::run_with(&config, &workload);
    print!("{}", report.table());
    assert_eq!(report.link_mismatches, 0);
    assert_eq!(report.degree.max, 2.0, "the chain is the overlay");
    assert_eq!(report.queries, SUPERNODES as usize, "every query was sent");
    assert_eq!(report.routing.wrong_results, 0);
    report
}

#[test]
fn the_directory_finds_files_the_overlay_cannot_reach() {
    let with = run(true);
    let d = &with.directory;
    assert!(d.success_held >= 0.9, "{:.2}", d.success_held);
    assert_eq!(d.partial, 0, "one file a query: found or not");
    assert!(d.lookups.mean >= 2.0, "a lookup and its answer per query");
    assert!(d.direct.mean >= 0.9, "the holder is asked directly");
    assert_eq!(d.members, SUPERNODES as usize);
    assert!(d.upkeep_messages > 0, "the holders published to the owners");
    for q in with
        .per_query
        .iter()
        .filter(|q| q.outcome == Outcome::Complete)
    {
        assert_eq!(q.direct, 1, "only the holder is asked directly: {q:?}");
    }

    let without = run(false);
    let d = &without.directory;
    assert!(!d.enabled);
    assert_eq!(d.upkeep_messages, 0, "nothing is published");
    assert_eq!(d.lookups.max, 0.0, "nothing is looked up");
    assert!(
        d.success_held < 0.2,
        "two hops of a chain reach few holders: {:.2}",
        d.success_held
    );
    assert!(d.success_held < with.directory.success_held);
}

/// Membership views lag by up to a fetch, so an owner may first refuse a publisher it
/// does not list yet (sent again after 3 s), and an owner that has just become one knows
/// nothing yet (its answer is merged with the next owner's): neither may lose a file.
/// (SIMULATOR.md, finding 9.)
#[test]
fn with_the_directory_every_file_in_the_network_is_found() {
    let with = run(true);
    for (s, q) in with.per_query.iter().enumerate() {
        assert_eq!(q.truth, 1, "file {s} is held while its query runs");
        assert_eq!(q.outcome, Outcome::Complete, "file {s}: {q:?}");
    }
    assert_eq!(with.directory.zero, 0);
}
