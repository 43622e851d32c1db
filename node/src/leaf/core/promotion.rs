//! Becoming a supernode and stepping back down: the leaf core's side of it.
//!
//! A node is a supernode for one of three reasons ([`Origin`]), and each decides
//! differently when the list servers will not list it:
//! - `Started` (`superpeer supernode`): it stays one; the operator asked for it.
//! - `ByHand` (`superpeer promote`): the command waits up to [`CONFIRM_WITHIN`] for a list
//!   server to list it; if every list server *refuses* it (the dial-back could not reach
//!   it), it steps back down and the command says why.
//! - `Elected`: the same, at any time: a supernode nobody can reach would only lose its
//!   leaves. A list server that cannot be *reached* says nothing about us, so an
//!   unreachable list server never makes a supernode step down.
//!
//! The election itself (when to promote, when an underused supernode steps down) is
//! [`Election`](crate::leaf::Election); this file turns its decisions into actions.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use superpeer_bootstrap_list::RegistrationStatus;

use super::{LeafAction, LeafCore, Reach};
use crate::leaf::election::Decision;

/// How long a promotion by hand waits for a list server to confirm it.
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(10);

/// Why this node is a supernode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Started as one (`superpeer supernode`).
    Started,
    /// Promoted by hand (`superpeer promote`).
    ByHand,
    /// Promoted by the election.
    Elected,
}

/// How a promotion by hand settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromotionOutcome {
    /// The list servers that list us (dial-back done).
    pub listed_by: Vec<SocketAddr>,
    /// What the user should know when no list server confirmed it.
    pub note: Option<String>,
}

/// What the node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Leaf,
    /// [`LeafAction::StartSupernode`] is out; waiting for the driver's report.
    Starting(Origin),
    /// Running as a supernode; `confirm_by` while a promotion by hand awaits a listing.
    Supernode {
        origin: Origin,
        confirm_by: Option<Instant>,
    },
    /// [`LeafAction::StopSupernode`] is out.
    Stopping,
}

impl Role {
    pub(super) fn is_supernode(self) -> bool {
        !matches!(self, Role::Leaf)
    }

    pub(super) fn is_running_supernode(self) -> bool {
        matches!(self, Role::Supernode { .. })
    }
}

impl LeafCore {
    /// `superpeer promote`: become a supernode. The outcome comes as
    /// [`LeafAction::PromotionSettled`].
    pub fn promote(&mut self, now: Instant) -> Result<(), String> {
        if self.role.is_supernode() {
            return Err("this node is a supernode already".into());
        }
        if let Reach::Nat(mapping) = self.reachability.reach() {
            let observed = self
                .reachability
                .view()
                .observed
                .map_or_else(|| "an address".to_string(), |a| a.to_string());
            return Err(format!(
                "this node cannot be reached from outside: it is behind a NAT or firewall \
                 (its supernode sees it at {observed}, {} mapping, and a dial-back there got no \
                 answer); a supernode must accept connections: forward a UDP port to it and \
                 start it with --advertise PUBLIC_IP:PORT",
                mapping.name()
            ));
        }
        self.start_supernode(now, Origin::ByHand);
        Ok(())
    }

    /// Step back down to leaf, by hand.
    pub fn demote(&mut self, now: Instant) -> Result<(), String> {
        if !self.role.is_running_supernode() {
            return Err("this node is a leaf already".into());
        }
        self.stop_supernode(now);
        Ok(())
    }

    pub(super) fn start_supernode(&mut self, _now: Instant, origin: Origin) {
        self.role = Role::Starting(origin);
        if let Some(current) = self.current.take() {
            self.actions.push_back(LeafAction::Leave {
                session: current.session,
                reason: "promoted to supernode",
            });
        }
        self.leave_spares("promoted to supernode");
        self.joiner.detached();
        self.end_searches("the search was cut short: this node became a supernode; try again");
        self.publication.reset(usize::MAX);
        self.actions.push_back(LeafAction::StartSupernode);
    }

    fn stop_supernode(&mut self, now: Instant) {
        self.role = Role::Stopping;
        self.end_searches(
            "the search was cut short: this node stepped down to leaf; try again in a moment",
        );
        self.election.demoted(now);
        self.actions.push_back(LeafAction::StopSupernode);
    }

