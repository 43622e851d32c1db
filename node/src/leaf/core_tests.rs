//! Fake-clock tests of the leaf core's choice of supernode: which one, when to move, failover,
//! the first join's wait, and list refreshes. Time is a base `Instant` plus offsets; nothing
//! sleeps. Publication is tested in `core_publication_tests.rs`, searches in
//! `core_search_tests.rs`, the election and promotions in `core_election_tests.rs`; the
//! helpers here serve all four.

use superpeer_common::wire::{LeafLimits, Load, SupernodeToLeaf};

use super::*;

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Our own node.
pub(super) const ME: u8 = 200;

pub(super) fn id(n: u8) -> NodeId {
    NodeId::from_bytes([n; 32])
}

pub(super) fn addr(n: u8) -> SocketAddr {
    format!("127.0.0.{n}:4000").parse().unwrap()
}

pub(super) fn room() -> Load {
    Load {
        leaves: 0,
        capacity: 10,
        neighbors: 0,
    }
}

fn full() -> Load {
    Load {
        leaves: 10,
        capacity: 10,
        neighbors: 0,
    }
}

/// Supernode `n` as a list server lists it, with room.
pub(super) fn info(n: u8) -> SupernodeInfo {
    SupernodeInfo {
        node_id: id(n),
        addr: addr(n),
        load: room(),
        stale: false,
    }
}

pub(super) fn entry(name: &str) -> FileEntry {
    FileEntry {
        content_id: ContentId::of_bytes(name.as_bytes()),
        name: name.into(),
        size: 1,
    }
}

pub(super) fn limits(max_entries: u32) -> LeafLimits {
    LeafLimits {
        query_interval_ms: 200,
        query_burst: 20,
        max_entries,
    }
}

/// Defaults with no election and no periodic timers in the way (an hour apart).
pub(super) fn quiet() -> LeafCoreConfig {
    LeafCoreConfig {
        election: ElectionConfig {
            enabled: false,
            ..ElectionConfig::default()
        },
        reprobe_interval: secs(3600),
        refresh_interval: secs(3600),
        ..LeafCoreConfig::default()
    }
}

pub(super) fn drain(core: &mut LeafCore) -> Vec<LeafAction> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

pub(super) fn probed(actions: &[LeafAction]) -> Vec<NodeId> {
    actions
        .iter()
        .filter_map(|a| match a {
            LeafAction::Probe(target) => target.node_id,
            _ => None,
        })
        .collect()
}

/// The attach among `actions`, if any: to whom, on which session.
pub(super) fn attach_of(actions: &[LeafAction]) -> Option<(NodeId, SessionNo)> {
    let mut attaches = actions.iter().filter_map(|a| match a {
        LeafAction::Attach { target, session } => Some((target.node_id?, *session)),
        _ => None,
    });
    let first = attaches.next();
    assert!(
        attaches.next().is_none(),
        "two attaches at once: {actions:?}"
    );
    first
}

pub(super) fn fetches(actions: &[LeafAction]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, LeafAction::FetchLists))
        .count()
}

/// The sessions that got a `Leave`.
fn left(actions: &[LeafAction]) -> Vec<SessionNo> {
    actions
        .iter()
        .filter_map(|a| match a {
            LeafAction::Leave { session, .. } => Some(*session),
            _ => None,
        })
        .collect()
}

/// The messages sent, with their session.
pub(super) fn sent(actions: &[LeafAction]) -> Vec<(SessionNo, LeafToSupernode)> {
    actions
        .iter()
        .filter_map(|a| match a {
            LeafAction::Send { session, msg } => Some((*session, msg.clone())),
            _ => None,
        })
        .collect()
}

/// A leaf attached (welcomed) to the lowest of supernodes `rtts` (node, RTT in ms), all
/// probed, at `t0 + 1 ms`.
pub(super) struct Setup {
    pub core: LeafCore,
    pub t0: Instant,
    pub now: Instant,
    pub session: SessionNo,
}

pub(super) fn attached(
    config: LeafCoreConfig,
    rtts: &[(u8, u64)],
    entries: Vec<FileEntry>,
    seed: u64,
) -> Setup {
    let t0 = Instant::now();
    let mut core = LeafCore::new(t0, id(ME), config, entries, seed);
    let infos: Vec<SupernodeInfo> = rtts.iter().map(|(n, _)| info(*n)).collect();
    core.handle_learned(t0, &infos, Source::ListServer { short: false });
    assert_eq!(probed(&drain(&mut core)).len(), rtts.len());
    let now = t0 + ms(1);
    let mut actions = Vec::new();
    for (n, rtt) in rtts {
        core.handle_probe(now, id(*n), Some((ms(*rtt), Some(room()))));
        actions.extend(drain(&mut core));
    }
    let (_, session) = attach_of(&actions).unwrap();
    core.handle_attach(now, session, AttachOutcome::Welcomed);
    drain(&mut core);
    Setup {
        core,
        t0,
        now,
        session,
    }
}

