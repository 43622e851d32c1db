//! Fake-clock tests of what the leaf core publishes: nothing before the supernode's
//! `Limits`, then the first `max_entries` files in name order; refusals, retries, and room
//! freed by removed files.

use superpeer_common::wire::SupernodeToLeaf;

use super::tests::{Setup, attach_of, attached, drain, entry, limits, ms, quiet, sent};
use super::*;

/// The names in each `Publish` sent.
fn publishes(actions: &[LeafAction]) -> Vec<Vec<String>> {
    sent(actions)
        .into_iter()
        .filter_map(|(_, msg)| match msg {
            LeafToSupernode::Publish { entries } => {
                Some(entries.into_iter().map(|e| e.name).collect())
            }
            _ => None,
        })
        .collect()
}

fn five_files() -> Vec<FileEntry> {
    ["e.txt", "a.txt", "d.txt", "b.txt", "c.txt"]
        .into_iter()
        .map(entry)
        .collect()
}

fn indexed(s: &mut Setup, entries: u32, refused: Option<&str>) {
    s.core.handle_message(
        s.now,
        s.session,
        SupernodeToLeaf::Indexed {
            entries,
            refused: refused.map(String::from),
        },
    );
}

#[test]
fn nothing_is_published_before_limits_then_what_fits_in_name_order() {
    let mut s = attached(quiet(), &[(1, 10)], five_files(), 1);
    s.core.handle_share_delta(ShareDelta {
        added: vec![entry("f.txt")],
        removed: Vec::new(),
    });
    assert!(publishes(&drain(&mut s.core)).is_empty());
    assert_eq!(s.core.publication().indexed, 0);
    s.core
        .handle_message(s.now, s.session, SupernodeToLeaf::Limits(limits(3)));
    assert_eq!(
        publishes(&drain(&mut s.core)),
        vec![vec!["a.txt", "b.txt", "c.txt"]]
    );
    let cap = "the supernode indexes at most 3 files per leaf; the first 3 in name order are \
               published, the rest wait for room";
    let status = s.core.publication();
    assert_eq!((status.shared, status.indexed, status.pending), (6, 0, 6));
    assert_eq!(status.reason.as_deref(), Some(cap));
    indexed(&mut s, 3, None);
    assert_eq!(
        s.core.publication(),
        PublicationStatus {
            shared: 6,
            indexed: 3,
            pending: 3,
            reason: Some(cap.into()),
        }
    );
}

#[test]
fn a_refused_publish_waits_and_is_tried_again() {
    let mut s = attached(quiet(), &[(1, 10)], five_files(), 1);
    s.core
        .handle_message(s.now, s.session, SupernodeToLeaf::Limits(limits(10)));
    let all = vec!["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"];
    assert_eq!(publishes(&drain(&mut s.core)), vec![all.clone()]);
    indexed(&mut s, 0, Some("index full\n"));
    assert_eq!(
        s.core.publication(),
        PublicationStatus {
            shared: 5,
            indexed: 0,
            pending: 5,
            reason: Some("the supernode refused a publish: index full_".into()),
        }
    );
    s.core.handle_timeout(s.now + PUBLISH_RETRY - ms(1));
    assert!(publishes(&drain(&mut s.core)).is_empty());
    s.core.handle_timeout(s.now + PUBLISH_RETRY);
    assert_eq!(
        publishes(&drain(&mut s.core)),
        vec![all],
        "the batch was put back"
    );
    indexed(&mut s, 5, None);
    assert_eq!(
        s.core.publication(),
        PublicationStatus {
            shared: 5,
            indexed: 5,
            pending: 0,
            reason: None,
        }
    );
}

#[test]
fn a_removed_published_file_makes_room_for_the_next() {
    let mut s = attached(quiet(), &[(1, 10)], five_files(), 1);
    s.core
        .handle_message(s.now, s.session, SupernodeToLeaf::Limits(limits(3)));
    drain(&mut s.core);
    indexed(&mut s, 3, None);
    // A pending file removed: nothing to tell.
    s.core.handle_share_delta(ShareDelta {
        added: Vec::new(),
        removed: vec![entry("e.txt").content_id],
    });
    assert_eq!(drain(&mut s.core), Vec::new());
    s.core.handle_share_delta(ShareDelta {
        added: Vec::new(),
        removed: vec![entry("b.txt").content_id],
    });
    let messages: Vec<LeafToSupernode> = sent(&drain(&mut s.core))
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    assert_eq!(
        messages,
        vec![
            LeafToSupernode::Unpublish {
                content_ids: vec![entry("b.txt").content_id]
            },
            LeafToSupernode::Publish {
                entries: vec![entry("d.txt")]
            },
        ]
    );
    indexed(&mut s, 2, None);
    indexed(&mut s, 3, None);
    assert_eq!(
        s.core.publication(),
        PublicationStatus {
            shared: 3,
            indexed: 3,
            pending: 0,
            reason: None,
        }
    );
}

#[test]
fn a_publish_retry_waits_for_the_next_supernodes_limits() {
    let mut s = attached(quiet(), &[(1, 10), (2, 20)], five_files(), 1);
    s.core
        .handle_message(s.now, s.session, SupernodeToLeaf::Limits(limits(10)));
    drain(&mut s.core);
    indexed(&mut s, 0, Some("index full"));
    // Supernode 1 goes away; 2 welcomes us, and its Limits have not come yet when the
    // retry armed on 1 fires.
    let later = s.now + PUBLISH_RETRY - ms(1);
    s.core.handle_session_ended(later, s.session);
    let (_, session) = attach_of(&drain(&mut s.core)).unwrap();
    s.core
        .handle_attach(later, session, AttachOutcome::Welcomed);
    drain(&mut s.core);
    s.core.handle_timeout(s.now + PUBLISH_RETRY);
    assert_eq!(publishes(&drain(&mut s.core)), Vec::<Vec<String>>::new());
}
