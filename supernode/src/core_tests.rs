//! Supernode core tests: whole decisions with a fake clock and no sockets.

use superpeer_common::wire::{QueryEnd, QueryHit, QueryId, SUMMARY_BYTES};

use super::*;

fn id(n: u8) -> NodeId {
    NodeId::from_bytes([n; 32])
}

fn addr(n: u8) -> SocketAddr {
    format!("127.0.0.{n}:5000").parse().unwrap()
}

fn core(n: u8, config: CoreConfig) -> SupernodeCore {
    SupernodeCore::new(
        Instant::now(),
        Holder {
            node_id: id(n),
            addr: addr(n),
            via: None,
        },
        config,
        u64::from(n),
    )
}

fn entry(name: &str) -> FileEntry {
    FileEntry {
        content_id: ContentId::of_bytes(name.as_bytes()),
        name: name.into(),
        size: 10,
    }
}

fn drain(core: &mut SupernodeCore) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

fn query(n: u8, words: &[&str]) -> LeafToSupernode {
    LeafToSupernode::Query(Query {
        id: QueryId([n; 16]),
        keywords: words.iter().map(|w| w.to_string()).collect(),
        want: 10,
    })
}

/// `core` believes `n` is a supernode, as if a list server listed it.
fn believe(core: &mut SupernodeCore, now: Instant, n: u8) {
    core.learn(
        now,
        &[SupernodeInfo {
            node_id: id(n),
            addr: addr(n),
            load: Load::default(),
            stale: false,
        }],
    );
}

/// Links `core` to neighbour `n` on session `session` and gives it a summary of `words`.
fn link(core: &mut SupernodeCore, now: Instant, session: u64, n: u8, words: &[&str]) {
    believe(core, now, n);
    assert!(core.link_up(now, SessionId(session), id(n), id(n), Some(addr(n))));
    let table = KeywordSummary::from_keywords(words.iter().copied()).to_bytes();
    core.neighbor_message(
        now,
        SessionId(session),
        SupernodeToSupernode::Summary {
            generation: 1,
            table,
        },
    );
}

fn queried(actions: &[Action]) -> Vec<SessionId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ToNeighbor(s, SupernodeToSupernode::Query { .. }) => Some(*s),
            _ => None,
        })
        .collect()
}

fn hits_to(actions: &[Action], leaf: SessionId) -> Vec<String> {
    actions
        .iter()
        .flat_map(|a| match a {
            Action::ToLeaf(s, SupernodeToLeaf::Hits { hits, .. }) if *s == leaf => {
                hits.iter().map(|h| h.name.clone()).collect()
            }
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn a_query_goes_only_to_neighbours_whose_summary_matches() {
    let now = Instant::now();
    let mut sn = core(1, CoreConfig::default());
    link(&mut sn, now, 10, 2, &["abba", "waterloo"]);
    link(&mut sn, now, 11, 3, &["beatles", "help"]);
    link(&mut sn, now, 12, 4, &["abba"]);
    drain(&mut sn);
    let leaf = SessionId(1);
    assert_eq!(
        sn.leaf_attach(now, leaf, id(50), addr(50)),
        HelloReply::Welcome {
            role: Role::Supernode
        }
    );
    sn.leaf_message(now, leaf, query(1, &["ABBA", "Waterloo"]));
    assert_eq!(
        queried(&drain(&mut sn)),
        vec![SessionId(10)],
        "only node 2 may hold both words"
    );
    sn.leaf_message(now, leaf, query(2, &["abba"]));
    let mut asked = queried(&drain(&mut sn));
    asked.sort();
    assert_eq!(asked, vec![SessionId(10), SessionId(12)]);
    sn.leaf_message(now, leaf, query(3, &["nothing"]));
    let actions = drain(&mut sn);
    assert!(queried(&actions).is_empty());
    assert!(actions.contains(&Action::ToLeaf(
        leaf,
        SupernodeToLeaf::QueryDone {
            id: QueryId([3; 16]),
            end: QueryEnd::Exhausted
        }
    )));
}

#[test]
fn local_files_answer_and_vanish_with_their_leaf() {
    let now = Instant::now();
    let mut sn = core(1, CoreConfig::default());
    let (a, b) = (SessionId(1), SessionId(2));
    sn.leaf_attach(now, a, id(50), addr(50));
    sn.leaf_attach(now, b, id(51), addr(51));
    sn.leaf_message(
        now,
        a,
        LeafToSupernode::Publish {
            entries: vec![entry("Abba - Waterloo.mp3")],
        },
    );
    sn.leaf_message(now, b, query(1, &["waterloo"]));
    assert_eq!(
        hits_to(&drain(&mut sn), b),
        vec!["Abba - Waterloo.mp3".to_string()]
    );
    sn.leaf_gone(now, a);
    sn.leaf_message(now, b, query(2, &["waterloo"]));
    assert!(
        hits_to(&drain(&mut sn), b).is_empty(),
        "a gone leaf's files never come back"
    );
    assert_eq!(sn.status().indexed, 0);
}

/// The holders of the hits sent to `leaf`.
fn holders_to(actions: &[Action], leaf: SessionId) -> Vec<Holder> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ToLeaf(s, SupernodeToLeaf::Hits { hits, .. }) if *s == leaf => Some(hits),
            _ => None,
        })
        .flatten()
        .flat_map(|hit| hit.holders.iter().copied())
        .collect()
}

