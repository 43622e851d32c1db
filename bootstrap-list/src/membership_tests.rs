//! The change log and the pages it answers, on a listing of bare addresses.

use std::collections::BTreeSet;

use super::*;

const EPOCH: u64 = 0xE90C;

fn id(n: u32) -> NodeId {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    NodeId::from_bytes(bytes)
}

fn addr(n: u32) -> SocketAddr {
    SocketAddr::from(([127, 0, 52, (n % 250) as u8], 1 + (n % 60_000) as u16))
}

fn joined(n: u32, at: SocketAddr) -> MemberChange {
    MemberChange {
        node_id: id(n),
        addr: Some(at),
    }
}

fn left(n: u32) -> MemberChange {
    MemberChange {
        node_id: id(n),
        addr: None,
    }
}

#[test]
fn joins_moves_and_leaves_are_changes_in_order() {
    let mut listing = Listing::new(EPOCH);
    listing.insert(id(1), addr(1));
    listing.insert(id(2), addr(2));
    let at_two = listing.version();
    assert_eq!(at_two, 2);

    listing.insert(id(1), addr(1)); // the same address again: no change
    listing.update(&id(2), |a| *a = addr(20));
    listing.update(&id(1), |_| ()); // touched, not moved: no change
    listing.remove(&id(1));
    listing.remove(&id(9)); // never listed: no change
    assert_eq!(listing.version(), 4);

    let page = listing.page(EPOCH, at_two, None, 100);
    assert_eq!(
        page,
        MemberPage {
            epoch: EPOCH,
            version: 4,
            snapshot: false,
            changes: vec![joined(2, addr(20)), left(1)],
            more: false,
        }
    );
    // From the start: every change, which rebuilds the set from empty.
    let all = listing.page(EPOCH, 0, None, 100);
    assert_eq!(
        all.changes,
        vec![
            joined(1, addr(1)),
            joined(2, addr(2)),
            joined(2, addr(20)),
            left(1)
        ]
    );
    // Up to date: nothing, at the current version.
    let none = listing.page(EPOCH, 4, None, 100);
    assert!(none.changes.is_empty() && !none.more && !none.snapshot);
    assert_eq!(none.version, 4);
}

#[test]
fn changes_come_in_pages_that_end_at_their_last_version() {
    let mut listing = Listing::new(EPOCH);
    for n in 0..5 {
        listing.insert(id(n), addr(n));
    }
    let first = listing.page(EPOCH, 0, None, 2);
    assert_eq!((first.version, first.more), (2, true));
    let second = listing.page(EPOCH, first.version, None, 2);
    assert_eq!((second.version, second.more), (4, true));
    let last = listing.page(EPOCH, second.version, None, 2);
    assert_eq!((last.version, last.more, last.changes.len()), (5, false, 1));
}

#[test]
fn expired_entries_leave_through_retain() {
    let mut listing = Listing::new(EPOCH);
    for n in 0..4 {
        listing.insert(id(n), addr(n));
    }
    let dropped = listing.retain(|node, _| *node != id(1) && *node != id(3));
    assert_eq!(dropped, vec![id(1), id(3)]);
    assert_eq!(
        listing.page(EPOCH, 4, None, 10).changes,
        vec![left(1), left(3)]
    );
}

#[test]
fn a_trimmed_log_or_another_epoch_gets_a_snapshot() {
    let mut listing = Listing::new(EPOCH);
    listing.insert(id(7), addr(7));
    // Churn far past the log's cap (a few members: the minimum length).
    let rounds = MIN_LOG_LEN as u32 + 10;
    for round in 0..rounds {
        listing.insert(id(1), addr(round));
    }
    assert!(listing.version() > MIN_LOG_LEN as u64);
    let stale = listing.page(EPOCH, 1, None, 100);
    assert!(stale.snapshot, "the changes after 1 are gone: snapshot");
    assert_eq!(stale.version, listing.version());
    assert_eq!(
        stale.changes,
        vec![joined(1, addr(rounds - 1)), joined(7, addr(7))]
    );
    // The oldest version the log still covers is answered with changes.
    let oldest = listing.version() - MIN_LOG_LEN as u64;
    assert!(!listing.page(EPOCH, oldest, None, 100).snapshot);
    assert!(listing.page(EPOCH, oldest - 1, None, 100).snapshot);

    // Another instance's versions mean nothing here, whatever their number.
    let other = listing.page(EPOCH + 1, listing.version(), None, 100);
    assert!(other.snapshot);
    // Nor does a version from the future.
    assert!(
        listing
            .page(EPOCH, listing.version() + 1, None, 100)
            .snapshot
    );
}

#[test]
fn the_log_is_bounded_by_the_members() {
    let mut listing = Listing::new(EPOCH);
    for n in 0..2_000 {
        listing.insert(id(n), addr(n));
    }
    for round in 0..20_000 {
        listing.update(&id(round % 2_000), |a| *a = addr(round + 1));
    }
    assert_eq!(listing.log.len(), 2_000 * LOG_LEN_PER_MEMBER);
}

#[test]
fn snapshot_pages_hand_out_every_member_once_in_order() {
    let mut listing = Listing::new(EPOCH);
    for n in (0..5_000).rev() {
        listing.insert(id(n * 3), addr(n));
    }
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = listing.page(EPOCH ^ 1, 0, after, MAX_MEMBERS_PER_PAGE);
        pages += 1;
        assert!(page.snapshot);
        assert!(page.validate().is_ok());
        assert_eq!(page.version, listing.version());
        seen.extend(page.changes.iter().map(|c| c.node_id));
        after = page.changes.last().map(|c| c.node_id);
        if !page.more {
            break;
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<NodeId> = (0..5_000).map(|n| id(n * 3)).collect();
    assert_eq!(seen, expected, "every member once, in node-id order");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 5_000);
}

#[test]
fn pages_never_say_more_without_entries() {
    let mut listing = Listing::new(EPOCH);
    listing.insert(id(1), addr(1));
    listing.insert(id(2), addr(2));
    let page = listing.page(EPOCH, 0, None, 0);
    assert_eq!(page.changes.len(), 1);
    assert!(page.more);
    let snapshot = listing.page(EPOCH ^ 1, 0, None, 0);
    assert_eq!(snapshot.changes.len(), 1);
}
