//! Joining state machine tests with a fake clock.

use super::*;

fn id(n: u8) -> NodeId {
    NodeId::from_bytes([n; 32])
}

fn info(n: u8, leaves: u32, capacity: u32) -> SupernodeInfo {
    SupernodeInfo {
        node_id: id(n),
        addr: format!("127.0.0.{n}:4000").parse().unwrap(),
        load: Load {
            leaves,
            capacity,
            neighbors: 0,
        },
        stale: false,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A joiner that knows supernodes 1..=n with the given RTTs, all probed at `now`.
fn probed(now: Instant, rtts: &[u64]) -> Joiner {
    let mut joiner = Joiner::new(id(200), JoinConfig::default());
    let infos: Vec<_> = (1..=rtts.len() as u8).map(|n| info(n, 0, 10)).collect();
    joiner.add(now, &infos);
    let mut pending = Vec::new();
    while pending.len() < rtts.len() {
        let batch = joiner.poll_probes(now);
        assert!(batch.len() <= 5, "at most 5 probes at once");
        assert!(!batch.is_empty());
        for p in &batch {
            pending.push(p.node_id.unwrap());
        }
        for p in batch {
            let n = p.node_id.unwrap().as_bytes()[0] as usize;
            joiner.probe_result(
                now,
                p.node_id.unwrap(),
                Some((
                    ms(rtts[n - 1]),
                    Some(Load {
                        leaves: 0,
                        capacity: 10,
                        neighbors: 0,
                    }),
                )),
            );
        }
    }
    joiner
}

#[test]
fn the_lowest_rtt_with_room_is_chosen() {
    let now = Instant::now();
    let joiner = probed(now, &[80, 40, 5, 60, 20, 70, 90]);
    let (target, rtt) = joiner.next_attach(now).unwrap();
    assert_eq!(target.node_id, Some(id(3)));
    assert_eq!(rtt, ms(5));
}

#[test]
fn probes_go_five_at_a_time() {
    let now = Instant::now();
    let mut joiner = Joiner::new(id(200), JoinConfig::default());
    joiner.add(now, &(1..=12).map(|n| info(n, 0, 10)).collect::<Vec<_>>());
    assert_eq!(joiner.poll_probes(now).len(), 5);
    assert!(joiner.poll_probes(now).is_empty(), "five still under way");
    assert!(joiner.next_attach(now).is_none(), "nothing measured yet");
}

#[test]
fn a_full_supernode_is_skipped_and_its_suggestions_followed() {
    let now = Instant::now();
    let mut joiner = probed(now, &[5, 20]);
    joiner.refused(now, id(1), &[info(9, 1, 100)]);
    // The suggestion gets probed next, and until then the second best is chosen.
    let probes = joiner.poll_probes(now);
    assert_eq!(
        probes
            .iter()
            .map(|p| p.node_id.unwrap())
            .collect::<Vec<_>>(),
        vec![id(9)]
    );
    assert_eq!(joiner.next_attach(now).unwrap().0.node_id, Some(id(2)));
    joiner.probe_result(now, id(9), Some((ms(3), None)));
    assert_eq!(joiner.next_attach(now).unwrap().0.node_id, Some(id(9)));
    // After the backoff, the full one is tried again only if it reports room.
    let later = now + JoinConfig::default().full_backoff;
    joiner.probe_result(later, id(9), None);
    assert_eq!(
        joiner.next_attach(later).unwrap().0.node_id,
        Some(id(2)),
        "1 still reports itself full"
    );
}

#[test]
fn known_full_supernodes_are_not_chosen() {
    let now = Instant::now();
    let mut joiner = Joiner::new(id(200), JoinConfig::default());
    joiner.add(now, &[info(1, 10, 10), info(2, 3, 10)]);
    for p in joiner.poll_probes(now) {
        let node = p.node_id.unwrap();
        let load = if node == id(1) {
            Load {
                leaves: 10,
                capacity: 10,
                neighbors: 0,
            }
        } else {
            Load {
                leaves: 3,
                capacity: 10,
                neighbors: 0,
            }
        };
        joiner.probe_result(
            now,
            node,
            Some((if node == id(1) { ms(1) } else { ms(50) }, Some(load))),
        );
    }
    assert_eq!(joiner.next_attach(now).unwrap().0.node_id, Some(id(2)));
}

#[test]
fn hysteresis_moves_only_to_a_clearly_faster_supernode() {
    let now = Instant::now();
    let mut joiner = probed(now, &[30, 20]);
    joiner.attached(id(1));
    assert!(
        joiner.better_than_current(now).is_none(),
        "20 ms vs 30 ms is not clearly faster"
    );
    let mut joiner = probed(now, &[30, 12]);
    joiner.attached(id(1));
    assert_eq!(
        joiner.better_than_current(now).unwrap().0.node_id,
        Some(id(2)),
        "12 ms vs 30 ms is"
    );
    // Tiny RTTs: halving 2 ms to 0.9 ms is not worth a move (margin).
    let mut joiner = Joiner::new(id(200), JoinConfig::default());
    joiner.add(now, &[info(1, 0, 10), info(2, 0, 10)]);
    for p in joiner.poll_probes(now) {
        let rtt = if p.node_id == Some(id(1)) {
            Duration::from_micros(2000)
        } else {
            Duration::from_micros(900)
        };
        joiner.probe_result(now, p.node_id.unwrap(), Some((rtt, None)));
    }
    joiner.attached(id(1));
    assert!(joiner.better_than_current(now).is_none());
}

#[test]
fn failover_goes_to_the_next_best_and_the_lost_one_backs_off() {
    let now = Instant::now();
    let mut joiner = probed(now, &[5, 10, 15]);
    let (first, _) = joiner.next_attach(now).unwrap();
    joiner.attached(first.node_id.unwrap());
    joiner.lost(now, id(1));
    assert_eq!(joiner.current(), None);
    assert_eq!(joiner.next_attach(now).unwrap().0.node_id, Some(id(2)));
    joiner.attach_failed(now, id(2));
    assert_eq!(joiner.next_attach(now).unwrap().0.node_id, Some(id(3)));
    // The lost one is re-probed only after its backoff.
    let probes = joiner.poll_probes(now);
    assert!(!probes.iter().any(|p| p.node_id == Some(id(1))));
    let later = now + Duration::from_secs(1);
    assert!(
        joiner
            .poll_probes(later)
            .iter()
            .any(|p| p.node_id == Some(id(1)))
    );
}

#[test]
fn our_own_id_is_never_a_candidate_and_the_cache_lists_best_first() {
    let now = Instant::now();
    let mut joiner = probed(now, &[50, 10]);
    joiner.add(
        now,
        &[SupernodeInfo {
            node_id: id(200),
            ..info(3, 0, 10)
        }],
    );
    assert_eq!(joiner.len(), 2);
    let known = joiner.known();
    assert_eq!(known[0].node_id, id(2));
    assert!(
        known.iter().all(|k| k.stale),
        "a cached list is stale when read back"
    );
}

/// Probes polled (and answered at 50 ms) until none is due; returns who was probed.
fn probe_until_quiet(joiner: &mut Joiner, now: Instant) -> Vec<u8> {
    let mut probed = Vec::new();
    loop {
        let batch = joiner.poll_probes(now);
        if batch.is_empty() {
            return probed;
        }
        for p in batch {
            let node = p.node_id.unwrap();
            probed.push(node.as_bytes()[0]);
            joiner.probe_result(now, node, Some((ms(50), None)));
        }
    }
}

#[test]
fn an_attached_leaf_spends_a_few_probes_a_round_however_many_it_knows() {
    let now = Instant::now();
    // Twenty measured (1 the fastest, 20 the slowest), attached to 3.
    let rtts: Vec<u64> = (1..=20).map(|n| 10 + n).collect();
    let mut joiner = probed(now, &rtts);
    joiner.attached(id(3));
    // Forty more learned while attached.
    let more: Vec<_> = (21..=60).map(|n| info(n, 0, 10)).collect();
    joiner.add(now, &more);
    let per_round = JoinConfig::default().probes_per_round;
    for round in 1..=3u32 {
        let at = now + Duration::from_secs(30) * round;
        joiner.new_round(at);
        let probed = probe_until_quiet(&mut joiner, at);
        assert_eq!(probed.len(), per_round, "round {round}: {probed:?}");
        // The current one first, then the best measured and new ones in turn.
        assert_eq!(probed[0], 3, "round {round}: {probed:?}");
        let best: Vec<u8> = probed.iter().copied().filter(|n| *n <= 20).collect();
        let new: Vec<u8> = probed.iter().copied().filter(|n| *n > 20).collect();
        assert_eq!(best.len(), per_round / 2, "round {round}: {probed:?}");
        assert_eq!(new.len(), per_round / 2, "round {round}: {probed:?}");
    }
    // Nothing more until the next round.
    assert!(
        joiner
            .poll_probes(now + Duration::from_secs(100))
            .is_empty()
    );
    // Without a supernode, whatever is due is probed, a batch at a time.
    joiner.lost(now + Duration::from_secs(100), id(3));
    let at = now + Duration::from_secs(100);
    let probed = probe_until_quiet(&mut joiner, at);
    assert!(probed.len() > 40, "{}", probed.len());
}

#[test]
fn a_supernodes_suggestions_never_move_a_known_candidate_and_are_dropped_when_they_fail() {
    let now = Instant::now();
    let mut joiner = probed(now, &[30, 40]);
    joiner.attached(id(1));
    // The eclipse: our supernode says 2 moved to a victim address, and suggests 3 there.
    let victim: SocketAddr = "127.0.9.9:9".parse().unwrap();
    let moved = SupernodeInfo {
        addr: victim,
        ..info(2, 0, 10)
    };
    let invented = SupernodeInfo {
        addr: victim,
        ..info(3, 0, 10)
    };
    joiner.add_suggested(now, &[moved, invented]);
    let addr_of = |j: &Joiner, n: u8| {
        j.known()
            .iter()
            .chain(std::iter::empty())
            .find(|i| i.node_id == id(n))
            .map(|i| i.addr)
    };
    assert_eq!(
        addr_of(&joiner, 2),
        Some(info(2, 0, 10).addr),
        "kept its address"
    );
    assert_eq!(addr_of(&joiner, 3), None, "unproven: not cached");
    // 3 is probed once, fails, and is gone at the next round.
    joiner.new_round(now);
    let probes = joiner.poll_probes(now);
    assert!(probes.iter().any(|p| p.node_id == Some(id(3))));
    joiner.probe_result(now, id(3), None);
    for p in probes.iter().filter(|p| p.node_id != Some(id(3))) {
        joiner.probe_result(now, p.node_id.unwrap(), Some((ms(30), None)));
    }
    let later = now + Duration::from_secs(30);
    joiner.new_round(later);
    assert_eq!(joiner.len(), 2, "the failed suggestion is forgotten");
    // A list server may move one (it dialled it back there).
    let listed = SupernodeInfo {
        addr: "127.0.0.22:4000".parse().unwrap(),
        ..info(2, 0, 10)
    };
    joiner.add(later, &[listed]);
    assert_eq!(addr_of(&joiner, 2), Some(listed.addr));
}

#[test]
fn candidates_nobody_names_expire_but_the_current_one_stays() {
    let now = Instant::now();
    let mut joiner = probed(now, &[30, 40, 50]);
    joiner.attached(id(1));
    let later = now + CANDIDATE_TTL;
    joiner.add(later - Duration::from_secs(1), &[info(3, 0, 10)]);
    joiner.new_round(later);
    let mut left: Vec<u8> = joiner
        .known()
        .iter()
        .map(|i| i.node_id.as_bytes()[0])
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![1, 3],
        "2 was not named for the TTL; 1 is the current one"
    );
}

#[test]
fn a_second_attachment_takes_the_next_lowest_rtt_and_leaves_headroom() {
    let now = Instant::now();
    let mut joiner = probed(now, &[5, 10, 15]);
    joiner.attached(id(1));
    assert_eq!(joiner.next_secondary(now).unwrap().0.node_id, Some(id(2)));
    joiner.attached(id(2));
    assert_eq!(joiner.attached_to(), &[id(1), id(2)]);
    assert_eq!(joiner.next_secondary(now).unwrap().0.node_id, Some(id(3)));
    // A supernode at 90% of its capacity still takes a first attachment, not a spare one.
    joiner.add(now, &[info(3, 9, 10)]);
    assert_eq!(joiner.next_attach(now).unwrap().0.node_id, Some(id(3)));
    assert_eq!(joiner.next_secondary(now), None);
    joiner.add(now, &[info(3, 8, 10)]);
    assert_eq!(joiner.next_secondary(now).unwrap().0.node_id, Some(id(3)));
}

#[test]
fn losing_one_of_two_keeps_the_other_and_replaces_it_with_the_next_best() {
    let now = Instant::now();
    let mut joiner = probed(now, &[5, 10, 15]);
    joiner.attached(id(1));
    joiner.attached(id(2));
    joiner.lost(now, id(1));
    assert_eq!(joiner.attached_to(), &[id(2)]);
    assert_eq!(joiner.current(), Some(id(2)));
    assert_eq!(joiner.next_secondary(now).unwrap().0.node_id, Some(id(3)));
    // Leaving by choice drops it from the attached without a backoff.
    joiner.left(id(2));
    assert_eq!(joiner.attached_to(), &[] as &[NodeId]);
    assert_eq!(joiner.next_attach(now).unwrap().0.node_id, Some(id(2)));
}

#[test]
fn a_clearly_faster_candidate_replaces_the_slowest_attachment() {
    let now = Instant::now();
    let mut joiner = probed(now, &[10, 40, 12]);
    joiner.attached(id(1));
    joiner.attached(id(2));
    // 12 ms is not clearly faster than 10 ms, but it is than the 40 ms one.
    let (best, _, replaces) = joiner.better_than_slowest(now).unwrap();
    assert_eq!((best.node_id, replaces), (Some(id(3)), id(2)));
    let mut joiner = probed(now, &[10, 20, 12]);
    joiner.attached(id(1));
    joiner.attached(id(2));
    assert!(joiner.better_than_slowest(now).is_none());
}

#[test]
fn a_leaf_short_of_its_spares_probes_new_candidates_beyond_the_round_budget() {
    let now = Instant::now();
    let mut joiner = probed(now, &[5, 10]);
    joiner.set_wanted(2);
    joiner.attached(id(1));
    joiner.attached(id(2));
    joiner.new_round(now);
    // Settled on two: a round's budget, then nothing.
    let mut rounds = 0;
    while !joiner.poll_probes(now).is_empty() {
        rounds += 1;
        assert!(rounds < 10);
    }
    joiner.lost(now, id(2));
    joiner.add(now, &[info(7, 0, 10), info(8, 0, 10)]);
    let probes: Vec<_> = joiner
        .poll_probes(now)
        .into_iter()
        .filter_map(|p| p.node_id)
        .collect();
    assert!(
        probes.contains(&id(7)) && probes.contains(&id(8)),
        "short of a spare, new candidates are probed at once: {probes:?}"
    );
}
