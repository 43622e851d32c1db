//! Supernodes coming and going: crashes, clean stops, leaves promoted by their cores'
//! election, and elected supernodes stepping back down.
//!
//! - Crash: the process is gone. Nothing is sent; each peer notices when the connection
//!   has been silent for its idle timeout (the smaller of both ends': 3 s with a leaf, 4 s
//!   between supernodes started as such) and reports the session ended (`handle_session_ended`
//!   at a leaf, `link_down` at a neighbour). The list server drops it when its heartbeats
//!   stop (the registry's expiry).
//! - Clean stop (the supernode driver's shutdown, and stepping down): `MoveTo` with ten
//!   other supernodes to every leaf, unregister, and 200 ms later every connection closed.
//! - Joining (`Faults::join`): new supernodes started as such, with no leaves, at the
//!   fault's time: they register, link, fetch the membership and become owners.
//! - Promotion (`LeafAction::StartSupernode`): a real `SupernodeCore` for the leaf's node
//!   (its id and address), seeded with the supernodes the leaf knew as peers (as the
//!   driver passes them), registered with the list server and ticking like any other; the
//!   core hears `handle_supernode_started` at once, then every 250 ms
//!   `handle_registrations` with how the registration stands (listed after the dial-back,
//!   which succeeds here) and its leaf count, as the driver's reporter does.
//! - Step-down (`LeafAction::StopSupernode`): a clean stop, then `handle_supernode_stopped`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use rand::seq::SliceRandom;
use superpeer_bootstrap_list::RegistrationStatus;
use superpeer_common::wire::{Holder, SupernodeToLeaf};
use superpeer_supernode::SupernodeCore;

use super::dynamics::Cause;
use super::ids::{leaf_addr, leaf_id};
use super::latency::Place;
use super::world::{Event, LEAF_IDLE, Node, NodeState, Peer, World};

/// How often the driver reports a running supernode's registrations to the core.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// How long a stopping supernode waits after telling its leaves before it closes.
const STOP_GRACE: Duration = Duration::from_millis(200);

/// Supernodes handed to each leaf of a stopping one.
const MOVE_TO: usize = 10;

/// The list server's address, as the registration reports name it.
pub const LIST_SERVER_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 255, 255, 254)), 7000);

