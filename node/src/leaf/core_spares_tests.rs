//! Fake-clock tests of spare supernodes (`supernodes` above 1): a leaf attaches to the next
//! lowest RTT beside its current supernode, publishes to both, searches through the current
//! one, and when that one is lost the spare takes over at once with its index filled.

use superpeer_common::wire::SupernodeToLeaf;

use super::tests::{
    ME, attach_of, drain, entry, id, info, limits, ms, probed, quiet, room, secs, sent,
};
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
    let asked = s.core.search(s.now, &["song".to_string()], 10).unwrap();
    drain(&mut s.core);
    let later = s.now + ms(500);
    s.core.handle_session_ended(later, s.current);
    let actions = drain(&mut s.core);
    assert_eq!(s.core.supernode().map(|v| v.node_id), Some(id(2)));
    // The search that was out on the lost supernode goes out again, under a fresh id, and
    // is not over.
    let again: Vec<QueryId> = sent(&actions)
        .into_iter()
        .filter_map(|(session, msg)| match msg {
            LeafToSupernode::Query(q) if session == s.spare => Some(q.id),
            _ => None,
        })
        .collect();
    assert_eq!(again.len(), 1, "{actions:?}");
    assert_ne!(again[0], asked);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, LeafAction::SearchOver { .. })),
        "{actions:?}"
    );
    // Its answers come out under the id the user knows.
    let hit = QueryHit {
        content_id: ContentId::of_bytes(b"song"),
        name: "song.ogg".into(),
        size: 4,
        holders: vec![superpeer_common::wire::Holder {
            node_id: id(9),
            addr: "127.0.0.9:4000".parse().unwrap(),
            via: None,
        }],
    };
    s.core.handle_message(
        later,
        s.spare,
        SupernodeToLeaf::Hits {
            id: again[0],
            hits: vec![hit.clone()],
        },
    );
    assert_eq!(
        drain(&mut s.core),
        vec![LeafAction::Hits {
            id: asked,
            hits: vec![hit]
        }]
    );
    s.core.handle_message(
        later,
        s.spare,
        SupernodeToLeaf::QueryDone {
            id: again[0],
            end: superpeer_common::wire::QueryEnd::Exhausted,
        },
    );
    assert_eq!(
        drain(&mut s.core),
        vec![LeafAction::SearchOver {
            id: asked,
            refused: None
        }]
    );
    assert_eq!(
        published(&actions, s.spare),
        Vec::new(),
        "it indexes our files already"
    );
    assert_eq!(fetches_of(&actions), 0, "no need for a fresh list");
    let (replacement, third) = attach_of(&actions).expect("a new spare in the background");
    assert_eq!(replacement, id(3), "the lost one backs off");
    // New searches go on through the new current supernode with no wait for its limits.
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

/// The ping that went out with a search on `session`, if any.
fn ping_on(actions: &[LeafAction], session: SessionNo) -> Option<u64> {
    sent(actions).into_iter().find_map(|(s, msg)| match msg {
        LeafToSupernode::Ping { nonce } if s == session => Some(nonce),
        _ => None,
    })
}

#[test]
fn a_current_supernode_that_answers_no_ping_is_given_up_for_the_spare() {
    let mut s = on_two();
    drain(&mut s.core);
    let asked = s.core.search(s.now, &["song".to_string()], 10).unwrap();
    let actions = drain(&mut s.core);
    ping_on(&actions, s.current).expect("a search goes out with a ping");
    // Silence: at the patience's end (10 ms RTT: the 500 ms floor) it is given up.
    let due = s.core.poll_timeout(s.now);
    assert!(due <= s.now + ms(500), "{:?}", due - s.now);
    s.core.handle_timeout(s.now + ms(499));
    assert_eq!(s.core.supernode().map(|v| v.node_id), Some(id(1)));
    s.core.handle_timeout(s.now + ms(500));
    let actions = drain(&mut s.core);
    assert!(
        actions.contains(&LeafAction::Close {
            session: s.current,
            reason: "no answer to a ping"
        }),
        "{actions:?}"
    );
    assert_eq!(s.core.supernode().map(|v| v.node_id), Some(id(2)));
    assert_eq!(
        queries_on(&actions, s.spare),
        1,
        "the search goes on: {actions:?}"
    );
    assert!(!actions.contains(&LeafAction::SearchOver {
        id: asked,
        refused: None
    }));
}

#[test]
fn a_current_supernode_that_answers_its_ping_is_kept() {
    let mut s = on_two();
    drain(&mut s.core);
    s.core.search(s.now, &["song".to_string()], 10).unwrap();
    let nonce = ping_on(&drain(&mut s.core), s.current).unwrap();
    s.core
        .handle_message(s.now + ms(20), s.current, SupernodeToLeaf::Pong { nonce });
    s.core.handle_timeout(s.now + secs(3));
    drain(&mut s.core);
    assert_eq!(s.core.supernode().map(|v| v.node_id), Some(id(1)));
    // One ping at a time: the next search sends a new one only once this one is answered.
    s.core
        .search(s.now + secs(3), &["song".to_string()], 10)
        .unwrap();
    assert!(ping_on(&drain(&mut s.core), s.current).is_some());
}

#[test]
fn without_a_spare_no_ping_goes_out() {
    let mut s = super::tests::ready(quiet(), Vec::new(), 100);
    drain(&mut s.core);
    s.core.search(s.now, &["song".to_string()], 10).unwrap();
    assert_eq!(ping_on(&drain(&mut s.core), s.session), None);
}