#[test]
fn a_firewalled_leafs_hits_name_the_supernode_that_reaches_it() {
    let now = Instant::now();
    let mut sn = core(1, CoreConfig::default());
    let (holder, asker) = (SessionId(1), SessionId(2));
    sn.leaf_attach(now, holder, id(50), addr(50));
    sn.leaf_attach(now, asker, id(51), addr(51));
    let via = Via {
        node_id: id(1),
        addr: addr(1),
    };
    // Known firewalled before it publishes, and after.
    sn.leaf_reachability(holder, Some(via));
    let publish = |name: &str| LeafToSupernode::Publish {
        entries: vec![entry(name)],
    };
    sn.leaf_message(now, holder, publish("harbour one.mp3"));
    sn.leaf_message(now, asker, query(1, &["harbour"]));
    let holders = holders_to(&drain(&mut sn), asker);
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].via, Some(via));
    assert_eq!(holders[0].addr, addr(50), "still named where it was seen");
    // A dial-back later reached it: its hits say to dial it.
    sn.leaf_reachability(holder, None);
    sn.leaf_message(now, asker, query(2, &["harbour"]));
    let holders = holders_to(&drain(&mut sn), asker);
    assert_eq!(holders[0].via, None);
}

#[test]
fn summaries_follow_the_index_throttled() {
    let t0 = Instant::now();
    let mut sn = core(1, CoreConfig::default());
    believe(&mut sn, t0, 2);
    assert!(sn.link_up(t0, SessionId(10), id(2), id(2), Some(addr(2))));
    let first = drain(&mut sn);
    assert!(
        first.iter().any(|a| matches!(
            a,
            Action::ToNeighbor(_, SupernodeToSupernode::Summary { .. })
        )),
        "a new neighbour gets our summary"
    );
    sn.handle_timeout(t0, 0);
    drain(&mut sn);

    let leaf = SessionId(1);
    sn.leaf_attach(t0, leaf, id(50), addr(50));
    sn.leaf_message(
        t0,
        leaf,
        LeafToSupernode::Publish {
            entries: vec![entry("zebra.txt")],
        },
    );
    sn.handle_timeout(t0 + Duration::from_millis(10), 0);
    let throttled = drain(&mut sn);
    assert!(
        !throttled.iter().any(|a| matches!(
            a,
            Action::ToNeighbor(_, SupernodeToSupernode::Summary { .. })
        )),
        "too soon after the last"
    );
    sn.handle_timeout(t0 + Duration::from_millis(300), 0);
    let sent: Vec<KeywordSummary> = drain(&mut sn)
        .into_iter()
        .filter_map(|a| match a {
            Action::ToNeighbor(_, SupernodeToSupernode::Summary { table, .. }) => {
                Some(KeywordSummary::from_bytes(table).unwrap())
            }
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].may_contain_all(&["zebra", "txt"]));
    // Nothing changed: nothing sent.
    sn.handle_timeout(t0 + Duration::from_millis(700), 0);
    assert!(!drain(&mut sn).iter().any(|a| matches!(
        a,
        Action::ToNeighbor(_, SupernodeToSupernode::Summary { .. })
    )));
    // The leaf goes: its words leave the next summary.
    sn.leaf_gone(t0, leaf);
    sn.handle_timeout(t0 + Duration::from_millis(1000), 0);
    let emptied = drain(&mut sn).into_iter().find_map(|a| match a {
        Action::ToNeighbor(_, SupernodeToSupernode::Summary { table, .. }) => {
            Some(KeywordSummary::from_bytes(table).unwrap())
        }
        _ => None,
    });
    assert!(!emptied.unwrap().may_contain_all(&["zebra"]));
}

