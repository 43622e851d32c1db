//! The gate in front of an accept loop: which incoming connections a node takes, and how
//! many it holds for each source address.
//!
//! Every incoming connection attempt goes through [`Gate::admit`] before any state is kept
//! for it:
//! 1. The node is full ([`GateLimits::max_connections`]): refused.
//! 2. The source address has not proven it receives our packets (no Retry token yet), and
//!    either many handshakes are under way ([`GateLimits::retry_above_handshakes`]) or the
//!    source is at its cap: a QUIC Retry, which costs us one stateless packet and makes a
//!    spoofed source go away. A crowd of Initials from forged addresses thus never holds a
//!    slot, nor counts against the address it forged.
//! 3. The source is at its cap ([`GateLimits::max_per_source`]): refused.
//! 4. Otherwise a [`Ticket`] holds one slot until dropped. It counts against its source at
//!    once when the address is validated, else when the handshake completes
//!    ([`Ticket::established`]), which proves the address just as well.
//!
//! A source is an IPv4 address or an IPv6 /64 (one subscriber's usual allocation, so a
//! host cannot dodge the cap by walking its own prefix). Counting by IP and not by port is
//! deliberate: ports are free to an attacker. Tests that run many nodes on one machine give
//! each its own loopback address, as every test of this workspace does.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

/// How many connections a node holds, in all and per source address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateLimits {
    /// Connections held at once, handshakes included.
    pub max_connections: usize,
    /// Connections held at once for one source address (IPv4 address or IPv6 /64).
    pub max_per_source: usize,
    /// Handshakes under way above which a source that has not proven its address gets a
    /// QUIC Retry first.
    pub retry_above_handshakes: usize,
}

impl GateLimits {
    /// A supernode: its leaves, their probes and transfers, its links. One address gets a
    /// sixty-fourth of the slots, so holding them all takes 64 addresses; a household or a
    /// small NAT of honest leaves fits well under it.
    pub const SUPERNODE: GateLimits = GateLimits::supernode(4096);

    /// A supernode holding `max_connections` at once (`supernode --max-connections`). One
    /// address still gets 64 of them, and a Retry still comes above 64 pending handshakes,
    /// but never more than a quarter of the total: a small supernode takes at least four
    /// addresses to fill.
    pub const fn supernode(max_connections: usize) -> GateLimits {
        let quarter = if max_connections >= 4 {
            max_connections / 4
        } else {
            1
        };
        let share = if quarter < 64 { quarter } else { 64 };
        GateLimits {
            max_connections,
            max_per_source: share,
            retry_above_handshakes: share,
        }
    }

    /// A leaf: probes (dial-back and RTT checks) and downloads of its files. A downloader
    /// opens at most two transfer sessions to one holder, so 16 leaves room for several
    /// downloaders behind one NAT; holding all 256 slots takes 16 addresses.
    pub const LEAF: GateLimits = GateLimits {
        max_connections: 256,
        max_per_source: 16,
        retry_above_handshakes: 32,
    };
}

/// What the gate did with an incoming connection attempt.
#[derive(Debug)]
pub enum Admitted {
    /// Go ahead: complete the handshake, holding the ticket for the connection's life.
    /// (Boxed: an `Incoming` is 400 bytes, the other answers a few.)
    Serve(Ticket, Box<quinn::Incoming>),
    /// Answered with a Retry; a real peer comes back with a token.
    Retried,
    /// Refused, for this reason (for logs).
    Refused(&'static str),
}

/// Counts connections by source; shared by an accept loop and its connection tasks.
#[derive(Debug)]
pub struct Gate {
    limits: GateLimits,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Tickets alive.
    open: usize,
    /// Tickets whose handshake is not done.
    handshaking: usize,
    /// Tickets counted per source; never more entries than `open`.
    per_source: HashMap<Source, usize>,
}

/// A source address as the caps count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
}

impl Source {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => Source::V6Prefix(prefix_64(v6)),
            },
        }
    }
}

fn prefix_64(v6: Ipv6Addr) -> [u8; 8] {
    let octets = v6.octets();
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&octets[..8]);
    prefix
}

impl Gate {
    /// A gate with `limits`.
    pub fn new(limits: GateLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            state: Mutex::new(State::default()),
        })
    }

    /// The limits it applies.
    pub fn limits(&self) -> GateLimits {
        self.limits
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.lock().open
    }

    /// Takes, retries or refuses `incoming` (see the module docs).
    pub fn admit(self: &Arc<Self>, incoming: quinn::Incoming) -> Admitted {
        let source = Source::of(incoming.remote_address().ip());
        let validated = incoming.remote_address_validated();
        let decision = self.decide(source, validated, incoming.may_retry());
        match decision {
            Decision::Serve => {
                let ticket = Ticket {
                    gate: self.clone(),
                    source,
                    handshaking: true,
                    counted: validated,
                };
                Admitted::Serve(ticket, Box::new(incoming))
            }
            Decision::Retry => match incoming.retry() {
                Ok(()) => Admitted::Retried,
                Err(e) => {
                    e.into_incoming().refuse();
                    Admitted::Refused("retry failed")
                }
            },
            Decision::Refuse(why) => {
                incoming.refuse();
                Admitted::Refused(why)
            }
        }
    }

    /// The decision alone, and the slot taken when it is to serve.
    fn decide(&self, source: Source, validated: bool, may_retry: bool) -> Decision {
        let mut state = self.lock();
        if state.open >= self.limits.max_connections {
            return Decision::Refuse("at the connection limit");
        }
        let held = state.per_source.get(&source).copied().unwrap_or(0);
        let at_cap = held >= self.limits.max_per_source;
        let busy = state.handshaking >= self.limits.retry_above_handshakes;
        if !validated && may_retry && (busy || at_cap) {
            return Decision::Retry;
        }
        if at_cap {
            return Decision::Refuse("too many connections from this address");
        }
        state.open += 1;
        state.handshaking += 1;
        if validated {
            *state.per_source.entry(source).or_insert(0) += 1;
        }
        Decision::Serve
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The counts stay consistent under every panic-free path; a poisoned lock only
        // means another task panicked mid-update, and the counts are still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Serve,
    Retry,
    Refuse(&'static str),
}

/// One connection slot; released when dropped.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<Gate>,
    source: Source,
    handshaking: bool,
    counted: bool,
}

