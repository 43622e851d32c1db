//! The listed entries and the versioned log of who is listed where: the membership every
//! supernode mirrors so they all compute the same keyword owners.
//!
//! [`Listing`] owns the registry's listed entries. Every way of changing them (insert,
//! remove, retain, update) goes through it and is recorded, so no code path of the registry
//! can change the member set without telling the receivers. Each change bumps `version` and
//! is appended to a bounded log; a receiver that asks with the instance's `epoch` and a
//! `since` the log still covers gets the changes after it, anyone else a snapshot in node-id
//! order, in pages. Version 0 is the empty set, so all changes since 0 rebuild the whole set.

use std::collections::{BTreeMap, VecDeque, btree_map};
use std::net::SocketAddr;
use std::ops::Bound;

use superpeer_common::NodeId;
use superpeer_common::wire::{MAX_MEMBERS_PER_PAGE, MemberChange, MemberPage};

/// Fewest changes the log keeps, however few the members: a receiver that polls every few
/// seconds gets deltas through a burst of churn in a small network.
const MIN_LOG_LEN: usize = 1_000;

/// The log keeps this many changes per member, so a receiver that missed a few minutes of
/// normal churn still gets deltas rather than a whole snapshot.
const LOG_LEN_PER_MEMBER: usize = 4;

/// Something listed at an address.
pub(crate) trait Located {
    fn addr(&self) -> SocketAddr;
}

impl Located for SocketAddr {
    fn addr(&self) -> SocketAddr {
        *self
    }
}

/// Entries by node id, with a log of every change to who is listed at which address.
#[derive(Debug)]
pub(crate) struct Listing<T> {
    entries: BTreeMap<NodeId, T>,
    epoch: u64,
    /// The number of changes ever recorded in this instance.
    version: u64,
    /// `(version, change)`, oldest first, versions consecutive.
    log: VecDeque<(u64, MemberChange)>,
    /// Every change after this version is in `log`; a `since` below it cannot be answered.
    oldest_since: u64,
}

impl<T: Located> Listing<T> {
    /// Empty, at version 0, in instance `epoch`.
    pub(crate) fn new(epoch: u64) -> Self {
        Self {
            entries: BTreeMap::new(),
            epoch,
            version: 0,
            log: VecDeque::new(),
            oldest_since: 0,
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    pub(crate) fn contains_key(&self, id: &NodeId) -> bool {
        self.entries.contains_key(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn iter(&self) -> btree_map::Iter<'_, NodeId, T> {
        self.entries.iter()
    }

    pub(crate) fn values(&self) -> btree_map::Values<'_, NodeId, T> {
        self.entries.values()
    }

    /// Lists `entry` under `id`, recorded when the node is new here or at a new address.
    pub(crate) fn insert(&mut self, id: NodeId, entry: T) -> Option<T> {
        let addr = entry.addr();
        let old = self.entries.insert(id, entry);
        if old.as_ref().map(Located::addr) != Some(addr) {
            self.record(id, Some(addr));
        }
        old
    }

    /// Changes the entry of `id` in place (if listed); an address changed by `change` is
    /// recorded like any other move.
    pub(crate) fn update<R>(&mut self, id: &NodeId, change: impl FnOnce(&mut T) -> R) -> Option<R> {
        let entry = self.entries.get_mut(id)?;
        let before = entry.addr();
        let result = change(entry);
        let after = entry.addr();
        if after != before {
            self.record(*id, Some(after));
        }
        Some(result)
    }

    pub(crate) fn remove(&mut self, id: &NodeId) -> Option<T> {
        let old = self.entries.remove(id)?;
        self.record(*id, None);
        Some(old)
    }

    /// Keeps the entries `keep` says yes to; returns the ids of the others, now gone.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&NodeId, &T) -> bool) -> Vec<NodeId> {
        let mut dropped = Vec::new();
        self.entries.retain(|id, e| {
            let kept = keep(id, e);
            if !kept {
                dropped.push(*id);
            }
            kept
        });
        for id in &dropped {
            self.record(*id, None);
        }
        dropped
    }

    fn record(&mut self, node_id: NodeId, addr: Option<SocketAddr>) {
        self.version += 1;
        self.log
            .push_back((self.version, MemberChange { node_id, addr }));
        let cap = (self.entries.len() * LOG_LEN_PER_MEMBER).max(MIN_LOG_LEN);
        while self.log.len() > cap {
            if let Some((version, _)) = self.log.pop_front() {
                self.oldest_since = version;
            }
        }
    }

    /// The answer to `GetMembers { epoch, since, after }`, with at most `max` entries: the
    /// changes after `since` if `epoch` is ours and the log still holds them all, else a
    /// snapshot page of the members after `after`.
    pub(crate) fn page(
        &self,
        epoch: u64,
        since: u64,
        after: Option<NodeId>,
        max: usize,
    ) -> MemberPage {
        // Never an empty page that says "more": the receiver would ask the same forever.
        let max = max.clamp(1, MAX_MEMBERS_PER_PAGE);
        if epoch == self.epoch && (self.oldest_since..=self.version).contains(&since) {
            self.changes_since(since, max)
        } else {
            self.snapshot_after(after, max)
        }
    }

    fn changes_since(&self, since: u64, max: usize) -> MemberPage {
        let start = self.log.partition_point(|(version, _)| *version <= since);
        let included: Vec<&(u64, MemberChange)> = self.log.range(start..).take(max).collect();
        MemberPage {
            epoch: self.epoch,
            version: included
                .last()
                .map_or(self.version, |(version, _)| *version),
            snapshot: false,
            more: start + included.len() < self.log.len(),
            changes: included.into_iter().map(|(_, change)| *change).collect(),
        }
    }

    fn snapshot_after(&self, after: Option<NodeId>, max: usize) -> MemberPage {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut rest = self.entries.range((from, Bound::Unbounded));
        let changes = rest
            .by_ref()
            .take(max)
            .map(|(id, e)| MemberChange {
                node_id: *id,
                addr: Some(e.addr()),
            })
            .collect();
        MemberPage {
            epoch: self.epoch,
            version: self.version,
            snapshot: true,
            changes,
            more: rest.next().is_some(),
        }
    }
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
