//! The mirror's rules, page by page, and the union of several mirrors.

use superpeer_common::wire::MemberChange;

use super::*;

fn id(n: u32) -> NodeId {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    NodeId::from_bytes(bytes)
}

fn addr(n: u32) -> SocketAddr {
    SocketAddr::from(([127, 0, 52, 9], 1_000 + (n % 60_000) as u16))
}

fn member(n: u32) -> MemberChange {
    MemberChange {
        node_id: id(n),
        addr: Some(addr(n)),
    }
}

fn gone(n: u32) -> MemberChange {
    MemberChange {
        node_id: id(n),
        addr: None,
    }
}

fn page(
    epoch: u64,
    version: u64,
    snapshot: bool,
    changes: Vec<MemberChange>,
    more: bool,
) -> MemberPage {
    MemberPage {
        epoch,
        version,
        snapshot,
        changes,
        more,
    }
}

fn ids(sync: &MemberSync) -> Vec<NodeId> {
    sync.members().keys().copied().collect()
}

fn after(sync: &MemberSync) -> Option<NodeId> {
    match sync.request() {
        ToListServer::GetMembers { after, .. } => after,
        other => panic!("not a membership request: {other:?}"),
    }
}

/// A mirror synced to members 1 and 2 of epoch 5, version 10.
fn synced() -> MemberSync {
    let mut sync = MemberSync::new();
    assert!(
        !sync
            .apply(page(5, 10, true, vec![member(1), member(2)], false))
            .unwrap()
    );
    sync
}

#[test]
fn a_fresh_mirror_asks_for_everything_since_zero() {
    assert_eq!(
        MemberSync::new().request(),
        ToListServer::GetMembers {
            epoch: 0,
            since: 0,
            after: None
        }
    );
}

#[test]
fn a_snapshot_replaces_the_set_only_once_complete() {
    let mut sync = synced();
    assert!(
        sync.apply(page(6, 3, true, vec![member(7), member(8)], true))
            .unwrap()
    );
    assert!(sync.is_paging());
    assert_eq!(after(&sync), Some(id(8)));
    assert_eq!(ids(&sync), vec![id(1), id(2)], "the old set stays in use");
    // Still asking with the old epoch and version, which earned the snapshot.
    assert!(matches!(
        sync.request(),
        ToListServer::GetMembers {
            epoch: 5,
            since: 10,
            ..
        }
    ));
    assert!(
        !sync
            .apply(page(6, 3, true, vec![member(9)], false))
            .unwrap()
    );
    assert_eq!(ids(&sync), vec![id(7), id(8), id(9)]);
    assert_eq!((sync.epoch(), sync.version()), (6, 3));
    assert_eq!(after(&sync), None);
}

#[test]
fn changes_during_a_snapshot_are_fetched_since_its_first_page() {
    let mut sync = MemberSync::new();
    assert!(sync.apply(page(6, 3, true, vec![member(1)], true)).unwrap());
    // The set moved on to version 5 before the last page.
    assert!(
        sync.apply(page(6, 5, true, vec![member(4)], false))
            .unwrap()
    );
    assert_eq!(
        sync.request(),
        ToListServer::GetMembers {
            epoch: 6,
            since: 3,
            after: None
        }
    );
    // Member 4 joined at version 4 (already in the snapshot), member 1 left at 5.
    assert!(
        !sync
            .apply(page(6, 5, false, vec![member(4), gone(1)], false))
            .unwrap()
    );
    assert_eq!(ids(&sync), vec![id(4)]);
    assert_eq!(sync.version(), 5);
}

#[test]
fn changes_apply_to_the_set() {
    let mut sync = synced();
    let moved = MemberChange {
        node_id: id(2),
        addr: Some(addr(20)),
    };
    assert!(
        !sync
            .apply(page(5, 13, false, vec![gone(1), moved, member(3)], false))
            .unwrap()
    );
    assert_eq!(ids(&sync), vec![id(2), id(3)]);
    assert_eq!(sync.members()[&id(2)], addr(20));
    assert_eq!(sync.version(), 13);
}

