//! The registry state machine: which supernodes are listed, and what to hand out.
//!
//! No sockets, no timers, no clock: the driver passes `now` into every call and performs the
//! dial-backs this machine asks for. Message flow for one supernode:
//!
//! 1. `Register { advertise, load }` arrives → [`Registry::handle_register`]. A new node (or
//!    a known one at a new address) is kept *pending* and the answer is
//!    [`RegisterOutcome::DialBack`]: the driver dials `advertise` pinned to the node id.
//! 2. The dial-back's result → [`Registry::handle_dial_back`]. Only a success lists the node:
//!    an address nobody answers on, or answered by another key, is never handed out.
//! 3. `Heartbeat { load }` → [`Registry::handle_heartbeat`] refreshes it; an entry that
//!    misses heartbeats for [`RegistryConfig::expiry`] goes in [`Registry::handle_timeout`].
//! 4. Entries restored from disk ([`Registry::restore`]) are listed at once, marked stale,
//!    until the node registers again (or they expire).
//!
//! Every change to who is listed where (steps 2 to 4, unregistering) is also a membership
//! change, logged with a version for [`Registry::members_page`] (see `membership`).

use std::collections::btree_map::Entry as MapEntry;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};
use superpeer_common::NodeId;
use superpeer_common::wire::{Load, MemberPage, SupernodeInfo, SupernodeList};

use crate::membership::{Listing, Located};

/// Default of [`RegistryConfig::max_per_source`]: supernodes listed (or waiting for their
/// dial-back) per source address.
pub const DEFAULT_MAX_PER_SOURCE: usize = 4;

/// Default of [`RegistryConfig::max_capacity`]: twice a supernode's default `--max-leaves`
/// (500), so an honest big supernode still counts for more than a default one, but no claim
/// outweighs two of them.
pub const DEFAULT_MAX_CAPACITY: u32 = 1_000;

/// Tunables of the registry.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// How often supernodes are told to heartbeat.
    pub heartbeat_interval: Duration,
    /// An entry not heard from for this long is dropped.
    pub expiry: Duration,
    /// Most entries kept (listed and stale); further new registrations are refused.
    pub max_entries: usize,
    /// Most registrations waiting for their dial-back at once.
    pub max_pending: usize,
    /// A supernode with at least this share of its capacity in use counts as full.
    pub full_ratio: f64,
    /// The network is short of supernodes when the leaves use at least this share of the
    /// total capacity of listed supernodes.
    pub short_ratio: f64,
    /// Most entries (listed and pending) registered from one source address, so one host
    /// cannot fill the registry or crowd the lists with identities it makes up for free.
    /// A few: honest operators run one supernode per address, rarely more behind one NAT.
    pub max_per_source: usize,
    /// How long a registration may wait for its dial-back before its slot is freed.
    pub pending_timeout: Duration,
    /// Largest capacity believed of a supernode. Loads are self-reported: an absurd claim
    /// must not put a node first in every list or hide a shortage. A larger claim is scaled
    /// down with its leaves, so how full it says it is stays the same.
    pub max_capacity: u32,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(5),
            expiry: Duration::from_secs(20),
            max_entries: 10_000,
            max_pending: 256,
            full_ratio: 0.9,
            short_ratio: 0.8,
            max_per_source: DEFAULT_MAX_PER_SOURCE,
            pending_timeout: Duration::from_secs(15),
            max_capacity: DEFAULT_MAX_CAPACITY,
        }
    }
}

/// What the driver must do about a registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// Dial `addr` back, pinned to `node_id`, and report with [`Registry::handle_dial_back`].
    DialBack { node_id: NodeId, addr: SocketAddr },
    /// Already listed at this address: refreshed, nothing to do.
    Refreshed,
    /// A dial-back to this address is already under way.
    AlreadyPending,
    /// Not taken.
    Refused(RefuseReason),
}