#[test]
fn a_full_supernode_refuses_with_alternatives() {
    let now = Instant::now();
    let mut sn = core(
        1,
        CoreConfig {
            max_leaves: 1,
            ..Default::default()
        },
    );
    let mut roomy = SupernodeInfo {
        node_id: id(2),
        addr: addr(2),
        load: Load {
            leaves: 1,
            capacity: 10,
            neighbors: 0,
        },
        stale: false,
    };
    let mut full = roomy;
    full.node_id = id(3);
    full.load.leaves = 10;
    sn.learn(now, &[roomy, full]);
    sn.leaf_attach(now, SessionId(1), id(50), addr(50));
    match sn.leaf_attach(now, SessionId(2), id(51), addr(51)) {
        HelloReply::Refused { try_instead, .. } => {
            roomy.stale = false;
            assert_eq!(
                try_instead,
                vec![roomy],
                "only supernodes with room are suggested"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn bad_neighbour_input_closes_the_link() {
    let now = Instant::now();
    let mut sn = core(1, CoreConfig::default());
    believe(&mut sn, now, 2);
    assert!(sn.link_up(now, SessionId(10), id(2), id(2), None));
    drain(&mut sn);
    sn.neighbor_message(
        now,
        SessionId(10),
        SupernodeToSupernode::Summary {
            generation: 1,
            table: vec![0; SUMMARY_BYTES - 1],
        },
    );
    assert!(matches!(
        drain(&mut sn).as_slice(),
        [Action::Close {
            session: SessionId(10),
            code: CloseCode::ProtocolViolation,
            ..
        }]
    ));
    let hundreds = (0..300).map(|i| format!("w{i}")).collect();
    sn.neighbor_message(
        now,
        SessionId(10),
        SupernodeToSupernode::Query {
            query: Query {
                id: QueryId([1; 16]),
                keywords: hundreds,
                want: 1,
            },
            ttl: 1,
        },
    );
    assert!(matches!(
        drain(&mut sn).as_slice(),
        [Action::Close {
            code: CloseCode::ProtocolViolation,
            ..
        }]
    ));
}

#[test]
fn bad_leaf_queries_are_refused_and_a_flood_is_rate_limited() {
    let now = Instant::now();
    let mut sn = core(
        1,
        CoreConfig {
            leaf_query_rate: (1.0, 5),
            ..Default::default()
        },
    );
    let (flooder, other) = (SessionId(1), SessionId(2));
    sn.leaf_attach(now, flooder, id(50), addr(50));
    sn.leaf_attach(now, other, id(51), addr(51));
    sn.leaf_message(
        now,
        other,
        LeafToSupernode::Publish {
            entries: vec![entry("song.mp3")],
        },
    );
    drain(&mut sn);

    sn.leaf_message(now, flooder, query(1, &[]));
    let actions = drain(&mut sn);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::ToLeaf(_, SupernodeToLeaf::QueryRefused { .. })))
    );
    sn.leaf_message(now, flooder, query(2, &["--", "!!"]));
    assert!(
        drain(&mut sn)
            .iter()
            .any(|a| matches!(a, Action::ToLeaf(_, SupernodeToLeaf::QueryRefused { .. })))
    );

    let mut answered = 0;
    for n in 10..200 {
        sn.leaf_message(now, flooder, query(n, &["song"]));
        answered += hits_to(&drain(&mut sn), flooder).len();
    }
    assert_eq!(
        answered, 3,
        "the burst, less the two bad queries, then nothing"
    );
    sn.leaf_message(now, other, query(250, &["song"]));
    assert_eq!(
        hits_to(&drain(&mut sn), other).len(),
        1,
        "another leaf is still served"
    );
}

#[test]
fn full_mesh_queries_are_not_relayed_further() {
    let now = Instant::now();
    let mut sn = core(1, CoreConfig::default());
    link(&mut sn, now, 10, 2, &["abba"]);
    drain(&mut sn);
    sn.leaf_attach(now, SessionId(1), id(50), addr(50));
    sn.leaf_message(now, SessionId(1), query(1, &["abba"]));
    let ttl = drain(&mut sn).into_iter().find_map(|a| match a {
        Action::ToNeighbor(_, SupernodeToSupernode::Query { ttl, .. }) => Some(ttl),
        _ => None,
    });
    assert_eq!(ttl, Some(0), "every known supernode is a neighbour");

    // Knowing more supernodes than we link to, queries may take one more hop.
    sn.learn(
        now,
        &[SupernodeInfo {
            node_id: id(9),
            addr: addr(9),
            load: Load::default(),
            stale: false,
        }],
    );
    sn.leaf_message(now, SessionId(1), query(2, &["abba"]));
    let ttl = drain(&mut sn).into_iter().find_map(|a| match a {
        Action::ToNeighbor(_, SupernodeToSupernode::Query { ttl, .. }) => Some(ttl),
        _ => None,
    });
    assert_eq!(ttl, Some(1));
}

#[test]
fn dials_known_supernodes() {
    let now = Instant::now();
    let mut sn = core(1, CoreConfig::default());
    sn.learn(
        now,
        &[SupernodeInfo {
            node_id: id(2),
            addr: addr(2),
            load: Load::default(),
            stale: false,
        }],
    );
    sn.handle_timeout(now, 0);
    assert!(drain(&mut sn).contains(&Action::Dial {
        node_id: id(2),
        addr: addr(2)
    }));
}

#[test]
fn a_new_link_does_not_swallow_the_broadcast_of_a_changed_summary() {
    let t0 = Instant::now();
    let mut sn = core(1, CoreConfig::default());
    believe(&mut sn, t0, 2);
    assert!(sn.link_up(t0, SessionId(10), id(2), id(2), Some(addr(2))));
    sn.handle_timeout(t0, 0);
    drain(&mut sn);
    let leaf = SessionId(1);
    sn.leaf_attach(t0, leaf, id(50), addr(50));
    sn.leaf_message(
        t0,
        leaf,
        LeafToSupernode::Publish {
            entries: vec![entry("okapi.txt")],
        },
    );
    // A second neighbour links before the next broadcast: it gets the new summary...
    let t1 = t0 + Duration::from_millis(300);
    believe(&mut sn, t1, 3);
    assert!(sn.link_up(t1, SessionId(11), id(3), id(3), Some(addr(3))));
    drain(&mut sn);
    // ...and the first neighbour still gets it on the next tick.
    sn.handle_timeout(t1, 0);
    let to_first = drain(&mut sn).into_iter().any(|a| match a {
        Action::ToNeighbor(SessionId(10), SupernodeToSupernode::Summary { table, .. }) => {
            KeywordSummary::from_bytes(table)
                .unwrap()
                .may_contain_all(&["okapi"])
        }
        _ => false,
    });
    assert!(to_first, "the old neighbour must learn the new words");
}

#[test]
fn a_query_that_normalises_to_too_many_words_is_refused_not_forwarded() {
    let now = Instant::now();
    let mut sn = core(1, CoreConfig::default());
    link(
        &mut sn,
        now,
        10,
        2,
        &[
            "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog",
        ],
    );
    drain(&mut sn);
    sn.leaf_attach(now, SessionId(1), id(50), addr(50));
    sn.leaf_message(
        now,
        SessionId(1),
        query(1, &["the.quick.brown.fox.jumps.over.a.lazy.dog"]),
    );
    let actions = drain(&mut sn);
    assert!(
        queried(&actions).is_empty(),
        "never forwarded: the neighbour would see a violation"
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::ToLeaf(_, SupernodeToLeaf::QueryRefused { .. })))
    );
}

