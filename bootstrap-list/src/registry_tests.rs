//! Registry state machine tests with a fake clock: no sockets.

use std::collections::HashMap;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

fn id(n: u16) -> NodeId {
    let mut bytes = [0u8; 32];
    bytes[..2].copy_from_slice(&n.to_be_bytes());
    NodeId::from_bytes(bytes)
}

fn addr(n: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2], 1 + n % 60_000))
}

/// Each test node registers from its own address unless a test says otherwise.
fn src(n: u16) -> IpAddr {
    IpAddr::from([10, 0, (n >> 8) as u8, n as u8])
}

fn src_of(node: &NodeId) -> IpAddr {
    let b = node.as_bytes();
    src(u16::from_be_bytes([b[0], b[1]]))
}

fn load(leaves: u32, capacity: u32) -> Load {
    Load {
        leaves,
        capacity,
        neighbors: 0,
    }
}

/// Registers `n` and completes its dial-back successfully.
fn listed(reg: &mut Registry, now: Instant, n: u16, l: Load) {
    assert_eq!(
        reg.handle_register(now, id(n), src(n), addr(n), l),
        RegisterOutcome::DialBack {
            node_id: id(n),
            addr: addr(n)
        }
    );
    assert!(reg.handle_dial_back(now, id(n), addr(n), true));
}

fn ids(list: &SupernodeList) -> Vec<NodeId> {
    list.supernodes.iter().map(|s| s.node_id).collect()
}

#[test]
fn listed_only_after_a_successful_dial_back() {
    let now = Instant::now();
    let mut reg = Registry::new(RegistryConfig::default());
    let mut rng = StdRng::seed_from_u64(1);
    assert!(matches!(
        reg.handle_register(now, id(1), src_of(&id(1)), addr(1), load(0, 10)),
        RegisterOutcome::DialBack { .. }
    ));
    assert!(
        reg.select(0, 10, &mut rng).supernodes.is_empty(),
        "pending entries are not handed out"
    );
    assert!(!reg.handle_dial_back(now, id(1), addr(1), false));
    assert!(
        reg.select(0, 10, &mut rng).supernodes.is_empty(),
        "a failed dial-back is never listed"
    );
    assert_eq!(reg.pending_len(), 0);

    listed(&mut reg, now, 2, load(3, 10));
    let list = reg.select(42, 10, &mut rng);
    assert_eq!(ids(&list), vec![id(2)]);
    assert_eq!(list.made_at_ms, 42);
    assert_eq!(list.supernodes[0].load, load(3, 10));
    assert!(!list.supernodes[0].stale);
}

#[test]
fn bad_addresses_are_refused() {
    let mut reg = Registry::new(RegistryConfig::default());
    let now = Instant::now();
    for bad in ["0.0.0.0:5000", "127.0.0.1:0", "224.0.0.1:5000"] {
        let outcome =
            reg.handle_register(now, id(1), src_of(&id(1)), bad.parse().unwrap(), load(0, 1));
        assert_eq!(
            outcome,
            RegisterOutcome::Refused(RefuseReason::BadAddress),
            "{bad}"
        );
    }
}

#[test]
fn heartbeats_keep_entries_and_silence_expires_them() {
    let t0 = Instant::now();
    let config = RegistryConfig {
        expiry: Duration::from_secs(20),
        ..Default::default()
    };
    let mut reg = Registry::new(config);
    listed(&mut reg, t0, 1, load(0, 10));
    listed(&mut reg, t0, 2, load(0, 10));
    for s in (5..=60).step_by(5) {
        let now = t0 + Duration::from_secs(s);
        assert!(reg.handle_heartbeat(now, id(1), load(s as u32 % 10, 10)));
        let dropped = reg.handle_timeout(now);
        if s < 20 {
            assert!(dropped.is_empty(), "at {s}s");
        } else if s == 20 {
            assert_eq!(dropped, vec![id(2)], "node 2 expires exactly at the expiry");
        }
    }
    assert_eq!(reg.len(), 1);
    // A heartbeat from the expired node says it must register again.
    assert!(!reg.handle_heartbeat(t0 + Duration::from_secs(61), id(2), load(0, 10)));
}

