//! Fake-clock tests of spare supernodes (`supernodes` above 1): a leaf attaches to the next
//! lowest RTT beside its current supernode, publishes to both, searches through the current
//! one, and when that one is lost the spare takes over at once with its index filled.

use superpeer_common::wire::SupernodeToLeaf;

use super::tests::{ME, attach_of, drain, entry, id, info, limits, ms, probed, quiet, room, sent};
use super::*;
use crate::share::ShareDelta;

/// The content ids published on `session` among `actions`.
fn published(actions: &[LeafAction], session: SessionNo) -> Vec<ContentId> {
    sent(actions)
        .into_iter()
        .filter(|(s, _)| *s == session)
        .flat_map(|(_, msg)| match msg {
            LeafToSupernode::Publish { entries } => {
                entries.into_iter().map(|e| e.content_id).collect()
            }
            _ => Vec::new(),
        })
        .collect()
}

fn queries_on(actions: &[LeafAction], session: SessionNo) -> usize {
    sent(actions)
        .iter()
        .filter(|(s, msg)| *s == session && matches!(msg, LeafToSupernode::Query(_)))
        .count()
}

struct Two {
    core: LeafCore,
    now: Instant,
    current: SessionNo,
    spare: SessionNo,
}

/// A leaf asking for 2 supernodes, sharing `a` and `b`, that knows 1, 2 and 3 (10, 20 and
/// 30 ms) and is attached to 1 and, as a spare, to 2; both have sent their limits.
fn on_two() -> Two {
    let t0 = Instant::now();
    let config = LeafCoreConfig {
        supernodes: 2,
        ..quiet()
    };
    let mut core = LeafCore::new(t0, id(ME), config, vec![entry("a"), entry("b")], 1);
    core.handle_learned(
        t0,
        &[info(1), info(2), info(3)],
        Source::ListServer { short: false },
    );
    assert_eq!(probed(&drain(&mut core)).len(), 3);
    let now = t0 + ms(1);
    for (n, rtt) in [(1, 10), (2, 20), (3, 30)] {
        core.handle_probe(now, id(n), Some((ms(rtt), Some(room()))));
    }
    let (first, current) = attach_of(&drain(&mut core)).unwrap();
    assert_eq!(first, id(1), "the lowest RTT first");
    core.handle_attach(now, current, AttachOutcome::Welcomed);
    let (second, spare) = attach_of(&drain(&mut core)).expect("a spare at once");
    assert_eq!(second, id(2), "the next lowest RTT as the spare");
    core.handle_attach(now, spare, AttachOutcome::Welcomed);
    assert_eq!(attach_of(&drain(&mut core)), None, "two are enough");
    for session in [current, spare] {
        core.handle_message(now, session, SupernodeToLeaf::Limits(limits(100)));
    }
    Two {
        core,
        now,
        current,
        spare,
    }
}

#[test]
fn a_spare_is_attached_beside_the_current_supernode_and_indexes_the_same_files() {
    let t0 = Instant::now();
    let config = LeafCoreConfig {
        supernodes: 2,
        ..quiet()
    };
    let mut core = LeafCore::new(t0, id(ME), config, vec![entry("a")], 1);
    core.handle_learned(t0, &[info(1), info(2)], Source::ListServer { short: false });
    drain(&mut core);
    core.handle_probe(t0, id(1), Some((ms(10), Some(room()))));
    core.handle_probe(t0, id(2), Some((ms(20), Some(room()))));
    let (_, current) = attach_of(&drain(&mut core)).unwrap();
    core.handle_attach(t0, current, AttachOutcome::Welcomed);
    let (_, spare) = attach_of(&drain(&mut core)).unwrap();
    core.handle_attach(t0, spare, AttachOutcome::Welcomed);
    drain(&mut core);
    // Each publishes once its own limits come.
    core.handle_message(t0, spare, SupernodeToLeaf::Limits(limits(100)));
    let a = ContentId::of_bytes(b"a");
    assert_eq!(published(&drain(&mut core), spare), vec![a]);
    core.handle_message(t0, current, SupernodeToLeaf::Limits(limits(100)));
    assert_eq!(published(&drain(&mut core), current), vec![a]);
    assert_eq!(
        core.attached_supernodes()
            .iter()
            .map(|v| v.node_id)
            .collect::<Vec<_>>(),
        vec![id(1), id(2)],
        "current first"
    );
    assert_eq!(core.supernode().map(|v| v.node_id), Some(id(1)));
}