#[test]
fn a_leaf_flooding_messages_is_dropped() {
    let now = Instant::now();
    let mut sn = core(1, CoreConfig::default());
    sn.leaf_attach(now, SessionId(1), id(50), addr(50));
    sn.leaf_attach(now, SessionId(2), id(51), addr(51));
    let mut closed = false;
    for nonce in 0..1_000 {
        sn.leaf_message(now, SessionId(1), LeafToSupernode::Ping { nonce });
        if drain(&mut sn).iter().any(|a| {
            matches!(
                a,
                Action::Close {
                    session: SessionId(1),
                    code: CloseCode::Overloaded,
                    ..
                }
            )
        }) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a flood of pings closes the session");
    // Another leaf is unaffected.
    sn.leaf_message(now, SessionId(2), LeafToSupernode::Ping { nonce: 7 });
    assert_eq!(
        drain(&mut sn),
        vec![Action::ToLeaf(
            SessionId(2),
            SupernodeToLeaf::Pong { nonce: 7 }
        )]
    );
}

/// Neighbour `session` tells `core` it is linked to `links` (its gossip).
fn gossip(core: &mut SupernodeCore, now: Instant, session: u64, n: u8, links: &[u8]) {
    let info = |k: u8| SupernodeInfo {
        node_id: id(k),
        addr: addr(k),
        load: Load::default(),
        stale: false,
    };
    let mut supernodes: Vec<SupernodeInfo> = links.iter().map(|&k| info(k)).collect();
    supernodes.push(info(n));
    core.neighbor_message(
        now,
        SessionId(session),
        SupernodeToSupernode::Known {
            load: Load::default(),
            supernodes,
        },
    );
}

fn relayed(n: u8, ttl: u8) -> SupernodeToSupernode {
    SupernodeToSupernode::Query {
        query: Query {
            id: QueryId([n; 16]),
            keywords: vec!["abba".into()],
            want: 10,
        },
        ttl,
    }
}

#[test]
fn a_relay_passes_a_query_on_only_beyond_the_asker_and_only_if_drawn() {
    let now = Instant::now();
    // We are node 1. Node 2 asks us to relay; node 4 is linked to it, node 3 is not; both
    // may hold the word, and node 4 could pass it to node 3 as well as we could.
    let mut sn = core(1, CoreConfig::default());
    link(&mut sn, now, 10, 2, &[]);
    link(&mut sn, now, 11, 3, &["abba"]);
    link(&mut sn, now, 12, 4, &["abba"]);
    gossip(&mut sn, now, 10, 2, &[4]);
    gossip(&mut sn, now, 11, 3, &[4]);
    drain(&mut sn);
    // Ranks are keyed by the query id: find an id for which we (1) rank before node 4, and
    // one for which node 4 ranks first.
    let rank = |n: u8, node: u8| relay_rank(&QueryId([n; 16]), &id(node));
    let ours = (0..=255).find(|&n| rank(n, 1) < rank(n, 4)).unwrap();
    let theirs = (0..=255).find(|&n| rank(n, 4) < rank(n, 1)).unwrap();
    sn.neighbor_message(now, SessionId(10), relayed(ours, 1));
    assert_eq!(
        queried(&drain(&mut sn)),
        vec![SessionId(11)],
        "node 4 is the asker's own link; node 3 is ours to reach"
    );
    // ...and with the other, node 4 does, so node 3 hears it from node 4 alone.
    sn.neighbor_message(now, SessionId(10), relayed(theirs, 1));
    assert!(queried(&drain(&mut sn)).is_empty());
}

#[test]
fn a_ground_relay_id_is_drawn_no_more_often_than_any_other() {
    use rand::{Rng, SeedableRng};
    // Seven relays whose ids share a first byte, and one ground to sit apart from them:
    // under `query id XOR node id` it would be drawn for every query id whose first bit
    // is 1, half of all queries instead of an eighth.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut relays: Vec<NodeId> = (0..7)
        .map(|_| {
            let mut bytes: [u8; 32] = rng.random();
            bytes[0] = 0x00;
            NodeId::from_bytes(bytes)
        })
        .collect();
    let mut ground = [0xffu8; 32];
    ground[31] = 0x01;
    relays.push(NodeId::from_bytes(ground));
    let draws = 40_000;
    let mut drawn = vec![0u32; relays.len()];
    for _ in 0..draws {
        let query = QueryId(rng.random());
        let first = (0..relays.len())
            .min_by_key(|&i| relay_rank(&query, &relays[i]))
            .unwrap();
        drawn[first] += 1;
    }
    // An eighth each, 5,000 +- 330 (five standard deviations).
    let fair = draws / relays.len() as u32;
    for (i, n) in drawn.iter().enumerate() {
        assert!(
            n.abs_diff(fair) <= 330,
            "relay {i} drawn {n} times of {draws}: {drawn:?}"
        );
    }
}

#[test]
fn the_second_hop_goes_through_neighbours_that_reach_further() {
    let now = Instant::now();
    let mut sn = core(1, CoreConfig::default());
    link(&mut sn, now, 10, 2, &[]);
    link(&mut sn, now, 11, 3, &[]);
    // Node 2 is linked to node 7, which we are not; node 3 only to node 2.
    gossip(&mut sn, now, 10, 2, &[3, 7]);
    gossip(&mut sn, now, 11, 3, &[2]);
    drain(&mut sn);
    sn.leaf_attach(now, SessionId(1), id(50), addr(50));
    sn.leaf_message(now, SessionId(1), query(1, &["abba"]));
    // No neighbour's summary has the word, so it goes straight to the relay.
    let asked: Vec<(SessionId, u8)> = drain(&mut sn)
        .into_iter()
        .filter_map(|a| match a {
            Action::ToNeighbor(s, SupernodeToSupernode::Query { ttl, .. }) => Some((s, ttl)),
            _ => None,
        })
        .collect();
    assert_eq!(asked, vec![(SessionId(10), 1)]);
}

fn closed(actions: &[Action], session: u64) -> bool {
    actions.iter().any(|a| {
        matches!(a, Action::Close { session: s, code: CloseCode::ProtocolViolation, .. }
            if *s == SessionId(session))
    })
}

fn fake_hit(name: &str) -> QueryHit {
    QueryHit {
        content_id: ContentId::of_bytes(name.as_bytes()),
        name: name.into(),
        size: 1,
        holders: vec![Holder {
            node_id: id(99),
            addr: addr(99),
            via: None,
        }],
    }
}

#[test]
fn a_fake_neighbour_cannot_take_over_searches() {
    let now = Instant::now();
    let mut sn = core(1, CoreConfig::default());
    link(&mut sn, now, 10, 2, &["abba"]);
    believe(&mut sn, now, 3);
    assert!(sn.link_up(now, SessionId(11), id(3), id(3), Some(addr(3))));
    // An all-ones summary: it would match every query and be asked first.
    sn.neighbor_message(
        now,
        SessionId(11),
        SupernodeToSupernode::Summary {
            generation: 1,
            table: vec![0xff; SUMMARY_BYTES],
        },
    );
    drain(&mut sn);
    sn.leaf_attach(now, SessionId(1), id(50), addr(50));
    drain(&mut sn);
    sn.leaf_message(now, SessionId(1), query(1, &["abba"]));
    assert_eq!(
        queried(&drain(&mut sn)),
        vec![SessionId(10)],
        "a summary matching everything matches nothing"
    );
    // With a plausible summary it is asked; its answers that do not match the words never
    // reach the leaf, and its link closes.
    link(&mut sn, now, 12, 4, &["abba"]);
    sn.leaf_message(now, SessionId(1), query(2, &["abba"]));
    let asked = queried(&drain(&mut sn));
    assert!(asked.contains(&SessionId(12)), "{asked:?}");
    let hits = vec![fake_hit("free money.exe"), fake_hit("abba gold.mp3")];
    sn.neighbor_message(
        now,
        SessionId(12),
        SupernodeToSupernode::Hits {
            id: QueryId([2; 16]),
            hits,
        },
    );
    let actions = drain(&mut sn);
    assert_eq!(hits_to(&actions, SessionId(1)), vec!["abba gold.mp3"]);
    assert!(closed(&actions, 12), "{actions:?}");
}

#[test]
fn a_neighbour_flooding_queries_cannot_turn_leaves_away() {
    let t0 = Instant::now();
    let mut sn = core(1, CoreConfig::default());
    link(&mut sn, t0, 10, 2, &["abba"]);
    link(&mut sn, t0, 11, 3, &["abba"]);
    sn.leaf_attach(t0, SessionId(1), id(50), addr(50));
    drain(&mut sn);
    // Neighbour 3 sends 250 queries a second for 20 s, each one the honest neighbour may
    // answer (so each stays running until its deadline).
    let mut answered_at_once = 0;
    for i in 0..5_000u32 {
        let now = t0 + Duration::from_millis(u64::from(i) * 4);
        let mut qid = [0u8; 16];
        qid[..4].copy_from_slice(&i.to_be_bytes());
        qid[15] = 0xee;
        sn.neighbor_message(
            now,
            SessionId(11),
            SupernodeToSupernode::Query {
                query: Query {
                    id: QueryId(qid),
                    keywords: vec!["abba".into()],
                    want: 10,
                },
                ttl: 1,
            },
        );
        sn.handle_timeout(now, 0);
        let actions = drain(&mut sn);
        assert!(!closed(&actions, 11), "an honest rate closes nothing");
        answered_at_once += actions
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::ToNeighbor(SessionId(11), SupernodeToSupernode::QueryDone { .. })
                )
            })
            .count();
        assert!(sn.router.running_for(SessionId(11)) <= MAX_RUNNING_PER_NEIGHBOR);
    }
    assert!(answered_at_once > 2_000, "{answered_at_once}");
    assert!(sn.status().busy_for_neighbors > 2_000);
    // A leaf's search still runs and goes out.
    let now = t0 + Duration::from_secs(20);
    sn.leaf_message(now, SessionId(1), query(9, &["abba"]));
    let asked = queried(&drain(&mut sn));
    assert!(asked.contains(&SessionId(10)), "{asked:?}");
}

#[test]
fn hits_for_a_content_id_query_match_by_id_whatever_their_name() {
    let now = Instant::now();
    let mut sn = core(1, CoreConfig::default());
    let id_word = ContentId::of_bytes(b"abba gold.mp3").to_string();
    link(&mut sn, now, 10, 2, &[id_word.as_str()]);
    sn.leaf_attach(now, SessionId(1), id(50), addr(50));
    drain(&mut sn);
    sn.leaf_message(now, SessionId(1), query(1, &[id_word.as_str()]));
    assert_eq!(queried(&drain(&mut sn)), vec![SessionId(10)]);
    let mut other = fake_hit("abba gold.mp3");
    other.content_id = ContentId::of_bytes(b"something else");
    sn.neighbor_message(
        now,
        SessionId(10),
        SupernodeToSupernode::Hits {
            id: QueryId([1; 16]),
            hits: vec![fake_hit("abba gold.mp3"), other],
        },
    );
    let actions = drain(&mut sn);
    assert_eq!(hits_to(&actions, SessionId(1)), vec!["abba gold.mp3"]);
    assert!(
        closed(&actions, 10),
        "another content for an id query is a lie"
    );
}