    /// The driver started the supernode (or could not).
    pub fn handle_supernode_started(&mut self, now: Instant, result: Result<(), String>) {
        let Role::Starting(origin) = self.role else {
            return;
        };
        match result {
            Ok(()) => {
                self.role = Role::Supernode {
                    origin,
                    confirm_by: (origin == Origin::ByHand).then_some(now + CONFIRM_WITHIN),
                };
                self.election.promoted(origin != Origin::Elected);
                self.actions.push_back(LeafAction::ShareOwnSupernode {
                    add: self.publication.all(),
                    remove: Vec::new(),
                });
            }
            Err(why) => {
                self.role = Role::Leaf;
                self.election.promotion_failed(now);
                if origin == Origin::ByHand {
                    self.actions
                        .push_back(LeafAction::PromotionSettled(Err(why)));
                }
                self.drive(now);
            }
        }
    }

    /// The driver stopped the supernode: we are a leaf again and join the best supernode.
    pub fn handle_supernode_stopped(&mut self, now: Instant) {
        if self.role != Role::Stopping {
            return;
        }
        self.role = Role::Leaf;
        if self.config.list_servers {
            self.fetch_lists(now);
        }
        self.drive(now);
    }

    /// While a supernode: how each list server registration stands, and our leaves.
    pub fn handle_registrations(
        &mut self,
        now: Instant,
        registrations: &[(SocketAddr, RegistrationStatus)],
        leaves: usize,
    ) {
        let Role::Supernode { origin, confirm_by } = self.role else {
            return;
        };
        self.election
            .own_leaves(now, u32::try_from(leaves).unwrap_or(u32::MAX));
        let listed_by: Vec<SocketAddr> = registrations
            .iter()
            .filter(|(_, r)| matches!(r, RegistrationStatus::Registered { listed: true }))
            .map(|(addr, _)| *addr)
            .collect();
        // Refused by every list server: not reachable at our address. Unreachable list
        // servers say nothing about us.
        let refusals: Vec<String> = registrations
            .iter()
            .filter_map(|(addr, r)| match r {
                RegistrationStatus::Refused(reason) => Some(format!("{addr}: {reason}")),
                _ => None,
            })
            .collect();
        let refused_everywhere = !registrations.is_empty() && refusals.len() == registrations.len();
        let settle = |core: &mut Self, result| {
            if let Role::Supernode { confirm_by, .. } = &mut core.role {
                *confirm_by = None;
            }
            core.actions.push_back(LeafAction::PromotionSettled(result));
        };
        if let Some(deadline) = confirm_by {
            if registrations.is_empty() {
                let note = "no list server configured: others find this supernode through \
                            --peer or gossip";
                settle(
                    self,
                    Ok(PromotionOutcome {
                        listed_by,
                        note: Some(note.into()),
                    }),
                );
            } else if !listed_by.is_empty() {
                settle(
                    self,
                    Ok(PromotionOutcome {
                        listed_by,
                        note: None,
                    }),
                );
            } else if refused_everywhere {
                let why = format!(
                    "the list server will not list this node ({}); it stays a leaf",
                    refusals.join("; ")
                );
                settle(self, Err(why));
                self.stop_supernode(now);
            } else if now >= deadline {
                let note = "promoted; no list server has confirmed it yet";
                settle(
                    self,
                    Ok(PromotionOutcome {
                        listed_by,
                        note: Some(note.into()),
                    }),
                );
            }
            return;
        }
        if origin == Origin::Elected && refused_everywhere {
            self.stop_supernode(now);
            self.election.promotion_failed(now);
        }
    }

    /// Runs the election: promote, step down, or ask the list servers, as it decides.
    pub(super) fn elect(&mut self, now: Instant) {
        self.election.set_attached(self.current.is_some());
        match self.role {
            Role::Leaf
            | Role::Supernode {
                origin: Origin::Elected,
                ..
            } => {}
            _ => return,
        }
        match self.election.poll(now) {
            None => {}
            Some(Decision::AskListServers) if self.config.list_servers => self.fetch_lists(now),
            // A node behind a NAT is no use as a supernode: nobody could attach to it.
            // (Unknown is left to the list servers' dial-back, which undoes a promotion.)
            Some(Decision::Promote)
                if self.role == Role::Leaf
                    && !matches!(self.reachability.reach(), Reach::Nat(_)) =>
            {
                self.start_supernode(now, Origin::Elected);
            }
            Some(Decision::Demote) if self.role.is_running_supernode() => {
                self.stop_supernode(now);
            }
            Some(_) => {}
        }
    }
}
