//! Leaves: each runs the daemon's own decisions, a [`LeafCore`], and the simulator keeps
//! what the node's driver would hold beside it: the sessions it has with supernodes (by the
//! core's session numbers), the one pending wakeup, and the slot of the supernode it runs
//! once elected. No joining rule lives here: which supernode to probe, attach to, leave or
//! become is the core's call (see `leaf_driver` for how its actions are carried out).
//!
//! A leaf's life, as the simulator runs it:
//! 1. It comes up ([`World::leaf_online`]) with a fresh core (a new process: no cached
//!    list; `SaveCache` is not modelled) sharing its files; the core fetches lists.
//!    With a [`Layout`](super::Layout) it has no list server, only its supernode there, as
//!    with `--peer`.
//! 2. Its core asks to look at the clock at `poll_timeout(now)`: the simulator keeps one
//!    pending wakeup per leaf, replaced only by an earlier one, and at a wakeup calls
//!    `handle_timeout` only if the core still says it is due (as the driver's `select!`
//!    does after recomputing its sleep).
//! 3. With churn it goes offline after an exponential session (saying goodbye on its
//!    sessions, letting its leaves go if it runs a supernode) and comes back after a
//!    quarter of the mean, with a new core.

use std::time::Duration;

use rand::Rng;
use superpeer::leaf::{ElectionConfig, LeafCore, LeafCoreConfig, SessionNo, Source};
use superpeer_common::wire::{Load, SupernodeInfo};
use superpeer_supernode::SessionId;

use super::dynamics::Cause;
use super::ids::leaf_id;
use super::world::{Event, World};

/// No supernode.
const NONE: u32 = u32::MAX;

/// A session of a leaf's driver with a supernode.
#[derive(Clone, Copy, Debug)]
pub struct LeafSession {
    /// The core's number for it.
    pub no: SessionNo,
    /// The supernode's slot.
    pub sn: u32,
    /// The supernode's session, once welcomed; `None` while attaching.
    pub session: Option<SessionId>,
}

/// One leaf: its core while online, and what its driver holds.
pub struct SimLeaf {
    core: Option<Box<LeafCore>>,
    /// Counts online periods (each runs a new core).
    life: u32,
    sessions: Vec<LeafSession>,
    /// The latest wakeup scheduled, and when.
    wake_seq: u32,
    wake_at: Option<Duration>,
    /// Its supernode slot, once it has been elected.
    slot: u32,
    /// The supernode whose index holds its files now, or `NONE`.
    indexed_at: u32,
    /// Lost its supernode (crash or stop) at this time, and not failed over yet.
    pub orphaned: Option<(Duration, Cause)>,
    /// Attached again since it was orphaned.
    pub reattached: bool,
    /// It shares files.
    sharer: bool,
}

impl SimLeaf {
    /// Online (its process runs).
    pub fn online(&self) -> bool {
        self.core.is_some()
    }

    /// Its core, while online.
    pub fn core(&self) -> Option<&LeafCore> {
        self.core.as_deref()
    }

    /// Its current life.
    pub fn life(&self) -> u32 {
        self.life
    }

    /// Whether it shares files.
    pub fn sharer(&self) -> bool {
        self.sharer
    }

    /// Its core, mutably, while online.
    pub fn core_mut(&mut self) -> Option<&mut LeafCore> {
        self.core.as_deref_mut()
    }

    /// Its supernode slot, if it ever was elected.
    pub fn slot(&self) -> Option<u32> {
        (self.slot != NONE).then_some(self.slot)
    }

    /// Welcomed sessions: (supernode slot, supernode session).
    pub fn open_sessions(&self) -> impl Iterator<Item = (u32, SessionId)> + '_ {
        self.sessions
            .iter()
            .filter_map(|s| s.session.map(|id| (s.sn, id)))
    }
}

/// Every leaf.
pub struct Leaves {
    all: Vec<SimLeaf>,
}

impl Leaves {
    /// `count` leaves, offline.
    pub fn new(count: usize) -> Self {
        let all = (0..count)
            .map(|_| SimLeaf {
                core: None,
                life: 0,
                sessions: Vec::new(),
                wake_seq: 0,
                wake_at: None,
                slot: NONE,
                indexed_at: NONE,
                orphaned: None,
                reattached: false,
                sharer: false,
            })
            .collect();
        Self { all }
    }

