//! The list server: the production [`Registry`] (registration, dial-back, heartbeats,
//! expiry, the shortage signal), the supernodes' side of it as the daemon's driver and
//! `keep_registered` do it (register, heartbeat at the registry's pace, register again when
//! a heartbeat is not taken or 5 s after a refusal, fetch lists of 100 supernodes every 2 s
//! for the first 30 s, then every 20 s), and the leaves' list fetches (50 supernodes).
//!
//! Which supernodes a list holds is the one thing modelled here, for speed: millions of
//! leaves ask, and [`Registry::select`] ranks the whole registry per request. The simulator
//! takes the registry's whole list every second (so membership, loads and staleness are
//! the registry's), sorts it by node id, and draws the entries handed out with its own
//! seeded generator, those with room first (the registry weights them by their room).
//! Whether the network is short of supernodes is the registry's own answer at the time of
//! the request. The dial-back succeeds whenever the supernode is running (every simulated
//! node is reachable). The same whole list, taken every second, is the membership the
//! supernodes follow for the keyword directory (see `membership`): every listed supernode.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use superpeer::leaf::Source;
use superpeer_bootstrap_list::{RegisterOutcome, RegistrationStatus, Registry, RegistryConfig};
use superpeer_common::NodeId;
use superpeer_common::wire::SupernodeInfo;

use super::latency::Place;
use super::membership::Membership;
use super::world::{Event, World};

/// Supernodes a driver asks the list server for (`driver.rs`, `fetch_into`).
const FETCH_MAX: usize = 100;
/// Supernodes a leaf asks for (`SUPERNODES_ASKED`).
const LEAF_FETCH: usize = 50;
/// The driver's list refresh while the overlay forms (`STARTUP_REFRESH`)...
const STARTUP_REFRESH: Duration = Duration::from_secs(2);
/// ...for this long (`STARTUP_PERIOD`)...
const STARTUP_PERIOD: Duration = Duration::from_secs(30);
/// ...and after that (`SupernodeConfig::refresh_interval`).
const REFRESH: Duration = Duration::from_secs(20);
/// Wait before registering again after a refusal (the registration session's interval
/// before the server named one).
const REGISTER_RETRY: Duration = Duration::from_secs(5);

/// The list server's state.
pub struct ListServer {
    registry: Registry,
    rng: StdRng,
    /// The registry's list, by node id; refreshed every list tick.
    snapshot: Vec<SupernodeInfo>,
    /// Positions in `snapshot` of the supernodes with room.
    with_room: Vec<usize>,
    /// The registry's shortage signal, until the registry changes.
    short: Option<bool>,
    /// The listed set as versions of the membership (see `membership`).
    pub members: Membership,
}

impl ListServer {
    /// A list server for up to `supernodes` supernodes.
    pub fn new(supernodes: usize, seed: u64) -> Self {
        let defaults = RegistryConfig::default();
        let config = RegistryConfig {
            max_entries: defaults.max_entries.max(supernodes),
            ..defaults
        };
        Self {
            registry: Registry::new(config),
            rng: StdRng::seed_from_u64(seed ^ 0x11_57),
            snapshot: Vec::new(),
            with_room: Vec::new(),
            short: None,
            members: Membership::default(),
        }
    }

    /// Whether the network is short of supernodes, as the registry says now.
    pub fn short(&mut self) -> bool {
        let registry = &self.registry;
        *self
            .short
            .get_or_insert_with(|| registry.short_of_supernodes())
    }

    /// A supernode leaves the list on purpose.
    pub fn unregister(&mut self, node_id: NodeId) {
        self.registry.handle_unregister(node_id);
        self.short = None;
    }

    /// Supernodes listed now.
    pub fn listed(&self) -> usize {
        self.snapshot.len()
    }

    /// Up to `max` listed supernodes drawn with `rng`, those with room first.
    pub fn sample(&self, max: usize, rng: &mut impl Rng) -> Vec<SupernodeInfo> {
        if self.snapshot.len() <= max {
            return self.snapshot.clone();
        }
        let mut picked: Vec<SupernodeInfo> = pick(&self.with_room, max, rng)
            .filter_map(|i| self.snapshot.get(i).copied())
            .collect();
        while picked.len() < max {
            let i = rng.random_range(0..self.snapshot.len());
            if let Some(info) = self.snapshot.get(i) {
                if !picked.iter().any(|p| p.node_id == info.node_id) {
                    picked.push(*info);
                }
            }
        }
        picked
    }

    fn refresh(&mut self, unix_ms: u64) {
        let list = self.registry.select(unix_ms, usize::MAX, &mut self.rng);
        let mut infos = list.supernodes;
        infos.sort_by_key(|info| info.node_id);
        self.short = None;
        self.with_room = infos
            .iter()
            .enumerate()
            .filter(|(_, info)| info.load.leaves < info.load.capacity)
            .map(|(i, _)| i)
            .collect();
        self.members
            .update(infos.iter().map(|info| (info.node_id, info.addr)));
        self.snapshot = infos;
    }
}

/// Up to `max` distinct elements of `from`, drawn with `rng`.
fn pick<'a>(from: &'a [usize], max: usize, rng: &mut impl Rng) -> impl Iterator<Item = usize> + 'a {
    let count = max.min(from.len());
    rand::seq::index::sample(rng, from.len(), count)
        .into_iter()
        .filter_map(move |i| from.get(i).copied())
}