/// As [`attached`], and the supernode's `Limits` arrived.
pub(super) fn ready(config: LeafCoreConfig, entries: Vec<FileEntry>, max_entries: u32) -> Setup {
    let mut s = attached(config, &[(1, 10), (2, 20)], entries, 1);
    s.core.handle_message(
        s.now,
        s.session,
        SupernodeToLeaf::Limits(limits(max_entries)),
    );
    s
}

// ----- choosing a supernode -----

#[test]
fn attaches_to_the_lowest_rtt_candidate_with_room() {
    let t0 = Instant::now();
    let mut core = LeafCore::new(t0, id(ME), quiet(), Vec::new(), 1);
    assert_eq!(drain(&mut core), vec![LeafAction::FetchLists]);
    core.handle_learned(
        t0,
        &[info(1), info(2), info(3)],
        Source::ListServer { short: false },
    );
    let mut probes = probed(&drain(&mut core));
    probes.sort();
    assert_eq!(probes, vec![id(1), id(2), id(3)]);
    let now = t0 + ms(40);
    // 1 is the fastest but full.
    core.handle_probe(now, id(1), Some((ms(5), Some(full()))));
    core.handle_probe(now, id(3), Some((ms(40), Some(room()))));
    core.handle_probe(now, id(2), Some((ms(20), Some(room()))));
    let actions = drain(&mut core);
    assert_eq!(
        actions,
        vec![LeafAction::Attach {
            target: PeerAddr::pinned(id(2), addr(2)),
            session: SessionNo(1),
        }]
    );
    assert_eq!(core.supernode(), None, "not before the welcome");
    core.handle_attach(now, SessionNo(1), AttachOutcome::Welcomed);
    assert_eq!(
        core.supernode(),
        Some(SupernodeView {
            node_id: id(2),
            addr: addr(2),
            rtt: ms(20),
        })
    );
    assert_eq!(
        sent(&drain(&mut core)),
        vec![(
            SessionNo(1),
            LeafToSupernode::GetSupernodes {
                max: SUPERNODES_ASKED
            }
        )]
    );
}

/// A leaf on 1 re-measures 1 and 2 every 30 s at the RTTs given, and returns the actions
/// of each round.
fn reprobe_rounds(s: &mut Setup, rounds: &[(u64, u64)]) -> Vec<Vec<LeafAction>> {
    rounds
        .iter()
        .zip(1u32..)
        .map(|((current, other), k)| {
            let now = s.t0 + secs(30) * k;
            s.core.handle_timeout(now);
            let mut actions = drain(&mut s.core);
            let mut probes = probed(&actions);
            probes.sort();
            assert_eq!(probes, vec![id(1), id(2)], "round {k}");
            s.core.handle_probe(now, id(1), Some((ms(*current), None)));
            s.core.handle_probe(now, id(2), Some((ms(*other), None)));
            actions.extend(drain(&mut s.core));
            actions
        })
        .collect()
}

fn reprobing() -> LeafCoreConfig {
    LeafCoreConfig {
        reprobe_interval: secs(30),
        ..quiet()
    }
}

#[test]
fn only_a_clearly_faster_supernode_is_worth_a_move_and_the_old_one_is_left_after() {
    let mut s = attached(reprobing(), &[(1, 60), (2, 80)], Vec::new(), 1);
    assert_eq!(s.core.supernode().unwrap().node_id, id(1));
    // 40 ms against 60 ms: 20 ms faster (past the margin), but not below half.
    let rounds = reprobe_rounds(&mut s, &[(60, 40), (60, 25)]);
    assert_eq!(attach_of(&rounds[0]), None, "{:?}", rounds[0]);
    // 25 ms against 60 ms: below half, and 35 ms less.
    assert_eq!(attach_of(&rounds[1]), Some((id(2), SessionNo(2))));
    assert!(
        left(&rounds[1]).is_empty(),
        "left before the new one welcomed"
    );
    assert_eq!(s.core.supernode().unwrap().node_id, id(1));
    let now = s.t0 + secs(60);
    s.core
        .handle_attach(now, SessionNo(2), AttachOutcome::Welcomed);
    assert_eq!(left(&drain(&mut s.core)), vec![SessionNo(1)]);
    assert_eq!(s.core.supernode().unwrap().node_id, id(2));
    // The old session's end, reported later, changes nothing.
    s.core.handle_session_ended(now, SessionNo(1));
    assert_eq!(drain(&mut s.core), Vec::new());
    assert_eq!(s.core.supernode().unwrap().node_id, id(2));
}

