//! When a leaf elects itself supernode, and when an elected supernode steps back down: a
//! plain state machine, time and randomness passed in, no sockets.
//!
//! Promote when all of these hold:
//! - election is on, and the node has the capacity (`max_leaves` of at least
//!   [`ElectionConfig::min_capacity`]);
//! - it has been up [`ElectionConfig::min_uptime`] (a node that comes and goes makes a bad
//!   supernode), and is not in a cooldown after stepping down or a failed promotion;
//! - the network has been short of supernodes for [`ElectionConfig::shortage_for`]: a fresh
//!   list-server answer says so, or, with no fresh answer to go by, we are not attached and
//!   supernodes keep refusing us as full;
//! - a random delay (up to [`ElectionConfig::jitter`]) has passed since then, and a fresh
//!   list-server answer still says so (when we have list servers): so that the leaves that
//!   all see the same shortage do not all promote at once, and the first one's promotion
//!   ends the others' wait.
//!
//! Reachability is confirmed by the promotion itself: the list server dials the new
//! supernode back before listing it, and a promotion no list server confirms is undone at
//! once ([`Election::promotion_failed`]), followed by a cooldown.
//!
//! Step down when an elected supernode has had at most
//! [`ElectionConfig::underused_leaves`] leaves for [`ElectionConfig::demote_after`] while the
//! network has room (not short) and more than [`ElectionConfig::min_supernodes`]
//! supernodes; its leaves are told where to go. A node promoted by hand is never demoted
//! automatically. Promotion needs a shortage and demotion its absence plus a long grace and
//! a cooldown after, so the two cannot chase each other.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The election's tunables.
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    /// Whether this node may promote itself at all.
    pub enabled: bool,
    /// Up at least this long before promoting.
    pub min_uptime: Duration,
    /// A shortage must last this long before it counts.
    pub shortage_for: Duration,
    /// Longest random wait once the conditions hold.
    pub jitter: Duration,
    /// A list-server answer older than this does not count as current.
    pub fresh_for: Duration,
    /// Least leaf capacity worth promoting with.
    pub min_capacity: usize,
    /// After stepping down or a failed promotion, no promotion for this long.
    pub cooldown: Duration,
    /// An elected supernode with at most this many leaves is underused.
    pub underused_leaves: u32,
    /// How long it must stay underused before it steps down.
    pub demote_after: Duration,
    /// Never step down while the network has this many supernodes or fewer.
    pub min_supernodes: usize,
}

impl ElectionConfig {
    /// Defaults, with the uptime a leaf must have before promoting: the other waits scale
    /// with it (capped), so a test network or `testnet` can elect within seconds.
    pub fn with_min_uptime(min_uptime: Duration) -> Self {
        let cap = |d: Duration| d.min(Duration::from_secs(10));
        ElectionConfig {
            enabled: true,
            min_uptime,
            shortage_for: cap(min_uptime / 2),
            jitter: cap(min_uptime),
            fresh_for: Duration::from_secs(5),
            min_capacity: 8,
            cooldown: Duration::from_secs(300),
            underused_leaves: 1,
            demote_after: Duration::from_secs(180),
            min_supernodes: 2,
        }
    }
}

impl Default for ElectionConfig {
    fn default() -> Self {
        Self::with_min_uptime(Duration::from_secs(60))
    }
}

/// What the node should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Become a supernode.
    Promote,
    /// Step back down to leaf.
    Demote,
    /// Ask the list servers now: the decision waits for a fresh answer.
    AskListServers,
}

/// What the node is, as far as the election cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Leaf,
    Elected,
    ByHand,
}

/// The election state machine. See the module docs.
#[derive(Debug)]
pub struct Election {
    config: ElectionConfig,
    capacity: usize,
    started: Instant,
    role: Role,
    rng: StdRng,
    /// The last list-server answer: when, whether short, how many supernodes it listed.
    answer: Option<(Instant, bool, usize)>,
    /// The last time a supernode refused us as full.
    refused: Option<Instant>,
    attached: bool,
    short_since: Option<Instant>,
    /// When the random wait ends.
    fire_at: Option<Instant>,
    /// Asked the list servers for the final check; waiting for the answer.
    asked: Option<Instant>,
    cooldown_until: Option<Instant>,
    underused_since: Option<Instant>,
}

