//! Fake-clock tests of the leaf core's searches: merging answers, how a search ends, and
//! pacing under the supernode's query limit.

use superpeer_common::TokenBucket;
use superpeer_common::wire::{
    Holder, MAX_HITS_PER_MESSAGE, MAX_HOLDERS_PER_HIT, QueryEnd, SupernodeToLeaf, Via,
};

use super::searches::MAX_HOLDERS_PER_SEARCH;
use super::tests::{Setup, addr, attached, drain, id, limits, ms, quiet, ready, secs, sent};
use super::*;

fn words(w: &str) -> Vec<String> {
    vec![w.to_string()]
}

fn hit(content: u8, holders: &[u8]) -> QueryHit {
    QueryHit {
        content_id: ContentId::from_bytes([content; 32]),
        name: format!("song {content}.mp3"),
        size: 1000,
        holders: holders
            .iter()
            .map(|h| Holder {
                node_id: id(*h),
                addr: addr(*h),
                via: None,
            })
            .collect(),
    }
}

/// The ids of the queries sent.
fn queries(actions: &[LeafAction]) -> Vec<QueryId> {
    sent(actions)
        .into_iter()
        .filter_map(|(_, msg)| match msg {
            LeafToSupernode::Query(q) => Some(q.id),
            _ => None,
        })
        .collect()
}

fn answer(s: &mut Setup, msg: SupernodeToLeaf) -> Vec<LeafAction> {
    s.core.handle_message(s.now, s.session, msg);
    drain(&mut s.core)
}

/// A ready leaf with one search out.
fn one_search() -> (Setup, QueryId) {
    let mut s = ready(quiet(), Vec::new(), 100);
    drain(&mut s.core);
    let id = s.core.search(s.now, &words("song"), 10).unwrap();
    assert_eq!(
        sent(&drain(&mut s.core)),
        vec![(
            s.session,
            LeafToSupernode::Query(Query {
                id,
                keywords: words("song"),
                want: 10,
            })
        )]
    );
    (s, id)
}

#[test]
fn hits_are_merged_by_content_and_only_news_is_passed_on() {
    let (mut s, q) = one_search();
    let first = vec![hit(1, &[10]), hit(2, &[11])];
    assert_eq!(
        answer(
            &mut s,
            SupernodeToLeaf::Hits {
                id: q,
                hits: first.clone()
            }
        ),
        vec![LeafAction::Hits { id: q, hits: first }]
    );
    // The same holder of the same content again (another supernode's answer): nothing new.
    let again = SupernodeToLeaf::Hits {
        id: q,
        hits: vec![hit(1, &[10])],
    };
    assert_eq!(answer(&mut s, again), Vec::new());
    // A new holder of a known content comes with every holder known so far.
    let news = SupernodeToLeaf::Hits {
        id: q,
        hits: vec![hit(1, &[12, 10]), hit(3, &[10])],
    };
    assert_eq!(
        answer(&mut s, news),
        vec![LeafAction::Hits {
            id: q,
            hits: vec![hit(1, &[10, 12]), hit(3, &[10])],
        }]
    );
    assert_eq!(s.core.searches(), (1, 0));
    let done = SupernodeToLeaf::QueryDone {
        id: q,
        end: QueryEnd::Exhausted,
    };
    assert_eq!(
        answer(&mut s, done.clone()),
        vec![LeafAction::SearchOver {
            id: q,
            refused: None
        }]
    );
    assert_eq!(s.core.searches(), (0, 0));
    // Over is over.
    let late = SupernodeToLeaf::Hits {
        id: q,
        hits: vec![hit(4, &[10])],
    };
    assert_eq!(answer(&mut s, late), Vec::new());
    assert_eq!(answer(&mut s, done), Vec::new());
}

#[test]
fn a_holder_reported_through_two_supernodes_is_one_holder() {
    let (mut s, q) = one_search();
    let through = |supernode: u8| {
        let mut h = hit(1, &[10]);
        if let Some(holder) = h.holders.first_mut() {
            holder.via = Some(Via {
                node_id: id(supernode),
                addr: addr(supernode),
            });
        }
        h
    };
    let first = through(50);
    assert_eq!(
        answer(
            &mut s,
            SupernodeToLeaf::Hits {
                id: q,
                hits: vec![first.clone()]
            }
        ),
        vec![LeafAction::Hits {
            id: q,
            hits: vec![first.clone()]
        }]
    );
    // The same leaf through its other supernode: same node id, another `via`.
    let second = SupernodeToLeaf::Hits {
        id: q,
        hits: vec![through(51)],
    };
    assert_eq!(answer(&mut s, second), Vec::new());
    // A new node id is still news, and the first report of the holder is kept.
    let mut both = through(51);
    both.holders.extend(hit(1, &[11]).holders);
    let got = answer(
        &mut s,
        SupernodeToLeaf::Hits {
            id: q,
            hits: vec![both],
        },
    );
    let mut expected = first;
    expected.holders.extend(hit(1, &[11]).holders);
    assert_eq!(
        got,
        vec![LeafAction::Hits {
            id: q,
            hits: vec![expected]
        }]
    );
}

