//! Router state machine tests with a fake clock.

use std::net::SocketAddr;

use superpeer_common::NodeId;
use superpeer_common::wire::Holder;

use super::*;

const LEAF: SessionId = SessionId(1);

fn query(n: u8, want: u32) -> Query {
    Query {
        id: QueryId([n; 16]),
        keywords: vec!["abba".into()],
        want,
    }
}

fn hit(n: u8) -> QueryHit {
    let addr: SocketAddr = "127.0.0.9:9".parse().unwrap();
    QueryHit {
        content_id: ContentId::from_bytes([n; 32]),
        name: format!("abba {n}.mp3"),
        size: 1,
        holders: vec![Holder {
            node_id: NodeId::from_bytes([n; 32]),
            addr,
            via: None,
        }],
    }
}

fn neighbors(ids: impl IntoIterator<Item = u64>) -> Vec<SessionId> {
    ids.into_iter().map(SessionId).collect()
}

fn drain(router: &mut Router) -> Vec<RouterOutput> {
    std::iter::from_fn(|| router.poll_output()).collect()
}

/// Neighbour sessions the outputs sent a query to.
fn asked(outputs: &[RouterOutput]) -> Vec<SessionId> {
    outputs
        .iter()
        .filter_map(|o| match o {
            RouterOutput::ToNeighbor(s, SupernodeToSupernode::Query { .. }) => Some(*s),
            _ => None,
        })
        .collect()
}

fn leaf_hits(outputs: &[RouterOutput]) -> usize {
    outputs
        .iter()
        .map(|o| match o {
            RouterOutput::ToLeaf(_, SupernodeToLeaf::Hits { hits, .. }) => hits.len(),
            _ => 0,
        })
        .sum()
}

fn leaf_done(outputs: &[RouterOutput]) -> Option<QueryEnd> {
    outputs.iter().find_map(|o| match o {
        RouterOutput::ToLeaf(_, SupernodeToLeaf::QueryDone { end, .. }) => Some(*end),
        _ => None,
    })
}

fn config() -> RouterConfig {
    RouterConfig {
        fanout: 2,
        ..Default::default()
    }
}

#[test]
fn local_hits_enough_means_no_forwarding() {
    let now = Instant::now();
    let mut router = Router::new(config());
    router.start(
        now,
        query(1, 2),
        Asker::Leaf(LEAF),
        vec![hit(1), hit(2), hit(3)],
        neighbors([10, 11]),
        2,
    );
    let out = drain(&mut router);
    assert_eq!(leaf_hits(&out), 2, "no more than want");
    assert!(asked(&out).is_empty());
    assert_eq!(leaf_done(&out), Some(QueryEnd::Enough));
    assert_eq!(router.active(), 0);
}

#[test]
fn rounds_of_fanout_until_want_then_stop() {
    let t0 = Instant::now();
    let mut router = Router::new(config());
    router.start(
        t0,
        query(1, 3),
        Asker::Leaf(LEAF),
        vec![hit(1)],
        neighbors([10, 11, 12, 13, 14]),
        2,
    );
    let out = drain(&mut router);
    assert_eq!(leaf_hits(&out), 1);
    assert_eq!(
        asked(&out),
        neighbors([10, 11]),
        "first round: the two most promising"
    );
    // Forwarded with one hop less and only what is still wanted.
    assert!(out.iter().any(|o| matches!(o,
        RouterOutput::ToNeighbor(_, SupernodeToSupernode::Query { query, ttl: 1 }) if query.want == 2)));

    router.handle_done(t0, SessionId(10), QueryId([1; 16]));
    assert!(
        asked(&drain(&mut router)).is_empty(),
        "round 1 still has 11 outstanding"
    );
    router.handle_done(t0, SessionId(11), QueryId([1; 16]));
    let out = drain(&mut router);
    assert_eq!(asked(&out), neighbors([12, 13]), "second round");

    router.handle_hits(
        t0,
        SessionId(12),
        QueryId([1; 16]),
        vec![hit(2), hit(3), hit(4)],
    );
    let out = drain(&mut router);
    assert_eq!(leaf_hits(&out), 2, "capped at want");
    assert_eq!(leaf_done(&out), Some(QueryEnd::Enough));
    // Neighbours still working are told to stop; 14 was never asked.
    let stopped: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            RouterOutput::ToNeighbor(s, SupernodeToSupernode::QueryDone { .. }) => Some(*s),
            _ => None,
        })
        .collect();
    assert!(stopped.contains(&SessionId(13)) && stopped.contains(&SessionId(12)));
    assert!(!stopped.contains(&SessionId(14)));
    assert_eq!(router.stats().forwarded, 4);
}

