//! Fake-clock tests of becoming a supernode and stepping back down: the election through
//! the core, and how each kind of promotion reads the list servers' registrations (refused
//! means "not reachable at our address", unreachable means nothing).

use superpeer_bootstrap_list::RegistrationStatus;
use superpeer_common::wire::{Observed, SupernodeToLeaf};

use super::promotion::CONFIRM_WITHIN;
use super::tests::{Setup, attached, drain, entry, fetches, id, info, ms, secs};
use super::*;

/// Elections within seconds, and no periodic timers in the way.
fn electable() -> LeafCoreConfig {
    LeafCoreConfig {
        election: ElectionConfig::with_min_uptime(secs(1)),
        reprobe_interval: secs(3600),
        refresh_interval: secs(3600),
        ..LeafCoreConfig::default()
    }
}

fn list_server(n: u8) -> SocketAddr {
    format!("127.0.0.{n}:7000").parse().unwrap()
}

fn stops(actions: &[LeafAction]) -> bool {
    actions.contains(&LeafAction::StopSupernode)
}

/// What happened in [`run_election`], as offsets from the leaf's start.
struct ElectionRun {
    s: Setup,
    /// The election asked the list servers for a fresh look.
    asked: Option<Duration>,
    /// Their answer came.
    answered: Option<Duration>,
    /// `StartSupernode`.
    started: Option<Duration>,
}

/// An attached leaf whose list server says the network is short, run in 10 ms steps up to
/// `until` or its promotion. The election's request for a fresh look is answered 50 ms
/// later with `still_short`.
fn run_election(seed: u64, still_short: bool, until: Duration) -> ElectionRun {
    run_election_seen(seed, still_short, until, None)
}

/// [`run_election`], with our supernode's report of where it sees us first.
fn run_election_seen(
    seed: u64,
    still_short: bool,
    until: Duration,
    seen: Option<Observed>,
) -> ElectionRun {
    let mut s = attached(electable(), &[(1, 10)], vec![entry("a.txt")], seed);
    if let Some(observed) = seen {
        let report = SupernodeToLeaf::Reachability(observed);
        s.core.handle_message(s.now, s.session, report);
    }
    s.core
        .handle_learned(s.now, &[info(1)], Source::ListServer { short: true });
    drain(&mut s.core);
    let (mut asked, mut answered, mut started) = (None, None, None);
    let mut now = s.now;
    while now < s.t0 + until && started.is_none() {
        now += ms(10);
        if let Some(at) = asked
            && answered.is_none()
            && now >= s.t0 + at + ms(50)
        {
            s.core
                .handle_learned(now, &[info(1)], Source::ListServer { short: still_short });
            answered = Some(now - s.t0);
        }
        s.core.handle_timeout(now);
        let actions = drain(&mut s.core);
        if fetches(&actions) > 0 && asked.is_none() {
            asked = Some(now - s.t0);
        }
        if actions.contains(&LeafAction::StartSupernode) {
            started = Some(now - s.t0);
            assert!(
                actions.contains(&LeafAction::Leave {
                    session: s.session,
                    reason: "promoted to supernode",
                }),
                "{actions:?}"
            );
        }
    }
    s.now = now;
    ElectionRun {
        s,
        asked,
        answered,
        started,
    }
}

#[test]
fn a_short_network_promotes_after_the_random_wait_and_a_fresh_look() {
    let run = run_election(1, true, secs(10));
    let asked = run.asked.unwrap();
    // Up 1 s, short for 0.5 s, then a random wait of up to 1 s.
    assert!((ms(1500)..=ms(2520)).contains(&asked), "asked at {asked:?}");
    let answered = run.answered.unwrap();
    let started = run.started.unwrap();
    assert!(
        asked < answered && answered <= started,
        "{asked:?} {answered:?} {started:?}"
    );
    let mut core = run.s.core;
    core.handle_supernode_started(run.s.now, Ok(()));
    assert_eq!(
        drain(&mut core),
        vec![LeafAction::ShareOwnSupernode {
            add: vec![entry("a.txt")],
            remove: Vec::new(),
        }]
    );
    assert!(core.is_supernode());
    assert_eq!(core.supernode(), None);
}

#[test]
fn a_leaf_behind_a_nat_is_never_elected_and_promote_says_why() {
    let behind = Observed {
        addr: "198.18.0.9:40000".parse().unwrap(),
        reachable: false,
    };
    let mut run = run_election_seen(1, true, secs(10), Some(behind));
    assert_eq!(run.started, None, "a NATed leaf stays a leaf");
    assert!(!run.s.core.is_supernode());
    let why = run.s.core.promote(run.s.now).unwrap_err();
    assert!(why.contains("cannot be reached from outside"), "{why}");
    assert!(why.contains("198.18.0.9:40000"), "{why}");
    assert!(!run.s.core.is_supernode());

    // The same leaf, reachable, is elected.
    let reachable = Observed {
        reachable: true,
        ..behind
    };
    let run = run_election_seen(1, true, secs(10), Some(reachable));
    assert!(run.started.is_some());
}