/// A hit for content number `content` with `holders` holders numbered from `first`:
/// room for more distinct contents and holders than the `u8` helpers give.
fn wide_hit(content: u32, first: u32, holders: u32) -> QueryHit {
    let mut content_id = [0u8; 32];
    content_id[..4].copy_from_slice(&content.to_be_bytes());
    QueryHit {
        content_id: ContentId::from_bytes(content_id),
        name: format!("song {content}.mp3"),
        size: 1000,
        holders: (first..first + holders)
            .map(|n| {
                let mut node_id = [7u8; 32];
                node_id[..4].copy_from_slice(&n.to_be_bytes());
                Holder {
                    node_id: NodeId::from_bytes(node_id),
                    addr: SocketAddr::from(([10, 0, 0, 1], (n % 60_000) as u16 + 1)),
                    via: None,
                }
            })
            .collect(),
    }
}

/// What a flood passed on: the distinct contents, and the largest holder list of a hit.
fn passed_on(actions: &[LeafAction]) -> (std::collections::HashSet<ContentId>, usize) {
    let mut contents = std::collections::HashSet::new();
    let mut widest = 0;
    for action in actions {
        if let LeafAction::Hits { hits, .. } = action {
            for hit in hits {
                contents.insert(hit.content_id);
                widest = widest.max(hit.holders.len());
            }
        }
    }
    (contents, widest)
}

#[test]
fn a_flood_of_hits_is_held_to_want_and_the_holder_caps() {
    // A malicious supernode answers a search for 10 with 12 s of full messages: 20,000
    // distinct contents, then known contents again and again with new holders each time.
    let (mut s, q) = one_search();
    let mut actions = Vec::new();
    for round in 0..100u32 {
        let hits = (0..MAX_HITS_PER_MESSAGE as u32)
            .map(|i| wide_hit(round * 1000 + i, round * 10_000 + i * 32, 32))
            .collect();
        actions.extend(answer(&mut s, SupernodeToLeaf::Hits { id: q, hits }));
        s.now += ms(100);
    }
    for round in 0..100u32 {
        let hits = (0..10)
            .map(|c| wide_hit(c, 5_000_000 + round * 1000 + c * 32, 32))
            .collect();
        actions.extend(answer(&mut s, SupernodeToLeaf::Hits { id: q, hits }));
    }
    let (contents, widest) = passed_on(&actions);
    assert_eq!(contents.len(), 10, "the first `want` contents, no more");
    assert_eq!(widest, MAX_HOLDERS_PER_HIT);
    assert_eq!(s.core.searches.held(), (10, 10 * MAX_HOLDERS_PER_HIT));
    // Nothing was passed on once every content was full.
    let after: Vec<_> = (0..10)
        .map(|c| wide_hit(c, 9_000_000 + c * 32, 32))
        .collect();
    assert_eq!(
        answer(&mut s, SupernodeToLeaf::Hits { id: q, hits: after }),
        Vec::new()
    );
}

#[test]
fn a_search_holds_a_bounded_number_of_holders_whatever_it_wants() {
    let mut s = ready(quiet(), Vec::new(), 100);
    drain(&mut s.core);
    let q = s.core.search(s.now, &words("song"), u32::MAX).unwrap();
    drain(&mut s.core);
    let mut actions = Vec::new();
    for round in 0..50u32 {
        let hits = (0..MAX_HITS_PER_MESSAGE as u32)
            .map(|i| wide_hit(round * 1000 + i, round * 10_000 + i * 32, 32))
            .collect();
        actions.extend(answer(&mut s, SupernodeToLeaf::Hits { id: q, hits }));
    }
    let (contents, _) = passed_on(&actions);
    assert!(
        contents.len() <= MAX_CONTENTS_PER_SEARCH,
        "{}",
        contents.len()
    );
    let (held_contents, held_holders) = s.core.searches.held();
    assert!(held_contents <= MAX_CONTENTS_PER_SEARCH);
    assert_eq!(held_holders, MAX_HOLDERS_PER_SEARCH);
}

#[test]
fn a_refused_search_ends_with_a_printable_reason() {
    let (mut s, q) = one_search();
    let refused = SupernodeToLeaf::QueryRefused {
        id: q,
        reason: "rate\nlimited\u{1b}[2J".into(),
    };
    assert_eq!(
        answer(&mut s, refused),
        vec![LeafAction::SearchOver {
            id: q,
            refused: Some("the supernode refused the search: rate_limited_[2J".into()),
        }]
    );
    assert_eq!(s.core.searches(), (0, 0));
}