impl Ticket {
    /// The handshake completed. `false` when the source has reached its cap meanwhile (it
    /// raced many handshakes from an unvalidated address): the caller closes the connection.
    pub fn established(&mut self) -> bool {
        let mut state = self.gate.lock();
        if self.handshaking {
            self.handshaking = false;
            state.handshaking = state.handshaking.saturating_sub(1);
        }
        if self.counted {
            return true;
        }
        let held = state.per_source.entry(self.source).or_insert(0);
        if *held >= self.gate.limits.max_per_source {
            if *held == 0 {
                state.per_source.remove(&self.source);
            }
            return false;
        }
        *held += 1;
        self.counted = true;
        true
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        state.open = state.open.saturating_sub(1);
        if self.handshaking {
            state.handshaking = state.handshaking.saturating_sub(1);
        }
        if !self.counted {
            return;
        }
        if let Some(held) = state.per_source.get_mut(&self.source) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                state.per_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: GateLimits = GateLimits {
        max_connections: 10,
        max_per_source: 3,
        retry_above_handshakes: 4,
    };

    fn ticket(gate: &Arc<Gate>, ip: &str, validated: bool) -> Option<Ticket> {
        let source = Source::of(ip.parse::<IpAddr>().unwrap());
        match gate.decide(source, validated, !validated) {
            Decision::Serve => Some(Ticket {
                gate: gate.clone(),
                source,
                handshaking: true,
                counted: validated,
            }),
            _ => None,
        }
    }

    #[test]
    fn one_address_gets_its_share_and_no_more() {
        let gate = Gate::new(LIMITS);
        let mut held: Vec<Ticket> = (0..3)
            .filter_map(|_| ticket(&gate, "127.0.46.9", true))
            .collect();
        assert_eq!(held.len(), 3);
        assert!(ticket(&gate, "127.0.46.9", true).is_none());
        // Unvalidated at the cap: a Retry, not a slot.
        let source = Source::of(IpAddr::from([127, 0, 46, 9]));
        assert_eq!(gate.decide(source, false, true), Decision::Retry);
        // Another address still gets in.
        assert!(ticket(&gate, "127.0.46.2", true).is_some());
        // A slot comes back when a connection ends.
        held.pop();
        assert!(ticket(&gate, "127.0.46.9", true).is_some());
    }

    #[test]
    fn unvalidated_sources_count_once_established_and_races_are_closed() {
        let gate = Gate::new(LIMITS);
        let mut racing: Vec<Ticket> = (0..4)
            .filter_map(|_| ticket(&gate, "127.0.46.9", false))
            .collect();
        assert_eq!(
            racing.len(),
            4,
            "below the Retry threshold, none counted yet"
        );
        let established: Vec<bool> = racing.iter_mut().map(Ticket::established).collect();
        assert_eq!(established, [true, true, true, false]);
        drop(racing);
        assert_eq!(gate.open(), 0);
        assert!(gate.lock().per_source.is_empty());
    }

    #[test]
    fn many_handshakes_bring_retries_and_a_full_gate_refuses() {
        let gate = Gate::new(LIMITS);
        let pending: Vec<Ticket> = (0..4)
            .filter_map(|i| ticket(&gate, &format!("10.0.0.{i}"), false))
            .collect();
        let source = Source::of(IpAddr::from([10, 0, 0, 99]));
        assert_eq!(gate.decide(source, false, true), Decision::Retry);
        let more: Vec<Ticket> = (0..6)
            .filter_map(|i| ticket(&gate, &format!("10.0.1.{i}"), true))
            .collect();
        assert_eq!(pending.len() + more.len(), 10);
        assert!(matches!(
            gate.decide(source, true, false),
            Decision::Refuse(_)
        ));
    }

    #[test]
    fn an_ipv6_prefix_is_one_source() {
        let a = Source::of("2001:db8:1:2::1".parse::<IpAddr>().unwrap());
        let b = Source::of("2001:db8:1:2:ffff::9".parse::<IpAddr>().unwrap());
        let c = Source::of("2001:db8:1:3::1".parse::<IpAddr>().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mapped = Source::of("::ffff:127.0.46.9".parse::<IpAddr>().unwrap());
        assert_eq!(mapped, Source::of(IpAddr::from([127, 0, 46, 9])));
    }

    #[test]
    fn a_smaller_supernode_keeps_its_per_source_share_under_a_quarter() {
        assert_eq!(GateLimits::supernode(4096), GateLimits::SUPERNODE);
        let shares = |n| {
            let limits = GateLimits::supernode(n);
            assert_eq!(limits.max_connections, n);
            (limits.max_per_source, limits.retry_above_handshakes)
        };
        assert_eq!(shares(100_000), (64, 64));
        assert_eq!(shares(256), (64, 64));
        assert_eq!(shares(100), (25, 25));
        assert_eq!(shares(2), (1, 1));
    }
}