#[test]
fn halving_a_tiny_rtt_is_not_worth_a_move_but_the_margin_is() {
    let mut s = attached(reprobing(), &[(1, 12), (2, 40)], Vec::new(), 1);
    // 5 ms against 12 ms: below half, but only 7 ms less (the margin is 10 ms).
    // 1 ms against 12 ms: 11 ms less.
    let rounds = reprobe_rounds(&mut s, &[(12, 5), (12, 1)]);
    assert_eq!(attach_of(&rounds[0]), None);
    assert_eq!(attach_of(&rounds[1]), Some((id(2), SessionNo(2))));
}

#[test]
fn a_failed_move_keeps_the_current_session() {
    let mut s = attached(reprobing(), &[(1, 30), (2, 40)], Vec::new(), 1);
    let rounds = reprobe_rounds(&mut s, &[(30, 5)]);
    assert_eq!(attach_of(&rounds[0]), Some((id(2), SessionNo(2))));
    let now = s.t0 + secs(30);
    s.core.handle_attach(
        now,
        SessionNo(2),
        AttachOutcome::Failed("handshake timed out".into()),
    );
    let actions = drain(&mut s.core);
    assert!(left(&actions).is_empty() && attach_of(&actions).is_none());
    assert_eq!(s.core.supernode().unwrap().node_id, id(1));
    // Still served by session 1.
    s.core
        .handle_message(now, SessionNo(1), SupernodeToLeaf::Limits(limits(10)));
    assert!(s.core.search(now, &["song".into()], 10).is_ok());
    assert_eq!(sent(&drain(&mut s.core))[0].0, SessionNo(1));
}

// ----- failover -----

#[test]
fn a_lost_supernode_means_the_next_best_at_once_and_a_fresh_list() {
    let mut s = attached(quiet(), &[(1, 10), (2, 20), (3, 30)], Vec::new(), 1);
    assert_eq!(s.session, SessionNo(1));
    let now = s.now + secs(5);
    s.core.handle_session_ended(now, SessionNo(1));
    let actions = drain(&mut s.core);
    assert_eq!(fetches(&actions), 1, "{actions:?}");
    assert_eq!(attach_of(&actions), Some((id(2), SessionNo(2))));
    assert_eq!(s.core.supernode(), None);
    // 2 fails too: 3 next, not the lost 1 (it backs off).
    s.core
        .handle_attach(now, SessionNo(2), AttachOutcome::Failed("refused".into()));
    assert_eq!(attach_of(&drain(&mut s.core)), Some((id(3), SessionNo(3))));
    // 1 is measured again only after its backoff (500 ms for a first failure).
    s.core.handle_timeout(now + ms(499));
    assert!(!probed(&drain(&mut s.core)).contains(&id(1)));
    s.core.handle_timeout(now + ms(500));
    assert!(probed(&drain(&mut s.core)).contains(&id(1)));
}

#[test]
fn move_to_is_a_loss_with_the_suggestions_added() {
    let mut s = attached(quiet(), &[(1, 10), (2, 20)], Vec::new(), 1);
    let now = s.now + secs(5);
    s.core.handle_message(
        now,
        s.session,
        SupernodeToLeaf::MoveTo {
            supernodes: vec![info(7)],
        },
    );
    let actions = drain(&mut s.core);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, LeafAction::Close { session, .. } if *session == SessionNo(1))),
        "{actions:?}"
    );
    assert_eq!(fetches(&actions), 1);
    assert_eq!(probed(&actions), vec![id(7)], "the suggestion is measured");
    // No first-join wait after the first attach: the probe of 7 does not hold this up.
    assert_eq!(attach_of(&actions), Some((id(2), SessionNo(2))));
    s.core
        .handle_attach(now, SessionNo(2), AttachOutcome::Welcomed);
    drain(&mut s.core);
    // The suggestion is a candidate like any other: clearly faster, it wins.
    s.core.handle_probe(now + ms(3), id(7), Some((ms(2), None)));
    assert_eq!(attach_of(&drain(&mut s.core)), Some((id(7), SessionNo(3))));
    // And 1 backs off like a lost supernode.
    s.core.handle_timeout(now + ms(100));
    assert!(!probed(&drain(&mut s.core)).contains(&id(1)));
}