impl Election {
    /// A node with `capacity` leaves to offer, started at `now`.
    pub fn new(now: Instant, config: ElectionConfig, capacity: usize, seed: u64) -> Self {
        Election {
            config,
            capacity,
            started: now,
            role: Role::Leaf,
            rng: StdRng::seed_from_u64(seed),
            answer: None,
            refused: None,
            attached: false,
            short_since: None,
            fire_at: None,
            asked: None,
            cooldown_until: None,
            underused_since: None,
        }
    }

    /// A list server answered: whether the network is short, and how many supernodes it
    /// listed.
    pub fn list_answer(&mut self, now: Instant, short: bool, supernodes: usize) {
        self.answer = Some((now, short, supernodes));
    }

    /// A supernode refused us as full.
    pub fn refused_full(&mut self, now: Instant) {
        self.refused = Some(now);
    }

    /// Whether we are attached to a supernode (as a leaf).
    pub fn set_attached(&mut self, attached: bool) {
        self.attached = attached;
    }

    /// We became a supernode, by election or by hand.
    pub fn promoted(&mut self, by_hand: bool) {
        self.role = if by_hand { Role::ByHand } else { Role::Elected };
        self.reset_wait();
        self.underused_since = None;
    }

    /// No list server would list us: we are a leaf again, and wait before trying again.
    pub fn promotion_failed(&mut self, now: Instant) {
        self.demoted(now);
    }

    /// We stepped back down to leaf.
    pub fn demoted(&mut self, now: Instant) {
        self.role = Role::Leaf;
        self.cooldown_until = Some(now + self.config.cooldown);
        self.reset_wait();
        self.underused_since = None;
    }

    /// As a supernode: how many leaves we have now.
    pub fn own_leaves(&mut self, now: Instant, leaves: u32) {
        let room = self.answer.is_some_and(|(at, short, count)| {
            now.duration_since(at) <= self.config.fresh_for
                && !short
                && count > self.config.min_supernodes
        });
        if self.role == Role::Elected && leaves <= self.config.underused_leaves && room {
            self.underused_since.get_or_insert(now);
        } else {
            self.underused_since = None;
        }
    }

    /// What to do now, if anything.
    pub fn poll(&mut self, now: Instant) -> Option<Decision> {
        match self.role {
            Role::ByHand => None,
            Role::Elected => {
                let since = self.underused_since?;
                (now.duration_since(since) >= self.config.demote_after).then_some(Decision::Demote)
            }
            Role::Leaf => self.poll_leaf(now),
        }
    }

    fn poll_leaf(&mut self, now: Instant) -> Option<Decision> {
        let config = &self.config;
        let eligible = config.enabled
            && self.capacity >= config.min_capacity
            && now.duration_since(self.started) >= config.min_uptime
            && self.cooldown_until.is_none_or(|t| now >= t);
        if !eligible || !self.short(now) {
            self.reset_wait();
            return None;
        }
        let since = *self.short_since.get_or_insert(now);
        if now.duration_since(since) < self.config.shortage_for {
            return None;
        }
        let jitter = self.config.jitter.mul_f64(self.rng.random::<f64>());
        let fire_at = *self.fire_at.get_or_insert(now + jitter);
        if now < fire_at {
            return None;
        }
        // The final check: a list-server answer newer than the end of the wait.
        if self.answer.is_some_and(|(at, _, _)| at < fire_at) {
            let asked_recently = self
                .asked
                .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1));
            if asked_recently {
                return None;
            }
            self.asked = Some(now);
            return Some(Decision::AskListServers);
        }
        self.reset_wait();
        Some(Decision::Promote)
    }

    /// Whether the network looks short of supernodes now.
    fn short(&self, now: Instant) -> bool {
        match self.answer {
            Some((at, short, _)) if now.duration_since(at) <= self.config.fresh_for => short,
            // No current word from a list server: being turned away is the signal.
            _ => {
                !self.attached
                    && self
                        .refused
                        .is_some_and(|t| now.duration_since(t) <= self.config.fresh_for)
            }
        }
    }

    fn reset_wait(&mut self) {
        self.short_since = None;
        self.fire_at = None;
        self.asked = None;
    }
}

#[cfg(test)]
#[path = "election_tests.rs"]
mod tests;
