//! Whether others can reach this node, as the supernodes see it: a plain state machine fed
//! by what supernodes report.
//!
//! - The attached supernode reports the address it observes our connection come from, and
//!   whether a dial-back from another of its ports reached us there
//!   ([`SupernodeToLeaf::Reachability`](superpeer_common::wire::SupernodeToLeaf)): reachable
//!   means `public` (a public address, or a forwarded port), not reachable means behind a
//!   NAT or firewall.
//! - Supernodes answering our probes say where they see us. Two supernodes seeing the same
//!   external port mean the NAT keeps one mapping for every destination (endpoint-
//!   independent: hole punching works); different ports mean a mapping per destination
//!   (symmetric: only a relay helps when both ends are behind such NATs).
//!
//! It also paces what supernodes ask of us: each dial-back request makes us send packets,
//! so requests are rate-limited ([`DIAL_BACKS_PER_SECOND`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use superpeer_common::wire::Observed;
use superpeer_common::{NodeId, TokenBucket};

/// Dial-backs (reverse connections, punches, relay legs) a leaf makes per second on
/// average, as its supernode asks...
pub const DIAL_BACKS_PER_SECOND: f64 = 5.0;
/// ...and at once.
pub const DIAL_BACK_BURST: u32 = 20;

/// Probe observations kept (the latest from each supernode, the oldest forgotten).
const MAX_OBSERVATIONS: usize = 8;

/// How a NAT maps our port, as two supernodes' observations show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mapping {
    /// One external port for every destination: hole punching works.
    EndpointIndependent,
    /// A new external port per destination (a symmetric NAT): punching does not.
    EndpointDependent,
    /// Not yet seen by two supernodes.
    Unknown,
}

impl Mapping {
    /// The name `status` shows.
    pub fn name(self) -> &'static str {
        match self {
            Mapping::EndpointIndependent => "endpoint-independent",
            Mapping::EndpointDependent => "endpoint-dependent",
            Mapping::Unknown => "unknown",
        }
    }
}

/// Whether others can reach this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// No supernode has said yet.
    Unknown,
    /// Reachable from outside at `observed`.
    Public,
    /// Behind a NAT or firewall: reached only through our supernode.
    Nat(Mapping),
}

impl Reach {
    /// The name `status` shows.
    pub fn name(self) -> &'static str {
        match self {
            Reach::Unknown => "unknown",
            Reach::Public => "public",
            Reach::Nat(_) => "nat",
        }
    }
}

/// What `status` shows of reachability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReachView {
    pub reach: Reach,
    /// The address our supernode sees us at.
    pub observed: Option<SocketAddr>,
}

/// See the module docs.
#[derive(Debug)]
pub struct Reachability {
    report: Option<Observed>,
    /// The latest address each probed supernode saw us at.
    seen_by: VecDeque<(NodeId, SocketAddr)>,
    dial_backs: TokenBucket,
}

impl Reachability {
    pub fn new(now: Instant) -> Self {
        Self {
            report: None,
            seen_by: VecDeque::new(),
            dial_backs: TokenBucket::new(now, DIAL_BACKS_PER_SECOND, DIAL_BACK_BURST),
        }
    }

    /// Our supernode's report.
    pub fn reported(&mut self, observed: Observed) {
        self.report = Some(observed);
    }

    /// A probed supernode saw us at `addr`.
    pub fn seen(&mut self, by: NodeId, addr: SocketAddr) {
        self.seen_by.retain(|(node, _)| *node != by);
        if self.seen_by.len() >= MAX_OBSERVATIONS {
            self.seen_by.pop_front();
        }
        self.seen_by.push_back((by, addr));
    }

    /// Whether a supernode asking us to dial someone may have it now.
    pub fn allow_dial_back(&mut self, now: Instant) -> bool {
        self.dial_backs.try_take(now)
    }

    /// The mapping, from what the probed supernodes saw: the same address from two of them
    /// is endpoint-independent; two different ports of one IP, endpoint-dependent.
    pub fn mapping(&self) -> Mapping {
        let mut seen = self.seen_by.iter().map(|(_, addr)| *addr);
        let Some(first) = seen.next() else {
            return Mapping::Unknown;
        };
        let mut mapping = Mapping::Unknown;
        for addr in seen {
            if addr.ip() != first.ip() {
                // Another interface or a changed address: says nothing about the mapping.
                continue;
            }
            if addr.port() != first.port() {
                return Mapping::EndpointDependent;
            }
            mapping = Mapping::EndpointIndependent;
        }
        mapping
    }

    /// Where we stand.
    pub fn reach(&self) -> Reach {
        match self.report {
            None => Reach::Unknown,
            Some(report) if report.reachable => Reach::Public,
            Some(_) => Reach::Nat(self.mapping()),
        }
    }

    /// What `status` shows.
    pub fn view(&self) -> ReachView {
        ReachView {
            reach: self.reach(),
            observed: self.report.map(|r| r.addr),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nothing_reported_is_unknown() {
        let r = Reachability::new(Instant::now());
        assert_eq!(r.reach(), Reach::Unknown);
        assert_eq!(r.view().observed, None);
    }

    #[test]
    fn a_dial_back_that_reached_us_is_public() {
        let mut r = Reachability::new(Instant::now());
        r.reported(Observed {
            addr: addr("198.18.0.5:7602"),
            reachable: true,
        });
        assert_eq!(r.reach(), Reach::Public);
        assert_eq!(r.view().observed, Some(addr("198.18.0.5:7602")));
    }

    #[test]
    fn the_same_port_seen_by_two_supernodes_is_endpoint_independent() {
        let mut r = Reachability::new(Instant::now());
        r.reported(Observed {
            addr: addr("198.18.0.9:7602"),
            reachable: false,
        });
        assert_eq!(r.reach(), Reach::Nat(Mapping::Unknown));
        r.seen(node(1), addr("198.18.0.9:7602"));
        assert_eq!(
            r.reach(),
            Reach::Nat(Mapping::Unknown),
            "one view says nothing"
        );
        r.seen(node(2), addr("198.18.0.9:7602"));
        assert_eq!(r.reach(), Reach::Nat(Mapping::EndpointIndependent));
    }

    #[test]
    fn different_ports_seen_by_two_supernodes_are_endpoint_dependent() {
        let mut r = Reachability::new(Instant::now());
        r.reported(Observed {
            addr: addr("198.18.0.9:40001"),
            reachable: false,
        });
        r.seen(node(1), addr("198.18.0.9:40001"));
        r.seen(node(2), addr("198.18.0.9:51234"));
        assert_eq!(r.reach(), Reach::Nat(Mapping::EndpointDependent));
        // The same supernode seen again replaces its own view.
        r.seen(node(2), addr("198.18.0.9:40001"));
        assert_eq!(r.reach(), Reach::Nat(Mapping::EndpointIndependent));
    }

    #[test]
    fn dial_backs_are_rate_limited() {
        let now = Instant::now();
        let mut r = Reachability::new(now);
        let allowed = (0..100).filter(|_| r.allow_dial_back(now)).count();
        assert_eq!(allowed, DIAL_BACK_BURST as usize);
        let later = now + std::time::Duration::from_secs(1);
        let more = (0..100).filter(|_| r.allow_dial_back(later)).count();
        assert_eq!(more, DIAL_BACKS_PER_SECOND as usize);
    }
}