/// Why a registration was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefuseReason {
    /// The registry holds [`RegistryConfig::max_entries`] already.
    #[error("the registry is full")]
    Full,
    /// [`RegistryConfig::max_pending`] dial-backs are under way.
    #[error("too many registrations waiting for dial-back; retry later")]
    TooManyPending,
    /// The advertised address cannot be dialled (port 0, unspecified or multicast IP).
    #[error("the advertised address cannot be dialled")]
    BadAddress,
    /// [`RegistryConfig::max_per_source`] entries already came from this address.
    #[error("too many supernodes registered from your address")]
    TooManyFromSource,
}

/// Whether a listed entry is confirmed in this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Freshness {
    /// Dialled back and heartbeating.
    Live,
    /// Restored from disk; not heard from since the restart.
    Stale,
}

#[derive(Clone, Debug)]
struct Listed {
    addr: SocketAddr,
    load: Load,
    last_seen: Instant,
    freshness: Freshness,
    /// The address it registered from (`None` when restored from disk).
    source: Option<IpAddr>,
}

impl Located for Listed {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Listed {
    /// The address whose weight this entry shares in the lists: where it registered from,
    /// or (restored from disk) the address it was verified at.
    fn weight_group(&self) -> IpAddr {
        self.source.unwrap_or(self.addr.ip())
    }
}

#[derive(Clone, Debug)]
struct Pending {
    addr: SocketAddr,
    load: Load,
    since: Instant,
    source: Option<IpAddr>,
}

/// An entry as saved to disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedEntry {
    /// The supernode.
    pub node_id: NodeId,
    /// Its verified address.
    pub addr: SocketAddr,
    /// Its last load.
    pub load: Load,
}

/// The registry of supernodes.
#[derive(Debug)]
pub struct Registry {
    config: RegistryConfig,
    /// Listed entries; every change to them is a logged membership change.
    listed: Listing<Listed>,
    pending: BTreeMap<NodeId, Pending>,
    /// Set when the listed set or an address changed, so the driver knows to save.
    dirty: bool,
}

impl Registry {
    /// An empty registry, with a random membership epoch: receivers of an earlier instance
    /// (before a restart) start again with a snapshot.
    pub fn new(config: RegistryConfig) -> Self {
        Self::with_epoch(config, rand::random())
    }