#[test]
fn changes_go_to_both_and_searches_through_the_current_one() {
    let mut s = on_two();
    drain(&mut s.core);
    s.core.handle_share_delta(ShareDelta {
        added: vec![entry("c")],
        removed: Vec::new(),
    });
    let actions = drain(&mut s.core);
    let c = ContentId::of_bytes(b"c");
    assert_eq!(published(&actions, s.current), vec![c]);
    assert_eq!(published(&actions, s.spare), vec![c]);
    s.core.search(s.now, &["song".to_string()], 10).unwrap();
    let actions = drain(&mut s.core);
    assert_eq!(queries_on(&actions, s.current), 1);
    assert_eq!(queries_on(&actions, s.spare), 0);
    // A spare's answer to nothing of its own is ignored; its supernode list is taken.
    s.core.handle_message(
        s.now,
        s.spare,
        SupernodeToLeaf::Supernodes(superpeer_common::wire::SupernodeList {
            made_at_ms: 0,
            short_of_supernodes: false,
            supernodes: vec![info(4)],
        }),
    );
    assert!(s.core.candidates(10).iter().any(|c| c.node_id == id(4)));
}

#[test]
fn when_the_current_supernode_is_lost_the_spare_takes_over_at_once() {
    let mut s = on_two();
    drain(&mut s.core);
    let later = s.now + ms(500);
    s.core.handle_session_ended(later, s.current);
    let actions = drain(&mut s.core);
    assert_eq!(s.core.supernode().map(|v| v.node_id), Some(id(2)));
    assert_eq!(
        published(&actions, s.spare),
        Vec::new(),
        "it indexes our files already"
    );
    assert_eq!(fetches_of(&actions), 0, "no need for a fresh list");
    let (replacement, third) = attach_of(&actions).expect("a new spare in the background");
    assert_eq!(replacement, id(3), "the lost one backs off");
    // Searches go on through the new current supernode with no wait for its limits.
    s.core.search(later, &["song".to_string()], 10).unwrap();
    assert_eq!(queries_on(&drain(&mut s.core), s.spare), 1);
    assert_eq!(
        s.core.publication().indexed + s.core.publication().pending,
        2
    );
    s.core.handle_attach(later, third, AttachOutcome::Welcomed);
    drain(&mut s.core);
    assert_eq!(
        s.core
            .attached_supernodes()
            .iter()
            .map(|v| v.node_id)
            .collect::<Vec<_>>(),
        vec![id(2), id(3)]
    );
}

#[test]
fn a_lost_spare_is_replaced_and_the_current_one_stays() {
    let mut s = on_two();
    drain(&mut s.core);
    s.core.handle_session_ended(s.now + ms(10), s.spare);
    let actions = drain(&mut s.core);
    assert_eq!(s.core.supernode().map(|v| v.node_id), Some(id(1)));
    assert_eq!(attach_of(&actions).map(|(n, _)| n), Some(id(3)));
    assert!(
        sent(&actions).is_empty(),
        "nothing is published again to the current one: {actions:?}"
    );
}

#[test]
fn promotion_leaves_every_supernode() {
    let mut s = on_two();
    drain(&mut s.core);
    s.core.promote(s.now).unwrap();
    let actions = drain(&mut s.core);
    let mut left: Vec<SessionNo> = actions
        .iter()
        .filter_map(|a| match a {
            LeafAction::Leave { session, .. } => Some(*session),
            _ => None,
        })
        .collect();
    left.sort();
    assert_eq!(left, vec![s.current, s.spare]);
    assert!(s.core.attached_supernodes().is_empty());
}

fn fetches_of(actions: &[LeafAction]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, LeafAction::FetchLists))
        .count()
}