#[test]
fn a_search_runs_until_its_deadline_at_most() {
    let (mut s, q) = one_search();
    assert!(s.core.poll_timeout(s.now + SEARCH_DEADLINE - ms(1)) <= s.now + SEARCH_DEADLINE);
    s.core.handle_timeout(s.now + SEARCH_DEADLINE - ms(1));
    assert_eq!(drain(&mut s.core), Vec::new());
    s.core.handle_timeout(s.now + SEARCH_DEADLINE);
    assert_eq!(
        drain(&mut s.core),
        vec![LeafAction::SearchOver {
            id: q,
            refused: None
        }]
    );
    let late = SupernodeToLeaf::Hits {
        id: q,
        hits: vec![hit(1, &[10])],
    };
    assert_eq!(answer(&mut s, late), Vec::new());
}

#[test]
fn answers_to_unknown_searches_are_ignored() {
    let (mut s, _) = one_search();
    let unknown = QueryId([7; 16]);
    for msg in [
        SupernodeToLeaf::Hits {
            id: unknown,
            hits: vec![hit(1, &[10])],
        },
        SupernodeToLeaf::QueryDone {
            id: unknown,
            end: QueryEnd::Enough,
        },
        SupernodeToLeaf::QueryRefused {
            id: unknown,
            reason: "no".into(),
        },
    ] {
        assert_eq!(answer(&mut s, msg.clone()), Vec::new());
        s.core.handle_own_answer(msg);
        assert_eq!(drain(&mut s.core), Vec::new());
    }
    assert_eq!(s.core.searches(), (1, 0));
}

#[test]
fn searches_end_when_the_supernode_is_lost() {
    let mut s = ready(quiet(), Vec::new(), 100);
    drain(&mut s.core);
    // 19 go out at once under the default limits, 2 wait.
    let ids: Vec<QueryId> = (0..21)
        .map(|_| s.core.search(s.now, &words("song"), 10).unwrap())
        .collect();
    assert_eq!(queries(&drain(&mut s.core)), ids[..19].to_vec());
    assert_eq!(s.core.searches(), (19, 2));
    // One search has had an answer: it ends as it is. The others never ran to an answer,
    // so they end with a reason (not a silent "no results").
    let got = answer(
        &mut s,
        SupernodeToLeaf::Hits {
            id: ids[0],
            hits: vec![hit(1, &[1])],
        },
    );
    assert_eq!(got.len(), 1);
    s.core.handle_session_ended(s.now, s.session);
    let mut over: Vec<(QueryId, Option<String>)> = drain(&mut s.core)
        .into_iter()
        .filter_map(|a| match a {
            LeafAction::SearchOver { id, refused } => Some((id, refused)),
            _ => None,
        })
        .collect();
    over.sort();
    let why = "the search was cut short: the supernode went away; try again in a moment";
    let mut expected: Vec<(QueryId, Option<String>)> = std::iter::once((ids[0], None))
        .chain(ids[1..].iter().map(|id| (*id, Some(why.to_string()))))
        .collect();
    expected.sort();
    assert_eq!(over, expected);
    assert_eq!(s.core.searches(), (0, 0));
}

#[test]
fn a_search_needs_words_and_a_supernode() {
    let t0 = Instant::now();
    let mut core = LeafCore::new(t0, id(200), quiet(), Vec::new(), 1);
    assert!(core.search(t0, &words("song"), 10).is_err(), "not attached");
    let mut s = ready(quiet(), Vec::new(), 100);
    drain(&mut s.core);
    assert!(s.core.search(s.now, &words("-- !!"), 10).is_err());
    assert_eq!(drain(&mut s.core), Vec::new());
}

#[test]
fn a_cancelled_search_tells_the_supernode_only_if_it_went_out() {
    let mut s = ready(quiet(), Vec::new(), 100);
    drain(&mut s.core);
    let ids: Vec<QueryId> = (0..20)
        .map(|_| s.core.search(s.now, &words("song"), 10).unwrap())
        .collect();
    drain(&mut s.core);
    assert_eq!(s.core.searches(), (19, 1));
    s.core.cancel_search(ids[0]);
    assert_eq!(
        sent(&drain(&mut s.core)),
        vec![(s.session, LeafToSupernode::CancelQuery { id: ids[0] })]
    );
    s.core.cancel_search(ids[19]);
    assert_eq!(drain(&mut s.core), Vec::new());
    assert_eq!(s.core.searches(), (18, 0));
    let late = SupernodeToLeaf::Hits {
        id: ids[0],
        hits: vec![hit(1, &[10])],
    };
    assert_eq!(answer(&mut s, late), Vec::new());
}