#[test]
fn reregistering_at_the_same_address_refreshes_and_a_new_address_is_dialled_back() {
    let t0 = Instant::now();
    let mut reg = Registry::new(RegistryConfig::default());
    listed(&mut reg, t0, 1, load(0, 10));
    assert_eq!(
        reg.handle_register(t0, id(1), src_of(&id(1)), addr(1), load(5, 10)),
        RegisterOutcome::Refreshed
    );
    let moved = addr(99);
    assert_eq!(
        reg.handle_register(t0, id(1), src_of(&id(1)), moved, load(5, 10)),
        RegisterOutcome::DialBack {
            node_id: id(1),
            addr: moved
        }
    );
    assert_eq!(
        reg.handle_register(t0, id(1), src_of(&id(1)), moved, load(5, 10)),
        RegisterOutcome::AlreadyPending
    );
    // Still listed at the old, verified address until the new one is confirmed.
    let mut rng = StdRng::seed_from_u64(3);
    assert_eq!(reg.select(0, 5, &mut rng).supernodes[0].addr, addr(1));
    // A stale dial-back result for another address changes nothing.
    assert!(!reg.handle_dial_back(t0, id(1), addr(7), true));
    assert!(reg.handle_dial_back(t0, id(1), moved, true));
    assert_eq!(reg.select(0, 5, &mut rng).supernodes[0].addr, moved);
}

#[test]
fn unregister_removes_at_once() {
    let now = Instant::now();
    let mut reg = Registry::new(RegistryConfig::default());
    listed(&mut reg, now, 1, load(0, 10));
    reg.take_dirty();
    reg.handle_unregister(id(1));
    assert!(reg.is_empty());
    assert!(reg.take_dirty());
}

#[test]
fn selection_prefers_room_then_stale_then_full() {
    let now = Instant::now();
    let mut reg = Registry::new(RegistryConfig::default());
    listed(&mut reg, now, 1, load(10, 10)); // full
    listed(&mut reg, now, 2, load(95, 100)); // over the 90% mark: full
    listed(&mut reg, now, 3, load(1, 100)); // room
    reg.restore(
        now,
        vec![SavedEntry {
            node_id: id(4),
            addr: addr(4),
            load: load(0, 100),
        }],
    );
    let mut rng = StdRng::seed_from_u64(9);
    for _ in 0..50 {
        let list = reg.select(0, 10, &mut rng);
        let order = ids(&list);
        assert_eq!(order[0], id(3));
        assert_eq!(order[1], id(4));
        assert!(list.supernodes[1].stale);
        assert_eq!(order[2..].len(), 2);
        assert!(order[2..].contains(&id(1)) && order[2..].contains(&id(2)));
    }
    assert_eq!(
        reg.select(0, 2, &mut rng).supernodes.len(),
        2,
        "max is respected"
    );
}

#[test]
fn selection_spreads_askers_in_proportion_to_room() {
    let now = Instant::now();
    let mut reg = Registry::new(RegistryConfig::default());
    for n in 1..=5 {
        listed(&mut reg, now, n, load(0, 100));
    }
    listed(&mut reg, now, 6, load(0, 1000)); // ten times the room of each other one
    let mut rng = StdRng::seed_from_u64(7);
    let mut first: HashMap<NodeId, u32> = HashMap::new();
    let rounds = 3000;
    for _ in 0..rounds {
        *first
            .entry(reg.select(0, 3, &mut rng).supernodes[0].node_id)
            .or_default() += 1;
    }
    // Expected share of the big one: 1000 / 1500 = 2/3; of each small one: 1/15.
    let big = f64::from(first[&id(6)]) / f64::from(rounds);
    assert!((0.6..0.73).contains(&big), "big share {big}");
    for n in 1..=5 {
        let share = f64::from(*first.get(&id(n)).unwrap_or(&0)) / f64::from(rounds);
        assert!((0.04..0.1).contains(&share), "node {n} share {share}");
    }
}

#[test]
fn the_same_seed_gives_the_same_list_whatever_the_registration_order() {
    let now = Instant::now();
    let (mut forward, mut backward) = (
        Registry::new(RegistryConfig::default()),
        Registry::new(RegistryConfig::default()),
    );
    for n in 1..=40 {
        listed(&mut forward, now, n, load(n.into(), 100));
        listed(&mut backward, now, 41 - n, load((41 - n).into(), 100));
    }
    let draw = |reg: &Registry| {
        let mut rng = StdRng::seed_from_u64(11);
        (0..5)
            .map(|_| ids(&reg.select(0, 10, &mut rng)))
            .collect::<Vec<_>>()
    };
    let lists = draw(&forward);
    assert_eq!(lists, draw(&backward));
    assert!(
        lists.windows(2).any(|w| w[0] != w[1]),
        "the order is random"
    );
}