#[test]
fn bad_pages_are_refused_and_change_nothing() {
    let bad = [
        (
            "snapshot out of order",
            page(6, 1, true, vec![member(2), member(1)], false),
        ),
        (
            "snapshot repeats an id",
            page(6, 1, true, vec![member(2), member(2)], false),
        ),
        (
            "snapshot member without address",
            page(6, 1, true, vec![gone(3)], false),
        ),
        ("empty page with more", page(6, 1, true, vec![], true)),
        (
            "changes from another epoch",
            page(6, 11, false, vec![member(3)], false),
        ),
        ("changes from the past", page(5, 9, false, vec![], false)),
        (
            "more changes than versions",
            page(5, 11, false, vec![member(3), member(4)], false),
        ),
        (
            "oversized page",
            page(5, 99_999, false, (0..2_001).map(member).collect(), false),
        ),
    ];
    for (what, bad) in bad {
        let mut sync = synced();
        assert!(sync.apply(bad).is_err(), "{what}");
        assert_eq!(ids(&sync), vec![id(1), id(2)], "{what}");
        assert_eq!((sync.epoch(), sync.version()), (5, 10), "{what}");
    }
}

#[test]
fn a_snapshot_page_must_continue_after_the_cursor() {
    let mut sync = synced();
    assert!(sync.apply(page(6, 1, true, vec![member(5)], true)).unwrap());
    assert!(
        sync.apply(page(6, 1, true, vec![member(4)], false))
            .is_err()
    );
    assert!(!sync.is_paging(), "a broken snapshot is dropped");
    assert_eq!(ids(&sync), vec![id(1), id(2)]);
}

#[test]
fn a_server_restart_while_paging_starts_the_snapshot_over() {
    let mut sync = synced();
    assert!(sync.apply(page(6, 1, true, vec![member(5)], true)).unwrap());
    assert!(
        sync.apply(page(7, 1, true, vec![member(6)], false))
            .unwrap()
    );
    assert_eq!(after(&sync), None);
    assert_eq!(ids(&sync), vec![id(1), id(2)]);
}

#[test]
fn a_hostile_server_cannot_grow_the_mirror_without_bound() {
    let mut sync = MemberSync::new();
    let mut next = 0u32;
    let mut refused = false;
    for _ in 0..(MAX_MIRRORED_MEMBERS / 2_000 + 2) {
        let changes: Vec<MemberChange> = (next..next + 2_000).map(member).collect();
        next += 2_000;
        if sync.apply(page(6, 1, true, changes, true)).is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "the partial snapshot is capped");
    assert!(!sync.is_paging());

    // Changes are capped too.
    let mut sync = MemberSync::new();
    let mut version = 0;
    let mut refused = false;
    for _ in 0..(MAX_MIRRORED_MEMBERS / 2_000 + 2) {
        let changes: Vec<MemberChange> = (next..next + 2_000).map(member).collect();
        next += 2_000;
        version += 2_000;
        if sync.apply(page(0, version, false, changes, false)).is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused);
    assert!(sync.members().len() <= MAX_MIRRORED_MEMBERS);
}

fn mirror(epoch: u64, members: &[(u32, SocketAddr)]) -> MemberSync {
    let mut sync = MemberSync::new();
    let changes = members
        .iter()
        .map(|(n, at)| MemberChange {
            node_id: id(*n),
            addr: Some(*at),
        })
        .collect();
    assert!(!sync.apply(page(epoch, 1, true, changes, false)).unwrap());
    sync
}

#[test]
fn the_union_reports_joins_moves_and_leaves() {
    let mut union = MemberUnion::new();
    let a = mirror(1, &[(1, addr(1)), (2, addr(2))]);
    let b = mirror(2, &[(2, addr(2)), (3, addr(3))]);
    let delta = union.update([&a, &b]);
    assert_eq!(
        delta.joined,
        vec![(id(1), addr(1)), (id(2), addr(2)), (id(3), addr(3))]
    );
    assert!(delta.left.is_empty());
    assert!(union.update([&a, &b]).is_empty(), "nothing changed");

    // 1 leaves a; 2 is gone from a but b still lists it; 3 moves.
    let a = mirror(1, &[]);
    let b = mirror(2, &[(2, addr(2)), (3, addr(30))]);
    let delta = union.update([&a, &b]);
    assert_eq!(delta.joined, vec![(id(3), addr(30))]);
    assert_eq!(delta.left, vec![id(1)]);
    assert_eq!(union.members().len(), 2);
}

#[test]
fn servers_that_disagree_do_not_make_an_address_flap() {
    let mut union = MemberUnion::new();
    let old = mirror(1, &[(1, addr(1))]);
    let new = mirror(2, &[(1, addr(10))]);
    assert_eq!(union.update([&old]).joined, vec![(id(1), addr(1))]);
    // Either order: the address we have stands while a server still says so.
    assert!(union.update([&new, &old]).is_empty());
    assert!(union.update([&old, &new]).is_empty());
    // Once no server says so, the other address takes over.
    let caught_up = mirror(1, &[(1, addr(10))]);
    assert_eq!(
        union.update([&caught_up, &new]).joined,
        vec![(id(1), addr(10))]
    );
}