#[test]
fn slow_round_times_out_and_late_hits_still_count() {
    let t0 = Instant::now();
    let mut router = Router::new(config());
    router.start(
        t0,
        query(1, 10),
        Asker::Leaf(LEAF),
        vec![],
        neighbors([10, 11, 12]),
        2,
    );
    drain(&mut router);
    assert_eq!(router.poll_timeout(), Some(t0 + config().round_timeout));
    let t1 = t0 + config().round_timeout;
    router.handle_timeout(t1);
    assert_eq!(
        asked(&drain(&mut router)),
        neighbors([12]),
        "next round after the timeout"
    );
    // A late answer from round one is still delivered.
    router.handle_hits(t1, SessionId(10), QueryId([1; 16]), vec![hit(5)]);
    assert_eq!(leaf_hits(&drain(&mut router)), 1);
    // Everyone finishes: exhausted.
    for s in [10, 11, 12] {
        router.handle_done(t1, SessionId(s), QueryId([1; 16]));
    }
    assert_eq!(leaf_done(&drain(&mut router)), Some(QueryEnd::Exhausted));
}

#[test]
fn a_silent_neighbour_holds_a_query_only_for_the_grace_after_its_round() {
    let t0 = Instant::now();
    let mut router = Router::new(config());
    router.start(
        t0,
        query(1, 10),
        Asker::Leaf(LEAF),
        vec![],
        neighbors([10]),
        2,
    );
    drain(&mut router);
    let round_over = t0 + config().round_timeout;
    router.handle_timeout(round_over);
    assert!(leaf_done(&drain(&mut router)).is_none());
    assert_eq!(
        router.poll_timeout(),
        Some(round_over + config().late_grace)
    );
    router.handle_timeout(round_over + config().late_grace);
    assert_eq!(leaf_done(&drain(&mut router)), Some(QueryEnd::Exhausted));
}

#[test]
fn deadline_ends_a_query() {
    let t0 = Instant::now();
    let mut router = Router::new(RouterConfig {
        late_grace: Duration::from_secs(60),
        ..config()
    });
    router.start(
        t0,
        query(1, 10),
        Asker::Leaf(LEAF),
        vec![],
        neighbors([10]),
        2,
    );
    drain(&mut router);
    router.handle_timeout(t0 + config().round_timeout);
    assert!(
        leaf_done(&drain(&mut router)).is_none(),
        "neighbour 10 may still answer"
    );
    router.handle_timeout(t0 + RouterConfig::default().leaf_deadline);
    assert_eq!(leaf_done(&drain(&mut router)), Some(QueryEnd::Deadline));
    assert_eq!(router.active(), 0);
    assert_eq!(router.poll_timeout(), None);
}

#[test]
fn duplicate_ids_are_dropped_and_the_sender_released() {
    let now = Instant::now();
    let mut router = Router::new(config());
    router.start(
        now,
        query(7, 10),
        Asker::Leaf(LEAF),
        vec![],
        neighbors([10, 11]),
        2,
    );
    drain(&mut router);
    // The same query comes back from neighbour 11 (a loop).
    let started = router.start(
        now,
        query(7, 10),
        Asker::Neighbor(SessionId(11)),
        vec![hit(1)],
        neighbors([10]),
        1,
    );
    assert_eq!(started, Started::Duplicate);
    let out = drain(&mut router);
    assert_eq!(
        out,
        vec![RouterOutput::ToNeighbor(
            SessionId(11),
            SupernodeToSupernode::QueryDone {
                id: QueryId([7; 16])
            }
        )]
    );
    assert_eq!(router.stats().duplicates, 1);
    assert_eq!(router.stats().queries, 1);
}

#[test]
fn ttl_zero_answers_locally_only() {
    let now = Instant::now();
    let mut router = Router::new(config());
    router.start(
        now,
        query(1, 10),
        Asker::Neighbor(SessionId(20)),
        vec![hit(1)],
        neighbors([10, 11]),
        0,
    );
    let out = drain(&mut router);
    assert!(asked(&out).is_empty());
    assert!(out.contains(&RouterOutput::ToNeighbor(
        SessionId(20),
        SupernodeToSupernode::QueryDone {
            id: QueryId([1; 16])
        }
    )));
    assert!(
        matches!(&out[0], RouterOutput::ToNeighbor(SessionId(20), SupernodeToSupernode::Hits { hits, .. }) if hits.len() == 1)
    );
}

