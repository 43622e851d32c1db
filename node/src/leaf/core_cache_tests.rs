//! Fake-clock tests of how often the leaf core saves its known supernodes, and which.

use superpeer_common::wire::SupernodeToLeaf;

use super::tests::{attached, drain, info, quiet, secs};
use super::*;

fn saves(actions: &[LeafAction]) -> Vec<usize> {
    actions
        .iter()
        .filter_map(|a| match a {
            LeafAction::SaveCache(known) => Some(known.len()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_known_supernodes_are_saved_at_most_every_five_minutes_and_never_lost() {
    // Saved at the first list (a restart soon after finds them), then at most once per
    // `CACHE_SAVE_EVERY` however often lists come; what came between is saved when due.
    let mut s = attached(quiet(), &[(1, 30), (2, 40)], Vec::new(), 1);
    let mut actions = Vec::new();
    for (k, n) in (3u8..=11).enumerate() {
        let now = s.t0 + secs(30) * (k as u32 + 1);
        s.core
            .handle_learned(now, &[info(n)], Source::ListServer { short: false });
        s.core.handle_message(
            now,
            s.session,
            SupernodeToLeaf::Supernodes(superpeer_common::wire::SupernodeList {
                made_at_ms: 0,
                supernodes: vec![info(n + 20)],
                short_of_supernodes: false,
            }),
        );
        actions.extend(drain(&mut s.core));
    }
    assert_eq!(
        saves(&actions),
        Vec::<usize>::new(),
        "saved within 5 minutes"
    );
    let due = s.t0 + CACHE_SAVE_EVERY;
    assert!(s.core.poll_timeout(s.t0 + secs(300)) <= due);
    s.core.handle_timeout(due);
    // Two attached to, nine from list servers; the supernode's nine suggestions have not
    // answered a probe, so they are not worth a restart's trust.
    assert_eq!(
        saves(&drain(&mut s.core)),
        vec![11],
        "all learned since, saved"
    );
    // Nothing new: nothing to save.
    s.core.handle_timeout(due + CACHE_SAVE_EVERY * 2);
    assert_eq!(saves(&drain(&mut s.core)), Vec::<usize>::new());
}

#[test]
fn a_first_list_with_no_supernode_is_not_saved_and_does_not_hold_back_the_next() {
    let t0 = std::time::Instant::now();
    let mut core = LeafCore::new(
        t0,
        super::tests::id(super::tests::ME),
        quiet(),
        Vec::new(),
        1,
    );
    drain(&mut core);
    // The list server answers before any supernode is listed: nothing to save.
    core.handle_learned(t0, &[], Source::ListServer { short: true });
    assert_eq!(saves(&drain(&mut core)), Vec::<usize>::new());
    // A second later it lists one: saved at once, not five minutes later.
    core.handle_learned(
        t0 + secs(1),
        &[info(1)],
        Source::ListServer { short: false },
    );
    assert_eq!(saves(&drain(&mut core)), vec![1]);
}
