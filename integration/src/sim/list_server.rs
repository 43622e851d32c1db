//! The list server: the production [`Registry`] (registration, dial-back, heartbeats,
//! expiry), and the supernodes' side of it as the daemon's driver and `keep_registered` do
//! it: register, heartbeat at the registry's pace, register again when a heartbeat is not
//! taken, and fetch lists of 100 supernodes every 2 s at first, then every 20 s.
//!
//! Which supernodes a list holds is the one thing modelled here, for speed: millions of
//! leaves ask, and [`Registry::select`] ranks the whole registry per request. The simulator
//! takes the registry's whole list every so often (so membership, loads and staleness are
//! the registry's), sorts it by node id, and draws the entries handed out with its own
//! seeded generator, those with room first (the registry weights them by their room).

use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use superpeer_bootstrap_list::{RegisterOutcome, Registry, RegistryConfig};
use superpeer_common::wire::SupernodeInfo;

use super::ids::{supernode_addr, supernode_id, supernode_number};
use super::latency::Place;
use super::world::{Event, World};

/// Supernodes a driver asks the list server for (`driver.rs`, `fetch_into`).
const FETCH_MAX: usize = 100;
/// The driver's list refresh while the overlay forms (`STARTUP_REFRESH`)...
const STARTUP_REFRESH: Duration = Duration::from_secs(2);
/// ...for this long (`STARTUP_PERIOD`)...
const STARTUP_PERIOD: Duration = Duration::from_secs(30);
/// ...and after that (`SupernodeConfig::refresh_interval`).
const REFRESH: Duration = Duration::from_secs(20);
/// Wait before registering again after a refusal (`keep_registered` backs off 0.25-5 s).
const REGISTER_RETRY: Duration = Duration::from_secs(1);

/// The list server's state.
pub struct ListServer {
    registry: Registry,
    rng: StdRng,
    /// The registry's list, by node id; refreshed every list tick.
    snapshot: Vec<SupernodeInfo>,
    /// Positions in `snapshot` of the supernodes with room.
    with_room: Vec<usize>,
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
        }
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
        self.with_room = infos
            .iter()
            .enumerate()
            .filter(|(_, info)| info.load.leaves < info.load.capacity)
            .map(|(i, _)| i)
            .collect();
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
        self.latency
            .one_way(Place::Supernode(sn), Place::ListServer)
    }

    /// A registration reaches the list server.
    pub fn register(&mut self, sn: u32) {
        let now = self.now();
        let Some(node) = self.nodes.get(sn as usize) else {
            return;
        };
        let addr: SocketAddr = supernode_addr(sn);
        let outcome = self.list.registry.handle_register(
            now,
            supernode_id(sn),
            addr.ip(),
            addr,
            node.core.load(),
        );
        match outcome {
            RegisterOutcome::DialBack { .. } => {
                // A QUIC handshake and a probe: about two round trips.
                let delay = self.to_list_server(sn) * 4;
                self.queue.after(delay, Event::DialBack(sn));
            }
            RegisterOutcome::Refreshed | RegisterOutcome::AlreadyPending => {}
            RegisterOutcome::Refused(_) => {
                let delay = REGISTER_RETRY.mul_f64(1.0 + self.rng.random::<f64>());
                self.queue.after(delay, Event::Register(sn));
            }
        }
    }

    /// The dial-back to a registering supernode came back.
    pub fn dial_back(&mut self, sn: u32) {
        let now = self.now();
        let reached = self.nodes.get(sn as usize).is_some_and(|n| n.started);
        let listed =
            self.list
                .registry
                .handle_dial_back(now, supernode_id(sn), supernode_addr(sn), reached);
        if listed {
            let every = self.list.registry.config().heartbeat_interval;
            self.queue.after(every, Event::Heartbeat(sn));
        }
    }

    /// A heartbeat reaches the list server.
    pub fn heartbeat(&mut self, sn: u32) {
        let now = self.now();
        let Some(node) = self.nodes.get(sn as usize) else {
            return;
        };
        let load = node.core.load();
        if self
            .list
            .registry
            .handle_heartbeat(now, supernode_id(sn), load)
        {
            let every = self.list.registry.config().heartbeat_interval;
            self.queue.after(every, Event::Heartbeat(sn));
        } else {
            let delay = self.to_list_server(sn) * 2;
            self.queue.after(delay, Event::Register(sn));
        }
    }

    /// A supernode's list request is answered: its core learns the supernodes.
    pub fn fetch(&mut self, sn: u32) {
        let now = self.now();
        let list = self.list.sample(FETCH_MAX, &mut self.rng);
        let Some(node) = self.nodes.get_mut(sn as usize) else {
            return;
        };
        let others: Vec<SupernodeInfo> = list
            .into_iter()
            .filter(|info| supernode_number(&info.node_id) != Some(sn))
            .collect();
        node.core.learn(now, &others);
        self.carry_out(sn);
        let since_mesh = self.queue.now().saturating_sub(self.timeline.mesh);
        let next = if since_mesh < STARTUP_PERIOD {
            STARTUP_REFRESH
        } else {
            REFRESH
        };
        self.queue.after(next, Event::Fetch(sn));
    }

    /// The list server's clock: expiry, and the list it hands out.
    pub fn list_tick(&mut self) {
        let now = self.now();
        self.list.registry.handle_timeout(now);
        self.list.refresh(self.clock.unix_ms(self.queue.now()));
        self.queue.after(Duration::from_secs(1), Event::ListTick);
    }
}