#[test]
fn a_shortage_gone_by_the_fresh_look_cancels_the_promotion() {
    let run = run_election(1, false, secs(20));
    assert!(run.answered.is_some());
    assert_eq!(run.started, None);
}

#[test]
fn different_seeds_wait_differently() {
    let mut waits: Vec<Duration> = (0..8)
        .map(|seed| run_election(seed, true, secs(10)).asked.unwrap())
        .collect();
    waits.sort();
    waits.dedup();
    assert!(waits.len() >= 3, "{waits:?}");
}

/// A leaf promoted by the election, its supernode running; returns it and the time.
fn elected(seed: u64) -> (LeafCore, Instant) {
    let run = run_election(seed, true, secs(10));
    assert!(run.started.is_some());
    let mut core = run.s.core;
    core.handle_supernode_started(run.s.now, Ok(()));
    drain(&mut core);
    (core, run.s.now)
}

#[test]
fn an_underused_elected_supernode_steps_down_when_others_have_room() {
    let (mut core, t) = elected(3);
    let listed = [(
        list_server(100),
        RegistrationStatus::Registered { listed: true },
    )];
    let mut stopped = None;
    // 200 s short of supernodes, 200 s with only 2, then room: one leaf throughout.
    'phases: for (phase, (short, count)) in [(true, 3u8), (false, 2), (false, 3)]
        .into_iter()
        .enumerate()
    {
        for k in 0..200 {
            let now = t + secs(phase as u64 * 200 + k);
            if k % 2 == 0 {
                let infos: Vec<SupernodeInfo> = (1..=count).map(info).collect();
                core.handle_learned(now, &infos, Source::ListServer { short });
            }
            core.handle_registrations(now, &listed, 1);
            core.handle_timeout(now);
            if stops(&drain(&mut core)) {
                stopped = Some(now);
                break 'phases;
            }
        }
    }
    // Underused from 400 s: it steps down after demote_after (180 s).
    assert_eq!(stopped, Some(t + secs(400 + 180)));
    let now = stopped.unwrap();
    core.handle_supernode_stopped(now);
    assert!(fetches(&drain(&mut core)) > 0);
    assert!(!core.is_supernode());
}

#[test]
fn an_elected_supernode_stays_while_list_servers_are_merely_unreachable() {
    let (mut core, t) = elected(4);
    let unreachable = [
        (
            list_server(100),
            RegistrationStatus::Unreachable("timed out".into()),
        ),
        (
            list_server(101),
            RegistrationStatus::Unreachable("connection refused".into()),
        ),
    ];
    // One refuses, one cannot be reached: not refused everywhere either.
    let mixed = [
        (
            list_server(100),
            RegistrationStatus::Refused("dial-back failed".into()),
        ),
        (
            list_server(101),
            RegistrationStatus::Unreachable("timed out".into()),
        ),
    ];
    for k in 0..2000 {
        let now = t + secs(k);
        let registrations = if k < 1000 { &unreachable } else { &mixed };
        core.handle_registrations(now, registrations, 0);
        core.handle_timeout(now);
        assert!(!stops(&drain(&mut core)), "stepped down at {k} s");
    }
    assert!(core.is_supernode());
}

#[test]
fn an_elected_supernode_every_list_server_refuses_steps_down() {
    let (mut core, t) = elected(5);
    let connecting = [
        (list_server(100), RegistrationStatus::Connecting),
        (list_server(101), RegistrationStatus::Connecting),
    ];
    for k in 0..5 {
        core.handle_registrations(t + secs(k), &connecting, 0);
        core.handle_timeout(t + secs(k));
    }
    assert!(!stops(&drain(&mut core)));
    let refused = [
        (
            list_server(100),
            RegistrationStatus::Refused("dial-back failed".into()),
        ),
        (
            list_server(101),
            RegistrationStatus::Refused("dial-back failed".into()),
        ),
    ];
    let now = t + secs(5);
    core.handle_registrations(now, &refused, 0);
    assert_eq!(drain(&mut core), vec![LeafAction::StopSupernode]);
    core.handle_supernode_stopped(now);
    assert!(fetches(&drain(&mut core)) > 0);
    assert!(!core.is_supernode());
}

/// An attached leaf promoted by hand, its supernode running.
fn promoted_by_hand() -> Setup {
    let mut s = attached(electable(), &[(1, 10)], vec![entry("a.txt")], 1);
    s.core.promote(s.now).unwrap();
    assert_eq!(
        drain(&mut s.core),
        vec![
            LeafAction::Leave {
                session: s.session,
                reason: "promoted to supernode",
            },
            LeafAction::StartSupernode,
        ]
    );
    assert!(s.core.promote(s.now).is_err(), "already one");
    s.core.handle_supernode_started(s.now, Ok(()));
    assert_eq!(
        drain(&mut s.core),
        vec![LeafAction::ShareOwnSupernode {
            add: vec![entry("a.txt")],
            remove: Vec::new(),
        }]
    );
    s
}