    /// Leaves in all.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Leaf `n`.
    pub fn get(&self, n: u32) -> Option<&SimLeaf> {
        self.all.get(n as usize)
    }

    /// Leaf `n`, mutably.
    pub fn get_mut(&mut self, n: u32) -> Option<&mut SimLeaf> {
        self.all.get_mut(n as usize)
    }

    /// Leaf `n`'s core, if it is online in its life `life`.
    pub fn core_mut(&mut self, n: u32, life: u32) -> Option<&mut LeafCore> {
        self.all
            .get_mut(n as usize)
            .filter(|l| l.life == life)
            .and_then(|l| l.core.as_deref_mut())
    }

    /// Leaf `n`'s current life.
    pub fn life(&self, n: u32) -> u32 {
        self.all.get(n as usize).map_or(0, |l| l.life)
    }

    /// Leaf `n`'s supernode slot, if it has one.
    pub fn slot(&self, n: u32) -> Option<u32> {
        self.all.get(n as usize).and_then(SimLeaf::slot)
    }

    /// Gives leaf `n` supernode slot `sn`.
    pub fn set_slot(&mut self, n: u32, sn: u32) {
        if let Some(leaf) = self.all.get_mut(n as usize) {
            leaf.slot = sn;
        }
    }

    /// Leaves online now.
    pub fn online_count(&self) -> usize {
        self.all.iter().filter(|l| l.online()).count()
    }

    /// The supernode whose index holds leaf `n`'s files.
    pub fn indexed_at(&self, n: u32) -> Option<u32> {
        self.all
            .get(n as usize)
            .map(|l| l.indexed_at)
            .filter(|&sn| sn != NONE)
    }

    /// Leaf `n`'s files are indexed at supernode `sn`.
    pub fn indexed(&mut self, n: u32, sn: u32) {
        if let Some(leaf) = self.all.get_mut(n as usize) {
            leaf.indexed_at = sn;
        }
    }

    /// Supernode `sn` dropped leaf `n`'s files.
    pub fn unindexed(&mut self, n: u32, sn: u32) {
        if let Some(leaf) = self.all.get_mut(n as usize)
            && leaf.indexed_at == sn
        {
            leaf.indexed_at = NONE;
        }
    }

    /// Leaf `n`'s session `no` in its life `life`.
    pub fn session(&self, n: u32, life: u32, no: SessionNo) -> Option<LeafSession> {
        let leaf = self.all.get(n as usize).filter(|l| l.life == life)?;
        leaf.sessions.iter().find(|s| s.no == no).copied()
    }

    /// Records a session (attaching) or its welcome.
    pub fn put_session(&mut self, n: u32, session: LeafSession) {
        if let Some(leaf) = self.all.get_mut(n as usize) {
            match leaf.sessions.iter_mut().find(|s| s.no == session.no) {
                Some(s) => *s = session,
                None => leaf.sessions.push(session),
            }
        }
    }

    /// Forgets session `no` of leaf `n` in its life `life`; returns it.
    pub fn take_session(&mut self, n: u32, life: u32, no: SessionNo) -> Option<LeafSession> {
        let leaf = self.all.get_mut(n as usize).filter(|l| l.life == life)?;
        let i = leaf.sessions.iter().position(|s| s.no == no)?;
        Some(leaf.sessions.swap_remove(i))
    }
}

/// An exponential draw with `mean`.
fn exponential(mean: Duration, rng: &mut impl Rng) -> Duration {
    let u: f64 = rng.random();
    mean.mul_f64(-(1.0 - u).ln())
}

