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

#[test]
fn each_word_asks_its_first_owner_and_the_answers_are_intersected() {
    let now = Instant::now();
    let (members, me) = setup();
    let mut lookups = Lookups::default();
    let id = QueryId([1; 16]);
    let words = vec!["blue".to_owned(), "moon".to_owned()];
    let steps = lookups.start(now, id, &words, &members, me);
    let asked = sends(&steps);
    assert_eq!(asked.len(), 2);
    let blue = first_owner(&members, me, "blue")[0];
    let moon = first_owner(&members, me, "moon")[0];
    assert!(asked.contains(&(blue, "blue".into())) && asked.contains(&(moon, "moon".into())));
    // An answer from someone not asked is ignored.
    let stray = lookups.answered(now, member(0).0, id, "blue", Some((1, vec![holder(5, 1)])));
    assert!(stray.is_empty() || done(&stray).is_none());
    let blue_holders = vec![holder(1, 9), holder(2, 1), holder(3, 4)];
    let steps = lookups.answered(now, blue, id, "blue", Some((3, blue_holders)));
    assert_eq!(done(&steps), None, "moon is still out");
    let moon_holders = vec![holder(3, 1), holder(2, 2)];
    let steps = lookups.answered(now, moon, id, "moon", Some((2, moon_holders)));
    // Both lists complete: holders of both words, the rarest word's biggest first.
    assert_eq!(done(&steps), Some(Some(vec![member(2).0, member(3).0])));
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
    let the = first_owner(&members, me, "the")[0];
    let zebra = first_owner(&members, me, "zebra")[0];
    // "the" is held by 5,000 supernodes; the owner names only 1.
    lookups.answered(now, the, id, "the", Some((5_000, vec![holder(1, 50)])));
    let steps = lookups.answered(now, zebra, id, "zebra", Some((1, vec![holder(7, 1)])));
    assert_eq!(done(&steps), Some(Some(vec![member(7).0])));
}

#[test]
fn a_refusing_silent_or_unreachable_owner_is_replaced_by_the_next() {
    let now = Instant::now();
    let (members, me) = setup();
    let mut lookups = Lookups::default();
    let id = QueryId([3; 16]);
    lookups.start(now, id, &["rare".to_owned()], &members, me);
    let owners = first_owner(&members, me, "rare");
    let steps = lookups.answered(now, owners[0], id, "rare", None);
    assert_eq!(sends(&steps), vec![(owners[1], "rare".to_owned())]);
    let later = now + LOOKUP_TIMEOUT;
    assert_eq!(lookups.poll_timeout(), Some(later));
    let steps = lookups.handle_timeout(later);
    assert_eq!(sends(&steps), vec![(owners[2], "rare".to_owned())]);
    let steps = lookups.unreachable(later, owners[2]);
    // No owner left: the directory could not help.
    assert_eq!(done(&steps), Some(None));
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
    let owner = first_owner(&members, me, "nothing")[0];
    let steps = lookups.answered(now, owner, id, "nothing", Some((0, vec![])));
    assert_eq!(done(&steps), Some(Some(vec![])));
}
