//! What a leaf has told its supernode about its files, and what it has not told yet.
//!
//! A supernode keeps at most `max_entries` entries per leaf (`LeafLimits`, 10,000 by
//! default: 500 leaves x 10,000 entries at ~270 B is 1.35 GB of index) and refuses a whole
//! publish that would pass it. So the leaf chooses what goes in, deliberately and the same
//! way every time: **files in name order** (then by content id), the first `max_entries` of
//! them. The rest wait, and go in as room frees up (a published file removed from the
//! folder). A publish the supernode refuses anyway (its index is full) is put back to wait
//! and tried again later. Every publish and unpublish is answered with how many entries the
//! supernode holds for us (`SupernodeToLeaf::Indexed`), in order, so the leaf knows exactly
//! which batch a refusal was for.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use superpeer_common::ContentId;
use superpeer_common::wire::{FileEntry, LeafToSupernode, MAX_ENTRIES_PER_MESSAGE};

use crate::names::printable;
use crate::share::ShareDelta;

/// The key files are chosen by: name order, then content id.
type Rank = (String, ContentId);

/// How the leaf's files stand with its supernode, for `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublicationStatus {
    /// Files (distinct contents) the shared folder offers.
    pub shared: usize,
    /// Of those, how many the supernode says it holds (as of its last answer).
    pub indexed: usize,
    /// Files not indexed yet: waiting for room, or refused.
    pub pending: usize,
    /// Why some files are not indexed, when they are not.
    pub reason: Option<String>,
}

/// The leaf's side of its index at the supernode.
pub struct Publication {
    /// Every shared entry, by content id.
    shared: HashMap<ContentId, FileEntry>,
    /// Shared entries in the order they are chosen.
    ranked: BTreeSet<Rank>,
    /// Sent to the current supernode (and not refused so far).
    published: HashSet<ContentId>,
    /// Changes sent and not yet answered, in order: the ids of a publish, or `None` for an
    /// unpublish.
    in_flight: VecDeque<Option<Vec<ContentId>>>,
    /// Most entries the supernode keeps for us.
    cap: usize,
    /// What the supernode last said it holds.
    indexed: usize,
    /// The last refusal, until a later publish is taken.
    refused: Option<String>,
}

impl Publication {
    pub fn new(entries: Vec<FileEntry>, cap: usize) -> Self {
        let mut publication = Self {
            shared: HashMap::new(),
            ranked: BTreeSet::new(),
            published: HashSet::new(),
            in_flight: VecDeque::new(),
            cap,
            indexed: 0,
            refused: None,
        };
        for entry in entries {
            publication.insert(entry);
        }
        publication
    }

    fn insert(&mut self, entry: FileEntry) {
        if let Some(old) = self.shared.remove(&entry.content_id) {
            self.ranked.remove(&(old.name, old.content_id));
        }
        self.ranked.insert((entry.name.clone(), entry.content_id));
        self.shared.insert(entry.content_id, entry);
    }

    /// A new supernode (or none): nothing is published there yet.
    pub fn reset(&mut self, cap: usize) {
        self.published.clear();
        self.in_flight.clear();
        self.cap = cap;
        self.indexed = 0;
        self.refused = None;
    }

    /// Every shared entry (for our own supernode, which has no cap for us).
    pub fn all(&self) -> Vec<FileEntry> {
        self.ranked
            .iter()
            .filter_map(|(_, id)| self.shared.get(id).cloned())
            .collect()
    }

    /// Number of shared entries.
    pub fn shared_len(&self) -> usize {
        self.shared.len()
    }

    /// The messages that publish what fits and is not published yet, in rank order.
    pub fn fill(&mut self) -> Vec<LeafToSupernode> {
        let room = self.cap.saturating_sub(self.published.len());
        let next: Vec<FileEntry> = self
            .ranked
            .iter()
            .filter(|(_, id)| !self.published.contains(id))
            .take(room)
            .filter_map(|(_, id)| self.shared.get(id).cloned())
            .collect();
        self.publish(next)
    }

    fn publish(&mut self, entries: Vec<FileEntry>) -> Vec<LeafToSupernode> {
        entries
            .chunks(MAX_ENTRIES_PER_MESSAGE)
            .map(|chunk| {
                let ids: Vec<ContentId> = chunk.iter().map(|e| e.content_id).collect();
                self.published.extend(ids.iter().copied());
                self.in_flight.push_back(Some(ids));
                LeafToSupernode::Publish {
                    entries: chunk.to_vec(),
                }
            })
            .collect()
    }

    /// The folder changed: the messages that bring the supernode up to date (`attached`:
    /// whether there is a supernode to tell at all).
    pub fn change(&mut self, delta: ShareDelta, attached: bool) -> Vec<LeafToSupernode> {
        let mut messages = Vec::new();
        let mut gone = Vec::new();
        for id in delta.removed {
            if let Some(old) = self.shared.remove(&id) {
                self.ranked.remove(&(old.name, old.content_id));
            }
            if self.published.remove(&id) {
                gone.push(id);
            }
        }
        // A renamed entry already published is published again (it replaces the name).
        let mut renamed = Vec::new();
        for entry in delta.added {
            if self.published.contains(&entry.content_id) {
                renamed.push(entry.clone());
            }
            self.insert(entry);
        }
        if !attached {
            return messages;
        }
        for chunk in gone.chunks(MAX_ENTRIES_PER_MESSAGE) {
            self.in_flight.push_back(None);
            messages.push(LeafToSupernode::Unpublish {
                content_ids: chunk.to_vec(),
            });
        }
        messages.extend(self.publish(renamed));
        messages.extend(self.fill());
        messages
    }

    /// The supernode's answer to the oldest change in flight.
    pub fn indexed(&mut self, entries: u32, refused: Option<String>) {
        self.indexed = entries as usize;
        let change = self.in_flight.pop_front().flatten();
        match refused {
            Some(reason) => {
                if let Some(ids) = change {
                    for id in ids {
                        self.published.remove(&id);
                    }
                }
                self.refused = Some(printable(&reason));
            }
            None if change.is_some() => self.refused = None,
            None => {}
        }
    }

    /// Tries again what was refused (its reason may be gone: other leaves left).
    pub fn retry(&mut self) -> Vec<LeafToSupernode> {
        if self.in_flight.is_empty() {
            self.fill()
        } else {
            Vec::new()
        }
    }

    pub fn status(&self, attached: bool) -> PublicationStatus {
        let shared = self.shared.len();
        let indexed = if attached {
            self.indexed.min(shared)
        } else {
            0
        };
        let pending = shared.saturating_sub(indexed);
        let reason = if pending == 0 {
            None
        } else if !attached {
            Some("not attached to a supernode".to_string())
        } else if let Some(refused) = &self.refused {
            Some(format!("the supernode refused a publish: {refused}"))
        } else if self.published.len() >= self.cap && self.cap < shared {
            Some(format!(
                "the supernode indexes at most {} files per leaf; the first {} in name order \
                 are published, the rest wait for room",
                self.cap, self.cap
            ))
        } else {
            Some("publishing".to_string())
        };
        PublicationStatus {
            shared,
            indexed,
            pending,
            reason,
        }
    }
}
