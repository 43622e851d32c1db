use std::net::SocketAddr;

use super::*;

fn member(i: u16) -> (NodeId, SocketAddr) {
    let mut bytes = [0u8; 32];
    bytes[..2].copy_from_slice(&i.to_le_bytes());
    bytes[29] = 0x11;
    (
        NodeId::from_bytes(bytes),
        SocketAddr::from(([127, 0, 0, 1], 3000 + i)),
    )
}

fn holder(i: u16, count: u32) -> DirHolder {
    DirHolder {
        node_id: member(i).0,
        count,
    }
}

fn sends(steps: &[LookupStep]) -> Vec<(NodeId, String)> {
    steps
        .iter()
        .filter_map(|s| match s {
            LookupStep::Send(to, SupernodeToSupernode::DirLookup { keyword, .. }) => {
                Some((*to, keyword.clone()))
            }
            _ => None,
        })
        .collect()
}

fn done(steps: &[LookupStep]) -> Option<Option<Vec<NodeId>>> {
    steps.iter().find_map(|s| match s {
        LookupStep::Done(_, found) => Some(found.clone()),
        _ => None,
    })
}

fn setup() -> (MemberSet, NodeId) {
    (MemberSet::new((0..30).map(member)), member(999).0)
}

fn first_owner(members: &MemberSet, me: NodeId, word: &str) -> Vec<NodeId> {
    members
        .owners(word)
        .into_iter()
        .map(|(_, id)| id)
        .filter(|id| *id != me)
        .collect()
}

fn owners_of(members: &MemberSet, me: NodeId, word: &str) -> Vec<NodeId> {
    first_owner(members, me, word)
}

#[test]
fn each_word_asks_two_owners_whose_answers_are_merged_then_intersected() {
    let now = Instant::now();
    let (members, me) = setup();
    let mut lookups = Lookups::default();
    let id = QueryId([1; 16]);
    let words = vec!["blue".to_owned(), "moon".to_owned()];
    let asked = sends(&lookups.start(now, id, &words, &members, me));
    let blue = owners_of(&members, me, "blue");
    let moon = owners_of(&members, me, "moon");
    assert_eq!(asked.len(), 4);
    for owner in [blue[0], blue[1]] {
        assert!(asked.contains(&(owner, "blue".into())));
    }
    for owner in [moon[0], moon[1]] {
        assert!(asked.contains(&(owner, "moon".into())));
    }
    // An answer from someone not asked is ignored.
    let stray = lookups.answered(now, blue[2], id, "blue", Some((1, vec![holder(5, 1)])));
    assert!(done(&stray).is_none());
    lookups.answered(
        now,
        blue[0],
        id,
        "blue",
        Some((2, vec![holder(1, 9), holder(2, 1)])),
    );
    let steps = lookups.answered(
        now,
        blue[1],
        id,
        "blue",
        Some((2, vec![holder(2, 1), holder(3, 4)])),
    );
    assert_eq!(done(&steps), None, "moon is still out");
    // moon's second owner is new and knows nothing yet: it hides nothing.
    lookups.answered(
        now,
        moon[0],
        id,
        "moon",
        Some((2, vec![holder(3, 1), holder(2, 2)])),
    );
    let steps = lookups.answered(now, moon[1], id, "moon", Some((0, vec![])));
    // On both words: 2 and 3 (1 holds only blue), the rarest word's biggest first.
    assert_eq!(done(&steps), Some(Some(vec![member(3).0, member(2).0])));
    assert!(lookups.is_empty());
}

#[test]
fn a_capped_list_rules_nobody_out() {
    let now = Instant::now();
    let (members, me) = setup();
    let mut lookups = Lookups::default();
    let id = QueryId([2; 16]);
    let words = vec!["the".to_owned(), "zebra".to_owned()];
    lookups.start(now, id, &words, &members, me);
    let the = owners_of(&members, me, "the");
    let zebra = owners_of(&members, me, "zebra");
    // "the" is held by 5,000 supernodes; the owners name only 1.
    for owner in &the[..2] {
        lookups.answered(now, *owner, id, "the", Some((5_000, vec![holder(1, 50)])));
    }
    lookups.answered(now, zebra[0], id, "zebra", Some((1, vec![holder(7, 1)])));
    let steps = lookups.answered(now, zebra[1], id, "zebra", Some((1, vec![holder(7, 1)])));
    assert_eq!(done(&steps), Some(Some(vec![member(7).0])));
}

#[test]
fn a_refusing_silent_or_unreachable_owner_is_replaced_by_the_next() {
    let now = Instant::now();
    let (members, me) = setup();
    let mut lookups = Lookups::default();
    let id = QueryId([3; 16]);
    lookups.start(now, id, &["rare".to_owned()], &members, me);
    let owners = owners_of(&members, me, "rare");
    let steps = lookups.answered(now, owners[0], id, "rare", None);
    assert_eq!(sends(&steps), vec![(owners[2], "rare".to_owned())]);
    let later = now + LOOKUP_TIMEOUT;
    assert_eq!(lookups.poll_timeout(), Some(later));
    // owners[1] and owners[2] stay silent: nobody left, nobody answered.
    let steps = lookups.handle_timeout(later);
    assert!(sends(&steps).is_empty());
    assert_eq!(done(&steps), Some(None));
    // An owner that cannot be reached is replaced at once.
    let id = QueryId([7; 16]);
    lookups.start(later, id, &["rare".to_owned()], &members, me);
    let steps = lookups.unreachable(later, owners[1]);
    assert_eq!(sends(&steps), vec![(owners[2], "rare".to_owned())]);
}

#[test]
fn a_slow_owner_costs_one_timeout_once_the_other_answered() {
    let now = Instant::now();
    let (members, me) = setup();
    let mut lookups = Lookups::default();
    let id = QueryId([6; 16]);
    lookups.start(now, id, &["slow".to_owned()], &members, me);
    let owners = owners_of(&members, me, "slow");
    let steps = lookups.answered(now, owners[0], id, "slow", Some((1, vec![holder(4, 1)])));
    assert_eq!(done(&steps), None);
    let steps = lookups.handle_timeout(now + LOOKUP_TIMEOUT);
    assert!(sends(&steps).is_empty(), "no third owner asked");
    assert_eq!(done(&steps), Some(Some(vec![member(4).0])));
}

#[test]
fn no_members_means_no_help_at_once() {
    let now = Instant::now();
    let mut lookups = Lookups::default();
    let steps = lookups.start(
        now,
        QueryId([4; 16]),
        &["x".to_owned()],
        &MemberSet::default(),
        member(0).0,
    );
    assert_eq!(done(&steps), Some(None));
}

#[test]
fn a_word_nobody_holds_ends_with_nobody_to_ask() {
    let now = Instant::now();
    let (members, me) = setup();
    let mut lookups = Lookups::default();
    let id = QueryId([5; 16]);
    lookups.start(now, id, &["nothing".to_owned()], &members, me);
    let owners = owners_of(&members, me, "nothing");
    lookups.answered(now, owners[0], id, "nothing", Some((0, vec![])));
    let steps = lookups.answered(now, owners[1], id, "nothing", Some((0, vec![])));
    assert_eq!(done(&steps), Some(Some(vec![])));
}