impl World<'_> {
    /// The tunables of a simulated leaf: the daemon's (`superpeer leaf`), its election's
    /// waits scaled from `--promote-after`; with a layout, no list server and no election.
    fn leaf_config(&self) -> LeafCoreConfig {
        let laid_out = self.config.layout.is_some();
        LeafCoreConfig {
            election: ElectionConfig {
                enabled: self.config.election && !laid_out,
                ..ElectionConfig::with_min_uptime(self.config.promote_after)
            },
            max_leaves: self.config.core.max_leaves,
            list_servers: !laid_out,
            ..LeafCoreConfig::default()
        }
    }

    /// The initial population comes up one leaf after the other over the join period.
    pub fn join_next(&mut self, n: u32) {
        let count = self.leaves.len() as u32;
        self.leaf_online(n);
        if n + 1 < count {
            let step = self.timeline.join_spread / count.max(1);
            self.queue.after(step, Event::JoinNext(n + 1));
        }
    }

    /// Leaf `n`'s process starts: a new core.
    pub fn leaf_online(&mut self, n: u32) {
        let now = self.now();
        let config = self.leaf_config();
        let Some(life) = self.leaves.get(n).map(|l| l.life + 1) else {
            return;
        };
        let seed = self.seed_for(1, n, life);
        let share = self.workload.shares.get(n as usize);
        let entries = self.content.entries(share.map_or(&[][..], Vec::as_slice));
        let mut core = LeafCore::new(now, leaf_id(n), config, entries, seed);
        // Laid out: the leaf's one candidate is its supernode there (as `--peer` gives it).
        let home = self
            .config
            .layout
            .as_ref()
            .and_then(|l| l.homes.get(n as usize).copied());
        if let Some(me) = home
            .and_then(|h| self.nodes.get(h as usize))
            .map(|node| node.me)
        {
            let info = SupernodeInfo {
                node_id: me.node_id,
                addr: me.addr,
                load: Load::default(),
                stale: true,
            };
            core.handle_learned(now, &[info], Source::Peer);
        }
        if let Some(leaf) = self.leaves.get_mut(n) {
            leaf.life = life;
            leaf.sharer = share.is_some_and(|s| !s.is_empty());
            leaf.core = Some(Box::new(core));
            leaf.sessions.clear();
            leaf.wake_at = None;
        }
        if let Some(mean) = self.config.churn {
            let session = exponential(mean, &mut self.rng);
            self.queue
                .after(session, Event::LeafLeave { leaf: n, life });
        }
        self.leaf_actions(n);
    }

    /// Leaf `n`'s wakeup: the core looks at the clock if it is still due.
    pub fn wake(&mut self, n: u32, seq: u32) {
        let now = self.now();
        let Some(leaf) = self.leaves.get_mut(n) else {
            return;
        };
        if leaf.wake_seq != seq {
            return; // replaced by an earlier one
        }
        leaf.wake_at = None;
        let Some(core) = leaf.core.as_deref_mut() else {
            return;
        };
        // The driver sleeps until `poll_timeout` and looks at the clock only once it has
        // passed (events meanwhile may have moved it later).
        if core.poll_timeout(now) <= now {
            core.handle_timeout(now);
        }
        self.leaf_actions(n);
    }

    /// Schedules leaf `n`'s next wakeup if its core wants one earlier than the pending one.
    pub fn rearm(&mut self, n: u32) {
        let now = self.now();
        let clock = self.clock;
        let Some(leaf) = self.leaves.get_mut(n) else {
            return;
        };
        let Some(core) = leaf.core.as_deref() else {
            return;
        };
        let at = clock.offset(core.poll_timeout(now));
        if leaf.wake_at.is_some_and(|pending| pending <= at) {
            return;
        }
        leaf.wake_seq = leaf.wake_seq.wrapping_add(1);
        leaf.wake_at = Some(at);
        let seq = leaf.wake_seq;
        self.queue.at(at, Event::Wake { leaf: n, seq });
    }

    /// Leaf `n`'s process stops (churn): it says goodbye on its sessions and, running a
    /// supernode, lets its leaves go first; it comes back later.
    pub fn leaf_leave(&mut self, n: u32, life: u32) {
        let Some(leaf) = self.leaves.get(n).filter(|l| l.life == life && l.online()) else {
            return;
        };
        let sessions = leaf.sessions.clone();
        if let Some(sn) = leaf
            .slot()
            .filter(|&sn| self.nodes.get(sn as usize).is_some_and(|node| node.is_up()))
        {
            self.stop_node(sn, Cause::Stop);
        }
        for s in sessions {
            self.leaf_leave_session(n, life, s.no);
        }
        self.dynamics.left(self.leaves.get_mut(n));
        if let Some(leaf) = self.leaves.get_mut(n) {
            leaf.core = None;
            leaf.sessions.clear();
            leaf.wake_at = None;
        }
        let mean = self.config.churn.unwrap_or(Duration::from_secs(60)) / 4;
        let pause = exponential(mean, &mut self.rng);
        self.queue.after(pause, Event::LeafReturn(n));
    }

    /// Leaf `n` comes back online.
    pub fn leaf_return(&mut self, n: u32) {
        if self.leaves.get(n).is_some_and(|l| !l.online()) {
            self.leaf_online(n);
        }
    }
}
