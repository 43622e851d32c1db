//! Election tests with a fake clock.

use super::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn config() -> ElectionConfig {
    ElectionConfig {
        enabled: true,
        min_uptime: secs(60),
        shortage_for: secs(10),
        jitter: secs(10),
        fresh_for: secs(5),
        min_capacity: 8,
        cooldown: secs(300),
        underused_leaves: 1,
        demote_after: secs(180),
        min_supernodes: 2,
    }
}

/// Runs the election second by second from `from` to `to`, answering every
/// `AskListServers` at once with `short` (and a list answer every 2 s, as an unattached
/// leaf fetches), and returns the first promotion or demotion and when.
fn run(
    election: &mut Election,
    from: Instant,
    to: u64,
    short: impl Fn(u64) -> bool,
) -> Option<(u64, Decision)> {
    for s in 0..=to {
        let now = from + secs(s);
        if s % 2 == 0 {
            election.list_answer(now, short(s), 3);
        }
        match election.poll(now) {
            Some(Decision::AskListServers) => {
                election.list_answer(now, short(s), 3);
                if let Some(decision) = election.poll(now) {
                    assert_ne!(decision, Decision::AskListServers);
                    return Some((s, decision));
                }
            }
            Some(decision) => return Some((s, decision)),
            None => {}
        }
    }
    None
}

#[test]
fn a_sustained_shortage_promotes_after_uptime_shortage_and_jitter() {
    let t0 = Instant::now();
    let mut election = Election::new(t0, config(), 500, 7);
    let (at, decision) = run(&mut election, t0, 200, |_| true).unwrap();
    assert_eq!(decision, Decision::Promote);
    // Not before 60 s up plus 10 s of shortage; within the 10 s of jitter after.
    assert!((70..=81).contains(&at), "promoted at {at} s");
}

#[test]
fn no_promotion_without_shortage_capacity_or_uptime_or_when_disabled() {
    let t0 = Instant::now();
    let mut e = Election::new(t0, config(), 500, 1);
    assert_eq!(run(&mut e, t0, 400, |_| false), None, "no shortage");
    let mut e = Election::new(t0, config(), 4, 1);
    assert_eq!(run(&mut e, t0, 400, |_| true), None, "too small");
    let mut e = Election::new(
        t0,
        ElectionConfig {
            enabled: false,
            ..config()
        },
        500,
        1,
    );
    assert_eq!(run(&mut e, t0, 400, |_| true), None, "disabled");
    let mut e = Election::new(t0, config(), 500, 1);
    assert_eq!(run(&mut e, t0, 69, |_| true), None, "too early");
}

#[test]
fn a_shortage_that_ends_during_the_wait_cancels_it() {
    let t0 = Instant::now();
    // Short from 60 s; someone else promotes at 72 s and the list says so from then on:
    // whatever the random wait, the final check sees the news.
    for seed in 0..50 {
        let mut e = Election::new(t0, config(), 500, seed);
        let outcome = run(&mut e, t0, 400, |s| s < 72);
        match outcome {
            None => {}
            Some((at, Decision::Promote)) => assert!(at < 72, "seed {seed} promoted at {at}"),
            other => panic!("seed {seed}: {other:?}"),
        }
    }
}

#[test]
fn leaves_seeing_the_same_shortage_spread_their_promotions() {
    let t0 = Instant::now();
    let times: Vec<u64> = (0..20)
        .map(|seed| {
            let mut e = Election::new(t0, config(), 500, seed);
            run(&mut e, t0, 200, |_| true).unwrap().0
        })
        .collect();
    let first = *times.iter().min().unwrap();
    let last = *times.iter().max().unwrap();
    assert!(last - first >= 5, "no spread: {times:?}");
}

#[test]
fn without_a_list_server_being_refused_as_full_is_the_signal() {
    let t0 = Instant::now();
    let mut e = Election::new(t0, config(), 500, 3);
    for s in 0..=100 {
        let now = t0 + secs(s);
        e.refused_full(now);
        if let Some(decision) = e.poll(now) {
            assert_eq!(decision, Decision::Promote, "no list server to ask");
            assert!(s >= 70);
            return;
        }
    }
    panic!("never promoted");
}

#[test]
fn an_attached_leaf_is_not_moved_by_refusals_alone() {
    let t0 = Instant::now();
    let mut e = Election::new(t0, config(), 500, 3);
    e.set_attached(true);
    for s in 0..=300 {
        let now = t0 + secs(s);
        e.refused_full(now);
        assert_eq!(e.poll(now), None);
    }
}

#[test]
fn a_failed_promotion_waits_out_the_cooldown() {
    let t0 = Instant::now();
    let mut e = Election::new(t0, config(), 500, 5);
    let (at, _) = run(&mut e, t0, 200, |_| true).unwrap();
    e.promoted(false);
    let failed = t0 + secs(at + 2);
    e.promotion_failed(failed);
    let (again, decision) = run(&mut e, failed, 1000, |_| true).unwrap();
    assert_eq!(decision, Decision::Promote);
    assert!(again >= 300, "tried again after {again} s");
}

#[test]
fn an_underused_elected_supernode_steps_down_only_when_others_have_room() {
    let t0 = Instant::now();
    let mut e = Election::new(t0, config(), 500, 9);
    e.promoted(false);
    // Plenty of leaves: stays.
    for s in 0..400 {
        let now = t0 + secs(s);
        e.list_answer(now, false, 5);
        e.own_leaves(now, 30);
        assert_eq!(e.poll(now), None);
    }
    // Underused while the network is short, or with too few supernodes: stays.
    for (short, count) in [(true, 5), (false, 2)] {
        for s in 400..800 {
            let now = t0 + secs(s);
            e.list_answer(now, short, count);
            e.own_leaves(now, 0);
            assert_eq!(e.poll(now), None);
        }
    }
    // Underused with room elsewhere: steps down after the grace period, not before.
    let start = t0 + secs(800);
    for s in 0..=200 {
        let now = start + secs(s);
        e.list_answer(now, false, 5);
        e.own_leaves(now, 1);
        if let Some(decision) = e.poll(now) {
            assert_eq!(decision, Decision::Demote);
            assert_eq!(s, 180);
            return;
        }
    }
    panic!("never stepped down");
}

#[test]
fn a_supernode_promoted_by_hand_is_never_demoted() {
    let t0 = Instant::now();
    let mut e = Election::new(t0, config(), 500, 9);
    e.promoted(true);
    for s in 0..1000 {
        let now = t0 + secs(s);
        e.list_answer(now, false, 9);
        e.own_leaves(now, 0);
        assert_eq!(e.poll(now), None);
    }
}