    /// An empty registry whose membership pages carry `epoch` (deterministic tests and
    /// simulations).
    pub fn with_epoch(config: RegistryConfig, epoch: u64) -> Self {
        Self {
            config,
            listed: Listing::new(epoch),
            pending: BTreeMap::new(),
            dirty: false,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// A supernode asks to be listed at `addr`. `node_id` is the one proven by the
    /// connection's handshake.
    pub fn handle_register(
        &mut self,
        now: Instant,
        node_id: NodeId,
        source: IpAddr,
        addr: SocketAddr,
        load: Load,
    ) -> RegisterOutcome {
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return RegisterOutcome::Refused(RefuseReason::BadAddress);
        }
        let load = self.clamp(load);
        let refreshed = self.listed.update(&node_id, |entry| {
            let same = entry.addr == addr && entry.freshness == Freshness::Live;
            if same {
                entry.load = load;
                entry.last_seen = now;
            }
            same
        });
        if refreshed == Some(true) {
            return RegisterOutcome::Refreshed;
        }
        if let Some(p) = self.pending.get_mut(&node_id) {
            if p.addr == addr {
                p.load = load;
                return RegisterOutcome::AlreadyPending;
            }
        }
        if self.pending.len() >= self.config.max_pending && !self.pending.contains_key(&node_id) {
            return RegisterOutcome::Refused(RefuseReason::TooManyPending);
        }
        let known = self.listed.contains_key(&node_id) || self.pending.contains_key(&node_id);
        if !known && self.listed.len() + self.pending.len() >= self.config.max_entries {
            return RegisterOutcome::Refused(RefuseReason::Full);
        }
        if !known && self.entries_from(source) >= self.config.max_per_source {
            return RegisterOutcome::Refused(RefuseReason::TooManyFromSource);
        }
        self.pending.insert(
            node_id,
            Pending {
                addr,
                load,
                since: now,
                source: Some(source),
            },
        );
        RegisterOutcome::DialBack { node_id, addr }
    }

    /// The dial-back to `addr` for `node_id` finished; `reached` is true only when the
    /// node id that answered there is `node_id`.
    pub fn handle_dial_back(
        &mut self,
        now: Instant,
        node_id: NodeId,
        addr: SocketAddr,
        reached: bool,
    ) -> bool {
        let MapEntry::Occupied(pending) = self.pending.entry(node_id) else {
            return false;
        };
        if pending.get().addr != addr {
            // A newer registration moved it elsewhere; that one has its own dial-back.
            return false;
        }
        let pending = pending.remove();
        if !reached {
            return false;
        }
        self.listed.insert(
            node_id,
            Listed {
                addr,
                load: pending.load,
                last_seen: now,
                freshness: Freshness::Live,
                source: pending.source,
            },
        );
        self.dirty = true;
        true
    }

    /// A heartbeat from a registered node. Returns false when the node is not listed live
    /// (expired, or restored and not registered again): it must register.
    pub fn handle_heartbeat(&mut self, now: Instant, node_id: NodeId, load: Load) -> bool {
        let load = self.clamp(load);
        let live = self.listed.update(&node_id, |entry| {
            let live = entry.freshness == Freshness::Live;
            if live {
                entry.load = load;
                entry.last_seen = now;
            }
            live
        });
        if live == Some(true) {
            return true;
        }
        if let Some(p) = self.pending.get_mut(&node_id) {
            p.load = load;
        }
        false
    }

    /// A node leaves the list on purpose.
    pub fn handle_unregister(&mut self, node_id: NodeId) {
        self.pending.remove(&node_id);
        if self.listed.remove(&node_id).is_some() {
            self.dirty = true;
        }
    }

    /// Drops what has not been heard from within the expiry; returns the dropped node ids.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<NodeId> {
        let expiry = self.config.expiry;
        let dropped = self
            .listed
            .retain(|_, e| now.saturating_duration_since(e.last_seen) < expiry);
        // A dial-back that never reported (driver bug, lost task) must not pin a slot forever.
        let pending_timeout = self.config.pending_timeout;
        self.pending
            .retain(|_, p| now.saturating_duration_since(p.since) < pending_timeout);
        if !dropped.is_empty() {
            self.dirty = true;
        }
        dropped
    }

    /// Up to `max` supernodes for an asker. Live entries with room come first, in a random
    /// order weighted by their spare capacity (so askers spread over them); then stale ones;
    /// then live ones that are full. An address's entries share one address's weight, so
    /// identities made up behind one address never outweigh a single supernode with the
    /// largest believed capacity. `made_at_ms` is the wall-clock time stamped on the list.
    pub fn select(&self, made_at_ms: u64, max: usize, rng: &mut impl Rng) -> SupernodeList {
        let mut per_address: HashMap<IpAddr, u32> = HashMap::new();
        for e in self.listed.values() {
            *per_address.entry(e.weight_group()).or_default() += 1;
        }
        let mut ranked: Vec<(u8, f64, SupernodeInfo)> = self
            .listed
            .iter()
            .map(|(id, e)| {
                let info = SupernodeInfo {
                    node_id: *id,
                    addr: e.addr,
                    load: e.load,
                    stale: e.freshness == Freshness::Stale,
                };
                let tier = match (e.freshness, self.is_full(&e.load)) {
                    (Freshness::Live, false) => 0,
                    (Freshness::Stale, _) => 1,
                    (Freshness::Live, true) => 2,
                };
                // Efraimidis-Spirakis: sorting by u^(1/w) descending samples without
                // replacement with probability proportional to the weight w.
                let spare = f64::from(e.load.capacity.saturating_sub(e.load.leaves).max(1));
                let sharing = per_address.get(&e.weight_group()).copied().unwrap_or(1);
                let weight = spare / f64::from(sharing.max(1));
                let key = rng.random::<f64>().powf(1.0 / weight);
                (tier, key, info)
            })
            .collect();
        ranked.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        ranked.truncate(max);
        SupernodeList {
            made_at_ms,
            supernodes: ranked.into_iter().map(|(_, _, info)| info).collect(),
            short_of_supernodes: self.short_of_supernodes(),
        }
    }

