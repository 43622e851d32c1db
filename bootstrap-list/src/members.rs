//! The receiving side of the membership: a mirror of one list server's member set, kept up
//! to date by pages, and the union of several servers' mirrors. No I/O: the driver
//! ([`crate::fetch_members`]) sends [`MemberSync::request`] and hands each answer to
//! [`MemberSync::apply`] until it says there is no more.
//!
//! Message flow with one list server:
//!
//! 1. At first (epoch 0, version 0, nothing known) we ask for the changes since 0. A server
//!    with another epoch, or one that no longer logs them all, answers with a snapshot page.
//! 2. Snapshot pages come in node-id order; we ask for the next one after the last id we
//!    got, and keep using the old set until the last page arrives, then swap.
//! 3. A snapshot is not atomic: members may come and go between its pages. So we then ask
//!    for the changes since the version of its *first* page: changes already reflected in
//!    later pages apply again harmlessly (each sets a node's final address or removes it).
//! 4. From then on, the changes since our version, one page or more per poll. A restarted
//!    server has a new epoch and answers with a snapshot: back to 2.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::net::SocketAddr;

use superpeer_common::NodeId;
use superpeer_common::wire::{MemberPage, ToListServer, WireError};

/// Most members we mirror from one list server. The list server caps its registry at
/// 10,000 by default; this leaves room for a larger one while bounding what a hostile
/// server can make us allocate.
pub const MAX_MIRRORED_MEMBERS: usize = 100_000;

/// A mirror of one list server's member set.
#[derive(Clone, Debug, Default)]
pub struct MemberSync {
    /// The server instance `members` came from (0 before the first sync).
    epoch: u64,
    /// The server's version that `members` reflects.
    version: u64,
    members: BTreeMap<NodeId, SocketAddr>,
    /// A snapshot being paged in; `members` stays in use until it completes.
    paging: Option<PartialSnapshot>,
}

#[derive(Clone, Debug)]
struct PartialSnapshot {
    epoch: u64,
    /// The version of its first page: the changes after it bring the snapshot up to date.
    version: u64,
    /// The members so far, in node-id order (the last one is the cursor).
    members: Vec<(NodeId, SocketAddr)>,
}

impl MemberSync {
    /// Knows nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The request to send next.
    pub fn request(&self) -> ToListServer {
        // While paging, the same epoch and version that earned the snapshot keep earning
        // its next pages; `after` moves the cursor.
        ToListServer::GetMembers {
            epoch: self.epoch,
            since: self.version,
            after: self
                .paging
                .as_ref()
                .and_then(|p| p.members.last())
                .map(|(id, _)| *id),
        }
    }

    /// Takes the answer to [`request`](Self::request). `Ok(true)`: ask again now (more
    /// pages, or changes made while a snapshot was paged in). A page that breaks the rules
    /// changes nothing we use and drops any snapshot being paged in.
    pub fn apply(&mut self, page: MemberPage) -> Result<bool, WireError> {
        page.validate()?;
        if page.more && page.changes.is_empty() {
            return Err(invalid("an empty member page that says more follows"));
        }
        let result = if page.snapshot {
            self.apply_snapshot_page(page)
        } else {
            self.apply_changes(page)
        };
        if result.is_err() {
            self.paging = None;
        }
        result
    }

    /// The members as of the last complete sync.
    pub fn members(&self) -> &BTreeMap<NodeId, SocketAddr> {
        &self.members
    }

    /// The list server instance the members came from (0 before the first sync).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The list server's version the members reflect.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether a snapshot is being paged in.
    pub fn is_paging(&self) -> bool {
        self.paging.is_some()
    }