#[test]
fn shortage_signal() {
    let now = Instant::now();
    let mut reg = Registry::new(RegistryConfig::default());
    assert!(reg.short_of_supernodes(), "no supernode at all");
    listed(&mut reg, now, 1, load(10, 100));
    listed(&mut reg, now, 2, load(20, 100));
    assert!(!reg.short_of_supernodes(), "plenty of room");
    reg.handle_heartbeat(now, id(1), load(95, 100));
    reg.handle_heartbeat(now, id(2), load(92, 100));
    assert!(reg.short_of_supernodes(), "all near capacity");
    reg.handle_heartbeat(now, id(1), load(85, 100));
    reg.handle_heartbeat(now, id(2), load(80, 100));
    assert!(
        reg.short_of_supernodes(),
        "leaves use 82.5% of the total capacity"
    );
    reg.handle_heartbeat(now, id(2), load(50, 100));
    assert!(!reg.short_of_supernodes());
    assert!(
        !reg.select(0, 5, &mut StdRng::seed_from_u64(1))
            .short_of_supernodes
    );

    // Stale entries alone do not count: they may be gone.
    let mut restored = Registry::new(RegistryConfig::default());
    restored.restore(
        now,
        vec![SavedEntry {
            node_id: id(1),
            addr: addr(1),
            load: load(0, 100),
        }],
    );
    assert!(restored.short_of_supernodes());
}

#[test]
fn a_registration_flood_stays_within_the_caps() {
    let now = Instant::now();
    let config = RegistryConfig {
        max_entries: 100,
        max_pending: 16,
        ..Default::default()
    };
    let mut reg = Registry::new(config);
    let mut dial_backs = Vec::new();
    for n in 0..10_000u16 {
        if let RegisterOutcome::DialBack { node_id, addr } =
            reg.handle_register(now, id(n), src_of(&id(n)), addr(n), load(0, 10))
        {
            dial_backs.push((node_id, addr));
        }
        assert!(reg.pending_len() <= 16);
    }
    assert_eq!(dial_backs.len(), 16);
    // The flood's dial-backs fail (nobody answers there): the slots free up.
    for (node_id, a) in dial_backs {
        reg.handle_dial_back(now, node_id, a, false);
    }
    assert_eq!(reg.pending_len(), 0);
    // A legitimate supernode still gets in.
    listed(&mut reg, now, 60_000, load(0, 10));
    assert_eq!(reg.len(), 1);

    // And the total is capped even when every dial-back succeeds.
    for n in 0..10_000u16 {
        if let RegisterOutcome::DialBack { node_id, addr } =
            reg.handle_register(now, id(n), src_of(&id(n)), addr(n), load(0, 10))
        {
            reg.handle_dial_back(now, node_id, addr, true);
        }
    }
    assert_eq!(reg.len(), 100);
    assert_eq!(
        reg.handle_register(now, id(20_000), src_of(&id(20_000)), addr(1), load(0, 1)),
        RegisterOutcome::Refused(RefuseReason::Full)
    );
}

#[test]
fn pending_slots_held_by_lost_dial_backs_expire() {
    let t0 = Instant::now();
    let config = RegistryConfig {
        max_pending: 1,
        ..Default::default()
    };
    let mut reg = Registry::new(config.clone());
    assert!(matches!(
        reg.handle_register(t0, id(1), src_of(&id(1)), addr(1), load(0, 1)),
        RegisterOutcome::DialBack { .. }
    ));
    assert_eq!(
        reg.handle_register(t0, id(2), src_of(&id(2)), addr(2), load(0, 1)),
        RegisterOutcome::Refused(RefuseReason::TooManyPending)
    );
    reg.handle_timeout(t0 + config.pending_timeout);
    assert!(matches!(
        reg.handle_register(
            t0 + config.pending_timeout,
            id(2),
            src_of(&id(2)),
            addr(2),
            load(0, 1)
        ),
        RegisterOutcome::DialBack { .. }
    ));
}

#[test]
fn restored_entries_are_stale_until_they_register_again() {
    let t0 = Instant::now();
    let mut reg = Registry::new(RegistryConfig::default());
    reg.restore(
        t0,
        vec![
            SavedEntry {
                node_id: id(1),
                addr: addr(1),
                load: load(3, 10),
            },
            SavedEntry {
                node_id: id(2),
                addr: addr(2),
                load: load(4, 10),
            },
        ],
    );
    let mut rng = StdRng::seed_from_u64(5);
    let list = reg.select(0, 10, &mut rng);
    assert_eq!(list.supernodes.len(), 2);
    assert!(list.supernodes.iter().all(|s| s.stale));
    // A heartbeat is not enough: the node must register (and be dialled back) again.
    assert!(!reg.handle_heartbeat(t0, id(1), load(3, 10)));
    assert!(matches!(
        reg.handle_register(t0, id(1), src_of(&id(1)), addr(1), load(3, 10)),
        RegisterOutcome::DialBack { .. }
    ));
    assert!(reg.handle_dial_back(t0, id(1), addr(1), true));
    // Node 2 never comes back and expires.
    let later = t0 + reg.config().expiry;
    reg.handle_heartbeat(later, id(1), load(3, 10));
    assert_eq!(reg.handle_timeout(later), vec![id(2)]);
    let list = reg.select(0, 10, &mut rng);
    assert_eq!(ids(&list), vec![id(1)]);
    assert!(!list.supernodes[0].stale);
    assert_eq!(
        reg.snapshot(),
        vec![SavedEntry {
            node_id: id(1),
            addr: addr(1),
            load: load(3, 10)
        }]
    );
}