/// The supernode's side of the query limit (as in `LeafLimits` of [`limits`]: one per
/// 200 ms, 20 at once), its bucket full from `start`: how many of `sends` it would refuse.
fn refused_by_supernode(start: Instant, sends: &[Instant]) -> usize {
    let mut bucket = TokenBucket::new(start, 5.0, 20);
    sends.iter().filter(|t| !bucket.try_take(**t)).count()
}

#[test]
fn searches_are_paced_under_the_supernodes_query_limit() {
    let mut s = attached(quiet(), &[(1, 10)], Vec::new(), 1);
    let start = s.now;
    s.core
        .handle_message(start, s.session, SupernodeToLeaf::Limits(limits(100)));
    drain(&mut s.core);
    let ids: Vec<QueryId> = (0..60)
        .map(|_| s.core.search(start, &words("song"), 10).unwrap())
        .collect();
    let mut sends: Vec<(Instant, QueryId)> = queries(&drain(&mut s.core))
        .into_iter()
        .map(|q| (start, q))
        .collect();
    assert_eq!(sends.len(), 19, "the burst, one short of the supernode's");
    assert_eq!(s.core.searches(), (19, 41));
    let mut now = start;
    while sends.len() < 60 && now < start + secs(30) {
        let next = s.core.poll_timeout(now);
        assert!(next > now);
        now = next;
        s.core.handle_timeout(now);
        sends.extend(queries(&drain(&mut s.core)).into_iter().map(|q| (now, q)));
    }
    assert_eq!(
        sends.iter().map(|(_, q)| *q).collect::<Vec<_>>(),
        ids,
        "all of them, in order"
    );
    let times: Vec<Instant> = sends.iter().map(|(t, _)| *t).collect();
    assert_eq!(refused_by_supernode(start, &times), 0);
    // About the rate: 41 after the burst at 5 a second, less a margin.
    let took = now - start;
    assert!(took >= ms(41 * 200) && took <= secs(10), "took {took:?}");
}

#[test]
fn past_the_queue_a_search_is_refused() {
    let mut s = ready(quiet(), Vec::new(), 100);
    drain(&mut s.core);
    for _ in 0..19 + MAX_QUEUED_SEARCHES {
        s.core.search(s.now, &words("song"), 10).unwrap();
    }
    drain(&mut s.core);
    assert_eq!(s.core.searches(), (19, MAX_QUEUED_SEARCHES));
    let refused = s.core.search(s.now, &words("song"), 10).unwrap_err();
    assert!(refused.contains("too many searches"), "{refused}");
    assert_eq!(drain(&mut s.core), Vec::new());
    assert_eq!(s.core.searches(), (19, MAX_QUEUED_SEARCHES));
}

#[test]
fn queries_before_the_limits_message_count_against_the_same_bucket() {
    let mut s = attached(quiet(), &[(1, 10)], Vec::new(), 1);
    // The supernode's bucket starts with the welcome; the user searches before Limits.
    let welcomed = s.now;
    let mut times = Vec::new();
    for _ in 0..19 {
        s.core.search(welcomed, &words("song"), 10).unwrap();
    }
    times.extend(queries(&drain(&mut s.core)).iter().map(|_| welcomed));
    let later = welcomed + ms(5);
    s.core
        .handle_message(later, s.session, SupernodeToLeaf::Limits(limits(100)));
    for _ in 0..19 {
        s.core.search(later, &words("song"), 10).unwrap();
    }
    times.extend(queries(&drain(&mut s.core)).iter().map(|_| later));
    assert_eq!(
        refused_by_supernode(welcomed, &times),
        0,
        "{} sent",
        times.len()
    );
}

#[test]
fn a_supernode_searches_through_itself_unpaced() {
    let t0 = Instant::now();
    let config = LeafCoreConfig {
        start_as_supernode: true,
        ..quiet()
    };
    let mut core = LeafCore::new(t0, id(200), config, Vec::new(), 1);
    assert_eq!(drain(&mut core), vec![LeafAction::StartSupernode]);
    core.handle_supernode_started(t0, Ok(()));
    drain(&mut core);
    let ids: Vec<QueryId> = (0..40)
        .map(|_| core.search(t0, &words("song"), 10).unwrap())
        .collect();
    let own: Vec<QueryId> = drain(&mut core)
        .into_iter()
        .filter_map(|a| match a {
            LeafAction::SearchOwnSupernode(q) => Some(q.id),
            _ => None,
        })
        .collect();
    assert_eq!(own, ids);
    let hits = vec![hit(1, &[10])];
    core.handle_own_answer(SupernodeToLeaf::Hits {
        id: ids[0],
        hits: hits.clone(),
    });
    assert_eq!(
        drain(&mut core),
        vec![LeafAction::Hits { id: ids[0], hits }]
    );
}