    fn apply_snapshot_page(&mut self, page: MemberPage) -> Result<bool, WireError> {
        let mut partial = match self.paging.take() {
            Some(partial) if partial.epoch == page.epoch => partial,
            // The server restarted while we paged: its pages do not continue ours.
            Some(_) => return Ok(true),
            None => PartialSnapshot {
                epoch: page.epoch,
                version: page.version,
                members: Vec::new(),
            },
        };
        if page.version < partial.version {
            return Err(invalid("a snapshot page older than the snapshot's first"));
        }
        if partial.members.len() + page.changes.len() > MAX_MIRRORED_MEMBERS {
            return Err(invalid("a snapshot of too many members"));
        }
        let mut last = partial.members.last().map(|(id, _)| *id);
        for change in &page.changes {
            if last.is_some_and(|last| change.node_id <= last) {
                return Err(invalid("snapshot members out of node-id order"));
            }
            let Some(addr) = change.addr else {
                return Err(invalid("a snapshot member without an address"));
            };
            partial.members.push((change.node_id, addr));
            last = Some(change.node_id);
        }
        if page.more {
            self.paging = Some(partial);
            return Ok(true);
        }
        // Members came and went while we paged if the version moved: fetch those changes.
        let moved_on = page.version != partial.version;
        self.epoch = partial.epoch;
        self.version = partial.version;
        self.members = partial.members.into_iter().collect();
        Ok(moved_on)
    }

    fn apply_changes(&mut self, page: MemberPage) -> Result<bool, WireError> {
        // Changes answer our epoch and version (the server matched them), so they apply to
        // `members`; a snapshot in progress is no longer needed.
        if page.epoch != self.epoch {
            return Err(invalid("member changes from another list server instance"));
        }
        let Some(span) = page.version.checked_sub(self.version) else {
            return Err(invalid("member changes older than what we have"));
        };
        if page.changes.len() as u64 > span {
            return Err(invalid("more member changes than versions"));
        }
        let joining = page
            .changes
            .iter()
            .filter(|c| c.addr.is_some() && !self.members.contains_key(&c.node_id))
            .count();
        if self.members.len() + joining > MAX_MIRRORED_MEMBERS {
            return Err(invalid("member changes past the most members we mirror"));
        }
        self.paging = None;
        for change in page.changes {
            match change.addr {
                Some(addr) => self.members.insert(change.node_id, addr),
                None => self.members.remove(&change.node_id),
            };
        }
        self.version = page.version;
        Ok(page.more)
    }
}

fn invalid(reason: &str) -> WireError {
    WireError::Invalid(reason.to_owned())
}

/// How the union of the members changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipDelta {
    /// Members new to the union, or at a new address, in node-id order.
    pub joined: Vec<(NodeId, SocketAddr)>,
    /// Members no list server lists any more, in node-id order.
    pub left: Vec<NodeId>,
}

impl MembershipDelta {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty() && self.left.is_empty()
    }
}

/// The members listed by any of several list servers.
#[derive(Clone, Debug, Default)]
pub struct MemberUnion {
    members: BTreeMap<NodeId, SocketAddr>,
}

impl MemberUnion {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Recomputes the union from every server's mirror and says what changed. Where the
    /// servers disagree on a node's address, the one we already have wins while any server
    /// still says so (no flapping between two), else the first server's.
    pub fn update<'a>(
        &mut self,
        servers: impl IntoIterator<Item = &'a MemberSync>,
    ) -> MembershipDelta {
        let mut next: BTreeMap<NodeId, SocketAddr> = BTreeMap::new();
        for server in servers {
            for (id, addr) in server.members() {
                match next.entry(*id) {
                    Entry::Vacant(slot) => {
                        slot.insert(*addr);
                    }
                    Entry::Occupied(mut slot) => {
                        if self.members.get(id) == Some(addr) {
                            slot.insert(*addr);
                        }
                    }
                }
            }
        }
        let joined = next
            .iter()
            .filter(|(id, addr)| self.members.get(*id) != Some(*addr))
            .map(|(id, addr)| (*id, *addr))
            .collect();
        let left = self
            .members
            .keys()
            .filter(|id| !next.contains_key(*id))
            .copied()
            .collect();
        self.members = next;
        MembershipDelta { joined, left }
    }

    /// The union as of the last update.
    pub fn members(&self) -> &BTreeMap<NodeId, SocketAddr> {
        &self.members
    }
}

#[cfg(test)]
#[path = "members_tests.rs"]
mod tests;