#[test]
fn hits_from_sessions_never_asked_are_ignored() {
    let now = Instant::now();
    let mut router = Router::new(config());
    router.start(
        now,
        query(1, 10),
        Asker::Leaf(LEAF),
        vec![],
        neighbors([10]),
        1,
    );
    drain(&mut router);
    router.handle_hits(now, SessionId(99), QueryId([1; 16]), vec![hit(1)]);
    assert_eq!(leaf_hits(&drain(&mut router)), 0);
}

#[test]
fn more_holders_of_reported_content_pass_without_using_a_slot() {
    let now = Instant::now();
    let mut router = Router::new(config());
    router.start(
        now,
        query(1, 2),
        Asker::Leaf(LEAF),
        vec![hit(1)],
        neighbors([10]),
        1,
    );
    drain(&mut router);
    let mut same = hit(1);
    same.holders[0].node_id = NodeId::from_bytes([77; 32]);
    router.handle_hits(now, SessionId(10), QueryId([1; 16]), vec![same]);
    let out = drain(&mut router);
    assert_eq!(leaf_hits(&out), 1);
    assert_eq!(
        leaf_done(&out),
        None,
        "still only one distinct content of two wanted"
    );
}

/// The holders of the leaf-bound hits in `outputs`.
fn leaf_holders(outputs: &[RouterOutput]) -> Vec<NodeId> {
    outputs
        .iter()
        .flat_map(|o| match o {
            RouterOutput::ToLeaf(_, SupernodeToLeaf::Hits { hits, .. }) => hits.clone(),
            _ => Vec::new(),
        })
        .flat_map(|hit| hit.holders)
        .map(|h| h.node_id)
        .collect()
}

#[test]
fn a_holder_named_by_two_neighbours_goes_to_the_asker_once() {
    let now = Instant::now();
    let mut router = Router::new(config());
    router.start(
        now,
        query(1, 5),
        Asker::Leaf(LEAF),
        Vec::new(),
        neighbors([10, 11]),
        1,
    );
    drain(&mut router);
    // A leaf attached to both neighbours: each reports it, with a different `via` maybe.
    router.handle_hits(now, SessionId(10), QueryId([1; 16]), vec![hit(1)]);
    assert_eq!(
        leaf_holders(&drain(&mut router)),
        vec![NodeId::from_bytes([1; 32])]
    );
    let mut again = hit(1);
    again.holders[0].addr = "127.0.0.10:10".parse().unwrap();
    router.handle_hits(now, SessionId(11), QueryId([1; 16]), vec![again.clone()]);
    assert_eq!(leaf_holders(&drain(&mut router)), Vec::new());
    assert_eq!(router.stats().duplicate_holders, 1);
    // Beside a new holder, only the new one goes on.
    let other = NodeId::from_bytes([2; 32]);
    let mut both = again;
    both.holders.push(Holder {
        node_id: other,
        addr: "127.0.0.11:11".parse().unwrap(),
        via: None,
    });
    router.handle_hits(now, SessionId(11), QueryId([1; 16]), vec![both]);
    assert_eq!(leaf_holders(&drain(&mut router)), vec![other]);
}

#[test]
fn cancel_and_gone_sessions() {
    let now = Instant::now();
    let mut router = Router::new(config());
    router.start(
        now,
        query(1, 10),
        Asker::Leaf(LEAF),
        vec![],
        neighbors([10, 11]),
        1,
    );
    drain(&mut router);
    router.cancel(LEAF, QueryId([1; 16]));
    let out = drain(&mut router);
    assert_eq!(leaf_done(&out), Some(QueryEnd::Cancelled));
    assert_eq!(
        out.iter()
            .filter(|o| matches!(
                o,
                RouterOutput::ToNeighbor(_, SupernodeToSupernode::QueryDone { .. })
            ))
            .count(),
        2
    );

    // A neighbour that goes away is no longer waited for.
    router.start(
        now,
        query(2, 10),
        Asker::Leaf(LEAF),
        vec![],
        neighbors([10]),
        1,
    );
    drain(&mut router);
    router.session_gone(now, SessionId(10));
    assert_eq!(leaf_done(&drain(&mut router)), Some(QueryEnd::Exhausted));

    // A leaf that goes away takes its queries with it.
    router.start(
        now,
        query(3, 10),
        Asker::Leaf(LEAF),
        vec![],
        neighbors([10]),
        1,
    );
    drain(&mut router);
    router.session_gone(now, LEAF);
    assert_eq!(router.active(), 0);
    let out = drain(&mut router);
    assert!(leaf_done(&out).is_none(), "nobody to tell");
}

