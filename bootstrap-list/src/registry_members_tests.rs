//! The registry's membership: every path that changes the listing is logged, and a mirror
//! fed its pages ends up with the registry's member set, whatever happens between polls.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use superpeer_common::wire::{MemberChange, ToListServer};

use super::*;
use crate::members::MemberSync;

fn id(n: u16) -> NodeId {
    let mut bytes = [0u8; 32];
    bytes[..2].copy_from_slice(&n.to_be_bytes());
    NodeId::from_bytes(bytes)
}

fn addr(n: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 52, 2], 1 + n))
}

fn src(n: u16) -> IpAddr {
    IpAddr::from([10, 0, (n >> 8) as u8, n as u8])
}

fn load() -> Load {
    Load {
        leaves: 1,
        capacity: 10,
        neighbors: 0,
    }
}

/// Registers `n` at `at` and answers its dial-back with `reached`.
fn register(reg: &mut Registry, now: Instant, n: u16, at: SocketAddr, reached: bool) -> bool {
    match reg.handle_register(now, id(n), src(n), at, load()) {
        RegisterOutcome::DialBack { node_id, addr } => {
            reg.handle_dial_back(now, node_id, addr, reached)
        }
        _ => false,
    }
}

/// The changes since `since`, all on one page.
fn changes_since(reg: &Registry, since: u64) -> Vec<MemberChange> {
    let page = reg.members_page(reg.members_epoch(), since, None, 1_000);
    assert!(!page.snapshot && !page.more, "{page:?}");
    page.changes
}

fn joined(n: u16, at: SocketAddr) -> MemberChange {
    MemberChange {
        node_id: id(n),
        addr: Some(at),
    }
}

fn left(n: u16) -> MemberChange {
    MemberChange {
        node_id: id(n),
        addr: None,
    }
}

fn registry_members(reg: &Registry) -> BTreeMap<NodeId, SocketAddr> {
    reg.snapshot()
        .into_iter()
        .map(|e| (e.node_id, e.addr))
        .collect()
}

#[test]
fn every_way_in_or_out_of_the_list_is_a_membership_change() {
    let t0 = Instant::now();
    let mut reg = Registry::with_epoch(RegistryConfig::default(), 77);
    assert_eq!((reg.members_epoch(), reg.members_version()), (77, 0));
    assert!(register(&mut reg, t0, 1, addr(1), true));
    assert!(register(&mut reg, t0, 2, addr(2), true));
    assert!(
        !register(&mut reg, t0, 3, addr(3), false),
        "a failed dial-back lists nobody"
    );
    assert_eq!(
        changes_since(&reg, 0),
        vec![joined(1, addr(1)), joined(2, addr(2))]
    );

    // Refreshes and heartbeats change nobody's address.
    let v = reg.members_version();
    assert_eq!(
        reg.handle_register(t0, id(1), src(1), addr(1), load()),
        RegisterOutcome::Refreshed
    );
    assert!(reg.handle_heartbeat(t0, id(2), load()));
    assert_eq!(reg.members_version(), v);

    // A move counts once the new address is confirmed.
    assert!(matches!(
        reg.handle_register(t0, id(1), src(1), addr(11), load()),
        RegisterOutcome::DialBack { .. }
    ));
    assert_eq!(reg.members_version(), v);
    assert!(reg.handle_dial_back(t0, id(1), addr(11), true));
    assert_eq!(changes_since(&reg, v), vec![joined(1, addr(11))]);

    // Unregistering and expiring are leaves.
    let v = reg.members_version();
    reg.handle_unregister(id(2));
    reg.handle_unregister(id(9));
    let later = t0 + reg.config().expiry;
    assert_eq!(reg.handle_timeout(later), vec![id(1)]);
    assert_eq!(changes_since(&reg, v), vec![left(2), left(1)]);

    // Restored entries are members (listed, if stale); confirming one changes nothing.
    let v = reg.members_version();
    let saved = |n| SavedEntry {
        node_id: id(n),
        addr: addr(n),
        load: load(),
    };
    reg.restore(later, vec![saved(4), saved(5)]);
    assert_eq!(
        changes_since(&reg, v),
        vec![joined(4, addr(4)), joined(5, addr(5))]
    );
    let v = reg.members_version();
    assert!(register(&mut reg, later, 4, addr(4), true));
    assert_eq!(reg.members_version(), v);
    // A stale entry that registers from elsewhere moves on its dial-back.
    assert!(register(&mut reg, later, 5, addr(15), true));
    assert_eq!(changes_since(&reg, v), vec![joined(5, addr(15))]);
}