#[test]
fn reports_about_an_old_session_are_ignored() {
    let mut s = attached(quiet(), &[(1, 10), (2, 20)], vec![entry("a.txt")], 1);
    let now = s.now + secs(1);
    s.core.handle_session_ended(now, SessionNo(1));
    let (_, session) = attach_of(&drain(&mut s.core)).unwrap();
    s.core.handle_attach(now, session, AttachOutcome::Welcomed);
    drain(&mut s.core);
    let old = SessionNo(1);
    s.core.handle_session_ended(now, old);
    s.core.handle_message(
        now,
        old,
        SupernodeToLeaf::MoveTo {
            supernodes: vec![info(9)],
        },
    );
    s.core
        .handle_message(now, old, SupernodeToLeaf::Limits(limits(10)));
    s.core.handle_attach(now, old, AttachOutcome::Welcomed);
    s.core
        .handle_attach(now, old, AttachOutcome::Failed("late".into()));
    assert_eq!(drain(&mut s.core), Vec::new());
    assert_eq!(s.core.supernode().unwrap().node_id, id(2));
    assert_eq!(s.core.publication().indexed, 0);
}

// ----- the first join -----

/// A fresh leaf with three probes out since `t0`.
fn three_probes_out() -> (LeafCore, Instant) {
    let t0 = Instant::now();
    let mut core = LeafCore::new(t0, id(ME), quiet(), Vec::new(), 1);
    core.handle_learned(
        t0,
        &[info(1), info(2), info(3)],
        Source::ListServer { short: false },
    );
    assert_eq!(probed(&drain(&mut core)).len(), 3);
    (core, t0)
}

#[test]
fn the_first_join_waits_for_every_probe_then_takes_the_best() {
    let (mut core, t0) = three_probes_out();
    core.handle_probe(t0 + ms(50), id(1), Some((ms(50), None)));
    assert_eq!(attach_of(&drain(&mut core)), None);
    assert_eq!(core.poll_timeout(t0 + ms(50)), t0 + ms(100));
    core.handle_probe(t0 + ms(60), id(3), Some((ms(60), None)));
    assert_eq!(attach_of(&drain(&mut core)), None);
    // The last answer, before the deadline: the fastest of all three, at once.
    core.handle_probe(t0 + ms(70), id(2), Some((ms(10), None)));
    assert_eq!(attach_of(&drain(&mut core)), Some((id(2), SessionNo(1))));
}

#[test]
fn the_first_join_waits_as_long_again_as_the_first_answer_took() {
    let (mut core, t0) = three_probes_out();
    core.handle_probe(t0 + ms(200), id(1), Some((ms(150), None)));
    assert_eq!(attach_of(&drain(&mut core)), None);
    assert_eq!(core.poll_timeout(t0 + ms(200)), t0 + ms(400));
    core.handle_timeout(t0 + ms(399));
    assert_eq!(attach_of(&drain(&mut core)), None);
    core.handle_timeout(t0 + ms(400));
    assert_eq!(
        attach_of(&drain(&mut core)),
        Some((id(1), SessionNo(1))),
        "the slower probes do not hold the join up"
    );
}

#[test]
fn the_first_join_waits_no_longer_than_first_join_wait() {
    let (mut core, t0) = three_probes_out();
    assert_eq!(core.poll_timeout(t0), t0 + MAX_SLEEP.min(FIRST_JOIN_WAIT));
    core.handle_probe(t0 + ms(1000), id(1), Some((ms(900), None)));
    // The periodic look at the clock falls due then too; it attaches nowhere yet.
    core.handle_timeout(t0 + ms(1000));
    assert_eq!(attach_of(&drain(&mut core)), None);
    assert_eq!(core.poll_timeout(t0 + ms(1000)), t0 + FIRST_JOIN_WAIT);
    core.handle_timeout(t0 + FIRST_JOIN_WAIT - ms(1));
    assert_eq!(attach_of(&drain(&mut core)), None);
    core.handle_timeout(t0 + FIRST_JOIN_WAIT);
    assert_eq!(attach_of(&drain(&mut core)), Some((id(1), SessionNo(1))));
}