fn all(status: &RegistrationStatus) -> Vec<(SocketAddr, RegistrationStatus)> {
    vec![
        (list_server(100), status.clone()),
        (list_server(101), status.clone()),
    ]
}

#[test]
fn a_promotion_by_hand_is_confirmed_by_one_listing() {
    let mut s = promoted_by_hand();
    let pending = [
        (list_server(100), RegistrationStatus::Connecting),
        (
            list_server(101),
            RegistrationStatus::Registered { listed: false },
        ),
    ];
    s.core.handle_registrations(s.now + secs(1), &pending, 0);
    assert_eq!(drain(&mut s.core), Vec::new());
    let listed = [
        (
            list_server(100),
            RegistrationStatus::Refused("dial-back failed".into()),
        ),
        (
            list_server(101),
            RegistrationStatus::Registered { listed: true },
        ),
    ];
    s.core.handle_registrations(s.now + secs(2), &listed, 0);
    assert_eq!(
        drain(&mut s.core),
        vec![LeafAction::PromotionSettled(Ok(PromotionOutcome {
            listed_by: vec![list_server(101)],
            note: None,
        }))]
    );
    // Settled: a node promoted by hand does not step down by itself.
    let refused = all(&RegistrationStatus::Refused("dial-back failed".into()));
    for k in 3..600 {
        let now = s.now + secs(k);
        s.core.handle_registrations(now, &refused, 0);
        s.core.handle_timeout(now);
        assert_eq!(drain(&mut s.core), Vec::new(), "at {k} s");
    }
}

#[test]
fn a_promotion_by_hand_every_list_server_refuses_is_undone() {
    let mut s = promoted_by_hand();
    let now = s.now + secs(1);
    let refused = all(&RegistrationStatus::Refused("dial-back failed".into()));
    s.core.handle_registrations(now, &refused, 0);
    let actions = drain(&mut s.core);
    let [
        LeafAction::PromotionSettled(Err(why)),
        LeafAction::StopSupernode,
    ] = &actions[..]
    else {
        panic!("{actions:?}");
    };
    assert!(
        why.contains("will not list this node") && why.contains("dial-back failed"),
        "{why}"
    );
    s.core.handle_supernode_stopped(now);
    assert!(fetches(&drain(&mut s.core)) > 0);
    assert!(!s.core.is_supernode());
}

#[test]
fn a_promotion_by_hand_nobody_can_confirm_settles_with_a_note() {
    let mut s = promoted_by_hand();
    let unreachable = all(&RegistrationStatus::Unreachable("timed out".into()));
    let mut settled = Vec::new();
    for k in 0..600 {
        let now = s.now + secs(k);
        s.core.handle_registrations(now, &unreachable, 0);
        s.core.handle_timeout(now);
        for action in drain(&mut s.core) {
            assert_ne!(action, LeafAction::StopSupernode, "at {k} s");
            settled.push((k, action));
        }
    }
    let note = "promoted; no list server has confirmed it yet";
    assert_eq!(
        settled,
        vec![(
            CONFIRM_WITHIN.as_secs(),
            LeafAction::PromotionSettled(Ok(PromotionOutcome {
                listed_by: Vec::new(),
                note: Some(note.into()),
            }))
        )]
    );
    assert!(s.core.is_supernode());
}

#[test]
fn a_node_started_as_supernode_never_steps_down_by_itself() {
    let t0 = Instant::now();
    let config = LeafCoreConfig {
        start_as_supernode: true,
        ..electable()
    };
    let mut core = LeafCore::new(t0, id(200), config, vec![entry("a.txt")], 1);
    assert_eq!(drain(&mut core), vec![LeafAction::StartSupernode]);
    core.handle_supernode_started(t0, Ok(()));
    drain(&mut core);
    let refused = all(&RegistrationStatus::Refused("dial-back failed".into()));
    let infos: Vec<SupernodeInfo> = (1..=5).map(info).collect();
    for k in 0..1000 {
        let now = t0 + secs(k);
        // Refused everywhere, no leaves, and plenty of room elsewhere.
        core.handle_learned(now, &infos, Source::ListServer { short: false });
        core.handle_registrations(now, &refused, 0);
        core.handle_timeout(now);
        for action in drain(&mut core) {
            assert!(
                matches!(action, LeafAction::SaveCache(_) | LeafAction::FetchLists),
                "at {k} s: {action:?}"
            );
        }
    }
    assert!(core.is_supernode());
    // By hand it can.
    core.demote(t0 + secs(1000)).unwrap();
    assert_eq!(drain(&mut core), vec![LeafAction::StopSupernode]);
}