#[test]
fn a_mirror_of_a_restarted_server_starts_over_with_a_snapshot() {
    let t0 = Instant::now();
    let mut before = Registry::with_epoch(RegistryConfig::default(), 1);
    register(&mut before, t0, 1, addr(1), true);
    register(&mut before, t0, 2, addr(2), true);
    let mut sync = MemberSync::new();
    sync_with(&before, &mut sync, 10);
    assert_eq!(sync.members(), &registry_members(&before));

    // The successor has another epoch; its version happens to be ahead of ours.
    let mut after = Registry::with_epoch(RegistryConfig::default(), 2);
    for n in 2..6 {
        register(&mut after, t0, n, addr(n), true);
    }
    let (snapshots, _) = sync_with(&after, &mut sync, 10);
    assert_eq!(snapshots, 1);
    assert_eq!(sync.members(), &registry_members(&after));
    assert_eq!(sync.epoch(), 2);
}

/// Polls `reg` until `sync` has nothing more to fetch; returns the snapshot and change
/// pages it took.
fn sync_with(reg: &Registry, sync: &mut MemberSync, max: usize) -> (usize, usize) {
    let mut pages = (0, 0);
    for _ in 0..10_000 {
        let page = answer(reg, sync, max);
        if page.snapshot {
            pages.0 += 1;
        } else {
            pages.1 += 1;
        }
        if !sync.apply(page).unwrap() {
            return pages;
        }
    }
    panic!("no end to the pages");
}

fn answer(reg: &Registry, sync: &MemberSync, max: usize) -> MemberPage {
    let ToListServer::GetMembers {
        epoch,
        since,
        after,
    } = sync.request()
    else {
        panic!("not a membership request");
    };
    reg.members_page(epoch, since, after, max)
}

/// One random thing happening to the registry.
fn random_event(reg: &mut Registry, now: &mut Instant, rng: &mut StdRng) {
    let n = rng.random_range(0..60u16);
    match rng.random_range(0..10) {
        0..=3 => {
            // One of three addresses per node, so some registrations are moves.
            let at = addr(n * 3 + rng.random_range(0..3));
            register(reg, *now, n, at, rng.random_bool(0.9));
        }
        4..=6 => {
            reg.handle_heartbeat(*now, id(n), load());
        }
        7 => reg.handle_unregister(id(n)),
        8 => {
            *now += Duration::from_millis(rng.random_range(0..4_000));
            reg.handle_timeout(*now);
        }
        _ => {
            let saved = SavedEntry {
                node_id: id(n),
                addr: addr(n * 3),
                load: load(),
            };
            reg.restore(*now, vec![saved]);
        }
    }
}

#[test]
fn a_mirror_fed_pages_between_random_changes_ends_with_the_registrys_members() {
    let mut rng = StdRng::seed_from_u64(0x5EED_0015);
    let mut now = Instant::now();
    let mut reg = Registry::with_epoch(RegistryConfig::default(), rng.random());
    let mut sync = MemberSync::new();
    let (mut snapshot_pages, mut change_pages, mut checks) = (0, 0, 0);
    for _ in 0..400 {
        // A gap between polls, sometimes long enough for the log to be trimmed past us.
        let gap = if rng.random_bool(0.1) {
            rng.random_range(1_000..3_000)
        } else {
            rng.random_range(0..60)
        };
        for _ in 0..gap {
            random_event(&mut reg, &mut now, &mut rng);
        }
        // A poll whose pages are interleaved with more changes.
        let max = rng.random_range(1..12);
        for _ in 0..50 {
            let page = answer(&reg, &sync, max);
            if page.snapshot {
                snapshot_pages += 1;
            } else {
                change_pages += 1;
            }
            let more = sync.apply(page).unwrap();
            if rng.random_bool(0.3) {
                random_event(&mut reg, &mut now, &mut rng);
            }
            if !more {
                break;
            }
        }
        // Now and then, a quiet poll to the end: the mirror must match exactly.
        if rng.random_bool(0.3) {
            sync_with(&reg, &mut sync, max);
            assert_eq!(sync.members(), &registry_members(&reg));
            assert_eq!(sync.version(), reg.members_version());
            checks += 1;
        }
    }
    sync_with(&reg, &mut sync, 7);
    assert_eq!(sync.members(), &registry_members(&reg));
    assert!(!reg.is_empty(), "the run kept some members");
    assert!(
        snapshot_pages > 20 && change_pages > 100 && checks > 50,
        "both kinds of pages were exercised: {snapshot_pages} snapshot, {change_pages} \
         change pages, {checks} checks"
    );
}