impl World<'_> {
    fn to_list_server(&self, sn: u32) -> Duration {
        self.latency.one_way(self.place(sn), Place::ListServer)
    }

    /// The list server's answer reaches supernode `sn` after the one-way delay.
    fn answer_registration(&mut self, sn: u32, life: u32, status: RegistrationStatus) {
        let delay = self.to_list_server(sn);
        let status = Box::new(status);
        self.queue
            .after(delay, Event::Registration { sn, life, status });
    }

    /// A registration reaches the list server.
    pub fn register(&mut self, sn: u32, life: u32) {
        let now = self.now();
        if !self.is_live(sn, life) {
            return;
        }
        let Some(node) = self.nodes.get(sn as usize) else {
            return;
        };
        let (me, load) = (node.me, node.core.load());
        let outcome =
            self.list
                .registry
                .handle_register(now, me.node_id, me.addr.ip(), me.addr, load);
        self.list.short = None;
        match outcome {
            RegisterOutcome::DialBack { .. } => {
                // A QUIC handshake and a probe: about two round trips.
                let delay = self.to_list_server(sn) * 4;
                self.queue.after(delay, Event::DialBack { sn, life });
            }
            RegisterOutcome::Refreshed => {
                let status = RegistrationStatus::Registered { listed: true };
                self.answer_registration(sn, life, status);
            }
            RegisterOutcome::AlreadyPending => {
                let status = RegistrationStatus::Registered { listed: false };
                self.answer_registration(sn, life, status);
            }
            RegisterOutcome::Refused(reason) => {
                let status = RegistrationStatus::Refused(reason.to_string());
                self.answer_registration(sn, life, status);
                let delay = REGISTER_RETRY + self.to_list_server(sn) * 2;
                self.queue.after(delay, Event::Register { sn, life });
            }
        }
    }

    /// The dial-back to a registering supernode came back.
    pub fn dial_back(&mut self, sn: u32, life: u32) {
        let now = self.now();
        let reached = self.is_live(sn, life);
        let Some(me) = self.nodes.get(sn as usize).map(|n| n.me) else {
            return;
        };
        let listed = self
            .list
            .registry
            .handle_dial_back(now, me.node_id, me.addr, reached);
        self.list.short = None;
        if !reached {
            return;
        }
        let status = if listed {
            let every = self.list.registry.config().heartbeat_interval;
            self.queue.after(every, Event::Heartbeat { sn, life });
            RegistrationStatus::Registered { listed: true }
        } else {
            let delay = REGISTER_RETRY + self.to_list_server(sn) * 2;
            self.queue.after(delay, Event::Register { sn, life });
            RegistrationStatus::Refused("dial-back failed".into())
        };
        self.answer_registration(sn, life, status);
    }

    /// A heartbeat reaches the list server.
    pub fn heartbeat(&mut self, sn: u32, life: u32) {
        let now = self.now();
        if !self.is_live(sn, life) {
            return;
        }
        let Some(node) = self.nodes.get(sn as usize) else {
            return;
        };
        let (id, load) = (node.me.node_id, node.core.load());
        self.list.short = None;
        if self.list.registry.handle_heartbeat(now, id, load) {
            let every = self.list.registry.config().heartbeat_interval;
            self.queue.after(every, Event::Heartbeat { sn, life });
        } else {
            let delay = self.to_list_server(sn) * 2;
            self.queue.after(delay, Event::Register { sn, life });
        }
    }

    /// A supernode's list request is answered: its core learns the supernodes.
    pub fn fetch(&mut self, sn: u32, life: u32) {
        let now = self.now();
        if !self.is_live(sn, life) {
            return;
        }
        let list = self.list.sample(FETCH_MAX, &mut self.rng);
        let Some(node) = self.nodes.get_mut(sn as usize) else {
            return;
        };
        let me = node.me.node_id;
        let others: Vec<SupernodeInfo> =
            list.into_iter().filter(|info| info.node_id != me).collect();
        node.core.learn(now, &others);
        let since = self.queue.now().saturating_sub(node.refresh_from);
        self.carry_out(sn);
        let next = if since < STARTUP_PERIOD {
            STARTUP_REFRESH
        } else {
            REFRESH
        };
        self.queue.after(next, Event::Fetch { sn, life });
    }

    /// The list server's answer reaches leaf `n`.
    pub fn list_answer(&mut self, n: u32, life: u32) {
        let now = self.now();
        if self.leaves.core_mut(n, life).is_none() {
            return;
        }
        let infos = self.list.sample(LEAF_FETCH, &mut self.rng);
        let short = self.list.short();
        if let Some(core) = self.leaves.core_mut(n, life) {
            core.handle_learned(now, &infos, Source::ListServer { short });
        }
        self.leaf_actions(n);
    }

    /// The list server's clock: expiry, and the list it hands out.
    pub fn list_tick(&mut self) {
        let now = self.now();
        self.list.registry.handle_timeout(now);
        self.list.refresh(self.clock.unix_ms(self.queue.now()));
        self.queue.after(Duration::from_secs(1), Event::ListTick);
    }
}