#[test]
fn too_many_active_queries_are_refused() {
    let now = Instant::now();
    let mut router = Router::new(RouterConfig {
        max_active: 1,
        ..config()
    });
    router.start(
        now,
        query(1, 10),
        Asker::Leaf(LEAF),
        vec![],
        neighbors([10]),
        1,
    );
    assert_eq!(
        router.start(
            now,
            query(2, 10),
            Asker::Leaf(LEAF),
            vec![],
            neighbors([10]),
            1
        ),
        Started::Busy
    );
}

/// Neighbour sessions the outputs sent a query to, with the hops it had left.
fn asked_with_ttl(outputs: &[RouterOutput]) -> Vec<(SessionId, u8)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            RouterOutput::ToNeighbor(s, SupernodeToSupernode::Query { ttl, .. }) => {
                Some((*s, *ttl))
            }
            _ => None,
        })
        .collect()
}

fn relay_config() -> RouterConfig {
    RouterConfig {
        fanout: 2,
        relay_fanout: 2,
        ..Default::default()
    }
}

/// A router with a leaf's query `n` (wanting `want`) started two hops out, with
/// `candidates` and `relays`.
fn routed(
    now: Instant,
    n: u8,
    want: u32,
    candidates: impl IntoIterator<Item = u64>,
    relays: impl IntoIterator<Item = u64>,
) -> (Router, QueryId) {
    let mut router = Router::new(relay_config());
    let q = query(n, want);
    let id = q.id;
    let targets = Targets {
        candidates: neighbors(candidates),
        relays: neighbors(relays),
        directory: false,
    };
    router.start_routed(now, q, Asker::Leaf(LEAF), vec![], targets, 2);
    (router, id)
}

#[test]
fn relays_are_asked_only_once_the_candidates_fall_short() {
    let now = Instant::now();
    let (mut router, id) = routed(now, 1, 10, [10, 11], [20, 21, 22]);
    // The candidates first, with no hops left: each answers for itself.
    assert_eq!(
        asked_with_ttl(&drain(&mut router)),
        vec![(SessionId(10), 0), (SessionId(11), 0)]
    );
    router.handle_hits(now, SessionId(10), id, vec![hit(1)]);
    router.handle_done(now, SessionId(10), id);
    router.handle_done(now, SessionId(11), id);
    // Short of `want`: the relays, a round at a time, with a hop to go.
    assert_eq!(
        asked_with_ttl(&drain(&mut router)),
        vec![(SessionId(20), 1), (SessionId(21), 1)]
    );
    router.handle_hits(now, SessionId(21), id, vec![hit(2)]);
    router.handle_done(now, SessionId(20), id);
    router.handle_done(now, SessionId(21), id);
    let out = drain(&mut router);
    assert_eq!(leaf_hits(&out), 1, "the relay's hit reaches the leaf");
    assert_eq!(asked_with_ttl(&out), vec![(SessionId(22), 1)]);
    router.handle_done(now, SessionId(22), id);
    assert_eq!(leaf_done(&drain(&mut router)), Some(QueryEnd::Exhausted));
}

#[test]
fn enough_from_the_candidates_means_no_relays() {
    let now = Instant::now();
    let (mut router, id) = routed(now, 2, 1, [10], [20, 21]);
    assert_eq!(asked(&drain(&mut router)), neighbors([10]));
    router.handle_hits(now, SessionId(10), id, vec![hit(1)]);
    let out = drain(&mut router);
    assert_eq!(leaf_done(&out), Some(QueryEnd::Enough));
    assert!(asked(&out).is_empty(), "{out:?}");
}

#[test]
fn a_copy_with_more_hops_left_relays_without_answering_again() {
    let now = Instant::now();
    let mut router = Router::new(config());
    let q = query(3, 10);
    let first = Asker::Neighbor(SessionId(30));
    router.start(now, q.clone(), first, vec![hit(1)], neighbors([10]), 0);
    let out = drain(&mut router);
    assert!(asked(&out).is_empty(), "no hops left");
    assert!(out.iter().any(|o| matches!(
        o,
        RouterOutput::ToNeighbor(SessionId(30), SupernodeToSupernode::Hits { .. })
    )));
    // The same query with a hop to go: relayed, and our hit is not sent a second time.
    let deeper = Asker::Neighbor(SessionId(31));
    let started = router.start(now, q.clone(), deeper, vec![hit(1)], neighbors([10]), 1);
    assert_eq!(started, Started::Running);
    let out = drain(&mut router);
    assert_eq!(asked_with_ttl(&out), vec![(SessionId(10), 0)]);
    assert!(
        !out.iter().any(|o| matches!(
            o,
            RouterOutput::ToNeighbor(_, SupernodeToSupernode::Hits { .. })
        )),
        "{out:?}"
    );
    // A third copy with no more hops than that is a duplicate.
    let again = router.start(
        now,
        q,
        Asker::Neighbor(SessionId(32)),
        vec![],
        neighbors([10]),
        1,
    );
    assert_eq!(again, Started::Duplicate);
}