#[test]
fn one_source_cannot_fill_the_registry() {
    let now = Instant::now();
    let config = RegistryConfig {
        max_per_source: 3,
        ..Default::default()
    };
    let mut reg = Registry::new(config);
    let flooder = IpAddr::from([192, 0, 2, 1]);
    let mut taken = 0;
    for n in 0..50u16 {
        match reg.handle_register(now, id(n), flooder, addr(n), load(0, 10)) {
            RegisterOutcome::DialBack { node_id, addr } => {
                reg.handle_dial_back(now, node_id, addr, true);
                taken += 1;
            }
            RegisterOutcome::Refused(RefuseReason::TooManyFromSource) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(taken, 3);
    // A known node from that source may still refresh or move.
    assert_eq!(
        reg.handle_register(now, id(0), flooder, addr(0), load(1, 10)),
        RegisterOutcome::Refreshed
    );
    // Another source is unaffected.
    assert!(matches!(
        reg.handle_register(now, id(999), src(999), addr(999), load(0, 10)),
        RegisterOutcome::DialBack { .. }
    ));
}

#[test]
fn self_reported_loads_are_clamped() {
    let now = Instant::now();
    let mut reg = Registry::new(RegistryConfig {
        max_capacity: 1000,
        ..Default::default()
    });
    listed(
        &mut reg,
        now,
        1,
        Load {
            leaves: 5,
            capacity: u32::MAX,
            neighbors: 0,
        },
    );
    listed(&mut reg, now, 2, load(10, 500));
    let list = reg.select(0, 5, &mut StdRng::seed_from_u64(1));
    let boastful = list.supernodes.iter().find(|s| s.node_id == id(1)).unwrap();
    assert_eq!(boastful.load.capacity, 1000);
    reg.handle_heartbeat(now, id(2), load(900, 500));
    let list = reg.select(0, 5, &mut StdRng::seed_from_u64(1));
    assert_eq!(
        list.supernodes
            .iter()
            .find(|s| s.node_id == id(2))
            .unwrap()
            .load
            .leaves,
        500
    );
}

#[test]
fn big_claims_are_scaled_down_keeping_how_full_they_are() {
    let now = Instant::now();
    let mut reg = Registry::new(RegistryConfig::default());
    listed(&mut reg, now, 1, load(9_000, 10_000));
    let list = reg.select(0, 5, &mut StdRng::seed_from_u64(1));
    assert_eq!(list.supernodes[0].load, load(900, DEFAULT_MAX_CAPACITY));
}

#[test]
fn sybils_behind_one_address_do_not_dominate_the_lists() {
    // Nine honest supernodes of the default size, one per address; one attacker address
    // registers 64 identities, each claiming room for 10,000 leaves. Before: all 64 were
    // listed, with 20 times an honest node's weight each, and headed 99% of the lists.
    let now = Instant::now();
    let mut reg = Registry::new(RegistryConfig::default());
    for n in 1..=9 {
        listed(&mut reg, now, n, load(0, 500));
    }
    let attacker = IpAddr::from([192, 0, 2, 66]);
    let mut sybils = Vec::new();
    for n in 100..164u16 {
        if let RegisterOutcome::DialBack { node_id, addr } =
            reg.handle_register(now, id(n), attacker, addr(n), load(0, 10_000))
        {
            assert!(reg.handle_dial_back(now, node_id, addr, true));
            sybils.push(node_id);
        }
    }
    assert_eq!(sybils.len(), DEFAULT_MAX_PER_SOURCE);
    let mut rng = StdRng::seed_from_u64(7);
    let draws = 4_000;
    let headed = (0..draws)
        .filter(|_| sybils.contains(&reg.select(0, 1, &mut rng).supernodes[0].node_id))
        .count();
    // The attacker's address weighs at most one supernode of the largest believed capacity
    // (1,000 against 9 x 500: 18% expected).
    let share = headed as f64 / f64::from(draws);
    assert!(share < 0.25, "the sybils headed {share:.2} of the lists");
    assert!(
        share > 0.10,
        "the sybils still get their fair share ({share:.2})"
    );
}