impl World<'_> {
    /// The supernodes chosen to crash and to stop do, all at once.
    pub fn fault(&mut self) {
        let mut up: Vec<u32> = (0..self.started as u32)
            .filter(|&sn| self.nodes.get(sn as usize).is_some_and(Node::is_up))
            .collect();
        up.shuffle(&mut self.rng);
        let count = |share: f64| (share * self.started as f64).round() as usize;
        let crash = count(self.config.faults.crash).min(up.len());
        let stop = count(self.config.faults.stop).min(up.len() - crash);
        for &sn in up.iter().take(crash) {
            self.crash(sn);
        }
        for &sn in up.iter().skip(crash).take(stop) {
            self.stop_node(sn, Cause::Stop);
        }
        // New supernodes join: each starts as a daemon does, its list refresh at once.
        let at = self.queue.now();
        for sn in self.started..self.started + self.joining {
            let sn = sn as u32;
            if let Some(node) = self.nodes.get_mut(sn as usize) {
                node.refresh_from = at;
            }
            self.start(sn);
            self.queue
                .after(Duration::ZERO, Event::Fetch { sn, life: 1 });
        }
    }

    /// Supernode `sn` crashes: its peers hear silence.
    pub fn crash(&mut self, sn: u32) {
        let at = self.queue.now();
        let Some(node) = self.nodes.get_mut(sn as usize).filter(|n| n.is_up()) else {
            return;
        };
        node.state = NodeState::Down;
        let idle = node.idle;
        let id = node.me.node_id;
        let sessions = std::mem::take(&mut node.sessions);
        self.dynamics.crashed += 1;
        self.topology.changed();
        for peer in sessions.into_values() {
            match peer {
                Peer::Leaf { leaf, life, no } => {
                    self.leaves.unindexed(leaf, sn);
                    self.dynamics
                        .orphaned(self.leaves.get_mut(leaf), life, id, at, Cause::Crash);
                    let event = Event::LeafClosed { leaf, life, no };
                    self.queue.after(idle.min(LEAF_IDLE), event);
                }
                Peer::Neighbor { node, session } | Peer::Direct { node, session } => {
                    let theirs = self.nodes.get(node as usize).map_or(idle, |n| n.idle);
                    let event = Event::Gone { sn: node, session };
                    self.queue.after(idle.min(theirs), event);
                }
            }
        }
    }

    /// Supernode `sn` stops cleanly: its leaves are told where to go, it unregisters, and
    /// its connections close shortly after ([`Event::Stopped`]).
    pub fn stop_node(&mut self, sn: u32, cause: Cause) {
        let at = self.queue.now();
        let from = self.place(sn);
        let Some(node) = self.nodes.get_mut(sn as usize).filter(|n| n.is_up()) else {
            return;
        };
        // The driver's loop has ended: the core decides nothing more.
        node.state = NodeState::Down;
        let life = node.life;
        let id = node.me.node_id;
        let supernodes = node.core.supernode_list(MOVE_TO).supernodes;
        let leaves: Vec<(u32, u32, superpeer::leaf::SessionNo)> = node
            .sessions
            .values()
            .filter_map(|p| match *p {
                Peer::Leaf { leaf, life, no } => Some((leaf, life, no)),
                Peer::Neighbor { .. } | Peer::Direct { .. } => None,
            })
            .collect();
        if node.owner.is_none() {
            self.dynamics.stopped += 1;
        }
        self.topology.changed();
        for (leaf, life, no) in leaves {
            self.leaves.unindexed(leaf, sn);
            self.dynamics
                .orphaned(self.leaves.get_mut(leaf), life, id, at, cause);
            let msg = Box::new(SupernodeToLeaf::MoveTo {
                supernodes: supernodes.clone(),
            });
            let delay = self.latency.one_way(from, Place::Leaf(leaf));
            self.queue.after(
                delay,
                Event::ToLeaf {
                    leaf,
                    life,
                    no,
                    msg,
                },
            );
        }
        self.list.unregister(id);
        self.queue.after(STOP_GRACE, Event::Stopped { sn, life });
    }

    /// A stopping supernode closes its connections; an elected one's leaf core hears it has
    /// stopped.
    pub fn stopped(&mut self, sn: u32, life: u32) {
        let now = self.now();
        let from = self.place(sn);
        let Some(node) = self.nodes.get_mut(sn as usize).filter(|n| n.life == life) else {
            return;
        };
        if node.state != NodeState::Down {
            return; // up again already
        }
        let owner = node.owner;
        let sessions = std::mem::take(&mut node.sessions);
        for peer in sessions.into_values() {
            match peer {
                Peer::Leaf { leaf, life, no } => {
                    let delay = self.latency.one_way(from, Place::Leaf(leaf));
                    self.queue
                        .after(delay, Event::LeafClosed { leaf, life, no });
                }
                Peer::Neighbor { node, session } | Peer::Direct { node, session } => {
                    let delay = self.latency.one_way(from, self.place(node));
                    self.queue.after(delay, Event::Gone { sn: node, session });
                }
            }
        }
        if let Some(leaf) = owner {
            let leaf_life = self.leaves.life(leaf);
            if let Some(core) = self.leaves.core_mut(leaf, leaf_life) {
                core.handle_supernode_stopped(now);
                self.leaf_actions(leaf);
            }
        }
    }

    /// Leaf `n`'s core elected it: a supernode starts on its endpoint.
    pub fn promote(&mut self, n: u32, life: u32) {
        let now = self.now();
        let at = self.queue.now();
        let Some(leaf) = self.leaves.get(n) else {
            return;
        };
        let known = leaf.core().map(|c| c.known()).unwrap_or_default();
        let me = Holder {
            node_id: leaf_id(n),
            addr: leaf_addr(n),
            via: None,
        };
        let slot = match leaf.slot() {
            Some(sn) => sn,
            None => {
                let sn = self.nodes.len() as u32;
                let seed = self.seed_for(2, n, 1);
                let core = SupernodeCore::new(now, me, self.config.core.clone(), seed);
                self.nodes.push(Node::new(core, Some(n), 0.0));
                self.leaves.set_slot(n, sn);
                sn
            }
        };
        let Some(slot_life) = self.nodes.get(slot as usize).map(|node| node.life + 1) else {
            return;
        };
        let seed = self.seed_for(2, n, slot_life);
        let fresh =
            (slot_life > 1).then(|| SupernodeCore::new(now, me, self.config.core.clone(), seed));
        let Some(node) = self.nodes.get_mut(slot as usize) else {
            return;
        };
        if let Some(core) = fresh {
            node.core = core;
        }
        node.core.learn(now, &known);
        node.sessions.clear();
        node.members_version = 0;
        node.state = NodeState::Up;
        node.life = slot_life;
        node.registration = RegistrationStatus::Connecting;
        node.refresh_from = at;
        self.dynamics.elected(self.leaves.get_mut(n), at);
        self.topology.changed();
        let life_sn = slot_life;
        let to_list = self.latency.one_way(Place::Leaf(n), Place::ListServer);
        self.queue.after(
            to_list,
            Event::Register {
                sn: slot,
                life: life_sn,
            },
        );
        self.queue.after(
            self.config.tick,
            Event::Tick {
                sn: slot,
                life: life_sn,
            },
        );
        // The driver's refresh interval ticks at once.
        self.queue.after(
            Duration::ZERO,
            Event::Fetch {
                sn: slot,
                life: life_sn,
            },
        );
        self.queue.after(
            REPORT_EVERY,
            Event::Report {
                sn: slot,
                life: life_sn,
            },
        );
        self.follow_members(slot, life_sn);
        if let Some(core) = self.leaves.core_mut(n, life) {
            core.handle_supernode_started(now, Ok(()));
        }
        self.carry_out(slot);
    }

    /// Leaf `n`'s core steps down: its supernode stops cleanly, then the core hears it.
    pub fn step_down(&mut self, n: u32) {
        let now = self.now();
        let running = self
            .leaves
            .slot(n)
            .filter(|&sn| self.nodes.get(sn as usize).is_some_and(Node::is_up));
        let refused = running
            .and_then(|sn| self.nodes.get(sn as usize))
            .is_some_and(|node| matches!(node.registration, RegistrationStatus::Refused(_)));
        self.dynamics.stepped_down(refused);
        match running {
            Some(sn) => self.stop_node(sn, Cause::StepDown),
            None => {
                let life = self.leaves.life(n);
                if let Some(core) = self.leaves.core_mut(n, life) {
                    core.handle_supernode_stopped(now);
                }
                self.leaf_actions(n);
            }
        }
    }

    /// The list server's answer reaches supernode `sn`: its registration status.
    pub fn registration(&mut self, sn: u32, life: u32, status: RegistrationStatus) {
        if let Some(node) = self
            .nodes
            .get_mut(sn as usize)
            .filter(|n| n.is_up() && n.life == life)
        {
            node.registration = status;
        }
    }

    /// The driver's reporter: an elected supernode's registrations and leaves, to its core.
    pub fn report_registrations(&mut self, sn: u32, life: u32) {
        let now = self.now();
        let Some(node) = self
            .nodes
            .get(sn as usize)
            .filter(|n| n.is_up() && n.life == life)
        else {
            return;
        };
        let (Some(owner), status) = (node.owner, node.registration.clone()) else {
            return;
        };
        let leaves = node.core.load().leaves as usize;
        let owner_life = self.leaves.life(owner);
        if let Some(core) = self.leaves.core_mut(owner, owner_life) {
            core.handle_registrations(now, &[(LIST_SERVER_ADDR, status)], leaves);
            self.leaf_actions(owner);
        }
        self.queue.after(REPORT_EVERY, Event::Report { sn, life });
    }
}