fn member(n: u16) -> NodeId {
    let mut bytes = [3u8; 32];
    bytes[..2].copy_from_slice(&n.to_le_bytes());
    NodeId::from_bytes(bytes)
}

/// Members the outputs sent a query to directly, with the `want` asked.
fn asked_directly(outputs: &[RouterOutput]) -> Vec<(NodeId, u32)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            RouterOutput::ToMember(n, SupernodeToSupernode::Query { query, ttl: 0 }) => {
                Some((*n, query.want))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn named_supernodes_are_asked_after_the_first_neighbour_round_in_growing_rounds() {
    let t0 = Instant::now();
    let mut router = Router::new(config());
    let id = QueryId([7; 16]);
    let targets = Targets {
        candidates: neighbors([10, 11, 12, 13]),
        relays: neighbors([20]),
        directory: true,
    };
    router.start_routed(t0, query(7, 200), Asker::Leaf(LEAF), vec![], targets, 2);
    assert_eq!(asked(&drain(&mut router)), neighbors([10, 11]));
    // The owners answer while the first round runs: nobody is asked directly yet.
    let named: Vec<NodeId> = (0..100).map(member).collect();
    router.directory_done(t0, id, Some(named.clone()));
    assert!(asked_directly(&drain(&mut router)).is_empty());
    // The first round is over: the second neighbour round and 32 named supernodes go out
    // together, each asked for the whole want.
    router.handle_done(t0, SessionId(10), id);
    router.handle_done(t0, SessionId(11), id);
    let out = drain(&mut router);
    assert_eq!(asked(&out), neighbors([12, 13]));
    let direct = asked_directly(&out);
    assert_eq!(direct.len(), DIRECT_FANOUT);
    assert!(direct.iter().all(|(_, want)| *want == 200));
    // Hits from one of them arrive; when all 32 are done, the next 64 are asked.
    router.handle_direct_hits(t0, named[0], id, vec![hit(1)]);
    for n in &named[..DIRECT_FANOUT] {
        router.handle_direct_done(t0, *n, id);
    }
    let out = drain(&mut router);
    assert_eq!(leaf_hits(&out), 1);
    assert_eq!(asked_directly(&out).len(), 2 * DIRECT_FANOUT);
    // An unreachable one is not waited for; the relays stay unused: the owners answered.
    router.member_gone(t0, named[40]);
    for n in &named[DIRECT_FANOUT..3 * DIRECT_FANOUT] {
        router.handle_direct_done(t0, *n, id);
    }
    router.handle_done(t0, SessionId(12), id);
    router.handle_done(t0, SessionId(13), id);
    let out = drain(&mut router);
    assert_eq!(asked_directly(&out).len(), 100 - 3 * DIRECT_FANOUT);
    for n in &named[3 * DIRECT_FANOUT..] {
        router.handle_direct_done(t0, *n, id);
    }
    let out = drain(&mut router);
    assert!(
        asked(&out).is_empty(),
        "no relay once the directory answered"
    );
    assert_eq!(leaf_done(&out), Some(QueryEnd::Exhausted));
}

#[test]
fn without_an_answer_from_the_owners_the_relays_are_the_fallback() {
    let t0 = Instant::now();
    let mut router = Router::new(config());
    let id = QueryId([8; 16]);
    let targets = Targets {
        candidates: neighbors([10]),
        relays: neighbors([20]),
        directory: true,
    };
    router.start_routed(t0, query(8, 5), Asker::Leaf(LEAF), vec![], targets, 2);
    drain(&mut router);
    router.handle_done(t0, SessionId(10), id);
    // Waiting for the owners: no relay yet, and the query does not end.
    let out = drain(&mut router);
    assert!(asked(&out).is_empty());
    assert_eq!(leaf_done(&out), None);
    router.directory_done(t0, id, None);
    assert_eq!(asked(&drain(&mut router)), neighbors([20]));
}