#[test]
fn once_the_first_join_wait_is_over_poll_timeout_does_not_return_now() {
    let (mut core, t0) = three_probes_out();
    core.handle_probe(t0 + ms(50), id(1), Some((ms(50), None)));
    core.handle_timeout(t0 + ms(100));
    let (_, session) = attach_of(&drain(&mut core)).unwrap();
    core.handle_attach(t0 + ms(150), session, AttachOutcome::Welcomed);
    drain(&mut core);
    // Probes of 2 and 3 are still out (a dead candidate's probe takes its timeout).
    // Nothing is due; the driver sleeps until poll_timeout.
    for now in [t0 + ms(150), t0 + ms(500), t0 + ms(2000)] {
        core.handle_timeout(now);
        assert_eq!(drain(&mut core), Vec::new());
        assert!(core.poll_timeout(now) > now, "busy loop at {:?}", now - t0);
    }
}

// ----- list refreshes -----

#[test]
fn with_nothing_usable_lists_are_fetched_at_most_every_refresh_min_gap() {
    let t0 = Instant::now();
    let mut core = LeafCore::new(t0, id(ME), quiet(), Vec::new(), 1);
    assert_eq!(fetches(&drain(&mut core)), 1);
    let mut at = Vec::new();
    for k in 0..=100 {
        let now = t0 + ms(100) * k;
        // Every list server answers at once with nothing.
        core.handle_learned(now, &[], Source::ListServer { short: false });
        core.handle_timeout(now);
        if fetches(&drain(&mut core)) > 0 {
            at.push(now - t0);
        }
    }
    assert_eq!(at, vec![secs(2), secs(4), secs(6), secs(8), secs(10)]);
    assert_eq!(REFRESH_MIN_GAP, secs(2));
}

#[test]
fn lists_are_fetched_again_every_refresh_interval() {
    let config = LeafCoreConfig {
        refresh_interval: secs(30),
        ..quiet()
    };
    let mut s = attached(config, &[(1, 10)], Vec::new(), 1);
    let mut at = Vec::new();
    for k in 1..=95 {
        let now = s.t0 + secs(k);
        s.core.handle_timeout(now);
        let actions = drain(&mut s.core);
        if fetches(&actions) > 0 {
            at.push(k);
            // The supernode is asked for its list too.
            assert_eq!(
                sent(&actions),
                vec![(
                    s.session,
                    LeafToSupernode::GetSupernodes {
                        max: SUPERNODES_ASKED
                    }
                )]
            );
        }
    }
    assert_eq!(at, vec![30, 60, 90]);
}

#[test]
fn with_every_supernode_full_the_leaf_keeps_asking_and_elects_itself() {
    let t0 = Instant::now();
    let config = LeafCoreConfig {
        election: ElectionConfig::with_min_uptime(secs(3)),
        ..LeafCoreConfig::default()
    };
    let mut core = LeafCore::new(t0, id(ME), config, Vec::new(), 7);
    drain(&mut core);
    core.handle_learned(
        t0 + ms(10),
        &[info(1), info(2)],
        Source::ListServer { short: false },
    );
    let probes = probed(&drain(&mut core));
    assert_eq!(probes.len(), 2);
    for n in [1, 2] {
        core.handle_probe(t0 + ms(30), id(n), Some((ms(1), Some(full()))));
    }
    let mut promoted = None;
    for k in 1..=300 {
        let now = t0 + ms(100) * k;
        core.handle_timeout(now);
        for action in drain(&mut core) {
            match action {
                LeafAction::FetchLists => {
                    let mut full_infos = [info(1), info(2)];
                    for i in &mut full_infos {
                        i.load = full();
                    }
                    core.handle_learned(now, &full_infos, Source::ListServer { short: true });
                }
                LeafAction::StartSupernode => promoted = promoted.or(Some(now - t0)),
                _ => {}
            }
        }
    }
    let promoted = promoted.expect("never promoted");
    assert!(promoted <= secs(10), "{promoted:?}");
}

#[test]
fn a_stream_of_events_does_not_postpone_the_next_look_at_the_clock() {
    let t0 = Instant::now();
    let mut core = LeafCore::new(t0, id(ME), quiet(), Vec::new(), 1);
    let first = core.poll_timeout(t0);
    assert!(first <= t0 + MAX_SLEEP);
    // Status requests and other events every 250 ms: the deadline stays where it was.
    for k in 1..4 {
        assert_eq!(core.poll_timeout(t0 + ms(250) * k), first);
    }
    core.handle_timeout(first);
    assert!(core.poll_timeout(first) > first);
}