    /// A self-reported load within sane bounds.
    fn clamp(&self, load: Load) -> Load {
        let capacity = load.capacity.min(self.config.max_capacity);
        let leaves = load.leaves.min(load.capacity);
        // Scaled with the capacity, so a big supernode's share in use is kept.
        let leaves = if load.capacity > capacity {
            u64::from(leaves) * u64::from(capacity) / u64::from(load.capacity)
        } else {
            u64::from(leaves)
        };
        Load {
            leaves: u32::try_from(leaves).unwrap_or(capacity),
            capacity,
            neighbors: load.neighbors.min(100_000),
        }
    }

    /// Entries (listed and pending) that registered from `source`.
    fn entries_from(&self, source: IpAddr) -> usize {
        let listed = self
            .listed
            .values()
            .filter(|e| e.source == Some(source))
            .count();
        listed
            + self
                .pending
                .values()
                .filter(|p| p.source == Some(source))
                .count()
    }

    fn is_full(&self, load: &Load) -> bool {
        load.capacity == 0
            || f64::from(load.leaves) >= self.config.full_ratio * f64::from(load.capacity)
    }

    /// Whether the network needs more supernodes: none is live, every live one is (nearly)
    /// full, or the leaves they report use most of their total capacity.
    pub fn short_of_supernodes(&self) -> bool {
        let live: Vec<&Load> = self
            .listed
            .values()
            .filter(|e| e.freshness == Freshness::Live)
            .map(|e| &e.load)
            .collect();
        if live.is_empty() || live.iter().all(|l| self.is_full(l)) {
            return true;
        }
        let leaves: u64 = live.iter().map(|l| u64::from(l.leaves)).sum();
        let capacity: u64 = live.iter().map(|l| u64::from(l.capacity)).sum();
        leaves as f64 >= self.config.short_ratio * capacity as f64
    }

    /// Listed entries (live and stale).
    pub fn len(&self) -> usize {
        self.listed.len()
    }

    /// No entries listed.
    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// Registrations waiting for their dial-back.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// True once since the last call if the saved form changed.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The entries worth saving.
    pub fn snapshot(&self) -> Vec<SavedEntry> {
        let mut saved: Vec<SavedEntry> = self
            .listed
            .iter()
            .map(|(id, e)| SavedEntry {
                node_id: *id,
                addr: e.addr,
                load: e.load,
            })
            .collect();
        saved.sort_by_key(|e| e.node_id);
        saved
    }

    /// Lists saved entries at once, as stale, each with a full expiry to register again.
    pub fn restore(&mut self, now: Instant, saved: Vec<SavedEntry>) {
        for entry in saved
            .into_iter()
            .take(self.config.max_entries.saturating_sub(self.listed.len()))
        {
            if self.listed.contains_key(&entry.node_id) {
                continue;
            }
            let restored = Listed {
                addr: entry.addr,
                load: entry.load,
                last_seen: now,
                freshness: Freshness::Stale,
                source: None,
            };
            self.listed.insert(entry.node_id, restored);
        }
    }

    /// The answer to a membership request (`GetMembers { epoch, since, after }`) with at
    /// most `max` entries: the changes after `since` when `epoch` is this instance's and
    /// they are all still logged, else a page of the snapshot of members after `after`.
    /// Members are all listed entries, stale ones included.
    pub fn members_page(
        &self,
        epoch: u64,
        since: u64,
        after: Option<NodeId>,
        max: usize,
    ) -> MemberPage {
        self.listed.page(epoch, since, after, max)
    }

    /// This instance's membership epoch.
    pub fn members_epoch(&self) -> u64 {
        self.listed.epoch()
    }

    /// The membership version: how many membership changes this instance has made.
    pub fn members_version(&self) -> u64 {
        self.listed.version()
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "registry_members_tests.rs"]
mod members_tests;
